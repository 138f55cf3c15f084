"""Matrix functions and decompositions: inv, solve, det, slogdet, cholesky, qr, eigh, svd,
pinv, matrix_power (the norms, built on ``svdvals``, are in ``norms.py``).

All rules act on stacks of matrices (leading batch axes). The results are the standard ones of
matrix calculus: Giles 2008 ("An extended collection of matrix derivative results") for inv,
solve, det and eigh; Murray 2016 for Cholesky; Townsend 2016 for the SVD; the JAX/PyTorch form
of the QR rule (Walter & Lehmann; Liao et al. 2019).

Symmetric inputs. ``cholesky`` and ``eigh`` read one triangle of their input only (the lower
one, ``UPLO='L'``, by default), exactly as LAPACK does (for a complex Hermitian input: one
triangle and the real part of the diagonal; the rules are the same with conjugate transposes,
and an eigenvector's phase is fixed as JAX fixes it, ``Im(v^H dv) = 0``, see ``eig.py``; the
SVD's complex rules split each pair's phase evenly between U and V).
Their rules are the derivatives of that function: a perturbation of the unread triangle
changes nothing, and the cotangent of the input is zero there. For a symmetric input built
from other values (``A = X @ X.T``) the chain rule gives the same result as the
symmetric-gradient convention of other libraries.

Repeated eigenvalues and singular values. The vectors of a repeated value are not unique, and
the textbook rules divide by ``w_j - w_i``. Where two values agree to within rounding,
``16 sqrt(n) eps max|w|`` for ``n x n`` matrices (``sqrt(eps) max|w|`` for ``eig``, see
:func:`_rounding`; LAPACK computes an exactly repeated value of
a symmetric matrix, or of its rounding, split by a few ``sqrt(n) eps max|w|``: measured up to
``30 eps max|w|`` at ``n = 800`` in float64), the rules drop the terms that divide by it
(``1 / (w_j - w_i)`` becomes 0), and likewise ``1 / s`` for a numerically zero singular value
of a non-square matrix. Values further apart keep their terms, however large: they are the
derivative (a tolerance of ``sqrt(eps) max|w|``, used before, dropped the terms of float32
values 3e-4 apart, and the gradient of ``V diag(exp(w)) V^T`` came out 25% off). The rules
then stay finite (no NaN or inf, also for ``eigvalsh`` of the identity), and they are exact
for functions in which the basis of each repeated subspace cancels: symmetric functions of the
eigenvalues or singular values (``sum(w)``, ``sum(s**2)``), projectors onto a whole repeated
subspace (``V1 @ V1.T``), and, for the SVD, the polar factor ``U @ Vh`` (the regular ``1 /
(s_i + s_j)`` part of the SVD rule is kept). The decomposition itself is not differentiable at
a repeated value (a perturbation chooses the basis in which the values split), so functions
such as ``V @ diag(f(w)) @ V.T`` or the rebuilt ``U @ diag(s) @ Vh`` get a wrong derivative
exactly there: give such a matrix function a rule of its own (``fl.custom_vjp``) if it must be
differentiated at repeated eigenvalues.
"""

from __future__ import annotations

import numpy as np

from fluxml._dtypes import real_dtype
from fluxml.ad.arrays import module_of
from fluxml.ad.core import COMPILING, DifferentiationError, raw, recorded, untraced
from fluxml.ad.define import defjvp, defvjp, function, nondifferentiable, primitive
from fluxml.ad.rules.linalg import mT

# --- inverse, solve, determinants ------------------------------------------------------------

INV = primitive("inv", np.linalg.inv, keeps_inputs=False)
defvjp(INV, lambda g, ans, x: -(mT(ans) @ g @ mT(ans)))
defjvp(INV, lambda t, ans, x: -(ans @ t @ ans))


def _vector_b(a, b) -> bool:
    """Whether ``np.linalg.solve(a, b)`` reads ``b`` as a vector (NumPy 2: when 1-D)."""
    return np.ndim(b) == 1


