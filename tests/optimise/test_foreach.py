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


def _changes(model, state, step):
    """What a training loop may do to a model and its state between updates, one kind every
    other step (an update between them keeps its plan): each must be seen by the next
    update, whose grouping plan was made before it."""
    change = step // 2 if step % 2 == 0 else None
    if change == 1:
        model["w"] = model["w"] + 1.0  # an array replaced (the state's Leaf kept)
    if change == 2:
        state["b32"].state.m[...] = 0.0  # a state array written in place
    if change == 3:  # a new state in the same Leaf (a loaded one: the same numbers)
        old = state["w"].state
        state["w"].state = type(old)(old.m.copy(), old.v.copy(), old.t.copy())
    if change == 5:
        state["b"].state.t[...] = 0  # a step count reset in place: the counts now differ
    if change == 6:
        fl.adjust(state, 0.05)  # a new rule in every Leaf
    if change == 7:
        state["scalar"] = fl.setup(fl.Adam(0.05), {"s": model["scalar"]})["s"]  # a new Leaf
    if change == 8:
        model["w32"] = model["w32"].astype(np.float64)  # replaced by one of another dtype
    if change == 9:
        fl.freeze(state["b"])  # a part frozen
    if change == 10:
        fl.thaw(state["b"])
    if change == 11:
        model["b"].shape = (2, 2)  # reshaped in place (its state no longer fits)


def _steps(plan_kept, steps=24):
    rng = np.random.default_rng(3)
    model = {"w": rng.standard_normal((3, 4)), "b": rng.standard_normal(4),
             "scalar": np.array(0.7), "w32": rng.standard_normal((2, 3)).astype(np.float32),
             "b32": rng.standard_normal(5).astype(np.float32)}
    state = fl.setup(fl.Adam(0.1), model)
    made = []
    of = foreach._Plan.of

    def plan_of(items):
        plan = of(items) if plan_kept else foreach._Plan(items)
        made.append(plan)
        return plan

    foreach._Plan.of = staticmethod(plan_of)
    try:
        for step in range(steps):
            _changes(model, state, step)
            grads = {k: rng.standard_normal(np.shape(v)).astype(v.dtype)
                     for k, v in model.items()}
            if step == 8:  # (change 4) a gradient of another dtype than its array
                grads["b32"] = grads["b32"].astype(np.float64)
            try:
                fl.update(state, model, grads)
            except ValueError as err:
                return model, state, made, str(err)
    finally:
        foreach._Plan.of = staticmethod(of)
    return model, state, made, None


def test_a_kept_grouping_plan_gives_the_numbers_of_grouping_anew_after_each_change():
    """update keeps its grouping of the arrays (foreach._Plan) between steps: after each
    change a loop may make (an array replaced or of another dtype, a part frozen and thawed,
    a rule adjusted, a state array written, a Leaf replaced, an array reshaped in place) the
    numbers are those of grouping anew at every step, bit for bit."""
    model, state, made, error = _steps(plan_kept=True)
    model1, state1, _, error1 = _steps(plan_kept=False)
    assert error == error1 and "shape" in error  # the reshaped array's state: refused
    got, want = fl.leaves((model, state)), fl.leaves((model1, state1))
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert np.asarray(a).dtype == np.asarray(b).dtype
        np.testing.assert_array_equal(a, b)
    # the plan was kept where nothing changed (before the first change, and between two)
    assert made[1] is made[0] and made[2] is not made[1] and made[3] is made[2]


def test_a_changed_small_makes_a_new_plan():
    model = {"w": np.ones((2, 3)), "b": np.ones(3)}
    state = fl.setup(fl.Adam(0.1), model)
    grads = {"w": np.ones((2, 3)), "b": np.ones(3)}
    fl.update(state, model, grads)
    assert len(state["w"]._together.groups) == 1
    saved, foreach.SMALL = foreach.SMALL, 0
    try:
        fl.update(state, model, grads)
        assert not state["w"]._together.groups  # every array stepped alone now
    finally:
        foreach.SMALL = saved


