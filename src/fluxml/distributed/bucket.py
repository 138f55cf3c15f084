"""``Bucket``: one message of the gradient averaging (``averaging.py``), a flat buffer and
the gradients it carries, and how they are packed into it.

>>> import numpy as np
>>> b = Bucket(np.float32)
>>> b.add(0, (2,)); b.add(3, (1,)); b.allocate()
>>> b.pack([np.ones(2, np.float32), None, None, np.full(1, 4.0, np.float32)], (), 0.5)
>>> b.buf
array([0.5, 0.5, 2. ], dtype=float32)
"""

from __future__ import annotations

import numpy as np


class Bucket:
    """One message: a flat buffer and the gradients it carries. ``items`` are ``(position,
    shape, dtype, view)``, ``view`` the gradient's place in ``buf``; ``grad`` is the part of
    ``buf`` that holds gradients (the first bucket has the header after it). A *direct*
    bucket carries one large gradient: averaged in place in the gradient's own array where
    the averager may (``in_place``), else in ``buf``, allocated when first needed."""

    def __init__(self, dtype, xp=np, direct: bool = False):
        self.dtype, self.xp, self.direct = np.dtype(dtype), xp, direct
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
        # scale 1: the gradients came scaled (fl.train), a plain copy
        s = None if scale == 1.0 else self.dtype.type(scale)
        copyto, multiply = self.xp.copyto, self.xp.multiply
        for pos, _, _, view in self.items:
            if pos in zeros:  # no gradient here on this rank
                view.fill(0)
            elif s is None:
                copyto(view, leaves[pos])
            else:
                multiply(leaves[pos], s, out=view)
