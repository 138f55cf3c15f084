"""Sensitivity algorithms: how a gradient flows through :func:`~fluxml.ode.solve`.

``Direct()`` lets the engine record the solver's steps (discretise-then-optimise: the exact
gradient of the computed solution). The adjoints (optimise-then-discretise) record the whole
solve as one node of the tape, and on the way back solve the adjoint equation

    d lambda/dt = -lambda^T df/du,    d mu/dt = -lambda^T df/dp

backwards from the last saved time, adding each saved output's cotangent to ``lambda`` at
its time; ``lambda(t0)`` is the gradient for ``u0`` and ``mu(t0)`` for ``p``. The
vector-Jacobian products come from fluxml's engine (``fl.pullback`` of ``f``). They differ in
where ``u(t)`` comes from:

- ``InterpolatingAdjoint``: the forward solution's dense output (with ``checkpointing=True``
  only the saved states are kept and each interval is solved again, so memory grows with
  the number of saved times, not of steps);
- ``BacksolveAdjoint``: ``u`` is solved backwards alongside ``lambda``, restarted from the
  forward states at the saved times; a backward solve that drifts from the forward one (an
  unstable problem backwards in time) stops with an error rather than a wrong gradient;
- ``QuadratureAdjoint``: ``lambda`` alone is solved backwards, and ``mu`` is its integral by
  Gauss-Legendre quadrature over each step.

The error control of the backward solve covers ``u`` and ``lambda`` (a seminorm: ``mu`` is an
integral that feeds nothing back).

>>> import numpy as np, fluxml as fl
>>> loss = lambda p: fl.ode.solve(lambda t, u, p: p * u, np.ones(1), (0.0, 1.0), p,
...     saveat=[1.0], sensealg=fl.ode.InterpolatingAdjoint()).u[-1, 0]
>>> bool(abs(fl.gradient(loss, -2.0)[0] - np.exp(-2.0)) < 1e-6)
True
"""

from __future__ import annotations

import math

import numpy as np

from fluxml._checks import flag
from fluxml.ad.api import _is_float, pullback
from fluxml.ad.arrays import library_asarray, module_of
from fluxml.ad.core import DifferentiationError, Tracer, open_traces, raw, remove_last
from fluxml.ad.custom import CLOSED_OVER, custom_vjp
from fluxml.ad.matrices import jacobian
from fluxml.ad.writeback import apply, changes, restore_parts
from fluxml.ode import checks
from fluxml.ode.integrate import Counted, SolveError, Stats, integrate, traced_like
from fluxml.ode.jacobians import jac_for, time_derivative
from fluxml.ode.rk import Step
from fluxml.tree import REPEATED, flatten, unflatten


class SensitivityAlgorithm:
    """Base of the ``sensealg=`` choices."""

    def __repr__(self):
        return f"{type(self).__name__}()"


class Direct(SensitivityAlgorithm):
    """Differentiate through the solver's steps (the default): exact for the computed
    solution, works for any ``f`` (closures over traced values included) and in forward mode;
    the tape grows with the number of steps."""


class _Adjoint(SensitivityAlgorithm):
    """``solver``, ``rtol`` and ``atol`` of the backward solve (default: the forward
    solve's), checked when made: a negative tolerance was taken, and the backward solve
    accepted steps it should not (gradients 1.3% off, silently)."""

    def __init__(self, *args, solver=None, rtol: float | None = None,
                 atol: float | None = None, **unknown):
        who = type(self).__name__
        if args or unknown:  # (Python's error named _Adjoint.__init__)
            takes = ("checkpointing=, checkpoints=, " if who == "InterpolatingAdjoint" else
                     "") + "solver=, rtol=, atol="
            what = (f"the option {sorted(unknown)[0]!r}" if unknown else
                    f"{len(args)} positional argument{'s' if len(args) > 1 else ''}")
            raise TypeError(f"{who}: got {what}; it takes the keyword options {takes}")
        if solver is not None:
            checks.solver(who, solver)
        checks.tolerances(who, rtol, atol)
        self.solver, self.rtol, self.atol = solver, rtol, atol

    def _options(self) -> list:
        """The options given, as ``repr`` shows them (two configurations printed alike)."""
        return [f"{k}={v!r}" for k, v in (("solver", self.solver), ("rtol", self.rtol),
                                          ("atol", self.atol)) if v is not None]

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(self._options())})"


