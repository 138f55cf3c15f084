"""The layout of a gradient tree for averaging, and how the ranks agree on it.

A gradient tree's *positions* are its leaves and its ``None`` entries (``fl.gradient`` gives
``None`` for a parameter that got no gradient and keeps the model's skeleton), in
``fluxml.tree.flatten`` order. The ranks agree on one layout: the same positions (the same
paths), and at each position either no gradient anywhere or one shape and dtype on every
rank that has one. A rank whose gradient at a position is ``None`` counts as zeros there:
the loss it computed does not depend on that parameter, so zero is its exact derivative.

``walker(spec)`` compiles the structure of one tree into a function that takes the positions
out of any tree of the same structure, checking that structure as it goes and raising
``Changed`` where it differs (but for what sits at a position: see ``is_position``): much
cheaper per step than ``flatten``, which rebuilds the
structure description every time.

>>> import numpy as np
>>> leaves, spec = positions({"w": np.ones(2), "b": None})
>>> walker(spec)({"w": np.zeros(2), "b": np.ones(1)})
[array([0., 0.]), array([1.])]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from fluxml.distributed.group import DistributedError, on_every_rank
from fluxml.tree import _paths, flatten, is_array_leaf


class Changed(Exception):  # noqa: N818 - a signal between two functions, not an error
    """The tree does not have the structure the walker was compiled for."""


def is_position(x) -> bool:
    """What a position may hold: None, an array or a number (the walker does not check its
    positions: a subtree found at one is a change of structure the averager catches)."""
    return x is None or is_array_leaf(x)


def is_grad(x) -> bool:
    """A float or complex array or number: something to average (``None``, integers and
    bools are not)."""
    if type(x) is float or type(x) is complex:
        return True
    return hasattr(x, "dtype") and hasattr(x, "shape") and x.dtype.kind in "fc"


def entry(x):
    """``(shape, dtype string)`` of a gradient, None for anything else."""
    if not is_grad(x):
        return None
    if type(x) is float or type(x) is complex:  # a Python number: a 0-d array once averaged
        return (), np.dtype(type(x)).str
    return tuple(x.shape), x.dtype.str


def positions(tree):
    """``(positions, spec)``: ``flatten`` with ``None`` entries kept as positions."""
    return flatten(tree, is_position)


def paths(spec) -> list[str]:
    out: list[str] = []
    _paths(spec, "", out)
    return out


def walker(spec) -> Callable:
    """``gather(tree) -> list``: the positions of ``tree`` in ``flatten`` order, for trees of
    the structure ``spec`` describes; raises ``Changed`` for any other."""
    walk = _node(spec)

    def gather(tree) -> list:
        out: list = []
        try:
            if walk is None:
                out.append(tree)
            else:
                walk(tree, out)
        except (KeyError, AttributeError, IndexError, TypeError) as err:
            raise Changed from err
        return out

    return gather


def _node(spec):
    """A function ``walk(x, out)`` for the node ``spec`` describes (None for a position: the
    parent appends it), mirroring how ``tree._fields`` reads each kind of node."""
    if spec.kind == "leaf":
        return None
    if spec.kind == "static":
        kind = type(spec.static)

        def static(x, out):  # no position; anything else here (an array ...) is a change
            if type(x) is not kind and x is not None:
                raise Changed

        return static
    kids = [(key, _node(child)) for key, child in
            zip(spec.keys if spec.keys is not None else range(len(spec.children)),
                spec.children)]
    typ, n = spec.type, len(kids)
    if spec.kind in ("list", "tuple", "namedtuple"):
        def sequence(x, out):
            if type(x) is not typ or len(x) != n:
                raise Changed
            for v, (_, walk) in zip(x, kids):
                if walk is None:
                    out.append(v)
                else:
                    walk(v, out)

        return sequence
    names = [k for k, _ in kids]

    def take(d, out):  # the children from a mapping, in the spec's order
        for k, walk in kids:
            v = d[k]
            if walk is None:
                out.append(v)
            else:
                walk(v, out)

    if spec.kind == "dict":
        def mapping(x, out):
            if type(x) is not typ or len(x) != n:
                raise Changed
            take(x, out)

        return mapping
    if dataclasses.is_dataclass(typ) or hasattr(typ, "__tree_fields__"):
        listed = not dataclasses.is_dataclass(typ)

        def fields(x, out):  # the type fixes a dataclass's fields; __tree_fields__ may vary
            if type(x) is not typ or listed and list(x.__tree_fields__()) != names:
                raise Changed
            take({k: getattr(x, k) for k in names}, out)

        return fields

    def attributes(x, out):  # a plain object: every attribute is a child
        if type(x) is not typ:
            raise Changed
        d = x.__dict__
        if len(d) != n:
            raise Changed
        take(d, out)

    return attributes


def builder(spec, planned: set) -> Callable | None:
    """``build(tree, values) -> tree``: a copy of ``tree`` (of ``spec``'s structure) with
    ``values[p]`` at each position ``p`` in ``planned``, sharing every subtree without one;
    None for trees with nodes it does not copy (dataclasses, namedtuples, dict subclasses):
    ``unflatten`` then rebuilds them."""
    try:
        build, _ = _build(spec, 0, planned)
    except _Unsupported:
        return None
    return build or (lambda tree, values: tree)


class _Unsupported(Exception):  # noqa: N818
    pass


def _build(spec, start: int, planned: set):
    """``(build or None, next position)`` for the subtree at position ``start``."""
    if spec.kind == "leaf":
        return None, start + 1
    if spec.kind == "static":
        return None, start
    keys = spec.keys if spec.keys is not None else range(len(spec.children))
    leaf_kids, node_kids = [], []
    pos = start
    for key, child in zip(keys, spec.children):
        if child.kind == "leaf" and pos in planned:
            leaf_kids.append((key, pos))
        sub, pos = _build(child, pos, planned)
        if sub is not None:
            node_kids.append((key, sub))
    if not leaf_kids and not node_kids:
        return None, pos  # nothing planned below: the subtree is shared as it is
    typ = spec.type

    def fill(items, values):  # items: a fresh list or dict of the node's children
        for key, p in leaf_kids:
            items[key] = values[p]
        for key, sub in node_kids:
            items[key] = sub(items[key], values)
        return items

    if spec.kind in ("list", "tuple"):
        return (lambda x, values: typ(fill(list(x), values))), pos
    if spec.kind == "dict" and typ is dict:
        return (lambda x, values: fill(dict(x), values)), pos
    if spec.kind == "object" and not dataclasses.is_dataclass(typ) \
            and not hasattr(typ, "__tree_fields__"):
        def attributes(x, values):
            new = object.__new__(typ)
            new.__dict__.update(fill(dict(x.__dict__), values))
            return new

        return attributes, pos
    raise _Unsupported


def union(everyone: list, what: str) -> list:
    """The agreed layout from every rank's ``(paths, entries)`` (an entry per position:
    ``(shape, dtype string)`` or None): at each position the entry of the ranks that have
    one, or the same error on every rank where the paths or the shapes differ."""
    names = everyone[0][0]
    for r, (theirs, _) in enumerate(everyone[1:], 1):
        if theirs != names:
            diff = next(((a, b) for a, b in zip(names, theirs) if a != b), None)
            detail = (f"rank 0 has {diff[0]!r} where rank {r} has {diff[1]!r}" if diff else
                      f"rank 0 has {len(names)} positions, rank {r} {len(theirs)}")
            raise on_every_rank(DistributedError(
                f"fluxml.distributed: {what}: the ranks' gradient trees have different "
                f"structures ({detail}); every rank must differentiate the same model"))
    agreed: list = []
    for pos, column in enumerate(zip(*(e[1] for e in everyone))):
        have = {entry for entry in column if entry is not None}
        if len(have) > 1:
            detail = ", ".join(f"rank {r} has {_describe(e)}" for r, e in enumerate(column))
            raise on_every_rank(DistributedError(
                f"fluxml.distributed: {what}: the ranks' gradients of {names[pos]} differ: "
                f"{detail}; every rank must differentiate the same model"))
        agreed.append(have.pop() if have else None)
    return agreed


def _describe(entry) -> str:
    return "no gradient" if entry is None else f"{np.dtype(entry[1]).name} {entry[0]}"
