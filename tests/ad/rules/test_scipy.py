"""fluxml.scipy (linalg, signal, special): the cases of the registry-wide harness, and what the
harness does not see (refusals, SciPy's own values, lazy loading)."""

import subprocess
import sys

import numpy as np
import pytest

sl = pytest.importorskip("scipy.linalg")

import scipy.signal as ss  # noqa: E402
import scipy.special as sp  # noqa: E402

import fluxml as fl  # noqa: E402
import fluxml.scipy as fsp  # noqa: E402
from fluxml.ad.core import DifferentiationError  # noqa: E402

L = fsp.linalg

A = np.array([[0.31, -0.27, 0.43], [-0.12, 0.17, -0.51], [0.22, -0.38, 0.11]])
SPD = np.array([[2.1, 0.3, -0.4], [0.3, 1.7, 0.2], [-0.4, 0.2, 1.4]])
GEN = np.array([[0.4, 2.0, -1.1], [1.3, -0.6, 0.9], [-0.8, 0.5, 1.7]])  # LU pivots rows
B = np.array([0.52, -0.93, 1.37])
BM = np.array([[0.52, -0.93], [1.37, -0.24], [0.45, 0.81]])
TRI = np.array([[1.6, 0.4, -0.3], [0.7, 1.9, 0.2], [-0.5, 0.6, 1.3]])  # both triangles used
C = np.array([[1.2, -0.3], [0.4, 0.9]])
Q = np.array([[0.7, -0.2], [0.3, 1.1], [-0.6, 0.5]])
AB = np.array([[0.0, 0.4, -0.3, 0.2], [2.1, 1.8, 2.4, 1.9], [0.5, -0.6, 0.3, 0.0]])  # (1, 1)
AB2 = np.array([[0.0, 0.0, 0.3, 0.2], [0.0, 0.4, -0.3, 0.2], [2.1, 1.8, 2.4, 1.9],
                [0.5, -0.6, 0.3, 0.0]])  # (1, 2)
B4 = np.array([0.52, -0.93, 1.37, -0.24])
S1 = np.array([0.31, -1.27, 0.83, 1.54, -0.62])
K1 = np.array([0.5, -1.1, 0.7])
S2 = np.array([[0.31, -1.27, 0.83, 1.54], [-0.62, 0.17, -1.91, 0.46], [1.12, -0.38, 0.71, 0.2]])
K2 = np.array([[0.5, -1.1], [0.7, 0.3]])
POS = np.array([[0.7, 1.3, 2.9], [1.6, 4.2, 0.9]])
AZ = A + 0.3j * np.cos(np.arange(9.0)).reshape(3, 3)  # complex arguments (transposes, as
BZ = B - 0.4j * np.sin(np.arange(3.0))  # the engine's convention; no conjugates)

