"""Pooling over the spatial axes of ``(N, C, *spatial)`` arrays (1, 2 or 3 dimensions): max,
mean, lp; adaptive max and mean; global max and mean.

Max pooling (``MAXPOOL``) is a running maximum over the window entries. Its rules find the
position of each window's first maximum (row-major window order, as PyTorch) from the kept
output, and route through ``POOL_SCATTER`` (the gradient placed at those positions) and
``POOL_GATHER`` (values read there); each of these two is the other's derivative, so max
pooling is differentiable to any order (the positions are constant where the derivative
exists). Adaptive max pooling finds its positions first and is a ``POOL_GATHER``.

Mean pooling is a window sum (``WINDOW_SUM``, padding counted as zeros as PyTorch's default
``count_include_pad=True``) divided by the window size; its transpose ``WINDOW_SUM_T`` spreads
each output back over its window. Adaptive mean pooling multiplies each spatial axis by an
averaging matrix; lp pooling is ``WINDOW_SUM(|x|^p)^(1/p)``.
"""

from __future__ import annotations

import math

import numpy as np

from fluxml._checks import flag, real_in
from fluxml._dtypes import working_float
from fluxml.ad.arrays import module_of
from fluxml.ad.core import COMPILING, first_order, raw, untraced
from fluxml.ad.define import defjvp, deflinear, defvjp, primitive
from fluxml.nnlib import windows as win

# --- gather and scatter at flat positions (the derivative pair of max pooling) -----------------


def _gather(x, idx, *, unique):
    return x.reshape(-1)[idx]


def _scatter(g, idx, *, shape, unique):
    xp = win.array_module(g)
    out = xp.zeros(win.count(shape), dtype=g.dtype)
    if unique:  # windows that do not overlap: every position is written at most once
        out[idx.reshape(-1)] = g.reshape(-1)
    else:
        xp.add.at(out, idx.reshape(-1), g.reshape(-1))
    return out.reshape(shape)


POOL_GATHER = primitive("pool_gather", _gather, keeps_inputs=False, keeps_output=False)
POOL_SCATTER = primitive("pool_scatter", _scatter, keeps_inputs=False, keeps_output=False)
defvjp(POOL_GATHER, lambda g, ans, x, idx, unique: POOL_SCATTER(g, idx, shape=x.shape,
                                                                unique=unique), None)
defvjp(POOL_SCATTER, lambda h, ans, g, idx, shape, unique: POOL_GATHER(h, idx, unique=unique),
       None)
deflinear(POOL_GATHER)
deflinear(POOL_SCATTER)


# --- max pooling: the maximum of each window; derivatives through gather and scatter ----------


def _maxpool(x, *, kernel, stride, pads, dilation):
    """The maximum of each window, one spatial axis at a time (a window's maximum is the
    maximum along its last axis of the maxima along the leading ones): the leading axes
    first, whose entries are whole contiguous rows, and the last, whose entries are
    strided, on the already smaller result; ``sum(kernel - 1)`` passes over shrinking
    arrays where the window's entries took ``prod(kernel) - 1`` strided ones over the
    output (measured on LeNet-5's 2x2 pools, batch 64: 0.13 ms against 0.16 on 6 x 28 x
    28, 0.078 against 0.114 on 16 x 10 x 10). A loop over the kernel's entries along each
    axis, each step vectorised over all windows."""
    xp = win.array_module(x)
    out = win.output_size(x.shape[2:], kernel, stride, dilation, pads)
    best = win.pad(x, pads, _lowest(x.dtype))
    for axis, (k, s, dl, m) in enumerate(zip(kernel, stride, dilation, out)):
        lead = (slice(None),) * (2 + axis)
        entries = [best[lead + (slice(j * dl, j * dl + s * (m - 1) + 1, s),)]
                   for j in range(k)]
        if k == 1:  # (a view: copied at the end)
            best = entries[0]
            continue
        best = xp.maximum(entries[0], entries[1])
        for entry in entries[2:]:
            xp.maximum(best, entry, out=best)
    # a new array of its own, never a view of x or of a step's result (a window of one entry)
    return best if best.base is None else best.copy()


