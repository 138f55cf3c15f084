"""Trees (functors): nested containers of arrays, flattened to leaves and rebuilt.

A tree is any nesting of lists, tuples, dicts, namedtuples, dataclasses and plain objects
with attributes (``fl.Module`` subclasses among them, the user's classes with ``__slots__``,
``types.SimpleNamespace``). Its leaves are arrays and numbers; everything else (functions,
strings, enum members, None, the standard library's objects ...) is static structure, kept
when a tree is rebuilt from its own leaves and shown as ``None`` in a gradient. A field
holding a method bound to the object or to one of its fields (``self.impl =
self._forward``) is bound to the rebuilt object. A subclass of list, tuple or dict keeps its
instance attributes when rebuilt (static parts: they are not walked), but not in the traced
copy a transform (``fl.gradient``) passes to the function: there a forward pass cannot read
them (make them a Module's fields).

This module walks trees (flatten, unflatten, align, paths); mapping trees (``fl.fmap``,
``fl.fmap_with_path``, ``fl.fcollect``) is :mod:`fluxml.treemaps`'s, and what each value is
in a tree, and how an object node's fields are read and set, :mod:`fluxml.treenodes`'s.

>>> import numpy as np, fluxml as fl
>>> leaves, spec = fl.tree.flatten({"w": np.ones(2), "b": 0.5, "act": "relu"})
>>> len(leaves)
2
>>> fl.tree.unflatten(spec, [2 * x for x in leaves])
{'w': array([2., 2.]), 'b': 1.0, 'act': 'relu'}
"""

from __future__ import annotations

import collections
import operator
import sys
import types
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

# (what a value is in a tree, and an object's fields: fluxml.treenodes; its public names
# are importable from here as they were)
from fluxml.treenodes import (
    _CONTAINERS,
    _KINDS,
    _NO_SLOTS,
    _NODES,
    _container,
    _fields,
    _kind,
    _set_fields,
    _state,
    nontrainable,
)
from fluxml.treenodes import blank as blank
from fluxml.treenodes import is_array_leaf as is_array_leaf
from fluxml.treenodes import is_leaf as is_leaf
from fluxml.treenodes import register_leaf as register_leaf
from fluxml.treenodes import set_fields as set_fields
from fluxml.treenodes import slots as slots
from fluxml.treenodes import tree_state as tree_state


class Spec:
    """How to rebuild a tree: ``kind`` is "leaf", "static", or the container kind."""

    __slots__ = ("kind", "type", "keys", "children", "static")

    def __init__(self, kind, typ=None, keys=None, children=(), static=None):
        self.kind = kind
        self.type = typ
        self.keys = keys
        self.children = children
        self.static = static

    def __repr__(self):
        if self.kind in ("leaf", "static"):
            return "*" if self.kind == "leaf" else f"static({self.static!r})"
        inner = ", ".join(map(repr, self.children))
        return f"{self.kind}[{inner}]"


LEAF = Spec("leaf")


def flatten(tree, is_leaf: Callable[[Any], bool] | None = None, *, trainable: bool = False):
    """``(leaves, spec)``: the leaves in a fixed order and how to put them back.

    With ``trainable=True`` the fields a class declares ``nontrainable`` are not leaves: they
    stay with their object, untouched, when the tree is rebuilt (this is what ``gradient``
    and the optimisers see).

    >>> import numpy as np, fluxml as fl
    >>> leaves, spec = fl.flatten({"b": (np.zeros(2), 3), "a": np.ones(1)})
    >>> leaves
    [array([0., 0.]), 3, array([1.])]
    >>> fl.unflatten(spec, [10 * x for x in leaves])
    {'b': (array([0., 0.]), 30), 'a': array([10.])}
    """
    leaves: list = []
    if is_leaf is is_array_leaf:
        is_leaf = None  # the default test, by type alone
    try:
        return leaves, _flatten(tree, leaves, is_leaf, set(), trainable)
    except RecursionError:  # (objects are checked for cycles on the way; lists and dicts,
        # most nodes, are not, which would cost every walk)
        raise ValueError(_too_deep(tree)) from None


