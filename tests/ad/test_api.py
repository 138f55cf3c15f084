"""The public transforms: gradient, withgradient, pullback, jvp, jacobian, hessian."""

import dataclasses
from collections import namedtuple

import numpy as np
import pytest

import fluxml as fl
from fluxml.testing import check_grads

rng = np.random.default_rng(0)


def loss(x, w, b):
    return np.sum(np.tanh(x * w + b))


def loss_grads(x, w, b):
    d = 1 - np.tanh(x * w + b) ** 2
    return d * w, d * x, d


def test_gradient_matches_calculus():
    x, w, b = rng.standard_normal((3, 5))
    for got, want in zip(fl.gradient(loss, x, w, b), loss_grads(x, w, b)):
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_withgradient_returns_value_and_gradient():
    x = np.array([1.0, 2.0])
    value, (g,) = fl.withgradient(lambda x: np.sum(x**2), x)
    assert value == 5.0
    np.testing.assert_allclose(g, 2 * x)


def test_withgradient_of_a_loss_with_aux_values():
    """Zygote's withgradient: f may return (loss, aux ...), a tuple or namedtuple; the
    gradient is the loss's, and the whole tuple comes back with the aux values plain (a
    recurrent network's state for the next batch). fluxml refused the tuple."""
    x, w = rng.standard_normal(3), rng.standard_normal(3)
    (value, y, n), (gx, gw) = fl.withgradient(
        lambda x, w: (np.sum(np.tanh(x * w)), x * w, 7), x, w)
    assert value == np.sum(np.tanh(x * w)) and n == 7
    assert type(y) is np.ndarray and np.array_equal(y, x * w)
    d = 1 - np.tanh(x * w) ** 2
    np.testing.assert_allclose(gx, d * w, rtol=1e-14)
    np.testing.assert_allclose(gw, d * x, rtol=1e-14)
    Out = namedtuple("Out", "loss accuracy")
    out, (g,) = fl.withgradient(lambda x: Out(np.sum(x**2), np.mean(x > 0)), x)
    assert type(out) is Out and out.loss == np.sum(x**2) and out.accuracy == np.mean(x > 0)
    np.testing.assert_allclose(g, 2 * x)
    # inside an outer gradient the aux values stay differentiable for it:
    # d/dx [sum(x y) + sum(d/dy sum(x y^2))] at y = 1 is 1 + 2
    def outer(x):
        (_, aux), (gy,) = fl.withgradient(lambda y: (np.sum(x * y**2), x * y), np.ones(3))
        return np.sum(aux) + np.sum(gy)
    np.testing.assert_allclose(fl.gradient(outer, x)[0], np.full(3, 3.0))
    # gradient itself still wants a scalar; a non-scalar first entry is refused
    with pytest.raises(fl.DifferentiationError, match="returned a tuple"):
        fl.gradient(lambda x: (np.sum(x), x), x)
    with pytest.raises(fl.DifferentiationError, match=r"returned shape \(3,\)"):
        fl.withgradient(lambda x: (x, np.sum(x)), x)


def test_withgradient_aux_compiled_carries_a_recurrent_state():
    """Truncated backpropagation through time as Flux writes it: the loss returns the LSTM's
    final state, which starts the next window; compiled, the same numbers as eagerly."""
    fl.seed(0)
    model = fl.f64(fl.LSTM(2, 3, return_state=True))
    twin = fl.fmap(np.copy, model)

    def loss(m, x, state):
        ys, state = m(x, state)
        return np.mean(ys**2), state

    @fl.compile
    def step(m, x, state):
        (value, state), (g, *_) = fl.withgradient(loss, m, x, state)
        m.cell.weight_ih -= 0.1 * g.cell.weight_ih
        return value, state

    state = twin_state = (np.zeros((2, 3)), np.zeros((2, 3)))
    for _ in range(3):
        x = rng.standard_normal((2, 4, 2))
        (value, state), (g, *_) = fl.withgradient(loss, model, x, state)
        model.cell.weight_ih -= 0.1 * g.cell.weight_ih
        assert all(type(s) is np.ndarray for s in state)
        compiled, twin_state = step(twin, x, twin_state)
        assert np.isclose(compiled, value, rtol=1e-13)
        for a, b in zip(twin_state, state):
            np.testing.assert_allclose(a, b, rtol=1e-13)
    # and the weights were stepped alike
    np.testing.assert_allclose(twin.cell.weight_ih, model.cell.weight_ih, rtol=1e-13)


