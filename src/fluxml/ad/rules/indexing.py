"""Indexing: ``x[idx]``, the functional write behind ``x[idx] = v``, scatter-add, take."""

from __future__ import annotations

import numpy as np

from fluxml._kernel_modules import on_kernel_library
from fluxml.ad.arrays import add_at, as_array, host_array, module_of
from fluxml.ad.core import DifferentiationError, Tracer, raw
from fluxml.ad.define import defjvp, deflinear, defvjp, function, primitive
from fluxml.ad.sweep import Sparse


def _getitem(x, *, idx):
    return x[idx]


def _setitem(x, v, *, idx, inplace):
    if isinstance(x, np.generic):  # a 0-d cotangent may come as a NumPy scalar (immutable)
        x = np.array(x)
    elif not inplace or type(x) is not np.ndarray:
        x = np.array(x, copy=True) if not hasattr(x, "copy") else _copy(x)
    x[idx] = v
    return x


def _copy(x):
    """A copy of ``x`` laid out as it is (which ``ravel(order="K")`` reads later); another
    library's array (JAX's takes no ``order``) as its ``copy`` makes it."""
    return x.copy(order="K") if type(x) is np.ndarray else x.copy()


def _index_add(x, v, *, idx):
    x = _copy(x)
    add_at(x, idx, v)
    return x


GETITEM = primitive("getitem", _getitem, keeps_inputs=False, keeps_output=False, view=True)
SETITEM = primitive("setitem", _setitem, keeps_inputs=False, keeps_output=False)
INDEX_ADD = primitive("index_add", _index_add, keeps_inputs=False, keeps_output=False)


def _zeros(x):
    return module_of(x).zeros(x.shape, x.dtype)  # (CuPy's for a CuPy x)


def _scatter(g, x, idx):
    """The transpose of ``x[idx]``: ``g`` placed at ``idx`` in zeros shaped like ``x``, as a
    sparse contribution that the sweep adds into its accumulator for ``x`` in place
    (reading ``x[i]`` in a loop stays linear; a traced ``g`` is added by a recorded write)."""
    basic = _is_basic(idx)
    if basic or type(g) is not Tracer:
        return Sparse(x.shape, x.dtype, idx, g, basic)
    return INDEX_ADD(_zeros(x), g, idx=idx)


deflinear(GETITEM)
defvjp(GETITEM, lambda g, ans, x, idx: _scatter(g, x, idx))

# A gather that NumPy returns as a read-only view (sliding windows): written through, refused.
READ_ONLY_GATHER = primitive("sliding_window_view", _getitem, keeps_inputs=False,
                             keeps_output=False)
deflinear(READ_ONLY_GATHER)
defvjp(READ_ONLY_GATHER, lambda g, ans, x, idx: _scatter(g, x, idx))

defvjp(SETITEM,
       lambda g, ans, x, v, idx, inplace: SETITEM(g, 0, idx=idx, inplace=False),
       lambda g, ans, x, v, idx, inplace: GETITEM(g, idx=idx))
def _zero_written(g, ans, x, v, idx, inplace):
    """The cotangent of ``x`` in ``x[idx] = v``, made from ``g`` in place (the sweep owns
    ``g``): the written entries are zeroed, so that a fill loop stays linear."""
    if type(g) is Tracer:
        if isinstance(raw(g), np.generic):  # a traced NumPy scalar is immutable
            return SETITEM(g, 0, idx=idx, inplace=False)
        g[idx] = 0  # a traced cotangent is written as any traced array (ad/mutation.py)
        return g
    return _setitem(g, 0, idx=idx, inplace=True)


SETITEM.vjp_overwrite = (0, _zero_written)
SETITEM.vjps = None  # the sweep takes its general path, which knows vjp_overwrite


def _setitem_tangent(tangents, ans, args, params, reuse):
    """Forward mode of a write: the tangent of ``x`` with the tangent of ``v`` written at
    ``idx``. When the write mutates a handle (``inplace``) whose tangent no one else holds,
    that tangent is updated in place."""
    x, idx = args[0], params["idx"]
    tx, tv = tangents.get(0), tangents.get(1)
    value = 0 if tv is None else tv
    if tx is None:
        base = module_of(ans).zeros(x.shape, ans.dtype)  # (CuPy's for a CuPy x)
    elif reuse and params["inplace"] and type(tx) is np.ndarray:
        base = tx
    elif (reuse and params["inplace"] and type(tx) is Tracer
          and not isinstance(raw(tx), np.generic)
          and (type(value) is not Tracer or value._trace.level <= tx._trace.level)):
        tx[idx] = value  # a traced tangent: written as any traced array (ad/mutation.py)
        return tx
    else:
        base = np.copy(tx)
    return SETITEM(base, value, idx=idx, inplace=True)


