"""Scaled dot-product attention, batch first: ``q (..., Tq, d)``, ``k (..., Tk, d)``,
``v (..., Tk, dv)`` with any leading axes (``(N, heads)`` for multi-head attention).

One primitive computes the output and the attention probabilities (Flux's
``dot_product_attention`` returns both) and keeps only ``q, k, v`` and the probabilities for
its hand-written vjp:

    dP = g_out @ v^T (+ g_P),  dS = P * (dP - sum(dP * P, -1)),
    dq = scale dS @ k,  dk = scale dS^T @ q,  dv = P^T @ g_out,  dbias = dS.

A boolean ``mask`` (True: may attend) is a static argument; a float ``bias`` is added to the
scores and differentiated. A query row that may attend to no key at all gets probabilities 0
and output 0 (not NaN), with zero gradients.

>>> import numpy as np, fluxml as fl
>>> q = k = v = np.eye(2)[None]                      # (N=1, T=2, d=2)
>>> out, probs = fl.dot_product_attention(q, k, v, mask=fl.make_causal_mask(2))
>>> probs[0, 0]
array([1., 0.])
"""

from __future__ import annotations

import math

import numpy as np

from fluxml.ad.core import Tracer, raw
from fluxml.ad.define import primitive

__all__ = ["dot_product_attention", "make_causal_mask"]


def _t(a):
    return np.swapaxes(a, -1, -2)


def _softmax_rows(s):
    """Softmax over the last axis, in place; rows that are all -inf (fully masked) give 0."""
    m = np.max(s, axis=-1, keepdims=True)
    empty = np.isneginf(m)
    if empty.any():
        m[empty] = 0
    s -= m
    np.exp(s, out=s)
    total = np.sum(s, axis=-1, keepdims=True)
    if empty.any():
        total[empty] = 1
    s /= total
    return s


def _impl(q, k, v, bias, *, mask, scale):
    s = np.matmul(q * scale, _t(k))  # scaling q costs d / Tk of scaling the scores
    if bias is not None:
        s += bias
    if mask is not None:
        np.copyto(s, -np.inf, where=~mask)
    p = _softmax_rows(s)
    return np.matmul(p, v), p


def _used(c):
    return c is not None and (type(c) is Tracer or bool(np.any(c)))


def _vjp(g, ans, args, params, positions):
    g_out, g_p = g
    q, k, v, bias = args
    _, p = ans
    scale = params["scale"]
    result = {}
    if 2 in positions:
        result[2] = np.matmul(_t(p), g_out)
    if positions != [2]:
        dp = np.matmul(g_out, _t(v))
        if _used(g_p):
            dp = dp + g_p
        if type(dp) is np.ndarray and type(p) is np.ndarray:  # first order: in place
            ds = dp * p
            dp = np.sum(ds, axis=-1, keepdims=True)
            ds -= p * dp
        else:
            ds = p * (dp - np.sum(dp * p, axis=-1, keepdims=True))
        if 0 in positions:
            result[0] = np.matmul(ds, k) * scale
        if 1 in positions:
            result[1] = np.matmul(_t(ds), q) * scale
        if 3 in positions:
            result[3] = ds  # summed over bias's broadcast axes by the engine
    return [result[pos] for pos in positions]


def _jvp(tangents, ans, args, params):
    q, k, v, bias = args
    _, p = ans
    scale = params["scale"]
    ts = tout = None
    for pos, t in tangents:
        if pos == 0:
            d = np.matmul(t, _t(k)) * scale
        elif pos == 1:
            d = np.matmul(q, _t(t)) * scale
        elif pos == 3:
            d = t
        else:
            tout = np.matmul(p, t)
            continue
        ts = d if ts is None else ts + d
    tp = None
    if ts is not None:
        tp = p * (ts - np.sum(p * ts, axis=-1, keepdims=True))
        tv = np.matmul(tp, v)
        tout = tv if tout is None else tout + tv
    return tout, tp


