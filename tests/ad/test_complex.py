"""Complex numbers end to end: the convention (JAX's and HIPS autograd's: the gradient of a
real f of z = x + iy is df/dx - i df/dy), complex inputs and intermediates, holomorphic
derivatives, forward mode with complex tangents, and clear refusals where a rule is not known
to be right for complex values."""

import numpy as np
import pytest

import fluxml as fl
from fluxml.testing import check_grads

rng = np.random.default_rng(7)


def crandn(*shape):
    return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)


def fd_gradient(f, z, eps=1e-6):
    """df/dx - i df/dy of a real f at the complex array z, by central differences."""
    z = np.asarray(z, dtype=complex)
    g = np.zeros_like(z)
    for k in np.ndindex(z.shape):
        for step, weight in ((eps, 1.0), (1j * eps, -1j)):
            e = np.zeros_like(z)
            e[k] = step
            g[k] += weight * (f(z + e) - f(z - e)) / (2 * eps)
    return g


# --- the regressions of issue 18, item 4: real functions through complex intermediates ---------

X = np.array([0.5, -1.2, 2.0, -0.3])


def test_abs_of_a_complex_multiple():
    (g,) = fl.gradient(lambda x: np.sum(np.abs(x * (1 + 1j))), X)
    np.testing.assert_allclose(g, np.sqrt(2) * np.sign(X), rtol=1e-12)


def test_abs_of_a_complex_exponential():
    f = lambda x: np.sum(np.abs(np.exp(1j * x) + 0.5))  # noqa: E731
    (g,) = fl.gradient(f, X)
    # |e^{ix} + 1/2| = sqrt(5/4 + cos x): derivative -sin x / (2 |.|)
    want = -np.sin(X) / (2 * np.sqrt(1.25 + np.cos(X)))
    np.testing.assert_allclose(g, want, rtol=1e-12)
    check_grads(f, X)


def test_scalar_complex_intermediate():
    f = lambda x: np.abs(np.exp(1j * x) + 0.5)  # noqa: E731
    (g,) = fl.gradient(f, 0.3)
    assert isinstance(g, float)
    np.testing.assert_allclose(g, -np.sin(0.3) / (2 * np.sqrt(1.25 + np.cos(0.3))), rtol=1e-12)
    check_grads(f, 0.3)


# --- complex parameters of a real loss ----------------------------------------------------------

def test_convention_of_abs_squared():
    (g,) = fl.gradient(lambda z: np.abs(z) ** 2, 3 + 4j)
    assert np.isclose(g, 6 - 8j) and isinstance(g, complex)
    (g,) = fl.gradient(lambda z: np.sum(np.real(z * np.conj(z))), np.array([3 + 4j]))
    np.testing.assert_allclose(g, [6 - 8j])


def test_gradient_matches_finite_differences():
    a = crandn(3, 3)
    f = lambda z: np.sum(np.abs(a @ z + np.sin(z)) ** 2) + np.real(np.sum(z)) * 0.3  # noqa: E731
    z = crandn(3)
    (g,) = fl.gradient(f, z)
    np.testing.assert_allclose(g, fd_gradient(f, z), rtol=1e-6, atol=1e-8)


def test_descent_with_the_conjugate_lowers_the_loss():
    target = crandn(4)
    loss = lambda z: np.sum(np.abs(z - target) ** 2)  # noqa: E731
    z = np.zeros(4, dtype=complex)
    for _ in range(50):
        (g,) = fl.gradient(loss, z)
        z = z - 0.1 * np.conj(g)
    np.testing.assert_allclose(z, target, rtol=1e-4)


def test_mixed_real_and_complex_arguments():
    f = lambda x, z: np.sum(np.abs(x * z) ** 2)  # noqa: E731
    x, z = rng.standard_normal(3), crandn(3)
    gx, gz = fl.gradient(f, x, z)
    assert gx.dtype == np.float64 and gz.dtype == np.complex128
    np.testing.assert_allclose(gx, 2 * x * np.abs(z) ** 2, rtol=1e-12)
    np.testing.assert_allclose(gz, 2 * x**2 * np.conj(z), rtol=1e-12)


def test_complex64_stays_complex64():
    z = crandn(3).astype(np.complex64)
    (g,) = fl.gradient(lambda z: np.sum(np.abs(z) ** 2), z)
    assert g.dtype == np.complex64


def test_angle_and_real_if_close():
    f = lambda z: np.sum(np.angle(z) * np.abs(z))  # noqa: E731
    z = crandn(4)
    np.testing.assert_allclose(fl.gradient(f, z)[0], fd_gradient(f, z), rtol=1e-6)
    g = lambda z: np.sum(np.angle(z, deg=True))  # noqa: E731
    np.testing.assert_allclose(fl.gradient(g, z)[0], fd_gradient(g, z), rtol=1e-6)
    check_grads(f, z)
    h = lambda x: np.sum(np.real_if_close(x * (1 + 0j)) ** 2)  # noqa: E731
    (gx,) = fl.gradient(h, X)
    np.testing.assert_allclose(gx, 2 * X)
    assert fl.gradient(h, X)[0].dtype == np.float64


# --- complex outputs: refused unless a holomorphic derivative is asked for ----------------------

def test_complex_output_refused():
    with pytest.raises(fl.DifferentiationError, match="complex.*holomorphic=True"):
        fl.gradient(lambda z: np.sum(z**2), crandn(2))


