"""One loss + gradient evaluation through an ODE solve: fluxml beside torchdiffeq and diffrax.

    PYTHONPATH=src /work/.bench-venv/bin/python benchmarks/ode.py

The spiral problem of DiffEqFlux and torchdiffeq: u0 = [2, 0], du/dt = mlp(u**3) with a
2-50-2 tanh network (parameters are plain NumPy arrays), t in [0, 1.5], 30 saved points,
rtol 1e-3, atol 1e-6, loss the mean squared error against the true trajectory of
du/dt = A u**3, A = [[-0.1, 2.0], [-2.0, -0.1]]. fluxml uses Tsit5 with each sensealg;
torchdiffeq dopri5 with ``odeint`` (backprop through the steps) and ``odeint_adjoint``;
diffrax Tsit5 under ``jax.jit`` (its default, discretise-then-optimise). All in float64 with
the same weights; every peer's gradient is checked against ours first.

Reported: the median time of one loss + gradient, the evaluations of f it made (forward and
backward), and the ratio peer time / fluxml time (above 1: fluxml is faster). A peer that is
not installed gets a "not installed" row.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

import fluxml as fl

A = np.array([[-0.1, 2.0], [-2.0, -0.1]])
U0 = np.array([2.0, 0.0])
T = np.linspace(0.0, 1.5, 30)
RTOL, ATOL = 1e-3, 1e-6
TARGET_DIRECT, TARGET_ADJOINT = 3.0, 5.0


def true_trajectory():
    sol = fl.ode.solve(lambda t, u, p: A @ u**3, U0, (0.0, 1.5), saveat=T, solver=fl.ode.Vern7(),
                       rtol=1e-12, atol=1e-12)
    return sol.u


def init_params(seed=0):
    """PyTorch's default Linear initialisation: uniform(+-1/sqrt(fan_in))."""
    rng = np.random.default_rng(seed)
    k1, k2 = 1 / np.sqrt(2), 1 / np.sqrt(50)
    return (rng.uniform(-k1, k1, (50, 2)), rng.uniform(-k1, k1, 50),
            rng.uniform(-k2, k2, (2, 50)), rng.uniform(-k2, k2, 2))


class Counter:
    n = 0


def mlp_rhs(counter):
    def f(t, u, p):
        counter.n += 1
        w1, b1, w2, b2 = p
        return w2 @ np.tanh(w1 @ u**3 + b1) + b2
    return f


def close(a, b):
    """Gradients from solves at rtol 1e-3 agree to about that tolerance, not to digits."""
    return np.abs(a - b).max() <= 0.02 * np.abs(b).max()


