"""The three convolution kernels (forward, input gradient, weight gradient) on raw arrays.

They work on blocks of samples of ``(N, C, *spatial)`` (batch first, as the arrays come)
whose im2col columns fit a cache-sized budget: each block is padded, its columns built,
multiplied with one (batched) matrix product, and, for the input gradient, added back. The
columns of a whole batch are ``prod(kernel)`` times the input, written to memory and read
back; a block's columns stay in the cache between the copy that writes them and the product
that reads them (measured: a 40 MB copy runs at a third of the speed of a 2 MB one). The loop
is over these blocks (each a few large NumPy operations), never over pixels or channels; on a
GPU there is one block.

The columns are built and added back by :mod:`fluxml.nnlib.im2col`.
With unit strides, on rows wide beside the kernel, the forward takes its columns on a flat grid
instead (:func:`_forward_grid`): one copy of runs as long as a sample's padded input, for a
product over a few more positions than the outputs (``GRID_SHARE``, ``GRID_WORK``) and a copy
of the outputs out of it (so not where the outputs outnumber the columns' rows,
``GRID_DEPTH``). In 2 dimensions with a unit stride down the rows, kernels of
``ROWS_KERNEL`` rows or more and products ``ROWS_DEPTH`` deep take one product per kernel
row instead (:func:`_forward_rows`), each reading the first stage as it is
(:func:`im2col.row_columns`): the second stage is never written; so does the weight gradient where
a sample's product for a kernel row is small (``SMALL_FILTER``, :func:`_filter_rows`; with
OpenBLAS's AVX2 kernels, only where it is ``ROWS_DEPTH`` wide too). Else,
with few output positions per sample (``NARROW``), the weight gradient lays the columns out
channel-major across the block (:func:`im2col.columns` ``across``): one product over the block's
samples and positions, not one narrow product a sample.

The input gradient, with unit strides, is either the forward convolution of the cotangent,
padded by the kernel's reach, with the flipped kernel (inputs and outputs swapped: when its
columns are no larger than col2im's, as its product has the forward's efficient shape, or
when it takes Winograd's algorithm, :mod:`fluxml.nnlib.winograd`, which has no columns), or
one of two products: the last kernel axis folded into the product (:func:`_data_folded`,
where it writes clearly less, see :func:`_folds`; one product per sample where that is
small, ``SMALL_PRODUCT``, and the BLAS takes small products directly, else one over the
block, channel-major), or the product and a
col2im of long flat rows laid out channel-major across the block (:func:`_data_flat`). With
other strides it is the product and the two-stage col2im above.

A block holds one sample where one sample's columns pass the budget: the loop is then over
samples, each step a few operations on a megabyte or more (Python's share is negligible).
"""

from __future__ import annotations

import math

import numpy as np

from fluxml.backend import threads
from fluxml.nnlib import im2col, winograd
from fluxml.nnlib import windows as win

# a block's im2col columns take at most this many bytes (unless one sample needs more): they
# stay in the cache between the copy that writes them and the product that reads them
BLOCK_BYTES = 3 << 20

# the forward's columns of one part (:func:`_row_parts`) take at most this many bytes where
# one sample's columns pass it: about a core's L2 cache
PART_BYTES = 1 << 20
# ... but with at least this many positions: narrower products cost more than the cache
# saves (measured on 128 => 128 3x3 on 16x16: two parts of 128 positions 1% slower than one)
PART_POSITIONS = 512

# below this many output positions per sample, the weight gradient lays a block's columns
# out channel-major across its samples (:func:`im2col.columns` ``across``): one product summing over
# the whole block, where per-sample products this narrow run at a fraction of the BLAS's speed
# (measured on LeNet's 6 => 16 layer, 100 positions: 0.96 ms against 1.06 ms). The forward
# keeps per-sample columns: there the wider product's gain went to the transposed copy of
# its result and a slower copy of the columns (measured equal on 6 => 16, slower on 1 => 6)
NARROW = 512

# the input gradient (unit strides) takes :func:`_data_folded` over :func:`_data_flat` where
# the entries it writes per sample are at most this fraction of the flat path's (a measured
# crossover: its product has fewer rows, so it needs the clear margin to win; 1 => 6 5x5 on
# 28x28 with "same" padding, about equal by this count, is faster flat; 6 => 16 5x5 on 14x14,
# half, is 1.3x faster folded)
FOLD_SHARE = 0.75

