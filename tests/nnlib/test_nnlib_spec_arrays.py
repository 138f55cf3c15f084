"""NNlib.jl's own tests of its array primitives translated to fluxml: upsampling
(test/testsuite/upsample.jl), scatter and gather (testsuite/scatter.jl, gather.jl), padding
(test/padding.jl), grid sampling (test/sampling.jl), fold (testsuite/fold.jl), batched
products (test/batchedmul.jl), dropout (test/dropout.jl) and attention (test/attention.jl).

Layouts: a Julia array of size ``(W, H, ...)`` holds the numbers of the NumPy array of the
reversed shape, so a Julia matrix literal is the transpose of the NumPy one (``_jl``), a
Julia dimension ``d`` of an ``n``-d array is NumPy axis ``n - d``, and Julia's ``(W, H)``
options are ``(H, W)`` here. Indices count from 0. NNlib's upsampling aligns corners by
default; fluxml's (PyTorch's) does not, so those tests pass ``align_corners=True``.
"""

import itertools

import numpy as np
import pytest

import fluxml as fl
from fluxml import nnlib as nn


def _jl(rows):
    """A Julia matrix literal (rows as written) in NumPy's layout: its transpose."""
    return np.array(rows).T


# --- testsuite/upsample.jl ---------------------------------------------------------------------

def test_upsample_nearest():
    """upsample.jl "upsample_nearest, integer scale via reshape": values, size= and scale
    agree, ∇upsample_nearest sums each block, a scale of the wrong length is refused."""
    x = _jl([[1, 2], [3, 4]]).astype(np.float32)[None, None]
    np.testing.assert_array_equal(nn.upsample_nearest(x, (3, 3))[0, 0, :, 0], [1, 1, 1, 2, 2, 2])
    y = nn.upsample_nearest(x, (3, 2))  # Julia's (2, 3)
    assert y.shape == (1, 1, 6, 4)
    np.testing.assert_array_equal(y, nn.upsample_nearest(x, size=(6, 4)))
    back = fl.pullback(lambda x: nn.upsample_nearest(x, (3, 2)), x)[1]
    np.testing.assert_array_equal(back(y)[0][0, 0], _jl([[6, 12], [18, 24]]))
    fl.testing.check_grads(lambda x: nn.upsample_nearest(x, size=(6, 4)), x)
    with pytest.raises(ValueError, match="scale"):
        nn.upsample_nearest(x, (1, 2, 3, 4, 5))


def test_upsample_linear_values():
    """upsample.jl "Linear upsampling (1D)", "Bilinear upsampling (2D)" (PyTorch's
    UpsamplingBilinear2d values, ∇ of ones is 6, the 2.5 scale's table, integers) and
    "Trilinear upsampling (3D)" (∇ of ones is 8 without aligned corners)."""
    x = np.tile(np.float32([1, 2, 3, 4]), (1, 3, 1))
    want = np.linspace(1, 4, 10)
    np.testing.assert_allclose(nn.upsample_linear(x, 2.5, align_corners=True)[0, 1], want,
                               rtol=1e-6)
    np.testing.assert_allclose(nn.upsample_linear(x, size=10, align_corners=True)[0, 2], want,
                               rtol=1e-6)
    x = np.tile(_jl([[1, 2], [3, 4]]).astype(np.float32), (2, 2, 1, 1))
    y = nn.upsample_bilinear(x, (2, 3), align_corners=True)
    want = _jl([[1, 4 / 3, 5 / 3, 2], [7 / 5, 26 / 15, 31 / 15, 12 / 5],
                [9 / 5, 32 / 15, 37 / 15, 14 / 5], [11 / 5, 38 / 15, 43 / 15, 16 / 5],
                [13 / 5, 44 / 15, 49 / 15, 18 / 5], [3, 10 / 3, 11 / 3, 4]])
    assert y.shape == (2, 2, 4, 6) and y.dtype == np.float32
    np.testing.assert_allclose(y, np.broadcast_to(want, y.shape), rtol=1e-6)
    fl.testing.check_grads(lambda x: nn.upsample_bilinear(x, (2, 3), align_corners=True), x)
    back = fl.pullback(lambda x: nn.upsample_bilinear(x, size=(4, 6), align_corners=True),
                       np.ones((1, 2, 2, 2), np.float32))[1]
    np.testing.assert_allclose(back(np.ones((1, 2, 4, 6), np.float32))[0], 6, rtol=1e-6)
    want = _jl([[1, 5 / 4, 6 / 4, 7 / 4, 2], [3 / 2, 7 / 4, 8 / 4, 9 / 4, 5 / 2],
                [4 / 2, 9 / 4, 10 / 4, 11 / 4, 6 / 2], [5 / 2, 11 / 4, 12 / 4, 13 / 4, 7 / 2],
                [3, 13 / 4, 14 / 4, 15 / 4, 4]])
    np.testing.assert_allclose(nn.upsample_bilinear(x[:1, :1].astype(float), 2.5,
                                                    align_corners=True)[0, 0], want)
    y = nn.upsample_bilinear(_jl([[1, 3], [3, 5]]).astype(np.uint8)[None, None], 1.5,
                             align_corners=True)  # (float64 here: NNlib keeps UInt8)
    np.testing.assert_array_equal(y[0, 0], _jl([[1, 2, 3], [2, 3, 4], [3, 4, 5]]))
    x = np.broadcast_to(np.float32([1, 2, 3])[:, None, None], (1, 1, 3, 3, 3))  # D varies
    y = nn.upsample_trilinear(x, size=(5, 5, 5), align_corners=True)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, np.broadcast_to(np.linspace(1, 3, 5)[:, None, None],
                                                  (1, 1, 5, 5, 5)))
    back = fl.pullback(lambda x: nn.upsample_trilinear(x, size=(8, 8, 8)),
                       np.ones((1, 1, 4, 4, 4), np.float32))[1]
    np.testing.assert_allclose(back(np.ones((1, 1, 8, 8, 8), np.float32))[0], 8)


