"""Seeded fuzzer of data-parallel training: ``fl.train(..., distributed=True / "overlap")`` on
the ranks of ``mpiexec`` against one process with the global batch.

The promise checked: N ranks with ``DataLoader(..., batchsize=B, shard=True)`` give the same
step losses, parameters, BatchNorm statistics and optimiser state (to float tolerance) as one
process that trains on the same global batches of up to N * B observations, whatever each
rank's model was before (rank 0's wins). Each case draws a model (Dense, Conv, Embedding or
LSTM stacks under a user-defined class; BatchNorm, synchronised on the ranks; Dropout masks
drawn once per observation and batched with the data, so that the reference draws the same;
frozen parameters, a branch without gradient, one used by rare observations only (None on a
rank without one), float32 beside float64, an integer array, tied arrays, a Python float),
an optimiser (chains of ClipNorm, ClipGrad, AccumGrad, WeightDecay; a learning-rate
schedule), a data set whose size leaves a partial last batch, shuffling, bucket sizes, the
overlapped averaging, ``compile=True``, and a checkpoint saved by rank 0 that is then
resumed with one process and with every rank (rank 0 alone loading it). The reference is
``fl.train`` in one process over batches cut here (NumPy: the same permutations a seeded
``DataLoader`` draws, global batches of N * B, the shard's rule for the last one).

Run by hand (the suite runs a few quick cases, ``test_ranks.py``)::

    .venv/bin/mpiexec -n 2 .venv/bin/python tests/distributed/fuzz_ranks.py --cases 40 --seed 0

Each rank prints ``rank r: case k ok`` or the first mismatch, and at the end a summary.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import traceback
from pathlib import Path

import numpy as np

import fluxml as fl
from fluxml.distributed import parallel


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


# --- the random case ------------------------------------------------------------------------

class Net:
    """A user-defined model: a body (by kind), a head, and extras the case switches on."""

    def __init__(self, c, rng):
        kind = c["kind"]
        f64 = fl.f64
        if kind == "mlp":
            layers = [fl.Dense(c["nin"], c["hidden"], np.tanh)]
            if c["bn"]:
                layers.append(fl.BatchNorm(c["hidden"], dtype=np.float64))
            self.body = f64(fl.Chain(*layers))
            width = c["hidden"]
        elif kind == "conv":
            layers = [fl.Conv((3, 3), 2, 3, np.tanh)]
            if c["bn"]:
                layers.append(fl.BatchNorm(3, dtype=np.float64))
            layers.append(fl.Flatten())
            self.body = f64(fl.Chain(*layers))
            width = 3 * 3 * 3
        elif kind == "embed":
            self.body = f64(fl.Chain(fl.Embedding(7, 3), fl.Flatten()))
            width = 3 * c["nin"]
        else:  # lstm: the last step's output
            self.body = f64(fl.LSTM(3, 4))
            width = 4
        self.dropout = c["dropout"]
        self.head = fl.Dense(width, 2)
        if not c["mixed"]:  # else a float32 head in a float64 model
            self.head = f64(self.head)
        self.scale = np.array(1.0 + rng.uniform(-0.2, 0.2))  # a 0-d float64 parameter
        self.index = np.arange(2)[::-1].copy()  # an integer array: no gradient, not averaged
        self.unused = f64(fl.Dense(2, 2))  # never called: a gradient of None
        if c["tied"]:
            w = rng.standard_normal(2)
            self.tied = [w, w]
        if c["float"]:
            self.offset = 0.25  # a Python float: averaged as a 0-d array
        if c["rare"]:  # used by the flagged observations only: None on a rank without one
            self.rare = f64(fl.Dense(2, 2))

    def __call__(self, x, mask, flag):
        h = self.body(x)
        if self.body.__class__ is fl.LSTM:
            h = h[:, -1]
        h = h * mask / (1 - self.dropout)  # Dropout, rescaled as fl.Dropout does
        y = self.head(h.astype(self.head.weight.dtype)).astype(np.float64) * self.scale
        y = y[:, self.index]
        if hasattr(self, "tied"):
            y = y + self.tied[0] * 0.5 + np.tanh(self.tied[1])
        if hasattr(self, "offset"):
            y = y + self.offset
        if hasattr(self, "rare") and np.any(flag):
            y = y + flag[:, None] * self.rare(y)
        return y


def draw_case(seed: int, nranks: int, quick: bool) -> dict:
    rng = np.random.default_rng(seed)
    pick = lambda *xs: xs[rng.integers(len(xs))]  # noqa: E731
    c = {"seed": seed, "kind": pick("mlp", "mlp", "conv", "embed", "lstm")}
    c["nin"] = int(rng.integers(2, 5))
    c["hidden"] = int(rng.integers(3, 8))
    c["bn"] = c["kind"] in ("mlp", "conv") and rng.random() < 0.4
    c["dropout"] = float(pick(0.0, 0.0, 0.3))
    c["mixed"] = bool(rng.random() < 0.3)
    c["tied"] = bool(rng.random() < 0.3)
    c["float"] = bool(rng.random() < 0.3)
    c["rare"] = bool(rng.random() < 0.4)
    c["frozen"] = bool(rng.random() < 0.3)
    c["batch"] = int(rng.integers(1, 4 if quick else 6))
    c["shuffle"] = bool(rng.random() < 0.6)
    c["partial"] = bool(rng.random() < 0.8)
    g = c["batch"] * nranks
    c["nobs"] = int(rng.integers(nranks, (3 if quick else 5) * g + 2))
    c["epochs"] = int(rng.integers(1, 3 if quick else 4))
    c["distributed"] = pick(True, "overlap")
    # (SyncBatchNorm does not compile: its statistics' count is a Python number)
    c["compile"] = bool(rng.random() < (0.15 if quick else 0.25)) and c["kind"] != "lstm" \
        and not c["bn"] and not c["rare"]  # (nor a Python if on the data)
    c["bucket"] = int(pick(8, 64, 1 << 20))
    c["direct"] = int(pick(8, 200, 1 << 30))
    c["in_place"] = bool(rng.random() < 0.7)
    c["opt"] = pick("Descent", "Momentum", "Adam", "AdamW", "Nesterov", "RMSProp", "Rprop",
                    "AdaGrad", "AdaDelta", "Lion", "RAdam", "NAdam", "AdaMax", "AMSGrad", "OAdam",
                    "AdaBelief")
    c["eta"] = float(rng.uniform(0.01, 0.1))
    c["clipnorm"] = float(pick(0.0, 0.05, 1.0))
    c["clipgrad"] = float(pick(0.0, 0.0, 0.02))
    c["accum"] = int(pick(1, 1, 2, 3))
    # the buckets summed in shared memory (every gradient where direct_bytes is not given),
    # or travelling (then early, with overlap)
    c["shared"] = bool(rng.random() < 0.5)
    if c["shared"] and rng.random() < 0.5:
        c["direct"] = None
    c["decay"] = float(pick(0.0, 0.0, 0.01))
    c["schedule"] = pick(None, "exp", "step") if c["opt"] != "AdaDelta" else None  # (no eta)
    c["checkpoint"] = c["epochs"] > 1 and rng.random() < 0.5
    return c


def make_model(c, init_seed, freeze=True):
    """The case's model and optimiser state; ``init_seed`` draws its parameters (each rank
    its own: rank 0's must win); ``freeze``: the head frozen where the case says (else only
    a checkpoint freezes it)."""
    fl.seed(init_seed)
    model = Net(c, np.random.default_rng(init_seed))
    rules = []
    if c["accum"] > 1:
        rules.append(fl.AccumGrad(c["accum"]))
    if c["clipnorm"]:
        rules.append(fl.ClipNorm(c["clipnorm"]))
    if c["clipgrad"]:
        rules.append(fl.ClipGrad(c["clipgrad"]))
    if c["decay"]:
        rules.append(fl.WeightDecay(c["decay"]))
    rules.append(getattr(fl, c["opt"])(0.9 if c["opt"] == "AdaDelta" else c["eta"]))
    rule = rules[0] if len(rules) == 1 else fl.OptimiserChain(*rules)
    state = fl.setup(rule, model)
    if c["frozen"] and freeze:
        fl.freeze(state.head)
    return model, state


def make_data(c):
    rng = np.random.default_rng(c["seed"] + 1)
    n = c["nobs"]
    if c["kind"] == "mlp":
        x = rng.standard_normal((n, c["nin"]))
    elif c["kind"] == "conv":
        x = rng.standard_normal((n, 2, 5, 5))
    elif c["kind"] == "embed":
        x = rng.integers(0, 7, size=(n, c["nin"]))
    else:
        x = rng.standard_normal((n, 3, 3))
    y = rng.standard_normal((n, 2))
    # the Dropout mask of every observation, drawn once and batched with it, so that any
    # cut of the batches sees the same masks (also when compiled: no state in the loss)
    width = {"mlp": c["hidden"], "conv": 27, "embed": 3 * c["nin"], "lstm": 4}[c["kind"]]
    masks = (rng.random((n, width)) >= c["dropout"]).astype(np.float64)
    flags = (rng.random(n) < 0.15).astype(np.float64)
    return x, y, masks, flags


def loss(m, x, y, mask, flag):
    return np.mean((m(x, mask, flag) - y) ** 2)


class GlobalBatches:
    """The reference's batches: the permutation a ``DataLoader(rng=seed)`` draws each epoch,
    cut into global batches of ``per_rank * nranks``, the last split as the shards split it
    (left out when it has fewer observations than ranks, or with ``partial=False`` when
    short)."""

    def __init__(self, data, c, nranks):
        self.data, self.c, self.nranks = data, c, nranks
        self.rng = np.random.default_rng(c["seed"] + 2)

    def cuts(self):
        n, step = self.c["nobs"], self.c["batch"] * self.nranks
        out = []
        for lo in range(0, n, step):
            hi = min(lo + step, n)
            if hi - lo < self.nranks or (hi - lo < step and not self.c["partial"]):
                continue
            out.append((lo, hi))
        return out

    def __len__(self):
        return len(self.cuts())

    def __iter__(self):
        order = self.rng.permutation(self.c["nobs"]) if self.c["shuffle"] else None
        for lo, hi in self.cuts():
            idx = slice(lo, hi) if order is None else order[lo:hi]
            yield tuple(part[idx] for part in self.data)


def make_schedule(c):
    if c["schedule"] == "exp":
        return [fl.LRSchedule(fl.ExpDecay(c["eta"], 0.9))]
    if c["schedule"] == "step":
        return [fl.LRSchedule(fl.StepDecay(c["eta"], 0.5, 2))]
    return []


def configure(c):
    """The averager ``fl.train`` makes, with the case's bucket sizes."""
    class Averager(fl.distributed.GradientAverager):
        def __init__(self, bucket_bytes=1 << 20, in_place=False):
            super().__init__(c["bucket"], in_place=in_place and c["in_place"],
                             direct_bytes=c["direct"])
            if not c["shared"]:
                self.shared_bytes = 0

    parallel.GradientAverager = Averager


