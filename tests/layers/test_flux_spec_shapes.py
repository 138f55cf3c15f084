"""Flux.jl's test/outputsize.jl, test/layers/attention.jl, upsample.jl and stateless.jl
translated to fluxml: shapes batch first (Flux's ``(W, H, C, N)`` is ``(N, C, H, W)``, its
``(F, N)`` is ``(N, F)``), attention scores ``(N, heads, Tq, Tk)`` (Flux's
``(Tk, Tq, heads, N)``), and ``fl._`` with ``fl.autosize`` for Flux's ``@autosize``."""

import numpy as np
import pytest

import fluxml as fl

RNG = np.random.default_rng(4)
_ = fl._


def vcat(*ys):
    return np.concatenate(ys, axis=-1)


def cat_channels(a, b):
    return np.concatenate([a, b], axis=1)


def test_outputsize_basic():
    # outputsize.jl "basic"
    O = fl.outputsize
    assert O(fl.Chain(fl.Conv((3, 3), 3, 16), fl.Conv((3, 3), 16, 32)), (1, 3, 10, 10)) == \
        (1, 32, 6, 6)
    with pytest.raises(ValueError, match=r"Dense\(10 => 5\) expects inputs of shape \(N, 10\)"):
        O(fl.Dense(10, 5), (2, 5))
    assert O(fl.Dense(10, 5), (10,), padbatch=True) == (1, 5)
    m = fl.Chain(fl.Dense(10, 8, fl.sigmoid), fl.Dense(8, 5), fl.Dense(5, 2))
    assert O(m, (10,), padbatch=True) == (1, 2) and O(m, (30, 10)) == (30, 2)
    with pytest.raises(ValueError, match=r"Chain\[2\]: Dense\(5 => 2\)"):
        O(fl.Chain(fl.Dense(10, 8, fl.sigmoid), fl.Dense(8, 4), fl.Dense(5, 2)), (10,))
    assert O(fl.Scale(10), (1, 10)) == (1, 10)
    assert O(fl.Maxout(lambda: fl.Conv((3, 3), 3, 16), 2), (1, 3, 10, 10)) == (1, 16, 8, 8)
    assert O(fl.Flatten(), (10, 3, 5, 5)) == (10, 75)
    # Bilinear of vectors (before: refused, though the layer now takes them)
    assert O(fl.Bilinear(10, 7), (10,)) == (7,) == fl.Bilinear(10, 7)(
        np.ones(10, np.float32)).shape
    assert O(fl.Bilinear(10, 7), (32, 10)) == (32, 7)
    m = fl.Chain(fl.Conv((3, 3), 3, 16), fl.BatchNorm(16), fl.Flatten(), fl.Dense(1024, 10))
    assert O(m, (50, 3, 10, 10)) == (50, 10) and O(m, (2, 3, 10, 10)) == (2, 10)
    assert O(fl.SkipConnection(fl.Conv((3, 3), 3, 16, pad=1), cat_channels),
             (1, 3, 10, 10)) == (1, 19, 10, 10)
    assert O(fl.Parallel(cat_channels, fl.Conv((3, 3), 3, 16, pad=1), fl.identity),
             (1, 3, 10, 10)) == (1, 19, 10, 10)


def test_outputsize_multiple_inputs():
    # outputsize.jl "multiple inputs": the shapes one after the other (before: TypeError)
    m = fl.Parallel(vcat, fl.Dense(2, 4, fl.relu), fl.Dense(3, 6, fl.relu))
    O = fl.outputsize
    assert O(m, (2,), (3,)) == (10,) == O(m, ((2,), (3,)))
    assert O(m, (2,), (3,), padbatch=True) == (1, 10)
    assert O(m, (7, 2), (7, 3)) == (7, 10)
    m = fl.Chain(m, fl.Dense(10, 13, np.tanh), fl.softmax)
    assert O(m, (2,), (3,)) == (13,) == O(m, ((2,), (3,)))
    assert O(m, (2,), (3,), padbatch=True) == (1, 13)
    assert O(m, (7, 2), (7, 3)) == (7, 13) == m(np.ones((7, 2), np.float32),
                                                 np.ones((7, 3), np.float32)).shape


