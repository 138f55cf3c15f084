"""Writes into traced arrays: ``t[i] = v``, ``t += y``, ``out=``, ``np.copyto`` and friends.

A Tracer is a mutable handle. A write records a functional update (``setitem``) and rebinds
the handle to its result, so every Python name bound to the handle sees the write. The raw
buffer is written in place when the handle owns it (no rule kept it for the backward pass, it
is not the caller's array, no other level shares it): a fill loop stays O(n). Otherwise the
update copies first (copy-on-write).

Views follow NumPy. A view handle (from basic indexing, reshape, transpose ... when NumPy
returned a view) remembers its base; a write through it is written back into the base, and a
write into a base re-derives every live view from the new value, so both see what NumPy would
show. A view whose write cannot be expressed on its base is refused with an error naming it.
"""

from __future__ import annotations

import threading
import weakref

import numpy as np

from fluxml.ad import errors
from fluxml.ad.core import DifferentiationError, Tracer, bind, raw
from fluxml.ad.rules import indexing

MAX_CHAIN = 16  # a longer chain of views is collapsed into one link to the array it views


def link_view(out, base, prim, params):
    """After ``out = prim(base, **params)`` was recorded by a trace (``prim.view``): make
    ``out`` a view handle of ``base`` when NumPy returned a view (shared memory)."""
    if type(base) is not Tracer or base._trace is not out._trace:
        return
    if not np.may_share_memory(raw(out._val), raw(base._val)):
        return
    link(out, base, prim, params)


def link(view, base, prim, params):
    """Record that ``view`` = ``prim(base, **params)`` shares ``base``'s memory.

    Writes through a view go up the chain of bases (and refreshes down it), so chains must
    stay short: like NumPy, which points every view at the array owning the memory, a chain
    longer than ``MAX_CHAIN`` is collapsed into one link to its root, a gather of the entries
    it selects (a loop of ``u = u[:]`` or ``u = u.reshape(-1)`` must not build a chain that
    writes recurse through). Short chains are kept: collapsing costs a pass over the root."""
    if base._view is not None and prim not in indexing.VALUE_VIEWS:
        steps, root = [(prim, params)], base
        while root._view is not None and root._view[1] not in indexing.VALUE_VIEWS:
            parent, p, pp = root._view
            steps.append((p, pp))
            root = parent
        if len(steps) > MAX_CHAIN:
            base, prim, params = _collapse(root, steps[::-1])
    view._view = (base, prim, params)
    view._owned = False
    if base._views is None:
        base._views = []
    base._views.append(weakref.ref(view))


def _collapse(root, steps):
    """The view made by applying ``steps`` [(prim, params)] to ``root``, as one link."""
    shape = raw(root).shape
    positions = np.arange(int(np.prod(shape)), dtype=np.intp).reshape(shape)
    for prim, params in steps:
        positions = prim.impl(positions, **params)
    idx = np.unravel_index(positions, shape)
    if np.ndim(positions) == 0:  # a 0-d view: a basic index that keeps it an array
        idx = tuple(int(i) for i in idx) + (Ellipsis,)
    read_only = any(prim in indexing.READ_ONLY_VIEWS for prim, _ in steps)
    return root, indexing.READ_ONLY_GATHER if read_only else indexing.GETITEM, {"idx": idx}


def index_view(base, idx, prim=None):
    """``base[idx]`` for an advanced ``idx``, as a view handle of ``base``: NumPy made a view
    (einsum's diagonals, sliding windows) where fluxml gathers a copy, so the copy is linked to
    ``base``: writes through it reach ``base``, and writes into ``base`` refresh it. ``prim``
    (a gather with the rules of getitem, not in ``VIEW_INVERSES``) makes a read-only view."""
    prim = prim or indexing.GETITEM
    view = bind(prim, (base,), {"idx": idx})
    if type(view) is Tracer and view._trace is base._trace:
        link(view, base, prim, {"idx": idx})
    return view


def _check_level(h, value, what):
    if type(value) is Tracer and value._trace.level > h._trace.level:
        _note_outer_write(h)  # (its trace names the branch)
        raise DifferentiationError(
            f"{what}: a value traced by an inner transform was written into an array of an "
            "outer one (for example a buffer created outside the function being "
            "differentiated). Allocate the buffer inside the function, e.g. "
            "`buf = np.zeros_like(x)`.")


def _basic_key(idx):
    """A comparable form of a basic index (ints, slices, None, Ellipsis), else None."""
    items = idx if isinstance(idx, tuple) else (idx,)
    key = []
    for i in items:
        if i is None or i is Ellipsis or isinstance(i, (int, np.integer)):
            key.append(i if not isinstance(i, np.integer) else int(i))
        elif isinstance(i, slice):
            key.append((i.start, i.stop, i.step))
        else:
            return None
    return tuple(key)


