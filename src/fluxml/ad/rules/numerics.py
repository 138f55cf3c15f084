"""Numerical routines scientists reach for: trapezoid, gradient, unwrap, convolve/correlate,
interp, the polynomial helpers, cross, linspace/logspace/geomspace, cov/corrcoef,
apply_along_axis, apply_over_axes.

Every entry is a *composite*: NumPy's own algorithm, same formulas in the same order (so the
values match NumPy's), written with operations that already have rules, so derivatives of any
order follow. Concrete values (``raw``) only make piecewise-constant decisions: which segment
``interp`` uses, whether coordinates are evenly spaced, which steps are zero.
"""

from __future__ import annotations

import operator
import warnings

import numpy as np
from numpy.lib.array_utils import normalize_axis_index, normalize_axis_tuple

from fluxml.ad.arrays import array_beside, as_array, as_arrays, module_of
from fluxml.ad.core import (
    DifferentiationError,
    Tracer,
    known_none,
    raw,
    untraced,
)
from fluxml.ad.define import function
from fluxml.ad.rules.indexing import indexable_by
from fluxml.ad.rules.layouts import c_ordered, in_memory_order_of

# --- integration and differentiation of samples --------------------------------------------------

@function(np.trapezoid, *([np.trapz] if hasattr(np, "trapz") else []))
def trapezoid(y, x=None, dx=1.0, axis=-1):
    y = as_array(y)
    if x is None:
        d = dx
    else:
        x = as_array(x)
        if x.ndim == 1:
            d = np.diff(x)
            shape = [1] * y.ndim
            shape[axis] = d.shape[0]
            d = np.reshape(d, shape)
        else:
            d = np.diff(x, axis=axis)
    upper = _along(y.ndim, axis, slice(1, None))
    lower = _along(y.ndim, axis, slice(None, -1))
    return np.sum(d * (y[upper] + y[lower]) / 2.0, axis=axis)


@function(np.gradient)
def gradient(f, *varargs, axis=None, edge_order=1):
    """Second-order central differences inside, one-sided differences of ``edge_order`` at the
    ends; spacings are scalars or coordinates (both may be traced)."""
    f = as_array(f)
    axes = tuple(range(f.ndim)) if axis is None else normalize_axis_tuple(axis, f.ndim)
    if not varargs:
        spacings = [1.0] * len(axes)
    elif len(varargs) == 1 and np.ndim(varargs[0]) == 0:
        spacings = list(varargs) * len(axes)
    elif len(varargs) == len(axes):
        spacings = [_spacing(d, f.shape[ax]) for d, ax in zip(varargs, axes)]
    else:
        raise TypeError("invalid number of arguments")
    if edge_order > 2:
        raise ValueError("'edge_order' greater than 2 not supported")
    otype = f.dtype
    if not np.issubdtype(otype, np.inexact):
        if otype.kind in "mM":
            raise DifferentiationError("np.gradient of datetime or timedelta values is not "
                                       "supported with traced spacings")
        if np.issubdtype(otype, np.integer):
            f = f.astype(np.float64)
        otype = np.dtype(np.float64)
    # each laid out as NumPy's np.empty_like(f) that it fills (a broadcast f's K order)
    outs = [in_memory_order_of(_cast(_gradient_along(f, ax, h, edge_order), otype), f)
            for ax, h in zip(axes, spacings)]
    return outs[0] if len(axes) == 1 else tuple(outs)


@function(np.unwrap)
def unwrap(p, discont=None, axis=-1, *, period=2 * np.pi):
    """NumPy's algorithm step by step: each jump's distance to the nearest multiple of
    ``period`` (``np.mod``, whose derivative in ``p`` is 1: the corrections are piecewise
    constant in ``p``, and linear in a traced ``period``), NumPy's tie rule and integer
    arithmetic, the corrections summed along ``axis`` onto a copy of ``p``."""
    p = as_array(p)
    dd = np.diff(p, axis=axis)
    if discont is None:
        discont = period / 2
    rest = _along(p.ndim, axis, slice(1, None))
    dtype = np.result_type(raw(dd), raw(period))
    if np.issubdtype(dtype, np.integer):
        high, rem = divmod(period, 2)
        ambiguous = rem == 0
    else:
        high, ambiguous = period / 2, True
    low = -high
    ddmod = np.mod(dd - low, period) + low
    if ambiguous:  # a jump of exactly period/2 up keeps its sign (NumPy's copyto(where=))
        ddmod = np.where((raw(ddmod) == raw(low)) & (raw(dd) > 0), high, ddmod)
    correction = np.where(np.abs(raw(dd)) < raw(discont), 0, ddmod - dd)
    up = np.copy(p) if p.dtype == dtype else p.astype(dtype)  # (a copy in p's order)
    up[rest] = p[rest] + np.cumsum(correction, axis)
    return up


