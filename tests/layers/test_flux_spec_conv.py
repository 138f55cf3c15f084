"""Flux.jl's test/layers/conv.jl translated to fluxml: batch first, NCHW, PyTorch's weight
shapes (``(out, in / groups, *kernel)``), and fluxml's ``Conv`` a cross-correlation (Flux's
``Conv`` flips the kernel: ``flipped=True`` here). Each test names its Flux testset."""

import numpy as np
import pytest

import fluxml as fl
from fluxml.layers import precision

RNG = np.random.default_rng(3)


def rand(*shape):
    return RNG.random(shape, dtype=np.float32)


def test_grouped_conv_refuses_an_init_of_another_shape():
    # conv.jl "Grouped Conv": Conv((3, 3), 1 => 1; init = (_...) -> rand(3, 3, 1)) throws.
    # Before, the weight took the init's shape: a Conv((1,), 3 => 3), silently.
    with pytest.raises(ValueError, match=r"Conv: init must return an array of shape "
                                         r"\(1, 1, 3, 3\); got shape \(3, 3, 1\)"):
        fl.Conv((3, 3), 1, 1, init=lambda shape, rng=None: rand(3, 3, 1))
    with pytest.raises(ValueError, match=r"ConvTranspose: init must return .* \(2, 4, 3\)"):
        fl.ConvTranspose((3,), 4, 2, init=lambda shape, rng=None: rand(4, 2, 3))
    # the same for every layer that calls an init (Dense(3 => 4) was a Dense(4 => 3))
    flipped = lambda shape, rng=None: rand(*shape[::-1])  # noqa: E731
    for make in (lambda: fl.Dense(3, 4, init=flipped), lambda: fl.Embedding(3, 4, init=flipped),
                 lambda: fl.Bilinear((2, 3), 4, init=flipped),
                 lambda: fl.RNN(3, 4, init=flipped), lambda: fl.LSTM(4, 4, init_recurrent=flipped),
                 lambda: fl.LayerNorm(2, 3, init_scale=flipped),
                 lambda: fl.Scale(2, 3, init=flipped)):
        with pytest.raises(ValueError, match="must return an array of shape"):
            make()
    # an init of the right shape is taken as it is
    w = fl.Dense(3, 4, init=lambda shape, rng=None: np.full(shape, 0.5)).weight
    assert w.shape == (4, 3) and w.dtype == np.float32 and np.all(w == 0.5)


