"""NNlib's ``gather`` and ``scatter`` in fluxml's batch-first layout: the indexed axes are the
leading ones (NNlib's trailing dimensions), and indices count from 0.

``gather(src, idx)`` picks slices ``src[idx[k]]`` (``src[i[k], j[k]]`` for several index
arrays); ``scatter(op, src, idx)`` is its adjoint family: it sends each slice ``src[k]`` to
``dst[idx[k]]``, reducing the slices that meet there with ``op``. With ``"add"`` it is
gather's transpose, the message passing of graph networks.

>>> import numpy as np, fluxml as fl
>>> src = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
>>> fl.nnlib.gather(src, np.array([2, 0, 2]))
array([[5., 6.],
       [1., 2.],
       [5., 6.]])
>>> fl.nnlib.scatter("add", np.ones((3, 2)), np.array([1, 1, 0]))
array([[1., 1.],
       [2., 2.]])
"""

from __future__ import annotations

import math

import numpy as np

from fluxml.ad.core import Tracer, known_none, raw, untraced
from fluxml.ad.rules.indexing import index_add
from fluxml.backend.registry import array_module

__all__ = ["gather", "scatter"]

# op -> its name here (NNlib passes +, -, max, min, mean; NumPy's ufuncs and names do here)
_OPS = {"add": "add", "sub": "sub", "max": "max", "min": "min", "mean": "mean",
        np.add: "add", np.subtract: "sub", np.maximum: "max", np.minimum: "min",
        np.mean: "mean"}


def _indices(name, idx, xp):
    """``idx`` (one or several integer arrays of one shape) as a tuple of index arrays of
    ``xp``, and that shape."""
    if not idx:
        raise TypeError(f"{name}: expected one or more integer index arrays; got none")
    arrays = []
    for i in idx:
        if type(i) is Tracer:
            i = raw(i)
        a = xp.asarray(i)
        if a.dtype.kind not in "iu":
            raise TypeError(f"{name}: indices must be integer arrays; got dtype {a.dtype}")
        arrays.append(a)
    shape = arrays[0].shape
    if any(a.shape != shape for a in arrays):
        raise ValueError(f"{name}: the index arrays must share one shape; got "
                         f"{[a.shape for a in arrays]}")
    return tuple(arrays), shape


def _in_bounds(name, idx, sizes, what):
    for axis, (i, n) in enumerate(zip(idx, sizes)):
        if i.size and (int(i.min()) < 0 or int(i.max()) >= n):
            raise IndexError(f"{name}: indices along axis {axis} must lie in [0, {n}) for "
                             f"{what}; got values in [{int(i.min())}, {int(i.max())}]")


def gather(src, *idx):
    """``src[idx]``: for an index array ``idx`` of shape ``K``, the slices of ``src`` along
    its first axis, shaped ``K + src.shape[1:]``; with several index arrays ``i, j, ...``
    (one shape ``K``), ``src[i, j, ...]`` along its first axes. NNlib's ``gather``, with
    0-based indices; the gradient sends each slice's cotangent back, summing repeats.

    >>> import numpy as np, fluxml as fl
    >>> src = np.arange(12.0).reshape(3, 2, 2)
    >>> fl.nnlib.gather(src, np.array([0, 2]), np.array([1, 0])).tolist()
    [[2.0, 3.0], [8.0, 9.0]]
    """
    xp = array_module(raw(src))
    idx, _ = _indices("gather", idx, xp)
    shape = np.shape(raw(src))
    if len(idx) > len(shape):
        raise ValueError(f"gather: {len(idx)} index arrays for src of shape {shape}")
    _in_bounds("gather", idx, shape, f"src of shape {shape}")
    return src[idx]


