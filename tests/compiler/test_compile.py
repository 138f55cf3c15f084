"""fl.compile: compiled functions compute what eager fluxml computes, write what it writes,
re-trace when the signature changes, and refuse what they cannot compile, saying where."""

import copy
import dataclasses
import re
import warnings

import numpy as np
import pytest

import fluxml as fl


def tiny_step(model, opt, x, y):
    loss, (g,) = fl.withgradient(lambda m: fl.losses.mse(m(x), y), model)
    fl.update(opt, model, g)
    return loss


def _mlp(seed=0):
    fl.seed(seed)
    return fl.Chain(fl.Dense(2, 16, np.tanh), fl.Dense(16, 16, np.tanh), fl.Dense(16, 2))


def _data(rng, n=32):
    x = rng.normal(size=(n, 2)).astype(np.float32)
    return x, np.stack([np.sin(x[:, 0]), np.cos(x[:, 1])], 1).astype(np.float32)


def test_value_ir_and_source():
    f = fl.compile(lambda x, w: np.sum(np.tanh(x @ w)))
    x, w = np.ones((2, 3)), np.full((3, 4), 0.1)
    assert f(x, w) == pytest.approx(np.sum(np.tanh(x @ w)), rel=1e-15)
    text = repr(f.ir)
    assert "matmul" in text and "tanh" in text and "f64[2,4]" in text
    assert "np.tanh(" in f.source and f.source.startswith("def <lambda>") is False
    assert f.traces == 1


def test_gradient_inside_matches_eager():
    def loss(w, b, x):
        return np.sum(np.tanh(x @ w + b) ** 2)

    f = fl.compile(lambda w, b, x: fl.gradient(loss, w, b, x))
    rng = np.random.default_rng(1)
    for _ in range(3):  # new values each call: nothing may be baked in
        w, b, x = rng.normal(size=(4, 3)), rng.normal(size=3), rng.normal(size=(5, 4))
        for got, want in zip(f(w, b, x), fl.gradient(loss, w, b, x)):
            np.testing.assert_allclose(got, want, rtol=1e-12)
    assert f.traces == 1


def test_training_step_writes_parameters_and_state_like_eager():
    rng = np.random.default_rng(0)
    model = _mlp()
    opt = fl.setup(fl.Adam(1e-2), model)
    model2, opt2 = copy.deepcopy(model), copy.deepcopy(opt)
    step = fl.compile(tiny_step)
    weight = model.layers[0].weight
    for _ in range(4):
        x, y = _data(rng)
        np.testing.assert_allclose(step(model, opt, x, y), tiny_step(model2, opt2, x, y),
                                   rtol=1e-6)
    assert model.layers[0].weight is weight  # written in place, not rebound
    for a, b in zip(fl.tree.leaves((model, opt)), fl.tree.leaves((model2, opt2))):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert int(opt.layers[0].weight.state.t) == 4  # the step count counts
    assert step.traces == 1


def test_new_shapes_trace_again_and_the_cache_is_bounded():
    f = fl.compile(lambda x: np.sum(x * 2.0), cache_size=2)
    for n in (1, 2, 3):
        assert f(np.ones(n)) == 2.0 * n
    assert f.traces == 3 and len(f.cache) == 2
    assert f(np.ones(3)) == 6.0 and f.traces == 3  # still cached
    assert f(np.ones(3, np.float32)) == 6.0 and f.traces == 4  # a dtype is a new signature


def test_numbers_are_static():
    f = fl.compile(lambda x, k: x * k)
    np.testing.assert_array_equal(f(np.ones(2), 3.0), [3.0, 3.0])
    np.testing.assert_array_equal(f(np.ones(2), 4.0), [4.0, 4.0])
    assert f.traces == 2


def test_frequent_retracing_warns_once():
    f = fl.compile(lambda x, k: x + k)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for k in range(12):
            f(np.ones(1), float(k))
    messages = [str(w.message) for w in caught if "traced" in str(w.message)]
    assert len(messages) == 1 and "0-d arrays" in messages[0]


def test_guard_notices_a_changed_model():
    model = _mlp()
    f = fl.compile(lambda m, x: np.sum(m(x)))
    x = np.ones((3, 2), np.float32)
    first = f(model, x)
    model.layers[1].activation = fl.relu  # another activation: another program
    assert f.traces == 1
    assert f(model, x) == pytest.approx(float(np.sum(model(x))), rel=1e-6)
    assert f.traces == 2 and first != f(model, x)


