"""Reduction rules: values against NumPy, derivatives against finite differences (order 2,
both modes), dtypes, products with zeros, ties of max/min, cumulative products with zeros."""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fluxml as fl
from fluxml.ad.rules.reductions import logsumexp
from fluxml.testing import check_grads
from tests.ad.rules.numpy_errors import raises_as_numpy

rng = np.random.default_rng(0)


def rand(*shape):
    return rng.standard_normal(shape)


def away_from_zero(*shape):
    return rng.uniform(0.5, 1.5, shape) * rng.choice([-1.0, 1.0], shape)


def distinct(*shape):
    """Entries far apart from each other (no ties: max, min and sort are smooth there)."""
    n = int(np.prod(shape))
    return (rng.permutation(n) + 0.3 * rng.uniform(size=n)).reshape(shape) - n / 2


A = rand(3, 4)
B = rand(2, 3, 4)
POS = rng.uniform(0.5, 2.0, (3, 4))
WITH_NAN = np.where(rng.uniform(size=(3, 4)) < 0.3, np.nan, rand(3, 4))
WITH_NAN[:, 0] = rand(3)  # every column/row keeps a number
ONE_ZERO = away_from_zero(3, 4)
ONE_ZERO[1, 2] = 0.0
TWO_ZEROS = away_from_zero(3, 4)
TWO_ZEROS[1, 0] = TWO_ZEROS[1, 3] = 0.0
W4 = rng.uniform(0.5, 1.5, 4)
MASK4 = np.array([True, False, True, True])
MASK31 = np.array([[True], [False], [True]])

