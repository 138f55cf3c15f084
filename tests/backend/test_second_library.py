"""The engine on a second array library: gradients stay on the inputs' device.

``fakedevice`` refuses every NumPy array and implicit conversion, as CuPy does, so a
NumPy-only call in the engine's path (a NumPy seed, ``np.empty`` in a broadcast) fails here.
A few rules only: running every rule, layer and optimiser test this way is still to do.
"""

from __future__ import annotations

import numpy as np
import pytest

import fluxml as fl
from tests.backend.fakedevice import FAKE, FakeDeviceArray

W = np.random.default_rng(0).standard_normal((2, 3))
M = np.random.default_rng(1).standard_normal((3, 2))

CASES = {
    "tanh-sum": lambda w, m: np.sum(np.tanh(w)),
    "affine": lambda w, m: np.sum(w * 2.0 + 1.0),
    "mean-exp": lambda w, m: np.mean(np.exp(w) / 3.0),
    "sum-over-axis": lambda w, m: np.sum(np.sum(np.sin(w), axis=0) ** 2),
    "dense-relu": lambda w, m: np.sum(np.maximum(w @ m, 0.0) ** 2),
}


@pytest.mark.parametrize("name", CASES)
def test_gradient_on_a_second_library_matches_numpy(name):
    f = CASES[name]
    (g,) = fl.gradient(lambda w: f(w, FakeDeviceArray(M)), FakeDeviceArray(W))
    (want,) = fl.gradient(lambda w: f(w, M), W)
    assert type(g) is FakeDeviceArray  # stayed on its device
    np.testing.assert_allclose(g.get(), want, rtol=1e-13)


def test_a_model_moved_to_a_second_library_trains_there():
    fl.seed(0)
    model = fl.Chain(fl.Dense(3, 4, fl.relu), fl.Dense(4, 2))
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    moved = fl.backend.to_device(model, FAKE)
    (g,) = fl.gradient(lambda m: np.sum(m(FakeDeviceArray(x)) ** 2), moved)
    (want,) = fl.gradient(lambda m: np.sum(m(x) ** 2), model)
    for a, b in zip(fl.leaves(g), fl.leaves(want)):
        assert type(a) is FakeDeviceArray and a.dtype == np.float32
        np.testing.assert_allclose(a.get(), b, rtol=1e-6)
