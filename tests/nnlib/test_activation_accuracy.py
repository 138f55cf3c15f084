"""Activations' accuracy where the formulas cancel: logcosh near 0, float16 inputs (computed
in float32, as PyTorch computes half precision), celu with a tiny alpha. References are
float64 formulas (math, NumPy) that do not cancel there."""

import math
import warnings

import numpy as np
import pytest

import fluxml as fl


def _grad(f, x):
    return fl.gradient(lambda x: np.sum(f(x)), x)[0]


def _logcosh64(v):  # log1p(cosh v - 1), cosh v - 1 = 2 sinh(v/2)^2: no cancellation
    return math.log1p(2 * math.sinh(abs(v) / 2) ** 2) if abs(v) < 20 else abs(v) - math.log(2)


# --- logcosh -------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-14), (np.float32, 3e-7),
                                         (np.float16, 1e-3)])
def test_logcosh_accurate_near_zero_and_everywhere(dtype, rtol):
    """x + softplus(-2x) - log 2 cancelled: float32 logcosh(1e-4) was 5.96e-8 (12 times the
    value), logcosh(-1e-4) 0, float16 logcosh(0.01) negative."""
    v = [1e-6, 1e-4, -1e-4, 1e-3, 1e-2, -0.01, 0.1, -0.5, 0.9, 1.5, -1.99, 2.0, 2.5, -3.7, 9.0]
    if dtype == np.float16:
        v = [t for t in v if abs(t) >= 1e-2]  # (below, x^2/2 is under float16's subnormals)
    x = np.array(v, dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = fl.logcosh(x)
    assert y.dtype == dtype
    expected = [_logcosh64(float(t)) for t in x]
    np.testing.assert_allclose(y.astype(np.float64), expected, rtol=rtol, atol=0)
    assert np.all(y >= 0)


def test_logcosh_at_infinities_and_nan():
    y = fl.logcosh(np.array([-np.inf, np.inf, np.nan]))
    assert y[0] == np.inf and y[1] == np.inf and np.isnan(y[2])  # (-inf gave NaN)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_logcosh_derivatives_are_tanh_and_its_slope(dtype):
    """1 - 2 sigmoid(-2x) cancelled as the value did: the derivative is tanh(x), accurate at
    small |x|, and its derivative 1 - tanh(x)^2, in both modes."""
    x = np.array([-1e-5, 1e-7, 0.3, -2.0, 2.0, 5.0, -30.0], dtype)
    t = np.tanh(x.astype(np.float64))
    rtol = 1e-14 if dtype == np.float64 else 2e-7
    g = _grad(fl.logcosh, x)
    assert g.dtype == dtype
    np.testing.assert_allclose(g, t, rtol=rtol)
    np.testing.assert_allclose(fl.jvp(fl.logcosh, (x,), (np.ones_like(x),))[1], t, rtol=rtol)
    h = _grad(lambda x: _grad(fl.logcosh, x), x)  # (1 - tanh^2: absolute error, near 1)
    np.testing.assert_allclose(h, 1 - t * t, rtol=rtol, atol=4 * np.finfo(dtype).eps)
    fl.testing.check_grads(fl.logcosh, np.array([-1.7, -0.2, 1e-3, 0.4, 2.3]), order=2)


# --- float16 -------------------------------------------------------------------------------------

def _sig64(v):
    return 1 / (1 + math.exp(-v))


def _softplus64(v):
    return max(v, 0.0) + math.log1p(math.exp(-abs(v)))


F16_VALUES = [  # (activation, float64 reference, points where float16 arithmetic cancelled)
    (fl.gelu_erf, lambda v: 0.5 * v * math.erfc(-v / math.sqrt(2)), [-3.0, -2.5, -4.0]),
    (fl.softplus, _softplus64, [-7.5625, -7.5, -6.0]),
    (fl.logsigmoid, lambda v: -_softplus64(-v), [7.5625, 7.5, 6.0]),
    (fl.mish, lambda v: v * math.tanh(_softplus64(v)), [-7.5625, -7.5, -6.0]),
    (fl.logcosh, _logcosh64, [0.01, 0.1, -0.3]),
]


@pytest.mark.parametrize("f, reference, points", F16_VALUES,
                         ids=[f.__name__ for f, _, _ in F16_VALUES])
def test_float16_values_within_a_half_ulp(f, reference, points):
    """gelu_erf(-3) was 8.5% off in float16, softplus(-7.5625) 5.8%: now as float32's,
    rounded once (2^-11 relative)."""
    x = np.array(points, np.float16)
    y = f(x)
    assert y.dtype == np.float16
    expected = np.array([reference(float(v)) for v in x])
    np.testing.assert_allclose(y.astype(np.float64), expected, rtol=2.0**-11, atol=0)


F16_SLOPES = [
    (fl.sigmoid, lambda v: _sig64(v) * _sig64(-v), [6.0, 5.0, 7.5, -6.0]),
    (fl.swish, lambda v: _sig64(v) + v * _sig64(v) * _sig64(-v), [6.0, 5.0, -2.0]),
    (fl.softplus, _sig64, [-7.5625, 3.0, 9.0]),
    (fl.gelu_erf, lambda v: 0.5 * math.erfc(-v / math.sqrt(2))
     + v * math.exp(-v * v / 2) / math.sqrt(2 * math.pi), [-3.0, 3.0, 1.3]),
]


@pytest.mark.parametrize("f, slope, points", F16_SLOPES,
                         ids=[f.__name__ for f, _, _ in F16_SLOPES])
def test_float16_derivatives_within_a_half_ulp(f, slope, points):
    """sigmoid's derivative at 6 was 18% off in float16 (ans (1 - ans), ans rounded near 1)."""
    x = np.array(points, np.float16)
    expected = np.array([slope(float(v)) for v in x])
    g = _grad(f, x)
    t = fl.jvp(f, (x,), (np.ones_like(x),))[1]
    for d in (g, t):
        assert d.dtype == np.float16
        np.testing.assert_allclose(d.astype(np.float64), expected, rtol=2.0**-11, atol=0)


@pytest.mark.parametrize("name", ["sigmoid", "logsigmoid", "softplus", "gelu_erf", "gelu_tanh",
                                  "swish", "mish", "lisht", "tanhshrink", "logcosh", "elu",
                                  "selu", "celu", "softsign", "hardswish", "hardsigmoid"])
def test_float16_stays_float16_at_every_order_and_extremes(name):
    f = getattr(fl, name)
    big = float(np.finfo(np.float16).max) / 2  # (selu scales by 1.05: its max overflows)
    x = np.array([-big, -1e4, -7.5, -0.3, 0.0, 0.3, 7.5, 1e4, big], np.float16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = f(x)
        g = _grad(lambda x: f(x) * 1e-3, x)  # (scaled: the sum of f16 values overflows)
        h = _grad(lambda x: _grad(lambda x: f(x) * 1e-3, x), x)
    for a in (y, g, h):
        if a is None:  # piecewise linear: the second derivative does not depend on x
            continue
        assert a.dtype == np.float16 and np.all(np.isfinite(a)), (name, a)
    # the same values as float32's, rounded once
    np.testing.assert_array_equal(y, f(x.astype(np.float32)).astype(np.float16))


def test_glu_float16_in_float32():
    x = np.array([[1.0, -3.0, 6.0, -6.0]], np.float16)
    y = fl.glu(x)
    assert y.dtype == np.float16
    np.testing.assert_array_equal(y, fl.glu(x.astype(np.float32)).astype(np.float16))


# --- celu with a tiny alpha ----------------------------------------------------------------------

@pytest.mark.parametrize("dtype, a", [(np.float16, 1e-5), (np.float32, 1e-39),
                                      (np.float64, 1e-310)])
def test_celu_tiny_alpha_no_nan(dtype, a):
    """min(x, 0) * (1 / a) was 0 * inf = NaN at every x >= 0 when 1 / a overflows."""
    x = np.array([-1.0, -0.5, 0.0, 2.0, 1e4], dtype)
    f = lambda x: fl.celu(x, a)  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = f(x)
        g = _grad(f, x)
        t = fl.jvp(f, (x,), (np.ones_like(x),))[1]
    assert y.dtype == g.dtype == t.dtype == dtype
    np.testing.assert_array_equal(y, np.array([-a, -a, 0.0, 2.0, 1e4], dtype))
    np.testing.assert_array_equal(g, np.array([0.0, 0.0, 1.0, 1.0, 1.0], dtype))
    np.testing.assert_array_equal(t, g)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (1 / a overflows: the second derivative at 0)
        h = _grad(lambda x: _grad(f, x), x)
    assert not np.any(np.isnan(h)) and np.all(h[[0, 1, 3, 4]] == 0)


def test_celu_usual_alpha_unchanged():
    x = np.array([-3.0, -0.4, 0.0, 0.7, 5.0])
    for a in (0.5, 1.5, 3.0):
        expected = np.maximum(x, 0) + np.minimum(0, a * np.expm1(x / a))
        np.testing.assert_allclose(fl.celu(x, a), expected, rtol=1e-15)
        np.testing.assert_allclose(_grad(lambda x: fl.celu(x, a), x),
                                   np.where(x > 0, 1.0, np.exp(np.minimum(x, 0) / a)), rtol=1e-15)
