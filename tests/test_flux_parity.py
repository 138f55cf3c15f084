"""Small Flux names with no family of their own: activations, batched_vec and
batched_adjoint, diaghessian and withjacobian, against computations written here."""

import numpy as np
import pytest

import fluxml as fl
from fluxml.testing import check_grads

RNG = np.random.default_rng(17)


def test_activations_are_each_layers_output():
    m = fl.f64(fl.Chain(fl.Dense(3, 4, np.tanh), fl.Dense(4, 2), np.exp))
    x = RNG.normal(size=(5, 3))
    a, b, c = fl.activations(m, x)
    np.testing.assert_allclose(a, m.layers[0](x))
    np.testing.assert_allclose(b, m.layers[1](a))
    np.testing.assert_allclose(c, m(x))
    named = fl.Chain(enc=np.tanh, dec=np.exp)
    assert len(fl.activations(named, x)) == 2 and fl.activations(fl.Chain(), x) == ()
    with pytest.raises(TypeError, match="activations takes a Chain and its input; got Dense"):
        fl.activations(fl.Dense(2, 3), x)
    with pytest.raises(ValueError, match=r"Chain\[1\]: Dense\(4 => 2\) expects"):
        fl.activations(fl.Chain(np.tanh, fl.Dense(4, 2)), x)


def test_batched_vec_and_adjoint():
    a, v = RNG.normal(size=(3, 4, 5)), RNG.normal(size=(3, 5))
    want = np.stack([a[i] @ v[i] for i in range(3)])
    np.testing.assert_allclose(fl.nnlib.batched_vec(a, v), want, rtol=1e-13)
    np.testing.assert_allclose(fl.nnlib.batched_vec(a[:1], v)[2], a[0] @ v[2], rtol=1e-13)
    check_grads(fl.nnlib.batched_vec, a, v)
    z = a + 1j * RNG.normal(size=a.shape)
    np.testing.assert_array_equal(fl.nnlib.batched_adjoint(z)[1], z[1].conj().T)
    with pytest.raises(ValueError, match=r"batched_vec: the vectors must be \(B, n\)"):
        fl.nnlib.batched_vec(a, v[0])


def test_diaghessian_and_withjacobian():
    x, y = RNG.normal(size=(2, 3)), RNG.normal(size=3)

    def f(x, y):
        return np.sum(np.sin(x) * y) + np.sum(y ** 3)

    hx, hy = fl.diaghessian(f, x, y)
    np.testing.assert_allclose(hx, -np.sin(x) * y, rtol=1e-10)
    np.testing.assert_allclose(hy, 6 * y, rtol=1e-10)
    assert fl.diaghessian(lambda s: s ** 4, 2.0)[0] == pytest.approx(48.0)
    val, jac = fl.withjacobian(np.sin, y)
    np.testing.assert_allclose(val, np.sin(y))
    np.testing.assert_allclose(jac, np.diag(np.cos(y)), rtol=1e-12, atol=1e-15)
