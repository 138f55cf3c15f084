"""setup / update / adjust / freeze / thaw over model trees, and the schedules."""

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pytest

import fluxml as fl


class Dense:
    def __init__(self, n_in, n_out, seed=0):
        rng = np.random.default_rng(seed)
        self.weight = rng.standard_normal((n_out, n_in))
        self.bias = np.zeros(n_out)
        self.act = np.tanh

    def __call__(self, x):
        return self.act(x @ self.weight.T + self.bias)


class Chain:
    def __init__(self, *layers):
        self.layers = list(layers)

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


class Norm:
    nontrainable = ("running_mean",)

    def __init__(self):
        self.scale = np.ones(2)
        self.running_mean = np.zeros(2)


@dataclass
class Pair:
    left: np.ndarray
    right: np.ndarray


class Point(NamedTuple):
    x: np.ndarray
    label: str


def test_state_mirrors_the_model():
    model = Chain(Dense(3, 4), Dense(4, 2, seed=1))
    state = fl.setup(fl.Adam(), model)
    assert isinstance(state.layers, list) and len(state.layers) == 2
    leaf = state.layers[0].weight
    assert isinstance(leaf, fl.Leaf) and leaf.state.m.shape == (4, 3)
    assert not hasattr(state.layers[0], "act")  # nothing to train there
    text = repr(state)
    assert text.startswith("Chain(\n  layers=[\n    Dense(\n      weight=Leaf(Adam(")
    assert "float64(4, 3)" in text
    # other containers
    s = fl.setup(fl.Descent(), {"p": Pair(np.ones(2), np.ones(1)), "q": Point(np.ones(1), "a"),
                                "n": (1.0, np.arange(3)), "f": np.ones(2, np.float32)})
    assert set(s) == {"p", "q", "f"}  # Python numbers and integer arrays are not trained
    assert isinstance(s["p"].left, fl.Leaf) and isinstance(s["q"].x, fl.Leaf)


def test_update_trains_a_model_with_gradient():
    rng = np.random.default_rng(0)
    model = Chain(Dense(3, 8), Dense(8, 1, seed=1))
    x = rng.standard_normal((32, 3))
    y = np.sin(x.sum(axis=1, keepdims=True))
    loss = lambda m: np.mean((m(x) - y) ** 2)
    state = fl.setup(fl.Adam(0.02), model)
    first = loss(model)
    weight = model.layers[0].weight
    for _ in range(150):
        g = fl.gradient(loss, model)[0]
        state, same = fl.update(state, model, g)
        assert same is model
    assert model.layers[0].weight is weight  # in place
    assert loss(model) < 0.2 * first


def test_tied_arrays_share_one_leaf_and_one_step():
    w = np.ones(3)
    model = {"enc": w, "dec": w, "other": np.ones(3)}
    state = fl.setup(fl.Momentum(0.1, 0.5), model)
    assert state["enc"] is state["dec"]
    g = fl.gradient(lambda m: np.sum(m["enc"] * 2.0) + np.sum(m["dec"]) + np.sum(m["other"]),
                    model)[0]
    fl.update(state, model, g)
    np.testing.assert_allclose(w, 1 - 0.1 * 3.0)  # the total gradient, applied once
    # a gradient at one address only is enough
    fl.update(state, model, {"enc": None, "dec": np.ones(3), "other": None})
    np.testing.assert_allclose(w, 1 - 0.1 * 3.0 - (0.5 * 0.3 + 0.1))


def test_nontrainable_fields_are_skipped():
    model = Norm()
    state = fl.setup(fl.Descent(), model)
    assert hasattr(state, "scale") and not hasattr(state, "running_mean")
    fl.update(state, model, fl.gradient(lambda m: np.sum(m.scale + m.running_mean), model)[0])
    np.testing.assert_array_equal(model.running_mean, np.zeros(2))
    np.testing.assert_allclose(model.scale, 0.9)


def test_adjust_changes_hyperparameters_in_place():
    model = {"a": np.ones(2), "b": np.ones(2)}
    rule = fl.OptimiserChain(fl.ClipNorm(5.0), fl.Adam())
    state = fl.setup(rule, model)
    assert fl.adjust(state, 0.5) is state
    assert state["a"].rule.rules[1].eta == 0.5 and state["a"].rule.rules[0].omega == 5.0
    fl.adjust(state["b"], lr=0.25, betas=(0.5, 0.6), max_norm=1.0)
    assert state["b"].rule.rules[1] == fl.Adam(0.25, (0.5, 0.6))
    assert state["b"].rule.rules[0].omega == 1.0
    assert state["a"].rule.rules[1].eta == 0.5
    assert rule.rules[1].eta == 0.001  # the rule given to setup is unchanged
    with pytest.raises(ValueError, match=r"no rule in this state has the hyperparameter"):
        fl.adjust(state, rho=0.3)
    with pytest.raises(ValueError, match="no rule"):
        fl.adjust(fl.setup(fl.RMSProp(centred=True), model), centred=False)


