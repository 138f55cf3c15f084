"""Whole-sequence LSTM and GRU kernels: the scan over time inside one primitive each.

A recurrent layer could scan ``lstm_step`` over time (one tape node per step); these kernels
run the whole scan in one primitive instead, with backpropagation through time written by
hand: per step only the recurrent matrix product and the gate arithmetic, and the weight
gradient as one matrix product over all steps at the end (``dW_hh = sum_t dz_t^T h_{t-1}``).
The equations and shapes are ``recurrent.py``'s (PyTorch's gate orders). Inputs are batch
first, ``x (N, T, in)``; the input projection of all steps is one matrix product before the
scan. The vjp and jvp loops are written with NumPy calls, so they are differentiated again
at higher order.

>>> import numpy as np, fluxml as fl
>>> x = np.ones((1, 3, 2))
>>> hs, h, c = fl.nnlib.lstm_sequence(x, np.zeros((1, 4)), np.zeros((1, 4)),
...                                   np.zeros((16, 2)), np.zeros((16, 4)))
>>> hs.shape, h.shape
((1, 3, 4), (1, 4))
"""

from __future__ import annotations

import numpy as np

from fluxml.ad.core import first_order, raw, untraced
from fluxml.ad.define import primitive
from fluxml.nnlib.recurrent import _check, _lstm_dz, _matmul_t, _sigmoid_, _used

__all__ = ["gru_sequence", "lstm_sequence"]


def _gate(acts, k, n):
    return acts[..., k * n:(k + 1) * n]


# --- LSTM ----------------------------------------------------------------------------------------

def _lstm_half(n, like):
    """Per-column factors: sigmoid(z) = tanh(z / 2) / 2 + 1/2 for the i, f, o gates, so one
    tanh call covers all four gates."""
    half = np.full_like(like, 0.5, shape=(4 * n,))
    half[2 * n:3 * n] = 1
    shift = np.full_like(like, 0.5, shape=(4 * n,))
    shift[2 * n:3 * n] = 0
    return half, shift


def _times_derivative(u, v, sigmoid, out=None):
    """``v * u * (1 - u)`` (``sigmoid``) or ``v * (1 - u * u)`` (tanh), the derivative of
    the gate ``u`` times ``v``, in three passes without temporaries."""
    if sigmoid:
        out = np.subtract(1, u, out=out)
        out *= u
    else:
        out = np.multiply(u, u, out=out)
        np.subtract(1, out, out=out)
    out *= v
    return out


def _recurrent_weight_grad(dz_all, h0, hs):
    """Cotangent of the hidden-to-hidden weight, ``(N, T, G)`` pre-activation cotangents
    against the state each step started from (``h0``, then ``hs`` shifted by one)."""
    h_prev = np.concatenate([np.expand_dims(h0, 1), hs[:, :-1]], axis=1)
    return _matmul_t(dz_all, h_prev)


def _lstm_impl(gx, h0, c0, w):
    batch, steps, _ = gx.shape
    n = h0.shape[-1]
    dtype = np.result_type(gx, h0, c0, w)
    acts = np.empty_like(gx, shape=(steps, batch, 5 * n), dtype=dtype)  # i, f, g, o, tanh c
    hs = np.empty_like(acts, shape=(steps, batch, n))
    cs = np.empty_like(acts, shape=(steps, batch, n))
    half, shift = _lstm_half(n, acts)
    gx_half = gx * half  # the sigmoid gates' 1/2 folded into the projections
    w_half = (w * half[:, None]).T
    z = np.empty_like(acts, shape=(batch, 4 * n))
    h, c = h0, c0
    for t in range(steps):
        a = acts[t]
        np.matmul(h, w_half, out=z)
        z += gx_half[:, t]
        gates = a[:, :4 * n]
        np.tanh(z, out=gates)
        gates *= half
        gates += shift
        np.multiply(a[:, n:2 * n], c, out=cs[t])
        cs[t] += a[:, :n] * a[:, 2 * n:3 * n]
        np.tanh(cs[t], out=a[:, 4 * n:])
        np.multiply(a[:, 3 * n:4 * n], a[:, 4 * n:], out=hs[t])
        h, c = hs[t], cs[t]
    return np.swapaxes(hs, 0, 1), np.swapaxes(cs, 0, 1), acts


