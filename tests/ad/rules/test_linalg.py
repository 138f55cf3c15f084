"""Linear algebra rules: products (matmul, einsum ...) and decompositions (inv, solve, det,
cholesky, qr, eigh, svd, norm, pinv ...) against finite differences (order 2, both modes),
NumPy's forward values and dtypes, batching and broadcasting, and the degenerate cases."""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fluxml as fl
from fluxml.ad.core import FUNCTIONS, UFUNCS, DifferentiationError
from fluxml.ad.rules import decompositions, linalg, norms
from fluxml.testing import check_grads
from tests.ad.rules.numpy_errors import raises_as_numpy

rng = np.random.default_rng(20240611)
I3 = np.eye(3)
A = rng.standard_normal((3, 3))
A2 = rng.standard_normal((3, 3))
WELL = A + 3 * I3  # well conditioned
B = rng.standard_normal((3, 4))  # wide
TALL = rng.standard_normal((4, 3))
V3, W3 = rng.standard_normal(3), rng.standard_normal(3)
V4 = rng.standard_normal(4)
BATCH = rng.standard_normal((2, 3, 3)) + 3 * I3
BATCH_B = rng.standard_normal((2, 3, 2))
T234 = rng.standard_normal((2, 3, 4))
T243 = rng.standard_normal((2, 4, 3))
T2323 = rng.standard_normal((2, 3, 2, 3)) + 3 * np.eye(6).reshape(2, 3, 2, 3)
_X = rng.standard_normal((3, 3))
SPD = _X @ _X.T + 3 * I3  # distinct eigenvalues (checked below)
_XB = rng.standard_normal((2, 3, 3))
SPD_BATCH = _XB @ np.swapaxes(_XB, -1, -2) + 3 * I3
HERM = np.linalg.qr(A2)[0] @ np.diag([-2.0, 0.7, 1.4]) @ np.linalg.qr(A2)[0].T  # symmetric,
# eigenvalues of both signs, distinct in absolute value


def _qr(f):
    return lambda a: f(*np.linalg.qr(a))


def _eigh(f, **kw):
    return lambda a: f(*np.linalg.eigh(a, **kw))


def _svd(f):
    return lambda a: f(*np.linalg.svd(a, full_matrices=False))


def _spd(x):
    """A symmetric positive definite matrix built from ``x`` (all entries matter)."""
    return x @ np.swapaxes(x, -1, -2) + 3 * np.eye(x.shape[-1], dtype=x.dtype, like=x)


