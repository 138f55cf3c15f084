"""A seeded fuzzer of what describes a model rather than what it computes: ``fl.outputsize``,
``fl.summary``, ``fl.autosize``, the printed listing (lines, parameter counts, totals, the
train/test mode), ``fl.modules``, ``fl.trainable`` and Chain indexing, against references
written here.

Each case builds a random model, layer by layer, from what the current input shape can take
(every layer of ``fluxml.layers``: Dense, Scale, Bilinear, the convolutions in 1 to 3
dimensions with random stride, padding ("same" too), dilation, groups and output padding,
the pools, Upsample, PixelShuffle, Flatten, the normalisations, the dropouts, Embedding,
EmbeddingBag, the recurrent layers, MultiHeadAttention, TransformerEncoderBlock,
WeightNorm, Parallel, SkipConnection, PairwiseFusion, Maxout, plain functions, nested and
named Chains), each with its ``fl._`` form where it has one, and a random batch (1
included); sometimes the input is then made wrong. Then it checks:

- ``fl.outputsize`` is the shape of the forward pass's output (tuples of outputs too), and
  no layer with a shape rule ran; where the forward pass refuses the input, outputsize and
  summary refuse it with the same error;
- the convolutions' and pools' shapes equal the textbook formulas written here;
- ``fl.summary``: every row's output shape is the forward pass's at that place, every row's
  parameter count is the count of the fuzzer's own walk of the layer's fields (a tied array
  once, ``nontrainable`` fields apart), and the totals are the model's;
- the printed listing: each layer's ``# n parameters`` note and the closing totals (arrays,
  parameters, bytes, non-trainable) equal the walk's; after ``fl.trainmode`` /
  ``fl.testmode`` every train/test layer's line shows its mode;
- each leaf layer's line, read as Python (``=>`` as a comma), builds a layer with the same
  line and the same array shapes;
- ``fl.autosize`` of the model written with ``fl._`` builds the same array shapes;
- ``m[:k]`` then ``m[k:]`` computes ``m``; ``m[[...]]`` of every index is ``m``;
- ``fl.modules``, ``fl.trainable``, ``fl.trainables`` and ``fl.destructure``'s length
  equal the walk's.

The suite runs a few seeds (tests/layers/test_fuzz_shapes.py); by hand, many more:

    PYTHONPATH=src python -m tests.layers.fuzz_shapes --cases 3000
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import re
import warnings

import numpy as np

import fluxml as fl

_ = fl._
ACTS = {"tanh": np.tanh, "relu": fl.relu, "sigmoid": fl.sigmoid}


def _cat1(*ys):
    return np.concatenate(ys, axis=1)


def _catlast(*ys):
    return np.concatenate(ys, axis=-1)


def first(t):
    return t[0]


# ---------------------------------------------------------------- the independent references

def walk_arrays(model):
    """``(trainable, other)``: the distinct float arrays reachable through the objects'
    fields, those under a field a class declares ``nontrainable`` apart (an array found both
    ways is trainable)."""
    train, other = {}, {}
    seen = set()

    def visit(x, frozen):
        if isinstance(x, np.ndarray):
            if x.dtype.kind in "fc":
                (other if frozen else train)[id(x)] = x
            return
        if isinstance(x, (list, tuple)):
            for v in x:
                visit(v, frozen)
            return
        if isinstance(x, dict):
            for v in x.values():
                visit(v, frozen)
            return
        if callable(x) and not isinstance(x, fl.Module) or not hasattr(x, "__dict__"):
            return
        if (id(x), frozen) in seen:
            return
        seen.add((id(x), frozen))
        skip = getattr(type(x), "nontrainable", ())
        for k, v in vars(x).items():
            visit(v, frozen or k in skip)

    visit(model, False)
    other = {k: v for k, v in other.items() if k not in train}
    return list(train.values()), list(other.values())


def walk_modules(model):
    found, seen = [], set()

    def visit(x):
        if isinstance(x, (list, tuple)):
            for v in x:
                visit(v)
        elif isinstance(x, dict):
            for v in x.values():
                visit(v)
        elif isinstance(x, fl.Module) and id(x) not in seen:
            seen.add(id(x))
            found.append(x)
            for v in vars(x).values():
                visit(v)

    visit(model)
    return found


def conv_size(n, k, s, p, d):
    return (n + p[0] + p[1] - d * (k - 1) - 1) // s + 1


def same_pads(n, k, s, d):
    total = max((math.ceil(n / s) - 1) * s + d * (k - 1) + 1 - n, 0)
    return (total // 2, total - total // 2)


def tup(v, d):
    return (v,) * d if isinstance(v, int) else tuple(v)


def pads_of(pad, d):
    if isinstance(pad, int):
        return ((pad, pad),) * d
    if all(isinstance(p, int) for p in pad) and len(pad) == d:
        return tuple((p, p) for p in pad)
    if all(isinstance(p, int) for p in pad):
        return tuple((pad[2 * i], pad[2 * i + 1]) for i in range(d))
    return tuple(tuple(p) for p in pad)


def expected_shape(layer, shape):
    """The textbook output shape of a convolution or pool (None for other layers)."""
    if len(shape) < 3:
        return None
    n, c, *sp = shape
    d = len(sp)
    if isinstance(layer, fl.ConvTranspose):
        k = layer.weight.shape[2:]
        s, dl, op = tup(layer.stride, d), tup(layer.dilation, d), tup(layer.outpad, d)
        if layer.pad == "same":
            return (n, layer.weight.shape[1] * layer.groups) + tuple(
                a * b for a, b in zip(sp, s))
        p = pads_of(layer.pad, d)
        return (n, layer.weight.shape[1] * layer.groups) + tuple(
            (a - 1) * st - lo - hi + de * (kk - 1) + 1 + o
            for a, st, (lo, hi), de, kk, o in zip(sp, s, p, dl, k, op))
    if isinstance(layer, fl.Conv):
        k = layer.weight.shape[2:]
        s, dl = tup(layer.stride, d), tup(layer.dilation, d)
        p = [same_pads(a, kk, st, de) for a, kk, st, de in zip(sp, k, s, dl)] \
            if layer.pad == "same" else pads_of(layer.pad, d)
        return (n, layer.weight.shape[0]) + tuple(
            conv_size(a, kk, st, pp, de) for a, kk, st, pp, de in zip(sp, k, s, p, dl))
    if isinstance(layer, (fl.MaxPool, fl.MeanPool)):
        k, s = layer.kernel, layer.stride
        p = [same_pads(a, kk, st, 1) for a, kk, st in zip(sp, k, s)] \
            if layer.pad == "same" else pads_of(layer.pad, d)
        return (n, c) + tuple(conv_size(a, kk, st, pp, 1) for a, kk, st, pp in zip(sp, k, s, p))
    if isinstance(layer, (fl.AdaptiveMaxPool, fl.AdaptiveMeanPool)):
        return (n, c) + layer.out_size
    if isinstance(layer, (fl.GlobalMaxPool, fl.GlobalMeanPool)):
        return (n, c) + (1,) * d
    if isinstance(layer, fl.PixelShuffle):
        return (n, c // layer.r ** d) + tuple(a * layer.r for a in sp)
    if isinstance(layer, fl.Upsample):
        if layer.size is not None:
            return (n, c) + tup(layer.size, d)
        sc = (layer.scale,) * d if isinstance(layer.scale, (int, float)) else layer.scale
        return (n, c) + tuple(int(math.floor(a * f)) for a, f in zip(sp, sc))
    return None


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
    if kind == 2 and len(shape) == 2:
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
    if kind == 6:
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
    if kind == 9:
        act, affine, track = _act(rng), bool(rng.integers(3)), bool(rng.integers(3))
        return fl.BatchNorm(c, act, affine=affine, track_stats=track), \
            fl.BatchNorm(_, act, affine=affine, track_stats=track)
    if kind == 10:
        g = _pick(rng, [g for g in (1, 2, 3) if c % g == 0])
        return fl.GroupNorm(c, g), fl.GroupNorm(_, g)
    if kind == 11:
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


# ---------------------------------------------------------------- the checks

def shapes_of(y):
    if isinstance(y, tuple):
        return tuple(shapes_of(v) for v in y)
    return tuple(np.shape(y))


def _input(shape, dtype, rng):
    if dtype == np.int64:
        return rng.integers(0, 7, shape)
    if dtype == np.bool_:
        return np.eye(shape[-1], dtype=bool)[rng.integers(0, shape[-1], shape[:-1])]
    return rng.normal(size=shape).astype(np.float32)


def outcome(f):
    try:
        return "ok", f()
    except (ValueError, IndexError, TypeError) as err:
        return "error", (type(err), str(err))


@contextlib.contextmanager
def no_layer_runs(model, ran):
    """Every Module class of ``model`` that has a shape rule records its calls in ``ran``."""
    classes = {type(m) for m in walk_modules(model) if hasattr(m, "_output_shape")}
    saved = {}
    for cls in classes:
        saved[cls] = cls.__dict__.get("__call__")
        call = cls.__call__

        def spy(self, *a, __call=call, **k):
            ran.append(type(self).__name__)
            return __call(self, *a, **k)
        cls.__call__ = spy
    try:
        yield
    finally:
        for cls, f in saved.items():
            if f is None:
                del cls.__call__
            else:
                cls.__call__ = f


def count_text(layer):
    train, other = walk_arrays(layer)
    n, m = sum(a.size for a in train), sum(a.size for a in other)
    return f"{n:,}" + (f" + {m:,}" if m else "")


def expected_rows(layer, x, indent, rows):
    """The summary rows the fuzzer expects: ``(indent, output shape, count)``; returns the
    layer's output."""
    if isinstance(layer, fl.Chain):
        rows.append((indent, "", ""))
        y = x
        for child in layer:
            y = expected_rows(child, y, indent + 2, rows)
        rows.append((indent, str(shapes_of(y)), count_text(layer)))
        return y
    y = layer(x)
    branches = None
    if isinstance(layer, fl.Parallel):
        branches = list(layer.layers.values() if isinstance(layer.layers, dict)
                        else layer.layers)
    elif isinstance(layer, fl.Maxout):
        branches = list(layer.layers)
    elif isinstance(layer, fl.SkipConnection):
        branches = [layer.layers]
    elif isinstance(layer, fl.Bidirectional):
        branches = [layer.forward, layer.backward]
    if branches is not None and isinstance(x, np.ndarray):
        rows.append((indent, "", ""))
        for b in branches:
            expected_rows(b, x, indent + 2, rows)
        rows.append((indent, str(shapes_of(y)), count_text(layer)))
        return y
    rows.append((indent, str(shapes_of(y)), count_text(layer)))
    return y


