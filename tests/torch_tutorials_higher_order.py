"""Higher-order tutorial programs against PyTorch (by hand; see torch_tutorials_common.py):

- MAML on sine regression: the meta-gradient of the query loss after an inner gradient
  step (second order: the inner gradient is differentiated), over a batch of tasks, then
  a few Adam meta-steps; also two inner steps;
- Hessian-vector products of a network's loss in its parameters, forward-over-reverse
  (``fl.jvp`` of ``fl.gradient``) and reverse-over-reverse, against
  ``torch.func.jvp(grad)`` and double backward; the full Hessian of the flat parameters
  (``fl.destructure``, ``fl.hessian``) against ``torch.autograd.functional.hessian``;
- Jacobians of layers (LayerNorm, a Conv with BatchNorm in test mode, MultiHeadAttention
  with a causal mask) in both modes, against ``torch.func.jacrev``;
- Hessian-vector products of the other tutorials' models (CNN with BatchNorm in training
  mode, seq2seq GRU, bidirectional LSTM tagger, Transformer LM) in both ways.

    PYTHONPATH=src python tests/torch_tutorials_higher_order.py
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

import fluxml as fl
from torch_tutorials_common import check, grads_of, load_torch, params, summary, torch_params

rng = np.random.default_rng(0)


def mlp():
    return fl.f64(fl.Chain(fl.Dense(1, 16, np.tanh), fl.Dense(16, 16, np.tanh),
                           fl.Dense(16, 1)))


def torch_mlp():
    return nn.Sequential(nn.Linear(1, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(),
                         nn.Linear(16, 1))


def sine_tasks(n_tasks, k):
    amp = rng.uniform(0.5, 2.0, n_tasks)
    phase = rng.uniform(0, np.pi, n_tasks)
    xs = rng.uniform(-4, 4, (n_tasks, 2, k, 1))
    ys = amp[:, None, None, None] * np.sin(xs + phase[:, None, None, None])
    return [(xs[i, 0], ys[i, 0], xs[i, 1], ys[i, 1]) for i in range(n_tasks)]


# --- MAML -----------------------------------------------------------------------------------

def adapt(m, xs, ys, alpha, steps):
    for _ in range(steps):
        (g,) = fl.gradient(lambda m: fl.mse(m(xs), ys), m)
        m = fl.fmap(lambda p, gp: p - alpha * gp, m, g)
    return m


def meta_loss(m, tasks, alpha, steps):
    return sum(fl.mse(adapt(m, xs, ys, alpha, steps)(xq), yq)
               for xs, ys, xq, yq in tasks) / len(tasks)


def torch_meta_loss(ref, tasks, alpha, steps):
    names = [n for n, _ in ref.named_parameters()]
    total = 0
    for xs, ys, xq, yq in tasks:
        ps = dict(ref.named_parameters())
        for _ in range(steps):
            inner = F.mse_loss(functional_call(ref, ps, (torch.tensor(xs),)), torch.tensor(ys))
            gs = torch.autograd.grad(inner, list(ps.values()), create_graph=True)
            ps = {n: p - alpha * g for n, p, g in zip(names, ps.values(), gs)}
        total = total + F.mse_loss(functional_call(ref, ps, (torch.tensor(xq),)),
                                   torch.tensor(yq))
    return total / len(tasks)


def maml():
    for steps in (1, 2):
        print(f"MAML, sine regression, {steps} inner step(s), 4 tasks, Adam(1e-3), 4 meta-steps")
        fl.seed(6)
        model, ref = mlp(), torch_mlp()
        load_torch(ref, params(model))
        state = fl.setup(fl.Adam(1e-3), model)
        opt = torch.optim.Adam(ref.parameters(), lr=1e-3)
        for step in range(4):
            tasks = sine_tasks(4, 10)
            loss, (g, *_) = fl.withgradient(meta_loss, model, tasks, 0.05, steps)
            opt.zero_grad()
            tl = torch_meta_loss(ref, tasks, 0.05, steps)
            tl.backward()
            check(f"MAML meta-loss step {step}", loss, tl)
            check(f"MAML meta-gradient step {step}", grads_of(model, g),
                  [p.grad for p in ref.parameters()])
            fl.update(state, model, g)
            opt.step()
        check("MAML final parameters", params(model), list(ref.parameters()))


# --- Hessian-vector products and Hessians ---------------------------------------------------

def hvps():
    print("Hessian-vector products of an MLP's loss (fwd-over-rev, rev-over-rev), full Hessian")
    fl.seed(7)
    model, ref = mlp(), torch_mlp()
    load_torch(ref, params(model))
    x = rng.standard_normal((20, 1))
    y = np.sin(2 * x)
    loss = lambda m: fl.mse(m(x), y)  # noqa: E731
    grad = lambda m: fl.gradient(loss, m)[0]  # noqa: E731
    v = fl.fmap(lambda p: rng.standard_normal(p.shape), model)

    _, hv_fwd = fl.jvp(grad, (model,), (v,))

    def dot(a, b):
        return sum(np.sum(p * q) for p, q in zip(fl.trainables(a), fl.trainables(b)))

    (hv_rev,) = fl.gradient(lambda m: dot(grad(m), v), model)

    names = [n for n, _ in ref.named_parameters()]
    tv = {n: torch.tensor(a) for n, a in zip(names, params(v))}

    def tloss(ps):
        return F.mse_loss(functional_call(ref, ps, (torch.tensor(x),)), torch.tensor(y))

    # the double-backward form PyTorch users write
    ps = [p for p in ref.parameters()]
    gs = torch.autograd.grad(tloss(dict(zip(names, ps))), ps, create_graph=True)
    thv = torch.autograd.grad(sum((g * t).sum() for g, t in zip(gs, tv.values())), ps)
    check("HVP forward-over-reverse (fl.jvp of fl.gradient)", grads_of(model, hv_fwd),
          list(thv))
    check("HVP reverse-over-reverse (fl.gradient of a dot)", grads_of(model, hv_rev),
          list(thv))

    flat, re = fl.destructure(model)
    H = fl.hessian(lambda w: loss(re(w)), flat)
    tflat = torch.cat([p.detach().reshape(-1) for p in ref.parameters()])
    shapes = [p.shape for p in ref.parameters()]

    def tflat_loss(w):
        parts, i = {}, 0
        for n, s in zip(names, shapes):
            k = int(np.prod(s))
            parts[n] = w[i:i + k].reshape(s)
            i += k
        return tloss(parts)

    tH = torch.autograd.functional.hessian(tflat_loss, tflat)
    tv_flat = torch.cat([t.reshape(-1) for t in tv.values()])
    _, thv_flat = torch.autograd.functional.hvp(tflat_loss, tflat, tv_flat)
    check("HVP of the flat parameters: H @ v (fl.hessian)", H @ tv_flat.numpy(), thv_flat)
    check(f"Hessian of the flat parameters {H.shape}", H, tH)
    check("Hessian symmetric", H, H.T, tol=1e-12)


# --- Jacobians of layers --------------------------------------------------------------------

def jacobians():
    print("Jacobians of layers, both modes")
    fl.seed(8)
    ln = fl.f64(fl.LayerNorm(6))
    ln.weight[...] = rng.standard_normal(6)
    ln.bias[...] = rng.standard_normal(6)
    tln = nn.LayerNorm(6)
    load_torch(tln, params(ln))
    x = rng.standard_normal((3, 6))
    for mode in ("fwd", "rev"):
        check(f"Jacobian LayerNorm(6) mode={mode}", fl.jacobian(ln, x, mode=mode),
              torch.func.jacrev(tln)(torch.tensor(x)))

    conv = fl.f64(fl.Chain(fl.Conv((3, 3), 2, 3, pad=1), fl.BatchNorm(3, np.tanh)))
    bn = conv.layers[1]
    bn.running_mean[...] = rng.standard_normal(3)
    bn.running_var[...] = rng.uniform(0.5, 2, 3)
    bn.weight[...] = rng.standard_normal(3)
    conv = fl.testmode(conv)
    tconv = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.Tanh()).eval()
    load_torch(tconv, params(conv))
    with torch.no_grad():
        tconv[1].running_mean.copy_(torch.tensor(bn.running_mean))
        tconv[1].running_var.copy_(torch.tensor(bn.running_var))
    x = rng.standard_normal((2, 2, 4, 4))
    for mode in ("fwd", "rev"):
        check(f"Jacobian Conv + BatchNorm (testmode) mode={mode}",
              fl.jacobian(conv, x, mode=mode), torch.func.jacrev(tconv)(torch.tensor(x)))

    mha = fl.f64(fl.MultiHeadAttention(4, nheads=2, bias=True))
    tmha = nn.MultiheadAttention(4, 2, batch_first=True)
    w = params(mha)  # q w, q b, k w, k b, v w, v b, out w, out b
    with torch.no_grad():
        tmha.in_proj_weight.copy_(torch.tensor(np.concatenate([w[0], w[2], w[4]])))
        tmha.in_proj_bias.copy_(torch.tensor(np.concatenate([w[1], w[3], w[5]])))
        tmha.out_proj.weight.copy_(torch.tensor(w[6]))
        tmha.out_proj.bias.copy_(torch.tensor(w[7]))
    x = rng.standard_normal((2, 3, 4))
    mask = torch.triu(torch.ones(3, 3, dtype=torch.bool), 1)  # True: may not attend
    tf = lambda t: tmha(t, t, t, attn_mask=mask, need_weights=False)[0]  # noqa: E731
    for mode in ("fwd", "rev"):
        check(f"Jacobian MultiHeadAttention causal mode={mode}",
              fl.jacobian(lambda t: mha(t, mask="causal")[0], x, mode=mode),
              torch.func.jacrev(tf)(torch.tensor(x)))


# --- Hessian-vector products of the tutorial models ----------------------------------------

def _tangent(model):
    return fl.fmap(lambda p: rng.standard_normal(p.shape)
                   if isinstance(p, np.ndarray) and p.dtype.kind == "f" else None, model)


def _model_hvps(name, model, floss, tparams, tloss):
    """fl.jvp of fl.gradient and fl.gradient of a dot against torch's double backward."""
    v = _tangent(model)
    grad = lambda m: fl.gradient(floss, m)[0]  # noqa: E731
    _, hv_fwd = fl.jvp(grad, (model,), (v,))

    def dot(a, b):
        return sum(np.sum(p * q) for p, q in zip(grads_of(model, a), fl.trainables(b)))

    (hv_rev,) = fl.gradient(lambda m: dot(grad(m), v), model)
    gs = torch.autograd.grad(tloss(), tparams, create_graph=True)
    tv = [torch.tensor(a) for a in params(v)]
    thv = torch.autograd.grad(sum((g * t).sum() for g, t in zip(gs, tv)), tparams)
    check(f"{name}: HVP forward over reverse", grads_of(model, hv_fwd), list(thv))
    check(f"{name}: HVP reverse over reverse", grads_of(model, hv_rev), list(thv))