CASES = [
    (np.sum, lambda x: np.sum(x), (A,)),
    (np.sum, lambda x: np.sum(x, axis=1), (A,)),
    (np.sum, lambda x: np.sum(x, axis=(0, -1), keepdims=True), (B,)),
    (np.nansum, lambda x: np.nansum(x, axis=0), (WITH_NAN,)),
    (np.prod, lambda x: np.prod(x, axis=1), (away_from_zero(3, 4),)),
    (np.prod, lambda x: np.prod(x), (away_from_zero(2, 3),)),
    (np.prod, lambda x: np.prod(x, axis=-1, keepdims=True), (ONE_ZERO,)),
    (np.prod, lambda x: np.prod(x, axis=1), (TWO_ZEROS,)),
    (np.prod, lambda x: np.prod(x, axis=(0, 2)), (away_from_zero(2, 3, 4),)),
    (np.mean, lambda x: np.mean(x), (A,)),
    (np.mean, lambda x: np.mean(x, axis=-2, keepdims=True), (B,)),
    (np.nanmean, lambda x: np.nanmean(x, axis=1), (WITH_NAN,)),
    (np.nanprod, lambda x: np.nanprod(x, axis=0), (WITH_NAN,)),
    (np.nanprod, lambda x: np.nanprod(x, keepdims=True, initial=0.5), (WITH_NAN,)),
    (np.nancumsum, lambda x: np.nancumsum(x, axis=1), (WITH_NAN,)),
    (np.nancumsum, lambda x: np.nancumsum(x), (WITH_NAN,)),
    (np.nancumprod, lambda x: np.nancumprod(x, axis=0), (WITH_NAN,)),
    (np.nanvar, lambda x: np.nanvar(x, axis=1), (WITH_NAN,)),
    (np.nanvar, lambda x: np.nanvar(x, ddof=1, keepdims=True), (WITH_NAN,)),
    (np.nanvar, lambda x, m: np.nanvar(x, axis=0, mean=m), (WITH_NAN[:, :3], rand(1, 3))),
    (np.nanstd, lambda x: np.nanstd(x, axis=0), (WITH_NAN[:, :3],)),  # no all-NaN column
    (np.nanmedian, lambda x: np.nanmedian(x, axis=1), (WITH_NAN,)),
    (np.nanmedian, lambda x: np.nanmedian(x, axis=0, keepdims=True), (WITH_NAN[:, :3],)),
    (np.nanquantile, lambda x: np.nanquantile(x, [0.0, 0.3, 1.0], axis=1), (WITH_NAN,)),
    (np.nanquantile, lambda x: np.nanquantile(x, 0.6), (WITH_NAN,)),
    (np.nanpercentile, lambda x: np.nanpercentile(x, [[20.0], [70.0]], axis=0),
     (WITH_NAN[:, :3],)),
    (np.nanstd, lambda x: np.nanstd(x, axis=1, where=[True, True, True, False],
                                      correction=1), (WITH_NAN,)),
    (np.average, lambda x: np.average(x, axis=1), (A,)),
    (np.average, lambda x, w: np.average(x, axis=1, weights=w), (A, W4)),
    (np.average, lambda x, w: np.average(x, weights=w), (A, POS)),
    (np.average, lambda x, w: np.average(x, axis=-1, weights=w, returned=True), (A, W4)),
    (np.var, lambda x: np.var(x), (A,)),
    (np.var, lambda x: np.var(x, axis=0, ddof=1), (A,)),
    (np.var, lambda x: np.var(x, axis=(1, 2), keepdims=True), (B,)),
    (np.std, lambda x: np.std(x, axis=1), (A,)),
    (np.std, lambda x: np.std(x, ddof=1), (B,)),
    (np.max, lambda x: np.max(x), (distinct(3, 4),)),
    (np.max, lambda x: np.max(x, axis=1, keepdims=True), (distinct(3, 4),)),
    (np.max, lambda x: np.max(x, axis=(0, 2)), (distinct(2, 3, 4),)),
    (np.amax, lambda x: np.amax(x, axis=0), (distinct(3, 4),)),
    (np.min, lambda x: np.min(x, axis=-1), (distinct(3, 4),)),
    (np.amin, lambda x: np.amin(x), (distinct(3, 4),)),
    (np.nanmax, lambda x: np.nanmax(x, axis=1), (WITH_NAN,)),
    (np.nanmin, lambda x: np.nanmin(x, axis=1), (WITH_NAN,)),
    (np.ptp, lambda x: np.ptp(x, axis=0), (distinct(3, 4),)),
    (np.cumsum, lambda x: np.cumsum(x), (A,)),
    (np.cumsum, lambda x: np.cumsum(x, axis=-2), (B,)),
    (np.cumprod, lambda x: np.cumprod(x, axis=1), (away_from_zero(3, 5),)),
    (np.cumprod, lambda x: np.cumprod(x, axis=1), (TWO_ZEROS,)),
    (np.cumprod, lambda x: np.cumprod(x), (ONE_ZERO,)),
    (np.cumulative_sum, lambda x: np.cumulative_sum(x, axis=1, include_initial=True), (A,)),
    (np.cumulative_prod, lambda x: np.cumulative_prod(x, axis=0), (ONE_ZERO,)),
    (np.sort, lambda x: np.sort(x), (distinct(3, 4),)),
    (np.sort, lambda x: np.sort(x, axis=0), (distinct(3, 4),)),
    (np.sort, lambda x: np.sort(x, axis=None), (distinct(3, 4),)),
    (np.sort_complex, np.sort_complex, (distinct(3, 4),)),  # no rule before
    (np.sort_complex, lambda x: np.sort_complex(x[1]) * 2.0, (distinct(3, 4),)),
    (np.partition, lambda x: np.partition(x, 2), (distinct(3, 5),)),
    (np.partition, lambda x: np.partition(x, (0, 2), axis=0), (distinct(4, 3),)),
    (np.partition, lambda x: np.partition(x, -1, axis=None), (distinct(3, 4),)),
    (np.quantile, lambda x: np.quantile(x, 0.3), (distinct(3, 4),)),
    (np.quantile, lambda x: np.quantile(x, [0.0, 0.5, 0.8, 1.0], axis=1, keepdims=True),
     (distinct(3, 5),)),
    (np.percentile, lambda x: np.percentile(x, [[10.0], [75.0]], axis=(0, 2)),
     (distinct(2, 3, 4),)),
    # the other methods (refused before: 'only the default method='linear''): one sorted
    # entry, or the midpoint of two
    *[(np.quantile, lambda x, m=m: np.quantile(x, [0.0, 0.3, 0.5, 0.875, 1.0], axis=1,
                                               method=m), (distinct(3, 5),))
      for m in ("lower", "higher", "nearest", "midpoint")],
    (np.percentile, lambda x: np.percentile(x, 35.0, method="midpoint"), (distinct(2, 4),)),
    (np.median, lambda x: np.median(x), (distinct(3, 4),)),
    (np.median, lambda x: np.median(x, axis=0), (distinct(3, 4),)),
    (np.median, lambda x: np.median(x, axis=(0, -1), keepdims=True), (distinct(2, 3, 3),)),
    (np.diff, lambda x: np.diff(x), (A,)),
    (np.diff, lambda x: np.diff(x, n=2, axis=0), (rand(5, 3),)),
    (np.diff, lambda x, p: np.diff(x, axis=1, prepend=p, append=1.5), (A, rand(3, 1))),
    (np.ediff1d, lambda x, b: np.ediff1d(x, to_begin=b, to_end=[2.0, 3.0]), (A, rand(2))),
    # where= and initial=
    (np.sum, lambda x: np.sum(x, axis=1, where=MASK4, initial=0.5), (A,)),
    (np.prod, lambda x: np.prod(x, axis=0, where=MASK31, initial=2.0), (away_from_zero(3, 4),)),
    (np.mean, lambda x: np.mean(x, axis=1, where=MASK4), (A,)),
    (np.mean, lambda x: np.mean(x, where=MASK31, keepdims=True), (A,)),
    (np.var, lambda x: np.var(x, axis=0, where=MASK31, ddof=1), (A,)),
    (np.std, lambda x: np.std(x, axis=1, where=MASK4), (A,)),
    (np.max, lambda x: np.max(x, axis=1, where=MASK4, initial=-5.0), (distinct(3, 4),)),
    (np.min, lambda x: np.min(x, axis=0, initial=-0.3), (distinct(3, 4) / 7,)),
    # ufunc methods: folds along an axis
    (np.logaddexp, lambda x: np.logaddexp.reduce(x, axis=1), (A,)),
    (np.logaddexp, lambda x: np.logaddexp.reduce(x, axis=None, keepdims=True), (A,)),
    (np.logaddexp, lambda x: np.logaddexp.reduce(x, axis=0, where=MASK31, initial=-1.0), (A,)),
    (np.maximum, lambda x: np.maximum.accumulate(x, axis=1), (distinct(3, 4),)),
    (np.maximum, lambda x: np.maximum.reduceat(x, [0, 2], axis=0), (distinct(3, 4),)),
    (np.add, lambda x: np.add.reduceat(x, [0, 2, 1, 3], axis=1), (A,)),
    (np.hypot, lambda x: np.hypot.reduce(x, axis=0), (A,)),
    (np.subtract, lambda x: np.subtract.accumulate(x, axis=0), (A,)),
]


