"""A seeded fuzzer of ``fl.train``'s promise that a checkpoint holds the model, the optimiser
state, the generators and the step, so that a run killed part-way and resumed from its last
checkpoint, in a process whose objects were built anew, ends bit for bit as the run that was
never interrupted; and of its promise that a NaN stops training with an error naming the
step and leaves the model as it was before that step.

Each case draws a small model (Dense with BatchNorm, Dropout and ``Tally``, a user's own
plain class with a trainable scale, a running mean its forward pass sets (trained too, or
not) and a call count; a Conv with BatchNorm; an LSTM), a loss (mse, mae, huber, logit
binary cross-entropy), a rule or ``OptimiserChain`` with random hyperparameters (clipping,
weight and sign decay, ``AccumGrad``; ``MixedPrecision`` around it), a part frozen from the
start and thawed at a random step, a ``DataLoader`` (shuffled or not, partial last batch or
dropped, its generator seeded or drawn from fluxml's), an ``LRSchedule`` (per step or
epoch), ``Evaluate``, ``EarlyStopping`` (``restore_best`` or not), ``SaveCheckpoint`` every
one or two epochs (and every few steps, within epochs) at a random place among the
callbacks, ``compile=True`` or eager steps, 1 to 4 epochs. It trains the case once without
interruption, then again, killed at a random step k:

- ``stop``: a callback sets ``run.stop`` after step k (the run ends, its epoch cut short);
- ``callback``: a callback raises before step k;
- ``epoch_end``: a callback raises at the end of the epoch holding step k;
- ``loss``: the loss raises in step k, after the forward pass (eager steps: a compiled loss
  runs its Python only when traced);

and resumes from the last checkpoint written before the kill (and from another) into a
model, loader, optimiser state and callbacks built anew from other random numbers (as after
a crash); not from the checkpoint of an epoch a stop cut short (a stop ends its epoch: the
run resumed from it goes on with the next, as the uninterrupted run does not). It requires
the resumed run's step losses, epoch rows (times aside), history's kept weights, parameters
and running statistics, optimiser state (hyperparameters and frozen flags too),
EarlyStopping's verdict and the generators' states to equal the uninterrupted run's, bit for
bit, and each checkpoint the resumed run writes to hold what the uninterrupted run's of that
name holds. The last resumed run is killed again (a callback, at a later step) and resumed
from its own last checkpoint: the same again. Also:

- after a ``loss`` kill, the model holds plain arrays (no tracer of the dead step), and it
  (running statistics, the user's layer's count too) and the optimiser state are as step k
  began;
- NAN: a NaN put into one observation's weight (the loss is ``loss(m(x) * w, y)``) stops the
  run with a ``TrainingError`` naming the step whose batch holds it (found by walking a twin
  of the loader), and the model (running statistics, the user's layer's count too) and the
  optimiser state are as that step began (its learning rate set by the schedule), bit for bit;
- ROWS: each epoch row's step and mean loss, from the step losses;
- PEER: the checkpoint files read with the ``safetensors`` package (when installed) hold the
  tensors fluxml reads.
- AFRESH (tests/training/fuzz_resume_within.py): the killed run continued in its process
  with its own history, and a run resumed from a checkpoint saved within an epoch with a
  loader of bigger batches, start that epoch again (a warning) and train all its batches.

The suite runs a few seeds (tests/training/test_fuzz_resume.py); by hand:

    PYTHONPATH=src python -m tests.training.fuzz_resume 200 [SEED]
    PYTHONPATH=src python -m tests.training.fuzz_resume --case 17   (one case, verbose)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import traceback
import warnings

import numpy as np

import fluxml as fl
from fluxml.io.modelstate import flat_state
from fluxml.optimise.interface import _leaves
from tests.training.fuzz_resume_within import check_continued, check_fewer_batches
from tests.training.fuzz_runs import (
    _last_step,
    rngs_of,
    run_seeds,
    same,
    same_arrays,
    sizes,
)

STEPPING = (fl.Descent, fl.Momentum, fl.Nesterov, fl.RMSProp, fl.AdaGrad, fl.Adam, fl.AdamW,
            fl.NAdam, fl.AdaMax, fl.AMSGrad, fl.Lion, fl.AdaBelief, fl.RAdam, fl.OAdam,
            fl.Rprop, fl.AdaDelta)
LOSSES = ("mse", "mae", "huber", "logitbce")
KILLS = ("stop", "callback", "epoch_end", "loss")


class Killed(Exception):
    """The interruption a case stages (a crash, a KeyboardInterrupt)."""


@dataclasses.dataclass
class Spec:
    seed: int
    kind: str  # "mlp", "conv" or "lstm"
    dtype: type
    batchnorm: bool
    dropout: float  # 0: none
    drop_rng: bool  # Dropout with a generator of its own (saved through SaveCheckpoint's rngs)
    tally: str  # the user's own layer: "" (none), "state" or "trained" (its running mean)
    loss: str
    delta: float  # huber's
    nobs: int
    batchsize: int
    partial: bool
    shuffle: bool
    loader_seed: int | None  # None: drawn from fluxml's default generator
    rule: fl.Rule
    frozen: int | None  # the layer frozen from the start
    thaw_at: int | None  # the global step (from 0) before which everything is thawed
    schedule: object
    every: str  # the schedule's "step" or "epoch"
    evaluate: int  # Evaluate's every (0: none)
    early: dict | None
    ckpt_every: int
    ckpt_steps: int | None  # SaveCheckpoint's steps (checkpoints within epochs too)
    epochs: int
    compile: bool
    kill: str  # how the second run is interrupted
    kill_at: float  # where, as a fraction of the uninterrupted run's steps
    nan_at: float  # where the NaN goes, likewise
    again_at: float  # where the resumed run is killed again, as a fraction of what is left
    saver_at: int  # SaveCheckpoint's place among the callbacks


def _rule(r, dtype):
    kind = STEPPING[r.integers(len(STEPPING))]
    step = kind(float(10 ** r.uniform(-3, -1.3))) if kind is not fl.AdaDelta else kind()
    if r.integers(2):
        parts = []
        for _ in range(int(r.integers(1, 3))):
            which = int(r.integers(5))
            parts.append([fl.ClipGrad(float(r.uniform(0.01, 1))),
                          fl.ClipNorm(float(r.uniform(0.1, 2))),
                          fl.WeightDecay(float(r.uniform(0, 0.1))),
                          fl.SignDecay(float(r.uniform(0, 0.01))),
                          fl.AccumGrad(int(r.integers(1, 4)))][which])
        step = fl.OptimiserChain(*parts, step)
    if dtype is np.float32 and r.integers(6) == 0:  # a float64 copy steps, rounded to float32
        step = fl.MixedPrecision(np.float64, step)
    return step


def _schedule(r, total):
    eta = float(10 ** r.uniform(-3, -1.3))
    kind = int(r.integers(5))
    if kind == 0:
        return None
    if kind == 4:
        return fl.OneCycle(eta, total=int(r.integers(2, total + 3)),
                           pct_start=float(r.uniform(0.1, 0.9)))
    if kind == 1:
        return fl.StepDecay(eta, float(r.uniform(0.3, 0.9)), step=int(r.integers(1, 4)))
    if kind == 2:
        return fl.ExpDecay(eta, float(r.uniform(0.8, 0.99)))
    return fl.CosineAnneal(eta, end=float(eta * r.uniform(0, 0.2)),
                           period=int(r.integers(1, total + 2)), warmup=int(r.integers(0, 3)))


def _one_alone(nobs: int, batchsize: int, partial: bool) -> bool:
    """Whether batches of ``batchsize`` or ``2 * batchsize`` (fuzz_resume_within's resumed
    loader) may hold a single observation."""
    return batchsize == 1 or partial and 1 in (nobs % batchsize, nobs % (2 * batchsize))


def draw(seed: int) -> Spec:
    r = np.random.default_rng([seed, 31])
    kind, nobs, batchsize, partial, epochs, steps = sizes(r, 14, 6, (1, 5))
    evaluate = int(r.integers(0, 3))
    early = None
    if r.integers(2):  # (on val, every epoch: a run whose epochs lack it is refused by name)
        early = {"monitor": "val" if evaluate == 1 and r.integers(2) else "loss",
                 "patience": int(r.integers(1, 3)), "mode": ["min", "min", "max"][r.integers(3)],
                 "restore_best": bool(r.integers(2))}
    frozen = int(r.integers(3)) if r.integers(3) == 0 else None
    compile_ = bool(r.integers(5) == 0)
    dtype = [np.float32, np.float64][r.integers(2)]
    rule = _rule(r, dtype)
    return Spec(seed=seed, kind=kind, dtype=dtype,
                # (a BatchNorm given a batch of one sample of features is refused, as
                # PyTorch's: not where a batch, of this size or twice it, may hold one)
                batchnorm=bool(r.integers(2)) and (kind == "conv" or not _one_alone(
                    nobs, batchsize, partial)),
                dropout=[0.0, float(r.uniform(0.1, 0.5))][r.integers(2)],
                drop_rng=bool(r.integers(2)), tally=["", "state", "trained"][r.integers(3)],
                loss=LOSSES[r.integers(len(LOSSES))], delta=float(r.uniform(0.2, 2)),
                nobs=nobs, batchsize=batchsize, partial=partial, shuffle=bool(r.integers(2)),
                loader_seed=None if r.integers(3) == 0 else int(r.integers(1000)),
                rule=rule, frozen=frozen,
                thaw_at=int(r.integers(epochs * steps)) if frozen is not None and r.integers(2)
                else None,
                schedule=_schedule(r, epochs * steps) if "eta" in rule.names() else None,
                every=["step", "epoch"][r.integers(2)],
                evaluate=evaluate, early=early, ckpt_every=int(r.integers(1, 3)),
                ckpt_steps=None if r.integers(3) == 0 else int(r.integers(1, 4)), epochs=epochs,
                compile=compile_, kill=KILLS[r.integers(3 if compile_ else 4)],
                kill_at=float(r.uniform()), nan_at=float(r.uniform()),
                again_at=float(r.uniform()), saver_at=int(r.integers(5)))


# --- the model, the data, the loss ------------------------------------------------------------


class Tally:
    """A user's own layer, a plain class: a trainable ``scale``, and state its forward pass
    writes: ``running``, a running mean of its inputs (read by the output, so a resume that
    lost it would show), and ``calls``, a count of its calls (a 0-d array, written in
    place: a compiled step cannot write a Python number back)."""

    nontrainable = ("running", "calls")

    def __init__(self, n, dtype):
        self.scale = (1 + 0.1 * fl.init.default_rng().normal(size=n)).astype(dtype)
        self.running = np.zeros(n, dtype)
        self.calls = np.zeros((), np.int64)

    def __call__(self, x):
        self.running = 0.8 * self.running + 0.2 * fl.stop_gradient(np.mean(x, axis=0))
        self.calls += 1
        return x * self.scale + 0.5 * self.running


class TallyTrained(Tally):
    """Tally, its running mean trained too (the optimiser steps it; the forward pass sets
    it)."""

    nontrainable = ("calls",)


def build_model(spec: Spec, value_seed: int):
    """The model of ``spec``, its weights (and Dropout's own generator) drawn from
    ``value_seed``."""
    fl.seed(value_seed)
    rng = np.random.default_rng(value_seed + 5) if spec.drop_rng else None
    drop = [fl.Dropout(spec.dropout, rng=rng)] if spec.dropout else []
    kind = {"state": Tally, "trained": TallyTrained}.get(spec.tally)
    tally = [kind(4, spec.dtype)] if kind else []
    if spec.kind == "mlp":
        layers = [fl.Dense(3, 4, np.tanh), *([fl.BatchNorm(4)] if spec.batchnorm else []),
                  *tally, *drop, fl.Dense(4, 1)]
    elif spec.kind == "conv":
        layers = [fl.Conv((3, 3), 2, 3, fl.relu), *([fl.BatchNorm(3)] if spec.batchnorm else []),
                  *drop, fl.Flatten(), fl.Dense(12, 4), *tally, fl.Dense(4, 1)]
    else:
        layers = [fl.LSTM(2, 4), _last_step, *tally, *drop, fl.Dense(4, 1)]
    model = fl.Chain(*layers)
    if spec.dtype is np.float64:
        model = fl.f64(model)
    if spec.tally:  # (fl.f64 converts floats only: the count stays an int)
        assert next(x for x in model.layers if isinstance(x, Tally)).calls.dtype == np.int64
    return model


def make_data(spec: Spec, nan_obs: int | None = None):
    """``(x, y, w, xval, yval)``: ``w`` weighs each observation's prediction (all 1; NaN at
    ``nan_obs``)."""
    r = np.random.default_rng([spec.seed, 32])
    shape = {"mlp": (3,), "conv": (2, 4, 4), "lstm": (3, 2)}[spec.kind]
    x = r.normal(size=(spec.nobs, *shape)).astype(spec.dtype)
    y = r.normal(size=(spec.nobs, 1)).astype(spec.dtype)
    if spec.loss == "logitbce":
        y = (y > 0).astype(spec.dtype)
    w = np.ones((spec.nobs, 1), spec.dtype)
    if nan_obs is not None:
        w[nan_obs] = np.nan
    xv = r.normal(size=(5, *shape)).astype(spec.dtype)
    yv = (r.normal(size=(5, 1)) > 0).astype(spec.dtype)
    return x, y, w, xv, yv


def loss_of(spec: Spec, kill_call: int | None = None):
    """The case's loss ``(model, x, y, w)``; with ``kill_call``, its call of that number
    raises Killed after the forward pass (eager steps: one call a step)."""
    calls = [0]

    def loss(m, x, y, w):
        pred = m(x) * w
        calls[0] += 1
        if calls[0] == kill_call:
            raise Killed(f"killed in the loss at its call {kill_call}")
        if spec.loss == "mse":
            return fl.mse(pred, y)
        if spec.loss == "mae":
            return fl.mae(pred, y)
        if spec.loss == "huber":
            return fl.huber_loss(pred, y, delta=spec.delta)
        return fl.logitbinarycrossentropy(pred, y)

    return loss


def loader_for(spec, x, y, w):
    return fl.DataLoader((x, y, w), batchsize=spec.batchsize, shuffle=spec.shuffle,
                         partial=spec.partial, rng=spec.loader_seed)


# --- callbacks --------------------------------------------------------------------------------


class Thaw(fl.Callback):
    def __init__(self, at):
        self.at = at

    def on_step_begin(self, run):
        if run.step == self.at:
            fl.thaw(run.state)


class Snapshots(fl.Callback):
    """The model and optimiser state at each step's beginning, after the callbacks before
    this one (a schedule sets the step's learning rate, Thaw its flags): a step that fails
    leaves them so."""

    def __init__(self):
        self.states = []

    def on_step_begin(self, run):
        self.states.append((_copy(flat_state(run.model)), _copy(flat_state(run.state)),
                            _rules(run.state)))


class Kill(fl.Callback):
    """Stops (``run.stop``) after global step ``at``, or raises before it, or at the end of
    its epoch (after the callbacks before this one)."""

    def __init__(self, how, at):
        self.how, self.at = how, at

    def on_epoch_end(self, run):
        if self.how == "epoch_end" and run.step >= self.at:
            raise Killed(f"killed by a callback at the end of epoch {run.epoch}")

    def on_step_begin(self, run):
        if self.how == "callback" and run.step + 1 == self.at:
            raise Killed(f"killed by a callback before step {self.at}")

    def on_step_end(self, run):
        if self.how == "stop" and run.step == self.at:
            run.stop = True


def _copy(flat):
    return {k: np.array(v, copy=True) for k, v in flat.items()}


def _rules(state):
    return tuple((repr(leaf.rule), leaf.frozen) for leaf in _leaves(state))


def callbacks_for(spec, model, xv, yv, folder, extra=()):
    """Fresh callbacks of the case: ``(list, early stopping, saver)``."""
    def val(m):
        return float(fl.mse(m(xv), yv))

    cbs = [Thaw(spec.thaw_at)] if spec.thaw_at is not None else []
    if spec.schedule is not None:
        cbs.append(fl.LRSchedule(spec.schedule, every=spec.every))
    if spec.evaluate:
        cbs.append(fl.Evaluate(val, every=spec.evaluate))
    early = fl.EarlyStopping(**spec.early) if spec.early is not None else None
    if early is not None:
        cbs.append(early)
    saver = fl.SaveCheckpoint(os.path.join(folder, "ckpt-{epoch}-{step}.st"),
                              every=spec.ckpt_every, rngs=rngs_of(model), steps=spec.ckpt_steps)
    cbs.insert(min(spec.saver_at, len(cbs)), saver)
    return [*cbs, *extra], early, saver


# --- the runs ---------------------------------------------------------------------------------


def _setup(spec, model):
    state = fl.setup(spec.rule, model)
    if spec.frozen is not None:
        parts = [s for s in state.layers if _leaves(s)]
        fl.freeze(parts[spec.frozen % len(parts)])
    return state


def outcome(spec, model, state, loader, history, early):
    rngs = {"default": fl.init.default_rng(), **rngs_of(model, loader)}
    return {"model": flat_state(model), "state": flat_state(state), "rules": _rules(state),
            "losses": list(history.losses), "kept": history.kept,
            "rows": [{k: v for k, v in r.items() if k not in ("time", "samples_per_second")}
                     for r in history.epochs],
            "early": None if early is None else (early.best, early.best_epoch, early.wait,
                                                 early.stopped_epoch),
            "rngs": {k: g.bit_generator.state for k, g in rngs.items()}}


def straight(spec, folder, kill=None, nan_obs=None, kill_call=None, parts=None):
    """A run from the start: ``(outcome or the exception, saver, snapshots, model, state)``;
    ``parts`` (a dict) gets its loader and history."""
    os.makedirs(folder, exist_ok=True)
    x, y, w, xv, yv = make_data(spec, nan_obs)
    model = build_model(spec, spec.seed)
    loader = loader_for(spec, x, y, w)
    state = _setup(spec, model)
    snaps = Snapshots()
    cbs, early, saver = callbacks_for(spec, model, xv, yv, folder,
                                      [snaps] + ([kill] if kill else []))
    history = fl.History()
    if parts is not None:
        parts.update(loader=loader, history=history)
    try:
        history = fl.train(loss_of(spec, kill_call), model, loader, state, epochs=spec.epochs,
                           callbacks=cbs, progress=False, compile=spec.compile,
                           history=history)
    except (Killed, fl.TrainingError) as err:
        return err, saver, snaps, model, state
    return outcome(spec, model, state, loader, history, early), saver, snaps, model, state


def resumed(spec, path, folder, kill=None, batchsize=None):
    """The run resumed from ``path`` in a setup built anew from other random numbers (its
    loader cutting batches of ``batchsize``, if given): ``(outcome or Killed, saver)``; the
    outcome's ``restarted``: the warnings that an epoch starts again from its first batch."""
    os.makedirs(folder, exist_ok=True)
    x, y, w, xv, yv = make_data(spec)
    model = build_model(spec, spec.seed + 1000)
    loader = loader_for(spec if batchsize is None else
                        dataclasses.replace(spec, batchsize=batchsize), x, y, w)
    state = _setup(spec, model)
    cbs, early, saver = callbacks_for(spec, model, xv, yv, folder, [kill] if kill else [])
    info = fl.load_checkpoint(path, model, state, rngs=rngs_of(model, loader))
    history = fl.History.from_dict(info.extra["history"])
    same(info.step, history.step, f"{path}: the step saved and the history's")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            history = fl.train(loss_of(spec), model, loader, info.opt_state,
                               epochs=spec.epochs - history.epoch, callbacks=cbs,
                               progress=False, history=history, compile=spec.compile)
    except Killed as err:
        return err, saver
    restarted = [w for w in caught if "starts again from its first batch" in str(w.message)]
    return {**outcome(spec, model, info.opt_state, loader, history, early),
            "restarted": restarted}, saver


def same_checkpoints(mine, theirs, what):
    """Each checkpoint a resumed run wrote holds what the uninterrupted run's of that name
    does: the tensors bit for bit, the step, generators, frozen flags and extra (the
    history's times aside)."""
    from fluxml.io import safetensors as ours

    for path in mine:
        other = os.path.join(theirs, os.path.basename(str(path)))
        (a, ma), (b, mb) = ours.read(str(path)), ours.read(other)
        same(sorted(a), sorted(b), f"{what}: {os.path.basename(other)}: the tensors' names")
        same_arrays(a, b, f"{what}: {os.path.basename(other)}")
        for key in ("fluxml.step", "fluxml.rngs", "fluxml.frozen", "fluxml.keys"):
            same(ma.get(key), mb.get(key), f"{what}: {os.path.basename(other)}: {key}")
        same(_timeless(ma["fluxml.extra"]), _timeless(mb["fluxml.extra"]),
             f"{what}: {os.path.basename(other)}: the extra")


def _timeless(extra):
    extra = json.loads(extra)
    for row in extra.get("history", {}).get("epochs", []):
        for k in ("time", "samples_per_second"):
            row.pop(k, None)
    return extra


def compare(a, b, what):
    same(a["losses"], b["losses"], f"{what}: the step losses")
    same(a["rows"], b["rows"], f"{what}: the epoch rows")
    same_arrays(a["model"], b["model"], f"{what}: the model")
    same_arrays(a["state"], b["state"], f"{what}: the optimiser state")
    same(a["rules"], b["rules"], f"{what}: the rules and frozen flags")
    same(sorted(a["kept"]), sorted(b["kept"]), f"{what}: the history's kept names")
    for k in a["kept"]:
        same(a["kept"][k]["epoch"], b["kept"][k]["epoch"], f"{what}: {k}: the kept epoch")
        same_arrays(a["kept"][k]["weights"], b["kept"][k]["weights"], f"{what}: {k} kept")
    same(a["early"], b["early"], f"{what}: EarlyStopping's (best, epoch, wait, stopped)")
    same(a["rngs"], b["rngs"], f"{what}: the generators' states")


def _epoch_steps(spec):
    return spec.nobs // spec.batchsize + (1 if spec.partial and spec.nobs % spec.batchsize
                                          else 0)


