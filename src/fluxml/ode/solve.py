"""``solve``: the public entry point, and the :class:`Solution` it returns.

>>> import numpy as np, fluxml as fl
>>> sol = fl.ode.solve(lambda t, u, p: p * u, np.array([1.0]), (0.0, 1.0), -2.0,
...                    saveat=np.linspace(0, 1, 3))
>>> sol.t
array([0. , 0.5, 1. ])
>>> np.round(sol.u[:, 0], 6)
array([1.      , 0.367879, 0.135335])
>>> g, = fl.gradient(lambda p: fl.ode.solve(lambda t, u, p: p * u, np.array([1.0]),
...                                         (0.0, 1.0), p, saveat=[1.0]).u[-1, 0], -2.0)
>>> round(g, 5)
0.13534
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from fluxml._checks import flag, function, is_real, positive_int, real_in
from fluxml.ad.core import DifferentiationError, Tracer, raw, top_trace
from fluxml.ad.reverse import ReverseTrace
from fluxml.ode import adjoint, checks
from fluxml.ode.integrate import Counted, integrate, refuse_compiled, traced_like
from fluxml.ode.jacobians import jac_for
from fluxml.ode.rk import Tsit5
from fluxml.ode.state import Packer
from fluxml.tree import flatten


class Solution:
    """The result of :func:`solve`: times ``t``, states ``u`` stacked along the first axis (a
    tree of stacked leaves for a tree state), ``stats``, the dense interpolant ``sol(t)`` of
    the solver's own order and its time derivative ``sol.derivative(t)``."""

    def __init__(self, t, u, stats, solver, interpolant=None, why_no_dense=None):
        self.t = t
        self.u = u
        self.stats = stats
        self.solver = solver
        self._interpolant = interpolant
        self._why_no_dense = why_no_dense

    def __call__(self, t):
        """The state at time ``t`` (a number) or at each time of an array (stacked)."""
        if self._interpolant is None:
            raise DifferentiationError(self._why_no_dense)
        return self._interpolant(t)

    def derivative(self, t):
        """du/dt of the dense interpolant at ``t`` (a number, or an array of times: stacked),
        as diffrax's ``sol.derivative``: of one order below the interpolant's."""
        if self._interpolant is None:
            raise DifferentiationError(self._why_no_dense)
        return self._interpolant(t, derivative=True)

    def __repr__(self):
        s = self.stats
        return (f"Solution({self.solver!r}, {len(self.t)} saved times in [{self.t[0]}, "
                f"{self.t[-1]}], nfe={s.nfe}, accepted={s.naccept}, rejected={s.nreject})")


def _times(tspan, saveat, who="solve"):
    for x in flatten((tspan, saveat))[0]:
        if type(x) is Tracer:
            raise DifferentiationError(
                f"{who}: tspan and saveat carry no derivative (gradients with respect to times "
                "are not supported); pass them as plain numbers, e.g. fl.stop_gradient(t)")
    t0, t1 = checks.tspan(who, tspan)
    if saveat is None:
        return t0, t1, None
    save = checks.times(who, "saveat", saveat)
    lo, hi = min(t0, t1), max(t0, t1)
    if save.size == 0:  # else NumPy's "need at least one array to stack", after the solve
        raise ValueError(f"{who}: saveat lists no time; pass the times to return, or "
                         "saveat=None for t0 and every accepted step")
    # not "any outside": a NaN is neither below nor above, and was dropped from the output
    if not np.all((save >= lo) & (save <= hi)):
        raise ValueError(f"{who}: saveat must be times inside tspan [{t0}, {t1}]; got "
                         f"{saveat!r}")
    d = np.diff(save) * (1 if t1 >= t0 else -1)
    if np.any(d < 0):
        raise ValueError(f"{who}: saveat must be ordered from t0 towards t1")
    return t0, t1, save


