"""Device-resident state for the ``xla`` back end: trees of ``jax.Array``s (``fl.xla``) go to
the jitted program as they are, the arrays it writes are donated and the caller's leaves
rebound to the new ones. Training on such state equals training on NumPy state and eager
fluxml; donation never takes what the caller still holds through the tree or a result;
what cannot be rebound is refused by path.

Skipped without JAX (the optional ``xla`` extra).
"""

import collections
import copy
import dataclasses
import functools
import os
import subprocess
import sys
from typing import NamedTuple

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="the xla back end needs JAX: pip install 'fluxml[xla]'")

import fluxml as fl  # noqa: E402
from fluxml.compiler import CompileError  # noqa: E402
from fluxml.tree import flatten  # noqa: E402

Array = type(jax.numpy.zeros(()))


def _step(model, opt, x, y):
    loss, (g,) = fl.withgradient(lambda m: fl.mse(m(x), y), model)
    fl.update(opt, model, g)
    return loss


def _start(dtype):
    rng = np.random.default_rng(0)
    model = fl.fmap(lambda a: a.astype(dtype) if isinstance(a, np.ndarray) else a,
                    fl.Chain(fl.Dense(3, 6, np.tanh), fl.Dense(6, 2)))
    return model, rng.normal(size=(4, 3)).astype(dtype), rng.normal(size=(4, 2)).astype(dtype)


@functools.cache
def _trained(dtype, steps=3):
    """Losses and final leaves of ``steps`` steps: eager, compiled on NumPy state, compiled on
    device state (with the objects of the device run, to check what was rebound)."""
    model, x, y = _start(dtype)
    runs = {}
    for how in ("eager", "numpy", "device"):
        m = copy.deepcopy(model)
        opt = fl.setup(fl.Adam(0.01), m)
        step, xs, ys = _step, x, y
        if how != "eager":
            step = fl.compile(_step, backend="xla", background=False)
        if how == "device":
            m, opt, xs, ys = fl.xla((m, opt, x, y))
        first = (m.layers[0], m.layers[0].weight, opt.layers[0].weight)
        losses = [step(m, opt, xs, ys) for _ in range(steps)]
        runs[how] = losses, flatten(fl.cpu((m, opt)))[0], (m, opt, first, step)
    return runs


@pytest.mark.parametrize("dtype", [np.float64,
                                   pytest.param(np.float32, marks=pytest.mark.slow)])
def test_training_on_device_equals_numpy_state_and_eager(dtype):
    runs = _trained(dtype)
    tol = 1e-10 if dtype == np.float64 else 2e-5
    for how in ("numpy", "device"):
        losses, leaves, _ = runs[how]
        for a, b in zip(losses, runs["eager"][0]):
            np.testing.assert_allclose(np.asarray(a), b, rtol=tol, atol=tol)
        for a, b in zip(leaves, runs["eager"][1]):
            if isinstance(b, np.ndarray):
                assert a.dtype == b.dtype and a.shape == b.shape
                np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
    assert all(type(loss) is Array for loss in runs["device"][0])  # results stay on XLA
    assert runs["device"][2][3].traces == 1


def test_leaves_are_rebound_in_the_callers_objects():
    model, opt, (layer, weight, leaf), _ = _trained(np.float64)["device"][2]
    assert model.layers[0] is layer and opt.layers[0].weight is leaf  # the same objects...
    assert model.layers[0].weight is not weight  # ...holding new arrays
    assert type(model.layers[0].weight) is Array
    state = opt.layers[0].weight.state  # Adam's state, a namedtuple: rebuilt and reassigned
    assert type(state).__name__ == "AdamState" and all(type(s) is Array for s in state)
    assert int(state.t) == 3


