"""``fl.train``: the training loop, as Flux's ``train!``, with a progress bar, callbacks and a
``History`` of the run.

``loss(model, *batch)`` returns a scalar; each batch gives one ``fl.withgradient`` and one
``fl.update``. A NaN or Inf in the loss or in a gradient stops training before the update,
with an error naming the step and the parameter; the model is left as it was. So is it
when the step raises (an error in the loss, Ctrl-C): what its forward pass wrote into the
model (BatchNorm's running statistics) is put back before the error goes on.

>>> import numpy as np, fluxml as fl
>>> x = np.linspace(-1, 1, 32, dtype=np.float32)[:, None]
>>> model = fl.Dense(1, 1)
>>> state = fl.setup(fl.Descent(0.3), model)
>>> mse = lambda m, x, y: np.mean((m(x) - y) ** 2)
>>> h = fl.train(mse, model, fl.DataLoader((x, 3 * x), batchsize=8), state, epochs=20,
...              progress=False)
>>> len(h.losses), round(float(model.weight[0, 0]), 2)
(80, 3.0)
"""

from __future__ import annotations

import inspect
import math
import sys
import time
import warnings
from collections.abc import Callable, Iterable

import numpy as np

from fluxml._checks import flag, positive_int, shown
from fluxml.ad import withgradient
from fluxml.callbacks import Callback, SaveCheckpoint
from fluxml.data.loader import numobs
from fluxml.history import History
from fluxml.progress import progress_bar
from fluxml.resume import WITHIN, passes, rest_of_epoch, steps_into_epoch
from fluxml.rollback import Rollback
from fluxml.tree import leaves, leaves_with_paths


class TrainingError(FloatingPointError):
    """Training stopped on a NaN or Inf; the model is as it was before the failing step.

    >>> import numpy as np, fluxml as fl
    >>> model = {"w": np.ones(1)}
    >>> batches = [np.ones(1), np.full(1, np.nan)]
    >>> try:
    ...     fl.train(lambda m, x: np.sum(m["w"] * x), model, batches,
    ...              fl.setup(fl.Descent(0.1), model), progress=False)
    ... except fl.TrainingError as err:
    ...     print(str(err)[:49])
    train: step 2 (epoch 1, batch 2): the loss is nan
    >>> model["w"]  # as the first step left it
    array([0.9])
    """


def _nonfinite_gradient(grads, known: frozenset = frozenset()) -> tuple[str, str] | None:
    """The first ``(path, what)`` whose gradient (or the array of a model) holds NaN or Inf,
    else None; paths in ``known`` are passed over. One reduction per array; the exact check
    runs only when a sum is not finite."""
    for path, g in _nonfinite(grads):
        if path not in known:
            bad = ~np.isfinite(g)
            kinds = "NaN" if np.any(np.isnan(g)) else "Inf"
            return path, f"holds {kinds} ({int(np.sum(bad))} of {np.size(g)} entries)"
    return None


def _nonfinite(tree):
    """``(path, array)`` for each float or complex array of ``tree`` holding NaN or Inf."""
    for path, g in leaves_with_paths(tree):
        if getattr(g, "dtype", np.dtype(float)).kind not in "fc":
            continue
        if math.isfinite(abs(np.sum(g))):
            continue
        if not np.all(np.isfinite(g)):
            yield path, g


def _any_gradient(grads) -> bool:
    """Whether the gradient holds an array (a loss that ignores its model argument gives an
    empty one, and training would silently change nothing; PyTorch's backward raises)."""
    return any(hasattr(g, "dtype") for g in leaves(grads))