def _epoch_step(path):
    """``(epoch, step)`` of a checkpoint named ``ckpt-{epoch}-{step}.st``."""
    epoch, step = (int(v) for v in os.path.basename(str(path))[5:-3].split("-"))
    return epoch, step


def usable(spec, saved, kill, at) -> list:
    """The checkpoints of the killed run that the uninterrupted run would have written too:
    all, but for the one of an epoch a stop cut short (the stop ends that epoch)."""
    cut = kill == "stop" and at % _epoch_steps(spec) != 0
    return [str(p) for p in saved if not (cut and _epoch_step(p)[1] == at)]


def check_kill(spec, base, folder, log):
    """Kill a run at a random step, resume from its last checkpoint of a whole epoch."""
    total = len(base["losses"])
    at = 1 + int(spec.kill_at * total)  # the step killed (1-based)
    sub = os.path.join(folder, "killed")
    kill = Kill(spec.kill, at)
    parts = {}
    got, saver, snaps, model, state = straight(
        spec, sub, kill=kill if spec.kill != "loss" else None,
        kill_call=at if spec.kill == "loss" else None, parts=parts)
    log(f"killed ({spec.kill}) at step {at} of {total}: "
        f"{got if isinstance(got, Exception) else 'stopped'}")
    if spec.kill == "stop":
        same(isinstance(got, dict), True, "a run stopped by run.stop returns")
        assert isinstance(got, dict)
        same(got["losses"], base["losses"][:at], "the stopped run's losses")
    else:
        same(type(got), Killed, f"the run killed at step {at}")
        if spec.kill == "loss":  # the step that failed changed no parameter or state
            check_plain(model, "the model after a loss that raised")
            before = snaps.states[at - 1]
            same_arrays(flat_state(model), before[0], f"the model after step {at} raised")
            same_arrays(flat_state(state), before[1],
                        f"the optimiser state after step {at} raised")
    paths = usable(spec, saver.saved, spec.kill, at)
    if spec.kill != "stop":  # (a stop ends its epoch)
        check_continued(spec, model, state, parts, log)
    if not paths:
        log("no checkpoint before the kill")
        return 0
    check_fewer_batches(spec, paths[-1], os.path.join(folder, "fewer"), log)
    resumes = 0
    picks = {paths[-1], paths[int(spec.kill_at * 977) % len(paths)]}  # the last, and another
    for path in sorted(picks):
        check_peer(path)
        where = os.path.join(folder, "resumed", os.path.basename(path))
        again, saver = resumed(spec, path, where)
        same(again["restarted"], [], f"resumed from {os.path.basename(path)}: a restart")
        compare(base, again, f"resumed from {os.path.basename(path)} after a kill at step {at}")
        same_checkpoints(saver.saved, os.path.join(folder, "straight"),
                         f"resumed from {os.path.basename(path)}")
        log(f"resumed from {os.path.basename(path)}: equal, and its {len(saver.saved)} "
            f"checkpoints")
        resumes += 1
    return resumes + kill_again(spec, base, paths[-1], folder, log)


