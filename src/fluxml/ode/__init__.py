"""Differential equations, differentiable: ``fl.ode.solve`` with explicit Runge-Kutta and
Rosenbrock solvers, dense output, and gradients through the solve by direct
differentiation or by adjoint sensitivities.

>>> import numpy as np, fluxml as fl
>>> sol = fl.ode.solve(lambda t, u, p: -u, np.ones(2), (0.0, 1.0), saveat=[0.5, 1.0])
>>> sol.u.shape
(2, 2)
"""

from fluxml.ode.adjoint import (
    BacksolveAdjoint,
    Direct,
    InterpolatingAdjoint,
    QuadratureAdjoint,
    SensitivityAlgorithm,
)
from fluxml.ode.integrate import SolveError, Stats
from fluxml.ode.neural import NeuralODE
from fluxml.ode.rk import BS3, DP5, RK4, Euler, Heun, Midpoint, Tsit5, Vern7
from fluxml.ode.rosenbrock import Rodas5, Rosenbrock23
from fluxml.ode.solve import Solution, solve

__all__ = [
    "BS3", "BacksolveAdjoint", "DP5", "Direct", "Euler", "Heun", "InterpolatingAdjoint",
    "Midpoint", "NeuralODE", "QuadratureAdjoint", "RK4", "Rodas5", "Rosenbrock23",
    "SensitivityAlgorithm", "Solution", "SolveError", "Stats", "Tsit5", "Vern7", "solve",
]