def _check_step(value: float, grads, where: str, first: bool, model=None,
                known: frozenset = frozenset()) -> None:
    """Raise where a step's loss or gradient is not finite, or (``first`` step of the call)
    where the gradient holds no array; ``where`` names the step. Where ``model`` holds NaN
    or Inf as the step begins (outside ``known``, its arrays that did as the call began: a
    mask of -inf), the error says so: the update before made it."""
    bad = _nonfinite_gradient(grads)
    finite = math.isfinite(value)
    if finite and bad is None:
        held = None
    else:  # (looked at only on a failure: the step before may have made the model so)
        held = None if model is None else _nonfinite_gradient(model, known)
    why = (f"The model's {held[0]} {held[1]} as this step began: the update of the step "
           f"before made it so (a learning rate too high, an optimiser state that "
           f"overflowed), not this batch" if held is not None else
           "Possible causes: a learning rate too high, log or division of 0, bad data in "
           "this batch" if not finite else
           "Possible causes: a learning rate too high, a function without a finite "
           "derivative here (sqrt or log at 0), bad data in this batch")
    if not finite:
        also = "" if bad is None else f" (the gradient of {bad[0]} {bad[1]})"
        raise TrainingError(f"train: {where}: the loss is {value}{also}; the model is "
                            f"as it was before this step. {why}")
    if bad is not None:
        raise TrainingError(f"train: {where}: the gradient of {bad[0]} {bad[1]} "
                            f"(loss {value:.6g}); the model is as it was before this "
                            f"step. {why}")
    if first and not _any_gradient(grads):
        raise ValueError(f"train: {where}: the loss does not depend on the model it is "
                         f"given (its gradient holds no arrays), so training would "
                         f"change nothing. loss(model, *batch) must compute with its "
                         f"first argument, not with a model it closes over")


def _saving_last(callbacks: list) -> list:
    """The callbacks with the ``SaveCheckpoint``s last: a checkpoint holds the epoch as the
    others left it (the metrics Evaluate and LRSchedule log at its end, EarlyStopping's best
    weights); saved before them, a run resumed from it lacked those, and judged and stopped
    otherwise. A user's own callback listed after a SaveCheckpoint runs before it now, so
    one acting on the file just saved (copying it) would see the previous one: one warning
    names all such callbacks whose hooks run where a save does (``on_epoch_end``, and
    ``on_step_end`` for ``SaveCheckpoint(steps=k)``); one logging each step, or at the start
    or end of the run, sees no difference and is not named."""
    saves = [cb for cb in callbacks if isinstance(cb, SaveCheckpoint)]
    if saves:
        first = callbacks.index(saves[0])
        hooks = ["on_epoch_end"] + (["on_step_end"] if any(cb.steps for cb in saves) else [])
        moved = [cb for cb in callbacks[first:] if not isinstance(cb, SaveCheckpoint)
                 and not type(cb).__module__.startswith("fluxml.")
                 and any(_overrides(cb, hook) for hook in hooks)]
        if moved:
            names = [type(cb).__name__ for cb in moved]
            which = (f"the callback {names[0]}" if len(names) == 1 else
                     f"the callbacks {', '.join(names[:-1])} and {names[-1]}")
            warnings.warn(f"train: {which}, listed after SaveCheckpoint({saves[0].path!r}), "
                          f"{'runs' if len(names) == 1 else 'run'} before it (fl.train calls "
                          f"SaveCheckpoint after the other callbacks, so that a checkpoint "
                          f"holds what they logged): at each save "
                          f"{'it sees' if len(names) == 1 else 'they see'} the file saved "
                          f"before, not the new one. List {'it' if len(names) == 1 else 'them'} "
                          f"before the SaveCheckpoint where the new file does not matter (no "
                          f"warning then); act on a new file in on_epoch_begin or on_train_end",
                          stacklevel=3)
    return [cb for cb in callbacks if not isinstance(cb, SaveCheckpoint)] + saves


def _overrides(callback, hook: str) -> bool:
    """Whether ``callback``'s class defines its own ``hook`` (not Callback's, which does
    nothing)."""
    return getattr(type(callback), hook) is not getattr(Callback, hook)


class Run:
    """What callbacks see: the model, optimiser state, data, history, the current epoch and
    step, the last loss, ``stop`` (set it to end training after this step or epoch),
    ``is_main`` (False on the ranks other than 0 of a distributed run: skip writing files
    there) and ``callbacks`` (all of this run's)."""

    def __init__(self, model, state, data, history: History, epochs: int):
        self.model = model
        self.state = state
        self.data = data
        self.history = history
        self.epochs = epochs
        self.epoch = history.epoch
        self.step = history.step
        self.loss = math.nan
        self.stop = False
        self.is_main = True  # False on the ranks other than 0 of a distributed run
        self.callbacks: list = []
        self._data_pass = None  # the DataLoader's pass this epoch trains on (resume.place)


