"""A seeded fuzzer of training runs: ``fl.train`` with random models, optimisers, schedules,
callbacks and data, against an uninterrupted run, a run resumed from a checkpoint, and a
loop written by hand.

Each case draws a small model (Dense with BatchNorm, LayerNorm and Dropout; a Conv; an
LSTM) in float32 or float64, data of a random size cut into batches of a random size
(a partial last batch, or dropped), shuffled or not (the loader's generator from a seed or
from fluxml's default one), a random rule or ``OptimiserChain`` (clipping, weight decay,
``AccumGrad``), a learning-rate schedule (``StepDecay``, ``ExpDecay``, ``CosineAnneal``,
``OneCycle``, per step or per epoch), ``Evaluate`` (every one or two epochs),
``EarlyStopping`` (either metric, either mode, a ``min_delta``, ``restore_best``),
``SaveCheckpoint`` every one or two epochs (Dropout's own generator among its ``rngs``),
eager or compiled steps, and events at given steps (freeze a part, thaw
everything, ``fl.adjust`` a hyperparameter of a part). Then it checks:

- RESUME: the run resumed from each of ``SaveCheckpoint``'s files (and from one
  ``fl.save_checkpoint`` wrote after a shorter ``fl.train``), loaded into models,
  loaders and optimiser states built anew with other random numbers (as after a crash),
  with fresh callbacks, ends bit for bit as the uninterrupted run: parameters, running
  statistics, optimiser state (hyperparameters and frozen flags too), the history (its
  times aside), the generators, what every callback hook saw (epoch, step, loss, each
  Leaf's rule), and EarlyStopping's verdict and restored best weights (the history keeps
  them, even of a best epoch before the resume); and from one of them rewritten without
  those weights (as a fluxml before ``History.kept`` wrote it), the same but for the model
  where the best epoch came before the resume: a warning, and the last epoch's weights;
- REFERENCE: a loop written here (``fl.withgradient`` and ``fl.update`` over batches cut
  here, the schedules' formulas, the early-stopping rule, restoring the best weights)
  gives the same parameters, losses, epoch rows and stopping epoch (bit for bit; to
  rounding where the case trains with ``compile=True``);
- SCHEDULES: the learning rate each step used is the schedule's documented value.

The suite runs a few seeds (tests/training/test_fuzz_runs.py); by hand:

    PYTHONPATH=src python tests/training/fuzz_runs.py --cases 300
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import tempfile
import warnings

import numpy as np

import fluxml as fl
from fluxml.io.modelstate import flat_state
from fluxml.optimise.interface import _leaves

# --- one case's configuration -----------------------------------------------------------------


@dataclasses.dataclass
class Spec:
    seed: int
    kind: str  # "mlp", "conv" or "lstm"
    dtype: type
    norm: str  # "batchnorm", "layernorm" or ""
    dropout: float
    drop_rng: bool  # Dropout with a generator of its own (saved through SaveCheckpoint's rngs)
    nobs: int
    batchsize: int
    partial: bool
    shuffle: bool
    loader_seed: int | None  # None: drawn from fluxml's default generator
    rule: fl.Rule
    schedule: object  # a schedule, or None
    every: str  # the schedule's "step" or "epoch"
    evaluate: int  # Evaluate's every (0: none)
    eval_dict: bool  # its function returns {"val": ...}, not a number
    early: dict | None  # EarlyStopping's arguments
    ckpt_every: int
    events: list  # [(step, action, part index, name, value)]
    epochs: int
    compile: bool  # fl.train(..., compile=True)


STEPPING = (fl.Descent, fl.Momentum, fl.Nesterov, fl.RMSProp, fl.AdaGrad, fl.Adam, fl.AdamW,
            fl.NAdam, fl.AdaMax, fl.AMSGrad, fl.Lion, fl.AdaBelief, fl.RAdam, fl.OAdam)
BEFORE = (fl.ClipGrad, fl.ClipNorm, fl.WeightDecay, fl.SignDecay, fl.AccumGrad)
ADJUSTABLE = ("eta", "lambd", "omega", "delta", "rho", "beta")


def _rule(r):
    kind = STEPPING[r.integers(len(STEPPING))]
    eta = float(10 ** r.uniform(-3, -1.5))
    step = kind(eta) if kind is not fl.AdamW else fl.AdamW(eta, lambd=float(r.uniform(0, 0.01)))
    if r.integers(2):
        return step
    parts = []
    for _ in range(int(r.integers(1, 3))):
        b = BEFORE[r.integers(len(BEFORE))]
        parts.append(b(int(r.integers(1, 4))) if b is fl.AccumGrad else
                     b(float(r.uniform(0.01, 2.0))))
    return fl.OptimiserChain(*parts, step)


def _schedule(r, epochs, steps_per_epoch):
    eta = float(10 ** r.uniform(-3, -1.5))
    kind = r.integers(5)
    total = max(2, epochs * steps_per_epoch)
    if kind == 0:
        return None
    if kind == 1:
        return fl.StepDecay(eta, float(r.uniform(0.3, 0.9)), step=int(r.integers(1, 5)))
    if kind == 2:
        return fl.ExpDecay(eta, float(r.uniform(0.8, 0.99)))
    if kind == 3:
        return fl.CosineAnneal(eta, end=float(eta * r.uniform(0, 0.2)),
                               period=int(r.integers(1, total + 1)), warmup=int(r.integers(0, 4)))
    return fl.OneCycle(eta, total=int(r.integers(2, total + 2)),
                       pct_start=float(r.uniform(0.1, 0.9)), div=float(r.uniform(2, 30)),
                       final_div=float(r.uniform(2, 1e3)))


def sizes(r, nobs: int, batchsize: int, epochs: tuple[int, int]):
    """``(kind, nobs, batchsize, partial, epochs, steps an epoch)`` drawn from ``r``: fewer
    than ``nobs`` observations in batches of fewer than ``batchsize``, ``epochs`` a range."""
    kind = ["mlp", "mlp", "conv", "lstm"][r.integers(4)]
    nobs = int(r.integers(2, nobs))
    batchsize = int(r.integers(1, batchsize))
    partial = bool(r.integers(3))
    if not partial and batchsize > nobs:
        batchsize = nobs
    epochs = int(r.integers(*epochs))
    steps = nobs // batchsize + (1 if partial and nobs % batchsize else 0)
    return kind, nobs, batchsize, partial, epochs, steps


def rows_for_batchnorm(spec):
    """``spec`` with batches of two rows at least where a Dense's output goes through
    BatchNorm in training (one value per channel is refused, as PyTorch refuses it): a
    larger batch size, else (a last batch of one row) no partial batch."""
    batchsize, partial = max(spec.batchsize, 2), spec.partial
    if partial and spec.nobs % batchsize == 1:
        partial = False
    return dataclasses.replace(spec, batchsize=batchsize, partial=partial)


def draw(seed: int) -> Spec:
    r = np.random.default_rng([seed, 11])
    kind, nobs, batchsize, partial, epochs, steps = sizes(r, 20, 9, (2, 6))
    evaluate = int(r.integers(0, 3))
    early = None
    if r.integers(2):
        early = {"monitor": "val" if evaluate and r.integers(2) else "loss",
                 "patience": int(r.integers(1, 4)), "mode": ["min", "min", "max"][r.integers(3)],
                 "min_delta": [0.0, float(10 ** r.uniform(-4, -1))][r.integers(2)],
                 "restore_best": bool(r.integers(2))}
    events = []
    for _ in range(int(r.integers(0, 4))):
        events.append((int(r.integers(0, epochs * steps)),
                       ["freeze", "thaw", "adjust", "adjust"][r.integers(4)],
                       int(r.integers(100)), ADJUSTABLE[r.integers(len(ADJUSTABLE))],
                       float(r.uniform(0.2, 2.0))))
    schedule = _schedule(r, epochs, steps)
    spec = Spec(seed=seed, kind=kind, dtype=[np.float32, np.float64][r.integers(2)],
                norm=["", "batchnorm", "layernorm"][r.integers(3)],
                dropout=[0.0, float(r.uniform(0.1, 0.6))][r.integers(2)],
                drop_rng=bool(r.integers(2)), nobs=nobs,
                batchsize=batchsize, partial=partial, shuffle=bool(r.integers(2)),
                loader_seed=None if r.integers(3) == 0 else int(r.integers(1000)),
                rule=_rule(r), schedule=schedule, every=["step", "epoch"][r.integers(2)],
                evaluate=evaluate, eval_dict=bool(r.integers(2)), early=early,
                ckpt_every=int(r.integers(1, 3)),
                events=events, epochs=epochs, compile=bool(r.integers(6) == 0))
    return rows_for_batchnorm(spec) if spec.kind == "mlp" and spec.norm == "batchnorm" else spec


# --- models and data --------------------------------------------------------------------------


def _last_step(x):
    return x[:, -1, :]


def build_model(spec: Spec, value_seed: int):
    """The model of ``spec``, its weights drawn after ``fl.seed(value_seed)``."""
    fl.seed(value_seed)
    rng = np.random.default_rng(value_seed + 5) if spec.drop_rng else None
    drop = [fl.Dropout(spec.dropout, rng=rng)] if spec.dropout else []
    if spec.kind == "mlp":
        norm = {"batchnorm": [fl.BatchNorm(4)], "layernorm": [fl.LayerNorm(4)], "": []}
        layers = [fl.Dense(3, 4, np.tanh), *norm[spec.norm], *drop, fl.Dense(4, 1)]
    elif spec.kind == "conv":
        norm = {"batchnorm": [fl.BatchNorm(3)], "layernorm": [], "": []}
        layers = [fl.Conv((3, 3), 2, 3, fl.relu), *norm[spec.norm], *drop, fl.Flatten(),
                  fl.Dense(12, 1)]
    else:
        layers = [fl.LSTM(2, 3), _last_step, *drop, fl.Dense(3, 1)]
    model = fl.Chain(*layers)
    return fl.f64(model) if spec.dtype is np.float64 else model


def rngs_of(model, loader=None) -> dict:
    """The generators a checkpoint of the case keeps besides fluxml's default one."""
    out = {} if loader is None else {"data": loader.rng}
    for layer in model.layers:
        if isinstance(layer, fl.Dropout) and layer.rng is not None:
            out["drop"] = layer.rng
    return out


