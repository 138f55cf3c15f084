"""dot_product_attention against the textbook formula (a loop over batch and heads),
derivatives (order 2, both modes) with masks and bias, the fused gradient against the
composite's, fully masked rows, extremes, float32, bad input."""

import warnings

import numpy as np
import pytest

import fluxml as fl
from fluxml.testing import check_grads

R = np.random.default_rng(0)
Q = R.standard_normal((2, 3, 4, 5))
K = R.standard_normal((2, 3, 6, 5))
V = R.standard_normal((2, 3, 6, 2))
BIAS = R.standard_normal((4, 6))
MASK = R.random((2, 1, 4, 6)) > 0.3
MASK[..., 0] = True  # every query may attend to some key


def reference(q, k, v, mask=None, bias=None):
    out = np.zeros(q.shape[:-1] + (v.shape[-1],))
    probs = np.zeros(q.shape[:-1] + (k.shape[-2],))
    for n, h in np.ndindex(q.shape[:2]):
        s = q[n, h] @ k[n, h].T / np.sqrt(q.shape[-1])
        if bias is not None:
            s = s + bias
        if mask is not None:
            s = np.where(np.broadcast_to(mask, probs.shape)[n, h], s, -np.inf)
        e = np.exp(s - s.max(-1, keepdims=True))
        probs[n, h] = e / e.sum(-1, keepdims=True)
        out[n, h] = probs[n, h] @ v[n, h]
    return out, probs


def composite(q, k, v, mask, bias):
    s = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1]) + bias
    s = np.where(mask, s, -np.inf)
    e = np.exp(s - np.max(s, axis=-1, keepdims=True))
    p = e / np.sum(e, axis=-1, keepdims=True)
    return p @ v, p


def test_values():
    for kwargs in ({}, {"mask": MASK}, {"bias": BIAS}, {"mask": MASK, "bias": BIAS}):
        for got, want in zip(fl.dot_product_attention(Q, K, V, **kwargs),
                             reference(Q, K, V, **kwargs)):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_derivatives():
    check_grads(lambda q, k, v, b: fl.dot_product_attention(q, k, v, mask=MASK, bias=b),
                Q, K, V, BIAS)


def test_fused_gradient_matches_composite():
    go, gp = R.standard_normal((2, 3, 4, 2)), R.standard_normal((2, 3, 4, 6))

    def loss(f):
        return lambda *a: np.sum(f(*a)[0] * go) + np.sum(f(*a)[1] * gp)

    a = fl.gradient(loss(lambda q, k, v, b: fl.dot_product_attention(
        q, k, v, mask=MASK, bias=b)), Q, K, V, BIAS)
    b = fl.gradient(loss(lambda q, k, v, b: composite(q, k, v, MASK, b)), Q, K, V, BIAS)
    for u, w in zip(a, b):
        np.testing.assert_allclose(u, w, rtol=1e-10, atol=1e-12)


def test_causal_mask_and_empty_rows():
    mask = fl.make_causal_mask(Q)
    assert mask.shape == (4, 4) and mask[1, 0] and not mask[0, 1]
    q = Q[:, :, :4]
    out, p = fl.dot_product_attention(q, K[:, :, :4], V[:, :, :4], mask=mask)
    assert np.allclose(np.triu(p[0, 0], 1), 0) and np.allclose(p.sum(-1), 1)
    empty = np.ones((4, 6), bool)
    empty[2] = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, p = fl.dot_product_attention(Q, K, V, mask=empty)
        g = fl.gradient(lambda q: np.sum(fl.dot_product_attention(q, K, V, mask=empty)[0]),
                        Q)[0]
    assert not out[:, :, 2].any() and not p[:, :, 2].any() and not g[:, :, 2].any()
    assert np.all(np.isfinite(g))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extremes_and_dtype(dtype):
    q, k, v = (a.astype(dtype) for a in (Q * 1e2, K * 1e2, V))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, p = fl.dot_product_attention(q, k, v)
        g = fl.gradient(lambda q, k, v: np.sum(fl.dot_product_attention(q, k, v)[0]),
                        q, k, v)
    assert out.dtype == p.dtype == dtype and all(a.dtype == dtype for a in g)
    assert all(np.all(np.isfinite(a)) for a in (out, p, *g))