def test_pixel_shuffle():
    """upsample.jl "pixel_shuffle": NNlib's two tables (its channel order is PyTorch's once
    the layouts are translated), sizes, the batch kept apart."""
    y = nn.pixel_shuffle(np.arange(1, 17).reshape(1, 4, 2, 2), 2)
    np.testing.assert_array_equal(y[0, 0], _jl([[1, 9, 3, 11], [5, 13, 7, 15], [2, 10, 4, 12],
                                                [6, 14, 8, 16]]))
    y = nn.pixel_shuffle(np.arange(1, 33).reshape(1, 8, 2, 2), 2)
    np.testing.assert_array_equal(y[0, 1], _jl([[17, 25, 19, 27], [21, 29, 23, 31],
                                                [18, 26, 20, 28], [22, 30, 24, 32]]))
    x = np.arange(4 * 3 * 27 * 2).reshape(2, 27, 3, 4)
    y = nn.pixel_shuffle(x, 3)
    assert y.shape == (2, 3, 9, 12)
    np.testing.assert_array_equal(np.concatenate([nn.pixel_shuffle(x[:1], 3),
                                                  nn.pixel_shuffle(x[1:], 3)]), y)


def test_upsample_complex():
    """upsample.jl "Complex-valued upsample": the real and imaginary parts upsampled apart,
    complex64 kept (upsample_linear gave complex128)."""
    rng = np.random.default_rng(0)
    for d, method in zip((1, 2, 3), (nn.upsample_linear, nn.upsample_bilinear,
                                      nn.upsample_trilinear)):
        shape = (1, 1) + (4, 8, 12)[:d]
        x = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
        for interp in (method, nn.upsample_nearest):
            for y, part in ((interp(x, 2), lambda z: interp(z, 2)),
                            (interp(x, size=(8, 24, 48)[:d]),
                             lambda z: interp(z, size=(8, 24, 48)[:d]))):
                assert y.dtype == np.complex64
                np.testing.assert_allclose(y.real, part(x.real), atol=1e-6)
                np.testing.assert_allclose(y.imag, part(x.imag), atol=1e-6)


# --- testsuite/scatter.jl and gather.jl -------------------------------------------------------

_IDX = np.array([[1, 2, 3, 4], [4, 2, 1, 3], [3, 5, 5, 3]]) - 1
_SRC0 = np.ones((3, 1), int) * np.arange(1, 5)  # Julia's ones(3) * (1:4)'
_SRC1 = (np.array([1, 2])[:, None, None] * _SRC0).T  # Julia's (2, 3, 4), reversed
_SCATTERED = {  # res[(op, dims, false)] of scatter.jl: dims 0 and 1 (the latter a Julia 2x5)
    "add": ([4, 4, 12, 5, 5], [[4, 4, 12, 5, 5], [8, 8, 24, 10, 10]]),
    "sub": ([-4, -4, -12, -5, -5], [[-4, -4, -12, -5, -5], [-8, -8, -24, -10, -10]]),
    "max": ([3, 2, 4, 4, 3], [[3, 2, 4, 4, 3], [6, 4, 8, 8, 6]]),
    "min": ([1, 2, 1, 1, 2], [[1, 2, 1, 1, 2], [2, 4, 2, 2, 4]]),
    "mean": ([2, 2, 3, 2.5, 2.5], [[2, 2, 3, 2.5, 2.5], [4, 4, 6, 5, 5]]),
}


