"""Differentiable ``scipy.linalg`` functions: ``expm``, ``sqrtm``, ``solve_triangular``,
``cho_factor``/``cho_solve``, ``lu_factor``/``lu_solve``, ``solve_sylvester``, ``solve_banded``.

SciPy computes the values; the rules are written with these same functions (any order):

- ``expm``: the Fréchet derivative ``L(A, E)`` is the top-right block of
  ``expm([[A, E], [0, A]])`` (Higham 2008, §10.6), and the vjp is ``L(A^T, G)``;
- ``sqrtm``: ``X dX + dX X = dA`` is a Sylvester equation (vjp: the transposed one);
- ``solve_sylvester``: ``A X + X B = Q`` differentiated is another Sylvester equation;
- ``solve_triangular``, ``lu_solve``, ``cho_solve``: ``dx = -M^-1 dM x``; only the triangle
  a solve reads gets a cotangent (not the diagonal with ``unit_diagonal=True``);
- ``lu_factor``: ``P A = L U``, ``F = L^-1 P dA U^-1``, ``dL = L tril(F, -1)``,
  ``dU = triu(F) U``; square matrices only;
- ``cho_factor`` is ``np.linalg.cholesky`` of the triangle it reads; the other triangle of the
  factor holds zeros (SciPy leaves arbitrary values there);
- ``solve_banded``: a banded solve with the transposed band for the cotangent, and the band
  entries of ``-gb x^T`` for the matrix (never a dense n-by-n matrix).

Transposes, not conjugate transposes: complex arguments follow the engine's convention.
Stacks of matrices: ``expm`` only (as SciPy); the others take one matrix.

>>> import numpy as np, fluxml as fl
>>> from fluxml.scipy.linalg import solve_triangular
>>> a = np.array([[2.0, 0.0], [1.0, 4.0]])
>>> fl.gradient(lambda b: np.sum(solve_triangular(a, b, lower=True)), np.ones(2))[0]
array([0.375, 0.25 ])
"""

from __future__ import annotations

import warnings

import numpy as np

from fluxml.ad.core import DifferentiationError, Tracer, raw
from fluxml.ad.define import defjvp, defvjp, primitive
from fluxml.ad.rules.linalg import mT
from fluxml.scipy._load import scipy_module

__all__ = ["cho_factor", "cho_solve", "expm", "lu_factor", "lu_solve", "solve_banded",
           "solve_sylvester", "solve_triangular", "sqrtm"]


def _sl():
    return scipy_module("linalg")


def _traced(*xs) -> bool:
    return any(type(x) is Tracer for x in xs)


# --- expm ------------------------------------------------------------------------------------

EXPM = primitive("expm", lambda a: _sl().expm(a), keeps_output=False)


def _frechet(a, e):
    """L(a, e), the derivative of expm at ``a`` in the direction ``e``."""
    n = np.shape(a)[-1]
    zero = np.zeros(np.shape(a), np.result_type(raw(a), raw(e)))
    block = np.concatenate([np.concatenate([a, e], axis=-1),
                            np.concatenate([zero, a], axis=-1)], axis=-2)
    return EXPM(block)[..., :n, n:]


defvjp(EXPM, lambda g, ans, a: _frechet(mT(a), g))
defjvp(EXPM, lambda t, ans, a: _frechet(a, t))


def expm(a):
    """The matrix exponential (``scipy.linalg.expm``), of a matrix or a stack of them.

    >>> import numpy as np
    >>> expm(np.zeros((2, 2)))
    array([[1., 0.],
           [0., 1.]])
    """
    return EXPM(a)


# --- Sylvester equations and the square root -------------------------------------------------

def _solve_sylvester(a, b, q):
    # one dtype for all three: SciPy 1.17 solves a complex a with a real b (of complex
    # eigenvalues) wrongly, without a warning (the real Schur form of b meets a complex one)
    dtype = np.result_type(a, b, q)
    return _sl().solve_sylvester(*(np.asarray(m, dtype) for m in (a, b, q)))