def parse_summary(text):
    lines = text.splitlines()
    head = lines[0]
    w, s = head.index("Output shape"), len(head) - len("Parameters")
    rows = []
    for line in lines[2:-2]:
        name = line[:w]
        indent = len(name) - len(name.lstrip())
        rows.append((indent, line[w:s].strip(), line[s:].strip()))
    return rows, lines[-1]


def check_summary(model, x, shape, dtype):
    rows = []
    expected_rows(model, x, 0, rows)
    buf = io.StringIO()
    fl.summary(model, shape, dtype=dtype, file=buf)
    got, total = parse_summary(buf.getvalue())
    assert got == rows, f"summary rows\n{buf.getvalue()}\nexpected {rows}"
    train, other = walk_arrays(model)
    want = (f"Total: {sum(a.size for a in train):,} trainable parameters, "
            f"{sum(a.size for a in other):,} non-trainable.")
    assert total == want, (total, want)


NOTE = re.compile(r"# ([\d,]+) parameters(?:, plus ([\d,]+) non-trainable)?")


def check_listing(model):
    """The closing totals, and each leaf line's note, against the walk."""
    text = repr(model)
    train, other = walk_arrays(model)
    nbytes = sum(a.nbytes for a in train + other)
    if fl.layers.show.show_children(model) is None:  # one line: its note, no total
        note = NOTE.search(text)
        want = (f"{sum(a.size for a in train):,}", f"{sum(a.size for a in other):,}"
                if other else None)
        assert (note.groups() if note else None) == (want if train or other else None), text
        return
    total = text[text.index("# Total:"):]
    want = f"# Total: {len(train)} {'trainable ' if other else ''}arrays, " \
           f"{sum(a.size for a in train):,} parameters,"
    if other:
        want += f"\n{' ' * 20}# plus {len(other)} non-trainable, " \
                f"{sum(a.size for a in other):,} parameters,"
    want += f" {nbytes:,} bytes."
    assert total == want, f"{text}\nexpected total {want!r}"
    for layer in leaves(model):
        line = fl.layers.show.line_of(layer)
        train, other = walk_arrays(layer)
        found = [m for m in NOTE.finditer(text) if text[:m.start()].rstrip().endswith(
            line + ",")]
        if not train and not other:
            continue
        want = (f"{sum(a.size for a in train):,}", f"{sum(a.size for a in other):,}"
                if other else None)
        assert found and all(m.groups() == want for m in found), \
            f"{line}: {[m.groups() for m in found]} != {want}\n{text}"


