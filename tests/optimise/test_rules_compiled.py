"""Every optimisation rule under ``fl.compile``: a compiled training step (``withgradient``
then ``update``) gives the model and the optimiser state that the eager step gives, on the
NumPy back end and on XLA (when JAX is installed); every hyperparameter changed by
``fl.adjust`` between compiled steps takes effect without tracing the step again (they are
inputs of the program: ``fluxml.compiler.numbers``); ClipNorm's check of a finite norm runs
in the compiled program."""

import copy
import re

import numpy as np
import pytest

import fluxml as fl

RULES = [
    fl.Descent(0.1), fl.Momentum(0.1), fl.Nesterov(0.1), fl.RMSProp(0.01),
    fl.RMSProp(0.01, centred=True), fl.Adam(0.01), fl.AdamW(0.01, lambd=0.1), fl.RAdam(0.01),
    fl.NAdam(0.01), fl.AdaMax(0.01), fl.AdaGrad(0.1), fl.AdaDelta(), fl.AMSGrad(0.01),
    fl.OAdam(0.01), fl.AdaBelief(0.01), fl.Lion(0.01), fl.Rprop(0.01), fl.ClipGrad(0.3),
    fl.ClipNorm(1.0), fl.ClipNorm(0.5, 1.0), fl.WeightDecay(0.1), fl.SignDecay(0.1),
    fl.AccumGrad(2), fl.OptimiserChain(fl.ClipNorm(1.0), fl.Adam(0.01)),
    fl.OptimiserChain(fl.AccumGrad(2), fl.Momentum(0.1)), fl.MixedPrecision(fl.Adam(0.01)),
    # (compiled, the outer chain's rules ran on the nested one's zero update at every step:
    # WeightDecay decayed between the AccumGrad's rounds, silently)
    fl.OptimiserChain(fl.OptimiserChain(fl.AccumGrad(2), fl.Descent(0.1)), fl.WeightDecay(0.1)),
]
BACKENDS = ["numpy", "xla"]


def _name(rule):
    parts = getattr(rule, "rules", None)
    if parts is not None:
        return "Chain-" + "-".join(map(_name, parts))
    extra = "-centred" if getattr(rule, "centred", False) else ""
    return type(rule).__name__ + extra + (f"-p{rule.p:g}" if getattr(rule, "p", 2) != 2 else "")


def _model(rng, n=1):
    """``n`` small models, one for each rule of a state: ``{k: {"w", "b", "w64"}}``."""
    return {k: {"w": rng.standard_normal((3, 4)).astype(np.float32),
                "b": rng.standard_normal(4).astype(np.float32),
                "w64": rng.standard_normal((4, 2))} for k in range(n)}


def _step(model, state, x):
    def loss(model):
        total = 0.0
        for m in model.values():
            h = np.tanh(x @ m["w"] + m["b"])
            total = total + np.sum(h**2) + np.sum(np.sin(h.astype(np.float64) @ m["w64"]))
        # (scaled down: rules that apply the gradient itself, as WeightDecay, step by 1, and
        # XLA's float32 tanh, an ulp off NumPy's, would be amplified over the steps)
        return 0.1 * total

    value, (g,) = fl.withgradient(loss, model)
    fl.update(state, model, g)
    return value


def _resume(state, count=3):
    """Step counters set to ``count``, as in a state saved after some steps: RAdam's next
    steps cross its threshold (``rho > 4`` from the 5th step)."""
    for leaf in fl.optimise.interface._leaves(state):
        states = leaf.state if type(leaf.rule) is fl.OptimiserChain else (leaf.state,)
        for s in states:
            if hasattr(s, "t"):
                s.t[...] = count


def _train(rules, step, steps=3, schedule=None):
    """Train one small model per rule (each with its own state) for ``steps`` steps;
    ``schedule(k, rule)`` gives the changes ``fl.adjust`` makes to a rule's part of the state
    before step ``k`` (``"each"``: :func:`every_hyperparameter`)."""
    rng = np.random.default_rng(0)
    model = _model(rng, len(rules))
    state = {k: fl.setup(copy.deepcopy(rule), model[k]) for k, rule in enumerate(rules)}
    _resume(state)
    if schedule == "each":
        schedule = every_hyperparameter
    for k in range(steps):
        if schedule is not None:
            for j, rule in enumerate(rules):
                fl.adjust(state[j], **schedule(k, rule))
        step(model, state, rng.standard_normal((5, 3)).astype(np.float32))
    return model, state


