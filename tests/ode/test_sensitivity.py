"""Gradients through solve: every sensealg against finite differences and against each other,
trees, stiff solvers, and the errors that replace a wrong gradient."""

import warnings

import numpy as np
import pytest

import fluxml as fl

ALGS = [fl.ode.Direct(), fl.ode.InterpolatingAdjoint(),
        fl.ode.InterpolatingAdjoint(checkpointing=True), fl.ode.BacksolveAdjoint(),
        fl.ode.QuadratureAdjoint()]


def lotka(t, u, p):
    a, b, c, d = p
    return np.stack([a * u[0] - b * u[0] * u[1], -c * u[1] + d * u[0] * u[1]])


P = np.array([1.5, 1.0, 3.0, 1.0])
U0 = np.array([1.0, 1.0])
TS = np.linspace(0.0, 1.5, 4)  # includes t0: the loss reads u0 directly too
W = np.arange(8.0).reshape(4, 2) / 8


def lv_loss(u0, p, alg=None):
    sol = fl.ode.solve(lotka, u0, (0.0, 1.5), p, saveat=TS, rtol=1e-9, atol=1e-9, sensealg=alg)
    return np.sum(W * sol.u**2)


def central_difference(f, x, eps=1e-6):
    g = np.zeros_like(x)
    for i in range(x.size):
        d = np.zeros_like(x)
        d.flat[i] = eps
        g.flat[i] = (f(x + d) - f(x - d)) / (2 * eps)
    return g


@pytest.fixture(scope="module")
def lv_reference():
    return (central_difference(lambda u: lv_loss(u, P), U0),
            central_difference(lambda p: lv_loss(U0, p), P))


