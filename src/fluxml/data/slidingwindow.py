"""``slidingwindow``: the windows of ``size`` consecutive observations of a data set, every
``stride`` observations, as MLUtils' ``slidingwindow``, batch first and 0-based.

>>> import numpy as np, fluxml as fl
>>> windows = fl.slidingwindow(np.arange(10, 30), size=6, stride=3)
>>> len(windows), windows[0].tolist(), windows[-1].tolist()
(5, [10, 11, 12, 13, 14, 15], [22, 23, 24, 25, 26, 27])
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from fluxml._checks import is_int, positive_int, shown
from fluxml.data.loader import counted, getobs


class SlidingWindow:
    """The windows of ``slidingwindow(data, size, stride)``: a lazy sequence (``len``,
    indexing, iteration); window ``i`` is ``getobs(data, slice(i * stride, i * stride +
    size))``, made when it is read (a view of an array). An int index gives one window (a
    negative one counts from the end); a slice or a sequence of ints gives a list of windows
    (MLUtils' vector of windows). As a ``DataLoader``'s data, each window is one
    observation: a batch stacks ``batchsize`` windows, ``(batchsize, size, ...)``."""

    def __init__(self, data, size: int, stride: int, count: int):
        self.data = data
        self.size = size
        self.stride = stride
        self.count = count

    def __len__(self) -> int:
        return self.count

    def window(self, i: int) -> range:
        """The positions of the observations in window ``i`` (negative: from the end)."""
        if not is_int(i) or not -self.count <= i < self.count:
            raise IndexError(f"slidingwindow: window {i!r} of {self.count} (0 .. "
                             f"{self.count - 1}, or negative from the end)")
        start = (i % self.count) * self.stride
        return range(start, start + self.size)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self._one(j) for j in range(self.count)[i]]
        if is_int(i):
            return self._one(i)
        idx = np.asarray(i)
        if idx.ndim == 1 and (idx.dtype.kind in "iu" or idx.size == 0):
            return [self._one(j) for j in idx.tolist()]
        raise TypeError(f"slidingwindow: a window's index must be an int, a slice or a "
                        f"sequence of ints; got {shown(i)}")

    def _one(self, i: int):
        r = self.window(i)
        return getobs(self.data, slice(r.start, r.stop))

    def __iter__(self) -> Iterator:
        return (self._one(i) for i in range(self.count))

    def __repr__(self) -> str:
        shape = getattr(self.data, "shape", None)
        what = f"{type(self.data).__name__}{tuple(shape) if shape is not None else ''}"
        return f"slidingwindow({what}, size={self.size}, stride={self.stride})"


def slidingwindow(data, size: int, stride: int = 1) -> SlidingWindow:
    """The windows of ``size`` consecutive observations of ``data`` (along the first axis; a
    tuple or dict of arrays windowed together; any data set a ``DataLoader`` takes), one
    starting every ``stride`` observations, as a lazy sequence (``SlidingWindow``). Only
    complete windows are kept, as MLUtils': ``(n - size) // stride + 1`` of ``n``
    observations, so up to ``stride - 1`` observations at the end may be in none.

    >>> import numpy as np, fluxml as fl
    >>> x = np.arange(12).reshape(6, 2)
    >>> w = fl.slidingwindow(x, size=2, stride=2)
    >>> len(w), w[1].tolist()
    (3, [[4, 5], [6, 7]])
    >>> xb, yb = next(iter(fl.DataLoader(fl.slidingwindow((x, np.arange(6)), 3), batchsize=4)))
    >>> xb.shape, yb.tolist()
    ((4, 3, 2), [[0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 5]])
    """
    size = positive_int("slidingwindow", "size", size)
    stride = positive_int("slidingwindow", "stride", stride)
    n = counted("slidingwindow", data)
    if size > n:
        raise ValueError(f"slidingwindow: size must be at most the number of observations, "
                         f"{n}; got {size}")
    return SlidingWindow(data, size, stride, (n - size) // stride + 1)