@pytest.mark.parametrize("op", list(_SCATTERED))
def test_scatter_known_answers(op):
    """scatter.jl "eltype $T - idx eltype $IT - $op", the non-mutating scatter: NNlib's
    answers for every element type and both index types (integer min gave the dtype's lowest
    value everywhere, silently: +inf cast to an integer), and ∂src by finite differences."""
    flat, inner = (np.array(a, float) for a in _SCATTERED[op])
    for dtype, itype in itertools.product((np.int32, np.int64, np.uint32, np.float16,
                                           np.float32, np.float64), (np.int8, np.int64)):
        if op == "sub" and dtype == np.uint32:
            continue  # (NNlib skips unsigned types for -)
        idx = _IDX.astype(itype)
        for src, index, want in ((_SRC0, idx, flat), (_SRC1, idx.T, inner.T)):
            y = nn.scatter(op, src.astype(dtype), index)
            assert y.dtype == dtype or op == "mean"
            np.testing.assert_array_equal(y, want)
    noise = np.random.default_rng(0).random(_SRC1.shape) * 0.1  # (ties broken)
    fl.testing.check_grads(lambda s: nn.scatter(op, s, _IDX), _SRC0 + noise[:, :, 0].T, order=1)
    fl.testing.check_grads(lambda s: nn.scatter(op, s, _IDX.T), _SRC1 + noise, order=1)


def test_scatter_extremes_of_integers_where_nothing_lands():
    """NNlib fills the places nothing reaches with typemin (max) or typemax (min) for
    integers; -inf and +inf for floats, as before."""
    src, idx = np.array([5, 3, 7, 1], np.int32), np.array([0, 0, 2, 2])
    np.testing.assert_array_equal(nn.scatter("min", src, idx), [3, 2**31 - 1, 1])
    np.testing.assert_array_equal(nn.scatter("max", src, idx), [5, -2**31, 7])
    np.testing.assert_array_equal(nn.scatter("min", src.astype(np.uint8), idx), [3, 255, 1])
    np.testing.assert_array_equal(nn.scatter("max", src.astype(float), idx), [5, -np.inf, 7])


@pytest.mark.parametrize("backend", ["numpy", "xla"])
def test_scatter_integer_min_compiled(backend):
    """The same under fl.compile (XLA's scatter kernel is its own code)."""
    if backend == "xla":
        pytest.importorskip("jax")
    src, idx = np.array([5, 3, 7, 1], np.int32), np.array([0, 0, 2, 2])
    step = fl.compile(lambda s: (nn.scatter("min", s, idx), nn.scatter("max", s, idx)),
                      backend=backend, background=False)
    for _ in range(2):
        low, high = step(src)
        np.testing.assert_array_equal(np.asarray(low), [3, 2**31 - 1, 1])
        np.testing.assert_array_equal(np.asarray(high), [5, -2**31, 7])


def test_scatter_dstsize_and_gather():
    """scatter.jl "dstsize"; gather.jl "gather scalar index" (1-d and 2-d sources, an index
    out of range refused), "gather tuple index", "gather(src, IJK...)" and the gradients."""
    y = nn.scatter("add", np.ones((5, 3)), np.array([2, 2, 3, 4, 4]) - 1, dstsize=(6, 3))
    assert y.shape == (6, 3) and y.dtype == np.float64
    np.testing.assert_array_equal(y[:, 0], [0, 2, 1, 2, 0, 0])
    fl.testing.check_grads(lambda s: nn.scatter("add", s, np.array([1, 1, 2, 3, 3]),
                                                dstsize=(6, 3)), np.ones((5, 3)))
    src = np.float32([3, 4, 5, 6, 7])
    y = nn.gather(src, _IDX)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, [[3, 4, 5, 6], [6, 4, 3, 5], [5, 7, 7, 5]])
    with pytest.raises(IndexError, match="must lie in"):
        nn.gather(src, np.array([[0, 5]]))
    fl.testing.check_grads(lambda s: nn.gather(s, _IDX), src.astype(float))
    src = _jl([[3, 5, 7], [4, 6, 8]]).astype(np.float32)
    y = nn.gather(src, _jl([[1, 2, 3], [2, 2, 1], [3, 1, 3]]) - 1)
    assert y.shape == (3, 3, 2)  # Julia's (2, 3, 3)
    for k, want in enumerate(([[3, 5, 7], [4, 6, 8]], [[5, 5, 3], [6, 6, 4]],
                              [[7, 3, 7], [8, 4, 8]])):
        np.testing.assert_array_equal(y[k], _jl(want))
    # Julia's tuple (i, j) indexes dims 1, 2: axes 1, 0 here, so the pairs come reversed
    i, j = np.array([1, 1, 1, 2, 2, 2]) - 1, np.array([1, 2, 3, 1, 2, 3]) - 1
    np.testing.assert_array_equal(nn.gather(src, j, i), [3, 5, 7, 4, 6, 8])
    fl.testing.check_grads(lambda s: nn.gather(s, j, i), src.astype(float))
    x = np.arange(1, 16).reshape(5, 3)  # Julia's reshape(1:15, 3, 5)
    np.testing.assert_array_equal(nn.gather(x, np.array([1, 3]), np.array([0, 1])), [4, 11])
    np.testing.assert_array_equal(nn.gather(x, np.array([0, 1])), _jl([[1, 4], [2, 5],
                                                                       [3, 6]]))


# --- test/padding.jl ---------------------------------------------------------------------------

_R9 = np.arange(1, 10).reshape(3, 3)  # Julia's reshape(1:9, 3, 3)