# (NumPy callable, test function, arguments). Decompositions are checked through functions that
# do not depend on the sign (gauge) of the vectors: squares, reconstructions, projectors.
CASES = [
    # matmul: matrix, vector promotions, batch broadcasting
    (np.matmul, np.matmul, (A, B)),
    (np.matmul, lambda x, y: x @ y, (V3, B)),
    (np.matmul, lambda x, y: x @ y, (A, V3)),
    (np.matmul, lambda x, y: x @ y, (V3, W3)),
    (np.matmul, lambda x, y: x @ y, (rng.standard_normal((2, 1, 3, 3)),
                                     rng.standard_normal((4, 3, 2)))),
    (np.matmul, lambda x, y: x @ y, (V3, T234)),
    (np.matmul, lambda x, y: x @ y, (T243, V3)),
    (np.matmul, lambda x, y: x @ y, (T234, B.T)),
    (np.linalg.matmul, np.linalg.matmul, (T234, TALL)),
    # dot, vdot, inner, outer, tensordot, kron, multi_dot
    (np.dot, np.dot, (A, B)),
    (np.dot, np.dot, (V3, W3)),
    (np.dot, np.dot, (B.T, V3)),
    (np.dot, np.dot, (T234, rng.standard_normal((2, 4, 3)))),
    (np.dot, lambda x, y: np.dot(x, y), (V4, T243)),
    (np.dot, lambda x, y: np.dot(x[0, 0], y), (A, B)),
    (np.dot, lambda x, y: x.dot(y), (A, V3)),
    (np.vdot, np.vdot, (A, A2)),
    (np.inner, np.inner, (A, B.T)),
    (np.inner, np.inner, (V3, T243)),
    (np.inner, lambda x, y: np.inner(x[0, 0], y), (A, B)),
    (np.outer, np.outer, (V3, V4)),
    (np.outer, np.outer, (A, V4)),
    (np.linalg.outer, np.linalg.outer, (V3, V4)),
    (np.tensordot, np.tensordot, (T234, rng.standard_normal((3, 4, 2)))),
    (np.tensordot, lambda x, y: np.tensordot(x, y, axes=1), (A, B)),
    (np.tensordot, lambda x, y: np.tensordot(x, y, axes=0), (V3, V4)),
    (np.tensordot, lambda x, y: np.tensordot(x, y, axes=([0, 2], [2, 0])),
     (T234, rng.standard_normal((4, 3, 2)))),
    (np.tensordot, lambda x, y: np.tensordot(x, y, axes=(-1, 0)), (T243, B)),
    (np.linalg.tensordot, lambda x, y: np.linalg.tensordot(x, y, axes=1), (A, B)),
    (np.kron, np.kron, (A, rng.standard_normal((2, 2)))),
    (np.kron, np.kron, (V3, B)),
    (np.kron, np.kron, (T234, V4)),
    (np.linalg.multi_dot, lambda a, b, c, d: np.linalg.multi_dot([a, b, c, d]), (V3, A, B, V4)),
    (np.linalg.multi_dot, lambda a, b, c: np.linalg.multi_dot([a, b, c]), (A, B, TALL)),
    # inverse, solve, determinants
    (np.linalg.inv, np.linalg.inv, (WELL,)),
    (np.linalg.inv, np.linalg.inv, (BATCH,)),
    (np.linalg.solve, np.linalg.solve, (WELL, B)),
    (np.linalg.solve, np.linalg.solve, (WELL, V3)),
    (np.linalg.solve, np.linalg.solve, (BATCH, V3)),
    (np.linalg.solve, np.linalg.solve, (BATCH, BATCH_B)),
    (np.linalg.solve, np.linalg.solve, (BATCH, B[:, :2])),
    (np.linalg.det, np.linalg.det, (A,)),
    (np.linalg.det, np.linalg.det, (BATCH,)),
    (np.linalg.slogdet, lambda a: np.linalg.slogdet(a).logabsdet, (A,)),
    (np.linalg.slogdet, lambda a: np.linalg.slogdet(a)[1], (BATCH,)),
    (np.linalg.slogdet, lambda a: (lambda s, l: s * np.exp(l))(*np.linalg.slogdet(a)), (A,)),
    # Cholesky: reads the lower (upper=True: upper) triangle
    (np.linalg.cholesky, np.linalg.cholesky, (SPD,)),
    (np.linalg.cholesky, np.linalg.cholesky, (SPD_BATCH,)),
    (np.linalg.cholesky, lambda a: np.linalg.cholesky(a, upper=True), (SPD,)),
    (np.linalg.cholesky, lambda x: np.linalg.cholesky(_spd(x)), (A,)),
    # QR (reduced), square and tall, batched
    (np.linalg.qr, _qr(lambda q, r: q @ r), (A,)),
    (np.linalg.qr, _qr(lambda q, r: q ** 2), (TALL,)),
    (np.linalg.qr, _qr(lambda q, r: r ** 2), (TALL,)),
    (np.linalg.qr, _qr(lambda q, r: q ** 2 @ r ** 2), (np.stack([TALL, 2 * TALL + 1]),)),
    (np.linalg.qr, lambda a: np.linalg.qr(a, mode="r") ** 2, (TALL,)),
    # symmetric eigendecomposition (distinct eigenvalues)
    (np.linalg.eigh, _eigh(lambda w, v: w), (SPD,)),
    (np.linalg.eigh, _eigh(lambda w, v: v ** 2), (SPD,)),
    (np.linalg.eigh, _eigh(lambda w, v: (v * np.exp(w / 4)) @ v.T), (SPD,)),
    (np.linalg.eigh, _eigh(lambda w, v: v ** 2 * w[..., None, :], UPLO="U"), (SPD_BATCH,)),
    (np.linalg.eigh, _eigh(lambda w, v: w * v[..., 0, :] ** 2), (_spd(A) - 4 * I3,)),
    (np.linalg.eigvalsh, np.linalg.eigvalsh, (SPD,)),
    (np.linalg.eigvalsh, lambda a: np.linalg.eigvalsh(a, UPLO="U"), (SPD_BATCH,)),
    # SVD (reduced), wide, tall, batched; singular values alone
    (np.linalg.svd, _svd(lambda u, s, vh: s), (B,)),
    (np.linalg.svd, _svd(lambda u, s, vh: (u * s ** 2) @ vh), (B,)),
    (np.linalg.svd, _svd(lambda u, s, vh: (u * s ** 2) @ vh), (TALL,)),
    (np.linalg.svd, _svd(lambda u, s, vh: u ** 2), (TALL,)),
    (np.linalg.svd, _svd(lambda u, s, vh: vh ** 2), (B,)),
    (np.linalg.svd, _svd(lambda u, s, vh: u ** 2 @ vh ** 2), (T234,)),
    (np.linalg.svd, lambda a: np.linalg.svd(a, compute_uv=False), (TALL,)),
    (np.linalg.svd, lambda a: (lambda u, s, vh: u @ vh)(*np.linalg.svd(a)), (A,)),
    (np.linalg.svdvals, np.linalg.svdvals, (T234,)),
    (np.linalg.svd, lambda a: (lambda u, s, vh: (u * s ** 2) @ vh)(*np.linalg.svd(
        a, hermitian=True)), (HERM,)),
    (np.linalg.svd, lambda a: np.linalg.svd(a, compute_uv=False, hermitian=True), (HERM,)),
    # pseudo-inverse (full rank) and matrix powers
    (np.linalg.pinv, np.linalg.pinv, (B,)),
    (np.linalg.pinv, np.linalg.pinv, (TALL,)),
    (np.linalg.pinv, np.linalg.pinv, (BATCH,)),
    (np.linalg.pinv, lambda a: np.linalg.pinv(a, hermitian=True), (HERM,)),
    (np.linalg.pinv, lambda a: np.linalg.pinv(a, rcond=1e-10), (TALL,)),
    (np.linalg.matrix_power, lambda a: np.linalg.matrix_power(a, 3), (A,)),
    (np.linalg.matrix_power, lambda a: np.linalg.matrix_power(a, 6), (A / 2,)),
    (np.linalg.matrix_power, lambda a: np.linalg.matrix_power(a, -2), (BATCH,)),
    # norms
    (np.linalg.norm, np.linalg.norm, (V3,)),
    (np.linalg.norm, np.linalg.norm, (T234,)),
    (np.linalg.norm, lambda x: np.linalg.norm(x, axis=1), (T234,)),
    (np.linalg.norm, lambda x: np.linalg.norm(x, 1, axis=-1, keepdims=True), (T234,)),
    (np.linalg.norm, lambda x: np.linalg.norm(x, np.inf, axis=0), (B,)),
    (np.linalg.norm, lambda x: np.linalg.norm(x, -np.inf), (V4,)),
    (np.linalg.norm, lambda x: np.linalg.norm(x, 3, axis=0), (B,)),
    (np.linalg.norm, lambda x: np.linalg.norm(x, 0.5), (V4,)),
    (np.linalg.norm, lambda x: np.linalg.norm(x, "fro", axis=(0, 2), keepdims=True), (T234,)),
    (np.linalg.norm, lambda x: np.linalg.norm(x, "nuc"), (B,)),
    (np.linalg.norm, lambda x: np.linalg.norm(x, 2, axis=(2, 1)), (T234,)),
    (np.linalg.norm, lambda x: np.linalg.norm(x, -2), (TALL,)),
    (np.linalg.norm, lambda x: np.linalg.norm(x, 1), (B,)),
    (np.linalg.norm, lambda x: np.linalg.norm(x, -1, axis=(1, 2), keepdims=True), (T234,)),
    (np.linalg.norm, lambda x: np.linalg.norm(x, np.inf), (B,)),
    (np.linalg.norm, lambda x: np.linalg.norm(x, -np.inf, axis=(0, 1)), (TALL,)),
    (np.linalg.vector_norm, np.linalg.vector_norm, (T234,)),
    (np.linalg.vector_norm, lambda x: np.linalg.vector_norm(x, ord=1, keepdims=True), (T234,)),
    (np.linalg.vector_norm, lambda x: np.linalg.vector_norm(x, axis=(0, 2), ord=3), (T234,)),
    (np.linalg.matrix_norm, np.linalg.matrix_norm, (T234,)),
    (np.linalg.matrix_norm, lambda x: np.linalg.matrix_norm(x, ord="nuc", keepdims=True),
     (T234,)),
]