def train(loss: Callable, model, data: Iterable, state, epochs: int = 1,
          callbacks: Iterable[Callback] = (), progress: bool = True,
          history: History | None = None, distributed: bool | str = False,
          compile: bool | str = False) -> History:
    """Train ``model`` in place: for each batch of ``data`` (tuples are splatted:
    ``loss(model, *batch)``), one gradient of ``loss`` and one ``fl.update(state, model,
    grads)``; ``epochs`` passes over ``data``. Returns the ``History`` (the step losses,
    and per epoch the mean loss, time, samples per second and the metrics of callbacks).

    ``callbacks``: ``fl.Evaluate``, ``fl.EarlyStopping``, ``fl.SaveCheckpoint``,
    ``fl.LRSchedule``, or your own ``fl.Callback``, called in their order, but for
    ``SaveCheckpoint``, which comes after the others (a checkpoint holds what they logged).
    ``progress``: a progress bar (tqdm when installed, a built-in text bar otherwise)
    showing the loss and samples per second.
    ``history``: continue a run (its step and epoch counts go on; a resumed checkpoint
    gives it back as ``fl.History.from_dict(info.extra["history"])``). A history saved
    within an epoch (``SaveCheckpoint(steps=k)``), holding steps after its last epoch's end,
    goes on with that epoch after the batches it trained on (not loaded nor trained again),
    where the data gives them in the same order again: a ``DataLoader`` whose generator the
    checkpoint restored, a list of batches. Elsewhere (a run stopped by Ctrl-C or an error
    continued in the same process: its loader has drawn another order since) the epoch
    starts again from its first batch, with a warning.

    A step that fails (an error in the loss, a NaN or Inf, another rank's failure, Ctrl-C)
    leaves the model as it was before it, what its forward pass wrote too (BatchNorm's
    running statistics, a layer's fields, a count in an integer array), up to the moment
    ``fl.update`` begins: Ctrl-C within the update itself may leave the model partly updated.
    For this, the model's arrays the optimiser does not step (running statistics, integer
    and bool arrays) are copied before each eager step, as plain NumPy code may write any of
    them: a large integer table costs a copy a step unless it is read-only
    (``table.flags.writeable = False``). Compiled steps copy only what their programs write.

    ``distributed``: data-parallel training over the ranks ``mpiexec`` started (see
    ``fluxml.distributed``): rank 0's model, optimiser state, shuffle generator and
    ``history`` go to every rank first, ``data`` must be a ``DataLoader(..., shard=True)`` (or
    an iterable giving each rank its own batches), each step's loss and gradients are averaged
    over the ranks, and the progress bar, the epoch lines and ``SaveCheckpoint`` run on rank 0
    only. At each epoch's end the ranks' running statistics (a plain BatchNorm's, each
    tracking its own rank's batches) are averaged before the other callbacks, which run on
    every rank; a stop asked for by any rank's callbacks stops all ranks, and when training
    ends every rank takes rank 0's model and optimiser state (evaluate on the same data all
    the same: each rank logs its own numbers).
    ``distributed="overlap"`` also starts the averaging during the backward pass
    (``GradientAverager.begin``): each bucket of gradients is sent as soon as they are final.
    It pays only where MPI moves messages while this process computes (a progress thread on a
    spare core, a network card that reads memory itself); through shared memory on busy cores
    the messages are this process's own work wherever it runs, and it measured no faster
    (``benchmarks/distributed.py``). Eager steps only: with ``compile`` it averages after.

    ``compile``: ``True`` (``fl.compile``'s choice: ``"cupy"`` for a GPU's arrays, else
    ``"numpy"``) or a back end (``"numpy"``, ``"cupy"``, ``"xla"``) runs each step's loss and
    gradient through ``fl.compile``: traced on the first batch (and again for a batch
    of another shape, such as a smaller last one), then generated straight-line code. The
    optimiser update stays eager (plain NumPy already), after the checks for a non-finite loss
    or gradient, so a bad step still leaves the model as it was, and learning-rate schedules
    do not trace again. As with ``fl.compile``, the numbers, strings, tuples and small lists
    and dicts of them that the loss (and the user's functions it calls) reads as globals or
    closes over are watched (a new value, such as a global a callback changes between
    epochs, traces again); arrays it closes over, an object's fields and larger or nested
    containers are fixed when it is traced: keep such a value in the model (a field of a
    layer: a new number traces again) or in the batch, or train without ``compile``.

    >>> import numpy as np, fluxml as fl
    >>> model = {"w": np.zeros(1)}
    >>> data = [(np.ones(1), np.full(1, 3.0))] * 20  # (x, y) batches: loss(model, x, y)
    >>> loss = lambda m, x, y: fl.mse(m["w"] * x, y)
    >>> history = fl.train(loss, model, data, fl.setup(fl.Descent(0.25), model), epochs=2,
    ...                    progress=False)
    >>> len(history.losses), history["epoch"], model["w"]
    (40, [1, 2], array([3.]))
    """
    epochs = positive_int("train", "epochs", epochs, minimum=0)
    progress = flag("train", "progress", progress)
    if not callable(loss):
        raise TypeError(f"train: loss must be a function loss(model, *batch); got {loss!r}")
    backend = _backend(compile)
    if isinstance(callbacks, (Callback, str, bytes, type)) or callbacks is not None and \
            not hasattr(callbacks, "__iter__"):  # (a str was taken as its characters)
        one = f"one {type(callbacks).__name__}" if isinstance(callbacks, Callback) else \
            f"the class {callbacks.__name__}" if isinstance(callbacks, type) else \
            shown(callbacks)
        make = f"{callbacks.__name__}()" if isinstance(callbacks, type) else "..."
        raise TypeError(f"train: callbacks must be a list of fl.Callback objects; got {one}: "
                        f"put it in a list, callbacks=[{make}]")
    callbacks = [] if callbacks is None else list(callbacks)
    for cb in callbacks:
        if not isinstance(cb, Callback):
            hint = ("; a schedule goes in as fl.LRSchedule(schedule)"
                    if type(cb).__module__ == "fluxml.optimise.schedules" else "")
            raise TypeError(f"train: callbacks must be fl.Callback objects; got {cb!r}{hint}")
    callbacks = _saving_last(callbacks)
    _check_data(data)
    if isinstance(data, tuple) and data and all(hasattr(d, "shape") for d in data):
        raise TypeError(
            f"train: data is a tuple of {len(data)} arrays, so each 'batch' would be one of "
            f"them. train iterates over data: pass batches, as fl.DataLoader(data, batchsize) "
            f"or a list [(x, y)] for the whole set as one batch")
    if isinstance(data, dict) and data and all(hasattr(d, "shape") for d in data.values()):
        raise TypeError(
            f"train: data is a dict of {len(data)} arrays, so iterating it gives its keys "
            f"({next(iter(data))!r} ...), not batches. Pass fl.DataLoader(data, batchsize) "
            f"(its batches are dicts: loss(model, batch)) or a list [data] for the whole set "
            f"as one batch")
    from fluxml.optimise.base import Rule

    if isinstance(state, Rule):
        raise TypeError(f"train: state is the optimiser state from fl.setup(rule, model); got "
                        f"the rule {state!r} itself. Pass fl.setup({state!r}, model)")
    if epochs > 1 and iter(data) is data:
        raise TypeError(
            f"train: data is a one-pass iterator ({type(data).__name__}), so epochs 2 to "
            f"{epochs} would see no batches. Pass something iterable again each epoch: a "
            f"fl.DataLoader, a list of batches")
    if not (distributed is False or distributed is True or distributed == "overlap"
            and isinstance(distributed, str)):  # not 0, 1 or 1.0: == would take them
        raise ValueError(f"train: distributed must be True, False or 'overlap'; got "
                         f"{distributed!r}")
    if history is not None and not isinstance(history, History):  # (AttributeError 'epoch')
        hint = (": a checkpoint's goes in as fl.History.from_dict(info.extra['history'])"
                if isinstance(history, dict) else "")
        raise TypeError(f"train: history must be a fl.History (a run to continue) or None; "
                        f"got {shown(history) if not isinstance(history, dict) else 'a dict'}"
                        f"{hint}")
    history = History() if history is None else history
    dp = None
    if distributed:
        from fluxml.distributed import DataParallel, broadcast_object

        dp = DataParallel(model, state, data, overlap=distributed == "overlap")
        model, state = dp.model, dp.state
        with dp.failures():  # rank 0's step and epoch counts too (a checkpoint that rank 0
            main = broadcast_object(history)  # alone loaded: schedules, epoch numbers), in
            history.losses[:], history.epochs[:] = main.losses, main.epochs  # the caller's
            history.kept = dict(main.kept)  # (EarlyStopping's best weights before a resume)
        progress = progress and dp.is_main
    run = Run(model, state, data, history, epochs)
    run.is_main = dp is None or dp.is_main
    if dp is None:
        return _loop(loss, run, callbacks, progress, None, backend)
    with dp.failures():
        history = _loop(loss, run, callbacks, progress, dp, backend)
        dp.finish(run.model, run.state)
        return history


