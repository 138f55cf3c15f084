"""Random small ODE problems: ``fl.ode.solve``'s values and gradients against independent
references (not part of the suite: it needs SciPy and takes seconds per case).

Each case draws a right-hand side (linear, a small tanh network, Lotka-Volterra-like,
time-dependent, a stiff relaxation), a state (a vector, a matrix, or a tree ``{"x", "v"}`` of
a second-order system), parameters (a dict of arrays and float numbers, with a static int),
a time span (either direction), save times (none, some, repeated, the ends), a solver and a
sensitivity algorithm (an adjoint sometimes with its own backward solver and tolerances, or
checkpoints at listed times). It checks

- the saved states against SciPy's DOP853 at tolerance 1e-12 (adaptive solvers), or against
  a naive loop of the method's textbook formula (the fixed-step Euler, Midpoint, Heun, RK4,
  and the adaptive methods run with ``adaptive=False``, from their tableaus), at save times
  on the steps' grid;
- the gradient of a weighted sum of the saved states with respect to ``u0`` and every float
  leaf of ``p``, for every ``sensealg``, against central differences of that reference;
- with ``Direct()``: forward mode (``fl.jvp``) against the reverse gradient, and the
  gradient of the dense output ``sol(t)`` at a time between the saves (or at an array of
  two: the states stacked);
- float32 states and parameters (every solver): float32 solution and gradients, as accurate
  as float64's at the same tolerances up to float32's rounding, f given float32 states only.

A clear error (``SolveError``, ``DifferentiationError``) counts as refused, not failed.

    PYTHONPATH=src /work/main/.venv/bin/python -m tests.ode.fuzz_sensitivity N [SEED]
    ... --case I      rerun only case I, printing the drawn problem
"""

from __future__ import annotations

import sys

import numpy as np
from scipy.integrate import solve_ivp

import fluxml as fl
from tests.ode.fuzz_problems import (
    ADAPTIVE,
    CORES,
    FIXED,
    FIXED_ADAPTIVE,
    VALUE_TOL,
    _params,
    float32_off,
    make_f,
    naive_fixed,
    naive_tableau,
    pack,
    run_cases,
    stacked,
    unpack,
)

ALGS = {
    "Direct": lambda pr: fl.ode.Direct(),
    "Interpolating": lambda pr: fl.ode.InterpolatingAdjoint(**pr.backward),
    "Interpolating(checkpointing)": lambda pr: fl.ode.InterpolatingAdjoint(
        checkpointing=True, **pr.backward),
    "Interpolating(checkpoints=2)": lambda pr: fl.ode.InterpolatingAdjoint(
        checkpointing=True, checkpoints=pr.checkpoints, **pr.backward),
    "Backsolve": lambda pr: fl.ode.BacksolveAdjoint(**pr.backward),
    "Quadrature": lambda pr: fl.ode.QuadratureAdjoint(**pr.backward),
}


# --- one case ----------------------------------------------------------------------------------

