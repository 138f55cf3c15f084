"""fl.cond, fl.while_loop, fl.scan: eager semantics, checks, compiled runs and derivatives."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fluxml as fl
from fluxml.compiler import CompileError
from fluxml.testing import check_grads

rng = np.random.default_rng(0)


def close(a, b, tol=1e-10):
    for x, y in zip(fl.tree.leaves(a), fl.tree.leaves(b)):
        np.testing.assert_allclose(x, y, rtol=tol, atol=tol)


def fd_grad(f, x, eps=1e-6):
    """Central finite differences of the scalar f at the array x."""
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = eps
        g[i] = (f(x + e) - f(x - e)) / (2 * eps)
    return g


def names(compiled):
    return [e.name for e in compiled.ir.eqns]


# --- eager semantics ---------------------------------------------------------------------------

def test_cond_eager_picks_a_branch_of_trees():
    ops = {"a": np.array([1.0, 2.0]), "b": 3.0}
    yes = fl.cond(True, lambda d: (d["a"] * d["b"], d["b"]), lambda d: (d["a"], 0.0), ops)
    no = fl.cond(np.int64(0), lambda d: (d["a"] * d["b"], d["b"]), lambda d: (d["a"], 0.0), ops)
    close(yes, (np.array([3.0, 6.0]), 3.0))
    close(no, (np.array([1.0, 2.0]), 0.0))


def test_eager_control_flow_is_differentiated_as_python():
    def f(x):
        y = fl.cond(np.sum(x) > 0, lambda x: np.sin(x) * x, lambda x: x**3, x)
        y = fl.while_loop(lambda c: np.max(np.abs(c)) < 10.0, lambda c: 2 * c, y)
        return np.sum(fl.scan(lambda c, x: (c * x, c + x), np.ones(()), y)[1])

    for x in (np.array([0.3, 0.9]), np.array([-0.4, -0.2])):
        check_grads(f, x)


def test_eager_cond_checks_the_other_branch_without_drawing_from_its_generator():
    gen, same = np.random.default_rng(5), np.random.default_rng(5)
    y = fl.cond(True, lambda x: x, lambda x: fl.dropout(x, 0.5, rng=gen), np.ones(3))
    close(y, np.ones(3))
    assert gen.random() == same.random()


def test_eager_cond_takes_a_branch_the_other_could_not():
    a = -np.eye(2)  # not positive definite: only the fallback branch can run
    chol = fl.cond(np.all(np.linalg.eigvalsh(a) > 0), np.linalg.cholesky, np.abs, a)
    close(chol, np.eye(2))


def test_eager_gradient_through_a_cond_whose_other_branch_scans_a_while_loop():
    # the branch not taken is traced to check it; its scan over a closed-over w took the
    # gradient's trace for its own and planned a vjp of the body: "fl.while_loop under
    # fl.compile has no reverse-mode derivative", from eager code
    def f(w, x):
        def other(x):
            def body(c, _):
                return fl.while_loop(lambda c: c[0] < 2, lambda c: (c[0] + 1, np.sin(c[1])),
                                     (0, c))[1], None
            return fl.scan(body, w, None, length=2)[0] + x
        return np.sum(fl.cond(np.sum(x) > 0, lambda x: x * w, other, x))

    w, x = np.array([0.5, -1.0]), np.array([1.0, 2.0])
    close(fl.gradient(f, w, x), (x, w))
    close(fl.gradient(f, w, -x)[0], fd_grad(lambda w: f(w, -x), w), 1e-7)


def test_while_loop_eager():
    i, s = fl.while_loop(lambda c: c[0] < 5, lambda c: (c[0] + 1, c[1] + c[0]), (0, 0))
    assert (i, s) == (5, 10)


def test_scan_eager_matches_a_loop():
    xs = rng.standard_normal((6, 3))
    c, ys = fl.scan(lambda c, x: (c + x, c * x), np.zeros(3), xs)
    close(c, np.sum(xs, 0))
    close(ys, np.concatenate([np.zeros((1, 3)), np.cumsum(xs, 0)[:-1]]) * xs)
    c, ys = fl.scan(lambda c, x: (c + x, c), np.zeros(3), xs, reverse=True)
    close(ys[0], np.sum(xs[1:], 0))
    close(fl.scan(lambda c, _: (c + 1, None), 0, None, length=4), (4, None))
    c, ys = fl.scan(lambda c, x: (c, {"y": 2 * x["v"]}), 1.0, {"v": np.ones((0, 2))})
    assert c == 1.0 and ys["y"].shape == (0, 2)


# --- checks ------------------------------------------------------------------------------------

@pytest.mark.parametrize("compiled", [False, True])
def test_cond_checks(compiled):
    x = np.ones(2)

    def run(pred, t, f):
        if compiled:
            return fl.compile(lambda x: fl.cond(pred(x), t, f, x))(x)
        return fl.cond(pred(x), t, f, x)

    same = lambda x: x  # noqa: E731
    with pytest.raises(TypeError, match="fl.cond: pred must be a scalar boolean.*bool\\[2\\]"):
        run(lambda x: x > 0, same, same)
    with pytest.raises(TypeError, match="pred must be a scalar boolean.*str"):
        run(lambda x: "yes", same, same)
    with pytest.raises(TypeError, match="true_fn and false_fn must return arrays of the same "
                                        "shapes and dtypes; output 0 is float64\\[2\\]"):
        run(lambda x: np.sum(x) > 0, same, lambda x: x.astype(np.float32))
    with pytest.raises(TypeError, match="must return the same structure"):
        run(lambda x: np.sum(x) > 0, same, lambda x: (x, x))
    with pytest.raises(TypeError, match="false_fn must be a function"):
        run(lambda x: np.sum(x) > 0, same, 3)


@pytest.mark.parametrize("compiled", [False, True])
def test_loop_checks(compiled):
    def run(f, *args):
        return fl.compile(lambda *a: f(*a))(*args) if compiled else f(*args)

    with pytest.raises(TypeError, match="body_fun must keep each carry's shape and dtype; "
                                        "carry leaf 0 came in as int64\\[\\] and went out as "
                                        "float64\\[\\]"):
        run(lambda x: fl.while_loop(lambda c: c[0] < 3, lambda c: (c[0] + 1.0, c[1]), (0, x)),
            np.ones(2))
    with pytest.raises(TypeError, match="cond_fun.*must be a scalar boolean"):
        run(lambda x: fl.while_loop(lambda c: c > 0, lambda c: c - 1, x), np.ones(2))
    with pytest.raises(TypeError, match="fl.scan: f must keep each carry's shape and dtype"):
        run(lambda xs: fl.scan(lambda c, x: (c + x, x), np.float32(0), xs), np.ones(3))
    with pytest.raises(TypeError, match="f must return a pair \\(carry, y\\)"):
        run(lambda xs: fl.scan(lambda c, x: c + x, 0.0, xs), np.ones(3))
    with pytest.raises(TypeError, match="f must return a carry of the structure"):
        run(lambda xs: fl.scan(lambda c, x: ((c, c), x), 0.0, xs), np.ones(3))


def test_scan_argument_checks():
    f = lambda c, x: (c, x)  # noqa: E731
    with pytest.raises(ValueError, match="same leading length; got lengths \\[2, 3\\]"):
        fl.scan(f, 0.0, [np.ones(2), np.ones(3)])
    with pytest.raises(ValueError, match="length=4 but xs have leading length 3"):
        fl.scan(f, 0.0, np.ones(3), length=4)
    with pytest.raises(ValueError, match="pass length= when xs is None"):
        fl.scan(f, 0.0, None)
    with pytest.raises(TypeError, match="leading axis to scan over"):
        fl.scan(f, 0.0, np.float64(1.0))
    with pytest.raises(TypeError, match="length must be a non-negative int"):
        fl.scan(f, 0.0, None, length=-1)
    with pytest.raises(TypeError, match="ys of one structure, shape and dtype at every step"):
        fl.scan(lambda c, x: (c, np.ones(int(x))), 0.0, np.array([1.0, 2.0]))
    # a string for xs said 'pass length= when xs is None', eagerly and compiled
    with pytest.raises(TypeError, match=r"^fl.scan: xs must be an array or a tree of arrays "
                                        r".*; got 'abc' \(a str\)"):
        fl.scan(f, 0.0, "abc")
    with pytest.raises(TypeError, match=r"^fl.scan: xs must be an array .*; got b'ab'"):
        fl.compile(lambda xs: fl.scan(f, 0.0, xs))(b"ab")


def test_python_if_on_a_traced_value_names_the_line():
    def f(x):
        if np.sum(x) > 0:  # the line the error names
            return x
        return -x

    line = f.__code__.co_firstlineno + 1
    with pytest.raises(CompileError, match=f"test_control.py, line {line}\\)(.|\\n)*fl.cond, "
                                           "fl.while_loop or fl.scan"):
        fl.compile(f)(np.ones(2))
    with pytest.raises(CompileError, match="float\\(x\\) needs a concrete value"):
        fl.compile(lambda x: fl.gradient(lambda x: float(np.sum(x)) * x[0], x))(np.ones(2))


# --- compiled: one equation, the values of eager code ------------------------------------------

def test_compiled_cond_runs_the_branch_the_values_choose():
    def f(x, w):
        return fl.cond(np.sum(x) > 0, lambda x: np.tanh(w * x), lambda x: x - w, x)

    c = fl.compile(f)
    w = np.array([0.5, -2.0])
    for x in (np.array([1.0, 2.0]), np.array([-1.0, -2.0]), np.array([3.0, -1.0])):
        close(c(x, w), f(x, w))
    assert c.traces == 1 and names(c).count("cond") == 1
    assert "cond(" in c.source and "branches=(true_fn, false_fn)" in c.source


def test_compiled_cond_with_a_concrete_pred_is_specialised():
    c = fl.compile(lambda x, flag: fl.cond(flag, lambda x: 2 * x, lambda x: -x, x))
    close(c(np.ones(2), True), 2 * np.ones(2))
    assert "cond" not in names(c)
    close(c(np.ones(2), False), -np.ones(2))


def test_compiled_nested_cond_and_fresh_outputs():
    def f(x):
        inner = lambda x: fl.cond(x[0] > 0, lambda x: x, lambda x: x * 3, x)  # noqa: E731
        return fl.cond(x[1] > 0, inner, lambda x: -x, x)

    c = fl.compile(f)
    for x in ([1.0, 1.0], [-1.0, 1.0], [1.0, -1.0]):
        x = np.array(x)
        out = c(x)
        close(out, f(x))
        assert not np.shares_memory(out, x)  # a branch passing x through returns a copy


def newton_sqrt(a):
    """sqrt(a) by Newton's method, and the number of steps it took."""
    def step(c):
        x, n = c
        return 0.5 * (x + a / x), n + 1

    return fl.while_loop(lambda c: np.abs(c[0] * c[0] - a) > 1e-12 * a, step, (a, 0))


