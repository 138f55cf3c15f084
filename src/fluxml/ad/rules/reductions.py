"""Reductions: sum, mean, prod, max/min, var, std, cumulative sums and products, diff,
logsumexp (sort, partition, quantiles and the median are in ``orders.py``).

Every rule is exact where the function is differentiable: the product rules never divide by
``x`` (zeros included, at any order), and a maximum shared by several entries splits its
gradient evenly among them.
"""

from __future__ import annotations

import builtins
import math

import numpy as np
from numpy.lib.array_utils import normalize_axis_index, normalize_axis_tuple

from fluxml.ad.arrays import array_beside, as_array, module_of
from fluxml.ad.core import (
    DifferentiationError,
    Tracer,
    known_none,
    raw,
)
from fluxml.ad.define import defjvp, deflinear, defvjp, function, primitive
from fluxml.ad.mutation import into_out
from fluxml.ad.rules.indexing import GETITEM
from fluxml.ad.rules.layouts import in_iterator_order_of, in_memory_order_of

# --- primitives ----------------------------------------------------------------------------------

SUM = primitive("sum", lambda x, *, axis, keepdims: np.add.reduce(x, axis=axis,
                                                                  keepdims=keepdims),
                keeps_inputs=False, keeps_output=False)
defvjp(SUM, lambda g, ans, x, axis, keepdims: g if axis is None or keepdims
       else _expand(g, x.shape, axis, keepdims))
deflinear(SUM)

PROD = primitive("prod", lambda x, *, axis, keepdims: np.prod(x, axis=axis, keepdims=keepdims),
                 keeps_output=False)
defvjp(PROD, lambda g, ans, x, axis, keepdims: _expand(g, x.shape, axis, keepdims)
       * _others(x, axis))
defjvp(PROD, lambda t, ans, x, axis, keepdims: SUM(t * _others(x, axis), axis=axis,
                                                   keepdims=keepdims))

CUMSUM = primitive("cumsum", lambda x, *, axis: np.cumsum(x, axis=axis), keeps_inputs=False,
                   keeps_output=False)
defvjp(CUMSUM, lambda g, ans, x, axis: _flip(CUMSUM(_flip(g, axis), axis=axis), axis))
deflinear(CUMSUM)

CUMPROD = primitive("cumprod", lambda x, *, axis: np.cumprod(x, axis=axis))
# y_i = x_i y_{i-1}, so dy_i = x_i dy_{i-1} + t_i y_{i-1}: a linear recurrence, solved by a scan;
# the vjp runs the transposed recurrence backwards. Both are exact where x has zeros.
defvjp(CUMPROD, lambda g, ans, x, axis: _shift(ans, 1, axis, 1)
       * _recur(_shift(x, 1, axis, 0, back=True), g, axis, back=True))
defjvp(CUMPROD, lambda t, ans, x, axis: _recur(x, t * _shift(ans, 1, axis, 1), axis))


def _extremum(name, reduce):
    """max/min-like reductions: the gradient goes to the entries equal to the result, split
    evenly among ties."""
    prim = primitive(name, lambda x, *, axis, keepdims: reduce(x, axis=axis, keepdims=keepdims))
    defvjp(prim, lambda g, ans, x, axis, keepdims: _expand(g, x.shape, axis, keepdims)
           * _ties(ans, x, axis))
    defjvp(prim, lambda t, ans, x, axis, keepdims: SUM(t * _ties(ans, x, axis), axis=axis,
                                                       keepdims=keepdims))
    return prim


AMAX = _extremum("max", np.max)
AMIN = _extremum("min", np.min)
NANMAX = _extremum("nanmax", np.nanmax)
NANMIN = _extremum("nanmin", np.nanmin)


def _logsumexp(x, *, axis, keepdims):
    # (over no entries, log 0 = -inf, as scipy's and PyTorch's; np.max has no value there)
    m = np.max(x, axis=axis, keepdims=True) if x.size else 0
    m = np.where(np.isfinite(m), m, 0)
    with np.errstate(divide="ignore", over="ignore"):  # (x - m = -inf: its exp is the 0 due)
        s = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    if keepdims:
        return s
    return np.reshape(s, _reduced_shape(x.shape, axis))


LOGSUMEXP = primitive("logsumexp", _logsumexp)
defvjp(LOGSUMEXP, lambda g, ans, x, axis, keepdims: _expand(g, x.shape, axis, keepdims)
       * np.exp(x - _expand(ans, x.shape, axis, keepdims)))
