"""Winograd's minimal filtering F(2x2, 3x3): 3x3 convolutions with unit strides and many
channels in 2.25 times fewer multiply-adds than im2col.

A 3x3 convolution computes a 2x2 tile of outputs from a 4x4 tile of inputs with 36
multiply-adds per pair of channels. Winograd's algorithm (Lavin and Gray, "Fast Algorithms
for Convolutional Neural Networks", 2016) needs 16: the input tile is transformed
(``V = Bᵀ d B``), the filter too (``U = G w Gᵀ``), they are multiplied entry by entry, and the
16 products are transformed back (``Y = Aᵀ M A``). Summed over the input channels, the entry
by entry products are 16 matrix products ``(O, C) @ (C, tiles)``: where the products dominate
(tens of channels or more) this is the whole saving, as the transforms are a few additions per
entry (``Bᵀ`` and ``Aᵀ`` hold 0 and ±1, ``G`` halves), done on whole arrays of tiles, never
per tile. Measured on one core with OpenBLAS's AVX2 kernels, 64 => 64 channels on 16x32x32
(the fastest of 25 runs): the forward (and so the input gradient) in 10.2-11.7 ms against
im2col's 13.6-14.0, the weight gradient in 10.8 against 13.8 (:func:`_cotangent_tiles`);
256 => 256 on 8x8 1.35 and 1.5 times as fast. See ``MIN_CHANNELS`` for where it stops paying.

The transforms are exact up to float rounding of sums of a few terms, so results agree with
im2col's to about the product's own rounding (float32 against a float64 reference, 64 to 1024
channels: 1.1 to 1.6 times im2col's error, not growing with the channels). Arrays holding an
inf or a NaN take im2col (:func:`finite`). The weight gradient is computed in the same domain:
with ``dM = A dY Aᵀ`` the cotangent's tiles, ``dU = dM @ Vᵀ`` summed over tiles (16 products
with the tiles as the long side) and ``dw = Gᵀ dU G``. The input gradient of such a
convolution is again one (the cotangent padded by the kernel's reach, with the flipped
kernel), which :func:`fluxml.nnlib.convkernels.data` hands back to the forward.

Tiles are laid out channel-major across a block of samples, ``(16, C, B * tiles)``, so each
product is one long matrix product; blocks hold ``BLOCK_BYTES`` of tiles so that the
transforms' outputs are still in the cache when the product reads them.
"""

from __future__ import annotations

import numpy as np

from fluxml.backend import threads
from fluxml.nnlib import windows as win

# the transforms of F(2x2, 3x3) (Lavin and Gray's): input tile 4x4, output tile 2x2
B_T = ((1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, 0, -1))
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
A_T = ((1, 1, 1, 0), (0, 1, -1, -1))
# the cotangent's transform is A = A_Tᵀ; its first and last rows pick one entry, the last
# negated: the cotangent's tiles are made up to these signs (see _cotangent_tiles)
SIGNS = np.kron([1, 1, 1, -1], [1, 1, 1, -1])
# (i, j), (k, l) -> G[i, k] * G[j, l]: the filter transform as one (16, 9) matrix
G_PAIRS = np.kron(G, G)

# the transformed tiles of one block take at most this many bytes (at least one sample)
BLOCK_BYTES = 4 << 20

# where Winograd's algorithm pays, measured on one core (OpenBLAS's AVX2 kernels) against
# im2col over 16 to 128 channels on 8x8 to 32x32: at least MIN_CHANNELS channels in and out
# (16 => 16 on 32x32: 1.3x slower, 64 => 64: 1.3x faster) and outputs at least
# MIN_WORK / channels wide (the flat grid's extra tile a row costs 1 / (width / 2) more;
# 64 => 64 on 16x16 gained nothing, 128 => 128 on 16x16 and 256 => 256 on 8x8 1.2-1.5x).
# NumPy's transforms run on one core while the BLAS splits im2col's product over all it may
# use: with t threads at least t * MIN_CHANNELS channels (two threads: 64 => 64 on 32x32
# 0.9 times im2col's speed, 128 => 128 on 16x16 1.1-1.2x, 256 => 256 1.1-1.7x)
MIN_CHANNELS = 64
MIN_WORK = 64 * 24