def test_compiled_while_loop_runs_as_many_steps_as_the_values_need():
    c = fl.compile(newton_sqrt)
    steps = set()
    for a in (2.0, 1e6, 100.0):
        a = np.array(a)
        x, n = c(a)
        close(x, np.sqrt(a), 1e-12)
        assert int(n) == newton_sqrt(a)[1]
        steps.add(int(n))
    assert len(steps) == 3 and c.traces == 1 and names(c).count("while_loop") == 1


def test_compiled_scan_cumsum_and_rnn():
    cumsum = fl.compile(lambda xs: fl.scan(lambda c, x: (c + x, c + x), np.zeros(2), xs))
    xs = rng.standard_normal((7, 2))
    c, ys = cumsum(xs)
    close(ys, np.cumsum(xs, 0))
    close(c, np.sum(xs, 0))

    def rnn(W, U, h0, xs):
        return fl.scan(lambda h, x: (np.tanh(W @ h + U @ x), {"h": h, "n": 1}), h0, xs)

    args = (0.5 * rng.standard_normal((3, 3)), rng.standard_normal((3, 2)), np.zeros(3),
            rng.standard_normal((5, 2)))
    close(fl.compile(rnn)(*args), rnn(*args))
    for reverse in (False, True):
        f = lambda xs: fl.scan(lambda c, x: (c * 0.5 + x, c), 1.0, xs, reverse=reverse)  # noqa
        close(fl.compile(f)(xs[:, 0]), f(xs[:, 0]))


