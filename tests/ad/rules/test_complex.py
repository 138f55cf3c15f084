"""Rules of complex values: angle, real_if_close, and the cases the registry harness runs with
complex arguments beyond its real cases made complex (``test_registry.COMPLEX_CASES``)."""

import numpy as np

rng = np.random.default_rng(3)
Z = rng.standard_normal((3, 4)) + 1j * rng.standard_normal((3, 4))
X = rng.standard_normal((3, 4))

CASES = [
    (np.angle, np.angle, (Z,)),
    (np.angle, lambda z: np.angle(z, deg=True) * np.abs(z), (Z,)),
    (np.angle, lambda x: np.angle(x + 0.5j), (X,)),
    (np.real_if_close, lambda x: np.real_if_close(x * (1 + 1e-16j)) * x, (X,)),
    (np.real_if_close, lambda z: np.real_if_close(z * z), (Z,)),
    (np.absolute, lambda x: np.abs(np.exp(1j * x) + 0.5), (X,)),
    (np.real, lambda x: np.real(np.exp(1j * x) * x), (X,)),
    (np.imag, lambda z: np.imag(z * z), (Z,)),
]

# linear algebra: the general eigendecomposition (complex outputs also for real matrices)
A = rng.standard_normal((4, 4))
S = A + A.T  # real eigenvalues: real eigenvectors, a sign gauge only
ZA = A + 1j * rng.standard_normal((4, 4))
BATCH = rng.standard_normal((2, 3, 3))
HPD = ZA @ np.conj(ZA.T) + 4 * np.eye(4)  # Hermitian positive definite
ZW = rng.standard_normal((3, 5)) + 1j * rng.standard_normal((3, 5))  # wide


def _phase_free(v):
    """Functions of eigenvectors that do not depend on the phase of each (see eig.py)."""
    return np.abs(v) ** 2


CASES += [
    (np.linalg.eigvals, np.linalg.eigvals, (A,)),
    (np.linalg.eigvals, lambda a: np.linalg.eigvals(a) ** 2, (BATCH,)),
    (np.linalg.eigvals, np.linalg.eigvals, (ZA,)),
    (np.linalg.eig, lambda a: np.linalg.eig(a).eigenvalues, (ZA,)),
    (np.linalg.eig, lambda a: _phase_free(np.linalg.eig(a).eigenvectors), (A,)),
    (np.linalg.eig, lambda a: _phase_free(np.linalg.eig(a)[1]), (ZA,)),
    (np.linalg.eig, lambda a: np.linalg.eig(a)[1], (S,)),
    (np.linalg.eig, lambda a: (lambda w, v: v @ (np.exp(w)[:, None] * np.linalg.inv(v)))(
        *np.linalg.eig(a)), (A,)),
    (np.linalg.eigh, lambda z: (lambda w, v: w * _phase_free(v))(*np.linalg.eigh(z)), (HPD,)),
    (np.linalg.eigh, lambda z: (lambda w, v: (v * np.exp(w / 4)) @ np.conj(v.T))(
        *np.linalg.eigh(z, UPLO="U")), (HPD,)),
    (np.linalg.eigvalsh, np.linalg.eigvalsh, (HPD,)),
    (np.linalg.cholesky, np.linalg.cholesky, (HPD,)),
    (np.linalg.cholesky, lambda z: np.linalg.cholesky(z, upper=True), (HPD,)),
    (np.linalg.cholesky, lambda z: np.linalg.cholesky(z @ np.conj(z.T) + np.eye(4, like=z)), (ZA,)),
    (np.linalg.svd, lambda z: (lambda u, s, vh: np.abs(u) ** 2 * s)(
        *np.linalg.svd(z, full_matrices=False)), (ZW,)),
    (np.linalg.svd, lambda z: (lambda u, s, vh: s[:, None] * np.abs(vh) ** 2)(
        *np.linalg.svd(z, full_matrices=False)), (ZW,)),
    (np.linalg.svd, lambda z: (lambda u, s, vh: u @ vh)(*np.linalg.svd(z.T, False)), (ZW,)),
    (np.linalg.svdvals, np.linalg.svdvals, (ZW,)),
    (np.linalg.matrix_norm, lambda z: np.linalg.matrix_norm(z, ord="nuc"), (ZA,)),
    (np.linalg.slogdet, lambda z: np.linalg.slogdet(z)[0], (ZA,)),
    (np.linalg.slogdet, lambda z: (lambda s, l: s * np.exp(l))(*np.linalg.slogdet(z)), (ZA,)),
    (np.linalg.norm, lambda z: np.linalg.norm(z, axis=0), (ZA,)),
]
