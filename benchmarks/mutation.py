"""Gradients of in-place array code: a fill loop and an explicit heat-equation solver.

For each problem, the same computation written for each library:
- fluxml: plain NumPy, written in place (``out[i] = ...``, ``u[1:-1] += ...``);
- PyTorch eager: the same in-place ops on tensors, ``torch.autograd.grad``;
- JAX: functional updates (``x.at[i].set``), eager and under ``jax.jit``.
It also times a Hessian-vector product through the fill loop (forward over reverse in
fluxml and JAX, double backward in PyTorch).
Prints forward+backward time per problem size, the peers' times and the ratio peer / fluxml,
and how fluxml's time grows with n (linear means the ratio of times follows the ratio of n).

Run with the peers installed in a separate venv (see benchmarks/README.md):
    .bench-venv/bin/python benchmarks/mutation.py [--quick]
"""

from __future__ import annotations

import sys
import time

import numpy as np

import fluxml as fl

QUICK = "--quick" in sys.argv


def best_time(fn, repeat=3, min_time=0.2):
    """Best of ``repeat`` runs of ``fn``, each repeated until it takes ``min_time``."""
    fn()  # warm-up (and compilation for jitted peers)
    best = float("inf")
    for _ in range(repeat):
        count, start = 0, time.perf_counter()
        while True:
            fn()
            count += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_time:
                break
        best = min(best, elapsed / count)
    return best


# --- the problems, in fluxml (plain NumPy) -------------------------------------------------

def fill_numpy(x):
    out = np.zeros_like(x)
    for i in range(1, len(x)):
        out[i] = np.sin(x[i]) * x[i - 1]
    return np.sum(out)


def heat_numpy(u0, kappa, steps):
    u = u0.copy()
    for _ in range(steps):
        u[1:-1] += kappa * (u[2:] - 2 * u[1:-1] + u[:-2])
    return np.sum(u**2)


def peers():
    found = {}
    try:
        import torch

        torch.set_num_threads(1)

        def fill_torch(x):
            out = torch.zeros_like(x)
            for i in range(1, len(x)):
                out[i] = torch.sin(x[i]) * x[i - 1]
            return out.sum()

        def heat_torch(u0, kappa, steps):
            u = u0.clone()
            for _ in range(steps):
                u[1:-1] += kappa * (u[2:] - 2 * u[1:-1] + u[:-2])
            return (u**2).sum()

        def torch_fill(x):
            t = torch.tensor(x, requires_grad=True)
            return lambda: torch.autograd.grad(fill_torch(t), t)

        def torch_heat(u0, kappa, steps):
            u = torch.tensor(u0, requires_grad=True)
            k = torch.tensor(kappa, dtype=torch.float64, requires_grad=True)
            return lambda: torch.autograd.grad(heat_torch(u, k, steps), (u, k))

        def torch_hvp(x, v):
            t, vt = torch.tensor(x, requires_grad=True), torch.tensor(v)

            def run():
                (g,) = torch.autograd.grad(fill_torch(t), t, create_graph=True)
                return torch.autograd.grad(g, t, vt)

            return run

        found["PyTorch eager"] = (torch_fill, torch_heat, torch_hvp)
    except ImportError:
        print("PyTorch: not installed (skipped)")
    try:
        import jax
        import jax.numpy as jnp

        jax.config.update("jax_enable_x64", True)

        def fill_jax(x):
            out = jnp.zeros_like(x)
            for i in range(1, len(x)):
                out = out.at[i].set(jnp.sin(x[i]) * x[i - 1])
            return jnp.sum(out)

        def fill_jax_loop(x):  # the form jit wants: a fori_loop instead of Python's loop
            def body(i, out):
                return out.at[i].set(jnp.sin(x[i]) * x[i - 1])

            return jnp.sum(jax.lax.fori_loop(1, len(x), body, jnp.zeros_like(x)))

        def heat_jax(u0, kappa, steps):
            def body(_, u):
                return u.at[1:-1].add(kappa * (u[2:] - 2 * u[1:-1] + u[:-2]))

            return jnp.sum(jax.lax.fori_loop(0, steps, body, u0) ** 2)

        grad_fill = jax.grad(fill_jax)
        grad_fill_jit = jax.jit(jax.grad(fill_jax_loop))
        grad_heat = jax.grad(heat_jax, argnums=(0, 1))
        grad_heat_jit = jax.jit(jax.grad(heat_jax, argnums=(0, 1)), static_argnums=2)

        def eager_fill(x):
            if len(x) > 1000:
                return None  # minutes per call: Python-loop .at[].set without jit
            xj = jnp.asarray(x)
            return lambda: jax.block_until_ready(grad_fill(xj))

        def jit_fill(x):
            xj = jnp.asarray(x)
            return lambda: jax.block_until_ready(grad_fill_jit(xj))

        def eager_heat(u0, kappa, steps):
            uj = jnp.asarray(u0)
            return lambda: jax.block_until_ready(grad_heat(uj, kappa, steps))

        def jit_heat(u0, kappa, steps):
            uj = jnp.asarray(u0)
            return lambda: jax.block_until_ready(grad_heat_jit(uj, kappa, steps))

        hvp_jit = jax.jit(lambda x, v: jax.jvp(jax.grad(fill_jax_loop), (x,), (v,))[1])

        def jit_hvp(x, v):
            xj, vj = jnp.asarray(x), jnp.asarray(v)
            return lambda: jax.block_until_ready(hvp_jit(xj, vj))

        found["JAX eager"] = (eager_fill, eager_heat, lambda x, v: None)  # minutes per call
        found["JAX jit"] = (jit_fill, jit_heat, jit_hvp)
    except ImportError:
        print("JAX: not installed (skipped)")
    return found