def test_compiled_scan_indexes_a_closed_over_table_with_its_xs():
    table = rng.standard_normal((5, 3))
    ids = np.array([0, 3, 3, 1])

    def f(table, ids):  # an embedding lookup per step: the index is the body's, the table not
        return np.sum(fl.scan(lambda c, i: (np.tanh(c + table[i]), None), np.zeros(3), ids)[0])

    close(fl.compile(f)(table, ids), f(table, ids))
    grad = lambda table, ids: fl.gradient(f, table, ids)[0]  # noqa: E731
    close(fl.compile(grad)(table, ids), grad(table, ids))


@pytest.mark.parametrize("form", ["scan", "while_loop", "cond"])
def test_a_body_writes_into_an_array_it_made_from_its_values(form):
    # An array made only from closed-over values is the code around the body's (run once,
    # not at each step): a write of the body's values into it is refused. Made from the
    # body's values too, it is the body's own, written in place as eagerly.
    def body(w, c, own):
        h = np.tanh(w) + (0.0 * c if own else 0.0)
        h += c
        g = np.sin(w) + (0.0 * c if own else 0.0)
        g += w
        g[0] = c[1]
        return 0.5 * h + 0.1 * g

    def f(w, x, own=True):
        if form == "scan":
            return fl.scan(lambda c, _: (body(w, c, own), None), x, None, length=3)[0]
        if form == "while_loop":
            return fl.while_loop(lambda c: c[0] < 3.0,
                                 lambda c: (c[0] + 1, body(w, c[1], own)), (0.0, x))[1]
        return fl.cond(np.sum(x) > 0, lambda c: body(w, c, own), lambda c: c, x)

    def by_hand(w, x):
        steps = 3 if form != "cond" else int(np.sum(x) > 0)
        for _ in range(steps):
            g = np.sin(w) + w
            g[0] = x[1]
            x = 0.5 * (np.tanh(w) + x) + 0.1 * g
        return x

    w = np.array([0.5, -1.0])
    compiled = fl.compile(f)
    for x in (np.array([1.0, 2.0]), np.array([-1.0, 0.5])):
        close(compiled(w, x), by_hand(w, x))
    if form != "while_loop":
        grad = fl.compile(lambda w, x: fl.gradient(lambda w: np.sum(f(w, x)), w)[0])
        close(grad(w, x), fd_grad(lambda w: np.sum(by_hand(w, x)), w), 1e-7)
    with pytest.raises(CompileError, match="wrote into an array of the code around it"):
        fl.compile(lambda w, x: f(w, x, own=False))(w, np.array([1.0, 2.0]))


