"""np.histogram, np.histogram_bin_edges, np.histogram2d and np.histogramdd: NumPy's algorithms,
their checks and their errors.

What has a derivative: the edges, where ``bins`` is a count (or a rule's name) and no range
is given, are ``linspace(a.min(), a.max(), n + 1)``: differentiable in ``a`` through its
smallest and largest entry (a given ``range``, or ``bins`` given as edges, likewise in
them); the sums of ``weights=`` by bin are linear in the weights; ``density=True`` divides
them by the bins' widths and their total. What has none: which bin a sample falls in is
piecewise constant in the samples, so the counts (integers) carry no derivative with respect
to ``a``, and the weighted sums none through it.

Under ``fl.compile`` the bins are picked on the program's values (NumPy's own comparisons with
the edges, each block of samples summed in NumPy's order), and NumPy's errors are checks run
on every call. A rule's name for ``bins`` (``'auto'`` ...) is refused there: the number of
bins depends on the values.
"""

from __future__ import annotations

import operator
import warnings

import numpy as np

from fluxml.ad.arrays import array_beside, as_array, library_of, module_of
from fluxml.ad.core import DifferentiationError, Tracer, raw, untraced
from fluxml.ad.define import function
from fluxml.ad.rules.indexing import index_add, indexable_by

BLOCK = 65536  # NumPy sums the samples block by block: its rounding, kept


def _compiling(*values) -> bool:
    """Is any of ``values`` known only when an ``fl.compile`` program runs?"""
    return any(type(raw(v)) is Tracer for v in values)


def _ravel_and_check_weights(a, weights):
    a = as_array(a)
    if a.dtype == np.bool_:  # NumPy's conversion, with its warning (booleans: no derivative)
        warnings.warn("Converting input from bool to uint8 for compatibility.",
                      RuntimeWarning, stacklevel=4)
        a = a.astype(np.uint8)
    if weights is not None:
        weights = as_array(weights)
        if weights.shape != a.shape:
            raise ValueError("weights should have the same shape as a.")
        weights = np.ravel(weights)
    return np.ravel(a), weights


# --- NumPy's errors, as checks on the values (under fl.compile, on every run) ------------------

def _supplied_range(ends):
    first, last = ends
    if first > last:
        raise ValueError("max must be larger than min in range parameter.")
    if not (np.isfinite(first) and np.isfinite(last)):
        raise ValueError(f"supplied range of [{first}, {last}] is not finite")
    return np.True_


def _autodetected_range(ends):
    first, last = ends
    if not (np.isfinite(first) and np.isfinite(last)):
        raise ValueError(f"autodetected range of [{first}, {last}] is not finite")
    return np.True_


def _finite_sized_bins(edges):
    if np.any(edges[:-1] >= edges[1:]):
        raise ValueError(f"Too many bins for data range. Cannot create {edges.shape[0] - 1} "
                         "finite-sized bins.")
    return np.True_


def _increasing(edges):
    if np.any(edges[:-1] > edges[1:]):
        raise ValueError("`bins` must increase monotonically, when an array")
    return np.True_


for _check in (_supplied_range, _autodetected_range, _finite_sized_bins, _increasing):
    _check.effect = True  # a check: under fl.compile it runs on every call


def _stack(first, last):
    """``[first, last]``, raw (a check has no derivative)."""
    first, last = raw(first), raw(last)
    like = first if type(first) is Tracer else last
    if type(like) is not Tracer:  # (in the library of a GPU's bound, where one is)
        xp = library_of(first, last)
        return xp.stack([xp.asarray(first), xp.asarray(last)])
    return np.stack([v if type(v) is Tracer else like._trace.constant(np.asarray(v, like.dtype))
                     for v in (first, last)])


def _outer_edges(a, range):
    """NumPy's ``_get_outer_edges``: the range, or the samples' smallest and largest (0 and 1
    without samples), widened by 0.5 each way when they are equal."""
    if range is not None:
        first, last = range
        untraced(_supplied_range, (_stack(first, last),))
    elif a.size == 0:
        first, last = 0, 1
    else:
        first, last = np.min(a), np.max(a)
        untraced(_autodetected_range, (_stack(first, last),))
    equal = raw(first) == raw(last)
    if type(equal) is Tracer:  # fl.compile: known when the program runs
        first, last = np.where(equal, first - 0.5, first), np.where(equal, last + 0.5, last)
    elif equal:
        first, last = first - 0.5, last + 0.5
    return first, last