def test_train_refuses_a_loss_with_aux_values():
    model = {"w": np.ones(2)}
    with pytest.raises(TypeError, match="train: the loss returned a tuple of 2; fl.train "
                                        "steps on a loss alone"):
        fl.train(lambda m: (np.sum(m["w"] ** 2), 1.0), model, [()],
                 fl.setup(fl.Descent(0.1), model), progress=False)
    assert np.array_equal(model["w"], np.ones(2))


def test_python_float_and_numpy_scalar_keep_their_types():
    g = fl.gradient(lambda a, b: a * a * b, 3.0, np.float32(2.0))
    assert type(g[0]) is float and g[0] == 12.0
    assert type(g[1]) is np.float32 and g[1] == 9.0


def test_float32_stays_float32():
    x = rng.standard_normal(4).astype(np.float32)
    w = rng.standard_normal(4).astype(np.float32)
    value, (gx, gw) = fl.withgradient(lambda x, w: np.sum(np.tanh(x * w)), x, w)
    assert value.dtype == np.float32
    assert gx.dtype == np.float32 and gw.dtype == np.float32


def test_integer_bool_and_unused_arguments_get_none():
    grads = fl.gradient(lambda x, n, flag, unused: np.sum(x) * n, np.ones(2), 3, True, 1.0)
    np.testing.assert_allclose(grads[0], [3.0, 3.0])
    assert grads[1] is None and grads[2] is None and grads[3] is None


def test_a_string_argument_is_refused_but_a_string_field_is_static():
    """fl.gradient(f, 'abc') returned (None,), silently: a string to differentiate is a
    mistake (a number not yet parsed, a setting in the wrong place). A string inside an
    object or a dict stays a static field, with None for its gradient."""
    with pytest.raises(TypeError, match=r"^gradient: argument 1 \(of 1\) is a str, 'abc', "
                                        r"which has no derivative"):
        fl.gradient(lambda s: 1.0, "abc")
    with pytest.raises(TypeError, match=r"^withgradient: argument 2 \(of 2\) is a bytes"):
        fl.withgradient(lambda x, s: x, 1.0, b"abc")
    with pytest.raises(TypeError, match=r"^pullback: argument 1 \(of 1\) is a str"):
        fl.pullback(lambda s: 1.0, "abc")
    with pytest.raises(TypeError, match=r"^jvp: argument 2 \(of 2\) is a str"):
        fl.jvp(lambda x, s: x, (1.0, "mean"), (1.0, None))
    assert fl.gradient(lambda d: d["x"] * 2, {"x": 1.0, "name": "w"}) == \
        ({"x": 2.0, "name": None},)
    # an array of strings as an argument too (numbers read as text), alone or beside a tree
    with pytest.raises(TypeError, match=r"^gradient: argument 1 \(of 1\) is an array of "
                                        r"strings \(<U1\)"):
        fl.gradient(lambda s: 1.0, np.array(["1", "2"]))
    with pytest.raises(TypeError, match=r"^gradient: argument 2 \(of 2\) is an array of "
                                        r"strings"):
        fl.gradient(lambda d, s: d["x"], {"x": 1.0}, np.array(["a"]))
    g = fl.gradient(lambda x, d: np.sum(x), np.ones(2), {"names": np.array(["a"])})
    assert g[1] == {"names": None}  # (inside a tree: a static part)


def test_zeros_for_none():
    grads = fl.gradient(lambda x, y: np.sum(x), np.ones(2), np.ones((2, 3)),
                        zeros_for_none=True)
    np.testing.assert_array_equal(grads[1], np.zeros((2, 3)))


def test_output_not_depending_on_input():
    assert fl.gradient(lambda x: 3.0, np.ones(2)) == (None,)


def test_gradients_are_fresh_writable_arrays():
    x, y = np.ones(3), np.ones(3)
    gx, gy = fl.gradient(lambda x, y: np.sum(x + y), x, y)
    assert gx is not gy
    gx += 1  # a broadcast view would refuse this
    np.testing.assert_array_equal(gy, np.ones(3))


Params = namedtuple("Params", ["w", "b"])


