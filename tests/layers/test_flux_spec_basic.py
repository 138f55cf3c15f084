"""Flux.jl's test/layers/basic.jl translated to fluxml. fluxml is batch first (Flux's
``(features, N)`` is ``(N, features)`` here), its weights are PyTorch's (Dense ``(out, in)``
as Flux's, Embedding ``(vocab, dim)``, the transpose of Flux's) and indices start at 0. Each
test names the Flux testset it comes from."""

import warnings

import numpy as np
import pytest

import fluxml as fl
from fluxml.layers import precision
from fluxml.testing import check_grads

RNG = np.random.default_rng(11)


def randn(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


def test_helpers_activations():
    # basic.jl "helpers/activations" and "Activations"
    x = randn(10, dtype=np.float64)
    outs = fl.activations(fl.Chain(lambda v: v ** 2, lambda v: v - 3, np.tan), x)
    np.testing.assert_array_equal(outs[0], x ** 2)
    np.testing.assert_array_equal(outs[2], np.tan(x ** 2 - 3))
    assert fl.activations(fl.Chain(), x) == ()
    assert fl.activations(fl.Chain(fl.identity, lambda v: "foo"), x)[1] == "foo"
    c = fl.f64(fl.Chain(fl.Dense(3, 5, fl.relu), fl.Dense(5, 1, fl.relu)))
    c2 = fl.Chain(enc=c[0], dec=c[1])
    X = np.ones(3)
    for a, b in zip(fl.activations(c, X), fl.activations(c2, X)):
        np.testing.assert_array_equal(a, b)
    g = fl.gradient(lambda m: fl.activations(m, X)[1][0], c2)[0]
    w1, b1, w2 = c[0].weight, c[0].bias, c[1].weight
    h = w1 @ X + b1
    alive = float((w2 @ np.maximum(h, 0) + c[1].bias)[0] > 0)
    np.testing.assert_allclose(g.layers["dec"].weight[0], alive * np.maximum(h, 0))


def test_chain():
    # basic.jl "Chain"
    with pytest.raises(ValueError, match=r"Chain\[1\]: Dense\(2 => 1\) expects"):
        fl.Chain(fl.Dense(10, 5, fl.sigmoid), fl.Dense(2, 1))(randn(10))
    m = fl.Chain(first=fl.Dense(10, 5, fl.sigmoid), second=fl.Dense(5, 2))
    assert m["first"] is m[0] and m.first is m[0]
    assert list(m[0:2]) == list(m)  # (Flux's m[1:2] == m: the same layers)
    assert list(fl.fmap(lambda a: a, m).layers) == ["first", "second"]  # names kept
    # a reserved name: Flux's ArgumentError. Before, Chain(layers=...) was made and m.layers
    # was the dict of layers, not the layer so named
    with pytest.raises(ValueError, match=r"Chain: the layer names \['layers'\] are the Chain"):
        fl.Chain(layers=fl.Dense(10, 10), two=fl.identity)
    with pytest.raises(ValueError, match=r"\['outputs'\]"):
        fl.Chain(outputs=fl.Dense(10, 10))
    v = fl.Chain([fl.Dense(10, 5, fl.sigmoid), fl.Dense(5, 2)])  # vector of layers
    assert v(randn(10)).shape == (2,)
    c = fl.Chain(fl.Dense(10, 5), fl.Dense(5, 2), fl.Dense(2, 1, fl.relu))
    assert c[0] is c.layers[0] and c[-1] is c.layers[2]
    # several arguments become a tuple (before: TypeError)
    assert fl.Chain(fl.identity)(1, 2, 3) == (1, 2, 3)
    assert fl.Chain(lambda t: t[0] * t[1], np.negative)(2.0, 3.0) == -6.0


def test_dense_constructors():
    # basic.jl "Dense/constructors"
    d = fl.Dense(10, 100)
    assert d.weight.shape == (100, 10) and d.bias.shape == (100,)
    w, b = RNG.random((100, 10)), RNG.random(100)
    assert fl.Dense(w, b).activation is fl.identity
    assert fl.Dense(w).activation is fl.identity
    assert fl.Dense(w, False).bias is None
    d = fl.Dense(w, False, np.tanh)
    assert d.bias is None and d.activation is np.tanh
    w16 = w.astype(np.float16)
    assert fl.Dense(w16, True).bias.dtype == np.float16  # creates the matching type
    assert fl.Dense(w16, b).bias.dtype == np.float16  # converts to match
    d = fl.Dense(3, 4, bias=np.array([1, 2, 3, 4]))
    np.testing.assert_array_equal(d.bias, [1, 2, 3, 4])
    assert d.bias.dtype == np.float32  # fluxml's dtype= (Flux's follows the init's)
    with pytest.raises(ValueError, match="out_features must be a positive int; got 10.5"):
        fl.Dense(10, 10.5)
    with pytest.raises(ValueError, match=r"Dense: bias must have shape \(4,\); got \(5,\)"):
        fl.Dense(3, 4, bias=RNG.random(5))
    with pytest.raises(ValueError, match=r"bias must have shape \(4,\); got \(5,\)"):
        fl.Dense(RNG.random((4, 3)), RNG.random(5))
    with pytest.raises(ValueError, match=r"Dense: a weight must have shape \(out, in\); got "
                                         r"\(5,\)"):
        fl.Dense(RNG.random(5), RNG.random(5))


def test_dense_dimensions_zeros_and_type_matching(monkeypatch):
    # basic.jl "Dense/dimensions", "zeros" and "type matching"
    monkeypatch.setattr(precision, "_warned", set())  # (each warning is once per process)
    d = fl.Dense(10, 5)
    assert d(randn(10)).shape == (5,)
    with pytest.raises(ValueError, match=r"expects inputs of shape \(N, 10\); got \(1,\)"):
        d(randn(1))
    with pytest.raises(ValueError, match="expects an array"):
        d(1)
    for lead in [(2,), (3, 2), (4, 3, 2)]:
        assert d(randn(*lead, 10)).shape == lead + (5,)
    with pytest.raises(ValueError, match=r"got \(3, 2, 11\)"):
        d(randn(3, 2, 11))
    ones = fl.init.ones
    np.testing.assert_array_equal(fl.Dense(10, 1, init=ones)(np.ones((1, 10), np.float32)),
                                  [[10]])
    np.testing.assert_array_equal(fl.Dense(10, 1, init=ones)(np.ones((2, 10), np.float32)),
                                  [[10], [10]])
    x = np.stack([np.ones(10), 2 * np.ones(10)]).astype(np.float32)
    for bias in (True, False):
        np.testing.assert_array_equal(fl.Dense(10, 2, init=ones, bias=bias)(x),
                                      [[10, 10], [20, 20]])
    d1 = fl.Dense(2, 3)
    d2 = fl.Dense(d1.weight, False)
    x1 = randn(4, 2)
    np.testing.assert_allclose(d1(x1), x1 @ d1.weight.T, rtol=1e-6)
    np.testing.assert_allclose(d2(x1), x1 @ d1.weight.T, rtol=1e-6)
    with pytest.warns(UserWarning, match="float32 parameters and got float64 input"):
        y = d1(x1.astype(np.float64))
    assert y.dtype == np.float32  # Flux's _match_eltype
    # integer and bool inputs are refused (Flux multiplies them); a clear error
    with pytest.raises(ValueError, match="expects floating-point input; got int64"):
        d1(RNG.integers(-5, 6, (4, 2)))


def test_scale():
    # basic.jl "Scale"
    assert fl.Scale(10)(randn(10)).shape == (10,)
    assert fl.Scale(10)(randn(1)).shape == (10,)
    assert fl.Scale(10, np.tanh)(randn(10)).shape == (10,)
    with pytest.raises(ValueError, match=r"Scale\(10\) expects inputs whose trailing"):
        fl.Scale(10)(randn(2))
    np.testing.assert_array_equal(fl.Scale(2)(np.array([[1, 2]], np.float32)), [[1, 2]])
    s = fl.Scale(2, init=fl.init.normal)
    assert not np.array_equal(s(np.array([1, 2], np.float32)), [1, 2])
    np.testing.assert_array_equal(
        fl.Scale(2, np.square, bias=False)(np.array([[1, 2], [3, 4]], np.float32)),
        [[1, 4], [9, 16]])
    # Flux's Scale(2, 3) on (2, 3, 4) is Scale(3, 2) on (4, 3, 2) here
    assert fl.Scale(3, 2)(randn(4, 3, 2)).shape == (4, 3, 2)
    assert fl.Scale(3, 2, bias=False)(randn(4, 1, 2)).shape == (4, 3, 2)
    np.testing.assert_array_equal(
        fl.Scale(3, 2, np.tanh, bias=False, init=fl.init.zeros)(randn(4, 1, 2)),
        np.zeros((4, 3, 2)))
    for bad in [(1.0,), (1.0, 2.0), (), (np.sin,)]:
        with pytest.raises(ValueError, match="Scale"):
            fl.Scale(*bad)


def test_maxout():
    # basic.jl "Maxout"
    x = RNG.random(40)
    np.testing.assert_array_equal(fl.Maxout(lambda: fl.identity, 4)(x), x)
    np.testing.assert_array_equal(
        fl.Maxout(lambda v: v, lambda v: 2 * v, lambda v: 0.5 * v)(x), 2 * x)
    mo = fl.Maxout(lambda v: np.array([0.5, 0.1])[:, None] * v,
                   lambda v: np.array([0.2, 0.7])[:, None] * v)
    x = np.array([[3.0, 2.0]])
    np.testing.assert_array_equal(mo(x), np.array([[0.5], [0.7]]) * x)
    assert len(fl.trainables(fl.Maxout(lambda: fl.Dense(32, 64), 4))) == 8


def test_skipconnection():
    # basic.jl "SkipConnection"
    x = randn(10, 10, 10, 10, dtype=np.float64)
    np.testing.assert_array_equal(fl.SkipConnection(np.zeros_like, np.add)(x), x)
    cat = fl.SkipConnection(fl.Dense(10, 10), lambda a, b: np.concatenate([a, b], axis=0))
    assert cat(randn(2, 10)).shape == (4, 10)


def test_bilinear():
    # basic.jl "Bilinear"
    sc = fl.SkipConnection(fl.Dense(10, 10), fl.Bilinear(10, 5))
    assert sc(randn(9, 10)).shape == (9, 5)
    b = fl.Bilinear((10, 2), 3)
    y = b(np.zeros((9, 10), np.float32), np.zeros((9, 2), np.float32))
    assert y.shape == (9, 3) and np.sum(y ** 2) == 0
    b = fl.f64(fl.Bilinear(11, 3))
    x = randn(7, 11, dtype=np.float64)
    assert b(x).shape == (7, 3)
    check_grads(lambda w, x: fl.Bilinear(w, False)(x), b.weight, x)
    # constructors from the weight (before: TypeError, out_features missing)
    w = RNG.standard_normal((3, 4, 5))
    b1 = fl.Bilinear(w)
    assert b1.bias.dtype == np.float64 and b1.activation is fl.identity
    assert fl.Bilinear(w, False).bias is None
    b3 = fl.Bilinear(w.astype(np.float16), True, np.tanh)
    assert b3.activation is np.tanh and b3.bias.dtype == np.float16
    # a pair of vectors gives a vector (before: refused)
    u, v = RNG.random(4), RNG.random(5)
    b1 = fl.Bilinear(w, RNG.random(3))
    np.testing.assert_allclose(b1(u, v), np.einsum("i,oij,j->o", u, w, v) + b1.bias)
    with pytest.raises(ValueError, match=r"Bilinear: a weight must have shape \(out, in1, "
                                         r"in2\); got \(3,\)"):
        fl.Bilinear(RNG.random(3))
    with pytest.raises(ValueError, match=r"got \(3, 4\)"):
        fl.Bilinear(RNG.random((3, 4)), False, np.tanh)
    with pytest.raises(ValueError, match=r"Bilinear: bias must have shape \(3,\); got \(6,\)"):
        fl.Bilinear(w, RNG.random(6), np.tanh)


def test_parallel():
    # basic.jl "Parallel"
    x = randn(10, 10, 10, 10, dtype=np.float64)
    np.testing.assert_array_equal(fl.Parallel(np.add, np.zeros_like, fl.identity)(x), x)
    x = randn(2, 10)
    hcat = lambda *ys: np.concatenate(ys, axis=0)  # noqa: E731 - Flux's cat(dims=2)
    assert fl.Parallel(hcat, fl.Dense(10, 10), fl.identity)(x).shape == (4, 10)
    assert fl.Parallel(hcat, one=fl.Dense(10, 10), two=fl.identity)(x).shape == (4, 10)
    inputs = randn(10), randn(5), randn(4)
    plus = lambda *ys: sum(ys)  # noqa: E731
    assert fl.Parallel(plus, fl.Dense(10, 2), fl.Dense(5, 2), fl.Dense(4, 2))(inputs).shape \
        == (2,)
    assert fl.Parallel(plus, a=fl.Dense(10, 2), b=fl.Dense(5, 2), c=fl.Dense(4, 2))(
        inputs).shape == (2,)
    with pytest.raises(ValueError, match="Parallel with 2 layers takes 1 or 2 inputs; got 3"):
        fl.Parallel(np.add, np.sin, np.cos)(1, 2, 3)
    assert fl.Parallel(np.add, np.sin, np.cos)(np.pi / 2) == pytest.approx(1)
    assert fl.Parallel(np.divide, abs)(3, -4) == pytest.approx(3 / 4)
    assert fl.Parallel(np.divide, abs)((3, -4)) == pytest.approx(3 / 4)
    assert fl.Parallel(np.divide, f=abs)(3, -4) == pytest.approx(3 / 4)
    # named access; a slice is a Parallel (before: a tuple, or TypeError for named layers)
    m = fl.Parallel(hcat, one=fl.Dense(10, 10), two=fl.identity)
    assert m[0] is m["one"]
    sub = m[0:2]
    assert isinstance(sub, fl.Parallel) and sub.layers == m.layers and sub.connection is hcat
    assert isinstance(fl.Parallel(np.add, np.sin, np.cos)[1:], fl.Parallel)
    assert list(fl.fmap(lambda a: a, m).layers) == ["one", "two"]
    np.testing.assert_array_equal(fl.Parallel(lambda *a: np.hstack(a), x=np.log)(1), [0])
    # zero inputs: an error (before: the connection was called with nothing, and
    # Parallel(None, f)() returned ())
    for m in (fl.Parallel(np.add, np.sin), fl.Parallel(None, np.sin),
              fl.Parallel(np.add, np.sin, np.cos)):
        with pytest.raises(ValueError, match="needs at least one input; got none"):
            m()
    with pytest.raises(TypeError, match="Parallel needs at least one layer"):
        fl.Parallel(np.add)
    calls = []

    def counted(*ys):
        calls.append(len(ys))
        return sum(ys)

    fl.Parallel(counted, np.sin, np.cos, np.tan)(1)
    fl.Parallel(counted, np.sin, np.cos, np.tan)(1, 2, 3)
    fl.Parallel(counted, np.sin)(1)
    fl.Parallel(counted, np.sin)(1, 2, 3)
    assert calls == [3, 3, 1, 3]


def test_parallel_input_domain_gradients():
    # basic.jl "Parallel/Input domain": gradients through custom layers and inputs
    class L1:
        def __init__(self, x):
            self.x = x

        def __call__(self, v):
            return self.x @ v

    par = fl.Parallel(np.add, L1(RNG.random((3, 3))), L1(RNG.random((3, 3))))
    a, b = RNG.random((3, 3)), RNG.random((3, 3))
    np.testing.assert_allclose(par(a, b), par.layers[0].x @ a + par.layers[1].x @ b)
    gp, ga, gb = fl.gradient(lambda p, a, b: np.sum(p(a, b)), par, a, b)
    ones = np.ones((3, 3))
    np.testing.assert_allclose(gp.layers[0].x, ones @ a.T)
    np.testing.assert_allclose(gp.layers[1].x, ones @ b.T)
    np.testing.assert_allclose(ga, par.layers[0].x.T @ ones)
    np.testing.assert_allclose(gb, par.layers[1].x.T @ ones)


def test_embedding():
    # basic.jl "Embedding" (indices from 0; output (..., dim): Flux's (dim, ...))
    vocab, dim = 10, 4
    m = fl.Embedding(vocab, dim)
    assert m.weight.shape == (vocab, dim)
    assert m(np.array(1)).dtype == np.float32
    np.testing.assert_array_equal(m(np.array(1)), m.weight[1])
    np.testing.assert_array_equal(m(np.arange(vocab) == 3), m.weight[3])  # one-hot as bool
    with pytest.raises(ValueError, match=r"reads a bool array as one-hot rows \(\.\.\., 10\)"):
        m(np.arange(1000) == 3)
    x = RNG.integers(0, vocab, 3)
    np.testing.assert_array_equal(m(x), m.weight[x])
    np.testing.assert_array_equal(m(fl.onehotbatch(x, vocab, dtype=bool)), m(x))
    x = RNG.integers(0, vocab, (3, 4))
    assert m(x).shape == (3, 4, dim)
    assert m(fl.onehotbatch(x, vocab, dtype=bool)).shape == (3, 4, dim)
    with pytest.raises(ValueError, match=r"has a vocabulary of 10 \(indices 0 to 9\); got "
                                         r"index 10"):
        m(np.array([1, 10]))


def test_embedding_padding_idx():
    # basic.jl "Embedding/padding_idx" (Flux's pad = 2 is index 1 here; missing before)
    vocab, dim, pad = 10, 4, 1
    m = fl.Embedding(vocab, dim, padding_idx=pad)
    assert m.padding_idx == pad and np.all(m.weight[pad] == 0)
    assert f"padding_idx={pad}" in repr(m)
    for bad in (-1, vocab):
        with pytest.raises(ValueError, match="padding_idx must be an index of the vocabulary"):
            fl.Embedding(vocab, dim, padding_idx=bad)
    assert np.all(m(np.array(pad)) == 0)
    x = np.array([0, pad, 2, pad, 3])
    y = m(x)
    assert np.all(y[[1, 3]] == 0)
    np.testing.assert_array_equal(y[[0, 2, 4]], m.weight[[0, 2, 3]])
    np.testing.assert_array_equal(m(fl.onehotbatch(x, vocab, dtype=bool)), y)
    assert np.all(m(np.array([[0, pad], [2, pad]]))[:, 1] == 0)
    m.weight[pad] = 5  # zeros whatever the row holds
    assert np.all(m(np.array([pad])) == 0)
    m.weight[pad] = 0
    m0 = fl.Embedding(vocab, dim)
    m0.weight[...] = m.weight
    for inp in (x, fl.onehotbatch(x, vocab, dtype=bool)):
        g = fl.gradient(lambda m: np.sum(m(inp)), m)[0].weight
        g0 = fl.gradient(lambda m: np.sum(m(inp)), m0)[0].weight
        assert np.all(g[pad] == 0) and np.all(g0[pad] == 2)
        np.testing.assert_array_equal(np.delete(g, pad, axis=0), np.delete(g0, pad, axis=0))
    assert np.all(fl.gradient(lambda m: np.sum(m(np.array(pad))), m)[0].weight == 0)
    state = fl.setup(fl.Adam(0.1), m)
    fl.train(lambda m, x: np.sum((m(x) - 1) ** 2), m, [(x,)] * 5, state, progress=False)
    assert np.all(m.weight[pad] == 0) and not np.all(m.weight[0] == m0.weight[0])


def test_embedding_padding_idx_leaves_the_inits_array_and_masks_any_row():
    # the padding row was zeroed in the array init returned (a user's pretrained vectors),
    # and a row of inf embedded to NaN (a product with the mask)
    vectors = np.arange(15, dtype=np.float32).reshape(5, 3)
    m = fl.Embedding(5, 3, padding_idx=0, init=lambda shape, rng: vectors)
    assert vectors[0].tolist() == [0.0, 1.0, 2.0] and np.all(m.weight[0] == 0)
    m.weight[0] = np.inf
    y = m(np.array([0, 1]))
    np.testing.assert_array_equal(y, [[0, 0, 0], [3, 4, 5]])
    g, = fl.gradient(lambda m: np.sum(m(np.array([0, 1]))), m)
    np.testing.assert_array_equal(g.weight[:2], [[0, 0, 0], [1, 1, 1]])
    oh = fl.onehotbatch([0, 1, 0], 5, dtype=bool)  # one-hot rows, the padding among them
    np.testing.assert_array_equal(m(oh), [[0, 0, 0], [3, 4, 5], [0, 0, 0]])


@pytest.mark.parametrize("reduction", ["sum", "mean", "max"])
def test_embeddingbag(reduction):
    # basic.jl "EmbeddingBag"; fluxml's offsets are PyTorch's (0-based starts)
    reduce = {"sum": np.sum, "mean": np.mean, "max": np.max}[reduction]
    vocab, dim = 10, 4
    bag = fl.EmbeddingBag(vocab, dim, reduction)
    w = bag.weight
    assert w.shape == (vocab, dim)
    with pytest.raises(ValueError, match="expects an index matrix"):
        bag(np.array(2))
    bags = [RNG.integers(0, vocab, 3) for _ in range(4)]
    want = np.stack([reduce(w[b], axis=0) for b in bags])
    np.testing.assert_allclose(bag(bags), want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(bag(np.stack(bags)), want, rtol=1e-6, atol=1e-6)
    idx = np.array([1, 3, 2, 4, 5, 7])
    np.testing.assert_allclose(bag((idx, np.array([0, 2, 4]))),
                               bag(np.array([[1, 3], [2, 4], [5, 7]])), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(bag((np.arange(10), np.array([0, 4, 5, 7]))),
                               bag([np.arange(4), np.array([4]), np.array([5, 6]),
                                    np.array([7, 8, 9])]), rtol=1e-6, atol=1e-6)
    for offsets in ([1, 3], [0, 12], [0, 3, 2]):  # Flux's _splitat refusals
        with pytest.raises(ValueError, match="offsets must be an increasing integer vector"):
            bag((idx, np.array(offsets)))


def test_second_derivatives():
    # basic.jl "second derivatives": forward-over-reverse equals reverse-over-reverse
    m1 = fl.f64(fl.Chain(fl.Dense(3, 4, np.tanh, bias=False), fl.Dense(4, 2)))
    x = np.array([1.0, 2.0, 3.0])
    h = fl.hessian(lambda v: np.sum(m1(v)), x)
    w1, w2 = m1[0].weight, m1[1].weight
    t = np.tanh(w1 @ x)
    c = w2.sum(axis=0) * (-2 * t * (1 - t ** 2))  # d2/dz2 of sum(w2 @ tanh(z))
    np.testing.assert_allclose(h, w1.T @ np.diag(c) @ w1, rtol=1e-10)
    m1v = fl.Chain([m1[0], m1[1]])
    np.testing.assert_allclose(fl.hessian(lambda v: np.sum(m1v(v)), x), h, rtol=1e-12)


def test_gradients_of_chain_vector():
    # basic.jl "gradients of Chain{Vector}"
    m1 = fl.Chain(fl.Dense(3, 4, np.tanh, bias=False), fl.Dense(4, 2))
    m1v = fl.Chain([m1[0], m1[1]])
    assert sum(p.size for p in fl.trainables(m1)) == sum(p.size for p in fl.trainables(m1v))
    x1 = randn(5, 3)
    np.testing.assert_array_equal(m1(x1), m1v(x1))
    y1 = RNG.random((5, 2)) > 0.5
    g1 = fl.gradient(lambda m: fl.logitcrossentropy(m(x1), y1), m1)[0]
    g1v = fl.gradient(lambda m: fl.logitcrossentropy(m(x1), y1), m1v)[0]
    for a, b in zip(fl.leaves(g1), fl.leaves(g1v)):
        np.testing.assert_array_equal(a, b)
    p, re = fl.destructure(m1)
    assert p.size == 22
    np.testing.assert_array_equal(p, fl.destructure(m1v)[0])
    z = RNG.random(22).astype(np.float32)
    np.testing.assert_array_equal(re(z)[0].weight, z[:12].reshape(4, 3))


def test_pairwise_fusion():
    # basic.jl "PairwiseFusion"
    x = (randn(10, 1), randn(10, 30))
    y = fl.PairwiseFusion(np.add, fl.Dense(1, 30), fl.Dense(30, 10))(x)
    assert len(y) == 2 and y[0].shape == (10, 30) and y[1].shape == (10, 10)
    y = fl.PairwiseFusion(np.add, fl.Dense(1, 10), fl.Dense(10, 1))(randn(10, 1))
    assert y[0].shape == (10, 10) and y[1].shape == (10, 1)
    vcat = lambda a, b: np.hstack([a, b])  # noqa: E731
    fs = (lambda v: v + 1, lambda v: v + 2, lambda v: v ** 3)
    a, b, c = fl.PairwiseFusion(vcat, *fs)(2, 10, 20)
    assert a == 3 and list(b) == [5, 12] and list(c) == [125, 1728, 8000]
    a, b, c = fl.PairwiseFusion(vcat, *fs)(7)
    assert a == 8 and list(b) == [10, 9] and list(c) == [1000, 729, 343]


def test_no_warning_on_matching_dtypes():
    # basic.jl "Chain": @test_nowarn on float32 input
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fl.Chain(fl.Dense(10, 5, fl.sigmoid), fl.Dense(5, 2))(randn(10))