# --- convolution ---------------------------------------------------------------------------------

@function(np.convolve)
def convolve(a, v, mode="full"):
    a, v = as_arrays(a, v)
    a, v = _vector(a, "a", "np.convolve"), _vector(v, "v", "np.convolve")
    if v.shape[0] > a.shape[0]:
        a, v = v, a
    return _correlate(a, v[::-1], mode, "np.convolve")


@function(np.correlate)
def correlate(a, v, mode="valid"):
    a, v = as_arrays(a, v)
    a, v = _vector(a, "a", "np.correlate"), _vector(v, "v", "np.correlate")
    if np.iscomplexobj(raw(v)):
        v = np.conjugate(v)
    return _correlate(a, v, mode, "np.correlate")


# --- interpolation and polynomials ---------------------------------------------------------------

@function(np.interp)
def interp(x, xp, fp, left=None, right=None, period=None):
    """Piecewise-linear: the segment of each query point is found on the values (piecewise
    constant); inside it the result is linear in ``fp`` and ``xp``, with the segment's slope in
    ``x``. Outside the data it is ``left``/``right``, constant in ``x``."""
    dtype = np.complex128 if np.iscomplexobj(raw(fp)) else np.float64
    x, xp = _cast(as_array(x), np.float64), _cast(as_array(xp), np.float64)
    fp = _cast(as_array(fp), dtype)
    if xp.ndim != 1 or fp.ndim != 1:
        raise ValueError("np.interp: xp and fp must be 1-D sequences")
    if fp.shape[0] != xp.shape[0]:
        raise ValueError("fp and xp are not of the same length.")
    if xp.shape[0] == 0:
        raise ValueError("array of sample points is empty")
    if period is not None:
        if type(period) is Tracer:
            raise DifferentiationError("np.interp: a traced `period` is not supported; pass a "
                                       "plain number (fl.stop_gradient(period) drops its "
                                       "derivative)")
        if period == 0:
            raise ValueError("period must be a non-zero value")
        period = abs(period)
        left = right = None
        x, xp = x % period, xp % period
        order = np.argsort(raw(xp))
        xp, fp = xp[order], fp[order]
        xp = np.concatenate((xp[-1:] - period, xp, xp[0:1] + period))
        fp = np.concatenate((fp[-1:], fp, fp[0:1]))
    n = xp.shape[0]
    left = fp[0] if left is None else left
    right = fp[-1] if right is None else right
    xr, xpr = raw(x), raw(xp)
    if n == 1:
        inside = fp[0]
    else:
        j = np.clip(np.searchsorted(xpr, xr, side="right") - 1, 0, n - 2)
        xp, fp = indexable_by(xp, j), indexable_by(fp, j)
        x0, x1, f0, f1 = xp[j], xp[j + 1], fp[j], fp[j + 1]
        # A segment of length 0 (repeated xp) is only used outside the data or exactly at
        # xp[-1], where the value does not depend on its slope: slope 0 there, computed
        # without dividing by 0 (a masked 0/0 would still make the derivative NaN).
        width = x1 - x0
        empty = raw(width) == 0
        if not known_none(empty):
            slope = np.where(empty, 0.0, (f1 - f0) / np.where(empty, 1.0, width))
        else:
            slope = (f1 - f0) / width
        # NumPy returns fp[-1] exactly at xp[-1]: measure from that end there.
        inside = np.where(xr == xpr[-1], slope * (x - x1) + f1, slope * (x - x0) + f0)
    return np.where(xr < xpr[0], left, np.where(xr > xpr[-1], right, inside))


