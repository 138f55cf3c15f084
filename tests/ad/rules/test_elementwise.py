"""Elementwise rules: every registered ufunc and function against finite differences (order 2,
both modes), NumPy's forward values and dtypes, stability at extreme inputs, ties, and the
functions that carry no derivative."""

import math
import warnings

import numpy as np
import pytest

import fluxml as fl
from fluxml.ad.core import NONDIFF
from fluxml.ad.rules import elementwise, elementwise_more
from fluxml.testing import check_grads

# Inputs away from every kink: no integers (floor, remainder), no ties (maximum), no zeros
# (abs, sign), no powers of two (frexp). Binary cases broadcast (3, 4) against (4,) or (3, 1).
A = np.array([[0.31, -1.27, 0.83, 1.54], [-0.62, 0.17, -1.91, 0.46], [1.12, -0.38, 0.71, -1.43]])
B = np.array([0.52, -0.93, 1.37, -0.24])
COL = np.array([[0.44], [-1.08], [0.29]])
POS = np.abs(A) + 0.3  # positive: log, sqrt, power bases
POS_B = np.abs(B) + 0.5
UNIT = 0.4 * A  # |x| < 1: arcsin, arccos, arctanh
BIG = np.abs(A) + 1.2  # > 1: arccosh
MASK = A > 0
EXP_INT = np.array([1, -2, 0, 3])  # ldexp exponents

