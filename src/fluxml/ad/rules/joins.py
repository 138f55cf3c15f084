"""Joining and splitting: concatenate and the stacks, block, split and its variants, tile,
repeat, resize, append, insert, delete.

``concatenate`` is variadic (the arrays are its positional arguments); ``split`` has one
result per piece, and its vjp joins the pieces' cotangents (zeros for pieces not used).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.array_utils import normalize_axis_index

from fluxml.ad import mutation
from fluxml.ad.arrays import array_beside, as_array, as_arrays, library_of, module_of
from fluxml.ad.core import Tracer, raw
from fluxml.ad.define import defjvp_argnum, deflinear, defvjp, defvjp_argnum, function, primitive
from fluxml.ad.mutation import into_out
from fluxml.ad.rules.indexing import GETITEM, getitem, take
from fluxml.ad.rules.layouts import _inverse, _memory_axes, laid_out
from fluxml.ad.rules.shape import atleast_1d, atleast_2d, atleast_3d, expand_dims

CONCATENATE = primitive("concatenate", lambda *xs, axis: np.concatenate(xs, axis=axis),
                        keeps_inputs=False, keeps_output=False)
defvjp_argnum(CONCATENATE, lambda pos, g, ans, *xs, axis: g[_slice(axis, _span(xs, pos, axis))])
# Jointly linear: the tangents of the pieces, zeros for pieces without one, joined once.
defjvp_argnum(CONCATENATE, lambda pos, t, ans, *xs, axis: CONCATENATE(
    *_pieces({pos: t}, xs, t.dtype, ans), axis=axis))
CONCATENATE.jvp_all = lambda tangents, ans, xs, params: CONCATENATE(
    *_pieces(dict(tangents), xs, ans.dtype, ans), **params)


def _pieces(tangents, xs, dtype, ans):
    """The tangents of the pieces, zeros (of the result's array library: CuPy's on a GPU)
    where a piece has none."""
    xp = module_of(ans)
    return [tangents[i] if i in tangents else xp.zeros(x.shape, dtype) for i, x in enumerate(xs)]


def _split(x, *, bounds, axis):
    # the pieces: views of one copy of x in x's memory order, so laid out (strides, C and F
    # contiguity) as NumPy's pieces, views of x, which a later ravel(order="K" or "A") reads
    # (copies of each piece were C-ordered, or F-contiguous where NumPy's views are not)
    if type(x) is np.ndarray:  # (other libraries: no layouts to match)
        # in the order NumPy's iterator reads x (a K copy of a broadcast array is F)
        axes = _memory_axes(x.shape, x.strides)
        whole = np.transpose(np.transpose(x, axes).copy(), _inverse(axes))
    else:
        whole = x.copy()
    return tuple(whole[_slice(axis, slice(lo, hi))] for lo, hi in bounds)


SPLIT = primitive("split", _split, keeps_inputs=False, keeps_output=False,
                  multiple_results=True)
defvjp(SPLIT, lambda g, ans, x, bounds, axis: CONCATENATE(*g, axis=axis))
deflinear(SPLIT)


# --- joining -------------------------------------------------------------------------------------

@function(np.concatenate)  # np.concat is the same function
def concatenate(arrays, axis=0, out=None, *, dtype=None, casting="same_kind"):
    arrays = as_arrays(*arrays)
    if dtype is not None:
        arrays = [a.astype(dtype) for a in arrays]
    if axis is None:
        arrays, axis = [np.ravel(a) for a in arrays], 0
    if arrays and arrays[0].ndim == 0:
        raise ValueError("zero-dimensional arrays cannot be concatenated")
    if arrays:
        axis = normalize_axis_index(axis, arrays[0].ndim)
    return into_out(CONCATENATE(*arrays, axis=axis), out, "np.concatenate")


@function(np.stack)
def stack(arrays, axis=0, out=None, *, dtype=None, casting="same_kind"):
    arrays = [as_array(a) for a in arrays]
    if not arrays:
        raise ValueError("need at least one array to stack")
    if len({a.shape for a in arrays}) != 1:
        raise ValueError("all input arrays must have the same shape")
    axis = normalize_axis_index(axis, arrays[0].ndim + 1)
    return concatenate([expand_dims(a, axis) for a in arrays], axis, out, dtype=dtype)


@function(np.hstack)
def hstack(tup, *, dtype=None, casting="same_kind"):
    arrays = [atleast_1d(a) for a in tup]
    axis = 0 if arrays and arrays[0].ndim == 1 else 1
    return concatenate(arrays, axis, dtype=dtype)


@function(np.vstack)
def vstack(tup, *, dtype=None, casting="same_kind"):
    return concatenate([atleast_2d(a) for a in tup], 0, dtype=dtype)


@function(np.dstack)
def dstack(tup):
    return concatenate([atleast_3d(a) for a in tup], 2)


@function(np.column_stack)
def column_stack(tup):
    arrays = [as_array(a) for a in tup]
    arrays = [np.reshape(a, (-1, 1)) if a.ndim < 2 else a for a in arrays]
    return concatenate(arrays, 1)


@function(np.append)
def append(arr, values, axis=None):
    arr, values = as_array(arr), as_array(values)
    if axis is None:
        return concatenate([np.ravel(arr), np.ravel(values)], 0)
    return concatenate([arr, values], axis)


@function(np.block)
def block(arrays):
    """NumPy's ``block``: its checks of the nested lists (the same errors), each leaf given
    leading axes of length 1 up to the result's ndim, then concatenations from the innermost
    lists out. Laid out as NumPy's: as its concatenations, except where NumPy fills a large
    result by slicing (``list_ndim * size > 2 * 512**2``): F where every block is F and not C,
    else C; a lone array (no list) is copied in C order."""
    index, arr_ndim, size = _block_depths(arrays, [])
    list_ndim = len(index)
    if index and index[-1] is None:
        raise ValueError(f"List at {_block_index(index)} cannot be empty")
    ndim = max(arr_ndim, list_ndim)
    leaves = []
    # (numbers and lists made in the library of the arrays among them: a GPU's)
    xp = library_of(*_nested_leaves(arrays))
    result = _block(arrays, list_ndim, ndim, 0, leaves, xp)
    if list_ndim == 0 or list_ndim * size <= 2 * 512 * 512:
        return np.copy(result, order="C") if list_ndim == 0 else result
    f = all(raw(a).flags.f_contiguous for a in leaves)
    c = all(raw(a).flags.c_contiguous for a in leaves)
    return laid_out(result, range(ndim)[::-1] if f and not c else range(ndim))


def _block_depths(arrays, index):
    """NumPy's ``_block_check_depths_match``: the index of a bottom element (ending in None
    below an empty list), the greatest ndim of the leaves and their total size."""
    if isinstance(arrays, tuple):
        raise TypeError(f"{_block_index(index)} is a tuple. Only lists can be used to arrange "
                        "blocks, and np.block does not allow implicit conversion from tuple to "
                        "ndarray.")
    if isinstance(arrays, list) and arrays:
        first, ndim, size = _block_depths(arrays[0], index + [0])
        for i, arr in enumerate(arrays[1:], 1):
            at, n, s = _block_depths(arr, index + [i])
            size += s
            ndim = max(ndim, n)
            if len(at) != len(first):
                raise ValueError(
                    f"List depths are mismatched. First element was at depth {len(first)}, "
                    f"but there is an element at depth {len(at)} ({_block_index(at)})")
            if at[-1] is None:
                first = at
        return first, ndim, size
    if isinstance(arrays, list):
        return index + [None], 0, 0
    return index, np.ndim(raw(arrays)), np.size(raw(arrays))


def _block_index(index):
    return "arrays" + "".join(f"[{i}]" for i in index if i is not None)


def _nested_leaves(arrays):
    if isinstance(arrays, list):
        for a in arrays:
            yield from _nested_leaves(a)
    elif hasattr(arrays, "shape"):
        yield arrays


def _block(arrays, depth_max, ndim, depth, leaves, xp=np):
    if depth < depth_max:
        parts = [_block(a, depth_max, ndim, depth + 1, leaves, xp) for a in arrays]
        return concatenate(parts, axis=-(depth_max - depth))
    if type(arrays) is Tracer:
        a = arrays
    else:  # (a number or list in the library of the arrays beside it)
        lib = module_of(arrays) if hasattr(arrays, "shape") else xp
        a = np.array(arrays, ndmin=ndim, copy=None) if lib is np else lib.array(arrays,
                                                                                 ndmin=ndim)
    a = np.reshape(a, (1,) * (ndim - a.ndim) + a.shape) if a.ndim < ndim else a
    leaves.append(a)
    return a


# --- splitting -----------------------------------------------------------------------------------

@function(np.split)
def split(ary, indices_or_sections, axis=0):
    if np.ndim(indices_or_sections) == 0:
        n = ary.shape[axis]
        if n % indices_or_sections:
            raise ValueError("array split does not result in an equal division")
    return array_split(ary, indices_or_sections, axis)


@function(np.array_split)
def array_split(ary, indices_or_sections, axis=0):
    """Pieces that tile the axis come from one ``split`` node; overlapping or out-of-order
    indices (NumPy allows them) fall back to one slice per piece. Either way each piece is a
    view of ``ary`` as in NumPy: writing into it writes into ``ary``."""
    axis = normalize_axis_index(axis, ary.ndim)
    n = ary.shape[axis]
    if np.ndim(indices_or_sections) == 0:
        sections = int(indices_or_sections)
        if sections <= 0:
            raise ValueError("number sections must be larger than 0.")
        each, extra = divmod(n, sections)
        cuts = np.cumsum([0] + extra * [each + 1] + (sections - extra) * [each])
        bounds = tuple(zip(cuts[:-1].tolist(), cuts[1:].tolist()))
    else:
        cuts = [0] + [int(i) for i in indices_or_sections] + [n]
        bounds = tuple(slice(lo, hi).indices(n)[:2] for lo, hi in zip(cuts[:-1], cuts[1:]))
        bounds = tuple((lo, max(lo, hi)) for lo, hi in bounds)
    tiles = all(hi == lo for (_, hi), (lo, _) in zip(bounds[:-1], bounds[1:]))
    if type(ary) is not Tracer or not tiles or bounds[-1][1] != n:
        return [getitem(ary, _slice(axis, slice(lo, hi))) for lo, hi in bounds]
    pieces = SPLIT(ary, bounds=bounds, axis=axis)
    for (lo, hi), piece in zip(bounds, pieces):
        if piece._trace is ary._trace:  # make it the view NumPy returns
            mutation.link(piece, ary, GETITEM, {"idx": _slice(axis, slice(lo, hi))})
    return list(pieces)


@function(np.hsplit)
def hsplit(ary, indices_or_sections):
    if ary.ndim == 0:
        raise ValueError("hsplit only works on arrays of 1 or more dimensions")
    return split(ary, indices_or_sections, 1 if ary.ndim > 1 else 0)


@function(np.vsplit)
def vsplit(ary, indices_or_sections):
    if ary.ndim < 2:
        raise ValueError("vsplit only works on arrays of 2 or more dimensions")
    return split(ary, indices_or_sections, 0)


@function(np.dsplit)
def dsplit(ary, indices_or_sections):
    if ary.ndim < 3:
        raise ValueError("dsplit only works on arrays of 3 or more dimensions")
    return split(ary, indices_or_sections, 2)


@function(np.unstack)
def unstack(x, /, *, axis=0):
    axis = normalize_axis_index(axis, x.ndim)
    if x.shape[axis] == 0:
        return ()
    return tuple(np.squeeze(p, axis) for p in split(x, x.shape[axis], axis))


# --- repeating, inserting, deleting --------------------------------------------------------------

@function(np.tile)
def tile(A, reps):
    A = as_array(A)
    reps = (int(reps),) if np.ndim(reps) == 0 else tuple(int(r) for r in reps)
    d = max(len(reps), A.ndim)
    shape = (1,) * (d - A.ndim) + A.shape
    reps = (1,) * (d - len(reps)) + reps
    paired = np.reshape(A, tuple(x for n in shape for x in (1, n)))
    paired = np.broadcast_to(paired, tuple(x for r, n in zip(reps, shape) for x in (r, n)))
    return _fresh(np.reshape(paired, tuple(r * n for r, n in zip(reps, shape))), A)


@function(np.repeat)
def repeat(a, repeats, axis=None):
    a = as_array(a)
    if axis is None:
        a, axis = np.ravel(a), 0
    axis = normalize_axis_index(axis, a.ndim)
    repeats = raw(repeats)
    if np.ndim(repeats) == 0 or np.size(repeats) == 1:  # broadcast a new axis, then merge
        r = int(np.ravel(repeats)[0]) if np.ndim(repeats) else int(repeats)
        b = expand_dims(a, axis + 1)
        b = np.broadcast_to(b, b.shape[:axis + 1] + (r,) + b.shape[axis + 2:])
        merged = a.shape[:axis] + (a.shape[axis] * r,) + a.shape[axis + 1:]
        return _fresh(np.reshape(b, merged), a)
    return take(a, np.repeat(np.arange(a.shape[axis]), repeats), axis=axis)


@function(np.resize)
def resize(a, new_shape):
    """NumPy's ``resize``: the C ravel of ``a`` repeated and cut to the new size."""
    if isinstance(new_shape, (int, np.integer)):
        new_shape = (new_shape,)
    a = np.ravel(as_array(a))
    new_size = 1
    for n in new_shape:
        new_size *= n
        if n < 0:
            raise ValueError("all elements of `new_shape` must be non-negative")
    if a.size == 0 or new_size == 0:
        return np.zeros(new_shape, a.dtype)  # NumPy's zero fill: no derivative
    repeats = (new_size + a.size - 1) // a.size
    return np.reshape(concatenate((a,) * repeats, 0)[:new_size], new_shape)