def scatter(op, src, *idx, init=None, dstsize=None):
    """``dst`` with ``dst[idx[k]]`` the ``op``-reduction of the slices ``src[k]`` sent there
    (NNlib's ``scatter``, 0-based). ``idx`` has shape ``K`` (several arrays index several
    leading axes of ``dst``); ``src`` is ``K + inner``; ``dst`` is ``dstsize`` or, by
    default, each indexed axis as long as its largest index plus one, followed by
    ``inner``. ``op`` is ``"add"`` (``np.add``), ``"sub"``, ``"mean"`` (``np.mean``),
    ``"max"`` (``np.maximum``) or ``"min"``; places nothing reaches hold ``init``, by
    default 0 (add, sub, mean) or ``-inf`` / ``+inf`` (max / min; an integer dtype's lowest /
    highest value), as NNlib fills them.
    Differentiable in ``src``. Where several sources tie for a max or min, each takes an
    even share of the gradient (with ``init`` given and tying too, it counts as one of
    them): as ``np.max``'s rule here and PyTorch's ``scatter_reduce("amax")``; NNlib gives
    every tie the whole gradient, which sums to more than the output's.

    >>> import numpy as np, fluxml as fl
    >>> src = np.array([[1.0, 5.0], [3.0, 2.0], [4.0, 4.0]])
    >>> fl.nnlib.scatter("max", src, np.array([0, 0, 2]))
    array([[  3.,   5.],
           [-inf, -inf],
           [  4.,   4.]])
    >>> fl.nnlib.scatter("mean", src, np.array([0, 0, 2]), dstsize=(4, 2))
    array([[2. , 3.5],
           [0. , 0. ],
           [4. , 4. ],
           [0. , 0. ]])
    """
    kind = _OPS.get(op) if isinstance(op, str) or callable(op) else None
    if kind is None:
        raise ValueError(f"scatter: op must be one of 'add', 'sub', 'mean', 'max', 'min' (or "
                         f"np.add, np.subtract, np.mean, np.maximum, np.minimum); got {op!r}")
    value = raw(src)
    xp = array_module(value)
    idx, kshape = _indices("scatter", idx, xp)
    sshape = np.shape(value)
    if sshape[:len(kshape)] != kshape:
        raise ValueError(f"scatter: src's leading axes must match the index shape {kshape}; "
                         f"got src of shape {sshape}")
    inner = sshape[len(kshape):]
    if dstsize is None:
        if not math.prod(kshape):
            raise ValueError("scatter: no indices to size dst by; give dstsize=")
        lead = tuple(int(i.max()) + 1 for i in idx)
    else:
        dstsize = tuple(dstsize)
        lead = dstsize[:len(idx)]
        if dstsize[len(idx):] != inner or len(lead) != len(idx):
            raise ValueError(f"scatter: dstsize must be {len(idx)} indexed sizes followed by "
                             f"src's inner shape {inner}; got {dstsize}")
    _in_bounds("scatter", idx, lead, f"dst of shape {lead + inner}")
    dtype = value.dtype
    if dtype.kind == "c" and kind in ("max", "min"):  # (NumPy compares lexicographically)
        raise TypeError(f"scatter: complex src ({dtype}) has no {kind}imum; scatter np.abs(src)"
                        ", or the real and imaginary parts apart")
    if dtype.kind == "b" and kind in ("add", "sub", "mean"):
        # booleans count as 0 and 1, as np.sum counts them (a boolean sum is a logical or: a
        # mean of True and False was 1, a sum of two Trues True)
        src = value = value.astype(np.int64)
        dtype = value.dtype
    if kind in ("add", "sub", "mean"):
        base = xp.zeros(lead + inner, dtype)
        if kind == "mean":
            counts = xp.zeros(lead, dtype)
            np.add.at(counts, idx, 1)
            counts = xp.reshape(xp.maximum(counts, 1), lead + (1,) * len(inner))
            out = index_add(base, idx, src) / counts
        else:
            out = index_add(base, idx, src if kind == "add" else -src)
        return out if init is None else out + init
    return _scatter_extremum(kind, src, idx, lead, inner, init, xp)


def _scatter_extremum(kind, src, idx, lead, inner, init, xp):
    """max / min: the extremum of each destination's sources (``ufunc.at``). Traced, it is
    rewritten as an exact sum whose derivative gives each source that attains its extremum
    an even share (``init``, where given, counts among them: its share goes nowhere). The
    extrema and the shares are computed on the values by :func:`_extremum_parts`, which
    ``fl.compile`` records as one call (``ufunc.at`` into a new array is no traced op)."""
    value = raw(src)
    best = untraced(_extremum, (kind, value, idx, lead + inner, init))
    if src is value:  # nothing to differentiate (plain arrays, or only fl.compile's trace)
        return best
    share, finite, other, wild = untraced(_shares, (value, best, idx, lead, inner, init))
    # finite extrema: best - sum of share * (value - src), whose value is best exactly
    # (0.0 subtracted keeps a -0.0); an infinite or NaN one: the sum of share * src
    zeros = xp.zeros(best.shape, best.dtype)
    gap = index_add(zeros, idx, (np.where(finite, value, 0) - np.where(finite, src, 0)) * share)
    if known_none(wild):
        return best - gap
    extreme = index_add(zeros, idx, np.where(other, src, 0) * share)
    return np.where(wild, extreme, best - gap)


def empty_extremum(kind, dtype):
    """What a destination no source reaches holds: -inf for max and +inf for min; for
    integers and booleans the dtype's lowest and highest values (NNlib's typemin and
    typemax: +inf cast to an integer was its lowest value, so every min was that)."""
    dtype = np.dtype(dtype)
    if dtype.kind in "fc":
        return -np.inf if kind == "max" else np.inf
    if dtype.kind == "b":
        return kind != "max"
    info = np.iinfo(dtype)
    return info.min if kind == "max" else info.max


def _extremum(kind, value, idx, shape, init):
    """On plain arrays: the extremum of the sources sent to each destination (``init``, by
    default -inf for max and +inf for min, where none is)."""
    empty = init if init is not None else empty_extremum(kind, value.dtype)
    best = array_module(value).full(shape, empty, value.dtype)
    (np.maximum if kind == "max" else np.minimum).at(best, idx, value)
    return best


def _shares(value, best, idx, lead, inner, init):
    """On plain arrays: each source's ``share`` of its destination's gradient (0 where it
    does not attain the extremum ``best``), which sources attain a finite extremum
    (``finite``) or an infinite or NaN one (``other``), and which destinations hold the
    latter (``wild``)."""
    xp = array_module(value)
    at = best[idx]  # (K + inner): each source's extremum
    hit = (value == at) | (xp.isnan(value) & xp.isnan(at))  # (a NaN wins, as np.max's)
    inner_n = math.prod(inner)
    k_ndim = idx[0].ndim
    dest = xp.reshape(xp.ravel_multi_index(idx, lead), idx[0].shape + (1,) * len(inner))
    dest = dest * inner_n + xp.reshape(xp.arange(inner_n), (1,) * k_ndim + inner)
    dest = xp.broadcast_to(dest, hit.shape)  # each source's flat place in dst
    ties = xp.bincount(dest[hit], minlength=best.size)
    if init is not None:  # (init attains it too: a competitor, as torch's include_self)
        ties = ties + xp.ravel(best == xp.asarray(init, best.dtype))
    share = xp.where(hit, 1 / xp.maximum(ties, 1)[dest], 0).astype(value.dtype)
    finite = hit & xp.isfinite(value)
    other = hit & ~finite
    wild = xp.reshape(xp.bincount(dest[other], minlength=best.size) > 0, best.shape)
    return share, finite, other, wild
