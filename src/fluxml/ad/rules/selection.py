"""Choosing entries by concrete conditions or indices: select, choose, piecewise, extract,
compress, and bincount's sums of weights by bin. Each is written with where, gathers and
recorded writes, whose rules carry the derivatives; the conditions and indices are values
(they have no derivative)."""

from __future__ import annotations

import numpy as np

from fluxml._kernel_modules import on_kernel_library
from fluxml.ad.arrays import as_array, library_of, module_of
from fluxml.ad.core import DifferentiationError, Tracer, example_of, raw
from fluxml.ad.define import function
from fluxml.ad.mutation import into_out
from fluxml.ad.rules.indexing import getitem, indexable_by, take_along_axis
from fluxml.ad.rules.layouts import c_ordered


def _concrete(x, what):
    if type(x) is Tracer and raw(x) is x:  # fl.compile: a value known at run time only
        return x
    if type(x) is Tracer:
        raise DifferentiationError(f"{what} must be concrete (booleans or integers), not traced")
    return as_array(x)  # (CuPy's stays CuPy's)


@function(np.select)
def select(condlist, choicelist, default=0):
    """The first choice whose condition holds, else ``default`` (NumPy's order)."""
    if len(condlist) != len(choicelist):
        raise ValueError("list of cases must be same length as list of conditions")
    conds = [_concrete(raw(c), "np.select: conditions") for c in condlist]
    for c in conds:
        if c.dtype != bool:
            raise TypeError(f"invalid entry in condlist: should be boolean ndarray, got {c.dtype}")
    dtype = np.result_type(*(raw(c) for c in choicelist), raw(default))
    # (a Python number stays one: np.where takes it beside a GPU's arrays, a 0-d NumPy array
    # not)
    result = default if isinstance(default, (bool, int, float, complex)) else as_array(default)
    for cond, choice in zip(reversed(conds), reversed(list(choicelist))):
        result = np.where(cond, choice, result)
    result = as_array(result)
    shape = np.broadcast_shapes(*(np.shape(raw(x)) for x in (*choicelist, default, *conds)))
    if result.shape != shape:
        result = np.copy(np.broadcast_to(result, shape))
    result = c_ordered(result)  # NumPy fills a new C-ordered array
    return result if result.dtype == dtype else result.astype(dtype)


@function(np.choose)
def choose(a, choices, out=None, mode="raise"):
    """``choices[a[i]][i]``: the choices broadcast together and stacked, then gathered."""
    idx = _concrete(raw(a), "np.choose: the index array").astype(np.intp)
    n = len(choices)
    if mode == "wrap":
        idx = idx % n
    elif mode == "clip":
        idx = np.clip(idx, 0, n - 1)
    elif ((idx < 0) | (idx >= n)).any():
        raise ValueError("invalid entry in choice array")
    shape = np.broadcast_shapes(idx.shape, *(np.shape(raw(c)) for c in choices))
    dtype = np.result_type(*(c if isinstance(c, (int, float)) else raw(c) for c in choices))
    xp = library_of(idx, *choices)  # (a GPU's: the constant choices made there too)
    stacked = np.stack([np.broadcast_to(c if type(c) is Tracer else xp.asarray(c, dtype), shape)
                        for c in choices])
    result = take_along_axis(stacked, np.broadcast_to(idx, shape)[None], axis=0)[0]
    return into_out(result, out, "np.choose")


@function(np.piecewise)
def piecewise(x, condlist, funclist, *args, **kw):
    """NumPy's own algorithm, on a traced buffer: each function (or constant) is written where
    its condition holds; one more function than conditions is the 'otherwise' case."""
    x = as_array(x)
    first = condlist[0] if not np.isscalar(condlist) else None
    if np.isscalar(condlist) or (not (isinstance(first, (list, np.ndarray)) or (
            type(first) is Tracer or on_kernel_library(first)) and first.ndim)
            and x.ndim != 0):  # NumPy's rule for one bare condition (an entry of a traced
        # one, or of a GPU's, is a 0-d array where NumPy's is a scalar)
        condlist = [condlist]
    conds = [np.broadcast_to(_concrete(raw(c), "np.piecewise: conditions").astype(bool),
                             x.shape) for c in condlist]
    if len(funclist) == len(conds) + 1:
        conds.append(~np.any(np.stack(conds), axis=0) if conds
                     else module_of(x).ones(x.shape, bool))
    elif len(funclist) != len(conds):
        raise ValueError(f"with {len(conds)} condition(s), either {len(conds)} or "
                         f"{len(conds) + 1} functions are expected")
    if any(type(c) is Tracer for c in conds):  # fl.compile: known when the program runs
        return _piecewise_on_all(x, conds, funclist, args, kw)
    y = np.zeros_like(x)
    for cond, func in zip(conds, funclist):
        if not callable(func):
            y[cond] = func
        elif cond.any():
            y[cond] = func(x[cond], *args, **kw)
    return y