# --- one case -------------------------------------------------------------------------------

def reference(c, nranks, epochs=None, start=None):
    """One process over the global batches; ``start``: a checkpoint to resume from."""
    model, state = make_model(c, 0, freeze=start is None)
    batches = GlobalBatches(make_data(c), c, nranks)
    history = None
    if start is not None:
        info = fl.load_checkpoint(start, model, state, rngs={"data": batches.rng})
        history = fl.History.from_dict(info.extra["history"])
    h = fl.train(loss, model, batches, state, epochs=c["epochs"] if epochs is None else epochs,
                 callbacks=make_schedule(c), progress=False,
                 history=history, compile=c["compile"])
    return model, state, h


def distributed(c, out, start=None):
    """Every rank: the case on the ranks (each rank's own initial model); ``start``: a
    checkpoint that rank 0 alone loads."""
    me = fl.distributed.rank()
    configure(c)
    model, state = make_model(c, me, freeze=start is None)
    if c["bn"]:
        model = fl.distributed.sync_batchnorm(model)
    loader = fl.DataLoader(make_data(c), batchsize=c["batch"], shuffle=c["shuffle"],
                           partial=c["partial"], rng=c["seed"] + 2, shard=True)
    callbacks = make_schedule(c)
    history, epochs = None, c["epochs"]
    if start is not None:  # rank 0 alone reads the file; fl.train gives its history out
        if me == 0:
            info = fl.load_checkpoint(start, model, state, rngs={"data": loader.rng})
            history = fl.History.from_dict(info.extra["history"])
        epochs -= 1  # (the checkpoint of epoch 1)
    elif c["checkpoint"]:
        callbacks.append(fl.SaveCheckpoint(str(Path(out) / "ckpt-{epoch}.st")))
    h = fl.train(loss, model, loader, state, epochs=epochs, callbacks=callbacks,
                 progress=False, history=history, distributed=c["distributed"],
                 compile=c["compile"])
    return model, state, h