def test_outputsize_activations_conv_and_normalisation():
    # outputsize.jl "activations", "conv", "normalisation"
    O = fl.outputsize
    for f in [fl.celu, fl.elu, fl.gelu, fl.hardsigmoid, fl.hardtanh, fl.leakyrelu, fl.lisht,
              fl.logcosh, fl.logsigmoid, fl.mish, fl.relu, fl.relu6, fl.rrelu, fl.selu,
              fl.sigmoid, fl.softplus, fl.softshrink, fl.softsign, fl.swish, fl.tanhshrink,
              fl.trelu]:
        assert O(fl.Dense(10, 5, f), (1, 10)) == (1, 5)
    for layer, cout in [(fl.Conv, 16), (fl.CrossCor, 16), (fl.DepthwiseConv, 6)]:
        assert O(layer((3, 3), 3, cout), (1, 3, 10, 10)) == (1, cout, 8, 8)
        assert O(layer((3, 3), 3, cout, stride=2), (1, 3, 5, 5)) == (1, cout, 2, 2)
        assert O(layer((3, 3), 3, cout, stride=2, pad=3), (1, 3, 5, 5)) == (1, cout, 5, 5)
        m = layer((3, 3), 3, cout, stride=2, pad=3, dilation=2)
        assert O(m, (1, 3, 5, 5)) == (1, cout, 4, 4)
        assert O(m, (100, 3, 5, 5)) == (100, cout, 4, 4)
        with pytest.raises(ValueError, match=r"expects input \(N, 3, H, W\); got \(2, 5, 5\)"):
            O(m, (2, 5, 5))
    ct = fl.ConvTranspose
    assert O(ct((3, 3), 3, 16), (1, 3, 8, 8)) == (1, 16, 10, 10)
    assert O(ct((3, 3), 3, 16, stride=2), (1, 3, 2, 2)) == (1, 16, 5, 5)
    assert O(ct((3, 3), 3, 16, stride=2, pad=3), (1, 3, 5, 5)) == (1, 16, 5, 5)
    assert O(ct((3, 3), 3, 16, stride=2, pad=3, dilation=2), (1, 3, 4, 4)) == (1, 16, 5, 5)
    for m, want in [(fl.AdaptiveMaxPool((2, 2)), (1, 3, 2, 2)),
                    (fl.AdaptiveMeanPool((2, 2)), (1, 3, 2, 2)),
                    (fl.GlobalMaxPool(), (1, 3, 1, 1)), (fl.GlobalMeanPool(), (1, 3, 1, 1)),
                    (fl.MaxPool((2, 2)), (1, 3, 5, 5)), (fl.MeanPool((2, 2)), (1, 3, 5, 5))]:
        assert O(m, (1, 3, 10, 10)) == want
    assert O(fl.MaxPool((2, 2), stride=1), (1, 4, 5, 5)) == (1, 4, 4, 4)
    assert O(fl.MeanPool((2, 2), stride=2, pad=3), (1, 2, 5, 5)) == (1, 2, 5, 5)
    # (a max pool padded by more than half its window is refused, as PyTorch; Flux allows)
    with pytest.raises(ValueError, match="must be at most half the window"):
        O(fl.MaxPool((2, 2), stride=2, pad=3), (1, 2, 5, 5))
    for m in (fl.Dropout(0.1), fl.AlphaDropout(0.1)):
        assert O(m, (10, 10)) == (10, 10) and O(m, (10,), padbatch=True) == (1, 10)
    assert O(fl.LayerNorm(32), (16, 3, 32, 32)) == (16, 3, 32, 32)
    assert O(fl.LayerNorm(32), (3, 32, 32), padbatch=True) == (1, 3, 32, 32)
    assert O(fl.LayerNorm(2, 3), (4, 2, 3)) == (4, 2, 3) == fl.LayerNorm(2, 3)(
        np.ones((4, 2, 3), np.float32)).shape
    for m, bad in [(fl.BatchNorm(3), (1, 5, 32, 32)), (fl.InstanceNorm(3), (1, 5, 32, 32)),
                   (fl.GroupNorm(16, 4), (4, 15, 32, 32))]:
        good = (16, m.channels, 32, 32)
        assert O(m, good) == good and O(m, good[1:], padbatch=True) == (1,) + good[1:]
        with pytest.raises(ValueError, match="expects input"):
            O(m, bad)
        with pytest.raises(ValueError, match="expects input"):
            m(np.ones(bad, np.float32))


