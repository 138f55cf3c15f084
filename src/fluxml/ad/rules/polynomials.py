"""The polynomial helpers of ``numpy`` (coefficients highest power first): ``vander``,
``polyadd``, ``polysub``, ``polymul``, ``polydiv``, ``poly``, ``roots`` and ``polyfit``
(``polyval``, ``polyder`` and ``polyint`` are in ``numerics``).

Each is NumPy's own code, step by step, written with operations that have rules, so values
are NumPy's (to the bit where NumPy's arithmetic is reproduced: all but ``polyfit``, whose
least squares go through ``pinv``) and derivatives of any order follow. Decisions NumPy makes
on the values (leading zeros ``polymul`` trims, the remainder's leading zeros ``polydiv``
drops, whether ``poly``'s roots come in conjugate pairs) are made on the concrete values.
"""

from __future__ import annotations

import sys
import warnings

import numpy as np

from fluxml.ad.arrays import as_array, as_arrays, module_of
from fluxml.ad.core import Tracer, example_of, raw, untraced
from fluxml.ad.define import function
from fluxml.ad.rules.layouts import c_ordered


@function(np.vander)
def vander(x, N=None, increasing=False):
    """Columns 1, x, x*x, ... (a running product, NumPy's ``multiply.accumulate``), highest
    power first unless ``increasing``; a C array as NumPy's."""
    x = as_array(x)
    if x.ndim != 1:
        raise ValueError("x must be a one-dimensional array or sequence.")
    n = x.shape[0] if N is None else int(N)
    if n < 0:
        raise ValueError("negative dimensions are not allowed")
    dtype = np.promote_types(x.dtype, int)
    columns = [module_of(x).ones((x.shape[0], min(n, 1)), dtype)]
    if n > 1:
        repeated = np.broadcast_to(x[:, None], (x.shape[0], n - 1))
        columns.append(np.cumprod(repeated.astype(dtype), axis=1))
    v = np.concatenate(columns, axis=1)
    return c_ordered(v if increasing else v[:, ::-1])


@function(np.polyadd)
def polyadd(a1, a2):
    return _aligned(a1, a2, np.add)


@function(np.polysub)
def polysub(a1, a2):
    return _aligned(a1, a2, np.subtract)


@function(np.polymul)
def polymul(a1, a2):
    """The convolution of the coefficients, each without its leading zeros (as NumPy's
    ``poly1d`` takes them)."""
    return np.convolve(_trimmed(a1), _trimmed(a2))


@function(np.polydiv)
def polydiv(u, v):
    """NumPy's long division: quotient and remainder, the remainder's leading (near) zeros
    dropped."""
    u, v = np.atleast_1d(as_array(u)) + 0.0, np.atleast_1d(as_array(v)) + 0.0
    w_dtype = np.result_type(raw(u)[0], raw(v)[0])
    m, n = u.shape[0] - 1, v.shape[0] - 1
    scale = 1.0 / v[0]
    r = u.astype(w_dtype)
    q = []
    for k in range(m - n + 1):
        d = scale * r[k]
        q.append(d)
        r = np.concatenate([r[:k], r[k:k + n + 1] - d * v, r[k + n + 1:]])
    q = np.stack(q) if q else np.zeros((1,), w_dtype)
    while np.allclose(raw(r)[0], 0, rtol=1e-14) and r.shape[-1] > 1:
        r = r[1:]
    return q, r


@function(np.poly)
def poly(seq_of_zeros):
    """The monic polynomial of these roots (or of a square matrix's eigenvalues): one
    convolution with ``[1, -root]`` per root; real where the roots pair up as conjugates."""
    zeros = np.atleast_1d(as_array(seq_of_zeros))
    shape = zeros.shape
    if len(shape) == 2 and shape[0] == shape[1] and shape[0] != 0:
        zeros = np.linalg.eigvals(zeros)
    elif len(shape) == 1:
        zeros = zeros.astype(np.mintypecode(zeros.dtype.char))
    else:
        raise ValueError("input must be 1d or non-empty square 2d array.")
    if zeros.shape[0] == 0:
        return 1.0
    dt = zeros.dtype
    xp = module_of(zeros)
    a = xp.ones((1,), dt)
    for zero in zeros:
        a = np.convolve(a, np.stack([xp.ones((), dt), -zero]), mode="full")
    if a.dtype.kind == "c":
        value = raw(zeros)
        if type(value) is Tracer:  # fl.compile: decided on the traced call, checked each run
            pairs = _conjugate_pairs(example_of(zeros))
            untraced(_same_pairing, (value, pairs))
        else:
            pairs = _conjugate_pairs(value)
        if pairs:
            a = np.copy(np.real(a))
    return a


def _conjugate_pairs(roots) -> bool:
    """NumPy's test of np.poly: do the (plain) roots pair up as conjugates (a real result)?"""
    roots = np.asarray(roots, complex)
    return bool(np.all(np.sort(roots) == np.sort(roots.conjugate())))


def _same_pairing(roots, pairs):
    """Under fl.compile: NumPy's np.poly must find the roots paired as on the traced call (the
    result is real or complex by it, and a compiled program's dtype is fixed)."""
    if _conjugate_pairs(roots) != pairs:
        raise ValueError(
            f"np.poly under fl.compile: this run's roots {'do not ' if pairs else ''}pair up as "
            f"conjugates, the traced call's {'did' if pairs else 'did not'}, so NumPy's result "
            "would be complex where the program's is real, or the other way; take np.real of "
            "the result, or leave the function uncompiled")
    return np.True_