def make_data(spec: Spec):
    """``(x, y, xval, yval)`` of the case, the same in every run."""
    r = np.random.default_rng([spec.seed, 22])
    shape = {"mlp": (3,), "conv": (2, 4, 4), "lstm": (3, 2)}[spec.kind]
    x = r.normal(size=(spec.nobs, *shape)).astype(spec.dtype)
    y = r.normal(size=(spec.nobs, 1)).astype(spec.dtype)
    xv = r.normal(size=(5, *shape)).astype(spec.dtype)
    yv = r.normal(size=(5, 1)).astype(spec.dtype)
    return x, y, xv, yv


def mse(m, x, y):
    return np.mean((m(x) - y) ** 2)


def parts_of(state):
    """Every part of an optimiser state (Leafs, Nodes, containers) once, in a fixed order."""
    out, stack = [], [state]
    while stack:
        t = stack.pop()
        if t is None or any(t is o for o in out):
            continue
        out.append(t)
        if isinstance(t, fl.optimise.Node):
            stack.extend(getattr(t, k) for k in reversed(t._fields))
        elif isinstance(t, dict):
            stack.extend(reversed(list(t.values())))
        elif isinstance(t, (list, tuple)):
            stack.extend(reversed(t))
    return out


def apply_event(state, event, schedule) -> None:
    """One event on the optimiser state (the same in fl.train's runs and the hand loop)."""
    _, action, index, name, factor = event
    parts = parts_of(state)
    part = parts[index % len(parts)]
    if action == "freeze":
        fl.freeze(part)
    elif action == "thaw":
        fl.thaw(state)
    else:
        names = set().union(*(leaf.rule.names() for leaf in _leaves(part)))
        if name not in names or (name == "eta" and schedule is not None):
            return  # (a schedule sets eta before every step)
        rule = next(leaf.rule for leaf in _leaves(part) if name in leaf.rule.names())
        old = _find(rule, name)
        value = tuple(min(0.999, b ** factor) for b in old) if name == "beta" else \
            float(min(old * factor, 0.95)) if name == "rho" else float(old * factor)
        fl.adjust(part, **{name: value})


