"""Embedding lookup: rows of a weight matrix gathered by integer indices of any shape.

Two linear primitives, each the other's transpose: ``gather`` (``weight[idx]``) and
``scatter_add`` (the sum of the rows of ``g`` that share an index, placed at that index), so
that derivatives of any order are exact. The scatter sorts the indices once, writes the
first occurrence of each and adds the few repeats with ``np.add.at`` (``np.add.at`` on all
rows is ~10x slower), or sums runs of equal indices with ``np.add.reduceat`` when most are
repeats.

>>> import numpy as np, fluxml as fl
>>> fl.embedding(np.arange(6.0).reshape(3, 2), np.array([[2, 0]]))
array([[[4., 5.],
        [0., 1.]]])
"""

from __future__ import annotations

import numpy as np

from fluxml.ad.arrays import library_asarray
from fluxml.ad.core import Tracer, raw, untraced
from fluxml.ad.define import deflinear, defvjp, primitive

__all__ = ["embedding"]


def _gather(weight, *, idx):
    return np.take(weight, idx, axis=0)


def _scatter_add(g, *, idx, rows):
    flat = idx.reshape(-1)
    feature_shape = g.shape[idx.ndim:]
    g = g.reshape((flat.size,) + feature_shape)
    out = np.zeros_like(g, shape=(rows,) + feature_shape)
    if flat.size == 0:
        return out
    order = np.argsort(flat, kind="stable")
    sorted_idx = flat[order]
    first = np.empty_like(sorted_idx, dtype=bool)
    first[0] = True
    np.not_equal(sorted_idx[1:], sorted_idx[:-1], out=first[1:])
    repeats = flat.size - int(np.count_nonzero(first))
    if repeats == 0:  # a plain write
        out[flat] = g
    elif repeats * 4 <= flat.size:  # first occurrences written, the few repeats added
        out[sorted_idx[first]] = g[order[first]]
        np.add.at(out, sorted_idx[~first], g[order[~first]])
    else:  # mostly repeats (a small vocabulary): sum runs of equal indices
        starts = np.flatnonzero(first)
        out[sorted_idx[starts]] = np.add.reduceat(g[order], starts, axis=0)
    return out


GATHER = primitive("embedding_gather", _gather, keeps_inputs=False, keeps_output=False)
SCATTER_ADD = primitive("embedding_scatter_add", _scatter_add, keeps_inputs=False,
                        keeps_output=False)
defvjp(GATHER, lambda g, ans, w, idx: SCATTER_ADD(g, idx=idx, rows=w.shape[0]))
deflinear(GATHER)
defvjp(SCATTER_ADD, lambda g, ans, x, idx, rows: GATHER(g, idx=idx))
deflinear(SCATTER_ADD)


def embedding(weight, idx):
    """The rows ``weight[idx]`` of ``weight`` (shape ``(vocabulary, features...)``) for
    integer indices ``idx`` of any shape: the result has shape ``idx.shape + features``.
    The gradient of ``weight`` adds the cotangents of repeated indices. Indices start at 0
    (as PyTorch's) and must be below the vocabulary size; negative ones are refused.

    >>> import numpy as np, fluxml as fl
    >>> w = np.eye(3)
    >>> fl.gradient(lambda w: np.sum(fl.embedding(w, np.array([1, 1, 2]))), w)[0][:, 0]
    array([0., 2., 1.])
    """
    shape = np.shape(raw(weight))
    if len(shape) < 1:
        raise ValueError("embedding: weight must have a vocabulary axis (vocabulary, "
                         "features...); got a scalar")
    idx = raw(idx)
    if type(idx) is not Tracer:  # (inside fl.compile the indices are traced)
        idx = library_asarray(idx)  # (CuPy's indices stay on the GPU)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"embedding: indices must be integers; got dtype {idx.dtype}")
    # checked where the values are: inside fl.compile, on every run of the program
    idx = untraced(_check_rows, (idx, shape))
    return GATHER(weight, idx=idx)


def _check_rows(idx, shape):
    if idx.size:
        lo, hi = int(idx.min()), int(idx.max())
        bad = lo if lo < 0 else hi if hi >= shape[0] else None
        if bad is not None:
            raise IndexError(f"embedding: index {bad} is outside the vocabulary of "
                             f"{shape[0]} rows (weight of shape {shape}); indices must be "
                             f"in 0..{shape[0] - 1}")
    return idx
