"""conv, depthwise_conv, conv_transpose: forward against naive loops written here, derivatives
against finite differences (first and second order, both modes), bad input."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fluxml as fl
from fluxml.nnlib import conv, conv_transpose, convkernels, depthwise_conv
from fluxml.testing import check_grads


def naive_conv(x, w, stride, pads, dilation, groups):
    """Cross-correlation, one output entry at a time."""
    d = x.ndim - 2
    xp = np.pad(x, [(0, 0), (0, 0)] + list(pads))
    n_, c_ = x.shape[:2]
    o_, k = w.shape[0], w.shape[2:]
    cg, og = c_ // groups, o_ // groups
    out = tuple((xp.shape[2 + i] - dilation[i] * (k[i] - 1) - 1) // stride[i] + 1
                for i in range(d))
    y = np.zeros((n_, o_) + out)
    for n, o in itertools.product(range(n_), range(o_)):
        g = o // og
        for pos in itertools.product(*map(range, out)):
            acc = 0.0
            for c in range(cg):
                for off in itertools.product(*map(range, k)):
                    at = tuple(p * s + q * dl for p, q, s, dl in zip(pos, off, stride, dilation))
                    acc += w[(o, c) + off] * xp[(n, g * cg + c) + at]
            y[(n, o) + pos] = acc
    return y


def naive_conv_transpose(x, w, stride, pads, dilation, groups, outpad):
    """Each input entry scatters the kernel times itself into the output."""
    n_, c_ = x.shape[:2]
    k = w.shape[2:]
    cg, og = c_ // groups, w.shape[1]
    full = tuple((n - 1) * s + dl * (kk - 1) + 1 + p
                 for n, s, dl, kk, p in zip(x.shape[2:], stride, dilation, k, outpad))
    y = np.zeros((n_, og * groups) + full)
    for n, c in itertools.product(range(n_), range(c_)):
        g = c // cg
        for pos in itertools.product(*map(range, x.shape[2:])):
            for o in range(og):
                for off in itertools.product(*map(range, k)):
                    at = tuple(p * s + q * dl for p, q, s, dl in zip(pos, off, stride, dilation))
                    y[(n, g * og + o) + at] += x[(n, c) + pos] * w[(c, o) + off]
    crop = tuple(slice(lo, f - hi) for (lo, hi), f in zip(pads, full))
    return y[(slice(None), slice(None)) + crop]


def _pairs(pad, d):
    if isinstance(pad, int):
        return ((pad, pad),) * d
    if len(pad) == d and isinstance(pad[0], int):
        return tuple((p, p) for p in pad)
    if len(pad) == 2 * d:
        return tuple((pad[2 * i], pad[2 * i + 1]) for i in range(d))
    return tuple(pad)


# (spatial size, kernel, channels in, out, stride, pad, dilation, groups)
CASES = [
    ((7,), (3,), 2, 3, 1, 0, 1, 1),
    ((8,), (3,), 4, 2, 2, (1, 2), 2, 2),
    ((5, 6), (3, 2), 2, 3, 1, 1, 1, 1),
    ((6, 7), (3, 3), 2, 4, (2, 1), (0, 1, 2, 1), 1, 2),
    ((7, 6), (2, 3), 3, 3, 1, ((1, 0), (0, 2)), (2, 1), 3),  # depthwise, asymmetric, dilated
    ((5, 5), (3, 3), 2, 2, 2, 1, 2, 1),
    ((4, 5, 4), (2, 3, 2), 2, 2, 1, (1, 0, 1), 1, 1),
    ((5, 4, 4), (3, 2, 2), 2, 4, (2, 1, 2), 1, (1, 2, 1), 2),
]


def _inputs(size, kernel, c, o, groups, dtype=np.float64, n=2, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c) + size).astype(dtype)
    w = rng.standard_normal((o, c // groups) + kernel).astype(dtype)
    return x, w


@pytest.mark.parametrize("case", CASES)
def test_conv_matches_naive_loops(case):
    size, kernel, c, o, stride, pad, dilation, groups = case
    d = len(size)
    x, w = _inputs(size, kernel, c, o, groups)
    y = conv(x, w, stride=stride, pad=pad, dilation=dilation, groups=groups)
    st_, dl = (stride,) * d if isinstance(stride, int) else stride, (
        (dilation,) * d if isinstance(dilation, int) else dilation)
    np.testing.assert_allclose(y, naive_conv(x, w, st_, _pairs(pad, d), dl, groups), atol=1e-12)


@pytest.mark.parametrize("case", CASES)
def test_conv_derivatives(case):
    size, kernel, c, o, stride, pad, dilation, groups = case
    x, w = _inputs(size, kernel, c, o, groups, n=1)
    check_grads(lambda x, w: conv(x, w, stride=stride, pad=pad, dilation=dilation,
                                  groups=groups), x, w, order=2)


@pytest.mark.parametrize("case", CASES)
def test_blocks_of_one_sample(case, monkeypatch):
    """The kernels work on blocks of samples sized to the cache: with one sample a block (and
    a non-contiguous input) the results are those of the naive loops, the derivatives those of
    finite differences."""
    monkeypatch.setattr(convkernels, "BLOCK_BYTES", 1)
    size, kernel, c, o, stride, pad, dilation, groups = case
    d = len(size)
    x, w = _inputs(size, kernel, c, o, groups, n=3)
    x = np.swapaxes(np.swapaxes(x, 0, 1).copy(), 0, 1)  # the same values, strided
    st_ = (stride,) * d if isinstance(stride, int) else stride
    dl = (dilation,) * d if isinstance(dilation, int) else dilation
    y = conv(x, w, stride=stride, pad=pad, dilation=dilation, groups=groups)
    np.testing.assert_allclose(y, naive_conv(x, w, st_, _pairs(pad, d), dl, groups), atol=1e-12)
    check_grads(lambda x, w: conv(x, w, stride=stride, pad=pad, dilation=dilation,
                                  groups=groups), x, w, order=1, modes=("rev",))


@pytest.mark.parametrize("case", CASES)
def test_conv_transpose_matches_naive_loops_and_derivatives(case):
    size, kernel, c, o, stride, pad, dilation, groups = case
    d = len(size)
    st_ = (stride,) * d if isinstance(stride, int) else stride
    dl = (dilation,) * d if isinstance(dilation, int) else dilation
    outpad = tuple(min(s, q) - 1 for s, q in zip(st_, dl)) if max(st_) > 1 else 0
    pads = _pairs(pad, d)
    x, w = _inputs(size, kernel, c, o, groups)
    w = np.swapaxes(w, 0, 1).reshape((c, o // groups) + kernel)  # (in, out / groups, *k)
    y = conv_transpose(x, w, stride=stride, pad=pad, dilation=dilation, groups=groups,
                       output_padding=outpad)
    want = naive_conv_transpose(x, w, st_, pads, dl, groups,
                                outpad if outpad != 0 else (0,) * d)
    np.testing.assert_allclose(y, want, atol=1e-12)
    check_grads(lambda x, w: conv_transpose(x, w, stride=stride, pad=pad, dilation=dilation,
                                            groups=groups, output_padding=outpad),
                x[:1], w, order=2)


@pytest.mark.parametrize("stride, dilation, outpad", [
    ((1,), (3,), (2,)), ((2, 1), (3, 3), (2, 2)), ((2, 1, 3), (3, 2, 4), (1, 1, 3))])
def test_conv_transpose_output_padding_beyond_the_stride(stride, dilation, outpad):
    """output_padding may reach the dilation (as PyTorch's): at least the stride, the
    output's high rows have no window of x (found by tests/nnlib/torch_fuzz.py: a wrong
    shape with unit strides, a reshape error otherwise)."""
    d = len(stride)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 2) + (3, 2, 2)[:d])
    w = rng.standard_normal((2, 3) + (3, 2, 2)[:d])
    pads = ((1, 1), (0, 0), (1, 1))[:d]
    y = conv_transpose(x, w, stride=stride, pad=tuple(p for p, _ in pads), dilation=dilation,
                       output_padding=outpad)
    np.testing.assert_allclose(y, naive_conv_transpose(x, w, stride, pads, dilation, 1, outpad),
                               atol=1e-12)
    check_grads(lambda x, w: conv_transpose(x, w, stride=stride, dilation=dilation,
                                            output_padding=outpad), x[:1], w, order=1)


def test_flipped_is_true_convolution():
    x = np.array([[[0.0, 1.0, 2.0, 3.0]]])
    w = np.array([[[1.0, 2.0]]])
    np.testing.assert_allclose(conv(x, w, flipped=True), [[[np.convolve(x[0, 0], w[0, 0],
                                                                        "valid")]]][0])
    np.testing.assert_allclose(conv(x, w), [[[2.0, 5.0, 8.0]]])
    check_grads(lambda x, w: conv(x, w, flipped=True), x, w)


def test_same_padding_keeps_size():
    x, w = _inputs((7, 6), (4, 3), 2, 3, 1)
    assert conv(x, w, pad="same").shape == (2, 3, 7, 6)
    assert conv(x, w, pad="same", dilation=2).shape == (2, 3, 7, 6)
    assert conv(x, w, pad="same", stride=2).shape == (2, 3, 4, 3)
    # PyTorch's rule: the odd padding goes to the high side
    np.testing.assert_allclose(conv(x, w, pad="same"), conv(x, w, pad=((1, 2), (1, 1))))


def test_depthwise_conv():
    x, w = _inputs((6, 5), (3, 3), 3, 6, 3)
    np.testing.assert_allclose(depthwise_conv(x, w, pad=1),
                               naive_conv(x, w, (1, 1), ((1, 1), (1, 1)), (1, 1), 3), atol=1e-12)


def test_transpose_is_the_input_gradient():
    x, w = _inputs((6, 7), (3, 2), 2, 4, 2)
    opts = dict(stride=2, pad=(1, 0, 0, 1), groups=2)
    g = np.random.default_rng(1).standard_normal(conv(x, w, **opts).shape)
    dx, = fl.gradient(lambda x: np.sum(conv(x, w, **opts) * g), x)
    # PyTorch's layouts: conv's (out, in / groups, *k) is conv_transpose's (in, out / groups, *k)
    np.testing.assert_allclose(conv_transpose(g, w, **opts), dx,
                               atol=1e-12)


def test_float32_stays_float32():
    x, w = _inputs((6, 6), (3, 3), 2, 2, 1, dtype=np.float32)
    y = conv(x, w, pad=1)
    assert y.dtype == np.float32
    gx, gw = fl.gradient(lambda x, w: np.sum(conv(x, w, stride=2) ** 2), x, w)
    assert gx.dtype == np.float32 and gw.dtype == np.float32
    assert conv_transpose(y, w, stride=2).dtype == np.float32


def test_second_order_through_a_small_cnn():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 1, 6, 6))
    w1, w2 = rng.standard_normal((2, 1, 3, 3)), rng.standard_normal((3, 2, 2, 2))

    def loss(w1, w2):
        h = np.tanh(conv(x, w1, pad=1))
        return np.sum(conv(h, w2, stride=2) ** 2)

    check_grads(lambda w1, w2: fl.gradient(loss, w1, w2), w1, w2, order=1)

    def lenet(w1, w2):  # conv, max pool, conv, mean pool: a Hessian-vector product
        h = fl.nnlib.maxpool(np.tanh(conv(x, w1, pad=1)), 2)
        return np.sum(fl.nnlib.meanpool(conv(h, w2, pad="same"), 3) ** 2)

    check_grads(lambda w1, w2: fl.gradient(lenet, w1, w2), w1, w2, order=1)


@settings(max_examples=12, deadline=None)
@given(st.data())
def test_conv_random_configurations(data):
    d = data.draw(st.integers(1, 3))
    groups = data.draw(st.sampled_from([1, 2]))
    c, o = groups * data.draw(st.integers(1, 2)), groups * data.draw(st.integers(1, 2))
    kernel = tuple(data.draw(st.integers(1, 3)) for _ in range(d))
    stride = tuple(data.draw(st.integers(1, 3)) for _ in range(d))
    dilation = tuple(data.draw(st.integers(1, 2)) for _ in range(d))
    pads = tuple((data.draw(st.integers(0, 2)), data.draw(st.integers(0, 2))) for _ in range(d))
    size = tuple(max(dl * (k - 1) + 1 - lo - hi, 1) + data.draw(st.integers(0, 4 - d))
                 for k, dl, (lo, hi) in zip(kernel, dilation, pads))
    x, w = _inputs(size, kernel, c, o, groups, n=1, seed=data.draw(st.integers(0, 99)))
    y = conv(x, w, stride=stride, pad=pads, dilation=dilation, groups=groups)
    np.testing.assert_allclose(y, naive_conv(x, w, stride, pads, dilation, groups), atol=1e-12)
    # the transposed convolution is the adjoint: <conv(x), g> = <x, conv_transpose(g)>
    g = np.random.default_rng(0).standard_normal(y.shape)
    extra = tuple(n + lo + hi - dl * (k - 1) - 1 - (m - 1) * s for n, (lo, hi), dl, k, m, s
                  in zip(size, pads, dilation, kernel, y.shape[2:], stride))
    if all(e < max(s, dl) for e, s, dl in zip(extra, stride, dilation)):
        back = conv_transpose(g, w, stride=stride, pad=pads, dilation=dilation, groups=groups,
                              output_padding=extra)
        assert back.shape == x.shape
        np.testing.assert_allclose(np.sum(back * x), np.sum(y * g), rtol=1e-10, atol=1e-10)


# --- bad input --------------------------------------------------------------------------------

BAD = [
    (lambda: conv(np.ones((2, 3, 5, 5)), np.ones((4, 2, 3, 3))),
     r"weight \(4, 2, 3, 3\) expects input \(N, 2, ...\).*got \(2, 3, 5, 5\) with 3 channels"),
    (lambda: conv(np.ones((5, 5)), np.ones((4, 3, 3, 3))), "input must be .*2 dimensions"),
    (lambda: conv(np.ones((1, 3, 5, 5)), np.ones((4, 3, 3))), "as many dimensions"),
    (lambda: conv(np.ones((1, 2, 4, 4)), np.ones((1, 2, 5, 5))), "larger than the padded input"),
    (lambda: conv(np.ones((1, 2, 4, 4)), np.ones((1, 2, 3, 3)), dilation=2),
     "larger than the padded input"),
    (lambda: conv(np.ones((1, 4, 5, 5)), np.ones((3, 2, 3, 3)), groups=2), "must divide"),
    (lambda: conv(np.ones((1, 4, 5, 5)), np.ones((4, 2, 3, 3)), groups=0), "groups must be"),
    (lambda: conv(np.ones((1, 2, 5, 5)), np.ones((4, 2, 3, 3)), stride=(1, 0)), "stride"),
    (lambda: conv(np.ones((1, 2, 5, 5)), np.ones((4, 2, 3, 3)), pad=(1, 2, 3)), "pad must be"),
    (lambda: conv(np.ones((1, 2, 5, 5)), np.ones((4, 2, 3, 3)), pad="valid"), "pad must be"),
    (lambda: conv_transpose(np.ones((1, 3, 5, 5)), np.ones((2, 4, 3, 3))),
     r"expects input \(N, 2, ...\)"),
    (lambda: conv_transpose(np.ones((1, 2, 5, 5)), np.ones((2, 4, 3, 3)), output_padding=1),
     "output_padding"),
    (lambda: conv_transpose(np.ones((1, 2, 2, 2)), np.ones((2, 4, 3, 3)), pad=3),
     "reduce the padding"),
]


@pytest.mark.parametrize("call, message", BAD)
def test_bad_input_is_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_booleans_count_as_zero_and_one():
    """Boolean input and weight gave a boolean output: each window's sum of products was a
    logical or (True where the count was 2), silently; conv_bias_act's ReLU raised NumPy's
    casting error. They count as 0 and 1, as the same arrays as integers do."""
    rng = np.random.default_rng(3)
    x, w, b = rng.random((2, 2, 6)) < 0.6, rng.random((3, 2, 3)) < 0.6, np.array([1, 0, 1]) > 0
    xi, wi, bi = x.astype(np.int64), w.astype(np.int64), b.astype(np.int64)
    loops = np.array([[[np.sum(xi[n, :, t:t + 3] * wi[o]) for t in range(4)] for o in range(3)]
                      for n in range(2)])
    np.testing.assert_array_equal(fl.nnlib.conv(x, w), loops)
    np.testing.assert_array_equal(fl.nnlib.conv(x, w, pad=1), fl.nnlib.conv(xi, wi, pad=1))
    wt = rng.random((2, 3, 3)) < 0.6
    np.testing.assert_array_equal(fl.nnlib.conv_transpose(x, wt, stride=2),
                                  fl.nnlib.conv_transpose(xi, wt.astype(np.int64), stride=2))
    for act in (None, fl.relu):
        np.testing.assert_array_equal(fl.nnlib.conv_bias_act(x, w, b, act),
                                      loops + bi[:, None])
    # (review of 6b0cb93) a float bias beside boolean products: compiled, the products
    # stayed boolean (a logical or; eagerly the kernel promoted them to float)
    bf = np.array([0.5, -1.0, 2.0])
    for compiled in (fl.compile(lambda x, w, b: fl.nnlib.conv_bias_act(x, w, b, fl.sigmoid),
                                optimise=False), fl.nnlib.conv_bias_act):
        got = compiled(x, w, bf) if compiled is not fl.nnlib.conv_bias_act else compiled(
            x, w, bf, fl.sigmoid)
        np.testing.assert_allclose(got, fl.sigmoid(loops + bf[:, None]), rtol=1e-12)