def _find(rule, name):
    for r in getattr(rule, "rules", (rule,)):
        if name in r.names():
            return getattr(r, name)
    raise KeyError(name)


# --- callbacks of the runs --------------------------------------------------------------------


class Events(fl.Callback):
    """Applies the case's events before the step they name (global steps from 0)."""

    def __init__(self, spec):
        self.spec = spec

    def on_step_begin(self, run):
        for event in self.spec.events:
            if event[0] == run.step:
                apply_event(run.state, event, self.spec.schedule)


def rules_of(state):
    return tuple((repr(leaf.rule), leaf.frozen) for leaf in _leaves(state))


def _row(row):
    return {k: v for k, v in row.items() if k not in ("time", "samples_per_second")}


class Recorder(fl.Callback):
    """What each hook saw: epoch, step, the loss, each Leaf's rule and frozen flag."""

    def __init__(self):
        self.seen = []
        self.last = None  # the model at the last epoch's end (before a restore_best)

    def on_train_begin(self, run):
        self.seen.append(("train_begin", run.epoch, run.step))

    def on_epoch_begin(self, run):
        self.seen.append(("epoch_begin", run.epoch, run.step))

    def on_step_begin(self, run):
        self.seen.append(("step_begin", run.epoch, run.step, rules_of(run.state)))

    def on_step_end(self, run):
        self.seen.append(("step_end", run.epoch, run.step, run.loss, run.history.step))

    def on_epoch_end(self, run):
        self.seen.append(("epoch_end", run.epoch, run.step, _row(run.history.epochs[-1])))
        self.last = {k: v.copy() for k, v in flat_state(run.model).items()}

    def on_train_end(self, run):
        self.seen.append(("train_end", run.epoch, run.step))


