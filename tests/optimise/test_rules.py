"""Every optimisation rule against its update equations, written out here independently of
``fluxml.optimise`` (plain NumPy, float64, one step at a time), plus convergence on a convex
problem, float32, ``None`` gradients and frozen leaves. One table drives them all; a rule
exported without a row fails ``test_every_rule_has_a_row``."""

import math
import warnings

import numpy as np
import pytest

import fluxml as fl
from fluxml.optimise import Rule

# --- reference implementations: ref(rule, x, grads) yields x after each step ---------------


def ref_descent(r, x, gs):
    for g in gs:
        x = x - r.eta * g
        yield x


def ref_momentum(r, x, gs):
    v = 0 * x
    for g in gs:
        v = r.rho * v + r.eta * g
        x = x - v
        yield x


def ref_nesterov(r, x, gs):
    v = 0 * x
    for g in gs:
        step = -(r.rho**2) * v + (1 + r.rho) * r.eta * g
        v = r.rho * v - r.eta * g
        x = x - step
        yield x


def ref_rmsprop(r, x, gs):
    quad, lin = 0 * x, 0 * x
    for g in gs:
        quad = r.rho * quad + (1 - r.rho) * g**2
        if r.centred:
            lin = r.rho * lin + (1 - r.rho) * g
        x = x - r.eta * g / (np.sqrt(quad - lin**2) + r.epsilon)
        yield x


def ref_rprop(r, x, gs):
    prev, step = 0 * x, 0 * x + r.eta
    for g in gs:
        for i in np.ndindex(x.shape):
            if prev[i] * g[i] > 0:
                step[i] = min(step[i] * r.ell[1], r.gamma[1])
                prev[i] = g[i]
            elif prev[i] * g[i] < 0:
                step[i] = max(step[i] * r.ell[0], r.gamma[0])
                prev[i] = 0.0
            else:
                prev[i] = g[i]
        x = x - step * np.sign(prev)
        yield x


def ref_adagrad(r, x, gs):
    acc = 0 * x + r.epsilon
    for g in gs:
        acc = acc + g**2
        x = x - r.eta * g / (np.sqrt(acc) + r.epsilon)
        yield x


def ref_adadelta(r, x, gs):
    acc, delta = 0 * x, 0 * x
    for g in gs:
        acc = r.rho * acc + (1 - r.rho) * g**2
        u = g * np.sqrt(delta + r.epsilon) / np.sqrt(acc + r.epsilon)
        delta = r.rho * delta + (1 - r.rho) * u**2
        x = x - u
        yield x


def ref_lion(r, x, gs):
    m = 0 * x
    b1, b2 = r.beta
    for g in gs:
        x = x - r.eta * np.sign(b1 * m + (1 - b1) * g)
        m = b2 * m + (1 - b2) * g
        yield x