@pytest.mark.parametrize("alg", ALGS, ids=repr)
def test_gradients_match_finite_differences_and_each_other(alg, lv_reference):
    gu, gp = fl.gradient(lambda u, p: lv_loss(u, p, alg), U0, P)
    np.testing.assert_allclose(gu, lv_reference[0], rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(gp, lv_reference[1], rtol=2e-5, atol=1e-6)


def test_parameters_as_a_tree_with_static_parts():
    def f(t, u, p):
        return p["scale"] * np.tanh(p["layer"][0] @ u + p["layer"][1]) - p["decay"] * u

    rng = np.random.default_rng(0)
    p = {"layer": (rng.normal(size=(3, 3)), rng.normal(size=3)), "decay": 0.5, "scale": 2.0,
         "name": "rhs", "n": 3}
    u0 = np.array([0.3, -0.2, 0.1])

    def loss(p, alg):
        sol = fl.ode.solve(f, u0, (0.0, 1.0), p, saveat=[0.5, 1.0], rtol=1e-10, atol=1e-10,
                           sensealg=alg)
        return np.sum(sol.u[-1] ** 2) + np.sum(sol.u[0])

    w = p["layer"][0]

    def with_w(x):
        return dict(p, layer=(x, p["layer"][1]))

    fd_w = central_difference(lambda x: loss(with_w(x), None), w)
    fd_decay = (loss(dict(p, decay=0.5 + 1e-6), None)
                - loss(dict(p, decay=0.5 - 1e-6), None)) / 2e-6
    for alg in (fl.ode.Direct(), fl.ode.InterpolatingAdjoint(), fl.ode.QuadratureAdjoint()):
        (g,) = fl.gradient(lambda p: loss(p, alg), p)
        np.testing.assert_allclose(g["layer"][0], fd_w, rtol=1e-5, atol=1e-8)
        assert isinstance(g["decay"], float) and abs(g["decay"] - fd_decay) < 1e-5
        assert g["name"] is None and g["n"] is None


def test_tree_state_with_an_adjoint():
    def f(t, u, p):
        return {"x": u["v"], "v": -p * u["x"]}

    def loss(k, alg):
        sol = fl.ode.solve(f, {"x": np.ones(2), "v": np.zeros(2)}, (0.0, 1.0), k,
                           saveat=[1.0], rtol=1e-10, atol=1e-10, sensealg=alg)
        return np.sum(sol.u["x"])

    exact = fl.gradient(lambda k: 2 * np.cos(np.sqrt(k)), 4.0)[0]
    for alg in (fl.ode.Direct(), fl.ode.InterpolatingAdjoint(), fl.ode.BacksolveAdjoint()):
        assert abs(fl.gradient(lambda k: loss(k, alg), 4.0)[0] - exact) < 1e-7


def test_linear_systems_against_the_exponential_frechet_derivative():
    """Fuzz: for du/dt = M u, d/dM sum(w * u(1)) is an independent closed form (SciPy)."""
    linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(1)
    for _ in range(2):
        n = rng.integers(2, 4)
        M, u0, w = rng.normal(size=(n, n)) / 2, rng.normal(size=n), rng.normal(size=n)
        expected = np.array([[w @ linalg.expm_frechet(M, np.outer(np.eye(n)[i], np.eye(n)[j]),
                                                      compute_expm=False) @ u0
                              for j in range(n)] for i in range(n)])
        for alg in (fl.ode.Direct(), fl.ode.InterpolatingAdjoint()):
            g = fl.gradient(lambda M: np.sum(w * fl.ode.solve(
                lambda t, u, M: M @ u, u0, (0.0, 1.0), M, saveat=[1.0], rtol=1e-10,
                atol=1e-10, sensealg=alg).u[-1]), M)[0]
            np.testing.assert_allclose(g, expected, rtol=1e-6, atol=1e-8)


def test_forward_mode_through_a_solve():
    _, tangent = fl.jvp(lambda p: lv_loss(U0, p), (P,), (np.array([1.0, 0, 0, 0]),))
    fd = (lv_loss(U0, P + [1e-6, 0, 0, 0]) - lv_loss(U0, P - [1e-6, 0, 0, 0])) / 2e-6
    assert abs(tangent - fd) < 1e-5 * max(1, abs(fd))


def test_float32_gradients_stay_float32():
    g = fl.gradient(lambda u: np.sum(fl.ode.solve(
        lambda t, u, p: -u, u, (0.0, 1.0), saveat=[1.0], rtol=1e-4, atol=1e-6,
        sensealg=fl.ode.InterpolatingAdjoint()).u), np.ones(2, np.float32))[0]
    assert g.dtype == np.float32
    np.testing.assert_allclose(g, np.exp(-1.0), rtol=1e-4)


def stiff(t, u, p):
    return np.stack([-p[0] * u[0] + p[1] * u[1], p[0] * u[0] - p[1] * u[1] - 0.5 * u[1] ** 2])


@pytest.mark.parametrize("solver, alg", [
    (fl.ode.Rodas5(), fl.ode.Direct()),
    (fl.ode.Rodas5(), fl.ode.InterpolatingAdjoint()),
    pytest.param(fl.ode.Rodas5(), fl.ode.QuadratureAdjoint(), marks=pytest.mark.slow),
    pytest.param(fl.ode.Rosenbrock23(), fl.ode.Direct(), marks=pytest.mark.slow),
    pytest.param(fl.ode.Rosenbrock23(), fl.ode.InterpolatingAdjoint(), marks=pytest.mark.slow),
], ids=repr)
def test_stiff_solvers_have_gradients(solver, alg):
    p = np.array([1000.0, 1.0])
    u0 = np.array([1.0, 0.0])
    tol = 1e-7 if isinstance(solver, fl.ode.Rodas5) else 1e-6

    def loss(p, alg=None):
        sol = fl.ode.solve(stiff, u0, (0.0, 1.0), p, solver=solver, saveat=[0.5, 1.0],
                           rtol=tol, atol=tol, sensealg=alg)
        return np.sum(sol.u[:, 1])

    fd = central_difference(lambda q: loss(q), p, eps=1e-4)
    g = fl.gradient(lambda p: loss(p, alg), p)[0]
    np.testing.assert_allclose(g, fd, rtol=5e-3 if tol > 1e-7 else 1e-4, atol=1e-7)


def test_an_adjoint_refuses_a_closure_over_traced_values_and_names_direct():
    def loss(k, u0, alg):
        return fl.ode.solve(lambda t, u, p: -k * u, u0, (0.0, 1.0), saveat=[1.0],
                            sensealg=alg).u[-1, 0]

    with pytest.raises(fl.DifferentiationError, match=r"closes over .*sensealg=Direct\(\)"):
        fl.gradient(lambda k, u0: loss(k, u0, fl.ode.InterpolatingAdjoint()), 2.0, np.ones(1))
    gk, gu = fl.gradient(lambda k, u0: loss(k, u0, None), 2.0, np.ones(1))
    assert abs(gk + np.exp(-2.0)) < 1e-6 and abs(gu[0] - np.exp(-2.0)) < 1e-6
    # with nothing traced in u0 or p the solve is recorded step by step: still right
    only_k = fl.gradient(lambda k: loss(k, np.ones(1), fl.ode.InterpolatingAdjoint()), 2.0)[0]
    assert abs(only_k + np.exp(-2.0)) < 1e-6


def test_backsolve_refuses_a_problem_unstable_backwards_in_time():
    def loss(k, alg):
        return np.sum(fl.ode.solve(lambda t, u, k: -k * u, np.ones(2), (0.0, 3.0), k,
                                   saveat=[3.0], rtol=1e-6, atol=1e-9, sensealg=alg).u)

    with pytest.raises(fl.ode.SolveError, match=r"BacksolveAdjoint.*InterpolatingAdjoint"):
        fl.gradient(lambda k: loss(k, fl.ode.BacksolveAdjoint()), 20.0)
    g = fl.gradient(lambda k: loss(k, fl.ode.InterpolatingAdjoint()), 20.0)[0]
    assert abs(g - 2 * -3.0 * np.exp(-60.0)) < 1e-9


def test_times_carry_no_derivative_and_dense_output_says_so_under_an_adjoint():
    with pytest.raises(fl.DifferentiationError, match="tspan and saveat carry no derivative"):
        fl.gradient(lambda t1: fl.ode.solve(lambda t, u, p: -u, np.ones(1), (0.0, t1)).u[-1, 0],
                    1.0)

    def dense(u0):
        sol = fl.ode.solve(lambda t, u, p: -u, u0, (0.0, 1.0), saveat=[1.0],
                           sensealg=fl.ode.QuadratureAdjoint())
        return sol(0.5)[0]

    with pytest.raises(fl.DifferentiationError, match="sol\\(t\\) carries no derivative"):
        fl.gradient(dense, np.ones(1))
    direct = fl.gradient(lambda u0: fl.ode.solve(lambda t, u, p: -u, u0, (0.0, 1.0))(0.5)[0],
                         np.ones(1))[0]
    assert abs(direct[0] - np.exp(-0.5)) < 1e-6


def test_second_derivatives_through_direct_and_a_clear_refusal_from_an_adjoint():
    def final(k, alg):
        return fl.ode.solve(lambda t, u, k: -k * u, np.ones(1), (0.0, 1.0), k, saveat=[1.0],
                            rtol=1e-10, atol=1e-10, sensealg=alg).u[-1, 0]

    second = fl.gradient(lambda k: fl.gradient(lambda k: final(k, None), k)[0], 0.5)[0]
    assert abs(second - np.exp(-0.5)) < 1e-6  # d2/dk2 exp(-k) at k = 0.5
    with pytest.raises(fl.DifferentiationError, match="higher order .*sensealg=Direct"):
        fl.gradient(lambda k: fl.gradient(
            lambda k: final(k, fl.ode.InterpolatingAdjoint()), k)[0], 0.5)


def test_checkpoints_between_the_saved_times_give_the_same_gradient():
    seen = []

    def loss(p, alg):
        sol = fl.ode.solve(lotka, U0, (0.0, 1.5), p, saveat=[1.5], rtol=1e-9, atol=1e-9,
                           sensealg=alg)
        seen.append((sol.t.tolist(), sol.u.shape, sol.stats.nfe))
        return np.sum(sol.u**2)

    plain = fl.gradient(lambda p: loss(p, fl.ode.InterpolatingAdjoint()), P)[0]
    for checkpoints in (3, [0.2, 0.9]):
        alg = fl.ode.InterpolatingAdjoint(checkpointing=True, checkpoints=checkpoints)
        np.testing.assert_allclose(fl.gradient(lambda p: loss(p, alg), P)[0], plain,
                                   rtol=1e-6)
        assert seen[-1][:2] == ([1.5], (1, 2))  # only the requested output
    with pytest.raises(ValueError, match="checkpointing=True"):
        fl.ode.InterpolatingAdjoint(checkpoints=3)


@pytest.mark.parametrize("sensealg", [fl.ode.Direct(), fl.ode.InterpolatingAdjoint(),
                                      fl.ode.BacksolveAdjoint(), fl.ode.QuadratureAdjoint()],
                         ids=lambda s: type(s).__name__)
def test_parameter_gradient_of_a_backward_solve(sensealg):
    """Solving from t = 2 back to 0: the quadrature of the parameter gradient keeps the
    orientation of time (it once took |h| and flipped the sign; found by review)."""
    f = lambda t, u, p: -p * u  # noqa: E731
    u0, p = np.array([1.0, 2.0]), np.array([0.5, 1.5])
    loss = lambda p: np.sum(fl.ode.solve(f, u0, (2.0, 0.0), p, sensealg=sensealg,  # noqa: E731
                                         rtol=1e-10, atol=1e-12).u[-1])
    np.testing.assert_allclose(fl.gradient(loss, p)[0], 2 * u0 * np.exp(2 * p), rtol=1e-6)


def test_checkpoints_keep_a_repeated_save_time():
    """A save time listed twice is returned twice with extra checkpoints too (the union with
    the checkpoints once dropped the repeat: a shorter sol.u and a wrong loss; found by
    tests/ode/fuzz_sensitivity.py)."""
    alg = fl.ode.InterpolatingAdjoint(checkpointing=True, checkpoints=2)
    seen = []

    def loss(k):
        sol = fl.ode.solve(lambda t, u, k: -k * u, np.ones(1), (0.0, 1.0), k,
                           saveat=[0.5, 0.5, 1.0], rtol=1e-10, atol=1e-12, sensealg=alg)
        seen.append(list(sol.t))
        return np.sum(sol.u)

    k = 1.5
    g = fl.gradient(loss, k)[0]
    assert seen[-1] == [0.5, 0.5, 1.0]
    # d/dk (2 exp(-k / 2) + exp(-k))
    assert abs(g - (-np.exp(-k / 2) - np.exp(-k))) < 1e-7


@pytest.mark.parametrize("alg", [fl.ode.InterpolatingAdjoint(),
                                 fl.ode.InterpolatingAdjoint(checkpointing=True)], ids=repr)
def test_a_stiff_adjoint_keeps_its_order_at_the_ends_of_the_interval(alg):
    """The Rosenbrock solvers' time derivative of the adjoint equation is a difference
    quotient; taken past t1 (or past a checkpoint) it read the forward solution held
    constant there and lost the step's order: gradients wrong by 2e-7, and by 9e-4 with
    checkpointing (found by tests/ode/fuzz_sensitivity.py). d/dk of u(1) + u(2) for
    u' = -k u, u(0) = 1."""
    k = 0.5
    g = fl.gradient(lambda k: fl.ode.solve(
        lambda t, u, k: -k * u, np.ones(1), (0.0, 2.0), k, solver=fl.ode.Rodas5(),
        saveat=[1.0, 2.0], rtol=1e-8, atol=1e-10, sensealg=alg).u.sum(), k)[0]
    assert abs(g - (-np.exp(-k) - 2 * np.exp(-2 * k))) < 2e-8


@pytest.mark.parametrize("alg", ALGS[1:], ids=repr)
def test_tied_weights_in_p_count_once(alg):
    """The same array at two places of p (a layer used twice in a NeuralODE's model): the
    engine gives each place the total gradient, and the adjoints summed both places into
    it, twice the right gradient (found by composing NeuralODE with Chain(d, d))."""
    a = np.array([[-0.5, 0.3], [0.2, -0.4]])
    f = lambda t, u, p: np.tanh(p["a"] @ u) + p["b"] @ u  # noqa: E731

    def loss(q, alg):
        return np.sum(fl.ode.solve(f, np.array([1.0, -1.0]), (0.0, 1.0), {"a": q, "b": q},
                                   saveat=[1.0], rtol=1e-10, atol=1e-12, sensealg=alg).u ** 2)

    expect = fl.gradient(lambda q: loss(q, fl.ode.Direct()), a)[0]
    np.testing.assert_allclose(fl.gradient(lambda q: loss(q, alg), a)[0], expect, rtol=1e-6)


@pytest.mark.parametrize("solver", [fl.ode.BS3(), fl.ode.Tsit5(), fl.ode.DP5(), fl.ode.Vern7()],
                         ids=repr)
def test_a_traced_solve_takes_the_plain_solves_steps(solver):
    """Direct() under fl.gradient and fl.jvp steps exactly as the plain solve does: its stage
    values summed term by term differed from the plain step's matrix product in the last
    bits, and where the error estimate is that small (the first step) the step sizes that
    followed differed. With saveat=None the gradient was of the solution at other times
    (the fuzzer: 2e-4 off the differences of the plain loss), or at another number of
    them (sol.u of 7 rows under the gradient, 8 in the plain solve)."""
    rng = np.random.default_rng(3)
    p = [rng.normal(size=(2, 3)), rng.normal(size=(3, 2)) / 2]
    u0 = rng.normal(size=3)

    def solve(u0, saveat=None):
        return fl.ode.solve(lambda t, u, p: p[1] @ np.tanh(p[0] @ u + 0.5) - 0.3 * u, u0,
                            (-0.25, 0.6), p, solver=solver, saveat=saveat, rtol=1e-9,
                            atol=1e-10)

    def loss(sol):
        return np.sum(np.cos(3 * sol.t)[:, None] * sol.u ** 2)

    plain, seen = solve(u0), []

    def traced(u0):
        seen.append(solve(u0))
        return loss(seen[-1])

    (g,) = fl.gradient(traced, u0)
    _, tangent = fl.jvp(traced, (u0,), (np.ones(3),))
    for sol in seen:
        np.testing.assert_array_equal(sol.t, plain.t)
    # the plain loss at the plain solve's times, by central differences
    fd = np.array([(loss(solve(u0 + 1e-5 * e, plain.t)) - loss(solve(u0 - 1e-5 * e, plain.t)))
                   / 2e-5 for e in np.eye(3)])
    np.testing.assert_allclose(g, fd, rtol=2e-8, atol=1e-9)
    np.testing.assert_allclose(tangent, np.sum(fd), rtol=2e-8)


# u' = -k u + c sin(3t) from u0, saved at ts: (u0, k, c, ts)
_FORCED = (np.array([1.0, -0.5]), 2.0, 1.5, np.array([0.5, 1.0, 2.0]))


def _forced_gradient():
    """d/d(k, c) of the sum of u(t)'s components over the saved times, from the closed
    form (central differences of it in float64)."""
    u0, k, c, ts = _FORCED

    def exact(k, c):
        forced = c * (k * np.sin(3 * ts) - 3 * np.cos(3 * ts) + 3 * np.exp(-k * ts)) / (k**2 + 9)
        return np.sum(np.exp(-k * ts)[:, None] * u0 + forced[:, None])

    return [(exact(k + 1e-6, c) - exact(k - 1e-6, c)) / 2e-6,
            (exact(k, c + 1e-6) - exact(k, c - 1e-6)) / 2e-6]


@pytest.mark.parametrize("alg", [fl.ode.Direct(), fl.ode.InterpolatingAdjoint(),
                                 fl.ode.InterpolatingAdjoint(checkpointing=True)], ids=repr)
def test_float32_gradients_through_a_rosenbrock_solver_are_float32_accurate(alg):
    """The Rosenbrock steps' df/dt (and the stiff adjoint's) was a forward difference with
    float64's step, sqrt(eps) = 1.5e-8: on float32 values a difference of noise, and the
    gradients were off by 4e-3 (adjoint) to 2e-2 (Direct) on a size of 0.5, silently; and
    with float32 parameters the quotient must suit them even where f makes the state
    float64 (np.sin(3 * t) is a NumPy float64): their cotangents are float32.
    Against the closed form of u' = -k u + c sin(3t)."""
    u0, k, c, ts = _FORCED
    want = _forced_gradient()
    p = np.array([k, c], np.float32)
    (g,) = fl.gradient(lambda p: np.sum(fl.ode.solve(
        lambda t, u, p: -p[0] * u + np.sin(3 * t) * p[1], u0.astype(np.float32), (0.0, 2.0),
        p, solver=fl.ode.Rodas5(), saveat=ts, rtol=1e-5, atol=1e-6, sensealg=alg).u), p)
    assert g.dtype == np.float32
    np.testing.assert_allclose(g, want, rtol=0, atol=5e-5)  # float64: 1e-6 and 5e-6 off


@pytest.mark.parametrize("alg", [fl.ode.InterpolatingAdjoint(checkpointing=True),
                                 fl.ode.BacksolveAdjoint()], ids=repr)
def test_an_adjoint_keeps_a_float32_rosenbrock_solve_float32(alg):
    """Re-solving between checkpoints started from a saved time, a NumPy float64, which made
    the Rosenbrock step h one and W = I / (h gamma) - J float64: the re-solved states were
    float64; BacksolveAdjoint solves u backwards in float64 and gave f those states. A
    float32 layer warned that it got float64 input (blaming the user's data)."""
    fl.seed(0)
    node = fl.NeuralODE(fl.Dense(2, 2, np.tanh), (0.0, 1.0), solver=fl.ode.Rodas5(),
                        sensealg=alg, saveat=[0.5, 1.0], rtol=1e-6, atol=1e-8)
    x = np.ones((2, 2), np.float32)
    seen = []
    node.model = fl.Chain(lambda u: seen.append(u.dtype) or u, node.model)  # f's states
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (g,) = fl.gradient(lambda n: np.sum(n(x) ** 2), node)
    assert set(seen) == {np.dtype(np.float32)}
    # against the same layer in float64 with Direct()
    node64 = fl.NeuralODE(fl.f64(node.model), (0.0, 1.0), solver=fl.ode.Rodas5(),
                          saveat=[0.5, 1.0], rtol=1e-6, atol=1e-8, sensealg=fl.ode.Direct())
    (g64,) = fl.gradient(lambda n: np.sum(n(x.astype(float)) ** 2), node64)
    w, w64 = g.model.layers[1].weight, g64.model.layers[1].weight
    assert w.dtype == np.float32
    np.testing.assert_allclose(w, w64, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("alg", [fl.ode.Direct(), fl.ode.InterpolatingAdjoint()], ids=repr)
def test_float32_gradients_through_a_rosenbrock_solver_late_in_time(alg):
    """The float32 df/dt's step grew as |t| (eps^(1/3) |t|: 0.49 at t = 100, past the
    solver's steps), and gradients through Rodas5 on (100, 102) were 2e-3 (Direct) to 2e-2
    (an adjoint) off, silently. Against the closed form of u' = -k u + c sin(3(t - 100))."""
    u0, k, c, ts = _FORCED
    want = _forced_gradient()
    p = np.array([k, c], np.float32)
    (g,) = fl.gradient(lambda p: np.sum(fl.ode.solve(
        lambda t, u, p: -p[0] * u + np.sin(3 * (t - 100.0)) * p[1], u0.astype(np.float32),
        (100.0, 102.0), p, solver=fl.ode.Rodas5(), saveat=100.0 + ts, rtol=1e-5, atol=1e-6,
        sensealg=alg).u), p)
    assert g.dtype == np.float32
    np.testing.assert_allclose(g, want, rtol=0, atol=5e-4)


@pytest.mark.parametrize("make, match", [
    (lambda: fl.ode.InterpolatingAdjoint(rtol=-1.0), "InterpolatingAdjoint: rtol must be"),
    (lambda: fl.ode.QuadratureAdjoint(atol=-1.0), "QuadratureAdjoint: atol must be"),
    (lambda: fl.ode.BacksolveAdjoint(rtol=np.nan), "BacksolveAdjoint: rtol must be"),
    (lambda: fl.ode.BacksolveAdjoint(rtol="1e-6"), "BacksolveAdjoint: rtol must be"),
    (lambda: fl.ode.QuadratureAdjoint(rtol=0.0, atol=0.0), "both 0"),
    (lambda: fl.ode.InterpolatingAdjoint(solver=fl.ode.Tsit5), r"class Tsit5 \(write Tsit5"),
    (lambda: fl.ode.InterpolatingAdjoint(solver="Rodas5"), "solver must be a solver"),
    (lambda: fl.ode.InterpolatingAdjoint(checkpointing=1), "checkpointing must be True or"),
    (lambda: fl.ode.InterpolatingAdjoint(checkpointing=True, checkpoints=2.5),
     "checkpoints must be a number of evenly spaced times"),
    (lambda: fl.ode.InterpolatingAdjoint(checkpointing=True, checkpoints=-2),
     "checkpoints must be"),
    (lambda: fl.ode.InterpolatingAdjoint(checkpointing=True, checkpoints="x"),
     "checkpoints must be"),
    # Python's own errors named the private _Adjoint.__init__
    (lambda: fl.ode.BacksolveAdjoint(vjp=True), r"^BacksolveAdjoint: got the option 'vjp'; "
                                                r"it takes the keyword options solver=, "
                                                r"rtol=, atol=$"),
    (lambda: fl.ode.InterpolatingAdjoint(fl.ode.Tsit5()),
     r"^InterpolatingAdjoint: got 1 positional argument; it takes the keyword options "
     r"checkpointing=, checkpoints=, solver=")])
def test_an_adjoints_options_are_checked_when_made(make, match):
    """Before: InterpolatingAdjoint(rtol=-1) was taken, and its backward solve accepted
    steps it should not: a gradient 1.3% off (0.4006 for 0.4060), silently; a NaN rtol ran
    max_steps rejections; checkpoints=2.5 was taken as 2; solver=Tsit5 (the class) failed
    deep in the step control ('unsupported operand type(s) for /: 'float' and
    'property'')."""
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_checkpoints_outside_tspan_are_refused():
    """A checkpoint before t0 was saved by extrapolating the first step and the backward pass
    integrated lambda out to it and back with the forward solution held constant there:
    a gradient of -0.76 for exp(-2) (1 + 2) = 0.41, silently. Times inside give it."""
    u = np.array([1.0, 2.0])

    def grad(checkpoints, tspan=(0.0, 1.0)):
        alg = fl.ode.InterpolatingAdjoint(checkpointing=True, checkpoints=checkpoints)
        return fl.gradient(lambda p: np.sum(fl.ode.solve(
            lambda t, u, p: p * u, u, tspan, p, saveat=[tspan[1]], sensealg=alg,
            rtol=1e-9, atol=1e-12).u), -2.0)[0]

    assert abs(grad([0.25, 0.5]) - 3 * np.exp(-2.0)) < 1e-7
    assert abs(grad([0.75], (1.0, 0.0)) + 3 * np.exp(2.0)) < 1e-6  # u e^{-p} at t = 0
    for outside in ([-3.0], [0.5, 2.0], [np.nan]):
        with pytest.raises(ValueError, match=r"checkpoints must be times inside tspan \[0.0, "):
            grad(outside)


def test_an_adjoint_prints_its_options():
    """Two adjoints with other backward solvers or tolerances printed alike
    ('InterpolatingAdjoint()'), and checkpointing hid them."""
    assert repr(fl.ode.QuadratureAdjoint(solver=fl.ode.Rodas5(), rtol=1e-4)) == \
        "QuadratureAdjoint(solver=Rodas5(), rtol=0.0001)"
    assert repr(fl.ode.InterpolatingAdjoint(checkpointing=True, checkpoints=3, atol=1e-9)) == \
        "InterpolatingAdjoint(checkpointing=True, checkpoints=3, atol=1e-09)"
    assert repr(fl.ode.BacksolveAdjoint()) == "BacksolveAdjoint()"


@pytest.mark.parametrize("alg", [fl.ode.InterpolatingAdjoint(), fl.ode.QuadratureAdjoint(),
                                 fl.ode.BacksolveAdjoint()], ids=repr)
def test_a_non_finite_backward_pass_says_where_it_comes_from(alg):
    """A NaN cotangent (the loss takes sqrt of a solution at 0) and an infinite vjp of f
    (sqrt(|u|) at u = 0) stopped the adjoint's backward solve with the forward solve's
    words: 'the state or f(t, u, p) is not finite at the start, t = 1.0; check u0, p and f'
    (the forward solve had succeeded). Now each names the adjoint and the cause; Direct()
    gives NaN, as any gradient through sqrt at 0."""
    u0 = np.array([0.0, 1.0])

    def loss(p, alg, f, out):
        return np.sum(out(fl.ode.solve(f, u0, (0.0, 1.0), p, saveat=[1.0], sensealg=alg).u))

    decay = lambda t, u, p: p * u  # noqa: E731
    root = lambda t, u, p: -p * np.sqrt(np.abs(u))  # noqa: E731
    with np.errstate(divide="ignore", invalid="ignore"):  # (sqrt's derivative at 0)
        with pytest.raises(fl.ode.SolveError, match=rf"{type(alg).__name__}\(\): the loss's "
                                                    r"derivative .* at t = 1.0 is NaN or inf"):
            fl.gradient(lambda p: loss(p, alg, decay, np.sqrt), -1.0)
        with pytest.raises(fl.ode.SolveError, match=rf"{type(alg).__name__}\(\): the "
                                                    r"backward solve of the adjoint equation, "
                                                    r"from t = 1.0 to 0.0, failed .*"
                                                    r"vector-Jacobian product"):
            fl.gradient(lambda p: loss(p, alg, root, lambda u: u), 1.0)
        direct = fl.gradient(lambda p: loss(p, fl.ode.Direct(), decay, np.sqrt), -1.0)[0]
    assert np.isnan(direct)


def test_backsolve_drift_with_coarse_fixed_steps_says_so():
    """Euler's own error (dt=1e-3) set the drift of u solved back over a stable problem, and
    the refusal blamed instability backwards in time alone."""
    A = np.array([[-1.0, 0.3], [0.2, -2.0]])
    with pytest.raises(fl.ode.SolveError, match="fixed steps too coarse to retrace it"):
        fl.gradient(lambda u: np.sum(fl.ode.solve(
            lambda t, u, p: A @ u, u, (1.0, -0.5), solver=fl.ode.Euler(), dt=1e-3,
            saveat=[-0.5], sensealg=fl.ode.BacksolveAdjoint()).u), np.array([1.0, -0.5]))


def _stiff_linear_gradient(alg, dtype, rtol, atol):
    """dL/dA of L = w . u(1) for u' = A u with a fast transient (rate 300), through Rodas5,
    against the Frechet derivative of exp(A); the error relative to the largest entry."""
    from scipy.linalg import expm_frechet

    A = np.array([[-300.0, 1.0, 0.0], [0.5, -2.0, 0.3], [0.0, 2.0, -1.0]])
    u0, w = np.array([1.0, 0.5, -0.3]), np.array([0.3, -1.0, 2.0])
    exact = np.array([[w @ expm_frechet(A, np.eye(3)[i][:, None] * np.eye(3)[j],
                                         compute_expm=False) @ u0 for j in range(3)]
                      for i in range(3)])
    loss = lambda a: np.sum(w.astype(dtype) * fl.ode.solve(  # noqa: E731
        lambda t, u, p: p @ u, u0.astype(dtype), (0.0, 1.0), a, solver=fl.ode.Rodas5(),
        saveat=[1.0], sensealg=alg, rtol=rtol, atol=atol).u[-1])
    g, = fl.gradient(loss, A.astype(dtype))
    assert g.dtype == dtype
    return np.abs(g - exact).max() / np.abs(exact).max()


@pytest.mark.parametrize("alg", [fl.ode.InterpolatingAdjoint(), fl.ode.QuadratureAdjoint(),
                                 fl.ode.InterpolatingAdjoint(checkpointing=True)], ids=repr)
def test_a_stiff_adjoint_steps_over_a_fast_transient_accurately(alg):
    """The Rosenbrock backward solve took steps spanning many forward steps across the fast
    transient (lambda is smooth there), reading the forward solution through the kinks of
    its piecewise interpolant, and its error estimate missed what the parameter integral
    lost: 3.4e-2 off at rtol 1e-5 (9e-4 at 1e-8), 2.1e-2 in float32, silently. It now
    ends steps on the forward steps' ends: 2e-7 (3e-10 at 1e-8) and 5e-6."""
    assert _stiff_linear_gradient(alg, np.float64, 1e-5, 1e-8) < 2e-6
    assert _stiff_linear_gradient(alg, np.float32, 1e-5, 1e-7) < 5e-5


@pytest.mark.parametrize("solver", [fl.ode.Tsit5(), fl.ode.Rodas5()], ids=repr)
def test_backsolve_stops_as_soon_as_u_blows_up_backwards(solver):
    """u' = A u with a rate-1000 mode, solved back for BacksolveAdjoint, grows as
    exp(1000 t): the backward solve followed it to overflow (45 s with Rodas5, 6 min with
    Rosenbrock23, 6 s with Tsit5) and then said 'check f for a singularity ... if the
    problem is stiff use Rodas5()'. It now stops once u is 1e12 times the forward
    states at both ends of the interval, saying the problem is unstable backwards."""
    A = np.array([[-1000.0, 1.0], [0.5, -2.0]])
    with pytest.raises(fl.ode.SolveError, match="BacksolveAdjoint: solving u backwards from "
                                                "t = 1.0 to 0.0 blew up .* unstable backwards"):
        fl.gradient(lambda a: np.sum(fl.ode.solve(
            lambda t, u, p: p @ u, np.array([1.0, 0.5]), (0.0, 1.0), a, solver=solver,
            saveat=[1.0], sensealg=fl.ode.BacksolveAdjoint()).u), A)


def test_backsolve_takes_a_stable_solution_that_swells_between_save_times():
    """u' = 50 cos(pi t) u swells 8e6 times at t = 0.5 and comes back by t = 1: a limit of a
    million times the states at the save times refused it as 'unstable backwards' (review of
    this session's change); the gradient agrees with Direct's."""
    def loss(p, sensealg):
        return np.sum(fl.ode.solve(lambda t, u, p: p * np.cos(np.pi * t) * u, np.array([1.0]),
                                   (0.0, 1.0), p, saveat=[0.0, 1.0], rtol=1e-8, atol=1e-10,
                                   sensealg=sensealg).u)

    p = np.array([50.0])
    (want,) = fl.gradient(lambda p: loss(p, fl.ode.Direct()), p)
    (got,) = fl.gradient(lambda p: loss(p, fl.ode.BacksolveAdjoint()), p)
    np.testing.assert_allclose(got, want, atol=1e-7)


@pytest.mark.parametrize("solver", [fl.ode.Tsit5(), fl.ode.Rodas5()], ids=["Tsit5", "Rodas5"])
def test_a_parameter_f_never_reads_gets_none_from_every_sensealg(solver):
    """fl.gradient and Direct() give None for a parameter the loss does not use (as Zygote's
    nothing); the adjoints gave zeros. A parameter read only outside f (in the loss) keeps
    its gradient from there."""
    def f(t, u, p):
        return -p["a"] * u

    u0, p = np.ones(2), {"a": np.full(2, 0.5), "b": np.ones(3), "c": np.ones(2)}
    for alg in (fl.ode.Direct(), fl.ode.InterpolatingAdjoint(), fl.ode.BacksolveAdjoint(),
                fl.ode.QuadratureAdjoint()):
        g = fl.gradient(lambda p: np.sum(fl.ode.solve(
            f, u0, (0.0, 1.0), p, solver=solver, sensealg=alg, rtol=1e-8).u[-1] * p["c"]), p)[0]
        assert g["b"] is None, alg
        np.testing.assert_allclose(g["a"], -np.exp(-0.5), rtol=1e-5)
        np.testing.assert_allclose(g["c"], np.exp(-0.5), rtol=1e-5)


def test_a_parameter_f_reads_only_where_the_adjoint_never_evaluates_is_no_none():
    """Review of 9b3482a: f reading p["a"] only before t = 0.01 (Euler's first step) was
    never read by the backward pass's pullbacks, so the adjoints gave None (the parameter
    "unused": fl.update would skip it) where Direct() gives a number. A pullback at each
    end of the solve now notes it: 0, the adjoint's value for it."""
    def f(t, u, p):
        return -u * (p["a"] if t < 0.01 else 1.0) + p["b"]

    p = {"a": 1.0, "b": np.ones(2), "c": np.ones(2)}
    for alg in (fl.ode.InterpolatingAdjoint(), fl.ode.QuadratureAdjoint()):
        g = fl.gradient(lambda p: np.sum(fl.ode.solve(
            f, np.array([1.0, 0.5]), (0.0, 1.0), p, sensealg=alg, solver=fl.ode.Euler(),
            dt=0.1, saveat=[1.0]).u[-1] ** 2), p)[0]
        assert g["a"] == 0.0 and g["c"] is None
        assert np.all(g["b"] > 1.0)  # (the adjoints' discretisations differ: ~1.3 and ~1.2)


def _oscillator_in_place(t, u, p):
    """SciPy's style: a buffer allocated like the state, filled entry by entry."""
    du = np.empty_like(u)
    du[0] = u[1]
    du[1] = -p * u[0]
    return du


@pytest.mark.parametrize("alg", ALGS, ids=repr)
def test_a_right_hand_side_filling_a_buffer_like_its_state(alg):
    # u'' = -p u from (1, 0): u(1) = cos(sqrt(p)). With p traced and u0 plain the buffer
    # was plain and refused p's values (Direct, QuadratureAdjoint), and with both traced
    # the initial step's estimate called f on a plain state (Direct)
    def loss(u0, p):
        return fl.ode.solve(_oscillator_in_place, u0, (0.0, 1.0), p, saveat=[1.0],
                            sensealg=alg, rtol=1e-10, atol=1e-12).u[-1, 0]

    exact = -np.sin(1.0) / 2
    np.testing.assert_allclose(fl.gradient(lambda p: loss(U0 * [1, 0], p), 1.0)[0], exact,
                               rtol=1e-7)
    np.testing.assert_allclose(fl.gradient(loss, U0 * [1, 0], 1.0)[1], exact, rtol=1e-7)
