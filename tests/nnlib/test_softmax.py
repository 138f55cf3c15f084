"""softmax / logsoftmax / logsumexp against the composite formulas, derivatives (order 2,
both modes) over several axes, stability at extreme inputs, dtypes and bad axes."""

import warnings

import numpy as np
import pytest

import fluxml as fl
from fluxml.testing import check_grads

X = np.random.default_rng(0).standard_normal((3, 4, 5))


def softmax_ref(x, axis):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


@pytest.mark.parametrize("axis", [-1, 0, 1, (0, 2)])
def test_values_and_derivatives(axis):
    np.testing.assert_allclose(fl.softmax(X, axis=axis), softmax_ref(X, axis), rtol=1e-13)
    np.testing.assert_allclose(fl.logsoftmax(X, axis=axis), np.log(softmax_ref(X, axis)),
                               rtol=1e-13, atol=1e-14)
    check_grads(lambda x: fl.softmax(x, axis=axis), X)
    check_grads(lambda x: fl.logsoftmax(x, axis=axis), X)


def test_gradient_matches_composite():
    g = np.random.default_rng(1).standard_normal(X.shape)
    for ours, ref in ((fl.softmax, softmax_ref),
                      (fl.logsoftmax, lambda x, axis: np.log(softmax_ref(x, axis)))):
        a = fl.gradient(lambda x: np.sum(ours(x, axis=1) * g), X)[0]
        b = fl.gradient(lambda x: np.sum(ref(x, 1) * g), X)[0]
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_logsumexp_is_the_engines():
    assert fl.nnlib.logsumexp is fl.logsumexp
    np.testing.assert_allclose(fl.logsumexp(X, axis=-1), np.log(np.sum(np.exp(X), -1)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extremes(dtype):
    x = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4, 1e4]], dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s, ls = fl.softmax(x), fl.logsoftmax(x)
        g = fl.gradient(lambda x: np.sum(fl.softmax(x) * np.arange(3.0, dtype=dtype)), x)[0]
        gl = fl.gradient(lambda x: np.sum(fl.logsoftmax(x)[:, 0]), x)[0]
    assert s.dtype == ls.dtype == g.dtype == gl.dtype == dtype
    np.testing.assert_allclose(s, [[1, 0, 0], [1 / 3] * 3, [1 / 3] * 3], rtol=1e-6)
    np.testing.assert_allclose(ls[0], [0, -2e4, -1e4], rtol=1e-6)
    assert np.all(np.isfinite(g)) and np.all(np.isfinite(gl))
    # a row spanning the float range: the shift overflows to -inf, whose exp is the 0 due
    big = np.array([[3e38, 3e38, -3e38]], dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(fl.softmax(big), [[0.5, 0.5, 0]])
        np.testing.assert_allclose(fl.logsoftmax(big)[0, :2], np.log(0.5), rtol=1e-6)
        np.testing.assert_allclose(fl.logsumexp(big, axis=-1), [3e38], rtol=1e-6)


def test_masked_entries():
    x = np.array([[0.0, -np.inf, 1.0]])
    s = fl.softmax(x)
    assert s[0, 1] == 0 and np.isclose(s.sum(), 1)
    g = fl.gradient(lambda x: np.sum(fl.softmax(x) * np.array([1.0, 2.0, 3.0])), x)[0]
    assert g[0, 1] == 0 and np.all(np.isfinite(g))


def test_bad_axis():
    with pytest.raises(np.exceptions.AxisError, match="softmax: axis"):
        fl.softmax(X, axis=3)
    with pytest.raises(np.exceptions.AxisError, match="logsumexp: axis"):
        fl.logsumexp(X, axis=(0, 3))
    with pytest.raises(np.exceptions.AxisError, match="softmax: axis"):
        fl.softmax(X, axis=(0, 0))
    assert fl.softmax([1.0, 1.0]).tolist() == [0.5, 0.5]


@pytest.mark.parametrize("shape, axis", [((0, 3), 0), ((2, 0), 1), ((0,), 0),
                                         ((2, 0, 3), (0, 1)), ((0, 3), 1)])
def test_over_no_entries(shape, axis):
    """logsumexp over an empty axis is log 0 = -inf (scipy's and PyTorch's), softmax and
    logsoftmax of an empty array are empty: each failed with NumPy's 'zero-size array to
    reduction operation maximum which has no identity'."""
    x = np.ones(shape)
    expected = np.full(np.sum(x, axis=axis).shape, -np.inf)
    np.testing.assert_array_equal(fl.logsumexp(x, axis=axis), expected)
    (g,) = fl.gradient(lambda x: np.sum(fl.logsumexp(x, axis=axis)), x)
    assert g.shape == shape
    for f in (fl.softmax, fl.logsoftmax):
        assert f(x, axis=axis).shape == shape
    compiled = fl.compile(lambda x: fl.logsumexp(x, axis=axis))
    np.testing.assert_array_equal(compiled(x), expected)


@pytest.mark.parametrize("f", [fl.softmax, fl.logsoftmax])
def test_complex_input_is_refused(f):
    """Complex scores were cast to float64 with only NumPy's ComplexWarning: the imaginary
    parts were dropped and the result was the softmax of the real parts, silently."""
    for x in (np.array([[1 + 2j, 0.5 - 1j]]), [1 + 2j, 0.5 - 1j]):
        with pytest.raises(TypeError, match=f"{f.__name__} takes real numbers; got dtype "
                                            "complex128"):
            f(x)
    np.testing.assert_allclose(f([1, 3]), f(np.array([1.0, 3.0])))  # integers as floats


@pytest.mark.parametrize("call", [lambda x: fl.softmax(x, axis=True),
                                  lambda x: fl.logsoftmax(x, axis=(0, True)),
                                  lambda x: fl.logsumexp(x, axis=False)])
def test_a_bool_is_not_an_axis(call):
    """NumPy reads True as axis 1 and False as axis 0: softmax(x, axis=True) normalised the
    rows, silently (a flag passed in the axis's place)."""
    x = np.arange(6.0).reshape(2, 3)
    with pytest.raises(np.exceptions.AxisError, match="axis must be an axis or a tuple of "
                                                      "distinct axes of the input"):
        call(x)
    e = np.exp(x - x.max(axis=1, keepdims=True))  # an int axis, against the formula
    np.testing.assert_allclose(fl.softmax(x, axis=1), e / e.sum(axis=1, keepdims=True))