def _check_data(data) -> None:
    """``data`` an iterable of batches: a string gave its characters as batches (a ufunc's
    error in the loss), None and a number Python's 'not iterable'."""
    # (asked of the type, not by calling iter(): a loader's __iter__ may start a pass, draw
    # its shuffle, or consume a one-shot source)
    if isinstance(data, (str, bytes)) or not (hasattr(data, "__iter__")
                                              or hasattr(data, "__getitem__")):
        raise TypeError(f"train: data must be an iterable of batches (a fl.DataLoader, a list "
                        f"of (x, y)); got {shown(data)}")


def _backend(compile):
    """The back end ``train(..., compile=)`` asks for, or None for eager steps."""
    if compile is False or compile is None:
        return None
    if compile is True:
        return "auto"  # (fl.compile's choice: cupy for a GPU's arrays, else numpy)
    if compile in ("numpy", "cupy", "xla"):
        return compile
    raise ValueError(f"train: compile must be True, False or a back end ('numpy', 'cupy', "
                     f"'xla'); got {compile!r}")


def _gradient_step(loss, backend):
    """``(model, share, *batch) -> (share * loss, (grads,))``: eager, or compiled once per
    batch shape and share. ``share`` (a Python number, 1 outside distributed training) is
    this rank's share of the global batch, folded into the loss so that the gradients come
    out of the backward pass already weighted for averaging: one scalar product instead of a
    pass over every gradient."""
    def eager(model, share, *args, on_final=None):
        """The step, handing each gradient to ``on_final`` once final (distributed: the
        averaging starts during the backward pass; not when compiled)."""
        if share == 1:
            return withgradient(lambda m: _alone(loss(m, *args)), model, on_final=on_final)
        return withgradient(lambda m: _alone(loss(m, *args)) * share, model,
                            on_final=on_final)

    if backend is None:
        return eager
    from fluxml.compiler import compile as compile_

    def step(model, share, *args):
        return eager(model, share, *args)

    return compile_(step, backend=None if backend == "auto" else backend)