@dataclasses.dataclass
class Linear:
    w: np.ndarray
    b: np.ndarray
    name: str = "linear"

    def __call__(self, x):
        return x @ self.w.T + self.b


class Plain:
    def __init__(self):
        self.layers = [Linear(rng.standard_normal((3, 2)), np.zeros(3)),
                       Linear(rng.standard_normal((1, 3)), np.zeros(1))]
        self.act = np.tanh
        self.depth = 2

    def __call__(self, x):
        return self.layers[1](self.act(self.layers[0](x)))


def test_structural_gradient_mirrors_containers():
    p = {"a": [np.ones(2), (np.full(2, 2.0),)], "nt": Params(np.ones(2), 0.5)}
    f = lambda p: np.sum(p["a"][0] * p["a"][1][0]) + np.sum(p["nt"].w) * p["nt"].b
    g = fl.gradient(f, p)[0]
    np.testing.assert_allclose(g["a"][0], [2.0, 2.0])
    np.testing.assert_allclose(g["a"][1][0], [1.0, 1.0])
    assert isinstance(g["nt"], Params)
    np.testing.assert_allclose(g["nt"].w, [0.5, 0.5])
    assert g["nt"].b == 2.0


def test_structural_gradient_of_objects():
    model = Plain()
    x = rng.standard_normal((4, 2))
    g = fl.gradient(lambda m: np.sum(m(x) ** 2), model)[0]
    assert isinstance(g, Plain)
    assert g.layers[0].w.shape == (3, 2) and g.layers[0].name is None
    assert g.act is None and g.depth is None

    def by_hand(w0):
        m = Plain()
        m.layers = [Linear(w0, model.layers[0].b), model.layers[1]]
        return np.sum(m(x) ** 2)

    check_grads(by_hand, model.layers[0].w, order=1)
    w0 = model.layers[0].w
    e = np.zeros_like(w0)
    e[1, 0] = 1e-6
    fd = (by_hand(w0 + e) - by_hand(w0 - e)) / 2e-6
    np.testing.assert_allclose(g.layers[0].w[1, 0], fd, rtol=1e-6)


def test_tied_arrays_share_one_gradient():
    w = np.ones(2)
    g = fl.gradient(lambda p: np.sum(p[0] * p[1]), [w, w])[0]
    np.testing.assert_allclose(g[0], [2.0, 2.0])
    np.testing.assert_allclose(g[1], [2.0, 2.0])


def test_tied_tracers_share_one_gradient_at_higher_order_and_compiled():
    """Tied weights that are tracers (an outer differentiation, fl.compile) get the total
    gradient at each place, as tied NumPy arrays do: the inner gradient of a tied pair once
    gave each place its own part when traced, a silently wrong second derivative."""
    x = np.linspace(-1, 1, 12).reshape(4, 3)
    w = np.linspace(0.1, 1, 6).reshape(3, 2)

    def tied(w):
        return fl.gradient(lambda m: np.sum(np.tanh(x @ m["a"]) * (x @ m["b"])),
                           {"a": w, "b": w})[0]

    def inner(w):
        g = tied(w)
        g["a"] *= 2  # each place its own gradient to write into, as with arrays
        return np.sum(g["a"] ** 2) + np.sum(np.sin(g["b"]))

    check_grads(inner, w, order=2)
    compiled = fl.compile(tied)(w)
    for key in "ab":
        np.testing.assert_allclose(compiled[key], tied(w)[key], rtol=1e-12)


def test_control_flow_recursion_and_closures():
    def power(x, n):
        return 1.0 if n == 0 else x * power(x, n - 1)

    def f(x):
        total = 0.0
        for i in range(4):
            if i % 2 == 0:
                total = total + power(x, i)
            else:
                total = total - np.sin(x) * i
        return total

    check_grads(f, 0.7)
    scale = 3.0
    assert fl.gradient(lambda x: scale * x * x, 2.0) == (12.0,)


def test_pullback_can_be_called_twice():
    x = np.array([1.0, 2.0])
    y, back = fl.pullback(lambda x: np.tanh(x) * x, x)
    g1 = back(np.ones(2))[0]
    g2 = back(np.ones(2))[0]
    np.testing.assert_allclose(g1, g2)
    np.testing.assert_allclose(back(2 * np.ones(2))[0], 2 * g1)
    assert fl.vjp is fl.pullback


