"""A character-level Transformer language model against PyTorch (by hand; see
torch_tutorials_common.py): token and learned position embeddings, two pre-norm encoder
blocks with a causal mask (fl.TransformerEncoderBlock against nn.TransformerEncoderLayer),
Dropout switched off by testmode, the output projection tied to the token embedding (the
same array at two places of the model), trained with gradient accumulation over two
micro-batches, per-array gradient clipping, AdamW and a cosine schedule with warm-up:

    OptimiserChain(AccumGrad(2), ClipNorm(0.5), AdamW(eta, lambd=0.1))

PyTorch's side: the micro-batch losses halved and accumulated by backward, each parameter's
gradient clipped on its own (fluxml's ClipNorm is Optimisers.jl's, per array), AdamW with
weight_decay=0.1, LambdaLR with the same warm-up and cosine.

    PYTHONPATH=src python tests/torch_tutorials_transformer.py
"""

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import fluxml as fl
from torch_tutorials_common import check, grads_of, params, summary

TEXT = ("Beautiful is better than ugly. Explicit is better than implicit. Simple is better "
        "than complex. Complex is better than complicated. Flat is better than nested.")
CHARS = sorted(set(TEXT))
IDS = np.array([CHARS.index(c) for c in TEXT])
V, T, E, HEADS, HIDDEN = len(CHARS), 12, 16, 4, 32
rng = np.random.default_rng(0)


class TinyLM(fl.Module):
    def __init__(self, layers=2):
        self.tok = fl.Embedding(V, E)
        self.pos = fl.Embedding(T, E)
        self.blocks = [fl.TransformerEncoderBlock(E, HEADS, HIDDEN, norm_first=True,
                                                  dropout=0.1) for _ in range(layers)]
        self.norm = fl.LayerNorm(E)
        self.head = fl.Dense(E, V, bias=False)
        self.head.weight = self.tok.weight  # weight tying

    def __call__(self, x):
        h = self.tok(x) + self.pos(np.arange(x.shape[1]))
        for block in self.blocks:
            h = block(h, mask="causal")
        return self.head(self.norm(h))


class TorchLM(nn.Module):
    def __init__(self, layers=2):
        super().__init__()
        self.tok = nn.Embedding(V, E)
        self.pos = nn.Embedding(T, E)
        self.blocks = nn.ModuleList([
            nn.TransformerEncoderLayer(E, HEADS, HIDDEN, dropout=0.1, batch_first=True,
                                       norm_first=True) for _ in range(layers)])
        self.norm = nn.LayerNorm(E)
        self.head = nn.Linear(E, V, bias=False)
        self.head.weight = self.tok.weight

    def forward(self, x):
        t = x.shape[1]
        h = self.tok(x) + self.pos(torch.arange(t))
        mask = nn.Transformer.generate_square_subsequent_mask(t)
        for block in self.blocks:
            h = block(h, src_mask=mask, is_causal=True)
        return self.head(self.norm(h))


def torch_views(ref):
    """PyTorch's tensors (or parts of them) in the order of fluxml's trainables: a block's
    packed in_proj split into q, k, v."""
    out = [ref.tok.weight, ref.pos.weight]
    for b in ref.blocks:
        w, bias = b.self_attn.in_proj_weight, b.self_attn.in_proj_bias
        for i in range(3):
            out += [(w, slice(i * E, (i + 1) * E)), (bias, slice(i * E, (i + 1) * E))]
        out += [b.self_attn.out_proj.weight, b.self_attn.out_proj.bias, b.norm1.weight,
                b.norm1.bias, b.linear1.weight, b.linear1.bias, b.linear2.weight,
                b.linear2.bias, b.norm2.weight, b.norm2.bias]
    return out + [ref.norm.weight, ref.norm.bias]


def pick(view, grad=False):
    t, part = view if isinstance(view, tuple) else (view, slice(None))
    return (t.grad if grad else t)[part]


def schedule(t, start=3e-3, warmup=3, period=8):
    """The warm-up and cosine, written out (fl.CosineAnneal's definition)."""
    if t < warmup:
        return start * (t + 1) / warmup
    u = min(t - warmup, period) / period
    return start * (1 + math.cos(math.pi * u)) / 2


def batch(n=4):
    starts = rng.integers(0, len(IDS) - T - 1, n)
    x = np.stack([IDS[s:s + T] for s in starts])
    y = np.stack([IDS[s + 1:s + T + 1] for s in starts])
    return x, y


def main():
    print("Transformer LM, tied embedding, AccumGrad(2) + ClipNorm(0.5) + AdamW, cosine "
          "warm-up, 10 optimiser steps")
    fl.seed(5)
    model = fl.testmode(fl.f64(TinyLM()))
    ref = TorchLM()
    ref.eval()  # dropout off (gradients still flow)
    views = torch_views(ref)
    with torch.no_grad():
        for v, a in zip(views, params(model)):
            pick(v).copy_(torch.tensor(a))
    assert model.head.weight is model.tok.weight
    assert len(params(model)) == len(views)  # the tied array once

    sched = fl.CosineAnneal(3e-3, end=0.0, period=8, warmup=3)
    assert all(abs(sched(t) - schedule(t)) < 1e-15 for t in range(15))
    rule = fl.OptimiserChain(fl.AccumGrad(2), fl.ClipNorm(0.5), fl.AdamW(3e-3, lambd=0.1))
    state = fl.setup(rule, model)
    opt = torch.optim.AdamW(ref.parameters(), lr=3e-3, weight_decay=0.1)
    lr_sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: schedule(t) / 3e-3)

    clipped = 0
    for step in range(10):
        fl.adjust(state, eta=sched(step))
        opt.zero_grad(set_to_none=True)
        for micro in range(2):
            x, y = batch()
            loss, (g,) = fl.withgradient(lambda m: fl.logitcrossentropy(m(x), np.eye(V)[y]),
                                         model)
            tl = F.cross_entropy(ref(torch.tensor(x)).reshape(-1, V),
                                 torch.tensor(y).reshape(-1))
            tgrads = torch.autograd.grad(tl, list(ref.parameters()))
            check(f"LM loss step {step}.{micro}", loss, tl)
            by_id = {id(p): gp for p, gp in zip(ref.parameters(), tgrads)}
            check(f"LM gradients step {step}.{micro} (tied: the total)", grads_of(model, g),
                  [by_id[id(v[0] if isinstance(v, tuple) else v)][
                      v[1] if isinstance(v, tuple) else slice(None)] for v in views])
            with torch.no_grad():  # the micro-batches' mean, as (loss / 2).backward() gives
                for p, gp in zip(ref.parameters(), tgrads):
                    p.grad = gp / 2 if p.grad is None else p.grad + gp / 2
            fl.update(state, model, g)
        with torch.no_grad():
            for v in views:  # per array, as Optimisers.jl's ClipNorm (q, k, v apart)
                g = pick(v, grad=True)
                nrm = torch.linalg.vector_norm(g)
                if nrm > 0.5:
                    g *= 0.5 / nrm
                    clipped += 1
        opt.step()
        lr_sched.step()
        check(f"LM parameters after step {step}", params(model), [pick(v) for v in views])
    print(f"  ({clipped} arrays' gradients clipped over the run)")
    x, _ = batch(2)
    with torch.no_grad():
        check("LM logits after training (testmode / eval)", model(x), ref(torch.tensor(x)))
    # weight tying kept through training: one array at both places
    assert model.head.weight is model.tok.weight


if __name__ == "__main__":
    main()
    summary("torch_tutorials_transformer")
