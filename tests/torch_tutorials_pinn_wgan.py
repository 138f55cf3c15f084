"""Two tutorial programs whose loss holds a derivative, against PyTorch (by hand; see
torch_tutorials_common.py):

- a physics-informed network for Burgers' equation ``u_t + u u_x = nu u_xx`` on collocation
  points: ``u_x``, ``u_t`` by a gradient with respect to the inputs, ``u_xx`` by a second
  one (PyTorch: ``autograd.grad(create_graph=True)`` twice); the network trained by Adam on
  the residual plus initial and boundary terms: a gradient of second derivatives;
  written two ways, reverse-over-reverse (``fl.gradient`` of ``fl.gradient``) and
  forward-over-reverse for ``u_xx`` (``fl.jvp`` of the input gradient);
- WGAN-GP: a critic with LayerNorm, the gradient penalty ``(|grad_x D(x_hat)| - 1)^2`` at
  random interpolates, Adam(0, 0.9) on the critic and the generator, the generator's
  output detached for the critic (``stop_gradient``).

    PYTHONPATH=src python tests/torch_tutorials_pinn_wgan.py
"""

import numpy as np
import torch
from torch import nn

import fluxml as fl
from torch_tutorials_common import check, grads_of, load_torch, params, summary, torch_params

rng = np.random.default_rng(0)
NU = 0.01 / np.pi


# --- PINN -----------------------------------------------------------------------------------

def pinn():
    return fl.f64(fl.Chain(fl.Dense(2, 16, np.tanh), fl.Dense(16, 16, np.tanh),
                           fl.Dense(16, 1)))


def torch_pinn():
    return nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(),
                         nn.Linear(16, 1))


def residual_rev(m, xt):
    """u_t + u u_x - nu u_xx at the points xt (N, 2), columns (x, t): reverse over reverse.
    Each point's u depends on its own row only, so the gradient of the sum gives every
    row's derivatives."""
    u = m(xt)[:, 0]
    grad = lambda xt: fl.gradient(lambda p: np.sum(m(p)), xt)[0]  # noqa: E731
    du = grad(xt)
    u_x, u_t = du[:, 0], du[:, 1]
    u_xx = fl.gradient(lambda p: np.sum(grad(p)[:, 0]), xt)[0][:, 0]
    return u_t + u * u_x - NU * u_xx


def residual_fwd(m, xt):
    """The same, ``u_xx`` as the jvp of the input gradient along x (forward over reverse)."""
    u = m(xt)[:, 0]
    grad = lambda xt: fl.gradient(lambda p: np.sum(m(p)), xt)[0]  # noqa: E731
    du, ddu = fl.jvp(grad, (xt,), (np.stack([np.ones(len(xt)), np.zeros(len(xt))], 1),))
    return du[:, 1] + u * du[:, 0] - NU * ddu[:, 0]


def pinn_loss(m, xt, x0, b, residual):
    r = residual(m, xt)
    init = m(x0)[:, 0] + np.sin(np.pi * x0[:, 0])  # u(x, 0) = -sin(pi x)
    bound = m(b)[:, 0]  # u(+-1, t) = 0
    return np.mean(r**2) + np.mean(init**2) + np.mean(bound**2)


def torch_pinn_loss(ref, xt, x0, b):
    xt = torch.tensor(xt, requires_grad=True)
    u = ref(xt)[:, 0]
    du = torch.autograd.grad(u.sum(), xt, create_graph=True)[0]
    u_xx = torch.autograd.grad(du[:, 0].sum(), xt, create_graph=True)[0][:, 0]
    r = du[:, 1] + u * du[:, 0] - NU * u_xx
    init = ref(torch.tensor(x0))[:, 0] + torch.sin(np.pi * torch.tensor(x0[:, 0]))
    bound = ref(torch.tensor(b))[:, 0]
    return (r**2).mean() + (init**2).mean() + (bound**2).mean()