def test_guard_sees_a_rule_of_an_optimisers_state_replaced_or_changed_in_place():
    """A rule whose numbers are specialised on (one listing no ``hyperparameters``): an equal
    copy in one Leaf keeps the program, another value (in a copy, or changed in place) traces
    again."""
    model = {"a": np.ones(3), "b": np.ones(2)}
    state = fl.setup(Plain(0.1), model)
    grads = {"a": np.ones(3), "b": np.ones(2)}
    f = fl.compile(lambda m, s, g: fl.update(s, m, g) and None)
    f(model, state, grads)
    state["b"].rule = Plain(0.1)  # an equal copy: the same program
    f(model, state, grads)
    assert f.traces == 1
    state["b"].rule = Plain(0.5)  # another learning rate: another program
    f(model, state, grads)
    assert f.traces == 2
    shared = state["a"].rule = state["b"].rule = Plain(0.25)
    f(model, state, grads)
    shared.eta = 0.125  # changed in place: seen where the guard checks it in full
    f(model, state, grads)
    assert f.traces == 4
    np.testing.assert_allclose(model["a"], 1 - 0.1 - 0.1 - 0.1 - 0.25 - 0.125)
    np.testing.assert_allclose(model["b"], 1 - 0.1 - 0.1 - 0.5 - 0.25 - 0.125)


def test_guard_passes_new_hyperparameters_of_an_optimisers_state():
    """The hyperparameters of fluxml's rules are inputs of the program, one for the rule the
    Leafs share: new values, in a copy of the rule or changed in place, keep the program;
    Leafs that stop sharing their rule take inputs of their own (one trace more), and
    sharing again finds the first program."""
    model = {"a": np.ones(3), "b": np.ones(2)}
    state = fl.setup(fl.Descent(0.1), model)
    grads = {"a": np.ones(3), "b": np.ones(2)}
    f = fl.compile(lambda m, s, g: fl.update(s, m, g) and None)
    f(model, state, grads)
    state["b"].rule = fl.Descent(0.5)  # b's own rule: inputs of its own
    f(model, state, grads)
    assert f.traces == 2
    state["b"].rule = fl.Descent(0.75)
    f(model, state, grads)
    shared = state["a"].rule = state["b"].rule = fl.Descent(0.25)
    f(model, state, grads)
    shared.eta = 0.125  # changed in place
    f(model, state, grads)
    assert f.traces == 2
    np.testing.assert_allclose(model["a"], 1 - 0.1 - 0.1 - 0.1 - 0.25 - 0.125)
    np.testing.assert_allclose(model["b"], 1 - 0.1 - 0.5 - 0.75 - 0.25 - 0.125)


@dataclasses.dataclass
class Plain(fl.optimise.base.Rule):
    """Gradient descent as a user might write it: ``float(self.eta)``, no hyperparameters
    listed (so its numbers are part of a compiled step's signature)."""

    eta: float = 0.1

    def apply(self, state, x, dx, out=None):
        return state, dx * float(self.eta)


def _add_sum(p):
    p[0][...] += np.sum(p[1])
    return p[1] * 2


def test_guard_sees_the_same_arrays_tied_viewed_replaced_or_reshaped_in_place():
    """A call passing the last call's arrays again skips the checks identity proves (which
    arrays are distinct, which share memory); any other array takes the checks in full."""
    a, b = np.zeros(4), np.ones(4)
    args = [a, b]
    f = fl.compile(_add_sum)
    for _ in range(2):
        f(args)
    assert f.traces == 1 and np.all(a == 8)
    args[1] = a  # the written array passed twice: another program (reads the new value)
    f(args)
    assert f.traces == 2 and np.all(a == 40)
    args[1] = c = np.ones(4)  # distinct again: the first program, on the new array
    f(args)
    assert f.traces == 2 and np.all(a == 44)
    args[1] = a[::-1]  # a view of the written array: refused, as on its first call
    with pytest.raises(fl.CompileError, match="shares memory"):
        f(args)
    args[1] = c
    f(args)
    assert np.all(a == 48)
    c.shape = (2, 2)  # the same array reshaped in place: traced again
    assert f(args).shape == (2, 2) and f.traces == 3 and np.all(a == 52)
    c.shape = (4,)
    c.dtype = np.int64  # (retyped in place: same size, another dtype)
    out = f(args)
    assert out.dtype == np.int64 and f.traces == 4


def test_python_if_on_a_traced_value_names_the_line():
    def f(x):
        if np.sum(x) > 0:  # the line the error must name
            return x
        return -x

    with pytest.raises(fl.CompileError, match=r"bool\(x\).*test_compile.py, line \d+"):
        fl.compile(f)(np.ones(2))
    with pytest.raises(fl.CompileError, match=r"float\(x\)"):
        fl.compile(lambda x: float(np.sum(x)))(np.ones(2))


