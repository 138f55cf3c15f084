"""NaN-ignoring reductions beyond ``nansum``/``nanmean``/``nanmax``/``nanmin`` (in
``reductions``): ``nanprod``, ``nancumsum``, ``nancumprod``, ``nanvar``, ``nanstd``,
``nanmedian``, ``nanquantile``, ``nanpercentile``, and the positions
``nanargmax``/``nanargmin`` (no derivative).

NumPy computes each as another reduction of a copy of the input with its NaNs replaced (0 for
sums, 1 for products: ``_replace_nan``); so do these rules, which makes their values NumPy's
to the bit and gives the replaced entries no derivative (constants in NumPy's computation too).
The median and quantiles of each slice are those of its non-NaN entries, the first ones of
the sorted slice (NaNs sort last), interpolated as ``np.quantile``'s linear method; an all-NaN
slice gives NaN with NumPy's warning. ``nanvar`` follows NumPy's steps: the mean over the
non-NaN entries of each slice, the squared deviations with the NaNs' set to 0, their sum over
the count less ``ddof``, NaN (with NumPy's warning) where that is not positive.
"""

from __future__ import annotations

import warnings

import numpy as np

from fluxml.ad.arrays import array_beside, as_array
from fluxml.ad.core import Tracer, known_none, raw
from fluxml.ad.define import function, nondifferentiable
from fluxml.ad.mutation import into_out
from fluxml.ad.rules.indexing import take_along_axis
from fluxml.ad.rules.layouts import (
    _memory_axes,
    c_ordered,
    in_iterator_order_of,
    laid_out,
)
from fluxml.ad.rules.orders import _sorted_last, checked_quantiles, lerp, quantiles_of
from fluxml.ad.rules.reductions import (
    STD_ROOT,
    SUM,
    _axes,
    _axis,
    _cast,
    _masked,
    _no_mask,
    _replace_nan,
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


@function(np.nanmedian)
def nanmedian(a, axis=None, out=None, overwrite_input=False, keepdims=False):
    if np.size(raw(a)) == 0:  # NumPy: nanmean's NaNs (whatever q for nanquantile)
        return np.nanmean(a, axis, out=out, keepdims=keepdims)
    s, shape, count = _sorted_counts(a, axis, keepdims)
    low = _at(s, (count - 1) // 2)
    high = _at(s, count // 2)
    result = np.where(count % 2 == 1, low, (low + high) / 2)  # (NumPy: their mean)
    result = _all_nan(result, count)
    # laid out as NumPy's: a masked median in the input's order of the kept axes (below 600
    # entries a slice), else apply_along_axis's C array
    a = raw(as_array(a))
    kept = [d for d in range(a.ndim) if d not in _axes(axis, a.ndim)]
    if s.shape[-1] < 600 and kept:
        order = _memory_axes([a.shape[d] for d in kept], [a.strides[d] for d in kept])
        result = laid_out(result, order)
    else:
        result = c_ordered(result)
    return into_out(np.reshape(result, shape), out, "np.nanmedian")


@function(np.nanquantile)
def nanquantile(a, q, axis=None, out=None, overwrite_input=False, method="linear",
                keepdims=False, *, weights=None):
    a = as_array(a)
    if a.dtype.kind == "c":
        raise TypeError("a must be an array of real numbers")
    dtype, q = checked_quantiles("np.nanquantile", a, q, method, weights)
    if a.size == 0:
        return nanmedian(a, axis, out, keepdims=keepdims)
    s, shape, count = _sorted_counts(a, axis, keepdims)
    q = array_beside(q, count)  # (a GPU's counts: the quantiles there too)
    pos = q.reshape((-1,) + (1,) * count.ndim) * (count - 1)  # (quantile, slice...)
    lo = np.floor(pos).astype(np.intp)
    hi = np.minimum(lo + 1, count - 1)
    t = (pos - lo).astype(dtype)
    result = _all_nan(lerp(_at(s, lo), _at(s, hi), t), count)
    # laid out as NumPy's: C with the quantiles last, moved to the front
    result = np.reshape(c_ordered(np.moveaxis(result, 0, -1)), shape + q.shape)
    moved = range(len(shape), len(shape) + q.ndim)
    return into_out(np.moveaxis(result, moved, range(q.ndim)), out, "np.nanquantile")


@function(np.nanpercentile)
def nanpercentile(a, q, axis=None, out=None, overwrite_input=False, method="linear",
                  keepdims=False, *, weights=None):
    return nanquantile(a, quantiles_of(q, "np.nanpercentile"), axis, out, method=method,
                       keepdims=keepdims, weights=weights)


def _sorted_counts(a, axis, keepdims):
    """The slices sorted (reduced axes last, NaNs last), the result's shape, and how many
    entries of each slice are not NaN."""
    s, shape = _sorted_last(as_array(a), axis, keepdims)
    return s, shape, np.sum(~np.isnan(raw(s)), axis=-1)


def _at(s, k):
    """``s[..., k]`` for positions ``k`` per slice (broadcast over leading quantile axes);
    an empty slice's position -1 reads entry 0 (its NaN result is set afterwards)."""
    k = np.maximum(k, 0)
    lead = k.ndim - (s.ndim - 1)
    s = np.reshape(s, (1,) * lead + s.shape)
    k = np.broadcast_to(k, np.broadcast_shapes(k.shape, s.shape[:-1]))
    return take_along_axis(np.broadcast_to(s, k.shape + s.shape[-1:]), k[..., None], -1)[..., 0]


def _all_nan(result, count):
    empty = count == 0
    if known_none(empty):
        return result
    warnings.warn("All-NaN slice encountered", RuntimeWarning, stacklevel=4)
    return np.where(empty, np.nan, result)


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
    keep = ~nan if _no_mask(where) else ~nan & np.broadcast_to(array_beside(raw(where), nan),
                                                              nan.shape)
    count = np.sum(keep, axis=axis, keepdims=True)
    arr = _masked(arr, where, 0)
    if mean is None:
        total = SUM(_cast(arr, dtype), axis=axis, keepdims=True)
        # (NumPy divides in place: in total's dtype; an all-NaN slice's mean, NaN in NumPy,
        # meets no entry below, so 0 here: no 0/0 warning, no NaN in the derivatives)
        mean = total / np.maximum(count, 1).astype(total.dtype)
    # NumPy subtracts into its copy (arr's dtype), then sets the NaNs' deviations to 0
    d = _cast(arr - mean, arr.dtype)
    d = in_iterator_order_of(np.where(keep, d, 0), arr)  # (NumPy's copyto into its copy)
    square = np.real(d * np.conj(d)) if d.dtype.kind == "c" else d * d
    result = SUM(_cast(square, dtype), axis=axis, keepdims=bool(keepdims))
    dof = count - ddof if keepdims else np.reshape(count, np.shape(raw(result))) - ddof
    bad = dof <= 0
    if type(bad) is not Tracer and bad.any():
        warnings.warn("Degrees of freedom <= 0 for slice.", RuntimeWarning, stacklevel=4)
    # (NumPy divides the sum in place: laid out as the sum)
    if known_none(bad):
        return in_iterator_order_of(result / dof.astype(result.dtype), result)
    return in_iterator_order_of(
        np.where(bad, np.nan, result / np.where(bad, 1, dof).astype(result.dtype)), result)