def _is_current_view(h, idx, value):
    """True when ``value`` is a live view of ``h`` at ``idx`` (``h[idx] += v`` writes it back)."""
    if type(value) is not Tracer or value._view is None:
        return False
    base, prim, params = value._view
    if base is not h or prim is not indexing.GETITEM:
        return False
    key = _basic_key(idx)
    return key is not None and key == _basic_key(params["idx"])


def setitem(h, idx, value):
    """``h[idx] = value`` on a traced array."""
    h._trace.check_open()
    if isinstance(raw(h), np.generic):  # NumPy scalars are immutable
        raise TypeError(f"'{type(raw(h)).__name__}' object does not support item assignment")
    _check_level(h, value, "x[...] = value")
    idx = indexing.check_index(idx)
    if _is_current_view(h, idx, value):
        return  # the write already happened through the view
    if type(value) is Tracer and not indexing._is_basic(idx) and indexing.has_repeats(idx, h.shape):
        reduced = indexing.last_writes(idx, value, h.shape)
        if reduced is None:
            raise DifferentiationError(
                "x[idx] = v with an index that names one element twice (mixed with slices): "
                "which value wins is unspecified, so its derivative is too. Use unique "
                "indices, or accumulate with np.add.at(x, idx, v) / fl.index_add(x, idx, v).")
        idx, value = reduced  # NumPy writes in order: the last write to an element stays
    if h._view is not None:
        new = bind(indexing.SETITEM, (h, value), {"idx": idx, "inplace": False})
        _write_through(h, new)
        return
    new = bind(indexing.SETITEM, (h, value), {"idx": idx, "inplace": _writable(h)})
    _rebind(h, new)


def _writable(h):
    """May the write into ``h`` go into its buffer in place? Only when ``h`` owns it (no rule
    kept it, it is not the caller's array, not a view), and so does each handle under it at
    lower levels (under an outer transform ``h``'s value is itself a handle)."""
    while h._owned and h._view is None:
        h = h._val
        if type(h) is not Tracer:
            return True
    return False


def assign(h, new):
    """Make the whole of ``h`` equal ``new``, the result just computed by ``h += y`` or an
    ``out=`` ufunc: a fresh array is taken over by ``h``; anything else is copied in."""
    _check_level(h, new, "in-place update")
    if (type(new) is not Tracer or new._trace is not h._trace or new._view is not None
            or not new._owned):  # not provably fresh (a rule kept it, or it is a handle)
        setitem(h, Ellipsis, new)  # constants and views are copied in
    elif h._view is not None:
        _write_through(h, new)
    else:
        _rebind(h, new)


# Traces told of the writes into handles of outer levels (lower ones) while they are the
# innermost watching, per thread (as the transforms' stacks): a branch or loop body of
# fl.compile is traced once, so such a write (`self.count += 1` on a model the body closes
# over) would happen once, at trace time, not at each run (compiler/subprogram.py counts
# them in ``outer_writes``)
class _Watchers(threading.local):
    def __init__(self):
        self.stack: list = []


outer_write_watchers = _Watchers()


def _note_outer_write(h) -> None:
    """Count a write into handle ``h`` for the innermost watching trace, if ``h`` is of an
    outer level."""
    watching = outer_write_watchers.stack
    if watching and h._trace.level < watching[-1].level:
        watching[-1].outer_writes += 1


def _rebind(h, new):
    """Point handle ``h`` at the value and node of ``new`` (a fresh array), then re-derive the
    views of ``h`` from it."""
    if new._trace is not h._trace:  # cannot happen after _check_level; a guard for the engine
        raise DifferentiationError("internal error: rebinding a handle across trace levels")
    _note_outer_write(h)
    val = new._val
    if isinstance(val, np.generic) and isinstance(h._val, np.ndarray):
        # a 0-d array stays one, as `a += 1` keeps it eagerly (NumPy's result is a scalar,
        # which the next `a += 1` would take for an immutable number, and not write in place)
        val = np.asarray(val)
    h._val = val
    h._box = new._box
    h._owned = new._owned
    h._trace.rebound = True
    if h._views:
        _refresh_views(h)


def resize_handle(h, new):
    """Rebind ``h`` (no view, no live views) to ``new``, a fresh array of another shape
    (``x.resize``, ``x.shape = ...``)."""
    _check_level(h, new, "resizing")
    h._views = None
    _rebind(h, new)