def test_device_state_follows_its_rules_changed_in_place_or_replaced():
    """Device state (checked by the guard's fast tier, which skips the shape checks of the
    arrays the last call rebound) whose Leafs share one rule: a learning rate changed in
    place, an equal copy and a different one in one Leaf give eager's steps (the numbers
    are inputs; only which rules are shared is part of the signature)."""
    model, x, y = _start(np.float64)
    eager_model = copy.deepcopy(model)
    eager_opt = fl.setup(fl.Adam(0.01), eager_model)
    m, opt, xs, ys = fl.xla((model, fl.setup(fl.Adam(0.01), model), x, y))
    shared = opt.layers[0].weight.rule
    for holder in (opt.layers[0], opt.layers[1]):
        holder.weight.rule = holder.bias.rule = shared  # (fl.xla copies each Leaf's rule)
    step = fl.compile(_step, backend="xla")
    changes = [lambda o: None, lambda o: setattr(o.layers[0].weight.rule, "eta", 0.02),
               lambda o: setattr(o.layers[1].bias, "rule", fl.Adam(0.02)),
               lambda o: setattr(o.layers[1].bias, "rule", fl.Adam(0.05))]
    for change in changes:
        change(opt)
        change(eager_opt)
        for _ in range(2):
            np.testing.assert_allclose(float(step(m, opt, xs, ys)),
                                       _step(eager_model, eager_opt, x, y), rtol=1e-10)
    assert step.traces == 2  # the equal copy in one Leaf: a rule no longer shared
    for a, b in zip(flatten(fl.cpu(m))[0], flatten(eager_model)[0]):
        if isinstance(b, np.ndarray):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def _rebind_sum(state, x):
    state["w"] = state["w"] + x
    return np.sum(state["w"] * state["v"])


def test_guard_checks_rebound_leaves_replaced_tied_or_retyped():
    """The arrays a call rebinds are what the next call's checks expect: its own new arrays
    skip the shape and dtype checks; another array, the same array twice or another dtype
    still take the general path (the same program, a new one, or a refusal)."""
    state = fl.xla({"w": np.zeros(3), "v": np.ones(3)})
    x = fl.xla(np.ones(3))
    f = fl.compile(_rebind_sum, backend="xla", background=False)
    for _ in range(3):
        f(state, x)
    assert f.traces == 1 and np.allclose(np.asarray(state["w"]), 3)
    state["w"] = fl.xla(np.full(3, 10.0))  # another array of the same kind: the same program
    assert float(f(state, x)) == 33 and f.traces == 1
    state["v"] = state["w"]  # tied, and only w rebound (eagerly v keeps the old values)
    with pytest.raises(CompileError, match="also at"):
        f(state, x)
    state["v"] = fl.xla(np.ones(3))
    state["w"] = fl.xla(np.zeros(3, np.float32))  # another dtype: traced (and refused here)
    with pytest.raises(CompileError, match="dtype"):
        f(state, x)
    state["w"] = fl.xla(np.zeros(4))  # another shape
    with pytest.raises(ValueError):  # (the eager error: x has 3 entries)
        f(state, x)
    state["w"] = fl.xla(np.zeros(3))
    assert float(f(state, x)) == 3 and f.traces == 1  # back on the first program
    assert float(f(state, x)) == 6 and f.traces == 1


class _Counted(collections.namedtuple("_Counted", "w")):
    """A namedtuple with its own ``__new__``: the rebinder must rebuild it through it."""

    built = 0

    def __new__(cls, w):
        _Counted.built += 1
        return super().__new__(cls, w)


def _double_inside(state):
    state["t"].w[...] = state["t"].w * 2
    return np.sum(state["t"].w)


def test_a_namedtuple_with_its_own_new_is_rebuilt_through_it():
    state = {"t": _Counted(fl.xla(np.ones(2)))}
    f = fl.compile(_double_inside, backend="xla", background=False)
    f(state)
    before = _Counted.built
    f(state)  # (the fast path: its only new _Counted is the rebuilt one)
    assert type(state["t"]) is _Counted and _Counted.built == before + 1
    np.testing.assert_array_equal(np.asarray(state["t"].w), [4, 4])


N = 1 << 14  # elements: the size from which written arrays are donated


def _scale_in_place(state, x):
    state["w"] *= x
    state["n"] += 1
    return np.sum(state["w"]) + 0.0 * x[0]


