"""Numerical routines (trapezoid, gradient, convolve/correlate, interp, polynomials, cross,
linspace/logspace, cov/corrcoef, apply_along_axis): composites of ruled operations. The registry
harness checks every case below against finite differences (first and second order, both
modes), NumPy's values and float32; the tests here cover the errors and a few exact values."""

import itertools
import warnings

import numpy as np
import pytest

import fluxml as fl
from tests.ad.rules.numpy_errors import raises_as_numpy

rng = np.random.default_rng(7)
A = rng.standard_normal((4, 5))
V = rng.standard_normal(5)
W = rng.standard_normal(3)
XS = np.array([0.0, 0.4, 1.1, 1.5])  # uneven coordinates along A's axis 0
YS = np.array([0.0, 0.5, 0.9, 1.6, 2.0])  # and along axis 1
XP = np.array([0.0, 1.0, 1.5, 3.0, 4.0])  # interp knots
Q = np.array([-1.0, 0.3, 1.2, 1.7, 2.9, 3.6, 5.0])  # strictly inside segments, or outside
M = rng.standard_normal((3, 6))
SAMPLES = np.array([0.05, 0.83, 0.5, 0.95, 0.2, 0.6])  # 0.08+ from the inner edges below
EDGES = np.array([-0.1, 0.3, 0.7, 1.1])
SAMPLES2 = np.array([0.9, 0.1, 0.45, 0.25, 0.7, 0.6])  # 0.08+ from the inner edges too
PAIRS = np.stack([SAMPLES, SAMPLES2], axis=1)
P = rng.standard_normal(4)
Y6 = rng.standard_normal(6)
# phases with jumps of every size, none within 0.05 of a decision point (pi, discont, ...)
PHASES = np.cumsum([[0.3, 2.0, -3.5, 4.0, 0.5, -6.1, 3.3], [1.0, -0.5, 3.0, 2.8, -2.9, 7.0, 1.1],
                    [-1.2, 4.9, 0.2, -4.1, 3.6, 1.7, -3.2]], axis=1)


def _quiet(f):
    """NumPy deprecates arrays of 2-vectors in np.cross (and so do we): keep tests quiet."""

    def g(*args):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return f(*args)

    return g


def _trapezoid_cases(trapezoid):
    return [
        (trapezoid, lambda y: trapezoid(y), (A,)),
        (trapezoid, lambda y: trapezoid(y, dx=0.3, axis=0), (A,)),
        (trapezoid, lambda y: trapezoid(y, YS), (A,)),  # 1-D coordinates, untraced
        (trapezoid, lambda y, x: trapezoid(y, x, axis=0), (A, XS)),  # traced coordinates
        (trapezoid, lambda y, x: trapezoid(y, x + YS), (A, XS[:, None])),  # 2-D coordinates
        (trapezoid, lambda x: trapezoid(A, x * x), (YS + 1.0,)),  # only x traced
    ]