def test_compiled_scan_keeps_float32():
    xs = np.ones((4, 3), np.float32)
    c, ys = fl.compile(lambda xs: fl.scan(lambda c, x: (c + x, 2 * x), xs[0] * 0, xs))(xs)
    assert c.dtype == np.float32 and ys.dtype == np.float32


def test_compiled_branch_may_not_write_into_its_operands():
    def f(x):
        def write(x):
            x[0] = 1.0
            return x

        return fl.cond(np.sum(x) > 0, write, lambda x: x, x)

    with pytest.raises(CompileError, match="true_fn `write` wrote into one of its arguments"):
        fl.compile(f)(np.ones(2))


# --- derivatives -------------------------------------------------------------------------------

def cond_loss(w, x):
    y = fl.cond(np.sum(x) > 0, lambda w: np.tanh(w * x) ** 2, lambda w: np.sin(w) * x, w)
    return np.sum(y * w)


def rnn_loss(W, h0, xs):
    h, hs = fl.scan(lambda h, x: (np.tanh(W @ h + x), h * h), h0, xs)
    return np.sum(h**2) + np.sum(np.sin(hs))


RNN_ARGS = (0.5 * rng.standard_normal((3, 3)), rng.standard_normal(3),
            rng.standard_normal((4, 3)))


@pytest.mark.parametrize("x", [np.array([1.0, 2.0]), np.array([-1.0, -2.0])])
def test_gradient_through_a_compiled_cond(x):
    w = np.array([0.3, -0.7])
    grad = fl.compile(lambda w, x: fl.gradient(cond_loss, w, x))
    got = grad(w, x)
    close(got, fl.gradient(cond_loss, w, x))
    close(got[0], fd_grad(lambda w: cond_loss(w, x), w), 1e-7)
    assert names(grad).count("cond") == 2  # the forward branch, then the branch's vjp


