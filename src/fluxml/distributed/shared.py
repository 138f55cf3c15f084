"""Summing the gradient buckets through memory the ranks share, where every rank runs on
one machine: each rank copies its gradients (every one by default: ``threshold``) into its
own part of an MPI shared-memory window (the pack that a bucket costs anyway), the first
bucket's header travels by ``Iallreduce`` as before and is the step's synchronisation, and
each rank then adds the ranks' parts, read where they lie, into its own buckets. No message
carries the gradients, so MPICH's own copies of them (into its shared-memory cells and out
again) are gone: what the averager's pack cost comes back, and more.

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

Each part is double-buffered (the step's parity), so no rank writes a part another may still
be reading: a rank packs step ``s + 2`` into the part of step ``s`` only after the header of
step ``s + 1`` has come, which every rank posts after its sums of step ``s``. ``Win.Sync``
before the header is posted and after it has come orders the plain stores and loads around
it (MPI's unified memory model). Every rank adds the parts in rank order, so the sums are
the same, bit for bit, on every rank.

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
    """The shared-memory window of a plan's buckets (``buckets``, NumPy, the first holding the
    header after its gradients): ``pack`` copies this rank's gradients into its part,
    ``publish`` before the header is posted, ``add`` once it has come sums every rank's parts
    into the buckets' gradients (``Bucket.grad``). Collective: every rank of ``g`` creates it
    at the same point (when the ranks agree a plan), and ``free`` it."""

    def __init__(self, g, buckets: list):
        MPI = g.MPI
        sizes = part_bytes([b.dtype for b in buckets], [b.size for b in buckets])
        starts = np.concatenate([[0], np.cumsum(sizes)]).astype(int).tolist()
        total = starts[-1]
        self.win = MPI.Win.Allocate_shared(2 * total, 1, comm=g.comm)
        self.win.Lock_all(MPI.MODE_NOCHECK)  # one passive epoch: Sync orders memory within it
        ranks = []
        for q in range(g.size):
            mem, _ = self.win.Shared_query(q)
            ranks.append(np.frombuffer(mem, np.uint8, 2 * total))
        # parts[parity][bucket]: the ranks' parts, in rank order; targets[parity][bucket]: this
        # rank's part as (position, the gradient's view in it), as the bucket's own targets
        # (a bucket's gradients lie in order, one after the other)
        self.parts: list = [[], []]
        self.targets: list = [[], []]
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
        self.dtypes = [b.dtype for b in buckets]
        self.grads = [b.grad for b in buckets]
        self.parity = 0

    def pack(self, leaves: list, zeros, scale: float) -> None:
        """Copy this rank's gradients into its parts of this step's parity, multiplied by
        ``scale`` (zeros for the positions in ``zeros``), as ``Bucket.pack`` does."""
        for targets, dtype in zip(self.targets[self.parity], self.dtypes):
            pack(targets, dtype, leaves, zeros, scale)

    def publish(self) -> None:
        """This rank's stores to its parts done (call before posting the header)."""
        self.win.Sync()

    def add(self) -> None:
        """Once the header has come (every rank packed): the sums of every rank's parts, in
        rank order, into the buckets' gradients. Moves to the next step's parity."""
        self.win.Sync()
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
