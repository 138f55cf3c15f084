"""Summing the gradient buckets through memory the ranks share, where every rank runs on
one machine: each rank copies its gradients (every one by default: ``threshold``) into its
own part of an MPI shared-memory window (the pack that a bucket costs anyway) and its header
(the loss, the count, the flags: ``averaging.py``) into its slot there, then counts one more
posted header in its own place in the window; once every rank's count has come to this
step's, each rank sums the ranks' headers and then their parts, read where they lie, into its
own buckets. No message at all: MPICH's own copies of the gradients (into its shared-memory
cells and out again) are gone, what the averager's pack cost comes back, and more; and the
header, which went by ``Iallreduce`` before, costs a store and a few loads in place of an MPI
collective (its latency, and the Python of posting it: 4-5 us a step).

Why not the ideas that would skip the pack: MPI's predefined operations (``MPI_SUM``) are
defined on predefined datatypes only (the standard's "Predefined Reduction Operations"), and
MPICH (5.0.2, the wheel's) refuses a derived one, even a
contiguous one ("MPI_Op operation not defined for this datatype"), so an ``Iallreduce`` of
the gradients where they lie, described by a ``Create_hindexed`` of their addresses, cannot
use ``MPI_SUM``; with a user-defined operation MPICH's algorithm allocates a buffer of the
type's true extent, the span between the lowest and the highest gradient address (tens of
terabytes between the heap and a mapped array: "Out of memory"), and calls Python for each
reduction. Letting the backward pass write the small gradients straight into a bucket would
take an ``out=`` through every derivative rule.

Each part and header slot is double-buffered (the step's parity), so no rank writes one that
another may still be reading: a rank packs step ``s + 2`` into the part of step ``s`` only
after every rank has posted step ``s + 1``, which each does after its sums of step ``s``.
``Win.Sync`` between a rank's stores and its count, and between reading the counts and
reading the headers and parts, orders the plain stores and loads (MPI's unified memory
model). Every rank adds the headers and the parts in rank order, so the sums are the same,
bit for bit, on every rank (with 2 ranks, the same as MPI's sum of the header was).

>>> import numpy as np
>>> part_bytes([np.dtype(np.float32)], [3])  # rounded to a cache line
[64]
"""

from __future__ import annotations

import os
import weakref

import numpy as np

from fluxml.backend.registry import array_module
from fluxml.distributed.bucket import pack

_LINE = 64  # each bucket's part starts on a cache line
# the gradients of a plan (per rank) that go in buckets, all of them where they come to at
# most this (direct_bytes not given); twice this per rank in the window
SHARED_BYTES = 64 << 20
_EVERY = 1 << 62  # a direct_bytes that no gradient reaches
_MACHINE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # group -> one_machine


def node(leaves: list) -> int | None:
    """What this rank tells the others when they agree a plan: the free bytes of /dev/shm,
    where MPICH maps a shared window; None where a gradient is not NumPy's (a GPU array: its
    buckets are on the GPU)."""
    if any(hasattr(x, "shape") and array_module(x) is not np for x in leaves):
        return None
    try:
        st = os.statvfs("/dev/shm")
        return st.f_bavail * st.f_frsize
    except OSError:  # no /dev/shm: MPICH maps its windows elsewhere; assume room
        return 1 << 62


def one_machine(g) -> bool:
    """Can every rank of ``g`` map the others' memory (MPI's ``COMM_TYPE_SHARED`` split
    holds them all)? Collective the first time for a group (the ranks agreeing a plan)."""
    known = _MACHINE.get(g)
    if known is None:
        node_comm = g.comm.Split_type(g.MPI.COMM_TYPE_SHARED)
        known = _MACHINE[g] = node_comm.Get_size() == g.size
        node_comm.Free()
    return known


def threshold(nodes: list, agreed: list, shared_bytes: int, direct_bytes: int,
              default: bool) -> int | None:
    """The ``direct_bytes`` of a plan whose buckets are summed in shared memory, or None
    where they cannot be: a rank has a GPU gradient (``nodes``: each rank's ``node``), or
    the buckets would hold more than ``shared_bytes`` (per rank), or their window (twice
    that, on every rank) more than half of /dev/shm's free space. Every gradient goes in a
    bucket where it can (``default``: the user did not choose ``direct_bytes``): a copy and
    a sum through shared memory cost less than MPI's allreduce even of one large array in
    its own memory (measured, 2 ranks: 30-40% less time from 0.25 to 16 MB). The ranks must
    also be on one machine (``one_machine``)."""
    if not shared_bytes or None in nodes:
        return None
    sizes = [int(np.prod(e[0])) * np.dtype(e[1]).itemsize for e in agreed if e is not None]
    free = min(nodes)
    for direct in ([_EVERY] if default else []) + [direct_bytes]:
        bucketed = sum(n for n in sizes if n < direct)
        if bucketed <= shared_bytes and 2 * bucketed * len(nodes) <= free // 2:
            return direct
    return None


