"""The convolution kernels' strategies (convkernels.py), each forced in turn, against a
reference written here: per-sample or block-wide columns (``NARROW``), the flat or the folded
input gradient (``FOLD_SHARE``), cache-sized or one-sample blocks (``BLOCK_BYTES``), the
forward's columns in ranges of output rows (``PART_BYTES``), on the flat grid
(``GRID_SHARE``) or by kernel rows (``ROWS_KERNEL``, ``ROWS_DEPTH``); the rule that picks
them on LeNet's shapes; second order through the new paths."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fluxml.nnlib import conv, convkernels
from fluxml.testing import check_grads

# name -> (NARROW, FOLD_SHARE): every combination of the two choices (SMALL_PRODUCT follows
# NARROW)
STRATEGIES = {
    "per-sample, flat": (0, 0.0),
    "per-sample, folded": (0, float("inf")),
    "across, flat": (10 ** 9, 0.0),
    "across, folded": (10 ** 9, float("inf")),
}


def _force(monkeypatch, name, one_sample=False, part_bytes=None, grid=None, rows=None):
    narrow, share = STRATEGIES[name]
    monkeypatch.setattr(convkernels, "NARROW", narrow)
    monkeypatch.setattr(convkernels, "FOLD_SHARE", share)
    # the folded input gradient's products: per sample with the per-sample columns, one
    # over the block with the columns across it
    monkeypatch.setattr(convkernels, "SMALL_PRODUCT", float("inf") if narrow == 0 else 0)
    if narrow == 0:  # (per sample on one thread, with a BLAS that takes small products)
        monkeypatch.setattr(convkernels.threads, "limit", lambda: 1)
        monkeypatch.setattr(convkernels.threads, "small_products", lambda: True)
    if grid is not None:
        _grid(monkeypatch, grid)
    if rows is not None:
        _rows(monkeypatch, rows)
    if one_sample:
        monkeypatch.setattr(convkernels, "BLOCK_BYTES", 1)
    if part_bytes is not None:  # 1: a part per output row
        monkeypatch.setattr(convkernels, "PART_BYTES", part_bytes)
        monkeypatch.setattr(convkernels, "PART_POSITIONS", 1)


def _rows(monkeypatch, on):
    """True: every 2-dimensional forward and weight gradient with a unit stride down the
    rows by kernel rows (``_forward_rows``, ``_filter_rows``); False: none."""
    for name in ("ROWS_KERNEL", "ROWS_DEPTH"):
        monkeypatch.setattr(convkernels, name, 0 if on else float("inf"))
    monkeypatch.setattr(convkernels, "SMALL_FILTER", float("inf") if on else -1)


def _grid(monkeypatch, on):
    """True: every forward with unit strides in 2 or 3 dimensions on the flat grid; False:
    none."""
    for name in ("GRID_SHARE", "GRID_WORK"):
        monkeypatch.setattr(convkernels, name, float("inf") if on else 0.0)
    monkeypatch.setattr(convkernels, "GRID_DEPTH", 0.0 if on else float("inf"))


def reference(x, w, g, stride, pads, dilation, groups):
    """Forward, input gradient and weight gradient, one kernel entry at a time: the entry's
    strided slice of the padded input against the weight's entry (einsum), added onto the
    output, the padded input gradient and the weight gradient."""
    d = x.ndim - 2
    n, c = x.shape[:2]
    o, kernel = w.shape[0], w.shape[2:]
    cg, og = c // groups, o // groups
    xpad = np.pad(x, [(0, 0), (0, 0)] + list(pads))
    out = tuple((xpad.shape[2 + i] - dilation[i] * (kernel[i] - 1) - 1) // stride[i] + 1
                for i in range(d))
    wg = w.reshape((groups, og, cg) + kernel)
    gg = g.reshape((n, groups, og) + out)
    y = np.zeros((n, groups, og) + out)
    dxpad = np.zeros((n, groups, cg) + xpad.shape[2:])
    dw = np.zeros_like(wg)
    for offset in itertools.product(*map(range, kernel)):
        at = (slice(None),) * 3 + tuple(slice(k * dl, k * dl + s * (m - 1) + 1, s)
                                        for k, dl, s, m in zip(offset, dilation, stride, out))
        xs = xpad.reshape((n, groups, cg) + xpad.shape[2:])[at]
        wk = wg[(slice(None),) * 3 + offset]
        y += np.einsum("ngc...,goc->ngo...", xs, wk)
        dxpad[at] += np.einsum("ngo...,goc->ngc...", gg, wk)
        dw[(slice(None),) * 3 + offset] += np.einsum(
            "ngcp,ngop->goc", xs.reshape(n, groups, cg, -1), gg.reshape(n, groups, og, -1))
    inner = (slice(None),) * 2 + tuple(slice(lo, lo + m) for m, (lo, _) in zip(x.shape[2:], pads))
    return (y.reshape((n, o) + out), dxpad.reshape((n, c) + xpad.shape[2:])[inner],
            dw.reshape(w.shape))


def _kernels(x, w, g, stride, pads, dilation, groups):
    geo = convkernels.Geometry(x.shape, w.shape, stride, pads, dilation, groups)
    return (convkernels.forward(x, w, geo), convkernels.data(g, w, geo),
            convkernels.filter(x, g, geo))


def _check(x, w, stride, pads, dilation, groups, atol):
    geo = convkernels.Geometry(x.shape, w.shape, stride, pads, dilation, groups)
    g = np.random.default_rng(1).standard_normal((x.shape[0], w.shape[0]) + geo.out)
    g = g.astype(x.dtype)
    got = _kernels(x, w, g, stride, pads, dilation, groups)
    want = reference(x, w, g, stride, pads, dilation, groups)
    for name, a, b in zip(("forward", "input gradient", "weight gradient"), got, want):
        assert a.dtype == x.dtype, name
        np.testing.assert_allclose(a, b, atol=atol, rtol=atol, err_msg=name)


def test_the_rule_on_lenet_shapes():
    """6 => 16 on 14x14 (100 positions, a 5x5 kernel without padding) takes the folded
    input gradient, 1 => 6 with "same" padding the flat one (their weight gradients go by
    kernel rows, test_rows_with_bias_and_relu); the 64-channel 32x32 layer per-sample
    columns (and its input gradient, 64 <= 64 channels, is the flipped forward convolution,
    neither). The forward takes the
    flat grid on the 64-channel layer only (1086 grid positions a sample for 1024 outputs:
    3.9 multiply-adds per entry of the columns; LeNet's layers 892 for 784 and 136 for
    100)."""
    six = convkernels.Geometry((64, 6, 14, 14), (16, 6, 5, 5), (1, 1), ((0, 0),) * 2, (1, 1), 1)
    one = convkernels.Geometry((64, 1, 28, 28), (6, 1, 5, 5), (1, 1), ((2, 2),) * 2, (1, 1), 1)
    big = convkernels.Geometry((16, 64, 32, 32), (64, 64, 3, 3), (1, 1), ((1, 1),) * 2, (1, 1),
                               1)
    assert six.positions < convkernels.NARROW <= big.positions
    assert convkernels._folds(six) and not convkernels._folds(one)
    assert [convkernels._grid_length(g) for g in (six, one, big)] == [136, 892, 1086]
    assert convkernels._on_grid(big, np)
    assert not convkernels._on_grid(six, np) and not convkernels._on_grid(one, np)
    # twice the output channels: the grid's 62 extra positions cost 7.8 multiply-adds per
    # entry of the columns, more than the copy they save; no grid with strides or in 1-d
    wide = convkernels.Geometry((8, 128, 32, 32), (128, 128, 3, 3), (1, 1), ((1, 1),) * 2,
                                (1, 1), 1)
    strided = convkernels.Geometry((8, 64, 32, 32), (64, 64, 3, 3), (1, 2), ((1, 1),) * 2,
                                   (1, 1), 1)
    flat = convkernels.Geometry((8, 64, 1024), (64, 64, 3), (1,), ((1, 1),), (1,), 1)
    assert not any(convkernels._on_grid(g, np) for g in (wide, strided, flat))
    # few input channels for many outputs: the grid's copy of the outputs costs more than the
    # copy of the columns it saves (27 rows for 64 channels); few outputs, the grid again
    rgb = [convkernels.Geometry((16, 3, 32, 32), (o, 3, 3, 3), (1, 1), ((1, 1),) * 2, (1, 1),
                                1) for o in (64, 8)]
    assert [convkernels._on_grid(g, np) for g in rgb] == [False, True]


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("n, c, o, size, k, pad, groups", [
    (5, 6, 16, 14, 5, 0, 1),   # LeNet's second layer, a small batch
    (3, 1, 6, 12, 5, 2, 1),    # LeNet's first layer, smaller
    (2, 4, 8, 9, 3, 1, 2),     # grouped
])
def test_lenet_shapes_every_strategy(strategy, n, c, o, size, k, pad, groups, monkeypatch):
    _force(monkeypatch, strategy)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, size, size)).astype(np.float32)
    w = rng.standard_normal((o, c // groups, k, k)).astype(np.float32)
    _check(x, w, (1, 1), ((pad, pad),) * 2, (1, 1), groups, atol=2e-4)


@pytest.mark.parametrize("core", ["haswell", "skylakex"])
@pytest.mark.parametrize("strategy", ["per-sample, flat", "across, flat"])
@pytest.mark.parametrize("o, groups", [(6, 1), (7, 1), (5, 1), (22, 2), (8, 2), (12, 1)])
def test_weight_gradient_padded_channels(core, strategy, o, groups, monkeypatch):
    """The weight gradient's product over the cotangent's channels padded with zero ones to
    a multiple of 8 (float32, OpenBLAS's AVX2 kernels: ``_product_width``) or as they are,
    with per-sample or block-wide columns, one group or two, against the reference."""
    from fluxml.backend import threads

    _force(monkeypatch, strategy)
    monkeypatch.setattr(threads, "blas_core", lambda: core)
    og = o // groups
    want = og + 8 - og % 8 if core == "haswell" and og % 8 in (3, 5, 6, 7) else og
    assert convkernels._product_width(og, np.dtype(np.float32), np) == want
    assert convkernels._product_width(og, np.dtype(np.float64), np) == og
    rng = np.random.default_rng(o)
    x = rng.standard_normal((3, 2 * groups, 7, 6)).astype(np.float32)
    w = rng.standard_normal((o, 2, 3, 2)).astype(np.float32)
    _check(x, w, (1, 1), ((1, 1), (0, 1)), (1, 1), groups, atol=2e-4)


@pytest.mark.parametrize("strategy", ["per-sample, folded", "across, folded"])
def test_second_order_through_the_new_paths(strategy, monkeypatch):
    _force(monkeypatch, strategy)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 2, 6, 5))
    w = rng.standard_normal((4, 2, 3, 2))
    check_grads(lambda x, w: conv(x, w, pad=((1, 0), (0, 1)), dilation=(1, 2)), x, w, order=2)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_strategies_random_configurations(data):
    """Random convolutions in 1 to 3 dimensions (strides, dilations, asymmetric padding,
    groups, batch), each strategy, block size, part size and grid or not, against the reference in
    float64."""
    d = data.draw(st.integers(1, 3))
    groups = data.draw(st.sampled_from([1, 2, 3]))
    c, o = groups * data.draw(st.integers(1, 3)), groups * data.draw(st.integers(1, 4))
    kernel = tuple(data.draw(st.integers(1, 4)) for _ in range(d))
    # unit strides half the time: the folded input gradient needs them
    unit = data.draw(st.booleans())
    stride = tuple(1 if unit else data.draw(st.integers(1, 3)) for _ in range(d))
    dilation = tuple(data.draw(st.integers(1, 2)) for _ in range(d))
    pads = tuple((data.draw(st.integers(0, 3)), data.draw(st.integers(0, 3))) for _ in range(d))
    size = tuple(max(dl * (k - 1) + 1 - lo - hi, 1) + data.draw(st.integers(0, 6 - d))
                 for k, dl, (lo, hi) in zip(kernel, dilation, pads))
    n = data.draw(st.integers(1, 3))
    strategy = data.draw(st.sampled_from(sorted(STRATEGIES)))
    with pytest.MonkeyPatch.context() as patch:
        _force(patch, strategy, one_sample=data.draw(st.booleans()),
               part_bytes=data.draw(st.sampled_from([None, 1, 200, 2000])),
               grid=data.draw(st.booleans()), rows=data.draw(st.booleans()))
        rng = np.random.default_rng(data.draw(st.integers(0, 99)))
        x = rng.standard_normal((n, c) + size)
        w = rng.standard_normal((o, c // groups) + kernel)
        _check(x, w, stride, pads, dilation, groups, atol=1e-10)


@pytest.mark.parametrize("part_bytes", [1, 5000])
def test_row_parts_with_bias_and_relu(part_bytes, monkeypatch):
    """The forward in ranges of output rows (one row each, or a few) with the bias folded
    into the product (one group) or added (two), and the ReLU, against the reference; the
    parts' rule: the 64-channel 32x32 layer's sample (2.4 MB of columns) is cut into two
    ranges of 512 positions."""
    rng = np.random.default_rng(3)
    for groups in (1, 2):
        x = rng.standard_normal((3, 4, 9, 7))
        w = rng.standard_normal((6, 4 // groups, 3, 2))
        bias = rng.standard_normal(6)
        geo = convkernels.Geometry(x.shape, w.shape, (2, 1), ((1, 2), (0, 1)), (1, 2), groups)
        want = np.maximum(reference(x, w, np.zeros((3, 6) + geo.out), (2, 1),
                                    ((1, 2), (0, 1)), (1, 2), groups)[0]
                          + bias[:, None, None], 0)
        whole = convkernels.forward(x, w, geo, bias=bias, relu=True)
        monkeypatch.setattr(convkernels, "PART_BYTES", part_bytes)
        monkeypatch.setattr(convkernels, "PART_POSITIONS", 1)
        assert len(list(convkernels._row_parts(geo, 8, parted=True))) > 1
        parted = convkernels.forward(x, w, geo, bias=bias, relu=True)
        monkeypatch.undo()
        # (not bit for bit: the BLAS's kernels for narrower products may sum otherwise)
        np.testing.assert_allclose(whole, want, atol=1e-12)
        np.testing.assert_allclose(parted, want, atol=1e-12)
    big = convkernels.Geometry((16, 64, 32, 32), (64, 64, 3, 3), (1, 1), ((1, 1),) * 2, (1, 1),
                               1)
    parts = [rows for _, rows in convkernels._row_parts(big, 4, parted=True)]
    assert [(r.start, r.stop) for r in parts] == [(0, 16), (16, 32)]  # 512 positions each
    assert all(a.stop == b.start for a, b in zip(parts, parts[1:]))


@pytest.mark.parametrize("block_bytes", [None, 1, 3000])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_grid_with_bias_and_relu(block_bytes, dtype, monkeypatch):
    """The forward on the flat grid (forced): 2 and 3 dimensions, asymmetric padding,
    dilation, groups (the bias added, not folded), a non-contiguous input, blocks of several
    samples or ranges of rows (``BLOCK_BYTES`` 1: one row each), with the bias and the ReLU,
    against the reference; float32 stays float32."""
    _grid(monkeypatch, True)
    if block_bytes is not None:
        monkeypatch.setattr(convkernels, "BLOCK_BYTES", block_bytes)
    rng = np.random.default_rng(5)
    for size, kernel, pads, dilation, groups in [
        ((7, 1), (3, 1), ((2, 1), (0, 0)), (2, 1), 1),  # (no copy out)
        ((7, 6), (3, 2), ((1, 2), (0, 1)), (1, 2), 1),
        ((7, 6), (3, 3), ((1, 1), (1, 1)), (1, 1), 2),
        ((4, 5, 4), (2, 3, 2), ((1, 0), (0, 2), (1, 1)), (1, 1, 2), 1),
    ]:
        geo = convkernels.Geometry((3, 4) + size, (6, 4 // groups) + kernel, (1,) * len(size),
                                   pads, dilation, groups)
        assert convkernels._on_grid(geo, np)
        x = np.swapaxes(rng.standard_normal((4, 3) + size), 0, 1).astype(dtype)  # strided
        w = rng.standard_normal((6, 4 // groups) + kernel).astype(dtype)
        bias = rng.standard_normal(6).astype(dtype)
        want = reference(x.astype(np.float64), w.astype(np.float64),
                         np.zeros((3, 6) + geo.out), (1,) * len(size), pads, dilation,
                         groups)[0]
        want = np.maximum(want + bias.reshape((6,) + (1,) * len(size)), 0)
        got = convkernels.forward(x, w, geo, bias=bias, relu=True)
        assert got.dtype == dtype
        np.testing.assert_allclose(got, want, atol=1e-4 if dtype == np.float32 else 1e-12)
        np.testing.assert_allclose(convkernels.forward(x, w, geo),
                                   reference(x, w, np.zeros((3, 6) + geo.out), (1,) * len(size),
                                             pads, dilation, groups)[0],
                                   atol=1e-4 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("block_bytes", [None, 1])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_rows_with_bias_and_relu(block_bytes, dtype, monkeypatch):
    """The forward by kernel rows (forced): strides across the rows, dilation, asymmetric
    padding, groups, a non-contiguous input, one-sample blocks, with and without the bias
    and the ReLU, against the reference; float32 stays float32. The rule: 5x5 kernels on
    16 input channels, not LeNet's 6 (30 deep), 3x3 kernels, or strides down the rows."""
    _rows(monkeypatch, True)
    if block_bytes is not None:
        monkeypatch.setattr(convkernels, "BLOCK_BYTES", block_bytes)
    rng = np.random.default_rng(6)
    for size, kernel, stride, pads, dilation, groups in [
        ((7, 6), (3, 2), (1, 1), ((1, 2), (0, 1)), (1, 2), 1),
        ((8, 9), (2, 3), (1, 2), ((0, 0), (2, 1)), (2, 1), 2),
        ((6, 5), (1, 3), (1, 3), ((1, 1), (1, 1)), (1, 1), 1),
    ]:
        geo = convkernels.Geometry((3, 4) + size, (6, 4 // groups) + kernel, stride, pads,
                                   dilation, groups)
        assert convkernels._by_rows(geo, np)
        x = np.swapaxes(rng.standard_normal((4, 3) + size), 0, 1).astype(dtype)  # strided
        w = rng.standard_normal((6, 4 // groups) + kernel).astype(dtype)
        bias = rng.standard_normal(6).astype(dtype)
        plain = reference(x.astype(np.float64), w.astype(np.float64),
                          np.zeros((3, 6) + geo.out), stride, pads, dilation, groups)[0]
        tol = 1e-4 if dtype == np.float32 else 1e-12
        got = convkernels.forward(x, w, geo, bias=bias, relu=True)
        assert got.dtype == dtype
        np.testing.assert_allclose(got, np.maximum(plain + bias[:, None, None], 0), atol=tol)
        np.testing.assert_allclose(convkernels.forward(x, w, geo), plain, atol=tol)
    monkeypatch.undo()

    def geometry(c, o, kernel, stride=(1, 1)):
        return convkernels.Geometry((8, c, 16, 16), (o, c) + kernel, stride, ((2, 2),) * 2,
                                    (1, 1), 1)
    assert convkernels._by_rows(geometry(16, 32, (5, 5)), np)
    assert not any(convkernels._by_rows(g, np) for g in (
        geometry(6, 16, (5, 5)), geometry(64, 64, (3, 3)), geometry(16, 32, (5, 5), (2, 1))))
    # the weight gradient by kernel rows where a sample's product is small: LeNet's layers
    lenet = [convkernels.Geometry((64, 1, 28, 28), (6, 1, 5, 5), (1, 1), ((2, 2),) * 2,
                                  (1, 1), 1),
             convkernels.Geometry((64, 6, 14, 14), (16, 6, 5, 5), (1, 1), ((0, 0),) * 2,
                                  (1, 1), 1)]
    from fluxml.backend import threads

    wide = convkernels.Geometry((32, 8, 24, 24), (16, 8, 5, 5), (1, 1), ((0, 0),) * 2,
                                (1, 1), 1)  # 8 * 5 = ROWS_DEPTH wide
    monkeypatch.setattr(threads, "limit", lambda: 1)
    for small in (True, False):  # OpenBLAS's AVX-512 kernels or its AVX2 ones
        monkeypatch.setattr(threads, "small_products", lambda small=small: small)
        # the folded input gradient of 6 => 16 (336,000 multiply-adds a sample): one
        # product a sample where the BLAS takes them unpacked, else one over the block
        assert convkernels._folded_per_sample(lenet[1], np) == small
        # with AVX2 kernels only products ROWS_DEPTH wide (LeNet's are 5 and 30)
        assert all(convkernels._filter_by_rows(g, np) == small for g in lenet)
        assert convkernels._filter_by_rows(wide, np)
        assert not convkernels._filter_by_rows(geometry(16, 32, (5, 5)), np)


@pytest.mark.parametrize("path", ["columns", "grid", "rows"])
def test_bias_folded_or_added(path, monkeypatch):
    """The bias folded into the product (a row of ones under the columns) or added to the
    output (columns of more than ``FOLD_ROWS`` rows), on each path of the forward, with and
    without the ReLU, against the reference."""
    _grid(monkeypatch, path == "grid")
    _rows(monkeypatch, path == "rows")
    rng = np.random.default_rng(8)
    x = rng.standard_normal((3, 4, 9, 8))
    w = rng.standard_normal((5, 4, 3, 2))
    bias = rng.standard_normal(5)
    geo = convkernels.Geometry(x.shape, w.shape, (1, 1), ((1, 0), (2, 1)), (1, 2), 1)
    plain = reference(x, w, np.zeros((3, 5) + geo.out), (1, 1), ((1, 0), (2, 1)), (1, 2), 1)[0]
    want = plain + bias[:, None, None]
    for rows in (10 ** 6, 0):  # folded, added
        monkeypatch.setattr(convkernels, "FOLD_ROWS", rows)
        np.testing.assert_allclose(convkernels.forward(x, w, geo, bias=bias), want,
                                   atol=1e-12)
        np.testing.assert_allclose(convkernels.forward(x, w, geo, bias=bias, relu=True),
                                   np.maximum(want, 0), atol=1e-12)


def test_grid_junk_positions_raise_no_floating_point_error(monkeypatch):
    # review of e5b59f5: the grid's positions past a row's outputs wrap into the next row;
    # an inf at a row's end with a -inf at the next row's start (no real window holds both)
    # made the thrown-away product warn "invalid value" (an error under np.errstate, and in
    # the suite), where the outputs hold no NaN; the columns path never saw those positions
    _grid(monkeypatch, True)
    x = np.zeros((1, 1, 6, 6))
    x[0, 0, 0, 5], x[0, 0, 1, 0] = np.inf, -np.inf
    w = np.ones((1, 1, 3, 3))
    geo = convkernels.Geometry(x.shape, w.shape, (1, 1), ((0, 0), (0, 0)), (1, 1), 1)
    assert convkernels._on_grid(geo, np)
    with np.errstate(all="raise"):
        got = convkernels.forward(x, w, geo, bias=np.zeros(1), relu=True)
    want = reference(x, w, np.zeros((1, 1) + geo.out), (1, 1), ((0, 0), (0, 0)), (1, 1), 1)[0]
    np.testing.assert_array_equal(got, np.maximum(want, 0))
