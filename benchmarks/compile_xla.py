"""``fl.compile(..., backend="xla")`` beside the same computation written by hand in JAX and
jitted, in the same run (issue 13's target: the xla back end within 1.2x of hand-written JAX).

    OMP_NUM_THREADS=1 PYTHONPATH=src /work/.bench-venv/bin/python benchmarks/compile_xla.py
        [--cpu-time] [--scale F] [NAME ...]

Workloads: the gradient of ``sum(tanh(x @ w + b))`` on 16 elements (x 4x4), and the four
float32 training steps of ``train_step.py`` (tiny MLP, MLP 784-512-512-10, LeNet-5, LSTM
T=50), each written with fl layers as ``loss, (g,) = fl.withgradient(lambda m: lossf(m(x),
y), model); fl.update(opt, model, g)``; the hand-written JAX steps are ``train_step.py``'s.
All start from the same weights; their first three results are compared before timing.

Two fluxml columns per workload, each timed in the same run as the hand-written JAX:

- ``ours (device)``: the arguments are ``jax.Array``s (``fl.xla(tree)``), as hand-written
  JAX keeps them: the step passes them to XLA as they are, donates the buffers it overwrites
  and rebinds the model's and optimiser's leaves to the new arrays; results stay on XLA
  (``float(loss)`` waits for the step, as ``train_step.py``'s JAX step does).
- ``ours (NumPy)``: NumPy arrays in and out, the new weights and optimiser state copied back
  into them, as the eager step writes them: the ratio between the two is that copy.

A third JAX row for the training steps, ``JAX t/array``, keeps Adam's step count per
parameter array on the device, as fluxml's optimiser state does (``train_step.jax_step(...,
per_array=True)``): the same computation as ours, where the plain JAX step passes one Python
number. On XLA's CPU runtime each counter's scalar arithmetic is a few kernels of its own,
which is most of what separates the two JAX rows on the tiny MLP.

Each workload is timed twice, and both are printed, one row each:

- ``blocks``: the implementations in turn, in blocks of ~10 ms of one of them
  (``train_step.alternating_medians``, as ``train_step.py`` and ``compile.py`` time): within a
  block a step runs as in a training loop, right after itself.
- ``calls``: one call of each implementation in turn, call by call: each call runs right
  after the others', its Python code and data and XLA's runtime pushed out of the caches
  by them.

Both see the same load (a shared machine's). The target (issue 13: within 1.2x of JAX) is
judged on the larger of the two ratios, ``judged``: a training loop runs the step in blocks,
but a step called between other work (evaluation, logging, a data loader) runs as in
``calls``. The two differ most on the tiny MLP, where a step is a few hundred microseconds:
around what XLA runs, fluxml's call runs more Python than JAX's C++ dispatch (the guard
that walks the model's and optimiser's trees, then the rebinding of their leaves), which
costs two to five times its warm time when it finds its code and objects out of the caches;
which of the two rows is larger then varies with the machine's load.

Columns: the median time of one call (``--cpu-time``: CPU time, ``time.process_time``,
better on a loaded machine for the larger workloads, see below); the ratios ours on device /
JAX, ours on device / JAX t/array (``dev/t-arr``) and ours on NumPy / JAX (below 1.2 meets
the target); the first call's time (trace, lowering, XLA compilation), on the ``blocks``
row. ``--scale`` multiplies the repeats; names pick workloads by substring.

``--cpu-time`` misreads the ``calls`` row of the tiny MLP (up to 2x): process CPU time counts
every thread, and XLA's runtime threads go on working for a while after a call returns (on
the order of the call's own time for a step of a few hundred microseconds), so in calls mode
that work lands on whichever implementation runs next. Judge the tiny MLP on wall time,
with ``--scale`` raised, and compare two versions by alternating them in one process (the
``blocks`` row and ``train_step.alternating_medians`` do that for the implementations here).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import train_step as ts  # noqa: E402 - the four training steps and their hand-written JAX

import fluxml as fl  # noqa: E402


def _step_function(lossf):
    def step(model, opt, x, y):
        loss, (g,) = fl.withgradient(lambda m: lossf(m(x), y), model)
        fl.update(opt, model, g)
        return loss

    return step


def _ours_step(name, weights, data, device):
    """The compiled training step on fl layers: a function running one call, on state moved
    to XLA (``device``) or on NumPy state."""
    model, lossf = ts.fluxml_model(name, weights)
    opt = fl.setup(fl.Adam(ts.LR), model)
    x, y = data
    if device:
        model, opt, x, y = fl.xla((model, opt, x, y))
    # (XLA's code from the first call: this compares it with JAX's; see compile.py for the
    # tiered start, which serves the first calls with NumPy code while XLA compiles)
    compiled = fl.compile(_step_function(lossf), backend="xla", background=False)
    return lambda: float(compiled(model, opt, x, y))


def _gradient_case():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 4))
    w, b = rng.normal(size=(4, 4)), rng.normal(size=4)

    def ours(device):
        import jax

        f = fl.compile(lambda x, w, b: fl.gradient(
            lambda w, b: np.sum(np.tanh(x @ w + b)), w, b), backend="xla", background=False)
        if not device:
            return lambda: f(x, w, b)
        xs, ws, bs = fl.xla((x, w, b))
        return lambda: jax.block_until_ready(f(xs, ws, bs))

    def hand():
        import jax
        import jax.numpy as jnp

        g = jax.jit(jax.grad(lambda w, b, x: jnp.sum(jnp.tanh(x @ w + b)), argnums=(0, 1)))

        def call():
            with jax.enable_x64(True):  # float64, as ours
                return jax.block_until_ready(g(w, b, x))

        return call

    return ours, hand


def workloads():
    """``{name: (make_ours, make_hand, make_per_array, repeats, check)}``:
    ``make_ours(device)``, ``make_hand()`` and ``make_per_array()`` (None for the gradient)
    return a function running one call; ``check(a, b)`` compares two calls' results."""
    cases = {}
    ours_g, hand_g = _gradient_case()
    cases["grad sum(tanh(x@w+b)) 16"] = (
        ours_g, hand_g, None, 2000,
        lambda a, b: all(np.allclose(np.asarray(p), np.asarray(q), rtol=1e-12)
                         for p, q in zip(a, b)))
    repeats = {"tiny MLP 2-32-32-2": 500, "MLP 784-512-512-10": 50, "LeNet-5 28x28": 30,
               "LSTM T=50 64->128": 20}
    for name, make_case in ts.CASES.items():
        weights, data = make_case(np.random.default_rng(0))
        cases[name] = (lambda device, n=name, w=weights, d=data: _ours_step(n, w, d, device),
                       lambda n=name, w=weights, d=data: ts.jax_step(n, w, d),
                       lambda n=name, w=weights, d=data: ts.jax_step(n, w, d, per_array=True),
                       repeats[name],
                       lambda a, b: np.allclose(a, b, rtol=2e-4, atol=1e-6))
    return cases


