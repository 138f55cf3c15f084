"""torchdiffeq's ``ode_demo.py`` (learning a spiral's dynamics from sampled sub-trajectories)
written with ``fl.ode.solve``, against torchdiffeq's ``odeint_adjoint`` (by hand; see
torch_tutorials_common.py). The vector field is time dependent and reads the cube of the
state, ``f(t, u, net) = net(u**3) * (1 + 0.1 sin t)``; each iteration solves a batch of
initial values over a grid of save times (the first one t0) with DP5 against ``dopri5``,
the loss is the mean absolute error of all saved states, RMSprop steps. Every sensitivity
(Direct, InterpolatingAdjoint, BacksolveAdjoint, QuadratureAdjoint) against the adjoint,
tolerances 1e-10: losses agree to 1e-10 and gradients to about 7e-8 (relative to the largest
entry). The gradients' difference is torchdiffeq's error: against a reference at rtol =
atol = 1e-13 (fluxml's Direct and torchdiffeq's dopri8 agree there to 8e-10), fluxml's
gradients at 1e-10 are within 9e-11 (adjoints) and 7e-10 (Direct), torchdiffeq's adjoint
within 8e-9; at 1e-8, 1e-8 against 1e-6.

    PYTHONPATH=src python tests/torch_tutorials_ode.py
"""

import numpy as np
import torch
from torch import nn
from torchdiffeq import odeint, odeint_adjoint

import fluxml as fl
from torch_tutorials_common import check, grads_of, load_torch, params, summary

A = np.array([[-0.1, 2.0], [-2.0, -0.1]])
T = np.linspace(0.0, 2.5, 60)
TOL = dict(rtol=1e-10, atol=1e-10)
rng = np.random.default_rng(0)


def true_trajectory():
    with torch.no_grad():
        return odeint(lambda t, u: (u**3) @ torch.tensor(A), torch.tensor([[2.0, 0.0]]),
                      torch.tensor(T), method="dopri5", **TOL)[:, 0].numpy()


def get_batch(true_y, m=8, length=10):
    s = rng.choice(np.arange(len(T) - length), m, replace=False)
    return true_y[s], T[:length], np.stack([true_y[s + i] for i in range(length)])


def field(t, u, net):
    return net(u**3) * (1 + 0.1 * np.sin(t))


class TorchField(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 2))

    def forward(self, t, u):
        return self.net(u**3) * (1 + 0.1 * torch.sin(t))


def run(sensealg):
    print(f"ode_demo with {sensealg!r}: DP5 against dopri5 + odeint_adjoint, RMSprop, 5 steps")
    true_y = true_trajectory()
    fl.seed(10)
    net = fl.f64(fl.Chain(fl.Dense(2, 16, np.tanh), fl.Dense(16, 2)))
    ref = TorchField()
    load_torch(ref, params(net))
    state = fl.setup(fl.RMSProp(1e-3, 0.99), net)
    opt = torch.optim.RMSprop(ref.parameters(), lr=1e-3, alpha=0.99, eps=1e-8)
    for step in range(5):
        y0, t, y = get_batch(true_y)

        def loss(net):
            sol = fl.ode.solve(field, y0, (t[0], t[-1]), net, solver=fl.ode.DP5(),
                               saveat=t, sensealg=sensealg, **TOL)
            return np.mean(np.abs(np.stack(sol.u) - y))

        value, (g,) = fl.withgradient(loss, net)
        opt.zero_grad()
        pred = odeint_adjoint(ref, torch.tensor(y0), torch.tensor(t), method="dopri5",
                              adjoint_params=tuple(ref.parameters()), **TOL)
        tl = torch.mean(torch.abs(pred - torch.tensor(y)))
        tl.backward()
        check(f"ODE loss step {step}", value, tl, tol=1e-8)
        check(f"ODE gradients step {step}", grads_of(net, g),
              [p.grad for p in ref.parameters()], tol=1e-6)
        fl.update(state, net, g)
        opt.step()
    check("ODE final parameters", params(net), list(ref.parameters()), tol=1e-6)


if __name__ == "__main__":
    for alg in (fl.ode.Direct(), fl.ode.InterpolatingAdjoint(), fl.ode.BacksolveAdjoint(),
                fl.ode.QuadratureAdjoint()):
        run(alg)
    summary("torch_tutorials_ode")