def test_autosize():
    # outputsize.jl "autosize macro"
    A = fl.autosize
    assert A((3,), fl.Dense(_, 4))(np.ones(3, np.float32)).shape == (4,)
    m = A((1, 3), fl.Chain(fl.Dense(_, 4), fl.Dense(4, 10), fl.softmax))
    assert m(np.ones((5, 3), np.float32)).shape == (5, 10)
    assert A((3,), fl.Chain(one=fl.Dense(_, 4), two=fl.softmax))(
        np.ones(3, np.float32)).shape == (4,)
    m = A((45, 3), fl.Maxout(lambda: fl.Dense(_, 6, np.tanh), 2))
    assert m(np.ones((45, 3), np.float32)).shape == (45, 6)
    # placeholders inside a SkipConnection's connection (before: left unbuilt, and the
    # returned model raised when called)
    m = A((3,), fl.Chain(fl.SkipConnection(fl.Dense(_, 4),
                                           fl.Parallel(vcat, fl.Dense(_, 5), fl.Dense(_, 6))),
                         fl.Scale(_)))
    assert m(np.ones(3, np.float32)).shape == (11,)
    assert m[0].connection.layers[0].weight.shape == (5, 4)  # takes layer(x)
    assert m[0].connection.layers[1].weight.shape == (6, 3)  # takes x
    assert A((5, 4, 3), fl.LayerNorm(_))(np.ones((7, 6, 3), np.float32)).shape == (7, 6, 3)
    assert A((1, 3), fl.Bilinear(_, 10))(np.ones((4, 3), np.float32)).shape == (4, 10)
    m = A((1, 3), fl.SkipConnection(fl.Dense(_, _), fl.Bilinear(_, 10)))
    assert m(np.ones((4, 3), np.float32)).shape == (4, 10)
    m = A((1, 3), fl.Chain(fl.Dense(_, 2, fl.sigmoid), fl.BatchNorm(_, affine=False)))
    assert m(np.ones((4, 3), np.float32)).shape == (4, 2)
    m = A((32, 1, 28, 28), fl.Chain(
        fl.Chain(c=fl.Conv((3, 3), _, 5, stride=2, pad="same"), p=fl.MeanPool((3, 3)),
                 b=fl.BatchNorm(_), f=fl.Flatten()),
        fl.Dense(_, 10, fl.relu), fl.SkipConnection(fl.Dense(_, _, fl.relu), np.add),
        fl.Dense(_, 10)))
    assert m(np.ones((32, 1, 28, 28), np.float32)).shape == (32, 10)
    assert m[1].weight.shape == (10, 80)
    with pytest.raises(ValueError, match="has a size still to infer"):
        fl.Chain(fl.Dense(_, 3), fl.Scale(3))(np.ones(2, np.float32))