# einsum: specification and operand shapes
EINSUM_SPECS = [
    ("ij,jk->ik", [(3, 4), (4, 2)]),
    ("ii->i", [(3, 3)]),
    ("ii", [(3, 3)]),
    ("i,i", [(3,), (3,)]),
    ("i,j->ij", [(3,), (4,)]),
    ("...ij,...jk->...ik", [(2, 3, 4), (4, 2)]),
    ("...ij,...jk->...ik", [(2, 1, 3, 4), (5, 4, 2)]),
    ("ijk->kji", [(2, 3, 4)]),
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 3)]),
    ("ij->", [(3, 4)]),
    ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 2)]),
    ("ij,jk", [(2, 3), (3, 4)]),
    ("ba", [(2, 3)]),
    ("ij->i", [(3, 4)]),
    ("ij,k->ik", [(3, 4), (2,)]),
    ("ii,i->i", [(3, 3), (3,)]),
    ("iij->ji", [(3, 3, 2)]),
    ("...ii->...i", [(2, 3, 3)]),
    ("i...,i...", [(3, 2), (3, 1)]),
    ("ij,ij->ij", [(3, 1), (3, 4)]),
    ("i,j,k->ijk", [(2,), (3,), (2,)]),
    ("a,ab,bc->", [(2,), (2, 3), (3, 2)]),
]
EINSUM_ARGS = {spec: tuple(rng.standard_normal(s) for s in shapes)
               for spec, shapes in EINSUM_SPECS}
