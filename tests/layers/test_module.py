"""The Module system: structural gradients, user layers, printing, modes, precision."""

import io
import re
import traceback
import warnings

import numpy as np
import pytest

import fluxml as fl
from fluxml.layers import precision
from fluxml.testing import check_grads


class Scale2(fl.Module):
    """A user's layer written with NumPy, an in-place write included."""

    def __init__(self, n):
        self.s = np.full(n, 2.0)

    def __call__(self, x):
        out = np.zeros_like(x)
        out[:, 0] = x[:, 0] * self.s[0]
        out[:, 1:] += x[:, 1:] * self.s[1:]
        return out


class Plain:
    """Not even a Module: a plain class in a Chain."""

    def __init__(self):
        self.w = np.array([1.0, -1.0])

    def __call__(self, x):
        return np.tanh(x * self.w)


class Stats(fl.Module):
    nontrainable = ("running",)

    def __init__(self):
        self.scale = np.ones(2)
        self.running = np.zeros(2)

    def __call__(self, x):
        self.running[...] = 0.9 * self.running + 0.1 * fl.stop_gradient(np.mean(x, axis=0))
        return x * self.scale


def test_structural_gradient_mirrors_the_model():
    model = fl.f64(fl.Chain(fl.Dense(3, 2, np.tanh), Scale2(2), Plain()))
    x = np.random.default_rng(0).normal(size=(4, 3))
    g, = fl.gradient(lambda m: np.sum(m(x) ** 2), model)
    assert isinstance(g, fl.Chain)
    assert g.layers[0].weight.shape == (2, 3)
    assert g.layers[1].s.shape == (2,)
    assert g.layers[2].w.shape == (2,)
    assert g.layers[0].activation is None  # static parts show None
    # against finite differences, through the user's in-place layer
    check_grads(lambda w, s, v: np.sum(_rebuilt(model, w, s, v)(x) ** 2),
                model.layers[0].weight, model.layers[1].s, model.layers[2].w, order=1)


def _rebuilt(model, w, s, v):
    m = fl.fmap(lambda a: a, model)
    m.layers[0].weight, m.layers[1].s, m.layers[2].w = w, s, v
    return m


def test_dense_matches_formula_and_checks_grads():
    rng = np.random.default_rng(1)
    d = fl.f64(fl.Dense(3, 4, np.tanh, rng=rng))
    d.bias = rng.normal(size=4)
    x = rng.normal(size=(5, 3))
    expected = np.tanh(np.einsum("oi,ni->no", d.weight, x) + d.bias)
    np.testing.assert_allclose(d(x), expected, rtol=1e-12)
    check_grads(lambda W, b, x: np.sum(np.sin(fl.Dense(W, np.tanh, bias=b)(x))),
                d.weight, d.bias, x, order=2)


def test_dense_shapes_and_options():
    d = fl.Dense(3, 2, bias=False)
    assert d.bias is None and repr(d) == "Dense(3 => 2, bias=False)  # 6 parameters"
    assert d(np.ones(3, np.float32)).shape == (2,)
    assert d(np.ones((2, 5, 3), np.float32)).shape == (2, 5, 2)
    assert d.weight.dtype == np.float32


@pytest.mark.parametrize("bad, message", [
    (np.ones((2, 5), np.float32),
     r"Dense\(3 => 2\) expects inputs of shape \(N, 3\); got \(2, 5\)"),
    (np.ones((2, 3), np.int64), "expects floating-point input; got int64"),
    ([1.0, 2.0, 3.0], r"expects an array \(N, 3\); got a list: convert it"),
    (np.ones((2, 2), np.float32), r"got \(2, 2\); the sizes the other way round\? .*Dense\(2, 3\)"),
])
def test_dense_bad_input(bad, message):
    with pytest.raises(fl.LayerError, match=message):
        fl.Dense(3, 2)(bad)