def _first(make):
    """``(call, seconds of the first call)``."""
    t = time.perf_counter()
    call = make()
    result = call()
    return call, result, time.perf_counter() - t


def measure(name, case, scale=1.0, clock=time.perf_counter):
    """``(blocks, calls, compile_device, compile_hand)`` in seconds, ``blocks`` and ``calls``
    each ``[device, numpy, hand, per_array]`` (``per_array`` None for the gradient) timed in
    blocks and call by call."""
    make_ours, make_hand, make_per_array, repeats, check = case
    device, first_device, compile_device = _first(lambda: make_ours(True))
    numpy, first_numpy, _ = _first(lambda: make_ours(False))
    hand, first_hand, compile_hand = _first(make_hand)
    calls, results = [device, numpy, hand], [[first_device], [first_numpy], [first_hand]]
    labels = ["ours on device state", "ours on NumPy state", "JAX t/array"]
    if make_per_array is not None:
        per_array, first, _ = _first(make_per_array)
        calls.append(per_array)
        results.append([first])
    for _ in range(2):
        for call, got in zip(calls, results):
            got.append(call())
    for k in (0, 1, 3)[:len(calls) - 1]:
        for a, b in zip(results[k], results[2]):
            if not check(a, b):
                raise AssertionError(f"{name}: {labels[min(k, 2)]} gives {a}, "
                                     f"hand-written JAX {b}")
    ts.CLOCK = clock
    named = dict(zip(("device", "numpy", "hand", "per_array"), calls))
    n = max(1, int(repeats * scale))
    blocks = list(ts.alternating_medians(named, n).values())
    one_by_one = call_by_call(calls, n, clock)
    for times in (blocks, one_by_one):
        if len(times) == 3:
            times.append(None)
    return blocks, one_by_one, compile_device, compile_hand


def call_by_call(calls, repeats: int, clock=time.perf_counter, warmup: int = 3) -> list:
    """The median time of one call of each of ``calls``, run in turn one call each (every
    call right after the others')."""
    for _ in range(warmup):
        for call in calls:
            call()
    times: list[list[float]] = [[] for _ in calls]
    for _ in range(max(repeats, 20)):
        for call, got in zip(calls, times):
            t = clock()
            call()
            got.append(clock() - t)
    return [statistics.median(t) for t in times]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="workloads whose name contains one of these")
    parser.add_argument("--cpu-time", action="store_true",
                        help="time with time.process_time (CPU time) instead of wall time")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the repeats")
    args = parser.parse_args(argv)
    ts.limit_threads(1)
    try:
        import jax
    except ImportError:
        print("JAX is not installed: nothing to compare (pip install 'fluxml[xla]')")
        return
    clock = time.process_time if args.cpu_time else time.perf_counter
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; threads limited to 1; "
          f"{'CPU' if args.cpu_time else 'wall'} time, median")
    print(f"{'workload':26} {'timed':>6} {'ours device':>12} {'ours NumPy':>11} {'JAX':>9} "
          f"{'JAX t/array':>12} {'device/JAX':>11} {'dev/t-arr':>9} {'NumPy/JAX':>10} "
          f"{'compile ours':>13} {'compile JAX':>12}")
    judged = []
    for name, case in workloads().items():
        if args.names and not any(n in name for n in args.names):
            continue
        blocks, calls, c_ours, c_hand = measure(name, case, args.scale, clock)
        for how, (device, numpy, hand, per_array) in (("blocks", blocks), ("calls", calls)):
            pa, pa_ratio = ("-", "-") if per_array is None else \
                (ts._fmt(per_array), f"{device / per_array:.2f}x")
            compiles = f"{c_ours:12.2f}s {c_hand:11.2f}s" if how == "blocks" else ""
            print(f"{name if how == 'blocks' else '':26} {how:>6} {ts._fmt(device):>12} "
                  f"{ts._fmt(numpy):>11} {ts._fmt(hand):>9} {pa:>12} {device / hand:10.2f}x "
                  f"{pa_ratio:>9} {numpy / hand:9.2f}x {compiles}".rstrip())
        judged.append((name, max(blocks[0] / blocks[2], calls[0] / calls[2]),
                       max(blocks[1] / blocks[2], calls[1] / calls[2])))
    print("\njudged (the larger of the two ratios; target below 1.20x):")
    for name, device, numpy in judged:
        print(f"  {name:26} device/JAX {device:.2f}x  NumPy/JAX {numpy:.2f}x")

if __name__ == "__main__":
    main()
