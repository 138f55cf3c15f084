"""The LSTM scan split across threads by rows of the batch (``lstm_scan._bounds``), forced on
small sizes: values, activations and gradients against the one-thread scan and against the
step-by-step equations written here, uneven parts, and when no split happens."""

import numpy as np
import pytest

import fluxml as fl
from fluxml.backend import threads
from fluxml.nnlib import lstm_scan
from fluxml.nnlib.lstm_scan import LSTM_SEQUENCE, lstm_forward


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _naive(x, h, c, w_ih, w_hh, b):
    """The cell equations, one step at a time (PyTorch's gate order)."""
    n, hs, cs = h.shape[-1], [], []
    for t in range(x.shape[1]):
        z = x[:, t] @ w_ih.T + h @ w_hh.T + b
        i, f, o = (_sigmoid(z[:, k * n:(k + 1) * n]) for k in (0, 1, 3))
        c = f * c + i * np.tanh(z[:, 2 * n:3 * n])
        h = o * np.tanh(c)
        hs.append(h)
        cs.append(c)
    return np.stack(hs, 1), np.stack(cs, 1)


def _args(batch, steps=4, n_in=3, n=5, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    shapes = [(batch, steps, n_in), (batch, n), (batch, n), (4 * n, n_in), (4 * n, n),
              (4 * n,)]
    return [(rng.standard_normal(s) * 0.7).astype(dtype) for s in shapes]


@pytest.fixture
def split(monkeypatch):
    """Force parts of any width on 3 threads (a batch of 7: rows 0-2, 2-4, 4-7)."""
    def force(on=True):
        monkeypatch.setattr(lstm_scan, "MIN_PART", 1 if on else 1 << 30)
        monkeypatch.setattr(threads, "limit", lambda: 3)
    return force


def _loss(gs):
    def loss(x, h0, c0, w_ih, w_hh, b):
        hs, cs, _ = LSTM_SEQUENCE(x, h0, c0, w_ih, w_hh, b)
        return np.sum(hs * gs[0]) + np.sum(cs * gs[1])
    return loss


def test_bounds(split):
    split()
    assert lstm_scan._bounds(7, np.zeros(1)) == [0, 2, 4, 7]
    assert lstm_scan._bounds(2, np.zeros(1)) == [0, 1, 2]
    assert lstm_scan._bounds(7, [0.0]) == [0, 7]  # not NumPy: one part
    split(False)
    assert lstm_scan._bounds(7, np.zeros(1)) == [0, 7]


def test_no_split_at_one_thread_or_without_a_blas_setter(monkeypatch):
    monkeypatch.setattr(lstm_scan, "MIN_PART", 1)
    monkeypatch.setattr(threads, "limit", lambda: 1)
    assert lstm_scan._bounds(64, np.zeros(1)) == [0, 64]
    monkeypatch.setattr(threads, "limit", lambda: 2)
    monkeypatch.setattr(threads, "can_hold_blas", lambda: False)
    assert lstm_scan._bounds(64, np.zeros(1)) == [0, 64]


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 2e-6)])
def test_split_values_match_one_thread_and_the_equations(split, dtype, tol):
    args = _args(7, dtype=dtype)
    split(False)
    whole = [np.array(a) for a in LSTM_SEQUENCE(*args)]
    split()
    parts = LSTM_SEQUENCE(*args)
    for got, want in zip(parts, whole):
        assert got.dtype == dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    hs, c_last = lstm_forward(*args)
    np.testing.assert_allclose(hs, whole[0], rtol=tol, atol=tol)
    np.testing.assert_allclose(c_last, whole[1][:, -1], rtol=tol, atol=tol)
    want_hs, want_cs = _naive(*[a.astype(np.float64) for a in args])
    np.testing.assert_allclose(parts[0], want_hs, rtol=10 * tol, atol=10 * tol)
    np.testing.assert_allclose(parts[1], want_cs, rtol=10 * tol, atol=10 * tol)


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-11), (np.float32, 2e-5)])
def test_split_gradients_match_one_thread_and_the_equations(split, dtype, tol):
    args = _args(7, dtype=dtype, seed=1)
    rng = np.random.default_rng(2)
    gs = [rng.standard_normal((7, 4, 5)).astype(dtype) for _ in range(2)]
    split(False)
    whole = [np.array(g) for g in fl.gradient(_loss(gs), *args)]
    split()
    parts = fl.gradient(_loss(gs), *args)
    naive = fl.gradient(lambda *a: sum(np.sum(o * g) for o, g in zip(_naive(*a), gs)),
                        *[a.astype(np.float64) for a in args])
    for got, want, ref in zip(parts, whole, naive):
        assert got.dtype == dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
        np.testing.assert_allclose(got, ref, rtol=10 * tol, atol=10 * tol)


def test_split_layer_gradient_without_a_cell_cotangent(split):
    # the layer's path: the cotangent of hs only (and of h_T, c_T through lstm_sequence)
    args = _args(7, seed=3)
    loss = lambda *a: sum(np.sum(o ** 2) for o in fl.nnlib.lstm_sequence(*a))  # noqa: E731
    split(False)
    whole = [np.array(g) for g in fl.gradient(loss, *args)]
    split()
    for got, want in zip(fl.gradient(loss, *args), whole):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
