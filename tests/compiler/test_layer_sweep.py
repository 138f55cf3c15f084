"""The short run of the layer sweep (``tests/compiler/layer_sweep.py``): every public layer and
loss, compiled (forward, gradient, two Adam steps), equals eager fluxml on the NumPy back end.
The whole table on XLA (a minute or two: each case
compiles with XLA) is ``python -m tests.compiler.layer_sweep xla``."""

import numpy as np
import pytest

import fluxml as fl
from tests.compiler import layer_sweep as ls


@pytest.mark.parametrize("name", list(ls.BY_NAME))
def test_layer_compiled_equals_eager_numpy(name):
    result = ls.check(ls.BY_NAME[name], "numpy", np.float64)
    assert ls.summary(result) == "ok"


@pytest.mark.parametrize("name", ["Conv2d(groups=2)", "BatchNorm(train)", "LSTM", "GRU",
                                  "MultiHeadAttention(mask, k)", "AdaptiveMaxPool2d",
                                  "Dropout(train)", "loss ctc_loss"])
def test_layer_compiled_equals_eager_numpy_float32(name):
    result = ls.check(ls.BY_NAME[name], "numpy", np.float32)
    assert ls.summary(result) == "ok"


def test_a_compiled_forward_runs_train_test_layers_in_test_mode():
    """Outside a gradient, a BatchNorm or Dropout with ``active=None`` is in test mode; the
    compiled forward (whose arrays are traced, but not differentiated) must be too."""
    model = fl.f64(fl.Chain(fl.Dense(3, 4), fl.BatchNorm(4), fl.Dropout(0.5)))
    model.layers[1].running_mean[:] = 0.3
    x = np.random.default_rng(0).standard_normal((6, 3))
    np.testing.assert_allclose(fl.compile(model)(x), model(x), rtol=1e-12)
    assert np.all(model.layers[1].running_mean == 0.3)  # no statistics written

