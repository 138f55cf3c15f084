"""The reverse sweep: walk the tape backwards, apply vjp rules, accumulate cotangents.

Iterative (no recursion), in decreasing creation order, freeing each node once used. Two
things keep loops of small writes and reads linear instead of quadratic:

- a cotangent that the sweep itself allocated (an accumulator) is *owned*: further
  contributions are added into it in place, and a rule that may overwrite its incoming
  cotangent (``prim.vjp_overwrite``: ``setitem`` zeroes the written entries) reuses it;
- the vjp of reading ``x[idx]`` is a :class:`Sparse` contribution, added into the owned
  accumulator of ``x`` at ``idx`` without building a dense array of ``x``'s shape.

Under an outer transform cotangents are tracers; an owned one is written as any traced array
(``ad/mutation.py``), in place where its own level allows it.
"""

from __future__ import annotations

import numpy as np

from fluxml.ad.arrays import add_at
from fluxml.ad.core import DifferentiationError, Tracer, raw
from fluxml.ad.define import same
from fluxml.ad.fitting import fit


class Sparse:
    """A cotangent that is zero except ``values`` at ``idx`` of an array of ``shape``."""

    __slots__ = ("shape", "dtype", "idx", "values", "basic")

    def __init__(self, shape, dtype, idx, values, basic):
        self.shape, self.dtype, self.idx, self.values, self.basic = (
            shape, dtype, idx, values, basic)

    def add_into(self, acc):
        if self.basic:
            acc[self.idx] += self.values  # on a traced accumulator: a recorded write
        else:
            add_at(acc, self.idx, self.values)

    def _traced(self):
        """A traced part (the values, or under fl.compile an index array), or None."""
        if type(self.values) is Tracer:
            return self.values
        idx = self.idx if type(self.idx) is tuple else (self.idx,)
        for i in idx:
            if type(i) is Tracer:
                return i
        return None

    def dense(self):
        traced = self._traced()
        if traced is not None:  # a traced constant of its level, then written
            acc = np.zeros(self.shape, self.dtype, like=traced)
        elif isinstance(self.values, np.ndarray | np.generic):
            acc = np.zeros(self.shape, self.dtype)
        else:  # the values' array library (CuPy's values add into a CuPy array)
            acc = np.zeros_like(self.values, shape=self.shape, dtype=self.dtype)
        self.add_into(acc)
        return acc

    def fits_into(self, acc):
        """Can it be added into ``acc`` in place? Traced values need a traced accumulator of
        at least their level."""
        values = self._traced()
        if type(acc) is Tracer and isinstance(raw(acc), np.generic):
            return False  # a traced NumPy scalar cannot be written into
        if values is None:
            return type(acc) is np.ndarray or type(acc) is Tracer
        return type(acc) is Tracer and acc._trace.level >= values._trace.level


def _zeros(a):
    """Zeros shaped like output ``a`` (of its array library); under fl.compile a constant,
    so that rules see a zero they can skip, not a traced value."""
    v = raw(a)
    return np.zeros(v.shape, v.dtype) if type(v) is Tracer else np.zeros_like(v)


def _add(ct, owned, j, c):
    """Accumulate contribution ``c`` into slot ``j``, in place where the sweep owns it."""
    acc = ct[j]
    if type(c) is Sparse:
        if acc is None:
            ct[j] = c.dense()
        elif j in owned and c.fits_into(acc):
            c.add_into(acc)
            return
        elif type(acc) is np.ndarray and c._traced() is None:
            acc = ct[j] = acc.copy()
            c.add_into(acc)
        else:  # mixed levels, or a NumPy scalar
            ct[j] = acc + c.dense()
        if type(ct[j]) is np.ndarray or type(ct[j]) is Tracer:
            owned.add(j)
        return
    if acc is None:
        ct[j] = c
    elif j in owned and type(c) is not Tracer and type(acc) is np.ndarray:
        acc += c
    else:
        acc = ct[j] = acc + c
        if type(acc) is np.ndarray or type(acc) is Tracer:
            owned.add(j)


def sweep(tape, seeds, wanted, free=True, final=None):
    """Cotangents of the tape indices ``wanted`` (None where an entry is None), given
    ``seeds`` (index -> cotangent).

    ``final(k, cotangent)``, if given, is called once per entry ``k`` of ``wanted`` as soon
    as that cotangent is final: when the sweep has applied every node that has ``wanted[k]``
    as a parent (the only nodes that add to it), so that nothing the sweep does later changes
    it, neither by a new contribution nor by a write into it (see :func:`_final_points`). The
    cotangent passed is the object returned for ``k``; ``final`` must not write into it
    before the sweep has returned (it may share memory with cotangents still in use)."""
    ct = [None] * len(tape)
    owned: set = set()
    for i, g in seeds.items():
        ct[i] = g if ct[i] is None else ct[i] + g
    keep = set(wanted)
    top = max(seeds) if seeds else -1
    if final is None:
        _sweep_nodes(tape, ct, owned, keep, top, -1, free)
    else:  # the same sweep in segments, each ending where some wanted cotangent is final
        for at, ks in _final_points(tape, wanted, top):
            if at <= top:
                _sweep_nodes(tape, ct, owned, keep, top, at - 1, free)
                top = at - 1
            for k in ks:
                j = wanted[k]
                final(k, None if j is None else ct[j])
        _sweep_nodes(tape, ct, owned, keep, top, -1, free)
    return [None if i is None else ct[i] for i in wanted]


