"""What a value is in a tree: a leaf (arrays and numbers), a container, static structure, or
an object node, and an object node's fields, read and set as the trees do (slots through
their descriptors, the rest in ``__dict__``, never the class's ``__setattr__``). The walks
themselves, flatten and unflatten, are :mod:`fluxml.tree`'s; every kind here is looked up
once per type.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import functools
import sys
import types

import numpy as np

_LEAF_TYPES = (np.ndarray, np.generic, float, int, complex)
_HEAPTYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: the class was created by a class statement
# (partial and lru_cache's wrapper are built-in types that Python 3.11 makes as classes are made,
# with an instance __dict__: taken for objects with fields, they could not be rebuilt, and a
# Dense(3, 2, partial(fl.leakyrelu, a=0.2)) failed in fl.gradient)
_STATIC_TYPES = (np.ufunc, str, bytes, type, types.FunctionType, types.BuiltinFunctionType,
                 types.MethodType, types.ModuleType, np.dtype, slice, range, functools.partial,
                 functools._lru_cache_wrapper, enum.Enum)


def register_leaf(cls: type) -> None:
    """Treat instances of ``cls`` as leaves (the engine registers its Tracer, backends their
    array types)."""
    global _LEAF_TYPES
    _LEAF_TYPES = _LEAF_TYPES + (cls,)
    _KINDS.clear()  # a cached kind may have been "object" or "static"


def is_leaf(x) -> bool:
    """Arrays and numbers (bools and enum members, IntEnum's too, are static: they never
    carry a derivative)."""
    return isinstance(x, _LEAF_TYPES) and not isinstance(x, (bool, enum.Enum))


def is_array_leaf(x) -> bool:
    """Leaves that are arrays of any backend (extensions register more array types)."""
    return is_leaf(x) or type(x).__name__ == "ndarray"


def _fields(obj, trainable=False):
    """The (name, value) children of an object node, or None if it is not one. With
    ``trainable``, fields the class lists in ``nontrainable`` are left out (they stay with
    the object as static parts: BatchNorm's running statistics)."""
    t = type(obj)
    how, names = _NODES.get(t) or _node_kind(t)
    if how == "dataclass":
        fields = [(k, getattr(obj, k)) for k in names]
    elif how == "method":
        fields = [(k, getattr(obj, k)) for k in obj.__tree_fields__()]
    elif how == "attributes":
        d = getattr(obj, "__dict__", None)
        if names:  # slots (set ones only), then the instance's own attributes if it has any
            fields = [(k, v) for k in names if (v := getattr(obj, k, _UNSET)) is not _UNSET]
            if d:
                fields += d.items()
        elif d is None:  # no slots with names, no attributes: nothing to walk
            return None
        else:
            fields = list(d.items())
    else:
        return None
    if trainable:
        skip = nontrainable(t)
        if skip:
            fields = list(fields)
            kept = [(k, v) for k, v in fields if k not in skip]
            if len(fields) - len(kept) != len(skip):
                _unknown_nontrainable(t, skip, fields)
            fields = kept
    return fields


_FROZEN: dict = {}  # class -> (its nontrainable attribute, the names checked)


def nontrainable(t) -> tuple:
    """The field names class ``t`` declares ``nontrainable``, checked once per declaration:
    a string is refused, as ``nontrainable = ("running_mean")`` (a missing comma) was read
    by ``in`` as a substring test, so that fields named ``running_mean``, ``mean`` or ``m``
    were all left untrained, silently."""
    raw = getattr(t, "nontrainable", ())
    known = _FROZEN.get(t)
    if known is not None and known[0] is raw:
        return known[1]
    if isinstance(raw, str) or not isinstance(raw, (tuple, list, set, frozenset)) \
            or not all(isinstance(k, str) for k in raw):
        hint = f" (write ({raw!r},) for one name)" if isinstance(raw, str) else ""
        raise TypeError(f"{t.__name__}.nontrainable must be a tuple of field names; got "
                        f"{raw!r} (a {type(raw).__name__}){hint}")
    names = tuple(raw)
    _FROZEN[t] = raw, names
    return names


def _unknown_nontrainable(t, skip, fields):
    """Refuse a ``nontrainable`` name that is no field of the object: a misspelt one
    (``("runing_mean",)``) left the field it meant trained, silently."""
    names = [k for k, _ in fields]
    missing = [k for k in skip if k not in names and not hasattr(t, k)]
    if missing:
        raise TypeError(f"{t.__name__}.nontrainable names {', '.join(map(repr, missing))}, "
                        f"not a field of this {t.__name__} (its fields: "
                        f"{', '.join(names) or 'none'}); a field set later is given a value "
                        f"(None) in __init__")


# What a value is in a tree depends on its type alone, up to an object's fields and unless a
# leaf test of the caller's says it is a leaf: the walk that ``gradient`` and ``update`` run
# on every step looks each type's kind up once. With the default leaf test (``leaf`` None)
# the kinds come from ``_KINDS``; a caller's test is asked of each value first, then its
# type's kind as a container from ``_CONTAINERS``.
_KINDS: dict = {}
_CONTAINERS: dict = {}


def kind_of(x) -> str:
    """The kind of ``x`` in a tree with the default leaf test ("leaf", "list", "tuple",
    "namedtuple", "dict", "static", "object" ...): how the trees walk it, for the walks
    beside them (``fl.modules``, the printed listing) that must reach what they reach."""
    t = type(x)
    return _KINDS.get(t) or _kind(t)


def _kind(t) -> str:
    """The kind of a value of type ``t`` with the default leaf test: "leaf" for arrays and
    numbers, else its :func:`_container` kind."""
    leaf = issubclass(t, _LEAF_TYPES) and not issubclass(t, (bool, enum.Enum)) \
        or t.__name__ == "ndarray"
    kind = _KINDS[t] = "leaf" if leaf else _container(t)
    return kind


def _container(t) -> str:
    """The kind of a value of type ``t`` that is not a leaf: "list", "tuple", "namedtuple",
    "dict", "static" or "object" (a node read by :func:`_fields`, or static if it has none)."""
    if t is list or t is tuple:
        kind = t.__name__
    elif issubclass(t, tuple) and hasattr(t, "_fields"):
        kind = "namedtuple"
    elif issubclass(t, (list, tuple, collections.deque)):  # rebuilt as type(items)
        kind = "tuple" if issubclass(t, tuple) else "list"
    elif issubclass(t, dict):
        kind = "dict"
    elif t is types.MethodType:
        kind = "method"
    elif t is type(None) or issubclass(t, (bool,) + _STATIC_TYPES):
        kind = "static"
    else:
        kind = "object"
    _CONTAINERS[t] = kind
    return kind


# How a class's instances are nodes, read once per class: by their dataclass fields, by the
# class's ``__tree_fields__`` method, by their attributes (classes written in Python), or
# not at all (built-in and extension types: ufuncs, partials, generators ... are static).
_NODES: dict = {}


def _node_kind(t) -> tuple:
    if dataclasses.is_dataclass(t):
        kind = "dataclass", tuple(f.name for f in dataclasses.fields(t))
    elif hasattr(t, "__tree_fields__"):
        kind = "method", None
    elif issubclass(t, types.SimpleNamespace):  # (a built-in type with attributes)
        kind = "attributes", None
    elif issubclass(t, _STATIC_TYPES) or not t.__flags__ & _HEAPTYPE:
        kind = "static", None
    else:
        kind = "attributes", _slot_names(t) if _users(t) else _NO_SLOTS
    _NODES[t] = kind
    return kind


_ALL_SLOTS: dict = {}  # class -> its slots, for the state of a class read by __tree_fields__
_NO_SLOTS = ()  # a class without slots read (the rebuild's fast path checks for this one)


def slots(t) -> tuple:
    """The slots the trees read as fields of a ``t`` (a user's class): those
    :func:`_node_kind` found, once per class; ``()`` for every other class."""
    how = _NODES.get(t) or _node_kind(t)
    return how[1] if how[0] == "attributes" and how[1] else _NO_SLOTS


def _users(t) -> bool:
    """Whether ``t`` is a class of the user's (not the standard library's or fluxml's): only
    such a class's slots are fields (a Fraction's, a Path's or a compiled function's slotted
    parts are not a model's parameters)."""
    package = (t.__module__ or "").partition(".")[0]
    return package != "fluxml" and package not in sys.stdlib_module_names


_UNSET = object()


def _slot_names(t) -> tuple:
    """The attribute names of the slots ``t`` and its bases declare, base classes first, as
    the instances store them (a private ``__x`` of class ``C`` is ``_C__x``). A slotted
    user class is a node as a class with ``__dict__`` is: its arrays are parameters."""
    names: list = []
    for c in reversed(t.__mro__):
        slots = c.__dict__.get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            if name.startswith("__") and not name.endswith("__"):
                name = f"_{c.__name__.lstrip('_')}{name}"
            # (a slot a subclass hides behind a property or another descriptor is not read)
            if name not in names and \
                    isinstance(getattr(t, name, None), types.MemberDescriptorType):
                names.append(name)
    return tuple(names) if names else _NO_SLOTS


def _state(obj, slots) -> dict:
    """An object's fields as a dict: its set slots, then its ``__dict__``. ``slots`` None: a
    class read by ``__tree_fields__``, whose slots are all read (its fields were read by
    name, so a slot it did not list was lost in a rebuild, and one a forward pass deleted
    failed the write-back with AttributeError)."""
    d = getattr(obj, "__dict__", None)
    if slots is None:
        slots = _all_slots(type(obj))
    if not slots:
        return d if d is not None else dict(_fields(obj) or ())
    state = {k: v for k in slots if (v := getattr(obj, k, _UNSET)) is not _UNSET}
    if d:
        state.update(d)
    return state


def _all_slots(t) -> tuple:
    """All the slots of ``t``, a class read by ``__tree_fields__`` (once per class)."""
    slots = _ALL_SLOTS.get(t)
    if slots is None:
        slots = _ALL_SLOTS[t] = _slot_names(t)
    return slots


def blank(t: type):
    """A new instance of ``t`` with no fields set, its ``__init__`` not called (how a tree
    rebuilds an object node)."""
    return t.__new__(t) if issubclass(t, types.SimpleNamespace) else object.__new__(t)


def _set_fields(obj, state: dict) -> None:
    """Set a new object's fields: slots through their descriptors, the rest in its
    ``__dict__`` (a class's own ``__setattr__`` is not called: a frozen dataclass is rebuilt
    too)."""
    d = getattr(obj, "__dict__", None)
    slots = None
    if d is not None:
        slots = _NODES.get(type(obj), (None, None))[1]
        if slots is None:  # read by __tree_fields__: a slot is set through its descriptor
            slots = _all_slots(type(obj))  # (it went into __dict__, and was never read)
        if not slots:
            d.update(state)
            return
    for k, v in state.items():
        if d is None or k in slots:
            object.__setattr__(obj, k, v)
        else:
            d[k] = v


def tree_state(obj) -> dict:
    """An object node's fields (its set slots, then its attributes) as a dict; what
    :func:`set_fields` sets back. The dict may be the object's own ``__dict__``."""
    return _state(obj, _NODES.get(type(obj), (None, None))[1])


def set_fields(obj, fields: dict) -> None:
    """Set fields of an object node as a tree's rebuild does (through its slots' descriptors
    and its ``__dict__``, not its class's ``__setattr__``)."""
    _set_fields(obj, fields)