class InterpolatingAdjoint(_Adjoint):
    """The adjoint with ``u(t)`` from the forward solution's dense output.

    With ``checkpointing=True`` only the states at the checkpoints are kept, and each
    interval between checkpoints is solved again on the way back: memory grows with the
    number of checkpoints, not of steps. The checkpoints are the saved times, plus
    ``checkpoints`` more: a number (evenly spaced in tspan) or a list of times."""

    def __init__(self, *args, checkpointing: bool = False, checkpoints=None, **options):
        super().__init__(*args, **options)  # (which refuses args and unknown options)
        checkpointing = flag("InterpolatingAdjoint", "checkpointing", checkpointing)
        if checkpoints is not None and not checkpointing:
            raise ValueError("InterpolatingAdjoint: checkpoints= needs checkpointing=True")
        # (2.5 was taken as 2, a string failed in int())
        self._checkpoints = checks.count_or_times("InterpolatingAdjoint", "checkpoints",
                                                  checkpoints)  # (a count, or float times)
        self.checkpointing = checkpointing
        self.checkpoints = checkpoints  # (as given: its repr)

    def checkpoint_times(self, t0, t1):
        """The extra checkpoints inside ``(t0, t1)``: one outside (a time before t0) was
        saved by extrapolating a step, and the backward pass integrated lambda out to it
        and back, with the forward solution held constant there (a gradient of -0.76 for
        0.41, silently)."""
        times = self._checkpoints
        if times is None:
            return np.zeros(0)
        if np.ndim(times) == 0:
            return np.linspace(t0, t1, int(times) + 2)[1:-1]
        if not np.all((times >= min(t0, t1)) & (times <= max(t0, t1))):
            raise ValueError(f"InterpolatingAdjoint: checkpoints must be times inside tspan "
                             f"[{t0}, {t1}]; got {self.checkpoints!r}")
        return times

    def __repr__(self):
        extra = self._options()
        if self.checkpointing:
            extra.insert(0, "checkpointing=True")
        if self.checkpoints is not None:
            extra.insert(1, f"checkpoints={self.checkpoints!r}")
        return f"InterpolatingAdjoint({', '.join(extra)})"


class BacksolveAdjoint(_Adjoint):
    """The adjoint with ``u`` solved backwards alongside it, restarted from the forward
    states at the saved times; refuses (with an error) a problem whose backward solve
    drifts from the forward one."""


class QuadratureAdjoint(_Adjoint):
    """The adjoint for ``u0`` solved backwards, the gradient for ``p`` by Gauss-Legendre
    quadrature over each of its steps."""


