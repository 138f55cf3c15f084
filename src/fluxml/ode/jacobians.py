"""The stiff solvers' Jacobians: ``df/du`` by fluxml's forward mode and ``df/dt`` by a
difference quotient whose step suits the precision of the values involved; used by the
forward solve and the adjoints' backward solves.

>>> import numpy as np
>>> from fluxml.ode.jacobians import time_derivative
>>> G = lambda t, y: np.sin(t) * y
>>> d = time_derivative(G, 0.0, np.ones(1), G(0.0, np.ones(1)), 0.1, np.ones(1))
>>> bool(abs(d[0] - 1.0) < 1e-7)
True
"""

from __future__ import annotations

import math

import numpy as np

from fluxml.ad.api import _is_float
from fluxml.ad.core import raw
from fluxml.ad.matrices import jacobian
from fluxml.ode.integrate import Counted


def time_derivative(G, t, y, g0, h, *values):
    """``dG/dt`` at ``(t, y)``, where ``g0 = G(t, y)``: a one-sided difference taken toward
    ``h``'s sign (the step's direction: past the end of an interval an adjoint reads the
    forward solution held constant), with the step that suits the precision of ``values``
    (the least precise of them: float32 states and parameters make every evaluation of G
    float32-accurate, though an adjoint's lambda is float64).

    float64: the forward difference with a step of sqrt(eps), accurate to ~1e-8. float32: a
    difference of second order with a step of eps^(1/3) (one more evaluation of G): the
    first-order one with float64's step differenced noise, and with float32's, sqrt(eps) =
    3.5e-4, left an error of 3e-4 in df/dt, which the Rosenbrock stages amplify (gradients
    through Rodas5 off by 4e-3 to 2e-2 on a size of 0.5, with Direct or an adjoint)."""
    eps = max(np.finfo(np.result_type(raw(x))).eps if _is_float(raw(x)) else 0.0
              for x in (g0, *values))
    order = 1 if eps < 1e-10 else 2
    if order == 1:
        delta = math.copysign(eps ** 0.5 * max(1.0, abs(t)), h)
    else:  # G's noise, not t's rounding, bounds float32's step: it grows as |t|^(1/3), not
        # |t| (eps^(1/3) |t| was 0.49 at t = 100: gradients through Rodas5 2e-2 off), and
        # stays within half the step, where G is the solution's
        delta = (eps * max(1.0, abs(t))) ** (1 / 3)
        if h:
            delta = min(delta, abs(h) / 2)
        delta = math.copysign(delta, h)
    delta = (t + delta) - t  # a step the times hold exactly
    if order == 1:
        return (G(t + delta, y) - g0) / delta
    return (G(t + delta, y) * 4.0 - G(t + 2 * delta, y) - g0 * 3.0) / (2 * delta)


def jacobian_of(F: Counted, *values):
    """``jac(t, y, f0, h) -> (df/du, df/dt)`` for the Rosenbrock solvers: the Jacobian by
    fluxml's forward mode, the time derivative by a difference (``time_derivative``) whose
    step suits the precision of ``y`` and ``values``."""

    def jac(t, y, f0, h):
        F.stats.njac += 1
        J = jacobian(lambda z: F.fun(t, z), y, mode="fwd")
        return J, time_derivative(counted, t, y, f0, h, y, *values)

    def counted(t, y):  # F.fun, counted (F itself checks the first result's shape)
        F.stats.nfe += 1
        return F.fun(t, y)

    return jac


def jac_for(solver, F, *values):
    """The Jacobian function a stiff ``solver`` takes (None for an explicit one)."""
    return jacobian_of(F, *values) if getattr(solver, "stiff", False) else None