def _adam_moments(r, gs, x):
    """m_t, v_t, t for t = 1, 2, ..."""
    m, v = 0 * x, 0 * x
    b1, b2 = r.beta
    for t, g in enumerate(gs, 1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        yield g, m, v, t


def ref_adam(r, x, gs):
    b1, b2 = r.beta
    for _, m, v, t in _adam_moments(r, gs, x):
        mhat, vhat = m / (1 - b1**t), v / (1 - b2**t)
        x = x - r.eta * mhat / (np.sqrt(vhat) + r.epsilon)
        yield x


def ref_adamw(r, x, gs):
    b1, b2 = r.beta
    for _, m, v, t in _adam_moments(r, gs, x):
        a = (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + r.epsilon)
        x = x - (r.eta * (a + r.lambd * x) if r.couple else r.eta * a + r.lambd * x)
        yield x


def ref_radam(r, x, gs):
    b1, b2 = r.beta
    rho_inf = 2 / (1 - b2) - 1
    for _, m, v, t in _adam_moments(r, gs, x):
        rho = rho_inf - 2 * t * b2**t / (1 - b2**t)
        mhat = m / (1 - b1**t)
        if rho > 4:
            num = (rho - 4) * (rho - 2) * rho_inf
            rect = math.sqrt(num / ((rho_inf - 4) * (rho_inf - 2) * rho))
            x = x - r.eta * rect * mhat / (np.sqrt(v / (1 - b2**t)) + r.epsilon)
        else:
            x = x - r.eta * mhat
        yield x


def ref_nadam(r, x, gs):
    b1, b2 = r.beta
    for g, m, v, t in _adam_moments(r, gs, x):
        num = b1 * m / (1 - b1 ** (t + 1)) + (1 - b1) * g / (1 - b1**t)
        x = x - r.eta * num / (np.sqrt(b2 * v / (1 - b2**t)) + r.epsilon)
        yield x


def ref_adamax(r, x, gs):
    b1, b2 = r.beta
    m, u = 0 * x, 0 * x
    for t, g in enumerate(gs, 1):
        m = b1 * m + (1 - b1) * g
        u = np.maximum(b2 * u, np.abs(g))
        x = x - r.eta / (1 - b1**t) * m / (u + r.epsilon)
        yield x


def ref_amsgrad(r, x, gs):
    b1, b2 = r.beta
    m, v, vmax = (0 * x + r.epsilon for _ in range(3))
    for g in gs:
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        vmax = np.maximum(vmax, v)
        x = x - r.eta * m / (np.sqrt(vmax) + r.epsilon)
        yield x


def ref_oadam(r, x, gs):
    b1, b2 = r.beta
    prev = 0 * x
    for _, m, v, t in _adam_moments(r, gs, x):
        a = r.eta * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + r.epsilon)
        x = x - (2 * a - prev)
        prev = a
        yield x


def ref_adabelief(r, x, gs):
    b1, b2 = r.beta
    m, s = 0 * x, 0 * x
    for t, g in enumerate(gs, 1):
        m = b1 * m + (1 - b1) * g
        s = b2 * s + (1 - b2) * (g - m) ** 2 + r.epsilon
        x = x - r.eta * (m / (1 - b1**t)) / (np.sqrt(s / (1 - b2**t)) + r.epsilon)
        yield x


def ref_clipgrad(r, x, gs):
    for g in gs:
        x = x - np.minimum(np.maximum(g, -r.delta), r.delta)
        yield x


def ref_clipnorm(r, x, gs):
    for g in gs:
        n = np.sum(np.abs(g) ** r.p) ** (1 / r.p)
        x = x - (g * r.omega / n if n > r.omega else g)
        yield x


def ref_weightdecay(r, x, gs):
    for g in gs:
        x = x - (g + r.lambd * x)
        yield x


def ref_signdecay(r, x, gs):
    for g in gs:
        x = x - (g + r.lambd * np.sign(x))
        yield x


def ref_accumgrad(r, x, gs):
    total = 0 * x
    for i, g in enumerate(gs, 1):
        total = total + g
        if i % r.n == 0:
            x = x - total / r.n
            total = 0 * x
        yield x


def ref_chain_clip_descent(r, x, gs):
    clip, descent = r.rules
    for g in gs:
        x = x - descent.eta * np.clip(g, -clip.delta, clip.delta)
        yield x


def ref_chain_decay_adam(r, x, gs):
    decay, adam = r.rules
    b1, b2 = adam.beta
    m, v = 0 * x, 0 * x
    for t, g in enumerate(gs, 1):
        g = g + decay.lambd * x
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        x = x - adam.eta * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + adam.epsilon)
        yield x


def ref_chain_accum_momentum(r, x, gs):
    accum, mom = r.rules
    total, vel = 0 * x, 0 * x
    for i, g in enumerate(gs, 1):
        total = total + g
        if i % accum.n == 0:
            vel = mom.rho * vel + mom.eta * total / accum.n
            x = x - vel
            total = 0 * x
        yield x


def ref_mixed(r, x, gs):
    """The inner rule's steps, on a copy in r.dtype (float64 here: the same steps)."""
    return {fl.Adam: ref_adam, fl.Momentum: ref_momentum}[type(r.rule)](r.rule, x, gs)


def ref_empty_chain(r, x, gs):
    for g in gs:
        x = x - g
        yield x


# --- the table: rule for the equations, its reference, rule for the convex problem ---------

