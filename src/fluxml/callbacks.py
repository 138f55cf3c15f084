"""Callbacks for ``fl.train``: evaluation, early stopping, checkpoints, learning-rate
schedules. A callback is a small object whose methods the loop calls with the ``Run``
(model, optimiser state, history, epoch, step, last loss; set ``run.stop = True`` to stop).

>>> import numpy as np, fluxml as fl
>>> class CountSteps(fl.Callback):
...     def __init__(self):
...         self.n = 0
...     def on_step_end(self, run):
...         self.n += 1
>>> model, counter = {"w": np.ones(2)}, CountSteps()
>>> _ = fl.train(lambda m, x: np.sum(m["w"] * x), model, [np.ones(2)] * 3,
...              fl.setup(fl.Descent(0.1), model), callbacks=[counter], progress=False)
>>> counter.n, model["w"]
(3, array([0.7, 0.7]))
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fluxml._checks import flag, is_real, positive_int, real_in, shown
from fluxml.history import OWN

# what Evaluate's and SaveCheckpoint's ``every`` counts, for their errors (0 failed at the
# first epoch's end, a division by zero; a negative one ran every epoch)
_EVERY = "every (epochs between calls)"


class Callback:
    """Base class: override the hooks you need (each receives the ``Run``).

    >>> import numpy as np, fluxml as fl
    >>> class Stop(fl.Callback):
    ...     def on_step_end(self, run):
    ...         run.stop = run.loss < 0.7
    >>> model = {"w": np.ones(1)}
    >>> h = fl.train(lambda m: np.sum(m["w"]), model, [()] * 10, fl.setup(fl.Descent(0.2), model),
    ...              callbacks=[Stop()], progress=False)
    >>> len(h.losses), model["w"].round(6)  # stopped after the first loss below 0.7
    (3, array([0.4]))
    """

    def on_train_begin(self, run) -> None:
        pass

    def on_epoch_begin(self, run) -> None:
        pass

    def on_step_begin(self, run) -> None:
        pass

    def on_step_end(self, run) -> None:
        pass

    def on_epoch_end(self, run) -> None:
        pass

    def on_train_end(self, run) -> None:
        pass


class Evaluate(Callback):
    """``Evaluate(fn, every=1, name=None)``: at the end of every ``every``-th epoch, call
    ``fn(model)`` and record what it returns in the history: a dict of metrics, or one
    number (named ``name``, default ``fn.__name__``).

    >>> import numpy as np, fluxml as fl
    >>> def accuracy(m):
    ...     return 0.5
    >>> model = {"w": np.ones(1)}
    >>> h = fl.train(lambda m, x: np.sum(m["w"] * x), model, [np.ones(1)],
    ...              fl.setup(fl.Descent(), model), callbacks=[fl.Evaluate(accuracy)],
    ...              progress=False)
    >>> h["accuracy"]
    [0.5]
    """

    def __init__(self, fn: Callable, every: int = 1, name: str | None = None):
        if not callable(fn):
            raise TypeError(f"Evaluate: fn must be callable fn(model) -> number or dict; "
                            f"got {fn!r}")
        self.fn, self.every = fn, positive_int("Evaluate", _EVERY, every)
        if name is not None and not (isinstance(name, str) and name):  # (3 failed when
            raise TypeError(f"Evaluate: name must be the metric's name, a non-empty str, or "
                            f"None for fn's name; got {shown(name, typed=True)}")  # logged)
        self.name = name or getattr(fn, "__name__", "metric")
        if self.name in OWN:  # (known now: a dict's keys are checked when it is logged)
            raise ValueError(f"Evaluate: the metric's name {self.name!r} is the history's own "
                             f"entry of each epoch ({OWN[self.name]}); pass name=, as "
                             f"name='val_{self.name}'")
        self.logged: set | None = None  # the names recorded so far (a dict's: known once called)

    def on_epoch_end(self, run) -> None:
        if run.epoch % self.every:
            return
        out = self.fn(run.model)
        if not isinstance(out, dict):
            out = {self.name: out}
        named = [k for k in out if not isinstance(k, str)]
        if named:  # (Python's 'keywords must be strings', from History.log)
            raise TypeError(f"Evaluate: {getattr(self.fn, '__name__', 'fn')} returned a dict "
                            f"whose keys must be the metrics' names (str); got the key "
                            f"{shown(named[0], typed=True)}")
        taken = [k for k in out if k in OWN]
        if taken:
            raise ValueError(f"Evaluate: {getattr(self.fn, '__name__', 'fn')} returned the "
                             f"metric {taken[0]!r}, the history's own entry of each epoch "
                             f"({OWN[taken[0]]}); name it otherwise, as 'val_{taken[0]}'")
        run.history.log(**{k: _number(v, k) for k, v in out.items()})
        self.logged = (self.logged or set()) | set(out)


def _number(v, name):
    try:
        return float(v)
    except (TypeError, ValueError):
        raise TypeError(f"Evaluate: the metric {name!r} must be a number; got {v!r}") from None


class EarlyStopping(Callback):
    """``EarlyStopping(monitor="loss", patience=5, mode="min", min_delta=0.0,
    restore_best=True)``: stop when the epoch metric ``monitor`` (the mean training loss, or
    one an ``Evaluate`` placed before this callback records) has not improved by more than
    ``min_delta`` for ``patience`` epochs. With ``restore_best`` the model gets back the
    weights of its best epoch when training ends (the optimiser state is not rewound). An
    epoch without the metric (an ``Evaluate`` with ``every > 1``) is skipped: ``patience``
    counts the epochs that have it; a metric that no ``Evaluate`` of the run records (a
    misspelt name) is an error at the first epoch's end, and one that no epoch had, at the
    end. A run continued from its ``history`` (a resumed checkpoint) is judged from its
    first epoch: a fresh ``EarlyStopping`` reads the epochs before from the history, so it
    stops where the uninterrupted run would have (at once, trained no further, where the
    history ends with the epoch it stopped at). With ``restore_best`` the best weights go
    into the history's ``kept`` (``SaveCheckpoint`` saves them with it), so a run resumed
    from a checkpoint restores the best epoch's weights even where that came before the
    resume, as the uninterrupted run would. (From a checkpoint without them, written by a
    fluxml before this or with another ``monitor``, ``mode`` or ``min_delta``, the best
    epoch's weights are at hand only where it was the last one; else a warning says that the
    model keeps its last weights.)

    >>> import numpy as np, fluxml as fl
    >>> model = {"w": np.zeros(1)}
    >>> flat = lambda m: 0 * np.sum(m["w"]) + 1.0  # a loss that never improves
    >>> h = fl.train(flat, model, [()] * 4, fl.setup(fl.Descent(0.1), model), epochs=10,
    ...              callbacks=[fl.EarlyStopping(patience=2)], progress=False)
    >>> len(h.epochs)  # the best epoch, then two without improvement
    3
    """

    def __init__(self, monitor: str = "loss", patience: int = 5, mode: str = "min",
                 min_delta: float = 0.0, restore_best: bool = True):
        if mode not in ("min", "max"):
            raise ValueError(f"EarlyStopping: mode must be 'min' or 'max'; got {mode!r}")
        patience = positive_int("EarlyStopping", "patience (epochs without improvement)",
                                patience)
        if not isinstance(monitor, str):
            raise TypeError(f"EarlyStopping: monitor must be the name of a metric (a str: "
                            f"'loss', or one an Evaluate records); got {shown(monitor)}")
        real_in("EarlyStopping", "min_delta (the least improvement)", min_delta, 0)
        restore_best = flag("EarlyStopping", "restore_best", restore_best)
        self.monitor, self.patience, self.mode = monitor, patience, mode
        self.min_delta, self.restore_best = min_delta, restore_best
        self.best, self.best_epoch, self.wait, self.saved = None, None, 0, None
        self.stopped_epoch = None
        self._seen, self._missing, self._before = False, None, []

    def on_train_begin(self, run) -> None:
        before = run.history.epochs  # (a continued run's epochs count: Evaluate every few)
        self._seen, self._missing = any(self.monitor in row for row in before), None
        if before and self.best_epoch is None and self.wait == 0:
            self._judge_history(run)
        self._before = []  # the callbacks that may record the metric
        for cb in getattr(run, "callbacks", ()):
            if cb is self:
                break
            self._before.append(cb)

    def _may_be_recorded(self) -> bool:
        """Whether a callback before this one may record the metric at a later epoch (an
        Evaluate every few epochs): a user's, an Evaluate of that name, or one whose dict
        had it or that was not called yet (a dict it returns may have it). Else a missing
        metric is a slip (a misspelt name) that should not wait for the end of the run."""
        for cb in self._before:
            if type(cb).__module__ != __name__:
                return True
            if isinstance(cb, Evaluate) and (cb.name == self.monitor or cb.logged is None
                                             or self.monitor in cb.logged):
                return True
        return False

    def _judge_history(self, run) -> None:
        """A fresh callback in a run continued from its history (a resumed checkpoint): the
        epochs before are judged as this callback would have judged them, so that patience
        counts on (a stop they asked for was the run's to make). The model is the last
        epoch's: its weights are the best epoch's only where that was the last one."""
        for epoch, row in enumerate(run.history.epochs, 1):
            if self.monitor in row:
                self._judge(float(row[self.monitor]), epoch)
        if self.wait >= self.patience:  # it stopped the run there (a checkpoint of the epoch
            run.stop = True  # it stopped at): the resumed run trains no further epoch
            self.stopped_epoch = run.history.epoch
            warnings.warn(f"EarlyStopping: the history's {run.history.epoch} epochs already "
                          f"used up its patience ({self.monitor!r} not improved for "
                          f"{self.wait} epochs since epoch {self.best_epoch}, patience "
                          f"{self.patience}): the run stopped at epoch {run.history.epoch} "
                          f"and this call trains nothing more", stacklevel=4)
        if not self.restore_best or self.best_epoch is None:
            return
        kept = run.history.kept.get(self._key())
        if isinstance(kept, dict) and kept.get("epoch") == self.best_epoch and \
                isinstance(kept.get("weights"), dict):
            self.saved = {k: np.array(v, copy=True) for k, v in kept["weights"].items()}
            run.history.kept[self._key()] = {"epoch": self.best_epoch, "weights": self.saved}
        elif self.best_epoch == run.history.epoch and \
                run.history.epochs[-1].get("step") == run.history.step:
            self._save(run)  # (not from a history saved within the next epoch: the model
            # holds that epoch's steps so far, not the best epoch's weights)

    def _key(self) -> str:
        """This callback's name in ``history.kept``: what decides its best epoch."""
        return (f"EarlyStopping(monitor={self.monitor!r}, mode={self.mode!r}, "
                f"min_delta={self.min_delta!r})")

    def _save(self, run) -> None:
        from fluxml.io.modelstate import flat_state

        self.saved = {k: np.array(v, copy=True) for k, v in flat_state(run.model).items()}
        # (in the history: SaveCheckpoint saves them, a resumed run restores them)
        run.history.kept[self._key()] = {"epoch": run.epoch, "weights": self.saved}

    def _judge(self, value, epoch) -> bool:
        """Count ``epoch``'s ``value`` of the metric: a new best (True), or one more epoch
        without improvement."""
        if self._better(value, self.best):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            return True
        self.wait += 1
        return False

    def _better(self, value, best) -> bool:
        if best is None or math.isnan(best):
            return not math.isnan(value)
        if self.mode == "min":
            return value < best - self.min_delta
        return value > best + self.min_delta

    def on_epoch_end(self, run) -> None:
        row = run.history.epochs[-1]
        if self.monitor not in row:  # (an Evaluate every few epochs): judged at the end
            self._missing = sorted(row)
            if not self._may_be_recorded():
                self._raise_missing()
            return
        self._seen = True
        if self._judge(float(row[self.monitor]), run.epoch):
            if self.restore_best:
                self._save(run)
            return
        if self.wait >= self.patience:
            run.stop = True
            self.stopped_epoch = run.epoch

    def on_train_end(self, run) -> None:
        if self.restore_best and self.best_epoch is not None and self.best_epoch != run.epoch:
            if self.saved is not None:  # (saved where and when best_epoch was set)
                from fluxml.io.modelstate import loadmodel

                loadmodel(run.model, self.saved)
            else:
                warnings.warn(f"EarlyStopping: the best epoch, {self.best_epoch}, came before "
                              f"this run resumed, and the history it resumed from does not "
                              f"keep its weights (a checkpoint of an older fluxml, or of "
                              f"another monitor, mode or min_delta): the model keeps those of "
                              f"epoch {run.epoch} (load epoch {self.best_epoch}'s checkpoint, "
                              f"if one was kept, for the best)", stacklevel=2)
        if self._missing is not None and not self._seen:
            self._raise_missing()

    def _raise_missing(self):
        raise KeyError(f"EarlyStopping: no epoch had the metric {self.monitor!r} (the last "
                       f"had {self._missing}), so it never judged; put the Evaluate that "
                       f"records it before EarlyStopping in callbacks")


class SaveCheckpoint(Callback):
    """``SaveCheckpoint(path, every=1, rngs=None, steps=None)``: after every ``every``-th
    epoch (and with ``steps``, also after every ``steps``-th step, within epochs), save a
    checkpoint (``fl.save_checkpoint``) of the model, optimiser state, step, the history
    and the generators: fluxml's default one, the model's layers' (``Dropout(p, rng=gen)``),
    ``rngs``, and the data loader's (``"data"``)
    when it has one. ``path`` may hold ``{epoch}`` and ``{step}``: ``"ckpt-{epoch}.st"``.
    Resume with ``info = fl.load_checkpoint(path, model, fl.setup(rule, model),
    rngs={"data": loader.rng})`` and ``fl.train(..., history=fl.History.from_dict(
    info.extra["history"]))`` (whose ``"losses"``, the step losses, come back as one
    float64 array). A checkpoint saved within an epoch keeps a history holding
    the epoch's steps so far and the data's place (a ``DataLoader``'s generator as the
    epoch began): the run resumed from it, with the loader's generator restored (or the same
    list of batches), goes on with the epoch's next batch, and ends bit for bit as the
    uninterrupted run (the epoch's time and samples per second aside); its
    ``extra["epoch"]`` is the epoch it was saved within (not finished: the history's
    ``epoch`` counts those finished, one fewer). A ``run.stop``
    within an epoch ends that epoch: the file saved at its end resumes with the next epoch
    (resume from the last one ``steps`` saved to go on within it). ``fl.train`` calls it
    after the other callbacks, wherever it is in the list, so that a checkpoint holds the
    epoch as they left it (the metrics ``Evaluate`` and ``LRSchedule`` log,
    ``EarlyStopping``'s best weights; a callback of your own listed after it runs before
    it then, with a warning: at each save it sees the file saved before). In
    ``fl.train(..., distributed=True)`` only rank 0
    saves; the file resumes with any number of ranks (load it on rank 0 or on all:
    ``fl.train`` broadcasts rank 0's model, optimiser state and data generator; within an
    epoch, with the same global batch: ``batchsize`` times the ranks).

    >>> import os, tempfile, numpy as np, fluxml as fl
    >>> folder, model = tempfile.mkdtemp(), {"w": np.ones(2)}
    >>> state = fl.setup(fl.Descent(0.1), model)
    >>> _ = fl.train(lambda m: np.sum(m["w"]), model, [()] * 3, state, epochs=2, progress=False,
    ...              callbacks=[fl.SaveCheckpoint(os.path.join(folder, "ckpt-{epoch}.st"))])
    >>> sorted(os.listdir(folder))
    ['ckpt-1.st', 'ckpt-2.st']
    >>> fl.load_checkpoint(os.path.join(folder, "ckpt-1.st"), model, state).step, model["w"]
    (3, array([0.7, 0.7]))
    """

    stops_at_steps = False  # (fl.train(distributed=True) need not agree on a stop per step)

    def __init__(self, path, every: int = 1, rngs: dict | None = None,
                 steps: int | None = None):
        if not isinstance(path, (str, os.PathLike)) or not str(path):  # (None saved to a
            raise TypeError(f"SaveCheckpoint: path must be a file path (a str or Path, "  # file
                            f"'ckpt-{{epoch}}.st'); got {shown(path, typed=True)}")  # 'None')
        self.path, self.every = str(path), positive_int("SaveCheckpoint", _EVERY, every)
        try:  # (else the first save failed, after an epoch of training, with a bare KeyError)
            self.path.format(epoch=0, step=0)
        except (KeyError, IndexError, ValueError, AttributeError, TypeError) as err:  # ({epoch.x},
            # {epoch[0]}: the int's own errors)
            raise ValueError(f"SaveCheckpoint: path {self.path!r} may hold the fields {{epoch}} "
                             f"and {{step}} only ({type(err).__name__}: {err}); write a "
                             f"literal brace twice, {{{{ or }}}}") from None
        if Path(self.path).is_dir():  # (found at the first save, an epoch of training later)
            raise ValueError(f"SaveCheckpoint: path {self.path!r} is a folder; give the path "
                             f"of a file in it, as "
                             f"{str(Path(self.path) / 'ckpt-{epoch}.st')!r}")
        self.steps = None if steps is None else positive_int(
            "SaveCheckpoint", "steps (steps between checkpoints within epochs)", steps)
        if rngs is not None and not isinstance(rngs, dict):  # (a list: dict()'s own error)
            raise TypeError(f"SaveCheckpoint: rngs must be a dict of named generators "
                            f"({{'dropout': gen}}) or None; got {shown(rngs)}")
        for key, gen in (rngs or {}).items():  # (found at the first save, an epoch later)
            if not isinstance(gen, np.random.Generator):
                raise TypeError(f"SaveCheckpoint: rngs[{key!r}] must be a "
                                f"numpy.random.Generator (np.random.default_rng(seed)); got "
                                f"{shown(gen, typed=True)}")
        self.rngs = dict(rngs or {})
        self.saved: list[Path] = []

    def on_step_end(self, run) -> None:
        if self.steps is not None and run.step % self.steps == 0:
            self._save(run, within=True)

    def on_epoch_end(self, run) -> None:
        if run.epoch % self.every == 0:
            self._save(run, within=False)

    def _save(self, run, within: bool) -> None:
        if not getattr(run, "is_main", True):
            return  # in a distributed run, rank 0 saves: every rank holds the same state
        from fluxml.io.files import save_checkpoint
        from fluxml.resume import WITHIN, place, steps_into_epoch

        rngs = dict(self.rngs)
        data_rng = getattr(run.data, "rng", None)
        if isinstance(data_rng, np.random.Generator):
            rngs.setdefault("data", data_rng)
        history = run.history.to_dict()
        # the step losses as one float64 array, a tensor of the file: as JSON in its header a
        # history of a million steps took 80 MB and 3 s a save, and one of 4.7 million went
        # past the header's limit (the save refused); History.from_dict takes the array
        history["losses"] = np.array(history["losses"], dtype=np.float64)
        if within and steps_into_epoch(run.history):  # where the resumed run goes on (the
            history["kept"] = {**history.get("kept", {}), WITHIN: place(run)}  # data's place)
        path = Path(self.path.format(epoch=run.epoch, step=run.step))
        save_checkpoint(path, run.model, run.state, step=run.step, rngs=rngs,
                        extra={"epoch": run.epoch, "history": history})
        if not self.saved or self.saved[-1] != path:  # (an epoch's last step, then its end)
            self.saved.append(path)


class LRSchedule(Callback):
    """``LRSchedule(schedule, every="step", name="eta")``: before each step (or epoch) set
    the hyperparameter ``name`` of every rule to ``schedule(t)``, ``t`` counting steps (or
    epochs) from 0 (``fl.adjust(state, eta=schedule(t))``). The value in use at each
    epoch's end is recorded in the history as ``name``.

    >>> import numpy as np, fluxml as fl
    >>> model = {"w": np.zeros(1)}
    >>> h = fl.train(lambda m: np.sum(m["w"]), model, [()] * 4, fl.setup(fl.Descent(0.1), model),
    ...              callbacks=[fl.LRSchedule(fl.StepDecay(0.1, 0.5, step=2))], progress=False)
    >>> model["w"], h["eta"]  # steps of 0.1, 0.1, 0.05, 0.05
    (array([-0.3]), [0.05])
    """

    stops_at_steps = False  # (fl.train(distributed=True) need not agree on a stop per step)

    def __init__(self, schedule: Callable[[int], float], every: str = "step",
                 name: str = "eta"):
        if every not in ("step", "epoch"):
            raise ValueError(f"LRSchedule: every must be 'step' or 'epoch'; got {every!r}")
        if not callable(schedule):
            raise TypeError(f"LRSchedule: schedule must be callable t -> value; got "
                            f"{schedule!r}")
        if not isinstance(name, str):
            raise TypeError(f"LRSchedule: name must be the hyperparameter's name (a str: "
                            f"'eta', 'lambd' ...); got {shown(name)}")
        self.schedule, self.every, self.name = schedule, every, name
        self.value = None

    def _set(self, run, t) -> None:
        from fluxml.optimise import adjust

        self.value = self._value(t)
        adjust(run.state, **{self.name: self.value})

    def _value(self, t) -> float:
        """``schedule(t)``, a number: None and arrays failed in float(), naming nothing, and
        a string was parsed."""
        value = self.schedule(t)
        if not is_real(value):
            raise TypeError(f"LRSchedule: schedule({t}) must return a number (the value of "
                            f"{self.name!r}); got {shown(value, typed=True)}")
        return float(value)

    def on_train_begin(self, run) -> None:
        if self.every == "step" and run.step > 0:  # a run resumed within an epoch: the value
            self.value = self._value(run.step - 1)  # its last step used, for the row

    def on_epoch_begin(self, run) -> None:
        if self.every == "epoch":
            self._set(run, run.epoch - 1)

    def on_step_begin(self, run) -> None:
        if self.every == "step":
            self._set(run, run.step)

    def on_epoch_end(self, run) -> None:
        if self.value is not None:
            run.history.log(**{self.name: self.value})
