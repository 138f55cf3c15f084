"""Flux.jl's test/layers/recurrent.jl translated to fluxml: sequences are ``(N, T, F)``
(Flux's ``(F, T, N)``), a cell takes ``(N, F)``, weights and gate orders are PyTorch's
(``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``: four arrays where Flux has three),
and Flux's ``test_gradients`` is a central finite-difference check here."""

import numpy as np
import pytest

import fluxml as fl
from fluxml.testing import check_grads

RNG = np.random.default_rng(9)


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def cell_loss4(cell, xs, state):
    # recurrent.jl's cell_loss4: mean of the squared outputs of every step
    ys = []
    for x in xs:
        y, state = cell(x, state)
        ys.append(y)
    return np.mean(np.stack(ys, axis=1) ** 2)


def rand(*shape):
    return RNG.random(shape)


@pytest.mark.parametrize("make", [fl.RNNCell, fl.GRUCell, fl.GRUv3Cell])
def test_cells_with_vector_and_batch_states(make):
    # recurrent.jl "RNNCell", "GRUCell", "GRUv3Cell"
    cell = fl.f64(make(3, 5))
    assert len(fl.trainables(cell)) == 4  # (Flux: Wi, Wh, b)
    assert len(fl.trainables(make(3, 5, bias=False))) == 2
    xs = [rand(4, 3) for _ in range(6)]
    out, state = cell(xs[0])
    assert out is state
    np.testing.assert_allclose(out, cell(xs[0], np.zeros(5))[0])  # no state: zeros
    # a single vector state for a batch is every sample's (before: refused)
    h = RNG.standard_normal(5)
    np.testing.assert_allclose(cell(xs[0], h)[0], cell(xs[0], np.tile(h, (4, 1)))[0])
    for state in (h, RNG.standard_normal((4, 5))):
        check_grads(lambda h: cell_loss4(cell, xs, h), state)
    g = fl.gradient(lambda m: cell_loss4(m, xs, h), cell)[0]
    eps, w = 1e-6, cell.weight_ih
    w[0, 0] += eps
    up = cell_loss4(cell, xs, h)
    w[0, 0] -= 2 * eps
    down = cell_loss4(cell, xs, h)
    w[0, 0] += eps
    assert g.weight_ih[0, 0] == pytest.approx((up - down) / (2 * eps), rel=1e-6)
    # a sequence without a batch axis
    xs1 = [rand(3) for _ in range(6)]
    check_grads(lambda h: cell_loss4(cell, xs1, h), h)


def test_cells_compute_pytorchs_equations():
    # recurrent.jl's cells, with the gate orders fluxml documents (PyTorch's)
    x, h, c = rand(2, 3), rand(2, 4), rand(2, 4)
    lstm = fl.f64(fl.LSTMCell(3, 4))
    for b in (lstm.bias_ih, lstm.bias_hh):
        b[:] = RNG.standard_normal(16)
    gates = x @ lstm.weight_ih.T + lstm.bias_ih + h @ lstm.weight_hh.T + lstm.bias_hh
    i, f, g, o = np.split(gates, 4, axis=1)
    c2 = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
    out, (h2, c2_) = lstm(x, (h, c))
    np.testing.assert_allclose(c2_, c2, rtol=1e-12)
    np.testing.assert_allclose(h2, sigmoid(o) * np.tanh(c2), rtol=1e-12)
    assert out is h2
    for make in (fl.GRUCell, fl.GRUv3Cell):
        gru = fl.f64(make(3, 4))
        gru.bias_ih[:], gru.bias_hh[:] = RNG.standard_normal(12), RNG.standard_normal(12)
        wi, wh, bi, bh = gru.weight_ih, gru.weight_hh, gru.bias_ih, gru.bias_hh
        xi = np.split(x @ wi.T + bi, 3, axis=1)
        hr = np.split(h @ wh.T + bh, 3, axis=1)
        r, z = sigmoid(xi[0] + hr[0]), sigmoid(xi[1] + hr[1])
        if make is fl.GRUCell:  # Flux's GRU (v1): the reset gate after W_hn
            n = np.tanh(xi[2] + r * hr[2])
        else:  # Flux's GRUv3: the reset gate before W_hn
            n = np.tanh(xi[2] + (r * h) @ wh[8:].T + bh[8:])
        np.testing.assert_allclose(gru(x, h)[0], (1 - z) * n + z * h, rtol=1e-12)


@pytest.mark.parametrize("make", [fl.RNN, fl.GRU, fl.GRUv3, fl.LSTM])
def test_sequence_layers(make):
    # recurrent.jl "RNN", "LSTM", "GRU", "GRUv3": a trained initial state h0 (a vector)
    lstm = make is fl.LSTM
    model = fl.f64(make(2, 4))
    h0 = np.zeros(4)
    state = (h0, h0) if lstm else h0
    x = rand(1, 3, 2)
    y = model(x, state)
    assert y.shape == (1, 3, 4) and y.dtype == np.float64
    np.testing.assert_allclose(model(x), y)  # no state: zeros
    # the sequence equals the cell stepped by hand
    s, outs = ((np.zeros((1, 4)),) * 2 if lstm else np.zeros((1, 4))), []
    for t in range(3):
        out, s = model.cell(x[:, t], s)
        outs.append(out)
    np.testing.assert_allclose(y, np.stack(outs, axis=1), rtol=1e-12)
    x2 = rand(3, 2)  # one sequence, no batch axis
    assert model(x2, state).shape == (3, 4)
    h1 = RNG.standard_normal(4)
    xb = rand(3, 5, 2)
    start = (h1, h1) if lstm else h1
    check_grads(lambda h: np.mean(model(xb, (h, h) if lstm else h) ** 2), h1)
    batched = (np.tile(h1, (3, 1)),) * 2 if lstm else np.tile(h1, (3, 1))
    np.testing.assert_allclose(model(xb, start), model(xb, batched), rtol=1e-12)
    model = make(2, 4, return_state=True)
    y, last = model(x.astype(np.float32), (h0, h0) if lstm else h0)
    assert y.shape == (1, 3, 4)
    for part in (last if lstm else (last,)):
        assert part.shape == (1, 4) and part.dtype == np.float32
    np.testing.assert_array_equal((last[0] if lstm else last)[0], y[0, -1])
    assert len(fl.trainables(make(2, 4, bias=False))) == 2


def test_recurrence():
    # recurrent.jl "Recurrence": Recurrence(cell) is the sequence layer of that cell
    x = rand(4, 3, 2).astype(np.float32)
    for make in (fl.RNN, fl.LSTM, fl.GRU, fl.GRUv3):
        rnn = make(2, 3)
        np.testing.assert_allclose(fl.Recurrence(rnn.cell)(x), rnn(x), rtol=1e-6, atol=1e-7)
        rnn = make(2, 3, return_state=True)
        got, want = fl.Recurrence(rnn.cell, return_state=True)(x), rnn(x)
        np.testing.assert_allclose(got[0], want[0], rtol=1e-6, atol=1e-7)
        for a, b in zip(fl.leaves(got[1]), fl.leaves(want[1])):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