def test_bad_input():
    with pytest.raises(ValueError, match=r"expected q \(..., Tq, d\)"):
        fl.dot_product_attention(Q, K[..., :4], V)
    with pytest.raises(ValueError, match="mask of shape"):
        fl.dot_product_attention(Q, K, V, mask=np.ones((3, 3), bool))
    with pytest.raises(TypeError, match="mask must be boolean"):
        fl.dot_product_attention(Q, K, V, mask=np.ones((4, 6)))
    with pytest.raises(TypeError, match="q must be a float array"):
        fl.dot_product_attention(np.ones((4, 5), int), K[0, 0], V[0, 0])
    with pytest.raises(ValueError, match=r"with nheads=2, expected q \(..., Tq, nheads d\)"):
        fl.dot_product_attention(np.ones((1, 3, 5)), np.ones((1, 3, 5)), np.ones((1, 3, 4)),
                                 nheads=2)
    with pytest.raises(ValueError, match="nheads must be a positive int"):
        fl.dot_product_attention(Q[0], K[0], V[0], nheads=0)
    for empty in ((Q[:, :, :0], K, V), (Q, K[:, :, :0], V[:, :, :0]), (Q[:0], K[:0], V[:0])):
        with pytest.raises(ValueError, match="every axis of q, k and v must be non-empty"):
            fl.dot_product_attention(*empty)


def _packed(a):
    """(N, heads, T, d) with the heads side by side: (N, T, heads d)."""
    return np.reshape(np.swapaxes(a, 1, 2), (a.shape[0], a.shape[2], -1))


