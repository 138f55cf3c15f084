"""nnlib.linear, the affine map of Dense as one primitive: values against loops, derivatives
against finite differences (order 2, both modes) and against the composite ``x @ w.T + b``
(first and second order, both modes), dtypes, fl.compile (which records the composite), and
the errors."""

import numpy as np
import pytest

import fluxml as fl
from fluxml.ad.api import _trace_args
from fluxml.ad.reverse import ReverseTrace
from fluxml.nnlib.linear import linear
from fluxml.testing import check_grads

X_SHAPES = [(5,), (3, 5), (2, 3, 5)]


def _args(x_shape, bias=True, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal((4, 5)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype) if bias else None
    return x, w, b


def _loops(x, w, b):
    out = np.zeros(x.shape[:-1] + (w.shape[0],))
    for idx in np.ndindex(*x.shape[:-1]):
        for o in range(w.shape[0]):
            out[idx + (o,)] = sum(x[idx + (i,)] * w[o, i] for i in range(w.shape[1]))
            out[idx + (o,)] += 0.0 if b is None else b[o]
    return out


def _composite(x, w, b):
    y = x @ w.T
    return y if b is None else y + b


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("x_shape", X_SHAPES)
def test_values_against_loops(x_shape, bias):
    for dtype in (np.float64, np.float32):
        x, w, b = _args(x_shape, bias, dtype)
        y = linear(x, w, b)
        assert y.dtype == dtype and y.shape == x_shape[:-1] + (4,)
        np.testing.assert_allclose(y, _loops(x, w, b), rtol=1e-5 if dtype == np.float32
                                   else 1e-12)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("x_shape", X_SHAPES)
def test_derivatives(x_shape, bias):
    x, w, b = _args(x_shape, bias)
    if bias:  # through tanh: the second order sees the cotangent-dependent parts too
        check_grads(lambda x, w, b: np.tanh(linear(x, w, b)), x, w, b, order=2)
    else:
        check_grads(lambda x, w: np.tanh(linear(x, w)), x, w, order=2)


@pytest.mark.parametrize("x_shape", X_SHAPES)
def test_same_derivatives_as_the_composite(x_shape):
    """Gradients, Hessian-vector products (reverse over reverse) and jvps (forward mode) of
    a loss through the primitive equal those through the composite."""
    x, w, b = _args(x_shape)
    v = [np.random.default_rng(1).standard_normal(a.shape) for a in (x, w, b)]

    def loss(f):
        return lambda x, w, b: np.sum(np.tanh(f(x, w, b)) ** 2)

    def hvp(f):
        def inner(x, w, b):
            g = fl.gradient(loss(f), x, w, b)
            return sum(np.sum(gi * vi) for gi, vi in zip(g, v))
        return fl.gradient(inner, x, w, b)

    for got, want in zip(fl.gradient(loss(linear), x, w, b),
                         fl.gradient(loss(_composite), x, w, b)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
    for got, want in zip(hvp(linear), hvp(_composite)):
        np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-13)
    got = fl.jvp(lambda x, w, b: linear(x, w, b), (x, w, b), tuple(v))
    want = fl.jvp(_composite, (x, w, b), tuple(v))
    for g, e in zip(got, want):
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-14)


def test_float32_stays_float32_and_a_wider_bias_promotes_as_the_composite():
    x, w, b = _args((3, 5), dtype=np.float32)
    grads = fl.gradient(lambda x, w, b: np.sum(linear(x, w, b)), x, w, b)
    assert all(g.dtype == np.float32 for g in grads)
    wide = b.astype(np.float64)
    assert linear(x, w, wide).dtype == _composite(x, w, wide).dtype == np.float64
    np.testing.assert_array_equal(linear(x, w, wide), _composite(x, w, wide))


def test_dense_records_its_affine_map_as_one_node():
    layer = fl.Dense(5, 4, np.tanh)
    trace = ReverseTrace()
    (traced,), *_ = _trace_args(trace, (layer,), trace.leaf)
    n = len(trace.tape)
    traced(np.ones((3, 5), np.float32))
    assert [node[0].name for node in trace.tape[n:]] == ["linear", "tanh"]


def test_compile_records_the_composite():
    x, w, b = _args((3, 5))
    f = fl.compile(lambda x, w, b: linear(x, w, b))
    np.testing.assert_allclose(f(x, w, b), _composite(x, w, b), rtol=1e-12)
    text = repr(f.ir)
    assert "matmul" in text and "linear" not in text


@pytest.mark.parametrize("args, message", [
    ((np.ones((2, 5)), np.ones(5)), "weight must be a matrix"),
    ((np.ones((2, 3)), np.ones((4, 5))), r"x must be shaped \(..., 5\)"),
    ((np.ones(()), np.ones((4, 5))), r"x must be shaped \(..., 5\)"),
    ((np.ones((2, 5)), np.ones((4, 5)), np.ones(3)), r"bias must have shape \(4,\)"),
])
def test_errors_name_the_function_and_the_shapes(args, message):
    with pytest.raises(ValueError, match=f"linear: {message}"):
        linear(*args)


@pytest.mark.parametrize("x_shape, w_shape", [((2, 3, 0), (4, 0)), ((2, 3, 3), (0, 3)),
                                              ((0, 2, 3), (4, 3))])
def test_no_features_or_outputs_with_batch_axes(x_shape, w_shape):
    """With several batch axes and 0 input features (or 0 outputs) the map and its rules
    reshaped to ``(-1, 0)``, which NumPy cannot resolve (a ValueError about reshaping); the
    map of no features is the bias, and its gradients are zeros."""
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal(x_shape), rng.standard_normal(w_shape), \
        rng.standard_normal(w_shape[:1])
    y = linear(x, w, b)
    np.testing.assert_array_equal(y, np.einsum("...i,oi->...o", x, w) + b)
    g = rng.standard_normal(y.shape)
    gx, gw, gb = fl.gradient(lambda x, w, b: np.sum(linear(x, w, b) * g), x, w, b)
    np.testing.assert_allclose(gx, np.einsum("...o,oi->...i", g, w), atol=1e-12)
    lead = tuple(range(g.ndim - 1))
    np.testing.assert_allclose(gw, np.tensordot(g, x, axes=(lead, lead)), atol=1e-12)
    np.testing.assert_allclose(gb, np.sum(g, axis=lead), atol=1e-12)
