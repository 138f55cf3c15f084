"""Losses of classifiers: crossentropy, logitcrossentropy, binarycrossentropy,
logitbinarycrossentropy, kldivergence, hinge_loss, squared_hinge_loss, binary_focal_loss,
focal_loss, and label_smoothing for their targets.

Batch first: the class axis is the last (``yhat`` of shape ``(N, classes)``; Flux's
``dims=1`` is ``axis=-1`` here). ``crossentropy``, ``logitcrossentropy`` and ``focal_loss``
take one-hot (or probability) targets of ``yhat``'s shape, or integer labels of its shape
without the class axis. The logit forms never overflow, whatever the logits.

>>> import numpy as np, fluxml as fl
>>> logits = np.array([[2.0, 0.0, -1.0], [0.0, 3.0, 0.0]])
>>> a = fl.logitcrossentropy(logits, np.array([0, 1]))
>>> b = fl.logitcrossentropy(logits, np.eye(3)[[0, 1]])
>>> bool(np.isclose(a, b))
True
"""

from __future__ import annotations

import numpy as np

from fluxml._checks import is_int, real_in
from fluxml.ad.arrays import library_asarray, module_of
from fluxml.ad.core import Tracer, raw, untraced
from fluxml.losses.common import (
    Agg,
    aggregate,
    class_axis,
    default_eps,
    is_labels,
    logsigmoid,
    logsoftmax,
    pick,
    target,
    xlogx,
    xlogy,
)


def label_smoothing(y, alpha: float, *, axis: int | None = -1):
    """Smoothed targets: ``y (1 - alpha) + alpha / k`` with ``k`` the number of classes along
    ``axis``, or ``k = 2`` for binary targets (``axis=None``, Flux's ``dims=0``).

    >>> import numpy as np, fluxml as fl
    >>> fl.label_smoothing(np.array([[0.0, 1.0]]), 0.2)
    array([[0.1, 0.9]])
    """
    real_in("label_smoothing", "alpha", alpha, 0, 1, low_open=True, high_open=True)
    y = library_asarray(y) if type(y) is not Tracer else y
    if y.dtype.kind in "iu":  # (class labels were smoothed as if one-hot)
        untraced(_one_hot_integers, (y,))  # (fl.compile: recorded, checked on every run)
    if y.dtype.kind not in "fc":
        y = y.astype(np.float64)
    if axis is not None and not (is_int(axis) and -np.ndim(y) <= axis < np.ndim(y)):
        raise ValueError(f"label_smoothing: axis must be an axis of y (ndim {np.ndim(y)}; "
                         f"the classes' axis) or None (binary targets); got {axis!r}")
    k = 2 if axis is None else np.shape(y)[axis]
    return y * (1.0 - alpha) + alpha / k


def _one_hot_integers(y):
    """Refuse integer targets outside [0, 1] (class labels, not one-hot rows)."""
    if y.size and (y.min() < 0 or y.max() > 1):
        raise ValueError(f"label_smoothing: y must be one-hot or probability targets (values "
                         f"in [0, 1]); got integers from {y.min()} to {y.max()}: class labels? "
                         f"fl.onehotbatch(y, range(classes)) makes one-hot rows of them")
    return np.True_


_one_hot_integers.effect = True  # a check: under fl.compile it runs on every call


def crossentropy(yhat, y, *, axis: int = -1, agg: Agg = "mean", eps: float | None = None):
    """Cross-entropy of predicted probabilities ``yhat`` (a softmax output) against targets:
    ``agg(-sum(y log(yhat + eps), axis))``; integer labels pick ``-log(yhat[label] + eps)``.
    Prefer ``logitcrossentropy`` on logits: it is exact where this needs ``eps``. PyTorch:
    ``nll_loss(log(yhat))``.

    >>> import numpy as np, fluxml as fl
    >>> p = fl.softmax(np.array([[2.0, 0.0, -1.0], [0.0, 3.0, 0.0]]))
    >>> round(float(fl.crossentropy(p, np.array([0, 1]))), 4)
    0.1324
    """
    eps = default_eps(yhat, eps, "crossentropy")
    axis = class_axis("crossentropy", yhat, axis)
    if is_labels(y, yhat):
        return aggregate(-np.log(pick("crossentropy", yhat, y, axis) + eps), agg)
    y = target("crossentropy", yhat, y, labels=True)
    return aggregate(-np.sum(xlogy(y, yhat + eps), axis=axis), agg)


