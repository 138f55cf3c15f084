"""Scaled dot-product attention, batch first: ``q (..., Tq, d)``, ``k (..., Tk, d)``,
``v (..., Tk, dv)`` with any leading axes (``(N, heads)`` for multi-head attention).

One primitive computes the output and the attention probabilities (Flux's
``dot_product_attention`` returns both) and keeps only ``q, k, v``, the output and the
probabilities for its hand-written vjp:

    dP = g_out @ v^T (+ g_P),  dS = P * (dP - sum(dP * P, -1)),
    dq = scale dS @ k,  dk = scale dS^T @ q,  dv = P^T @ g_out,  dbias = dS,

where at first order ``sum(dP * P, -1)`` is ``sum(g_out * out, -1)`` (+ ``sum(g_P * P, -1)``),
a pass over the output instead of the scores. With ``nheads`` the heads come side by side in
the last axis, ``(N, T, heads d)``, and are split (a view: the products read each head's rows
at their stride) and joined (the products written in that layout) inside the primitive, so
multi-head attention records no transposes around it. On NumPy arrays the softmax is taken of
the scores themselves where the row sums show that no exponential overflowed and none that
matters underflowed (``_probabilities_unshifted``), else shifted by the exact maximum.
Intermediates that stay inside a call (``q`` scaled, the scores' cotangent) live in reused
scratch buffers (``windows.scratch``): in a process of its own a fresh array of a megabyte
pays page faults (3 us a page measured here) that cost more than the arithmetic done in it.

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
from collections.abc import Callable

import numpy as np

from fluxml._checks import is_int, positive_int
from fluxml.ad.core import first_order, raw
from fluxml.ad.define import primitive
from fluxml.nnlib import windows as win
from fluxml.nnlib.recurrent import _used

__all__ = ["dot_product_attention", "make_causal_mask"]


def _t(a):
    return np.swapaxes(a, -1, -2)


def _softmax_rows(s):
    """Softmax over the last axis, in place; rows that are all -inf (fully masked) give 0.
    The row sums are one matrix-vector product (NumPy's reduction along a short contiguous
    axis is several times slower), applied as one multiplication by their reciprocals."""
    m = np.max(s, axis=-1, keepdims=True)
    empty = np.isneginf(m)
    any_empty = bool(empty.any())
    if any_empty:
        m[empty] = 0
    s -= m
    np.exp(s, out=s)
    total = np.matmul(s, np.ones_like(s, shape=(s.shape[-1], 1)))
    if any_empty:
        total[empty] = 1
    s *= np.reciprocal(total, out=total)
    return s


def _split(a, heads):
    """``(N, T, heads d)`` seen as ``(N, heads, T, d)``, a view: the products read each head's
    rows at their stride (BLAS takes it), which measured faster than copying the heads out
    first, in the forward and in the vjp."""
    n, t, e = a.shape
    return np.swapaxes(np.reshape(a, (n, t, heads, e // heads)), 1, 2)


def _join(a):
    """``(N, heads, T, d)`` as ``(N, T, heads d)``."""
    n, h, t, d = a.shape
    return np.reshape(np.swapaxes(a, 1, 2), (n, t, h * d))


def _joined(n, heads, t, d, dtype):
    """A new ``(N, T, heads d)`` array and its view as ``(N, heads, T, d)``: a product
    written into the view gives the heads joined, with no copy (the BLAS writes each head's
    rows at their stride)."""
    out = np.empty((n, t, heads * d), dtype)
    return out, np.swapaxes(np.reshape(out, (n, t, heads, d)), 1, 2)


def _impl(q, k, v, bias, *, mask, scale, heads=None):
    fast = _plain(q, k, v, bias)  # (splitting the heads keeps the type and dtype)
    if fast:  # q scaled in its own layout (one contiguous pass) into a scratch buffer
        q = np.multiply(q, q.dtype.type(scale), out=win.scratch(q.shape, q.dtype, np, "attn_q"))
    if heads:  # on NumPy arrays the products read the heads in place (BLAS takes the row
        # stride), which measured faster than copying them out
        q, k, v = (_split(a, heads) for a in (q, k, v))
    p = _probabilities_unshifted(q, k, bias, mask) if fast else None
    if p is None:
        s = np.matmul(q if fast else q * scale, _t(k))  # scaling q: d / Tk of the scores
        p = _softmax_rows(_biased_masked(s, bias, mask))
    if heads and fast:  # the product written in the joined layout
        return _product(p, v, heads), p
    out = np.matmul(p, v)
    return (_join(out) if heads else out), p


def _biased_masked(s, bias, mask):
    """The scores ``s``, in place, plus ``bias`` and -inf where ``mask`` forbids."""
    if bias is not None:
        s += bias
    if mask is not None:
        np.copyto(s, -np.inf, where=~mask)
    return s


def _plain(*arrays):
    return all(a is None or (type(a) is np.ndarray and a.dtype in _FAST)
               for a in arrays)


# Row sums of exp(s) below _SMALLEST_SUM (1) are refused by _probabilities_unshifted. A row
# whose sum is at least 1 has a log-sum-exp of at least 0, so an entry whose exponential
# fell below the smallest normal number has a probability below it too, as with the exact
# maximum; with a smaller sum an ordinary probability could have underflowed to 0 (e^-80
# beside a score of -40, in float32).
_SMALLEST_SUM = 1.0
_FAST = (np.dtype(np.float32), np.dtype(np.float64))  # the dtypes of the NumPy fast path


def _probabilities_unshifted(q, k, bias, mask):
    """The softmax of the scores ``q @ k^T`` (``q`` scaled already) exponentiated unshifted
    (softmax does not depend on the shift), or None where a row's sum is not finite or below
    ``_SMALLEST_SUM`` (1, see above): the caller then shifts by the exact maximum (and warns
    as it would have). Checking the sums afterwards costs a pass over ``(..., Tq)``."""
    with np.errstate(invalid="ignore", over="ignore"):
        s = np.matmul(q, _t(k))
        return _normalised(np.exp(_biased_masked(s, bias, mask), out=s), mask)


def _normalised(e, mask):
    """The exponentials ``e`` (C-contiguous) divided by their row sums, in place; None where
    a row's sum is below ``_SMALLEST_SUM`` or not finite. A row that may attend to no key
    gets probabilities 0. The sums are one matrix-vector product over the rows seen as one
    matrix (NumPy's reduction along a short contiguous axis is several times slower, and a
    product per matrix of a stack costs a BLAS call each)."""
    rows = np.reshape(e, (-1, e.shape[-1]))
    total = np.matmul(rows, np.ones_like(e, shape=e.shape[-1:]))
    if mask is not None:
        np.copyto(np.reshape(total, e.shape[:-1]), 1, where=~np.any(mask, axis=-1))
    if not total.min() >= _SMALLEST_SUM or not np.isfinite(total.max()):
        return None
    rows *= np.reciprocal(total, out=total)[:, None]
    return e


def _vjp(g, ans, args, params, positions):
    g_out, g_p = g
    q, k, v, bias = args
    out, p = ans
    scale, heads = params["scale"], params.get("heads")
    plain = all(a is None or type(a) is np.ndarray for a in (g_out, g_p, q, k, v, p, out))
    if heads:
        q, k, v, out = (_split(a, heads) for a in (q, k, v, out))
        g_out = None if g_out is None else _split(g_out, heads)
    if plain:  # in place, with scratch buffers; with heads the results are written joined
        result = _vjp_raw(g_out, g_p, q, k, v, p, out, scale, positions, heads, scratch=True)
        return [result[pos] for pos in positions]
    if first_order(g_out, g_p, q, k, v, p, out):  # (under fl.compile: IR values)
        result = _vjp_raw(g_out, g_p, q, k, v, p, out, scale, positions)
    else:
        result = _vjp_any(g_out, g_p, q, k, v, p, scale, positions)
    if heads:
        result = {pos: (r if pos == 3 else _join(r)) for pos, r in result.items()}
    return [result[pos] for pos in positions]


def _product(a, b, heads):
    """``a @ b``, a new array; with ``heads``, written joined as ``(N, T, heads d)``."""
    if not heads:
        return np.matmul(a, b)
    n, h, t, _ = a.shape
    out, view = _joined(n, h, t, b.shape[-1], np.result_type(a, b))
    np.matmul(a, b, out=view)
    return out


def _vjp_raw(g_out, g_p, q, k, v, p, out, scale, positions, heads=None, scratch=False):
    """First order on plain arrays, in place. ``sum_j dP_ij P_ij`` is ``g_out_i . out_i``
    (as FlashAttention computes it): a pass over ``(Tq, dv)`` instead of ``(Tq, Tk)``. With
    ``heads`` the arrays come split and the cotangents of ``q, k, v`` leave joined; with
    ``scratch`` (NumPy arrays) the scores' cotangent is kept in a scratch buffer."""
    result = {}
    if 2 in positions:
        if g_out is None:
            result[2] = np.zeros_like(v) if not heads else _join(np.zeros_like(v))
        else:
            result[2] = _product(_t(p), g_out, heads)
    if positions == [2]:
        return result
    use_p = _used(g_p)  # (a traced g_p, under fl.compile, is used: no concrete value to test)
    # dP and dS stay in a scratch buffer unless dS is the bias's cotangent
    buf = win.scratch(p.shape, p.dtype, np, "attn_dp") if scratch and 3 not in positions \
        else None
    if g_out is not None:
        dp = np.matmul(g_out, _t(v)) if buf is None else np.matmul(g_out, _t(v), out=buf)
        rows = np.einsum("...d,...d->...", g_out, out)[..., None] if scratch else np.sum(
            g_out * out, axis=-1, keepdims=True)  # (on NumPy arrays, without the product's)
        if use_p:
            dp += g_p
            rows += np.sum(g_p * p, axis=-1, keepdims=True)
    else:
        dp = np.zeros_like(p) if g_p is None else g_p.copy()
        rows = np.sum(dp * p, axis=-1, keepdims=True)
    dp -= rows
    ds = np.multiply(dp, p, out=dp)
    if 0 in positions:
        result[0] = _product(ds, k, heads)
        result[0] *= scale
    if 1 in positions:
        result[1] = _product(_t(ds), q, heads)
        result[1] *= scale
    if 3 in positions:
        result[3] = ds  # summed over bias's broadcast axes by the engine
    return result


