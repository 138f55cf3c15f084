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
import functools
import operator
import types

import numpy as np

from fluxml import tree
from fluxml.ad.core import Tracer
from fluxml.ad.weak import WEAK


class Rebuilt:
    """The traced copy of a function's arguments, with what writing its changes back to the
    originals needs: a field set in ``f`` (``self.calls += 1``, ``self.state = h``) or an
    item appended to a list holds, after the call, what it would hold had ``f`` run on the
    originals, traced values as plain arrays (:func:`write_back`)."""

    __slots__ = ("trace", "log", "leaves", "new_leaves", "boxes", "values", "alias",
                 "reached", "_copies", "_written", "_values")

    def __init__(self, trace, log, leaves, new_leaves, boxes, spec):
        self.trace, self.log = trace, log
        self.leaves, self.new_leaves = leaves, new_leaves
        self.boxes = list(boxes)  # (before aliasing): a handle not at its box was written
        # or not at its value: forward mode's box is the tangent, which a write of a
        # constant (self.count += 1.0) leaves as it was
        self.values = [t._val if type(t) is Tracer else None for t in new_leaves]
        self.alias = self._aliases(spec)
        self._copies = None
        # (holder, key, function) for the functions f stored on what it reaches without
        # being given it (a closed-over list of hooks), found by plain_reached
        self.reached: list = []
        self._written: set | None = None  # (find_written, once the function has run)
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

    def find_written(self) -> set:
        """The ids of the arguments' handles written in place, found once the function has
        run (plain_reached and write_back both ask)."""
        if self._written is None:
            # an argument written in place holds its new value: a field holding it is
            # rebound to a copy of it (the caller's array is never changed)
            self._written = {id(t) for t, box, val in zip(self.new_leaves, self.boxes,
                                                          self.values)
                             if type(t) is Tracer and (t._box is not box or t._val is not val)
                             } if self.trace.rebound else set()
        return self._written

    def write_back(self) -> None:
        write_back(self.log, self.restore, self.find_written())
        for holder, k, v in self.reached:  # functions over the copy, stored elsewhere
            if _over(v, self.trace, self._originals()):
                _put(holder, k, self.restore(v))

    def restore(self, v):
        """What the original tree holds for ``v``, a value of the copy: an argument's tracer
        is the argument, another tracer of this trace its value (a copy), a copied object
        its original; containers and objects holding these are rebuilt around them."""
        t = type(v)
        if t is Tracer:
            if v._trace is not self.trace:
                return v
            x = self._originals().get(id(v), _NONE)
            if x is not _NONE and id(v) not in self.find_written():
                return x
            new = self._values.get(id(v))
            if new is None:
                # a value of the trace, or an argument written in place: its new value, in a
                # new array of the argument's type (a 0-d array stays one, as `a += 1` keeps
                # it eagerly)
                new = np.array(v._val) if type(x) is np.ndarray else _copy(v._val)
                self._values[id(v)] = new
            return new
        return restore_parts(v, self._originals(), self.restore)

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
    found = changes(log, written)
    if found:
        apply(found, restore)


def changes(log: list, written=frozenset()) -> list:
    """What :func:`write_back` writes, before ``restore``: ``(original, new, removed)`` for
    each changed part of the log, ``new`` its new items (a dict's or a list's, all of them)
    or its changed fields (an object's, a dict), or its members (a set's), ``removed`` the
    fields deleted (None for a list, dict or set)."""
    out = []
    for entry in log:
        if entry is tree.REPEATED:
            continue
        original, new, built = entry
        if isinstance(new, dict):
            if len(new) != len(built) or \
                    any(new.get(k, _NONE) is not v or _holds(v, written)
                        for k, v in built.items()):
                out.append((original, dict(new), None))
        elif type(built) is list:
            if len(new) != len(built) or \
                    any(a is not b or _holds(a, written) for a, b in zip(new, built)):
                out.append((original, list(new), None))
        elif type(built) is set:
            if len(new) != len(built) or any(a not in built for a in new):
                out.append((original, set(new), None))
        else:
            now = getattr(new, "__dict__", None)
            if now is not None and not written and _same(now, built):  # (most objects)
                continue
            now = tree.tree_state(new)
            changed = {k: v for k, v in now.items()
                       if built.get(k, _NONE) is not v or _holds(v, written)}
            if changed or len(now) != len(built):
                out.append((original, changed, built.keys() - now.keys()))
    return out


def contents(part):
    """A shallow copy of what an object, list, deque, dict or set holds (:func:`put_back`
    gives it back): what a step or a checkpoint's forward pass may set on it."""
    if isinstance(part, dict):
        return dict(part)
    if isinstance(part, set):
        return set(part)
    if isinstance(part, (list, collections.deque)):
        return list(part)
    return dict(tree.tree_state(part))


def put_back(part, before) -> None:
    """Give ``part`` the contents :func:`contents` copied (only what changed is written)."""
    if isinstance(part, (dict, set)):
        if len(part) != len(before) or (
                any(part.get(k, part) is not v for k, v in before.items())
                if isinstance(part, dict) else part != before):
            part.clear()
            part.update(before)
    elif isinstance(part, (list, collections.deque)):
        if len(part) != len(before) or any(a is not b for a, b in zip(part, before)):
            part.clear()  # (a deque takes no slice)
            part.extend(before)
    else:
        now = tree.tree_state(part)
        for k in now.keys() - before.keys():
            object.__delattr__(part, k)
        tree.set_fields(part, {k: v for k, v in before.items() if now.get(k, part) is not v})