ATTENTION = primitive("dot_product_attention", _impl, multiple_results=True)
ATTENTION.vjp_all = _vjp
ATTENTION.jvp_all = _jvp


def dot_product_attention(q, k, v, *, mask=None, bias=None, scale: float | None = None):
    """``softmax(q @ k^T * scale + bias, masked) @ v`` and the attention probabilities.

    ``q``: ``(..., Tq, d)``, ``k``: ``(..., Tk, d)``, ``v``: ``(..., Tk, dv)`` with equal
    leading axes (e.g. ``(N, heads)``); ``mask``: booleans broadcasting to ``(..., Tq, Tk)``,
    True where a query may attend to a key (``make_causal_mask``); ``bias``: floats
    broadcasting to the same shape, added to the scores; ``scale``: ``1 / sqrt(d)`` by
    default. Returns ``(output (..., Tq, dv), probabilities (..., Tq, Tk))``.

    >>> import numpy as np, fluxml as fl
    >>> q = np.zeros((1, 2, 3, 4)); v = np.arange(24.0).reshape(1, 2, 3, 4)
    >>> out, p = fl.dot_product_attention(q, q, v)      # uniform attention: the mean of v
    >>> out[0, 1, 0], p.shape
    (array([16., 17., 18., 19.]), (1, 2, 3, 3))
    """
    shapes = [np.shape(raw(a)) for a in (q, k, v)]
    sq, sk, sv = shapes
    if min(len(s) for s in shapes) < 2:
        raise ValueError(f"dot_product_attention: q, k, v must have at least 2 axes "
                         f"(..., T, d); got shapes {sq}, {sk}, {sv}")
    if not sq[:-2] == sk[:-2] == sv[:-2] or sq[-1] != sk[-1] or sk[-2] != sv[-2]:
        raise ValueError(f"dot_product_attention: expected q (..., Tq, d), k (..., Tk, d), "
                         f"v (..., Tk, dv) with equal leading axes; got q {sq}, k {sk}, v {sv}")
    for name, a in zip("qkv", (q, k, v)):
        kind = getattr(raw(a), "dtype", np.dtype(float)).kind
        if kind != "f":
            raise TypeError(f"dot_product_attention: {name} must be a float array; got "
                            f"dtype {raw(a).dtype}")
    scores = sq[:-1] + (sk[-2],)
    if mask is not None:
        mask = raw(mask)
        mask = mask if hasattr(mask, "dtype") else np.asarray(mask)
        if mask.dtype != bool:
            raise TypeError(f"dot_product_attention: mask must be boolean (True: attend); "
                            f"got dtype {mask.dtype}")
        _check_broadcast("mask", mask.shape, scores)
    if bias is not None:
        _check_broadcast("bias", np.shape(raw(bias)), scores)
    scale = 1 / math.sqrt(sq[-1]) if scale is None else float(scale)
    return ATTENTION(q, k, v, bias, mask=mask, scale=scale)


def _check_broadcast(name, shape, scores):
    try:
        ok = np.broadcast_shapes(shape, scores) == scores
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"dot_product_attention: {name} of shape {shape} does not broadcast "
                         f"to the scores' shape (..., Tq, Tk) = {scores}")


def make_causal_mask(x, axis: int = -2) -> np.ndarray:
    """The ``(T, T)`` boolean mask of causal attention: query ``i`` may attend to keys
    ``j <= i``. ``x`` is the length ``T`` or an array whose ``axis`` is the time axis.

    >>> import numpy as np, fluxml as fl
    >>> fl.make_causal_mask(3).astype(int)
    array([[1, 0, 0],
           [1, 1, 0],
           [1, 1, 1]])
    """
    n = x if isinstance(x, (int, np.integer)) else np.shape(raw(x))[axis]
    return np.tril(np.ones((n, n), dtype=bool))