def _hyperparameters(rule) -> dict:
    """A rule's (or a chain's rules') traced hyperparameters (not the numbers that choose
    what the step does: AccumGrad's ``n``, ClipNorm's ``p``, AdamW's ``couple``)."""
    found = {}
    for r in getattr(rule, "rules", (rule,)):
        assert set(r.hyperparameters) <= r.names()
        for name in r.hyperparameters:
            found.setdefault(name, getattr(r, name))
    return found


def every_hyperparameter(k, rule) -> dict:
    """Every hyperparameter of ``rule`` moved off its value before step ``k`` (a new value
    each step: rates scaled, decay rates lowered, ranges widened)."""
    changes = {}
    for name, value in _hyperparameters(rule).items():
        if name in ("beta", "ell"):
            changes[name] = (value[0] - 0.02 * k, value[1] + (0.05 if name == "ell" else -0.01)
                             * k)
        elif name == "gamma":
            changes[name] = (value[0] * (1 + k), value[1] - k)
        elif name == "rho":
            changes[name] = value - 0.03 * k
        elif name == "epsilon":
            changes[name] = value * (1 + 10 * k)
        else:  # eta, lambd, delta, omega
            changes[name] = value * (1 - 0.2 * k)
    return changes


def _compare(got, want, what=""):
    a_leaves, b_leaves = fl.leaves(got), fl.leaves(want)
    assert len(a_leaves) == len(b_leaves)
    for a, b in zip(a_leaves, b_leaves):
        a, b = np.asarray(a), np.asarray(b)
        assert a.dtype == b.dtype and a.shape == b.shape
        # (float64 parameters see float32 rounding: their gradient goes through float32 h)
        tol = 2e-5 if a.dtype == np.float32 else 1e-6
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol, err_msg=what)


def _backend(backend):
    if backend == "xla":
        pytest.importorskip("jax")
    return backend


def _check_all(rules, backend):
    compiled = fl.compile(_step, backend=backend, background=False)
    got = _train(rules, compiled, schedule="each")
    want = _train(rules, _step, schedule="each")
    assert compiled.traces == 1
    start = _model(np.random.default_rng(0), len(rules))
    for k, rule in enumerate(rules):
        _compare((got[0][k], got[1][k]), (want[0][k], want[1][k]), f"{rule} on {backend}")
        # the parameters moved (AccumGrad(2) applies its mean on the 2nd step)
        assert not np.array_equal(got[0][k]["w"], start[k]["w"]), rule


# On XLA each rule's step is a compile of its own (a few tenths of a second): the rules that
# branched on values (RAdam, Rprop, ClipNorm, AccumGrad in a chain) run always, the rest are slow.
ON_XLA_ALWAYS = ("RAdam", "Rprop", "ClipNorm", "Chain-AccumGrad-Momentum",
                 "Chain-Chain-AccumGrad-Descent-WeightDecay")


def _cases():
    for rule in RULES:
        yield pytest.param(rule, "numpy", id=f"{_name(rule)}-numpy")
        marks = () if _name(rule) in ON_XLA_ALWAYS else pytest.mark.slow
        yield pytest.param(rule, "xla", id=f"{_name(rule)}-xla", marks=marks)


@pytest.mark.parametrize(("rule", "backend"), list(_cases()))
def test_compiled_training_steps_match_eager(rule, backend):
    _check_all([rule], _backend(backend))


def test_rules_of_a_state_compile_together():
    """A state whose parts have different rules (here every rule, a model each): one
    compiled step, as the eager one. Each rule's hyperparameters are inputs of the program
    (one for the rule the part's arrays share), and the program reads them all (but Rprop's
    ``eta``, which only sets the initial step sizes)."""
    compiled = fl.compile(_step)
    rules = RULES
    _compare(_train(rules, compiled, schedule="each"), _train(rules, _step, schedule="each"))
    assert compiled.traces == 1
    header, body = compiled.source.split("\n", 1)
    params = header[header.index("(") + 1:header.rindex(")")].split(", ")
    for k, rule in enumerate(rules):
        chain = getattr(rule, "rules", None)
        for i, r in enumerate(chain or (rule,)):
            prefix = f"state_{k}_w_rule_" + (f"rules_{i}_" if chain else "")
            for name in r.hyperparameters:
                value = getattr(r, name)
                want = [prefix + name] if not isinstance(value, tuple) else \
                    [f"{prefix}{name}_{j}" for j in range(len(value))]
                assert set(want) <= set(params), (rule, name)
                if not (type(r) is fl.Rprop and name == "eta"):
                    assert all(re.search(rf"\b{p}\b", body) for p in want), (rule, name)


