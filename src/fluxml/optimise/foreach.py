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

Under ``fl.compile`` the program records each array's own step (concatenating traced arrays
would only add copies: the compiled code has no per-call overhead to save), except for what
depends on the step counts alone. Those are traced values that may differ between arrays
(after ``freeze`` and ``thaw``, or a partly loaded state), and each array's bias corrections
(Adam's ``1 - b**t`` and square root) would be a few scalar operations of its own: a few
microseconds each in NumPy, a kernel each on XLA's CPU runtime. So the arrays of one rule
(rules compared by value: the trace holds a copy per Leaf) whose ``counts_vector`` says the
counts reach its arrays only through ``base.number`` are grouped at any size: every array's
step counts the stacked vector of the group's counters (the same equations for every array,
which the compiler's common subexpression pass keeps once), and ``number`` picks the
array's entry where a count's value meets the array.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np

from fluxml.ad.core import COMPILING, Tracer, compiling
from fluxml.optimise.base import LANE, apply_rule

SMALL = 4096  # arrays with fewer entries than this are stepped in groups


def step_together(items) -> list:
    """Step the groups among ``items`` (``(leaf, x, dx)`` triples, one per array) that can
    be stepped together; returns the items left for the per-array path."""
    groups: dict = {}
    rest = []
    trace = compiling() if COMPILING else None
    for item in items:
        key = _group_key(*item) if trace is None else _traced_key(trace, *item)
        if key is None:
            rest.append(item)
        else:
            groups.setdefault(key, []).append(item)
    if trace is not None:  # fl.compile traces a copy of the rule for each Leaf
        groups = {i: g for i, g in enumerate(_by_equal_rules(groups.values()))}
    for members in groups.values():
        if len(members) == 1:
            rest.append(members[0])
        elif trace is None:
            _step_group(members)
        else:
            _step_traced(members, trace)
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
    new, step = apply_rule(rule, _rebuild(state, parts), x, dx, flat.buffers[2])
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


# --- under fl.compile -------------------------------------------------------------------------


def _traced_key(trace, leaf, x, dx):
    """Under ``fl.compile``: what arrays whose counts are computed together share (their
    rule's class and state layout), or None for an array stepped alone. The rule must count a
    vector (``counts_vector``), and ``x``, ``dx`` and the counters (0-d integer arrays, whose
    values may differ) be traced by ``trace``: this thread's compile, not a gradient's
    tracers (of a step differentiated through, say)."""
    rule, state = leaf.rule, leaf.state
    if not (rule.counts_vector and isinstance(state, tuple) and _ours(x, trace)
            and _ours(dx, trace)):
        return None
    counts = _counters(state, trace)
    return (type(rule), type(state), len(state), counts) if counts else None


def _counters(state, trace) -> tuple:
    """The positions of the step counters among a state's fields."""
    return tuple(j for j, s in enumerate(state)
                 if _ours(s, trace) and s.shape == () and s.dtype.kind == "i")


def _by_equal_rules(groups) -> list:
    """Each group split into the members whose rules are equal (one rule object eagerly; under
    ``fl.compile`` each Leaf holds its own copy)."""
    out = []
    for members in groups:
        split: list = []  # [(rule, members)]
        for item in members:
            rule = item[0].rule
            for r, same in split:
                if _same_rule(r, rule):
                    same.append(item)
                    break
            else:
                split.append((rule, [item]))
        out.extend(same for _, same in split)
    return out


def _same_rule(a, b) -> bool:
    """One rule object, or rules of one class whose hyperparameters are equal numbers,
    strings or tuples of them, or the same traced values (anything else: not known to step
    alike)."""
    if a is b:
        return True
    if type(a) is not type(b) or not dataclasses.is_dataclass(a):
        return False
    return all(_plain_equal(getattr(a, f.name), getattr(b, f.name))
               for f in dataclasses.fields(a))


def _plain_equal(a, b) -> bool:
    if a is b:  # (a traced hyperparameter: one input, shared by the copies of one rule)
        return True
    if type(a) is not type(b):
        return False
    if type(a) is tuple:
        return len(a) == len(b) and all(map(_plain_equal, a, b))
    return a is None or type(a) in (bool, int, float, str) and a == b


def _ours(a, trace) -> bool:
    return type(a) is Tracer and a._trace is trace


def _step_traced(members, trace):
    """Record the group's steps: each array's own step, as the per-array path records it, but
    counting the vector of all the group's counters, so that the rule's scalar arithmetic on
    them is the same equations for every array (the compiler's common subexpression pass
    then keeps them once); ``number`` picks the array's entry, and each counter gets its own."""
    k = len(members)
    counts = _counters(members[0][0].state, trace)
    columns = {j: [m[0].state[j] for m in members] for j in counts}
    # one stack per array (the rule counts it in place), all made before any count is written
    stacks = [{j: np.stack(column) for j, column in columns.items()} for _ in members]
    for lane, (leaf, x, dx) in enumerate(members):
        fields = [stacks[lane].get(j, f) for j, f in enumerate(leaf.state)]
        token = LANE.set((lane, k))
        try:
            new, step = apply_rule(leaf.rule, _rebuild(leaf.state, fields), x, dx,
                                   np.empty_like(x))
        finally:
            LANE.reset(token)
        fields = list(new)
        for j in counts:
            counter = columns[j][lane]
            counter[...] = fields[j][lane]
            fields[j] = counter
        leaf.state = _rebuild(new, fields)
        if step is not None:
            np.subtract(x, step, out=x)


# --- states --------------------------------------------------------------------------------------


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