def test_pad_constant_and_zeros():
    """padding.jl "padding constant": sizes, the centre kept and the rest the constant, an
    int against equal widths, dims. (NNlib reads a tuple as long as ndims(x) as one width per
    dimension; fluxml reads pairs, F.pad's order: here dims= is given for those cases.)"""
    x = np.random.default_rng(0).random((2, 2, 2))
    y = nn.pad_constant(x, (4, 2, 3), dims=(0, 1, 2))  # Julia's (3, 2, 4): reversed axes
    assert y.shape == (10, 6, 8)
    np.testing.assert_array_equal(y[4:6, 2:4, 3:5], x)
    y[4:6, 2:4, 3:5] = 0
    assert not y.any()
    np.testing.assert_array_equal(nn.pad_zeros(x, 2), nn.pad_zeros(x, (2, 2, 2), dims=(0, 1, 2)))
    y = nn.pad_constant(x, (3, 2, 4, 5), 1.2, dims=(2, 0))  # Julia's dims (1, 3)
    assert y.shape == (11, 2, 7)
    np.testing.assert_array_equal(y[4:6, :, 3:5], x)
    y[4:6, :, 3:5] = 1.2
    assert (y == 1.2).all()
    np.testing.assert_array_equal(nn.pad_constant(x, (2, 2, 2, 2), 1.2, dims=(2, 0)),
                                  nn.pad_constant(x, 2, 1.2, dims=(2, 0)))
    assert nn.pad_constant(x, 1, dims=2).shape == (2, 2, 4)
    y = nn.pad_zeros(np.random.default_rng(1).random(2) + 1, (1, 2))
    assert y.shape == (5,) and (y[[0, 3, 4]] == 0).all() and (y[1:3] > 0).all()
    fl.testing.check_grads(lambda x: nn.pad_constant(x, 2), x)
    fl.testing.check_grads(lambda x: nn.pad_constant(x, (2, 1, 1, 2)), x[0])


def test_pad_repeat_reflect_symmetric_circular():
    """padding.jl "padding repeat", "padding reflect", "padding symmetric", "padding
    circular": NNlib's tables on reshape(1:9, 3, 3) (Julia's dims=2 is axis 0 here; a tuple
    of pairs pads the last axis first, as NNlib's first dimension), the 4-d one-sided cases,
    an int against equal pairs, and the gradients."""
    x = np.random.default_rng(0).random((2, 2, 2))
    assert nn.pad_repeat(x, (3, 2, 4, 5)).shape == (2, 11, 7)
    np.testing.assert_array_equal(nn.pad_repeat(x, (3, 2, 4, 5))[:, 4:6, 3:5], x)
    assert nn.pad_repeat(x, (3, 2, 4, 5), dims=(2, 0)).shape == (11, 2, 7)
    np.testing.assert_array_equal(nn.pad_repeat(_R9, (1, 2)),
                                  _jl([[1, 4, 7], [1, 4, 7], [2, 5, 8], [3, 6, 9], [3, 6, 9],
                                       [3, 6, 9]]))
    np.testing.assert_array_equal(nn.pad_repeat(_R9, (2, 2), dims=0),
                                  _jl([[1, 1, 1, 4, 7, 7, 7], [2, 2, 2, 5, 8, 8, 8],
                                       [3, 3, 3, 6, 9, 9, 9]]))
    tables = {
        nn.pad_reflect: ([[7, 4, 1, 4, 7, 4, 1], [8, 5, 2, 5, 8, 5, 2], [9, 6, 3, 6, 9, 6, 3]],
                         [[9, 6, 3, 6, 9, 6, 3], [8, 5, 2, 5, 8, 5, 2], [7, 4, 1, 4, 7, 4, 1],
                          [8, 5, 2, 5, 8, 5, 2], [9, 6, 3, 6, 9, 6, 3], [8, 5, 2, 5, 8, 5, 2],
                          [7, 4, 1, 4, 7, 4, 1]]),
        nn.pad_symmetric: ([[4, 1, 1, 4, 7, 7, 4], [5, 2, 2, 5, 8, 8, 5],
                            [6, 3, 3, 6, 9, 9, 6]],
                           [[5, 2, 2, 5, 8, 8, 5], [4, 1, 1, 4, 7, 7, 4], [4, 1, 1, 4, 7, 7, 4],
                            [5, 2, 2, 5, 8, 8, 5], [6, 3, 3, 6, 9, 9, 6], [6, 3, 3, 6, 9, 9, 6],
                            [5, 2, 2, 5, 8, 8, 5]]),
        nn.pad_circular: ([[4, 7, 1, 4, 7, 1, 4], [5, 8, 2, 5, 8, 2, 5], [6, 9, 3, 6, 9, 3, 6]],
                          [[5, 8, 2, 5, 8, 2, 5], [6, 9, 3, 6, 9, 3, 6], [4, 7, 1, 4, 7, 1, 4],
                           [5, 8, 2, 5, 8, 2, 5], [6, 9, 3, 6, 9, 3, 6], [4, 7, 1, 4, 7, 1, 4],
                           [5, 8, 2, 5, 8, 2, 5]]),
    }
    for pad, (one_axis, both) in tables.items():
        np.testing.assert_array_equal(pad(_R9, (2, 2), dims=0), _jl(one_axis))
        np.testing.assert_array_equal(pad(_R9, (2, 2, 2, 2)), _jl(both))
    x4 = _R9[None, None]
    for pad, low, high in (
            (nn.pad_reflect, [[5, 2, 5, 8], [4, 1, 4, 7], [5, 2, 5, 8], [6, 3, 6, 9]],
             [[1, 4, 7, 4], [2, 5, 8, 5], [3, 6, 9, 6], [2, 5, 8, 5]]),
            (nn.pad_symmetric, [[1, 1, 4, 7], [1, 1, 4, 7], [2, 2, 5, 8], [3, 3, 6, 9]],
             [[1, 4, 7, 7], [2, 5, 8, 8], [3, 6, 9, 9], [3, 6, 9, 9]])):
        np.testing.assert_array_equal(pad(x4, (1, 0, 1, 0), dims=(3, 2))[0, 0], _jl(low))
        np.testing.assert_array_equal(pad(x4, (0, 1, 0, 1), dims=(3, 2))[0, 0], _jl(high))
    x = np.random.default_rng(1).random((4, 4, 4))
    for pad in (nn.pad_repeat, nn.pad_reflect, nn.pad_symmetric, nn.pad_circular):
        np.testing.assert_array_equal(pad(x, (2, 2, 2, 2), dims=(2, 0)), pad(x, 2, dims=(2, 0)))
        fl.testing.check_grads(lambda z: pad(z, (2, 2, 2, 2)), x[:3, :3, :3], order=1)


