"""fluxml.nnlib against torch.nn.functional: the same conventions (not a timing).

    PYTHONPATH=src .bench-venv/bin/python benchmarks/nnlib_conventions.py

Kept outside the test suite (torch is never a dependency): every activation's value and
gradient, softmax, the four normalisations (and batch statistics), embedding, attention with
boolean masks, additive bias and causal masking, LSTM/GRU cells and layers loaded with
torch's own weights (gate order i, f, g, o and r, z, n). Prints the largest difference of
each, in float64; "OK" below 1e-10 (1e-9 for gradients).

Two gradients differ by about 1e-8, from torch's side: its float64 hardsigmoid and celu
backward kernels round constants to float32 (its hardsigmoid slope is 0.16666667163372 =
float32(1/6), its celu slope at -0.5 with alpha 1.3 is off by 4e-9 from exp(-0.5 / 1.3)).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

import fluxml as fl

torch.set_default_dtype(torch.float64)
R = np.random.default_rng(0)
T = torch.tensor


def report(name, ours, theirs, tol=1e-10):
    theirs = theirs.detach().numpy()
    err = float(np.max(np.abs(np.asarray(ours) - theirs)))
    print(f"{name:<24} {err:9.2e}  {'OK' if err < tol else 'DIFFERENT'}")


ACTIVATIONS = [
    ("sigmoid", fl.sigmoid, torch.sigmoid), ("hardsigmoid", fl.hardsigmoid, F.hardsigmoid),
    ("logsigmoid", fl.logsigmoid, F.logsigmoid), ("relu", fl.relu, F.relu),
    ("relu6", fl.relu6, F.relu6), ("leakyrelu", fl.leakyrelu, F.leaky_relu),
    ("elu", fl.elu, F.elu), ("gelu_tanh", fl.gelu_tanh, lambda t: F.gelu(t, approximate="tanh")),
    ("gelu_erf", fl.gelu_erf, F.gelu), ("swish", fl.swish, F.silu),
    ("hardswish", fl.hardswish, F.hardswish), ("selu", fl.selu, F.selu),
    ("celu", lambda x: fl.celu(x, 1.3), lambda t: F.celu(t, 1.3)),
    ("softplus", fl.softplus, F.softplus), ("softsign", fl.softsign, F.softsign),
    ("mish", fl.mish, F.mish), ("tanhshrink", fl.tanhshrink, F.tanhshrink),
    ("softshrink", fl.softshrink, F.softshrink), ("hardshrink", fl.hardshrink, F.hardshrink),
    ("hardtanh", fl.hardtanh, F.hardtanh), ("trelu", fl.trelu, lambda t: F.threshold(t, 1, 0)),
    ("rrelu (inactive)", fl.rrelu, lambda t: F.rrelu(t, training=False)),
]


def activations():
    x = R.standard_normal((4, 6)) * 3
    w = R.standard_normal(x.shape)
    for name, ours, theirs in ACTIVATIONS:
        report(name, ours(x), theirs(T(x)))
        tx = T(x, requires_grad=True)
        (theirs(tx) * T(w)).sum().backward()
        grad = fl.gradient(lambda x, f=ours: np.sum(f(x) * w), x)[0]
        report(f"{name} gradient", grad, tx.grad, 1e-9)
    report("softmax", fl.softmax(x), F.softmax(T(x), -1))
    report("logsoftmax axis 0", fl.logsoftmax(x, axis=0), F.log_softmax(T(x), 0))


def normalisation():
    x, s, b = R.standard_normal((3, 4, 5, 2)), R.standard_normal(4), R.standard_normal(4)
    report("batchnorm", fl.batchnorm(x, s, b),
           F.batch_norm(T(x), None, None, T(s), T(b), training=True))
    rm, rv = R.standard_normal(4), R.random(4) + 0.5
    report("batchnorm (running)", fl.batchnorm(x, s, b, mean=rm, var=rv),
           F.batch_norm(T(x), T(rm), T(rv), T(s), T(b), training=False))
    _, m, v = fl.batchnorm(x, s, b, return_stats=True)
    tm, tv = torch.zeros(4), torch.ones(4)
    F.batch_norm(T(x), tm, tv, T(s), T(b), training=True, momentum=1.0)
    report("batch mean", m, tm)
    report("batch var (unbiased)", v * 30 / 29, tv)
    ls, lb = R.standard_normal((5, 2)), R.standard_normal((5, 2))
    report("layernorm, 2 axes", fl.layernorm(x, ls, lb, axes=(-2, -1)),
           F.layer_norm(T(x), (5, 2), T(ls), T(lb)))
    report("groupnorm", fl.groupnorm(x, 2, s, b), F.group_norm(T(x), 2, T(s), T(b)))
    report("instancenorm", fl.instancenorm(x, s, b),
           F.instance_norm(T(x), weight=T(s), bias=T(b)))


def embedding_and_attention():
    w, idx = R.standard_normal((10, 3)), R.integers(0, 10, (2, 5))
    report("embedding", fl.embedding(w, idx), F.embedding(T(idx), T(w)))
    q, k, v = (R.standard_normal((2, 3, n, d)) for n, d in ((4, 5), (6, 5), (6, 7)))
    mask = R.random((4, 6)) > 0.3
    mask[:, 0] = True
    bias = R.standard_normal((4, 6))
    sdpa = F.scaled_dot_product_attention
    report("attention, mask", fl.dot_product_attention(q, k, v, mask=mask)[0],
           sdpa(T(q), T(k), T(v), attn_mask=T(mask)))
    report("attention, bias", fl.dot_product_attention(q, k, v, bias=bias)[0],
           sdpa(T(q), T(k), T(v), attn_mask=T(bias)))
    q, k, v = q[:, :, :4], k[:, :, :4], v[:, :, :4]
    report("attention, causal", fl.dot_product_attention(
        q, k, v, mask=fl.make_causal_mask(4))[0], sdpa(T(q), T(k), T(v), is_causal=True))
    empty = np.ones((4, 4), bool)
    empty[1] = False
    report("attention, empty row", fl.dot_product_attention(q, k, v, mask=empty)[0],
           sdpa(T(q), T(k), T(v), attn_mask=T(empty)))


def recurrent():
    x, h, c = R.standard_normal((2, 3)), R.standard_normal((2, 4)), R.standard_normal((2, 4))
    cell = torch.nn.LSTMCell(3, 4)
    p = [a.detach().numpy() for a in (cell.weight_ih, cell.weight_hh, cell.bias_ih,
                                      cell.bias_hh)]
    th, tc = cell(T(x), (T(h), T(c)))
    oh, oc = fl.nnlib.lstm_cell(x, h, c, *p)
    report("LSTMCell h", oh, th)
    report("LSTMCell c", oc, tc)
    cell = torch.nn.GRUCell(3, 4)
    p = [a.detach().numpy() for a in (cell.weight_ih, cell.weight_hh, cell.bias_ih,
                                      cell.bias_hh)]
    report("GRUCell", fl.nnlib.gru_cell(x, h, *p), cell(T(x), T(h)))
    xs = R.standard_normal((2, 7, 3))
    layer = torch.nn.LSTM(3, 4, batch_first=True)
    p = [a.detach().numpy() for a in (layer.weight_ih_l0, layer.weight_hh_l0, layer.bias_ih_l0,
                                      layer.bias_hh_l0)]
    out, (_, cn) = layer(T(xs), (T(h)[None], T(c)[None]))
    hs, _, c_t = fl.nnlib.lstm_sequence(xs, h, c, *p)
    report("nn.LSTM outputs", hs, out)
    report("nn.LSTM final c", c_t, cn[0])
    layer = torch.nn.GRU(3, 4, batch_first=True)
    p = [a.detach().numpy() for a in (layer.weight_ih_l0, layer.weight_hh_l0, layer.bias_ih_l0,
                                      layer.bias_hh_l0)]
    out, hn = layer(T(xs), T(h)[None])
    hs, h_t = fl.nnlib.gru_sequence(xs, h, *p)
    report("nn.GRU outputs", hs, out)
    report("nn.GRU final h", h_t, hn[0])


if __name__ == "__main__":
    for part in (activations, normalisation, embedding_and_attention, recurrent):
        part()
