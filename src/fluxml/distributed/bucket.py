"""``Bucket``: one message of the gradient averaging (``averaging.py``), a flat buffer and
the gradients it carries, and how they are packed into it; ``plan``: the buckets of a layout.

>>> import numpy as np
>>> b = Bucket(np.float32)
>>> b.add(0, (2,)); b.add(3, (1,)); b.allocate()
>>> b.pack([np.ones(2, np.float32), None, None, np.full(1, 4.0, np.float32)], (), 0.5)
>>> b.buf
array([0.5, 0.5, 2. ], dtype=float32)
"""

from __future__ import annotations

import numpy as np

from fluxml.distributed.group import DistributedError, on_every_rank

# the order of the buckets: float64 first, so that the first bucket (which carries the loss
# and the batch size) sums them in float64 whenever the model has any float64 gradient
_ORDER = [np.dtype(t) for t in (np.float64, np.complex128, np.float32, np.complex64)]


class Bucket:
    """One message: a flat buffer and the gradients it carries. ``items`` are ``(position,
    shape, dtype, view)``, ``view`` the gradient's place in ``buf``; ``grad`` is the part of
    ``buf`` that holds gradients (the first bucket has the header after it). A *direct*
    bucket carries one large gradient: averaged in place in the gradient's own array where
    the averager may (``in_place``), else in ``buf``, allocated when first needed."""

    def __init__(self, dtype, xp=np, direct: bool = False):
        self.dtype, self.xp, self.direct = np.dtype(dtype), xp, direct
        self.items: list[tuple] = []
        self.targets: list[tuple] = []  # (position, view), once allocated
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
        self.targets = [(pos, view) for pos, _, _, view in self.items]

    def stage(self, leaves: list, zeros, scale: float, fits: bool) -> None:
        """Ready ``host`` to be sent: packed (where this rank's tree fits the plan; else it
        sends what the buffer holds, unused) and copied off the GPU where ``buf`` is there."""
        if fits:
            self.pack(leaves, zeros, scale)
        if self.host is not self.buf:
            self.buf.get(out=self.host)

    def pack(self, leaves: list, zeros, scale: float) -> None:
        """Copy this rank's gradients into ``buf``, multiplied by ``scale`` (zeros for the
        positions in ``zeros``)."""
        pack(self.targets, self.dtype, leaves, zeros, scale, self.xp)


def pack(targets: list, dtype, leaves: list, zeros, scale: float, xp=np) -> None:
    """Copy ``leaves[pos]`` into ``view`` for each ``(pos, view)`` of ``targets`` (views of
    one buffer of ``dtype``, NumPy's or ``xp``'s), multiplied by ``scale``; zeros for the
    positions in ``zeros`` (no gradient there on this rank). The gradients fit the plan (the
    averager checked each one's shape and dtype), so nothing broadcasts or casts."""
    if scale != 1.0:
        s, multiply = dtype.type(scale), xp.multiply
        for pos, view in targets:
            if pos in zeros:
                view.fill(0)
            else:
                multiply(leaves[pos], s, out=view)
        return
    # scale 1: the gradients came scaled (fl.train), a plain copy; by item assignment,
    # which costs a third less per call than np.copyto (its casting and where= arguments),
    # and a step of small gradients is mostly calls (60 KB in six: 3.0 us against 4.9)
    for pos, view in targets:
        if pos in zeros:
            view.fill(0)
        else:
            view[...] = leaves[pos]


def ownable(late: list, leaves: list, zeros, mine: set) -> dict:
    """The gradients of the direct buckets ``late`` this rank may average in place:
    ``{position: array}`` for NumPy arrays that are C-contiguous and writable and whose memory
    is theirs alone: all of the memory of their root (the NumPy array that owns it; a gradient
    that is a slice of a larger array, a parameter say, is not), and shared with no other
    direct gradient (a structural gradient may hold one array at several positions) nor with
    the averager's own buffers (``mine``: their ids). Not the positions in ``zeros`` (an
    integer array where the plan has a gradient, say)."""
    roots: dict = {}
    candidates = []
    for b in late:
        pos = b.items[0][0]
        x = leaves[pos]
        if type(x) is not np.ndarray or pos in zeros:
            continue  # None, a CuPy array: the bucket's own buffer
        root = x if x.base is None else x.base
        key = id(root)
        roots[key] = roots.get(key, 0) + 1
        whole = root is x or type(root) is np.ndarray and root.nbytes == x.nbytes
        if whole and root.base is None and x.flags.c_contiguous and x.flags.writeable \
                and key not in mine:
            candidates.append((pos, x, key))
    return {pos: x for pos, x, key in candidates if roots[key] == 1}


def plan(agreed: list, bucket_bytes: int, direct_bytes: int, modules: list) -> tuple:
    """``(buckets, direct)`` for the agreed layout (per position ``(shape, dtype)`` or None;
    ``modules``: the array module of each position's gradient on this rank): a direct bucket
    per gradient of at least ``direct_bytes``; the others in buckets, in order within each
    dtype, a new bucket when the current one is full. The first bucket carries the header,
    in the first dtype of the plan (float64 first: the loss and counts sum in float64
    whenever the model has any float64 gradient); it may carry no gradient."""
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
    dtypes = sorted(by_dtype, key=_ORDER.index) or [np.dtype(np.float64)]
    buckets: list[Bucket] = [Bucket(dtypes[0])]  # the header's
    direct: list[Bucket] = []
    for dtype in dtypes:
        b = buckets[0] if dtype == dtypes[0] else None
        for pos, shape in by_dtype.get(dtype, ()):
            n = int(np.prod(shape))
            if n * dtype.itemsize >= direct_bytes:
                direct.append(Bucket(dtype, modules[pos], direct=True))
                direct[-1].add(pos, shape)
                continue
            if b is None or b.size and (b.size + n) * dtype.itemsize > bucket_bytes:
                b = Bucket(dtype, modules[pos])
                buckets.append(b)
            elif not b.items:
                b.xp = modules[pos]
            b.add(pos, shape)
    return buckets, direct