def test_gradient_through_a_compiled_scan():
    grad = fl.compile(lambda *a: fl.gradient(rnn_loss, *a))
    got = grad(*RNN_ARGS)
    close(got, fl.gradient(rnn_loss, *RNN_ARGS))
    W, h0, xs = RNN_ARGS
    close(got[0], fd_grad(lambda W: rnn_loss(W, h0, xs), W), 1e-7)
    close(got[2], fd_grad(lambda xs: rnn_loss(W, h0, xs), xs), 1e-7)
    # one forward scan (stacking what the vjp reads) and one reverse scan
    assert names(grad).count("scan") == 2


def test_second_order_through_compiled_scan_and_cond():
    W, h0, xs = RNN_ARGS
    v = rng.standard_normal(W.shape)

    def hvp(W):
        return fl.jvp(lambda W: fl.gradient(rnn_loss, W, h0, xs)[0], (W,), (v,))[1]

    def hvp_rev(W):
        return fl.gradient(lambda W: np.sum(fl.gradient(rnn_loss, W, h0, xs)[0] * v), W)[0]

    close(fl.compile(hvp)(W), hvp(W))
    close(fl.compile(hvp_rev)(W), hvp(W))
    hess = lambda w, x: fl.jacobian(lambda w: fl.gradient(cond_loss, w, x)[0], w)  # noqa
    w = np.array([0.3, -0.7])
    for x in (np.array([1.0, 2.0]), np.array([-1.0, -2.0])):
        close(fl.compile(hess)(w, x), hess(w, x))


@pytest.mark.parametrize("reverse", [False, True])
def test_reverse_over_reverse_through_a_compiled_scan_reads_its_residuals_derivative(reverse):
    # the outer gradient took the scan as saving for itself and dropped the cotangents of
    # what it stacked for the inner one: the cos(x) that sin's vjp reads was constant, so
    # the Hessian of sum(sin(x)**2) lost its -2 sin(x)**2 (silently)
    def loss(xs):
        _, ys = fl.scan(lambda c, x: (c, np.sin(x)), np.zeros(2), xs, reverse=reverse)
        return np.sum(ys**2)

    v = np.array([[1.0, -2.0], [0.5, 3.0]])
    hvp = fl.compile(lambda xs: fl.gradient(lambda xs: np.sum(fl.gradient(loss, xs)[0] * v),
                                            xs)[0])
    for xs in (np.array([[0.3, -0.5], [1.0, 2.0]]), np.array([[-1.0, 0.1], [0.0, 0.7]])):
        close(hvp(xs), 2 * np.cos(2 * xs) * v, 1e-12)


def test_forward_mode_through_compiled_control_flow():
    W, h0, xs = RNN_ARGS
    v = rng.standard_normal(W.shape)
    j = lambda W, xs: fl.jvp(lambda W, xs: rnn_loss(W, h0, xs), (W, xs), (v, xs))  # noqa
    close(fl.compile(j)(W, xs), j(W, xs))
    a = np.array(3.0)
    d = lambda a: fl.jvp(lambda a: newton_sqrt(a)[0], (a,), (np.ones(()),))  # noqa
    close(fl.compile(d)(a), (np.sqrt(3.0), 0.5 / np.sqrt(3.0)), 1e-9)


def test_nested_control_flow_compiles_and_differentiates():
    w, xs = rng.standard_normal(3), rng.standard_normal((6, 3))

    def f(w, xs):  # a cond inside a scan, an integer counter in the carry, a tree of ys
        def step(c, x):
            h, n = c
            h = fl.cond(np.sum(x) > 0, lambda h: np.tanh(w * h + x), lambda h: h / 2 - x * w, h)
            return (h, n + 1), {"h": h, "n": n}

        (h, n), ys = fl.scan(step, (np.zeros(3), 0), xs)
        return np.sum(h**2) + np.sum(ys["h"] * ys["n"][:, None])

    close(fl.compile(f)(w, xs), f(w, xs))
    grad = lambda w, xs: fl.gradient(f, w, xs)  # noqa: E731
    close(fl.compile(grad)(w, xs), grad(w, xs))
    hess = lambda w, xs: fl.jacobian(lambda w: fl.gradient(f, w, xs)[0], w)  # noqa: E731
    close(fl.compile(hess)(w, xs), hess(w, xs))

    def g(a):  # a while_loop inside a cond, in forward mode
        newton = lambda a: fl.while_loop(  # noqa: E731
            lambda x: np.max(np.abs(x * x - a)) > 1e-10, lambda x: (x + a / x) / 2, a)
        return fl.cond(a[0] > 1, newton, lambda a: a, a)

    d = lambda a: fl.jvp(g, (a,), (np.ones(2),))  # noqa: E731
    a = np.array([2.0, 3.0])
    close(fl.compile(d)(a), (np.sqrt(a), 0.5 / np.sqrt(a)), 1e-9)