defjvp(LOGSUMEXP, lambda t, ans, x, axis, keepdims: SUM(
    t * np.exp(x - _expand(ans, x.shape, axis, keepdims)), axis=axis, keepdims=keepdims))


def _half_inverse(ans):
    """``1 / (2 sqrt(v))`` where the standard deviation is positive, 0 where it is 0."""
    zero = raw(ans) == 0
    if known_none(zero):
        return 0.5 / ans
    return np.where(zero, 0, 0.5 / np.where(zero, 1, ans))


# The square root of a variance. Where the variance is 0 the standard deviation is constant
# (one entry, an axis of length 1: derivative 0) or at the tip of a cone (equal entries: not
# differentiable); the convention there is the derivative 0, a subgradient, instead of the
# 0 * inf = NaN of the plain square root.
STD_ROOT = primitive("std", np.sqrt, keeps_inputs=False)
defvjp(STD_ROOT, lambda g, ans, v: g * _half_inverse(ans))
defjvp(STD_ROOT, lambda t, ans, v: t * _half_inverse(ans))


# --- NumPy functions -----------------------------------------------------------------------------

@function(np.sum)
def sum(a, axis=None, dtype=None, out=None, keepdims=False, initial=None, where=None):
    if (type(a) is Tracer and dtype is None and out is None and initial is None
            and where is None):  # the common case, kept short
        return a._trace.process(SUM, (a,), {"axis": _axis(axis), "keepdims": bool(keepdims)})
    a = _masked(_cast(a, dtype), where, 0)
    result = _in_dtype(SUM(a, axis=_axis(axis), keepdims=bool(keepdims)), dtype)
    if initial is not None:
        result = result + initial
    return into_out(result, out, "np.sum")


@function(np.nansum)
def nansum(a, axis=None, dtype=None, out=None, keepdims=False, initial=None, where=None):
    return sum(_nan_to_zero(a), axis, dtype, out, keepdims, initial, where)


@function(np.prod)
def prod(a, axis=None, dtype=None, out=None, keepdims=False, initial=None, where=None):
    a = _masked(_cast(a, dtype), where, 1)
    result = _in_dtype(PROD(a, axis=_axis(axis), keepdims=bool(keepdims)), dtype)
    if initial is not None:
        result = result * initial
    return into_out(result, out, "np.prod")


@function(np.mean)
def mean(a, axis=None, dtype=None, out=None, keepdims=False, *, where=None):
    if dtype is None and out is None and getattr(raw(a), "dtype", None) == np.float16:
        # as NumPy's: float16 summed in float32 and divided there (in float16 a mean over
        # more than 65,504 entries divided by inf: a loss of 0 and no gradient, silently)
        return mean(a, axis, np.float32, None, keepdims, where=where).astype(np.float16)
    if (type(a) is Tracer and axis is None and dtype is None and out is None
            and not keepdims and where is None):  # the common case (a loss), kept short
        total = a._trace.process(SUM, (a,), {"axis": None, "keepdims": False})
        return total / math.prod(a.shape)
    a = _cast(a, dtype)
    axis = _axis(axis)
    count = _count(a.shape, axis) if _no_mask(where) else _mask_count(a, where, axis, keepdims)
    result = SUM(_masked(a, where, 0), axis=axis, keepdims=bool(keepdims)) / count
    return into_out(result, out, "np.mean")


@function(np.nanmean)
def nanmean(a, axis=None, dtype=None, out=None, keepdims=False, *, where=None):
    _no_where(where, "np.nanmean")
    a = _cast(a, dtype)
    axis = _axis(axis)
    count = np.sum(~np.isnan(raw(a)), axis=axis, keepdims=bool(keepdims)).astype(a.dtype)
    total = SUM(_nan_to_zero(a), axis=axis, keepdims=bool(keepdims))
    # NumPy divides the sum in place: the result is laid out as the sum
    result = in_iterator_order_of(total / count, total)
    return into_out(result, out, "np.nanmean")


@function(np.average)
def average(a, axis=None, weights=None, returned=False, *, keepdims=False):
    a = as_array(a)
    axis = _axis(axis)
    if weights is None:
        avg = mean(a, axis, keepdims=keepdims)
        scale = np.full(np.shape(raw(avg)), _count(a.shape, axis), dtype=raw(avg).dtype)
    else:
        w = as_array(weights)
        if w.shape != a.shape:
            if axis is None or np.ndim(axis) != 0 or w.ndim != 1:
                raise TypeError("np.average: weights of a shape other than a's need a single "
                                "int axis and 1-D weights")
            axis = normalize_axis_index(axis, a.ndim)
            if w.shape[0] != a.shape[axis]:
                raise ValueError("np.average: length of weights differs from the axis")
            # along axis, broadcast by the product as NumPy's (whose layouts follow)
            w = np.reshape(w, tuple(-1 if d == axis else 1 for d in range(a.ndim)))
        scale = np.sum(w, axis=axis, keepdims=keepdims)
        avg = np.sum(a * w, axis=axis, keepdims=keepdims) / scale
    if returned:
        if np.shape(raw(scale)) != np.shape(raw(avg)):
            scale = np.copy(np.broadcast_to(scale, np.shape(raw(avg))))
        return avg, scale
    return avg


