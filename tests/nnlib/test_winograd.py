"""Winograd's F(2x2, 3x3) (nnlib/winograd.py), forced on small shapes, against the reference
of test_conv_strategies (one kernel entry at a time) and against im2col: forward (with bias
and ReLU), input gradient and weight gradient, odd and even sizes, asymmetric padding, blocks
of one sample; second order through it; the rule that picks it."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fluxml.nnlib import conv, convkernels, winograd
from fluxml.testing import check_grads
from tests.nnlib.fuzz_winograd import run_case
from tests.nnlib.test_conv_strategies import reference


@pytest.fixture
def forced(monkeypatch):
    """Every 3x3 convolution with unit strides and one group takes Winograd's algorithm."""
    _force(monkeypatch)
    return monkeypatch


def _force(monkeypatch):
    monkeypatch.setattr(winograd, "MIN_CHANNELS", 0)
    monkeypatch.setattr(winograd, "MIN_WORK", 0)


def _case(rng, n, c, o, h, w, pads, dtype):
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = rng.standard_normal((o, c, 3, 3)).astype(dtype)
    geo = convkernels.Geometry(x.shape, wt.shape, (1, 1), pads, (1, 1), 1)
    g = rng.standard_normal((n, o) + geo.out).astype(dtype)
    return x, wt, g, geo


def _three(x, w, g, geo, bias=None, relu=False):
    return (convkernels.forward(x, w, geo, bias=bias, relu=relu),
            convkernels.data(g, w, geo), convkernels.filter(x, g, geo))


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_random_configurations_against_the_reference(data):
    """Random batches, channels, sizes (odd and even, down to one output) and asymmetric
    padding, in float64 and float32, blocks of one sample or the whole batch."""
    with pytest.MonkeyPatch.context() as patch:
        _force(patch)
        _random_case(data, patch)


def _random_case(data, forced):
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 32 - 1)))
    n, c, o = (data.draw(st.integers(1, k)) for k in (3, 5, 5))
    pads = tuple((data.draw(st.integers(0, 2)), data.draw(st.integers(0, 2))) for _ in "hw")
    h, w = (data.draw(st.integers(max(1, 3 - lo - hi), 11)) for lo, hi in pads)
    dtype = data.draw(st.sampled_from([np.float64, np.float32]))
    if data.draw(st.booleans()):
        forced.setattr(winograd, "BLOCK_BYTES", 1)
    x, wt, g, geo = _case(rng, n, c, o, h, w, pads, dtype)
    want = reference(x.astype(np.float64), wt.astype(np.float64), g.astype(np.float64),
                     (1, 1), pads, (1, 1), 1)
    got = _three(x, wt, g, geo)
    tol = 1e-12 if dtype == np.float64 else 2e-5
    for a, b in zip(got, want):
        assert a.dtype == dtype
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol * np.abs(b).max())


def test_bias_and_relu_fused(forced):
    rng = np.random.default_rng(0)
    x, wt, g, geo = _case(rng, 2, 3, 4, 7, 6, ((1, 1), (1, 1)), np.float64)
    bias = rng.standard_normal(4)
    y = convkernels.forward(x, wt, geo, bias=bias, relu=True)
    want = reference(x, wt, g, (1, 1), ((1, 1), (1, 1)), (1, 1), 1)[0]
    np.testing.assert_allclose(y, np.maximum(want + bias[:, None, None], 0), atol=1e-12)


def test_agrees_with_im2col_on_a_resnet_layer(monkeypatch):
    """64 => 64 channels on 32x32 takes Winograd's algorithm by the rule on one thread;
    float32 results agree with im2col's to float32 rounding."""
    monkeypatch.setattr(winograd.threads, "limit", lambda: 1)
    rng = np.random.default_rng(1)
    x, wt, g, geo = _case(rng, 2, 64, 64, 32, 32, ((1, 1), (1, 1)), np.float32)
    assert winograd.suits(geo, np.float32, np)
    got = _three(x, wt, g, geo)
    saved = winograd.MIN_CHANNELS
    try:
        winograd.MIN_CHANNELS = 10 ** 9
        want = _three(x, wt, g, geo)
    finally:
        winograd.MIN_CHANNELS = saved
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5 * np.abs(b).max())


def test_the_rule(monkeypatch):
    monkeypatch.setattr(winograd.threads, "limit", lambda: 1)

    def geo(c, o, size, stride=1, dilation=1, groups=1, kernel=3, pad=1):
        return convkernels.Geometry((2, c, size, size), (o, c // groups, kernel, kernel),
                                    (stride,) * 2, ((pad, pad),) * 2, (dilation,) * 2, groups)
    assert winograd.suits(geo(64, 64, 32), np.float32, np)
    assert winograd.suits(geo(256, 256, 8), np.float64, np)
    assert not winograd.suits(geo(64, 64, 16), np.float32, np)  # too narrow for 64 channels
    assert not winograd.suits(geo(32, 64, 32), np.float32, np)  # too few channels
    assert not winograd.suits(geo(64, 64, 32, stride=2), np.float32, np)
    assert not winograd.suits(geo(64, 64, 32, dilation=2), np.float32, np)
    assert not winograd.suits(geo(64, 64, 32, groups=2), np.float32, np)
    assert not winograd.suits(geo(64, 64, 32, kernel=5), np.float32, np)
    assert not winograd.suits(geo(64, 64, 32), np.int64, np)
    assert not winograd.suits(geo(64, 64, 32), np.complex128, np)
    # with two threads for the BLAS's im2col products, twice the channels
    monkeypatch.setattr(winograd.threads, "limit", lambda: 2)
    assert not winograd.suits(geo(64, 64, 32), np.float32, np)
    assert winograd.suits(geo(128, 128, 16), np.float32, np)


def test_second_order_through_winograd(forced):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 2, 5, 6))
    w = rng.standard_normal((3, 2, 3, 3))
    check_grads(lambda x, w: conv(x, w, pad=((1, 0), (2, 1))), x, w, order=2)


