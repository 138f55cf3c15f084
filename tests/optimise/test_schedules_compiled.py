"""Schedules and ``fl.adjust`` between calls of a compiled training step: hyperparameters are
inputs of the program (``fluxml.compiler.numbers``), so a schedule applied by hand before each
call reuses one trace, on the NumPy and XLA back ends, and trains as the eager steps do; a
weight decay switched between 0 and not 0 traces once for each. Fuzzed: random chains of
rules under random sequences of ``adjust``."""

import contextlib
import copy
import warnings

import numpy as np
import pytest

import fluxml as fl
from tests.optimise.test_rules_compiled import _backend, _compare, _model, _step


def _run(rules, step, schedules, steps, seed=0):
    """Train a small model per rule; before step ``k``, part ``j`` of the state gets
    ``fl.adjust(state[j], **schedules[j](k))``. Returns ``(model, state)``."""
    rng = np.random.default_rng(seed)
    model = _model(rng, len(rules))
    state = {j: fl.setup(copy.deepcopy(rule), model[j]) for j, rule in enumerate(rules)}
    for k in range(steps):
        for j, schedule in enumerate(schedules):
            changes = schedule(k)
            if changes:
                fl.adjust(state[j], **changes)
        step(model, state, rng.standard_normal((5, 3)).astype(np.float32))
    return model, state


