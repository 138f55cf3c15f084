"""Sliding windows over the spatial axes of ``(N, C, *spatial)`` arrays: the geometry that
convolution and pooling share.

- input and argument checks (``stride=2`` -> ``(2, 2)``; padding as an int, per dimension,
  asymmetric ``(lo, hi)`` pairs or ``"same"``) with errors that name the function;
- :func:`windows`: a strided view ``(N, C, *kernel, *out)`` of a padded input (no copy:
  ``cols[n, c, *k, *o] = xpad[n, c, *(o * stride + k * dilation)]``);
- :func:`col2im`: its transpose, adding window entries back onto the padded input, one
  vectorised add per kernel offset (a loop over at most ``prod(kernel)`` offsets, never over
  pixels, batch or channels), each into the :func:`entry_region` of its offset.

Every function takes its array module from its input (NumPy or CuPy).

>>> import numpy as np
>>> x = np.arange(16.0).reshape(1, 1, 4, 4)
>>> windows(x, (2, 2), (2, 2), (1, 1), (2, 2))[0, 0, :, :, 0, 1]  # the top-right 2x2 window
array([[2., 3.],
       [6., 7.]])
"""

from __future__ import annotations

import itertools
import math
import threading

import numpy as np

from fluxml._checks import is_int
from fluxml._kernel_modules import kernel_module
from fluxml.ad.core import bottom


def array_module(*arrays):
    """CuPy when an argument is a CuPy array (or the module of another registered library
    the kernels run on: ``ArrayBackend.kernels``), else NumPy."""
    for a in arrays:
        t = type(a)
        module = None if t is np.ndarray else kernel_module(t)
        if module is not None:
            return module
    return np


def need_arrays(fn: str, **named) -> None:
    """A TypeError naming ``fn`` and the argument for each of ``named`` (None allowed) that is
    not an array (a list has no shape: the kernels failed on it with an AttributeError, or a
    message about its shape that showed the right one)."""
    for name, a in named.items():
        if a is not None and not hasattr(a, "shape"):
            raise TypeError(f"{fn}: {name} must be an array; got a {type(a).__name__} "
                            "(convert it with np.asarray)")


def check_input(fn: str, x) -> int:
    """The number of spatial dimensions of ``x`` ``(N, C, *spatial)``: 1, 2 or 3 (else an
    error naming ``fn``)."""
    need_arrays(fn, x=x)
    if getattr(x, "ndim", 0) not in (3, 4, 5):
        raise ValueError(f"{fn}: input must be (N, C, L), (N, C, H, W) or (N, C, D, H, W); got "
                         f"shape {tuple(np.shape(x))}")
    return x.ndim - 2


def fresh(y, x):
    """``y``, or a copy of it where it shares memory with ``x`` (``x`` itself, or a view: a
    reshape that needed no copy, a window of one entry): resampling and rearranging give new
    arrays, as PyTorch's do, in every case (compiled too). Views in a few cases only were
    read-only (writes into the result failed) or writable (writes into the result wrote into
    ``x``)."""
    a, b = bottom(y), bottom(x)
    # (under fl.compile, the abstract values' examples: they were computed as eagerly, so
    # they share memory where the eager arrays would; the copy is then recorded)
    a, b = getattr(a, "example", a), getattr(b, "example", b)
    xp = array_module(a)
    if type(a) is type(b) and (type(a) is np.ndarray or xp is not np) \
            and xp.may_share_memory(a, b):
        return np.copy(y)
    return y


def counted(*arrays):
    """``arrays`` (None allowed) as int64 where all are boolean, else as they are: the
    kernels that sum products (convolutions, fold) count booleans as 0 and 1, as np.sum
    does (a sum of boolean products is a logical or). Booleans are never traced."""
    given = [a for a in arrays if a is not None]
    if not given or any(getattr(a, "dtype", None) != np.bool_ for a in given):
        return arrays
    return tuple(None if a is None else a.astype(np.int64) for a in arrays)


def spatial(value, d: int, name: str, fn: str, minimum: int = 1) -> tuple:
    """``value`` as a tuple of ``d`` ints ``>= minimum``: an int is repeated."""
    if is_int(value):
        value = (int(value),) * d
    value = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    if len(value) != d or not all(is_int(v) and v >= minimum for v in value):
        kind = "positive" if minimum == 1 else f">= {minimum}"
        raise ValueError(f"{fn}: {name} must be an int or a tuple of {d} ints, {kind} (one per "
                         f"spatial dimension); got {value!r}")
    return tuple(int(v) for v in value)