def _max_windows(x, kernel, stride, pads, dilation):
    out = win.output_size(x.shape[2:], kernel, stride, dilation, pads)
    return win.windows(win.pad(x, pads, _lowest(x.dtype)), kernel, stride, dilation, out)


def _choices(x, best, *, kernel, stride, pads, dilation):
    """``(N, C, *out)`` small integers: the index, in the window's row-major order, of each
    window's first maximum ``best`` (as PyTorch picks it; constant where the derivative exists,
    so computed on the values): its first NaN where the maximum is NaN (PyTorch's CPU kernel
    takes every NaN it meets, so its last one: with several NaN in a window the two can differ),
    and never a padding slot (which holds the lowest value: a window whose entries are all that
    value picks its first real one; :func:`maxpool` refuses windows with no real entry). A
    loop over the kernel's entries, each step a few whole-array operations over every window;
    the NaN and padding checks only where some window needs them."""
    x, best = raw(x), raw(best)
    xp = win.array_module(x)
    cols = _max_windows(x, kernel, stride, pads, dilation)
    every = (slice(None), slice(None))
    offsets = list(np.ndindex(*kernel))
    nan = best.dtype.kind in "fc" and bool(xp.isnan(best).any())
    padded = any(lo or hi for lo, hi in pads) and bool((best == _lowest(best.dtype)).any())
    sel = xp.zeros(best.shape, dtype=np.int8 if len(offsets) <= 127 else np.intp)
    found = None
    for k, offset in enumerate(offsets):  # (copyto with where= is 5x slower)
        c = cols[every + offset]
        first = c == best
        if nan:
            first |= xp.isnan(c)
        if padded:
            first &= _real_slots(xp, x.shape[2:], best.shape[2:], offset, stride, pads,
                                 dilation)
        if found is None:
            found = first
            continue
        xp.greater(first, found, out=first)  # a match here, and not before: first & ~found
        found |= first
        sel += first * sel.dtype.type(k)
    return sel


def _real_slots(xp, size, out, offset, stride, pads, dilation):
    """Which windows (an ``out``-shaped mask, broadcast over N and C) read a real input entry,
    not padding, at window entry ``offset``."""
    d = len(size)
    mask = True
    for i, (n, o, k, s, (lo, _), dl) in enumerate(zip(size, out, offset, stride, pads,
                                                       dilation)):
        at = xp.arange(o) * s - lo + k * dl
        mask = mask & ((at >= 0) & (at < n)).reshape((o,) + (1,) * (d - 1 - i))
    return mask


def _maxpool_positions(x, best, kernel, stride, pads, dilation):
    """Flat positions in ``x`` of each window's first maximum (``best``): each window's start
    plus the offset of its :func:`_choices` entry, looked up in a table of the kernel's."""
    sel = _choices(x, best, kernel=kernel, stride=stride, pads=pads, dilation=dilation)
    x = raw(x)
    xp = win.array_module(x)
    d = len(kernel)
    steps = [win.count(x.shape[3 + i:]) for i in range(d)]  # element strides of spatial axes
    shift = xp.asarray([sum(k * dl * st for k, dl, st in zip(offset, dilation, steps))
                        for offset in np.ndindex(*kernel)], dtype=np.intp)
    n, c = x.shape[:2]
    start = xp.arange(n * c).reshape((n, c) + (1,) * d) * win.count(x.shape[2:])
    for i, (o, s, (lo, _), st) in enumerate(zip(sel.shape[2:], stride, pads, steps)):
        start = start + ((xp.arange(o) * s - lo) * st).reshape((o,) + (1,) * (d - 1 - i))
    return start + shift[sel]


def _disjoint(kernel, stride, dilation):
    """Windows that never overlap: each input position is the maximum of one window at most."""
    return all(s >= dl * (k - 1) + 1 for k, s, dl in zip(kernel, stride, dilation))


def _argmax_positions(x, ans, geo):
    """The positions of the maxima: computed on the values (under fl.compile, recorded as
    one call of the NumPy kernel)."""
    return untraced(_maxpool_positions, (x, ans), geo)


