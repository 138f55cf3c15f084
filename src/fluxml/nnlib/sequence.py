"""Whole-sequence LSTM and GRU kernels: the scan over time inside one primitive each.

A recurrent layer could scan ``lstm_step`` over time (one tape node per step); these kernels
run the whole scan in one primitive instead, with backpropagation through time written by
hand: per step only the recurrent matrix product and the gate arithmetic, and the weight
gradient as one matrix product over all steps at the end (``dW_hh = sum_t dz_t^T h_{t-1}``).
The equations and shapes are ``recurrent.py``'s (PyTorch's gate orders). Inputs are batch
first, ``x (N, T, in)``. The GRU's input projection of all steps is one matrix product before
the scan; the LSTM's kernel (``lstm_scan.py``) takes ``x`` and the weights themselves and
folds the projection into each step's product. The vjp and jvp loops are written with NumPy
calls, so they are differentiated again at higher order.

>>> import numpy as np, fluxml as fl
>>> x = np.ones((1, 3, 2))
>>> hs, h, c = fl.nnlib.lstm_sequence(x, np.zeros((1, 4)), np.zeros((1, 4)),
...                                   np.zeros((16, 2)), np.zeros((16, 4)))
>>> hs.shape, h.shape
((1, 3, 4), (1, 4))
"""

from __future__ import annotations

import numpy as np

from fluxml.ad.core import Tracer, raw
from fluxml.ad.define import primitive
from fluxml.backend.registry import array_module
from fluxml.nnlib import windows
from fluxml.nnlib.lstm_scan import LSTM_SEQUENCE, lstm_inference
from fluxml.nnlib.recurrent import _check, _recurrent_weight_grad, _sigmoid_, _used

__all__ = ["gru_sequence", "lstm_sequence"]


def _gate(acts, k, n):
    return acts[..., k * n:(k + 1) * n]


# --- GRU -----------------------------------------------------------------------------------------

def _gru_impl(gx, h0, w, b):
    batch, steps, _ = gx.shape
    n = h0.shape[-1]
    dtype = np.result_type(gx, h0, w)
    acts = np.empty_like(gx, shape=(steps, batch, 4 * n), dtype=dtype)  # r, z, n, W_hn h + b
    hs = np.empty_like(acts, shape=(steps, batch, n))
    w_t = w.T
    h = h0
    for t in range(steps):
        a = acts[t]
        gh = np.matmul(h, w_t)
        if b is not None:
            gh += b
        x_t = gx[:, t]
        np.add(x_t[:, :2 * n], gh[:, :2 * n], out=a[:, :2 * n])
        _sigmoid_(a[:, :2 * n])
        a[:, 3 * n:] = gh[:, 2 * n:]
        nn = a[:, 2 * n:3 * n]
        np.multiply(a[:, :n], a[:, 3 * n:], out=nn)
        nn += x_t[:, 2 * n:]
        np.tanh(nn, out=nn)
        np.subtract(h, nn, out=hs[t])
        hs[t] *= a[:, n:2 * n]
        hs[t] += nn
        h = hs[t]
    return np.swapaxes(hs, 0, 1), acts


def _gru_vjp(g, ans, args, params, positions):
    g_hs, g_acts = g
    gx, h0, w, b = args
    hs, acts = ans
    n = h0.shape[-1]
    steps = gx.shape[1]
    use_acts = _used(g_acts)
    dh = None
    dgxs, dghs = [None] * steps, [None] * steps
    for t in range(steps - 1, -1, -1):
        r, z, nn, ghn = (_gate(acts[t], k, n) for k in range(4))
        h_prev = h0 if t == 0 else hs[:, t - 1]
        dh_t = g_hs[:, t] if dh is None else g_hs[:, t] + dh
        d_n = dh_t * (1 - z)
        d_z = dh_t * (h_prev - nn)
        if use_acts:
            extra = [_gate(g_acts[t], k, n) for k in range(4)]
            d_n, d_z = d_n + extra[2], d_z + extra[1]
        da_n = d_n * (1 - nn * nn)
        d_r = da_n * ghn
        d_ghn = da_n * r
        if use_acts:
            d_r, d_ghn = d_r + extra[0], d_ghn + extra[3]
        da_r = d_r * (r * (1 - r))
        da_z = d_z * (z * (1 - z))
        dgxs[t] = np.concatenate([da_r, da_z, da_n], axis=-1)
        dgh = np.concatenate([da_r, da_z, d_ghn], axis=-1)
        dghs[t] = dgh
        dh = dh_t * z + np.matmul(dgh, w)
    out = {1: dh}
    if 0 in positions:
        out[0] = np.stack(dgxs, axis=1)
    if 2 in positions or 3 in positions:
        dgh_all = np.stack(dghs, axis=1)  # (N, T, 3H)
        out[3] = dgh_all  # summed over batch and time by the engine
        if 2 in positions:
            out[2] = _recurrent_weight_grad(dgh_all, h0, hs)
    return [out[p] for p in positions]