SOLVE = primitive("solve", np.linalg.solve)


def _solve_vjp_all(g, ans, args, params, positions):
    """gb = solve(a^T, g), ga = -gb x^T: both cotangents share one solve."""
    a, b = args
    vector = _vector_b(a, b)
    if vector:  # as a one-column matrix
        g, ans = g[..., None], ans[..., None]
    gb = np.linalg.solve(mT(a), g)
    ga = -(gb @ mT(ans)) if 0 in positions else None
    gb = gb[..., 0] if vector else gb
    return [ga if p == 0 else gb for p in positions]


def _solve_jvp_a(t, ans, a, b):
    if _vector_b(a, b):
        return -np.linalg.solve(a, t @ ans[..., None])[..., 0]
    return -np.linalg.solve(a, t @ ans)


SOLVE.vjp_all = _solve_vjp_all
defjvp(SOLVE, _solve_jvp_a, lambda t, ans, a, b: np.linalg.solve(a, t))

# d det(x) = tr(adj(x) dx). adj(x) = det(x) inv(x) where x is invertible; at a singular matrix
# (det 0, still differentiable) the adjugate comes from the cofactors, each a smaller det.
DET = primitive("det", np.linalg.det)
defvjp(DET, lambda g, ans, x: _mat(g) * mT(_adjugate(x, ans)))
defjvp(DET, lambda t, ans, x: _trace(_adjugate(x, ans) @ t))


def _adjugate(x, det):
    if COMPILING and recorded(raw(det)):  # fl.compile: which formula is known on each call
        # lazy: the compiler sits above the rules (and is loaded: it is compiling)
        from fluxml.compiler.control import cond

        return cond(np.all(raw(det) != 0), _guarded_inverse, _cofactors, x, det)
    return _scaled_inverse(x, det) if np.all(raw(det) != 0) else _cofactors(x, det)


def _guarded_inverse(x, det):
    """``_scaled_inverse`` where it is chosen (no det is 0); fl.compile traces it on the first
    call's values too, where a singular matrix is replaced by the identity (inv would raise)."""
    eye = np.eye(x.shape[-1], dtype=raw(x).dtype)
    return _scaled_inverse(np.where(_mat(raw(det)) == 0, eye, x), det)


def _scaled_inverse(x, det):
    return _mat(det) * np.linalg.inv(x)


def _cofactors(x, det):
    n = x.shape[-1]
    if n == 1:
        return np.ones_like(raw(x))
    keep = [np.array([k for k in range(n) if k != i]) for i in range(n)]
    rows = [np.stack([(-1) ** (i + j) * np.linalg.det(x[..., keep[j][:, None], keep[i]])
                      for j in range(n)], axis=-1) for i in range(n)]
    return np.stack(rows, axis=-2)  # adj[i, j] = (-1)^(i+j) det(x without row j, column i)


def _nonsingular(x):
    return _nonzero_signs(np.linalg.slogdet(x)[0])


def _nonzero_signs(sign):
    """Refuse slogdet's derivative where a sign is 0 (under XLA, judged on the signs the
    program returns)."""
    if np.any(sign == 0):
        raise DifferentiationError(
            "np.linalg.slogdet at a singular matrix: log|det| is -inf and has no derivative. "
            "Use np.linalg.det (differentiable at singular matrices), or regularise the "
            "matrix.")
    return np.True_


_nonsingular.effect = True  # a check: under fl.compile it runs on every call


def _slogdet_inverse(x):
    """inv(x), the derivative of log|det x|; at a singular matrix log|det| is -inf and has
    none: refused (np.linalg.det is differentiable there)."""
    untraced(_nonsingular, (x,))
    return np.linalg.inv(x)