def _by_choice(geo):
    """Whether the rules go through the window choices (:func:`_choices`): disjoint windows
    without padding, outside ``fl.compile`` (whose backends lower the positions' pair)."""
    return (not COMPILING and not any(lo or hi for lo, hi in geo["pads"])
            and _disjoint(geo["kernel"], geo["stride"], geo["dilation"]))


def _maxpool_vjp(g, ans, x, **geo):
    if _by_choice(geo):
        if first_order(g, ans, x) and type(raw(g)) is np.ndarray:
            return _window_grad(g, x, ans, kernel=geo["kernel"], stride=geo["stride"],
                                dilation=geo["dilation"])
        return WINDOW_PUT(g, untraced(_choices, (x, ans), geo), shape=x.shape,
                          kernel=geo["kernel"], stride=geo["stride"], dilation=geo["dilation"])
    return POOL_SCATTER(g, _argmax_positions(x, ans, geo), shape=x.shape,
                        unique=_disjoint(geo["kernel"], geo["stride"], geo["dilation"]))


def _maxpool_jvp(t, ans, x, **geo):
    if _by_choice(geo):
        return WINDOW_TAKE(t, untraced(_choices, (x, ans), geo), kernel=geo["kernel"],
                           stride=geo["stride"], dilation=geo["dilation"])
    return POOL_GATHER(t, _argmax_positions(x, ans, geo),
                       unique=_disjoint(geo["kernel"], geo["stride"], geo["dilation"]))


_maxpool.fresh = True  # a new array: under fl.compile its buffer may be reused once dead
MAXPOOL = primitive("maxpool", _maxpool)  # the rules read the maxima
defvjp(MAXPOOL, _maxpool_vjp)
defjvp(MAXPOOL, _maxpool_jvp)


# --- disjoint windows: each window's choice (the derivative pair of max pooling, eagerly) --------
#
# Where the windows do not overlap and nothing is padded, the gradient of max pooling needs no
# flat positions: a small integer per window says which of its entries is the first maximum,
# and the gradient is written through one strided view of the input per window entry. Measured
# on LeNet-5's pools (batch 64): the positions' int64 arrays and the fancy-indexed scatter took
# several times the pooling's own forward pass.


def _entry_views(a, kernel, stride, dilation, out):
    """One strided view of ``a`` ``(N, C, *spatial)`` per window entry, ``(N, C, *out)``
    each: where that entry of every window lies."""
    every = (slice(None), slice(None))
    return [a[every + win.entry_region(offset, stride, dilation, out)]
            for offset in np.ndindex(*kernel)]


def _tiled(kernel, stride, dilation, out, shape) -> bool:
    """Is every entry of an input of ``shape`` in exactly one window: contiguous windows (a
    dilated one skips entries, unless it has one entry) that tile each axis?"""
    return all((k == 1 or dl == 1) and k == s and s * m == n
               for k, dl, s, m, n in zip(kernel, dilation, stride, out, shape[2:]))


def _window_put(g, sel, *, shape, kernel, stride, dilation):
    xp = win.array_module(g)
    out = g.shape[2:]
    dx = (xp.empty if _tiled(kernel, stride, dilation, out, shape) else xp.zeros)(shape, g.dtype)
    # g times the mask writes each view at once (masked copies are 5x slower), but an
    # infinite or NaN g times 0 would put NaN where the gradient is 0: np.where then
    finite = bool(xp.isfinite(g).all())
    for k, view in enumerate(_entry_views(dx, kernel, stride, dilation, out)):
        if finite:
            xp.multiply(g, sel == k, out=view)
        else:
            view[...] = xp.where(sel == k, g, 0)
    return dx