def _vjp_any(g_out, g_p, q, k, v, p, scale, positions):
    """Any order: the same formulas with NumPy calls, recorded again by an outer transform."""
    result = {}
    if g_out is None:
        g_out = np.zeros_like(raw(v), shape=raw(p).shape[:-1] + raw(v).shape[-1:])
    if 2 in positions:
        result[2] = np.matmul(_t(p), g_out)
    if positions != [2]:
        dp = np.matmul(g_out, _t(v))
        if _used(g_p):
            dp = dp + g_p
        ds = p * (dp - np.sum(dp * p, axis=-1, keepdims=True))
        if 0 in positions:
            result[0] = np.matmul(ds, k) * scale
        if 1 in positions:
            result[1] = np.matmul(_t(ds), q) * scale
        if 3 in positions:
            result[3] = ds
    return result


def _jvp(tangents, ans, args, params):
    q, k, v, bias = args
    _, p = ans
    scale, heads = params["scale"], params.get("heads")
    if heads:
        q, k, v = (_split(a, heads) for a in (q, k, v))
        tangents = [(pos, t if pos == 3 else _split(t, heads)) for pos, t in tangents]
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
    if heads and tout is not None:
        tout = _join(tout)
    return tout, tp


ATTENTION = primitive("dot_product_attention", _impl, multiple_results=True)
ATTENTION.vjp_all = _vjp
ATTENTION.jvp_all = _jvp
ATTENTION.vjp_takes_none = True  # no zeros the size of the probabilities when unused


