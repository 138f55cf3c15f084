"""What a function sets on its arguments while it is differentiated stays set, as it does when
the function runs eagerly (and in PyTorch, and in Flux under Zygote): the transforms run it on a
traced copy of the model, and write back to the originals the fields it set or deleted and the
items it put into lists and dicts, traced values as plain arrays. Before, all of it was lost
with the copy: a counter stayed 0, a stateful layer's state and a user's running statistics
(``self.mean = 0.9 * self.mean + ...``) never moved under ``fl.gradient`` or ``fl.train``."""

from __future__ import annotations

import numpy as np
import pytest

import fluxml as fl
from fluxml.ad.core import Tracer


class Stateful:
    """A layer that counts its calls, keeps its last output and logs its outputs' sums."""

    def __init__(self, n=3):
        self.w = np.linspace(0.5, 1.5, n)
        self.calls = 0
        self.state = None
        self.log = []
        self.seen = {}

    def __call__(self, x):
        self.calls += 1
        y = np.tanh(x * self.w)
        self.state = y
        self.log.append(fl.stop_gradient(np.sum(y)))
        self.seen[self.calls] = "called"
        return y


class RunningMean:
    """A user's normalisation with running statistics rebound (not written in place)."""

    nontrainable = ("mean",)

    def __init__(self, n=3):
        self.scale = np.ones(n)
        self.mean = np.zeros(n)

    def __call__(self, x):
        batch_mean = np.mean(x, axis=0)
        self.mean = 0.9 * self.mean + 0.1 * fl.stop_gradient(batch_mean)
        return (x - batch_mean) * self.scale


X = np.array([[0.1, -0.4, 0.7], [0.3, 0.2, -0.5]])


def _eager_twin(m):
    twin = Stateful(len(m.w))
    twin.w = m.w.copy()
    return twin


@pytest.mark.parametrize("transform", ["gradient", "withgradient", "pullback", "jvp"])
def test_fields_set_in_the_function_stay_set(transform):
    m, twin = Stateful(), Stateful()
    loss = lambda m: np.sum(m(X) ** 2)  # noqa: E731
    if transform == "gradient":
        fl.gradient(loss, m)
    elif transform == "withgradient":
        fl.withgradient(loss, m)
    elif transform == "pullback":
        fl.pullback(loss, m)
    else:
        fl.jvp(loss, (m,), (None,))
    loss(twin)
    assert m.calls == twin.calls == 1
    assert type(m.state) is np.ndarray and not isinstance(m.state, Tracer)
    np.testing.assert_allclose(m.state, twin.state)
    assert len(m.log) == 1 and float(m.log[0]) == pytest.approx(float(twin.log[0]))
    assert m.seen == {1: "called"}


def test_the_written_state_is_a_plain_copy_and_the_gradient_is_unchanged():
    m = Stateful()
    g, = fl.gradient(lambda m: np.sum(m(X) ** 2), m)
    # d/dw sum(tanh(x w)^2) = sum_n 2 tanh(x w) (1 - tanh^2) x
    t = np.tanh(X * m.w)
    np.testing.assert_allclose(g.w, np.sum(2 * t * (1 - t * t) * X, axis=0))
    state = m.state
    fl.gradient(lambda m: np.sum(m(X) ** 2), m)
    assert m.calls == 2 and m.state is not state  # a new array each call
    np.testing.assert_allclose(state, m.state)


def test_running_statistics_rebound_in_training_move_as_eagerly():
    model, twin = RunningMean(), RunningMean()
    opt = fl.setup(fl.Descent(0.1), model)
    for k in range(3):
        x = X + k
        loss, (g,) = fl.withgradient(lambda m: np.sum(m(x) ** 2), model)
        fl.update(opt, model, g)
        twin(x)
    np.testing.assert_allclose(model.mean, twin.mean)
    assert np.any(model.mean != 0)