def callbacks_for(spec, model, xv, yv, folder):
    """Fresh callbacks of the case: ``(list, recorder, early stopping, checkpoint saver)``."""
    def val(m):
        return float(mse(m, xv, yv))

    def metrics(m):
        return {"val": val(m)}

    cbs, early = [Events(spec)], None
    if spec.schedule is not None:
        cbs.append(fl.LRSchedule(spec.schedule, every=spec.every))
    if spec.evaluate:
        cbs.append(fl.Evaluate(metrics if spec.eval_dict else val, every=spec.evaluate))
    if spec.early is not None:
        early = fl.EarlyStopping(**spec.early)
        cbs.append(early)
    saver = fl.SaveCheckpoint(os.path.join(folder, "ckpt-{epoch}-{step}.st"),
                              every=spec.ckpt_every, rngs=rngs_of(model))
    recorder = Recorder()
    cbs += [recorder, saver]  # (fl.train runs SaveCheckpoint last either way)
    return cbs, recorder, early, saver


def loader_for(spec, x, y):
    return fl.DataLoader((x, y), batchsize=spec.batchsize, shuffle=spec.shuffle,
                         partial=spec.partial, rng=spec.loader_seed)


# --- comparisons ------------------------------------------------------------------------------


def same_arrays(a, b, what):
    """Two flat states equal bit for bit, dtypes too."""
    if a.keys() != b.keys():
        raise AssertionError(f"{what}: names differ: {sorted(a.keys() ^ b.keys())}")
    for k in a:
        x, y = np.asarray(a[k]), np.asarray(b[k])
        if x.dtype != y.dtype or x.shape != y.shape or \
                np.ascontiguousarray(x).tobytes() != np.ascontiguousarray(y).tobytes():
            raise AssertionError(f"{what}: {k}: {x.dtype}{x.shape} {x} != {y.dtype}{y.shape} {y}")


def close(a, b, tol, what):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or not np.allclose(a, b, rtol=tol, atol=tol):
        raise AssertionError(f"{what}: {a} != {b} (to {tol})")


