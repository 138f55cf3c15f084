"""fl.compile beside eager fluxml, PyTorch eager, torch.compile and JAX jit, in one run.

    OMP_NUM_THREADS=1 PYTHONPATH=src /work/.bench-venv/bin/python benchmarks/compile.py [--quick]
        [--cpu-time] [--scale K] [--case NAME ...]

Workloads (issue 13): the four training steps of ``benchmarks/train_step.py`` (tiny MLP
2-32-32-2, MLP 784-512-512-10, LeNet-5, LSTM T=50; forward, backward and Adam, float32, the
same weights and data for every implementation) and the gradient of ``sum(tanh(x @ w + b))``
on 16 elements. Each row gives the median time of one call after a warm-up (the
implementations run in turn, in blocks of ~10 ms: ``train_step.alternating_medians``), the ratio
(the peer's time over compiled fluxml's: above 1, fluxml is faster) and the compile time
(the first call: tracing, passes and code generation; JAX's and torch.compile's first call
likewise). The losses of the first steps are compared before timing.

Two rows for the xla back end: ``(xla)``, as ``fl.compile(..., backend="xla")`` runs by
default (XLA compiles in a background thread while the calls run the NumPy back end's code
of the same program), and ``(xla, sync)``, ``background=False`` (XLA compiles in the first
call). ``first call`` is the time to the first result; ``XLA from`` the time from the first
call's start until XLA's code took over (``Compiled.wait()`` returned), for the tiered row.
The steady-state time is XLA's (measured after the switch). With ``--cpu-time`` these are the
process's CPU time (all threads): the tiered row's first call then also counts what the
background compilation did meanwhile (an upper bound on the caller's wait); without it, the
wall-clock time (on a loaded machine, inflated by the load).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import isa  # noqa: E402
import train_step as ts  # noqa: E402  (the shared workloads)
from compile_xla import _step_function  # noqa: E402  (the training step, written once)

import fluxml as fl  # noqa: E402

# --- fluxml, eager and compiled -----------------------------------------------------------------


def fluxml_eager(name, w, data):
    model, lossf = ts.fluxml_model(name, w)
    opt = fl.setup(fl.Adam(ts.LR), model)
    step = _step_function(lossf)
    return lambda: float(step(model, opt, *data))


def fluxml_compiled(backend, background=True):
    def make(name, w, data):
        model, lossf = ts.fluxml_model(name, w)
        opt = fl.setup(fl.Adam(ts.LR), model)
        step = fl.compile(_step_function(lossf), backend=backend, background=background)
        run = lambda: float(step(model, opt, *data))  # noqa: E731
        run.compiled = step
        return run

    return make


# --- torch.compile ------------------------------------------------------------------------------

def torch_compiled(name, w, data):
    return ts.torch_step(name, w, data, compiled=True)


# --- the small gradient -------------------------------------------------------------------------

def small_data():
    rng = np.random.default_rng(0)
    return (rng.normal(size=(4, 4)), rng.normal(size=(4, 4)), rng.normal(size=4))


def small_loss(w, b, x):
    return np.sum(np.tanh(x @ w + b))


def small_fluxml_eager(x, w, b):
    return lambda: fl.gradient(small_loss, w, b, x)[0][0, 0]


def small_fluxml_compiled(backend, background=True):
    def make(x, w, b):
        f = fl.compile(lambda w, b, x: fl.gradient(small_loss, w, b, x), backend=backend,
                       background=background)
        run = lambda: f(w, b, x)[0][0, 0]  # noqa: E731
        run.compiled = f
        return run

    return make


def small_torch(x, w, b):
    import torch

    xt, wt, bt = (torch.tensor(a) for a in (x, w, b))
    wt.requires_grad_(True)
    bt.requires_grad_(True)

    def run():
        gw, _ = torch.autograd.grad(torch.tanh(xt @ wt + bt).sum(), (wt, bt))
        return float(gw[0, 0])

    return run


def small_torch_compiled(x, w, b):
    import torch

    xt, wt, bt = (torch.tensor(a) for a in (x, w, b))
    wt.requires_grad_(True)
    bt.requires_grad_(True)

    @torch.compile
    def loss(w, b):
        return torch.tanh(xt @ w + b).sum()

    def run():
        gw, _ = torch.autograd.grad(loss(wt, bt), (wt, bt))
        return float(gw[0, 0])

    return run


def small_jax(x, w, b):
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    grad = jax.jit(jax.grad(lambda w, b, x: jnp.sum(jnp.tanh(x @ w + b)), argnums=(0, 1)))
    xj, wj, bj = (jnp.asarray(a) for a in (x, w, b))
    return lambda: float(grad(wj, bj, xj)[0][0, 0])


# --- measuring ----------------------------------------------------------------------------------

def timed_first(make, *args):
    """``(run, first call's seconds, first value, seconds until XLA took over)``: the first
    call includes compilation; the last is None but for the xla back end's tiered start."""
    run = make(*args)
    clock = ts.CLOCK
    t = clock()
    value = run()
    first = clock() - t
    compiled = getattr(run, "compiled", None)
    if compiled is None or compiled.last.pending is None:
        return run, first, value, None
    compiled.wait()
    return run, first, value, clock() - t


def _fmt(seconds):
    return f"{seconds * 1e6:8.0f} us" if seconds < 1e-2 else f"{seconds * 1e3:8.2f} ms"


def peers(backends):
    rows = {"fluxml eager": (fluxml_eager, small_fluxml_eager)}
    for b in backends:
        if b == "xla":  # XLA compiling in the first call, as before the tiered start
            rows["fluxml compiled (xla, sync)"] = (fluxml_compiled(b, False),
                                                   small_fluxml_compiled(b, False))
        rows[f"fluxml compiled ({b})"] = (fluxml_compiled(b), small_fluxml_compiled(b))
    rows["PyTorch eager"] = (ts.torch_step, small_torch)
    rows["torch.compile"] = (torch_compiled, small_torch_compiled)
    rows["JAX jit"] = (ts.jax_step, small_jax)
    return rows


def available_backends():
    out = ["numpy"]
    try:
        import jax  # noqa: F401

        from fluxml.compiler import xla_backend  # noqa: F401

        out.append("xla")
    except ImportError as err:
        print(f"xla back end: skipped ({err})")
    return out


def main(quick=False, threads=1, cases=None, scale=1):
    if threads:
        ts.limit_threads(threads)
    repeats = {"tiny MLP 2-32-32-2": 300, "MLP 784-512-512-10": 30, "LeNet-5 28x28": 15,
               "LSTM T=50 64->128": 10, "grad sum(tanh(x@w+b)), 16": 2000}
    if quick:
        repeats = {k: max(3, v // 10) for k, v in repeats.items()}
    repeats = {k: v * scale for k, v in repeats.items()}
    rows = peers(available_backends())
    print(isa.describe())
    print(f"{'workload':28} {'implementation':27} {'time':>11} {'ratio':>7} {'first call':>11} "
          f"{'XLA from':>11}")
    workloads = [(name, case, 0) for name, case in ts.CASES.items()]
    workloads.append(("grad sum(tanh(x@w+b)), 16", None, 1))
    if cases:
        workloads = [w for w in workloads if any(c.lower() in w[0].lower() for c in cases)]
    for name, case, kind in workloads:
        args = (name, *case(np.random.default_rng(0))) if case else small_data()
        results, runs = [], {}
        for peer, makers in rows.items():
            try:
                run, first, value, takeover = timed_first(makers[kind], *args)
            except ImportError as err:
                results.append((peer, None, f"not installed ({err.name})"))
                continue
            except Exception as err:  # noqa: BLE001 - a peer that cannot run this is reported
                results.append((peer, None, f"failed: {type(err).__name__}: "
                                f"{str(err).splitlines()[0][:60]}"))
                continue
            runs[peer] = run
            results.append((peer, (first, value, takeover), None))
        times = ts.alternating_medians(runs, repeats[name])  # peers in turn, same load
        ours = times.get("fluxml compiled (numpy)")
        reference = next((res[1] for peer, res, _ in results
                          if peer == "fluxml eager" and res is not None), None)
        for peer, res, why in results:
            if res is None:
                print(f"{name:28} {peer:27} {why}")
                continue
            (first, value, takeover), t = res, times[peer]
            ratio = f"{t / ours:7.2f}" if ours else "      -"
            after = _fmt(takeover) if takeover is not None else f"{'-':>11}"
            # a peer whose first result is not ours computed something else: its time is no
            # comparison (torch.compile under --isa=avx2 returned other losses)
            differs = reference is not None and not np.isclose(value, reference, rtol=1e-3)
            print(f"{name:28} {peer:27} {_fmt(t)} {ratio} {_fmt(first)} {after}  "
                  f"value {value:.6g}" + ("  DIFFERS from fluxml eager" if differs else ""))
        print()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--case", action="append", help="run the workloads whose name "
                        "contains this (repeatable): tiny, MLP, LeNet, LSTM, grad")
    parser.add_argument("--cpu-time", action="store_true",
                        help="time each call by the process's CPU time (use with 1 thread: "
                        "a peer's helper threads count too)")
    parser.add_argument("--scale", type=int, default=1, help="multiply the repeats")
    parser.add_argument("--isa", choices=["avx2"], default=None,
                        help="cap PyTorch's and XLA's kernels at this instruction set (see "
                        "benchmarks/isa.py)")
    args = parser.parse_args()
    isa.cap_peers(args.isa)
    if args.cpu_time:
        ts.CLOCK = time.process_time
    main(args.quick, args.threads, args.case, args.scale)
