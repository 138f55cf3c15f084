"""NeuralODE inside a Chain, trained with fl.train and four optimisers, against a
torchdiffeq twin with the same weights (not part of the suite: torch is no dependency).

Chain(Dense(2, 3), NeuralODE(Chain(Dense(3, 5, tanh), Dense(5, 3))), Dense(3, 1)) in float64
is trained for a few steps of Descent, Momentum, Adam and RMSProp; the losses of every step
and the final parameters must match torch's. Fixed-step Euler and Midpoint with Direct()
against torchdiffeq's odeint (the same discrete gradient, to rounding), forward and
backward in time, with and without save times on the grid; the adaptive Tsit5, DP5 and
Vern7 with every sensealg, at rtol = atol = 1e-10, against torchdiffeq's dopri8 (odeint for
Direct, odeint_adjoint for the adjoints), to 2e-6 (Adam's normalised steps amplify the
solvers' differences, 1e-8 in the losses, to about 1e-6 in the parameters).

    PYTHONPATH=src /work/.bench-venv/bin/python tests/ode/torch_twin.py
"""

import sys

import numpy as np
import torch
from torchdiffeq import odeint, odeint_adjoint

import fluxml as fl

torch.set_default_dtype(torch.float64)


def build(alg, solver, opts, saveat=None, tspan=(0.0, 0.8)):
    fl.seed(1)
    node = fl.NeuralODE(fl.Chain(fl.Dense(3, 5, np.tanh), fl.Dense(5, 3)), tspan,
                        solver=solver, sensealg=alg, saveat=saveat, **opts)
    return fl.f64(fl.Chain(fl.Dense(2, 3), node, fl.Dense(3, 1)))


def linear(layer):
    out = torch.nn.Linear(*reversed(np.shape(layer.weight)))
    out.weight.data = torch.tensor(np.array(layer.weight))
    out.bias.data = torch.tensor(np.array(layer.bias))
    return out


class Func(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.l1, self.l2 = linear(m.layers[0]), linear(m.layers[1])

    def forward(self, t, u):
        return self.l2(torch.tanh(self.l1(u)))


class Twin(torch.nn.Module):
    def __init__(self, m, method, topts, adjoint, tspan, saveat, rtol, atol):
        super().__init__()
        self.a, self.b, self.f = linear(m.layers[0]), linear(m.layers[2]), Func(m.layers[1].model)
        self.method, self.topts, self.adj = method, topts, adjoint
        self.rtol, self.atol, self.saveat = rtol, atol, saveat
        self.ts = torch.tensor([tspan[0], tspan[1]] if saveat is None else [tspan[0], *saveat])

    def forward(self, x):
        kw = dict(adjoint_params=tuple(self.f.parameters()), adjoint_rtol=self.rtol,
                  adjoint_atol=self.atol) if self.adj else {}
        u = (odeint_adjoint if self.adj else odeint)(
            self.f, self.a(x), self.ts, method=self.method, options=self.topts, rtol=self.rtol,
            atol=self.atol, **kw)
        return self.b(u[-1] if self.saveat is None else u[1:])


RULES = {
    "Descent": (fl.Descent(0.1), lambda p: torch.optim.SGD(p, lr=0.1)),
    "Momentum": (fl.Momentum(0.05, 0.9), lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9)),
    "Adam": (fl.Adam(0.05), lambda p: torch.optim.Adam(p, lr=0.05)),
    "RMSProp": (fl.RMSProp(0.01, 0.9),
                lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.9, eps=1e-8)),
}


def run(alg, solver, opts, method, topts, adjoint, rule, saveat=None, tspan=(0.0, 0.8),
        steps=4, tol=1e-6):
    m = build(alg, solver, opts, saveat, tspan)
    twin = Twin(m, method, topts, adjoint, tspan, saveat, opts.get("rtol", 1e-3),
                opts.get("atol", 1e-6))
    rng = np.random.default_rng(5)
    yshape = (6, 1) if saveat is None else (len(saveat), 6, 1)
    data = [(rng.normal(size=(6, 2)), rng.normal(size=yshape)) for _ in range(steps)]
    ours_rule, torch_rule = RULES[rule]
    h = fl.train(lambda m, x, y: fl.mse(m(x), y), m, data, fl.setup(ours_rule, m),
                 progress=False)
    tparams = [twin.a.weight, twin.a.bias, twin.f.l1.weight, twin.f.l1.bias, twin.f.l2.weight,
               twin.f.l2.bias, twin.b.weight, twin.b.bias]
    opt = torch_rule(tparams)
    losses = []
    for x, y in data:
        opt.zero_grad()
        loss = torch.mean((twin(torch.tensor(x)) - torch.tensor(y)) ** 2)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    inner = m.layers[1].model.layers
    ours = [m.layers[0].weight, m.layers[0].bias, inner[0].weight, inner[0].bias,
            inner[1].weight, inner[1].bias, m.layers[2].weight, m.layers[2].bias]
    dl = max(abs(a - b) for a, b in zip(h.losses, losses))
    dp = max(float(np.max(np.abs(np.array(a) - t.detach().numpy())))
             for a, t in zip(ours, tparams))
    ok = dl < tol and dp < tol
    print(f"{'ok ' if ok else 'BAD'} {alg!r:42} {solver!r:10} {opts!s:30} {method:8} {rule:8} "
          f"saveat={saveat} tspan={tspan} dloss={dl:.2e} dparam={dp:.2e}", flush=True)
    return ok


def main():
    direct = fl.ode.Direct()
    adjoints = [fl.ode.InterpolatingAdjoint(), fl.ode.InterpolatingAdjoint(checkpointing=True),
                fl.ode.BacksolveAdjoint(), fl.ode.QuadratureAdjoint()]
    results = []
    # fixed steps, exact twins: Direct() against odeint, the same discrete gradient
    for solver, method in [(fl.ode.Euler(), "euler"), (fl.ode.Midpoint(), "midpoint")]:
        for dt in [0.1, 0.3]:
            for rule in RULES:
                for tspan in [(0.0, 0.8), (0.8, 0.0)]:
                    saves = [None] if dt == 0.3 else [None, [0.4, tspan[1]]]  # on the grid:
                    for saveat in saves:  # torchdiffeq interpolates linearly between steps
                        results.append(run(direct, solver, dict(dt=dt), method,
                                           dict(step_size=dt), False, rule, saveat, tspan,
                                           tol=1e-10))
    # adaptive at tight tolerances: every sensealg against odeint / odeint_adjoint
    for alg in [direct, *adjoints]:
        for solver in [fl.ode.Tsit5(), fl.ode.DP5(), fl.ode.Vern7()]:
            for rule in ["Adam", "Momentum"]:
                for tspan, saveat in [((0.0, 0.8), None), ((0.0, 0.8), [0.3, 0.8]),
                                      ((0.8, 0.0), [0.5, 0.1])]:
                    results.append(run(alg, solver, dict(rtol=1e-10, atol=1e-10), "dopri8", {},
                                       alg is not direct, rule, saveat, tspan, tol=5e-6))
    print(f"{len(results)} runs, {results.count(False)} bad")
    return 1 if False in results else 0


if __name__ == "__main__":
    sys.exit(main())
