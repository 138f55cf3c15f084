"""Normalisation kernels: batch, layer, group and instance normalisation as functions.

All four are one primitive: normalise ``x`` over ``axes`` to mean 0 and variance 1, then
apply an optional ``scale`` and ``bias`` (broadcast against ``x``). It returns the output and
the batch mean and (biased) variance, which a BatchNorm layer folds into its running
statistics. Its vjp is the fused formula (``rstd`` = 1/sqrt(var + eps), ``n`` the count)

    dx = rstd * (g' - mean(g') - xhat * mean(g' * xhat)),   g' = g * scale

plus the terms of the mean and variance outputs when they are used; the jvp is its forward
twin. Both are written with NumPy calls, so they are differentiated again at higher order. A
batch of one is fine: the variance is 0, ``eps`` keeps ``rstd`` finite, the gradient is 0.

>>> import numpy as np, fluxml as fl
>>> fl.layernorm(np.array([[1.0, 3.0]]), eps=0.0)
array([[-1.,  1.]])
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.array_utils import normalize_axis_tuple

from fluxml._checks import is_int, real_in
from fluxml.ad.core import first_order, raw, untraced
from fluxml.ad.define import primitive
from fluxml.ad.fitting import broadcast
from fluxml.nnlib import windows as win
from fluxml.nnlib.recurrent import _used

__all__ = ["batchnorm", "groupnorm", "instancenorm", "layernorm", "normalise"]


def _small(a, b, x):
    """Is ``a * b`` (two broadcasting factors) much smaller than ``x``? Then it is folded
    into one factor before touching ``x`` (batch norm: per channel)."""
    return math.prod(np.broadcast_shapes(np.shape(a), np.shape(b))) * 4 <= x.size


def _blocks(x, axes, *factors):
    """``(P, K, R)`` when ``x`` is a C-contiguous NumPy array whose kept axes are one
    contiguous block (batch norm's channels, layer norm's leading axes) and every factor
    (scale, bias) is constant over the reduced axes; else None. Then ``x.reshape(P, K, R)``
    is reduced over its axes 0 and 2: contiguous row sums and ``vecdot`` (one pass over
    memory, no temporaries) instead of strided reductions over ``x``-sized products."""
    if type(x) is not np.ndarray or not x.flags.c_contiguous or not x.size:
        return None
    kept = [a for a in range(x.ndim) if a not in axes]
    if kept and kept != list(range(kept[0], kept[-1] + 1)):
        return None
    lo, hi = (kept[0], kept[-1] + 1) if kept else (0, 0)
    for f in factors:
        if f is not None and (type(f) is not np.ndarray or f.ndim > x.ndim or any(
                n != 1 and x.ndim - f.ndim + i not in kept for i, n in enumerate(f.shape))):
            return None
    shape = x.shape
    return math.prod(shape[:lo]), math.prod(shape[lo:hi]), math.prod(shape[hi:])


def _kept(x, axes):
    """The shape of a statistic: ``x``'s with 1 on the reduced axes."""
    return tuple(1 if a in axes else m for a, m in enumerate(x.shape))


def _per_block(f, keep):
    """A factor constant over the reduced axes as a ``(1, K, 1)`` array."""
    return np.broadcast_to(f, keep).reshape(1, -1, 1)


def _accumulator(dtype):
    """The dtype sums of ``dtype`` entries accumulate in: float32 for float16, as NumPy's
    ``mean`` (the other path) does. Summed in float16, a group of equal entries had a mean a
    rounding off their value, and a normalised output of 0.3 where it is 0."""
    return np.dtype(np.float32).type if dtype == np.float16 else dtype.type


def _same_dtype(x, *others):
    return np.result_type(x, *(o for o in others if o is not None)) == x.dtype


