"""Data-parallel training on MPI (``mpi4py``; ``pip install 'fluxml[distributed]'``).

Launch one process per rank with ``mpiexec -n 4 python train.py``; in the script,
``fl.train(..., distributed=True)`` with a ``DataLoader(..., shard=True)`` does the rest:
rank 0's parameters, optimiser state and shuffle generator go to every rank, each rank
trains on its own part of every global batch, gradients are averaged in a few flat buffers,
only rank 0 prints progress and saves checkpoints. ``sync_batchnorm(model)`` makes its
BatchNorm layers use the statistics of the global batch. ``mpi4py`` is imported by
``init()``, not by ``import fluxml``.

>>> import fluxml as fl
>>> fl.distributed.world_size()
1
"""

from fluxml.distributed.averaging import GradientAverager
from fluxml.distributed.batchnorm import SyncBatchNorm, sync_batchnorm
from fluxml.distributed.group import (
    DistributedError,
    DistributedTimeout,
    Group,
    RankError,
    group,
    init,
    is_main,
    rank,
    world_size,
)
from fluxml.distributed.parallel import DataParallel
from fluxml.distributed.sync import average_statistics, broadcast, broadcast_object, check_synced

__all__ = [
    "DataParallel", "DistributedError", "DistributedTimeout", "GradientAverager", "Group",
    "average_statistics",
    "RankError", "broadcast", "broadcast_object", "check_synced", "group", "init", "is_main",
    "rank", "SyncBatchNorm", "sync_batchnorm", "world_size",
]