def main():
    rows = []
    found = peers()
    sizes = (1000, 3000) if QUICK else (1000, 10_000)
    ours_fill = {}
    for n in sizes:
        x = np.random.default_rng(0).random(n)
        ours = best_time(lambda x=x: fl.gradient(fill_numpy, x), repeat=2 if n > 3000 else 3)
        ours_fill[n] = ours
        row = [f"fill loop n={n}", ours]
        for _, (fill, _, _) in found.items():
            make = fill(x)
            row.append(best_time(make, repeat=2) if make is not None else None)
        rows.append(row)
    steps = 200 if QUICK else 1000
    u0 = np.sin(np.linspace(0, np.pi, 200))
    ours = best_time(lambda: fl.gradient(heat_numpy, u0, 0.1, steps))
    row = [f"heat 200 cells x {steps} steps", ours]
    for _, (_, heat, _) in found.items():
        row.append(best_time(heat(u0, 0.1, steps)))
    rows.append(row)
    ours_hvp = {}
    for n in (300, 1200) if QUICK else (500, 2000):
        x, v = np.random.default_rng(1).random((2, n))
        hvp = lambda x=x, v=v: fl.jvp(lambda x: fl.gradient(fill_numpy, x)[0], (x,), (v,))
        ours = ours_hvp[n] = best_time(hvp, repeat=2)
        row = [f"fill loop hvp n={n}", ours]
        for _, (_, _, make_hvp) in found.items():
            make = make_hvp(x, v)
            row.append(best_time(make, repeat=2) if make is not None else None)
        rows.append(row)

    names = list(found)
    header = f"{'problem':32s} {'fluxml':>11s}" + "".join(
        f" {name:>14s} {'ratio':>6s}" for name in names)
    print(f"NumPy {np.__version__}; times are forward+backward, best of several runs;"
          " ratio = peer / fluxml (above 1: fluxml faster)")
    print(header)
    print("-" * len(header))
    for label, ours, *theirs in rows:
        line = f"{label:32s} {ours * 1e3:9.2f}ms"
        for t in theirs:
            line += (f" {t * 1e3:12.2f}ms {t / ours:6.2f}" if t is not None
                     else f" {'(skipped)':>14s} {'':>6s}")
        print(line)
    (n1, t1), (n2, t2) = list(ours_fill.items())[:2]
    for name, times in (("fill loop", ours_fill), ("fill loop hvp", ours_hvp)):
        (n1, t1), (n2, t2) = list(times.items())[:2]
        print(f"fluxml {name}: n x{n2 / n1:.0f} -> time x{t2 / t1:.1f} (linear: about "
              f"x{n2 / n1:.0f}); {t1 / n1 * 1e6:.1f} us and {t2 / n2 * 1e6:.1f} us per element")


if __name__ == "__main__":
    main()
