"""``fl.compile(..., backend="xla")`` beside the same computation written by hand in JAX and
jitted, in the same run (issue 13's target: the xla back end within 1.2x of hand-written JAX).

    OMP_NUM_THREADS=1 PYTHONPATH=src /work/.bench-venv/bin/python benchmarks/compile_xla.py

Workloads: the gradient of ``sum(tanh(x @ w + b))`` on 16 elements (x 4x4), and the four
float32 training steps of ``train_step.py`` (tiny MLP, MLP 784-512-512-10, LeNet-5, LSTM
T=50), each written with fl layers as ``loss, (g,) = fl.withgradient(lambda m: lossf(m(x),
y), model); fl.update(opt, model, g)``; the hand-written JAX steps are ``train_step.py``'s.
Both start from the same weights and their first three losses are compared before timing.

Columns: the median time of one call (ours, hand JAX; timed alternately, call by call), the
ratio ours / JAX (below 1.2 meets the target), and the first call's time (trace, lowering,
XLA compilation). Our call takes and returns NumPy arrays and writes the new weights and
optimiser state back into the model's arrays, as the eager step does; the hand-written JAX
step keeps them on the device.
"""

from __future__ import annotations

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


def _ours_step(name, weights, data):
    """``(first_call, step)``: the compiled training step on fl layers."""
    model, lossf = ts.fluxml_model(name, weights)
    opt = fl.setup(fl.Adam(ts.LR), model)
    x, y = data
    compiled = fl.compile(_step_function(lossf), backend="xla")
    return lambda: float(compiled(model, opt, x, y))


def _gradient_case():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 4))
    w, b = rng.normal(size=(4, 4)), rng.normal(size=4)

    def ours():
        f = fl.compile(lambda x, w, b: fl.gradient(
            lambda w, b: np.sum(np.tanh(x @ w + b)), w, b), backend="xla")
        return lambda: f(x, w, b)

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
    """``{name: (make_ours, make_hand, repeats, check)}``: each ``make_*()`` returns a
    function running one call; ``check(a, b)`` compares two calls' results."""
    cases = {}
    ours_g, hand_g = _gradient_case()
    cases["grad sum(tanh(x@w+b)) 16"] = (
        ours_g, hand_g, 2000,
        lambda a, b: all(np.allclose(p, np.asarray(q), rtol=1e-12) for p, q in zip(a, b)))
    repeats = {"tiny MLP 2-32-32-2": 500, "MLP 784-512-512-10": 50, "LeNet-5 28x28": 30,
               "LSTM T=50 64->128": 20}
    for name, make_case in ts.CASES.items():
        weights, data = make_case(np.random.default_rng(0))
        cases[name] = (lambda n=name, w=weights, d=data: _ours_step(n, w, d),
                       lambda n=name, w=weights, d=data: ts.jax_step(n, w, d),
                       repeats[name],
                       lambda a, b: np.allclose(a, b, rtol=2e-4, atol=1e-6))
    return cases


def _first(make):
    """``(call, seconds of the first call)``."""
    t = time.perf_counter()
    call = make()
    result = call()
    return call, result, time.perf_counter() - t


def measure(name, case):
    """``(ours, hand, compile_ours, compile_hand)`` in seconds."""
    make_ours, make_hand, repeats, check = case
    ours, first_ours, compile_ours = _first(make_ours)
    hand, first_hand, compile_hand = _first(make_hand)
    rest_ours = [ours() for _ in range(2)]
    rest_hand = [hand() for _ in range(2)]
    for a, b in zip([first_ours] + rest_ours, [first_hand] + rest_hand):
        if not check(a, b):
            raise AssertionError(f"{name}: ours gives {a}, hand-written JAX {b}")
    ours_t, hand_t = interleaved(ours, hand, repeats)
    return ours_t, hand_t, compile_ours, compile_hand


def interleaved(a, b, repeats: int, warmup: int = 3):
    """Median seconds of one call of ``a`` and of ``b``, timed alternately (on a shared,
    loaded machine both then see the same load)."""
    for _ in range(warmup):
        a()
        b()
    ta, tb = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        a()
        ta.append(time.perf_counter() - t)
        t = time.perf_counter()
        b()
        tb.append(time.perf_counter() - t)
    return statistics.median(ta), statistics.median(tb)


def main() -> None:
    ts.limit_threads(1)
    try:
        import jax
    except ImportError:
        print("JAX is not installed: nothing to compare (pip install 'fluxml[xla]')")
        return
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; threads limited to 1")
    print(f"{'workload':26} {'ours':>10} {'hand JAX':>10} {'ratio':>7} "
          f"{'compile ours':>13} {'compile JAX':>12}")
    for name, case in workloads().items():
        ours, hand, c_ours, c_hand = measure(name, case)
        print(f"{name:26} {ts._fmt(ours):>10} {ts._fmt(hand):>10} {ours / hand:6.2f}x "
              f"{c_ours:12.2f}s {c_hand:11.2f}s")


if __name__ == "__main__":
    main()