def kill_again(spec, base, path, folder, log) -> int:
    """The run resumed from ``path`` killed again (``callback`` at a later step), resumed
    from its own last checkpoint: still the uninterrupted run."""
    start = _epoch_step(path)[1]
    total = len(base["losses"])
    if start >= total:
        return 0
    at = start + 1 + int(spec.again_at * (total - start))
    got, saver = resumed(spec, path, os.path.join(folder, "again"), Kill("callback", at))
    same(type(got), Killed, f"the resumed run killed again at step {at}")
    paths = [str(p) for p in saver.saved]
    if not paths:
        return 0
    again, _ = resumed(spec, paths[-1], os.path.join(folder, "again-resumed"))
    compare(base, again, f"resumed from {os.path.basename(path)}, killed at step {at}, "
            f"resumed from {os.path.basename(paths[-1])}")
    log(f"killed again at step {at}, resumed from {os.path.basename(paths[-1])}: equal")
    return 1


def check_plain(model, what):
    """Every array of ``model`` a plain NumPy array or number (no tracer left behind)."""
    for path, x in fl.tree.leaves_with_paths(model):
        if not isinstance(x, (np.ndarray, np.generic, int, float)):
            raise AssertionError(f"{what}: {path} holds a {type(x).__name__}")


def twin_batches(spec, loader, epochs):
    """The observation indices of each step's batch, from a twin of ``loader`` (its
    generator's state copied before the run)."""
    twin = fl.DataLoader(np.arange(spec.nobs), batchsize=spec.batchsize, shuffle=spec.shuffle,
                         partial=spec.partial,
                         rng=np.random.Generator(type(loader.rng.bit_generator)()))
    twin.rng.bit_generator.state = loader.rng.bit_generator.state
    return [list(b) for _ in range(epochs) for b in twin]


