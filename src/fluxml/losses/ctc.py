"""Connectionist temporal classification (Graves et al. 2006): the negative log-likelihood of a
label sequence under all alignments of it to the frames of an input, summed by the forward
algorithm in log space. Differentiable by the engine (any order): the recursion is ordinary
NumPy over traced arrays, one vectorised step per frame.

>>> import numpy as np, fluxml as fl
>>> logits = np.zeros((4, 3))  # 4 frames, 2 labels and the blank (the last class)
>>> round(float(fl.ctc_loss(logits, np.array([0, 1]))), 4)  # -log(15 alignments / 3**4)
1.6864
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from fluxml._checks import is_int
from fluxml.backend.moving import cpu
from fluxml.backend.registry import array_module
from fluxml.losses.common import Agg, aggregate, logsoftmax

# log(0) stand-in: finite, so logaddexp's derivative stays finite on impossible paths
NEG = -1e30


def ctc_loss(yhat, y, *, blank: int = -1, input_lengths: ArrayLike | None = None,
             agg: Agg = "mean"):
    """CTC loss of logits ``yhat`` (log-softmax is applied along the class axis) against
    integer labels ``y``; ``blank`` is the blank class (the last by default, as Flux).

    - One sequence: ``yhat`` of shape ``(T, classes)`` and ``y`` a 1-d label array; returns
      the scalar ``-log p(y | yhat)``, as Flux's ``ctc_loss``.
    - A batch: ``yhat`` of shape ``(N, T, classes)``, ``y`` a list of N 1-d label arrays (or
      an ``(N, L)`` array), ``input_lengths`` the frames each sample uses (all ``T`` by
      default); returns ``agg`` of the N losses. PyTorch: ``ctc_loss(log_softmax(yhat).
      transpose(0, 1), ..., reduction="none")`` gives the same N losses (its "mean" divides
      each by its label length; ``agg="mean"`` here is the plain mean of the N losses).

    A sequence with too few frames for its labels (each label one frame, and a blank between
    two equal ones) is a ValueError, where PyTorch returns an infinite loss.

    >>> import numpy as np, fluxml as fl
    >>> loss = fl.ctc_loss(np.zeros((3, 2)), np.array([0]))  # 3 frames of (0, blank), even
    >>> bool(np.isclose(loss, -np.log(6 / 8)))  # 6 of the 8 paths read "0"
    True
    """
    shape = np.shape(yhat)
    single = len(shape) == 2
    if single:
        yhat = yhat[None]
        y = [y]
        shape = (1,) + shape
    elif len(shape) != 3:
        raise ValueError(f"ctc_loss: logits must have shape (T, classes) or (N, T, classes); "
                         f"got {shape}")
    n, frames, classes = shape
    if not (is_int(blank) and -classes <= blank < classes):  # (blank % classes took any int)
        raise ValueError(f"ctc_loss: blank must be a class index, an int in [{-classes}, "
                         f"{classes}) for logits of {classes} classes; got {blank!r}")
    blank = int(blank) % classes
    # labels and lengths shape the recursion (Python's loop and checks): read on the host,
    # where they are on a GPU; the arrays the recursion computes with go to the logits' own
    xp = array_module(yhat)
    labels = [np.asarray(cpu(lab)) for lab in y]
    if len(labels) != n:
        raise ValueError(f"ctc_loss: {n} sequences of logits but {len(labels)} label sequences")
    lengths = np.full(n, frames) if input_lengths is None else np.asarray(cpu(input_lengths))
    if single and lengths.ndim == 0:
        lengths = lengths.reshape(1)
    if lengths.shape != (n,):  # (zip would skip the checks of the sequences past its end)
        raise ValueError(f"ctc_loss: input_lengths must hold one length per sequence, {n}; "
                         f"got shape {lengths.shape}")
    if lengths.size and lengths.dtype.kind not in "iu":  # (2.5 ran 3 frames, True 1)
        raise ValueError(f"ctc_loss: input_lengths must be integers (frame counts); got "
                         f"{lengths.tolist()} of dtype {lengths.dtype}")
    _check(labels, lengths, frames, classes, blank)
    if n == 0:  # an empty batch: no losses (the mean of none is NaN, as other losses')
        return aggregate(np.sum(yhat, axis=(1, 2)), agg)

    ext, skip = _extended(labels, blank)  # (N, S) extended labels, where a skip is allowed
    ends = np.array([2 * len(lab) for lab in labels])  # the last blank; the last label is -1
    if xp is not np:
        ext, skip, ends, lengths = (xp.asarray(a) for a in (ext, skip, ends, lengths))
    logp = logsoftmax(yhat, axis=-1)
    idx = xp.ascontiguousarray(xp.broadcast_to(ext[:, None, :], (n, frames, ext.shape[1])))
    emit = np.take_along_axis(logp, idx, axis=-1)  # (N, T, S): log p of each state's label

    dtype = emit.dtype
    # log 0, finite in the dtype: float16 rounds -1e30 to -inf, and logaddexp of two -inf
    # (two states not yet reached) has a NaN derivative, which spread to every gradient
    neg = max(NEG, float(np.finfo(dtype).min) / 8)
    neg1 = xp.full((n, 1), neg, dtype=dtype)
    neg2 = xp.full((n, 2), neg, dtype=dtype)
    start = xp.full(ext.shape, neg, dtype=dtype)
    start[:, :2] = 0.0
    alpha = emit[:, 0, :] + start
    for t in range(1, frames):
        stay_or_next = np.logaddexp(alpha, np.concatenate([neg1, alpha[:, :-1]], axis=1))
        jump = np.where(skip, np.concatenate([neg2, alpha[:, :-2]], axis=1), neg)
        new = np.logaddexp(stay_or_next, jump) + emit[:, t, :]
        alpha = new if input_lengths is None else np.where((t < lengths)[:, None], new, alpha)

    last = np.take_along_axis(alpha, ends[:, None], axis=1)[:, 0]
    before = np.take_along_axis(alpha, np.maximum(ends - 1, 0)[:, None], axis=1)[:, 0]
    before = np.where(ends > 0, before, neg)
    losses = -np.logaddexp(last, before)
    return losses[0] if single else aggregate(losses, agg)


def _check(labels, lengths, frames, classes, blank):
    for i, (lab, steps) in enumerate(zip(labels, lengths)):
        if lab.ndim != 1 or (lab.size and lab.dtype.kind not in "iu"):
            raise ValueError(f"ctc_loss: labels must be 1-d integer arrays; sequence {i} has "
                             f"shape {lab.shape} and dtype {lab.dtype}")
        if lab.size and (lab.min() < 0 or lab.max() >= classes or np.any(lab == blank)):
            raise ValueError(f"ctc_loss: labels of sequence {i} must lie in [0, {classes}) and "
                             f"not be the blank {blank}; got {lab.tolist()}")
        if not 1 <= steps <= frames:
            raise ValueError(f"ctc_loss: input length {steps} of sequence {i} is not in "
                             f"[1, {frames}]")
        need = lab.size + int(np.sum(lab[1:] == lab[:-1]))
        if steps < need:
            raise ValueError(f"ctc_loss: sequence {i} has {steps} frames, too few for its "
                             f"{lab.size} labels ({need} frames needed: a repeated label "
                             "needs a blank between)")


def _extended(labels, blank):
    """Labels with blanks around and between them, padded with blanks to one length, and
    where the recursion may jump two states (onto a label that differs from the one two
    back)."""
    size = 2 * max(len(lab) for lab in labels) + 1
    ext = np.full((len(labels), size), blank, dtype=np.intp)
    for i, lab in enumerate(labels):
        ext[i, 1:2 * len(lab):2] = lab
    skip = np.zeros(ext.shape, dtype=bool)
    skip[:, 2:] = (ext[:, 2:] != blank) & (ext[:, 2:] != ext[:, :-2])
    return ext, skip
