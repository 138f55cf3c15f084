"""fl.scan under fl.compile beside eager fluxml, an unrolled compiled loop, JAX and PyTorch.

    OMP_NUM_THREADS=1 PYTHONPATH=src /work/.bench-venv/bin/python benchmarks/control_flow.py

Workload: the loss and gradient of a tanh RNN over T steps (batch 16, 8 inputs, 32 hidden,
float32), ``h = tanh(x_t @ U.T + h @ W.T + b)``, loss ``sum(h_T ** 2)``. Rows: fluxml eager
(``fl.scan`` is a Python loop, differentiated by the engine), fluxml compiled with
``fl.scan`` (one scan equation; its backward a reverse scan), fluxml compiled with a Python
loop (unrolled into T copies at trace time), JAX ``jit`` of ``lax.scan``, PyTorch eager. Each
row: the median time of one call after a warm-up, the ratio (the peer's time over compiled
``fl.scan``'s: above 1, fluxml is faster) and the first call's time (tracing and code
generation). Gradients are compared with eager fluxml's before timing.
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np

import fluxml as fl

B, I, H = 16, 8, 32


def data(T, seed=0):
    r = np.random.default_rng(seed)
    f = np.float32
    params = {"W": (r.standard_normal((H, H)) / np.sqrt(H)).astype(f),
              "U": (r.standard_normal((H, I)) / np.sqrt(I)).astype(f),
              "b": np.zeros(H, f)}
    return params, r.standard_normal((T, B, I)).astype(f), np.zeros((B, H), f)


def loss_scan(p, xs, h0):
    def cell(h, x):
        return np.tanh(x @ p["U"].T + h @ p["W"].T + p["b"]), None

    h, _ = fl.scan(cell, h0, xs)
    return np.sum(h**2)


def loss_loop(p, xs, h0):
    h = h0
    for x in xs:
        h = np.tanh(x @ p["U"].T + h @ p["W"].T + p["b"])
    return np.sum(h**2)


def fluxml_rows(p, xs, h0):
    grad = lambda lossf: lambda p, xs, h0: fl.gradient(lossf, p, xs, h0)[0]  # noqa: E731
    return {"fluxml eager (fl.scan)": grad(loss_scan),
            "fluxml compiled (fl.scan)": fl.compile(grad(loss_scan)),
            "fluxml compiled (unrolled loop)": fl.compile(grad(loss_loop))}


def jax_row(p, xs, h0):
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None

    def loss(p, xs, h0):
        def cell(h, x):
            return jnp.tanh(x @ p["U"].T + h @ p["W"].T + p["b"]), None

        h, _ = jax.lax.scan(cell, h0, xs)
        return jnp.sum(h**2)

    g = jax.jit(jax.grad(loss))
    jp, jxs, jh0 = jax.tree_util.tree_map(jnp.asarray, (p, xs, h0))
    return lambda *_: jax.tree_util.tree_map(np.asarray, g(jp, jxs, jh0))  # waits for it


def torch_row(p, xs, h0):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in p.items()}
    txs, th0 = torch.tensor(xs), torch.tensor(h0)

    def run(*_):
        h = th0
        for x in txs:
            h = torch.tanh(x @ tp["U"].T + h @ tp["W"].T + tp["b"])
        grads = torch.autograd.grad((h**2).sum(), list(tp.values()))
        return {k: g.numpy() for k, g in zip(tp, grads)}

    return run


def timed(fn, args, repeat):
    start = time.perf_counter()
    first = fn(*args)
    first_time = time.perf_counter() - start
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return first, first_time, statistics.median(times)


def main(quick=False):
    for T in ((10,) if quick else (10, 50)):
        p, xs, h0 = data(T)
        rows = fluxml_rows(p, xs, h0)
        rows["jax jit (lax.scan)"] = jax_row(p, xs, h0)
        rows["torch eager (loop)"] = torch_row(p, xs, h0)
        reference = rows["fluxml eager (fl.scan)"](p, xs, h0)
        results = {}
        for name, fn in rows.items():
            if fn is None:
                print(f"  {name}: not installed, skipped")
                continue
            got, first, median = timed(fn, (p, xs, h0), 5 if quick else 30)
            for k in reference:
                np.testing.assert_allclose(np.asarray(got[k]), reference[k], rtol=2e-3,
                                           atol=2e-4)
            results[name] = (median, first)
        base = results["fluxml compiled (fl.scan)"][0]
        print(f"RNN gradient, T={T}, batch {B}, {I} -> {H}, float32")
        print(f"  {'':34s} {'median':>10s} {'ratio':>7s} {'first call':>11s}")
        for name, (median, first) in results.items():
            print(f"  {name:34s} {median * 1e3:8.3f}ms {median / base:7.2f} "
                  f"{first * 1e3:9.1f}ms")


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
