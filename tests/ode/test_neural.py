"""NeuralODE: a Module whose parameters are its inner model's, usable inside a Chain."""

import numpy as np
import pytest

import fluxml as fl


def model64(sensealg=None, saveat=None):
    fl.seed(3)
    node = fl.NeuralODE(fl.Chain(fl.Dense(3, 4, np.tanh), fl.Dense(4, 3)), (0.0, 0.7),
                        saveat=saveat, sensealg=sensealg, rtol=1e-9, atol=1e-9)
    return fl.f64(fl.Chain(fl.Dense(2, 3), node, fl.Dense(3, 1)))


X = np.random.default_rng(0).normal(size=(5, 2))


def loss(m):
    return np.sum(m(X) ** 2)


def test_forward_matches_an_independent_solve():
    m = model64()
    inner = m.layers[1].model
    h = m.layers[0](X)
    ref = fl.ode.solve(lambda t, u, p: inner(u), h, (0.0, 0.7), saveat=[0.7], rtol=1e-10,
                       atol=1e-10).u[-1]
    np.testing.assert_allclose(m.layers[1](h), ref, rtol=1e-7, atol=1e-9)
    assert m(X).shape == (5, 1)


@pytest.mark.parametrize("alg", [fl.ode.Direct(), fl.ode.InterpolatingAdjoint(),
                                 fl.ode.BacksolveAdjoint()], ids=repr)
def test_gradient_reaches_the_inner_model_and_matches_finite_differences(alg):
    m = model64(alg)
    (g,) = fl.gradient(loss, m)
    w = m.layers[1].model.layers[0].weight
    gw = g.layers[1].model.layers[0].weight
    eps = 1e-6
    for idx in [(0, 0), (2, 1), (3, 2)]:
        old = w[idx]
        w[idx] = old + eps
        up = loss(m)
        w[idx] = old - eps
        down = loss(m)
        w[idx] = old
        assert abs(gw[idx] - (up - down) / (2 * eps)) < 1e-6 * max(1, abs(gw[idx]))
    assert g.layers[0].weight.shape == (3, 2)  # and on through the ODE to the layer before


def test_saveat_returns_the_trajectory_and_only_the_model_is_trainable():
    node = model64(saveat=[0.0, 0.35, 0.7]).layers[1]
    out = node(np.ones((4, 3)))
    assert out.shape == (3, 4, 3)
    np.testing.assert_allclose(out[0], np.ones((4, 3)))
    params = fl.trainable(node)
    assert params and all(k.startswith("model.") for k in params)
    assert "NeuralODE" in repr(node)
    assert node.solve(np.ones((4, 3))).stats.nfe > 0


def test_a_non_callable_model_is_refused():
    with pytest.raises(TypeError, match="NeuralODE: model must be callable"):
        fl.NeuralODE(np.ones(3), (0.0, 1.0))


def test_compile_refuses_a_solve_by_name_even_through_a_closure():
    """fl.compile of a NeuralODE, of a training step with one, and of a solve whose f closes
    over the compiled argument (that one failed on a bool() on the user's line, saying
    nothing of the solver)."""
    node = fl.NeuralODE(fl.Dense(2, 2, np.tanh), (0.0, 0.5))
    x = np.ones((3, 2), np.float32)
    match = r"fl.ode.solve \(and NeuralODE\) cannot be compiled"
    with pytest.raises(fl.CompileError, match=match):
        fl.train(lambda m, x: np.sum(m(x)), node, [(x,)], fl.setup(fl.Adam(), node),
                 progress=False, compile=True)
    closure = fl.compile(lambda k: fl.ode.solve(lambda t, u, p: -k * u, np.ones(2),
                                                (0.0, 1.0), saveat=[1.0]).u)
    with pytest.raises(fl.CompileError, match=match):
        closure(np.array(2.0))


