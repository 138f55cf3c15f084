"""Training on a second array library (the fake device, CuPy's boundary without a GPU): every
optimiser rule steps the moved model in place as it steps NumPy's, ``fl.train`` gives the same
losses, and a model or checkpoint saved from there loads back there.

Run first, these found: ``fl.setup`` knew another library's arrays only by CuPy's class name
(``ndarray``), so it set up nothing for them and ``fl.update`` stepped nothing, silently;
``fl.f32`` left them as they were; ``fl.save`` and ``fl.state`` took them with
``np.asarray`` (refused) and ``fl.loadmodel`` wrote NumPy values into them (refused), or,
for an array without ``__array_namespace__``, replaced the array by a scalar. Where CuPy
sees a GPU, the same tests run on its arrays too (``devices.py``; marked ``gpu``).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

import fluxml as fl
from tests.backend.devices import DEVICES

RULES = {
    "Descent": lambda: fl.Descent(0.1), "Momentum": fl.Momentum, "Nesterov": fl.Nesterov,
    "RMSProp": fl.RMSProp, "RMSProp(centred)": lambda: fl.RMSProp(centred=True),
    "Adam": fl.Adam, "AdamW": fl.AdamW, "RAdam": fl.RAdam, "NAdam": fl.NAdam,
    "AdaMax": fl.AdaMax, "AdaGrad": fl.AdaGrad, "AdaDelta": fl.AdaDelta, "AMSGrad": fl.AMSGrad,
    "OAdam": fl.OAdam, "AdaBelief": fl.AdaBelief, "Lion": fl.Lion, "Rprop": fl.Rprop,
    "ClipGrad": fl.ClipGrad, "ClipNorm": fl.ClipNorm, "WeightDecay": fl.WeightDecay,
    "SignDecay": fl.SignDecay,
    "OptimiserChain": lambda: fl.OptimiserChain(fl.ClipNorm(1.0), fl.Adam()),
    "AccumGrad": lambda: fl.AccumGrad(2),
}
X = np.random.default_rng(0).standard_normal((16, 3))
Y = np.random.default_rng(1).standard_normal((16, 2))


def _pair(device):
    fl.seed(0)
    model = fl.f64(fl.Chain(fl.Dense(3, 8, fl.relu), fl.Dense(8, 2)))
    return model, device.move_tree(copy.deepcopy(model))


def _loss(m, x, y):
    return fl.mse(m(x), y)


def _same(moved, model, device):
    for a, b in zip(fl.leaves(moved), fl.leaves(model), strict=True):
        if isinstance(b, np.ndarray):
            assert device.holds(a), type(a)
            np.testing.assert_allclose(device.host(a), b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", RULES)
def test_every_rule_steps_a_moved_model_as_numpy(name, device):
    model, moved = _pair(device)
    ours, theirs = fl.setup(RULES[name](), model), fl.setup(RULES[name](), moved)
    fx, fy = device.move(X), device.move(Y)
    before = device.host(moved.layers[0].weight)
    for _ in range(3):
        fl.update(ours, model, fl.gradient(_loss, model, X, Y)[0])
        fl.update(theirs, moved, fl.gradient(_loss, moved, fx, fy)[0])
    _same(moved, model, device)
    if name != "AccumGrad":  # (it steps every second call: once here)
        assert not np.array_equal(device.host(moved.layers[0].weight), before)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["Adam", "RMSProp", "AdaGrad", "AdaBelief", "OptimiserChain"])
def test_a_float16_model_steps_as_numpys(name, device):
    # (a float16 second moment's division took ufunc's where=, which CuPy's ufuncs refuse)
    model, moved = _pair(device)
    model, moved = fl.f16(model), fl.f16(moved)
    ours, theirs = fl.setup(RULES[name](), model), fl.setup(RULES[name](), moved)
    x16, y16 = X.astype(np.float16), Y.astype(np.float16)
    for _ in range(2):
        fl.update(ours, model, fl.gradient(_loss, model, x16, y16)[0])
        fl.update(theirs, moved, fl.gradient(_loss, moved, device.move(x16),
                                             device.move(y16))[0])
    for a, b in zip(fl.leaves(moved), fl.leaves(model), strict=True):
        if isinstance(b, np.ndarray):
            np.testing.assert_array_equal(device.host(a), b)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("first", [lambda: fl.ClipGrad(0.01), lambda: fl.ClipNorm(0.01)],
                         ids=["ClipGrad", "ClipNorm"])
def test_a_chain_after_a_clip_steps_a_moved_model_as_numpy(first, device):
    # np.clip(..., out=out) on a second library returned another array object over out; a
    # check of identity lent the next rule the array it read (Adam's step 10 times too far)
    model, moved = _pair(device)
    rule = lambda: fl.OptimiserChain(first(), fl.Adam(0.1))  # noqa: E731
    ours, theirs = fl.setup(rule(), model), fl.setup(rule(), moved)
    fl.update(ours, model, fl.gradient(_loss, model, X, Y)[0])
    fl.update(theirs, moved, fl.gradient(_loss, moved, device.move(X), device.move(Y))[0])
    _same(moved, model, device)


@pytest.mark.parametrize("device", DEVICES)
def test_train_on_a_moved_model_gives_numpys_losses(device):
    model, moved = _pair(device)
    losses = []
    for m, data in ((model, (X, Y)), (moved, (device.move(X), device.move(Y)))):
        loader = fl.DataLoader(data, batchsize=4, shuffle=True, rng=np.random.default_rng(2))
        history = fl.train(_loss, m, loader, fl.setup(fl.Adam(0.01), m), epochs=2,
                           progress=False)
        losses.append(history.losses)
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-10)
    _same(moved, model, device)


@pytest.mark.parametrize("device", DEVICES)
def test_f32_converts_a_moved_model(device):
    _, moved = _pair(device)
    assert fl.f32(moved).layers[0].weight.dtype == np.float32
    assert device.holds(moved.layers[0].weight)


@pytest.mark.parametrize("device", DEVICES)
def test_save_and_load_a_moved_model_and_checkpoint(tmp_path, device):
    model, moved = _pair(device)
    state = fl.setup(fl.Adam(0.01), moved)
    fl.update(state, moved, fl.gradient(_loss, moved, device.move(X), device.move(Y))[0])
    assert type(fl.state(moved)["layers"]["0"]["weight"]) is np.ndarray  # on the host
    fl.save(tmp_path / "m.safetensors", moved)
    fresh = device.move_tree(copy.deepcopy(model))
    fl.loadmodel(fresh, fl.load(tmp_path / "m.safetensors"))
    _same(fresh, fl.cpu(moved), device)
    fl.save_checkpoint(tmp_path / "c.safetensors", moved, state, step=1)
    again, again_state = device.move_tree(copy.deepcopy(model)), fl.setup(fl.Adam(0.01), fresh)
    fl.load_checkpoint(tmp_path / "c.safetensors", again, again_state)
    _same(again, fl.cpu(moved), device)
    moments = [a for a in fl.leaves(again_state) if hasattr(a, "shape") and a.ndim]
    assert moments and all(device.holds(a) for a in moments)
    want = [a for a in fl.leaves(state) if hasattr(a, "shape") and a.ndim]
    for a, b in zip(moments, want, strict=True):
        np.testing.assert_array_equal(device.host(a), device.host(b))
