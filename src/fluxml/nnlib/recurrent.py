"""Fused LSTM and GRU cell steps, with PyTorch's gate order and weight shapes.

LSTM (gates i, f, g, o; ``weight_ih (4H, in)``, ``weight_hh (4H, H)``, biases ``(4H,)``):

    i, f, g, o = sigmoid, sigmoid, tanh, sigmoid of x W_ih^T + b_ih + h W_hh^T + b_hh
    c' = f c + i g,   h' = o tanh(c')

GRU (gates r, z, n; ``weight_ih (3H, in)``, ``weight_hh (3H, H)``, biases ``(3H,)``):

    r, z = sigmoid(x W_ir^T + b_ir + h W_hr^T + b_hr), sigmoid(... z ...)
    n = tanh(x W_in^T + b_in + r (h W_hn^T + b_hn)),   h' = (1 - z) n + z h

Each step is one primitive over the input projection ``gx = x W_ih^T + b_ih`` (a recurrent
layer computes it for all time steps in one matrix product before its scan), the state and
``W_hh``. The primitive also returns its gate activations (not shown to callers), so that its
hand-written vjp and jvp read them instead of recomputing; both are written with NumPy
calls, so they are differentiated again at higher order.

>>> import numpy as np, fluxml as fl
>>> x, h, c = np.ones((1, 2)), np.zeros((1, 3)), np.zeros((1, 3))
>>> w_ih, w_hh = np.zeros((12, 2)), np.zeros((12, 3))
>>> h1, c1 = fl.nnlib.lstm_cell(x, h, c, w_ih, w_hh)   # all gates 1/2, g = 0
>>> c1
array([[0., 0., 0.]])
"""

from __future__ import annotations

import numpy as np

from fluxml.ad.core import Tracer, raw
from fluxml.ad.define import primitive

__all__ = ["gru_cell", "gru_step", "lstm_cell", "lstm_step"]


def _sigmoid_(a):
    """Sigmoid in place."""
    np.negative(a, out=a)
    with np.errstate(over="ignore"):  # exp overflow to inf gives exactly 0
        np.exp(a, out=a)
    a += 1
    np.reciprocal(a, out=a)
    return a


def _used(c):
    return c is not None and (type(c) is Tracer or bool(np.any(c)))


def _matmul_t(a, b):
    """``a^T b`` summed over all leading (batch) axes: the gradient of a weight."""
    a2 = np.reshape(a, (-1, a.shape[-1]))
    b2 = np.reshape(b, (-1, b.shape[-1]))
    return np.matmul(np.swapaxes(a2, 0, 1), b2)


def _recurrent_weight_grad(dz_all, h0, hs):
    """Cotangent of the hidden-to-hidden weight, ``(N, T, G)`` pre-activation cotangents
    against the state each step started from (``h0``, then ``hs`` shifted by one)."""
    h_prev = np.concatenate([np.expand_dims(h0, 1), hs[:, :-1]], axis=1)
    return _matmul_t(dz_all, h_prev)


def _add(a, b):
    return b if a is None else a + b


# --- LSTM ----------------------------------------------------------------------------------------

def _lstm_impl(gx, h, c, w):
    n = h.shape[-1]
    acts = np.empty_like(gx, shape=gx.shape[:-1] + (5 * n,), dtype=np.result_type(gx, h, c, w))
    z = acts[..., :4 * n]
    np.matmul(h, w.T, out=z)
    z += gx
    _sigmoid_(acts[..., :2 * n])
    np.tanh(acts[..., 2 * n:3 * n], out=acts[..., 2 * n:3 * n])
    _sigmoid_(acts[..., 3 * n:4 * n])
    i, f, g, o = (acts[..., k * n:(k + 1) * n] for k in range(4))
    c_new = f * c
    c_new += i * g
    tc = acts[..., 4 * n:]
    np.tanh(c_new, out=tc)
    return o * tc, c_new, acts