@pytest.mark.parametrize("call", [
    lambda state: fl.adjust(state, eta=0.001, lr=0.5),
    lambda state: fl.adjust(state, 0.001, lr=0.5),
    lambda state: fl.adjust(state, lambd=0.0, weight_decay=0.3),
    lambda state: state["w"].rule.adjust(epsilon=1e-6, eps=1e-7),
])
def test_adjust_refuses_a_hyperparameter_given_under_both_names(call):
    # which of the two was meant cannot be told: the last one winning, silently, set the
    # other value than a schedule's or the user's
    state = fl.setup(fl.AdamW(0.1, lambd=0.1), {"w": np.zeros(2)})
    with pytest.raises(TypeError, match=r"given twice, as \w+= and as \w+=; pass one"):
        call(state)
    assert state["w"].rule == fl.AdamW(0.1, lambd=0.1)


def test_a_rule_adjusts_under_pytorchs_names_too():
    assert fl.Adam(0.1).adjust(lr=0.3, eps=1e-6) == fl.Adam(0.3, epsilon=1e-6)


def test_adjusted_learning_rate_is_used():
    x = np.zeros(1)
    state = fl.setup(fl.Descent(1.0), [x])
    sched = fl.StepDecay(1.0, 0.5, 1)
    for t in range(3):
        fl.adjust(state, sched(t))
        fl.update(state, [x], [np.ones(1)])
    np.testing.assert_allclose(x, -(1 + 0.5 + 0.25))


def test_freeze_part_of_a_model():
    model = Chain(Dense(2, 2), Dense(2, 2, seed=1))
    state = fl.setup(fl.Descent(), model)
    fl.freeze(state.layers[0])
    w0, w1 = model.layers[0].weight.copy(), model.layers[1].weight.copy()
    g = fl.gradient(lambda m: np.sum(m(np.ones((1, 2)))), model)[0]
    fl.update(state, model, g)
    np.testing.assert_array_equal(model.layers[0].weight, w0)
    assert not np.array_equal(model.layers[1].weight, w1)
    assert "frozen=True" in repr(state.layers[0])


def test_state_is_a_tree_of_arrays():
    model = Chain(Dense(2, 3))
    state = fl.setup(fl.OptimiserChain(fl.AccumGrad(2), fl.Adam()), model)
    leaves = fl.tree.leaves(state)
    assert sum(isinstance(x, np.ndarray) and x.shape == (3, 2) for x in leaves) == 3
    doubled = fl.fmap(lambda x: x * 2 if isinstance(x, np.ndarray) else x, state)
    assert doubled.layers[0].weight.rule == state.layers[0].weight.rule
    assert isinstance(doubled.layers[0].weight, fl.Leaf)


def test_clear_errors():
    model = {"w": np.ones((2, 3))}
    state = fl.setup(fl.Adam(), model)
    with pytest.raises(ValueError, match=r"gradient of model\['w'\] has shape \(3, 2\), the "
                                         r"parameter \(2, 3\)"):
        fl.update(state, model, {"w": np.ones((3, 2))})
    with pytest.raises(TypeError, match="expected an optimisation rule"):
        fl.setup("adam", model)
    with pytest.raises(ValueError, match="learning rate"):
        fl.Adam(-1.0)
    with pytest.raises(ValueError, match="beta"):
        fl.Adam(beta=(0.9, 1.0))
    with pytest.raises(ValueError, match=r"AccumGrad: n \(the steps to accumulate\) must be a "
                                         r"positive int; got 0"):
        fl.AccumGrad(0)
    with pytest.raises(TypeError, match=r"Adam: the keyword is eta= \(PyTorch's lr=\)"):
        fl.Adam(lr=0.01)
    with pytest.raises(TypeError, match=r"AdamW: the keyword is lambd= \(PyTorch's "
                                        r"weight_decay=\)"):
        fl.AdamW(weight_decay=0.01)
    # these trained silently wrong: every entry -delta, every step turned round
    with pytest.raises(ValueError, match=r"ClipGrad: delta .* must be >= 0, got -1"):
        fl.ClipGrad(-1)
    with pytest.raises(ValueError, match=r"ClipNorm: need omega .* got omega=-1, p=2.0"):
        fl.ClipNorm(-1)
    with pytest.raises(ValueError, match=r"ClipNorm: .*p > 0.*p=0"):
        fl.ClipNorm(1.0, 0)
    with pytest.raises(FloatingPointError, match="ClipNorm"):
        fl.update(fl.setup(fl.ClipNorm(), model), model, {"w": np.full((2, 3), np.nan)})


