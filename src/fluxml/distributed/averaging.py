"""Gradient averaging across ranks: a few flat buckets, each one non-blocking ``Iallreduce``.

Each step, ``GradientAverager.average(loss, grads, count)``:

1. starts a small allreduce of ``[loss * count, count, layout fingerprint]`` (so the loss,
   the global batch size and a check that every rank has the same gradient layout arrive
   together), and packs the first bucket meanwhile;
2. posts one ``Iallreduce`` per bucket as soon as it is packed (each gradient scaled by its
   rank's batch size, so ranks with unequal batches weigh as one big batch would), and packs
   the next bucket while the earlier ones travel;
3. waits for the buckets in order, dividing each by the global batch size while the later
   ones are still in flight. The averaged gradients are views into the buckets (no
   unpacking copies), valid until the next ``average``.

What overlaps, honestly: fluxml's reverse sweep is synchronous (the gradient exists only when
``withgradient`` returns), so communication cannot hide behind the backward pass as in
PyTorch's DDP. It overlaps the packing of later buckets and the scaling of earlier ones, and
MPICH advances a non-blocking collective only inside MPI calls, which the packing loop makes
between buckets. ``benchmarks/distributed.py`` measures the fraction hidden.

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

from fluxml.distributed.group import DistributedError, group, on_every_rank
from fluxml.distributed.sync import _fingerprint
from fluxml.tree import flatten, unflatten

_REDUCIBLE = {np.dtype(t) for t in (np.float32, np.float64, np.complex64, np.complex128)}


def _is_grad(x) -> bool:
    return hasattr(x, "dtype") and hasattr(x, "shape") and x.dtype.kind in "fc"


class Bucket:
    """One flat buffer and the gradients it carries: ``(leaf index, offset, size, shape)``."""

    def __init__(self, dtype, xp=np):
        self.dtype, self.xp = np.dtype(dtype), xp
        self.items: list[tuple[int, int, int, tuple]] = []
        self.size = 0
        self.buf = None
        self.host = None  # a NumPy mirror when the gradients live on a GPU

    def add(self, index: int, shape: tuple) -> None:
        n = int(np.prod(shape))
        self.items.append((index, self.size, n, shape))
        self.size += n

    def allocate(self) -> None:
        self.buf = self.xp.empty(self.size, dtype=self.dtype)
        self.host = self.buf if self.xp is np else np.empty(self.size, dtype=self.dtype)


class GradientAverager:
    """``GradientAverager(bucket_bytes=1 << 20)``: averages structural gradients across the
    ranks of ``fl.distributed.group()`` in buckets of about ``bucket_bytes`` each (one
    bucket per dtype at least). ``timings`` holds the seconds of the last step's phases:
    ``pack`` (packing and posting), ``wait`` (waiting for the buckets), ``total``."""

    def __init__(self, bucket_bytes: int = 1 << 20):
        if not isinstance(bucket_bytes, int) or bucket_bytes < 1:
            raise ValueError(f"GradientAverager: bucket_bytes must be a positive int; got "
                             f"{bucket_bytes!r}")
        self.group = group()
        self.bucket_bytes = bucket_bytes
        self.key = None
        self.buckets: list[Bucket] = []
        self.fingerprint = 0
        self.timings: dict[str, float] = {}

    def _plan(self, leaves, key) -> None:
        """Assign the gradient leaves to buckets, in order, a new bucket when the dtype
        changes or the current one is full."""
        buckets: dict = {}
        done: list[Bucket] = []
        for i, x in enumerate(leaves):
            if key[i] is None:
                continue
            dtype = np.dtype(x.dtype)
            if dtype not in _REDUCIBLE:
                raise DistributedError(f"fluxml.distributed: cannot average gradients of dtype "
                                       f"{dtype} over MPI; train in float32 or float64")
            b = buckets.get(dtype)
            if b is None or b.size and (b.size + x.size) * dtype.itemsize > self.bucket_bytes:
                b = buckets[dtype] = Bucket(dtype, _module(x))
                done.append(b)
            b.add(i, tuple(x.shape))
        for b in done:
            b.allocate()
        self.key, self.buckets = key, done
        self.fingerprint = _fingerprint(key)

    def average(self, loss: float, grads, count: int):
        """``(mean loss, averaged grads, global batch size)`` over all ranks; ``count`` is
        this rank's number of observations. Every rank must call it once per step."""
        g = self.group
        if g.size == 1:
            return float(loss), grads, count
        t0 = time.perf_counter()
        MPI = g.MPI
        leaves, spec = flatten(grads)
        key = tuple((x.shape, x.dtype.str) if _is_grad(x) else None for x in leaves)
        if key != self.key:
            self._plan(leaves, key)
        g.announce(g.step + 1)  # the group counts steps: several averagers may follow in turn
        f = float(self.fingerprint)
        meta = np.array([float(loss) * count, count, f, f * f], dtype=np.float64)
        meta_req = g.comm.Iallreduce(MPI.IN_PLACE, meta, op=MPI.SUM)
        posted: list = []
        for k, b in enumerate(self.buckets):
            for i, off, n, shape in b.items:
                out = b.buf[off:off + n].reshape(shape)
                b.xp.multiply(leaves[i], count, out=out)
            if b.host is not b.buf:
                b.buf.get(out=b.host)
            if k == 0:  # the layout check must pass before any bucket is posted
                g.wait([meta_req], "the step's loss and batch sizes")
                self._check(meta)
            posted.append(g.comm.Iallreduce(MPI.IN_PLACE, b.host, op=MPI.SUM))
            MPI.Request.Testall(posted)  # let MPI advance the buckets already posted
        if not self.buckets:
            g.wait([meta_req], "the step's loss and batch sizes")
            self._check(meta)
        t1 = time.perf_counter()
        total = meta[1]
        out = [None] * len(leaves)
        for b, req in zip(self.buckets, posted):
            g.wait([req], f"the gradient averaging at step {g.step}")
            if b.host is not b.buf:
                b.buf.set(b.host)
            b.buf *= b.dtype.type(1.0 / total)
            for i, off, n, shape in b.items:
                out[i] = b.buf[off:off + n].reshape(shape)
        t2 = time.perf_counter()
        self.timings = {"pack": t1 - t0, "wait": t2 - t1, "total": t2 - t0}
        return float(meta[0] / total), unflatten(spec, out), int(total)

    def _check(self, meta) -> None:
        size = self.group.size
        if meta[2] ** 2 != size * meta[3]:
            raise on_every_rank(DistributedError(
                f"fluxml.distributed: at step {self.group.step} the ranks' gradients have "
                f"different layouts (a part of the model got no gradient on some rank, or the "
                f"models differ); every rank must differentiate the same parameters"))


def _module(x):
    """The array module of ``x``: NumPy, or CuPy for its arrays."""
    if isinstance(x, np.ndarray):
        return np
    import importlib

    return importlib.import_module(type(x).__module__.split(".")[0])
