"""Optimisers.jl's own tests translated to fluxml (test/runtests.jl "Features", test/rules.jl,
test/destructure.jl, test/trainables.jl). Each test names the testset it comes from.

Translation: Optimisers.jl's ``update`` returns new arrays, fluxml's trains in place (as its
``update!``); NamedTuples are dicts; ``nothing`` is ``None``. Deliberate differences, each
documented: a tied array's gradient is the total at every address (fl.gradient's), so
``update`` takes one, where Optimisers.jl adds Zygote's partial ones; ``adjust`` refuses a
name no rule has (Optimisers.jl ignores it); fluxml's gradient of a complex parameter is the
conjugate of Zygote's.
"""

import numpy as np
import pytest

import fluxml as fl

G = np.array([1.0, 10, 100])

RULES = [  # rules.jl's RULES: every rule at its defaults, chains, non-default settings
    fl.Descent(), fl.Adam(), fl.Momentum(), fl.Nesterov(), fl.Rprop(), fl.RMSProp(),
    fl.AdaGrad(), fl.AdaMax(), fl.AdaDelta(), fl.AMSGrad(), fl.NAdam(), fl.AdamW(), fl.RAdam(),
    fl.OAdam(), fl.AdaBelief(), fl.Lion(), fl.MixedPrecision(np.float64, fl.Adam()),
    fl.OptimiserChain(fl.SignDecay(0.001), fl.Adam(0.001)),
    fl.OptimiserChain(fl.ClipNorm(), fl.Adam(0.001)),
    fl.OptimiserChain(fl.ClipGrad(0.5), fl.Momentum()),
    fl.OptimiserChain(fl.WeightDecay(), fl.OAdam(), fl.ClipGrad(1)),
    fl.RMSProp(centred=True), fl.AdamW(couple=False),
]


def _step(rule, x, dx):
    x = np.array(x, float)
    fl.update(fl.setup(rule, x), x, np.array(dx, float))
    return x


def test_very_basics():
    """runtests.jl "very basics": Descent of an integer gradient; Momentum's state."""
    m = [np.array([1.0, 2.0])]
    fl.update(fl.setup(fl.Descent(0.1), m), m, [np.array([25, 33])])
    np.testing.assert_allclose(m[0], [1 - 2.5, 2 - 3.3])
    m = [np.array([1.0, 2.0])]
    state = fl.setup(fl.Momentum(0.1), m)
    fl.update(state, m, [np.array([25.0, 33.0])])
    np.testing.assert_allclose(state[0].state, [2.5, 3.3])


def test_gradient_clipping():
    """runtests.jl "gradient clipping": ClipGrad clamps each entry; ClipNorm scales to the
    norm (2 and 1), refuses a NaN gradient, and with throw=False lets it through."""
    m = {"alpha": ([np.array([0.0])], np.sin), "gamma": np.random.default_rng(0).random(3)}
    before = m["gamma"].copy()
    fl.update(fl.setup(fl.ClipGrad(13), m), m, {"alpha": None, "gamma": G})
    np.testing.assert_allclose(before - m["gamma"], [1, 10, 13])
    for rule, norm in ((fl.ClipNorm(10), 2), (fl.ClipNorm(5, 1, throw=False), 1)):
        m = {"alpha": ([np.array([0.0])], np.sin), "gamma": np.zeros(3)}
        state = fl.setup(rule, m)
        fl.update(state, m, {"alpha": ([np.array([0.1])], None), "gamma": G})
        np.testing.assert_allclose(m["alpha"][0][0], [-0.1])
        assert np.linalg.norm(m["gamma"], norm) == pytest.approx(rule.omega)
    state = fl.setup(fl.ClipNorm(10), m)
    with pytest.raises(FloatingPointError, match="NaN or Inf"):
        fl.update(state, m, {"alpha": None, "gamma": np.array([1, 10, np.nan])})
    state = fl.setup(fl.ClipNorm(5, 1, throw=False), m)
    with np.errstate(invalid="ignore"):
        fl.update(state, m, {"alpha": None, "gamma": np.array([1, 10, np.inf])})
    assert np.isnan(m["gamma"][2])