CASES += [(np.einsum, lambda *xs, spec=spec: np.einsum(spec, *xs), EINSUM_ARGS[spec])
          for spec, _ in EINSUM_SPECS]
CASES += [
    (np.einsum, lambda a, b, c: np.einsum("ij,jk,kl->il", a, b, c, optimize="greedy"),
     EINSUM_ARGS["ij,jk,kl->il"]),
    (np.einsum, lambda a, b: np.einsum(a, [0, 1], b, [1, 2], [0, 2]), (A, B)),
    (np.einsum, lambda a, b: np.einsum(a, [Ellipsis, 0], b, [0]), (T234, V4)),
    (np.vecdot, np.vecdot, (T234, V4)),
    # no rules before (DifferentiationError): NumPy 2's matvec/vecmat ufuncs and np.linalg's
    # array-API names (trace, diagonal, matrix_transpose, cross: the last two axes)
    (np.matvec, np.matvec, (T234, V4)),
    (np.matvec, lambda a, v: np.matvec(a, v), (A, BATCH_B[..., 0])),
    (np.vecmat, np.vecmat, (V3, T234)),
    (np.linalg.trace, lambda x: np.linalg.trace(x, offset=1), (T234,)),
    (np.linalg.diagonal, lambda x: np.linalg.diagonal(x, offset=-1), (T243,)),
    (np.linalg.matrix_transpose, np.linalg.matrix_transpose, (T234,)),
    (np.linalg.cross, lambda x, y: np.linalg.cross(x, y, axis=0), (B[:, :2], TALL[1:, :1])),
    (np.linalg.vecdot, lambda x, y: np.linalg.vecdot(x, y, axis=0), (B, V3[:, None])),
    # least squares, condition numbers, tensor inverses and solves
    (np.linalg.lstsq, lambda a, b: np.linalg.lstsq(a, b)[0], (rng.standard_normal((5, 3)),
                                                            rng.standard_normal((5, 2)))),
    (np.linalg.lstsq, lambda a, b: np.linalg.lstsq(a, b)[1], (TALL, V4)),
    (np.linalg.lstsq, lambda a, b: np.linalg.lstsq(a, b, rcond=None)[3], (TALL, V4)),
    (np.linalg.lstsq, lambda a, b: np.linalg.lstsq(a, b)[0], (B, V3)),  # underdetermined
    (np.linalg.cond, np.linalg.cond, (WELL,)),
    (np.linalg.cond, lambda a: np.linalg.cond(a, -2), (BATCH,)),
    (np.linalg.cond, lambda a: np.linalg.cond(a, "fro"), (WELL,)),
    (np.linalg.cond, lambda a: np.linalg.cond(a, 1), (WELL,)),
    (np.linalg.tensorinv, lambda a: np.linalg.tensorinv(a, ind=2), (T2323,)),
    (np.linalg.tensorinv, lambda a: np.linalg.tensorinv(np.reshape(a, (6, 2, 3)), ind=1),
     (T2323,)),
    (np.linalg.tensorsolve, np.linalg.tensorsolve, (T2323, rng.standard_normal((2, 3)))),
    (np.linalg.tensorsolve, lambda a, b: np.linalg.tensorsolve(a, b, axes=(0, 1)),
     (T2323, rng.standard_normal((2, 3)))),
]