def test_compiled_while_loop_refuses_reverse_mode():
    f = fl.compile(lambda a: fl.gradient(lambda a: newton_sqrt(a)[0], a))
    with pytest.raises(fl.DifferentiationError, match="no reverse-mode derivative.*fl.scan"):
        f(np.array(2.0))


def test_random_draws_in_a_differentiated_body_are_refused():
    gen = np.random.default_rng(1)

    def f(w, xs):
        step = lambda c, x: (c + fl.dropout(w * x, 0.5, rng=gen), None)  # noqa: E731
        return np.sum(fl.scan(step, np.zeros(3), xs)[0])

    with pytest.raises(CompileError, match="draws random numbers"):
        fl.compile(lambda w, xs: fl.gradient(f, w, xs))(np.ones(3), np.ones((2, 3)))


def test_custom_rules_inside_control_flow_are_refused_when_differentiated():
    @fl.custom_vjp
    def clip_gradient(x):
        return x

    clip_gradient.defvjp(lambda x: (x, None), lambda res, g: (np.clip(g, -0.1, 0.1),))
    f = lambda x: np.sum(fl.scan(lambda c, x: (c + 3 * clip_gradient(x), None), 0.0, x)[0])  # noqa
    assert fl.compile(f)(np.ones(3)) == 9.0  # no derivative taken: fine
    close(fl.gradient(f, np.ones(3))[0], np.full(3, 0.1))  # eager: the rule is used
    with pytest.raises(fl.DifferentiationError, match="calls custom_vjp clip_gradient"):
        fl.compile(lambda x: fl.gradient(f, x))(np.ones(3))


# --- a small fuzz: compiled scan against a NumPy loop, its gradient against eager's -----------

@settings(max_examples=8, deadline=None)
@given(length=st.integers(0, 4), width=st.integers(1, 3), reverse=st.booleans(),
       seed=st.integers(0, 2**16))
def test_fuzz_compiled_scan(length, width, reverse, seed):
    r = np.random.default_rng(seed)
    w, h0 = r.standard_normal(width), r.standard_normal(width)
    xs = r.standard_normal((length, width))

    def loss(w, h0, xs):
        h, ys = fl.scan(lambda h, x: (np.sin(w * h) + x, h * x), h0, xs, reverse=reverse)
        return np.sum(h) + np.sum(ys**2)

    h, ys = h0.copy(), np.zeros((length, width))
    for t in (range(length - 1, -1, -1) if reverse else range(length)):
        h, ys[t] = np.sin(w * h) + xs[t], h * xs[t]
    close(fl.compile(loss)(w, h0, xs), np.sum(h) + np.sum(ys**2))
    grads = fl.compile(lambda *a: fl.gradient(loss, *a, zeros_for_none=True))(w, h0, xs)
    close(grads, fl.gradient(loss, w, h0, xs, zeros_for_none=True))


@pytest.mark.parametrize("form", ["scan", "while_loop", "cond"])
def test_a_body_writing_into_a_model_it_closes_over_is_refused(form):
    # traced once, the body's `m.count += 1` happened once at trace time: a compiled scan
    # of 3 steps counted 1 where the eager one counts 3 (silently)
    class Model:
        pass

    def run(m, xs):
        def step(c, x):
            m.count += 1.0
            return c + x * m.w, c

        if form == "scan":
            return fl.scan(step, np.zeros(2), xs)[0]
        if form == "while_loop":
            return fl.while_loop(lambda c: c[0] < 3.0, lambda c: step(c, xs[0])[0], np.zeros(2))
        return fl.cond(np.sum(xs) > 0, lambda c: step(c, xs[0])[0], lambda c: c, np.zeros(2))

    m = Model()
    m.w, m.count = np.ones(2), np.array(0.0)
    np.testing.assert_array_equal(run(m, np.ones((3, 2))), 3.0 if form != "cond" else 1.0)
    assert m.count == (3.0 if form != "cond" else 1.0)  # eagerly: plain Python
    m.count = np.array(0.0)
    with pytest.raises(fl.CompileError, match="wrote into an array of the code around it"):
        fl.compile(run)(m, np.ones((3, 2)))
    assert m.count == 0.0


