"""Step-size control: the error norm, the PI controller and the automatic initial step.

All of it runs on plain values (``raw``): step sizes carry no derivative, in the direct mode
as in diffrax and torchdiffeq, so a traced solve takes the same steps as a plain one.

>>> import numpy as np
>>> from fluxml.ode.control import PIController
>>> ctrl = PIController(order=5)
>>> accept, factor = ctrl.propose(0.01)
>>> bool(accept), factor > 1
(True, True)
"""

from __future__ import annotations

import math

import numpy as np

from fluxml.ad.core import raw


def _rms(x, scale) -> float:
    """The root mean square of ``|x| / scale``; 0 for an empty state. The modulus, for
    complex states (as diffrax and torchdiffeq): the square of a complex error summed real
    and imaginary parts' squares with opposite signs, so an error of 1 + 1j counted as 0."""
    return float(np.sqrt(np.mean(np.square(np.abs(x) / scale)))) if x.size else 0.0


def _norm_precision(*xs):
    """float16 values in float32 for the norms: a tolerance such as atol=1e-9 underflowed
    to 0 in float16, and every error divided by it overflowed (every step rejected)."""
    return [x.astype(np.float32) if getattr(x, "dtype", None) == np.float16 else x
            for x in xs]


def error_norm(err, y0, y1, rtol: float, atol: float) -> float:
    """Hairer's scaled RMS norm of the local error estimate ``err``: at most 1 is accepted."""
    e, a, b = _norm_precision(raw(err), raw(y0), raw(y1))
    value = _rms(e, atol + rtol * np.maximum(np.abs(a), np.abs(b)))
    return value if math.isfinite(value) else math.inf


class PIController:
    """The proportional-integral controller of Hairer & Wanner (and OrdinaryDiffEq):
    ``factor = safety * e**-beta1 * e_prev**beta2``, clipped to ``[factor_min,
    factor_max]``; after a rejection the step shrinks by at least ``factor_min``'s reciprocal
    bound and never grows."""

    def __init__(self, order: int, safety: float = 0.9, factor_min: float = 0.2,
                 factor_max: float = 10.0, beta1: float | None = None,
                 beta2: float | None = None):
        # The embedded estimate has order - 1: its error falls like h**order. The gains are
        # Hairer's PI pair scaled up slightly (0.85 and 0.2 over the order instead of 0.7 and
        # 0.4), which on the spiral and Lotka-Volterra problems takes fewer evaluations.
        self.beta1 = 0.85 / order if beta1 is None else beta1
        self.beta2 = 0.2 / order if beta2 is None else beta2
        self.safety, self.factor_min, self.factor_max = safety, factor_min, factor_max
        self.e_prev = 1e-4

    def propose(self, e: float) -> tuple[bool, float]:
        """``(accepted, factor)``: whether the step with error norm ``e`` is accepted and the
        factor by which to scale the step size next."""
        if not math.isfinite(e):
            return False, self.factor_min
        if e <= 1.0:
            e = max(e, 1e-10)
            factor = self.safety * e ** -self.beta1 * self.e_prev ** self.beta2
            self.e_prev = max(e, 1e-4)
            return True, min(self.factor_max, max(self.factor_min, factor))
        factor = self.safety * e ** -self.beta1
        return False, min(1.0, max(self.factor_min, factor))


def initial_step(F, t0: float, y0, f0, direction: float, order: int, rtol: float,
                 atol: float, span: float, norm_size: int | None = None) -> float:
    """Hairer & Wanner's starting step (Solving ODEs I, II.4): one extra evaluation of ``f``
    estimates the second derivative so that the first step's error is near the tolerance.
    ``norm_size``: the norms read the first entries of the state only, as the error control
    does (an adjoint's parameter integral, which feeds nothing back, is left out)."""
    y0_given, f0_given = y0, f0
    y0, f0 = _norm_precision(raw(y0), raw(f0))

    def part(x):
        return x if norm_size is None else x[:norm_size]

    scale = atol + rtol * np.abs(part(y0))
    d0, d1 = _rms(part(y0), scale), _rms(part(f0), scale)
    h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
    h0 = min(h0, span)
    # from the traced state and slope where they are: f may fill a buffer it allocates like
    # its state (np.empty_like(u), SciPy's style) with values that depend on traced
    # parameters, which a plain state's buffer cannot take (nothing reads this derivative)
    y1 = y0_given + direction * h0 * f0_given
    f1, = _norm_precision(raw(F(t0 + direction * h0, y1)))
    d2 = _rms(part(f1) - part(f0), scale) / h0
    if not math.isfinite(d2):
        return h0 * 1e-3
    if max(d1, d2) <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / max(d1, d2)) ** (1.0 / order)  # as the error estimate scales
    return min(100 * h0, h1, span)