def _too_deep(tree) -> str:
    """Why a walk ran out of stack: the path to a list or dict that contains itself, or a
    tree nested deeper than Python's recursion limit."""
    stack = [(tree, "", ())]
    while stack:
        x, path, above = stack.pop()
        if isinstance(x, dict):
            items = [(str(k), v) for k, v in x.items()]
        elif isinstance(x, (list, tuple, collections.deque)):
            items = [(str(i), v) for i, v in enumerate(x)]
        else:
            continue
        if id(x) in above:
            return (f"the tree contains a cycle through a {type(x).__name__} (one that "
                    f"contains itself, met again at {path or 'the top'}); a tree cannot be "
                    "walked or rebuilt with one")
        for k, v in reversed(items):
            stack.append((v, f"{path}.{k}" if path else k, above + (id(x),)))
    return (f"the tree is nested deeper than Python's recursion limit "
            f"({sys.getrecursionlimit()}); flatten it, or raise the limit "
            "(sys.setrecursionlimit)")


def _flatten(x, leaves, leaf, seen, trainable):
    """The spec of ``x``, its leaves appended to ``leaves``; ``leaf`` is the caller's leaf
    test, None for the default one (by type)."""
    t = type(x)
    if leaf is None:
        kind = _KINDS.get(t) or _kind(t)
    else:
        kind = "leaf" if leaf(x) else _CONTAINERS.get(t) or _container(t)
    if kind == "leaf":
        leaves.append(x)
        return LEAF
    if kind == "list" or kind == "tuple" or kind == "namedtuple":
        # (a list keeps its original: a gradient writes back what its forward pass appends)
        return Spec(kind, t, None, _children(x, leaves, leaf, seen, trainable), static=x)
    if kind == "dict":
        keys = list(x.keys())
        values = map(x.__getitem__, keys)  # (not a comprehension: x would become a cell)
        return Spec(kind, t, keys, _children(values, leaves, leaf, seen, trainable),
                    static=x)
    if kind == "static":
        return Spec("static", static=x)
    if kind == "method":  # static, and the rebuilds look for bound methods from now on
        global _METHODS
        _METHODS = True
        return Spec("static", static=x)
    return _object(x, leaves, leaf, seen, trainable)


# whether a bound method was ever met in a tree: until then (most programs) a rebuild does
# not look for methods to bind to the new objects (see _rebind_methods)
_METHODS = False


def _children(values, leaves, leaf, seen, trainable) -> list:
    """The specs of ``values``, a node's children, with NumPy arrays taken without a call
    where the leaf test is the default. (A loop: a comprehension here would make the
    arguments closure cells, a measured tenth slower on every node.)"""
    specs = []
    for v in values:
        if type(v) is np.ndarray and leaf is None:
            leaves.append(v)
            specs.append(LEAF)
        else:
            specs.append(_flatten(v, leaves, leaf, seen, trainable))
    return specs


def _object(x, leaves, leaf, seen, trainable):
    """An object's node: its fields flattened, or a static part if it has none."""
    t = type(x)
    how = _NODES.get(t)
    if how is not None and how[1] is _NO_SLOTS and how[0] == "attributes" and \
            (d := getattr(x, "__dict__", None)) is not None and \
            not (trainable and nontrainable(t)):
        # a plain class's instance (most nodes: layers): its attributes read at once, not as
        # _fields' (name, value) pairs (a tenth of a small model's flatten)
        if id(x) in seen:
            raise ValueError(f"the tree contains a cycle through a {t.__name__} object")
        seen.add(id(x))
        keys, values = list(d), list(d.values())
        children = _children(values, leaves, leaf, seen, trainable)
        seen.discard(id(x))
        return Spec("object", t, keys, children, static=x)
    fields = _fields(x, trainable)
    if fields is None:
        return Spec("static", static=x)
    if id(x) in seen:
        raise ValueError(f"the tree contains a cycle through a {t.__name__} object")
    seen.add(id(x))
    children = _children([v for _, v in fields], leaves, leaf, seen, trainable)
    seen.discard(id(x))
    return Spec("object", t, [k for k, _ in fields], children, static=x)