@function(np.var)
def var(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False, *, where=None,
        mean=None, correction=None):
    if correction is not None:
        ddof = correction
    a = _cast(a, dtype)
    axis = _axis(axis)
    if _no_mask(where):
        count = _count(a.shape, axis)
        n = builtins.max(count - ddof, 0)
    else:  # the entries where the mask is True, per result
        count = _mask_count(a, where, axis, True)
        n = np.maximum(np.real(count) - ddof, 0)  # (a complex a's variance is real)
        if not keepdims:
            n = np.reshape(n, _reduced_shape(a.shape, axis))
    if mean is None:
        mean = SUM(_masked(a, where, 0), axis=axis, keepdims=True) / count
    d = _masked(a - mean, where, 0)
    if np.iscomplexobj(raw(d)):  # |d|^2, as NumPy's: re * re + im * im (a real variance)
        re, im = np.real(d), np.imag(d)
        square = re * re + im * im
    else:
        square = d * d
    result = SUM(square, axis=axis, keepdims=bool(keepdims)) / n
    return into_out(result, out, "np.var")


@function(np.std)
def std(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False, *, where=None, mean=None,
        correction=None):
    result = STD_ROOT(var(a, axis, dtype, None, ddof, keepdims, where=where, mean=mean,
                          correction=correction))
    return into_out(result, out, "np.std")


def _reduce_with(prim, name):
    def reduce(a, axis=None, out=None, keepdims=False, initial=None, where=None):
        """``initial`` takes part as one more entry (ties with it: shared as any tie); the
        entries a ``where`` mask leaves out are replaced by it."""
        a, axis = as_array(a), _axis(axis)
        if not _no_mask(where):
            if initial is None:
                raise ValueError(f"reduction operation '{name}' does not have an identity, "
                                 "so to use a where mask one has to specify 'initial'")
            a = _masked(a, where, initial)
        if initial is not None and _count(a.shape, axis) == 0:
            shape = (tuple(1 if d in _axes(axis, a.ndim) else n for d, n in enumerate(a.shape))
                     if keepdims else _reduced_shape(a.shape, axis))
            return into_out(np.full(shape, initial, a.dtype), out, name)
        result = prim(a, axis=axis, keepdims=bool(keepdims))
        if initial is not None:
            result = (np.maximum if prim in (AMAX, NANMAX) else np.minimum)(result, initial)
        return into_out(result, out, name)

    return reduce


amax = function(np.max, np.amax)(_reduce_with(AMAX, "np.max"))
amin = function(np.min, np.amin)(_reduce_with(AMIN, "np.min"))
nanmax = function(np.nanmax)(_reduce_with(NANMAX, "np.nanmax"))
nanmin = function(np.nanmin)(_reduce_with(NANMIN, "np.nanmin"))


@function(np.ptp)
def ptp(a, axis=None, out=None, keepdims=False):
    axis = _axis(axis)
    result = (AMAX(a, axis=axis, keepdims=bool(keepdims))
              - AMIN(a, axis=axis, keepdims=bool(keepdims)))
    return into_out(result, out, "np.ptp")


def _cumulative(prim, name, initial):
    def legacy(a, axis=None, dtype=None, out=None):
        a = _cast(a, dtype)
        if axis is None:
            a, axis = np.ravel(a), 0
        return into_out(_in_dtype(prim(a, axis=normalize_axis_index(axis, a.ndim)), dtype),
                        out, name)

    def array_api(x, /, *, axis=None, dtype=None, out=None, include_initial=False):
        x = _cast(x, dtype)
        if axis is None:
            if x.ndim != 1:
                raise ValueError(f"{name}: axis must be given for a {x.ndim}-d array")
            axis = 0
        axis = normalize_axis_index(axis, x.ndim)
        result = _in_dtype(prim(x, axis=axis), dtype)
        if include_initial:
            first = module_of(x).full(x.shape[:axis] + (1,) + x.shape[axis + 1:], initial,
                                      x.dtype)
            result = np.concatenate([first, result], axis=axis)
        return into_out(result, out, name)

    return legacy, array_api


