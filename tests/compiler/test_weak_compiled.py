"""Python numbers in compiled programs are weak, as eagerly (NumPy 2's NEP 50).

A Python float is weak in NumPy's promotion (``x32 * 0.5`` is float32), a NumPy float64
strong. ``fl.compile`` traced the numbers a class lists in ``hyperparameters`` as strong
float64 inputs, so a user layer's ``x32 * self.k`` computed in float64 compiled and in
float32 eagerly (other dtypes and values of the outputs, gradients and written parameters,
silently), and the gradient with respect to a Python float came back as ``np.float64``
where eager code gives a Python float. Each path a number takes into a program is run here
eagerly and compiled (both back ends): the same types, dtypes and bits (XLA's reductions
sum in another order: its float32 sums to rounding).
"""

import warnings

import numpy as np
import pytest

import fluxml as fl
from fluxml.tree import flatten

X = (np.arange(1.0, 4.0) / 7).astype(np.float32)


class Hyper:
    """A user layer with traced Python numbers (one a tuple's) and a float32 weight."""

    hyperparameters = ("k", "pair")

    def __init__(self, k=0.1):
        self.k, self.pair, self.w = k, (0.3, 0.7), np.ones(3, np.float32)


def field(m, x):
    return x * m.k * m.w + x * m.pair[1]


def python_arithmetic(m, x):  # (1 - k) / 3 ... of traced numbers: Python numbers too
    a = -m.k
    return x * a + x * ((1 - m.k) / 3.0) + x * m.k ** 2 + x * abs(a) + x * np.sin(m.k) \
        + x * np.multiply(m.k, 1.0)  # (the last two are NumPy float64s: strong)


def gradient_step(m, x):
    """A training step: the loss, the gradient (of the weight and of the numbers) and the
    weight written."""
    loss, (g,) = fl.withgradient(lambda m: np.sum(field(m, x) ** 2), m)
    m.w -= g.w * m.k
    return loss, g


def cond_closure(m, x):
    return fl.cond(np.sum(x) > 0, lambda x: x * m.k, lambda x: x / m.k, x)


def cond_operand(m, x):  # (an operand is a 0-d array, strong, eagerly too)
    return fl.cond(np.sum(x) > 0, lambda x, k: x * k, lambda x, k: x - k, x, m.k)


def scan_closure(m, x):
    return fl.scan(lambda c, xi: (c * m.k + xi, c * 2.0), np.zeros((), np.float32), x)


def while_closure(m, x):
    return fl.while_loop(lambda c: np.sum(c) < 5, lambda c: c + x * m.k, x)


def gradient_of_a_number(m, x):
    return fl.gradient(lambda k: np.sum(x * k * k), m.k)[0]


def numbers_out(m, x):
    return m.k * 2.0, 1 - m.k, x * (1 - m.k)


def jvp_inside(m, x):
    return fl.jvp(lambda k: x * k * k, (m.k,), (1.0,))


def jvp_tangent_of_a_number(m, x):  # (a float's tangent, even a NumPy one, is weak too:
    # the identity's comes back a Python float, as eagerly)
    out = fl.jvp(lambda k: (k, k + 1.0), (m.k,), (1.0,))
    t32 = fl.jvp(lambda k: (k, x * k), (m.k,), (np.float32(2.0),))
    return out, t32, x * out[1][0]


def gradient_through_scan(m, x):  # (the vjp's bodies get k weak, as the body saw it)
    def loss(m):
        return np.sum(fl.scan(lambda c, xi: (c * m.k + xi, c), np.zeros((), np.float32), x)[0])

    return fl.withgradient(loss, m)


def jvp_of_a_product(m, x):  # (k * k's tangent, t * k + k * t, is a Python float too)
    return fl.jvp(lambda k: x * (k * k), (m.k,), (1.0,)), \
        fl.jvp(lambda k: x * (k * k - k), (m.k,), (m.k,))


def products(m, x):  # (np.dot and the like take a Python float as a float64 array: strong)
    return np.dot(x, m.k), np.inner(m.k, x), np.multiply.outer(x, m.k), \
        fl.gradient(lambda k: np.sum(np.dot(x, k)), m.k)[0]