def logitcrossentropy(yhat, y, *, axis: int = -1, agg: Agg = "mean"):
    """Cross-entropy of logits: ``crossentropy(softmax(yhat), y)`` computed as ``agg(-sum(y
    logsoftmax(yhat), axis))``, without overflow. PyTorch: ``cross_entropy``. ``y`` is
    integer labels (shaped as ``yhat`` without its class axis) or targets shaped as ``yhat``
    (one-hot ``(N, classes)``, batch first: Flux's ``(classes, N)`` is transposed here).

    >>> import numpy as np, fluxml as fl
    >>> logits = np.array([[2.0, 0.0, -1.0], [0.0, 3.0, 0.0]])
    >>> round(float(fl.logitcrossentropy(logits, np.array([0, 1]))), 4)
    0.1324
    >>> round(float(fl.logitcrossentropy(logits, fl.onehotbatch([0, 1], range(3)))), 4)
    0.1324
    """
    logp = logsoftmax(yhat, class_axis("logitcrossentropy", yhat, axis))
    if is_labels(y, yhat):
        return aggregate(-pick("logitcrossentropy", logp, y, axis), agg)
    y = target("logitcrossentropy", yhat, y, labels=True)
    return aggregate(-np.sum(y * logp, axis=axis), agg)


def binarycrossentropy(yhat, y, *, agg: Agg = "mean", eps: float | None = None):
    """Binary cross-entropy of predicted probabilities (a sigmoid output): ``agg(-y log(yhat
    + eps) - (1 - y) log(1 - yhat + eps))``. Prefer ``logitbinarycrossentropy`` on logits.
    PyTorch: ``binary_cross_entropy`` (which clamps the logs at -100 instead).

    >>> import numpy as np, fluxml as fl
    >>> fl.binarycrossentropy(np.array([0.9, 0.2]), np.array([1.0, 0.0]), agg="none").round(4)
    array([0.1054, 0.2231])
    """
    y = target("binarycrossentropy", yhat, y)
    _probabilities("binarycrossentropy", yhat)
    eps = default_eps(yhat, eps, "binarycrossentropy")
    return aggregate(-xlogy(y, yhat + eps) - xlogy(1.0 - y, 1.0 - yhat + eps), agg)


def _probabilities(name: str, yhat) -> None:
    """Refuse predictions outside ``[0, 1]`` where their values are known (NumPy's, also
    inside a gradient; not inside ``fl.compile``, where there are none while it traces), as
    PyTorch's ``binary_cross_entropy`` does: logits passed by mistake gave a negative loss
    (``-log(1.5)`` for 1.5 labelled 1) that training then drove down without bound,
    silently. NaN passes (the loss is NaN, which the training loop stops on)."""
    values = raw(yhat)
    if type(values) is Tracer or module_of(values) is not np:
        return
    values = np.asarray(values)
    if values.size and (values.min() < 0 or values.max() > 1):
        raise ValueError(f"{name}: yhat must be probabilities in [0, 1] (a sigmoid's "
                         f"output); got values from {values.min():.4g} to {values.max():.4g}. "
                         "Logits? Use logitbinarycrossentropy")


def logitbinarycrossentropy(yhat, y, *, agg: Agg = "mean"):
    """``binarycrossentropy(sigmoid(yhat), y)`` as ``agg((1 - y) yhat - logsigmoid(yhat))``,
    without overflow. PyTorch: ``binary_cross_entropy_with_logits``.

    >>> import numpy as np, fluxml as fl
    >>> fl.logitbinarycrossentropy(np.array([0.0, -800.0]), np.array([1.0, 0.0]), agg="none")
    array([0.69314718, 0.        ])
    """
    y = target("logitbinarycrossentropy", yhat, y)
    return aggregate((1.0 - y) * yhat - logsigmoid(yhat), agg)


def kldivergence(yhat, y, *, axis: int = -1, agg: Agg = "mean", eps: float | None = None):
    """Kullback-Leibler divergence of the predicted distribution ``yhat`` from the target
    ``y``: ``agg(sum(y log(y) - y log(yhat + eps), axis))``, entropy plus cross-entropy per
    sample (Flux aggregates the two terms apart: the same for mean and sum). PyTorch:
    ``kl_div(log(yhat), y, reduction="batchmean")``, which divides by the batch size only
    where the samples have more axes (``(N, C, L)``: "mean" here divides by ``N L``).

    >>> import numpy as np, fluxml as fl
    >>> round(float(fl.kldivergence(np.array([[0.25, 0.75]]), np.array([[0.5, 0.5]]))), 4)
    0.1438
    """
    y = target("kldivergence", yhat, y)
    axis = class_axis("kldivergence", yhat, axis)
    eps = default_eps(yhat, eps, "kldivergence")
    return aggregate(np.sum(xlogx(y) - xlogy(y, yhat + eps), axis=axis), agg)


