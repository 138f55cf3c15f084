"""Traced numbers (``fluxml.compiler.numbers``): the numbers of the fields a class lists in
``hyperparameters`` are inputs of a compiled program, so new values reuse the trace; every
other number is specialised on, as before; ``switches`` are constants at 0."""

import inspect
import re

import numpy as np
import pytest

import fluxml as fl


class Scale:
    """A user's object with two traced fields (one a tuple), a switch and a static number."""

    hyperparameters = ("factor", "bounds", "shift")
    switches = ("shift",)

    def __init__(self, factor, bounds=(-1.0, 1.0), shift=0.0, power=2):
        self.factor, self.bounds, self.shift, self.power = factor, bounds, shift, power


def scaled(s, x):
    y = np.clip(x * s.factor, s.bounds[0], s.bounds[1]) ** s.power
    if type(s.shift) is not float or s.shift != 0:  # (a switch: a constant 0.0, or traced)
        y = y + s.shift
    return y


def eager(s, x):
    return scaled(s, x)


@pytest.mark.parametrize("backend", ["numpy", "xla"])
def test_new_values_of_declared_numbers_reuse_the_trace(backend):
    if backend == "xla":
        pytest.importorskip("jax")
    f = fl.compile(scaled, backend=backend, background=False)
    x = np.linspace(-2, 2, 7)
    s = Scale(0.5)
    for factor, bounds in [(0.5, (-1.0, 1.0)), (2.0, (-0.5, 3.0)), (0.25, (0.0, 1.0))]:
        s.factor, s.bounds = factor, bounds
        np.testing.assert_allclose(f(s, x), eager(s, x), rtol=1e-15)
    assert f.traces == 1
    # a number of another type is another program (an int stays an int, a NumPy float64
    # is strong in NumPy's promotion), traced once
    for factor in (2, np.float64(0.25), 3, np.float64(0.75)):
        s.factor = factor
        np.testing.assert_allclose(f(s, x), eager(s, x), rtol=1e-15)
    assert f.traces == 3
    s.power = 3  # not declared: specialised on, a new value traces again
    np.testing.assert_allclose(f(s, x), eager(s, x), rtol=1e-15)
    assert f.traces == 4


def test_a_switch_is_a_constant_at_zero_and_an_input_otherwise():
    f = fl.compile(scaled)
    x = np.linspace(-2, 2, 7)
    s = Scale(0.5)
    for shift in [0.0, 0.3, 0.7, 0.0, 0.3]:
        s.shift = shift
        np.testing.assert_allclose(f(s, x), eager(s, x), rtol=1e-15)
    assert f.traces == 2  # each reused when its kind of value comes back
    headers = [e.source.split("\n", 1)[0] for e in f.cache.values()]
    assert sorted("s_shift" in h for h in headers) == [False, True]


def test_one_object_reached_twice_is_one_input_per_number():
    f = fl.compile(lambda a, b, x: scaled(a, x) + scaled(b, x))
    x = np.linspace(-2, 2, 5)
    s, t = Scale(0.5), Scale(0.5)
    f(s, s, x)
    assert len(f.ir.inputs) == 3 + 1  # factor, bounds[0], bounds[1]; x
    # two objects now, whose numbers are the same objects (Python's constants): one input
    # each still serves
    np.testing.assert_allclose(f(s, t, x), 2 * eager(s, x))
    t.factor = 0.25  # not any more: traced again, with inputs of its own
    np.testing.assert_allclose(f(s, t, x), eager(s, x) + eager(t, x))
    assert len(f.ir.inputs) == 6 + 1 and f.traces == 2
    s.factor, t.factor = 0.75, 1.5
    np.testing.assert_allclose(f(s, t, x), eager(s, x) + eager(t, x))
    assert f.traces == 2


def test_traced_numbers_are_weak_inputs_and_cannot_be_written():
    """Inside the trace a declared Python float is a weak 0-d float64 value (a Python float
    at run time: ``x32 * k`` stays float32, as eagerly; before, it was a strong float64 and
    gave float64), a NumPy float64 a strong one; writing one back is refused with the
    path."""
    s = Scale(0.5)
    f = fl.compile(lambda s, x: x * s.factor)
    assert f(s, np.ones(2, np.float32)).dtype == np.float32
    assert f.ir.inputs[0].dtype == np.float64 and f.ir.inputs[0].shape == ()
    # (factor, the two bounds, x)
    assert f.ir.inputs[0].weak and str(f.ir).startswith(
        "{ lambda v1:float v2:float v3:float v4:f32[2] .\n    v5:f32[2] = multiply v4 v1")
    s.factor = np.float64(0.5)
    assert f(s, np.ones(2, np.float32)).dtype == np.float64
    assert not f.ir.inputs[0].weak and str(f.ir).startswith("{ lambda v1:f64[] v2:float ")

    def grow(s, x):
        s.factor = s.factor * 2
        return x

    with pytest.raises(fl.CompileError, match=re.escape("argument 0.factor")):
        fl.compile(grow)(s, np.ones(2))


def test_an_optimiser_step_on_cupy_takes_its_hyperparameters_as_inputs():
    """The cupy back end's generated source (without a GPU): the learning rate and Adam's
    other hyperparameters are parameters of the step, passed to its fused kernels, not
    literals; a new learning rate does not trace again."""
    model = {"w": np.ones((3, 2), np.float32)}
    state = fl.setup(fl.Adam(0.01), model)
    x = np.ones((4, 3), np.float32)

    def step(model, state, x):
        loss, (g,) = fl.withgradient(lambda m: np.sum(np.tanh(x @ m["w"])), model)
        fl.update(state, model, g)
        return loss

    f = fl.compile(step, backend="cupy")
    for lr in (0.01, 0.005):
        fl.adjust(state, lr)
        try:
            f(model, state, x)
        except fl.CompileError as err:  # no CuPy here: the source is generated, not run
            assert "needs CuPy" in str(err)
    assert f.traces == 1
    source = f.source
    header = source.split("\n", 1)[0]
    for name in ("eta", "beta_0", "beta_1", "epsilon"):
        assert f"state_w_rule_{name}" in header
    assert "0.01" not in source and "0.999" not in source
    assert re.search(r"k\d+\(.*state_w_rule_eta", source) or "state_w_rule_eta" in source


