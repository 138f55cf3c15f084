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
import types

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
    read by ``body``'s code and by the user's Python functions it names (a helper it closes
    over or a global one, depth first; not fluxml's, NumPy's or other installed libraries'),
    or None if none."""
    namespace: dict = {"_MISSING": _MISSING}
    parts: list = []
    _collect(body, namespace, parts, set())
    if not parts:
        return None
    return build(f"def read():\n    return ({', '.join(parts)},)\n", namespace, "read")


def _collect(fn, namespace, parts, seen, depth=0):
    code = getattr(fn, "__code__", None)
    if code is None or id(code) in seen or depth > 8:
        return
    if not _users(fn):  # a library's wrapper (fl.train's compiled step): only the user's
        # functions it closes over (the loss), not its own settings
        seen.add(id(code))
        for cell in getattr(fn, "__closure__", None) or ():
            value = _contents(cell)
            if isinstance(value, types.FunctionType):
                _collect(value, namespace, parts, seen, depth + 1)
        return
    _collect_code(code, getattr(fn, "__closure__", None) or (),
                  getattr(fn, "__globals__", None), namespace, parts, seen, depth)


def _collect_code(code, cells, scope, namespace, parts, seen, depth):
    """The plain values ``code`` reads through its cells and globals (``scope``) as ``read``
    parts; then those of the functions it names and of the code defined inside it (a lambda's
    globals: its cells are made when it runs, not known here)."""
    if id(code) in seen or depth > 8:
        return
    seen.add(id(code))
    called = []
    for cell in cells:
        value = _contents(cell)
        if value is _MISSING:
            continue
        if plain(value):
            name = f"c{len(namespace)}"
            namespace[name] = cell
            parts.append(f"{name}.cell_contents")
        elif isinstance(value, types.FunctionType):
            called.append(value)
    if scope is not None:
        g = f"g{len(namespace)}"
        namespace[g] = scope
        for name in dict.fromkeys(code.co_names):
            value = scope.get(name, _MISSING)
            if plain(value):
                parts.append(f"{g}.get({name!r}, _MISSING)")
            elif isinstance(value, types.FunctionType):
                called.append(value)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _collect_code(const, (), scope, namespace, parts, seen, depth + 1)
    for f in called:
        _collect(f, namespace, parts, seen, depth + 1)


def _contents(cell):
    try:
        return cell.cell_contents
    except ValueError:  # a name not yet assigned
        return _MISSING


def _users(fn) -> bool:
    """A function of the user's (not of fluxml or an installed library: their globals are
    settings, not what the program computes with)."""
    module = getattr(fn, "__module__", None) or ""
    top = module.partition(".")[0]
    return top not in _LIBRARIES


_LIBRARIES = frozenset({"fluxml", "numpy", "jax", "jaxlib", "scipy", "functools", "builtins"})


def key(values: tuple) -> tuple:
    """The signature's part for the values ``read`` returned: each one's type and value (an
    object that is no longer plain, by identity: the entry keeps it)."""
    return tuple(value_key(v) if plain(v) else ("id", type(v), id(v)) for v in values)


def same(values: tuple, seen: tuple) -> bool:
    """Whether every value is the object a trace (or the last call) saw."""
    return all(map(operator.is_, values, seen))