def test_writes_into_arrays_that_are_not_arguments_are_named():
    buf = np.zeros(3)

    def fill(x):
        buf[0] = np.sum(x)  # a global buffer: NumPy's own error said "a sequence"
        return buf * 2

    with pytest.raises(fl.CompileError, match=r"written into a plain NumPy array .*"
                                              r"test_compile.py, line \d+\), whose value"):
        fl.compile(fill)(np.ones(3))
    model = fl.Dense(2, 1)
    opt = fl.setup(fl.Descent(), model)

    def step(opt, x):  # the model read from the enclosing scope
        fl.update(opt, model, fl.gradient(lambda m: np.sum(m(x)), model)[0])

    with pytest.raises(fl.DifferentiationError, match=r"inside fl.compile, arrays the function "
                                                      r"writes in place .* must be arguments"):
        fl.compile(step)(opt, np.ones((4, 2), np.float32))


def test_value_dependent_shapes_are_refused():
    with pytest.raises(fl.CompileError, match="nonzero.*fixed shapes"):
        fl.compile(lambda x: np.nonzero(x > 0))(np.ones(2))
    with pytest.raises(fl.CompileError, match="boolean mask"):
        fl.compile(lambda x: fl.gradient(lambda x: np.sum(x[x > 0]), x))(np.ones(2))


def test_a_changed_python_number_in_the_arguments_is_refused():
    class Counter:
        def __init__(self):
            self.n = 0

    def f(c, x):
        c.n += 1
        return x * 2

    with pytest.raises(fl.CompileError, match="changed the number 0.*0-d array"):
        fl.compile(f)(Counter(), np.ones(2))


def test_a_leaked_tracer_is_refused():
    kept = []

    def f(x):
        kept.append(x * 2)
        return x

    fl.compile(f)(np.ones(2))
    with pytest.raises(fl.CompileError, match=r"list\[0\] holds a value traced inside"):
        np.sin(kept[0])
    keep = kept.append  # reached only through another function: the generic message

    def g(x):
        keep(x * 2)
        return x

    fl.compile(g)(np.ones(2))
    with pytest.raises(fl.CompileError, match="after the compiled"):
        np.sin(kept[1])


def test_a_traced_value_prints_and_np_asarray_is_refused_as_a_conversion():
    """``print(x)`` inside (and a leaked tracer's repr) shows the abstract value (it
    recursed without end); ``np.asarray(x)`` of a traced float array is a CompileError
    naming the line, not the gradient engine's DifferentiationError."""
    shown = []
    fl.compile(lambda x: shown.append(repr(x)) or x)(np.ones(2))
    assert len(shown) == 1 and re.fullmatch(r"Tracer<IR:\d+>\(Abstract\(v1:f64\[2\]\)\)",
                                            shown[0]), shown
    with pytest.raises(fl.CompileError, match=r"converting a traced array.*line \d+"):
        fl.compile(lambda x: np.asarray(x) + 1)(np.ones(2))
    table = np.arange(5.0)  # a plain array indexed by a traced index: the way out is named
    with pytest.raises(fl.CompileError, match=r"np.array\(a, like=index\)\[index\]"):
        fl.compile(lambda i: table[i])(np.array([1, 3]))
    np.testing.assert_array_equal(
        fl.compile(lambda i: np.array(table, like=i)[i])(np.array([1, 3])), [1.0, 3.0])


def test_a_direct_numpy_draw_while_tracing_is_refused_not_made_a_constant():
    """``rng.normal`` inside was a constant of the program: every call returned the first
    call's numbers. Refused for a generator passed or closed over; reported for the shared
    ones (np.random's, fluxml's default: another thread may draw meanwhile)."""
    rng = np.random.default_rng(0)
    with pytest.raises(fl.CompileError, match="generator among its arguments"):
        fl.compile(lambda x, rng: x + rng.normal(size=2))(np.zeros(2), rng)
    with pytest.raises(fl.CompileError, match="generator `rng` it closes over"):
        fl.compile(lambda x: x + rng.normal(size=2))(np.zeros(2))
    with pytest.warns(UserWarning, match="NumPy's global generator"):
        fl.compile(lambda x: x + np.random.normal(size=2))(np.zeros(2))
    dropped = fl.compile(lambda x: fl.dropout(x, 0.5, rng=rng))  # recorded: no complaint
    masks = {tuple(dropped(np.ones(16)) > 0) for _ in range(5)}
    assert len(masks) > 1


