"""Order statistics: sort, partition, quantile, percentile and median, each a permutation
(or a pick) of the entries, so that the gradient flows back through the sort; NumPy's
methods, NaN handling and result layouts.
"""

from __future__ import annotations

import numpy as np

from fluxml.ad.arrays import as_array, module_of
from fluxml.ad.core import (
    DifferentiationError,
    Tracer,
    known_none,
    raw,
    untraced,
)
from fluxml.ad.define import function
from fluxml.ad.mutation import into_out
from fluxml.ad.rules.indexing import take_along_axis
from fluxml.ad.rules.layouts import c_ordered, in_memory_order_of
from fluxml.ad.rules.reductions import _axes, _count, _reduced_shape


@function(np.sort)
def sort(a, axis=-1, kind=None, order=None, *, stable=None):
    """Sorting permutes the entries: the gradient flows back through the permutation."""
    if order is not None:
        raise DifferentiationError("np.sort(..., order=) applies to structured arrays only")
    if axis is None:
        a, axis = np.ravel(a), 0
    idx = np.argsort(raw(a), axis=axis, kind="stable")
    return in_memory_order_of(take_along_axis(a, idx, axis=axis), a)


@function(np.partition)
def partition(a, kth, axis=-1, kind="introselect", order=None):
    """NumPy's partition, as a permutation of the entries (the gradient flows back through
    it). Only the k-th entries are specified, so the permutation is matched to NumPy's own
    output: entry for entry, the values are NumPy's."""
    if order is not None:
        raise DifferentiationError("np.partition(..., order=) applies to structured arrays "
                                   "only")
    if type(kth) is Tracer:
        raise DifferentiationError("np.partition: kth must be concrete integers (not traced)")
    a = as_array(a)
    if axis is None:
        a, axis = np.ravel(a), 0
    idx = untraced(_partition_index, (a, kth, axis, kind))
    return in_memory_order_of(take_along_axis(a, idx, axis=axis), a)


def _partition_index(value, kth, axis, kind):
    """Entry ``idx[k]`` of ``value`` is at position k of NumPy's partition of it."""
    want = np.partition(value, kth, axis=axis, kind=kind)
    # match the sorted orders of both
    idx = module_of(value).empty(value.shape, np.intp)  # (a GPU's value: the GPU's)
    np.put_along_axis(idx, np.argsort(want, axis=axis, kind="stable"),
                      np.argsort(value, axis=axis, kind="stable"), axis=axis)
    return idx


@function(np.quantile)
def quantile(a, q, axis=None, out=None, overwrite_input=False, method="linear",
             keepdims=False, *, weights=None):
    """Linear interpolation between the sorted entries around each quantile (NumPy's default
    method), their midpoint ('midpoint'), or one of them ('lower', 'higher', 'nearest'); the
    gradient reaches those entries through the sort."""
    dtype, q = checked_quantiles("np.quantile", as_array(a), q, method, weights,
                                 methods=QUANTILE_METHODS)
    s, shape = _sorted_last(as_array(a), axis, keepdims)
    n = s.shape[-1]
    pos = q.ravel() * (n - 1)
    xp = module_of(s)  # (positions and weights computed on the host, used beside s: CuPy's)
    if method in ("lower", "higher", "nearest"):  # one sorted entry, in a's dtype (NumPy's)
        rounded = {"lower": np.floor, "higher": np.ceil, "nearest": np.around}[method]
        result = _nan_where_nan(s, s[..., xp.asarray(rounded(pos).astype(np.intp))])
    else:
        if method == "midpoint":  # halfway between the entries around it (or on one)
            pos = 0.5 * (np.floor(pos) + np.ceil(pos))
        lo = np.floor(pos).astype(np.intp)
        hi = np.minimum(lo + 1, n - 1)
        t = (pos - lo).astype(dtype)  # NumPy promotes by q's dtype (a Python float is weak)
        lo, hi, t = xp.asarray(lo), xp.asarray(hi), xp.asarray(t)
        result = _nan_where_nan(s, lerp(s[..., lo], s[..., hi], t))
    result = np.moveaxis(result, -1, 0)
    # C-ordered, as NumPy's (ravel(order="K") reads it later): not the layout of the sort
    return into_out(c_ordered(np.reshape(result, q.shape + shape)), out, "np.quantile")