CASES = _trapezoid_cases(np.trapezoid) + [
    (np.gradient, lambda f: np.gradient(f), (A,)),  # both axes: a tuple
    (np.gradient, lambda f: np.gradient(f, 0.5, axis=1, edge_order=2), (A,)),
    (np.gradient, lambda f: np.gradient(f, XS, YS, edge_order=1), (A,)),
    (np.gradient, lambda f: np.gradient(f, XS, 2.0, edge_order=2), (A,)),
    (np.gradient, lambda f: np.gradient(f, np.arange(5), axis=-1), (A,)),  # even: scalar step
    (np.gradient, lambda f: np.gradient(f, axis=(1, 0)), (A,)),
    (np.gradient, lambda f, x: np.gradient(f, x, axis=0, edge_order=2), (A, XS)),
    (np.gradient, lambda x: np.gradient(np.sin(x), x, edge_order=2), (YS,)),
    (np.gradient, lambda f, x: np.gradient(f, x), (V, np.arange(5.0))),  # traced, even
    (np.gradient, lambda f, h: np.gradient(f, h, edge_order=2), (V, 0.7)),  # traced step
    (np.unwrap, lambda p: np.unwrap(p), (PHASES,)),
    (np.unwrap, lambda p: np.unwrap(p, axis=0, discont=4.0), (PHASES,)),
    (np.unwrap, lambda p: np.unwrap(p, period=3), (PHASES,)),  # an integer period
    (np.unwrap, lambda p: np.unwrap(p * 10.0, period=360.0), (PHASES,)),
    (np.convolve, lambda a, v: np.convolve(a, v), (V, W)),
    (np.convolve, lambda a, v: np.convolve(a, v, mode="same"), (W, V)),
    (np.convolve, lambda a, v: np.convolve(a, v, "valid"), (V, W)),
    (np.convolve, lambda a: np.convolve(a, [1.0, -2.0, 1.0], "same"), (V,)),
    (np.convolve, lambda v: np.convolve(V[:4], v, "same"), (W,)),
    (np.correlate, lambda a, v: np.correlate(a, v), (V, W)),
    (np.correlate, lambda a, v: np.correlate(a, v, "same"), (V[:4], W[:2])),
    (np.correlate, lambda a, v: np.correlate(a, v, mode="full"), (W, V)),
    (np.correlate, lambda a, v: np.correlate(a, v, "same"), (W[:2], V[:4])),
    (np.interp, lambda x, fp: np.interp(x, XP, fp), (Q, V)),
    (np.interp, lambda x, xp, fp: np.interp(x, xp, fp, left=-2.0, right=3.0), (Q, XP, V)),
    (np.interp, lambda x: np.interp(x, XP, V), (Q[2:5].reshape(3, 1),)),
    (np.interp, lambda fp, left: np.interp(Q, XP, fp, left=left), (V, 0.5)),
    (np.interp, lambda x, fp: np.interp(x, XP, fp, period=4.5), (Q, V)),
    (np.interp, lambda x, fp: np.interp(x, XP[:1], fp), (Q, V[:1])),
    (np.polyval, lambda p, x: np.polyval(p, x), (P, A)),
    (np.polyval, lambda p: np.polyval(p, 0.7), (P,)),
    (np.polyval, lambda x: np.polyval([2.0, -1.0, 0.5], x), (V,)),
    (np.polyder, lambda p: np.polyder(p), (P,)),
    (np.polyder, lambda p: np.polyder(p, m=2) * p[0], (P,)),
    (np.polyint, lambda p: np.polyint(p), (P,)),
    (np.polyint, lambda p, k: np.polyint(p, 2, k), (P, W[:2])),
    (np.polyint, lambda p: np.polyint(p, m=3, k=1.5), (P,)),
    # no rules before (DifferentiationError): vander and the coefficient arithmetic
    (np.vander, lambda x: np.vander(x), (V,)),
    (np.vander, lambda x: np.vander(x, 3, increasing=True), (W,)),
    (np.polyadd, lambda a, b: np.polyadd(a, b), (V, W)),
    (np.polyadd, lambda a: np.polyadd(2.0, a), (W,)),
    (np.polysub, lambda a, b: np.polysub(a, b), (W, V)),
    (np.polymul, lambda a, b: np.polymul(a, b), (V, W)),
    (np.polymul, lambda a: np.polymul(np.concatenate([[0.0, 0.0], a]), W), (V,)),  # trimmed
    (np.polydiv, lambda u, v: np.polydiv(u, v), (V, W)),
    (np.polydiv, lambda u, v: np.polydiv(u, v), (W[:2], V)),  # a zero quotient
    (np.poly, lambda r: np.poly(r), (V,)),
    (np.poly, lambda a: np.poly(a), (M[:, :3] + 2 * np.eye(3),)),  # of the eigenvalues
    (np.roots, lambda p: np.roots(p), (np.array([1.0, -0.5, -2.0, 0.8]),)),  # real roots
    (np.roots, lambda p: np.roots(p), (np.array([1.0, 0.5, 1.0]),)),  # a conjugate pair
    (np.roots, lambda p: np.roots(np.concatenate([[0.0], p, [0.0]])), (W,)),  # zeros cut
    (np.polyfit, lambda x, y: np.polyfit(x, y, 2), (Y6 / 4 + np.arange(6.0), M[0])),
    (np.polyfit, lambda y, w: np.polyfit(np.arange(6.0), y, 3, w=w), (M.T, Y6 * Y6 + 0.5)),
    (np.polyfit, lambda y: np.polyfit(np.arange(6.0), y, 2, cov=True), (M[1],)),
    (np.polyfit, lambda y: np.polyfit(np.arange(6.0), y, 1, full=True)[:2], (M[2],)),
    (np.cross, lambda a, b: np.cross(a, b), (M[:, :3], M[:, 3:])),
    (np.cross, lambda a, b: np.cross(a, b, axisa=0, axisb=0), (M[:, :4], A[1:, :4])),
    (np.cross, lambda a, b: np.cross(a, b, axisb=0, axisc=0), (A[:, :3], M[:, :4])),
    (np.cross, lambda a, b: np.cross(a, b, axis=0), (M[:, :2], M[:, 4:])),
    (np.cross, lambda a: np.cross(a, [0.0, 0.0, 1.0]), (M[:, :3],)),
    (np.cross, _quiet(lambda a, b: np.cross(a, b)), (M[:2, 0], M[:2, 1])),  # 2-vectors
    (np.cross, _quiet(lambda a, b: np.cross(a, b)), (M[:, :2], M[:, 3:])),
    (np.cross, _quiet(lambda a, b: np.cross(a, b)), (M[:, 3:], M[:, :2])),
    (np.linspace, lambda a, b: np.linspace(a, b, 7), (0.5, 2.0)),
    (np.linspace, lambda a, b: np.linspace(a, b, 5, endpoint=False, retstep=True), (W, V[:3])),
    (np.linspace, lambda b: np.linspace(0, b, 4, axis=-1), (W,)),
    (np.linspace, lambda a: np.linspace(a, 3.0, 6, axis=1), (A[:2, :2],)),
    (np.linspace, lambda a, b: np.linspace(a, b, 1), (W, V[:3])),
    (np.linspace, lambda a, b: np.linspace(a, b, 4, retstep=True)[1] * a, (0.3, 1.9)),
    (np.logspace, lambda a, b: np.logspace(a, b, 5), (W, V[:3])),
    (np.logspace, lambda b: np.logspace(0.0, b, 4, base=2.0, axis=1), (W,)),
    (np.logspace, lambda a, b: np.logspace(a, b, 3, base=[2.0, 3.0, 0.5]), (W, V[:3])),
    # no rules before (DifferentiationError): geomspace, apply_over_axes
    (np.geomspace, lambda a, b: np.geomspace(a, b, 6), (0.5, 4.0)),
    (np.geomspace, lambda a, b: np.geomspace(-a * a - 1, -b * b - 2, 4, endpoint=False),
     (W, V[:3])),
    (np.geomspace, lambda b: np.geomspace(2.0, b * b + 1, 5, axis=1), (M[:, :2],)),
    # complex ends (refused before: 'known to be right for real values only'), the start
    # rotated onto the positive reals and back
    (np.geomspace, lambda a, b: np.geomspace(a, b, 5), (1.0 + 1.0j, -2.0 - 0.5j)),
    (np.geomspace, lambda a, b: np.geomspace(a, b, 4, endpoint=False), (-0.5j, 3.0 + 0.1j)),
    (np.apply_over_axes, lambda a: np.apply_over_axes(np.sum, a, [0, -1]), (M.reshape(3, 2, 3),)),
    (np.apply_over_axes, lambda a: np.apply_over_axes(np.cumprod, a, 1), (A,)),
    (np.cov, lambda m: np.cov(m), (M,)),
    (np.cov, lambda m: np.cov(m, rowvar=False, bias=True), (A,)),
    (np.cov, lambda m, y: np.cov(m, y, ddof=2), (M, Y6)),
    (np.cov, lambda m: np.cov(m), (V,)),  # one variable: a scalar
    (np.cov, lambda m, y: np.cov(m, y, rowvar=False), (A, V[:4])),
    (np.corrcoef, lambda m: np.corrcoef(m), (M,)),
    (np.corrcoef, lambda x, y: np.corrcoef(x, y), (V, W[0] * V + A[0])),
    (np.corrcoef, lambda m: np.corrcoef(m, rowvar=False), (A,)),
    (np.apply_along_axis, lambda a: np.apply_along_axis(lambda r: np.sum(r * r), 1, a), (A,)),
    (np.apply_along_axis, lambda a: np.apply_along_axis(lambda r: r[::-1] * r[0], 0, a), (A,)),
    (np.apply_along_axis, lambda a: np.apply_along_axis(np.outer, 0, a, W), (A,)),
    (np.apply_along_axis, lambda a: np.apply_along_axis(np.diff, -1, a, n=2),
     (M.reshape(3, 2, 3),)),
    # no rules before (DifferentiationError): histogram, histogram_bin_edges. The samples sit
    # away from the inner edges (the bins are piecewise constant in them), the edges of a
    # number of bins move with the smallest and largest sample
    (np.histogram_bin_edges, lambda a: np.histogram_bin_edges(a, 3), (SAMPLES,)),
    (np.histogram_bin_edges, lambda a: np.histogram_bin_edges(a, "sturges"), (SAMPLES,)),
    (np.histogram, lambda a: np.histogram(a * a, 4)[1], (SAMPLES,)),
    (np.histogram, lambda a, w: np.histogram(a, 3, weights=w), (SAMPLES, Y6)),
    (np.histogram, lambda a: np.histogram(a, 3, density=True)[0], (SAMPLES,)),
    (np.histogram, lambda a, w: np.histogram(a, [0.0, 0.3, 0.7, 1.0], weights=w * w,
                                             density=True)[0], (SAMPLES, Y6)),
    (np.histogram, lambda a, r: np.histogram(a, 2, range=(r[0], r[1]), density=True)[0],
     (SAMPLES, np.array([-0.1, 1.2]))),  # (NumPy dispatches on a, bins, weights: not range)
    (np.histogram, lambda b: np.histogram(SAMPLES, b, density=True), (EDGES,)),
    (np.histogramdd, lambda s: np.histogramdd(s, (3, 2), density=True), (PAIRS,)),
    (np.histogramdd, lambda s, w: np.histogramdd(s, [EDGES, 2], weights=w)[0],
     (PAIRS, Y6)),
    (np.histogram2d, lambda x, y: np.histogram2d(x, y, [3, 2], density=True), (SAMPLES, SAMPLES2)),
    (np.histogram2d, lambda x, w: np.histogram2d(x, SAMPLES2, 3, weights=w)[0],
     (SAMPLES, Y6)),
]

