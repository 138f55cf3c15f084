"""NNlib.jl's own tests translated to fluxml: activations (test/activations.jl), softmax
(test/softmax.jl), and the rest of NNlib's primitives below. Each test names the file and
testset it comes from; values are NNlib's (or its formulas), layouts translated: fluxml is
batch first, so NNlib's ``dims=1`` (features) is ``axis=-1`` and a Julia matrix is the
transpose of the NumPy one. Convolution and pooling: test_nnlib_spec_conv.py.
"""

import math
import warnings

import numpy as np
import pytest

import fluxml as fl
from fluxml import nnlib as nn
from fluxml.nnlib.activations import NAMES

ACTIVATIONS = [getattr(nn, name) for name in NAMES]


def _at(f, v, *args, **kw):
    """``f`` at one number (as NNlib's scalar calls), float64."""
    return float(f(np.array([v], float), *args, **kw)[0])


def _grad(f, v, *args):
    return float(fl.gradient(lambda z: np.sum(f(z, *args)), np.array([v], float))[0][0])


def _fd(f, v, h=1e-6):
    return (f(v + h) - f(v - h)) / (2 * h)


# --- test/activations.jl -----------------------------------------------------------------------

SELU_SCALE, SELU_ALPHA = 1.0507009873554804934193349852946, 1.6732632423543772848170429916717


def test_activation_values_at_0_1_and_minus_1():
    """activations.jl, the opening assertions: each activation at 0, 1 and -1."""
    e = math.exp
    want = {
        "sigmoid": (0.5, 1 / (1 + e(-1)), e(-1) / (1 + e(-1))),
        "hardsigmoid": (0.5, 4 / 6, 2 / 6), "hardtanh": (0, 1, -1), "relu": (0, 1, 0),
        "leakyrelu": (0, 1, -0.01), "relu6": (0, 1, 0), "elu": (0, 1, e(-1) - 1),
        "gelu": (0, 0.8411919906082768, -0.15880800939172324),
        "gelu_tanh": (0, 0.8411919906082768, -0.15880800939172324),
        "gelu_sigmoid": (0, 0.8411919906082768, -0.15880800939172324),
        "gelu_erf": (0, 0.8413447460685429, -0.15865525393145707),
        "swish": (0, 1 / (1 + e(-1)), -e(-1) / (1 + e(-1))),
        "hardswish": (0, 4 / 6, -2 / 6), "lisht": (0, math.tanh(1), math.tanh(1)),
        "softplus": (math.log(2), math.log(e(1) + 1), math.log(e(-1) + 1)),
        "softsign": (0, 0.5, -0.5), "selu": (0, SELU_SCALE, SELU_SCALE * SELU_ALPHA * (e(-1) - 1)),
        "celu": (0, 1, e(-1) - 1), "trelu": (0, 0, 0),
        "logcosh": (0, math.log(math.cosh(1)), math.log(math.cosh(1))),
        "mish": (0, math.tanh(math.log(1 + e(1))), -math.tanh(math.log(1 + e(-1)))),
        "tanhshrink": (0, 0.23840584404423515, -0.23840584404423515),
        "softshrink": (0, 0.5, -0.5),
    }
    for name, values in want.items():
        f = getattr(nn, name)
        np.testing.assert_allclose([_at(f, v) for v in (0.0, 1.0, -1.0)], values, rtol=1e-12,
                                   atol=1e-15, err_msg=name)
    assert _at(nn.rrelu, 0.0) == 0 and _at(nn.rrelu, 1.0) == 1
    assert -1 / 3 <= _at(nn.rrelu, -1.0) <= -1 / 8
    assert _at(nn.softplus, 1e8) == 1e8 and _at(nn.softplus, -1e8) == 0