@pytest.mark.parametrize("compile", [False, True])
def test_fl_train_keeps_a_users_running_statistics(compile):
    model = fl.f64(fl.Chain(RunningMean(), fl.Dense(3, 1)))
    data = [(X + k, np.ones((2, 1))) for k in range(4)]
    opt = fl.setup(fl.Descent(0.01), model)
    fl.train(lambda m, x, y: fl.mse(m(x), y), model, data, opt, progress=False,
             compile=compile)
    expected = np.zeros(3)
    for x, _ in data:
        expected = 0.9 * expected + 0.1 * np.mean(x, axis=0)
    np.testing.assert_allclose(model.layers[0].mean, expected)


def test_a_field_set_to_an_argument_array_is_that_array():
    class Tie:
        def __init__(self):
            self.w = np.ones(2)

        def __call__(self, x):
            self.w_seen = self.w  # a reference to the parameter, not a copy
            return np.sum(self.w * x)

    m = Tie()
    fl.gradient(lambda m: m(np.ones(2)), m)
    assert m.w_seen is m.w


def test_a_deleted_field_is_deleted_and_a_method_rebound_is_bound_to_the_original():
    class Switch:
        def __init__(self):
            self.w = np.ones(2)
            self.scratch = "old"
            self.impl = self._a

        def _a(self, x):
            return np.sum(self.w * x)

        def _b(self, x):
            return np.sum(2 * self.w * x)

        def __call__(self, x):
            del self.scratch
            out = self.impl(x)
            self.impl = self._b
            return out

    m = Switch()
    fl.gradient(lambda m: m(np.ones(2)), m)
    assert not hasattr(m, "scratch")
    assert m.impl.__self__ is m and m.impl.__func__ is Switch._b
    g, = fl.gradient(lambda m: m.impl(np.ones(2)), m)
    np.testing.assert_array_equal(g.w, [2.0, 2.0])


def test_nothing_is_written_back_when_the_function_raises():
    class Fails:
        def __init__(self):
            self.w = np.ones(2)
            self.calls = 0

        def __call__(self, x):
            self.calls += 1
            raise RuntimeError("boom")

    m = Fails()
    with pytest.raises(RuntimeError, match="boom"):
        fl.gradient(lambda m: m(np.ones(2)), m)
    assert m.calls == 0


def test_nested_gradients_write_back_through_each_level():
    m, twin = Stateful(), Stateful()
    inner = lambda m: np.sum(m(X))  # noqa: E731
    fl.gradient(lambda m: np.sum(fl.gradient(inner, m)[0].w ** 2), m)
    inner(twin)
    assert m.calls == 1 and type(m.state) is np.ndarray
    np.testing.assert_allclose(m.state, twin.state)


class Shared:
    def __init__(self):
        self.w = np.array([1.0, 2.0])
        self.a = 1.5
        self.calls = 0

    def __call__(self, x):
        self.calls += 1
        return self.a * self.w * x


def test_a_layer_used_twice_is_one_object_as_eagerly():
    layer = Shared()
    model = fl.Chain(layer, layer)
    x = np.array([1.0, -2.0])
    g, = fl.gradient(lambda m: np.sum(m(x)), model)
    assert layer.calls == 2  # each place counted, on the one object
    # its number field gets the total gradient at each place, as a tied array does:
    # sum(a^2 w^2 x) -> d/da = 2 a sum(w^2 x), d/dw = 2 a^2 w x
    total_a = 2 * layer.a * np.sum(layer.w ** 2 * x)
    assert g.layers[0].a == pytest.approx(total_a) and g.layers[1].a == pytest.approx(total_a)
    np.testing.assert_allclose(g.layers[0].w, 2 * layer.a ** 2 * layer.w * x)
    np.testing.assert_allclose(g.layers[1].w, g.layers[0].w)
    h = 1e-6
    up, down = Shared(), Shared()
    up.a, down.a = layer.a + h, layer.a - h
    fd = (np.sum(fl.Chain(up, up)(x)) - np.sum(fl.Chain(down, down)(x))) / (2 * h)
    assert total_a == pytest.approx(fd, rel=1e-6)


