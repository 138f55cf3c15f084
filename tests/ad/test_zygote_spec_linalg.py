"""Zygote.jl's linear-algebra tests translated to NumPy (test/gradcheck_p1.jl "(p)inv",
"multiplication"; gradcheck_p2.jl "backsolve", "Cholesky", "Symmetric", "diag", "Diagonal",
"dense + UniformScaling", "cholesky", "lyap", "matrix exponential", "eigen", "eigvals";
gradcheck_p4.jl "norm"). Julia's ``A \\ B`` is ``np.linalg.solve`` (``lstsq`` when A is not
square), ``B / A`` is ``solve(A.T, B.T).T``, ``LowerTriangular(L) \\ B`` is
``fluxml.scipy.linalg.solve_triangular``, ``cholesky(A) \\ B`` is ``cho_solve``, ``exp(A)`` of a
matrix is ``fluxml.scipy.linalg.expm`` and ``lyap(A, C)`` is ``solve_sylvester(A, A.T, -C)``.

Difference from Zygote, documented in ``ad/rules/decompositions.py``: ``eigh`` and ``cholesky``
read one triangle of their input, as LAPACK does, so the gradient of an unsymmetrised input
lies in that triangle (Zygote's ``Symmetric(A)`` wrapper does the same for ``uplo``).
"""

import numpy as np
import pytest

import fluxml as fl
from fluxml.scipy.linalg import cho_solve, expm, solve_sylvester, solve_triangular
from tests.ad.zygote_spec import assert_gradient, gradtest

rng = np.random.default_rng(123456)


def n(*shape):
    return rng.standard_normal(shape)


def test_pinv_inv():  # gradcheck_p1.jl "(p)inv"
    gradtest(np.linalg.pinv, n(7, 5), order=1)
    gradtest(np.linalg.pinv, n(5, 7), order=1)
    gradtest(np.linalg.inv, n(7, 7), order=1)
    gradtest(np.linalg.pinv, n(4, 3))
    gradtest(np.linalg.inv, n(3, 3))
    assert fl.gradient(lambda x: 1 / x, 2.0) == (-0.25,)


@pytest.mark.parametrize("a, b", [((13, 7), (7, 11)), ((13, 7), (7,)), ((13, 1), (1, 11)),
                                  ((10,), (10,))])
def test_multiplication(a, b):  # gradcheck_p1.jl "multiplication"
    gradtest(np.matmul, n(*a), n(*b), order=1)
    _, back = fl.pullback(np.matmul, n(13, 7), n(7))
    assert back(n(13))[1].shape == (7,)


def test_backsolve_dense():  # gradcheck_p2.jl "backsolve": \ and / (dense)
    p, q, m = 6, 5, 8
    x, y, v = n(p, p), n(p, q), n(p)
    gradtest(np.linalg.solve, x, y, order=1)
    gradtest(np.linalg.solve, x, v, order=1)
    gradtest(lambda a, b: np.linalg.lstsq(a, b, rcond=None)[0], n(p, m), y, order=1)  # wide
    gradtest(lambda a, b: np.linalg.lstsq(a, b, rcond=None)[0], n(m, q), n(m), order=1)  # tall
    gradtest(lambda y, x: np.linalg.solve(x.T, y).T, y, x, order=1)  # Y' / X
    gradtest(np.linalg.solve, n(3, 3), n(3, 2))  # second order on a small one


def test_backsolve_structured():  # gradcheck_p2.jl "backsolve": Diagonal, triangular
    p, q = 6, 5
    y, v = n(p, q), n(p)
    d = n(p)
    low = np.tril(n(p, p))
    np.fill_diagonal(low, 1 + 0.01 * n(p))
    up = np.triu(n(p, p))
    np.fill_diagonal(up, 1 + 0.01 * n(p))
    gradtest(lambda d, y: y / d[:, None], d, y)  # Diagonal(d) \ Y
    gradtest(np.linalg.solve, np.diag(d), y, order=1)
    gradtest(lambda a, b: solve_triangular(a, b, lower=True), low, y)
    gradtest(lambda a, b: solve_triangular(a, b, lower=True), low, v)
    gradtest(lambda a, b: solve_triangular(a, b), up, y)
    gradtest(lambda a, b: solve_triangular(a, b, trans=1), up, y)  # Y' / U, transposed
    gradtest(lambda a, b: solve_triangular(a, b, lower=True, unit_diagonal=True), low, y)
    gradtest(np.linalg.solve, low, y, order=1)  # the dense solve of a triangular matrix