def _alone(value):
    """The loss, refusing a tuple: ``fl.withgradient`` takes ``(loss, aux ...)`` (as Zygote's
    does), but a training step has nowhere to put the rest."""
    if value is None or isinstance(value, (str, bytes)):  # (the engine's error said it
        raise TypeError(f"train: the loss returned {value!r}, not a number"  # had shape ())
                        f"{' (a missing return statement?)' if value is None else ''}; "
                        f"loss(model, *batch) must return the scalar loss")
    if isinstance(value, tuple):
        raise TypeError(f"train: the loss returned a {type(value).__name__} of "
                        f"{len(value)}; fl.train steps on a loss alone, as Flux's train!. "
                        f"Return the loss, or write the loop with fl.withgradient, which "
                        f"takes (loss, aux ...) and returns both")
    return value


def _loop(loss, run, callbacks, progress, dp, backend=None) -> History:
    from fluxml.optimise import update

    gradient_step = _gradient_step(loss, backend)
    unchecked = True  # the loss's signature, checked against the first batch
    data, history, epochs = run.data, run.history, run.epochs
    run.callbacks = callbacks  # (train made it a list)
    for cb in callbacks:
        cb.on_train_begin(run)
    last_epoch = history.epoch + epochs
    # distributed: a stop asked for in a step by one rank's callbacks (a small message each
    # step, only where a callback acts at steps) stops every rank
    steps_agreed = dp is not None and any(_acts_at_steps(cb) for cb in callbacks)
    history_start = run.step  # the first step of this call is checked for a gradient
    # the model's arrays holding NaN or Inf as the call begins (a mask of -inf): those an
    # update turns so are found against them (at a failure, and after the last step)
    known = frozenset(path for path, _ in _nonfinite(run.model))
    before = Rollback(run.model, None if backend is None else gradient_step)
    mark = history.kept.pop(WITHIN, None)  # (a checkpoint saved within an epoch: its place)
    done = steps_into_epoch(history)  # the steps of an epoch the history holds
    for epoch in range(history.epoch + 1, last_epoch + 1):
        if run.stop:  # (set before any epoch: a resumed EarlyStopping whose patience had run out)
            break
        run.epoch = epoch
        for cb in callbacks:
            cb.on_epoch_begin(run)
        start, samples, total = time.perf_counter(), 0, 0.0
        steps, batches = 0, data
        if done:  # the rest of the epoch, after the batches those steps trained on (where
            batches, skipped = rest_of_epoch(data, history, mark, done, epoch)  # the data
            if skipped:  # gives them again; else the whole epoch again, with a warning)
                total, steps = float(sum(history.losses[-done:])), done  # (its mean loss)
            done = 0
        bar = progress_bar(_length(data), f"epoch {epoch}/{last_epoch}", enabled=progress,
                           initial=steps)  # (a resumed epoch's bar counts its steps done)
        run._data_pass = None
        for batch in batches:
            if run._data_pass is None:  # (the pass just begun: a callback may begin others)
                run._data_pass = passes(data)
            args = batch if isinstance(batch, tuple) else (batch,)
            if unchecked:
                _check_signature(loss, run.model, args)
                unchecked = False
            for cb in callbacks:
                cb.on_step_begin(run)
            count = _count(args, data)
            before.keep(args)  # the model as the step begins, put back if it fails
            share = 1.0 if dp is None else dp.share(count)
            try:
                if dp is not None and backend is None:  # the averaging starts in the backward
                    value, (grads,) = gradient_step(run.model, share, *args,  # pass
                                                    on_final=dp.begin(count, share))
                else:
                    value, (grads,) = gradient_step(run.model, share, *args)
                if dp is None:
                    value = float(value)
                else:  # the mean over the ranks: the same numbers on all of them (raises
                    value, grads, count = dp.average(  # where another rank failed)
                        float(value) / share, grads, count, share)
                where = f"step {run.step + 1} (epoch {epoch}, batch {steps + 1})"
                _check_step(value, grads, where, run.step == history_start, run.model,
                            known)
            except BaseException:  # (an error in the loss, a NaN, another rank's failure,
                bar.close()  # Ctrl-C): the step never happened, its forward pass's writes
                before.put_back()  # too. (Ctrl-C within fl.update itself, once the update
                raise  # began, is not covered: the model may be partly updated then)
            before.learn()
            run.state, run.model = update(run.state, run.model, grads)
            run.step += 1
            run.loss = value
            history.add_step(value)
            samples += count
            total += value
            steps += 1
            elapsed = time.perf_counter() - start
            bar.update(value, samples / elapsed if elapsed > 0 else 0.0)
            for cb in callbacks:
                cb.on_step_end(run)
            if steps_agreed:  # one rank leaving its loop would leave the others waiting
                run.stop = dp.stop(run.stop)
            if run.stop:
                break
        bar.close()
        if steps == 0 and not run.stop:  # (the loss of no step: nan, and nothing trained)
            raise ValueError(f"train: epoch {epoch} gave no batches, so nothing was trained"
                             f"{_why_empty(data)}")
        elapsed = time.perf_counter() - start
        history.end_epoch(loss=total / steps if steps else math.nan, time=elapsed,
                          samples_per_second=samples / elapsed if elapsed > 0 else 0.0)
        if dp is not None:  # the ranks' BatchNorm statistics alike before evaluations
            dp.end_epoch(run.model)
        for cb in callbacks:
            cb.on_epoch_end(run)
        if dp is not None:
            run.stop = dp.stop(run.stop)
        if progress:
            _print(f"epoch {epoch}/{last_epoch}: {history.describe_epoch()}")
        if run.stop:
            break
    for cb in callbacks:
        cb.on_train_end(run)
    held = _nonfinite_gradient(run.model, known) if run.step > history_start else None
    if held is not None:  # (the last update made it: no later step's loss was there to see)
        raise TrainingError(f"train: after the last step, {run.step}, the model's {held[0]} "
                            f"{held[1]}: that step's update made it so (a learning rate too "
                            f"high, an optimiser state that overflowed); the history holds "
                            f"its finite loss, computed before the update")
    return history