# A real sign is locally constant. A complex sign det/|det| turns with the phase of the
# determinant: d sign = sign * i Im(tr(x^-1 dx)), d logabsdet = Re(tr(x^-1 dx)).
SLOGDET = primitive("slogdet", lambda x: tuple(np.linalg.slogdet(x)), keeps_output=False,
                    multiple_results=True)


def _slogdet_vjp(g, ans, x):
    gsign, glog = g
    if np.iscomplexobj(raw(x)):  # the sign recomputed: the rules keep no output
        glog = glog + np.imag(gsign * SLOGDET(x)[0]) * 1j
    return _mat(glog) * mT(_slogdet_inverse(x))


def _slogdet_jvp(t, ans, x):
    tr = _trace(_slogdet_inverse(x) @ t)
    if np.iscomplexobj(raw(x)):
        return SLOGDET(x)[0] * (np.imag(tr) * 1j), np.real(tr)
    return np.zeros(x.shape[:-2], x.dtype), tr


defvjp(SLOGDET, _slogdet_vjp)
defjvp(SLOGDET, _slogdet_jvp)

# --- Cholesky --------------------------------------------------------------------------------
# L = cholesky(A) reads the lower triangle of A: A_s = tril(A) + tril(A, -1).T.
# jvp: dL = L phi(L^-1 dA_s L^-T), phi = lower triangle with the diagonal halved.
# vjp: S = L^-T phi(L^T gL) L^-1, gA = phi(S + S^T) (zero on the unread triangle).

CHOLESKY = primitive("cholesky", np.linalg.cholesky, keeps_inputs=False)


def _cholesky_vjp(g, ans, x):
    s = _solve_right(_conj(ans), np.linalg.solve(mT(ans), _phi(mT(ans) @ g)))
    return _phi(s + mH(s))


def _cholesky_jvp(t, ans, x):
    m = np.linalg.solve(ans, mH(np.linalg.solve(ans, _unfold(t, lower=True))))
    return ans @ _phi(m)


defvjp(CHOLESKY, _cholesky_vjp)
defjvp(CHOLESKY, _cholesky_jvp)

# --- QR (reduced; square or tall) ------------------------------------------------------------
# jvp: X = dA R^-1, C = Q^H X, W = tril(C, -1) - tril(C, -1)^H (+ i Im(diag C), complex),
#      dQ = Q (W - C) + X, dR = (C - W) R.
# vjp: N = gR R^T - Q^T gQ, gA = (gQ + conj(Q) mirror_upper(N)) R^-T, the mirror Hermitian
#      (its diagonal real) for complex matrices.

QR = primitive("qr", lambda x: tuple(np.linalg.qr(x)), keeps_inputs=False,
               multiple_results=True)


def _qr_check(x, r):
    if x.shape[-2] < x.shape[-1]:
        raise DifferentiationError(
            f"np.linalg.qr: derivatives need a square or tall matrix (rows >= columns), got "
            f"shape {x.shape}; take the QR of the transpose instead")
    untraced(_full_rank, (r,))


def _full_rank(r):
    if np.any(np.diagonal(r, axis1=-2, axis2=-1) == 0):
        raise DifferentiationError(
            "np.linalg.qr of a matrix without full column rank: Q is not unique there, so it "
            "has no derivative. Regularise the matrix, or differentiate a quantity that does "
            "not depend on the choice of Q.")
    return np.True_


_full_rank.effect = True  # a check: under fl.compile it runs on every call


def _qr_vjp(g, ans, x):
    _qr_check(x, ans[1])
    (gq, gr), (q, r) = g, ans
    n = _unfold(gr @ mT(r) - mT(q) @ gq, lower=False)  # the upper triangle, mirrored
    return _solve_right(mT(r), gq + _conj(q) @ n)


