"""Least squares, condition numbers and tensor inverses/solves, written with the primitives of
``decompositions.py`` (pinv, svd, inv, solve) and ``norms.py``, whose rules carry the
derivatives."""

from __future__ import annotations

import math

import numpy as np

from fluxml.ad.arrays import as_array
from fluxml.ad.core import Tracer, raw, untraced
from fluxml.ad.define import function


@function(np.linalg.lstsq)
def lstsq(a, b, rcond=None):
    """``x = pinv(a) b`` (singular values below ``rcond`` times the largest are dropped, as
    in NumPy), with NumPy's residuals, rank and singular values. Where ``a`` has full rank the
    derivative is that of the least-squares solution; where it has not, pinv's."""
    a, b = as_array(a), as_array(b)
    m, n = a.shape
    if rcond is None:
        rcond = np.finfo(np.result_type(raw(a))).eps * max(m, n)
    x = np.linalg.pinv(a, rcond=rcond) @ b
    s = np.linalg.svd(a, compute_uv=False)
    # np.linalg.matrix_rank(a, tol=rcond * max(s)), on the singular values at hand
    rank = np.count_nonzero(raw(s) > rcond * np.max(raw(s), initial=0).astype(np.float64))
    compiled = type(rank) is Tracer  # fl.compile: the rank is known when the program runs
    if not compiled:
        rank = int(rank)
    if m > n and (compiled or rank == n):
        r = b - a @ x
        residuals = np.sum(r * r, axis=0)
        residuals = np.reshape(residuals, (1,)) if b.ndim == 1 else residuals
        if compiled:  # (a check only where the residuals are used)
            residuals = residuals * untraced(_full_rank_residuals, (rank, n))
    else:
        residuals = np.empty((0,), np.result_type(raw(a), raw(b)))
    return x, residuals, rank, s


def _full_rank_residuals(rank, n):
    """Under fl.compile, lstsq's residuals have the shape of a full-rank matrix's (that of the
    call traced, where NumPy gives them): refused on a run where the rank is lower, where
    NumPy's are empty."""
    if rank != n:
        raise ValueError(
            f"np.linalg.lstsq under fl.compile: the matrix has rank {int(rank)} < {n} columns "
            "on this run, where NumPy returns no residuals (an empty array), but the compiled "
            "program's have the shape of the traced call's; compute them as "
            "np.sum((b - a @ x) ** 2, axis=0), or leave the function uncompiled")
    return np.True_


@function(np.linalg.cond)
def cond(x, p=None):
    """The ratio of the extreme singular values (p None, 2, -2), else
    ``norm(x, p) * norm(inv(x), p)``, as NumPy defines it."""
    x = as_array(x)
    if p is None or p in (2, -2):
        s = np.linalg.svd(x, compute_uv=False)
        return s[..., 0] / s[..., -1] if p != -2 else s[..., -1] / s[..., 0]
    return (np.linalg.norm(x, p, axis=(-2, -1))
            * np.linalg.norm(np.linalg.inv(x), p, axis=(-2, -1)))


@function(np.linalg.tensorinv)
def tensorinv(a, ind=2):
    """The inverse of ``a`` read as a matrix of its first ``ind`` axes by the others."""
    a = as_array(a)
    if ind <= 0:
        raise ValueError("Invalid ind argument.")
    rows, cols = a.shape[:ind], a.shape[ind:]
    inverse = np.linalg.inv(np.reshape(a, (math.prod(rows), math.prod(cols))))
    return np.reshape(inverse, cols + rows)


@function(np.linalg.tensorsolve)
def tensorsolve(a, b, axes=None):
    """The ``x`` with ``tensordot(a, x, x.ndim) == b`` (NumPy's reshaping, then solve)."""
    a, b = as_array(a), as_array(b)
    an = a.ndim
    if axes is not None:
        order = [k for k in range(an) if k not in [k % an for k in axes]]
        order += [k % an for k in axes]
        a = np.transpose(a, order)
    shape = a.shape[-(an - b.ndim):]
    n = math.prod(shape)
    if a.size != n * n:
        raise np.linalg.LinAlgError(
            "Input arrays must satisfy the requirement prod(a.shape[b.ndim:]) == "
            "prod(a.shape[:b.ndim])")
    x = np.linalg.solve(np.reshape(a, (n, n)), np.ravel(b))
    return np.reshape(x, shape)
