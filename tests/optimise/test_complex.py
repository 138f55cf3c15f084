"""Complex parameters (optimise/pairs.py): every rule trains a complex array exactly as it
trains the real array of its (real, imaginary) pairs against the conjugate of fluxml's
gradient (PyTorch's ``view_as_real``), on each of update's paths (small arrays grouped, one
array at a time, parts on threads, fl.compile on NumPy and XLA); ClipNorm takes the norm of
the complex numbers; complex64 stays complex64 with float32 state; a complex linear model
fits; states save and load; a rule's own ``apply`` refuses complex arrays. Compared with
torch.optim on complex parameters by hand: tests/optimise/torch_complex.py."""

import copy

import numpy as np
import pytest

import fluxml as fl
from fluxml.backend import threads
from fluxml.optimise import foreach, split
from fluxml.optimise import pairs as pairs_module
from fluxml.optimise.pairs import gradient_pairs, pairs
from tests.optimise.test_foreach import ELEMENTWISE
from tests.optimise.test_rules_compiled import RULES, _name

# ClipNorm with p != 2 takes the norm of the complex numbers, not of their parts (tested below)
PAIRWISE = [r for r in RULES if "ClipNorm-p" not in _name(r)]


def _model(rng):
    """Complex arrays of each kind (C and Fortran order, 0-d, complex64) and a real one."""
    def c(*shape):
        return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)

    return {"a": c(3, 4), "s": np.array(c()[()]), "f": np.asfortranarray(c(4, 3)),
            "r": rng.standard_normal(4), "c": c(5).astype(np.complex64)}


def _as_pairs(model):
    """The reference model: each complex array replaced by a real copy of its pairs."""
    return {k: (pairs(v) if np.iscomplexobj(v) else v).copy() for k, v in model.items()}


def _train(rule, steps=4, seed=0):
    """The complex model and the real model of its pairs, each trained by ``rule`` on the same
    gradients: ``gx - i gy`` for a complex array (fluxml's convention), ``(gx, gy)`` for its
    pairs."""
    rng = np.random.default_rng(seed)
    model = _model(rng)
    ref = _as_pairs(model)
    assert not any(np.shares_memory(model[k], ref[k]) for k in model)
    state, ref_state = fl.setup(copy.deepcopy(rule), model), fl.setup(copy.deepcopy(rule), ref)
    for step in range(steps):
        g = {k: rng.standard_normal(v.shape).astype(v.dtype) for k, v in ref.items()}
        gc = {k: g[k][..., 0] - 1j * g[k][..., 1] if np.iscomplexobj(model[k]) else g[k]
              for k in g}
        if step == 1:
            g["s"] = gc["s"] = None  # skipped: its step count falls behind
        fl.update(state, model, gc)
        fl.update(ref_state, ref, g)
    return (model, state), (ref, ref_state)


def _same(got, want):
    (model, state), (ref, ref_state) = got, want
    for k, x in model.items():
        assert x.dtype == np.asarray(model[k]).dtype
        y = ref[k][..., 0] + 1j * ref[k][..., 1] if np.iscomplexobj(x) else ref[k]
        tol = 1e-6 if x.dtype == np.complex64 else 1e-12
        np.testing.assert_allclose(x, y, rtol=tol, atol=tol, err_msg=k)
    a, b = fl.leaves(state), fl.leaves(ref_state)
    assert len(a) == len(b)
    for s, t in zip(a, b):
        s, t = np.asarray(s), np.asarray(t)
        assert s.dtype == t.dtype and s.shape == t.shape
        np.testing.assert_allclose(s, t, rtol=1e-6 if s.dtype == np.float32 else 1e-12,
                                   atol=1e-12)


@pytest.mark.parametrize("rule", PAIRWISE, ids=_name)
def test_every_rule_trains_a_complex_array_as_its_pairs(rule):
    _same(*_train(rule))


@pytest.mark.parametrize("cls", ELEMENTWISE, ids=lambda c: c.__name__)
def test_the_same_steps_one_array_at_a_time_and_in_parts_on_threads(cls, monkeypatch):
    grouped = _train(cls())[0]
    monkeypatch.setattr(foreach, "SMALL", 0)  # every array stepped alone
    alone = _train(cls())[0]
    monkeypatch.setattr(split, "LARGE", 8)  # and in parts on two threads
    monkeypatch.setattr(threads, "limit", lambda: 2)
    parts = _train(cls())[0]
    for other in (alone, parts):
        for a, b in zip(fl.leaves(grouped), fl.leaves(other)):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("rule", [fl.Adam(0.1), fl.OptimiserChain(fl.ClipNorm(1.0, 1.0),
                                                                    fl.Rprop(0.1))], ids=_name)
