"""A seeded fuzzer of checkpoints in a training loop of the user's own (``fl.gradient`` and
``fl.update``, no ``fl.train``): a run that dies at a random step and resumes from its last
checkpoint, in objects built anew from other random numbers, must give the uninterrupted
run's step losses and end with its parameters, running statistics and optimiser state, bit
for bit.

Each case draws a model (Dense layers with Dropout on fluxml's default generator or on one
of its own, BatchNorm, an LSTM over sequences, or an Embedding of integer inputs), a rule
(Adam, Momentum, Nesterov, RMSProp, AdamW, Descent; alone or in an ``OptimiserChain`` with
``ClipNorm``, ``WeightDecay`` or ``AccumGrad``), a schedule of the learning rate set with
``fl.adjust`` at every step (CosineAnneal, ExpDecay, StepDecay, OneCycle, or none), a
shuffled ``DataLoader`` (partial last batch or not) and where checkpoints are written (every
epoch, or every few steps within epochs with the pass's generator state kept in ``extra``).
The interrupted run stops at a random step, and the resumed one reloads with
``fl.load_checkpoint(path, model, state, rngs={"data": loader.rng})``.

    PYTHONPATH=src python -m tests.io.fuzz_manual_resume [n_cases] [first_seed]
"""

from __future__ import annotations

import os
import sys

import numpy as np

import fluxml as fl
from fluxml.io.modelstate import flat_state
from tests.io.fuzz_cli import run_seeds


class Case:
    def __init__(self, seed: int):
        rs = np.random.default_rng(seed)
        self.seed = seed
        self.kind = str(rs.choice(["dense", "lstm", "embedding"]))
        self.n = int(rs.integers(5, 14))
        self.batchsize = int(rs.integers(1, 6))
        self.partial = bool(rs.integers(2))
        self.epochs = int(rs.integers(1, 4))
        self.own_rng = bool(rs.integers(2))
        self.batchnorm = bool(rs.integers(2))
        if self.batchnorm:  # (a batch of one has no statistics: refused by BatchNorm)
            self.batchsize = max(self.batchsize, 2)
            self.partial = self.partial and self.n % self.batchsize != 1
        self.p = float(rs.choice([0.0, 0.25, 0.5]))
        self.rule_plan = (int(rs.integers(6)), int(rs.integers(4)), float(rs.uniform(0.5, 2)),
                          int(rs.integers(2, 4)))
        self.schedule = [None, fl.CosineAnneal(0.05, 1e-3, 7), fl.ExpDecay(0.05, 0.9),
                         fl.StepDecay(0.05, 0.5, 3), fl.OneCycle(0.05, 40)][rs.integers(5)]
        self.every = int(rs.integers(0, 4))  # steps between checkpoints (0: each epoch)
        data_rs = np.random.default_rng(seed + 10**6)
        if self.kind == "embedding":
            self.x = data_rs.integers(0, 6, size=self.n)
        elif self.kind == "lstm":
            self.x = data_rs.normal(size=(self.n, 3, 2)).astype(np.float32)
        else:
            self.x = data_rs.normal(size=(self.n, 3)).astype(np.float32)
        self.y = data_rs.normal(size=(self.n, 1)).astype(np.float32)
        self.steps_per_epoch = (self.n // self.batchsize
                                + (1 if self.partial and self.n % self.batchsize else 0))
        self.total = self.epochs * self.steps_per_epoch
        self.stop = int(rs.integers(1, self.total + 1))  # the step the run dies before

    def rule(self):
        which, chain, c, k = self.rule_plan
        base = [fl.Adam(0.05), fl.Momentum(0.05, 0.8), fl.Nesterov(0.05), fl.RMSProp(0.05),
                fl.AdamW(0.05), fl.Descent(0.05)][which]
        if chain == 1:
            return fl.OptimiserChain(fl.ClipNorm(c), base)
        if chain == 2:
            return fl.OptimiserChain(fl.WeightDecay(0.01), base)
        if chain == 3:
            return fl.OptimiserChain(fl.AccumGrad(k), base)
        return base

    def build(self, value_seed: int):
        """Model, optimiser state and loader, from ``value_seed``'s random numbers (a run
        resumed builds them afresh from other numbers)."""
        fl.seed(value_seed)
        drop = fl.Dropout(self.p, rng=np.random.default_rng(value_seed) if self.own_rng
                          else None)
        if self.kind == "embedding":
            head = [fl.Embedding(6, 4)]
            width = 4
        elif self.kind == "lstm":
            head = [fl.LSTM(2, 4), lambda h: h[:, -1]]
            width = 4
        else:
            head = [fl.Dense(3, 4, np.tanh)]
            width = 4
        layers = head + [drop] + ([fl.BatchNorm(width)] if self.batchnorm else []) + \
            [fl.Dense(width, 1)]
        model = fl.Chain(*layers)
        loader = fl.DataLoader((self.x, self.y), batchsize=self.batchsize, shuffle=True,
                               partial=self.partial, rng=value_seed + 7)
        return model, fl.setup(self.rule(), model), loader