# --- test/sampling.jl --------------------------------------------------------------------------

def _grid(points, shape):
    """A Julia grid ``grid[:, w, h, (d,) n] .= point`` in NumPy's layout ``(N, (D,) H, W, c)``:
    ``points`` maps Julia's 1-based ``(w, h[, d])`` to the coordinates."""
    g = np.zeros(shape[::-1])  # Julia-indexed, (c, W, H, [D,] N)
    for where, point in points.items():
        g[(slice(None),) + tuple(i - 1 for i in where) + (0,)] = point
    return g.T


def test_grid_sample_known_gradients():
    """sampling.jl "Known gradients" and "Known gradients 3D": the corners of a constant
    image, sampled exactly, with the one-sided ∇grid of zero padding; with border padding
    ∇grid is 0 (it was -0.5 at the far borders, silently: the clamped position's gradient
    reached the corner past the border, which reads 0), as NNlib's and PyTorch's."""
    for d in (2, 3):
        corners = list(itertools.product((1, 2), repeat=d))
        grid = _grid({c: tuple(2 * i - 3 for i in c) for c in corners}, (1,) + (2,) * d + (d,))
        zeros_grad = _grid({c: tuple(-0.5 * (i - 1) for i in c) for c in corners},
                           (1,) + (2,) * d + (d,))
        x = np.ones((1, 1) + (2,) * d)
        for mode, want in (("zeros", zeros_grad), ("border", 0 * zeros_grad)):
            y, back = fl.pullback(lambda x, g: nn.grid_sample(x, g, padding_mode=mode), x, grid)
            dx, dgrid = back(np.ones_like(y))
            np.testing.assert_array_equal(y, x)
            np.testing.assert_array_equal(dx, x)
            np.testing.assert_array_equal(dgrid, want)
        fl.testing.check_grads(lambda x, g: nn.grid_sample(x, g, padding_mode="border"), x,
                               grid, order=1)


def test_grid_sample_out_of_bounds():
    """sampling.jl "Test out-of-bounds for different paddings" (2-d and 3-d): zero padding
    reads 0 far outside, border padding the border (1 here)."""
    x = np.ones((1, 1, 2, 2))
    grid = _grid({(1, 1): (-3, -1), (2, 1): (0, -1), (3, 1): (3, -1), (1, 2): (-1, 3),
                  (2, 2): (0, 1), (3, 2): (1, 3)}, (1, 2, 3, 2))
    np.testing.assert_array_equal(nn.grid_sample(x, grid)[0, 0], [[0, 1, 0], [0, 1, 0]])
    np.testing.assert_array_equal(nn.grid_sample(x, grid, padding_mode="border"), 1)
    x = np.ones((1, 1, 2, 2, 2))
    grid = _grid({(1, 1, 1): (-3, -1, -1), (2, 1, 1): (0, -1, -1), (1, 2, 1): (-1, 3, -1),
                  (2, 2, 1): (0, 1, -1), (1, 1, 2): (-1, -1, 3), (2, 1, 2): (0, -1, 3),
                  (1, 2, 2): (-1, 1, 3), (2, 2, 2): (0, 1, 3)}, (1, 2, 2, 2, 3))
    want = np.array([0, 1, 0, 1, 0, 0, 0, 0]).reshape(2, 2, 2)  # Julia's columns, in order
    np.testing.assert_array_equal(nn.grid_sample(x, grid)[0, 0], want)
    np.testing.assert_array_equal(nn.grid_sample(x, grid, padding_mode="border"), 1)


