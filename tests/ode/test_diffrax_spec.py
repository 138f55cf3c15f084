"""diffrax's own tests (patrick-kidger/diffrax, ``test/``) as a specification of ``fl.ode``.

Each test names the diffrax file and test it translates. diffrax's solvers map to fluxml's
of the same method: Euler, Midpoint, Heun, Bosh3 (BS3), Tsit5, Dopri5 (DP5); diffrax's
Kvaerno/implicit solvers have no fluxml twin and fluxml's Rosenbrock solvers stand in
where a stiff solver is asked for. The references are closed forms, the matrix exponential
or SciPy's DOP853 at rtol 1e-12, as in diffrax.
"""

import math

import numpy as np
import pytest

import fluxml as fl
from tests.ode import detest_problems as detest

linalg = pytest.importorskip("scipy.linalg")

EXPLICIT = [(fl.ode.Euler(), 1), (fl.ode.Midpoint(), 2), (fl.ode.Heun(), 2), (fl.ode.RK4(), 4),
            (fl.ode.BS3(), 3), (fl.ode.DP5(), 5), (fl.ode.Tsit5(), 5), (fl.ode.Vern7(), 7)]
STIFF = [(fl.ode.Rosenbrock23(), 2), (fl.ode.Rodas5(), 5)]


def empirical_order(solve_at, exact, exponents, floor=2.0**-28):
    """diffrax's: the slope of log2(error) against log2(dt), dt = 2**exponent, stopping once
    the error is below ``floor`` (rounding takes over there)."""
    xs, ys = [], []
    for e in exponents:
        err = np.sum(np.abs(solve_at(2.0**e) - exact))
        if err < floor:
            break
        xs.append(e)
        ys.append(np.log2(err))
    assert len(xs) >= 3, (xs, ys)  # enough points for a slope
    return np.polyfit(xs, ys, 1)[0]


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
@pytest.mark.parametrize("solver, order", EXPLICIT + STIFF, ids=lambda x: repr(x))
def test_ode_order_on_a_linear_system(solver, order, dtype):
    """test_integrate.py::test_ode_order: y' = A y with A random normal * 0.5 (10 x 10, real
    or complex), over [0, 4] against expm(4 A) y0; the slope of the error against dt is the
    method's order (diffrax accepts +-0.9; here +-0.5). Before, a complex state was cast to
    float: its imaginary part dropped with only a ComplexWarning."""
    if dtype is np.complex128 and type(solver).__name__ in ("Euler", "Midpoint", "RK4", "DP5"):
        return  # (the suite's time: the other tableaus of the same engine have it)
    if solver.stiff and dtype is np.complex128:
        with pytest.raises(TypeError, match="does not take complex states"):
            fl.ode.solve(lambda t, y, A: A @ y, np.ones(2, dtype), (0, 1), np.eye(2, dtype=dtype),
                         solver=solver, dt=0.5, adaptive=False)
        return
    rng = np.random.default_rng(5678)
    A = rng.normal(size=(10, 10)) * 0.5
    y0 = rng.normal(size=10)
    if dtype is np.complex128:
        A = A + 1j * rng.normal(size=(10, 10)) * 0.5
        y0 = y0 + 1j * rng.normal(size=10)
    exact = linalg.expm(4 * A) @ y0

    def solve_at(dt):
        return fl.ode.solve(lambda t, y, A: A @ y, y0, (0, 4), A, solver=solver, dt=dt,
                            adaptive=False, saveat=[4.0]).u[-1]

    # dt from 1/8 (1/4 for order 5, 1/2 for Vern7), where each is past its pre-asymptotic
    # range on this problem, down to where rounding takes over (2**-28 of the error, 2**-40
    # for Vern7, whose errors fall too fast for more than two points above 2**-28)
    exponents = range(-3, -9, -1) if order < 5 else range(-2, -7, -1)
    if solver.stiff:
        exponents = range(-2, -6, -1)
    floor = 2.0**-28
    if order == 7:
        exponents, floor = range(-1, -5, -1), 2.0**-40
    # diffrax's tolerance: Tsit5's principal error terms are small by design, so on this
    # problem its slope is 4.6 over these steps (crisp on the nonlinear problem below)
    assert abs(empirical_order(solve_at, exact, exponents, floor) - order) < 0.9


def nonlinear(t, u, p):
    """Nonlinear and non-autonomous: a linear problem checks only some of a tableau's order
    conditions (the 'tall trees'), and an autonomous one never reads its nodes c."""
    return np.stack([u[1] * np.cos(t) - 0.3 * u[0] ** 2, -u[0] + 0.5 * np.sin(u[2]),
                     0.2 * u[0] * u[1] - np.sin(3 * t) * u[2]])