@function(np.polyval)
def polyval(p, x):
    """Horner's scheme, as NumPy evaluates it."""
    p, x = as_array(p), as_array(x)
    y = np.zeros_like(x)
    for coefficient in p:
        y = y * x + coefficient
    return y


@function(np.polyder)
def polyder(p, m=1):
    m = int(m)
    if m < 0:
        raise ValueError("Order of derivative must be positive (see polyint)")
    p = as_array(p)
    if m == 0:
        return np.copy(p)
    for _ in range(m):
        n = p.shape[0] - 1
        p = p[:-1] * module_of(p).arange(n, 0, -1)
    return p


@function(np.polyint)
def polyint(p, m=1, k=None):
    m = int(m)
    if m < 0:
        raise ValueError("Order of integral must be positive (see polyder)")
    if k is None:
        k = np.zeros(m, float)
    k = np.atleast_1d(k)
    if len(k) == 1 and m > 1:
        k = k[0] * np.ones(m, float)
    if len(k) < m:
        raise ValueError("k must be a scalar or a rank-1 array of length 1 or >m.")
    p = as_array(p)
    if m == 0:
        return np.copy(p)
    k, xp = array_beside(k, p), module_of(p)  # (CuPy's p: its constants there too)
    for i in range(m):
        p = np.concatenate((p / xp.arange(p.shape[0], 0, -1), k[i:i + 1]))
    return p


# --- vectors and grids ---------------------------------------------------------------------------

@function(np.cross)
def cross(a, b, axisa=-1, axisb=-1, axisc=-1, axis=None):
    if axis is not None:
        axisa = axisb = axisc = axis
    a, b = as_arrays(a, b)
    if a.ndim < 1 or b.ndim < 1:
        raise ValueError("At least one array has zero dimension")
    a = np.moveaxis(a, normalize_axis_index(axisa, a.ndim, msg_prefix="axisa"), -1)
    b = np.moveaxis(b, normalize_axis_index(axisb, b.ndim, msg_prefix="axisb"), -1)
    na, nb = a.shape[-1], b.shape[-1]
    if na not in (2, 3) or nb not in (2, 3):
        raise ValueError("incompatible dimensions for cross product\n"
                         "(dimension must be 2 or 3)")
    if na == 2 or nb == 2:
        warnings.warn("Arrays of 2-dimensional vectors are deprecated. Use arrays of "
                      "3-dimensional vectors instead. (deprecated in NumPy 2.0)",
                      DeprecationWarning, stacklevel=2)
    dtype = np.promote_types(a.dtype, b.dtype)
    a, b = _cast(a, dtype), _cast(b, dtype)
    a0, a1, b0, b1 = a[..., 0], a[..., 1], b[..., 0], b[..., 1]
    third = a0 * b1 - a1 * b0
    if na == 2 and nb == 2:
        return c_ordered(third)
    if na == 3 and nb == 3:
        a2, b2 = a[..., 2], b[..., 2]
        first, second = a1 * b2 - a2 * b1, a2 * b0 - a0 * b2
    elif na == 2:
        b2 = b[..., 2]
        first, second = a1 * b2, -(a0 * b2)
    else:
        a2 = a[..., 2]
        first, second = -(a2 * b1), a2 * b0
    # C order, as the array NumPy allocates and fills (a later ravel(order="K") reads it)
    cp = c_ordered(np.stack([first, second, third], axis=-1))
    return np.moveaxis(cp, -1, normalize_axis_index(axisc, cp.ndim, msg_prefix="axisc"))


