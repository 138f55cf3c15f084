"""The linear-algebra rules against JAX, an independent implementation: for each function of
``numpy.linalg`` (and the products beside it) and of ``fluxml.scipy.linalg``, a random
matrix (of a random size, batched or not) and a fixed random weighting of the outputs
give a scalar loss, whose value, gradient, jvp and Hessian-vector product (forward over
reverse and reverse over reverse) must agree with ``jax.grad``/``jax.jvp`` in float64 to
1e-6 relative to the largest entry.

Two conventions differ, and the cases are written so that they do not matter: NumPy's
``cholesky``, ``eigh`` and ``eigvalsh`` read one triangle (fluxml's derivative is that of
the function NumPy computes, zero on the other triangle, checked against finite differences
in ``test_zygote_spec_linalg.py``), where JAX symmetrises its input, so those cases take
``(a + a.T) / 2``; decompositions are compared through quantities that do not depend on
the signs LAPACK picks (eigenvalues, squared entries of eigenvectors, ``U S V^T``). JAX has
no derivative of ``sqrtm``, ``solve_sylvester`` nor of non-symmetric eigenvectors; finite
differences check those.

    PYTHONPATH=src python tests/ad/fuzz_linalg_jax.py [CASES] [SEED] [NAME ...]
"""

from __future__ import annotations

import sys

import numpy as np

import fluxml as fl
from fluxml.scipy import linalg as fsl


def _t(xp, a):
    return xp.swapaxes(a, -1, -2)


def general(rng, n, batch):
    return rng.normal(size=batch + (n, n)) + 0.5 * n * np.eye(n)


def positive(rng, n, batch):
    a = rng.normal(size=batch + (n, n))
    return a @ np.swapaxes(a, -1, -2) + n * np.eye(n)


def symmetric(rng, n, batch):
    a = rng.normal(size=batch + (n, n))
    return a + np.swapaxes(a, -1, -2)


def tall(rng, n, batch):
    return rng.normal(size=batch + (n + 2, n))


def wide(rng, n, batch):
    return rng.normal(size=batch + (n, n + 2))


def lower(rng, n, batch):
    return np.tril(rng.normal(size=batch + (n, n))) + 2 * n * np.eye(n)


def weighted(xp, y, seed):
    """A fixed random weighting of ``y``, summed: the loss."""
    return xp.sum(y * np.random.default_rng(seed).normal(size=np.shape(y)))


def _svd(xp, a):
    return xp.linalg.svd(a, full_matrices=False)


def _reconstructed(xp, a):
    u, s, vh = _svd(xp, a)
    return (u * s[..., None, :]) @ vh


def _mat(a):
    """One matrix of a maybe batched ``a`` (for functions of one matrix only)."""
    return a[0] if a.ndim == 3 else a


