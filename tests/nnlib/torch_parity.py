"""Conventions checked against PyTorch's torch.nn.functional (not part of the suite: PyTorch
is no dependency of fluxml). Run with

    PYTHONPATH=src /work/.bench-venv/bin/python tests/nnlib/torch_parity.py

Each line compares a forward value and, where it has one, the gradient with respect to every
input for a random cotangent, and prints the largest difference; the script fails on the
first mismatch.
"""

import numpy as np
import torch
import torch.nn.functional as F

import fluxml as fl
from fluxml import nnlib

rng = np.random.default_rng(0)
CHECKED = []


def compare(name, ours, theirs, *arrays, tol=1e-9):
    """``ours(*arrays)`` against ``theirs(*tensors)``, values and gradients (float64)."""
    tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
    y_t = theirs(*tensors)
    y = ours(*arrays)
    assert y.shape == tuple(y_t.shape), f"{name}: shape {y.shape} != {tuple(y_t.shape)}"
    err = np.max(np.abs(y - y_t.detach().numpy()))
    g = rng.standard_normal(y.shape)
    grads_t = torch.autograd.grad(y_t, tensors, torch.tensor(g))
    _, back = fl.pullback(ours, *arrays)
    grads = back(g)
    err_g = max(np.max(np.abs(a - b.numpy())) for a, b in zip(grads, grads_t))
    print(f"{name:60s} value {err:.1e}  gradient {err_g:.1e}")
    assert err < tol and err_g < tol, name
    CHECKED.append(name)


