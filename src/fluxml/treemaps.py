"""Mapping trees: :func:`fmap` (a function applied to each leaf of a tree, or of several
trees leaf by leaf, keeping the structure and its ties), :func:`fmap_with_path`, and
:func:`fcollect` (every part of a tree once), built on the walks of :mod:`fluxml.tree`
(flatten, unflatten, align).

>>> import numpy as np, fluxml as fl
>>> fl.fmap(lambda x: 2 * x, {"w": np.ones(2), "b": 0.5})
{'w': array([2., 2.]), 'b': 1.0}
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any

import numpy as np

from fluxml.tree import _MISSING, Spec, _is, _paths, align, flatten, nodes, unflatten
from fluxml.treenodes import _KINDS, _fields, _kind, is_array_leaf

__all__ = ["fcollect", "fmap", "fmap_with_path"]

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


def fmap(f: Callable, tree, *rest, is_leaf: Callable[[Any], bool] | None = None):
    """Apply ``f`` to each leaf (and the matching leaves of ``rest``), keeping the structure.
    An array at several places (tied weights) is mapped once, as Flux's ``fmap`` does, so
    the result is tied where ``tree`` is; so is any leaf but a number (an object a caller's
    ``is_leaf`` takes), and an object or list at several places (a layer used twice) is one
    object in the result. Numbers are values, mapped at each place; two equal arrays that
    are distinct objects are mapped apart, and so is a view of an array (``w.T``, ``w[:2]``:
    an array of its own, as ``fl.gradient`` sees it; Functors walks Julia's ``w'`` to ``w``).

    With ``rest``, a tied array of ``tree`` is mapped once where the leaves of ``rest`` at its
    places are the same arrays or equal ones (a gradient from ``fl.gradient`` holds the
    total, one copy at each place): ``fl.fmap(lambda p, g: p - 0.1 * g, model, grad)`` keeps
    a tied weight tied and a layer used twice one layer. Where they differ, each place is
    mapped with its own leaves and the tie is not kept there (Flux's ``fmap`` keys on the
    first tree alone and gives the first place's result at both).

    A None in a tree of ``rest`` where ``tree`` has a leaf (or a whole part: a gradient's
    None for a field that carries none, such as BatchNorm's running statistics) is given to
    ``f`` as None at each of those leaves, as Functors' ``f(x, nothing)``; a leaf of ``rest``
    where ``tree`` has none is refused, naming the place.

    ``is_leaf`` replaces the default leaf test (arrays and numbers). Static parts (functions,
    and the arrays a function closes over, strings, ``Fraction``s ...) are kept as they are,
    and ``f`` never sees them.

    >>> import numpy as np, fluxml as fl
    >>> fl.fmap(lambda a, b: a + b, [1.0, (2.0,)], [10.0, (20.0,)])
    [11.0, (22.0,)]
    >>> w = np.ones(2)
    >>> copy = fl.fmap(np.copy, {"enc": w, "dec": w})
    >>> copy["enc"] is copy["dec"], copy["enc"] is w
    (True, False)
    >>> layer = fl.Dense(2, 2)
    >>> model = fl.f64(fl.Chain(layer, np.tanh, layer))
    >>> model[0] is model[2], model[0].weight.dtype
    (True, dtype('float64'))
    >>> grad = fl.fmap(np.ones_like, model)
    >>> grad[0] is grad[2]
    True
    >>> grad = fl.fmap(np.copy, fl.Chain(grad[0], np.tanh, fl.fmap(np.copy, grad[2])))
    >>> new = fl.fmap(lambda p, g: p - 0.5 * g, model, grad)
    >>> new[0] is new[2], new[0].weight is new[2].weight
    (True, True)
    >>> fl.fmap(lambda p, g: p if g is None else p - g, {"w": 1.0, "n": 2.0},
    ...         {"w": 0.25, "n": None})
    {'w': 0.75, 'n': 2.0}
    """
    return _fmap(f, tree, rest, is_leaf, False)


def fmap_with_path(f: Callable, tree, *rest, is_leaf: Callable[[Any], bool] | None = None):
    """:func:`fmap` with each leaf's path: ``f(path, leaf, *leaves_of_rest)``, the path dotted
    as :func:`leaves_with_paths` names it (Functors' ``fmap_with_path``, whose ``KeyPath`` is
    a tuple of keys). A tied array is mapped once, with the path where it is first met.

    >>> import numpy as np, fluxml as fl
    >>> fl.fmap_with_path(lambda p, x: p, {"layers": [np.ones(2), {"b": 0.5}]})
    {'layers': ['layers.0', {'b': 'layers.1.b'}]}
    >>> m = fl.Chain(fl.Dense(2, 3), fl.Dense(3, 1))
    >>> m = fl.fmap_with_path(lambda p, x: 0 * x if p.endswith("bias") else x, m)
    """
    return _fmap(f, tree, rest, is_leaf, True)


def _fmap(f, tree, rest, is_leaf, with_paths: bool):
    xs, spec = flatten(tree, is_leaf)
    paths = _leaf_paths(spec) if rest or with_paths else []
    others = []
    for r in rest:
        r = align(r, spec, "fmap: a tree of rest")
        o, other = flatten(r, is_leaf)
        # the leaves must sit at the same places, not only be as many: a None (static) in one
        # tree where the other has an array paired the arrays after it with the wrong ones;
        # a None of rest where tree has a leaf (a gradient's, for a field that carries none)
        # is given to f at that place
        theirs = _leaf_paths(other)
        if len(o) != len(xs) or theirs != paths:
            paired = _leaves_at(spec, r, o, is_leaf)
            if paired is None:
                _refuse_other_places(paths, theirs, len(xs), len(o))
            o = paired
        others.append(o)
    done: dict = {}  # id of a leaf of tree -> [(its leaves at a place, kept alive; f's result)]
    out = []
    for k, args in enumerate(zip(xs, *others)):
        if isinstance(args[0], NUMBERS):  # values, not objects: mapped at each place
            out.append(f(paths[k], *args) if with_paths else f(*args))
            continue
        mapped = done.get(id(args[0]))
        if mapped is None:  # (most leaves: met once)
            y = f(paths[k], *args) if with_paths else f(*args)
            done[id(args[0])] = [(args, y)]
        else:
            y = next((y for before, y in mapped if all(map(same_value, before[1:], args[1:]))),
                     _MISSING)
            if y is _MISSING:
                y = f(paths[k], *args) if with_paths else f(*args)
                mapped.append((args, y))
        out.append(y)
    if not rest:
        return unflatten(spec, out, shared={})
    # with rest, an object at two places whose leaves were mapped to other results at each
    # (the trees of rest differ there) is rebuilt at each place
    apart = mapped_apart(spec, out)
    return unflatten(spec, out, shared=Sharing(apart) if apart else {})


def _leaf_paths(spec: Spec) -> list:
    out: list = []
    _paths(spec, "", out)
    return out


def _leaves_at(spec: Spec, tree, leaves: list, is_leaf) -> list | None:
    """The values of ``tree`` (a tree of ``fmap``'s rest, aligned to ``spec``) at the places
    of ``spec``'s leaves, None where ``tree`` holds None in place of a leaf or of a whole
    part (Functors calls ``f(x, nothing)`` there); None if ``tree`` is not of that shape, or
    has leaves (``leaves``, its own) where ``spec`` has none."""
    out: list = []
    if not _walk_at(spec, tree, out, is_leaf or is_array_leaf):
        return None
    got = [v for v in out if v is not None]
    return out if len(got) == len(leaves) and all(map(_is, got, leaves)) else None


def _walk_at(spec: Spec, x, out: list, leaf) -> bool:
    kind = spec.kind
    if kind == "leaf":
        out.append(x)
        return x is None or leaf(x)
    if kind == "static":
        return True
    if x is None:  # a part of tree that is None as a whole: None at each of its leaves
        out.extend(None for n in nodes(spec) if n.kind == "leaf")
        return True
    if kind == "dict":
        if not isinstance(x, dict) or len(x) != len(spec.children):
            return False
        values = list(x.values())  # (aligned: in spec's order)
    elif kind == "object":
        fields = _fields(x)
        if fields is None:
            return False
        have = dict(fields)
        values = [have.get(k, _MISSING) for k in spec.keys]
    else:
        if not isinstance(x, (list, tuple, collections.deque)) or \
                len(x) != len(spec.children):
            return False
        values = list(x)
    return all(v is not _MISSING and _walk_at(c, v, out, leaf)
               for c, v in zip(spec.children, values))


def _refuse_other_places(mine: list, theirs: list, n: int, m: int) -> None:
    """Refuse a tree of ``fmap``'s rest whose leaves (at paths ``theirs``, ``m`` of them) are
    not at the first tree's places (``mine``, ``n``); called where they differ."""
    i = next((i for i, (a, b) in enumerate(zip(mine, theirs)) if a != b), min(n, m))
    where = (f"the first tree has a leaf at {mine[i]!r} where a tree of rest has "
             f"{'one at ' + repr(theirs[i]) if i < m else 'none'}" if i < n else
             f"a tree of rest has a leaf at {theirs[i]!r} where the first tree has none")
    raise ValueError(f"fmap: trees differ: {n} leaves against {m}; {where} (a None of rest "
                     f"where the first tree has a leaf is given to f as None, but a leaf of "
                     f"rest where the first tree has None or another part is refused: "
                     f"fl.gradient(..., zeros_for_none=True) gives zeros instead of None)")


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
