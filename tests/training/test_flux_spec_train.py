"""Flux.jl's test/train.jl translated to fluxml: ``fl.train(loss, model, data, state)`` for
``Flux.train!``, ``fl.setup`` / ``fl.update`` for Optimisers.jl's; Flux's
``(features, N)`` batches are ``(N, features)``."""

import copy

import numpy as np
import pytest

import fluxml as fl

RNG = np.random.default_rng(84)


def test_train_converges_on_a_linear_map():
    # train.jl "Flux.train!" (fewer steps than Flux's 10^5, with batches of 32, and one rule:
    # each rule's update is tested against its formula in tests/optimise)
    w, w2 = RNG.standard_normal((10, 10)), RNG.standard_normal((10, 10))

    def loss(m, x):
        return fl.mse(x @ w.T, x @ m["weight"].T + m["bias"])

    data = [RNG.random((32, 10)) for _ in range(500)]
    for rule in (fl.Adam(0.05),):
        model = {"weight": w2.copy(), "bias": np.zeros(10), "ignore": None}
        assert loss(model, RNG.random((10, 10))) > 1
        fl.train(loss, model, data, fl.setup(rule, model), progress=False)
        assert loss(model, RNG.random((10, 10))) < 0.01
        assert model["ignore"] is None


def test_stop_on_nan_leaves_the_model_uncorrupted():
    # train.jl "Stop on NaN": step 51 of 100 gives NaN; the 50 before each moved the weight
    # and bias by -0.1
    m = fl.Dense(1, 1)
    m.weight[:] = 0
    calls = []

    def loss(m, i):
        calls.append(i)
        return (np.float32(np.nan) if i == 51 else np.float32(1)) * np.sum(
            m(np.ones(1, np.float32)))

    with pytest.raises(fl.TrainingError, match="step 51 .*the loss is nan.*the model is as it "
                                               "was before this step"):
        fl.train(loss, m, [(i,) for i in range(1, 101)], fl.setup(fl.Descent(0.1), m),
                 progress=False)
    assert len(calls) == 51
    assert m.weight[0, 0] == pytest.approx(-5, rel=1e-5)
    assert m.bias[0] == pytest.approx(-5, rel=1e-5)


def test_non_tuple_data_and_helpful_errors():
    # train.jl "non-tuple data", "callbacks give helpful error", "Flux.update! features"
    w = RNG.standard_normal((3, 3))
    model = {"weight": np.zeros((3, 3)), "bias": np.zeros(3)}
    seen = []

    def loss(m, x):  # a batch that is not a tuple is the loss's one argument
        seen.append(x.shape)
        return fl.mse(x @ w.T, x @ m["weight"].T + m["bias"])

    fl.train(loss, model, [RNG.random((5, 3)) for _ in range(3)],
             fl.setup(fl.Descent(0.1), model), progress=False)
    assert seen == [(5, 3)] * 3
    m = fl.Chain(fl.Dense(2, 3, np.tanh), fl.Dense(3, 1))
    with pytest.raises(TypeError, match="got the rule Descent.* itself. Pass fl.setup"):
        fl.train(lambda m, x: np.sum(m(x)), m, [(np.ones((1, 2), np.float32),)],
                 fl.Descent(0.1), progress=False)
    x = RNG.random(2).astype(np.float32)
    gs = fl.gradient(lambda m: np.sum(m(x)), m)
    state = fl.setup(fl.Adam(), m)
    with pytest.raises(TypeError, match=r"fl.gradient returns one gradient per argument: "
                                        r"pass fl.gradient\(loss, model\)\[0\]"):
        fl.update(state, m, gs)
    with pytest.raises(TypeError, match="state is the rule Adam"):
        fl.update(fl.Adam(), m, gs[0])
    y1 = m(x)
    fl.update(state, m, gs[0])
    assert m(x) < y1


def test_train_is_a_loop_of_gradient_and_update():
    # train.jl "Flux.train! is a loop over Flux.trainstep!"
    data = [(RNG.standard_normal((5, 3)).astype(np.float32),
             RNG.standard_normal((5, 2)).astype(np.float32)) for _ in range(20)]

    def loss(m, x, y):
        return fl.mse(m(x), y)

    m1 = fl.Dense(3, 2, np.tanh)
    m2 = copy.deepcopy(m1)
    s1, s2 = fl.setup(fl.Adam(0.05), m1), fl.setup(fl.Adam(0.05), m2)
    history = fl.train(loss, m1, data, s1, progress=False)
    losses = []
    for x, y in data:
        value, (g,) = fl.withgradient(lambda m: loss(m, x, y), m2)
        losses.append(float(value))
        fl.update(s2, m2, g)
    np.testing.assert_array_equal(m1.weight, m2.weight)
    np.testing.assert_array_equal(m1.bias, m2.bias)
    np.testing.assert_allclose(history.losses, losses)  # each measured before its update