def _qr_jvp(t, ans, x):
    _qr_check(x, ans[1])
    q, r = ans
    dx = _solve_right(r, t)
    c = mH(q) @ dx
    w = _tri(c, lower=True, strict=True)
    w = w - mH(w)
    if np.iscomplexobj(raw(c)):  # LAPACK's R has a real diagonal: Q^H dQ takes i Im(diag C)
        w = w + _diag(np.imag(np.einsum("...ii->...i", c))) * 1j
    return q @ (w - c) + dx, (c - w) @ r


defvjp(QR, _qr_vjp)
defjvp(QR, _qr_jvp)

# --- symmetric eigendecomposition ------------------------------------------------------------
# A_s V = V diag(w), A_s read from one triangle; F_ij = 1 / (w_j - w_i), 0 on the diagonal.
# jvp: M = V^T dA_s V, dw = diag(M), dV = V (F o M).
# vjp: B = V (diag(gw) + F o (V^T gV)) V^T, gA = phi(B + B^T) on the triangle read.

EIGH = primitive("eigh", lambda x, *, UPLO: tuple(np.linalg.eigh(x, UPLO)), keeps_inputs=False,
                 multiple_results=True)


def _eigh_vjp(g, ans, x, UPLO):
    (gw, gv), (w, v) = g, ans
    inner = _diag(gw) + _gap_inverse(w) * (mT(v) @ gv)
    b = _conj(v) @ inner @ mT(v)
    return _phi(b + mH(b), lower=UPLO == "L")


def _eigh_jvp(t, ans, x, UPLO):
    w, v = ans
    m = mH(v) @ _unfold(t, lower=UPLO == "L") @ v
    dw = np.einsum("...ii->...i", m)
    return (np.real(dw) if np.iscomplexobj(raw(dw)) else dw), v @ (_gap_inverse(w) * m)


defvjp(EIGH, _eigh_vjp)
defjvp(EIGH, _eigh_jvp)

# --- singular value decomposition (reduced) --------------------------------------------------
# A = U diag(s) Vh, k = min(m, n); V = Vh^T. Townsend's F_ij = 1 / (s_j^2 - s_i^2) is split as
# F_ij (s_j a + s_i b) = (a + b) / (2 (s_j - s_i)) + (a - b) / (2 (s_j + s_i)): only the first
# part is singular at a repeated value (it is dropped there; the second is kept).
# With Fm = 1 / (s_j - s_i), Fp = 1 / (s_j + s_i):
# vjp: Xu = U^T gU - gU^T U, Xv = V^T gV - gV^T V,
#      gA = U [(Fm o (Xu + Xv) + Fp o (Xu - Xv)) / 2 + diag(gs)] Vh
#           + (I - U U^T) gU S^-1 Vh + U S^-1 gVh (I - V Vh)                 (Townsend 2016).
# jvp: dP = U^T dA V, ds = diag(dP), E = Fm o (dP + dP^T) / 2, O = Fp o (dP - dP^T) / 2,
#      dU = U (E + O) + (I - U U^T) dA V S^-1, dV = V (E - O) + (I - V Vh) dA^T U S^-1.

SVD = primitive("svd", lambda x, *, hermitian: tuple(np.linalg.svd(
    x, full_matrices=False, hermitian=hermitian)), keeps_inputs=False, multiple_results=True)


def _svd_vjp(g, ans, x, hermitian):
    _hermitian_real(x, hermitian)
    (gu, gs, gvh), (u, s, vh) = g, ans
    cu, cvh = _conj(u), _conj(vh)  # complex: A = U S V^H, with V^T = conj(Vh)
    ut_gu = mT(u) @ gu
    vt_gv = _conj(vh @ mT(gvh))
    xu, xv = ut_gu - mH(ut_gu), vt_gv - mH(vt_gv)
    m, n, k = x.shape[-2], x.shape[-1], s.shape[-1]
    tol = _rounding(s, max(m, n))
    inner = 0.5 * (_gap_inverse(s, tol) * (xu + xv) + _sum_inverse(s, tol) * (xu - xv)) \
        + _diag(gs)
    ga = cu @ inner @ cvh
    s_inv = _safe_inverse(s, tol)
    if m > k:
        ga = ga + ((gu - cu @ ut_gu) * s_inv[..., None, :]) @ cvh
    if n > k:
        ga = ga + cu @ (s_inv[..., :, None] * (gvh - (gvh @ mT(vh)) @ cvh))
    return _phi(ga + mT(ga)) if hermitian else ga  # hermitian: the lower triangle is read