def test_fixtures_have_distinct_spectra():
    assert np.min(np.diff(np.sort(np.abs(np.linalg.eigvalsh(HERM))))) > 0.1
    assert np.min(np.linalg.eigvalsh(HERM)) < 0 < np.max(np.linalg.eigvalsh(HERM))
    for m in (SPD, *SPD_BATCH, _spd(A) - 4 * I3):
        assert np.min(np.diff(np.linalg.eigvalsh(m))) > 0.1
    for m in (B, TALL, *T234):
        assert np.min(-np.diff(np.linalg.svd(m, compute_uv=False))) > 0.05


def test_matmul_and_einsum_results_are_exactly_numpys():
    for spec, _ in EINSUM_SPECS:
        xs = EINSUM_ARGS[spec]
        got = fl.pullback(lambda *a, spec=spec: np.einsum(spec, *a), *xs)[0]
        np.testing.assert_array_equal(got, np.einsum(spec, *xs))
    for x, y in [(A, B), (V3, B), (T234, V4), (T234, B.T)]:
        np.testing.assert_array_equal(fl.pullback(np.matmul, x, y)[0], x @ y)


def _registered_here():
    mine = {linalg.__name__, decompositions.__name__, norms.__name__}
    prims = {linalg.MATMUL}
    keys = [k for k, v in UFUNCS.items() if v in prims or getattr(v, "__module__", "") in mine]
    return keys + [k for k, v in FUNCTIONS.items() if getattr(v, "__module__", "") in mine]


# --- matmul broadcasting (hypothesis) ------------------------------------------------------------

@st.composite
def matmul_shapes(draw):
    """Two operand shapes that np.matmul accepts: 1-D or stacks of matrices whose batch axes
    broadcast (dropped leading axes, axes of size 1)."""
    n, k, m = (draw(st.integers(1, 3)) for _ in range(3))
    batch = draw(st.lists(st.integers(1, 3), max_size=2))

    def operand(core):
        if draw(st.booleans()) and draw(st.booleans()):
            return (k,)  # a 1-D operand
        keep = draw(st.integers(0, len(batch)))
        own = [1 if draw(st.booleans()) else b for b in batch[len(batch) - keep:]]
        return tuple(own) + core

    return operand((n, k)), operand((k, m))


@settings(max_examples=15, deadline=None)
@given(matmul_shapes(), st.integers(0, 2 ** 16))
def test_matmul_broadcasting(shapes, seed):
    r = np.random.default_rng(seed)
    x, y = (r.standard_normal(s) for s in shapes)
    np.testing.assert_array_equal(fl.pullback(np.matmul, x, y)[0], np.matmul(x, y))
    check_grads(np.matmul, x, y, order=2)
    gx, gy = fl.gradient(lambda a, b: np.sum(a @ b), x, y)
    assert gx.shape == x.shape and gy.shape == y.shape


def test_matmul_float32_preserved():
    x, y = A.astype(np.float32), B.astype(np.float32)
    value, (gx, gy) = fl.withgradient(lambda a, b: np.sum(np.einsum("ij,jk->ik", a, b) @ b.T),
                                      x, y)
    assert value.dtype == gx.dtype == gy.dtype == np.float32


# --- einsum details ------------------------------------------------------------------------------

def test_einsum_normalised_subscripts():
    norm = linalg.normalise_subscripts
    assert norm("ij,jk", [(2, 3), (3, 4)]) == "ij,jk->ik"
    assert norm("ba", [(2, 3)]) == "ba->ab"
    assert norm("ii", [(3, 3)]) == "ii->"
    assert norm("...ij,...jk->...ik", [(5, 2, 3), (3, 4)]) == "aij,jk->aik"
    with pytest.raises(ValueError, match="ellipsis"):
        norm("...i->i", [(2, 3)])


def test_einsum_primitive_returns_fresh_arrays():
    x = A.copy()
    for spec in ("ii->i", "ij->ji", "ij"):
        out = linalg.EINSUM.impl(x, subscripts=linalg.normalise_subscripts(spec, [x.shape]),
                                 optimize=False)
        assert not np.shares_memory(out, x)