class Problem:
    def __init__(self, rng):
        self.kind = str(rng.choice(list(CORES)))
        self.state = str(rng.choice(["vector", "vector", "matrix", "tree"]))
        self.n = n = int(rng.integers(1, 4))
        self.p = _params(self.kind, n, rng)
        self.f = make_f(CORES[self.kind], self.state)
        g = rng.standard_normal
        self.u0 = ({"x": g(n), "v": g(n) / 2} if self.state == "tree"
                   else g((n, 2)) if self.state == "matrix" else g(n))
        if self.kind == "lotka":  # populations: positive
            self.u0 = (np.abs(self.u0) + 0.2 if self.state != "tree"
                       else {"x": np.abs(self.u0["x"]) + 0.2, "v": self.u0["v"]})
        t0 = float(rng.uniform(-1, 1))
        span = float(rng.uniform(0.2, 2.0)) * (1 if rng.random() < 0.7 else -1)
        self.tspan = (t0, t0 + span)
        self.fixed = rng.random() < 0.25
        if self.fixed:
            self.solver = str(rng.choice(list(FIXED)))
            self.steps = int(rng.integers(1, 12))
            self.dt = abs(span) / self.steps
            self.alg = "Direct"
            self.saveat = None
        else:
            names = list(ADAPTIVE)
            self.solver = str(rng.choice(names if self.kind != "stiff" or rng.random() < 0.3
                                         else ["Rodas5", "Rosenbrock23"]))
            self.saveat = self._saveat(rng)
            # extra checkpoints need save times (a clear ValueError otherwise)
            self.alg = str(rng.choice([a for a in ALGS if self.saveat is not None
                                       or "checkpoints=" not in a]))
        self.size = pack(self.u0, self.state).size
        # f closes over p instead of taking it: Direct differentiates it, an adjoint must
        # refuse by name (it cannot see a derivative that does not come through p)
        self.closure = bool(rng.random() < 0.2)
        self._widen(rng)

    def _widen(self, rng):
        """Draws made after the others (the suite's cases keep their problems): an adaptive
        method with fixed steps, grid save times for fixed steps, an adjoint's own backward
        solver and tolerances, checkpoints at listed times."""
        self.backward, self.checkpoints = {}, 2
        t0, t1 = self.tspan
        if self.fixed:
            if rng.random() < 0.4:
                self.solver = str(rng.choice(FIXED_ADAPTIVE))
            if rng.random() < 0.5:  # save times on the steps' grid (the reference has those)
                k = sorted(int(v) for v in rng.integers(0, self.steps + 1, rng.integers(1, 5)))
                self.saveat = [t0 + (t1 - t0) * i / self.steps for i in k + k[-1:]]
            if rng.random() < 0.4:  # an adjoint on the steps' grid
                self.alg = str(rng.choice([a for a in ALGS if "checkpoints=" not in a]))
            return
        if self.alg != "Direct" and rng.random() < 0.3:
            name = str(rng.choice(["Vern7", "DP5", "Tsit5", "Rodas5"]))
            self.backward = dict(solver=getattr(fl.ode, name)(), rtol=ADAPTIVE[name],
                                 atol=ADAPTIVE[name] / 10)
        if "checkpoints=" in self.alg and rng.random() < 0.5:
            # listed times: inside the span, some at a save time or an end
            ts = list(rng.uniform(min(t0, t1), max(t0, t1), int(rng.integers(1, 4))))
            ts += [float(rng.choice(list(self.saveat) + [t0, t1]))] * int(rng.random() < 0.5)
            self.checkpoints = sorted(float(t) for t in ts)

    def _saveat(self, rng):
        t0, t1 = self.tspan
        kind = rng.choice(["none", "end", "some", "ends+repeat"])
        if kind == "none":
            return None
        if kind == "end":
            return [t1]
        ts = sorted(float(v) for v in rng.uniform(min(t0, t1), max(t0, t1),
                                                  int(rng.integers(1, 5))))
        if kind == "ends+repeat":
            ts = sorted([min(t0, t1), max(t0, t1)] + ts + ts[:1])
        return ts if t1 >= t0 else ts[::-1]

    def describe(self):
        return (f"{self.kind} {self.state} n={self.n} tspan=({self.tspan[0]:.4f}, "
                f"{self.tspan[1]:.4f}) {self.solver} "
                + (f"dt={self.dt:.4f} " if self.fixed else "")
                + (f"{self.alg} " if not self.fixed or self.alg != "Direct" else "")
                + "".join(f"{k}={v!r} " for k, v in self.backward.items())
                + (f"checkpoints={np.round(self.checkpoints, 4).tolist()} "
                   if "checkpoints=" in self.alg and self.checkpoints != 2 else "")
                + f"saveat={None if self.saveat is None else np.round(self.saveat, 4).tolist()}"
                + " (f closes over p)" * self.closure)

    def solve(self, u0, p, alg="Direct"):
        kw = (dict(dt=self.dt, adaptive=False) if self.fixed
              else dict(rtol=ADAPTIVE[self.solver], atol=ADAPTIVE[self.solver] / 10))
        f = self.f
        if self.closure:
            closed = p
            f, p = (lambda t, u, _: self.f(t, u, closed)), None
        return fl.ode.solve(f, u0, self.tspan, p, solver=getattr(fl.ode, self.solver)(),
                            saveat=self.saveat, sensealg=ALGS[alg](self), max_steps=20000, **kw)

    def reference(self, u0, p, times, exact=False):
        """The states at ``times`` as (T, size): SciPy at 1e-12, or the naive fixed steps
        (``exact``: SciPy for fixed steps too)."""
        y0 = pack(u0, self.state)

        def rhs(t, y):
            return pack(self.f(t, unpack(y, self.state, self.n), p), self.state)

        if self.fixed and not exact:
            naive = naive_fixed if self.solver in FIXED else naive_tableau
            states = naive(self.solver, rhs, self.tspan[0], y0, np.sign(
                self.tspan[1] - self.tspan[0]) * self.dt, self.steps)
            if self.saveat is None:
                return states
            t0, t1 = self.tspan  # grid times: the state after round((t - t0) / dt) steps
            return states[[round((t - t0) / (t1 - t0) * self.steps) for t in times]]
        times = np.asarray(times, dtype=float)
        r = solve_ivp(rhs, self.tspan, y0, method="DOP853", rtol=1e-12, atol=1e-13,
                      dense_output=True)
        if not r.success:
            raise Refused(f"SciPy: {r.message}")
        return r.sol(times).T.reshape(len(times), -1)