def test_activation_special_values():
    """activations.jl: "elu", "mish", "celu", "softshrink", "logsigmoid", "hardsigmoid",
    "trelu" and the single assertions between them."""
    assert _at(nn.elu, 42.0) == 42 and _at(nn.elu, -4.0) == pytest.approx(math.exp(-4) - 1)
    assert _at(nn.mish, -5.0) == pytest.approx(-0.033576237730161704, rel=1e-14)
    assert _at(nn.mish, 9.0) == pytest.approx(9 * math.tanh(math.log(1 + math.exp(9))))
    assert nn.mish(np.float32([[1, 2, 3], [1000, 2000, 3000]])).dtype == np.float32
    assert _at(nn.leakyrelu, 0.4, 0.3) == pytest.approx(0.4)
    assert _at(nn.leakyrelu, -0.4, 0.3) == pytest.approx(-0.12)
    assert _at(nn.relu6, 10.0) == 6
    slopes = nn.rrelu(np.full(1000, -0.4), 0.25, 0.5, active=True) / -0.4
    assert 0.25 <= slopes.min() and slopes.max() <= 0.5
    assert _at(nn.celu, 42.0) == 42
    assert _at(nn.celu, -4.0, 0.5) == pytest.approx(0.5 * (math.exp(-4 / 0.5) - 1))
    np.testing.assert_array_equal(nn.softshrink(np.array([15.0, 4.0, -15.0]), 5.0), [10, 0, -10])
    xs = np.random.default_rng(0).standard_normal((10, 10))
    np.testing.assert_allclose(nn.logsigmoid(xs), np.log(nn.sigmoid(xs)))
    for dtype in (np.float32, np.float64):
        np.testing.assert_allclose(nn.logsigmoid(np.array([-1e5, 1e5], dtype)), [-1e5, 0])
        np.testing.assert_allclose(nn.hardsigmoid(np.array([-1e5, 1e5], dtype)), [0, 1])
    assert _at(nn.logcosh, 1000.0) + math.log(2) == 1000
    assert _at(nn.hardsigmoid, 0.3) == pytest.approx(3.3 / 6, rel=1e-15)
    assert _at(nn.hardsigmoid, -0.3) == pytest.approx(2.7 / 6, rel=1e-15)
    assert _at(nn.hardtanh, 10.0) == 1 and _at(nn.lisht, 2.5) == 2.5 * math.tanh(2.5)
    assert [_at(nn.trelu, v) for v in (0.5, 1.0, 1.1)] == [0, 0, 1.1]
    assert _at(nn.trelu, 0.9, 0.5) == 0.9


@pytest.mark.parametrize("f", ACTIVATIONS, ids=NAMES)
def test_activation_nan_and_inf(f):
    """activations.jl "NaN propagation": NaN in gives NaN out (hardsigmoid, relu6, trelu and
    hardshrink gave 0, silently); +Inf gives no NaN except in softsign, -Inf none except in
    the activations NNlib lists (gelu, swish, hardswish, logcosh, mish, softsign)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # inf - inf in the listed ones
        y = f(np.float32([np.nan, np.inf, -np.inf]))
    assert np.isnan(y[0])
    if f is not nn.softsign:
        assert not np.isnan(y[1])
    if f not in (nn.gelu, nn.gelu_tanh, nn.gelu_sigmoid, nn.gelu_erf, nn.swish, nn.hardswish,
                 nn.logcosh, nn.mish, nn.softsign):
        assert not np.isnan(y[2])


@pytest.mark.parametrize("f", ACTIVATIONS, ids=NAMES)
def test_activation_dtypes_and_integers(f):
    """activations.jl "Float inference", "Gradient inference" and "Integer inputs": float16,
    float32 and float64 keep their type, value and gradient; integers give real numbers."""
    for dtype in (np.float16, np.float32, np.float64):
        x = np.array([-10, -1, 0, 1, 10], dtype)
        assert f(x).dtype == dtype
        assert fl.gradient(lambda z: np.sum(f(z)), x)[0].dtype == dtype
    for dtype in (np.int64, np.int32):
        y = f(np.array([1, -1], dtype))
        assert y.dtype.kind in "if" and np.isfinite(y).all()


@pytest.mark.parametrize("f", [g for g in ACTIVATIONS if g is not nn.rrelu],
                         ids=[n for n in NAMES if n != "rrelu"])
def test_activation_gradients(f):
    """activations.jl "Gradient correctness" (at ±(2 + u)), "saturated gradients" (at ±7 and
    ±50, against finite differences, for every activation here) and "Second derivatives":
    the Hessian of sin(f(x)) at 0.23 and of sum(f(x + 0.1)^2) at NNlib's points."""
    rng = np.random.default_rng(17)
    for v in (2 + rng.random(), -2 - rng.random(), -50.0, 50.0, -7.0, 7.0):
        assert _grad(f, v) == pytest.approx(_fd(lambda t: _at(f, t), v), abs=1e-6), v
    h = fl.hessian(lambda z: np.sum(np.sin(f(z))), np.array([0.23]))[0, 0]
    second = _fd(lambda t: _fd(lambda s: math.sin(_at(f, s)), t, 1e-4), 0.23, 1e-4)
    assert h == pytest.approx(second, abs=1e-5)
    x = np.array([-0.9, -0.2, 0.1, 0.3, 1.2])

    def loss(z):
        return np.sum(f(z + 0.1) ** 2)
    hess = fl.hessian(loss, x)
    by_fd = np.stack([(fl.gradient(loss, x + e)[0] - fl.gradient(loss, x - e)[0]) / 2e-6
                      for e in np.eye(5) * 1e-6])
    np.testing.assert_allclose(hess, by_fd, atol=1e-5)


