"""``DataParallel``: what ``fl.train(..., distributed=True)`` does around its loop.

At the start every rank takes rank 0's parameters, optimiser state and data-loader generator
(so a checkpoint that only rank 0 loaded resumes everywhere, whatever the number of ranks
that saved it); each step the gradients and the loss are averaged (``GradientAverager``); an
exception on one rank is sent to the others before it propagates, so they stop with a
``RankError`` naming it.

>>> import numpy as np, fluxml as fl
>>> model = {"w": np.ones(2)}
>>> dp = fl.distributed.DataParallel(model, fl.setup(fl.Descent(), model), [np.ones(2)])
>>> dp.is_main, dp.average(1.5, {"w": np.ones(2)}, 2)[0]
(True, 1.5)
"""

from __future__ import annotations

import contextlib

import numpy as np

from fluxml._checks import flag
from fluxml.distributed.averaging import GradientAverager
from fluxml.distributed.group import DistributedError, init, on_every_rank
from fluxml.distributed.sync import (
    allgather_object,
    any_rank,
    average_statistics,
    broadcast,
    broadcast_object,
)


class DataParallel:
    """Joins the job (``fl.distributed.init()``), checks that a ``DataLoader`` is sharded,
    and broadcasts ``model``, ``state`` and the loader's ``rng`` from rank 0. ``model`` and
    ``state`` are the synchronised objects (the same ones, except where a tuple or number at
    the root had to be rebuilt)."""

    def __init__(self, model, state, data, bucket_bytes: int = 1 << 20,
                 overlap: bool = False):
        from fluxml.data.loader import DataLoader

        self.group = init()
        self.overlap = flag("DataParallel", "overlap", overlap)
        self.is_main = self.group.rank == 0
        if isinstance(data, DataLoader) and self.group.size > 1 and data.shard is None:
            raise ValueError(f"train(distributed=True): the DataLoader is not sharded, so "
                             f"all {self.group.size} ranks would train on the same batches; "
                             f"pass DataLoader(..., shard=True) (batchsize is then per rank)")
        with self.failures():
            self.model = broadcast(model)
            self.state = broadcast(state) if state is not None else None
            rng = getattr(data, "rng", None)
            if isinstance(rng, np.random.Generator):
                rng.bit_generator.state = broadcast_object(rng.bit_generator.state)
                if isinstance(data, DataLoader):  # (its first iteration need not again)
                    data._unsynced = False
            _same_length(self.group, data)
            # the gradients come fresh from each step's backward pass: the large ones are
            # averaged in their own arrays where they travel (not through shared memory)
            self.averager = GradientAverager(bucket_bytes, in_place=True)

    def share(self, count: int) -> float:
        """What this rank's loss is multiplied by before it is differentiated (its share of
        the global batch, or 1 where it cannot be folded in: an empty batch): the gradients
        then come out of the backward pass ready to be summed."""
        share = self.averager.share(count)
        return share if share > 0 else 1.0

    def begin(self, count: int, share: float | None = None):
        """The ``on_final`` callback for this step's ``withgradient`` where ``overlap`` (the
        averaging starts during the backward pass: ``GradientAverager.begin``), else None."""
        return self.averager.begin(count, share) if self.overlap else None

    def average(self, loss: float, grads, count: int, share: float | None = None):
        """``(mean loss, averaged gradients, global batch size)``; ``share``: what ``grads``
        were multiplied by (``loss`` is the unscaled one)."""
        return self.averager.average(loss, grads, count, share)

    def end_epoch(self, model) -> None:
        """Before the epoch's callbacks read ``model``: its running statistics averaged over
        the ranks where they differ (``average_statistics``)."""
        average_statistics(model)

    def stop(self, stop: bool) -> bool:
        """After the epoch's callbacks: every rank stops if any rank's asked to (an
        evaluation on each rank's own data can decide otherwise on one rank, which would
        leave the others waiting for it)."""
        return any_rank(stop, "whether a callback stopped training")

    def finish(self, model, state) -> None:
        """When training ends: every rank takes rank 0's model and optimiser state, so that
        callbacks that acted on each rank's own numbers (``EarlyStopping(restore_best=True)``
        after an evaluation on each rank's data) leave no rank with other weights."""
        broadcast(model)
        if state is not None:
            broadcast(state)

    @contextlib.contextmanager
    def failures(self):
        """Tell the other ranks when this one raises, then let the error go on."""
        from fluxml.training import TrainingError

        try:
            yield
        except BaseException as err:
            if isinstance(err, TrainingError):  # raised on the averaged loss or gradient:
                on_every_rank(err)  # every rank stops at the same step with the same error
            self.group.notify_failure(err)
            averager = getattr(self, "averager", None)
            # an error on every rank leaves the job usable: a step begun (overlap) is
            # abandoned, its messages sent and waited for, so the next step's meet their own.
            # After one rank's failure the job ends: waiting would only delay that
            if averager is not None and getattr(err, "on_every_rank", False):
                with contextlib.suppress(Exception):  # the original error wins
                    averager.abandon()
            raise


def _same_length(group, data) -> None:
    """Every rank must run as many steps per epoch: a rank with fewer batches would have its
    next epoch's steps averaged with the others' last ones, silently, and end early while
    they wait for it. Checked where every rank's ``data`` has a length. Sharded DataLoaders
    must also cut the same data alike: each rank takes its part of global batches drawn from
    its own copy, so a rank with another number of observations (or batch size, shuffle,
    partial) would train on parts that overlap or leave observations out, silently; and
    each rank must take its own part (``shard=(rank, nranks)`` given by hand)."""
    if group.size == 1:
        return
    from fluxml.data.loader import DataLoader

    try:
        n = len(data)
    except TypeError:
        n = None
    sharded = isinstance(data, DataLoader) and data.shard is not None
    cut = (data.nobs, data.batchsize, data.shuffle, data.partial) if sharded else None
    part = data._part() if sharded else None
    everyone = allgather_object(group, (n, cut, part), "the number of batches per epoch")
    parts = [p for _, _, p in everyone]
    if None not in parts and parts != [(r, group.size) for r in range(group.size)]:
        raise on_every_rank(DistributedError(
            f"train(distributed=True): the ranks' DataLoaders take the shards "
            f"{', '.join(f'rank {r}: {p}' for r, p in enumerate(parts))} (rank, nranks) of a "
            f"job of {group.size} ranks; each rank must take its own part: pass "
            f"DataLoader(..., shard=True)"))
    cuts = [c for _, c, _ in everyone]
    if None not in cuts and len(set(cuts)) > 1:
        raise on_every_rank(DistributedError(
            "train(distributed=True): the ranks' sharded DataLoaders cut different data ("
            + "; ".join(f"rank {r}: {c[0]} observations, batchsize {c[1]}, shuffle {c[2]}, "
                    f"partial {c[3]}" for r, c in enumerate(cuts)) + "); each rank "
            "takes its part of the same global batches, so every rank must load the same "
            "data set into a DataLoader made alike"))
    lengths = [k for k, _, _ in everyone]
    if None in lengths or len(set(lengths)) == 1:
        return
    raise on_every_rank(DistributedError(
        "train(distributed=True): the ranks have different numbers of batches per epoch ("
        + ", ".join(f"rank {r}: {k}" for r, k in enumerate(lengths)) + "); every step "
        "averages one batch of each rank, so each needs as many: give each rank the same "
        "number of batches, or use DataLoader(..., shard=True), which does"))
