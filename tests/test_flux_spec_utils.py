"""Flux.jl's test/utils.jl (initialisers, trainables, modules, precision, destructure, train
and test mode), test/layers/show.jl and macro.jl translated to fluxml. fluxml's initialisers
take a shape and a generator (``init((out, in), rng)``; Flux's ``init(out, in)``), weights
are ``(out, in, *kernel)`` (Flux's ``(kernel..., in, out)``), and ``functools.partial`` is
Flux's curried ``init(gain=2)``."""

import functools

import numpy as np
import pytest

import fluxml as fl
from fluxml.layers import precision

I = fl.init  # noqa: E741 - Flux's names read as I.glorot_uniform
RNG = np.random.default_rng(0)


def test_fans():
    # utils.jl "Fan in/out" (Flux's nfan(100) of a vector is (1, 100); fluxml's (100, 100))
    assert I.fans(()) == (1, 1)
    assert I.fans((100, 200)) == (200, 100)  # Dense(200 => 100): (fan_in, fan_out)
    assert I.fans((40, 30, 2)) == (2 * 30, 2 * 40)  # Flux's nfan(2, 30, 40), 1-d conv
    assert I.fans((50, 40, 3, 2)) == (2 * 3 * 40, 2 * 3 * 50)
    assert I.fans((60, 50, 4, 3, 2)) == (2 * 3 * 4 * 50, 2 * 3 * 4 * 60)


@pytest.mark.parametrize("init", [I.glorot_uniform, I.glorot_normal, I.kaiming_uniform,
                                  I.kaiming_normal, I.orthogonal, I.truncated_normal,
                                  I.lecun_normal, I.identity_init, I.normal,
                                  functools.partial(I.sparse_init, sparsity=0.5)])