def test_cholesky_solve_and_logdet():  # gradcheck_p2.jl "Cholesky", issue 932
    x, y, v = n(4, 4), n(4, 3), n(4)

    def f(x, y):
        c = np.linalg.cholesky(x @ x.T + np.eye(4))
        return cho_solve((c, True), y)

    np.testing.assert_allclose(f(x, y), np.linalg.solve(x @ x.T + np.eye(4), y))
    gradtest(lambda x: f(x, y), x)
    gradtest(lambda y: f(x, y), y)
    gradtest(lambda v: f(x, v), v)

    def f932(a, x):
        c = np.linalg.cholesky(a.T @ a + np.eye(5))
        return np.sum(cho_solve((c, True), x)) + 2 * np.sum(np.log(np.diagonal(c)))

    assert_gradient(f932, rng.random((5, 5)), rng.random(5))


def test_cholesky():  # gradcheck_p2.jl "cholesky - dense", #1148
    a = n(4, 4)
    gradtest(lambda a: np.linalg.cholesky(a.T @ a + np.eye(4)), a)
    gradtest(lambda a: np.linalg.cholesky(a.T @ a + np.eye(4), upper=True), a)
    gradtest(lambda a: 2 * np.sum(np.log(np.diagonal(np.linalg.cholesky(a.T @ a + np.eye(4))))),
             a)
    # only the triangle LAPACK reads gets a gradient (as Symmetric(A, :L) in Zygote)
    s = a @ a.T + np.eye(4)
    (g,) = fl.gradient(lambda s: np.sum(np.sin(np.linalg.cholesky(s))), s)
    np.testing.assert_array_equal(np.triu(g, 1), 0)
    assert_gradient(lambda s: np.sum(np.sin(np.linalg.cholesky(s))), s)
    # cholesky([4 1; 1 x]).factors at x = 3
    assert_gradient(lambda x: np.sum(np.linalg.cholesky(np.array([[4.0, 1.0], [1.0, 0.0]])
                                                        + x[0] * np.diag([0.0, 1.0]))),
                    np.array([3.0]))


def test_symmetric_diag_diagonal_uniform_scaling():  # gradcheck_p2.jl
    gradtest(lambda x: np.triu(x) + np.triu(x, 1).T, n(7, 7))  # Symmetric(x, :U)
    gradtest(lambda x: np.tril(x) + np.tril(x, -1).T, n(7, 7))  # Symmetric(x, :L)
    gradtest(np.diagonal, n(6, 6))  # diag
    gradtest(np.diag, n(6))  # Diagonal
    a = n(6, 6)
    gradtest(lambda a: a + 5 * np.eye(6), a)  # A + 5I
    gradtest(lambda a: 5 * np.eye(6) - a, a)
    gradtest(lambda lam: a + lam[0] * np.eye(6), n(1))


def test_lyap():  # gradcheck_p2.jl "lyap": A X + X A' + C = 0
    for _ in range(3):
        a, c = n(4, 4), n(4, 4)
        x = solve_sylvester(a, a.T, -c)
        np.testing.assert_allclose(a @ x + x @ a.T + c, 0, atol=1e-10)
        gradtest(lambda a, c: solve_sylvester(a, a.T, -c), a, c, order=1)
    gradtest(lambda x: solve_sylvester(x[:1, None], x[:1, None], -x[1:, None]),
             np.array([3.1, 4.6]))