SYLVESTER = primitive("solve_sylvester", _solve_sylvester)


def _separated(a, b, what: str):
    """Refuse where ``a`` and ``-b`` share an eigenvalue (to within sqrt(eps) of the scale):
    the Sylvester operator ``X -> a X + X b`` is singular there, and the solution (or the
    square root) has no derivative."""
    wa, wb = np.linalg.eigvals(raw(a)), np.linalg.eigvals(raw(b))
    gap = np.min(np.abs(wa[:, None] + wb[None, :]), initial=np.inf)
    scale = max(np.max(np.abs(wa), initial=0.0), np.max(np.abs(wb), initial=0.0))
    if not gap > np.sqrt(np.finfo(wa.real.dtype).eps) * scale:
        raise DifferentiationError(what)


_SINGULAR = ("fluxml.scipy.linalg.solve_sylvester: a and -b share an eigenvalue, so "
             "a X + X b = q has no unique solution and no derivative; shift or regularise a "
             "or b")


def _sylvester_vjp_all(g, ans, args, params, positions):
    a, b, _ = args
    _separated(a, b, _SINGULAR)
    gq = SYLVESTER(mT(a), mT(b), g)
    found = {0: lambda: -(gq @ mT(ans)), 1: lambda: -(mT(ans) @ gq), 2: lambda: gq}
    return [found[p]() for p in positions]


SYLVESTER.vjp_all = _sylvester_vjp_all


def _sylvester_jvp(pos, t, ans, args, params):
    a, b, _ = args
    _separated(a, b, _SINGULAR)
    rhs = t if pos == 2 else -(t @ ans) if pos == 0 else -(ans @ t)
    return SYLVESTER(a, b, rhs)


SYLVESTER.jvp = _sylvester_jvp


def solve_sylvester(a, b, q):
    """X with ``a @ X + X @ b = q`` (``scipy.linalg.solve_sylvester``).

    >>> import numpy as np
    >>> solve_sylvester(np.eye(2), np.eye(2), 2 * np.eye(2))
    array([[1., 0.],
           [0., 1.]])
    """
    sa, sb, sq = np.shape(a), np.shape(b), np.shape(q)
    if len(sa) != 2 or len(sb) != 2 or sa[0] != sa[1] or sb[0] != sb[1] or sq != (sa[0], sb[0]):
        raise ValueError(f"solve_sylvester: expected a (m, m), b (n, n) and q (m, n), got "
                         f"shapes {sa}, {sb} and {sq}")
    return SYLVESTER(a, b, q)


def _sqrtm(a):
    # SciPy warns of a singular matrix (its root is still right: sqrtm(0) = 0); fluxml says
    # so by refusing the derivative there instead
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", _sl().LinAlgWarning)
        x = _sl().sqrtm(a)
    return x[0] if isinstance(x, tuple) else x


def _root(x):
    """The square root ``x`` itself, refused where ``x`` and ``-x`` share an eigenvalue (a
    singular ``a``: the root's slope is unbounded there)."""
    _separated(x, x, "fluxml.scipy.linalg.sqrtm: the matrix is (numerically) singular, or its "
               "square root has eigenvalues of opposite sign: sqrtm has no derivative there")
    return x


SQRTM = primitive("sqrtm", _sqrtm, keeps_inputs=False)
defvjp(SQRTM, lambda g, ans, a: SYLVESTER(mT(_root(ans)), mT(ans), g))
defjvp(SQRTM, lambda t, ans, a: SYLVESTER(_root(ans), ans, t))


def sqrtm(a):
    """The principal square root X of a matrix (``scipy.linalg.sqrtm``). Its derivative
    exists where X and -X share no eigenvalue: not at a singular matrix, where it is refused.

    >>> import numpy as np
    >>> sqrtm(4 * np.eye(2))
    array([[2., 0.],
           [0., 2.]])
    """
    return SQRTM(a)