def _window_grad(g, x, best, *, kernel, stride, dilation):
    """First order, eagerly: ``WINDOW_PUT(g, _choices(x, best))`` (disjoint windows, no
    padding) in one loop over the window entries, each entry's mask of first maxima written
    at once (a match here and none before), and the last entry's taken as the windows with
    no match before (the maximum, not NaN, is one of the entries): about half the passes of
    the choices and the put, which measured ~2.5 ms of LeNet-5's 11 ms step."""
    out = g.shape[2:]
    dx = (np.empty if _tiled(kernel, stride, dilation, out, x.shape) else np.zeros)(x.shape,
                                                                                   g.dtype)
    finite = bool(np.isfinite(g).all())  # (g times a mask: inf or NaN times 0 is NaN)
    nan = best.dtype.kind in "fc" and bool(np.isnan(best).any())
    entries = _entry_views(x, kernel, stride, dilation, out)
    last = len(entries) - 1
    for k, (entry, view) in enumerate(zip(entries, _entry_views(dx, kernel, stride, dilation,
                                                                out))):
        if k == 0:
            found = mask = np.equal(entry, best)  # (this entry's first maxima: its matches)
            if nan:
                found |= np.isnan(entry)
            spare = np.empty_like(found)
        elif k == last and not nan:
            mask = np.logical_not(found, out=spare)
        else:
            mask = np.equal(entry, best, out=spare)
            if nan:
                mask |= np.isnan(entry)
            np.greater(mask, found, out=mask)  # a match here, and none before
            found |= mask
        if finite:
            np.multiply(g, mask, out=view)
        else:
            view[...] = np.where(mask, g, 0)
    return dx


_window_grad.fresh = True  # a new array (the numpy back end of fl.compile calls it)


def _window_take(h, sel, *, kernel, stride, dilation):
    xp = win.array_module(h)
    out = xp.empty(sel.shape, h.dtype)
    for k, view in enumerate(_entry_views(h, kernel, stride, dilation, sel.shape[2:])):
        xp.copyto(out, view, where=sel == k)  # every window has exactly one choice
    return out


WINDOW_PUT = primitive("window_put", _window_put, keeps_inputs=False, keeps_output=False)
WINDOW_TAKE = primitive("window_take", _window_take, keeps_inputs=False, keeps_output=False)
defvjp(WINDOW_PUT, lambda h, ans, g, sel, shape, **geo: WINDOW_TAKE(h, sel, **geo), None)
defvjp(WINDOW_TAKE, lambda g, ans, h, sel, **geo: WINDOW_PUT(g, sel, shape=h.shape, **geo),
       None)
deflinear(WINDOW_PUT)
deflinear(WINDOW_TAKE)


# --- window sums (the derivative pair of mean and lp pooling) ----------------------------------


def _window_sum(x, *, kernel, stride, pads, dilation):
    out = win.output_size(x.shape[2:], kernel, stride, dilation, pads)
    cols = win.windows(win.pad(x, pads), kernel, stride, dilation, out)
    return cols.sum(axis=tuple(range(2, 2 + len(kernel))))


def _window_sum_t(g, *, x_shape, kernel, stride, pads, dilation):
    xp = win.array_module(g)
    d = len(kernel)
    cols = xp.broadcast_to(g.reshape(g.shape[:2] + (1,) * d + g.shape[2:]),
                           g.shape[:2] + tuple(kernel) + g.shape[2:])
    size = win.padded_size(x_shape[2:], pads)
    xpad = win.col2im(cols, size, kernel, stride, dilation)
    return xp.ascontiguousarray(win.crop(xpad, pads, x_shape[2:]))


WINDOW_SUM = primitive("window_sum", _window_sum, keeps_inputs=False, keeps_output=False)
WINDOW_SUM_T = primitive("window_sum_t", _window_sum_t, keeps_inputs=False, keeps_output=False)
defvjp(WINDOW_SUM, lambda g, ans, x, **geo: WINDOW_SUM_T(g, x_shape=x.shape, **geo))
defvjp(WINDOW_SUM_T, lambda h, ans, g, x_shape, **geo: WINDOW_SUM(h, **geo))
deflinear(WINDOW_SUM)
deflinear(WINDOW_SUM_T)


# --- the functions users call ------------------------------------------------------------------

