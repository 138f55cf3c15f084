"""Containers and simple layers: Parallel, SkipConnection, PairwiseFusion, Maxout, Bilinear,
Scale, Embedding, EmbeddingBag, Flatten; outputsize, summary, autosize."""

import io
import warnings

import numpy as np
import pytest

import fluxml as fl
from fluxml.layers import precision
from fluxml.testing import check_grads

RNG = np.random.default_rng(0)


def f64(m):
    return fl.f64(m)


def summary_text(model, shape, **kwargs):
    out = io.StringIO()
    assert fl.summary(model, shape, file=out, **kwargs) is None
    return out.getvalue()


def loss(m, *xs):
    return np.sum(np.sin(m(*xs)))


def test_parallel_forms_and_grads():
    a, b = fl.Dense(3, 2, np.tanh, rng=RNG), fl.Dense(3, 2, rng=RNG)
    x = RNG.normal(size=(4, 3)).astype(np.float32)
    np.testing.assert_allclose(fl.Parallel(np.add, a, b)(x), a(x) + b(x), rtol=1e-6)
    x2 = RNG.normal(size=(4, 3)).astype(np.float32)
    np.testing.assert_allclose(fl.Parallel(np.multiply, a, b)(x, x2), a(x) * b(x2), rtol=1e-6)
    np.testing.assert_allclose(fl.Parallel(np.add, a)((x, x2)), a(x) + a(x2), rtol=1e-6)
    ys = fl.Parallel(None, p=a, q=b)(x)
    assert isinstance(ys, tuple) and len(ys) == 2
    m = f64(fl.Parallel(np.add, a, b))
    check_grads(loss, m, x.astype(np.float64))
    g, = fl.gradient(lambda m: loss(m, x.astype(np.float64)), m)
    assert g.layers[0].weight.shape == (2, 3)
    with pytest.raises(fl.LayerError, match="Parallel with 2 layers takes 1 or 2 inputs; got 3"):
        m(x, x, x)
    with pytest.raises(fl.LayerError, match=r"^Parallel\[1\]: Dense\(3 => 2\) expects"):
        fl.Parallel(None, a, b)(x, np.ones((4, 5), np.float32))


def test_skip_pairwise_maxout_forward_and_grads():
    d = f64(fl.Dense(3, 3, np.tanh, rng=RNG))
    x = RNG.normal(size=(2, 3))
    np.testing.assert_allclose(fl.SkipConnection(d, np.add)(x), d(x) + x)
    check_grads(loss, fl.SkipConnection(d, np.multiply), x)

    l1, l2 = f64(fl.Dense(3, 3, rng=RNG)), f64(fl.Dense(3, 2, rng=RNG))
    x1, x2 = RNG.normal(size=(2, 3)), RNG.normal(size=(2, 3))
    y1, y2 = fl.PairwiseFusion(np.add, l1, l2)((x1, x2))
    np.testing.assert_allclose(y1, l1(x1))
    np.testing.assert_allclose(y2, l2(l1(x1) + x2))
    check_grads(lambda m, a, b: np.sum(m(a, b)[1] ** 2), fl.PairwiseFusion(np.add, l1, l2),
                x1, x2)
    with pytest.raises(fl.LayerError, match="PairwiseFusion with 2 layers takes 1 or 2"):
        fl.PairwiseFusion(np.add, l1, l2)(x1, x1, x1)

    m = f64(fl.Maxout(lambda: fl.Dense(3, 2, rng=RNG), 3))
    expected = np.max(np.stack([layer(x) for layer in m.layers]), axis=0)
    np.testing.assert_allclose(m(x), expected)
    check_grads(loss, m, x)
    assert fl.outputsize(m, (7, 3)) == (7, 2)