def same(a, b, what):
    if a != b:
        raise AssertionError(f"{what}: {a!r} != {b!r}")


def _same_records(a, b, what):
    for i, (p, q) in enumerate(zip(a, b)):
        if p != q:
            raise AssertionError(f"{what}: hook call {i}: {p!r} != {q!r}")
    same(len(a), len(b), f"{what}: the number of hook calls")


def early_facts(early):
    if early is None:
        return None
    return (early.best, early.best_epoch, early.wait, early.stopped_epoch)


# --- the runs ---------------------------------------------------------------------------------


def straight(spec, folder):
    """The uninterrupted run, saving checkpoints as it goes."""
    x, y, xv, yv = make_data(spec)
    model = build_model(spec, spec.seed)
    loader = loader_for(spec, x, y)
    state = fl.setup(spec.rule, model)
    cbs, recorder, early, saver = callbacks_for(spec, model, xv, yv, folder)
    history = fl.train(mse, model, loader, state, epochs=spec.epochs, callbacks=cbs,
                       progress=False, compile=spec.compile)
    return {"model": flat_state(model), "state": flat_state(state), "rules": rules_of(state),
            "history": history, "seen": recorder.seen, "early": early_facts(early),
            "rngs": _rng_states(model, loader), "saved": list(saver.saved),
            "last": recorder.last}


def resumed(spec, path, folder):
    """A run resumed from the checkpoint ``path`` in a setup built anew."""
    x, y, xv, yv = make_data(spec)
    model = build_model(spec, spec.seed + 1000)  # other weights, other generators
    loader = loader_for(spec, x, y)
    state = fl.setup(spec.rule, model)
    os.makedirs(folder, exist_ok=True)
    cbs, recorder, early, _ = callbacks_for(spec, model, xv, yv, folder)
    info = fl.load_checkpoint(path, model, state, rngs=rngs_of(model, loader))
    history = fl.History.from_dict(info.extra["history"])
    same(info.step, history.step, f"seed {spec.seed}: {path}: the step saved")
    same(info.extra["epoch"], history.epoch, f"seed {spec.seed}: {path}: the epoch saved")
    epochs = spec.epochs - history.epoch
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = fl.train(mse, model, loader, info.opt_state, epochs=epochs, callbacks=cbs,
                           progress=False, history=history, compile=spec.compile)
    # a best epoch before the resume, from a checkpoint without its weights: a warning, and
    # the model keeps the last epoch's
    lost = [w for w in caught if "came before this run resumed" in str(w.message)]
    return {"lost_best": bool(lost), "model": flat_state(model),
            "state": flat_state(info.opt_state), "rules": rules_of(info.opt_state),
            "history": history, "seen": recorder.seen, "early": early_facts(early),
            "rngs": _rng_states(model, loader)}


def _rng_states(model, loader):
    rngs = {"default": fl.init.default_rng(), **rngs_of(model, loader)}
    return {k: g.bit_generator.state for k, g in rngs.items()}


def without_kept(spec, path, out):
    """The checkpoint ``path`` rewritten at ``out`` without the history's kept weights (as a
    fluxml before ``History.kept`` wrote it: plain JSON extra, no tensors of its own)."""
    x, y, _, _ = make_data(spec)
    model = build_model(spec, spec.seed + 2000)
    loader = loader_for(spec, x, y)
    rngs = rngs_of(model, loader)
    info = fl.load_checkpoint(path, model, fl.setup(spec.rule, model), rngs=rngs)
    history = {k: v for k, v in info.extra["history"].items() if k != "kept"}
    fl.save_checkpoint(out, model, info.opt_state, step=info.step, rngs=rngs,
                       extra={**info.extra, "history": history})
    return out


def _same_kept(a, b, what):
    same(sorted(a), sorted(b), f"{what}: the history's kept names")
    for k in a:
        same(a[k]["epoch"], b[k]["epoch"], f"{what}: {k}: the best epoch kept")
        same_arrays(a[k]["weights"], b[k]["weights"], f"{what}: {k}: the weights kept")


