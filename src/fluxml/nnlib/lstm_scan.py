"""The whole-sequence LSTM kernel: one primitive over ``x (N, T, in)``, the initial state, the
weights and the summed bias, with backpropagation through time written by hand.

The scan keeps its values feature-major, ``(features, N)`` per step, so that every gate is
one contiguous block (NumPy's element-wise loops run several times slower over the strided
column slices of a ``(N, 4H)`` row-major block), in one buffer ``s (T+1, in+1+H + H + 5H, N)``
whose row ``t`` holds

- ``[x_t; 1; h_{t-1}]``: one matrix product against ``[W_ih, b, W_hh]`` gives all four
  gates' pre-activations (input projection, bias and recurrence at once);
- ``c_{t-1}``;
- step ``t``'s gates ``i, f, g, o`` and ``tanh(c_t)``: the output ``acts (T, 5H, N)`` is a view
  of these rows (hidden from callers: the rules read it, and at higher order its cotangent is
  handled).

``hs`` is returned as an ``(N, T, H)`` array (one copy: the layers after it want contiguous
rows), ``cs`` as a view of ``s``. The first-order backward pass reads ``s`` through ``acts``
(the engine copies an output before anything writes into it) and gets the weights'
cotangents from it in one matrix product. The sigmoids and the cell gate's tanh come from one
``exp`` pass (``sigmoid(z) = 1 / (1 + exp(-z))``, ``tanh(z) = 2 sigmoid(2z) - 1``): NumPy's
float32 ``tanh`` costs two ``exp``.

>>> import numpy as np
>>> from fluxml.nnlib.lstm_scan import LSTM_SEQUENCE
>>> hs, cs, _ = LSTM_SEQUENCE(np.ones((2, 3, 1)), np.zeros((2, 4)), np.zeros((2, 4)),
...                           np.zeros((16, 1)), np.zeros((16, 4)), None)
>>> hs.shape, float(cs[0, 0, 0])  # gates 1/2, g = 0: the cell stays 0
((2, 3, 4), 0.0)
"""

from __future__ import annotations

import threading

import numpy as np

from fluxml.ad.core import first_order, raw, untraced
from fluxml.ad.define import primitive
from fluxml.nnlib.recurrent import _lstm_dz, _matmul_t, _recurrent_weight_grad, _used

__all__ = ["LSTM_SEQUENCE"]


def _scales(n, like):
    """Per-row factors of ``[W_ih, b, W_hh]``: ``exp(-z)`` for the sigmoid gates, ``exp(-2z)``
    for the cell gate."""
    scale = np.full_like(like, -1, shape=(4 * n, 1))
    scale[2 * n:3 * n] = -2
    return scale


def _weights(w_ih, w_hh, b, dtype):
    """``[W_ih, b, W_hh]`` (4H, in+1+H); a zero column without a bias."""
    col = np.zeros_like(w_hh, shape=(w_hh.shape[0], 1), dtype=dtype) if b is None else \
        np.reshape(b, (-1, 1))
    return np.concatenate([w_ih, col, w_hh], axis=1).astype(dtype, copy=False)