class Refused(Exception):
    """A case nobody can answer (the reference fails) or fluxml refuses by name."""


def leaves(p):
    """The float leaves of ``p`` (and the key and index to perturb each entry)."""
    out = []
    for k, v in p.items():
        if isinstance(v, float):
            out.append((k, None))
        elif isinstance(v, np.ndarray):
            out.extend((k, i) for i in range(v.size))
    return out


def entries(g, p):
    """The gradient ``g`` of ``p`` at each float entry, in ``leaves``' order (None is zero: no
    dependence, as the state at t0 has on p)."""
    return np.array([0.0 if g[k] is None else g[k] if i is None else g[k].flat[i]
                     for k, i in leaves(p)])


def along(g, dp):
    """<g, dp> over the leaves ``dp`` has (a gradient of None is zero)."""
    return sum(np.sum(g[k] * dp[k]) for k in dp if g[k] is not None)


def perturbed(p, k, i, eps):
    q = dict(p)
    if i is None:
        q[k] = p[k] + eps
    else:
        q[k] = p[k].copy()
        q[k].flat[i] += eps
    return q


def bump_u(u0, state, i, eps):
    y = pack(u0, state).copy()
    y[i] += eps
    n = np.size(u0["x"]) if state == "tree" else None
    if state == "tree":
        return {"x": y[:n], "v": y[n:]}
    return y.reshape(np.shape(u0))


def differences(pr, fun):
    """Central differences of ``fun(u0, p)`` for every entry of u0 and every float of p,
    Richardson-extrapolated from steps h and h/2 (error O(h^4): a problem whose gradient is
    large, 1e7 after Lotka-Volterra grew backwards in time, has third derivatives to
    match, which plain central differences at 1e-4 missed by 2e-4)."""
    h = 1e-4 if not pr.fixed else 1e-5

    def central(bumped, eps):
        return (fun(*bumped(eps)) - fun(*bumped(-eps))) / (2 * eps)

    def extrapolated(bumped):
        return (4 * central(bumped, h / 2) - central(bumped, h)) / 3

    fd_u = np.array([extrapolated(lambda e, i=i: (bump_u(pr.u0, pr.state, i, e), pr.p))
                     for i in range(pr.size)])
    fd_p = np.array([extrapolated(lambda e, k=k, i=i: (pr.u0, perturbed(pr.p, k, i, e)))
                     for k, i in leaves(pr.p)])
    return fd_u, fd_p