def _gru_jvp(tangents, ans, args, params):
    gx, h0, w, b = args
    hs, acts = ans
    n = h0.shape[-1]
    steps = gx.shape[1]
    tan = dict(tangents)
    t_gx, th, t_w, t_b = tan.get(0), tan.get(1), tan.get(2), tan.get(3)
    w_t = np.swapaxes(w, 0, 1)
    ths, tas = [], []
    for t in range(steps):
        r, z, nn, ghn = (_gate(acts[t], k, n) for k in range(4))
        h_prev = h0 if t == 0 else hs[:, t - 1]
        t_gh = None if th is None else np.matmul(th, w_t)
        if t_w is not None:
            term = np.matmul(h_prev, np.swapaxes(t_w, 0, 1))
            t_gh = term if t_gh is None else t_gh + term
        if t_b is not None:
            t_gh = t_b + np.zeros_like(ghn[..., :1]) if t_gh is None else t_gh + t_b
        zero = np.zeros_like(nn)
        tx = (zero, zero, zero) if t_gx is None else tuple(
            _gate(t_gx[:, t], k, n) for k in range(3))
        th_ = (zero, zero, zero) if t_gh is None else tuple(_gate(t_gh, k, n) for k in range(3))
        tr = (tx[0] + th_[0]) * (r * (1 - r))
        tz = (tx[1] + th_[1]) * (z * (1 - z))
        tn = (tx[2] + tr * ghn + r * th_[2]) * (1 - nn * nn)
        new = tn * (1 - z) + tz * (h_prev - nn)
        if th is not None:
            new = new + z * th
        th = new
        ths.append(th)
        tas.append(np.concatenate([tr, tz, tn, th_[2] + zero], axis=-1))
    return np.stack(ths, axis=1), np.stack(tas, axis=0)


GRU_SEQUENCE = primitive("gru_sequence", _gru_impl, multiple_results=True)
GRU_SEQUENCE.vjp_all = _gru_vjp
GRU_SEQUENCE.jvp_all = _gru_jvp


# --- the functions -------------------------------------------------------------------------------

def _project(x, w_ih):
    """``x @ w_ih.T`` for all steps as one 2-D product (a 3-D ``x`` would make the weight's
    gradient a stack of per-sample products summed afterwards)."""
    n, t, d = np.shape(raw(x))
    gx = np.matmul(np.reshape(x, (n * t, d)), np.swapaxes(w_ih, 0, 1))
    return np.reshape(gx, (n, t, np.shape(raw(w_ih))[0]))  # (not -1: n may be 0)


def _check_sequence(name, x):
    windows.need_arrays(name, x=x)
    if len(np.shape(raw(x))) != 3:
        raise ValueError(f"{name}: expected a batch-first sequence x (N, T, features); got "
                         f"shape {np.shape(raw(x))}")
    if np.shape(raw(x))[1] == 0:
        raise ValueError(f"{name}: the sequence is empty (T = 0)")