def model_hvps():
    """HVPs through the engine's fused kernels: conv and BatchNorm in training mode, the GRU
    and LSTM sequences, attention, LayerNorm, a tied embedding."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    import torch_tutorials_transformer as TT
    from torch_tutorials_cnn import cnn, torch_cnn
    from torch_tutorials_rnn import (
        TAGGER_NAMES,
        Seq2Seq,
        Tagger,
        TorchSeq2Seq,
        TorchTagger,
        tagger_loss,
    )

    print("Hessian-vector products of the tutorial models")
    fl.seed(9)
    m, t = cnn(), torch_cnn()
    load_torch(t, params(m))
    (x, y), _ = fl.datasets.digits()
    x, y = x[:16].astype(np.float64), y[:16]
    _model_hvps("CNN + BatchNorm (training)", m, lambda m: fl.logitcrossentropy(m(x), y),
                list(t.parameters()),
                lambda: F.cross_entropy(t(torch.tensor(x)), torch.tensor(y)))

    fl.seed(3)
    m, t = fl.f64(Seq2Seq()), TorchSeq2Seq()
    load_torch(t, params(m))
    src, tgt = rng.integers(0, 7, (4, 5)), rng.integers(1, 6, (4, 5))
    tin = np.concatenate([np.zeros((4, 1), int), tgt[:, :-1]], 1)
    _model_hvps("seq2seq GRU", m, lambda m: fl.logitcrossentropy(m(src, tin), tgt),
                list(t.parameters()),
                lambda: F.cross_entropy(t(torch.tensor(src), torch.tensor(tin)).reshape(-1, 6),
                                        torch.tensor(tgt).reshape(-1)))

    fl.seed(4)
    m, t = fl.f64(Tagger()), TorchTagger()
    load_torch(t, params(m), TAGGER_NAMES)
    lengths = np.array([7, 4, 2])
    xx = rng.integers(1, 9, (3, 7))
    valid = np.arange(7)[None] < lengths[:, None]
    xx[~valid] = 0
    yy = xx % 3

    def tagger_torch_loss():
        logits = t(torch.tensor(xx), torch.tensor(lengths))
        target = torch.tensor(np.where(valid, yy, -100))
        return F.cross_entropy(logits.reshape(-1, 3), target.reshape(-1), ignore_index=-100)

    _model_hvps("bidirectional LSTM tagger", m, lambda m: tagger_loss(m, xx, lengths, yy),
                torch_params(t, TAGGER_NAMES), tagger_torch_loss)

    fl.seed(5)
    m, t = fl.testmode(fl.f64(TT.TinyLM())), TT.TorchLM().eval()
    views = TT.torch_views(t)
    with torch.no_grad():
        for view, a in zip(views, params(m)):
            TT.pick(view).copy_(torch.tensor(a))
    xb, yb = TT.batch(2)
    v = _tangent(m)
    _, hv = fl.jvp(lambda m: fl.gradient(lambda m: fl.logitcrossentropy(m(xb), yb), m)[0],
                   (m,), (v,))
    tps = list(t.parameters())
    with sdpa_kernel(SDPBackend.MATH):  # (the fused CPU kernel has no double backward)
        gs = torch.autograd.grad(F.cross_entropy(t(torch.tensor(xb)).reshape(-1, TT.V),
                                                 torch.tensor(yb).reshape(-1)), tps,
                                 create_graph=True)
    tangents = {id(p): torch.zeros_like(p) for p in tps}  # v on the packed in_proj
    for view, a in zip(views, params(v)):
        tensor, part = view if isinstance(view, tuple) else (view, slice(None))
        tangents[id(tensor)][part] = torch.tensor(a)
    thv = dict(zip(map(id, tps), torch.autograd.grad(
        sum((g * tangents[id(p)]).sum() for g, p in zip(gs, tps)), tps)))
    theirs = [thv[id(view[0])][view[1]] if isinstance(view, tuple) else thv[id(view)]
              for view in views]
    check("Transformer LM (tied embedding): HVP forward over reverse", grads_of(m, hv), theirs)


if __name__ == "__main__":
    maml()
    hvps()
    jacobians()
    model_hvps()
    summary("torch_tutorials_higher_order")