def test_training_steps_agree_across_sensealgs_with_a_tied_layer():
    """Three fl.train steps of Descent on Chain(Dense, NeuralODE(Chain(d, d)), Dense), the same
    layer d twice inside: every adjoint's parameters match Direct's (the adjoints once
    counted the tied layer's gradient twice). tests/ode/torch_twin.py checks the training
    against torchdiffeq, by hand. Descent, not Adam: Adam's normalised step hides a gradient
    doubled."""
    rng = np.random.default_rng(1)
    data = [(rng.normal(size=(4, 2)), rng.normal(size=(4, 1))) for _ in range(3)]

    def trained(alg):
        fl.seed(2)
        d = fl.Dense(3, 3, np.tanh, dtype=np.float64)  # (fl.f64 would copy d twice, untied)
        node = fl.NeuralODE(fl.Chain(d, d), (0.0, 0.5), sensealg=alg, rtol=1e-9, atol=1e-9)
        m = fl.Chain(fl.Dense(2, 3, dtype=np.float64), node, fl.Dense(3, 1, dtype=np.float64))
        assert m.layers[1].model.layers[0] is m.layers[1].model.layers[1]
        fl.train(lambda m, x, y: fl.mse(m(x), y), m, data, fl.setup(fl.Descent(0.1), m),
                 progress=False)
        return fl.leaves(m)

    expect = trained(fl.ode.Direct())
    for alg in [fl.ode.InterpolatingAdjoint(), fl.ode.QuadratureAdjoint()]:
        for a, b in zip(trained(alg), expect):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-7)


def _bs3_by_hand(f, u, t0, t1, n):
    """Bogacki-Shampine 3(2)'s third-order solution in ``n`` fixed steps, written out."""
    h = (t1 - t0) / n
    for _ in range(n):
        k1 = f(u)
        k2 = f(u + h / 2 * k1)
        k3 = f(u + 3 * h / 4 * k2)
        u = u + h * (2 / 9 * k1 + 1 / 3 * k2 + 4 / 9 * k3)
    return u


def test_adaptive_false_takes_fixed_steps_of_dt():
    """NeuralODE had no adaptive=: a fixed-step solve (as fl.ode.solve(..., adaptive=False)
    gives) needed a fixed-step solver."""
    fl.seed(4)
    inner = fl.f64(fl.Dense(3, 3, np.tanh))
    x = np.random.default_rng(1).normal(size=(4, 3))
    fixed = fl.NeuralODE(inner, (0.0, 0.8), solver=fl.ode.BS3(), dt=0.1, adaptive=False,
                         sensealg=fl.ode.Direct())
    np.testing.assert_allclose(fixed(x), _bs3_by_hand(inner, x, 0.0, 0.8, 8), rtol=1e-12)
    assert fixed.solve(x).stats.naccept == 8
    (g,) = fl.gradient(lambda n: np.sum(n(x) ** 2), fixed)  # the derivative of those steps
    (ref,) = fl.gradient(lambda m: np.sum(_bs3_by_hand(m, x, 0.0, 0.8, 8) ** 2), inner)
    np.testing.assert_allclose(g.model.weight, ref.weight, rtol=1e-10)
    exact = fl.NeuralODE(inner, (0.0, 0.8), rtol=1e-12, atol=1e-12)(x)
    errors = [np.abs(fl.NeuralODE(inner, (0.0, 0.8), dt=dt, adaptive=False)(x) - exact).max()
              for dt in (0.2, 0.1)]  # Tsit5 in fixed steps: fifth order, as its order test
    assert 4.5 < np.log2(errors[0] / errors[1]) < 5.6 and errors[1] < 1e-6, errors
    with pytest.raises(ValueError, match=r"NeuralODE: adaptive=False takes fixed steps; pass "
                                         r"their size, dt=\.\.\."):
        fl.NeuralODE(inner, (0.0, 1.0), adaptive=False)
    with pytest.raises(ValueError, match=r"NeuralODE: RK4\(\) \(a fixed-step solver\) takes"):
        fl.NeuralODE(inner, (0.0, 1.0), solver=fl.ode.RK4())
    with pytest.raises(TypeError, match=r"NeuralODE: adaptive must be True or False; got 0"):
        fl.NeuralODE(inner, (0.0, 1.0), dt=0.1, adaptive=0)


class _Counting:
    """An ODE function that counts its calls in a field."""

    def __init__(self):
        self.w = np.array([[-0.5, 0.2], [0.1, -0.3]])
        self.calls = 0

    def __call__(self, u):
        self.calls += 1
        return np.tanh(u @ self.w.T)


ALGS = [fl.ode.InterpolatingAdjoint(), fl.ode.InterpolatingAdjoint(checkpointing=True),
        fl.ode.BacksolveAdjoint(), fl.ode.QuadratureAdjoint()]


