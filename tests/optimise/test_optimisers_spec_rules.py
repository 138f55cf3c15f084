"""Optimisers.jl's rules as its source writes them (src/rules.jl, each ``apply!``), written out
here in NumPy and run against fluxml's rules over several steps: the update formulas are the
specification that rules.jl's convergence tests ("independence", "simple sum", "original")
only sample. A reference is ``init(rule) -> (state, step)`` with ``step(state, x, dx) ->
(state, update)`` and ``x -= update``. (Run by hand, every rule at its defaults, and
rules.jl's chains, also pass its "original" testset: 10^4 steps to a loss under 1e-3.)
"""

import numpy as np
import pytest

import fluxml as fl

sqrt = np.sqrt


def _beta_powers(bt, beta):
    return bt[0] * beta[0], bt[1] * beta[1]


def _moments(m, v, g, beta):
    """The Adam family's first and second moments, as each apply! updates them."""
    return beta[0] * m + (1 - beta[0]) * g, beta[1] * v + (1 - beta[1]) * g ** 2


def descent(o):
    return None, lambda s, x, g: (s, o.eta * g)


def momentum(o):
    def step(v, x, g):
        v = o.rho * v + o.eta * g
        return v, v
    return 0.0, step


def nesterov(o):
    def step(v, x, g):
        update = -o.rho ** 2 * v + (1 + o.rho) * o.eta * g  # (the old velocity)
        return o.rho * v - o.eta * g, update
    return 0.0, step


def rmsprop(o):
    def step(s, x, g):
        quad, lin = s
        quad = o.rho * quad + (1 - o.rho) * g ** 2
        if o.centred:
            lin = o.rho * lin + (1 - o.rho) * g
        return (quad, lin), g * o.eta / (sqrt(quad - lin ** 2) + o.epsilon)
    return (0.0, 0.0), step


def rprop(o):
    def step(s, x, g):
        prev, eta = s
        eta = np.where(prev * g > 0, np.minimum(eta * o.ell[1], o.gamma[1]),
                       np.where(prev * g < 0, np.maximum(eta * o.ell[0], o.gamma[0]), eta))
        prev = np.where(prev * g < 0, 0.0, g)
        return (prev, eta), eta * np.sign(prev)
    return (0.0, o.eta), step


def adam(o):
    def step(s, x, g):
        m, v, bt = s
        m, v = _moments(m, v, g, o.beta)
        update = m / (1 - bt[0]) / (sqrt(v / (1 - bt[1])) + o.epsilon) * o.eta
        return (m, v, _beta_powers(bt, o.beta)), update
    return (0.0, 0.0, o.beta), step


def lion(o):
    b1, b2 = o.beta

    def step(m, x, g):
        m = b2 * g + (1 - b2) * m
        return m, o.eta * np.sign((b2 - b1) * g + b1 * m)
    return 0.0, step


def radam(o):
    rho_inf = 2 / (1 - o.beta[1]) - 1

    def step(s, x, g):
        m, v, bt, t = s
        m, v = _moments(m, v, g, o.beta)
        rho = rho_inf - 2 * t * bt[1] / (1 - bt[1])
        if rho > 4:
            r = sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
            update = m / (1 - bt[0]) / (sqrt(v / (1 - bt[1])) + o.epsilon) * o.eta * r
        else:
            update = m / (1 - bt[0]) * o.eta
        return (m, v, _beta_powers(bt, o.beta), t + 1), update
    return (0.0, 0.0, o.beta, 1), step


def adamax(o):
    b1, b2 = o.beta

    def step(s, x, g):
        m, u, bt = s
        m, u = b1 * m + (1 - b1) * g, np.maximum(b2 * u, np.abs(g))
        return (m, u, _beta_powers(bt, o.beta)), (o.eta / (1 - bt[0])) * m / (u + o.epsilon)
    return (0.0, 0.0, o.beta), step


def oadam(o):
    def step(s, x, g):
        m, v, bt, term = s
        m, v = _moments(m, v, g, o.beta)
        new = o.eta * m / (1 - bt[0]) / (sqrt(v / (1 - bt[1])) + o.epsilon)
        return (m, v, _beta_powers(bt, o.beta), new), 2 * new - term
    return (0.0, 0.0, o.beta, 0.0), step