def _svd_jvp(t, ans, x, hermitian):
    _hermitian_real(x, hermitian)
    u, s, vh = ans
    t = _unfold(t, lower=True) if hermitian else t
    v = mH(vh)
    dp = mH(u) @ t @ v
    m, n, k = x.shape[-2], x.shape[-1], s.shape[-1]
    tol = _rounding(s, max(m, n))
    even = 0.5 * _gap_inverse(s, tol) * (dp + mH(dp))
    odd = 0.5 * _sum_inverse(s, tol) * (dp - mH(dp))  # complex: its diagonal turns the phases
    du, dv = u @ (even + odd), v @ (even - odd)
    s_inv = _safe_inverse(s, tol)[..., None, :]
    if m > k:
        tv = t @ v
        du = du + (tv - u @ (mH(u) @ tv)) * s_inv
    if n > k:
        tu = mH(t) @ u
        dv = dv + (tu - v @ (vh @ tu)) * s_inv
    ds = np.einsum("...ii->...i", dp)
    return du, (np.real(ds) if np.iscomplexobj(raw(ds)) else ds), mH(dv)


def _hermitian_real(x, hermitian):
    if hermitian and np.iscomplexobj(raw(x)):
        raise DifferentiationError("np.linalg.svd(hermitian=True) of a complex matrix has no "
                                   "derivative rule; pass hermitian=False")


defvjp(SVD, _svd_vjp)
defjvp(SVD, _svd_jvp)

# Singular values alone: the rules rebuild U and Vh through svd (so they nest to any order).
SVDVALS = primitive("svdvals", lambda x: np.linalg.svd(x, compute_uv=False), keeps_output=False)
defvjp(SVDVALS, lambda g, ans, x: _svd_factors(
    x, lambda u, vh: (_conj(u) * g[..., None, :]) @ _conj(vh)))
defjvp(SVDVALS, lambda t, ans, x: _svd_factors(x, lambda u, vh: _real(np.einsum(
    "...ik,...ij,...kj->...k", _conj(u), t, _conj(vh)))))


def _svd_factors(x, use):
    u, _, vh = SVD(x, hermitian=False)
    return use(u, vh)


# --- pseudo-inverse --------------------------------------------------------------------------
# Golub & Pereyra 1973, valid where the rank is locally constant (full-rank matrices):
# dP = -P dA P + P P^T dA^T (I - A P) + (I - P A) dA^T P^T P.

PINV = primitive("pinv", lambda x, *, kwargs: np.linalg.pinv(x, **dict(kwargs)))


def _pinv_vjp(g, ans, x, kwargs):
    hermitian = dict(kwargs).get("hermitian", False)
    x = _unfold(x, lower=True) if hermitian else x
    p, pt, gt = ans, mT(ans), mT(g)
    ga = (-(pt @ g @ pt) + (gt - x @ (p @ gt)) @ (p @ pt)
          + (pt @ p) @ (gt - (gt @ p) @ x))
    return _phi(ga + mT(ga)) if hermitian else ga  # hermitian: the lower triangle is read


def _pinv_jvp(t, ans, x, kwargs):
    if dict(kwargs).get("hermitian", False):
        x, t = _unfold(x, lower=True), _unfold(t, lower=True)
    p, tt = ans, mT(t)
    return (-(p @ t @ p) + (p @ mT(p)) @ (tt - (tt @ x) @ p)
            + (tt - p @ (x @ tt)) @ (mT(p) @ p))