def test_a_traced_value_in_a_static_part_of_the_result_is_refused():
    """A dict key, a set or a returned closure holding a traced value came out as a
    placeholder tracer on every call. (A slotted object is a tree node: it is returned.)"""
    class Box:
        __slots__ = ("v",)

        def __init__(self, v):
            self.v = v

    for f in (lambda x: {x[0]: 1}, lambda x: {x[0]}, lambda x: lambda: x):
        with pytest.raises(fl.CompileError, match="result holds a traced value"):
            fl.compile(f)(np.ones(2))
    boxed = fl.compile(lambda x: Box(2 * x))
    for x in (np.ones(2), np.arange(2.0)):
        assert type(boxed(x)) is Box and np.array_equal(boxed(x).v, 2 * x)


def test_closed_over_arrays_are_captured_at_trace_time():
    c = np.ones(3)
    f = fl.compile(lambda x: x * c)

    def g(x):
        y = x * c  # eager semantics: the value at the time of use
        c[:] = 5.0
        return y

    np.testing.assert_array_equal(fl.compile(g)(np.ones(3)), np.ones(3))
    c[:] = 1.0
    np.testing.assert_array_equal(f(np.ones(3)), np.ones(3))
    c[:] = 2.0  # a constant of the program (as in JAX): pass it as an argument instead
    np.testing.assert_array_equal(f(np.ones(3)), np.ones(3))


def test_inside_a_gradient_it_runs_eagerly():
    f = fl.compile(lambda x: np.sum(np.sin(x)))
    x = np.linspace(0, 1, 4)
    np.testing.assert_allclose(fl.gradient(f, x)[0], np.cos(x), rtol=1e-15)


def test_dropout_draws_a_new_mask_every_call():
    model = fl.Chain(fl.Dense(4, 64), fl.Dropout(0.5))
    f = fl.compile(lambda m, x: fl.gradient(lambda m: np.sum(m(x)), m)[0].layers[0].bias)
    x = np.ones((2, 4), np.float32)
    a, b = f(model, x), f(model, x)
    assert not np.array_equal(a, b) and f.traces == 1
    assert {0.0, 2.0, 4.0} >= set(np.unique(a))  # 2 rows, each kept with scale 2


def test_in_place_writes_and_views_inside():
    def f(x):
        u = np.zeros_like(x)
        for i in range(1, len(x)):
            u[i] = u[i - 1] + x[i]
        v = u[1:].T
        v *= 2.0
        return np.sum(u * x)

    g = fl.compile(lambda x: fl.withgradient(f, x))
    for seed in range(2):
        x = np.random.default_rng(seed).normal(size=5)
        value, (grad,) = g(x)
        want, (want_grad,) = fl.withgradient(f, x)
        assert value == pytest.approx(want, rel=1e-14)
        np.testing.assert_allclose(grad, want_grad, rtol=1e-13)


def test_bad_arguments():
    with pytest.raises(ValueError, match="backend must be None or one of"):
        fl.compile(lambda x: x, backend="tpu")
    with pytest.raises(TypeError, match="expects a function"):
        fl.compile(3)
    with pytest.raises(ValueError, match="cache_size"):
        fl.compile(lambda x: x, cache_size=0)
    with pytest.raises(fl.CompileError, match="nothing traced yet"):
        fl.compile(lambda x: x).ir
    # optimise="no" was true (the passes ran), background=2 too, silently
    for name, value in (("optimise", "no"), ("donate", "no"), ("background", 2)):
        with pytest.raises(TypeError, match=rf"^fl.compile: {name} must be True or False; "
                                            rf"got {value!r} \(an? (str|int)\)"):
            fl.compile(lambda x: x, **{name: value})
    with pytest.raises(ValueError, match=r"^fl.compile's wait: timeout \(seconds, or None\) "
                                         r"must be a finite number >= 0; got 'a' \(a str\)"):
        fl.compile(lambda x: x).wait("a")  # (a TypeError in time arithmetic)


def test_a_written_argument_sharing_memory_with_another_is_refused():
    def f(w, x):
        w -= 0.5
        return np.sum(x)

    g = fl.compile(f)
    base = np.ones(6)
    with pytest.raises(fl.CompileError, match="shares memory.*Pass a copy"):
        g(base[:3], base[3:])
    w, x = np.ones(3), np.ones(3)
    assert g(w, x) == 3.0 and np.array_equal(w, [0.5] * 3)
    with pytest.raises(fl.CompileError, match="shares memory"):  # the guard notices it
        g(base[:3], base[3:])
    a, b = np.ones(3), np.ones(3)
    assert g(a, b[::-1]) == 3.0  # a view of an unrelated array: fine


