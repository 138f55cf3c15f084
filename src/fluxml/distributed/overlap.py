"""Averaging that starts during the backward pass: ``GradientAverager.begin`` gives the
callback for ``fl.withgradient(..., on_final=)``, which packs each message of the plan and
posts its ``Iallreduce`` as soon as the backward pass has made its gradients final, so that
the copy and the message travel while the rest of the backward pass runs (as PyTorch's DDP
overlaps them); ``average`` then finishes the step. Where the buckets are summed in shared
memory (``shared.py``: every rank on one machine) nothing goes early: the plan is made in
tree order and the callback only watches.

The plan (``order_plan``) follows the order in which rank 0's gradients became final at the
step that agreed it (the last layer's first, for a chain): the *tail*, the gradients final
last (the last one, and those before it up to ``tail_bytes``), rides in the first bucket,
the one with the header, posted once the backward pass is done; every other gradient goes
*early*, in buckets in the order they become final. A gradient that travels alone goes
after the header, in place, as before, where the averager may write into it
(``in_place``): early it would have to go by copy, which costs as much as the message it
hides (one pass over the bytes, on this thread); without ``in_place`` it is copied anyway,
and goes early. Messages are posted in the plan's
order on every rank (an ``Iallreduce`` must be): a message whose gradients are final while
an earlier one still waits is posted after it. They go on a communicator of their own
(``Group.sweep``): a rank may post them at another point of its backward pass than the
others (a loss that depends on the data, a gradient that is None on one rank), and MPI
matches the collectives of a communicator by the order they are posted in, so on
``Group.comm`` they could be matched with the allreduces of a SyncBatchNorm's backward.

Nothing is trusted that the end of the step does not check: the callback keeps each
gradient it is handed (the engine's promise: final, never written again by the sweep) and
copies it into its message when the message is packed, and
``average`` checks that the tree it is given holds, at each position sent early, the very
object that was sent, and that ``count`` and ``share`` are those ``begin`` was given. Where
not, the step goes as a tree that no longer fits the plan: the header says so, every rank
throws the step's sums away and agrees a new plan, from the gradients as they came.

>>> import numpy as np, fluxml as fl
>>> avg = fl.distributed.GradientAverager()
>>> avg.begin(4) is None  # one process: nothing to overlap
True
"""

from __future__ import annotations

import numpy as np

from fluxml.distributed import layout
from fluxml.distributed.bucket import Bucket


def order_plan(averager, order: list, tail_bytes: int, in_place: bool) -> None:
    """Reorder the averager's plan (made in tree order) for overlap: ``order`` lists the
    positions in the order rank 0's gradients became final; ``in_place`` is rank 0's (the
    order of the messages must be the same on every rank). Sets ``averager.early`` (the
    messages posted during the backward pass, in order), ``averager.late`` (the direct
    buckets posted after the header, in place where they may) and the first bucket's
    contents: the tail."""
    rank = {pos: i for i, pos in enumerate(order)}
    planned = [(b, item) for b in averager.buckets + averager.direct for item in b.items]
    # final last first; positions never seen final (None at that step) count as first
    planned.sort(key=lambda e: -rank.get(e[1][0], -1))
    tail, size = set(), 0
    for _, (pos, shape, dtype, _) in planned:
        nbytes = int(np.prod(shape)) * dtype.itemsize
        if tail and size + nbytes > tail_bytes:
            break
        tail.add(pos)
        size += nbytes
    head = averager.buckets[0]
    first = Bucket(head.dtype, head.xp)
    late, early, current = [], [], {}
    for b, (pos, shape, dtype, _) in planned:
        if b.direct:  # in place: after the header (early, it would cost a copy)
            if pos in tail or in_place:
                late.append(b)
            else:
                early.append(b)
            continue
        if pos in tail and dtype == head.dtype:
            first.add(pos, shape)
            continue
        c = current.get(dtype)
        nbytes = (int(np.prod(shape)) + (c.size if c else 0)) * dtype.itemsize
        if c is None or c.size and nbytes > averager.bucket_bytes:
            c = current[dtype] = Bucket(dtype, b.xp)
            early.append(c)
        c.add(pos, shape)
    # in the order they become final: the message whose last gradient is final first
    early.sort(key=lambda m: max(rank.get(pos, -1) for pos, *_ in m.items))
    buckets = [first] + [m for m in early if not m.direct]
    averager._install(buckets, averager.direct, early, late)


