"""JAX versions of the engine's matrix decompositions (``fluxml.ad.rules.decompositions``,
``fluxml.scipy.linalg``): Cholesky, QR, the symmetric eigendecomposition, the SVD and the singular
values, the pseudo-inverse and the matrix exponential, with NumPy's conventions where
``jnp``'s differ:

- ``cholesky``, ``eigh`` and the SVD and ``pinv`` with ``hermitian=True`` read one triangle
  of their input, as LAPACK and NumPy do (``jnp``'s average the matrix with its transpose:
  another function of a non-symmetric input, and another derivative);
- ``pinv`` drops singular values below NumPy's cutoff (``rcond`` 1e-15 of the largest unless
  given; ``jnp``'s default is ``max(m, n) eps``, a billion times larger in float32).

On a CPU, XLA runs the same LAPACK algorithms (Householder QR, ``syevd``, ``gesdd``), so
the factors' signs agree with NumPy's; a decomposition's vectors are unique only up to such
signs, so on other devices a function of them may differ by them, as two LAPACK builds may.

>>> import numpy as np
>>> w, v = eigh(np.array([[2.0, 5.0], [1.0, 2.0]]), UPLO="L")  # reads [[2, 1], [1, 2]]
>>> np.asarray(w).round(6).tolist()
[1.0, 3.0]
"""

from __future__ import annotations

import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np


def cholesky(x):
    """``np.linalg.cholesky``: the factor of the Hermitian matrix read from the lower triangle
    (JAX's would average the two triangles: another factor for an input that is not
    Hermitian)."""
    return jnp.linalg.cholesky(x, symmetrize_input=False)


def qr(x):
    """``np.linalg.qr``'s reduced ``(Q, R)``."""
    q, r = jnp.linalg.qr(x, mode="reduced")
    return q, r


def eigh(x, *, UPLO):
    """``np.linalg.eigh``: ``(w, V)`` of the symmetric matrix that the ``UPLO`` triangle of
    ``x`` holds."""
    w, v = jnp.linalg.eigh(x, UPLO=UPLO, symmetrize_input=False)
    return w, v


def svd(x, *, hermitian):
    """``np.linalg.svd(x, full_matrices=False, hermitian=...)``'s ``(U, s, Vh)``."""
    if hermitian:
        return _hermitian_svd(x)
    u, s, vh = jnp.linalg.svd(x, full_matrices=False)
    return u, s, vh


def _hermitian_svd(x):
    """NumPy's SVD of a Hermitian matrix, read from its lower triangle (``jnp``'s averages
    the two triangles): its eigendecomposition, the values' signs moved into ``Vh``, sorted
    by magnitude, largest first."""
    w, v = jnp.linalg.eigh(x, UPLO="L", symmetrize_input=False)
    order = jnp.argsort(jnp.abs(w), axis=-1)[..., ::-1]
    s = jnp.take_along_axis(jnp.abs(w), order, axis=-1)
    signs = jnp.take_along_axis(jnp.sign(w), order, axis=-1)
    u = jnp.take_along_axis(v, order[..., None, :], axis=-1)
    return u, s, jnp.conjugate(jnp.swapaxes(u * signs[..., None, :], -1, -2))


def svdvals(x):
    return jnp.linalg.svd(x, compute_uv=False)


_UNSET = object()


def _cutoff(x, kwargs):
    """NumPy's ``rcond`` for ``pinv(x, **kwargs)``."""
    rcond, rtol = kwargs.get("rcond"), kwargs.get("rtol", _UNSET)
    if rcond is not None:
        return rcond
    if rtol is _UNSET:
        return 1e-15
    return max(x.shape[-2:]) * np.finfo(x.dtype).eps if rtol is None else rtol


def pinv(x, *, kwargs):
    """``np.linalg.pinv(x, **kwargs)``, NumPy's algorithm: the SVD of ``conj(x)``, singular
    values at most ``rcond`` times the largest dropped."""
    kwargs = dict(kwargs)
    u, s, vt = svd(jnp.conjugate(x), hermitian=kwargs.get("hermitian", False))
    rcond = jnp.asarray(_cutoff(x, kwargs))
    large = s > rcond[..., None] * jnp.max(s, axis=-1, keepdims=True, initial=0)
    inverse = jnp.where(large, 1 / jnp.where(large, s, 1), 0)
    return jnp.swapaxes(vt, -1, -2) @ (inverse[..., None] * jnp.swapaxes(u, -1, -2))


def expm(a):
    """``scipy.linalg.expm`` (the same Pade approximation with scaling and squaring)."""
    return jsl.expm(a)
