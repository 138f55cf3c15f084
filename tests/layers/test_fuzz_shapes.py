"""The description of a model (outputsize, summary, autosize, printing, Chain indexing)
against the forward pass and the fuzzer's own walk (tests/layers/fuzz_shapes.py), on a few
seeds; and the defects that fuzzer found, one test each. More seeds by hand:
``PYTHONPATH=src python -m tests.layers.fuzz_shapes --cases 3000``."""

import io
import warnings

import numpy as np
import pytest

import fluxml as fl
from tests.layers import fuzz_shapes


@pytest.mark.parametrize("start", range(0, 160, 40))
def test_random_models_are_described_as_they_run(start):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (other-precision inputs)
        for seed in range(start, start + 40):
            fuzz_shapes.run_case(seed)


def shapes(y):
    return tuple(shapes(v) for v in y) if isinstance(y, tuple) else y.shape


def test_outputsize_of_a_recurrent_layer_returning_its_state():
    """return_state=True returns (outputs, final state): outputsize gave the outputs' shape
    alone; and it took a sequence of no time steps, which the layer refuses."""
    x = np.zeros((2, 5, 3), np.float32)
    for m in (fl.LSTM(3, 4, return_state=True), fl.GRU(3, 4, return_state=True),
              fl.RNN(3, 4, return_state=True)):
        assert fl.outputsize(m, x.shape) == shapes(m(x))
        assert fl.outputsize(m, x.shape[1:]) == shapes(m(x[0]))
    assert fl.outputsize(fl.LSTM(3, 4, return_state=True), (2, 5, 3)) == \
        ((2, 5, 4), ((2, 4), (2, 4)))
    with pytest.raises(fl.LayerError, match=r"LSTM\(3 => 4\) expects at least one time step; "
                                            r"got \(2, 0, 3\)"):
        fl.outputsize(fl.LSTM(3, 4), (2, 0, 3))


def test_maxout_outputsize_takes_every_alternative():
    """outputsize read the first alternative only: a wider second one (the maximum
    broadcasts) gave a wrong shape, and one that refuses the input passed."""
    m = fl.Maxout(fl.Dense(3, 1), fl.Dense(3, 4))
    assert fl.outputsize(m, (2, 3)) == m(np.ones((2, 3), np.float32)).shape == (2, 4)
    with pytest.raises(fl.LayerError, match=r"^Maxout\[1\]: Dense\(2 => 4\) expects inputs"):
        fl.outputsize(fl.Maxout(fl.Dense(3, 4), fl.Dense(2, 4)), (2, 3))
    clash = fl.Chain(fl.Maxout(fl.Dense(3, 2), fl.Dense(3, 4)))
    for f in (lambda: clash(np.ones((2, 3), np.float32)), lambda: fl.outputsize(clash, (2, 3))):
        with pytest.raises(fl.LayerError, match=r"^Chain\[0\]: Maxout's layers give outputs of "
                                                r"shapes \(2, 2\) and \(2, 4\), which do not"):
            f()


def test_upsample_refuses_what_its_forward_pass_refuses_when_built():
    """outputsize gave a shape for a nearest upsampling by 1.5 and for a scale leaving no
    output entries, where the forward pass raised; NumPy numbers failed with 'no len()'."""
    with pytest.raises(ValueError, match="mode 'nearest' takes integer scales; got 1.5"):
        fl.Upsample("nearest", scale=1.5)
    with pytest.raises(ValueError, match=r"size must be a positive int .*; got \(0, 2\)"):
        fl.Upsample(size=(0, 2))
    m = fl.Upsample("linear", scale=0.5)
    for f in (lambda: m(np.ones((1, 1, 1), np.float32)), lambda: fl.outputsize(m, (1, 1, 1))):
        with pytest.raises(fl.LayerError, match=r"Upsample\('linear', scale=0.5\) leaves no "
                                                r"output entries for input \(1, 1, 1\)"):
            f()
    for m in (fl.Upsample(size=np.int64(2)), fl.Upsample("linear", scale=np.float32(1.5))):
        assert fl.outputsize(m, (1, 1, 3)) == m(np.ones((1, 1, 3), np.float32)).shape


