"""Normalisation kernels against the textbook formulas (written here), derivatives (order 2,
both modes, with and without affine parameters, statistics outputs included), the fused
gradient against the composite's, batch size 1, float32, bad inputs."""

import numpy as np
import pytest

import fluxml as fl
from fluxml.testing import check_grads

R = np.random.default_rng(0)
X = R.standard_normal((3, 4, 5))
S, B = R.standard_normal(4), R.standard_normal(4)


def reference(x, axes, scale=1.0, bias=0.0, eps=1e-5):
    m = np.mean(x, axis=axes, keepdims=True)
    v = np.mean((x - m) ** 2, axis=axes, keepdims=True)
    return (x - m) / np.sqrt(v + eps) * scale + bias


def per_channel(a, ndim):
    return a.reshape((1, -1) + (1,) * (ndim - 2))


def test_batchnorm():
    want = reference(X, (0, 2), per_channel(S, 3), per_channel(B, 3))
    np.testing.assert_allclose(fl.batchnorm(X, S, B), want, rtol=1e-12)
    y, m, v = fl.batchnorm(X, S, B, return_stats=True)
    np.testing.assert_allclose(m, X.mean(axis=(0, 2)))
    np.testing.assert_allclose(v, X.var(axis=(0, 2)))
    check_grads(lambda x, s, b: fl.batchnorm(x, s, b, return_stats=True), X, S, B)
    check_grads(lambda x: fl.batchnorm(x), X)


def test_batchnorm_running_statistics():
    rm, rv = R.standard_normal(4), R.random(4) + 0.5
    want = (X - per_channel(rm, 3)) / np.sqrt(per_channel(rv, 3) + 1e-5) * per_channel(
        S, 3) + per_channel(B, 3)
    np.testing.assert_allclose(fl.batchnorm(X, S, B, mean=rm, var=rv), want, rtol=1e-12)
    check_grads(lambda x, s: fl.batchnorm(x, s, B, mean=rm, var=rv), X, S, order=1)


def test_layernorm():
    s, b = R.standard_normal(5), R.standard_normal(5)
    np.testing.assert_allclose(fl.layernorm(X, s, b), reference(X, -1, s, b), rtol=1e-12)
    s2 = R.standard_normal((4, 5))
    np.testing.assert_allclose(fl.layernorm(X, s2, axes=(1, 2)), reference(X, (1, 2), s2),
                               rtol=1e-12)
    check_grads(lambda x, s, b: fl.layernorm(x, s, b), X, s, b)


def test_groupnorm():
    x = R.standard_normal((2, 4, 3))
    g = x.reshape(2, 2, 2, 3)
    want = reference(g, (2, 3)).reshape(2, 4, 3) * per_channel(S, 3) + per_channel(B, 3)
    np.testing.assert_allclose(fl.groupnorm(x, 2, S, B), want, rtol=1e-12)
    check_grads(lambda x, s, b: fl.groupnorm(x, 2, s, b), x, S, B)


def test_instancenorm():
    want = reference(X, (2,), per_channel(S, 3), per_channel(B, 3))
    np.testing.assert_allclose(fl.instancenorm(X, S, B), want, rtol=1e-12)
    check_grads(lambda x, s: fl.instancenorm(x, s), X, S)


def test_fused_gradient_matches_composite():
    g = R.standard_normal(X.shape)
    for ours, ref in ((lambda x, s, b: fl.batchnorm(x, s, b),
                       lambda x, s, b: reference(x, (0, 2), per_channel(s, 3),
                                                 per_channel(b, 3))),
                      (lambda x, s, b: fl.instancenorm(x, s, b),
                       lambda x, s, b: reference(x, (2,), per_channel(s, 3),
                                                 per_channel(b, 3)))):
        a = fl.gradient(lambda *p: np.sum(ours(*p) * g), X, S, B)
        b = fl.gradient(lambda *p: np.sum(ref(*p) * g), X, S, B)
        for u, v in zip(a, b):
            np.testing.assert_allclose(u, v, rtol=1e-9, atol=1e-12)


def test_batch_of_one():
    x = R.standard_normal((1, 3))
    y = fl.batchnorm(x, S[:3], B[:3])
    np.testing.assert_allclose(y, np.broadcast_to(B[:3], (1, 3)))
    grads = fl.gradient(lambda x, s: np.sum(fl.batchnorm(x, s) ** 2), x, S[:3])
    for g in grads:
        assert np.all(np.isfinite(g)) and np.all(g == 0)


def test_float32():
    x = X.astype(np.float32)
    s, b = S.astype(np.float32), B.astype(np.float32)
    y = fl.batchnorm(x, s, b)
    g = fl.gradient(lambda x, s, b: np.sum(fl.batchnorm(x, s, b) ** 2), x, s, b)
    assert y.dtype == np.float32 and all(a.dtype == np.float32 for a in g)
    big = (X * 1e4).astype(np.float32)
    assert np.all(np.isfinite(fl.layernorm(big))) and np.all(np.isfinite(
        fl.gradient(lambda x: np.sum(fl.layernorm(x) ** 3), big)[0]))


def test_float32_tangent_of_float64_parameters():
    # a float32 x with float64 scale and bias gives a float32 output (y *= scale): its
    # tangent was float64 (a primitive of several outputs had its tangents left unfitted)
    x = X[:1, :2, :1].astype(np.float32)
    for mode in ("fwd", "rev"):
        j = fl.jacobian(lambda x: fl.layernorm(x, S[:1], B[:1], axes=-1), x, mode=mode)
        assert j.dtype == np.float32, mode
    y, t = fl.jvp(lambda x: fl.batchnorm(x, S, B), (X.astype(np.float32),),
                  (np.ones(X.shape, np.float32),))
    assert y.dtype == t.dtype == np.float32


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"batchnorm: scale must have shape \(4,\)"):
        fl.batchnorm(X, np.ones(3))
    with pytest.raises(ValueError, match="batchnorm: expected an input"):
        fl.batchnorm(np.ones(3))
    with pytest.raises(ValueError, match=r"groupnorm: the number of channels \(4\)"):
        fl.groupnorm(X, 3)
    with pytest.raises(ValueError, match="instancenorm: expected an input"):
        fl.instancenorm(np.ones((2, 3)))
    with pytest.raises(ValueError, match="normalise: scale of shape"):
        fl.layernorm(X, np.ones(4))
    with pytest.raises(TypeError, match="batchnorm: expected a float array"):
        fl.batchnorm(np.ones((2, 3), int))
    with pytest.raises(ValueError, match="both mean and var"):
        fl.batchnorm(X, mean=np.zeros(4))