def maxpool(x, kernel, *, stride=None, pad=0, dilation=1):
    """Max pooling over windows of ``kernel`` (an int or one per spatial dimension) of ``x``
    ``(N, C, *spatial)``; ``stride`` defaults to the kernel, ``pad`` (as in
    :func:`fluxml.nnlib.conv`, at most half the window) is never chosen, and every window
    must hold an entry of the input (a dilated one can skip over it all: refused). The
    gradient goes to the first maximum of each window, as PyTorch's (a window with several
    NaN: to its first NaN, where PyTorch's goes to its last).

    >>> import numpy as np, fluxml as fl
    >>> fl.nnlib.maxpool(np.array([[[1.0, 3.0, 2.0, 2.0, 0.0]]]), 2)
    array([[[3., 2.]]])
    """
    _orderable("maxpool", x)
    g = _geometry("maxpool", x, kernel, stride, pad, dilation)
    kernel, stride, pads, dilation = g
    for k, dl, (lo, hi) in zip(kernel, dilation, pads):
        if 2 * max(lo, hi) > dl * (k - 1) + 1:
            raise ValueError(f"maxpool: pad {pads} must be at most half the window "
                             f"{tuple(kernel)} (dilation {tuple(dilation)}) in each dimension, "
                             "so that every window holds an entry of the input")
    out = win.output_size(x.shape[2:], kernel, stride, dilation, pads)
    for n, k, s, dl, (lo, _), m in zip(x.shape[2:], kernel, stride, dilation, pads, out):
        if not _windows_read_input(n, k, s, dl, lo, m):
            # (a dilated window can skip over the whole input and read only padding: its
            # maximum would be -inf and no input entry its argmax)
            raise ValueError(f"maxpool: pad {pads} with dilation {tuple(dilation)} leaves a "
                             f"window {tuple(kernel)} (stride {tuple(stride)}) over input "
                             f"{tuple(x.shape)} with padding only: every window must hold "
                             "an entry of the input")
    return MAXPOOL(x, kernel=kernel, stride=stride, pads=pads, dilation=dilation)


def meanpool(x, kernel, *, stride=None, pad=0, count_include_pad: bool = True):
    """Mean pooling. The padding counts as zeros in each mean (PyTorch's default
    ``count_include_pad=True``, Flux's ``MeanPool``); ``count_include_pad=False`` averages
    the input entries of each window only (NNlib's and PyTorch's option; a window of padding
    alone gives 0). ``stride`` defaults to the kernel.

    >>> import numpy as np, fluxml as fl
    >>> fl.nnlib.meanpool(np.array([[[1.0, 3.0, 2.0, 2.0, 0.0]]]), 2)
    array([[[2., 2.]]])
    >>> fl.nnlib.meanpool(np.array([[[1.0, 3.0, 2.0]]]), 2, pad=1, count_include_pad=False)
    array([[[1. , 2.5]]])
    """
    kernel, stride, pads, dilation = _geometry("meanpool", x, kernel, stride, pad, 1)
    total = WINDOW_SUM(x, kernel=kernel, stride=stride, pads=pads, dilation=dilation)
    if flag("meanpool", "count_include_pad", count_include_pad) or not any(
            lo or hi for lo, hi in pads):
        return total / win.count(kernel)  # a Python number: float32 stays float32
    # the number of input entries in each window: the window sum of ones (a constant)
    value = raw(x)  # (counts in x's real precision: float32 stays float32; integers: float64)
    ones = win.array_module(value).ones((1, 1) + tuple(value.shape[2:]),
                                        dtype=working_float(value.dtype))
    counts = _window_sum(ones, kernel=kernel, stride=stride, pads=pads, dilation=dilation)
    return total / np.maximum(counts, 1)


def lppool(x, p: float, kernel, *, stride=None, pad=0):
    """Power-average pooling: ``(sum over each window of |x|^p)^(1/p)`` (Flux's
    ``lpnormpool``; PyTorch's ``lp_pool`` for ``x >= 0`` or even ``p``).

    >>> import numpy as np, fluxml as fl
    >>> fl.nnlib.lppool(np.array([[[3.0, -4.0, 1.0, 0.0]]]), 2, 2)
    array([[[5., 1.]]])
    """
    # (finite: p = inf gave 1 for every window, silently, where the limit is the maximum)
    real_in("lppool", "p", p, 0, low_open=True)
    kernel, stride, pads, dilation = _geometry("lppool", x, kernel, stride, pad, 1)
    total = WINDOW_SUM(np.abs(x) ** p, kernel=kernel, stride=stride, pads=pads,
                       dilation=dilation)
    # a window of zeros (common after a ReLU): its root's derivative is infinite there and
    # the sum's 0, and their product was NaN for p > 1, poisoning every gradient it reached;
    # the root is taken of 1 there instead and its value replaced by 0, so the window's
    # gradient is 0 (PyTorch's). A NaN or infinite sum is no zero: it stays as it is.
    zero = total == 0
    xp = module_of(total)  # (the 0-d constants in total's library: CuPy's on a GPU)
    root = np.where(zero, xp.ones((), raw(total).dtype), total) ** (1.0 / p)
    return np.where(zero, xp.zeros((), raw(total).dtype), root)