def padding(pad, d: int, fn: str, *, size=None, kernel=None, stride=None, dilation=None):
    """``pad`` as ``d`` pairs ``(lo, hi)``. Accepted: an int; ``d`` ints (symmetric per
    dimension); ``2d`` ints ``(lo_1, hi_1, lo_2, hi_2, ...)``; ``d`` pairs; ``"same"``, which
    pads so that the output has ``ceil(size / stride)`` entries, the odd one on the high side
    (as PyTorch and TensorFlow do; it needs the size, kernel, stride and dilation). Flux's
    ``SamePad()`` pads ``dilation * (k - 1)`` in all, whatever the stride, the odd one on the
    low side: for an even kernel its outputs are ours shifted by one.

    >>> padding(1, 2, "conv"), padding((1, 2), 2, "conv"), padding((0, 1, 2, 3), 2, "conv")
    (((1, 1), (1, 1)), ((1, 1), (2, 2)), ((0, 1), (2, 3)))
    """
    if isinstance(pad, str):
        if pad != "same":
            raise ValueError(f"{fn}: pad must be an int, a tuple or 'same'; got {pad!r}")
        pads = []
        for n, k, s, dl in zip(size, kernel, stride, dilation):
            total = max((-(-n // s) - 1) * s + dl * (k - 1) + 1 - n, 0)
            pads.append((total // 2, total - total // 2))
        return tuple(pads)
    pads = None  # (True or 1.5 were taken as widths: each width is_int)
    if is_int(pad):
        pads = ((int(pad), int(pad)),) * d
    elif np.iterable(pad):
        pad = tuple(pad)
        if len(pad) == d and all(isinstance(p, (tuple, list)) and all(map(is_int, p))
                                 for p in pad):
            pads = tuple(tuple(p) for p in pad)
        elif len(pad) == d and all(is_int(p) for p in pad):
            pads = tuple((p, p) for p in pad)
        elif len(pad) == 2 * d and all(is_int(p) for p in pad):
            pads = tuple((pad[2 * i], pad[2 * i + 1]) for i in range(d))
    if pads is None or not all(len(p) == 2 and min(p) >= 0 for p in pads):
        raise ValueError(f"{fn}: pad must be 'same', a non-negative int, {d} ints, {2 * d} ints "
                         f"(lo, hi per dimension) or {d} pairs; got {pad!r}")
    return tuple((int(lo), int(hi)) for lo, hi in pads)


def output_size(size, kernel, stride, dilation, pads) -> tuple:
    """Window positions per spatial dimension (may be < 1: the caller reports it)."""
    return tuple((n + lo + hi - dl * (k - 1) - 1) // s + 1
                 for n, k, s, dl, (lo, hi) in zip(size, kernel, stride, dilation, pads))


def pad(x, pads, value=0):
    """``x`` with its spatial axes padded by ``pads`` with ``value`` (``x`` itself if none)."""
    if not any(lo or hi for lo, hi in pads):
        return x
    xp = array_module(x)
    shape = x.shape[:2] + tuple(n + lo + hi for n, (lo, hi) in zip(x.shape[2:], pads))
    out = xp.full(shape, value, dtype=x.dtype)
    out[(slice(None), slice(None)) + tuple(slice(lo, lo + n)
                                          for n, (lo, _) in zip(x.shape[2:], pads))] = x
    return out


def crop(x, pads, size):
    """The inverse of :func:`pad`: the interior of a padded array (a view)."""
    return x[(slice(None), slice(None)) + tuple(slice(lo, lo + n)
                                                for n, (lo, _) in zip(size, pads))]


def windows(xpad, kernel, stride, dilation, out):
    """A read-only strided view ``(N, C, *kernel, *out)`` of the padded input ``xpad``."""
    xp = array_module(xpad)
    sn, sc, *ss = xpad.strides
    strides = (sn, sc) + tuple(s * dl for s, dl in zip(ss, dilation)) + tuple(
        s * st for s, st in zip(ss, stride))
    shape = xpad.shape[:2] + tuple(kernel) + tuple(out)
    if xp is np:  # a read-only view: a write through overlapping windows would be wrong
        return np.lib.stride_tricks.as_strided(xpad, shape, strides, writeable=False)
    return xp.lib.stride_tricks.as_strided(xpad, shape, strides)


def col2im(cols, padded_size, kernel, stride, dilation):
    """The transpose of :func:`windows`: ``cols`` ``(N, C, *kernel, *out)`` summed back onto
    a zero array of the padded input's shape ``(N, C, *padded_size)``."""
    xp = array_module(cols)
    out = cols.shape[2 + len(kernel):]
    xpad = xp.zeros(cols.shape[:2] + tuple(padded_size), dtype=cols.dtype)
    every = (slice(None), slice(None))
    for offset in itertools.product(*(range(k) for k in kernel)):
        xpad[every + entry_region(offset, stride, dilation, out)] += cols[every + offset]
    return xpad


def entry_region(offset, stride, dilation, out) -> tuple:
    """Slices of the padded input's spatial axes where the window entry ``offset`` of each
    of the ``out`` windows lies (``o * stride + offset * dilation``), one per axis of
    ``offset`` (the leading axes when it is shorter).

    >>> entry_region((1, 0), (2, 2), (1, 1), (3, 3))
    (slice(1, 6, 2), slice(0, 5, 2))
    """
    return tuple(slice(k * dl, k * dl + s * (m - 1) + 1, s)
                 for k, dl, s, m in zip(offset, dilation, stride, out))


def padded_size(size, pads) -> tuple:
    return tuple(n + lo + hi for n, (lo, hi) in zip(size, pads))


def count(shape) -> int:
    return math.prod(shape)


_workspace = threading.local()


def workspace(shape, dtype, xp=np, slot: str = "cols"):
    """A scratch array for an intermediate that never leaves the kernel asking for it (the
    im2col columns, a padded block): one buffer per thread and ``slot``, grown when needed and
    reused by the next call, so that a training loop does not pay the page faults of a fresh
    large array at every step. Each call returns the same memory for the same slot: a kernel
    holds one workspace per slot at a time."""
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    buffers = getattr(_workspace, "buffers", None)
    if buffers is None:
        buffers = _workspace.buffers = {}
    buf = buffers.get(slot)
    if buf is None or array_module(buf) is not xp or buf.nbytes < nbytes:
        buf = buffers[slot] = xp.empty(nbytes, dtype=np.uint8)
    return buf[:nbytes].view(dtype).reshape(shape)


# the largest intermediate that :func:`scratch` (and the LSTM kernel's scratch, several arrays
# in one slot) keeps in a reused buffer; above, a fresh array, so that a large call does not
# keep its memory for the rest of the process. One limit for every slot: at 3 us per 4 KiB
# page, a fresh 64 MiB costs ~50 ms of page faults per call, about a tenth of the work of an
# LSTM step that needs that much, while a kept one costs its memory (per thread and slot)
SCRATCH_BYTES = 64 << 20


def scratch(shape, dtype, xp=np, slot: str = "scratch"):
    """An array for an intermediate that never leaves the function asking for it: the
    :func:`workspace` of ``slot`` up to ``SCRATCH_BYTES``, else a fresh one. A fresh array
    of a megabyte or more costs page faults on its first writes, and more than the arithmetic
    done in it where that arithmetic is one pass (measured: 3 us per 4 KiB page on the
    project's machine, ten times the pass)."""
    dtype = np.dtype(dtype)
    if math.prod(shape) * dtype.itemsize > SCRATCH_BYTES:
        return xp.empty(shape, dtype)
    return workspace(shape, dtype, xp, slot)


# the length of the zeros that :func:`relu_in_place` compares against: 64 KiB of float32,
# which stay in the cache (measured on a 150,528-entry block: rows of 16,384 0.016 ms, of
# 1,024 0.023)
RELU_ROW = 1 << 14


def relu_in_place(a, xp=np):
    """``max(a, 0)`` written into ``a`` (a real array), as ``xp.maximum(a, 0, out=a)``
    computes it bit for bit (NaN kept, -0.0 as it gives). On a contiguous NumPy array the
    zero is a row of zeros broadcast over rows of ``a``: NumPy's maximum runs its vector
    loop only where both operands step through memory, and on a scalar operand ran 3 times
    slower (measured, NumPy 2.4, float32: 0.052 ms against 0.016 on LeNet's first layer's
    block of 32 x 6 x 784)."""
    if xp is not np or not a.flags.c_contiguous or a.size == 0:
        return xp.maximum(a, 0, out=a)
    flat = a.reshape(-1)
    width = min(flat.size, RELU_ROW)
    zeros = workspace((width,), a.dtype, np, "zeros")
    zeros.fill(0)
    whole = flat.size - flat.size % width
    body = flat[:whole].reshape(-1, width)
    np.maximum(body, zeros, out=body)
    if whole < flat.size:
        np.maximum(flat[whole:], zeros[:flat.size - whole], out=flat[whole:])
    return a
