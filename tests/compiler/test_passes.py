"""Each optimisation pass on its own: what it changes, and that the program still computes
the same values (checked by running the generated code before and after)."""

import numpy as np
import pytest

import fluxml as fl
from fluxml.compiler import passes
from fluxml.compiler.calls import trace
from fluxml.compiler.numpy_backend import lower
from fluxml.tree import flatten


def traced(fn, *args):
    leaves, spec = flatten(args)
    program, positions = trace(fn, args, leaves, spec)[:2]
    return program, [leaves[i] for i in positions]


def run(program, arrays):
    _, fn = lower(program, [f"a{i}" for i in range(len(program.inputs))], "f")
    return fn(*[a.copy() for a in arrays])


def names(program):
    return [e.name for e in program.eqns]


def same(p, q, arrays):
    for a, b in zip(run(p, arrays), run(q, arrays)):
        np.testing.assert_allclose(a, b, rtol=1e-14)


def test_dead_code_drops_unused_results():
    p, arrays = traced(lambda x: (np.sin(x), np.cos(x))[0], np.ones(3))
    q = passes.dead_code(p)
    assert names(p) == ["sin", "cos"] and names(q) == ["sin"]
    same(p, q, arrays)


def test_dead_code_keeps_writes_into_buffers():
    def f(x):
        u = np.zeros_like(x)
        v = u[1:]
        u[:2] = x[:2]  # written in place; read through the view v
        return np.sum(v)

    p, arrays = traced(f, np.arange(1.0, 4.0))
    q = passes.dead_code(p)
    assert "setitem" in names(q)
    same(p, q, arrays)
    assert run(q, arrays)[0] == 2.0


def test_common_subexpressions_are_computed_once():
    p, arrays = traced(lambda x: np.sin(x) * 2 + np.sin(x) * 2, np.ones(3))
    q = passes.dead_code(passes.common_subexpressions(p))
    assert names(p).count("sin") == 2 and names(q).count("sin") == 1
    assert names(q).count("multiply") == 1
    same(p, q, arrays)


def test_common_subexpressions_leave_written_buffers_alone():
    def f(x):
        a = np.sin(x)
        b = np.sin(x)
        a[0] = 5.0  # a and b must stay two buffers
        return a + b

    p, arrays = traced(f, np.ones(3))
    q = passes.common_subexpressions(p)
    assert names(q).count("sin") == 2
    same(p, q, arrays)


def test_constant_folding_evaluates_constant_equations():
    from fluxml.compiler.ir import Const, Eqn, Program, Var

    x = Var(1, (3,), np.float64)
    c = Var(2, (3,), np.float64)
    out = Var(3, (3,), np.float64)
    from fluxml.ad.core import UFUNCS

    program = Program([x], [Eqn("exp", np.exp, [Const(np.zeros(3))], {}, [c],
                                prim=UFUNCS[np.exp]),
                            Eqn("add", np.add, [x, c], {}, [out], prim=UFUNCS[np.add])],
                      [out], [])
    q = passes.constant_folding(program)
    assert names(q) == ["add"]
    np.testing.assert_array_equal(run(q, [np.ones(3)])[0], 2.0)


def test_simplify_removes_identities():
    def f(x):
        y = (x * 1.0 + 0.0).T.T
        return np.tanh(y.astype(np.float64) - 0.0)

    p, arrays = traced(f, np.ones((2, 3)))
    q = passes.dead_code(passes.simplify(p))
    assert names(q) == ["tanh"]
    same(p, q, arrays)


def test_simplify_never_returns_an_argument_in_place_of_a_new_array():
    # x * 1 returned came back as the caller's x itself (eager gives a new array): an
    # in-place write into the result (averaging gradients in place) changed the argument
    x = np.arange(3.0)
    p, arrays = traced(lambda x: (x * 1.0, np.tanh(x) + 0.0, x.T.T * 1.0), x)
    q = passes.dead_code(passes.simplify(p))
    assert names(q) == ["multiply", "tanh", "multiply"]  # (+ 0 after tanh: dropped)
    m = {"w": np.ones(3)}
    c = fl.compile(lambda m, x: fl.withgradient(lambda m: np.sum(m["w"] * x), m))
    for _ in range(2):
        assert not np.shares_memory(c(m, x)[1][0]["w"], x)


