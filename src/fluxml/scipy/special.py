"""Differentiable ``scipy.special`` functions that SciPy writes in Python (converting their
inputs with ``np.asarray``): ``polygamma``, ``multigammaln`` and ``logsumexp``. The special ufuncs
(``erf``, ``gammaln``, ``digamma`` ...) are recorded when called on traced arrays and need no
replacement (``ad/rules/special.py``).

>>> import numpy as np, fluxml as fl
>>> from fluxml.scipy.special import polygamma
>>> g = fl.gradient(lambda x: np.sum(polygamma(1, x)), np.array([1.0]))[0]
>>> bool(np.allclose(g, -2 * 1.2020569031595942))  # psi''(1) = -2 zeta(3)
True
"""

from __future__ import annotations

import math

import numpy as np

from fluxml._checks import positive_int
from fluxml.ad.core import DifferentiationError, Tracer, raw
from fluxml.ad.rules.reductions import logsumexp as _logsumexp
from fluxml.ad.rules.special import POLYGAMMA
from fluxml.scipy._load import scipy_module

__all__ = ["logsumexp", "multigammaln", "polygamma"]


def logsumexp(a, axis=None, b=None, keepdims=False, return_sign=False):
    """``log(sum(b * exp(a), axis))`` without overflow (``scipy.special.logsumexp``, which a
    Zygote user knows as LogExpFunctions' ``logsumexp``), differentiable to any order in
    ``a`` and ``b``. ``a`` and ``b`` may be numbers or lists, ``b`` broadcasts against ``a``
    and may be negative: as SciPy's, a negative sum gives NaN (``return_sign``, its sign, is
    not supported). A full reduction of plain arrays is a NumPy scalar, as SciPy's.

    >>> import numpy as np
    >>> round(float(logsumexp(np.array([0.0, 0.0]), b=np.array([1.0, 3.0]))), 6)  # log 4
    1.386294
    """
    if return_sign:
        raise DifferentiationError("fluxml.scipy.special.logsumexp: return_sign=True (the "
                                   "sign of a sum with negative weights) is not supported")
    a = _as_array(a)
    out = _logsumexp(a, axis=axis, keepdims=keepdims) if b is None else \
        _weighted(a, _as_array(b), axis, keepdims)
    return out[()] if type(out) is np.ndarray and out.ndim == 0 else out


def _as_array(x):
    """A number or list as an array (SciPy's ``np.asarray``); arrays, traced or not, as they
    are."""
    return x if isinstance(x, (np.ndarray, Tracer)) else np.asarray(x)


def _weighted(a, b, axis, keepdims):
    """``log(sum(b * exp(a - m))) + m``, with ``m`` the largest ``a`` of a non-zero weight (a
    constant: the result does not depend on it). The weights multiply ``exp``, so the
    derivative in ``b_i`` is ``exp(a_i - result)``, finite at a zero weight (``a + log(b)``
    had ``softmax / b = 0 * inf`` there: NaN)."""
    dtype = np.result_type(a, b)
    if np.result_type(a) != dtype:  # computed in the result's precision, as SciPy's
        a = a.astype(dtype)
    weighted = raw(b) != 0  # SciPy's mask: a zero weight drops its term, whatever its a
    m = np.max(np.where(weighted, raw(a), -np.inf), axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    d = a - m
    # a zero weight's exponent may exceed m by any amount: capped below overflow, its term
    # is 0 * a finite number (the derivative in its weight, exp(d), is capped there too)
    cap = np.log(np.finfo(np.result_type(d)).max)
    d = np.where(weighted, d, np.fmin(d, cap))
    with np.errstate(divide="ignore", invalid="ignore"):  # log 0 = -inf; a negative sum NaN
        s = np.log(np.sum(b * np.exp(d), axis=axis, keepdims=keepdims))
    return s + (m if keepdims else np.squeeze(m, axis=axis))


def polygamma(n, x):
    """The n-th derivative of the digamma function at ``x`` (``scipy.special.polygamma``);
    the order ``n`` (an integer or integer array) gets no derivative.

    >>> import numpy as np
    >>> float(polygamma(0, np.array(1.0)))  # digamma(1) = -Euler's gamma
    -0.5772156649015329
    """
    if type(n) is Tracer:
        raise DifferentiationError(
            "fluxml.scipy.special.polygamma: the order n is an integer and has no derivative; "
            "pass it as a plain int or integer array, not a traced value")
    scipy_module("special")
    n = np.asarray(n)
    if n.dtype.kind not in "iuf" or not np.all(n == np.round(n)) or np.any(n < 0):
        raise ValueError(f"polygamma: the order n must be a non-negative integer (or an "
                         f"array of them); got {n!r}")
    return POLYGAMMA(x, n=n.astype(int) if n.ndim else int(n))


def multigammaln(a, d: int):
    """The log of the multivariate gamma function of dimension ``d``,
    ``d(d-1)/4 log(pi) + sum_j gammaln(a - j/2)`` (``scipy.special.multigammaln``); needs
    ``a > (d - 1) / 2``.

    >>> import numpy as np
    >>> bool(np.isclose(multigammaln(np.array(3.0), 1), np.log(2.0)))
    True
    """
    sp = scipy_module("special")
    d = positive_int("multigammaln", "d (the dimension)", d)
    if np.any(np.asarray(raw(a)) <= (d - 1) / 2):
        raise ValueError(f"multigammaln: needs a > (d - 1) / 2 = {(d - 1) / 2} everywhere, "
                         f"got min(a) = {np.min(raw(a))}")
    out = d * (d - 1) / 4 * math.log(math.pi)
    for j in range(d):
        out = out + sp.gammaln(a - j / 2)
    return out