def check_nan(spec, base, snaps, folder, log):
    """A NaN in one observation's weight: a TrainingError naming the step whose batch holds
    it; the model and optimiser state as the step before left them."""
    x, y, w, _, _ = make_data(spec)
    build_model(spec, spec.seed)
    batches = twin_batches(spec, loader_for(spec, x, y, w), spec.epochs)
    batches = batches[:len(base["losses"])]  # (EarlyStopping may have ended the run)
    at = 1 + int(spec.nan_at * len(batches))
    obs = int(batches[at - 1][int(spec.nan_at * 1000) % len(batches[at - 1])])
    at = next(i for i, b in enumerate(batches, 1) if obs in b)  # (its first batch)
    with np.errstate(invalid="ignore"):  # (NumPy's warning of the NaN, before the error)
        got, _, _, model, state = straight(spec, os.path.join(folder, "nan"), nan_obs=obs)
    log(f"NaN in observation {obs}, in the batch of step {at}: {str(got)[:90]}")
    same(type(got), fl.TrainingError, f"a NaN in the batch of step {at}")
    epoch, batch = divmod(at - 1, _epoch_steps(spec))
    where = f"step {at} (epoch {epoch + 1}, batch {batch + 1})"
    same(where in str(got), True, f"the TrainingError names {where}: {got}")
    check_plain(model, "the model after a NaN")
    before = snaps.states[at - 1]
    same_arrays(flat_state(model), before[0], f"the model after the NaN of step {at}")
    same_arrays(flat_state(state), before[1], f"the optimiser state after the NaN of step {at}")
    same(_rules(state), before[2], f"the rules after the NaN of step {at}")