CASES = [
    # arithmetic
    (np.add, np.add, (A, B)),
    (np.add, lambda x, y: x + y, (A, COL)),
    (np.subtract, np.subtract, (A, B)),
    (np.subtract, lambda x, y: x - y, (COL, A)),
    (np.multiply, np.multiply, (A, B)),
    (np.multiply, lambda x, y: x * y, (A, COL)),
    (np.negative, np.negative, (A,)),
    (np.negative, lambda x: -x, (A,)),
    (np.positive, np.positive, (A,)),
    (np.true_divide, np.true_divide, (A, POS_B)),
    (np.true_divide, lambda x, y: x / y, (COL, A)),
    (np.reciprocal, np.reciprocal, (A,)),
    (np.square, np.square, (A,)),
    (np.sqrt, np.sqrt, (POS,)),
    (np.cbrt, np.cbrt, (A,)),
    (np.absolute, np.abs, (A,)),
    (np.absolute, abs, (A,)),
    (np.fabs, np.fabs, (A,)),
    (np.copysign, np.copysign, (A, B)),
    (np.ldexp, lambda x: np.ldexp(x, EXP_INT), (A,)),
    (np.power, np.power, (POS, B)),
    (np.power, lambda x: x ** 3, (A,)),
    (np.power, lambda x: np.power(x, -1.5), (POS,)),
    (np.power, lambda y: 2.5 ** y, (A,)),
    (np.float_power, np.float_power, (POS, B)),
    (np.sign, lambda x: np.sign(x) * x, (A,)),
    (np.floor, lambda x: np.floor(x) + x, (A,)),
    (np.ceil, lambda x: np.ceil(x) * x, (A,)),
    (np.trunc, lambda x: np.trunc(x) + x, (A,)),
    (np.rint, lambda x: np.rint(x) * x, (A,)),
    (np.spacing, lambda x: np.spacing(x) + x, (A,)),
    (np.nextafter, np.nextafter, (A, B)),  # no rule before
    (np.nextafter, lambda x: np.nextafter(x, np.inf) * x, (A,)),
    (np.floor_divide, lambda x, y: np.floor_divide(x, y) * x * y, (A, B)),
    (np.floor_divide, lambda x, y: (x // y) + y, (A, COL)),
    (np.remainder, np.remainder, (A, B)),
    (np.remainder, lambda x, y: x % y, (COL, A)),
    (np.fmod, np.fmod, (A, B)),
    (np.divmod, np.divmod, (A, B)),
    (np.modf, np.modf, (A,)),
    (np.frexp, lambda x: np.frexp(x)[0], (A,)),
    (np.heaviside, np.heaviside, (A, B)),
    (np.heaviside, lambda h: np.heaviside(np.array([0.0, 1.0, -1.0, 0.0], like=h), h), (B,)),
    # exponentials and logarithms
    (np.exp, np.exp, (A,)),
    (np.exp2, np.exp2, (A,)),
    (np.expm1, np.expm1, (A,)),
    (np.log, np.log, (POS,)),
    (np.log2, np.log2, (POS,)),
    (np.log10, np.log10, (POS,)),
    (np.log1p, np.log1p, (POS,)),
    (np.logaddexp, np.logaddexp, (A, B)),
    (np.logaddexp2, np.logaddexp2, (A, COL)),
    # trigonometry
    (np.sin, np.sin, (A,)),
    (np.cos, np.cos, (A,)),
    (np.tan, np.tan, (UNIT,)),
    (np.arcsin, np.arcsin, (UNIT,)),
    (np.arccos, np.arccos, (UNIT,)),
    (np.arctan, np.arctan, (A,)),
    (np.arctan2, np.arctan2, (A, B)),
    (np.hypot, np.hypot, (A, COL)),
    (np.deg2rad, np.deg2rad, (A,)),
    (np.radians, np.radians, (A,)),
    (np.rad2deg, np.rad2deg, (A,)),
    (np.degrees, np.degrees, (A,)),
    # hyperbolic
    (np.sinh, np.sinh, (A,)),
    (np.cosh, np.cosh, (A,)),
    (np.tanh, np.tanh, (A,)),
    (np.arcsinh, np.arcsinh, (A,)),
    (np.arccosh, np.arccosh, (BIG,)),
    (np.arctanh, np.arctanh, (UNIT,)),
    # maximum and minimum
    (np.maximum, np.maximum, (A, B)),
    (np.minimum, np.minimum, (A, COL)),
    (np.fmax, np.fmax, (A, B)),
    (np.fmin, np.fmin, (COL, A)),
    # functions
    (np.clip, lambda x: np.clip(x, -1.0, 1.0), (A,)),
    (np.clip, lambda x: np.clip(x, None, 0.5), (A,)),
    (np.clip, lambda x, lo, hi: np.clip(x, lo, hi), (A, B - 0.4, B + 0.3)),
    (np.clip, lambda x, lo: x.clip(min=lo), (A, COL)),
    (np.where, lambda x, y: np.where(MASK, x, y), (A, B)),
    (np.where, lambda x: np.where(MASK, x ** 2, 0.0), (A,)),
    (np.nan_to_num, lambda x: np.nan_to_num(x) * x, (A,)),
    (np.round, lambda x: np.round(x, 1) + x, (A,)),
    (np.around, lambda x: np.around(x) * x, (A,)),
    (np.fix, lambda x: np.fix(x) + x, (A,)),
    (np.real, np.real, (A,)),
    (np.imag, lambda x: np.imag(x) + x, (A,)),
    (np.conjugate, np.conj, (A,)),
    (np.conjugate, np.conjugate, (A,)),
    (np.sinc, np.sinc, (A,)),
    (np.sinc, np.sinc, (np.array([0.0, 0.05, -0.2, 0.26, 3.0]),)),
    # no rule before (a DifferentiationError); each branch of I1: series, [2, 8], above 8
    (np.i0, np.i0, (A,)),
    (np.i0, np.i0, (np.array([0.0, -1.9, 2.1, 5.0, -7.9, 8.1, 12.0, -30.0]),)),
]


# --- flags ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("prim, inputs, output", [
    (elementwise.EXP, False, True), (elementwise.SIN, True, False),
    (elementwise.TANH, False, True), (elementwise.ADD, False, False),
    (elementwise.SQRT, False, True), (elementwise.LOG, True, False),
    (elementwise_more.FLOOR, False, False), (elementwise_more.WHERE, False, False),
    (elementwise_more.MAXIMUM, True, False),
])
def test_keeps_flags(prim, inputs, output):
    assert (prim.keeps_inputs, prim.keeps_output) == (inputs, output)