def leaves(model):
    """The layers of a listing shown on a line of their own."""
    children = fl.layers.show.show_children(model)
    if children is None:
        return [model] if isinstance(model, fl.Module) else []
    out = []
    for _k, c in children:
        out += leaves(c)
    return out


def check_modes(model):
    def shown(mode):
        text = repr(model)
        for m in leaves(model):
            if "active" in vars(m) and type(m) in (fl.Dropout, fl.BatchNorm, fl.InstanceNorm):
                assert f"active={mode}" in m._line(), (m._line(), mode)
                assert m._line() in text
    try:
        fl.trainmode(model)
        shown(True)
        fl.testmode(model)
        shown(False)
    finally:
        fl.trainmode(model, None)
    for m in walk_modules(model):
        assert "active=" not in m._line() or isinstance(m, fl.MultiHeadAttention)


def check_line_round_trip(model):
    ns = {**{k: getattr(fl, k) for k in fl.__all__ if not k.startswith("_")}, **ACTS,
          "identity": fl.identity}
    for layer in walk_modules(model):
        if fl.layers.show.show_children(layer) is not None or isinstance(
                layer, (fl.Chain, fl.WeightNorm, fl.Recurrence)):
            continue
        line = layer._line()
        if "(...)" in line or "<" in line:
            continue
        built = eval(line.replace(" => ", ", "), ns)  # noqa: S307 - the fuzzer's own text
        assert type(built) is type(layer) and built._line() == line, (line, built._line())
        a = [v.shape for v in fl.tree.flatten(layer)[0] if hasattr(v, "shape")]
        b = [v.shape for v in fl.tree.flatten(built)[0] if hasattr(v, "shape")]
        assert a == b, (line, a, b)