def test_the_same_steps_on_copies_of_the_pairs(rule, monkeypatch):
    """Where the array library makes no view of the pairs (a CuPy that asks for C order),
    update steps a copy and writes it back."""
    viewed = _train(rule)[0]
    monkeypatch.setattr(pairs_module, "_view", lambda z: None)
    copied = _train(rule)[0]
    for a, b in zip(fl.leaves(viewed), fl.leaves(copied)):
        np.testing.assert_array_equal(a, b)


def test_descent_steps_against_the_conjugate_and_lowers_the_loss():
    target = np.array([1 + 2j, -0.5 + 0.3j])
    loss = lambda m: np.sum(np.abs(m["z"] - target) ** 2)  # noqa: E731
    model = {"z": np.zeros(2, complex)}
    state = fl.setup(fl.Descent(0.1), model)
    (g,) = fl.gradient(loss, model)
    np.testing.assert_allclose(g["z"], 2 * np.conj(0 - target))  # df/dx - i df/dy
    before = loss(model)
    fl.update(state, model, g)
    np.testing.assert_allclose(model["z"], -0.1 * np.conj(g["z"]))
    assert loss(model) < before


def test_a_complex_linear_model_fits_with_adam():
    rng = np.random.default_rng(3)
    w = (rng.standard_normal((3, 4)) + 1j * rng.standard_normal((3, 4))).astype(np.complex64)
    x = (rng.standard_normal((64, 4)) + 1j * rng.standard_normal((64, 4))).astype(np.complex64)
    y = x @ w.T
    model = fl.Dense(4, 3, bias=False)
    model.weight = np.zeros((3, 4), np.complex64)
    state = fl.setup(fl.Adam(0.05), model)
    loss = lambda m: np.mean(np.abs(m(x) - y) ** 2)  # noqa: E731
    first = loss(model)
    for _ in range(200):
        fl.update(state, model, fl.gradient(loss, model)[0])
    assert model.weight.dtype == np.complex64 and state.weight.state.v.dtype == np.float32
    assert loss(model) < 1e-6 * first
    np.testing.assert_allclose(model.weight, w, atol=1e-3)


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0, np.inf])
def test_clipnorm_takes_the_norm_of_the_complex_numbers(p):
    """As PyTorch's clip_grad_norm_ and Optimisers.jl's norm: (sum |dz|**p)**(1/p)."""
    dz = np.array([[3 + 4j, 1j], [-2, 0.5 - 0.5j]])
    nrm = np.max(np.abs(dz)) if p == np.inf else np.sum(np.abs(dz) ** p) ** (1 / p)
    assert not np.isclose(nrm, np.linalg.norm(pairs(dz).ravel(), p)) or p == 2
    model = {"z": np.zeros_like(dz)}
    fl.update(fl.setup(fl.OptimiserChain(fl.ClipNorm(1.0, p), fl.Descent(1.0)), model), model,
              {"z": np.conj(dz)})
    np.testing.assert_allclose(model["z"], -dz / nrm, rtol=1e-12)


def _step(model, state, x):
    value, (g,) = fl.withgradient(
        lambda m: 0.1 * np.sum(np.abs(np.tanh(x @ m["a"] + m["c"] + m["r"])) ** 2), model)
    fl.update(state, model, g)
    return value


@pytest.mark.parametrize("rule", RULES, ids=_name)
def test_compiled_steps_match_eager_steps(rule):
    _compiled_matches_eager(rule, "numpy")


# (each a compile of its own on XLA, a few seconds: one always, the rest slow)
@pytest.mark.parametrize("rule", [
    fl.OptimiserChain(fl.ClipNorm(0.5, 1.0), fl.Adam(0.01)),
    pytest.param(fl.Lion(0.01), marks=pytest.mark.slow),
    pytest.param(fl.OptimiserChain(fl.AccumGrad(2), fl.Momentum(0.1)), marks=pytest.mark.slow),
], ids=_name)
def test_compiled_steps_match_eager_steps_on_xla(rule):
    pytest.importorskip("jax")
    _compiled_matches_eager(rule, "xla")