LIST_INPUT = [  # (layer, a shape it takes)
    (fl.Dense(3, 2), (2, 3)), (fl.Conv((2,), 1, 2), (1, 1, 4)),
    (fl.ConvTranspose((2,), 1, 2), (1, 1, 4)), (fl.DepthwiseConv((2,), 2, 2), (1, 2, 4)),
    (fl.CrossCor((2,), 1, 2), (1, 1, 4)), (fl.MaxPool((2,)), (1, 1, 4)),
    (fl.MeanPool((2,)), (1, 1, 4)), (fl.AdaptiveMaxPool((2,)), (1, 1, 4)),
    (fl.AdaptiveMeanPool((2,)), (1, 1, 4)), (fl.GlobalMaxPool(), (1, 1, 4)),
    (fl.GlobalMeanPool(), (1, 1, 4)), (fl.Upsample(scale=2), (1, 1, 4)),
    (fl.PixelShuffle(2), (1, 4, 2, 2)), (fl.BatchNorm(2), (3, 2)), (fl.LayerNorm(3), (2, 3)),
    (fl.GroupNorm(2, 1), (2, 2, 3)), (fl.InstanceNorm(2), (1, 2, 3)),
    (fl.Dropout(0.5), (2, 3)), (fl.AlphaDropout(0.5), (2, 3)), (fl.RNN(3, 2), (1, 2, 3)),
    (fl.LSTM(3, 2), (1, 2, 3)), (fl.GRU(3, 2), (1, 2, 3)), (fl.RNNCell(3, 2), (2, 3)),
    (fl.LSTMCell(3, 2), (2, 3)), (fl.GRUCell(3, 2), (2, 3)),
    (fl.Bidirectional(fl.RNN(3, 2)), (1, 2, 3)), (fl.MultiHeadAttention(4, nheads=2), (2, 4)),
    (fl.TransformerEncoderBlock(4, 2, 8), (2, 4)), (fl.Scale(3), (2, 3)),
    (fl.Flatten(), (2, 3, 1)), (fl.Bilinear(3, 2), (2, 3)), (fl.PolyAct(2), (2, 3)),
    (fl.Maxout(lambda: fl.Dense(3, 2), 2), (2, 3)),
    (fl.SkipConnection(fl.Dense(3, 3), np.add), (2, 3)),
]


@pytest.mark.parametrize("layer, shape", LIST_INPUT, ids=lambda v: fl.layers.show.line_of(v)
                         if isinstance(v, fl.Module) else str(v))
def test_every_layer_refuses_a_list_in_its_name(layer, shape):
    """A list (or tuple) is refused by every layer as Dense refuses it, naming the layer (Conv,
    Scale, Flatten, Bilinear converted it to float64; BatchNorm, the recurrent layers and the
    pooling ones reported the very shape they wanted; Dropout returned the list; attention
    failed in NumPy): layers take arrays, as Flux's and PyTorch's."""
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    assert fl.leaves(layer(x))[0].shape[0] == shape[0]  # (the output, first of a tuple)
    for bad in (x.tolist(), tuple(x.tolist())):
        with pytest.raises(fl.LayerError, match=r"expects an array( \(N, 3\))?; got a "
                                                r"(list|tuple): convert it, np.asarray\("):
            layer(bad)


def test_dense_from_arrays_as_flux():
    w, b = np.ones((2, 3), np.float32), np.full(2, 5.0, np.float32)
    d = fl.Dense(w, b, np.negative)  # Flux's Dense(W, b, σ): the bias was dropped silently
    assert d.bias is b and d.activation is np.negative and d.weight is w
    assert fl.Dense(w, False).bias is None and fl.Dense(w, np.tanh).activation is np.tanh
    with pytest.raises(TypeError, match="bias is given twice"):
        fl.Dense(w, b, bias=b)
    d = fl.Dense(w, np.zeros(2))  # a float64 bias takes the weight's dtype, as Flux's
    assert d.bias.dtype == np.float32 and d(np.ones((1, 3), np.float32)).dtype == np.float32


def test_dense_bad_construction():
    with pytest.raises(ValueError, match="in_features must be a positive int; got 0"):
        fl.Dense(0, 2)
    with pytest.raises(ValueError, match=r"bias must have shape \(2,\)"):
        fl.Dense(3, 2, bias=np.zeros(3))
    with pytest.raises(TypeError, match="activation must be callable"):
        fl.Dense(3, 2, "relu")


def test_chain_error_names_the_place():
    m = fl.Chain(fl.Dense(2, 3), fl.Chain(fl.Dense(3, 3), fl.Dense(4, 1)))
    with pytest.raises(fl.LayerError, match=r"^Chain\[1\] > Chain\[1\]: Dense\(4 => 1\) "
                                            r"expects inputs of shape \(N, 4\); got \(5, 3\)"):
        m(np.ones((5, 2), np.float32))


class Mix(fl.Module):
    """A user's layer whose weight does not fit the input: NumPy's shape error inside."""

    def __init__(self):
        self.w = np.ones((4, 2))

    def __call__(self, x):
        if np.ndim(x) != 2:
            raise ValueError(f"Mix wants a matrix; got {np.ndim(x)}-d")
        return x @ self.w


class NoteError(ValueError):
    def __init__(self, message, code=7):
        super().__init__(message)
        self.code = code