def test_l2_regularisation_three_ways():
    # train.jl "L2 regularisation": a penalty in the loss, the same over fl.trainables, and
    # OptimiserChain(WeightDecay, Adam) move the weight alike
    model = fl.Dense(3, 2, np.tanh)
    init = model.weight.copy()
    data = [(RNG.standard_normal((5, 3)).astype(np.float32),
             RNG.standard_normal((5, 2)).astype(np.float32)) for _ in range(10)]

    def run(loss, rule):
        model.weight[...] = init
        model.bias[...] = 0
        fl.train(loss, model, data, fl.setup(rule, model), progress=False)
        return model.weight - init

    diff1 = run(lambda m, x, y: fl.mse(m(x), y) + 0.33 * (np.sum(m.weight ** 2) / 2
                                                         + np.sum(m.bias ** 2) / 2),
                fl.Adam(0.1))
    diff2 = run(lambda m, x, y: fl.mse(m(x), y) + 0.33 * sum(np.sum(p ** 2) / 2
                                                            for p in fl.trainables(m)),
                fl.Adam(0.1))
    diff3 = run(lambda m, x, y: fl.mse(m(x), y),
                fl.OptimiserChain(fl.WeightDecay(0.33), fl.Adam(0.1)))
    assert np.abs(diff1).max() > 0.1
    np.testing.assert_allclose(diff1, diff2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(diff1, diff3, rtol=1e-4, atol=1e-5)


def test_setup_bugs():
    # train.jl "Flux.setup bugs" (issue #2144)
    assert isinstance(fl.setup(fl.Adam(), fl.Embedding(3, 1)).weight, fl.Leaf)
    assert isinstance(fl.setup(fl.ClipGrad(1), fl.Dense(2, 3)).weight.rule, fl.ClipGrad)
    assert isinstance(fl.setup(fl.ClipNorm(1), fl.Dense(2, 3)).weight.rule, fl.ClipNorm)


def _momentum_velocity(state):
    return np.array(state.weight.state, copy=True)


def test_trainstep_returns_the_loss_and_updates_in_place():
    # train.jl "trainstep! returns the loss and updates in place", "trainstep_withgradient!
    # also returns the gradient" (fl.trainstep and fl.trainstep_withgradient were missing)
    model = fl.Dense(3, 2, np.tanh)
    x = RNG.standard_normal((5, 3)).astype(np.float32)
    y = RNG.standard_normal((5, 2)).astype(np.float32)

    def loss(m, x, y):
        return fl.mse(m(x), y)

    ref = copy.deepcopy(model)
    state, ref_state = fl.setup(fl.Momentum(0.1), model), fl.setup(fl.Momentum(0.1), ref)
    l0, w0 = loss(model, x, y), model.weight.copy()
    v0 = _momentum_velocity(state)
    value = fl.trainstep(loss, model, (x, y), state)
    assert np.isfinite(value) and value == pytest.approx(l0)  # measured before the update
    assert not np.allclose(model.weight, w0) and not np.allclose(_momentum_velocity(state), v0)
    g = fl.gradient(lambda m: loss(m, x, y), ref)[0]
    fl.update(ref_state, ref, g)
    np.testing.assert_array_equal(model.weight, ref.weight)  # one gradient and one update
    value, grads = fl.trainstep_withgradient(loss, model, (x, y), state)
    assert value == pytest.approx(loss(ref, x, y))
    assert grads.weight.shape == model.weight.shape
    np.testing.assert_allclose(grads.weight, fl.gradient(lambda m: loss(m, x, y), ref)[0].weight,
                               rtol=1e-6)


def test_trainstep_repeated_converges_and_skips_a_nonfinite_loss():
    # train.jl "repeated steps converge", "non-finite loss skips the update"
    w = RNG.standard_normal((10, 10))

    def loss(m, x):  # a batch that is not a tuple is one argument
        return fl.mse(x @ w.T, x @ m["weight"].T + m["bias"])

    model = {"weight": RNG.standard_normal((10, 10)), "bias": np.zeros(10), "ignore": None}
    assert loss(model, RNG.random((10, 10))) > 1
    state = fl.setup(fl.Adam(0.05), model)
    for _ in range(500):
        fl.trainstep(loss, model, RNG.random((32, 10)), state)
    assert loss(model, RNG.random((10, 10))) < 0.01
    m = fl.Dense(1, 1, init=fl.init.zeros)
    state = fl.setup(fl.Descent(0.1), m)
    value = fl.trainstep(lambda m, i: np.float32(np.nan) * np.sum(m(np.ones(1, np.float32))),
                         m, (1,), state)
    assert np.isnan(value)
    assert m.weight[0, 0] == 0 and m.bias[0] == 0  # update skipped, model uncorrupted
    # (beyond Flux: a finite loss with a NaN gradient is skipped too, with a warning)
    with np.errstate(divide="ignore"), pytest.warns(
            RuntimeWarning, match="trainstep: the gradient of weight holds Inf"):
        value = fl.trainstep(lambda m: np.sum(np.sqrt(m.weight)) + 1, m, (), state)
    assert value == 1 and m.weight[0, 0] == 0


def test_trainstep_auxiliary_outputs():
    # train.jl "auxiliary loss outputs": (loss, aux) comes back whole; the update is the
    # scalar loss's
    x = RNG.standard_normal((5, 3)).astype(np.float32)
    y = RNG.standard_normal((5, 2)).astype(np.float32)
    base = fl.Dense(3, 2, np.tanh)
    l0, pred0 = fl.mse(base(x), y), base(x)
    for aux_loss in (lambda m, x, y: (fl.mse(m(x), y), m(x)),):
        model, ref = copy.deepcopy(base), copy.deepcopy(base)
        state, ref_state = fl.setup(fl.Momentum(0.1), model), fl.setup(fl.Momentum(0.1), ref)
        value = fl.trainstep(aux_loss, model, (x, y), state)
        fl.trainstep(lambda m, x, y: fl.mse(m(x), y), ref, (x, y), ref_state)
        assert isinstance(value, tuple) and value[0] == pytest.approx(l0)
        np.testing.assert_allclose(value[1], pred0)
        np.testing.assert_allclose(model.weight, ref.weight, rtol=1e-6)
    (value, pred), g = fl.trainstep_withgradient(lambda m, x, y: (fl.mse(m(x), y), m(x)),
                                                 copy.deepcopy(base), (x, y),
                                                 fl.setup(fl.Momentum(0.1), base))
    assert value == pytest.approx(l0) and g.weight.shape == (2, 3)