def test_a_kept_plan_steps_the_array_the_model_holds_now():
    model = {"w": np.ones((2, 3)), "b": np.ones(3)}
    state = fl.setup(fl.Adam(0.1), model)
    grads = {"w": np.ones((2, 3)), "b": np.ones(3)}
    fl.update(state, model, grads)
    fl.update(state, model, grads)
    old = model["w"]
    before = old.copy()
    model["w"] = np.zeros((2, 3))
    fl.update(state, model, grads)
    np.testing.assert_array_equal(old, before)  # the replaced array is left alone
    assert np.all(model["w"] < 0)  # the new one is stepped


def test_a_copied_state_starts_without_the_plan():
    """The plan holds the Leafs and the model's arrays: a copy or pickle of the state must
    not carry copies of the model's arrays along."""
    model = {"w": np.ones((2, 3)), "b": np.ones(3)}
    state = fl.setup(fl.Adam(0.1), model)
    fl.update(state, model, {"w": np.ones((2, 3)), "b": np.ones(3)})
    assert state["w"]._together is not None
    assert copy.deepcopy(state)["w"]._together is None
    assert copy.copy(state["w"])._together is state["w"]._together  # (shallow: shared)


def test_arrays_made_views_of_one_another_after_setup_are_refused():
    """Two arrays sharing memory (a view made after setup, which setup refuses) were each
    stepped, their shared entries twice, in an order no contract names: the kept plan
    sorted the arrays stepped alone into the model's order, where grouping anew steps those
    no group may take (``b``: SMALL entries or more) before the groups of one (``a``), and
    42 of 50 random cases came out a rounding apart. Now refused, nothing stepped; views of
    one buffer that share no entry (every other entry) still train."""
    rng = np.random.default_rng(1)
    model = {"a": np.zeros(3), "b": rng.standard_normal((70, 60)),
             "c": np.zeros(4, np.float32)}
    state = fl.setup(fl.Descent(0.37), model)
    grads = {"a": np.ones(3), "b": np.ones((70, 60)), "c": np.ones(4, np.float32)}
    fl.update(state, model, grads)
    model["a"] = model["b"][0, :3]
    before = [a.copy() for a in fl.leaves(model)]
    with pytest.raises(ValueError, match=r"model\['a'\] and model\['b'\] are views of the "
                                         r"same memory but not the same array"):
        fl.update(state, model, grads)
    for a, b in zip(before, fl.leaves(model), strict=True):
        np.testing.assert_array_equal(a, b)
    flat = np.zeros(8)
    halves = {"even": flat[::2], "odd": flat[1::2], "w": np.zeros(3)}  # (ranges overlap)
    state = fl.setup(fl.Adam(0.1), halves)
    fl.update(state, halves, {"even": np.ones(4), "odd": -np.ones(4), "w": np.ones(3)})
    np.testing.assert_allclose(flat, np.tile([-0.1, 0.1], 4))
    halves["w"] = flat[2:5]  # (the arrays found apart at the last step: noted, looked at again)
    with pytest.raises(ValueError, match=r"model\['even'\] and model\['w'\] are views"):
        fl.update(state, halves, {"even": np.ones(4), "odd": -np.ones(4), "w": np.ones(3)})


def test_a_rule_no_longer_elementwise_makes_a_new_plan():
    """The kept plan went on stepping a group of a rule that no longer says it is
    elementwise (its class or instance changed): grouping anew steps its arrays alone."""

    class ByNorm(fl.Descent):  # not elementwise: the step divides by the array's norm
        elementwise = True

        def apply(self, state, x, dx, out=None):
            return state, self.eta * dx / np.linalg.norm(dx)

    model = {"w": np.ones(3), "b": np.ones(2)}
    rule = ByNorm(1.0)
    state = fl.setup(rule, model)
    grads = {"w": np.full(3, 2.0), "b": np.full(2, 2.0)}
    fl.update(state, model, grads)  # stepped as one array of 5 entries
    np.testing.assert_allclose(model["w"], 1 - 2 / np.sqrt(20))
    rule.elementwise = False
    fl.update(state, model, grads)
    np.testing.assert_allclose(model["w"], 1 - 2 / np.sqrt(20) - 2 / np.sqrt(12))
    np.testing.assert_allclose(model["b"], 1 - 2 / np.sqrt(20) - 2 / np.sqrt(8))