def test_attention():
    # attention.jl "attention"
    dim, nheads, length, batch = 4, 2, 3, 5
    mha = fl.MultiHeadAttention(dim, nheads=nheads)
    q, k, v = (RNG.random((batch, length, dim), dtype=np.float32) for _ in range(3))
    y, a = mha(q, k, v)
    assert y.shape == (batch, length, dim) and y.dtype == np.float32
    assert a.shape == (batch, nheads, length, length) and a.dtype == np.float32
    for (y1, a1), (y2, a2) in [(mha(q), mha(q, q, q)), (mha(q, k), mha(q, k, k))]:
        np.testing.assert_array_equal(y1, y2)
        np.testing.assert_array_equal(a1, a2)
    mha2 = fl.MultiHeadAttention(4, nheads=nheads, qk_dim=10, v_dim=10, out_dim=5)
    assert mha2(q, k, v)[0].shape == (batch, length, 5)
    # Flux's α[2, 1, :, :] == 0: query 1 does not see key 2
    for mask in (fl.make_causal_mask(q), "causal"):
        _, a = mha(q, mask=mask)
        assert np.all(a[:, :, 0, 1] == 0)
        np.testing.assert_allclose(a[0, 0], np.tril(a[0, 0]))
    # a bias of -inf hides the future (Flux's test gives +Inf to what may be seen, which
    # NNlib's softmax maps to 1; fluxml's softmax, as PyTorch's, gives NaN for +Inf)
    bias = np.triu(np.full((length, length), -np.inf, np.float32), 1)
    _, a = mha(q, k, v, bias=bias)
    assert np.all(a[:, :, 0, 1] == 0)
    np.testing.assert_allclose(a[0, 0], np.tril(a[0, 0]))
    # the scores against a computation by hand (float64)
    m = fl.f64(mha)
    q, k, v = (x.astype(np.float64) for x in (q, k, v))

    def heads(x, w):
        return (x @ w.T).reshape(batch, -1, nheads, dim // nheads).transpose(0, 2, 1, 3)

    s = heads(q, m.q_proj.weight) @ heads(k, m.k_proj.weight).transpose(0, 1, 3, 2)
    p = np.exp(s / np.sqrt(dim // nheads))
    p /= p.sum(-1, keepdims=True)
    o = (p @ heads(v, m.v_proj.weight)).transpose(0, 2, 1, 3).reshape(batch, length, dim)
    y, a = m(q, k, v)
    np.testing.assert_allclose(a, p, rtol=1e-12)
    np.testing.assert_allclose(y, o @ m.out_proj.weight.T + m.out_proj.bias, rtol=1e-12)


def test_upsample_and_pixelshuffle():
    # upsample.jl: Flux's scale (2, 3) on (W, H) is (3, 2) on (H, W) here
    x = RNG.random((3, 2, 4, 3), dtype=np.float32)
    assert fl.Upsample("bilinear", scale=(3, 2))(x).shape == (3, 2, 12, 6)
    assert fl.Upsample("bilinear", scale=3)(x).shape == (3, 2, 12, 9)
    assert fl.Upsample("bilinear", size=(6, 4))(x).shape == (3, 2, 6, 4)
    x5 = RNG.random((4, 3, 2, 4, 3), dtype=np.float32)
    assert fl.Upsample("trilinear", scale=(2, 3, 2))(x5).shape == (4, 3, 4, 12, 6)
    assert fl.Upsample("trilinear", scale=3)(x5).shape == (4, 3, 6, 12, 9)
    assert fl.Upsample("trilinear", size=(4, 6, 4))(x5).shape == (4, 3, 4, 6, 4)
    assert fl.Upsample("nearest", scale=(2,))(RNG.random((3, 2, 3))).shape == (3, 2, 6)
    y = fl.Upsample("nearest", scale=(3, 2))(x)
    assert y.shape == (3, 2, 12, 6) and y.dtype == np.float32
    np.testing.assert_array_equal(y, x.repeat(3, axis=2).repeat(2, axis=3))
    np.testing.assert_array_equal(fl.Upsample(2)(x), fl.Upsample("nearest", scale=2)(x))
    assert fl.Upsample("nearest", size=(8, 6))(x).shape == (3, 2, 8, 6)
    # (Flux's scale=(2,) on 2-d input scales the first dimension; fluxml asks for one each)
    with pytest.raises(ValueError, match=r"has 1 scales for input \(3, 2, 4, 3\) with 2 "
                                         r"spatial dimensions"):
        fl.Upsample("nearest", scale=(2,))(x)
    # bilinear at scale 2 (align_corners=False): the first output is the first input, the
    # second a quarter of the way to the next
    row = np.array([[[[0.0, 4.0]]]], np.float32)
    np.testing.assert_allclose(fl.Upsample("bilinear", scale=(1, 2))(row)[0, 0, 0],
                               [0, 1, 3, 4])
    assert fl.PixelShuffle(2)(RNG.random((3, 18, 3))).shape == (3, 9, 6)
    y = fl.PixelShuffle(3)(RNG.random((3, 18, 4, 3)))
    assert y.shape == (3, 2, 12, 9)
    x = np.arange(8.0).reshape(1, 4, 1, 2)
    y = fl.PixelShuffle(2)(x)  # PyTorch's order: channel c * r^2 + i * r + j -> (i, j)
    np.testing.assert_array_equal(y[0, 0], [[0, 2, 1, 3], [4, 6, 5, 7]])


def test_stateless_helpers():
    # stateless.jl "flatten", "normalise": Flux's default dims (the last, the batch) is axis
    # 0 here
    assert fl.Flatten()(RNG.standard_normal((2, 3, 10, 10))).shape == (2, 300)
    x = RNG.standard_normal((2, 2, 3))
    y = fl.normalise(x)
    np.testing.assert_allclose(y, (x - x.mean(0)) / (x.std(0) + 1e-5), rtol=1e-12)


@pytest.mark.parametrize("make", [fl.BatchNorm, fl.LayerNorm, fl.Scale,
                                  lambda n: fl.Dense(n, 4)])
def test_autosize_of_a_one_input_layer_after_two_outputs_names_the_layer(make):
    # the rule building a layer of several inputs of one size (Bilinear's) built any
    # placeholder: BatchNorm(_) and LayerNorm(_) then failed inside NumPy's broadcast_to
    model = fl.Chain(fl.Parallel(None, fl.Dense(fl._, 2), fl.Dense(fl._, 2)), make(fl._))
    with pytest.raises(fl.LayerError, match=r"Chain\[1\]: .*\(_.* takes several inputs, of "
                                            r"shapes \(\(2, 2\), \(2, 2\)\).*write its sizes"):
        fl.autosize((2, 3), model)