def _lstm_impl(x, h0, c0, w_ih, w_hh, b):
    batch, steps, n_in = x.shape
    n = h0.shape[-1]
    k = n_in + 1 + n  # the rows [x_t; 1; h_{t-1}]
    dtype = np.result_type(x, h0, c0, w_ih, w_hh, *(() if b is None else (b,)))
    s = np.empty_like(x, shape=(steps + 1, k + 6 * n, batch), dtype=dtype)
    s[:steps, :n_in] = np.transpose(x, (1, 2, 0))
    s[steps] = 0  # h_T's row has no input and no gates; never read
    s[:, n_in] = 1
    s[0, n_in + 1:k] = np.swapaxes(h0, 0, 1)
    s[0, k:k + n] = np.swapaxes(c0, 0, 1)
    w = _weights(w_ih, w_hh, b, dtype) * _scales(n, s)
    ig = np.empty_like(s, shape=(n, batch))
    hs = np.empty_like(s, shape=(batch, steps, n))
    with np.errstate(over="ignore"):  # exp overflows to inf for a saturated gate: 1/inf = 0
        for t in range(steps):
            c_prev, c = s[t, k:k + n], s[t + 1, k:k + n]
            a = s[t, k + n:]
            gates = a[:4 * n]
            np.matmul(w, s[t, :k], out=gates)
            np.exp(gates, out=gates)
            gates += 1
            np.divide(1, gates, out=gates)
            g = a[2 * n:3 * n]
            g *= 2
            g -= 1
            np.multiply(a[n:2 * n], c_prev, out=c)
            np.multiply(a[:n], g, out=ig)
            c += ig
            np.tanh(c, out=a[4 * n:])
            h = s[t + 1, n_in + 1:k]
            np.multiply(a[3 * n:4 * n], a[4 * n:], out=h)
            hs[:, t] = h.T  # while the block is in cache
    return hs, np.transpose(s[1:, k:k + n], (2, 0, 1)), s[:steps, k + n:]


def _buffer(x, h0, c0, hs, cs, acts):
    """The forward pass's buffer ``s``, the base of ``acts``; rebuilt from the values when
    the outputs are not those views."""
    batch, steps, n_in = x.shape
    n = h0.shape[-1]
    k = n_in + 1 + n
    s = acts.base
    if s is None or s.shape != (steps + 1, k + 6 * n, batch) or s.dtype != acts.dtype:
        s = np.empty_like(acts, shape=(steps + 1, k + 6 * n, batch))
        s[:steps, :n_in] = np.transpose(x, (1, 2, 0))
        s[steps] = 0
        s[:, n_in] = 1
        s[0, n_in + 1:k] = np.swapaxes(h0, 0, 1)
        s[1:, n_in + 1:k] = np.transpose(hs, (1, 2, 0))
        s[0, k:k + n] = np.swapaxes(c0, 0, 1)
        s[1:, k:k + n] = np.transpose(cs, (1, 2, 0))
        s[:steps, k + n:] = acts
    return s


def _times_derivative(u, v, sigmoid, out):
    """``v * u * (1 - u)`` (``sigmoid``) or ``v * (1 - u * u)`` (tanh) into ``out``: the
    derivative of the gate ``u`` times ``v``, in three passes without temporaries."""
    if sigmoid:
        np.subtract(1, u, out=out)
        out *= u
    else:
        np.multiply(u, u, out=out)
        np.subtract(1, out, out=out)
    out *= v
    return out


_WORK = threading.local()
_WORK_LIMIT = 64 << 20  # bytes a thread keeps between calls; larger problems allocate afresh


def _scratch(like, *shapes):
    """Arrays of these shapes for the backward pass's intermediate values, carved from one
    buffer that later calls in the same thread reuse: fresh memory costs a page fault per
    4 KiB on first touch, which on a virtual machine can cost as much as the arithmetic.
    Nothing returned may be a view of them. Arrays of other libraries, and sizes past
    ``_WORK_LIMIT``, get fresh arrays."""
    sizes = [int(np.prod(shape)) for shape in shapes]
    if type(like) is not np.ndarray or sum(sizes) * like.itemsize > _WORK_LIMIT:
        return [np.empty_like(like, shape=shape) for shape in shapes]
    buf = getattr(_WORK, "buf", None)
    if buf is None or buf.dtype != like.dtype or buf.size < sum(sizes):
        buf = _WORK.buf = np.empty(sum(sizes), like.dtype)
    out, start = [], 0
    for shape, size in zip(shapes, sizes):
        out.append(buf[start:start + size].reshape(shape))
        start += size
    return out