def test_pullback_of_a_tuple_output():
    x = np.array([1.0, 2.0])
    (a, b), back = fl.pullback(lambda x: (x * 2, np.sum(x**2)), x)
    np.testing.assert_allclose(back((np.ones(2), 1.0))[0], 2 + 2 * x)


def _as_list(y):
    return list(y) if isinstance(y, tuple) else [y]


@pytest.mark.parametrize("f", [lambda x: x, lambda x: x.reshape(2, 3),
                               lambda x: x.reshape(2, 3).T, lambda x: (x, x[::-1]),
                               lambda x: np.tanh(x) + x[::-1]],
                         ids=["identity", "reshape", "transpose", "two-outputs", "sum"])
def test_pullback_never_hands_back_the_cotangent(f):
    # back() does not copy the cotangent: a gradient that is the cotangent, or a view of it,
    # is copied on the way out, and the sweep never writes into it
    x = rng.standard_normal(6)
    y, back = fl.pullback(f, x)
    g = [rng.standard_normal(np.shape(a)) for a in _as_list(y)]
    kept = [a.copy() for a in g]
    cotangent = tuple(g) if isinstance(y, tuple) else g[0]
    dx, = back(cotangent)
    assert not any(np.shares_memory(dx, a) for a in g)
    dx[...] = 0.0  # the caller's gradient is theirs to write
    for a, b in zip(g, kept):
        np.testing.assert_array_equal(a, b)
    again, = back(cotangent)
    assert np.any(again != 0)


def test_pullback_output_of_normalise_is_not_copied_and_may_be_written():
    # the rules of normalise read its mean and variance, not its output: the output comes
    # back owned (no copy), and a write into it inside the function leaves the gradient right
    x = rng.standard_normal((4, 3))
    def f(x):
        y = fl.layernorm(x)
        y[0] = 0.0
        return y * 2.0
    def reference(x):
        y = fl.layernorm(x)
        return np.concatenate([0.0 * y[:1], y[1:]]) * 2.0
    g = rng.standard_normal((4, 3))
    _, back = fl.pullback(f, x)
    _, back_ref = fl.pullback(reference, x)
    np.testing.assert_allclose(back(g)[0], back_ref(g)[0], rtol=1e-12, atol=1e-14)
    y, back = fl.pullback(fl.layernorm, x)
    expected = back(g)[0]
    y[...] = 7.0  # the caller writes into the output: the tape does not read it
    np.testing.assert_allclose(back(g)[0], expected, rtol=1e-12)

def test_jvp_matches_pullback():
    x = rng.standard_normal(3)
    v = rng.standard_normal(3)
    f = lambda x: np.sin(x) * np.sum(x**2)
    _, t = fl.jvp(f, (x,), (v,))
    J = fl.jacobian(f, x, mode="rev")
    np.testing.assert_allclose(t, J @ v, rtol=1e-12)


def test_jvp_none_tangents_are_zero():
    # found by the forward-mode fuzzer: a gradient (None where there is no derivative, an
    # int field such as LayerNorm's size included) was refused as a tangent with "7 primal
    # leaves but 6 tangents", and so was (v, None)
    x, y = rng.standard_normal(3), rng.standard_normal(3)
    _, t = fl.jvp(lambda a, b: a * b, (x, y), (np.ones(3), None))
    np.testing.assert_array_equal(t, y)
    m = fl.Chain(fl.Dense(3, 4, np.tanh, dtype=np.float64), fl.LayerNorm(4, dtype=np.float64),
                 fl.Dense(4, 2, bias=False, dtype=np.float64))
    g = fl.gradient(lambda m: np.sum(m(x[None]) ** 2), m)[0]
    _, t = fl.jvp(lambda m: np.sum(m(x[None]) ** 2), (m,), (g,))
    squared = sum(np.sum(a ** 2) for a in fl.leaves(g))  # <gradient, gradient>
    np.testing.assert_allclose(t, squared, rtol=1e-12)
    with pytest.raises(ValueError, match="primals' structure"):
        fl.jvp(lambda a, b: a * b, (x, y), (x, y, x))