PATHS = [field, python_arithmetic, gradient_step, cond_closure, cond_operand, scan_closure,
         while_closure, gradient_of_a_number, numbers_out, jvp_inside, jvp_of_a_product,
         products, gradient_through_scan, jvp_tangent_of_a_number]


def _same(eager, compiled, backend):
    a, _ = flatten(eager)
    b, _ = flatten(compiled)
    assert len(a) == len(b)
    for p, q in zip(a, b):
        assert type(p) is type(q), (p, q)
        assert np.asarray(p).dtype == np.asarray(q).dtype, (p, q)
        if backend == "numpy":
            np.testing.assert_array_equal(p, q)
        else:
            np.testing.assert_allclose(p, q, rtol=2e-7)


@pytest.mark.parametrize("backend", ["numpy", "xla"])
@pytest.mark.parametrize("fn", PATHS, ids=[f.__name__ for f in PATHS])
def test_compiled_equals_eager(fn, backend):
    if backend == "xla":
        pytest.importorskip("jax")
    eager_model, model = Hyper(), Hyper()
    run = fl.compile(fn, backend=backend, background=False)
    for k in (0.1, 0.35):  # a new value: the same program, as eagerly
        eager_model.k = model.k = k
        _same(fn(eager_model, X), run(model, X), backend)
        _same(eager_model.w, model.w, backend)
    assert run.traces == 1


@pytest.mark.parametrize("backend", ["numpy", "xla"])
def test_the_gradient_of_a_python_float_is_a_python_float(backend):
    if backend == "xla":
        pytest.importorskip("jax")

    def grad(w, s):
        return fl.gradient(lambda s: np.sum(w * s * s), s)[0]

    g = fl.compile(grad, backend=backend, background=False)(X, 0.5)
    assert type(g) is float and g == pytest.approx(grad(X, 0.5), rel=1e-7)


def test_a_numpy_float64_hyperparameter_stays_strong():
    m = Hyper(np.float64(0.1))
    run = fl.compile(field)
    out = run(m, X)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, field(m, X))
    m.k = 0.1  # a Python float: another program, float32
    assert run(m, X).dtype == np.float32 and run.traces == 2


def test_the_ir_prints_a_weak_number_as_its_python_type():
    run = fl.compile(numbers_out)
    run(Hyper(), X)
    text = str(run.ir)
    assert text.startswith("{ lambda v1:float v2:float v3:float v4:f32[3] v5:f32[3] .")
    assert "v6:float = multiply v1 2.0" in text and "v7:float = subtract 1 v1" in text
    assert "v6 = m_k * 2.0" in run.source  # (Python arithmetic: a Python number)


def test_numpy_scalar_results_of_python_numbers_stay_numpy_scalars():
    """``np.multiply(k, 1.0)`` is a NumPy float64 (strong): its line in the generated code
    calls the ufunc, as ``k * 1.0`` would give a Python float."""
    run = fl.compile(lambda m, x: x * np.multiply(m.k, 1.0))
    assert run(Hyper(), X).dtype == np.float64
    assert "np.multiply(m_k, 1.0)" in run.source


class Gate:
    """A user layer between Dense layers whose scale is a traced number."""

    hyperparameters = ("k",)

    def __init__(self):
        self.k = 0.3

    def __call__(self, x):
        return np.tanh(x) * self.k + x * (1 - self.k)