# --- testsuite/fold.jl and test/batchedmul.jl --------------------------------------------------

def test_unfold_fold():
    """fold.jl "unfold wrapper" (sizes: NNlib's (L, k C, N) is (N, C k, L) here, PyTorch's),
    "Inverses" (fold(unfold(x)) / fold(unfold(1)) is x, with padding and stride) and
    "AutoDiff"."""
    rng = np.random.default_rng(0)
    x = rng.random((10, 3, 16, 16))
    assert nn.unfold(x, (5, 5)).shape == (10, 75, 144)
    assert nn.unfold(x, (5, 5), pad=2).shape == (10, 75, 256)
    assert nn.unfold(x, (5, 5), stride=2).shape == (10, 75, 36)
    assert nn.unfold(x, (5, 5), dilation=2).shape == (10, 75, 64)
    for d in (1, 2, 3):
        x = rng.random((2, 3) + (8,) * d)
        for stride in (1, 2):
            def round_trip(z):
                return nn.fold(nn.unfold(z, 3, pad=1, stride=stride), (8,) * d, 3, pad=1,
                               stride=stride)
            np.testing.assert_allclose(round_trip(x) / round_trip(np.ones_like(x)), x,
                                       rtol=1e-7)
        x = rng.random((2, 3) + (5,) * d)
        fl.testing.check_grads(lambda z: nn.unfold(z, 3), x, order=1)
        fl.testing.check_grads(lambda c: nn.fold(c, (5,) * d, 3), nn.unfold(x, 3), order=1)


def test_batched_mul():
    """batchedmul.jl "batched_mul": against a loop of products, with transposes and adjoints
    (complex), mixed precisions, integers, a batch of one, the mismatches refused."""
    rng = np.random.default_rng(0)
    for tb in (np.float64, np.float32):
        a, b = rng.standard_normal((3, 7, 5)), rng.standard_normal((3, 5, 7)).astype(tb)
        c = rng.standard_normal((3, 6, 7))
        t = nn.batched_transpose
        np.testing.assert_allclose(nn.batched_mul(a, b), [a[i] @ b[i] for i in range(3)])
        np.testing.assert_allclose(nn.batched_mul(t(a), t(b)), [a[i].T @ b[i].T for i in range(3)])
        np.testing.assert_allclose(nn.batched_mul(c, a), [c[i] @ a[i] for i in range(3)])
        np.testing.assert_allclose(nn.batched_mul(a, t(a)), [a[i] @ a[i].T for i in range(3)])
        ca = rng.standard_normal((3, 7, 5)) + 1j * rng.standard_normal((3, 7, 5))
        cb = (rng.standard_normal((3, 5, 7)) + 1j * rng.standard_normal((3, 5, 7))).astype(
            np.result_type(tb, np.complex64))
        h = nn.batched_adjoint
        np.testing.assert_allclose(nn.batched_mul(h(ca), h(cb)),
                                   [ca[i].conj().T @ cb[i].conj().T for i in range(3)],
                                   rtol=1e-5)
        np.testing.assert_allclose(nn.batched_mul(ca, h(ca)),
                                   [ca[i] @ ca[i].conj().T for i in range(3)])
        ia, ib = rng.integers(1, 99, (3, 7, 5)), rng.integers(1, 99, (3, 5, 7)).astype(tb)
        np.testing.assert_array_equal(nn.batched_mul(ia, ib), [ia[i] @ ib[i] for i in range(3)])
    a, d = rng.standard_normal((2, 4, 3)), rng.standard_normal((1, 3, 5))
    np.testing.assert_allclose(nn.batched_mul(a, d), [a[0] @ d[0], a[1] @ d[0]])
    fl.testing.check_grads(nn.batched_mul, a, d)
    with pytest.raises(ValueError, match="batch sizes differ"):
        nn.batched_mul(np.ones((2, 2, 2)), np.ones((10, 2, 2)))
    with pytest.raises(ValueError, match="inner sizes differ"):
        nn.batched_mul(np.ones((2, 2, 2)), np.ones((2, 10, 2)))


# --- test/dropout.jl ---------------------------------------------------------------------------

