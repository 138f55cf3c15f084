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
    # an array given twice is one variable, as fl.gradient takes it (f = sum(z^3) there: the
    # derivative of the gradient's 3 z^2 at each place, not 2 z and 0 as for two arrays)
    z = np.array([1.0, 2.0])
    for h in fl.diaghessian(lambda a, b: np.sum(a ** 2 * b), z, z):
        np.testing.assert_allclose(h, 6 * z, rtol=1e-12)
    hz = fl.diaghessian(lambda a, b: np.sum(a ** 2 * b), z, z.copy())
    np.testing.assert_allclose(hz[0], 2 * z, rtol=1e-12)
    np.testing.assert_allclose(hz[1], 0 * z, atol=1e-12)
    assert fl.diaghessian(lambda a, b: a ** 2 * b ** 3, 2.0, 2.0) == (16.0, 48.0)  # (numbers)
    # a tree of float arrays: refused by name (its diagonal came back as None, silently)
    with pytest.raises(TypeError, match=r"diaghessian takes one array x \(or a number\); got "
                                        r"dict"):
        fl.diaghessian(lambda p: np.sum(p["w"] ** 3), {"w": z})
    val, jac = fl.withjacobian(np.sin, y)
    np.testing.assert_allclose(val, np.sin(y))
    np.testing.assert_allclose(jac, np.diag(np.cos(y)), rtol=1e-12, atol=1e-15)
