"""Seeded random fuzzing of fluxml's NN primitives, layers, losses and optimisers against
PyTorch (not part of the suite: PyTorch is no dependency of fluxml). Run with

    PYTHONPATH=src /work/.bench-venv/bin/python tests/nnlib/torch_fuzz.py N SEED [families]

N random cases per family (default 100), drawn from SEED (default 0); families default to
all (see FAMILIES); ``--second`` adds Hessian-vector products against torch's double
backward in a third of the cases. Each case compares, in float64, the forward value and the
gradient with respect to every input and parameter for a random cotangent, and checks that
float32 inputs give float32 outputs and gradients close to the float64 ones. Mismatches
are listed with the case's full configuration (and its index: ``--case I`` reruns only case
I); the script exits non-zero if there was any.

Conventions mapped here, each documented in fluxml: ``conv(..., flipped=True)`` is the
true convolution (torch on the flipped kernel); ``(lo, hi)`` padding is ``F.pad`` then an
unpadded torch convolution; ``lppool`` is ``(sum |x|^p)^(1/p)`` (torch's ``lp_pool`` on
``|x|``); MultiHeadAttention's boolean masks say True = may attend (torch's: True = masked);
the losses' and optimisers' mappings are listed in torch_fuzz_train.py.
"""

from __future__ import annotations

import re
import sys
import traceback
import zlib

import numpy as np
import torch
import torch.nn.functional as F

import fluxml as fl
from fluxml import nnlib

torch.set_default_dtype(torch.float64)
T = torch.tensor


class Skip(Exception):
    """The drawn case is outside what torch accepts (not a fluxml question)."""


class Fuzz:
    """Counts, tolerances and the list of mismatches."""

    def __init__(self):
        self.cases = {}
        self.fails = []
        self.skipped = {}
        self.family = ""
        self.desc = ""
        self.index = 0
        self.reasons = {}

    def fail(self, what):
        self.fails.append(f"[{self.family} #{self.index}] {self.desc}: {what}")
        print("MISMATCH", self.fails[-1], flush=True)


FZ = Fuzz()


def _scale(ref):
    ref = np.asarray(ref, dtype=np.float64)
    finite = ref[np.isfinite(ref)]
    return 1.0 + (np.max(np.abs(finite)) if finite.size else 0.0)


def close(name, ours, ref, tol):
    """Record a mismatch of ``ours`` against the reference ``ref`` (relative to its size);
    NaN and infinities must sit in the same places."""
    ours = np.asarray(ours, dtype=np.float64)
    ref = np.asarray(ref.detach().numpy() if isinstance(ref, torch.Tensor) else ref,
                     dtype=np.float64)
    if ours.shape != ref.shape:
        FZ.fail(f"{name}: shape {ours.shape} != torch {ref.shape}")
        return False
    same_nonfinite = np.array_equal(np.isnan(ours), np.isnan(ref)) and np.array_equal(
        np.where(np.isinf(ours), ours, 0), np.where(np.isinf(ref), ref, 0))
    fin = np.isfinite(ref) & np.isfinite(ours)
    err = np.max(np.abs(ours[fin] - ref[fin]), initial=0.0) / _scale(ref)
    if not same_nonfinite or err > tol:
        bad = ~(np.isfinite(ours) & np.isfinite(ref)) & (ours != ref)
        if not bad.any():
            bad = np.abs(np.where(fin, ours - ref, 0)) > tol * _scale(ref)
        if "--case" in sys.argv and bad.any():
            print("differ at", np.argwhere(bad)[:3].tolist(), ours[bad][:3], ref[bad][:3])
        FZ.fail(f"{name}: relative error {err:.2e}"
                + ("" if same_nonfinite else " (non-finite entries differ)"))
        return False
    return True


def _flat(y):
    return list(y) if isinstance(y, (tuple, list)) else [y]


