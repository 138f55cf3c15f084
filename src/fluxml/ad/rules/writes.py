"""NumPy's writing functions on traced arrays: copyto, put, putmask, place, fill_diagonal.

Each is expressed as the write it performs (``ad/mutation.py``), so the handle is rebound and
views and aliases see it, exactly as NumPy's in-place semantics say.
"""

from __future__ import annotations

import numpy as np

from fluxml.ad import mutation
from fluxml.ad.core import DifferentiationError, Tracer, raw
from fluxml.ad.define import function


def _target(dst, name):
    if type(dst) is not Tracer:
        raise DifferentiationError(
            f"{name}: the destination is a plain NumPy array but the value written is traced; "
            "allocate the destination from the traced value (`np.zeros_like(x)`) instead.")
    return dst


@function(np.copyto)
def copyto(dst, src, casting="same_kind", where=True):
    dst = _target(dst, "np.copyto")
    if where is not True:
        src = np.where(raw(where), src, dst)
    src_dtype = np.result_type(raw(src))
    if not np.can_cast(src_dtype, dst.dtype, casting=casting):
        raise TypeError(f"np.copyto: cannot cast {src_dtype} to {dst.dtype} "
                        f"with casting={casting!r}")
    mutation.setitem(dst, Ellipsis, src)


@function(np.put)
def put(a, ind, v, mode="raise"):
    a = _target(a, "np.put")
    ind = np.asarray(raw(ind))
    n = int(np.prod(a.shape))
    if mode == "wrap":
        ind = np.mod(ind, n)
    elif mode == "clip":
        ind = np.clip(ind, 0, n - 1)
    # NumPy's put repeats v cyclically to the number of indices.
    count = ind.size
    v_flat = np.ravel(v) if np.ndim(raw(v)) else np.reshape(v, (1,))
    if np.size(raw(v_flat)) != count:
        reps = -(-count // max(np.size(raw(v_flat)), 1))
        v_flat = np.tile(v_flat, reps)[:count]
    coords = np.unravel_index(ind.ravel(), a.shape)
    mutation.setitem(a, coords, v_flat)


@function(np.putmask)
def putmask(a, mask, values):
    a = _target(a, "np.putmask")
    mask = np.asarray(raw(mask), dtype=bool)
    n = int(mask.sum())
    v_flat = np.ravel(values) if np.ndim(raw(values)) else np.reshape(values, (1,))
    size = np.size(raw(v_flat))
    # values repeat over the flat positions of a, and the masked positions take theirs
    positions = np.flatnonzero(mask) % size
    mutation.setitem(a, mask, np.take(v_flat, positions) if n else v_flat[:0])


@function(np.place)
def place(arr, mask, vals):
    arr = _target(arr, "np.place")
    mask = np.asarray(raw(mask), dtype=bool)
    n = int(mask.sum())
    v_flat = np.ravel(vals) if np.ndim(raw(vals)) else np.reshape(vals, (1,))
    size = np.size(raw(v_flat))
    mutation.setitem(arr, mask, np.take(v_flat, np.arange(n) % size) if n else v_flat[:0])


@function(np.fill_diagonal)
def fill_diagonal(a, val, wrap=False):
    a = _target(a, "np.fill_diagonal")
    shape = a.shape
    if len(shape) < 2:
        raise ValueError("np.fill_diagonal: array must be at least 2-d")
    if len(shape) > 2 and len(set(shape)) != 1:
        raise ValueError("np.fill_diagonal: all dimensions of input must be of equal length")
    flat = np.arange(int(np.prod(shape))).reshape(shape)
    probe = flat.copy()
    np.fill_diagonal(probe, -1, wrap=wrap)  # NumPy decides which entries are diagonal
    positions = flat[probe == -1]
    count = positions.size
    v_flat = np.ravel(val) if np.ndim(raw(val)) else np.reshape(val, (1,))
    size = np.size(raw(v_flat))
    if size != count:
        v_flat = np.take(v_flat, np.arange(count) % size)
    mutation.setitem(a, np.unravel_index(positions, shape), v_flat)
