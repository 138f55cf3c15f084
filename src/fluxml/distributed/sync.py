"""Making ranks agree: ``broadcast`` a model's (or an optimiser state's) arrays from rank 0,
``broadcast_object`` for small Python values, and ``check_synced`` to verify that every rank
holds the same arrays.

Before any data moves, the ranks compare a fingerprint of the tree's layout (paths, shapes,
dtypes); ranks that built different models get an error naming the first difference rather
than a scrambled model or a hung job.

>>> import numpy as np, fluxml as fl
>>> model = fl.Dense(2, 1)
>>> fl.distributed.broadcast(model) is model   # one process: nothing to copy
True
>>> fl.distributed.check_synced(model)
"""

from __future__ import annotations

import pickle
import zlib

import numpy as np

from fluxml._checks import is_int, shown
from fluxml.backend.registry import array_module
from fluxml.distributed.group import DistributedError, Group, group, on_every_rank
from fluxml.io.modelstate import _optimiser_leaves, flat_state, write_into
from fluxml.layers.module import parameter_arrays

_ALIGN = 64  # bytes: every array in a packed buffer starts on a cache line


def _host(x) -> np.ndarray:
    """A NumPy view or copy of ``x`` (CuPy arrays come to the host: MPI here is not
    CUDA-aware)."""
    get = getattr(x, "get", None)
    return np.asarray(get() if callable(get) and not isinstance(x, np.ndarray) else x)


def _fingerprint(signature) -> int:
    """A 20-bit number for a layout (so its square stays exact in float64 sums)."""
    return zlib.crc32(repr(signature).encode()) & 0xFFFFF


def agree(g: Group, signature, what: str) -> None:
    """Raise the same error on every rank unless all ranks passed an equal ``signature``
    (a list of (path, shape, dtype)). One small allreduce: the sums of the fingerprint and
    of its square match ``size * f`` and ``size * f**2`` only if every rank has the same."""
    f = float(_fingerprint(signature))
    sums = np.array([f, f * f], dtype=np.float64)
    g.wait([g.comm.Iallreduce(g.MPI.IN_PLACE, sums, op=g.MPI.SUM)], what)
    if sums[0] ** 2 == g.size * sums[1]:
        return
    everyone = g.comm.allgather(signature)  # rare path: find the difference to name it
    for r, theirs in enumerate(everyone):
        if theirs != everyone[0]:
            diff = next(((a, b) for a, b in zip(everyone[0], theirs) if a != b), None)
            detail = (f"rank 0 has {diff[0]}, rank {r} has {diff[1]}" if diff else
                      f"rank 0 has {len(everyone[0])} entries, rank {r} {len(theirs)}")
            raise on_every_rank(DistributedError(
                f"fluxml.distributed: {what}: the ranks disagree: {detail}. Every rank must "
                f"build the same model and optimiser state"))
    raise on_every_rank(DistributedError(f"fluxml.distributed: {what}: the ranks disagree"))


def _check_root(who: str, root, g: Group) -> None:
    """``root`` a rank of the job: one process took root=5 or 'a' and returned, and a job of
    several failed in MPI, naming no argument."""
    if not is_int(root) or not 0 <= root < g.size:
        raise ValueError(f"{who}: root must be a rank, an int in 0 .. {g.size - 1}; got "
                         f"{shown(root)}")


def _signature(flat: dict) -> list:
    return [(path, tuple(np.shape(x)), np.dtype(x.dtype).str) for path, x in flat.items()]


