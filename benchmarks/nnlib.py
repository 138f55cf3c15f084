"""NN primitives: forward + backward of each fused kernel, beside its composite (the same
function written with NumPy calls, recorded op by op) and PyTorch eager, in the same run.

    PYTHONPATH=src .bench-venv/bin/python benchmarks/nnlib.py [case ...]

Both libraries run on one thread (OpenBLAS and torch), unless BENCH_THREADS says otherwise:
on a machine shared by several processes, OpenBLAS's threads make small matrix products
10-100x slower (a (16, 8, 128, 32) batched q @ k^T: 7.7 ms on one thread, 76 ms on two).

Each figure is the best over repeats (the least disturbed by other processes) of one call of
``gradient(sum(f(args) * G))`` (float32; G a fixed random cotangent), in milliseconds. The
torch column runs ``(f(args) * G).sum().backward()``; ratio = torch / fluxml (above 1: fluxml
is faster). Cases:

- activations on (256, 1024); softmax on (256, 1000); layernorm on (64, 128, 256);
  batchnorm on (32, 64, 32, 32);
- attention: q, k, v of shape (N=16, heads=8, T=128, d=32) (E = 256), against torch's
  fused ``scaled_dot_product_attention`` (which never materialises the probabilities) and
  against eager torch ``softmax(q k^T / sqrt d) v`` (which does, as ours returns them);
- lstm / gru: a sequence of T=50 steps, N=32, 64 -> 128, input projection for all steps in
  one matrix product, then the scan: the whole-sequence kernel (``lstm_sequence``) against
  torch's ``nn.LSTM`` (its scan in C++) and against a Python loop over ``nn.LSTMCell``
  (eager, as a user writes a loop); "steps": a Python loop over our step kernel
  (``lstm_step``), beside the same loop over a composite step, against the cell loop;
- embedding: 32 x 50 indices into a (10000, 128) table;
- audio: a power spectrogram of 8 waveforms of 16000 samples (n_fft 400, hop 160, Hann: a
  speech front end) against ``torch.stft(...).abs() ** 2``, and ``istft`` of its complex
  spectrum against ``torch.istft``.
"""

from __future__ import annotations

import os
import sys
import time

THREADS = os.environ.get("BENCH_THREADS", "1")
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, THREADS)  # before NumPy loads its BLAS

import numpy as np  # noqa: E402

import fluxml as fl  # noqa: E402
from fluxml import nnlib  # noqa: E402

try:
    import torch
except ImportError:  # the peer is optional: its column is left out
    torch = None

RNG = np.random.default_rng(0)


def f32(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def timed(fn, repeats=7, min_time=0.2):
    fn()
    t0 = time.perf_counter()
    fn()
    once = time.perf_counter() - t0
    number = max(1, int(min_time / max(once, 1e-6) / repeats))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - t0) / number)
    return min(times) * 1e3


def grad_of(f, args, g):
    return lambda: fl.gradient(lambda *a: np.sum(f(*a) * g), *args)


def torch_grad_of(f, args, g):
    targs = [torch.tensor(a, requires_grad=True) for a in args]
    tg = torch.tensor(g)

    def run():
        for a in targs:
            a.grad = None
        (f(*targs) * tg).sum().backward()

    return run


# --- composites: the references the fused kernels are tested against ----------------------------

def sigmoid_c(x):
    return 1 / (1 + np.exp(-x))


def gelu_c(x):
    return 0.5 * x * (1 + np.tanh(0.7978845608028654 * (x + 0.044715 * x**3)))


def softmax_c(x):
    e = np.exp(x - np.max(x, axis=-1, keepdims=True))
    return e / np.sum(e, axis=-1, keepdims=True)


def layernorm_c(x, s, b, axes=(-1,)):
    m = np.mean(x, axis=axes, keepdims=True)
    v = np.mean((x - m) ** 2, axis=axes, keepdims=True)
    return (x - m) / np.sqrt(v + 1e-5) * s + b


def attention_c(q, k, v):
    s = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])
    return softmax_c(s) @ v


def lstm_step_c(x, h, c, wi, wh, b):
    z = x @ wi.T + h @ wh.T + b
    n = h.shape[-1]
    i, f = sigmoid_c(z[:, :n]), sigmoid_c(z[:, n:2 * n])
    g, o = np.tanh(z[:, 2 * n:3 * n]), sigmoid_c(z[:, 3 * n:])
    c = f * c + i * g
    return o * np.tanh(c), c


# --- cases -------------------------------------------------------------------------------------

