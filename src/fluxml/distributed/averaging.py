"""Gradient averaging across ranks: a few flat buckets, each one non-blocking ``Iallreduce``,
and nothing else on the wire.

The ranks agree once on a *plan* (``layout.py``): the positions of the gradient tree, the
buckets (float64 first), each gradient's offset in its bucket, the buffers (allocated once).
Each step then only

1. takes the gradients out of the tree (a walker compiled for its structure) and checks each
   against the plan (shape and dtype; ``None`` where the plan has a gradient counts as zeros);
2. copies them into the buckets, scaled by ``count / total`` (this rank's share of the
   global batch: ranks with unequal batches weigh as one big batch would), and posts one
   ``Iallreduce`` per bucket as soon as it is packed. The first bucket carries a few more
   numbers: ``loss * count``, ``count``, a flag "my tree no longer fits the plan", and per
   gradient whether this rank has it (a gradient that no rank has this step is returned as
   ``None``, as one process would give it, so that the optimiser skips it rather than
   taking a step of momentum on zeros);
3. waits for the buckets in order. The averaged gradients are views into the buckets (no
   unpacking copies), valid until the next ``average``.

``total`` is the last step's global batch size (known exactly at the first step, which
agrees the plan). When this step's differs (the last, short batch of an epoch) the buckets
are multiplied by ``old / new`` on arrival: one extra pass, twice an epoch. The header is
summed in the first bucket's dtype: float64 whenever the model has a float64 gradient; for a
float32 model the reported loss carries float32 rounding (about 1e-7 relative; batch sizes
stay exact up to 2**24).

Why the layout check can ride in the first bucket: every message's size comes from the
agreed plan, never from a rank's own tree, so the messages match on every rank whatever the
trees are. A rank whose tree does not fit the plan still sends the planned buckets (with
whatever is in them) and sets the flag; every rank sees the summed flag in the same result,
throws the step's sums away, and all agree a new plan together (an exchange of the trees'
layouts, which names the difference when the ranks cannot agree), then average the step
again. So the check costs no message, and a change of structure on any rank, at any step,
is caught before a number of that step is used. (Checking only when this rank's structure
changes would not be safe: the others would not know to join the check.)

What overlaps, honestly: fluxml's reverse sweep is synchronous (the gradient exists only when
``withgradient`` returns), so communication cannot hide behind the backward pass as in
PyTorch's DDP, and MPICH advances a non-blocking collective only inside MPI calls, which the
packing makes between buckets. ``benchmarks/distributed.py`` measures what is hidden.

The averaged gradient equals the gradient of the mean loss over the global batch when the
loss is a mean over its batch (as every ``fl`` loss is by default).

>>> import numpy as np, fluxml as fl
>>> avg = fl.distributed.GradientAverager()
>>> loss, grads, n = avg.average(0.5, {"w": np.ones(3, np.float32)}, 4)   # one process
>>> loss, grads["w"], n
(0.5, array([1., 1., 1.], dtype=float32), 4)
"""

from __future__ import annotations

import time

import numpy as np

from fluxml.distributed import layout
from fluxml.distributed.group import DistributedError, group, on_every_rank
from fluxml.distributed.sync import allgather_object
from fluxml.tree import unflatten

# the order of the buckets: float64 first, so that the first bucket (which carries the loss
# and the batch size) sums them in float64 whenever the model has any float64 gradient
_ORDER = [np.dtype(t) for t in (np.float64, np.complex128, np.float32, np.complex64)]
# the header: loss * count, count, "my tree does not fit the plan", the number of planned
# gradients this rank lacks, then per planned gradient whether this rank has it
_HEADER = 4
_NONE: frozenset = frozenset()


class Bucket:
    """One flat buffer and the gradients it carries: ``items`` are ``(position, shape,
    dtype, view)``, ``view`` the gradient's place in ``buf``; ``grad`` is the part of ``buf``
    that holds gradients (the first bucket has the header after it)."""

    def __init__(self, dtype, xp=np):
        self.dtype, self.xp = np.dtype(dtype), xp
        self.items: list[tuple] = []
        self.size = 0
        self.buf = self.host = self.grad = None  # host: a NumPy mirror of a GPU buffer

    def add(self, pos: int, shape: tuple) -> None:
        self.items.append((pos, shape, self.dtype, (self.size, int(np.prod(shape)))))
        self.size += int(np.prod(shape))

    def allocate(self, extra: int = 0) -> None:
        self.buf = self.xp.zeros(self.size + extra, dtype=self.dtype)
        self.host = self.buf if self.xp is np else np.zeros(self.size + extra, self.dtype)
        self.grad = self.buf[:self.size]
        self.items = [(pos, shape, dtype, self.buf[off:off + n].reshape(shape))
                      for pos, shape, dtype, (off, n) in self.items]