def test_jvp_tied_array_has_one_tangent():
    # found by the forward-mode fuzzer: the same array at two places with different
    # tangents was one input whose tangent was the first's: fl.jvp(a * b, (x, x), (t1, t2))
    # gave 2 x t1, silently
    x, t1, t2 = np.array([1.0, 2.0]), np.array([1.0, 0.0]), np.array([0.0, 1.0])
    with pytest.raises(ValueError, match="different tangents"):
        fl.jvp(lambda a, b: a * b, (x, x), (t1, t2))
    with pytest.raises(ValueError, match="different tangents"):
        fl.jvp(lambda d: d["a"] * d["b"], ({"a": x, "b": x},), ({"a": t1, "b": None},))
    _, t = fl.jvp(lambda a, b: a * b, (x, x.copy()), (t1, t2))  # two inputs
    np.testing.assert_array_equal(t, x * t1 + x * t2)
    _, t = fl.jvp(lambda a, b: a * b, (x, x), (t1, t1.copy()))  # one input, one tangent
    np.testing.assert_array_equal(t, 2 * x * t1)
    d = fl.Dense(2, 2, dtype=np.float64)  # tied weights: the gradient is a tangent
    tied = fl.Chain(d, d)
    g = fl.gradient(lambda m: np.sum(m(np.ones((1, 2))) ** 2), tied)[0]
    _, t = fl.jvp(lambda m: np.sum(m(np.ones((1, 2))) ** 2), (tied,), (g,))
    np.testing.assert_allclose(t, sum(np.sum(a ** 2) for a in fl.leaves(g.layers[0])))


def test_jacobian_modes_agree():
    x = rng.standard_normal(3)
    for f in (lambda x: np.tanh(x) * x[0], lambda x: np.concatenate([x, x**2])[:5],
              lambda x: np.sum(x**2)):
        Jf, Jr, Ja = (fl.jacobian(f, x, mode=m) for m in ("fwd", "rev", "auto"))
        np.testing.assert_allclose(Jf, Jr, rtol=1e-12)
        np.testing.assert_allclose(Ja, Jr, rtol=1e-12)
    assert fl.jacobian(lambda x: x @ np.ones((3, 2)), np.ones((4, 3))).shape == (4, 2, 4, 3)


def test_hessian():
    x = np.array([1.0, 2.0, -0.5])
    f = lambda x: x[0] ** 2 * x[1] + np.sin(x[2]) * x[1]
    H = fl.hessian(f, x)
    want = np.array([[2 * x[1], 2 * x[0], 0],
                     [2 * x[0], 0, np.cos(x[2])],
                     [0, np.cos(x[2]), -np.sin(x[2]) * x[1]]])
    np.testing.assert_allclose(H, want, rtol=1e-12)


def test_perturbation_confusion():
    # d/dx [x * d/dy (x + y)] = 1, not 2 (Siskind & Pearlmutter)
    assert fl.gradient(lambda x: x * fl.gradient(lambda y: x + y, 1.0)[0], 1.0) == (1.0,)
    # the same through forward mode nested in reverse mode
    inner = lambda x: fl.jvp(lambda y: x * y, (1.0,), (1.0,))[1]
    np.testing.assert_allclose(fl.gradient(lambda x: x * inner(x), 2.0)[0], 4.0)


def test_third_and_fourth_order():
    d = lambda f: (lambda x: fl.gradient(f, x)[0])
    f = lambda x: x**4
    assert d(d(d(f)))(2.0) == pytest.approx(48.0)
    assert d(d(d(d(f))))(2.0) == pytest.approx(24.0)
    g = lambda x: np.sin(x)
    assert d(d(d(g)))(0.3) == pytest.approx(-np.cos(0.3))


def test_forward_over_reverse_and_reverse_over_forward():
    x = np.array([0.3, -0.8])
    v = np.array([1.0, 2.0])
    f = lambda x: np.sum(np.sin(x) * x[0])
    hvp1 = fl.jvp(lambda x: fl.gradient(f, x)[0], (x,), (v,))[1]
    hvp2 = fl.gradient(lambda x: fl.jvp(f, (x,), (v,))[1], x)[0]
    np.testing.assert_allclose(hvp1, fl.hessian(f, x) @ v, rtol=1e-12)
    np.testing.assert_allclose(hvp2, fl.hessian(f, x) @ v, rtol=1e-12)


def test_stop_gradient():
    g = fl.gradient(lambda x: np.sum(x * fl.stop_gradient(x)), np.array([3.0, 4.0]))[0]
    np.testing.assert_allclose(g, [3.0, 4.0])
    tree = fl.stop_gradient({"a": np.ones(2)})
    assert isinstance(tree["a"], np.ndarray)


