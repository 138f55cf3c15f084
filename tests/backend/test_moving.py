"""fl.gpu's fallback and strict error, and moving trees between devices.

Without a GPU the moving is checked against a second registered backend (``fakedevice``):
it proves the tree bookkeeping (every array moved, non-trainable ones too, tied arrays
tied, arrays on the target not copied), not anything about a GPU (see test_cupy.py).
"""

from __future__ import annotations

import sys
import types
import warnings

import numpy as np
import pytest

import fluxml as fl
from fluxml.backend import moving
from tests.backend.fakedevice import FAKE, FakeDeviceArray


@pytest.fixture
def no_cupy(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # `import cupy` raises ImportError
    monkeypatch.setattr(moving, "_warned", False)


def test_fallback_warns_once_and_keeps_the_arrays(no_cupy):
    tree = {"w": np.ones((2, 3), np.float32), "n": 3}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = fl.gpu(tree)
        second = fl.gpu(np.zeros(2), device=1)
    assert first is tree and type(second) is np.ndarray
    fallbacks = [w for w in caught if issubclass(w.category, fl.backend.GPUFallbackWarning)]
    assert len(fallbacks) == 1, [str(w.message) for w in caught]
    message = str(fallbacks[0].message)
    for part in ("stay on the CPU", "CuPy is not installed", "pip install 'fluxml[gpu]'",
                 "cupy-cuda13x", "strict=True"):
        assert part in message, message
    assert fallbacks[0].filename == __file__  # points at the caller's line


def test_fallback_says_when_cupy_sees_no_device(monkeypatch):
    def no_device():
        raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")

    fake_cupy = types.SimpleNamespace(
        cuda=types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=no_device)))
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy)
    monkeypatch.setattr(moving, "_warned", False)
    with pytest.warns(fl.backend.GPUFallbackWarning, match="finds no CUDA device.*no CUDA"):
        fl.gpu(np.ones(2))
    with pytest.raises(fl.backend.GPUUnavailableError, match="finds no CUDA device"):
        fl.gpu(np.ones(2), strict=True)


def test_strict_raises_instead_of_warning(no_cupy):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning may come
        with pytest.raises(fl.backend.GPUUnavailableError) as info:
            fl.gpu([np.ones(2)], strict=True)
    message = str(info.value)
    assert "strict=True" in message and "CuPy is not installed" in message
    assert "pip install 'fluxml[gpu]'" in message


@pytest.mark.parametrize("device", ["cuda", -1, 1.0, True])
def test_bad_device_argument(device):
    with pytest.raises(TypeError, match=r"fl.gpu: device must be a GPU number .*got"):
        fl.gpu(np.ones(2), device=device)


def _model():
    fl.seed(0)
    return fl.Chain(fl.Dense(3, 4), fl.BatchNorm(4), fl.Dense(4, 2))


def _array_leaves(tree):
    return [x for x in fl.leaves(tree) if hasattr(x, "shape")]


def test_round_trip_of_a_model_and_its_optimiser_state():
    model = _model()
    model.layers[1].running_mean[:] = [1, 2, 3, 4]  # non-trainable: must move too
    state = fl.setup(fl.Adam(), model)
    tree = {"model": model, "state": state, "batch": (np.ones((5, 3), np.float32),
                                                      np.arange(5)), "lr": 0.1}
    before = [np.array(x) for x in _array_leaves(tree)]

    there = fl.backend.to_device(tree, FAKE)
    arrays = _array_leaves(there)
    assert len(arrays) == len(before)
    assert all(type(x) is FakeDeviceArray for x in arrays), {type(x) for x in arrays}
    assert type(there["model"].layers[1].running_mean) is FakeDeviceArray
    assert there["lr"] == 0.1 and type(there["model"]) is fl.Chain

    back = fl.cpu(there)
    after = _array_leaves(back)
    assert all(type(x) is np.ndarray for x in after)
    for b, a in zip(before, after):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    np.testing.assert_array_equal(back["model"](x), model(x))
    assert back["model"].layers[1].running_mean is not model.layers[1].running_mean


def test_tied_arrays_stay_tied_and_arrays_on_the_target_are_kept():
    w = np.ones((2, 2))
    tree = {"encoder": w, "decoder": w, "other": np.zeros(2), "name": "tied"}
    there = fl.backend.to_device(tree, FAKE)
    assert there["encoder"] is there["decoder"]
    assert fl.backend.to_device(there, FAKE) is there  # nothing to move: the same tree
    back = fl.cpu(there)
    assert back["encoder"] is back["decoder"] and back["name"] == "tied"
    assert fl.cpu(back) is back

    on_fake = FakeDeviceArray(np.ones(3))
    mixed = fl.backend.to_device([on_fake, np.zeros(3)], FAKE)
    assert mixed[0] is on_fake and type(mixed[1]) is FakeDeviceArray
    other = fl.backend.to_device(on_fake, FAKE, device=1)  # another device: a copy
    assert other is not on_fake and fl.backend.device_of(other) == "fake:1"


def test_shared_objects_stay_shared():
    """One rule object in every Leaf of an optimiser state, and a layer used twice, are one
    object in the moved tree too (a compiled step on the moved state then reads one rule's
    numbers), not a copy per place; the original tree keeps its own objects."""
    layer = fl.Dense(3, 3)
    model = fl.Chain(layer, fl.relu, layer)
    state = fl.setup(fl.Adam(), model)
    leaves = [state.layers[0].weight, state.layers[0].bias]
    assert leaves[0].rule is leaves[1].rule
    for moved in (fl.backend.to_device((model, state), FAKE),
                  fl.cpu(fl.backend.to_device((model, state), FAKE))):
        m, s = moved
        assert m.layers[0] is m.layers[2] and m.layers[0] is not layer
        rules = {id(getattr(s.layers[k], f).rule) for k in (0, 2) for f in ("weight", "bias")}
        assert len(rules) == 1 and s.layers[0].weight.rule is not leaves[0].rule

def test_what_does_not_move():
    tree = [np.float32(2.0), 3.0, np.array(["a", "b"], dtype=object), "text", None]
    there = fl.backend.to_device(tree, FAKE)
    assert there is tree  # numbers, object arrays and static parts stay


def test_moving_inside_a_gradient():
    def f(x):
        assert fl.cpu(x) is x  # a traced NumPy array is on the CPU already
        with pytest.raises(TypeError, match="traced array on another device"):
            fl.backend.to_device(x, FAKE)
        return np.sum(x ** 2)

    (g,) = fl.gradient(f, np.array([1.0, 2.0]))
    np.testing.assert_array_equal(g, [2.0, 4.0])