def test_unchanged_models_are_not_touched():
    model = fl.Chain(fl.Dense(3, 4, fl.relu), fl.Dense(4, 1))
    before = dict(model.layers[0].__dict__)
    fl.gradient(lambda m: np.sum(m(X.astype(np.float32))), model)
    after = model.layers[0].__dict__
    assert after.keys() == before.keys() and all(after[k] is before[k] for k in before)


def test_jvp_of_a_layer_used_twice_takes_one_tangent_for_its_number():
    layer = Shared()
    model = fl.Chain(layer, layer)
    x = np.array([1.0, -2.0])
    f = lambda m: np.sum(m(x))  # noqa: E731
    g, = fl.gradient(f, model)
    one = Shared()
    one.w, one.a = np.zeros(2), 1.0
    _, dy = fl.jvp(f, (model,), (fl.Chain(one, one),))
    assert dy == pytest.approx(g.layers[0].a)  # the one number moved by 1
    other = Shared()
    other.w, other.a = np.zeros(2), 2.0
    tangent = fl.Chain(one, other)
    with pytest.raises(ValueError, match="a layer used twice"):
        fl.jvp(f, (model,), (tangent,))


def test_a_failed_training_step_puts_back_the_fields_its_forward_pass_set():
    class Poisons(RunningMean):
        def __call__(self, x):
            out = super().__call__(x)
            return out * np.sqrt(np.min(x))  # NaN where the batch has a negative entry

    model = fl.Chain(Poisons(), fl.Dense(3, 1))
    model = fl.f64(model)
    good, bad = X + 1, X - 1
    opt = fl.setup(fl.Descent(0.01), model)
    loss = lambda m, x, y: fl.mse(m(x), y)  # noqa: E731
    fl.train(loss, model, [(good, np.ones((2, 1)))], opt, progress=False)
    before = model.layers[0].mean.copy()
    with pytest.warns(RuntimeWarning), pytest.raises(fl.TrainingError, match="as it was"):
        fl.train(loss, model, [(bad, np.ones((2, 1)))], opt, progress=False)
    np.testing.assert_array_equal(model.layers[0].mean, before)


class Carry:
    """A layer carrying its state from call to call (Flux's old Recur)."""

    def __init__(self):
        self.w = np.linspace(0.5, 1.5, 3)
        self.state = np.zeros(3)

    def __call__(self, x):
        self.state = np.tanh(x * self.w + self.state)
        return np.sum(self.state)


def test_a_compiled_gradient_step_carries_the_state_as_eager_code_does():
    results = {}
    for mode in ("eager", "compiled"):
        m = Carry()
        step = lambda m, x: fl.withgradient(lambda m: m(x), m)  # noqa: E731
        if mode == "compiled":
            step = fl.compile(step)
        values = [step(m, np.arange(3.0)) for _ in range(3)]
        results[mode] = m.state, [float(v) for v, _ in values], values[-1][1][0].w
    (s1, v1, g1), (s2, v2, g2) = results["eager"], results["compiled"]
    np.testing.assert_allclose(s2, s1)
    np.testing.assert_allclose(v2, v1)
    np.testing.assert_allclose(g2, g1)
    assert v1[0] != v1[1]  # the state moved


def test_a_compiled_step_that_counts_in_a_python_number_is_refused():
    class Counts(Carry):
        def __init__(self):
            super().__init__()
            self.calls = 0

        def __call__(self, x):
            self.calls += 1
            return super().__call__(x)

    step = fl.compile(lambda m, x: fl.withgradient(lambda m: m(x), m))
    with pytest.raises(fl.CompileError, match="calls"):
        step(Counts(), np.arange(3.0))


# --- found by review of 41833d5 ---------------------------------------------------------------