@pytest.fixture(scope="module")
def nonlinear_reference():
    from scipy.integrate import solve_ivp

    return solve_ivp(lambda t, u: nonlinear(t, u, None), (0, 2), [0.5, -0.3, 1.0],
                     method="DOP853", rtol=1e-13, atol=1e-14, dense_output=True).sol


@pytest.mark.parametrize("solver, order", EXPLICIT + STIFF, ids=lambda x: repr(x))
def test_ode_order_on_a_nonlinear_time_dependent_system(solver, order, nonlinear_reference):
    """test_integrate.py::test_ode_order's measure on a nonlinear, time-dependent problem
    (beyond diffrax's linear one): the slope of the largest error at ten save times against
    dt over four halvings is at least the order (less 0.4). Above it by up to 1.5: DP5,
    Tsit5 and Vern7 are still above their asymptotic slope at these steps (the exact check is
    test_tableaus_satisfy_the_order_conditions in tests/ode/test_ode_order_conditions.py)."""
    u0 = np.array([0.5, -0.3, 1.0])
    ts = np.linspace(0.0, 2.0, 11)[1:]
    hs = {7: 0.4, 5: 0.1}.get(order, 0.05) / 2.0 ** np.arange(4)
    if solver.stiff:  # (each step solves linear systems: fewer of them)
        hs = 0.1 / 2.0 ** np.arange(3)
    errors = [np.abs(fl.ode.solve(nonlinear, u0, (0.0, 2.0), solver=solver, dt=h,
                                  adaptive=False, saveat=ts).u - nonlinear_reference(ts).T).max()
              for h in hs]
    slope = np.polyfit(np.log2(hs), np.log2(errors), 1)[0]
    assert order - 0.4 < slope < order + 1.5, (slope, errors)


@pytest.mark.parametrize("solver", [fl.ode.Euler(), fl.ode.Heun(), fl.ode.Tsit5(),
                                    fl.ode.Rodas5()], ids=repr)
@pytest.mark.parametrize("dtype", [np.float32, np.complex64])
@pytest.mark.parametrize("tspan", [(0, 1), (0.0, 1.0)])
@pytest.mark.parametrize("adaptive", [False, True])
def test_basic(solver, dtype, tspan, adaptive):
    """test_integrate.py::test_basic: y' = -y (real) or y' = -1j y (complex) from a random
    y0 over [0, 1] with integer or float times, dt = 0.01 or rtol 1e-5, atol 1e-8: y(1) is
    y0 e^-1 (or y0 e^-1j) to 1e-2; and (fluxml's own promise) the state keeps its dtype.
    Before, a complex64 state came back float64 with its imaginary part dropped."""
    if solver.stiff and dtype is np.complex64:
        pytest.skip("the Rosenbrock solvers refuse complex states (test_ode_order_on_...)")
    if adaptive and not solver.adaptive:
        return
    rng = np.random.default_rng(0)
    y0 = rng.normal(size=(3, 2)).astype(dtype)
    rate = np.asarray(-1j if dtype is np.complex64 else -1.0, dtype)
    if dtype is np.complex64:
        y0 = y0 + 1j * rng.normal(size=(3, 2)).astype(np.float32)
    sol = fl.ode.solve(lambda t, y, p: rate * y, y0, tspan, solver=solver, saveat=[1.0],
                       dt=None if adaptive else 0.01, adaptive=adaptive, rtol=1e-5, atol=1e-8)
    assert sol.u.dtype == dtype
    np.testing.assert_allclose(sol.u[-1], y0 * np.exp(rate.astype(complex)), rtol=1e-2,
                               atol=1e-2)
    if adaptive:  # to the tolerance asked, not diffrax's loose 1e-2
        np.testing.assert_allclose(sol.u[-1], y0 * np.exp(rate.astype(complex)), atol=1e-4)


