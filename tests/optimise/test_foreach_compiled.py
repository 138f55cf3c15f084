"""update's grouped path under fl.compile (optimise/foreach.py): the arrays of a rule that
counts a vector of step counts (the Adam family) share one computation of the counts'
scalar arithmetic, each array keeping its own counter. The compiled step must give the
numbers of stepping each array alone (compiled and eager), when the arrays' counts differ,
with frozen leaves, several rules in one state, and rules that are not grouped."""

import copy
import dataclasses

import numpy as np
import pytest

import fluxml as fl
from fluxml.optimise import foreach

COUNTED = [fl.Adam(0.01), fl.AdamW(0.01, lambd=0.1), fl.NAdam(0.01), fl.AdaMax(0.01),
           fl.OAdam(0.01), fl.AdaBelief(0.01), fl.RAdam(0.01, (0.9, 0.8))]


def _alone(rule):
    """The same rule, stepped one array at a time under fl.compile too."""
    cls = type(type(rule).__name__, (type(rule),), {"counts_vector": False})
    return cls(**{f.name: getattr(rule, f.name) for f in dataclasses.fields(rule)})


def _model(rng):
    return {"w": rng.standard_normal((3, 4)).astype(np.float32),
            "b": rng.standard_normal(4).astype(np.float32),
            "s": np.array(0.5, np.float32),  # 0-d
            "big": rng.standard_normal((70, 60)).astype(np.float32),  # grouped at any size
            "w64": rng.standard_normal((2, 2)),  # another dtype: a group of its own
            "b64": rng.standard_normal(2)}


def _loss(m, x):
    h = np.tanh(x @ m["w"] + m["b"] * m["s"])
    return np.sum(h**2) + np.sum(m["big"] ** 2) * 1e-3 + np.sum(np.sin(x[:2, :2] @ m["w64"])
                                                               + m["b64"])


def _step(model, state, x):
    loss, (g,) = fl.withgradient(lambda m: _loss(m, x), model)
    fl.update(state, model, g)
    return loss


def _counts(state):
    return {k: int(leaf.state.t) for k, leaf in state.items()
            if hasattr(leaf.state, "t")}


def _run(rule, compiled, steps=3, prepare=None, backend="numpy"):
    rng = np.random.default_rng(0)
    model = _model(rng)
    state = fl.setup(rule, model)
    if prepare is not None:
        prepare(state, model)
    xs = [rng.standard_normal((5, 3)).astype(np.float32) for _ in range(steps)]
    step = fl.compile(_step, backend=backend, background=False) if compiled else _step
    saved, foreach.SMALL = foreach.SMALL, 0  # eagerly: one array at a time
    try:
        for x in xs:
            step(model, state, x)
    finally:
        foreach.SMALL = saved
    return model, state, step


def _compare(got, want, exact):
    for a, b in zip(fl.leaves(got), fl.leaves(want)):
        a, b = np.asarray(a), np.asarray(b)
        assert a.dtype == b.dtype
        if exact:
            np.testing.assert_array_equal(a, b)
        else:
            tol = 1e-5 if a.dtype == np.float32 else 1e-12
            np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


def _powers(step):
    """How many powers ``b ** t`` of an integer step count the compiled program computes."""
    return sum(e.name == "power" and getattr(e.inputs[1], "dtype", None) == np.int64
               for e in step.ir.eqns)


@pytest.mark.parametrize("rule", COUNTED, ids=lambda r: type(r).__name__)
def test_grouped_compiled_steps_give_the_numbers_of_one_array_at_a_time(rule):
    model, state, step = _run(rule, compiled=True)
    model1, state1, step1 = _run(_alone(rule), compiled=True)
    model2, state2, _ = _run(copy.deepcopy(rule), compiled=False)
    _compare((model, state), (model1, state1), exact=True)
    _compare((model, state), (model2, state2), exact=False)
    assert _counts(state) == _counts(state2)
    assert _powers(step) < _powers(step1)  # the counts' arithmetic shared by the arrays


def _uneven(state, model):
    """Counts that differ between arrays (as after freeze/thaw or a partly loaded state)."""
    for k, n in zip(state, (0, 3, 7, 1, 2, 5)):
        state[k].state.t[...] = n
    fl.freeze(state["b64"])


@pytest.mark.parametrize("backend", ["numpy", "xla"])
@pytest.mark.parametrize("rule", [fl.Adam(0.01), fl.RAdam(0.01)], ids=lambda r: type(r).__name__)
def test_counts_that_differ_and_frozen_leaves(backend, rule):
    """(RAdam's arrays, counting from 0 to 7, take both of its branches in one step.)"""
    if backend == "xla":
        pytest.importorskip("jax")
    model, state, _ = _run(rule, compiled=True, prepare=_uneven, backend=backend)
    model1, state1, _ = _run(_alone(rule), compiled=True, prepare=_uneven, backend=backend)
    model2, state2, _ = _run(copy.deepcopy(rule), compiled=False, prepare=_uneven)
    _compare((model, state), (model1, state1), exact=backend == "numpy")
    _compare((model, state), (model2, state2), exact=False)
    assert _counts(state) == {"w": 3, "b": 6, "s": 10, "big": 4, "w64": 5, "b64": 5}
    assert _counts(state2) == _counts(state)
    b64 = _model(np.random.default_rng(0))["b64"]
    np.testing.assert_array_equal(model["b64"], b64)  # frozen: untouched
    assert not state["b64"].state.m.any()


def _mixed(state, model):
    """Several rules in one state: Adam, AdamW, an Adam of another learning rate, Momentum
    and ClipGrad (no step counts: stepped alone)."""
    state["b"].rule = fl.AdamW(0.01, lambd=0.1)
    state["s"].rule = fl.AdamW(0.01, lambd=0.1)
    state["w64"].rule = fl.Adam(0.02)
    state["big"] = fl.setup(fl.Momentum(0.01), {"big": model["big"]})["big"]
    state["b64"] = fl.setup(fl.ClipGrad(0.5), {"b64": model["b64"]})["b64"]


def test_several_rules_in_one_state():
    model, state, _ = _run(fl.Adam(0.01), compiled=True, prepare=_mixed)
    model2, state2, _ = _run(fl.Adam(0.01), compiled=False, prepare=_mixed)
    _compare((model, state), (model2, state2), exact=False)
    assert _counts(state) == _counts(state2) == {"w": 3, "b": 3, "s": 3, "w64": 3}


def test_rules_that_do_not_count_a_vector_are_stepped_alone():
    """A chain's state is a tuple of states (not grouped); ClipNorm (its norm spans the array)
    and the rules without counts do not count a vector."""
    assert not fl.ClipNorm.counts_vector
    assert not fl.Momentum.counts_vector and not fl.OptimiserChain.counts_vector
    model, state, step = _run(fl.OptimiserChain(fl.ClipGrad(1.0), fl.Adam(0.01)),
                              compiled=True)
    model2, state2, _ = _run(fl.OptimiserChain(fl.ClipGrad(1.0), fl.Adam(0.01)),
                             compiled=False)
    _compare((model, state), (model2, state2), exact=False)
    assert _powers(step) == 2 * len(state)  # each array's own bias corrections
