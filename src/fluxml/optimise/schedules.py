"""Learning-rate schedules: small objects giving the learning rate at step ``t`` (counted from
0). Apply one by hand with ``fl.adjust(state, eta=schedule(t))`` before each update; the
training loop does the same.

>>> import fluxml as fl
>>> s = fl.CosineAnneal(0.1, period=100, warmup=10)
>>> round(s(0), 4), round(s(10), 4), round(s(60), 4), s(110)
(0.01, 0.1, 0.05, 0.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fluxml._checks import positive_int, real_in


def _check_step(t):
    if t < 0:
        raise ValueError(f"schedule: the step t counts from 0, got {t}")


@dataclass(frozen=True)
class StepDecay:
    """``start * decay ** (t // step)``: multiply by ``decay`` every ``step`` steps.
    PyTorch: ``StepLR(step_size=step, gamma=decay)``.

    >>> import fluxml as fl
    >>> [fl.StepDecay(1.0, 0.5, step=2)(t) for t in range(5)]
    [1.0, 1.0, 0.5, 0.5, 0.25]
    """

    start: float
    decay: float = 0.5
    step: int = 10

    def __post_init__(self):
        real_in("StepDecay", "start", self.start)
        real_in("StepDecay", "decay", self.decay)
        positive_int("StepDecay", "step (the steps between decays)", self.step)

    def __call__(self, t: int) -> float:
        _check_step(t)
        return self.start * self.decay ** (t // self.step)


@dataclass(frozen=True)
class ExpDecay:
    """``start * decay ** t``. PyTorch: ``ExponentialLR(gamma=decay)``.

    >>> import fluxml as fl
    >>> [round(fl.ExpDecay(1.0, 0.9)(t), 3) for t in range(3)]
    [1.0, 0.9, 0.81]
    """

    start: float
    decay: float = 0.99

    def __post_init__(self):
        real_in("ExpDecay", "start", self.start)
        real_in("ExpDecay", "decay", self.decay)

    def __call__(self, t: int) -> float:
        _check_step(t)
        return self.start * self.decay**t


@dataclass(frozen=True)
class CosineAnneal:
    """A linear warm-up from ``start / warmup`` to ``start`` over the first ``warmup`` steps,
    then half a cosine from ``start`` down to ``end`` over ``period`` steps, then ``end``.
    The warm-up reaches ``start`` at step ``warmup - 1`` and holds it one step; PyTorch's
    ``LinearLR(start_factor=1/warmup, total_iters=warmup)`` then ``CosineAnnealingLR(T_max=period,
    eta_min=end)`` ramps over one step more. Without warm-up the two agree up to step
    ``period``; past it PyTorch's cosine climbs back to ``start`` (it is periodic), where
    this one stays at ``end``.

    >>> import fluxml as fl
    >>> s = fl.CosineAnneal(1.0, end=0.0, period=4)
    >>> [round(s(t), 3) for t in range(6)]
    [1.0, 0.854, 0.5, 0.146, 0.0, 0.0]
    """

    start: float
    end: float = 0.0
    period: int = 100
    warmup: int = 0

    def __post_init__(self):
        real_in("CosineAnneal", "start", self.start)
        real_in("CosineAnneal", "end", self.end)
        positive_int("CosineAnneal", "period", self.period)
        positive_int("CosineAnneal", "warmup", self.warmup, minimum=0)

    def __call__(self, t: int) -> float:
        _check_step(t)
        if t < self.warmup:
            return self.start * (t + 1) / self.warmup
        u = min(t - self.warmup, self.period) / self.period
        return self.end + (self.start - self.end) * (1 + math.cos(math.pi * u)) / 2


@dataclass(frozen=True)
class OneCycle:
    """The one-cycle policy (Smith 2018) as PyTorch's ``OneCycleLR`` (cosine phases): from
    ``peak / div`` up to ``peak`` at step ``pct_start * total - 1`` (PyTorch's: where that is
    not a whole step, no step takes ``peak`` itself), then down to ``peak / div / final_div``
    at step ``total - 1``.

    >>> import fluxml as fl
    >>> s = fl.OneCycle(1.0, total=5, pct_start=0.5, div=10, final_div=10)
    >>> [round(s(t), 3) for t in range(5)]  # up from 0.1 (the peak at step 1.5), down to 0.01
    [0.1, 0.775, 0.905, 0.352, 0.01]
    """

    peak: float
    total: int
    pct_start: float = 0.3
    div: float = 25.0
    final_div: float = 1e4

    def __post_init__(self):
        real_in("OneCycle", "peak", self.peak)
        positive_int("OneCycle", "total (the steps of the cycle)", self.total, minimum=2)
        real_in("OneCycle", "pct_start", self.pct_start, 0, 1, low_open=True, high_open=True)
        real_in("OneCycle", "div (peak / the first value)", self.div, 0, low_open=True)
        real_in("OneCycle", "final_div (the first value / the last)", self.final_div, 0,
                low_open=True)

    def __call__(self, t: int) -> float:
        _check_step(t)
        low = self.peak / self.div
        top = self.pct_start * self.total - 1  # PyTorch's end of the rising phase
        if t <= top:
            return _cos_between(low, self.peak, t / top if top > 0 else 1.0)
        end = self.total - 1
        return _cos_between(self.peak, low / self.final_div, min((t - top) / (end - top), 1.0))


def _cos_between(a, b, u):
    """From ``a`` at ``u = 0`` to ``b`` at ``u = 1`` along half a cosine."""
    return b + (a - b) * (1 + math.cos(math.pi * u)) / 2