def test_common_mistakes_with_update_are_named():
    model = Dense(3, 2)
    state = fl.setup(fl.Adam(), model)
    grads = fl.gradient(lambda m: np.sum(m(np.ones((4, 3)))), model)
    with pytest.raises(TypeError, match=r"gradient of model is a tuple of 1.*\[0\]"):
        fl.update(state, model, grads)  # the tuple of fl.gradient, not its entry: no silent no-op
    with pytest.raises(TypeError, match=r"state is the rule Adam.*fl.setup\(rule, model\)"):
        fl.update(fl.Adam(), model, grads[0])
    with pytest.raises(TypeError, match=r"is it the model\? The order is update\(state"):
        fl.update(model, state, grads[0])
    with pytest.raises(ValueError, match=r"state of model.weight holds arrays of shape \(2, 2\)"
                                         r", the parameter has shape \(2, 3\)"):
        fl.update(fl.setup(fl.Adam(), Dense(2, 2)), model, grads[0])


def test_a_state_that_does_not_fit_the_model_is_refused():
    """These trained nothing, silently: a state set up for another model (its fields not
    found, so their gradients were taken for None), None, or the rule itself."""
    model = fl.Chain(fl.Dense(2, 3), fl.Dense(3, 1))
    grads = fl.gradient(lambda m: np.sum(m(np.ones((4, 2), np.float32))), model)[0]
    other = fl.setup(fl.Adam(), fl.Dense(2, 3))
    with pytest.raises(TypeError, match=r"state has model\.weight but the model \(Chain\) has "
                                        r"no 'weight'.*fl\.setup\(rule, model\)"):
        fl.update(other, model, grads)
    with pytest.raises(TypeError, match=r"state is None but the model \(Chain\) has arrays"):
        fl.update(None, model, grads)
    with pytest.raises(TypeError, match=r"state is the rule Adam\(.*not an optimiser state"):
        fl.update(fl.Adam(), model, grads)
    with pytest.raises(TypeError, match=r"state has model\['b'\] but the model's dict has no "
                                        r"key 'b'"):
        fl.update(fl.setup(fl.Adam(), {"b": np.ones(2)}), {"w": np.ones(2)}, {"w": np.ones(2)})
    assert fl.update(None, {"n": 3}, None) == (None, {"n": 3})  # nothing to train: no state
    for m in (model, {"w": np.ones(2)}):  # fl.gradient's whole tuple trained nothing
        whole = fl.gradient(lambda m: np.sum(fl.leaves(m)[0]), m)
        with pytest.raises(TypeError, match=r"gradient of model is a tuple of 1.*"
                                            r"fl\.gradient\(loss, model\)\[0\]"):
            fl.update(fl.setup(fl.Adam(), m), m, whole)


def test_a_misfit_state_steps_nothing():
    """A state set up for another model whose second layer differs: the first layer (and its
    state) were stepped before the second's misfit was found, and in a chain the error was
    NumPy's broadcast error. Now nothing is stepped and every rule's error names the array;
    a rule written elsewhere may keep arrays of any shape."""
    x, y = np.ones((1, 2), np.float32), np.zeros((1, 5), np.float32)
    rules = [fl.Adam(), fl.OptimiserChain(fl.ClipNorm(1.0), fl.Adam()), fl.Rprop(),
             fl.MixedPrecision(np.float64, fl.Momentum()), fl.AccumGrad(2)]
    for rule in rules:
        state = fl.setup(rule, fl.Chain(fl.Dense(2, 3), fl.Dense(3, 4)))
        model = fl.Chain(fl.Dense(2, 3), fl.Dense(3, 5))
        before = [a.copy() for a in fl.leaves(model)] + [a.copy() for a in fl.leaves(state)
                                                         if isinstance(a, np.ndarray)]
        grads = fl.gradient(lambda m: fl.mse(m(x), y), model)[0]
        with pytest.raises(ValueError, match=r"state of model\.layers\[1\]\.weight holds "
                                             r"arrays of shape \(4, 3\), the parameter has "
                                             r"shape \(5, 3\)"):
            fl.update(state, model, grads)
        after = fl.leaves(model) + [a for a in fl.leaves(state) if isinstance(a, np.ndarray)]
        for a, b in zip(before, after, strict=True):
            np.testing.assert_array_equal(a, b)

    class LowRank(fl.Descent):  # a rule of the user's: its state is not the parameter's shape
        def init(self, x):
            return np.zeros(x.shape[:1])

        def apply(self, state, x, dx, out=None):
            return state + dx.sum(axis=tuple(range(1, dx.ndim))), 0.5 * dx

    w = np.ones((3, 2))
    fl.update(fl.setup(LowRank(), {"w": w}), {"w": w}, {"w": np.ones((3, 2))})
    np.testing.assert_array_equal(w, 0.5)