@pytest.mark.parametrize("backend", ["numpy", "xla"])
def test_cosine_and_one_cycle_schedules_by_hand_compile_once(backend):
    """Ten compiled steps under a cosine schedule with warm-up (down to 0, at the end), a
    one-cycle schedule (PyTorch's names) and step decays: one trace, no re-trace warning, the
    eager steps' results; AccumGrad, ClipNorm and a chain among the rules."""
    cosine = fl.CosineAnneal(0.02, period=6, warmup=3)
    cycle = fl.OneCycle(0.1, total=10)
    decay, halve = fl.ExpDecay(0.05, 0.8), fl.StepDecay(0.5, 0.5, 3)
    rules = [fl.OptimiserChain(fl.AccumGrad(2), fl.ClipNorm(1.0), fl.AdamW(0.02, lambd=0.05)),
             fl.Momentum(0.1),
             fl.OptimiserChain(fl.ClipGrad(0.5), fl.Nesterov(0.05))]
    schedules = [lambda k: {"eta": cosine(k), "omega": 1.0 - 0.05 * k},
                 lambda k: {"lr": cycle(k), "rho": 0.95 - 0.01 * k},
                 lambda k: {"eta": decay(k), "delta": halve(k)}]
    assert cosine(9) == 0.0
    if backend == "xla":  # (each part is a compile of its own there, of seconds: one)
        rules, schedules = rules[:1], schedules[:1]
    compiled = fl.compile(_step, backend=_backend(backend), background=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = _run(rules, compiled, schedules, 10)
    assert compiled.traces == 1
    assert not [w for w in caught if "traced" in str(w.message)]
    want = _run(rules, _step, schedules, 10)
    _compare(got, want)
    assert got[1][0]["w"].rule.rules[2].eta == cosine(9)
    fixed = _run(rules, _step, [lambda k: {}] * len(rules), 10)  # the schedules mattered
    for j in range(len(rules)):
        assert not np.allclose(fixed[0][j]["w"], got[0][j]["w"])


def test_weight_decay_switched_off_and_on_traces_once_each():
    """AdamW's ``lambd`` is a switch: at 0 the step is traced without weight decay (no
    input, no work), otherwise with it as an input; each trace is reused when it comes back.
    """
    values = [0.0, 0.1, 0.0, 0.2, 0.05, 0.0]
    schedule = [lambda k: {"lambd": values[k]}]
    compiled = fl.compile(_step)
    got = _run([fl.AdamW(0.01)], compiled, schedule, len(values))
    _compare(got, _run([fl.AdamW(0.01)], _step, schedule, len(values)))
    assert compiled.traces == 2
    sources = [entry.source.split("\n", 1)[0] for entry in compiled.cache.values()]
    assert sorted("lambd" in s for s in sources) == [False, True]


# --- fuzz ------------------------------------------------------------------------------------

POOL = [lambda r: fl.Descent(r.uniform(0.01, 0.1)), lambda r: fl.Momentum(0.05),
        lambda r: fl.Nesterov(0.02), lambda r: fl.RMSProp(0.01, centred=bool(r.integers(2))),
        lambda r: fl.Adam(0.01), lambda r: fl.AdamW(0.01, lambd=float(r.choice([0.0, 0.1]))),
        lambda r: fl.RAdam(0.01), lambda r: fl.NAdam(0.01), lambda r: fl.AdaMax(0.01),
        lambda r: fl.AdaGrad(0.05), lambda r: fl.AdaDelta(), lambda r: fl.AMSGrad(0.01),
        lambda r: fl.OAdam(0.01), lambda r: fl.AdaBelief(0.01), lambda r: fl.Lion(0.005),
        lambda r: fl.Rprop(0.01), lambda r: fl.ClipGrad(0.5), lambda r: fl.ClipNorm(1.0),
        lambda r: fl.WeightDecay(0.05), lambda r: fl.SignDecay(0.01), lambda r: fl.AccumGrad(2)]

# a valid random value of each hyperparameter (0 sometimes, where 0 is allowed)
VALUES = {
    "eta": lambda r: float(r.choice([0.0, r.uniform(1e-3, 0.05)], p=[0.1, 0.9])),
    "rho": lambda r: r.uniform(0.5, 0.99),
    "beta": lambda r: (r.uniform(0.5, 0.95), r.uniform(0.9, 0.999)),
    "epsilon": lambda r: 10 ** r.uniform(-8, -3),
    "lambd": lambda r: float(r.choice([0.0, r.uniform(0.0, 0.1)])),
    "delta": lambda r: r.uniform(0.1, 1.0),
    "omega": lambda r: r.uniform(0.2, 2.0),
    "ell": lambda r: (r.uniform(0.3, 0.7), r.uniform(1.1, 1.5)),
    "gamma": lambda r: (r.uniform(1e-6, 1e-4), r.uniform(0.01, 50.0)),
}


def _random_rule(rng):
    rules = [POOL[i](rng) for i in rng.choice(len(POOL), int(rng.integers(1, 4)),
                                              replace=False)]
    return rules[0] if len(rules) == 1 else fl.OptimiserChain(*rules)


def _random_schedule(rng, rule, steps):
    """Changes drawn in advance: before each step, maybe some of the rule's hyperparameters."""
    names = sorted({n for r in getattr(rule, "rules", (rule,)) for n in r.hyperparameters})
    plan = []
    for _ in range(steps):
        some = [n for n in names if rng.random() < 0.4]
        plan.append({n: VALUES[n](rng) for n in some})
    return plan.__getitem__


def _switches(state):
    """Which AdamW weight decays are on (each combination is a trace of its own)."""
    return tuple(r.lambd != 0 for leaf in fl.optimise.interface._leaves(state)
                 for r in getattr(leaf.rule, "rules", (leaf.rule,)) if type(r) is fl.AdamW)


@pytest.mark.parametrize(("seed", "backend"), [(s, "numpy") for s in range(5)]
                         + [pytest.param(5, "xla", marks=pytest.mark.slow)])
def test_random_chains_under_random_adjusts_compile_as_eager(seed, backend):
    rng = np.random.default_rng(seed)
    rules = [_random_rule(rng) for _ in range(2)]
    steps = 5
    schedules = [_random_schedule(rng, rule, steps) for rule in rules]
    compiled = fl.compile(_step, backend=_backend(backend), background=False)
    seen = set()

    def step(model, state, x):  # the compiled step, noting each call's weight decay switches
        seen.add(_switches(state))
        return compiled(model, state, x)

    with np.errstate(all="ignore"):  # (Descent at eta 0 and friends: nothing to warn about)
        got = _run(rules, step, schedules, steps, seed)
        want = _run(rules, _step, schedules, steps, seed)
    _compare(got, want, f"{rules}")
    assert compiled.traces == len(seen), rules


@pytest.mark.parametrize("rule", [fl.Adam(0.01), fl.RMSProp(0.01), fl.AdaDelta(), fl.NAdam(0.01)],
                         ids=lambda r: type(r).__name__)
def test_float16_raises_a_traced_epsilon_as_eagerly(rule):
    """For float16 arrays ``epsilon`` is raised to 1e-7 (``eps_for``): a traced one through
    ``np.maximum``, each call's value, so a zero gradient steps as eagerly (no 0/0)."""

    def step(model, state, g):
        fl.update(state, model, g)

    runs = []
    for f in (step, fl.compile(step)):
        rng = np.random.default_rng(0)
        model = {"w": rng.standard_normal((3, 4)).astype(np.float16)}
        state = fl.setup(copy.deepcopy(rule), model)
        for k, eps in enumerate([1e-8, 1e-6, 1e-9]):
            fl.adjust(state, epsilon=eps)
            with np.errstate(invalid="ignore"):
                f(model, state, {"w": (rng.standard_normal((3, 4)) * (k > 0)).astype(np.float16)})
        runs.append(model["w"])
    assert f.traces == 1
    np.testing.assert_array_equal(runs[1], runs[0])
    assert np.isfinite(runs[1]).all()


def test_a_schedule_across_the_tiered_switch_keeps_one_trace():
    """The XLA back end's tiered start (the NumPy code serves while XLA compiles): the
    hyperparameters are inputs of both codes, so a schedule applied before every call keeps
    one trace across the switch and trains as the eager steps do."""
    pytest.importorskip("jax")
    from fluxml.compiler import tiered

    rules = [fl.OptimiserChain(fl.ClipGrad(0.5), fl.Adam(0.01))]
    schedules = [lambda k: {"eta": 0.01 * (1 + k)}]
    compiled = fl.compile(_step, backend="xla")
    tiers = []
    hold = contextlib.ExitStack()

    def step(model, state, x):
        compiled(model, state, x)
        tiers.append(compiled.tier)
        if len(tiers) == 3:  # three steps on NumPy's code, the rest on XLA's
            hold.close()
            compiled.wait()

    hold.enter_context(tiered.held())
    got = _run(rules, step, schedules, 6)
    assert tiers == ["numpy"] * 3 + ["xla"] * 3
    assert compiled.traces == 1
    _compare(got, _run(rules, _step, schedules, 6))
