"""conv_bias_act (the bias and a ReLU inside the convolution's primitive) against the
composite written here (conv, then the bias broadcast, then the activation): values,
gradients of every argument, second order, forward mode, float32, the scratch path of the
ReLU's rule, bad input; and the Conv layer on it."""

import numpy as np
import pytest

import fluxml as fl
from fluxml.nnlib import conv, conv_bias_act, windows
from fluxml.testing import check_grads

OPTIONS = [
    dict(),
    dict(pad=1, stride=2),
    dict(pad=((1, 0), (0, 2)), dilation=(2, 1)),
    dict(groups=2, pad="same"),
    dict(flipped=True, pad=1),
]


def composite(x, w, b, act, **options):
    y = conv(x, w, **options)
    if b is not None:
        y = y + np.reshape(b, (-1,) + (1,) * (np.ndim(x) - 2))
    return y if act is None else act(y)


def _args(seed=0, n=2, c=4, o=6, size=(6, 5), kernel=(3, 2), groups=1, dtype=np.float64):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c) + size).astype(dtype)
    w = rng.standard_normal((o, c // groups) + kernel).astype(dtype)
    b = rng.standard_normal(o).astype(dtype)
    return x, w, b


@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize("act", [fl.relu, None, np.tanh])
def test_matches_the_composite_with_its_gradients(options, act):
    x, w, b = _args(groups=options.get("groups", 1))
    y = conv_bias_act(x, w, b, act, **options)
    np.testing.assert_allclose(y, composite(x, w, b, act, **options), rtol=1e-12, atol=1e-12)
    g = np.random.default_rng(1).standard_normal(y.shape)
    ours = fl.gradient(lambda *a: np.sum(conv_bias_act(*a, act, **options) * g), x, w, b)
    theirs = fl.gradient(lambda *a: np.sum(composite(*a, act, **options) * g), x, w, b)
    for a, r in zip(ours, theirs):
        np.testing.assert_allclose(a, r, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("act", [fl.relu, None])
def test_derivatives_to_second_order(act):
    x, w, b = _args(n=1, c=2, o=3, size=(5, 4), kernel=(2, 2))
    x += 0.05 * np.sign(x)  # keep the pre-activations away from ReLU's kink
    check_grads(lambda x, w, b: conv_bias_act(x, w, b, act, pad=1), x, w, b)
    check_grads(lambda x, w: conv_bias_act(x, w, None, act, stride=2), x, w)


def test_relu_masks_the_cotangent_as_relu_does():
    # pre-activations exactly 0 and NaN: relu's rule gives them no gradient, and so here
    x = np.zeros((1, 1, 3))
    x[0, 0, 2] = np.nan
    w = np.ones((2, 1, 1))
    b = np.array([0.0, 1.0])
    for args in ((x, w, b), (x.astype(np.float32), w.astype(np.float32),
                             b.astype(np.float32))):
        ours = fl.gradient(lambda *a: np.sum(conv_bias_act(*a, fl.relu)), *args)
        theirs = fl.gradient(lambda *a: np.sum(composite(*a, fl.relu)), *args)
        for a, r in zip(ours, theirs):
            assert a.dtype == r.dtype == args[0].dtype
            np.testing.assert_array_equal(a, r)


def test_scratch_and_fresh_paths_agree(monkeypatch):
    x, w, b = _args(dtype=np.float32)
    f = lambda *a: np.sum(conv_bias_act(*a, fl.relu, pad=1) ** 2)  # noqa: E731
    scratch = fl.gradient(f, x, w, b)
    monkeypatch.setattr(windows, "SCRATCH_BYTES", 0)
    fresh = fl.gradient(f, x, w, b)
    for a, r in zip(scratch, fresh):
        assert a.dtype == np.float32
        np.testing.assert_array_equal(a, r)


def test_conv_layer_uses_it_and_matches_the_composite():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 2, 7, 7)).astype(np.float32)
    for act in (fl.relu, fl.identity, fl.sigmoid):
        layer = fl.Conv((3, 3), 2, 4, act, pad=1, rng=rng)
        layer.bias[...] = rng.standard_normal(4)
        y = layer(x)
        assert y.dtype == np.float32
        ref = composite(x, layer.weight, layer.bias, None if act is fl.identity else act,
                        pad=1)
        np.testing.assert_allclose(y, ref, rtol=1e-6, atol=1e-6)
        g, = fl.gradient(lambda m: np.sum(m(x) ** 2), layer)
        gw, gb = fl.gradient(lambda w, b: np.sum(composite(
            x, w, b, None if act is fl.identity else act, pad=1) ** 2), layer.weight, layer.bias)
        np.testing.assert_allclose(g.weight, gw, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(g.bias, gb, rtol=1e-4, atol=1e-4)


def test_bad_bias_is_named():
    x, w, _ = _args()
    with pytest.raises(ValueError, match=r"conv_bias_act: bias must have shape \(6,\)"):
        conv_bias_act(x, w, np.ones(5))
    with pytest.raises(ValueError, match="conv_bias_act: input must be"):
        conv_bias_act(np.ones((4, 4)), w, None)


@pytest.mark.parametrize("size, kernel, groups", [((9,), (3,), 1), ((9,), (3,), 3),
                                                  ((4, 5, 3), (2, 3, 2), 1)])
def test_one_and_three_dimensions(size, kernel, groups):
    # one group: the bias is a column of the weight against a row of ones in the columns
    x, w, b = _args(c=3, o=6, size=size, kernel=kernel, groups=groups)
    for act in (fl.relu, None):
        np.testing.assert_allclose(conv_bias_act(x, w, b, act, pad=1, groups=groups),
                                   composite(x, w, b, act, pad=1, groups=groups),
                                   rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("which", [0, 1, 2])
def test_relu_of_complex_values_is_refused_as_relu_refuses_it(which):
    """The fused ReLU masked complex pre-activations by NumPy's lexicographic ``> 0`` (the
    real part's sign): ``1+2j`` kept, ``-0.5-1j`` zeroed, where ``relu`` (and the composite)
    refuses complex numbers. Without the ReLU complex values stay allowed (a linear map)."""
    args = list(_args(n=1, c=2, o=2, size=(4,), kernel=(2,)))
    args[which] = args[which] * (1 + 1j)
    with pytest.raises(TypeError, match="relu is a function of real numbers"):
        conv_bias_act(*args, fl.relu)
    np.testing.assert_allclose(conv_bias_act(*args, None), composite(*args, None), rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int32])
@pytest.mark.parametrize("size", [0, 7, windows.RELU_ROW, 2 * windows.RELU_ROW + 5])
def test_relu_in_place_is_maximum_bit_for_bit(dtype, size):
    """The fused ReLU's in-place maximum against a row of zeros equals ``np.maximum(a, 0)``
    bit for bit (NaN of either sign, -0.0, infinities, subnormals), on a length that is no
    multiple of its row, and on a strided view (which goes to the plain maximum)."""
    rng = np.random.default_rng(size)
    if np.dtype(dtype).kind == "f":
        special = np.array([np.nan, -np.nan, -0.0, 0.0, np.inf, -np.inf, 1e-45, -1e-45])
        a = np.concatenate([special, rng.standard_normal(size)]).astype(dtype)[:size]
    else:
        a = rng.integers(-5, 5, size).astype(dtype)
    want = np.maximum(a, 0)
    got = windows.relu_in_place(a.copy())
    assert got.dtype == want.dtype and got.tobytes() == want.tobytes()
    b = np.stack([a, a], 1)[:, 0]  # (a strided view)
    windows.relu_in_place(b)
    assert b.tobytes() == want.tobytes()
