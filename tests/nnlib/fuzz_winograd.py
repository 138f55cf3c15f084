"""Fuzzer for Winograd's F(2x2, 3x3) (nnlib/winograd.py) through the public API, run by hand:

    PYTHONPATH=src .venv/bin/python tests/nnlib/fuzz_winograd.py [cases] [seed]

Each case draws a 3x3 convolution with unit strides (batch, channels, odd and even sizes down
to one output, asymmetric padding up to 4, larger than the kernel's reach), a dtype (float32
or float64), a memory layout for each array (contiguous, a view of a larger array, negative
strides, Fortran order, read-only, big-endian) and a block size (the default, one sample, or
in between); most cases force Winograd's algorithm on small shapes (``MIN_CHANNELS`` and
``MIN_WORK`` 0), some take it by the rule on 64 or more channels. It runs the forward
(``nnlib.conv``), the fused bias and ReLU (``conv_bias_act``), both gradients
(``fl.gradient``), an ``fl.Conv`` layer with a ReLU and its gradients, ``conv_transpose``,
forward mode (``fl.jvp``), a second-order product and, in some cases, the compiled gradient
(``fl.compile``, numpy back end, called twice), and compares each with a float64 reference
written here (one kernel entry at a time) and with the same call on the im2col path: the
error may be at most ``SLACK`` times im2col's plus a few roundings of the dtype. A share of
the cases puts an inf or a NaN into an input: the results must then be those of the im2col
path exactly (the same NaNs, the same signed infinities).

The small seeded version in the suite is ``test_winograd.test_fuzz_small``.
"""

from __future__ import annotations

import contextlib
import sys
import warnings

import numpy as np

import fluxml as fl
from fluxml.nnlib import conv, conv_bias_act, conv_transpose, convkernels, winograd

# Winograd's error may be this many times im2col's (plus a few roundings of the dtype)
SLACK = 8.0


def reference(x, w, g, pads):
    """Forward, input gradient and weight gradient of the 3x3 convolution with unit strides
    in float64, one kernel entry at a time (independent of the kernels)."""
    x, w, g = (np.asarray(a, dtype=np.float64) for a in (x, w, g))
    xpad = np.pad(x, ((0, 0), (0, 0)) + tuple(pads))
    ho, wo = xpad.shape[2] - 2, xpad.shape[3] - 2
    y = np.zeros((x.shape[0], w.shape[0], ho, wo))
    dxpad = np.zeros_like(xpad)
    dw = np.zeros_like(w)
    with np.errstate(all="ignore"):
        for k in range(3):
            for m in range(3):
                xs = xpad[:, :, k:k + ho, m:m + wo]
                y += np.einsum("nchw,oc->nohw", xs, w[:, :, k, m])
                dxpad[:, :, k:k + ho, m:m + wo] += np.einsum("nohw,oc->nchw", g, w[:, :, k, m])
                dw[:, :, k, m] = np.einsum("nohw,nchw->oc", g, xs)
    (top, _), (left, _) = pads
    dx = dxpad[:, :, top:top + x.shape[2], left:left + x.shape[3]]
    return y, dx, dw


def laid_out(rng, a):
    """``a`` in a random memory layout, the same values: (array, name)."""
    kind = rng.integers(7)
    if kind == 1:  # a view of a larger array
        big = np.zeros(tuple(2 * n + 1 for n in a.shape), a.dtype)
        view = big[tuple(slice(1, None, 2) for _ in a.shape)]
        view[...] = a
        return view, "view"
    if kind == 2:  # negative strides
        return np.flip(np.flip(a).copy()), "flipped"
    if kind == 3:
        return np.asfortranarray(a), "fortran"
    if kind == 4:
        b = a.copy()
        b.flags.writeable = False
        return b, "read-only"
    if kind == 5:
        return a.astype(a.dtype.newbyteorder(">")), "big-endian"
    if kind == 6:  # a transposed copy read through a transpose (strides of another order)
        return np.ascontiguousarray(a.transpose(3, 2, 1, 0)).transpose(3, 2, 1, 0), "transposed"
    return a, "contiguous"


@contextlib.contextmanager
def patched(**values):
    """``winograd``'s module constants set to ``values`` for the block."""
    saved = {k: getattr(winograd, k) for k in values}
    for k, v in values.items():
        setattr(winograd, k, v)
    try:
        yield
    finally:
        for k, v in saved.items():
            setattr(winograd, k, v)