def test_dicts():
    """runtests.jl "Dict support": a dict (a number in it untrained) and a nested one."""
    d = {"a": np.array([1.0, 2.0]), "b": np.array([3.0, 4.0]), "c": 1}
    state = fl.setup(fl.AdamW(0.1), d)
    assert isinstance(state["a"], fl.Leaf) and isinstance(state["b"], fl.Leaf)
    fl.update(state, d, fl.gradient(lambda d: np.sum(d["a"] ** 2), d)[0])
    np.testing.assert_allclose(d["a"], [0.9, 1.9])
    np.testing.assert_array_equal(d["b"], [3, 4])
    assert d["c"] == 1
    d = {1: np.array([1.0, 2.0]), 2: {"a": {"c": np.array([3.0, 4.0])}, "b": 1}}
    state = fl.setup(fl.AdamW(0.1), d)
    assert isinstance(state[2]["a"]["c"], fl.Leaf)
    fl.update(state, d, fl.gradient(lambda d: np.sum(d[2]["a"]["c"]), d)[0])
    np.testing.assert_allclose(d[2]["a"]["c"], [2.9, 3.9])
    np.testing.assert_array_equal(d[1], [1, 2])


def test_chains():
    """runtests.jl "OptimiserChain": weight and sign decay, clipping, chains of them (nested,
    reversed: order matters), a chain of one, the empty chain (Descent(1)), L1 decay by the
    sign."""
    x, dx = [1, 10, 100.0], [1, 2, 3.0]
    np.testing.assert_allclose(_step(fl.WeightDecay(0.1), x, dx), [1 - .1 - 1, 10 - 1 - 2,
                                                                   100 - 10 - 3])
    np.testing.assert_allclose(_step(fl.SignDecay(0.1), x, dx), [1 - .1 - 1, 10 - .1 - 2,
                                                                 100 - .1 - 3])
    np.testing.assert_allclose(_step(fl.ClipGrad(2), x, dx), [0, 8, 98])
    want = [1 - 0.1 - 1, 10 - 1 - 2, 100 - 10 - 2]
    chain = fl.OptimiserChain(fl.ClipGrad(2), fl.WeightDecay(0.1))
    np.testing.assert_allclose(_step(chain, x, dx), want)
    np.testing.assert_allclose(_step(fl.OptimiserChain(chain), x, dx), want)
    # reversed: the decay clipped too ([1.1, 3, 13] -> [1.1, 2, 2]). Optimisers.jl asserts
    # != [1 - 0.1 - 1, 10 - 2, 100 - 2], which holds by a rounding only: the values agree
    reverse = _step(fl.OptimiserChain(fl.WeightDecay(0.1), fl.ClipGrad(2)), x, dx)
    np.testing.assert_allclose(reverse, [1 - 1.1, 10 - 2, 100 - 2])
    np.testing.assert_allclose(_step(fl.OptimiserChain(fl.Descent(0.1)), x, dx), [0.9, 9.8, 99.7])
    np.testing.assert_allclose(_step(fl.OptimiserChain(), x, dx), [0, 8, 97])
    np.testing.assert_allclose(_step(fl.SignDecay(0.1), [1, -10, 100.0], [3, 2, -1.0]),
                               [1 - 0.1 - 3, -10 + 0.1 - 2, 100 - 0.1 + 1])


def test_eltype_preservation():
    """runtests.jl "eltype preservation" and rules.jl "element types": every rule keeps
    float16, float32 and float64 parameters in their dtypes, Rprop its state too."""
    for rule in RULES:
        m = (np.float32([1, 2]), np.float64([3, 4]), np.float16([5, 6]))
        fl.update(fl.setup(rule, m), m, tuple(a.copy() for a in m))
        assert [a.dtype for a in m] == [np.float32, np.float64, np.float16], rule
    m = [np.float16([1, 2]), np.float32([3, 4])]
    state = fl.setup(fl.Rprop(0.1), m)
    fl.update(state, m, [np.array([1.0, 2.0]), np.array([3.0, 4.0])])
    assert [a.dtype for a in m] == [np.float16, np.float32]
    assert [s.dtype for s in state[0].state] == [np.float16] * 2
    assert [s.dtype for s in state[1].state] == [np.float32] * 2


def _gamma_model():
    return {"alpha": ([np.array([0.0])], np.sin), "gamma": np.float32([4, 3, 2])}