def test_matrix_exponential():  # gradcheck_p2.jl "matrix exponential"
    for _ in range(3):
        a = n(5, 5)
        gradtest(expm, a, order=1)
        lam, vec = np.linalg.eig(a)
        lam[0] = lam[2] + np.sqrt(np.finfo(float).eps) / 10  # similar eigenvalues
        gradtest(expm, np.real(vec @ np.diag(lam) @ np.linalg.inv(vec)), order=1)
    gradtest(expm, n(3, 3))
    a = n(4, 4) + 1j * n(4, 4)  # complex dense, through its real and imaginary parts
    gradtest(lambda re, im: np.real(expm(re + 1j * im)) + 2 * np.imag(expm(re + 1j * im)),
             a.real, a.imag, order=1)
    a = np.array([[0.0, 1, 0], [0, 0, 1], [-4.34, -18.31, -0.43]])
    _, back = fl.pullback(expm, a)
    assert np.isrealobj(back(rng.random((3, 3)))[0])


def _hermitian(re, im=None):
    """Hermitian(A, :U) of re + i im: the upper triangle, mirrored, with a real diagonal."""
    z = re if im is None else re + 1j * im
    upper = np.triu(z, 1)
    diagonal = np.real(np.diagonal(z))
    return upper + np.conj(upper).T + np.diag(diagonal)


@pytest.mark.parametrize("complex_", [False, True])
def test_eigen_hermitian(complex_):  # gradcheck_p2.jl "eigen(::RealHermSymComplexHerm)"
    parts = (n(5, 5),) if not complex_ else (n(5, 5), n(5, 5))

    def matrix_exp(*parts):
        d, u = np.linalg.eigh(_hermitian(*parts))
        out = u @ np.diag(np.exp(d)) @ np.conj(u).T
        return np.concatenate([np.real(out).ravel(), np.imag(out).ravel()])

    gradtest(matrix_exp, *parts, order=1)
    gradtest(lambda *p: np.linalg.eigvalsh(_hermitian(*p)), *parts, order=1)  # eigvals
    gradtest(lambda *p: np.linalg.eigh(_hermitian(*p))[0], *parts)


def test_eigh_matrix_function_agrees_with_expm():  # gradcheck_p2.jl "eigen", against expm
    def sym(x):
        return (x + x.T) / 2

    def through_eigh(x):
        d, u = np.linalg.eigh(sym(x))
        return np.sum(np.sin(u @ np.diag(np.exp(d)) @ u.T))

    x = n(5, 5)
    g_eigh = fl.gradient(through_eigh, x)[0]
    g_expm = fl.gradient(lambda x: np.sum(np.sin(expm(sym(x)))), x)[0]
    np.testing.assert_allclose(g_eigh, g_expm, rtol=1e-8, atol=1e-10)


def test_norm():  # gradcheck_p4.jl "norm"
    x32 = n(2, 2).astype(np.float32)
    assert fl.gradient(np.linalg.norm, x32)[0].dtype == np.float32
    assert np.isclose(fl.gradient(lambda x: np.linalg.norm(x * np.array([1.0, 1.0])), 1.23)[0],
                      np.sqrt(2))
    assert np.isclose(fl.gradient(lambda x: np.linalg.norm(x * np.array([1j, 1.0])), 1.23)[0],
                      np.sqrt(2))
    for order in (None, 1, 2, np.inf, -np.inf, 0.5, 3, -1):
        gradtest(lambda x: np.linalg.norm(x, ord=order), n(5))
    for order in ("fro", "nuc"):
        gradtest(lambda x: np.linalg.norm(x, ord=order), n(3, 4))
    for order in (1, 2, -2, np.inf, -np.inf, -1):
        gradtest(lambda x: np.linalg.norm(x, ord=order), n(3, 4), order=1)
    # the norm at zero: the subgradient 0, as ChainRules
    np.testing.assert_array_equal(fl.gradient(np.linalg.norm, np.zeros(3))[0], 0)


def test_det_at_singular_matrices():  # det is differentiable everywhere (the adjugate)
    s = n(4, 3) @ n(3, 4)  # rank 3: the gradient is the adjugate, not 0
    assert_gradient(np.linalg.det, s)
    s = n(4, 2) @ n(2, 4)  # rank 2: gradient 0
    np.testing.assert_allclose(fl.gradient(np.linalg.det, s)[0], 0, atol=1e-12)
    gradtest(np.linalg.det, n(2, 3, 3))
    gradtest(lambda a: np.linalg.slogdet(a)[1], n(2, 3, 3))
