"""The engine on a second array library: gradients stay on the inputs' device.

``fakedevice`` refuses every NumPy array and implicit conversion, as CuPy does, so a
NumPy-only call in the engine's path (a NumPy seed, ``np.empty`` in a broadcast) fails here.
A few rules and the three transforms (gradient, pullback, jvp) only: running every rule,
layer and optimiser test this way is still to do.
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
    # the condition and the index arrays are the second library's too
    "where": lambda w, m: np.sum(np.where(m.T > 0, w, 0.0) ** 2),
    "gather": lambda w, m: np.sum(np.sin(w[:, np.argsort(m[:, 0])]) * w),
    # arrays made like= a traced one are made by its library
    "like": lambda w, m: np.sum(w * np.full(w.shape, 2.0, like=w) + np.arange(3, like=w) * w),
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


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU", "Bidirectional"])
def test_recurrent_layers_with_lengths_run_on_a_second_library(kind):
    """The padded-batch masks and index arrays of ``lengths=`` (and the zero initial state)
    were NumPy arrays, refused next to CuPy's: a recurrent layer failed on the GPU. They are
    made by the input's array library now; outputs and gradients match NumPy's, and lengths
    on another device than x are refused by name."""
    fl.seed(0)
    layer = fl.f64(fl.Bidirectional(fl.LSTM(3, 4)) if kind == "Bidirectional"
                   else getattr(fl, kind)(3, 4))
    x = np.random.default_rng(2).standard_normal((3, 5, 3))
    w = np.random.default_rng(3).standard_normal(layer(x).shape)
    moved, fake_x, w_fake = fl.backend.to_device(layer, FAKE), FakeDeviceArray(x), \
        FakeDeviceArray(w)
    for lengths in ([5, 2, 4], FakeDeviceArray(np.array([1, 5, 3]))):
        want_lengths = lengths if isinstance(lengths, list) else lengths.get()
        y = moved(fake_x, lengths=lengths)
        assert type(y) is FakeDeviceArray
        np.testing.assert_allclose(y.get(), layer(x, lengths=want_lengths), rtol=1e-13)
        got = fl.gradient(lambda m, x: np.sum(np.sin(m(x, lengths=lengths)) * w_fake),
                          moved, fake_x)
        want = fl.gradient(lambda m, x: np.sum(np.sin(m(x, lengths=want_lengths)) * w),
                           layer, x)
        for a, b in zip(fl.leaves(got), fl.leaves(want)):
            assert type(a) is FakeDeviceArray
            np.testing.assert_allclose(a.get(), b, rtol=1e-12, atol=1e-14)
    with pytest.raises(fl.backend.DeviceMismatchError, match=r"given x and lengths: arrays on "
                                                             r"different devices"):
        layer(x, lengths=FakeDeviceArray(np.array([5, 2, 4])))


def test_pullback_on_a_second_library_takes_its_cotangent():
    # the cotangent is taken in its own library (np.array of a CuPy array is refused), and the
    # gradient, computed from it, stays there and is not the caller's array
    w, g = FakeDeviceArray(W), FakeDeviceArray(M.T)
    y, back = fl.pullback(lambda w: np.tanh(w) * 2.0, w)
    (dw,) = back(g)
    (want,) = fl.pullback(lambda w: np.tanh(w) * 2.0, W)[1](M.T)
    assert type(dw) is FakeDeviceArray
    np.testing.assert_allclose(dw.get(), want, rtol=1e-13)
    (same,) = fl.pullback(lambda w: w, w)[1](g)
    assert type(same) is FakeDeviceArray and same.data is not g.data
    np.testing.assert_array_equal(same.get(), g.get())


def test_jvp_on_a_second_library_takes_its_tangent():
    w, t = FakeDeviceArray(W), FakeDeviceArray(M.T)
    y, ty = fl.jvp(lambda w: np.sin(w) * w, (w,), (t,))
    _, want = fl.jvp(lambda w: np.sin(w) * w, (W,), (M.T,))
    assert type(y) is FakeDeviceArray and type(ty) is FakeDeviceArray
    np.testing.assert_allclose(ty.get(), want, rtol=1e-13)


@pytest.mark.parametrize("mode", ["rev", "fwd"])
def test_jacobian_on_a_second_library_builds_its_basis_there(mode):
    # the basis vectors are made in the argument's (output's) library: NumPy ones mixed
    # devices
    f = lambda w: np.sin(w) * w[::-1]  # noqa: E731
    x = W[0]
    _, got = fl.withjacobian(f, FakeDeviceArray(x), mode=mode)
    _, want = fl.withjacobian(f, x, mode=mode)
    assert type(got) is FakeDeviceArray
    np.testing.assert_allclose(got.get(), want, rtol=1e-13)