def test_simplify_keeps_broadcasting_and_casts():
    p, arrays = traced(lambda x: x * np.ones((2, 3)) + np.zeros(3, np.float32), np.ones(3))
    q = passes.simplify(p)
    assert names(q) == ["multiply"]  # x * ones broadcasts to (2, 3): kept; + 0 dropped
    same(p, q, arrays)


def test_simplify_takes_an_array_written_over_whole_as_the_value_written():
    def f(a, b, c, d):
        v = np.tanh(b)
        a[...] = v  # a's new value is v itself: no copy of a made first
        v += 1.0  # (v rebound: a keeps the old value)
        c[...] = v  # float64 into float32: the cast is kept
        d[...] = b[:1]  # broadcast: kept
        return v

    args = (np.ones(3), np.linspace(0, 1, 3), np.ones(3, np.float32), np.ones(3))
    p, arrays = traced(f, *args)
    q = passes.dead_code(passes.simplify(p))
    assert names(p).count("setitem") == 3 and names(q).count("setitem") == 2
    got = [a.copy() for a in arrays]
    _, fn = lower(q, ["a", "b", "c", "d"], "f")
    fn(*got)
    want = [a.copy() for a in args]
    f(*want)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype
        np.testing.assert_array_equal(g, w)


def test_buffers_reuse_dead_intermediates_and_donate_written_arguments():
    def f(w, x):
        h = np.tanh(x * 2.0 + 1.0)
        w -= 0.1 * h  # a write into the argument: computed into its buffer
        return h

    p, arrays = traced(f, np.ones(4), np.linspace(0, 1, 4))
    q = passes.buffers(passes.dead_code(p))
    assert any(e.out is not None for e in q.eqns)
    assert q.writes == []  # donated: no copy back
    src, fn = lower(q, ["w", "x"], "f")
    assert "out=w" in src and "copyto" not in src
    w, x = np.ones(4), np.linspace(0, 1, 4)
    h = fn(w, x)[0]
    np.testing.assert_allclose(h, np.tanh(x * 2.0 + 1.0))
    np.testing.assert_allclose(w, 1.0 - 0.1 * h)


def test_buffers_never_reuse_an_argument_that_is_read_later():
    def f(w, x):
        w -= x
        return w + x * w  # w's new value is read later: fine; x is never written

    p, arrays = traced(f, np.ones(4), np.arange(4.0))
    q = passes.optimise(p)
    w, x = np.ones(4), np.arange(4.0)
    out = run(q, [w, x])[0]
    np.testing.assert_allclose(out, (1 - np.arange(4.0)) * (1 + np.arange(4.0)))


@pytest.mark.parametrize("optimise", [True, False])
def test_the_pipeline_on_a_training_step(optimise):
    fl.seed(0)
    model = fl.Chain(fl.Dense(3, 8, np.tanh), fl.Dense(8, 1))
    opt = fl.setup(fl.Momentum(0.1), model)
    x = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)

    def step(model, opt, x):
        loss, (g,) = fl.withgradient(lambda m: np.mean(m(x) ** 2), model)
        fl.update(opt, model, g)
        return loss

    import copy

    model2, opt2 = copy.deepcopy(model), copy.deepcopy(opt)
    f = fl.compile(step, optimise=optimise)
    for _ in range(3):
        np.testing.assert_allclose(f(model, opt, x), step(model2, opt2, x), rtol=1e-6)
    np.testing.assert_allclose(model.layers[0].weight, model2.layers[0].weight, rtol=1e-6)
    if optimise:  # the passes made the program shorter
        plain = fl.compile(step, optimise=False)
        plain(copy.deepcopy(model), copy.deepcopy(opt), x)
        assert len(f.ir) < len(plain.ir)