def _draw(rng, forced):
    """A case's geometry: (n, c, o, h, w, pads)."""
    pads = tuple((int(rng.integers(5)), int(rng.integers(5))) for _ in "hw")
    if forced:
        n, c, o = int(rng.integers(1, 6)), int(rng.integers(1, 9)), int(rng.integers(1, 9))
        sizes = [int(rng.integers(max(1, 3 - lo - hi), 14)) for lo, hi in pads]
    else:  # by the rule (one BLAS thread): 64 or more channels, outputs wide enough
        n = int(rng.integers(1, 4))
        c, o = (int(rng.choice([64, 72, 96, 128])) for _ in "co")
        sizes = [int(rng.integers(max(1, 3 - lo - hi), 14)) for lo, hi in pads]
        sizes[1] = max(sizes[1], -(-winograd.MIN_WORK // min(c, o)) + 2)
    return n, c, o, sizes[0], sizes[1], pads


def _calls(x, w, b, g, s, tx, tw, pads, compiled):
    """Every public call of the case: name -> result (NumPy arrays)."""
    def loss(x, w):
        return np.sum(conv(x, w, pad=pads) * g)

    def second(x):
        dw = fl.gradient(lambda w: np.sum(conv(x, w, pad=pads) * g), w)[0]
        return np.sum(dw * s)

    dx, dw = fl.gradient(loss, x, w)
    layer = fl.Conv(np.asarray(w, w.dtype.newbyteorder("=")), b, fl.relu, pad=pads)
    with warnings.catch_warnings():  # (a big-endian input is converted, with a warning)
        warnings.filterwarnings("ignore", "Conv.*converting the input")
        y = layer(x)
        dlayer, dlx = fl.gradient(lambda m, x: np.sum(m(x) * g), layer, x)
    out = {
        "Conv relu": y,
        "Conv relu gradient x": dlx,
        "Conv relu gradient w": dlayer.weight,
        "conv": conv(x, w, pad=pads),
        "conv_bias_act relu": conv_bias_act(x, w, b, fl.relu, pad=pads),
        "gradient x": dx,
        "gradient w": dw,
        "conv_transpose": conv_transpose(g, w, pad=pads),
        "jvp": fl.jvp(lambda x, w: conv(x, w, pad=pads), (x, w), (tx, tw))[1],
        "second order": fl.gradient(second, x)[0],
    }
    if compiled:
        step = fl.compile(lambda x, w: fl.gradient(loss, x, w))
        for _ in range(2):  # the second call runs the compiled program
            cx, cw = step(x, w)
        out["compiled gradient x"], out["compiled gradient w"] = cx, cw
    return out


def _wanted(x, w, b, g, s, tx, tw, pads, mask):
    """The reference's results (``mask``: where the layer's ReLU passed the gradient)."""
    y, dx, dw = reference(x, w, g, pads)
    _, mdx, mdw = reference(x, w, g * mask, pads)
    return {
        "Conv relu": np.maximum(y + np.asarray(b, np.float64)[:, None, None], 0),
        "Conv relu gradient x": mdx,
        "Conv relu gradient w": mdw,
        "conv": y,
        "conv_bias_act relu": np.maximum(y + np.asarray(b, np.float64)[:, None, None], 0),
        "gradient x": dx,
        "gradient w": dw,
        "conv_transpose": dx,
        "jvp": reference(tx, w, g, pads)[0] + reference(x, tw, g, pads)[0],
        # <filter(x, g), s> = <x, data(g, s)>: its gradient in x is data(g, s)
        "second order": reference(x, s, g, pads)[1],
        "compiled gradient x": dx,
        "compiled gradient w": dw,
    }


def run_case(seed, forced=None, compiled=None, nonfinite=None):
    """One case from ``seed``: a list of failures (strings), empty where all agree."""
    rng = np.random.default_rng(seed)
    forced = rng.random() < 0.85 if forced is None else forced
    compiled = rng.random() < 0.1 if compiled is None else compiled
    nonfinite = rng.random() < 0.15 if nonfinite is None else nonfinite
    n, c, o, h, wd, pads = _draw(rng, forced)
    dtype = np.dtype(rng.choice([np.float32, np.float64]))
    x = rng.standard_normal((n, c, h, wd)).astype(dtype)
    w = rng.standard_normal((o, c, 3, 3)).astype(dtype)
    b = rng.standard_normal(o).astype(dtype)
    ho, wo = h + sum(pads[0]) - 2, wd + sum(pads[1]) - 2
    g = rng.standard_normal((n, o, ho, wo)).astype(dtype)
    s = rng.standard_normal(w.shape).astype(dtype)
    tx, tw = rng.standard_normal(x.shape).astype(dtype), rng.standard_normal(w.shape).astype(dtype)
    if nonfinite:
        target = [x, w, g][rng.integers(3)]
        for _ in range(rng.integers(1, 3)):
            target[tuple(rng.integers(k) for k in target.shape)] = rng.choice(
                [np.inf, -np.inf, np.nan])
    arrays = [laid_out(rng, a) for a in (x, w, g)]
    layouts = [name for _, name in arrays]
    args = [a for a, _ in arrays]
    block = int(rng.choice([winograd.BLOCK_BYTES, 1, int(rng.integers(1, 1 << 16))]))
    threshold = dict(MIN_CHANNELS=0, MIN_WORK=0) if forced else {}
    label = (f"seed {seed}: n={n} c={c} o={o} {h}x{wd} pads={pads} {dtype.name} "
             f"layouts={layouts} block={block} forced={forced} compiled={compiled} "
             f"nonfinite={nonfinite}")
    limit = winograd.threads.limit
    winograd.threads.limit = lambda: 1  # (the rule's channels for one BLAS thread)
    try:
        with patched(BLOCK_BYTES=block, **threshold), np.errstate(all="ignore"):
            if not forced:
                geo = convkernels.Geometry((n, c, h, wd), w.shape, (1, 1), pads, (1, 1), 1)
                assert winograd.suits(geo, dtype, np), label
            got = _calls(args[0], args[1], b, args[2], s, tx, tw, pads, compiled)
        with patched(MIN_CHANNELS=10 ** 9), np.errstate(all="ignore"):
            plain = _calls(x, w, b, g, s, tx, tw, pads, compiled)
    finally:
        winograd.threads.limit = limit
    with np.errstate(all="ignore"):
        want = _wanted(x, w, b, g, s, tx, tw, pads, got["Conv relu"] > 0)
    return [f"{label}: {problem}" for name in got
            for problem in _compare(name, got[name], plain[name], want[name], dtype, nonfinite)]


def _compare(name, got, plain, want, dtype, nonfinite):
    """The failures of one result against im2col's (``plain``) and the reference."""
    # (a gradient comes in its argument's byte order, as every gradient does)
    if got.dtype.newbyteorder("=") != dtype or got.shape != want.shape:
        return [f"{name}: {got.dtype}{got.shape}, expected {dtype}{want.shape}"]
    if nonfinite or not np.all(np.isfinite(plain)):
        same = np.array_equal(got, plain, equal_nan=True) or (
            np.array_equal(np.isnan(got), np.isnan(plain))
            and np.array_equal(np.isposinf(got), np.isposinf(plain))
            and np.array_equal(np.isneginf(got), np.isneginf(plain)))
        return [] if same else [
            f"{name}: non-finite entries differ from im2col's: "
            f"{int(np.sum(np.isfinite(plain) & ~np.isfinite(got)))} not finite that are, "
            f"{int(np.sum(np.isnan(got) & ~np.isnan(plain)))} NaN that are not"]
    scale = max(np.abs(want).max(initial=0), 1.0)
    err, err_plain = (np.abs(a - want).max(initial=0) / scale for a in (got, plain))
    allowed = SLACK * err_plain + 16 * np.finfo(dtype).eps
    return [] if err <= allowed else [
        f"{name}: error {err:.3g} (of the largest entry), im2col's {err_plain:.3g}"]


def main(cases=2000, seed=0):
    failures = []
    for k in range(cases):
        found = run_case(seed + k)
        failures += found
        for line in found:
            print(line, flush=True)
        if (k + 1) % 200 == 0:
            print(f"{k + 1} cases, {len(failures)} failures", flush=True)
    print(f"{cases} cases from seed {seed}: {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(*map(int, sys.argv[1:3])))
