"""The Adam family: Adam, AdamW, RAdam, NAdam, AdaMax, AMSGrad, OAdam, AdaBelief.

Names, hyperparameters and defaults are Optimisers.jl's (``eta, beta, epsilon``; PyTorch
says ``lr, betas, eps``). Moments are updated in place, and the update is written into the
caller's scratch array: Adam is twelve passes over memory per parameter array and allocates
nothing.

>>> import numpy as np, fluxml as fl
>>> rule = fl.Adam(0.1)
>>> x, dx = np.array([1.0, -1.0]), np.array([0.5, -2.0])
>>> state, upd = rule.apply(rule.init(x), x, dx)
>>> upd  # the first Adam step is eta * sign(dx), nearly
array([ 0.1, -0.1])
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from fluxml._checks import flag
from fluxml.optimise.base import (
    Rule,
    blend,
    check_beta,
    check_epsilon,
    check_eta,
    check_lambd,
    divide_live,
    divide_scaled,
    eps_for,
    floats,
    lerp,
    lerp_square,
    number,
    on,
    scratch,
    sqrt,
    step_count,
    tick,
)


class AdamState(NamedTuple):
    m: np.ndarray  # first moment (running mean of dx)
    v: np.ndarray  # second moment (running mean of dx**2)
    t: np.ndarray  # steps taken (a 0-d int64 array, counted in place)


def _zeros_state(x):
    return AdamState(np.zeros_like(x), np.zeros_like(x), step_count())


def _moments(m, v, dx, b1, b2, out):
    lerp(m, dx, 1.0 - b1, out)
    lerp_square(v, dx, 1.0 - b2, out)


def _corrected(m, v, t, b1, b2, eps, scale, out):
    """``out = scale * mhat / (sqrt(vhat) + eps)`` with the bias corrections ``mhat = m / (1 -
    b1**t)``, ``vhat = v / (1 - b2**t)`` folded into two scalars (as PyTorch's Adam), computed
    in float64 (Python floats eagerly) and rounded once, where they meet the arrays."""
    root = sqrt(1.0 - b2**t)
    np.sqrt(v, out=out)
    divide_live(m, out, eps * root)  # (float16: 0 where v underflowed to 0)
    out *= number(scale * root / (1.0 - b1**t), out)
    return out


class _AdamLike(Rule):
    elementwise = True
    counts_vector = True  # the counts reach the arrays only through number()
    hyperparameters = ("eta", "beta", "epsilon")

    def __post_init__(self):
        check_eta(type(self).__name__, self.eta)
        check_beta(type(self).__name__, self.beta)
        check_epsilon(type(self).__name__, self.epsilon)

    def init(self, x):
        return _zeros_state(x)

    def _hyper(self, x, out):
        """``(b1, b2, eta, eps, out)``: the hyperparameters as Python floats, ``eps`` raised
        for float16, and the scratch array."""
        (b1, b2), (eta, eps) = floats(*self.beta), floats(self.eta, self.epsilon)
        return b1, b2, eta, eps_for(eps, x), scratch(out, x)


@dataclass
class Adam(_AdamLike):
    """Adam: ``m = b1 m + (1-b1) dx``, ``v = b2 v + (1-b2) dx**2``, ``x -= eta mhat /
    (sqrt(vhat) + epsilon)`` with bias-corrected ``mhat, vhat``. PyTorch: ``Adam(lr=eta,
    betas=beta, eps=epsilon)``, the same steps.

    >>> import numpy as np, fluxml as fl
    >>> model = {"w": np.array([1.0, -2.0])}
    >>> state = fl.setup(fl.Adam(0.1), model)
    >>> state, model = fl.update(state, model, {"w": np.array([0.5, -3.0])})
    >>> model["w"]  # the first step moves each entry by eta against its gradient's sign
    array([ 0.9, -1.9])
    """

    eta: float = 0.001
    beta: tuple = (0.9, 0.999)
    epsilon: float = 1e-8

    def apply(self, state, x, dx, out=None):
        b1, b2, eta, eps, out = self._hyper(x, out)
        m, v, t = state
        t, n = tick(t)
        _moments(m, v, dx, b1, b2, out)
        return AdamState(m, v, t), _corrected(m, v, n, b1, b2, eps, eta, out)


@dataclass
class AdamW(_AdamLike):
    """Adam with decoupled weight decay ``lambd`` (Optimisers.jl's ``lambda``, PyTorch's
    ``weight_decay``, default 0.01 there, 0 here). With ``couple=True`` (default, as PyTorch's
    ``AdamW``) ``x -= eta (adam + lambd x)``; with ``couple=False`` ``x -= eta adam + lambd x``.

    >>> import numpy as np, fluxml as fl
    >>> model = {"w": np.array([1.0, -2.0])}
    >>> state = fl.setup(fl.AdamW(0.1, lambd=0.5), model)
    >>> state, model = fl.update(state, model, {"w": np.array([0.5, -3.0])})
    >>> model["w"]  # x - 0.1 (sign(dx) + 0.5 x)
    array([ 0.85, -1.8 ])
    """

    eta: float = 0.001
    beta: tuple = (0.9, 0.999)
    lambd: float = 0.0
    epsilon: float = 1e-8
    couple: bool = True
    hyperparameters = ("eta", "beta", "lambd", "epsilon")
    switches = ("lambd",)  # (compiled without weight decay while it is exactly 0)

    def __post_init__(self):
        super().__post_init__()
        check_lambd("AdamW", self.lambd)
        self.couple = flag("AdamW", "couple", self.couple)

    def apply(self, state, x, dx, out=None):
        b1, b2, eta, eps, out = self._hyper(x, out)
        (lam,) = floats(self.lambd)
        m, v, t = state
        t, n = tick(t)
        _moments(m, v, dx, b1, b2, out)
        _corrected(m, v, n, b1, b2, eps, eta, out)
        if on(lam):
            out += number(eta * lam if self.couple else lam, x) * x
        return AdamState(m, v, t), out


@dataclass
class RAdam(_AdamLike):
    """Rectified Adam (Liu et al. 2019): Adam's step times the variance rectification ``r``
    once the approximated SMA length ``rho_t`` exceeds 4, plain bias-corrected momentum before.
    PyTorch: ``RAdam(lr=eta, betas=beta, eps=epsilon)``, whose threshold is 5.

    >>> import numpy as np, fluxml as fl
    >>> model = {"w": np.array([1.0, -2.0])}
    >>> state = fl.setup(fl.RAdam(0.1), model)
    >>> state, model = fl.update(state, model, {"w": np.array([0.5, -3.0])})
    >>> model["w"]  # the first steps: momentum without the variance
    array([ 0.95, -1.7 ])
    """

    eta: float = 0.001
    beta: tuple = (0.9, 0.999)
    epsilon: float = 1e-8

    def apply(self, state, x, dx, out=None):
        b1, b2, eta, eps, out = self._hyper(x, out)
        m, v, t = state
        t, n = tick(t)
        _moments(m, v, dx, b1, b2, out)
        rho_inf = 2.0 / (1.0 - b2) - 1.0
        if type(n) is not int:  # traced (fl.compile): no branch on the count
            return AdamState(m, v, t), _rectified_traced(m, v, n, b1, b2, eps, eta, rho_inf,
                                                         out)
        n = float(n)
        rho = _rho(n, b2, rho_inf)
        if rho > 4.0:
            r = math.sqrt(_r2(rho, rho_inf))
            _corrected(m, v, n, b1, b2, eps, eta * r, out)
        else:
            np.multiply(m, eta / (1.0 - b1**n), out=out)
        return AdamState(m, v, t), out


def _rho(n, b2, rho_inf):
    """RAdam's length of the approximated simple moving average at step ``n``."""
    bn = b2**n
    return rho_inf - 2.0 * n * bn / (1.0 - bn)


def _r2(rho, rho_inf):
    """The square of RAdam's variance rectification term (for ``rho > 4``)."""
    return (rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho)


def _rectified_traced(m, v, n, b1, b2, eps, eta, rho_inf, out):
    """RAdam's update for a traced count ``n`` (a vector of counts in a grouped step): both
    of the eager branches, the one that applies picked by ``np.where``. The test ``rho > 4``
    and the scalars are computed in float64 from the count, as eagerly, and reach the arrays
    through ``number`` (so RAdam counts a vector as the rest of the family)."""
    rho = _rho(n.astype(np.float64), b2, rho_inf)
    rect = rho > 4.0
    # (the root of a negative number where rho <= 4: that branch's value is not picked)
    r2 = np.where(rect, _r2(rho, rho_inf), 1.0)
    _corrected(m, v, n, b1, b2, eps, eta * np.sqrt(r2), out)
    plain = np.multiply(m, number(eta / (1.0 - b1**n), out))
    return np.where(number(rect, out) != 0, out, plain)


@dataclass
class NAdam(_AdamLike):
    """Nesterov-accelerated Adam (Dozat 2016), in Optimisers.jl's form:
    ``x -= eta (b1 m / (1 - b1**(t+1)) + (1-b1) dx / (1 - b1**t)) / (sqrt(b2 v / (1 - b2**t))
    + epsilon)``. PyTorch's ``NAdam`` adds a momentum-decay schedule (``momentum_decay=4e-3``)
    and so takes different steps.

    >>> import numpy as np, fluxml as fl
    >>> model = {"w": np.array([1.0, -2.0])}
    >>> state = fl.setup(fl.NAdam(0.1), model)
    >>> state, model = fl.update(state, model, {"w": np.array([0.5, -3.0])})
    >>> model["w"].round(4)
    array([ 0.8526, -1.8526])
    """

    eta: float = 0.001
    beta: tuple = (0.9, 0.999)
    epsilon: float = 1e-8

    def apply(self, state, x, dx, out=None):
        b1, b2, eta, eps, out = self._hyper(x, out)
        m, v, t = state
        t, n = tick(t)
        _moments(m, v, dx, b1, b2, out)
        # (out= an array: a 0-d v would give a NumPy scalar, which sqrt cannot write into)
        denom = np.multiply(v, number(b2 / (1.0 - b2**n), v), out=np.empty_like(v))
        np.sqrt(denom, out=denom)
        np.multiply(m, number(b1 / (1.0 - b1 ** (n + 1)), out), out=out)
        out += dx * number((1.0 - b1) / (1.0 - b1**n), out)
        np.copyto(out, divide_live(out, denom, eps))  # (float16: 0 where v underflowed)
        out *= number(eta, out)
        return AdamState(m, v, t), out


@dataclass
class AdaMax(_AdamLike):
    """AdaMax (Kingma and Ba 2014), Adam with the infinity norm: ``u = max(b2 u, |dx|)``,
    ``x -= eta / (1 - b1**t) * m / (u + epsilon)``. PyTorch: ``Adamax(lr=eta (default 0.002),
    betas=beta, eps=epsilon)``, which adds ``eps`` inside the max.

    >>> import numpy as np, fluxml as fl
    >>> model = {"w": np.array([1.0, -2.0])}
    >>> state = fl.setup(fl.AdaMax(0.1), model)
    >>> for _ in range(2):
    ...     state, model = fl.update(state, model, {"w": np.array([0.5, -3.0])})
    >>> model["w"]  # 0.1 against the sign, each step
    array([ 0.8, -1.8])
    """

    eta: float = 0.001
    beta: tuple = (0.9, 0.999)
    epsilon: float = 1e-8

    def apply(self, state, x, dx, out=None):
        b1, b2, eta, eps, out = self._hyper(x, out)
        m, u, t = state
        t, n = tick(t)
        lerp(m, dx, 1.0 - b1, out)
        u *= number(b2, u)
        np.abs(dx, out=out)
        np.maximum(u, out, out=u)
        np.add(u, number(eps, out), out=out)
        np.divide(m, out, out=out)
        out *= number(eta / (1.0 - b1**n), out)
        return AdamState(m, u, t), out


class AMSGradState(NamedTuple):
    m: np.ndarray
    v: np.ndarray
    vmax: np.ndarray  # the largest v so far


@dataclass
class AMSGrad(_AdamLike):
    """AMSGrad (Reddi et al. 2018): Adam's moments, divided by the running maximum of ``v``,
    without bias correction (as Optimisers.jl; the states start at ``epsilon``). PyTorch's
    ``Adam(amsgrad=True)`` corrects the bias.

    >>> import numpy as np, fluxml as fl
    >>> model = {"w": np.array([1.0, -2.0])}
    >>> state = fl.setup(fl.AMSGrad(0.1), model)
    >>> state, model = fl.update(state, model, {"w": np.array([0.5, -3.0])})
    >>> model["w"].round(4)
    array([ 0.6838, -1.6838])
    """

    eta: float = 0.001
    beta: tuple = (0.9, 0.999)
    epsilon: float = 1e-8

    def init(self, x):
        return AMSGradState(*(np.full_like(x, self.epsilon) for _ in range(3)))

    def apply(self, state, x, dx, out=None):
        b1, b2, eta, eps, out = self._hyper(x, out)
        m, v, vmax = state
        _moments(m, v, dx, b1, b2, out)
        np.maximum(vmax, v, out=vmax)
        np.sqrt(vmax, out=out)
        return state, divide_scaled(m, out, eps, eta)


class OAdamState(NamedTuple):
    m: np.ndarray
    v: np.ndarray
    t: np.ndarray
    term: np.ndarray  # the previous Adam step


@dataclass
class OAdam(_AdamLike):
    """Optimistic Adam (Daskalakis et al. 2018), for adversarial training: with ``a_t`` Adam's
    step, ``x -= 2 a_t - a_(t-1)``. Not in PyTorch.

    >>> import numpy as np, fluxml as fl
    >>> model = {"w": np.array([1.0, -2.0])}
    >>> state = fl.setup(fl.OAdam(0.1), model)
    >>> state, model = fl.update(state, model, {"w": np.array([0.5, -3.0])})
    >>> model["w"]  # twice this step's Adam, less the last's (none yet)
    array([ 0.8, -1.8])
    """

    eta: float = 0.001
    beta: tuple = (0.5, 0.9)
    epsilon: float = 1e-8

    def init(self, x):
        return OAdamState(np.zeros_like(x), np.zeros_like(x), step_count(), np.zeros_like(x))

    def apply(self, state, x, dx, out=None):
        b1, b2, eta, eps, out = self._hyper(x, out)
        m, v, t, term = state
        t, n = tick(t)
        _moments(m, v, dx, b1, b2, out)
        _corrected(m, v, n, b1, b2, eps, eta, out)  # out = a_t
        np.subtract(out, term, out=term)  # term = a_t - a_(t-1)
        out += term  # the update 2 a_t - a_(t-1)
        np.subtract(out, term, out=term)  # term = a_t, for the next step
        return OAdamState(m, v, t, term), out


@dataclass
class AdaBelief(_AdamLike):
    """AdaBelief (Zhuang et al. 2020): Adam with ``s = b2 s + (1-b2) (dx - m)**2 + epsilon`` (the
    belief in the gradient) in place of ``v``. Not in PyTorch.

    >>> import numpy as np, fluxml as fl
    >>> model = {"w": np.array([1.0, -2.0])}
    >>> state = fl.setup(fl.AdaBelief(0.1), model)
    >>> state, model = fl.update(state, model, {"w": np.array([0.5, -3.0])})
    >>> model["w"].round(4)
    array([ 0.8889, -1.8889])
    """

    eta: float = 0.001
    beta: tuple = (0.9, 0.999)
    epsilon: float = 1e-16

    def apply(self, state, x, dx, out=None):
        b1, b2, eta, eps, out = self._hyper(x, out)
        m, s, t = state
        t, n = tick(t)
        lerp(m, dx, 1.0 - b1, out)
        np.subtract(dx, m, out=out)
        np.square(out, out=out)
        blend(s, out, 1.0 - b2)
        s += number(eps, s)
        return AdamState(m, s, t), _corrected(m, s, n, b1, b2, eps, eta, out)