class _Params:
    """The float leaves of ``p`` (its differentiable part: not the fields a layer declares
    nontrainable, such as a BatchNorm's eps and running statistics), packed into one
    vector."""

    def __init__(self, p):
        # (all leaves, eps among them, were parameters: the backward pass traced eps, and a
        # BatchNorm in f failed in float(eps))
        self.leaves, self.spec = flatten(p, trainable=True)
        trainable = set(map(id, self.leaves))
        # arrays a layer updates in place (running statistics): the backward pass's calls of
        # f must leave them as the forward pass did
        self.kept = [x for x in flatten(p)[0]
                     if type(x) is np.ndarray and id(x) not in trainable]
        # A leaf reached twice (tied weights) is one parameter, read at each of its places:
        # the engine gives a repeated argument its total gradient at every place, so as two
        # parameters its gradient was counted twice.
        self.index, self.slot, first = [], {}, {}
        for i, x in enumerate(self.leaves):
            if _is_float(raw(x)):
                k = first.setdefault(id(x), len(self.index))
                if k == len(self.index):
                    self.index.append(i)
                self.slot[i] = k
        self.like = [raw(self.leaves[i]) for i in self.index]
        self.sizes = [int(np.size(x)) for x in self.like]
        self.size = sum(self.sizes)
        # which leaves f has read: the backward pass gives the others None, as fl.gradient
        # and Direct() do for a parameter the loss does not use (they had zeros)
        self.read = [False] * len(self.index)

    def values(self):
        return [self.leaves[i] for i in self.index]

    def rebuild(self, values, log=None):
        """``p`` with ``values`` for its float leaves: a copy, whose changes are logged in
        ``log`` if given (for ``write_back``)."""
        leaves = list(self.leaves)
        for i, k in self.slot.items():
            leaves[i] = values[k]
        if log is None:
            return unflatten(self.spec, leaves)
        return unflatten(self.spec, leaves, shared={}, log=log)

    def write_back(self, values, log):
        """What ``f`` set on the copy ``rebuild(values, log)`` made, set on ``p`` itself: a
        value of ``values`` as the leaf it stands for, a copied object as its original,
        other values as they are (plain arrays: the adjoint does not differentiate what f
        stores)."""
        found = changes(log)
        if not found:
            return
        stands = {id(values[k]): self.leaves[i] for i, k in self.slot.items()}
        stands.update((id(e[1]), e[0]) for e in log if e is not REPEATED)
        apply(found, lambda v: restore_parts(v, stands, lambda a: stands.get(id(a), a)))

    def _parts(self, vec):
        """Each leaf's stretch of a packed vector, with the leaf it stands for."""
        i = 0
        for like, n in zip(self.like, self.sizes):
            yield like, vec[i:i + n]
            i += n

    def split(self, vec):
        """The leaves from a packed vector, keeping any trace on it (for Jacobians)."""
        return [np.reshape(part, np.shape(like)) for like, part in self._parts(vec)]

    def pack(self, cts):
        xp = module_of(next((c for c in cts if c is not None), None))  # (CuPy's: zeros there)
        parts = [xp.zeros(n) if c is None else np.ravel(c) for c, n in zip(cts, self.sizes)]
        return np.concatenate(parts) if parts else np.zeros(0)

    def pack_cotangents(self, cts):
        """:meth:`pack` for the cotangents of a pullback of f, noting the leaves it read."""
        for k, c in enumerate(cts):
            if c is not None:
                self.read[k] = True
        return self.pack(cts)

    def gradients(self, vec):
        """:meth:`unpack`, with None for the leaves f never read."""
        return [g if read else None for g, read in zip(self.unpack(vec), self.read)]

    def unpack(self, vec):
        """The gradients for the leaves from a packed vector, each of its leaf's dtype: a
        real leaf takes the real part (with a complex state ``lambda^T df/dp`` is complex;
        its real part is the derivative of the real loss)."""
        out = []
        for like, part in self._parts(vec):
            if not np.iscomplexobj(like):
                part = np.real(part)
            if isinstance(like, np.generic):
                out.append(like.dtype.type(part[0]))
            elif hasattr(like, "shape"):  # an array (CuPy's too: of its own library)
                out.append(part.reshape(like.shape).astype(like.dtype, copy=False))
            else:
                out.append(float(part[0]))
        return out


