"""im2col and col2im on blocks of samples: the columns of a convolution's input, and their
transpose, for the kernels of :mod:`fluxml.nnlib.convkernels` (``geo`` is its ``Geometry``).

Columns are laid out per sample, ``(B, C, *kernel, *out)``, so that the product with the
weight ``(O, C * K)`` gives ``(B, O, *out)``: the output in NCHW order, with no transposed
copy. They are built in two strided copies: the windows of the last spatial axis first
(``(B, C, k_last, *padded[:-1], out_last)``), then those of the other axes from that. Each
copy then moves runs of whole rows (``out_last`` entries, or whole ``out`` planes with unit
strides) where the single strided copy moves ``out_last`` entries per kernel entry: fewer,
longer runs, and twice as fast in the measurements. col2im is the transpose: one add per
entry of ``kernel[:-1]``, then one per entry of ``k_last`` (10 adds for a 5x5 kernel, not 25).
"""

from __future__ import annotations

import math

import numpy as np

from fluxml.nnlib import windows as win


def padded(x, geo, a, b, xp):
    """Samples ``a:b`` of ``x`` zero-padded (``x``'s own block without padding)."""
    if geo.padded == geo.spatial:
        return x[a:b]
    buf = win.workspace((b - a, geo.c) + geo.padded, x.dtype, xp, "pad")
    buf.fill(0)
    buf[geo.interior()] = x[a:b]
    return buf


def strided(xp, a, shape, strides):
    if xp is not np:
        return xp.lib.stride_tricks.as_strided(a, shape, strides)
    if a.flags.c_contiguous and min(strides, default=0) >= 0:
        # a view of a's buffer, built directly (NumPy checks it stays inside it): a third of
        # as_strided's cost, which is paid twice per block
        view = np.ndarray(shape, a.dtype, buffer=a, strides=strides)
    else:
        view = np.lib.stride_tricks.as_strided(a, shape, strides)
    view.flags.writeable = False  # a write through overlapping windows would be wrong
    return view


def last_axis_windows(xpad, geo, xp):
    """The first stage of im2col as a view of a padded block: the windows of the last
    spatial axis, ``geo.stage_shape(B)``."""
    sb, sc, *ss = xpad.strides
    return strided(xp, xpad, geo.stage_shape(xpad.shape[0]),
                    (sb, sc, ss[-1] * geo.dilation[-1]) + tuple(ss[:-1])
                    + (ss[-1] * geo.stride[-1],))