# name: (matrix maker, loss(xp, linalg, a)); ``linalg`` is fluxml.scipy.linalg or JAX's
CASES = {
    "inv": (general, lambda xp, sl, a: weighted(xp, xp.linalg.inv(a), 1)),
    "solve": (general, lambda xp, sl, a: weighted(xp, xp.linalg.solve(a, a[..., :2] * 2 + 1), 2)),
    "det": (general, lambda xp, sl, a: weighted(xp, xp.linalg.det(a), 4)),
    "slogdet": (general, lambda xp, sl, a: weighted(xp, xp.linalg.slogdet(a)[1], 5)),
    "cholesky": (positive, lambda xp, sl, a: weighted(xp, xp.linalg.cholesky(a), 6)),
    "qr tall": (tall, lambda xp, sl, a: weighted(xp, xp.linalg.qr(a)[0], 7)
                + weighted(xp, xp.linalg.qr(a)[1], 8)),
    "qr square": (general, lambda xp, sl, a: weighted(xp, xp.linalg.qr(a)[0], 7)
                  + weighted(xp, xp.linalg.qr(a)[1], 8)),
    "eigh": (symmetric, lambda xp, sl, a: weighted(xp, xp.linalg.eigh(a)[1] ** 2, 10)
             + weighted(xp, xp.linalg.eigh(a)[0], 11)),
    "eigvalsh": (symmetric, lambda xp, sl, a: weighted(xp, xp.linalg.eigvalsh(a), 12)),
    "svd values": (tall, lambda xp, sl, a: weighted(xp, xp.linalg.svd(a, compute_uv=False),
                                                     13)),
    "svd product": (wide, lambda xp, sl, a: weighted(xp, _reconstructed(xp, a), 14)),
    "svd u": (tall, lambda xp, sl, a: weighted(xp, _svd(xp, a)[0] ** 2, 15)),
    "svd v": (wide, lambda xp, sl, a: weighted(xp, _svd(xp, a)[2] ** 2, 16)),
    "pinv tall": (tall, lambda xp, sl, a: weighted(xp, xp.linalg.pinv(a), 17)),
    "pinv wide": (wide, lambda xp, sl, a: weighted(xp, xp.linalg.pinv(a), 18)),
    "norm fro": (general, lambda xp, sl, a: weighted(xp, xp.linalg.norm(a, axis=(-2, -1)), 19)),
    "norm nuc": (tall, lambda xp, sl, a: weighted(xp, xp.linalg.norm(a, "nuc", axis=(-2, -1)),
                                                   20)),
    "norm 2": (tall, lambda xp, sl, a: weighted(xp, xp.linalg.norm(a, 2, axis=(-2, -1)), 21)),
    "norm -2": (tall, lambda xp, sl, a: weighted(xp, xp.linalg.norm(a, -2, axis=(-2, -1)), 22)),
    "norm 1": (general, lambda xp, sl, a: weighted(xp, xp.linalg.norm(a, 1, axis=(-2, -1)), 23)),
    "norm inf": (general, lambda xp, sl, a: weighted(xp, xp.linalg.norm(a, np.inf,
                                                                        axis=(-2, -1)), 24)),
    "vector norm 3": (general, lambda xp, sl, a: weighted(xp, xp.linalg.norm(a, 3, axis=-1),
                                                          25)),
    "vector norm 0.5": (general, lambda xp, sl, a: weighted(
        xp, xp.linalg.norm(xp.abs(a) + 1, 0.5, axis=-1), 26)),
    "matrix_power 3": (general, lambda xp, sl, a: weighted(xp, xp.linalg.matrix_power(a, 3),
                                                           27)),
    "matrix_power -2": (general, lambda xp, sl, a: weighted(xp, xp.linalg.matrix_power(a, -2),
                                                            28)),
    "lstsq": (tall, lambda xp, sl, a: weighted(
        xp, xp.linalg.lstsq(_mat(a), xp.sin(_mat(a)[:, :1]), rcond=None)[0], 29)),
    "multi_dot": (general, lambda xp, sl, a: weighted(
        xp, xp.linalg.multi_dot([_mat(a), _t(xp, _mat(a)), xp.sin(_mat(a))]), 30)),
    "cross": (general, lambda xp, sl, a: weighted(xp, xp.cross(a[..., :3], xp.sin(a[..., 1:4])),
                                                  33) if a.shape[-1] >= 4 else xp.sum(a)),
    "kron": (general, lambda xp, sl, a: weighted(xp, xp.kron(_mat(a)[0], xp.sin(_mat(a)[1])), 34)),
    "vecdot": (general, lambda xp, sl, a: weighted(xp, xp.vecdot(a, xp.sin(a)), 35)),
    "matvec": (general, lambda xp, sl, a: weighted(xp, xp.matvec(a, xp.sin(a[..., 0, :])), 36)),
    "einsum": (general, lambda xp, sl, a: weighted(xp, xp.einsum("...ij,...jk->...ik", a,
                                                                 xp.tanh(a)), 37)),
    "tensordot": (general, lambda xp, sl, a: weighted(
        xp, xp.tensordot(a, xp.cos(a), axes=([-1], [-2])), 38)),
    # fluxml.scipy.linalg (one matrix)
    "expm": (general, lambda xp, sl, a: weighted(xp, sl.expm(0.3 * _mat(a)), 41)),
    "solve_triangular": (lower, lambda xp, sl, a: weighted(
        xp, sl.solve_triangular(_mat(a), xp.sin(_mat(a)[:, :2]), lower=True), 42)),
    "solve_triangular trans": (lower, lambda xp, sl, a: weighted(
        xp, sl.solve_triangular(_mat(a), xp.sin(_mat(a)[:, 0]), trans=1, lower=True), 43)),
    "solve_triangular unit": (lower, lambda xp, sl, a: weighted(
        xp, sl.solve_triangular(_t(xp, _mat(a)), _mat(a)[:, :2] ** 2, unit_diagonal=True), 44)),
    "solve_triangular full": (general, lambda xp, sl, a: weighted(
        xp, sl.solve_triangular(_mat(a), xp.cos(_mat(a)[:, :2]), lower=True, trans=2), 45)),
    "cho_solve": (positive, lambda xp, sl, a: weighted(
        xp, sl.cho_solve(sl.cho_factor(_mat(a), lower=True), xp.sin(_mat(a)[:, :2])), 46)),
    "cho_solve upper": (positive, lambda xp, sl, a: weighted(
        xp, sl.cho_solve(sl.cho_factor(_mat(a)), xp.sin(_mat(a)[:, 0])), 47)),
    "lu_solve": (general, lambda xp, sl, a: weighted(
        xp, sl.lu_solve(sl.lu_factor(_mat(a)), xp.sin(_mat(a)[:, :2])), 48)),
    "lu_solve trans": (general, lambda xp, sl, a: weighted(
        xp, sl.lu_solve(sl.lu_factor(_mat(a)), xp.sin(_mat(a)[:, :2]), trans=1), 49)),
    "lu_factor": (general, lambda xp, sl, a: weighted(xp, sl.lu_factor(_mat(a))[0], 50)),
}
SYMMETRISED = (positive, symmetric)  # NumPy reads one triangle, JAX symmetrises


