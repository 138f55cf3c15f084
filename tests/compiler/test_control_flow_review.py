"""Control flow under fl.compile: fl.stop_gradient inside bodies, constant while_loop
conditions, random draws inside bodies (fl.dropout)."""

import importlib.util
import warnings

import numpy as np
import pytest

import fluxml as fl
from fluxml.compiler import CompileError

XS = np.array([0.3, -0.5, 0.7, 0.2])
ONE = np.array(1.0)

_STOPPED = {
    "scan": (lambda a: fl.scan(lambda c, x: (np.sin(c * a) + fl.stop_gradient(c) * x, c),
                               np.array(0.2), XS)[0], "grad"),
    "straight-through": (lambda a: fl.scan(
        lambda c, x: (c * a + x + fl.stop_gradient(np.round(c) - c), c), np.array(0.2),
        XS)[0], "grad"),
    "cond": (lambda a: fl.cond(a > 0, lambda a: np.sin(a) * fl.stop_gradient(a),
                               lambda a: a, a), "grad"),
    "while": (lambda a: fl.while_loop(
        lambda c: c[0] < 2, lambda c: (c[0] + 1, np.sin(c[1]) * fl.stop_gradient(c[1])),
        (np.array(0), a))[1], "jvp"),
    "scan jvp": (lambda a: fl.scan(lambda c, x: (np.sin(c * a) + fl.stop_gradient(c) * x, c),
                                   np.array(0.2), XS)[0], "jvp"),
}

BACKENDS = ["numpy"] + (["xla"] if importlib.util.find_spec("jax") else [])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(_STOPPED))
def test_stop_gradient_inside_control_flow_keeps_its_derivative_cut(name, backend):
    f, mode = _STOPPED[name]
    if mode == "grad":
        d = lambda a: fl.gradient(f, a)[0]  # noqa: E731
    else:
        d = lambda a: fl.jvp(f, (a,), (ONE,))[1]  # noqa: E731
    a = np.array(0.7)
    expected = d(a)
    got = fl.compile(d, backend=backend, background=False)(a)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_stop_gradient_in_scan_second_order():
    f = _STOPPED["scan"][0]
    d2 = lambda a: fl.gradient(lambda b: fl.gradient(f, b)[0], a)[0]  # noqa: E731
    a = np.array(0.7)
    np.testing.assert_allclose(fl.compile(d2)(a), d2(a), rtol=1e-12)


def test_stop_gradient_in_a_body_is_still_a_writable_copy():
    def body(c, x):
        s = fl.stop_gradient(c)
        s[0] = 5.0  # a copy of its own: the carry is untouched
        return c + x, s

    f = lambda c, xs: fl.scan(body, c, xs)  # noqa: E731
    c, xs = np.zeros(2), np.ones((3, 2))
    eager = f(c, xs)
    compiled = fl.compile(f)(c, xs)
    for e, k in zip(fl.flatten(eager)[0], fl.flatten(compiled)[0]):
        np.testing.assert_array_equal(e, k)


@pytest.mark.parametrize("backend", BACKENDS)
def test_while_loop_python_bool_condition_compiles(backend):
    f = lambda x: fl.while_loop(lambda c: c.shape[0] > 5, lambda c: c + 1, x)  # noqa: E731
    x = np.array([1.0, 2.0])
    np.testing.assert_array_equal(fl.compile(f, backend=backend, background=False)(x), f(x))
    g = lambda x: fl.while_loop(lambda c: False, lambda c: c * 2, (x, x + 1))  # noqa: E731
    out = fl.compile(g, backend=backend, background=False)(x)
    np.testing.assert_array_equal(out[0], x)
    np.testing.assert_array_equal(out[1], x + 1)


@pytest.mark.parametrize("cond", [lambda c: True, lambda c: np.bool_(True), lambda c: 1])
def test_while_loop_constant_true_condition_is_refused_by_name(cond):
    f = fl.compile(lambda x: fl.while_loop(cond, lambda c: c + 1, x))
    with pytest.raises(CompileError, match="never end"):
        f(np.array(1.0))


_DROPPING = {
    "scan": lambda x: fl.scan(lambda c, _: (fl.dropout(c, 0.5), np.sum(c)), x, None,
                              length=3)[0],
    "cond": lambda x: fl.cond(np.sum(x) > 0, lambda x: fl.dropout(x, 0.5), lambda x: x, x),
    "while": lambda x: fl.while_loop(lambda c: c[0] < 2,
                                     lambda c: (c[0] + 1, fl.dropout(c[1], 0.5)),
                                     (np.array(0), x))[1],
}


@pytest.mark.parametrize("name", list(_DROPPING))
def test_dropout_inside_control_flow_numpy_backend_does_not_warn(name):
    f = _DROPPING[name]
    fl.seed(3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "drew from fluxml's default generator" warning
        cf = fl.compile(f, backend="numpy")
        first = cf(np.ones(8))
        calls = [cf(np.ones(8)) for _ in range(6)]
    fl.seed(3)
    np.testing.assert_array_equal(first, f(np.ones(8)))  # tracing left the generator alone
    assert any(not np.array_equal(first, c) for c in calls)  # a fresh mask on each call


@pytest.mark.skipif("xla" not in BACKENDS, reason="the xla back end needs JAX")
@pytest.mark.parametrize("name", list(_DROPPING))
def test_dropout_inside_control_flow_xla_is_refused_by_name(name):
    f = fl.compile(_DROPPING[name], backend="xla", background=False)
    with pytest.raises(CompileError, match="random draw .* inside fl.cond, fl.while_loop"):
        f(np.ones(8))


def test_an_eager_scan_whose_body_writes_into_its_carry_gives_values():
    # every y was the last carry once stacked, and the caller's init was written into
    def body(c, x):
        c += x
        return c, c

    h = np.zeros(2)
    carry, ys = fl.scan(body, h, np.ones((3, 2)))
    np.testing.assert_array_equal(ys, [[1, 1], [2, 2], [3, 3]])
    np.testing.assert_array_equal(carry, [3, 3])
    np.testing.assert_array_equal(h, [0, 0])
    g, = fl.gradient(lambda h: np.sum(fl.scan(body, h, np.ones((3, 2)))[1]), np.zeros(2))
    np.testing.assert_array_equal(g, [3, 3])


def test_an_eager_cond_takes_a_branch_that_writes_into_its_operand_either_way():
    # refused ("inside fl.compile") only when that branch was the one not taken
    def writes(x):
        x[0] = 100.0
        return x * 2

    for flag in (1.0, -1.0):
        x = np.array([1.0, flag])
        out = fl.cond(x[1] > 0, writes, lambda x: x * 3, x)
        np.testing.assert_array_equal(out, [200.0, 2.0] if flag > 0 else [3.0, -3.0])
