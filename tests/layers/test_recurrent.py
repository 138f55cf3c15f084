"""Recurrent cells and layers against their equations written step by step (PyTorch's gate
orders; checked against torch.nn.LSTM/GRU/RNN outside the suite, loading the same
weights: agreement to 1e-16 in float64)."""

import warnings

import numpy as np
import pytest

import fluxml as fl
from fluxml.testing import check_grads

RNG = np.random.default_rng(0)


def sig(x):
    return 1 / (1 + np.exp(-x))


def with_random_biases(layer):
    layer = fl.f64(layer)
    cell = getattr(layer, "cell", layer)
    cell.bias_ih = RNG.normal(size=cell.bias_ih.shape)
    cell.bias_hh = RNG.normal(size=cell.bias_hh.shape)
    return layer


def rnn_step(c, x, h):
    return np.tanh(x @ c.weight_ih.T + c.bias_ih + h @ c.weight_hh.T + c.bias_hh)


def lstm_step(c, x, h, cc):
    H = h.shape[-1]
    gates = x @ c.weight_ih.T + c.bias_ih + h @ c.weight_hh.T + c.bias_hh
    i, f, g, o = (gates[:, k * H:(k + 1) * H] for k in range(4))
    cc = sig(f) * cc + sig(i) * np.tanh(g)
    return sig(o) * np.tanh(cc), cc


def gru_step(c, x, h):
    H = h.shape[-1]
    W, U = c.weight_ih, c.weight_hh
    b, d = c.bias_ih, c.bias_hh
    r = sig(x @ W[:H].T + b[:H] + h @ U[:H].T + d[:H])
    z = sig(x @ W[H:2 * H].T + b[H:2 * H] + h @ U[H:2 * H].T + d[H:2 * H])
    n = np.tanh(x @ W[2 * H:].T + b[2 * H:] + r * (h @ U[2 * H:].T + d[2 * H:]))
    return (1 - z) * n + z * h