def _scale(x):
    return 1.0 + float(np.max(np.abs(x), initial=0.0))


def check(case, rng, verbose=False):
    """None when fluxml agrees with the references, else a message; raises Refused."""
    pr = case
    try:
        with np.errstate(all="ignore"):
            sol = pr.solve(pr.u0, pr.p)
    except fl.ode.SolveError as e:  # right only if the problem really cannot be solved
        try:
            ref = pr.reference(pr.u0, pr.p, [pr.tspan[1]])
        except Refused:
            raise Refused("both fail to solve") from None
        if np.all(np.isfinite(ref)) and np.max(np.abs(ref)) < 1e3:
            return f"SolveError on a problem SciPy solves: {str(e)[:150]}"
        raise Refused("SolveError: the solution grows too large") from None
    times = np.asarray(sol.t)
    ref = pr.reference(pr.u0, pr.p, times)
    if not np.all(np.isfinite(ref)) or np.max(np.abs(ref)) > 1e4:
        raise Refused("the solution grows too large to compare")
    ours = stacked(sol.u, pr.state)
    if ours.shape != ref.shape:
        return f"solution shape {ours.shape} != reference {ref.shape}"
    vtol = 1e-10 if pr.fixed else VALUE_TOL.get(pr.solver, 2e-6)
    err = np.max(np.abs(ours - ref)) / _scale(ref)
    if verbose:
        print(f"  value error {err:.2e} (tolerance {vtol})")
    if err > vtol:
        return f"solution: relative error {err:.2e} against the reference"
    W = rng.standard_normal(ref.shape)

    def loss_ref(u0, p):
        return float(np.sum(W * pr.reference(u0, p, times) ** 2))

    def loss(u0, p, alg):
        return np.sum(W * stacked(pr.solve(u0, p, alg).u, pr.state) ** 2)

    fd_u, fd_p = differences(pr, loss_ref)
    with np.errstate(all="ignore"):
        try:
            gu, gp = fl.gradient(lambda u0, p: loss(u0, p, pr.alg), pr.u0, pr.p)
        except (fl.ode.SolveError, fl.DifferentiationError) as e:
            if pr.closure and pr.alg != "Direct":
                if "closes over" not in str(e) or "Direct()" not in str(e):
                    return f"the refusal of a closure does not say so: {str(e)[:150]}"
                raise Refused("an adjoint refuses f closing over p, naming Direct()") from None
            raise Refused(f"{type(e).__name__}: {str(e)[:90]}") from None
    if pr.closure and pr.alg != "Direct":
        return "an adjoint differentiated f closing over a traced p without an error"
    got_u = pack(gu, pr.state)
    got_p = entries(gp, pr.p)
    if gp.get("n", "absent") is not None and "n" in pr.p:
        return f"the gradient of the static int leaf is {gp['n']!r}, not None"
    for k, i in leaves(pr.p):
        if i is None and not isinstance(gp[k], (float, type(None))):
            return f"the gradient of the float leaf {k} is a {type(gp[k]).__name__}"
    scale = _scale(np.concatenate([fd_u, fd_p]))
    gtol = 1e-7 if pr.fixed else 50 * vtol
    gerr = max(np.max(np.abs(got_u - fd_u)), np.max(np.abs(got_p - fd_p), initial=0)) / scale
    if pr.fixed and pr.alg != "Direct":
        return check_fixed_adjoint(pr, W, times, np.concatenate([got_u, got_p]),
                                   np.concatenate([fd_u, fd_p]), scale, verbose)
    if verbose:
        print(f"  gradient error {gerr:.2e} (tolerance {gtol})\n  u0: {got_u} vs {fd_u}\n"
              f"  p: {got_p} vs {fd_p}")
    if gerr > gtol:
        return f"gradient ({pr.alg}): relative error {gerr:.2e} against finite differences"
    if pr.alg == "Direct":
        message = check_direct(pr, rng, loss, gu, gp, scale, verbose)
        if message:
            return message
    return check_float32(pr, verbose)