def test_a_users_layer_error_is_located_keeping_its_type_and_traceback():
    """A ValueError or IndexError out of a user's layer (NumPy's, or its own) reads
    Chain[2]: ... as a built-in layer's LayerError does, of the same type, raised from the
    original (its traceback chained); nested containers and outputsize/summary too."""
    m = fl.Chain(fl.Dense(2, 3), np.tanh, Mix())
    with pytest.raises(ValueError, match=r"^Chain\[2\]: matmul: Input operand 1 has a "
                                         r"mismatch") as info:
        m(np.ones((5, 2), np.float32))
    err = info.value
    assert type(err) is ValueError and not isinstance(err, fl.LayerError)
    last = traceback.extract_tb(err.__cause__.__traceback__)[-1]
    assert (last.name, last.line) == ("__call__", "return x @ self.w")  # the user's line
    nested = fl.Chain(fl.SkipConnection(fl.Chain(np.sin, Mix()), np.add))
    with pytest.raises(ValueError, match=r"^Chain\[0\] > SkipConnection\[0\] > Chain\[1\]: "
                                         r"Mix wants a matrix; got 1-d") as info:
        nested(np.ones(4))
    assert str(info.value.__cause__) == "Mix wants a matrix; got 1-d"  # one chain, not three
    assert info.value.__cause__.__cause__ is None
    with pytest.raises(IndexError, match=r"^Chain\[1\]: too many indices"):
        fl.Chain(np.ravel, lambda x: x[:, 0])(np.ones(3))
    with pytest.raises(ValueError, match=r"^Chain\[1\]: Mix wants a matrix; got 3-d"):
        fl.outputsize(fl.Chain(np.sin, Mix()), (2, 3, 4))
    def refuse(x):
        raise NoteError("no", code=3)

    with pytest.raises(NoteError, match=r"^Chain\[0\]: no") as info:  # its fields go along
        fl.Chain(refuse)(1.0)
    assert info.value.code == 3
    assert fl.Chain(np.sin, Mix())(np.ones((1, 4))).shape == (1, 2)


def test_other_precision_converts_and_warns_once(monkeypatch):
    # (once per process, for each layer type and pair of dtypes: an earlier test may have
    # used it up, so this one starts afresh)
    monkeypatch.setattr(precision, "_warned", set())
    d = fl.Dense(2, 2)
    with pytest.warns(UserWarning, match=r"Dense\(2 => 2\) has float32 parameters and got "
                                         "float64 input"):
        y = d(np.ones((1, 2)))
    assert y.dtype == np.float32
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d(np.ones((1, 2)))


def test_chain_indexing_and_names():
    a, b, c = fl.Dense(2, 3), fl.Dense(3, 3), fl.Dense(3, 1)
    m = fl.Chain(a, b, c)
    assert m[0] is a and len(m) == 3 and list(m) == [a, b, c]
    assert isinstance(m[1:], fl.Chain) and m[1:].layers == (b, c)
    x = np.ones((2, 2), np.float32)
    np.testing.assert_allclose(m(x), c(b(a(x))))
    named = fl.Chain(enc=a, mid=b, dec=c)
    assert named.enc is a and named["dec"] is c and named[1] is b
    assert list(named[1:].layers) == ["mid", "dec"]
    assert m[[0, 2]].layers == (a, c) and m[[-1]].layers == (c,)  # Flux's c[[1, 3]]
    assert named[[0, "dec"]].layers == {"enc": a, "dec": c}
    g, = fl.gradient(lambda m: np.sum(m(x)), named)
    assert g.layers["enc"].weight.shape == (3, 2)
    assert fl.Chain([a, b]).layers == (a, b)
    with pytest.raises(TypeError, match="either positionally or by name"):
        fl.Chain(a, dec=c)


def test_printing_nested_with_counts():
    m = fl.Chain(fl.Dense(2, 3, np.tanh), fl.Chain(fl.Dense(3, 3), np.sin), Stats())
    text = repr(m)
    assert text.splitlines()[0] == "Chain("
    assert "  Dense(2 => 3, tanh),                  # 9 parameters" in text
    assert "    sin," in text
    assert "Stats(scale=float64[2], running=float64[2]),  # 2 parameters, plus 2 non-trainable" \
        in text
    assert "# Total: 5 trainable arrays, 23 parameters," in text
    assert "# plus 1 non-trainable, 2 parameters," in text
    total, plus = text.splitlines()[-2:]
    assert total.index("# Total") == plus.index("# plus")  # one column, as Flux prints them


def test_a_layer_with_sublayers_lists_its_own_arrays():
    """As Flux's listing: the lines' counts add up to the total."""

    class Gain(fl.Module):
        nontrainable = ("seen",)

        def __init__(self):
            self.gain = np.ones(3, np.float32)
            self.inner = fl.Dense(3, 3)
            self.seen = np.zeros(2, np.float32)

        def __call__(self, x):
            return self.inner(x) * self.gain

    text = repr(fl.Chain(Gain()))
    assert "    gain = float32[3],                  # 3 parameters\n" in text
    assert "    seen = float32[2],                  # 2 non-trainable\n" in text
    assert "# Total: 3 trainable arrays, 15 parameters," in text