def test_an_argument_written_in_place_then_stored_holds_its_new_value():
    class Idiom:
        def __init__(self):
            self.w = np.ones(2)
            self.mean = np.zeros(2)

        def __call__(self, x):
            m = self.mean
            m *= 0.9
            m += 0.1 * x
            self.mean = m
            self.snap = m
            self.w += 0  # written in place, to the same values
            return np.sum(self.w * x)

    model, twin = Idiom(), Idiom()
    original_mean = model.mean
    fl.gradient(lambda m: m(np.ones(2)), model)
    twin(np.ones(2))
    np.testing.assert_allclose(model.mean, twin.mean)
    np.testing.assert_allclose(model.snap, twin.snap)
    np.testing.assert_array_equal(original_mean, [0.0, 0.0])  # the caller's array: unchanged
    assert model.mean is not original_mean


def test_a_list_or_dict_at_two_places_is_one_list_or_dict():
    class Writer:
        def __init__(self, ctx, out):
            self.w, self.ctx, self.out = np.array([0.5, 2.0]), ctx, out

        def __call__(self, x):
            self.ctx["h"] = np.tanh(self.w * x)
            self.out.append(1)
            return x

    class Reader:
        def __init__(self, ctx, out):
            self.ctx, self.out = ctx, out

        def __call__(self, x):
            self.out.append(1)
            return np.sum(self.ctx["h"]) + 0 * np.sum(x)

    def build():
        ctx, out = {}, []
        return fl.Chain(Writer(ctx, out), Reader(ctx, out))

    model, twin = build(), build()
    x = np.ones(2)
    value, (g,) = fl.withgradient(lambda m: m(x), model)
    assert value == pytest.approx(twin(x))
    t = np.tanh(twin.layers[0].w * x)
    np.testing.assert_allclose(g.layers[0].w, (1 - t * t) * x)
    assert model.layers[0].out is model.layers[1].out and model.layers[0].out == [1, 1]
    assert model.layers[0].ctx is model.layers[1].ctx
    np.testing.assert_allclose(model.layers[0].ctx["h"], t)


def test_a_deque_keeps_its_maxlen_in_a_gradient():
    import collections

    class Window:
        def __init__(self):
            self.w = np.ones(2)
            self.recent = collections.deque([np.zeros(2)], maxlen=1)

        def __call__(self, x):
            self.recent.append(self.w * x)
            return sum(np.sum(r) for r in self.recent)

    model, twin = Window(), Window()
    value, (g,) = fl.withgradient(lambda m: m(np.ones(2)), model)
    assert value == pytest.approx(twin(np.ones(2))) == pytest.approx(2.0)
    np.testing.assert_array_equal(g.w, [1.0, 1.0])
    assert model.recent.maxlen == 1 and len(model.recent) == 1


def test_layers_used_as_dict_keys_are_the_models_own():
    class Keyed:
        def __init__(self):
            self.a, self.b, self.stats = Shared(), Shared(), {}

        def __call__(self, x):
            for layer in (self.a, self.b):
                x = layer(x)
                self.stats[layer] = fl.stop_gradient(np.sum(x))
            return np.sum(x)

    m = Keyed()
    fl.gradient(lambda m: m(np.ones(2)), m)
    assert set(map(id, m.stats)) == {id(m.a), id(m.b)}
    assert all(type(k.w) is np.ndarray for k in m.stats)


def test_a_failed_step_puts_back_slots_lists_and_dicts():
    class Slotted:
        __slots__ = ("w", "mean", "seen", "stats")

        def __init__(self):
            self.w, self.mean, self.seen, self.stats = np.ones(2), np.zeros(2), [], {}

        def __call__(self, x):
            self.mean = 0.9 * self.mean + 0.1 * fl.stop_gradient(np.mean(x, axis=0))
            self.seen.append(len(self.seen))
            self.stats["n"] = len(self.seen)
            return x * self.w * np.sqrt(np.min(x))

    model = Slotted()
    opt = fl.setup(fl.Descent(0.01), model)
    loss = lambda m, x, y: fl.mse(m(x), y)  # noqa: E731
    fl.train(loss, model, [(np.ones((2, 2)), np.ones((2, 2)))], opt, progress=False)
    before = model.mean.copy(), list(model.seen), dict(model.stats)
    with pytest.warns(RuntimeWarning), pytest.raises(fl.TrainingError, match="as it was"):
        fl.train(loss, model, [(-np.ones((2, 2)), np.ones((2, 2)))], opt, progress=False)
    np.testing.assert_array_equal(model.mean, before[0])
    assert model.seen == before[1] and model.stats == before[2]