def test_adjust():
    """runtests.jl "adjusting parameters" (fluxml's adjust is in place, as adjust!): the
    learning rate alone or with others, the state kept, inside chains and MixedPrecision."""
    m = _gamma_model()
    state = fl.setup(fl.Momentum(0.1, 0.9), m)
    fl.update(state, m, {"alpha": None, "gamma": G})
    np.testing.assert_allclose(np.float32([4, 3, 2]) - m["gamma"], [0.1, 1, 10], rtol=1e-6)
    np.testing.assert_allclose(state["gamma"].state, [0.1, 1, 10])
    fl.adjust(state, 0.2)
    assert (state["gamma"].rule.eta, state["gamma"].rule.rho) == (0.2, 0.9)
    assert state["alpha"][0][0].rule.eta == 0.2
    np.testing.assert_allclose(state["gamma"].state, [0.1, 1, 10])
    fl.adjust(state, eta=0.3, rho=0.7)
    assert (state["gamma"].rule.eta, state["alpha"][0][0].rule.rho) == (0.3, 0.7)
    with pytest.raises(ValueError, match="zeta"):  # (Optimisers.jl ignores the name)
        fl.adjust(state, zeta="this does nothing")
    state = fl.setup(fl.OptimiserChain(fl.ClipGrad(2), fl.Adam()), m)
    fl.update(state, m, {"alpha": None, "gamma": G})
    np.testing.assert_allclose(state["gamma"].state[1].m, [0.1, 0.2, 0.2])
    fl.adjust(state, 0.2)
    assert state["gamma"].rule.rules[0].delta == 2 and state["gamma"].rule.rules[1].eta == 0.2
    fl.adjust(state, delta=2.5)
    assert state["gamma"].rule.rules[0].delta == 2.5 and state["gamma"].rule.rules[1].eta == 0.2
    np.testing.assert_allclose(state["gamma"].state[1].m, [0.1, 0.2, 0.2])
    state = fl.setup(fl.MixedPrecision(fl.Momentum(0.1, 0.9)), m)
    fl.update(state, m, {"alpha": None, "gamma": G})
    np.testing.assert_allclose(state["gamma"].state.state, [0.1, 1, 10])
    fl.adjust(state, eta=0.3, rho=0.7)
    assert (state["gamma"].rule.rule.eta, state["gamma"].rule.rule.rho) == (0.3, 0.7)


def test_freeze_thaw():
    """runtests.jl "freeze/thaw": a frozen part is not trained, thawed it is (at the adjusted
    rate); the model itself is refused."""
    m = {"x": np.array([1.0, 2.0]), "y": (np.array([3.0, 4.0]), np.sin)}
    grads = {"x": np.array([1.0, 10]), "y": (np.array([100.0, 1000]), None)}
    state = fl.setup(fl.Descent(0.1), m)
    fl.freeze(state["y"])
    fl.update(state, m, grads)
    np.testing.assert_allclose(m["x"], [0.9, 1.0])
    np.testing.assert_array_equal(m["y"][0], [3, 4])
    fl.adjust(state, 0.2)
    fl.thaw(state)
    fl.update(state, m, grads)
    np.testing.assert_allclose(m["y"][0], [-17, -196])
    np.testing.assert_allclose(m["x"], [0.7, -1.0])
    for f in (fl.freeze, fl.thaw):
        with pytest.raises(TypeError, match="expected an optimiser state"):
            f(m)


def test_keywords():
    """runtests.jl "keyword arguments"."""
    assert fl.Nesterov(rho=0.8, eta=0.1) == fl.Nesterov(0.1, 0.8)
    assert fl.AdamW(lambd=0.3, eta=0.1) == fl.AdamW(0.1, (0.9, 0.999), 0.3, 1e-8)


def test_tied_weights():
    """runtests.jl "tied weights": "tuples" (a tie kept, the gradient of one address or the
    other; fl.gradient gives the total at each), "named" (ties through dicts and tuples)."""
    def tuples():
        twice = np.array([1, 2.0])
        return (twice, (twice.copy(), twice))
    m = tuples()
    g = fl.gradient(lambda m: np.sum(3 * m[0]) + np.sum(10 * m[1][0]) + np.sum(7 * m[1][1]), m)[0]
    np.testing.assert_array_equal(g[0], g[1][1])  # the total, 3 + 7, at both addresses
    fl.update(fl.setup(fl.Momentum(0.1), m), m, g)
    np.testing.assert_allclose(m[0], m[1][0])  # (10 each)
    assert m[1][1] is m[0]
    m = tuples()
    fl.update(fl.setup(fl.Momentum(0.1), m), m, (np.array([3.0, 3]), None))
    np.testing.assert_allclose(m[0], [1 - 0.3, 2 - 0.3])
    m = tuples()
    fl.update(fl.setup(fl.Momentum(0.1), m), m, (None, (np.array([5.0, 5]), np.array([7.0, 7]))))
    np.testing.assert_allclose(m[0], [1 - 0.7, 2 - 0.7])
    thrice = np.float32([3])
    model = {"a": {"x": thrice, "y": np.float32([4, 5, 6]), "z": True},
             "b": ({"m": (0, 1, thrice)},), "c": {"x": np.float32([7, 8]), "y": thrice}}
    state = fl.setup(fl.Momentum(0.1, 0.9), model)

    def loss(m):
        return 2 * sum(np.sum(a ** 2) for a in (m["a"]["x"], m["a"]["y"], m["c"]["x"],
                                                 m["c"]["y"]))
    fl.update(state, model, fl.gradient(loss, model)[0])
    assert model["a"]["x"] is model["b"][0]["m"][2] is model["c"]["y"]
    np.testing.assert_allclose(model["a"]["x"], [3 - 0.1 * 24], rtol=1e-6)  # 2 x 2 x 2 x 3


