"""The time-stepping loop shared by every solver and every sensitivity method.

``integrate`` steps a flat state from ``t0`` to ``t1`` (either direction), controls the step
size, saves at the requested times by dense interpolation and stops with a
:class:`SolveError` naming the time reached and what to try when it cannot go on.

>>> import numpy as np
>>> from fluxml.ode.integrate import integrate, Counted
>>> from fluxml.ode.rk import Tsit5
>>> F = Counted(lambda t, y: -y)
>>> ts, ys, steps = integrate(Tsit5(), F, 0.0, 1.0, np.ones(1), saveat=np.array([1.0]))
>>> bool(abs(ys[-1][0] - np.exp(-1)) < 1e-6)
True
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from fluxml._dtypes import real_dtype
from fluxml.ad.core import Tracer, raw, top_trace
from fluxml.ode.control import PIController, error_norm, initial_step
from fluxml.ode.rk import Step


class SolveError(RuntimeError):
    """A solve that cannot continue: the message names the time reached and what to try."""


@dataclass
class Stats:
    """Work done by a solve: evaluations of f, Jacobians, accepted and rejected steps."""

    nfe: int = 0
    njac: int = 0
    naccept: int = 0
    nreject: int = 0


def refuse_compiled(leaves) -> None:
    """Under ``fl.compile``, a state or parameters traced by it: refused by name (the solver
    picks its steps and checks them with Python control flow on the values, which a
    compiled program cannot hold); ``f``'s first result is checked too (an ``f`` that closes
    over a compiled argument)."""
    for x in leaves:
        while type(x) is Tracer:
            if not x._trace.differentiates:  # fl.compile's recording trace
                # lazy: the compiler sits above the solvers (and is loaded: it is compiling)
                from fluxml.compiler.trace import CompileError

                raise CompileError(
                    "fl.compile: fl.ode.solve (and NeuralODE) cannot be compiled: the solver "
                    "chooses and checks its steps with Python control flow on the state's "
                    "values. Call the solver outside the compiled function, and compile the "
                    "right-hand side's work on arrays instead: a function of (u, p) (the "
                    "model), called by f, or f with its time as an array "
                    "(lambda t, u, p: g(np.asarray(t), u, p), g compiled): the solver calls f "
                    "with a new Python float t at every stage, and a number's value is part of "
                    "a compiled function's signature (each one traced again).")
            x = x._val


def traced_like(y, values):
    """``y`` as a traced copy where ``values`` (the parameters) are traced and it is not:
    ``f`` written in SciPy's style fills a buffer allocated like its state (``du =
    np.empty_like(u); du[1] = -p * u[0]``), which must then be a traced buffer to take values
    that depend on ``p`` (a plain one cuts their derivative, and is refused)."""
    trace = top_trace(values)
    if trace is None or type(y) is Tracer:
        return y
    like = next(x for x in values if type(x) is Tracer and x._trace is trace)
    return np.array(y, like=like)


class Counted:
    """``F(t, y)``, counting evaluations; checks the shape of the first result."""

    def __init__(self, fun, stats: Stats | None = None):
        self.fun = fun
        self.h_next = None
        self.stats = stats if stats is not None else Stats()
        self.checked = False

    def __call__(self, t, y):
        self.stats.nfe += 1
        out = self.fun(t, y)
        if not self.checked:
            refuse_compiled([out])  # else a bool() deep in the step control, on the user's line
            if not hasattr(raw(out), "reshape"):  # (a list or a float: an AttributeError)
                raise TypeError(f"solve: f(t, u, p) returned {type(out).__name__} "
                                f"{out!r:.60}; f must return du/dt as an array shaped like u")
            shape = np.shape(raw(out))
            if shape != np.shape(raw(y)):
                raise ValueError(f"solve: f(t, u, p) returned shape {shape} for a state of "
                                 f"shape {np.shape(raw(y))}; f must return du/dt shaped like u")
            self.checked = True
        return out


# what to try when an adaptive solve cannot go on (a stiff solver was told to use one)
_FIXES = ("raise max_steps; loosen rtol/atol; if the problem is stiff (many rejected or tiny "
          "steps), use a stiff solver such as Rodas5() or Rosenbrock23().")
_STIFF_FIXES = ("raise max_steps; loosen rtol/atol; check that f and its Jacobian are "
                "finite and smooth near this time.")


def _below_precision(rtol, y) -> str:
    """Where ``rtol`` is within 100 roundings of the state's precision, the fix to try
    first: a float32 state at rtol 1e-12 ran its 100000 steps for a minute, told only to
    loosen rtol/atol among four other fixes, or to use a stiff solver."""
    dtype = real_dtype(np.result_type(raw(y)))
    eps = float(np.finfo(dtype).eps)
    if not 0 < float(np.max(rtol)) < 100 * eps:
        return ""
    return (f"rtol={np.max(rtol):.3g} is near or below {dtype.name}'s precision "
            f"(eps {eps:.2g}), which the error estimate's rounding cannot meet but with ever "
            f"smaller steps: loosen it (or solve in float64); ")


def _finite(y) -> bool:
    return bool(np.all(np.isfinite(raw(y))))


class _LeftOf:
    """``F`` evaluated just before ``stop`` (one float toward the step's start) where a stage
    falls on it: a step ending on a stop, where ``f`` may jump, integrates the side it comes
    from (as torchdiffeq's jump_t; at the stop itself its error estimate saw the other side's
    f and rejected the step again and again)."""

    def __init__(self, F, stop, start):
        self.F, self.stop, self.stats = F, stop, F.stats
        self.left = float(np.nextafter(stop, start))

    def __call__(self, t, y):
        if abs(t - self.stop) <= 1e-14 * max(1.0, abs(self.stop)):  # (t + 1.0 * h: rounded)
            t = self.left
        return self.F(t, y)

    def __getattr__(self, name):  # (fun, h_next ...: F's)
        return getattr(self.F, name)


def _jac_after(jac, t1):
    """``jac`` taken one float after its time, toward ``t1``: a Rosenbrock step starting on a
    stop linearises f on the side it goes to."""
    return lambda t, y, f0, h: jac(float(np.nextafter(t, t1)), y, f0, h)


def _kept_for_retries(jac):
    """``jac`` computed once per point: a rejected step's retry from the same ``(t, y)``
    reuses it. Kept per solve: kept on the solver (one Rodas5() for many solves), a solve
    starting from the array and time where the last one's last step started (a one-step
    solve again with new parameters, a training loop) took the old f's Jacobian (1e-3 off,
    and its gradient, silently)."""
    last: list = []

    def kept(t, y, f0, h):
        if not (last and last[0] == t and last[1] is y):
            last[:] = [t, y, jac(t, y, f0, h)]
        return last[2]

    return kept


def _stops_inside(tstops, t0: float, t1: float, direction: float) -> list:
    """The times of ``tstops`` strictly between ``t0`` and ``t1``, in the direction of the
    solve, each once; one within twice the step floor (``1e-14 max(1, |t|)``) of an end or of
    the stop before it is dropped: the step between them fell below the floor and stopped the
    solve (a stiff adjoint's stop at a forward step's start, 0.4000000000000002, 2e-16 from its
    interval's end 0.4). (1e-12 dropped stops a solve on a time scale of 1e-11 needed.)"""
    if tstops is None:
        return []
    inside = sorted({float(s) for s in np.ravel(tstops) if min(t0, t1) < s < max(t0, t1)},
                    reverse=direction < 0)
    kept: list = []
    for s in inside:
        near = 2e-14 * max(1.0, abs(s))
        if min(abs(s - t0), abs(t1 - s), abs(s - kept[-1]) if kept else near + 1) > near:
            kept.append(s)
    return kept


def integrate(solver, F: Counted, t0: float, t1: float, y0, *, saveat=None, dt=None,
              rtol: float = 1e-6, atol: float = 1e-9, max_steps: int = 100_000,
              keep_steps: bool = False, jac=None, norm_size: int | None = None,
              adaptive: bool = True, dtmax: float | None = None, tstops=None,
              on_step=None):
    """``(ts, ys, steps)``: save times, states at them (a list) and, with ``keep_steps``, the
    accepted :class:`~fluxml.ode.rk.Step` records. ``saveat=None`` saves ``t0`` and every
    accepted step. ``norm_size`` restricts error control to the first entries of the state
    (the adjoints' seminorm: a parameter-gradient integral needs no step control).
    ``adaptive=False`` makes an adaptive solver take fixed steps of ``dt``; ``dtmax`` bounds
    the size of every step; a step ends on each of ``tstops`` strictly inside the interval
    (a discontinuity of ``f`` in time is not stepped across). ``on_step(t, y)`` is called
    after each accepted step (it may raise to stop the solve)."""
    dtmax = math.inf if dtmax is None else float(dtmax)
    stats = F.stats
    jac = None if jac is None else _kept_for_retries(jac)
    # Python floats: a NumPy float64 time (an adjoint re-solving from a saved time) made the
    # step h one, and float32 states float64 (W = I / (h gamma) - J in a Rosenbrock step)
    t0, t1 = float(t0), float(t1)
    direction = 1.0 if t1 >= t0 else -1.0
    span = abs(t1 - t0)
    if not (adaptive and solver.adaptive) and dt is None:
        raise ValueError("solve: adaptive=False takes fixed steps; pass their size, dt=..."
                         if solver.adaptive else f"solve: {solver!r} is a fixed-step solver; "
                         f"pass dt=... (or use an adaptive solver such as Tsit5())")
    adaptive = adaptive and solver.adaptive
    if adaptive and real_dtype(np.result_type(raw(y0))) == np.float16 and \
            float(np.min(rtol)) < float(np.finfo(np.float16).eps):
        # (the steps shrink for a tolerance float16 cannot meet, and its rounding piles up:
        # at rtol 1e-6, 2.7% off after 772 steps, where rtol 1e-3 took 7 steps, 1e-3 off)
        warnings.warn(f"solve: rtol={float(np.min(rtol)):.3g} is below float16's precision "
                      f"(eps {float(np.finfo(np.float16).eps):.2g}): the steps shrink and its "
                      "rounding adds up (2.7% off on a 2-d linear problem at rtol 1e-6, 1e-3 "
                      "at rtol 1e-3); pass rtol >= 1e-3, or solve in float32",
                      stacklevel=4)
    stiff = getattr(solver, "stiff", False)  # (what to suggest when it cannot go on)
    ts_out, ys_out, steps = [], [], []
    save = None if saveat is None else np.asarray(saveat, dtype=float)
    j = 0
    if save is None:
        ts_out.append(t0)
        ys_out.append(y0)
    else:
        while j < len(save) and save[j] == t0:
            ts_out.append(t0)
            ys_out.append(y0)
            j += 1
    if span == 0.0:
        return ts_out, ys_out, steps
    t, y = t0, y0
    k1 = F(t, y)
    if not _finite(k1) or not _finite(y):
        raise SolveError(f"solve: the state or f(t, u, p) is not finite at the start, t = {t0}; "
                         "check u0, p and f")
    if dt is not None:
        h = abs(float(dt))
    else:
        h = initial_step(F, t, y, k1, direction, solver.order, rtol, atol, span, norm_size)
    h = min(h, dtmax)
    stops = _stops_inside(tstops, t0, t1, direction)
    stop_i = 0
    from_stop = False
    ctrl = PIController(solver.order) if adaptive else None
    n_steps = 0
    last_nonfinite = False
    prev = None
    while direction * (t1 - t) > 0:
        if k1 is None:  # not FSAL: the first stage is f at the new point, also the last
            k1 = prev.f1 if prev.f1 is not None else F(t, y)  # step's interpolation node
            prev.f1 = k1
        n_steps += 1
        if n_steps > max_steps:
            raise SolveError(
                f"solve: max_steps={max_steps} reached at t = {t} of [{t0}, {t1}] "
                f"({stats.naccept} accepted, {stats.nreject} rejected steps). Possible fixes: "
                + (_below_precision(rtol, y) + (_STIFF_FIXES if stiff else _FIXES) if adaptive
                   else f"raise max_steps, or take larger fixed steps (dt={dt}: "
                   f"{math.ceil(span / min(abs(float(dt)), dtmax))} of them)."))
        while stop_i < len(stops) and abs(stops[stop_i] - t) <= 1e-14 * max(1.0, abs(t)):
            stop_i += 1  # a stop a step reached up to rounding: reached
        end = stops[stop_i] if stop_i < len(stops) else t1  # where this step may not pass
        # a leftover of a few roundings (t summed over many steps of dt) joins this step: on
        # its own it fell below the step floor and stopped the solve (dt=0.01 on (2, 2.5))
        slack = min(1e-12 * max(1.0, abs(end)), 1e-3 * h)
        last = abs(end - t) <= h * (1 + 1e-12) + slack
        hs = (end - t) if last else direction * h
        if abs(hs) <= 1e-14 * max(1.0, abs(t)):
            why = ("the state or f became NaN or infinite in every attempted step"
                   if last_nonfinite else "the error estimate would not fall below tolerance")
            raise SolveError(
                f"solve: the step size fell below its floor ({abs(hs):.3g}) at t = {t} of "
                f"[{t0}, {t1}]: {why}. Possible fixes: check f for a singularity or blow-up "
                "near this time; " + ("" if stiff else "if the problem is stiff use Rodas5() "
                                      "or Rosenbrock23(); ") + "loosen rtol/atol.")
        at_stop = last and end != t1
        G = _LeftOf(F, end, t) if at_stop else F  # the stages at the stop see f's left limit
        if jac is None:
            y_new, ks, err = solver.step(G, t, y, hs, k1)
        else:  # (from a stop: the Jacobian of the side the step goes to, as k1)
            y_new, ks, err = solver.step(G, t, y, hs, k1, jac if not from_stop else
                                         _jac_after(jac, t1))
        if ctrl is not None:
            if norm_size is None:
                e = error_norm(err, y, y_new, rtol, atol)
            else:
                n = norm_size
                e = error_norm(err[:n], raw(y)[:n], raw(y_new)[:n], rtol, atol)
            accepted, factor = ctrl.propose(e)
            last_nonfinite = not math.isfinite(e) or not _finite(y_new)
            if last_nonfinite:
                accepted = False
            if not accepted:
                stats.nreject += 1
                h = min(abs(hs) * factor, dtmax)
                continue
        elif not _finite(y_new):
            raise SolveError(
                f"solve: the state became NaN or infinite in the step from t = {t} to "
                f"{t + hs} with {solver!r}. Possible fixes: a smaller dt; an adaptive solver "
                "(Tsit5()); a stiff solver (Rodas5()) if the problem is stiff.")
        stats.naccept += 1
        t_new = end if last else t + hs
        step = Step(t, hs, y, y_new, ks)
        k1 = ks[-1] if solver.fsal else None
        if at_stop:  # the interpolant reads f's limit at the stop from the side the step
            stop_i += 1  # came from, the next step from the side it goes to (torchdiffeq's
            if not solver.fsal and hasattr(solver, "stages"):  # PREV and NEXT perturbations;
                step.f1 = G(t_new, y_new)  # a Rosenbrock interpolant reads no f1)
            k1 = F(float(np.nextafter(t_new, t1)), y_new)
        from_stop = at_stop
        if save is None:
            ts_out.append(t_new)
            ys_out.append(y_new)
        else:
            while j < len(save) and direction * (save[j] - t_new) <= 0:
                s = save[j]
                if s == t_new:
                    ys_out.append(y_new)
                else:
                    ys_out.append(solver.interpolate(F, step, (s - t) / hs))
                ts_out.append(s)
                j += 1
        if keep_steps:
            steps.append(step)
        if on_step is not None:
            on_step(t_new, y_new)
        prev = step
        t, y = t_new, y_new
        if ctrl is not None:
            h = max(h, abs(hs) * factor) if last else abs(hs) * factor
            h = min(h, dtmax)
    F.h_next = h  # where a following solve (the adjoints' next interval) may start
    return ts_out, ys_out, steps