def adaptive_maxpool(x, out_size):
    """Max pooling to a fixed output size: window ``i`` of an axis of length ``n`` covers
    ``floor(i n / m) <= j < ceil((i + 1) n / m)`` (PyTorch's ``adaptive_max_pool``).

    >>> import numpy as np, fluxml as fl
    >>> fl.nnlib.adaptive_maxpool(np.array([[[1.0, 3.0, 2.0, 5.0, 0.0]]]), 2)
    array([[[3., 5.]]])
    """
    _orderable("adaptive_maxpool", x)
    out = _adaptive_size("adaptive_maxpool", x, out_size)
    v = raw(x)
    xp = win.array_module(v)
    spans = [_adaptive_bounds(n, m) for n, m in zip(v.shape[2:], out)]
    tables = [_adaptive_table(start, end) for start, end in spans]
    d = len(out)
    index = []
    for i, t in enumerate(tables):  # t[o, k] broadcast to axes i (o) and d + i (k)
        shape = [1] * (2 * d)
        shape[i], shape[d + i] = t.shape
        index.append(xp.asarray(t.reshape(shape)))
    cols = v[(slice(None), slice(None)) + tuple(index)]  # (N, C, *out, *longest)
    longest = math.prod(t.shape[1] for t in tables)  # (not -1: the batch may be empty)
    first = xp.argmax(cols.reshape(v.shape[:2] + out + (longest,)), axis=-1)  # first on ties
    unique = all(n % m == 0 for n, m in zip(v.shape[2:], out))
    # the coordinate of window o's entry k is min(start[o] + k, end[o] - 1) (the tables'),
    # computed rather than looked up: k is traced under fl.compile, a table a constant
    bounds = [[xp.asarray(b) for b in span] for span in spans]
    positions = _positions(first, v.shape, [t.shape[1] for t in tables],
                           lambda i, o, k: np.minimum(bounds[i][0][o] + k, bounds[i][1][o] - 1))
    return POOL_GATHER(x, positions, unique=unique)


def adaptive_meanpool(x, out_size):
    """Mean pooling to a fixed output size, over PyTorch's ``adaptive_avg_pool`` windows.

    >>> import numpy as np, fluxml as fl
    >>> fl.nnlib.adaptive_meanpool(np.array([[[1.0, 3.0, 2.0, 5.0]]]), 2)
    array([[[2. , 3.5]]])
    """
    out = _adaptive_size("adaptive_meanpool", x, out_size)
    v = raw(x)
    xp = win.array_module(v)
    # the averaging weights in x's precision; integers are averaged in float64 (as meanpool)
    dtype = v.dtype if v.dtype.kind in "fc" else np.dtype(np.float64)
    y = x
    for i, (n, m) in enumerate(zip(v.shape[2:], out)):
        start, end = _adaptive_bounds(n, m)
        j = np.arange(n)[None, :]
        inside = (j >= start[:, None]) & (j < end[:, None])
        avg = xp.asarray(inside / inside.sum(axis=1, keepdims=True), dtype=dtype)
        y = np.moveaxis(np.moveaxis(y, 2 + i, -1) @ avg.T, -1, 2 + i)
    return y


def global_maxpool(x):
    """The maximum over all spatial positions: ``(N, C, *spatial) -> (N, C, 1, ...)``.

    >>> import numpy as np, fluxml as fl
    >>> fl.nnlib.global_maxpool(np.arange(8.0).reshape(1, 2, 4)).ravel()
    array([3., 7.])
    """
    win.check_input("global_maxpool", x)
    _orderable("global_maxpool", x)
    return maxpool(x, tuple(x.shape[2:]))


