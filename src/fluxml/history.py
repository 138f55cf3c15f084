"""``History``: what ``fl.train`` records, the loss of every step and a row per epoch, and
its training-curve plot.

>>> import fluxml as fl
>>> h = fl.History()
>>> for loss in (1.0, 0.5, 0.25, 0.125):
...     h.add_step(loss)
...     if h.step % 2 == 0:
...         _ = h.end_epoch(loss=loss, accuracy=h.step / 4)
>>> h["accuracy"], h.step, h.epoch
([0.5, 1.0], 4, 2)
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from fluxml._checks import is_real, shown

# each epoch's own entries, which a metric may not write over (History.log)
OWN = {"epoch": "its number", "step": "the step count at its end",
       "loss": "the mean training loss of its steps", "time": "its seconds",
       "samples_per_second": "its observations per second"}


class History:
    """``losses``: the loss of each step; ``epochs``: one dict per epoch (``epoch``,
    ``step`` at its end, ``loss`` (the mean over its steps), ``time``, and the metrics that
    callbacks added). ``history["name"]`` lists a metric over the epochs (None where an
    epoch lacks it). ``kept``: what a callback keeps for a run continued from this history
    (``EarlyStopping(restore_best=True)``: its best epoch and that epoch's weights), by the
    callback's key (in the history of a file ``SaveCheckpoint(steps=k)`` saved within an
    epoch, ``"within an epoch"``: the run's place there, which ``fl.train`` takes out).
    ``to_dict`` / ``from_dict`` go through a checkpoint's ``extra`` (plain JSON, but for
    the arrays of ``kept``, which the checkpoint keeps as tensors).

    >>> import fluxml as fl
    >>> h = fl.History(losses=[0.9, 0.5, 0.4], epochs=[{"epoch": 1, "step": 3, "loss": 0.6}])
    >>> h["loss"], fl.History.from_dict(h.to_dict())["step"]
    ([0.6], [3])
    """

    def __init__(self, losses: list[float] | None = None, epochs: list[dict] | None = None,
                 kept: dict[str, dict] | None = None):
        if isinstance(losses, np.ndarray) and losses.ndim == 1 and losses.dtype.kind in "fiu":
            losses = losses.tolist()  # (saved with np.save, or h["loss"] as an array)
        _check_parts(losses, epochs, kept)
        self.losses: list[float] = list(losses or [])
        self.epochs: list[dict[str, Any]] = list(epochs or [])
        self.kept: dict[str, dict] = dict(kept or {})

    @property
    def step(self) -> int:
        return len(self.losses)

    @property
    def epoch(self) -> int:
        return len(self.epochs)

    def add_step(self, loss: float) -> None:
        if type(loss) is not float and not is_real(loss):  # (a string was parsed)
            raise TypeError(f"History.add_step: loss must be a number; got "
                            f"{shown(loss, typed=True)}")
        self.losses.append(float(loss))

    def end_epoch(self, **metrics) -> dict:
        row = {"epoch": self.epoch + 1, "step": self.step, **metrics}
        self.epochs.append(row)
        return row

    def log(self, **metrics) -> None:
        """Add metrics to the last epoch's row (callbacks call this at an epoch's end). The
        row's own entries (``epoch``, ``step``, ``loss``, ``time``, ``samples_per_second``)
        are refused: written over, the training loss was lost, silently, and a resumed run
        misread its place from ``step``."""
        if not self.epochs:
            raise ValueError("History.log: no epoch has ended yet")
        taken = [k for k in metrics if k in OWN]
        if taken:
            raise ValueError(f"History.log: {taken[0]!r} is the history's own entry of each "
                             f"epoch ({OWN[taken[0]]}); name the metric otherwise, as "
                             f"'val_{taken[0]}'")
        self.epochs[-1].update(metrics)

    def __getitem__(self, name: str) -> list:
        if not any(name in row for row in self.epochs):
            known = sorted({k for row in self.epochs for k in row})
            raise KeyError(f"History: no metric {name!r}; it has {known}")
        return [row.get(name) for row in self.epochs]

    def describe_epoch(self, row: dict | None = None) -> str:
        """One line for an epoch: its loss, metrics, time and samples per second."""
        row = self.epochs[-1] if row is None else row
        parts = [f"{k} {_fmt(v)}" for k, v in row.items()
                 if k not in ("epoch", "step", "time", "samples_per_second")]
        if "time" in row:
            parts.append(f"{row['time']:.2f} s")
        if row.get("samples_per_second"):
            parts.append(f"{row['samples_per_second']:,.0f} samples/s")
        return ", ".join(parts)

    def to_dict(self) -> dict:
        """``{"losses", "epochs"}``, and ``"kept"`` where a callback keeps something."""
        out = {"losses": self.losses, "epochs": self.epochs}
        if self.kept:  # (absent otherwise: the dict of a plain run stays plain JSON)
            out["kept"] = self.kept
        return out

    @classmethod
    def from_dict(cls, d: dict) -> History:
        if not (isinstance(d, dict) and "losses" in d and "epochs" in d):  # (a KeyError, or
            raise TypeError(f"History.from_dict: d must be a dict with 'losses' and "  # string
                            f"'epochs', as to_dict gives (a checkpoint's "  # indices ...)
                            f"info.extra['history']); got "
                            f"{sorted(d) if isinstance(d, dict) else shown(d)}")
        return cls(d["losses"], d["epochs"], d.get("kept"))

    def __repr__(self) -> str:
        last = f", last loss {self.losses[-1]:.4g}" if self.losses else ""
        steps = f"{self.step} step{'' if self.step == 1 else 's'}"
        return f"History({steps}, {self.epoch} epoch{'' if self.epoch == 1 else 's'}{last})"

    def plot(self, path, metrics: list[str] | None = None, title: str | None = None):
        """Write a PNG of the training curves to ``path``: the step losses (and the epochs'
        mean loss) on a log scale, and beside them the other metrics per epoch (or those
        named in ``metrics``). Needs matplotlib (``pip install fluxml[plot]``)."""
        try:
            from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state
        except ImportError:
            raise ImportError("History.plot needs matplotlib: pip install 'fluxml[plot]' (or "
                              "matplotlib)") from None
        if isinstance(metrics, str):  # (its characters were taken as names: no metric 'a')
            raise TypeError(f"History.plot: metrics must be a list of metric names; got "
                            f"{metrics!r} (a str): write metrics=[{metrics!r}]")
        if not isinstance(path, (str, os.PathLike)) and not hasattr(path, "write"):
            raise TypeError(f"History.plot: path must be a file path (or a file open for "
                            f"binary writing); got {shown(path, typed=True)}")
        skip = {"epoch", "step", "loss", "time", "samples_per_second"}
        names = metrics if metrics is not None else sorted(
            {k for row in self.epochs for k, v in row.items()
             if k not in skip and isinstance(v, (int, float))})
        for name in names:
            self[name]  # a clear KeyError for an unknown metric
        fig = Figure(figsize=(10 if names else 5.5, 3.8))
        axes = fig.subplots(1, 2 if names else 1, squeeze=False)
        ax = axes[0, 0]
        steps = range(1, self.step + 1)
        positive = all(v > 0 for v in self.losses)
        ax.plot(steps, self.losses, lw=0.8, alpha=0.6, label="step loss")
        if self.epochs and "loss" in self.epochs[0]:
            ax.plot([r["step"] for r in self.epochs], self["loss"], "o-", label="epoch mean")
        if positive and self.losses:
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.legend()
        if names:
            ax = axes[0, 1]
            for name in names:
                ys = self[name]
                ax.plot([r["epoch"] for r in self.epochs], ys, "o-", label=name)
            ax.set_xlabel("epoch")
            ax.xaxis.get_major_locator().set_params(integer=True)
            ax.legend()
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        return path


def _check_parts(losses, epochs, kept) -> None:
    """What ``History`` is made of: a string for losses or epochs became a list of its
    characters, silently, and a number Python's 'not iterable'."""
    for name, part, kind, fits in (("losses", losses, "a list of numbers", is_real),
                                   ("epochs", epochs, "a list of dicts, one per epoch",
                                    lambda x: isinstance(x, dict))):
        listed = isinstance(part, (list, tuple))
        if part is None or listed and (name == "losses" and all(type(x) is float for x in part)
                                       or all(map(fits, part))):
            continue  # (the losses of a long run: one type test each)
        bad = next(x for x in part if not fits(x)) if listed else part
        raise TypeError(f"History: {name} must be {kind}; got {shown(bad, typed=True)}"
                        f"{' in it' if listed else ''}")
    if kept is not None and not isinstance(kept, dict):
        raise TypeError(f"History: kept must be a dict (what callbacks keep, by name); got "
                        f"{shown(kept, typed=True)}")


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else str(v)
    return str(v)
