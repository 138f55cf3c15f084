"""The three convolution kernels (forward, input gradient, weight gradient) on raw arrays.

They work on blocks of samples of ``(N, C, *spatial)`` (batch first, as the arrays come)
whose im2col columns fit a cache-sized budget: each block is padded, its columns built,
multiplied with one (batched) matrix product, and, for the input gradient, added back. The
columns of a whole batch are ``prod(kernel)`` times the input, written to memory and read
back; a block's columns stay in the cache between the copy that writes them and the product
that reads them (measured: a 40 MB copy runs at a third of the speed of a 2 MB one). The loop
is over these blocks (each a few large NumPy operations), never over pixels or channels; on a
GPU there is one block.

Columns are laid out per sample, ``(B, C, *kernel, *out)``, so that the product with the
weight ``(O, C * K)`` gives ``(B, O, *out)``: the output in NCHW order, with no transposed
copy. They are built in two strided copies: the windows of the last spatial axis first
(``(B, C, k_last, *padded[:-1], out_last)``), then those of the other axes from that. Each
copy then moves runs of whole rows (``out_last`` entries, or whole ``out`` planes with unit
strides) where the single strided copy moves ``out_last`` entries per kernel entry: fewer,
longer runs, and twice as fast in the measurements. col2im is the transpose: one add per
entry of ``kernel[:-1]``, then one per entry of ``k_last`` (10 adds for a 5x5 kernel, not 25).

The input gradient, with unit strides, is either the forward convolution of the cotangent,
padded by the kernel's reach, with the flipped kernel (inputs and outputs swapped: when its
columns are no larger than col2im's, as its product has the forward's efficient shape), or a
product and a col2im laid out channel-major across the block (:func:`_data_flat`). With
other strides it is the product and the two-stage col2im above.

A block holds one sample where one sample's columns pass the budget: the loop is then over
samples, each step a few operations on a megabyte or more (Python's share is negligible).
"""

from __future__ import annotations

import math

import numpy as np

from fluxml.nnlib import windows as win

# a block's im2col columns take at most this many bytes (unless one sample needs more): they
# stay in the cache between the copy that writes them and the product that reads them
BLOCK_BYTES = 3 << 20