# --- triangular solves and the solves that use them ------------------------------------------

_TRANS = {0: 0, "N": 0, 1: 1, "T": 1, 2: 2, "C": 2}


def _tri(x, lower, unit):
    """The triangle of ``x`` that a triangular solve reads."""
    return np.tril(x, -1 if unit else 0) if lower else np.triu(x, 1 if unit else 0)


def _op(m, trans):
    return m if trans == 0 else mT(m)


SOLVE_TRIANGULAR = primitive(
    "solve_triangular", lambda a, b, *, trans, lower, unit: _sl().solve_triangular(
        a, b, trans=trans, lower=lower, unit_diagonal=unit))


def _column(x):
    return x[:, None] if np.ndim(x) == 1 else x


def _triangular_vjp_all(g, ans, args, params, positions):
    a, b = args
    trans, lower, unit = params["trans"], params["lower"], params["unit"]
    gb = SOLVE_TRIANGULAR(a, g, trans=1 - trans, lower=lower, unit=unit)
    out = []
    for p in positions:
        if p == 1:
            out.append(gb)
        else:
            gm = -(_column(gb) @ mT(_column(ans)))
            out.append(_tri(_op(gm, trans), lower, unit))
    return out


def _triangular_jvp_a(t, ans, a, b, *, trans, lower, unit):
    dx = _op(_tri(t, lower, unit), trans) @ _column(ans)
    dx = dx[:, 0] if np.ndim(ans) == 1 else dx
    return -SOLVE_TRIANGULAR(a, dx, trans=trans, lower=lower, unit=unit)


SOLVE_TRIANGULAR.vjp_all = _triangular_vjp_all
defjvp(SOLVE_TRIANGULAR, _triangular_jvp_a,
       lambda t, ans, a, b, **p: SOLVE_TRIANGULAR(a, t, **p))


def solve_triangular(a, b, trans=0, lower: bool = False, unit_diagonal: bool = False):
    """x with ``op(T) x = b``, T the lower or upper triangle of ``a`` (its diagonal taken as
    ones with ``unit_diagonal``), op the identity or the transpose (``trans`` 0/'N' or 1/'T';
    2/'C' is the conjugate transpose, for real matrices only).

    >>> import numpy as np
    >>> solve_triangular(np.array([[2.0, 0.0], [1.0, 4.0]]), np.ones(2), lower=True)
    array([0.5  , 0.125])
    """
    if trans not in _TRANS:
        raise ValueError(f"solve_triangular: trans must be 0, 1, 2, 'N', 'T' or 'C', "
                         f"got {trans!r}")
    trans = _TRANS[trans]
    if trans == 2:
        if np.iscomplexobj(raw(a)):
            raise DifferentiationError(
                "fluxml.scipy.linalg.solve_triangular: trans='C' of a complex matrix is not "
                "supported; pass np.conj(a) with trans='T' instead")
        trans = 1
    return SOLVE_TRIANGULAR(a, b, trans=trans, lower=bool(lower), unit=bool(unit_diagonal))


def cho_factor(a, lower: bool = False):
    """``(c, lower)``, c the Cholesky factor of the symmetric positive definite ``a`` (read
    from its lower or upper triangle), as ``scipy.linalg.cho_factor``; c's other triangle is
    zero. Pass the pair to ``cho_solve``.

    >>> import numpy as np
    >>> cho_factor(np.array([[4.0, 2.0], [2.0, 5.0]]))[0]
    array([[2., 1.],
           [0., 2.]])
    """
    if lower:
        return np.linalg.cholesky(a), True
    return mT(np.linalg.cholesky(mT(a))), False