def compare_runs(a, b, what, after_epoch, old=False):
    """``b`` resumed after ``after_epoch`` ends as ``a``; ``old``: from a checkpoint without
    the history's kept weights, so a best epoch before the resume is lost (a warning)."""
    lost = b["lost_best"]
    if lost:  # then the uninterrupted run restored an epoch before the resume
        same(old, True, f"{what}: a warning of a lost best epoch, from a checkpoint that "
                        f"keeps the best weights")
        same(a["early"][1] <= after_epoch, True, f"{what}: a warning of a lost best epoch")
    same_arrays(a["last"] if lost else a["model"], b["model"], f"{what}: the model")
    if not old:
        _same_kept(a["history"].kept, b["history"].kept, what)
    same_arrays(a["state"], b["state"], f"{what}: the optimiser state")
    same(a["rules"], b["rules"], f"{what}: the rules and frozen flags")
    same(a["history"].losses, b["history"].losses, f"{what}: the step losses")
    same([_row(r) for r in a["history"].epochs], [_row(r) for r in b["history"].epochs],
         f"{what}: the epoch rows")
    same(a["early"], b["early"], f"{what}: EarlyStopping's (best, best_epoch, wait, stopped)")
    same(a["rngs"], b["rngs"], f"{what}: the generators' states")
    tail = [s for s in a["seen"] if s[0] != "train_begin" and s[1] > after_epoch]
    _same_records(tail, [s for s in b["seen"] if s[0] != "train_begin"],
                  f"{what}: the callbacks' view")


# --- the hand-written reference ---------------------------------------------------------------