ROWS = [
    (fl.Descent(0.1), ref_descent, fl.Descent(0.5)),
    (fl.Momentum(0.05, 0.8), ref_momentum, fl.Momentum(0.1, 0.8)),
    (fl.Nesterov(0.05, 0.8), ref_nesterov, fl.Nesterov(0.1, 0.8)),
    (fl.RMSProp(0.01), ref_rmsprop, fl.RMSProp(0.01)),
    (fl.RMSProp(0.01, 0.8, 1e-6, centred=True), ref_rmsprop, fl.RMSProp(0.01, centred=True)),
    (fl.Rprop(0.01), ref_rprop, fl.Rprop(0.01)),
    (fl.AdaGrad(0.2), ref_adagrad, fl.AdaGrad(0.5)),
    (fl.AdaDelta(0.8, 1e-3), ref_adadelta, fl.AdaDelta(0.9, 1e-2)),
    (fl.Lion(0.01, (0.8, 0.95)), ref_lion, fl.Lion(0.005)),
    (fl.Adam(0.01, (0.8, 0.95)), ref_adam, fl.Adam(0.05)),
    (fl.AdamW(0.01, (0.8, 0.95), 0.1), ref_adamw, fl.AdamW(0.05)),
    (fl.AdamW(0.01, lambd=0.1, couple=False), ref_adamw, None),
    (fl.RAdam(0.01, (0.8, 0.95)), ref_radam, fl.RAdam(0.05)),
    (fl.NAdam(0.01, (0.8, 0.95)), ref_nadam, fl.NAdam(0.05)),
    (fl.AdaMax(0.01, (0.8, 0.95)), ref_adamax, fl.AdaMax(0.05)),
    (fl.AMSGrad(0.01, (0.8, 0.95)), ref_amsgrad, fl.AMSGrad(0.05)),
    (fl.OAdam(0.01), ref_oadam, fl.OAdam(0.02)),
    (fl.AdaBelief(0.01, (0.8, 0.95), 1e-8), ref_adabelief, fl.AdaBelief(0.05)),
    (fl.ClipGrad(0.5), ref_clipgrad, fl.ClipGrad(0.5)),
    (fl.ClipNorm(1.0), ref_clipnorm, fl.ClipNorm(1.0)),
    (fl.ClipNorm(1.5, 1.0), ref_clipnorm, None),
    (fl.WeightDecay(0.1), ref_weightdecay, None),
    (fl.SignDecay(0.1), ref_signdecay, None),
    (fl.AccumGrad(3), ref_accumgrad, fl.AccumGrad(2)),
    (fl.OptimiserChain(fl.ClipGrad(0.5), fl.Descent(0.3)), ref_chain_clip_descent,
     fl.OptimiserChain(fl.ClipGrad(0.5), fl.Descent(0.3))),
    (fl.OptimiserChain(fl.WeightDecay(0.1), fl.Adam(0.01)), ref_chain_decay_adam,
     fl.OptimiserChain(fl.WeightDecay(1e-4), fl.Adam(0.05))),
    (fl.OptimiserChain(fl.AccumGrad(2), fl.Momentum(0.05, 0.8)), ref_chain_accum_momentum,
     fl.OptimiserChain(fl.AccumGrad(2), fl.Momentum(0.1, 0.8))),
    (fl.OptimiserChain(), ref_empty_chain, fl.OptimiserChain()),
    (fl.MixedPrecision(np.float64, fl.Momentum(0.05, 0.8)), ref_mixed,
     fl.MixedPrecision(np.float64, fl.Momentum(0.1, 0.8))),
    (fl.MixedPrecision(np.float64, fl.Adam(0.01, (0.8, 0.95))), ref_mixed, None),
]
IDS = [repr(r) for r, _, _ in ROWS]


def test_every_rule_has_a_row():
    rules = {name for name in fl.optimise.__all__
             if isinstance(getattr(fl.optimise, name), type)
             and issubclass(getattr(fl.optimise, name), Rule)
             and name != "Rule"}
    covered = {type(r).__name__ for r, _, _ in ROWS}
    covered |= {type(s).__name__ for r, _, _ in ROWS if isinstance(r, fl.OptimiserChain)
                for s in r.rules}
    assert rules <= covered, sorted(rules - covered)


