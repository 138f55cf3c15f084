"""GRUv3Cell / GRUv3 against Flux's equations (written with Flux's weights, mapped as the
docstring says), and Recurrence against the sequence layers and a loop written here."""

import numpy as np
import pytest

import fluxml as fl
from fluxml.testing import check_grads

RNG = np.random.default_rng(3)


def sig(x):
    return 1 / (1 + np.exp(-x))


def flux_gruv3_step(Wi, Wh, b, Wh_h, x, h):
    """Flux 0.15's GRUv3Cell, row-major: chunk(Wi x) etc.; Wh's third block unused."""
    H = h.shape[-1]
    gx = [x @ Wi[k * H:(k + 1) * H].T for k in range(3)]
    gh = [h @ Wh[k * H:(k + 1) * H].T for k in range(3)]
    bs = [b[k * H:(k + 1) * H] for k in range(3)]
    r = sig(gx[0] + gh[0] + bs[0])
    z = sig(gx[1] + gh[1] + bs[1])
    cand = np.tanh(gx[2] + (r * h) @ Wh_h.T + bs[2])
    return (1 - z) * cand + z * h


def test_gruv3_follows_fluxs_equations_with_fluxs_weights_mapped():
    n_in, H = 3, 4
    Wi, Wh = RNG.normal(size=(3 * H, n_in)), RNG.normal(size=(3 * H, H))
    b, Wh_h = RNG.normal(size=3 * H), RNG.normal(size=(H, H))
    cell = fl.f64(fl.GRUv3Cell(n_in, H))
    cell.weight_ih = Wi
    cell.weight_hh = np.concatenate([Wh[:2 * H], Wh_h])
    cell.bias_ih, cell.bias_hh = b, np.zeros(3 * H)
    x, h = RNG.normal(size=(2, n_in)), RNG.normal(size=(2, H))
    out, state = cell(x, h)
    np.testing.assert_allclose(out, flux_gruv3_step(Wi, Wh, b, Wh_h, x, h), rtol=1e-12)
    assert state is out
    # the layer scans the cell over time, and both biases add (b_hh is outside r's product)
    layer = fl.GRUv3(n_in, H, return_state=True)
    layer.cell = cell
    cell.bias_hh = RNG.normal(size=3 * H)
    xs = RNG.normal(size=(2, 5, n_in))
    ys, last = layer(xs, h)
    want, s = [], h
    for t in range(5):
        s = flux_gruv3_step(Wi, Wh, b + cell.bias_hh, Wh_h, xs[:, t], s)
        want.append(s)
    np.testing.assert_allclose(ys, np.stack(want, 1), rtol=1e-12)
    np.testing.assert_allclose(last, want[-1], rtol=1e-12)
    assert layer(xs[0])[0].shape == (5, H)  # one sequence (T, in)


def test_gruv3_gradients_second_order_and_float32():
    layer = fl.f64(fl.GRUv3(2, 3))
    xs = RNG.normal(size=(2, 3, 2))
    check_grads(lambda m, x: m(x), layer, xs)
    layer32 = fl.GRUv3(2, 3)
    g = fl.gradient(lambda m: np.sum(m(xs.astype(np.float32))), layer32)[0]
    assert g.cell.weight_hh.dtype == np.float32 and layer32(xs.astype(np.float32)).dtype == \
        np.float32


def test_gruv3_printing_and_bad_input():
    assert repr(fl.GRUv3Cell(2, 3, bias=False)) == "GRUv3Cell(2 => 3, bias=False)  # 45 parameters"
    assert repr(fl.GRUv3(2, 3, return_state=True)).startswith("GRUv3(2 => 3, return_state=True)")
    with pytest.raises(fl.LayerError, match=r"GRUv3\(2 => 3\) expects a sequence \(N, T, 2\)"):
        fl.GRUv3(2, 3)(np.zeros((1, 4, 5), np.float32))
    with pytest.raises(fl.LayerError, match=r"GRUv3Cell\(2 => 3\) expects a state of shape"):
        fl.GRUv3Cell(2, 3)(np.zeros((1, 2), np.float32), np.zeros((1, 4), np.float32))
    assert fl.Bidirectional(fl.GRUv3(2, 3))(np.zeros((1, 4, 2), np.float32)).shape == (1, 4, 6)


