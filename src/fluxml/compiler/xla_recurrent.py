"""JAX versions of the engine's recurrent kernels (``fluxml.nnlib.lstm_scan``,
``fluxml.nnlib.recurrent``, ``fluxml.nnlib.sequence``): the fused LSTM over a sequence and its
first-order backward pass as scans over time, and the LSTM and GRU cells' steps. Each takes
the arguments and parameters of its engine primitive and returns what the NumPy kernel
returns, in the same layout (the LSTM's ``(hs, cs, acts)``, ``acts`` feature-major), so that
the equations around it need no change. Traced by ``jax.jit`` inside the code the ``xla``
back end generates (``xla_backend.py``).

>>> import numpy as np
>>> hs, cs, acts = lstm_sequence(np.ones((2, 3, 1)), np.zeros((2, 4)), np.zeros((2, 4)),
...                              np.zeros((16, 1)), np.zeros((16, 4)), None)
>>> hs.shape, acts.shape
((2, 3, 4), (3, 20, 2))
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from fluxml.compiler.xla_kernels import sigmoid

# --- the fused LSTM: a scan over time of the cell ---------------------------------------------

def lstm_sequence(x, h0, c0, w_ih, w_hh, b):
    """``fluxml.nnlib.lstm_scan``'s ``LSTM_SEQUENCE``: ``x (N, T, in)``, weights ``(4H, in)``
    and ``(4H, H)``, the summed bias ``b (4H,)`` or None. Returns ``hs``, ``cs`` ``(N, T, H)``
    and the activations ``(T, 5H, N)`` (gates i, f, g, o and ``tanh(c)``, feature-major) that
    the engine's backward pass reads. The sigmoids are ``1 / (1 + exp(-z))`` and the cell
    gate ``2 sigmoid(2z) - 1``, as the NumPy kernel computes them."""
    n = h0.shape[-1]
    dtype = jnp.result_type(x, h0, c0, w_ih, w_hh, *(() if b is None else (b,)))
    scale = jnp.ones((4 * n,), dtype).at[2 * n:3 * n].set(2)
    gx = x.astype(dtype) @ w_ih.astype(dtype).T  # every step's input projection at once
    if b is not None:
        gx = gx + b
    w_t = w_hh.astype(dtype).T

    def cell(carry, gxt):
        h, c = carry
        gates = 1 / (1 + jnp.exp(-(gxt + h @ w_t) * scale))
        i, f, g, o = (gates[:, k * n:(k + 1) * n] for k in range(4))
        g = 2 * g - 1
        c = f * c + i * g
        tc = jnp.tanh(c)
        h = o * tc
        return (h, c), (h, c, jnp.concatenate([i, f, g, o, tc], axis=-1).T)

    init = (jnp.broadcast_to(h0, (x.shape[0], n)).astype(dtype),
            jnp.broadcast_to(c0, (x.shape[0], n)).astype(dtype))
    _, (hs, cs, acts) = lax.scan(cell, init, jnp.swapaxes(gx, 0, 1))
    return jnp.swapaxes(hs, 0, 1), jnp.swapaxes(cs, 0, 1), acts


def lstm_vjp_kernel(g_hs, g_cs, x, h0, c0, w_ih, w_hh, hs, cs, acts, positions):
    """``lstm_scan._lstm_vjp_kernel``, the first-order backward pass, as a reverse scan: the
    cotangents of ``(x, h0, c0, w_ih, w_hh, b)`` at ``positions`` from those of ``hs`` and
    ``cs`` (``g_cs`` None: zero), reading the saved activations ``(T, 5H, N)``."""
    steps, _, batch = acts.shape
    n = h0.shape[-1]
    a = jnp.swapaxes(acts, 1, 2)  # (T, N, 5H)
    i, f, gg, o, tc = (a[..., k * n:(k + 1) * n] for k in range(5))
    cs_t, hs_t = jnp.swapaxes(cs, 0, 1), jnp.swapaxes(hs, 0, 1)
    c_prev = jnp.concatenate([jnp.broadcast_to(c0, (batch, n))[None], cs_t[:-1]])
    h_prev = jnp.concatenate([jnp.broadcast_to(h0, (batch, n))[None], hs_t[:-1]])
    # dz = [dc a_i, dc a_f, dc a_g, dh a_o] with dc = dc' + dh k (+ g_c)
    a_i, a_f, a_g = gg * (i * (1 - i)), c_prev * (f * (1 - f)), i * (1 - gg * gg)
    a_o, k = tc * (o * (1 - o)), o * (1 - tc * tc)
    g_h = jnp.swapaxes(g_hs, 0, 1).astype(acts.dtype)
    g_c = jnp.zeros_like(g_h) if g_cs is None else jnp.swapaxes(g_cs, 0, 1).astype(acts.dtype)

    def back(carry, xs):
        dh, dc = carry
        gh_t, gc_t, k_t, ai, af, ag, ao, f_t = xs
        dh = dh + gh_t
        dc = dc + dh * k_t + gc_t
        dz = jnp.concatenate([ai * dc, af * dc, ag * dc, ao * dh], axis=-1)
        return (dz @ w_hh, dc * f_t), dz

    zeros = jnp.zeros((batch, n), acts.dtype)
    (dh, dc), dz = lax.scan(back, (zeros, zeros), (g_h, g_c, k, a_i, a_f, a_g, a_o, f),
                            reverse=True)  # dz (T, N, 4H)
    out = {1: dh, 2: dc}
    if 0 in positions:
        out[0] = jnp.swapaxes(dz @ w_ih, 0, 1)
    if 3 in positions:
        out[3] = jnp.einsum("tng,tni->gi", dz, jnp.swapaxes(x, 0, 1).astype(acts.dtype))
    if 4 in positions:
        out[4] = jnp.einsum("tng,tnh->gh", dz, h_prev)
    if 5 in positions:
        out[5] = jnp.sum(dz, axis=(0, 1))
    return tuple(out[p] for p in positions)


# --- the recurrent cells' steps (``fluxml.nnlib.recurrent``) and the GRU sequence --------------

def lstm_step(gx, h, c, w):
    """``LSTM_STEP``: ``(h, c, acts)``, the activations ``[i, f, g, o, tanh(c)]`` side by side
    in the last axis, as the engine's backward pass reads them."""
    n = h.shape[-1]
    z = gx + h @ w.T
    i, f, o = sigmoid(z[..., :n]), sigmoid(z[..., n:2 * n]), sigmoid(z[..., 3 * n:])
    g = jnp.tanh(z[..., 2 * n:3 * n])
    c_new = f * c + i * g
    tc = jnp.tanh(c_new)
    return o * tc, c_new, jnp.concatenate([i, f, g, o, tc], axis=-1)