def solve_with_adjoint(alg, solver, f, packer, y0, p, t0, t1, options):
    """The solve as one tape node whose backward pass is ``alg``'s adjoint; returns
    ``(times, stacked states, stats)``."""
    params = _Params(p)
    stats = Stats()
    made = {}

    shape = np.shape(raw(y0))

    def rhs(t, y, pv):
        return packer.pack(f(t, packer.unpack(y), params.rebuild(pv)))

    def rhs_flat(t, y, pv):  # the backward pass works on flat vectors
        return np.reshape(rhs(t, np.reshape(y, shape), pv), -1)

    if len(shape) == 1:
        rhs_flat = rhs  # noqa: F811 (already flat)

    def fwd(y0, *pv):
        if any(type(x) is Tracer for x in (y0, *pv)):  # an outer transform: a 2nd derivative
            raise DifferentiationError(
                f"solve: derivatives of higher order through {alg!r} are not supported (its "
                "backward pass runs on plain arrays, so they would be lost); use "
                "sensealg=Direct(), which records the steps for any order.")
        # one copy of p for the whole forward solve: what f sets on it carries from call to
        # call, and is set on p afterwards, as when f runs eagerly (each call had a fresh
        # copy: a count of calls stayed 0)
        log: list = []
        q = params.rebuild(pv, log)
        F = Counted(lambda t, y: packer.pack(f(t, packer.unpack(y), q)), stats)
        keep = not isinstance(alg, BacksolveAdjoint) and not getattr(alg, "checkpointing", 0)
        try:
            ts, ys, steps = integrate(solver, F, t0, t1, y0, keep_steps=keep,
                                      jac=jac_for(solver, F, y0, *pv), **options)
        except DifferentiationError as e:
            if str(e) != CLOSED_OVER:
                raise
            raise DifferentiationError(
                f"solve: f uses a traced value it was not given through p (it closes over "
                f"it), which {alg!r} cannot differentiate. Pass that value in p, or use "
                "sensealg=Direct().") from None
        made["ts"] = ts
        # the transform whose function runs this solve, if any: the backward pass's plain
        # calls of f (a checkpointed interval solved again) run as its forward calls did,
        # train/test layers in training mode (they ran in test mode: a BatchNorm used its
        # running statistics there, and the gradient was off by 15%)
        made["open"] = open_traces()[-1:]
        params.write_back(pv, log)
        return np.stack(ys), (y0, pv, ts, ys, steps, F)

    def bwd(res, g):
        y0, pv, ts, ys, steps, F = res
        flat_F = Counted(lambda t, y: rhs_flat(t, y, pv), stats)
        flat_steps = [_flat_step(s) for s in steps]
        back = _Backward(alg, solver, rhs_flat, params, pv, t0, options, stats)
        kept = [x.copy() for x in params.kept]
        stack = open_traces()
        stack += made["open"]
        try:
            return back.run(y0, ts, ys, flat_steps, raw(g), flat_F)
        finally:  # (its calls of f updated the running statistics again)
            for trace in made["open"]:
                remove_last(stack, trace)
            for x, v in zip(params.kept, kept):
                x[...] = v

    run = custom_vjp(lambda y0, *pv: fwd(y0, *pv)[0])
    run.defvjp(fwd, bwd)
    extra = alg.checkpoint_times(t0, t1) if isinstance(alg, InterpolatingAdjoint) else ()
    if len(extra) == 0:
        Y = run(y0, *params.values())
        return made["ts"], Y, stats
    # more checkpoints: save there too (a zero cotangent), then keep the requested rows
    wanted = options["saveat"]
    if wanted is None:
        raise ValueError("solve: InterpolatingAdjoint(checkpoints=...) needs saveat=[...] (with "
                         "saveat=None every step is saved, and checkpointed, already)")
    times = np.union1d(wanted, extra)
    if t1 < t0:
        times = times[::-1]
    options = dict(options, saveat=times)
    Y = run(y0, *params.values())
    # each requested time by position, repeats included (the union holds each time once)
    row = {float(t): i for i, t in enumerate(made["ts"])}
    keep = [row[float(t)] for t in wanted]
    return [made["ts"][i] for i in keep], Y[np.array(keep)], stats


class _Drift(SolveError):
    """BacksolveAdjoint's u, solved backwards, left the forward solution."""


