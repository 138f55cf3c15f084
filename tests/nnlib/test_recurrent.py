"""LSTM and GRU steps against the cell equations written here (PyTorch's gate order),
derivatives (order 2, both modes, every argument), the fused gradient against the
composite's, float32, bad shapes."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fluxml as fl
from fluxml.nnlib import gru_cell, lstm_cell
from fluxml.testing import check_grads

R = np.random.default_rng(0)
N, IN, H = 2, 3, 4
X, H0, C0 = R.standard_normal((N, IN)), R.standard_normal((N, H)), R.standard_normal((N, H))


def params(gates):
    return (R.standard_normal((gates * H, IN)) * 0.5, R.standard_normal((gates * H, H)) * 0.5,
            R.standard_normal(gates * H), R.standard_normal(gates * H))


LSTM_P, GRU_P = params(4), params(3)


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def lstm_ref(x, h, c, w_ih, w_hh, b_ih, b_hh):
    z = x @ w_ih.T + b_ih + h @ w_hh.T + b_hh
    i, f, g, o = (z[:, k * H:(k + 1) * H] for k in range(4))
    c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
    return sigmoid(o) * np.tanh(c), c


def gru_ref(x, h, w_ih, w_hh, b_ih, b_hh):
    gx, gh = x @ w_ih.T + b_ih, h @ w_hh.T + b_hh
    r = sigmoid(gx[:, :H] + gh[:, :H])
    z = sigmoid(gx[:, H:2 * H] + gh[:, H:2 * H])
    n = np.tanh(gx[:, 2 * H:] + r * gh[:, 2 * H:])
    return (1 - z) * n + z * h


def test_values():
    for got, want in zip(lstm_cell(X, H0, C0, *LSTM_P), lstm_ref(X, H0, C0, *LSTM_P)):
        np.testing.assert_allclose(got, want, rtol=1e-13)
    np.testing.assert_allclose(gru_cell(X, H0, *GRU_P), gru_ref(X, H0, *GRU_P), rtol=1e-13)
    w_ih, w_hh, _, _ = LSTM_P
    zero = np.zeros(4 * H)
    for got, want in zip(lstm_cell(X, H0, C0, w_ih, w_hh),
                         lstm_ref(X, H0, C0, w_ih, w_hh, zero, zero)):
        np.testing.assert_allclose(got, want, rtol=1e-13)


def test_derivatives():
    check_grads(lstm_cell, X, H0, C0, *LSTM_P)
    check_grads(gru_cell, X, H0, *GRU_P)
    check_grads(lambda c: lstm_cell(X, H0, c, *LSTM_P), C0)  # one argument at a time
    check_grads(lambda h: gru_cell(X, h, *GRU_P), H0)
    check_grads(lambda b: gru_cell(X, H0, *GRU_P[:3], b), GRU_P[3])


def test_fused_gradient_matches_composite():
    gh, gc = R.standard_normal((N, H)), R.standard_normal((N, H))

    def loss(f):
        def run(*a):
            h, c = f(*a)
            h2, c2 = f(a[0], h, c, *a[3:])  # two steps: the state's gradient flows too
            return np.sum(h2 * gh) + np.sum(c2 * gc)
        return run

    args = (X, H0, C0, *LSTM_P)
    for u, v in zip(fl.gradient(loss(lstm_cell), *args), fl.gradient(loss(lstm_ref), *args)):
        np.testing.assert_allclose(u, v, rtol=1e-10, atol=1e-12)
    args = (X, H0, *GRU_P)
    for u, v in zip(fl.gradient(lambda *a: np.sum(gru_cell(*a) ** 2), *args),
                    fl.gradient(lambda *a: np.sum(gru_ref(*a) ** 2), *args)):
        np.testing.assert_allclose(u, v, rtol=1e-10, atol=1e-12)


def test_float32_and_extremes():
    args = [a.astype(np.float32) * 1e4 for a in (X, H0, C0, *LSTM_P)]
    h, c = lstm_cell(*args)
    grads = fl.gradient(lambda *a: np.sum(lstm_cell(*a)[0]), *args)
    assert h.dtype == c.dtype == np.float32 and all(g.dtype == np.float32 for g in grads)
    assert all(np.all(np.isfinite(a)) for a in (h, c, *grads))
    args = [a.astype(np.float32) * 1e4 for a in (X, H0, *GRU_P)]
    grads = fl.gradient(lambda *a: np.sum(gru_cell(*a)), *args)
    assert all(g.dtype == np.float32 and np.all(np.isfinite(g)) for g in grads)


def test_bad_shapes():
    w_ih, w_hh, b_ih, b_hh = LSTM_P
    with pytest.raises(ValueError, match=r"lstm_cell: weight_ih must have shape \(16, 3\)"):
        lstm_cell(X, H0, C0, w_ih[:, :2], w_hh)
    with pytest.raises(ValueError, match=r"gru_cell: weight_hh must have shape \(12, 4\)"):
        gru_cell(X, H0, GRU_P[0], w_hh)
    with pytest.raises(ValueError, match="cell state must have h's shape"):
        lstm_cell(X, H0, C0[:1], w_ih, w_hh)
    with pytest.raises(ValueError, match="share their batch axes"):
        lstm_cell(X[:1], H0, C0, w_ih, w_hh)


# --- whole-sequence kernels ---------------------------------------------------------------------

T = 3
XS = R.standard_normal((N, T, IN))


def lstm_loop(x, h, c, *p):
    hs = []
    for t in range(x.shape[1]):
        h, c = lstm_ref(x[:, t], h, c, *p)
        hs.append(h)
    return np.stack(hs, 1), h, c


def gru_loop(x, h, *p):
    hs = []
    for t in range(x.shape[1]):
        h = gru_ref(x[:, t], h, *p)
        hs.append(h)
    return np.stack(hs, 1), h


def test_sequence_values():
    for got, want in zip(fl.nnlib.lstm_sequence(XS, H0, C0, *LSTM_P),
                         lstm_loop(XS, H0, C0, *LSTM_P)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    for got, want in zip(fl.nnlib.gru_sequence(XS, H0, *GRU_P), gru_loop(XS, H0, *GRU_P)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


def test_sequence_derivatives():
    check_grads(fl.nnlib.lstm_sequence, XS, H0, C0, *LSTM_P)
    check_grads(lambda c, w: fl.nnlib.lstm_sequence(XS, H0, c, LSTM_P[0], w)[2], C0,
                LSTM_P[1])
    check_grads(fl.nnlib.gru_sequence, XS, H0, *GRU_P)
    check_grads(lambda h, b: fl.nnlib.gru_sequence(XS, h, *GRU_P[:3], b)[0], H0, GRU_P[3])


def test_sequence_gradient_matches_loop():
    gs = [R.standard_normal(s) for s in ((N, T, H), (N, H), (N, H))]

    def loss(f):
        return lambda *a: sum(np.sum(o * g) for o, g in zip(f(*a), gs))

    args = (XS, H0, C0, *LSTM_P)
    for u, v in zip(fl.gradient(loss(fl.nnlib.lstm_sequence), *args),
                    fl.gradient(loss(lstm_loop), *args)):
        np.testing.assert_allclose(u, v, rtol=1e-10, atol=1e-12)
    args = (XS, H0, *GRU_P)
    for u, v in zip(fl.gradient(loss(fl.nnlib.gru_sequence), *args),
                    fl.gradient(loss(gru_loop), *args)):
        np.testing.assert_allclose(u, v, rtol=1e-10, atol=1e-12)


def test_sequence_float32_and_bad_input():
    args = [a.astype(np.float32) for a in (XS, H0, C0, *LSTM_P)]
    out = fl.nnlib.lstm_sequence(*args)
    grads = fl.gradient(lambda *a: np.sum(fl.nnlib.lstm_sequence(*a)[0]), *args)
    assert all(a.dtype == np.float32 for a in (*out, *grads))
    with pytest.raises(ValueError, match=r"lstm_sequence: expected a batch-first sequence"):
        fl.nnlib.lstm_sequence(X, H0, C0, *LSTM_P)
    with pytest.raises(ValueError, match="gru_sequence: the sequence is empty"):
        fl.nnlib.gru_sequence(XS[:, :0], H0, *GRU_P)
    with pytest.raises(ValueError, match=r"gru_sequence: weight_ih must have shape \(12, 3\)"):
        fl.nnlib.gru_sequence(XS, H0, LSTM_P[0], GRU_P[1])


def test_sequence_saturated_gates_and_rebuilt_buffers(monkeypatch):
    from fluxml.nnlib import windows
    from fluxml.nnlib.lstm_scan import LSTM_SEQUENCE, _lstm_vjp_raw

    # gates far past tanh's float32 range: the tanh-based sigmoid gives exact 0 and 1
    args = [a.astype(np.float32) * 1e4 for a in (XS, H0, C0, *LSTM_P)]
    out = fl.nnlib.lstm_sequence(*args)
    grads = fl.gradient(lambda *a: np.sum(fl.nnlib.lstm_sequence(*a)[0]), *args)
    assert all(np.all(np.isfinite(a)) for a in (*out, *grads))
    # the first-order backward pass reads the forward buffer through the outputs' bases, or
    # rebuilds it from their values when they are not views of it
    w_ih, w_hh, b_ih, b_hh = LSTM_P
    inputs = (XS, H0, C0, w_ih, w_hh)
    hs, cs, acts = LSTM_SEQUENCE(*inputs, b_ih + b_hh)
    g_hs, g_cs = R.standard_normal(hs.shape), R.standard_normal(cs.shape)
    every = [0, 1, 2, 3, 4, 5]
    first = _lstm_vjp_raw(g_hs, g_cs, *inputs, hs, cs, acts, every)
    kept = [u.copy() for u in first]
    rebuilt = _lstm_vjp_raw(g_hs, g_cs, *inputs, hs.copy(), cs.copy(), acts.copy(), every)
    monkeypatch.setattr(windows, "SCRATCH_BYTES", 0)  # fresh arrays instead of the scratch
    fresh = _lstm_vjp_raw(g_hs, g_cs, *inputs, hs, cs, acts, every)
    for u, v, w, z in zip(first, kept, rebuilt, fresh):
        np.testing.assert_array_equal(u, v)  # not a view of the scratch the others reused
        np.testing.assert_allclose(w, v, rtol=1e-13, atol=1e-15)
        np.testing.assert_array_equal(z, v)


def test_sequence_vjp_of_each_argument_alone():
    # the first-order kernel skips the input's and the weights' products when they are not
    # asked for: each position alone gives what all of them together give, with and without
    # a cell cotangent; without, all of them are the loop's gradient of the outputs alone
    from fluxml.nnlib.lstm_scan import LSTM_SEQUENCE, _lstm_vjp_raw

    w_ih, w_hh, b_ih, b_hh = LSTM_P
    inputs = (XS, H0, C0, w_ih, w_hh)
    hs, cs, acts = LSTM_SEQUENCE(*inputs, b_ih + b_hh)
    g_hs, g_cs = R.standard_normal(hs.shape), R.standard_normal(cs.shape)
    every = list(range(6))
    for g_c in (g_cs, None):
        together = [u.copy() for u in _lstm_vjp_raw(g_hs, g_c, *inputs, hs, cs, acts, every)]
        for p in every:
            alone, = _lstm_vjp_raw(g_hs, g_c, *inputs, hs, cs, acts, [p])
            np.testing.assert_allclose(alone, together[p], rtol=1e-13, atol=1e-15)
    want = fl.gradient(lambda *a: np.sum(lstm_loop(*a)[0] * g_hs), *inputs, b_ih, b_hh)
    for u, v in zip(together, want):  # b's cotangent is b_ih's
        np.testing.assert_allclose(u, v, rtol=1e-10, atol=1e-12)


def _lstm_naive(x, h, c, w_ih, w_hh, b):
    """Any hidden size, one step at a time, written with the equations."""
    n, hs = h.shape[-1], []
    for t in range(x.shape[1]):
        z = x[:, t] @ w_ih.T + h @ w_hh.T + (0 if b is None else b)
        i, f, o = (sigmoid(z[:, k * n:(k + 1) * n]) for k in (0, 1, 3))
        c = f * c + i * np.tanh(z[:, 2 * n:3 * n])
        h = o * np.tanh(c)
        hs.append(h)
    return np.stack(hs, 1), h, c


@settings(max_examples=12, deadline=None)
@given(st.data())
def test_sequence_random_configurations(data):
    n_batch, steps, n_in, n = (data.draw(st.integers(1, m)) for m in (4, 5, 4, 5))
    scale = data.draw(st.sampled_from([0.1, 1.0, 4.0]))
    rng = np.random.default_rng(data.draw(st.integers(0, 99)))
    x, h0, c0 = (rng.standard_normal(s) for s in ((n_batch, steps, n_in), (n_batch, n),
                                                   (n_batch, n)))
    w_ih, w_hh = (rng.standard_normal(s) * scale for s in ((4 * n, n_in), (4 * n, n)))
    b = rng.standard_normal(4 * n) if data.draw(st.booleans()) else None
    for got, want in zip(fl.nnlib.lstm_sequence(x, h0, c0, w_ih, w_hh, b),
                         _lstm_naive(x, h0, c0, w_ih, w_hh, b)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
    gs = [rng.standard_normal(s) for s in ((n_batch, steps, n), (n_batch, n), (n_batch, n))]

    def loss(f):
        return lambda *a: sum(np.sum(o * g) for o, g in zip(f(*a, b), gs))

    args = (x, h0, c0, w_ih, w_hh)
    for u, v in zip(fl.gradient(loss(fl.nnlib.lstm_sequence), *args),
                    fl.gradient(loss(_lstm_naive), *args)):
        np.testing.assert_allclose(u, v, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("core, limit, want", [
    ("skylakex", 1, 4), ("sapphirerapids", 1, 4), ("skylakex", 2, 1), ("haswell", 1, 1),
    ("zen", 1, 1), ("", 1, 1)])
def test_lstm_products_follow_the_blas_kernels(monkeypatch, core, limit, want):
    # four gate blocks only where OpenBLAS's AVX-512 kernels take small products directly
    # and the BLAS runs on one thread; the whole product elsewhere (and for other arrays)
    from fluxml.backend import threads
    from fluxml.nnlib import lstm_scan

    monkeypatch.setattr(threads, "blas_core", lambda: core)
    monkeypatch.setattr(threads, "limit", lambda: limit)
    assert threads.small_products() == (core in ("skylakex", "sapphirerapids"))
    assert lstm_scan._products(np.ones(2, np.float32)) == want
    assert lstm_scan._products([1.0]) == 1


def test_blas_core_names_numpys_blas(monkeypatch):
    from fluxml.backend import threads

    core = threads.blas_core()
    assert core == core.strip().lower()
    if threads._find_blas() and "openblas" in str(np.show_config(mode="dicts")).lower():
        assert core  # NumPy's OpenBLAS says which kernels it runs
    # another BLAS (no openblas_get_corename among the loaded libraries): no name, and no
    # small products; the name is read once
    monkeypatch.setattr(threads, "_core", None)
    monkeypatch.setattr(threads, "_blas_function", lambda names: False)
    assert threads.blas_core() == "" and not threads.small_products()
    monkeypatch.setattr(threads, "_blas_function", lambda names: 1 / 0)
    assert threads.blas_core() == ""


@pytest.mark.parametrize("parts", [1, 4])
@pytest.mark.parametrize("n", [3, 4, 5])
def test_lstm_products_in_blocks_and_inference(monkeypatch, parts, n):
    # each step's products in one piece (BLAS on several threads) or in four row blocks (one
    # thread; H rows of W_hh^T in uneven blocks for H = 3, 5): the naive equations' values
    # and gradients either way; outside any transform the forward pass keeps nothing
    # (lstm_inference) and gives LSTM_SEQUENCE's numbers to the bit
    from fluxml.nnlib import lstm_scan

    monkeypatch.setattr(lstm_scan, "_products", lambda like: parts)
    rng = np.random.default_rng(n)
    x, h0, c0 = (rng.standard_normal(s) for s in ((3, 4, 2), (3, n), (3, n)))
    w_ih, w_hh, b = (rng.standard_normal(s) for s in ((4 * n, 2), (4 * n, n), (4 * n,)))
    args = (x, h0, c0, w_ih, w_hh)
    hs, cs, _ = lstm_scan.LSTM_SEQUENCE(*args, b)
    got = lstm_scan.lstm_inference(*args, b)
    for u, v in zip(got, (hs, hs[:, -1], cs[:, -1])):
        np.testing.assert_array_equal(u, v)
    for u, v in zip(fl.nnlib.lstm_sequence(*args, b), _lstm_naive(*args, b)):
        np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-14)
    g = rng.standard_normal(hs.shape)
    for u, v in zip(fl.gradient(lambda *a: np.sum(fl.nnlib.lstm_sequence(*a, b)[0] * g), *args),
                    fl.gradient(lambda *a: np.sum(_lstm_naive(*a, b)[0] * g), *args)):
        np.testing.assert_allclose(u, v, rtol=1e-9, atol=1e-11)
    # float32 stays float32; the state's broadcasting as in LSTM_SEQUENCE
    args32 = [a.astype(np.float32) for a in (*args, b)]
    out = lstm_scan.lstm_inference(*args32)
    assert all(a.dtype == np.float32 for a in out)
    np.testing.assert_array_equal(out[0], lstm_scan.LSTM_SEQUENCE(*args32)[0])


def test_lstm_small_gates_keep_their_relative_accuracy():
    # review of 42563f3: gates as tanh(z/2)/2 + 1/2 lost a small gate's relative accuracy
    # (a forget gate of 1.4e-7 came out 15% off, silently, and 0 below ~6e-8): with a large
    # cell state that error is the whole of c_T. The exp form keeps it to float32 rounding
    from fluxml.nnlib import lstm_scan

    f32 = np.float32
    x, h0, c0 = np.zeros((1, 1, 1), f32), np.zeros((1, 1), f32), np.full((1, 1), 50, f32)
    w_ih, w_hh = np.zeros((4, 1), f32), np.zeros((4, 1), f32)
    for forget in (-15.78, -18.0):
        b = np.array([-20, forget, 0, 20], f32)
        want = 50 * sigmoid(np.float64(forget))  # (i g = sigmoid(-20) tanh(0) = 0)
        for c_t in (fl.nnlib.lstm_sequence(x, h0, c0, w_ih, w_hh, b)[2],
                    lstm_scan.LSTM_SEQUENCE(x, h0, c0, w_ih, w_hh, b)[1][:, -1]):
            np.testing.assert_allclose(c_t, want, rtol=1e-6)
        (g,) = fl.gradient(lambda c: np.sum(fl.nnlib.lstm_sequence(x, h0, c, w_ih, w_hh, b)[2]),
                           c0)
        np.testing.assert_allclose(g, want / 50, rtol=1e-6)


def test_lstm_empty_batch():
    # review of 42563f3: a batch of 0 sequences raised a broadcasting error (the weights'
    # factors were read off a (4H, N) array); 0bff2cf returned the empty outputs
    layer = fl.LSTM(3, 4)
    x = np.zeros((0, 5, 3), np.float32)
    assert layer(x).shape == (0, 5, 4)
    (g,) = fl.gradient(lambda m: np.sum(m(x)), layer)
    assert g.cell.weight_ih.shape == (16, 3) and not np.any(g.cell.weight_ih)


@pytest.mark.parametrize("batch, steps", [(1, 3), (2, 1), (1, 1)])
def test_lstm_sequence_gradients_are_not_views_of_the_reused_scratch(batch, steps):
    # for one sample (or one step) the transposed cotangents are contiguous already: they
    # must still be copies, or the next backward pass overwrites them
    from fluxml.nnlib.lstm_scan import LSTM_SEQUENCE

    rng = np.random.default_rng(0)
    n_in, n = 3, 4
    args = [rng.standard_normal(s) for s in
            [(batch, steps, n_in), (batch, n), (batch, n), (4 * n, n_in), (4 * n, n), (4 * n,)]]

    def loss(x, h0, c0, w_ih, w_hh, b):
        hs, cs, _ = LSTM_SEQUENCE(x, h0, c0, w_ih, w_hh, b)
        return np.sum(hs * hs) + np.sum(cs)

    first = fl.gradient(loss, *args)
    kept = [np.array(g) for g in first]
    fl.gradient(loss, *[a * 2 for a in args])  # a second backward pass in the same thread
    for g, k in zip(first, kept):
        np.testing.assert_array_equal(g, k)


@pytest.mark.parametrize("last, got", [
    (np.array([-1, 0]), "values from -1 to 0"), (np.array([3, 0]), "values from 0 to 3"),
    (np.array([1.0, 0.0]), "float64 of shape"), (np.array([True, False]), "bool of shape"),
    (np.array([0, 1, 2]), "int64 of shape \\(3,\\)")])
def test_sequence_last_must_be_step_indices(last, got):
    """``last`` of -1 (a length of 0 minus 1) read the final, padded step, silently, and the
    other misfits raised NumPy's indexing errors; each is a ValueError naming the function."""
    rng = np.random.default_rng(0)
    x, h = rng.standard_normal((2, 3, 2)), np.zeros((2, 2))
    calls = {"lstm_sequence": lambda: fl.nnlib.lstm_sequence(
                 x, h, h, rng.standard_normal((8, 2)), rng.standard_normal((8, 2)), last=last),
             "gru_sequence": lambda: fl.nnlib.gru_sequence(
                 x, h, rng.standard_normal((6, 2)), rng.standard_normal((6, 2)), last=last)}
    for name, call in calls.items():
        with pytest.raises(ValueError, match=f"{name}: last must hold one step index per "
                                             f"sequence, 2 integers in 0 .. 2; got {got}"):
            call()
    hs, h_last, c_last = fl.nnlib.lstm_sequence(x, h, h, np.ones((8, 2)), np.ones((8, 2)),
                                                last=[2, 0])
    np.testing.assert_array_equal(h_last, hs[[0, 1], [2, 0]])


@pytest.mark.parametrize("traced", [False, True])
def test_sequence_final_state_is_not_a_view_of_the_steps(traced):
    """The final state was ``hs[:, -1]``, a view: ``hs += 1`` (a positional term, a mask
    written in place) changed it too, silently, and the LSTM's cell state, a view of every
    step's, kept all T of them alive."""
    rng = np.random.default_rng(1)
    x, h = rng.standard_normal((2, 3, 2)), rng.standard_normal((2, 2))
    w = {4: (rng.standard_normal((8, 2)), rng.standard_normal((8, 2))),
         3: (rng.standard_normal((6, 2)), rng.standard_normal((6, 2)))}
    runs = [lambda x: fl.nnlib.lstm_sequence(x, h, h, *w[4]),
            lambda x: fl.nnlib.gru_sequence(x, h, *w[3])]
    for run in runs:
        out = fl.jvp(run, (x,), (np.ones_like(x),))[0] if traced else run(x)
        hs, final = out[0], out[1:]
        want = [np.array(f) for f in final]
        hs += 1
        for f, v in zip(final, want):
            np.testing.assert_array_equal(f, v)
            assert f.base is None or not np.shares_memory(f, hs)