def test_the_error_norm_of_a_complex_state_is_of_its_modulus():
    """test_adaptive_stepsize_controller.py's RMS norm, on complex values: the norm is of
    |error| / scale (diffrax's rms_norm and torchdiffeq's use the modulus). Before, the square
    of a complex error summed the real and imaginary parts' squares with opposite signs: an
    error of 1e-3 (1 + 1j) counted as 0 and every step was accepted."""
    from fluxml.ode.control import error_norm

    err = np.array([1e-3 * (1 + 1j)])
    e = error_norm(err, np.zeros(1, complex), np.zeros(1, complex), rtol=0.0, atol=1e-3)
    assert e == pytest.approx(math.sqrt(2))
    # y' = 1j * 40 y turns 40 radians a unit of time: solved adaptively, to the tolerance
    sol = fl.ode.solve(lambda t, y, p: 40j * y, np.ones(1, complex), (0.0, 1.0), saveat=[1.0],
                       rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(sol.u[-1], np.exp(40j), atol=1e-6)


@pytest.mark.parametrize("alg", [fl.ode.Direct(), fl.ode.InterpolatingAdjoint(),
                                 fl.ode.BacksolveAdjoint(), fl.ode.QuadratureAdjoint()],
                         ids=repr)
def test_gradients_through_a_complex_state(alg):
    """test_integrate.py's complex dtypes, differentiated: the gradient of a real loss of a
    complex state, against central differences in the real and imaginary parts
    (fl.gradient's convention: dL/dRe - i dL/dIm, the conjugate of PyTorch's and Zygote's);
    a real parameter's gradient is real. Before, the backsolve adjoint cast u to float (it
    stopped with a drift error) and the others warned as they dropped imaginary parts."""
    A = np.array([[0.1 + 1j, 0.5], [-0.5, -0.2 + 2j]])
    w = np.array([0.3 - 0.2j, 1.1 + 0.4j])

    def loss(u0, p, alg=None):
        sol = fl.ode.solve(lambda t, u, p: p * (A @ u), u0, (0.0, 1.0), p, saveat=[0.5, 1.0],
                           sensealg=alg, rtol=1e-10, atol=1e-10)
        return np.sum(np.abs(sol.u[-1] * w) ** 2) + np.real(np.sum(sol.u[0]))

    u0, p, eps = np.array([1j, 1 + 0.5j]), 0.8, 1e-6
    want = np.zeros(2, complex)
    for i in range(2):
        d = np.zeros(2, complex)
        d[i] = eps
        want[i] = ((loss(u0 + d, p) - loss(u0 - d, p))
                   - 1j * (loss(u0 + 1j * d, p) - loss(u0 - 1j * d, p))) / (2 * eps)
    want_p = (loss(u0, p + eps) - loss(u0, p - eps)) / (2 * eps)
    with np.errstate(all="raise"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("error", np.exceptions.ComplexWarning)
            gu, gp = fl.gradient(lambda u, q: loss(u, q, alg), u0, p)
    np.testing.assert_allclose(gu, want, rtol=1e-6, atol=1e-7)
    assert np.isrealobj(gp) and gp == pytest.approx(want_p, rel=1e-6)


@pytest.mark.parametrize("name, solver", [
    ("a2", fl.ode.Euler()), ("a5", fl.ode.BS3()), ("b1", fl.ode.Tsit5()), ("c2", fl.ode.Vern7()),
    ("d2", fl.ode.DP5()), ("e3", fl.ode.Tsit5()), ("e4", fl.ode.Rodas5()),
    ("a4", fl.ode.Rosenbrock23()),
], ids=str)
def test_detest(name, solver):
    """test_detest.py: the DETEST problems over [0, 20] (tuple states, as diffrax's),
    with diffrax's settings and tolerances (tests/ode/detest_problems.py; its main runs every
    solver over every problem: all pass)."""
    options, check = detest.settings(solver, name)
    problem = detest.PROBLEMS[name]
    np.testing.assert_allclose(detest.solve(problem, solver, **options),
                               detest.reference(problem), rtol=check, atol=check)


T0, T1, Y0 = 0.1, 1.1, np.array([2.1])


def decay(t, y, p):
    return -0.5 * y


@pytest.mark.parametrize("saveat, want_t", [
    ([T0], [T0]), ([T1], [T1]), ([T0, 0.5, T1], [T0, 0.5, T1]), ([T0, T0, T1], [T0, T0, T1]),
    (None, None)])
def test_saveat_solution(saveat, want_t):
    """test_saveat_solution.py::test_saveat_solution: y' = -y/2 from 2.1 over [0.1, 1.1] with
    DP5 at rtol = atol = 1e-8: saveat t0 gives y0 itself, t1 gives y0 e^-0.5, ts each time's
    value (a repeated time twice); saveat=None (diffrax's steps=True) t0 and every step;
    the dense output (diffrax's dense=True) evaluates between them."""
    sol = fl.ode.solve(decay, Y0, (T0, T1), saveat=saveat, solver=fl.ode.DP5(), rtol=1e-8,
                       atol=1e-8)
    if want_t is not None:
        np.testing.assert_array_equal(sol.t, want_t)
    else:
        assert sol.t[0] == T0 and sol.t[-1] == T1 and len(sol.t) == sol.stats.naccept + 1
    assert sol.u.shape == (len(sol.t), 1)
    np.testing.assert_allclose(sol.u[:, 0], 2.1 * np.exp(-0.5 * (sol.t - T0)), rtol=1e-7)
    if sol.t[0] == T0:
        assert sol.u[0, 0] == 2.1  # exactly y0
    np.testing.assert_allclose(sol(np.array([0.2, 0.8]))[:, 0],
                               2.1 * np.exp(-0.5 * np.array([0.1, 0.7])), rtol=1e-7)


def test_t0_eq_t1():
    """test_saveat_solution.py::test_t0_eq_t1 and ::test_trivial_dense: over [1, 1] with
    saveat t0, t1 and ts = [1, 1, 1] every saved state is y0, and the dense output at 1 is y0
    (and gradients: y0's is the cotangent, each sensealg)."""
    y0 = np.array([2.0])
    sol = fl.ode.solve(lambda t, y, p: y, y0, (1.0, 1.0), saveat=[1.0] * 5, dt=0.1)
    np.testing.assert_array_equal(sol.u, np.full((5, 1), 2.0))
    np.testing.assert_array_equal(sol(1.0), y0)
    assert sol.stats.nfe == 0
    for alg in (fl.ode.Direct(), fl.ode.InterpolatingAdjoint(), fl.ode.BacksolveAdjoint()):
        g, = fl.gradient(lambda y: np.sum(fl.ode.solve(
            lambda t, y, p: y, y, (1.0, 1.0), saveat=[1.0, 1.0], sensealg=alg).u), y0)
        np.testing.assert_array_equal(g, [2.0])


def vector_field(t, y, p):
    """test_adjoint.py's _VectorField: a float and an int field, and args (float, int)."""
    diff_arg, nondiff_arg = p["args"]
    return np.stack([diff_arg * y[0] + nondiff_arg * y[1],
                     p["nondiff"] * y[0] + p["diff"] * y[1]])


@pytest.mark.parametrize("saveat", [[0.3], [0.3, 0.3, 7.0, 9.5, 9.5]], ids=str)
def test_adjoint_against(saveat):
    """test_adjoint.py::test_against: Tsit5 at rtol = atol = 1e-8 from 0.3 to 9.5, the loss
    the sum of the saved states (diffrax's t0/t1/ts combinations, t0 and t1 twice where
    diffrax saves them twice); the gradient for y0 against finite differences, and every
    interpolating and backsolve adjoints' and forward mode's against the direct one to 1e-5
    (diffrax's tolerances; its recursive-checkpoint adjoint is fluxml's Direct); the int
    fields get no gradient."""
    y0 = np.array([0.9, 5.4])
    p = {"args": (0.1, -1), "nondiff": 1, "diff": -0.1}

    def run(y0, p, alg=None):
        return np.sum(fl.ode.solve(vector_field, y0, (0.3, 9.5), p, saveat=saveat,
                                   sensealg=alg, rtol=1e-8, atol=1e-8).u)

    fd = np.array([(run(y0 + d, p) - run(y0 - d, p)) / 2e-5 for d in np.eye(2) * 1e-5])
    gy, gp = fl.gradient(lambda y, q: run(y, q, fl.ode.Direct()), y0, p)
    np.testing.assert_allclose(gy, fd, rtol=1e-5, atol=1e-5)
    assert gp["nondiff"] is None and gp["args"][1] is None
    if saveat == [0.3]:  # the loss is y0's sum: no parameter reaches it (None, from the
        assert gp["diff"] is None and gp["args"][0] is None  # adjoints too)
    else:
        fd = (run(y0, dict(p, diff=-0.1 + 1e-6)) - run(y0, dict(p, diff=-0.1 - 1e-6))) / 2e-6
        assert gp["diff"] == pytest.approx(fd, rel=1e-5)
    for alg in (fl.ode.InterpolatingAdjoint(), fl.ode.BacksolveAdjoint()):
        ay, ap = fl.gradient(lambda y, q: run(y, q, alg), y0, p)
        np.testing.assert_allclose(ay, gy, rtol=1e-5, atol=1e-5)
        for a, b in ((ap["diff"], gp["diff"]), (ap["args"][0], gp["args"][0])):
            assert (a is None and b is None) or a == pytest.approx(b, rel=1e-5, abs=1e-5)
    _, tangent = fl.jvp(lambda y: run(y, p), (y0,), (np.array([1.0, 0.0]),))
    assert tangent == pytest.approx(gy[0], rel=1e-5)


@pytest.mark.parametrize("flip", [False, True])
def test_step_to_location(flip):
    """test_step_to.py::test_step_to_location: Euler stepping to exactly the times ts
    (diffrax's StepTo: here tstops with a step longer than the interval) on y' = -y from 1:
    [1, 0, 0] on 3 points of [0, 2], halving on 5, and backwards from 2 to 0 growing by 1.5
    a step; an uneven grid steps to each of its times too. (diffrax refuses grids not
    starting at t0 or not monotonic; tstops are times to stop at, in any order, and those
    outside tspan are ignored.)"""
    def solve(ts):
        span = (2.0, 0.0) if flip else (0.0, 2.0)
        return fl.ode.solve(lambda t, y, p: -y, 1.0, span, solver=fl.ode.Euler(), dt=10.0,
                            tstops=ts, saveat=ts)

    if not flip:
        np.testing.assert_allclose(solve(np.linspace(0.0, 2.0, 3)).u, [1.0, 0.0, 0.0])
        np.testing.assert_allclose(solve(np.linspace(0.0, 2.0, 5)).u,
                                   [1.0, 0.5, 0.25, 0.125, 0.0625])
        uneven = np.array([0.0, 0.1, 0.7, 2.0])
        np.testing.assert_allclose(solve(uneven).u, [1.0, 0.9, 0.9 * 0.4, 0.9 * 0.4 * -0.3])
    else:
        np.testing.assert_allclose(solve(np.linspace(2.0, 0.0, 5)).u,
                                   [1.0, 1.5, 2.25, 3.375, 5.0625])


@pytest.mark.parametrize("solver", [s for s, _ in EXPLICIT + STIFF], ids=repr)
def test_dense_interpolation(solver):
    """test_global_interpolation.py::test_dense_interpolation: y' = -y from y0 in [0.4, 2]
    with fixed steps of 1e-3 over [0, 1]: the dense output (exactly y0 at 0) within 1e-6 of
    y0 e^-t at points finer than the steps (Euler 1e-3), and its derivative (fluxml's
    sol.derivative, missing before) within 1e-6 of -y0 e^-t (Midpoint 1e-2, Euler 1e-3, as
    diffrax's; Heun as its Midpoint, both piecewise-Hermite over order-2 steps)."""
    y0 = np.random.default_rng(5678).uniform(0.4, 2.0)
    sol = fl.ode.solve(lambda t, y, p: -y, np.array(y0), (0.0, 1.0), solver=solver, dt=1e-3,
                       adaptive=False)
    points = np.linspace(0.0, 1.0, 401)[:-1] + 1.3e-3  # (off the step grid)
    points[0] = 0.0
    vals, derivs = sol(points), sol.derivative(points)
    assert vals[0] == y0
    val_tol = 1e-3 if type(solver) is fl.ode.Euler else 1e-6
    np.testing.assert_allclose(vals, y0 * np.exp(-points), rtol=val_tol, atol=val_tol)
    deriv_tol = {"Euler": 1e-3, "Midpoint": 1e-2, "Heun": 1e-2}.get(type(solver).__name__,
                                                                     1e-6)
    np.testing.assert_allclose(derivs, -y0 * np.exp(-points), rtol=deriv_tol, atol=deriv_tol)


@pytest.mark.parametrize("solver", [fl.ode.Tsit5(), fl.ode.Vern7(), fl.ode.Rodas5()], ids=repr)
def test_derivative_of_a_tree_state_backwards_in_time(solver):
    """sol.derivative on a tree state, backwards in time and at the ends: f(t, sol(t)) to
    the tolerance, the interpolant's derivative being of one order below it."""
    def f(t, u, p):
        return {"x": u["v"], "v": -u["x"] + 0.1 * np.sin(t)}

    u0 = {"x": np.array([1.0, 0.5]), "v": np.array([0.0, -0.2])}
    sol = fl.ode.solve(f, u0, (2.0, -1.0), solver=solver, rtol=1e-9, atol=1e-9)
    for t in (2.0, 1.234, 0.0, -1.0):
        got, want = sol.derivative(t), f(t, sol(t), None)
        for k in ("x", "v"):
            np.testing.assert_allclose(got[k], want[k], atol=1e-5)
    assert sol.derivative(np.array([1.0, 0.5]))["x"].shape == (2, 2)