def test_activation_gradients_named():
    """activations.jl: softplus's derivatives at 0 (NNlib issue 671: 0.5 and 0.25), and
    "Zygote issue 758": selu's and elu's gradients at 1000 and 10000 (no overflow), elu(x, 2)
    at -1."""
    assert _grad(nn.softplus, 0.0) == 0.5
    assert fl.hessian(lambda z: np.sum(nn.softplus(z)), np.array([0.0]))[0, 0] == 0.25
    np.testing.assert_allclose(fl.gradient(lambda x: np.sum(nn.selu(x)),
                                           np.array([1000.0, 10000.0]))[0], [SELU_SCALE] * 2,
                               rtol=1e-8)
    np.testing.assert_array_equal(fl.gradient(lambda x: np.sum(nn.elu(x, 2)),
                                              np.array([1000.0, 10000.0]))[0], [1, 1])
    assert _grad(nn.elu, -1.0, 2) == pytest.approx(2 * math.exp(-1), rel=1e-15)


# --- test/softmax.jl ---------------------------------------------------------------------------

def test_softmax_values():
    """softmax.jl "softmax integer input" and "softmax": sums to 1 on either axis, its log is
    logsoftmax, -100000 twice is even, exp(x)/sum, and NNlib's float32 rows of large numbers."""
    np.testing.assert_array_equal(nn.softmax(np.array([0, 0])), [0.5, 0.5])
    xs = np.random.default_rng(0).random((5, 5))
    for axis in (0, 1):
        np.testing.assert_allclose(np.sum(nn.softmax(xs, axis=axis), axis=axis), 1)
        np.testing.assert_allclose(np.log(nn.softmax(xs, axis=axis)),
                                   nn.logsoftmax(xs, axis=axis))
    np.testing.assert_allclose(nn.softmax(np.array([-1e5, -1e5])), [0.5, 0.5])
    np.testing.assert_allclose(nn.logsoftmax(np.array([-1e5, -1e5])), np.log([0.5, 0.5]))
    np.testing.assert_allclose(nn.softmax(xs[0]), np.exp(xs[0]) / np.sum(np.exp(xs[0])))
    np.testing.assert_allclose(nn.logsoftmax(np.float32([1, 2, 3000])), [-2999, -2998, 0])
    xs = np.float32([[1, 2, 3], [1000, 2000, 3000]]).T  # Julia's columns are rows here
    np.testing.assert_allclose(nn.logsoftmax(xs), np.float32([[-999, -1998, -2997],
                                                             [0, 0, 0]]).T)