def test_jacobian_and_hessian_of_scalars():
    assert fl.hessian(lambda x: x**3, 2.0) == 12.0
    np.testing.assert_allclose(fl.jacobian(lambda x: np.stack([x, x**2]), 3.0), [1.0, 6.0])
    j = fl.jacobian(lambda x: x**2, np.float32(3.0))
    assert j == 6.0 and j.dtype == np.float32


def test_array_api_namespace():
    def f(x):
        xp = x.__array_namespace__()
        return xp.sum(xp.tanh(x) ** 2)

    np.testing.assert_allclose(fl.gradient(f, np.array([0.3]))[0],
                               2 * np.tanh(0.3) * (1 - np.tanh(0.3) ** 2))


def test_jacobian_of_constants_and_bad_outputs():
    np.testing.assert_array_equal(fl.jacobian(lambda x: 3.0, np.ones(2)), [0.0, 0.0])
    with pytest.raises(TypeError, match="float array"):
        fl.jacobian(lambda x: None, np.ones(2))


def test_integer_inputs_have_no_derivative_matrices():
    """hessian of an int array gave array([None, None]) (an object array), jacobian failed
    with 'needs f to return a float array; it returned ndarray', diaghessian with 'cannot
    reshape array of size 2 into shape (2,2)'. Integers carry no derivative (fl.gradient gives
    None): jacobian and hessian refuse them by name, diaghessian gives None for them."""
    for f in (fl.jacobian, fl.hessian):
        for x in (np.array([1, 2]), 3, np.array([True])):
            with pytest.raises(TypeError, match=f"{f.__name__} needs x of a float dtype"):
                f(lambda z: np.sum(z ** 3), x)
    h = fl.diaghessian(lambda z, y: np.sum(z ** 3) * y, np.array([1.0, 2.0]), 5)
    np.testing.assert_array_equal(h[0], [30.0, 60.0])
    assert h[1] is None
    assert fl.diaghessian(lambda z: np.sum(z ** 3), np.array([1, 2])) == (None,)


def _train_layers():
    bn, drop = fl.f64(fl.BatchNorm(2)), fl.Dropout(0.5, rng=np.random.default_rng(1))
    fl.trainmode(bn)
    fl.trainmode(drop)
    return bn, drop


_WIDE = np.random.default_rng(1).standard_normal((4, 2))


@pytest.mark.parametrize("how", ["fwd", "auto", "withjacobian", "hessian", "diaghessian"])
def test_matrices_run_a_layer_with_state_as_once(how):
    # forward mode ran the Dropout and BatchNorm once per column (each column of another
    # mask, the running statistics moved once a column); mode "auto" with more outputs than
    # inputs ran a pullback first, withjacobian an f(x) of its own, diaghessian a Hessian per
    # argument: each moved the state again (its value of another mask)
    x = np.random.default_rng(0).standard_normal(2)

    def f(z):  # (2 -> 8: "auto" takes forward mode)
        return drop(bn(np.tile(z, (4, 1)) * _WIDE)).ravel()

    def loss(z):  # (a helper the matrix's function calls: its layers are found too)
        return np.sum(f(z) ** 3)

    bn, drop = _train_layers()
    y = None
    if how in ("fwd", "auto"):
        got = fl.jacobian(lambda z: f(z), x, how)
    elif how == "withjacobian":
        y, got = fl.withjacobian(f, x, "fwd")
    elif how == "hessian":
        got = fl.hessian(lambda z: loss(z), x)
    else:
        got = np.diag(fl.diaghessian(lambda a, b: loss(a * b), x, np.ones(2))[0])
    moved = bn.running_mean.copy()
    bn, drop = _train_layers()  # the reference: reverse mode, one forward pass
    if how in ("hessian", "diaghessian"):
        want = fl.jacobian(lambda z: fl.gradient(loss, z)[0], x, "rev")
        if how == "diaghessian":
            want = np.diag(np.diag(want))
    else:
        value, back = fl.pullback(f, x)
        want = np.stack([back(e)[0] for e in np.eye(8)])
        if y is not None:
            np.testing.assert_allclose(y, value, rtol=1e-14)
    np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(moved, bn.running_mean, rtol=1e-14)
    assert np.all(bn.running_mean != 0)