def _check_options(rtol, atol, dt, max_steps, adaptive, dtmax, sensealg, who="solve"):
    """The step options, refused by name when they cannot mean anything: a negative or NaN
    tolerance was accepted (atol=-1 took two steps and called it solved; rtol=NaN, or both
    tolerances 0, rejected every step until max_steps), as were dt=0 or NaN (an unclear
    failure in the first step) and a fractional max_steps. ``(max_steps, dtmax, sensealg)``
    as the solve takes them."""
    for name, tol in (("rtol", rtol), ("atol", atol)):  # (None, which a sensitivity
        if tol is None:  # algorithm's tolerances take for "the solve's", failed in a ufunc)
            checks.tolerance(who, name, tol)
    checks.tolerances(who, rtol, atol)
    if dt is not None:
        real_in(who, "dt", dt)
        if dt == 0:
            raise ValueError(f"{who}: dt must be a nonzero step size (its sign is ignored: "
                             "tspan gives the direction); got 0")
    if isinstance(max_steps, float) and max_steps.is_integer():  # (Julia's maxiters=1e5)
        max_steps = int(max_steps)
    positive_int(who, "max_steps", max_steps)
    flag(who, "adaptive", adaptive)
    if dtmax is not None and dtmax == np.inf:  # no bound (torchdiffeq's default max_step)
        dtmax = None
    if dtmax is not None:
        real_in(who, "dtmax", dtmax, 0, low_open=True)
    sensealg = adjoint.Direct() if sensealg is None else sensealg
    if not isinstance(sensealg, adjoint.SensitivityAlgorithm):
        raise TypeError(f"{who}: sensealg must be Direct(), InterpolatingAdjoint(), "
                        f"BacksolveAdjoint() or QuadratureAdjoint(); got {sensealg!r}")
    return max_steps, dtmax, sensealg


def _state(u0):
    """``u0`` as a float or complex array (integers and bools become float64). A complex
    state stays complex (it was cast to float with only a ComplexWarning: the imaginary
    part of ``u0`` was dropped and ``u' = -1j u`` from ``1j`` solved as from 0)."""
    if type(u0) in (list, int, float, complex) or isinstance(u0, np.generic):
        try:
            u0 = np.asarray(u0)
        except ValueError:  # (a ragged list: NumPy's 'inhomogeneous shape')
            raise ValueError(f"solve: u0 must be an array or a tree of arrays; got the ragged "
                             f"list {u0!r:.80}") from None
    if type(u0) is np.ndarray and u0.dtype.kind not in "fc":
        if u0.dtype.kind not in "biu":  # strings were parsed as numbers, None became NaN
            raise TypeError(f"solve: u0 must be an array of numbers (or a tree of them); got "
                            f"an array of dtype {u0.dtype}: {u0!r:.60}")
        u0 = u0.astype(float)
    return u0


def _refuse_other_orders(f) -> None:
    """``f(u, p, t)`` (DifferentialEquations.jl's order) or ``f(y, t)`` (scipy's ``odeint``)
    would be called here as ``f(t, u, p)`` and solve another equation, with no error: the
    names of ``f``'s first arguments give such a slip away."""
    code = getattr(f, "__code__", None)
    if code is None:
        return
    names = code.co_varnames[:code.co_argcount]
    if hasattr(f, "__func__"):
        names = names[1:]  # a bound method's self
    if len(names) >= 2 and names[0] in ("u", "y", "x") and "t" in names[1:3]:
        raise TypeError(f"solve: f's arguments are ({', '.join(names)}), but solve calls "
                        f"f(t, u, p), time first as SciPy's solve_ivp and torchdiffeq (not "
                        f"DifferentialEquations.jl's f(u, p, t) or odeint's f(y, t)); write it "
                        f"as def f(t, {names[0]}, p)")