class Geometry:
    """Sizes shared by the three kernels of one convolution of ``x`` ``(N, C, *spatial)`` by a
    weight ``(O, C / groups, *kernel)``."""

    def __init__(self, x_shape, w_shape, stride, pads, dilation, groups):
        self.n, self.c = x_shape[:2]
        self.spatial = tuple(x_shape[2:])
        self.o = w_shape[0]
        self.kernel = tuple(w_shape[2:])
        self.k = math.prod(self.kernel)
        self.stride, self.pads, self.dilation, self.groups = stride, pads, dilation, groups
        self.padded = win.padded_size(self.spatial, pads)
        self.out = win.output_size(self.spatial, self.kernel, stride, dilation, pads)
        self.positions = math.prod(self.out)

    def blocks(self, itemsize, xp, positions=None):
        """``(start, stop)`` of each block of samples (``positions``: columns per sample)."""
        if xp is not np:  # one block on a GPU: few large kernels beat cache-sized ones
            return [(0, self.n)]
        per_sample = max(1, self.c * self.k * (positions or self.positions) * itemsize)
        step = max(1, min(self.n, BLOCK_BYTES // per_sample))
        return [(a, min(a + step, self.n)) for a in range(0, self.n, step)]

    def interior(self):
        """The input inside a padded block."""
        return (slice(None), slice(None)) + tuple(
            slice(lo, lo + m) for m, (lo, _) in zip(self.spatial, self.pads))

    def stage_shape(self, b):
        """The first stage of im2col: the windows of the last spatial axis."""
        return (b, self.c, self.kernel[-1]) + self.padded[:-1] + (self.out[-1],)


def _padded(x, geo, a, b, xp):
    """Samples ``a:b`` of ``x`` zero-padded (``x``'s own block without padding)."""
    if geo.padded == geo.spatial:
        return x[a:b]
    buf = win.workspace((b - a, geo.c) + geo.padded, x.dtype, xp, "pad")
    buf.fill(0)
    buf[geo.interior()] = x[a:b]
    return buf


def _strided(xp, a, shape, strides):
    if xp is np:  # read-only: a write through overlapping windows would be wrong
        return np.lib.stride_tricks.as_strided(a, shape, strides, writeable=False)
    return xp.lib.stride_tricks.as_strided(a, shape, strides)


def _columns(xpad, geo, xp):
    """im2col of a padded block ``(B, C, *padded)``: ``(B, groups, C / groups * K, P)`` in the
    workspace, the rows in the weight's ``(C, *kernel)`` order."""
    b, c = xpad.shape[:2]
    kernel, stride, dilation, out = geo.kernel, geo.stride, geo.dilation, geo.out
    sb, sc, *ss = xpad.strides
    first = _strided(xp, xpad, geo.stage_shape(b), (sb, sc, ss[-1] * dilation[-1])
                     + tuple(ss[:-1]) + (ss[-1] * stride[-1],))
    if len(kernel) == 1:
        cols = win.workspace(first.shape, xpad.dtype, xp, "cols")
        cols[...] = first
    else:
        stage = win.workspace(first.shape, xpad.dtype, xp, "stage")
        stage[...] = first
        tb, tc, tk, *ts = stage.strides
        cols = win.workspace((b, c) + kernel[:-1] + (kernel[-1],) + out, xpad.dtype, xp, "cols")
        cols[...] = _strided(
            xp, stage, cols.shape,
            (tb, tc) + tuple(s * dl for s, dl in zip(ts[:-1], dilation[:-1])) + (tk,)
            + tuple(s * st for s, st in zip(ts[:-1], stride[:-1])) + (ts[-1],))
    return cols.reshape(b, geo.groups, (c // geo.groups) * geo.k, geo.positions)


def _col2im(cols, geo, xp):
    """The transpose of :func:`_columns`: ``cols`` ``(B, C, *kernel, *out)`` added onto a
    zero padded block ``(B, C, *padded)`` (in the workspace)."""
    b = cols.shape[0]
    kernel, stride, dilation, out = geo.kernel, geo.stride, geo.dilation, geo.out
    every = (slice(None), slice(None))
    if len(kernel) == 1:
        stage = cols
    else:
        stage = win.workspace(geo.stage_shape(b), cols.dtype, xp, "stage")
        stage.fill(0)
        for offset in np.ndindex(*kernel[:-1]):
            region = tuple(slice(k * dl, k * dl + s * (m - 1) + 1, s)
                           for k, dl, s, m in zip(offset, dilation, stride, out))
            stage[every + (slice(None),) + region] += cols[every + offset]
    acc = win.workspace((b, geo.c) + geo.padded, cols.dtype, xp, "pad")
    acc.fill(0)
    lead = (slice(None),) * (len(kernel) - 1)
    for j in range(kernel[-1]):
        last = slice(j * dilation[-1], j * dilation[-1] + stride[-1] * (out[-1] - 1) + 1,
                     stride[-1])
        acc[every + lead + (last,)] += stage[every + (j,)]
    return acc


def forward(x, w, geo):
    """``conv(x, w)``: ``(N, O, *out)``."""
    xp = win.array_module(x, w)
    dtype = xp.result_type(x.dtype, w.dtype)
    x, w = x.astype(dtype, copy=False), w.astype(dtype, copy=False)
    og = geo.o // geo.groups
    wm = w.reshape(geo.groups, og, -1)
    y = xp.empty((geo.n, geo.o) + geo.out, dtype=dtype)
    for a, b in geo.blocks(dtype.itemsize, xp):
        cols = _columns(_padded(x, geo, a, b, xp), geo, xp)
        xp.matmul(wm, cols, out=y[a:b].reshape(b - a, geo.groups, og, geo.positions))
    return y


def data(g, w, geo):
    """The input gradient (the transposed convolution) of ``conv(x, w)`` for the output
    cotangent ``g``: ``(N, C, *spatial)``."""
    xp = win.array_module(g, w)
    dtype = xp.result_type(g.dtype, w.dtype)
    g, w = g.astype(dtype, copy=False), w.astype(dtype, copy=False)
    d, og, cg = len(geo.kernel), geo.o // geo.groups, geo.c // geo.groups
    reach = [dl * (k - 1) for k, dl in zip(geo.kernel, geo.dilation)]
    if (all(s == 1 for s in geo.stride) and og <= cg
            and all(r >= max(lo, hi) for r, (lo, hi) in zip(reach, geo.pads))):
        flipped = xp.flip(w, axis=tuple(range(2, 2 + d)))
        wt = flipped.reshape((geo.groups, og, cg) + geo.kernel).swapaxes(1, 2).reshape(
            (geo.c, og) + geo.kernel)
        pads = tuple((r - lo, r - hi) for r, (lo, hi) in zip(reach, geo.pads))
        return forward(g, wt, Geometry(g.shape, wt.shape, geo.stride, pads, geo.dilation,
                                       geo.groups))
    wt = w.reshape(geo.groups, og, cg * geo.k).swapaxes(-1, -2)
    if all(s == 1 for s in geo.stride):
        return _data_flat(g, xp.ascontiguousarray(wt), geo, xp)
    dx = xp.empty((geo.n, geo.c) + geo.spatial, dtype=dtype)
    for a, b in geo.blocks(dtype.itemsize, xp):
        gb = g[a:b].reshape(b - a, geo.groups, og, geo.positions)
        cols = win.workspace((b - a, geo.groups, cg * geo.k, geo.positions), dtype, xp, "cols")
        xp.matmul(wt, gb, out=cols)
        acc = _col2im(cols.reshape((b - a, geo.c) + geo.kernel + geo.out), geo, xp)
        dx[a:b] = acc[geo.interior()]
    return dx


def _data_flat(g, wt, geo, xp):
    """col2im with unit strides, channel-major over the block: the padded block of the input
    gradient is ``(C, B * prod(padded))``, flattened across samples, and each output position
    reaches it through one offset per kernel entry. The cotangent is laid out on the same
    grid (zeros off the outputs), so each kernel entry adds one long row per channel: a few
    large adds, where per-sample rows make thousands of short ones (measured: half the
    time, for a product over the grid's extra positions)."""
    dtype = wt.dtype
    size = math.prod(geo.padded)
    offsets = _offsets(geo.padded, geo.kernel, geo.dilation)
    dx = xp.empty((geo.n, geo.c) + geo.spatial, dtype=dtype)
    for a, b in geo.blocks(dtype.itemsize, xp, size):
        length = (b - a) * size - offsets[-1]
        grid = win.workspace((geo.o, b - a) + geo.padded, dtype, xp, "grad")
        grid.fill(0)
        grid[(slice(None),) * 2 + tuple(slice(0, m) for m in geo.out)] = g[a:b].swapaxes(0, 1)
        grid = grid.reshape(geo.groups, geo.o // geo.groups, -1)[:, :, :length]
        cols = win.workspace((geo.groups, wt.shape[1], length), dtype, xp, "cols")
        xp.matmul(wt, grid, out=cols)
        cols = cols.reshape(geo.c, geo.k, length)
        acc = win.workspace((geo.c, (b - a) * size), dtype, xp, "pad")
        acc.fill(0)
        for j, offset in enumerate(offsets):
            acc[:, offset:offset + length] += cols[:, j]
        dx[a:b] = acc.reshape((geo.c, b - a) + geo.padded).swapaxes(0, 1)[geo.interior()]
    return dx


def _offsets(size, kernel, dilation):
    """Flat offset of each kernel entry in a padded array of spatial shape ``size``, in the
    kernel's row-major order (the last is the largest)."""
    offsets = [0]
    for i, (k, dl) in enumerate(zip(kernel, dilation)):
        step = dl * math.prod(size[i + 1:])
        offsets = [a + j * step for a in offsets for j in range(k)]
    return offsets


def filter(x, g, geo):
    """The weight gradient of ``conv(x, w)`` for the output cotangent ``g``: ``(O, C / groups,
    *kernel)``, each block's columns contracted with its cotangent over samples and
    positions."""
    xp = win.array_module(x, g)
    dtype = xp.result_type(x.dtype, g.dtype)
    x, g = x.astype(dtype, copy=False), g.astype(dtype, copy=False)
    og, cg = geo.o // geo.groups, geo.c // geo.groups
    dw = xp.zeros((geo.groups, og, cg * geo.k), dtype=dtype)
    for a, b in geo.blocks(dtype.itemsize, xp):
        cols = _columns(_padded(x, geo, a, b, xp), geo, xp)
        gb = g[a:b].reshape(b - a, geo.groups, og, geo.positions)
        dw += xp.matmul(gb, cols.swapaxes(-1, -2)).sum(axis=0)
    return dw.reshape((geo.o, cg) + geo.kernel)