def _workloads(rng):
    """Small versions of the benchmark's models, and more layers: conv, pooling, LSTM, GRU,
    BatchNorm (running statistics written in place), LayerNorm."""
    f32 = np.float32
    return {
        "lenet": (fl.Chain(fl.Conv((3, 3), 1, 4, fl.relu, pad=1), fl.MaxPool((2, 2)),
                           fl.Flatten(), fl.Dense(16, 3)),
                  lambda: (rng.random((5, 1, 4, 4), dtype=f32), rng.integers(0, 3, 5)),
                  fl.logitcrossentropy),
        "lstm": (fl.Chain(fl.LSTM(3, 6), fl.Dense(6, 2)),
                 lambda: (rng.normal(size=(4, 5, 3)).astype(f32),
                          rng.normal(size=(4, 5, 2)).astype(f32)), fl.mse),
        "gru, layernorm": (fl.Chain(fl.GRU(3, 6), fl.LayerNorm(6), fl.Dense(6, 2)),
                           lambda: (rng.normal(size=(4, 5, 3)).astype(f32),
                                    rng.normal(size=(4, 5, 2)).astype(f32)), fl.mse),
        "conv, batchnorm": (fl.Chain(fl.Conv((3, 3), 2, 4, pad=1), fl.BatchNorm(4, fl.relu),
                                     fl.MeanPool((2, 2)), fl.Flatten(), fl.Dense(16, 1)),
                            lambda: (rng.normal(size=(3, 2, 4, 4)).astype(f32),
                                     rng.normal(size=(3, 1)).astype(f32)), fl.mse),
        "transformer": (fl.Chain(fl.TransformerEncoderBlock(8, 2, 16, dropout=0.0),
                                 fl.Dense(8, 2)),
                        lambda: (rng.normal(size=(2, 5, 8)).astype(f32),
                                 rng.normal(size=(2, 5, 2)).astype(f32)), fl.mse),
        "embedding": (fl.Chain(fl.Embedding(10, 4), fl.Flatten(), fl.Dense(12, 2)),
                      lambda: (rng.integers(0, 10, (3, 3)), rng.normal(size=(3, 2)).astype(f32)),
                      fl.mse),
        "groupnorm, convtranspose": (
            fl.Chain(fl.ConvTranspose((3, 3), 2, 4, stride=2), fl.GroupNorm(4, 2),
                     fl.AdaptiveMeanPool((2, 2)), fl.Flatten(), fl.Dense(16, 1)),
            lambda: (rng.normal(size=(2, 2, 4, 4)).astype(f32),
                     rng.normal(size=(2, 1)).astype(f32)), fl.mse),
        "bidirectional, skip, huber": (
            fl.Chain(fl.Bidirectional(fl.GRU(3, 4), fl.GRU(3, 4)),
                     fl.SkipConnection(fl.Dense(8, 8, fl.relu), lambda a, b: a + b),
                     fl.Dense(8, 2)),
            lambda: (rng.normal(size=(2, 5, 3)).astype(f32),
                     rng.normal(size=(2, 5, 2)).astype(f32)), fl.huber_loss),
    }


@pytest.mark.parametrize("name", ["lenet", "lstm", "gru, layernorm", "conv, batchnorm",
                                  "transformer", "embedding", "groupnorm, convtranspose",
                                  "bidirectional, skip, huber"])
def test_layers_train_compiled_as_eager(name):
    fl.seed(0)
    model, data, lossf = _workloads(np.random.default_rng(0))[name]
    opt = fl.setup(fl.Momentum(0.05), model)
    model2, opt2 = copy.deepcopy(model), copy.deepcopy(opt)

    def step(model, opt, x, y):
        loss, (g,) = fl.withgradient(lambda m: lossf(m(x), y), model)
        fl.update(opt, model, g)
        return loss

    compiled = fl.compile(step)
    for _ in range(3):
        x, y = data()
        np.testing.assert_allclose(compiled(model, opt, x, y), step(model2, opt2, x, y),
                                   rtol=1e-5)
    for a, b in zip(fl.leaves((model, opt)), fl.leaves((model2, opt2))):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)  # running statistics too
    assert compiled.traces == 1


def test_keyword_arguments():
    f = fl.compile(lambda x, *, scale=1.0, shift=None: x * scale + shift)
    np.testing.assert_array_equal(f(np.ones(2), scale=2.0, shift=np.ones(2)), [3.0, 3.0])
    np.testing.assert_array_equal(f(np.ones(2), shift=np.zeros(2)), [1.0, 1.0])
    assert f.traces == 2 and "shift" in f.source


