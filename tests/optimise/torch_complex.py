"""fluxml's optimisers on complex parameters against torch.optim's, run by hand (torch is a
peer, not a dependency):

    PYTHONPATH=src /work/.bench-venv/bin/python tests/optimise/torch_complex.py [cases] [seed]

Each case trains a few complex arrays (complex128, or complex64) of random shapes (0-d too)
on a loss with gradients that change sign, for a random number of steps: fluxml's
parameters get ``fl.gradient``'s gradients (JAX's convention, stepped against their
conjugate), torch's its autograd's, and both land on the same numbers (complex128: within
1e-9; complex64: within 2e-4, or within three times torch's own distance from its
complex128 run, as centred RMSProp with a tiny epsilon is ill-conditioned in float32).

torch has every rule below for complex parameters (each as ``view_as_real`` pairs, in both
its foreach and single-tensor implementations); ClipNorm is compared with the norm that
``clip_grad_norm_`` takes, of the complex numbers, per array. Names are mapped as in
tests/nnlib/torch_fuzz_train.py. The rules torch lacks or defines otherwise (Lion, OAdam,
AdaBelief, RAdam, NAdam, AMSGrad, SignDecay) are compared in the suite against the real rule
on the pairs (tests/optimise/test_complex.py), as is ClipGrad, which torch refuses for
complex gradients (``clip_grad_value_``: "clamp is not supported for complex types").
"""

from __future__ import annotations

import sys

import numpy as np
import torch

import fluxml as fl


def _rules(rng, foreach):
    eta = float(rng.choice([1e-3, 1e-2, 0.1]))
    beta = (float(rng.uniform(0.5, 0.95)), float(rng.uniform(0.9, 0.999)))
    rho, eps = float(rng.uniform(0.5, 0.99)), float(rng.choice([1e-8, 1e-6, 1e-3]))
    lam = float(rng.choice([0.0, 1e-2, 0.1]))
    omega, p = float(rng.uniform(0.1, 3.0)), float(rng.choice([1.0, 2.0, 3.0, np.inf]))
    O = torch.optim  # noqa: N806
    kw = {"foreach": foreach}
    return {
        "Descent": (fl.Descent(eta), lambda q: O.SGD(q, lr=eta, **kw)),
        "Momentum": (fl.Momentum(eta, rho), lambda q: O.SGD(q, lr=eta, momentum=rho, **kw)),
        "Nesterov": (fl.Nesterov(eta, rho),
                     lambda q: O.SGD(q, lr=eta, momentum=rho, nesterov=True, **kw)),
        "RMSProp": (fl.RMSProp(eta, rho, eps),
                    lambda q: O.RMSprop(q, lr=eta, alpha=rho, eps=eps, **kw)),
        "RMSProp centred": (fl.RMSProp(eta, rho, eps, centred=True), lambda q: O.RMSprop(
            q, lr=eta, alpha=rho, eps=eps, centered=True, **kw)),
        "Adam": (fl.Adam(eta, beta, eps), lambda q: O.Adam(q, lr=eta, betas=beta, eps=eps,
                                                            **kw)),
        "AdamW": (fl.AdamW(eta, beta, lam, eps), lambda q: O.AdamW(
            q, lr=eta, betas=beta, eps=eps, weight_decay=lam, **kw)),
        "AdaGrad": (fl.AdaGrad(eta, eps), lambda q: O.Adagrad(
            q, lr=eta, eps=eps, initial_accumulator_value=eps, **kw)),
        "AdaDelta": (fl.AdaDelta(rho, eps), lambda q: O.Adadelta(q, lr=1.0, rho=rho, eps=eps,
                                                                  **kw)),
        "AdaMax": (fl.AdaMax(eta, beta, 0.0), lambda q: O.Adamax(q, lr=eta, betas=beta,
                                                                  eps=0.0, **kw)),
        "Rprop": (fl.Rprop(eta, (0.5, 1.2), (1e-6, 50.0)), lambda q: O.Rprop(
            q, lr=eta, etas=(0.5, 1.2), step_sizes=(1e-6, 50.0), **kw)),
        "WeightDecay + Descent": (fl.OptimiserChain(fl.WeightDecay(lam), fl.Descent(eta)),
                                  lambda q: O.SGD(q, lr=eta, weight_decay=lam, **kw)),
        "WeightDecay + Momentum": (
            fl.OptimiserChain(fl.WeightDecay(lam), fl.Momentum(eta, rho)),
            lambda q: O.SGD(q, lr=eta, momentum=rho, weight_decay=lam, **kw)),
        f"ClipNorm(p={p:g}) + Descent": (
            fl.OptimiserChain(fl.ClipNorm(omega, p), fl.Descent(eta)),
            lambda q: _Clipped(q, omega, p, O.SGD(q, lr=eta, **kw))),
    }