def check_fixed_adjoint(pr, W, times, got, discrete, scale, verbose):
    """An adjoint with fixed steps solves the continuous adjoint equation on the steps' grid:
    not the exact gradient of the computed (discrete) solution, as Direct's is, but one as
    close to the exact gradient as that, at the method's order. It must be within 10 times
    Direct's distance from the exact gradient (differences of SciPy's solution; measured:
    within 2.4 times, the two converging together as dt falls)."""
    exact = np.concatenate(differences(pr, lambda u0, p: float(np.sum(
        W * pr.reference(u0, p, times, exact=True) ** 2))))
    direct, adjoint = (np.max(np.abs(g - exact)) / scale for g in (discrete, got))
    if verbose:
        print(f"  off the exact gradient: {pr.alg} {adjoint:.2e}, Direct {direct:.2e}")
    if direct > 1e-3:  # steps too coarse for the errors' expansion in dt: one Vern7 step of
        # 1.9 had Direct 9e-2 and BacksolveAdjoint (its u solved backwards) 9 off; 2.8 times
        # Direct's with 2 steps, converging together with 4, 8, 16
        raise Refused(f"fixed steps too coarse to compare an adjoint (Direct {direct:.1e} "
                      "off the exact gradient)")
    if adjoint > 10 * direct + 1e-8:
        return (f"gradient ({pr.alg}, fixed steps): {adjoint:.2e} off the exact gradient, "
                f"Direct's {direct:.2e}")
    return None


def check_direct(pr, rng, loss, gu, gp, scale, verbose):
    """Forward mode against the reverse gradient, and the dense output's gradient."""
    du = bump_u(pr.u0, pr.state, 0, 0.0)
    du = {k: rng.standard_normal(np.shape(v)) for k, v in du.items()} if pr.state == "tree" \
        else rng.standard_normal(np.shape(du))
    dp = {k: (float(rng.standard_normal()) if isinstance(v, float) else
              rng.standard_normal(v.shape) if isinstance(v, np.ndarray) else None)
          for k, v in pr.p.items()}
    dp = {k: v for k, v in dp.items() if v is not None}
    static = {k: v for k, v in pr.p.items() if not isinstance(v, (float, np.ndarray))}
    with np.errstate(all="ignore"):
        _, tangent = fl.jvp(lambda u0, q: loss(u0, {**q, **static}, "Direct"), (pr.u0, {
            k: v for k, v in pr.p.items() if k not in static}), (du, dp))
    rev = float(np.sum(pack(gu, pr.state) * pack(du, pr.state))
                + along(gp, dp))
    if verbose:
        print(f"  jvp {tangent} vs reverse {rev}")
    if abs(tangent - rev) > 1e-8 * scale * (1 + sum(np.sum(np.abs(v)) for v in dp.values())):
        return f"forward mode {tangent} != reverse mode {rev}"
    if rng.random() < 0.3:
        message = check_second_order(pr, loss, static, dp, scale, verbose)
        if message:
            return message
    if pr.fixed:
        return None
    t0, t1 = pr.tspan
    # inside the span, or at its ends, or at a save time (a step's end, when saveat=None)
    corners = [t0, t1] + list(pr.saveat or [])
    tm = (t0 + float(rng.uniform(0.1, 0.9)) * (t1 - t0) if rng.random() < 0.6
          else float(corners[int(rng.integers(len(corners)))]))
    w = rng.standard_normal(pr.size)
    # sometimes an array of times, sol([tm, t]): the states stacked
    times = [tm] + [t0 + float(rng.uniform(0, 1)) * (t1 - t0)] * int(rng.random() < 0.3)

    def dense(u0, p):
        sol = pr.solve(u0, p)
        if len(times) == 1:
            return np.sum(w * pack(sol(tm), pr.state))
        return np.sum(w * stacked(sol(np.array(times)), pr.state))

    def dense_ref(u0, p):
        return float(np.sum(w * pr.reference(u0, p, times)))

    with np.errstate(all="ignore"):
        value = float(dense(pr.u0, pr.p))
        gu, gp = fl.gradient(dense, pr.u0, pr.p)
    fd_u, fd_p = differences(pr, dense_ref)
    got = np.concatenate([pack(gu, pr.state), entries(gp, pr.p)])
    want = np.concatenate([fd_u, fd_p])
    # the dense output is of a lower order than the steps (Tsit5's and DP5's of 4)
    tol = 100 * VALUE_TOL.get(pr.solver, 2e-6)
    verr = abs(value - dense_ref(pr.u0, pr.p)) / _scale([value])
    gerr = np.max(np.abs(got - want)) / _scale(want)
    if verbose:
        print(f"  dense output at {times}: value error {verr:.2e}, gradient error {gerr:.2e}")
    if verr > tol or gerr > tol:
        return (f"dense output sol({np.round(times, 4).tolist()}): value error {verr:.2e}, "
                f"gradient error {gerr:.2e} (tolerance {tol})")
    return None