def columns(xpad, geo, xp, ones=False, across=False):
    """im2col of a padded block ``(B, C, *padded)``: ``(B, groups, C / groups * K, P)`` in the
    workspace, the rows in the weight's ``(C, *kernel)`` order; with ``ones`` (one group) a
    last row of ones, ``(B, 1, C * K + 1, P)``, for a bias column of the weight. ``across``:
    channel-major across the block, ``(groups, C / groups * K, B * P)``, the columns
    sample-major: the same two row-wise copies, into arrays stored with the block axis
    behind the kernel's (:func:`stored`)."""
    b, c = xpad.shape[:2]
    kernel, stride, dilation, out = geo.kernel, geo.stride, geo.dilation, geo.out
    rows = (c // geo.groups) * geo.k
    first = last_axis_windows(xpad, geo, xp)
    if ones:
        full, cols = with_ones((b, c) + kernel + out, rows, geo.positions, xpad.dtype, xp)
    else:
        full, cols = stored((b, c) + kernel + out, len(kernel), across, xpad.dtype, xp, "cols")
    if len(kernel) == 1:
        cols[...] = first
    else:
        stage, view = stored(first.shape, 1, across, xpad.dtype, xp, "stage")
        view[...] = first
        tb, tc, tk, *ts = view.strides
        cols[...] = strided(
            xp, stage, cols.shape,
            (tb, tc) + tuple(s * dl for s, dl in zip(ts[:-1], dilation[:-1])) + (tk,)
            + tuple(s * st for s, st in zip(ts[:-1], stride[:-1])) + (ts[-1],))
    if across:
        return full.reshape(geo.groups, rows, b * geo.positions)
    return full.reshape(b, geo.groups, -1, geo.positions)


def with_ones(shape, rows, positions, dtype, xp):
    """The columns' workspace ``(B, 1, rows + 1, positions)`` with a last row of ones, and its
    other rows as ``shape`` ``(B, C, *kernel, ...)`` (a view)."""
    full = win.workspace((shape[0], 1, rows + 1, positions), dtype, xp, "cols")
    full[:, 0, rows] = 1
    return full, full[:, 0, :rows].reshape(shape)  # splits axes: a view


def stored(shape, k, across, dtype, xp, slot):
    """A workspace for an array of ``shape`` ``(B, C, *k kernel axes, ...)`` and its view in
    that order: stored as it is, or ``across`` the block (``(C, *kernel axes, B, ...)``)."""
    if not across:
        buf = win.workspace(shape, dtype, xp, slot)
        return buf, buf
    buf = win.workspace(shape[1:k + 2] + shape[:1] + shape[k + 2:], dtype, xp, slot)
    return buf, buf.transpose((k + 1, *range(k + 1), *range(k + 2, len(shape))))


def col2im(cols, geo, xp):
    """The transpose of :func:`columns`: ``cols`` ``(B, C, *kernel, *out)`` added onto a
    zero padded block ``(B, C, *padded)`` (in the workspace)."""
    b = cols.shape[0]
    kernel, stride, dilation, out = geo.kernel, geo.stride, geo.dilation, geo.out
    every = (slice(None), slice(None))
    if len(kernel) == 1:
        stage = cols
    else:
        stage = win.workspace(geo.stage_shape(b), cols.dtype, xp, "stage")
        stage.fill(0)
        for offset in np.ndindex(*kernel[:-1]):  # (the leading axes' regions)
            region = win.entry_region(offset, stride, dilation, out)
            stage[every + (slice(None),) + region] += cols[every + offset]
    acc = win.workspace((b, geo.c) + geo.padded, cols.dtype, xp, "pad")
    acc.fill(0)
    lead = (slice(None),) * (len(kernel) - 1)
    for j in range(kernel[-1]):
        last = win.entry_region((j,), stride[-1:], dilation[-1:], out[-1:])
        acc[every + lead + last] += stage[every + (j,)]
    return acc


def row_columns(xpad, geo, xp):
    """The im2col columns of a padded block ``(B, C, *padded)`` (2 dimensions, a unit stride
    down the rows) one kernel row at a time, ``(B, groups, C / groups * k_last, positions)``
    each: the first stage of im2col (the windows of the last axis, ``(B, C, k_last, rows,
    out_last)``) holds, for kernel row ``r``, the columns of its ``C * k_last`` entries as a
    matrix whose rows are a constant stride apart and whose columns are the contiguous run
    of output rows ``r * dilation`` on: a view the BLAS reads as it is (no second stage)."""
    b, cg, kc = xpad.shape[0], geo.c // geo.groups, geo.kernel[1]
    stage = win.workspace(geo.stage_shape(b), xpad.dtype, xp, "stage")
    stage[...] = last_axis_windows(xpad, geo, xp)
    tb, _, tk, _, tw = stage.strides
    return [strided(xp, stage[:, :, :, r * geo.dilation[0]:],
                     (b, geo.groups, cg * kc, geo.positions), (tb, cg * kc * tk, tk, tw))
            for r in range(geo.kernel[0])]


def flat_offsets(size, kernel, dilation):
    """Flat offset of each kernel entry in a padded array of spatial shape ``size``, in the
    kernel's row-major order (the last is the largest)."""
    offsets = [0]
    for i, (k, dl) in enumerate(zip(kernel, dilation)):
        step = dl * math.prod(size[i + 1:])
        offsets = [a + j * step for a in offsets for j in range(k)]
    return offsets