def test_real_and_conj_return_fresh_arrays():
    x = A.copy()
    for prim in (elementwise_more.REAL, elementwise_more.IMAG, elementwise_more.CONJUGATE):
        out = prim.impl(x)
        assert out is not x and not np.shares_memory(out, x)


# --- stability: finite gradients, no RuntimeWarning ----------------------------------------------

@pytest.mark.parametrize("f, args, expected", [
    (np.logaddexp, (1000.0, 1000.0), (0.5, 0.5)),
    (np.logaddexp, (-1000.0, 1000.0), (0.0, 1.0)),
    (np.logaddexp2, (1000.0, -1000.0), (1.0, 0.0)),
    (np.tanh, (1e3,), (0.0,)),
    (np.arcsinh, (1e200,), (1e-200,)),
    (np.arctan2, (1e200, 1e200), (0.5e-200, -0.5e-200)),
    (np.hypot, (0.0, 0.0), (0.0, 0.0)),
    (np.hypot, (3e200, 4e200), (0.6, 0.8)),
    (lambda x: np.power(x, 0), (0.0,), (0.0,)),
    (lambda x: x ** 2, (0.0,), (0.0,)),
    (np.sinc, (0.0,), (0.0,)),
    (np.exp, (700.0,), (math.exp(700.0),)),
])
def test_stable_gradients(f, args, expected):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        grads = fl.gradient(f, *args)
    np.testing.assert_allclose(grads, expected, rtol=1e-12, atol=0)


def test_sinc_second_derivative_at_zero():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        h = fl.hessian(lambda x: np.sum(np.sinc(x)), np.zeros(1))
    np.testing.assert_allclose(h, [[-math.pi ** 2 / 3]], rtol=1e-12)


def test_sinc_third_order_across_the_series_boundary():
    check_grads(np.sinc, np.array([0.0, 0.1, -0.249, 0.251, 1.3]), order=3)


# --- ties, kinks, bounds -------------------------------------------------------------------------

def test_maximum_ties_split_evenly():
    x = np.array([1.0, 2.0, 3.0])
    c = np.array([1.0, 5.0, 0.0])
    for uf in (np.maximum, np.minimum, np.fmax, np.fmin):
        gx, gc = fl.gradient(lambda a, b, uf=uf: np.sum(uf(a, b)), x, c)
        assert gx[0] == gc[0] == 0.5
        assert gx[1] + gc[1] == 1.0 and gx[2] + gc[2] == 1.0
    (g,) = fl.gradient(lambda a: np.sum(np.maximum(a, a)), x)
    np.testing.assert_array_equal(g, [1.0, 1.0, 1.0])


def test_fmax_skips_nan():
    x = np.array([np.nan, 1.0])
    y = np.array([2.0, np.nan])
    gx, gy = fl.gradient(lambda a, b: np.sum(np.fmax(a, b)), x, y)
    np.testing.assert_array_equal(gx, [0.0, 1.0])
    np.testing.assert_array_equal(gy, [1.0, 0.0])


def test_clip_gradient_inside_bounds_included_and_to_binding_bounds():
    x = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
    gx, = fl.gradient(lambda a: np.sum(np.clip(a, -1.0, 1.0)), x)
    np.testing.assert_array_equal(gx, [0, 1, 1, 1, 0])
    lo, hi = np.full(5, -1.0), np.full(5, 1.0)
    gx, glo, ghi = fl.gradient(lambda a, b, c: np.sum(np.clip(a, b, c)), x, lo, hi)
    np.testing.assert_array_equal(gx, [0, 1, 1, 1, 0])
    np.testing.assert_array_equal(glo, [1, 0, 0, 0, 0])
    np.testing.assert_array_equal(ghi, [0, 0, 0, 0, 1])
    # scalar bounds: the cotangent sums over the entries where the bound binds
    gx, glo = fl.gradient(lambda a, b: np.sum(np.clip(a, b, None)), x, -0.5)
    assert glo == 2.0