def _refresh_views(h):
    views, h._views = h._views, None
    alive = []
    for ref in views:
        w = ref()
        if w is None:
            continue
        _, prim, params = w._view
        fresh = bind(prim, (h,), params)
        w._val = fresh._val
        w._box = fresh._box
        alive.append(ref)
        if w._views:
            _refresh_views(w)
    h._views = alive  # links made by the binds above are dropped: w keeps its own


def _write_through(view, new):
    """Write the new value of ``view`` into its base, as NumPy's shared memory would."""
    base, prim, params = view._view
    if prim is indexing.GETITEM:
        setitem(base, params["idx"], new)
        return
    inverse = indexing.VIEW_INVERSES.get(prim)
    if prim in indexing.VALUE_VIEWS:
        raise DifferentiationError(
            f"cannot write through the {prim.name} part of a traced complex array (`z.{prim.name}"
            f"[...] = v`, `z.{prim.name} += v`): fluxml cannot express the write on the array "
            "it views. Build the array from its parts instead: `z = v + 1j * z.imag` (or "
            "`z = z.real + 1j * v`).")
    if prim in indexing.READ_ONLY_VIEWS:
        raise DifferentiationError(
            f"cannot write through the result of {prim.name}: NumPy returns it as a read-only "
            "view too (assignment destination is read-only). Copy it first (`y = y.copy()`) "
            "or write into the array it views.")
    if inverse is None:
        raise DifferentiationError(
            f"cannot write through a view made by {prim.name}: fluxml cannot express the write "
            "on the array it views. Copy it first (`y = y.copy()`) or write into the base.")
    setitem(base, Ellipsis, inverse(new, base, params))


def augment(h, ufunc, other, result):
    """``h op= other`` (``+=``, ``*=`` ...), given ``result = ufunc(h, other)``: NumPy's
    in-place ufunc with its casting rule."""
    if isinstance(raw(h), np.generic):  # a NumPy scalar is immutable: `h += 1` rebinds
        return result
    if result is h or result is other:  # a rule that passed an input through: copy it
        result = np.copy(result)
    _cast_into(h, result, f"{ufunc.__name__} (in place)")
    assign(h, result if raw(result).dtype == h.dtype else result.astype(h.dtype))
    return h


def _cast_into(h, result, what):
    r = raw(result)
    if r.shape != h.shape:
        raise ValueError(
            f"{what}: non-broadcastable output operand with shape {h.shape} doesn't match "
            f"the broadcast shape {r.shape}")
    if not np.can_cast(r.dtype, h.dtype, casting="same_kind"):
        raise TypeError(f"{what}: cannot cast {r.dtype} into the {h.dtype} array in place")


def assign_out(target, result, what):
    """The ``out=`` argument of a ufunc."""
    if type(target) is not Tracer:
        if type(result) is Tracer:
            raise DifferentiationError(
                f"{what}(..., out=buf): `buf` is a plain NumPy array, but the result is traced; "
                "writing it there would cut its gradient (`buf += traced` lands here too).\n"
                "Possible fixes:\n" + errors.in_compile() +
                "  - allocate the buffer from a traced value: `buf = np.zeros_like(x)`;\n"
                "  - if `buf` is a copy of a constant array (`u = u0.copy()`), make it a traced "
                "copy instead: `u = np.array(u0, like=x)` (x any traced value), or pass `u0` "
                "as an argument of the differentiated function;\n"
                "  - or use the returned value: `buf = buf + traced`.")
        np.copyto(target, result)
        return
    _cast_into(target, result, what)
    assign(target, result if raw(result).dtype == target.dtype else result.astype(target.dtype))


def into_out(result, out, what):
    """``result``, or, where an ``out=`` argument is given, ``result`` written into it
    (:func:`assign_out`) and ``out``: what NumPy functions taking ``out=`` return."""
    if out is None:
        return result
    assign_out(out, result, what)
    return out


def ufunc_at(ufunc, a, idx, b):
    """``np.add.at(a, idx, b)`` and friends: unbuffered, repeated indices accumulate."""
    if type(a) is not Tracer:
        if type(b) is Tracer:
            raise DifferentiationError(
                f"np.{ufunc.__name__}.at(a, idx, b): `a` is a plain NumPy array but `b` is "
                "traced; use `a = fl.index_add(a, idx, b)` or allocate `a` with "
                "np.zeros_like(traced).")
        ufunc.at(a, idx, raw(b))
        return None
    if ufunc is np.add:
        new = indexing.index_add(a, idx, b)
    elif ufunc is np.subtract:
        new = indexing.index_add(a, idx, -b)
    else:
        raise DifferentiationError(
            f"np.{ufunc.__name__}.at on traced arrays is not supported; np.add.at and "
            "np.subtract.at are (or use fl.index_add).")
    assign(a, new)
    return None