def run_case(name: str, rng, tol: float = 1e-6) -> dict:
    """The relative errors above ``tol`` of one random case (empty: it agrees)."""
    import jax
    import jax.numpy as jnp
    import jax.scipy.linalg as jsl

    jax.config.update("jax_enable_x64", True)
    make, loss = CASES[name]
    n = int(rng.integers(2, 5))
    a = make(rng, n, () if rng.random() < 0.5 else (int(rng.integers(1, 3)),))
    v = rng.normal(size=a.shape)

    def ours(a):
        return loss(np, fsl, (a + _t(np, a)) / 2 if make in SYMMETRISED else a)

    def theirs(a):
        return loss(jnp, jsl, (a + _t(jnp, a)) / 2 if make in SYMMETRISED else a)

    def grad(a):
        return fl.gradient(ours, a)[0]

    ja, jv = jnp.asarray(a), jnp.asarray(v)
    hvp = np.asarray(jax.jvp(jax.grad(theirs), (ja,), (jv,))[1])
    pairs = {
        "value": (ours(a), theirs(ja)),
        "gradient": (grad(a), jax.grad(theirs)(ja)),
        "jvp": (fl.jvp(ours, (a,), (v,))[1], jax.jvp(theirs, (ja,), (jv,))[1]),
        "hvp forward over reverse": (fl.jvp(grad, (a,), (v,))[1], hvp),
        "hvp reverse over reverse": (fl.gradient(lambda a: np.sum(grad(a) * v), a)[0], hvp),
    }
    errors = {}
    for what, (mine, ref) in pairs.items():
        ref = np.asarray(ref, float)
        mine = np.zeros_like(ref) if mine is None else np.asarray(mine, float)  # None: zero
        err = float(np.max(np.abs(mine - ref))) / max(1.0, float(np.max(np.abs(ref))))
        if not err < tol:  # (NaN fails too)
            errors[what] = err
    return errors


def main(argv) -> int:
    cases = int(argv[0]) if argv else 5
    seed = int(argv[1]) if len(argv) > 1 else 0
    names = argv[2:] or list(CASES)
    failures = 0
    for name in names:
        for i in range(cases):
            rng = np.random.default_rng([seed, i, sum(map(ord, name))])
            try:
                errors = run_case(name, rng)
            except Exception as err:  # noqa: BLE001 - report every failing case
                errors = {type(err).__name__: str(err)[:200]}
            if errors:
                failures += 1
                print(f"{name}, case {i}: {errors}")
    print(f"{len(names) * cases - failures} of {len(names) * cases} cases agree with JAX")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
