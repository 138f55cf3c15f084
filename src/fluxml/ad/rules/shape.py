"""Shape rules: reshape, transpose, broadcasting, joining and splitting, padding ..."""

from __future__ import annotations

import numpy as np

from fluxml.ad.core import FUNCTIONS, Tracer, raw
from fluxml.ad.define import defjvp, deflinear, defvjp, function, nondifferentiable, primitive
from fluxml.ad.rules.indexing import VIEW_INVERSES

RESHAPE = primitive("reshape", lambda x, *, shape, order: np.reshape(x, shape, order=order),
                    keeps_inputs=False, keeps_output=False, view=True)
defvjp(RESHAPE, lambda g, ans, x, shape, order: np.reshape(g, x.shape, order=order))
deflinear(RESHAPE)
VIEW_INVERSES[RESHAPE] = lambda new, base, p: np.reshape(new, base.shape, order=p["order"])


@function(np.reshape)
def reshape(a, shape=None, order="C", **kwargs):
    shape = kwargs.pop("newshape", shape)
    if isinstance(shape, (int, np.integer)):
        shape = (int(shape),)
    return RESHAPE(a, shape=tuple(shape), order=order)


BROADCAST_TO = primitive("broadcast_to", lambda x, *, shape: np.broadcast_to(x, shape),
                         keeps_inputs=False, keeps_output=False, view=True)
defvjp(BROADCAST_TO, lambda g, ans, x, shape: g)  # the engine sums the broadcast axes
deflinear(BROADCAST_TO)


@function(np.broadcast_to)
def broadcast_to(array, shape, subok=False):
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    return BROADCAST_TO(array, shape=shape)


COPY = primitive("copy", lambda x: np.array(x, copy=True), keeps_inputs=False,
                 keeps_output=False)
defvjp(COPY, lambda g, ans, x: g)
deflinear(COPY)


@function(np.copy)
def copy(a, order="K", subok=False):
    return COPY(a)


ASTYPE = primitive("astype", lambda x, *, dtype: x.astype(dtype), keeps_inputs=False,
                   keeps_output=False)
defvjp(ASTYPE, lambda g, ans, x, dtype: g)  # the engine casts back to x's dtype
deflinear(ASTYPE)


def astype(x, dtype):
    """``x.astype(dtype)``: float to float keeps the derivative; to an integer or boolean type
    it is cut (the documented way to drop a gradient, besides ``stop_gradient``)."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "fc":
        return raw(x).astype(dtype)
    return ASTYPE(x, dtype=dtype)


def _like(fill):
    """``np.zeros_like(tracer)`` etc.: a traced constant of the same level, so that writes
    into it (the preallocate-and-fill pattern) are recorded."""

    def like(a, *args, dtype=None, shape=None, **kwargs):
        value = fill(raw(a), *args, dtype=dtype, shape=shape, **kwargs)
        if type(a) is Tracer and value.dtype.kind in "fc":
            return a._trace.constant(value)
        return value

    return like


FUNCTIONS[np.zeros_like] = _like(np.zeros_like)
FUNCTIONS[np.ones_like] = _like(np.ones_like)
FUNCTIONS[np.empty_like] = _like(np.zeros_like)  # zeros: never expose uninitialised memory
FUNCTIONS[np.full_like] = _like(np.full_like)

nondifferentiable(np.shape, np.ndim, np.size, np.result_type, np.isrealobj, np.iscomplexobj,
                  np.may_share_memory, np.shares_memory)