class _Backward:
    """One backward pass of an adjoint method."""

    def __init__(self, alg, solver, rhs, params, pv, t0, options, stats):
        self.alg, self.rhs, self.params, self.pv, self.t0 = alg, rhs, params, pv, t0
        self.solver = alg.solver if alg.solver is not None else solver
        self.forward_solver = solver
        self.rtol = alg.rtol if alg.rtol is not None else options["rtol"]
        self.atol = alg.atol if alg.atol is not None else options["atol"]
        self.options = options
        self.stats = stats
        self.h = None

    # --- vector-Jacobian products of f, from the engine -----------------------------------

    def vjp(self, t, u, lam, wrt_p=True):
        """``(f(t, u), lam^T df/du, lam^T df/dp packed)``."""
        self.stats.nfe += 1
        if wrt_p:
            fu, back = pullback(lambda y, *q: self.rhs(t, y, q), u, *self.pv)
            cts = back(lam)
            gu = cts[0] if cts[0] is not None else np.zeros_like(raw(u))
            return fu, gu, self.params.pack_cotangents(cts[1:])
        fu, back = pullback(lambda y: self.rhs(t, y, self.pv), u)
        gu = back(lam)[0]
        return fu, (gu if gu is not None else np.zeros_like(raw(u))), None

    def vjp_p(self, t, u, lam):
        self.stats.nfe += 1
        _, back = pullback(lambda *q: self.rhs(t, traced_like(u, q), q), *self.pv)
        return self.params.pack_cotangents(back(lam))

    # --- the pass ------------------------------------------------------------------------

    def run(self, y0, ts, ys, steps, g, F):
        n = np.size(raw(y0))
        self.y0_flat = np.reshape(raw(y0), -1)
        self.y0_shape = np.shape(raw(y0))
        xp = module_of(self.y0_flat)  # (float64, as the backward solve; CuPy's on a GPU)
        lam, mu = xp.zeros(n), xp.zeros(self.params.size)
        alg = self.alg
        self.u_back = None
        integrated = False
        for i in range(len(ts) - 1, -1, -1):
            lam = lam + np.reshape(g[i], -1)
            if not np.all(np.isfinite(g[i])):  # (else the backward solve blamed u0, p and f)
                raise SolveError(
                    f"{alg!r}: the loss's derivative with respect to sol.u at t = {ts[i]} is "
                    "NaN or infinite (a sqrt or log of the solution at 0?), so the adjoint "
                    "cannot be solved from it; fix the loss there, or use sensealg=Direct(), "
                    "which passes the NaN on as any gradient does")
            start = ts[i]
            end = ts[i - 1] if i > 0 else self.t0
            if start == end:
                continue
            integrated = True
            if isinstance(alg, BacksolveAdjoint):
                lam, mu = self.backsolve(start, end, ys[i], ys[i - 1] if i else y0, lam, mu, i)
            else:
                if isinstance(alg, InterpolatingAdjoint) and alg.checkpointing:
                    begin = ys[i - 1] if i > 0 else y0
                    U = self.resolve(end, start, np.reshape(raw(begin), -1))
                else:
                    U = _Dense(self.forward_solver, steps, F)
                if isinstance(alg, QuadratureAdjoint):
                    lam, mu = self.quadrature(start, end, U, lam, mu)
                else:
                    lam, mu = self.interpolating(start, end, U, lam, mu)
        g_y0 = lam.reshape(np.shape(raw(y0))).astype(np.result_type(raw(y0)), copy=False)
        if not all(self.params.read) and integrated:
            # f may read a leaf only at times the backward pass never evaluates it at (Euler's
            # first step, t < 0.01): a pullback at each end notes those as read (a zero
            # gradient, not None, which would have fl.update skip the leaf). (Nothing
            # integrated, all saved times at t0: the loss does not reach p, None as Direct)
            for t, u in ((self.t0, y0), (ts[-1], ys[-1])):
                self.vjp_p(t, np.reshape(raw(u), -1), np.ones_like(lam))
        return (g_y0, *self.params.gradients(mu))

    def integrate(self, G, start, end, z, norm_size, keep=False, U=None, on_step=None):
        F = Counted(G, self.stats)
        jac = jac_for(self.solver, F, self.y0_flat, *self.pv)  # (f's precision: z is float64)
        if jac is not None and U is not None:
            jac = self.adjoint_jacobian(F, U, lam_only=norm_size is None)
        dt = self.options["dt"] if self.h is None else self.h
        copies = 1 if norm_size is None else norm_size // self.y0_flat.size
        try:
            ts, zs, steps = integrate(
                self.solver, F, start, end, z, saveat=np.array([end]), dt=dt,
                rtol=self.per_entry(self.rtol, copies), atol=self.per_entry(self.atol, copies),
                max_steps=self.options["max_steps"], dtmax=self.options["dtmax"],
                tstops=self.stops(U, start, end), adaptive=self.options["adaptive"],
                keep_steps=keep, jac=jac, norm_size=norm_size, on_step=on_step)
        except _Drift as e:
            raise SolveError(str(e)) from None
        except SolveError as e:  # (it read as the forward solve's failure: 'check u0, p')
            unstable = ""
            if isinstance(self.alg, BacksolveAdjoint):  # (a stiff problem's backsolve took
                # 1e-5 steps for half an hour, and the message blamed the tolerances)
                unstable = (" BacksolveAdjoint also solves the forward equation backwards in "
                            "time, which is unstable where the problem is stiff or damps "
                            "(its steps shrink without end); InterpolatingAdjoint and "
                            "QuadratureAdjoint read the stored forward solution instead.")
            raise SolveError(
                f"{self.alg!r}: the backward solve of the adjoint equation, from t = {start} "
                f"to {end}, failed ({e}). Where the forward solve succeeded, f's "
                "vector-Jacobian product may be NaN or infinite there (sqrt(u) at u = 0 has "
                "an infinite derivative); sensealg=Direct() passes such a NaN on as any "
                "gradient does." + unstable) from None
        if self.options["adaptive"] and self.solver.adaptive:
            self.h = F.h_next  # the next interval starts with the step size reached here
        return zs[-1], steps, F

    def stops(self, U, start, end):
        """The backward solve's tstops: the user's, and for a stiff solver reading ``U``
        the forward steps' ends between ``start`` and ``end``. A Rosenbrock step spanning
        many forward steps (a fast transient: tiny forward steps, a smooth lambda) read U
        as one function through its kinks, and its error estimate missed what it lost in
        the parameter integral: gradients through Rodas5 2e-4 off at rtol 1e-8, 3e-2 at
        rtol 1e-5 (float64) and 5e-2 in float32, silently; within one forward step U is
        one polynomial (now 2e-10, 4e-8, 2e-6, for ~1.6 times the evaluations). Explicit
        backward solves keep their steps: bounded by stability there, they were 1e-6 off
        at worst."""
        user = self.options["tstops"]
        if U is None or not getattr(self.solver, "stiff", False) or not U.steps:
            return user
        lo, hi = min(start, end), max(start, end)
        inside = U.starts[(U.starts > lo) & (U.starts < hi)]
        return inside if user is None else np.concatenate([user, inside])

    def per_entry(self, tol, copies):
        """A tolerance for the backward state's controlled part, ``copies`` blocks each
        shaped like the flat u (lambda; u and lambda for the backsolve): a per-entry
        tolerance, given for u, repeated for each block (it failed to broadcast)."""
        if np.ndim(tol) == 0:
            return tol
        return np.tile(np.broadcast_to(tol, self.y0_shape).reshape(-1), copies)

    def interpolating(self, start, end, U, lam, mu):
        n = lam.size

        def G(t, z):
            _, gu, gp = self.vjp(t, U(t), z[:n])
            return -np.concatenate([gu, gp]) if gp.size else -gu

        z, _, _ = self.integrate(G, start, end, np.concatenate([lam, mu]), n, U=U)
        return z[:n], z[n:]

    def backsolve(self, start, end, u_saved, u_end, lam, mu, i):
        n = lam.size
        # (float: a float32 state's u solved in float64 beside lambda; a complex one kept)
        u = library_asarray(raw(u_saved), np.result_type(raw(u_saved), float)).reshape(-1)
        if self.u_back is not None:
            self.check_drift(self.u_back, u, start)
        # u growing 1e12 times past the forward states at both ends: blowing up (a stiff
        # problem solved backwards: it ran to overflow, 45 s with Rodas5 and 6 min with
        # Rosenbrock23, then blamed f for a singularity). A stable solution may swell between
        # two save times (u' = 50 cos(pi t) u: 8e6 times at t = 0.5, 1e6 refused it), but one
        # that swells 1e12 times leaves too few digits for the backward solve to retrace it
        limit = 1e12 * (max(np.linalg.norm(u), np.linalg.norm(raw(u_end))) +
                        float(np.max(self.atol)) / max(float(np.max(self.rtol)), 1e-300))

        def blowing_up(t, z):
            if not np.linalg.norm(z[:n]) <= limit:
                raise _Drift(
                    f"BacksolveAdjoint: solving u backwards from t = {start} to {end} blew "
                    f"up (|u| at t = {t} is over 1e12 times the forward states at both "
                    "ends): the problem is unstable backwards in time (stiff or strongly "
                    "dissipative), so this gradient would be wrong. Use "
                    "sensealg=InterpolatingAdjoint() or QuadratureAdjoint() (or Direct()).")

        def G(t, z):  # f sees u in the state's dtype (a float32 layer warned of float64)
            fu, gu, gp = self.vjp(t, z[:n].astype(self.y0_flat.dtype, copy=False), z[n:2 * n])
            return np.concatenate([np.reshape(fu, -1), -gu, -gp])

        z, _, _ = self.integrate(G, start, end, np.concatenate([u, lam, mu]), 2 * n,
                                 on_step=blowing_up)
        self.u_back = z[:n]
        if i == 0:
            self.check_drift(self.u_back, None, end)
        return z[n:2 * n], z[2 * n:]

    def check_drift(self, u_back, u_fwd, t):
        if u_fwd is None:
            u_fwd = self.y0_flat
        gap = np.linalg.norm(u_back - u_fwd)
        rtol = float(np.max(self.rtol))  # (the loosest of per-entry tolerances)
        size = np.linalg.norm(u_fwd) + float(np.max(self.atol)) / max(rtol, 1e-300)
        if not gap <= max(math.sqrt(rtol), 1e-4) * size:
            # (fixed steps: their own error, not rtol, sets the gap; the message blamed the
            # problem's stability alone, for Euler on a stable one)
            coarse = "" if self.options["adaptive"] and self.solver.adaptive else (
                ", or the fixed steps too coarse to retrace it (a smaller dt)")
            raise SolveError(
                f"BacksolveAdjoint: solving u backwards drifted from the forward solution at "
                f"t = {t} (relative gap {gap / size:.3g}): the problem is unstable backwards "
                f"in time{coarse}, so this gradient would be wrong. Use "
                "sensealg=InterpolatingAdjoint() or QuadratureAdjoint() (or Direct()).")

    def adjoint_jacobian(self, G, U, lam_only):
        """The stiff solvers' Jacobian of the adjoint equation, from Jacobians of ``f`` alone
        (forward mode, no second derivatives): ``d(-lambda^T f_u)/d lambda = -f_u^T`` and
        ``d(-lambda^T f_p)/d lambda = -f_p^T``; ``mu`` feeds nothing back. The time
        derivative is a difference taken toward the end of the interval (the step's
        direction): ``U`` is held constant beyond the times it was solved for, so a quotient
        reaching past them (at t1, or at a checkpoint) lost dU/dt and the step its order. Its
        step suits the precision of ``U`` and ``p`` (``G`` is float32-accurate when they are
        float32, though ``lambda`` is float64)."""

        def jac(t, z, g0, h):
            self.stats.njac += 1
            u = U(t)
            f_u = jacobian(lambda y: self.rhs(t, y, self.pv), u, mode="fwd")
            n = f_u.shape[0]
            if lam_only:
                J = -f_u.T
            else:
                flat = self.params.pack([raw(v) for v in self.pv])
                f_p = jacobian(lambda q: self.rhs(t, u, self.params.split(q)), flat,
                               mode="fwd") if flat.size else np.zeros((n, 0))
                J = np.zeros((z.size, z.size))
                J[:n, :n] = -f_u.T
                J[n:, :n] = -f_p.T
            return J, time_derivative(G, t, z, g0, h, u, *self.pv)

        return jac

    def quadrature(self, start, end, U, lam, mu):
        def G(t, z):
            return -self.vjp(t, U(t), z, wrt_p=False)[1]

        lam_end, steps, F = self.integrate(G, start, end, lam, None, keep=True, U=U)
        if self.params.size:
            nodes, weights = _gauss_legendre(self.solver.order)
            for step in steps:
                for x, w in zip(nodes, weights):
                    t = step.t0 + x * step.h
                    lam_t = self.solver.interpolate(F, step, x)
                    mu = mu - (w * step.h) * self.vjp_p(t, U(t), lam_t)  # forward orientation
        return lam_end, mu

    def resolve(self, t_from, t_to, y):
        """The forward solution between two checkpoints, solved again (dense)."""
        F = Counted(lambda t, z: self.rhs(t, z, self.pv), self.stats)
        opts = dict(self.options, saveat=np.array([t_to]))
        _, _, steps = integrate(self.forward_solver, F, t_from, t_to, y, keep_steps=True,
                                jac=jac_for(self.forward_solver, F, y, *self.pv), **opts)
        return _Dense(self.forward_solver, steps, F)


