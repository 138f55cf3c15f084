"""``NeuralODE``: a layer whose output is the solution of ``du/dt = model(u)``.

Its parameters are the inner model's (the solver, times and tolerances are static), so it
trains like any layer and sits inside a Chain: ``Chain(Dense, NeuralODE(...), Dense)``. The
gradient reaches the inner model through ``sensealg`` (``InterpolatingAdjoint()`` by
default, DiffEqFlux's choice: memory independent of the number of steps).

>>> import numpy as np, fluxml as fl
>>> node = fl.NeuralODE(fl.Dense(2, 2, np.tanh), (0.0, 1.0))
>>> node(np.ones((5, 2), np.float32)).shape
(5, 2)
>>> g, = fl.gradient(lambda m: np.sum(m(np.ones((5, 2), np.float32))), node)
>>> g.model.weight.shape
(2, 2)
"""

from __future__ import annotations

from typing import Any

from fluxml.layers.module import Module
from fluxml.ode import checks
from fluxml.ode.adjoint import InterpolatingAdjoint
from fluxml.ode.rk import Tsit5
from fluxml.ode.solve import Solution, _check_options, _times, solve


def _rhs(t, u, model):
    return model(u)


class NeuralODE(Module):
    """``NeuralODE(model, tspan, solver=Tsit5(), saveat=None, sensealg=InterpolatingAdjoint(),
    rtol=1e-3, atol=1e-6, dt=None, max_steps=100_000, adaptive=True, dtmax=None)``

    Calling it on ``x`` solves ``du/dt = model(u)``, ``u(t0) = x``, over ``tspan`` and
    returns ``u(t1)`` (shaped like ``x``, a batch ``(N, features)`` as the model takes it),
    or, when ``saveat`` is given, the states at those times stacked along a new first axis
    ``(len(saveat), N, features)``. ``node.solve(x)`` returns the whole
    :class:`~fluxml.ode.Solution`. ``fl.ode.solve``'s default sensitivity is ``Direct()``;
    this layer's is the continuous adjoint, as DiffEqFlux's. ``dt``, ``dtmax``, ``adaptive``
    and the tolerances mean what they mean in ``fl.ode.solve``: ``adaptive=False`` solves with fixed
    steps of ``dt`` (forward, and backward for the adjoints), as does a fixed-step solver.

    >>> import numpy as np, fluxml as fl
    >>> node = fl.NeuralODE(fl.Dense(2, 2, np.tanh), (0.0, 1.0), saveat=[0.5, 1.0])
    >>> x = np.ones((4, 2), np.float32)
    >>> node(x).shape
    (2, 4, 2)
    >>> (g,) = fl.gradient(lambda n: np.sum(n(x)), node)
    >>> g.model.weight.shape
    (2, 2)
    """

    def __init__(self, model, tspan, solver=None, saveat=None, sensealg=None,
                 rtol: float = 1e-3, atol: float = 1e-6, dt: float | None = None,
                 max_steps: int = 100_000, adaptive: bool = True,
                 dtmax: float | None = None):
        if not callable(model):
            raise TypeError(f"NeuralODE: model must be callable (a layer); got {model!r}")
        # every option checked here, by the layer's name (a bad rtol, saveat or solver class
        # was taken, and failed at the first call naming solve, or deep in the step control)
        t0, t1, save = _times(tspan, saveat, "NeuralODE")
        self.model = model
        self.tspan = (t0, t1)
        self.solver = Tsit5() if solver is None else checks.solver("NeuralODE", solver)
        self.saveat = save
        max_steps, dtmax, self.sensealg = _check_options(
            rtol, atol, dt, max_steps, adaptive, dtmax,
            InterpolatingAdjoint() if sensealg is None else sensealg, "NeuralODE")
        if dt is None and not (adaptive and self.solver.adaptive):
            what = f"{self.solver!r} (a fixed-step solver)" if adaptive else "adaptive=False"
            raise ValueError(f"NeuralODE: {what} takes fixed steps; pass their size, dt=...")
        self.options = dict(rtol=rtol, atol=atol, dt=dt, max_steps=max_steps,
                            adaptive=adaptive, dtmax=dtmax)

    def __tree_fields__(self):
        return ("model",)  # the rest is configuration, not parameters

    def solve(self, x) -> Solution:
        saveat = [self.tspan[1]] if self.saveat is None else self.saveat
        return solve(_rhs, x, self.tspan, self.model, solver=self.solver, saveat=saveat,
                     sensealg=self.sensealg, **self.options)

    def __call__(self, x) -> Any:
        u = self.solve(x).u
        return u[-1] if self.saveat is None else u

    def _show_children(self):
        """The model nested, then the solve's settings (two layers that solve differently
        printed alike: only the model was shown)."""
        from fluxml.layers.containers import _Shown

        settings = [("tspan", self.tspan), ("solver", self.solver),
                     ("saveat", None if self.saveat is None else self.saveat.tolist()),
                     ("sensealg", self.sensealg)]
        return [("model", self.model)] + [(k, _Shown(repr(v))) for k, v in settings
                                          if v is not None]

    def _line(self) -> str:
        return f"NeuralODE(tspan={self.tspan}, {self.solver!r}, {self.sensealg!r})"
