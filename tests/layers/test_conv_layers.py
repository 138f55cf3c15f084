"""Convolution, pooling and resampling layers against naive loops; shapes, gradients,
errors. (Checked against torch.nn.Conv*/ConvTranspose*/pools outside the suite, loading the
same weights.)"""

import itertools

import numpy as np
import pytest

import fluxml as fl
from fluxml.testing import check_grads

RNG = np.random.default_rng(0)


def naive_conv(x, w, b, stride, pads, dilation, groups):
    """Cross-correlation by loops over every output entry."""
    n, c = x.shape[:2]
    o, cg = w.shape[:2]
    kernel = w.shape[2:]
    d = len(kernel)
    xp = np.pad(x, [(0, 0), (0, 0)] + list(pads))
    out = [(xp.shape[2 + i] - dilation[i] * (kernel[i] - 1) - 1) // stride[i] + 1
           for i in range(d)]
    y = np.zeros((n, o, *out))
    og = o // groups
    for idx in itertools.product(range(n), range(o), *[range(m) for m in out]):
        b_, oc, pos = idx[0], idx[1], idx[2:]
        g = oc // og
        total = b[oc]
        for ci in range(cg):
            for k in itertools.product(*[range(kk) for kk in kernel]):
                src = tuple(p * s + kk * dl for p, s, kk, dl in zip(pos, stride, k, dilation))
                total += xp[(b_, g * cg + ci) + src] * w[(oc, ci) + k]
        y[idx] = total
    return y


@pytest.mark.parametrize("kernel, opts, pads", [
    ((3, 3), dict(stride=1, pad=0), ((0, 0), (0, 0))),
    ((3, 2), dict(stride=(2, 1), pad=(1, 0, 2, 1), dilation=(1, 2)), ((1, 0), (2, 1))),
    ((3,), dict(pad="same", groups=2), ((1, 1),)),
    ((2, 2, 2), dict(stride=2, pad=1), ((1, 1),) * 3),
])
def test_conv_matches_loops(kernel, opts, pads):
    d = len(kernel)
    c = fl.f64(fl.Conv(kernel, 4, 6, rng=RNG, **opts))
    c.bias = RNG.normal(size=6)
    x = RNG.normal(size=(2, 4) + (5, 6, 4)[:d])
    stride = opts.get("stride", 1)
    stride = (stride,) * d if isinstance(stride, int) else stride
    dilation = opts.get("dilation", 1)
    dilation = (dilation,) * d if isinstance(dilation, int) else dilation
    want = naive_conv(x, c.weight, c.bias, stride, pads, dilation, opts.get("groups", 1))
    np.testing.assert_allclose(c(x), want, rtol=1e-10, atol=1e-12)
    assert fl.outputsize(c, x.shape) == want.shape


def test_conv_flipped_depthwise_crosscor_and_grads():
    x = RNG.normal(size=(1, 2, 5, 5))
    c = fl.f64(fl.Conv((3, 3), 2, 4, np.tanh, flipped=True, rng=RNG))
    plain = fl.f64(fl.Conv((3, 3), 2, 4, np.tanh))
    plain.weight = c.weight[:, :, ::-1, ::-1].copy()
    np.testing.assert_allclose(c(x), plain(x), rtol=1e-12)
    dw = fl.f64(fl.DepthwiseConv((3, 3), 2, 4, pad=1, rng=RNG))
    assert dw.weight.shape == (4, 1, 3, 3) and dw.groups == 2
    np.testing.assert_allclose(dw(x), naive_conv(x, dw.weight, dw.bias, (1, 1), ((1, 1),) * 2,
                                                 (1, 1), 2), rtol=1e-10, atol=1e-12)
    cc = fl.CrossCor((3, 3), 2, 4)
    assert isinstance(cc, fl.Conv) and not cc.flipped
    small = fl.f64(fl.Conv((2, 2), 2, 2, np.tanh, stride=2, pad=1, rng=RNG))
    check_grads(lambda m, x: np.sum(np.sin(m(x))), small, RNG.normal(size=(1, 2, 3, 3)),
                order=2)