def _lstm_vjp_raw(g_hs, g_cs, x, h0, c0, w_ih, w_hh, hs, cs, acts, positions):
    """First order on plain arrays. The factors that do not depend on the recurrence are
    computed for all steps at once, into the buffer that then holds the pre-activations'
    cotangents ``dz (T, 4H, N)``; the loop over time does six small operations and one
    matrix product (``[W_ih, W_hh]^T dz_t``: the input's and the state's cotangents)."""
    steps, _, batch = acts.shape
    n_in, n = x.shape[-1], h0.shape[-1]
    k = n_in + 1 + n
    s = _buffer(x, h0, c0, hs, cs, acts)
    xh, c_prev = s[:steps, :k], s[:steps, k:k + n]
    i, f, gg, o, tc = (acts[:, j * n:(j + 1) * n] for j in range(5))
    want_x = 0 in positions
    w_t = np.swapaxes(np.concatenate([w_ih, w_hh], axis=1) if want_x else w_hh, 0, 1)
    dz, k_all, g_h, back, dz_2, xh_2 = _scratch(
        acts, (steps, 4 * n, batch), (steps, n, batch), (steps, n, batch),
        (steps, w_t.shape[0], batch), (4 * n, steps, batch), (k, steps, batch))
    # dz = [dc g i', dc c_prev f', dc i g', dh tanh(c) o'];  dc_t = dh_t k_t + dc_{t+1} f_{t+1}
    for j, (u, v, sig) in enumerate(((i, gg, True), (f, c_prev, True), (gg, i, False),
                                     (o, tc, True))):
        _times_derivative(u, v, sig, dz[:, j * n:(j + 1) * n])
    _times_derivative(tc, o, False, k_all)
    g_h[...] = np.transpose(g_hs, (1, 2, 0))
    dh = np.empty_like(g_h[0])
    dc = np.zeros_like(dh)
    tmp = np.empty_like(dh)
    for t in range(steps - 1, -1, -1):  # back[t] = (dx_t; dh_{t-1})
        if t == steps - 1:
            dh[...] = g_h[t]
        else:
            np.add(g_h[t], back[t + 1, -n:], out=dh)
        np.multiply(dh, k_all[t], out=tmp)
        dc += tmp
        if g_cs is not None:
            dc += np.swapaxes(g_cs[:, t], 0, 1)
        d = dz[t]
        d3 = d[:3 * n].reshape(3, n, batch)
        np.multiply(d3, dc, out=d3)
        d[3 * n:] *= dh
        np.matmul(w_t, d, out=back[t])
        dc *= f[t]
    out = {1: np.ascontiguousarray(np.swapaxes(back[0, -n:], 0, 1)), 2: np.swapaxes(dc, 0, 1)}
    if want_x:
        out[0] = np.ascontiguousarray(np.transpose(back[:, :n_in], (2, 0, 1)))
    if 3 in positions or 4 in positions or 5 in positions:
        # one product over all steps: (4H, T N) against (in+1+H, T N), the 1s row giving b's
        dz_2[...] = np.swapaxes(dz, 0, 1)
        xh_2[...] = np.swapaxes(xh, 0, 1)
        dw = np.matmul(np.reshape(dz_2, (4 * n, -1)), np.swapaxes(np.reshape(xh_2, (k, -1)), 0, 1))
        out[3] = np.ascontiguousarray(dw[:, :n_in])
        out[5] = np.ascontiguousarray(dw[:, n_in])
        out[4] = np.ascontiguousarray(dw[:, n_in + 1:])
    return [out[p] for p in positions]


def _gates(a, n, count):
    """The gate blocks of one step's ``(G H, N)`` activations (or their cotangent), each
    ``(N, H)``."""
    return [np.swapaxes(a[k * n:(k + 1) * n], 0, 1) for k in range(count)]


def _lstm_vjp_kernel(*args):
    return tuple(_lstm_vjp_raw(*args))