def test_einsum_out_argument():
    def f(a, b):
        out = np.zeros_like(b)  # traced buffer: the write is recorded
        np.einsum("ij,jk->ik", a, b, out=out)
        return out

    check_grads(f, A, B, order=1)


# --- decompositions: conventions and degenerate cases --------------------------------------------

def test_solve_vector_and_matrix_right_hand_sides_match_numpy():
    for a, b in [(WELL, V3), (BATCH, V3), (BATCH, BATCH_B), (WELL, B)]:
        np.testing.assert_allclose(fl.pullback(np.linalg.solve, a, b)[0], np.linalg.solve(a, b))
        ga, gb = fl.gradient(lambda x, y: np.sum(np.linalg.solve(x, y)), a, b)
        assert ga.shape == a.shape and gb.shape == b.shape


def test_cholesky_and_eigh_read_one_triangle():
    """Like LAPACK, the rules see only the triangle that is read: the other gets no gradient."""
    upper = np.triu(np.ones((3, 3)), 1).astype(bool)
    (g,) = fl.gradient(lambda a: np.sum(np.linalg.cholesky(a) ** 3), SPD)
    assert np.all(g[upper] == 0) and np.all(g[upper.T] != 0)
    (g,) = fl.gradient(lambda a: np.sum(np.linalg.eigh(a, UPLO="U")[0] ** 2), SPD)
    assert np.all(g[upper.T] == 0) and np.all(g[upper] != 0)


def test_slogdet_result_and_sign_without_gradient():
    def f(a):
        res = np.linalg.slogdet(a)
        assert type(res).__name__ == "SlogdetResult"
        return res.sign * res.logabsdet

    m = -WELL  # negative determinant: sign -1
    (g,) = fl.gradient(f, m)
    np.testing.assert_allclose(g, -np.linalg.inv(m).T, rtol=1e-12)


def test_named_results():
    out, _ = fl.pullback(lambda a: np.linalg.svd(a, full_matrices=False).S, B)
    np.testing.assert_allclose(out, np.linalg.svd(B, compute_uv=False), rtol=1e-12)
    out, _ = fl.pullback(lambda a: np.linalg.eigh(a).eigenvalues, SPD)
    np.testing.assert_allclose(out, np.linalg.eigvalsh(SPD), rtol=1e-12)
    out, _ = fl.pullback(lambda a: np.linalg.qr(a).R, TALL)
    np.testing.assert_array_equal(out, np.linalg.qr(TALL).R)


def _degenerate():
    q, _ = np.linalg.qr(A)
    return q @ np.diag([1.0, 1.0, 3.0]) @ q.T