def check_rows(spec, run):
    """Each epoch row's step and mean loss, from the step losses (summed in order)."""
    per, losses = _epoch_steps(spec), run["losses"]
    for i, row in enumerate(run["rows"]):
        steps = losses[i * per:(i + 1) * per]
        total = 0.0
        for v in steps:
            total += v
        same((row["step"], row["loss"]), (i * per + len(steps), total / len(steps)),
             f"epoch {i + 1}'s row: (step, mean loss)")


def check_peer(path):
    """The checkpoint read by the safetensors package holds the tensors fluxml reads."""
    try:
        from safetensors.numpy import load_file
    except ImportError:
        return
    from fluxml.io import safetensors as ours

    theirs, (mine, _) = load_file(path), ours.read(path)
    same(sorted(theirs), sorted(mine), f"{path}: the tensors safetensors reads")
    same_arrays(theirs, mine, f"{path}: read by safetensors")


# --- one case ---------------------------------------------------------------------------------


def run_case(seed: int, folder: str, log=lambda line: None) -> int:
    """Check one case; returns the number of resumes compared."""
    spec = draw(seed)
    log(repr(spec))
    sub = os.path.join(folder, f"case-{seed}")
    base, saver, snaps, _, _ = straight(spec, os.path.join(sub, "straight"))
    if isinstance(base, Exception):
        raise base
    log(f"uninterrupted: {len(base['losses'])} steps, {len(base['rows'])} epochs, "
        f"checkpoints {[os.path.basename(str(p)) for p in saver.saved]}")
    check_rows(spec, base)
    for p in saver.saved:
        check_peer(str(p))
    check_nan(spec, base, snaps, sub, log)
    return check_kill(spec, base, sub, log)


def _shown(seed, err) -> str:
    last = traceback.extract_tb(err.__traceback__)[-1]
    spec = draw(seed)
    return (f"case {seed} ({spec.kind}, compile={spec.compile}, kill={spec.kill}): "
            f"{type(err).__name__}: {str(err)[:300]} "
            f"({os.path.basename(last.filename)}:{last.lineno})")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("cases", type=int, nargs="?", default=100)
    p.add_argument("seed", type=int, nargs="?", default=0, help="the first case's seed")
    p.add_argument("--case", type=int, help="run this one case, verbose")
    args = p.parse_args(argv)
    if args.case is not None:
        with tempfile.TemporaryDirectory() as folder:
            run_case(args.case, folder, log=print)
        print("clean")
        return 0
    failures, resumes = run_seeds(run_case, range(args.seed, args.seed + args.cases), _shown)
    print(f"{args.cases - failures} clean, {failures} failed ({resumes} resumes compared)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