@function(np.linspace)
def linspace(start, stop, num=50, endpoint=True, retstep=False, dtype=None, axis=0, *,
             device=None):
    if device not in (None, "cpu"):
        raise ValueError(f"np.linspace: device={device!r} is not supported on traced arrays")
    num = operator.index(num)
    if num < 0:
        raise ValueError(f"Number of samples, {num}, must be non-negative.")
    div = (num - 1) if endpoint else num
    dt = np.result_type(raw(start), raw(stop), 0.0)  # at least inexact, Python scalars weak
    start, stop = _cast(as_array(start, dt), dt), _cast(as_array(stop, dt), dt)
    # (a number beside a CuPy end goes there too, and so do the steps)
    start, stop = array_beside(start, stop), array_beside(stop, start)
    xp = module_of(stop)
    delta = stop - start
    y = xp.arange(0, num, dtype=dt).reshape((-1,) + (1,) * np.ndim(delta))
    if div > 0:
        step = delta / div
        zero = np.any(raw(step) == 0)  # denormal steps, as NumPy: divide first
        if type(zero) is Tracer:  # fl.compile: known when the program runs
            y = np.where(zero, y / div * delta, y * step)
        elif zero:
            y = y / div * delta
        else:
            y = y * step
    else:
        step = np.nan
        y = y * delta
    y = y + start
    if endpoint and num > 1:
        last = (xp.arange(num) == num - 1).reshape((-1,) + (1,) * (y.ndim - 1))
        y = np.where(last, stop, y)
    if axis != 0:
        y = np.moveaxis(y, 0, axis)
    if dtype is not None:
        if np.issubdtype(dtype, np.integer):
            y = np.floor(y)
        y = _cast(y, np.dtype(dtype))
    return (y, step) if retstep else y


@function(np.logspace)
def logspace(start, stop, num=50, endpoint=True, base=10.0, dtype=None, axis=0):
    if not isinstance(base, (float, int)) and np.ndim(base):
        ndmax = len(np.broadcast_shapes(*(np.shape(raw(v)) for v in (start, stop, base))))
        start, stop, base = (_ndmin(v, ndmax) for v in as_arrays(start, stop, base))
        base = np.expand_dims(base, axis=axis)
    y = np.power(base, linspace(start, stop, num=num, endpoint=endpoint, axis=axis))
    return y if dtype is None else _cast(y, np.dtype(dtype))


@function(np.geomspace)
def geomspace(start, stop, num=50, endpoint=True, dtype=None, axis=0):
    """NumPy's steps: start and stop rotated onto the positive reals by start's sign,
    ``logspace`` of their logarithms, the endpoints written exactly, the sign put back."""
    # (under fl.compile, checked on every run)
    untraced(_nonzero_ends, (np.any(raw(start) == 0) | np.any(raw(stop) == 0),))
    dt = np.result_type(as_array(raw(start)).dtype, as_array(raw(stop)).dtype, float(num),
                        np.zeros((), dtype))  # (the ends as arrays: not weak Python numbers)
    dtype = dt if dtype is None else np.dtype(dtype)
    start, stop = _cast(as_array(start), dt), _cast(as_array(stop), dt)
    # NumPy's rotation, a constant of the derivative (on the values: under fl.compile a
    # complex sign is no derivative's business)
    sign = untraced(np.sign, (raw(start),))
    start, stop = start / sign, stop / sign
    result = logspace(np.log10(start), np.log10(stop), num=num, endpoint=endpoint, base=10.0,
                      dtype=dt)
    if num > 0:
        result[0] = start
        if num > 1 and endpoint:
            result[-1] = stop
    result *= sign  # (in place, as NumPy: logspace's layout kept)
    if axis != 0:
        result = np.moveaxis(result, 0, axis)
    return _cast(result, dtype)


def _nonzero_ends(zero):
    """NumPy's refusal of a geometric sequence from or to 0 (``zero``: is an end 0?)."""
    if zero:
        raise ValueError("Geometric sequence cannot include zero")
    return np.True_


_nonzero_ends.effect = True  # a check: under fl.compile it runs on every call


# --- statistics ----------------------------------------------------------------------------------