def adagrad(o):
    def step(acc, x, g):
        acc = acc + g ** 2
        return acc, g * o.eta / (sqrt(acc) + o.epsilon)
    return o.epsilon, step


def adadelta(o):
    def step(s, x, g):
        acc, dacc = s
        acc = o.rho * acc + (1 - o.rho) * g ** 2
        update = g * sqrt(dacc + o.epsilon) / sqrt(acc + o.epsilon)  # (the old dacc)
        return (acc, o.rho * dacc + (1 - o.rho) * update ** 2), update
    return (0.0, 0.0), step


def amsgrad(o):
    def step(s, x, g):
        m, v, vmax = s
        m, v = _moments(m, v, g, o.beta)
        vmax = np.maximum(vmax, v)
        return (m, v, vmax), o.eta * m / (sqrt(vmax) + o.epsilon)
    return (o.epsilon,) * 3, step


def nadam(o):
    b1, b2 = o.beta

    def step(s, x, g):
        m, v, bt = s
        m, v = _moments(m, v, g, o.beta)
        update = ((b1 * m / (1 - b1 * bt[0]) + (1 - b1) * g / (1 - bt[0]))
                  / (sqrt(v * b2 / (1 - bt[1])) + o.epsilon) * o.eta)
        return (m, v, _beta_powers(bt, o.beta)), update
    return (0.0, 0.0, o.beta), step


def adamw(o):
    def step(s, x, g):
        m, v, bt = s
        m, v = _moments(m, v, g, o.beta)
        update = m / (1 - bt[0]) / (sqrt(v / (1 - bt[1])) + o.epsilon)  # Adam at eta = 1
        update = o.eta * (update + o.lambd * x) if o.couple else o.eta * update + o.lambd * x
        return (m, v, _beta_powers(bt, o.beta)), update
    return (0.0, 0.0, o.beta), step


def adabelief(o):
    b1, b2 = o.beta

    def step(s, x, g):
        m, var, bt = s
        m = b1 * m + (1 - b1) * g
        var = b2 * var + (1 - b2) * (g - m) ** 2 + o.epsilon
        update = o.eta * m / (1 - bt[0]) / (sqrt(var / (1 - bt[1])) + o.epsilon)
        return (m, var, _beta_powers(bt, o.beta)), update
    return (0.0, 0.0, o.beta), step


REF = {fl.Descent: descent, fl.Momentum: momentum, fl.Nesterov: nesterov,
       fl.RMSProp: rmsprop, fl.Rprop: rprop, fl.Adam: adam, fl.Lion: lion, fl.RAdam: radam,
       fl.AdaMax: adamax, fl.OAdam: oadam, fl.AdaGrad: adagrad, fl.AdaDelta: adadelta,
       fl.AMSGrad: amsgrad, fl.NAdam: nadam, fl.AdamW: adamw, fl.AdaBelief: adabelief}

RULES = [fl.Descent(0.1), fl.Momentum(0.05, 0.8), fl.Nesterov(0.05, 0.8), fl.RMSProp(0.01),
         fl.RMSProp(0.01, centred=True), fl.Rprop(0.01), fl.Adam(0.01), fl.Lion(0.01),
         fl.RAdam(0.01), fl.AdaMax(0.01), fl.OAdam(0.01), fl.AdaGrad(0.1), fl.AdaDelta(0.9),
         fl.AMSGrad(0.01), fl.NAdam(0.01), fl.AdamW(0.01, lambd=0.1),
         fl.AdamW(0.01, lambd=0.1, couple=False), fl.AdaBelief(0.01)]


@pytest.mark.parametrize("rule", RULES, ids=repr)
def test_rule_against_optimisers_jl_formulas(rule):
    """Eight steps of random gradients whose signs flip (Rprop's step sizes and Lion's signs
    both ways; RAdam passes its rectification threshold on the way) from one start."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(6)
    reference = x.copy()
    state = fl.setup(rule, x)
    ref_state, step = REF[type(rule)](rule)
    for t in range(8):
        g = rng.standard_normal(6) * (1 if t % 3 else -1)
        fl.update(state, x, g.copy())
        ref_state, update = step(ref_state, reference, g)
        reference = reference - update
        np.testing.assert_allclose(x, reference, rtol=1e-12, atol=1e-14)