def test_initialiser_basics(init):
    # utils.jl "Basics": shapes, float32 by default, a generator makes it reproducible
    assert init((3, 4)).shape == (3, 4) and init((3, 4)).dtype == np.float32
    if init.__class__ is not functools.partial and init is not I.orthogonal:
        assert init((3,)).shape == (3,)
    if init.__class__ is not functools.partial:
        assert init((5, 4, 3)).shape == (5, 4, 3)
    a, b = init((3, 4), np.random.default_rng(1)), init((3, 4), np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    g = fl.gradient(lambda x: np.sum(x * init((3, 4))), 5.0)[0]  # not differentiated
    assert np.isfinite(g)


@pytest.mark.parametrize("init", [I.glorot_uniform, I.glorot_normal])
def test_glorot_variance(init):
    # utils.jl "glorot": variance 2 / (fan_in + fan_out)
    for dims in [(100, 100), (400, 100), (64, 32, 3, 2), (64, 32, 4, 3, 2)]:
        fan_in, fan_out = I.fans(dims)
        v = init(dims, np.random.default_rng(3))
        assert 0.9 < np.var(v) / (2 / (fan_in + fan_out)) < 1.1
    assert init((3, 4), gain=1.5).dtype == np.float32


def test_kaiming_orthogonal_sparse_truncated_lecun():
    # utils.jl "kaiming", "orthogonal", "sparse_init", "truncated_normal", "lecun_normal";
    # Flux's kaiming_uniform(n_in, n_out) is an (n_in, n_out) weight whose fan_in is n_out
    rng = np.random.default_rng(5)
    for rows, fan_in in [(100, 100), (100, 400)]:
        v = I.kaiming_uniform((rows, fan_in), rng)
        limit = np.sqrt(6 / fan_in)
        assert -limit < v.min() < -0.9 * limit and 0.9 * limit < v.max() < limit
        v = I.kaiming_normal((rows, fan_in), rng)
        assert 0.9 < np.std(v) / np.sqrt(2 / fan_in) < 1.1
    for rows, cols in [(5, 3), (3, 5)]:
        v = I.orthogonal((rows, cols), rng).astype(np.float64)
        gram = v @ v.T if rows < cols else v.T @ v
        np.testing.assert_allclose(gram, np.eye(min(rows, cols)), atol=1e-6)
    v = I.orthogonal((5, 4, 3), rng).reshape(5, 12).astype(np.float64)  # rows: axis 0 here
    np.testing.assert_allclose(v @ v.T, np.eye(5), atol=1e-6)
    with pytest.raises(ValueError, match="sparse_init needs a 2-d shape"):
        I.sparse_init((100, 100, 100), sparsity=0.1)
    for rows, cols, sparsity, std in [(100, 100, 0.25, 0.1), (100, 400, 0.75, 0.01)]:
        v = I.sparse_init((rows, cols), rng, sparsity=sparsity, std=std)
        assert np.all(np.sum(v == 0, axis=0) == np.ceil(rows * sparsity))
        assert 0.9 * std < np.std(v[v != 0]) < 1.1 * std
    assert np.all(I.sparse_init((8, 8), sparsity=1) == 0)
    # (Flux takes sparsity -0.1 as none and 1.1 as all; fluxml asks for [0, 1])
    with pytest.raises(ValueError, match=r"sparsity must be in \[0, 1\]"):
        I.sparse_init((4, 4), sparsity=-0.1)
    m = I.truncated_normal((100, 100), rng)
    assert m.min() == pytest.approx(-2, abs=0.05) and m.max() == pytest.approx(2, abs=0.05)
    assert abs(m.mean()) < 0.1
    for mu, sigma, lo, hi in [(0.0, 1, -2, 3), (1, 2, -4.0, 5.0)]:
        v = I.truncated_normal((100, 100, 100), rng, mean=mu, std=sigma, lo=lo, hi=hi)
        assert abs(v.mean() - mu) < 0.1 and v.dtype == np.float32
        assert v.min() == pytest.approx(lo, abs=1e-2) and v.max() == pytest.approx(hi, abs=1e-2)
    for mu, sigma in [(6, 2), (-7.0, 10)]:
        v = I.truncated_normal((100, 100, 100), rng, mean=mu, std=sigma, lo=-100, hi=100)
        assert abs(v.mean() - mu) < 0.1 and abs(v.std() - sigma) < 0.1
    assert np.std(I.lecun_normal((10, 1000), rng)) == pytest.approx(0.032, rel=0.1)
    assert np.std(I.lecun_normal((1000, 10), rng)) == pytest.approx(0.317, rel=0.1)
    # partial application (Flux's kaiming_uniform(gain=1e9))
    big = functools.partial(I.kaiming_uniform, gain=1e9)
    assert big((8, 8)).max() > 1e9 / 2 and big((8, 8), gain=1).max() < 1e9 / 2


def test_identity_init():
    # utils.jl "identity_init": the identity map for Dense and for every convolution
    np.testing.assert_array_equal(I.identity_init((3, 3), gain=3), 3 * np.eye(3))
    assert I.identity_init((3, 4), gain=1.5).dtype == np.float32
    np.testing.assert_array_equal(I.identity_init((2, 3))[:, -1], np.zeros(2))
    layer = fl.Dense(3, 3, init=I.identity_init)
    x = np.arange(1, 10, dtype=np.float32).reshape(3, 3)
    np.testing.assert_array_equal(layer(x), x)
    for make in (fl.Conv, fl.ConvTranspose, fl.CrossCor):
        for kernel in [(1,), (3,), (1, 3), (3, 5), (3, 5, 7)]:
            m = make(kernel, 3, 3, init=I.identity_init, pad="same")
            x = RNG.standard_normal((3, 3) + kernel).astype(np.float32)
            np.testing.assert_array_equal(m(x), x)


def test_trainables():
    # utils.jl "Trainables", "trainables gradient", "Shared parameters"
    assert [p.shape for p in fl.trainables(fl.Dense(10, 5))] == [(5, 10), (5,)]
    r = fl.RNN(10, 5)  # PyTorch's two biases (Flux: one)
    assert [p.shape for p in fl.trainables(r)] == [(5, 10), (5, 5), (5,), (5,)]
    assert [p.shape for p in fl.trainables(fl.Chain(r, r))] == [(5, 10), (5, 5), (5,), (5,)]
    m = {"x": np.array([1.0, 2.0]), "y": np.array([3.0])}
    g = fl.gradient(lambda m: sum(np.linalg.norm(p) for p in fl.trainables(m)), m)[0]
    np.testing.assert_allclose(g["x"], [0.4472135954999579, 0.8944271909999159])
    np.testing.assert_allclose(g["y"], [1.0])
    mat = np.array([[1, 2], [3, 4.0]])
    simple = (None, mat, (3, mat, 4))
    assert len(fl.trainables(simple)) == 1
    np.testing.assert_array_equal(fl.destructure(simple)[0], [1, 2, 3, 4])  # row-major here


def test_precision(monkeypatch):
    # utils.jl "Precision", "zero bias"
    monkeypatch.setattr(precision, "_warned", set())  # (each warning is once per process)
    m = fl.Chain(fl.Dense(10, 5, fl.relu, bias=False), fl.Dense(5, 2))
    x64 = RNG.random(10)
    x32 = x64.astype(np.float32)
    assert m[0].weight.dtype == np.float32 and m(x32).dtype == np.float32
    with pytest.warns(UserWarning, match="float32 parameters and got float64 input"):
        assert fl.Chain(fl.Dense(10, 2))(x64).dtype == np.float32
    assert fl.f64(m)(x64).dtype == np.float64 and fl.f64(m)[0].weight.dtype == np.float64
    assert fl.f32(fl.f64(m))[0].weight.dtype == np.float32
    assert fl.f32(x64).dtype == np.float32 and fl.f32(x32) is x32
    assert fl.f16(x64.reshape(2, 5).T).dtype == np.float16
    i64 = np.arange(10)
    assert fl.f32(i64) is i64  # integers are not converted
    assert fl.gradient(lambda x: np.sum(fl.f16(x)), x32)[0].dtype == np.float32
    assert fl.gradient(lambda x: np.sum(fl.f64(x)), x32)[0].dtype == np.float32
    c32 = (RNG.random((2, 2)) + 1j).astype(np.complex64)
    c64 = RNG.random((2, 2)) + 1j
    assert fl.f32(c32) is c32 and fl.f32(c64).dtype == np.complex64
    assert {k: v.dtype for k, v in fl.f64({"a": c64, "b": c32}).items()} == \
        {"a": np.complex128, "b": np.complex128}
    d = fl.Dense(3, 2, bias=False)
    assert fl.f64(d).bias is None and fl.f32(d).bias is None


def test_destructure():
    # utils.jl "Param remapping", "Various destructure bugs"
    def ls(*dims):
        return np.arange(1, np.prod(dims) + 1, dtype=np.float32).reshape(dims)

    def dm(bias):
        return fl.Chain(fl.Dense(ls(5, 3), bias(5)), fl.Dense(ls(4, 5), bias(4)),
                        fl.Dense(ls(3, 4), bias(3)))

    for bias in (lambda n: np.zeros(n, np.float32), lambda n: False):
        p, re = fl.destructure(dm(bias))
        for a, b in zip(re(p), dm(bias)):
            np.testing.assert_array_equal(a.weight, b.weight)
            assert (a.bias is None) == (b.bias is None)
    x = RNG.random((1, 3)).astype(np.float32)
    m = dm(lambda n: np.zeros(n, np.float32))
    gm = fl.gradient(lambda m: np.sum(m(x)), m)[0]
    p, re = fl.destructure(m)
    gp = fl.gradient(lambda t: np.sum(re(t)(x)), p)[0]
    np.testing.assert_allclose(gp, fl.destructure(gm)[0], rtol=1e-6)
    # issue 1727: BatchNorm's 6 trainable numbers, not its running statistics
    p, re = fl.destructure(fl.BatchNorm(3))
    assert p.size == 6
    y, back = fl.pullback(lambda x, p: re(p)(x).ravel(), RNG.random((4, 3)).astype(np.float32),
                          p)
    dx, dp = back(y)
    assert dx.shape == (4, 3) and dp.shape == (6,)

    # issue 1767: a layer used twice; its gradient is the sum of both uses, which fluxml's
    # structural gradient gives at each place (Zygote: each place its own use, added here)
    class Model(fl.Module):
        def __init__(self, a, b):
            self.a, self.b = a, b

        def __call__(self, x):
            return self.a(x) + self.b(x)

    d = fl.Dense(1, 1)
    x = RNG.random((1, 1)).astype(np.float32)
    model = Model(d, d)
    g1 = fl.gradient(lambda m: np.sum(m(x)), model)[0]
    p, re = fl.destructure(model)
    g2 = fl.gradient(lambda p: np.sum(re(p)(x)), p)[0]
    assert g1.a.weight is g1.b.weight or np.array_equal(g1.a.weight, g1.b.weight)
    np.testing.assert_allclose(g2, np.concatenate([g1.a.weight.ravel(), g1.a.bias]), rtol=1e-6)
    np.testing.assert_allclose(g1.a.bias, [2.0])  # one for each use
    np.testing.assert_allclose(g1.a.weight, 2 * x, rtol=1e-6)


def test_train_test_mode_and_modules():
    # utils.jl "Train and test mode", "modules" (fluxml lists layers, not Flux's tuples,
    # and its LayerNorm holds its weight and bias itself, not a Scale)
    c = fl.Chain(fl.Dropout(0.5), fl.BatchNorm(2))
    fl.testmode(c)
    assert c[0].active is False and c[1].active is False
    fl.trainmode(c)
    assert c[0].active is True and c[1].active is True
    fl.trainmode(c, None)
    assert c[0].active is None
    m1 = fl.Conv((2, 3), 4, 5, pad=6, stride=7)
    m2 = fl.LayerNorm(8)
    m4 = fl.SkipConnection(m1, np.add)
    m5 = fl.Chain(m4, m2)
    assert fl.modules(m5) == [m5, m4, m1, m2]  # depth first
    mods = fl.modules(fl.Chain(fl.Dense(2, 3), fl.BatchNorm(3), fl.LSTM(3, 4)))
    assert [type(m).__name__ for m in mods] == ["Chain", "Dense", "BatchNorm", "LSTM",
                                                "LSTMCell"]


def test_layer_printing():
    # show.jl "layer printing", "nested model printing", "show with no fields"
    assert repr(fl.Dense(2, 3)) == "Dense(2 => 3)  # 9 parameters"
    text = repr(fl.Chain(fl.Dense(2, 3), fl.Dense(3, 4), fl.Dense(4, 5), fl.softmax))
    assert text.startswith("Chain(\n  Dense(2 => 3),") and "# 9 parameters" in text
    assert "# Total: 6 arrays, 50 parameters" in text
    assert repr(fl.Chain(lay=fl.Dense(2, 3))).startswith("Chain(\n  lay = Dense(2 => 3),")

    class NoFields(fl.Module):
        def __call__(self, x):
            return x

    text = repr(fl.Chain(fl.Dense(1, 1), fl.Dense(1, 1), NoFields()))
    assert "4 arrays, 4 parameters" in text and "NoFields()" in text


def test_layer_macro_equivalents():
    # macro.jl "@layer": any class is a model; nontrainable for Flux's trainable=(a, b)
    class Trio(fl.Module):
        nontrainable = ("c",)

        def __init__(self, a, b, c):
            self.a, self.b, self.c = a, b, c

    m3 = Trio(np.array([1.0]), np.array([2.0]), np.array([3.0]))
    assert list(fl.trainable(m3)) == ["a", "b"]
    np.testing.assert_array_equal(fl.destructure(m3)[0], [1, 2])
    z = fl.fmap(np.zeros_like, m3)
    assert isinstance(z, Trio) and z.c[0] == 0

    class Duo:  # a plain class, no base
        def __init__(self, x, y):
            self.x, self.y = x, y

    m2 = Duo(fl.Dense(2, 2), fl.Chain(fl.Scale(2), fl.Dropout(0.2)))
    assert fl.destructure(m2)[0].size == 10