def gru_step(gx, h, w, b):
    """``GRU_STEP``: one GRU step, ``(h, acts)`` with ``acts = [r, z, n, W_hn h + b_hn]``."""
    n = h.shape[-1]
    gh = h @ w.T
    if b is not None:
        gh = gh + b
    r = sigmoid(gx[..., :n] + gh[..., :n])
    z = sigmoid(gx[..., n:2 * n] + gh[..., n:2 * n])
    ghn = gh[..., 2 * n:]
    nn = jnp.tanh(r * ghn + gx[..., 2 * n:])
    return (h - nn) * z + nn, jnp.concatenate([r, z, nn, ghn], axis=-1)


def gru_sequence(gx, h0, w, b):
    """``GRU_SEQUENCE``: ``gx (N, T, 3H)`` to ``hs (N, T, H)`` and ``acts (T, N, 4H)``, a scan
    over time of :func:`gru_step`."""
    dtype = jnp.result_type(gx, h0, w)

    def cell(h, gxt):
        h, acts = gru_step(gxt, h, w, b)
        return h.astype(dtype), (h, acts)

    h = jnp.broadcast_to(h0, (gx.shape[0], h0.shape[-1])).astype(dtype)
    _, (hs, acts) = lax.scan(cell, h, jnp.swapaxes(gx, 0, 1))
    return jnp.swapaxes(hs, 0, 1), acts