def check_slices(model, x):
    y = model(x)
    n = len(model)
    for k in range(n + 1):
        z = model[k:](model[:k](x))
        assert shapes_of(z) == shapes_of(y)
        if isinstance(y, np.ndarray):
            np.testing.assert_array_equal(z, y)
    whole = model[list(range(n))]
    assert type(whole.layers) is type(model.layers)
    if isinstance(y, np.ndarray):
        np.testing.assert_array_equal(whole(x), y)
    for k in range(-n, n):
        assert model[k] is list(model)[k]


def check_trainable(model):
    got = fl.trainable(model)
    train, _other = walk_arrays(model)
    assert {id(a) for a in got.values()} == {id(a) for a in train}
    once = fl.trainables(model)
    assert sorted(map(id, once)) == sorted(map(id, train))
    assert fl.destructure(model)[0].size == sum(a.size for a in train)
    assert [id(m) for m in fl.modules(model)] == [id(m) for m in walk_modules(model)]


def check_autosize(model, lazy, shape, dtype, rng):
    built = fl.autosize(shape, lazy, dtype=dtype)
    a = [v.shape for v in fl.tree.flatten(model)[0] if hasattr(v, "shape")]
    b = [v.shape for v in fl.tree.flatten(built)[0] if hasattr(v, "shape")]
    assert a == b, (a, b)
    assert not re.search(r"[(, ]_[,)]", repr(built)), repr(built)  # (no size left to infer)
    x = _input(shape, dtype, rng)
    assert shapes_of(built(x)) == shapes_of(model(x))


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


def run_case(seed):
    rng = np.random.default_rng(seed)
    model, lazy, shape, dtype = random_model(rng)
    if rng.integers(5) == 0:
        shape, lazy = wrong_shape(rng, shape), None  # (the lazy model was for the shape)
    x = _input(shape, dtype, rng)
    fwd = outcome(lambda: model(x))
    ran: list = []
    with no_layer_runs(model, ran):
        size = outcome(lambda: fl.outputsize(model, shape, dtype=dtype))
    assert not ran, f"outputsize ran {ran}\n{model}"
    if fwd[0] == "ok":
        assert size == ("ok", shapes_of(fwd[1])), (size, shapes_of(fwd[1]))
    elif fwd[1][0] is not fl.LayerError:  # a function's own error, run on a batch of one
        assert size[0] == "error" and size[1][0] is fwd[1][0], (size, fwd)
        assert size[1][1].split(": ")[:-1] == fwd[1][1].split(": ")[:-1], (size, fwd)
        return
    else:
        assert size == fwd, (size, fwd)
        assert outcome(lambda: fl.summary(model, shape, dtype=dtype, file=io.StringIO())) == fwd
        return
    y = x
    for layer in model if isinstance(model, fl.Chain) else [model]:  # the textbook shapes
        want = expected_shape(layer, y.shape) if isinstance(y, np.ndarray) else None
        y = layer(y)
        if want is not None:
            assert y.shape == want, (layer, want, y.shape)
    check_summary(model, x, shape, dtype)
    check_listing(model)
    check_modes(model)
    check_line_round_trip(model)
    if isinstance(model, fl.Chain):
        check_slices(model, x)
    check_trainable(model)
    if lazy is not None:
        check_autosize(model, lazy, shape, dtype, rng)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=500)
    parser.add_argument("--start", type=int, default=0)
    args = parser.parse_args()
    failures = 0
    for seed in range(args.start, args.start + args.cases):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                run_case(seed)
        except Exception as err:  # noqa: BLE001 - the fuzzer reports every failing seed
            failures += 1
            print(f"seed {seed}: {type(err).__name__}: {str(err)[:300]}")
    print(f"{args.cases - failures} of {args.cases} cases clean")


if __name__ == "__main__":
    main()
