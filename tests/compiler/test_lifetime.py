"""The lifetime of a compiled program: what the user changes after the first compiled call
must reach the program (or be refused with a clear error), never leave a stale one running."""

import numpy as np
import pytest

import fluxml as fl


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
