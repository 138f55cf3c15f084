"""The kill-and-resume fuzzer's checks (tests/training/fuzz_resume.py calls them) of runs
that must start an epoch again, from its first batch, with a warning, as no data gives the
batches of the steps their history holds of it:

- a run killed within an epoch (a callback or the loss raising), continued in its process
  with its own history, model, loader and optimiser state, as after Ctrl-C: its loader
  has drawn the epoch's order since (fl.train skipped batches of another order, silently);
- a run resumed from a checkpoint saved within an epoch with a loader cutting batches of
  another size (fl.train skipped the history's count of them, and where they were fewer,
  carried the rest into the next epochs).

Either way each epoch trains all the loader's batches, and its row's step and mean loss
come from the step losses.
"""

from __future__ import annotations

import warnings

import fluxml as fl
from tests.training.fuzz_runs import same

RESTART = "starts again from its first batch"


def _rows_from(history_or_outcome, start: int, per: int, what: str) -> None:
    """The rows after step ``start``: ``per`` steps each, their mean loss in order."""
    losses, rows = history_or_outcome
    for i, row in enumerate(rows):
        lo = start + i * per
        total = 0.0
        for v in losses[lo:lo + per]:
            total += v
        same((row["step"], row["loss"]), (lo + per, total / per),
             f"{what}: its epoch {row['epoch']}'s row: (step, mean loss)")


def _into(history: dict) -> int:
    """The steps a history (as a dict) holds past its last epoch's end."""
    ended = history["epochs"][-1]["step"] if history["epochs"] else 0
    return len(history["losses"]) - ended


def check_continued(spec, model, state, parts, log) -> None:
    """The killed run continued in its process for an epoch (no callbacks)."""
    from tests.training import fuzz_resume as fr

    history, loader = parts["history"], parts["loader"]
    start, rows = history.step, history.epoch
    into = _into(history.to_dict())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fl.train(fr.loss_of(spec), model, loader, state, history=history, progress=False,
                 compile=spec.compile)
    restarted = [w for w in caught if RESTART in str(w.message)]
    what = f"continued in its process after a kill at step {start} ({into} into its epoch)"
    same(len(restarted), 1 if into else 0, f"{what}: the warnings that it starts again")
    _rows_from((history.losses, history.epochs[rows:]), start, fr._epoch_steps(spec), what)
    log(f"{what}: {'restarted' if into else 'went on'}, an epoch of {fr._epoch_steps(spec)}")


def check_fewer_batches(spec, path, folder, log) -> None:
    """The run resumed from ``path`` (saved within an epoch) with batches twice as big."""
    from fluxml.io import extra, safetensors
    from tests.training import fuzz_resume as fr

    tensors, meta = safetensors.read(path)  # (the step losses are a tensor "extra.<i>")
    arrays = {int(name.split(".", 1)[1]): x for name, x in tensors.items()
              if name.startswith("extra.")}
    saved = extra.loads(meta["fluxml.extra"], arrays)["history"]
    bigger = 2 * spec.batchsize
    per = spec.nobs // bigger + (1 if spec.partial and spec.nobs % bigger else 0)
    if not _into(saved) or per == 0:
        return
    got, _ = fr.resumed(spec, path, folder, batchsize=bigger)
    what = f"resumed from {path.rsplit('/', 1)[-1]} with batches of {bigger}"
    same(len(got["restarted"]), 1, f"{what}: the warnings that it starts again")
    _rows_from((got["losses"], got["rows"][len(saved["epochs"]):]), len(saved["losses"]),
               per, what)
    log(f"{what}: restarted, epochs of {per}")
