"""The tiered start of the ``xla`` back end (``compiler/tiered.py``): while XLA compiles a new
signature in a background thread, calls run the NumPy back end's code of the same program;
then XLA's takes over. Both tiers give eager fluxml's values and write the caller's arrays in
place, so a training run stays on eager's trajectory across the switch; the switch is held
(``tiered.held``) so that each test decides when it comes.

Skipped without JAX (the optional ``xla`` extra).
"""

import copy
import threading
import warnings

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="the xla back end needs JAX: pip install 'fluxml[xla]'")

import fluxml as fl  # noqa: E402
from fluxml.compiler import CompileError, tiered, xla_backend  # noqa: E402
from fluxml.tree import flatten  # noqa: E402


def _step(model, opt, x, y):
    loss, (g,) = fl.withgradient(lambda m: fl.mse(m(x), y), model)
    fl.update(opt, model, g)
    return loss


def _start():
    rng = np.random.default_rng(0)
    model = fl.f64(fl.Chain(fl.Dense(3, 6, np.tanh), fl.Dense(6, 2)))
    return model, fl.setup(fl.Adam(0.01), model), rng.normal(size=(4, 3)), \
        rng.normal(size=(4, 2))


def _close(a, b):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-10, atol=1e-12)


def test_training_stays_on_eagers_trajectory_across_the_switch():
    model, opt, x, y = _start()
    eager_model, eager_opt = copy.deepcopy(model), copy.deepcopy(opt)
    arrays = flatten((model, opt))[0]  # the caller's arrays: written in place by both tiers
    step = fl.compile(_step, backend="xla")
    tiers, losses = [], []
    with tiered.held():
        for _ in range(2):
            losses.append(step(model, opt, x, y))
            tiers.append(step.tier)
        assert step.last.pending.ready.wait(60)  # XLA is ready, but held back
        losses.append(step(model, opt, x, y))
        tiers.append(step.tier)
    step.wait()
    for _ in range(2):
        losses.append(step(model, opt, x, y))
        tiers.append(step.tier)
    assert tiers == ["numpy"] * 3 + ["xla"] * 2
    assert step.traces == 1
    for loss in losses:
        _close(loss, _step(eager_model, eager_opt, x, y))
    after = flatten((model, opt))[0]
    assert all(a is b for a, b in zip(arrays, after))  # written in place, never rebound
    for a, b in zip(after, flatten((eager_model, eager_opt))[0]):
        if isinstance(a, np.ndarray):
            _close(a, b)


def test_a_call_in_progress_finishes_on_numpy_and_the_next_runs_xla():
    model, opt, x, y = _start()
    eager_model, eager_opt = copy.deepcopy(model), copy.deepcopy(opt)
    step = fl.compile(_step, backend="xla")
    with tiered.held():
        _close(step(model, opt, x, y), _step(eager_model, eager_opt, x, y))
        entry = step.last
        numpy_run, inside, go = entry.run, threading.Event(), threading.Event()

        def paused(*arrays):  # the NumPy code, stopped until the switch has happened
            inside.set()
            assert go.wait(60)
            return numpy_run(*arrays)

        entry.run = paused
        result = {}
        caller = threading.Thread(target=lambda: result.setdefault("loss",
                                                                   step(model, opt, x, y)))
        caller.start()
        assert inside.wait(60)
    step.wait()  # released: the entry switched while the call is still inside the NumPy code
    assert entry.run is entry.pending.xla
    go.set()
    caller.join(60)
    _close(result["loss"], _step(eager_model, eager_opt, x, y))
    _close(step(model, opt, x, y), _step(eager_model, eager_opt, x, y))
    for a, b in zip(flatten((model, opt))[0], flatten((eager_model, eager_opt))[0]):
        if isinstance(a, np.ndarray):
            _close(a, b)


def test_calls_from_several_threads_during_the_switch_are_each_right():
    f = fl.compile(lambda x: np.tanh(x) * 2.0 + np.sum(x), backend="xla")
    inputs = [np.linspace(-1, 1, 5) * k for k in range(6)]
    expected = [np.tanh(x) * 2.0 + np.sum(x) for x in inputs]
    results = {k: [] for k in range(len(inputs))}
    with tiered.held():
        f(inputs[0])
        job = f.last.pending
        assert job.ready.wait(60)
        start = threading.Barrier(len(inputs) + 1)

        def calls(k):  # on NumPy's code, through the switch, then on XLA's
            start.wait(60)
            while not job.done.is_set() and len(results[k]) < 100_000:
                results[k].append(f(inputs[k]))
            results[k] += [f(inputs[k]) for _ in range(5)]

        threads = [threading.Thread(target=calls, args=(k,)) for k in range(len(inputs))]
        for t in threads:
            t.start()
        start.wait(60)
    for t in threads:  # released: the switch comes while they call
        t.join(60)
    assert f.tier == "xla" and f.traces == 1
    for k, got in results.items():
        for r in got:
            np.testing.assert_allclose(r, expected[k], rtol=1e-12)


