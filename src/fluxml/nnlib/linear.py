"""The affine map of a dense layer, ``x @ weight.T + bias``, as one primitive.

Written out, the map records three tape nodes (a transpose, a product, a sum) and its backward
pass runs four rules (two of them transposes, one a sum over the broadcast batch axes). For a
small layer that bookkeeping costs more than the arithmetic, so eagerly it is one primitive with
one rule per argument: ``dx = g @ weight``, ``dweight = g.T @ x``, ``dbias = sum of g over the
batch``. The rules are NumPy calls on the cotangent and the saved arguments, so they are
recorded again under an outer transform (any order), and forward mode substitutes each tangent
for its argument (the map is linear in each argument given the others, up to the bias).

Under ``fl.compile`` the composite is recorded instead: the compiler fuses, lays out and
lowers (XLA) products and sums itself, and would see one opaque call in a primitive.

>>> import numpy as np, fluxml as fl
>>> fl.nnlib.linear(np.ones((2, 3)), np.ones((4, 3)), np.arange(4.0))
array([[3., 4., 5., 6.],
       [3., 4., 5., 6.]])
"""

from __future__ import annotations

import math

import numpy as np

from fluxml.ad.core import COMPILING
from fluxml.ad.define import defjvp, defvjp, primitive
from fluxml.nnlib import windows as win


def _rows(a):
    """``a`` ``(..., m)`` as a matrix ``(rows, m)``: the leading axes as one (their product,
    not -1, which NumPy cannot resolve where ``m`` is 0)."""
    return np.reshape(a, (math.prod(a.shape[:-1]), a.shape[-1]))


def _product(x, w):
    """``x @ w.T``; leading axes of ``x`` beyond one are one batch: one 2-D product (NumPy
    would run a stack of smaller ones, ~6% slower each)."""
    if x.ndim > 2:
        rows = _rows(x) @ w.T
        return np.reshape(rows, x.shape[:-1] + w.shape[:1])
    return x @ w.T


def _impl(x, w, b):
    y = _product(x, w)
    if b is None:
        return y
    if type(y) is np.ndarray and b.dtype == y.dtype:
        y += b  # y is a new array: no second allocation
        return y
    return y + b  # promoted as the composite (a float64 bias on float32 input); other libraries


def _vjp_x(g, ans, x, w, b):
    return _product(g, w.T)


def _vjp_w(g, ans, x, w, b):
    if x.ndim == 1:  # (in,) -> (out,): an outer product
        return g[:, None] * x
    if x.ndim > 2:  # leading axes are one batch: one product, no stack of them to sum
        x, g = _rows(x), _rows(g)
    return g.T @ x


def _vjp_b(g, ans, x, w, b):
    if g.ndim == 1:
        return g
    if g.ndim > 2:
        g = _rows(g)
    return g.sum(axis=0)


LINEAR = primitive("linear", _impl, keeps_inputs=True, keeps_output=False)
defvjp(LINEAR, _vjp_x, _vjp_w, _vjp_b)
defjvp(LINEAR,
       lambda t, ans, x, w, b: t @ w.T,
       lambda t, ans, x, w, b: x @ t.T,
       lambda t, ans, x, w, b: t)


def linear(x, weight, bias=None):
    """``x @ weight.T + bias`` (PyTorch's ``F.linear``): ``x`` shaped ``(..., in)``,
    ``weight`` ``(out, in)``, ``bias`` ``(out,)`` or None; returns ``(..., out)``. One
    primitive with its own rules outside ``fl.compile`` (see the module's docstring).

    >>> import numpy as np, fluxml as fl
    >>> fl.nnlib.linear(np.array([1.0, 2.0]), np.array([[1.0, 1.0]]))
    array([3.])
    """
    win.need_arrays("linear", x=x, weight=weight, bias=bias)
    w_shape, x_shape = np.shape(weight), np.shape(x)
    if len(w_shape) != 2:
        raise ValueError(f"linear: weight must be a matrix (out, in); got shape {w_shape}")
    if not x_shape or x_shape[-1] != w_shape[1]:
        raise ValueError(f"linear: x must be shaped (..., {w_shape[1]}) for a weight of shape "
                         f"{w_shape}; got {x_shape}")
    if bias is not None and np.shape(bias) != w_shape[:1]:
        raise ValueError(f"linear: bias must have shape ({w_shape[0]},) for a weight of shape "
                         f"{w_shape}; got {np.shape(bias)}")
    return affine(x, weight, bias)


def affine(x, weight, bias):
    """:func:`linear` without its checks (layers check their input themselves)."""
    if COMPILING:
        y = x @ weight.T
        return y if bias is None else y + bias
    return LINEAR(x, weight, bias)
