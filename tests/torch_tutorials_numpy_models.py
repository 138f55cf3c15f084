"""Tutorial models written in plain NumPy (as a NumPy user writes them, in-place writes
included), against PyTorch (by hand; see torch_tutorials_common.py):

- Gaussian-process regression: the kernel's hyperparameters trained by Adam on the
  negative log marginal likelihood (``np.linalg.cholesky``, ``fl.scipy.linalg``'s
  ``solve_triangular``, a log-determinant from the factor's diagonal);
- a graph convolutional network: messages summed into their nodes with ``np.add.at``
  (PyTorch: ``index_add_``), repeated edges and isolated nodes included, degree
  normalisation, node classification with a mask;
- a mixture density network: ``logsumexp`` over components of Gaussian log-densities;
- hand-written causal attention whose scores are masked in place
  (``scores[..., ~mask] = -np.inf``; PyTorch: ``masked_fill``), and a sliced
  Wasserstein loss between point clouds (``np.sort`` of projections).

    PYTHONPATH=src python tests/torch_tutorials_numpy_models.py
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import fluxml as fl
from torch_tutorials_common import check, grads_of, load_torch, params, summary

rng = np.random.default_rng(0)


# --- Gaussian process -----------------------------------------------------------------------

def gp_nll(p, x, y):
    """Negative log marginal likelihood of y under an RBF kernel with noise; p holds logs."""
    ell, sf, sn = np.exp(p["log_ell"]), np.exp(p["log_sf"]), np.exp(p["log_sn"])
    d2 = np.sum((x[:, None, :] - x[None, :, :]) ** 2, axis=-1)
    K = sf**2 * np.exp(-0.5 * d2 / ell**2)
    K[np.diag_indices(len(x))] += sn**2  # in place, as NumPy code writes it
    L = np.linalg.cholesky(K)
    alpha = fl.scipy.linalg.solve_triangular(L, y, lower=True)
    return 0.5 * np.sum(alpha**2) + np.sum(np.log(np.diag(L))) + 0.5 * len(x) * np.log(2 * np.pi)


def torch_gp_nll(p, x, y):
    ell, sf, sn = torch.exp(p["log_ell"]), torch.exp(p["log_sf"]), torch.exp(p["log_sn"])
    d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    K = sf**2 * torch.exp(-0.5 * d2 / ell**2) + sn**2 * torch.eye(len(x))
    L = torch.linalg.cholesky(K)
    alpha = torch.linalg.solve_triangular(L, y[:, None], upper=False)[:, 0]
    return 0.5 * (alpha**2).sum() + torch.log(torch.diagonal(L)).sum() + \
        0.5 * len(x) * np.log(2 * np.pi)


def gp():
    print("GP regression: hyperparameters by Adam(0.05) on the marginal likelihood, 10 steps")
    x = rng.uniform(-3, 3, (25, 2))
    y = np.sin(x[:, 0]) * np.cos(x[:, 1]) + 0.05 * rng.standard_normal(25)
    p = {"log_ell": np.array(0.3), "log_sf": np.array(-0.2), "log_sn": np.array(-1.5)}
    tp = {k: torch.tensor(float(v), requires_grad=True) for k, v in p.items()}
    state = fl.setup(fl.Adam(0.05), p)
    opt = torch.optim.Adam(list(tp.values()), lr=0.05)
    for step in range(10):
        value, (g, *_) = fl.withgradient(gp_nll, p, x, y)
        opt.zero_grad()
        tl = torch_gp_nll(tp, torch.tensor(x), torch.tensor(y))
        tl.backward()
        check(f"GP negative log likelihood step {step}", value, tl)
        check(f"GP gradients step {step}", [g[k] for k in p], [tp[k].grad for k in p])
        fl.update(state, p, g)
        opt.step()
    check("GP hyperparameters", [p[k] for k in p], [tp[k] for k in p])


# --- GCN ------------------------------------------------------------------------------------

class GCN(fl.Module):
    def __init__(self, d_in, d_hidden, d_out):
        self.l1 = fl.Dense(d_in, d_hidden)
        self.l2 = fl.Dense(d_hidden, d_out)

    def propagate(self, h, src, dst, n):
        deg = np.ones(n)
        np.add.at(deg, dst, 1.0)  # self loops plus in-degree
        norm = 1.0 / np.sqrt(deg)
        out = h * norm[:, None] ** 2  # the self loop
        np.add.at(out, dst, h[src] * (norm[src] * norm[dst])[:, None])
        return out

    def __call__(self, x, src, dst):
        n = len(x)
        h = fl.relu(self.propagate(self.l1(x), src, dst, n))
        return self.propagate(self.l2(h), src, dst, n)


class TorchGCN(nn.Module):
    def __init__(self, d_in, d_hidden, d_out):
        super().__init__()
        self.l1, self.l2 = nn.Linear(d_in, d_hidden), nn.Linear(d_hidden, d_out)

    @staticmethod
    def propagate(h, src, dst, n):
        deg = torch.ones(n).index_add_(0, dst, torch.ones(len(dst)))
        norm = deg.rsqrt()
        out = h * norm[:, None] ** 2
        return out.index_add(0, dst, h[src] * (norm[src] * norm[dst])[:, None])

    def forward(self, x, src, dst):
        n = len(x)
        return self.propagate(self.l2(torch.relu(self.propagate(self.l1(x), src, dst, n))),
                              src, dst, n)


def gcn():
    print("GCN node classification, np.add.at messages, masked loss, Adam(0.02), 8 steps")
    n = 20
    src = rng.integers(0, n - 2, 50)  # nodes n-2, n-1 send nothing
    dst = rng.integers(0, n - 2, 50)
    src = np.concatenate([src, src[:5]])  # repeated edges
    dst = np.concatenate([dst, dst[:5]])
    x = rng.standard_normal((n, 5))
    labels = rng.integers(0, 3, n)
    train = rng.random(n) < 0.6
    fl.seed(14)
    model = fl.f64(GCN(5, 8, 3))
    ref = TorchGCN(5, 8, 3)
    load_torch(ref, params(model))
    state = fl.setup(fl.Adam(0.02), model)
    opt = torch.optim.Adam(ref.parameters(), lr=0.02)

    def loss(m):
        logp = fl.logsoftmax(m(x, src, dst), axis=-1)
        return -np.mean(logp[np.arange(n), labels][train])

    ts, td = torch.tensor(src), torch.tensor(dst)
    for step in range(8):
        value, (g,) = fl.withgradient(loss, model)
        opt.zero_grad()
        out = ref(torch.tensor(x), ts, td)
        tl = F.cross_entropy(out[torch.tensor(train)], torch.tensor(labels[train]))
        tl.backward()
        check(f"GCN loss step {step}", value, tl)
        check(f"GCN gradients step {step}", grads_of(model, g), [p.grad for p in ref.parameters()])
        fl.update(state, model, g)
        opt.step()
    check("GCN final parameters", params(model), list(ref.parameters()))


# --- MDN ------------------------------------------------------------------------------------

class MDN(fl.Module):
    def __init__(self, k=4, h=16):
        self.k = k
        self.body = fl.Dense(1, h, np.tanh)
        self.head = fl.Dense(h, 3 * k)

    def __call__(self, x):
        out = self.head(self.body(x))
        return out[:, :self.k], out[:, self.k:2 * self.k], out[:, 2 * self.k:]


def mdn_nll(m, x, y):
    logit_pi, mu, log_sigma = m(x)
    log_pi = fl.logsoftmax(logit_pi, axis=-1)
    z = (y - mu) / np.exp(log_sigma)
    log_n = -0.5 * z**2 - log_sigma - 0.5 * np.log(2 * np.pi)
    return -np.mean(fl.logsumexp(log_pi + log_n, axis=-1))


def mdn():
    print("mixture density network, logsumexp over 4 components, RMSProp, 6 steps")
    fl.seed(15)
    model = fl.f64(MDN())
    ref = nn.Sequential(nn.Linear(1, 16), nn.Tanh(), nn.Linear(16, 12))
    load_torch(ref, params(model))
    state = fl.setup(fl.RMSProp(3e-3), model)
    opt = torch.optim.RMSprop(ref.parameters(), lr=3e-3, alpha=0.9, eps=1e-8)
    for step in range(6):
        y = rng.uniform(-1, 1, (64, 1))
        x = y + 0.3 * np.sin(3 * y) + 0.05 * rng.standard_normal((64, 1))  # multi-valued
        value, (g, *_) = fl.withgradient(mdn_nll, model, x, y)
        opt.zero_grad()
        out = ref(torch.tensor(x))
        lp, mu, ls = out[:, :4], out[:, 4:8], out[:, 8:]
        comp = torch.distributions.Normal(mu, ls.exp())
        tl = -torch.logsumexp(F.log_softmax(lp, -1) + comp.log_prob(torch.tensor(y)), -1).mean()
        tl.backward()
        check(f"MDN loss step {step}", value, tl)
        check(f"MDN gradients step {step}", grads_of(model, g), [p.grad for p in ref.parameters()])
        fl.update(state, model, g)
        opt.step()
    check("MDN final parameters", params(model), list(ref.parameters()))


# --- in-place masked attention, sorted projections ------------------------------------------

def masked_attention(w, x):
    q, k, v = x @ w["q"], x @ w["k"], x @ w["v"]
    scores = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])
    t = x.shape[1]
    mask = np.tril(np.ones((t, t), bool))
    scores[..., ~mask] = -np.inf  # in place
    return fl.softmax(scores, axis=-1) @ v


def sliced_wasserstein(a, b, dirs):
    pa, pb = np.sort(a @ dirs, axis=0), np.sort(b @ dirs, axis=0)
    return np.mean((pa - pb) ** 2)


def in_place_and_sort():
    print("hand-written causal attention masked in place; sliced Wasserstein by np.sort")
    w = {k: rng.standard_normal((6, 4)) for k in "qkv"}
    x = rng.standard_normal((3, 5, 6))
    g = rng.standard_normal((3, 5, 4))
    out, back = fl.pullback(masked_attention, w, x)
    tw = {k: torch.tensor(a, requires_grad=True) for k, a in w.items()}
    tx = torch.tensor(x, requires_grad=True)
    q, k, v = tx @ tw["q"], tx @ tw["k"], tx @ tw["v"]
    s = (q @ k.transpose(-1, -2) / 2.0).masked_fill(~torch.tril(torch.ones(5, 5, dtype=bool)),
                                                      float("-inf"))
    tout = torch.softmax(s, -1) @ v
    tout.backward(torch.tensor(g))
    gw, gx = back(g)
    check("masked attention output", out, tout)
    check("masked attention gradients", [gw["q"], gw["k"], gw["v"], gx],
          [tw["q"].grad, tw["k"].grad, tw["v"].grad, tx.grad])

    a, b = rng.standard_normal((40, 3)), rng.standard_normal((40, 3)) * 0.5 + 1.0
    dirs = rng.standard_normal((3, 8))
    dirs /= np.linalg.norm(dirs, axis=0)
    value, (ga, _, _) = fl.withgradient(sliced_wasserstein, a, b, dirs)
    ta = torch.tensor(a, requires_grad=True)
    tv = ((torch.sort(ta @ torch.tensor(dirs), 0)[0] -
           torch.sort(torch.tensor(b @ dirs), 0)[0]) ** 2).mean()
    tv.backward()
    check("sliced Wasserstein value", value, tv)
    check("sliced Wasserstein gradient", ga, ta.grad)


if __name__ == "__main__":
    gp()
    gcn()
    mdn()
    in_place_and_sort()
    summary("torch_tutorials_numpy_models")