def _impl_blocks(x, scale, bias, axes, eps, blocks):
    """``_impl`` on a ``(P, K, R)`` view: five passes over ``x`` (row sums, centre,
    ``vecdot``, scale, shift), one ``x``-sized allocation."""
    p, k, r = blocks
    n = p * r
    x3 = x.reshape(blocks)
    keep = _kept(x, axes)
    acc = _accumulator(x.dtype)
    mean = (np.sum(np.sum(x3, axis=2, dtype=acc), axis=0) / acc(n)).astype(x.dtype)
    y = np.subtract(x3, mean[None, :, None])
    var = (np.sum(np.vecdot(y, y, dtype=acc), axis=0) / acc(n)).astype(x.dtype)
    factor = 1 / np.sqrt(var + eps)
    factor = factor.reshape(1, k, 1).astype(y.dtype, copy=False)
    if scale is not None:
        factor = factor * _per_block(scale, keep)
    y *= factor
    if bias is not None:
        y += _per_block(bias, keep)
    return y.reshape(x.shape), mean.reshape(keep), var.reshape(keep)


def _impl(x, scale, bias, *, axes, eps):
    blocks = _blocks(x, axes, scale, bias)
    if blocks is not None and _same_dtype(x, scale, bias):
        return _impl_blocks(x, scale, bias, axes, eps, blocks)
    mean = np.mean(x, axis=axes, keepdims=True)
    y = x - mean
    var = np.mean(np.square(y), axis=axes, keepdims=True)
    factor = 1 / np.sqrt(var + eps)
    if scale is not None and _small(factor, scale, x):
        factor = factor * scale
        scale = None
    y *= factor
    if scale is not None:
        y *= scale
    if bias is not None:
        y += bias
    return y, mean, var


def _sum_to(a, shape):
    """``a`` summed over the axes where ``shape`` (of the same rank, or fewer) is 1."""
    lead = a.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape)
                                      if n == 1 and a.shape[lead + i] != 1)
    return a.sum(axis=axes).reshape(shape) if axes else a  # (the method: jax arrays too)


def _vjp_raw(gy, x, scale, mean, var, axes, eps, positions, bias_shape):
    """First order on plain arrays: the same formula with in-place updates (about half the
    passes over ``x``-sized arrays)."""
    blocks = _blocks(x, axes, scale)
    if (blocks is not None and type(gy) is np.ndarray and gy.flags.c_contiguous
            and gy.shape == x.shape and _same_dtype(x, gy, scale, mean, var)):
        return _vjp_blocks(gy, x, scale, mean, var, axes, eps, positions, blocks, bias_shape)
    rstd = 1 / np.sqrt(var + eps)
    xhat = x - mean
    xhat *= rstd
    out = {}
    if 1 in positions:
        out[1] = _sum_to(gy * xhat, np.shape(scale))
    if 2 in positions:  # summed here as _vjp_blocks does: one shape whichever path ran
        out[2] = _sum_to(gy, bias_shape)
    if 0 in positions:
        gx = gy * scale if scale is not None else gy.copy()
        m1 = np.mean(gx, axis=axes, keepdims=True)
        prod = gx * xhat
        m2 = np.mean(prod, axis=axes, keepdims=True)
        xhat *= m2
        gx -= xhat
        gx -= m1
        gx *= rstd
        out[0] = gx
    return [out[p] for p in positions]


def _vjp_blocks(gy, x, scale, mean, var, axes, eps, positions, blocks, bias_shape):
    """``_vjp_raw`` on ``(P, K, R)`` views, with ``dx = a * gy + b * (x - mean) + c`` per
    block (``a = scale * rstd``, ``b = -a * rstd * mean(g * xhat)``, ``c = -a * mean(g)``):
    seven passes over ``x``-sized arrays, one allocation (the result), and the scale and bias
    gradients already summed."""
    p, k, r = blocks
    n = x.dtype.type(p * r)
    gy3, x3 = gy.reshape(blocks), x.reshape(blocks)
    rstd = (1 / np.sqrt(var + eps)).reshape(1, k, 1)
    acc = _accumulator(x.dtype)
    s1 = np.sum(np.sum(gy3, axis=2, dtype=acc), axis=0).astype(x.dtype).reshape(1, k, 1)
    # x - mean never leaves: a reused buffer, not an x-sized allocation a call (the page
    # faults of fresh memory cost more than this pass)
    xc = np.subtract(x3, mean.reshape(1, k, 1), out=win.scratch(blocks, x.dtype, np, "norm"))
    s2 = np.sum(np.vecdot(gy3, xc, dtype=acc), axis=0).reshape(1, k, 1)  # sum g * xhat
    s2 = (s2 * rstd).astype(x.dtype, copy=False)
    out = {}
    keep = _kept(x, axes)
    if 1 in positions:
        out[1] = _sum_to(s2.reshape(keep), scale.shape)
    if 2 in positions:
        out[2] = _sum_to(s1.reshape(keep), bias_shape)
    if 0 in positions:
        a = rstd if scale is None else rstd * _per_block(scale, keep)
        dx = np.multiply(gy3, a)
        # rstd * (s2 / n) first: a * rstd is 1 / var, which overflows float16 (65504) for a
        # variance below 1.5e-5 where the product with s2 / n is moderate (NaN gradients)
        xc *= -a * (rstd * (s2 / n))
        dx += xc
        dx -= a * (s1 / n)
        out[0] = dx.reshape(x.shape)
    return [out[p] for p in positions]