def unflatten(spec: Spec, leaves, static_as_none: bool = False, *,
              shared: dict | None = None, log: list | None = None):
    """Rebuild a tree of ``spec``'s shape from ``leaves`` (an iterable in flatten's order).

    With ``static_as_none`` static parts become ``None`` (the shape of a gradient). With
    ``shared`` (a dict, usually empty) an object met twice in the tree (one optimiser rule
    in every Leaf of a state, a layer used twice) is rebuilt once, so the new tree shares it
    as the original does. With ``log`` (a list), each mutable part rebuilt is logged as
    ``(original, new, contents)``, its contents as built (an object's fields as a dict, a
    list's items as a list, a dict's items as a dict, a set's members as a set: the sets it
    holds are copied too): what ``fluxml.ad.writeback`` compares to write back; with
    ``shared`` too, an object met again is logged as ``REPEATED``. With ``shared`` the sets
    are copied in any case, and the dicts' keys and the sets' members that are parts of the
    tree (a layer; ``self.members = {self}``) are their new copies, as a deep copy has them.

    >>> import numpy as np, fluxml as fl
    >>> leaves, spec = fl.flatten([np.ones(2), {"x": np.zeros(1)}])
    >>> fl.unflatten(spec, [leaves[0] + 1, leaves[1] - 1])
    [array([2., 2.]), {'x': array([-1.])}]
    """
    if shared is not None and log is None:  # (its own: the keys and members to map)
        log = _OwnLog()
    start = len(log) if log is not None else 0
    it = iter(leaves)
    try:
        out = _unflatten(spec, it, static_as_none, shared, log)
    except StopIteration:  # (bare, it became a RuntimeError inside a generator)
        raise ValueError(_count_error(spec, leaves)) from None
    # (the extra leaves were dropped, silently; with ``shared`` a part met again is the one
    # built the first time, and its leaves given again are not read)
    if shared is None and next(it, _NO_MORE) is not _NO_MORE:
        raise ValueError(_count_error(spec, leaves))
    if shared and log is not None:
        _keys_to_copies(log, start, shared)
        frozen = shared.pop(_FROZEN, None)
        if frozen:
            _frozensets_to_copies(log, start, shared, frozen)
    return out


_NO_MORE = object()


def _count_error(spec, leaves) -> str:
    given = f"{len(leaves)} leaves" if hasattr(leaves, "__len__") else "other leaves"
    return f"unflatten: the spec holds {leaf_count(spec)} leaves; got {given}"


def leaf_count(spec) -> int:
    """How many leaves ``spec``'s tree holds (what :func:`unflatten` takes)."""
    return sum(node.kind == "leaf" for node in nodes(spec))


class _OwnLog(list):
    """The log :func:`unflatten` keeps for itself (``shared`` without a caller's ``log``):
    the rebuild is no transform's traced copy, so its containers keep their attributes."""


_FROZEN = "frozensets"  # (a key of ``shared`` that is no id: the frozensets met)


def _frozensets_to_copies(log: list, start: int, shared: dict, frozen: set) -> None:
    """The frozensets (ids in ``frozen``) held by the objects, lists and dicts logged from
    ``start`` whose members are parts of the tree hold their copies instead, as sets do
    (:func:`_keys_to_copies`): a frozenset is static, the same object in the new tree."""
    for i in range(start, len(log)):
        entry = log[i]
        if entry is REPEATED:
            continue
        _, new, built = entry
        items = built.items() if type(built) is dict else enumerate(built) \
            if type(built) is list else ()
        for k, v in list(items):
            if id(v) in frozen and (mapped := held_as(v, shared)) is not v:
                built[k] = mapped
                if isinstance(new, (dict, list, collections.deque)):
                    new[k] = mapped
                else:
                    _set_fields(new, {k: mapped})


