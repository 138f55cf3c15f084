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
(the engine copies an output before anything writes into it); per step it runs one matrix
product, ``W_hh^T dz_t`` (the state's cotangent), and after the loop the weights' cotangents
and the input's are one product each over all steps. The sigmoids and the cell gate's tanh
come from one ``exp`` pass (``sigmoid(z) = 1 / (1 + exp(-z))``, ``tanh(z) = 2 sigmoid(2z) -
1``). Where nothing can be
differentiated (NumPy arrays outside any transform), :func:`lstm_inference` runs the same
steps without keeping ``s``.

>>> import numpy as np
>>> from fluxml.nnlib.lstm_scan import LSTM_SEQUENCE
>>> hs, cs, _ = LSTM_SEQUENCE(np.ones((2, 3, 1)), np.zeros((2, 4)), np.zeros((2, 4)),
...                           np.zeros((16, 1)), np.zeros((16, 4)), None)
>>> hs.shape, float(cs[0, 0, 0])  # gates 1/2, g = 0: the cell stays 0
((2, 3, 4), 0.0)
"""

from __future__ import annotations

import math

import numpy as np

from fluxml.ad.core import first_order, raw, untraced
from fluxml.ad.define import primitive
from fluxml.backend import threads
from fluxml.nnlib import windows
from fluxml.nnlib.recurrent import _lstm_dz, _matmul_t, _recurrent_weight_grad, _used

__all__ = ["LSTM_SEQUENCE"]


def _forward_scratch(w_ih, w_hh, b, n, batch, like, *shapes):
    """The forward pass's scratch, one block (the ``"lstm"`` workspace holds one call's
    arrays at a time): ``[W_ih, b, W_hh]`` (4H, in+1+H) with its rows times -1 for the
    sigmoid gates and -2 for the cell gate (a zero column without a bias), so that one
    ``exp`` pass gives ``exp(-z)`` and ``exp(-2z)``; ones ``(4H, N)``; a block ``(H, N)`` for
    ``i g``; then arrays of ``shapes``."""
    n_in = w_ih.shape[-1]
    w, ones, ig, *rest = _scratch(like, (4 * n, n_in + 1 + n), (4 * n, batch), (n, batch),
                                  *shapes)
    factor = np.full_like(w, -1, shape=(4 * n, 1))
    factor[2 * n:3 * n] = -2
    np.multiply(w_ih, factor, out=w[:, :n_in])
    if b is None:
        w[:, n_in] = 0
    else:
        np.multiply(b, factor[:, 0], out=w[:, n_in])
    np.multiply(w_hh, factor, out=w[:, n_in + 1:])
    ones[...] = 1
    return w, ones, ig, *rest


def _products(like) -> int:
    """In how many row blocks a step's product is computed (``[W_ih, b, W_hh] [x_t; 1;
    h_{t-1}]``, and ``W_hh^T dz_t`` backwards): one per gate where NumPy's BLAS is an
    OpenBLAS running its AVX-512 kernels (``threads.small_products()``) on one thread, else
    one.

    Those kernels compute a product of under ~10^6 multiply-adds directly (OpenBLAS's
    "small matrix" and "direct sgemm" paths), skipping the packing of the operands that each
    call of a larger one pays (the whole weight matrix, at every step): there four gate
    products are faster than the whole one (H=128, N=32, in=64, float32, one thread: the
    forward step's products 28.5 us against 33.8 us with OpenBLAS's SkylakeX kernels; on an
    earlier machine 62 against 73, the backward pass's 43 against 54). OpenBLAS's AVX2
    kernels (Haswell, Zen) have no such path, and there the whole product is faster (57.0
    against 61.9 us; the layer's forward and backward passes 11.3 ms against 11.9). With more
    threads the whole product is split among them (the forward pass's wall time: 3.5 ms
    against 4.4 ms at two threads), four small ones are not. The choice is the machine's, not
    a timing's: the results of the two differ in the last bits."""
    if type(like) is not np.ndarray or threads.limit() != 1:
        return 1
    return 4 if threads.small_products() else 1


def _blocks(a, parts):
    """``a``'s rows in ``parts`` blocks of (nearly) equal size (views)."""
    rows = a.shape[0]
    return [a[j * rows // parts:(j + 1) * rows // parts] for j in range(parts)]


def _rows(n_in, n):
    """``k`` (the rows ``[x_t; 1; h_{t-1}]``) and the number of rows of ``s``."""
    k = n_in + 1 + n
    return k, k + 6 * n


def _fill(xh, x, h0):
    """The rows ``[x_t; 1; h_0]`` of ``xh (T+1, k, N)``: every step's input, the bias's ones
    and the initial state (the steps write the later ``h_t``); the input rows after the last
    step, never read, are zeros."""
    steps, n_in = x.shape[1:]
    xh[:steps, :n_in] = np.transpose(x, (1, 2, 0))
    xh[steps, :n_in] = 0
    xh[:, n_in] = 1
    xh[0, n_in + 1:] = np.swapaxes(h0, 0, 1)


def _scan(scratch, xh, z, cell, tc, hs):
    """The recurrence, with ``_forward_scratch``'s arrays. Step ``t`` reads ``xh[t]``
    (``[x_t; 1; h_{t-1}]``) and ``cell[t]``, and writes the gates ``i, f, g, o`` into ``z[t]
    (4H, N)``, ``cell[t+1]``, ``tc[t] = tanh(c_t)``, ``h_t`` into ``xh[t+1]`` and ``hs[:, t]``.
    ``z``, ``cell`` and ``tc`` are indexed by the step: rows of the saved buffer, or a few
    reused blocks when nothing is saved."""
    w, ones, ig = scratch[:3]
    n = ig.shape[0]
    start = xh.shape[1] - n  # h's first row in xh
    parts = _products(w)  # (1 or 4: the gates' row blocks)
    weights = _blocks(w, parts)
    hs_t = np.transpose(hs, (1, 2, 0))  # (T, H, N): hs_t[t] = h_t copies at 1.5 us, where
    # hs[:, t] = h_t.T took 2.5 us (N=32, H=128)
    ones_h = ones[:n]
    # the sigmoids 1 / (1 + exp(-z)), the cell gate tanh(z) = 2 sigmoid(2z) - 1: accurate to
    # the last bits for small gates as well (tanh(z / 2) / 2 + 1/2, one pass less, measured
    # ~3% faster, lost the relative accuracy of a gate below ~1e-4: a forget gate of 1e-7
    # came out 15% off, and exactly 0 below ~6e-8); arrays, not Python numbers: NumPy's call
    # with a number costs ~0.5-1 us more (its type promotion)
    with np.errstate(over="ignore"):  # exp overflows to inf for a saturated gate: 1/inf = 0
        for t in range(xh.shape[0] - 1):
            zt, xt = z[t], xh[t]
            it, ft, gt, ot = gates = _blocks(zt, 4)  # (views, sliced once a step)
            if parts == 1:
                np.matmul(w, xt, out=zt)
            else:
                for wj, zj in zip(weights, gates):
                    np.matmul(wj, xt, out=zj)
            np.exp(zt, out=zt)
            np.add(zt, ones, out=zt)
            np.divide(ones, zt, out=zt)
            np.add(gt, gt, out=gt)
            np.subtract(gt, ones_h, out=gt)
            ct = cell[t + 1]
            np.multiply(ft, cell[t], out=ct)
            np.multiply(it, gt, out=ig)
            np.add(ct, ig, out=ct)
            tct = tc[t]
            np.tanh(ct, out=tct)
            ht = xh[t + 1, start:]
            np.multiply(ot, tct, out=ht)
            hs_t[t] = ht  # while the block is in cache


def _dtype(x, h0, c0, w_ih, w_hh, b):
    return np.result_type(x, h0, c0, w_ih, w_hh, *(() if b is None else (b,)))


def _lstm_impl(x, h0, c0, w_ih, w_hh, b):
    batch, steps, n_in = x.shape
    n = h0.shape[-1]
    k, rows = _rows(n_in, n)
    s = np.empty_like(x, shape=(steps + 1, rows, batch), dtype=_dtype(x, h0, c0, w_ih, w_hh, b))
    _fill(s[:, :k], x, h0)
    s[steps, k:] = 0  # h_T's row has no gates; never read
    s[0, k:k + n] = np.swapaxes(c0, 0, 1)
    hs = np.empty_like(s, shape=(batch, steps, n))
    scratch = _forward_scratch(w_ih, w_hh, b, n, batch, s)
    _scan(scratch, s[:, :k], s[:, k + n:k + 5 * n], s[:, k:k + n], s[:, k + 5 * n:], hs)
    return hs, np.transpose(s[1:, k:k + n], (2, 0, 1)), s[:steps, k + n:]


def lstm_inference(x, h0, c0, w_ih, w_hh, b):
    """``LSTM_SEQUENCE``'s ``hs (N, T, H)`` and final state ``h_T, c_T (N, H)`` for NumPy
    arrays that no derivative is taken through: nothing is kept for a backward pass, so the
    steps run in a few reused blocks that stay in cache (a model's forward pass outside
    ``fl.gradient``, as PyTorch's under ``no_grad``). The same numbers as ``LSTM_SEQUENCE``.

    >>> import numpy as np
    >>> hs, h, c = lstm_inference(np.ones((2, 3, 1)), np.zeros((2, 4)), np.zeros((2, 4)),
    ...                           np.zeros((16, 1)), np.zeros((16, 4)), None)
    >>> hs.shape, float(c[0, 0])  # gates 1/2, g = 0: the cell stays 0
    ((2, 3, 4), 0.0)
    """
    batch, steps, n_in = x.shape
    n = h0.shape[-1]
    k, _ = _rows(n_in, n)
    like = np.empty(0, _dtype(x, h0, c0, w_ih, w_hh, b))
    scratch = _forward_scratch(w_ih, w_hh, b, n, batch, like, (steps + 1, k, batch),
                               (4 * n, batch), (2, n, batch), (n, batch))
    xh, z, cell, tc = scratch[3:]
    _fill(xh, x, h0)
    cell[0] = np.swapaxes(c0, 0, 1)
    hs = np.empty_like(like, shape=(batch, steps, n))
    _scan(scratch, xh, [z] * steps, [cell[t % 2] for t in range(steps + 1)], [tc] * steps, hs)
    return hs, hs[:, -1].copy(), np.swapaxes(cell[steps % 2], 0, 1).copy()  # (h: not a view)


def _buffer(x, h0, c0, hs, cs, acts):
    """The forward pass's buffer ``s``, the base of ``acts``; rebuilt from the values when
    the outputs are not those views."""
    batch, steps, n_in = x.shape
    n = h0.shape[-1]
    k, rows = _rows(n_in, n)
    s = acts.base
    if s is None or s.shape != (steps + 1, rows, batch) or s.dtype != acts.dtype:
        s = np.empty_like(acts, shape=(steps + 1, rows, batch))
        s[:steps, :n_in] = np.transpose(x, (1, 2, 0))
        s[steps] = 0
        s[:, n_in] = 1
        s[0, n_in + 1:k] = np.swapaxes(h0, 0, 1)
        s[1:, n_in + 1:k] = np.transpose(hs, (1, 2, 0))
        s[0, k:k + n] = np.swapaxes(c0, 0, 1)
        s[1:, k:k + n] = np.transpose(cs, (1, 2, 0))
        s[:steps, k + n:] = acts
    return s


def _scratch(like, *shapes):
    """Arrays of these shapes for intermediate values (the forward pass's weights, the
    backward pass's buffers), carved from the thread's ``"lstm"`` workspace
    (:func:`fluxml.nnlib.windows.workspace`), which later calls reuse: fresh memory costs a
    page fault per 4 KiB on first touch, which on a virtual machine can cost as much as the
    arithmetic. Nothing returned may be a view of them. Arrays of other libraries get fresh
    arrays, and so do sizes past the limit of :func:`fluxml.nnlib.windows.scratch`."""
    if type(like) is not np.ndarray:
        return [np.empty_like(like, shape=shape) for shape in shapes]
    sizes = [math.prod(shape) for shape in shapes]
    buf = windows.scratch((sum(sizes),), like.dtype, np, "lstm")
    out, start = [], 0
    for shape, size in zip(shapes, sizes):
        out.append(buf[start:start + size].reshape(shape))
        start += size
    return out


def _lstm_vjp_raw(g_hs, g_cs, x, h0, c0, w_ih, w_hh, hs, cs, acts, positions):
    """First order on plain arrays. The factors that do not depend on the recurrence are
    computed for all steps at once into the buffer that then holds the pre-activations'
    cotangents ``dz (T, 4H, N)``; the loop over time does five small operations and one
    matrix product (``W_hh^T dz_t``, the state's cotangent). The input's and the weights'
    cotangents are each one product over all steps."""
    steps, _, batch = acts.shape
    n_in, n = x.shape[-1], h0.shape[-1]
    k, _ = _rows(n_in, n)
    s = _buffer(x, h0, c0, hs, cs, acts)
    c_prev, i, f, gg, o = (s[:steps, k + j * n:k + (j + 1) * n] for j in range(5))
    i_f = s[:steps, k + n:k + 3 * n]
    tc = s[:steps, k + 5 * n:]
    h = s[1:, n_in + 1:k]  # h_t = o tanh(c_t)
    want_x = 0 in positions
    want_w = 3 in positions or 4 in positions or 5 in positions
    p, w_t, dh, dh_in, dc, dz_2, dx, xh_2, dw = _scratch(
        acts, (steps, 5, n, batch), (n, 4 * n), (n, batch), (n, batch),
        (n, batch), (4 * n, steps, batch),
        (steps * batch, n_in) if want_x else (0, n_in),  # (only read where wanted)
        (steps, batch, k) if want_w else (0, batch, k), (4 * n, k) if want_w else (0, k))
    # dz = [dc i', dc f', dc g', dh o'] and dc_t = dh_t k_t + dc_{t+1} f_{t+1}, where, from
    # the products i g and f c_{t-1} of the cell update: i' = g i (1 - i) = (i g) - (i g) i,
    # f' = (f c_{t-1}) - (f c_{t-1}) f, g' = i (1 - g^2) = i - (i g) g; and from h = o tanh(c):
    # o' = tanh(c) o (1 - o) = h (1 - o), k = o (1 - tanh(c)^2) = o - h tanh(c)
    prods = np.reshape(p, (steps, 5 * n, batch))[:, :2 * n]  # p is contiguous: views
    tmp = np.reshape(np.reshape(dz_2, -1)[:steps * 2 * n * batch], prods.shape)  # free yet
    np.multiply(i, gg, out=p[:, 0])
    np.multiply(f, c_prev, out=p[:, 1])
    np.multiply(p[:, 0], gg, out=p[:, 2])
    np.subtract(i, p[:, 2], out=p[:, 2])
    np.multiply(prods, i_f, out=tmp)
    prods -= tmp
    np.subtract(1, o, out=p[:, 3])
    p[:, 3] *= h
    np.multiply(h, tc, out=p[:, 4])
    np.subtract(o, p[:, 4], out=p[:, 4])
    g_h = np.transpose(g_hs, (1, 2, 0))  # (T, H, N) views: one copy in the loop's add
    w_t[...] = np.swapaxes(w_hh, 0, 1)
    dz = np.reshape(p, (steps, 5 * n, batch))[:, :4 * n]
    i_f_g, o_k = p[:, :3], p[:, 3:]
    dc[...] = 0
    parts = _products(w_t)
    w_parts, dh_parts = _blocks(w_t, parts), _blocks(dh_in, parts)
    for t in range(steps - 1, -1, -1):
        if t == steps - 1:
            dh_t = g_h[t]
        else:
            dh_t = dh
            np.add(g_h[t], dh_in, out=dh)
        ok = o_k[t]
        np.multiply(ok, dh_t, out=ok)  # dz_o and dh k
        dc += ok[1]
        if g_cs is not None:
            dc += np.swapaxes(g_cs[:, t], 0, 1)
        ifg = i_f_g[t]
        np.multiply(ifg, dc, out=ifg)
        dzt = dz[t]
        for wj, dj in zip(w_parts, dh_parts):
            np.matmul(wj, dzt, out=dj)
        dc *= f[t]
    # copies, never views of the scratch buffers (for one sample a transpose of them is
    # contiguous already, and ascontiguousarray would return the scratch itself)
    out = {1: np.swapaxes(dh_in, 0, 1).copy(), 2: np.swapaxes(dc, 0, 1).copy()}
    if want_x or want_w:
        # (4H, T N): the cotangents of all steps side by side, for one product each (copied
        # after the loop: copying each step's in the loop, to rows T N entries apart, measured
        # 24 us a step against 17 for this copy's share, the writes missing the caches)
        dz_2[...] = np.swapaxes(dz, 0, 1)
        dz_2 = np.reshape(dz_2, (4 * n, steps * batch))
    if want_x:
        np.matmul(np.swapaxes(dz_2, 0, 1), w_ih, out=dx)  # (T N, in)
        out[0] = np.swapaxes(np.reshape(dx, (steps, batch, n_in)), 0, 1).copy()
    if want_w:
        # against the rows [x_t, 1, h_{t-1}] of all steps, the 1s giving b's cotangent. They
        # are rebuilt (T N, k) from x and hs: s holds them as (T, k, N), which no strides
        # make a (k, T N) operand, and copying them out of s (runs of N entries) measured
        # ~1% slower on the whole backward pass than this (runs of in and H entries)
        xh_2[:, :, :n_in] = np.swapaxes(x, 0, 1)
        xh_2[:, :, n_in] = 1
        xh_2[0, :, n_in + 1:] = h0
        xh_2[1:, :, n_in + 1:] = np.swapaxes(hs[:, :-1], 0, 1)
        np.matmul(dz_2, np.reshape(xh_2, (steps * batch, k)), out=dw)
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