# --- products with zeros -----------------------------------------------------------------------

def test_prod_gradient_with_one_zero_is_the_product_of_the_others():
    x = np.array([2.0, 0.0, 3.0, -1.5])
    (g,) = fl.gradient(np.prod, x)
    np.testing.assert_array_equal(g, [0.0, -9.0, 0.0, 0.0])


def test_prod_gradient_with_two_zeros_is_zero():
    x = np.array([2.0, 0.0, 3.0, 0.0])
    (g,) = fl.gradient(np.prod, x)
    np.testing.assert_array_equal(g, np.zeros(4))
    h = fl.hessian(np.prod, x)  # d2/dx1 dx3 = 2 * 3, exact
    want = np.zeros((4, 4))
    want[1, 3] = want[3, 1] = 6.0
    np.testing.assert_array_equal(h, want)


def test_prod_hessian_with_one_zero():
    x = np.array([2.0, 0.0, 3.0])
    want = np.array([[0.0, 3.0, 0.0], [3.0, 0.0, 2.0], [0.0, 2.0, 0.0]])
    np.testing.assert_array_equal(fl.hessian(np.prod, x), want)


def test_cumprod_gradient_with_zeros_is_exact():
    x = np.array([2.0, 0.0, 3.0, 0.0, 5.0])
    jac = fl.jacobian(np.cumprod, x)
    want = np.zeros((5, 5))
    for i in range(5):
        for j in range(i + 1):
            want[i, j] = np.prod(np.delete(x[:i + 1], j))
    np.testing.assert_array_equal(jac, want)
    np.testing.assert_array_equal(fl.jacobian(np.cumprod, x, mode="fwd"), want)


