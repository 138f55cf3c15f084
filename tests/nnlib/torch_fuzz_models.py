"""The layer, loss, optimiser and bad-input families of torch_fuzz.py (run from there).

Layers are compared with their parameters passed as arguments (so that the gradient of
each parameter is checked): ours sets them on the fluxml layer, torch calls its module with
``torch.func.functional_call``. Running statistics are checked over several training steps,
then in test mode, with a fresh pair of layers (the gradient checks call ours several times).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call
from torch_fuzz import CONVS, CONVTS, FZ, Skip, T, close, compare, per_dim

import fluxml as fl
from fluxml import nnlib


def check_f32(layer, *inputs):
    """A float32 layer on float32 inputs: float32 outputs, and float32 gradients of every
    parameter and input."""
    inputs = [a.astype(np.float32) if isinstance(a, np.ndarray) else a for a in inputs]
    outs = [y for y in _flat(layer(*inputs)) if isinstance(y, np.ndarray)]
    if any(y.dtype != np.float32 for y in outs):
        FZ.fail(f"float32 layer gave outputs {[y.dtype.name for y in outs]}")
        return
    grads = fl.gradient(lambda m, *xs: sum(np.sum(y) for y in _flat(m(*xs))
                                           if getattr(y, "dtype", None) is not None),
                        layer, *inputs)
    kinds = {np.asarray(g).dtype.name for g in fl.leaves(grads)
             if isinstance(g, np.ndarray) and g.dtype.kind == "f"}
    if kinds - {"float32"}:
        FZ.fail(f"float32 layer gave gradients in {sorted(kinds)}")


def _flat(y):
    return list(y) if isinstance(y, (tuple, list)) else [y]


# --- convolution layers ---------------------------------------------------------------------

def case_crosscor_layer(rng):
    """The layers Conv / CrossCor / DepthwiseConv / ConvTranspose with bias, weights copied."""
    d = int(rng.integers(1, 4))
    kernel = tuple(int(k) for k in rng.integers(1, 4, d))
    kind = rng.choice(["Conv", "CrossCor", "DepthwiseConv", "ConvTranspose"])
    c = int(rng.integers(1, 4))
    o = c * int(rng.integers(1, 3))
    stride = per_dim(rng, d, 1, 2)
    pad = per_dim(rng, d, 0, 1)
    size = tuple(int(v) for v in rng.integers(3, 6, d) + 2 * np.array(kernel))
    layer = getattr(fl, kind)(kernel, c, o, stride=stride, pad=pad, dtype=np.float64,
                              rng=np.random.default_rng(int(rng.integers(1 << 30))))
    FZ.desc = f"{layer!r} x {(2, c) + size}"
    x = rng.standard_normal((2, c) + size)
    w, b = layer.weight, layer.bias
    if kind == "ConvTranspose":
        theirs = lambda x, w, b: CONVTS[d](x, w, b, stride=stride, padding=pad)  # noqa: E731
    else:
        groups = c if kind == "DepthwiseConv" else 1
        flip = kind == "Conv" and getattr(layer, "flipped", False)

        def theirs(x, w, b):
            w = torch.flip(w, tuple(range(2, 2 + d))) if flip else w
            return CONVS[d](x, w, b, stride=stride, padding=pad, groups=groups)

    def ours(x, w, b):
        layer.weight, layer.bias = w, b
        return layer(x)

    compare(ours, theirs, [x, w, b], f32=False)
    layer.weight, layer.bias = w, b
    check_f32(fl.f32(layer), x)


# --- normalisation layers ---------------------------------------------------------------------

def _norm_pair(kind, c, nd, opts, rng):
    """A fluxml layer and its torch twin with the same random affine parameters."""
    eps, momentum, affine, track, groups = (opts[k] for k in ("eps", "momentum", "affine",
                                                             "track", "groups"))
    if kind == "BatchNorm":
        ours = fl.BatchNorm(c, affine=affine, track_stats=track, eps=eps, momentum=momentum,
                            dtype=np.float64)
        theirs = getattr(torch.nn, f"BatchNorm{max(nd - 2, 1)}d")(
            c, eps=eps, momentum=momentum, affine=affine, track_running_stats=track)
    elif kind == "InstanceNorm":
        ours = fl.InstanceNorm(c, affine=affine, track_stats=track, eps=eps, momentum=momentum,
                               dtype=np.float64)
        theirs = getattr(torch.nn, f"InstanceNorm{nd - 2}d")(
            c, eps=eps, momentum=momentum, affine=affine, track_running_stats=track)
    elif kind == "GroupNorm":
        ours = fl.GroupNorm(c, groups, affine=affine, eps=eps, dtype=np.float64)
        theirs = torch.nn.GroupNorm(groups, c, eps=eps, affine=affine)
    else:
        size = opts["size"]
        ours = fl.LayerNorm(*size, affine=affine, eps=eps, dtype=np.float64)
        theirs = torch.nn.LayerNorm(size, eps=eps, elementwise_affine=affine)
    if affine:
        ours.weight = rng.standard_normal(ours.weight.shape)
        ours.bias = rng.standard_normal(ours.bias.shape)
        with torch.no_grad():
            theirs.weight.copy_(T(ours.weight))
            theirs.bias.copy_(T(ours.bias))
    return ours, theirs


def case_norm_layer(rng):
    kind = rng.choice(["BatchNorm", "InstanceNorm", "GroupNorm", "LayerNorm"])
    nd = int(rng.integers(2 if kind in ("BatchNorm", "GroupNorm", "LayerNorm") else 3, 6))
    c = int(rng.integers(1, 5))
    n = int(rng.integers(2, 4))
    shape = (n, c) + tuple(int(v) for v in rng.integers(2, 4, nd - 2))
    opts = dict(eps=float(rng.choice([1e-5, 1e-3])), momentum=float(rng.choice([0.1, 0.3, 0.9])),
                affine=bool(rng.random() < 0.6), track=bool(rng.random() < 0.6),
                groups=int(rng.choice([g for g in range(1, c + 1) if c % g == 0])))
    if kind == "LayerNorm":
        k = int(rng.integers(1, nd))
        opts["size"] = shape[nd - k:]
    steps = int(rng.integers(1, 4))
    FZ.desc = f"{kind} x {shape} {opts} train steps {steps}"
    xs = [rng.standard_normal(shape) * 3 + 2 for _ in range(steps + 1)]
    ours, theirs = _norm_pair(kind, c, nd, opts, rng)
    fl.trainmode(ours)
    theirs.train()
    for x in xs[:-1]:  # training steps: outputs and running statistics
        close("training output", ours(x), theirs(T(x)), 1e-9)
    if getattr(ours, "running_mean", None) is not None:
        close("running_mean", ours.running_mean, theirs.running_mean, 1e-9)
        close("running_var", ours.running_var, theirs.running_var, 1e-9)
    fl.testmode(ours)
    theirs.eval()
    close("test-mode output", ours(xs[-1]), theirs(T(xs[-1])), 1e-9)
    # gradients, in training mode, with respect to the input and the affine parameters
    train = bool(rng.random() < 0.5)
    FZ.desc += f"; gradients in {'training' if train else 'test'} mode"
    names = ["weight", "bias"] if opts["affine"] else []
    params = [getattr(ours, a) for a in names]

    def mine(x, *ps):
        layer, _ = _norm_pair(kind, c, nd, opts, np.random.default_rng(0))
        layer.eps = opts["eps"]
        if getattr(layer, "running_mean", None) is not None:
            layer.running_mean[...] = ours.running_mean
            layer.running_var[...] = ours.running_var
        for a, p in zip(names, ps):
            setattr(layer, a, p)
        return (fl.trainmode if train else fl.testmode)(layer)(x)

    def ref(x, *ps):
        theirs.train(train)
        state = {k: v.clone() for k, v in theirs.state_dict().items()}
        state.update(zip(names, ps))
        return functional_call(theirs, state, (x,))

    compare(mine, ref, [xs[-1]] + params, f32=False)
    layer, _ = _norm_pair(kind, c, nd, opts, np.random.default_rng(0))
    check_f32((fl.trainmode if train else fl.testmode)(fl.f32(layer)), xs[-1])


# --- embeddings -------------------------------------------------------------------------------

def case_embedding(rng):
    vocab, dim = int(rng.integers(1, 8)), int(rng.integers(1, 5))
    w = rng.standard_normal((vocab, dim))
    kind = rng.choice(["embedding", "bag matrix", "bag ragged", "bag offsets"])
    if kind == "embedding":
        idx = rng.integers(0, vocab, tuple(int(v) for v in rng.integers(1, 4, rng.integers(1,
                                                                                        4))))
        FZ.desc = f"embedding vocab {vocab} dim {dim} idx {idx.shape}"
        compare(lambda w: nnlib.embedding(w, idx), lambda w: F.embedding(T(idx), w), [w])
        return
    mode = str(rng.choice(["sum", "mean", "max"]))
    layer = fl.EmbeddingBag(vocab, dim, mode, dtype=np.float64)
    if kind == "bag matrix":
        bags = rng.integers(0, vocab, (int(rng.integers(1, 4)), int(rng.integers(1, 4))))
        flat, offsets, arg = bags.reshape(-1), np.arange(0, bags.size, bags.shape[1]), bags
    else:
        lengths = rng.integers(0, 4, int(rng.integers(1, 5)))
        lists = [rng.integers(0, vocab, k) for k in lengths]
        flat = np.concatenate(lists) if lists else np.zeros(0, int)
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        arg = lists if kind == "bag ragged" else (flat, offsets)
    FZ.desc = f"EmbeddingBag {kind} mode {mode} vocab {vocab} dim {dim} bags {offsets}/{flat}"

    def mine(w):
        layer.weight = w
        return layer(arg)

    compare(mine, lambda w: F.embedding_bag(T(flat), w, T(offsets), mode=mode), [w],
            f32=False)
    layer.weight = w.astype(np.float32)
    y = layer(arg)
    if y.dtype != np.float32:
        FZ.fail(f"float32 EmbeddingBag gave {y.dtype}")


# --- recurrent layers -------------------------------------------------------------------------

GATES = {"RNN": 1, "LSTM": 4, "GRU": 3}
PARAMS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def case_recurrent(rng):
    kind = str(rng.choice(["RNN", "LSTM", "GRU"]))
    n_in, hidden = int(rng.integers(1, 5)), int(rng.integers(1, 5))
    n, steps = int(rng.integers(1, 4)), int(rng.integers(1, 5))
    bias, bidir = bool(rng.random() < 0.7), bool(rng.random() < 0.4)
    act = str(rng.choice(["tanh", "relu"])) if kind == "RNN" else "tanh"
    with_state = bool(rng.random() < 0.5)
    FZ.desc = (f"{kind}({n_in} => {hidden}) bias {bias} bidirectional {bidir} activation {act}"
               f" x {(n, steps, n_in)} initial state {with_state}")
    extra = dict(nonlinearity=act) if kind == "RNN" else {}
    theirs = getattr(torch.nn, kind)(n_in, hidden, bias=bias, batch_first=True,
                                     bidirectional=bidir, **extra)
    dirs = ["_l0", "_l0_reverse"] if bidir else ["_l0"]
    names = [p + d for d in dirs for p in PARAMS if bias or "bias" not in p]
    params = [getattr(theirs, name).detach().numpy().copy() for name in names]
    single = bool(rng.random() < 0.2)  # one unbatched sequence (T, in)
    FZ.desc += " unbatched" * single
    x = rng.standard_normal((n, steps, n_in))[0 if single else slice(None)]
    nstate = 2 if kind == "LSTM" else 1
    states = [rng.standard_normal((len(dirs), n, hidden))[:, 0 if single else slice(None)]
              for _ in range(nstate)]
    activation = fl.relu if act == "relu" else np.tanh

    def build():
        extra = (activation,) if kind == "RNN" else ()
        make = lambda: getattr(fl, kind)(n_in, hidden, *extra, bias=bias,  # noqa: E731
                                         return_state=not bidir, dtype=np.float64)
        return fl.Bidirectional(make(), make()) if bidir else make()

    def mine(x, *args):
        ps, ss = args[:len(names)], args[len(names):]
        layer = build()
        layers = [layer.forward, layer.backward] if bidir else [layer]
        it = iter(ps)
        for sub in layers:
            for p in PARAMS:
                setattr(sub.cell, p, next(it) if bias or "bias" not in p else None)
        per_dir = [None] * len(layers)
        if with_state:
            per_dir = [tuple(s[i] for s in ss) if kind == "LSTM" else ss[0][i]
                       for i in range(len(layers))]
        if not bidir:
            ys, state = layer(x, per_dir[0])
            return (ys,) + (state if kind == "LSTM" else (state,))
        # Bidirectional returns the outputs only: the final states via each direction
        ys = layer(x, tuple(per_dir) if with_state else None)
        return (ys,)

    def ref(x, *args):
        ps, ss = args[:len(names)], args[len(names):]
        state = None
        if with_state:
            state = tuple(ss) if kind == "LSTM" else ss[0]
        out, fin = functional_call(theirs, dict(zip(names, ps)), (x, state))
        if bidir:
            return (out,)
        return (out,) + (tuple(s[0] for s in fin) if kind == "LSTM" else (fin[0],))

    compare(mine, ref, [x] + params + (states if with_state else []), f32=False)
    check_f32(fl.f32(build()), x)


# --- attention --------------------------------------------------------------------------------

def case_attention(rng):
    heads = int(rng.integers(1, 4))
    e = heads * int(rng.integers(1, 4))
    kdim = e if rng.random() < 0.6 else int(rng.integers(1, 6))
    vdim = kdim if rng.random() < 0.6 else int(rng.integers(1, 6))
    n, tq, tk = int(rng.integers(1, 3)), int(rng.integers(1, 5)), int(rng.integers(1, 5))
    bias = bool(rng.random() < 0.5)
    maskkind = str(rng.choice(["none", "causal", "boolean", "additive"]))
    if maskkind == "causal":
        tk = tq
    FZ.desc = (f"MultiHeadAttention({e}, nheads={heads}, kdim={kdim}, vdim={vdim}, bias={bias})"
               f" q {(n, tq, e)} k/v length {tk} mask {maskkind}")
    theirs = torch.nn.MultiheadAttention(e, heads, bias=bias, kdim=kdim, vdim=vdim,
                                         batch_first=True)
    packed = kdim == e and vdim == e
    q, k, v = (rng.standard_normal((n, t, dm)) for t, dm in ((tq, e), (tk, kdim), (tk, vdim)))
    ws = [rng.standard_normal((e, dm)) / np.sqrt(dm) for dm in (e, kdim, vdim)]
    wo = rng.standard_normal((e, e)) / np.sqrt(e)
    bs = [rng.standard_normal(e) for _ in range(4)] if bias else []
    mask = rng.random((tq, tk)) < 0.7
    mask[np.arange(tq), rng.integers(0, tk, tq)] = True  # no empty row
    additive = rng.standard_normal((tq, tk))

    def mine(q, k, v, wq, wk, wv, wo, *bs):
        layer = fl.MultiHeadAttention(e, nheads=heads, kdim=kdim, vdim=vdim, bias=bias,
                                      dtype=np.float64)
        layer.q_proj.weight, layer.k_proj.weight, layer.v_proj.weight = wq, wk, wv
        layer.out_proj.weight = wo
        layer.out_proj.bias = bs[3] if bias else None
        if bias:
            layer.q_proj.bias, layer.k_proj.bias, layer.v_proj.bias = bs[:3]
        opts = {"none": {}, "causal": dict(mask="causal"), "boolean": dict(mask=mask),
                "additive": dict(bias=additive)}[maskkind]
        return layer(q, k, v, **opts)

    def ref(q, k, v, wq, wk, wv, wo, *bs):
        state = {"out_proj.weight": wo}
        if packed:
            state["in_proj_weight"] = torch.cat([wq, wk, wv])
        else:
            state.update(q_proj_weight=wq, k_proj_weight=wk, v_proj_weight=wv)
        if bias:
            state["in_proj_bias"] = torch.cat(bs[:3])
            state["out_proj.bias"] = bs[3]
        m = {"none": None, "causal": ~T(np.tril(np.ones((tq, tk), bool))),
             "boolean": ~T(mask), "additive": T(additive)}[maskkind]
        return functional_call(theirs, state, (q, k, v), dict(
            attn_mask=m, need_weights=True, average_attn_weights=False))

    compare(mine, ref, [q, k, v] + ws + [wo] + bs, f32=False)
    check_f32(fl.MultiHeadAttention(e, nheads=heads, kdim=kdim, vdim=vdim, bias=bias), q, k, v)


def case_sdpa(rng):
    """dot_product_attention on (N, H, T, d) or with the heads side by side (nheads=),
    against F.scaled_dot_product_attention, with a mask broadcasting over the batch and heads,
    or per sample and head, a bias, causal masking, a scale."""
    n, h, tq, tk = (int(v) for v in rng.integers(1, 4, 4))
    d, dv = int(rng.integers(1, 5)), int(rng.integers(1, 5))
    kind = str(rng.choice(["none", "mask", "mask full", "bias", "causal", "mask + bias"]))
    if kind == "causal":
        tk = tq
    fused = bool(rng.random() < 0.4)
    scale = None if rng.random() < 0.6 else float(rng.uniform(0.1, 2))
    full = (n, h, tq, tk) if "full" in kind else (tq, tk)
    mask = rng.random(full) < 0.7
    mask[..., np.arange(tq), rng.integers(0, tk, tq)] = True  # no empty row
    bias = rng.standard_normal(full)
    FZ.desc = (f"dot_product_attention N {n} heads {h} Tq {tq} Tk {tk} d {d} dv {dv} {kind}"
               f" scale {scale} heads side by side {fused}")
    q, k, v = (rng.standard_normal((n, h, t, e)) for t, e in ((tq, d), (tk, d), (tk, dv)))
    opts = dict(scale=scale)
    if "mask" in kind:
        opts["mask"] = mask
    if "bias" in kind:
        opts["bias"] = bias
    if kind == "causal":
        opts["mask"] = fl.make_causal_mask(tq)

    def mine(q, k, v):
        if not fused:
            return fl.dot_product_attention(q, k, v, **opts)
        join = lambda a: np.reshape(np.moveaxis(a, 1, 2), a.shape[:1] + a.shape[2:3] + (-1,))  # noqa
        out, probs = fl.dot_product_attention(join(q), join(k), join(v), nheads=h, **opts)
        return np.moveaxis(np.reshape(out, (n, tq, h, dv)), 2, 1), probs

    def ref(q, k, v):
        add = torch.zeros(full)
        if "mask" in kind or kind == "causal":
            m = T(opts["mask"])
            add = add.masked_fill(~m, -np.inf)
        if "bias" in kind:
            add = add + T(bias)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=add, scale=scale)
        s = 1 / np.sqrt(d) if scale is None else scale
        probs = torch.softmax(q @ k.transpose(-1, -2) * s + add, -1)
        return out, probs

    compare(mine, ref, [q, k, v])


MODEL_FAMILIES = {
    "conv_layer": case_crosscor_layer, "sdpa": case_sdpa,
    "norm_layer": case_norm_layer, "embedding": case_embedding, "recurrent": case_recurrent,
    "attention": case_attention,
}
_ = Skip  # (raised through compare)