def lstm_sequence(x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None, last=None):
    """An LSTM over a whole sequence ``x (N, T, in)`` from the state ``h0, c0 (N, H)``, with
    PyTorch's weights (``w_ih (4H, in)``, ``w_hh (4H, H)``, biases ``(4H,)``). Returns
    ``(hs (N, T, H), h_T, c_T)``: every step's hidden state and the final state; with
    ``last`` (``(N,)`` step indices), the state after step ``last[i]`` of sequence ``i``
    (its last step before padding).

    >>> import numpy as np, fluxml as fl
    >>> hs, h, c = fl.nnlib.lstm_sequence(np.ones((2, 5, 3)), np.zeros((2, 4)),
    ...                                   np.zeros((2, 4)), np.zeros((16, 3)), np.zeros((16, 4)))
    >>> hs.shape, c.shape
    ((2, 5, 4), (2, 4))
    """
    _check_sequence("lstm_sequence", x)
    _check("lstm_sequence", 4, raw(x)[:, 0], h0, w_ih, w_hh, b_ih, b_hh, c0)
    bias = b_hh if b_ih is None else b_ih if b_hh is None else b_ih + b_hh
    if last is None and all(type(a) is np.ndarray for a in (x, h0, c0, w_ih, w_hh)) \
            and (bias is None or type(bias) is np.ndarray):
        return lstm_inference(x, h0, c0, w_ih, w_hh, bias)  # nothing to differentiate
    if last is not None:
        last = _checked_last("lstm_sequence", last, *np.shape(raw(x))[:2])
    hs, cs, _ = LSTM_SEQUENCE(x, h0, c0, w_ih, w_hh, bias)
    if last is None:
        # (copies: a view of hs changed with it, and one of cs kept all T steps alive)
        return hs, np.copy(hs[:, -1]), np.copy(cs[:, -1])
    rows = _rows(hs, last)
    return hs, hs[rows, last], cs[rows, last]


def gru_sequence(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, last=None):
    """A GRU over a whole sequence ``x (N, T, in)`` from ``h0 (N, H)``, with PyTorch's
    weights (``w_ih (3H, in)``, ``w_hh (3H, H)``, biases ``(3H,)``). Returns
    ``(hs (N, T, H), h_T)``; with ``last``, as :func:`lstm_sequence`.

    >>> import numpy as np, fluxml as fl
    >>> hs, h = fl.nnlib.gru_sequence(np.ones((2, 5, 3)), np.zeros((2, 4)),
    ...                               np.zeros((12, 3)), np.zeros((12, 4)))
    >>> hs.shape
    (2, 5, 4)
    """
    _check_sequence("gru_sequence", x)
    _check("gru_sequence", 3, raw(x)[:, 0], h0, w_ih, w_hh, b_ih, b_hh)
    gx = _project(x, w_ih)
    if b_ih is not None:
        gx = gx + b_ih
    if last is not None:
        last = _checked_last("gru_sequence", last, *np.shape(raw(x))[:2])
    hs, _ = GRU_SEQUENCE(gx, h0, w_hh, b_hh)
    return hs, np.copy(hs[:, -1]) if last is None else hs[_rows(hs, last), last]


def _checked_last(name, last, n, t):
    """``last`` as ``n`` step indices in ``0 .. t-1``, else an error naming ``name``: a
    negative index (a length of 0 minus 1) read a step from the end, the padded one,
    silently, and a boolean array was a mask."""
    if type(last) is not Tracer:  # (fl.compile's program values are not known here)
        last = array_module(last).asarray(last)
        bad = last.shape != (n,) or last.dtype.kind not in "iu"
        if bad or (n and (int(last.min()) < 0 or int(last.max()) >= t)):
            got = (f"{last.dtype} of shape {last.shape}" if bad
                   else f"values from {int(last.min())} to {int(last.max())}")
            raise ValueError(f"{name}: last must hold one step index per sequence, {n} "
                             f"integers in 0 .. {t - 1}; got {got}")
    return last


def _rows(hs, last):
    """The row index ``0 .. N-1`` that pairs with the step index ``last`` (``hs[rows, last]``),
    made by ``last``'s array module: a CuPy index does not pair with a NumPy one."""
    return array_module(last).arange(hs.shape[0])