class Scaled:
    def __init__(self):
        self.w = np.array([1.0, 2.0])
        self.a = 1.5

    def __call__(self, x):
        return self.a * self.w * x


def test_compiled_and_eager_agree_on_a_layer_used_twice():
    layer = Scaled()
    model = fl.Chain(layer, layer)
    x = np.array([1.0, -2.0])
    step = lambda m: fl.withgradient(lambda m: np.sum(m(x)), m)  # noqa: E731
    _, (eager,) = step(model)
    _, (compiled,) = fl.compile(step)(model)
    for place in (0, 1):
        assert float(compiled.layers[place].a) == pytest.approx(eager.layers[place].a)
        np.testing.assert_allclose(compiled.layers[place].w, eager.layers[place].w)


@pytest.mark.parametrize("body, message", [
    (lambda m, x: setattr(m, "mask", np.ones(3)), r"replaced the array at argument 0\.mask"),
    (lambda m, x: setattr(m, "state", x[:2]), r"rebound the array at argument 0\.state"),
    (lambda m, x: setattr(m, "tag", "seen"), r"structure of its arguments at argument 0\.tag"),
])
def test_compile_names_the_field_a_forward_pass_cannot_set(body, message):
    class Sets:
        def __init__(self):
            self.w, self.mask, self.state, self.tag = np.ones(3), np.zeros(3), np.zeros(3), ""

        def __call__(self, x):
            body(self, x)
            return np.sum(self.w * x)

    step = fl.compile(lambda m, x: fl.withgradient(lambda m: m(x), m))
    with pytest.raises(fl.CompileError, match=message):
        step(Sets(), np.arange(3.0))


def test_a_refused_output_writes_nothing_back():
    m = Stateful()
    with pytest.raises(Exception, match="scalar"):
        fl.gradient(lambda m: m(X), m)  # a vector output
    assert m.calls == 0 and m.state is None and m.log == []


def test_a_0d_array_counted_in_place_stays_a_0d_array():
    class Counts:
        def __init__(self):
            self.w, self.calls = np.ones(2), np.zeros(())

        def __call__(self, x):
            self.calls += 1.0
            return np.sum(self.w * x)

    m = Counts()
    for _ in range(2):
        fl.gradient(lambda m: m(np.ones(2)), m)
    assert type(m.calls) is np.ndarray and m.calls.shape == () and float(m.calls) == 2.0


@pytest.mark.parametrize("compile", [False, True])
def test_a_failed_step_puts_back_a_state_the_compiled_step_writes_in_place(compile):
    class CarryMean(fl.Module):
        def __init__(self):
            self.w, self.state = np.ones((2, 1)), np.zeros((1, 2))

        def __call__(self, x):
            self.state = np.tanh(x.mean(axis=0, keepdims=True) + self.state)
            return x @ self.w + np.sum(self.state)

    model = CarryMean()
    opt = fl.setup(fl.Descent(0.1), model)
    loss = lambda m, x, y: fl.mse(m(x), y)  # noqa: E731
    y = np.ones((2, 1))
    fl.train(loss, model, [(np.ones((2, 2)), y)] * 2, opt, progress=False, compile=compile)
    before = model.state.copy()
    with np.errstate(all="ignore"), pytest.raises(fl.TrainingError, match="as it was"):
        fl.train(loss, model, [(np.full((2, 2), np.nan), y)], opt, progress=False,
                 compile=compile)
    np.testing.assert_array_equal(model.state, before)