@pytest.mark.parametrize("layer", [fl.RNN, fl.LSTM, fl.GRU, fl.GRUv3])
def test_recurrence_of_a_cell_is_its_sequence_layer(layer):
    seq = fl.f64(layer(3, 4, return_state=True))
    rec = fl.Recurrence(seq.cell, return_state=True)
    xs = RNG.normal(size=(2, 5, 3))
    (y1, s1), (y2, s2) = seq(xs), rec(xs)
    np.testing.assert_allclose(y1, y2, rtol=1e-12, atol=1e-14)
    for a, b in zip(fl.leaves(s1), fl.leaves(s2)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(seq(xs[1])[0], rec(xs[1])[0], rtol=1e-12, atol=1e-14)
    # from a given state
    y1, _ = seq(xs, s1)
    y2, _ = rec(xs, s1)
    np.testing.assert_allclose(y1, y2, rtol=1e-12, atol=1e-14)


class Accumulate(fl.Module):
    """A cell of one's own: output w * x_t + state, state the running sum."""

    def __init__(self):
        self.w = np.array([2.0, 3.0])

    def __call__(self, x, state=None):
        state = np.zeros_like(x) if state is None else state
        new = state + self.w * x
        return new * 10, new


def test_recurrence_runs_any_cell_and_differentiates():
    m = fl.Recurrence(Accumulate())
    xs = RNG.normal(size=(3, 4, 2))
    np.testing.assert_allclose(m(xs), 10 * np.cumsum(xs * [2.0, 3.0], axis=1), rtol=1e-12)
    ys, state = fl.Recurrence(Accumulate(), return_state=True)(xs)
    np.testing.assert_allclose(state, np.sum(xs * [2.0, 3.0], axis=1), rtol=1e-12)
    check_grads(lambda m, x: m(x), m, xs)
    check_grads(lambda m, x: m(x), fl.Recurrence(fl.f64(fl.LSTMCell(2, 2))), xs[:, :2])


def test_recurrence_printing_and_bad_input():
    assert repr(fl.Recurrence(fl.GRUCell(2, 3))).startswith("Recurrence(\n  GRUCell(2 => 3),")
    with pytest.raises(TypeError, match="Recurrence wraps a cell, a callable"):
        fl.Recurrence(3)
    m = fl.Recurrence(fl.LSTMCell(2, 3))
    with pytest.raises(fl.LayerError, match=r"Recurrence\(\) expects a sequence .* got \(2,\)"):
        m(np.zeros(2, np.float32))
    with pytest.raises(fl.LayerError, match=r"at least one time step; got \(1, 0, 2\)"):
        m(np.zeros((1, 0, 2), np.float32))
    with pytest.raises(ValueError, match=r"Recurrence\['cell'\]: LSTMCell\(2 => 3\) expects"):
        m(np.zeros((1, 4, 5), np.float32))


@pytest.mark.parametrize("layer", [lambda: fl.RNN(3, 4), lambda: fl.LSTM(fl._, 4),
                                   lambda: fl.Bidirectional(fl.GRU(3, 4))])
def test_recurrence_refuses_a_layer_over_whole_sequences(layer):
    """Recurrence(fl.RNN(3, 4)) ran the RNN on each step's (N, 3) as one sequence and took
    its outputs apart as (output, state): (2, 5, 3) input gave (5, 4), silently."""
    with pytest.raises(TypeError, match=r"^Recurrence wraps a cell \(one time step\), such as "
                                        r"fl\.\w+Cell\(2, 3\); got \w+, a layer over whole "
                                        r"sequences"):
        fl.Recurrence(layer())


def test_bidirectional_refuses_directions_of_other_input_sizes():
    with pytest.raises(ValueError, match=r"^Bidirectional: forward and backward read the same "
                                         r"sequence.*; got RNN\(3 => 4\) and GRU\(2 => 4\)"):
        fl.Bidirectional(fl.RNN(3, 4), fl.GRU(2, 4))  # (refused only at the first call)
    assert fl.Bidirectional(fl.RNN(3, 4), fl.GRU(3, 5))(np.ones((2, 5, 3), np.float32)).shape \
        == (2, 5, 9)