_same_pairing.effect = True  # a check: under fl.compile it runs on every call


@function(np.roots)
def roots(p):
    """The eigenvalues of the companion matrix of ``p`` without its leading and trailing
    zeros (a zero root for each trailing zero), as NumPy's; real where they all are."""
    p = np.atleast_1d(as_array(p))
    if p.ndim != 1:
        raise ValueError("Input must be a rank-1 array.")
    nonzero = np.flatnonzero(raw(p))
    if nonzero.size == 0:
        return np.array([])
    trailing = p.shape[0] - nonzero[-1] - 1
    p = p[int(nonzero[0]):int(nonzero[-1]) + 1]
    if p.dtype.kind not in "fc":
        p = p.astype(float)
    n = p.shape[0]
    xp = module_of(p)  # (the companion matrix's constants beside a GPU's p: the GPU's)
    if n > 1:
        below = xp.diag(xp.ones((n - 2,), p.dtype), -1)[1:]
        found = np.linalg.eigvals(np.concatenate([(-p[1:] / p[0])[None, :], below]))
    else:
        found = xp.array([])
    return np.concatenate((found, xp.zeros(trailing, found.dtype)))


def _warn_rank(rank, order):
    """NumPy's warning of a fit whose Vandermonde matrix has less than full rank, attributed
    to the innermost caller outside fluxml and NumPy (as NumPy's to np.polyfit's caller)."""
    if rank != order:
        level, frame = 1, sys._getframe()
        while frame is not None and \
                frame.f_globals.get("__name__", "").partition(".")[0] in ("fluxml", "numpy"):
            frame, level = frame.f_back, level + 1
        warnings.warn("Polyfit may be poorly conditioned", np.exceptions.RankWarning,
                      stacklevel=level)
    return np.True_


_warn_rank.effect = True  # a warning: under fl.compile it runs on every call


@function(np.polyfit)
def polyfit(x, y, deg, rcond=None, full=False, w=None, cov=False):
    """NumPy's least squares: the Vandermonde matrix (weighted) with its columns scaled to
    unit norm, ``lstsq``, the coefficients scaled back; ``full`` and ``cov`` as NumPy's."""
    order = int(deg) + 1
    x, y = as_array(x) + 0.0, as_array(y) + 0.0
    if deg < 0:
        raise ValueError("expected deg >= 0")
    if x.ndim != 1:
        raise TypeError("expected 1D vector for x")
    if x.size == 0:
        raise TypeError("expected non-empty vector for x")
    if y.ndim < 1 or y.ndim > 2:
        raise TypeError("expected 1D or 2D array for y")
    if x.shape[0] != y.shape[0]:
        raise TypeError("expected x and y to have same length")
    if rcond is None:
        rcond = x.shape[0] * np.finfo(x.dtype).eps
    lhs, rhs = vander(x, order), y
    if w is not None:
        w = as_array(w) + 0.0
        if w.ndim != 1:
            raise TypeError("expected a 1-d array for weights")
        if w.shape[0] != y.shape[0]:
            raise TypeError("expected w and y to have the same length")
        lhs = lhs * w[:, None]
        rhs = rhs * (w[:, None] if rhs.ndim == 2 else w)
    scale = np.sqrt(np.sum(lhs * lhs, axis=0))
    lhs = lhs / scale
    c, resids, rank, s = np.linalg.lstsq(lhs, rhs, rcond)
    c = (c.T / scale).T
    if not full:  # (under fl.compile, on every run)
        untraced(_warn_rank, (rank, order))
    if full:
        return c, resids, rank, s, rcond
    if not cov:
        return c
    base = np.linalg.inv(np.dot(lhs.T, lhs)) / np.outer(scale, scale)
    if cov == "unscaled":
        fac = 1
    else:
        if x.shape[0] <= order:
            raise ValueError("the number of data points must exceed order to scale the "
                             "covariance matrix")
        fac = resids / (x.shape[0] - order)
    return c, (base * fac if y.ndim == 1 else base[:, :, None] * fac)


# --- helpers ---------------------------------------------------------------------------------

def _aligned(a1, a2, op):
    """``op`` of two coefficient vectors, the shorter padded with leading zeros."""
    a1, a2 = (np.atleast_1d(a) for a in as_arrays(a1, a2))
    diff = a2.shape[0] - a1.shape[0]
    if diff > 0:
        a1 = np.concatenate((module_of(a1).zeros(diff, a1.dtype), a1))
    elif diff < 0:
        a2 = np.concatenate((module_of(a2).zeros(-diff, a2.dtype), a2))
    return op(a1, a2)


def _trimmed(c):
    """``poly1d(c)``'s coefficients: ``c`` without its leading zeros ([0] if all are)."""
    c = np.atleast_1d(as_array(c))
    if c.ndim > 1:
        raise ValueError("Polynomial must be 1d only.")
    nonzero = np.flatnonzero(raw(c) != 0)
    if nonzero.size == 0:
        return np.zeros((1,), c.dtype) if c.shape[0] == 0 else c[:1] * 0
    return c[int(nonzero[0]):]  # (int: a GPU's 0-d index is no slice bound)