def test_a_compiled_model_reads_its_current_weights():
    model = _mlp()
    predict = fl.compile(model)
    x = np.ones((3, 2), np.float32)
    np.testing.assert_allclose(predict(x), model(x), rtol=1e-6)
    model.layers[2].bias[...] += 1.0  # trained later: the compiled model sees it
    np.testing.assert_allclose(predict(x), model(x), rtol=1e-6)
    method = fl.compile(model.__call__)
    np.testing.assert_allclose(method(x), model(x), rtol=1e-6)
    assert predict.traces == 1


def test_a_compiled_method():
    class Affine(fl.Module):
        def __init__(self):
            self.w = np.full((2, 2), 0.5)

        @fl.compile
        def __call__(self, x):
            return x @ self.w

    layer = Affine()
    x = np.ones((3, 2))
    np.testing.assert_array_equal(layer(x), np.ones((3, 2)))
    layer.w[...] = 2.0  # the weights are arguments: seen on the next call
    np.testing.assert_array_equal(layer(x), np.full((3, 2), 4.0))
    assert "self_w" in Affine.__call__.source


def test_results_are_not_overwritten_by_the_next_call():
    """Buffers kept between calls never reach the caller: a result survives later calls."""
    f = fl.compile(lambda x: (np.sin(x) * 2, (np.cos(x) + 1).T, np.tanh(x)[::-1]))
    first = f(np.ones((2, 3)))
    kept = [a.copy() for a in first]
    f(np.zeros((2, 3)))
    for a, b in zip(first, kept):
        np.testing.assert_array_equal(a, b)
    g = fl.compile(lambda w, x: fl.gradient(lambda w: np.sum(np.tanh(x @ w) ** 2), w)[0])
    x = np.ones((4, 3))
    g1 = g(np.full((3, 2), 0.1), x)
    saved = g1.copy()
    g(np.full((3, 2), -0.7), x)
    np.testing.assert_array_equal(g1, saved)


def test_rebinding_one_of_two_references_to_an_array_is_refused():
    # eagerly s["v"] keeps the old values; compiled, the new ones would be written into the
    # one array both entries hold: refused, naming both paths
    def rebind(s, x):
        s["w"] = s["w"] + x
        return np.sum(s["v"])

    w = np.ones(3)
    with pytest.raises(fl.CompileError, match=r"rebound .*w.* also at .*v"):
        fl.compile(rebind)({"w": w, "v": w}, np.ones(3))
    np.testing.assert_array_equal(w, np.ones(3))

    def write(s, x):  # in place: both references see the change, eagerly and compiled
        s["w"] += x
        return np.sum(s["v"])

    w = np.ones(3)
    assert fl.compile(write)({"w": w, "v": w}, np.ones(3)) == 6.0
    np.testing.assert_array_equal(w, np.full(3, 2.0))
    s = {"w": np.ones(3), "v": np.ones(3)}  # distinct arrays: rebinding one is fine
    assert fl.compile(rebind)(s, np.ones(3)) == 3.0
    np.testing.assert_array_equal(s["w"], np.full(3, 2.0))
    np.testing.assert_array_equal(s["v"], np.ones(3))


class _Fields:
    def __init__(self):
        self.a, self.b = np.ones(2), np.full(2, 5.0)

    def __tree_fields__(self):
        return ("a", "b")


class _StaticFields(_Fields):
    FIELDS = ("a",)

    @staticmethod
    def __tree_fields__():
        return _StaticFields.FIELDS


def test_guard_sees_tree_fields_overridden_or_patched_after_the_trace():
    """The guard reads a constant __tree_fields__ without calling it; an instance's own
    __tree_fields__ or a patched class method set after the trace must still retrace (they
    once ran the old program silently), and a static one compiles."""
    def total(m):
        return sum(getattr(m, k) for k in m.__tree_fields__())

    np.testing.assert_array_equal(fl.compile(lambda m: m.a * 2)(_StaticFields()), [2.0, 2.0])
    f, m = fl.compile(total), _Fields()
    np.testing.assert_array_equal(f(m), [6.0, 6.0])
    m.__tree_fields__ = lambda: ("a",)
    np.testing.assert_array_equal(f(m), [1.0, 1.0])

    class Patched(_Fields):
        pass

    f, m = fl.compile(total), Patched()
    np.testing.assert_array_equal(f(m), [6.0, 6.0])
    Patched.__tree_fields__ = lambda self: ("a",)
    np.testing.assert_array_equal(f(m), [1.0, 1.0])
    assert f.traces == 2


