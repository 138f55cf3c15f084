"""Synchronised BatchNorm: in training mode, the batch statistics of every rank's batch
together, as one process with the concatenated batch would compute them.

``sync_batchnorm(model)`` returns the model with each ``BatchNorm`` made a ``SyncBatchNorm``
(the same arrays: parameters and running statistics are shared with ``model``; train the
returned one). In training mode a ``SyncBatchNorm`` computes the mean with one allreduce
(each channel's sum, and the count) and the variance with a second (the sum of squared
deviations from that mean: the two-pass formula, as accurate as one process's), then
normalises its own part of the batch. The running statistics get the global mean and the
unbiased global variance, so they stay the same on every rank. In test mode it is a
``BatchNorm`` (running statistics, no communication).

Differentiable: the transpose of a sum over ranks is a sum over ranks, so the backward pass
allreduces the cotangents of the two statistics (two more allreduces). Ranks are weighed as
the gradient averaging weighs them: rank ``r``'s cotangent by its batch size ``n_r``
(``Σ n_r ct_r / n_s`` on rank ``s``, whose gradient the averaging then scales by ``n_s /
N``); where rank ``r``'s loss was multiplied by ``a_r`` before the backward pass
(``GradientAverager.share``, as ``fl.train`` does; the averaging then only sums), by ``n_r /
a_r``. So with unequal batches the gradient is still that of the mean loss over the global
batch, provided each rank's loss is a mean over the batch its BatchNorm layers see (the
usual case). Every rank must run the same layers in the same order in training mode (the
statistics are collectives): a rank that does not makes the others stop with a timeout
naming it. Higher-order derivatives through a ``SyncBatchNorm`` across ranks are refused
(not checked); in one process everything is plain BatchNorm arithmetic. ``fl.compile`` of a
``SyncBatchNorm`` in training mode is refused: a clear error (its statistics are collectives
run as the step runs).

>>> import numpy as np, fluxml as fl
>>> model = fl.distributed.sync_batchnorm(fl.Chain(fl.Dense(3, 4), fl.BatchNorm(4)))
>>> model[1]
SyncBatchNorm(4)  # 8 parameters, plus 8 non-trainable
"""

from __future__ import annotations

import numpy as np

from fluxml.ad.core import COMPILING, DifferentiationError, Tracer, compiling, raw
from fluxml.ad.define import defjvp, defvjp, primitive
from fluxml.backend.registry import array_module
from fluxml.distributed.group import group
from fluxml.distributed.sync import _host
from fluxml.layers.module import is_active
from fluxml.layers.normalise import BatchNorm
from fluxml.tree import is_array_leaf
from fluxml.treemaps import fmap


def _allreduce(x, *, weight):
    """The sum of ``x`` over the ranks (a new array)."""
    g = group()
    if g.size == 1:
        return x.copy()
    buf = np.array(_host(x), copy=True)
    g.wait([g.comm.Iallreduce(g.MPI.IN_PLACE, buf, op=g.MPI.SUM)],
           "the batch statistics of a SyncBatchNorm")
    return array_module(x).asarray(buf)  # (a GPU array's back to its device)


ALLREDUCE = primitive("allreduce_sum", _allreduce, keeps_inputs=False, keeps_output=False)


def _once(v):
    if type(v) is Tracer and group().size > 1:
        raise DifferentiationError(
            "SyncBatchNorm: higher-order derivatives through the statistics synchronised "
            "across ranks are not supported; differentiate once, or use BatchNorm")
    return v


defvjp(ALLREDUCE, lambda g, ans, x, *, weight:
       ALLREDUCE(_once(g) * weight, weight=weight) / max(weight, 1))
defjvp(ALLREDUCE, lambda t, ans, x, *, weight: ALLREDUCE(_once(t), weight=weight))


class SyncBatchNorm(BatchNorm):
    """``BatchNorm`` whose training-mode statistics are those of the batches of all ranks
    together (see ``fluxml.distributed.batchnorm``); made by ``sync_batchnorm(model)`` or
    as a BatchNorm is, ``SyncBatchNorm(channels, ...)``.

    >>> import numpy as np, fluxml as fl
    >>> bn = fl.distributed.SyncBatchNorm(2)
    >>> x = np.array([[0.0, 1.0], [2.0, 5.0]], np.float32)
    >>> fl.trainmode(bn)(x)          # one process: the batch's own statistics
    array([[-0.999995 , -0.9999988],
           [ 0.999995 ,  0.9999988]], dtype=float32)
    """

    def __call__(self, x):
        x = self._input(x)
        if not is_active(self, x):
            return super().__call__(x)  # running statistics (or this rank's batch's)
        if COMPILING and compiling() is not None:
            if group().size == 1:  # nothing to sum: BatchNorm's arithmetic, which compiles
                return super().__call__(x)
            from fluxml.compiler.trace import CompileError

            raise CompileError(
                f"{self._called()}: its training-mode statistics are summed across the ranks as "
                f"the step runs (MPI), which fl.compile cannot record; train it without "
                f"compile (fl.train(..., compile=False)), or use BatchNorm")
        axes = (0,) + tuple(range(2, x.ndim))
        shape = (1, -1) + (1,) * (x.ndim - 2)
        # this rank's cotangents weigh by its batch size over what its loss is multiplied by
        # (fl.train folds its share of the global batch into the loss: GradientAverager.share)
        weight = raw(x).shape[0] / group().share
        local = np.concatenate([np.sum(x, axis=axes), np.full(1, x.size // self.channels,
                                                                   raw(x).dtype)])
        sums = ALLREDUCE(local, weight=weight)
        count = int(round(float(raw(sums)[-1])))
        mean = sums[:-1] / count
        centred = x - np.reshape(mean, shape)
        var = ALLREDUCE(np.sum(centred * centred, axis=axes), weight=weight) / count
        y = centred / np.sqrt(np.reshape(var, shape) + self.eps)
        scale, bias = self._channel_affine(x.ndim)
        if scale is not None:
            y = y * scale + bias
        if self.running_mean is not None:
            self._update_stats(mean, var, count)
        return self._activate(y)

    def _line(self) -> str:
        return "Sync" + super()._line()


def sync_batchnorm(model):
    """``model`` with each ``BatchNorm`` a ``SyncBatchNorm`` sharing its arrays (the
    containers are new; the parameters and running statistics are ``model``'s own).

    >>> import fluxml as fl
    >>> fl.distributed.sync_batchnorm([fl.BatchNorm(3), fl.Dense(3, 1)])[0]
    SyncBatchNorm(3)  # 6 parameters, plus 6 non-trainable
    """

    def convert(x):
        if type(x) is BatchNorm:
            sync = object.__new__(SyncBatchNorm)
            sync.__dict__.update(x.__dict__)
            return sync
        return x

    return fmap(convert, model, is_leaf=lambda x: isinstance(x, BatchNorm) or
                is_array_leaf(x))
