"""Random ``NeuralODE`` layers: outputs and gradients against SciPy and finite differences (not
part of the suite: it needs SciPy and takes seconds per case).

Each case draws a small model (Dense layers with smooth activations, a LayerNorm, a Scale, a
SkipConnection, a layer used twice), a batch of inputs, a time span (either direction), save
times, a solver (an adaptive one, or fixed steps of ``dt``), a sensitivity algorithm and float64
or float32. It checks

- the layer's output against SciPy's DOP853 at 1e-12 solving ``du/dt = model(u)`` for the whole
  batch (adaptive), or against the fixed steps' textbook loop;
- the gradient of a weighted sum of squares of the output with respect to every trainable array
  of the model (a tied one: its total) and the input, against central differences of that
  reference (float64), or, in float32, float32 gradients as accurate as float64's (and no
  warning from a layer that the solver gave it float64 states).

    PYTHONPATH=src /work/main/.venv/bin/python -m tests.ode.fuzz_neural N [SEED]
    ... --case I      rerun only case I, printing the drawn problem
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
from scipy.integrate import solve_ivp

import fluxml as fl
from tests.ode.fuzz_problems import (
    ADAPTIVE,
    VALUE_TOL,
    float32_off,
    naive_fixed,
    run_cases,
)
from tests.ode.fuzz_sensitivity import _scale

ACTIVATIONS = {"tanh": np.tanh, "sigmoid": fl.sigmoid, "softplus": fl.softplus,
               "identity": lambda x: x}
SOLVERS = ["Tsit5", "DP5", "Vern7", "BS3", "Rodas5", "Rosenbrock23"]
ALGS = {"Direct": fl.ode.Direct, "Interpolating": fl.ode.InterpolatingAdjoint,
        "Checkpointing": lambda: fl.ode.InterpolatingAdjoint(checkpointing=True),
        "Backsolve": fl.ode.BacksolveAdjoint, "Quadrature": fl.ode.QuadratureAdjoint}


def draw_model(rng, n):
    """A float64 model mapping a batch (N, n) to (N, n), and its description."""
    act = str(rng.choice(list(ACTIVATIONS)))
    h = int(rng.integers(1, 5))
    kind = str(rng.choice(["dense", "chain", "tied", "layernorm", "skip", "scale"]))
    dense = (lambda i, o, a=act: fl.Dense(i, o, ACTIVATIONS[a], dtype=np.float64))
    if kind == "dense":
        model = dense(n, n)
    elif kind == "chain":
        model = fl.Chain(dense(n, h), fl.Dense(h, n, dtype=np.float64))
    elif kind == "tied":  # the same layer twice: one parameter, its total gradient
        d = dense(n, n, "tanh")
        model = fl.Chain(d, d)
    elif kind == "layernorm":
        model = fl.Chain(dense(n, h + 1), fl.LayerNorm(h + 1, dtype=np.float64),
                         fl.Dense(h + 1, n, dtype=np.float64))
    elif kind == "skip":
        model = fl.SkipConnection(fl.Chain(dense(n, h), fl.Dense(h, n, dtype=np.float64)),
                                  lambda a, b: a - 0.5 * b)
    else:
        model = fl.Chain(fl.Scale(n, dtype=np.float64), dense(n, n))
    # random (not the initialisers') values, kept small: the solution stays of size 1
    for x in fl.trainable(model).values():
        x[...] = rng.standard_normal(x.shape) / 2
    return model, f"{kind}({act}, h={h})"


class Case:
    def __init__(self, rng):
        self.n = n = int(rng.integers(1, 4))
        self.model, self.what = draw_model(rng, n)
        self.x = rng.standard_normal((int(rng.integers(1, 4)), n))
        t0 = float(rng.uniform(-1, 1))
        span = float(rng.uniform(0.2, 1.5)) * (1 if rng.random() < 0.7 else -1)
        self.tspan = (t0, t0 + span)
        self.fixed = rng.random() < 0.2
        if self.fixed:
            self.solver, self.steps = str(rng.choice(["Euler", "Heun", "RK4"])), int(
                rng.integers(1, 10))
            self.alg, self.saveat = "Direct", None
        else:
            self.solver = str(rng.choice(SOLVERS))
            self.alg = str(rng.choice(list(ALGS)))
            k = int(rng.integers(0, 4))
            ts = [t0 + span * u for u in sorted(rng.uniform(0, 1, k))] + [t0 + span] if k else None
            self.saveat = ts
        self.float32 = bool(rng.random() < 0.3)

    def describe(self):
        how = (f"{self.solver} dt/{self.steps}" if self.fixed else f"{self.solver} {self.alg}")
        return (f"{self.what} n={self.n} batch={self.x.shape[0]} tspan=({self.tspan[0]:.4f}, "
                f"{self.tspan[1]:.4f}) {how} saveat="
                f"{None if self.saveat is None else np.round(self.saveat, 4).tolist()}"
                + " float32" * self.float32)

    def node(self, model, rtol=None):
        rtol = ADAPTIVE.get(self.solver, 0.0) if rtol is None else rtol
        kw = (dict(dt=abs(self.tspan[1] - self.tspan[0]) / self.steps) if self.fixed
              else dict(rtol=rtol, atol=rtol / 10))
        return fl.NeuralODE(model, self.tspan, solver=getattr(fl.ode, self.solver)(),
                            saveat=self.saveat, sensealg=ALGS[self.alg](), max_steps=20000,
                            **kw)

    def reference(self, x):
        """The output as NeuralODE gives it, by SciPy (or the textbook loop) on the batch."""
        shape = np.shape(x)

        def rhs(t, y):
            return np.ravel(self.model(np.reshape(y, shape)))

        t0, t1 = self.tspan
        if self.fixed:
            h = (t1 - t0) / self.steps
            return naive_fixed(self.solver, rhs, t0, np.ravel(x), h, self.steps)[-1].reshape(
                shape)
        times = [t1] if self.saveat is None else self.saveat
        r = solve_ivp(rhs, self.tspan, np.ravel(x), method="DOP853", rtol=1e-12, atol=1e-13,
                      dense_output=True)
        ys = r.sol(times).T.reshape((len(times),) + shape)
        return ys[-1] if self.saveat is None else ys


def check(case, rng, verbose=False):
    """None when the layer agrees with the references, else a message. A UserWarning (a
    float32 layer given float64 states by the solver) raises: it is a finding too."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        return _check(case, rng, verbose)


