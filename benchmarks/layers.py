"""Layer kernels beside PyTorch eager, measured in the same run.

    PYTHONPATH=src /work/.bench-venv/bin/python benchmarks/layers.py

Each row times the forward pass and the forward + backward pass (the gradient with respect
to every input, for a given output cotangent: ``fl.pullback`` against
``torch.autograd.grad``), float32, the best of repeats after a warm-up (the
minimum: on a shared machine the median measures the neighbours). Threads: as the
libraries choose (``OMP_NUM_THREADS=1`` in the environment makes both single-threaded;
``--cpu-time`` then times the work alone, not the waits of a busy machine). The
ratio column is PyTorch's time over fluxml's, as in the other benchmarks (above 1: fluxml is
faster; the target on the convolutions, within 1.5x of PyTorch, is a ratio of at least 0.67).
Rows: the convolutions of LeNet-5 (batch 64) and one 64-channel 3x3 convolution of a ResNet
block on 32x32, and a 2x2 max pool. Every PyTorch result is checked against ours first.
Without PyTorch the peer columns say so.

The second table times whole layers (``fl.Conv``, ``fl.MaxPool``, ``fl.BatchNorm`` in
training mode, ``fl.LSTM``, ``fl.MultiHeadAttention``, a ResNet basic block) beside the
torch.nn module with the same weights: forward, and forward + backward (the gradient with
respect to every parameter and the input for a given output cotangent, ``fl.pullback``
against ``.backward(g)``), same
ratio convention. Targets (issue 11): at least 1 on the LSTM and attention, at least 0.67 on
the convolutions. ``--cpu-time`` applies to both tables.

With several threads, run each library alone in its own process (``--only=fluxml``, then
``--only=torch``: the other's column shows ``-``), for each library's thread pool spins a
while after its work, which slows the other's threads on two cores; ``--repeats=K`` sets
the repeats (default 15). ``--isa=avx2`` caps PyTorch's kernels at AVX2, where NumPy's BLAS is
pinned to AVX2 kernels on an AVX-512 CPU (``benchmarks/isa.py``: the header says what ran).
"""

from __future__ import annotations

import sys
import time

import isa
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


def timed(*fns, clock=time.perf_counter):
    """The best time of each function, the functions run in turn (so that a busy moment of
    the machine falls on all of them alike)."""
    for fn in fns:
        fn()
    best = [float("inf")] * len(fns)
    for _ in range(REPEATS):
        for i, fn in enumerate(fns):
            start = clock()
            fn()
            best[i] = min(best[i], clock() - start)
    return best


def _check(ours_fns, peer_fns):
    np.testing.assert_allclose(ours_fns[0](), peer_fns[0]().numpy(), rtol=2e-4, atol=2e-4)
    for a, b in zip(ours_fns[1](), peer_fns[1]()):
        np.testing.assert_allclose(a, b.numpy(), rtol=2e-3, atol=2e-3)


def _option(name: str, default=None):
    """The value of ``--name=value`` on the command line, else ``default``."""
    for a in sys.argv[1:]:
        if a.startswith(f"--{name}="):
            return a.split("=", 1)[1]
    return default


def _times(mine, theirs, clock) -> tuple:
    """Our time and the peer's (ms; None for one not run: no peer, or ``--only``)."""
    only = _option("only")
    fns = [f for f, who in ((mine, "fluxml"), (theirs, "torch"))
           if f is not None and only in (None, who)]
    times = iter(v * 1e3 for v in timed(*fns, clock=clock))
    return tuple(next(times) if f is not None and only in (None, who) else None
                 for f, who in ((mine, "fluxml"), (theirs, "torch")))


def _row(name, width, label, t, p) -> str:
    cells = [f"{v:10.2f}" if v is not None else f"{'-':>10s}" for v in (t, p)]
    ratio = f"{p / t:7.2f}" if t is not None and p is not None else f"{'-':>7s}"
    return f"{name:{width}s} {label:8s} {cells[0]} {cells[1]} {ratio}"