def test_eigh_repeated_eigenvalues_give_finite_exact_gauge_invariant_gradients():
    """sum(w**2) = |A_s|_F**2; the projectors onto the repeated eigenspace and onto its
    complement are smooth. (``V diag(f(w)) V.T`` is not covered: see the module docstring.)"""
    a = _degenerate()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (g,) = fl.gradient(lambda m: np.sum(np.linalg.eigh(m)[0] ** 2), a)
    expected = np.tril(4 * a) - np.diag(np.diag(2 * a))  # lower triangle read, diagonal once
    np.testing.assert_allclose(g, expected, rtol=1e-10, atol=1e-10)
    check_grads(_eigh(lambda w, v: v[:, :2] @ v[:, :2].T), a, order=1)
    check_grads(_eigh(lambda w, v: v[:, 2:] @ v[:, 2:].T * (w[0] + w[1]) + w[2]), a, order=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (g,) = fl.gradient(lambda m: np.sum(np.linalg.eigvalsh(m)), np.eye(3))  # all repeated
    np.testing.assert_array_equal(g, np.eye(3))


def _matrix_function_gradient(a, f, df, g):
    """The gradient of ``sum(G * V diag(f(w)) V.T)`` in float64 (Daleckii-Krein: divided
    differences of ``f``, ``f'`` where two eigenvalues agree), for symmetric perturbations:
    a symmetric matrix."""
    w, v = np.linalg.eigh(a.astype(np.float64))
    s = v.T @ ((g + g.T) / 2) @ v
    gap = np.subtract.outer(w, w)
    close = np.abs(gap) < 1e-12
    quotient = np.subtract.outer(f(w), f(w)) / np.where(close, 1, gap)
    quotient[close] = np.broadcast_to(df(w)[:, None], gap.shape)[close]
    return v @ (quotient * s) @ v.T


@pytest.mark.parametrize("gap", [3e-4, 1e-4, 1e-5])
def test_eigh_and_svd_keep_the_terms_of_close_distinct_values_in_float32(gap):
    """Regression: values closer than sqrt(eps) max|w| (3.5e-4 in float32) had their 1 / gap
    terms dropped as if repeated, and the gradient of V diag(exp(w)) V.T (a matrix
    exponential, as in whitening) came out 1.4 off of 5.5, silently."""
    q, _ = np.linalg.qr(A)
    a64 = q @ np.diag([1.0, 1.0 + gap, 2.0]) @ q.T
    a = a64.astype(np.float32)
    g = np.random.default_rng(3).standard_normal((3, 3))

    def expm(m):
        w, v = np.linalg.eigh(m)
        return np.sum((v * np.exp(w)[None, :]) @ v.T * g.astype(m.dtype))

    (grad,) = fl.gradient(expm, a)
    assert grad.dtype == np.float32
    expected = _matrix_function_gradient(a, np.exp, np.exp, g)
    expected = np.tril(expected) + np.tril(expected, -1)  # eigh reads the lower triangle
    np.testing.assert_allclose(grad, expected, atol=2e-2 * np.abs(expected).max())

    def svd_power(m):  # the SVD of a symmetric positive matrix is its eigendecomposition
        u, s, vh = np.linalg.svd(m)
        return np.sum((u * s ** 3) @ vh * g.astype(m.dtype))

    (grad,) = fl.gradient(svd_power, a)
    full = _matrix_function_gradient(a, lambda w: w ** 3, lambda w: 3 * w ** 2, g)
    np.testing.assert_allclose((grad + grad.T) / 2, full,  # along symmetric perturbations
                               atol=2e-2 * np.abs(full).max())


def test_svd_repeated_and_zero_singular_values_stay_finite():
    """Exact for sum(s**2), the polar factor U @ Vh and singular-subspace projectors at a
    repeated singular value; finite at a zero one."""
    q1, _ = np.linalg.qr(A)
    q2, _ = np.linalg.qr(TALL)
    repeated = q2 @ np.diag([2.0, 2.0, 1.0]) @ q1.T
    zero = q2 @ np.diag([2.0, 1.0, 0.0]) @ q1.T
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for a in (repeated, zero):
            (g,) = fl.gradient(lambda m: np.sum(np.linalg.svd(m, compute_uv=False) ** 2), a)
            np.testing.assert_allclose(g, 2 * a, atol=1e-10)
        (g,) = fl.gradient(_svd(lambda u, s, vh: np.sum((u * s) @ vh)), zero)
        assert np.all(np.isfinite(g))
    check_grads(_svd(lambda u, s, vh: u @ vh), repeated, order=1)
    check_grads(_svd(lambda u, s, vh: u[:, :2] @ u[:, :2].T), repeated, order=1)
    check_grads(_svd(lambda u, s, vh: vh[2:].T @ vh[2:]), repeated, order=1)


def test_norm_at_zero_has_zero_subgradient():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for f in (np.linalg.norm, lambda x: np.linalg.norm(x, axis=0),
                  lambda x: np.linalg.norm(x, 1), lambda x: np.linalg.norm(x, "fro")):
            (g,) = fl.gradient(lambda x, f=f: np.sum(f(x)), np.zeros((3, 2)) if f is not
                               np.linalg.norm else np.zeros(3))
            assert np.all(g == 0)
        (g,) = fl.gradient(lambda x: np.linalg.norm(x, axis=1)[0], np.array([[0.0, 0.0],
                                                                             [3.0, 4.0]]))
        np.testing.assert_array_equal(g, [[0, 0], [0, 0]])
        _, t = fl.jvp(np.linalg.norm, (np.zeros(3),), (np.ones(3),))
        assert t == 0


def test_norm_ord_zero_counts_without_gradient():
    x = np.array([0.0, 2.0, -1.0])
    np.testing.assert_array_equal(fl.pullback(lambda v: np.linalg.norm(v, 0), x)[0], 2.0)


def test_matrix_power_zero_and_one():
    np.testing.assert_array_equal(fl.pullback(lambda a: np.linalg.matrix_power(a, 0), BATCH)[0],
                                  np.broadcast_to(I3, BATCH.shape))

    def f(a):
        b = np.linalg.matrix_power(a, 1)
        b[0, 0] = 0.0  # a new array: the write must not reach `a`
        return np.sum(a) + np.sum(b)

    (g,) = fl.gradient(f, A)
    np.testing.assert_array_equal(g, 2 * np.ones_like(A) - np.eye(3)[0][:, None] * np.eye(3)[0])


def test_matrix_rank_carries_no_gradient():
    (g,) = fl.gradient(lambda a: np.sum(a) * np.linalg.matrix_rank(a), A)
    np.testing.assert_array_equal(g, 3 * np.ones_like(A))


@pytest.mark.parametrize("f, arg, match", [
    (lambda a: np.linalg.qr(a)[0], B, "square or tall"),
    (lambda a: np.linalg.qr(a, mode="complete")[0], TALL, "mode='complete'"),
    (lambda a: np.linalg.svd(a)[1], B, "full_matrices"),
])
def test_undifferentiable_modes_fail_loudly(f, arg, match):
    with pytest.raises(DifferentiationError, match=match):
        fl.gradient(lambda a: np.sum(f(a)), arg)


@pytest.mark.parametrize("prim, inputs, output", [
    (linalg.MATMUL, True, False), (linalg.EINSUM, True, False),
    (decompositions.INV, False, True), (decompositions.CHOLESKY, False, True),
    (decompositions.EIGH, False, True), (decompositions.SVD, False, True),
    (decompositions.QR, False, True), (decompositions.SLOGDET, True, False),
    (decompositions.SVDVALS, True, False),
])
def test_keeps_flags(prim, inputs, output):
    assert (prim.keeps_inputs, prim.keeps_output) == (inputs, output)


def test_array_api_names_keep_numpys_checks():
    # np.linalg.cross takes 3-vectors only (np.cross 2-vectors too)
    for f in (lambda x: np.linalg.cross(x, x), lambda x: np.linalg.trace(x[0])):
        raises_as_numpy(ValueError, f, V4[None])



def test_compiled_eig_on_eigenvalues_of_the_other_kind():
    """NumPy's eig gives real arrays when every eigenvalue is real: a program traced on real
    ones failed on complex ones in an unrelated ufunc ('Cannot cast ufunc sign output'); now
    a clear error on that call. Traced on complex ones, real ones come back complex (the same
    numbers)."""
    real, rotation = np.array([[2.0, 1.0], [1.0, 3.0]]), np.array([[0.0, -1.0], [1.0, 0.0]])

    def grad(a):
        return fl.gradient(lambda b: np.sum(np.abs(np.linalg.eigvals(b))), a)[0]

    for f in (lambda a: np.linalg.eig(a)[1], grad):
        compiled = fl.compile(f)
        np.testing.assert_allclose(compiled(real), f(real), atol=1e-12)
        with pytest.raises(ValueError, match="np.linalg.eig under fl.compile: this run's "
                                             "eigenvalues are complex"):
            compiled(rotation)
        compiled = fl.compile(f)
        np.testing.assert_allclose(compiled(rotation), f(rotation), atol=1e-12)
        np.testing.assert_allclose(compiled(real), f(real), atol=1e-12)


@pytest.mark.parametrize("seed", [3, 5])
def test_eig_spectral_projector_of_a_non_normal_matrix_at_a_repeated_eigenvalue(seed):
    """LAPACK splits the repeated eigenvalue of a non-normal matrix by about eps cond(V)
    (here ~30 eps max|w|): a cutoff at the symmetric matrices' rounding kept its 1 / gap
    terms (~1e14), and the projector's gradient came out 1-2% off; eig keeps sqrt(eps)."""
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    w, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    s = u @ np.diag(np.logspace(0, -2, 4)) @ w.T  # cond 100
    a = s @ np.diag([1.0, 1.0, 2.0, 3.0]) @ np.linalg.inv(s)
    g = rng.normal(size=(4, 4))

    def projector(m):
        values, vectors = np.linalg.eig(m)
        on = (np.abs(np.real(values) - 1) < 0.5).astype(float)  # the repeated eigenvalue's
        return np.sum(g * np.real((vectors * on) @ np.linalg.inv(vectors)))

    (grad,) = fl.gradient(projector, a)
    fd = np.zeros((4, 4))
    for i, j in np.ndindex(4, 4):
        e = np.zeros((4, 4))
        e[i, j] = 1e-7
        fd[i, j] = (projector(a + e) - projector(a - e)) / 2e-7
    assert np.linalg.norm(grad - fd) / np.linalg.norm(fd) < 1e-6
