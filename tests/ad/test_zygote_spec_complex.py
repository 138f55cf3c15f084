"""Zygote.jl's complex-number tests translated (test/complex.jl, test/lib/number.jl "Complex
numbers", test/features.jl "misc" x.re / x.im, test/forward.jl abs(x + 2im)).

The convention differs, by design (fl.gradient's docstring): for a real f of z = x + iy,
Zygote's gradient is df/dx + i df/dy and fluxml's is df/dx - i df/dy, its conjugate. So each
Zygote expectation ``want`` is asserted here as ``conj(want)``; where Zygote's test compares
with finite differences, this file compares with the same differences in fluxml's convention.
"""

import numpy as np
import pytest

import fluxml as fl


def zygote(f, z):
    """fluxml's gradient of the real ``f`` at ``z``, conjugated to Zygote's convention."""
    (g,) = fl.gradient(f, z)
    return None if g is None else np.conj(g)


def fd_gradient(f, z, eps=1e-7):
    """df/dx - i df/dy of the real ``f`` at the complex number ``z`` (fluxml's convention)."""
    dx = (f(z + eps) - f(z - eps)) / (2 * eps)
    dy = (f(z + 1j * eps) - f(z - 1j * eps)) / (2 * eps)
    return dx - 1j * dy


def test_basic():  # complex.jl "basic"
    assert np.isclose(zygote(lambda x: np.real(np.abs(x) * np.exp(1j * np.angle(x))),
                             10 + 20j), 1)
    assert zygote(lambda x: np.imag(np.real(x) + 0.3j), 0.3) in (None, 0)
    assert np.isclose(zygote(lambda x: np.imag(np.conj(x) + 0.3j), 0.3 + 0j), -1j)
    assert zygote(lambda x: np.imag(np.conj(x) + 0.3j), 0.3) in (None, 0)  # a real x
    assert np.isclose(zygote(lambda x: np.abs(np.imag(x) + 0.3), 0.3 + 0j), 1j)
    assert zygote(lambda x: np.abs(np.imag(x) + 0.3), 0.3) in (None, 0)
    assert np.isclose(zygote(lambda a: np.real(a * np.conj(a)), 0.3j), 0.6j)
    assert np.isclose(zygote(lambda a: np.real(np.stack([a]) * np.conj(np.stack([a])))[0], 0.3j),
                      0.6j)
    assert np.isclose(zygote(lambda x: np.abs((1j * x) / 1j), 2.0), 1)
    assert np.isclose(zygote(lambda x: np.abs(1j / (1j * x)), 2.0), -1 / 4)
    m = np.array([[1, 2j], [3j, 4]])
    np.testing.assert_allclose(zygote(lambda x: np.real(np.linalg.det(x)), m),
                               [[4, 3j], [2j, 1]])
    np.testing.assert_allclose(zygote(lambda x: np.real(np.log(np.linalg.det(x))), m),
                               np.array([[4, 3j], [2j, 1]]) / 10)
    np.testing.assert_allclose(zygote(lambda x: np.linalg.slogdet(x)[1], m),
                               np.array([[4, 3j], [2j, 1]]) / 10)
    # issue 705: a real argument gets a real gradient, a complex one a complex gradient
    x = np.array([1.0, 2, 3])
    assert zygote(lambda x: np.imag(np.sum(np.exp(x))), x) is None  # Zygote: real(im e^x) = 0
    np.testing.assert_allclose(zygote(lambda x: np.imag(np.sum(np.exp(x))), x + 0j),
                               1j * np.exp(x))


C_TO_R = [np.real, np.imag, np.abs, lambda z: np.abs(z) ** 2,
          lambda z: np.real(np.abs(z) * np.cos(1j * np.angle(z))),
          lambda z: np.abs(np.cos(np.exp(z))),
          lambda z: 3 * np.real(z) ** 3 - 2 * np.imag(z) ** 5]


@pytest.mark.parametrize("f", C_TO_R)
@pytest.mark.parametrize("z", [1.0 + 2.0j, -2.0 + np.pi * 1j])
def test_c_to_r(f, z):  # complex.jl "C->R"
    (g,) = fl.gradient(lambda z: np.real(f(z)), z)
    np.testing.assert_allclose(g, fd_gradient(lambda z: np.real(f(z)), z), atol=1e-6)


HOLOMORPHIC = [np.cos, np.exp, np.log, lambda z: z ** 2,
               lambda z: (np.real(z) + 1j * np.imag(z)) ** 2,
               lambda z: np.real(z) ** 2 - np.imag(z) ** 2 + 2j * (np.real(z) * np.imag(z)),
               lambda z: np.exp(np.cos(np.log(z))),
               lambda z: np.abs(z) * np.exp(1j * np.angle(z)),
               np.sin, np.tan, np.sqrt, np.tanh, np.arcsin, np.arctan, np.log1p, np.expm1,
               lambda z: z ** 2.5, lambda z: z ** (1 + 1j), lambda z: 2 ** z]


@pytest.mark.parametrize("f", HOLOMORPHIC)
@pytest.mark.parametrize("z", [1.0 + 2.0j, -2.0 + np.pi * 1j, 0.3 - 0.2j])
def test_c_to_c_holomorphic(f, z):  # complex.jl "C->C holomorphic"
    eps = 1e-7
    derivative = (f(z + eps) - f(z - eps)) / (2 * eps)
    g_real = fl.gradient(lambda z: np.real(f(z)), z)[0]
    g_imag = fl.gradient(lambda z: np.imag(f(z)), z)[0]
    # Zygote: grad_r ≈ -im grad_i and grad_r ≈ conj(f'); conjugated: g_r = i g_i, g_r = f'
    np.testing.assert_allclose(g_real, 1j * g_imag, atol=1e-9)
    np.testing.assert_allclose(g_real, derivative, atol=1e-6)
    np.testing.assert_allclose(fl.gradient(f, z, holomorphic=True)[0], derivative, atol=1e-6)


