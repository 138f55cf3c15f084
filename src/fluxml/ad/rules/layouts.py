"""Memory layouts: the order NumPy lays out a result in, and the copies that give a result
of the engine that order. Values and derivatives do not depend on it, but what a later
``ravel(order="K")`` or ``reshape(order="A")`` reads does, so every rule whose NumPy function
allocates its result in a layout of its own (C for what it fills, the input's K order for a
copy, the iterator's order for an accumulation) lays its result out with these helpers.

>>> import numpy as np
>>> laid_out(np.ones((2, 3)), [1, 0]).flags.f_contiguous
True
"""

from __future__ import annotations

import numpy as np

from fluxml.ad.core import raw


def _memory_axes(shape, *strides) -> list:
    """The axes, outermost first, in the order NumPy's iterator walks arrays of these
    ``strides`` (one tuple per operand): ``np.ravel(order="K")`` of one array, and the layout
    NumPy gives a result it allocates in that order (``np.where``, so ``np.triu``). A stable
    insertion sort by decreasing absolute stride (numpy/_core/src/multiarray/nditer_constr.c,
    npyiter_find_best_axis_ordering): an axis of stride 0 or length 1 compares with none (so
    it keeps its place), a negative stride is not reversed, and where operands disagree the
    C order wins."""
    nd = len(shape)
    operands = [[0 if shape[d] == 1 else s[d] for d in reversed(range(nd))] for s in strides]
    perm = list(range(nd))  # inner axes first
    for i0 in range(1, nd):
        at, j0 = i0, perm[i0]
        for i1 in range(i0 - 1, -1, -1):
            ambiguous, swap = True, False
            for st in operands:
                s0, s1 = st[j0], st[perm[i1]]
                if s0 != 0 and s1 != 0:
                    if abs(s1) <= abs(s0):
                        swap = False
                    elif ambiguous:
                        swap = True
                    ambiguous = False
            if not ambiguous:
                if not swap:
                    break
                at = i1
        perm[at + 1:i0 + 1] = perm[at:i0]
        perm[at] = j0
    return [nd - 1 - j for j in reversed(perm)]


def laid_out(y, axes):
    """``y`` contiguous with ``axes`` (outermost first) its memory order, copied where it is
    not: the layout NumPy gives a result it allocates (which ``ravel(order="K")`` reads
    later, and ``order="A"`` where it is F-contiguous)."""
    r = raw(y)
    strides = getattr(r, "strides", None)  # (none: an array without a layout, JAX's)
    if strides is None or _contiguous(np.shape(r), strides, np.dtype(r.dtype).itemsize, axes):
        return y
    return np.transpose(np.copy(np.transpose(y, axes), order="C"), _inverse(axes))


def _contiguous(shape, strides, itemsize, axes) -> bool:
    """Do the elements of an array of ``shape`` and ``strides`` fill one block with
    ``axes`` (outermost first) in C order? (An axis of length 1 may have any stride.)"""
    if 0 in shape:
        return True
    step = itemsize
    for d in reversed(list(axes)):
        if shape[d] != 1:
            if strides[d] != step:
                return False
            step *= shape[d]
    return True


def c_ordered(y):
    """``y`` in C order, as NumPy's results that it fills itself (``take``, ``select``)."""
    return laid_out(y, range(np.ndim(raw(y))))


def in_memory_order_of(y, a):
    """``y``, shaped as ``a``, in ``a``'s memory order, as NumPy's ``a.copy(order="K")``
    (what sorting and partitioning return)."""
    r = raw(a)
    if getattr(r, "strides", None) is None:
        return y
    # the strides of NumPy's own K copy: of a broadcast array, its repeated axes innermost
    # (unlike the iterator's order, which ravel(order="K") reads); an empty array is only
    # allocated, never touched
    return laid_out(y, _memory_axes(np.shape(r), np.empty_like(r, order="K").strides))


def in_iterator_order_of(y, a):
    """``y``, shaped as ``a``, in the order NumPy's iterator walks ``a`` (what a ufunc's
    ``accumulate`` allocates): ``a``'s memory order, a broadcast axis kept in its place."""
    r = raw(a)
    strides = getattr(r, "strides", None)
    return y if strides is None else laid_out(y, _memory_axes(np.shape(r), strides))


def _inverse(axes):
    return tuple(int(d) for d in np.argsort(axes))