cumsum, cumulative_sum = _cumulative(CUMSUM, "np.cumsum", 0)
cumprod, cumulative_prod = _cumulative(CUMPROD, "np.cumprod", 1)
function(np.cumsum)(cumsum)
function(np.cumprod)(cumprod)
function(np.cumulative_sum)(cumulative_sum)
function(np.cumulative_prod)(cumulative_prod)


@function(np.diff)
def diff(a, n=1, axis=-1, prepend=None, append=None):
    a = as_array(a)
    axis = normalize_axis_index(axis, a.ndim)
    parts = []
    for extra in (prepend, a, append):
        if extra is None:
            continue
        extra = array_beside(extra, a)
        if extra is not a and extra.ndim == 0:
            extra = np.broadcast_to(extra, a.shape[:axis] + (1,) + a.shape[axis + 1:])
        parts.append(extra)
    if len(parts) > 1:
        a = np.concatenate(parts, axis=axis)
    for _ in range(n):
        m = a.shape[axis]
        a = a[_slice(axis, slice(1, m))] - a[_slice(axis, slice(0, max(m - 1, 0)))]
    return a


@function(np.ediff1d)
def ediff1d(ary, to_end=None, to_begin=None):
    parts = [diff(np.ravel(as_array(ary)))]
    dtype = parts[0].dtype  # the ends are cast to the array's dtype, as NumPy does
    if to_begin is not None:
        parts.insert(0, np.ravel(_cast(array_beside(to_begin, parts[0]), dtype)))
    if to_end is not None:
        parts.append(np.ravel(_cast(array_beside(to_end, parts[0]), dtype)))
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def logsumexp(x, axis=None, keepdims=False):
    """``log(sum(exp(x), axis))`` computed without overflow; differentiable (its gradient is
    the softmax of ``x`` along ``axis``).

    >>> import numpy as np, fluxml as fl
    >>> round(float(fl.logsumexp(np.array([1000.0, 1000.0]))), 6)  # 1000 + log 2, no overflow
    1000.693147
    """
    x = as_array(x)  # (a list as NumPy's functions take it: its .size was looked up)
    axis = None if axis is None else checked_axis(x, axis, "logsumexp")
    return LOGSUMEXP(x, axis=axis, keepdims=bool(keepdims))


# --- helpers -----------------------------------------------------------------------------------

def _axis(axis):
    return tuple(axis) if isinstance(axis, list) else axis


def checked_axis(x, axis, name):
    """``axis`` as a tuple of non-negative axes of ``x``, or an error naming ``name``."""
    ndim = np.ndim(raw(x))
    try:
        if isinstance(axis, (bool, np.bool_)) or np.iterable(axis) and any(
                isinstance(a, (bool, np.bool_)) for a in axis):
            raise TypeError  # (NumPy took True for axis 1: softmax(x, axis=True) silently)
        return normalize_axis_tuple(axis, ndim)
    except (np.exceptions.AxisError, TypeError, ValueError):  # (ValueError: repeated)
        raise np.exceptions.AxisError(
            f"{name}: axis must be an axis or a tuple of distinct axes of the input (ndim "
            f"{ndim}); got {axis!r}") from None


def _axes(axis, ndim):
    """The reduced axes as a sorted tuple of non-negative ints."""
    if axis is None:
        return tuple(range(ndim))
    return tuple(sorted(normalize_axis_tuple(axis, ndim)))


def _count(shape, axis):
    return math.prod(shape[d] for d in _axes(axis, len(shape)))


def _reduced_shape(shape, axis):
    axes = _axes(axis, len(shape))
    return tuple(n for d, n in enumerate(shape) if d not in axes)


def _expand(g, shape, axis, keepdims):
    """A reduced cotangent with the reduced axes back as size 1, so that it broadcasts
    against the input (the engine broadcasts a vjp result up to its argument's shape)."""
    if keepdims or axis is None:
        return g
    axes = _axes(axis, len(shape))
    return np.reshape(g, tuple(1 if d in axes else n for d, n in enumerate(shape)))


def _ties(ans, x, axis):
    """Weights of the entries that attain the extremum (concrete: the rule is locally
    linear), summing to one along the reduced axes."""
    x = raw(x)
    top = np.reshape(raw(ans), [1 if d in _axes(axis, x.ndim) else n
                                for d, n in enumerate(x.shape)])
    hit = (x == top) | (np.isnan(x) & np.isnan(top))
    count = np.sum(hit, axis=_axes(axis, x.ndim), keepdims=True)
    return (hit / np.maximum(count, 1)).astype(x.dtype)