SETITEM.jvp_overwrite = _setitem_tangent
defjvp(SETITEM,
       lambda t, ans, x, v, idx, inplace: SETITEM(t, 0, idx=idx, inplace=False),
       lambda t, ans, x, v, idx, inplace: SETITEM(_zeros(x), t, idx=idx, inplace=True))

defvjp(INDEX_ADD,
       lambda g, ans, x, v, idx: g,
       lambda g, ans, x, v, idx: GETITEM(g, idx=idx))
defjvp(INDEX_ADD,
       lambda t, ans, x, v, idx: t,
       lambda t, ans, x, v, idx: INDEX_ADD(_zeros(x), t, idx=idx))

# Views written back into their base: prim -> (new view value, base, params) -> new base value.
# Shape rules add reshape and transpose here.
VIEW_INVERSES: dict = {}
# Views that NumPy itself returns read-only (diagonal, broadcast_to, sliding windows): the
# refusal of a write through one says so. Shape rules add theirs.
READ_ONLY_VIEWS: set = {READ_ONLY_GATHER}
# Views whose entries are not entries of their base (a complex array's real or imaginary
# part): a long chain of views is collapsed into one gather above them, never through them
VALUE_VIEWS: set = set()


def _is_basic(idx) -> bool:
    items = idx if isinstance(idx, tuple) else (idx,)
    return all(i is None or i is Ellipsis or isinstance(i, (int, np.integer, slice))
               for i in items)


def concrete_index(i):
    if raw(i) is i:  # an fl.compile value: integer indices are recorded, masks refused
        if i.dtype.kind in "iu":
            return
        if i.dtype.kind == "b":
            raise i._trace.concrete(
                "indexing with a traced boolean mask (the result's shape depends on the "
                "values; use np.where(mask, x, 0) instead)")
    raise DifferentiationError(
        "a traced float array was used as an index. Indices must be integers or booleans: "
        "compute them from concrete values, or use `x > 0` style masks (plain boolean arrays).")


def check_index(idx):
    """Indices with traced values are refused. Index arrays and lists are copied (as arrays,
    which NumPy reads them as): the tape keeps the index for the backward pass, and a later
    write into the caller's index array must not change it."""
    t = type(idx)
    if t is Tracer:
        concrete_index(idx)
    if t is tuple:
        for i in idx:
            if type(i) is Tracer:
                concrete_index(i)
            if type(i) is np.ndarray or type(i) is list:
                return tuple(_own_index(i) for i in idx)
    elif t is np.ndarray or t is list:
        return _own_index(idx)
    return idx


def _own_index(i):
    if type(i) is np.ndarray:
        return i.copy()
    if type(i) is list:
        return np.array(i)
    return i


def has_repeats(idx, shape) -> bool:
    """True when an advanced integer index names one element of an array of ``shape`` twice
    (assignment through it keeps the last write, and only that one has a derivative): its
    integer arrays taken together, each as the non-negative index of the axis it indexes
    (``-2`` and ``4`` name one element of a length-6 axis: compared as written, they were two,
    and both writes got the derivative)."""
    items = _host_items(idx)
    axes = _axes(items, len(shape))
    arrays = [i % max(1, shape[axes[k]] if axes[k] < len(shape) else 1)  # (too many
              for k, i in enumerate(items)  # indices: NumPy's own error, after)
              if isinstance(i, np.ndarray) and i.dtype.kind in "iu"]
    if not arrays:
        return False
    flat = np.stack([a.ravel() for a in np.broadcast_arrays(*arrays)], axis=1)
    return len(np.unique(flat, axis=0)) < len(flat)


def _axes(items, ndim) -> list:
    """The axis of the array that each part of an index starts at (``None`` and ``...``
    included: ``None`` takes none, ``...`` the axes the others leave, a boolean array as many
    as it has; every other part one)."""
    def width(i):
        if i is None or i is Ellipsis:
            return 0
        return i.ndim if isinstance(i, np.ndarray) and i.dtype == bool else 1

    rest = ndim - sum(width(i) for i in items)
    axes, at = [], 0
    for i in items:
        axes.append(at)
        at += rest if i is Ellipsis else width(i)
    return axes


def _host_items(idx) -> tuple:
    """The parts of an index, its lists and index arrays as NumPy arrays: a GPU's copied to
    the host, where its repeats are found (a write through repeats keeps the last value, and
    only the last gets a derivative: missed, a GPU's index gave both)."""
    items = idx if isinstance(idx, tuple) else (idx,)
    return tuple(np.asarray(i) if isinstance(i, list) else
                 host_array(i) if on_kernel_library(i) else i for i in items)