def _final_points(tape, wanted, top):
    """``[(at, [k, ...]), ...]`` in decreasing ``at``: the entries ``k`` of ``wanted`` whose
    cotangent is final once the sweep has applied the nodes ``top`` down to ``at``.

    A node adds only to its parents (``_add`` into ``ct[j]`` for the ``j`` of its
    ``parents``; a multiple-result node's projections add to that node), and a parent comes
    before its child on the tape, so the cotangent of ``j`` changes only while the sweep
    applies the nodes that have ``j`` as a parent: it is final after the first of them in
    tape order, the last the sweep reaches. The sweep never writes into a cotangent it does
    not own, and owns only those it allocated for one slot, so the object handed out stays
    as it is. Nodes above ``top`` (recorded after the output) are never applied. An index
    with no such node (or None: no gradient) is final before the sweep starts."""
    first: dict = {}
    todo = {j for j in wanted if j is not None}
    lowest = min(todo) if todo else 0
    for i in range(lowest + 1, top + 1):  # in tape order: the first user found is the first
        if not todo:
            break
        node = tape[i]
        if node is None:
            continue
        for _, j in node[4]:
            if j in todo:
                todo.discard(j)
                first[j] = i
    at: dict = {}
    for k, j in enumerate(wanted):
        at.setdefault(first.get(j, top + 1), []).append(k)
    return sorted(at.items(), reverse=True)


def _sweep_nodes(tape, ct, owned, keep, start, stop, free):
    """Apply the nodes ``start`` down to ``stop`` (excluded).
    The loop is the hot path of reverse mode and is kept flat on purpose."""
    for i in range(start, stop, -1):
        g = ct[i]
        if g is None:
            continue
        node = tape[i]
        if node is None:  # a leaf
            continue
        if free:
            tape[i] = None
            if i not in keep:
                ct[i] = None
        prim, args, params, ans, parents = node
        if prim is None:  # projection: output k of a multiple-result node
            (k, j), = parents
            acc = ct[j]
            if acc is None:
                acc = ct[j] = [None] * len(tape[j][3])
            acc[k] = g if acc[k] is None else acc[k] + g
            continue
        vjps = prim.vjps
        if vjps is not None:
            for p, j in parents:
                rule = vjps[p]
                if rule is same:
                    c = g
                elif params:
                    c = rule(g, ans, *args, **params)
                elif len(args) == 1:  # a plain call: much cheaper than one with *args
                    c = rule(g, ans, args[0])
                elif len(args) == 2:
                    c = rule(g, ans, args[0], args[1])
                else:
                    c = rule(g, ans, *args)
                if type(c) is not Sparse:
                    a = args[p]
                    if c.shape != a.shape or c.dtype is not a.dtype and c.dtype != a.dtype:
                        c = fit(c, a)
                    if ct[j] is None:
                        ct[j] = c
                        continue
                _add(ct, owned, j, c)
            continue
        overwrite = prim.vjp_overwrite
        if overwrite is not None and (type(g) is np.ndarray or type(g) is Tracer):
            if i not in owned or i in keep:  # copy once; the copy is owned down the chain
                g = g.copy()
            _overwriting(prim, overwrite, g, ans, args, params, parents, ct, owned)
            continue
        if prim.multiple_results:  # zeros for outputs that got no cotangent, or None
            g = tuple(c if c is not None or prim.vjp_takes_none else _zeros(a)
                      for c, a in zip(g, ans))
        if prim.vjp_all is not None:
            cts = prim.vjp_all(g, ans, args, params, [p for p, _ in parents])
        else:
            vjp = prim.vjp
            if vjp is None:
                raise DifferentiationError(f"{prim.name} has no reverse-mode rule")
            cts = [vjp(p, g, ans, args, params) for p, _ in parents]
        for (p, j), c in zip(parents, cts):
            if c is None:
                continue
            if type(c) is not Sparse:
                c = fit(c, args[p])
            _add(ct, owned, j, c)


def _overwriting(prim, overwrite, g, ans, args, params, parents, ct, owned):
    """Apply the vjps of a node whose rule at position ``pos`` may reuse ``g`` (owned by the
    sweep): the other positions first (copied where they share g's memory), that one last;
    its result moves, still owned, to its parent."""
    pos, rule = overwrite
    last = None
    for p, j in parents:
        if p == pos:
            last = j
            continue
        c = prim.vjp(p, g, ans, args, params)
        if type(c) is not Sparse:
            c = fit(c, args[p])
            if (type(c) is np.ndarray and np.may_share_memory(c, g)
                    or type(c) is Tracer and c._view is not None):
                c = c.copy()
        _add(ct, owned, j, c)
    if last is None:
        return
    c = rule(g, ans, *args, **params)
    if ct[last] is None and c is g:
        ct[last] = g
        owned.add(last)
    else:
        _add(ct, owned, last, fit(c, args[pos]))