def schedule_value(s, t):
    """The schedules' documented formulas, written out again."""
    if isinstance(s, fl.StepDecay):
        return s.start * s.decay ** (t // s.step)
    if isinstance(s, fl.ExpDecay):
        return s.start * s.decay ** t
    if isinstance(s, fl.CosineAnneal):
        if t < s.warmup:  # linear from start / warmup, reaching start at warmup - 1
            return s.start * (t + 1) / s.warmup
        k = min(t - s.warmup, s.period)
        return s.end + (s.start - s.end) * (1 + math.cos(math.pi * k / s.period)) / 2
    # OneCycle as PyTorch's OneCycleLR(anneal_strategy="cos", three_phase=False)
    initial, low = s.peak / s.div, s.peak / s.div / s.final_div
    up_end, down_end = s.pct_start * s.total - 1, s.total - 1
    if t <= up_end:
        pct = t / up_end if up_end > 0 else 1.0
        a, b = initial, s.peak
    else:
        pct = min((t - up_end) / (down_end - up_end), 1.0)
        a, b = s.peak, low
    return b + (a - b) * (math.cos(math.pi * pct) + 1) / 2


def scheduled(s, t):
    """The schedule's value at ``t``, checked against its formula (to rounding: the formula
    here groups its products otherwise); the loop uses the schedule's own number, so that it
    can match fl.train's bit for bit."""
    value, formula = float(s(t)), schedule_value(s, t)
    if not math.isclose(value, formula, rel_tol=1e-12, abs_tol=1e-300):
        raise AssertionError(f"{s}({t}) = {value}, its documented formula gives {formula}")
    return value


def batches_by_hand(spec, x, y, rng):
    if spec.shuffle:
        order = rng.permutation(spec.nobs)
    else:
        order = np.arange(spec.nobs)
    out = []
    for lo in range(0, spec.nobs, spec.batchsize):
        idx = order[lo:lo + spec.batchsize]
        if len(idx) < spec.batchsize and not spec.partial:
            break
        out.append((x[idx], y[idx]))
    return out


def _improved(value, best, mode, min_delta):
    if best is None or math.isnan(best):
        return not math.isnan(value)
    return value < best - min_delta if mode == "min" else value > best + min_delta


def by_hand(spec):
    """The run of ``spec`` as a plain loop: returns (model state, losses, epoch rows, stop)."""
    x, y, xv, yv = make_data(spec)
    model = build_model(spec, spec.seed)
    if spec.loader_seed is None:  # (the loader draws its seed from the default generator)
        rng = np.random.default_rng(fl.init.default_rng().integers(2**63))
    else:
        rng = np.random.default_rng(spec.loader_seed)
    state = fl.setup(spec.rule, model)
    losses, rows, etas = [], [], []
    best = best_epoch = saved = stopped = None
    wait = 0
    t = 0
    for epoch in range(1, spec.epochs + 1):
        if spec.schedule is not None and spec.every == "epoch":
            fl.adjust(state, eta=scheduled(spec.schedule, epoch - 1))
        total, steps = 0.0, 0
        for xb, yb in batches_by_hand(spec, x, y, rng):
            for event in spec.events:
                if event[0] == t:
                    apply_event(state, event, spec.schedule)
            if spec.schedule is not None and spec.every == "step":
                fl.adjust(state, eta=scheduled(spec.schedule, t))
            etas.append(rules_of(state))
            loss, (g,) = fl.withgradient(lambda m: mse(m, xb, yb), model)
            state, model = fl.update(state, model, g)
            losses.append(float(loss))
            total += float(loss)
            steps += 1
            t += 1
        row = {"epoch": epoch, "step": t, "loss": total / steps if steps else math.nan}
        if spec.schedule is not None:
            row["eta"] = scheduled(spec.schedule, t - 1 if spec.every == "step" else epoch - 1)
        if spec.evaluate and epoch % spec.evaluate == 0:
            row["val"] = float(mse(model, xv, yv))
        rows.append(row)
        e = spec.early
        if e is not None and e["monitor"] in row:
            value = float(row[e["monitor"]])
            if _improved(value, best, e["mode"], e["min_delta"]):
                best, best_epoch, wait = value, epoch, 0
                saved = {k: v.copy() for k, v in flat_state(model).items()}
            else:
                wait += 1
                if wait >= e["patience"]:
                    stopped = epoch
                    break
    if spec.early is not None and spec.early["restore_best"] and saved is not None and \
            best_epoch != len(rows):
        fl.loadmodel(model, saved)
    return flat_state(model), losses, rows, stopped, etas


def hooks_by_hand(losses, rows, etas):
    """What Recorder should see, from the loop by hand: each hook's epoch and step (counted
    from 1 and 0), the loss and history step at each step's end, the rules at its begin."""
    seen, t = [("train_begin", 0, 0)], 0
    for epoch, row in enumerate(rows, 1):
        seen.append(("epoch_begin", epoch, t))
        for _ in range(row["step"] - t):
            seen.append(("step_begin", epoch, t, etas[t]))
            t += 1
            seen.append(("step_end", epoch, t, losses[t - 1], t))
        seen.append(("epoch_end", epoch, t, row))
    seen.append(("train_end", len(rows), t))
    return seen


def compare_reference(spec, run):
    what = f"seed {spec.seed}: fl.train against the loop by hand"
    model, losses, rows, stopped, etas = by_hand(spec)
    ours = [_row(r) for r in run["history"].epochs]
    ours = [{k: r[k] for k in rows[i]} for i, r in enumerate(ours[:len(rows)])] + ours[len(rows):]
    if spec.compile:  # generated code: the same numbers to rounding (the hand loop is eager)
        tol = 1e-4 if spec.dtype is np.float32 else 1e-9
        close(run["history"].losses, losses, tol, f"{what}: the step losses")
        same(len(ours), len(rows), f"{what}: the epochs run")
        for i, (a, b) in enumerate(zip(ours, rows)):
            same(a.keys(), b.keys(), f"{what}: epoch {i + 1}'s metrics")
            close(list(a.values()), list(b.values()), tol, f"{what}: epoch {i + 1}")
        for k in model:
            close(run["model"][k], model[k], tol, f"{what}: the model's {k}")
    else:
        same(run["history"].losses, losses, f"{what}: the step losses")
        same(ours, rows, f"{what}: epoch rows")
        same_arrays(run["model"], model, f"{what}: the model")
        _same_records(run["seen"], hooks_by_hand(losses, rows, etas),
                      f"{what}: the hooks' epoch, step, loss and rules")
    if spec.early is not None:
        same(run["early"][3], stopped, f"{what}: the epoch EarlyStopping stopped at")
    seen = [s[3] for s in run["seen"] if s[0] == "step_begin"]
    same(seen, etas, f"{what}: the rules at each step (learning rates)")


# --- one case ---------------------------------------------------------------------------------


def run_case(seed: int, folder: str) -> int:
    """Check one case; returns the number of resumes checked."""
    spec = draw(seed)
    sub = os.path.join(folder, f"case-{seed}")
    os.makedirs(sub, exist_ok=True)
    run = straight(spec, sub)
    compare_reference(spec, run)
    resumes = 0
    paths = [(int(os.path.basename(p).split("-")[1]), p) for p in run["saved"]]
    paths = [(e, p) for e, p in paths if e < run["history"].epoch]  # (else nothing to resume)
    for epoch, path in paths:
        again = resumed(spec, path, os.path.join(sub, f"resumed-{epoch}"))
        compare_runs(run, again, f"seed {seed}: resumed after epoch {epoch}", epoch)
        resumes += 1
    if paths and spec.early and spec.early["restore_best"]:
        epoch, path = paths[seed % len(paths)]
        old = without_kept(spec, path, os.path.join(sub, "old.st"))
        again = resumed(spec, old, os.path.join(sub, "resumed-old"))
        compare_runs(run, again, f"seed {seed}: resumed after epoch {epoch} from a checkpoint "
                     f"without the best weights", epoch, old=True)
        resumes += 1
    epochs = run["history"].epoch
    if epochs > 1 and not (spec.early and spec.early["restore_best"]):
        # (restore_best acts when a run ends: the first part's model would be another)
        epoch = 1 + seed % (epochs - 1)
        path = by_hand_checkpoint(spec, epoch, sub)
        if path is not None:
            again = resumed(spec, path, os.path.join(sub, "resumed-by-hand"))
            compare_runs(run, again, f"seed {seed}: resumed from a checkpoint saved by hand "
                         f"after epoch {epoch}", epoch)
            resumes += 1
    return resumes


def by_hand_checkpoint(spec, epochs, folder):
    """Train the first ``epochs`` epochs, then ``fl.save_checkpoint`` by hand; None where
    that part alone is refused (an EarlyStopping on a metric none of its epochs had)."""
    x, y, xv, yv = make_data(spec)
    model = build_model(spec, spec.seed)
    loader = loader_for(spec, x, y)
    state = fl.setup(spec.rule, model)
    os.makedirs(os.path.join(folder, "part"), exist_ok=True)
    cbs, _, _, _ = callbacks_for(spec, model, xv, yv, os.path.join(folder, "part"))
    try:
        h = fl.train(mse, model, loader, state, epochs=epochs, callbacks=cbs, progress=False,
                     compile=spec.compile)
    except KeyError as err:
        if "no epoch had the metric" in str(err):
            return None
        raise
    path = os.path.join(folder, "by-hand.st")
    fl.save_checkpoint(path, model, state, step=h.step, rngs=rngs_of(model, loader),
                       extra={"epoch": h.epoch, "history": h.to_dict()})
    return path


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=100)
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--width", type=int, default=300, help="characters of each failure shown")
    args = p.parse_args(argv)
    failures, resumes = run_seeds(
        run_case, range(args.start, args.start + args.cases),
        lambda seed, err: f"seed {seed}: {type(err).__name__}: {str(err)[:args.width]}")
    print(f"{args.cases - failures} passed, {failures} failed ({resumes} resumes checked)")
    return 1 if failures else 0


def run_seeds(run_case, seeds, show) -> tuple[int, int]:
    """``run_case(seed, folder)`` for each seed, in one temporary folder, printing each
    failure as ``show(seed, error)``: ``(failures, the sum of what the cases returned)``."""
    failures = total = 0
    with tempfile.TemporaryDirectory() as folder:
        for seed in seeds:
            try:
                total += run_case(seed, folder)
            except Exception as err:  # noqa: BLE001 - report every failing seed
                failures += 1
                print(show(seed, err))
    return failures, total


if __name__ == "__main__":
    sys.exit(main())