def case_activations():
    x = f32(256, 1024)
    g = f32(256, 1024)
    rows = []
    table = [("relu", nnlib.relu, lambda x: np.maximum(x, 0), "relu"),
             ("sigmoid", nnlib.sigmoid, sigmoid_c, "sigmoid"),
             ("gelu_tanh", nnlib.gelu_tanh, gelu_c, "gelu"),
             ("swish", nnlib.swish, lambda x: x * sigmoid_c(x), "silu"),
             ("elu", nnlib.elu, None, "elu"),
             ("softplus", nnlib.softplus, None, "softplus")]
    for name, fused, comp, tname in table:
        ours = timed(grad_of(fused, (x,), g))
        comp_t = timed(grad_of(comp, (x,), g)) if comp else None
        peer = None
        if torch is not None:
            tf = getattr(torch.nn.functional, tname)
            if tname == "gelu":
                peer = timed(torch_grad_of(lambda t, tf=tf: tf(t, approximate="tanh"), (x,), g))
            else:
                peer = timed(torch_grad_of(tf, (x,), g))
        rows.append((name, ours, comp_t, peer))
    return rows


def case_softmax():
    x, g = f32(256, 1000), f32(256, 1000)
    peer = torch and timed(torch_grad_of(lambda t: torch.softmax(t, -1), (x,), g))
    return [("softmax", timed(grad_of(nnlib.softmax, (x,), g)),
             timed(grad_of(softmax_c, (x,), g)), peer)]


def case_norm():
    x, s, b, g = f32(64, 128, 256), f32(256), f32(256), f32(64, 128, 256)
    peer = torch and timed(torch_grad_of(
        lambda x, s, b: torch.nn.functional.layer_norm(x, (256,), s, b), (x, s, b), g))
    rows = [("layernorm", timed(grad_of(nnlib.layernorm, (x, s, b), g)),
             timed(grad_of(layernorm_c, (x, s, b), g)), peer)]
    x, s, b, g = f32(32, 64, 32, 32), f32(64), f32(64), f32(32, 64, 32, 32)
    peer = torch and timed(torch_grad_of(
        lambda x, s, b: torch.nn.functional.batch_norm(x, None, None, s, b, training=True),
        (x, s, b), g))
    rows.append(("batchnorm", timed(grad_of(nnlib.batchnorm, (x, s, b), g)),
                 timed(grad_of(lambda x, s, b: layernorm_c(
                     x, s.reshape(1, -1, 1, 1), b.reshape(1, -1, 1, 1), (0, 2, 3)),
                     (x, s, b), g)), peer))
    return rows


def case_attention():
    q, k, v, g = (f32(16, 8, 128, 32) for _ in range(4))
    ours = timed(grad_of(lambda q, k, v: nnlib.dot_product_attention(q, k, v)[0],
                         (q, k, v), g))
    comp = timed(grad_of(attention_c, (q, k, v), g))
    sdpa = math = None
    if torch is not None:
        sdpa = timed(torch_grad_of(torch.nn.functional.scaled_dot_product_attention,
                                   (q, k, v), g))

        def eager(q, k, v):  # the probabilities materialised, as Flux's function returns them
            p = torch.softmax(q @ k.transpose(-1, -2) / np.sqrt(q.shape[-1]), -1)
            return p @ v

        math = timed(torch_grad_of(eager, (q, k, v), g))
    return [("attn/sdpa", ours, comp, sdpa), ("attn/eager", ours, comp, math)]


def _sequence(step_fused, gates, composite=None, whole=None):
    n, t, d, h = 32, 50, 64, 128
    x = f32(n, t, d)
    wi, wh, b = f32(gates * h, d, scale=0.1), f32(gates * h, h, scale=0.1), f32(gates * h)
    g = f32(n, t, h)

    def fused(x, wi, wh, b):
        gx = (np.reshape(x, (n * t, d)) @ wi.T + b).reshape(n, t, -1)
        hs = np.zeros((n, h), np.float32)
        c = np.zeros((n, h), np.float32)
        outs = []
        for s in range(t):
            hs, c = step_fused(gx[:, s], hs, c, wh)
            outs.append(hs)
        return np.stack(outs, axis=1)

    def comp(x, wi, wh, b):
        hs = np.zeros((n, h), np.float32)
        c = np.zeros((n, h), np.float32)
        outs = []
        for s in range(t):
            hs, c = composite(x[:, s], hs, c, wi, wh, b)
            outs.append(hs)
        return np.stack(outs, axis=1)

    ours = timed(grad_of(whole or fused, (x, wi, wh, b), g), repeats=5)
    comp_t = timed(grad_of(comp, (x, wi, wh, b), g), repeats=5) if composite else None
    peer = (None, None)
    if torch is not None:
        cls = torch.nn.LSTM if gates == 4 else torch.nn.GRU
        layer = cls(d, h, batch_first=True)
        cell = (torch.nn.LSTMCell if gates == 4 else torch.nn.GRUCell)(d, h)
        tx, tg = torch.tensor(x, requires_grad=True), torch.tensor(g)

        def run():
            layer.zero_grad()
            tx.grad = None
            (layer(tx)[0] * tg).sum().backward()

        def run_cells():  # a Python loop over the cell: PyTorch eager as a user writes it
            cell.zero_grad()
            tx.grad = None
            state = None
            outs = []
            for s in range(t):
                state = cell(tx[:, s], state)
                outs.append(state[0] if gates == 4 else state)
            (torch.stack(outs, 1) * tg).sum().backward()

        peer = timed(run, repeats=5), timed(run_cells, repeats=5)
    return ours, comp_t, peer