def _keys_to_copies(log: list, start: int, shared: dict) -> None:
    """The keys of the dicts and the members of the sets logged from ``start`` that are
    parts of the tree rebuilt (a layer) become their new copies, in the new containers and
    in the log's contents as built: in a traced forward pass ``self in self.members`` and
    ``self.table[self.layers[0]]`` find the traced copy, as they find the model eagerly (a
    set's members and a dict's keys are not walked: they held the originals, so the test
    was False and the look-up a KeyError). Run once the whole tree is rebuilt, when every
    copy exists (a set the model holds may contain the model itself)."""
    for i in range(start, len(log)):
        entry = log[i]
        if entry is REPEATED:
            continue
        original, new, built = entry
        if type(new) is set:
            if any(_holds_part(k, shared) for k in built):
                members = {held_as(k, shared) for k in built}
                new.clear()
                new.update(members)
                log[i] = (original, new, set(members))
        elif isinstance(new, dict) and any(_holds_part(k, shared) for k in built):
            items = {held_as(k, shared): v for k, v in built.items()}
            new.clear()
            new.update(items)
            log[i] = (original, new, dict(items))


def _holds_part(k, table: dict) -> bool:
    """Is ``k`` (a dict key, a set member) an object of ``table`` (ids), or a tuple or
    frozenset holding one?"""
    return id(k) in table or isinstance(k, (tuple, frozenset)) and \
        any(_holds_part(i, table) for i in k)


def held_as(k, table: dict):
    """``k``, a dict key or a set member, with the objects of ``table`` it is or holds in
    tuples and frozensets (``{(layer, "scale"): 2.0}``, ``{(self, 0)}``) replaced by
    ``table[id(object)]`` (a layer by its copy, or a copy by its original); ``k`` itself
    when it holds none. (Keys and members are not walked as a tree's parts are: they must
    stay hashable, and the look-up ``table[(self.a, "scale")]`` must find the new key.)"""
    new = table.get(id(k), _MISSING)
    if new is not _MISSING:
        return new
    if not isinstance(k, (tuple, frozenset)):
        return k
    items = [held_as(i, table) for i in k]
    if all(map(_is, items, k)):
        return k
    t = type(k)
    return t._make(items) if hasattr(t, "_make") else t(items)  # (a namedtuple's _make)


_MISSING = object()
_is = operator.is_


def _unflatten(spec, it, none, shared=None, log=None):
    kind = spec.kind
    if kind == "leaf":
        return next(it)
    if kind == "static":
        if log is not None and not none:
            if type(spec.static) is set:  # (static, but a forward pass may add to it)
                return _logged_set(spec.static, log, shared)
            if type(spec.static) is frozenset and shared is not None:  # (its members are
                shared.setdefault(_FROZEN, set()).add(id(spec.static))  # mapped after)
        return None if none else spec.static
    # (a loop: a comprehension would make it, none, shared and log closure cells, slower to
    # read on every node)
    children = []
    for c in spec.children:
        children.append(next(it) if c is LEAF else _unflatten(c, it, none, shared, log))
    if log is not None and kind != "object":
        return _logged(spec, children, log, shared)
    if spec.type is tuple or spec.type is list:
        return spec.type(children)
    if kind == "dict" and spec.type is dict:
        return dict(zip(spec.keys, children))
    if kind != "object":  # namedtuples, deques, the subclasses of list, tuple and dict
        return _container_like(spec, children, none)
    if shared is not None and (built := shared.get(id(spec.static))) is not None:
        if log is not None:
            log.append(REPEATED)
        return built
    t, original = spec.type, spec.static
    how = _NODES.get(t)
    if how is not None and how[1] is _NO_SLOTS and how[0] == "attributes":  # a plain
        # class's instance (most nodes): inline
        old = original.__dict__
        state = dict.fromkeys(old, None) if none else dict(old)
        state.update(zip(spec.keys, children))
        obj = object.__new__(t)
        obj.__dict__.update(state)
    else:
        old = _state(original, how[1] if how is not None else None)  # (the fields a
        # trainable flatten left out, too)
        state = dict.fromkeys(old, None) if none else dict(old)
        state.update(zip(spec.keys, children))
        obj = blank(t)
        _set_fields(obj, state)
    if _METHODS and not none:
        _rebind_methods(spec, children, obj, state)
    if shared is not None:
        shared[id(original)] = obj
    if log is not None:
        log.append((original, obj, state))
    return obj


