"""NaN-ignoring reductions beyond ``nansum``/``nanmean``/``nanmax``/``nanmin`` (in
``reductions``): ``nanprod``, ``nancumsum``, ``nancumprod``, ``nanvar``, ``nanstd``, and the
positions ``nanargmax``/``nanargmin`` (no derivative).

NumPy computes each as another reduction of a copy of the input with its NaNs replaced (0 for
sums, 1 for products: ``_replace_nan``); so do these rules, which makes their values NumPy's
to the bit and gives the replaced entries no derivative (constants in NumPy's computation too).
``nanvar`` follows NumPy's steps: the mean over the non-NaN entries of each slice, the squared
deviations with the NaNs' set to 0, their sum over the count less ``ddof``, NaN (with NumPy's
warning) where that is not positive.
"""

from __future__ import annotations

import warnings

import numpy as np

from fluxml.ad.core import Tracer, known_none, raw
from fluxml.ad.define import function, nondifferentiable
from fluxml.ad.mutation import into_out
from fluxml.ad.rules.indexing import SETITEM
from fluxml.ad.rules.reductions import (
    STD_ROOT,
    SUM,
    _array,
    _axis,
    _cast,
    _masked,
    _no_mask,
    cumprod,
    cumsum,
    prod,
    var,
)

nondifferentiable(np.nanargmax, np.nanargmin)  # positions


@function(np.nanprod)
def nanprod(a, axis=None, dtype=None, out=None, keepdims=False, initial=None, where=None):
    return prod(_replace_nan(a, 1)[0], axis, dtype, out, keepdims, initial, where)


@function(np.nancumsum)
def nancumsum(a, axis=None, dtype=None, out=None):
    return cumsum(_replace_nan(a, 0)[0], axis, dtype, out)


@function(np.nancumprod)
def nancumprod(a, axis=None, dtype=None, out=None):
    return cumprod(_replace_nan(a, 1)[0], axis, dtype, out)


@function(np.nanvar)
def nanvar(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False, *, where=None,
           mean=None, correction=None):
    result = _nanvar(a, axis, dtype, ddof, keepdims, where, mean, correction)
    return into_out(result, out, "np.nanvar")


@function(np.nanstd)
def nanstd(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False, *, where=None,
           mean=None, correction=None):
    result = STD_ROOT(_nanvar(a, axis, dtype, ddof, keepdims, where, mean, correction))
    return into_out(result, out, "np.nanstd")


def _nanvar(a, axis, dtype, ddof, keepdims, where, mean, correction):
    arr, nan = _replace_nan(a, 0)
    if nan is None:  # no NaNs possible: NumPy calls np.var
        return var(arr, axis, dtype, None, ddof, keepdims, where=where, mean=mean,
                   correction=correction)
    if dtype is not None and np.dtype(dtype).kind not in "fc":
        raise TypeError("If a is inexact, then dtype must be inexact")
    if correction is not None:
        if ddof != 0:
            raise ValueError("ddof and correction can't be provided simultaneously.")
        ddof = correction
    axis = _axis(axis)
    keep = ~nan if _no_mask(where) else ~nan & np.broadcast_to(raw(where), nan.shape)
    count = np.sum(keep, axis=axis, keepdims=True)
    arr = _masked(arr, where, 0)
    if mean is None:
        total = SUM(_cast(arr, dtype), axis=axis, keepdims=True)
        # (NumPy divides in place: in total's dtype; an all-NaN slice's mean, NaN in NumPy,
        # meets no entry below, so 0 here: no 0/0 warning, no NaN in the derivatives)
        mean = total / np.maximum(count, 1).astype(total.dtype)
    # NumPy subtracts into its copy (arr's dtype), then sets the NaNs' deviations to 0
    d = _cast(arr - mean, arr.dtype)
    d = np.where(keep, d, 0)
    square = np.real(d * np.conj(d)) if d.dtype.kind == "c" else d * d
    result = SUM(_cast(square, dtype), axis=axis, keepdims=bool(keepdims))
    dof = count - ddof if keepdims else np.reshape(count, np.shape(raw(result))) - ddof
    bad = dof <= 0
    if type(bad) is not Tracer and bad.any():
        warnings.warn("Degrees of freedom <= 0 for slice.", RuntimeWarning, stacklevel=4)
    if known_none(bad):
        return result / dof.astype(result.dtype)
    return np.where(bad, np.nan, result / np.where(bad, 1, dof).astype(result.dtype))


def _replace_nan(a, value):
    """``a`` with its NaNs replaced by ``value``, and where they were (None where ``a`` is
    not inexact, as NumPy's ``_replace_nan``)."""
    a = _array(a)
    if a.dtype.kind not in "fc":
        return a, None
    nan = np.isnan(raw(a))
    return (a if known_none(nan) else SETITEM(a, value, idx=nan, inplace=False)), nan
