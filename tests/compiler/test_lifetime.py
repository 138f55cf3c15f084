"""The lifetime of a compiled program: what the user changes after the first compiled call
must reach the program (or be refused with a clear error), never leave a stale one running."""

import copy

import numpy as np
import pytest

import fluxml as fl


def _model():
    rng = np.random.default_rng(0)
    return fl.f64(fl.Chain(fl.Dense(3, 4, np.tanh, rng=rng), fl.Dense(4, 2, rng=rng)))


def _batch():
    rng = np.random.default_rng(1)
    return rng.standard_normal((5, 3)), rng.standard_normal((5, 2))


def test_an_optimiser_state_closed_over_is_refused():
    # Descent's state holds no arrays: its learning rate and frozen flags were read once, at
    # trace time, and fl.adjust / fl.freeze after the first call silently did nothing
    model, (x, y) = _model(), _batch()
    state = fl.setup(fl.Descent(0.1), model)

    def step(model, x, y):
        g = fl.gradient(lambda m: fl.mse(m(x), y), model)[0]
        fl.update(state, model, g)

    with pytest.raises(fl.CompileError, match="not an argument of the compiled function"):
        fl.compile(step)(model, x, y)


def test_an_optimiser_state_passed_in_or_made_inside_is_stepped_as_eager():
    model, (x, y) = _model(), _batch()
    state = fl.setup(fl.Descent(0.1), model)
    eager_model, eager_state = copy.deepcopy((model, state))

    def step(model, state, x, y):
        g = fl.gradient(lambda m: fl.mse(m(x), y), model)[0]
        fl.update(state, model, g)
        fl.update(fl.setup(fl.Descent(0.01), model), model, g)  # a state made inside: allowed
        fl.update(state.layers[1], model.layers[1], g.layers[1])  # a part of the argument

    compiled = fl.compile(step)
    for k in range(4):
        if k == 2:
            fl.adjust(state, 0.3), fl.adjust(eager_state, 0.3)
        if k == 3:
            fl.freeze(state.layers[0]), fl.freeze(eager_state.layers[0])
        compiled(model, state, x, y)
        step(eager_model, eager_state, x, y)
        for a, b in zip(fl.tree.leaves(model), fl.tree.leaves(eager_model)):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


class _Scaled:
    """A user's layer that fills a buffer made with ``like=`` its own parameter."""

    def __init__(self):
        self.scale = np.array([1.0, 2.0, 3.0])

    def __call__(self, x):
        out = np.empty(x.shape, dtype=self.scale.dtype, like=self.scale)
        for j in range(x.shape[-1]):
            out[..., j] = x[..., j] * self.scale[j]
        return out


@pytest.mark.parametrize("make", [np.empty, np.zeros, np.ones])
def test_a_buffer_made_like_a_parameter_is_filled_in_a_compiled_gradient(make):
    # under fl.compile the buffer was a read-only constant of the program: "assignment
    # destination is read-only" (the layer ran eagerly)
    def scaled(self, x):
        out = make(x.shape, dtype=self.scale.dtype, like=self.scale)
        for j in range(x.shape[-1]):
            out[..., j] = out[..., j] * 0 + x[..., j] * self.scale[j]
        return out

    layer = type("Scaled", (_Scaled,), {"__call__": scaled})()
    x = np.arange(6.0).reshape(2, 3)

    def loss_and_grad(layer, x):
        return fl.withgradient(lambda m: np.sum(m(x) ** 2), layer)

    compiled = fl.compile(loss_and_grad)
    want_value, (want,) = loss_and_grad(layer, x)
    for _ in range(2):  # twice: the second call runs the program
        value, (got,) = compiled(layer, x)
        assert float(value) == pytest.approx(float(want_value))
        np.testing.assert_allclose(got.scale, want.scale)
        np.testing.assert_allclose(got.scale, 2 * np.sum(x * x * layer.scale, axis=0))


@pytest.mark.parametrize("backend", ["numpy", "xla"])
def test_a_compiled_dropout_draws_from_the_default_generator_fl_seed_made(backend):
    # the program held the generator of trace time; fl.seed makes a new one, so seeding no
    # longer repeated a compiled dropout's masks (eager ones were repeated)
    if backend == "xla":
        pytest.importorskip("jax", reason="the xla back end needs JAX")
    drop = fl.trainmode(fl.Dropout(0.5))  # (no rng=: fluxml's default generator)
    x = np.ones(64)
    compiled = fl.compile(lambda d, x: d(x), backend=backend, background=False)
    fl.seed(0)
    first = compiled(drop, x)
    fl.seed(0)
    again = compiled(drop, x)
    fl.seed(0)
    eager = drop(x)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(again, eager)


def test_a_state_rebuilt_inside_from_parts_of_the_arguments_is_stepped():
    # (a tuple of two states made inside the function: its Leafs are the arguments')
    first, second = _model(), _model()
    states = fl.setup(fl.Descent(0.1), first), fl.setup(fl.Momentum(0.05), second)
    eager = copy.deepcopy((first, second, states))
    (x, y) = _batch()

    def step(first, second, states, x, y):
        g = fl.gradient(lambda a, b: fl.mse(a(x), y) + fl.mse(b(x), y), first, second)
        fl.update((states[0], states[1]), (first, second), g)

    compiled = fl.compile(step)
    for k in range(3):
        if k == 2:
            fl.adjust(states[0], 0.01), fl.adjust(eager[2][0], 0.01)
        compiled(first, second, states, x, y)
        step(*eager, x, y)
    for a, b in zip(fl.tree.leaves((first, second)), fl.tree.leaves(eager[:2])):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