class GradientAverager:
    """``GradientAverager(bucket_bytes=1 << 20)``: averages structural gradients across the
    ranks of ``fl.distributed.group()`` in buckets of about ``bucket_bytes`` each (one
    bucket per dtype at least; rank 0's size wins if the ranks pass different ones).
    ``timings`` holds the seconds of the last step's phases: ``pack`` (checking, packing and
    posting), ``wait`` (waiting for the buckets), ``total``."""

    def __init__(self, bucket_bytes: int = 1 << 20):
        if not isinstance(bucket_bytes, int) or bucket_bytes < 1:
            raise ValueError(f"GradientAverager: bucket_bytes must be a positive int; got "
                             f"{bucket_bytes!r}")
        self.group = group()
        self.bucket_bytes = bucket_bytes
        self.buckets: list[Bucket] = []
        self.planned = False
        self.timings: dict[str, float] = {"pack": 0.0, "wait": 0.0, "total": 0.0}

    def average(self, loss: float, grads, count: int):
        """``(mean loss, averaged grads, global batch size)`` over all ranks; ``count`` is
        this rank's number of observations. Every rank must call it once per step."""
        g = self.group
        if g.size == 1:
            return float(loss), grads, count
        g.announce(g.step + 1)  # the group counts steps: several averagers may follow in turn
        if not self.planned:
            return self._agree(loss, grads, count)
        try:
            leaves = self.gather(grads)
        except layout.Changed:
            leaves = None
        result = self._exchange(loss, leaves, count)
        if result is None:  # some rank's tree no longer fits the plan: agree a new one
            return self._agree(loss, grads, count)
        return result[0], self._rebuild(grads, result[1]), result[2]

    def _rebuild(self, grads, values):
        if self.build is None:
            return unflatten(self.spec, values)
        return self.build(grads, values)

    # --- one step on the agreed plan ---------------------------------------------------------

    def _fits(self, leaves):
        """None if this step's positions do not fit the plan, else the set of planned
        positions that are zeros on this rank (``None``, or a non-gradient, where the plan
        has a gradient)."""
        if leaves is None or len(leaves) != self.npositions:
            return None
        is_grad, is_position = layout.is_grad, layout.is_position
        for pos in self.unplanned:
            x = leaves[pos]
            if x is not None and (is_grad(x) or not is_position(x)):
                return None
        zeros = _NONE
        for b in self.buckets:
            for pos, shape, dtype, _ in b.items:
                x = leaves[pos]
                if x is not None and getattr(x, "shape", None) == shape and x.dtype == dtype:
                    continue  # the usual case: the planned array
                if x is not None and layout.entry(x) != (shape, dtype.str):
                    if is_grad(x) or not is_position(x):
                        return None
                    x = None  # an integer, say: no gradient
                if x is None:
                    zeros = zeros | {pos}
        return zeros

    def _exchange(self, loss, leaves, count):
        """Pack, post, wait: ``(loss, positions with the averaged views, total)``, or None
        when some rank's tree did not fit the plan (the step's sums are then unusable)."""
        g, MPI = self.group, self.group.MPI
        t0 = time.perf_counter()
        zeros = self._fits(leaves)
        fits = zeros is not None
        scale = count / self.total
        posted: list = []
        for k, b in enumerate(self.buckets):
            if fits:
                s = b.dtype.type(scale)
                multiply = b.xp.multiply
                for pos, _, _, view in b.items:
                    if pos in zeros:  # no gradient here on this rank
                        view.fill(0)
                    else:
                        multiply(leaves[pos], s, out=view)
            if b.host is not b.buf:
                b.buf.get(out=b.host)
            if k == 0:
                self._header(loss, count, zeros)
            posted.append(g.comm.Iallreduce(MPI.IN_PLACE, b.host, op=MPI.SUM))
            MPI.Request.Testall(posted)  # let MPI advance the buckets already posted
        t1 = time.perf_counter()
        what = f"the gradient averaging at step {g.step}"
        g.wait(posted[:1], what)
        loss_sum, total, misfits, lacking = self.header[:_HEADER].real.tolist()
        if misfits:
            g.wait(posted, what)
            return None
        factor = None if total == self.total else self.total / total
        for k, (b, req) in enumerate(zip(self.buckets, posted)):
            if k:
                g.wait([req], what)
            if b.host is not b.buf:
                b.buf.set(b.host)
            if factor is not None:
                b.grad *= b.dtype.type(factor)
        self.total = total
        for pos, view in self.outputs:
            leaves[pos] = view
        if lacking:  # a gradient no rank has this step stays None, as in one process
            have = self.header[_HEADER:].real
            for (pos, _), n in zip(self.outputs, have):
                if n == 0:
                    leaves[pos] = None
        t2 = time.perf_counter()
        self.timings["pack"], self.timings["wait"], self.timings["total"] = \
            t1 - t0, t2 - t1, t2 - t0
        return loss_sum / total, leaves, int(total)

    def _header(self, loss, count, zeros) -> None:
        """Fill the first bucket's header (``zeros`` None: this rank's tree does not fit)."""
        h = self.header
        h[:_HEADER] = (float(loss) * count, count, 0.0 if zeros is not None else 1.0,
                       len(zeros) if zeros else 0.0)
        h[_HEADER:] = 1.0
        for pos in zeros or ():
            h[self.slot[pos]] = 0.0

    # --- agreeing a plan -----------------------------------------------------------------------

    def _agree(self, loss, grads, count):
        """Every rank sends its tree's layout; all build the same plan from the union (a
        position with a gradient on some ranks only is zeros on the others), then average
        this step on it."""
        g = self.group
        leaves, spec = layout.positions(grads)
        names = layout.paths(spec)
        entries = [layout.entry(x) for x in leaves]
        what = f"the gradient averaging at step {g.step}"
        everyone = allgather_object(g, (names, entries, self.bucket_bytes, int(count)), what)
        agreed = layout.union([e[:2] for e in everyone], what)
        self._plan(agreed, everyone[0][2], leaves)
        self.total = float(sum(e[3] for e in everyone))
        self.spec, self.planned = spec, True
        self.gather = layout.walker(spec)
        try:
            same = self.gather(grads)
            fast = len(same) == len(leaves) and all(a is b for a, b in zip(same, leaves))
        except layout.Changed:
            fast = False
        if not fast:  # never seen: the walker reads trees as flatten does. Still: stay right
            self.gather = lambda tree: _raise_changed()
        self.build = layout.builder(spec, {pos for pos, _ in self.outputs})
        result = self._exchange(loss, leaves, count)
        if result is None:  # no rank can misfit a plan made from its own tree this step
            raise on_every_rank(DistributedError(f"fluxml.distributed: {what}: the ranks "
                                                 f"could not agree a layout"))
        return result[0], self._rebuild(grads, result[1]), result[2]

    def _plan(self, agreed: list, bucket_bytes: int, leaves: list) -> None:
        """The buckets for the agreed layout: positions in order within each dtype, a new
        bucket when the current one is full; the first has room for the header."""
        by_dtype: dict = {}
        for pos, entry in enumerate(agreed):
            if entry is None:
                continue
            dtype = np.dtype(entry[1])
            if dtype not in _ORDER:
                raise on_every_rank(DistributedError(
                    f"fluxml.distributed: cannot average gradients of dtype {dtype} over MPI; "
                    f"train in float32 or float64"))
            by_dtype.setdefault(dtype, []).append((pos, entry[0]))
        buckets: list[Bucket] = []
        for dtype in sorted(by_dtype, key=_ORDER.index):
            b = None
            for pos, shape in by_dtype[dtype]:
                n = int(np.prod(shape))
                if b is None or b.size and (b.size + n) * dtype.itemsize > bucket_bytes:
                    b = Bucket(dtype, _module(leaves[pos]))
                    buckets.append(b)
                b.add(pos, shape)
        if not buckets:  # no gradient anywhere: the header travels alone
            buckets.append(Bucket(np.float64))
        nplanned = sum(len(b.items) for b in buckets)
        for k, b in enumerate(buckets):
            b.allocate(_HEADER + nplanned if k == 0 else 0)
        self.buckets = buckets
        self.header = buckets[0].host[buckets[0].size:]
        self.npositions = len(agreed)
        self.unplanned = [pos for pos, entry in enumerate(agreed) if entry is None]
        self.outputs = [(pos, view) for b in buckets for pos, _, _, view in b.items]
        self.slot = {pos: _HEADER + i for i, (pos, _) in enumerate(self.outputs)}


def _raise_changed():
    raise layout.Changed


def _module(x):
    """The array module of ``x``: NumPy, or CuPy for its arrays (NumPy where this rank has
    no gradient)."""
    if x is None or isinstance(x, np.ndarray) or not hasattr(x, "dtype"):
        return np
    import importlib

    return importlib.import_module(type(x).__module__.split(".")[0])