if hasattr(np, "trapz"):  # NumPy 1.x's name
    CASES += _trapezoid_cases(np.trapz)


# --- values the harness cannot see ---------------------------------------------------------------

@pytest.mark.parametrize("na, nv", list(itertools.product(range(1, 6), range(1, 6))))
@pytest.mark.parametrize("mode", ["valid", "same", "full"])
def test_convolution_offsets_match_numpy(na, nv, mode):
    a, v = rng.standard_normal(na), rng.standard_normal(nv)
    for func in (np.convolve, np.correlate):
        got, _ = fl.pullback(lambda a, v: func(a, v, mode), a, v)
        np.testing.assert_allclose(got, func(a, v, mode), rtol=1e-12, atol=1e-12)


def test_correlate_conjugates_complex_v():
    a = np.array([1.0, 2.0, -1.0])
    v = np.array([1.0 + 2.0j, 0.5 - 1.0j])
    got, _ = fl.pullback(lambda a: np.correlate(a, v, "full"), a)
    np.testing.assert_allclose(got, np.correlate(a, v, "full"))


def test_interp_slope_and_knots():
    (g,) = fl.gradient(lambda x: np.sum(np.interp(x, XP, V)), Q)
    inside = (Q > XP[0]) & (Q < XP[-1])
    j = np.searchsorted(XP, Q[inside]) - 1
    np.testing.assert_allclose(g[inside], np.diff(V)[j] / np.diff(XP)[j])
    np.testing.assert_array_equal(g[~inside], 0.0)
    edges = np.array([XP[0], XP[2], XP[-1], np.nan])  # NumPy's exact values at the knots
    got, _ = fl.pullback(lambda fp: np.interp(edges, XP, fp), V)
    np.testing.assert_array_equal(got, np.interp(edges, XP, V))