def _compiled_matches_eager(rule, backend):
    rng = np.random.default_rng(1)
    start = {"a": rng.standard_normal((3, 4)) + 1j * rng.standard_normal((3, 4)),
             "c": (rng.standard_normal(4) + 1j * rng.standard_normal(4)).astype(np.complex64),
             "r": rng.standard_normal(4).astype(np.float32)}
    models = [copy.deepcopy(start) for _ in range(2)]
    states = [fl.setup(copy.deepcopy(rule), m) for m in models]
    compiled = fl.compile(_step, backend=backend, background=False)
    for _ in range(3):
        x = rng.standard_normal((5, 3))
        _step(models[0], states[0], x)
        compiled(models[1], states[1], x)
    assert compiled.traces == 1
    for a, b in zip(fl.leaves((models[0], states[0])), fl.leaves((models[1], states[1]))):
        a, b = np.asarray(a), np.asarray(b)
        assert a.dtype == b.dtype
        # (complex128 parameters see float32 rounding: their gradient goes through c and r)
        tol = 2e-5 if a.dtype in (np.float32, np.complex64) else 1e-6
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
    assert not np.array_equal(models[1]["a"], start["a"])


def test_a_rules_own_apply_refuses_complex_arrays():
    z, dz = np.ones(2, complex), np.full(2, 1 + 1j)
    for rule in (fl.Adam(), fl.Descent(), fl.Lion(), fl.ClipGrad(), fl.WeightDecay(),
                 fl.SignDecay(), fl.MixedPrecision(fl.Adam())):
        with pytest.raises(TypeError, match="apply: an optimisation rule takes real arrays, "
                                            "got a complex128 array. fl.update trains"):
            rule.apply(rule.init(z), z, dz)
    # what the message says to do: the real rule on the pairs
    rule = fl.Adam(0.1)
    state, step = rule.apply(rule.init(pairs(z)), pairs(z), gradient_pairs(dz, z))
    np.testing.assert_allclose(step, [[0.1, -0.1], [0.1, -0.1]])


def test_frozen_and_tied_complex_arrays():
    z, f = np.ones(3, complex), np.ones(2, complex)
    model = {"enc": z, "dec": z, "f": f}
    state = fl.setup(fl.Descent(0.5), model)
    assert state["enc"] is state["dec"]
    fl.freeze(state["f"])
    fl.update(state, model, {"enc": np.full(3, 1j), "dec": np.full(3, 1j), "f": np.ones(2)})
    np.testing.assert_array_equal(z, np.full(3, 1 + 0.5j))  # stepped once: conj(i) = -i
    np.testing.assert_array_equal(f, np.ones(2))


def test_destructure_and_trainables_of_a_complex_model():
    rng = np.random.default_rng(2)
    model = _model(rng)
    del model["r"]  # (a real array would take the real part of its flat entries)
    assert [x.dtype for x in fl.trainables(model)] == [np.complex128] * 3 + [np.complex64]
    flat, re = fl.destructure(model)
    assert flat.dtype == np.complex128

    def loss(m):
        return sum(np.sum(np.abs(np.sin(v)) ** 2) for v in m.values())

    # Adam on the flat vector takes the steps Adam takes on the model (each entry its own)
    flat_model = {"flat": flat}
    s1, s2 = fl.setup(fl.Adam(0.1), model), fl.setup(fl.Adam(0.1), flat_model)
    for _ in range(3):
        fl.update(s1, model, fl.gradient(loss, model)[0])
        fl.update(s2, flat_model, fl.gradient(lambda m: loss(re(m["flat"])), flat_model)[0])
    for k, v in re(flat_model["flat"]).items():
        assert v.dtype == model[k].dtype
        np.testing.assert_allclose(v, model[k], rtol=1e-6 if v.dtype == np.complex64 else 1e-12)


def test_a_checkpoint_of_complex_parameters_resumes_the_same_training(tmp_path):
    def run(steps, resume_at=None):
        rng = np.random.default_rng(4)
        model = _model(rng)
        state = fl.setup(fl.Adam(0.1), model)
        for k in range(steps):
            if k == resume_at:
                fl.save_checkpoint(tmp_path / "c.st", model, state, step=k)
                model, state = _model(np.random.default_rng(9)), None
                state = fl.setup(fl.Adam(0.1), model)
                fl.load_checkpoint(tmp_path / "c.st", model, state)
            fl.update(state, model, {k: np.sin(v) for k, v in model.items()})
        return model, state

    straight, resumed = run(5), run(5, resume_at=3)
    for a, b in zip(fl.leaves(straight), fl.leaves(resumed)):
        assert np.asarray(a).dtype == np.asarray(b).dtype
        np.testing.assert_array_equal(a, b)
