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
import types
from collections.abc import Callable

import numpy as np

from fluxml.distributed.group import DistributedError, on_every_rank
from fluxml.tree import _paths, flatten
from fluxml.treenodes import _fields, blank, is_array_leaf, slots


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


def fit(x, shape, dtype) -> str:
    """What the plan makes of ``x`` at a position where it has a gradient of ``shape`` and
    ``dtype`` (a NumPy dtype): "ok" (sent as it is: an array or a Python number), "zero" (no
    gradient on this rank: None, an integer array) or "misfit" (a gradient of another shape
    or dtype, a subtree: the tree no longer fits the plan). The one judge of both the
    averaging after the backward pass and the messages sent during it."""
    if x is None:
        return "zero"
    if getattr(x, "shape", None) == shape and getattr(x, "dtype", None) == dtype:
        return "ok"  # the usual case: the planned array
    e = entry(x)
    if e is not None and e == (shape, dtype.str):
        return "ok"  # a Python float or complex
    if e is not None or not is_position(x):
        return "misfit"
    return "zero"


def positions(tree):
    """``(positions, spec)``: ``flatten`` with ``None`` entries kept as positions."""
    return flatten(tree, is_position)


def paths(spec) -> list[str]:
    out: list[str] = []
    _paths(spec, "", out)
    return out


def walker(spec) -> Callable:
    """``gather(tree) -> list``: the positions of ``tree`` in ``flatten`` order, for trees of
    the structure ``spec`` describes; raises ``Changed`` for any other. Compiled into one
    flat function of straight-line Python (a type check and an index per node): a walk
    over closures, one call per node, cost several times more per step once the step's
    other work had pushed them out of the caches."""
    lines: list[str] = []
    names: dict = {"Changed": Changed}
    _emit(spec, "t", 0, lines, names)
    body = "".join(f"        {line}\n" for line in lines)
    source = (f"def gather(t):\n    out = []\n    add = out.append\n    try:\n{body}"
              f"    except (KeyError, AttributeError, IndexError, TypeError) as err:\n"
              f"        raise Changed from err\n    return out\n")
    exec(compile(source, "<fluxml.distributed.layout.walker>", "exec"), names)
    return names["gather"]


def _emit(spec, var: str, depth: int, lines: list, names: dict) -> None:
    """The lines that check the node ``spec`` describes, held in the variable ``var``, and
    add its positions to ``out`` (as ``tree._fields`` and ``flatten`` read each kind of
    node); ``names`` collects the types and keys the lines refer to."""
    if spec.kind == "leaf":
        lines.append(f"add({var})")
        return
    if spec.kind == "static":  # no position; anything else here (an array ...) is a change
        kind = _name(names, type(spec.static))
        lines.append(f"if type({var}) is not {kind} and {var} is not None: raise Changed")
        return
    typ, n = _name(names, spec.type), len(spec.children)
    keys = spec.keys if spec.keys is not None else range(n)
    if spec.kind in ("list", "tuple", "namedtuple", "dict"):
        lines.append(f"if type({var}) is not {typ} or len({var}) != {n}: raise Changed")
        reads = [f"{var}[{_key(names, k)}]" for k in keys]
    elif dataclasses.is_dataclass(spec.type) or hasattr(spec.type, "__tree_fields__"):
        lines.append(f"if type({var}) is not {typ}: raise Changed")
        if not dataclasses.is_dataclass(spec.type):  # __tree_fields__ may vary
            fields = _name(names, list(keys))
            lines.append(f"if list({var}.__tree_fields__()) != {fields}: raise Changed")
        reads = [f"getattr({var}, {_key(names, k)})" for k in keys]
    elif slots(spec.type):  # a slotted object: its fields as the tree reads them
        lines.append(f"if type({var}) is not {typ}: raise Changed")
        f = f"f{depth}"
        lines.append(f"{f} = {_name(names, _fields)}({var})")
        lines.append(f"if [k for k, _ in {f}] != {_name(names, list(keys))}: raise Changed")
        reads = [f"{f}[{i}][1]" for i in range(n)]
    else:  # a plain object: every attribute is a child
        d = f"d{depth}"
        lines.append(f"if type({var}) is not {typ}: raise Changed")
        lines.append(f"{d} = {var}.__dict__")
        lines.append(f"if len({d}) != {n}: raise Changed")
        reads = [f"{d}[{_key(names, k)}]" for k in keys]
    child_var = f"x{depth + 1}"
    for read, child in zip(reads, spec.children):
        if child.kind == "leaf":
            lines.append(f"add({read})")
        else:
            lines.append(f"{child_var} = {read}")
            _emit(child, child_var, depth + 1, lines, names)