def cho_solve(c_and_lower, b):
    """x with ``A x = b``, A given by ``cho_factor(A)`` (``scipy.linalg.cho_solve``).

    >>> import numpy as np
    >>> cho_solve(cho_factor(np.array([[4.0, 2.0], [2.0, 5.0]])), np.array([6.0, 7.0]))
    array([1., 1.])
    """
    c, lower = c_and_lower
    if lower:  # A = L L^T
        y = solve_triangular(c, b, lower=True)
        return solve_triangular(c, y, trans=1, lower=True)
    y = solve_triangular(c, b, trans=1)  # A = U^T U
    return solve_triangular(c, y)


def _permutation(piv):
    """LAPACK's row interchanges as the permutation ``perm`` with ``P A = A[perm]``."""
    perm = np.arange(len(piv))
    for i, p in enumerate(piv):
        perm[[i, p]] = perm[[p, i]]
    return perm


LU = primitive("lu_factor", lambda a, *, perm: _sl().lu_factor(a)[0], keeps_inputs=False)


def _lower_solve(lu, x, trans=0):
    return SOLVE_TRIANGULAR(lu, x, trans=trans, lower=True, unit=True)


def _upper_solve(lu, x, trans=0):
    return SOLVE_TRIANGULAR(lu, x, trans=trans, lower=False, unit=False)


def _unit_lower(lu):
    return np.tril(lu, -1) + np.eye(np.shape(lu)[-1], dtype=raw(lu).dtype)


def _lu_vjp(g, ans, a, *, perm):
    gf = np.tril(mT(_unit_lower(ans)) @ np.tril(g, -1), -1) + np.triu(np.triu(g) @ mT(np.triu(ans)))
    x = _lower_solve(ans, gf, trans=1)  # L^-T GF
    y = mT(_upper_solve(ans, mT(x)))  # ... U^-T
    return y[np.argsort(perm)]


def _lu_jvp(t, ans, a, *, perm):
    x = _lower_solve(ans, t[perm])  # L^-1 P dA
    f = mT(_upper_solve(ans, mT(x), trans=1))  # ... U^-1
    return _unit_lower(ans) @ np.tril(f, -1) + np.triu(f) @ np.triu(ans)


defvjp(LU, _lu_vjp)
defjvp(LU, _lu_jvp)


def lu_factor(a):
    """``(lu, piv)``, the pivoted LU factorisation of a square matrix, as
    ``scipy.linalg.lu_factor`` (L's unit diagonal not stored; ``piv`` LAPACK's row
    interchanges). Pass the pair to ``lu_solve``.

    >>> import numpy as np
    >>> lu, piv = lu_factor(np.array([[1.0, 2.0], [3.0, 4.0]]))
    >>> lu, piv
    (array([[3.        , 4.        ],
           [0.33333333, 0.66666667]]), array([1, 1], dtype=int32))
    """
    if not _traced(a):
        return _sl().lu_factor(a)
    shape = np.shape(a)
    if len(shape) != 2 or shape[0] != shape[1]:
        raise DifferentiationError(
            f"fluxml.scipy.linalg.lu_factor differentiates square matrices only, got an array "
            f"of shape {shape}")
    piv = _sl().lu_factor(raw(a))[1]
    return LU(a, perm=_permutation(piv)), piv


def lu_solve(lu_and_piv, b, trans=0):
    """x with ``A x = b`` (``trans`` 0) or ``A^T x = b`` (1), A given by ``lu_factor(A)``
    (``scipy.linalg.lu_solve``).

    >>> import numpy as np
    >>> lu_solve(lu_factor(np.array([[1.0, 2.0], [3.0, 4.0]])), np.array([3.0, 7.0]))
    array([1., 1.])
    """
    lu, piv = lu_and_piv
    perm = _permutation(piv)
    if _TRANS.get(trans) == 0:  # A = P^T L U
        return _upper_solve(lu, _lower_solve(lu, b[perm]))
    if _TRANS.get(trans) in (1, 2) and not np.iscomplexobj(raw(lu)):
        return _lower_solve(lu, _upper_solve(lu, b, trans=1), trans=1)[np.argsort(perm)]
    raise ValueError(f"lu_solve: trans must be 0/'N' or 1/'T' (2/'C' for real matrices), "
                     f"got {trans!r}")