def suits(geo, dtype, xp) -> bool:
    """Whether the convolution of ``geo`` takes Winograd's algorithm: NumPy (unmeasured on a
    GPU), a real float type, a 3x3 kernel with unit strides and dilation, one group,
    non-negative padding, and enough channels for the threads the BLAS may use and output
    width (``MIN_CHANNELS``, ``MIN_WORK``)."""
    channels = min(geo.c, geo.o)
    return (xp is np and np.dtype(dtype) in (np.float32, np.float64)
            and geo.kernel == (3, 3) and geo.groups == 1
            and all(s == 1 for s in geo.stride) and all(d == 1 for d in geo.dilation)
            and all(lo >= 0 and hi >= 0 for lo, hi in geo.pads) and geo.n > 0
            and channels * geo.out[1] >= MIN_WORK
            and channels >= MIN_CHANNELS * threads.limit())


def finite(*arrays) -> bool:
    """Whether every entry of ``arrays`` is finite: Winograd's algorithm is used on finite
    arrays only. Its transforms add and subtract entries of different windows (``inf - inf``)
    and multiply the flat grid's extra tiles and ``G``'s zeros by what they hold (``0 *
    inf``): an inf in the input gives NaN in outputs where im2col gives ±inf (and a ReLU then
    keeps the NaN where it clears -inf to 0), and in the weight gradient NaN in weights whose
    gradient is finite (an inf in an input's last column turned 18 of the 45 finite ones into
    NaN). The forward checks its input and weight (one pass over the input: 0.08 ms, under 1%
    of the forward of 64 => 64 on 16x32x32), the input gradient its cotangent and weight, the
    weight gradient its result (as small as the weight, so free: an inf or NaN in the input or
    the cotangent leaves one there, and im2col then computes it again)."""
    return all(bool(np.isfinite(a).all()) for a in arrays)


def forward(x, w, geo, y, bias, relu, xp):
    """``conv(x, w)`` written into ``y`` ``(N, O, *out)``, plus ``bias`` ``(1, O, 1)`` and
    ``max(., 0)`` where given."""
    u = _filter_tiles(w, xp)
    th, tw = _tiles(geo)
    ho, wo = geo.out
    for a, b in _blocks(geo, x.dtype.itemsize, xp):
        v = _input_tiles(x[a:b], geo, xp)
        m = xp.matmul(u, v, out=win.workspace((16, geo.o, v.shape[-1]), x.dtype, xp, "wino_m"))
        rows = win.workspace((2, 4) + m.shape[1:], x.dtype, xp, "wino_rows")
        _apply(A_T, m.reshape((4, 4) + m.shape[1:]), rows, xp)
        out = win.workspace((2, 2) + m.shape[1:], x.dtype, xp, "wino_out")
        for r in range(2):
            _apply(A_T, rows[r], out[r], xp)
        # out[r, s, o, b, i, j] is y[b, o, 2i + r, 2j + s]; the last tile across is the flat
        # grid's (see _input_tiles), and the last ones down and across are cut where the
        # output size is odd. One copy per (r, s): runs of tw entries (one copy of all four
        # moves runs of 2)
        out = out.reshape(2, 2, geo.o, b - a, th, tw + 1)[..., :tw]
        even = (2 * th, 2 * tw) == (ho, wo)
        full = y[a:b] if even else win.workspace((b - a, geo.o, 2 * th, 2 * tw), x.dtype, xp,
                                                 "wino_full")
        tiles = full.reshape(b - a, geo.o, th, 2, tw, 2)
        for r in range(2):
            for s in range(2):
                tiles[:, :, :, r, :, s] = out[r, s].transpose(1, 0, 2, 3)
        if not even:
            y[a:b] = full[:, :, :ho, :wo]
        if bias is not None:
            y[a:b] += bias.reshape(1, geo.o, 1, 1)
        if relu:
            xp.maximum(y[a:b], 0, out=y[a:b])
    return y


