"""Gradient averaging across ranks: one non-blocking ``Iallreduce`` per large gradient and
per bucket of small ones, and nothing else on the wire; where the ranks share a machine, the
buckets and their header summed in shared memory instead (``shared.py``), nothing on the wire.

The ranks agree once on a *plan* (``layout.py``): the positions of the gradient tree, which
gradients travel alone (*direct*: at least ``direct_bytes``, by default 128 KiB when they
are averaged in place, else those that would fill a bucket by themselves) and which in a few
flat buckets (float64 first), each gradient's offset in its bucket, the buffers (allocated
once). Each step then only

1. takes the gradients out of the tree (a walker compiled for its structure) and checks each
   against the plan (shape and dtype; ``None`` where the plan has a gradient counts as zeros);
2. copies the small ones into the buckets, scaled by ``count / total`` (this rank's share of
   the global batch: ranks with unequal batches weigh as one big batch would; nothing to
   scale where the caller folded the share into the loss, as ``fl.train`` does: see
   ``share``), and posts one ``Iallreduce`` per bucket as soon as it is packed. The first
   bucket carries a few more
   numbers: ``loss * count``, ``count``, a flag "my tree no longer fits the plan", and per
   gradient whether this rank has it (a gradient that no rank has this step is returned as
   ``None``, as one process would give it, so that the optimiser skips it rather than
   taking a step of momentum on zeros);
3. scales each direct gradient (unless it came scaled) and posts its ``Iallreduce``: with
   ``in_place=True``, in the gradient's own array when that array is the gradient's alone
   (no copy at all: no pass over it either when it came scaled), else in a buffer of
   the plan. Nothing is written into a gradient before the first bucket has come, so that a
   rank whose tree no longer fits the plan is known first (the step is then averaged again
   from the gradients as they came). The averager waits for it as long as it takes (a
   rank that is late holds back every sum alike; ``patience`` bounds the wait, after which
   the gradients go by copy this step). Posting the direct gradients without that wait
   (and recovering the gradients from the sums when a tree did not fit) was tried and
   measured no faster (2 ranks, the MLP's and 4 MB of gradients, 6 runs alternated with
   this: from 7% slower to 2% faster, within the noise), so the simpler protocol stays;
4. waits for the messages in order. The averaged gradients are views into the buckets (no
   unpacking copies), valid until the next ``average``, and the direct gradients' arrays.

Where every rank runs on one machine (MPI's shared-memory split; NumPy gradients, room in
/dev/shm) the buckets do not travel (nor go early: ``begin``'s callback then only watches):
step 2 copies the gradients into this rank's part of an MPI shared-memory window and the
header into its slot there, and once every rank has posted its own each rank sums the ranks'
headers and parts into its buckets (the header as the first bucket's message would have
summed it; a gradient told to travel alone still goes by ``Iallreduce``, after it). The copy
then replaces MPICH's own copies of a message (into its cells and out), so a bucket costs
less than an allreduce even of a gradient in its own array: by default every gradient goes
in one (up to ``shared_bytes`` per rank; ``direct_bytes`` given: as told).

The scaling costs least before the backward pass: ``fl.train`` differentiates ``share *
loss`` (``share(count)``: this rank's count over the last step's global batch size), a
scalar product from which every gradient comes out scaled, and passes ``share`` to
``average``, which then only copies the small gradients and sends the large ones as they
are. Gradients given unscaled are scaled here, where it costs least: a copy into a bucket
costs the same pass with or without it, and in place the pass touches memory this rank has
just written. Why not every gradient in place: each message costs about as much as a copy
of 100-200 KB through
MPICH's shared memory (measured with 2 ranks, gradients that came scaled: three gradients of
333 KB in place beat one bucket by 10-12%, of 250 KB by 5%, of 167 KB tie, of 83 KB lose
by a quarter), so smaller gradients share a bucket. Without ``in_place`` a gradient that
travels alone is copied all the same, so by default it does so only where it would fill a
bucket anyway.

``total`` is the last step's global batch size (known exactly at the first step, which
agrees the plan). When this step's differs (the last, short batch of an epoch, and the
first after it) the sums are multiplied by ``old / new`` on arrival: one extra pass, twice
an epoch. The header is summed in the first bucket's dtype, the first of the plan (float64
whenever the model has a float64 gradient; the first bucket may then carry no gradient);
for a float32 model the reported loss carries float32 rounding (about 1e-7 relative; batch
sizes stay exact up to 2**24).

Why the layout check can ride in the first bucket: every message's size comes from the
agreed plan, never from a rank's own tree, so the messages match on every rank whatever the
trees are. A rank whose tree does not fit the plan still sends the planned messages (with
whatever is in them) and sets the flag; every rank sees the summed flag in the same result,
throws the step's sums away, and all agree a new plan together (an exchange of the trees'
layouts, which names the difference when the ranks cannot agree), then average the step
again. So the check costs no message, and a change of structure on any rank, at any step,
is caught before a number of that step is used. (Checking only when this rank's structure
changes would not be safe: the others would not know to join the check.)

What overlaps: ``begin`` (``overlap.py``) gives a callback for ``fl.withgradient(...,
on_final=)``, by which the engine hands over each gradient as soon as the backward pass has
made it final; it packs each bucket and posts its ``Iallreduce`` then, the rest of the
backward pass still to run (``fl.train(..., distributed="overlap")``). Through MPICH's
shared memory that hides nothing measurable: MPICH advances a non-blocking collective only
inside MPI calls, and the message is memory copies and sums that the ranks' own cores make
wherever they run (measured with 2 ranks on 2 cores, ``benchmarks/distributed.py``: the
overlap no faster for the MLP, slower for LeNet-5, whose one message becomes two). So by
default the averaging runs after the backward pass, and what overlaps is its own work with
the messages in flight: the averaged tree is rebuilt once every message is posted, while
they travel (MPICH's large messages go by CMA: the receiver copies straight from the
sender's array, which the other rank can do while this one runs Python).

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

from fluxml._checks import flag, is_real, positive_int, shown
from fluxml.backend.registry import array_module
from fluxml.distributed import layout, overlap, shared
from fluxml.distributed.bucket import Bucket, ownable, plan
from fluxml.distributed.group import DistributedError, group, on_every_rank
from fluxml.distributed.sync import allgather_object
from fluxml.tree import unflatten
from fluxml.treemaps import fmap

# the header: loss * count, count, "my tree does not fit the plan", the number of planned
# gradients this rank lacks, then per planned gradient whether this rank has it
_HEADER = 4
_NONE: frozenset = frozenset()


class GradientAverager:
    """``GradientAverager(bucket_bytes=1 << 20, in_place=False, direct_bytes=None)``:
    averages structural gradients across the ranks of ``fl.distributed.group()``. Gradients
    of at least ``direct_bytes`` travel alone (default: 128 KiB with ``in_place``, where a
    message costs less than the copy it saves; ``bucket_bytes`` without, so that a gradient
    travels alone only where it would fill a bucket by itself), the others in buckets of about
    ``bucket_bytes`` (one bucket per dtype at least); rank 0's sizes win if the ranks pass
    different ones (and rank 0's ``in_place`` orders the messages ``begin`` sends). Where
    the ranks share one machine the buckets are summed in shared memory, and every gradient
    goes in one unless ``direct_bytes`` is given (up to ``shared_bytes``, an attribute: 64
    MiB per rank; 0: never).

    ``in_place=True`` lets the averager overwrite the gradient arrays it is given: a gradient
    that travels alone is then averaged in its own array (no copy) and comes back as that
    array, where the array is a C-contiguous, writable NumPy array holding all of its memory
    alone (not a slice of a larger array, not shared with another gradient of the tree);
    any other goes through a buffer of the averager, as with ``in_place=False``. Pass it
    when the gradients are yours to consume, fresh from ``fl.gradient`` each step, as
    ``fl.train`` does; the result is the same either way, bit for bit.
    ``timings`` holds the seconds of the last step's phases: ``pack`` (checking, packing and
    posting), ``wait`` (waiting for the messages), ``total``."""

    def __init__(self, bucket_bytes: int = 1 << 20, in_place: bool = False,
                 direct_bytes: int | None = None):
        self.direct_default = direct_bytes is None  # (see shared_bytes)
        bucket_bytes = positive_int("GradientAverager", "bucket_bytes", bucket_bytes)
        if direct_bytes is not None:
            direct_bytes = positive_int("GradientAverager", "direct_bytes", direct_bytes)
        if direct_bytes is None:
            direct_bytes = min(bucket_bytes, 1 << 17) if in_place else bucket_bytes
        self.group = group()
        self.bucket_bytes, self.direct_bytes = bucket_bytes, direct_bytes
        self.in_place = flag("GradientAverager", "in_place", in_place)  # ('no' was True)
        # seconds to wait at most for the first bucket before writing in place (then the
        # gradients go by copy this step); None: as long as it takes (see _arrived)
        self.patience: float | None = None
        self.buckets: list[Bucket] = []
        self.direct: list[Bucket] = []
        # overlap (overlap.py): the messages posted during the backward pass, in order, and
        # the direct buckets posted after the header; the gradients final last that wait
        # for the header (at most this many bytes, but for the last one)
        self.early: list[Bucket] = []
        self.late: list[Bucket] = []
        self.tail_bytes = 16 << 10
        self._step: overlap.Step | None = None
        # where every rank runs on one machine, the buckets are summed in the memory they
        # share, and every gradient goes in a bucket where they come to at most this many
        # bytes (unless direct_bytes was given); 0: never (rank 0's wins; shared.py).
        # self.shared: the plan's window, None where not
        self.shared_bytes = shared.SHARED_BYTES
        self.shared: shared.SharedSums | None = None
        self.planned = False
        self.timings: dict[str, float] = {"pack": 0.0, "wait": 0.0, "total": 0.0}

    def average(self, loss: float, grads, count: int, share: float | None = None):
        """``(mean loss, averaged grads, global batch size)`` over all ranks; ``count`` is
        this rank's number of observations, ``loss`` its mean loss. Every rank must call it
        once per step.

        ``share``: the factor ``grads`` were already multiplied by, if any: ``fl.train``
        differentiates ``share(count) * loss`` (a scalar in the backward pass: the gradients
        come out scaled for free), so that the averager only sums them, with no pass of its
        own over them. Whatever ``share`` was, the result is the same: where it is not this
        rank's share of the global batch (unequal batches at the first step, a short last
        batch) the difference is made up (one pass).

        A rank may have no observation (``count`` 0: its gradients weigh nothing), but not
        every rank: a global batch of 0 observations has no mean, and raises ``ValueError``
        on every rank (in one process: ``count`` 0), the plan and the gradients left as they
        were."""
        g = self.group
        _check_count("average", count, share)
        if not is_real(loss):  # (float('abc') or float(None) failed, naming nothing)
            raise TypeError(f"GradientAverager.average: loss must be this rank's mean loss, a "
                            f"number; got {shown(loss)}")
        if g.size == 1:
            if not count:  # nothing to take the mean over (and nothing to unscale by: share 0)
                raise _empty("count is 0 in a one-process job")
            return float(loss), grads if share is None else _unscale(grads, share), count
        step, self._step = self._step, None
        g.share = 1.0  # the backward pass is over (see share)
        g.announce(g.step + 1)  # the group counts steps: several averagers may follow in turn
        if not self.planned:
            return self._agree(loss, grads, count, share, step)
        try:
            leaves = self.gather(grads)
        except layout.Changed:
            leaves = None
        result = self._exchange(loss, grads, leaves, count, share, step)
        if result is None:  # some rank's tree no longer fits the plan: agree a new one
            return self._agree(loss, grads, count, share, step)
        return result

    def begin(self, count: int, share: float | None = None):
        """The ``on_final`` callback for this step's ``fl.withgradient`` (None in one
        process): it sends each message of the plan as soon as the backward pass has made its
        gradients final (``overlap.py``). Then call ``average`` with the same ``count`` and
        ``share``, the gradients ``withgradient`` returned, unchanged, and the loss. At the
        step that agrees the plan it only watches the order in which the gradients become
        final, from which the plan is made. A step begun and not averaged (an exception
        in between) is abandoned first (``abandon``)."""
        _check_count("begin", count, share)
        if self.group.size == 1:
            return None
        self.abandon()
        scale = self._scale(count, share) if self.planned else 1.0
        self._step = overlap.Step(self, count, share, scale)
        return self._step

    def abandon(self) -> None:
        """Give up the step ``begin`` started, where ``average`` will not be called (an
        exception in the backward pass, say): send the rest of the step's messages, whose
        sums are thrown away, and wait for them (within the group's timeout), so that the
        next step's messages match on every rank. Every rank must abandon the step (or
        average it); ``fl.train`` does so when a step raises. Nothing to do where no step was
        begun."""
        step, self._step = self._step, None
        if step is not None:
            step.abandon(f"the abandoned gradient averaging after step {self.group.step}")

    def share(self, count: int) -> float:
        """What to multiply this rank's loss by before differentiating it, for ``average(...,
        share=)`` to have nothing to scale: ``count`` over the last step's global batch size
        (``1 / ranks`` before the first step; exact whenever the batches are equal)."""
        _check_count("share", count)
        if self.group.size == 1:
            return 1.0
        share = count / self.total if self.planned else 1.0 / self.group.size
        self.group.share = share if share > 0 else 1.0  # (SyncBatchNorm's backward reads it)
        return share

    def _rebuild(self, grads, values):
        if self.build is None:
            return unflatten(self.spec, values)
        return self.build(grads, values)

    # --- one step on the agreed plan ---------------------------------------------------------

    def _scale(self, count, share) -> float:
        """What this rank's gradients are to be multiplied by (``count / total``), by what
        they were not yet (``share``, folded into the loss: 1.0, nothing to do, the usual
        case)."""
        scale = count / self.total
        if share is None:
            return scale
        return 1.0 if share == scale else scale / share

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
        fit = layout.fit
        for pos, shape, dtype in self.entries:
            x = leaves[pos]
            if x is not None and getattr(x, "shape", None) == shape and x.dtype == dtype:
                continue  # the usual case: the planned array (layout.fit's first test)
            state = fit(x, shape, dtype)
            if state == "misfit":
                return None
            if state == "zero":  # None, an integer array: no gradient
                zeros = zeros | {pos}
        return zeros

    def _exchange(self, loss, grads, leaves, count, share=None, step=None):
        """Pack, post, wait: ``(loss, the averaged tree, total)``, or None when some rank's
        tree did not fit the plan (the step's sums are then unusable). The averaged tree is
        built once every message is posted, while they travel (where each sum will land is
        known by then): the rebuilding costs no time of its own where they take longer.
        ``step``: the messages ``begin``'s callback posted during the backward pass."""
        g = self.group
        what = g.at_step("the gradient averaging")
        t0 = time.perf_counter()
        zeros = self._fits(leaves)
        if step is not None and step.requests and zeros is not None \
                and not step.sent(leaves, count, share):
            zeros = None  # what went early is not this tree's: the step goes as a misfit
        fits = zeros is not None
        scale = self._scale(count, share)
        window = self.shared
        if window is not None:  # the buckets and the header through shared memory
            if fits:
                window.pack(leaves, zeros, scale)
            self._header(loss, count, zeros)
            window.post(self.header)
        head = None  # the header's sums, once read
        if window is not None and not self.late:  # no message at all (the usual case here)
            ordered, rest, sums, arrived = self.silent, [], [], window.ready
        else:
            ordered, sums, arrived, head, fits = self._send(leaves, zeros, scale, fits, loss,
                                                            count, step, what)
            rest = [r for r in ordered[1:] if r is not None]  # the messages after the header
        # the averaged tree, built while the messages travel
        tree = self._result(grads, leaves, sums) if fits else None
        t1 = time.perf_counter()
        if head is None:
            if not arrived():
                g.wait_until(arrived, what)
            head = self._receive(window)
        loss_sum, total, misfits, lacking = head
        if window is not None:  # every rank has packed: the sums, or the next parity
            if misfits or not total:
                window.skip()
            else:
                window.add()
        if misfits:
            if rest:
                g.wait(rest, what)
            return None
        if not total:  # every rank's count is 0: the same error on every rank
            if rest:
                g.wait(rest, what)
            raise on_every_rank(_empty(f"every rank's count is 0 at step {g.step}"))
        factor = None if total == self.total else self.total / total
        if factor is None and self.on_host:  # the usual case: nothing to do as each comes
            if rest:
                g.wait(rest, what)
        else:
            self._finish(ordered, sums, factor, what)
        self.total = total
        if lacking:  # a gradient no rank has this step stays None, as in one process
            have = self.header[_HEADER:].real
            for pos, n in zip(self.order, have):
                if n == 0:
                    leaves[pos] = None
            tree = self._rebuild(grads, leaves)
        t2 = time.perf_counter()
        self.timings["pack"], self.timings["wait"], self.timings["total"] = \
            t1 - t0, t2 - t1, t2 - t0
        return loss_sum / total, tree, int(total)

    def _send(self, leaves, zeros, scale, fits, loss, count, step, what):
        """Post the step's messages: the buckets (unless summed in shared memory) as each is
        packed, then the direct gradients. ``(ordered, sums, arrived, head, fits)``: each
        bucket's message in the plan's order (None: none), where each direct bucket's sum
        lands (None: its buffer), the test that every header has come, the header's sums if
        read already, and ``fits`` (False where some rank's tree does not fit)."""
        g, MPI, window = self.group, self.group.MPI, self.shared
        requests = {}  # id(bucket) -> its Iallreduce
        if step is not None:
            requests.update(zip(map(id, self.early), step.requests))
        posted = list(requests.values())
        if window is not None:
            staged = []  # no bucket travels
        elif self.early:  # the first bucket (the header), and what the callback left unposted
            staged = self.early + self.buckets[:1]
        else:
            staged = self.buckets
        for b in staged:
            if id(b) in requests:
                continue  # posted during the backward pass
            if posted:  # let MPI advance the buckets already posted (not after the last)
                MPI.Request.Testall(posted)
            b.stage(leaves, zeros, scale, fits)
            if b is self.buckets[0]:
                self._header(loss, count, zeros)
            # the early messages on a communicator of their own (Group.sweep), in the plan's
            # order whether the callback posted them or not; the header on g.comm
            comm = g.sweep if self.early and b is not self.buckets[0] else g.comm
            posted.append(comm.Iallreduce(MPI.IN_PLACE, b.host, op=MPI.SUM))
            requests[id(b)] = posted[-1]
        # has every rank's header come (the sum in the window, or the first bucket's message)?
        arrived = window.ready if window is not None else requests[id(self.buckets[0])].Test
        owned = ownable(self.late, leaves, zeros, self.mine) \
            if fits and self.in_place and self.late else {}
        head = None
        if owned and not self._arrived(arrived, what):
            owned = {}  # the first bucket is late: the gradients go by copy this step
        elif owned:  # every rank's header has come: read it before writing into a gradient
            head = self._receive(window)
            if head[2]:  # some rank's tree does not fit: send the planned messages all the
                owned, fits = {}, False  # same, write into no gradient
            elif not head[1]:  # an empty global batch: an error below, write into no gradient
                owned = {}
        sums = {}  # where each late direct bucket's sum lands: the gradient, or the buffer
        # posted back to back, no Testall between: MPICH's progress on a large message is
        # this rank copying the other's gradient (CMA), which would delay posting the next
        for b in self.late:
            x = owned.get(b.items[0][0]) if owned else None
            if x is not None:
                if scale != 1.0:
                    np.multiply(x, b.dtype.type(scale), out=x)
                posted.append(g.comm.Iallreduce(MPI.IN_PLACE, x, op=MPI.SUM))
            else:
                if b.buf is None:
                    self._allocate(b)
                b.stage(leaves, zeros, scale, fits)
                posted.append(g.comm.Iallreduce(MPI.IN_PLACE, b.host, op=MPI.SUM))
            requests[id(b)] = posted[-1]
            sums[id(b)] = x
        sums = [sums.get(id(b)) for b in self.direct]  # None: in the bucket's buffer
        ordered = [requests.get(id(b)) for b in self.buckets + self.direct]
        return ordered, sums, arrived, head, fits

    def _result(self, grads, leaves: list, sums: list):
        """The averaged tree to be: ``leaves`` (the gradients, no longer needed) with each
        planned position set to where its sum lands (a view of a bucket; for a direct bucket
        its ``sums`` entry, the gradient itself, or where that is None the bucket's
        buffer)."""
        for pos, view in self.outputs:
            leaves[pos] = view
        for b, x in zip(self.direct, sums):
            leaves[b.items[0][0]] = b.items[0][3] if x is None else x
        return self._rebuild(grads, leaves)

    def _finish(self, posted: list, sums: list, factor, what: str) -> None:
        """Wait for the messages in turn, and as each comes multiply its sums by ``factor``
        (the global batch changed size) and copy them back to the GPU where they came from
        one. ``posted``: each bucket's message, None where it had none (summed in shared
        memory)."""
        buckets = [(b, b.grad) for b in self.buckets]
        buckets += [(b, b.grad if x is None else x) for b, x in zip(self.direct, sums)]
        for k, ((b, out), req) in enumerate(zip(buckets, posted)):
            if k and req is not None:  # (the first is the header's, come already)
                self.group.wait([req], what)
            if b.host is not b.buf and out is b.grad:
                b.buf.set(b.host)
            if factor is not None:
                out *= b.dtype.type(factor)

    def _receive(self, window) -> list:
        """The header's sums, once every rank's has come: ``[loss * count, count, misfits,
        lacking]`` (summed from the ranks' slots of the shared ``window`` first, where the
        header went there)."""
        if window is not None:
            window.receive(self.header)
        return self.summary.tolist()

    def _arrived(self, arrived, what: str) -> bool:
        """Has every rank's header arrived (``arrived()``)? Nothing is written into a
        caller's array before every rank knows that the step's sums are used (a rank whose
        tree no longer fits the plan sets a flag in it, and the step is then averaged again
        from the gradients as they came). By default wait as long as it takes (as every wait,
        within the group's timeout): a rank that is late holds back the direct gradients'
        sums as much as the first bucket's, so waiting costs one round trip of the small
        first bucket, where copying the gradients instead (the old fallback after the time a
        copy takes) cost a pass over them: 10-25% of an allreduce of the same bytes through
        shared memory, measured, and up to the whole copy when the rank came just after.
        ``patience`` (seconds) bounds the wait: past it the gradients go by copy."""
        patience = self.patience
        if patience is None:
            if not arrived():
                self.group.wait_until(arrived, what)
            return True
        deadline = time.perf_counter() + patience
        while not arrived():
            if time.perf_counter() > deadline:
                return False
        return True

    def _header(self, loss, count, zeros) -> None:
        """Fill the first bucket's header (``zeros`` None: this rank's tree does not fit)."""
        h = self.header
        h[...] = self.template  # no misfit, no gradient lacking
        h[0], h[1] = float(loss) * count, count
        if zeros is None:
            h[2] = 1.0
        elif zeros:
            h[3] = len(zeros)
            for pos in zeros:
                h[self.slot[pos]] = 0.0

    def _allocate(self, b: Bucket) -> None:
        """A direct bucket's own buffer, for a step its gradient cannot be averaged in
        place (a view, a shared array, a GPU array, ``in_place=False``)."""
        b.allocate()
        self.mine.add(id(b.buf))

    # --- agreeing a plan -----------------------------------------------------------------------

    def _agree(self, loss, grads, count, share=None, step=None):
        """Every rank sends its tree's layout; all build the same plan from the union (a
        position with a gradient on some ranks only is zeros on the others), then average
        this step on it. Where ``begin`` watched this step's backward pass, the plan follows
        the order in which rank 0's gradients became final (``overlap.order_plan``)."""
        g = self.group
        leaves, spec = layout.positions(grads)
        names = layout.paths(spec)
        entries = [layout.entry(x) for x in leaves]
        what = g.at_step("the gradient averaging")
        mine = step.positions(leaves) if step is not None else None  # leaf index -> position
        order = [mine[k] for k in step.order if k in mine] if step is not None else None
        everyone = allgather_object(
            g, (names, entries,
                (self.bucket_bytes, self.direct_bytes, self.tail_bytes, self.in_place,
                 self.shared_bytes, self.direct_default), int(count), order,
                shared.node(leaves)), what)
        agreed = layout.union([e[:2] for e in everyone], what)
        if not any(e[3] for e in everyone):  # the plan is left as it was
            raise on_every_rank(_empty(f"every rank's count is 0 at step {g.step}"))
        # rank 0's settings win; in_place too where it orders the messages (each rank
        # still writes into its own gradients only where its own in_place lets it)
        bucket_bytes, direct_bytes, tail_bytes, in_place, shared_bytes, default = \
            everyone[0][2]
        sharing = shared.threshold([e[5] for e in everyone], agreed, shared_bytes,
                                   direct_bytes, default)
        if sharing is not None and not shared.one_machine(g):  # (the same on every rank)
            sharing = None
        # messages sent during the backward pass (begin) where the buckets travel; through
        # shared memory they would hide nothing (the copy runs on this thread either way)
        ordered = sharing is None and everyone[0][4] is not None and \
            all(e[4] is not None for e in everyone)
        self._plan(agreed, bucket_bytes, direct_bytes if sharing is None else sharing, leaves)
        if ordered:
            overlap.order_plan(self, everyone[0][4], tail_bytes, in_place)
            overlap.watch(self, mine)
        if self.shared is not None:  # the old plan's window (every rank agrees a plan)
            self.shared, old = None, self.shared
            old.free()
        if sharing is not None and self.buckets[0].size + len(self.buckets) > 1:
            self.shared = shared.SharedSums(g, self.buckets, self.header)
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
        self.build = layout.builder(spec, set(self.order))
        result = self._exchange(loss, grads, leaves, count, share)
        if result is None:  # no rank can misfit a plan made from its own tree this step
            raise on_every_rank(DistributedError(f"fluxml.distributed: {what}: the ranks "
                                                 f"could not agree a layout"))
        return result

    def _plan(self, agreed: list, bucket_bytes: int, direct_bytes: int, leaves: list) -> None:
        """The messages for the agreed layout (``bucket.plan``)."""
        buckets, direct = plan(agreed, bucket_bytes, direct_bytes, [_module(x) for x in leaves])
        self.npositions = len(agreed)
        self.unplanned = [pos for pos, entry in enumerate(agreed) if entry is None]
        self._install(buckets, direct, [], direct)

    def _install(self, buckets: list, direct: list, early: list, late: list) -> None:
        """Make ``buckets`` (the first carries the header) and ``direct`` the plan, with
        ``early`` (buckets and direct buckets sent during the backward pass, in order) and
        ``late`` (the direct buckets sent after the header): allocate the buffers."""
        self.entries = [(pos, shape, dtype) for b in buckets + direct
                        for pos, shape, dtype, _ in b.items]
        self.order = [pos for pos, _, _ in self.entries]
        for k, b in enumerate(buckets):
            b.allocate(_HEADER + len(self.order) if k == 0 else 0)
        self.buckets, self.direct, self.early, self.late = buckets, direct, early, late
        for b in direct:
            if b.buf is None and (not self.in_place or b in early):  # early: by copy
                b.allocate()
        # ids of the buffers the plan owns
        self.mine = {id(b.buf) for b in buckets + direct if b.buf is not None}
        self.where, self.waiting = {}, []
        self.header = buckets[0].host[buckets[0].size:]
        self.summary = self.header[:_HEADER].real  # loss * count, count, misfits, lacking
        self.silent = [None] * len(buckets + direct)  # the messages of a step that sends none
        self.template = np.ones_like(self.header)
        self.template[:_HEADER] = 0.0
        self.on_host = all(b.xp is np for b in buckets + direct)  # no GPU buffer to copy back
        self.outputs = [(pos, view) for b in buckets for pos, _, _, view in b.items]
        self.slot = {pos: _HEADER + i for i, pos in enumerate(self.order)}


def _unscale(grads, share: float):
    """One process: ``grads`` divided by ``share`` (none of it where ``share`` is 1)."""
    if share == 1.0:
        return grads
    return fmap(lambda x: x / share if layout.is_grad(x) else x, grads,
                is_leaf=layout.is_position)


def _check_count(who: str, count, share=None) -> None:
    """``count`` an int >= 0 and ``share`` None or a finite number > 0 (0 with a count of 0):
    share=inf gave gradients of 0, silently, and a string a comparison's TypeError."""
    if not isinstance(count, (int, np.integer)) or isinstance(count, bool) or count < 0:
        raise ValueError(f"GradientAverager.{who}: count must be this rank's number of "
                         f"observations, an int >= 0; got {count!r}")
    if share is not None and not (is_real(share) and 0 <= share < np.inf and
                                  (share > 0 or count == 0)):
        raise ValueError(f"GradientAverager.{who}: share must be the positive factor the "
                         f"gradients were multiplied by; got {share!r}")


def _empty(where: str) -> ValueError:
    return ValueError(f"GradientAverager.average: {where}: the global batch is empty, so there "
                      f"is no mean loss or gradient to average; skip empty batches (on every "
                      f"rank alike), or give some rank at least one observation")


def _raise_changed():
    raise layout.Changed


def _module(x):
    """The array module of ``x``: NumPy, or CuPy for its arrays (NumPy where this rank has
    no gradient)."""
    return np if not hasattr(x, "dtype") else array_module(x)