def _check(case, rng, verbose):
    vtol = 1e-10 if case.fixed else VALUE_TOL.get(case.solver, 2e-6)
    out = case.node(case.model)(case.x)
    ref = case.reference(case.x)
    err = np.max(np.abs(out - ref)) / _scale(ref)
    if verbose:
        print(f"  value error {err:.2e} (tolerance {vtol})")
    if err > vtol:
        return f"output: relative error {err:.2e} against the reference"
    W = rng.standard_normal(np.shape(ref))
    if case.float32:
        return check_float32(case, W, verbose)
    g, gx = fl.gradient(lambda node, x: np.sum(W * node(x) ** 2), case.node(case.model),
                        case.x)
    params = fl.trainable(case.model)
    got = fl.trainable(g.model)
    if set(got) != set(params):
        return f"the gradient has {sorted(got)}, the model's trainable arrays are {sorted(params)}"
    fd = differences(case, params, W)
    want = np.concatenate([fd["x"].ravel()] + [fd[k].ravel() for k in params])
    have = np.concatenate([np.ravel(gx)] + [np.ravel(got[k]) for k in params])
    gerr = np.max(np.abs(have - want)) / _scale(want)
    gtol = 1e-7 if case.fixed else 50 * vtol
    if verbose:
        print(f"  gradient error {gerr:.2e} (tolerance {gtol})\n  {have}\n  {want}")
    if gerr > gtol:
        return f"gradient ({case.alg}): relative error {gerr:.2e} against finite differences"
    return None


def differences(case, params, W):
    """Richardson-extrapolated central differences of the reference loss, for the input and
    every entry of every trainable array (perturbed in place: a tied array moves at each of
    its places, as its total gradient does)."""
    h = 1e-4 if not case.fixed else 1e-5

    def loss(x):
        return float(np.sum(W * case.reference(x) ** 2))

    def extrapolated(bump):
        c = [(bump(e, loss) - bump(-e, loss)) / (2 * e) for e in (h, h / 2)]
        return (4 * c[1] - c[0]) / 3

    out = {"x": np.zeros_like(case.x)}
    for i in range(case.x.size):
        def bump(e, loss, i=i):
            x = case.x.copy()
            x.flat[i] += e
            return loss(x)
        out["x"].flat[i] = extrapolated(bump)
    for k, a in params.items():
        out[k] = np.zeros(a.shape)
        for i in range(a.size):
            def bump(e, loss, a=a, i=i):
                old = a.flat[i]
                a.flat[i] = old + e
                try:
                    return loss(case.x)
                finally:
                    a.flat[i] = old
            out[k].flat[i] = extrapolated(bump)
    return out


def check_float32(case, W, verbose):
    """Float32 model and input: float32 output and gradients, as accurate as float64's at the
    same tolerances up to float32's rounding."""
    def run(model, x):
        node = case.node(model, rtol=1e-5)
        return fl.gradient(lambda node, x: np.sum(W * node(x) ** 2), node, x), node(x)

    (g32, gx32), out32 = run(fl.f32(case.model), case.x.astype(np.float32))
    (g64, gx64), out64 = run(case.model, case.x)
    ref = case.reference(case.x)
    e32, e64 = (np.max(np.abs(o - ref)) / _scale(ref) for o in (out32, out64))
    p32, p64 = fl.trainable(g32.model), fl.trainable(g64.model)
    kinds = {np.asarray(v).dtype.name for v in [out32, gx32, *p32.values()]}
    if kinds != {"float32"}:
        return f"float32 model and input gave {sorted(kinds)} output or gradients"
    a = np.concatenate([np.ravel(gx32)] + [np.ravel(p32[k]) for k in p64])
    b = np.concatenate([np.ravel(gx64)] + [np.ravel(p64[k]) for k in p64])
    gerr = np.max(np.abs(a - b)) / _scale(b)
    if verbose:
        print(f"  float32 value error {e32:.2e} (float64's {e64:.2e}), gradient off float64's "
              f"by {gerr:.2e}")
    off = float32_off(e32, e64, gerr)
    return off and f"{off} ({case.alg})"


def main(argv):
    return run_cases(argv, 30, b"neural", Case, check, (fl.ode.SolveError,))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