def broadcast(tree, root: int = 0):
    """Copy rank ``root``'s arrays (every numeric leaf: parameters, BatchNorm statistics,
    optimiser moments, step counters, hyperparameters) into the same tree on every other
    rank, in place, in one message (and which optimiser Leafs are frozen, in another).
    Returns the tree (a new object only where a tuple or number at its root had to be
    rebuilt, as ``fl.loadmodel``)."""
    g = group()
    _check_root("broadcast", root, g)
    if g.size == 1:
        return tree
    flat = flat_state(tree)
    agree(g, _signature(flat), "broadcast")
    offsets, total = [], 0
    for x in flat.values():
        offsets.append(total)
        total += -(-x.nbytes // _ALIGN) * _ALIGN
    buf = np.zeros(total, dtype=np.uint8)
    if g.rank == root:
        for off, x in zip(offsets, flat.values()):
            h = np.ascontiguousarray(_host(x))
            buf[off:off + h.nbytes] = h.reshape(-1).view(np.uint8)
    g.wait([g.comm.Ibcast(buf, root=root)], "the broadcast of parameters")
    # an optimiser state's frozen Leafs (a flag, not an array: a checkpoint that rank 0 alone
    # loaded freezes them there only, and the other ranks would train those arrays)
    leaves = _optimiser_leaves(tree)
    frozen = broadcast_object([leaf.frozen for leaf in leaves], root) if leaves else []
    if g.rank == root:
        return tree
    views = {path: buf[off:off + x.nbytes].view(x.dtype).reshape(np.shape(x))
             for off, (path, x) in zip(offsets, flat.items())}
    tree = write_into(tree, views)
    for leaf, flag in zip(_optimiser_leaves(tree), frozen):
        leaf.frozen = flag
    return tree


def broadcast_object(obj, root: int = 0):
    """Rank ``root``'s ``obj`` on every rank (pickled; for small things such as a random
    generator's state)."""
    g = group()
    _check_root("broadcast_object", root, g)
    if g.size == 1:
        return obj
    payload = pickle.dumps(obj) if g.rank == root else b""
    n = np.array([len(payload)], dtype=np.int64)
    g.wait([g.comm.Ibcast(n, root=root)], "the broadcast of an object's size")
    buf = np.frombuffer(payload, dtype=np.uint8).copy() if g.rank == root else \
        np.empty(int(n[0]), dtype=np.uint8)
    g.wait([g.comm.Ibcast(buf, root=root)], "the broadcast of an object")
    return obj if g.rank == root else pickle.loads(buf.tobytes())


def average_statistics(model) -> None:
    """Make the non-trainable float arrays of ``model`` (BatchNorm's running statistics) their
    mean over the ranks, in place, where the ranks' differ. A plain BatchNorm tracks the
    statistics of its own rank's batches, so the ranks' drift apart: an evaluation would give
    each rank other numbers, and ``EarlyStopping`` other decisions (``fl.train(...,
    distributed=True)`` calls this at the end of each epoch, before the callbacks). Arrays
    that already agree (a ``SyncBatchNorm``'s) stay as they are, bit for bit.

    >>> import fluxml as fl
    >>> fl.distributed.average_statistics(fl.BatchNorm(3))  # one process: nothing to do
    """
    g = group()
    if g.size == 1:
        return
    stats = parameter_arrays(model)[1]
    agree(g, [(tuple(np.shape(x)), np.dtype(x.dtype).str) for x in stats],
          "average_statistics")
    hosts = [np.ascontiguousarray(_host(x)) for x in stats]
    crcs = allgather_object(g, [zlib.crc32(h.tobytes()) for h in hosts],
                            "the running statistics' checksums")
    differ = [i for i in range(len(stats)) if any(c[i] != crcs[0][i] for c in crcs)]
    if not differ:
        return
    stats, hosts = [stats[i] for i in differ], [hosts[i] for i in differ]
    # summed in float64 (complex128 where any is complex): float32 statistics come back as
    # the mean rounded once
    buf = np.concatenate([h.reshape(-1) for h in hosts]).astype(
        np.result_type(np.float64, *hosts))
    g.wait([g.comm.Iallreduce(g.MPI.IN_PLACE, buf, op=g.MPI.SUM)],
           "the average of the running statistics")
    buf /= g.size
    start = 0
    for x in stats:
        part = buf[start:start + x.size].reshape(np.shape(x))
        start += x.size
        part = (part if x.dtype.kind == "c" else part.real).astype(x.dtype)
        x[...] = array_module(x).asarray(part)  # (a GPU array's back to its device)


def any_rank(flag: bool, what: str) -> bool:
    """True on every rank where ``flag`` is true on any (a decision all must take alike)."""
    g = group()
    if g.size == 1:
        return bool(flag)
    return any(allgather_object(g, bool(flag), what))


def allgather_object(g: Group, obj, what: str) -> list:
    """Every rank's ``obj`` (pickled; small things), in rank order, through waits that cannot
    hang: the sizes first, then the bytes."""
    payload = np.frombuffer(pickle.dumps(obj), dtype=np.uint8)
    sizes = np.zeros(g.size, dtype=np.int64)
    mine = np.array([payload.size], dtype=np.int64)
    g.wait([g.comm.Iallgather(mine, sizes)], what)
    buf = np.empty(int(sizes.sum()), dtype=np.uint8)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    g.wait([g.comm.Iallgatherv(payload, [buf, (sizes, starts), g.MPI.BYTE])], what)
    return [pickle.loads(buf[a:a + n].tobytes()) for a, n in zip(starts, sizes)]


def check_synced(tree, what: str = "model") -> None:
    """Raise ``DistributedError`` naming the ranks and the first array whose bytes differ
    from rank 0's (a check for tests and debugging: it hashes every array)."""
    g = group()
    if g.size == 1:
        return
    flat = flat_state(tree)
    agree(g, _signature(flat), f"check_synced({what})")
    mine = [zlib.crc32(np.ascontiguousarray(_host(x)).tobytes()) for x in flat.values()]
    everyone = g.comm.allgather(mine)
    paths = list(flat)
    for r, theirs in enumerate(everyone):
        bad = [p for p, a, b in zip(paths, everyone[0], theirs) if a != b]
        if bad:
            more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
            raise on_every_rank(DistributedError(
                f"fluxml.distributed: {what} differs between rank 0 and rank {r}: "
                f"{bad[0]}{more}"))