def compare(what, got, want, losses_got, losses_want, rtol):
    np.testing.assert_allclose(losses_got, losses_want, rtol=rtol, atol=rtol,
                               err_msg=f"{what}: the step losses")
    a, b = fl.io.modelstate.flat_state(got[0]), fl.io.modelstate.flat_state(want[0])
    assert a.keys() == b.keys(), (what, sorted(set(a) ^ set(b)))
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=rtol, atol=rtol, err_msg=f"{what}: {k}")
    a, b = fl.io.modelstate.flat_state(got[1]), fl.io.modelstate.flat_state(want[1])
    assert a.keys() == b.keys(), (what, sorted(set(a) ^ set(b)))
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=rtol, atol=rtol,
                                   err_msg=f"{what}: state {k}")
    frozen_got = [leaf.frozen for leaf in fl.optimise.interface._leaves(got[1])]
    frozen_want = [leaf.frozen for leaf in fl.optimise.interface._leaves(want[1])]
    assert frozen_got == frozen_want, (what, frozen_got, frozen_want)


def run_case(c, nranks, out):
    """The runs (every collective on every rank first), then the comparisons."""
    rtol = 2e-5 if c["mixed"] else 1e-9
    want = reference(c, nranks)
    runs = {"distributed": distributed(c, out)}
    fl.distributed.check_synced(runs["distributed"][0])
    fl.distributed.check_synced(runs["distributed"][1], "optimiser state")
    if c["checkpoint"]:
        fl.distributed.broadcast_object(None)  # rank 0 has written the files
        ckpt = Path(out) / "ckpt-1.st"
        runs[f"resumed with {nranks}"] = again = distributed(c, out, start=ckpt)
        fl.distributed.check_synced(again[0])
        fl.distributed.check_synced(again[1], "optimiser state")
        runs["resumed with 1"] = reference(c, nranks, epochs=c["epochs"] - 1, start=ckpt)
    for what, got in runs.items():
        compare(what, got[:2], want[:2], got[2].losses, want[2].losses, rtol)


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--cases", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--only", type=int, default=None)
    args = p.parse_args(argv)
    g = fl.distributed.init(timeout=60.0)
    me, nranks = g.rank, g.size
    failed = []
    cases = [args.only] if args.only is not None else range(args.cases)
    seen: dict = {}  # how many cases had each feature
    for k in cases:
        c = draw_case(1000 * args.seed + k, nranks, args.quick)
        for key in ("bn", "mixed", "tied", "float", "frozen", "compile", "checkpoint",
                    "shuffle", "rare"):
            seen[key] = seen.get(key, 0) + bool(c[key])
        for key in ("kind", "distributed", "opt"):
            seen[f"{key}={c[key]}"] = seen.get(f"{key}={c[key]}", 0) + 1
        seen["dropout"] = seen.get("dropout", 0) + bool(c["dropout"])
        seen["uneven"] = seen.get("uneven", 0) + bool(c["nobs"] % nranks)
        seen["chain"] = seen.get("chain", 0) + bool(c["accum"] > 1 or c["clipnorm"]
                                                    or c["clipgrad"] or c["decay"])
        with tempfile.TemporaryDirectory() as tmp:
            out = fl.distributed.broadcast_object(tmp)  # rank 0's folder
            try:
                run_case(c, nranks, out)
                say(f"rank {me}: case {k} ok")
            except Exception as err:  # noqa: BLE001 - report and go on to the next case
                failed.append(k)
                text = "".join(traceback.format_exception_only(err)).strip()[:1500]
                say(f"rank {me}: case {k} FAILED {c}\n{text}")
                if not isinstance(err, AssertionError):
                    traceback.print_exc()
            fl.distributed.broadcast_object(None)  # rank 0 removes the folder after
    if me == 0:
        say("features: " + ", ".join(f"{k} {v}" for k, v in sorted(seen.items())))
    say(f"rank {me}: {len(cases) - len(failed)} of {len(cases)} cases ok; failed: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
