"""The general eigendecomposition ``np.linalg.eig`` (and ``eigvals``): complex in general, also
for a real matrix.

``A V = V diag(w)`` with ``F_ij = 1 / (w_j - w_i)`` (0 on the diagonal and between numerically
repeated eigenvalues, as for ``eigh`` in ``decompositions.py``) and ``M = V^-1 dA V``:

- jvp: ``dw = diag(M)``; ``dU = V (F o M)``, then ``dV = dU - V Re(diag(V^H dU))``, which keeps
  each eigenvector at norm 1 (NumPy normalises them so);
- vjp, its transpose under fluxml's convention (``Re(sum(c * t))``, JAX's):
  ``gU = gV - conj(V) Re(sum(gV * V, rows))``, ``gA = V^-T (diag(gw) + F o (V^T gU)) V^T``.

Gauge. An eigenvector is defined up to a factor: NumPy (LAPACK) fixes its norm to 1 and, for a
complex vector, its phase by making its largest component real. These rules keep the norm but
not LAPACK's phase: the derivative of a complex eigenvector is that of the gauge in which
``dV = dU`` up to the norm correction (JAX's convention). So differentiate functions that do not
depend on the phase of each eigenvector: the eigenvalues, ``|v|``, ``v v^H``, ``V diag(f(w))
V^-1``. (Real matrices with real eigenvalues have real eigenvectors and only a sign to fix,
which is locally constant: there every function of ``V`` is differentiated as computed.) At
repeated eigenvalues the eigenvectors are not differentiable; the rules stay finite, as eigh's.

>>> import numpy as np, fluxml as fl
>>> a = np.array([[2.0, 1.0], [0.0, 3.0]])
>>> fl.gradient(lambda a: np.sum(np.real(np.linalg.eigvals(a))), a)[0]  # d trace
array([[1., 0.],
       [0., 1.]])
"""

from __future__ import annotations

import numpy as np

from fluxml.ad.core import Tracer, raw
from fluxml.ad.define import defjvp, defvjp, function, primitive
from fluxml.ad.rules.decompositions import _diag, _gap_inverse, _rounding
from fluxml.ad.rules.linalg import mT

EIG = primitive("eig", lambda x: tuple(np.linalg.eig(x)), keeps_inputs=False,
                multiple_results=True)


def _eig_vjp(g, ans, x):
    (gw, gv), (w, v) = g, ans
    gv = gv - np.conjugate(v) * np.real(np.sum(gv * v, axis=-2))[..., None, :]
    k = _diag(gw) + _gap_inverse(w, _rounding(w, normal=False)) * (mT(v) @ gv)
    return np.linalg.solve(mT(v), k @ mT(v))


def _eig_jvp(t, ans, x):
    w, v = ans
    m = np.linalg.solve(v, t @ v)
    du = v @ (_gap_inverse(w, _rounding(w, normal=False)) * m)
    dv = du - v * np.real(np.sum(np.conjugate(v) * du, axis=-2, keepdims=True))
    return np.einsum("...ii->...i", m), dv


defvjp(EIG, _eig_vjp)
defjvp(EIG, _eig_jvp)

_RESULT = type(np.linalg.eig(np.eye(1)))  # EigResult (a tuple on NumPy 1)


def _as_traced(x, *, dtype):
    """An eigen-result in the dtype of the traced call's: NumPy's is real where every
    eigenvalue is, complex otherwise, and a compiled program's dtypes are fixed. Real ones made
    complex (the same numbers); complex ones where the traced call's were real are refused."""
    if x.dtype == dtype:
        return x
    if np.dtype(dtype).kind == "c":
        return x.astype(dtype)
    raise ValueError(
        "np.linalg.eig under fl.compile: this run's eigenvalues are complex, the traced call's "
        "were all real (NumPy's result is real or complex by the values, a compiled program's "
        "dtype is fixed); trace with a matrix that has complex eigenvalues (the program then "
        "gives real ones as complex numbers), or leave the function uncompiled")


# identity in value: its derivatives pass through
AS_TRACED = primitive("eig_dtype", _as_traced, keeps_inputs=False, keeps_output=False)
defvjp(AS_TRACED, lambda g, ans, x, dtype: g)
defjvp(AS_TRACED, lambda t, ans, x, dtype: t)


def _eig(a):
    values = EIG(a)
    if type(raw(a)) is Tracer:  # fl.compile: the dtypes of the traced call's, on every run
        values = tuple(AS_TRACED(v, dtype=raw(v).dtype) for v in values)
    return values


@function(np.linalg.eig)
def eig(a):
    values = _eig(a)
    return tuple(values) if _RESULT is tuple else _RESULT(*values)


@function(np.linalg.eigvals)
def eigvals(a):
    return _eig(a)[0]