def _lstm_split(acts, n):
    return [acts[..., k * n:(k + 1) * n] for k in range(5)]


def _lstm_dz(dc, d_o, i, f, gg, o, c_prev, extra):
    """One LSTM step's cotangent of the pre-activations ``z`` (gates i, f, g, o), from the
    cell's ``dc``, the output gate's ``d_o`` and the previous cell state; ``extra`` adds the
    cotangents of the saved activations (None when unused)."""
    d_i, d_f, d_g = dc * gg, dc * c_prev, dc * i
    if extra is not None:
        d_i, d_f, d_g = d_i + extra[0], d_f + extra[1], d_g + extra[2]
    return np.concatenate([d_i * (i * (1 - i)), d_f * (f * (1 - f)), d_g * (1 - gg * gg),
                           d_o * (o * (1 - o))], axis=-1)


def _lstm_vjp(g, ans, args, params, positions):
    g_h, g_c, g_acts = g
    gx, h, c, w = args
    acts = ans[2]
    n = h.shape[-1]
    i, f, gg, o, tc = _lstm_split(acts, n)
    extra = _lstm_split(g_acts, n) if _used(g_acts) else None
    d_tc = g_h * o
    d_o = g_h * tc
    if extra is not None:
        d_tc = d_tc + extra[4]
        d_o = d_o + extra[3]
    dc = d_tc * (1 - tc * tc)
    if _used(g_c):
        dc = dc + g_c
    dz = _lstm_dz(dc, d_o, i, f, gg, o, c, extra)
    out = {0: dz}
    if 1 in positions:
        out[1] = np.matmul(dz, w)
    if 2 in positions:
        out[2] = dc * f
    if 3 in positions:
        out[3] = _matmul_t(dz, h)
    return [out[p] for p in positions]


def _lstm_jvp(tangents, ans, args, params):
    gx, h, c, w = args
    _, c_new, acts = ans
    n = h.shape[-1]
    i, f, gg, o, tc = _lstm_split(acts, n)
    tz = t_c = None
    for pos, t in tangents:
        if pos == 0:
            tz = _add(tz, t)
        elif pos == 1:
            tz = _add(tz, np.matmul(t, np.swapaxes(w, 0, 1)))
        elif pos == 2:
            t_c = t
        else:
            tz = _add(tz, np.matmul(h, np.swapaxes(t, 0, 1)))
    t_cn = None if t_c is None else f * t_c
    if tz is not None:
        ti = tz[..., :n] * (i * (1 - i))
        tf = tz[..., n:2 * n] * (f * (1 - f))
        tg = tz[..., 2 * n:3 * n] * (1 - gg * gg)
        to = tz[..., 3 * n:] * (o * (1 - o))
        t_cn = _add(t_cn, tf * c + ti * gg + i * tg)
    else:
        ti = tf = tg = to = np.zeros_like(t_c)
    t_tc = t_cn * (1 - tc * tc)
    t_h = to * tc + o * t_tc
    return t_h, t_cn, np.concatenate([ti, tf, tg, to, t_tc], axis=-1)


LSTM_STEP = primitive("lstm_step", _lstm_impl, multiple_results=True)
LSTM_STEP.vjp_all = _lstm_vjp
LSTM_STEP.jvp_all = _lstm_jvp


# --- GRU -----------------------------------------------------------------------------------------

def _gru_impl(gx, h, w, b):
    n = h.shape[-1]
    acts = np.empty_like(gx, shape=gx.shape[:-1] + (4 * n,), dtype=np.result_type(gx, h, w))
    gh = np.matmul(h, w.T)
    if b is not None:
        gh += b
    rz = acts[..., :2 * n]
    np.add(gx[..., :2 * n], gh[..., :2 * n], out=rz)
    _sigmoid_(rz)
    r, z, nn, ghn = (acts[..., k * n:(k + 1) * n] for k in range(4))
    ghn[...] = gh[..., 2 * n:]
    np.multiply(r, ghn, out=nn)
    nn += gx[..., 2 * n:]
    np.tanh(nn, out=nn)
    h_new = h - nn
    h_new *= z
    h_new += nn
    return h_new, acts