def test_conv_transpose_matches_scatter_loop_and_grads():
    m = fl.f64(fl.ConvTranspose((3, 2), 2, 4, stride=(2, 1), pad=(1, 0), outpad=(1, 0),
                                groups=2, rng=RNG))
    m.bias = RNG.normal(size=4)
    x = RNG.normal(size=(2, 2, 3, 4))
    w = m.weight  # (in, out / groups, kh, kw)
    full = np.zeros((2, 4, (3 - 1) * 2 + 3 + 1, (4 - 1) + 2))
    for n, ci, i, j, oc, a, b in itertools.product(range(2), range(2), range(3), range(4),
                                                   range(2), range(3), range(2)):
        full[n, ci * 2 + oc, i * 2 + a, j + b] += x[n, ci, i, j] * w[ci, oc, a, b]
    want = full[:, :, 1:1 + 6, :] + m.bias[:, None, None]
    got = m(x)
    assert got.shape == (2, 4, 6, 5) == fl.outputsize(m, x.shape)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    check_grads(lambda m, x: np.sum(np.sin(m(x))),
                fl.f64(fl.ConvTranspose((2,), 2, 1, stride=2, rng=RNG)),
                RNG.normal(size=(1, 2, 3)), order=2)
    assert fl.ConvTranspose((3, 3), 4, 2, pad="same", stride=2)(
        np.ones((1, 4, 5, 5), np.float32)).shape == (1, 2, 10, 10)
    assert repr(fl.ConvTranspose((2, 2), 8, 3, stride=2)) == \
        "ConvTranspose((2, 2), 8 => 3, stride=2)  # 99 parameters"
    assert fl.ConvTranspose((2,), 1, 1, flipped=True)._line() == \
        "ConvTranspose((2,), 1 => 1, flipped=True)"


def test_conv_printing_and_errors():
    c = fl.Conv((3, 3), 3, 16, np.tanh, pad=1, groups=1)
    assert c._line() == "Conv((3, 3), 3 => 16, tanh, pad=1)"
    assert fl.Conv((3,), 4, 8, groups=2, bias=False)._line() == \
        "Conv((3,), 4 => 8, groups=2, bias=False)"
    model = fl.Chain(np.tanh, fl.Conv((3, 3), 3, 16))
    with pytest.raises(fl.LayerError, match=r"^Chain\[1\]: Conv\(\(3, 3\), 3 => 16\) expects "
                                            r"input \(N, 3, H, W\); got \(8, 1, 28, 28\)"):
        model(np.ones((8, 1, 28, 28), np.float32))
    with pytest.raises(fl.LayerError, match=r"expects input \(N, 3, H, W\); got \(3, 28, 28\); "
                                            r"one input without its batch axis\? x\[None\]"):
        c(np.ones((3, 28, 28), np.float32))
    with pytest.raises(fl.LayerError, match=r"kernel of 2 sizes, such as \(3, 3\), for this"):
        fl.Conv(3, 3, 16)(np.ones((2, 3, 8, 8), np.float32))  # an int kernel: a 1-d layer
    with pytest.raises(fl.LayerError, match=r"Conv\(\(5, 5\), 1 => 6\) needs a spatial size of "
                                            r"at least \(5, 5\) after padding"):
        fl.Conv((5, 5), 1, 6)(np.ones((1, 1, 4, 9), np.float32))
    with pytest.raises(fl.LayerError, match=r"^Chain\[1\]: Conv"):
        fl.outputsize(model, (8, 1, 28, 28))
    with pytest.raises(ValueError, match="groups=3 must divide in_channels"):
        fl.Conv((3, 3), 4, 6, groups=3)
    with pytest.raises(ValueError, match="kernel must be a tuple of 1 to 3 positive ints"):
        fl.Conv((3, 3, 3, 3), 1, 1)
    with pytest.raises(ValueError, match="out_channels .* must be a multiple of in_channels"):
        fl.DepthwiseConv((3, 3), 4, 6)