def _grads(shape, steps, seed):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape) for _ in range(steps)]


@pytest.mark.parametrize("rule, ref, _", ROWS, ids=IDS)
def test_steps_follow_the_equations(rule, ref, _):
    rng = np.random.default_rng(1)
    x0 = rng.standard_normal((4, 3))
    gs = _grads(x0.shape, 7, 2)
    # sign changes are what Rprop reacts to: make some entries keep their sign
    gs[1][0] = np.abs(gs[0][0]) * np.sign(gs[0][0])
    model = {"w": x0.copy()}
    state = fl.setup(rule, model)
    for g, want in zip(gs, ref(rule, x0.copy(), gs)):
        state, model = fl.update(state, model, {"w": g})
        np.testing.assert_allclose(model["w"], want, rtol=1e-10, atol=1e-12)


CONVEX = [c for _, _, c in ROWS if c is not None]


@pytest.mark.parametrize("rule", CONVEX, ids=[repr(c) for c in CONVEX])
def test_converges_on_a_convex_problem(rule):
    rng = np.random.default_rng(3)
    h, c = rng.uniform(0.5, 1.5, 10), rng.standard_normal(10)
    loss = lambda x: 0.5 * np.sum(h * (x - c) ** 2)
    x = np.zeros(10)
    state = fl.setup(rule, [x])
    for _ in range(600):
        state, _ = fl.update(state, [x], [h * (x - c)])
    assert loss(x) < 1e-3 * loss(np.zeros(10)), (loss(x), loss(np.zeros(10)))


@pytest.mark.parametrize("rule, ref, _", ROWS, ids=IDS)
def test_float32_stays_float32(rule, ref, _):
    x = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)
    state = fl.setup(rule, [x])
    for i, g in enumerate(_grads(x.shape, 4, 4)):
        # float32 gradients, and float64 ones laid out as transposes
        g = g.astype(np.float32) if i % 2 else np.ascontiguousarray(g.T).T
        state, _ = fl.update(state, [x], [g])
    assert x.dtype == np.float32
    # (MixedPrecision keeps its copy and the inner state in its own dtype, by design)
    want = rule.dtype if isinstance(rule, fl.MixedPrecision) else np.float32
    for leaf in fl.tree.leaves(state[0].state):
        if isinstance(leaf, np.ndarray) and leaf.dtype.kind == "f":  # not the step count
            assert leaf.dtype == want, leaf.dtype


@pytest.mark.parametrize("rule, ref, _", ROWS, ids=IDS)
def test_none_gradients_and_frozen_leaves_skip(rule, ref, _):
    model = {"a": np.ones(3), "b": np.ones(3), "c": np.ones(3)}
    state = fl.setup(rule, model)
    fl.freeze(state["c"])
    before = {k: [np.copy(s) for s in fl.tree.leaves(state[k].state)] for k in model}
    g = np.array([1.0, -2.0, 3.0])
    for _ in range(6):
        state, model = fl.update(state, model, {"a": g, "b": None, "c": g})
    for k in "bc":
        np.testing.assert_array_equal(model[k], np.ones(3))
        for s0, s1 in zip(before[k], fl.tree.leaves(state[k].state)):
            np.testing.assert_array_equal(s0, s1)
    if not isinstance(rule, fl.WeightDecay | fl.SignDecay):
        assert not np.array_equal(model["a"], np.ones(3))
    fl.thaw(state["c"])
    for _ in range(6):  # AccumGrad applies every n-th gradient
        state, model = fl.update(state, model, {"a": None, "b": None, "c": g})
    assert not np.array_equal(model["c"], np.ones(3))