def test_heads_side_by_side():
    """``nheads``: the same values as the per-head reference on the unpacked arrays, and
    derivatives to second order (both modes) with a mask and a bias."""
    q, k, v = _packed(Q), _packed(K), _packed(V)
    out, p = fl.dot_product_attention(q, k, v, mask=MASK, bias=BIAS, nheads=3)
    want_out, want_p = reference(Q, K, V, mask=MASK, bias=BIAS)
    np.testing.assert_allclose(out, _packed(want_out), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(p, want_p, rtol=1e-12, atol=1e-14)
    check_grads(lambda q, k, v, b: fl.dot_product_attention(q, k, v, mask=MASK, bias=b,
                                                            nheads=3), q, k, v, BIAS)


@pytest.mark.parametrize("use", ["out", "probs", "both"])
def test_fused_first_order_against_any_order(use):
    """The in-place first-order vjp (row sums from the output) against the formulas the
    higher orders record, for each output's cotangent alone and both together."""
    from fluxml.nnlib import attention

    go, gp = R.standard_normal((2, 4, 6)), R.standard_normal((2, 3, 4, 6))
    q, k, v = _packed(Q), _packed(K), _packed(V)
    out, p = fl.dot_product_attention(q, k, v, mask=MASK, bias=BIAS, nheads=3)
    g_out = None if use == "probs" else attention._split(go, 3)
    g_p = None if use == "out" else gp
    split = [attention._split(a, 3) for a in (q, k, v, out)]
    args = (*split[:3], p, split[3], 0.3, [0, 1, 2, 3])
    fast = attention._vjp_raw(g_out, g_p, *args)
    slow = attention._vjp_any(g_out, g_p, *split[:3], p, 0.3, [0, 1, 2, 3])
    for pos in range(4):
        np.testing.assert_allclose(fast[pos], slow[pos], rtol=1e-12, atol=1e-13)


def test_unshifted_softmax_against_exact_maximum(monkeypatch):
    """The softmax exponentiated unshifted (the default on NumPy arrays) against the exact
    maximum (forced by refusing every row sum), with a mask, a bias with a row that allows no
    key, a fully masked row and float32 scores large enough to need the fallback."""
    from fluxml.nnlib import attention

    bias = BIAS.copy()
    bias[1] = -np.inf
    mask = MASK.copy()
    mask[0, 0, 2] = False
    cases = [(Q, K, V, {"mask": mask, "bias": bias}), (Q, K, V, {"bias": BIAS[:, :1]}),
             (*(a.astype(np.float32) for a in (Q, K, V)), {"mask": MASK}),
             (*(a.astype(np.float32) * 30 for a in (Q, K, V)), {}),
             (*(_packed(a).astype(np.float32) * 30 for a in (Q, K, V)), {"nheads": 3}),
             (*(_packed(a) for a in (Q, K, V)), {"nheads": 3, "mask": MASK})]
    got = [fl.dot_product_attention(q, k, v, **kw) for q, k, v, kw in cases]
    # taken on the ordinary scores, refused on the large ones
    assert attention._probabilities_unshifted(0.4 * Q, K, None, None) is not None
    assert attention._probabilities_unshifted(0.4 * cases[3][0], cases[3][1], None, None) is None
    monkeypatch.setattr(attention, "_SMALLEST_SUM", np.inf)
    for (q, k, v, kw), pair in zip(cases, got):
        want = fl.dot_product_attention(q, k, v, **kw)
        assert not np.isnan(pair[1]).any()
        for a, b in zip(pair, want):
            np.testing.assert_allclose(a, b, rtol=1e-5 if a.dtype == np.float32 else 1e-12,
                                       atol=1e-6 if a.dtype == np.float32 else 1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_small_probabilities_beside_negative_scores_do_not_underflow(dtype):
    """A row whose scores are all negative: unshifted, e^-120 underflows to 0 in float32
    although its probability e^-80 is an ordinary number (a row sum of e^-40 was once
    accepted, and -log p was inf with a NaN gradient). The exact maximum keeps it."""
    low = -40.0 if dtype == np.float32 else -300.0
    q, k, v = np.zeros((1, 1, 4), dtype), np.zeros((1, 2, 4), dtype), np.eye(2, dtype=dtype)[None]
    bias = np.array([[low, 3 * low]], dtype)

    def minus_log_p(bias):
        return -np.log(fl.dot_product_attention(q, k, v, bias=bias)[1][0, 0, 1])

    assert float(minus_log_p(bias)) == pytest.approx(-2 * low, rel=1e-6)
    np.testing.assert_allclose(fl.gradient(minus_log_p, bias)[0], [[1.0, -1.0]], rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_overflowing_scores_take_the_exact_maximum(dtype):
    """Scores whose exponentials overflow unshifted: the sums are refused and the exact
    maximum agrees with the textbook formula."""
    from fluxml.nnlib import attention

    big = 30.0 if dtype == np.float64 else 12.0  # scores 900 / 144 over sqrt(5): exp overflows
    q = (big * np.abs(Q[:, :, :, :1]) * np.ones(5) / np.sqrt(5)).astype(dtype)
    k = (big * (1 + R.random((2, 3, 6, 1))) * np.ones(5) / np.sqrt(5)).astype(dtype)
    with np.errstate(over="ignore"):
        assert np.isinf(np.exp(dtype(np.max(q @ np.swapaxes(k, -1, -2)) / np.sqrt(5))))
    assert attention._probabilities_unshifted(q / np.sqrt(dtype(5)), k, None, MASK) is None
    out, p = fl.dot_product_attention(q, k, V.astype(dtype), mask=MASK)
    want = reference(q.astype(float), k.astype(float), V, mask=MASK)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)
    for a, b in zip((out, p), want):
        assert a.dtype == dtype
        np.testing.assert_allclose(a, b, **tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_paths_agree(monkeypatch, dtype):
    """The unshifted exponentials (their row sums accepted) and the exact maximum (every row
    sum refused); the scratch buffers and fresh arrays (SCRATCH_BYTES 0): the same values and
    first-order gradients."""
    from fluxml.nnlib import attention, windows

    q, k, v = (_packed(a).astype(dtype) for a in (Q, K, V))
    g_out = R.standard_normal((2, 4, 6)).astype(dtype)
    g_p = R.standard_normal((2, 3, 4, 6)).astype(dtype)

    def run():
        f = lambda q, k, v: fl.dot_product_attention(q, k, v, mask=MASK, nheads=3)  # noqa: E731
        (out, p), back = fl.pullback(f, q, k, v)
        return (out, p, *back((g_out, g_p)), *back((g_out, None)))

    assert attention._probabilities_unshifted(0.4 * Q, K, None, None) is not None
    unshifted = run()
    monkeypatch.setattr(windows, "SCRATCH_BYTES", 0)
    fresh = run()
    monkeypatch.setattr(attention, "_SMALLEST_SUM", np.inf)
    exact = run()
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)
    for a, b, d in zip(unshifted, fresh, exact):
        assert a.dtype == b.dtype == d.dtype == dtype
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, d, **tol)


def test_heads_side_by_side_keep_the_values_dtype():
    """float32 queries and keys with float64 values: the output is float64 with ``nheads`` as
    without (it was float32, the probabilities' dtype)."""
    q, k = (_packed(a).astype(np.float32) for a in (Q, K))
    v = _packed(V)
    out, _ = fl.dot_product_attention(q, k, v, nheads=3)
    assert out.dtype == fl.dot_product_attention(q[..., :2], k[..., :2], v[..., :2])[0].dtype
    assert out.dtype == np.float64


def test_boolean_or_complex_bias_is_refused():
    """A boolean bias was added to the scores as 0 and 1, silently: PyTorch's boolean
    attn_mask (True: may attend) passed as the bias shifted the scores by one instead of
    masking. A complex bias failed inside the kernel with NumPy's casting error."""
    mask = np.array([[True, False, True, True, False, True]] * 4)
    with pytest.raises(TypeError, match=r"bias must be real numbers .* got dtype bool \(a "
                                        r"boolean mask, True where a query may attend, is mask=\)"):
        fl.dot_product_attention(Q, K, V, bias=mask)
    with pytest.raises(TypeError, match="bias must be real numbers added to the scores; got "
                                        "dtype complex128"):
        fl.dot_product_attention(Q, K, V, bias=mask * 1j)
    out, _ = fl.dot_product_attention(Q, K, V, bias=mask.astype(int))  # integers are numbers
    np.testing.assert_allclose(out, reference(Q, K, V, bias=mask.astype(float))[0], rtol=1e-12)
