"""The ``xla`` back end's indexing: reads (``x[idx]``, with out-of-range entries of a run-time
index read as NaN) and writes (``x[idx] = v`` as a scatter, or without one where the index
reaches every entry) written as ``jnp`` source, and the index itself as Python writes it.

>>> from fluxml.compiler.xla_indexing import _whole_index
>>> _whole_index((slice(None), slice(None, None, -1)), (2, 3))
(1,)
"""

from __future__ import annotations

import numpy as np

from fluxml.compiler.ir import Var, _slots


def _scatter_write(em, eqn, dtype: str) -> str:
    """``x[idx] = v`` (``dtype``: ``x``'s, as source): a scatter (``x.at[idx].set(v)``),
    except where ``idx`` reaches every entry of ``x`` (``...``, ``:`` or ``::-1`` on each
    axis): then ``v`` cast to ``x``'s dtype, broadcast to its shape and reversed along the
    axes stepped backwards. (Besides saving the scatter, this keeps XLA's CPU compiler of
    jaxlib 0.10.2 from aborting the process: its algebraic simplifier failed a check,
    "Invalid binary instruction opcode map", on a whole-array scatter of a computed value
    feeding a reversed whole-array scatter, which the gradient of ``np.flip`` after
    ``x[...] = f(x)`` records.) A value with more axes than the part it is written to loses
    its leading ones first, as NumPy's assignment drops them (JAX's refuses them)."""
    x, v, out, idx = eqn.inputs[0], eqn.inputs[1], eqn.outs[0], eqn.params["idx"]
    value = em.expr(v)
    target = _target_ndim(idx, out.shape)
    v_shape = v.shape if type(v) is Var else np.shape(v)
    if target is not None and len(v_shape) > target:
        value = f"jnp.reshape({value}, {tuple(v_shape[len(v_shape) - target:])!r})"
    flipped = _whole_index(idx, out.shape)
    if flipped is None:
        base = em.expr(x)
        return f"jnp.asarray({base}).at[{_index(em, idx)}].set({value})"
    value = (f"jnp.broadcast_to(jnp.asarray({value}).astype({dtype}), "
             f"{tuple(out.shape)!r})")
    return f"jnp.flip({value}, axis={flipped!r})" if flipped else value


def _target_ndim(idx, shape) -> int | None:
    """The number of axes of ``x[idx]`` for an array ``x`` of ``shape``, the index's traced
    arrays and bounds stood in for by zeros (an integer array by one of its rank and size 1:
    the result's rank depends on the index arrays' ranks alone); None where NumPy cannot say.
    ``x`` is a read-only view of one value, so that nothing of its size is allocated (a
    gather of a whole index's rows took memory at compile time)."""
    def stand_in(i):
        if type(i) is Var:
            return np.zeros(i.shape if np.dtype(i.dtype) == np.bool_ else (1,) * len(i.shape),
                            i.dtype)
        if type(i) is slice:
            return slice(*(0 if type(b) is Var else b for b in (i.start, i.stop, i.step)))
        return i

    items = tuple(map(stand_in, idx)) if type(idx) is tuple else stand_in(idx)
    # the index arrays' shapes must broadcast as the real ones (the stand-ins of size 1
    # broadcast whatever they are; an all-False mask stands in for a mask: (0,) entries)
    arrays = [((0,) if np.dtype(i.dtype) == np.bool_ else i.shape)
              for i in (idx if type(idx) is tuple else (idx,)) if type(i) is Var]
    try:
        np.broadcast_shapes(*arrays)
        return np.broadcast_to(np.False_, shape)[items].ndim
    except (IndexError, TypeError, ValueError):
        return None


def _whole_index(idx, shape) -> tuple | None:
    """The axes an index that reaches every entry of an array of ``shape`` steps backwards
    (``()`` for ``...`` or ``:`` on each axis), or None for an index that does not reach
    every entry in order or backwards (an integer, an array, ``None``, a partial or strided
    slice, bounds computed at run time)."""
    items = list(idx) if type(idx) is tuple else [idx]
    dots = [k for k, i in enumerate(items) if i is Ellipsis]  # (by identity: arrays too)
    if len(dots) > 1:
        return None
    if dots:
        items[dots[0]:dots[0] + 1] = [slice(None)] * (len(shape) - len(items) + 1)
    if len(items) > len(shape):
        return None
    items += [slice(None)] * (len(shape) - len(items))
    flipped = []
    for axis, (item, size) in enumerate(zip(items, shape)):
        if type(item) is not slice or not all(
                b is None or type(b) is int for b in (item.start, item.stop, item.step)):
            return None
        reached = range(size)[item]
        if reached == range(size):
            continue
        if size > 1 and reached == range(size - 1, -1, -1):
            flipped.append(axis)
            continue
        return None
    return tuple(flipped)


def _gather(x: str, index: str, idx, constant: bool) -> str:
    """``x[idx]``; with an index array computed at run time, out-of-range entries read as NaN
    (the lowest integer for integer arrays) instead of XLA's clamped neighbour. (A
    ``constant`` ``x`` is a NumPy array, which has no ``.at``: made a JAX one, at no cost
    once jitted.)"""
    found: list = []
    _slots(idx if type(idx) is tuple else (idx,), found)
    if not found:
        return f"{x}[{index}]"
    return f"{f'jnp.asarray({x})' if constant else x}.at[{index}].get(mode='fill')"


def _index(em, idx) -> str:
    """An index as Python writes it: ``v3[:, 2]``, ``v3[..., 0:4]``, ``v3[c, v7]``."""
    items = idx if type(idx) is tuple else (idx,)
    text = ", ".join(_index_item(em, i) for i in items)
    if type(idx) is tuple and len(idx) == 1:
        text += ","
    return text or "()"


def _index_item(em, i) -> str:
    if type(i) is slice:
        parts = [("" if b is None else em.expr(b)) for b in (i.start, i.stop, i.step)]
        return ":".join(parts[:2]) if i.step is None else ":".join(parts)
    if i is Ellipsis:
        return "..."
    if i is None:
        return "None"
    return em.expr(i)

