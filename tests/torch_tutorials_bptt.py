"""Truncated backpropagation through time against PyTorch (by hand; see
torch_tutorials_common.py): a character LSTM reads a text in consecutive windows, each
batch row a contiguous stream, and carries its state (h, c) from one window to the next
without a gradient through it (PyTorch: ``detach()``). The loss function returns
``(loss, state)``, Zygote's ``withgradient`` form; Adam steps; eagerly and compiled.

    PYTHONPATH=src python tests/torch_tutorials_bptt.py
"""

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import fluxml as fl
from torch_tutorials_common import check, grads_of, load_torch, params, summary

TEXT = ("Now is better than never. Although never is often better than *right* now. If the "
        "implementation is hard to explain, it's a bad idea. If the implementation is easy "
        "to explain, it may be a good idea. Namespaces are one honking great idea -- let's "
        "do more of those!")
CHARS = sorted(set(TEXT))
V, E, H, T, N = len(CHARS), 8, 12, 10, 3


class CharLSTM(fl.Module):
    def __init__(self):
        self.embed = fl.Embedding(V, E)
        self.lstm = fl.LSTM(E, H, return_state=True)
        self.out = fl.Dense(H, V)

    def __call__(self, x, state):
        ys, state = self.lstm(self.embed(x), state)
        return self.out(ys), state


class TorchCharLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(V, E)
        self.lstm = nn.LSTM(E, H, batch_first=True)
        self.out = nn.Linear(H, V)

    def forward(self, x, state):
        ys, state = self.lstm(self.embed(x), state)
        return self.out(ys), state


def streams():
    """N contiguous streams of the text, cut into windows of T: (x, y) per step."""
    ids = np.array([CHARS.index(c) for c in TEXT])
    length = (len(ids) - 1) // N
    xs = ids[:N * length].reshape(N, length)
    ys = ids[1:N * length + 1].reshape(N, length)
    return [(xs[:, i:i + T], ys[:, i:i + T]) for i in range(0, length - T + 1, T)]


def loss(m, x, y, state):
    logits, state = m(x, state)
    return fl.logitcrossentropy(logits, y), state


def main():
    print("truncated BPTT, character LSTM, state carried between windows, Adam(1e-2)")
    fl.seed(11)
    model = fl.f64(CharLSTM())
    ref = TorchCharLSTM()
    load_torch(ref, params(model))
    twin = copy.deepcopy(model)
    state = fl.setup(fl.Adam(1e-2), model)
    twin_state = fl.setup(fl.Adam(1e-2), twin)
    opt = torch.optim.Adam(ref.parameters(), lr=1e-2)

    @fl.compile
    def step(m, opt, x, y, h):
        (value, h), (g, *_) = fl.withgradient(loss, m, x, y, h)
        fl.update(opt, m, g)
        return value, h

    h = (np.zeros((N, H)), np.zeros((N, H)))
    h_twin = h
    th = (torch.zeros(1, N, H), torch.zeros(1, N, H))
    data = streams()
    for i, (x, y) in enumerate(data):
        (value, h), (g, *_) = fl.withgradient(loss, model, x, y, h)
        assert all(type(s) is np.ndarray for s in h), "the state comes back as plain arrays"
        fl.update(state, model, g)
        value_c, h_twin = step(twin, twin_state, x, y, h_twin)
        opt.zero_grad()
        logits, th = ref(torch.tensor(x), th)
        tl = F.cross_entropy(logits.reshape(-1, V), torch.tensor(y).reshape(-1))
        tl.backward()
        th = tuple(s.detach() for s in th)
        check(f"BPTT loss window {i}", value, tl)
        check(f"BPTT gradients window {i}", grads_of(model, g), [p.grad for p in ref.parameters()])
        check(f"BPTT carried state window {i}", list(h), [s[0] for s in th])
        check(f"BPTT compiled loss and state window {i}", [value_c, *h_twin], [value, *h],
              tol=1e-13)
        opt.step()
    check("BPTT final parameters", params(model), list(ref.parameters()))
    check("BPTT compiled final parameters", params(twin), params(model), tol=1e-12)
    # (two traces: the state the compiled step returns is laid out as views of its outputs,
    # and the layout is part of the signature)
    assert step.traces <= 2, step.traces


if __name__ == "__main__":
    main()
    summary("torch_tutorials_bptt")