def _logged(spec, children, log, shared):
    """A container rebuilt by :func:`_unflatten` with a ``log``: lists and dicts (and
    deques, their subclasses) logged with their contents as built; with ``shared``, one met
    again is the one built (a list at two places is one list, as an object is)."""
    kind = spec.kind
    if kind == "namedtuple" or kind == "tuple":
        return _container_like(spec, children, keep=type(log) is _OwnLog)
    if shared is not None:
        built = shared.get(id(spec.static))
        if built is not None:
            log.append(REPEATED)
            return built
    new = _container_like(spec, children, keep=type(log) is _OwnLog)
    if shared is not None:
        shared[id(spec.static)] = new
    log.append((spec.static, new, dict(zip(spec.keys, children)) if kind == "dict"
                else children))
    return new


def _logged_set(original: set, log, shared):
    """A set met by a rebuild with a ``log``: a copy, logged with its members (a set is
    static in a tree, and was shared by the copy and the original: a forward pass that
    added a layer to it, ``self.members.add(self)``, left the traced copy in the user's
    set)."""
    if shared is not None:
        built = shared.get(id(original))
        if built is not None:
            log.append(REPEATED)
            return built
    new = set(original)
    if shared is not None:
        shared[id(original)] = new
    log.append((original, new, set(original)))
    return new


def _container_like(spec, children, none: bool = False, keep: bool = True):
    """A new container of ``spec``'s type holding ``children``: a deque keeps its
    ``maxlen``, and an instance of a subclass of list, tuple or dict its attributes
    (``class Layers(list)`` with ``self.name``: static parts, not walked; None with
    ``none``, as an object's static fields in a gradient). Before, they were lost: fl.f32 and
    fmap dropped them silently. ``keep=False`` (a rebuild with a caller's log: a
    transform's traced copy) leaves them out: the write-back reads a container's items, not
    its attributes, so a forward pass's ``self.layers.count += 1`` would be lost silently;
    without them it fails."""
    kind, t, like = spec.kind, spec.type, spec.static
    if kind == "dict":
        d = dict(zip(spec.keys, children))
        if t is dict:
            return d
        new = _rebuild_dict(t, d, like)
    elif kind == "namedtuple":
        new = t(*children)
    elif issubclass(t, collections.deque) and like is not None:
        new = t(children, maxlen=like.maxlen)
    else:
        new = t(children)
    attributes = getattr(like, "__dict__", None) if keep else None
    if attributes and type(new) is type(like):
        _refuse_held_arrays(like, attributes)
        new.__dict__.update(dict.fromkeys(attributes, None) if none else attributes)
    return new


def _refuse_held_arrays(container, attributes: dict) -> None:
    """An attribute of a list, tuple or dict subclass is static: kept as it is, not walked.
    One holding arrays or layers (``self.layers.head = dense``) would keep the old ones
    beside the converted or trained items (a layer at two places split in two, silently):
    refused, naming it."""
    for name, value in attributes.items():
        if any(hasattr(x, "shape") and hasattr(x, "dtype") and not isinstance(x, np.generic)
               for x in flatten(value)[0]):  # (arrays; numbers and text are static)
            base = type(container).__mro__[1].__name__
            raise TypeError(
                f"the {type(container).__name__} (a subclass of {base}) holds arrays in its "
                f"attribute {name!r}, which a tree does not walk (only its items): they would "
                f"not be converted, moved or trained with the rest. Keep arrays and layers in "
                f"its items, or in the fields of a class that holds it")