def test_bilinear_against_sum_and_grads():
    m = f64(fl.Bilinear((3, 2), 4, np.tanh, rng=RNG))
    m.bias = RNG.normal(size=4)
    x, z = RNG.normal(size=(5, 3)), RNG.normal(size=(5, 2))
    expected = np.zeros((5, 4))
    for n in range(5):
        for o in range(4):
            expected[n, o] = sum(x[n, i] * m.weight[o, i, j] * z[n, j]
                                 for i in range(3) for j in range(2))
    np.testing.assert_allclose(m(x, z), np.tanh(expected + m.bias), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(m((x, z)), m(x, z))
    check_grads(loss, m, x, z)
    assert repr(fl.Bilinear(3, 4)) == "Bilinear(3 => 4)  # 40 parameters"
    assert fl.Bilinear((3, 2), 4)._line() == "Bilinear((3, 2) => 4)"
    with pytest.raises(fl.LayerError, match=r"expects inputs \(N, 3\) and \(N, 2\) \(or "
                                            r"the same leading axes before both\); got "
                                            r"\(5, 3\) and \(5, 3\)"):
        m(x, x)


def test_bilinear_takes_leading_axes_as_pytorchs():
    # (N, T, in1) and (N, T, in2): each (n, t) pair as a row of a batch
    m = f64(fl.Bilinear((3, 2), 4, np.tanh, rng=RNG))
    x, z = RNG.normal(size=(5, 6, 3)), RNG.normal(size=(5, 6, 2))
    rows = m(x.reshape(30, 3), z.reshape(30, 2))
    np.testing.assert_allclose(m(x, z), rows.reshape(5, 6, 4), rtol=1e-14)
    assert fl.outputsize(m, (5, 6, 3), (5, 6, 2)) == (5, 6, 4)
    check_grads(loss, m, x[:2, :2], z[:2, :2])
    with pytest.raises(fl.LayerError, match=r"got \(5, 6, 3\) and \(5, 7, 2\)"):
        m(x, RNG.normal(size=(5, 7, 2)))


def test_a_bias_of_another_size_than_the_weights_names_the_layer():
    # (a weight or bias replaced by one of another checkpoint's size: a bare broadcast error)
    d = fl.Dense(3, 2)
    d.bias = np.ones(5, np.float32)
    with pytest.raises(fl.LayerError, match=r"^Chain\[0\]: Dense\(3 => 2\): bias must have "
                                            r"shape \(2,\) for a weight of shape \(2, 3\); "
                                            r"got \(5,\)"):
        fl.Chain(d)(np.ones((4, 3), np.float32))
    c = fl.Conv((3, 3), 1, 2)
    c.bias = np.ones(5, np.float32)
    with pytest.raises(fl.LayerError, match=r"^Conv\(\(3, 3\), 1 => 2\): bias must have shape "
                                            r"\(2,\) for a weight of shape \(2, 1, 3, 3\)"):
        c(np.ones((1, 1, 5, 5), np.float32))


class _OtherLibraryArray:
    """As a torch.Tensor: a shape, but a dtype that is not NumPy's."""

    shape, ndim, dtype = (2, 3), 2, "torch.float32"


@pytest.mark.parametrize("layer", [fl.Dense(3, 2), fl.Conv((3, 3), 1, 2), fl.LSTM(3, 2),
                                   fl.BatchNorm(3), fl.Embedding(5, 2), fl.MaxPool((2,))],
                         ids=lambda layer: type(layer).__name__)
def test_another_librarys_array_is_refused_in_the_layers_name(layer):
    # (a torch.Tensor failed deep inside with 'torch.dtype' object has no attribute 'kind')
    with pytest.raises(fl.LayerError, match=r"expects a NumPy \(or CuPy\) array.*; got a "
                                            r"\w+\._OtherLibraryArray: convert it"):
        layer(_OtherLibraryArray())


def test_scale_and_flatten():
    s = f64(fl.Scale(3, 1, 1, np.tanh, rng=RNG))
    s.scale = RNG.normal(size=(3, 1, 1))
    s.bias = RNG.normal(size=(3, 1, 1))
    x = RNG.normal(size=(2, 3, 4, 4))
    np.testing.assert_allclose(s(x), np.tanh(x * s.scale + s.bias))
    check_grads(loss, s, x)
    assert repr(fl.Scale(2, bias=False)) == "Scale(2, bias=False)  # 2 parameters"
    with pytest.raises(fl.LayerError, match=r"Scale\(3, 1, 1, tanh\) expects inputs whose "
                                            r"trailing dimensions broadcast"):
        s(np.ones((2, 4, 4, 4)))
    f = fl.Flatten()
    assert f(x).shape == (2, 48) and fl.outputsize(f, (2, 3, 4, 4)) == (2, 48)
    check_grads(lambda x: np.sum(np.sin(f(x)) * np.arange(48.0)), x)


def test_embedding_lookup_scatter_gradient_and_errors():
    e = f64(fl.Embedding(5, 3, rng=RNG))
    idx = np.array([[0, 4, 4], [1, 0, 2]])
    out = e(idx)
    assert out.shape == (2, 3, 3)
    for n in range(2):
        for t in range(3):
            np.testing.assert_array_equal(out[n, t], e.weight[idx[n, t]])
    g, = fl.gradient(lambda m: np.sum(m(idx)), e)
    np.testing.assert_array_equal(g.weight[:, 0], [2, 1, 1, 0, 2])  # counts: a scatter-add
    check_grads(lambda m: np.sum(np.sin(m(idx))), e)
    assert fl.outputsize(e, (2, 3)) == (2, 3, 3)
    assert fl.Embedding(5, 3).weight.dtype == np.float32
    with pytest.raises(fl.LayerError, match=r"Embedding\(5 => 3\) has a vocabulary of 5 "
                                            r"\(indices 0 to 4\); got index 5"):
        e(np.array([1, 5]))
    with pytest.raises(fl.LayerError, match="got index -1"):
        e(np.array([-1]))
    with pytest.raises(fl.LayerError, match="expects integer indices; got float64"):
        e(np.array([1.0]))


def test_embedding_reads_bool_one_hot_rows_as_flux_reads_a_onehotmatrix():
    """Flux's Embedding takes one-hot input and gives the indices' result; fl.onehotbatch's
    arrays are dense, so a bool array (..., vocab) is one-hot rows (weight * x: a multi-hot
    row sums), with the gradient of the indices' lookup; a float one-hot is refused with a
    hint, as float indices are (an integer one-hot cannot be told from indices)."""
    e = f64(fl.Embedding(5, 3, rng=RNG))
    idx = np.array([[0, 4, 4], [1, 0, 2]])
    hot = np.stack([fl.onehotbatch(row, 5, dtype=bool) for row in idx])  # (2, 3, 5)
    np.testing.assert_array_equal(e(hot), e(idx))
    np.testing.assert_array_equal(e(hot[0, 1]), e.weight[4])  # one row: (vocab,) -> (dim,)
    g_idx, = fl.gradient(lambda m: np.sum(np.sin(m(idx))), e)
    g_hot, = fl.gradient(lambda m: np.sum(np.sin(m(hot))), e)
    np.testing.assert_allclose(g_hot.weight, g_idx.weight, rtol=1e-12)
    check_grads(lambda m: np.sum(np.sin(m(hot))), e)
    np.testing.assert_allclose(e(np.array([True, False, True, False, False])),
                               e.weight[0] + e.weight[2], rtol=1e-12)  # multi-hot, as Flux
    e32 = fl.Embedding(5, 3)
    assert e32(hot).dtype == np.float32
    with pytest.raises(fl.LayerError, match=r"Embedding\(5 => 3\) reads a bool array as one-hot "
                                            r"rows \(\.\.\., 5\); got \(2, 4\)"):
        e(np.ones((2, 4), bool))
    with pytest.raises(fl.LayerError, match=r"expects integer indices; got float32 \(one-hot "
                                            r"rows\? as bool, x.astype\(bool\).*fl.onecold"):
        e32(fl.onehotbatch([1, 2], 5))


@pytest.mark.parametrize("reduction, reduce", [("mean", np.mean), ("sum", np.sum),
                                               ("max", np.max)])
def test_embedding_bag_forms_agree(reduction, reduce):
    m = f64(fl.EmbeddingBag(6, 2, reduction, rng=RNG))
    bags = [np.array([0, 3, 3]), np.array([5]), np.array([], np.int64), np.array([1, 2])]
    expected = np.stack([reduce(m.weight[b], axis=0) if b.size else np.zeros(2) for b in bags])
    np.testing.assert_allclose(m(bags), expected, rtol=1e-12, atol=1e-14)
    flat, offsets = np.concatenate(bags), np.array([0, 3, 4, 4])
    np.testing.assert_allclose(m((flat, offsets)), expected, rtol=1e-12, atol=1e-14)
    square = np.array([[0, 3], [5, 1]])
    np.testing.assert_allclose(m(square), reduce(m.weight[square], axis=1), rtol=1e-12, atol=1e-14)
    check_grads(lambda m: np.sum(np.sin(m(bags))), m)
    check_grads(lambda m: np.sum(np.sin(m(square))), m)
    assert m._line() == f"EmbeddingBag(6 => 2, {reduction!r})"
    with pytest.raises(fl.LayerError, match="offsets must be an increasing integer vector"):
        m((flat, np.array([0, 4, 3])))


def test_outputsize_uses_rules_and_falls_back_for_user_layers():
    class Twice(fl.Module):  # a user's layer: no shape rule
        def __call__(self, x):
            return np.concatenate([x, x], axis=-1)

    m = fl.Chain(fl.Dense(4, 8), Twice(), fl.Dense(16, 2), np.tanh)
    assert fl.outputsize(m, (32, 4)) == (32, 2)
    assert fl.outputsize(m, (4,), padbatch=True) == (1, 2)
    with pytest.raises(fl.LayerError, match=r"^Chain\[2\]: Dense\(16 => 2\) expects inputs of "
                                            r"shape \(N, 16\); got \(32, 10\)"):
        fl.outputsize(fl.Chain(fl.Dense(4, 5), Twice(), m.layers[2]), (32, 4))


def test_summary_lists_shapes_and_counts(capsys):
    m = fl.Chain(fl.Dense(4, 8, np.tanh), fl.Chain(fl.Dense(8, 8), np.sin), fl.Dense(8, 1))
    text = summary_text(m, (16, 4))
    assert fl.summary(m, (16, 4)) is None  # printed, as Keras' summary does (issue 11)
    assert capsys.readouterr().out == text
    assert "  Dense(4 => 8, tanh)           (16, 8)                     40" in text
    assert "    sin                         (16, 8)                      0" in text
    assert text.splitlines()[-1] == "Total: 121 trainable parameters, 0 non-trainable."
    with pytest.raises(fl.LayerError, match=r"^Chain\[1\] > Chain\[0\]: Dense\(8 => 8\) "):
        fl.summary(fl.Chain(np.tanh, m.layers[1]), (16, 5))  # located as the forward pass does
    # the branches of a container that each take its input are listed under it
    text = summary_text(fl.Chain(fl.Parallel(np.add, fl.Dense(4, 3), fl.Dense(4, 3)),
                                 fl.Bidirectional(fl.GRU(3, 2))), (16, 5, 4))
    assert "  Parallel(connection=add,\n    Dense(4 => 3)               (16, 5, 3)" in text
    assert "    GRU(3 => 2)                 (16, 5, 2)                  42\n  )" in text


def test_autosize_builds_placeholder_layers():
    lazy = fl.Dense(fl._, 10, np.tanh)
    with pytest.raises(fl.LayerError, match=r"Dense\(_, 10, tanh\) has a size still to infer"):
        lazy(np.ones((1, 3)))
    assert "  Dense(_, 10, tanh),\n" in repr(fl.Chain(lazy, np.sin))
    m = fl.autosize((2, 3, 4, 5), fl.Chain(fl.Scale(4, 5), fl.Flatten(),
                                           fl.Chain(fl.Dense(fl._, 7), fl.Maxout(np.tanh, np.sin)),
                                           fl.SkipConnection(fl.Dense(fl._, 7), np.add),
                                           fl.Bilinear(fl._, 3)))
    assert m.layers[2].layers[0].weight.shape == (7, 60)
    assert m.layers[3].layers.weight.shape == (7, 7)
    assert m.layers[4].weight.shape == (3, 7, 7)
    assert m(np.ones((2, 3, 4, 5), np.float32)).shape == (2, 3)


def test_autosize_reads_features_for_sequences_and_reaches_into_branches():
    """fl._ in a recurrent layer is the features (the last dimension), not the time steps;
    Parallel, Maxout and Bidirectional get their placeholders built too."""
    _ = fl._
    m = fl.autosize((2, 5, 7), fl.Chain(
        fl.LSTM(_, 4), fl.Bidirectional(fl.GRU(_, 3)),
        fl.Parallel(np.add, fl.Dense(_, 2), fl.Chain(fl.Dense(_, 2), np.tanh)),
        fl.Maxout(lambda: fl.RNN(_, 3), 2)))
    assert m[0].cell.sizes == (7, 4) and m[1].backward.cell.sizes == (4, 3)
    assert m[1].forward.cell.weight_ih is not m[1].backward.cell.weight_ih
    assert m[2][0].weight.shape == m[2][1][0].weight.shape == (2, 6)
    assert m[3].layers[1].cell.sizes == (2, 3)
    assert m(np.ones((2, 5, 7), np.float32)).shape == (2, 5, 3) == fl.outputsize(m, (2, 5, 7))
    assert fl.autosize((2, 7), fl.RNNCell(_, 2)).sizes == (7, 2)


def test_outputsize_of_containers_and_cells_runs_no_layer(monkeypatch):
    """Parallel, SkipConnection, PairwiseFusion, Bidirectional and the cells have shape rules:
    only a connection (np.add, a concatenation) runs, on zeros; errors located."""
    def refuse(*args, **kwargs):
        raise AssertionError("a convolution ran")

    monkeypatch.setattr(fl.nnlib, "conv_bias_act", refuse)
    convs = fl.Parallel(np.add, fl.Conv((3, 3), 3, 8, pad=1), fl.Conv((1, 1), 3, 8))
    cat = fl.SkipConnection(convs, lambda y, x: np.concatenate([y, x], axis=1))
    assert fl.outputsize(fl.Chain(cat, fl.PairwiseFusion(np.add, np.tanh, np.tanh)),
                         (64, 3, 32, 32)) == ((64, 11, 32, 32),) * 2
    assert fl.outputsize(fl.Bidirectional(fl.LSTM(3, 4)), (5, 6, 3)) == (5, 6, 8)
    assert fl.outputsize(fl.LSTMCell(3, 4), (5, 3)) == ((5, 4), ((5, 4), (5, 4)))
    assert fl.outputsize(fl.Parallel(None, fl.Dense(4, 3), fl.Dense(2, 1)),
                         ((5, 4), (5, 2))) == ((5, 3), (5, 1))
    with pytest.raises(fl.LayerError, match=r"^Chain\[0\] > SkipConnection\[0\] > Parallel\[0\]: "
                                            r"Conv\(\(3, 3\), 3 => 8, pad=1\) expects input"):
        fl.outputsize(fl.Chain(cat), (64, 2, 32, 32))


def test_shapes_flow_through_a_layer_returning_a_tuple():
    """A Chain passes MultiHeadAttention's (output, scores) on as one argument: outputsize,
    summary and autosize call the next layer so (they called it with two arguments)."""
    _ = fl._
    m = fl.autosize((32, 20), fl.Chain(fl.Embedding(10, 4), fl.MultiHeadAttention(_, nheads=2),
                                       lambda t: t[0], fl.Dense(_, 3)))
    assert fl.outputsize(m, (32, 20)) == (32, 20, 3) == m(np.zeros((32, 20), int)).shape
    text = summary_text(m, (32, 20))
    assert "((32, 20, 4), (32, 2, 20, 20))          68\n" in text  # a column wide enough



@pytest.mark.parametrize("fn, shape", [
    (lambda x: x.transpose(1, 0, 2), (5, 4, 3)),  # the batch moved to axis 1
    (lambda x: x.reshape(-1, x.shape[-1]), (5, 4, 3)),  # merged with the time axis
    (lambda x: x.mean(axis=0, keepdims=True), (5, 3)),  # reduced, its axis kept
    (lambda x: x[None], (5, 3)),  # a new leading axis of one
    (lambda x: x[:, None, :] * x[None, :, :], (5, 3)),  # batch by batch
    (lambda x: np.tile(x, (4, 1)), (5, 3)),  # four batches
    (lambda x: x.sum(axis=0), (5, 3)),  # reduced away
    (lambda x: x.reshape(x.shape[0], -1), (5, 4, 3)),  # kept first
    (lambda x: x[:2], (3, 4)),  # the first axis stops growing at 2 (a batch of 1 and 2 agree)
    (lambda x: x[:2], (8, 4)),
    (lambda x: x[:3] * 2.0, (5, 4)),
])
def test_outputsize_of_a_function_that_moves_the_batch_is_the_forward_pass_shape(fn, shape):
    """A user's function ran on a batch of one and the batch size went back onto the first
    axis: x.transpose(1, 0, 2) of (5, 4, 3) gave (4, 1, 3) (the forward pass: (4, 5, 3)), a
    reshape merging the batch (4, 3) for (20, 3), a mean keeping the batch axis (5, 3) for
    (1, 3). Silently wrong. A batch of one and of two could not tell x[:2] from x either:
    (3, 4) for (2, 4). Now the function runs on zeros of the input's shape."""
    x = np.zeros(shape, np.float32)
    assert fl.outputsize(fn, shape) == fn(x).shape
    model = fl.Chain(fn, fl.Dense(fn(x).shape[-1], 2))
    assert fl.outputsize(model, shape) == model(x).shape


def test_outputsize_of_a_function_of_several_inputs_keeps_each_first_axis():
    # before: every input was given the first one's batch of one: x @ t with t (4, 5) ran
    # on t (1, 5) and failed in matmul
    f = fl.Chain(lambda xt: xt[0] @ xt[1], fl.Dense(5, 2))
    assert fl.outputsize(lambda x, t: x @ t, ((3, 4), (4, 5))) == (3, 5)
    assert fl.outputsize(fl.Parallel(lambda x, t: x @ t, np.tanh, np.sin),
                         ((3, 4), (4, 5))) == (3, 5)
    ones = np.ones((3, 4), np.float32), np.ones((4, 5), np.float32)
    assert fl.outputsize(f, ((3, 4), (4, 5))) == f(ones).shape


def test_skip_connection_joins_the_layer_output_in_the_model_precision(monkeypatch):
    """A float64 input to a float32 SkipConnection(Dense, +): the Dense converted it (and
    warned), and the connection added the float64 input back: a float64 output, the next
    layers converting again with no warning."""
    rng = np.random.default_rng(2)
    m = fl.SkipConnection(fl.Dense(3, 3), np.add)
    x = rng.standard_normal((2, 3))
    monkeypatch.setattr(precision, "_warned", set())  # (each warning is once per process)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        y = m(x)
    assert y.dtype == np.float32
    x32 = x.astype(np.float32)
    np.testing.assert_array_equal(y, x32 @ m.layers.weight.T + m.layers.bias + x32)
    assert [str(w.message)[:45] for w in record] == \
        ["Dense(3 => 3) has float32 parameters and got "]
    for f in (lambda m: fl.gradient(lambda m: np.sum(m(x)), m)[0].layers.weight,
              lambda m: fl.compile(lambda m, x: m(x), background=False)(m, x)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert f(m).dtype == np.float32
    # an input of the model's precision, or a layer that keeps its input's, is left alone
    assert fl.SkipConnection(np.tanh, np.add)(x).dtype == np.float64
    assert m(x32).dtype == np.float32


def test_chain_refuses_the_tree_flatten_as_a_layer():
    # Flux's Chain(..., flatten, Dense(...)) written with fl.flatten (tree flattening) gave
    # the Dense a tuple (its leaves and structure): outputsize and summary named the Dense
    with pytest.raises(TypeError, match=r"layer 1 is fl.flatten, which flattens a tree .* "
                                        r"use fl.Flatten\(\)"):
        fl.Chain(fl.GlobalMeanPool(), fl.flatten, fl.Dense(16, 5))
    m = fl.Chain(fl.GlobalMeanPool(), fl.Flatten(), fl.Dense(16, 5))
    assert fl.outputsize(m, (7, 16, 4, 4)) == (7, 5)
def _identity(x):
    return x


def _cat(*ys):
    return np.concatenate(ys, axis=-1)


def _dense(d, x):  # a Dense by hand, in float32
    return x.astype(np.float32) @ d.weight.T + d.bias


# each container of a float32 Dense and a parameter-free branch, given float64 input, and its
# output computed by hand from the input rounded to float32 (d: the Dense, x: the input)
_BRANCHES = [
    (lambda d: fl.Parallel(np.add, d, _identity),
     lambda d, x: _dense(d, x) + x.astype(np.float32)),
    (lambda d: fl.Parallel(_cat, d, np.tanh),
     lambda d, x: np.concatenate([_dense(d, x), np.tanh(x.astype(np.float32))], axis=-1)),
    (lambda d: fl.Parallel(None, np.sin, d),
     lambda d, x: (np.sin(x.astype(np.float32)), _dense(d, x))),
    (lambda d: fl.Parallel(_cat, d=d, skip=_identity),
     lambda d, x: np.concatenate([_dense(d, x), x.astype(np.float32)], axis=-1)),
    (lambda d: fl.PairwiseFusion(np.add, d, _identity),
     lambda d, x: (_dense(d, x), _dense(d, x) + x.astype(np.float32))),
    (lambda d: fl.PairwiseFusion(np.add, _identity, d),
     lambda d, x: (x.astype(np.float32), _dense(d, 2 * x))),
    (lambda d: fl.Maxout(d, _identity),
     lambda d, x: np.maximum(_dense(d, x), x.astype(np.float32))),
    (lambda d: fl.Maxout(np.tanh, d),
     lambda d, x: np.maximum(np.tanh(x.astype(np.float32)), _dense(d, x))),
]


@pytest.mark.parametrize("case", range(len(_BRANCHES)))
def test_containers_join_parameter_free_branches_in_the_model_precision(case, monkeypatch):
    """A float64 input to a float32 Parallel(+, Dense, identity): the Dense converted it (and
    warned), the identity kept float64, and the connection gave float64, the next layers
    converting again with no warning (silently; Flux's too). The branches that kept their
    input's precision now join in the one the Dense converted to, as SkipConnection does."""
    make, by_hand = _BRANCHES[case]
    rng = np.random.default_rng(case)
    m = make(fl.Dense(3, 3))
    dense = next(layer for layer in fl.modules(m) if isinstance(layer, fl.Dense))
    x = rng.standard_normal((2, 3))
    monkeypatch.setattr(precision, "_warned", set())  # (each warning is once per process)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        y = m(x)
    assert [str(w.message)[:45] for w in record] == \
        ["Dense(3 => 3) has float32 parameters and got "]
    want = by_hand(dense, x)
    for got, expected in zip(*((y, want) if isinstance(y, tuple) else ((y,), (want,)))):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    one = (lambda y: y[-1]) if isinstance(y, tuple) else (lambda y: y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = fl.gradient(lambda m: np.sum(one(m(x))), m)[0]
        assert next(v for v in fl.tree.leaves(g) if v is not None).dtype == np.float32
        compiled = fl.compile(lambda m, x: one(m(x)), background=False)(m, x)
        assert compiled.dtype == np.float32
    # input of the model's precision, or branches that all keep their input's, left alone
    assert one(m(x.astype(np.float32))).dtype == np.float32


def test_containers_without_a_conversion_keep_numpys_promotion(monkeypatch):
    monkeypatch.setattr(precision, "_warned", set())  # (the warnings below are no one's)
    x64, x32 = np.ones((2, 3)), np.ones((2, 3), np.float32)
    assert fl.Parallel(np.add, np.tanh, _identity)(x64).dtype == np.float64
    # inputs of two precisions, no layer converting: NumPy's promotion, as before
    a, b = fl.Parallel(None, _identity, np.tanh)(x64, x32)
    assert (a.dtype, b.dtype) == (np.float64, np.float32)
    assert fl.Parallel(np.add, _identity, np.tanh)(x64, x32).dtype == np.float64
    assert fl.Maxout(np.tanh, np.sin)(x32).dtype == np.float32
    # layers of two precisions, each converting: left to NumPy's promotion too
    two = fl.Parallel(np.add, fl.Dense(3, 3), fl.f16(fl.Dense(3, 3)), _identity)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert two(x64).dtype == np.float64
