"""softmax, logsoftmax and logsumexp over any axis, stable at any finite input.

Each is one primitive with a hand-written rule: ``softmax``'s vjp is
``y * (g - sum(g * y))``, ``logsoftmax``'s ``g - softmax * sum(g)``, both written with NumPy
calls so that they are differentiated again at higher order. ``logsumexp`` is the engine's
(``fl.logsumexp``, whose gradient is the softmax). The default axis is the last one, the
feature axis of batch-first arrays (Flux's ``dims=1``).

>>> import numpy as np, fluxml as fl
>>> fl.softmax(np.array([[1000.0, 1000.0]]))
array([[0.5, 0.5]])
"""

from __future__ import annotations

import numpy as np

from fluxml.ad.core import raw
from fluxml.ad.define import defjvp, defvjp, primitive
from fluxml.ad.rules.reductions import checked_axis as _axis
from fluxml.ad.rules.reductions import logsumexp

__all__ = ["logsoftmax", "logsumexp", "softmax"]


def _shifted(x, axis):
    """``x - max(x, axis)`` as a fresh array. A row whose maximum is +inf becomes 0 at its +inf
    entries and -inf elsewhere: its softmax is the limit, shared evenly by the +inf entries
    (``softmax([2, inf]) = [0, 1]``, ``[inf, inf]`` gives ``[0.5, 0.5]``, as NNlib's; the plain
    shift gave inf - inf = NaN beside a 0). A row of -inf stays -inf (its softmax is NaN)."""
    if x.size == 0:  # no entries: nothing to shift (np.max has no value over an empty axis)
        return x.copy()
    m = np.max(x, axis=axis, keepdims=True)
    if np.all(np.isfinite(m)):
        with np.errstate(over="ignore"):  # -3e38 - 3e38 = -inf in float32: its exp is the 0 due
            return x - m
    top = m == np.inf
    with np.errstate(over="ignore", invalid="ignore"):
        s = x - np.where(np.isfinite(m), m, 0)
    if np.any(top):
        s = np.where(top, np.where(x == np.inf, 0, -np.inf).astype(s.dtype), s)
    return s


def _softmax_impl(x, *, axis):
    e = _shifted(x, axis)
    np.exp(e, out=e)
    e /= np.sum(e, axis=axis, keepdims=True)
    return e


def _logsoftmax_impl(x, *, axis):
    s = _shifted(x, axis)
    with np.errstate(divide="ignore"):  # a row of -inf: log 0 = -inf, as the limit
        s -= np.log(np.sum(np.exp(s), axis=axis, keepdims=True))
    return s


SOFTMAX = primitive("softmax", _softmax_impl, keeps_inputs=False)
defvjp(SOFTMAX, lambda g, ans, x, axis: ans * (g - np.sum(g * ans, axis=axis, keepdims=True)))
defjvp(SOFTMAX, lambda t, ans, x, axis: ans * (t - np.sum(t * ans, axis=axis, keepdims=True)))

LOGSOFTMAX = primitive("logsoftmax", _logsoftmax_impl, keeps_inputs=False)
defvjp(LOGSOFTMAX,
       lambda g, ans, x, axis: g - np.exp(ans) * np.sum(g, axis=axis, keepdims=True))
defjvp(LOGSOFTMAX,
       lambda t, ans, x, axis: t - np.sum(np.exp(ans) * t, axis=axis, keepdims=True))


def _float(x, name):
    """``x`` as a float array: integers and booleans as float64; complex refused (the cast
    dropped the imaginary part, with only NumPy's ComplexWarning)."""
    value = raw(x)
    if getattr(value, "dtype", None) is None:
        value = x = np.asarray(x)
        if value.dtype.kind != "c":
            return x.astype(np.float64)
    if value.dtype.kind == "c":
        raise TypeError(f"{name} takes real numbers; got dtype {value.dtype} (apply it to the "
                        "real part, or to np.abs(x), for complex scores)")
    if value.dtype.kind not in "f":
        return x.astype(np.float64)
    return x


def softmax(x, axis: int | tuple[int, ...] = -1):
    """``exp(x) / sum(exp(x), axis)``, computed from ``x - max(x)`` (no overflow). A row
    holding +inf gives the limit, shared by its +inf entries (``[2, inf] -> [0, 1]``, as NNlib's;
    PyTorch's is NaN); NaN in a row, or a row of -inf only, gives NaN.

    >>> import numpy as np, fluxml as fl
    >>> fl.softmax(np.log(np.array([1.0, 3.0])))
    array([0.25, 0.75])
    """
    x = _float(x, "softmax")
    return SOFTMAX(x, axis=_axis(x, axis, "softmax"))


def logsoftmax(x, axis: int | tuple[int, ...] = -1):
    """``x - logsumexp(x, axis)``: the log of ``softmax``, accurate where it underflows.

    >>> import numpy as np, fluxml as fl
    >>> fl.logsoftmax(np.array([0.0, -1000.0])).round(6)
    array([    0., -1000.])
    """
    x = _float(x, "logsoftmax")
    return LOGSOFTMAX(x, axis=_axis(x, axis, "logsoftmax"))