def test_donated_arrays_are_the_old_ones_only():
    """Large arrays written are donated (deleted), small ones not (XLA would copy them);
    the data, the results of earlier calls and everything the tree holds after the call stay
    valid. ``donate=False`` keeps the old."""
    state = fl.xla({"w": np.ones(N), "n": np.zeros((), np.int64)})
    x = fl.xla(np.full(N, 2.0))
    step = fl.compile(_scale_in_place, backend="xla", background=False)
    old, count = state["w"], state["n"]
    first = step(state, x)
    second = step(state, x)
    assert old.is_deleted() and not count.is_deleted() and int(count) == 0
    assert not x.is_deleted() and float(first) == 2.0 * N and float(second) == 4.0 * N
    assert not any(a.is_deleted() for a in state.values())
    np.testing.assert_array_equal(state["w"], np.full(N, 4.0))
    assert int(state["n"]) == 2 and state["n"].dtype == np.int64

    keep = fl.compile(_scale_in_place, backend="xla", donate=False, background=False)
    held = state["w"]
    keep(state, x)
    np.testing.assert_array_equal(held, np.full(N, 4.0))
    np.testing.assert_array_equal(state["w"], np.full(N, 8.0))


def test_a_donated_array_passed_again_is_refused_by_path():
    """A reference kept from before a call whose program donated it, passed to a later call:
    a CompileError naming the argument (XLA's own error names only a buffer position)."""
    state = fl.xla({"w": np.ones(N), "n": np.zeros((), np.int64)})
    x = fl.xla(np.full(N, 2.0))
    step = fl.compile(_scale_in_place, backend="xla", background=False)
    old = state["w"]
    step(state, x)
    with pytest.raises(CompileError, match=r"argument 0\.w is a jax.Array that an earlier"):
        step({"w": old, "n": state["n"]}, x)
    with pytest.raises(CompileError, match="argument 1 is a jax.Array that an earlier"):
        step(state, old)
    step(state, x)  # the rebound tree still runs
    np.testing.assert_array_equal(state["w"], np.full(N, 4.0))


def test_a_returned_written_array_survives_the_next_call():
    def f(state):
        state["w"] *= 2.0
        return state["w"]

    compiled = fl.compile(f, backend="xla", background=False)
    state = fl.xla({"w": np.ones(N)})  # (large enough to be donated)
    first = compiled(state)
    second = compiled(state)
    np.testing.assert_array_equal(first, np.full(N, 2.0))
    np.testing.assert_array_equal(second, np.full(N, 4.0))
    np.testing.assert_array_equal(state["w"], np.full(N, 4.0))


def test_numpy_and_jax_leaves_mixed():
    """Model on XLA, optimiser state and data in NumPy: NumPy leaves written in place, JAX
    leaves rebound; equal to eager."""
    model, x, y = _start(np.float64)
    eager, eager_opt = copy.deepcopy(model), fl.setup(fl.Adam(0.01), model)
    eager_opt = fl.setup(fl.Adam(0.01), eager)
    opt = fl.setup(fl.Adam(0.01), model)
    m = fl.xla(model)
    moment = opt.layers[1].bias.state.m
    step = fl.compile(_step, backend="xla", background=False)
    for _ in range(2):
        np.testing.assert_allclose(np.asarray(step(m, opt, x, y)), _step(eager, eager_opt, x, y),
                                   rtol=1e-10)
    assert opt.layers[1].bias.state.m is moment  # written in place, as NumPy code does
    np.testing.assert_allclose(moment, eager_opt.layers[1].bias.state.m, rtol=1e-10)
    assert type(m.layers[1].bias) is Array
    np.testing.assert_allclose(m.layers[1].bias, eager.layers[1].bias, rtol=1e-10)


class Pair(NamedTuple):
    a: object
    b: object


@dataclasses.dataclass(frozen=True)
class Frozen:
    w: object


def test_tuples_and_frozen_objects_are_rebuilt_and_tied_arrays_stay_tied():
    def f(box):
        box["pair"].a[...] += 1.0
        box["frozen"].w[...] *= 3.0
        box["list"][0][...] -= 1.0
        return box["tied"] + 0.0

    compiled = fl.compile(f, backend="xla", background=False)
    w = np.ones(2)
    box = fl.xla({"pair": Pair(np.zeros(2), np.ones(2)), "frozen": Frozen(np.ones(2)),
                  "list": [w, w], "tied": w})
    frozen = box["frozen"]
    compiled(box)
    compiled(box)
    np.testing.assert_array_equal(box["pair"].a, [2.0, 2.0])
    assert type(box["pair"]) is Pair and type(box["pair"].b) is Array
    np.testing.assert_array_equal(box["frozen"].w, [9.0, 9.0])
    assert box["frozen"] is not frozen and type(box["frozen"]) is Frozen  # a new one
    assert box["list"][0] is box["list"][1] is box["tied"]  # one array, rebound everywhere
    np.testing.assert_array_equal(box["tied"], [-1.0, -1.0])