CASES = [
    (L.expm, L.expm, (A,)),
    (L.expm, lambda a: L.expm(np.stack([a, 2 * a])), (A,)),
    (L.sqrtm, L.sqrtm, (SPD,)),
    (L.solve_sylvester, L.solve_sylvester, (SPD, C, Q)),
    (L.solve_triangular, L.solve_triangular, (TRI, B)),
    (L.solve_triangular, lambda a, b: L.solve_triangular(a, b, lower=True), (TRI, BM)),
    (L.solve_triangular, lambda a, b: L.solve_triangular(a, b, trans="T", lower=True,
                                                         unit_diagonal=True), (TRI, B)),
    (L.solve_triangular, lambda a, b: L.solve_triangular(a, b, trans=1), (TRI, BM)),
    (L.cho_factor, lambda a: L.cho_factor(a)[0], (SPD,)),
    (L.cho_factor, lambda a: L.cho_factor(a, lower=True)[0], (SPD,)),
    (L.cho_solve, lambda a, b: L.cho_solve(L.cho_factor(a), b), (SPD, B)),
    (L.cho_solve, lambda a, b: L.cho_solve(L.cho_factor(a, lower=True), b), (SPD, BM)),
    (L.lu_factor, lambda a: L.lu_factor(a)[0], (GEN,)),
    (L.lu_solve, lambda a, b: L.lu_solve(L.lu_factor(a), b), (GEN, B)),
    (L.lu_solve, lambda a, b: L.lu_solve(L.lu_factor(a), b, trans=1), (GEN, BM)),
    (L.solve_banded, lambda ab, b: L.solve_banded((1, 1), ab, b), (AB, B4)),
    (L.solve_banded, lambda ab, b: L.solve_banded((1, 2), ab, b), (AB2, np.stack([B4, -B4], 1))),
    (fsp.signal.convolve, fsp.signal.convolve, (S1, K1)),
    (fsp.signal.convolve, lambda a, b: fsp.signal.convolve(a, b, mode="same"), (K1, S1)),
    (fsp.signal.convolve, lambda a, b: fsp.signal.convolve(a, b, mode="valid"), (S2, K2)),
    (fsp.signal.convolve, lambda a, b: fsp.signal.convolve(a, b, "same", "fft"), (S2, K2)),
    (fsp.signal.correlate, fsp.signal.correlate, (S2, K2)),
    (fsp.signal.correlate, lambda a, b: fsp.signal.correlate(a, b, mode="same"), (S1, K1)),
    (fsp.signal.correlate, lambda a, b: fsp.signal.correlate(a, b, mode="valid"), (K1, S1)),
    (L.expm, L.expm, (AZ,)),
    (L.solve_triangular, lambda a, b: L.solve_triangular(a, b, lower=True), (TRI + AZ, BZ)),
    (L.solve_sylvester, L.solve_sylvester, (SPD + AZ, SPD, AZ)),
    (L.lu_solve, lambda a, b: L.lu_solve(L.lu_factor(a), b), (GEN + AZ, BZ)),
    (fsp.signal.convolve, fsp.signal.convolve, (BZ, S1)),
    (fsp.signal.correlate, fsp.signal.correlate, (S1, BZ)),
    (fsp.special.polygamma, lambda x: fsp.special.polygamma(2, x), (POS,)),
    (fsp.special.polygamma, lambda x: fsp.special.polygamma(np.array([0, 1, 3]), x), (POS,)),
    (fsp.special.multigammaln, lambda a: fsp.special.multigammaln(a + 1, 3), (POS,)),
]


@pytest.mark.parametrize("ours, scipys, args", [
    (L.expm, sl.expm, (A,)),
    (L.sqrtm, sl.sqrtm, (SPD,)),
    (L.solve_sylvester, sl.solve_sylvester, (SPD, C, Q)),
    (lambda a, b: L.solve_triangular(a, b, trans=1, lower=True),
     lambda a, b: sl.solve_triangular(a, b, trans=1, lower=True), (TRI, BM)),
    (lambda a, b: L.cho_solve(L.cho_factor(a), b),
     lambda a, b: sl.cho_solve(sl.cho_factor(a), b), (SPD, B)),
    (lambda a, b: L.lu_solve(L.lu_factor(a), b),
     lambda a, b: sl.lu_solve(sl.lu_factor(a), b), (GEN, BM)),
    (lambda a, b: L.lu_solve(L.lu_factor(a), b, trans=1),
     lambda a, b: sl.lu_solve(sl.lu_factor(a), b, trans=1), (GEN, B)),
    (lambda ab, b: L.solve_banded((1, 1), ab, b),
     lambda ab, b: sl.solve_banded((1, 1), ab, b), (AB, B4)),
    (lambda a, b: fsp.signal.convolve(a, b, "same"),
     lambda a, b: ss.convolve(a, b, "same"), (K2, S2)),
    (lambda a, b: fsp.signal.correlate(a, b, "valid"),
     lambda a, b: ss.correlate(a, b, "valid"), (K1, S1)),
    (lambda a, b: fsp.signal.correlate(a, b, "same"),
     lambda a, b: ss.correlate(a, b, "same"), (BZ, S1)),
    (lambda x: fsp.special.polygamma(3, x), lambda x: sp.polygamma(3, x), (POS,)),
    (lambda a: fsp.special.multigammaln(a + 1, 3), lambda a: sp.multigammaln(a + 1, 3), (POS,)),
])
def test_values_match_scipy(ours, scipys, args):
    """Traced, against SciPy's own function (the cases above compare traced with untraced)."""
    value, _ = fl.pullback(ours, *args)
    np.testing.assert_allclose(value, scipys(*args), rtol=1e-10, atol=1e-12)