def test_softmax_gradients_of_ones():
    """softmax.jl "softmax": ∇logsoftmax of ones against PyTorch's values (NNlib's table), and
    ∇softmax of ones is 0."""
    xs = np.array([[-0.238639, 0.748142, -0.283194, -0.525461, -1.5348, -0.797842],
                   [0.690384, 0.211427, 0.254794, -0.213572, -0.314174, -0.372663],
                   [-1.146370, -0.577988, 0.718952, 0.919720, -0.620773, 0.929977]]).T
    ys = np.array([[0.237703, -0.621474, 0.448193, 0.546047, 0.564185, 0.632273],
                   [-0.930163, 0.0519798, 0.0549979, 0.3799, -0.477112, 0.437428],
                   [0.69246, 0.569494, -0.503191, -0.925947, -0.0870738, -1.0697]]).T
    np.testing.assert_allclose(fl.pullback(nn.logsoftmax, xs)[1](np.ones_like(xs))[0], ys,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fl.pullback(nn.softmax, xs)[1](np.ones_like(xs))[0], 0,
                               atol=1e-6)
    x2 = np.float32([[1, 2, 3], [1000, 2000, 3000]]).T
    np.testing.assert_allclose(fl.pullback(nn.logsoftmax, x2)[1](np.ones_like(x2))[0],
                               np.float32([[1, 1, 1], [-1, -1, -1]]).T, atol=1e-6)


def test_softmax_with_inf_and_nan():
    """softmax.jl "softmax with Inf, NaN": a row holding +Inf gives the limit, shared by its
    +Inf entries (fluxml gave [0, NaN] with a warning); NaN gives NaN; over both axes; and
    exp(logsoftmax) is softmax there too."""
    def jl(rows):  # Julia's columns (dims=1) are rows here
        return np.float32(rows).T
    inf, nan = np.inf, np.nan
    a = 0.11920292
    np.testing.assert_allclose(nn.softmax(jl([[1, 2], [3, inf]])), jl([[a, 0], [1 - a, 1]]),
                               rtol=1e-6)
    np.testing.assert_allclose(nn.softmax(jl([[1, -inf], [3, inf]])), jl([[a, 0], [1 - a, 1]]),
                               rtol=1e-6)
    np.testing.assert_allclose(nn.softmax(jl([[1, inf], [3, inf]])),
                               jl([[a, 0.5], [1 - a, 0.5]]), rtol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(nn.softmax(jl([[1, 2], [3, nan]])),
                                   jl([[a, nan], [1 - a, nan]]), rtol=1e-6)
        np.testing.assert_allclose(nn.softmax(jl([[1, 2], [3, inf]]), axis=0),
                                   jl([[0.26894143, 0.7310586], [0, 1]]), rtol=1e-6)
        for axis in ((0, 1), (1, 0)):
            np.testing.assert_array_equal(nn.softmax(jl([[1, 2], [3, inf]]), axis=axis),
                                          jl([[0, 0], [0, 1]]))
        for x in (jl([[1, 2], [3, inf]]), jl([[1, -inf], [3, inf]]), jl([[1, inf], [3, inf]])):
            np.testing.assert_allclose(np.exp(nn.logsoftmax(x)), nn.softmax(x), rtol=1e-6)
            # the limit's gradient: y (g - <g, y>), 0 where y is 0 or 1
            g = fl.gradient(lambda z: np.sum(nn.softmax(z) * np.float32([1, 2])), x)[0]
            assert np.isfinite(g).all()


def test_logsumexp_and_autodiff():
    """softmax.jl "logsumexp" (the mean of x - logsoftmax(x)), "AutoDiff" (finite
    differences, over each axis and both) and "Second derivatives"."""
    x = np.random.default_rng(1).random((3, 4))
    assert nn.logsumexp(x) == pytest.approx(np.mean(x - nn.logsoftmax(x, axis=(0, 1))))
    np.testing.assert_allclose(nn.logsumexp(x, axis=0), np.mean(x - nn.logsoftmax(x, axis=0),
                                                                axis=0))
    for f in (nn.softmax, nn.logsoftmax):
        for axis in ((0, 1), 0, 1):
            fl.testing.check_grads(lambda z: f(z, axis=axis) * np.arange(1.0, 5.0), x)
        fl.testing.check_grads(lambda z: np.sum(np.sin(f(z))),
                               np.array([[1.0, 2, 3], [6, 5, 4]]))
    for axis in ((0, 1), 0, 1):
        fl.testing.check_grads(lambda z: nn.logsumexp(z, axis=axis), x)


@pytest.mark.parametrize("backend", ["numpy", "xla"])
def test_softmax_with_inf_compiled(backend):
    """The +Inf rows' limit under fl.compile too (XLA's kernel is its own code)."""
    if backend == "xla":
        pytest.importorskip("jax")
    x = np.float32([[1, 3], [2, np.inf], [np.inf, np.inf], [-np.inf, np.inf]])
    step = fl.compile(lambda x: (nn.softmax(x), nn.logsoftmax(x)), backend=backend,
                      background=False)  # (XLA's program from the first call)
    for _ in range(2):  # (traced, then run)
        y, logy = step(x)
        np.testing.assert_allclose(np.asarray(y), nn.softmax(x))
        np.testing.assert_array_equal(np.asarray(y)[1:], [[0, 1], [0.5, 0.5], [0, 1]])
        np.testing.assert_allclose(np.asarray(logy), nn.logsoftmax(x))


# --- test/functions.jl, test/ctc.jl, test/conv_bias_act.jl -------------------------------------

def test_glu():
    """functions.jl "glu" and "AutoDiff": the halves of Julia's dim 1 (the last axis here),
    an odd axis refused."""
    x = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11, 12]], float).T
    np.testing.assert_array_equal(np.ceil(nn.glu(x)), np.array([[1, 2, 3], [4, 5, 6]]).T)
    with pytest.raises(ValueError, match="even size"):
        nn.glu(x, 0)
    fl.testing.check_grads(nn.glu, np.random.default_rng(17).random((3, 4)))