def _lstm_vjp_raw(g_hs, g_cs, gx, h0, c0, w, hs, cs, acts, positions):
    """First order on plain arrays: the factors that do not depend on the recurrence are
    computed for all steps at once; the loop over time does six small operations and the
    matrix product."""
    steps, batch, _ = acts.shape
    n = h0.shape[-1]
    i, f, gg, o, tc = (_gate(acts, k, n) for k in range(5))
    c_prev = np.concatenate([c0[None], np.swapaxes(cs, 0, 1)[:-1]])  # (T, N, H)
    # dz[:, :3H] = dc_t * a3_t;  dz[:, 3H:] = dh_t * b_t;  dc_t = dh_t * k_t + dc_{t+1} f_{t+1}
    a3 = np.empty_like(acts, shape=(steps, batch, 3, n))
    for j, (u, v, sig) in enumerate(((i, gg, True), (f, c_prev, True), (gg, i, False))):
        _times_derivative(u, v, sig, out=a3[:, :, j])  # in place: no temporaries
    b = _times_derivative(o, tc, True)
    k = _times_derivative(tc, o, False)
    dz_all = np.empty_like(acts, shape=(steps, batch, 4 * n))
    g_hs_t = np.swapaxes(g_hs, 0, 1)
    g_cs_t = None if g_cs is None else np.swapaxes(g_cs, 0, 1)
    dh = np.zeros_like(acts, shape=(batch, n))
    dc = np.zeros_like(acts, shape=(batch, n))
    for t in range(steps - 1, -1, -1):
        dh += g_hs_t[t]
        dc += dh * k[t]
        if g_cs_t is not None:
            dc += g_cs_t[t]
        dz = dz_all[t]
        np.multiply(a3[t], dc[:, None, :], out=dz[:, :3 * n].reshape(batch, 3, n))
        np.multiply(dh, b[t], out=dz[:, 3 * n:])
        np.matmul(dz, w, out=dh)
        dc *= f[t]
    out = {1: dh, 2: dc}
    if 0 in positions:
        out[0] = np.swapaxes(dz_all, 0, 1)
    if 3 in positions:
        h_prev = np.concatenate([h0[None], np.swapaxes(hs, 0, 1)[:-1]])
        out[3] = _matmul_t(dz_all, h_prev)
    return [out[p] for p in positions]


def _lstm_vjp_kernel(*args):
    return tuple(_lstm_vjp_raw(*args))


def _lstm_vjp(g, ans, args, params, positions):
    g_hs, g_cs, g_acts = g
    gx, h0, c0, w = args
    hs, cs, acts = ans
    n = h0.shape[-1]
    steps = gx.shape[1]
    use_c, use_acts = _used(g_cs), _used(g_acts)
    if not use_acts and first_order(g_hs, g_cs, h0, c0, w, acts):
        return list(untraced(_lstm_vjp_kernel, (g_hs, g_cs if use_c else None, gx, h0, c0, w,
                                                hs, cs, acts, positions)))
    dh = dc = None
    dzs = [None] * steps
    for t in range(steps - 1, -1, -1):
        a = acts[t]
        i, f, gg, o, tc = (_gate(a, k, n) for k in range(5))
        c_prev = c0 if t == 0 else cs[:, t - 1]
        dh_t = g_hs[:, t] if dh is None else g_hs[:, t] + dh
        d_o = dh_t * tc
        d_tc = dh_t * o
        if use_acts:
            extra = [_gate(g_acts[t], k, n) for k in range(5)]
            d_o, d_tc = d_o + extra[3], d_tc + extra[4]
        dc_t = d_tc * (1 - tc * tc)
        if dc is not None:
            dc_t = dc_t + dc
        if use_c:
            dc_t = dc_t + g_cs[:, t]
        dz = _lstm_dz(dc_t, d_o, i, f, gg, o, c_prev, extra if use_acts else None)
        dzs[t] = dz
        dh = np.matmul(dz, w)
        dc = dc_t * f
    out = {1: dh, 2: dc}
    if 0 in positions or 3 in positions:
        dz_all = np.stack(dzs, axis=1)  # (N, T, 4H)
        out[0] = dz_all
        if 3 in positions:
            out[3] = _recurrent_weight_grad(dz_all, h0, hs)
    return [out[p] for p in positions]