def global_meanpool(x):
    """The mean over all spatial positions: ``(N, C, *spatial) -> (N, C, 1, ...)``.

    >>> import numpy as np, fluxml as fl
    >>> fl.nnlib.global_meanpool(np.arange(8.0).reshape(1, 2, 4)).ravel()
    array([1.5, 5.5])
    """
    win.check_input("global_meanpool", x)
    return np.mean(x, axis=tuple(range(2, x.ndim)), keepdims=True)


# --- helpers ------------------------------------------------------------------------------------


def _geometry(fn, x, kernel, stride, pad, dilation):
    d = win.check_input(fn, x)
    kernel = win.spatial(kernel, d, "kernel", fn)
    stride = kernel if stride is None else win.spatial(stride, d, "stride", fn)
    dilation = win.spatial(dilation, d, "dilation", fn)
    pads = win.padding(pad, d, fn, size=x.shape[2:], kernel=kernel, stride=stride,
                       dilation=dilation)
    reach = tuple(dl * (k - 1) + 1 for k, dl in zip(kernel, dilation))
    padded = win.padded_size(x.shape[2:], pads)
    if any(r > p for r, p in zip(reach, padded)):
        raise ValueError(f"{fn}: window {kernel} (dilation {dilation}) is larger than the padded "
                         f"input {padded} (input {tuple(x.shape)}, pad {pads})")
    return kernel, stride, pads, dilation


def _windows_read_input(n, k, s, dl, lo, m) -> bool:
    """Whether each of the ``m`` windows along an axis of ``n`` input entries (``k`` entries
    ``dl`` apart, starting every ``s`` from ``-lo``) reads at least one input entry: its first
    entry at or after position 0 must lie before ``n``."""
    start = np.arange(m, dtype=np.int64) * s - lo
    first = np.maximum(-(start // dl), 0)  # ceil(-start / dl) for a negative start, else 0
    return bool(((first < k) & (start + first * dl < n)).all())


def _orderable(fn, x):
    """Refuse complex input by name: complex numbers have no maximum (NumPy's would be the
    lexicographic one, real part first, silently)."""
    dtype = getattr(raw(x), "dtype", None)
    if dtype is not None and dtype.kind == "c":
        raise TypeError(f"{fn}: complex input ({dtype}) has no maximum; pool np.abs(x), or the "
                        "real and imaginary parts apart")


def _adaptive_size(fn, x, out_size):
    d = win.check_input(fn, x)
    # an out_size above the input's size gives overlapping windows, as PyTorch's
    return win.spatial(out_size, d, "out_size", fn)


def _lowest(dtype):
    kind = np.dtype(dtype).kind
    if kind == "b":  # (the maximum of booleans: any)
        return False
    return -np.inf if kind in "fc" else np.iinfo(dtype).min


def _adaptive_bounds(n, m):
    """Start and end (exclusive) of PyTorch's adaptive windows of an axis: ``n`` into ``m``."""
    i = np.arange(m)
    return i * n // m, -(-(i + 1) * n // m)


def _adaptive_table(start, end):
    """PyTorch's adaptive windows of an axis (their :func:`_adaptive_bounds`) as ``(m,
    longest)`` coordinates; a shorter window repeats its last entry (harmless for a maximum)."""
    longest = int((end - start).max())
    return np.minimum(start[:, None] + np.arange(longest)[None, :], end[:, None] - 1)


def _positions(first, shape, window, coordinate):
    """Flat positions in an array of ``shape`` of the window entries ``first`` ``(N, C, *out)``
    (row-major within windows of ``window`` entries per axis); ``coordinate(i, o, k)`` is the
    coordinate along spatial axis ``i`` of window ``o``'s entry ``k`` (integer arrays)."""
    xp = win.array_module(first)
    d = len(window)
    n, c = shape[:2]
    flat = xp.arange(n * c).reshape((n, c) + (1,) * d)
    inner = win.count(window)
    for i, size in enumerate(window):
        inner //= size
        k = (first // inner) % size
        o = xp.arange(first.shape[2 + i]).reshape((-1,) + (1,) * (d - 1 - i))
        flat = flat * shape[2 + i] + coordinate(i, o, k)
    return flat