def conv_cases():
    for d, conv_t, convt_t in ((1, F.conv1d, F.conv_transpose1d),
                               (2, F.conv2d, F.conv_transpose2d),
                               (3, F.conv3d, F.conv_transpose3d)):
        size = (7, 6, 5)[:d]
        for stride, pad, dil, groups in ((1, 0, 1, 1), (2, 1, 1, 2), (1, 2, 2, 1), (3, 1, 2, 4),
                                         (2, 0, 1, 4)):
            x = rng.standard_normal((2, 4) + size)
            w = rng.standard_normal((8, 4 // groups) + (3, 2, 3)[:d])
            opts = dict(stride=stride, dilation=dil, groups=groups)
            compare(f"conv{d}d stride {stride} pad {pad} dilation {dil} groups {groups}",
                    lambda x, w: nnlib.conv(x, w, pad=pad, **opts),
                    lambda x, w: conv_t(x, w, padding=pad, **opts), x, w)
            wt = rng.standard_normal((4, 8 // groups) + (3, 2, 3)[:d])
            outpad = stride - 1 if stride > 1 else 0
            compare(f"conv_transpose{d}d stride {stride} pad {pad} dil {dil} groups {groups} "
                    f"outpad {outpad}",
                    lambda x, w: nnlib.conv_transpose(x, w, pad=pad, output_padding=outpad,
                                                      **opts),
                    lambda x, w: convt_t(x, w, padding=pad, output_padding=outpad, **opts),
                    x, wt)
        x = rng.standard_normal((2, 4) + size)
        w = rng.standard_normal((3, 4) + (4, 3, 2)[:d])
        compare(f"conv{d}d pad same dilation 2", lambda x, w: nnlib.conv(x, w, pad="same",
                                                                        dilation=2),
                lambda x, w: conv_t(x, w, padding="same", dilation=2), x, w)
        pads = ((1, 2), (0, 1), (2, 0))[:d]
        flat = tuple(p for pair in reversed(pads) for p in pair)  # F.pad: last axis first
        compare(f"conv{d}d asymmetric pad {pads}", lambda x, w: nnlib.conv(x, w, pad=pads),
                lambda x, w: conv_t(F.pad(x, flat), w), x, w)


def pool_cases():
    maxes = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
    avgs = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}
    adaptive_max = {1: F.adaptive_max_pool1d, 2: F.adaptive_max_pool2d,
                    3: F.adaptive_max_pool3d}
    adaptive_avg = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d,
                    3: F.adaptive_avg_pool3d}
    for d in (1, 2, 3):
        size = (9, 8, 7)[:d]
        x = np.round(rng.standard_normal((2, 3) + size), 0)  # many ties
        for k, s, p, dl in ((2, None, 0, 1), (3, 1, 1, 1), (3, 2, 1, 2), (2, 3, 1, 1)):
            compare(f"max_pool{d}d kernel {k} stride {s} pad {p} dilation {dl} (ties)",
                    lambda x: nnlib.maxpool(x, k, stride=s, pad=p, dilation=dl),
                    lambda x: maxes[d](x, k, stride=s, padding=p, dilation=dl), x)
            if dl == 1:
                compare(f"avg_pool{d}d kernel {k} stride {s} pad {p} (count_include_pad)",
                        lambda x: nnlib.meanpool(x, k, stride=s, pad=p),
                        lambda x: avgs[d](x, k, stride=s, padding=p), x)
        out = (4, 3, 5)[:d]
        compare(f"adaptive_max_pool{d}d to {out} (ties)",
                lambda x: nnlib.adaptive_maxpool(x, out), lambda x: adaptive_max[d](x, out), x)
        compare(f"adaptive_avg_pool{d}d to {out}", lambda x: nnlib.adaptive_meanpool(x, out),
                lambda x: adaptive_avg[d](x, out), x)
    x = np.abs(rng.standard_normal((2, 3, 8, 6))) + 0.1
    compare("lp_pool2d p=3 kernel 2", lambda x: nnlib.lppool(x, 3, 2),
            lambda x: F.lp_pool2d(x, 3, 2), x)


def upsample_cases():
    x = rng.standard_normal((2, 3, 4, 5))
    compare("interpolate nearest scale 2", lambda x: nnlib.upsample_nearest(x, 2),
            lambda x: F.interpolate(x, scale_factor=2, mode="nearest"), x)
    compare("interpolate nearest size (7, 8)",
            lambda x: nnlib.upsample_nearest(x, size=(7, 8)),
            lambda x: F.interpolate(x, size=(7, 8), mode="nearest"), x)
    x3 = rng.standard_normal((1, 2, 3, 4, 2))
    compare("interpolate nearest 3-d scale (1, 2, 3)",
            lambda x: nnlib.upsample_nearest(x, (1, 2, 3)),
            lambda x: F.interpolate(x, scale_factor=(1, 2, 3), mode="nearest"), x3)
    for align in (False, True):
        compare(f"interpolate bilinear scale 2 align_corners={align}",
                lambda x: nnlib.upsample_bilinear(x, 2, align_corners=align),
                lambda x: F.interpolate(x, scale_factor=2, mode="bilinear",
                                        align_corners=align), x)
        compare(f"interpolate bilinear size (7, 9) align_corners={align}",
                lambda x: nnlib.upsample_bilinear(x, size=(7, 9), align_corners=align),
                lambda x: F.interpolate(x, size=(7, 9), mode="bilinear",
                                        align_corners=align), x)
        compare(f"interpolate trilinear scale 2 align_corners={align}",
                lambda x: nnlib.upsample_trilinear(x, 2, align_corners=align),
                lambda x: F.interpolate(x, scale_factor=2, mode="trilinear",
                                        align_corners=align), x3)
    compare("interpolate bilinear scale 1.5 (non-integer)",
            lambda x: nnlib.upsample_bilinear(x, 1.5),
            lambda x: F.interpolate(x, scale_factor=1.5, mode="bilinear"), x)
    compare("interpolate linear 1-d size 11", lambda x: nnlib.upsample_linear(x, size=11),
            lambda x: F.interpolate(x, size=11, mode="linear"), x[:, :, 0])
    x = rng.standard_normal((2, 8, 3, 4))
    compare("pixel_shuffle 2", lambda x: nnlib.pixel_shuffle(x, 2),
            lambda x: F.pixel_shuffle(x, 2), x)
    compare("pixel_unshuffle 2", lambda x: nnlib.pixel_unshuffle(x, 2),
            lambda x: F.pixel_unshuffle(x, 2), rng.standard_normal((2, 3, 4, 6)))
    a, b = rng.standard_normal((4, 3, 5)), rng.standard_normal((4, 5, 2))
    compare("batched_mul = torch.bmm", nnlib.batched_mul, torch.bmm, a, b)


def grid_sample_cases():
    """Positions on the borders, inside and beyond them (where the derivative of a clamped
    position is 0, PyTorch's convention), in 2-d and 3-d, for both padding modes."""
    for d in (2, 3):
        for trial in range(40):
            sizes = tuple(int(n) for n in rng.integers(1, 4, d))
            x = rng.standard_normal((2, 2) + sizes)
            grid = rng.choice([-1.0, 1.0, -1.5, 1.5, 0.0, 0.3, -0.7, 2.0],
                              size=(2,) + tuple(int(n) for n in rng.integers(1, 3, d)) + (d,))
            for mode in ("zeros", "border"):
                compare(f"grid_sample {d}-d {mode} x {sizes} case {trial}",
                        lambda x, g: nnlib.grid_sample(x, g, padding_mode=mode),
                        lambda x, g: F.grid_sample(x, g, padding_mode=mode,
                                                   align_corners=True), x, grid)


if __name__ == "__main__":
    torch.set_default_dtype(torch.float64)
    conv_cases()
    pool_cases()
    upsample_cases()
    grid_sample_cases()
    print(f"{len(CHECKED)} comparisons with torch {torch.__version__}: all agree")