def _vjp_kernel(*args):
    return tuple(_vjp_raw(*args))


def _vjp(g, ans, args, params, positions):
    gy, gmean, gvar = g
    x, scale, bias = args
    _, mean, var = ans
    axes = params["axes"]
    if (not _used(gmean) and not _used(gvar)
            and first_order(gy, x, mean, var, scale)):
        return list(untraced(_vjp_kernel, (gy, x, scale, mean, var, axes, params["eps"],
                                           positions, np.shape(raw(bias)))))
    n = math.prod(raw(x).shape[a] for a in axes)
    rstd = 1 / np.sqrt(var + params["eps"])
    xc = x - mean
    xhat = xc * rstd
    out = []
    for pos in positions:
        if pos == 0:
            gx = gy if scale is None else gy * scale
            dx = rstd * (gx - np.mean(gx, axis=axes, keepdims=True)
                         - xhat * np.mean(gx * xhat, axis=axes, keepdims=True))
            if _used(gmean):
                dx = dx + gmean * (1 / n)
            if _used(gvar):
                dx = dx + xc * (gvar * (2 / n))
            out.append(dx)
        elif pos == 1:
            out.append(gy * xhat)  # summed over scale's broadcast axes by the engine
        else:
            out.append(gy)
    return out


def _jvp(tangents, ans, args, params):
    x, scale, bias = args
    y, mean, var = ans
    axes = params["axes"]
    rstd = 1 / np.sqrt(var + params["eps"])
    xhat = (x - mean) * rstd
    ty = tmean = tvar = None
    for pos, t in tangents:
        if pos == 0:
            tmean = np.mean(t, axis=axes, keepdims=True)
            m2 = np.mean(xhat * t, axis=axes, keepdims=True)
            tvar = (2 * m2) / rstd
            dy = rstd * (t - tmean - xhat * m2)
            if scale is not None:
                dy = dy * scale
        elif pos == 1:
            dy = xhat * t
        else:
            dy = t
        ty = dy if ty is None else ty + dy
    if ty.shape != y.shape:
        ty = broadcast(ty, y.shape)
    return ty, tmean, tvar


# the rules read the mean and variance, never the output: the output is the caller's to
# write into, and ``pullback`` hands it out without a copy
NORMALISE = primitive("normalise", _impl, multiple_results=True, keeps_output=(1, 2))
NORMALISE.vjp_all = _vjp
NORMALISE.jvp_all = _jvp


def _normalised(x, scale, bias, axes, eps):
    """``NORMALISE``, computed in float32 for float16 input, the output cast back (as
    PyTorch's half-precision normalisations compute). In float16 the centred ``x - mean`` of
    a group of close entries keeps only the few bits of their difference (mean rounded to
    1e-3 of a group 0.02 wide): outputs 5% off, and derivatives, whose terms cancel to 1% of
    their size and are multiplied by 1/std, 40% off (and opposite entries' tangents
    unequal). The mean and variance stay float32: a variance above 65504 (entries of a few
    hundred) is inf in float16, and BatchNorm's running variance became inf, silently."""
    if raw(x).dtype != np.float16:
        return NORMALISE(x, scale, bias, axes=axes, eps=eps)
    up = [None if a is None else a.astype(np.float32) if raw(a).dtype == np.float16 else a
          for a in (x, scale, bias)]
    y, mean, var = NORMALISE(*up, axes=axes, eps=eps)
    return y.astype(np.float16), mean, var


