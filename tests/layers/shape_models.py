"""Random models for tests/layers/fuzz_shapes.py: a Chain built layer by layer from what
the current input shape can take (every layer of ``fluxml.layers``, with random geometry),
each layer with its ``fl._`` form where it has one; random inputs, and wrong shapes.

>>> import numpy as np
>>> model, lazy, shape, dtype = random_model(np.random.default_rng(0))
>>> isinstance(shape, tuple)
True
"""

from __future__ import annotations

import math

import numpy as np

import fluxml as fl

_ = fl._

def _cat1(*ys):
    return np.concatenate(ys, axis=1)


def _catlast(*ys):
    return np.concatenate(ys, axis=-1)


def first(t):
    return t[0]


def tup(v, d):
    return (v,) * d if isinstance(v, int) else tuple(v)


# ---------------------------------------------------------------- random layers

def _pick(rng, xs):
    return xs[int(rng.integers(len(xs)))]


def _act(rng):
    return _pick(rng, [fl.identity, fl.identity, np.tanh, fl.relu])


def features_layer(rng, shape):
    """``(layer, lazy form or None)`` for input ``(..., F)``."""
    f = shape[-1]
    o = int(rng.integers(1, 6))
    kind = int(rng.integers(16))
    act = _act(rng)
    if kind == 12:  # one layer twice, or one weight in two layers: counted once
        d = fl.Dense(f, f, act)
        if rng.integers(2):
            return fl.Chain(d, d), None
        return fl.Chain(d, fl.Dense(d.weight, bias=False)), None
    if kind == 13 and len(shape) == 2:  # a cell: (output, state), last
        cls = _pick(rng, [fl.RNNCell, fl.LSTMCell, fl.GRUCell, fl.GRUv3Cell])
        return cls(f, o), cls(_, o)
    if kind == 14:  # a tuple of outputs, last
        k = int(rng.integers(1, 4))
        return fl.PairwiseFusion(np.add, *[fl.Dense(f, f) for _i in range(k)]), \
            fl.PairwiseFusion(np.add, *[fl.Dense(_, f) for _i in range(k)])
    if kind == 15:
        return fl.AlphaDropout(float(rng.choice([0.0, 0.5]))), None
    if kind == 0:
        bias = bool(rng.integers(4))
        return fl.Dense(f, o, act, bias=bias), fl.Dense(_, o, act, bias=bias)
    if kind == 1:
        # (fl._ is the channels, dimension 1, for Scale: the features only of (N, F))
        return fl.Scale(f, act), fl.Scale(_, act) if len(shape) == 2 else None
    if kind == 2 and len(shape) == 2 and shape[0] > 1:  # (one value per feature: refused)
        return fl.BatchNorm(f, act), fl.BatchNorm(_, act)
    if kind == 3:
        affine = bool(rng.integers(3))
        return fl.LayerNorm(f, affine=affine), fl.LayerNorm(_, affine=affine)
    if kind == 4:
        return fl.Dropout(float(rng.choice([0.0, 0.3, rng.random()]))), None
    if kind == 5 and len(shape) == 2:
        return fl.Bilinear(f, o, act), fl.Bilinear(_, o, act)
    if kind == 6:
        k = int(rng.integers(1, 4))
        outs = [o] * k
        if rng.integers(3) == 0:  # alternatives of different widths broadcast
            outs[int(rng.integers(k))] = 1
        layers = [fl.Dense(f, w) for w in outs]
        return fl.Maxout(*layers), fl.Maxout(*[fl.Dense(_, w) for w in outs])
    if kind == 7:
        k = int(rng.integers(1, 4))
        conn = _pick(rng, [np.add, _catlast, None] if k > 1 else [_catlast, None])
        return fl.Parallel(conn, *[fl.Dense(f, o) for _i in range(k)]), \
            fl.Parallel(conn, *[fl.Dense(_, o) for _i in range(k)])
    if kind == 8:
        conn = _pick(rng, [np.add, _catlast])
        return fl.SkipConnection(fl.Dense(f, f, act), conn), \
            fl.SkipConnection(fl.Dense(_, f, act), conn)
    if kind == 9:
        return fl.WeightNorm(fl.Dense(f, o)), None
    if kind == 10:
        return _pick(rng, [np.tanh, fl.relu, fl.Flatten()]), None
    inner = fl.Dense(f, o, act)
    if rng.integers(2):
        return fl.Chain(inner, np.tanh), fl.Chain(fl.Dense(_, o, act), np.tanh)
    return fl.Chain(a=inner, b=fl.relu), fl.Chain(a=fl.Dense(_, o, act), b=fl.relu)