def test_the_untaken_branch_writing_into_the_differentiated_model_is_refused_by_name():
    # the check trace of an eager fl.cond's untaken branch takes its operations, so it cannot
    # write into the model the gradient traces: refused naming the branch, as for fl.cond
    # (was refused as a compiled body, "traced once", or a bare engine error)
    class Model:
        pass

    m = Model()
    m.w, m.count = np.ones(2), np.array(0.0)

    def f(m):
        def untaken(x):
            m.count += 1.0
            return x

        return np.sum(fl.cond(True, lambda x: x * m.w, untaken, np.ones(2)))

    with pytest.raises(CompileError, match="false_fn `untaken` wrote into a traced array .* "
                                           "fl.cond traces the branch it does not take"):
        fl.gradient(f, m)
    assert m.count == 0.0


def test_writes_in_another_threads_gradient_do_not_refuse_a_body():
    # the watchers were one list for all threads: a write in place in another thread's
    # eager gradient (a lower level, begun first) was counted against the scan body traced
    import threading

    started, traced, written = threading.Event(), threading.Event(), threading.Event()

    def other():
        def loss(x):
            y = x * 2.0
            started.set()
            traced.wait(10)
            y += 1.0  # in place, while the main thread traces the scan's body
            written.set()
            return np.sum(y)

        fl.gradient(loss, np.ones(3))

    def body(c, x):
        traced.set()
        written.wait(10)
        return c + x, c

    thread = threading.Thread(target=other)
    thread.start()
    started.wait(10)
    run = fl.compile(lambda xs: fl.scan(body, np.zeros(2), xs)[0])
    np.testing.assert_array_equal(run(np.ones((3, 2))), 3.0)
    thread.join(10)


def _catches(x):
    # float(x) of a traced value, caught: eagerly x + x[0], traced the fallback x + 0
    try:
        y = float(x[0]) * np.ones_like(x)
    except Exception:
        y = 0 * x
    return x + y


@pytest.mark.parametrize("program", [
    lambda x: fl.cond(np.sum(x) > 0, _catches, lambda x: x * 1.0, x),
    lambda x: fl.scan(lambda c, xi: (c + _catches(xi[None])[0], c), np.zeros(()), x)[0],
    lambda x: fl.while_loop(lambda c: c[1] < 2, lambda c: (_catches(c[0]), c[1] + 1),
                            (x, np.int64(0)))[0],
    lambda x: fl.gradient(lambda x: np.sum(fl.cond(np.sum(x) > 0, _catches,
                                                   lambda x: x * 1.0, x) ** 2), x)[0],
    lambda x: fl.cond(np.sum(x) > 0,  # nested: a body's refusal reaches the outermost trace
                      lambda x: fl.scan(lambda c, xi: (c + _catches(xi[None])[0], c),
                                        np.zeros(()), x)[0],
                      lambda x: np.sum(x), x),
], ids=["cond", "scan", "while_loop", "gradient of cond", "scan in cond"])
def test_a_refusal_caught_in_a_body_is_raised(program):
    # before, the refusal of float(x) caught inside a branch or loop body stayed on the
    # body's trace: fl.cond compiled x + 0 ([1, 2] where eagerly [2, 3]), fl.scan 3 for 6,
    # the compiled gradient [2, 4] where eager fl.gradient refuses
    x = np.array([1.0, 2.0])
    assert fl.cond(True, _catches, lambda x: x * 1.0, x).tolist() == [2.0, 3.0]  # by hand
    with pytest.raises(CompileError, match=r"fl\.(cond|scan|while_loop)'s .*float\(x\) needs"):
        fl.compile(program)(x)


def _guarded_index(table):
    """A branch indexing past the end only where the other branch is taken."""
    return lambda i: fl.cond(i < len(table), lambda i: np.array(table, like=i)[i],
                             lambda i: np.float64(-1.0), i)


