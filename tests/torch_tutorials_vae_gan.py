"""Two tutorial programs against PyTorch (by hand; see torch_tutorials_common.py):

- a VAE: reparameterisation with fixed noise, a KL term, Adam for a few steps;
- a small GAN: a generator with BatchNorm, a discriminator with LeakyReLU, two Adam
  optimisers, the generated batch detached for the discriminator's step (the PyTorch DCGAN
  tutorial's loop), running statistics compared at the end.

    PYTHONPATH=src python tests/torch_tutorials_vae_gan.py
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import fluxml as fl
from torch_tutorials_common import check, grads_of, load_torch, params, summary, torch_params

rng = np.random.default_rng(0)


# --- VAE ------------------------------------------------------------------------------------

class VAE(fl.Module):
    def __init__(self, d=8, h=16, z=2):
        self.enc = fl.Dense(d, h, np.tanh)
        self.mu = fl.Dense(h, z)
        self.logvar = fl.Dense(h, z)
        self.dec = fl.Chain(fl.Dense(z, h, fl.relu), fl.Dense(h, d))

    def __call__(self, x, eps):
        h = self.enc(x)
        mu, logvar = self.mu(h), self.logvar(h)
        z = mu + np.exp(0.5 * logvar) * eps  # the reparameterisation trick
        return self.dec(z), mu, logvar


def vae_loss(m, x, eps):
    logits, mu, logvar = m(x, eps)
    n = x.shape[0]
    rec = fl.logitbinarycrossentropy(logits, x, agg=np.sum) / n
    kl = -0.5 * np.sum(1 + logvar - mu**2 - np.exp(logvar)) / n
    return rec + kl


class TorchVAE(nn.Module):
    def __init__(self, d=8, h=16, z=2):
        super().__init__()
        self.enc = nn.Linear(d, h)
        self.mu = nn.Linear(h, z)
        self.logvar = nn.Linear(h, z)
        self.dec = nn.Sequential(nn.Linear(z, h), nn.ReLU(), nn.Linear(h, d))

    def forward(self, x, eps):
        h = torch.tanh(self.enc(x))
        mu, logvar = self.mu(h), self.logvar(h)
        return self.dec(mu + torch.exp(0.5 * logvar) * eps), mu, logvar


def torch_vae_loss(m, x, eps):
    logits, mu, logvar = m(x, eps)
    n = x.shape[0]
    rec = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / n
    kl = -0.5 * torch.sum(1 + logvar - mu**2 - torch.exp(logvar)) / n
    return rec + kl


def vae():
    print("VAE, Adam(1e-2), 6 steps")
    fl.seed(1)
    model = fl.f64(VAE())
    ref = TorchVAE()
    load_torch(ref, params(model))
    state = fl.setup(fl.Adam(1e-2), model)
    opt = torch.optim.Adam(ref.parameters(), lr=1e-2)
    x = (rng.random((32, 8)) < 0.4).astype(np.float64)
    for step in range(6):
        eps = rng.standard_normal((32, 2))
        loss, (g, _, _) = fl.withgradient(vae_loss, model, x, eps)
        opt.zero_grad()
        tl = torch_vae_loss(ref, torch.tensor(x), torch.tensor(eps))
        tl.backward()
        check(f"VAE loss step {step}", loss, tl)
        check(f"VAE gradients step {step}", grads_of(model, g),
              [p.grad for p in ref.parameters()])
        fl.update(state, model, g)
        opt.step()
    check("VAE final parameters", params(model), list(ref.parameters()))


# --- GAN ------------------------------------------------------------------------------------

def generator():
    return fl.Chain(fl.Dense(4, 16), fl.BatchNorm(16, fl.relu), fl.Dense(16, 6, np.tanh))


def discriminator():
    return fl.Chain(fl.Dense(6, 16, lambda x: fl.leakyrelu(x, 0.2)), fl.Dense(16, 1))


def torch_generator():
    return nn.Sequential(nn.Linear(4, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 6),
                         nn.Tanh())


def torch_discriminator():
    return nn.Sequential(nn.Linear(6, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1))


def gan():
    print("GAN, two Adam(2e-3, beta=(0.5, 0.999)), 5 iterations")
    fl.seed(2)
    G, D = fl.f64(generator()), fl.f64(discriminator())
    tG, tD = torch_generator(), torch_discriminator()
    load_torch(tG, params(G))
    load_torch(tD, params(D))
    optG = fl.setup(fl.Adam(2e-3, beta=(0.5, 0.999)), G)
    optD = fl.setup(fl.Adam(2e-3, beta=(0.5, 0.999)), D)
    toptG = torch.optim.Adam(tG.parameters(), lr=2e-3, betas=(0.5, 0.999))
    toptD = torch.optim.Adam(tD.parameters(), lr=2e-3, betas=(0.5, 0.999))
    bce = fl.logitbinarycrossentropy
    ones, zeros = np.ones((16, 1)), np.zeros((16, 1))
    for step in range(5):
        real = np.tanh(rng.standard_normal((16, 6)) + 0.5)
        z = rng.standard_normal((16, 4))

        def d_loss(d):
            fake = fl.stop_gradient(G(z))  # G in training mode: inside a gradient
            return bce(d(real), ones) + bce(d(fake), zeros)

        lossD, (gD,) = fl.withgradient(d_loss, D)
        fl.update(optD, D, gD)
        lossG, (gG,) = fl.withgradient(lambda g: bce(D(g(z)), ones), G)
        fl.update(optG, G, gG)

        toptD.zero_grad()
        tz, treal = torch.tensor(z), torch.tensor(real)
        fake = tG(tz)
        tlossD = F.binary_cross_entropy_with_logits(tD(treal), torch.ones(16, 1)) + \
            F.binary_cross_entropy_with_logits(tD(fake.detach()), torch.zeros(16, 1))
        tlossD.backward()
        check(f"GAN D gradients step {step}", grads_of(D, gD), [p.grad for p in tD.parameters()])
        toptD.step()
        toptG.zero_grad()
        tlossG = F.binary_cross_entropy_with_logits(tD(tG(tz)), torch.ones(16, 1))
        tlossG.backward()
        check(f"GAN losses step {step}", [lossD, lossG], [tlossD, tlossG])
        check(f"GAN G gradients step {step}", grads_of(G, gG),
              [p.grad for p in tG.parameters()])
        toptG.step()
    check("GAN final parameters", params(G) + params(D), torch_params(tG) + torch_params(tD))
    bn, tbn = G.layers[1], tG[1]
    check("GAN BatchNorm running statistics", [bn.running_mean, bn.running_var],
          [tbn.running_mean, tbn.running_var])
    zt = rng.standard_normal((5, 4))
    tG.eval()
    check("GAN generator in test mode", G(zt), tG(torch.tensor(zt)))


if __name__ == "__main__":
    vae()
    gan()
    summary("torch_tutorials_vae_gan")