def test_within_gradient():
    """functions.jl "within_gradient": False outside, True inside (its derivative is 1 * x's),
    True under forward mode (NNlib's Dual case)."""
    from fluxml.layers import within_gradient
    assert within_gradient(np.array([1.0])) is False
    assert fl.gradient(lambda x: within_gradient(x) * x, 2.0) == (1.0,)
    assert fl.jvp(lambda x: within_gradient(x) * x, (2.0,), (1.0,)) == (2.0, 1.0)


def test_ctc_loss():
    """ctc.jl "ctc_loss": NNlib's hand-calculated losses and gradients (Julia's (classes, T)
    is (T, classes) here, labels from 0, the blank last) and finite differences."""
    y = np.array([0, 1])
    x = np.array([[1.0, 2, 3], [2, 1, 1], [3, 3, 2]]).T
    assert fl.ctc_loss(x, y) == pytest.approx(3.6990738275138035, rel=1e-12)
    g = np.array([[-0.317671, -0.427729, 0.665241], [0.244728, -0.0196172, -0.829811],
                  [0.0729422, 0.447346, 0.16457]]).T
    np.testing.assert_allclose(fl.gradient(lambda x: fl.ctc_loss(x, y), x)[0], g, rtol=1e-5,
                               atol=1e-5)
    x = np.array([[-3.0, 12, 8, 15], [4, 20, -2, 20], [8, -33, 6, 5]]).T
    assert fl.ctc_loss(x, y) == pytest.approx(8.02519869363453, rel=1e-12)
    g = np.array([[-2.29294774655333e-06, -0.999662657278862, 1.75500863563993e-06,
                   0.00669284889063],
                  [0.017985914969696, 0.999662657278861, -1.9907078755387e-06,
                   -0.006693150917307],
                  [-0.01798362202195, -2.52019580677916e-20, 2.35699239251042e-07,
                   3.02026677058789e-07]]).T
    np.testing.assert_allclose(fl.gradient(lambda x: fl.ctc_loss(x, y), x)[0], g, rtol=1e-5,
                               atol=1e-5)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 9, 12)
    fl.testing.check_grads(lambda x: fl.ctc_loss(x, labels), rng.random((25, 10)), order=1)


