"""The engine's overhead on small arrays, beside its peers measured in the same run.

    .bench-venv/bin/python benchmarks/overhead.py      (see benchmarks/README.md)

Two measurements, each the median over repeats of many calls, after a warm-up:

- chain: the gradient of 100 elementwise operations (tanh, * 1.01, + 0.1, sin, repeated)
  on 16 float64 numbers, then a sum; reported per call and per operation (total / 100).
- small: the gradient of ``sum(tanh(x * w + b))`` with respect to x, w and b (16 each).

Peers: PyTorch eager (torch.autograd.grad), HIPS autograd, JAX eager (jax.grad without
jit) and JAX jitted, each when installed. The ratio column is the peer's time over ours
(above 1: fluxml is faster). Every peer's gradient is checked against ours first.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import timeit
from importlib import metadata

import numpy as np

import fluxml as fl

N = 16
OPS = 100  # elementwise operations in the chain (the final sum is not counted)
TARGET_US_PER_OP = 3.0
TARGET_TORCH_RATIO = 2.0


def chain(xp, x):
    """100 elementwise operations written with the array namespace ``xp``, then a sum."""
    for _ in range(OPS // 4):
        x = xp.tanh(x)
        x = x * 1.01
        x = x + 0.1
        x = xp.sin(x)
    return xp.sum(x)


def small(xp, x, w, b):
    return xp.sum(xp.tanh(x * w + b))


def inputs():
    rng = np.random.default_rng(0)
    return tuple(rng.standard_normal(N) for _ in range(3))


# --- each implementation: {case: zero-argument callable returning the gradients} ----------------

def setup_fluxml():
    x, w, b = inputs()
    return {
        "chain": lambda: fl.gradient(lambda x: chain(np, x), x),
        "small": lambda: fl.gradient(lambda x, w, b: small(np, x, w, b), x, w, b),
    }


def setup_torch():
    import torch

    x, w, b = (torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in inputs())

    def chain_grad():
        return torch.autograd.grad(chain(torch, x), (x,))

    def small_grad():
        return torch.autograd.grad(small(torch, x, w, b), (x, w, b))

    return {"chain": chain_grad, "small": small_grad}


def setup_autograd():
    import autograd
    import autograd.numpy as anp

    x, w, b = inputs()
    chain_grad = autograd.grad(lambda x: chain(anp, x))
    small_grad = autograd.grad(lambda x, w, b: small(anp, x, w, b), argnum=(0, 1, 2))
    return {"chain": lambda: (chain_grad(x),), "small": lambda: small_grad(x, w, b)}


def _jax(jit):
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    x, w, b = (jnp.asarray(a) for a in inputs())
    chain_grad = jax.grad(lambda x: chain(jnp, x))
    small_grad = jax.grad(lambda x, w, b: small(jnp, x, w, b), argnums=(0, 1, 2))
    if jit:
        chain_grad, small_grad = jax.jit(chain_grad), jax.jit(small_grad)
    return {
        "chain": lambda: (jax.block_until_ready(chain_grad(x)),),
        "small": lambda: jax.block_until_ready(small_grad(x, w, b)),
    }


IMPLEMENTATIONS = {
    "fluxml": setup_fluxml,
    "PyTorch eager": setup_torch,
    "HIPS autograd": setup_autograd,
    "JAX eager": lambda: _jax(jit=False),
    "JAX jit": lambda: _jax(jit=True),
}

CASES = {
    "chain": f"gradient of a {OPS}-op elementwise chain, {N} float64",
    "small": f"gradient of sum(tanh(x*w+b)) wrt x, w, b, {N} float64 each",
}


# --- timing --------------------------------------------------------------------------------------

def seconds_per_call(fn, repeats=7, budget=0.2):
    """Median over ``repeats`` of the mean time per call, each repeat running about
    ``budget`` seconds, after a warm-up (JAX compiles on its first calls)."""
    for _ in range(5):
        fn()
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()
    number = max(1, int(number * budget / 0.2))
    return statistics.median(t / number for t in timer.repeat(repeats, number))


def as_numpy(grads):
    return [np.asarray(g.detach() if hasattr(g, "detach") else g) for g in grads]


def check_same(name, case, got, want):
    for a, b in zip(as_numpy(got), as_numpy(want), strict=True):
        if not np.allclose(a, b, rtol=1e-10, atol=1e-12):
            sys.exit(f"{name} and fluxml disagree on the {case} gradient:\n{a}\n{b}")


# --- report --------------------------------------------------------------------------------------

def environment():
    lines = [f"Python {platform.python_version()}, NumPy {np.__version__}, "
             f"fluxml {fl.__version__}, {platform.machine()} {os.cpu_count()} CPUs"]
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return lines
    for pool in threadpool_info():
        if pool.get("user_api") == "blas":
            lines.append(f"BLAS: {pool.get('internal_api')} {pool.get('version')} "
                         f"({pool.get('num_threads')} threads) from {pool.get('prefix')}")
    return lines


def main():
    for line in environment():
        print(line)
    results = {}  # (implementation, case) -> seconds per call, or None when not installed
    versions = {}
    reference = None
    for name, setup in IMPLEMENTATIONS.items():
        try:
            runs = setup()
        except ImportError as err:
            versions[name] = f"not installed ({err.name})"
            continue
        versions[name] = _version(name)
        if reference is None:
            reference = {case: run() for case, run in runs.items()}
        for case, run in runs.items():
            check_same(name, case, run(), reference[case])
            results[name, case] = seconds_per_call(run)
    print("Peers: " + "; ".join(f"{k} {v}" for k, v in versions.items() if k != "fluxml"))
    print()
    header = f"{'benchmark':<10} {'implementation':<15} {'µs/call':>10} {'µs/op':>8} " \
             f"{'peer/ours':>10}"
    print(header)
    print("-" * len(header))
    for case, title in CASES.items():
        print(f"{case:<10} {title}")
        ours = results["fluxml", case]
        for name in IMPLEMENTATIONS:
            t = results.get((name, case))
            if t is None:
                print(f"{'':<10} {name:<15} {'not installed':>10}")
                continue
            per_op = f"{t / OPS * 1e6:8.2f}" if case == "chain" else f"{'':>8}"
            ratio = f"{'(ours)':>10}" if name == "fluxml" else f"{t / ours:10.2f}"
            print(f"{'':<10} {name:<15} {t * 1e6:10.1f} {per_op} {ratio}")
    print()
    per_op = results["fluxml", "chain"] / OPS * 1e6
    print(f"target: at most {TARGET_US_PER_OP:.0f} µs per recorded op: {per_op:.2f} µs "
          f"({'met' if per_op <= TARGET_US_PER_OP else 'not met'})")
    torch_small = results.get(("PyTorch eager", "small"))
    if torch_small is None:
        print("target: small gradient 2x faster than PyTorch eager: PyTorch not installed")
    else:
        ratio = torch_small / results["fluxml", "small"]
        print(f"target: small gradient at least {TARGET_TORCH_RATIO:.0f}x faster than PyTorch "
              f"eager: {ratio:.2f}x ({'met' if ratio >= TARGET_TORCH_RATIO else 'not met'})")


def _version(name):
    dist = {"fluxml": "fluxml", "PyTorch eager": "torch", "HIPS autograd": "autograd",
            "JAX eager": "jax", "JAX jit": "jax"}[name]
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


if __name__ == "__main__":
    main()