def _bin_edges(a, bins, range, weights):
    """NumPy's ``_get_bin_edges``: the edges, and ``(first, last, n)`` for equal bins."""
    if isinstance(bins, str):
        traced = [raw(v) for v in (a, *(range or ())) if type(raw(v)) is Tracer]
        if traced:  # fl.compile
            raise traced[0]._trace.concrete(
                f"np.histogram(bins={bins!r}): the number of bins a rule picks depends on the "
                "values (pass the number of bins, or the edges)")
        if weights is not None:  # NumPy's checks and number of bins, on the values
            np.histogram_bin_edges(raw(a), bins, _raw_range(range), raw(weights))
        n = np.histogram_bin_edges(raw(a), bins, _raw_range(range)).shape[0] - 1
        first, last = _outer_edges(a, range)
    elif np.ndim(raw(bins)) == 0:
        try:
            n = operator.index(bins)
        except TypeError as e:
            raise TypeError("`bins` must be an integer, a string, or an array") from e
        if n < 1:
            raise ValueError("`bins` must be positive, when an integer")
        first, last = _outer_edges(a, range)
    elif np.ndim(raw(bins)) == 1:
        edges = array_beside(bins, a)  # (given as a list beside a GPU's samples: there too)
        untraced(_increasing, (raw(edges),))
        return edges, None
    else:
        raise ValueError("`bins` must be 1d, when an array")
    dtype = np.result_type(raw(first), raw(last), raw(a))
    if np.issubdtype(dtype, np.integer):
        dtype = np.result_type(dtype, float)
    edges = np.linspace(first, last, n + 1, endpoint=True, dtype=dtype)
    untraced(_finite_sized_bins, (raw(edges),))
    return edges, (first, last, n)


def _raw_range(range):
    return None if range is None else tuple(raw(v) for v in range)


def _zeros(n, dtype, like):
    """Zeros to sum into: traced like ``like`` when it is (the sums then are), else plain."""
    if type(like) is Tracer:
        return np.zeros(n, dtype, like=like)
    return module_of(like).zeros(n, dtype) if like is not None else np.zeros(n, dtype)


# --- the sums by bin -----------------------------------------------------------------------------

def _equal_bins(a, weights, edges, n, ntype):
    """NumPy's fast path for equal bins: each sample's bin by NumPy's comparisons with the
    edges, the block's weights summed in order in float64 (``bincount``), cast, accumulated."""
    a, edges = raw(a), raw(edges)
    first, last = edges[0], edges[-1]
    total = None
    for i in range(0, a.shape[0], BLOCK):
        block = a[i:i + BLOCK].astype(edges.dtype)
        keep = (block >= first) & (block <= last)
        index = np.minimum(np.searchsorted(edges, block, side="right") - 1, n - 1)
        index = np.where(keep, index, 0)
        if weights is None:
            value = keep.astype(np.intp)
        else:
            w = weights[i:i + BLOCK]
            wide = np.complex128 if ntype.kind == "c" else np.float64
            value = np.where(keep, w.astype(wide), 0)
        # (the weights traced, or under fl.compile the bins: a recorded sum in order)
        sums = index_add(np.zeros(n, value.dtype), index, value).astype(ntype)
        total = sums if total is None else total + sums
    return _zeros(n, ntype, weights) if total is None else total


def _sorted_search(a, v):
    """NumPy's ``_search_sorted_inclusive``: the last edge counts the samples equal to it."""
    return np.concatenate((np.searchsorted(a, v[:-1], "left"),
                           np.searchsorted(a, v[-1:], "right")))


def _any_bins(a, weights, edges, ntype):
    """NumPy's path for given edges: cumulative sums of the sorted weights read at the edges,
    then differenced."""
    a, edges = raw(a), raw(edges)
    cum = None
    for i in range(0, a.shape[0], BLOCK):
        block = a[i:i + BLOCK]
        if weights is None:
            part = _sorted_search(np.sort(block), edges)
        else:
            order = np.argsort(block)
            w = indexable_by(weights[i:i + BLOCK], order)[order]
            cw = np.concatenate((module_of(w).zeros(1, ntype), np.cumsum(w)))
            index = _sorted_search(block[order], edges)
            part = indexable_by(cw, index)[index]
        cum = part if cum is None else cum + part
    if cum is None:
        return _zeros(edges.shape[0] - 1, ntype, weights)
    return np.diff(cum.astype(ntype))


@function(np.histogram_bin_edges)
def histogram_bin_edges(a, bins=10, range=None, weights=None):
    a, weights = _ravel_and_check_weights(a, weights)
    return _bin_edges(a, bins, range, weights)[0]


@function(np.histogram)
def histogram(a, bins=10, range=None, density=None, weights=None):
    a, weights = _ravel_and_check_weights(a, weights)
    edges, equal = _bin_edges(a, bins, range, weights)
    ntype = np.dtype(np.intp) if weights is None else weights.dtype
    if weights is not None and not (np.can_cast(ntype, np.double)
                                    or np.can_cast(ntype, complex)):
        raise DifferentiationError(f"np.histogram with weights of dtype {ntype}: not "
                                   "supported on traced arrays")
    if type(weights) is not Tracer and not _compiling(a, edges, weights):
        # the sums have no derivative: NumPy's own, on the values
        counts = np.histogram(raw(a), raw(bins), _raw_range(range), weights=weights)[0]
    elif equal is not None:
        counts = _equal_bins(a, weights, edges, equal[2], ntype)
    else:
        counts = _any_bins(a, weights, edges, ntype)
    if density:
        widths = np.diff(edges).astype(float)
        return counts / widths / np.sum(counts), edges
    return counts, edges


