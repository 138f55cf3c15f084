"""The training loop's progress bar: tqdm when it is installed, else a small text bar.

>>> from fluxml.progress import TextBar
>>> import io
>>> out = io.StringIO()
>>> bar = TextBar(4, "epoch 1/1", out, width=8, interval=0.0)
>>> bar.update(0.5, 100.0)
>>> out.getvalue().split("\\r")[-1]
'epoch 1/1 [==      ] 1/4 loss 0.5 100 samples/s'
"""

from __future__ import annotations

import sys
import time


class NoBar:
    def update(self, loss: float, rate: float) -> None:
        pass

    def close(self) -> None:
        pass


class TextBar:
    """``epoch 2/5 [=====     ] 30/60 loss 0.123 5,120 samples/s``, redrawn in place on a
    terminal (at most every ``interval`` seconds); elsewhere (a log file, a pipe) it prints
    nothing and the loop's one line per epoch is the record."""

    def __init__(self, total: int | None, desc: str, file=None, width: int = 24,
                 interval: float = 0.1, initial: int = 0):
        self.total, self.desc, self.width, self.interval = total, desc, width, interval
        self.file = sys.stderr if file is None else file
        self.count = initial
        self.last = -float("inf")
        isatty = getattr(self.file, "isatty", None)
        self.live = file is not None or bool(isatty and isatty())

    def update(self, loss: float, rate: float) -> None:
        self.count += 1
        now = time.perf_counter()
        if not self.live or (now - self.last < self.interval and self.count != self.total):
            return
        self.last = now
        if self.total:
            filled = self.width * self.count // self.total
            bar = f"[{'=' * filled}{' ' * (self.width - filled)}] {self.count}/{self.total}"
        else:
            bar = f"{self.count}"
        self.file.write(f"\r{self.desc} {bar} loss {loss:.4g} {rate:,.0f} samples/s")
        self.file.flush()

    def close(self) -> None:
        if self.live and self.count:
            self.file.write("\r\033[K" if self.file is sys.stderr else "\n")
            self.file.flush()


class TqdmBar:
    def __init__(self, total: int | None, desc: str, initial: int = 0):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc=desc, unit="batch", leave=False, dynamic_ncols=True,
                        initial=initial)

    def update(self, loss: float, rate: float) -> None:
        self.bar.set_postfix_str(f"loss {loss:.4g}, {rate:,.0f} samples/s", refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def progress_bar(total: int | None, desc: str, enabled: bool = True, initial: int = 0):
    """A bar for one epoch of ``total`` batches (None: unknown), ``initial`` of them done
    already (a run resumed within the epoch)."""
    if not enabled:
        return NoBar()
    try:
        return TqdmBar(total, desc, initial)
    except ImportError:
        return TextBar(total, desc, initial=initial)
