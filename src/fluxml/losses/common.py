"""What the losses share: aggregation, shape checks, targets in the prediction's dtype, and
the stable building blocks (xlogy, log-softmax, log-sigmoid), all differentiable."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fluxml._checks import is_int, real_in
from fluxml.ad import logsumexp
from fluxml.ad.arrays import library_asarray
from fluxml.ad.core import untraced

# "mean", "sum", "none", None, or a function of an array (np.mean, np.max ...)
Agg = str | Callable | None


def aggregate(x, agg: Agg):
    """``agg``: ``"mean"`` or ``np.mean`` (the default), ``"sum"``, ``"none"`` or ``None`` (no
    aggregation: one loss per entry or per sample), or any function of an array."""
    if agg is None or agg == "none":
        return x
    if agg == "mean":
        return np.mean(x)
    if agg == "sum":
        return np.sum(x)
    if callable(agg):
        return agg(x)
    raise ValueError(f"agg must be 'mean', 'sum', 'none', None or a function, got {agg!r}")


def _dtype(x):
    d = getattr(x, "dtype", None)
    return np.dtype(np.float64) if d is None or d.kind not in "fc" else d


def target(name, yhat, y, labels: bool = False, complex_ok: bool = False):
    """``y`` as an array in ``yhat``'s float dtype (targets follow the prediction, so float32
    stays float32; a traced ``y`` too, differentiably, so that a loss has the same dtype
    eagerly and under ``fl.compile``, where the targets are traced), checked to have
    ``yhat``'s shape; complex values refused unless ``complex_ok`` (the losses of a
    difference's modulus)."""
    dtype = _dtype(yhat)
    if not complex_ok and (dtype.kind == "c" or np.iscomplexobj(y)):
        # (their logs, maxima and probabilities came out complex, or compared
        # lexicographically, with at most a ComplexWarning)
        which = "prediction" if dtype.kind == "c" else "target"
        raise TypeError(f"{name} takes real predictions and targets; got a complex {which}: "
                        f"it has no complex form (mse, mae and huber_loss compare complex "
                        f"values by the modulus of their difference)")
    if np.iscomplexobj(y) and dtype.kind == "f":  # (cast to real, its imaginary part went,
        dtype = np.result_type(dtype, np.complex64)  # with only a ComplexWarning)
    if type(y).__name__ != "Tracer":
        y = library_asarray(y, dtype)  # (a CuPy target stays CuPy's)
    elif y.dtype != dtype and y.dtype.kind in "biuf" and dtype.kind == "f":  # (int: in compile)
        y = y.astype(dtype)
    if _shape(yhat) != _shape(y):
        raise ValueError(f"{name}: the prediction has shape {np.shape(yhat)} and the target "
                         f"{np.shape(y)}; they must match{_hint(_shape(yhat), _shape(y), labels)}")
    return y




def _hint(shape, yshape, labels) -> str:
    """What probably went wrong where a target's shape differs from the prediction's (``labels``:
    the loss takes class labels too)."""
    if labels and yshape == shape[:-1]:
        return (" (class labels must be integers: y.astype(int); one-hot targets have the "
                "prediction's shape)")
    if shape == yshape + (1,) or yshape == shape + (1,):
        return (" (an axis of length 1 on one side: reshape one, as y.reshape(yhat.shape); "
                "losses do not broadcast, which would compare every pair)")
    if len(shape) == 2 and yshape == shape[::-1]:
        return " (transposed? fluxml is batch first: (N, features), where Flux has (features, N))"
    return ""


def _shape(x) -> tuple:
    """``np.shape(x)``, read from the attribute where there is one (on a traced array
    ``np.shape`` is a dispatched call, many times dearer: losses run every step)."""
    shape = getattr(x, "shape", None)
    return np.shape(x) if shape is None else tuple(shape)


def default_eps(yhat, eps, name: str = "loss", high: float = 0.1):
    """Flux's ``epseltype``: the machine epsilon of the prediction's dtype; or ``eps``,
    checked (a finite number in ``[0, high]``; the error names the loss ``name``). A loss of
    probabilities takes ``high`` 0.1: ``eps`` only keeps ``log(yhat + eps)`` finite, and
    ``eps=1e6`` (a slip for ``1e-6``) gave a negative cross-entropy, silently; a loss of other
    values (``msle``, where ``eps=1`` is Keras's ``log1p`` form) passes ``inf``."""
    if eps is None:
        return float(np.finfo(_dtype(yhat)).eps)
    what = "eps (added to the prediction" + (", to keep its log finite)" if high < 1 else ")")
    return float(real_in(name, what, eps, 0, high))


def xlogy(x, y):
    """``x * log(y)``, 0 wherever ``x == 0`` (as ``torch.xlogy``: also for ``y`` 0, negative
    or infinite, with no warning). Its derivative in ``x`` is ``log(y)`` wherever ``0 < y <
    inf``, at ``x == 0`` too (the gradient of a loss with respect to a target that is 0); 0
    where ``x == 0`` and ``y`` is outside that range."""
    outside = (x == 0) & ~((y > 0) & (y < np.inf))
    return x * np.log(np.where(outside, 1.0, y))


def xlogx(x):
    return xlogy(x, x)


def logsoftmax(x, axis=-1):
    return x - logsumexp(x, axis=axis, keepdims=True)


def logsigmoid(x):
    """``log(1 / (1 + exp(-x)))`` without overflow for any ``x``."""
    return -np.logaddexp(0.0, -x)


def is_labels(y, yhat) -> bool:
    """Integer class labels (one per sample), as opposed to one-hot or probability targets.
    Integer targets of the prediction's own shape are one-hot rows (``onehotbatch(...,
    dtype=int)``, Flux's integer matrices), not labels."""
    if type(y).__name__ != "Tracer":  # (traced integers exist only inside fl.compile)
        y = library_asarray(y)
    return y.dtype.kind in "iu" and _shape(y) != _shape(yhat)


def class_axis(name, yhat, axis) -> int:
    """``axis``, the class axis of ``yhat``, where it is one (an int in ``[-ndim, ndim)``),
    else an AxisError naming the loss (``axis % ndim`` picked another axis)."""
    ndim = len(_shape(yhat))
    if not (is_int(axis) and -ndim <= axis < ndim):
        raise np.exceptions.AxisError(
            f"{name}: axis (the class axis) must be an int in [{-ndim}, {ndim}) for a "
            f"prediction of shape {_shape(yhat)}; got {axis!r}")
    return int(axis)


def _check_labels(labels, n, name):
    if labels.size and (labels.min() < 0 or labels.max() >= n):
        raise ValueError(f"{name}: labels must lie in [0, {n}) for {n} classes; got values "
                         f"from {labels.min()} to {labels.max()}")
    return labels


def pick(name, x, labels, axis):
    """``x`` at each sample's label along ``axis`` (the class axis): shape of ``labels``."""
    if type(labels).__name__ != "Tracer":
        labels = library_asarray(labels)
    shape = np.shape(x)
    axis = class_axis(name, x, axis) % len(shape)
    expected = shape[:axis] + shape[axis + 1:]
    if labels.shape != expected:
        raise ValueError(f"{name}: integer labels must have the prediction's shape {shape} "
                         f"without its class axis {axis}, that is {expected}; got "
                         f"{labels.shape}")
    # checked when the values are there: inside fl.compile, on every run of the program
    labels = untraced(_check_labels, (labels, shape[axis], name))
    idx = np.expand_dims(labels, axis)
    return np.squeeze(np.take_along_axis(x, idx, axis=axis), axis=axis)