def test_dropout():
    """dropout.jl "dropout": shapes and dtypes with dims, p = 0 and p = 1 (complex too), the
    kept values x / (1 - p), a mask along one axis, complex kept complex (complex64 became
    complex128), the gradient routed by the saved mask, p = 0 and 1 gradients, the Hessian
    of a sum (0), p outside [0, 1] refused."""
    rng = np.random.default_rng(0)
    x1 = rng.standard_normal((4, 3)).astype(np.float32)
    for options in ({}, dict(dims=0), dict(dims=(0, 1))):
        y = nn.dropout(x1, 0.2, **options)
        assert y.shape == (4, 3) and y.dtype == np.float32
    np.testing.assert_array_equal(nn.dropout(x1, 0), x1)
    np.testing.assert_array_equal(nn.dropout(x1 + 0j, 0), x1)
    np.testing.assert_array_equal(nn.dropout(x1, 1), 0)
    np.testing.assert_array_equal(nn.dropout(x1 + 1j, 1), 0)
    assert nn.dropout(np.ones((100, 100, 100), bool), 0.45).mean() == pytest.approx(1, abs=1e-2)
    np.testing.assert_allclose(np.unique(nn.dropout(np.full(1000, np.pi), 0.2)),
                               [0, 5 * np.pi / 4])
    d33 = nn.dropout(np.full((1000, 10), 3), 0.3, dims=0)  # Julia's fill(3, 10, 1000), dims=2
    np.testing.assert_allclose(np.unique(d33), [0, 3 / 0.7])
    assert ((d33 == 0).all(axis=1) | (d33 != 0).all(axis=1)).all()  # whole rows
    for dtype in (np.complex64, np.complex128):
        assert nn.dropout(np.array([1, 2 + 1j, 3 + 3j], dtype), 0.5).dtype == dtype
        assert nn.dropout(np.array([1, 2 + 1j, 3 + 3j], dtype), 0.5, dims=0).dtype == dtype
    x = np.stack([np.ones(1000), np.zeros(1000)], axis=1)
    back = fl.pullback(lambda x: nn.dropout(x, 0.45), x)[1]
    dx = back(np.full((1000, 2), 3.0))[0]
    assert dx[:, 1].any()  # (why the mask is saved: the input's zeros are no guide)
    np.testing.assert_allclose(np.unique(dx), [0, 3 / 0.55])
    np.testing.assert_array_equal(fl.gradient(lambda x: np.sum(nn.dropout(x, 0)), x1)[0], 1)
    np.testing.assert_array_equal(fl.gradient(lambda x: np.sum(nn.dropout(x, 1)), x1)[0], 0)
    np.testing.assert_array_equal(fl.hessian(lambda x: np.sum(nn.dropout(x, 0.5)),
                                             np.array([1.0, 2.0, 3.0])), 0)
    for p in (-1, 2):
        with pytest.raises(ValueError, match="must be a number in"):
            nn.dropout(x1, p)


# --- test/attention.jl -------------------------------------------------------------------------

def test_attention_specific_results():
    """attention.jl "specific results" (NNlib's values, two heads), "different batchsizes"
    (shapes, probabilities summing to 1) and "dot_product_attention_scores" (the heads
    apart equal the heads side by side)."""
    q = np.arange(1, 13).reshape(1, 3, 4) / 12  # Julia's reshape(1:12, 4, 3, 1) / 12
    y, probs = nn.dot_product_attention(q, q, q, nheads=2)
    y_true = [0.429754, 0.513087, 0.613791, 0.697125, 0.46431, 0.547644, 0.647876, 0.73121,
              0.49773, 0.581064, 0.680455, 0.763788]
    p_true = [0.313896, 0.332948, 0.353157, 0.264431, 0.328206, 0.407362, 0.219215, 0.31838,
              0.462405, 0.288691, 0.331243, 0.380066, 0.241239, 0.323893, 0.434868, 0.198438,
              0.311761, 0.489801]  # Julia's (kv, q, head, batch): (batch, head, q, kv) here
    np.testing.assert_allclose(y, np.reshape(y_true, (1, 3, 4)), atol=1e-5)
    np.testing.assert_allclose(probs, np.reshape(p_true, (1, 2, 3, 3)), atol=1e-5)
    rng = np.random.default_rng(0)
    for batch, nheads in itertools.product(((), (1,), (2,), (2, 1, 3)), (1, 3, 5)):
        q = rng.random(batch + (3, 15), dtype=np.float32)
        k, v = (rng.random(batch + (4, 15), dtype=np.float32) for _ in range(2))
        y, probs = nn.dot_product_attention(q, k, v, nheads=nheads)  # (no or several batch
        assert y.dtype == np.float32 and y.shape == batch + (3, 15)  # axes: refused before)
        assert probs.shape == batch + (nheads, 3, 4)
        np.testing.assert_allclose(probs.sum(axis=-1), 1, rtol=1e-6)
        one = [a.reshape((-1,) + a.shape[-2:]) for a in (q, k, v)]  # one batch axis
        y1, p1 = nn.dot_product_attention(*one, nheads=nheads)
        np.testing.assert_allclose(y.reshape(y1.shape), y1, rtol=1e-6)
        np.testing.assert_allclose(probs.reshape(p1.shape), p1, rtol=1e-6)
    q4 = np.arange(1, 25).reshape(1, 3, 2, 4) / 24  # Julia's (4, 2, 3, 1): d, heads, len
    heads = q4.transpose(0, 2, 1, 3)
    np.testing.assert_allclose(nn.dot_product_attention(heads, heads, heads)[1],
                               nn.dot_product_attention(*[q4.reshape(1, 3, 8)] * 3,
                                                        nheads=2)[1])


