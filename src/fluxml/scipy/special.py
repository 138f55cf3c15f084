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
    Zygote user knows as LogExpFunctions' ``logsumexp``); the weights ``b`` must be
    non-negative (``log(sum(exp(a + log(b))))``), and ``return_sign`` (for negative
    weights) is not supported. Its gradient is the softmax of ``a + log(b)``.

    >>> import numpy as np
    >>> round(float(logsumexp(np.array([0.0, 0.0]), b=np.array([1.0, 3.0]))), 6)  # log 4
    1.386294
    """
    if return_sign:
        raise DifferentiationError("fluxml.scipy.special.logsumexp: return_sign=True (the "
                                   "sign of a sum with negative weights) is not supported")
    if b is not None:
        if np.any(np.asarray(raw(b)) < 0):
            raise DifferentiationError("fluxml.scipy.special.logsumexp: the weights b must be "
                                       "non-negative (negative ones need return_sign)")
        with np.errstate(divide="ignore"):  # a zero weight: log 0 = -inf drops its term
            a = a + np.log(b)
    return _logsumexp(a, axis=axis, keepdims=keepdims)


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