@pytest.mark.parametrize("where", ["input", "weight", "cotangent"])
def test_non_finite_entries_as_im2col_gives_them(forced, where):
    """An infinite input, weight or cotangent entry: Winograd's transforms would spread NaN
    over whole tiles (inf - inf); the kernels give im2col's results instead, infinities and
    NaNs where those put them and finite numbers elsewhere."""
    rng = np.random.default_rng(3)
    # (no more output channels than input ones: the input gradient is then the forward of the
    # cotangent with im2col too, not col2im, whose NaNs from inf * 0 lie elsewhere)
    x, wt, g, geo = _case(rng, 2, 4, 3, 8, 9, ((1, 1), (1, 1)), np.float64)
    {"input": x, "weight": wt, "cotangent": g}[where].flat[17] = np.inf
    with np.errstate(invalid="ignore"):  # (im2col's inf * 0, in both)
        got = _three(x, wt, g, geo)
        forced.setattr(winograd, "MIN_CHANNELS", 10 ** 9)
        want = _three(x, wt, g, geo)
    assert not all(np.isfinite(b).all() for b in want)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_an_inf_in_the_input_gives_im2col_results(forced):
    """An inf takes im2col (winograd.finite): the transforms' ``inf - inf`` gave NaN where
    the convolution is -inf, which the ReLU clears to 0 (and raised under
    ``np.errstate(invalid="raise")``, where im2col's sums of one inf do not), and the flat
    grid's extra tiles (a zero cotangent times the inf) made 18 of the 45 finite weight gradients
    NaN."""
    rng = np.random.default_rng(3)
    pads = ((0, 0), (0, 0))
    x, wt, g, geo = _case(rng, 1, 2, 3, 6, 6, pads, np.float64)
    x[0, 0, 2, 5] = -np.inf  # the last column: read by the extra tile of the row above
    bias = rng.standard_normal(3)
    with np.errstate(all="ignore"):
        want_y, _, want_dw = reference(x, wt, g, (1, 1), pads, (1, 1), 1)
        want_y = np.maximum(want_y + bias[:, None, None], 0)
    assert np.isfinite(want_y).sum() > 0 and np.isfinite(want_dw).sum() == 45
    with np.errstate(invalid="raise"):
        y = convkernels.forward(x, wt, geo, bias=bias, relu=True)
    with np.errstate(all="ignore"):  # (im2col's sums of the inf times both signs: NaN)
        dw = convkernels.filter(x, g, geo)
    np.testing.assert_allclose(y, want_y, rtol=1e-12)  # (inf and NaN where they are)
    np.testing.assert_allclose(dw, want_dw, rtol=1e-12)
    # a NaN in the cotangent: the input gradient through the forward, and the weight's
    g[0, 1, 0, 0] = np.nan
    with np.errstate(all="ignore"):
        want = reference(x * 0, wt, g, (1, 1), pads, (1, 1), 1)[1:]
        got = (convkernels.data(g, wt, geo), convkernels.filter(x * 0, g, geo))
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_an_inf_weight_with_more_outputs_than_inputs_keeps_col2im(monkeypatch):
    """With more output channels than input channels the input gradient takes the flipped
    forward only for Winograd's algorithm: with an inf weight (not finite, so im2col's
    forward over the cotangent padded with zeros, 0 * inf) it gave NaN in 28 entries that
    col2im, as before Winograd's, gives finite."""
    rng = np.random.default_rng(157)
    pads = ((2, 1), (0, 0))
    x, wt, g, geo = _case(rng, 2, 3, 4, 12, 7, pads, np.float64)
    wt[1, 2, 0, 1] = np.inf
    with np.errstate(all="ignore"):
        want = convkernels.data(g, wt, geo)
        _force(monkeypatch)
        got = convkernels.data(g, wt, geo)
    assert np.isfinite(want).sum() > 0
    np.testing.assert_array_equal(got, want)


def test_fuzz_small():
    """The fuzzer (fuzz_winograd.py) on a few seeds: 40 cases forced on small shapes (a share
    with an inf or a NaN), 2 taking Winograd's algorithm by the rule, 2 compiled."""
    failures = [f for seed in range(40) for f in run_case(seed, forced=True, compiled=False)]
    failures += [f for seed in (40, 41) for f in run_case(seed, forced=False, compiled=False)]
    failures += [f for seed in (42, 43) for f in run_case(seed, forced=True, compiled=True)]
    assert not failures, "\n".join(failures)

