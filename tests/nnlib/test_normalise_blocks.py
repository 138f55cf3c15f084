"""The contiguous fast path of the normalisation kernel (kept axes one block, x viewed as
``(P, K, R)``) against the textbook formulas written here, over the layouts it takes and
the ones it must refuse, float64 and float32, output, statistics and first-order gradients."""

import importlib

import numpy as np
import pytest

import fluxml as fl

N = importlib.import_module("fluxml.nnlib.normalise")

CASES = [  # shape, axes, affine shape (None: no scale/bias), takes the fast path
    ((4, 3, 5, 6), (0, 2, 3), (1, 3, 1, 1), True),  # batch norm
    ((4, 3, 5, 6), (2, 3), (4, 3, 1, 1), True),  # instance norm, per-sample scale
    ((4, 7), (1,), None, True),  # layer norm, no affine
    ((2, 3, 4), (0, 2), (3, 1), True),  # scale of lower rank
    ((2, 3, 4), (0, 1, 2), (1,), True),  # everything reduced, scalar scale
    ((4, 7), (0,), (7,), True),
    ((4, 7), (1,), (7,), False),  # scale varies along the reduced axis
    ((2, 3, 4), (1,), (3, 1), False),  # kept axes 0 and 2: not one block
]


def reference(x, axes, scale, bias, eps=1e-5):
    m = np.mean(x, axis=axes, keepdims=True)
    v = np.mean((x - m) ** 2, axis=axes, keepdims=True)
    y = (x - m) / np.sqrt(v + eps)
    return (y if scale is None else y * scale + bias), m, v


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape, axes, affine, fast", CASES)
def test_blocks(shape, axes, affine, fast, dtype):
    rng = np.random.default_rng(len(shape) + sum(axes))
    x = (rng.standard_normal(shape) * 3 + 2).astype(dtype)
    gy = rng.standard_normal(shape).astype(dtype)
    scale = bias = None
    if affine is not None:
        scale, bias = (rng.standard_normal(affine).astype(dtype) for _ in range(2))
    assert (N._blocks(x, axes, scale, bias) is not None) == fast
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)
    got = N._impl(x, scale, bias, axes=axes, eps=1e-5)
    for a, b in zip(got, reference(x, axes, scale, bias)):
        assert a.shape == b.shape and a.dtype == dtype
        np.testing.assert_allclose(a, b, **tol)
    _, mean, var = got
    positions = [0] if scale is None else [0, 1, 2]
    grads = N._vjp_raw(gy, x, scale, mean, var, axes, 1e-5, positions, np.shape(bias))
    rstd = 1 / np.sqrt(var + 1e-5)
    xhat = (x - mean) * rstd
    g = gy if scale is None else gy * scale
    dx = rstd * (g - g.mean(axes, keepdims=True) - xhat * (g * xhat).mean(axes, keepdims=True))
    want = [dx]
    if scale is not None:
        want += [N._sum_to(gy * xhat, scale.shape), N._sum_to(gy, bias.shape)]
    for a, b in zip(grads, want):
        a = N._sum_to(a, b.shape)  # the general path leaves that sum to the engine
        assert a.shape == b.shape and a.dtype == dtype
        np.testing.assert_allclose(a, b, **{k: 10 * v for k, v in tol.items()})


@pytest.mark.parametrize("layer", [fl.InstanceNorm(4, affine=True), fl.InstanceNorm(4),
                                   fl.BatchNorm(4)])
def test_normalisation_gradient_of_a_small_variance_in_float16(layer):
    """The input gradient's term ``-a * rstd * mean(g * xhat) * (x - mean)`` multiplied
    ``a * rstd = 1 / var`` first, which overflows float16 (65504) for a variance below
    1.5e-5: inf and NaN gradients where float64's are a few hundred."""
    rng = np.random.default_rng(1)
    x = (2e-3 * rng.standard_normal((2, 4, 3))).astype(np.float16)  # (var about 4e-6)
    weights = np.arange(3, dtype=np.float16)
    m = fl.f16(layer)
    (g,) = fl.gradient(lambda x: np.sum(m(x) * weights), x)
    assert g.dtype == np.float16

    def by_hand(x):  # the textbook normalisation in float64, differentiated by the engine
        axes = (0, 2) if isinstance(layer, fl.BatchNorm) else (2,)  # (training mode)
        mean = np.mean(x, axis=axes, keepdims=True)
        var = np.mean((x - mean) ** 2, axis=axes, keepdims=True)
        y = (x - mean) / np.sqrt(var + layer.eps)
        return np.sum(y * weights.astype(np.float64))

    (want,) = fl.gradient(by_hand, x.astype(np.float64))
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(g, want, atol=0.05 * np.abs(want).max())


@pytest.mark.parametrize("layer", [fl.GroupNorm(3, 3), fl.InstanceNorm(3), fl.LayerNorm(3),
                                   fl.BatchNorm(3)])
def test_float16_group_of_equal_entries_normalises_to_zero(layer):
    """The contiguous path summed float16 entries in float16: three entries of 1.592 summed
    to 4.773 and their mean was 1.591, a rounding below them, which the normalisation then
    divided by sqrt(var + eps): outputs of 0.3 where every entry equals the mean (0). Sums
    accumulate in float32 now, as NumPy's mean does on the other path."""
    x = np.empty((2, 3, 1, 3), np.float16)
    x[...] = np.array([0.504, 1.871, 1.592], np.float16)[None, :, None, None]
    m = fl.trainmode(fl.f16(layer))  # (BatchNorm: the batch's statistics)
    y = m(x)
    assert y.dtype == np.float16
    np.testing.assert_array_equal(y, 0)


def test_float16_normalisation_of_close_entries_computes_in_float32():
    """In float16, x - mean of a group of close entries kept only the few bits of their
    difference (1.2734 and 1.2549: a mean rounded by 5e-4 on a deviation of 9e-3): outputs
    5% off, and the jvp, whose terms cancel to 1% of their size before 1/std multiplies
    them, 40% off, the two entries' tangents no longer opposite. Checked against the
    textbook formula in float64 on the same float16 values."""
    x = np.array([[[1.273, 1.255]], [[-0.656, 0.4092]]], np.float16)
    t = np.array([[[0.3, -1.2]], [[0.5, 0.7]]], np.float16)
    y, ty = fl.jvp(lambda x: fl.instancenorm(x), (x,), (t,))
    assert y.dtype == ty.dtype == np.float16

    def by_hand(x):
        mean = np.mean(x, axis=2, keepdims=True)
        var = np.mean((x - mean) ** 2, axis=2, keepdims=True)
        return (x - mean) / np.sqrt(var + 1e-5)

    want, want_t = fl.jvp(by_hand, (x.astype(np.float64),), (t.astype(np.float64),))
    np.testing.assert_allclose(y, want, rtol=2e-3)
    np.testing.assert_allclose(ty, want_t, rtol=2e-3, atol=1e-3)
