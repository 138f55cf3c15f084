"""Engine properties: long loops, freed tapes, threads, custom rules, clear errors."""

import gc
import math
import threading
import weakref

import numpy as np
import pytest

import fluxml as fl
from fluxml.ad.reverse import ReverseTrace
from fluxml.testing import check_grads


def test_long_loop_has_no_recursion_limit():
    def f(x):
        for _ in range(100_000):
            x = x * 0.99999 + 0.00001
        return x

    (g,) = fl.gradient(f, 1.0)
    assert g == pytest.approx(0.99999**100_000, rel=1e-9)


def test_no_tape_survives_a_gradient():
    traces = []
    original = ReverseTrace.__init__

    def spy(self):
        original(self)
        traces.append(weakref.ref(self))

    ReverseTrace.__init__ = spy
    try:
        x = np.ones(3)
        fl.gradient(lambda x: np.sum(np.tanh(x) * x), x)
        y, back = fl.pullback(lambda x: np.sin(x), x)
        back(np.ones(3))
        del back
    finally:
        ReverseTrace.__init__ = original
    gc.collect()
    assert traces and all(r() is None for r in traces)


def test_threads_take_gradients_at_once():
    results, errors = {}, []

    def work(k):
        try:
            x = np.full(50, float(k))
            for _ in range(20):
                g = fl.gradient(lambda x: np.sum(np.sin(x) * k), x)[0]
            results[k] = g
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(1, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for k, g in results.items():
        np.testing.assert_allclose(g, k * np.cos(np.full(50, float(k))))


# --- custom rules --------------------------------------------------------------------------------

@fl.custom_vjp
def clip_gradient(x, lo, hi):
    return x


clip_gradient.defvjp(lambda x, lo, hi: (x, (lo, hi)),
                     lambda res, g: (np.clip(g, res[0], res[1]), None, None))


def test_custom_vjp():
    g = fl.gradient(lambda x: np.sum(5 * clip_gradient(x, -1.0, 1.0)), np.ones(3))[0]
    np.testing.assert_array_equal(g, np.ones(3))
    assert clip_gradient(np.ones(2), 0.0, 1.0).shape == (2,)  # plain call


@fl.custom_vjp
def softplus(x):
    return np.log1p(np.exp(x))


softplus.defvjp(lambda x: (softplus(x), x), lambda x, g: (g / (1 + np.exp(-x)),))


def test_custom_vjp_second_order_and_forward_mode():
    check_grads(softplus, np.array([0.3, -1.2, 2.0]))


@fl.custom_jvp
def logexp(x):
    return np.log(np.exp(x))


logexp.defjvp(lambda primals, tangents: (logexp(primals[0]), tangents[0]))


def test_custom_jvp_in_both_modes():
    x = np.array([0.5, 100.0])
    assert fl.jvp(logexp, (x,), (np.ones(2),))[1].tolist() == [1.0, 1.0]
    np.testing.assert_allclose(fl.gradient(lambda x: np.sum(logexp(x) * x), x)[0], 2 * x)


def test_checkpoint_gives_the_same_gradient():
    w = np.random.default_rng(1).standard_normal((4, 4)) * 0.5
    block = lambda x, w: np.tanh(x @ w)
    plain = lambda w: np.sum(block(block(np.ones((2, 4)), w), w))
    ckpt_block = fl.checkpoint(block)
    ckpt = lambda w: np.sum(ckpt_block(ckpt_block(np.ones((2, 4)), w), w))
    np.testing.assert_allclose(fl.gradient(ckpt, w)[0], fl.gradient(plain, w)[0], rtol=1e-12)
    check_grads(ckpt, w, modes=("rev",))


def test_checkpoint_refuses_closed_over_tracers():
    def f(w):
        inner = fl.checkpoint(lambda x: np.tanh(x * w))
        return np.sum(inner(w * 2))

    with pytest.raises(fl.DifferentiationError, match="closed over"):
        fl.gradient(f, np.ones(2))


# --- clear errors --------------------------------------------------------------------------------

def test_non_scalar_output_suggests_jacobian():
    with pytest.raises(fl.DifferentiationError, match="jacobian"):
        fl.gradient(lambda x: x * 2, np.ones(3))


def test_gradient_without_arguments_is_not_jax_grad():
    with pytest.raises(TypeError, match=r"gradient at args .* not a function \(jax.grad"):
        fl.gradient(lambda x: np.sum(x ** 2))
    assert fl.gradient(lambda: 3.0) == ()  # a function of nothing: the empty gradient


def test_jacobian_of_two_arguments_is_named():  # the second array landed on mode=
    with pytest.raises(TypeError, match="jacobian takes one argument x .* got a ndarray"):
        fl.jacobian(lambda x, y: x * y, np.ones(2), np.ones(2))
    with pytest.raises(TypeError, match=r"jacobian takes one array x .* got dict"):
        fl.jacobian(lambda d: d["a"] * 2, {"a": np.ones(2)})  # was "jvp: 2 primal leaves ..."
    with pytest.raises(TypeError, match=r"hessian takes one array x .* got Dense"):
        fl.hessian(lambda m: np.sum(m.weight ** 3), fl.Dense(2, 2))


@pytest.mark.parametrize("convert, name", [
    (float, "float"), (int, "int"), (bool, "bool"), (lambda t: t.item(), "item"),
    (lambda t: t.tolist(), "tolist"), (math.sin, "float"),
])
def test_concrete_conversions_explain(convert, name):
    with pytest.raises(fl.DifferentiationError, match="traced"):
        fl.gradient(lambda x: convert(x[0]) * 1.0 + np.sum(x), np.ones(2))


@pytest.mark.parametrize("convert", [np.asarray, np.array])
def test_asarray_of_a_tracer_refuses(convert):
    with pytest.raises(fl.DifferentiationError, match="np.zeros_like"):
        fl.gradient(lambda x: np.sum(convert(x)), np.ones(2))


def test_writing_a_tracer_into_a_numpy_array_refuses():
    def f(x):
        buf = np.zeros(2)
        buf[0] = x[0]
        return np.sum(buf)

    # NumPy would turn any error of float(tracer) into "setting an array element with a
    # sequence"; fluxml's own error comes when f returns.
    with pytest.raises(fl.DifferentiationError, match="np.zeros_like"):
        fl.gradient(f, np.ones(2))

    def g(x):
        buf = np.zeros(2)
        buf[:] = x
        return np.sum(buf)

    with pytest.raises(fl.DifferentiationError, match="np.zeros_like"):
        fl.gradient(g, np.ones(2))


def test_unsupported_function_names_itself_and_custom_vjp():
    with pytest.raises(fl.DifferentiationError, match=r"(?s)np\.union1d.*custom_vjp"):
        fl.gradient(lambda x: np.sum(np.union1d(x, x)), np.ones(4))


def test_if_on_a_traced_value_explains():
    def f(x):
        if x[0]:
            return np.sum(x)
        return 0.0

    with pytest.raises(fl.DifferentiationError, match="if"):
        fl.gradient(f, np.ones(2))
    # comparisons are concrete booleans, so `if x[0] > 0` works
    assert fl.gradient(lambda x: np.sum(x) if x[0] > 0 else 0.0, np.ones(2))[0].tolist() == [
        1.0, 1.0]


def test_leaked_tracer_refuses():
    leaked = []

    def keep(x):  # the list is reached through another function: not seen by the transform
        leaked.append(x)

    def f(x):
        keep(x)
        return np.sum(x)

    fl.gradient(f, np.ones(2))
    with pytest.raises(fl.DifferentiationError, match="escaped"):
        leaked[0] * 2


def test_a_tracer_stored_in_a_list_the_function_closes_over_becomes_its_value():
    seen = []

    def f(x):
        seen.append(x * 3)
        return np.sum(x)

    fl.gradient(f, np.ones(2))
    assert type(seen[0]) is np.ndarray and seen[0].tolist() == [3.0, 3.0]


def test_complex_values_reach_only_functions_right_for_them():
    # complex arguments are differentiated (tests/ad/test_complex.py); a function whose rule
    # is right for real values only refuses them instead of returning a wrong gradient
    with pytest.raises(fl.DifferentiationError, match=r"np\.max.*complex"):
        fl.gradient(lambda z: np.abs(np.max(z)), np.ones(2, dtype=complex))
    # (np.var was this test's second example until its rule became right for complex values)
    with pytest.raises(fl.DifferentiationError, match=r"np\.median.*complex"):
        fl.gradient(lambda x: np.median(x * 1j), np.ones(2))


def test_library_that_converts_a_tracer_is_named():
    special = pytest.importorskip("scipy.special")
    with pytest.raises(fl.DifferentiationError, match="logsumexp"):
        fl.gradient(lambda x: special.logsumexp(x), np.ones(3))
    assert fl.gradient(fl.logsumexp, np.zeros(2))[0].tolist() == [0.5, 0.5]


def test_tape_lets_large_intermediates_go():
    import weakref

    refs = []

    def f(x, w):
        t = x * w  # multiply keeps x and w, not its result
        refs.append(weakref.ref(fl.ad.core.raw(t)))
        return np.sum(np.tanh(t + 1.0))  # add needs no values: its input need not stay

    x, w = np.ones(10_000), np.full(10_000, 0.5)
    _, back = fl.pullback(f, x, w)
    gc.collect()
    assert refs[0]() is None  # freed although the tape (back) is alive
    np.testing.assert_allclose(back(1.0)[0], 0.5 * (1 - np.tanh(1.5) ** 2))


@pytest.mark.parametrize("takes_none", [False, True])
def test_multiple_results_unused_output_cotangent(takes_none):
    # a multiple-result primitive gets zeros for an output without a cotangent, or None
    # when it says vjp_takes_none (the LSTM kernel: no zeros the size of its saved gates)
    from fluxml.ad.define import primitive

    seen = []
    prim = primitive("twice_thrice", lambda x: (2 * x, 3 * x), multiple_results=True)

    def vjp_all(g, ans, args, params, positions):
        seen.append(g)
        return [2 * g[0] + (0 if g[1] is None else 3 * g[1])]

    prim.vjp_all = vjp_all
    prim.vjp_takes_none = takes_none
    (g,) = fl.gradient(lambda x: np.sum(prim(x)[0]), np.ones(3))
    np.testing.assert_array_equal(g, 2 * np.ones(3))
    unused = seen[0][1]
    assert unused is None if takes_none else np.array_equal(unused, np.zeros(3))
