"""Rules that transform the gradient before another rule sees it, and the chain that
composes them: ClipGrad, ClipNorm, WeightDecay, SignDecay, AccumGrad, OptimiserChain.

>>> import numpy as np, fluxml as fl
>>> rule = fl.OptimiserChain(fl.ClipGrad(1.0), fl.Descent(0.1))
>>> model = [np.zeros(3)]
>>> state = fl.setup(rule, model)
>>> state, model = fl.update(state, model, [np.array([0.3, 1.0, 7.0])])
>>> model[0]  # clipped, then scaled
array([-0.03, -0.1 , -0.1 ])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from fluxml.optimise.base import Rule, scratch


@dataclass
class ClipGrad(Rule):
    """Clip each gradient entry to ``[-delta, delta]``. PyTorch: ``clip_grad_value_``."""

    elementwise = True

    delta: float = 10.0

    def apply(self, state, x, dx, out=None):
        d = float(self.delta)
        return state, np.clip(dx, -d, d, out=scratch(out, x))


@dataclass
class ClipNorm(Rule):
    """Scale each gradient array whose ``p``-norm exceeds ``omega`` down to ``omega``; with
    ``throw`` a NaN or infinite norm is an error. Per array, as Optimisers.jl; PyTorch's
    ``clip_grad_norm_(max_norm=omega, norm_type=p)`` takes one norm over all arrays."""

    omega: float = 10.0
    p: float = 2.0
    throw: bool = True

    def apply(self, state, x, dx, out=None):
        nrm = float(np.linalg.norm(np.ravel(dx, order="K"), ord=self.p))  # no copy
        if self.throw and not np.isfinite(nrm):
            raise FloatingPointError(
                f"ClipNorm: the gradient of an array of shape {np.shape(x)} has {self.p}-norm "
                f"{nrm}; find the NaN or Inf in the loss, or pass throw=False to skip the check")
        if not nrm > self.omega:
            return state, dx
        return state, np.multiply(dx, float(self.omega) / nrm, out=scratch(out, x))


@dataclass
class WeightDecay(Rule):
    """L2 regularisation: ``dx + lambd x`` (Optimisers.jl's ``lambda``; PyTorch's
    ``weight_decay`` argument of ``SGD``/``Adam``). Put it first in an ``OptimiserChain``."""

    elementwise = True

    lambd: float = 5e-4

    def apply(self, state, x, dx, out=None):
        lam = float(self.lambd)
        if out is None or out is dx:
            return state, dx + lam * x
        np.multiply(x, lam, out=out)
        out += dx
        return state, out


@dataclass
class SignDecay(Rule):
    """L1 regularisation: ``dx + lambd sign(x)``. Put it first in an ``OptimiserChain``."""

    elementwise = True

    lambd: float = 1e-3

    def apply(self, state, x, dx, out=None):
        lam = float(self.lambd)
        if out is None or out is dx:
            return state, dx + lam * np.sign(x)
        np.sign(x, out=out)
        out *= lam
        out += dx
        return state, out


class AccumState(NamedTuple):
    acc: np.ndarray  # the mean of the gradients so far
    count: int  # gradients seen in this round


@dataclass
class AccumGrad(Rule):
    """Accumulate ``n`` gradients, then pass their mean on (nothing is applied in between):
    ``OptimiserChain(AccumGrad(4), Adam())`` trains as with four times the batch."""

    n: int = 1

    def __post_init__(self):
        if not (isinstance(self.n, int) and self.n >= 1):
            raise ValueError(f"AccumGrad: n must be a positive integer, got {self.n!r}")

    def init(self, x):
        return AccumState(np.zeros_like(x), 0)

    def apply(self, state, x, dx, out=None):
        acc, count = state
        if count == 0:
            np.multiply(dx, 1.0 / self.n, out=acc)
        else:
            acc += dx * (1.0 / self.n)
        if count + 1 < self.n:
            return AccumState(acc, count + 1), None
        return AccumState(acc, 0), acc


@dataclass(init=False)
class OptimiserChain(Rule):
    """Apply ``rules`` in order, each to the update of the one before; an empty chain is
    ``Descent(1)``. Its state is a tuple of the rules' states."""

    rules: tuple = ()

    def __init__(self, *rules: Rule):
        for r in rules:
            if not isinstance(r, Rule):
                raise TypeError(f"OptimiserChain: expected optimisation rules, got {r!r}")
        self.rules = tuple(rules)

    def __repr__(self):
        return f"OptimiserChain({', '.join(map(repr, self.rules))})"

    def init(self, x):
        return tuple(r.init(x) for r in self.rules)

    def apply(self, state, x, dx, out=None):
        states = list(state)
        for i, r in enumerate(self.rules):
            # a rule may write into ``out`` while reading ``dx``: never lend it the array
            # it reads
            states[i], dx = r.apply(states[i], x, dx, None if dx is out else out)
            if dx is None:  # AccumGrad is still collecting
                return tuple(states), None
        return tuple(states), dx

    def adjust(self, **changes) -> OptimiserChain:
        return OptimiserChain(*(r.adjust(**changes) for r in self.rules))

    def names(self) -> set:
        return set().union(*(r.names() for r in self.rules))
