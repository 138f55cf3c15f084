"""Activations: values against independent formulas (math, float64), derivatives against
finite differences (order 2, both modes), extreme inputs, dtypes, erf against math.erf."""

import math
import re
import warnings

import numpy as np
import pytest

import fluxml as fl
from fluxml.nnlib import activations
from fluxml.testing import check_grads

# away from every kink (0, +-0.5, +-1, +-3, 6)
X = np.array([-4.2, -2.3, -0.7, -0.2, 0.3, 0.8, 1.9, 3.6, 7.1])


def _scalar(f):
    return lambda x: np.array([f(float(v)) for v in x])


def _sig(v):
    return 1 / (1 + math.exp(-v))


def _softplus(v):
    return math.log1p(math.exp(v))


SELU_L, SELU_A = 1.0507009873554805, 1.6732632423543772

# name: (function, independent scalar formula)
TABLE = {
    "sigmoid": (fl.sigmoid, _sig),
    "hardsigmoid": (fl.hardsigmoid, lambda v: max(0.0, min(1.0, (v + 3) / 6))),
    "logsigmoid": (fl.logsigmoid, lambda v: math.log(_sig(v))),
    "relu": (fl.relu, lambda v: max(v, 0.0)),
    "relu6": (fl.relu6, lambda v: min(max(v, 0.0), 6.0)),
    "leakyrelu": (fl.leakyrelu, lambda v: v if v > 0 else 0.01 * v),
    "elu": (fl.elu, lambda v: v if v > 0 else math.exp(v) - 1),
    "gelu_tanh": (fl.gelu_tanh, lambda v: 0.5 * v * (1 + math.tanh(
        math.sqrt(2 / math.pi) * (v + 0.044715 * v**3)))),
    "gelu_erf": (fl.gelu_erf, lambda v: 0.5 * v * (1 + math.erf(v / math.sqrt(2)))),
    "swish": (fl.swish, lambda v: v * _sig(v)),
    "hardswish": (fl.hardswish, lambda v: v * max(0.0, min(1.0, (v + 3) / 6))),
    "selu": (fl.selu, lambda v: SELU_L * (v if v > 0 else SELU_A * (math.exp(v) - 1))),
    "celu": (lambda x: fl.celu(x, 1.5), lambda v: max(0.0, v) + min(
        0.0, 1.5 * (math.exp(v / 1.5) - 1))),
    "softplus": (fl.softplus, _softplus),
    "softsign": (fl.softsign, lambda v: v / (1 + abs(v))),
    "mish": (fl.mish, lambda v: v * math.tanh(_softplus(v))),
    "lisht": (fl.lisht, lambda v: v * math.tanh(v)),
    "tanhshrink": (fl.tanhshrink, lambda v: v - math.tanh(v)),
    "softshrink": (fl.softshrink, lambda v: v - 0.5 if v > 0.5 else v + 0.5 if v < -0.5 else 0),
    "hardshrink": (fl.hardshrink, lambda v: v if abs(v) > 0.5 else 0.0),
    "hardtanh": (fl.hardtanh, lambda v: max(-1.0, min(1.0, v))),
    "trelu": (fl.trelu, lambda v: v if v > 1 else 0.0),
    "logcosh": (fl.logcosh, lambda v: math.log(math.cosh(v))),
    "rrelu": (fl.rrelu, lambda v: v if v >= 0 else (1 / 8 + 1 / 3) / 2 * v),
}


def test_every_activation_is_in_the_table():
    assert set(activations.NAMES) - {"gelu", "gelu_sigmoid", "silu"} == set(TABLE)
    assert fl.gelu is fl.gelu_tanh and fl.silu is fl.swish and fl.gelu_sigmoid is fl.gelu_tanh