def test_gradient_of_a_quadratic_is_exact():
    x = np.array([0.0, 0.3, 1.0, 1.2, 2.0])
    got, _ = fl.pullback(lambda c: np.gradient(c[0] * x * x, x, edge_order=2), np.array([3.0]))
    np.testing.assert_allclose(got, 6.0 * x, rtol=1e-12, atol=1e-12)
    (g,) = fl.gradient(lambda c: np.sum(np.gradient(c * x * x, x, edge_order=2)), 3.0)
    np.testing.assert_allclose(g, np.sum(2.0 * x))


def test_apply_along_axis_with_traced_extra_arguments():
    f = lambda a, w: np.apply_along_axis(lambda r, w: r @ w, 1, a, w)  # noqa: E731
    value, (ga, gw) = fl.withgradient(lambda a, w: np.sum(f(a, w)), A[:, :3], W)
    np.testing.assert_allclose(value, np.sum(A[:, :3] @ W))
    np.testing.assert_allclose(ga, np.broadcast_to(W, (4, 3)))
    np.testing.assert_allclose(gw, np.sum(A[:, :3], axis=0))


@pytest.mark.parametrize("kwargs", [{}, {"axis": 0}, {"discont": 1.0}, {"discont": 5.0},
                                    {"period": 3}, {"period": 4}, {"period": 5.5}])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_unwrap_is_numpys_to_the_bit(kwargs, dtype):
    # before: no derivative rule. Every jump size, NumPy's ties (a jump of exactly period/2:
    # kept up, turned down; odd and even integer periods), float32 kept
    ties = np.array([0.0, 2.0, 0.0, -2.0, 1.5, 3.0, 1.0, -1.5, 0.5, 3.0])
    for p in (PHASES, np.asfortranarray(PHASES), ties[None, :]):
        p = p.astype(dtype)
        got = fl.jvp(lambda p: np.unwrap(p, **kwargs), (p,), (p,))[0]
        want = np.unwrap(p, **kwargs)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    # the corrections are piecewise constant: the derivative is the identity
    (g,) = fl.gradient(lambda p: np.sum(np.unwrap(p, **kwargs) * np.arange(7.0)), PHASES)
    np.testing.assert_array_equal(g, np.broadcast_to(np.arange(7.0), PHASES.shape))