defvjp(PINV, _pinv_vjp)
defjvp(PINV, _pinv_jvp)

# --- the NumPy functions ---------------------------------------------------------------------

_RESULTS = {name: type(f()) for name, f in {
    "slogdet": lambda: np.linalg.slogdet(np.eye(1)),
    "qr": lambda: np.linalg.qr(np.eye(1)),
    "eigh": lambda: np.linalg.eigh(np.eye(1)),
    "svd": lambda: np.linalg.svd(np.eye(1)),
}.items()}


def _result(name, values):
    """``values`` as NumPy's named result (``SVDResult(U, S, Vh)``; a tuple on NumPy 1)."""
    kind = _RESULTS[name]
    return tuple(values) if kind is tuple else kind(*values)


function(np.linalg.inv)(lambda a: INV(a))
function(np.linalg.solve)(lambda a, b: SOLVE(a, b))
function(np.linalg.det)(lambda a: DET(a))
function(np.linalg.slogdet)(lambda a: _result("slogdet", SLOGDET(a)))


@function(np.linalg.cholesky)
def cholesky(a, /, *, upper=False):
    if upper:  # the upper triangle of a is the lower triangle of a.T
        return mT(CHOLESKY(mT(a)))
    return CHOLESKY(a)


@function(np.linalg.qr)
def qr(a, mode="reduced"):
    if mode == "r":
        return QR(a)[1]
    if mode == "complete" and a.shape[-2] == a.shape[-1]:
        mode = "reduced"
    if mode != "reduced":
        raise DifferentiationError(
            f"np.linalg.qr(mode={mode!r}) is not differentiable; use mode='reduced' or 'r'")
    return _result("qr", QR(a))


@function(np.linalg.eigh)
def eigh(a, UPLO="L"):
    return _result("eigh", EIGH(a, UPLO=UPLO.upper()))


@function(np.linalg.eigvalsh)
def eigvalsh(a, UPLO="L"):
    return EIGH(a, UPLO=UPLO.upper())[0]


@function(np.linalg.svd)
def svd(a, full_matrices=True, compute_uv=True, hermitian=False):
    if not compute_uv:
        return SVD(a, hermitian=True)[1] if hermitian else SVDVALS(a)
    if full_matrices and a.shape[-2] != a.shape[-1]:
        raise DifferentiationError(
            "np.linalg.svd(full_matrices=True) of a non-square matrix is not differentiable (the "
            "extra singular vectors are not unique); pass full_matrices=False")
    return _result("svd", SVD(a, hermitian=hermitian))


if hasattr(np.linalg, "svdvals"):  # NumPy 2 array-API spellings
    function(np.linalg.svdvals)(lambda x, /: SVDVALS(x))


@function(np.linalg.pinv)
def pinv(a, rcond=None, hermitian=False, **kwargs):
    kwargs = dict(kwargs, hermitian=hermitian)
    if rcond is not None:
        kwargs["rcond"] = rcond
    return PINV(a, kwargs=tuple(sorted(kwargs.items())))


@function(np.linalg.matrix_power)
def matrix_power(a, n):
    """Repeated squaring with matmul; a negative power inverts first."""
    if n == 0:
        shape = np.shape(raw(a))
        return np.broadcast_to(np.eye(shape[-1], dtype=raw(a).dtype), shape).copy()
    if n < 0:
        a, n = np.linalg.inv(a), -n
    elif n == 1:
        return np.copy(a)  # a new array, as NumPy's
    result = None
    while n:
        if n & 1:
            result = a if result is None else result @ a
        n >>= 1
        if n:
            a = a @ a
    return result


nondifferentiable(np.linalg.matrix_rank)  # an integer


# --- helpers ---------------------------------------------------------------------------------


def _mat(x):
    """A stack of scalars as a stack of 1x1 matrices (to scale a stack of matrices)."""
    return x[..., None, None]


def _trace(x):
    return np.einsum("...ii->...", x)


