"""Indexing rules: reads (basic, advanced, masks, take), scatter-add, and NumPy's writing
functions, each against NumPy's values and finite differences (first and second order)."""

import numpy as np
import pytest

import fluxml as fl
from fluxml.testing import check_grads
from tests.ad.rules.numpy_errors import raises_as_numpy

rng = np.random.default_rng(3)
A = rng.standard_normal((3, 4))
V = rng.standard_normal(5)


def _copyto(a, b):
    out = np.zeros_like(a)
    np.copyto(out, a * b[0], where=np.arange(4) % 2 == 0)
    return out


def _put(a, b):
    out = a * 1.0
    np.put(out, [0, 5, 11], b[:3])
    out.put([1], b[3])
    return out


def _putmask(a, b):
    out = a * 1.0
    np.putmask(out, a > 0, b)
    return out


def _place(a, b):
    out = a * 1.0
    np.place(out, a < 0, b[:2])
    return out


def _fill_diagonal(a, b):
    out = a * 1.0
    np.fill_diagonal(out, b[:3])
    return out


def _with(a, write):
    out = a * 1.0
    write(out)
    return out


CASES = [
    (np.take, lambda a, b: np.take(a, [0, 2, 2]) * b[0], (A, V)),
    (np.take, lambda a, b: np.take(a, [[1, 0], [3, 3]], axis=1), (A, V)),
    (np.take, lambda a, b: np.take(a, [-1, 7], axis=1, mode="wrap"), (A, V)),
    (np.take, lambda a, b: a.take([5, 40], mode="clip") * b[1], (A, V)),
    (np.take_along_axis, lambda a, b: np.take_along_axis(a, np.argsort(a, axis=1), axis=1),
     (A, V)),
    (np.take_along_axis, lambda a, b: np.take_along_axis(a, np.array([[0], [2], [1]]), 1),
     (A, V)),
    (np.take_along_axis, lambda a, b: np.take_along_axis(a, np.array([[0, 1, 0, 2]]), 0),
     (A, V)),
    (np.copyto, _copyto, (A, V)),
    (np.put, _put, (A, V)),
    (np.putmask, _putmask, (A, V)),
    (np.place, _place, (A, V)),
    (np.fill_diagonal, _fill_diagonal, (A, V)),
    (np.put, lambda a, b: _with(a, lambda o: np.put(o, [0, 5, 11, 2], b[:2])), (A, V)),
    (np.putmask, lambda a, b: _with(a, lambda o: np.putmask(o, a < 0, b[:2])), (A, V)),
    (np.fill_diagonal, lambda a, b: _with(a, lambda o: np.fill_diagonal(o, b[:2])), (A, V)),
    # no rule before (a DifferentiationError): np.put_along_axis
    (np.put_along_axis, lambda a, b: _with(a, lambda o: np.put_along_axis(
        o, np.argsort(a, axis=1)[:, :2], b[:2], axis=1)), (A, V)),
    (np.put_along_axis, lambda a, b: _with(a, lambda o: np.put_along_axis(
        o, np.array([[2, 0, 0, 1]]), b[:4] * a[0], axis=0)), (A, V)),
    (np.put_along_axis, lambda a, b: _with(a, lambda o: np.put_along_axis(
        o, np.array([[1, 1]]), b[:1, None], axis=-1)), (A, V)),  # a position written twice
    (np.put_along_axis, lambda a, b: _with(a, lambda o: np.put_along_axis(
        o, np.array([0, 5, 11, 5]), b[:4], axis=None)), (A, V)),
    # choosing by concrete conditions and indices
    (np.select, lambda a, b: np.select([a > 0.5, a < -0.5], [a ** 2, b[:4] * a], default=-1.0),
     (A, V)),
    (np.select, lambda a, b: np.select([a > 0], [np.sin(a)]), (A, V)),
    (np.choose, lambda a, b: np.choose(np.array([[0, 1, 2, 1]] * 3), [a, a * b[:4], 3.0]),
     (A, V)),
    (np.choose, lambda a, b: np.choose(np.array([0, 1, 5, 2]), [a[0], b[:4], a[2]], mode="wrap"),
     (A, V)),
    (np.piecewise, lambda a, b: np.piecewise(
        a, [a < 0, a > 0.5], [lambda t: t ** 2, lambda t: np.exp(t) * b[0], 0.25]), (A, V)),
    (np.piecewise, lambda a, b: np.piecewise(a[0], a[0] > 0, [np.sin, lambda t: t * 3]), (A, V)),
    # no rule before (a DifferentiationError): bincount's sums of weights by bin
    (np.bincount, lambda a, b: np.bincount([0, 3, 3, 1, 0], b), (A, V)),
    (np.bincount, lambda a, b: np.bincount([2, 2], weights=a[0, :2] * b[:2], minlength=5),
     (A, V)),
    (np.extract, lambda a, b: np.extract(a > 0, a * b[:4]), (A, V)),
    (np.compress, lambda a, b: np.compress([True, False, True], a, axis=0), (A, V)),
    (np.compress, lambda a, b: np.compress([False, True], a) + b.compress([1, 0, 1], axis=0)[1],
     (A, V)),
]

