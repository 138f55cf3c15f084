"""The numpy back end of ``fl.compile`` runs the eager engine's fused kernels where the
recorded program spells them out (``compiler/numpy_backend.py``): a convolution with its bias
and ReLU (``conv_bias_relu``, ``conv_bias``), and the gradient of max pooling over disjoint
windows (``pool._window_grad``); and the buffer planning reuses the new arrays such kernels
return (``passes.fresh``). Compiled steps equal eager ones (float64, to rounding); where the
pattern does not hold (a convolution read elsewhere, overlapping or padded pools) the
program stays as recorded, and a kernel's array that the caller receives is never
overwritten."""

import copy

import numpy as np

import fluxml as fl


def _model():
    rng = np.random.default_rng(0)
    model = fl.Chain(fl.Conv((3, 3), 2, 3, fl.relu, pad=1), fl.MaxPool((2, 2)),
                     fl.Conv((3, 3), 3, 4, np.tanh), fl.Flatten(), fl.Dense(16, 3))
    model = fl.f64(model)
    for p in fl.tree.flatten(model)[0]:
        if isinstance(p, np.ndarray):
            p[...] = rng.normal(size=p.shape) * 0.5
    return model, rng.normal(size=(5, 2, 8, 8)), rng.integers(0, 3, 5)


def _step(model, opt, x, y):
    loss, (g,) = fl.withgradient(lambda m: fl.logitcrossentropy(m(x), y), model)
    fl.update(opt, model, g)
    return loss


def test_conv_layers_and_pools_run_the_eager_kernels_and_train_as_eagerly():
    model, x, y = _model()
    eager = copy.deepcopy(model)
    opt, opt_eager = fl.setup(fl.Adam(0.01), model), fl.setup(fl.Adam(0.01), eager)
    step = fl.compile(_step)
    for _ in range(3):
        np.testing.assert_allclose(step(model, opt, x, y), _step(eager, opt_eager, x, y),
                                   rtol=1e-12)
    for a, b in zip(fl.tree.flatten(model)[0], fl.tree.flatten(eager)[0]):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)
    src = step.source
    assert "conv_bias_relu(x, " in src  # the first layer: convolution, bias, ReLU in one
    assert "= conv_bias(" in src  # the second (tanh applied after)
    assert "window_grad(" in src and "maxpool_positions(" not in src
    assert "pool_scatter(" not in src
    # the ReLU's mask multiplies the pooling gradient in its own (new) array, not a fresh one
    line = next(s for s in src.splitlines() if "window_grad(" in s)
    name = line.split("=")[0].strip()
    assert f"np.multiply({name}, " in src and f"out={name})" in src


def test_a_convolution_read_elsewhere_is_not_fused():
    rng = np.random.default_rng(1)
    x, w, b = rng.normal(size=(2, 1, 5, 5)), rng.normal(size=(3, 1, 3, 3)), rng.normal(size=3)

    def f(x, w, b):
        y = fl.nnlib.conv(x, w)
        z = fl.relu(y + b.reshape(-1, 1, 1))
        return np.sum(z ** 2) + np.sum(y)

    both = lambda x, w, b: fl.withgradient(f, x, w, b)  # noqa: E731
    compiled = fl.compile(both)
    value, grads = compiled(x, w, b)
    want_value, want_grads = both(x, w, b)
    np.testing.assert_allclose(value, want_value, rtol=1e-12)
    for got, want in zip(grads, want_grads):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert "conv_bias" not in compiled.source


def test_overlapping_or_padded_pools_keep_the_recorded_gradient():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 2, 7, 7))
    x[0, 0, :2, :2] = 1.5  # ties: the gradient goes to the first maximum of each window
    for options in ({"stride": 2}, {"pad": 1}):
        def f(x, options=options):
            return np.sum(fl.nnlib.maxpool(x, 3, **options) ** 2)

        g = fl.compile(lambda x, f=f: fl.gradient(f, x)[0])
        np.testing.assert_allclose(g(x), fl.gradient(f, x)[0], rtol=1e-12)
        assert "window_grad(" not in g.source and "pool_scatter(" in g.source


def test_a_kernels_array_the_caller_receives_is_not_reused():
    rng = np.random.default_rng(3)
    x, w = rng.normal(size=(2, 1, 6, 6)), rng.normal(size=(2, 1, 3, 3))

    def f(x, w):
        y = fl.nnlib.conv(x, w)  # returned: its buffer must not take a later result
        p = fl.nnlib.maxpool(y, 2)  # (a kernel's new array, dead after the product)
        return y, np.tanh(p * 2.0) + 1.0

    compiled = fl.compile(f)
    for _ in range(2):  # (the second call runs with the buffers kept from the first)
        got = compiled(x, w)
        want = f(x, w)
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-12)
    y1, _ = compiled(x, w)
    y2, _ = compiled(2 * x, w)
    np.testing.assert_allclose(y1, f(x, w)[0], rtol=1e-12)  # the first result untouched
    np.testing.assert_allclose(y2, f(2 * x, w)[0], rtol=1e-12)


def test_no_fused_convolution_across_a_write_into_its_operands():
    """Review of 712bafd: the convolution, bias add and ReLU fused into one kernel at the
    place of the last, so a write between them into the bias, the weight or the input
    (through a copy the function made) reached the fused kernel: 100 off. No fusion across
    a write now."""
    rng = np.random.default_rng(0)
    x, w, b = (rng.standard_normal(s) for s in ((2, 2, 6, 6), (3, 2, 3, 3), (3,)))

    def bias_written(x, w, b):
        bb = b * 1.0
        z = fl.nnlib.conv(x, w) + bb.reshape(-1, 1, 1)
        bb[:] = 100.0
        return fl.relu(z), bb

    def weight_written(x, w, b):
        v = w * 1.0
        z = fl.nnlib.conv(x, v)
        v[:] = 0
        return fl.relu(z + b.reshape(-1, 1, 1)), v

    def input_written(x, w, b):
        h = x * 1.0
        z = fl.nnlib.conv(h, w) + b.reshape(-1, 1, 1)
        h[0] = 7.0
        return fl.relu(z), h

    for f in (bias_written, weight_written, input_written):
        for got, want in zip(fl.compile(f)(x, w, b), f(x, w, b)):
            np.testing.assert_allclose(got, want, atol=1e-12)
