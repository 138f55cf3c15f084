"""destructure and trainables (Optimisers.jl's), against hand-built flat vectors."""

import numpy as np
import pytest

import fluxml as fl
from fluxml.testing import check_grads


class Pair(fl.Module):
    nontrainable = ("count",)

    def __init__(self, a, b, count):
        self.a, self.b, self.count = a, b, count

    def __call__(self, x):
        return x @ self.a + self.b


def test_flat_vector_is_the_raveled_arrays_in_order():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 3)), rng.standard_normal(3)
    model = {"p": Pair(a, b, np.zeros(2)), "k": 3, "i": np.arange(2), "f": np.tanh}
    flat, re = fl.destructure(model)
    np.testing.assert_array_equal(flat, np.concatenate([a.ravel(), b]))
    assert len(re) == 9 and repr(re) == "Restructure(dict, ..., 9)"
    flat[0] = 99.0  # a copy: the model is untouched
    assert a[0, 0] != 99.0
    new = re(np.arange(9.0))
    np.testing.assert_array_equal(new["p"].a, np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(new["p"].b, [6.0, 7.0, 8.0])
    # numbers, integer arrays, static parts and nontrainable fields come back as they were
    assert new["k"] == 3 and new["i"] is model["i"] and new["f"] is np.tanh
    assert new["p"].count is model["p"].count


def test_dtypes_promote_in_flat_and_come_back_per_array():
    model = {"w": np.ones((2, 2), np.float32), "z": np.array([1 + 2j])}
    flat, re = fl.destructure(model)
    assert flat.dtype == np.complex128
    new = re(flat * 2 + 1j)  # a real array takes the real part (Optimisers.jl's projection)
    np.testing.assert_array_equal(new["w"], np.full((2, 2), 2.0))
    assert new["w"].dtype == np.float32 and new["z"].dtype == np.complex128
    np.testing.assert_array_equal(new["z"], [2 + 5j])
    f32, re32 = fl.destructure(fl.Dense(2, 3))
    assert f32.dtype == np.float32
    assert re32(np.zeros(9)).weight.dtype == np.float32  # float32 stays float32


def test_tied_arrays_are_counted_once_and_stay_tied():
    w = np.arange(4.0).reshape(2, 2)
    model = {"enc": w, "dec": w, "b": np.zeros(2)}
    flat, re = fl.destructure(model)
    assert flat.shape == (6,)
    new = re(np.arange(6.0) + 1)
    assert new["enc"] is new["dec"]
    assert [p for p, _ in fl.trainables(model, path=True)] == ["enc", "b"]
    # d/dflat of sum(2 enc + 3 dec) is 5 on the tied slice
    g = fl.gradient(lambda v: np.sum(2 * re(v)["enc"] + 3 * re(v)["dec"]), flat)[0]
    np.testing.assert_allclose(g, [5, 5, 5, 5, 0, 0])


def test_gradients_both_ways_to_second_order():
    rng = np.random.default_rng(1)
    model = Pair(rng.standard_normal((3, 2)), rng.standard_normal(2), np.zeros(1))
    flat, re = fl.destructure(model)
    x = rng.standard_normal((4, 3))
    check_grads(lambda v: np.tanh(re(x, v)), flat)
    check_grads(lambda m: np.sin(fl.destructure(m)[0]), model)
    # a gradient through destructure matches the structural one
    g_struct = fl.gradient(lambda m: np.sum(m(x) ** 2), model)[0]
    g_flat = fl.gradient(lambda v: np.sum(re(x, v) ** 2), flat)[0]
    np.testing.assert_allclose(g_flat, np.concatenate([g_struct.a.ravel(), g_struct.b]))


def test_a_model_trained_as_a_vector():
    model = fl.Chain(fl.Dense(2, 4, np.tanh), fl.Dense(4, 1))
    flat, re = fl.destructure(model)
    x = np.random.default_rng(2).standard_normal((16, 2)).astype(np.float32)
    y = np.sum(x, axis=1, keepdims=True)

    def loss(v):
        return fl.mse(re(x, v), y)

    start = float(loss(flat))
    for _ in range(50):
        flat = flat - 0.1 * fl.gradient(loss, flat)[0]
    assert flat.dtype == np.float32 and float(loss(flat)) < start / 2


def test_trainables_lists_arrays_once_without_nontrainable_fields():
    bn = fl.BatchNorm(3)
    got = fl.trainables(fl.Chain(fl.Dense(2, 3), bn))
    assert [a.shape for a in got] == [(3, 2), (3,), (3,), (3,)]
    assert all(a is not bn.running_mean and a is not bn.running_var for a in got)
    assert fl.trainables({"n": 1.0, "i": np.arange(3)}) == []
    assert fl.destructure({"n": 1.0})[0].shape == (0,)


def test_bad_input():
    _, re = fl.destructure({"w": np.ones(3)})
    with pytest.raises(ValueError, match=r"Restructure: expected a flat vector of length 3"):
        re(np.ones(4))
    with pytest.raises(ValueError, match=r"length 3 .*got shape \(3, 1\)"):
        re(np.ones((3, 1)))
    with pytest.raises(TypeError, match=r"re\(flat\) or re\(x, flat\)"):
        re()
