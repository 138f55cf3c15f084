"""Flux.jl's test/layers/normalisation.jl and test/test_common/normalization.jl (WeightNorm)
translated to fluxml: batch first, channels on axis 1 (Flux's channels are the
second-to-last dimension), LayerNorm over the trailing dimensions (Flux's leading ones),
Dropout's ``dims`` the axes along which the mask varies, as Flux's. Flux's ``evalwgrad``
(a forward pass inside a pullback: training mode) is ``fl.pullback(f, x)[0]`` here."""

import numpy as np
import pytest

import fluxml as fl

RNG = np.random.default_rng(5)


def evalwgrad(f, x):
    return fl.pullback(f, x)[0]


def test_dropout():
    # normalisation.jl "Dropout"
    for x in (np.array([1 + 0j, 2 + 1j, 3 + 3j]), np.array([1.0, 2.0, 3.0])):
        np.testing.assert_array_equal(fl.Dropout(0.1)(x), x)  # test mode outside gradients
        np.testing.assert_array_equal(evalwgrad(fl.Dropout(0), x), x)
        np.testing.assert_array_equal(evalwgrad(fl.Dropout(1), x), np.zeros_like(x))
    x = RNG.random(100)
    m = fl.Dropout(0.9, rng=np.random.default_rng(0))
    y = evalwgrad(m, x)
    assert np.sum(y == 0) > 50
    np.testing.assert_allclose(y[y != 0], x[y != 0] / 0.1)  # the kept ones scaled by 1/(1-p)
    fl.testmode(m)
    assert np.sum(evalwgrad(m, x) == 0) == 0  # overrides the gradient's training mode
    fl.testmode(m, False)
    assert np.sum(evalwgrad(m, x) == 0) > 50
    assert np.sum(evalwgrad(fl.Dropout(0.9, active=False), x) == 0) == 0
    m = fl.Chain(fl.Dense(100, 100), fl.Dropout(0.9))
    x32 = RNG.random(100, dtype=np.float32)
    assert np.sum(evalwgrad(m, x32) == 0) > 50
    fl.testmode(m)
    assert np.sum(evalwgrad(m, x32) == 0) == 0
    # dims: the mask varies along these axes only. Flux's x (100, 50) with dims=2 is (50,
    # 100) with dims=0 here: every feature column has the same zeros
    x = RNG.random((50, 100))
    y = fl.trainmode(fl.Dropout(0.5, dims=0))(x)
    zeros = np.sum(y == 0, axis=0)
    assert zeros.min() == zeros.max() and np.all((y == 0) == (y[:, :1] == 0))
    y = fl.trainmode(fl.Dropout(0.5, dims=1))(x)
    zeros = np.sum(y == 0, axis=1)
    assert zeros.min() == zeros.max() and np.all((y == 0) == (y[:1] == 0))
    # issue #1084: testmode / trainmode outside a gradient
    m = fl.Dropout(0.9)
    x = RNG.random(100)
    assert np.sum(fl.testmode(m)(x) == 0) == 0
    assert np.sum(fl.trainmode(m)(x) == 0) > 50
    assert np.sum(fl.dropout(x, 0.9) == 0) > 50
    assert np.sum(fl.dropout(x, 0.0) == 0) == 0
    rng = np.random.default_rng(1)
    assert fl.cpu(fl.Dropout(0.5, rng=rng)).rng is rng
    assert fl.Dropout(0.5, active=True).active is True
    with pytest.raises(TypeError, match="Dropout: active must be True, False or None"):
        fl.Dropout(0.5, active="something_else")