def test_a_slotted_objects_fields_are_read_on_every_call():
    """A slotted object was compared by identity: its fields changed after compiling (an
    array rebound, a number, its activation) kept their trace-time values, silently."""
    class Layer:
        __slots__ = ("w", "k", "act", "unset")

        def __init__(self):
            self.w, self.k, self.act = np.ones((2, 2)), 2.0, np.tanh

        def __call__(self, x):
            return self.act(x @ self.w) * self.k

    m, x = Layer(), np.array([[0.5, -1.0]])
    f = fl.compile(lambda m, x: m(x))
    for change in (None, ("k", 3.0), ("act", np.sin), ("w", np.zeros((2, 2))),
                   ("w", np.full((2, 2), 0.5))):
        if change:
            setattr(m, *change)
        np.testing.assert_allclose(f(m, x), m(x))
    m.unset = 1.0  # a slot set after tracing: another structure, traced again
    np.testing.assert_allclose(f(m, x), m(x))
    grad = fl.compile(lambda m, x: fl.gradient(lambda m: (m(x) ** 2).sum(), m)[0].w)
    for k in (2.0, 5.0):
        m.k = k
        np.testing.assert_allclose(grad(m, x),
                                   fl.gradient(lambda m: (m(x) ** 2).sum(), m)[0].w)


def test_distinct_results_stay_distinct_arrays():
    """``(x * 2, x * 2)`` came back as one array twice (the passes merge equal
    computations): a write into one result changed the other, where eager code returns two
    arrays. A value returned twice stays one array, as in eager code."""
    twice = fl.compile(lambda x: (x * 2, x * 2, {"c": (x * 2) * 1}))
    same = fl.compile(lambda x: (lambda y: (y, y))(x * 2))
    for _ in range(2):
        a, b, c = twice(np.ones(2))
        a += 1
        assert b.tolist() == c["c"].tolist() == [2.0, 2.0] and a.tolist() == [3.0, 3.0]
        y, z = same(np.ones(2))
        assert y is z


def test_an_argument_array_read_through_another_reference_is_refused():
    """A model field ``act = layer.__call__`` read the layer's arrays through the bound
    method, outside the traced arguments: they became constants of the trace, and a weight
    changed afterwards (in place or rebound) was ignored, silently."""
    inner = fl.Dense(2, 2)

    class Model:
        def __init__(self, hold):
            self.act = inner.__call__
            if hold:
                self.inner = inner

        def __call__(self, x):
            return self.act(x)

    x = np.ones((1, 2), np.float32)
    with pytest.raises(fl.CompileError, match=r"of the Dense of the bound method at argument "
                                              r"0\.act"):
        fl.compile(lambda m, x: m(x))(Model(False), x)  # the layer is not an argument
    m, f = Model(True), fl.compile(lambda m, x: m(x))  # it is: the method reads the input
    for w in (np.zeros((2, 2), np.float32), np.ones((2, 2), np.float32)):
        inner.weight = w
        np.testing.assert_array_equal(f(m, x), inner(x))
    c = np.ones(3)
    with pytest.raises(fl.CompileError, match="another reference than the arguments"):
        fl.compile(lambda x: x[:2] * c[::2])(c)  # (a view of the argument, too)
    held = fl.compile(lambda m, x: m.inner(x))  # reached through the arguments: live
    m = Model(True)
    inner.weight[...] = 0
    np.testing.assert_array_equal(held(m, x), inner(x))
    inner.weight = np.ones((2, 2), np.float32)
    np.testing.assert_array_equal(held(m, x), inner(x))


def test_results_that_are_argument_buffers_or_constants_are_new_arrays():
    """A result computed into an argument's buffer (``self.h = ...; return self.h``) was
    that buffer, overwritten by the next call; a constant result was one array for every
    call, so a write into it changed later results."""
    class Cell:
        def __init__(self):
            self.w, self.h = np.full(3, 0.5), np.zeros(3)

        def __call__(self, x):
            self.h = np.tanh(self.w * self.h + x)
            return self.h

    compiled, eager = Cell(), Cell()
    f = fl.compile(lambda c, x: c(x))
    xs = [np.full(3, 1.0), np.full(3, 2.0), np.full(3, 3.0)]
    got, want = [f(compiled, x) for x in xs], [eager(x) for x in xs]
    np.testing.assert_allclose(got, want)
    g = fl.compile(lambda x: (x + 1, np.ones(3)))
    _, b = g(np.ones(3))
    b += 100
    np.testing.assert_array_equal(g(np.ones(3))[1], np.ones(3))


