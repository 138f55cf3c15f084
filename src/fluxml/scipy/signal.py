"""Differentiable ``scipy.signal.convolve`` and ``correlate``, in any number of dimensions,
modes ``full``, ``same`` and ``valid``.

Convolution is linear in each argument: its jvp substitutes the tangent. Its vjp pads the
cotangent into the ``full`` output (``same`` and ``valid`` are centred slices of it) and
takes the ``valid`` convolution with the other argument flipped along every axis:
``ga = convolve(g_full, flip(b), 'valid')``. ``correlate(a, b)`` is
``convolve(a, flip(conj(b)))``, in every mode (as SciPy computes it).

>>> import numpy as np, fluxml as fl
>>> from fluxml.scipy.signal import convolve
>>> fl.gradient(lambda a: np.sum(convolve(a, np.array([1.0, 2.0]))), np.ones(3))[0]
array([3., 3., 3.])
"""

from __future__ import annotations

import numpy as np

from fluxml.ad.core import raw
from fluxml.ad.define import deflinear, defvjp, primitive
from fluxml.scipy._load import scipy_module

__all__ = ["convolve", "correlate"]

_MODES = ("full", "same", "valid")

CONVOLVE = primitive("convolve", lambda a, b, *, mode, method: scipy_module("signal").convolve(
    a, b, mode=mode, method=method))
deflinear(CONVOLVE)


def _full(g, a, b):
    """The cotangent of the ``full`` output: ``g`` zero-padded around its centred place."""
    full = [m + n - 1 for m, n in zip(np.shape(a), np.shape(b))]
    start = [(f - s) // 2 for f, s in zip(full, np.shape(g))]
    if list(np.shape(g)) == full:
        return g
    return np.pad(g, [(s, f - n - s) for s, f, n in zip(start, full, np.shape(g))])


def _convolve_vjp(other_first):
    def rule(g, ans, a, b, *, mode, method):
        other = b if other_first else a
        if np.size(a) == 0 or np.size(b) == 0:  # an empty output: nothing flows back
            mine = raw(a if other_first else b)
            return np.zeros(mine.shape, np.result_type(mine, raw(g)))
        return CONVOLVE(_full(g, a, b), np.flip(other), mode="valid", method=method)

    return rule


defvjp(CONVOLVE, _convolve_vjp(True), _convolve_vjp(False))


def _check(name, a, b, mode):
    if mode not in _MODES:
        raise ValueError(f"{name}: mode must be 'full', 'same' or 'valid', got {mode!r}")
    if np.ndim(a) != np.ndim(b):
        raise ValueError(f"{name}: in1 and in2 must have the same number of dimensions, got "
                         f"shapes {np.shape(a)} and {np.shape(b)}")


def convolve(in1, in2, mode: str = "full", method: str = "auto"):
    """The n-dimensional convolution of ``in1`` and ``in2`` (``scipy.signal.convolve``).

    >>> import numpy as np
    >>> convolve(np.array([1.0, 2.0, 3.0]), np.array([0.0, 1.0]), mode="same")
    array([0., 1., 2.])
    """
    _check("convolve", in1, in2, mode)
    return CONVOLVE(in1, in2, mode=mode, method=method)


def correlate(in1, in2, mode: str = "full", method: str = "auto"):
    """The n-dimensional cross-correlation of ``in1`` and ``in2``
    (``scipy.signal.correlate``).

    >>> import numpy as np
    >>> correlate(np.array([1.0, 2.0, 3.0]), np.array([0.0, 1.0]), mode="valid")
    array([2., 3.])
    """
    _check("correlate", in1, in2, mode)
    in2 = np.conj(in2) if np.iscomplexobj(raw(in2)) else in2
    return CONVOLVE(in1, np.flip(in2), mode=mode, method=method)
