"""Two recurrent tutorial programs against PyTorch (by hand; see torch_tutorials_common.py):

- a seq2seq GRU encoder-decoder (embeddings, the encoder's final state starting the
  decoder, teacher forcing), trained with Adam, then greedy decoding step by step with the
  decoder's cell;
- a bidirectional LSTM tagger on padded sequences of different lengths: PyTorch packs them
  (``pack_padded_sequence``); fluxml's Bidirectional takes ``lengths=`` (and a hand-written
  reversal of each sequence within its length gives the same), the loss masked;
- LSTM and GRU sequence classifiers reading the final state of padded sequences
  (``lengths=``; PyTorch: ``h_n`` of the packed sequence).

    PYTHONPATH=src python tests/torch_tutorials_rnn.py
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import fluxml as fl
from torch_tutorials_common import check, grads_of, load_torch, params, summary, torch_params

rng = np.random.default_rng(0)
BOS = 0


# --- seq2seq --------------------------------------------------------------------------------

class Seq2Seq(fl.Module):
    def __init__(self, src_vocab=7, tgt_vocab=6, e=5, h=8):
        self.src_embed = fl.Embedding(src_vocab, e)
        self.encoder = fl.GRU(e, h, return_state=True)
        self.tgt_embed = fl.Embedding(tgt_vocab, e)
        self.decoder = fl.GRU(e, h)
        self.out = fl.Dense(h, tgt_vocab)

    def __call__(self, src, tgt_in):
        _, h = self.encoder(self.src_embed(src))
        return self.out(self.decoder(self.tgt_embed(tgt_in), h))

    def greedy(self, src, steps):
        _, h = self.encoder(self.src_embed(src))
        token = np.full(src.shape[0], BOS)
        out = []
        for _ in range(steps):
            y, h = self.decoder.cell(self.tgt_embed(token), h)
            token = np.argmax(self.out(y), axis=-1)
            out.append(token)
        return np.stack(out, axis=1)


class TorchSeq2Seq(nn.Module):
    def __init__(self, src_vocab=7, tgt_vocab=6, e=5, h=8):
        super().__init__()
        self.src_embed = nn.Embedding(src_vocab, e)
        self.encoder = nn.GRU(e, h, batch_first=True)
        self.tgt_embed = nn.Embedding(tgt_vocab, e)
        self.decoder = nn.GRU(e, h, batch_first=True)
        self.out = nn.Linear(h, tgt_vocab)

    def forward(self, src, tgt_in):
        _, h = self.encoder(self.src_embed(src))
        ys, _ = self.decoder(self.tgt_embed(tgt_in), h)
        return self.out(ys)

    def greedy(self, src, steps):
        _, h = self.encoder(self.src_embed(src))
        token = torch.full((src.shape[0], 1), BOS)
        out = []
        for _ in range(steps):
            y, h = self.decoder(self.tgt_embed(token), h)
            token = self.out(y).argmax(-1)
            out.append(token[:, 0])
        return torch.stack(out, 1)


def seq2seq():
    print("seq2seq GRU, teacher forcing, Adam(5e-3), 8 steps, greedy decoding")
    fl.seed(3)
    model = fl.f64(Seq2Seq())
    ref = TorchSeq2Seq()
    load_torch(ref, params(model))
    state = fl.setup(fl.Adam(5e-3), model)
    opt = torch.optim.Adam(ref.parameters(), lr=5e-3)
    n, t = 12, 6
    for step in range(8):
        src = rng.integers(0, 7, (n, t))
        tgt = (src[:, ::-1] % 5) + 1  # the task: reverse and map; 0 is BOS
        tgt_in = np.concatenate([np.full((n, 1), BOS), tgt[:, :-1]], axis=1)  # teacher forcing
        y = np.eye(6)[tgt]

        def loss(m):
            return fl.logitcrossentropy(m(src, tgt_in), y)

        value, (g,) = fl.withgradient(loss, model)
        opt.zero_grad()
        logits = ref(torch.tensor(src), torch.tensor(tgt_in))
        tl = F.cross_entropy(logits.reshape(-1, 6), torch.tensor(tgt).reshape(-1))
        tl.backward()
        check(f"seq2seq loss step {step}", value, tl)
        check(f"seq2seq gradients step {step}", grads_of(model, g),
              [p.grad for p in ref.parameters()])
        fl.update(state, model, g)
        opt.step()
    check("seq2seq final parameters", params(model), list(ref.parameters()))
    src = rng.integers(0, 7, (4, t))
    with torch.no_grad():
        theirs = ref.greedy(torch.tensor(src), 5)
    check("seq2seq greedy decoding (tokens)", model.greedy(src, 5), theirs, tol=0.5)


# --- bidirectional LSTM tagger with lengths -------------------------------------------------

class Tagger(fl.Module):
    def __init__(self, vocab=9, e=4, h=5, tags=3):
        self.embed = fl.Embedding(vocab, e)
        self.rnn = fl.Bidirectional(fl.LSTM(e, h))
        self.out = fl.Dense(2 * h, tags)

    def __call__(self, x, lengths):
        # the backward direction starts at each sequence's last step, as PyTorch's packed
        # sequence runs it; padded steps give 0
        return self.out(self.rnn(self.embed(x), lengths=lengths))


class HandTagger(Tagger):
    """The same, each sequence reversed within its length by hand (what one writes without
    Bidirectional's lengths)."""

    def __call__(self, x, lengths):
        emb = self.embed(x)
        n, t = x.shape
        steps = np.arange(t)[None, :]
        rev = np.where(steps < lengths[:, None], lengths[:, None] - 1 - steps, steps)
        rows = np.arange(n)[:, None]
        fwd = self.rnn.forward(emb)
        bwd = self.rnn.backward(emb[rows, rev])[rows, rev]
        return self.out(np.concatenate([fwd, bwd], axis=-1))


def tagger_loss(m, x, lengths, y):
    mask = np.arange(x.shape[1])[None, :] < lengths[:, None]
    logp = fl.logsoftmax(m(x, lengths), axis=-1)
    picked = np.take_along_axis(logp, y[..., None], axis=-1)[..., 0]
    return -np.sum(picked * mask) / np.sum(mask)


class TorchTagger(nn.Module):
    def __init__(self, vocab=9, e=4, h=5, tags=3):
        super().__init__()
        self.embed = nn.Embedding(vocab, e)
        self.rnn = nn.LSTM(e, h, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * h, tags)

    def forward(self, x, lengths):
        packed = pack_padded_sequence(self.embed(x), lengths, batch_first=True,
                                      enforce_sorted=False)
        ys, _ = pad_packed_sequence(self.rnn(packed)[0], batch_first=True,
                                    total_length=x.shape[1])
        return self.out(ys)


TAGGER_NAMES = ["embed.weight", "rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.bias_ih_l0",
                "rnn.bias_hh_l0", "rnn.weight_ih_l0_reverse", "rnn.weight_hh_l0_reverse",
                "rnn.bias_ih_l0_reverse", "rnn.bias_hh_l0_reverse", "out.weight", "out.bias"]


def tagger():
    print("bidirectional LSTM tagger, lengths 2..7 padded to 7, masked loss, RMSProp, 6 steps")
    fl.seed(4)
    model = fl.f64(Tagger())
    ref = TorchTagger()
    load_torch(ref, params(model), TAGGER_NAMES)
    state = fl.setup(fl.RMSProp(1e-2), model)
    opt = torch.optim.RMSprop(ref.parameters(), lr=1e-2, alpha=0.9, eps=1e-8)
    n, t = 6, 7
    for step in range(6):
        lengths = rng.integers(2, t + 1, n)
        lengths[0] = t
        x = rng.integers(1, 9, (n, t))
        x[np.arange(t)[None, :] >= lengths[:, None]] = 0  # padding
        y = (x % 3)
        value, (g, *_) = fl.withgradient(tagger_loss, model, x, lengths, y)
        opt.zero_grad()
        logits = ref(torch.tensor(x), torch.tensor(lengths))
        target = torch.tensor(np.where(np.arange(t)[None, :] < lengths[:, None], y, -100))
        tl = F.cross_entropy(logits.reshape(-1, 3), target.reshape(-1), ignore_index=-100)
        tl.backward()
        check(f"tagger loss step {step}", value, tl)
        check(f"tagger gradients step {step}", grads_of(model, g),
              [p.grad for p in torch_params(ref, TAGGER_NAMES)])
        mask = np.arange(t)[None, :] < lengths[:, None]
        ours = model(x, lengths)
        # padded steps: PyTorch's 0 through the output layer, its bias
        check(f"tagger outputs, padded steps too {step}", ours, logits)
        hand = HandTagger.__call__(model, x, lengths)
        check(f"tagger outputs by hand on valid steps {step}", hand[mask], ours[mask])
        fl.update(state, model, g)
        opt.step()
    check("tagger final parameters", params(model), torch_params(ref, TAGGER_NAMES))


# --- sequence classification from the final state of padded sequences -----------------------

class Classifier(fl.Module):
    def __init__(self, kind):
        self.embed = fl.Embedding(9, 4)
        self.rnn = getattr(fl, kind)(4, 6, return_state=True)
        self.head = fl.Dense(6, 2)

    def __call__(self, x, lengths):
        _, state = self.rnn(self.embed(x), lengths=lengths)
        return self.head(state[0] if isinstance(state, tuple) else state)  # h of (h, c)


def classifier():
    for kind in ("LSTM", "GRU"):
        print(f"{kind} classifier on the final state of padded sequences (lengths), Adam, 5 steps")
        fl.seed(16)
        model = fl.f64(Classifier(kind))
        emb, trnn, head = nn.Embedding(9, 4), getattr(nn, kind)(4, 6, batch_first=True), \
            nn.Linear(6, 2)
        ref = nn.ModuleList([emb, trnn, head])
        load_torch(ref, params(model))
        state = fl.setup(fl.Adam(1e-2), model)
        opt = torch.optim.Adam(ref.parameters(), lr=1e-2)
        for step in range(5):
            n, t = 6, 7
            lengths = rng.integers(1, t + 1, n)
            x = rng.integers(1, 9, (n, t))
            x[np.arange(t)[None, :] >= lengths[:, None]] = 0
            y = rng.integers(0, 2, n)
            value, (g,) = fl.withgradient(lambda m: fl.logitcrossentropy(m(x, lengths), y),
                                          model)
            opt.zero_grad()
            packed = pack_padded_sequence(emb(torch.tensor(x)), torch.tensor(lengths),
                                          batch_first=True, enforce_sorted=False)
            _, last = trnn(packed)
            h_n = last[0] if kind == "LSTM" else last
            tl = F.cross_entropy(head(h_n[0]), torch.tensor(y))
            tl.backward()
            check(f"{kind} classifier loss step {step}", value, tl)
            check(f"{kind} classifier gradients step {step}", grads_of(model, g),
                  [p.grad for p in ref.parameters()])
            fl.update(state, model, g)
            opt.step()
        check(f"{kind} classifier final parameters", params(model), list(ref.parameters()))


if __name__ == "__main__":
    seq2seq()
    tagger()
    classifier()
    summary("torch_tutorials_rnn")