def test_attention_mask_bias_gradient():
    """attention.jl "mask" (zero probability exactly where masked, causal too), "bias"
    (shapes) and "gradient" (finite differences, q, k, v and the bias)."""
    rng = np.random.default_rng(1)
    q, k = rng.random((1, 2, 3, 4)), rng.random((1, 2, 5, 4))
    mask = rng.random((3, 5)) > 0.5  # Julia's (kv, q) is (q, kv) here
    probs = nn.dot_product_attention(q, k, k, mask=mask)[1]
    np.testing.assert_array_equal(probs[0] > 0, np.broadcast_to(mask, (2, 3, 5)))
    x = rng.random((1, 2, 3, 4))
    causal = nn.make_causal_mask(x)
    probs = nn.dot_product_attention(x, x, x, mask=causal)[1]
    np.testing.assert_array_equal(probs[0] > 0, np.broadcast_to(causal, (2, 3, 3)))
    q, k, v = rng.random((1, 5, 4)), rng.random((1, 3, 4)), rng.random((1, 3, 4))
    bias = rng.standard_normal((5, 3))
    y, probs = nn.dot_product_attention(q, k, v, bias=bias, nheads=2)
    assert probs.shape == (1, 2, 5, 3) and y.shape == (1, 5, 4)
    fl.testing.check_grads(lambda q, k, v, b: nn.dot_product_attention(q, k, v, bias=b,
                                                                       nheads=2)[0],
                           q, k, v, bias, order=1)


def test_attention_fdrop_and_batch_axes_with_mask_and_bias():
    """attention.jl "dropout": fdrop acts on the probabilities (about half kept at p = 0.5;
    fluxml had no fdrop), the identity changes nothing, the output is weighed by what it
    returns; a mask and a bias over several batch axes; the gradient through both."""
    rng = np.random.default_rng(2)
    q = k = v = rng.random((10, 10, 10))
    y, probs = nn.dot_product_attention(q, k, v, nheads=2,
                                        fdrop=lambda p: nn.dropout(p, 0.5, rng=rng))
    assert 0.4 < np.mean(probs > 0) < 0.6
    base = nn.dot_product_attention(q, k, v, nheads=2)
    for got, want in zip(nn.dot_product_attention(q, k, v, nheads=2, fdrop=lambda p: p), base):
        np.testing.assert_allclose(got, want)
    np.testing.assert_allclose(nn.dot_product_attention(q, k, v, nheads=2,
                                                        fdrop=lambda p: 0.5 * p)[0],
                               0.5 * base[0])
    np.testing.assert_allclose(nn.dot_product_attention(q, k, v, fdrop=lambda p: 2 * p)[0],
                               2 * nn.dot_product_attention(q, k, v)[0])
    with pytest.raises(TypeError, match="fdrop must be a function"):
        nn.dot_product_attention(q, k, v, fdrop=0.1)
    fl.testing.check_grads(lambda q, k, v: nn.dot_product_attention(
        q, k, v, nheads=2, fdrop=lambda p: p * p)[0], q[:2, :3, :4], k[:2, :3, :4],
        v[:2, :3, :4], order=1)
    q, k = rng.random((2, 1, 3, 4)), rng.random((2, 1, 5, 4))
    mask, bias = rng.random((3, 5)) > 0.3, rng.standard_normal((1, 2, 3, 5))
    y, probs = nn.dot_product_attention(q, k, k, nheads=2, mask=mask, bias=bias)
    y1, p1 = nn.dot_product_attention(q[:, 0], k[:, 0], k[:, 0], nheads=2, mask=mask,
                                      bias=np.broadcast_to(bias, (2, 2, 3, 5)))
    np.testing.assert_allclose(y[:, 0], y1)
    np.testing.assert_allclose(probs[:, 0], p1)
    fl.testing.check_grads(lambda q, k, b: nn.dot_product_attention(q, k, k, nheads=2,
                                                                    bias=b)[0],
                           q, k, bias, order=1)


def test_grid_sample_nan_and_far_positions():
    """A NaN position reads NaN, in both padding modes (it read 0, silently: its integer
    corner was the cast of NaN, outside); positions far out, infinite included, read 0 with
    zero padding and the border with border padding, with no overflow in the casts."""
    x = np.arange(1.0, 5).reshape(1, 1, 2, 2)
    grid = np.array([[[[np.nan, 0], [0, np.nan], [np.inf, 0], [-np.inf, 0], [1e30, 0.3],
                       [-7.3, 0.2], [0.5, 0.5]]]])
    with np.errstate(all="raise"):
        zeros = nn.grid_sample(x, grid)[0, 0, 0]
        border = nn.grid_sample(x, grid, padding_mode="border")[0, 0, 0]
    assert np.isnan(zeros[:2]).all() and np.isnan(border[:2]).all()
    np.testing.assert_array_equal(zeros[2:], [0, 0, 0, 0, 3.25])
    np.testing.assert_allclose(border[2:], [3, 2, 3.3, 2.2, 3.25])  # the clamped columns