def part_bytes(dtypes: list, sizes: list) -> list:
    """The bytes of each bucket's part (``sizes`` elements of ``dtypes``), cache-line
    rounded."""
    return [-(-int(n) * np.dtype(t).itemsize // _LINE) * _LINE for t, n in zip(dtypes, sizes)]


class SharedSums:
    """The shared-memory window of a plan's buckets (``buckets``, NumPy) and of its
    ``header`` (the averager's): ``pack`` copies this rank's gradients into its part,
    ``post`` its header into its slot and says so; once ``ready`` (every rank posted),
    ``receive`` sums the ranks' headers and ``add`` their parts into the buckets' gradients
    (``Bucket.grad``). Collective: every rank of ``g`` creates it at the same point (when the
    ranks agree a plan), and ``free`` it."""

    def __init__(self, g, buckets: list, header):
        MPI = g.MPI
        dtypes = [b.dtype for b in buckets] + [header.dtype]
        sizes = part_bytes(dtypes, [b.size for b in buckets] + [header.size])
        starts = np.concatenate([[0], np.cumsum(sizes)]).astype(int).tolist()
        total = starts[-1]  # a parity's bytes: the parts, then the header's slot
        # per rank: the two parities, then its count of posted headers on a line of its own
        nbytes = 2 * total + _LINE
        self.win = MPI.Win.Allocate_shared(nbytes, 1, comm=g.comm)
        self.win.Lock_all(MPI.MODE_NOCHECK)  # one passive epoch: Sync orders memory within it
        ranks = []
        for q in range(g.size):
            mem, _ = self.win.Shared_query(q)
            ranks.append(np.frombuffer(mem, np.uint8, nbytes))
        # parts[parity][bucket]: the ranks' parts, in rank order; targets[parity][bucket]: this
        # rank's part as (position, the gradient's view in it), as the bucket's own targets
        # (a bucket's gradients lie in order, one after the other); headers[parity]: the
        # ranks' header slots
        self.parts: list = [[], []]
        self.targets: list = [[], []]
        self.headers: list = []
        for p in (0, 1):
            for b, start in zip(buckets, starts):
                a = start + p * total
                views = [base[a:a + b.size * b.dtype.itemsize].view(b.dtype) for base in ranks]
                self.parts[p].append(views)
                mine, off, targets = views[g.rank], 0, []
                for pos, view in b.targets:
                    targets.append((pos, mine[off:off + view.size].reshape(view.shape)))
                    off += view.size
                self.targets[p].append(targets)
            a = starts[-2] + p * total
            self.headers.append([base[a:a + header.nbytes].view(header.dtype)
                                 for base in ranks])
        self.dtypes = [b.dtype for b in buckets]
        self.grads = [b.grad for b in buckets]
        self.rank, self.parity, self.posted = g.rank, 0, 0
        counts = [base[2 * total:2 * total + 8].view(np.int64) for base in ranks]
        self.count, self.others = counts[g.rank], counts[:g.rank] + counts[g.rank + 1:]
        self.count[0] = 0
        # no rank reads a count before its rank has set it (within the group's timeout)
        g.wait([g.comm.Ibarrier()], g.at_step("the making of the shared-memory window"))

    def pack(self, leaves: list, zeros, scale: float) -> None:
        """Copy this rank's gradients into its parts of this step's parity, multiplied by
        ``scale`` (zeros for the positions in ``zeros``), as ``Bucket.pack`` does."""
        for targets, dtype in zip(self.targets[self.parity], self.dtypes):
            pack(targets, dtype, leaves, zeros, scale)

    def post(self, header) -> None:
        """This rank's parts are packed (or left, where its tree does not fit the plan): its
        ``header`` into its slot of this step's parity, then its count of posted headers, which
        the others read (``ready``)."""
        self.headers[self.parity][self.rank][...] = header
        self.posted += 1
        self.win.Sync()  # the parts and the header stored before the count
        self.count[0] = self.posted

    def ready(self) -> bool:
        """Has every other rank posted this step's header (and packed its parts)?"""
        posted = self.posted
        for count in self.others:
            if count[0] < posted:
                return False
        return True

    def receive(self, out) -> None:
        """Once ``ready``: the sum of the ranks' headers, in rank order, into ``out``."""
        self.win.Sync()  # the counts read before the headers and the parts
        slots = self.headers[self.parity]
        np.add(slots[0], slots[1], out=out)
        for slot in slots[2:]:
            np.add(out, slot, out=out)

    def add(self) -> None:
        """Once the headers are received: the sums of every rank's parts, in rank order, into
        the buckets' gradients. Moves to the next step's parity."""
        add = np.add
        for parts, out in zip(self.parts[self.parity], self.grads):
            if out.size:
                add(parts[0], parts[1], out=out)
                for part in parts[2:]:
                    add(out, part, out=out)
        self.parity ^= 1

    def skip(self) -> None:
        """A step whose sums are not used (a rank's tree did not fit): the next parity all
        the same, as on every rank."""
        self.parity ^= 1

    def free(self) -> None:
        self.win.Unlock_all()
        self.win.Free()