def test_conv_transpose_same_padding_gives_n_times_stride():
    """pad="same" gave (n - 1) * stride + k, short of the documented n * stride, when the
    kernel is shorter than the stride; the rows short are output padding (the bias)."""
    m = fl.ConvTranspose((2,), 3, 2, stride=3, pad="same", bias=np.array([5, 7], np.float32))
    plain = fl.ConvTranspose((2,), 3, 2, stride=3)
    plain.weight[...], plain.bias[...] = m.weight, m.bias
    x = np.random.default_rng(0).normal(size=(2, 3, 4)).astype(np.float32)
    y = m(x)
    assert y.shape == fl.outputsize(m, x.shape) == (2, 2, 12)
    np.testing.assert_allclose(y[..., :11], plain(x), rtol=1e-6)
    np.testing.assert_array_equal(y[..., 11], [[5, 7], [5, 7]])
    assert fl.ConvTranspose((1, 3), 1, 1, stride=(2, 2), pad="same")(
        np.ones((1, 1, 3, 5), np.float32)).shape == (1, 1, 6, 10)
    # an output padding the forward pass refuses is refused when the layer is built
    with pytest.raises(ValueError, match=r"ConvTranspose: outpad=3 must be smaller than the "
                                         r"stride \(1\) or the dilation \(1\)"):
        fl.ConvTranspose((2,), 1, 1, outpad=3)


def test_outputsize_of_weightnorm_and_recurrence_runs_no_layer(monkeypatch):
    """WeightNorm and Recurrence had no shape rule: outputsize ran their layers on zeros."""
    def refuse(self, *args, **kwargs):
        raise AssertionError("a layer ran")

    for cls in (fl.Dense, fl.Conv, fl.LSTMCell, fl.GRUCell):
        monkeypatch.setattr(cls, "__call__", refuse)
    assert fl.outputsize(fl.WeightNorm(fl.Conv((3,), 2, 4)), (5, 2, 7)) == (5, 4, 5)
    assert fl.outputsize(fl.WeightNorm(fl.Dense(2, 4)), (5, 2)) == (5, 4)
    assert fl.outputsize(fl.Recurrence(fl.LSTMCell(2, 3), return_state=True), (4, 5, 2)) == \
        ((4, 5, 3), ((4, 3), (4, 3)))
    assert fl.outputsize(fl.Recurrence(fl.GRUCell(2, 3)), (5, 2)) == (5, 3)
    with pytest.raises(fl.LayerError, match=r"^WeightNorm\['layer'\]: Dense\(2 => 4\) expects"):
        fl.outputsize(fl.WeightNorm(fl.Dense(2, 4)), (5, 3))
    with pytest.raises(fl.LayerError, match=r"^Recurrence\['cell'\]: GRUCell\(2 => 3\) expects "
                                            r"input \(N, 2\); got \(4, 3\)"):
        fl.outputsize(fl.Recurrence(fl.GRUCell(2, 3)), (4, 5, 3))
    with pytest.raises(fl.LayerError, match=r"at least one time step; got \(4, 0, 2\)"):
        fl.outputsize(fl.Recurrence(fl.GRUCell(2, 3)), (4, 0, 2))  # (not a batch of one)


def test_embedding_bag_line_reads_as_its_constructor():
    """The reduction printed bare (EmbeddingBag(7 => 2, max)) read as Python's max, which the
    constructor refuses; and outputsize refused a wrong shape in other words."""
    m = fl.EmbeddingBag(7, 2, "max")
    assert m._line() == "EmbeddingBag(7 => 2, 'max')"
    assert eval(m._line().replace(" => ", ", "), vars(fl))._line() == m._line()  # noqa: S307
    messages = []
    for f in (lambda: m(np.zeros(3, int)), lambda: fl.outputsize(m, (3,))):
        with pytest.raises(fl.LayerError) as err:
            f()
        messages.append(str(err.value))
    assert messages[0] == messages[1]
    for f in (lambda: m(np.zeros((2, 3), bool)), lambda: fl.outputsize(m, (2, 3), dtype=bool)):
        with pytest.raises(fl.LayerError, match=r"expects integer indices; got bool"):
            f()  # (outputsize gave (2, 2))


def test_outputsize_reads_the_input_dtype_inside_chains():
    """An Embedding reads a bool array as one-hot rows: outputsize and summary gave the
    indices' shape (4, 5, 3) for the forward pass's (4, 3); and a Chain dropped the dtype
    given, running its layers on float32 zeros."""
    emb = fl.Embedding(5, 3)
    x = np.zeros((4, 5), bool)
    assert fl.outputsize(emb, x.shape, dtype=bool) == emb(x).shape == (4, 3)
    m = fl.Chain(fl.Chain(emb), fl.Dense(3, 2))
    assert fl.outputsize(m, x.shape, dtype=bool) == m(x).shape == (4, 2)
    assert "(4, 3)" in summary_text(m, x.shape, dtype=bool)
    with pytest.raises(fl.LayerError, match=r"^Chain\[0\]: Embedding\(5 => 3\) reads a bool "
                                            r"array as one-hot rows \(\.\.\., 5\); got \(4, 4\)"):
        fl.outputsize(fl.Chain(emb), (4, 4), dtype=bool)

    def lookup(idx):  # a user's layer that takes indices only
        if idx.dtype.kind not in "iu":
            raise TypeError(f"indices, not {idx.dtype}")
        return emb(idx)

    assert fl.outputsize(fl.Chain(lookup, fl.Dense(3, 2)), (2, 7), dtype=np.int64) == (2, 7, 2)