def test_a_gradient_of_the_wrong_kind_steps_nothing():
    """A complex gradient for a real array (or strings, objects) raised NumPy's casting
    error in the middle of the step, after an OptimiserChain had stepped the arrays before
    it. Now a TypeError names the array before any step."""
    for bad in (np.ones((3, 2), complex), np.ones((3, 2), object), np.full((3, 2), "a")):
        model = {"a": np.ones(4, np.float32), "w": np.ones((3, 2), np.float32)}
        state = fl.setup(fl.OptimiserChain(fl.ClipNorm(1.0), fl.Adam()), model)
        with pytest.raises(TypeError, match=rf"gradient of model\['w'\] has dtype "
                                            rf"{re.escape(str(bad.dtype))}, the parameter "
                                            r"float32: expected real numbers"):
            fl.update(state, model, {"a": np.ones(4, np.float32), "w": bad})
        np.testing.assert_array_equal(model["a"], 1)
    z = {"z": np.ones(2, complex)}  # a complex array takes a complex gradient
    fl.update(fl.setup(fl.Descent(0.5), z), z, {"z": np.array([2j, 2])})
    np.testing.assert_array_equal(z["z"], [1 + 1j, 0])


def test_transposed_gradients():
    # gradients of x @ W.T come back as transposed views: the update must read them right
    W, W2 = np.arange(6.0).reshape(2, 3), np.arange(6.0).reshape(2, 3)
    g = np.linspace(-1, 1, 6).reshape(3, 2).T
    assert not g.flags.c_contiguous
    fl.update(fl.setup(fl.Adam(0.1), [W]), [W], [g])
    fl.update(fl.setup(fl.Adam(0.1), [W2]), [W2], [np.ascontiguousarray(g)])
    np.testing.assert_array_equal(W, W2)


# --- schedules ------------------------------------------------------------------------------


def test_schedules_against_their_formulas():
    s = fl.StepDecay(0.1, 0.5, 3)
    assert [s(t) for t in range(7)] == [0.1] * 3 + [0.05] * 3 + [0.025]
    e = fl.ExpDecay(2.0, 0.9)
    assert e(3) == pytest.approx(2.0 * 0.9**3)
    c = fl.CosineAnneal(1.0, 0.1, period=10, warmup=5)
    assert [c(t) for t in range(5)] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert c(10) == pytest.approx(0.1 + 0.9 * (1 + math.cos(math.pi / 2)) / 2)
    assert c(15) == pytest.approx(0.1) and c(100) == pytest.approx(0.1)
    o = fl.OneCycle(1.0, 100)
    assert o(0) == pytest.approx(1.0 / 25)
    peak = 0.3 * 100 - 1
    assert o(int(peak)) == pytest.approx(1.0)
    assert o(99) == pytest.approx(1.0 / 25 / 1e4)
    assert o(50) == pytest.approx(
        1 / 25 / 1e4 + (1 - 1 / 25 / 1e4) * (1 + math.cos(math.pi * (50 - peak) / (99 - peak))) / 2)
    with pytest.raises(ValueError, match="counts from 0"):
        s(-1)
    with pytest.raises(ValueError, match="period"):
        fl.CosineAnneal(1.0, period=0)
    with pytest.raises(ValueError, match=r"StepDecay: step .* positive int; got 0"):
        fl.StepDecay(0.1, 0.5, 0)  # was a ZeroDivisionError at the first call


@pytest.mark.parametrize("rule", [fl.Adam(0.1), fl.Rprop(0.1), fl.AdaDelta(),
                                  fl.OptimiserChain(fl.AccumGrad(2), fl.OAdam(0.1))])
def test_state_follows_the_gradient_layout(rule):
    # the state is re-laid out when the gradient's layout changes: same steps either way
    W, ref = np.arange(12.0).reshape(3, 4), np.arange(12.0).reshape(3, 4)
    state, ref_state = fl.setup(rule, [W]), fl.setup(rule, [ref])
    rng = np.random.default_rng(0)
    for i in range(6):
        g = rng.standard_normal((3, 4))
        view = np.ascontiguousarray(g.T).T if i % 3 else g  # F, F, C, F, F, C
        fl.update(state, [W], [view])
        fl.update(ref_state, [ref], [g])
        np.testing.assert_allclose(W, ref, rtol=1e-12)


def test_a_state_rebuilt_from_its_leaves_still_steps_each_array_once():
    w = np.ones(2)
    model = {"a": w, "b": w}
    state = fl.setup(fl.Descent(0.5), model)
    leaves, spec = fl.tree.flatten(state)
    rebuilt = fl.tree.unflatten(spec, leaves)  # as a loader would: two Leafs now
    assert rebuilt["a"] is not rebuilt["b"]
    fl.update(rebuilt, model, {"a": np.ones(2), "b": np.ones(2)})
    np.testing.assert_allclose(w, 0.5)
    with pytest.raises(ValueError, match=r"model\['b'\] and model\['a'\] share a Leaf"):
        fl.update(state, {"a": w, "b": np.ones(2)}, {"a": np.ones(2), "b": np.ones(2)})