def _diag(v):
    """A stack of vectors as a stack of diagonal matrices."""
    n = v.shape[-1]
    return v[..., :, None] * module_of(v).eye(n, dtype=raw(v).dtype)


def _solve_right(r, b):
    """``b @ inv(r)``, computed as a solve."""
    return mT(np.linalg.solve(mT(r), mT(b)))


def _tri(x, *, lower, strict=False):
    """The lower (upper) triangle of ``x``: multiplied by a constant mask, which keeps it
    differentiable."""
    n = x.shape[-1]
    mask = module_of(x).tri(n, k=-1 if strict else 0, dtype=raw(x).dtype)
    return x * (mask if lower else mask.T)


def _phi(x, lower=True):
    """The lower (upper) triangle with the diagonal halved."""
    n = x.shape[-1]
    xp = module_of(x)
    mask = xp.tri(n, dtype=raw(x).dtype) - 0.5 * xp.eye(n, dtype=raw(x).dtype)
    return x * (mask if lower else mask.T)


def _unfold(t, *, lower):
    """The symmetric (Hermitian) matrix that a routine reading one triangle of ``t`` sees
    (LAPACK ignores the imaginary part of a Hermitian matrix's diagonal)."""
    part = _tri(t, lower=lower, strict=True)
    diagonal = np.real(t) if np.iscomplexobj(raw(t)) else t
    return part + mH(part) + diagonal * module_of(t).eye(t.shape[-1], dtype=raw(diagonal).dtype)


def _gap_inverse(w, tol=None):
    """``F_ij = 1 / (w_j - w_i)``, with 0 where the two values agree to within ``tol``
    (:func:`_rounding` of ``w`` unless given) and on the diagonal."""
    return _separated_inverse(w[..., None, :] - w[..., :, None], w, tol)


def _sum_inverse(s, tol):
    """``1 / (s_j + s_i)`` for singular values, with 0 where both are (numerically) zero."""
    return _separated_inverse(s[..., None, :] + s[..., :, None], s, tol)


def _rounding(w, size=None, *, normal=True):
    """How far apart LAPACK may compute equal values ``w`` of ``size x size`` matrices (a
    constant: taken from the values), one per matrix: ``16 sqrt(size) eps max|w|`` for a
    symmetric matrix's eigenvalues or singular values; ``sqrt(eps) max|w|`` where not
    ``normal`` (``eig`` of any matrix: LAPACK splits a repeated eigenvalue of a non-normal
    matrix by about ``eps cond(V)``, and the 1 / gap terms of such a split, ~1e14, made the
    gradient of ``V diag(f(w)) V^-1`` 1-2% wrong)."""
    wr = np.abs(raw(w))
    size = wr.shape[-1] if size is None else size
    eps = np.finfo(wr.dtype).eps
    scale = 16 * np.sqrt(max(size, 1)) * eps if normal else np.sqrt(eps)
    return scale * np.max(wr, axis=-1, keepdims=True, initial=0)


def _separated_inverse(d, w, tol=None):
    """``1 / d``, with 0 where ``|d|`` is within ``tol`` (:func:`_rounding` of ``w``) of 0."""
    tol = _rounding(w) if tol is None else tol
    keep = (np.abs(raw(d)) > tol[..., None]).astype(real_dtype(raw(w).dtype))
    return keep / (d + (1 - keep))


def _safe_inverse(s, tol):
    """``1 / s`` with 0 for (numerically) zero singular values (within ``tol``)."""
    keep = (raw(s) > tol).astype(raw(s).dtype)
    return keep / (s + (1 - keep))


def _conj(x):
    return np.conjugate(x) if np.iscomplexobj(raw(x)) else x


def _real(x):
    return np.real(x) if np.iscomplexobj(raw(x)) else x


def mH(x):
    """The conjugate transpose of a stack of matrices (the transpose, for real ones)."""
    return _conj(mT(x))