# --- max and min -------------------------------------------------------------------------------

def test_max_ties_split_evenly():
    (g,) = fl.gradient(np.max, np.array([1.0, 3.0, 3.0]))
    np.testing.assert_array_equal(g, [0.0, 0.5, 0.5])
    (g,) = fl.gradient(lambda x: np.sum(np.min(x, axis=0)), np.array([[1.0, 2], [1, 0]]))
    np.testing.assert_array_equal(g, [[0.5, 0.0], [0.5, 1.0]])
    _, t = fl.jvp(np.max, (np.array([1.0, 3.0, 3.0]),), (np.array([5.0, 1.0, 2.0]),))
    assert t == 1.5


def test_maximum_reduce_reaches_max():
    x = np.array([[1.0, 4.0], [3.0, 2.0]])
    (g,) = fl.gradient(lambda x: np.sum(np.maximum.reduce(x, axis=0)), x)
    np.testing.assert_array_equal(g, [[0.0, 1.0], [1.0, 0.0]])
    (g,) = fl.gradient(lambda x: np.minimum.reduce(x, axis=None), x)
    np.testing.assert_array_equal(g, [[1.0, 0.0], [0.0, 0.0]])
    check_grads(lambda x: np.add.reduce(x, axis=1), x)


def test_ufunc_reduce_default_axis_is_zero():
    x = np.arange(6.0).reshape(2, 3)
    value, _ = fl.pullback(lambda x: np.add.reduce(x), x)
    np.testing.assert_array_equal(value, np.add.reduce(x))


def test_ufunc_accumulate_default_axis_is_zero():
    x = np.arange(1.0, 7.0).reshape(2, 3)
    value, _ = fl.pullback(lambda x: np.multiply.accumulate(x), x)
    np.testing.assert_array_equal(value, np.multiply.accumulate(x))


def test_nanmax_gradient_skips_nans():
    x = np.array([1.0, np.nan, 3.0])
    (g,) = fl.gradient(np.nanmax, x)
    np.testing.assert_array_equal(g, [0.0, 0.0, 1.0])
    (g,) = fl.gradient(np.nansum, x)
    np.testing.assert_array_equal(g, [1.0, 0.0, 1.0])


ALL_NAN_ROW = np.array([[1.0, np.nan, 3.0, -2.0], [np.nan] * 4, [0.5, 2.0, np.nan, np.nan]])

NAN_REDUCTIONS = [
    lambda x: np.nanprod(x, axis=1), lambda x: np.nancumsum(x, axis=1),
    lambda x: np.nancumprod(x), lambda x: np.nanvar(x, axis=1),
    lambda x: np.nanstd(x, axis=1, ddof=1), lambda x: np.nanvar(x, axis=0, keepdims=True),
    lambda x: np.nanvar(x, axis=1, dtype=np.float64), lambda x: np.nanstd(x),
    lambda x: np.nanvar(x, axis=1, where=[True, True, False, True]),
    lambda x: np.nanmedian(x, axis=1), lambda x: np.nanmedian(x),
    lambda x: np.nanquantile(x, [0.0, 0.35, 1.0], axis=1, keepdims=True),
    lambda x: np.nanpercentile(x, 40, axis=0),
]