def test_with_fluxml_layers():
    model = fl.Chain(fl.Dense(3, 8, np.tanh), fl.Dense(8, 1))
    state = fl.setup(fl.Adam(0.02), model)
    assert isinstance(state.layers[0].weight, fl.Leaf)
    assert "Leaf(Adam(0.02, (0.9, 0.999), 1e-08), AdamState(m=float32(8, 3)" in repr(state)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 3)).astype(np.float32)
    y = np.sin(x.sum(axis=1, keepdims=True))
    loss = lambda m: fl.mse(m(x), y)
    first = loss(model)
    fl.freeze(state.layers[1])
    w1 = model.layers[1].weight.copy()
    for _ in range(50):
        state, model = fl.update(state, model, fl.gradient(loss, model)[0])
    assert loss(model) < 0.5 * first and loss(model).dtype == np.float32
    np.testing.assert_array_equal(model.layers[1].weight, w1)


def test_float16_adam_survives_zero_gradients():
    """epsilon 1e-8 rounds to 0 in float16: a zero gradient gave 0/0 and NaN weights (found by
    review); the rules raise it to 1e-7 there, as Optimisers.jl does."""
    m = fl.f16(fl.Dense(2, 2))
    state = fl.setup(fl.Adam(), m)
    g = fl.gradient(lambda m: np.sum(m(np.array([[1, 0]], np.float16))), m)[0]
    fl.update(state, m, g)
    assert np.isfinite(m.weight).all() and m.weight.dtype == np.float16


def test_weights_tied_through_a_view_are_refused():
    """dec.weight = enc.weight.T gave the view an Adam state of its own: a double step (found by
    review). The very same array object stays supported."""
    enc, dec = fl.Dense(4, 2, bias=False), fl.Dense(2, 4, bias=False)
    dec.weight = enc.weight.T
    with pytest.raises(ValueError, match=r"layers.1.weight and layers.0.weight are views"):
        fl.setup(fl.Adam(), fl.Chain(enc, dec))
    same = fl.Chain(enc, enc)
    state = fl.setup(fl.Adam(), same)
    assert state.layers[0].weight is state.layers[1].weight


def test_a_rule_of_ones_own_written_as_optimisers_jl():
    """apply(state, x, dx), without the scratch array the built-in rules take, as the issue
    and Optimisers.jl's apply! write it: update called it with four arguments (TypeError)."""

    @dataclass
    class HalfMomentum(fl.optimise.Rule):
        eta: float = 0.1

        def init(self, x):
            return np.zeros_like(x)

        def apply(self, v, x, dx):
            v *= 0.5
            v += dx
            return v, self.eta * v

    @dataclass
    class Elementwise(HalfMomentum):
        elementwise = True  # stepped in groups (small arrays) and in parts (large ones)

    for rule in (HalfMomentum(), Elementwise(), fl.OptimiserChain(fl.ClipGrad(0.5), Elementwise())):
        model = {"a": np.ones(3), "b": np.ones(2), "big": np.ones(1 << 19)}
        state = fl.setup(rule, model)
        for _ in range(2):
            state, model = fl.update(state, model, {k: np.ones_like(v) for k, v in
                                                    model.items()})
        g = 0.5 if isinstance(rule, fl.OptimiserChain) else 1.0
        for x in model.values():  # v = g, then 1.5 g: x = 1 - 0.1 g - 0.15 g
            np.testing.assert_allclose(x, 1 - 0.25 * g)


@pytest.mark.parametrize("rule", [fl.Descent(0.1), fl.Momentum(0.1, 0.5), fl.Adam(0.1)])
def test_a_state_set_up_inside_a_gradient_steps_the_traced_model(rule):
    # a model differentiated through one inner step (meta-learning): setup skipped the traced
    # arrays, the state was None and update stepped nothing, so the gradient was that of the
    # loss without the step
    x = np.array([1.0, 2.0, 3.0])
    w0 = np.array([0.5, -0.2, 0.3])

    def after_one_step(w):
        model = {"w": w * 1.0}
        state = fl.setup(rule, model)
        assert state is not None
        g = fl.gradient(lambda m: np.sum(m["w"] ** 2 * x), model)[0]
        fl.update(state, model, g)
        return np.sum(model["w"] ** 3)

    if isinstance(rule, fl.Adam):  # its first step is eta * sign(g) (to epsilon)
        step, dstep = 0.1 * np.sign(w0), 0.0
    else:  # (Momentum's first step is Descent's)
        step, dstep = 0.2 * w0 * x, 0.2 * x
    w1 = w0 - step
    np.testing.assert_allclose(after_one_step(w0), np.sum(w1 ** 3))
    np.testing.assert_allclose(fl.gradient(after_one_step, w0)[0], 3 * w1 ** 2 * (1 - dstep),
                               rtol=1e-6)