def last_writes(idx, value, shape):
    """``(idx, value)`` reduced to the last write to each element, for an index made only of
    integer arrays that names elements twice (NumPy writes in order, so the last one stays);
    None when the index has other parts."""
    items = _host_items(idx)
    if not all(isinstance(i, np.ndarray) and i.dtype.kind in "iu" for i in items):
        return None
    arrays = np.broadcast_arrays(*items)
    coords = np.stack([a.ravel() for a in arrays], axis=1) % np.array(shape[:len(items)])
    k = len(coords)
    _, first_in_reversed = np.unique(coords[::-1], axis=0, return_index=True)
    keep = np.sort(k - 1 - first_in_reversed)
    target = arrays[0].shape + tuple(shape[len(items):])
    flat = np.reshape(np.broadcast_to(value, target), (k,) + tuple(shape[len(items):]))
    return tuple(coords[keep].T), GETITEM(flat, idx=keep)


def indexable_by(a, index):
    """``a``, ready to be indexed by ``index``: a plain array becomes a constant of the program
    when ``index`` is known only when an ``fl.compile`` program runs (an IR tracer), since a
    NumPy array cannot take a traced index (rules that pick segments or bins on the values
    index their plain arguments with such indices)."""
    if type(index) is Tracer and type(a) is not Tracer:
        return index._trace.constant(np.asarray(a))
    if type(index) is Tracer and type(raw(a)) is not Tracer:
        # a transform's value over a plain array (a closed-over array that fl.gradient
        # differentiates inside the compiled function): times a 1 of the program, its value
        # is the program's too (-0.0 and NaN kept), and its derivative passes through
        return a * index._trace.constant(np.ones((), raw(a).dtype))
    return a


def getitem(x, idx):
    """``x[idx]`` on a traced array."""
    return GETITEM(x, idx=check_index(idx))


def index_add(x, idx, v):
    """``x`` with ``v`` added at ``idx``, repeated indices accumulating (``np.add.at``),
    as a new array; differentiable in ``x`` and ``v``.

    >>> import numpy as np, fluxml as fl
    >>> fl.index_add(np.zeros(3), [0, 0, 2], np.ones(3))
    array([2., 0., 1.])
    """
    idx = check_index(idx)
    if type(x) is not Tracer and type(v) is not Tracer:
        return _index_add(as_array(x), as_array(v), idx=idx)
    return INDEX_ADD(x, v, idx=idx)


@function(np.take)
def take(a, indices, axis=None, out=None, mode="raise"):
    if out is not None:
        raise DifferentiationError("np.take(..., out=) is not supported on traced arrays")
    indices = raw(indices)
    if type(indices) is not Tracer:  # (under fl.compile, traced indices are recorded; a
        indices = as_array(indices)  # GPU's index array stays the GPU's)
    if np.size(raw(a)) == 0:  # nothing is taken (NumPy accepts any index then)
        return np.take(raw(a), indices, axis=axis, mode=mode)
    if mode == "wrap":
        n = a.size if axis is None else a.shape[axis]
        indices = np.mod(indices, n)
    elif mode == "clip":
        n = a.size if axis is None else a.shape[axis]
        indices = np.clip(indices, 0, n - 1)
    # (NumPy's take returns a new C-ordered array, which ravel(order="K") reads later; the
    # gather keeps the layout of the array taken from)
    # lazy: shape builds on this module
    from fluxml.ad.rules.layouts import c_ordered

    if axis is None:
        return c_ordered(getitem(np.ravel(a), indices))
    axis = axis % a.ndim
    return c_ordered(getitem(a, (slice(None),) * axis + (indices,)))


@function(np.take_along_axis)
def take_along_axis(arr, indices, axis=-1):
    indices = raw(indices)
    if type(indices) is not Tracer and not hasattr(indices, "dtype"):  # a list: an array
        indices = np.asarray(indices)  # (CuPy's indices stay CuPy's; traced ones, under
    if axis is None:  # fl.compile, are recorded)
        return getitem(np.ravel(arr), indices)
    axis = axis % arr.ndim
    shape = [max(n, m) if d != axis else m
             for d, (n, m) in enumerate(zip(arr.shape, indices.shape))]
    if type(indices) is np.ndarray or type(indices) is Tracer:
        grids = np.ogrid[tuple(slice(n) for n in shape)]
    else:  # another library's indices (CuPy's): grids of that library, not NumPy's mixed in
        grids = [np.arange(n, like=indices).reshape([-1 if e == d else 1 for e in
                                                      range(len(shape))])
                 for d, n in enumerate(shape)]
    idx = tuple(indices if d == axis else grids[d] for d in range(arr.ndim))
    return getitem(arr, idx)