def _name(names: dict, value) -> str:
    """A name for ``value`` in the compiled function's globals."""
    name = f"c{len(names)}"
    names[name] = value
    return name


def _key(names: dict, key) -> str:
    """``key`` as the compiled function reads it: a literal where it has one, else a name."""
    if type(key) in (str, int):
        return repr(key)
    return _name(names, key)


def builder(spec, planned: set) -> Callable | None:
    """``build(tree, values) -> tree``: a copy of ``tree`` (of ``spec``'s structure) with
    ``values[p]`` at each position ``p`` in ``planned``, sharing every subtree without one;
    None for trees with nodes it does not copy (dataclasses, namedtuples, dict subclasses):
    ``unflatten`` then rebuilds them. Compiled as ``walker`` is."""
    lines: list[str] = []
    names: dict = {"new": blank, "make": object.__new__}
    try:
        result, _ = _emit_build(spec, "t", 0, 0, planned, lines, names)
    except _Unsupported:
        return None
    if result is None:  # nothing planned: the tree as it is
        return lambda tree, values: tree
    body = "".join(f"    {line}\n" for line in lines)
    exec(compile(f"def build(t, v):\n{body}    return {result}\n",
                 "<fluxml.distributed.layout.builder>", "exec"), names)
    return names["build"]


class _Unsupported(Exception):  # noqa: N818
    pass


def _emit_build(spec, var: str, depth: int, start: int, planned: set, lines: list,
                names: dict):
    """``(expression or None, next position)`` for the subtree at position ``start``, held in
    ``var``: the lines that build its copy go to ``lines``, the expression gives the copy
    after them (None: nothing planned below, the subtree is shared as it is)."""
    if spec.kind == "leaf":
        return None, start + 1
    if spec.kind == "static":
        return None, start
    keys = spec.keys if spec.keys is not None else range(len(spec.children))
    node = f"n{depth}"  # the copy's children: a list or a dict, filled in place
    mine: list[str] = []
    pos = start
    for key, child in zip(keys, spec.children):
        k = _key(names, key)
        if child.kind == "leaf" and pos in planned:
            mine.append(f"{node}[{k}] = v[{pos}]")
        sub: list[str] = []
        result, pos = _emit_build(child, f"{node}[{k}]", depth + 1, pos, planned, sub, names)
        if result is not None:
            mine += sub + [f"{node}[{k}] = {result}"]
    if not mine:
        return None, pos
    typ = spec.type
    if spec.kind in ("list", "tuple"):
        lines.append(f"{node} = list({var})")
        lines += mine
        return (node if typ is list else f"{_name(names, typ)}({node})"), pos
    if spec.kind == "dict" and typ is dict:
        lines.append(f"{node} = dict({var})")
        lines += mine
        return node, pos
    if spec.kind == "object" and not dataclasses.is_dataclass(typ) \
            and not hasattr(typ, "__tree_fields__") and not slots(typ):
        # the copy made as blank makes it (object.__new__ where it calls that), its fields
        # copied straight into its own __dict__ (one dict copy, where a dict of the fields
        # first and an update from it took two: LeNet-5's gradient rebuilt 12 -> 7 us)
        obj = f"o{depth}"
        make = "new" if issubclass(typ, types.SimpleNamespace) else "make"
        lines.append(f"{obj} = {make}({_name(names, typ)})")
        lines.append(f"{node} = {obj}.__dict__")
        lines.append(f"{node}.update({var}.__dict__)")
        lines += mine
        return obj, pos
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