def test_a_defaultdict_field_keeps_its_factory_through_gradients_and_rebuilds():
    # before: a rebuild made it a plain dict (defaultdict(d) refuses a dict for its factory),
    # so a layer filling self.stats[key].append(...) failed with KeyError under fl.gradient
    import collections

    class Tally:
        def __init__(self):
            self.w, self.stats = np.array([1.0, 2.0]), collections.defaultdict(list)

        def __call__(self, x):
            self.stats["calls"].append(1)
            return np.sum(self.w * x)

    m = Tally()
    for _ in range(2):
        g, = fl.gradient(lambda m: m(np.array([3.0, 4.0])), m)
    assert g.w.tolist() == [3.0, 4.0]
    assert type(m.stats) is collections.defaultdict and m.stats["calls"] == [1, 1]
    copy = fl.fmap(lambda a: a * 2, m)
    assert type(copy.stats) is collections.defaultdict and copy.stats.default_factory is list
    assert copy.stats["new"] == []


def test_a_list_or_dict_that_contains_itself_is_named_not_a_recursion_error():
    # before: RecursionError from deep inside the walk (an object's cycle was named already)
    looped = [np.ones(2)]
    looped.append(looped)
    with pytest.raises(ValueError, match=r"cycle through a list .* at 0\.1\)"):
        fl.gradient(lambda l: np.sum(l[0]), looped)
    table = {"w": np.ones(2)}
    table["self"] = table
    with pytest.raises(ValueError, match=r"cycle through a dict .* at self\)"):
        fl.flatten(table)
    deep: list = [np.ones(1)]
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(ValueError, match="nested deeper than Python's recursion limit"):
        fl.flatten(deep)


class Keeper:
    """A layer that keeps, in its forward pass, functions over itself and its output."""

    def __init__(self):
        self.w = np.array([0.5, -1.0])

    def __call__(self, x):
        import functools

        y = np.tanh(self.w * x)
        self.scale = lambda z: z * self.w  # closes over the (traced copy of the) layer
        self.last = lambda: y  # closes over a traced value
        self.bound = functools.partial(Keeper.double, self)
        self.members = {self}

        def nth(n):  # calls itself: the function written back calls the one written back
            return self.w if n == 0 else nth(n - 1)

        self.nth = nth
        return np.sum(y)

    def double(self, z):
        return 2 * self.w * z


def test_functions_made_in_the_forward_pass_close_over_the_model_not_its_traced_copy():
    # before: the lambda and the partial kept the traced copy (calling them raised 'a traced
    # value escaped', and they never saw a later change to the model: stale); the lambda over
    # y kept a dead tracer
    m = Keeper()
    fl.gradient(lambda m: m(np.array([1.0, 2.0])), m)
    m.w = np.array([3.0, 4.0])  # seen by the functions: they hold the model itself
    assert m.scale(2.0).tolist() == [6.0, 8.0]
    assert m.bound(1.0).tolist() == [6.0, 8.0]
    assert m.nth(3).tolist() == [3.0, 4.0]
    assert type(m.last()) is np.ndarray
    np.testing.assert_allclose(m.last(), np.tanh(np.array([0.5, -2.0])))
    assert [k is m for k in m.members] == [True]


def test_a_model_the_loss_closes_over_keeps_plain_arrays_not_tracers():
    # before: model.state was a dead tracer after fl.gradient(lambda x: model(x), x), and any
    # use of it raised 'a traced value escaped the transform'
    class Recorder:
        def __init__(self):
            self.w, self.history = np.array([0.5, -1.0]), []

        def __call__(self, x):
            self.state = np.tanh(self.w * x)
            self.history.append(self.state)
            self.by_name = {"sum": np.sum(self.state)}
            return np.sum(self.state)

    model = Recorder()
    x = np.array([1.0, 2.0])
    import functools

    for run in (lambda: fl.gradient(lambda x: model(x), x),
                lambda: fl.gradient(functools.partial(lambda m, x: m(x), model), x),
                lambda: fl.pullback(lambda x: model(x), x),
                lambda: fl.jvp(lambda x: model(x), (x,), (np.ones(2),)),
                lambda: fl.gradient(model, x)):
        run()
        want = np.tanh(model.w * x)
        for v in (model.state, model.history[-1], model.by_name["sum"]):
            assert not isinstance(v, Tracer)
        np.testing.assert_allclose(model.state, want)
        np.testing.assert_allclose(model.by_name["sum"], np.sum(want))
        assert model.state + 1 is not None  # usable