def filter(x, g, geo, xp):
    """The weight gradient ``(O, C, 3, 3)`` of ``conv(x, w)`` for the output cotangent
    ``g``, in Winograd's domain: ``dU = dM @ Vᵀ`` over every tile, then ``Gᵀ dU G``."""
    du = xp.zeros((16, geo.o, geo.c), dtype=x.dtype)
    for a, b in _blocks(geo, x.dtype.itemsize, xp):
        v = _input_tiles(x[a:b], geo, xp)
        for k, dm in enumerate(_cotangent_tiles(g[a:b], geo, xp)):
            du[k] += dm @ v[k].T
    dw = du.reshape(16, geo.o * geo.c).T @ xp.asarray(G_PAIRS * SIGNS[:, None], dtype=x.dtype)
    return dw.reshape(geo.o, geo.c, 3, 3)


def _tiles(geo):
    """The tiles down and across: each covers 2x2 outputs (the last ones partly, where an
    output size is odd)."""
    return tuple(-(-n // 2) for n in geo.out)


def _blocks(geo, itemsize, xp):
    """``(start, stop)`` of blocks of samples of equal size whose transformed tiles (16 per
    tile of the flat grid and the larger of the channel counts) fit ``BLOCK_BYTES``."""
    th, tw = _tiles(geo)
    return geo.blocks(itemsize, xp, th * (tw + 1), 16 * max(geo.c, geo.o), BLOCK_BYTES)


def _filter_tiles(w, xp):
    """``U = G w Gᵀ`` for every pair of channels: ``(16, O, C)``."""
    o, c = w.shape[:2]
    u = xp.asarray(G_PAIRS, dtype=w.dtype) @ w.reshape(o * c, 9).T
    return u.reshape(16, o, c)


def _input_tiles(xb, geo, xp):
    """``V = Bᵀ d B`` for every 4x4 input tile ``d`` (stride 2) of the block ``xb``
    ``(B, C, H, W)``, padded as ``geo`` says: ``(16, C, B * th * (tw + 1))``.

    Tile ``(i, j)`` reads padded rows ``2i .. 2i + 3`` and columns ``2j .. 2j + 3``. The
    padded block is laid out by the parity of its columns and rows, ``(C, B, 2, 2, th + 1,
    tw + 1)``, so that every term of both transforms is a contiguous run of a plane: tap ``k``
    down is row ``i + k // 2`` of the row parity ``k % 2``, and across (on each plane of
    ``th * (tw + 1)`` transformed entries, read flat) entry ``j + k // 2`` of the column
    parity ``k % 2``. Read flat, each row has one extra tile, reading into the next row; its
    products are never used. The copies into this layout are the only strided ones; NumPy
    runs the transforms' long runs 2-3 times as fast as the runs of ``tw`` that a
    ``(C, B, H, W)`` layout gives."""
    nb = xb.shape[0]
    th, tw = _tiles(geo)
    plane = th * (tw + 1)
    quarters = win.workspace((geo.c, nb, 2, 2, th + 1, tw + 1), xb.dtype, xp, "wino_pad")
    quarters.fill(0)
    (top, _), (left, _) = geo.pads
    for r in range(2):
        rows, first_row = _parity(geo.spatial[0], top, r)
        for c in range(2):
            cols, first_col = _parity(geo.spatial[1], left, c)
            quarters[:, :, c, r, rows, cols] = xb[:, :, first_row::2, first_col::2].transpose(
                1, 0, 2, 3)
    # each plane one entry longer: the last extra tile reads one past its plane
    down = win.workspace((4, geo.c, nb, 2, plane + 1), xb.dtype, xp, "wino_in_rows")
    down[..., plane] = 0
    _apply(B_T, [quarters[:, :, :, k % 2, k // 2:k // 2 + th] for k in range(4)],
           [d[..., :plane].reshape(geo.c, nb, 2, th, tw + 1) for d in down], xp)
    v = win.workspace((4, 4, geo.c, nb, plane), xb.dtype, xp, "wino_v")
    for i in range(4):
        _apply(B_T, [down[i][:, :, k % 2, k // 2:k // 2 + plane] for k in range(4)], v[i], xp)
    return v.reshape(16, geo.c, nb * plane)


def _parity(size, pad, parity):
    """Where the input's entries of one parity of the padded axis go: the slice of the
    parity's half-axis they fill, and the first of them in the input (every second one
    from there)."""
    first = (parity - pad) % 2
    count = len(range(first, size, 2))
    start = (first + pad) // 2
    return slice(start, start + count), first


def _cotangent_tiles(gb, geo, xp):
    """``dM = A dy Aᵀ`` for every 2x2 tile ``dy`` of the cotangent block ``gb``
    ``(B, O, *out)``, up to sign: 16 arrays ``(O, B * th * (tw + 1))``, in the layout of
    :func:`_input_tiles` and zero on the flat grid's extra tiles (whose ``V`` are not the
    input's), the one for entry ``(i, j)`` being ``SIGNS[4 i + j]`` times ``dM[i, j]``.

    The cotangent is laid out by the parity of its rows and columns, so that each of the
    four parities is one matrix. ``A``'s first and last rows pick one parity (the last
    negated), its middle ones add and subtract the two: 4 of the 16 are parities as they
    are, 4 the sums and differences of the rows' parities, 8 those of these across; 12
    additions of a quarter of the cotangent each, where transforming every tile in full
    takes 24 (measured: the weight gradient of 64 => 64 on 16x32x32 in 10.8 ms, not
    12.5)."""
    nb = gb.shape[0]
    th, tw = _tiles(geo)
    size = nb * th * (tw + 1)
    quarters = win.workspace((2, 2, geo.o, nb, th, tw + 1), gb.dtype, xp, "wino_gpad")
    quarters.fill(0)
    for r in range(2):
        for c in range(2):
            part = gb[:, :, r::2, c::2]
            quarters[r, c, :, :, :part.shape[2], :part.shape[3]] = part.transpose(1, 0, 2, 3)
    q = quarters.reshape(2, 2, geo.o, size)
    down = win.workspace((2, 2, geo.o, size), gb.dtype, xp, "wino_g_rows")
    xp.add(q[0], q[1], out=down[0])
    xp.subtract(q[0], q[1], out=down[1])
    across = win.workspace((4, 2, geo.o, size), gb.dtype, xp, "wino_dm")
    tiles = []
    for i, rows in enumerate((q[0], down[0], down[1], q[1])):
        xp.add(rows[0], rows[1], out=across[i, 0])
        xp.subtract(rows[0], rows[1], out=across[i, 1])
        tiles += [rows[0], across[i, 0], across[i, 1], rows[1]]
    return tiles


def _apply(matrix, parts, outs, xp):
    """``outs[r] = sum_k matrix[r][k] * parts[k]`` for a matrix of 0 and ±1, written into
    ``outs`` (whole arrays of tiles at once: one NumPy operation per term)."""
    for row, out in zip(matrix, outs):
        plus = [p for c, p in zip(row, parts) if c == 1]
        minus = [p for c, p in zip(row, parts) if c == -1]
        if not plus:
            xp.negative(minus.pop(0), out=out)
        elif len(plus) > 1:
            xp.add(plus.pop(0), plus.pop(0), out=out)
        elif minus:
            xp.subtract(plus.pop(0), minus.pop(0), out=out)
        else:
            out[...] = plus.pop(0)
        for p in plus:
            out += p
        for p in minus:
            out -= p