@function(np.cov)
def cov(m, y=None, rowvar=True, bias=False, ddof=None, fweights=None, aweights=None, *,
        dtype=None):
    for name, value in (("fweights", fweights), ("aweights", aweights)):
        if value is not None:
            raise DifferentiationError(
                f"np.cov(..., {name}=) is not supported on traced arrays. Weight the "
                "deviations yourself: xc = m - np.average(m, axis=1, weights=w)[:, None]; "
                "c = (xc * w) @ xc.T / (np.sum(w) - ddof)")
    if ddof is not None and ddof != int(ddof):
        raise ValueError("ddof must be integer")
    m = as_array(m)
    if m.ndim > 2:
        raise ValueError("m has more than 2 dimensions")
    if y is not None:
        y = as_array(y)
        if y.ndim > 2:
            raise ValueError("y has more than 2 dimensions")
    if dtype is None:
        dtype = np.result_type(*(raw(v) for v in (m, y) if v is not None), np.float64)
    dtype = np.dtype(dtype)
    X = _ndmin(_cast(m, dtype), 2)
    if not rowvar and m.ndim != 1:
        X = X.T
    if X.shape[0] == 0:
        return np.array([]).reshape(0, 0)
    if y is not None:
        y = _ndmin(_cast(y, dtype), 2)
        if not rowvar and y.shape[0] != 1:
            y = y.T
        X = np.concatenate((X, y), axis=0)
    if ddof is None:
        ddof = 1 if bias == 0 else 0
    fact = X.shape[1] - ddof
    if fact <= 0:
        warnings.warn("Degrees of freedom <= 0 for slice", RuntimeWarning, stacklevel=2)
        fact = 0.0
    X = X - np.mean(X, axis=1)[:, None]
    c = np.dot(X, np.conjugate(X.T) if dtype.kind == "c" else X.T)
    return np.squeeze(_cast(c * np.true_divide(1, fact), dtype))


@function(np.corrcoef)
def corrcoef(x, y=None, rowvar=True, *, dtype=None):
    c = cov(x, y, rowvar, dtype=dtype)
    if np.ndim(c) == 0:  # a single variable: nan if its variance is 0, else 1
        return c / c
    if np.iscomplexobj(raw(c)):
        raise DifferentiationError("np.corrcoef of complex traced arrays is not supported")
    stddev = np.sqrt(np.diag(c))
    c = c / stddev[:, None]
    c = c / stddev[None, :]
    return np.clip(c, -1, 1)


# --- mapping -------------------------------------------------------------------------------------

@function(np.apply_along_axis)
def apply_along_axis(func1d, axis, arr, *args, **kwargs):
    """``func1d`` runs on each traced 1-D slice in turn; the results are stacked and laid out
    as NumPy lays them out (the result's own axes replace ``axis``)."""
    arr = as_array(arr)
    axis = normalize_axis_index(axis, arr.ndim)
    dims = list(range(arr.ndim))
    inner = np.transpose(arr, dims[:axis] + dims[axis + 1:] + [axis])
    outer = inner.shape[:-1]
    results = [as_array(func1d(inner[ind + (Ellipsis,)], *args, **kwargs))
               for ind in np.ndindex(outer)]
    if not results:
        raise ValueError("Cannot apply_along_axis when any iteration dimensions are 0")
    first = results[0]
    results = [_cast(np.broadcast_to(r, first.shape) if r.shape != first.shape else r,
                     first.dtype) for r in results]
    buff = np.reshape(np.stack(results), outer + first.shape)
    dims = list(range(buff.ndim))
    split = buff.ndim - first.ndim
    return np.transpose(buff, dims[:axis] + dims[split:] + dims[axis:split])


@function(np.apply_over_axes)
def apply_over_axes(func, a, axes):
    """``func(a, axis)`` for each axis in turn, a reduced axis put back as length 1 (NumPy's
    loop, on the traced array)."""
    val = as_array(a)
    n = val.ndim
    for axis in (axes,) if np.ndim(axes) == 0 else axes:
        res = as_array(func(val, axis + n if axis < 0 else axis))
        if res.ndim != val.ndim:
            res = np.expand_dims(res, axis)
            if res.ndim != val.ndim:
                raise ValueError("function is not returning an array of the correct shape")
        val = res
    return val


# --- helpers -------------------------------------------------------------------------------------



def _cast(x, dtype):
    return x if x.dtype == dtype else x.astype(dtype)


def _ndmin(x, ndim):
    return x if x.ndim >= ndim else np.reshape(x, (1,) * (ndim - x.ndim) + x.shape)


def _along(ndim, axis, index):
    """An index tuple that applies ``index`` to ``axis`` and keeps every other axis whole."""
    key = [slice(None)] * ndim
    key[axis] = index
    return tuple(key)


def _spacing(distances, length):
    """A scalar spacing as given; coordinates become their differences, or (untraced) their
    common difference when evenly spaced, as NumPy does, so the values match."""
    d = as_array(distances)
    if d.ndim == 0:
        return distances
    if d.ndim != 1:
        raise ValueError("distances must be either scalars or 1d")
    if d.shape[0] != length:
        raise ValueError("when 1d, distances must match the length of the corresponding "
                         "dimension")
    if np.issubdtype(d.dtype, np.integer):
        d = d.astype(np.float64)
    h = np.diff(d)
    if type(h) is Tracer:  # each coordinate has its own derivative: keep the general formula
        return h
    return h[0] if np.all(h == h[0]) else h