class _Clipped:
    """torch's SGD after each parameter's gradient is clipped alone (fluxml's ClipNorm is per
    array, as Optimisers.jl's) to norm ``omega``: by ``omega / norm`` with the norm
    ``clip_grad_norm_`` takes (``torch.linalg.vector_norm``, of the complex numbers), as
    fluxml scales (``clip_grad_norm_`` itself scales by ``omega / (norm + 1e-6)``)."""

    def __init__(self, params, omega, p, opt):
        self.params, self.omega, self.p, self.opt = params, omega, p, opt

    def zero_grad(self):
        self.opt.zero_grad()

    def step(self):
        for q in self.params:
            nrm = float(torch.linalg.vector_norm(q.grad, self.p))
            if nrm > self.omega:
                q.grad.mul_(self.omega / nrm)
        self.opt.step()


def _loss(z, h, c, lib):
    """A real loss of complex z: a quadratic with sine terms, so gradients change sign."""
    re, im = lib.real(z), lib.imag(z)
    return lib.sum(0.5 * h * lib.abs(z - c) ** 2 - lib.cos(3 * re) / 3 + lib.sin(2 * im) / 2)


def case(rng, report):
    foreach = bool(rng.integers(2))
    rules = _rules(rng, foreach)
    name = list(rules)[int(rng.integers(len(rules)))]
    rule, make = rules[name]
    wide = rng.random() < 0.7
    dtype = np.complex128 if wide else np.complex64
    steps = int(rng.integers(1, 30))
    shapes = [tuple(int(v) for v in rng.integers(1, 4, int(rng.integers(0, 3))))
              for _ in range(int(rng.integers(1, 3)))]
    # (np.asarray: a 0-d array plus another is a NumPy scalar, a number that is not trained)
    zs = [np.asarray(rng.standard_normal(s) + 1j * rng.standard_normal(s), dtype)
          for s in shapes]
    hs = [rng.uniform(0.5, 2.0, s) for s in shapes]
    cs = [(rng.standard_normal(s) + 1j * rng.standard_normal(s)) for s in shapes]
    model = [z.copy() for z in zs]
    state = fl.setup(rule, model)
    for _ in range(steps):
        grads = fl.gradient(lambda m: sum(_loss(z, h, c.astype(dtype), np)
                                          for z, h, c in zip(m, hs, cs)), model)[0]
        fl.update(state, model, grads)
    want = _torch(make, zs, hs, cs, steps, dtype)
    for z in model:
        if z.dtype != dtype:
            raise AssertionError(f"{name}: a {dtype.__name__} parameter became {z.dtype}")
    worst = _error(model, want)
    tol = 1e-9
    if not wide:  # float32 rounding: within 2e-4, or within torch's own complex64 drift
        drift = _error(want, _torch(make, zs, hs, cs, steps, np.complex128))
        tol = max(2e-4, 3 * drift)
    key = f"{name} ({'complex128' if wide else 'complex64'}, foreach={foreach})"
    runs, fails, err = report.get(key, (0, 0, 0.0))
    report[key] = (runs + 1, fails + (worst > tol), max(err, worst))
    if worst > tol:
        print(f"MISMATCH {key}: {steps} steps on {shapes}: relative error {worst:.2e}")


def _torch(make, zs, hs, cs, steps, dtype):
    """torch's parameters after ``steps`` steps from ``zs`` in ``dtype``."""
    real = np.float64 if dtype == np.complex128 else np.float32
    params = [torch.tensor(z.astype(dtype), requires_grad=True) for z in zs]
    opt = make(params)
    for _ in range(steps):
        opt.zero_grad()
        loss = sum(_loss(q, torch.tensor(h.astype(real)), torch.tensor(c.astype(dtype)), torch)
                   for q, h, c in zip(params, hs, cs))
        loss.backward()
        opt.step()
    return [q.detach().numpy() for q in params]


def _error(got, want) -> float:
    """The largest difference, relative to the entries' size (at least 1)."""
    worst = 0.0
    for z, w in zip(got, want):
        scale = max(1.0, float(np.max(np.abs(w))))
        worst = max(worst, float(np.max(np.abs(z.astype(w.dtype) - w))) / scale)
    return worst


def main(cases=400, seed=0):
    rng = np.random.default_rng(seed)
    report: dict = {}
    for _ in range(cases):
        case(rng, report)
    print(f"{'rule (dtype, torch foreach)':58} {'runs':>5} {'fails':>5} {'max rel err':>12}")
    for key in sorted(report):
        runs, fails, err = report[key]
        print(f"{key:58} {runs:5d} {fails:5d} {err:12.2e}")
    failed = sum(f for _, f, _ in report.values())
    print(f"{cases} cases, {failed} mismatches")
    return failed


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    sys.exit(1 if main(*args) else 0)