# --- several dimensions --------------------------------------------------------------------------

def _increasing_dd(edges, i):
    if np.any(edges[:-1] > edges[1:]):
        raise ValueError(f"`bins[{i}]` must be monotonically increasing, when an array")
    return np.True_


_increasing_dd.effect = True  # a check: under fl.compile it runs on every call


def _dd_edges(column, bins, range, i):
    """NumPy's edges of one dimension of ``histogramdd``."""
    if np.ndim(raw(bins)) == 0:
        if bins < 1:
            raise ValueError(f"`bins[{i}]` must be positive, when an integer")
        first, last = _outer_edges(column, range)
        try:
            n = operator.index(bins)
        except TypeError as e:
            raise TypeError(f"`bins[{i}]` must be an integer, when a scalar") from e
        return np.linspace(first, last, n + 1)
    if np.ndim(raw(bins)) == 1:
        edges = as_array(bins)
        untraced(_increasing_dd, (raw(edges), i))
        return edges
    raise ValueError(f"`bins[{i}]` must be a scalar or 1d array")


@function(np.histogramdd)
def histogramdd(sample, bins=10, range=None, density=None, weights=None):
    """NumPy's algorithm: each sample's bin along each dimension (outliers in an extra bin at
    each end), their flat index, the counts or weights summed by it in order (``bincount``),
    the outliers cut off; ``density`` divides by each dimension's widths and the total."""
    if type(sample) is Tracer or hasattr(sample, "shape"):
        sample = as_array(sample)
        if sample.ndim != 2:  # NumPy reads a 1-d sample as one sequence of points
            sample = np.transpose(np.atleast_2d(sample))
    else:
        sample = np.transpose(np.stack([as_array(s) for s in sample]))
    n, d = sample.shape
    if weights is not None:
        weights = as_array(weights)
    try:
        if len(bins) != d:
            raise ValueError("The dimension of bins must be equal to the dimension of the "
                             "sample x.")
    except TypeError:  # one number of bins for every dimension
        bins = d * [bins]
    if range is None:
        range = (None,) * d
    elif len(range) != d:
        raise ValueError("range argument must have one entry per dimension")
    edges = [_dd_edges(sample[:, i], b, r, i) for i, (b, r) in enumerate(zip(bins, range))]
    nbin = [e.shape[0] + 1 for e in edges]  # an outlier bin at each end
    if type(weights) is not Tracer and not _compiling(sample, weights, *edges):
        # the sums have no derivative: NumPy's own, on the values
        hist = np.histogramdd(raw(sample), [raw(e) for e in edges], weights=weights)[0]
    else:
        hist = _dd_sums(raw(sample), weights, [raw(e) for e in edges], nbin)
    if density:
        total = np.sum(hist)
        for i, e in enumerate(edges):
            shape = [1] * d
            shape[i] = nbin[i] - 2
            hist = hist / np.reshape(np.diff(e), shape)
        hist = hist / total
    return hist, edges



def _dd_sums(sample, weights, edges, nbin):
    """The counts (or weights) summed by bin, outliers cut off, as float64 (NumPy's)."""
    flat = 0
    for i, e in enumerate(edges):
        column = sample[:, i]
        count = np.searchsorted(e, column, side="right")
        count = count - (column == e[-1]).astype(count.dtype)  # the last bin holds its edge
        flat = flat * nbin[i] + count
    size = int(np.prod(nbin))
    xp = module_of(flat)  # (a GPU's sample: the sums there)
    if weights is None:
        value = np.ones_like(flat)  # (traced under fl.compile, as the bins)
        sums = index_add(xp.zeros(size, value.dtype), flat, value).astype(float)
    else:
        sums = index_add(xp.zeros(size, np.float64), flat, weights.astype(np.float64))
    core = tuple(slice(1, -1) for _ in nbin)
    return np.reshape(sums, nbin)[core]


@function(np.histogram2d)
def histogram2d(x, y, bins=10, range=None, density=None, weights=None):
    """NumPy's: ``histogramdd`` of the pairs (x, y)."""
    if len(x) != len(y):
        raise ValueError("x and y must have the same length.")
    try:
        count = len(bins)
    except TypeError:
        count = 1
    if count not in {1, 2}:
        bins = [as_array(bins), as_array(bins)]
    hist, edges = histogramdd([x, y], bins, range, density, weights)
    return hist, edges[0], edges[1]