def test_printing_flags_nan_and_zero_weights():
    d = fl.Dense(2, 2, init=fl.init.zeros)
    assert repr(d).endswith("(all zero)")
    d.weight[0, 0] = np.nan
    assert repr(d).endswith("(some NaN)")


def test_nontrainable_fields_are_skipped_by_gradient_but_updated_in_place():
    m = Stats()
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    g, = fl.gradient(lambda m: np.sum(m(x)), m)
    np.testing.assert_allclose(g.scale, [4.0, 6.0])
    assert g.running is None
    np.testing.assert_allclose(m.running, [0.2, 0.3])  # the model's own array was updated
    assert list(fl.trainable(m)) == ["scale"]
    assert len(fl.leaves(m)) == 2  # fmap, saving and device moves still see both


def test_trainmode_testmode_walk_the_model():
    class Noisy(fl.Module):
        def __init__(self):
            self.active = None

        def __call__(self, x):
            return x

    inner = Noisy()
    m = fl.Chain(fl.Dense(1, 1), fl.Chain(inner), Plain())
    fl.trainmode(m)
    assert inner.active is True
    fl.testmode(m)
    assert inner.active is False
    fl.testmode(m, None)
    assert inner.active is None
    assert fl.modules(m)[2] is m.layers[1]


def test_is_active_follows_the_trace():
    layer = fl.Module()
    seen = []

    def f(x):
        seen.append(fl.layers.is_active(layer, x))
        return np.sum(x)

    fl.gradient(f, np.ones(2))
    f(np.ones(2))
    assert seen == [True, False]
    layer.active = False
    fl.gradient(f, np.ones(2))
    assert seen[-1] is False


def test_train_mode_inside_gradient_even_on_plain_data():
    """A Dropout (or BatchNorm without parameters) first in a model sees the data, not a
    traced value: inside a gradient it still trains, as Flux's; a compiled function called
    inside a gradient acts as the eager one (it runs eagerly there)."""
    x = np.ones((64, 6), np.float32)
    m, m_plain = (fl.Chain(fl.Dropout(0.5), fl.Dense(6, 2)) for _ in range(2))
    predict = fl.compile(lambda m, x: m(x))
    inside = []
    g, = fl.gradient(lambda m: inside.append(predict(m_plain, x)) or np.sum(m(x)), m)
    assert len(set(g.layers[1].weight[0].tolist())) > 1  # each input column dropped apart
    assert not np.array_equal(inside[0], m_plain(x))  # the compiled call trained too
    np.testing.assert_array_equal(predict(m_plain, x), m_plain(x))  # outside: test mode
    bn = fl.BatchNorm(6, affine=False)
    fl.gradient(lambda m: np.sum(m(x + np.arange(6, dtype=np.float32))), fl.Chain(bn))
    assert bn.running_mean[5] > 0
    assert not fl.layers.within_gradient(x)


def test_train_mode_is_per_thread():
    """Each thread has its own stack of open gradients (a shared list raced: an IndexError
    out of fl.gradient, or a gradient that saw test mode)."""
    import sys
    import threading

    seen, errors = [], []

    def f(w):
        seen.append(fl.layers.within_gradient(1.0))
        return np.sum(w * w)

    def worker():
        try:
            for _ in range(200):
                fl.gradient(f, np.ones(2))
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert not errors and len(seen) == 800 and all(seen)
    assert not fl.layers.within_gradient(1.0)


def test_checkpoint_replays_dropout_and_updates_statistics_once():
    """fl.checkpoint's recompute draws the forward pass's dropout mask again and leaves the
    running statistics as the forward pass left them (as PyTorch's preserve_rng_state)."""
    x = np.random.default_rng(1).standard_normal((6, 3))
    results = []
    for wrap in (lambda f: f, fl.checkpoint):
        m = fl.f64(fl.Chain(fl.Dense(3, 4, fl.relu, rng=np.random.default_rng(0)),
                            fl.Dropout(0.5, rng=np.random.default_rng(5)), fl.BatchNorm(4)))
        body = wrap(lambda m, x: m(x))
        loss, (g, _) = fl.withgradient(lambda m, x: np.sum(body(m, x) ** 2), m, x)
        results.append((loss, g.layers[0].weight, m.layers[2].running_mean.copy()))
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_precision_conversion_of_whole_trees():
    m = fl.Chain(fl.Dense(2, 3), Stats())
    m64 = fl.f64(m)
    assert m64.layers[0].weight.dtype == np.float64 and m64.layers[1].running.dtype == np.float64
    assert m.layers[0].weight.dtype == np.float32  # a new tree; the old one is unchanged
    assert fl.f16(m).layers[0].bias.dtype == np.float16
    assert fl.f32(m64).layers[0].weight.dtype == np.float32