def check_second_order(pr, loss, static, dp, scale, verbose):
    """With Direct(), the derivative along ``dp`` of <gradient, dp> (reverse over reverse)
    against central differences of the first-order gradient."""
    if pr.saveat is None and not pr.fixed:
        # saveat=None saves at the steps, whose times move with p: Direct holds the step
        # sizes fixed (they carry no derivative, by design), differences of the gradient
        # see the save times move (-1.78 against -0.51 on a DP5 case; with the times pinned
        # the two agree to 1e-9)
        pr.saveat = [float(t) for t in pr.solve(pr.u0, pr.p).t]
        try:
            return check_second_order(pr, loss, static, dp, scale, verbose)
        finally:
            pr.saveat = None
    q0 = {k: v for k, v in pr.p.items() if k not in static}

    def inner(q):
        (g,) = fl.gradient(lambda q: loss(pr.u0, {**q, **static}, "Direct"), q)
        return along(g, dp)

    def moved(e):
        return {k: (v + e * dp[k]) if k in dp else v for k, v in q0.items()}

    def central(eps):
        return (float(inner(moved(eps))) - float(inner(moved(-eps)))) / (2 * eps)

    with np.errstate(all="ignore"):
        (h,) = fl.gradient(inner, q0)
        got = float(along(h, dp))
        # fixed steps (checked to 1e-6): Richardson-extrapolated, as the first-order
        # differences are; plain central differences at 1e-4 were 4e-6 off a second
        # derivative of 3e7 (Lotka-Volterra grown backwards in time, Midpoint), whose next
        # derivatives are as large. Adaptive steps (1e-3 and looser): their noise, which
        # extrapolation would triple, is what limits them
        want = (4 * central(0.5e-4) - central(1e-4)) / 3 if pr.fixed else central(1e-4)
    size = 1 + sum(np.sum(np.abs(v)) for v in dp.values())
    if verbose:
        print(f"  second order along dp: {got} vs differences {want}")
    # the differences see the step sequence change with p: noise of about rtol / eps, 1e-2
    # relative for Rosenbrock23 at 1e-6 (on a stiff problem solved backwards the same
    # case with fixed steps converges to the engine's value as eps falls)
    rel = 1e-6 if pr.fixed else 1e-3 if ADAPTIVE[pr.solver] <= 1e-8 else 5e-2
    tol = rel * (scale * size ** 2 + abs(want))
    if not abs(got - want) <= tol:
        return f"second order (Direct): {got} != central differences of the gradient {want}"
    return None