# --- banded solves ---------------------------------------------------------------------------
# The band of A is stored as ab[u + i - j, j] = A[i, j] (SciPy's layout).

def _band(l, u, n, rows_first):
    """Index arrays into a band of shape (l + u + 1, n), and where they fall inside A."""
    k = np.arange(l + u + 1)[:, None]
    j = np.arange(n)[None, :]
    idx = j + k - u if rows_first else j - k + u
    valid = (idx >= 0) & (idx < n)
    return np.broadcast_to(k, valid.shape), np.clip(idx, 0, n - 1), valid


def _masked(valid, x):
    valid = valid.reshape(valid.shape + (1,) * (np.ndim(x) - valid.ndim))
    return np.where(valid, x, np.zeros((), raw(x).dtype))


def _transposed_band(ab, l, u):
    """The band of A^T (l and u swapped): abT[k, j] = ab[l + u - k, j + k - l]."""
    n = np.shape(ab)[-1]
    k, col, valid = _band(u, l, n, rows_first=True)  # col = j + k - l
    return _masked(valid, ab[l + u - k, col])


SOLVE_BANDED = primitive("solve_banded", lambda ab, b, *, l, u: _sl().solve_banded((l, u), ab, b))


def _banded_vjp_all(g, ans, args, params, positions):
    ab, _ = args
    l, u = params["l"], params["u"]
    gb = SOLVE_BANDED(_transposed_band(ab, l, u), g, l=u, u=l)
    out = []
    for p in positions:
        if p == 1:
            out.append(gb)
            continue
        # gA = -gb x^T, read on the band: gab[k, j] = -sum_c gb[j + k - u, c] x[j, c]
        _, i, valid = _band(l, u, np.shape(ab)[-1], rows_first=True)
        products = gb[i] * ans[None]
        if np.ndim(ans) == 2:
            products = np.sum(products, axis=-1)
        out.append(-_masked(valid, products))
    return out


def _banded_jvp_ab(t, ans, ab, b, *, l, u):
    # (dA x)[i] = sum_k dab[k, i + u - k] x[i + u - k]
    k, j, valid = _band(l, u, np.shape(ab)[-1], rows_first=False)
    x = ans if np.ndim(ans) == 2 else ans[:, None]
    products = _masked(valid, t[k, j][..., None] * x[j])
    dax = np.sum(products, axis=0)
    dax = dax if np.ndim(ans) == 2 else dax[:, 0]
    return -SOLVE_BANDED(ab, dax, l=l, u=u)


SOLVE_BANDED.vjp_all = _banded_vjp_all
defjvp(SOLVE_BANDED, _banded_jvp_ab, lambda t, ans, ab, b, **p: SOLVE_BANDED(ab, t, **p))


def solve_banded(l_and_u, ab, b):
    """x with ``A x = b``, A banded with ``l`` sub- and ``u`` superdiagonals stored as
    ``ab[u + i - j, j] = A[i, j]`` (``scipy.linalg.solve_banded``); the unused corners of
    ``ab`` get a zero cotangent.

    >>> import numpy as np
    >>> ab = np.array([[0.0, 1.0, 1.0], [4.0, 4.0, 4.0], [1.0, 1.0, 0.0]])  # tridiagonal
    >>> solve_banded((1, 1), ab, np.array([5.0, 6.0, 5.0]))
    array([1., 1., 1.])
    """
    l, u = (int(v) for v in l_and_u)
    if np.ndim(b) not in (1, 2) or np.ndim(ab) != 2 or np.shape(ab)[0] != l + u + 1:
        raise ValueError(f"solve_banded: expected ab of shape (l + u + 1, n) = ({l + u + 1}, n) "
                         f"and b of 1 or 2 dimensions, got {np.shape(ab)} and {np.shape(b)}")
    return SOLVE_BANDED(ab, b, l=l, u=u)