def _train(case, model, state, loader, folder, *, start=0, stop=None, resume_pass=None):
    """Train from step ``start`` to ``stop`` (exclusive; None: the end); returns the step
    losses. Checkpoints go to ``folder``; ``resume_pass``: (the epoch's generator state as
    it began, the batches done) for a run resumed within an epoch."""
    losses = {}
    step = start
    epoch = start // case.steps_per_epoch
    while epoch < case.epochs:
        began = loader.rng.bit_generator.state
        skip = 0
        if resume_pass is not None:  # the order the interrupted pass drew, again
            now = loader.rng.bit_generator.state
            loader.rng.bit_generator.state, skip = resume_pass
            began = loader.rng.bit_generator.state
            batches = list(loader)  # (drawn now: a generator draws at its first batch)
            loader.rng.bit_generator.state = now
            resume_pass = None
        else:
            batches = iter(loader)
        for i, (x, y) in enumerate(batches):
            if i < skip:
                continue
            if stop is not None and step >= stop:
                return losses
            if case.schedule is not None:
                fl.adjust(state, eta=float(case.schedule(step)))
            loss, grads = fl.withgradient(lambda m: fl.mse(m(x), y), model)
            fl.update(state, model, grads[0])
            losses[step] = float(loss)
            step += 1
            within = case.every and step % case.every == 0 and i + 1 < case.steps_per_epoch
            if within or i + 1 == case.steps_per_epoch:
                fl.save_checkpoint(os.path.join(folder, "last.st"), model, state, step=step,
                                   rngs={"data": loader.rng},
                                   extra={"began": began,
                                          "done": (i + 1) % case.steps_per_epoch})
        epoch += 1
    return losses


def _snapshot(model, state):
    return flat_state(model), flat_state(state)


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        np.asarray(a[k]).dtype == np.asarray(b[k]).dtype
        and np.asarray(a[k]).tobytes() == np.asarray(b[k]).tobytes() for k in a)


def run_case(seed: int, folder: str) -> list[str]:
    case = Case(seed)
    model, state, loader = case.build(1)
    full = _train(case, model, state, loader, folder)
    want = _snapshot(model, state)
    os.remove(os.path.join(folder, "last.st")) if os.path.exists(
        os.path.join(folder, "last.st")) else None
    model, state, loader = case.build(1)
    _train(case, model, state, loader, folder, stop=case.stop)
    path = os.path.join(folder, "last.st")
    if not os.path.exists(path):  # died before its first checkpoint: all again
        return []
    model, state, loader = case.build(2)  # anew, from other numbers
    fl.seed(99)
    info = fl.load_checkpoint(path, model, state, rngs={"data": loader.rng})
    done = info.extra["done"]
    resume_pass = (info.extra["began"], done) if done else None
    resumed = _train(case, model, state, loader, folder, start=info.step,
                     resume_pass=resume_pass)
    fails = []
    differ = [s for s in resumed if s not in full or  # (bitwise: a NaN loss is one too)
              np.float64(resumed[s]).tobytes() != np.float64(full[s]).tobytes()]
    if differ or set(full) - set(range(info.step)) != set(resumed):
        s = differ[0] if differ else None
        fails.append(f"{case.kind} {case.rule_plan}: the resumed run's losses differ from "
                     f"step {s} (resumed from {info.step}, stopped at {case.stop}): "
                     f"{resumed.get(s)} != {full.get(s)}")
    got = _snapshot(model, state)
    if not _same(got[0], want[0]):
        fails.append(f"{case.kind}: the resumed model ends elsewhere")
    if not _same(got[1], want[1]):
        fails.append(f"{case.kind}: the resumed optimiser state ends elsewhere")
    return fails


def main(argv) -> int:
    return run_seeds(run_case, argv, 100, in_folder=True)


if __name__ == "__main__":
    sys.exit(1 if main(sys.argv[1:]) else 0)
