"""One full training step (forward, backward, Adam update, float32): fluxml beside PyTorch
eager and JAX jit, measured in the same run, on the same weights and data.

    PYTHONPATH=src /work/.bench-venv/bin/python benchmarks/train_step.py [--quick] [--profile]
        [--threads N] [--cpu-time] [--scale K] [--best] [--peers torch] [LeNet ...] [--case LSTM]

Cases (issue 17): a tiny MLP 2-32-32-2 tanh (batch 64, MSE); an MLP 784-512-512-10 relu
(batch 128, cross-entropy); LeNet-5 on 1x28x28 (batch 64: conv 6@5x5 pad 2, maxpool 2,
conv 16@5x5, maxpool 2, dense 400-120-84-10, relu, cross-entropy); an LSTM (T=50, N=32,
64 -> 128, a dense 128 -> 64 at every step, MSE). Every implementation starts from the same
NumPy weights; the first three steps' losses are compared before timing (they agree to
float32 rounding). Time: the median over repeats of one step, after a warm-up, the peers
run in turn in blocks of ~10 ms (so that on a shared machine all see the same load, and each
runs on warm caches as in a training loop); ``--scale K`` runs K times the repeats;
``--best`` takes the minimum instead of the median. ``--peers`` names the implementations
to run (``--peers fluxml --peers torch``; the first one run is the reference for the losses
and the ratios): with two threads, run each alone in its own process, for each library's
thread pool spins a while after its work, which slows the next one's threads on two cores.
The ratio is
the peer's time over fluxml's (above 1: fluxml is faster). For the big MLP the machine's
float32 GEMM rate is measured and the fraction of it each step reaches is printed.
``--profile`` prints where fluxml's big-MLP step spends its time (cProfile).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import time

import isa
import numpy as np

import fluxml as fl

LR = 1e-3


# --- shapes, weights and data: NumPy, shared by all -------------------------------------------

def _dense(rng, n_in, n_out):
    bound = 1 / np.sqrt(n_in)
    return (rng.uniform(-bound, bound, (n_out, n_in)).astype(np.float32),
            rng.uniform(-bound, bound, n_out).astype(np.float32))


def case_tiny(rng):
    w = {}
    for i, (a, b) in enumerate([(2, 32), (32, 32), (32, 2)]):
        w[f"w{i}"], w[f"b{i}"] = _dense(rng, a, b)
    x = rng.normal(size=(64, 2)).astype(np.float32)
    y = np.stack([np.sin(x[:, 0]), np.cos(x[:, 1])], 1).astype(np.float32)
    return w, (x, y)


def case_mlp(rng):
    w = {}
    for i, (a, b) in enumerate([(784, 512), (512, 512), (512, 10)]):
        w[f"w{i}"], w[f"b{i}"] = _dense(rng, a, b)
    x = rng.random((128, 784), dtype=np.float32)
    return w, (x, rng.integers(0, 10, 128))


def case_lenet(rng):
    w = {}
    b1 = 1 / np.sqrt(25)
    w["c1"] = rng.uniform(-b1, b1, (6, 1, 5, 5)).astype(np.float32)
    w["cb1"] = rng.uniform(-b1, b1, 6).astype(np.float32)
    b2 = 1 / np.sqrt(6 * 25)
    w["c2"] = rng.uniform(-b2, b2, (16, 6, 5, 5)).astype(np.float32)
    w["cb2"] = rng.uniform(-b2, b2, 16).astype(np.float32)
    for i, (a, b) in enumerate([(400, 120), (120, 84), (84, 10)]):
        w[f"w{i}"], w[f"b{i}"] = _dense(rng, a, b)
    x = rng.random((64, 1, 28, 28), dtype=np.float32)
    return w, (x, rng.integers(0, 10, 64))


def case_lstm(rng):
    h = 128
    bound = 1 / np.sqrt(h)
    w = {"wih": rng.uniform(-bound, bound, (4 * h, 64)).astype(np.float32),
         "whh": rng.uniform(-bound, bound, (4 * h, h)).astype(np.float32),
         "bih": rng.uniform(-bound, bound, 4 * h).astype(np.float32),
         "bhh": rng.uniform(-bound, bound, 4 * h).astype(np.float32)}
    w["wd"], w["bd"] = _dense(rng, h, 64)
    x = rng.normal(size=(32, 50, 64)).astype(np.float32)
    return w, (x, rng.normal(size=(32, 50, 64)).astype(np.float32))


CASES = {
    "tiny MLP 2-32-32-2": case_tiny,
    "MLP 784-512-512-10": case_mlp,
    "LeNet-5 28x28": case_lenet,
    "LSTM T=50 64->128": case_lstm,
}


# --- fluxml: the layers and losses a user writes ----------------------------------------------

def _conv(w, b, pad):
    layer = fl.Conv(w.shape[2:], w.shape[1], w.shape[0], fl.relu, pad=pad)
    layer.weight[...], layer.bias[...] = w, b
    return layer


def _lstm_model(w):
    lstm = fl.LSTM(64, 128)
    cell = lstm.cell
    cell.weight_ih[...], cell.weight_hh[...] = w["wih"], w["whh"]
    cell.bias_ih[...], cell.bias_hh[...] = w["bih"], w["bhh"]
    return fl.Chain(lstm, fl.Dense(w["wd"].copy(), bias=w["bd"].copy()))


def fluxml_model(name, w):
    d = lambda i, act=fl.identity: fl.Dense(w[f"w{i}"].copy(), act, bias=w[f"b{i}"].copy())
    if name.startswith("tiny"):
        return fl.Chain(d(0, np.tanh), d(1, np.tanh), d(2)), fl.mse
    if name.startswith("MLP"):
        return fl.Chain(d(0, fl.relu), d(1, fl.relu), d(2)), fl.logitcrossentropy
    if name.startswith("LeNet"):
        return fl.Chain(_conv(w["c1"], w["cb1"], 2), fl.MaxPool((2, 2)),
                        _conv(w["c2"], w["cb2"], 0), fl.MaxPool((2, 2)), fl.Flatten(),
                        d(0, fl.relu), d(1, fl.relu), d(2)), fl.logitcrossentropy
    return _lstm_model(w), fl.mse


def fluxml_step(name, w, data):
    model, lossf = fluxml_model(name, w)
    state = fl.setup(fl.Adam(LR), model)
    x, y = data

    def step():
        loss, (g,) = fl.withgradient(lambda m: lossf(m(x), y), model)
        fl.update(state, model, g)
        return float(loss)

    return step


# --- PyTorch eager ----------------------------------------------------------------------------

def torch_step(name, w, data, compiled=False):
    """PyTorch eager (or, with ``compiled``, its forward pass under ``torch.compile``)."""
    import torch
    import torch.nn.functional as F

    p = {k: torch.tensor(v, requires_grad=True) for k, v in w.items()}
    x = torch.tensor(data[0])
    y = torch.tensor(data[1]) if data[1].dtype.kind == "f" else torch.tensor(data[1]).long()
    opt = torch.optim.Adam(list(p.values()), lr=LR)

    def forward():
        if name.startswith("tiny"):
            h = torch.tanh(F.linear(x, p["w0"], p["b0"]))
            h = torch.tanh(F.linear(h, p["w1"], p["b1"]))
            return F.mse_loss(F.linear(h, p["w2"], p["b2"]), y)
        if name.startswith("MLP"):
            h = torch.relu(F.linear(x, p["w0"], p["b0"]))
            h = torch.relu(F.linear(h, p["w1"], p["b1"]))
            return F.cross_entropy(F.linear(h, p["w2"], p["b2"]), y)
        if name.startswith("LeNet"):
            h = F.max_pool2d(torch.relu(F.conv2d(x, p["c1"], p["cb1"], padding=2)), 2)
            h = F.max_pool2d(torch.relu(F.conv2d(h, p["c2"], p["cb2"])), 2).flatten(1)
            h = torch.relu(F.linear(h, p["w0"], p["b0"]))
            h = torch.relu(F.linear(h, p["w1"], p["b1"]))
            return F.cross_entropy(F.linear(h, p["w2"], p["b2"]), y)
        hs = torch._VF.lstm(x, (torch.zeros(1, 32, 128), torch.zeros(1, 32, 128)),
                            [p["wih"], p["whh"], p["bih"], p["bhh"]], True, 1, 0.0,
                            True, False, True)[0]
        return F.mse_loss(F.linear(hs, p["wd"], p["bd"]), y)

    if compiled:
        forward = torch.compile(forward)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = forward()
        loss.backward()
        opt.step()
        return float(loss.detach())

    return step


# --- JAX jit (Adam written out: optax is not a peer here) -------------------------------------

def jax_step(name, w, data, per_array=False):
    """JAX's jitted step. ``per_array``: Adam's step count kept per parameter array, on the
    device, as fluxml's optimiser state keeps it (Optimisers.jl's layout), instead of one
    Python number passed in (what a JAX user writes)."""
    import jax
    import jax.numpy as jnp

    def relu_(z):
        return jnp.maximum(z, 0)

    def lin(h, i, p):
        return h @ p[f"w{i}"].T + p[f"b{i}"]

    def ce(logits, y):
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], 1))

    def pool(h):
        return jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2),
                                     "VALID")

    def conv(h, k, b, pad):
        out = jax.lax.conv_general_dilated(h, k, (1, 1), [(pad, pad), (pad, pad)],
                                           dimension_numbers=("NCHW", "OIHW", "NCHW"))
        return out + b[:, None, None]

    def loss_fn(p, x, y):
        if name.startswith("tiny"):
            h = jnp.tanh(lin(jnp.tanh(lin(x, 0, p)), 1, p))
            return jnp.mean((lin(h, 2, p) - y) ** 2)
        if name.startswith("MLP"):
            h = relu_(lin(relu_(lin(x, 0, p)), 1, p))
            return ce(lin(h, 2, p), y)
        if name.startswith("LeNet"):
            h = pool(relu_(conv(x, p["c1"], p["cb1"], 2)))
            h = pool(relu_(conv(h, p["c2"], p["cb2"], 0))).reshape(x.shape[0], -1)
            return ce(lin(relu_(lin(relu_(lin(h, 0, p)), 1, p)), 2, p), y)

        def cell(carry, xt):
            hh, cc = carry
            z = xt @ p["wih"].T + p["bih"] + hh @ p["whh"].T + p["bhh"]
            i, f, g, o = jnp.split(z, 4, axis=-1)
            cc = jax.nn.sigmoid(f) * cc + jax.nn.sigmoid(i) * jnp.tanh(g)
            hh = jax.nn.sigmoid(o) * jnp.tanh(cc)
            return (hh, cc), hh

        zeros = jnp.zeros((x.shape[0], 128), jnp.float32)
        _, hs = jax.lax.scan(cell, (zeros, zeros), jnp.swapaxes(x, 0, 1))
        out = jnp.swapaxes(hs, 0, 1) @ p["wd"].T + p["bd"]
        return jnp.mean((out - y) ** 2)

    b1, b2, eps = 0.9, 0.999, 1e-8

    @jax.jit
    def update(p, m, v, t, x, y):
        loss, g = jax.value_and_grad(loss_fn)(p, x, y)
        m = jax.tree_util.tree_map(lambda m, g: b1 * m + (1 - b1) * g, m, g)
        v = jax.tree_util.tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, v, g)
        mhat = 1 - b1**t
        vhat = 1 - b2**t
        p = jax.tree_util.tree_map(
            lambda p, m, v: p - LR * (m / mhat) / (jnp.sqrt(v / vhat) + eps), p, m, v)
        return p, m, v, loss

    @jax.jit
    def update_per_array(p, m, v, t, x, y):
        loss, g = jax.value_and_grad(loss_fn)(p, x, y)
        t = jax.tree_util.tree_map(lambda t: t + 1, t)
        m = jax.tree_util.tree_map(lambda m, g: b1 * m + (1 - b1) * g, m, g)
        v = jax.tree_util.tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, v, g)
        p = jax.tree_util.tree_map(
            lambda p, m, v, t: p - LR * (m / (1 - b1**t)) / (jnp.sqrt(v / (1 - b2**t)) + eps),
            p, m, v, t)
        return p, m, v, t, loss

    params = {k: jnp.asarray(v) for k, v in w.items()}
    box = {"p": params, "m": jax.tree_util.tree_map(jnp.zeros_like, params),
           "v": jax.tree_util.tree_map(jnp.zeros_like, params), "t": 0}
    x, y = jnp.asarray(data[0]), jnp.asarray(data[1])
    if per_array:  # (int32 counters: JAX's default integer without 64-bit types)
        box["t"] = {k: jnp.zeros((), jnp.int32) for k in params}

        def step_per_array():
            box["p"], box["m"], box["v"], box["t"], loss = update_per_array(
                box["p"], box["m"], box["v"], box["t"], x, y)
            return float(loss)

        return step_per_array

    def step():
        box["t"] += 1
        box["p"], box["m"], box["v"], loss = update(box["p"], box["m"], box["v"],
                                                    float(box["t"]), x, y)
        return float(loss)  # waits for the result

    return step


PEERS = {"fluxml": fluxml_step, "PyTorch eager": torch_step, "JAX jit": jax_step}


# --- measuring --------------------------------------------------------------------------------

# time.process_time with --cpu-time: with one thread, the work alone, not a busy machine's waits
CLOCK = time.perf_counter


STAT = statistics.median  # --best: min


def alternating_medians(steps: dict, repeats: int, warmup: int = 3) -> dict:
    """The median time of one call of each step, the steps run in turn in blocks of calls
    (one block of each, then the next round): on a shared machine every peer then sees the
    same load, and within a block a step runs as in a training loop, on warm caches (the
    first call of each block, after another peer's, is not counted). A block lasts ~10 ms."""
    block = {}
    for peer, step in steps.items():
        for _ in range(warmup):
            step()
        t = CLOCK()
        step()
        block[peer] = max(2, min(repeats, int(0.01 / max(CLOCK() - t, 1e-6)) + 1))
    rounds = max(5, repeats // min(block.values()))
    times = {peer: [] for peer in steps}
    for _ in range(rounds):
        for peer, step in steps.items():
            step()
            for _ in range(block[peer] - 1):
                t = CLOCK()
                step()
                times[peer].append(CLOCK() - t)
    return {peer: STAT(ts) for peer, ts in times.items()}


def gemm_rate(n: int = 1024, repeats: int = 7) -> float:
    """The machine's float32 matrix-product rate in GFLOP/s (NumPy's BLAS)."""
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    a @ a
    best = min(_timed(lambda: a @ a) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(f) -> float:
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def mlp_flops(batch: int = 128) -> float:
    """Forward + backward matrix-product FLOPs of the big MLP step (3x the forward's)."""
    forward = 2 * batch * (784 * 512 + 512 * 512 + 512 * 10)
    return 3 * forward


def limit_threads(n: int) -> None:
    """Use ``n`` threads in NumPy's BLAS (threadpoolctl), PyTorch and XLA's CPU client."""
    if n == 1:  # read when jax is first imported (by jax_step)
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                   " --xla_cpu_multi_thread_eigen=false"
                                   " intra_op_parallelism_threads=1").strip()
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)
    except ImportError:
        print("threadpoolctl is not installed: NumPy's BLAS keeps its threads")
    try:
        import torch

        torch.set_num_threads(n)
    except ImportError:
        pass


def main(quick: bool = False, profile: bool = False, threads: int | None = None,
         cases: tuple = (), scale: int = 1, peers: tuple = ()) -> None:
    if threads is not None:
        limit_threads(threads)
        print(f"threads limited to {threads}")
    repeats = {"tiny MLP 2-32-32-2": 200, "MLP 784-512-512-10": 30, "LeNet-5 28x28": 15,
               "LSTM T=50 64->128": 10}
    if quick:
        repeats = {k: max(3, v // 5) for k, v in repeats.items()}
    available = {}
    for peer, make in PEERS.items():
        if peers and not any(p.lower() in peer.lower() for p in peers):
            continue
        try:
            make("tiny MLP 2-32-32-2", *case_tiny(np.random.default_rng(0)))
            available[peer] = make
        except ImportError as err:
            print(f"{peer}: not installed ({err.name}); skipped")
    print(isa.describe())  # (after the peers' imports: what their kernels are)
    rate = gemm_rate()
    print(f"float32 GEMM (1024x1024, NumPy BLAS): {rate:.1f} GFLOP/s")
    print(f"{'case':22} {'peer':14} {'step':>10} {'ratio':>7}  losses of steps 1-3")
    for name, make_case in CASES.items():
        if cases and not any(c in name for c in cases):
            continue
        weights, data = make_case(np.random.default_rng(0))
        reference = None
        steps, shown_losses = {}, {}
        for peer, make in available.items():
            step = make(name, weights, data)
            losses = [step() for _ in range(3)]
            if reference is None:
                reference = losses
            elif not np.allclose(losses, reference, rtol=2e-4, atol=1e-6):
                raise AssertionError(f"{name}: {peer}'s losses {losses} differ from "
                                     f"{next(iter(steps))}'s {reference}")
            steps[peer], shown_losses[peer] = step, losses
        times = alternating_medians(steps, repeats[name] * scale)
        ours = next(iter(times.values()))  # the first peer run: fluxml unless left out
        for j, (peer, seconds) in enumerate(times.items()):
            losses = shown_losses[peer]
            ratio = "" if j == 0 else f"{seconds / ours:6.2f}x"
            extra = ""
            if name.startswith("MLP"):
                extra = f"  ({mlp_flops() / seconds / 1e9:.1f} GFLOP/s, " \
                        f"{mlp_flops() / seconds / 1e9 / rate:.0%} of GEMM)"
            shown = " ".join(f"{v:.6f}" for v in losses)
            print(f"{name:22} {peer:14} {_fmt(seconds):>10} {ratio:>7}  {shown}{extra}")
    if profile:
        weights, data = case_mlp(np.random.default_rng(0))
        step = fluxml_step("MLP 784-512-512-10", weights, data)
        for _ in range(3):
            step()
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(20):
            step()
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(18)


def _fmt(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms" if seconds >= 1e-3 else f"{seconds * 1e6:.0f} us"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--profile", action="store_true", help="profile the big MLP step")
    parser.add_argument("--threads", type=int, default=None,
                        help="limit BLAS / PyTorch threads (a loaded machine times better)")
    parser.add_argument("--cpu-time", action="store_true",
                        help="time each step by the process's CPU time (use with 1 thread)")
    parser.add_argument("--scale", type=int, default=1, help="multiply the repeats")
    parser.add_argument("--best", action="store_true",
                        help="the minimum time over repeats instead of the median")
    parser.add_argument("--peers", action="append", default=[],
                        help="run only these (repeatable: fluxml, torch, jax)")
    parser.add_argument("cases", nargs="*", help="run the cases whose name contains one of these")
    parser.add_argument("--case", action="append", default=[],
                        help="the same as a positional case name (repeatable)")
    parser.add_argument("--isa", choices=["avx2"], default=None,
                        help="cap PyTorch's and XLA's kernels at this instruction set (see "
                        "benchmarks/isa.py)")
    args = parser.parse_args()
    isa.cap_peers(args.isa)
    if args.cpu_time:
        CLOCK = time.process_time
    if args.best:
        STAT = min
    main(args.quick, args.profile, args.threads, tuple(args.cases) + tuple(args.case),
         args.scale, tuple(args.peers))