@pytest.mark.parametrize("name", sorted(TABLE))
def test_value(name):
    f, formula = TABLE[name]
    np.testing.assert_allclose(f(X), _scalar(formula)(X), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("name", sorted(TABLE))
def test_derivatives(name):
    check_grads(TABLE[name][0], X, order=2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(TABLE))
def test_extremes_finite_no_warnings(name, dtype):
    f = TABLE[name][0]
    big = np.finfo(dtype).max / 4
    x = np.array([-1e4, 1e4, -big, big, 0.0], dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = f(x)
        g = fl.gradient(lambda x: np.sum(f(x) * 1e-3), x)[0]
        (h,) = fl.gradient(lambda x: np.sum(fl.gradient(lambda x: np.sum(f(x)), x)[0]), x)
    for a in (y, g, h):
        if a is None:  # piecewise linear: the second derivative does not depend on x
            continue
        assert a.dtype == dtype and np.all(np.isfinite(a)), (name, a)
    for v, got in zip((-1e4, 1e4), y[:2]):
        try:
            expected = TABLE[name][1](v)
        except OverflowError:  # the naive formula overflows where ours does not
            continue
        np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_float32_stays_float32_and_scalars():
    x = np.linspace(-3, 3, 7, dtype=np.float32)
    for name, (f, _) in TABLE.items():
        assert f(x).dtype == np.float32, name
    assert float(fl.sigmoid(0.0)) == 0.5


def test_erf_against_math():
    x = np.linspace(-7, 7, 20001)
    err = np.max(np.abs(fl.nnlib.erf(x) - np.array([math.erf(v) for v in x])))
    assert err < 3e-15
    assert np.isnan(fl.nnlib.erf(np.array([np.nan])))[0]
    np.testing.assert_array_equal(fl.nnlib.erf(np.array([-np.inf, np.inf])), [-1, 1])
    check_grads(fl.nnlib.erf, np.array([-2.5, -0.3, 0.9, 1.7]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softplus_accurate_in_both_tails(dtype):
    x = np.concatenate([-np.logspace(-10, 2.5, 300), np.logspace(-10, 2.5, 300)]).astype(dtype)
    want = np.logaddexp(x.astype(np.float64), 0.0)
    got = fl.softplus(x)
    assert got.dtype == dtype
    tol = {"rtol": 4 * np.finfo(dtype).eps, "atol": np.finfo(dtype).tiny}  # subnormals
    np.testing.assert_allclose(got, want, **tol)
    np.testing.assert_allclose(fl.logsigmoid(x), -np.logaddexp(-x.astype(np.float64), 0.0),
                               **tol)


def test_relu_derivative_at_zero_is_zero():
    assert fl.gradient(lambda x: np.sum(fl.relu(x)), np.zeros(2))[0].tolist() == [0.0, 0.0]


def test_rrelu_random_only_when_active():
    x = -np.ones(10000)
    y = fl.rrelu(x, active=True, rng=np.random.default_rng(0))
    slopes = -y
    assert 1 / 8 <= slopes.min() and slopes.max() <= 1 / 3 and slopes.std() > 0.05
    np.testing.assert_array_equal(fl.rrelu(x), fl.rrelu(x))
    y32 = fl.rrelu(x.astype(np.float32), active=True)
    assert y32.dtype == np.float32
    with pytest.raises(ValueError, match="rrelu: expected lo <= hi"):
        fl.rrelu(x, 0.5, 0.1)


@pytest.mark.parametrize("name", sorted(TABLE))
def test_gradient_finite_at_the_largest_float_for_any_cotangent(name):
    """A product rule would give g * x = inf near the largest float (for |g| > 2), times a
    vanishing factor: NaN. mish, lisht and hardswish did so (found by
    tests/nnlib/torch_fuzz.py)."""
    f = TABLE[name][0]
    top = np.finfo(np.float64).max / 2  # selu(top) overflows, as it should
    x = np.array([-top, top])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, back = fl.pullback(f, x)
        (g,) = back(np.array([3.0, 3.0]))
    assert np.all(np.isfinite(g)), (name, g)
    if name in ("mish", "lisht", "hardswish"):  # slopes 0 and 1 in the tails (lisht: -1, 1)
        np.testing.assert_allclose(g, [-3.0 if name == "lisht" else 0.0, 3.0])


@pytest.mark.parametrize("f", [fl.mish, fl.lisht])
def test_mish_and_lisht_second_derivative_finite_at_the_largest_float(f):
    """Their slopes' terms x * (a vanishing factor) are primitives whose own slopes never
    multiply by x alone: the second derivative was NaN (inf * 0) for |x| above half the
    largest float. Third order at ordinary points against finite differences."""
    top = np.finfo(np.float64).max
    x = np.array([-top, -top / 2, top / 2, top])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        def slope(x):  # the first derivative for a cotangent of 3 (f(x) * 3 overflows)
            return fl.pullback(f, x)[1](np.full(4, 3.0))[0]

        d2 = fl.gradient(lambda x: np.sum(slope(x)), x)[0]
    np.testing.assert_array_equal(d2, 0.0)
    check_grads(f, np.linspace(-6, 6, 7) + 0.1, order=3)


def test_glu_halves_the_axis():
    x = np.random.default_rng(0).standard_normal((2, 6, 3))
    sig = 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(fl.glu(x, axis=1), x[:, :3] * sig[:, 3:], rtol=1e-14)
    np.testing.assert_allclose(fl.glu(x[..., :2]), x[..., :1] * sig[..., 1:2], rtol=1e-14)
    check_grads(lambda x: fl.glu(x, axis=1), x)
    assert fl.glu(np.ones((1, 4), np.float32)).dtype == np.float32
    with pytest.raises(ValueError, match=r"glu: expected an axis of even size .* axis=-1 of an "
                                         r"array of shape \(2, 6, 3\)"):
        fl.glu(x)
    with pytest.raises(ValueError, match="glu: expected an axis of even size"):
        fl.glu(x, axis=3)


REAL_ONLY = ["celu", "elu", "gelu_erf", "hardshrink", "hardsigmoid", "hardswish", "hardtanh",
             "leakyrelu", "logcosh", "logsigmoid", "mish", "relu", "relu6", "rrelu", "selu",
             "softplus", "softshrink", "trelu"]


@pytest.mark.parametrize("name", fl.nnlib.activations.NAMES)
def test_inputs_as_numpy_takes_them_and_clear_errors(name):
    """Lists failed ('>' not supported between list and int, 'Field elements must be 2- or
    3-tuples'); strings and None failed in NumPy's words; complex numbers went through
    lexicographic comparisons (relu), dropped their imaginary parts with a warning (gelu_erf)
    or failed in a ufunc cast (softplus): each a clear TypeError now naming the function, where
    the function is one of real numbers."""
    f = getattr(fl, name)
    np.testing.assert_allclose(f([0.5, -1.0]), f(np.array([0.5, -1.0])))
    # booleans as 0 and 1 (NumPy cannot negate them: sigmoid, softplus ... failed)
    np.testing.assert_allclose(f(np.array([True, False])), f(np.array([1.0, 0.0])))
    np.testing.assert_allclose(f(True), f(1.0))
    for bad in ("abc", None, {"x": 1.0}):  # (gelu and gelu_sigmoid are gelu_tanh: its name)
        with pytest.raises(TypeError, match=f"{f.__name__} expects an array of numbers"):
            f(bad)
    z = np.array([0.5 + 0.25j, -1.0 + 0.5j])
    if name in REAL_ONLY:
        with pytest.raises(TypeError, match=f"{name} is a function of real numbers"):
            f(z)
    else:  # analytic: the same formula, complex
        assert f(z).dtype == np.complex128


def test_compiled_activations_take_booleans():
    """Under fl.compile the boolean input failed: 'converting a traced integer array to a
    NumPy array' (review)."""
    mask = np.array([True, False])
    for f in (fl.sigmoid, fl.relu, fl.elu):
        np.testing.assert_allclose(fl.compile(f)(mask), f(np.array([1.0, 0.0])))


# Scalar hyperparameters that are not real numbers: only ints, floats and NumPy numbers were
# checked, so a complex slope made a complex output, silently, and a string or None raised
# NumPy's ufunc error. Now refused by name.
@pytest.mark.parametrize("call, message", [
    (lambda x: fl.leakyrelu(x, 1j), "leakyrelu: a (the slope below 0) must be a finite number; "
                                    "got 1j (a complex)"),
    (lambda x: fl.leakyrelu(x, "0.1"), "leakyrelu: a (the slope below 0) must be"),
    (lambda x: fl.elu(x, None), "elu: a must be a finite number; got None"),
    (lambda x: fl.hardtanh(x, 1j, 2.0), "hardtanh: lo must be a finite number"),
    (lambda x: fl.trelu(x, 1 + 0j), "trelu: theta must be a finite number"),
    (lambda x: fl.softshrink(x, "1"), "softshrink: lambd must be a finite number >= 0"),
])
def test_scalar_hyperparameters_are_real_numbers(call, message):
    x = np.array([-2.0, 0.5])
    with pytest.raises(ValueError, match=re.escape(message)):
        call(x)
    # a slope given as a 0-d array is still a number: the same as the float
    np.testing.assert_array_equal(fl.leakyrelu(x, np.array(0.1)), [-0.2, 0.5])
