"""A traced Python float is weak in NumPy's promotion, as the untraced one is.

NumPy 2 (NEP 50) computes ``x32 * 0.5`` in float32 and ``x32 * np.float64(0.5)`` in float64.
The transforms used to trace a Python float (a layer's ``self.scale = 0.5``, a float
argument) as an ``np.float64``, so the same code ran in float64 under ``fl.gradient``,
``fl.jvp``, ``fl.compile``, ``fl.checkpoint`` and at higher order, and returned float64 where
the plain program gives float32. The expected dtypes here are the plain program's.
"""

import warnings

import numpy as np
import pytest

import fluxml as fl
import fluxml.ad.forward as forward_mode
import fluxml.ad.sweep as sweep_module
from tests.ad import fuzz_weak

X = np.arange(1.0, 4.0, dtype=np.float32)


class Scaled:
    """A user layer with a Python float field."""

    def __init__(self):
        self.scale = 0.5
        self.w = np.ones(3, np.float32)

    def __call__(self, x):
        return x * self.scale * self.w


def _loss(seen):
    def loss(m):
        y = m(X)
        seen.append(y.dtype)
        return y.sum()
    return loss


def test_the_plain_program_computes_in_float32():
    assert Scaled()(X).dtype == np.float32  # (what every transform below must match)


def test_gradient_of_a_layer_with_a_float_field_stays_float32():
    seen = []
    m = Scaled()
    value, (g,) = fl.withgradient(_loss(seen), m)
    assert seen == [np.float32] and value.dtype == np.float32
    assert g.w.dtype == np.float32
    assert type(g.scale) is float and g.scale == pytest.approx(float(np.sum(X)))


@pytest.mark.parametrize("backend", ["numpy", "xla"])
def test_compiled_gradient_stays_float32(backend):
    if backend == "xla":
        pytest.importorskip("jax")
    seen = []
    run = fl.compile(lambda m: fl.withgradient(_loss(seen), m), backend=backend)
    value, (g,) = run(Scaled())
    assert seen == [np.float32]
    assert value.dtype == np.float32 and g.w.dtype == np.float32
    assert float(g.scale) == pytest.approx(float(np.sum(X)))


def test_a_float_argument_meeting_a_compiled_array_stays_float32():
    """The traced float meets the program's array (a Python constant of the program): the
    NumPy code must compute ``w * 0.5`` with a weak 0.5."""
    def step(w):
        return fl.withgradient(lambda s, w: np.sum(w * s + (s * 2.0) * w), 0.5, w)

    w = np.arange(3, dtype=np.float32)
    value, (gs, gw) = fl.compile(step)(w)
    assert value.dtype == np.float32 and gw.dtype == np.float32
    assert value == step(w)[0]
    np.testing.assert_allclose(gw, np.full(3, 1.5, np.float32))
    assert float(gs) == pytest.approx(3 * np.sum(w))


def test_jvp_with_a_float_primal_stays_float32():
    seen = []
    out, tangent = fl.jvp(lambda s: seen.append((X * s).dtype) or X * s, (0.5,), (1.0,))
    assert seen == [np.float32] and out.dtype == np.float32 and tangent.dtype == np.float32
    np.testing.assert_array_equal(tangent, X)


def test_checkpoint_and_custom_vjp_get_a_weak_float():
    seen = []
    block = fl.checkpoint(lambda x, s: x * (s * 2.0))
    g = fl.gradient(lambda s: np.sum(seen.append(block(X, s).dtype) or block(X, s)), 0.5)[0]
    assert seen == [np.float32] and g == pytest.approx(2 * float(np.sum(X)))

    @fl.custom_vjp
    def scale(x, s):
        return x * s

    def fwd(x, s):
        seen.append((type(s), (x * s).dtype))
        return x * s, (x, s)

    scale.defvjp(fwd, lambda res, g: (g * res[1], np.sum(g * res[0])))
    seen.clear()
    gx, gs = fl.gradient(lambda x, s: np.sum(scale(x, s)), X, 0.5)
    assert seen == [(float, np.float32)]
    assert gx.dtype == np.float32 and type(gs) is float


def test_higher_order_stays_float32():
    seen = []

    def f(s):
        y = X * s * s
        seen.append(y.dtype)
        return np.sum(y)

    assert fl.hessian(f, 0.5) == pytest.approx(2 * float(np.sum(X)))
    fl.gradient(lambda s: fl.gradient(f, s)[0], 0.5)
    fl.jvp(lambda s: fl.gradient(f, s)[0], (0.5,), (1.0,))
    fl.gradient(lambda s: fl.jvp(f, (s,), (1.0,))[1], 0.5)
    assert seen and set(seen) == {np.dtype(np.float32)}


