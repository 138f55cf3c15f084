"""``update``'s multi-tensor path: small arrays that share a rule are stepped together.

A rule marked ``elementwise`` computes each entry of its update, and of its state arrays,
from the same entries of ``x``, ``dx`` and the state alone (Adam and its family, momentum,
RMSProp ...; not ``ClipNorm``, whose norm spans the array). Stepping the concatenation of
several arrays then gives every array the numbers that stepping it alone gives. For small
arrays a step is a dozen NumPy calls of a microsecond each, mostly call overhead, so a group
of them costs about what one array costs: each array is copied into its part of a flat
buffer for ``x``, ``dx`` and every state array, the rule runs once on the flat buffers, and
each array gets its state and ``x -= update`` written back.

The state arrays stay separate arrays of each ``Leaf`` (what printing, saving, loading and
``fl.compile`` see, which refuses written arguments that are views of one buffer); the flat
buffers are scratch, kept on the group's first Leaf between steps. A group is the arrays of
one rule object, one dtype, the same kind of state and the same step count; arrays of
``SMALL`` entries or more are stepped alone: there the copies cost about what the calls they
save cost (six float32 arrays of 4,096 entries step in about the same time either way).
"""

from __future__ import annotations

import itertools
import math

import numpy as np

SMALL = 4096  # arrays with fewer entries than this are stepped in groups


def step_together(items) -> list:
    """Step the groups among ``items`` (``(leaf, x, dx)`` triples, one per array) that can
    be stepped together; returns the items left for the per-array path."""
    groups: dict = {}
    rest = []
    for item in items:
        key = _group_key(*item)
        if key is None:
            rest.append(item)
        else:
            groups.setdefault(key, []).append(item)
    for members in groups.values():
        if len(members) == 1:
            rest.append(members[0])
        else:
            _step_group(members)
    return rest


def _group_key(leaf, x, dx):
    """What arrays stepped together must share, or None for one stepped alone: plain NumPy
    arrays (not CuPy's, nor fl.compile's traced ones), ``dx`` and each state array shaped
    and typed as ``x``; counters (0-d integer arrays) equal."""
    rule = leaf.rule
    if not rule.elementwise or type(x) is not np.ndarray or type(dx) is not np.ndarray:
        return None
    shape, dtype = x.shape, x.dtype
    if x.size >= SMALL or dx.shape != shape or dx.dtype != dtype:
        return None
    state = leaf.state
    if state is None:
        return id(rule), dtype
    if type(state) is np.ndarray:
        return (id(rule), dtype, "array") if state.shape == shape and state.dtype == dtype \
            else None
    if not isinstance(state, tuple):
        return None
    key = [id(rule), dtype, type(state)]
    for s in state:
        if s is None:
            key.append(None)
        elif type(s) is not np.ndarray:
            return None
        elif s.shape == shape and s.dtype == dtype:
            key.append("array")
        elif s.shape == () and s.dtype.kind == "i":  # a step counter: its value joins the key
            key.append(s.item())
        else:
            return None
    return tuple(key)


class _Flat:
    """Scratch for one group: flat buffers, and each array's view of each buffer (C order).
    It holds no values between steps (every step gathers afresh), so a copy of it (a copied
    optimiser state) is new scratch of the same layout."""

    def __init__(self, shapes, dtype, n_buffers):
        self.shapes = shapes
        self.dtype = dtype
        sizes = [math.prod(s) for s in shapes]
        ends = list(itertools.accumulate(sizes))
        self.bounds = [(e - n, e) for n, e in zip(sizes, ends)]
        self.buffers = [np.empty(ends[-1], dtype) for _ in range(n_buffers)]
        self.views = [self._split(b) for b in self.buffers]

    def __reduce__(self):  # copies and pickles: views of their own buffers, not of these
        return _Flat, (self.shapes, self.dtype, len(self.buffers))

    def fits(self, shapes, dtype, n_buffers) -> bool:
        return self.shapes == shapes and self.dtype == dtype and len(self.buffers) == n_buffers

    def _split(self, flat):
        return [flat[a:b].reshape(s) for (a, b), s in zip(self.bounds, self.shapes)]

    def gather(self, k, arrays):
        """Buffer ``k`` holding ``arrays``."""
        for view, a in zip(self.views[k], arrays):
            view[...] = a  # (cheaper than np.concatenate or np.copyto on small arrays)
        return self.buffers[k]

    def split(self, flat):
        """Each array's part of ``flat`` (a buffer of this group, or one a rule returned)."""
        for buf, views in zip(self.buffers, self.views):
            if buf is flat:
                return views
        return self._split(flat)


def _step_group(members):
    leaves = [m[0] for m in members]
    xs = [m[1] for m in members]
    first = leaves[0]
    rule, state = first.rule, first.state
    kinds = _state_kinds(state)
    # per state field, the group's arrays (one column per field)
    columns = list(zip(*[_fields(leaf.state) for leaf in leaves]))
    n_buffers = 3 + kinds.count("array")  # x, dx, the update, the state arrays
    shapes = tuple([x.shape for x in xs])
    dtype = xs[0].dtype
    flat = getattr(first, "_flat", None)  # (not a tree field: never saved, never flattened)
    if flat is None or not flat.fits(shapes, dtype, n_buffers):
        flat = first._flat = _Flat(shapes, dtype, n_buffers)
    x = flat.gather(0, xs)
    dx = flat.gather(1, [m[2] for m in members])
    parts, k = [], 3
    for kind, column in zip(kinds, columns):
        if kind == "array":
            parts.append(flat.gather(k, column))
            k += 1
        elif kind == "counter":
            parts.append(column[0].copy())  # the rule counts it in place
        else:
            parts.append(None)
    new, step = rule.apply(_rebuild(state, parts), x, dx, flat.buffers[2])
    for kind, column, value in zip(kinds, columns, _fields(new)):
        if kind == "array":
            for target, part in zip(column, flat.split(value)):
                target[...] = part
        elif kind == "counter":
            count = int(value)
            for target in column:
                target[...] = count
    if step is not None:
        for x, part in zip(xs, flat.split(step)):
            x -= part


def _fields(state) -> tuple:
    """A state's fields: none, the one array, or the tuple's entries."""
    if state is None:
        return ()
    return (state,) if type(state) is np.ndarray else tuple(state)


def _state_kinds(state) -> tuple:
    """Per state field: "array" (shaped like x), "counter" (0-d integer) or None."""
    if type(state) is np.ndarray:  # one array, shaped like x (the group key checked)
        return ("array",)
    return tuple(None if s is None else "array" if s.ndim or s.dtype.kind != "i" else "counter"
                 for s in _fields(state))


def _rebuild(state, parts):
    """A state of ``state``'s kind holding ``parts``."""
    if state is None:
        return None
    if type(state) is np.ndarray:
        return parts[0]
    return type(state)(*parts) if hasattr(state, "_fields") else type(state)(parts)