def sequence_layer(rng, shape):
    n, t, f = shape
    h = int(rng.integers(1, 5))
    kind = int(rng.integers(10))
    if kind <= 1:
        cls = _pick(rng, [fl.RNN, fl.LSTM, fl.GRU, fl.GRUv3])
        if rng.integers(3) == 0:  # (outputs, final state)
            return cls(f, h, return_state=True), cls(_, h, return_state=True)
        return cls(f, h), cls(_, h)
    if kind == 2:
        cls = _pick(rng, [fl.RNN, fl.LSTM, fl.GRU])
        merge = _pick(rng, [None, np.add])
        return fl.Bidirectional(cls(f, h), merge=merge), fl.Bidirectional(cls(_, h), merge=merge)
    if kind == 3:
        cls = _pick(rng, [fl.RNNCell, fl.GRUCell, fl.LSTMCell])
        state = bool(rng.integers(2))
        return fl.Recurrence(cls(f, h), return_state=state), \
            fl.Recurrence(cls(_, h), return_state=state)
    if kind == 4:
        heads = _pick(rng, [d for d in (1, 2, 3, 4) if f % d == 0])
        out = int(rng.integers(1, 5)) * heads if rng.integers(2) else None
        mha = fl.MultiHeadAttention(f, nheads=heads, qk_dim=out, v_dim=out,
                                    bias=bool(rng.integers(2)))
        lazy = fl.MultiHeadAttention(_, nheads=heads, qk_dim=out, v_dim=out,
                                     bias=mha.q_proj.bias is not None)
        return fl.Chain(mha, first), fl.Chain(lazy, first)
    if kind == 5:
        heads = _pick(rng, [d for d in (1, 2, 4) if f % d == 0])
        return fl.TransformerEncoderBlock(f, heads, h), fl.TransformerEncoderBlock(_, heads, h)
    if kind == 6 and n * f > 1:
        return fl.BatchNorm(t), fl.BatchNorm(_)
    if kind == 7:
        return (lambda x: np.swapaxes(x, 1, 2)), None
    if kind == 8:
        return fl.Flatten(), None
    return features_layer(rng, shape)


def conv_layer(rng, shape):
    n, c, *sp = shape
    d = len(sp)
    kernel = tuple(int(k) for k in rng.integers(1, 4, d))
    o = int(rng.integers(1, 5))
    kind = int(rng.integers(4))
    opts = {}
    if rng.integers(2):
        opts["stride"] = int(rng.integers(1, 4)) if rng.integers(2) else \
            tuple(int(s) for s in rng.integers(1, 4, d))
    if rng.integers(2):
        opts["dilation"] = int(rng.integers(1, 3)) if rng.integers(2) else \
            tuple(int(s) for s in rng.integers(1, 3, d))
    r = int(rng.integers(5))
    if r == 1:
        opts["pad"] = int(rng.integers(0, 3))
    elif r == 2:
        opts["pad"] = tuple(int(p) for p in rng.integers(0, 3, d))
    elif r == 3:
        opts["pad"] = tuple(int(p) for p in rng.integers(0, 3, 2 * d))
    elif r == 4:
        opts["pad"] = "same"
    if not rng.integers(4):
        opts["bias"] = False
    act = _act(rng)
    if kind == 0 or kind == 1:
        groups = _pick(rng, [g for g in (1, 2, 3) if c % g == 0])
        o *= groups
        cls = fl.Conv if kind == 0 else fl.CrossCor
        return cls(kernel, c, o, act, groups=groups, **opts), \
            cls(kernel, _, o, act, groups=groups, **opts)
    if kind == 2:
        return fl.DepthwiseConv(kernel, c, c * int(rng.integers(1, 3)), act, **opts), None
    groups = _pick(rng, [g for g in (1, 2) if c % g == 0])
    o *= groups
    stride = tup(opts.get("stride", 1), d)
    dil = tup(opts.get("dilation", 1), d)
    if rng.integers(2):  # output padding below the stride or the dilation, as PyTorch asks
        opts["outpad"] = tuple(int(rng.integers(0, max(s, dl))) for s, dl in zip(stride, dil))
    return fl.ConvTranspose(kernel, c, o, act, groups=groups, **opts), \
        fl.ConvTranspose(kernel, _, o, act, groups=groups, **opts)


