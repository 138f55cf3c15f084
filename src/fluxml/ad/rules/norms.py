"""Vector and matrix norms: np.linalg.norm, and NumPy 2's vector_norm and matrix_norm.

The spectral and nuclear norms are written with the singular values (``SVDVALS`` of
``decompositions.py``), whose rules carry their derivatives.
"""

from __future__ import annotations

import numpy as np

from fluxml.ad.core import known_none, raw
from fluxml.ad.define import defjvp, defvjp, function, primitive
from fluxml.ad.rules.decompositions import SVDVALS, _conj

# The 2-norm (and the Frobenius norm) is a primitive, so that its gradient at zero is the
# subgradient 0 instead of 0/0. The other norms are written with |x| = x * sign(x), where
# sign(x) is taken from the value: a constant whose derivative is zero (the subgradient 0 at 0).

NORM2 = primitive("norm2", lambda x, *, axis, keepdims: np.linalg.norm(
    x, axis=axis, keepdims=keepdims))


def _norm2_vjp(g, ans, x, axis, keepdims):
    shape = _kept_shape(x.shape, axis, True)
    n = np.reshape(ans, shape)
    return np.reshape(g, shape) * _conj(x) / (n + (raw(n) == 0))


def _norm2_jvp(t, ans, x, axis, keepdims):
    inner = np.sum(t * _conj(x), axis=axis, keepdims=keepdims)
    if np.iscomplexobj(raw(inner)):
        inner = np.real(inner)
    return inner / (ans + (raw(ans) == 0))


defvjp(NORM2, _norm2_vjp)
defjvp(NORM2, _norm2_jvp)


@function(np.linalg.norm)
def norm(x, ord=None, axis=None, keepdims=False):
    if np.size(raw(x)) == 0:  # no entries: NumPy's value, nothing to differentiate
        return np.linalg.norm(raw(x), ord, axis, keepdims)
    nd = np.ndim(raw(x))
    if axis is None and ord is None:
        return NORM2(x, axis=None, keepdims=keepdims)
    if axis is None:
        axis = tuple(range(nd))
    axis = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    axis = tuple(a % nd for a in axis)
    if len(axis) == 1:
        return _vector_norm(x, ord, axis, keepdims)
    if len(axis) == 2:
        return _matrix_norm(x, ord, axis, keepdims)
    raise ValueError("Improper number of dimensions to norm.")


def _vector_norm(x, ord, axis, keepdims):
    if ord is None or ord == 2:
        return NORM2(x, axis=axis, keepdims=keepdims)
    if isinstance(ord, str):
        raise ValueError(f"Invalid norm order {ord!r} for vectors")
    if ord == 0:  # the number of nonzero entries: piecewise constant, no gradient
        return np.linalg.norm(raw(x), ord, axis, keepdims)
    ax = axis[0]
    a = _abs(x)
    if ord in (np.inf, -np.inf):
        return _pick(a, ax, keepdims, largest=ord > 0)
    if ord == 1:
        return np.sum(a, axis=axis, keepdims=keepdims)
    # Where the whole vector is 0 the norm is a cone's tip: the subgradient 0, computed on a
    # stand-in vector of ones so that no 0 * inf appears (at any order).
    zero = np.sum(raw(a), axis=axis, keepdims=True) == 0
    if not known_none(zero):
        a = np.where(zero, 1.0, a)
    result = np.sum(a ** ord, axis=axis, keepdims=keepdims) ** (1.0 / ord)
    if not known_none(zero):
        result = np.where(np.reshape(zero, np.shape(raw(result))), 0.0, result)
    return result


def _matrix_norm(x, ord, axis, keepdims):
    r, c = axis
    if r == c:
        raise ValueError("Duplicate axes given.")
    if ord is None or ord == "fro":
        return NORM2(x, axis=axis, keepdims=keepdims)
    if ord in ("nuc", 2, -2):
        s = SVDVALS(_last(x, r, c))
        result = np.sum(s, axis=-1) if ord == "nuc" else s[..., 0 if ord == 2 else -1]
    elif ord in (1, -1, np.inf, -np.inf):
        first, second = (r, c) if ord in (1, -1) else (c, r)
        sums = np.sum(_abs(x), axis=first, keepdims=True)
        result = _pick(sums, second, True, largest=ord > 0)
        result = np.reshape(result, tuple(n for d, n in enumerate(result.shape) if d not in axis))
    else:
        raise ValueError(f"Invalid norm order {ord!r} for matrices.")
    if keepdims:
        result = np.reshape(result, _kept_shape(x.shape, axis, True))
    return result


def _abs(x):
    if np.iscomplexobj(raw(x)):
        return np.abs(x)  # non-holomorphic: abs's own rule
    return x * np.sign(raw(x))


def _pick(a, axis, keepdims, largest):
    """The largest (smallest) entry of ``a`` along ``axis``; its gradient goes to one entry."""
    find = np.argmax if largest else np.argmin
    idx = np.expand_dims(find(raw(a), axis=axis), axis)
    picked = np.take_along_axis(a, idx, axis=axis)
    return picked if keepdims else np.reshape(picked, _kept_shape(a.shape, (axis,), False))


def _kept_shape(shape, axis, keepdims):
    """The shape of a reduction of ``shape`` over ``axis`` (None: all axes)."""
    axes = range(len(shape)) if axis is None else [a % len(shape) for a in axis]
    if keepdims:
        return tuple(1 if d in axes else n for d, n in enumerate(shape))
    return tuple(n for d, n in enumerate(shape) if d not in axes)


def _last(x, r, c):
    """``x`` with axes ``r`` and ``c`` moved to the end, in that order."""
    return np.moveaxis(x, (r, c), (-2, -1))


if hasattr(np.linalg, "vector_norm"):  # NumPy 2 array-API spellings

    @function(np.linalg.vector_norm)
    def vector_norm(x, /, *, axis=None, keepdims=False, ord=2):
        """The vector norm over ``axis`` (several axes: as one flattened axis)."""
        if np.size(raw(x)) == 0:  # no entries: NumPy's value, nothing to differentiate
            return np.linalg.vector_norm(raw(x), axis=axis, keepdims=keepdims, ord=ord)
        nd = x.ndim
        axes = range(nd) if axis is None else (axis,) if np.ndim(axis) == 0 else axis
        axes = tuple(a % nd for a in axes)
        rest = tuple(x.shape[d] for d in range(nd) if d not in axes)
        flat = np.reshape(np.moveaxis(x, axes, tuple(range(nd - len(axes), nd))), rest + (-1,))
        result = _vector_norm(flat, ord, (len(rest),), False)
        return np.reshape(result, _kept_shape(x.shape, axes, True)) if keepdims else result

    @function(np.linalg.matrix_norm)
    def matrix_norm(x, /, *, keepdims=False, ord="fro"):
        return norm(x, ord, (-2, -1), keepdims)