def test_abs_at_zero_has_zero_derivative():
    (g,) = fl.gradient(lambda x: np.sum(np.abs(x)), np.array([0.0, -2.0]))
    np.testing.assert_array_equal(g, [0.0, -1.0])


def test_floor_gives_zero_gradient_not_none():
    """Decision: a piecewise-constant function has derivative 0, so a loss that depends on
    x only through floor (ceil, sign, rint, round ...) gets a zero gradient, not None: the
    output does depend on x, just with slope 0 (as JAX does). ``None`` stays reserved for
    arguments the output does not depend on at all."""
    x = np.array([0.3, 1.7])
    for f in (np.floor, np.ceil, np.trunc, np.rint, np.sign, np.round, np.fix):
        (g,) = fl.gradient(lambda a, f=f: np.sum(f(a)), x)
        np.testing.assert_array_equal(g, [0.0, 0.0])
    jv = fl.jvp(lambda a: np.floor(a), (x,), (np.ones(2),))[1]
    np.testing.assert_array_equal(jv, [0.0, 0.0])


def test_nan_to_num_gradient_one_where_finite():
    x = np.array([1.5, np.nan, np.inf, -np.inf])
    (g,) = fl.gradient(lambda a: np.sum(np.nan_to_num(a, posinf=9.0, neginf=-9.0) * 2), x)
    np.testing.assert_array_equal(g, [2.0, 0.0, 0.0, 0.0])
    # a traced replacement value gets the cotangent of the entries it fills (NumPy dispatches
    # on x alone, so x must be traced too for the call to reach fluxml)
    gx, gv = fl.gradient(lambda a, v: np.sum(np.nan_to_num(a, nan=v, posinf=0.0, neginf=0.0)),
                         x, 3.0)
    np.testing.assert_array_equal(gx, [1.0, 0.0, 0.0, 0.0])
    assert gv == 1.0


def test_where_with_single_argument_is_nonzero():
    def f(x):
        idx = np.where(x > 0)
        assert type(idx[0]) is np.ndarray
        return np.sum(x[idx])

    (g,) = fl.gradient(f, np.array([1.0, -1.0, 2.0]))
    np.testing.assert_array_equal(g, [1.0, 0.0, 1.0])


def test_operators_route_to_rules():
    x, y = np.array([1.3, -0.7]), np.array([0.4, 0.9])
    check_grads(lambda a, b: divmod(a, b)[1] + abs(a) + (+a) + abs(a) ** b.clip(0, 1), x, y)


# --- no derivative: plain NumPy results inside a gradient ----------------------------------------

NONDIFF_CALLS = [
    lambda x: x > 0, lambda x: x <= 0.5, lambda x: np.less(x, 0), np.isnan, np.isfinite,
    np.isinf, np.signbit, lambda x: np.equal(x, x), lambda x: np.not_equal(x, 0),
    lambda x: np.greater_equal(x, 0), lambda x: np.logical_and(x > 0, x < 1),
    lambda x: np.logical_not(x > 0), lambda x: np.logical_or(x > 0, x < -1),
    lambda x: np.logical_xor(x > 0, x < 1), np.argmax, np.argmin, np.argsort,
    np.flatnonzero, np.count_nonzero, np.isposinf, np.isneginf, np.argwhere,
    lambda x: np.searchsorted(np.sort(x), 0.0), lambda x: np.isclose(x, 0.5),
    lambda x: np.allclose(x, 0.5), lambda x: np.array_equal(x, x),
    lambda x: np.array_equiv(x, x), lambda x: x.argmax(), lambda x: x.searchsorted(0.0),
    lambda x: np.digitize(x, [0.0, 1.0]),
    # no rule before (a DifferentiationError): positions, membership, a type test
    lambda x: np.isin(x, [2.0, 0.3]), lambda x: np.tril_indices_from(np.outer(x, x))[1],
    lambda x: np.triu_indices_from(np.outer(x, x), 1)[0],
    lambda x: np.diag_indices_from(np.outer(x, x))[0], np.nanargmax, np.nanargmin,
    lambda x: np.can_cast(x, np.float32),
]


