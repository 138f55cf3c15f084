"""Flux.jl's test/loading.jl and test/functors.jl translated to fluxml: ``fl.loadmodel``
for ``Flux.loadmodel!``, ``fl.state`` for ``Flux.state`` (a nested dict here, where Flux
gives NamedTuples), ``fl.cpu`` for ``cpu_device()``. Where fluxml differs on purpose (it
loads settings such as Dropout's ``p``, and refuses a bias that one side lacks) the test
says so."""

import numpy as np
import pytest

import fluxml as fl
from fluxml.io.modelstate import LoadError

RNG = np.random.default_rng(8)


def test_cpu_device():
    # functors.jl: cpu of an array is the array
    x = RNG.random((10, 10), dtype=np.float32)
    np.testing.assert_array_equal(fl.cpu(x), x)


def test_loadmodel_from_a_model_and_from_a_state():
    # loading.jl "loadmodel!(dst, src)": a model as the source (before: TypeError)
    m1 = fl.Chain(fl.Dense(10, 5), fl.Dense(5, 2, fl.relu))
    m2 = fl.Chain(fl.Dense(10, 5), fl.Dense(5, 2))
    assert fl.loadmodel(m1, m2) is m1
    np.testing.assert_array_equal(m1[0].weight, m2[0].weight)
    np.testing.assert_array_equal(m1[0].bias, m2[0].bias)
    assert m1[0].weight is not m2[0].weight  # copied into m1's own arrays
    assert m1[1].activation is fl.relu  # non-array leaves untouched
    m6 = fl.Chain(fl.Dense(10, 5), fl.Parallel(np.add, fl.Dense(5, 2, bias=False),
                                               fl.Dense(5, 2)))
    m5 = fl.Chain(fl.Dense(10, 5), fl.Parallel(np.add, fl.Dense(np.ones((2, 5), np.float32),
                                                                False), fl.Dense(5, 2)))
    fl.loadmodel(m5, fl.state(m6))
    np.testing.assert_array_equal(m5[1][0].weight, m6[1][0].weight)
    assert m5[1][0].bias is None
    m3 = fl.Chain(fl.Conv((3, 3), 3, 16), fl.Dense(5, 2))
    with pytest.raises(LoadError, match=r"layers.0.weight: expected \(5, 10\), got "
                                        r"\(16, 3, 3, 3\)"):
        fl.loadmodel(m1, m3)
    with pytest.raises(LoadError, match=r"expected \(5, 10\), got \(6, 10\)"):
        fl.loadmodel(m1, fl.Chain(fl.Dense(10, 6), fl.Dense(6, 2)))
    with pytest.raises(TypeError, match="expected a state .* or a model; got str"):
        fl.loadmodel(m1, "weights.safetensors")


def test_loadmodel_batchnorm_dropout_and_modes():
    # loading.jl: running statistics are copied, functions are not, test/train modes are
    # not; Dropout's p IS copied here (Flux keeps the destination's: a documented
    # difference, fluxml's state holds a layer's numbers)
    m1 = fl.Chain(fl.Conv((3, 3), 3, 16), fl.BatchNorm(16), fl.Flatten(), fl.Dropout(0.2))
    m2 = fl.Chain(fl.Conv((3, 3), 3, 16), fl.BatchNorm(16), fl.Flatten(), fl.Dropout(0.1))
    m2[1].running_mean[:] = RNG.random(16)
    m2[1].running_var[:] = 2
    fl.testmode(m2)
    flatten = m1[2]
    fl.loadmodel(m1, m2)
    np.testing.assert_array_equal(m1[1].running_mean, m2[1].running_mean)
    np.testing.assert_array_equal(m1[1].running_var, 2)
    assert m1[2] is flatten and m1[1].active is None and m1[3].active is None
    assert m1[3].p == 0.1
    # a subset of a model
    m1[1].running_mean[:] = 3
    m1[0].bias[:] = 5
    fl.loadmodel(m2[1], m1[1])
    np.testing.assert_array_equal(m2[1].running_mean, 3)
    assert not np.array_equal(m2[0].bias, m1[0].bias)