def _gru_split(acts, n):
    return [acts[..., k * n:(k + 1) * n] for k in range(4)]


def _gru_vjp(g, ans, args, params, positions):
    g_h, g_acts = g
    gx, h, w, b = args
    n = h.shape[-1]
    r, z, nn, ghn = _gru_split(ans[1], n)
    extra = _gru_split(g_acts, n) if _used(g_acts) else None
    d_n = g_h * (1 - z)
    d_z = g_h * (h - nn)
    if extra is not None:
        d_n, d_z = d_n + extra[2], d_z + extra[1]
    da_n = d_n * (1 - nn * nn)
    d_r = da_n * ghn
    d_ghn = da_n * r
    if extra is not None:
        d_r, d_ghn = d_r + extra[0], d_ghn + extra[3]
    da_r = d_r * (r * (1 - r))
    da_z = d_z * (z * (1 - z))
    out = {}
    if 0 in positions:
        out[0] = np.concatenate([da_r, da_z, da_n], axis=-1)
    if positions != [0]:
        dgh = np.concatenate([da_r, da_z, d_ghn], axis=-1)
        if 1 in positions:
            out[1] = g_h * z + np.matmul(dgh, w)
        if 2 in positions:
            out[2] = _matmul_t(dgh, h)
        if 3 in positions:
            out[3] = dgh  # summed over the batch axes by the engine
    return [out[p] for p in positions]


def _gru_jvp(tangents, ans, args, params):
    gx, h, w, b = args
    n = h.shape[-1]
    r, z, nn, ghn = _gru_split(ans[1], n)
    t_gx = t_gh = t_h = None
    for pos, t in tangents:
        if pos == 0:
            t_gx = t
        elif pos == 1:
            t_h = t
            t_gh = _add(t_gh, np.matmul(t, np.swapaxes(w, 0, 1)))
        elif pos == 2:
            t_gh = _add(t_gh, np.matmul(h, np.swapaxes(t, 0, 1)))
        else:
            t_gh = _add(t_gh, t)
    ta = t_gx if t_gh is None else _add(t_gx, t_gh)
    if ta is None:  # only h's tangent, and no weight: impossible (h enters through W_hh)
        ta = np.zeros_like(raw(gx))
    tr = ta[..., :n] * (r * (1 - r))
    tz = ta[..., n:2 * n] * (z * (1 - z))
    t_ghn = np.zeros_like(ghn) if t_gh is None else t_gh[..., 2 * n:]
    ta_n = tr * ghn + r * t_ghn
    if t_gx is not None:
        ta_n = ta_n + t_gx[..., 2 * n:]
    tn = ta_n * (1 - nn * nn)
    t_new = tn * (1 - z) + tz * (h - nn)
    if t_h is not None:
        t_new = t_new + z * t_h
    if t_new.shape != ans[0].shape:
        t_new = t_new + np.zeros_like(ans[0])
    return t_new, np.concatenate([tr, tz, tn, t_ghn + np.zeros_like(tn)], axis=-1)


GRU_STEP = primitive("gru_step", _gru_impl, multiple_results=True)
GRU_STEP.vjp_all = _gru_vjp
GRU_STEP.jvp_all = _gru_jvp


# --- the functions -------------------------------------------------------------------------------