def test_polynomials_are_numpys_to_the_bit():
    # vander's running products, the coefficient arithmetic, poly's convolutions (real where
    # complex roots pair up as conjugates); polyfit to rounding (its least squares use pinv)
    r = np.array([1.0 + 2.0j, 0.5, 1.0 - 2.0j])
    for f, x in [(lambda x: np.vander(x, 6), V), (lambda x: np.vander(x, 4, True), V),
                 (lambda x: np.polyadd(x, W), V), (lambda x: np.polysub(W, x), V),
                 (lambda x: np.polydiv(x, W)[1], V), (lambda x: np.poly(x), V),
                 (lambda x: np.poly(x * 1.0), r), (lambda x: np.polymul(x, np.zeros(2)), V),
                 (lambda x: np.vander(x, 0), V)]:
        want = f(x)
        got = fl.jvp(f, (x,), (x,))[0]
        assert got.dtype == want.dtype and got.flags.c_contiguous == want.flags.c_contiguous
        np.testing.assert_array_equal(got, want)
    got = fl.pullback(lambda y: np.polyfit(np.arange(6.0), y, 2), M[0])[0]
    np.testing.assert_allclose(got, np.polyfit(np.arange(6.0), M[0], 2), rtol=1e-13)
    # the fitted quadratic's coefficients are linear in y: their gradient is the pseudo-inverse
    (g,) = fl.gradient(lambda y: np.polyfit(np.arange(6.0), y, 2)[0], M[0])
    np.testing.assert_allclose(g, np.linalg.pinv(np.vander(np.arange(6.0), 3))[0], atol=1e-14)


def test_roots_and_their_derivative_by_hand():
    # no rule before: NumPy's roots (real where all are, a zero per trailing zero), and the
    # implicit derivative of a simple root r: dr/dp_k = -r^(n-k) / p'(r)
    for p in (np.array([1.0, -3.0, 2.0]), np.array([0.0, 2.0, 0.0, 1.0, 3.0, 0.0, 0.0]),
              np.array([1.0 + 1.0j, 2.0, 3.0j]), np.array([2.0]), np.zeros(2)):
        got, want = fl.pullback(np.roots, p)[0], np.roots(p)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    p = np.array([1.0, -6.0, 11.0, -6.0])  # roots 3, 2, 1
    r = np.roots(p)
    for i in range(3):
        (g,) = fl.gradient(lambda p: np.roots(p)[i], p)
        slope = np.polyval(np.polyder(p), r[i])
        np.testing.assert_allclose(g, -r[i] ** np.arange(3, -1, -1) / slope, rtol=1e-10)


