"""Normalisation and dropout layers against textbook formulas; train/test modes."""

import warnings

import numpy as np
import pytest

import fluxml as fl
from fluxml.testing import check_grads

RNG = np.random.default_rng(0)


def random_affine(layer):
    layer = fl.f64(layer)
    layer.weight = RNG.normal(size=layer.weight.shape)
    layer.bias = RNG.normal(size=layer.bias.shape)
    return layer


def test_batchnorm_train_and_test_modes():
    bn = random_affine(fl.BatchNorm(3, momentum=0.2))
    x = RNG.normal(2.0, 3.0, size=(4, 3, 2, 5))
    y = fl.trainmode(bn)(x)
    for c in range(3):
        v = x[:, c].ravel()
        mu, var = v.mean(), ((v - v.mean()) ** 2).mean()
        want = bn.weight[c] * (x[:, c] - mu) / np.sqrt(var + 1e-5) + bn.bias[c]
        np.testing.assert_allclose(y[:, c], want, rtol=1e-10)
        assert bn.running_mean[c] == pytest.approx(0.2 * mu)
        assert bn.running_var[c] == pytest.approx(0.8 + 0.2 * var * 40 / 39)
    fl.testmode(bn)
    want = (x - bn.running_mean[:, None, None]) / np.sqrt(bn.running_var[:, None, None] + 1e-5)
    np.testing.assert_allclose(bn(x), want * bn.weight[:, None, None] + bn.bias[:, None, None],
                               rtol=1e-10)
    assert bn._line() == "BatchNorm(3, active=False)"
    # automatic mode: inside a gradient the batch statistics, and the running ones update
    fl.testmode(bn, None)
    before = bn.running_mean.copy()
    g, = fl.gradient(lambda m: np.sum(m(x) ** 2), bn)
    assert not np.allclose(bn.running_mean, before)
    assert g.running_mean is None and g.weight.shape == (3,)
    np.testing.assert_allclose(bn(x), fl.testmode(bn)(x))  # outside: test mode


def test_batchnorm_gradients_and_options():
    bn = random_affine(fl.BatchNorm(2, np.tanh, active=True))
    x = RNG.normal(size=(3, 2, 2))
    check_grads(lambda m, x: np.sum(np.sin(m(x))), bn, x, order=2)
    frozen = fl.f64(fl.BatchNorm(2, affine=False, track_stats=False))
    assert frozen.weight is None and frozen.running_mean is None
    dense_input = RNG.normal(size=(5, 2))
    np.testing.assert_allclose(frozen(dense_input), (dense_input - dense_input.mean(0))
                               / np.sqrt(dense_input.var(0) + 1e-5), rtol=1e-10)
    check_grads(lambda x: np.sum(np.sin(frozen(x)) * np.arange(10.0).reshape(5, 2)),
                dense_input)
    assert repr(fl.BatchNorm(4, affine=False, track_stats=False)) == \
        "BatchNorm(4, affine=False, track_stats=False)"
    with pytest.raises(fl.LayerError, match=r"^Chain\[1\]: BatchNorm\(3\) expects input "
                                            r"\(N, 3, \.\.\.\); got \(2, 4, 5, 5\)"):
        fl.Chain(np.tanh, fl.BatchNorm(3))(np.ones((2, 4, 5, 5), np.float32))
    with pytest.raises(fl.LayerError, match="expects floating-point input; got int64"):
        fl.BatchNorm(3)(np.ones((2, 3), np.int64))


def test_instancenorm_and_its_running_statistics():
    m = fl.f64(fl.InstanceNorm(2, affine=True, track_stats=True, active=True))
    x = RNG.normal(1.0, 2.0, size=(3, 2, 6))
    y = m(x)
    mu = x.mean(axis=2, keepdims=True)
    var = x.var(axis=2, keepdims=True)
    np.testing.assert_allclose(y, (x - mu) / np.sqrt(var + 1e-5), rtol=1e-10)
    np.testing.assert_allclose(m.running_mean, 0.1 * mu[..., 0].mean(0), rtol=1e-10)
    np.testing.assert_allclose(m.running_var, 0.9 + 0.1 * var[..., 0].mean(0) * 6 / 5,
                               rtol=1e-10)
    check_grads(lambda m, x: np.sum(np.sin(m(x))), random_affine(m), x, order=2)
    assert m._line() == "InstanceNorm(2, affine=True, track_stats=True, active=True)"
    with pytest.raises(fl.LayerError, match=r"InstanceNorm\(2\) expects input \(N, 2, L, "
                                            r"\.\.\.\); got \(3, 2\)"):
        fl.InstanceNorm(2)(np.ones((3, 2), np.float32))


