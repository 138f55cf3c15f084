"""Engine code that meets values a compiled program computes (``fl.compile``, NumPy back end):
integer labels as an argument, ``np.where`` on a computed condition, max pooling's backward
pass, the fused LSTM's backward pass. Each agrees with eager fluxml (no JAX needed)."""

import copy

import numpy as np
import pytest

import fluxml as fl
from fluxml.tree import flatten


def _step(lossf):
    def step(model, opt, x, y):
        loss, (g,) = fl.withgradient(lambda m: lossf(m(x), y), model)
        fl.update(opt, model, g)
        return loss

    return step


def _models(name, rng):
    if name == "labels":
        model = fl.Chain(fl.Dense(6, 8, fl.relu), fl.Dense(8, 4))
        return model, rng.normal(size=(5, 6)), rng.integers(0, 4, 5), fl.logitcrossentropy
    if name == "maxpool":
        model = fl.Chain(fl.Conv((3, 3), 1, 2, fl.relu, pad=1), fl.MaxPool((2, 2)),
                         fl.Flatten(), fl.Dense(32, 3))
        return model, rng.normal(size=(2, 1, 8, 8)), rng.integers(0, 3, 2), \
            fl.logitcrossentropy
    model = fl.Chain(fl.LSTM(3, 4), fl.Dense(4, 3))
    return model, rng.normal(size=(2, 5, 3)), rng.normal(size=(2, 5, 3)), fl.mse


@pytest.mark.parametrize("name", ["labels", "maxpool", "lstm"])
def test_compiled_steps_agree_with_eager(name):
    model, x, y, lossf = _models(name, np.random.default_rng(0))
    model = fl.f64(model)
    eager_model = copy.deepcopy(model)
    opt, eager_opt = fl.setup(fl.Adam(0.01), model), fl.setup(fl.Adam(0.01), eager_model)
    step = _step(lossf)
    compiled = fl.compile(step)
    for _ in range(3):
        np.testing.assert_allclose(compiled(model, opt, x, y), step(eager_model, eager_opt, x, y),
                                   rtol=1e-12)
    for a, b in zip(flatten((model, opt))[0], flatten((eager_model, eager_opt))[0]):
        if isinstance(a, np.ndarray):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    if name == "lstm":  # the backward pass is one call, not a loop of recorded steps
        assert [e.name for e in compiled.ir.eqns].count("lstm_sequence_vjp") == 1
        assert "getitem" not in {e.name for e in compiled.ir.eqns}


def test_labels_out_of_range_give_nan_when_compiled():
    """Eager code raises; compiled code cannot, and gives NaN, never a finite loss."""
    compiled = fl.compile(lambda logits, y: fl.logitcrossentropy(logits, y))
    logits = np.zeros((2, 3))
    assert np.isclose(compiled(logits, np.array([0, 2])), np.log(3))
    assert np.isnan(compiled(logits, np.array([0, 3])))
    with pytest.raises(ValueError, match="labels must lie in"):
        fl.logitcrossentropy(logits, np.array([0, 3]))


def test_where_on_a_computed_condition():
    def f(x):
        return fl.gradient(lambda x: np.sum(np.where(x > 0.5, x * x, -x)), x)[0]

    x = np.linspace(0, 1, 7)
    np.testing.assert_allclose(fl.compile(f)(x), np.where(x > 0.5, 2 * x, -1.0))