def test_slotted_fields_unset_or_bound_methods_with_cycles():
    class L:
        __slots__ = ("w", "b")

        def __init__(self, bias):
            self.w = np.ones(3)
            if bias:
                self.b = np.ones(3)

        def __call__(self, x):
            return self.w * x + (self.b if hasattr(self, "b") else 0)

    f = fl.compile(lambda m, x: m(x))
    x = np.arange(3.0)
    for m in (L(True), L(False), L(True)):  # (a slot unset since: traced anew, no error)
        np.testing.assert_array_equal(f(m, x), m(x))

    class Logger:
        def __init__(self):
            self.owner = self  # a cycle: not a model's layer

        def log(self, x):
            return x

    class M:
        def __init__(self):
            self.w, self.hook = np.ones(3), Logger().log

    np.testing.assert_array_equal(fl.compile(lambda m, x: m.hook(m.w * x))(M(), x), x)
    data = np.arange(12.0).reshape(4, 3)
    held_out = data[-2:]  # another part of the same array as the argument: a constant
    np.testing.assert_array_equal(fl.compile(lambda xb: xb + held_out)(data[:2]),
                                  data[:2] + held_out)


def test_the_derivative_of_det_compiles_through_both_of_its_formulas():
    """fl.compile refused det's derivative ("bool(x) needs a concrete value"): its rule picks
    det * inv(x), or the cofactors at a singular matrix, by the value. Compiled, the choice
    is an fl.cond made on every call; reverse, forward and second order agree with eager."""
    def grad(x):
        return fl.gradient(lambda x: np.sum(np.linalg.det(x)), x)[0]

    def hess(x):
        return fl.hessian(lambda x: np.linalg.det(x), x)

    rng = np.random.default_rng(3)
    singular = np.array([[1.0, 2.0, 0.0], [2.0, 4.0, 0.0], [1.0, 0.0, 1.0]])
    g, h = fl.compile(grad), fl.compile(hess)
    for x in (singular, rng.normal(size=(3, 3)), singular, np.zeros((3, 3))):  # one trace
        np.testing.assert_allclose(g(x), grad(x), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(h(x), hess(x), rtol=1e-10, atol=1e-12)
    batch = np.stack([rng.normal(size=(3, 3)), singular])
    np.testing.assert_allclose(g(batch), grad(batch), rtol=1e-12, atol=1e-12)
    t = rng.normal(size=(3, 3))
    j = fl.compile(lambda x, t: fl.jvp(np.linalg.det, (x,), (t,))[1])
    for x in (singular, batch[0]):
        np.testing.assert_allclose(j(x, t), fl.jvp(np.linalg.det, (x,), (t,))[1], rtol=1e-12)
    assert g(np.eye(2, dtype=np.float32)).dtype == np.float32


@pytest.mark.parametrize("f, infs", [
    (lambda x: np.nan_to_num(x, nan=2.0, posinf=7.0), True),
    (lambda x: np.frexp(x)[0] + np.frexp(x)[1], True),
    (lambda x: np.nansum(x, axis=1), False),
    (lambda x: np.nanmean(x, axis=0), False),
    (lambda x: np.nanvar(x, axis=1), False),
    (lambda x: np.nanprod(x, axis=1), False),
    (lambda x: np.nancumsum(x, axis=0), False),
], ids=["nan_to_num", "frexp", "nansum", "nanmean", "nanvar", "nanprod", "nancumsum"])
def test_nan_functions_compile(f, infs):
    # np.nan_to_num and np.frexp called NumPy's own function on the program's value, which
    # came back to their rules without end (RecursionError); the NaN reductions replaced the
    # NaNs with a write through a boolean mask of the program's values (refused): now the
    # same values and gradients as eagerly
    x = np.random.default_rng(0).standard_normal((3, 4))
    x[0, 1], x[2, 0] = np.nan, np.nan
    if infs:
        x[2, 2], x[1, 3] = np.inf, -np.inf
    loss = lambda x: np.sum(np.nan_to_num(f(x), posinf=0.0, neginf=0.0))  # noqa: E731
    np.testing.assert_array_equal(fl.compile(f)(x), f(x))
    np.testing.assert_array_equal(fl.compile(lambda x: fl.gradient(loss, x)[0])(x),
                                  fl.gradient(loss, x)[0])


@pytest.mark.parametrize("query", [
    lambda x: np.flatnonzero(x > 0).size * 1.0,  # a value-shaped function
    lambda x: len(np.array2string(x)) * 1.0,     # a function giving a Python value
])
def test_a_value_refusal_caught_by_the_function_is_raised_when_its_trace_ends(query):
    """Before, these refusals were not noted on the trace: a function that caught them
    (``except Exception``) compiled its fallback path, [0, -0, 0] where it computes
    [2, -2, 4] eagerly, silently."""
    def f(x):
        try:
            n = query(x)
        except Exception:
            n = 0.0
        return x * n

    x = np.array([1.0, -1.0, 2.0])
    assert f(x).tolist() != [0.0, 0.0, 0.0]
    with pytest.raises(fl.compiler.CompileError):
        fl.compile(f)(x)