@pytest.mark.parametrize("backend", ["numpy", "xla"])
def test_training_with_a_schedule_and_a_traced_number_matches_eager(backend):
    """fl.train, eager and compiled, with a learning-rate schedule (a new Python float each
    step, one trace): the same losses and float32 weights (bit for bit on NumPy); before,
    the compiled forward pass ran in float64 after the Gate (Dense warned of float64
    input) and the weights came out otherwise."""
    if backend == "xla":
        pytest.importorskip("jax")
    rng = np.random.default_rng(0)
    data = [(rng.standard_normal((8, 3)).astype(np.float32),
             rng.standard_normal((8, 2)).astype(np.float32)) for _ in range(4)]

    def run(compile):
        model = fl.Chain(fl.Dense(3, 4), Gate(), fl.Dense(4, 2))
        for layer in (model.layers[0], model.layers[2]):
            layer.weight[...] = np.linspace(-1, 1, layer.weight.size).reshape(
                layer.weight.shape)
        history = fl.train(lambda m, x, y: np.mean((m(x) - y) ** 2), model, data,
                           fl.setup(fl.Adam(0.01), model), epochs=2, progress=False,
                           callbacks=[fl.LRSchedule(fl.ExpDecay(0.01, 0.9))],
                           compile=compile and backend)
        return model, history

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (eager, h_eager), (compiled, h_compiled) = run(False), run(True)
    for a, b in ((eager.layers[0].weight, compiled.layers[0].weight),
                 (eager.layers[2].bias, compiled.layers[2].bias)):
        assert a.dtype == b.dtype == np.float32
        if backend == "numpy":
            np.testing.assert_array_equal(a, b)
        else:
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h_eager.losses, h_compiled.losses, rtol=1e-6)


class Ints:
    """A user layer with a traced Python int."""

    hyperparameters = ("n",)

    def __init__(self, n):
        self.n = n