def test_freeze_thaw_adjust_of_the_model_instead_of_its_state_are_refused():
    # fl.freeze(model.layers[0]) (the model where its state was meant) found no Leaf and
    # froze nothing, silently; thaw likewise; adjust said only "they have []"
    model = fl.Chain(fl.Dense(2, 2), fl.Dense(2, 1))
    state = fl.setup(fl.Descent(0.1), model)
    for call in (fl.freeze, fl.thaw, lambda s: fl.adjust(s, 0.5)):
        with pytest.raises(TypeError, match=r"expected an optimiser state .* got a Dense "
                                            r"holding arrays but no Leaf \(the model\?\)"):
            call(model.layers[0])
    fl.freeze(state.layers[0])
    assert state.layers[0].weight.frozen and not state.layers[1].weight.frozen
    fl.freeze(None)  # (the state of a part with nothing to train)
    fl.thaw(fl.setup(fl.Descent(), {"n": 3}))


@pytest.mark.parametrize("bad", [3, 2.5, "a", np.float32(1)])
def test_freeze_thaw_adjust_of_a_number_or_a_string_are_refused(bad):
    # they did nothing, silently
    for call in (fl.freeze, fl.thaw, lambda s: fl.adjust(s, 0.5)):
        with pytest.raises(TypeError, match=r"expected an optimiser state .* holds no Leaf"):
            call(bad)


def test_a_complex_parameter_gets_a_leaf_of_real_pairs():
    """A complex array was once left out of the state without a word (it never trained),
    then refused; now it trains as its (real, imaginary) pairs (tests/optimise/
    test_complex.py), and views of one complex array's memory are refused as real ones."""
    model = {"w": np.ones(2), "z": np.ones(2, np.complex64)}
    state = fl.setup(fl.Adam(), model)
    assert state["z"].state.m.shape == (2, 2) and state["z"].state.m.dtype == np.float32
    z = np.ones((2, 3), complex)
    with pytest.raises(ValueError, match="setup: .* are views of the same memory"):
        fl.setup(fl.Adam(), {"enc": z, "dec": z.T})
    with pytest.raises(ValueError, match=r"update: the optimiser state of model\['z'\] holds "
                                         r"arrays of shape \(2,\), the parameter has shape "
                                         r"\(2,\) \(complex: its state arrays hold pairs, of "
                                         r"shape \(2, 2\)\)"):
        fl.update(fl.setup(fl.Adam(), {"z": np.ones(2)}), {"z": np.ones(2, complex)},
                  {"z": np.ones(2, complex)})


def test_a_field_named_as_the_states_bookkeeping_is_refused():
    """A model field named _fields broke fl.setup with "'Leaf' object is not iterable"."""
    class M:
        def __init__(self):
            self._fields, self.w = np.ones(2), np.ones(2)

    with pytest.raises(ValueError, match="setup: a M has a field named _fields"):
        fl.setup(fl.Adam(), M())


def test_a_read_only_parameter_is_refused_before_anything_is_stepped():
    """A read-only array in the model (memory-mapped weights, np.frombuffer): NumPy's bare
    'output array is read-only' came after the arrays before it were stepped and every
    Leaf's Adam state advanced (a state one step ahead of its parameter). Now update names
    the array first and steps nothing; frozen, it is skipped and the others train."""
    frozen_weights = np.ones(2)
    frozen_weights.flags.writeable = False
    model = {"a": np.ones(2), "b": frozen_weights, "c": np.ones(3)}
    state = fl.setup(fl.Adam(0.1), model)
    grads = {"a": np.ones(2), "b": np.ones(2), "c": np.ones(3)}
    with pytest.raises(ValueError, match=r"update: model\['b'\] is a read-only array.*"
                                         r"nothing was stepped"):
        fl.update(state, model, grads)
    assert all(np.all(x == 1) for x in model.values())
    assert [int(state[k].state.t) for k in "abc"] == [0, 0, 0]
    fl.freeze(state["b"])
    fl.update(state, model, grads)
    # Adam's first step moves each entry by eta (m / sqrt(v) = 1, bias-corrected)
    np.testing.assert_allclose(model["a"], 0.9)
    np.testing.assert_allclose(model["c"], 0.9)
    assert np.all(model["b"] == 1)


def test_a_read_only_memory_map_is_refused_before_anything_is_stepped(tmp_path):
    """np.load(mmap_mode='r') gives an np.memmap, which the check (type(...) is np.ndarray)
    missed: a and c were stepped before NumPy's bare error (review)."""
    np.save(tmp_path / "b.npy", np.ones(2))
    model = {"a": np.ones(2), "b": np.load(tmp_path / "b.npy", mmap_mode="r"), "c": np.ones(3)}
    state = fl.setup(fl.Adam(0.1), model)
    grads = {"a": np.ones(2), "b": np.ones(2), "c": np.ones(3)}
    with pytest.raises(ValueError, match=r"update: model\['b'\] is a read-only array"):
        fl.update(state, model, grads)
    assert all(np.all(np.asarray(x) == 1) for x in model.values())