def _lstm_vjp(g, ans, args, params, positions):
    g_hs, g_cs, g_acts = g
    x, h0, c0, w_ih, w_hh, b = args
    hs, cs, acts = ans
    n = h0.shape[-1]
    steps = x.shape[1]
    use_c, use_acts = _used(g_cs), _used(g_acts)
    if g_hs is None:  # only the cell states or the activations have a cotangent
        g_hs = np.zeros_like(raw(hs))
    if not use_acts and first_order(g_hs, x, h0, c0, w_ih, w_hh, acts) \
            and (not use_c or first_order(g_cs)):
        # first order: the NumPy kernel (under fl.compile, recorded as one call)
        return list(untraced(_lstm_vjp_kernel, (g_hs, g_cs if use_c else None, x, h0, c0,
                                                w_ih, w_hh, hs, cs, acts, positions)))
    # any order: NumPy calls only, recorded again by an outer transform
    dh = dc = None
    dzs = [None] * steps
    for t in range(steps - 1, -1, -1):
        i, f, gg, o, tc = _gates(acts[t], n, 5)
        c_prev = c0 if t == 0 else cs[:, t - 1]
        dh_t = g_hs[:, t] if dh is None else g_hs[:, t] + dh
        d_o = dh_t * tc
        d_tc = dh_t * o
        extra = _gates(g_acts[t], n, 5) if use_acts else None
        if use_acts:
            d_o, d_tc = d_o + extra[3], d_tc + extra[4]
        dc_t = d_tc * (1 - tc * tc)
        if dc is not None:
            dc_t = dc_t + dc
        if use_c:
            dc_t = dc_t + g_cs[:, t]
        dz = _lstm_dz(dc_t, d_o, i, f, gg, o, c_prev, extra)
        dzs[t] = dz
        dh = np.matmul(dz, w_hh)
        dc = dc_t * f
    out = {1: dh, 2: dc}
    dz_all = np.stack(dzs, axis=1)  # (N, T, 4H)
    if 0 in positions:
        out[0] = np.matmul(dz_all, w_ih)
    if 3 in positions:
        out[3] = _matmul_t(dz_all, x)
    if 4 in positions:
        out[4] = _recurrent_weight_grad(dz_all, h0, hs)
    if 5 in positions:
        out[5] = np.sum(dz_all, axis=(0, 1))
    return [out[p] for p in positions]


def _lstm_jvp(tangents, ans, args, params):
    x, h0, c0, w_ih, w_hh, b = args
    hs, cs, acts = ans
    n = h0.shape[-1]
    steps = x.shape[1]
    tan = dict(tangents)
    t_x, t_wih, t_whh, t_b = tan.get(0), tan.get(3), tan.get(4), tan.get(5)
    th, tc_ = tan.get(1), tan.get(2)
    ths, tcs, tas = [], [], []
    for t in range(steps):
        i, f, gg, o, tc = _gates(acts[t], n, 5)
        h_prev = h0 if t == 0 else hs[:, t - 1]
        c_prev = c0 if t == 0 else cs[:, t - 1]
        tz = np.zeros_like(raw(hs)[:, 0, :1], shape=(x.shape[0], 4 * n))
        if t_x is not None:
            tz = tz + np.matmul(t_x[:, t], np.swapaxes(w_ih, 0, 1))
        if t_wih is not None:
            tz = tz + np.matmul(x[:, t], np.swapaxes(t_wih, 0, 1))
        if th is not None:
            tz = tz + np.matmul(th, np.swapaxes(w_hh, 0, 1))
        if t_whh is not None:
            tz = tz + np.matmul(h_prev, np.swapaxes(t_whh, 0, 1))
        if t_b is not None:
            tz = tz + t_b
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
        tas.append(np.swapaxes(np.concatenate([ti, tf, tg, to, t_tc], axis=-1), 0, 1))
    return np.stack(ths, axis=1), np.stack(tcs, axis=1), np.stack(tas, axis=0)


LSTM_SEQUENCE = primitive("lstm_sequence", _lstm_impl, multiple_results=True)
LSTM_SEQUENCE.vjp_all = _lstm_vjp
LSTM_SEQUENCE.vjp_takes_none = True  # no zeros the size of acts when only hs is used
LSTM_SEQUENCE.jvp_all = _lstm_jvp