def test_alpha_dropout():
    # normalisation.jl "AlphaDropout": keeps mean 0 and variance 1 of standard normal input
    x = np.array([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(fl.AlphaDropout(0.1)(x), x)
    np.testing.assert_array_equal(evalwgrad(fl.AlphaDropout(0), x), x)
    np.testing.assert_array_equal(evalwgrad(fl.AlphaDropout(1), x), np.zeros(3))
    m = fl.AlphaDropout(0.5, rng=np.random.default_rng(2))
    x = RNG.standard_normal(20000)
    y = evalwgrad(m, x)
    assert abs(np.mean(y)) < 0.05 and abs(np.var(y) - 1) < 0.05
    fl.testmode(m)
    np.testing.assert_array_equal(evalwgrad(m, x), x)
    fl.testmode(m, False)
    # each entry of ones is a * 1 + b or a * alpha' + b (Klambauer et al.): the sum of 100
    # (PyTorch's test: within 40 to 130) has mean 100 * (a (1 - p + p alpha') + b)
    lam, alpha = 1.0507009873554805, 1.6732632423543772
    ap, p = -lam * alpha, 0.5
    a = ((1 - p) * (1 + p * ap ** 2)) ** -0.5
    b = -a * ap * p
    values = np.unique(np.round(evalwgrad(m, np.ones(100)), 6))
    np.testing.assert_allclose(values, np.round([a * ap + b, a + b], 6))
    sums = [evalwgrad(m, np.ones(100)).sum() for _ in range(200)]
    assert np.mean(sums) == pytest.approx(100 * (a * (1 - p + p * ap) + b), abs=2)
    assert fl.AlphaDropout(0.5, active=True).active is True


def test_batchnorm_values():
    # normalisation.jl "BatchNorm": Flux's x (2 features, 3 samples) is (3, 2) here
    m = fl.f64(fl.BatchNorm(2))
    assert len(fl.trainables(m)) == 2
    np.testing.assert_array_equal(m.bias, [0, 0])
    np.testing.assert_array_equal(m.weight, [1, 1])
    x = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    y = evalwgrad(m, x)
    np.testing.assert_allclose(y, [[-1.22474, -1.22474], [0, 0], [1.22474, 1.22474]],
                               atol=1e-5)
    np.testing.assert_allclose(m.running_mean, [0.3, 0.4])
    np.testing.assert_allclose(m.running_var, 0.1 * np.var(x, axis=0) * 3 / 2 + 0.9)
    assert m(x)[0, 0] == pytest.approx((1 - 0.3) / np.sqrt(1.3), abs=1e-5)
    m = fl.BatchNorm(2, track_stats=False)
    x32 = x.astype(np.float32)
    np.testing.assert_allclose(m(x32), y, atol=1e-5)  # the batch's statistics in test mode
    m = fl.BatchNorm(2, fl.sigmoid)
    np.testing.assert_allclose(
        m(x32), fl.sigmoid((x32 - m.running_mean) / np.sqrt(m.running_var + m.eps)),
        atol=1e-7)
    assert len(fl.trainables(fl.BatchNorm(10, affine=False))) == 0
    assert fl.BatchNorm(5, active=True).active is True
    with pytest.raises(TypeError, match="active must be True, False or None"):
        fl.BatchNorm(5, active="something_else")


def test_batchnorm_refuses_a_single_value_per_channel():
    # normalisation.jl "BatchNorm" (issue #1992, as PyTorch): training on one value per
    # channel raises. Before, the output was the bias alone (x - mean = 0) and the running
    # variance decayed towards 0 (0.9 after one step), silently
    m = fl.trainmode(fl.BatchNorm(1))
    with pytest.raises(ValueError, match=r"BatchNorm\(1, active=True\) got a single value per "
                                         r"channel"):
        m(np.zeros((1, 1), np.float32))
    np.testing.assert_array_equal(m.running_var, [1.0])  # left as it was
    with pytest.raises(ValueError, match=r"BatchNorm\(1\) got a single value per channel"):
        fl.gradient(lambda m: np.sum(m(np.zeros((1, 1), np.float32))), fl.BatchNorm(1))
    with pytest.raises(ValueError, match="single value per channel"):
        fl.BatchNorm(1, track_stats=False)(np.zeros((1, 1, 1, 1), np.float32))
    y = m(np.arange(4, dtype=np.float32).reshape(1, 1, 4))  # N=1 but 4 values: fine
    np.testing.assert_allclose(y[0, 0], (np.arange(4) - 1.5) / np.sqrt(1.25 + 1e-5), rtol=1e-5)
    m = fl.testmode(fl.BatchNorm(1))  # single-sample inference is fine
    np.testing.assert_allclose(m(np.zeros((1, 1), np.float32)), [[0.0]])
    with pytest.raises(ValueError, match="InstanceNorm.*single value per sample and channel"):
        fl.trainmode(fl.InstanceNorm(2, track_stats=True))(np.ones((3, 2, 1), np.float32))


@pytest.mark.parametrize("spatial", [(3,), (2, 3), (2, 2, 3)])
def test_batchnorm_is_per_channel_over_batch_and_space(spatial):
    # normalisation.jl "BatchNorm": a (N, C, ...) input equals the (N * ..., C) one permuted
    x = np.arange(1, 2 * np.prod(spatial) * 2 + 1, dtype=np.float32).reshape((2, 2) + spatial)
    m = fl.trainmode(fl.BatchNorm(2))
    flat = np.moveaxis(x, 1, -1).reshape(-1, 2)
    want = np.moveaxis(fl.trainmode(fl.BatchNorm(2))(flat).reshape(
        (2,) + spatial + (2,)), -1, 1)
    np.testing.assert_allclose(m(x), want, rtol=1e-6, atol=1e-6)


def test_instancenorm_values():
    # normalisation.jl "InstanceNorm": Flux's x (3, 2, 2) = reshape(1:12) is x[n, c, l] here
    x = np.arange(1, 13, dtype=np.float32).reshape(2, 2, 3)
    m = fl.InstanceNorm(2, affine=True, track_stats=True)
    assert len(fl.trainables(m)) == 2
    evalwgrad(m, x)
    np.testing.assert_allclose(m.running_mean, [0.5, 0.8], rtol=1e-6)
    var = np.var(x, axis=2)  # biased, per sample and channel
    np.testing.assert_allclose(m.running_var, 0.1 * 1.5 * var.mean(axis=0) + 0.9, rtol=1e-6)
    y = m(x)
    want = (x - m.running_mean[:, None]) / np.sqrt(m.running_var[:, None] + 1e-5)
    np.testing.assert_allclose(y, want, atol=1e-5)
    x64 = x.astype(np.float64)
    for affine, track in [(True, False), (False, False)]:
        m = fl.f64(fl.InstanceNorm(2, fl.sigmoid, affine=affine, track_stats=track))
        assert len(fl.trainables(m)) == (2 if affine else 0)
        mu, var = x64.mean(axis=2, keepdims=True), x64.var(axis=2, keepdims=True)
        np.testing.assert_allclose(m(x64), fl.sigmoid((x64 - mu) / np.sqrt(var + m.eps)),
                                   atol=1e-7)
    # equal to a BatchNorm over the channels of each sample squashed into one batch
    sizes = (6, 2, 4, 3, 5, 5)
    x = np.arange(np.prod(sizes), dtype=np.float32).reshape(sizes)
    m = fl.InstanceNorm(2, affine=True, track_stats=True)
    y = evalwgrad(m, x)
    assert y.shape == sizes and m.running_mean.shape == (2,) == m.running_var.shape
    bn = fl.trainmode(fl.BatchNorm(12))
    np.testing.assert_array_equal(fl.trainmode(fl.InstanceNorm(2, affine=True))(x),
                                  bn(x.reshape((1, 12) + sizes[2:])).reshape(sizes))
    assert len(fl.trainables(fl.InstanceNorm(10))) == 0


def test_layernorm():
    # normalisation.jl "LayerNorm": Flux's LayerNorm(2) over dimension 1 is LayerNorm(2)
    # over the last axis here; Flux's LayerNorm((2, 3)) is LayerNorm(3, 2)
    def normalise(x, axes):
        mu, var = x.mean(axis=axes, keepdims=True), x.var(axis=axes, keepdims=True)
        return (x - mu) / np.sqrt(var + 1e-5)

    for shape in [(3, 2), (4, 3, 2), (5, 4, 3, 2)]:
        x = RNG.random(shape)
        np.testing.assert_allclose(fl.f64(fl.LayerNorm(2))(x), normalise(x, -1), rtol=1e-12)
    x = RNG.random(2)
    np.testing.assert_allclose(fl.f64(fl.LayerNorm(2, np.tanh))(x), np.tanh(normalise(x, -1)),
                               rtol=1e-12)
    x = RNG.random((5, 4, 3, 2))
    np.testing.assert_allclose(fl.f64(fl.LayerNorm(3, 2))(x), normalise(x, (-2, -1)),
                               rtol=1e-12)
    np.testing.assert_allclose(fl.f64(fl.LayerNorm(4, 3, 2))(x), normalise(x, (-3, -2, -1)),
                               rtol=1e-12)
    assert len(fl.trainables(fl.LayerNorm(4, 3, 2))) == 2
    assert len(fl.trainables(fl.LayerNorm(4, 3, 2, affine=False))) == 0


def test_groupnorm_values():
    # normalisation.jl "GroupNorm": Flux's frozen outputs for x = reshape(1:24, 3, 4, 2),
    # which is x[n, c, l] here (and the literals transposed the same way)
    x = np.arange(1, 25, dtype=np.float32).reshape(2, 4, 3)
    flux = np.array([
        [[-1.4638476, 0.29276943, -1.4638476, 0.29276943],
         [-0.87830865, 0.87830853, -0.8783088, 0.8783083],
         [-0.29276967, 1.4638474, -0.2927699, 1.4638472]],
        [[-1.4638476, 0.29276943, -1.4638472, 0.29276943],
         [-0.8783083, 0.8783083, -0.8783083, 0.8783083],
         [-0.29276943, 1.4638472, -0.29276943, 1.4638472]]]).transpose(0, 2, 1)
    m = fl.GroupNorm(4, 2)
    assert len(fl.trainables(m)) == 2
    evalwgrad(m, x)
    assert not hasattr(m, "running_mean")
    np.testing.assert_allclose(m(x), flux, atol=1e-5)
    np.testing.assert_allclose(fl.GroupNorm(4, 2, fl.sigmoid)(x), fl.sigmoid(flux), atol=1e-5)
    # equal to InstanceNorm with one channel a group; to BatchNorm on a batch of one
    x = np.arange(240, dtype=np.float32).reshape(5, 4, 3, 2, 2)
    np.testing.assert_allclose(fl.trainmode(fl.InstanceNorm(4, affine=True))(x),
                               fl.GroupNorm(4, 4)(x), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(fl.trainmode(fl.BatchNorm(4))(x[:1]), fl.GroupNorm(4, 4)(x[:1]),
                               rtol=1e-6, atol=1e-6)


def test_second_and_forward_derivatives():
    # normalisation.jl "second derivatives" and "ForwardDiff"
    h = fl.hessian(lambda x: np.sum(fl.Dropout(0.5)(x)), np.array([1.0, 2.0, 3.0]))
    np.testing.assert_array_equal(h, np.zeros((3, 3)))
    x = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], np.float32).T
    h = fl.hessian(lambda x: np.sum(fl.BatchNorm(3)(x)), x)
    np.testing.assert_allclose(h, np.zeros((2, 3, 2, 3)), atol=1e-6)
    bn = fl.trainmode(fl.BatchNorm(3))
    x = RNG.random((4, 3), dtype=np.float32)
    jac = fl.jacobian(bn, x)
    assert jac.shape == (4, 3, 4, 3) and jac.dtype == np.float32
    assert np.all(bn.running_mean != 0)  # issue #2122: forward mode trains too
    x5 = RNG.random((3, 5), dtype=np.float32)
    g1 = fl.gradient(lambda x: np.sum(fl.BatchNorm(5, fl.relu)(x) ** 2), x5)[0]
    g2 = np.array([fl.jvp(lambda x: np.sum(fl.BatchNorm(5, fl.relu, active=True)(x) ** 2),
                          (x5,), (e.reshape(3, 5),))[1]
                   for e in np.eye(15, dtype=np.float32)]).reshape(3, 5)
    np.testing.assert_allclose(g1, g2, atol=1e-5)


def test_weightnorm():
    # test_common/normalization.jl "WeightNorm": Flux's WeightNorm(Dense) is dims=1 here
    # (one g per output; fluxml's default, axis 0, is Flux's for convolutions)
    x = RNG.random((3, 1))
    mn = fl.WeightNorm(fl.f64(fl.Dense(1, 2)), dims=1)
    m = fl.remove_weight_norms(mn)
    np.testing.assert_allclose(m(x), mn(x), rtol=1e-6)
    with pytest.raises(ValueError, match="has no field 'weights'"):
        fl.WeightNorm(m, "weights")
    with pytest.raises(ValueError, match="is all zero"):
        fl.WeightNorm(m, "bias")
    og = fl.gradient(lambda m: np.sum(m(x)), m)[0]
    g = fl.gradient(lambda mn: np.sum(mn(x)), mn)[0]
    v = mn.layer.weight
    v = v / np.sqrt(np.sum(v ** 2, axis=1, keepdims=True) + np.finfo(np.float64).eps)
    np.testing.assert_allclose(np.sum(og.weight * v, axis=1, keepdims=True), g.g, rtol=1e-12)
    # (0 up to rounding: one input per output leaves v's direction fixed; the difference
    # cancels terms of order one, so its rounding is some 1e-11, not below 1e-12 for every
    # draw of the weights, which the global generator's earlier draws decide)
    np.testing.assert_allclose(og.weight * mn.g - mn.g * g.g * v, g.layer.weight, atol=1e-9)
    np.testing.assert_allclose(g.layer.bias, og.bias)
    # and with more than one input, dL/dv = g / |v| (dL/dw - (dL/dw . v^) v^) per output
    mn = fl.WeightNorm(fl.f64(fl.Dense(3, 2)), dims=1)
    x = RNG.random((4, 3))
    gw = fl.gradient(lambda m: np.sum(m(x) ** 2), fl.remove_weight_norms(mn))[0].weight
    g = fl.gradient(lambda mn: np.sum(mn(x) ** 2), mn)[0]
    norm = np.sqrt(np.sum(mn.layer.weight ** 2, axis=1, keepdims=True))
    v = mn.layer.weight / norm
    dot = np.sum(gw * v, axis=1, keepdims=True)
    np.testing.assert_allclose(g.g, dot, rtol=1e-10)
    np.testing.assert_allclose(g.layer.weight, mn.g / norm * (gw - dot * v), rtol=1e-8,
                               atol=1e-12)
    assert isinstance(fl.remove_weight_norms(mn), fl.Dense)
    c = fl.Chain(fl.WeightNorm(fl.Conv((3,), 1, 2)), fl.Conv((3,), 2, 2),
                 fl.WeightNorm(fl.Conv((3,), 2, 3)), fl.Flatten(),
                 fl.WeightNorm(fl.Dense(18, 4)), fl.Dense(4, 1))
    oc = fl.remove_weight_norms(c)
    assert [type(layer).__name__ for layer in oc] == ["Conv", "Conv", "Conv", "Flatten",
                                                      "Dense", "Dense"]
    x = RNG.random((1, 1, 12), dtype=np.float32)
    np.testing.assert_allclose(c(x), oc(x), rtol=1e-5)
    assert c[0].g.shape == (1, 1, 3)  # fluxml's default dims=0: Flux's for a convolution


def test_the_single_value_refusal_advises_what_the_layer_can_do():
    # the advice "use the running statistics (fl.testmode)" was given to layers without
    # them (InstanceNorm's default, a BatchNorm in test mode with track_stats=False)
    untracked = fl.testmode(fl.BatchNorm(3, track_stats=False))
    for layer, x in ((fl.InstanceNorm(3), np.ones((2, 3, 1), np.float32)),
                     (untracked, np.ones((1, 3), np.float32))):
        with pytest.raises(ValueError, match="give more than one") as err:
            layer(x)
        assert "testmode" not in str(err.value)
    with pytest.raises(ValueError, match=r"partial=False\), or use the running statistics"):
        fl.trainmode(fl.BatchNorm(3))(np.ones((1, 3), np.float32))


def test_f16_keeps_running_statistics_float32():
    # utils.jl "mixed-precision normalization": Flux's f16 keeps a norm layer's statistics
    # Float32. Before, fl.f16 made them float16, and a batch of entries of a few hundred
    # (a convolution of 0-255 pixels) had a variance above 65504: the running variance
    # became inf, and test mode gave zeros, silently
    x = (RNG.standard_normal((8, 3, 4, 4)) * 300 + 50).astype(np.float16)
    for layer in (fl.BatchNorm(3), fl.InstanceNorm(3, affine=True, track_stats=True),
                  fl.BatchNorm(3, affine=False)):
        half = fl.f16(layer)
        assert half.running_mean.dtype == half.running_var.dtype == np.float32
        if half.weight is not None:
            assert half.weight.dtype == np.float16
        y = fl.trainmode(half)(x)
        ref = fl.trainmode(layer)(x.astype(np.float32))
        assert y.dtype == np.float16
        np.testing.assert_allclose(y, ref, atol=3e-3)
        np.testing.assert_allclose(half.running_var, layer.running_var, rtol=1e-3)
        assert np.all(half.running_var > 1e4) and np.all(np.isfinite(half.running_var))
        y = fl.testmode(half)(x)
        assert y.dtype == np.float16
        np.testing.assert_allclose(y, fl.testmode(layer)(x.astype(np.float32)), atol=3e-3)
    assert fl.BatchNorm(3, dtype=np.float16).running_var.dtype == np.float32
    assert fl.f16(fl.LayerNorm(3)).weight.dtype == np.float16  # converted fully, as Flux
    assert fl.f16(fl.GroupNorm(4, 2))(x[:, :1].repeat(4, axis=1)).dtype == np.float16
    assert fl.f32(fl.f16(fl.BatchNorm(3))).running_var.dtype == np.float32


@pytest.mark.parametrize("make", [lambda: fl.BatchNorm(2), lambda: fl.LayerNorm(2),
                                  lambda: fl.BatchNorm(2, dtype=np.float16)])
def test_a_norm_layer_converted_back_by_fmap_computes_in_its_weights_precision(make):
    # the float16 record of fl.f16 (or dtype=float16) outlived a plain fl.fmap of astype
    # back to float32: the layer rounded float32 input to float16 and gave float16 output
    to32 = lambda a: a.astype(np.float32) if isinstance(a, np.ndarray) else a  # noqa: E731
    layer = fl.trainmode(fl.fmap(to32, fl.f16(make())))
    x = RNG.normal(size=(4, 2)).astype(np.float32) * 1000 + 0.123456
    want = fl.trainmode(fl.f32(fl.f16(make())))(x)
    assert layer.weight.dtype == np.float32 and layer(x).dtype == np.float32
    np.testing.assert_array_equal(layer(x), want)