def test_the_guards_fast_check_pairs_arrays_with_the_last_calls_arrays():
    """The guard's shortcut (the arrays of the last call passed again) compares each array
    with the last call's array at its own input position, never with a traced number's
    (which would fail the shortcut on every call and redo the full checks)."""
    model = {"w": np.ones(3), "b": np.ones(2)}
    state = fl.setup(fl.Momentum(0.1), model)
    f = fl.compile(lambda m, s, g: fl.update(s, m, g) and None)
    grads = {"w": np.ones(3), "b": np.ones(2)}
    f(model, state, grads)
    entry = f.last
    assert len(entry.numbers) == 2  # eta and rho, shared by both Leafs
    source = inspect.getsource(entry.extract)
    pairs = re.findall(r"\b(x\d+) is q(\d+)\b", source)
    assert len(pairs) == len(entry.positions) - 2
    assert not {int(k) for _, k in pairs} & set(entry.numbers)


def test_xla_takes_the_numbers_as_one_vector_copied_when_they_change(monkeypatch):
    """On the xla back end the traced numbers cross as one float64 vector: made again only
    when a value changes (a new learning rate), not on every call; the steps match eager's."""
    jax = pytest.importorskip("jax")
    from fluxml.compiler import xla_runtime

    def step(model, state, x):
        loss, (g,) = fl.withgradient(lambda m: np.sum(np.tanh(x @ m["w"])), model)
        fl.update(state, model, g)
        return loss

    x = np.linspace(-1, 1, 12).reshape(4, 3)
    model, ref = {"w": np.ones((3, 2))}, {"w": np.ones((3, 2))}
    state, ref_state = fl.setup(fl.Adam(0.01), model), fl.setup(fl.Adam(0.01), ref)
    f = fl.compile(step, backend="xla", background=False)
    made = []
    put = jax.device_put
    monkeypatch.setattr(xla_runtime.jax, "device_put", lambda *a, **k: made.append(a) or
                        put(*a, **k))
    for lr in (0.01, 0.01, 0.01, 0.005, 0.005, -0.0, 0.0):
        fl.adjust(state, lr)
        fl.adjust(ref_state, lr)
        f(model, state, x)
        step(ref, ref_state, x)
        np.testing.assert_allclose(model["w"], ref["w"], rtol=1e-9)  # (XLA sums in its order)
    assert f.traces == 1
    assert len(made) == 4  # the first call, 0.005, -0.0 and 0.0 (told apart by their bits)
    assert made[-2][0].tolist()[0] == 0.0 and np.signbit(made[-2][0][0])


@pytest.mark.parametrize("call", ["adjust", "freeze", "thaw"])
def test_changing_an_argument_state_inside_is_refused_by_name(call):
    """fl.adjust inside a compiled step failed with the generic "bool(x) needs a concrete
    value" (from a dataclass check of a traced hyperparameter), fl.freeze with "changed the
    structure of its arguments": the call is named, and where to make it instead."""
    model = {"w": np.ones(3)}
    state = fl.setup(fl.Adam(0.1), model)

    @fl.compile
    def step(m, s):
        getattr(fl, call)(s["w"], *([0.01] if call == "adjust" else []))
        g, = fl.gradient(lambda m: np.sum(m["w"] ** 2), m)
        fl.update(s, m, g)

    with pytest.raises(fl.CompileError, match=rf"fl.compile: fl.{call} was called inside the "
                                              rf"compiled function on an optimiser state that "
                                              rf"is one of its arguments.*Call fl.{call} "
                                              rf"outside the compiled step, between calls"):
        step(model, state)
    assert np.all(model["w"] == 1) and state["w"].rule.eta == 0.1 and not state["w"].frozen

    @fl.compile
    def branch(s, x):  # in an fl.cond branch, which has a trace of its own
        return fl.cond(np.sum(x) > 0, lambda x: getattr(fl, call)(s) or x, lambda x: x, x)

    with pytest.raises(fl.CompileError, match=rf"fl.{call} was called inside the compiled"):
        branch(state, np.ones(2))


def test_a_state_made_inside_may_still_be_changed_there():
    def inner(w):
        m = {"w": w}
        s = fl.setup(fl.Adam(0.1), m)
        fl.adjust(s, eta=0.5)
        fl.freeze(s)
        fl.thaw(s)
        for _ in range(2):
            g, = fl.gradient(lambda m: np.sum(m["w"] ** 2), m)
            fl.update(s, m, g)
        return m["w"] * 1

    np.testing.assert_allclose(fl.compile(inner)(np.ones(3)), inner(np.ones(3)), rtol=1e-12)


def test_a_zero_and_a_negative_zero_are_two_signatures():
    # 0.0 == -0.0 (and they hash alike), so a program traced for one ran for the other:
    # x * np.copysign(1.0, s) gave x for s = -0.0 (found by review)
    f = fl.compile(lambda x, s: x * np.copysign(1.0, s))
    x = np.ones(3)
    np.testing.assert_array_equal(f(x, 0.0), x)
    np.testing.assert_array_equal(f(x, -0.0), -x)
    np.testing.assert_array_equal(f(x, np.float64(-0.0)), -x)
    np.testing.assert_array_equal(f(x, 0.0), x)