# the folded input gradient (:func:`_data_folded`) runs one product per sample where one
# sample's product has at most this many multiply-adds, the BLAS runs on one thread and
# takes small products without packing their operands (OpenBLAS's AVX-512 kernels:
# ``threads.small_products``), else one over the block (measured at two threads: the
# block's product 6-12% faster on LeNet's 6 => 16 and 8 => 16 5x5 on 16x16; at one, per
# sample 1.2x with kernels that take small products directly, 0.92x with OpenBLAS's AVX2
# ones, which pack every product: LeNet's 6 => 16 0.75 ms against 0.69 for the block)
SMALL_PRODUCT = 1 << 20

# the 2-dimensional forward with a unit stride down the rows takes one product per kernel
# row (:func:`_forward_rows`) for kernels of at least ROWS_KERNEL rows whose products
# (``C / groups * k_last`` deep) are at least ROWS_DEPTH deep. Measured on one core, with
# bias and ReLU, against the two-stage columns or the grid: 1.05-1.4 times as fast on 5x5
# and 7x7 kernels with 8 to 64 input channels (16 => 32 5x5 on 16x16: 2.9 ms against 3.8;
# 8 => 16 5x5 on 24x24: 2.0 against 2.8; 16 => 16 7x7 on 32x32: 8.9 against 11.6), about
# equal on LeNet's 6 => 16 (30 deep) and on 3x3 kernels (0.91-1.02), slower with few
# channels (1 => 6 5x5: 0.86): the products are added up, and shallow ones run slowly
ROWS_KERNEL = 5
ROWS_DEPTH = 40

# the weight gradient in 2 dimensions with a unit stride down the rows takes its columns a
# kernel row at a time (:func:`_filter_rows`) where one sample's product for a kernel row
# has at most this many multiply-adds: products that OpenBLAS's AVX-512 kernels run unpacked
# (with its AVX2 kernels, only where they are ROWS_DEPTH wide too: :func:`_filter_by_rows`)
SMALL_FILTER = 1 << 19

# OpenBLAS's kernel families whose float32 products run faster with the weight gradient's
# output channels padded to a multiple of 8 (:func:`_product_width`): its AVX2 ones, which
# Zen shares with Haswell
PAD_CORES = frozenset({"haswell", "zen"})

# the forward folds the bias into its product (a row of ones under the columns) where the
# columns have at most this many rows (C * prod(kernel)), else adds it to the output.
# Measured on one core: folded 6% faster on LeNet's layers (150 and 25 rows) and 3 => 64
# 3x3 (27 rows: 20%), added 3% faster on 64 => 64 3x3 on 32x32 (576 rows) and 7% on
# 128 => 128 on 16x16 (1152): the ones row makes each sample's columns a row longer, which
# the copy into them and the product over them pay more for than one pass over the output
FOLD_ROWS = 256

# the forward with unit strides takes its columns on the flat grid (:func:`_forward_grid`)
# where the grid has at most GRID_SHARE times the output positions and its extra positions
# cost at most GRID_WORK multiply-adds per entry of the columns (output channels per group
# times the extra share): the copy it saves costs about that. Measured crossovers, one
# core: faster on the grid 64 => 64 3x3 on 32x32 (1.06 times the positions, 3.9 per
# entry: 8-12%), 32 => 32 on 64x64 (1.03, 1.0: 15-25%), 256 => 64 on 32x32 (3.9: 17%),
# depthwise 64 on 32x32 (0.06: 35%); slower 128 => 128 (7.8: 3-8%) and 256 => 256 on 32x32
# (15.6: 4%), 64 => 64 on 20x20 (1.095, 6.1: 7%), and LeNet's 1 => 6 (1.14, 0.8: 4-8%)
# and 6 => 16 (1.36, 5.8: 2%)
GRID_SHARE = 1.1
GRID_WORK = 4

