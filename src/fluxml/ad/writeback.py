"""Writing back what a differentiated function sets on its arguments.

The transforms run ``f`` on a traced copy of its arguments (:func:`fluxml.tree.unflatten`
with a ``log``); after the call, the fields ``f`` set or deleted on the copy's objects and the
items it put into its lists and dicts are written back to the originals
(:func:`write_back`), so that a counter, a layer's state or a user's running
statistics move as they do when ``f`` runs eagerly. Values are mapped back on the way: an
argument's tracer to the argument, another tracer of the transform to a copy of its value, a
copied object to its original. An object, list or dict met at two places (a layer used twice)
is one copy; its numbers' leaves at the later places are aliased to the first place's.

>>> import numpy as np, fluxml as fl
>>> class Counter:
...     def __init__(self):
...         self.w, self.calls = np.ones(2), 0
...     def __call__(self, x):
...         self.calls += 1
...         return np.sum(self.w * x)
>>> m = Counter()
>>> _ = fl.gradient(lambda m: m(np.ones(2)), m)
>>> m.calls
1
"""

from __future__ import annotations

import collections
import operator
import types

import numpy as np

from fluxml import tree
from fluxml.ad.core import Tracer


class Rebuilt:
    """The traced copy of a function's arguments, with what writing its changes back to the
    originals needs: a field set in ``f`` (``self.calls += 1``, ``self.state = h``) or an
    item appended to a list holds, after the call, what it would hold had ``f`` run on the
    originals, traced values as plain arrays (:func:`write_back`)."""

    __slots__ = ("trace", "log", "leaves", "new_leaves", "boxes", "values", "alias",
                 "_copies", "_written", "_values")

    def __init__(self, trace, log, leaves, new_leaves, boxes, spec):
        self.trace, self.log = trace, log
        self.leaves, self.new_leaves = leaves, new_leaves
        self.boxes = list(boxes)  # (before aliasing): a handle not at its box was written
        # or not at its value: forward mode's box is the tangent, which a write of a
        # constant (self.count += 1.0) leaves as it was
        self.values = [t._val if type(t) is Tracer else None for t in new_leaves]
        self.alias = self._aliases(spec)
        self._copies = None
        self._written: set = set()
        # id of a traced value -> the plain array it became: a value held at two places
        # (a.h = b.h = h; self.seen = self.state before `self.state *= 0.5`) becomes one
        # array, as it is one eagerly
        self._values: dict = {}

    def _aliases(self, spec) -> dict:
        """Leaf position -> the position of the same leaf at the first place of its object,
        for the leaves of objects met again (none in most trees)."""
        if not any(entry is tree.REPEATED for entry in self.log):
            return {}
        first: dict = {}
        alias: dict = {}
        for node, start in _objects_at(spec):
            seen = first.setdefault(id(node.static), start)
            if seen != start:  # met again: its leaves are the first place's
                for k in range(_count_leaves(node)):
                    alias[start + k] = alias.get(seen + k, seen + k)
        return alias

    def write_back(self) -> None:
        if self.trace.rebound:  # an argument written in place holds its new value: a field
            # holding it is rebound to a copy of it (the caller's array is never changed)
            self._written = {id(t) for t, box, val in zip(self.new_leaves, self.boxes,
                                                          self.values)
                             if type(t) is Tracer and (t._box is not box or t._val is not val)}
        write_back(self.log, self.restore, self._written)

    def restore(self, v):
        """What the original tree holds for ``v``, a value of the copy: an argument's tracer
        is the argument, another tracer of this trace its value (a copy), a copied object
        its original; containers and objects holding these are rebuilt around them."""
        t = type(v)
        if t is Tracer:
            if v._trace is not self.trace:
                return v
            x = self._originals().get(id(v), _NONE)
            if x is not _NONE and id(v) not in self._written:
                return x
            new = self._values.get(id(v))
            if new is None:
                # a value of the trace, or an argument written in place: its new value, in a
                # new array of the argument's type (a 0-d array stays one, as `a += 1` keeps
                # it eagerly)
                new = np.array(v._val) if type(x) is np.ndarray else v._val.copy()
                self._values[id(v)] = new
            return new
        if t in _KEPT:
            return v
        originals = self._originals()
        if id(v) in originals:
            return originals[id(v)]
        if t is types.MethodType and id(v.__self__) in originals:  # self.impl = self._f
            return types.MethodType(v.__func__, originals[id(v.__self__)])
        if t is set or t is frozenset:  # (members, like dict keys, are not walked)
            return t(originals.get(id(k), k) for k in v)
        if isinstance(v, dict):
            items = {originals.get(id(k), k): self.restore(x) for k, x in v.items()}
            if all(a is b for a, b in zip(items, v)) and \
                    all(a is b for a, b in zip(items.values(), v.values())):
                return v
            return items if t is dict else tree._rebuild_dict(t, items)
        try:
            leaves, spec = tree.flatten(v, lambda a: type(a) is Tracer or id(a) in originals)
        except ValueError:  # a cycle: kept as it is
            return v
        if not leaves:
            return v
        return tree.unflatten(spec, [self.restore(a) for a in leaves])

    def _originals(self) -> dict:
        if self._copies is None:
            originals = {id(t): x for x, t in zip(self.leaves, self.new_leaves)
                         if type(t) is Tracer}
            for entry in self.log:
                if entry is not tree.REPEATED:
                    originals[id(entry[1])] = entry[0]
            self._copies = originals
        return self._copies