def test_mixed_precision_keeps_small_steps_of_a_float16_model():
    model = {"w": np.full(3, 1.0, np.float16)}
    state = fl.setup(fl.MixedPrecision(fl.Descent(1e-4)), model)
    plain = {"w": model["w"].copy()}
    plain_state = fl.setup(fl.Descent(1e-4), plain)
    g = np.ones(3, np.float16)
    for _ in range(20):
        state, model = fl.update(state, model, {"w": g})
        plain_state, plain = fl.update(plain_state, plain, {"w": g})
    master = state["w"].state.master
    assert master.dtype == np.float32 and model["w"].dtype == np.float16
    np.testing.assert_allclose(master, 1 - 20e-4, rtol=1e-6)
    np.testing.assert_array_equal(model["w"], master.astype(np.float16))  # the copy, rounded
    np.testing.assert_array_equal(plain["w"], 1.0)  # each step rounds away in float16
    assert repr(fl.MixedPrecision(fl.Descent(0.1))) == "MixedPrecision(float32, Descent(eta=0.1))"
    assert fl.MixedPrecision(fl.Adam()).adjust(eta=0.5).rule.eta == 0.5
    with pytest.raises(TypeError, match="MixedPrecision: expected an optimisation rule"):
        fl.MixedPrecision(np.float32, 0.1)
    with pytest.raises(TypeError, match="the copy's dtype must be a float type"):
        fl.MixedPrecision(np.int32, fl.Descent())
    with pytest.raises(TypeError, match=r"takes \(rule\) or \(dtype, rule\); got 3"):
        fl.MixedPrecision(np.float32, fl.Descent(), 1)


def _steps_without_averaging(name, grads, eta=1e-3, b1=0.5, eps=1e-8):
    """By hand, in float64: the steps of the rules below with the second moment's decay rate
    0 (RMSProp rho=0, Adam and AdaBelief beta[1]=0, AdaDelta rho=0)."""
    m, delta, steps = 0.0, 0.0, []
    for t, g in enumerate(grads, 1):
        m = b1 * m + (1 - b1) * g
        if name == "RMSProp":
            steps.append(eta * g / (abs(g) + eps))
        elif name == "Adam":
            steps.append(eta * m / (1 - b1**t) / (abs(g) + eps))
        elif name == "AdaBelief":
            steps.append(eta * m / (1 - b1**t) / (math.sqrt((g - m) ** 2 + eps) + eps))
        else:  # AdaDelta
            u = g * math.sqrt(delta + eps) / math.sqrt(g * g + eps)
            delta = u * u
            steps.append(u)
    return steps


@pytest.mark.parametrize("rule", [fl.RMSProp(1e-3, 0.0), fl.Adam(1e-3, (0.5, 0.0)),
                                  fl.AdaBelief(1e-3, (0.5, 0.0), 1e-8), fl.AdaDelta(0.0)],
                         ids=lambda r: type(r).__name__)
def test_second_moment_without_averaging_takes_the_new_square(rule):
    # The moments were kept as acc + w (g**2 - acc): with w = 1 its error is an ulp of the old
    # acc, and where the new square was below it the moment came out 0 or noise: float32
    # RMSProp(rho=0) and Adam(beta=(b1, 0)) stepped 1e4 times too far after a gradient 1
    # then 1e-4; AdaBelief 12% off where dx - m shrank, AdaDelta 41% off
    second = {"AdaBelief": 0.5001}.get(type(rule).__name__, 1e-4)  # (dx - m = 5e-5)
    grads = np.array([1.0, second, 3e-4], np.float32)
    model = {"w": np.zeros(1, np.float32)}
    state = fl.setup(rule, model)
    got = []
    for g in grads:
        before = model["w"].astype(np.float64)
        fl.update(state, model, {"w": np.array([g])})
        got.append(float(before[0] - model["w"][0]))
    want = _steps_without_averaging(type(rule).__name__, grads.astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=1e-3)


