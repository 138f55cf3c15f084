"""The output shapes of the convolutions, pools, Upsample and PixelShuffle against PyTorch's,
by hand (PyTorch is a peer for benchmarks, never a dependency): random geometry, 1 to 3
spatial dimensions, batch 1 included, for ``fl.outputsize`` and the forward pass alike.
Where PyTorch refuses a geometry (an output below one entry), fluxml must refuse it too.

    PYTHONPATH=src /work/.bench-venv/bin/python -m tests.layers.torch_shapes --cases 2000

Asymmetric padding (which PyTorch's layers do not take) is given to PyTorch as an
``F.pad`` in front; ``pad="same"`` for strided convolutions (which PyTorch refuses) as the
padding fluxml documents (``ceil(n / stride)`` outputs, the odd one on the high side).
"""

from __future__ import annotations

import argparse
import math
import warnings

import numpy as np
import torch
import torch.nn.functional as F

import fluxml as fl


def _t(x):
    return torch.from_numpy(np.ascontiguousarray(x))


def _same(n, k, s, d):
    total = max((math.ceil(n / s) - 1) * s + d * (k - 1) + 1 - n, 0)
    return (total // 2, total - total // 2)


def _torch_pad(x, pads):
    flat = []
    for lo, hi in reversed(pads):  # (F.pad takes the last axis first)
        flat += [lo, hi]
    return F.pad(x, flat)


def case(rng):
    """``(fluxml layer, input shape, PyTorch's function of the input)``."""
    d = int(rng.integers(1, 4))
    n, c = int(rng.integers(1, 3)), int(rng.integers(1, 5))
    size = tuple(int(v) for v in rng.integers(1, 12 - 2 * d, d))
    shape = (n, c) + size
    kernel = tuple(int(k) for k in rng.integers(1, 4, d))
    stride = tuple(int(s) for s in rng.integers(1, 4, d))
    dil = tuple(int(s) for s in rng.integers(1, 3, d))
    kind = int(rng.integers(6))
    conv = (F.conv1d, F.conv2d, F.conv3d)[d - 1]
    if kind == 0:
        groups = int(rng.choice([g for g in (1, 2, 3) if c % g == 0]))
        o = groups * int(rng.integers(1, 3))
        r = int(rng.integers(3))
        if r == 0:
            pad = tuple((int(a), int(b)) for a, b in rng.integers(0, 3, (d, 2)))
        elif r == 1:
            pad = int(rng.integers(0, 3))
        else:
            pad = "same"
        m = fl.Conv(kernel, c, o, stride=stride, pad=pad, dilation=dil, groups=groups)
        pads = [_same(v, k, s, dl) for v, k, s, dl in zip(size, kernel, stride, dil)] \
            if pad == "same" else ((pad, pad),) * d if isinstance(pad, int) else pad

        def ref(x):
            return conv(_torch_pad(x, pads), _t(m.weight), stride=stride, dilation=dil,
                        groups=groups)
        return m, shape, ref
    if kind == 1:
        groups = int(rng.choice([g for g in (1, 2) if c % g == 0]))
        o = groups * int(rng.integers(1, 3))
        pad = tuple(int(p) for p in rng.integers(0, 3, d))
        outpad = tuple(int(rng.integers(0, max(s, dl))) for s, dl in zip(stride, dil))
        m = fl.ConvTranspose(kernel, c, o, stride=stride, pad=pad, dilation=dil, groups=groups,
                             outpad=outpad)
        tconv = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[d - 1]

        def ref(x):
            return tconv(x, _t(m.weight), stride=stride, padding=pad, dilation=dil,
                         groups=groups, output_padding=outpad)
        return m, shape, ref
    if kind == 2:
        mean = bool(rng.integers(2))
        pad = tuple(int(rng.integers(0, k // 2 + 1)) for k in kernel)
        m = (fl.MeanPool if mean else fl.MaxPool)(kernel, stride=stride, pad=pad)
        pool = ((F.avg_pool1d, F.avg_pool2d, F.avg_pool3d) if mean else
                (F.max_pool1d, F.max_pool2d, F.max_pool3d))[d - 1]
        if mean and d == 3:  # (avg_pool3d alone refuses an input smaller than the window
            # before padding, which the output-size formula and avg_pool2d take: pad it)
            return m, shape, lambda x: F.avg_pool3d(_torch_pad(x, [(p, p) for p in pad]),
                                                    kernel, stride=stride)
        return m, shape, lambda x: pool(x, kernel, stride=stride, padding=pad)
    if kind == 3:
        out = tuple(int(v) for v in rng.integers(1, 5, d))
        mean = bool(rng.integers(2))
        m = (fl.AdaptiveMeanPool if mean else fl.AdaptiveMaxPool)(out)
        pool = ((F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d) if mean
                else (F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d))
        return m, shape, lambda x: pool[d - 1](x, out)
    if kind == 4:
        r = int(rng.integers(1, 3))
        c = r ** d * int(rng.integers(1, 3))
        shape = (n, c) + size
        m = fl.PixelShuffle(r)
        if d == 2:
            return m, shape, lambda x: F.pixel_shuffle(x, r)
        return m, shape, lambda x: torch.zeros((n, c // r ** d) + tuple(v * r for v in size))
    mode = str(rng.choice(["nearest", "linear"]))
    tmode = mode if mode == "nearest" else ("linear", "bilinear", "trilinear")[d - 1]
    if rng.integers(2):
        out = tuple(int(v) for v in rng.integers(1, 9, d))
        m = fl.Upsample(mode, size=out)
        return m, shape, lambda x: F.interpolate(x, size=out, mode=tmode)
    if mode == "nearest":
        scale = tuple(int(v) for v in rng.integers(1, 4, d))
    else:
        scale = tuple(float(v) for v in rng.choice([0.5, 0.7, 1.5, 2.0, 2.5], d))
    m = fl.Upsample(mode, scale=scale)
    return m, shape, lambda x: F.interpolate(x, scale_factor=scale, mode=tmode)


def outcome(f):
    try:
        return tuple(f())
    except (ValueError, RuntimeError, IndexError):
        return "refused"


def run_case(seed):
    rng = np.random.default_rng(seed)
    m, shape, ref = case(rng)
    x = rng.normal(size=shape).astype(np.float32)
    want = outcome(lambda: ref(_t(x)).shape)
    if want != "refused" and min(want) == 0:
        want = "refused"  # (PyTorch gives an empty output where fluxml refuses it)
    size = outcome(lambda: fl.outputsize(m, shape))
    got = outcome(lambda: m(x).shape)
    assert size == got == want, f"{m!r} on {shape}: outputsize {size}, forward {got}, " \
                                f"PyTorch {want}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=1000)
    args = parser.parse_args()
    failures = 0
    for seed in range(args.cases):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                run_case(seed)
        except AssertionError as err:
            failures += 1
            print(f"seed {seed}: {err}")
    print(f"{args.cases - failures} of {args.cases} cases agree with PyTorch")


if __name__ == "__main__":
    main()