def dot_product_attention(q, k, v, *, mask=None, bias=None, scale: float | None = None,
                          nheads: int | None = None, fdrop: Callable | None = None):
    """``softmax(q @ k^T * scale + bias, masked) @ v`` and the attention probabilities.

    ``q``: ``(..., Tq, d)``, ``k``: ``(..., Tk, d)``, ``v``: ``(..., Tk, dv)`` with equal
    leading axes (e.g. ``(N, heads)``); ``mask``: booleans broadcasting to ``(..., Tq, Tk)``,
    True where a query may attend to a key (``make_causal_mask``); ``bias``: floats
    broadcasting to the same shape, added to the scores; ``scale``: ``1 / sqrt(d)`` by
    default. Returns ``(output (..., Tq, dv), probabilities (..., Tq, Tk))``.

    With ``nheads`` (as Flux's), ``q (N, Tq, nheads d)``, ``k (N, Tk, nheads d)`` and
    ``v (N, Tk, nheads dv)`` hold the heads side by side in their last axis; the output is
    ``(N, Tq, nheads dv)`` (the heads joined again) and the probabilities
    ``(N, nheads, Tq, Tk)``. This is what multi-head attention computes between its
    projections, without the transposes around the call. The batch may also be no axis or
    several, ``(..., Tq, nheads d)``, as NNlib's; the probabilities are then ``(...,
    nheads, Tq, Tk)``.

    ``fdrop`` (NNlib's): a function applied to the probabilities before they weigh ``v``,
    such as ``lambda p: fl.dropout(p, 0.1)``; the probabilities returned are its result.

    >>> import numpy as np, fluxml as fl
    >>> q = np.zeros((1, 2, 3, 4)); v = np.arange(24.0).reshape(1, 2, 3, 4)
    >>> out, p = fl.dot_product_attention(q, q, v)      # uniform attention: the mean of v
    >>> out[0, 1, 0], p.shape
    (array([16., 17., 18., 19.]), (1, 2, 3, 3))
    >>> out, p = fl.dot_product_attention(np.zeros((1, 3, 8)), np.zeros((1, 3, 8)),
    ...                                   np.ones((1, 3, 8)), nheads=2)
    >>> out.shape, p.shape
    ((1, 3, 8), (1, 2, 3, 3))
    """
    win.need_arrays("dot_product_attention", q=q, k=k, v=v)  # (a bias may be a list)
    shapes = [np.shape(raw(a)) for a in (q, k, v)]
    sq, sk, sv = shapes
    if fdrop is not None and not callable(fdrop):
        raise TypeError(f"dot_product_attention: fdrop must be a function of the "
                        f"probabilities (such as lambda p: fl.dropout(p, 0.1)); got {fdrop!r}")
    if nheads is not None:
        nheads = positive_int("dot_product_attention", "nheads", nheads)
        lead = sq[:-2]
        if len(sq) >= 2 and len(lead) != 1 and sk[:-2] == sv[:-2] == lead:
            return _batch_as_one_axis(q, k, v, lead, mask=mask, bias=bias, scale=scale,
                                      nheads=nheads, fdrop=fdrop)
        if any(len(s) != 3 for s in shapes) or sq[0] != sk[0] or sq[0] != sv[0] \
                or sq[-1] != sk[-1] or sk[-2] != sv[-2] or sq[-1] % nheads or sv[-1] % nheads:
            raise ValueError(f"dot_product_attention: with nheads={nheads}, expected q (..., "
                             f"Tq, nheads d), k (..., Tk, nheads d), v (..., Tk, nheads dv) with "
                             f"equal batch axes; got q {sq}, k {sk}, v {sv}")
        # the checks below on the shapes of the heads
        sq, sk, sv = ((s[0], nheads, s[1], s[2] // nheads) for s in shapes)
    if min(len(s) for s in (sq, sk, sv)) < 2:
        raise ValueError(f"dot_product_attention: q, k, v must have at least 2 axes "
                         f"(..., T, d); got shapes {sq}, {sk}, {sv}")
    if not sq[:-2] == sk[:-2] == sv[:-2] or sq[-1] != sk[-1] or sk[-2] != sv[-2]:
        raise ValueError(f"dot_product_attention: expected q (..., Tq, d), k (..., Tk, d), "
                         f"v (..., Tk, dv) with equal leading axes; got q {sq}, k {sk}, v {sv}")
    if 0 in sq + sk + sv:
        raise ValueError(f"dot_product_attention: every axis of q, k and v must be non-empty; "
                         f"got q {sq}, k {sk}, v {sv}")
    for name, a in zip("qkv", (q, k, v)):
        kind = getattr(raw(a), "dtype", np.dtype(float)).kind
        if kind != "f":
            raise TypeError(f"dot_product_attention: {name} must be a float array; got "
                            f"dtype {raw(a).dtype}")
    mask = check_mask_and_bias(mask, bias, sq[:-1] + (sk[-2],))
    scale = 1 / math.sqrt(sq[-1]) if scale is None else float(scale)
    heads = {} if nheads is None else {"heads": int(nheads)}
    if fdrop is None:
        return ATTENTION(q, k, v, bias, mask=mask, scale=scale, **heads)
    probs = fdrop(ATTENTION(q, k, v, bias, mask=mask, scale=scale, **heads)[1])
    if nheads is None:
        return probs @ v, probs
    n, tk, e = np.shape(raw(v))
    heads_v = np.swapaxes(np.reshape(v, (n, tk, nheads, e // nheads)), 1, 2)
    out = np.swapaxes(probs @ heads_v, 1, 2)  # (N, Tq, heads, dv)
    return np.reshape(out, out.shape[:2] + (e,)), probs


def _batch_as_one_axis(q, k, v, lead, *, mask, bias, scale, nheads, fdrop):
    """``dot_product_attention`` with ``nheads`` for inputs with no batch axis or several
    (``lead``): run on one batch axis, ``prod(lead)`` long, and shaped back. The mask and
    the bias are broadcast to the scores' shape first."""
    n = math.prod(lead)
    tq, tk = np.shape(raw(q))[-2], np.shape(raw(k))[-2]
    scores = lead + (nheads, tq, tk)

    def one_axis(name, a):
        if a is None:
            return None
        _check_broadcast(name, np.shape(raw(a)), scores)
        return np.reshape(np.broadcast_to(a, scores), (n,) + scores[-3:])
    out, probs = dot_product_attention(
        *(np.reshape(a, (n,) + np.shape(raw(a))[-2:]) for a in (q, k, v)),
        mask=one_axis("mask", None if mask is None else np.asarray(raw(mask))),
        bias=one_axis("bias", bias), scale=scale, nheads=nheads, fdrop=fdrop)
    return (np.reshape(out, lead + np.shape(raw(out))[-2:]),
            np.reshape(probs, lead + np.shape(raw(probs))[-3:]))


def check_mask_and_bias(mask, bias, scores: tuple, who: str = "dot_product_attention"):
    """Refuse a ``mask`` that is not boolean, a ``bias`` that is not real numbers, or either
    not broadcasting to the ``scores`` shape ``(..., Tq, Tk)``, in ``who``'s name (a
    TypeError or ValueError); return the mask as an array (or None)."""
    if mask is not None:
        mask = raw(mask)
        mask = mask if hasattr(mask, "dtype") else np.asarray(mask)
        if mask.dtype != bool:
            raise TypeError(f"{who}: mask must be boolean (True: attend); got dtype "
                            f"{mask.dtype}")
        _check_broadcast("mask", mask.shape, scores, who)
    if bias is not None:
        _check_broadcast("bias", np.shape(raw(bias)), scores, who)
        dtype = getattr(raw(bias), "dtype", None)
        dtype = np.asarray(bias).dtype if dtype is None else dtype
        if dtype.kind not in "fiu":  # (a boolean bias added 1 where True: a mask is mask=)
            raise TypeError(f"{who}: bias must be real numbers added to the scores; got dtype "
                            f"{dtype}" + (" (a boolean mask, True where a query may attend, "
                                          "is mask=)" if dtype.kind == "b" else ""))
    return mask


def _check_broadcast(name, shape, scores, who="dot_product_attention"):
    try:
        ok = np.broadcast_shapes(shape, scores) == scores
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"{who}: {name} of shape {shape} does not broadcast to the scores' "
                         f"shape (..., Tq, Tk) = {scores}")


def make_causal_mask(x, axis: int = -2) -> np.ndarray:
    """The ``(T, T)`` boolean mask of causal attention: query ``i`` may attend to keys
    ``j <= i``. ``x`` is the length ``T`` or an array whose ``axis`` is the time axis.

    >>> import numpy as np, fluxml as fl
    >>> fl.make_causal_mask(3).astype(int)
    array([[1, 0, 0],
           [1, 1, 0],
           [1, 1, 1]])
    """
    if is_int(x):
        n = positive_int("make_causal_mask", "x (the length)", x, minimum=0)
    else:
        shape = np.shape(raw(x))
        if not (is_int(axis) and -len(shape) <= axis < len(shape)):
            raise ValueError(f"make_causal_mask: axis (the time axis) must be an axis of x "
                             f"(shape {shape}); got {axis!r}")
        n = shape[axis]
    return np.tril(np.ones((n, n), dtype=bool))
