"""NumPy's writing functions on traced arrays: copyto, put, putmask, place, fill_diagonal,
put_along_axis.

Each is expressed as the write it performs (``ad/mutation.py``), so the handle is rebound and
views and aliases see it, exactly as NumPy's in-place semantics say.
"""

from __future__ import annotations

import sys

import numpy as np

from fluxml.ad import mutation
from fluxml.ad.arrays import array_beside, as_array, host_array
from fluxml.ad.core import DifferentiationError, Tracer, raw
from fluxml.ad.define import function


def _target(dst, name):
    if type(dst) is not Tracer:
        if _inside_numpy_full():
            raise DifferentiationError(
                "np.full(..., fill_value) with a traced fill value makes a plain NumPy "
                "array, which would cut its derivative; pass like= a traced array, e.g. "
                "`np.full(shape, v, like=x)`, or write `v * np.ones(shape, like=x)`.")
        raise DifferentiationError(
            f"{name}: the destination is a plain NumPy array but the value written is traced; "
            "allocate the destination from the traced value (`np.zeros_like(x)`) instead.")
    return dst


def _inside_numpy_full() -> bool:
    """Whether np.full called np.copyto (the user never did)."""
    frame = sys._getframe(2)
    for _ in range(4):
        if frame is None:
            return False
        if frame.f_code.co_name == "full" and frame.f_globals.get("__name__", "").startswith(
                "numpy"):
            return True
        frame = frame.f_back
    return False


@function(np.copyto)
def copyto(dst, src, casting="same_kind", where=True):
    dst = _target(dst, "np.copyto")
    if where is not True:  # (a mask of the destination's library: a GPU's beside a GPU's)
        src = np.where(array_beside(raw(where), dst), src, dst)
    src_dtype = np.result_type(raw(src))
    if not np.can_cast(src_dtype, dst.dtype, casting=casting):
        raise TypeError(f"np.copyto: cannot cast {src_dtype} to {dst.dtype} "
                        f"with casting={casting!r}")
    mutation.setitem(dst, Ellipsis, src)


def _cycled(values, positions):
    """``values`` flattened and repeated cyclically, taken at integer ``positions``: how
    put, putmask, place and fill_diagonal spread a short list of values."""
    flat = np.ravel(values) if np.ndim(raw(values)) else np.reshape(values, (1,))
    if len(positions) == 0:
        return flat[:0]
    return np.take(flat, array_beside(positions, flat) % np.size(raw(flat)))


@function(np.put)
def put(a, ind, v, mode="raise"):
    a = _target(a, "np.put")
    ind = array_beside(raw(ind), a).ravel()
    n = int(np.prod(a.shape))
    if mode == "wrap":
        ind = np.mod(ind, n)
    elif mode == "clip":
        ind = np.clip(ind, 0, n - 1)
    else:  # "raise": -n <= i < n, as NumPy's (a negative one counts from the end)
        bad = (ind < -n) | (ind >= n)
        if np.any(bad):
            raise IndexError(f"index {int(ind[np.argmax(bad)])} is out of bounds for axis 0 "
                             f"with size {n}")
        ind = np.where(ind < 0, ind + n, ind)
    mutation.setitem(a, np.unravel_index(ind, a.shape),
                     _cycled(array_beside(v, a), np.arange(ind.size)))


@function(np.putmask)
def putmask(a, mask, values):
    a = _target(a, "np.putmask")
    mask = array_beside(raw(mask), a).astype(bool, copy=False)
    # values repeat over the flat positions of a; the masked positions take theirs
    mutation.setitem(a, mask, _cycled(array_beside(values, a), np.flatnonzero(mask)))


@function(np.place)
def place(arr, mask, vals):
    arr = _target(arr, "np.place")
    mask = array_beside(raw(mask), arr).astype(bool, copy=False)
    # vals repeat over the masked positions in order
    mutation.setitem(arr, mask, _cycled(array_beside(vals, arr), np.arange(int(mask.sum()))))


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
    mutation.setitem(a, np.unravel_index(positions, shape),
                     _cycled(val, np.arange(positions.size)))


@function(np.put_along_axis)
def put_along_axis(arr, indices, values, axis):
    """``arr[index] = values`` with NumPy's index: ``indices`` along ``axis``, every other
    axis whole (``axis=None``: the flat C-ordered array, written through where NumPy's flat
    copy is a view, else NumPy's read-only error)."""
    arr = _target(arr, "np.put_along_axis")
    indices = as_array(raw(indices))  # (a GPU's stays the GPU's)
    # NumPy's own checks and errors, on a probe of arr's shape
    np.put_along_axis(np.zeros(arr.shape), host_array(indices), np.zeros(np.shape(raw(values))),
                      axis)
    if axis is None:
        if not raw(arr).flags.c_contiguous:
            raise ValueError("assignment destination is read-only")
        size = int(np.prod(arr.shape))  # (NumPy's probe above took negative ones)
        mutation.setitem(arr, np.unravel_index(np.where(indices < 0, indices + size, indices),
                                               arr.shape), values)
        return
    axis %= arr.ndim
    grid = list(np.ogrid[tuple(slice(n) for n in arr.shape)])  # (as take_along_axis's)
    grid[axis] = indices
    mutation.setitem(arr, tuple(grid), values)