def _length(data) -> int | None:
    """The batches of an epoch, for the progress bar (counted each epoch: a DataLoader over
    a list that grows gives more), or None where ``data`` has no ``len``."""
    try:
        return len(data)  # type: ignore[arg-type]
    except TypeError:
        return None


def _why_empty(data) -> str:
    """Why ``data`` gave an epoch no batch, for the error: a ``DataLoader`` with
    ``partial=False`` and fewer observations than ``batchsize`` (MLUtils warns and shrinks
    the batch; PyTorch's ``drop_last`` gives none, as here), or empty data."""
    from fluxml.data.loader import DataLoader

    if isinstance(data, DataLoader) and data.nobs and not data.partial:
        global_batch = data.batchsize * data._part()[1]
        return (f": the DataLoader's {data.nobs} observations are fewer than a batch of "
                f"{global_batch}, and partial=False drops the last, smaller batch. Pass a "
                f"smaller batchsize, or partial=True")
    return (f" ({type(data).__name__} is empty). Pass batches: a fl.DataLoader over "
            f"observations, a list of (x, y)")


def _acts_at_steps(callback) -> bool:
    """Whether ``callback`` may set ``run.stop`` in a step (it acts at steps, and is not one
    of fluxml's that never stop there: a schedule)."""
    kind = type(callback)
    if getattr(kind, "stops_at_steps", True) is False:
        return False
    return kind.on_step_begin is not Callback.on_step_begin or \
        kind.on_step_end is not Callback.on_step_end


