"""The loss, optimiser and bad-input families of torch_fuzz.py (run from there).

Conventions mapped (each in fluxml's docstrings): ``agg`` is torch's ``reduction``
("none" gives one loss per sample for the losses that sum over classes); ``crossentropy``
is ``nll_loss(log(yhat))`` with ``eps=0``; ``kldivergence``'s mean is torch's "batchmean";
``hinge_loss(yhat, y)`` is ``hinge_embedding_loss(yhat * y, -1)``; ctc_loss takes logits
and (N, T, C), torch log-probabilities and (T, N, C), and torch's "mean" divides by the
label lengths (compared with "none" and "sum"). Optimisers: Optimisers.jl's names (eta,
beta, rho, epsilon, lambd, ell, gamma) against torch's (lr, betas, alpha, eps,
weight_decay, etas, step_sizes); AdaGrad's accumulator starts at epsilon
(``initial_accumulator_value``); AdaMax adds epsilon outside the max (compared with
epsilon 0); Nesterov, RAdam (threshold 4 vs 5), NAdam (momentum decay) and AMSGrad (no bias
correction) are different rules and are not compared.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch_fuzz import FZ, Skip, T, close, compare

import fluxml as fl

AGGS = {"mean": "mean", "sum": "sum", "none": "none"}


def _probs(rng, shape, axis):
    z = rng.standard_normal(shape) * 2
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _reduce(out, agg):
    return {"mean": out.mean(), "sum": out.sum(), "none": out}[agg]


def case_loss(rng):
    name = str(rng.choice(["mae", "mse", "huber", "crossentropy", "logitcrossentropy",
                           "binarycrossentropy", "logitbinarycrossentropy", "kldivergence",
                           "poisson", "hinge", "squared_hinge", "smoothing"]))
    agg = str(rng.choice(list(AGGS)))
    n, c = int(rng.integers(1, 5)), int(rng.integers(2, 6))
    extra = tuple(int(v) for v in rng.integers(1, 4, int(rng.integers(0, 2))))
    shape = (n, c) + extra
    FZ.desc = f"{name} {shape} agg {agg}"
    red = AGGS[agg]
    a, b = rng.standard_normal(shape), rng.standard_normal(shape)
    if name in ("mae", "mse", "huber"):
        delta = float(rng.uniform(0.2, 2))
        ours = {"mae": lambda x, y: fl.mae(x, y, agg=agg),
                "mse": lambda x, y: fl.mse(x, y, agg=agg),
                "huber": lambda x, y: fl.huber_loss(x, y, agg=agg, delta=delta)}[name]
        ref = {"mae": lambda x, y: F.l1_loss(x, y, reduction=red),
               "mse": lambda x, y: F.mse_loss(x, y, reduction=red),
               "huber": lambda x, y: F.huber_loss(x, y, reduction=red, delta=delta)}[name]
        compare(ours, ref, [a * 2, b])
        return
    if name in ("crossentropy", "logitcrossentropy", "smoothing"):
        # classes on axis 1 (torch's layout), given to fluxml as axis=1
        labels_given = bool(rng.random() < 0.5) and name != "smoothing"
        labels = rng.integers(0, c, (n,) + extra)
        target = np.moveaxis(np.eye(c)[labels], -1, 1) if not labels_given else labels
        if name == "smoothing":
            alpha = float(rng.uniform(0, 0.5))
            FZ.desc += f" label_smoothing {alpha}"
            smooth = fl.label_smoothing(np.moveaxis(np.eye(c)[labels], -1, 1), alpha, axis=1)
            compare(lambda x: fl.logitcrossentropy(x, smooth, axis=1, agg=agg),
                    lambda x: F.cross_entropy(x, T(labels), reduction=red,
                                              label_smoothing=alpha), [a])
            return
        soft = bool(rng.random() < 0.3) and not labels_given
        if soft:
            target = _probs(rng, shape, 1)
        FZ.desc += f" labels {labels_given} soft targets {soft}"
        tt = T(target) if not labels_given else T(labels)
        if name == "logitcrossentropy":
            compare(lambda x: fl.logitcrossentropy(x, target, axis=1, agg=agg),
                    lambda x: F.cross_entropy(x, tt, reduction=red), [a * 3])
        else:
            p = _probs(rng, shape, 1)
            # (F.cross_entropy(log p) would differentiate its log_softmax of log p too)
            ref = (lambda x: F.nll_loss(torch.log(x), tt, reduction=red)) if labels_given \
                else (lambda x, y: _reduce(-(y * torch.log(x)).sum(1), agg))
            compare(lambda x, *y: fl.crossentropy(x, y[0] if y else target, axis=1, agg=agg,
                                                  eps=0.0), ref,
                    [p] + ([] if labels_given else [target]))
        return
    if name == "kldivergence":
        p, q = _probs(rng, shape, 1), _probs(rng, shape, 1)
        kl_red = {"mean": "batchmean", "sum": "sum", "none": "none"}[agg]

        def ref(x, y):
            out = F.kl_div(torch.log(x), y, reduction=kl_red)
            if agg == "mean" and extra:  # fluxml averages over every sample position
                out = out / int(np.prod(extra))
            return out.sum(1) if agg == "none" else out

        compare(lambda x, y: fl.kldivergence(x, y, axis=1, agg=agg, eps=0.0), ref, [p, q])
        return
    if name in ("binarycrossentropy", "logitbinarycrossentropy"):
        y = rng.uniform(0, 1, shape) if rng.random() < 0.5 else rng.integers(0, 2, shape) * 1.0
        if name == "binarycrossentropy":
            compare(lambda x, y: fl.binarycrossentropy(x, y, agg=agg, eps=0.0),
                    lambda x, y: F.binary_cross_entropy(x, y, reduction=red),
                    [rng.uniform(0.02, 0.98, shape), y])
        else:
            compare(lambda x, y: fl.logitbinarycrossentropy(x, y, agg=agg),
                    lambda x, y: F.binary_cross_entropy_with_logits(x, y, reduction=red),
                    [a * 4, y])
        return
    if name == "poisson":
        counts = rng.poisson(2.0, shape) * 1.0
        compare(lambda x, y: fl.poisson_loss(x, y, agg=agg),
                lambda x, y: F.poisson_nll_loss(x, y, log_input=False, eps=0.0, reduction=red),
                [rng.uniform(0.2, 3, shape), counts])
        return
    y = rng.integers(0, 2, shape) * 2.0 - 1
    a = a + 0.01 * np.sign(a)  # away from the kink |1 - y yhat| = 0 is measure zero anyway
    if name == "hinge":
        compare(lambda x: fl.hinge_loss(x, y, agg=agg),
                lambda x: F.hinge_embedding_loss(x * T(y), -torch.ones(shape), margin=1.0,
                                                 reduction=red), [a])
    else:
        def ref(x):
            return _reduce(torch.clamp(1 - x * T(y), min=0) ** 2, agg)

        compare(lambda x: fl.squared_hinge_loss(x, y, agg=agg), ref, [a])


def case_ctc(rng):
    n, frames, c = int(rng.integers(1, 4)), int(rng.integers(1, 12)), int(rng.integers(2, 7))
    blank = int(rng.integers(0, c)) if rng.random() < 0.5 else c - 1
    others = [k for k in range(c) if k != blank]
    labels, lengths = [], []
    for _ in range(n):
        steps = int(rng.integers(1, frames + 1))
        lab = rng.choice(others, int(rng.integers(0, steps + 1)))
        while lab.size + int(np.sum(lab[1:] == lab[:-1])) > steps:  # feasible
            lab = lab[:-1]
        labels.append(lab.astype(np.int64))
        lengths.append(steps)
    agg = str(rng.choice(["none", "sum"]))
    FZ.desc = (f"ctc_loss N {n} T {frames} classes {c} blank {blank} input lengths {lengths} "
               f"labels {[lab.tolist() for lab in labels]} agg {agg}")
    x = rng.standard_normal((n, frames, c)) * 2
    flat = T(np.concatenate(labels)) if sum(map(len, labels)) else torch.zeros(0, dtype=int)

    def ref(x):
        lp = F.log_softmax(x, -1).transpose(0, 1)
        return F.ctc_loss(lp, flat, T(lengths), T([len(lab) for lab in labels]), blank=blank,
                          reduction=agg)

    compare(lambda x: fl.ctc_loss(x, labels, blank=blank, input_lengths=lengths, agg=agg), ref,
            [x], tol=1e-7)


# --- optimisers -------------------------------------------------------------------------------

def _rules(rng):
    eta = float(rng.choice([1e-3, 1e-2, 0.1]))
    beta = (float(rng.uniform(0.5, 0.95)), float(rng.uniform(0.9, 0.999)))
    rho, eps = float(rng.uniform(0.5, 0.99)), float(rng.choice([1e-8, 1e-6, 1e-3]))
    lam = float(rng.choice([0.0, 1e-2, 0.1]))
    O = torch.optim
    return {
        "Descent": (fl.Descent(eta), lambda p: O.SGD(p, lr=eta)),
        "Momentum": (fl.Momentum(eta, rho), lambda p: O.SGD(p, lr=eta, momentum=rho)),
        "Nesterov": (fl.Nesterov(eta, rho),
                     lambda p: O.SGD(p, lr=eta, momentum=rho, nesterov=True)),
        "RMSProp": (fl.RMSProp(eta, rho, eps), lambda p: O.RMSprop(p, lr=eta, alpha=rho,
                                                                    eps=eps)),
        "RMSProp centred": (fl.RMSProp(eta, rho, eps, centred=True),
                            lambda p: O.RMSprop(p, lr=eta, alpha=rho, eps=eps, centered=True)),
        "Adam": (fl.Adam(eta, beta, eps), lambda p: O.Adam(p, lr=eta, betas=beta, eps=eps)),
        "AdamW": (fl.AdamW(eta, beta, lam, eps),
                  lambda p: O.AdamW(p, lr=eta, betas=beta, eps=eps, weight_decay=lam)),
        "AdaGrad": (fl.AdaGrad(eta, eps), lambda p: O.Adagrad(
            p, lr=eta, eps=eps, initial_accumulator_value=eps)),
        "AdaDelta": (fl.AdaDelta(rho, eps), lambda p: O.Adadelta(p, lr=1.0, rho=rho, eps=eps)),
        "AdaMax": (fl.AdaMax(eta, beta, 0.0), lambda p: O.Adamax(p, lr=eta, betas=beta, eps=0.0)),
        "Rprop": (fl.Rprop(eta, (0.5, 1.2), (1e-6, 50.0)),
                  lambda p: O.Rprop(p, lr=eta, etas=(0.5, 1.2), step_sizes=(1e-6, 50.0))),
        "WeightDecay + Descent": (fl.OptimiserChain(fl.WeightDecay(lam), fl.Descent(eta)),
                                  lambda p: O.SGD(p, lr=eta, weight_decay=lam)),
        "WeightDecay + Momentum": (
            fl.OptimiserChain(fl.WeightDecay(lam), fl.Momentum(eta, rho)),
            lambda p: O.SGD(p, lr=eta, momentum=rho, weight_decay=lam)),
    }


def case_optimiser(rng):
    rules = _rules(rng)
    name = list(rules)[int(rng.integers(len(rules)))]
    rule, make = rules[name]
    steps = int(rng.integers(1, 30))
    shapes = [tuple(int(v) for v in rng.integers(1, 4, int(rng.integers(0, 3))))
              for _ in range(int(rng.integers(1, 3)))]
    FZ.desc = f"{rule!r} for {steps} steps on shapes {shapes}"
    xs = [rng.standard_normal(s) for s in shapes]
    hs = [rng.uniform(0.5, 2.0, s) for s in shapes]
    cs = [rng.standard_normal(s) for s in shapes]
    params = [torch.tensor(x.copy(), requires_grad=True) for x in xs]
    opt = make(params)
    model = [x.copy() for x in xs]
    state = fl.setup(rule, model)
    for _ in range(steps):  # a quadratic with a gradient sin term: gradients change sign
        grads = [h * (x - c) + np.sin(3 * x) for x, h, c in zip(model, hs, cs)]
        state, model = fl.update(state, model, grads)
        opt.zero_grad()
        loss = sum(torch.sum(0.5 * T(h) * (p - T(c)) ** 2 - torch.cos(3 * p) / 3)
                   for p, h, c in zip(params, hs, cs))
        loss.backward()
        opt.step()
    for i, (x, p) in enumerate(zip(model, params)):
        close(f"parameter {i}", x, p, 1e-8)
    if rng.random() < 0.3:  # float32 parameters stay float32
        m32 = [x.astype(np.float32) for x in xs]
        s32 = fl.setup(rule, m32)
        s32, m32 = fl.update(s32, m32, [x * 0.5 for x in m32])
        if any(np.asarray(x).dtype != np.float32 for x in m32):
            FZ.fail("float32 parameters did not stay float32")


# --- bad inputs: a clear error naming the function, never a result ---------------------------

def _bad_cases(rng):
    d = int(rng.integers(1, 4))
    c = int(rng.integers(2, 5))
    size = tuple(int(v) for v in rng.integers(1, 4, d))
    x = rng.standard_normal((1, c) + size)
    big = tuple(s + 2 + int(rng.integers(0, 3)) for s in size)
    nn = fl.nnlib
    return [
        ("conv", "larger than the padded input",
         lambda: nn.conv(x, rng.standard_normal((2, c) + big))),
        ("conv", "pad must be", lambda: nn.conv(x, rng.standard_normal((2, c) + (1,) * d),
                                                pad=-int(rng.integers(1, 3)))),
        ("conv", "groups=", lambda: nn.conv(x, rng.standard_normal((c + 1, 1) + (1,) * d),
                                            groups=c + 1)),
        ("conv", "stride", lambda: nn.conv(x, rng.standard_normal((2, c) + (1,) * d),
                                           stride=0)),
        ("conv", "dilation", lambda: nn.conv(x, rng.standard_normal((2, c) + (1,) * d),
                                             dilation=-1)),
        ("conv", "weight", lambda: nn.conv(x, rng.standard_normal((2, c + 1) + (1,) * d))),
        ("conv_transpose", "output_padding",
         lambda: nn.conv_transpose(x, rng.standard_normal((c, 2) + (1,) * d), stride=2,
                                   output_padding=2)),
        ("conv_transpose", "padding",
         lambda: nn.conv_transpose(x, rng.standard_normal((c, 2) + (1,) * d), pad=5)),
        ("maxpool", "maxpool", lambda: nn.maxpool(x, big)),
        ("meanpool", "pad", lambda: nn.meanpool(x, 1, pad=-1)),
        ("maxpool", "stride", lambda: nn.maxpool(x, 1, stride=0)),
        ("lppool", "p must be a finite number > 0", lambda: nn.lppool(x, -1.0, 1)),
        ("adaptive_maxpool", "out_size", lambda: nn.adaptive_maxpool(x, (0,) * d)),
        ("upsample_nearest", "upsample", lambda: nn.upsample_nearest(x, (0,) * d)),
        ("groupnorm", "groups", lambda: nn.groupnorm(x, c + 1)),
        ("softmax", "axis", lambda: fl.softmax(x, axis=d + 2)),
        ("logsumexp", "axis", lambda: fl.logsumexp(x, axis=d + 2)),
        ("embedding", "", lambda: nn.embedding(np.ones((3, 2)), np.array([3]))),
        ("embedding", "", lambda: nn.embedding(np.ones((3, 2)), np.array([-1]))),
        ("ctc_loss", "blank", lambda: fl.ctc_loss(np.zeros((4, 3)), np.array([2]))),
        ("ctc_loss", "frames", lambda: fl.ctc_loss(np.zeros((2, 3)), np.array([0, 0]))),
        ("pixel_shuffle", "", lambda: nn.pixel_shuffle(np.ones((1, 3, 2, 2)), 2)),
        ("MultiHeadAttention", "nheads", lambda: fl.MultiHeadAttention(6, nheads=4)),
        ("BatchNorm", "expects input", lambda: fl.BatchNorm(c + 1)(x)),
        ("dot_product_attention", "",
         lambda: fl.dot_product_attention(np.ones((1, 2, 3)), np.ones((1, 2, 4)),
                                          np.ones((1, 2, 4)))),
    ]


def case_bad_input(rng):
    cases = _bad_cases(rng)
    fn, words, call = cases[int(rng.integers(len(cases)))]
    FZ.desc = f"bad input to {fn} (expects an error mentioning {words!r})"
    try:
        out = call()
    except (ValueError, TypeError, IndexError) as err:
        text = str(err)
        if fn.split("_")[0].lower() not in text.lower() or words.lower() not in text.lower():
            FZ.fail(f"unclear error: {type(err).__name__}: {text}")
        return
    FZ.fail(f"no error; returned shape {np.shape(out)}")


TRAIN_FAMILIES = {"loss": case_loss, "ctc": case_ctc, "optimiser": case_optimiser,
                  "bad_input": case_bad_input}
_ = Skip
