"""update's multi-tensor path (optimise/foreach.py): small arrays of an elementwise rule are
stepped together, with exactly the numbers of stepping each alone, for every rule marked
elementwise; over several steps with None gradients, frozen leaves, mixed dtypes, shapes and
layouts; state arrays stay separate (saving, loading and fl.compile see them as before)."""

import copy
import os
import tempfile

import numpy as np
import pytest

import fluxml as fl
from fluxml.optimise import foreach
from fluxml.optimise.base import Rule

ELEMENTWISE = [getattr(fl.optimise, name) for name in fl.optimise.__all__
               if isinstance(getattr(fl.optimise, name), type)
               and issubclass(getattr(fl.optimise, name), Rule)
               and getattr(fl.optimise, name).elementwise]


def _model(rng):
    return {
        "w": rng.standard_normal((3, 4)),
        "b": rng.standard_normal(4),
        "scalar": np.array(0.7),  # 0-d
        "fortran": np.asfortranarray(rng.standard_normal((4, 3))),
        "w32": rng.standard_normal((2, 3)).astype(np.float32),
        "b32": rng.standard_normal(5).astype(np.float32),
        "big": rng.standard_normal((70, 60)),  # >= SMALL entries: stepped alone
        "labels": np.arange(3),  # not trained
        "frozen": [rng.standard_normal(2), rng.standard_normal(2)],
    }


def _grads(rng, model, step):
    g = {k: rng.standard_normal(np.shape(v)).astype(np.asarray(v).dtype)
         for k, v in model.items() if k not in ("labels", "frozen")}
    g["w"] = np.ascontiguousarray(g["w"].T).T  # a transposed view, as x @ W.T gives
    g["labels"] = None
    g["frozen"] = [rng.standard_normal(2), rng.standard_normal(2)]
    if step == 1:
        g["b"] = None  # skipped: its step count falls behind the others'
    if step == 2:
        g["w32"] = None
        g["b32"] = g["b32"].astype(np.float64)  # another dtype than its array: stepped alone
    return g


def _run(rule, steps, together):
    rng = np.random.default_rng(0)
    model = _model(rng)
    state = fl.setup(rule, model)
    fl.freeze(state["frozen"][1])
    small = foreach.SMALL if together else 0  # 0: every array is stepped alone
    saved, foreach.SMALL = foreach.SMALL, small
    try:
        for step in range(steps):
            fl.update(state, model, _grads(rng, model, step))
    finally:
        foreach.SMALL = saved
    return model, state


@pytest.mark.parametrize("cls", ELEMENTWISE, ids=lambda c: c.__name__)
def test_the_same_numbers_as_one_array_at_a_time(cls):
    rule = cls()
    model, state = _run(rule, 5, together=True)
    model1, state1 = _run(rule, 5, together=False)
    got, want = fl.leaves((model, state)), fl.leaves((model1, state1))
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert np.asarray(a).dtype == np.asarray(b).dtype
        np.testing.assert_array_equal(a, b)
    assert hasattr(state["w"], "_flat")  # the group really was stepped together


def test_rules_not_elementwise_are_stepped_alone():
    assert not fl.ClipNorm.elementwise and not fl.OptimiserChain.elementwise
    model = {"a": np.ones(3), "b": np.ones(2)}
    state = fl.setup(fl.ClipNorm(1.0), model)
    fl.update(state, model, {"a": np.full(3, 5.0), "b": np.full(2, 5.0)})
    np.testing.assert_allclose(model["a"], 1 - 5 / np.sqrt(75))  # each array's own norm
    np.testing.assert_allclose(model["b"], 1 - 5 / np.sqrt(50))


def test_state_arrays_stay_separate_and_a_compiled_step_follows_eager_steps():
    """fl.compile refuses written arguments that share memory: the state arrays must stay
    arrays of their own after steps taken together."""
    rng = np.random.default_rng(1)
    model = fl.Chain(fl.Dense(2, 8, np.tanh), fl.Dense(8, 1))
    state = fl.setup(fl.Adam(0.01), model)
    x, y = rng.standard_normal((16, 2)).astype(np.float32), np.ones((16, 1), np.float32)

    def step(model, state, x, y):
        loss, (g,) = fl.withgradient(lambda m: fl.mse(m(x), y), model)
        fl.update(state, model, g)
        return loss

    for _ in range(2):
        step(model, state, x, y)
    arrays = [a for a in fl.leaves(state) if np.ndim(a) > 0]
    assert all(a.base is None for a in arrays)
    model2, state2 = copy.deepcopy(model), copy.deepcopy(state)
    compiled = fl.compile(step)
    for _ in range(2):
        np.testing.assert_allclose(compiled(model, state, x, y), step(model2, state2, x, y),
                                   rtol=1e-5)
    for a, b in zip(fl.leaves((model, state)), fl.leaves((model2, state2))):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_a_checkpoint_saved_and_loaded_between_steps_taken_together():
    rng = np.random.default_rng(2)
    model = {"w": rng.standard_normal((3, 2)), "b": rng.standard_normal(3)}
    state = fl.setup(fl.Adam(0.1), model)
    grads = [{"w": rng.standard_normal((3, 2)), "b": rng.standard_normal(3)} for _ in range(4)]
    for g in grads[:2]:
        fl.update(state, model, g)
    path = os.path.join(tempfile.mkdtemp(), "ckpt.safetensors")
    fl.save_checkpoint(path, model, state, step=2)
    model2 = {"w": np.zeros((3, 2)), "b": np.zeros(3)}
    state2 = fl.setup(fl.Adam(0.1), model2)
    fl.load_checkpoint(path, model2, state2)
    for g in grads[2:]:
        fl.update(state, model, g)
        fl.update(state2, model2, g)
    for a, b in zip(fl.leaves((model, state)), fl.leaves((model2, state2))):
        np.testing.assert_array_equal(a, b)


def test_adjust_keeps_leaves_that_shared_a_rule_sharing_one():
    model = {"a": np.ones(2), "b": np.ones(3)}
    state = fl.setup(fl.Adam(), model)
    fl.adjust(state, 0.01)
    assert state["a"].rule is state["b"].rule and state["a"].rule.eta == 0.01
