"""Pooling: forward against naive loops written here, the max-pool gradient's routing (first
maximum on ties), derivatives to second order, bad input."""

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fluxml as fl
from fluxml.nnlib import (
    adaptive_maxpool,
    adaptive_meanpool,
    global_maxpool,
    global_meanpool,
    lppool,
    maxpool,
    meanpool,
)
from fluxml.testing import check_grads


def naive_pool(x, kernel, stride, pads, dilation, reduce, fill):
    xp = np.pad(x, [(0, 0), (0, 0)] + list(pads), constant_values=fill)
    out = tuple((n - dl * (k - 1) - 1) // s + 1
                for n, k, s, dl in zip(xp.shape[2:], kernel, stride, dilation))
    y = np.zeros(x.shape[:2] + out)
    for n, c in itertools.product(*map(range, x.shape[:2])):
        for pos in itertools.product(*map(range, out)):
            window = [xp[(n, c) + tuple(p * s + q * dl for p, q, s, dl
                                          in zip(pos, off, stride, dilation))]
                      for off in itertools.product(*map(range, kernel))]
            y[(n, c) + pos] = reduce(window)
    return y


def naive_adaptive(x, out, reduce):
    y = np.zeros(x.shape[:2] + out)
    for pos in itertools.product(*map(range, out)):
        box = tuple(slice(i * n // m, math.ceil((i + 1) * n / m))
                    for i, n, m in zip(pos, x.shape[2:], out))
        for n, c in itertools.product(*map(range, x.shape[:2])):
            y[(n, c) + pos] = reduce(x[(n, c) + box].ravel())
    return y


# (spatial size, kernel, stride, pad, dilation)
CASES = [
    ((7,), (2,), (2,), ((0, 0),), (1,)),
    ((8,), (3,), (2,), ((1, 1),), (1,)),
    ((6, 7), (2, 2), (2, 2), ((0, 0), (0, 0)), (1, 1)),
    ((6, 7), (3, 3), (1, 2), ((1, 1), (0, 1)), (1, 1)),
    ((7, 7), (2, 3), (2, 1), ((1, 0), (1, 1)), (2, 1)),
    ((4, 5, 4), (2, 2, 2), (2, 2, 2), ((0, 0),) * 3, (1, 1, 1)),
    ((5, 4, 5), (3, 2, 2), (1, 2, 1), ((1, 1), (0, 0), (1, 0)), (1, 1, 2)),
]


def _x(size, seed=0, n=2, c=2):
    return np.random.default_rng(seed).standard_normal((n, c) + size)


@pytest.mark.parametrize("size, kernel, stride, pads, dilation", CASES)
def test_maxpool_matches_naive_loops_and_derivatives(size, kernel, stride, pads, dilation):
    x = _x(size)
    y = maxpool(x, kernel, stride=stride, pad=pads, dilation=dilation)
    np.testing.assert_array_equal(y, naive_pool(x, kernel, stride, pads, dilation, max, -np.inf))
    check_grads(lambda x: maxpool(x, kernel, stride=stride, pad=pads, dilation=dilation), x[:1])


@pytest.mark.parametrize("size, kernel, stride, pads, dilation", CASES)
def test_meanpool_and_lppool_match_naive_loops(size, kernel, stride, pads, dilation):
    if dilation != (1,) * len(size):
        return  # mean and lp pooling take no dilation (as Flux's and PyTorch's)
    x = _x(size)
    y = meanpool(x, kernel, stride=stride, pad=pads)
    np.testing.assert_allclose(y, naive_pool(x, kernel, stride, pads, dilation, np.mean, 0.0),
                               atol=1e-12)
    y = lppool(x, 3, kernel, stride=stride, pad=pads)
    lp = lambda w: np.sum(np.abs(w) ** 3) ** (1 / 3)
    np.testing.assert_allclose(y, naive_pool(x, kernel, stride, pads, dilation, lp, 0.0),
                               atol=1e-12)
    check_grads(lambda x: meanpool(x, kernel, stride=stride, pad=pads), x[:1])
    check_grads(lambda x: lppool(x, 3, kernel, stride=stride, pad=pads), x[:1])


@pytest.mark.parametrize("size, out", [((7,), (3,)), ((6, 7), (4, 3)), ((5, 6, 4), (2, 3, 4)),
                                       ((6, 6), (3, 2)), ((3,), (5,)), ((2, 5), (3, 7))])
def test_adaptive_pools_match_naive_loops(size, out):
    """(An out_size above the size gives overlapping windows, as PyTorch's.)"""
    x = _x(size)
    np.testing.assert_array_equal(adaptive_maxpool(x, out), naive_adaptive(x, out, np.max))
    np.testing.assert_allclose(adaptive_meanpool(x, out), naive_adaptive(x, out, np.mean),
                               atol=1e-12)
    check_grads(lambda x: adaptive_maxpool(x, out), x[:1])
    check_grads(lambda x: adaptive_meanpool(x, out), x[:1])
    # integers averaged as floats, as meanpool does (the weights were cast to int: zeros)
    k = np.arange(x.size).reshape(x.shape)
    np.testing.assert_allclose(adaptive_meanpool(k, out), naive_adaptive(k, out, np.mean))
    b = k % 3 == 0  # booleans: the maximum is any (NumPy had no lowest boolean for padding)
    np.testing.assert_array_equal(adaptive_maxpool(b, out), naive_adaptive(b, out, np.max))
    np.testing.assert_array_equal(global_maxpool(b), b.max(axis=tuple(range(2, b.ndim)),
                                                           keepdims=True))


def test_global_pools():
    x = _x((3, 4, 2))
    np.testing.assert_array_equal(global_maxpool(x), x.max(axis=(2, 3, 4), keepdims=True))
    np.testing.assert_allclose(global_meanpool(x), x.mean(axis=(2, 3, 4), keepdims=True))
    check_grads(global_maxpool, x)
    check_grads(global_meanpool, x)


def test_max_gradient_goes_to_the_first_maximum():
    x = np.array([[[[1.0, 1.0, 0.0], [1.0, 0.0, 2.0], [2.0, 2.0, 2.0]]]])
    g, = fl.gradient(lambda x: np.sum(maxpool(x, 2, stride=1)), x)
    # windows: top-left ties at (0, 0); top-right 2 at (1, 2); bottom-left 2 at (2, 0);
    # bottom-right 2 at (1, 2) first (row-major), not at (2, 1) or (2, 2)
    np.testing.assert_array_equal(g, [[[[1, 0, 0], [0, 0, 2], [1, 0, 0]]]])
    g, = fl.gradient(lambda x: np.sum(adaptive_maxpool(x, (1, 1))), x)
    np.testing.assert_array_equal(g, [[[[0, 0, 0], [0, 0, 1], [0, 0, 0]]]])


def test_maxpool_second_order_routes_through_the_same_positions():
    x = _x((6, 6), n=1)

    def inner(x):
        return fl.gradient(lambda x: np.sum(maxpool(x, 3, stride=1, pad=1) ** 2), x)[0]

    check_grads(inner, x, order=1)  # overlapping windows: the scatter adds


def test_float32_stays_float32():
    x = _x((6, 6)).astype(np.float32)
    for f in (lambda x: maxpool(x, 2), lambda x: meanpool(x, 2), lambda x: lppool(x, 2, 2),
              lambda x: adaptive_maxpool(x, 4), lambda x: adaptive_meanpool(x, 4),
              global_maxpool, global_meanpool):
        assert f(x).dtype == np.float32
        assert fl.gradient(lambda x: np.sum(f(x)), x)[0].dtype == np.float32


@settings(max_examples=15, deadline=None)
@given(st.data())
def test_maxpool_random_configurations(data):
    d = data.draw(st.integers(1, 3))
    kernel = tuple(data.draw(st.integers(1, 3)) for _ in range(d))
    stride = tuple(data.draw(st.integers(1, 3)) for _ in range(d))
    pads = tuple((data.draw(st.integers(0, k // 2)), data.draw(st.integers(0, k // 2)))
                 for k in kernel)
    size = tuple(k + data.draw(st.integers(0, 4 - d)) for k in kernel)
    x = np.round(_x(size, seed=data.draw(st.integers(0, 99)), n=1), 1)  # ties happen
    y = maxpool(x, kernel, stride=stride, pad=pads)
    np.testing.assert_array_equal(y, naive_pool(x, kernel, stride, pads, (1,) * d, max,
                                                -np.inf))
    np.testing.assert_allclose(meanpool(x, kernel, stride=stride, pad=pads),
                               naive_pool(x, kernel, stride, pads, (1,) * d, np.mean, 0.0),
                               atol=1e-12)


@pytest.mark.parametrize("kernel, stride, pads, dilation", [
    ((2, 2), (2, 2), ((0, 0), (0, 0)), (1, 1)),   # LeNet's
    ((3, 2), (1, 2), ((1, 1), (0, 1)), (2, 1)),
    ((1, 3), (2, 1), ((0, 0), (1, 1)), (1, 1)),
    ((1, 1), (2, 3), ((0, 0), (0, 0)), (1, 1)),   # no reduction: strided picks
    ((1, 1), (1, 1), ((0, 0), (0, 0)), (1, 1)),   # the input itself
])
def test_maxpool_axis_by_axis_with_nan_dtypes_and_a_new_array(kernel, stride, pads, dilation):
    """The forward's maximum taken one spatial axis at a time against the naive loops, with
    NaN in some windows (kept), in float32, int and bool; the result is a new contiguous
    array, never a view of the input (windows of one entry)."""
    rng = np.random.default_rng(3)
    x = np.round(rng.standard_normal((2, 3, 7, 8)), 1)
    x[0, 1, 2, 3] = x[1, 2, 6, 0] = np.nan
    want = naive_pool(x, kernel, stride, pads, dilation, lambda w: np.max(w), -np.inf)
    for a in (x, x.astype(np.float32)):
        y = maxpool(a, kernel, stride=stride, pad=pads, dilation=dilation)
        assert y.dtype == a.dtype and y.flags.c_contiguous and not np.shares_memory(y, a)
        np.testing.assert_array_equal(y, want.astype(a.dtype))
    if not any(lo or hi for lo, hi in pads):  # (integers and booleans: no -inf to pad with)
        ints = (np.nan_to_num(x) * 10).astype(np.int64)
        for a in (ints, ints > 0):
            y = maxpool(a, kernel, stride=stride, pad=pads, dilation=dilation)
            assert y.dtype == a.dtype and not np.shares_memory(y, a)
            np.testing.assert_array_equal(y, naive_pool(a, kernel, stride, pads, dilation, max,
                                                        0).astype(a.dtype))


BAD = [
    (lambda: maxpool(np.ones((4, 4)), 2), r"maxpool: input must be .*got shape \(4, 4\)"),
    (lambda: maxpool(np.ones((1, 1, 4, 4)), 5), "larger than the padded input"),
    (lambda: maxpool(np.ones((1, 1, 4, 4)), 2, pad=2), "at most half the window"),
    (lambda: maxpool(np.ones((1, 1, 4, 4)), (2, 2, 2)), "kernel must be"),
    (lambda: meanpool(np.ones((1, 1, 4, 4)), 2, stride=0), "stride must be"),
    (lambda: lppool(np.ones((1, 1, 4, 4)), 0, 2), "p must be a finite number > 0"),
    (lambda: lppool(np.ones((1, 1, 4, 4)), np.inf, 2), "p must be a finite number > 0"),
    (lambda: adaptive_maxpool(np.ones((1, 1, 4, 4)), (0, 2)), "out_size must be"),
    (lambda: adaptive_meanpool(np.ones((1, 1, 4, 4)), (2, 2, 2)), "out_size must be"),
    (lambda: global_meanpool(np.ones(3)), "global_meanpool: input must be"),
]


@pytest.mark.parametrize("call, message", BAD)
def test_bad_input_is_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# --- disjoint windows without padding: the gradient through each window's choice -------------

def _by_positions(x, g, kernel, **geo):
    """The gradient of max pooling through the flat positions' scatter (the other path)."""
    from fluxml.nnlib import pool

    geo = dict(kernel=kernel, stride=geo.get("stride", kernel), pads=((0, 0),) * len(kernel),
               dilation=geo.get("dilation", (1,) * len(kernel)))
    best = pool.MAXPOOL(x, **geo)
    idx = pool._maxpool_positions(x, best, **geo)
    return pool._scatter(g, idx, shape=x.shape, unique=True)


@pytest.mark.parametrize("size, kernel, stride, dilation", [
    ((6, 8), (2, 2), (2, 2), (1, 1)),      # tiled (LeNet's pools)
    ((7, 9), (2, 3), (3, 3), (1, 1)),      # gaps between windows, a remainder
    ((9,), (2,), (4,), (2,)),              # dilated
    ((4, 4, 6), (2, 2, 3), (2, 2, 3), (1, 1, 1)),
])
def test_disjoint_windows_route_as_the_positions(size, kernel, stride, dilation):
    x = np.round(_x(size, seed=3), 0)  # many ties
    x.reshape(-1)[::7] = np.nan
    y = maxpool(x, kernel, stride=stride, dilation=dilation)
    g = _x(y.shape[2:], seed=4)
    g.reshape(-1)[::5] = np.inf  # an infinite cotangent stays in its place
    ours, = fl.pullback(lambda x: maxpool(x, kernel, stride=stride, dilation=dilation), x)[1](g)
    ref = _by_positions(x, g, kernel, stride=stride, dilation=dilation)
    np.testing.assert_array_equal(ours, ref)
    x32 = x.astype(np.float32)
    ours, = fl.pullback(lambda x: maxpool(x, kernel, stride=stride, dilation=dilation),
                        x32)[1](g.astype(np.float32))
    assert ours.dtype == np.float32
    np.testing.assert_array_equal(ours, ref.astype(np.float32))


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_first_order_kernel_equals_the_choices_and_put(data):
    # the eager first-order gradient (_window_grad: one loop, the last entry's mask as "no
    # match before") gives what WINDOW_PUT of the window choices gives, to the bit: ties,
    # NaN maxima, infinite cotangents, -0.0 against 0.0, 1 to 3 spatial axes, gaps and
    # dilated windows, float32 and float64
    d = data.draw(st.integers(1, 3))
    kernel = tuple(data.draw(st.integers(1, 3)) for _ in range(d))
    dilation = tuple(data.draw(st.integers(1, 2)) if k > 1 else 1 for k in kernel)
    stride = tuple(dl * (k - 1) + 1 + data.draw(st.integers(0, 1))
                   for k, dl in zip(kernel, dilation))
    size = tuple(dl * (k - 1) + 1 + data.draw(st.integers(0, 5))
                 for k, dl in zip(kernel, dilation))
    rng = np.random.default_rng(data.draw(st.integers(0, 999)))
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    x = np.round(rng.standard_normal((2, 2) + size) * 2).astype(dtype)  # many ties
    x[x == 0] = data.draw(st.sampled_from([0.0, -0.0]))
    if data.draw(st.booleans()):
        x.reshape(-1)[::5] = np.nan
    geo = dict(kernel=kernel, stride=stride, pads=((0, 0),) * d, dilation=dilation)
    best = maxpool(x, kernel, stride=stride, dilation=dilation)
    g = rng.standard_normal(best.shape).astype(dtype)
    if data.draw(st.booleans()):
        g.reshape(-1)[::3] = np.inf
    from fluxml.nnlib import pool

    got = pool._window_grad(g, x, best, kernel=kernel, stride=stride, dilation=dilation)
    sel = pool._choices(x, best, **geo)
    want = pool._window_put(g, sel, shape=x.shape, kernel=kernel, stride=stride,
                            dilation=dilation)
    np.testing.assert_array_equal(got, want)
    assert got.dtype == want.dtype


def test_disjoint_windows_second_order_and_forward_mode():
    x = _x((6, 6), n=1)

    def inner(x):
        return fl.gradient(lambda x: np.sum(maxpool(x, 2) ** 2), x)[0]

    check_grads(inner, x, order=1)  # reverse over reverse, forward over reverse
    check_grads(lambda x: maxpool(x, (2, 3), stride=(3, 3)), x)


@pytest.mark.parametrize("kernel, stride, pad", [((3, 3), (2, 2), 1), ((2, 2), (2, 2), 1),
                                                 ((3, 2), (1, 2), (1, 0))])
def test_gradient_of_padded_windows_with_nan_or_only_lowest_values(kernel, stride, pad):
    """A window's gradient goes to its first NaN where its maximum is NaN (as PyTorch), and to
    its first real entry where every entry is -inf, never to a padding slot (which once sent
    it to the previous row or sample). Checked against a loop over the windows."""
    x = np.round(_x((5, 6), seed=5), 0)
    x[0, 0, 0, 0] = x[1, 1, 2, 3] = np.nan
    x[1, 0] = -np.inf
    x[0, 1, :2, :3] = -np.inf
    pads = (pad, pad) if isinstance(pad, int) else pad
    g, = fl.gradient(lambda x: np.sum(maxpool(x, kernel, stride=stride, pad=pad)), x)
    want = np.zeros_like(x)
    out = [(n + 2 * p - k) // s + 1 for n, k, s, p in zip(x.shape[2:], kernel, stride, pads)]
    for b, c, i, j in np.ndindex(*x.shape[:2], *out):
        slots = [(r, q) for r in range(i * stride[0] - pads[0], i * stride[0] - pads[0] + kernel[0])
                 for q in range(j * stride[1] - pads[1], j * stride[1] - pads[1] + kernel[1])
                 if 0 <= r < x.shape[2] and 0 <= q < x.shape[3]]
        values = [x[b, c, r, q] for r, q in slots]
        nans = [k for k, v in enumerate(values) if np.isnan(v)]
        pick = nans[0] if nans else int(np.argmax(values))
        want[(b, c) + slots[pick]] += 1
    np.testing.assert_array_equal(g, want)


def naive_maxpool_gradient(x, g, kernel, stride, dilation):
    """Each window's cotangent added at its first maximum (no padding)."""
    out = g.shape[2:]
    dx = np.zeros_like(x)
    for n, c in itertools.product(*map(range, x.shape[:2])):
        for pos in itertools.product(*map(range, out)):
            at = [tuple(p * s + q * dl for p, q, s, dl in zip(pos, off, stride, dilation))
                  for off in itertools.product(*map(range, kernel))]
            best = max(at, key=lambda a: (x[(n, c) + a], -at.index(a)))
            dx[(n, c) + best] += g[(n, c) + pos]
    return dx


@pytest.mark.parametrize("size, kernel, stride, dilation", [
    ((4,), (1,), (2,), (2,)), ((4, 6), (1, 2), (2, 4), (2, 2)), ((8,), (2,), (4,), (2,)),
    ((4, 4), (2, 2), (2, 2), (1, 1))])
def test_maxpool_gradient_of_dilated_windows_that_skip_entries(size, kernel, stride, dilation):
    """Windows whose kernel * dilation equals the stride but that skip entries (dilated) were
    taken as tiling the input: the gradient's untouched entries were left uninitialised
    (found by tests/nnlib/torch_fuzz.py against torch)."""
    x = np.random.default_rng(5).standard_normal((2, 2) + size)
    y = maxpool(x, kernel, stride=stride, dilation=dilation)
    np.testing.assert_array_equal(y, naive_pool(x, kernel, stride, ((0, 0),) * len(size),
                                                dilation, np.max, -np.inf))
    g = np.random.default_rng(6).standard_normal(y.shape)
    for _ in range(3):  # fresh np.empty memory each time
        (dx,) = fl.pullback(lambda x: maxpool(x, kernel, stride=stride, dilation=dilation),
                            x)[1](g)
        np.testing.assert_array_equal(dx, naive_maxpool_gradient(x, g, kernel, stride,
                                                                 dilation))


@pytest.mark.parametrize("p", [1.0, 1.5, 2.0, 3.0])
def test_lppool_gradient_of_a_window_of_zeros_is_zero(p):
    """A window of zeros (common after a ReLU) gave NaN gradients for p > 1: the root's
    infinite derivative at 0 times the sum's 0. Its gradient is 0 (PyTorch's), forward mode
    and second order too; the other windows keep theirs."""
    x = np.array([[[0.0, 0.0, 1.5, -2.0, 0.0, 3.0]]])
    (g,) = fl.gradient(lambda x: np.sum(lppool(x, p, 2)), x)
    want = np.zeros_like(x)
    for w in range(3):
        part = x[0, 0, 2 * w:2 * w + 2]
        norm = np.sum(np.abs(part) ** p) ** (1 / p)
        if norm:
            want[0, 0, 2 * w:2 * w + 2] = np.abs(part) ** (p - 1) * np.sign(part) \
                * norm ** (1 - p)
    np.testing.assert_allclose(g, want, rtol=1e-12, atol=0)
    _, t = fl.jvp(lambda x: lppool(x, p, 2), (x,), (np.ones_like(x),))
    np.testing.assert_allclose(t[0, 0], [0.0, np.sum(want[0, 0, 2:4]), np.sum(want[0, 0, 4:])],
                               rtol=1e-12)
    if p != 1.5:  # (|x|^1.5 has an infinite second derivative at 0)
        h = fl.hessian(lambda x: np.sum(lppool(x, p, 2)), x)
        assert np.all(h[0, 0, :2] == 0) and np.all(h[0, 0, :, :, :, :2] == 0)
    assert np.isnan(lppool(np.array([[[np.nan, 1.0]]]), p, 2)).all()  # NaN stays NaN