def _piecewise_on_all(x, conds, funclist, args, kw):
    """np.piecewise under ``fl.compile``, where the conditions are known only when the program
    runs (and so how many entries each function gets): each function is applied to all of
    ``x`` (flat, as NumPy passes it the chosen entries) and its results kept where its
    condition holds, later conditions over earlier ones, cast to x's dtype as NumPy's writes
    are. The entries a function does not get hold the first one it gets, without a derivative
    (so that it is not asked outside its domain, sqrt of a negative, nor its infinite slope
    there, sqrt's at 0, made NaN by a zero cotangent). Right for functions that act entry by
    entry; one that does not (``v - v.mean()``) is refused, judged on the values of the call
    traced."""
    flat = np.ravel(x)
    y = np.zeros_like(x)
    for cond, func in zip(conds, funclist):
        if callable(func):
            chosen = np.ravel(cond)
            first = np.argmax(chosen)  # (0 when none is chosen: its results are not kept)
            stand_in = indexable_by(raw(flat), first)[first]
            given = np.where(chosen, flat, stand_in)
            value = func(given, *args, **kw)
            _refuse_across_entries(func, given, chosen, value, args, kw)
            func = np.reshape(np.broadcast_to(value, flat.shape), x.shape)
        y = np.where(cond, func, y)
    return y if y.dtype == x.dtype else y.astype(x.dtype)


def _refuse_across_entries(func, given, chosen, value, args, kw):
    """Refuse a function whose results on some of the entries alone (NumPy's call gets the
    chosen ones) differ from its results on all entries at those places: judged on the values
    of the call traced, for the chosen entries, the first alone and every other one."""
    x, chosen = np.asarray(example_of(given)), np.asarray(example_of(chosen))
    if not chosen.any():
        return
    together = np.broadcast_to(np.asarray(example_of(value)), x.shape)
    entry_by_entry = True
    with np.errstate(all="ignore"):
        for some in (chosen, slice(0, 1), slice(None, None, 2)):
            alone = np.asarray(example_of(func(x[some], *args, **kw)))
            expected = together[some]
            entry_by_entry &= alone.shape in ((), expected.shape) and bool(np.allclose(
                alone, expected, rtol=1e-5, equal_nan=True,
                atol=1e-12 * np.max(np.abs(expected), initial=1)))
    if entry_by_entry:
        return
    raise DifferentiationError(
        f"np.piecewise under fl.compile: {getattr(func, '__name__', func)!r} gives other results "
        "on the entries its condition chooses than on all entries at those places; the "
        "conditions are known only when the program runs, so each function is applied to all "
        "entries and must act entry by entry (or compute it with np.where, or leave the "
        "function uncompiled)")


@function(np.extract)
def extract(condition, arr):
    """The entries of ``arr`` where ``condition`` is nonzero, in flat order."""
    where = np.flatnonzero(_concrete(raw(condition), "np.extract: the condition"))
    return getitem(np.ravel(arr), where)


@function(np.compress)
def compress(condition, a, axis=None, out=None):
    """The slices of ``a`` along ``axis`` where ``condition`` holds."""
    cond = _concrete(raw(condition), "np.compress: the condition")
    if cond.ndim != 1:
        raise ValueError("condition must be a 1-d array")
    a = as_array(a)
    if axis is None:
        a, axis = np.ravel(a), 0
    axis = axis % a.ndim
    keep = np.flatnonzero(cond)
    if keep.size and keep[-1] >= a.shape[axis]:
        raise IndexError(f"index {keep[-1]} is out of bounds for axis {axis} with size "
                         f"{a.shape[axis]}")
    result = c_ordered(getitem(a, (slice(None),) * axis + (keep,)))  # NumPy's take: C order
    return into_out(result, out, "np.compress")


@function(np.bincount)
def bincount(x, weights=None, minlength=0):
    """The sums of ``weights`` (as float64, as NumPy's) by their bin in ``x``, accumulated in
    order (``np.add.at``, as NumPy's loop); NumPy's checks and errors, on the values."""
    if type(_concrete(raw(x), "np.bincount: x")) is Tracer:  # fl.compile: bins known at run time
        raise DifferentiationError(
            "np.bincount: the bins are known only when the compiled program runs, and the "
            "result's length depends on them; pass minlength= and index with np.add.at instead")
    x = raw(x)  # (as given: NumPy takes an empty list, not an empty float array)
    if type(weights) is not Tracer:
        return np.bincount(x, weights, minlength)
    # NumPy's checks (and the result's length) on zeros of the weights' shape
    counts = np.bincount(x, np.zeros(np.shape(raw(weights))), minlength)
    if counts.dtype != np.float64:  # no bins: NumPy's integer zeros, whatever the weights
        return counts
    weights = weights.astype(np.float64)
    sums = np.zeros_like(weights, shape=counts.shape)
    np.add.at(sums, np.asarray(x).astype(np.intp), weights)
    return sums
