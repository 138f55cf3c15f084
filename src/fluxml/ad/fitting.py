"""Cotangents and tangents fitted to the shape and dtype of the value they belong to: the one
place in the engine that undoes broadcasting (sums broadcast axes away) and takes the real
part for a real argument."""

from __future__ import annotations

import numpy as np

from fluxml.ad.core import Tracer


def fit(c, like):
    """The cotangent of ``like`` has ``like``'s shape and dtype. A rule may return one that
    broadcasts to that shape (``sum``'s rule returns the scalar ``g``), or one whose shape is
    the broadcast of ``like`` with other arguments: the one place in the engine that
    broadcasts up and sums broadcast axes away."""
    try:
        shape = like.shape
    except AttributeError:  # a traced Python number, kept as one (custom_vjp, checkpoint)
        return _fit_number(c, like)
    cshape = c.shape
    if not cshape and shape and type(c) is not Tracer:  # a scalar spread over like (sum)
        if not isinstance(c, (np.ndarray, np.generic)):  # another library's array (CuPy)
            return np.broadcast_to(c, shape).astype(like.dtype)
        out = np.empty(shape, like.dtype)
        out[...] = c
        return out
    if cshape != shape:
        if _broadcasts_to(cshape, shape):
            c = broadcast(c, shape)
        else:
            extra = len(cshape) - len(shape)
            axes = tuple(range(extra)) + tuple(
                extra + i for i, n in enumerate(shape) if n == 1 and cshape[extra + i] != 1)
            if axes:
                c = np.sum(c, axis=axes)
            if c.shape != shape:
                c = np.reshape(c, shape)
    dtype = getattr(like, "dtype", None)
    if dtype is not None and c.dtype != dtype and dtype.kind in "fc":
        if dtype.kind == "f" and c.dtype.kind == "c":  # a real argument's share: Re(c)
            c = np.real(c)
        c = c.astype(dtype)
    return c


def _fit_number(c, like):
    """The cotangent of a traced Python number ``like`` (the nodes of custom_vjp and
    checkpoint keep it as the Python number their functions got, see ``core._kept``): summed
    to 0-d, in float64 (complex128), its real part for a real number."""
    dtype = np.dtype(np.complex128 if type(like) is complex else np.float64)
    if not hasattr(c, "shape"):
        c = np.asarray(c)  # a Python number a rule returned
    if c.shape != ():
        c = np.sum(c)
    if dtype.kind == "f" and c.dtype.kind == "c":
        c = np.real(c)
    return c.astype(dtype) if c.dtype != dtype else c


def _broadcasts_to(small, shape):
    if len(small) > len(shape):
        return False
    return all(a == 1 or a == b for a, b in zip(reversed(small), reversed(shape)))


def broadcast(x, shape):
    """``x`` broadcast to ``shape``: a fresh array for raw values (cheaper than NumPy's
    ``broadcast_to`` on small arrays, and writable), the recorded primitive for tracers."""
    if type(x) is Tracer:
        return np.broadcast_to(x, shape)
    if not isinstance(x, (np.ndarray, np.generic)):  # another library's array (CuPy)
        return np.broadcast_to(x, shape).copy()
    out = np.empty(shape, x.dtype)
    out[...] = x
    return out