def test_random_draws_continue_the_same_stream_after_the_switch():
    def f(x, rng):
        return fl.dropout(x, 0.5, rng=rng) * 1.0

    compiled = fl.compile(f, backend="xla")
    rng, eager_rng, x = np.random.default_rng(3), np.random.default_rng(3), np.ones(50)
    with tiered.held():
        got = [compiled(x, rng)]
    compiled.wait()
    got.append(compiled(x, rng))
    assert compiled.tier == "xla"
    for g in got:
        np.testing.assert_array_equal(g, f(x, eager_rng))


def test_device_state_on_the_cpu_runs_on_host_copies_and_is_rebound_across_the_switch():
    model, opt, x, y = _start()
    eager_model, eager_opt = copy.deepcopy(model), copy.deepcopy(opt)
    dmodel, dopt, dx, dy = fl.xla((model, opt, x, y))
    step = fl.compile(_step, backend="xla")
    weight = dmodel.layers[0].weight
    losses = []
    with tiered.held():
        losses.append(step(dmodel, dopt, dx, dy))
        assert step.tier == "numpy"
        assert type(losses[0]) is type(weight)  # results on the device, as XLA's
        assert dmodel.layers[0].weight is not weight  # rebound to the new value
        assert type(dmodel.layers[0].weight) is type(weight)
        assert dmodel.layers[0].weight.dtype == np.float64
        losses.append(step(dmodel, dopt, dx, dy))
    step.wait()
    losses += [step(dmodel, dopt, dx, dy) for _ in range(2)]
    assert step.tier == "xla" and step.traces == 1
    for loss in losses:
        _close(loss, _step(eager_model, eager_opt, x, y))
    leaves = flatten(fl.cpu((dmodel, dopt)))[0]
    for a, b in zip(leaves, flatten((eager_model, eager_opt))[0]):
        if isinstance(a, np.ndarray):
            _close(a, b)
    assert all(type(a) is type(weight) for a in flatten(dmodel)[0] if hasattr(a, "shape"))


def test_state_off_the_cpu_and_background_false_compile_in_the_first_call(monkeypatch):
    from fluxml.compiler import api

    monkeypatch.setattr(api, "on_cpu", lambda x: False)  # as for a jax.Array on a GPU
    f = fl.compile(lambda x: x * 2.0, backend="xla")
    assert type(f(fl.xla(np.ones(3)))) is not np.ndarray
    assert f.tier == "xla" and f.last.pending is None
    g = fl.compile(lambda x: x * 2.0, backend="xla", background=False)
    g(np.ones(3))
    assert g.tier == "xla" and g.last.pending is None
    g.wait()  # nothing to wait for


def test_written_numpy_argument_in_place_on_both_tiers():
    def scale(x, s):
        x *= s
        return np.sum(x)

    f = fl.compile(scale, backend="xla")
    x = np.arange(4.0)
    with tiered.held():
        assert f(x, np.array(2.0)) == 12.0 and f.tier == "numpy"
    f.wait()
    assert f(x, np.array(3.0)) == 36.0 and f.tier == "xla"
    np.testing.assert_array_equal(x, np.arange(4.0) * 6)


def test_a_failed_xla_compilation_warns_keeps_numpy_and_wait_raises(monkeypatch):
    def broken(jitted, host, device, numbers=0):
        def prepare(shardings=()):
            raise RuntimeError("no memory for XLA")
        return prepare

    monkeypatch.setattr(xla_backend, "_ahead", broken)
    f = fl.compile(lambda x: x + 1.0, backend="xla")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        np.testing.assert_array_equal(f(np.ones(2)), [2.0, 2.0])
        f.last.pending.ready.wait(60)
    assert any("no memory for XLA" in str(w.message) for w in caught)
    with pytest.raises(CompileError, match="no memory for XLA"):
        f.wait()
    assert f.tier == "numpy"
    np.testing.assert_array_equal(f(np.ones(2)), [2.0, 2.0])

    def bump(x):
        x += 1.0
        return x.sum()

    g = fl.compile(bump, backend="xla")
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        g(np.ones(2))
        with pytest.raises(CompileError):
            g.wait()
    # no XLA code to match: the plain NumPy code (no copy per call to restore on failure)
    assert not hasattr(g.last.run, "plain")
    x = np.ones(2)
    assert g(x) == 4.0 and np.array_equal(x, [2.0, 2.0])


def test_wait_inside_held_is_an_error_not_a_hang():
    f = fl.compile(lambda x: x + 1.0, backend="xla")
    with tiered.held():
        f(np.ones(2))
        with pytest.raises(RuntimeError, match="inside tiered.held"):
            f.wait()
    f.wait()
    assert f.tier == "xla"