def _selected(name: str) -> bool:
    """Rows to run: those whose name contains a command-line argument, in any case (all
    without any): ``benchmarks/layers.py lstm attention``."""
    names = [a.lower() for a in sys.argv[1:] if not a.startswith("--")]
    return not names or any(a in name.lower() for a in names)


def main():
    # --cpu-time: the process's CPU time instead of the wall clock; with OMP_NUM_THREADS=1 it
    # measures the work of both libraries without the time spent waiting for a busy machine
    global REPEATS
    clock = time.process_time if "--cpu-time" in sys.argv else time.perf_counter
    REPEATS = int(_option("repeats", REPEATS))
    isa.cap_peers(isa.requested())
    try:
        import torch
        peer_name = f"torch {torch.__version__} ({torch.get_num_threads()} threads)"
    except ImportError:
        torch, peer_name = None, None
    peer_name = peer_name or "PyTorch not installed"
    print(f"fluxml {fl.__version__}, numpy {np.__version__}; peer: {peer_name}; clock: "
          f"{clock.__name__}")
    print(isa.describe())
    head = f"{'case':40s} {'pass':8s} {'fluxml ms':>10s} {'torch ms':>10s} {'ratio':>7s}"
    print(head + "\n" + "-" * len(head))
    for name, (args, opts, kind) in CASES.items():
        if not _selected(name):
            continue
        mine = ours(kind, args, opts)
        theirs = peer(kind, args, opts) if torch is not None else None
        if theirs is not None:
            _check(mine, theirs)
        for label, i in (("forward", 0), ("fwd+bwd", 1)):
            t, p = _times(mine[i], None if theirs is None else theirs[i], clock)
            print(_row(name, 40, label, t, p))
    layers_table(torch, clock)


# --- whole layers -----------------------------------------------------------------------------

def _copy(ours, theirs, names):
    """Give the torch module our arrays (so both compute the same thing)."""
    import torch

    with torch.no_grad():
        for mine, their in names:
            getattr(theirs_path(theirs, their), their.split(".")[-1]).copy_(
                torch.tensor(_get(ours, mine)))


def theirs_path(module, dotted):
    for part in dotted.split(".")[:-1]:
        module = getattr(module, part)
    return module


def _get(obj, dotted):
    for part in dotted.split("."):
        obj = obj[int(part)] if part.isdigit() else getattr(obj, part)
    return obj


def _conv_layer(n, c, o, size, k, pad):
    import torch

    ours = fl.Conv((k, k), c, o, pad=pad, rng=np.random.default_rng(0))
    theirs = torch.nn.Conv2d(c, o, k, padding=pad)
    return ours, theirs, (n, c, size, size), [("weight", "weight"), ("bias", "bias")]


def _resnet_block(n, c, size):
    import torch

    relu = fl.relu
    rng = np.random.default_rng(0)

    def branch():
        return fl.Chain(fl.Conv((3, 3), c, c, pad=1, bias=False, rng=rng), fl.BatchNorm(c, relu),
                        fl.Conv((3, 3), c, c, pad=1, bias=False, rng=rng), fl.BatchNorm(c))

    ours = fl.trainmode(fl.Chain(fl.SkipConnection(branch(), np.add), relu))

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = torch.nn.Conv2d(c, c, 3, padding=1, bias=False)
            self.b1 = torch.nn.BatchNorm2d(c)
            self.c2 = torch.nn.Conv2d(c, c, 3, padding=1, bias=False)
            self.b2 = torch.nn.BatchNorm2d(c)

        def forward(self, x):
            y = self.b2(self.c2(torch.relu(self.b1(self.c1(x)))))
            return torch.relu(y + x)

    names = [("layers.0.layers.layers.0.weight", "c1.weight"),
             ("layers.0.layers.layers.2.weight", "c2.weight")]
    return ours, Block().train(), (n, c, size, size), names


