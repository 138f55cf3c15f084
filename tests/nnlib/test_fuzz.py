"""Fuzzing the fused kernels against their composites (written here with NumPy calls and
differentiated op by op by the engine): random shapes, axes, masks, values and cotangents;
values and gradients must agree."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import fluxml as fl

FUZZ = settings(max_examples=25, deadline=None)


def _close(a, b):
    for u, v in zip(fl.leaves(a), fl.leaves(b)):
        np.testing.assert_allclose(u, v, rtol=1e-9, atol=1e-11)


@st.composite
def arrays(draw, min_dims=1, max_dims=4):
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=min_dims, max_size=max_dims)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = draw(st.sampled_from([0.1, 1.0, 30.0]))
    return rng.standard_normal(shape) * scale, rng


def _axes(draw, ndim):
    axes = draw(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True))
    return tuple(sorted(axes))


@FUZZ
@given(st.data())
def test_softmax_family(data):
    x, rng = data.draw(arrays())
    axis = _axes(data.draw, x.ndim)
    g = rng.standard_normal(x.shape)

    def ref(x):
        m = np.max(x, axis=axis, keepdims=True)
        ls = x - m - np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))
        return np.exp(ls), ls

    def ours(x):
        return fl.softmax(x, axis=axis), fl.logsoftmax(x, axis=axis)

    _close(ours(x), ref(x))
    loss = [lambda x, f=f: np.sum(f(x)[0] * g) + np.sum(f(x)[1] * g) for f in (ours, ref)]
    _close(fl.gradient(loss[0], x), fl.gradient(loss[1], x))


@FUZZ
@given(st.data())
def test_normalise(data):
    x, rng = data.draw(arrays(min_dims=2))
    axes = _axes(data.draw, x.ndim)
    affine = tuple(n if data.draw(st.booleans()) else 1 for n in x.shape)
    scale, bias = rng.standard_normal(affine), rng.standard_normal(affine)

    def ref(x, scale, bias):
        m = np.mean(x, axis=axes, keepdims=True)
        v = np.mean((x - m) ** 2, axis=axes, keepdims=True)
        return (x - m) / np.sqrt(v + 1e-3) * scale + bias, m, v

    def ours(x, scale, bias):
        return fl.nnlib.normalise(x, axes, scale, bias, eps=1e-3, return_stats=True)

    want = ref(x, scale, bias)
    _close(ours(x, scale, bias), want)
    gs = [rng.standard_normal(o.shape) for o in want]  # the statistics' cotangents too
    loss = [lambda *a, f=f: sum(np.sum(o * g) for o, g in zip(f(*a), gs)) for f in (ours, ref)]
    _close(fl.gradient(loss[0], x, scale, bias), fl.gradient(loss[1], x, scale, bias))


@FUZZ
@given(st.data())
def test_attention(data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    lead = tuple(data.draw(st.lists(st.integers(1, 3), max_size=2)))
    tq, tk, d, dv = (data.draw(st.integers(1, 5)) for _ in range(4))
    q, k = rng.standard_normal(lead + (tq, d)), rng.standard_normal(lead + (tk, d))
    v = rng.standard_normal(lead + (tk, dv))
    mask = rng.random((tq, tk)) > 0.4
    mask[:, 0] |= data.draw(st.booleans())  # sometimes rows that attend to nothing
    bias = rng.standard_normal((tq, tk))
    go, gp = rng.standard_normal(lead + (tq, dv)), rng.standard_normal(lead + (tq, tk))

    def ref(q, k, v, bias):
        s = np.where(mask, q @ np.swapaxes(k, -1, -2) / np.sqrt(d) + bias, -np.inf)
        m = np.max(s, axis=-1, keepdims=True)
        m = np.where(np.isfinite(m), m, 0)
        e = np.exp(s - m)
        total = np.sum(e, axis=-1, keepdims=True)
        p = e / np.where(total == 0, 1, total)
        return p @ v, p

    def ours(q, k, v, bias):
        return fl.dot_product_attention(q, k, v, mask=mask, bias=bias)

    _close(ours(q, k, v, bias), ref(q, k, v, bias))
    loss = [lambda *a, f=f: np.sum(f(*a)[0] * go) + np.sum(f(*a)[1] * gp) for f in (ours, ref)]
    _close(fl.gradient(loss[0], q, k, v, bias), fl.gradient(loss[1], q, k, v, bias))


@FUZZ
@given(st.data())
def test_attention_heads_side_by_side(data):
    """``nheads``: the heads packed in the last axis, against the reference on each head's
    columns; large scores (the exact maximum's fallback) included."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    n, h = data.draw(st.integers(1, 2)), data.draw(st.integers(1, 3))
    tq, tk, d, dv = (data.draw(st.integers(1, 4)) for _ in range(4))
    size = data.draw(st.sampled_from([1.0, 10.0, 40.0]))
    q, k = size * rng.standard_normal((n, tq, h * d)), size * rng.standard_normal((n, tk, h * d))
    v = rng.standard_normal((n, tk, h * dv))
    mask = rng.random((tq, tk)) > 0.4
    mask[:, 0] |= data.draw(st.booleans())
    bias = rng.standard_normal((tq, tk))
    go, gp = rng.standard_normal((n, tq, h * dv)), rng.standard_normal((n, h, tq, tk))

    def ref(q, k, v, bias):
        outs, probs = [], []
        for j in range(h):
            s = q[..., j * d:(j + 1) * d] @ np.swapaxes(k[..., j * d:(j + 1) * d], -1, -2)
            s = np.where(mask, s / np.sqrt(d) + bias, -np.inf)
            m = np.max(s, axis=-1, keepdims=True)
            e = np.exp(s - np.where(np.isfinite(m), m, 0))
            total = np.sum(e, axis=-1, keepdims=True)
            probs.append(e / np.where(total == 0, 1, total))
            outs.append(probs[-1] @ v[..., j * dv:(j + 1) * dv])
        return np.concatenate(outs, axis=-1), np.stack(probs, axis=1)

    def ours(q, k, v, bias):
        return fl.dot_product_attention(q, k, v, mask=mask, bias=bias, nheads=h)

    _close(ours(q, k, v, bias), ref(q, k, v, bias))
    loss = [lambda *a, f=f: np.sum(f(*a)[0] * go) + np.sum(f(*a)[1] * gp) for f in (ours, ref)]
    _close(fl.gradient(loss[0], q, k, v, bias), fl.gradient(loss[1], q, k, v, bias))
