"""Layer kernels beside PyTorch eager, measured in the same run.

    PYTHONPATH=src /work/.bench-venv/bin/python benchmarks/layers.py

Each row times the forward pass and the forward + backward pass (the gradient with respect
to every input, for a given output cotangent: ``fl.pullback`` against
``torch.autograd.grad``), float32, the best of repeats after a warm-up (the
minimum: on a shared machine the median measures the neighbours). Threads: as the
libraries choose (``OMP_NUM_THREADS=1`` in the environment makes both single-threaded). The
ratio column is PyTorch's time over fluxml's, as in the other benchmarks (above 1: fluxml is
faster; the target on the convolutions, within 1.5x of PyTorch, is a ratio of at least 0.67).
Rows: the convolutions of LeNet-5 (batch 64) and one 64-channel 3x3 convolution of a ResNet
block on 32x32, and a 2x2 max pool. Every PyTorch result is checked against ours first.
Without PyTorch the peer columns say so.
"""

from __future__ import annotations

import time

import numpy as np

import fluxml as fl
from fluxml import nnlib

REPEATS = 15


def _conv_case(n, c, o, size, k, pad):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, size, size)).astype(np.float32)
    w = (rng.standard_normal((o, c, k, k)) / np.sqrt(c * k * k)).astype(np.float32)
    return (x, w), dict(pad=pad), "conv"


def _pool_case(n, c, size, k):
    x = np.random.default_rng(0).standard_normal((n, c, size, size)).astype(np.float32)
    return (x,), dict(kernel=k), "maxpool"


CASES = {
    "conv LeNet 1->6 5x5 pad 2, 64x28x28": _conv_case(64, 1, 6, 28, 5, 2),
    "conv LeNet 6->16 5x5, 64x14x14": _conv_case(64, 6, 16, 14, 5, 0),
    "conv 64->64 3x3 pad 1, 16x32x32": _conv_case(16, 64, 64, 32, 3, 1),
    "maxpool 2x2, 64x6x28x28": _pool_case(64, 6, 28, 2),
    "maxpool 2x2, 16x64x32x32": _pool_case(16, 64, 32, 2),
}


def ours(kind, args, opts):
    if kind == "conv":
        f = lambda x, w: nnlib.conv(x, w, pad=opts["pad"])
    else:
        f = lambda x: nnlib.maxpool(x, (opts["kernel"],) * 2)
    y = f(*args)
    g = np.ones_like(y)

    def backward():
        out, back = fl.pullback(f, *args)
        return back(g)

    return (lambda: f(*args)), backward


def peer(kind, args, opts):
    import torch
    import torch.nn.functional as F

    tensors = [torch.tensor(a, requires_grad=True) for a in args]
    if kind == "conv":
        f = lambda x, w: F.conv2d(x, w, padding=opts["pad"])
    else:
        f = lambda x: F.max_pool2d(x, opts["kernel"])

    def forward():
        with torch.no_grad():
            return f(*tensors)

    def backward():
        y = f(*tensors)
        return torch.autograd.grad(y, tensors, torch.ones_like(y))

    return forward, backward


def timed(*fns):
    """The best time of each function, the functions run in turn (so that a busy moment of
    the machine falls on all of them alike)."""
    for fn in fns:
        fn()
    best = [float("inf")] * len(fns)
    for _ in range(REPEATS):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def _check(ours_fns, peer_fns):
    np.testing.assert_allclose(ours_fns[0](), peer_fns[0]().numpy(), rtol=2e-4, atol=2e-4)
    for a, b in zip(ours_fns[1](), peer_fns[1]()):
        np.testing.assert_allclose(a, b.numpy(), rtol=2e-3, atol=2e-3)


def main():
    try:
        import torch
        peer_name = f"torch {torch.__version__} ({torch.get_num_threads()} threads)"
    except ImportError:
        torch, peer_name = None, None
    peer_name = peer_name or "PyTorch not installed"
    print(f"fluxml {fl.__version__}, numpy {np.__version__}; peer: {peer_name}")
    head = f"{'case':40s} {'pass':8s} {'fluxml ms':>10s} {'torch ms':>10s} {'ratio':>7s}"
    print(head + "\n" + "-" * len(head))
    for name, (args, opts, kind) in CASES.items():
        mine = ours(kind, args, opts)
        theirs = peer(kind, args, opts) if torch is not None else None
        if theirs is not None:
            _check(mine, theirs)
        for label, i in (("forward", 0), ("fwd+bwd", 1)):
            if theirs is None:
                t = timed(mine[i])[0] * 1e3
                print(f"{name:40s} {label:8s} {t:10.2f} {'-':>10s} {'-':>7s}")
                continue
            t, p = (v * 1e3 for v in timed(mine[i], theirs[i]))
            print(f"{name:40s} {label:8s} {t:10.2f} {p:10.2f} {p / t:7.2f}")


if __name__ == "__main__":
    main()