def _layer_cases():
    import torch

    lstm = fl.LSTM(64, 128, rng=np.random.default_rng(0))
    lstm_names = [(f"cell.{a}", f"{a}_l0") for a in
                  ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    mha = fl.MultiHeadAttention(256, nheads=8, rng=np.random.default_rng(0))
    mha.out_proj.bias = None
    return {
        "Conv((5, 5), 1 => 6, pad=2), 64x28x28": _conv_layer(64, 1, 6, 28, 5, 2),
        "Conv((5, 5), 6 => 16), 64x14x14": _conv_layer(64, 6, 16, 14, 5, 0),
        "Conv((3, 3), 64 => 64, pad=1), 16x32x32": _conv_layer(16, 64, 64, 32, 3, 1),
        "ResNet block 64ch 3x3 (conv-bn-relu x2), 16x32x32": _resnet_block(16, 64, 32),
        "MaxPool((2, 2)), 16x64x32x32": (fl.MaxPool((2, 2)), torch.nn.MaxPool2d(2),
                                         (16, 64, 32, 32), []),
        "BatchNorm(64) training, 16x64x32x32": (
            fl.trainmode(fl.BatchNorm(64)), torch.nn.BatchNorm2d(64).train(), (16, 64, 32, 32),
            [("weight", "weight"), ("bias", "bias")]),
        "LSTM(64 => 128), N=32 T=50": (lstm, torch.nn.LSTM(64, 128, batch_first=True),
                                       (32, 50, 64), lstm_names),
        "MultiHeadAttention(256, 8 heads), N=8 T=128": (
            mha, torch.nn.MultiheadAttention(256, 8, bias=False, batch_first=True),
            (8, 128, 256), []),
    }


def _mha_weights(ours, theirs):
    import torch

    w = np.concatenate([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight])
    with torch.no_grad():
        theirs.in_proj_weight.copy_(torch.tensor(w))
        theirs.out_proj.weight.copy_(torch.tensor(ours.out_proj.weight))


def _first(y):
    return y[0] if isinstance(y, tuple) else y


def layer_row(ours, theirs, shape, names):
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    y = _first(ours(x))
    g = np.random.default_rng(2).standard_normal(y.shape).astype(np.float32)
    def backward():  # the pullback of g, as torch's .backward(g) computes (no y * g, no sum)
        _, back = fl.pullback(lambda m, x: _first(m(x)), ours, x)
        return back(g)

    fns = [lambda: ours(x), backward]
    if theirs is None:
        return fns, None
    import torch

    if isinstance(theirs, torch.nn.MultiheadAttention):
        _mha_weights(ours, theirs)
        call = lambda t: theirs(t, t, t, average_attn_weights=False)  # noqa: E731
    else:
        _copy(ours, theirs, names)
        call = theirs
    xt = torch.tensor(x, requires_grad=True)
    gt = torch.tensor(g)

    def forward():
        with torch.no_grad():
            return _first(call(xt))

    def backward():
        theirs.zero_grad(set_to_none=True)
        xt.grad = None
        _first(call(xt)).backward(gt)

    np.testing.assert_allclose(_first(ours(x)), forward().numpy(), rtol=2e-3, atol=2e-3)
    return fns, [forward, backward]


def layers_table(torch, clock=time.perf_counter):
    head = f"{'layer':52s} {'pass':8s} {'fluxml ms':>10s} {'torch ms':>10s} {'ratio':>7s}"
    print("\n" + head + "\n" + "-" * len(head))
    cases = _layer_cases() if torch is not None else {}
    for name, (ours, theirs, shape, names) in cases.items():
        if not _selected(name):
            continue
        mine, peer_fns = layer_row(ours, theirs, shape, names)
        for label, i in (("forward", 0), ("fwd+bwd", 1)):
            t, p = _times(mine[i], peer_fns[i], clock)
            print(_row(name, 52, label, t, p))
    if torch is None:
        print("(PyTorch not installed: the layer table needs it to build the same models)")


if __name__ == "__main__":
    main()