def solve(f: Callable, u0: Any, tspan: Sequence[float], p: Any = None, *, solver=None,
          saveat=None, dt: float | None = None, rtol: float = 1e-6, atol: float = 1e-9,
          max_steps: int = 100_000, sensealg=None,
          adaptive: bool = True, dtmax: float | None = None, tstops=None) -> Solution:
    """Solve ``du/dt = f(t, u, p)`` from ``u(t0) = u0`` over ``tspan = (t0, t1)``.

    ``u0`` is an array or any tree of arrays (``f`` then takes and returns such trees); ``p``
    is anything (arrays, trees, a Module). ``solver`` is one of Euler, Midpoint, Heun, RK4
    (fixed step: pass ``dt``), BS3, Tsit5 (default), DP5, Vern7 (adaptive), or the stiff
    Rosenbrock23 and Rodas5. ``saveat`` lists the output times (default: ``t0`` and every
    accepted step); ``dt`` is the fixed step, or the first step of an adaptive solver
    (``adaptive=False`` keeps it fixed); its sign is ignored (``tspan`` gives the direction).
    ``dtmax`` bounds every step's size (diffrax's ``dtmax``, torchdiffeq's ``max_step``):
    an adaptive solver's, and a fixed step larger than it is taken as steps of ``dtmax``.
    ``tstops`` lists times a step must end on (DifferentialEquations.jl's ``tstops``,
    torchdiffeq's ``jump_t``, diffrax's ``jump_ts``): where ``f`` jumps in time, a step
    across the jump would be rejected again and again; times outside ``tspan`` are ignored.
    The adjoints' backward solves end steps on them too (the adjoints refuse a stop that is
    also a saved time or a checkpoint: saveat=None saves every step).
    ``rtol`` and ``atol`` are numbers or arrays that broadcast to ``u0``'s shape (per entry, as
    torchdiffeq's; for a tree state, shaped like its flat vector); the error norm is the
    RMS of ``|err| / (atol + rtol * max(|u0|, |u1|))`` over the step (the modulus for
    complex states, as diffrax and torchdiffeq).

    Inside ``fl.gradient``, derivatives with respect to ``u0`` and ``p`` flow through the
    solve as ``sensealg`` says: ``Direct()`` records the solver's steps (exact for the
    computed solution, memory grows with the steps), ``InterpolatingAdjoint()``,
    ``BacksolveAdjoint()`` and ``QuadratureAdjoint()`` solve the continuous adjoint
    equation backwards. The default, ``Direct()``, works for every ``f``, including ones that
    close over traced values (which an adjoint refuses with an error).
    """
    function("solve", "f", f)  # (else Python's 'str' object is not callable, in a step)
    _refuse_other_orders(f)
    max_steps, dtmax, sensealg = _check_options(rtol, atol, dt, max_steps, adaptive, dtmax,
                                                sensealg)
    if tstops is not None:
        tstops = checks.times("solve", "tstops", tstops)
        if not np.all(np.isfinite(tstops)):
            raise ValueError(f"solve: tstops must be finite times; got {tstops!r}")
    solver = Tsit5() if solver is None else checks.solver("solve", solver)
    t0, t1, save = _times(tspan, saveat)
    u0 = _state(u0)
    packer = Packer(u0)
    y0 = packer.pack(u0)
    _check_tolerance_shapes(np.shape(raw(y0)), not packer.identity, rtol, atol, sensealg)
    options = dict(saveat=save, dt=dt, rtol=rtol, atol=atol, max_steps=max_steps, dtmax=dtmax,
                   tstops=tstops, adaptive=adaptive)
    leaves = flatten((u0, p))[0]
    refuse_compiled(leaves)
    trace = top_trace(leaves)
    if isinstance(trace, ReverseTrace) and not isinstance(sensealg, adjoint.Direct):
        _refuse_stops_in_backsolves(sensealg, tstops, t0, t1, save)
        ts, ys, stats = adjoint.solve_with_adjoint(sensealg, solver, f, packer, y0, p, t0, t1,
                                                   options)
        why = (f"sol(t) carries no derivative with sensealg={sensealg!r}: pass the times as "
               "saveat=[...] instead, or use sensealg=Direct()")
        return Solution(np.asarray(ts), packer.unpack_stacked(ys), stats, solver, None, why)

    y0 = traced_like(y0, leaves)
    F = Counted(lambda t, y: packer.pack(f(t, packer.unpack(y), p)))
    ts, ys, steps = integrate(solver, F, t0, t1, y0, keep_steps=True,
                              jac=jac_for(solver, F, *leaves), **options)
    interpolant = _Interpolant(solver, F, steps, packer, t0, y0)
    u = packer.unpack_stacked(np.stack(ys))
    return Solution(np.asarray(ts), u, F.stats, solver, interpolant)