def test_transposed_tie_and_hand_shared_leaf_are_refused():
    """runtests.jl "transpose" and "artificial": Optimisers.jl ties an array to its
    transpose, and a Leaf shared by hand between two arrays; fluxml refuses both by name
    (tie with the very array, transposed where used)."""
    mat = np.array([[1, 2, 3], [4, 5, 6.0]])
    with pytest.raises(ValueError, match="views of the same memory"):
        fl.setup(fl.Descent(0.1), {"m": mat, "f": np.log, "t": mat.T})
    model = {k: np.array([1, 2.0]) for k in "abcd"}
    auto = fl.setup(fl.Momentum(0.1), model)
    assert auto["a"] is not auto["b"]
    trick = {"a": auto["a"], "b": auto["a"], "c": auto["c"], "d": auto["d"]}
    with pytest.raises(ValueError, match="share a Leaf"):
        fl.update(trick, model, {k: np.ones(2) for k in "abcd"})


def test_mutable_containers():
    """runtests.jl "mutable containers": one object at two addresses keeps the tie."""
    class MutTwo:
        def __init__(self, x, y):
            self.x, self.y = x, y
    tmp = MutTwo(np.array([1.0]), np.array([2.0]))
    model = {"a": tmp, "b": tmp, "c": MutTwo(tmp.x, tmp.y)}
    state = fl.setup(fl.Momentum(), model)
    assert state["a"].x is state["b"].x is state["c"].x
    grads = fl.gradient(lambda m: np.sum(m["a"].x) + 10 * np.sum(m["b"].y), model)[0]
    fl.update(state, model, grads)
    assert model["a"] is model["b"] and model["a"] is not model["c"]
    np.testing.assert_allclose([model["a"].x[0], model["c"].y[0]], [1 - 0.01, 2 - 0.1])


def test_gradient_types():
    """rules.jl "gradient types": a None gradient leaves its part alone, an integer or
    boolean gradient steps, for every rule."""
    for rule in RULES:
        x = {"a": np.ones((2, 2)), "b": np.ones((2, 2)).T}
        fl.update(fl.setup(rule, x), x, {"a": np.array([[1, 2], [3, 4]]), "b": None})
        assert not np.array_equal(x["a"], np.ones((2, 2))), rule
        np.testing.assert_array_equal(x["b"], 1)
        x = {"a": np.ones((2, 2)), "b": np.ones((2, 2)).T}
        fl.update(fl.setup(rule, x), x, {"a": np.full((2, 2), 2.0), "b": np.full((2, 2), True)})
        assert not np.array_equal(x["a"], 1) and not np.array_equal(x["b"], 1), rule


@pytest.mark.parametrize("rule", [
    fl.Adam(1e-2), fl.RMSProp(1e-2), fl.RAdam(1e-2), fl.OAdam(1e-2), fl.AdaGrad(1e-2),
    fl.AdaDelta(0.9, 1e-5), fl.NAdam(1e-2), fl.AdaBelief(1e-2), fl.Descent(1e-2),
    fl.Momentum(1e-2), fl.Nesterov(1e-2), fl.AdamW(1e-2)], ids=lambda r: type(r).__name__)
def test_complex_parameter(rule):
    """rules.jl "with complex numbers: Flux#1776": a complex weight learning conj(x): the
    loss falls at every step (Momentum and Nesterov flat at the end) and below 1.9."""
    model = {"w": np.zeros(1, complex)}
    x = np.ones((1, 1)) + 1j * np.ones((1, 1))

    def loss(m):
        return np.sum(np.abs(m["w"] * x - np.conj(x)) ** 2)
    assert loss(model) == pytest.approx(2.0)
    state, last = fl.setup(rule, model), np.inf
    for i in range(10):
        fl.update(state, model, fl.gradient(loss, model)[0])
        if isinstance(rule, (fl.Momentum, fl.Nesterov)) and i > 7:
            continue
        assert loss(model) < last
        last = loss(model)
    assert loss(model) < 1.9


