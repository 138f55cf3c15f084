"""Going on with an epoch that a run stopped within: what ``SaveCheckpoint(steps=k)``
records of the run's place in it, and what ``fl.train`` makes of that.

The history of a checkpoint saved within an epoch holds the epoch's steps so far. The run
resumed from it must skip the batches those steps trained on, and that is right only where
the data gives that epoch's batches in the same order again: a ``DataLoader`` whose
generator the checkpoint restored (its order is drawn again from the generator as the
epoch began), or a list or tuple of batches of the same length. Anywhere else (a run
stopped by Ctrl-C or an error and continued in the same process: its loader has drawn
another order since; a loader not restored; an iterable whose order fluxml cannot know)
the epoch starts again from its first batch, with a warning.
"""

from __future__ import annotations

import itertools
import warnings

WITHIN = "within an epoch"  # the key of the place in ``history.kept``


def place(run) -> dict:
    """The run's place within its epoch, kept in the history a checkpoint saves there: the
    step, and where the data stood (a ``DataLoader``'s generator as the pass began and now,
    and its cut; a list's length)."""
    from fluxml.data.loader import DataLoader

    data = run.data
    if isinstance(data, DataLoader):  # (None where another pass began since fl.train's)
        return {"step": run.step,  # (a run not of fl.train's: the loader's last pass)
                "loader": data._mark(getattr(run, "_data_pass", data._passes))}
    if isinstance(data, (list, tuple)):
        return {"step": run.step, "batches": len(data)}
    return {"step": run.step}


def passes(data) -> int | None:
    """The passes a ``DataLoader`` has begun (fl.train notes the count as it draws the
    first batch of an epoch: the pass it trains on), None for other data."""
    from fluxml.data.loader import DataLoader

    return data._passes if isinstance(data, DataLoader) else None


def steps_into_epoch(history) -> int:
    """The steps ``history`` holds after its last epoch's end (a run stopped within an
    epoch)."""
    ended = history.epochs[-1].get("step", history.step) if history.epochs else 0
    return max(0, history.step - ended) if isinstance(ended, int) else 0


def rest_of_epoch(data, history, mark, done: int, epoch: int):
    """``(batches, skipped)``: for an epoch that ``history`` holds ``done`` steps of, the
    batches after those (``skipped`` True), where ``mark`` (the history's :func:`place`)
    shows the data gives them in the same order; else all of ``data`` again, with a
    warning saying why."""
    from fluxml.data.loader import DataLoader

    if not isinstance(mark, dict):
        why = ("it holds no place within the epoch saved by SaveCheckpoint(steps=k) (a run "
               "stopped by an error or Ctrl-C and continued in this process, a checkpoint "
               "saved otherwise, or a History made by hand), so the batches of those steps "
               "are not known")
    elif mark.get("step") != history.step:
        why = (f"the place within it that SaveCheckpoint(steps=k) saved is of step "
               f"{mark.get('step')}, the history's is {history.step}")
    elif isinstance(data, DataLoader):
        loader = mark.get("loader", False)
        rest = data._go_on(loader, done) if isinstance(loader, dict) else \
            "the run's data was no DataLoader" if loader is False else \
            ("another pass over the DataLoader began within the epoch before the checkpoint "
             "was saved (a callback iterating run.data), so the generator's state as the "
             "training's pass began was not saved")
        if not isinstance(rest, str):
            return rest, True
        why = rest
    elif isinstance(data, (list, tuple)):
        if mark.get("batches") == len(data) and done <= len(data):
            return itertools.islice(data, done, None), True
        why = (f"the data holds {len(data)} batches, the run's held "
               f"{mark.get('batches', 'no list of them')}")
    else:
        why = (f"fluxml cannot tell whether a {type(data).__name__} gives its batches in the "
               f"same order again (a DataLoader restored from the checkpoint or a list does)")
    warnings.warn(f"train: the history holds {done} step{'s' if done > 1 else ''} of epoch "
                  f"{epoch} past its last epoch's end, but {why}: epoch {epoch} starts again "
                  f"from its first batch (the batches of those steps are trained again)",
                  stacklevel=4)
    return data, False