def median_time(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def fluxml_rows(params, target, repeats):
    counter = Counter()
    f = mlp_rhs(counter)
    rows, grads = [], {}
    for alg in (fl.ode.Direct(), fl.ode.InterpolatingAdjoint(),
                fl.ode.InterpolatingAdjoint(checkpointing=True), fl.ode.BacksolveAdjoint(),
                fl.ode.QuadratureAdjoint()):
        def loss(p, alg=alg):
            sol = fl.ode.solve(f, U0, (0.0, 1.5), p, saveat=T, rtol=RTOL, atol=ATOL,
                               sensealg=alg)
            return np.mean((sol.u - target) ** 2)

        step = lambda: fl.withgradient(loss, params)  # noqa: E731
        counter.n = 0
        value, (g,) = step()
        nfe = counter.n
        grads[repr(alg)] = (value, g)
        rows.append((f"fluxml {alg!r}", median_time(step, repeats), nfe))
    return rows, grads


def torchdiffeq_rows(params, target, repeats, reference):
    try:
        import torch
        from torchdiffeq import odeint, odeint_adjoint
    except ImportError:
        return [("torchdiffeq odeint", None, "not installed")]
    torch.set_num_threads(1)

    class Rhs(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w1, self.b1, self.w2, self.b2 = (torch.nn.Parameter(torch.tensor(x))
                                                  for x in params)
            self.n = 0

        def forward(self, t, u):
            self.n += 1
            return torch.tanh((u**3) @ self.w1.T + self.b1) @ self.w2.T + self.b2

    f = Rhs()
    u0, ts, yt = torch.tensor(U0), torch.tensor(T), torch.tensor(target)
    rows = []
    for name, solve in (("odeint", odeint), ("odeint_adjoint", odeint_adjoint)):
        def step(solve=solve):
            f.zero_grad()
            loss = ((solve(f, u0, ts, rtol=RTOL, atol=ATOL, method="dopri5") - yt) ** 2).mean()
            loss.backward()
            return loss

        f.n = 0
        step()
        nfe = f.n
        got = f.w1.grad.numpy()
        if not close(got, reference[0]):
            raise AssertionError(f"torchdiffeq {name}: its gradient differs from fluxml's")
        rows.append((f"torchdiffeq {name} (dopri5)", median_time(step, repeats), nfe))
    return rows


def diffrax_rows(params, target, repeats, reference):
    try:
        import diffrax
        import jax
        import jax.numpy as jnp
    except ImportError:
        return [("diffrax Tsit5 (jit)", None, "not installed")]
    jax.config.update("jax_enable_x64", True)

    def rhs(t, u, p):
        w1, b1, w2, b2 = p
        return w2 @ jnp.tanh(w1 @ u**3 + b1) + b2

    def solve(p):
        return diffrax.diffeqsolve(
            diffrax.ODETerm(rhs), diffrax.Tsit5(), 0.0, 1.5, None, jnp.asarray(U0), args=p,
            saveat=diffrax.SaveAt(ts=jnp.asarray(T)),
            stepsize_controller=diffrax.PIDController(rtol=RTOL, atol=ATOL))

    @jax.jit
    def loss_and_grad(p):
        return jax.value_and_grad(lambda p: jnp.mean((solve(p).ys - target) ** 2))(p)

    p = tuple(jnp.asarray(x) for x in params)
    value, g = loss_and_grad(p)
    if not close(np.asarray(g[0]), reference[0]):
        raise AssertionError("diffrax: its gradient differs from fluxml's")
    stats = jax.jit(solve)(p).stats
    steps = int(stats["num_steps"])
    # six new stages a step (FSAL), two evaluations choosing the first step, one first stage
    nfe = 6 * steps + 3
    step = lambda: jax.block_until_ready(loss_and_grad(p))  # noqa: E731
    return [("diffrax Tsit5 (jit)", median_time(step, repeats * 10),
             f"{nfe} fwd ({steps} steps)")]


def main(repeats: int = 15):
    target = true_trajectory()
    params = init_params()
    ours, grads = fluxml_rows(params, target, repeats)
    value, reference = grads["Direct()"]
    for name, (_, g) in grads.items():  # every sensealg gives the same gradient
        for a, b in zip(g, reference):
            if not close(a, b):
                raise AssertionError(f"fluxml {name}: gradient differs from Direct()'s")
    peers = torchdiffeq_rows(params, target, repeats, reference)
    peers += diffrax_rows(params, target, repeats, reference)
    times = {name: t for name, t, _ in peers if t is not None}
    odeint = times.get("torchdiffeq odeint (dopri5)")
    odeint_adjoint = times.get("torchdiffeq odeint_adjoint (dopri5)")
    print(f"spiral, one loss + gradient (loss {value:.5f}); ratio = torchdiffeq's time / ours "
          "(odeint for Direct(), odeint_adjoint for the adjoints; above 1: fluxml is faster)")
    print(f"{'':48s} {'time':>10s} {'f evals':>22s} {'ratio':>8s}")
    for name, t, nfe in ours:
        peer = odeint if "Direct" in name else odeint_adjoint
        ratio = f"{peer / t:7.1f}x" if peer else ""
        print(f"{name:48s} {t * 1e3:8.2f}ms {nfe!s:>22s} {ratio:>8s}")
    for name, t, nfe in peers:
        shown = f"{t * 1e3:8.2f}ms" if t is not None else ""
        print(f"{name:48s} {shown:>10s} {nfe!s:>22s}")
    print(f"targets: Direct() >= {TARGET_DIRECT}x faster than odeint; adjoints >= "
          f"{TARGET_ADJOINT}x faster than odeint_adjoint; no more evaluations than diffrax")


if __name__ == "__main__":
    main()
