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
The grouping itself is kept between steps too (``_Plan``, on the first array's Leaf), and
reused while the items are the same objects and fit as they did.

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
    trace = compiling() if COMPILING else None
    if trace is None:
        items = list(items)  # (update's: a dict's values)
        plan = _Plan.of(items)
        for group in plan.groups:
            _step_group(group, [items[i][2] for i in group.at])
        return [items[i] for i in plan.rest]
    groups: dict = {}
    rest = []
    for item in items:
        key = _traced_key(trace, *item)
        if key is None:
            rest.append(item)
        else:
            groups.setdefault(key, []).append(item)
    # fl.compile traces a copy of the rule for each Leaf
    for members in _by_equal_rules(groups.values()):
        if len(members) == 1:
            rest.append(members[0])
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


def _no_plan():
    return None


class _Plan:
    """How one update's items are stepped: the groups :func:`_group_key` finds, with what
    stepping a group needs read once (its Leafs, arrays, state columns and scratch).

    Grouping the items anew cost about 1 us per array on every step (a tiny model's step
    is ~170 us), so the plan is kept on the first item's Leaf and reused by the next update
    of the same items: each grouped item the same Leaf and array, the Leaf holding the same
    rule and state objects (a state tuple holds the same arrays). What can change in place
    is checked on every step as the grouping checks it: the array's and its state arrays'
    shapes and dtypes, the new gradient's type, shape and dtype, and a group's step
    counters equal, the rule still ``elementwise``. Anything else (an array or a Leaf
    replaced, a state set up or loaded anew, a rule adjusted, a part frozen, ``SMALL``
    changed) makes a new plan. Items stepped alone need no check: one array's step is right
    whatever it holds (they keep the order of the grouping that made the plan: the arrays
    no group may take first, then the groups of one)."""

    __slots__ = ("n", "small", "groups", "rest")

    def __init__(self, items):
        self.n, self.small = len(items), SMALL
        found: dict = {}
        self.rest = []
        for i, item in enumerate(items):
            key = _group_key(*item)
            if key is None:
                self.rest.append(i)
            else:
                found.setdefault(key, []).append(i)
        self.groups = []
        for at in found.values():
            if len(at) == 1:
                self.rest.append(at[0])
            else:
                self.groups.append(_Group(at, [items[i] for i in at]))
        # (the per-array path steps the arrays stepped alone, then the groups of one; the
        # order matters where two arrays share memory: a view made after setup, stepped twice)

    def __reduce__(self):  # a copied or pickled state starts without a plan
        return _no_plan, ()

    @staticmethod
    def of(items) -> _Plan:
        """The plan kept on the first item's Leaf if it still fits ``items``, else a new
        one, kept there."""
        first = items[0][0]
        plan = getattr(first, "_together", None)
        if plan is None or not plan.fits(items):
            plan = _Plan(items)
            try:
                first._together = plan  # (not a tree field: never saved, never flattened)
            except AttributeError:  # (a Leaf-like object without attributes: no cache)
                pass
        return plan

    def fits(self, items) -> bool:
        if len(items) != self.n or self.small != SMALL:
            return False
        for group in self.groups:
            if not group.rule.elementwise:  # (a rule's class or instance changed its mind)
                return False
            dtype = group.dtype
            for i, leaf, x, rule, state, shape, arrays in group.members:
                known, now, dx = items[i]
                if known is not leaf or now is not x or leaf.rule is not rule \
                        or leaf.state is not state or type(dx) is not np.ndarray \
                        or x.shape != shape or dx.shape != shape or x.dtype != dtype \
                        or dx.dtype != dtype:
                    return False
                for s in arrays:
                    if s.shape != shape or s.dtype != dtype:
                        return False
            for column in group.counters:
                count = column[0].item()
                for c in column:
                    if c.item() != count:
                        return False
        return True


class _Group:
    """The arrays of one group: each member's position among the items, Leaf, array, rule,
    state, shape and state arrays (what :meth:`_Plan.fits` checks), and, read from the first
    member's state, the kind of each state field, the columns of state fields (one per
    field, the members' in order; those of the counters apart) and the flat scratch."""

    __slots__ = ("at", "members", "dtype", "counters", "rule", "state", "kinds", "columns", "xs",
                 "flat")

    def __init__(self, at, items):
        self.at = at
        leaves = [leaf for leaf, _, _ in items]
        self.xs = [x for _, x, _ in items]
        first = leaves[0]
        self.rule, self.state = first.rule, first.state
        self.kinds = _state_kinds(self.state)
        # per state field, the group's arrays (one column per field)
        self.columns = list(zip(*[_fields(leaf.state) for leaf in leaves]))
        self.counters = [c for c, kind in zip(self.columns, self.kinds) if kind == "counter"]
        self.members = []
        for i, leaf, x in zip(at, leaves, self.xs):
            arrays = [s for s, kind in zip(_fields(leaf.state), self.kinds) if kind == "array"]
            self.members.append((i, leaf, x, leaf.rule, leaf.state, x.shape, arrays))
        self.dtype = self.xs[0].dtype
        n_buffers = 3 + self.kinds.count("array")  # x, dx, the update, the state arrays
        shapes = tuple([x.shape for x in self.xs])
        flat = getattr(first, "_flat", None)  # (not a tree field: never saved, never flattened)
        if flat is None or not flat.fits(shapes, self.dtype, n_buffers):
            flat = first._flat = _Flat(shapes, self.dtype, n_buffers)
        self.flat = flat


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


def _step_group(group, dxs):
    """Step a group's arrays as one: gathered into its flat buffers with their gradients
    ``dxs`` and state arrays, the rule applied once, the state and ``x -= update`` written
    back to each array."""
    flat = group.flat
    x = flat.gather(0, group.xs)
    dx = flat.gather(1, dxs)
    parts, k = [], 3
    for kind, column in zip(group.kinds, group.columns):
        if kind == "array":
            parts.append(flat.gather(k, column))
            k += 1
        elif kind == "counter":
            parts.append(column[0].copy())  # the rule counts it in place
        else:
            parts.append(None)
    new, step = apply_rule(group.rule, _rebuild(group.state, parts), x, dx, flat.buffers[2])
    for kind, column, value in zip(group.kinds, group.columns, _fields(new)):
        if kind == "array":
            for target, part in zip(column, flat.split(value)):
                target[...] = part
        elif kind == "counter":
            count = int(value)
            for target in column:
                target[...] = count
    if step is not None:
        for x, part in zip(group.xs, flat.split(step)):
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