def burgers():
    for name, residual in (("reverse over reverse", residual_rev),
                           ("forward over reverse", residual_fwd)):
        print(f"PINN for Burgers' equation, u_xx {name}, Adam(5e-3), 5 steps")
        fl.seed(12)
        model, ref = pinn(), torch_pinn()
        load_torch(ref, params(model))
        state = fl.setup(fl.Adam(5e-3), model)
        opt = torch.optim.Adam(ref.parameters(), lr=5e-3)
        for step in range(5):
            xt = np.stack([rng.uniform(-1, 1, 32), rng.uniform(0, 1, 32)], 1)
            x0 = np.stack([rng.uniform(-1, 1, 8), np.zeros(8)], 1)
            b = np.stack([rng.choice([-1.0, 1.0], 8), rng.uniform(0, 1, 8)], 1)
            value, (g, *_) = fl.withgradient(pinn_loss, model, xt, x0, b, residual)
            opt.zero_grad()
            tl = torch_pinn_loss(ref, xt, x0, b)
            tl.backward()
            check(f"PINN loss step {step}", value, tl)
            check(f"PINN gradients step {step}", grads_of(model, g),
                  [p.grad for p in ref.parameters()])
            fl.update(state, model, g)
            opt.step()
        check("PINN final parameters", params(model), torch_params(ref))


# --- WGAN-GP --------------------------------------------------------------------------------

def critic():
    return fl.f64(fl.Chain(fl.Dense(2, 16), fl.LayerNorm(16), fl.leakyrelu,
                           fl.Dense(16, 16, fl.leakyrelu), fl.Dense(16, 1)))


def torch_critic():
    return nn.Sequential(nn.Linear(2, 16), nn.LayerNorm(16), nn.LeakyReLU(0.01),
                         nn.Linear(16, 16), nn.LeakyReLU(0.01), nn.Linear(16, 1))


def gen():
    return fl.f64(fl.Chain(fl.Dense(3, 16, fl.relu), fl.Dense(16, 2)))


def torch_gen():
    return nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 2))


def critic_loss(D, real, fake, eps, lam=10.0):
    x_hat = eps * real + (1 - eps) * fake
    (gx,) = fl.gradient(lambda x: np.sum(D(x)), x_hat)
    penalty = np.mean((np.sqrt(np.sum(gx**2, axis=1)) - 1) ** 2)
    return np.mean(D(fake)) - np.mean(D(real)) + lam * penalty


def torch_critic_loss(D, real, fake, eps, lam=10.0):
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (gx,) = torch.autograd.grad(D(x_hat).sum(), x_hat, create_graph=True)
    penalty = ((gx.pow(2).sum(1).sqrt() - 1) ** 2).mean()
    return D(fake).mean() - D(real).mean() + lam * penalty


def wgan():
    print("WGAN-GP, critic with LayerNorm, 2 critic steps per generator step, 4 rounds")
    fl.seed(13)
    D, G, tD, tG = critic(), gen(), torch_critic(), torch_gen()
    load_torch(tD, params(D))
    load_torch(tG, params(G))
    rule = fl.Adam(1e-3, beta=(0.0, 0.9))
    optD, optG = fl.setup(rule, D), fl.setup(rule, G)
    toptD = torch.optim.Adam(tD.parameters(), lr=1e-3, betas=(0.0, 0.9))
    toptG = torch.optim.Adam(tG.parameters(), lr=1e-3, betas=(0.0, 0.9))
    for rnd in range(4):
        for k in range(2):
            real = rng.standard_normal((16, 2)) * 0.3 + np.array([1.0, -1.0])
            z = rng.standard_normal((16, 3))
            eps = rng.uniform(size=(16, 1))
            value, (gD,) = fl.withgradient(
                lambda d: critic_loss(d, real, fl.stop_gradient(G(z)), eps), D)
            fl.update(optD, D, gD)
            toptD.zero_grad()
            tl = torch_critic_loss(tD, torch.tensor(real), tG(torch.tensor(z)).detach(),
                                   torch.tensor(eps))
            tl.backward()
            check(f"WGAN-GP critic loss round {rnd}.{k}", value, tl)
            check(f"WGAN-GP critic gradients round {rnd}.{k}", grads_of(D, gD),
                  [p.grad for p in tD.parameters()])
            toptD.step()
        z = rng.standard_normal((16, 3))
        value, (gG,) = fl.withgradient(lambda g: -np.mean(D(g(z))), G)
        fl.update(optG, G, gG)
        toptG.zero_grad()
        tl = -tD(tG(torch.tensor(z))).mean()
        tl.backward()
        check(f"WGAN-GP generator gradients round {rnd}", grads_of(G, gG),
              [p.grad for p in tG.parameters()])
        toptG.step()
    check("WGAN-GP final parameters", params(D) + params(G),
          torch_params(tD) + torch_params(tG))


if __name__ == "__main__":
    burgers()
    wgan()
    summary("torch_tutorials_pinn_wgan")