def test_lowering_errors_still_come_from_the_first_call():
    from fluxml.ad.define import primitive

    foo = primitive("foo_tiered", lambda x: x * 2)
    with pytest.raises(CompileError, match="no XLA lowering"):
        fl.compile(lambda x: foo(x) + 1, backend="xla")(np.ones(2))


def test_train_with_compile_xla_follows_eager():
    model, _, x, y = _start()
    eager = copy.deepcopy(model)
    data = [(x[:2], y[:2]), (x[2:], y[2:])] * 2
    kw = dict(epochs=1, progress=False)
    ours = fl.train(lambda m, x, y: fl.mse(m(x), y), model, data,
                    fl.setup(fl.Adam(0.01), model), compile="xla", **kw)
    ref = fl.train(lambda m, x, y: fl.mse(m(x), y), eager, data,
                   fl.setup(fl.Adam(0.01), eager), **kw)
    np.testing.assert_allclose(ours.losses, ref.losses, rtol=1e-10)
    for a, b in zip(flatten(model)[0], flatten(eager)[0]):
        if isinstance(a, np.ndarray):
            _close(a, b)


@pytest.mark.parametrize("device", [False, True])
def test_a_failed_check_on_the_numpy_tier_leaves_the_arguments_as_xla_does(device):
    def step(state, labels):  # (the NumPy back end alone writes w, then raises, as eagerly)
        state["w"] *= 0.5
        return fl.logitcrossentropy(state["w"], labels)

    f = fl.compile(step, backend="xla")
    state = {"w": np.ones((2, 3))}
    if device:
        state = fl.xla(state)
    with tiered.held():
        f(state, np.array([0, 2]))
        before, held_w = np.array(state["w"]), state["w"]
        with pytest.raises(ValueError, match="labels must lie in") as numpy_error:
            f(state, np.array([0, 7]))
        assert state["w"] is held_w and f.tier == "numpy"
        np.testing.assert_array_equal(np.asarray(state["w"]), before)
    f.wait()
    with pytest.raises(ValueError, match="labels must lie in") as xla_error:
        f(state, np.array([0, 7]))
    assert str(xla_error.value) == str(numpy_error.value)
    assert state["w"] is held_w
    np.testing.assert_array_equal(np.asarray(state["w"]), before)


@pytest.mark.parametrize("where", ["numpy", "device", "committed"])
def test_the_first_xla_call_after_the_switch_compiles_nothing(where):
    """The background compilation fills JAX's caches for the very call that follows (NumPy
    arguments, uncommitted ``fl.xla`` ones, ones committed to a device, whose new values the
    NumPy tier hands back committed likewise): the caller never waits for XLA's compiler."""
    from jax import monitoring

    model, opt, x, y = _start()
    if where != "numpy":
        device = jax.devices()[0] if where == "committed" else None
        model, opt, x, y = fl.xla((model, opt, x, y), device=device)
    step = fl.compile(_step, backend="xla")
    step(model, opt, x, y)  # on the NumPy tier: rebinds device state
    step.wait()
    compiles = []

    def listen(event, seconds, **kwargs):
        if "backend_compile" in event:
            compiles.append(event)

    monitoring.register_event_duration_secs_listener(listen)
    try:
        step(model, opt, x, y)
        step(model, opt, x, y)
    finally:
        monitoring.unregister_event_duration_listener(listen)
    assert step.tier == "xla" and compiles == []


class _Busy:
    """A job that keeps the one compile worker busy until ``release`` is set: the jobs
    queued meanwhile wait for their turn."""

    dropped = False

    def __init__(self):
        self.started, self.release = threading.Event(), threading.Event()

    def _compile(self):
        self.started.set()
        self.release.wait(60)

    def skip(self):
        self.release.set()


def test_one_worker_compiles_in_turn_and_skips_entries_that_left_the_cache():
    """The signatures' programs are compiled one at a time, in turn; one that has left the
    cache before its turn is not compiled (its XLA code could never run)."""
    f = fl.compile(lambda x: np.tanh(x).sum(), backend="xla", cache_size=1)
    busy = _Busy()
    tiered._submit(busy)
    try:
        assert busy.started.wait(60)  # the worker is busy: the next jobs wait their turn
        f(np.ones(2))
        first = f.last
        f(np.ones(3))  # the first signature leaves the cache, before its turn
        second = f.last
        f(np.ones(4))  # and the second
        third = f.last
        assert first.pending.dropped and second.pending.dropped
        assert not third.pending.dropped and not third.pending.ready.is_set()
    finally:
        busy.release.set()
    f.wait()
    for dropped in (first, second):
        assert dropped.pending.done.wait(60) and dropped.pending.tier == "numpy"
        assert dropped.pending.seconds is None  # never compiled
    assert third.pending.tier == "xla" and f.tier == "xla"
    np.testing.assert_allclose(f(np.ones(4)), 4 * np.tanh(1.0))