def summary_text(model, shape, **kw):
    import io

    out = io.StringIO()
    fl.summary(model, shape, file=out, **kw)
    return out.getvalue()


def test_outputsize_of_attention_given_query_key_and_value_shapes():
    """(q, k, v) shapes failed with "'<' not supported between 'tuple' and 'int'"."""
    m = fl.MultiHeadAttention(4, nheads=2, kdim=3)
    q, k = np.ones((2, 5, 4), np.float32), np.ones((2, 7, 3), np.float32)
    assert fl.outputsize(m, (q.shape, k.shape, k.shape)) == shapes(m(q, k, k)) == \
        ((2, 5, 4), (2, 2, 5, 7))
    assert fl.outputsize(fl.Chain(fl.Parallel(None, np.sin, np.cos, np.cos), m),
                         (q.shape, k.shape, k.shape)) == ((2, 5, 4), (2, 2, 5, 7))


def test_chain_takes_an_index_array_as_a_list():
    m = fl.Chain(a=np.tanh, b=np.sin, c=np.cos)
    assert list(m[np.array([0, 2])].layers) == ["a", "c"]
    assert fl.Chain(np.tanh, np.sin)[np.arange(1, 2)].layers == (np.sin,)


def test_autosize_takes_the_input_dtype_and_locates_errors():
    """autosize had no dtype (an Embedding given one-hot rows read as indices gave the next
    layer the wrong shape) and its errors did not say where in the Chain they came from."""
    m = fl.autosize((4, 5, 7), fl.Chain(fl.Embedding(7, 3), fl.Flatten(), fl.Dense(fl._, 2)),
                    dtype=bool)
    assert m[2].weight.shape == (2, 15)  # (not 5 * 7 * 3)
    assert m(np.eye(7, dtype=bool)[np.zeros((4, 5), int)]).shape == (4, 2)
    with pytest.raises(fl.LayerError, match=r"^Chain\[1\] > Chain\[1\]: Conv\(\(2,\), 4 => 3\) "
                                            r"expects input \(N, 4, L\); got \(2, 4\)"):
        fl.autosize((2, 3), fl.Chain(fl.Dense(fl._, 4), fl.Chain(np.tanh, fl.Conv((2,), fl._, 3))))


def test_input_shapes_are_checked_and_padbatch_pads_each_input():
    """padbatch with several inputs failed with "object of type 'int' has no len()"; a
    shape of floats gave a shape of floats; a NumPy shape gave np.int64 sizes back."""
    p = fl.Parallel(None, fl.Dense(4, 3), fl.Dense(2, 1))
    assert fl.outputsize(p, ((4,), (2,)), padbatch=True) == ((1, 3), (1, 1))
    got = fl.outputsize(fl.Dense(2, 3), np.array([4, 2]))
    assert got == (4, 3) and all(type(d) is int for d in got)
    for f in (fl.outputsize, fl.summary, lambda m, s: fl.autosize(s, m)):
        with pytest.raises(TypeError, match=r"the input shape must be a tuple of non-negative "
                                            r"ints, batch first .*; got \(4.0, 2\)"):
            f(fl.Dense(2, 3), (4.0, 2))


@pytest.mark.parametrize("layer, shape, message", [
    (fl.AdaptiveMaxPool((2,)), (1, 1, 0), r"AdaptiveMaxPool\(\(2,\)\) expects a spatial size "
                                          r"of at least 1 on each axis; got input \(1, 1, 0\)"),
    (fl.AdaptiveMeanPool((2, 2)), (1, 1, 3, 0), r"AdaptiveMeanPool\(\(2, 2\)\) expects a spatial"),
    (fl.GlobalMaxPool(), (2, 3, 0), r"GlobalMaxPool\(\) expects a spatial size of at least 1"),
    (fl.GlobalMeanPool(), (2, 3, 4, 0), r"GlobalMeanPool\(\) expects a spatial size of at"),
    (fl.MultiHeadAttention(4, nheads=2), (0, 3, 4),
     r"MultiHeadAttention\(4, nheads=2\) expects q, k and v with no empty axis; got \(0, 3, 4\)"),
])
def test_empty_inputs_refused_alike_by_outputsize_and_the_forward_pass(layer, shape, message):
    """outputsize gave a shape where the forward pass failed in NumPy's or the kernel's
    words ('attempt to get argmax of an empty sequence'), or gave NaN (the mean of nothing)."""
    for f in (lambda: layer(np.ones(shape, np.float32)), lambda: fl.outputsize(layer, shape)):
        with pytest.raises(fl.LayerError, match=message):
            f()