def test_accum_grad():
    """rules.jl "AccumGrad": nothing moves for two steps, the third steps by the mean of the
    three gradients, the fourth starts collecting again."""
    rng = np.random.default_rng(0)
    x0 = rng.random(5)
    x = x0.copy()
    state = fl.setup(fl.OptimiserChain(fl.AccumGrad(3), fl.Descent(0.01)), x)
    gs = [rng.random(5) for _ in range(4)]
    for g in gs[:2]:
        fl.update(state, x, g)
        np.testing.assert_array_equal(x, x0)
    fl.update(state, x, gs[2])
    np.testing.assert_allclose(x, x0 - 0.01 * (gs[0] + gs[1] + gs[2]) / 3)
    x3 = x.copy()
    fl.update(state, x, gs[3])
    np.testing.assert_array_equal(x, x3)


def test_float16_steps_below_resolution():
    """rules.jl "Float16 epsilon" (issue 167): Adam(1e-4) on float16 parameters moves each by
    1e-4, under float16's spacing near 0.5 (4.9e-4): the parameters stay, finite.
    (Optimisers.jl's test pins [1.835, -0.886, 0.5493], its epsilon's artefact.)"""
    x = np.float16([0.579, -0.729, 0.5493])
    fl.update(fl.setup(fl.Adam(1e-4), x), x, np.float16([-0.001497, 0.0001875, -0.013176]))
    np.testing.assert_array_equal(x, np.float16([0.579, -0.729, 0.5493]))


def test_mixed_precision():
    """rules.jl "MixedPrecision": float32 copy and state for float16, the parameter the
    copy rounded, float64 on request, adjust reaching the inner rule, and MixedPrecision
    refused inside a chain (it wraps one): inside, the rules after it changed the parameter
    until its next step put the copy back, silently (weight decay came and went)."""
    rng = np.random.default_rng(0)
    x = rng.random(2).astype(np.float16)
    state = fl.setup(fl.MixedPrecision(fl.Adam(1e-3)), x)
    assert state.state.master.dtype == state.state.state.m.dtype == np.float32
    g, x0 = rng.random(2).astype(np.float16), x.copy()
    fl.update(state, x, g)
    np.testing.assert_array_equal(x, state.state.master.astype(np.float16))
    np.testing.assert_allclose(x, x0 - 1e-3, rtol=1e-3)
    state = fl.setup(fl.MixedPrecision(np.float64, fl.Adam(1e-3)), x)
    assert state.state.master.dtype == state.state.state.m.dtype == np.float64
    assert fl.MixedPrecision(np.float64, fl.Adam(1e-3)).adjust(eta=2e-3).rule.eta == 2e-3
    for chain in (lambda: fl.OptimiserChain(fl.MixedPrecision(fl.Adam())),
                  lambda: fl.OptimiserChain(fl.MixedPrecision(fl.Descent(0.1)),
                                            fl.WeightDecay(0.5))):
        with pytest.raises(TypeError, match="MixedPrecision must wrap the whole chain"):
            chain()
    x = np.ones(1, np.float32)
    state = fl.setup(fl.MixedPrecision(fl.OptimiserChain(fl.Descent(0.1),
                                                         fl.WeightDecay(0.5))), x)
    for want in (0.5, 0.25, 0.125):  # decay by half each step, kept
        fl.update(state, x, np.zeros(1, np.float32))
        np.testing.assert_allclose(x, [want])


# --- test/destructure.jl and test/trainables.jl ------------------------------------------------

def _models():
    """destructure.jl's and trainables.jl's models m1 ... m9 (m7, m8: Functors' custom
    structs, left out), NamedTuples as dicts."""
    m1 = np.arange(1, 4.0)
    m3 = {"x": m1, "y": np.sin, "z": np.arange(4, 7.0)}
    m4 = {"x": m1, "y": m1, "z": np.arange(4, 7.0)}  # tied
    mat = np.float32([[4, 5], [6, 7]])  # Julia's Float32[4 6; 5 7], whose vec is 4:7
    return {"m1": m1, "m2": (np.arange(1, 4.0), np.arange(4, 7.0)), "m3": m3, "m4": m4,
            "m5": {"a": (m3, True), "b": (m1, False), "c": (m4, True)},
            "m6": {"a": m1, "b": np.array([4.0 + 1j]), "c": m1},
            "m9": {"a": m1, "b": mat, "c": [mat, m1]}}