@function(np.delete)
def delete(arr, obj, axis=None):
    """Laid out as NumPy's: a new array in ``arr``'s order for one index or a slice, else
    ``arr`` indexed with a mask along ``axis`` (which a later ``ravel(order="K")`` reads)."""
    arr = as_array(arr)
    if axis is None:
        arr, axis = np.ravel(arr), 0
    axis = normalize_axis_index(axis, arr.ndim)
    obj = raw(obj)
    keep = np.delete(np.arange(arr.shape[axis]), obj)
    one = isinstance(obj, (int, np.integer)) and not isinstance(obj, bool) or (
        not isinstance(obj, slice) and np.size(obj) == 1 and np.asarray(obj).dtype.kind in "ui")
    if isinstance(obj, slice) or one:
        return _in_order_of(take(arr, keep, axis=axis), arr)
    mask = np.zeros(arr.shape[axis], bool)
    mask[keep] = True
    return getitem(arr, _slice(axis, mask))


@function(np.insert)
def insert(arr, obj, values, axis=None):
    """NumPy's own ``insert`` run on the positions of ``arr`` and ``values`` (so that every
    placement and broadcasting rule is NumPy's), then one gather from both."""
    arr = as_array(arr)
    values = array_beside(values, arr)
    if axis is None:
        arr, axis = np.ravel(arr), 0
    values = values.astype(arr.dtype) if values.dtype != arr.dtype else values
    where = np.arange(arr.size).reshape(arr.shape)
    new = arr.size + np.arange(values.size).reshape(values.shape)
    source = np.insert(where, raw(obj), new, axis=axis)
    both = concatenate([np.ravel(arr), np.ravel(values)], 0)
    return _in_order_of(getitem(both, source), arr)


# --- helpers -------------------------------------------------------------------------------------



def _slice(axis, s):
    return (slice(None),) * axis + (s,)


def _span(xs, pos, axis):
    start = sum(x.shape[axis] for x in xs[:pos])
    return slice(start, start + xs[pos].shape[axis])


def _in_order_of(y, arr):
    """``y`` laid out as the new array NumPy's ``insert`` and ``delete`` allocate: in F order
    where ``arr`` is F-contiguous and not C-contiguous, else in C order."""
    flags = getattr(raw(arr), "flags", None)  # (none: an array without a layout, JAX's)
    if flags is None:
        return y
    return laid_out(y, range(y.ndim)[::-1] if flags.fnc else range(y.ndim))


def _fresh(result, source):
    """``result`` itself, or a copy where it still shares ``source``'s memory (NumPy returns
    a new array)."""
    if np.may_share_memory(raw(result), raw(source)):
        return np.copy(result)
    return result
