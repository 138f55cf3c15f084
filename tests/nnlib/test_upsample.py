"""Upsampling, pixel shuffle, batched products: forward against loops written here,
derivatives to second order, bad input."""

import itertools

import numpy as np
import pytest

import fluxml as fl
from fluxml.nnlib import (
    batched_mul,
    batched_transpose,
    pixel_shuffle,
    pixel_unshuffle,
    upsample_bilinear,
    upsample_linear,
    upsample_nearest,
    upsample_trilinear,
)
from fluxml.testing import check_grads


def _x(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def naive_bilinear(x, out, ratio):
    """PyTorch's align_corners=False sampling, one output pixel at a time."""
    n_, c_, h, w = x.shape
    y = np.zeros((n_, c_) + out)
    for i, j in itertools.product(range(out[0]), range(out[1])):
        taps = []
        for pos, n, r in ((i, h, ratio[0]), (j, w, ratio[1])):
            src = max((pos + 0.5) * r - 0.5, 0.0)
            lo = min(int(np.floor(src)), n - 1)
            taps.append((lo, min(lo + 1, n - 1), src - lo))
        (h0, h1, a), (w0, w1, b) = taps
        y[:, :, i, j] = ((1 - a) * (1 - b) * x[:, :, h0, w0] + (1 - a) * b * x[:, :, h0, w1]
                         + a * (1 - b) * x[:, :, h1, w0] + a * b * x[:, :, h1, w1])
    return y


def test_nearest_by_scale_and_size():
    x = _x((2, 3, 2, 3))
    y = upsample_nearest(x, (2, 3))
    assert y.shape == (2, 3, 4, 9)
    for i, j in itertools.product(range(4), range(9)):
        np.testing.assert_array_equal(y[:, :, i, j], x[:, :, i // 2, j // 3])
    y = upsample_nearest(x, size=(5, 4))
    for i, j in itertools.product(range(5), range(4)):
        np.testing.assert_array_equal(y[:, :, i, j], x[:, :, i * 2 // 5, j * 3 // 4])
    x3 = _x((1, 2, 2, 1, 2))
    np.testing.assert_array_equal(upsample_nearest(x3, 2)[0, :, 3, 1, 2], x3[0, :, 1, 0, 1])
    check_grads(lambda x: upsample_nearest(x, (2, 3)), x)
    check_grads(lambda x: upsample_nearest(x, size=(5, 4)), x)


@pytest.mark.parametrize("shape, scale, size", [((2, 2, 3, 4), 2, None), ((1, 3, 4, 3), None,
                                                (7, 5)), ((1, 1, 5, 4), (0.5, 1.5), None)])
def test_bilinear_matches_naive_sampling(shape, scale, size):
    x = _x(shape)
    y = upsample_bilinear(x, scale, size=size)
    if scale is not None:
        s = scale if isinstance(scale, tuple) else (scale, scale)
        out = tuple(int(np.floor(n * f)) for n, f in zip(shape[2:], s))
        ratio = tuple(1 / f for f in s)
    else:
        out, ratio = size, tuple(n / m for n, m in zip(shape[2:], size))
    np.testing.assert_allclose(y, naive_bilinear(x, out, ratio), atol=1e-12)
    check_grads(lambda x: upsample_bilinear(x, scale, size=size), x)


def test_linear_align_corners_and_1d_3d():
    x = np.array([[[0.0, 3.0, 6.0]]])
    np.testing.assert_allclose(upsample_linear(x, size=5, align_corners=True),
                               [[[0.0, 1.5, 3.0, 4.5, 6.0]]])
    x3 = _x((1, 2, 2, 3, 2))
    y = upsample_trilinear(x3, 2)
    assert y.shape == (1, 2, 4, 6, 4)
    # trilinear is separable: first along D, then H and W gives the same as all at once
    step = upsample_linear(np.moveaxis(x3, 2, -1).reshape(1, 12, 2), 2).reshape(1, 2, 3, 2, 4)
    step = upsample_bilinear(np.moveaxis(step, -1, 2).reshape(1, 8, 3, 2), 2)
    np.testing.assert_allclose(y, step.reshape(1, 2, 4, 6, 4), atol=1e-12)
    check_grads(lambda x: upsample_trilinear(x, 2), x3)


def test_pixel_shuffle_as_pytorch_orders_channels():
    x = _x((2, 8, 3, 2))
    y = pixel_shuffle(x, 2)
    assert y.shape == (2, 2, 6, 4)
    for c, h, w, i, j in itertools.product(range(2), range(3), range(2), range(2), range(2)):
        np.testing.assert_array_equal(y[:, c, h * 2 + i, w * 2 + j], x[:, c * 4 + i * 2 + j, h, w])
    np.testing.assert_array_equal(pixel_unshuffle(y, 2), x)
    x3 = _x((1, 16, 2, 1, 3))
    np.testing.assert_array_equal(pixel_unshuffle(pixel_shuffle(x3, 2), 2), x3)
    check_grads(lambda x: pixel_shuffle(x, 2), x)
    check_grads(lambda x: pixel_unshuffle(x, 2), y)


def test_float32_stays_float32():
    x = _x((1, 4, 4, 4)).astype(np.float32)
    for f in (lambda x: upsample_nearest(x, 2), lambda x: upsample_bilinear(x, 2),
              lambda x: upsample_nearest(x, size=(5, 7)), lambda x: pixel_shuffle(x, 2)):
        assert f(x).dtype == np.float32
        assert fl.gradient(lambda x: np.sum(f(x) ** 2), x)[0].dtype == np.float32


def test_batched_mul():
    a, b = _x((3, 2, 4)), _x((3, 4, 5), 1)
    y = batched_mul(a, b)
    for i in range(3):
        np.testing.assert_allclose(y[i], a[i] @ b[i])
    np.testing.assert_allclose(batched_mul(a[:1], b)[2], a[0] @ b[2])
    np.testing.assert_array_equal(batched_transpose(a)[1], a[1].T)
    check_grads(batched_mul, a, b)
    check_grads(lambda a, b: batched_mul(a[:1], batched_transpose(b)), a, _x((3, 5, 4)))


BAD = [
    (lambda: upsample_nearest(np.ones((1, 1, 2, 2)), 1.5), "upsample_nearest: scale"),
    (lambda: upsample_nearest(np.ones((1, 1, 2, 2))), "either scale or size"),
    (lambda: upsample_linear(np.ones((1, 1, 2, 2)), 2, size=(4, 4)), "either scale or size"),
    (lambda: upsample_linear(np.ones((1, 1, 2, 2)), (2, 0)), "scale must be"),
    (lambda: upsample_linear(np.ones((1, 1, 2)), float("inf")), "positive finite number"),
    # an empty output came back silently (PyTorch refuses too)
    (lambda: upsample_bilinear(np.ones((1, 1, 1, 3)), 0.5), r"leaves no output entries"),
    (lambda: upsample_bilinear(np.ones((1, 1, 2)), 2), r"upsample_bilinear: input must be"),
    (lambda: upsample_trilinear(np.ones((1, 1, 2, 2)), 2), r"upsample_trilinear: input must"),
    (lambda: pixel_shuffle(np.ones((1, 6, 2, 2)), 2), r"multiple of r\^2 = 4"),
    (lambda: pixel_unshuffle(np.ones((1, 1, 3, 2)), 2), "multiples of r = 2"),
    (lambda: batched_mul(np.ones((2, 3)), np.ones((2, 3, 4))), "must be"),
    (lambda: batched_mul(np.ones((2, 3, 4)), np.ones((2, 3, 4))), r"inner sizes differ"),
    (lambda: batched_mul(np.ones((2, 3, 4)), np.ones((3, 4, 4))), "batch sizes differ"),
]


@pytest.mark.parametrize("call, message", BAD)
def test_bad_input_is_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("shape, scale", [((1, 2, 3), 1), ((2, 1, 1), 3), ((1, 1, 1, 1), (2, 3)),
                                          ((2, 2, 1, 3), (4, 1))])
def test_nearest_gives_a_new_writable_array(shape, scale):
    """With factors 1, or repeats of a spatial size of 1, the result was a read-only view of
    x (stride 0 along the repeats): ``y += 1`` raised NumPy's read-only error (traced, a
    DifferentiationError), and a write into x showed through y."""
    x = np.arange(float(np.prod(shape))).reshape(shape)
    y = fl.nnlib.upsample_nearest(x, scale)
    assert y.flags.writeable and not np.shares_memory(x, y)
    reps = (1, 1) + ((scale,) * (x.ndim - 2) if isinstance(scale, int) else scale)
    want = x
    for axis, r in enumerate(reps):
        want = np.repeat(want, r, axis=axis)
    np.testing.assert_array_equal(y, want)

    def f(x):
        y = fl.nnlib.upsample_nearest(x, scale)
        s = np.sum(y * y)
        y += 1  # a write after the use
        return s

    np.testing.assert_allclose(fl.gradient(f, x)[0], 2 * x * np.prod(reps))


@pytest.mark.parametrize("f", [
    lambda x: fl.nnlib.upsample_bilinear(x, 1), lambda x: fl.nnlib.upsample_bilinear(x, 1.0),
    lambda x: fl.nnlib.upsample_bilinear(x, size=x.shape[2:]),
    lambda x: fl.nnlib.pixel_shuffle(x, 1), lambda x: fl.nnlib.pixel_unshuffle(x, 1),
    lambda x: fl.nnlib.pixel_shuffle(x[:, :, :1, :1], 2)])
def test_results_never_alias_the_input(f):
    """upsample_linear with nothing to resize returned x itself, and pixel_shuffle and
    pixel_unshuffle with r = 1 (or one pixel) a view of x: a write into the result wrote
    into x, silently (every other case gives a new array, as PyTorch's do)."""
    x = np.arange(32.0).reshape(2, 4, 2, 2)
    before = x.copy()
    y = f(x)
    y += 1
    np.testing.assert_array_equal(x, before)
    np.testing.assert_array_equal(y, f(before) + 1)


@pytest.mark.parametrize("backend", ["numpy", "xla"])
def test_compiled_resampling_gives_new_arrays_too(backend):
    """Review of a7e94d1/6b33517: the copies that make these new arrays eagerly were skipped
    under fl.compile (its values are abstract), so compiled results were still views of the
    input: writes into them wrote into x (pixel_shuffle with r = 1, upsample_linear with
    nothing to resize) or failed (upsample_nearest by 1, unfold of one-entry windows). The
    abstract values' examples now say where eager arrays would share memory."""
    if backend == "xla":
        pytest.importorskip("jax")
    x = np.arange(16.0).reshape(1, 4, 2, 2)
    for f in (lambda x: fl.nnlib.pixel_shuffle(x, 1), lambda x: fl.nnlib.pixel_unshuffle(x, 1),
              lambda x: fl.nnlib.upsample_nearest(x, (1, 1)),
              lambda x: fl.nnlib.upsample_linear(x, size=(2, 2)),
              *([lambda x: fl.nnlib.unfold(x, (1, 1))] if backend == "numpy" else [])):
        # (unfold has no XLA lowering)
        given = x.copy()
        y = fl.compile(f, backend=backend, background=False)(given)
        y += 1
        np.testing.assert_array_equal(given, x)
        np.testing.assert_array_equal(y, f(x) + 1)