def test_destructure_flatten_and_rebuild():
    """destructure.jl "flatten & rebuild": the flat vectors, rebuilt models with ties kept
    (m4, m5, m9), complex promotion and the real part back (m6), float32 kept (m9), a vector
    of the wrong length refused."""
    m = _models()
    want = {"m1": [1, 2, 3], "m2": range(1, 7), "m3": range(1, 7), "m4": range(1, 7),
            "m5": [1, 2, 3, 4, 5, 6, 4, 5, 6], "m6": [1, 2, 3, 4 + 1j], "m9": range(1, 8)}
    for name, flat in want.items():
        np.testing.assert_array_equal(fl.destructure(m[name])[0], list(flat), err_msg=name)
    re = {name: fl.destructure(model)[1] for name, model in m.items()}
    np.testing.assert_array_equal(re["m1"](np.arange(7, 10.0)), [7, 8, 9])
    a, b = re["m2"](np.arange(4, 10.0))
    np.testing.assert_array_equal(a, [4, 5, 6]) and np.testing.assert_array_equal(b, [7, 8, 9])
    m3 = re["m3"](np.arange(4, 10.0))
    assert m3["y"] is np.sin and m3["z"].tolist() == [7, 8, 9]
    m4 = re["m4"](np.arange(4, 10.0))
    assert m4["x"] is m4["y"] and m4["x"].tolist() == [4, 5, 6] and m4["z"].tolist() == [7, 8, 9]
    m5 = re["m5"](np.arange(9, 0, -1.0))
    assert m5["a"][0]["x"] is m5["b"][0] and m5["b"][1] is False
    m6 = re["m6"](np.arange(4, 8) + np.arange(1, 5) * 1j)
    assert m6["a"].dtype == np.float64 and m6["a"] is m6["c"]
    np.testing.assert_array_equal(m6["a"], [4, 5, 6])
    np.testing.assert_array_equal(m6["b"], [7 + 4j])
    m9 = re["m9"](np.arange(10, 80, 10.0))
    assert m9["b"] is m9["c"][0] and m9["b"].dtype == np.float32
    for bad in (np.ones(5), np.ones(7)):
        with pytest.raises(ValueError, match="expected a flat vector of length 6"):
            re["m3"](bad)


