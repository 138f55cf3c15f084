"""The XLA back end's kernels of the engine's matrix decompositions (``ad/rules/decompositions``):
NumPy's factorisations through JAX's (LAPACK's, as NumPy's), with NumPy's conventions where
JAX's differ: cholesky, eigh and a Hermitian svd or pinv read one triangle, pinv drops NumPy's
small singular values.

(``np.linalg.eig`` has none: NumPy's result is real where every eigenvalue is, complex
otherwise, a dtype that depends on the values, which a compiled program cannot have.)
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np


def cholesky(x):
    """``np.linalg.cholesky``: the factor of the Hermitian matrix read from the lower triangle
    (JAX's would average the two triangles: another factor for an input that is not
    Hermitian)."""
    return jnp.linalg.cholesky(x, symmetrize_input=False)


def qr(x):
    """``np.linalg.qr``'s reduced pair (Q, R)."""
    q, r = jnp.linalg.qr(x)
    return q, r


def eigh(x, UPLO):  # noqa: N803 (NumPy's name)
    """``np.linalg.eigh``: ascending eigenvalues, and the eigenvectors, of the Hermitian matrix
    read from the triangle ``UPLO`` (JAX would average the two triangles)."""
    w, v = jnp.linalg.eigh(x, UPLO=UPLO, symmetrize_input=False)
    return w, v


def svd(x, hermitian):
    """``np.linalg.svd(x, full_matrices=False, hermitian=...)``'s triple (U, S, Vh); a
    Hermitian one as NumPy computes it, from ``eigh`` of the lower triangle (JAX's would read
    both): |eigenvalues| in descending order, their signs moved into Vh."""
    if not hermitian:
        u, s, vh = jnp.linalg.svd(x, full_matrices=False)
        return u, s, vh
    w, u = jnp.linalg.eigh(x, symmetrize_input=False)
    sign, s = jnp.sign(w), jnp.abs(w)
    order = jnp.argsort(s, axis=-1)[..., ::-1]
    sign = jnp.take_along_axis(sign, order, axis=-1)
    s = jnp.take_along_axis(s, order, axis=-1)
    u = jnp.take_along_axis(u, order[..., None, :], axis=-1)
    return u, s, jnp.conj(jnp.swapaxes(u * sign[..., None, :], -1, -2))


def svdvals(x):
    return jnp.linalg.svd(x, compute_uv=False)


def pinv(x, kwargs):
    """``np.linalg.pinv(x, **kwargs)`` as NumPy computes it: singular values at most ``rcond``
    times the largest are dropped (NumPy's default ``rcond`` 1e-15; ``rtol=None`` means
    max(m, n) times the dtype's epsilon; JAX's defaults differ)."""
    kwargs = dict(kwargs)
    rcond, rtol = kwargs.get("rcond"), kwargs.get("rtol", np._NoValue)
    if rcond is None:
        rcond = 1e-15 if rtol is np._NoValue else (
            max(x.shape[-2:]) * np.finfo(x.dtype).eps if rtol is None else rtol)
    u, s, vt = svd(jnp.conj(x), kwargs.get("hermitian", False))
    cutoff = jnp.asarray(rcond)[..., None] * jnp.max(s, axis=-1, keepdims=True)
    large = s > cutoff
    s = jnp.where(large, 1 / jnp.where(large, s, 1), 0)
    return jnp.matrix_transpose(vt) @ (s[..., None] * jnp.matrix_transpose(u))