def test_radam_takes_both_branches_in_the_compiled_steps():
    """Counts 4, 5, 6: plain momentum at 4 (rho <= 4), rectified Adam after, as eagerly."""
    rule = fl.RAdam(0.01)
    rho_inf = 2 / (1 - rule.beta[1]) - 1
    rho = [rho_inf - 2 * n * rule.beta[1] ** n / (1 - rule.beta[1] ** n) for n in (4, 5, 6)]
    assert rho[0] < 4 < rho[1]
    model, state = _train([rule], fl.compile(_step))
    assert int(state[0]["w"].state.t) == 6
    _compare((model, state), _train([rule], _step))


def test_adjust_between_compiled_steps_takes_effect():
    """Hyperparameters are inputs of the compiled step, not constants: values changed by
    ``fl.adjust`` take effect on the next call, which reuses the trace."""

    def schedule(k, rule):
        return {"eta": 0.01 * 0.5**k, "beta": (0.9, 0.99 if k < 2 else 0.9)} \
            if type(rule) is fl.OptimiserChain else {"eta": 0.01 * 0.5**k}

    compiled = fl.compile(_step)
    rules = [fl.OptimiserChain(fl.ClipNorm(1.0), fl.Adam(0.01)), fl.Descent(0.1)]
    got = _train(rules, compiled, schedule=schedule)
    _compare(got, _train(rules, _step, schedule=schedule))
    assert compiled.traces == 1
    fixed = _train(rules, _step)  # no schedule: other numbers
    for k in range(2):
        assert not np.allclose(fixed[0][k]["w"], got[0][k]["w"])
    assert got[1][0]["w"].rule.rules[1].eta == got[1][1]["w"].rule.eta == 0.01 * 0.25


def _clip_step(model, state, g):
    fl.update(state, model, g)
    return model["a"].sum()


@pytest.mark.parametrize("backend", BACKENDS)
def test_clipnorm_checks_the_norm_on_every_compiled_call(backend):
    """``throw=True``: a NaN or infinite norm is the eager error, raised by the compiled call
    (the check runs on every call, not only at the trace). On XLA it is judged before
    anything is written back, so the model and state are untouched; the NumPy program checks
    where the eager step does, so the arrays stepped before the bad one have been stepped
    (here "a"), as eagerly."""
    compiled = fl.compile(_clip_step, backend=_backend(backend), background=False)
    model = {"a": np.ones(3, np.float32), "b": np.ones((2, 2))}
    state = fl.setup(fl.ClipNorm(1.0), model)
    ok = {"a": np.full(3, 2.0, np.float32), "b": np.full((2, 2), 0.1)}
    compiled(model, state, ok)
    np.testing.assert_allclose(model["a"], 1 - 2 / np.sqrt(12), rtol=1e-6)  # clipped
    np.testing.assert_allclose(model["b"], 0.9)  # norm 0.2: kept
    before = copy.deepcopy(model)
    for bad in (np.nan, np.inf):
        with pytest.raises(FloatingPointError, match=r"ClipNorm: .* shape \(2, 2\) has 2.0-norm"):
            compiled(model, state, {"a": ok["a"], "b": np.full((2, 2), bad)})
        if backend == "xla":
            _compare(model, before)
        else:
            eager = copy.deepcopy(before)
            with pytest.raises(FloatingPointError):
                _clip_step(eager, fl.setup(fl.ClipNorm(1.0), eager),
                           {"a": ok["a"], "b": np.full((2, 2), bad)})
            np.testing.assert_array_equal(model["a"], eager["a"])
            np.testing.assert_array_equal(model["b"], before["b"])
            before = copy.deepcopy(model)
    assert compiled.traces == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_clipnorm_without_throw_compiles_as_eager(backend):
    """``throw=False``: a NaN norm leaves the gradient as it is, an infinite one scales it by
    ``omega / inf = 0`` (NaN where it is infinite), compiled as eagerly."""
    compiled = fl.compile(_clip_step, backend=_backend(backend), background=False)
    for bad in (np.nan, np.inf):
        runs = []
        for step in (compiled, _clip_step):
            model = {"a": np.ones(3, np.float32), "b": np.ones(2)}
            state = fl.setup(fl.ClipNorm(1.0, throw=False), model)
            with np.errstate(invalid="ignore"):  # inf * (omega / inf) is NaN
                step(model, state, {"a": np.array([bad, 1.0, 2.0], np.float32),
                                    "b": np.full(2, 5.0)})
            runs.append(model)
        np.testing.assert_array_equal(runs[0]["a"], runs[1]["a"])
        np.testing.assert_allclose(runs[0]["b"], runs[1]["b"])