# A gradient that is not one of the layer's: it stepped nothing, silently (a string, a
# number, an array, an object where the layer's gradient belongs; a dict key misspelt). Each
# is now refused by name, before any array of the model is stepped.
_NOT_A_GRADIENT = [
    ("abc", "the gradient of model.layers[1] is 'abc' (a str), with none of the fields"),
    (5, "the gradient of model.layers[1] is 5, with none of the fields"),
    (np.ones(3), "the gradient of model.layers[1] is an array of shape (3,)"),
    (object(), "with none of the fields of the model there (Dense: weight, bias)"),
    ({"weigth": np.ones((2, 4))}, "model.layers[1] has key 'weigth', but the model there "
                                  "(Dense) has no field 'weigth'"),
]


@pytest.mark.parametrize("bad, message", _NOT_A_GRADIENT)
def test_update_refuses_what_is_not_a_layers_gradient(bad, message):
    model = fl.Chain(fl.Dense(3, 4), fl.Dense(4, 2))
    state = fl.setup(fl.Descent(0.1), model)
    before = [a.copy() for a in fl.leaves(model)]
    grads = {"layers": [{"weight": np.ones((4, 3)), "bias": np.ones(4)}, bad]}
    with pytest.raises(TypeError, match=re.escape(message)):
        fl.update(state, model, grads)
    for a, b in zip(fl.leaves(model), before):  # nothing half-done: layer 0 not stepped
        np.testing.assert_array_equal(a, b)
    # the same gradient with the second layer's part left out (None) steps the first only
    fl.update(state, model, {"layers": [grads["layers"][0], None]})
    np.testing.assert_allclose(model.layers[0].weight, before[0] - 0.1, rtol=1e-6)
    np.testing.assert_array_equal(model.layers[1].weight, before[2])


def test_freeze_thaw_and_adjust_refuse_what_holds_no_state():
    """A list of names or a dict of settings passed to freeze, thaw or adjust changed
    nothing, silently (badinput's sweep); they hold values no optimiser state holds, and
    are refused by name. An empty container, None, or the state of a layer with nothing to
    train (None) is still fine to freeze and thaw."""
    for who in (fl.freeze, fl.thaw, lambda s: fl.adjust(s, 0.1)):
        for bad in (["layers.0"], {"eta": 0.1}, ("w", None)):
            with pytest.raises(TypeError, match=r"expected an optimiser state .* holding "
                                                r".* and no Leaf"):
                who(bad)
    for who in (fl.freeze, fl.thaw):
        for fine in (None, [], {}):
            who(fine)
    state = fl.setup(fl.Adam(), fl.Chain(fl.Dense(2, 3), fl.Flatten()))
    fl.freeze(state.layers[1])  # (Flatten: nothing to train)


@pytest.mark.parametrize("rule", [fl.Adam(0.1), fl.AccumGrad(2),
                                  fl.MixedPrecision(np.float64, fl.Momentum(0.1))],
                         ids=lambda r: type(r).__name__)