def _check_signature(loss, model, args) -> None:
    """A clear error where ``loss`` cannot take ``(model, *batch)`` (PyTorch's and Keras's
    ``loss(prediction, target)`` is the usual slip), before the first call."""
    try:
        sig = inspect.signature(loss)
    except (TypeError, ValueError):  # a builtin or C function: its own error will do
        return
    try:
        sig.bind(model, *args)
    except TypeError as err:
        name = getattr(loss, "__name__", type(loss).__name__)
        raise TypeError(
            f"train: loss is called as loss(model, *batch), here with {1 + len(args)} "
            f"arguments (the model and a batch of {len(args)}), but {name}{sig} cannot take "
            f"them ({err}). Write it as def loss(model, x, y): return fl.mse(model(x), y)"
        ) from None


def _count(args, data=None) -> int:
    """Observations in a batch (for samples per second, and a rank's share of the global
    batch): what a ``DataLoader`` cut (a batch of list observations is a list of parts,
    whose len is no count), else the first part's first axis."""
    count = getattr(data, "_last_count", None)
    if count is not None:
        return count
    try:
        return numobs(args[0]) if args else 1
    except (TypeError, ValueError):
        return 1


def _print(line: str) -> None:
    try:
        from tqdm import tqdm

        tqdm.write(line, file=sys.stderr)
    except ImportError:
        print(line, file=sys.stderr, flush=True)