@pytest.mark.parametrize("f", NAN_REDUCTIONS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.complex128])
def test_nan_reductions_are_numpys_to_the_bit(f, dtype):
    # before: no derivative rule. NaN entries, an all-NaN row, one with too few entries for
    # ddof=1 (NaN and NumPy's warning); float32 stays float32
    x = ALL_NAN_ROW.astype(dtype)
    if dtype is np.complex128:
        if f.__code__.co_names[-1] in ("nanmedian", "nanquantile", "nanpercentile"):
            return  # (complex values refused; NumPy's nanquantile refuses them too)
        x = x + 0.5j * np.arange(12).reshape(3, 4)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        want = f(x)
        got, back = fl.pullback(f, x)
        (g,) = back(np.ones_like(got))
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    assert np.all(g[np.isnan(x)] == 0)  # the NaNs get no derivative
    assert not np.isnan(g).any()


def test_nanvar_gradient_by_hand():
    # d/dx_i of the variance of the n non-NaN entries of a row: 2 (x_i - mean) / (n - ddof)
    x = ALL_NAN_ROW
    with pytest.warns(RuntimeWarning, match="Degrees of freedom"):  # the all-NaN row
        (g,) = fl.gradient(lambda x: np.nansum(np.nanvar(x, axis=1, ddof=1)), x)
    keep = ~np.isnan(x)
    n = keep.sum(axis=1, keepdims=True)
    mean = np.sum(np.where(keep, x, 0), axis=1, keepdims=True) / np.maximum(n, 1)
    want = np.where(keep & (n > 1), 2 * (x - mean) / np.maximum(n - 1, 1), 0)
    np.testing.assert_allclose(g, want, rtol=1e-14)
    with pytest.warns(RuntimeWarning, match="Degrees of freedom"):
        fl.gradient(lambda x: np.nansum(np.nanvar(x[:1], axis=1, ddof=4)), x)
    (g,) = fl.gradient(lambda x: np.sum(np.nancumprod(x[0])), x)
    np.testing.assert_array_equal(g[0], [1 + 1 + 3 + 3 * -2, 0, 1 + 1 * -2, 1 * 3])


@pytest.mark.filterwarnings("ignore:Degrees of freedom")  # WITH_NAN's all-NaN column
def test_nan_reductions_keep_numpys_errors_and_out():
    for f, error in [(lambda x: np.nanvar(x, ddof=1, correction=1), ValueError),
                     (lambda x: np.nanstd(x, dtype=np.int64), TypeError)]:
        raises_as_numpy(error, f, ALL_NAN_ROW)

    def into(x):
        buf = np.zeros_like(x[0])
        np.nanvar(x, axis=0, out=buf)
        out = np.zeros_like(x)
        np.nancumsum(x, axis=1, out=out)
        return buf, out

    check_grads(into, WITH_NAN)
    with np.errstate(all="ignore"):
        assert all(np.array_equal(a, b, equal_nan=True)
                   for a, b in zip(fl.pullback(into, WITH_NAN)[0], into(WITH_NAN)))


def test_nanargmax_and_nanargmin_are_positions():
    (g,) = fl.gradient(lambda x: x[np.nanargmax(x[0]), 0] * np.sum(x[0, np.nanargmin(x[0])]),
                       ALL_NAN_ROW)
    want = np.zeros_like(ALL_NAN_ROW)
    want[2, 0], want[0, 3] = -2.0, 0.5  # x[0]'s largest is at 2, its smallest at 3
    np.testing.assert_array_equal(g, want)