@pytest.mark.parametrize("name", [n for n in NAMES if n != "rrelu"] + ["tanh", "cbrt"])
def test_conv_bias_act(name):
    """conv_bias_act.jl (relu, stride 2) and bias_act.jl "gradient with $fun": the fused
    call equals act(conv + b) in value and gradients, for every activation and two NumPy
    functions NNlib knows nothing about."""
    act = getattr(nn, name, None) or getattr(np, name)
    rng = np.random.default_rng(0)
    x, w, b = rng.random((3, 3, 4, 4)), rng.standard_normal((3, 3, 2, 2)), rng.random(3)

    def fused(x, w, b):
        return nn.conv_bias_act(x, w, b, act, stride=2)

    def plain(x, w, b):
        return act(nn.conv(x, w, stride=2) + b[:, None, None])
    np.testing.assert_allclose(fused(x, w, b), plain(x, w, b), atol=1e-12)
    for g, want in zip(fl.gradient(lambda *a: np.sum(fused(*a) ** 2), x, w, b),
                       fl.gradient(lambda *a: np.sum(plain(*a) ** 2), x, w, b)):
        np.testing.assert_allclose(g, want, atol=1e-12)
    if name == "relu":
        with pytest.raises(ValueError, match="bias must have shape"):  # (NNlib: bias=true)
            nn.conv_bias_act(x, w, True, act)


# --- testsuite/spectral.jl ---------------------------------------------------------------------

def test_windows_stft_istft():
    """spectral.jl "Window functions" (float32, symmetric when not periodic, periodic = the
    next length's symmetric one cut) and "STFT" "Batch" (ones: the DC row is 16; round trips
    with odd lengths, a cropped inverse, normalisation, a window, hops and FFT sizes)."""
    for window in (nn.hann_window, nn.hamming_window):
        w, ws = window(10), window(10, periodic=False)
        assert w.dtype == np.float32 and len(w) == 10
        np.testing.assert_allclose(ws[:5], ws[5:][::-1])
        np.testing.assert_allclose(w, window(11, periodic=False)[:10], atol=1e-7)
    rng = np.random.default_rng(0)
    for batch in ((), (3,)):
        x = np.ones(batch + (16,), np.float32)
        y = nn.stft(x, 16)
        assert y.shape == batch + (9, 5)
        np.testing.assert_allclose(y.real[..., 0, :], 16)
        np.testing.assert_allclose(nn.istft(y, 16), x, atol=1e-6)
        x = rng.random(batch + (2048,), dtype=np.float32)
        np.testing.assert_allclose(nn.istft(nn.stft(x, 1024), 1024), x, atol=1e-5)
        x = rng.random(batch + (1111,), dtype=np.float32)
        y = nn.stft(x, 256)
        np.testing.assert_allclose(nn.istft(y, 256, length=1111), x, atol=1e-5)
        cropped = nn.istft(y, 256)
        assert cropped.shape[-1] < 1111
        np.testing.assert_allclose(cropped, x[..., :cropped.shape[-1]], atol=1e-5)
        x = rng.random(batch + (1234,), dtype=np.float32)
        window = nn.hann_window(512)
        cases = [dict(n_fft=512, normalized=True), dict(n_fft=512, window=window)]
        cases += [dict(n_fft=512, hop_length=h) for h in (32, 33, 255, 256, 511, 512)]
        cases += [dict(n_fft=n) for n in (32, 33, 64, 65, 128, 129)]
        for options in cases:
            np.testing.assert_allclose(nn.istft(nn.stft(x, **options), length=1234, **options),
                                       x, atol=1e-5, err_msg=str(options))


def test_spectrogram_and_decibels():
    """spectral.jl "Spectrogram" (|stft|^2; a gradient without NaN where the spectrum is 0;
    batched) and "Power to dB" (db_to_power inverts power_to_db, compared by norm as Julia's
    ≈ does: its top_db clips the smallest entries)."""
    rng = np.random.default_rng(1)
    window = nn.hann_window(1024)
    x = rng.random((3, 1024), dtype=np.float32)
    spec = nn.spectrogram(x, 1024, 128, window)
    for i in range(3):
        np.testing.assert_allclose(np.abs(nn.stft(x[i], 1024, 128, window)) ** 2, spec[i],
                                   rtol=1e-4, atol=1e-4)
    g = fl.gradient(lambda x: np.sum(nn.spectrogram(x, 1024, 128, window)),
                    np.ones(1024, np.float32))[0]
    assert np.isfinite(g).all()
    spec = nn.spectrogram(x[0], 1024, 128, window, pad=0)
    back = nn.db_to_power(nn.power_to_db(spec))
    assert np.linalg.norm(back - spec) <= 1e-5 * np.linalg.norm(spec)