def test_what_cannot_be_rebound_is_refused_by_path():
    def f(x):
        x += 1.0
        return x * 1.0

    with pytest.raises(CompileError, match=r"argument 0, .*immutable"):
        fl.compile(f, backend="xla", background=False)(fl.xla(np.ones(2)))

    def g(pair, scale):
        pair[1][...] *= scale
        return scale

    with pytest.raises(CompileError, match=r"argument 0\.1\b"):
        fl.compile(g, backend="xla", background=False)(fl.xla((np.ones(2), np.ones(2))),
                                                       np.ones(()))
    with pytest.raises(CompileError, match=r"argument 1\.x\b"):
        fl.compile(lambda a, x: f(x), backend="xla", background=False)(0, x=fl.xla(np.ones(2)))
    with pytest.raises(CompileError, match=r"backend='numpy'.*jax\.Array"):
        fl.compile(lambda x: x * 2.0)(fl.xla(np.ones(2)))


def test_a_failed_run_time_check_leaves_device_state_as_it_was():
    """Labels out of range: the program's check refuses the call after XLA ran it. Programs
    with such checks donate nothing, so the caller's state is intact and unchanged."""
    def step(model, opt, x, y):
        loss, (g,) = fl.withgradient(lambda m: fl.logitcrossentropy(m(x), y), model)
        fl.update(opt, model, g)
        return loss

    model = fl.f64(fl.Dense(3, 4))
    m, opt = fl.xla((model, fl.setup(fl.Adam(0.1), model)))
    compiled = fl.compile(step, backend="xla", background=False)
    x = np.ones((2, 3))
    compiled(m, opt, x, np.array([0, 3]))
    before = [np.array(a) for a in flatten((m, opt))[0] if type(a) is Array]
    with pytest.raises(ValueError):
        compiled(m, opt, x, np.array([0, 4]))
    after = [np.array(a) for a in flatten((m, opt))[0] if type(a) is Array]
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)


def test_xla_and_cpu_move_trees():
    w = np.arange(4.0).reshape(2, 2)
    tree = {"w": w, "tied": w, "i": np.arange(3), "n": 2.5, "name": "x"}
    moved = fl.xla(tree)
    assert type(moved["w"]) is Array and moved["w"] is moved["tied"]
    assert moved["w"].dtype == np.float64 and moved["i"].dtype == np.int64
    assert moved["n"] == 2.5 and moved["name"] == "x"
    assert fl.xla(moved) is moved  # already there
    back = fl.cpu(moved)
    assert type(back["w"]) is np.ndarray and back["w"].flags.writeable
    np.testing.assert_array_equal(back["w"], w)
    assert fl.backend.device_of(moved["w"]) == str(jax.devices()[0])


def test_a_model_on_device_compiled_directly_and_state_by_keyword():
    model = fl.f64(fl.Dense(3, 2, np.tanh))
    x = np.linspace(-1, 1, 6).reshape(2, 3)
    device = fl.xla(model)
    predict = fl.compile(device, backend="xla", background=False)
    got = predict(x)
    assert type(got) is Array
    np.testing.assert_allclose(got, np.tanh(x @ model.weight.T + model.bias), rtol=1e-12)

    def scale(x, *, model):  # an object passed by keyword: its attributes are rebound
        model.weight *= 2.0
        return x

    fl.compile(scale, backend="xla", background=False)(x, model=device)
    np.testing.assert_allclose(device.weight, 2 * model.weight, rtol=1e-12)