@pytest.mark.parametrize("f", [
    lambda x: np.median(x, axis=1), lambda x: np.median(x), lambda x: np.median(x[:, :3], 0),
    lambda x: np.quantile(x, 0.4, axis=1), lambda x: np.percentile(x, [0, 100], axis=0),
    lambda x: np.quantile(x, [[0.2], [0.5]], axis=(0, 1), keepdims=True),
])
def test_median_and_quantiles_of_slices_with_nan_are_nan(f):
    # before: the NaNs sorted last and the rest gave a number (np.median of [0.75, nan,
    # 0.27, -1.2] came out 0.51, NumPy's is nan), silently; the other slices keep their
    # values and gradients
    x = ALL_NAN_ROW.copy()
    x[0, 1] = 0.25
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        want = f(x)
        got, back = fl.pullback(f, x)
    np.testing.assert_array_equal(got, want)
    (g,) = back(np.ones_like(got))
    assert np.all(g[1:] == 0) and not np.isnan(g).any()  # rows 1, 2 hold NaNs


def test_sort_complex_orders_by_real_then_imaginary_part():
    # no rule before (a DifferentiationError); NumPy's values and dtypes, the gradient
    # through the permutation
    z = np.array([2.0 + 1.0j, 1.0 + 3.0j, 2.0 - 1.0j, -1.0 + 0.0j])
    got, back = fl.pullback(np.sort_complex, z)
    np.testing.assert_array_equal(got, np.sort_complex(z))
    np.testing.assert_array_equal(back(np.array([1.0, 2.0, 3.0, 4.0]) + 0j)[0], [4, 2, 3, 1])
    for x in (np.array([3.0, 1.0]), np.array([3.0, 1.0], np.float32)):
        assert fl.pullback(np.sort_complex, x)[0].dtype == np.sort_complex(x).dtype


# --- keyword arguments ---------------------------------------------------------------------------

def test_out_argument():
    def f(x):
        buf = np.zeros_like(x[:, 0])
        np.sum(x * x, axis=1, out=buf)
        return buf

    check_grads(f, A)
    value, _ = fl.pullback(f, A)
    np.testing.assert_allclose(value, np.sum(A * A, axis=1))


def test_dtype_and_initial():
    check_grads(lambda x: np.sum(x, axis=0, dtype=np.float64, initial=2.0), A)
    check_grads(lambda x: np.prod(x, axis=0, initial=2.0), away_from_zero(3, 4))


def test_where_and_initial_as_numpy():
    assert fl.gradient(lambda x: np.sum(x, where=x > 0), A)[0].tolist() == (A > 0).tolist()
    with pytest.raises(ValueError, match="initial"):  # NumPy's own rule: max needs initial
        fl.gradient(lambda x: np.max(x, where=x > 0), A)
    empty = fl.withgradient(lambda x: np.sum(np.max(x[:0], axis=0, initial=1.5) * x[0]), A)
    assert empty[0] == 1.5 * A[0].sum()
    np.testing.assert_array_equal(empty[1][0][0], np.full(4, 1.5))
    np.testing.assert_array_equal(
        fl.gradient(lambda x: np.max(x, initial=10.0), A)[0], np.zeros_like(A))
    with pytest.raises(fl.DifferentiationError, match="np.where"):
        fl.gradient(lambda x: np.nanmean(x, where=x > 0), A)


def test_var_with_mean_and_correction():
    m = np.mean(A, axis=1, keepdims=True)
    check_grads(lambda x, m: np.var(x, axis=1, mean=m, correction=1), A, m)
    value, _ = fl.pullback(lambda x: np.var(x, axis=1, correction=1), A)
    np.testing.assert_allclose(value, np.var(A, axis=1, ddof=1))


# --- logsumexp -----------------------------------------------------------------------------------