def case_lstm():
    def step(gx, h, c, wh):
        return nnlib.lstm_step(gx, h, c, wh)

    def whole(x, wi, wh, b):
        h0 = np.zeros((x.shape[0], wh.shape[1]), np.float32)
        return nnlib.lstm_sequence(x, h0, h0, wi, wh, b)[0]

    ours, _, (layer, cells) = _sequence(None, 4, whole=whole)
    steps, comp, (_, cells2) = _sequence(step, 4, lstm_step_c)
    return [("lstm/nn.LSTM", ours, None, layer), ("lstm/cells", ours, None, cells),
            ("lstm steps", steps, comp, cells2)]


def case_gru():
    def step(gx, h, c, wh):
        return nnlib.gru_step(gx, h, wh), c

    def whole(x, wi, wh, b):
        h0 = np.zeros((x.shape[0], wh.shape[1]), np.float32)
        return nnlib.gru_sequence(x, h0, wi, wh, b)[0]

    ours, _, (layer, cells) = _sequence(None, 3, whole=whole)
    steps, _, (_, cells2) = _sequence(step, 3)
    return [("gru/nn.GRU", ours, None, layer), ("gru/cells", ours, None, cells),
            ("gru steps", steps, None, cells2)]


def case_embedding():
    w, idx, g = f32(10000, 128), RNG.integers(0, 10000, (32, 50)), f32(32, 50, 128)
    peer = torch and timed(torch_grad_of(
        lambda w: torch.nn.functional.embedding(torch.tensor(idx), w), (w,), g))
    return [("embedding", timed(grad_of(lambda w: nnlib.embedding(w, idx), (w,), g)),
             timed(grad_of(lambda w: w[idx], (w,), g)), peer)]


def case_audio():
    x, w = f32(8, 16000), nnlib.hann_window(400)
    spec = nnlib.stft(x, 400, 160, w)
    g_spec, g_x = f32(*spec.shape), f32(8, 16000)
    rows = []
    peer = torch and timed(torch_grad_of(
        lambda x: torch.stft(x, 400, 160, window=torch.tensor(w), return_complex=True).abs() ** 2,
        (x,), g_spec))
    rows.append(("spectrogram", timed(grad_of(lambda x: nnlib.spectrogram(x, 400, 160, w),
                                              (x,), g_spec)), None, peer))
    peer = torch and timed(torch_grad_of(
        lambda s: torch.istft(s, 400, 160, window=torch.tensor(w), length=16000), (spec,), g_x))
    rows.append(("istft", timed(grad_of(lambda s: nnlib.istft(s, 400, 160, w, length=16000),
                                        (spec,), g_x)), None, peer))
    return rows


CASES = {"activations": case_activations, "softmax": case_softmax, "norm": case_norm,
         "attention": case_attention, "lstm": case_lstm, "gru": case_gru,
         "embedding": case_embedding, "audio": case_audio}


def main(names):
    if torch is None:
        print("torch is not installed: its column is left out")
    else:
        torch.set_num_threads(int(THREADS))
    print(f"threads: {THREADS} (OpenBLAS: {os.environ['OPENBLAS_NUM_THREADS']})")
    print(f"{'case':<12} {'fluxml ms':>10} {'composite':>10} {'torch ms':>10} "
          f"{'torch/fluxml':>13}")
    for name in names or CASES:
        for label, ours, comp, peer in CASES[name]():
            c = f"{comp:10.3f}" if comp else f"{'-':>10}"
            p = f"{peer:10.3f}" if peer else f"{'-':>10}"
            r = f"{peer / ours:13.2f}" if peer else f"{'-':>13}"
            print(f"{label:<12} {ours:10.3f} {c} {p} {r}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