@pytest.mark.parametrize("alg", ALGS, ids=repr)
def test_a_count_kept_by_the_function_moves_under_the_adjoints_as_in_the_forward_solve(alg):
    # before: each call of f got a fresh copy of the model, so the count stayed 0 under
    # every adjoint (the forward solve alone, eagerly or with Direct(), counts each call)
    x = np.ones((3, 2))
    options = dict(rtol=1e-8, atol=1e-10)
    f = _Counting()
    g, = fl.gradient(lambda n: np.sum(n(x) ** 2), fl.NeuralODE(f, (0.0, 1.0), sensealg=alg,
                                                               **options))
    eager = _Counting()
    fl.NeuralODE(eager, (0.0, 1.0), sensealg=alg, **options)(x)
    direct, = fl.gradient(lambda n: np.sum(n(x) ** 2),
                          fl.NeuralODE(_Counting(), (0.0, 1.0), sensealg=fl.ode.Direct(),
                                       **options))
    assert f.calls == eager.calls > 10
    np.testing.assert_allclose(g.model.w, direct.model.w, rtol=1e-6)


@pytest.mark.parametrize("alg", ALGS, ids=repr)
def test_a_batchnorm_in_the_function_trains_under_the_adjoints(alg):
    # before: eps (a number the layer declares nontrainable) was taken for a parameter, and
    # the backward pass failed in float(eps); the backward pass's calls must not move the
    # running statistics again
    x = np.random.default_rng(0).normal(size=(6, 2))

    def node(sensealg):
        fl.seed(0)
        model = fl.f64(fl.Chain(fl.Dense(2, 2, np.tanh), fl.BatchNorm(2)))
        return fl.NeuralODE(model, (0.0, 0.5), sensealg=sensealg, rtol=1e-9, atol=1e-11)

    n, ref, eager = node(alg), node(fl.ode.Direct()), node(alg)
    g, = fl.gradient(lambda n: np.sum(n(x) ** 2), n)
    want, = fl.gradient(lambda n: np.sum(n(x) ** 2), ref)
    np.testing.assert_allclose(g.model.layers[0].weight, want.model.layers[0].weight,
                               rtol=1e-5)
    assert g.model.layers[1].eps is None
    eager.model.layers[1].active = True  # the forward solve alone, in training mode
    eager(x)
    for k in ("running_mean", "running_var"):  # moved by the forward solve's calls only
        np.testing.assert_allclose(getattr(n.model.layers[1], k),
                                   getattr(eager.model.layers[1], k), rtol=1e-12)
    assert np.any(n.model.layers[1].running_mean != 0)


@pytest.mark.parametrize("options, match", [
    (dict(tspan=1.0), r"NeuralODE: tspan must be \(t0, t1\)"),
    (dict(saveat=[3.0]), r"NeuralODE: saveat must be times inside tspan \[0.0, 1.0\]"),
    (dict(saveat=[0.5, 0.2]), "NeuralODE: saveat must be ordered"),
    (dict(rtol=-1.0), "NeuralODE: rtol must be a number >= 0"),
    (dict(max_steps=2.5), "NeuralODE: max_steps must be a positive int"),
    (dict(dtmax=0.0), "NeuralODE: dtmax must be"),
    (dict(solver=fl.ode.Tsit5), r"NeuralODE: solver must be a solver instance; got the class"),
    (dict(sensealg="adjoint"), r"NeuralODE: sensealg must be Direct\(\)")])
def test_a_neural_odes_options_are_checked_when_made(options, match):
    """Each was taken when the layer was made, and failed at its first call naming solve
    (or, for the solver's class, deep in the step control)."""
    call = dict(tspan=(0.0, 1.0))
    call.update(options)
    with pytest.raises((ValueError, TypeError), match=match):
        fl.NeuralODE(fl.Dense(2, 2), call.pop("tspan"), **call)


def test_a_neural_ode_prints_how_it_solves():
    """Its listing showed the model alone: layers with other times, solvers or sensealgs
    printed alike."""
    node = fl.NeuralODE(fl.Dense(2, 2), (0.0, 2.0), solver=fl.ode.Rodas5(), saveat=[1.0, 2.0],
                        sensealg=fl.ode.QuadratureAdjoint(rtol=1e-4))
    text = repr(fl.Chain(node, fl.Dense(2, 1)))
    assert "    model = Dense(2 => 2),  " in text
    for line in ("    tspan = (0.0, 2.0),", "    solver = Rodas5(),",
                 "    saveat = [1.0, 2.0],", "    sensealg = QuadratureAdjoint(rtol=0.0001),"):
        assert line in text.splitlines()
    assert "Total: 4 arrays, 9 parameters" in text