def naive_pool(x, k, reduce):
    n, c, h, w = x.shape
    out = np.zeros((n, c, h // k, w // k))
    for i in range(h // k):
        for j in range(w // k):
            out[:, :, i, j] = reduce(x[:, :, i * k:(i + 1) * k, j * k:(j + 1) * k], axis=(2, 3))
    return out


def test_pools_match_loops_and_grads():
    x = RNG.normal(size=(2, 3, 6, 4))
    np.testing.assert_allclose(fl.MaxPool((2, 2))(x), naive_pool(x, 2, np.max))
    np.testing.assert_allclose(fl.MeanPool((2, 2))(x), naive_pool(x, 2, np.mean))
    np.testing.assert_allclose(fl.GlobalMaxPool()(x), x.max(axis=(2, 3), keepdims=True))
    np.testing.assert_allclose(fl.GlobalMeanPool()(x), x.mean(axis=(2, 3), keepdims=True))
    np.testing.assert_allclose(fl.AdaptiveMeanPool((3, 2))(x), naive_pool(x, 2, np.mean))
    np.testing.assert_allclose(fl.AdaptiveMaxPool((3, 2))(x), naive_pool(x, 2, np.max))
    m = fl.MaxPool((3,), stride=2, pad=1)
    assert m._line() == "MaxPool((3,), stride=(2,), pad=1)"
    assert m(np.ones((1, 2, 7))).shape == (1, 2, 4) == fl.outputsize(m, (1, 2, 7))
    for layer in (fl.MaxPool((2, 2)), fl.MeanPool((2, 2), stride=1), fl.AdaptiveMaxPool((2, 1)),
                  fl.GlobalMeanPool()):
        check_grads(lambda x: np.sum(np.sin(layer(x))), RNG.normal(size=(1, 2, 4, 4)), order=2)
    with pytest.raises(fl.LayerError, match=r"MaxPool\(\(2, 2\)\) expects input \(N, C, H, W\);"
                                            r" got \(2, 6, 4\)"):
        fl.MaxPool((2, 2))(np.ones((2, 6, 4)))
    with pytest.raises(fl.LayerError, match=r"needs a spatial size of at least \(3, 3\)"):
        fl.MeanPool((3, 3))(np.ones((1, 1, 2, 5)))
    # out_size above the input's size: PyTorch's overlapping windows
    np.testing.assert_array_equal(fl.AdaptiveMaxPool((4,))(np.array([[[1.0, 3.0, 2.0]]])),
                                  [[[1.0, 3.0, 3.0, 2.0]]])
    assert fl.outputsize(fl.GlobalMaxPool(), (5, 7, 3, 3, 3)) == (5, 7, 1, 1, 1)


def test_upsample_and_pixel_shuffle():
    x = RNG.normal(size=(1, 2, 2, 3))
    near = fl.Upsample(scale=(2, 1))(x)
    np.testing.assert_array_equal(near, np.repeat(x, 2, axis=2))
    bil = fl.Upsample("bilinear", scale=2)
    y = bil(x)
    assert y.shape == (1, 2, 4, 6) == fl.outputsize(bil, x.shape)
    # align_corners=False: output 1 of 4 samples input coordinate 0.25 along rows
    np.testing.assert_allclose(y[0, 0, 1, 0], 0.75 * x[0, 0, 0, 0] + 0.25 * x[0, 0, 1, 0])
    assert bil._line() == "Upsample('bilinear', scale=2)"
    assert fl.Upsample("nearest", size=(4, 4))(x).shape == (1, 2, 4, 4)
    assert repr(fl.Upsample(2, "bilinear")) == "Upsample('bilinear', scale=2)"  # Flux's form
    assert repr(fl.Upsample((2, 1))) == "Upsample('nearest', scale=(2, 1))"
    check_grads(lambda x: np.sum(np.sin(bil(x))), x, order=2)
    with pytest.raises(fl.LayerError, match=r"Upsample\('bilinear', scale=2\) expects input "
                                            r"\(N, C, H, W\); got \(1, 2, 3\)"):
        bil(np.ones((1, 2, 3)))
    with pytest.raises(ValueError, match="give either scale or size"):
        fl.Upsample("nearest")

    ps = fl.PixelShuffle(2)
    z = RNG.normal(size=(1, 8, 2, 3))
    got = ps(z)
    assert got.shape == (1, 2, 4, 6)
    for c, i, j in itertools.product(range(2), range(4), range(6)):
        assert got[0, c, i, j] == z[0, c * 4 + (i % 2) * 2 + j % 2, i // 2, j // 2]
    with pytest.raises(fl.LayerError, match=r"PixelShuffle\(2\) expects channels divisible by "
                                            r"r\^2 = 4"):
        ps(np.ones((1, 6, 2, 2)))


def test_lenet_trains_a_step():
    model = fl.Chain(fl.Conv((5, 5), 1, 6, np.tanh, pad=2), fl.MaxPool((2, 2)),
                     fl.Conv((5, 5), 6, 16, np.tanh), fl.MaxPool((2, 2)), fl.Flatten(),
                     fl.Dense(400, 10))
    assert fl.outputsize(model, (4, 1, 28, 28)) == (4, 10)
    x = RNG.normal(size=(4, 1, 28, 28)).astype(np.float32)
    g, = fl.gradient(lambda m: np.sum(m(x) ** 2), model)
    assert g.layers[0].weight.shape == (6, 1, 5, 5) and g.layers[0].weight.dtype == np.float32
    lazy = fl.autosize((4, 1, 28, 28), fl.Chain(fl.Conv((5, 5), fl._, 6, pad=2),
                                                fl.MaxPool((2, 2)), fl.BatchNorm(fl._),
                                                fl.Flatten(), fl.Dense(fl._, 10)))
    assert lazy.layers[0].weight.shape == (6, 1, 5, 5) and lazy.layers[4].weight.shape == \
        (10, 1176)


def test_conv_given_a_nested_list_refuses_it_as_every_layer_does():
    with pytest.raises(fl.LayerError, match=r"^Conv\(\(3,\), 1 => 1\) expects an array; got a "
                                            r"list: convert it, np.asarray\(x, np.float32\)"):
        fl.Conv((3,), 1, 1)([[[1.0, 2.0]]])


@pytest.mark.parametrize("layer, x, message", [
    (fl.GroupNorm(4, 2), np.ones((2, 3, 3, 3)),
     r"GroupNorm\(4, 2\) expects input \(N, 4, \.\.\.\); got \(2, 3, 3, 3\)"),
    (fl.PixelShuffle(2), np.ones((1, 3, 4, 4)), r"PixelShuffle\(2\) expects channels divisible"),
    (fl.AdaptiveMeanPool((2, 2)), np.ones((1, 4, 4)), r"AdaptiveMeanPool\(\(2, 2\)\) expects "
                                                      r"input \(N, C, H, W\); got \(1, 4, 4\)"),
    (fl.GlobalMeanPool(), np.ones((4, 2)), r"GlobalMeanPool\(\) expects input \(N, C, L\)"),
    (fl.ConvTranspose((3, 3), 2, 4), np.ones((1, 3, 4, 4)), r"ConvTranspose\(\(3, 3\), 2 => 4\) "
                                                            r"expects input \(N, 2, H, W\)"),
    (fl.ConvTranspose((3,), 2, 4), np.ones((1, 2, 4), int), "floating-point input; got int64"),
    (fl.DepthwiseConv((3, 3), 2, 4), np.ones((1, 2, 2, 2)), r"DepthwiseConv\(\(3, 3\), 2 => 4\) "
                                                            r"needs a spatial size of at least"),
    (fl.MaxPool((2, 2), pad=((1, 2), (0, 1))), np.ones((1, 1, 5, 5)),
     r"MaxPool\(\(2, 2\), pad=\(\(1, 2\), \(0, 1\)\)\): the padding .* at most half the window"),
    (fl.EmbeddingBag(10, 4), np.array([[1, 10]]),
     r"EmbeddingBag\(10 => 4, 'mean'\) has a vocabulary of 10 \(indices 0 to 9\); got index 10"),
    (fl.Bidirectional(fl.RNN(4, 5)), np.ones((2, 3, 3), np.float32),
     r"^Bidirectional\['forward'\]: RNN\(4 => 5\) expects a sequence \(N, T, 4\)"),
    (fl.GRU(3, 4), np.ones((2, 5, 3), int), r"GRU\(3 => 4\) expects floating-point input"),
])
def test_each_layer_kind_names_itself_on_bad_input(layer, x, message):
    with pytest.raises(fl.LayerError, match=message):
        layer(x.astype(np.float32) if x.dtype == np.float64 else x)


@pytest.mark.parametrize("make, shape", [
    (lambda: fl.Conv((3,), 2, 3, np.tanh, pad=1, stride=2), (2, 2, 5)),
    (lambda: fl.Conv((2, 2, 2), 2, 2, np.tanh, pad="same"), (1, 2, 3, 3, 3)),
    (lambda: fl.DepthwiseConv((2,), 2, 4, dilation=2), (1, 2, 5)),
    (lambda: fl.CrossCor((2, 2), 1, 2, groups=1), (1, 1, 3, 3)),
    (lambda: fl.AdaptiveMeanPool((2,)), (1, 2, 5)),
    (lambda: fl.GlobalMaxPool(), (1, 2, 3, 3)),
    (lambda: fl.PixelShuffle(2), (1, 4, 2, 2)),
    (lambda: fl.Upsample("nearest", scale=(2, 1)), (1, 1, 2, 3)),
    (lambda: fl.Upsample("trilinear", scale=2), (1, 1, 2, 2, 2)),
])
def test_the_other_window_layers_check_grads_to_second_order(make, shape):
    """(The layers above checked where their forward is tested; these are nnlib calls whose
    kernels are checked in tests/nnlib, here once more through the layer.)"""
    m = fl.f64(make())
    for k, a in enumerate(fl.tree.leaves(m)):
        if isinstance(a, np.ndarray) and a.dtype.kind == "f":
            a[...] = np.random.default_rng(k).normal(size=a.shape)
    check_grads(lambda m, x: np.sum(np.sin(m(x))), m, RNG.normal(size=shape), order=2)


def test_a_conv_field_set_to_a_float_is_refused_by_name():
    """A soft update of a target network, fl.fmap(lambda t, o: tau * o + (1 - tau) * t,
    target, online), maps the layers' ints too (stride 1 -> 1.0): the error said
    ": stride must be ..." with no layer, and a float pad failed inside NumPy ("'float'
    object is not iterable", a TypeError, also from Conv(..., pad=1.0) itself)."""
    mk = lambda: fl.Chain(fl.Conv((3, 3), 1, 2, pad=1), fl.Flatten())  # noqa: E731
    target = fl.fmap(lambda t, o: 0.5 * o + 0.5 * t, mk(), mk())
    x = np.ones((1, 1, 4, 4), np.float32)
    with pytest.raises(fl.LayerError, match=r"^Chain\[0\]: Conv\(\(3, 3\), .*\): stride must "
                                            r"be an int or a tuple of 2 ints"):
        target(x)
    conv = fl.Conv((3, 3), 1, 2, pad=1)
    conv.pad = 1.0
    with pytest.raises(fl.LayerError, match=r"^Conv\(\(3, 3\), 1 => 2, pad=1.0\): pad must be "
                                            r"'same', a non-negative int"):
        conv(x)
    with pytest.raises(ValueError, match=r"^Conv: pad must be 'same', a non-negative int, 2 "
                                         r"ints, 4 ints \(lo, hi per dimension\) or 2 pairs; "
                                         r"got 1\.0$"):
        fl.Conv((3, 3), 1, 2, pad=1.0)
    up = fl.ConvTranspose((3, 3), 1, 2, stride=2)
    up.stride = 1.5
    with pytest.raises(fl.LayerError, match=r"^ConvTranspose\(.*\): stride must be an int"):
        up(x)
    # restricted to the arrays (is_leaf), the soft update leaves the ints alone
    online = mk()
    soft = fl.fmap(lambda t, o: 0.5 * o + 0.5 * t, mk(), online,
                   is_leaf=lambda a: isinstance(a, np.ndarray))
    assert soft.layers[0].stride == 1 and soft(x).shape == online(x).shape


def central_difference(f, w, h=1e-6):
    g = np.zeros_like(w)
    for i in np.ndindex(w.shape):
        old = w[i]
        w[i] = old + h
        up = f()
        w[i] = old - h
        down = f()
        w[i] = old
        g[i] = (up - down) / (2 * h)
    return g


def test_upsample_with_float_scales_differentiates_through_the_model():
    """fl.gradient traces a model's float fields, Upsample's scale among them: the traced
    scale reached the output-shape arithmetic, which failed ('float(x) needs a concrete
    value' for one factor, 'a traced array was converted' for a tuple), so no model with a
    fractional Upsample could be differentiated or trained."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 1, 3, 4))
    for scale in (1.5, (2.0, 1.5)):
        m = fl.f64(fl.Chain(fl.Conv((2, 2), 1, 2), fl.Upsample("bilinear", scale=scale)))

        def loss(m):
            return np.sum(m(x) ** 2)

        (g,) = fl.gradient(loss, m)
        w = m[0].weight
        np.testing.assert_allclose(g.layers[0].weight,
                                   central_difference(lambda: loss(m), w), rtol=1e-6)
        assert m[1].scale == scale  # (the layer keeps its plain numbers)