_ON_DEVICE_1 = """
import gc
import numpy as np, fluxml as fl, jax
from jax import monitoring
from fluxml.compiler import xla_runtime

def step(model, state, x):
    loss, (g,) = fl.withgradient(lambda m: np.sum(np.tanh(x @ m["w"]) ** 2), model)
    fl.update(state, model, g)
    return loss

d = jax.devices()[1]
model = fl.xla({"w": np.ones((3, 2))}, d)
state = fl.xla(fl.setup(fl.Momentum(0.01, 0.9), {"w": np.ones((3, 2))}), d)
x = fl.xla(np.linspace(-1, 1, 12).reshape(4, 3), d)
f = fl.compile(step, backend="xla")
f(model, state, x)
f.wait()
compiles = []
monitoring.register_event_duration_secs_listener(
    lambda event, seconds, **kw: compiles.append(event) if "backend_compile" in event else None)
f(model, state, x)
numbers, = [n for n in gc.get_objects() if type(n) is xla_runtime._Numbers]
print(f.tier, len(compiles), numbers.last[1].devices() == {d} == model["w"].devices())
"""


def test_traced_numbers_go_to_the_device_of_the_state():
    """With state committed to another device than JAX's default, the numbers' vector is
    placed there (else JAX copies it across on every call), and the background compile
    prepared that placement (no compile after the switch)."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    done = subprocess.run([sys.executable, "-c", _ON_DEVICE_1], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["xla", "0", "True"]


def test_an_eager_gradient_casts_device_arrays():
    # astype's rule passed order= on, which a JAX array's astype does not take (TypeError)
    w = fl.xla({"w": np.ones(3)})["w"]
    g, = fl.gradient(lambda w: np.sum(w.astype(np.float32) ** 2), w)
    np.testing.assert_array_equal(np.asarray(g), [2.0, 2.0, 2.0])


def test_a_returned_model_on_the_device_keeps_a_tied_weight():
    # `state, model = step(model, state, x)` on jax.Arrays: the results were copied apart
    # (each output of the tied weight its own array), so from the second call the model held
    # two arrays and trained them apart (0.06 off eager after 5 steps, silently)
    def step(model, opt, x):
        _, (g,) = fl.withgradient(lambda m: np.sum(m(x) ** 2), model)
        opt, model = fl.update(opt, model, g)
        return opt, model

    model = fl.f64(fl.Chain(fl.Dense(3, 3, np.tanh), fl.Dense(3, 3)))
    model.layers[1].weight = model.layers[0].weight
    eager, eager_opt = copy.deepcopy(model), fl.setup(fl.Adam(0.01), model)
    eager_opt = fl.setup(fl.Adam(0.01), eager)
    opt = fl.xla(fl.setup(fl.Adam(0.01), model))
    m = fl.xla(model)
    compiled = fl.compile(step, backend="xla", background=False)
    for x in np.random.default_rng(0).standard_normal((5, 4, 3)):
        opt, m = compiled(m, opt, x)
        assert m.layers[0].weight is m.layers[1].weight
        step(eager, eager_opt, x)
    for a, b in zip(fl.leaves(m), fl.leaves(eager)):
        np.testing.assert_allclose(np.asarray(a), b, rtol=1e-12, atol=1e-14)


def test_setup_of_a_model_on_the_device_and_an_eager_update_of_it():
    # setup gave None for a model of jax.Arrays (not seen as arrays to train), and an eager
    # update with that None returned the model untrained, silently
    model = fl.f64(fl.Chain(fl.Dense(3, 2)))
    m = fl.xla(model)
    state = fl.setup(fl.Adam(0.01), m)
    want = fl.setup(fl.Adam(0.01), model)
    assert isinstance(state.layers[0].weight.state.m, Array)
    for a, b in zip(fl.leaves(state), fl.leaves(want)):
        np.testing.assert_array_equal(np.asarray(a), b)
    x = np.ones((4, 3))
    step = fl.compile(_step, backend="xla", background=False)
    step(m, state, x, np.zeros((4, 2)))
    _step(model, want, x, np.zeros((4, 2)))
    np.testing.assert_allclose(np.asarray(m.layers[0].weight), model.layers[0].weight,
                               rtol=1e-12)
    g = fl.gradient(lambda q: np.sum(q(x)), model)[0]
    for opt in (None, state):
        with pytest.raises(TypeError, match="jax.Array|state is None"):
            fl.update(opt, m, g)