def _rebind_methods(spec, children, obj, state) -> None:
    """Fields that are methods bound to the original object, or to one of its children
    (``self.impl = self._forward``, ``self.act = self.inner.__call__``), are bound to the new
    ones: the rebuilt model (a traced copy in a gradient, an fl.f32 copy) must not call the
    old one's arrays."""
    for c in spec.children:
        if c.kind == "static" and type(c.static) is types.MethodType:
            break
    else:
        return
    new = {id(spec.static): obj}
    new.update((id(c.static), child) for c, child in zip(spec.children, children)
               if c.kind == "object")
    for k, v in list(state.items()):
        if type(v) is types.MethodType and id(v.__self__) in new:
            state[k] = types.MethodType(v.__func__, new[id(v.__self__)])  # (as logged)
            _set_fields(obj, {k: state[k]})


REPEATED = ("an object met again",)  # logged by unflatten (with shared) for each


def _rebuild_dict(typ, d, like):
    """A dict of ``like``'s type ``typ`` holding ``d``'s items: a defaultdict keeps its
    default factory (``typ(d)`` refused it, and the rebuild was a plain dict: a gradient of
    a layer filling ``self.stats[key].append(...)`` failed with KeyError); a type that
    cannot be made from a dict gives a plain dict."""
    try:
        if isinstance(like, collections.defaultdict):
            return typ(like.default_factory, d)
        return typ(d)
    except TypeError:
        return d


def leaves(tree, is_leaf: Callable[[Any], bool] | None = None) -> list:
    """The leaves of ``tree`` in flatten's order (Functors' ``fleaves``); ``is_leaf``
    replaces the default leaf test (arrays and numbers), as in :func:`fmap`. An array held
    in two places (tied weights) is listed at each place, where ``fleaves`` lists it once
    (as a gradient gives a tied array its total at each place); a model's printed
    totals count it once.

    >>> import numpy as np, fluxml as fl
    >>> fl.leaves([np.ones(1), {"x": np.zeros(2)}])
    [array([1.]), array([0., 0.])]
    >>> fl.leaves([1.0, {"x": 2.0}], is_leaf=lambda x: isinstance(x, (float, dict)))
    [1.0, {'x': 2.0}]
    """
    return flatten(tree, is_leaf)[0]


def align(tree, spec: Spec, who: str = "a tree"):
    """``tree`` with each dict's entries in the order of the matching dict of ``spec``.

    Two dicts with the same keys are one structure whatever the order they were written in,
    but ``flatten`` lists a dict's leaves in its own order; whoever pairs the leaves of two
    trees (a tangent with its primal, a cotangent with its output) aligns the second to the
    first's spec. A dict whose keys are not the spec's raises ValueError naming ``who``.
    Lists and tuples are walked by position; anything else is returned as it is.

    >>> import fluxml as fl
    >>> fl.tree.align({"b": 2.0, "a": 1.0}, fl.tree.flatten({"a": 0.0, "b": 0.0})[1])
    {'a': 1.0, 'b': 2.0}
    """
    kind = spec.kind
    if kind == "dict" and isinstance(tree, dict):
        keys = spec.keys
        if len(tree) == len(keys) and any(k not in tree for k in keys) and \
                all(map(_same_place, tree, keys)):
            keys = list(tree)  # keyed by its own layers (a copy's): paired by position
        if len(tree) != len(keys) or any(k not in tree for k in keys):
            raise ValueError(f"{who} has a dict with keys {list(tree)} where one with keys "
                             f"{keys} was expected; pass a dict with the same keys")
        children = [align(tree[k], c, who) for k, c in zip(keys, spec.children)]
        if list(tree) == keys and all(a is tree[k] for a, k in zip(children, keys)):
            return tree
        d = dict(zip(keys, children))
        return d if type(tree) is dict else _rebuild_dict(type(tree), d, tree)
    if (kind in ("list", "tuple", "namedtuple") and isinstance(tree, (list, tuple))
            and len(tree) == len(spec.children)):
        children = [align(t, c, who) for t, c in zip(tree, spec.children)]
        if all(a is b for a, b in zip(children, tree)):
            return tree
        return type(tree)(*children) if hasattr(tree, "_fields") else type(tree)(children)
    if kind == "object" and type(tree) is spec.type:
        return _align_object(tree, spec, who)
    return tree