def test_operators_on_traced_floats_give_weak_floats_and_numpy_calls_strong_ones():
    """``s * 2.0`` of a Python float is a Python float (weak); ``np.sin(s)`` and
    ``np.multiply(s, 2.0)`` are NumPy float64 scalars (strong), with and without a transform."""
    cases = [
        lambda s: X * (s * 2.0 - s ** 2 / 3 + abs(-s) + (1 - s) // 0.3),
        lambda s: X * np.sin(s),
        lambda s: X * np.multiply(s, 2.0),
        lambda s: X * (+s % 0.7),
    ]
    for f in cases:
        plain = f(0.5).dtype
        seen = []
        fl.gradient(lambda s: np.sum(seen.append(f(s).dtype) or f(s)), 0.5)
        fl.jvp(lambda s: seen.append(f(s).dtype) or f(s), (0.5,), (1.0,))
        assert seen == [plain, plain], (plain, seen)
    assert [f(0.5).dtype for f in cases] == [np.float32, np.float64, np.float64, np.float32]


def test_products_take_a_traced_float_as_a_float64_array():
    """``np.dot(x32, s)``, ``np.inner`` and ``np.multiply.outer`` convert a Python float with
    ``np.asarray``: a strong float64 (only ufuncs and operators take it as weak). Their rules
    multiplied the weak traced float, float32."""
    cases = [lambda s: np.dot(X, s), lambda s: np.dot(s, X), lambda s: np.inner(X, s),
             lambda s: np.multiply.outer(X, s), lambda s: np.multiply.outer(s, X)]
    for f in cases:
        plain = f(0.1)
        assert plain.dtype == np.float64
        value, (g,) = fl.withgradient(lambda s: np.sum(f(s)), 0.1)
        assert value.dtype == np.float64 and value == np.sum(plain)
        assert type(g) is float and g == float(np.sum(X.astype(np.float64)))
        assert fl.jvp(f, (0.1,), (1.0,))[0].dtype == np.float64


def test_an_in_place_update_of_a_traced_float_stays_weak():
    def f(s):
        s += 1.0
        s *= 2.0
        return np.sum(X * s)

    seen = []
    g = fl.gradient(lambda s: seen.append((X * (s + 0.0)).dtype) or f(s), 0.5)
    assert seen == [np.float32] and g == (pytest.approx(2 * float(np.sum(X))),)
    assert fl.withgradient(f, 0.5)[0].dtype == np.float32


def test_the_derivative_rules_do_not_promote(monkeypatch):
    """The cotangent of a float32 array times a traced float is float32 as the rule computes
    it, not float64 cast back afterwards (twice the work, and other rounding)."""
    fitted = []
    fit = sweep_module.fit
    monkeypatch.setattr(sweep_module, "fit", lambda c, like: fitted.append(
        (np.asarray(c).dtype, getattr(like, "dtype", None))) or fit(c, like))
    gx = fl.gradient(lambda x, s: np.sum(np.tanh(x * s / (s + 1.0))), X, 0.5)[0]
    assert gx.dtype == np.float32
    assert (np.dtype(np.float64), np.dtype(np.float32)) not in fitted

    tangents = []
    tangent_fit = forward_mode._fit
    monkeypatch.setattr(forward_mode, "_fit", lambda total, ans: tangents.append(
        (total.dtype, ans.dtype)) or tangent_fit(total, ans))
    _, t = fl.jvp(lambda x, s: np.tanh(x * s), (X, 0.5), (X, 1.0))
    assert t.dtype == np.float32
    assert all(total == ans for total, ans in tangents), tangents


def test_what_the_user_gets_back_is_a_python_float():
    assert fl.withgradient(lambda s: s * 2.0, 0.5) == (1.0, (2.0,))
    assert type(fl.withgradient(lambda s: s * 2.0, 0.5)[0]) is float
    out, tangent = fl.jvp(lambda s: s * 3.0, (0.5,), (1.0,))
    assert type(out) is float and type(tangent) is float and (out, tangent) == (1.5, 3.0)
    kept = []
    fl.gradient(lambda s: kept.append(fl.stop_gradient(s)) or s * 2.0, 0.5)
    assert type(kept[0]) is float

    class Counter:
        def __init__(self):
            self.total = 0.25
            self.w = np.ones(2, np.float32)

        def __call__(self, x):
            self.total = self.total * 2.0
            return np.sum(x * self.w * self.total)

    c = Counter()
    fl.gradient(lambda c: c(np.ones(2, np.float32)), c)
    assert type(c.total) is float and c.total == 0.5
    assert (np.ones(2, np.float32) * c.total).dtype == np.float32


def test_complex_numbers_are_weak_too():
    z = np.ones(3, np.complex64)
    seen = []
    g = fl.gradient(lambda c: seen.append((z * c).dtype) or np.real(np.sum(z * c * 2.0)),
                    1 + 1j)[0]
    assert seen == [np.complex64] and type(g) is complex and g == pytest.approx(6 + 0j)


@pytest.mark.parametrize("seed", range(12))
def test_random_expressions(seed):
    """The short run of ``fuzz_weak.py`` (its main runs thousands): dtypes of every step
    and values against the plain program, gradients against finite differences."""
    message = fuzz_weak.check(seed, compiled=seed % 4 == 0)
    expression = fuzz_weak.expression(np.random.default_rng(seed))
    assert message is None, f"{fuzz_weak.describe(expression)}: {message}"


@pytest.mark.parametrize("seed", [0, 5, 10, 15])
def test_random_expressions_with_traced_numbers_on_xla(seed):
    """The compiled part of the fuzzer on the xla back end: the Python floats traced (a
    class's hyperparameters) give the eager program's types and dtypes, its values to
    float rounding."""
    pytest.importorskip("jax")
    message = fuzz_weak.check(seed, compiled=True, backend="xla")
    expression = fuzz_weak.expression(np.random.default_rng(seed))
    assert message is None, f"{fuzz_weak.describe(expression)}: {message}"


def test_a_model_with_a_float_field_differentiates_in_float32():
    """Before, the layer after the scale got float64 input under fl.gradient: Dense warned
    and converted it, and the loss came back float64."""
    model = fl.Chain(fl.Dense(3, 4), Scaled2(), fl.Dense(4, 2))
    x = np.ones((5, 3), np.float32)
    plain = np.mean(model(x) ** 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss, (g,) = fl.withgradient(lambda m: np.mean(m(x) ** 2), model)
    assert plain.dtype == loss.dtype == np.float32 and loss == plain
    assert g.layers[0].weight.dtype == np.float32


class Scaled2:
    def __init__(self):
        self.scale = 0.5

    def __call__(self, x):
        return x * self.scale


def test_the_gradient_of_a_float_under_an_outer_transform_is_weak():
    """Plainly the gradient of a Python float is a Python float: under an outer transform
    the traced gradient computes with float32 arrays as that float does."""
    def inner_grad(s):
        return fl.gradient(lambda t: t * t * s, 0.5)[0]  # s: the outer transform's

    seen = []

    def outer(s):
        y = X * inner_grad(s)
        seen.append(y.dtype)
        return np.sum(y)

    plain = outer(0.25)
    assert seen == [np.float32] and plain.dtype == np.float32
    assert fl.gradient(outer, 0.25)[0] == pytest.approx(float(np.sum(X)))
    fl.jvp(outer, (0.25,), (1.0,))
    assert seen == [np.float32] * 3


def test_the_gradient_with_respect_to_an_outer_transforms_float_is_weak():
    seen = []

    def f(s):
        g = fl.gradient(lambda t: t * t * 2.0, s)[0]  # d/dt at t = s: 4 s, a float plainly
        y = X * g
        seen.append(y.dtype)
        return np.sum(y)

    assert f(0.5).dtype == np.float32
    assert fl.gradient(f, 0.5)[0] == pytest.approx(4 * float(np.sum(X)))
    out, tangent = fl.jvp(f, (0.5,), (1.0,))
    assert out.dtype == tangent.dtype == np.float32
    assert seen == [np.float32] * 3


@pytest.mark.parametrize("compile", [False, True])
def test_training_a_model_with_a_float_field_stays_float32(compile):
    """fl.train, eager and compiled: no float64 input warning from the Dense after the scale,
    and the weights stay float32, with the losses of float32 computations."""
    rng = np.random.default_rng(0)
    model = fl.Chain(fl.Dense(3, 4), Scaled2(), fl.Dense(4, 2))
    data = [(rng.standard_normal((8, 3)).astype(np.float32),
             rng.standard_normal((8, 2)).astype(np.float32)) for _ in range(3)]

    def loss(m, x, y):
        return np.mean((m(x) - y) ** 2)

    first = loss(model, *data[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        history = fl.train(loss, model, data, fl.setup(fl.Adam(0.01), model), epochs=1,
                           progress=False, compile=compile)
    assert model.layers[0].weight.dtype == model.layers[2].weight.dtype == np.float32
    assert first.dtype == np.float32
    assert history.losses[0] == pytest.approx(float(first), rel=1e-6)


def test_a_traced_float_as_a_control_flow_operand_is_a_numpy_number():
    """fl.cond / fl.scan make a number operand a 0-d array (strong): a traced Python float
    too, under every transform, so the branches compute as the plain program does. Before,
    fl.cond under fl.gradient raised (the branch taken got the weak float and gave float32,
    the other, checked on a 0-d array, float64)."""
    seen = []

    def f(s):
        y = fl.cond(True, lambda x, k: x * k, lambda x, k: x - k, X, s)
        z = fl.scan(lambda c, x: (c + x * s, c), 0.0, X)[0]
        seen.append((y.dtype, z.dtype))
        return np.sum(y) + z

    f(0.5)
    assert seen == [(np.float64, np.float64)]
    assert fl.gradient(f, 0.5)[0] == pytest.approx(2 * float(np.sum(X)))
    fl.jvp(f, (0.5,), (1.0,))
    assert seen == [(np.float64, np.float64)] * 3