NON_HOLOMORPHIC = [np.conj, lambda z: np.abs(z) + 0j, lambda z: 1j * np.abs(z),
                   lambda z: np.abs(z) ** 2 + 0j, lambda z: 1j * np.abs(z) ** 2,
                   lambda z: np.conj(z) * z, lambda z: np.conj(z) * z ** 2,
                   lambda z: np.imag(z) ** 2 + np.real(np.sin(z)) ** 3 * 1j]


@pytest.mark.parametrize("f", NON_HOLOMORPHIC)
@pytest.mark.parametrize("z", [1.0 + 2.0j, -2.0 + np.pi * 1j])
def test_c_to_c_non_holomorphic(f, z):  # complex.jl "C->C non-holomorphic"
    for part in (np.real, np.imag):
        (g,) = fl.gradient(lambda z: part(f(z)), z)
        np.testing.assert_allclose(g, fd_gradient(lambda z: part(f(z)), z), atol=1e-6)


def test_issues_342_917_1529_1601_1461():  # complex.jl issue testsets
    assert fl.gradient(lambda x: np.real(x + 2.0j), 3.0) == (1.0,)
    assert fl.gradient(lambda x: np.imag(x + 2.0j), 3.0) == (0.0,)

    def fun(v):  # 917
        c = v[0:3] + v[3:6] * 1j
        return np.sum(v[6:9] * np.abs(c) ** 2)

    h = np.array([[14, 0, 0, 0, 0, 0, 2, 0, 0], [0, 16, 0, 0, 0, 0, 0, 4, 0],
                  [0, 0, 18, 0, 0, 0, 0, 0, 6], [0, 0, 0, 14, 0, 0, 8, 0, 0],
                  [0, 0, 0, 0, 16, 0, 0, 10, 0], [0, 0, 0, 0, 0, 18, 0, 0, 12],
                  [2, 0, 0, 8, 0, 0, 0, 0, 0], [0, 4, 0, 0, 10, 0, 0, 0, 0],
                  [0, 0, 6, 0, 0, 12, 0, 0, 0]])
    np.testing.assert_allclose(fl.hessian(fun, np.arange(1.0, 10.0)), h)
    # 1529: abs at the origin has the subgradient 0, real and complex
    assert fl.gradient(lambda x: np.sum(np.abs(x)), np.zeros(1, np.float32))[0][0] == 0
    assert fl.gradient(lambda x: np.sum(np.abs(x)), np.zeros(1, np.complex64))[0][0] == 0
    (g,) = fl.gradient(lambda x: np.sum(np.abs(x)), np.array([3 + 4j], np.complex64))
    np.testing.assert_allclose(np.conj(g), [0.6 + 0.8j], rtol=1e-6)
    # 1601: mixed complex and real broadcast
    np.testing.assert_array_equal(
        fl.gradient(lambda x: np.sum(np.real((1j + x) + x)), np.ones(10))[0], 2 * np.ones(10))
    # 1461: a * exp(x + b i), through muladd or not
    x, a, b = np.ones(10), 1.0, 2.0
    g = fl.gradient(lambda x, a, b: np.sum(np.real(a * np.exp(x + b * 1j))), x, a, b)
    np.testing.assert_allclose(g[0], np.real(np.exp(x + 2j)))
    assert np.isclose(g[1], np.sum(np.real(np.exp(x + 2j))))
    assert np.isclose(g[2], np.sum(np.real(1j * np.exp(x + 2j))))


def test_numbers():  # lib/number.jl "Complex numbers", features.jl x.re / x.im
    assert fl.gradient(np.imag, 3.0) == (None,)  # Zygote: 0.0
    assert zygote(np.imag, 3.0 + 3.0j) == 1j
    assert fl.gradient(np.conj, 3.0) == (1.0,)
    assert zygote(lambda z: np.real(np.conj(z)), 3.0 + 1j) == 1
    assert zygote(np.real, 3.0 + 1j) == 1
    assert np.isclose(zygote(lambda z: np.abs(z) ** 2, 3.0 + 2j), 6 + 4j)
    assert zygote(lambda z: z.real, 2 + 3j) == 1
    assert zygote(lambda z: z.real * z.imag, 2 + 3j) == 3 + 2j
    assert zygote(lambda z: z.real * z.imag + z.real, 2 + 3j) == 4 + 2j
    assert zygote(lambda z: np.abs(z * z.real) ** 2, 4 + 5j) == 456 + 160j
    np.testing.assert_array_equal(
        zygote(lambda xs: np.sum(xs.imag ** 2), np.array([1 + 2j, 3 + 0j])), [4j, 0])


def test_forward_abs_of_shifted():  # forward.jl: D(x -> abs(x + 2im), 1)
    _, t = fl.jvp(lambda x: np.abs(x + 2j), (1.0,), (1.0,))
    assert np.isclose(t, 1 / np.sqrt(5))
    assert np.isclose(fl.gradient(lambda x: np.abs(x + 2j), 1.0)[0], t)
    assert np.isclose(np.real(fl.gradient(lambda x: np.abs(x + 2j), 1.0 + 0j)[0]), t)