READS = [
    lambda a: a[1],
    lambda a: a[1, 2],
    lambda a: a[:, 1:3],
    lambda a: a[::-1, ::2],
    lambda a: a[..., None, 1],
    lambda a: a[[0, 2, 2]],
    lambda a: a[[0, 1], [3, 3]],
    lambda a: a[a > 0],
    lambda a: a[np.array([True, False, True])],
    lambda a: a[1:, [0, 0, 2]],
    lambda a: a[np.ix_([0, 2], [1, 3])],
]


@pytest.mark.parametrize("read", READS)
def test_reads(read):
    np.testing.assert_array_equal(fl.pullback(read, A)[0], read(A))
    check_grads(lambda a: np.sin(read(a)), A, order=2)


def test_repeated_reads_accumulate():
    (g,) = fl.gradient(lambda a: np.sum(a[[0, 0, 2]]), np.arange(3.0))
    np.testing.assert_array_equal(g, [2.0, 0.0, 1.0])


def test_index_add():
    x = np.zeros(4)
    v = np.array([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(fl.index_add(x, [0, 0, 3], v), [3.0, 0.0, 0.0, 3.0])
    check_grads(lambda x, v: fl.index_add(x, [0, 0, 3], v) ** 2, x + 0.5, v, order=2)


def test_float32_reads_keep_their_dtype():
    a = A.astype(np.float32)
    value, (g,) = fl.withgradient(lambda a: np.sum(a[[0, 2], 1:]), a)
    assert value.dtype == np.float32 and g.dtype == np.float32


def test_traced_index_refuses():
    with pytest.raises(fl.DifferentiationError, match="index"):
        fl.gradient(lambda a: np.sum(a[a[0, 0]]), A)


def test_put_along_axis_writes_as_numpy():
    # the values at the positions NumPy writes (the last write wins), others kept; the
    # gradient reaches the values written last and the entries not overwritten
    idx = np.array([[3, 3], [0, 2], [1, 1]])
    vals = np.arange(6.0).reshape(3, 2)

    def f(a, v):
        out = a * 1.0
        np.put_along_axis(out, idx, v, axis=1)
        return out

    want = A.copy()
    np.put_along_axis(want, idx, vals, axis=1)
    got, back = fl.pullback(f, A, vals)
    np.testing.assert_array_equal(got, want)
    ga, gv = back(np.ones_like(A))
    kept = np.ones_like(A)
    kept[[0, 1, 1, 2], [3, 0, 2, 1]] = 0
    np.testing.assert_array_equal(ga, kept)
    np.testing.assert_array_equal(gv, [[0, 1], [1, 1], [0, 1]])


@pytest.mark.parametrize("write, error", [
    (lambda o: np.put_along_axis(o, np.array([0]), 1.0, axis=None), None),
    (lambda o: np.put_along_axis(o.T, np.array([0]), 1.0, axis=None), ValueError),  # read-only
    (lambda o: np.put_along_axis(o, np.array([[0]]), 1.0, axis=None), ValueError),
    (lambda o: np.put_along_axis(o, np.array([0]), 1.0, axis=1), ValueError),  # ndim
    (lambda o: np.put_along_axis(o, np.array([[0.5]]), 1.0, axis=1), IndexError),
    (lambda o: np.put_along_axis(o, np.array([[9]]), 1.0, axis=1), IndexError),
])
def test_put_along_axis_keeps_numpys_errors(write, error):
    f = lambda a: _with(a, write)  # noqa: E731
    if error is None:
        np.testing.assert_array_equal(fl.pullback(f, A)[0], f(A))
        return
    raises_as_numpy(error, f, A)


def test_bincount_sums_weights_as_numpy():
    # in order, as float64 (float32 weights too), NumPy's errors; the gradient of a bin's
    # sum reaches every weight in it
    bins = np.array([4, 0, 4, 4, 1])
    w = np.array([1e16, 1.0, -1e16, 1.0, 3.0])  # order matters: (1e16 - 1e16) + 1
    for weights in (w, w.astype(np.float32)):
        got = fl.pullback(lambda w: np.bincount(bins, w, minlength=7), weights)[0]
        want = np.bincount(bins, weights, minlength=7)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    for f in (lambda w: np.bincount([], w[:0]), lambda w: np.bincount([], w[:0], minlength=2)):
        got, want = fl.pullback(f, w)[0], f(w)  # (NumPy: integer zeros)
        assert got.dtype == want.dtype and got.shape == want.shape
    (g,) = fl.gradient(lambda w: np.bincount(bins, w)[4] * 2.0, w)
    np.testing.assert_array_equal(g, [2.0, 0.0, 2.0, 2.0, 0.0])
    for f in (lambda w: np.bincount(bins, w[:3]), lambda w: np.bincount(bins - 1, w),
              lambda w: np.bincount(bins, w, minlength=-1)):
        raises_as_numpy(ValueError, f, w)


def test_bincount_under_compile():
    # before: a RecursionError (the rule called np.bincount on the program's traced weights,
    # which came back to the rule); bins known only at run time are refused by name
    w = np.array([0.5, 1.5, -2.0, 4.0])
    f = lambda w: np.bincount([3, 0, 3, 1], w, minlength=5) * 2.0  # noqa: E731
    np.testing.assert_array_equal(fl.compile(f)(w), f(w))
    with pytest.raises(fl.DifferentiationError, match="np.bincount: the bins are known only"):
        fl.compile(lambda w: np.bincount(np.argsort(w), w))(w)