QUANTILE_METHODS = ("linear", "lower", "higher", "nearest", "midpoint")


def checked_quantiles(name, a, q, method, weights, methods=("linear",)):
    """NumPy's checks of ``q`` for ``name`` (np.quantile or np.nanquantile, and their
    percentiles) of the traced ``a``, computed by one of ``methods``: the result's dtype and
    ``q`` as float64."""
    if method not in methods or weights is not None:
        given = f"method={method!r}" if weights is None else "weights="
        raise DifferentiationError(
            f"{name}(..., {given}) (or its percentile's) is not supported on traced arrays: "
            f"only the methods {', '.join(map(repr, methods))} without weights")
    if type(q) is Tracer:
        raise DifferentiationError(f"{name}: q must be concrete (not traced)")
    dtype = np.result_type(a.dtype, q if isinstance(q, (int, float)) else np.asarray(q))
    q = np.asarray(q, dtype=np.float64)
    if not ((q >= 0) & (q <= 1)).all():
        raise ValueError("Quantiles must be in the range [0, 1]")
    return dtype, q


def lerp(below, above, t):
    """NumPy's ``_lerp``: from the nearer end, so that ``t`` = 1 gives ``above`` exactly."""
    d = above - below
    return np.where(t >= 0.5, above - d * (1 - t), below + d * t)


@function(np.percentile)
def percentile(a, q, axis=None, out=None, overwrite_input=False, method="linear",
               keepdims=False, *, weights=None):
    return quantile(a, quantiles_of(q, "np.percentile"), axis, out, method=method,
                    keepdims=keepdims, weights=weights)


def quantiles_of(q, name):
    """Percentiles ``q`` (concrete) as quantiles: ``q / 100`` (a Python number stays one)."""
    if type(q) is Tracer:
        raise DifferentiationError(f"{name}: q must be concrete (not traced)")
    return q / 100 if isinstance(q, (int, float)) else np.true_divide(q, 100)


@function(np.median)
def median(a, axis=None, out=None, overwrite_input=False, keepdims=False):
    s, shape = _sorted_last(as_array(a), axis, keepdims)
    n = s.shape[-1]
    if n == 0:  # NumPy's NaN (with its warning) for a median of nothing
        return into_out(np.full(shape, np.nan, s.dtype), out, "np.median")
    if n % 2:
        result = s[..., n // 2]
        if np.result_type(raw(s)).kind in "biu":  # (a mean of one: NumPy's float64)
            result = result.astype(np.float64)
    else:
        result = (s[..., n // 2 - 1] + s[..., n // 2]) / 2
    result = _nan_where_nan(s, result[..., None])[..., 0]
    # a fresh array, as NumPy's (a mean's result), in the order the sort left it: not a
    # strided view of the sort, which ravel(order="A") would read in C order
    result = in_memory_order_of(result, result)
    return into_out(np.reshape(result, shape), out, "np.median")


def _sorted_last(a, axis, keepdims):
    """``a`` with the reduced axes moved last, flattened into one and sorted; and the shape
    of the reduction's result."""
    axes = _axes(axis, a.ndim)
    kept = tuple(d for d in range(a.ndim) if d not in axes)
    y = np.transpose(a, kept + axes)
    y = np.reshape(y, y.shape[:len(kept)] + (_count(a.shape, axes),))
    shape = (tuple(1 if d in axes else n for d, n in enumerate(a.shape)) if keepdims
             else _reduced_shape(a.shape, axes))
    return sort(y, axis=-1), shape


def _nan_where_nan(s, result):
    """``result`` (one entry per quantile, last axis) NaN where the sorted slice ``s`` has a
    NaN (sorted last), as NumPy's median and quantiles (a number computed from the other
    entries before, silently)."""
    if np.result_type(raw(s)).kind not in "fc":  # (integers hold no NaN: keep their dtype)
        return result
    nan = np.isnan(raw(s)[..., -1:])
    return result if known_none(nan) else np.where(nan, np.nan, result)