def test_a_state_replaced_by_one_of_other_shapes_after_a_step_steps_nothing(rule):
    """update noted on each Leaf that its state fits, by the parameter's shape alone: a state
    replaced after a step by one of other shapes went unchecked, so the arrays before it were
    stepped before NumPy's broadcast error (Adam), or it stepped with the state broadcast,
    silently (AccumGrad, MixedPrecision: the (4,) parameter took the (1,) state's numbers)."""
    model = {"a": np.ones(3), "w": np.full(4, 0.5)}
    state = fl.setup(rule, model)
    grads = {"a": np.ones(3), "w": np.ones(4)}
    fl.update(state, model, grads)
    state["w"].state = fl.setup(rule, {"w": np.zeros(1)})["w"].state  # another model's
    before = [np.copy(a) for a in fl.leaves((model, state))]
    with pytest.raises(ValueError, match=r"state of model\['w'\] holds arrays of shape "
                                         r"\(1,\), the parameter has shape \(4,\)"):
        fl.update(state, model, grads)
    for a, b in zip(before, fl.leaves((model, state)), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_state_rebuilt_by_fmap_into_other_shapes_steps_nothing():
    """A Leaf rebuilt by a tree rebuild carries the original's attributes: its note that the
    state fit too, which skipped the check of the rebuilt state (of other shapes here)."""
    model = {"a": np.ones(3), "w": np.ones((3, 4))}
    state = fl.setup(fl.AccumGrad(2), model)
    grads = {"a": np.ones(3), "w": np.ones((3, 4))}
    fl.update(state, model, grads)
    rows = fl.fmap(lambda s: s[:1] if np.ndim(s) == 2 else s, state)  # w's state (1, 4)
    before = [a.copy() for a in fl.leaves(model)]
    with pytest.raises(ValueError, match=r"holds arrays of shape \(1, 4\), the parameter "
                                         r"has shape \(3, 4\)"):
        fl.update(rows, model, grads)
    for a, b in zip(before, fl.leaves(model), strict=True):
        np.testing.assert_array_equal(a, b)


def test_two_rebuilt_copies_of_a_state_stepped_on_two_threads_do_not_share_scratch():
    """A state copied by ``fl.fmap`` (np.copy of each array) held the original Leafs'
    scratch arrays (a rebuild carries an object's attributes): two models stepped on two
    threads, one with each copy, wrote each other's steps into them (NaN after 300 steps).
    Each copy now gets scratch of its own, and both runs equal one run alone."""
    import threading

    from fluxml.optimise import split

    rng = np.random.default_rng(0)
    model = {"w": rng.standard_normal(200_000), "v": rng.standard_normal((8, 8)),
             "u": rng.standard_normal((8, 8))}
    grads = {k: rng.standard_normal(v.shape) for k, v in model.items()}
    state = fl.setup(fl.Adam(0.01), model)
    fl.update(state, model, grads)  # (the scratch made, kept on the Leafs)
    copies = [fl.fmap(np.copy, state) for _ in range(2)]
    models = [fl.fmap(np.copy, model) for _ in range(3)]

    def train(m, s, steps=150):
        for _ in range(steps):
            fl.update(s, m, grads)

    train(models[2], fl.fmap(np.copy, state))
    saved, split.LARGE = split.LARGE, 1 << 40  # (w stepped whole, on its thread)
    try:
        threads = [threading.Thread(target=train, args=(m, s)) for m, s in zip(models, copies)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        split.LARGE = saved
    for m in models[:2]:
        for k in model:
            np.testing.assert_array_equal(m[k], models[2][k])


def test_a_0d_parameters_state_in_the_leaf_of_an_array_steps_nothing():
    """The state check left every 0-d array out (step counts are 0-d), so a 0-d parameter's
    moments put in the Leaf of a (4,) array failed with NumPy's broadcast error, after the
    arrays before it had been stepped."""
    model = {"a": np.ones(3), "w": np.ones(4)}
    state = fl.setup(fl.Adam(0.1), model)
    state["w"].state = fl.setup(fl.Adam(0.1), {"s": np.array(1.0)})["s"].state
    with pytest.raises(ValueError, match=r"state of model\['w'\] holds arrays of shape \(\), "
                                         r"the parameter has shape \(4,\)"):
        fl.update(state, model, {"a": np.ones(3), "w": np.ones(4)})
    np.testing.assert_array_equal(model["a"], 1.0)
    scalar = {"s": np.array(1.0)}  # a 0-d parameter's own 0-d moments fit
    fl.update(fl.setup(fl.Adam(0.1), scalar), scalar, {"s": np.array(1.0)})
    np.testing.assert_allclose(scalar["s"], 0.9)


def test_mixed_precision_with_another_arrays_state_is_refused_not_stepped_silently():
    """MixedPrecision sets its parameter to its master copy: a 0-d float16 parameter whose
    state was replaced after a step by a (1,) array's took that state's master (0.0), six
    steps without an error (0.5 became -0.006), as the state check was skipped."""
    rule = fl.MixedPrecision(fl.Adam())
    model = {"a": np.ones(5, np.float16), "w": np.array(0.5, np.float16)}
    state = fl.setup(rule, model)
    grads = {"a": np.ones(5, np.float16), "w": np.array(1.0, np.float16)}
    fl.update(state, model, grads)
    state["w"].state = fl.setup(rule, {"w": np.zeros(1, np.float16)})["w"].state
    with pytest.raises(ValueError, match=r"holds arrays of shape \(1,\), the parameter has "
                                         r"shape \(\)"):
        fl.update(state, model, grads)
    assert model["w"] == np.float16(0.5) - np.float16(0.001)


@dataclasses.dataclass
class _Double(fl.optimise.base.Rule):
    """``2 dx``, written into the lent scratch array and returned as a view of it."""

    def apply(self, state, x, dx, out=None):
        out = np.empty_like(x) if out is None else out
        np.multiply(dx, 2.0, out=out)
        return state, out.reshape(x.shape)  # (the same memory, another object)


def test_a_chain_never_lends_the_next_rule_the_memory_it_reads():
    # (an identity check lent Adam the array it read through a view: 1.7e-07 for 0.9)
    def run(rule):
        model = {"a": np.array([1.0, 2.0, 3.0])}
        fl.update(fl.setup(rule, model), model, {"a": np.array([0.3, -0.2, 0.1])})
        return model["a"]

    np.testing.assert_array_equal(run(fl.OptimiserChain(_Double(), fl.Adam(0.1))),
                                  run(fl.OptimiserChain(fl.Descent(2.0), fl.Adam(0.1))))