def spatial_layer(rng, shape):
    n, c, *sp = shape
    d = len(sp)
    kind = int(rng.integers(16))
    if kind <= 3:
        return conv_layer(rng, shape)
    if kind == 4:
        cls = _pick(rng, [fl.MaxPool, fl.MeanPool])
        kernel = tuple(int(k) for k in rng.integers(1, 4, d))
        opts = {}
        if rng.integers(2):
            opts["stride"] = int(rng.integers(1, 3))
        r = int(rng.integers(3))
        if r == 1:
            opts["pad"] = tuple(int(min(p, k // 2)) for p, k in zip(rng.integers(0, 2, d), kernel))
        elif r == 2:
            opts["pad"] = "same"
        return cls(kernel, **opts), None
    if kind == 5:
        cls = _pick(rng, [fl.AdaptiveMaxPool, fl.AdaptiveMeanPool])
        return cls(tuple(int(k) for k in rng.integers(1, 4, d))), None
    if kind == 6:
        return _pick(rng, [fl.GlobalMaxPool, fl.GlobalMeanPool])(), None
    if kind == 7:
        mode = _pick(rng, ["nearest", "linear"] + (["bilinear"] if d == 2 else [])
                     + (["trilinear"] if d == 3 else []))
        if rng.integers(2):
            return fl.Upsample(mode, size=tuple(int(k) for k in rng.integers(1, 6, d))), None
        if mode == "nearest":
            return fl.Upsample(mode, scale=int(rng.integers(1, 3))), None
        return fl.Upsample(mode, scale=tuple(float(s) for s in rng.choice([0.5, 1.5, 2.0], d)),
                           align_corners=bool(rng.integers(2))), None
    if kind == 8:
        r = _pick(rng, [r for r in (1, 2) if c % r ** d == 0])
        return fl.PixelShuffle(r), None
    if kind == 9 and n * math.prod(sp) > 1:  # (normalising one value is refused)
        act, affine, track = _act(rng), bool(rng.integers(3)), bool(rng.integers(3))
        return fl.BatchNorm(c, act, affine=affine, track_stats=track), \
            fl.BatchNorm(_, act, affine=affine, track_stats=track)
    if kind == 10:
        g = _pick(rng, [g for g in (1, 2, 3) if c % g == 0])
        return fl.GroupNorm(c, g), fl.GroupNorm(_, g)
    if kind == 11 and math.prod(sp) > 1:
        affine, track = bool(rng.integers(2)), bool(rng.integers(2))
        return fl.InstanceNorm(c, affine=affine, track_stats=track), \
            fl.InstanceNorm(_, affine=affine, track_stats=track)
    if kind == 12:
        return fl.Dropout(0.2, dims=_pick(rng, [None, 1, (0, 1)])), None
    if kind == 13:
        k = (3,) * d
        conn = _pick(rng, [np.add, _cat1])
        return fl.SkipConnection(fl.Conv(k, c, c, pad="same"), conn), \
            fl.SkipConnection(fl.Conv(k, _, c, pad="same"), conn)
    if kind == 14:
        o = int(rng.integers(1, 4))
        return fl.Parallel(np.add, fl.Conv((3,) * d, c, o, pad=1), fl.Conv((1,) * d, c, o)), \
            fl.Parallel(np.add, fl.Conv((3,) * d, _, o, pad=1), fl.Conv((1,) * d, _, o))
    if kind == 15 and rng.integers(2):
        return fl.WeightNorm(fl.Conv((2,) * d, c, 2)), None
    return fl.Scale(c, *(1,) * d), fl.Scale(_, *(1,) * d)


def random_input(rng):
    """``(shape, dtype, first layers)`` to start a model."""
    n = int(rng.integers(1, 4))
    kind = int(rng.integers(6))
    if kind == 5:  # one-hot rows for an Embedding, (N, L, vocab)
        return (n, int(rng.integers(1, 5)), 7), np.bool_
    if kind == 0:
        return (n, int(rng.integers(1, 7))), np.float32
    if kind == 1:
        return (n, int(rng.integers(1, 5)), int(rng.integers(1, 7))), np.float32
    if kind == 2:
        return (n, int(rng.integers(1, 5))), np.int64
    d = int(rng.integers(1, 4))
    size = tuple(int(s) for s in rng.integers(1, 10 - 2 * d, d))
    return (n, int(rng.integers(1, 5))) + size, np.float32


def next_layer(rng, shape, dtype):
    if dtype == np.bool_:
        return fl.Embedding(7, int(rng.integers(1, 5))), None
    if dtype == np.int64:
        if rng.integers(2):
            return fl.EmbeddingBag(7, int(rng.integers(1, 5)),
                                   _pick(rng, ["mean", "sum", "max"])), None
        return fl.Embedding(7, int(rng.integers(1, 5))), None
    if len(shape) == 2:
        if rng.integers(6) == 0 and shape[1] >= 2:  # to channels (N, C, L)
            c = _pick(rng, [k for k in range(1, shape[1] + 1) if shape[1] % k == 0])
            return (lambda x, c=c: np.reshape(x, (x.shape[0], c, -1))), None
        return features_layer(rng, shape)
    if len(shape) == 3 and rng.integers(2):
        return sequence_layer(rng, shape)
    if 3 <= len(shape) <= 5:
        return spatial_layer(rng, shape)
    return features_layer(rng, shape)


def random_model(rng):
    """``(model, lazy model or None, input shape, dtype)``: a Chain built from what the
    shapes allow, possibly ending in a layer that refuses its input."""
    shape, dtype = random_input(rng)
    x = _input(shape, dtype, rng)
    layers, lazies = [], []
    for _i in range(int(rng.integers(1, 6))):
        try:
            layer, lazy = next_layer(rng, x.shape, x.dtype)
        except ValueError:  # (a geometry the constructor refuses)
            continue
        try:
            y = layer(x)
        except (ValueError, IndexError, TypeError):
            if rng.integers(4) == 0:
                layers.append(layer)
                lazies.append(lazy)
                break
            continue
        if not isinstance(y, np.ndarray) or y.size == 0 or y.size > 4000:
            if isinstance(y, tuple):  # (a tuple of outputs: last)
                layers.append(layer)
                lazies.append(lazy)
                break
            continue
        layers.append(layer)
        lazies.append(lazy)
        x = y
    if rng.integers(4) == 0 and len(layers) >= 2:  # a nested or named Chain
        k = int(rng.integers(1, len(layers)))
        layers = [fl.Chain(*layers[:k])] + layers[k:]
        lazies = [fl.Chain(*[z if z is not None else a for z, a in zip(lazies[:k], layers[0])])] \
            + lazies[k:]
    if len(layers) == 1 and rng.integers(2):  # one layer alone, no Chain
        return layers[0], lazies[0], shape, dtype
    if rng.integers(4) == 0:
        names = [f"l{i}" for i in range(len(layers))]
        model = fl.Chain(**dict(zip(names, layers)))
        lazy = fl.Chain(**{k: z if z is not None else a
                           for k, z, a in zip(names, lazies, layers)})
    else:
        model = fl.Chain(*layers)
        lazy = fl.Chain(*[z if z is not None else a for z, a in zip(lazies, layers)])
    return model, lazy, shape, dtype


def _input(shape, dtype, rng):
    if dtype == np.int64:
        return rng.integers(0, 7, shape)
    if dtype == np.bool_:
        return np.eye(shape[-1], dtype=bool)[rng.integers(0, shape[-1], shape[:-1])]
    return rng.normal(size=shape).astype(np.float32)


def wrong_shape(rng, shape):
    shape = list(shape)
    r = int(rng.integers(4))
    if r == 0 and len(shape) > 1:
        del shape[int(rng.integers(1, len(shape)))]
    elif r == 1:
        shape.insert(int(rng.integers(1, len(shape) + 1)), int(rng.integers(1, 4)))
    else:
        i = int(rng.integers(len(shape)))
        shape[i] = max(1, shape[i] + int(rng.choice([-1, 1, 2])))
    return tuple(shape)