def test_logsumexp_is_stable_and_differentiable():
    x = np.array([[1000.0, 1000.0], [-1000.0, 0.0]])
    np.testing.assert_allclose(logsumexp(x, axis=1), [1000.0 + np.log(2.0), 0.0])
    (g,) = fl.gradient(lambda x: np.sum(logsumexp(x, axis=1)), x)
    np.testing.assert_allclose(g, [[0.5, 0.5], [0.0, 1.0]])
    check_grads(lambda x: logsumexp(x, axis=0, keepdims=True), A)
    check_grads(lambda x: logsumexp(x), B)
    assert logsumexp(A.astype(np.float32)).dtype == np.float32


# --- random shapes and axes ----------------------------------------------------------------------

@st.composite
def shape_and_axis(draw):
    shape = tuple(draw(st.lists(st.integers(1, 3), min_size=1, max_size=3)))
    axes = draw(st.lists(st.integers(-len(shape), len(shape) - 1), unique_by=lambda a: a
                         % len(shape), max_size=len(shape)))
    axis = draw(st.sampled_from([None, tuple(axes)] + ([axes[0]] if axes else [])))
    return shape, axis, draw(st.booleans())


@settings(max_examples=15, deadline=None)
@given(shape_and_axis(), st.sampled_from([np.sum, np.mean, np.prod, np.max, np.var]))
def test_reductions_over_random_axes(case, reduce):
    shape, axis, keepdims = case
    x = distinct(*shape) / 4
    f = lambda x: reduce(x, axis=axis, keepdims=keepdims)  # noqa: E731
    check_grads(f, x)
    value, _ = fl.pullback(f, x)
    np.testing.assert_allclose(value, f(x), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("method", ["lower", "higher", "nearest", "midpoint"])
def test_quantile_methods_as_numpy(method):
    # values and dtypes to the bit (float32 kept by the entries chosen, NaN slices NaN), and
    # the derivative reaching the entries NumPy's method reads
    a = np.array([[0.3, -1.2, 2.5, 0.7, 1.1], [4.0, np.nan, 0.2, 1.0, -3.0]])
    for x in (a, a.astype(np.float32), a[:1]):
        for q in (0.3, [0.0, 0.25, 0.5, 0.875, 1.0]):
            got = fl.pullback(lambda x: np.quantile(x, q, axis=1, method=method), x)[0]
            want = np.quantile(x, q, axis=1, method=method)
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(got, want)
    (g,) = fl.gradient(lambda x: np.sum(np.quantile(x, 0.3, method=method)), a[:1])
    s = np.sort(a[0])  # q * (n - 1) = 1.2: between sorted entries 1 and 2
    weight = {"lower": {1: 1.0}, "higher": {2: 1.0}, "nearest": {1: 1.0},
              "midpoint": {1: 0.5, 2: 0.5}}[method]
    want = np.zeros(5)
    for k, w in weight.items():
        want[np.flatnonzero(a[0] == s[k])] = w
    np.testing.assert_allclose(g[0], want)


def test_var_and_std_of_complex_values_as_numpy():
    # refused before ('np.var was called on complex values ... right for real values only');
    # and the rule squared d rather than |d|: NumPy's real re * re + im * im
    rng = np.random.default_rng(21)
    z = rng.standard_normal((3, 4)) + 1j * rng.standard_normal((3, 4))
    for f in (lambda z: np.var(z), lambda z: np.var(z, axis=1, ddof=1),
              lambda z: np.std(z, axis=0, keepdims=True),
              lambda z: np.var(z, axis=1, where=np.arange(4) % 3 != 1),
              lambda z: np.std(z.astype(np.complex64), axis=1)):
        got, want = fl.pullback(f, z)[0], f(z)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    # the gradient of the real variance (d/dx - i d/dy): 2 conj(z - mean) / n
    (g,) = fl.gradient(lambda z: np.var(z), z)
    np.testing.assert_allclose(g, 2 * np.conj(z - z.mean()) / z.size, rtol=1e-12)
