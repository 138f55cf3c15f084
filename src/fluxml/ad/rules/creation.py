"""Array creation from a traced value: NumPy's ``like=`` argument.

``np.zeros(shape, like=x)``, ``np.empty``, ``np.ones``, ``np.full``, ``np.arange``,
``np.eye``, ``np.identity``, ``np.tri`` and
``np.array`` / ``np.asarray`` hand creation to ``x``'s ``__array_function__`` when ``like=``
names an array of another type. For a traced ``x`` they return a traced array of ``x``'s
level: a buffer that may then be filled in place (``buf[i] = ...`` is recorded), or, for
``np.array([a, b], like=x)``, the values stacked with their derivatives.
"""

from __future__ import annotations

import numpy as np

from fluxml.ad.core import Tracer, raw
from fluxml.ad.define import function

LIKE: dict = {}  # NumPy creation function -> rule(like, *args, **kwargs)


def _constant(like, value):
    value = np.asarray(value)
    low = raw(like)
    if type(low) is not Tracer and not isinstance(low, np.ndarray | np.generic):
        # like= a traced array of another library (CuPy): made there, as for the array itself
        # lazy: fluxml.backend imports the engine
        from fluxml.backend.registry import array_module

        value = array_module(low).asarray(value)
    if value.dtype.kind not in "fc":
        return value
    if type(low) is Tracer:  # under fl.compile: a buffer the program makes afresh on each run
        # (a plain array under a gradient's tracer would be a read-only constant of it)
        value = low._trace.constant(value)
    return like._trace.constant(value)


def _creates(*funcs):
    return function(*funcs, table=LIKE)


@_creates(np.zeros, np.empty)  # empty gives zeros: never expose uninitialised memory
def zeros(like, shape, dtype=float, order="C", **kwargs):
    return _constant(like, np.zeros(shape, dtype, order))


@_creates(np.ones)
def ones(like, shape, dtype=None, order="C", **kwargs):
    return _constant(like, np.ones(shape, dtype, order))


@_creates(np.full)
def full(like, shape, fill_value, dtype=None, order="C", **kwargs):
    if type(fill_value) is Tracer:
        value = np.broadcast_to(fill_value, shape).copy()
        return value if dtype is None else value.astype(dtype)
    return _constant(like, np.full(shape, fill_value, dtype, order))


@_creates(np.arange)
def arange(like, *args, **kwargs):
    return _constant(like, np.arange(*args, **kwargs))


@_creates(np.eye)
def eye(like, N, M=None, k=0, dtype=float, order="C", **kwargs):  # (NumPy's names: it
    return _constant(like, np.eye(N, M, k, dtype, order))  # passes M by keyword)


@_creates(np.identity)
def identity(like, n, dtype=None, **kwargs):
    return _constant(like, np.identity(n, dtype))


@_creates(np.tri)
def tri(like, N, M=None, k=0, dtype=float, **kwargs):
    return _constant(like, np.tri(N, M, k, dtype))


@_creates(np.array, np.asarray, np.asanyarray)
def array(like, obj, dtype=None, *args, **kwargs):
    """Nested lists and tuples of traced and plain values, stacked (``np.stack`` at each
    level); a traced array is copied."""
    value = _nested(obj)
    if type(value) is not Tracer:
        return _constant(like, np.array(value, dtype))
    order = kwargs.get("order", "K")
    if order not in ("K", None):  # the layout NumPy gives it, which ravel(order="K") reads
        value = np.copy(value, order=order)
    return value if dtype is None else value.astype(dtype)


def _nested(obj):
    if isinstance(obj, (list, tuple)):
        items = [_nested(o) for o in obj]
        if any(type(i) is Tracer for i in items):
            return np.stack([i if type(i) is Tracer else np.asarray(i) for i in items])
        return np.array(items)
    if type(obj) is Tracer:
        return np.copy(obj)
    return obj