def test_groupnorm_and_layernorm_formulas():
    m = random_affine(fl.GroupNorm(4, 2))
    x = RNG.normal(size=(2, 4, 3))
    y = m(x)
    for n in range(2):
        for g in range(2):
            block = x[n, 2 * g:2 * g + 2]
            want = (block - block.mean()) / np.sqrt(block.var() + 1e-5)
            want = want * m.weight[2 * g:2 * g + 2, None] + m.bias[2 * g:2 * g + 2, None]
            np.testing.assert_allclose(y[n, 2 * g:2 * g + 2], want, rtol=1e-10)
    check_grads(lambda m, x: np.sum(np.sin(m(x))), m, x, order=2)
    with pytest.raises(ValueError, match=r"channels \(5\) must be divisible by groups \(2\)"):
        fl.GroupNorm(5, 2)

    ln = random_affine(fl.LayerNorm(3, 2))
    x = RNG.normal(size=(4, 3, 2))
    flat = x.reshape(4, 6)
    want = ((flat - flat.mean(1, keepdims=True)) / np.sqrt(flat.var(1, keepdims=True) + 1e-5))
    np.testing.assert_allclose(ln(x), want.reshape(4, 3, 2) * ln.weight + ln.bias, rtol=1e-10)
    check_grads(lambda m, x: np.sum(np.sin(m(x))), ln, x, order=2)
    assert repr(fl.LayerNorm(8, np.tanh, affine=False)) == "LayerNorm(8, tanh, affine=False)"
    with pytest.raises(fl.LayerError, match=r"LayerNorm\(3, 2\) expects input \(\.\.\., 3, 2\);"
                                            r" got \(4, 2, 3\)"):
        ln(np.ones((4, 2, 3)))
    assert fl.outputsize(fl.Chain(fl.GroupNorm(4, 2), fl.LayerNorm(5)), (2, 4, 5)) == (2, 4, 5)
    assert fl.f32(ln)(np.ones((2, 3, 2), np.float32)).dtype == np.float32
    with warnings.catch_warnings():  # shapes only: no precision warning for a float64 layer
        warnings.simplefilter("error")
        assert fl.outputsize(fl.f64(fl.BatchNorm(3)), (2, 3, 4)) == (2, 3, 4)


def test_dropout_modes_mask_and_gradient():
    x = np.ones((200, 50), np.float32)
    d = fl.Dropout(0.3, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(d(x), x)  # test mode outside a gradient
    fl.trainmode(d)
    y = d(x)
    assert y.dtype == np.float32
    assert set(np.unique(y)) <= {0.0, np.float32(1 / 0.7)}
    assert abs((y == 0).mean() - 0.3) < 0.02
    assert repr(d) == "Dropout(0.3, active=True)"
    # inside a gradient the mask is the derivative
    auto = fl.Dropout(0.5, rng=np.random.default_rng(1))
    g, = fl.gradient(lambda x: np.sum(auto(x)), x)
    expected = (np.random.default_rng(1).random(x.shape, dtype=np.float32) >= 0.5) / 0.5
    np.testing.assert_allclose(g, expected)
    # a mask shared along the axes not in dims: whole channels dropped
    ch = fl.Dropout(0.5, dims=(0, 1), active=True, rng=np.random.default_rng(2))
    y = ch(np.ones((4, 6, 3, 3), np.float32))
    assert np.all((y == 0).all(axis=(2, 3)) | (y != 0).all(axis=(2, 3)))
    assert fl.Dropout(0.0, active=True)(x) is x
    with pytest.raises(ValueError, match=r"p must be a probability in \[0, 1\]; got 1.5"):
        fl.Dropout(1.5)


def test_alphadropout_keeps_mean_and_variance():
    x = RNG.normal(size=(400, 500))
    d = fl.AlphaDropout(0.2, active=True, rng=np.random.default_rng(3))
    y = d(x)
    assert abs(y.mean()) < 0.02 and abs(y.std() - 1) < 0.02
    assert len(np.unique(np.round(y[np.isclose(y, y.min())], 6))) >= 1
    np.testing.assert_array_equal(fl.testmode(d)(x), x)
    assert repr(d) == "AlphaDropout(0.2, active=False)"
