"""``np.unique`` and the array-API ``unique_values``, ``unique_counts``, ``unique_inverse``
and ``unique_all`` of traced arrays: NumPy computes the unique values, their counts and
inverse on the values; the unique values themselves are then gathered from the input at
their first occurrences, so that their gradient flows to those entries.

A unique value that occurs several times is a function of several equal entries, and not
differentiable (a perturbation of one of them splits it in two): its derivative is taken
with respect to its first occurrence, as ``max`` takes the first maximum's. The counts, the
indices and the inverse are integers without derivatives. The result's length depends on the
values, so ``fl.compile`` refuses these functions (by name, as NumPy's ``nonzero``).

>>> import numpy as np, fluxml as fl
>>> fl.gradient(lambda x: np.sum(np.unique(x) * [1.0, 10.0]), np.array([2.0, 1.0, 2.0]))[0]
array([10.,  1.,  0.])
"""

from __future__ import annotations

import numpy as np

from fluxml.ad.arrays import module_of
from fluxml.ad.core import raw, untraced
from fluxml.ad.define import function
from fluxml.ad.rules.indexing import getitem, take
from fluxml.ad.rules.layouts import c_ordered


def _gathered(x, positions, axis=None):
    """The entries (``axis``: the slices along it) of traced ``x`` at ``positions``."""
    if axis is None:
        return c_ordered(getitem(np.ravel(x), positions))
    return c_ordered(take(x, positions, axis=axis))


def _first_positions(flat, values):
    """Where each of ``values`` (unique values of ``flat``, as NumPy returned them) first
    occurs in ``flat``; the k-th NaN among ``values`` (NaNs kept apart) is the k-th NaN of
    ``flat``."""
    order = np.argsort(flat, kind="stable")  # equal entries keep their order: the first first
    positions = order[np.minimum(np.searchsorted(flat[order], values), flat.size - 1)]
    nan = np.isnan(values)
    if nan.any():  # np.sort puts NaNs last, in order
        first_nan = np.searchsorted(flat[order], values[nan][:1])[0]
        positions[nan] = order[first_nan + np.arange(np.count_nonzero(nan))]
    return positions


@function(np.unique)
def unique(ar, return_index=False, return_inverse=False, return_counts=False, axis=None,
           **kwargs):
    """NumPy's ``unique``; the unique values (or slices, with ``axis``) gathered from ``ar``
    at the first occurrences (``return_index``, whose stable sort NumPy uses then)."""
    found = untraced(np.unique, (ar,), dict(return_index=True, return_inverse=return_inverse,
                                            return_counts=return_counts, axis=axis, **kwargs))
    values = _gathered(ar, found[1], axis)
    extra = [found[1]] if return_index else []
    extra += list(found[2:])
    return (values, *extra) if extra else values


@function(np.unique_all)
def unique_all(x):
    found = untraced(np.unique_all, (x,))
    return type(found)(_gathered(x, found.indices), *found[1:])


@function(np.unique_inverse)
def unique_inverse(x):
    found = untraced(np.unique_inverse, (x,))
    inverse = np.ravel(found.inverse_indices)
    xp = module_of(inverse)  # (a GPU's: its positions there)
    first = xp.full(found.values.shape[0], inverse.size)
    np.minimum.at(first, inverse, xp.arange(inverse.size))
    return type(found)(_gathered(x, first), found.inverse_indices)


@function(np.unique_counts)
def unique_counts(x):
    found = untraced(np.unique_counts, (x,))
    return type(found)(_gathered(x, _first_positions(np.ravel(raw(x)), found.values)),
                       found.counts)


@function(np.unique_values)
def unique_values(x):
    values = untraced(np.unique_values, (x,))
    return _gathered(x, _first_positions(np.ravel(raw(x)), values))
