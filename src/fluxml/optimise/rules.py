"""Gradient descent, momentum, and the rules that scale each entry by its own history:
Descent, Momentum, Nesterov, RMSProp, Rprop, AdaGrad, AdaDelta, Lion.

Names, hyperparameters and defaults are Optimisers.jl's; each docstring gives PyTorch's
names and defaults where they differ. The Adam family is in ``adam.py``; clipping, decay,
accumulation and chains in ``composite.py``.

>>> import numpy as np, fluxml as fl
>>> x = np.array([1.0, 2.0])
>>> state, upd = fl.Descent(0.1).apply(None, x, np.array([1.0, -1.0]))
>>> x - upd
array([0.9, 2.1])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import numpy as np

from fluxml._checks import flag
from fluxml.optimise.base import (
    Rule,
    _real,
    check_beta,
    check_epsilon,
    check_eta,
    check_rho,
    divide_scaled,
    eps_for,
    floats,
    lerp,
    lerp_square,
    number,
    scratch,
)


@dataclass
class Descent(Rule):
    """Plain gradient descent: ``x -= eta * dx``. PyTorch: ``SGD(lr=eta)``.

    >>> import numpy as np, fluxml as fl
    >>> model = {"w": np.array([1.0, -2.0])}
    >>> state = fl.setup(fl.Descent(0.1), model)
    >>> state, model = fl.update(state, model, {"w": np.array([0.5, -3.0])})
    >>> model["w"]  # x - 0.1 dx
    array([ 0.95, -1.7 ])
    """

    elementwise = True
    hyperparameters = ("eta",)

    eta: float = 0.1

    def __post_init__(self):
        check_eta("Descent", self.eta)

    def apply(self, state, x, dx, out=None):
        return state, np.multiply(dx, number(self.eta, dx), out=scratch(out, x))


@dataclass
class Momentum(Rule):
    """Gradient descent with momentum: ``v = rho v + eta dx``, ``x -= v``.

    PyTorch's ``SGD(lr, momentum)`` keeps ``b = momentum b + dx`` and subtracts ``lr b``:
    the same steps while ``lr`` is constant (``v = lr b``).

    >>> import numpy as np, fluxml as fl
    >>> model = {"w": np.array([1.0, -2.0])}
    >>> state = fl.setup(fl.Momentum(0.1, 0.9), model)
    >>> for _ in range(2):
    ...     state, model = fl.update(state, model, {"w": np.array([0.5, -3.0])})
    >>> model["w"]  # steps of 0.1 dx, then 0.19 dx
    array([ 0.855, -1.13 ])
    """

    elementwise = True
    hyperparameters = ("eta", "rho")

    eta: float = 0.01
    rho: float = 0.9

    def __post_init__(self):
        check_eta("Momentum", self.eta)
        check_rho("Momentum", self.rho, "the momentum")

    def init(self, x):
        return np.zeros_like(x)

    def apply(self, v, x, dx, out=None):
        out = scratch(out, x)
        v *= number(self.rho, v)
        np.multiply(dx, number(self.eta, out), out=out)
        v += out
        return v, v


@dataclass
class Nesterov(Rule):
    """Nesterov momentum: ``v' = rho v - eta dx``, ``x -= (1 + rho) eta dx - rho**2 v``.
    PyTorch: ``SGD(lr, momentum, nesterov=True)`` (the same up to the scaling of ``v``).

    >>> import numpy as np, fluxml as fl
    >>> model = {"w": np.array([1.0, -2.0])}
    >>> state = fl.setup(fl.Nesterov(0.1, 0.9), model)
    >>> state, model = fl.update(state, model, {"w": np.array([0.5, -3.0])})
    >>> model["w"]  # looks ahead: 0.19 dx
    array([ 0.905, -1.43 ])
    """

    elementwise = True
    hyperparameters = ("eta", "rho")

    eta: float = 0.001
    rho: float = 0.9

    def __post_init__(self):
        check_eta("Nesterov", self.eta)
        check_rho("Nesterov", self.rho, "the momentum")

    def init(self, x):
        return np.zeros_like(x)

    def apply(self, v, x, dx, out=None):
        out = scratch(out, x)
        rho = number(self.rho, v)
        np.multiply(dx, number(self.eta, out), out=out)  # eta dx
        v *= rho
        v -= out  # v' = rho v - eta dx
        # the update (1 + rho) eta dx - rho^2 v  ==  eta dx - rho v'
        out -= rho * v
        return v, out


class RMSPropState(NamedTuple):
    quad: np.ndarray  # running mean of dx**2
    lin: np.ndarray | None  # running mean of dx (centred variant only)


@dataclass
class RMSProp(Rule):
    """RMSProp: ``quad = rho quad + (1 - rho) dx**2``; ``x -= eta dx / (sqrt(quad) + epsilon)``.
    With ``centred=True`` the mean ``lin`` of ``dx`` is tracked too and ``quad - lin**2``
    replaces ``quad``. PyTorch: ``RMSprop(lr=eta, alpha=rho (default 0.99), eps=epsilon,
    centered=centred)``; ``adjust`` cannot change ``centred`` (the states differ).

    >>> import numpy as np, fluxml as fl
    >>> model = {"w": np.array([1.0, -2.0])}
    >>> state = fl.setup(fl.RMSProp(0.1), model)
    >>> state, model = fl.update(state, model, {"w": np.array([0.5, -3.0])})
    >>> model["w"].round(4)  # 0.1 / sqrt(1 - 0.9) against each sign
    array([ 0.6838, -1.6838])
    """

    elementwise = True
    hyperparameters = ("eta", "rho", "epsilon")

    eta: float = 0.001
    rho: float = 0.9
    epsilon: float = 1e-8
    centred: bool = False
    fixed: ClassVar[tuple] = ("centred",)

    def __post_init__(self):
        check_eta("RMSProp", self.eta)
        check_rho("RMSProp", self.rho)
        check_epsilon("RMSProp", self.epsilon)
        self.centred = flag("RMSProp", "centred", self.centred)

    def init(self, x):
        return RMSPropState(np.zeros_like(x), np.zeros_like(x) if self.centred else None)

    def apply(self, state, x, dx, out=None):
        eta, rho, eps = floats(self.eta, self.rho, self.epsilon)
        eps = eps_for(eps, x)
        out = scratch(out, x)
        quad, lin = state
        lerp_square(quad, dx, 1.0 - rho, out)
        if self.centred:
            lerp(lin, dx, 1.0 - rho, out)
            np.square(lin, out=out)
            np.subtract(quad, out, out=out)
            np.maximum(out, 0.0, out=out)  # >= 0 in exact arithmetic; rounding may dip below
            np.sqrt(out, out=out)
        else:
            np.sqrt(quad, out=out)
        return state, divide_scaled(dx, out, eps, eta)


class RpropState(NamedTuple):
    grad: np.ndarray  # the previous gradient (0 where its sign flipped)
    step: np.ndarray  # each entry's step size


@dataclass
class Rprop(Rule):
    """Rprop: each entry's step grows by ``ell[1]`` while its gradient keeps its sign and
    shrinks by ``ell[0]`` when it flips, within ``gamma``; ``x -= step * sign(dx)``.
    PyTorch: ``Rprop(lr=eta (default 0.01), etas=ell, step_sizes=gamma)``, the same steps
    where ``eta`` lies within ``gamma``. Outside it they differ, as Optimisers.jl's and
    PyTorch's do: the first step (and any after a zero gradient) is ``eta`` here, clamped into
    ``gamma`` by PyTorch.

    >>> import numpy as np, fluxml as fl
    >>> model = {"w": np.array([1.0, -2.0])}
    >>> state = fl.setup(fl.Rprop(0.1), model)
    >>> for _ in range(2):
    ...     state, model = fl.update(state, model, {"w": np.array([0.5, -3.0])})
    >>> model["w"]  # 0.1 against the sign, then 1.2 times more
    array([ 0.78, -1.78])
    """

    elementwise = True
    hyperparameters = ("eta", "ell", "gamma")  # (eta is read by init alone)

    eta: float = 1e-3
    ell: tuple = (0.5, 1.2)
    gamma: tuple = (1e-6, 50.0)

    def __post_init__(self):
        check_eta("Rprop", self.eta)
        ell, gamma = self.ell, self.gamma  # (as PyTorch's: 0 < etaminus < 1 < etaplus)
        if not (_pair(ell) and 0 < ell[0] < 1 < ell[1]):
            raise ValueError(f"Rprop: ell must be two numbers (the step's factors after a sign "
                             f"change and after none), 0 < ell[0] < 1 < ell[1]; got {ell!r}")
        if not (_pair(gamma) and 0 <= gamma[0] <= gamma[1]):
            raise ValueError(f"Rprop: gamma must be two numbers (the smallest and the largest "
                             f"step), 0 <= gamma[0] <= gamma[1]; got {gamma!r}")

    def init(self, x):
        return RpropState(np.zeros_like(x), np.full_like(x, self.eta))

    def apply(self, state, x, dx, out=None):
        g, step = state
        (down, up), (lo, hi) = self.ell, self.gamma
        down, up, lo, hi = (number(v, step) for v in (down, up, lo, hi))
        sign = np.sign(g * dx)
        flip = sign < 0
        np.copyto(step, np.minimum(step * up, hi), where=sign > 0)
        np.copyto(step, np.maximum(step * down, lo), where=flip)
        np.copyto(g, dx, casting="same_kind")
        np.copyto(g, 0.0, where=flip)  # (not g[flip] = 0, which fl.compile cannot trace)
        out = scratch(out, x)
        np.sign(g, out=out)
        out *= step
        return state, out


@dataclass
class AdaGrad(Rule):
    """AdaGrad: ``acc += dx**2``; ``x -= eta dx / (sqrt(acc) + epsilon)``, ``acc`` starting at
    ``epsilon``. PyTorch: ``Adagrad(lr=eta, eps=epsilon, initial_accumulator_value=epsilon)``
    takes the same steps (its defaults: ``lr=0.01``, ``eps=1e-10``,
    ``initial_accumulator_value=0``).

    >>> import numpy as np, fluxml as fl
    >>> model = {"w": np.array([1.0, -2.0])}
    >>> state = fl.setup(fl.AdaGrad(0.1), model)
    >>> state, model = fl.update(state, model, {"w": np.array([0.5, -3.0])})
    >>> model["w"]  # the first step: 0.1 against each sign
    array([ 0.9, -1.9])
    """

    elementwise = True
    hyperparameters = ("eta", "epsilon")

    eta: float = 0.1
    epsilon: float = 1e-8

    def __post_init__(self):
        check_eta("AdaGrad", self.eta)
        check_epsilon("AdaGrad", self.epsilon)

    def init(self, x):
        return np.full_like(x, self.epsilon)

    def apply(self, acc, x, dx, out=None):
        eta, eps = floats(self.eta, self.epsilon)
        eps = eps_for(eps, x)
        out = scratch(out, x)
        np.square(dx, out=out)
        acc += out
        np.sqrt(acc, out=out)
        return acc, divide_scaled(dx, out, eps, eta)


class AdaDeltaState(NamedTuple):
    acc: np.ndarray  # running mean of dx**2
    delta: np.ndarray  # running mean of the squared updates


@dataclass
class AdaDelta(Rule):
    """AdaDelta: ``acc = rho acc + (1 - rho) dx**2``;
    ``u = dx sqrt(delta + epsilon) / sqrt(acc + epsilon)``; ``delta = rho delta + (1 - rho)
    u**2``; ``x -= u``. No learning rate, as Optimisers.jl. PyTorch: ``Adadelta(lr=1.0,
    rho, eps=epsilon (1e-6))``.

    Float16 parameters: ``epsilon`` below 1e-7 is raised to 1e-7 there, as in every rule
    (Optimisers.jl's ``_eps``: 1e-8 rounds to 0 in float16, and PyTorch's float16 Adadelta
    with ``eps=1e-8`` never moves a weight, or gives NaN at a zero gradient). AdaDelta's
    steps scale with ``sqrt(epsilon)`` until ``delta`` has grown, so with the default 1e-8
    the first float16 steps are about 3.5x float64's (``sqrt(1.19e-7 / 1e-8)``: 1e-7 is
    1.19e-7 in float16). For float16 parameters pass ``epsilon=1e-6`` (PyTorch's default;
    float16 then follows float64 within a few percent), or keep a float32 copy with
    ``fl.MixedPrecision(fl.AdaDelta())``.

    >>> import numpy as np, fluxml as fl
    >>> model = {"w": np.array([1.0, -2.0])}
    >>> state = fl.setup(fl.AdaDelta(0.9), model)
    >>> state, model = fl.update(state, model, {"w": np.array([0.5, -3.0])})
    >>> model["w"].round(4)  # no learning rate: tiny first steps
    array([ 0.9997, -1.9997])
    """

    elementwise = True
    hyperparameters = ("rho", "epsilon")

    rho: float = 0.9
    epsilon: float = 1e-8

    def __post_init__(self):
        check_rho("AdaDelta", self.rho)
        check_epsilon("AdaDelta", self.epsilon)

    def init(self, x):
        return AdaDeltaState(np.zeros_like(x), np.zeros_like(x))

    def apply(self, state, x, dx, out=None):
        rho, eps = floats(self.rho, self.epsilon)
        acc, delta = state
        out = scratch(out, x)
        eps = number(eps_for(eps, x), out)
        lerp_square(acc, dx, 1.0 - rho, out)
        np.add(delta, eps, out=out)
        out /= acc + eps
        np.sqrt(out, out=out)
        out *= dx
        lerp_square(delta, out, 1.0 - rho, np.empty_like(out))
        return state, out


@dataclass
class Lion(Rule):
    """Lion (evolved sign momentum, Chen et al. 2023): ``x -= eta sign(beta[0] m + (1 -
    beta[0]) dx)``, then ``m = beta[1] m + (1 - beta[1]) dx``. As the paper, PyTorch's and
    Optax's Lion; PyTorch names ``lr=eta, betas=beta``.

    >>> import numpy as np, fluxml as fl
    >>> model = {"w": np.array([1.0, -2.0])}
    >>> state = fl.setup(fl.Lion(0.1), model)
    >>> for _ in range(2):
    ...     state, model = fl.update(state, model, {"w": np.array([0.5, -3.0])})
    >>> model["w"]  # 0.1 against the sign, each step
    array([ 0.8, -1.8])
    """

    elementwise = True
    hyperparameters = ("eta", "beta")

    eta: float = 0.001
    beta: tuple = (0.9, 0.999)

    def __post_init__(self):
        check_eta("Lion", self.eta)
        check_beta("Lion", self.beta)

    def init(self, x):
        return np.zeros_like(x)

    def apply(self, m, x, dx, out=None):
        b1, b2 = floats(*self.beta)
        out = scratch(out, x)
        np.subtract(dx, m, out=out)
        out *= number(1.0 - b1, out)
        out += m  # b1 m + (1 - b1) dx, from the old m
        np.sign(out, out=out)
        out *= number(self.eta, out)
        lerp(m, dx, 1.0 - b2, np.empty_like(m))
        return m, out


def _pair(t) -> bool:
    """Two real numbers (NaN, which no comparison admits, is refused by the caller's)."""
    return isinstance(t, (tuple, list)) and len(t) == 2 and all(_real(v) for v in t)