def watch(averager, mine: dict) -> None:
    """What ``Step`` needs of the plan: ``averager.where`` (leaf index -> (position, early
    message)) and ``averager.waiting`` (per early message, how many of its gradients the
    callback will be handed), from ``mine`` (leaf index -> position, at the step that agreed
    the plan). A position that is not in ``mine`` (its gradient was None then) is sent as
    zeros, and ``Step.sent`` checks that it still is None."""
    pos_of = {pos: k for k, pos in mine.items()}
    averager.where, averager.waiting = {}, [0] * len(averager.early)
    for i, b in enumerate(averager.early):
        for pos, *_ in b.items:
            k = pos_of.get(pos)
            if k is not None:
                averager.where[k] = (pos, i)
                averager.waiting[i] += 1


class Step:
    """One step's gradients as the backward pass makes them final: the ``on_final``
    callback of ``withgradient``. Records every gradient (by leaf index, in the order they
    come: how the next plan is ordered) and posts each early message of the plan once its
    gradients are final and the messages before it are posted."""

    def __init__(self, averager, count, share, scale):
        self.averager, self.count, self.share, self.scale = averager, count, share, scale
        self.given: dict = {}  # leaf index -> gradient
        self.order: list = []  # leaf indices in the order they became final
        early = self.early = averager.early if averager.planned else []
        self.where = averager.where if early else {}
        self.got = [None] * averager.npositions if early else None
        self.remaining = list(averager.waiting) if early else []
        self.next = 0  # the next early message to post
        self.requests: list = []
        self.misfit = False

    def __call__(self, k, g):
        self.given[k] = g
        self.order.append(k)
        where = self.where.get(k)
        if where is None:
            return
        pos, i = where
        self.got[pos] = g
        self.remaining[i] -= 1
        if self.requests:  # let MPI advance the messages already posted
            self.averager.group.MPI.Request.Testall(self.requests)
        if self.next < len(self.remaining) and not self.remaining[self.next]:
            self._post()

    def _post(self):
        """Post the early messages whose gradients are all final, in the plan's order."""
        while self.next < len(self.early) and not self.remaining[self.next]:
            zeros = set()
            if not self.misfit:
                for pos, shape, dtype, _ in self.early[self.next].items:
                    state = layout.fit(self.got[pos], shape, dtype)
                    if state == "zero":
                        zeros.add(pos)
                    elif state == "misfit":
                        self.misfit = True
            # a misfit step sends the planned message unpacked (its sums are thrown away)
            self._send(zeros, not self.misfit)

    def _send(self, zeros, fits: bool):
        """Post the next early message, packed from the gradients (``fits``) or not."""
        g = self.averager.group
        b = self.early[self.next]
        b.stage(self.got, zeros, self.scale, fits)
        self.requests.append(g.sweep.Iallreduce(g.MPI.IN_PLACE, b.host, op=g.MPI.SUM))
        self.next += 1

    def abandon(self, what: str) -> None:
        """End the step without averaging it: post the plan's early messages not posted yet
        (unpacked: their sums are thrown away) and wait for them all, within the group's
        timeout. Every rank then has sent every early message of the step, whether it
        abandons the step or averages it, and wherever its backward pass stopped: the next
        step's messages meet their own."""
        while self.next < len(self.early):
            self._send((), False)
        if self.requests:
            self.averager.group.wait(self.requests, what)

    def sent(self, leaves, count, share) -> bool:
        """Were the early messages posted so far packed from ``leaves`` (the tree given to
        ``average``), at the scale ``average`` wants?"""
        if self.misfit or count != self.count or share != self.share:
            return False
        got = self.got
        for b in self.early[:self.next]:
            for pos, *_ in b.items:
                if leaves[pos] is not got[pos]:
                    return False
        return True

    def positions(self, leaves) -> dict:
        """``{leaf index: position}`` for the array gradients found in ``leaves`` (by
        identity: each array gradient ``withgradient`` gives is an object of its own)."""
        ids = {id(g): k for k, g in self.given.items() if g is not None}
        out = {}
        for pos, x in enumerate(leaves):
            k = ids.get(id(x)) if x is not None else None
            if k is not None:
                out[k] = pos
        return out
