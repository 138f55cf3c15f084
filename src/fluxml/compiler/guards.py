"""Guards: a generated function that checks a call's arguments against one trace's signature
and picks out the arrays the program reads, without flattening the whole tree again.

Flattening a model and its optimiser state on every call costs more than a small compiled
step runs. So each trace also gets ``extract(args)``: straight-line code that walks the
argument tree the trace saw, checks each node's type, field names, static values, each array's
type, shape, dtype and layout, and that arrays shared (or not) at trace time still are. It
returns the program's input arrays, or ``None`` when anything differs (then the call takes the
general path: flatten, compute the signature, look it up, trace if new).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from fluxml.compiler.codegen import build
from fluxml.tree import _fields


class _Writer:
    def __init__(self):
        self.lines: list[str] = []
        self.consts: dict = {"np": np}
        self.count = 0

    def name(self, prefix="n") -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def const(self, value) -> str:
        name = self.name("k")
        self.consts[name] = value
        return name

    def check(self, cond: str):
        self.lines.append(f"    if not ({cond}): return None")


def make_extractor(args, spec, leaves, positions):
    """``extract(args) -> list | None`` for the trace of ``args`` (flattened to ``leaves``
    with ``spec``); ``positions`` are the leaf indices of the program's inputs."""
    w = _Writer()
    names: list[str] = []
    _walk(w, "args", args, spec, names)
    if len(names) != len(leaves):
        return None  # a tree this walker does not mirror: always take the general path
    first: dict = {}
    arrays = []
    for i, x in enumerate(leaves):
        if positions and _is_array(x):  # (the program's inputs are exactly these)
            k = first.setdefault(id(x), i)
            if k != i:  # the same array as an earlier leaf: it must still be
                w.check(f"{names[i]} is {names[k]}")
            else:
                arrays.append(names[i])
    if len(arrays) > 1:  # arrays distinct at trace time must still be distinct, and share
        # memory (views of one array) exactly as they did
        listed = ", ".join(arrays)
        pattern = memory_pattern([leaves[i] for i in positions])
        w.consts["memory_pattern"] = memory_pattern
        w.check(f"len({{{', '.join(f'id({a})' for a in arrays)}}}) == {len(arrays)}")
        w.check(f"memory_pattern([{listed}]) == {pattern!r}")
    inputs = ", ".join(names[i] for i in positions)
    w.lines.append(f"    return [{inputs}]")
    src = "def extract(args):\n" + "\n".join(w.lines) + "\n"
    try:
        return build(src, w.consts, "extract")
    except (SyntaxError, RecursionError):  # a tree too deep for straight-line code
        return None


def memory_pattern(arrays) -> tuple:
    """For each array, the position of the first one whose memory belongs to the same array
    (NumPy points every view at the array owning its memory)."""
    first: dict = {}
    return tuple(first.setdefault(id(a if a.base is None else a.base), k)
                 for k, a in enumerate(arrays))


def _is_array(x) -> bool:
    return type(x) is np.ndarray or (type(x).__name__ == "ndarray" and hasattr(x, "shape"))


def _walk(w, ref, x, spec, names):
    kind = spec.kind
    if kind == "leaf":
        v = w.name("x")
        w.lines.append(f"    {v} = {ref}")
        names.append(v)
        if _is_array(x):  # NumPy's, or another library's (CuPy)
            d = w.const(x.dtype)
            # the layout too (the strides, read faster than the flags) where it can differ
            layout = f" and {v}.strides == {x.strides!r}" if x.ndim > 1 else ""
            w.check(f"type({v}) is {w.const(type(x))} and {v}.shape == {x.shape!r} and "
                    f"({v}.dtype is {d} or {v}.dtype == {d}){layout}")
        else:  # a number: its type and value are part of the signature
            w.check(f"type({v}) is {w.const(type(x))} and {v} == {w.const(x)}")
        return
    if kind == "static":
        s = spec.static
        try:
            hash(s)
            same = f"({ref}) is {w.const(s)} or (type({ref}) is {w.const(type(s))} and " \
                   f"{ref} == {w.const(s)})"
        except TypeError:
            same = f"({ref}) is {w.const(s)}"
        w.check(same)
        return
    v = w.name()
    w.lines.append(f"    {v} = {ref}")
    w.check(f"type({v}) is {w.const(spec.type)}")
    if kind in ("list", "tuple", "namedtuple"):
        w.check(f"len({v}) == {len(spec.children)}")
        for k, (c, child) in enumerate(zip(x, spec.children)):
            _walk(w, f"{v}[{k}]", c, child, names)
        return
    if kind == "dict":
        w.check(f"len({v}) == {len(spec.keys)}")
        for key, child in zip(spec.keys, spec.children):
            w.check(f"{w.const(key)} in {v}")
            _walk(w, f"{v}[{w.const(key)}]", x[key], child, names)
        return
    # an object: its field names, then each field
    fields = dict(_fields(x))
    if hasattr(x, "__tree_fields__"):
        w.check(f"tuple({v}.__tree_fields__()) == {tuple(spec.keys)!r}")
    elif not (dataclasses.is_dataclass(x) and not isinstance(x, type)):
        d = w.name("d")
        w.lines.append(f"    {d} = {v}.__dict__")
        w.check(f"{d}.keys() == {w.const(frozenset(spec.keys))}")
        for key, child in zip(spec.keys, spec.children):
            _walk(w, f"{d}[{key!r}]", fields[key], child, names)
        return
    for key, child in zip(spec.keys, spec.children):
        _walk(w, f"{v}.{key}", fields[key], child, names)