def test_nextafter_moves_by_one_step_with_slope_one():
    # no rule before (a DifferentiationError): the value is NumPy's, the slope 1 in x and 0
    # in y (where x == y too: moving both, the result follows x)
    x, y = np.array([1.0, 2.0, -3.0]), np.array([2.0, 2.0, -4.0])
    got, back = fl.pullback(np.nextafter, x, y)
    np.testing.assert_array_equal(got, np.nextafter(x, y))
    gx, gy = back(np.ones(3))
    np.testing.assert_array_equal(gx, [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(gy, [0.0, 0.0, 0.0])


def test_type_queries_and_plans_read_the_values():
    # no rule before: np.min_scalar_type, np.common_type and np.einsum_path of traced arrays
    def f(x):
        assert np.min_scalar_type(x) == np.float64 and np.common_type(x) is np.float64
        assert np.einsum_path("i,i->", x, x)[0] == ["einsum_path", (0, 1)]
        m = np.outer(x, x)
        return np.sum(m[np.triu_indices_from(m, 1)])

    (g,) = fl.gradient(f, np.array([0.3, -1.2, 2.0]))
    np.testing.assert_allclose(g, [-1.2 + 2.0, 0.3 + 2.0, 0.3 - 1.2])


@pytest.mark.parametrize("call", NONDIFF_CALLS)
def test_nondifferentiable_results_are_plain(call):
    seen = []

    def f(x):
        seen.append(call(x))
        return np.sum(x)

    fl.gradient(f, np.array([0.3, -1.2, 2.0]))
    out = seen[0]
    assert type(out) is not fl.Tracer
    assert isinstance(out, (np.ndarray, np.generic, bool, int))


def test_nonzero_and_integer_ufuncs_are_plain():
    for uf in (np.bitwise_and, np.bitwise_or, np.bitwise_xor, np.invert, np.left_shift,
               np.right_shift, np.gcd, np.lcm, np.isnat, np.nonzero, np.count_nonzero):
        assert uf in NONDIFF

    def f(x):
        nz = np.nonzero(x > 0)
        assert all(type(i) is np.ndarray for i in nz)
        i = np.argsort(x)
        for out in (np.bitwise_and(i, 1), np.bitwise_or(i, 1), np.bitwise_xor(i, 1),
                    np.invert(i), np.left_shift(i, 1), np.right_shift(i, 1), np.gcd(i, 4),
                    np.lcm(i, 4)):
            assert type(out) is np.ndarray
        return np.sum(x)

    fl.gradient(f, np.array([0.3, -1.2, 2.0]))


def test_printing_a_traced_array_shows_its_values():
    """np.array2string, array_repr and array_str (printing inside fl.gradient or fl.jvp) raised
    'no derivative rule'; under fl.compile the values are not known: refused by name."""
    x = np.array([1.0, 2.5])
    seen = []

    def f(a):
        seen.append((np.array2string(a, precision=1), np.array_repr(a), np.array_str(a)))
        return np.sum(a * a)

    fl.gradient(f, x)
    fl.jvp(f, (x,), (np.ones(2),))
    assert seen == [(np.array2string(x, precision=1), np.array_repr(x), np.array_str(x))] * 2
    with pytest.raises(fl.compiler.CompileError, match="np.array2string on a traced array"):
        fl.compile(f)(x)