def test_accumgrad_steps_a_state_with_a_python_int_count():
    """AccumGrad counts in a 0-d array (so that a compiled step can count); a state of an
    older fluxml, whose count is a Python int, steps as before and gets an array."""
    rule, x = fl.AccumGrad(2), np.zeros(2)
    state = fl.optimise.composite.AccumState(np.zeros(2), 0)
    state, upd = rule.apply(state, x, np.array([1.0, 2.0]))
    assert upd is None and state.count.shape == () and int(state.count) == 1
    state, upd = rule.apply(state, x, np.array([3.0, 4.0]))
    np.testing.assert_array_equal(upd, [2.0, 3.0])
    assert int(state.count) == 0


def _tied_step(model, state, x):
    """A step that returns the state and the model, as ``fl.update`` does: the idiom
    ``state, model = step(state, model, x)``."""
    def loss(model):
        h = np.tanh(x @ model["a"]["w"])
        return 0.1 * np.sum(np.sin(h @ model["b"]["w"].T))

    value, (g,) = fl.withgradient(loss, model)
    state, model = fl.update(state, model, g)
    return state, model, value


def _tied_cases():
    for rule in RULES:
        yield pytest.param(rule, "numpy", id=f"{_name(rule)}-numpy")
    for rule in (fl.AccumGrad(2), fl.OptimiserChain(fl.AccumGrad(2), fl.Momentum(0.1)),
                 fl.Adam(0.01)):
        yield pytest.param(rule, "xla", id=f"{_name(rule)}-xla")


@pytest.mark.parametrize(("rule", "backend"), list(_tied_cases()))
def test_compiled_steps_that_return_the_state_keep_a_tied_weight(rule, backend):
    """``state, model = compiled(model, state, x)``, a weight shared by two layers: the
    compiled call returns the caller's own arrays (as eager ``fl.update`` does), so the tie
    and the in-place counters survive the rebinding. Before, the results were copies: the
    returned model held two arrays where it had one (on NumPy the steps after the first
    trained them apart, silently; 0.3 off after 6 Adam steps), and on XLA a 0-d counter
    came back as an ``np.int64``, which the next call refused ('changed the number'). The
    returned state keeps the tied weight's one Leaf (it came back as two, so that an
    ``fl.adjust`` of one path left the Leaf the step used as it was)."""
    compiled = fl.compile(_tied_step, backend=_backend(backend), background=False)
    runs = []
    for step in (compiled, _tied_step):
        rng = np.random.default_rng(1)
        w = rng.standard_normal((3, 3))
        model = {"a": {"w": w}, "b": {"w": w}}
        state = fl.setup(copy.deepcopy(rule), model)
        for k in range(4):
            if k == 2 and "eta" in rule.names():  # (the tied weight's one Leaf: both paths)
                fl.adjust(state["b"], eta=0.05)
            state, model, _ = step(model, state, rng.standard_normal((5, 3)))
            assert model["a"]["w"] is model["b"]["w"]
            assert model["a"]["w"] is w  # (stepped in place, as eagerly)
            assert state["a"]["w"] is state["b"]["w"]
        runs.append((model, state))
    _compare(runs[0], runs[1], f"{rule} on {backend}")
    assert not np.array_equal(runs[1][0]["a"]["w"], np.random.default_rng(1).standard_normal(
        (3, 3)))
