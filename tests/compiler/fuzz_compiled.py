"""The engine's random NumPy programs, run compiled: ``fl.compile`` of the program's value, its
gradient (reverse mode) and a jvp (forward mode) must equal eager fluxml's, on the inputs it
was traced with and on new inputs (which catches any value baked into the program).

The short run is ``tests/compiler/test_fuzz_compiled.py``; the long one:

    PYTHONPATH=src python -m tests.compiler.fuzz_compiled 3000 [seed] [backend] [device,tiered]

``backend="xla"`` runs them through JAX (needs the ``xla`` extra); ``device=True`` with it
passes the weights as ``jax.Array``s (``fl.xla``): device-resident arguments. XLA's code runs
from the first call; ``tiered=True`` runs the first call on the NumPy code of the tiered
start (``compiler/tiered.py``, held until XLA is ready), the second on XLA's.
"""

from __future__ import annotations

import sys

import numpy as np

import fluxml as fl
from fluxml.compiler import tiered as tiers
from tests.ad import fuzz_programs as fp

# the engine's steps that fl.compile refuses by name: a write through a traced boolean mask
# (its shape depends on the values). (det's derivative, whose rule branches on the value, was
# refused too until the branch became an fl.cond under compile.)
NOT_COMPILED = ("m = r[j] > 0",)
COMPILABLE = [s for s, (name, _) in enumerate(fp.STEPS)
              if not any(w in name for w in NOT_COMPILED)]


def _all(program, x, weights, v):
    value, (g,) = fl.withgradient(lambda x: fp.run(program, x, weights), x)
    _, tangent = fl.jvp(lambda x: fp.run(program, x, weights), (x,), (v,))
    return value, g, tangent


def check(program, seed=0, passes=True, backend="numpy", device=False, tiered=False):
    """None when the compiled program agrees with eager fluxml on two inputs, else a
    message."""
    rng = np.random.default_rng(seed)
    weights = [rng.standard_normal(fp.SHAPE) for _ in range(fp.REGISTERS)]
    given = fl.xla(weights) if device else weights
    if seed % 2:  # the weights an argument (traced cotangents) or closed over (constants)
        compiled = fl.compile(lambda x, w, v: _all(program, x, w, v), optimise=passes,
                              backend=backend, background=tiered)
        inner = compiled
    else:
        inner = fl.compile(lambda x, v: _all(program, x, weights, v), optimise=passes,
                           backend=backend, background=tiered)
        compiled = lambda x, w, v: inner(x, v)  # noqa: E731
    earlier = None  # the first call's results, which the second must not overwrite
    for call in range(2):
        x = rng.standard_normal(fp.SHAPE)
        v = rng.standard_normal(fp.SHAPE)
        with np.errstate(all="ignore"):
            expected = _all(program, x.copy(), weights, v)
            x_before = x.copy()
            if tiered and call == 0:
                with tiers.held():
                    got = compiled(x, given, v)
                    if inner.tier != "numpy":
                        return f"the first call ran on {inner.tier}, not the NumPy tier"
                inner.wait()
            else:
                got = compiled(x, given, v)
        if not np.array_equal(x, x_before):
            return "the compiled program changed its input"
        for name, e, g in zip(("value", "gradient", "tangent"), expected, got):
            if np.shape(e) != np.shape(g):
                return f"{name}: shape {np.shape(g)} != eager {np.shape(e)}"
            if not np.allclose(e, g, rtol=1e-9, atol=1e-9, equal_nan=True):
                return f"{name}: compiled {g} != eager {e}"
        if earlier is not None:
            for (kept, copy), name in zip(earlier, ("value", "gradient", "tangent")):
                if not np.array_equal(kept, copy, equal_nan=True):
                    return f"{name} of the first call was overwritten by the second"
        earlier = [(g, np.array(g, copy=True)) for g in got]
        if device and not all(type(w) is type(given[0]) for w in given):
            return "a device weight became another type"
    if tiered and inner.tier != backend:
        return f"the second call ran on {inner.tier}"
    traces = inner.traces
    if traces != 1:
        return f"traced {traces} times"
    return None


def main(argv):
    n = int(argv[0]) if argv else 500
    rng = np.random.default_rng(int(argv[1]) if len(argv) > 1 else 0)
    backend = argv[2] if len(argv) > 2 else "numpy"
    device = len(argv) > 3 and "device" in argv[3]
    tiered = len(argv) > 3 and "tiered" in argv[3]
    failures = refused = 0
    for t in range(n):
        program = fp.random_program(rng, int(rng.integers(1, 9)), COMPILABLE)
        try:
            message = check(program, seed=t, backend=backend, device=device, tiered=tiered)
        except fl.CompileError as e:
            if "no XLA lowering" not in str(e):  # a refusal by name is allowed; others not
                raise
            refused += 1
            message = None
        except Exception as e:  # noqa: BLE001 - a crash is a finding too
            message = f"{type(e).__name__}: {e}"
        if message is not None:
            failures += 1
            print(f"[{t}] {fp.describe(program)}\n    {message.splitlines()[0]}")
    print(f"{n} programs, {failures} failures, {refused} refused (no XLA lowering)")
    return failures


if __name__ == "__main__":
    sys.exit(1 if main(sys.argv[1:]) else 0)
