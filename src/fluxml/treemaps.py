"""What ``fl.fmap`` needs beside the walks of :mod:`fluxml.tree` (which leaves of a second
tree are one value, which objects were mapped alike at all their places), and
:func:`fcollect`, every part of a tree once.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fluxml.treenodes import _KINDS, _fields, _kind

__all__ = ["fcollect"]

NUMBERS = (int, float, complex, np.generic)


def same_value(a, b) -> bool:
    """Whether two leaves of a tree of ``fmap``'s rest, at two places of one leaf of the
    first tree, are one value: the same object, or NumPy arrays (numbers) of one type,
    dtype and shape holding equal values (NaN equal to NaN). A traced array is only ever
    itself: two with equal values may carry different derivatives."""
    if a is b:
        return True
    t = type(a)
    if t is not type(b):
        return False
    if t is np.ndarray:
        return a.dtype == b.dtype and a.shape == b.shape and a.dtype.kind in "biufc" and \
            bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")) and _same_signs(a, b)
    return isinstance(a, NUMBERS) and _same_number(a, b) and _same_signs(a, b)


def _same_number(a, b) -> bool:
    return bool(a == b) or bool(a != a) and bool(b != b)  # (NaN: the same value here)


def _same_signs(a, b) -> bool:
    """The zeros' signs alike too (0.0 == -0.0, but p / 0.0 and p / -0.0 differ): a float
    or complex value's sign bits (its parts'), equal."""
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype.kind not in "fc":
        return True
    return bool(np.array_equal(np.signbit(a.real), np.signbit(b.real))
                and np.array_equal(np.signbit(a.imag), np.signbit(b.imag)))


def mapped_apart(spec, out: list) -> set:
    """The ids of the objects, lists and dicts at several places of ``spec`` whose leaves
    were mapped to other results at some place than at the first (other objects, or other
    numbers): each place keeps its own rebuild."""
    first: dict = {}  # id of a node -> the span of its leaves in out at its first place
    apart: set = set()

    def walk(s, i: int) -> int:  # (i: the index in out of s's first leaf)
        if s.kind == "leaf":
            return i + 1
        j = i
        for c in s.children:
            j = walk(c, j)
        if s.kind in ("object", "list", "dict"):
            span = first.setdefault(id(s.static), (i, j))
            if span != (i, j) and not all(map(_one_result, out[span[0]:span[1]], out[i:j])):
                apart.add(id(s.static))
        return j

    walk(spec, 0)
    return apart


def _one_result(a, b) -> bool:
    """One result of ``f`` at two places: the same object, or numbers equal in value."""
    return a is b or isinstance(a, NUMBERS) and type(a) is type(b) and _same_number(a, b)


class Sharing(dict):
    """``unflatten``'s ``shared`` table for ``fmap`` with rest: the ids in ``apart`` are
    never recorded, so an object met again there is rebuilt with its own children."""

    def __init__(self, apart: set):
        super().__init__()
        self.apart = apart

    def __setitem__(self, key, value):
        if key not in self.apart:
            super().__setitem__(key, value)


def fcollect(tree, exclude=None) -> list:
    """Every part of ``tree``, parents before their children (depth first, in flatten's
    order): objects (layers), lists, tuples, dicts and leaves (arrays, numbers), as
    Functors' ``fcollect``. An object, list, dict or array at several places is listed once;
    numbers and tuples are values, listed at each place. Static parts (functions, strings,
    None) are not parts of the tree and are not listed. A part for which ``exclude(part)`` is
    true is left out with everything under it.

    >>> import numpy as np, fluxml as fl
    >>> d = fl.Dense(2, 3)
    >>> parts = fl.fcollect(fl.Chain(d, d))
    >>> [type(p).__name__ for p in parts]
    ['Chain', 'tuple', 'Dense', 'ndarray', 'ndarray']
    >>> [type(p).__name__ for p in fl.fcollect([d, 1.0], exclude=lambda p: p is d)]
    ['list', 'float']
    """
    found: list = []
    seen: set = set()
    keep: list = []  # (the parts listed by id stay alive while the walk runs)
    stack = [tree]
    while stack:
        x = stack.pop()
        if exclude is not None and exclude(x):
            continue
        t = type(x)
        kind = _KINDS.get(t) or _kind(t)
        if kind == "leaf":
            children: Any = ()
        elif kind in ("list", "tuple", "namedtuple"):
            children = list(x)
        elif kind == "dict":
            children = list(x.values())
        elif kind == "object" and (fields := _fields(x)) is not None:
            children = [v for _, v in fields]
        else:  # static (functions, strings, None; an object with no fields to walk)
            continue
        if not isinstance(x, (*NUMBERS, tuple)):  # (values: listed at each place)
            if id(x) in seen:
                continue
            seen.add(id(x))
            keep.append(x)
        found.append(x)
        stack.extend(reversed(children))
    return found
