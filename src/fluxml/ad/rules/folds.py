"""Methods of binary ufuncs on traced arrays: ``reduce``, ``accumulate``, ``reduceat``
(``np.logaddexp.reduce``, ``np.maximum.accumulate``, ``np.add.reduceat`` ...).

Where NumPy has a reduction with its own rule (``np.add.reduce`` is ``np.sum``) the method goes
there; any other binary ufunc with a derivative rule is folded along the axis, one recorded
ufunc call per entry of the axis (vectorised over the others). That is exactly NumPy's
definition, so values, ties and derivatives are those of the ufunc's own rule.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.array_utils import normalize_axis_index, normalize_axis_tuple

from fluxml.ad import errors
from fluxml.ad.arrays import as_array, module_of
from fluxml.ad.core import UFUNCS, DifferentiationError, Tracer, lookup, raw
from fluxml.ad.mutation import into_out
from fluxml.ad.rules.layouts import in_iterator_order_of

# ufunc methods that are ordinary NumPy functions in disguise.
REDUCE = {np.add: np.sum, np.multiply: np.prod, np.maximum: np.max, np.minimum: np.min}
ACCUMULATE = {np.add: np.cumsum, np.multiply: np.cumprod}


def _check(ufunc, method):
    if ufunc.nin != 2 or ufunc.nout != 1 or lookup(UFUNCS, ufunc) is None:
        raise DifferentiationError(errors.unsupported(ufunc, f"ufunc method `.{method}`"))


def _to_front(a, axis):
    """``a`` with the reduced axes moved to the front as one, and the remaining shape."""
    a = as_array(a)
    if axis is None:
        return np.reshape(a, (-1,)), (), tuple(range(a.ndim))
    axes = normalize_axis_tuple(axis, a.ndim)
    rest = tuple(d for d in range(a.ndim) if d not in axes)
    moved = np.transpose(a, axes + rest)
    shape = tuple(a.shape[d] for d in rest)
    return np.reshape(moved, (math.prod(a.shape[d] for d in axes),) + shape), shape, axes


def reduce(ufunc, a, axis=0, dtype=None, out=None, keepdims=False, initial=None,
           where=True):
    """``ufunc.reduce``: a fold along ``axis`` (several axes: as one flattened axis)."""
    if ufunc in REDUCE:
        extra = {} if dtype is None else {"dtype": dtype}
        if where is not True:
            extra["where"] = where
        return REDUCE[ufunc](a, axis=axis, out=out, keepdims=keepdims, initial=initial, **extra)
    _check(ufunc, "reduce")
    if dtype is not None:
        a = a.astype(dtype) if type(a) is Tracer else np.asarray(a).astype(dtype)
    ndim = np.ndim(raw(a))
    flat, shape, axes = _to_front(a, axis)
    mask = None
    if where is not True:
        mask, _, _ = _to_front(np.broadcast_to(raw(where), np.shape(raw(a))), axis)
        if initial is None:
            initial = ufunc.identity
        if initial is None:
            raise ValueError(f"reduction operation '{ufunc.__name__}' does not have an "
                             "identity, so to use a where mask one has to specify 'initial'")
    n = flat.shape[0]
    if initial is None and n == 0:
        initial = ufunc.identity  # NumPy's value for an empty reduction
        if initial is None:
            raise ValueError(f"zero-size array to reduction operation {ufunc.__name__} which "
                             "has no identity")
    if initial is None:
        result, start = flat[0], 1
    else:
        result, start = np.broadcast_to(module_of(flat).asarray(raw(initial), flat.dtype)
                                        if type(initial) is not Tracer else initial, shape), 0
    for i in range(start, n):
        step = ufunc(result, flat[i])
        result = step if mask is None else np.where(mask[i], step, result)
    if type(result) is not Tracer and not isinstance(result, np.generic):
        result = np.asarray(result)
    if keepdims:
        result = np.reshape(result, tuple(1 if d in axes else s
                                          for d, s in enumerate(np.shape(raw(a)))))
    elif type(result) is Tracer and result.shape == () and ndim and axis is None:
        result = result[()]
    return _out(result, out, f"np.{ufunc.__name__}.reduce")


def accumulate(ufunc, a, axis=0, dtype=None, out=None):
    """``ufunc.accumulate``: every partial fold along ``axis``."""
    if ufunc in ACCUMULATE:
        return ACCUMULATE[ufunc](a, axis=axis, dtype=dtype, out=out)
    _check(ufunc, "accumulate")
    if dtype is not None:
        a = a.astype(dtype) if type(a) is Tracer else np.asarray(a).astype(dtype)
    axis = normalize_axis_index(axis, np.ndim(raw(a)))
    moved = np.moveaxis(a, axis, 0)
    if moved.shape[0] == 0:
        return _out(np.copy(a), out, f"np.{ufunc.__name__}.accumulate")
    parts = [moved[0]]
    for i in range(1, moved.shape[0]):
        parts.append(ufunc(parts[-1], moved[i]))
    result = in_iterator_order_of(np.moveaxis(np.stack(parts), 0, axis), a)  # NumPy's layout
    return _out(result, out, f"np.{ufunc.__name__}.accumulate")


def reduceat(ufunc, a, indices, axis=0, dtype=None, out=None):
    """``ufunc.reduceat``: the fold of each slice ``indices[i]:indices[i+1]`` (the single
    entry ``indices[i]`` where that slice is empty), as NumPy defines it."""
    if type(indices) is Tracer:
        raise DifferentiationError(f"np.{ufunc.__name__}.reduceat: indices must be concrete")
    if ufunc not in REDUCE:
        _check(ufunc, "reduceat")
    if dtype is not None:
        a = a.astype(dtype) if type(a) is Tracer else np.asarray(a).astype(dtype)
    axis = normalize_axis_index(axis, np.ndim(raw(a)))
    n = np.shape(raw(a))[axis]
    indices = [int(i) for i in np.asarray(indices).ravel()]
    parts = []
    for k, lo in enumerate(indices):
        if not 0 <= lo < n:
            raise IndexError(f"index {lo} out-of-bounds in {ufunc.__name__}.reduceat [0, {n})")
        hi = indices[k + 1] if k + 1 < len(indices) else n
        cut = (slice(None),) * axis + (slice(lo, hi) if lo < hi else slice(lo, lo + 1),)
        parts.append(reduce(ufunc, a[cut], axis=axis, keepdims=True))
    return _out(np.concatenate(parts, axis=axis), out, f"np.{ufunc.__name__}.reduceat")


def _out(result, out, name):
    """:func:`into_out` for the ufunc methods, whose ``out`` may also be a 1-tuple."""
    (target,) = out if isinstance(out, tuple) else (out,)
    return into_out(result, target, name)