def test_destructure_gradients():
    """destructure.jl "gradient of flatten" (ties: the total at each address, fluxml's
    convention), its "second derivative", "gradient of rebuild" (with the second
    derivatives Optimisers.jl marks broken) and "Flux issue 1826" (ties through re)."""
    m = _models()

    def grad(f, x):
        return fl.gradient(f, x)[0]

    def flat(model):
        return fl.destructure(model)[0]
    np.testing.assert_array_equal(grad(lambda x: flat(x)[0], m["m1"]), [1, 0, 0])
    g = grad(lambda x: flat(x)[1], m["m2"])
    assert g[0].tolist() == [0, 1, 0] and g[1].tolist() == [0, 0, 0]
    g = grad(lambda x: flat(x)[0], m["m3"])
    assert g["x"].tolist() == [1, 0, 0] and g["y"] is None and g["z"].tolist() == [0, 0, 0]
    g = grad(lambda x: flat(x)[1], m["m4"])
    assert g["x"].tolist() == g["y"].tolist() == [0, 1, 0]
    g = grad(lambda x: flat(x)[2], m["m5"])
    assert g["a"][0]["x"].tolist() == [0, 0, 1] and g["a"][1] is None
    g = grad(lambda x: np.sum(np.sqrt(flat(x))), m["m9"])
    np.testing.assert_allclose(g["b"], 0.5 / np.sqrt(m["m9"]["b"]))
    np.testing.assert_allclose(grad(lambda v: np.sum(grad(lambda x: np.sum(flat(x) ** 2),
                                                         (v, np.array([4, 5, 6.0])))[0] ** 2),
                                    np.arange(1, 4.0)), [8, 16, 24])
    np.testing.assert_allclose(grad(lambda v: np.sum(grad(lambda x: np.sum(flat(x)) ** 3,
                                                         (v, np.array([4, 5, 6.0])))[0]),
                                    np.arange(1, 4.0)), [378] * 3)
    re4 = fl.destructure(m["m4"])[1]
    np.testing.assert_array_equal(grad(lambda v: re4(v)["x"][0] + 2 * re4(v)["y"][1]
                                       + 3 * re4(v)["z"][2], np.ones(6)), [1, 2, 0, 0, 0, 3])
    re2, re3 = fl.destructure(m["m2"])[1], fl.destructure(m["m3"])[1]
    np.testing.assert_allclose(grad(lambda y: np.sum(grad(lambda x: np.sum(re2(x)[0] ** 2),
                                                          y) ** 2), np.arange(1, 7.0)),
                               [8, 16, 24, 0, 0, 0])
    np.testing.assert_allclose(grad(lambda y: np.sum(grad(lambda x: np.sum(re3(x)["z"] ** 2),
                                                          y) ** 2), np.arange(1, 7.0)),
                               [0, 0, 0, 32, 40, 48])
    v, re = fl.destructure({"x": np.array([1, 2.0]), "y": np.array([3, 4, 5.0])})
    np.testing.assert_array_equal(grad(lambda w: 5 * np.sum(re(w)["x"]) + 7 * np.sum(re(w)["y"]),
                                       0 * v), [5, 5, 7, 7, 7])
    np.testing.assert_array_equal(grad(lambda w: np.sum(re(w)["x"]), 0 * v), [1, 1, 0, 0, 0])
    shared = np.array([7, 7.0])
    v, re = fl.destructure({"x": shared, "y": np.array([3.0, 4.0]), "z": shared})
    np.testing.assert_array_equal(v, [7, 7, 3, 4])
    rebuilt = re(np.array([1, 10, 100, 1000.0]))
    assert rebuilt["x"] is rebuilt["z"] and rebuilt["y"].tolist() == [100, 1000]
    np.testing.assert_array_equal(grad(lambda w: 3 * np.sum(re(w)["x"]) + 13 * np.sum(re(w)["z"]),
                                       0 * v), [16, 16, 0, 0])
    np.testing.assert_array_equal(grad(lambda w: 4 * (np.sum(re(w)["x"]) + np.sum(re(w)["y"]))
                                       + 13 * np.sum(re(w)["z"]), 0 * v), [17, 17, 4, 4])


def test_destructure_pullback_and_empty():
    """destructure.jl "DiffEqFlux issue 699" (re's pullback: float32 kept, None parts give
    zeros or None) and "empty, issue 67" (no parameters: an empty vector that rebuilds the
    model; float16 not promoted)."""
    v, re = fl.destructure({"x": np.float32([1, 2]), "y": np.float32([3, 4, 5])})
    back = fl.pullback(re, np.ones(5, np.float32))[1]
    got = back({"x": None, "y": np.array([10, 20, 30.0])})[0]
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, [0, 0, 10, 20, 30])
    np.testing.assert_allclose(back({"x": np.array([1.2, 3.4]), "y": np.float32([5, 6, 7])})[0],
                               [1.2, 3.4, 5, 6, 7], rtol=1e-6)
    assert back({"x": None, "y": None}) == (None,)
    m0 = (None, "missing", len)
    v0, re0 = fl.destructure(m0)
    assert v0.shape == (0,) and re0(np.zeros(0, np.float32)) == m0
    with pytest.raises(ValueError, match="length 0"):
        re0(np.ones(1))
    v01 = fl.destructure([{"x": None, "y": 0}, {"x": np.float16([1, 2]), "y": np.float16([3])}])[0]
    assert v01.dtype == np.float16 and v01.tolist() == [1, 2, 3]
    assert fl.gradient(lambda x: np.sum(fl.destructure(x)[0]), ("a", "beta"))[0] == (None, None)