def randn(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def test_pooling():
    # conv.jl "Pooling": adaptive pools equal the fixed windows that fit
    x, y = randn(2, 3, 10, 10), randn(2, 3, 20, 20)
    np.testing.assert_array_equal(fl.AdaptiveMaxPool((5, 5))(x), fl.MaxPool((2, 2))(x))
    np.testing.assert_allclose(fl.AdaptiveMeanPool((5, 5))(x), fl.MeanPool((2, 2))(x),
                               atol=1e-6)
    # Flux's AdaptiveMaxPool((10, 5)) on 20x20 is PoolDims (2, 4): (5, 10) here
    np.testing.assert_array_equal(fl.AdaptiveMaxPool((5, 10))(y), fl.MaxPool((4, 2))(y))
    np.testing.assert_allclose(fl.AdaptiveMeanPool((5, 10))(y), fl.MeanPool((4, 2))(y),
                               atol=1e-6)
    assert fl.GlobalMaxPool()(x).shape == (2, 3, 1, 1) == fl.GlobalMeanPool()(x).shape
    windows = x.reshape(2, 3, 5, 2, 5, 2)
    np.testing.assert_array_equal(fl.MaxPool((2, 2))(x), windows.max(axis=(3, 5)))
    np.testing.assert_allclose(fl.MeanPool((2, 2))(x), windows.mean(axis=(3, 5)), atol=1e-7)
    np.testing.assert_array_equal(fl.GlobalMaxPool()(x)[..., 0, 0], x.max(axis=(2, 3)))


def test_cnn_and_bias_switch():
    # conv.jl "CNN": shapes, a weight given with its bias, no bias
    m = fl.Chain(fl.Conv((2, 2), 1, 16, fl.relu), fl.MaxPool((2, 2)),
                 fl.Conv((2, 2), 16, 8, fl.relu), fl.MaxPool((2, 2)), fl.Flatten(),
                 fl.Dense(288, 10), fl.softmax)
    out = m(np.zeros((5, 1, 28, 28), np.float32))
    assert out.shape == (5, 10)
    np.testing.assert_allclose(out.sum(axis=1), 1, rtol=1e-6)
    # Conv(W, b) (before: TypeError, a weight was not a kernel)
    bias = fl.Conv(np.ones((3, 1, 2, 2), np.float32), np.ones(3, np.float32))
    op = bias(np.zeros((1, 1, 28, 28), np.float32))
    assert op.shape == (1, 3, 27, 27) and op.sum() == op.size
    ip = np.zeros((1, 1, 28, 28), np.float32)
    for lmap in (lambda m: m, fl.cpu, fl.f32):
        model = lmap(fl.Conv((2, 2), 1, 3, bias=False))
        assert model(ip).sum() == 0
        assert fl.gradient(lambda m: np.sum(m(ip)), model)[0].bias is None
    # "no bias train": only a bias could fit a constant target from a zero input
    model = fl.Conv((2, 2), 1, 3, bias=False)
    target = np.zeros((1, 3, 27, 27), np.float32) + 2
    state = fl.setup(fl.Descent(0.1), model)
    for _ in range(10):
        fl.update(state, model, fl.gradient(lambda m: fl.mse(m(ip), target), model)[0])
    assert fl.mse(model(ip), target) == pytest.approx(4.0)


def test_grouped_conv_and_channels():
    # conv.jl "Grouped Conv" and "_channels_in, _channels_out"
    c = fl.Conv((3,), 100, 25, groups=5)
    assert c.weight.shape == (25, 20, 3)
    assert c(rand(2, 100, 28)).shape == (2, 25, 26)
    c = fl.Conv((3, 3), 100, 25, groups=5)
    assert c.weight.shape == (25, 20, 3, 3) and c(rand(2, 100, 28, 28)).shape == (2, 25, 26, 26)
    c = fl.Conv((5, 4, 3), 100, 25, groups=5)
    assert c.weight.shape == (25, 20, 5, 4, 3)
    assert c(rand(2, 100, 12, 11, 10)).shape == (2, 25, 8, 8, 8)
    for cin, cout in [(3, 10), (2, 9)]:
        with pytest.raises(ValueError, match="groups=2 must divide in_channels"):
            fl.Conv((2, 2), cin, cout, groups=2)
    # the grouped convolution is each group's own convolution
    c = fl.Conv((3,), 4, 6, groups=2, bias=False)
    x = rand(2, 4, 9)
    want = np.concatenate([fl.Conv(c.weight[:3], False)(x[:, :2]),
                           fl.Conv(c.weight[3:], False)(x[:, 2:])], axis=1)
    np.testing.assert_allclose(c(x), want, rtol=1e-6)
    for layer, cin, cout, groups in [(fl.ConvTranspose, 8, 4, 4), (fl.ConvTranspose, 10, 15, 5),
                                     (fl.Conv, 6, 9, 3), (fl.ConvTranspose, 2, 1, 1)]:
        m = layer((3, 2), cin, cout, groups=groups)
        assert m(rand(1, cin, 5, 5)).shape[1] == cout and f"{cin} => {cout}" in repr(m)


def test_asymmetric_padding():
    # conv.jl "asymmetric padding": Flux's pad=(0,1,1,2) is (W: 0, 1; H: 1, 2), so here
    # H (1, 2) and W (0, 1), and the output the transpose of Flux's (27, 29)
    m = fl.Conv((3, 3), 1, 1, fl.relu, pad=(1, 2, 0, 1))
    m.weight[:] = 1.0
    m.bias[:] = 0.0
    y = m(np.ones((1, 1, 28, 28), np.float32))[0, 0]
    assert y.shape == (29, 27)
    assert (y[0, 0], y[1, 1], y[0, -1], y[-1, 0], y[-2, 0], y[-1, -1]) == (6, 9, 4, 3, 6, 2)
    np.testing.assert_array_equal(
        fl.Conv((3, 3), 1, 1, pad=((1, 2), (0, 1)), init=fl.init.ones)(
            np.ones((1, 1, 28, 28), np.float32))[0, 0], y)


def test_depthwise_conv():
    # conv.jl "Depthwise Conv"
    r = np.zeros((5, 3, 28, 28), np.float32)
    assert fl.DepthwiseConv((2, 2), 3, 15)(r).shape[1] == 15
    assert fl.DepthwiseConv((3, 2), 3, 9, bias=False)(r).shape[1] == 9
    with pytest.raises(ValueError, match=r"out_channels \(10\) must be a multiple of "
                                         r"in_channels \(3\)"):
        fl.DepthwiseConv((2, 2), 3, 10)
    with pytest.raises(TypeError, match=r"DepthwiseConv takes sizes; .* Conv\(W, bias, "
                                        r"groups=in_channels\)"):
        fl.DepthwiseConv(np.ones((6, 1, 2, 2)))
    # each output channel sees only its input channel: out 2c, 2c+1 from input c
    m = fl.DepthwiseConv((3,), 2, 4, bias=False)
    x = rand(1, 2, 6)
    y = m(x)
    for o in range(4):
        want = fl.Conv(m.weight[o:o + 1], False)(x[:, o // 2:o // 2 + 1])
        np.testing.assert_allclose(y[:, o:o + 1], want, rtol=1e-5, atol=1e-6)


def test_conv_transpose():
    # conv.jl "ConvTranspose"
    x = np.zeros((1, 1, 5, 5), np.float32)
    y = fl.Conv((3, 3), 1, 1)(x)
    assert fl.ConvTranspose((3, 3), 1, 1)(y).shape == x.shape
    assert fl.ConvTranspose((3, 3), 1, 1, bias=False)(y).shape == x.shape
    x = randn(3, 2, 10, 10)
    m1 = fl.ConvTranspose((3, 3), 2, 4, pad="same")
    m2 = fl.ConvTranspose((3, 3), 2, 4, groups=2, pad="same")
    assert m1.weight.shape == (2, 4, 3, 3) and m2.weight.shape == (2, 2, 3, 3)
    assert m1(x).shape == (3, 4, 10, 10) == m2(x).shape
    g = fl.gradient(lambda m: np.sum(m(x)), m2)[0]
    # d sum / d weight[i, o, a, b] = sum over the input channel i's positions in reach
    assert g.weight.shape == (2, 2, 3, 3)
    np.testing.assert_allclose(g.bias, np.full(4, 3 * 10 * 10), rtol=1e-6)
    m = fl.ConvTranspose((3,), 2, 4, pad="same", groups=2)
    assert m(randn(1, 2, 10)).shape == (1, 4, 10) and m.weight.size == 3 * 2 * 4 // 2
    m = fl.ConvTranspose((5, 3), 4, 4, pad="same", groups=4)
    assert m(randn(2, 4, 11, 10)).shape == (2, 4, 11, 10) and m.weight.size == 15 * 16 // 4
    m = fl.ConvTranspose((3, 5, 3), 3, 6, pad="same", groups=3)
    assert m(randn(2, 3, 12, 11, 10)).shape == (2, 6, 12, 11, 10)
    assert m.weight.size == 45 * 18 // 3
    shown = repr(fl.ConvTranspose((3, 3), 2, 4, groups=2))
    assert "groups=2" in shown and "2 => 4" in shown
    # outpad grows the output (Flux's outpad=(1, 0) on (W, H) is (0, 1) here)
    x = randn(2, 3, 11, 10)
    a = fl.ConvTranspose((5, 3), 3, 6, stride=3)(x).shape
    b = fl.ConvTranspose((5, 3), 3, 6, stride=3, outpad=(0, 1))(x).shape
    assert a == (2, 6, 35, 30) and b == (2, 6, 35, 31)
    x = randn(2, 3, 12, 11, 10)
    a = fl.ConvTranspose((3, 5, 3), 3, 6, stride=3)(x).shape
    b = fl.ConvTranspose((3, 5, 3), 3, 6, stride=3, outpad=(1, 0, 1))(x).shape
    assert np.subtract(b, a).tolist() == [0, 0, 1, 0, 1]
    # the transpose of the convolution: <conv(x), y> == <x, conv_transpose(y)>
    w = randn(2, 3, 3, 3)
    c, ct = fl.Conv(w, False, stride=2), fl.ConvTranspose(w, False, stride=2)
    x, yy = randn(1, 3, 9, 9), randn(1, 2, 4, 4)
    assert np.sum(c(x) * yy) == pytest.approx(np.sum(x * ct(yy)), rel=1e-5)


def test_crosscor_and_flipped_conv():
    # conv.jl "CrossCor": fluxml's Conv is Flux's CrossCor; Flux's Conv is flipped=True
    x = rand(1, 1, 28, 28)
    w = rand(1, 1, 2, 2)
    y = fl.CrossCor(w, np.zeros(1))
    assert y(x)[0, 0, 0, 0] == pytest.approx(np.sum(w * x[:, :, :2, :2]), rel=2e-7)
    np.testing.assert_array_equal(y(x), fl.Conv(w, np.zeros(1))(x))
    flipped = fl.Conv(w, np.zeros(1), flipped=True)
    assert not np.allclose(flipped(x), y(x))
    np.testing.assert_allclose(fl.CrossCor(w[..., ::-1, ::-1].copy(), np.zeros(1))(x),
                               flipped(x), rtol=1e-6)
    m = fl.Chain(fl.CrossCor((2, 2), 1, 16, fl.relu), fl.MaxPool((2, 2)),
                 fl.CrossCor((2, 2), 16, 8, fl.relu, bias=False), fl.MaxPool((2, 2)),
                 fl.Flatten(), fl.Dense(288, 10), fl.softmax)
    assert m(np.zeros((5, 1, 28, 28), np.float32)).shape == (5, 10)
    with pytest.raises(ValueError, match="CrossCor does not flip its kernel"):
        fl.CrossCor((2, 2), 1, 1, flipped=True)


@pytest.mark.parametrize("kernel", [(3, 3), (3, 1), (1, 3)])
def test_conv_with_non_quadratic_window(kernel):
    # conv.jl "Conv with non quadratic window #700": a unit impulse gives the kernel back,
    # flipped for Flux's Conv (flipped=True), as it is for the cross-correlation
    data = np.zeros((1, 1, 7, 7), np.float32)
    data[0, 0, 3, 3] = 1
    kh, kw = kernel
    for flipped in (True, False):
        lay = fl.Conv(kernel, 1, 1, flipped=flipped)
        out = lay(data)
        want = np.zeros((1, 1, 7 - kh + 1, 7 - kw + 1), np.float32) + lay.bias[0]
        w = lay.weight[0, 0] if flipped else lay.weight[0, 0, ::-1, ::-1]
        want[0, 0, 3 - kh + 1:4, 3 - kw + 1:4] += w
        np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-7)
    assert fl.Conv((1, 6), 1, 1, fl.sigmoid)(randn(1, 1, 10, 10)).shape == (1, 1, 10, 5)


@pytest.mark.parametrize("layer", [fl.Conv, fl.ConvTranspose, fl.DepthwiseConv, fl.CrossCor])
def test_padding_forms_and_same(layer):
    # conv.jl "symmetric non-constant padding" and "SamePad kernelsize"
    for nd in (1, 2, 3):
        kernel = (3,) * nd
        data = np.ones((1, 1) + (8,) * nd, np.float32)
        pad = tuple(range(1, nd + 1))
        expanded = tuple(p for p in pad for _ in range(2))
        assert layer(kernel, 1, 1, pad=pad)(data).shape == \
            layer(kernel, 1, 1, pad=expanded)(data).shape
    for k in [(1,), (2,), (3,), (4, 5), (6, 7, 8)]:
        data = np.ones((1, 1) + tuple(n + 3 for n in k), np.float32)
        assert layer(k, 1, 1, pad="same")(data).shape == data.shape
        dil = tuple(max(n // 2, 1) for n in k)
        assert layer(k, 1, 1, pad="same", dilation=dil)(data).shape == data.shape
        out = layer(k, 1, 1, pad="same", stride=3)(data).shape[2:]
        sizes = data.shape[2:]
        want = tuple(3 * n for n in sizes) if layer is fl.ConvTranspose else \
            tuple(-(-n // 3) for n in sizes)
        assert out == want


def test_same_padding_puts_the_odd_one_high():
    # conv.jl "SamePad": a convention difference (docstring of Conv): Flux pads an even
    # kernel (1, 0), fluxml (0, 1) as PyTorch; both keep the size
    x = np.arange(1, 5, dtype=np.float32).reshape(1, 1, 4)
    ones = fl.Conv((2,), 1, 1, pad="same", init=fl.init.ones, bias=False)
    np.testing.assert_array_equal(ones(x)[0, 0], [3, 5, 7, 4])
    flux = fl.Conv((2,), 1, 1, pad=((1, 0),), init=fl.init.ones, bias=False)
    np.testing.assert_array_equal(flux(x)[0, 0], [1, 3, 5, 7])


@pytest.mark.parametrize("layer", [fl.MeanPool, fl.MaxPool])
def test_pool_same_padding(layer):
    # conv.jl "SamePad windowsize"
    for k in [(1,), (2,), (3,), (4, 5), (6, 7, 8)]:
        data = np.ones((1, 1) + tuple(n + 3 for n in k), np.float32)
        out = layer(k, pad="same")(data).shape[2:]
        assert out == tuple(-(-n // w) for n, w in zip(data.shape[2:], k))


@pytest.mark.parametrize("layer", [fl.Conv, fl.CrossCor, fl.ConvTranspose])
def test_constructors_from_a_weight(layer):
    # conv.jl "constructors" and "bugs fixed" (#1421): Flux's Conv(W), Conv(W, false),
    # Conv(W, b); before, a weight was refused (TypeError)
    assert layer(RNG.random((2, 3, 4))).bias.dtype == np.float64
    assert layer(RNG.random((2, 3, 4, 5)), False).bias is None
    w = RNG.random((6, 5, 4, 3))
    out = 6 if layer is not fl.ConvTranspose else 5
    m = layer(w, RNG.random(out), np.tanh)
    assert m.bias.shape == (out,) and m.activation is np.tanh and m.weight is w
    with pytest.raises(ValueError, match=r"bias must have shape \(2,\)|bias must have shape "
                                         r"\(3,\)"):
        layer(RNG.random((2, 3, 4)), RNG.random(6))
    with pytest.raises(ValueError, match=r"a weight must have shape .*got \(3, 1\)"):
        layer(np.ones((3, 1)))
    assert fl.Conv((5, 5), 10, 20, init=lambda s, rng=None: np.ones(s), dtype=np.float64
                   ).bias.dtype == np.float64


def test_conv_type_matching(monkeypatch):
    # conv.jl "type matching": float64 input to a float32 layer gives float32
    monkeypatch.setattr(precision, "_warned", set())
    x = RNG.random((5, 2, 10))
    with pytest.warns(UserWarning, match="float32 parameters and got float64 input"):
        assert fl.Conv((3,), 2, 4, fl.relu)(x).dtype == np.float32
    with pytest.warns(UserWarning, match="CrossCor"):
        assert fl.CrossCor((3,), 2, 1, fl.relu)(x).dtype == np.float32
    with pytest.warns(UserWarning, match="ConvTranspose"):
        assert fl.ConvTranspose((3,), 2, 4, fl.relu)(x).dtype == np.float32
    with pytest.raises(ValueError, match="expects floating-point input; got int64"):
        fl.Conv((3,), 2, 4)(RNG.integers(-3, 4, (5, 2, 10)))


def test_conv_transpose_same_padding_trims_as_flux():
    # conv.jl "SamePad" for ConvTranspose: Flux pads (cld, fld) of k - stride, trimming the
    # odd one from the low side, as fluxml does (its docstring says so)
    x = np.array([[[1.0, 2.0, 4.0]]], np.float32)
    m = fl.ConvTranspose((2,), 1, 1, pad="same", init=fl.init.ones, bias=False)
    np.testing.assert_array_equal(m(x)[0, 0], [3, 6, 4])  # full output 1, 3, 6, 4
    m = fl.ConvTranspose((4,), 1, 1, stride=2, pad="same", init=fl.init.ones, bias=False)
    full = fl.ConvTranspose((4,), 1, 1, stride=2, init=fl.init.ones, bias=False)(x)[0, 0]
    np.testing.assert_array_equal(m(x)[0, 0], full[1:-1])  # k - s = 2: one off each side