def test_holomorphic_gradient_is_the_complex_derivative():
    z = crandn(3)
    (g,) = fl.gradient(lambda z: np.sum(np.sin(z) * z), z, holomorphic=True)
    np.testing.assert_allclose(g, np.cos(z) * z + np.sin(z), rtol=1e-12)
    value, (g,) = fl.withgradient(lambda z: z**3, 1 + 1j, holomorphic=True)
    assert value == (1 + 1j) ** 3
    np.testing.assert_allclose(g, 3 * (1 + 1j) ** 2)


def test_holomorphic_needs_complex_inputs():
    with pytest.raises(fl.DifferentiationError, match="holomorphic=True.*complex"):
        fl.gradient(lambda x: np.sum(x * 1j), np.ones(2), holomorphic=True)


# --- forward mode ----------------------------------------------------------------------------

def test_jvp_with_complex_tangents():
    z, v = crandn(3), crandn(3)
    y, t = fl.jvp(lambda z: np.exp(z) * z, (z,), (v,))
    np.testing.assert_allclose(t, (np.exp(z) * z + np.exp(z)) * v, rtol=1e-12)
    y, t = fl.jvp(lambda z: np.abs(z) ** 2, (z,), (v,))
    np.testing.assert_allclose(t, 2 * np.real(np.conj(z) * v), rtol=1e-12)
    assert t.dtype == np.float64


def test_jvp_refuses_a_complex_tangent_for_a_real_primal():
    with pytest.raises(ValueError, match="complex tangent"):
        fl.jvp(np.sin, (np.ones(2),), (np.ones(2) * 1j,))


def test_pullback_refuses_a_complex_cotangent_for_a_real_output():
    _, back = fl.pullback(np.sin, np.ones(2))
    with pytest.raises(ValueError, match="complex cotangent"):
        back(np.ones(2) * 1j)


def test_second_order_through_complex_intermediates():
    f = lambda x: np.sum(np.abs(np.exp(1j * x) + 0.5) ** 3)  # noqa: E731
    check_grads(f, X, order=3)
    H = fl.hessian(f, X)
    eps = 1e-5
    for k in range(len(X)):
        e = np.zeros_like(X)
        e[k] = eps
        fd = (fl.gradient(f, X + e)[0] - fl.gradient(f, X - e)[0]) / (2 * eps)
        np.testing.assert_allclose(H[:, k], fd, rtol=1e-6, atol=1e-8)


# --- refusals: a function whose rule is not known to be right for complex values ---------------

def test_unverified_function_on_complex_values_refuses():
    with pytest.raises(fl.DifferentiationError, match=r"np\.maximum.*complex"):
        fl.gradient(lambda x: np.sum(np.abs(np.maximum(x * 1j, 0.5))), X)


def test_ufunc_methods_on_complex_values_refuse_unless_verified():
    def at(z):
        y = z * 1.0
        np.maximum.at(y, [0, 1], 0.5)
        return np.sum(np.abs(y))

    with pytest.raises(fl.DifferentiationError, match=r"np\.maximum.*complex"):
        fl.gradient(at, crandn(3))
    with pytest.raises(fl.DifferentiationError, match=r"np\.maximum.*complex"):
        fl.gradient(lambda z: np.abs(np.maximum.reduce(z)), crandn(3))
    (g,) = fl.gradient(lambda z: np.abs(np.add.reduce(z)) ** 2, np.array([1 + 1j, 2 - 1j]))
    np.testing.assert_allclose(g, [6, 6])


def test_hermitian_svd_of_a_complex_matrix_refuses():
    z = crandn(3, 3)
    with pytest.raises(fl.DifferentiationError, match="hermitian=True"):
        fl.gradient(lambda z: np.sum(np.linalg.svd(z, hermitian=True)[1]), z @ np.conj(z.T))


def test_jacobian_of_complex_input_refuses():
    with pytest.raises(fl.DifferentiationError, match="jacobian.*complex"):
        fl.jacobian(lambda z: np.abs(z), crandn(2))


# --- in-place writes of complex values ---------------------------------------------------------

def test_fill_loop_with_complex_values():
    def fill(z):
        out = np.zeros_like(z)
        out[0] = z[0]
        for i in range(1, len(z)):
            out[i] = out[i - 1] * 0.5j + np.exp(z[i] * 0.3)
        out *= 1 - 0.5j
        out[1:3] += np.conj(z[:2])
        return np.sum(np.abs(out) ** 2)

    z = crandn(5)
    np.testing.assert_allclose(fl.gradient(fill, z)[0], fd_gradient(fill, z), rtol=1e-6)
    check_grads(fill, z)


def test_complex_buffer_filled_from_real_values():
    def f(x):
        buf = np.zeros(4, dtype=complex, like=x)
        buf[:] = x * 1j
        buf[::2] = np.exp(1j * x[::2])
        return np.sum(np.abs(buf) ** 3) + np.sum(buf.real**2)

    check_grads(f, X)


def test_complex_written_into_a_real_traced_array_refuses_as_numpy():
    def f(x):
        y = x * 1.0
        y += 1j
        return np.sum(np.abs(y))

    with pytest.raises(TypeError, match="cannot cast complex128 into the float64"):
        fl.gradient(f, X)