def hinge_loss(yhat, y, *, agg: Agg = "mean"):
    """Hinge loss for targets in {-1, 1}: ``agg(max(0, 1 - yhat y))``. PyTorch:
    ``hinge_embedding_loss(yhat * y, -ones, margin=1)``.

    >>> import numpy as np, fluxml as fl
    >>> fl.hinge_loss(np.array([2.0, 0.5, -1.0]), np.ones(3), agg="none")
    array([0. , 0.5, 2. ])
    """
    y = target("hinge_loss", yhat, y)
    return aggregate(np.maximum(0.0, 1.0 - yhat * y), agg)


def squared_hinge_loss(yhat, y, *, agg: Agg = "mean"):
    """Squared hinge loss for targets in {-1, 1}: ``agg(max(0, 1 - yhat y)**2)``.

    >>> import numpy as np, fluxml as fl
    >>> fl.squared_hinge_loss(np.array([2.0, 0.5, -1.0]), np.ones(3), agg="none")
    array([0.  , 0.25, 4.  ])
    """
    y = target("squared_hinge_loss", yhat, y)
    return aggregate(np.square(np.maximum(0.0, 1.0 - yhat * y)), agg)


def binary_focal_loss(yhat, y, *, agg: Agg = "mean", gamma: float = 2.0,
                      eps: float | None = None):
    """Focal loss (Lin et al. 2017) of predicted probabilities for binary targets: with
    ``p = y yhat + (1 - y) (1 - yhat)`` (the probability of the true class),
    ``agg(-(1 - p)**gamma log(p + eps))``. ``gamma = 0`` is ``binarycrossentropy`` for 0/1
    targets. (Flux adds ``eps`` to ``yhat`` before taking ``p``: there ``p`` is ``-eps`` where
    ``yhat`` is exactly 1 and ``y`` 0, and the loss NaN, as ``(1 - p)**gamma`` is where ``p``
    is ``1 + eps`` and ``gamma`` not an integer; here ``eps`` only keeps the log finite.) For
    ``0 < gamma < 1`` the slope is infinite where ``p`` is exactly 1 (``(1 - p)**gamma``'s,
    times ``log(1 + eps)``): a NaN or infinite gradient there.

    >>> import numpy as np, fluxml as fl
    >>> yhat, y = np.array([0.9, 0.6]), np.array([1.0, 1.0])
    >>> fl.binary_focal_loss(yhat, y, agg="none").round(4)  # the easy sample counts less
    array([0.0011, 0.0817])
    """
    y = target("binary_focal_loss", yhat, y)
    eps = default_eps(yhat, eps, "binary_focal_loss")
    gamma = float(real_in("binary_focal_loss", "gamma (the focusing power)", gamma, 0))
    p = y * yhat + (1.0 - y) * (1.0 - yhat)
    return aggregate(-(1.0 - p) ** gamma * np.log(p + eps), agg)


def focal_loss(yhat, y, *, axis: int = -1, agg: Agg = "mean", gamma: float = 2.0,
               eps: float | None = None):
    """Focal loss of predicted class probabilities (a softmax output): ``agg(sum(-y (1 -
    yhat)**gamma log(yhat + eps), axis))``; integer labels pick their class's term. (Flux
    takes ``(1 - yhat - eps)**gamma``, NaN where ``yhat`` is exactly 1 and ``gamma`` not an
    integer; here ``eps`` only keeps the log finite.) For ``0 < gamma < 1`` the slope is
    infinite where the true class's ``yhat`` is exactly 1 (``(1 - p)**gamma``'s, times
    ``log(1 + eps)``): a NaN or infinite gradient there, as for ``binary_focal_loss``.

    >>> import numpy as np, fluxml as fl
    >>> yhat = np.array([[0.9, 0.1], [0.6, 0.4]])
    >>> fl.focal_loss(yhat, np.array([0, 0]), agg="none").round(4)  # labels or one-hot rows
    array([0.0011, 0.0817])
    """
    eps = default_eps(yhat, eps, "focal_loss")
    gamma = float(real_in("focal_loss", "gamma (the focusing power)", gamma, 0))
    axis = class_axis("focal_loss", yhat, axis)
    if is_labels(y, yhat):
        p = pick("focal_loss", yhat, y, axis)
        return aggregate(-((1.0 - p) ** gamma) * np.log(p + eps), agg)
    y = target("focal_loss", yhat, y, labels=True)
    # a class with no target weight adds exactly 0, with slope 0: its yhat is replaced by 0
    # before the power (whose slope at yhat = 1 is infinite for gamma < 1, and times the 0 of
    # xlogy gave NaN: a confidently wrong float32 softmax reaches 1 exactly), then by xlogy
    # (also where yhat + eps is 0, eps=0)
    yhat = np.where(y != 0, yhat, 0.0)  # (a Python 0: float32 stays float32)
    return aggregate(-np.sum((1.0 - yhat) ** gamma * xlogy(y, yhat + eps), axis=axis), agg)