class Listed:
    """A slotted class that names its fields with __tree_fields__, one slot not among them."""

    __slots__ = ("w", "tmp", "scale")

    def __tree_fields__(self):
        return ("w", "tmp")

    def __init__(self):
        self.w, self.tmp, self.scale = np.array([1.0, 2.0]), np.zeros(2), 3.0

    def __call__(self, x):
        del self.tmp  # (its __tree_fields__ still lists it)
        return np.sum(self.w * x * self.scale)


def test_a_slotted_class_with_tree_fields_keeps_its_other_slots_and_loses_a_deleted_one():
    # before: its rebuild read the listed fields only, so the traced copy had no scale
    # (AttributeError in the forward pass), and a slot the forward pass deleted failed the
    # write-back with AttributeError
    m = Listed()
    g, = fl.gradient(lambda m: m(np.array([1.0, 1.0])), m)
    assert g.w.tolist() == [3.0, 3.0]
    assert not hasattr(m, "tmp") and m.scale == 3.0
    assert fl.fmap(lambda a: 2 * a, Listed()).scale == 3.0


def test_a_tree_fields_class_with_slots_and_a_dict_is_rebuilt_through_its_slots():
    # before: the rebuild put the listed slot's value into __dict__, where nothing reads it
    # (the slot stayed unset: AttributeError for w in the forward pass under fl.gradient)
    class Mixed:
        __slots__ = ("w", "scale", "__dict__")

        def __tree_fields__(self):
            return ("w",)

        def __init__(self):
            self.w, self.scale, self.extra = np.array([1.0, 2.0]), 3.0, 2.0

        def __call__(self, x):
            self.calls = getattr(self, "calls", 0) + 1
            return np.sum(self.w * x * self.scale * self.extra)

    m = Mixed()
    g, = fl.gradient(lambda m: m(np.ones(2)), m)
    assert g.w.tolist() == [6.0, 6.0] and m.calls == 1
    copy = fl.fmap(lambda a: 2 * a, m)
    assert copy.w.tolist() == [2.0, 4.0] and (copy.scale, copy.extra) == (3.0, 2.0)


def test_a_layer_added_to_a_set_it_holds_is_the_layer_itself_afterwards():
    # before: a set is static in a tree, so the traced copy shared the user's set, and
    # self.members.add(self) put the traced copy (its arrays dead tracers) into it
    class Member:
        def __init__(self):
            self.w, self.members = np.array([1.0, 2.0]), set()

        def __call__(self, x):
            self.members.add(self)
            return np.sum(self.w * x)

    m = Member()
    members = m.members
    fl.gradient(lambda m: m(np.ones(2)), m)
    assert m.members is members and [k is m for k in members] == [True]
    fl.gradient(lambda m: m(np.ones(2)), m)
    assert len(members) == 1


def test_a_tuple_the_function_appends_to_a_list_it_closes_over_holds_plain_values():
    # before: history.append((step, loss)) inside the loss kept the loss as a dead tracer
    history = []

    def loss(x):
        value = np.sum(x ** 2)
        history.append((len(history), value, [value * 2]))
        return value

    fl.gradient(loss, np.array([1.0, 2.0]))
    step, value, (twice,) = history[0]
    assert step == 0 and type(value) is np.float64 and value == 5.0 and twice == 10.0
    assert not isinstance(twice, Tracer)