def test_lu_factor_matches_scipy_when_traced():
    lu, piv = sl.lu_factor(GEN)
    assert piv.tolist() != [0, 1, 2]  # the case pivots
    value, _ = fl.pullback(lambda a: L.lu_factor(a)[0], GEN)
    np.testing.assert_allclose(value, lu, rtol=1e-12)
    np.testing.assert_array_equal(fl.gradient(lambda a: (L.lu_factor(a)[1] * 0).sum() + np.sum(a),
                                              GEN)[0], np.ones((3, 3)))


def test_expm_gradient_against_the_series():
    """d/dt sum(expm(A + tE)) at t = 0 from a truncated series of expm (independent)."""
    rng = np.random.default_rng(0)
    e = rng.standard_normal(A.shape)

    def series(m):
        out, term = np.eye(3), np.eye(3)
        for k in range(1, 30):
            term = term @ m / k
            out = out + term
        return out

    h = 1e-6
    slope = (np.sum(series(A + h * e)) - np.sum(series(A - h * e))) / (2 * h)
    (g,) = fl.gradient(lambda a: np.sum(L.expm(a)), A)
    assert np.sum(g * e) == pytest.approx(slope, rel=1e-7)


def test_scipy_functions_on_traced_arrays_name_the_replacement():
    for call, name in [(lambda x: sl.expm(x), "fluxml.scipy.linalg.expm"),
                       (lambda x: sl.solve_triangular(x, x[0]), "fluxml.scipy.linalg"),
                       (lambda x: ss.convolve(x, x), "fluxml.scipy.signal.convolve"),
                       (lambda x: sp.polygamma(1, x), "fluxml.scipy.special.polygamma")]:
        with pytest.raises(DifferentiationError, match=name.replace(".", r"\.")):
            fl.gradient(lambda x: np.sum(call(x)), SPD)


def test_bad_arguments_say_what_came():
    with pytest.raises(ValueError, match=r"q \(m, n\), got shapes \(3, 3\), \(2, 2\)"):
        L.solve_sylvester(SPD, C, SPD)
    with pytest.raises(ValueError, match="mode must be"):
        fsp.signal.convolve(S1, K1, mode="wide")
    with pytest.raises(ValueError, match="same number of dimensions"):
        fsp.signal.correlate(S1, K2)
    with pytest.raises(ValueError, match=r"ab of shape \(l \+ u \+ 1, n\)"):
        L.solve_banded((2, 1), AB, B4)
    with pytest.raises(ValueError, match="a > \\(d - 1\\) / 2"):
        fsp.special.multigammaln(np.array([0.4]), 2)
    with pytest.raises(DifferentiationError, match="order n"):
        fl.gradient(lambda n: fsp.special.polygamma(n, 1.5), 1.0)
    with pytest.raises(DifferentiationError, match="square matrices only"):
        fl.gradient(lambda a: np.sum(L.lu_factor(a)[0]), BM)


def test_import_fluxml_scipy_does_not_import_scipy():
    subprocess.run([sys.executable, "-c", "import fluxml, fluxml.scipy, sys\n"
                    "assert 'scipy' not in sys.modules and fluxml.scipy.linalg"], check=True)