# ... and where its columns have at least GRID_DEPTH rows (C / groups * prod(kernel)) per
# output channel of a group: the grid saves copying the columns but copies the outputs out
# of its rows, which costs more where the outputs outnumber the columns' rows. Measured, one
# core (OpenBLAS's Haswell kernels), grid against columns: 3 => 64 3x3 on 32x32 (27 rows for
# 64 channels) 1.29 times the time, 3 => 32 1.20, 4 => 64 1.21, 8 => 64 1.13, 16 => 64 1.07
# (2.25 rows a channel), 3 => 16 on 64x64 1.07 (1.7); 3 => 8 on 64x64 0.93 (3.4), 32 => 32
# on 64x64 0.91 (9), 64 => 64 on 32x32 1.0 (9)
GRID_DEPTH = 3


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

    def blocks(self, itemsize, xp, positions=None, rows=None, budget=None):
        """``(start, stop)`` of each block of samples (``positions``: columns per sample,
        ``rows``: rows of the columns, ``C * K`` unless given; ``budget``: a block's bytes,
        ``BLOCK_BYTES`` unless given)."""
        if self.n == 0:  # an empty batch: nothing to compute (outputs are empty, sums zero)
            return []
        if xp is not np:  # one block on a GPU: few large kernels beat cache-sized ones
            return [(0, self.n)]
        per_sample = max(1, (rows or self.c * self.k) * (positions or self.positions) * itemsize)
        budget = BLOCK_BYTES if budget is None else budget
        step = max(1, min(self.n, budget // per_sample))
        step = -(-self.n // -(-self.n // step))  # blocks of equal size (64 = 32 + 32, not 52 + 12)
        return [(a, min(a + step, self.n)) for a in range(0, self.n, step)]

    def part(self, r0, r1):
        """The geometry of output rows ``r0:r1`` (the first spatial axis): a convolution,
        without padding, of the padded rows that :meth:`window` takes (``self`` for all
        rows)."""
        if (r0, r1) == (0, self.out[0]):
            return self
        shape = (self.n, self.c, self._reach(r1) - r0 * self.stride[0]) + self.padded[1:]
        return Geometry(shape, (self.o, self.c // self.groups) + self.kernel, self.stride,
                        ((0, 0),) * len(self.kernel), self.dilation, self.groups)

    def window(self, rows):
        """The padded input rows that output rows ``rows`` read (index of a padded block)."""
        if (rows.start, rows.stop) == (0, self.out[0]):
            return slice(None)
        return (slice(None), slice(None), slice(rows.start * self.stride[0],
                                                self._reach(rows.stop)))

    def _reach(self, r1):
        """One past the last padded row that output rows ``< r1`` read."""
        return (r1 - 1) * self.stride[0] + self.dilation[0] * (self.kernel[0] - 1) + 1

    def interior(self):
        """The input inside a padded block."""
        return (slice(None), slice(None)) + tuple(
            slice(lo, lo + m) for m, (lo, _) in zip(self.spatial, self.pads))

    def stage_shape(self, b):
        """The first stage of im2col: the windows of the last spatial axis."""
        return (b, self.c, self.kernel[-1]) + self.padded[:-1] + (self.out[-1],)


def forward(x, w, geo, bias=None, relu=False):
    """``conv(x, w)``: ``(N, O, *out)``; plus ``bias`` ``(O,)`` and then ``max(., 0)`` where
    given, applied to each block's output while it is in the cache (no array of its own)."""
    xp = win.array_module(x, w)
    dtype = xp.result_type(x.dtype, w.dtype) if bias is None else xp.result_type(
        x.dtype, w.dtype, bias.dtype)
    x, w = x.astype(dtype, copy=False), w.astype(dtype, copy=False)
    og = geo.o // geo.groups
    wm = w.reshape(geo.groups, og, -1)
    if bias is not None:
        bias = bias.astype(dtype, copy=False).reshape(geo.groups, og, 1)
    y = xp.empty((geo.n, geo.o) + geo.out, dtype=dtype)
    if winograd.suits(geo, dtype, xp) and winograd.finite(x, w):
        return winograd.forward(x, w, geo, y, bias, relu, xp)
    if _by_rows(geo, xp):
        _forward_rows(x, w, geo, y, bias, relu, xp)
        return y
    fold = bias is not None and geo.groups == 1 and geo.c * geo.k <= FOLD_ROWS
    if fold:  # the bias as a last column of the weight, against a row of ones: no pass
        wm = xp.concatenate([wm, bias], axis=2)
    if _on_grid(geo, xp):
        _forward_grid(x, wm, geo, y, bias, fold, relu, xp)
        return y
    parted = xp is np and geo.c * geo.k * geo.positions * dtype.itemsize > PART_BYTES
    blocks = [(a, a + 1) for a in range(geo.n)] if parted else geo.blocks(dtype.itemsize, xp)
    for a, b in blocks:
        xpad = im2col.padded(x, geo, a, b, xp)
        for part, rows in _row_parts(geo, dtype.itemsize, parted):
            cols = im2col.columns(xpad[part.window(rows)], part, xp, ones=fold)
            yb = y[a:b, :, rows.start:rows.stop].reshape(b - a, geo.groups, og,
                                                         part.positions)
            xp.matmul(wm, cols, out=yb)
            _finish(yb, bias, fold, relu, xp)
    return y


def _finish(yb, bias, fold, relu, xp):
    """The bias (unless ``fold``ed into the product) and the ReLU on a block's product
    ``(B, groups, O / groups, positions)``, in place."""
    if bias is not None and not fold:
        yb += bias
    if relu:
        win.relu_in_place(yb, xp)


def _by_rows(geo, xp):
    """Whether the forward takes :func:`_forward_rows`: NumPy, 2 dimensions, a unit stride
    down the rows, at least ``ROWS_KERNEL`` kernel rows, and products at least
    ``ROWS_DEPTH`` deep."""
    return (_row_columns_apply(geo, xp) and geo.kernel[0] >= ROWS_KERNEL
            and geo.c // geo.groups * geo.kernel[1] >= ROWS_DEPTH)


def _row_columns_apply(geo, xp):
    """Whether :func:`im2col.row_columns` can take a block: NumPy, 2 dimensions, a unit stride
    down the rows."""
    return xp is np and len(geo.kernel) == 2 and geo.stride[0] == 1


def _forward_rows(x, w, geo, y, bias, relu, xp):
    """The forward in 2 dimensions with a unit stride down the rows, one product per kernel
    row (:func:`im2col.row_columns`) added up, so the second stage of im2col, ``k_first`` times
    the first, is never written."""
    kr, kc = geo.kernel
    og, cg = geo.o // geo.groups, geo.c // geo.groups
    # the weight of each kernel row: (k_first, groups, O / groups, C / groups * k_last)
    wr = xp.ascontiguousarray(w.reshape(geo.groups, og, cg, kr, kc).transpose(3, 0, 1, 2, 4)
                              ).reshape(kr, geo.groups, og, cg * kc)
    for a, b in geo.blocks(y.dtype.itemsize, xp, geo.padded[0] * geo.out[1], geo.c * kc):
        yb = y[a:b].reshape(b - a, geo.groups, og, geo.positions)
        # (scratch: a fresh array past its limit, few input channels and many output
        # channels making this partial output larger than the columns)
        part = win.scratch(yb.shape, y.dtype, xp, "out") if kr > 1 else None
        for r, cols in enumerate(im2col.row_columns(im2col.padded(x, geo, a, b, xp), geo, xp)):
            xp.matmul(wr[r], cols, out=yb if r == 0 else part)
            if r:
                xp.add(yb, part, out=yb)
        _finish(yb, bias, False, relu, xp)


def _filter_by_rows(geo, xp):
    """Whether the weight gradient takes its columns a kernel row at a time
    (:func:`im2col.row_columns`): 2 dimensions, a unit stride down the rows, and one sample's
    product for a kernel row (``O / groups`` by positions by ``C / groups * k_last``) at most
    ``SMALL_FILTER`` multiply-adds; where NumPy's BLAS packs the operands of every product
    (``threads.small_products()`` false: OpenBLAS's AVX2 kernels), also products at least
    ``ROWS_DEPTH`` wide in ``C / groups * k_last``: narrower, the per-sample products cost
    more than the columns they save (measured with OpenBLAS's Haswell kernels, one core,
    against the block's product: LeNet's 1 => 6 5x5 on 28x28, 5 wide, 2.88 ms against 1.98;
    6 => 16 on 14x14, 30 wide, 1.50 against 1.37; 3 => 32 3x3 on 32x32 1.08 times the time;
    and at 40 or more: 8 => 16 5x5 on 24x24 0.96, 16 => 32 on 16x16 0.95, 16 => 16 3x3 on
    16x16 1.02)."""
    cg, kc = geo.c // geo.groups, geo.kernel[-1]
    return (_row_columns_apply(geo, xp)
            and (geo.o // geo.groups) * cg * geo.positions * kc <= SMALL_FILTER
            and (threads.small_products() or cg * kc >= ROWS_DEPTH))


def _grid_length(geo):
    """Positions per sample of the forward's flat grid (:func:`_forward_grid`): from the
    first window's first entry in the flattened padded sample to the last's, plus one."""
    reach = sum(dl * (k - 1) * math.prod(geo.padded[i + 1:])  # the last entry's offset
                for i, (k, dl) in enumerate(zip(geo.kernel, geo.dilation)))
    return math.prod(geo.padded) - reach


def _on_grid(geo, xp):
    """Whether the forward takes :func:`_forward_grid`: NumPy, 2 or 3 dimensions (in 1 the
    grid is the outputs and :func:`im2col.columns` one copy: the same work), unit strides, a grid
    at most ``GRID_SHARE`` times the outputs whose extra positions cost at most
    ``GRID_WORK`` multiply-adds per entry of the columns, and columns of ``GRID_DEPTH`` rows
    or more per output channel."""
    if xp is not np or len(geo.kernel) == 1 or any(s != 1 for s in geo.stride):
        return False
    extra, og = _grid_length(geo) / geo.positions - 1, geo.o // geo.groups
    return (extra <= GRID_SHARE - 1 and og * extra <= GRID_WORK
            and geo.c // geo.groups * geo.k >= GRID_DEPTH * og)


def _forward_grid(x, wm, geo, y, bias, fold, relu, xp):
    """The forward with unit strides on the flat grid: each sample's padded input flattened,
    column ``q`` of kernel entry ``e`` is its entry ``q + offset(e)``, so the columns of a
    channel and kernel entry are one contiguous run of the input (one copy of runs as long
    as the grid, where :func:`im2col.columns` takes two copies of runs of a row). The grid is as
    wide as the padded input: the product also computes the ``dilation * (k - 1)`` positions
    past each row's outputs (:func:`_on_grid` bounds them), and the outputs are then copied
    out of it (measured on 64 => 64 3x3 on 32x32, 6% more positions: 5-10% faster in all)."""
    item, og = y.dtype.itemsize, geo.o // geo.groups
    rows = geo.c // geo.groups * geo.k
    length, size = _grid_length(geo), math.prod(geo.padded)
    pitch = [math.prod(geo.padded[i + 1:]) for i in range(len(geo.padded))]  # (entries)
    kernel_steps = tuple(dl * p * item for dl, p in zip(geo.dilation, pitch))
    exact = geo.padded[1:] == geo.out[1:]  # the grid is the outputs: no copy out
    for a, b in geo.blocks(item, xp, length):
        xpad = xp.ascontiguousarray(im2col.padded(x, geo, a, b, xp)).reshape(-1)
        for r0, r1 in _grid_rows(geo, rows * length * item if b - a == 1 else 0):
            part = length - (geo.out[0] - (r1 - r0)) * pitch[0]  # the grid of rows r0:r1
            shape = (b - a, geo.c) + geo.kernel + (part,)
            if fold:
                full, cols = im2col.with_ones(shape, rows, part, y.dtype, xp)
            else:
                full = cols = win.workspace(shape, y.dtype, xp, "cols")
            cols[...] = im2col.strided(xp, xpad[r0 * pitch[0]:], shape,
                                 (geo.c * size * item, size * item) + kernel_steps + (item,))
            yb = y[a:b, :, r0:r1]
            # (a fresh array past the scratch limit: few input channels and many output
            # channels make this block larger than the columns)
            res = yb.reshape(b - a, geo.groups, og, part) if exact else win.scratch(
                (b - a, geo.groups, og, part), y.dtype, xp, "out")
            # the positions past each row's outputs wrap into the next row: an inf there
            # with a -inf read by the same entry would warn of an invalid value (or raise
            # under np.errstate) for a product that is thrown away
            with np.errstate(invalid="ignore", over="ignore"):
                xp.matmul(wm, full.reshape(b - a, geo.groups, -1, part), out=res)
                _finish(res, bias, fold, relu, xp)
            if not exact:  # the outputs out of the grid's rows
                yb[...] = im2col.strided(xp, res, yb.shape, (geo.o * part * item, part * item)
                                   + tuple(p * item for p in pitch))


def _grid_rows(geo, nbytes):
    """``(r0, r1)`` ranges of output rows of :func:`_forward_grid`: all rows, unless one
    sample's columns (``nbytes``) pass ``BLOCK_BYTES``: then equal ranges within it, so that
    the product reads its columns from the cache."""
    out0 = geo.out[0]
    count = min(out0, max(1, -(-nbytes // BLOCK_BYTES)))
    step = -(-out0 // count)
    return [(r0, min(r0 + step, out0)) for r0 in range(0, out0, step)]


def _row_parts(geo, itemsize, parted):
    """The forward's parts of a block: ``(geometry, rows)`` per range of output rows (the
    first spatial axis), each a convolution of the padded rows it reads, without padding.
    One part, unless ``parted`` (the block is one sample whose columns pass ``PART_BYTES``):
    then ranges of rows whose columns stay within it (and hold ``PART_POSITIONS`` at least),
    so that the product reads them from the core's own cache (measured: a product over 512
    positions' columns of 64 => 64 3x3 ran at 90 GFLOP/s, over 1024 at 81; the forward, one
    core, alternated call by call, 3-9% faster on 64 to 32 channels on 32x32 to 64x64)."""
    out0 = geo.out[0]
    if not parted:
        yield geo, slice(0, out0)
        return
    width = geo.positions // out0
    per_row = geo.c * geo.k * width * itemsize
    step = min(out0, max(1, PART_BYTES // per_row, -(-PART_POSITIONS // width)))
    step = -(-out0 // -(-out0 // step))  # parts of equal size
    for r0 in range(0, out0, step):
        r1 = min(r0 + step, out0)
        yield geo.part(r0, r1), slice(r0, r1)


def data(g, w, geo):
    """The input gradient (the transposed convolution) of ``conv(x, w)`` for the output
    cotangent ``g``: ``(N, C, *spatial)``."""
    xp = win.array_module(g, w)
    dtype = xp.result_type(g.dtype, w.dtype)
    g, w = g.astype(dtype, copy=False), w.astype(dtype, copy=False)
    d, og, cg = len(geo.kernel), geo.o // geo.groups, geo.c // geo.groups
    reach = [dl * (k - 1) for k, dl in zip(geo.kernel, geo.dilation)]
    if (all(s == 1 for s in geo.stride)
            and all(r >= max(lo, hi) for r, (lo, hi) in zip(reach, geo.pads))):
        # the forward convolution of the cotangent, padded by the kernel's reach, with the
        # flipped kernel (inputs and outputs swapped): where its columns are no larger than
        # col2im's, or where it takes Winograd's algorithm (no columns at all; finite arrays
        # only, see winograd.finite: else the col2im below, as without Winograd's)
        pads = tuple((r - lo, r - hi) for r, (lo, hi) in zip(reach, geo.pads))
        shape = (geo.c, og) + geo.kernel
        swapped = Geometry(g.shape, shape, geo.stride, pads, geo.dilation, geo.groups)
        fast = winograd.suits(swapped, dtype, xp) and winograd.finite(g, w)
        if og <= cg or fast:
            flipped = xp.flip(w, axis=tuple(range(2, 2 + d)))
            wt = flipped.reshape((geo.groups, og, cg) + geo.kernel).swapaxes(1, 2).reshape(
                shape)
            if fast:  # (forward's checks, done)
                dx = xp.empty((geo.n, geo.c) + geo.spatial, dtype=dtype)
                return winograd.forward(g, wt, swapped, dx, None, False, xp)
            return forward(g, wt, swapped)
    wt = w.reshape(geo.groups, og, cg * geo.k).swapaxes(-1, -2)
    if all(s == 1 for s in geo.stride):
        if _folds(geo):
            return _data_folded(g, w, geo, xp)
        return _data_flat(g, xp.ascontiguousarray(wt), geo, xp)
    dx = xp.empty((geo.n, geo.c) + geo.spatial, dtype=dtype)
    for a, b in geo.blocks(dtype.itemsize, xp):
        gb = g[a:b].reshape(b - a, geo.groups, og, geo.positions)
        cols = win.workspace((b - a, geo.groups, cg * geo.k, geo.positions), dtype, xp, "cols")
        xp.matmul(wt, gb, out=cols)
        acc = im2col.col2im(cols.reshape((b - a, geo.c) + geo.kernel + geo.out), geo, xp)
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
    offsets = im2col.flat_offsets(geo.padded, geo.kernel, geo.dilation)
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


def _folds(geo):
    """Whether the input gradient takes :func:`_data_folded`: compares the entries each path
    writes per sample, the shifted cotangent and the product for the folded one (on a grid
    of ``out[:-1]`` by ``padded[-1]``), the cotangent's grid and the columns for the flat one
    (on the whole padded grid)."""
    kw, lead = geo.kernel[-1], math.prod(geo.kernel[:-1])
    folded = (geo.o * kw + lead * geo.c) * math.prod(geo.out[:-1]) * geo.padded[-1]
    flat = (geo.o + geo.c * geo.k) * math.prod(geo.padded)
    return folded <= FOLD_SHARE * flat


def _data_folded(g, w, geo, xp):
    """The input gradient with unit strides, the last kernel axis folded into the product.

    The cotangent is laid out on a grid as wide as the padded input along the last axis
    (zeros beyond the outputs, and ``reach`` zeros before the first row) and copied
    ``k_last`` times, each copy shifted by one kernel step along that flattened grid (whole
    contiguous rows: a shift that runs off a row carries only those zeros into the next). One
    product with the weight as ``(prod(kernel[:-1]) * C, O * k_last)`` then gives, for each
    entry of ``kernel[:-1]``, the contribution of a whole row of kernel entries, added onto
    the padded gradient with one add per entry of ``kernel[:-1]`` (5 for a 5x5 kernel). The
    product does ``padded[-1] / out[-1]`` times the useful work (1.4 on LeNet's 14x14 input),
    where the exact product's gradient columns take 25 strided adds, or two passes of 5 over a
    columns array ``k_last`` times larger.

    Where one sample's product is small (``SMALL_PRODUCT``) and OpenBLAS runs it without
    packing its operands (its AVX-512 kernels), there is one product per sample, and the
    gradient comes out sample-major; else one product over the block, its columns
    channel-major across the samples (measured on LeNet's 6 => 16 layer, with kernels
    that take small products directly: 0.85-1.0 ms against 1.0-1.14 ms for the block's
    product, 1.3 ms for :func:`_data_flat`; with the AVX2 ones, which pack every product,
    0.75 against 0.69; 8 => 64 => 128 3x3 on 8x8, 8% slower per sample). Without padding
    the adds go straight into the gradient in either layout (a view of it), else into a
    padded block copied out of it (LeNet's 6 => 16 with the block's product: 0.63 ms
    against 0.64 through a block)."""
    dtype = w.dtype
    kernel, dilation, out, padded = geo.kernel, geo.dilation, geo.out, geo.padded
    og, cg, kw, dl = geo.o // geo.groups, geo.c // geo.groups, kernel[-1], dilation[-1]
    lead, reach = math.prod(kernel[:-1]), dl * (kw - 1)
    row = math.prod(out[:-1]) * padded[-1]  # grid positions per sample
    # the weight as (groups, (kernel[:-1], C / groups), (O / groups, k_last))
    wf = w.reshape((geo.groups, og, cg, lead, kw)).transpose(0, 3, 2, 1, 4).reshape(
        geo.groups, lead * cg, og * kw)
    per_sample = _folded_per_sample(geo, xp)
    dx = xp.empty((geo.n, geo.c) + geo.spatial, dtype=dtype)
    every = (slice(None),) * 4
    for a, b in geo.blocks(dtype.itemsize, xp, row, max(geo.o * kw, lead * geo.c)):
        # (products, samples side by side in each): (b - a, 1) or (1, b - a)
        n, side = (b - a, 1) if per_sample else (1, b - a)
        grid = win.workspace((n, geo.o, reach + side * row), dtype, xp, "grid")
        grid.fill(0)  # one memset: the zeros each row ends with are short strided runs
        on = grid[:, :, reach:].reshape((n, geo.o, side) + out[:-1] + (padded[-1],))
        on[..., :out[-1]] = g[a:b].reshape((n, side, geo.o) + out).swapaxes(1, 2)
        # the k_last shifted copies in one copy: a view of the grid stepping back dl a copy
        shifted = win.workspace((n, geo.o, kw, side * row), dtype, xp, "grad")
        sn, so, se = grid.strides
        shifted[...] = im2col.strided(xp, grid[:, :, reach:], shifted.shape, (sn, so, -dl * se, se))
        rows = win.workspace((n, geo.groups, lead * cg, side * row), dtype, xp, "cols")
        xp.matmul(wf, shifted.reshape(n, geo.groups, og * kw, side * row), out=rows)
        rows = rows.reshape((n, geo.groups, lead, cg, side) + out[:-1] + (padded[-1],))
        direct = geo.padded == geo.spatial  # without padding, the adds go straight into dx
        if direct:  # (a view of dx as (n, groups, C / groups, side, *padded))
            acc_groups = dx[a:b].reshape((n, side, geo.groups, cg) + padded).transpose(
                (0, 2, 3, 1) + tuple(range(4, 4 + len(padded))))
        else:
            acc = win.workspace((n, geo.c, side) + padded, dtype, xp, "pad")
            acc_groups = acc.reshape((n, geo.groups, cg, side) + padded)
        acc_groups.fill(0)
        for e, offset in enumerate(np.ndindex(*kernel[:-1])):
            region = tuple(slice(k * d, k * d + m) for k, d, m in zip(offset, dilation, out))
            acc_groups[every + region] += rows[:, :, e]
        if not direct:
            dx[a:b] = acc.swapaxes(1, 2).reshape((b - a, geo.c) + padded)[geo.interior()]
    return dx


def _folded_per_sample(geo, xp):
    """Whether :func:`_data_folded` runs one product per sample: NumPy, one thread (with
    more the BLAS splits the block's product among them, and small ones not), a BLAS that
    takes small products without packing them (``threads.small_products``), and one
    sample's product of at most ``SMALL_PRODUCT`` multiply-adds."""
    kernel, og, cg = geo.kernel, geo.o // geo.groups, geo.c // geo.groups
    row = math.prod(geo.out[:-1]) * geo.padded[-1]
    work = math.prod(kernel[:-1]) * cg * og * kernel[-1] * row
    return (xp is np and threads.limit() == 1 and threads.small_products()
            and work <= SMALL_PRODUCT)


def filter(x, g, geo):
    """The weight gradient of ``conv(x, w)`` for the output cotangent ``g``: ``(O, C / groups,
    *kernel)``, each block's columns contracted with its cotangent over samples and
    positions."""
    xp = win.array_module(x, g)
    dtype = xp.result_type(x.dtype, g.dtype)
    x, g = x.astype(dtype, copy=False), g.astype(dtype, copy=False)
    og, cg = geo.o // geo.groups, geo.c // geo.groups
    if winograd.suits(geo, dtype, xp):
        with np.errstate(invalid="ignore", over="ignore"):  # (computed again if not finite)
            dw = winograd.filter(x, g, geo, xp)
        if winograd.finite(dw):  # (else an inf or NaN in x or g: im2col's, winograd.finite)
            return dw
    if _filter_by_rows(geo, xp):
        return _filter_rows(x, g, geo, xp)
    width = _product_width(og, dtype, xp)  # the cotangent's channels, and zero ones
    dw = xp.zeros((geo.groups, width, cg * geo.k), dtype=dtype)
    narrow = geo.positions < NARROW
    for a, b in geo.blocks(dtype.itemsize, xp):
        xpad = im2col.padded(x, geo, a, b, xp)
        if narrow:  # one product over the block's samples and positions (see NARROW)
            gb = win.workspace((geo.groups, width, b - a, geo.positions), dtype, xp, "out")
            gb[:, og:] = 0
            gb[:, :og] = g[a:b].reshape(b - a, geo.groups, og, geo.positions).transpose(
                1, 2, 0, 3)
            gb = gb.reshape(geo.groups, width, (b - a) * geo.positions)
            # columns on the left: the BLAS runs this orientation 15% faster (measured)
            cols = im2col.columns(xpad, geo, xp, across=True)
            dw += xp.matmul(cols, gb.swapaxes(-1, -2)).swapaxes(-1, -2)
        else:  # columns on the left here too (64 => 64 3x3 on 32x32: 13 ms against 19)
            gb = g[a:b].reshape(b - a, geo.groups, og, geo.positions)
            if width > og:
                wide = win.workspace((b - a, geo.groups, width, geo.positions), dtype, xp,
                                     "out")
                wide[:, :, og:] = 0
                wide[:, :, :og] = gb
                gb = wide
            dwt = xp.matmul(im2col.columns(xpad, geo, xp), gb.swapaxes(-1, -2))
            dw += (dwt[0] if b - a == 1 else dwt.sum(axis=0)).swapaxes(-1, -2)
    if width > og:
        dw = dw[:, :og]
    return dw.reshape((geo.o, cg) + geo.kernel)


def _product_width(og, dtype, xp):
    """The output channels (per group) that the weight gradient's product runs over: ``og``,
    or, in float32 with OpenBLAS's AVX2 kernels (``PAD_CORES``), the next multiple of 8
    where ``og``'s remainder would take two or more of their narrow edge kernels (``og % 8``
    of 3, 5, 6 or 7; the cotangent's extra channels are zeros). Those kernels run the
    product's narrow side 8 at a time, then 4, 2 and 1. Measured on one core, columns of 25
    rows by 25,088 positions against the cotangent's channels: 6 channels 0.28 ms, 8 0.21,
    4 0.19; 7 0.36; 14 0.43 and 16 0.36; 12 0.33 (150 rows by 4,181 positions: 6 0.24, 8
    0.17). LeNet's 1 => 6 layer, whose weight gradient is mostly that product: 0.58 ms
    against 0.69."""
    if (xp is not np or dtype != np.float32 or og % 8 not in (3, 5, 6, 7)
            or threads.blas_core() not in PAD_CORES):
        return og
    return og + 8 - og % 8


def _filter_rows(x, g, geo, xp):
    """The weight gradient a kernel row at a time: each sample's cotangent times the row's
    columns (:func:`im2col.row_columns`, read as they are), summed over the samples (measured on
    one core against the two-stage columns: 1.2-1.4 times as fast on LeNet's layers and on
    5x5 and 3x3 kernels with 3-16 channels; slower where a sample's product passes
    ``SMALL_FILTER``: 16 => 32 5x5 on 16x16, 0.8)."""
    kr, kc = geo.kernel
    og, cg = geo.o // geo.groups, geo.c // geo.groups
    dw = xp.zeros((kr, geo.groups, og, cg * kc), dtype=x.dtype)
    for a, b in geo.blocks(x.dtype.itemsize, xp, geo.padded[0] * geo.out[1], geo.c * kc):
        gb = g[a:b].reshape(b - a, geo.groups, og, geo.positions)
        for r, cols in enumerate(im2col.row_columns(im2col.padded(x, geo, a, b, xp), geo, xp)):
            dw[r] += xp.matmul(gb, cols.swapaxes(-1, -2)).sum(axis=0)
    # (k_first, groups, O / groups, C / groups, k_last) -> (O, C / groups, k_first, k_last)
    return xp.ascontiguousarray(dw.reshape(kr, geo.o, cg, kc).transpose(1, 2, 0, 3))