def _slice(axis, s):
    return (slice(None),) * axis + (s,)


def _flip(x, axis):
    return GETITEM(x, idx=_slice(axis, slice(None, None, -1)))


def _shift(x, k, axis, fill, back=False):
    """``x`` moved ``k`` places along ``axis`` (towards the end, or the start with ``back``),
    the vacated places filled with ``fill``."""
    n = x.shape[axis]
    k = builtins.min(k, n)
    pad = module_of(x).full(x.shape[:axis] + (k,) + x.shape[axis + 1:], fill, dtype=x.dtype)
    if back:
        return np.concatenate([x[_slice(axis, slice(k, n))], pad], axis=axis)
    return np.concatenate([pad, x[_slice(axis, slice(0, n - k))]], axis=axis)


def _recur(a, b, axis, back=False):
    """Solve ``r_i = a_i r_{i-1} + b_i`` (``r_{i+1}`` with ``back``), zero before the start,
    by a log-depth scan of multiplies and adds, so that it is differentiable again."""
    n = a.shape[axis]
    k = 1
    while k < n:
        b = b + a * _shift(b, k, axis, 0, back)
        if 2 * k < n:
            a = a * _shift(a, k, axis, 0, back)
        k *= 2
    return b


def _others(x, axis):
    """For each entry of ``x``, the product of the other entries along the reduced axes,
    from exclusive products on both sides (no division, so zeros are exact)."""
    axes = _axes(axis, x.ndim)
    kept = tuple(d for d in range(x.ndim) if d not in axes)
    perm = kept + axes
    y = np.transpose(x, perm)
    moved = y.shape
    y = np.reshape(y, moved[:len(kept)] + (math.prod(moved[len(kept):]),))
    last = y.ndim - 1
    left = _shift(CUMPROD(y, axis=last), 1, last, 1)
    right = _shift(_flip(CUMPROD(_flip(y, last), axis=last), last), 1, last, 1, back=True)
    others = np.reshape(left * right, moved)
    return np.transpose(others, tuple(np.argsort(perm)))


def _replace_nan(a, value):
    """``a`` with its NaNs replaced by ``value``, and where they were (None where ``a`` is
    not inexact, as NumPy's ``_replace_nan``)."""
    a = as_array(a)
    if a.dtype.kind not in "fc":
        return a, None
    nan = np.isnan(raw(a))
    # laid out as NumPy's copy (its K order: F-like for a broadcast array), which the
    # reductions of it keep
    # (np.where, not a masked write: under fl.compile the mask is a value of the program)
    replaced = a if known_none(nan) else np.where(nan, module_of(a).asarray(value, a.dtype), a)
    return in_memory_order_of(replaced, a), nan


def _nan_to_zero(a):
    """``a`` with its NaNs replaced by 0, laid out as NumPy's ``_replace_nan`` copy (its
    K order: of a broadcast array, F-like), whose layout the reductions of it keep."""
    return in_memory_order_of(_replace_nan(a, 0)[0], a)


def _cast(a, dtype):
    a = as_array(a)
    return a if dtype is None else a.astype(dtype)


def _in_dtype(result, dtype):
    """A sum's or product's ``result`` in the ``dtype`` asked for: the primitives promote
    small integers as NumPy's default does (int32 to int64), where ``dtype=`` keeps them (and
    wraps, int8: 299 is 43; the cast of the exact sum wraps alike)."""
    if dtype is None or raw(result).dtype == np.dtype(dtype):
        return result
    return result.astype(dtype)




def _no_where(where, name):
    if not _no_mask(where):
        raise DifferentiationError(
            f"{name}(..., where=) is not supported on traced arrays; mask the input with "
            "np.where(mask, x, neutral) first")


def _no_mask(where):
    return where is None or where is True


def _masked(a, where, neutral):
    """``a`` with the entries outside the ``where`` mask replaced by ``neutral``."""
    if _no_mask(where):
        return a
    return np.where(np.broadcast_to(array_beside(raw(where), a), a.shape), a, neutral)


def _mask_count(a, where, axis, keepdims):
    """How many entries the mask keeps in each reduction (a float array of a's dtype)."""
    mask = np.broadcast_to(array_beside(raw(where), a).astype(bool, copy=False), a.shape)
    return np.sum(mask, axis=axis, keepdims=bool(keepdims)).astype(a.dtype)