def _holds(v, written) -> bool:
    """Is ``v`` an argument written in place (``written``), or a tuple holding one? (A tuple
    is not logged: the same tuple holds the same handle, whose value the write changed.)"""
    if not written:
        return False
    if id(v) in written:
        return True
    return isinstance(v, tuple) and any(_holds(x, written) for x in v)


def changed_values(found: list) -> list:
    """The values :func:`apply` passes to ``restore`` for ``found`` (from :func:`changes`),
    in its order (a dict's keys and values, a list's items, an object's changed fields)."""
    out: list = []
    for _, new, removed in found:
        if removed is None and isinstance(new, dict):
            for k, v in new.items():
                out += (k, v)
        else:
            out += new.values() if removed is not None else new
    return out


def apply(found: list, restore) -> None:
    """Write what :func:`changes` found to the originals, each value through ``restore``."""
    for original, new, removed in found:
        if removed is None and isinstance(new, dict):
            items = {restore(k): restore(v) for k, v in new.items()}
            original.clear()
            original.update(items)
        elif type(new) is set:
            members = {restore(v) for v in new}
            original.clear()
            original.update(members)
        elif removed is None:
            items = [restore(v) for v in new]
            if isinstance(original, collections.deque):
                original.clear()
                original.extend(items)
            else:
                original[:] = items
        else:
            if new:
                tree.set_fields(original, {k: restore(v) for k, v in new.items()})
            for k in removed:
                object.__delattr__(original, k)


def restore_parts(v, originals: dict, restore):
    """``v`` as the originals hold it: ``originals[id(v)]`` (a copy's original), else ``v``
    with its parts so mapped (each leaf through ``restore``): a method bound to a copy is
    bound to its original, and a container or object holding copies is rebuilt around
    their originals."""
    x = originals.get(id(v), _NONE)
    if x is not _NONE:
        return x
    t = type(v)
    if t in _KEPT:
        return v
    if t is types.MethodType and id(v.__self__) in originals:  # self.impl = self._f
        return types.MethodType(v.__func__, originals[id(v.__self__)])
    if t is set or t is frozenset:  # (members, like dict keys, are not walked as parts)
        return t(tree.held_as(k, originals) for k in v)
    if t is types.FunctionType and v.__closure__:  # self.fn = lambda z: z * self.w
        return _function_over(v, originals, restore)
    if t is functools.partial:  # self.fn = partial(step, self)
        args = [restore(a) for a in v.args]
        keywords = {k: restore(a) for k, a in v.keywords.items()}
        if all(map(operator.is_, args, v.args)) and \
                all(keywords[k] is a for k, a in v.keywords.items()):
            return v
        return functools.partial(restore(v.func), *args, **keywords)
    if isinstance(v, dict):
        items = {tree.held_as(k, originals): restore(x) for k, x in v.items()}
        if all(a is b for a, b in zip(items, v)) and \
                all(a is b for a, b in zip(items.values(), v.values())):
            return v
        return items if t is dict else tree._rebuild_dict(t, items, v)
    try:
        leaves, spec = tree.flatten(v, lambda a: type(a) is Tracer or id(a) in originals)
    except ValueError:  # a cycle: kept as it is
        return v
    if not leaves:
        return v
    return tree.unflatten(spec, [restore(a) for a in leaves])


def _function_over(v, originals, restore):
    """A function ``f`` made while differentiated closes over the traced copy's objects or
    over traced values: the same function over the originals and plain arrays (it was
    left over the copy: stale, and a leaked tracer when called). The new function stands
    for ``v`` in ``originals`` while its cells are restored, so that a function that calls
    itself (a recursive one) calls the new one."""
    cells = v.__closure__
    values = []
    for c in cells:
        try:
            values.append(c.cell_contents)
        except ValueError:  # a name not assigned yet: left empty
            values.append(_NONE)
    closure = tuple(types.CellType() for _ in cells)
    f = types.FunctionType(v.__code__, v.__globals__, v.__name__, v.__defaults__, closure)
    originals[id(v)] = f
    same = True
    for cell, x in zip(closure, values):
        if x is not _NONE:
            y = cell.cell_contents = restore(x)
            same = same and (y is x or y is f and x is v)
    if same:
        originals[id(v)] = v
        return v
    f.__kwdefaults__, f.__dict__ = v.__kwdefaults__, dict(v.__dict__)
    f.__qualname__, f.__doc__ = v.__qualname__, v.__doc__
    return f


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


def _put(holder, k, v) -> None:
    """Set ``holder``'s item or field ``k`` to ``v``."""
    if isinstance(holder, (dict, list, collections.deque)):
        holder[k] = v
    else:
        tree.set_fields(holder, {k: v})


def _over(v, trace, copies: dict) -> bool:
    """Whether the function ``v`` closes over (is bound to, holds as a partial's argument)
    a traced copy's part (its id in ``copies``) or a tracer of ``trace``."""
    t = type(v)
    if t is types.MethodType:
        parts: tuple = (v.__self__,)
    elif t is functools.partial:
        parts = (*v.args, *v.keywords.values())
    else:
        parts = tuple(_contents(c) for c in v.__closure__ or ())
    return any(id(p) in copies or type(p) is Tracer and p._trace is trace for p in parts)


def _contents(cell):
    try:
        return cell.cell_contents
    except ValueError:  # a name not assigned yet
        return _NONE


def _copy(value):
    """A traced value as the function's arguments get it: a copy, or the Python number a
    weak value stands for (``self.total = self.total * 2.0`` keeps a float a float)."""
    return value.item() if type(value) in WEAK else value.copy()