def test_autosize_reaches_into_pairwise_fusion_and_recurrence():
    """A placeholder there was left unbuilt, and autosize failed with 'build the model with
    fl.autosize first'; one for a layer of several inputs failed with int() of a tuple."""
    _ = fl._
    m = fl.autosize(((2, 5), (2, 3)), fl.PairwiseFusion(np.add, fl.Dense(_, 3), fl.Dense(_, 3)))
    assert [d.weight.shape for d in m.layers] == [(3, 5), (3, 3)]
    r = fl.autosize((2, 4, 5), fl.Recurrence(fl.LSTMCell(_, 3), return_state=True))
    assert r.cell.sizes == (5, 3) and r.return_state
    assert fl.outputsize(r, (2, 4, 5)) == shapes(r(np.ones((2, 4, 5), np.float32)))
    with pytest.raises(fl.LayerError, match=r"^Chain\[1\]: Bilinear\(_, 2\) takes several "
                                            r"inputs, of shapes \(\(2, 2\), \(2, 3\)\)"):
        fl.autosize((2, 3), fl.Chain(fl.Parallel(None, fl.Dense(_, 2), fl.Dense(_, 3)),
                                     fl.Bilinear(_, 2)))
    # inputs of one size give it (Flux's @autosize of SkipConnection(.., Bilinear(_ => 10)))
    m = fl.autosize((2, 3), fl.Chain(fl.Parallel(None, fl.Dense(_, 2), fl.Dense(_, 2)),
                                     fl.Bilinear(_, 2)))
    assert m[1].weight.shape == (2, 2, 2)


def test_dropout_lines_keep_their_probability():
    """A line printed p with :g, six digits: Dropout(0.1234567) read back as 0.123457."""
    for layer in (fl.Dropout(0.1234567), fl.AlphaDropout(1 / 3),
                  fl.MultiHeadAttention(4, nheads=2, dropout=2 / 3)):
        line = layer._line()
        assert eval(line, vars(fl))._line() == line  # noqa: S307 - the layer's own line
    assert fl.Dropout(0.1234567)._line() == "Dropout(0.1234567)"
    assert repr(fl.Dropout(0)) == "Dropout(0)" and repr(fl.Dropout(0.5)) == "Dropout(0.5)"


@pytest.mark.parametrize("layer, shape", [
    (fl.BatchNorm(5, track_stats=False), (1, 5, 1)),  # (the fuzzer's seed 21483)
    (fl.trainmode(fl.BatchNorm(5)), (1, 5)),
    (fl.InstanceNorm(5), (2, 5, 1)),
])
def test_outputsize_refuses_statistics_of_one_value_as_the_forward_pass(layer, shape):
    # outputsize gave the input's shape where the layer raises
    with pytest.raises(fl.LayerError, match="got a single value per") as forward:
        layer(np.ones(shape, np.float32))
    with pytest.raises(fl.LayerError) as size:
        fl.outputsize(layer, shape)
    assert str(size.value) == str(forward.value)
    assert fl.outputsize(fl.BatchNorm(5), (1, 5)) == (1, 5)  # test mode: running statistics


def test_a_users_subclass_with_its_own_call_is_sized_by_running_it():
    # it was given its library parent's shape rule: (5, 2) for the (5, 4) it returns
    class Twice(fl.Dense):
        def __call__(self, x):
            y = super().__call__(x)
            return np.concatenate([y, y], axis=1)

    class Residual(fl.Chain):
        def __call__(self, x):
            return np.concatenate([x, super().__call__(x)], axis=1)

    x = np.ones((5, 3), np.float32)
    model = fl.Chain(Twice(3, 2), fl.Dense(4, 1))
    assert fl.outputsize(Twice(3, 2), (5, 3)) == Twice(3, 2)(x).shape == (5, 4)
    assert fl.outputsize(model, (5, 3)) == model(x).shape == (5, 1)
    res = Residual(fl.Dense(3, 2), fl.Dense(2, 2))
    assert fl.outputsize(res, (5, 3)) == res(x).shape == (5, 5)
    out = io.StringIO()
    fl.summary(model, (5, 3), file=out)
    assert "(5, 4)" in out.getvalue().splitlines()[3]

    class Plain(fl.Dense):  # its parent's __call__: the parent's rule holds
        pass

    assert fl.outputsize(Plain(3, 2), (5, 3)) == (5, 2)