def _check(name, gates, x, h, w_ih, w_hh, b_ih, b_hh, c=None):
    sx, sh = np.shape(raw(x)), np.shape(raw(h))
    if len(sh) < 1 or len(sx) < 1:
        raise ValueError(f"{name}: x and h must have a feature axis; got {sx}, {sh}")
    n = sh[-1]
    want = {"weight_ih": (gates * n, sx[-1]), "weight_hh": (gates * n, n),
            "bias_ih": (gates * n,), "bias_hh": (gates * n,)}
    for what, arr in (("weight_ih", w_ih), ("weight_hh", w_hh), ("bias_ih", b_ih),
                      ("bias_hh", b_hh)):
        if arr is not None and np.shape(raw(arr)) != want[what]:
            raise ValueError(f"{name}: {what} must have shape {want[what]} for input "
                             f"features {sx[-1]} and hidden size {n}; got "
                             f"{np.shape(raw(arr))}")
    if sx[:-1] != sh[:-1]:
        raise ValueError(f"{name}: x {sx} and h {sh} must share their batch axes")
    if c is not None and np.shape(raw(c)) != sh:
        raise ValueError(f"{name}: the cell state must have h's shape {sh}; got "
                         f"{np.shape(raw(c))}")


def lstm_step(gx, h, c, w_hh):
    """One LSTM step from the input projection ``gx = x @ w_ih.T + b_ih + b_hh``
    (``(N, 4H)``): returns ``(h', c')``.

    >>> import numpy as np, fluxml as fl
    >>> h, c = fl.nnlib.lstm_step(np.zeros((1, 4)), np.zeros((1, 1)), np.ones((1, 1)),
    ...                           np.zeros((4, 1)))
    >>> float(c[0, 0])
    0.5
    """
    h_new, c_new, _ = LSTM_STEP(gx, h, c, w_hh)
    return h_new, c_new


def lstm_cell(x, h, c, w_ih, w_hh, b_ih=None, b_hh=None):
    """One LSTM step (PyTorch's ``LSTMCell``): ``x (N, in)``, ``h, c (N, H)``, ``w_ih
    (4H, in)``, ``w_hh (4H, H)``, biases ``(4H,)``. Returns ``(h', c')``; see the module
    docstring for the equations.

    >>> import numpy as np, fluxml as fl
    >>> h, c = fl.nnlib.lstm_cell(np.ones((2, 3)), np.zeros((2, 1)), np.ones((2, 1)),
    ...                           np.zeros((4, 3)), np.zeros((4, 1)))
    >>> c  # forget and input gates at 0.5: half of c, plus half of tanh(0)
    array([[0.5],
           [0.5]])
    """
    _check("lstm_cell", 4, x, h, w_ih, w_hh, b_ih, b_hh, c)
    gx = np.matmul(x, np.swapaxes(w_ih, 0, 1))
    for b in (b_ih, b_hh):
        if b is not None:
            gx = gx + b
    return lstm_step(gx, h, c, w_hh)


def gru_step(gx, h, w_hh, b_hh=None):
    """One GRU step from the input projection ``gx = x @ w_ih.T + b_ih`` (``(N, 3H)``);
    ``b_hh`` stays separate (it is inside ``r * (...)``). Returns ``h'``.

    >>> import numpy as np, fluxml as fl
    >>> fl.nnlib.gru_step(np.zeros((1, 3)), np.ones((1, 1)), np.zeros((3, 1)))
    array([[0.5]])
    """
    h_new, _ = GRU_STEP(gx, h, w_hh, b_hh)
    return h_new


def gru_cell(x, h, w_ih, w_hh, b_ih=None, b_hh=None):
    """One GRU step (PyTorch's ``GRUCell``): ``x (N, in)``, ``h (N, H)``, ``w_ih (3H, in)``,
    ``w_hh (3H, H)``, biases ``(3H,)``. Returns ``h'``; see the module docstring.

    >>> import numpy as np, fluxml as fl
    >>> fl.nnlib.gru_cell(np.ones((1, 2)), np.ones((1, 1)), np.zeros((3, 2)), np.zeros((3, 1)))
    array([[0.5]])
    """
    _check("gru_cell", 3, x, h, w_ih, w_hh, b_ih, b_hh)
    gx = np.matmul(x, np.swapaxes(w_ih, 0, 1))
    if b_ih is not None:
        gx = gx + b_ih
    return gru_step(gx, h, w_hh, b_hh)