def test_seeded_layers_are_reproducible():
    fl.seed(3)
    a = fl.Dense(4, 4)
    fl.seed(3)
    b = fl.Dense(4, 4)
    np.testing.assert_array_equal(a.weight, b.weight)
    c = fl.Dense(4, 4, rng=np.random.default_rng(3))
    d = fl.Dense(4, 4, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(c.weight, d.weight)


def test_weight_gradients_come_back_contiguous():
    """x @ W.T's weight gradient is C-contiguous (an optimiser's passes over an F-ordered
    gradient run at half speed), for 2-d and batched 3-d inputs."""
    m = fl.Chain(fl.Dense(6, 5, np.tanh), fl.Dense(5, 3))
    for x in (np.ones((4, 6), np.float32), np.ones((2, 4, 6), np.float32)):
        g, = fl.gradient(lambda m: np.sum(m(x) ** 2), m)
        assert all(layer.weight.flags.c_contiguous for layer in g.layers)


def test_a_model_of_a_users_plain_class_trains_with_a_frozen_part():
    """The issue's 'a model built from a user-defined class trains': a plain class (no
    Module, in-place NumPy) between Dense layers; the structural gradient, the printed
    listing, and Adam with the first layer frozen."""

    class Gate:
        def __init__(self, n):
            self.w = np.linspace(0.5, 1.5, n).astype(np.float32)
            self.name = "gate"

        def __call__(self, x):
            y = np.empty_like(x)
            y[...] = x
            y[:, :2] *= self.w[:2]
            y[:, 2:] = np.tanh(y[:, 2:] * self.w[2:])
            return y

    rng = np.random.default_rng(0)
    m = fl.Chain(fl.Dense(3, 4, fl.relu, rng=rng), Gate(4), fl.Dense(4, 1, rng=rng))
    assert "  Gate(...),                            # 4 parameters" in repr(m)
    x = rng.normal(size=(32, 3)).astype(np.float32)
    y = np.sum(x, axis=1, keepdims=True)
    state = fl.setup(fl.Adam(0.01), m)
    fl.freeze(state.layers[0])
    frozen = m.layers[0].weight.copy()
    losses = []
    for _ in range(30):
        loss, (g,) = fl.withgradient(lambda m: np.mean((m(x) - y) ** 2), m)
        losses.append(float(loss))
        fl.update(state, m, g)
    assert g.layers[1].w.dtype == np.float32 and g.layers[1].name is None
    assert losses[-1] < 0.8 * losses[0]
    np.testing.assert_array_equal(m.layers[0].weight, frozen)


def test_errors_that_cannot_be_located_go_on_as_they_came():
    # (review) an error of several arguments had them replaced by one message; one that
    # could not be rebuilt lost its context; NumPy's AxisError lost its axis
    class CodeError(ValueError):
        pass

    def several(x):
        raise CodeError("bad", 42)

    with pytest.raises(CodeError) as info:
        fl.Chain(several)(np.ones(2))
    assert info.value.args == ("bad", 42)

    def in_handler(x):
        try:
            {}["k"]
        except KeyError:
            raise ValueError("one", "two")  # noqa: B904 - the context is what is tested

    with pytest.raises(ValueError) as info:
        fl.Chain(in_handler)(np.ones(2))
    assert isinstance(info.value.__context__, KeyError) and not info.value.__suppress_context__
    with pytest.raises(np.exceptions.AxisError) as info:
        fl.Chain(lambda x: np.sum(x, axis=5))(np.ones(2))
    assert info.value.axis == 5


def test_precision_conversion_keeps_tied_arrays_tied():
    # fl.f64 of a Chain using one Dense twice made two independent copies, silently: the
    # tied model then trained as an untied one (Flux's fmap keeps ties)
    d = fl.Dense(3, 3, np.tanh)
    for convert in (fl.f64, fl.f16, lambda m: fl.f32(fl.f64(m))):
        m = convert(fl.Chain(d, d))
        assert m.layers[0].weight is m.layers[1].weight
        assert m.layers[0].bias is m.layers[1].bias
    m = fl.f64(fl.Chain(d, d))
    g, = fl.gradient(lambda m: np.sum(m(np.ones((1, 3)))), m)
    state = fl.setup(fl.Descent(0.1), m)
    fl.update(state, m, g)
    assert m.layers[0].weight is m.layers[1].weight


def test_numpy_scalars_are_not_counted_as_parameters():
    # a NumPy scalar in a model was a trainable parameter to fl.trainable and summary's
    # count, but no optimiser trains one (setup takes arrays only, as Python numbers)
    class Net(fl.Module):
        def __init__(self):
            self.dense = fl.Dense(2, 2)
            self.temperature = np.float64(1.5)
            self.zero_d = np.array(0.5)

        def __call__(self, x):
            return self.dense(x) * self.temperature * self.zero_d

    net = Net()
    assert sorted(fl.trainable(net)) == ["dense.bias", "dense.weight", "zero_d"]
    out = io.StringIO()
    fl.summary(net, (1, 2), file=out)
    assert "Total: 7 trainable parameters" in out.getvalue()
    state = fl.setup(fl.Descent(), net)
    assert not hasattr(state, "temperature") and isinstance(state.zero_d, fl.Leaf)


class _Slotted(fl.Module):
    __slots__ = ("inner", "w")

    def __init__(self, inner):
        self.inner, self.w = inner, np.ones(2)

    def __call__(self, x):
        return self.inner(x) * self.w


@pytest.mark.skipif(not fl.leaves(_Slotted(None)), reason="fl.tree does not walk slots yet")
def test_modules_and_modes_reach_a_modules_slots():
    # fl.modules read a Module's vars(): a sublayer held in a slot was not listed, so
    # trainmode/testmode left its Dropout as it was while gradients walked into it
    drop = fl.Dropout(0.5)
    m = fl.Chain(_Slotted(drop))
    assert fl.modules(m)[2] is drop
    fl.testmode(m)
    assert drop.active is False


def test_precision_conversion_of_complex_arrays():
    """fl.f32 and fl.f64 left complex arrays as they were; Flux converts them."""
    tree = {"z": np.ones(2, np.complex128), "w": np.ones(2), "i": np.ones(2, np.int64)}
    assert fl.f32(tree)["z"].dtype == np.complex64
    assert fl.f64(fl.f32(tree))["z"].dtype == np.complex128
    assert fl.f16(tree)["z"].dtype == np.complex128  # (NumPy has no complex float16)
    assert fl.f32(tree)["i"].dtype == np.int64


# Layers given something that is not a function where they take an activation or an
# initialiser: each stored it, and failed at the first call or never (Conv with None took it as
# no activation); the constructor now refuses it by name.
_NOT_CALLABLE = [
    (lambda: fl.Bilinear(3, 4, "relu"), "Bilinear: activation must be callable; got 'relu'"),
    (lambda: fl.Bilinear((3, 2), 4, 2.5), "Bilinear: activation must be callable; got 2.5"),
    (lambda: fl.Conv((3, 3), 1, 2, "relu"), "Conv: activation must be callable"),
    (lambda: fl.Conv((3, 3), 1, 2, None), "Conv: activation must be callable; got None"),
    (lambda: fl.CrossCor((3, 3), 1, 2, ["a"]), "CrossCor: activation must be callable"),
    (lambda: fl.DepthwiseConv((3, 3), 2, 4, 1), "DepthwiseConv: activation must be callable"),
    (lambda: fl.ConvTranspose((3, 3), 1, 2, "x"), "ConvTranspose: activation must be callable"),
    (lambda: fl.BatchNorm(3, "relu"), "BatchNorm: activation must be callable"),
    (lambda: fl.InstanceNorm(3, -2), "InstanceNorm: activation must be callable"),
    (lambda: fl.GroupNorm(4, 2, {"a": 1}), "GroupNorm: activation must be callable"),
    (lambda: fl.RNNCell(3, 4, "tanh"), "RNNCell: activation must be callable"),
    (lambda: fl.RNN(3, 4, "tanh"), "RNN: activation must be callable"),
    (lambda: fl.Dense(3, 4, init="glorot"), "Dense: init must be callable; got 'glorot'"),
    (lambda: fl.Embedding(5, 3, init=None), "Embedding: init must be callable; got None"),
]


@pytest.mark.parametrize("make, message", _NOT_CALLABLE)
def test_layers_refuse_what_is_not_a_function(make, message):
    with pytest.raises(TypeError, match=re.escape(message)):
        make()


# Layers of no settings took any arguments and dropped them (object.__init__ beside
# Module.__new__): Flatten(2) was Flatten(), silently. Bidirectional stored a backward layer or
# a merge that is not a function, which failed at the first call (merge) or never.
@pytest.mark.parametrize("make, message", [
    (lambda: fl.Flatten(2), "Flatten() takes no arguments; got 2"),
    (lambda: fl.GlobalMaxPool((2, 2)), "GlobalMaxPool() takes no arguments; got (2, 2)"),
    (lambda: fl.GlobalMeanPool(dims=1), "GlobalMeanPool() takes no arguments; got dims=1"),
    (lambda: fl.Bidirectional(fl.RNN(3, 4), "rnn"),
     "Bidirectional: backward (a layer, or None) must be callable; got 'rnn' (a str)"),
    (lambda: fl.Bidirectional(fl.RNN(3, 4), merge="sum"),
     "Bidirectional: merge must be callable; got 'sum' (a str)"),
])
def test_layer_arguments_are_not_dropped(make, message):
    with pytest.raises(TypeError, match=re.escape(message)):
        make()
    # with nothing to drop, Flatten is itself (rows flattened as NumPy's reshape flattens them)
    x = np.arange(24.0).reshape(2, 3, 4)
    np.testing.assert_array_equal(fl.Flatten()(x), x.reshape(2, 12))


# A parameter dtype that holds no trainable numbers: dtype=int truncated glorot's values (all in
# (-1, 1)) to a weight of zeros, bool/object/str made weights of True, objects or strings, each
# silently; "abc" raised NumPy's "data type 'abc' not understood".
@pytest.mark.parametrize("make, got", [
    (lambda: fl.Dense(3, 4, dtype=int), "got int64"),
    (lambda: fl.Conv((3, 3), 1, 2, dtype=bool), "got bool"),
    (lambda: fl.Embedding(5, 3, dtype=str), "got <U0"),
    (lambda: fl.BatchNorm(3, dtype=object), "got object"),
    (lambda: fl.Dense(3, 4, dtype="abc"), "got 'abc' (a str)"),
])
def test_parameters_are_floats(make, got):
    with pytest.raises(TypeError, match=r"dtype must be a float or complex dtype \(np.float32, "
                                        r"np.float64, ...\); " + re.escape(got)):
        make()
    # float and complex dtypes are the parameters'
    assert fl.Dense(3, 4, dtype=np.float64).weight.dtype == np.float64
    assert fl.Dense(3, 4, dtype=np.complex64).weight.dtype == np.complex64


def test_a_subclass_of_a_library_layer_prints_its_own_name():
    # it inherited Dense's line, "Dense(3 => 2)", beside a count that included its own array
    class MyDense(fl.Dense):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.gain = np.ones(2, np.float32)

        def __call__(self, x):
            return super().__call__(x) * self.gain

    class CountingNorm(fl.BatchNorm):
        nontrainable = (*fl.BatchNorm.nontrainable, "count")

        def __init__(self, n):
            super().__init__(n)
            self.count = np.zeros(1, np.float32)

    assert repr(MyDense(3, 2)) == "MyDense(3 => 2)  # 10 parameters"
    assert repr(CountingNorm(3)) == "CountingNorm(3)  # 6 parameters, plus 7 non-trainable"
    listing = repr(fl.Chain(MyDense(3, 2), fl.Dense(2, 1)))
    assert "  MyDense(3 => 2),  " in listing and "  Dense(2 => 1),  " in listing
    assert repr(fl.Dense(3, 2)) == "Dense(3 => 2)  # 8 parameters"


def test_a_nontrainable_string_is_refused_not_read_as_substrings():
    # ("mean") is a string: "m" in "mean" left the field m untrained too, silently
    class Model:
        nontrainable = ("mean")

        def __init__(self):
            self.m, self.mean, self.w = np.ones(2), np.zeros(2), np.ones(2)

        def __call__(self, x):
            return x * self.w * self.m - self.mean

    model = Model()
    with pytest.raises(TypeError, match=r"Model.nontrainable must be a tuple of field names; "
                       r"got 'mean' \(a str\) \(write \('mean',\) for one name\)"):
        fl.trainables(model)
    with pytest.raises(TypeError, match="Model.nontrainable"):
        fl.gradient(lambda m: np.sum(m(np.ones(2))), model)
    Model.nontrainable = ("mean",)  # a declaration changed after use is read again
    assert [a.shape for a in fl.trainables(model)] == [(2,), (2,)]
    assert fl.gradient(lambda m: np.sum(m(np.ones(2))), model)[0].mean is None


def test_a_nontrainable_name_that_is_no_field_is_refused():
    # a misspelt name left the field it meant trained: the optimiser stepped the statistics
    class Norm(fl.Module):
        nontrainable = ("runing_mean",)

        def __init__(self):
            self.scale, self.running_mean = np.ones(2), np.zeros(2)

        def __call__(self, x):
            return (x - self.running_mean) * self.scale

    with pytest.raises(TypeError, match=r"Norm.nontrainable names 'runing_mean', not a field "
                                        r"of this Norm \(its fields: scale, running_mean\)"):
        fl.setup(fl.Descent(0.1), Norm())
    with pytest.raises(TypeError, match="runing_mean"):
        fl.gradient(lambda m: np.sum(m(np.ones(2))), Norm())

    class Lazy(fl.Module):  # a field set on the first call, with a default in the class
        nontrainable = ("cache",)
        cache = None

        def __init__(self):
            self.w = np.ones(2)

    assert [a.shape for a in fl.trainables(Lazy())] == [(2,)]


def test_modes_and_modules_reach_layers_in_every_container_the_trees_walk():
    # a deque is a list to the trees (its Dense trained) but fl.modules skipped it, so
    # fl.testmode left its Dropout in automatic mode: training inside fl.gradient
    import collections

    class Model:
        def __init__(self):
            self.steps = collections.deque([fl.Dropout(0.5), fl.Dense(2, 2)])

    model = Model()
    assert len(fl.trainables(model)) == 2
    assert [type(m).__name__ for m in fl.modules(model)] == ["Dropout", "Dense"]
    assert fl.testmode(model).steps[0].active is False
    assert fl.trainmode(model).steps[0].active is True

    class Block(fl.Module):  # its listing showed only its own array, the counts not adding up
        def __init__(self):
            self.steps = collections.deque([fl.Dense(2, 2), fl.Dropout(0.5)])
            self.scale = np.ones(2, np.float32)

    listing = repr(Block()).splitlines()
    assert listing[1] == "  steps = deque("
    assert listing[2].startswith("    Dense(2 => 2),") and listing[2].endswith("# 6 parameters")
    assert listing[3] == "    Dropout(0.5),"


def test_a_subclass_of_a_library_layer_names_itself_in_errors():
    # the errors named the library class: "Dense(3 => 2) expects ..." for a MyDense
    class MyDense(fl.Dense):
        pass

    class MyConv(fl.Conv):
        pass

    class MyLSTM(fl.LSTM):
        pass

    class MyEmbedding(fl.Embedding):
        pass

    class MyPool(fl.MaxPool):
        pass

    x = np.ones((2, 5), np.float32)
    with pytest.raises(fl.LayerError, match=r"^MyDense\(3 => 2\) expects inputs of shape"):
        MyDense(3, 2)(x)
    with pytest.raises(fl.LayerError, match=r"^MyConv\(\(3, 3\), 1 => 2\) expects input"):
        MyConv((3, 3), 1, 2)(x)
    with pytest.raises(fl.LayerError, match=r"^MyLSTM\(4 => 3\) expects a sequence"):
        MyLSTM(4, 3)(x)
    with pytest.raises(fl.LayerError, match=r"^MyEmbedding\(10 => 3\) expects integer"):
        MyEmbedding(10, 3)(x)
    with pytest.raises(fl.LayerError, match=r"^MyPool\(\(2, 2\)\) expects input"):
        MyPool((2, 2))(x)
    with pytest.raises(fl.LayerError, match=r"^Dense\(3 => 2\) expects"):
        fl.Dense(3, 2)(x)


def test_a_layer_whose_line_fails_still_reports_its_own_error():
    # a subclass whose _line raised replaced the layer's error (a wrong input shape) by
    # the _line's RuntimeError
    class Broken(fl.Dense):
        def _line(self):
            raise RuntimeError("line broke")

    with pytest.raises(fl.LayerError, match=r"Broken expects inputs of shape \(N, 3\)"):
        Broken(3, 2)(np.ones((1, 4)))


def test_precision_conversion_of_traced_arrays():
    # inside fl.gradient, fl.jvp and fl.compile the arrays are traced: they kept their
    # precision, silently, so the same code computed in float32 compiled, float64 eagerly
    m = fl.Dense(2, 2)  # float32
    seen = {}

    def loss(m):
        m16 = fl.f16(m)
        seen["dtype"] = m16.weight.dtype
        return np.sum(m16.weight)

    g, = fl.gradient(loss, m)
    assert seen["dtype"] == np.float16 and g.weight.dtype == np.float32
    assert fl.compile(lambda m: fl.f64(m).weight)(m).dtype == np.float64
    value, tangent = fl.jvp(lambda w: fl.f64({"w": w})["w"], (m.weight,),
                            (np.ones_like(m.weight),))
    assert value.dtype == tangent.dtype == np.float64
    f = lambda w: np.sum(fl.f64({"w": w})["w"] * np.float32(0.1))  # noqa: E731
    assert np.asarray(fl.compile(f)(m.weight)).dtype == np.asarray(f(m.weight)).dtype


class _Parent(fl.Module):
    def __init__(self):
        self.w = np.ones(2, np.float32)
        self.child = _Child(self)


class _Child(fl.Module):
    def __init__(self, parent):
        self.parent = parent
        self.v = np.zeros(1, np.float32)


def test_a_model_whose_child_holds_its_parent_prints():
    # (repr recursed without end; the trees refuse the cycle by name)
    text = repr(_Parent())
    assert "parent = <cycle: _Parent above>," in text and "v = float32[1]" in text
    with pytest.raises(ValueError, match="cycle"):
        fl.state(_Parent())
