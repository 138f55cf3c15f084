"""Cross-check of fluxml's losses, optimisers and schedules against PyTorch (not a timing):
prints the largest relative difference of each. Run with
``PYTHONPATH=src /work/.bench-venv/bin/python benchmarks/crosscheck_torch.py``."""

import numpy as np

import fluxml as fl

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    raise SystemExit("PyTorch is not installed: nothing to compare with") from None

torch.set_default_dtype(torch.float64)
rng = np.random.default_rng(0)
N, C = 16, 5


def rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-12)))


T = torch.tensor
logits, real, real2 = (rng.standard_normal((N, C)) for _ in range(3))
labels = rng.integers(0, C, N)
probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
tprobs = rng.dirichlet(np.ones(C), N)
unit, bits = rng.uniform(0.05, 0.95, (N, C)), rng.integers(0, 2, (N, C)).astype(float)
pos, counts = rng.uniform(0.2, 3, (N, C)), rng.poisson(2.0, (N, C)).astype(float)

print("losses (largest relative difference against torch.nn.functional)")
rows = [
    ("mae", fl.mae(real, real2), F.l1_loss(T(real), T(real2))),
    ("mse", fl.mse(real, real2), F.mse_loss(T(real), T(real2))),
    ("huber_loss", fl.huber_loss(2 * real, real2, delta=0.7),
     F.huber_loss(T(2 * real), T(real2), delta=0.7)),
    ("crossentropy (labels)", fl.crossentropy(probs, labels, eps=0.0),
     F.nll_loss(torch.log(T(probs)), T(labels))),
    ("logitcrossentropy (labels)", fl.logitcrossentropy(logits, labels),
     F.cross_entropy(T(logits), T(labels))),
    ("logitcrossentropy (probs)", fl.logitcrossentropy(logits, tprobs),
     F.cross_entropy(T(logits), T(tprobs))),
    ("logitcrossentropy + label_smoothing", fl.logitcrossentropy(
        logits, fl.label_smoothing(np.eye(C)[labels], 0.1)),
     F.cross_entropy(T(logits), T(labels), label_smoothing=0.1)),
    ("binarycrossentropy", fl.binarycrossentropy(unit, bits, eps=0.0),
     F.binary_cross_entropy(T(unit), T(bits))),
    ("logitbinarycrossentropy", fl.logitbinarycrossentropy(3 * real, unit),
     F.binary_cross_entropy_with_logits(T(3 * real), T(unit))),
    ("kldivergence", fl.kldivergence(probs, tprobs, eps=0.0),
     F.kl_div(torch.log(T(probs)), T(tprobs), reduction="batchmean")),
    ("poisson_loss", fl.poisson_loss(pos, counts),
     F.poisson_nll_loss(T(pos), T(counts), log_input=False, eps=0.0)),
    ("hinge_loss", fl.hinge_loss(real, 2 * bits - 1),
     F.hinge_embedding_loss(T(real * (2 * bits - 1)), -torch.ones(N, C), margin=1.0)),
]
for name, ours, theirs in rows:
    print(f"  {name:38s} {rel(ours, theirs.numpy()):.1e}")

# ctc: torch takes (T, N, C) log-probabilities and puts the blank first by default
frames, n = 12, 4
x = rng.standard_normal((n, frames, C))
labs = [rng.integers(0, C - 1, k) for k in (3, 5, 1, 4)]
lengths = np.array([12, 10, 7, 12])
ours = fl.ctc_loss(x, labs, input_lengths=lengths, agg="none")
xt = T(x).requires_grad_()
lp = F.log_softmax(xt, -1).transpose(0, 1)
theirs = F.ctc_loss(lp, T(np.concatenate(labs)), T(lengths), T([len(lab) for lab in labs]),
                    blank=C - 1, reduction="none")
print(f"  {'ctc_loss (4 sequences)':38s} {rel(ours, theirs.detach().numpy()):.1e}")
theirs.sum().backward()
g = fl.gradient(lambda z: fl.ctc_loss(z, labs, input_lengths=lengths, agg="sum"), x)[0]
print(f"  {'ctc_loss gradient':38s} {rel(g, xt.grad.numpy()):.1e}")

print("optimisers (10 steps on a quadratic, largest relative difference of the parameters)")
pairs = [
    (fl.Descent(0.1), lambda p: torch.optim.SGD(p, lr=0.1)),
    (fl.Momentum(0.1, 0.9), lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)),
    (fl.Nesterov(0.1, 0.9), lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True)),
    (fl.RMSProp(0.01, 0.9), lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.9, eps=1e-8)),
    (fl.RMSProp(0.01, 0.9, centred=True),
     lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.9, eps=1e-8, centered=True)),
    (fl.Adam(0.01), lambda p: torch.optim.Adam(p, lr=0.01)),
    (fl.AdamW(0.01, lambd=0.1), lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1)),
    (fl.AdaGrad(0.1, 1e-10), lambda p: torch.optim.Adagrad(p, lr=0.1, eps=1e-10)),
    (fl.Lion(0.01), None),
    (fl.Rprop(0.01), lambda p: torch.optim.Rprop(p, lr=0.01)),
    # differs by design: Optimisers.jl rectifies once rho_t > 4, PyTorch once rho_t > 5
    (fl.RAdam(0.01), lambda p: torch.optim.RAdam(p, lr=0.01)),
]
h = rng.uniform(0.5, 2.0, 20)
c = rng.standard_normal(20)
for rule, make in pairs:
    if make is None:
        continue
    x = np.zeros(20)
    state = fl.setup(rule, [x])
    xt = torch.zeros(20, requires_grad=True)
    opt = make([xt])
    for _ in range(10):
        fl.update(state, [x], [h * (x - c)])
        opt.zero_grad()
        (0.5 * torch.sum(T(h) * (xt - T(c)) ** 2)).backward()
        opt.step()
    print(f"  {rule!r:60s} {rel(x, xt.detach().numpy()):.1e}")

print("schedules (100 steps, largest relative difference)")
p = [torch.zeros(1, requires_grad=True)]


def torch_lrs(make, steps=100):
    opt = torch.optim.SGD(p, lr=0.1)
    sched = make(opt)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return np.array(out)


S = torch.optim.lr_scheduler
checks = [
    ("StepDecay", fl.StepDecay(0.1, 0.5, 7), lambda o: S.StepLR(o, 7, 0.5)),
    ("ExpDecay", fl.ExpDecay(0.1, 0.97), lambda o: S.ExponentialLR(o, 0.97)),
    ("CosineAnneal", fl.CosineAnneal(0.1, 0.001, period=60),
     lambda o: S.CosineAnnealingLR(o, 60, eta_min=0.001)),
    ("OneCycle", fl.OneCycle(0.1, 100), lambda o: S.OneCycleLR(o, 0.1, total_steps=100)),
]
for name, ours, make in checks:
    theirs = torch_lrs(make)
    n = 61 if name == "CosineAnneal" else 100  # torch's cosine climbs again after its period
    print(f"  {name:38s} {rel([ours(t) for t in range(n)], theirs[:n]):.1e}")
