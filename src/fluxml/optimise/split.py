"""``update``'s threaded path: a large array's step split across threads.

A rule marked ``elementwise`` computes each entry of its update and state from the same
entries of ``x``, ``dx`` and the state alone (``foreach.py``), so stepping the parts of an
array one by one gives every entry the numbers that stepping the whole array gives: the
same IEEE operations on the same operands, whatever the part's length. Adam's step is a
dozen passes over memory in NumPy's one-core loops; on a machine of two cores, parts of each
large array are stepped on two threads at once (``backend.threads``: as many threads as
NumPy's BLAS may use, none extra under a limit of 1).

A part is a slice of every array along the axis outermost in the gradient's memory order
(the state and the scratch array are laid out as the gradient, ``interface._scratch``), so
each part is one contiguous block of them. The rule's step counter is counted once: each
part counts a copy of it, and the count is written back after all parts have run.

Arrays of fewer than ``LARGE`` entries are stepped whole. Measured on the project's 2-core
machine (Adam, float32, the gradient a transposed view, the two threads' time to step one
array, alternated with the one-thread step): 262,144 entries 1.04 ms whole, 0.81 ms split
at best but 1.25 / 1.40 ms median; 401,408 entries 1.65 / 1.13 ms best, 2.03 / 1.91 ms
median; 1,048,576 entries 7.97 / 3.63 ms best, 8.86 / 6.50 ms median; 2,097,152 entries
17.5 / 7.2 ms best, 22.4 / 12.3 ms median. Below half a million entries the parts are a
few dozen microseconds of work per NumPy call, and the threads' turns at the GIL between
calls eat what the second core gives.

>>> import numpy as np, fluxml as fl
>>> model = [np.ones((1000, 600), np.float32)]
>>> state = fl.setup(fl.Adam(0.1), model)
>>> _ = fl.update(state, model, [np.ones_like(model[0])])
>>> float(model[0].min()), float(model[0].max()), int(state[0].state.t)  # counted once
(0.9000000357627869, 0.9000000357627869, 1)
"""

from __future__ import annotations

import numpy as np

from fluxml.backend import threads
from fluxml.optimise.base import apply_rule
from fluxml.optimise.foreach import _fields, _rebuild, _state_kinds

LARGE = 1 << 19  # entries: arrays this large or larger are stepped in parts
PARTS_PER_THREAD = 2  # (a thread held back by a busy machine delays the step by one part)


def step_split(items) -> list:
    """Step the large arrays among ``items`` (``(leaf, x, dx, scratch)``) in parts on several
    threads; returns the items left for the one-thread path."""
    big, rest = [], []
    for item in items:
        (big if _splittable(*item) else rest).append(item)
    if not big:
        return items
    n = threads.limit()
    if n == 1:
        return items
    jobs, counters = [], []
    for leaf, x, dx, buf in big:
        jobs.extend(_parts(leaf, x, dx, buf, n * PARTS_PER_THREAD, counters))
    threads.run_parts(jobs, n)
    for target, new in counters:  # every part counted its copy to the same value
        target[...] = new[0]
    return rest


def _splittable(leaf, x, dx, buf) -> bool:
    """An element-wise rule on large plain NumPy arrays, ``dx`` and every state array shaped
    as ``x``, the other state fields step counters (0-d integer arrays) or None."""
    if not (leaf.rule.elementwise and type(x) is np.ndarray and type(dx) is np.ndarray
            and x.size >= LARGE and dx.shape == x.shape and type(buf) is np.ndarray):
        return False
    state = leaf.state
    if type(state) is np.ndarray:
        return state.shape == x.shape
    if state is not None and not isinstance(state, tuple):
        return False
    for s in _fields(state):
        if s is not None and (type(s) is not np.ndarray or s.shape not in (x.shape, ())
                              or s.shape == () and s.dtype.kind != "i"):
            return False
    return True


def _parts(leaf, x, dx, buf, parts, counters) -> list:
    """The jobs stepping the parts of one array; ``counters`` gets ``(counter, [count])``
    per step counter of the state, the count filled in by the parts (each counts its own copy
    to the same value)."""
    axis = x.ndim - 1 if dx.flags.f_contiguous and not dx.flags.c_contiguous else 0
    length = x.shape[axis]
    parts = max(1, min(parts, length))
    bounds = [length * i // parts for i in range(parts + 1)]
    state = leaf.state
    kinds = _state_kinds(state)
    fields = _fields(state)
    seen = []
    for kind, field in zip(kinds, fields):
        if kind == "counter":
            seen.append([None])
            counters.append((field, seen[-1]))
    rule = leaf.rule

    def job(a, b):
        cut = (slice(None),) * axis + (slice(a, b),)
        mine = [f[cut] if k == "array" else f.copy() if k == "counter" else None
                for k, f in zip(kinds, fields)]
        new, step = apply_rule(rule, _rebuild(state, mine), x[cut], dx[cut], buf[cut])
        boxes = iter(seen)
        for kind, view, value in zip(kinds, mine, _fields(new)):
            if kind == "array" and value is not view:
                view[...] = value  # a rule that returned a new array, not its state's
            elif kind == "counter":
                next(boxes)[0] = int(value)
        if step is not None:
            part = x[cut]
            np.subtract(part, step, out=part)

    return [lambda a=a, b=b: job(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]