def _same_place(a, b) -> bool:
    """Whether dict keys ``a`` and ``b`` of two trees stand for one entry: equal, or two
    objects of one class compared by identity (a dict keyed by layers, in a model and in
    its copy: a tangent made by fmap holds its own layers as keys), or tuples of such
    (``(layer, "scale")``)."""
    t = type(a)
    if t is not type(b):
        return a == b
    if isinstance(a, tuple):
        return len(a) == len(b) and all(map(_same_place, a, b))
    return a == b if t.__hash__ is not object.__hash__ else True


def keyed(spec: Spec) -> bool:
    """Whether ``spec`` has a dict or object node: the parts :func:`align` may reorder (a
    caller that aligns many trees to one spec skips the walk where it has none)."""
    return spec.kind in ("dict", "object") or any(keyed(c) for c in spec.children)


def nodes(spec: Spec) -> Iterator[Spec]:
    """Every node of ``spec``, itself included (a loop, not a recursion: a deep tree is fine).

    >>> import fluxml as fl
    >>> [n.kind for n in fl.tree.nodes(fl.tree.flatten({"a": [1.0, "x"]})[1])]
    ['dict', 'list', 'static', 'leaf']
    """
    stack = [spec]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(node.children)


def _align_object(obj, spec: Spec, who: str):
    """An object node's fields aligned to ``spec``: the dicts it holds, and the order of its
    attributes (two instances of one class may have set them in another order)."""
    fields = _fields(obj)
    if fields is None:
        return obj
    have = dict(fields)
    if any(k not in have for k in spec.keys):
        return obj  # another structure: the caller's count of leaves says so
    aligned = {k: align(have[k], c, who) for k, c in zip(spec.keys, spec.children)}
    order = [k for k, _ in fields if k in aligned]
    if order == list(spec.keys) and all(aligned[k] is have[k] for k in aligned):
        return obj
    d = getattr(obj, "__dict__", None) or {}
    new = blank(type(obj))
    # fields in the spec's order first, then the others (attributes it did not list) as
    # they were
    _set_fields(new, {**aligned, **{k: v for k, v in have.items() if k not in aligned},
                      **{k: v for k, v in d.items() if k not in aligned}})
    return new


def leaves_with_paths(tree, *, trainable: bool = False) -> list[tuple[str, Any]]:
    """``[(path, leaf), ...]`` in flatten's order; a path joins field names, dict keys and
    list positions with dots, as a state dict names its entries.

    >>> import numpy as np, fluxml as fl
    >>> fl.tree.leaves_with_paths({"layers": [np.ones(2), {"b": 0.5}]})
    [('layers.0', array([1., 1.])), ('layers.1.b', 0.5)]
    """
    leaves, spec = flatten(tree, trainable=trainable)
    paths: list[str] = []
    _paths(spec, "", paths)
    return list(zip(paths, leaves))


def _paths(spec, prefix, out):
    if spec.kind == "leaf":
        out.append(prefix)
        return
    if spec.kind == "static":
        return
    keys = spec.keys if spec.keys is not None else range(len(spec.children))
    for key, child in zip(keys, spec.children):
        _paths(child, f"{prefix}.{key}" if prefix else str(key), out)
