"""Upsampling of ``(N, C, *spatial)`` arrays: nearest neighbour (any number of spatial
dimensions), linear interpolation (``linear``/``bilinear``/``trilinear``, PyTorch's
``align_corners=False`` convention by default), pixel shuffle and its inverse.

All are written with differentiable NumPy operations (broadcasting, ``take``, matrix products,
reshapes and transposes), so they have no rules of their own: the engine differentiates them
to any order. Linear interpolation is separable: one small interpolation matrix per spatial
axis, ``(out, in)`` with two non-zero entries a row, applied by a matrix product.
"""

from __future__ import annotations

import numpy as np

from fluxml._checks import flag
from fluxml._dtypes import working_float
from fluxml.ad.core import raw
from fluxml.nnlib import windows as win


def upsample_nearest(x, scale=None, *, size=None):
    """Nearest-neighbour upsampling by integer factors ``scale`` (an int or one per spatial
    dimension), or to an output ``size``: output entry ``j`` reads input ``floor(j * n / m)``
    (PyTorch's ``mode="nearest"``).

    >>> import numpy as np, fluxml as fl
    >>> fl.nnlib.upsample_nearest(np.array([[[1.0, 2.0]]]), 2)
    array([[[1., 1., 2., 2.]]])
    """
    fn = "upsample_nearest"
    d = _check_resize(fn, x, scale, size)
    shape = tuple(x.shape)
    if scale is not None:
        scale = win.spatial(scale, d, "scale (integer factors)", fn)
        wide = shape[:2] + tuple(n for m in shape[2:] for n in (m, 1))
        big = shape[:2] + tuple(n for m, s in zip(shape[2:], scale) for n in (m, s))
        out = shape[:2] + tuple(m * s for m, s in zip(shape[2:], scale))
        # (factors 1, or repeats of a spatial size of 1: a read-only view of x, copied)
        return win.fresh(np.reshape(np.broadcast_to(np.reshape(x, wide), big), out), x)
    size = win.spatial(size, d, "size", fn)
    xp = win.array_module(raw(x))
    for i, (n, m) in enumerate(zip(shape[2:], size)):
        x = np.take(x, xp.asarray(np.arange(m) * n // m), axis=2 + i)
    return x


def upsample_linear(x, scale=None, *, size=None, align_corners: bool = False):
    """Linear interpolation along every spatial axis (bilinear for ``(N, C, H, W)``,
    trilinear for ``(N, C, D, H, W)``), by factors ``scale`` (numbers, an output axis of
    ``floor(n * scale)`` entries) or to an output ``size``. With ``align_corners=False``
    (PyTorch's default) output ``j`` samples input coordinate ``(j + 1/2) / scale - 1/2``
    (``scale = m / n`` when a size is given), clamped at the edges; with ``True`` the corner
    samples of input and output coincide (Flux's default). Float and complex input keeps its
    dtype; integer input gives float64 (NNlib's keeps the integer type).

    >>> import numpy as np, fluxml as fl
    >>> fl.nnlib.upsample_linear(np.array([[[0.0, 4.0]]]), 2)
    array([[[0., 1., 3., 4.]]])
    """
    fn = "upsample_linear"
    given = x
    d = _check_resize(fn, x, scale, size)
    align_corners = flag(fn, "align_corners", align_corners)
    shape = tuple(x.shape)
    if scale is not None:
        scale = tuple(scale) if isinstance(scale, (tuple, list)) else (scale,) * d
        if len(scale) != d or not all(isinstance(s, (int, float, np.integer, np.floating))
                                      and not isinstance(s, bool) and 0 < s < float("inf")
                                      for s in scale):
            raise ValueError(f"{fn}: scale must be a positive finite number or {d} of them; "
                             f"got {scale!r}")
        size = tuple(int(np.floor(n * s)) for n, s in zip(shape[2:], scale))
        if min(size) < 1:
            raise ValueError(f"{fn}: scale {scale} leaves no output entries for input "
                             f"{shape} (output size {size}); use a larger scale or give size=")
    else:
        size = win.spatial(size, d, "size", fn)
        scale = tuple(m / n for n, m in zip(shape[2:], size))
    xp = win.array_module(raw(x))
    # the weights in x's real precision (complex64 stays complex64); integers: float64
    dtype = working_float(raw(x).dtype)
    for i, (n, m, s) in enumerate(zip(shape[2:], size, scale)):
        if n == m and not align_corners:
            continue
        mat = xp.asarray(_interpolation_matrix(n, m, s, align_corners), dtype=dtype)
        x = np.moveaxis(np.moveaxis(x, 2 + i, -1) @ mat.T, -1, 2 + i)
    return win.fresh(x, given)  # (no axis resized: x itself, copied)


def upsample_bilinear(x, scale=None, *, size=None, align_corners: bool = False):
    """:func:`upsample_linear` for ``(N, C, H, W)`` input.

    >>> import numpy as np, fluxml as fl
    >>> fl.nnlib.upsample_bilinear(np.ones((1, 1, 2, 3)), 2).shape
    (1, 1, 4, 6)
    """
    if getattr(x, "ndim", 0) != 4:
        raise ValueError(f"upsample_bilinear: input must be (N, C, H, W); got shape "
                         f"{tuple(np.shape(x))}")
    return upsample_linear(x, scale, size=size, align_corners=align_corners)


def upsample_trilinear(x, scale=None, *, size=None, align_corners: bool = False):
    """:func:`upsample_linear` for ``(N, C, D, H, W)`` input.

    >>> import numpy as np, fluxml as fl
    >>> fl.nnlib.upsample_trilinear(np.ones((1, 1, 2, 2, 2)), 2).shape
    (1, 1, 4, 4, 4)
    """
    if getattr(x, "ndim", 0) != 5:
        raise ValueError(f"upsample_trilinear: input must be (N, C, D, H, W); got shape "
                         f"{tuple(np.shape(x))}")
    return upsample_linear(x, scale, size=size, align_corners=align_corners)


def _interpolation_matrix(n, m, scale, align_corners):
    """``(m, n)``: row ``j`` holds the two weights that output ``j`` gives its neighbours."""
    j = np.arange(m)
    if align_corners:
        src = j * ((n - 1) / (m - 1)) if m > 1 else np.zeros(m)
    else:
        src = np.maximum((j + 0.5) / scale - 0.5, 0.0)
    lo = np.minimum(np.floor(src).astype(np.int64), n - 1)
    hi = np.minimum(lo + 1, n - 1)
    frac = src - lo
    mat = np.zeros((m, n))
    np.add.at(mat, (j, lo), 1 - frac)
    np.add.at(mat, (j, hi), frac)
    return mat


def pixel_shuffle(x, r: int):
    """Moves channels into space: ``(N, C r^d, *S) -> (N, C, *(S r))``; output
    ``[c, h r + i, w r + j]`` is input channel ``c r^2 + i r + j`` (PyTorch's order, any
    number of spatial dimensions).

    >>> import numpy as np, fluxml as fl
    >>> fl.nnlib.pixel_shuffle(np.arange(4.0).reshape(1, 4, 1, 1), 2)[0, 0]
    array([[0., 1.],
           [2., 3.]])
    """
    d = win.check_input("pixel_shuffle", x)
    r = win.spatial(r, 1, "r", "pixel_shuffle")[0]
    n, c, *size = x.shape
    if c % r**d:
        raise ValueError(f"pixel_shuffle: channels ({c}) must be a multiple of r^{d} = {r**d} "
                         f"for input {tuple(x.shape)}")
    y = np.reshape(x, (n, c // r**d) + (r,) * d + tuple(size))
    order = (0, 1) + tuple(a for i in range(d) for a in (2 + d + i, 2 + i))
    y = np.reshape(np.transpose(y, order), (n, c // r**d) + tuple(s * r for s in size))
    return win.fresh(y, x)  # (r = 1, or one pixel: a view of x, copied)


def pixel_unshuffle(x, r: int):
    """The inverse of :func:`pixel_shuffle`: ``(N, C, *(S r)) -> (N, C r^d, *S)``.

    >>> import numpy as np, fluxml as fl
    >>> fl.nnlib.pixel_unshuffle(np.arange(4.0).reshape(1, 1, 2, 2), 2).ravel()
    array([0., 1., 2., 3.])
    """
    d = win.check_input("pixel_unshuffle", x)
    r = win.spatial(r, 1, "r", "pixel_unshuffle")[0]
    n, c, *size = x.shape
    if any(s % r for s in size):
        raise ValueError(f"pixel_unshuffle: spatial sizes {tuple(size)} must be multiples of "
                         f"r = {r}")
    y = np.reshape(x, (n, c) + tuple(a for s in size for a in (s // r, r)))
    order = (0, 1) + tuple(3 + 2 * i for i in range(d)) + tuple(2 + 2 * i for i in range(d))
    y = np.reshape(np.transpose(y, order), (n, c * r**d) + tuple(s // r for s in size))
    return win.fresh(y, x)  # (r = 1: a view of x, copied)


def _check_resize(fn, x, scale, size):
    """The number of spatial dimensions of ``x``; exactly one of ``scale`` and ``size`` must
    be given."""
    d = win.check_input(fn, x)
    if (scale is None) == (size is None):
        raise ValueError(f"{fn}: give either scale or size; got scale={scale!r}, size={size!r}")
    return d