def _gauss_legendre(order):
    """Nodes on [0, 1] and weights summing to 1, exact for polynomials of degree ``order``."""
    x, w = np.polynomial.legendre.leggauss(max(1, (order + 2) // 2))
    return (x + 1) / 2, w / 2


def _flat_step(step):
    """A forward step on flat vectors (the adjoint's layout), its stages completed."""
    flat = Step(step.t0, step.h, np.reshape(step.y0, -1), np.reshape(step.y1, -1),
                [np.reshape(k, -1) for k in step.ks])
    if step.f1 is not None:
        flat.f1 = np.reshape(step.f1, -1)
    flat.extra = step.extra and [np.reshape(k, -1) for k in step.extra]
    return flat


class _Dense:
    """``U(t)``: the forward solution at ``t`` from its recorded steps (plain values)."""

    def __init__(self, solver, steps, F):
        self.solver, self.steps, self.F = solver, steps, F
        self.sign = 1.0 if not steps or steps[0].h > 0 else -1.0
        self.ends = np.array([self.sign * (s.t0 + s.h) for s in steps])
        self.starts = np.array([s.t0 for s in steps])

    def __call__(self, t):
        steps = self.steps
        i = min(int(np.searchsorted(self.ends, self.sign * t, side="left")), len(steps) - 1)
        step = steps[i]
        theta = (t - step.t0) / step.h
        if theta >= 1.0:
            return step.y1
        if theta <= 0.0:
            return step.y0
        return self.solver.interpolate(self.F, step, theta)