def _check_tolerance_shapes(shape, tree, rtol, atol, sensealg) -> None:
    """Per-entry tolerances, solve's and an adjoint's, shaped for the state."""
    for who, name, tol in (("solve", "rtol", rtol), ("solve", "atol", atol),
                           (type(sensealg).__name__, "rtol", getattr(sensealg, "rtol", None)),
                           (type(sensealg).__name__, "atol", getattr(sensealg, "atol", None))):
        if tol is not None:
            checks.tolerance_shape(who, name, tol, shape, tree)


def _refuse_stops_in_backsolves(sensealg, tstops, t0, t1, save) -> None:
    """The adjoints' backward solves run from each saved time to the one before; one that
    begins on a stop took its first stage there, on the wrong side of the jump: parameter
    gradients 9% off with Tsit5, by 10^6 with Rodas5 (InterpolatingAdjoint,
    BacksolveAdjoint), 1% with Rodas5 (QuadratureAdjoint's lambda solve), silently (found by
    review). Refused where a saved time, or an InterpolatingAdjoint's extra checkpoint, is a
    stop inside tspan (saveat None saves every step, so every stop) until that stage is taken
    past the stop; stops between saved times are stepped past rightly, and Direct() is
    right."""
    if tstops is None or not isinstance(sensealg, adjoint._Adjoint):
        return
    lo, hi = min(t0, t1), max(t0, t1)
    inside = tstops[(tstops > lo) & (tstops < hi)]
    starts = save
    if save is not None and isinstance(sensealg, adjoint.InterpolatingAdjoint):
        starts = np.concatenate([save, sensealg.checkpoint_times(t0, t1)])
    if inside.size and (starts is None or np.isin(inside, starts).any()):
        raise NotImplementedError(
            f"solve: tstops with sensealg={sensealg!r} gives wrong gradients where f jumps "
            f"at a stop that is also a saved time or a checkpoint (saveat=None saves every "
            f"step): its backward solve begins on the stop. Leave the stops out of saveat "
            f"(and checkpoints), or use sensealg=Direct()")


class _Interpolant:
    """Dense output over the recorded steps (differentiable in the direct mode)."""

    def __init__(self, solver, F, steps, packer, t0, y0):
        self.solver, self.F, self.steps, self.packer = solver, F, steps, packer
        self.t0, self.y0 = t0, y0
        self.starts = np.array([s.t0 for s in steps])
        self.ends = np.array([s.t0 + s.h for s in steps])
        if steps:  # the solved interval and direction, found once rather than per call
            self.lo = np.minimum(self.starts, self.ends).min()
            self.hi = np.maximum(self.starts, self.ends).max()
            self.forward = self.ends[-1] >= self.starts[0]

    def __call__(self, t, derivative=False):
        if np.ndim(t) == 0 and is_real(t):
            return self.packer.unpack(self._at(float(t), derivative))
        ts = checks.times("sol(t)", "t", t)  # (a 2-d t or a string: a float() error)
        return self.packer.unpack_stacked(np.stack([self._at(float(s), derivative)
                                                    for s in ts]))

    def _at(self, t, derivative=False):
        if not self.steps:
            if t == self.t0:
                return self.F(t, self.y0) if derivative else self.y0
            raise ValueError(f"sol(t): t = {t} is outside the solved interval [{self.t0}]")
        lo, hi = self.lo, self.hi
        if not lo - 1e-12 * max(1, abs(lo)) <= t <= hi + 1e-12 * max(1, abs(hi)):
            raise ValueError(f"sol(t): t = {t} is outside the solved interval [{lo}, {hi}]")
        if self.forward:
            i = int(np.searchsorted(self.ends, t, side="left"))
        else:
            i = int(np.searchsorted(-self.ends, -t, side="left"))
        step = self.steps[min(i, len(self.steps) - 1)]
        theta = (t - step.t0) / step.h
        if derivative:
            return self.solver.derivative(self.F, step, theta)
        if theta == 1.0:
            return step.y1
        return self.solver.interpolate(self.F, step, theta)