def _f32(x):
    if isinstance(x, dict):
        return {k: _f32(v) for k, v in x.items()}
    if isinstance(x, np.ndarray):
        return x.astype(np.float32)
    return np.float32(x) if isinstance(x, float) else x


def check_float32(pr, verbose=False):
    """Float32 in: a float32 solution and gradients, as accurate as float64's at the same
    tolerances up to float32's rounding."""
    kw = (dict(dt=pr.dt, adaptive=False) if pr.fixed else dict(rtol=1e-5, atol=1e-6))

    seen = set()  # the dtypes of the states f is given (a float32 f given float64: a leak)

    def f(t, u, p):
        seen.update(str(x.dtype) for x in (u.values() if isinstance(u, dict) else [u]))
        return pr.f(t, u, p)

    def run(u, p, alg="Direct"):
        return fl.ode.solve(f, u, pr.tspan, p, solver=getattr(fl.ode, pr.solver)(),
                            saveat=pr.saveat, sensealg=ALGS[alg](pr), max_steps=20000, **kw)

    u32, p32 = _f32(pr.u0), _f32(pr.p)
    with np.errstate(all="ignore"):
        sols = [run(u32, p32), run(pr.u0, pr.p)]
        seen.clear()
        try:
            fl.gradient(lambda u, p: np.sum(stacked(run(u, p, pr.alg).u, pr.state)), u32, p32)
        except (fl.ode.SolveError, fl.DifferentiationError):
            pass
    if seen - {"float32"}:
        return f"a float32 solve ({pr.alg}) gave f states of {sorted(seen)}"
    kinds = {np.asarray(v).dtype.name for v in (sols[0].u.values() if pr.state == "tree"
                                                 else [sols[0].u])}
    if kinds != {"float32"}:
        return f"float32 state and parameters gave a {sorted(kinds)} solution"
    e32, e64 = (np.max(np.abs(stacked(s.u, pr.state) - ref)) / _scale(ref)
                for s in sols for ref in [pr.reference(pr.u0, pr.p, s.t)])
    if verbose:
        print(f"  float32 value error {e32:.2e}, float64's at the same tolerances {e64:.2e}",
              end="")
    off = float32_off(e32, e64, 0.0)
    if off:
        return off

    def loss(u, p):  # (with saveat=None the two take other steps: only the end compares)
        states = stacked(run(u, p, pr.alg).u, pr.state)
        return np.sum(states if pr.saveat is not None or pr.fixed else states[-1])

    try:
        with np.errstate(all="ignore"):
            gu, gp = fl.gradient(loss, u32, p32)
            gu64, gp64 = fl.gradient(loss, pr.u0, pr.p)
    except (fl.ode.SolveError, fl.DifferentiationError):
        return None
    kinds = {np.asarray(v).dtype.name for v in (list(gu.values()) if pr.state == "tree"
                                                 else [gu])}
    kinds |= {np.asarray(gp[k]).dtype.name for k, _ in leaves(pr.p) if gp[k] is not None}
    if kinds != {"float32"}:
        return f"float32 state and parameters gave gradients in {sorted(kinds)} ({pr.alg})"
    g32 = np.concatenate([pack(gu, pr.state), entries(gp, pr.p)])
    g64 = np.concatenate([pack(gu64, pr.state), entries(gp64, pr.p)])
    gerr = np.max(np.abs(g32 - g64)) / _scale(g64)
    if verbose:
        print(f", gradient off float64's by {gerr:.2e}")
    off = float32_off(0.0, e64, gerr)  # (the values were checked above)
    return off and f"{off} ({pr.alg})"


def main(argv):
    return run_cases(argv, 50, b"ode", Problem, check, (Refused,))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