def test_cells_follow_their_equations():
    x, h, c = RNG.normal(size=(4, 3)), RNG.normal(size=(4, 5)), RNG.normal(size=(4, 5))
    cell = with_random_biases(fl.RNNCell(3, 5))
    out, state = cell(x, h)
    np.testing.assert_allclose(out, rnn_step(cell, x, h), rtol=1e-12, atol=1e-14)
    assert state is out
    cell = with_random_biases(fl.LSTMCell(3, 5))
    out, (h2, c2) = cell(x, (h, c))
    eh, ec = lstm_step(cell, x, h, c)
    np.testing.assert_allclose(h2, eh, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(c2, ec, rtol=1e-12, atol=1e-14)
    cell = with_random_biases(fl.GRUCell(3, 5))
    np.testing.assert_allclose(cell(x, h)[0], gru_step(cell, x, h), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(cell(x)[0], gru_step(cell, x, np.zeros((4, 5))), rtol=1e-12,
                               atol=1e-14)


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_sequence_layers_scan_the_cell(kind):
    layer = with_random_biases(getattr(fl, kind)(3, 4, return_state=True))
    cell = layer.cell
    x = RNG.normal(size=(2, 5, 3))
    h = RNG.normal(size=(2, 4))
    state = (h, RNG.normal(size=(2, 4))) if kind == "LSTM" else h
    ys, final = layer(x, state)
    assert ys.shape == (2, 5, 4)
    s = state
    for t in range(5):
        if kind == "LSTM":
            s = lstm_step(cell, x[:, t], *s)
            want = s[0]
        else:
            s = (rnn_step if kind == "RNN" else gru_step)(cell, x[:, t], s)
            want = s
        np.testing.assert_allclose(ys[:, t], want, rtol=1e-11, atol=1e-14)
    np.testing.assert_allclose(final[1] if kind == "LSTM" else final, s[1] if kind == "LSTM"
                               else s, rtol=1e-11, atol=1e-14)
    # one unbatched sequence (T, F) gives (T, H)
    single = getattr(fl, kind)(3, 4)
    assert single(np.ones((5, 3), np.float32)).shape == (5, 4)
    assert fl.outputsize(single, (2, 5, 3)) == (2, 5, 4)


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_recurrent_gradients(kind):
    layer = with_random_biases(getattr(fl, kind)(2, 3))
    x = RNG.normal(size=(2, 3, 2))
    check_grads(lambda m, x: np.sum(np.sin(m(x))), layer, x, order=2)
    g, = fl.gradient(lambda m: np.sum(m(x)), layer)
    assert g.cell.weight_hh.shape == layer.cell.weight_hh.shape


def test_bidirectional_runs_backward_over_reversed_time():
    b = fl.f64(fl.Bidirectional(fl.LSTM(3, 4)))
    x = RNG.normal(size=(2, 5, 3))
    y = b(x)
    assert y.shape == (2, 5, 8)
    np.testing.assert_allclose(y[..., :4], b.forward(x))
    np.testing.assert_allclose(y[..., 4:], b.backward(x[:, ::-1])[:, ::-1])
    check_grads(lambda m, x: np.sum(np.sin(m(x))), fl.Bidirectional(fl.f64(fl.GRU(2, 2))),
                RNG.normal(size=(1, 3, 2)), order=2)
    assert "forward = LSTM(3 => 4)," in repr(b)
    # initial states for both directions; init= reaches the default backward layer
    h0 = (RNG.normal(size=(2, 4)), RNG.normal(size=(2, 4)))
    np.testing.assert_allclose(b(x, (h0, None))[..., :4], b.forward(x, h0))
    ones = fl.Bidirectional(fl.GRU(3, 2, init=fl.init.ones), init=fl.init.ones)
    assert np.all(ones.backward.cell.weight_ih == 1)
    # layers returning their state would be joined as tuples (a NumPy error deep inside)
    with pytest.raises(ValueError, match="Bidirectional joins .* return_state=False"):
        fl.Bidirectional(fl.GRU(3, 4, return_state=True))


def test_bidirectional_with_lengths_is_each_sequence_unpadded():
    """Padded sequences: the backward direction ran over the padding first (the flip put it
    in front), so no batch of sequences of different lengths gave PyTorch's packed result.
    With lengths=, each sequence's outputs are those of the sequence alone, padded with 0;
    so are the gradients, with initial states too, and compiled."""
    b = fl.f64(fl.Bidirectional(fl.GRU(3, 2)))
    x = RNG.normal(size=(3, 5, 3))
    lengths = np.array([5, 2, 3])
    w = RNG.normal(size=(3, 5, 4))
    h0 = (RNG.normal(size=(3, 2)), RNG.normal(size=(3, 2)))

    def padded(m, x, h0):
        return np.sum(np.sin(m(x, h0, lengths=lengths)) * w)

    def one_by_one(m, x, h0):  # each sequence alone, its steps only
        return sum(np.sum(np.sin(m(x[i:i + 1, :n], (h0[0][i:i + 1], h0[1][i:i + 1]))) *
                          w[i:i + 1, :n]) for i, n in enumerate(lengths))

    y = b(x, h0, lengths=lengths)
    for i, n in enumerate(lengths):
        np.testing.assert_allclose(y[i, :n], b(x[i:i + 1, :n], (h0[0][i:i + 1],
                                                                 h0[1][i:i + 1]))[0],
                                   rtol=1e-13)
        assert np.all(y[i, n:] == 0)
    assert np.array_equal(b(x, lengths=[5, 5, 5]), b(x))  # full lengths: as without
    want = fl.gradient(one_by_one, b, x, h0)
    got = fl.gradient(padded, b, x, h0)
    for a, c in zip(fl.leaves(got), fl.leaves(want)):
        if isinstance(c, np.ndarray):
            np.testing.assert_allclose(a, c, rtol=1e-12, atol=1e-15)
    step = fl.compile(lambda m, x, n: m(x, lengths=n))
    np.testing.assert_allclose(step(b, x, lengths), b(x, lengths=lengths), rtol=1e-14)
    with pytest.raises(fl.LayerError, match=r"each length must lie in 1 .. 5 .*; got 6"):
        step(b, x, np.array([5, 6, 1]))
    with pytest.raises(fl.LayerError, match=r"each length must lie in 1 .. 5 .*; got 0"):
        b(x, lengths=[5, 0, 1])
    with pytest.raises(fl.LayerError, match=r"lengths as 3 integers, one per sequence of x "
                                            r"\(3, 5, 3\); got float64 of shape \(3,\)"):
        b(x, lengths=[5.0, 2.0, 3.0])
    with pytest.raises(fl.LayerError, match="a batch of padded sequences"):
        b(x[0], lengths=[5])


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU", "GRUv3"])
def test_recurrent_with_lengths_ends_each_sequence_at_its_last_step(kind):
    """A padded batch: the final state had run on through the padding (PyTorch's packed
    sequence stops each at its length). With lengths=, outputs and final state are each
    sequence's alone (outputs padded with 0), and so are the gradients; compiled too."""
    layer = fl.f64(getattr(fl, kind)(2, 3, return_state=True))
    x = RNG.normal(size=(3, 4, 2))
    lengths = np.array([2, 4, 1])
    h0 = RNG.normal(size=(3, 3))
    h0 = (h0, RNG.normal(size=(3, 3))) if kind == "LSTM" else h0
    part = (lambda s, i: tuple(a[i:i + 1] for a in s)) if kind == "LSTM" else \
        (lambda s, i: s[i:i + 1])
    w = RNG.normal(size=(3, 4, 3))

    def padded(m, x, h0):
        ys, state = m(x, h0, lengths=lengths)
        return np.sum(np.sin(ys) * w) + sum(np.sum(np.cos(s)) for s in fl.leaves(state))

    def one_by_one(m, x, h0):
        total = 0.0
        for i, n in enumerate(lengths):
            ys, state = m(x[i:i + 1, :n], part(h0, i))
            total = total + np.sum(np.sin(ys) * w[i:i + 1, :n]) + \
                sum(np.sum(np.cos(s)) for s in fl.leaves(state))
        return total

    ys, state = layer(x, h0, lengths=lengths)
    for i, n in enumerate(lengths):
        alone, end = layer(x[i:i + 1, :n], part(h0, i))
        np.testing.assert_allclose(ys[i:i + 1, :n], alone, rtol=1e-13)
        assert np.all(ys[i, n:] == 0)
        for a, b in zip(fl.leaves(part(state, i)), fl.leaves(end)):
            np.testing.assert_allclose(a, b, rtol=1e-13)
    np.testing.assert_allclose(padded(layer, x, h0), one_by_one(layer, x, h0), rtol=1e-13)
    got, want = fl.gradient(padded, layer, x, h0), fl.gradient(one_by_one, layer, x, h0)
    for a, b in zip(fl.leaves(got), fl.leaves(want)):
        if isinstance(b, np.ndarray):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    step = fl.compile(lambda m, x, h0, n: m(x, h0, lengths=n))
    for a, b in zip(fl.leaves(step(layer, x, h0, lengths)), fl.leaves((ys, state))):
        np.testing.assert_allclose(a, b, rtol=1e-14)
    with pytest.raises(fl.LayerError, match=rf"{kind}\(2 => 3, return_state=True\): each "
                                            r"length must lie in 1 .. 4 .*; got 5"):
        step(layer, x, h0, np.array([2, 5, 1]))
    with pytest.raises(fl.LayerError, match=r"with lengths expects a batch of padded"):
        layer(x[0], lengths=[4])


def test_recurrent_printing_and_bad_input():
    assert repr(fl.LSTM(3, 4)) == "LSTM(3 => 4)  # 144 parameters"
    assert fl.RNN(3, 4, np.sin)._line() == "RNN(3 => 4, sin)"
    assert fl.GRUCell(3, 4, bias=False)._line() == "GRUCell(3 => 4, bias=False)"
    m = fl.Chain(fl.Dense(2, 2), fl.LSTM(3, 4))
    with pytest.raises(fl.LayerError, match=r"^Chain\[1\]: LSTM\(3 => 4\) expects a sequence "
                                            r"\(N, T, 3\) or \(T, 3\); got \(5, 7, 2\)"):
        m(np.ones((5, 7, 2), np.float32))
    with pytest.raises(fl.LayerError, match=r"LSTM\(3 => 4\) expects a state of shape \(5, 4\) "
                                            r"\(h, c\); got \(\(5, 4\), \(5, 3\)\)"):
        fl.LSTM(3, 4)(np.ones((5, 7, 3), np.float32), (np.zeros((5, 4)), np.zeros((5, 3))))
    with pytest.raises(fl.LayerError, match="expects its state as a tuple"):
        fl.LSTMCell(3, 4)(np.ones((5, 3), np.float32), np.zeros((5, 4), np.float32))
    with pytest.raises(fl.LayerError, match=r"GRUCell\(3 => 4\) expects input \(N, 3\)"):
        fl.GRUCell(3, 4)(np.ones((5, 2), np.float32))
    with pytest.raises(ValueError, match="hidden must be a positive int"):
        fl.RNN(3, 0)


def test_a_state_of_another_dtype_is_converted():
    """np.zeros gives float64 (and np.zeros(.., int) integers): a float32 layer converts the
    state to its input's dtype, quietly (a starting value, not data), so the outputs stay
    float32 (a float64 state made them float64)."""
    x = np.ones((2, 5, 3), np.float32)
    h, c = np.zeros((2, 4)), np.zeros((2, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fl.LSTM(3, 4)(x, (h, c)).dtype == np.float32
        assert fl.GRU(3, 4)(x, h.astype(int)).dtype == np.float32
        assert fl.LSTMCell(3, 4)(x[:, 0], (h, c))[1][1].dtype == np.float32
        g, = fl.gradient(lambda h: np.sum(fl.RNN(3, 4)(x, h)), h)
    assert g.dtype == np.float64 and g.shape == (2, 4)  # a gradient in the argument's dtype
    with pytest.raises(fl.LayerError, match=r"RNN\(3 => 4\) expects a real initial state"):
        fl.RNN(3, 4)(x, h.astype(complex))


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU", "GRUv3"])
def test_constructor_errors_name_the_layer_not_its_cell(kind):
    """fl.RNN(3, 0) said 'RNNCell: hidden must be ...', and fl.GRU(3, 4, 'x') said
    '_Cell.__init__() takes 3 positional arguments but 4 were given': the user built an RNN."""
    layer = getattr(fl, kind)
    with pytest.raises(ValueError, match=rf"^{kind}: hidden must be a positive int; got 0"):
        layer(3, 0)
    with pytest.raises(TypeError, match=rf"^{kind}: bias must be True, False or None"):
        layer(3, 4, bias="no")
    with pytest.raises(TypeError, match=rf"^{kind}: init must be callable"):
        layer(3, 4, init=3)
    with pytest.raises(TypeError, match=rf"^{kind}: got an unexpected keyword argument 'foo'; "
                                        rf"it takes {kind}\(in_features, hidden"):
        layer(3, 4, foo=1)
    if kind != "RNN":  # (an RNN's third is its activation)
        with pytest.raises(TypeError, match=rf"^{kind}: got 3 positional arguments; it takes "):
            layer(3, 4, "x")
    else:
        with pytest.raises(TypeError, match=r"^RNN: activation must be callable; got 'tanh'"):
            layer(3, 4, "tanh")


@pytest.mark.parametrize("kind", ["RNN", "GRU", "GRUv3", "RNNCell", "GRUCell"])
def test_a_pair_state_is_refused_where_the_state_is_one_array(kind):
    """RNN(3, 4)(x, (h, c)), an LSTM's state given to an RNN, broadcast the pair along with the
    batch and returned outputs of shape (2, 5, 2, 4), silently (a GRU failed in its kernel)."""
    x = np.ones((2, 5, 3), np.float32)
    m = getattr(fl, kind)(3, 4)
    x = x[:, 0] if kind.endswith("Cell") else x
    h = np.zeros((2, 4), np.float32)
    with pytest.raises(fl.LayerError, match=rf"^{kind}\(3 => 4\) expects its state as one array "
                                            r"h of shape \(2, 4\); got a tuple of 2"):
        m(x, (h, h))
    with pytest.raises(fl.LayerError, match=r"expects its state as one array .* tuple of 1"):
        m(x, (h,))
    with pytest.raises(fl.LayerError, match=rf"^{kind}\(3 => 4\) expects a state of shape "
                                            r"\(2, 4\); got 'abc' \(a str\)"):
        m(x, "abc")