def test_loadmodel_shared_weights():
    # loading.jl "test shared weights"
    shared_dst, shared_src = fl.Dense(10, 10), fl.Dense(10, 10)
    m1 = fl.Chain(shared_dst, fl.Dense(shared_dst.weight))
    m2 = fl.Chain(shared_src, fl.Dense(shared_src.weight))
    fl.loadmodel(m1, m2)
    assert m1[0].weight is m1[1].weight
    np.testing.assert_array_equal(m1[0].weight, m2[1].weight)
    before = m1[0].weight.copy()
    with pytest.raises(LoadError, match="are one array in the model \\(tied\\), but the state "
                                        "gives them different values"):
        fl.loadmodel(m1, fl.Chain(fl.Dense(10, 10), fl.Dense(10, 10)))
    np.testing.assert_array_equal(m1[0].weight, before)  # nothing written (Flux writes some)
    b = np.zeros(5, np.float32)
    m1 = fl.Chain(fl.Dense(10, 5, bias=b), fl.Dense(5, 5, bias=b))
    m2 = fl.Chain(fl.Dense(10, 5), fl.Dense(5, 5))
    fl.loadmodel(m1, m2)
    assert m1[0].bias is m1[1].bias and not np.any(m1[0].bias)
    m2[0].bias[:] = 1
    with pytest.raises(LoadError, match="tied"):
        fl.loadmodel(m1, m2)


def test_loadmodel_absent_bias():
    # loading.jl "loadmodel! & absent bias": Flux zeroes or ignores a bias one side lacks;
    # fluxml refuses, naming the path, and writes nothing
    m0 = fl.Chain(fl.Dense(2, 3, bias=False, init=fl.init.ones), fl.Dense(3, 1))
    m1 = fl.Chain(fl.Dense(2, 3, bias=RNG.standard_normal(3).astype(np.float32)),
                  fl.Dense(3, 1))
    m2 = fl.Chain(fl.Dense(np.array([[1, 2], [3, 4], [5, 6]], np.float32),
                           np.array([7, 8, 9], np.float32)), fl.Dense(3, 1))
    fl.loadmodel(m1, m2)
    np.testing.assert_array_equal(m1[0].bias, [7, 8, 9])
    assert m1[0].weight.sum() == 21
    with pytest.raises(LoadError, match="layers.0.bias: missing from the state"):
        fl.loadmodel(m1, m0)
    with pytest.raises(LoadError, match="layers.0.bias: in the state but not in the model"):
        fl.loadmodel(m0, m2)
    assert m0[0].weight.sum() == 6 and m1[0].weight.sum() == 21


def test_state():
    # loading.jl "state": the arrays themselves, nested as the model; functions left out
    m1 = fl.Chain(fl.Dense(10, 5), fl.Parallel(np.add, fl.Dense(np.ones((2, 5), np.float32),
                                                                False), fl.Dense(5, 2)))
    m2 = fl.Chain(fl.Dense(10, 5), fl.Parallel(np.add, fl.Dense(np.zeros((2, 5), np.float32),
                                                                False), fl.Dense(5, 2)))
    s = fl.state(m1)
    assert list(s) == ["layers"] and len(s["layers"]) == 2
    assert s["layers"]["0"]["weight"] is m1[0].weight
    assert "activation" not in s["layers"]["0"]
    assert s["layers"]["1"]["layers"]["0"]["weight"] is m1[1][0].weight
    fl.loadmodel(m2, s)
    np.testing.assert_array_equal(m2[0].weight, m1[0].weight)
    np.testing.assert_array_equal(m2[1][0].weight, 1)
    assert fl.state({"a": 1, "b": np.tanh}) == {"a": np.array(1)}
    m3 = fl.trainmode(fl.Chain(fl.Dense(10, 5), fl.Dropout(0.2), fl.Dense(5, 2),
                               fl.BatchNorm(2)))
    s = fl.state(m3)
    assert s["layers"]["1"]["p"] == 0.2
    for k in ("weight", "bias", "running_mean", "running_var"):
        assert s["layers"]["3"][k] is getattr(m3[3], k)
    assert s["layers"]["3"]["eps"] == m3[3].eps
    m = {"num": 1, "cnum": complex(1.2, 2), "arr": np.array([1, 2, 3]), "dict": {"a": 1},
         "str": "hello", "nth": None}
    s = fl.state(m)
    assert s["num"] == 1 and s["cnum"] == complex(1.2, 2) and s["dict"] == {"a": 1}
    np.testing.assert_array_equal(s["arr"], [1, 2, 3])
