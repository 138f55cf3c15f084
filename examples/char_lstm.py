"""A character-level LSTM language model, trained on the Zen of Python (the text of the
standard library's ``this`` module), that then writes text of its own.

Each training example is a window of the text; the model reads its characters and predicts,
at every step, the next one: ``Embedding -> LSTM -> Dense`` over ``(N, T)`` character
indices, with the cross-entropy of all ``(N, T)`` predictions. After training, it prints the
loss before and after, how well it predicts the next character, and a sample it generates
by feeding its own output back in (the LSTM's state carried from step to step).

    python examples/char_lstm.py [--epochs N] [--quiet]

Exits with status 1 if training did not lower the loss below the target.
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import io
import sys
import time

import numpy as np

import fluxml as fl


def zen() -> str:
    """The Zen of Python, decoded from ``this.s`` (importing ``this`` prints it: not here)."""
    with contextlib.redirect_stdout(io.StringIO()):
        import this
    return codecs.decode(this.s, "rot13")


class CharModel(fl.Module):
    def __init__(self, vocab: int, dim: int = 16, hidden: int = 96):
        self.embed = fl.Embedding(vocab, dim)
        self.lstm = fl.LSTM(dim, hidden, return_state=True)
        self.out = fl.Dense(hidden, vocab)

    def __call__(self, idx, state=None):
        """Logits ``(N, T, vocab)`` for character indices ``(N, T)``; with ``state``, the
        LSTM continues from it and the new state comes back too."""
        h, new_state = self.lstm(self.embed(idx)) if state is None else \
            self.lstm(self.embed(idx), state)
        return (self.out(h), new_state) if state is not None else self.out(h)


def windows(codes: np.ndarray, length: int, step: int):
    starts = np.arange(0, len(codes) - length - 1, step)
    x = np.stack([codes[s:s + length] for s in starts])
    y = np.stack([codes[s + 1:s + length + 1] for s in starts])
    return x, y


def generate(model, chars: str, prompt: str, n: int, rng) -> str:
    index = {c: i for i, c in enumerate(chars)}
    logits, state = model(np.array([[index[c] for c in prompt]]), _zero_state(model))
    out = prompt
    for _ in range(n):
        p = np.exp(logits[0, -1] - logits[0, -1].max()) ** 2  # temperature 0.5
        nxt = rng.choice(len(chars), p=p / p.sum())
        out += chars[nxt]
        logits, state = model(np.array([[nxt]]), state)
    return out


def _zero_state(model):
    hidden = model.lstm.cell.weight_hh.shape[1]
    return np.zeros((1, hidden), np.float32), np.zeros((1, hidden), np.float32)


def main(epochs: int = 30, progress: bool = True, target: float = 1.5, length: int = 48,
         sample: int = 160) -> int:
    fl.seed(0)
    text = zen()
    chars = "".join(sorted(set(text)))
    codes = np.array([chars.index(c) for c in text])
    x, y = windows(codes, length, step=3)
    model = CharModel(len(chars))
    print(f"{len(text)} characters, {len(chars)} distinct; {len(x)} windows of {length}")
    loader = fl.DataLoader((x, y), batchsize=32, shuffle=True, rng=0)
    state = fl.setup(fl.OptimiserChain(fl.ClipNorm(1.0), fl.Adam(1e-2)), model)

    def loss(m, x, y):
        return fl.logitcrossentropy(m(x), y)

    before = float(loss(model, x, y))
    start = time.perf_counter()
    fl.train(loss, model, loader, state, epochs=epochs, progress=progress)
    seconds = time.perf_counter() - start
    after = float(loss(model, x, y))
    hits = float(np.mean(fl.onecold(model(x)) == y))
    print(f"loss {before:.3f} -> {after:.3f} in {seconds:.1f} s; next character right "
          f"{hits:.1%} of the time")
    print("sample:", repr(generate(model, chars, "Beautiful is ", sample,
                                   np.random.default_rng(0))))
    ok = after < target
    print("OK" if ok else f"FAILED: loss {after:.3f} not below {target}")
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args()
    sys.exit(main(args.epochs, not args.quiet))
