"""The Python values a compiled function reads without taking them as arguments: the numbers,
strings and tuples of them it names as globals or closes over (a global learning rate, a
scale set by an enclosing function). A trace takes them as constants; without a check, a
call after ``LR = 0.5`` (or ``nonlocal k; k = 4.0``) ran the first value silently. They are
read on every call and are part of the signature: a new value traces again, as a new value
of a non-array argument does.

Only immutable values are watched, by identity on the fast path (a name rebound to an equal
new object takes the general path, whose key is the value). Mutable ones (a global list
written in place) and arrays are not: pass what changes as an argument.
"""

from __future__ import annotations

import operator

import numpy as np

from fluxml.compiler.calls import value_key
from fluxml.compiler.codegen import build

_MISSING = object()  # a global deleted since (the call then fails as eagerly, when traced)
_PLAIN = (type(None), bool, int, float, complex, str, bytes, np.generic)


def plain(x) -> bool:
    """An immutable Python value a trace would make a constant."""
    if isinstance(x, _PLAIN):
        return True
    return type(x) in (tuple, frozenset) and all(map(plain, x))


def reader(body):
    """``read() -> tuple`` of the current values of the plain globals and closed-over names
    ``body``'s own code reads (not those of the functions it calls), or None if none."""
    code = getattr(body, "__code__", None)
    if code is None:
        return None
    namespace: dict = {"_MISSING": _MISSING}
    parts = []
    cells = getattr(body, "__closure__", None) or ()
    for k, cell in enumerate(cells):
        try:
            value = cell.cell_contents
        except ValueError:  # a name not yet assigned
            continue
        if plain(value):
            namespace[f"c{k}"] = cell
            parts.append(f"c{k}.cell_contents")
    scope = getattr(body, "__globals__", None)
    if scope is not None:
        namespace["g"] = scope
        parts += [f"g.get({name!r}, _MISSING)" for name in dict.fromkeys(code.co_names)
                  if name in scope and plain(scope[name])]
    if not parts:
        return None
    return build(f"def read():\n    return ({', '.join(parts)},)\n", namespace, "read")


def key(values: tuple) -> tuple:
    """The signature's part for the values ``read`` returned: each one's type and value (an
    object that is no longer plain, by identity: the entry keeps it)."""
    return tuple(value_key(v) if plain(v) else ("id", type(v), id(v)) for v in values)


def same(values: tuple, seen: tuple) -> bool:
    """Whether every value is the object a trace (or the last call) saw."""
    return all(map(operator.is_, values, seen))