@pytest.mark.parametrize("backend", ["numpy", "xla"])
def test_cond_a_branch_not_taken_may_fail_on_the_values(backend):
    """A branch that the values do not take failed on them: eagerly the check of the other
    branch's outputs raised its IndexError (an index past the end) or ValueError (a
    geometric sequence from 0), and a compiled function first called with such values
    failed to trace. Eagerly the check is skipped; compiled, that branch is traced on
    ones, and each call runs only the branch it takes."""
    if backend == "xla":
        pytest.importorskip("jax")
    pick = _guarded_index(np.arange(3.0) + 10)
    assert pick(np.array(3)) == -1.0 and pick(np.array(1)) == 11.0
    seq = lambda a, p: fl.cond(p > 0, lambda a: np.geomspace(a, 10.0, 4),  # noqa: E731
                               lambda a: a * np.ones(4), a)
    np.testing.assert_array_equal(seq(0.0, -1.0), 0.0)
    compiled = fl.compile(pick, backend=backend)
    assert [float(compiled(np.array(i))) for i in (3, 1, 2, 5)] == [-1.0, 11.0, 12.0, -1.0]
    compiled = fl.compile(seq, backend=backend)
    np.testing.assert_array_equal(compiled(np.array(0.0), np.array(-1.0)), 0.0)
    np.testing.assert_allclose(compiled(np.array(1.0), np.array(1.0)), np.geomspace(1.0, 10, 4))
    with pytest.raises(ValueError, match="Geometric sequence cannot include zero"):
        compiled(np.array(0.0), np.array(1.0))  # the branch taken fails: raised, as eagerly
    with pytest.raises(ValueError, match="Geometric sequence cannot include zero"):
        seq(0.0, 1.0)


def test_a_loop_body_that_does_not_run_may_fail_on_the_values():
    """A while_loop whose test is false on the first call's values, or a scan over no
    steps, never runs its body on them; the body was traced on them anyway, and failed (a
    geometric sequence from 0): compiled, and for an empty eager scan. It is traced on ones
    there now; a body that runs on the values still raises."""
    def shrink(a):
        return fl.while_loop(lambda c: c > 0.5,
                             lambda c: np.geomspace(c, 1.0, 3)[1] - 0.3, a)

    def means(xs):
        return fl.scan(lambda c, x: (c + x, np.geomspace(x, 1.0, 3)[1]), np.float64(0.0), xs)

    compiled = fl.compile(shrink)
    assert compiled(np.array(0.0)) == 0.0
    assert compiled(np.array(2.0)) == pytest.approx(shrink(np.array(2.0)))
    for run in (means, fl.compile(means)):
        carry, ys = run(np.zeros(0))
        assert carry == 0.0 and ys.shape == (0,) and ys.dtype == np.float64
    with pytest.raises(ValueError, match="Geometric sequence cannot include zero"):
        fl.compile(means)(np.zeros(2))


def test_cond_still_reports_a_branch_whose_code_does_not_fit():
    """Review of 571dcff: the eager check skipped every ValueError of the branch not taken,
    so a shape fault in it (a layer given the wrong width) went unreported eagerly while
    fl.compile raised it. The branch is traced again on stand-ins: a fault of its code fails
    there too and is raised; a Cholesky factor of a matrix that is not positive definite,
    in a branch not taken, compiles (an identity stand-in)."""
    layer = fl.Dense(3, 4)
    bad = lambda x: fl.cond(np.array(True), lambda x: x * 2.0,  # noqa: E731
                            lambda x: layer(x).sum(axis=1, keepdims=True) * np.ones((2, 5)), x)
    with pytest.raises(ValueError, match=r"Dense\(3 => 4\) expects inputs of shape \(N, 3\)"):
        bad(np.ones((2, 5)))
    factor = lambda a, p: fl.cond(p, np.linalg.cholesky, lambda a: a * 0.0, a)  # noqa: E731
    a = np.array([[1.0, 2.0], [2.0, 1.0]])  # not positive definite
    np.testing.assert_array_equal(fl.compile(factor)(a, np.array(False)), 0.0)
    spd = np.array([[4.0, 2.0], [2.0, 3.0]])
    np.testing.assert_allclose(fl.compile(factor)(spd, np.array(True)),
                               np.linalg.cholesky(spd))