@pytest.mark.parametrize(("low", "high"), [(np.float16, np.float32), (np.float32, np.float64)])
@pytest.mark.parametrize("compiled", [False, True])
def test_mixed_precision_sets_the_parameter_to_its_copy_rounded_across_zero(low, high,
                                                                           compiled):
    # The step was returned as the update x - m (in x's dtype), and x - (x - m) is m rounded
    # only where x and m are within a factor 2: where weights crossed 0 a third of them were
    # off by up to an ulp of the old x (float32 0.0064042266 stepped to -0.0015432802 gave
    # -0.0015432797)
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(64) * 0.01).astype(low)
    target = rng.standard_normal(64) * 0.01  # half of the weights cross 0
    model = {"w": x.copy()}
    state = fl.setup(fl.MixedPrecision(high, fl.Descent(1.0)), model)

    def step(model, state, grads):
        fl.update(state, model, grads)
        return 0.0

    run = fl.compile(step, background=False) if compiled else step
    g = {"w": x.astype(np.float64) - target}  # Descent(1): the copy becomes x - g
    run(model, state, g)
    master = state["w"].state.master
    np.testing.assert_array_equal(master, x.astype(high) - g["w"].astype(high))
    np.testing.assert_array_equal(model["w"], master.astype(low))  # the copy, rounded
    # by hand: apply sets x itself and gives no update to subtract
    y = np.array([0.0064], low)
    rule = fl.MixedPrecision(high, fl.Descent(1.0))
    st, update = rule.apply(rule.init(y), y, np.array([0.0064 + 0.0015432802], high))
    assert update is None and y[0] == st.master.astype(low)[0]


@pytest.mark.parametrize("convert", [fl.f16, fl.f32, fl.f64])
@pytest.mark.parametrize("chained", [False, True])
def test_precision_conversion_keeps_mixed_precisions_copy(convert, chained):
    # fl.f16(state) turned the float32 copy (and the inner rule's state of it) into float16:
    # the small steps it is there to keep then rounded away, silently
    model = {"w": np.full(3, 1.0, np.float16)}
    rule = fl.Momentum(1e-4, 0.5)  # (chained: the chain inside MixedPrecision, the only way
    rule = fl.MixedPrecision(fl.OptimiserChain(fl.ClipGrad(10.0), rule) if chained else rule)
    state = convert(fl.setup(rule, model))  # round OptimiserChain takes it)
    mixed = state["w"].state
    velocity = mixed.state[1] if chained else mixed.state
    assert mixed.master.dtype == velocity.dtype == np.float32
    x, velocity = 1.0, 0.0
    for _ in range(20):  # Momentum by hand, in float64: v = rho v + eta g; x -= v
        velocity = 0.5 * velocity + 1e-4
        x -= velocity
        state, model = fl.update(state, model, {"w": np.ones(3, np.float16)})
    mixed = state["w"].state
    np.testing.assert_allclose(mixed.master, x, rtol=1e-6)
    np.testing.assert_array_equal(model["w"], mixed.master.astype(np.float16))


def _adadelta_by_hand(grads, rho, eps, x0=1.0):
    """AdaDelta's steps in float64, by its equations."""
    acc = delta = np.zeros_like(grads[0])
    x, steps = np.full_like(grads[0], x0), []
    for g in grads:
        acc = rho * acc + (1 - rho) * g ** 2
        u = g * np.sqrt(delta + eps) / np.sqrt(acc + eps)
        delta = rho * delta + (1 - rho) * u ** 2
        x = x - u
        steps.append(u)
    return steps


def test_adadelta_float16_steps_are_those_of_epsilon_raised_to_1e_7():
    # what AdaDelta's docstring says of float16: epsilon 1e-8 is raised to 1e-7 (else 0 in
    # float16: no step ever, or NaN at a zero gradient, as PyTorch's), so the first step is
    # 3.45 times float64's (1e-7 is 1.19e-7 in float16, a subnormal); epsilon=1e-6 is kept.
    # (The first step only: later ones hang on delta, about 0.1 u**2 ~ 1e-7, a float16
    # subnormal spaced 6e-8 apart.)
    g = np.random.default_rng(0).standard_normal(4).astype(np.float16).astype(np.float64)
    for eps, want_eps in ((1e-8, 1e-7), (1e-6, 1e-6)):
        x0 = 1 / 32  # (float16 spacing there: 2**-16, 1.5% of a step of 1e-3)
        model = {"w": np.full(4, x0, np.float16)}
        state, model = fl.update(fl.setup(fl.AdaDelta(0.9, eps), model), model,
                                 {"w": g.astype(np.float16)})
        want = _adadelta_by_hand([g], 0.9, float(np.float16(want_eps)))[0]
        np.testing.assert_allclose(x0 - model["w"].astype(np.float64), want, rtol=0.03)
    first64 = _adadelta_by_hand([g], 0.9, 1e-8)[0]
    first16 = _adadelta_by_hand([g], 0.9, float(np.float16(1e-7)))[0]
    np.testing.assert_allclose(first16 / first64, 3.45, rtol=2e-3)
    model = {"w": np.ones(4, np.float16)}
    state, model = fl.update(fl.setup(fl.AdaDelta(), model), model,
                             {"w": np.zeros(4, np.float16)})
    np.testing.assert_array_equal(model["w"], 1.0)  # a zero gradient: no step, no NaN