def compare(ours, theirs, arrays, *, tol=1e-8, f32=True, grads=True, f32_tol=2e-3,
            diff=None):
    """``ours(*arrays)`` against ``theirs(*tensors)``: values, and gradients of a random
    cotangent with respect to the float arrays (or those whose index is in ``diff``)."""
    floats = [i for i, a in enumerate(arrays) if isinstance(a, np.ndarray) and a.dtype.kind == "f"
              and (diff is None or i in diff)]
    tensors = [T(a, requires_grad=i in floats) if isinstance(a, np.ndarray) else a
               for i, a in enumerate(arrays)]
    try:
        ref = _flat(theirs(*tensors))
    except (RuntimeError, ValueError, IndexError) as err:
        why = str(err).splitlines()[0]
        try:  # fluxml should refuse as well, or give a finite answer
            out = _flat(ours(*arrays))
        except (ValueError, TypeError) as ours_err:
            raise Skip(f"both refuse: {why}") from ours_err
        if not all(np.all(np.isfinite(y)) and np.size(y) for y in out):
            FZ.fail(f"torch refuses ({why}); fluxml returns non-finite values or nothing")
        raise Skip(f"torch refuses, fluxml accepts: {why}") from None

    def call(*xs, base=arrays):
        full = list(base)
        for i, x in zip(floats, xs):
            full[i] = x
        return ours(*full)

    ys = _flat(call(*[arrays[i] for i in floats]))
    if len(ys) != len(ref):
        FZ.fail(f"{len(ys)} outputs, torch has {len(ref)}")
        return
    if not all([close(f"value {j}", y, r, tol) for j, (y, r) in enumerate(zip(ys, ref))]):
        return
    rng = np.random.default_rng(FZ.index + 7)
    cots = [rng.standard_normal(np.shape(y)) for y in ys]
    if grads and floats:
        use = [j for j, r in enumerate(ref) if r.requires_grad]
        g_ref = torch.autograd.grad([ref[j] for j in use], [tensors[i] for i in floats],
                                    [T(cots[j]) for j in use], allow_unused=True,
                                    retain_graph=SECOND[0])
        y, back = fl.pullback(call, *[arrays[i] for i in floats])
        g = back(tuple(cots) if isinstance(y, (tuple, list)) else cots[0])
        for i, a, b in zip(floats, g, g_ref):
            b = torch.zeros(arrays[i].shape) if b is None else b
            a = np.zeros(arrays[i].shape) if a is None else a
            close(f"gradient wrt argument {i}", a, b, tol * 10)
        if SECOND[0] and rng.random() < 0.3:
            _second_order(call, arrays, floats, tensors, ref, use, cots, rng, tol)
    if f32:
        a32 = [a.astype(np.float32) if i in floats else a for i, a in enumerate(arrays)]
        y32 = _flat(ours(*a32))
        # against float64 on the same (rounded) inputs: 1e308 is inf in float32
        ys = _flat(ours(*[a.astype(np.float64) if i in floats else a
                          for i, a in enumerate(a32)]))
        for j, (y, y64) in enumerate(zip(y32, ys)):
            if y.dtype != np.float32:
                FZ.fail(f"float32 inputs gave output {j} in {y.dtype}")
            else:
                close(f"float32 value {j}", y, y64, f32_tol)


SECOND = [False]  # --second: also Hessian-vector products, in a third of the cases


def _second_order(call, arrays, floats, tensors, ref, use, cots, rng, tol):
    """The gradient of <gradient, v> for a random v (a Hessian-vector product, through each
    side's own second-order rules)."""
    vs = [rng.standard_normal(arrays[i].shape) for i in floats]
    g_ref = torch.autograd.grad([ref[j] for j in use], [tensors[i] for i in floats],
                                [T(cots[j]) for j in use], allow_unused=True,
                                create_graph=True)
    pairs = [(g, v) for g, v in zip(g_ref, vs) if g is not None and g.requires_grad]
    if not pairs:
        return  # piecewise linear: no second derivative
    inner = sum(torch.sum(g * T(v)) for g, v in pairs)
    try:
        h_ref = torch.autograd.grad(inner, [tensors[i] for i in floats], allow_unused=True)
    except RuntimeError:  # no double backward in torch (ctc_loss)
        return

    def inner_ours(*xs):
        y, back = fl.pullback(call, *xs)
        g = back(tuple(cots) if isinstance(y, (tuple, list)) else cots[0])
        return sum(np.sum(a * v) for a, v in zip(g, vs) if a is not None)

    h = fl.gradient(inner_ours, *[arrays[i] for i in floats])
    for i, a, b in zip(floats, h, h_ref):
        b = np.zeros(arrays[i].shape) if b is None else b.detach().numpy(force=True)
        a = np.zeros(arrays[i].shape) if a is None else np.asarray(a)
        # torch's double backward is NaN at some extreme inputs (erf, mish at 1e308) where
        # the limit is finite: compared where torch is finite
        ok = np.isfinite(b)
        close(f"second order wrt argument {i}", a[ok], b[ok], tol * 100)


