"""The short run of the layer sweep (``tests/compiler/layer_sweep.py``): every public layer and
loss, compiled (forward, gradient, two Adam steps), equals eager fluxml on the NumPy back end,
and a sample of them on the XLA back end. The whole table on XLA (a minute or two: each case
compiles with XLA) is ``python -m tests.compiler.layer_sweep xla``."""

import copy

import numpy as np
import pytest

import fluxml as fl
from tests.compiler import layer_sweep as ls

# a few cases through XLA in the short suite (its first compile of each takes a second)
# (the benchmarks' Dense, Conv, MaxPool, LSTM and losses are in test_xla.py)
XLA_QUICK = ("AdaptiveMaxPool2d", "BatchNorm(auto)", "LayerNorm(train)", "EmbeddingBag(mean)",
             "GRU(state, return_state)", "MultiHeadAttention(mask, k)", "Bilinear")


@pytest.mark.parametrize("name", list(ls.BY_NAME))
def test_layer_compiled_equals_eager_numpy(name):
    case = ls.BY_NAME[name]
    summary = ls.summary(ls.check(case, "numpy", np.float64), case)
    assert summary == ("refused as documented: " + case.refusal if case.refusal else "ok")


@pytest.mark.parametrize("name", ["Conv2d(groups=2)", "BatchNorm(train)", "LSTM", "GRU",
                                  "MultiHeadAttention(mask, k)", "AdaptiveMaxPool2d",
                                  "Dropout(train)", "loss ctc_loss"])
def test_layer_compiled_equals_eager_numpy_float32(name):
    result = ls.check(ls.BY_NAME[name], "numpy", np.float32)
    assert ls.summary(result) == "ok"


def _xla(name, dtype):
    pytest.importorskip("jax", reason="the xla back end needs JAX: pip install 'fluxml[xla]'")
    assert ls.summary(ls.check(ls.BY_NAME[name], "xla", dtype)) == "ok"


@pytest.mark.parametrize("name", XLA_QUICK)
def test_layer_compiled_equals_eager_xla(name):
    _xla(name, np.float64 if len(name) % 2 else np.float32)


def test_a_compiled_forward_runs_train_test_layers_in_test_mode():
    """Outside a gradient, a BatchNorm or Dropout with ``active=None`` is in test mode; the
    compiled forward (whose arrays are traced, but not differentiated) must be too."""
    model = fl.f64(fl.Chain(fl.Dense(3, 4), fl.BatchNorm(4), fl.Dropout(0.5)))
    model.layers[1].running_mean[:] = 0.3
    x = np.random.default_rng(0).standard_normal((6, 3))
    np.testing.assert_allclose(fl.compile(model)(x), model(x), rtol=1e-12)
    assert np.all(model.layers[1].running_mean == 0.3)  # no statistics written


def test_xla_embedding_indices_are_checked_on_every_run():
    pytest.importorskip("jax", reason="the xla back end needs JAX: pip install 'fluxml[xla]'")
    layer = fl.f64(fl.Embedding(5, 2))
    f = fl.compile(lambda m, i: m(i), backend="xla", background=False)
    np.testing.assert_allclose(f(layer, np.array([1, 4])), layer.weight[[1, 4]], rtol=1e-15)
    with pytest.raises(fl.LayerError, match="vocabulary of 5.*got index 7"):
        f(layer, np.array([1, 7]))
    g = fl.compile(lambda w, i: fl.embedding(w, i), backend="xla", background=False)
    with pytest.raises(IndexError, match="index -1 is outside the vocabulary of 5"):
        g(layer.weight, np.array([1, -1]))


def test_tracing_does_not_advance_the_callers_generator():
    """The trace's example draws come from a copy of the generator: the compiled function
    draws, call by call, what the eager one draws (two layers sharing one generator too)."""
    rng = np.random.default_rng(3)
    model = fl.trainmode(fl.Chain(fl.Dropout(0.5, rng=rng), fl.Dense(4, 4, rng=rng),
                                  fl.Dropout(0.5, rng=rng)))
    eager = copy.deepcopy(model)  # (the generator copied with it, at its state now)
    f = fl.compile(lambda m, x: m(x))
    x = np.ones((3, 4), np.float32)
    for _ in range(3):
        np.testing.assert_array_equal(f(model, x), eager(x))