def test_polynomial_errors_are_numpys():
    for f, x, error in [
            (lambda x: np.vander(x), A, ValueError), (lambda x: np.vander(x, -1), V, ValueError),
            (lambda x: np.polymul(x, W), A, ValueError), (lambda x: np.poly(x), M, ValueError),
            (lambda x: np.roots(x), A, ValueError),
            (lambda y: np.polyfit(XS, y, 1), V, TypeError),
            (lambda y: np.polyfit(np.arange(5.0), y, -1), V, ValueError),
            (lambda y: np.polyfit(np.arange(5.0), y, 1, w=A), V, TypeError),
            (lambda y: np.polyfit(np.arange(5.0), y, 4, cov=True), V, ValueError)]:
        raises_as_numpy(error, f, x)
    with pytest.warns(np.exceptions.RankWarning, match="poorly conditioned"):
        fl.gradient(lambda y: np.sum(np.polyfit([1.0, 1.0, 1.0, 2.0, 2.0], y, 3)), V)


def test_geomspace_and_apply_over_axes_are_numpys():
    # values to the bit (the endpoints exactly start and stop), NumPy's dtype and errors
    for f, args in [(lambda a, b: np.geomspace(a, b, 7), (W * W + 0.5, V[:3] ** 2 + 1)),
                    (lambda a: np.geomspace(-a * a - 1, -2.0, 5, dtype=np.float32), (W,)),
                    (lambda a: np.apply_over_axes(np.mean, a, (1, 0)), (A,))]:
        want = f(*args)
        got = fl.pullback(f, *args)[0]
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    for f, error in [(lambda a: np.geomspace(0.0, a, 3), ValueError),
                     (lambda a: np.apply_over_axes(lambda v, ax: v[0, 0], a, 1), ValueError)]:
        raises_as_numpy(error, f, A)


# --- errors --------------------------------------------------------------------------------------

def _refuses(error, match, f, *args):
    with pytest.raises(error, match=match):
        fl.gradient(lambda *a: np.sum(f(*a)), *args)


def test_unsupported_arguments_say_which():
    _refuses(fl.DifferentiationError, "np.cov.*fweights", lambda m: np.cov(m, fweights=[1] * 6), M)
    _refuses(fl.DifferentiationError, "np.cov.*aweights",
             lambda m: np.cov(m, aweights=np.ones(6)), M)
    _refuses(fl.DifferentiationError, "np.interp.*period",
             lambda x, p: np.interp(x, XP, V, period=p), Q, 4.5)
    _refuses(fl.DifferentiationError, "corrcoef.*complex",
             lambda m: np.corrcoef(m + 1j * M[::-1]), M)


def test_bad_arguments_fail_as_in_numpy():
    _refuses(ValueError, "np.convolve: a must be one-dimensional", lambda a: np.convolve(a, W), A)
    _refuses(ValueError, "v cannot be empty", lambda a: np.correlate(a, np.array([])), V)
    _refuses(ValueError, "mode must be", lambda a: np.convolve(a, W, "middle"), V)
    _refuses(ValueError, "greater than 2", lambda f: np.gradient(f, edge_order=3), A)
    _refuses(np.exceptions.AxisError, "axis 2 is out of bounds",
             lambda p: np.unwrap(p, axis=2), PHASES)
    _refuses(ValueError, "too small", lambda f: np.gradient(f[:2], edge_order=2), V)
    _refuses(ValueError, "must match the length", lambda f: np.gradient(f, XS), V)
    _refuses(TypeError, "invalid number", lambda f: np.gradient(f, 1.0, 2.0, 3.0), A)
    _refuses(ValueError, "not of the same length", lambda fp: np.interp(Q, XP, fp[:3]), V)
    _refuses(ValueError, "period must be a non-zero", lambda x: np.interp(x, XP, V, period=0), Q)
    _refuses(ValueError, "dimension must be 2 or 3", lambda a: np.cross(a, a), A)
    _refuses(ValueError, "non-negative", lambda a: np.linspace(a, 1.0, -1), W)
    _refuses(ValueError, "more than 2 dimensions", lambda m: np.cov(m[None, None]), M)
    _refuses(ValueError, "iteration dimensions are 0",
             lambda a: np.apply_along_axis(np.sum, 1, a[:0]), A)


def test_cross_of_2_vectors_warns_like_numpy():
    with pytest.warns(DeprecationWarning, match="2-dimensional vectors"):
        fl.gradient(lambda a: np.sum(np.cross(a, M[:, 3:5])), M[:, :2])