def _check_affine(name, x, arr, what, shape):
    if arr is None:
        return None
    s = np.shape(raw(arr))
    if s != shape:
        raise ValueError(f"{name}: {what} must have shape {shape} for input of shape "
                         f"{np.shape(raw(x))}; got {s}")
    return arr


def _float(name, x):
    value = raw(x)
    dtype = getattr(value, "dtype", None)
    if dtype is None:
        return np.asarray(x, dtype=np.float64)
    if dtype.kind != "f":
        raise TypeError(f"{name}: expected a float array; got dtype {dtype}")
    return x


def normalise(x, axes, scale=None, bias=None, *, eps: float = 1e-5,
              return_stats: bool = False):
    """``(x - mean) / sqrt(var + eps) * scale + bias``, with the mean and (biased) variance
    over ``axes``; ``scale`` and ``bias`` broadcast against ``x``. With ``return_stats``,
    returns ``(y, mean, var)`` with the statistics' reduced axes kept as size 1 (float32
    for float16 input, which is normalised in float32).

    >>> import numpy as np, fluxml as fl
    >>> fl.nnlib.normalise(np.array([[0.0, 2.0], [4.0, 6.0]]), axes=0, eps=0.0)
    array([[-1., -1.],
           [ 1.,  1.]])
    """
    x = _float("normalise", x)
    axes = normalize_axis_tuple(axes, np.ndim(raw(x)))
    if not eps >= 0:
        raise ValueError(f"normalise: eps must be >= 0; got {eps}")
    for what, arr in (("scale", scale), ("bias", bias)):
        if arr is not None:
            try:
                shape = np.broadcast_shapes(np.shape(raw(arr)), np.shape(raw(x)))
            except ValueError:
                shape = None
            if shape != np.shape(raw(x)):
                raise ValueError(f"normalise: {what} of shape {np.shape(raw(arr))} does not "
                                 f"broadcast against the input of shape {np.shape(raw(x))}")
    y, mean, var = _normalised(x, scale, bias, axes, float(eps))
    return (y, mean, var) if return_stats else y


def _channels(name, x, least):
    shape = np.shape(raw(x))
    if len(shape) < least:
        raise ValueError(f"{name}: expected an input (N, C, ...) with at least {least} "
                         f"dimensions; got shape {shape}")
    return shape, (1, shape[1]) + (1,) * (len(shape) - 2)


def _per_channel(name, x, least, scale, bias):
    """Checks a per-channel layer's input and its ``(C,)`` scale and bias, and returns
    ``x, shape, bshape, scale, bias`` with scale and bias reshaped to broadcast as
    ``bshape = (1, C, 1, ...)``."""
    x = _float(name, x)
    shape, bshape = _channels(name, x, least)
    c = (shape[1],)
    scale = _check_affine(name, x, scale, "scale", c)
    bias = _check_affine(name, x, bias, "bias", c)
    scale = None if scale is None else np.reshape(scale, bshape)
    bias = None if bias is None else np.reshape(bias, bshape)
    return x, shape, bshape, scale, bias