INT_CASES = [  # (function, a value of n beyond int64 somewhere, one within)
    (lambda m, x: x * 2 ** m.n, 64, 5),
    (lambda m, x: x / 2 ** m.n, 70, 3),
    (lambda m, x: x * m.n ** 2, 2 ** 33, 7),
    (lambda m, x: x * abs(-m.n), -2 ** 63, -4),
    (lambda m, x: x * (m.n * m.n - m.n // 3 + m.n % 5), 2 ** 40, 11),
]


@pytest.mark.parametrize("case", range(len(INT_CASES)))
def test_arithmetic_on_traced_ints_is_pythons(case):
    """Python ints are never traced eagerly: ``2 ** n`` is Python's, exact. Compiled, it ran
    as NumPy's int64 ufuncs: ``x * 2 ** n`` gave 0 for n = 64, ``x / 2 ** n`` inf for
    n = 70, ``x * abs(-n)`` a negative result for n = -2**63 (silent). Each value of n
    reuses the program."""
    f, big, small = INT_CASES[case]
    run = fl.compile(f, background=False)
    for n in (big, small):
        expected = f(Ints(n), X)
        out = run(Ints(n), X)
        assert out.dtype == expected.dtype == np.float32
        np.testing.assert_array_equal(out, expected)
    assert run.traces == 1


@pytest.mark.parametrize("case", range(len(INT_CASES)))
def test_xla_refuses_a_traced_int_beyond_int64(case):
    """XLA has no int beyond int64: a result there is an error naming it, not a wrapped one;
    within it, Python's value."""
    pytest.importorskip("jax")
    f, big, small = INT_CASES[case]
    run = fl.compile(f, backend="xla", background=False)
    np.testing.assert_allclose(run(Ints(small), X), f(Ints(small), X), rtol=1e-7)
    with pytest.raises((OverflowError, ValueError), match="backend='numpy'"):
        run(Ints(big), X)


@pytest.mark.parametrize("backend", ["numpy", "xla"])
def test_a_traced_int_to_a_negative_power_is_a_float(backend):
    """``n ** -1`` of a Python int is a float (Python's); compiled, it raised NumPy's
    "Integers to negative integer powers are not allowed"."""
    if backend == "xla":
        pytest.importorskip("jax")
    f = lambda m, x: (x * m.n ** -1, m.n ** -2, m.n / 2)  # noqa: E731
    out = fl.compile(f, backend=backend, background=False)(Ints(3), X)
    expected = f(Ints(3), X)
    _same(expected, out, backend)
    assert out[1] == 1 / 9 and out[2] == 1.5


class Pair:
    hyperparameters = ("n", "j")

    def __init__(self, n, j):
        self.n, self.j = n, j


@pytest.mark.parametrize("n, j", [(np.int64(3), 4), (3, 4), (np.int64(3), np.int64(4))])
def test_the_gradient_of_an_int_result_is_none_compiled_too(n, j):
    """A function of ints alone returns an int: its gradient is None, eagerly; compiled, the
    traced int was refused ("gradient needs f to return a real scalar, but it returned shape
    ()")."""
    def f(m, x):
        return fl.gradient(lambda x, m: np.sum(np.maximum(m.n, m.j)), x, m)

    x = np.array([0.1, 0.2])
    eager = f(Pair(n, j), x)
    compiled = fl.compile(f, background=False)(Pair(n, j), x)
    assert eager[0] is None and compiled[0] is None
    assert vars(compiled[1]) == vars(eager[1])


class Both:
    hyperparameters = ("k", "n")

    def __init__(self):
        self.k, self.n = 0.3, 3


@pytest.mark.parametrize("backend", ["numpy", "xla"])
def test_the_gradient_through_scan_of_a_body_closing_over_traced_ints(backend):
    """The vjp's bodies take the captured ints (``2 ** n`` computed around the loop) as the
    Python ints they were, weak: they were int64 arrays, so the program said the body's
    carry was float64 (XLA refused it, "scan body carry float32[] vs float64[]")."""
    if backend == "xla":
        pytest.importorskip("jax")

    def f(m, x):
        def loss(m):
            def body(c, xi):
                return c * m.k * (m.n ** 2 - 1) / 2 ** m.n + xi, c
            return np.sum(fl.scan(body, np.zeros((), np.float32), x)[0])
        return fl.withgradient(loss, m)

    _same(f(Both(), X), fl.compile(f, backend=backend, background=False)(Both(), X), backend)


@pytest.mark.parametrize("backend", ["numpy", "xla"])
@pytest.mark.parametrize("rule", [fl.Momentum(0.1, 0), fl.Descent(1),
                                  fl.OptimiserChain(fl.ClipGrad(1), fl.WeightDecay(1),
                                                    fl.Descent(0.1))], ids=repr)
def test_a_compiled_step_with_an_int_hyperparameter(backend, rule):
    # (review) rho=0 or eta=1 made the traced number a Python int, which has no astype: a
    # compiled step calling fl.update failed with AttributeError (it ran before)
    if backend == "xla":
        pytest.importorskip("jax")
    x = np.ones((4, 3), np.float32)

    def step(m, s, x):
        loss, (g,) = fl.withgradient(lambda m: np.mean(m(x) ** 2), m)
        fl.update(s, m, g)
        return loss

    made = [fl.Dense(3, 2, rng=np.random.default_rng(0)) for _ in range(2)]
    states = [fl.setup(rule, m) for m in made]
    compiled = fl.compile(step, backend=backend)
    for _ in range(3):
        compiled(made[0], states[0], x)
        step(made[1], states[1], x)
    assert made[0].weight.dtype == np.float32
    np.testing.assert_allclose(made[0].weight, made[1].weight, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("backend", ["numpy", "xla"])
def test_bitwise_operators_on_a_traced_int_and_where_of_one(backend):
    # (review) n & m gave float64 where plain Python gives an int (x32 * (n & m) float32):
    # bitwise operators are refused; np.outer/ravel/cumsum/tile of a traced int called an
    # array's method on a Python int at run time (AttributeError); np.where and np.clip of
    # one keep x32 float32 (a first fix passed it as an int64 array: float64, silently)
    if backend == "xla":
        pytest.importorskip("jax")

    class Hyper:
        hyperparameters = ("n", "m")

        def __init__(self):
            self.n, self.m = 2, 1

    h, x = Hyper(), np.arange(1, 4, dtype=np.float32)
    for f in (lambda h, x: np.where(x > 1, h.n, x), lambda h, x: np.clip(x, 0, h.n),
              lambda h, x: np.outer(x, h.n), lambda h, x: x * np.ravel(h.n),
              lambda h, x: x * np.cumsum(h.n), lambda h, x: x * np.tile(h.n, 3)):
        want = f(h, x)
        got = fl.compile(f, backend=backend, background=False)(h, x)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    for f in (lambda h, x: x * (h.n & h.m), lambda h, x: x * (~h.n)):
        with pytest.raises(fl.DifferentiationError, match="bitwise operator .* on traced Python"):
            fl.compile(f, backend=backend)(h, x)
