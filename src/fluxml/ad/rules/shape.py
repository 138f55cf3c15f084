"""Shape rules: reshape, transpose and axis moves, broadcasting, flips and rolls, padding,
diagonals and triangles, copies. Joining and splitting live in ``joins.py``.

Each of these is linear. Views follow NumPy: a result NumPy returns as a view is a view handle
(``view=True``), and those NumPy lets you write through get an inverse in ``VIEW_INVERSES``.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.array_utils import normalize_axis_index, normalize_axis_tuple

from fluxml.ad.arrays import as_array, module_of
from fluxml.ad.core import (
    FUNCTIONS,
    DifferentiationError,
    Tracer,
    raw,
    untraced,
)
from fluxml.ad.define import deflinear, defvjp, function, nondifferentiable, primitive, same
from fluxml.ad.mutation import index_view, into_out
from fluxml.ad.rules.indexing import (
    READ_ONLY_GATHER,
    READ_ONLY_VIEWS,
    SETITEM,
    VIEW_INVERSES,
    getitem,
)
from fluxml.ad.rules.layouts import _inverse, _memory_axes, c_ordered, laid_out

RESHAPE = primitive("reshape", lambda x, *, shape, order: np.reshape(x, shape, order=order),
                    keeps_inputs=False, keeps_output=False, view=True)
defvjp(RESHAPE, lambda g, ans, x, shape, order: np.reshape(g, x.shape, order=order))
deflinear(RESHAPE)
VIEW_INVERSES[RESHAPE] = lambda new, base, p: np.reshape(new, base.shape, order=p["order"])


def _any_order(a, order):
    """NumPy's ``order="A"``, resolved on the array's memory: "F" for an array that is
    Fortran-contiguous and not C-contiguous (``a.T`` of a C array), else "C". The rules
    reshape cotangents, which are C arrays, so they need the order the values were read in."""
    if order != "A":
        return order
    return "F" if _fortran(a) else "C"


def _fortran(a) -> bool:
    """Is ``a`` Fortran-contiguous and not C-contiguous (NumPy's ``PyArray_ISFORTRAN``)? An
    array with no memory layout of its own (a JAX array's) is not."""
    flags = getattr(raw(a), "flags", None)
    return flags is not None and flags.f_contiguous and not flags.c_contiguous


@function(np.reshape)
def reshape(a, shape=None, order="C", **kwargs):
    shape = kwargs.pop("newshape", shape)
    if isinstance(shape, (int, np.integer)):
        shape = (int(shape),)
    return RESHAPE(a, shape=tuple(shape), order=_any_order(a, order))


TRANSPOSE = primitive("transpose", lambda x, *, axes: np.transpose(x, axes),
                      keeps_inputs=False, keeps_output=False, view=True)
defvjp(TRANSPOSE, lambda g, ans, x, axes: np.transpose(g, _inverse(axes)))
deflinear(TRANSPOSE)
VIEW_INVERSES[TRANSPOSE] = lambda new, base, p: np.transpose(new, _inverse(p["axes"]))

BROADCAST_TO = primitive("broadcast_to", lambda x, *, shape: np.broadcast_to(x, shape),
                         keeps_inputs=False, keeps_output=False, view=True)
defvjp(BROADCAST_TO, same)  # the engine sums the broadcast axes
deflinear(BROADCAST_TO)
READ_ONLY_VIEWS.add(BROADCAST_TO)


@function(np.broadcast_to)
def broadcast_to(array, shape, subok=False):
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    return BROADCAST_TO(array, shape=shape)


DIAGONAL = primitive("diagonal", lambda x, *, offset, axis1, axis2: np.diagonal(
    x, offset, axis1, axis2), keeps_inputs=False, keeps_output=False, view=True)
defvjp(DIAGONAL, lambda g, ans, x, offset, axis1, axis2: _undiagonal(g, x.shape, offset, axis1,
                                                                     axis2))
deflinear(DIAGONAL)
READ_ONLY_VIEWS.add(DIAGONAL)  # NumPy's diagonal is a read-only view: writes refused here too

PAD = primitive("pad", lambda x, *, widths: np.pad(x, widths), keeps_inputs=False,
                keeps_output=False)
defvjp(PAD, lambda g, ans, x, widths: g[tuple(slice(lo, lo + n)
                                              for (lo, _), n in zip(widths, x.shape))])
deflinear(PAD)

# Copies and casts lay the new array out in memory as NumPy does (``order``): the value does
# not depend on it, but what ``ravel(order="K")`` or ``reshape(order="A")`` reads later does.
def _copy(x, *, order="K"):
    if isinstance(x, (np.ndarray, np.generic)) or not hasattr(x, "copy"):
        return np.array(x, copy=True, order=order)
    return x.copy()  # (another library's array, a CuPy one: np.array would move it home)


COPY = primitive("copy", _copy, keeps_inputs=False, keeps_output=False)
defvjp(COPY, same)
deflinear(COPY)


@function(np.copy)
def copy(a, order="K", subok=False):
    return COPY(a, order=order)


def _cast(x, dtype, order="K"):
    """``x.astype(dtype, order=order)``; the default order not passed on (a JAX array's
    ``astype`` takes no ``order``). A Python int (a number fl.compile traces) has no
    ``astype``: it is cast as NumPy casts one, through a 0-d array."""
    if type(x) is int:
        x = np.asarray(x)
    return x.astype(dtype) if order == "K" else x.astype(dtype, order=order)


ASTYPE = primitive("astype", _cast, keeps_inputs=False, keeps_output=False)
defvjp(ASTYPE, same)  # the engine casts back to x's dtype
deflinear(ASTYPE)


def astype(x, dtype, order="K"):
    """``x.astype(dtype)``: float to float keeps the derivative; to an integer or boolean type
    it is cut (the documented way to drop a gradient, besides ``stop_gradient``)."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "fc":
        r = raw(x)  # under fl.compile an IR tracer: the cast is recorded there
        return ASTYPE(r, dtype=dtype, order=order) if type(r) is Tracer \
            else _cast(r, dtype, order)
    return ASTYPE(x, dtype=dtype, order=order)


def _like(fill):
    """``np.zeros_like(tracer)`` etc.: a traced constant of the same level, so that writes
    into it (the preallocate-and-fill pattern) are recorded."""

    def like(a, *args, dtype=None, shape=None, **kwargs):
        value = untraced(fill, (raw(a),) + args, dict(kwargs, dtype=dtype, shape=shape))
        if type(a) is Tracer and value.dtype.kind in "fc":
            return a._trace.constant(value)
        return value

    return like


FUNCTIONS[np.zeros_like] = _like(np.zeros_like)
FUNCTIONS[np.ones_like] = _like(np.ones_like)
FUNCTIONS[np.empty_like] = _like(np.zeros_like)  # zeros: never expose uninitialised memory
_full_like = _like(np.full_like)


@function(np.full_like)
def full_like(a, fill_value, dtype=None, order="K", subok=True, shape=None, **kwargs):
    """A traced fill value is written into a traced buffer of ``a``'s level (``np.full_like``
    itself would copy it into a plain array, cutting its derivative)."""
    if type(fill_value) is not Tracer:
        return _full_like(a, fill_value, dtype=dtype, order=order, shape=shape, **kwargs)
    out = np.zeros_like(raw(a), dtype=dtype, shape=shape)
    if out.dtype.kind not in "fc":  # an integer or boolean array: the derivative is cut
        out[...] = raw(fill_value)
        return out
    out = fill_value._trace.constant(out) if type(a) is not Tracer or (
        fill_value._trace.level > a._trace.level) else a._trace.constant(out)
    out[...] = fill_value
    return out

nondifferentiable(np.shape, np.ndim, np.size, np.result_type, np.isrealobj, np.iscomplexobj,
                  np.may_share_memory, np.shares_memory)


# --- axes ----------------------------------------------------------------------------------------

@function(np.transpose)  # np.permute_dims is the same function
def transpose(a, axes=None):
    if axes is None:
        return TRANSPOSE(a, axes=tuple(range(a.ndim))[::-1])
    axes = normalize_axis_tuple(axes, a.ndim, "axes")
    if len(axes) != a.ndim:
        raise ValueError("axes don't match array")
    return TRANSPOSE(a, axes=axes)


@function(np.swapaxes)
def swapaxes(a, axis1, axis2):
    axes = list(range(a.ndim))
    i, j = normalize_axis_index(axis1, a.ndim), normalize_axis_index(axis2, a.ndim)
    axes[i], axes[j] = j, i
    return TRANSPOSE(a, axes=tuple(axes))


@function(np.matrix_transpose)
def matrix_transpose(x, /):
    if x.ndim < 2:
        raise ValueError(f"np.matrix_transpose needs at least 2 dimensions, got {x.ndim}")
    return swapaxes(x, -1, -2)


@function(np.moveaxis)
def moveaxis(a, source, destination):
    source = normalize_axis_tuple(source, a.ndim, "source")
    destination = normalize_axis_tuple(destination, a.ndim, "destination")
    if len(source) != len(destination):
        raise ValueError("`source` and `destination` arguments must have the same number of "
                         "elements")
    order = [d for d in range(a.ndim) if d not in source]
    for dest, src in sorted(zip(destination, source)):
        order.insert(dest, src)
    return TRANSPOSE(a, axes=tuple(order))


@function(np.rollaxis)
def rollaxis(a, axis, start=0):
    n = a.ndim
    axis = normalize_axis_index(axis, n)
    if not -n <= start <= n:
        raise np.exceptions.AxisError(f"'start' arg requires {-n} <= start < {n + 1}, but "
                                      f"{start} was passed in")
    start = start + n if start < 0 else start
    if axis < start:
        start -= 1
    if axis == start:
        return a[...]
    axes = [d for d in range(n) if d != axis]
    axes.insert(start, axis)
    return TRANSPOSE(a, axes=tuple(axes))


@function(np.expand_dims)
def expand_dims(a, axis):
    axis = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    ndim = len(axis) + a.ndim
    axis = normalize_axis_tuple(axis, ndim)
    sizes = iter(a.shape)
    return RESHAPE(a, shape=tuple(1 if d in axis else next(sizes) for d in range(ndim)),
                   order="C")


@function(np.squeeze)
def squeeze(a, axis=None):
    if axis is None:
        axis = tuple(d for d, n in enumerate(a.shape) if n == 1)
    axis = normalize_axis_tuple(axis, a.ndim)
    if any(a.shape[d] != 1 for d in axis):
        raise ValueError("cannot select an axis to squeeze out which has size not equal to one")
    return RESHAPE(a, shape=tuple(n for d, n in enumerate(a.shape) if d not in axis),
                   order="C")


@function(np.ravel)
def ravel(a, order="C"):
    flags = getattr(raw(a), "flags", None)  # (none: a JAX array, read in C order)
    if order == "K" and flags is not None:  # memory order
        if not (flags.c_contiguous or flags.f_contiguous):
            return _ravel_memory_order(a)
        order = "C" if flags.c_contiguous else "F"
    elif order == "K":
        order = "C"
    return RESHAPE(a, shape=(a.size,), order=_any_order(a, order))


def _ravel_memory_order(a):
    """``np.ravel(a, order="K")`` of an array in neither C nor F order (``x.transpose(1, 0,
    2)``, a broadcast view): the C ravel of ``a`` with its axes in the order NumPy's
    iterator walks them (a view where NumPy's is one)."""
    axes = _memory_axes(np.shape(raw(a)), raw(a).strides)
    return RESHAPE(transpose(a, axes), shape=(a.size,), order="C")


# (wanted ndim, given ndim) -> the new shape from the old one, as np.atleast_{1,2,3}d make it.
_AT_LEAST = {
    (1, 0): lambda s: (1,),
    (2, 0): lambda s: (1, 1), (2, 1): lambda s: (1,) + s,
    (3, 0): lambda s: (1, 1, 1), (3, 1): lambda s: (1,) + s + (1,), (3, 2): lambda s: s + (1,),
}


def _at_least(ndim):
    def one(a):
        a = as_array(a)
        if a.ndim >= ndim:
            return a
        shape = _AT_LEAST[ndim, a.ndim](a.shape)
        return RESHAPE(a, shape=shape, order="C") if type(a) is Tracer else a.reshape(shape)

    def atleast(*arys):
        result = tuple(one(a) for a in arys)
        return result[0] if len(result) == 1 else result

    return atleast


atleast_1d = function(np.atleast_1d)(_at_least(1))
atleast_2d = function(np.atleast_2d)(_at_least(2))
atleast_3d = function(np.atleast_3d)(_at_least(3))


@function(np.broadcast_arrays)
def broadcast_arrays(*args, subok=False):
    arrays = [as_array(a) for a in args]
    shape = np.broadcast_shapes(*(a.shape for a in arrays))
    return tuple(a if a.shape == shape else np.broadcast_to(a, shape) for a in arrays)


@function(np.meshgrid)
def meshgrid(*xi, copy=True, sparse=False, indexing="xy"):
    if indexing not in ("xy", "ij"):
        raise ValueError("Valid values for `indexing` are 'xy' and 'ij'.")
    ones = (1,) * len(xi)
    out = [np.reshape(as_array(x), ones[:i] + (-1,) + ones[i + 1:]) for i, x in enumerate(xi)]
    if indexing == "xy" and len(xi) > 1:
        out[0] = np.reshape(out[0], (1, -1) + ones[2:])
        out[1] = np.reshape(out[1], (-1, 1) + ones[2:])
    if not sparse:
        out = list(broadcast_arrays(*out))
    if copy:  # (NumPy's x.copy(): C order, which a later ravel(order="K") reads)
        out = [np.copy(o, order="C") for o in out]
    return tuple(out)


# --- flips and rolls -----------------------------------------------------------------------------

@function(np.flip)
def flip(m, axis=None):
    axes = range(m.ndim) if axis is None else normalize_axis_tuple(axis, m.ndim)
    return getitem(m, tuple(slice(None, None, -1) if d in axes else slice(None)
                            for d in range(m.ndim)))


@function(np.fliplr)
def fliplr(m):
    if m.ndim < 2:
        raise ValueError("Input must be >= 2-d.")
    return flip(m, 1)


@function(np.flipud)
def flipud(m):
    if m.ndim < 1:
        raise ValueError("Input must be >= 1-d.")
    return flip(m, 0)


@function(np.roll)
def roll(a, shift, axis=None):
    if axis is None:
        return np.reshape(roll(np.ravel(a), shift, 0), a.shape)
    shifts = {}
    for s, ax in np.broadcast(shift, axis):
        ax = normalize_axis_index(int(ax), a.ndim)
        shifts[ax] = shifts.get(ax, 0) + int(s)
    result = a
    for ax, s in shifts.items():
        n = a.shape[ax]
        s = s % n if n else 0
        if s:
            result = np.concatenate([result[_slice(ax, slice(n - s, n))],
                                     result[_slice(ax, slice(0, n - s))]], axis=ax)
    return np.copy(a) if result is a else result


@function(np.rot90)
def rot90(m, k=1, axes=(0, 1)):
    axes = tuple(axes)
    if len(axes) != 2:
        raise ValueError("len(axes) must be 2.")
    if axes[0] == axes[1] or abs(axes[0] - axes[1]) == m.ndim:
        raise ValueError("Axes must be different.")
    a0, a1 = (normalize_axis_index(ax, m.ndim) for ax in axes)
    k %= 4
    if k == 0:
        return m[:]
    if k == 2:
        return flip(flip(m, a0), a1)
    order = list(range(m.ndim))
    order[a0], order[a1] = order[a1], order[a0]
    if k == 1:
        return transpose(flip(m, a1), order)
    return flip(transpose(m, order), a1)


@function(np.trim_zeros)
def trim_zeros(filt, trim="fb", axis=None):
    """A slice of ``filt`` (a view, as NumPy's): the bounding box of its nonzero entries
    along ``axis`` (every axis when None), trimmed at the front ('f') and/or back ('b')."""
    value = raw(filt)
    trim = trim.lower()
    if any(c not in "fb" for c in trim):
        raise ValueError(f"unexpected character(s) in `trim`: {trim!r}")
    axes = range(value.ndim) if axis is None else normalize_axis_tuple(axis, value.ndim)
    nonzero = value != 0
    idx = [slice(None)] * value.ndim
    for d in axes:
        hit = np.flatnonzero(np.any(nonzero, axis=tuple(e for e in range(value.ndim) if e != d)))
        lo, hi = (int(hit[0]), int(hit[-1]) + 1) if hit.size else (0, 0)
        idx[d] = slice(lo if "f" in trim else 0,
                       hi if "b" in trim else (value.shape[d] if hit.size or "f" in trim else 0))
    return getitem(filt, tuple(idx))


@function(np.lib.stride_tricks.sliding_window_view)
def sliding_window_view(x, window_shape, axis=None, *, subok=False, writeable=False):
    """The windows as a read-only view of ``x`` (NumPy's default): a gather of ``x``'s
    entries, linked to ``x`` so that writes into ``x`` show through. ``writeable=True`` is
    refused: the windows overlap, so a write through them would depend on NumPy's order."""
    if writeable:
        raise DifferentiationError(
            "sliding_window_view(..., writeable=True) on a traced array: the windows overlap, "
            "so what a write through them leaves depends on the order of the writes. Write "
            "into the array itself instead.")
    value = raw(x)
    positions = np.lib.stride_tricks.sliding_window_view(
        np.arange(value.size).reshape(value.shape), window_shape, axis)
    return index_view(x, np.unravel_index(positions, value.shape), READ_ONLY_GATHER)


# --- padding -------------------------------------------------------------------------------------

_INDEX_MODES = ("edge", "reflect", "symmetric", "wrap")


@function(np.pad)
def pad(array, pad_width, mode="constant", **kwargs):
    """Constant padding pads with zeros (its vjp is a slice) and adds the constants; the other
    modes copy entries of the array, so they gather through an index map computed once by
    padding the array of flat positions with the same mode."""
    widths = np.asarray(pad_width)
    if widths.dtype.kind not in "iu":
        raise TypeError("`pad_width` must be of integral type.")
    widths = np.broadcast_to(widths, (array.ndim, 2))
    if (widths < 0).any():
        raise ValueError("index can't contain negative values")
    widths = tuple((int(lo), int(hi)) for lo, hi in widths)
    if mode == "constant":
        values = kwargs.pop("constant_values", 0)
        if kwargs:
            raise ValueError(f"unsupported keyword arguments for mode 'constant': {set(kwargs)}")
        if type(values) is Tracer or any(type(v) is Tracer for v in np.ravel(
                np.asarray(values, dtype=object))):
            raise DifferentiationError(
                "np.pad(..., constant_values=traced) is not supported: pad with zeros and add "
                "the constants times a padded mask")
        out = PAD(array, widths=widths)
        if np.any(np.asarray(values) != 0):
            out = out + np.pad(module_of(array).zeros(array.shape, array.dtype), widths,
                               constant_values=values)
        return out
    if mode in _INDEX_MODES:
        if kwargs.get("reflect_type", "even") != "even":
            raise DifferentiationError(
                "np.pad(..., reflect_type='odd') is not supported on traced arrays")
        source = np.pad(np.arange(array.size).reshape(array.shape), widths, mode=mode,
                        **kwargs)
        out = getitem(np.ravel(array), source)
        # NumPy's np.pad: F-ordered for an F-ordered array, else C
        return COPY(out, order="F") if _fortran(array) else c_ordered(out)
    raise DifferentiationError(
        f"np.pad(mode={mode!r}) is not supported on traced arrays; supported modes: constant, "
        + ", ".join(_INDEX_MODES))


# --- diagonals and triangles ---------------------------------------------------------------------

@function(np.diagonal)
def diagonal(a, offset=0, axis1=0, axis2=1):
    if a.ndim < 2:  # (NumPy's check, before the axes')
        raise ValueError("diag requires an array of at least two dimensions")
    axis1, axis2 = normalize_axis_index(axis1, a.ndim), normalize_axis_index(axis2, a.ndim)
    if axis1 == axis2:
        raise ValueError("axis1 and axis2 cannot be the same")
    return DIAGONAL(a, offset=int(offset), axis1=axis1, axis2=axis2)


@function(np.trace)
def trace(a, offset=0, axis1=0, axis2=1, dtype=None, out=None):
    d = diagonal(a, offset, axis1, axis2)
    result = np.sum(d if dtype is None else d.astype(dtype), axis=-1)
    return into_out(result, out, "np.trace")


@function(np.diag)
def diag(v, k=0):
    v = as_array(v)
    if v.ndim == 1:
        n = v.shape[0] + abs(k)
        i = np.arange(v.shape[0])
        idx = (i, i + k) if k >= 0 else (i - k, i)
        return SETITEM(module_of(v).zeros((n, n), v.dtype), v, idx=idx, inplace=True)
    if v.ndim == 2:
        return diagonal(v, k)
    raise ValueError("Input must be 1- or 2-d.")


@function(np.diagflat)
def diagflat(v, k=0):
    return diag(np.ravel(v), k)


@function(np.tril)
def tril(m, k=0):
    return _triangle(m, np.tri(*m.shape[-2:], k=k, dtype=bool))


@function(np.triu)
def triu(m, k=0):
    return _triangle(m, ~np.tri(*m.shape[-2:], k=k - 1, dtype=bool))


# --- helpers -----------------------------------------------------------------------------------



def _slice(axis, s):
    return (slice(None),) * axis + (s,)


def _undiagonal(g, shape, offset, axis1, axis2):
    """The transpose of ``np.diagonal``: ``g`` laid on the diagonal of zeros of ``shape``."""
    rest = tuple(n for d, n in enumerate(shape) if d not in (axis1, axis2))
    i = np.arange(g.shape[-1])
    idx = (Ellipsis, i, i + offset) if offset >= 0 else (Ellipsis, i - offset, i)
    z = module_of(g).zeros(rest + (shape[axis1], shape[axis2]), g.dtype)  # (CuPy g: CuPy z)
    return np.moveaxis(SETITEM(z, g, idx=idx, inplace=True), (-2, -1), (axis1, axis2))


def _triangle(m, keep):
    """``m`` with the entries outside ``keep`` (the last two axes) set to zero, laid out as
    NumPy's ``np.where(keep, m, 0)``."""
    if m.ndim < 2:
        m = np.broadcast_to(m, keep.shape)
    out = SETITEM(m, 0, idx=(Ellipsis, ~keep), inplace=False)
    strides = getattr(raw(m), "strides", None)  # (none: a JAX array's)
    if strides is None:
        return out
    return laid_out(out, _memory_axes(m.shape, np.broadcast_to(keep, m.shape).strides, strides))