def _gradient_along(f, axis, h, edge_order):
    """NumPy's differences along one axis, the interior and both ends joined."""
    if f.shape[axis] < edge_order + 1:
        raise ValueError("Shape of array too small to calculate a numerical gradient, at least "
                         "(edge_order + 1) elements are required.")

    def s(start, stop):
        return f[_along(f.ndim, axis, slice(start, stop))]

    uniform = np.ndim(h) == 0
    if uniform:
        interior = (s(2, None) - s(None, -2)) / (2. * h)
    else:
        shape = [1] * f.ndim
        shape[axis] = -1
        dx1, dx2 = h[0:-1], h[1:]
        a = np.reshape(-(dx2) / (dx1 * (dx1 + dx2)), shape)
        b = np.reshape((dx2 - dx1) / (dx1 * dx2), shape)
        c = np.reshape(dx1 / (dx2 * (dx1 + dx2)), shape)
        interior = a * s(None, -2) + b * s(1, -1) + c * s(2, None)
    if edge_order == 1:
        first = (s(1, 2) - s(0, 1)) / (h if uniform else h[0])
        last = (s(-1, None) - s(-2, -1)) / (h if uniform else h[-1])
    else:
        if uniform:
            a, b, c = -1.5 / h, 2. / h, -0.5 / h
        else:
            dx1, dx2 = h[0], h[1]
            a = -(2. * dx1 + dx2) / (dx1 * (dx1 + dx2))
            b = (dx1 + dx2) / (dx1 * dx2)
            c = - dx1 / (dx2 * (dx1 + dx2))
        first = a * s(0, 1) + b * s(1, 2) + c * s(2, 3)
        if uniform:
            a, b, c = 0.5 / h, -2. / h, 1.5 / h
        else:
            dx1, dx2 = h[-2], h[-1]
            a = (dx2) / (dx1 * (dx1 + dx2))
            b = - (dx2 + dx1) / (dx1 * dx2)
            c = (2. * dx2 + dx1) / (dx2 * (dx1 + dx2))
        last = a * s(-3, -2) + b * s(-2, -1) + c * s(-1, None)
    dtype = np.result_type(*(raw(p) for p in (first, interior, last)))
    return np.concatenate([_cast(p, dtype) for p in (first, interior, last)], axis=axis)


def _vector(a, name, func):
    a = np.atleast_1d(as_array(a))
    if a.ndim != 1:
        raise ValueError(f"{func}: {name} must be one-dimensional, got shape {a.shape}")
    if a.shape[0] == 0:
        raise ValueError(f"{name} cannot be empty")
    return a


def _correlate(a, v, mode, func):
    """NumPy's correlate2 without conjugation, ``z[k] = sum_n a[n + k - (len(v) - 1)] v[n]``
    over the outputs ``mode`` keeps, as one matrix-vector product over sliding windows of the
    shorter argument (windows gathered by an index array)."""
    if mode not in ("valid", "same", "full"):
        raise ValueError(f"{func}: mode must be 'valid', 'same' or 'full', got {mode!r}")
    na, nv = a.shape[0], v.shape[0]
    short, long = min(na, nv), max(na, nv)
    if mode == "full":
        start, length = 0, na + nv - 1
    elif mode == "valid":
        start, length = short - 1, long - short + 1
    else:  # NumPy centres 'same' on the longer argument, rounding by which one that is
        start, length = (short // 2 if na < nv else short - 1 - short // 2), long
    ks = start + np.arange(length)
    if nv <= na:  # windows of a, padded with len(v) - 1 zeros each side
        pad = module_of(a).zeros(nv - 1, raw(a).dtype)
        padded = np.concatenate((pad, a, pad))
        return padded[ks[:, None] + np.arange(nv)] @ v
    pad = module_of(v).zeros(na - 1, raw(v).dtype)
    padded = np.concatenate((pad, v, pad))
    return padded[np.arange(na) - ks[:, None] + (nv - 1) + (na - 1)] @ a