@pytest.mark.parametrize("throw", [True, False])
def test_clipnorm_differentiated_through_a_step(throw):
    """fl.gradient of a loss after a step of ClipNorm (as meta-learning differentiates a
    training step): with throw=True the norm went through the finiteness check, whose value
    carries no derivative, so the clipped step ``omega dx / |dx|`` was differentiated as if
    the norm were a constant (the gradient 58% off here). By hand: the step from ``x`` with
    the gradient ``x`` is ``x - omega x / |x|``."""
    omega = 0.5
    rng = np.random.default_rng(0)
    x0, c = rng.standard_normal(5), rng.standard_normal(5)

    def loss(x):
        model = {"w": x * 1.0}
        state = fl.setup(fl.OptimiserChain(fl.ClipNorm(omega, 2.0, throw), fl.Descent(1.0)),
                         model)
        fl.update(state, model, {"w": model["w"]})  # (|x0| > omega: clipped)
        return np.sum(c * model["w"])

    n = np.linalg.norm(x0)
    want = c - omega * (c / n - x0 * np.dot(x0, c) / n**3)
    np.testing.assert_allclose(loss(x0), np.sum(c * (x0 - omega * x0 / n)), rtol=1e-12)
    np.testing.assert_allclose(fl.gradient(loss, x0)[0], want, rtol=1e-10)


@pytest.mark.parametrize("throw", [True, False])
@pytest.mark.parametrize("p", [2.0, 1.0, 3.0])
def test_clipnorm_of_a_finite_gradient_whose_powers_overflow(throw, p):
    """float32 entries of 1e20: NumPy's norm summed their squares into inf, so ClipNorm
    raised 'has 2.0-norm inf' on a finite gradient (throw=True) or scaled the step by
    omega / inf to nothing (throw=False), where Optimisers.jl (Julia's norm rescales)
    clips it to norm omega. The norm is taken of dx / max|dx| now, in float64, by hand
    here; a gradient holding Inf is still refused."""
    dx = np.array([1e20, -1e20, 2e20, 0.0], np.float32)
    model = {"w": np.zeros(4, np.float32)}
    state = fl.setup(fl.OptimiserChain(fl.ClipNorm(0.5, p, throw), fl.Descent(1.0)), model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (NumPy's overflow warning is not shown either)
        fl.update(state, model, {"w": dx})
    nrm = np.sum(np.abs(dx.astype(np.float64)) ** p) ** (1 / p)  # finite in float64
    np.testing.assert_allclose(model["w"], -dx.astype(np.float64) * 0.5 / nrm, rtol=1e-6)
    if throw:
        with pytest.raises(FloatingPointError, match="has .*-norm inf"):
            fl.update(state, model, {"w": np.array([np.inf, 1, 0, 0], np.float32)})


@pytest.mark.parametrize("throw", [True, False])
def test_compiled_clipnorm_of_a_finite_gradient_whose_powers_overflow(throw):
    """Compiled, ClipNorm's norm of float32 entries of 3e19 and 4e19 was inf (no branch to the
    eager rescaling): it raised, or without throw zeroed the step (review); it is taken in
    float64 there."""
    def step(state, model, grads):
        return fl.update(state, model, grads)

    compiled = fl.compile(step)
    for _ in range(2):  # (the first call traces)
        model = {"w": np.zeros(2, np.float32)}
        state = fl.setup(fl.OptimiserChain(fl.ClipNorm(1.0, throw=throw), fl.Descent(1.0)),
                         model)
        state, model = compiled(state, model, {"w": np.array([3e19, 4e19], np.float32)})
        np.testing.assert_allclose(model["w"], [-0.6, -0.8], rtol=1e-6)
        assert model["w"].dtype == np.float32