_NONE = object()


def write_back(log: list, restore, written=frozenset()) -> None:
    """Make the originals of a tree rebuilt with the ``log`` of :func:`fluxml.tree.unflatten`
    show what was done to the new tree's mutable parts since: fields set or deleted on its
    objects, items put into its lists and dicts. Each value written goes through
    ``restore``, which maps the new tree's parts back to what the originals hold (a
    gradient's tracers to arrays). A value whose ``id`` is in ``written`` (an array written
    in place) counts as set again where it is found.

    >>> import fluxml as fl
    >>> from types import SimpleNamespace as NS
    >>> old = NS(calls=0, log=[])
    >>> leaves, spec = fl.flatten(old)
    >>> log = []
    >>> new = fl.unflatten(spec, leaves, log=log)
    >>> new.calls += 1; new.log.append("seen")
    >>> from fluxml.ad.writeback import write_back
    >>> write_back(log, lambda v: v)
    >>> old.calls, old.log
    (1, ['seen'])
    """
    for entry in log:
        if entry is tree.REPEATED:
            continue
        original, new, built = entry
        if isinstance(new, dict):
            if len(new) != len(built) or \
                    any(new.get(k, _NONE) is not v or id(v) in written
                        for k, v in built.items()):
                items = {restore(k): restore(v) for k, v in new.items()}
                original.clear()
                original.update(items)
        elif type(built) is list:
            if len(new) != len(built) or \
                    any(a is not b or id(a) in written for a, b in zip(new, built)):
                items = [restore(v) for v in new]
                if isinstance(original, collections.deque):
                    original.clear()
                    original.extend(items)
                else:
                    original[:] = items
        else:
            now = getattr(new, "__dict__", None)
            if now is not None and not written and _same(now, built):  # (most objects)
                continue
            now = tree.tree_state(new)
            changed = {k: restore(v) for k, v in now.items()
                       if built.get(k, _NONE) is not v or id(v) in written}
            if changed:
                tree.set_fields(original, changed)
            if changed or len(now) != len(built):
                for k in built.keys() - now.keys():
                    object.__delattr__(original, k)


def _same(now: dict, built: dict) -> bool:
    """Whether a dict holds the same keys and values (by identity, in order) as before."""
    return len(now) == len(built) and all(map(operator.is_, now.values(), built.values())) \
        and all(map(operator.is_, now, built))
_KEPT = {int, float, complex, bool, str, type(None), np.ndarray}


_SHARED = ("object", "list", "dict")  # the nodes one copy stands for at every place


def _objects_at(spec):
    """``(node, position of its first leaf)`` for each object, list or dict node of
    ``spec``, in flatten's order; a repeated one's subtree is not entered again."""
    seen: set = set()
    at = 0
    stack = [spec]
    while stack:
        node = stack.pop()
        kind = node.kind
        if kind == "leaf":
            at += 1
        elif kind in _SHARED and id(node.static) in seen:
            yield node, at
            at += _count_leaves(node)
        elif kind != "static":
            if kind in _SHARED:
                seen.add(id(node.static))
                yield node, at
            stack.extend(reversed(node.children))


def _count_leaves(spec) -> int:
    if spec.kind == "leaf":
        return 1
    return sum(_count_leaves(c) for c in spec.children)


def check_repeated(alias, p_leaves, t_leaves):
    """An object at two places of the primals (a layer used twice) is one object, traced
    once: its number fields have one tangent each (its arrays are checked as tied ones)."""
    for j, i in alias.items():
        a, b = t_leaves[i], t_leaves[j]
        if a is b or not isinstance(p_leaves[j], (float, complex, np.generic)):
            continue
        if type(a) is not Tracer and type(b) is not Tracer and (a or 0) == (b or 0):
            continue
        raise ValueError(
            "jvp: the same object (a layer used twice) is at two places of the primals with "
            f"different tangents for one of its numbers ({a!r} and {b!r}); it is one input "
            "with one tangent. To perturb the two places apart, use two copies of it")