def _lstm_jvp(tangents, ans, args, params):
    gx, h0, c0, w = args
    hs, cs, acts = ans
    n = h0.shape[-1]
    steps = gx.shape[1]
    tan = dict(tangents)
    t_gx, t_w = tan.get(0), tan.get(3)
    th, tc_ = tan.get(1), tan.get(2)
    w_t = np.swapaxes(w, 0, 1)
    ths, tcs, tas = [], [], []
    for t in range(steps):
        a = acts[t]
        i, f, gg, o, tc = (_gate(a, k, n) for k in range(5))
        h_prev = h0 if t == 0 else hs[:, t - 1]
        c_prev = c0 if t == 0 else cs[:, t - 1]
        tz = None if t_gx is None else t_gx[:, t]
        if th is not None:
            term = np.matmul(th, w_t)
            tz = term if tz is None else tz + term
        if t_w is not None:
            term = np.matmul(h_prev, np.swapaxes(t_w, 0, 1))
            tz = term if tz is None else tz + term
        if tz is None:
            tz = np.zeros_like(raw(gx)[:, t])
        ti = tz[..., :n] * (i * (1 - i))
        tf = tz[..., n:2 * n] * (f * (1 - f))
        tg = tz[..., 2 * n:3 * n] * (1 - gg * gg)
        to = tz[..., 3 * n:] * (o * (1 - o))
        t_c = tf * c_prev + ti * gg + i * tg
        if tc_ is not None:
            t_c = t_c + f * tc_
        t_tc = t_c * (1 - tc * tc)
        th = to * tc + o * t_tc
        tc_ = t_c
        ths.append(th)
        tcs.append(t_c)
        tas.append(np.concatenate([ti, tf, tg, to, t_tc], axis=-1))
    return np.stack(ths, axis=1), np.stack(tcs, axis=1), np.stack(tas, axis=0)


LSTM_SEQUENCE = primitive("lstm_sequence", _lstm_impl, multiple_results=True)
LSTM_SEQUENCE.vjp_all = _lstm_vjp
LSTM_SEQUENCE.jvp_all = _lstm_jvp


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
    return np.reshape(gx, (n, t, -1))


def _check_sequence(name, x):
    if len(np.shape(raw(x))) != 3:
        raise ValueError(f"{name}: expected a batch-first sequence x (N, T, features); got "
                         f"shape {np.shape(raw(x))}")
    if np.shape(raw(x))[1] == 0:
        raise ValueError(f"{name}: the sequence is empty (T = 0)")


def lstm_sequence(x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None):
    """An LSTM over a whole sequence ``x (N, T, in)`` from the state ``h0, c0 (N, H)``, with
    PyTorch's weights (``w_ih (4H, in)``, ``w_hh (4H, H)``, biases ``(4H,)``). Returns
    ``(hs (N, T, H), h_T, c_T)``: every step's hidden state and the final state."""
    _check_sequence("lstm_sequence", x)
    _check("lstm_sequence", 4, raw(x)[:, 0], h0, w_ih, w_hh, b_ih, b_hh, c0)
    gx = _project(x, w_ih)
    bias = b_hh if b_ih is None else b_ih if b_hh is None else b_ih + b_hh
    if bias is not None:  # summed first: one pass over gx, one reduction in the backward
        gx = gx + bias
    hs, cs, _ = LSTM_SEQUENCE(gx, h0, c0, w_hh)
    return hs, hs[:, -1], cs[:, -1]


def gru_sequence(x, h0, w_ih, w_hh, b_ih=None, b_hh=None):
    """A GRU over a whole sequence ``x (N, T, in)`` from ``h0 (N, H)``, with PyTorch's
    weights (``w_ih (3H, in)``, ``w_hh (3H, H)``, biases ``(3H,)``). Returns
    ``(hs (N, T, H), h_T)``.

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
    hs, _ = GRU_SEQUENCE(gx, h0, w_hh, b_hh)
    return hs, hs[:, -1]