def batchnorm(x, scale=None, bias=None, *, mean=None, var=None, eps: float = 1e-5,
              return_stats: bool = False):
    """Batch normalisation of ``x`` of shape ``(N, C, ...)`` per channel, over the batch and
    spatial axes; ``scale`` and ``bias`` of shape ``(C,)``. Given ``mean`` and ``var``
    (running statistics, shape ``(C,)``) it uses them instead of the batch's (test mode).
    With ``return_stats`` (batch statistics only), returns ``(y, mean, var)`` of shape
    ``(C,)``, the variance biased.

    >>> import numpy as np, fluxml as fl
    >>> fl.batchnorm(np.array([[1.0], [3.0]]), eps=0.0)
    array([[-1.],
           [ 1.]])
    """
    real_in("batchnorm", "eps (added to the variance)", eps, 0)
    x, shape, bshape, scale, bias = _per_channel("batchnorm", x, 2, scale, bias)
    c = (shape[1],)
    if (mean is None) != (var is None):
        raise ValueError("batchnorm: give both mean and var (running statistics), or neither")
    if mean is not None:
        if return_stats:
            raise ValueError("batchnorm: return_stats needs batch statistics; got mean/var")
        _check_affine("batchnorm", x, mean, "mean", c)
        _check_affine("batchnorm", x, var, "var", c)
        factor = 1 / np.sqrt(np.reshape(var, bshape) + eps)
        if scale is not None:
            factor = factor * scale
        y = (x - np.reshape(mean, bshape)) * factor
        y = y if bias is None else y + bias
        # float16 input with float32 statistics (fl.f16 keeps them so): float16 out
        return y.astype(np.float16) if raw(x).dtype == np.float16 != raw(y).dtype else y
    axes = (0,) + tuple(range(2, len(shape)))
    y, m, v = _normalised(x, scale, bias, axes, float(eps))
    if return_stats:
        return y, np.reshape(m, c), np.reshape(v, c)
    return y


def layernorm(x, scale=None, bias=None, *, axes: int | tuple[int, ...] = -1,
              eps: float = 1e-5):
    """Layer normalisation over ``axes`` (the last by default, PyTorch's
    ``normalized_shape``); ``scale`` and ``bias`` broadcast against ``x`` (shape
    ``x.shape[-1:]`` for the default).

    >>> import numpy as np, fluxml as fl
    >>> fl.layernorm(np.array([[0.0, 2.0]]), np.array([1.0, 2.0]), eps=0.0)
    array([[-1.,  2.]])
    """
    return normalise(x, axes, scale, bias, eps=eps)


def groupnorm(x, groups: int, scale=None, bias=None, *, eps: float = 1e-5):
    """Group normalisation of ``x`` of shape ``(N, C, ...)``: the ``C`` channels split into
    ``groups`` groups, each normalised over its channels and the spatial axes; ``scale`` and
    ``bias`` of shape ``(C,)``.

    >>> import numpy as np, fluxml as fl
    >>> fl.groupnorm(np.array([[1.0, 3.0, 5.0, 9.0]]), 2, eps=0.0)
    array([[-1.,  1., -1.,  1.]])
    """
    x = _float("groupnorm", x)
    shape, bshape = _channels("groupnorm", x, 2)
    if not is_int(groups) or groups < 1 or shape[1] % groups:
        raise ValueError(f"groupnorm: the number of channels ({shape[1]}) must be a multiple "
                         f"of groups; got groups={groups!r}")
    c = (shape[1],)
    scale = _check_affine("groupnorm", x, scale, "scale", c)
    bias = _check_affine("groupnorm", x, bias, "bias", c)
    grouped = (shape[0], groups, shape[1] // groups) + shape[2:]
    gshape = (1, groups, shape[1] // groups) + (1,) * (len(shape) - 2)
    scale = None if scale is None else np.reshape(scale, gshape)
    bias = None if bias is None else np.reshape(bias, gshape)
    y, _, _ = _normalised(np.reshape(x, grouped), scale, bias,
                          tuple(range(2, len(grouped))), float(eps))
    return np.reshape(y, shape)


def instancenorm(x, scale=None, bias=None, *, eps: float = 1e-5):
    """Instance normalisation of ``x`` of shape ``(N, C, *spatial)``: each sample's channel
    over the spatial axes; ``scale`` and ``bias`` of shape ``(C,)``.

    >>> import numpy as np, fluxml as fl
    >>> fl.instancenorm(np.array([[[1.0, 3.0]]]), eps=0.0)
    array([[[-1.,  1.]]])
    """
    x, shape, _, scale, bias = _per_channel("instancenorm", x, 3, scale, bias)
    y, _, _ = _normalised(x, scale, bias, tuple(range(2, len(shape))), float(eps))
    return y
