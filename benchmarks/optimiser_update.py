"""One Adam update of an MLP 784-512-512-10's parameters (float32), beside PyTorch's Adam.

    PYTHONPATH=src /work/.bench-venv/bin/python benchmarks/optimiser_update.py

The parameters have PyTorch's shapes (weights (out, in)). fluxml's gradients are given
twice: C-contiguous, and as the engine returns weight gradients of ``x @ W.T`` (transposed
views of a ``(in, out)`` product). PyTorch's ``Adam`` runs with its defaults (on CPU the
single-tensor loop), ``foreach=True`` and ``fused=True``. A NumPy Adam written by hand with
the same in-place calls is the floor for our per-array code. Medians of repeats; the ratio
is the peer's time over ours (above 1: fluxml is faster).
"""

from __future__ import annotations

import os
import statistics
import timeit

import numpy as np

import fluxml as fl

SHAPES = [(512, 784), (512,), (512, 512), (512,), (10, 512), (10,)]


def params(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(np.float32) * 0.05 for s in SHAPES]


def grads(transposed: bool):
    gs = params(1)
    if transposed:  # as the engine gives them: (g.T copied to C order).T
        gs = [np.ascontiguousarray(g.T).T if g.ndim == 2 else g for g in gs]
    return gs


def time_us(fn, number=20, repeat=15):
    fn()
    return 1e6 * statistics.median(timeit.repeat(fn, number=number, repeat=repeat)) / number


def fluxml_update(transposed):
    model, g = params(), grads(transposed)
    state = fl.setup(fl.Adam(1e-3), model)
    return lambda: fl.update(state, model, g)


def numpy_adam():
    """Hand-written in-place Adam over the same arrays: 11 calls per array, contiguous."""
    xs, gs = params(), grads(False)
    ms, vs, ts = ([np.zeros_like(x) for x in xs] for _ in range(3))
    step = [0]

    def run():
        step[0] += 1
        t = step[0]
        b1, b2, lr, eps = 0.9, 0.999, 1e-3, 1e-8
        root = (1 - b2**t) ** 0.5
        for x, g, m, v, tmp in zip(xs, gs, ms, vs, ts):
            np.subtract(g, m, out=tmp)
            tmp *= 1 - b1
            m += tmp
            np.square(g, out=tmp)
            tmp -= v
            tmp *= 1 - b2
            v += tmp
            np.sqrt(v, out=tmp)
            tmp += eps * root
            np.divide(m, tmp, out=tmp)
            tmp *= lr * root / (1 - b1**t)
            x -= tmp

    return run


def torch_adam(**options):
    import torch

    ps = [torch.tensor(x, requires_grad=True) for x in params()]
    for p, g in zip(ps, grads(False)):
        p.grad = torch.tensor(g)
    opt = torch.optim.Adam(ps, lr=1e-3, **options)
    return opt.step


def main():
    print(f"Adam update of an MLP 784-512-512-10 (669,706 float32 parameters); "
          f"{os.cpu_count()} CPUs")
    ours = {"fluxml fl.update, contiguous grads": fluxml_update(False),
            "fluxml fl.update, transposed-view grads": fluxml_update(True),
            "NumPy hand-written Adam (same calls)": numpy_adam()}
    rows = [(name, time_us(fn)) for name, fn in ours.items()]
    base = rows[0][1]
    try:
        import torch

        peers = {"torch.optim.Adam (defaults)": {}, "torch.optim.Adam foreach=True":
                 {"foreach": True}, "torch.optim.Adam fused=True": {"fused": True}}
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
        for name, options in peers.items():
            try:
                rows.append((name, time_us(torch_adam(**options))))
            except (RuntimeError, ValueError) as err:
                print(f"{name}: not available ({err})")
    except ImportError:
        print("PyTorch not installed: no peer rows")
    print(f"{'':44s} {'us':>8s} {'ratio to fluxml (contiguous)':>30s}")
    for name, us in rows:
        print(f"{name:44s} {us:8.0f} {us / base:30.2f}")


if __name__ == "__main__":
    main()