# --- random drawing helpers -------------------------------------------------------------------

def per_dim(rng, d, lo, hi):
    """An int or a tuple of ``d`` ints in [lo, hi] (tests both spellings)."""
    if rng.random() < 0.5:
        return int(rng.integers(lo, hi + 1))
    return tuple(int(v) for v in rng.integers(lo, hi + 1, d))


def tup(v, d):
    return (v,) * d if isinstance(v, int) else tuple(v)


# --- convolution ------------------------------------------------------------------------------

CONVS = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
CONVTS = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def _flip(w, d):
    return np.ascontiguousarray(w[(slice(None),) * 2 + (slice(None, None, -1),) * d])


def case_conv(rng):
    d = int(rng.integers(1, 4))
    n = int(rng.integers(1, 3))
    if rng.random() < 0.25:  # depthwise, with a channel multiplier
        c = int(rng.integers(1, 5))
        groups, o = c, c * int(rng.integers(1, 3))
    else:
        groups = int(rng.choice([1, 1, 2, 3]))
        c, o = groups * int(rng.integers(1, 3)), groups * int(rng.integers(1, 3))
    kernel = tuple(int(k) for k in rng.integers(1, 4, d))
    stride, dilation = per_dim(rng, d, 1, 3), per_dim(rng, d, 1, 3)
    kind = rng.choice(["int", "per-dim", "asym", "flat", "same"])
    if kind == "same":
        stride = 1  # torch accepts "same" only with unit strides
        pad = "same"
    elif kind == "int":
        pad = int(rng.integers(0, 3))
    elif kind == "per-dim":
        pad = tuple(int(v) for v in rng.integers(0, 3, d))
    else:
        pad = tuple((int(a), int(b)) for a, b in rng.integers(0, 3, (d, 2)))
    pairs = pad
    if kind == "flat":  # (lo_1, hi_1, lo_2, hi_2, ...)
        pad = tuple(p for pair in pad for p in pair)
    span = [dl * (k - 1) + 1 for dl, k in zip(tup(dilation, d), kernel)]
    big = int(rng.random() < 0.15) * (20 if d == 1 else 12 if d == 2 else 5)
    size = tuple(max(1, s + int(rng.integers(-1, 5 + big))) for s in span)
    if big:  # larger arrays: the kernels' other strategies and blocks
        n, c, o = n * 3, c * 4, o * 4
    bias, flipped = bool(rng.random() < 0.5), bool(rng.random() < 0.3)
    act = rng.choice([None, "relu"])
    FZ.desc = (f"conv{d}d x {(n, c) + size} w {(o, c // groups) + kernel} stride {stride} "
               f"pad {pad!r} dilation {dilation} groups {groups} bias {bias} flipped {flipped} "
               f"act {act}")
    x = rng.standard_normal((n, c) + size)
    w = rng.standard_normal((o, c // groups) + kernel)
    b = rng.standard_normal(o)
    opts = dict(stride=stride, dilation=dilation, groups=groups)

    def ours(x, w, b):
        if not bias and act is None and rng_choice == 0:
            return nnlib.conv(x, w, pad=pad, flipped=flipped, **opts)
        return nnlib.conv_bias_act(x, w, b if bias else None, nnlib.relu if act else None,
                                   pad=pad, flipped=flipped, **opts)

    def theirs(x, w, b):
        if flipped:
            w = torch.flip(w, tuple(range(2, 2 + d)))
        padding = pad if kind in ("int", "per-dim", "same") else 0
        if kind in ("asym", "flat"):
            x = F.pad(x, tuple(p for pair in reversed(pairs) for p in pair))
        y = CONVS[d](x, w, b if bias else None, padding=padding, **opts)
        return torch.relu(y) if act else y

    rng_choice = int(rng.integers(0, 2))
    compare(ours, theirs, [x, w, b])


def case_conv_transpose(rng):
    d = int(rng.integers(1, 4))
    n = int(rng.integers(1, 3))
    groups = int(rng.choice([1, 1, 2, 3]))
    c, o = groups * int(rng.integers(1, 3)), groups * int(rng.integers(1, 3))
    kernel = tuple(int(k) for k in rng.integers(1, 4, d))
    stride, dilation = tup(per_dim(rng, d, 1, 3), d), tup(per_dim(rng, d, 1, 3), d)
    pad = per_dim(rng, d, 0, 2)
    # output_padding must be below the stride or the dilation
    outpad = tuple(int(rng.integers(0, max(s, dl))) for s, dl in zip(stride, dilation))
    big = int(rng.random() < 0.15) * (12 if d == 1 else 6 if d == 2 else 2)
    size = tuple(int(v) for v in rng.integers(1, 5 + big, d))
    if big:  # larger arrays: the kernels' other strategies and blocks
        n, c, o = n * 3, c * 4, o * 4
    flipped = bool(rng.random() < 0.3)
    FZ.desc = (f"conv_transpose{d}d x {(n, c) + size} w {(c, o // groups) + kernel} stride "
               f"{stride} pad {pad} dilation {dilation} groups {groups} output_padding "
               f"{outpad} flipped {flipped}")
    x = rng.standard_normal((n, c) + size)
    w = rng.standard_normal((c, o // groups) + kernel)
    opts = dict(stride=stride, dilation=dilation, groups=groups)

    def theirs(x, w):
        if flipped:
            w = torch.flip(w, tuple(range(2, 2 + d)))
        return CONVTS[d](x, w, padding=pad, output_padding=outpad, **opts)

    compare(lambda x, w: nnlib.conv_transpose(x, w, pad=pad, output_padding=outpad,
                                              flipped=flipped, **opts), theirs, [x, w])


# --- pooling ----------------------------------------------------------------------------------

def _torch_fn(prefix, d):
    return getattr(F, f"{prefix}{d}d")


def case_pool(rng):
    d = int(rng.integers(1, 4))
    kind = rng.choice(["max", "mean", "lp"])
    kernel = per_dim(rng, d, 1, 3)
    stride = None if rng.random() < 0.3 else per_dim(rng, d, 1, 3)
    dilation = per_dim(rng, d, 1, 2) if kind == "max" else 1
    k, dl = tup(kernel, d), tup(dilation, d)
    # torch: padding at most half the (effective) kernel
    pad = tuple(int(rng.integers(0, (dli * (ki - 1) + 1) // 2 + 1)) for ki, dli in zip(k, dl))
    pad = pad if rng.random() < 0.5 else pad[0] if len(set(pad)) == 1 else pad
    big = int(rng.random() < 0.15) * (20 if d == 1 else 10 if d == 2 else 4)
    size = tuple(int(dli * (ki - 1) + 1 + rng.integers(0, 5 + big)) for ki, dli in zip(k, dl))
    n, c = int(rng.integers(1, 3)) * (1 + 2 * bool(big)), int(rng.integers(1, 4))
    ties = bool(rng.random() < 0.3)
    x = rng.standard_normal((n, c) + size)
    if ties:
        x = np.round(x)
    p = float(rng.choice([1.0, 2.0, 3.0, 1.5]))
    FZ.desc = (f"{kind}pool{d}d x {x.shape} kernel {kernel} stride {stride} pad {pad} "
               f"dilation {dilation}" + (f" p {p}" if kind == "lp" else "") + (" ties" * ties))
    if kind == "max":
        compare(lambda x: nnlib.maxpool(x, kernel, stride=stride, pad=pad, dilation=dilation),
                lambda x: _torch_fn("max_pool", d)(x, kernel, stride=stride, padding=pad,
                                                   dilation=dilation), [x])
    elif kind == "mean":
        compare(lambda x: nnlib.meanpool(x, kernel, stride=stride, pad=pad),
                lambda x: _torch_fn("avg_pool", d)(x, kernel, stride=stride, padding=pad),
                [x])
    else:
        x = np.abs(x) + 0.2  # |x| > 0: both have a gradient
        if d == 3 and not hasattr(F, "lp_pool3d"):
            raise Skip("no lp_pool3d in this torch")
        if pad == 0 or pad == (0,) * d:
            # torch's lp_pool1d takes only int kernels and strides (a torch quirk)
            tk, ts = (k[0], None if stride is None else tup(stride, 1)[0]) if d == 1 else (
                kernel, stride)
            compare(lambda x: nnlib.lppool(x, p, kernel, stride=stride),
                    lambda x: _torch_fn("lp_pool", d)(x, p, tk, stride=ts), [x])
            return
        # torch's lp_pool has no padding: the zero-padded sum of |x|^p through avg_pool
        compare(lambda x: nnlib.lppool(x, p, kernel, stride=stride, pad=pad),
                lambda x: (_torch_fn("avg_pool", d)(x.abs() ** p, kernel, stride=stride,
                                                    padding=pad) * float(np.prod(k)))
                ** (1 / p), [x])


def case_adaptive(rng):
    d = int(rng.integers(1, 4))
    kind = rng.choice(["max", "mean", "global max", "global mean"])
    size = tuple(int(v) for v in rng.integers(1, 10, d))
    out = tuple(int(rng.integers(1, s + 3)) for s in size)  # above the size: overlapping
    x = rng.standard_normal((int(rng.integers(1, 3)), int(rng.integers(1, 4))) + size)
    if rng.random() < 0.3:
        x = np.round(x)
    FZ.desc = f"{kind} pool{d}d x {x.shape} out {out}"
    if kind == "max":
        compare(lambda x: nnlib.adaptive_maxpool(x, out),
                lambda x: _torch_fn("adaptive_max_pool", d)(x, out), [x])
    elif kind == "mean":
        compare(lambda x: nnlib.adaptive_meanpool(x, out),
                lambda x: _torch_fn("adaptive_avg_pool", d)(x, out), [x])
    elif kind == "global max":
        compare(nnlib.global_maxpool, lambda x: _torch_fn("adaptive_max_pool", d)(x, 1), [x])
    else:
        compare(nnlib.global_meanpool, lambda x: _torch_fn("adaptive_avg_pool", d)(x, 1), [x])


# --- upsampling -------------------------------------------------------------------------------

def case_upsample(rng):
    kind = rng.choice(["nearest", "linear", "bilinear", "trilinear", "shuffle", "unshuffle"])
    n, c = int(rng.integers(1, 3)), int(rng.integers(1, 4))
    if kind in ("shuffle", "unshuffle"):
        r = int(rng.integers(1, 4))
        h, w = (int(v) for v in rng.integers(1, 4, 2))
        if kind == "shuffle":
            x = rng.standard_normal((n, c * r * r, h, w))
            FZ.desc = f"pixel_shuffle x {x.shape} r {r}"
            compare(lambda x: nnlib.pixel_shuffle(x, r), lambda x: F.pixel_shuffle(x, r), [x])
        else:
            x = rng.standard_normal((n, c, h * r, w * r))
            FZ.desc = f"pixel_unshuffle x {x.shape} r {r}"
            compare(lambda x: nnlib.pixel_unshuffle(x, r), lambda x: F.pixel_unshuffle(x, r),
                    [x])
        return
    d = {"nearest": int(rng.integers(1, 4)), "linear": 1, "bilinear": 2, "trilinear": 3}[kind]
    size = tuple(int(v) for v in rng.integers(1, 6, d))
    x = rng.standard_normal((n, c) + size)
    align = bool(rng.random() < 0.3) and kind != "nearest"
    if rng.random() < 0.5:
        out = tuple(int(v) for v in rng.integers(1, 12, d))
        args, targs = dict(size=out if d > 1 else out[0]), dict(size=out)
    else:
        if kind == "nearest":
            scale = per_dim(rng, d, 1, 3)
        else:
            scale = tuple(float(v) for v in rng.choice([0.5, 1.0, 1.5, 2.0, 2.5, 3.0], d))
            scale = scale[0] if d == 1 else scale
        args, targs = dict(scale=scale), dict(scale_factor=scale)
    mode = "nearest" if kind == "nearest" else kind
    FZ.desc = f"upsample {mode} x {x.shape} {args} align_corners {align}"
    fn = getattr(nnlib, f"upsample_{kind}")
    if kind == "nearest":
        compare(lambda x: fn(x, **args), lambda x: F.interpolate(x, mode=mode, **targs), [x])
    else:
        compare(lambda x: fn(x, align_corners=align, **args),
                lambda x: F.interpolate(x, mode=mode, align_corners=align, **targs), [x])


# --- softmax and friends ----------------------------------------------------------------------

def case_softmax(rng):
    nd = int(rng.integers(1, 5))
    shape = tuple(int(v) for v in rng.integers(1, 5, nd))
    x = rng.standard_normal(shape) * float(rng.choice([1, 10, 300]))
    kind = rng.choice(["softmax", "logsoftmax", "logsumexp"])
    if rng.random() < 0.3:  # a tuple of axes
        k = int(rng.integers(1, nd + 1))
        axis = tuple(int(a) for a in rng.choice(nd, k, replace=False))
        axis = tuple(a - nd if rng.random() < 0.5 else a for a in axis)
    else:
        axis = int(rng.integers(-nd, nd))
    keep = bool(rng.random() < 0.5)
    reduced = np.prod([shape[a] for a in (axis if isinstance(axis, tuple) else (axis,))])
    if (kind == "logsumexp" or reduced > 1) and rng.random() < 0.2:
        x[(0,) * nd] = -np.inf  # one -inf entry (a masked one): its gradient is 0
    FZ.desc = f"{kind} x {shape} axis {axis}" + (f" keepdims {keep}" * (kind == "logsumexp"))
    if kind == "logsumexp":
        compare(lambda x: fl.logsumexp(x, axis=axis, keepdims=keep),
                lambda x: torch.logsumexp(x, dim=axis, keepdim=keep), [x], f32_tol=1e-3)
        return
    fn = getattr(fl, kind)
    if kind == "softmax":
        ref = lambda x: torch.exp(x - torch.logsumexp(x, dim=axis, keepdim=True))  # noqa
    else:
        ref = lambda x: x - torch.logsumexp(x, dim=axis, keepdim=True)  # noqa: E731
    compare(lambda x: fn(x, axis=axis), ref, [x], f32_tol=2e-3)


# --- activations ------------------------------------------------------------------------------

ACTS = {
    "relu": (nnlib.relu, F.relu), "sigmoid": (nnlib.sigmoid, torch.sigmoid),
    "hardsigmoid": (nnlib.hardsigmoid, F.hardsigmoid),
    "logsigmoid": (nnlib.logsigmoid, F.logsigmoid), "relu6": (nnlib.relu6, F.relu6),
    "leakyrelu": (lambda x: nnlib.leakyrelu(x, 0.2), lambda t: F.leaky_relu(t, 0.2)),
    "elu": (lambda x: nnlib.elu(x, 0.7), lambda t: F.elu(t, 0.7)),
    "selu": (nnlib.selu, F.selu),
    "celu": (lambda x: nnlib.celu(x, 1.3), lambda t: F.celu(t, 1.3)),
    "gelu_tanh": (nnlib.gelu_tanh, lambda t: F.gelu(t, approximate="tanh")),
    "gelu_erf": (nnlib.gelu_erf, F.gelu), "swish": (nnlib.swish, F.silu),
    "hardswish": (nnlib.hardswish, F.hardswish), "softplus": (nnlib.softplus, F.softplus),
    "softsign": (nnlib.softsign, F.softsign), "mish": (nnlib.mish, F.mish),
    "tanhshrink": (nnlib.tanhshrink, F.tanhshrink),
    "softshrink": (lambda x: nnlib.softshrink(x, 0.3), lambda t: F.softshrink(t, 0.3)),
    "hardshrink": (lambda x: nnlib.hardshrink(x, 0.3), lambda t: F.hardshrink(t, 0.3)),
    "hardtanh": (lambda x: nnlib.hardtanh(x, -0.5, 2.0), lambda t: F.hardtanh(t, -0.5, 2.0)),
    "trelu": (nnlib.trelu, lambda t: F.threshold(t, 1.0, 0.0)),
    "lisht": (nnlib.lisht, lambda t: t * torch.tanh(t)),
    "erf": (nnlib.erf, torch.erf),
    "rrelu (inactive)": (nnlib.rrelu, lambda t: F.rrelu(t, training=False)),
}
# kinks where the one-sided derivatives differ: torch and fluxml may pick either side
KINKS = {"relu": [0.0], "relu6": [0.0, 6.0], "leakyrelu": [0.0], "hardsigmoid": [-3.0, 3.0],
         "hardswish": [-3.0, 3.0], "softshrink": [-0.3, 0.3], "hardshrink": [-0.3, 0.3],
         "hardtanh": [-0.5, 2.0], "trelu": [1.0], "elu": [0.0], "celu": [0.0], "selu": [0.0],
         "rrelu (inactive)": [0.0]}
# torch's float64 backward kernels of these round a constant to float32 (see
# benchmarks/nnlib_conventions.py): compare their gradients at 1e-7
TORCH_RANGE = {"hardswish": 1e300, "gelu_tanh": 1e100, "lisht": 1e300}
LOOSE = {"hardsigmoid": 1e-7, "celu": 1e-7, "hardswish": 1e-7}


def case_activation(rng):
    name = list(ACTS)[int(rng.integers(len(ACTS)))]
    ours, theirs = ACTS[name]
    a = float(rng.uniform(0.05, 3.0))  # a random parameter where the kink stays at 0
    ours, theirs = {
        "leakyrelu": (lambda x: nnlib.leakyrelu(x, a), lambda t: F.leaky_relu(t, a)),
        "elu": (lambda x: nnlib.elu(x, a), lambda t: F.elu(t, a)),
        "celu": (lambda x: nnlib.celu(x, a), lambda t: F.celu(t, a)),
    }.get(name, (ours, theirs))
    label = name + f" (parameter {a:.3f})" * (name in ("leakyrelu", "elu", "celu"))
    scale = float(rng.choice([1.0, 5.0, 40.0, 800.0]))
    x = rng.standard_normal(int(rng.integers(1, 40))) * scale
    if rng.random() < 0.3:  # extremes
        x = np.concatenate([x, [0.0, -0.0, 1e-300, -1e-300, 30.0, -30.0, 700.0, -700.0, 1e4,
                                -1e4, 40.0, -40.0, 1e308, -1e308]])
    # torch overflows where fluxml does not: hardswish's x * relu6(x + 3) / 6 is inf at
    # 1e308, gelu_tanh's backward NaN beyond ~1e102 (x^3), lisht's product rule NaN
    x = x[np.abs(x) < TORCH_RANGE.get(name, np.inf)]
    at_kink = [v for v in KINKS.get(name, []) if abs(v) > 0] + [0.0] * (name in KINKS)
    x = x[~np.isin(x, at_kink)] if x.size > 2 else x + 0.123
    x = x[np.abs(x) > 1e-12] if name in KINKS else x
    FZ.desc = f"{label} on {x.size} values, scale {scale}, max |x| {np.max(np.abs(x)):.3g}"
    compare(ours, theirs, [x], tol=LOOSE.get(name, 1e-9) / 10, f32_tol=1e-5)


# --- normalisation functions ------------------------------------------------------------------

def _running_batchnorm(aff, eps):
    """Test-mode batchnorm in torch operations (F.batch_norm has no gradient with respect
    to the running statistics); its value checked against F.batch_norm."""
    def ref(x, s, b, rm, rv):
        shape = (1, -1) + (1,) * (x.ndim - 2)
        y = (x - rm.reshape(shape)) / torch.sqrt(rv.reshape(shape) + eps)
        s, b = aff(s, b)
        y = y if s is None else y * s.reshape(shape) + b.reshape(shape)
        with torch.no_grad():
            want = F.batch_norm(x, rm, rv, s, b, training=False, eps=eps)
        assert torch.allclose(y, want, rtol=1e-12, atol=1e-12)
        return y
    return ref


def case_norm_fn(rng):
    kind = rng.choice(["batchnorm", "batchnorm running", "layernorm", "groupnorm",
                       "instancenorm"])
    nd = int(rng.integers(2, 5))
    n = int(rng.integers(2, 4))
    c = int(rng.integers(1, 5))
    groups = int(rng.choice([g for g in range(1, c + 1) if c % g == 0]))
    shape = (n, c) + tuple(int(v) for v in rng.integers(1, 4, nd - 2))
    if kind == "instancenorm" and int(np.prod(shape[2:])) < 2:
        shape = shape[:2] + (3,)
    if kind == "batchnorm" and int(np.prod(shape)) // c < 2:
        shape = (n, c, 2)
    x = rng.standard_normal(shape) * 2 + 1
    eps = float(rng.choice([1e-5, 1e-3, 0.1]))
    affine = bool(rng.random() < 0.7)
    s, b = rng.standard_normal(c), rng.standard_normal(c)
    FZ.desc = f"{kind} x {shape} eps {eps} affine {affine}" + (f" groups {groups}"
                                                               * (kind == "groupnorm"))
    aff = (lambda s, b: (s, b)) if affine else (lambda s, b: (None, None))
    if kind == "batchnorm":
        compare(lambda x, s, b: nnlib.batchnorm(x, *aff(s, b), eps=eps),
                lambda x, s, b: F.batch_norm(x, None, None, *aff(s, b), training=True, eps=eps),
                [x, s, b])
    elif kind == "batchnorm running":
        rm, rv = rng.standard_normal(c), rng.random(c) + 0.5
        compare(lambda x, s, b, rm, rv: nnlib.batchnorm(x, *aff(s, b), mean=rm, var=rv,
                                                        eps=eps),
                _running_batchnorm(aff, eps), [x, s, b, rm, rv])
    elif kind == "layernorm":
        k = int(rng.integers(1, nd))
        norm_shape = shape[nd - k:]
        ls, lb = rng.standard_normal(norm_shape), rng.standard_normal(norm_shape)
        axes = tuple(range(-k, 0)) if k > 1 or rng.random() < 0.5 else -1
        FZ.desc += f" axes {axes}"
        compare(lambda x, s, b: nnlib.layernorm(x, *aff(s, b), axes=axes, eps=eps),
                lambda x, s, b: F.layer_norm(x, norm_shape, *aff(s, b), eps=eps), [x, ls, lb])
    elif kind == "groupnorm":
        compare(lambda x, s, b: nnlib.groupnorm(x, groups, *aff(s, b), eps=eps),
                lambda x, s, b: F.group_norm(x, groups, *aff(s, b), eps=eps), [x, s, b])
    else:
        compare(lambda x, s, b: nnlib.instancenorm(x, *aff(s, b), eps=eps),
                lambda x, s, b: F.instance_norm(x, weight=aff(s, b)[0], bias=aff(s, b)[1],
                                                eps=eps), [x, s, b])


FAMILIES = {
    "conv": case_conv, "conv_transpose": case_conv_transpose,
    "pool": case_pool, "adaptive_pool": case_adaptive, "upsample": case_upsample,
    "softmax": case_softmax, "activation": case_activation, "norm_fn": case_norm_fn,
}


def cli(argv, n):
    """``N SEED [families] [--case I]`` (N defaults to ``n``, SEED to 0, the families to
    all): ``(n, seed, families, only)``, for this script and torch_fuzz_jvp.py."""
    args = [a for a in argv if not a.startswith("--")]
    only = int(argv[argv.index("--case") + 1]) if "--case" in argv else None
    if only is not None:
        args.remove(str(only))
    return (int(args[0]) if args else n, int(args[1]) if len(args) > 1 else 0, args[2:],
            only)


def run(n, seed, families, only=None, table=None):
    """``n`` cases of each of ``families`` (all of ``table``'s where empty; ``only``: that
    case alone, with its traceback). ``table`` defaults to this script's families, the
    models' and the training's."""
    if table is None:
        sys.modules.setdefault("torch_fuzz", sys.modules[__name__])  # one FZ as a script
        from torch_fuzz_models import MODEL_FAMILIES
        from torch_fuzz_train import TRAIN_FAMILIES

        table = {**FAMILIES, **MODEL_FAMILIES, **TRAIN_FAMILIES}
    for fam in families or list(table):
        FZ.family = fam
        done = skipped = 0
        for i in range(n) if only is None else [only]:
            rng = np.random.default_rng([seed, zlib.crc32(fam.encode()), i])
            FZ.desc, FZ.index = "", i
            try:
                table[fam](rng)
                done += 1
            except Skip as err:
                skipped += 1
                why = f"{fam}: " + re.sub(r"[-0-9][-0-9 ,x]*", "#", str(err))[:100]
                FZ.reasons[why] = FZ.reasons.get(why, 0) + 1
                if only is not None:
                    print("skipped:", err)
            except Exception as err:  # noqa: BLE001  a raise from fluxml is a finding
                FZ.fail(f"raised {type(err).__name__}: {err}")
                if only is not None:
                    traceback.print_exc()
        FZ.cases[fam] = done
        FZ.skipped[fam] = skipped
        print(f"{fam:16s} {done:6d} cases  {skipped:4d} skipped (torch refused)", flush=True)


if __name__ == "__main__":
    SECOND[0] = "--second" in sys.argv
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    run(*cli(sys.argv[1:], 100))
    print(f"{sum(FZ.cases.values())} cases with torch {torch.__version__}, "
          f"{len(FZ.fails)} mismatches")
    if "--why" in sys.argv:
        for why, count in sorted(FZ.reasons.items(), key=lambda kv: -kv[1]):
            print(f"  skipped {count:4d}  {why}")
    for line in FZ.fails:
        print("  ", line)
    sys.exit(1 if FZ.fails else 0)