def test_trainables():
    """trainables.jl "trainables", "gradient" (the loss over trainables, ties getting the
    shared gradient), "dict", "second order derivatives" and "trainables(x, path=true)"."""
    m = _models()
    want = {"m1": [[1, 2, 3]], "m2": [[1, 2, 3], [4, 5, 6]], "m3": [[1, 2, 3], [4, 5, 6]],
            "m4": [[1, 2, 3], [4, 5, 6]], "m5": [[1, 2, 3], [4, 5, 6], [4, 5, 6]],
            "m6": [[1, 2, 3], [4 + 1j]], "m9": [[1, 2, 3], [[4, 5], [6, 7]]]}
    for name, arrays in want.items():
        assert [a.tolist() for a in fl.trainables(m[name])] == arrays, name

    def loss(model):
        return sum(np.sum(np.abs(p) ** 2) for p in fl.trainables(model))
    g = fl.gradient(loss, m["m4"])[0]
    assert g["x"].tolist() == g["y"].tolist() == [2, 4, 6] and g["z"].tolist() == [8, 10, 12]
    g = fl.gradient(loss, m["m5"])[0]
    assert g["a"][1] is None and g["b"][1] is None and g["a"][0]["y"] is None
    assert g["c"][0]["y"].tolist() == [2, 4, 6]
    g = fl.gradient(loss, m["m9"])[0]
    assert g["b"].dtype == np.float32 and g["c"][0].tolist() == [[8, 10], [12, 14]]
    d = {"a": np.random.default_rng(0).random(2), "b": np.ones(2)}
    g = fl.gradient(lambda d: np.sum(fl.trainables(d)[0] ** 2) / 2 + np.sum(fl.trainables(d)[1]),
                    d)[0]
    np.testing.assert_allclose(g["a"], d["a"])
    np.testing.assert_array_equal(g["b"], [1, 1])  # (broken in Optimisers.jl)

    class DenseLayer:
        def __init__(self, w, b):
            self.w, self.b = w, b
    layer = DenseLayer(np.array([[1.0, 2.0], [3.0, 4.0]]), np.zeros(2))
    g = fl.gradient(lambda m: loss(fl.gradient(loss, m)[0]), layer)[0]
    np.testing.assert_array_equal(g.w, [[8, 16], [24, 32]])
    np.testing.assert_array_equal(g.b, [0, 0])
    paths = fl.trainables(m["m4"], path=True)
    assert [(p, a.tolist()) for p, a in paths] == [("x", [1, 2, 3]), ("z", [4, 5, 6])]
    g = fl.gradient(lambda x: np.sum(fl.trainables(x, path=True)[0][1] ** 2), m["m4"])[0]
    assert g["x"].tolist() == g["y"].tolist() == [2, 4, 6] and g["z"] is None


class _TwoThirds:
    """runtests.jl's TwoThirds: three fields, only ``a`` trainable (Functors' trainable is
    fluxml's ``nontrainable`` list)."""

    nontrainable = ("b", "c")

    def __init__(self, a, b, c):
        self.a, self.b, self.c = a, b, c


def test_trainable_subset():
    """runtests.jl "trainable subset" and destructure.jl's m7: only ``a`` is trained,
    flattened and rebuilt; the others stay as they were."""
    m = _TwoThirds(np.float32([1, 2]), np.float32([3, 4]), np.float32([5, 6]))
    state = fl.setup(fl.Momentum(0.1, 0.9), m)
    fl.update(state, m, fl.gradient(lambda m: np.sum(m.a ** 2) + 100 * np.sum(m.b ** 2), m)[0])
    np.testing.assert_allclose(m.a, [0.8, 1.6])
    np.testing.assert_array_equal(m.b, [3, 4])
    np.testing.assert_array_equal(m.c, [5, 6])
    m7 = _TwoThirds((np.sin, np.arange(1, 4.0)), (np.cos, np.arange(4, 7.0)),
                    (np.tan, np.arange(7, 10.0)))
    flat, re = fl.destructure(m7)
    np.testing.assert_array_equal(flat, [1, 2, 3])
    r = re(np.array([10.0, 20, 30]))
    assert r.a[0] is np.sin and r.a[1].tolist() == [10, 20, 30]
    assert r.b[1].tolist() == [4, 5, 6] and r.c[1].tolist() == [7, 8, 9]
    np.testing.assert_array_equal(fl.gradient(lambda v: re(v).a[1][2], np.ones(3))[0], [0, 0, 1])
    assert fl.gradient(lambda v: re(v).b[1][1], np.ones(3))[0] is None  # (zeros there)
    assert [p.tolist() for p in fl.trainables(m7)] == [[1, 2, 3]]
    with pytest.raises(ValueError, match="expected a flat vector of length 3"):
        re(np.ones(4))


def test_rule_settings_checked():
    """interface.jl "@def": a rule's settings are checked when made and when adjusted (a
    complex or text learning rate, one number for a pair of decay rates)."""
    for make in (lambda: fl.Adam(0.1 + 1j), lambda: fl.Adam("0.1"), lambda: fl.Adam(0.1, 0.9),
                 lambda: fl.Adam(beta=(0.9, 0.99j))):
        with pytest.raises(ValueError, match="Adam: "):
            make()
    state = fl.setup(fl.Adam(), np.ones(2))
    with pytest.raises(ValueError, match="beta must be two numbers"):
        fl.adjust(state, beta=0.9)
