"""Losses between real-valued predictions and targets: mae, mse, msle, huber_loss,
poisson_loss, siamese_contrastive_loss; and the overlap losses of segmentation,
dice_coeff_loss and tversky_loss.

Each is ``loss(yhat, y, *, agg: Agg = "mean", ...)`` as Flux's (``agg``: "mean", "sum", "none" or a
function; the overlap losses' default is ``"all"``, one overlap for the whole batch); the
prediction and the target must have the same shape.

>>> import numpy as np, fluxml as fl
>>> fl.mse(np.array([1.0, 2.0]), np.array([1.0, 4.0]))
np.float64(2.0)
"""

from __future__ import annotations

import numpy as np

from fluxml._checks import real_in
from fluxml._dtypes import is_complex
from fluxml.ad.core import COMPILING
from fluxml.ad.define import defjvp, defvjp, primitive
from fluxml.losses.common import Agg, aggregate, default_eps, target, xlogy


def mae(yhat, y, *, agg: Agg = "mean"):
    """Mean absolute error: ``agg(|yhat - y|)``. PyTorch: ``l1_loss``.

    >>> import numpy as np, fluxml as fl
    >>> float(fl.mae(np.array([1.0, 2.0]), np.array([1.0, 4.0])))
    1.0
    """
    y = target("mae", yhat, y, complex_ok=True)
    return aggregate(np.abs(yhat - y), agg)


def mse(yhat, y, *, agg: Agg = "mean"):
    """Mean squared error: ``agg(|yhat - y|**2)``. PyTorch: ``mse_loss``. ``yhat`` and ``y``
    must have the same shape (a ``(N, 1)`` prediction against ``(N,)`` targets is refused,
    not broadcast to ``(N, N)``).

    >>> import numpy as np, fluxml as fl
    >>> float(fl.mse(np.array([1.0, 2.0]), np.array([1.0, 4.0])))
    2.0
    >>> float(fl.mse(np.array([1.0, 2.0]), np.array([1.0, 4.0]), agg="sum"))
    4.0
    """
    y = target("mse", yhat, y, complex_ok=True)
    if (agg == "mean" or agg == "sum") and not COMPILING and \
            getattr(yhat, "dtype", None) is not None and yhat.dtype.kind == "f" == y.dtype.kind:
        if type(yhat) is np.ndarray and type(y) is np.ndarray:  # nothing traced: no bind
            return _mse_impl(yhat, y, agg == "mean")
        return MSE(yhat, y, mean=agg == "mean")  # (one tape node, not four)
    d = yhat - y
    # |d|^2 for complex values, as Flux's abs2 (the square of a complex difference is
    # complex: mse(0j, 1 + 1j) was 2j)
    return aggregate(np.real(d * np.conj(d)) if is_complex(d) else np.square(d), agg)


# The mean (or sum) of squared differences of real arrays as one primitive: written out it
# records four tape nodes (difference, square, sum, division), each with its rule, which on a
# small model's step cost more than the arithmetic (as PyTorch's mse_loss is one node). The
# rules are NumPy calls on the saved arguments, recorded again at higher order; the forward
# value is the composite's, bit for bit (np.mean of the squares). Under fl.compile the
# composite is recorded: the compiler fuses it itself.
def _mse_impl(yhat, y, mean):
    d = np.square(yhat - y)
    if not mean:
        return np.sum(d)
    if type(d) is np.ndarray and d.size and (d.dtype == np.float32 or d.dtype == np.float64):
        # np.mean's own steps (its sum in d's dtype, then the division by the count as an
        # intp, rounded back), without its Python wrapper: ~2.5 us of a tiny model's step
        total = np.add.reduce(d, axis=None)
        return total.dtype.type(total / np.intp(d.size))
    return np.mean(d)


def _mse_scale(g, yhat, mean):
    """``g`` times the derivative's constant: ``2 / n`` for the mean, 2 for the sum. The
    mean of nothing gives NaN, as the composite's division by 0 does (a tangent NaN; a
    cotangent, multiplied by the empty difference, stays empty)."""
    size = yhat.size
    return g * (2 / size if size else np.nan) if mean else g * 2


MSE = primitive("mse", _mse_impl, keeps_inputs=True, keeps_output=False)
defvjp(MSE,
       lambda g, ans, yhat, y, mean: _mse_scale(g, yhat, mean) * (yhat - y),
       lambda g, ans, yhat, y, mean: _mse_scale(g, yhat, mean) * (y - yhat))
defjvp(MSE,
       lambda t, ans, yhat, y, mean: _mse_scale(np.sum((yhat - y) * t), yhat, mean),
       lambda t, ans, yhat, y, mean: _mse_scale(np.sum((y - yhat) * t), yhat, mean))


def msle(yhat, y, *, agg: Agg = "mean", eps: float | None = None):
    """Mean squared logarithmic error: ``agg(log((yhat + eps) / (y + eps))**2)``, for
    non-negative values; ``eps`` defaults to the machine epsilon of ``yhat``'s dtype.

    >>> import numpy as np, fluxml as fl
    >>> fl.msle(np.array([1.0, np.e]), np.array([1.0, 1.0]), agg="none").round(6)
    array([0., 1.])
    """
    y = target("msle", yhat, y)
    eps = default_eps(yhat, eps, "msle", np.inf)
    return aggregate(np.square(np.log((yhat + eps) / (y + eps))), agg)


def huber_loss(yhat, y, *, agg: Agg = "mean", delta: float = 1.0):
    """Huber loss: ``0.5 e**2`` where ``e = |yhat - y| < delta``, else ``delta (e - 0.5
    delta)``. PyTorch: ``huber_loss(delta=delta)``.

    >>> import numpy as np, fluxml as fl
    >>> fl.huber_loss(np.array([0.5, 3.0]), np.zeros(2), agg="none")  # square, then linear
    array([0.125, 2.5  ])
    """
    y = target("huber_loss", yhat, y, complex_ok=True)
    delta = float(real_in("huber_loss", "delta (where the square turns linear)", delta, 0,
                          low_open=True))
    err = np.abs(yhat - y)
    small = err < delta  # which branch: no derivative
    return aggregate(np.where(small, 0.5 * err * err, delta * (err - 0.5 * delta)), agg)


def poisson_loss(yhat, y, *, agg: Agg = "mean"):
    """Poisson negative log-likelihood (up to a constant) for a predicted rate ``yhat``:
    ``agg(yhat - y log(yhat))``. PyTorch: ``poisson_nll_loss(log_input=False, eps=0)``.

    >>> import numpy as np, fluxml as fl
    >>> float(fl.poisson_loss(np.array([1.0]), np.array([1.0])))
    1.0
    """
    y = target("poisson_loss", yhat, y)
    return aggregate(yhat - xlogy(y, yhat), agg)


def siamese_contrastive_loss(yhat, y, *, agg: Agg = "mean", margin: float = 1.0):
    """Contrastive loss of a distance ``yhat`` between two inputs and ``y`` (1: a dissimilar
    pair, 0: a similar one): ``agg((1 - y) yhat**2 + y max(0, margin - yhat)**2)``.

    >>> import numpy as np, fluxml as fl
    >>> fl.siamese_contrastive_loss(np.array([0.5, 0.5]), np.array([0.0, 1.0]), agg="none")
    array([0.25, 0.25])
    """
    margin = real_in("siamese_contrastive_loss", "margin", margin, 0)  # (NaN: a NaN loss)
    y = target("siamese_contrastive_loss", yhat, y)
    far = np.maximum(0.0, float(margin) - yhat)
    return aggregate((1.0 - y) * np.square(yhat) + y * np.square(far), agg)


def _overlap_axes(name, y, agg):
    """The axes an overlap loss sums over: all (``agg="all"``, one overlap for the whole
    batch, as Flux's) or each sample's (every axis but the first), for ``agg`` to combine."""
    if isinstance(agg, str) and agg == "all":
        return None
    if isinstance(agg, str) and agg not in ("mean", "sum", "none"):
        raise ValueError(f"{name}: agg must be 'all', 'mean', 'sum', 'none', None or a "
                         f"function; got {agg!r}")
    if np.ndim(y) < 1:
        raise ValueError(f"{name}: agg={agg!r} takes one loss per sample (the first axis); "
                         f"got a scalar. Use agg='all' (the default)")
    return tuple(range(1, np.ndim(y)))


def dice_coeff_loss(yhat, y, *, agg: Agg = "all", smooth: float = 1.0):
    """Dice loss of a predicted mask: ``1 - (2 sum(y yhat) + smooth) / (sum(y**2) +
    sum(yhat**2) + smooth)``. With ``agg="all"`` (the default, as Flux's) the sums run over
    every entry, one overlap for the whole batch; any other ``agg`` takes one loss per sample
    (sums over each sample's entries, the first axis the batch) and combines them as the other
    losses do: ``"mean"``, ``"sum"``, ``"none"`` (the per-sample losses) or a function.

    >>> import numpy as np, fluxml as fl
    >>> y = np.array([[1.0, 0.0], [1.0, 1.0]])
    >>> float(fl.dice_coeff_loss(y, y)), fl.dice_coeff_loss(0 * y, y, agg="none")
    (0.0, array([0.5       , 0.66666667]))
    """
    y = target("dice_coeff_loss", yhat, y)
    axes = _overlap_axes("dice_coeff_loss", y, agg)
    smooth = float(real_in("dice_coeff_loss", "smooth", smooth, 0))
    overlap = 2.0 * np.sum(y * yhat, axis=axes) + smooth
    loss = 1.0 - overlap / (np.sum(np.square(y), axis=axes) +
                            np.sum(np.square(yhat), axis=axes) + smooth)
    return loss if axes is None else aggregate(loss, agg)


def tversky_loss(yhat, y, *, agg: Agg = "all", beta: float = 0.7):
    """Tversky loss: ``1 - (TP + 1) / (TP + beta FP + (1 - beta) FN + 1)`` with soft counts
    ``TP = sum(y yhat)``, ``FP = sum((1 - y) yhat)``, ``FN = sum(y (1 - yhat))``, as Flux.
    ``agg`` as :func:`dice_coeff_loss`'s: ``"all"`` (the default) counts over every entry,
    another ``agg`` combines one loss per sample.

    >>> import numpy as np, fluxml as fl
    >>> y = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> fl.tversky_loss(np.full((2, 2), 0.5), y, agg="none")
    array([0.25, 0.25])
    """
    y = target("tversky_loss", yhat, y)
    axes = _overlap_axes("tversky_loss", y, agg)
    beta = float(real_in("tversky_loss", "beta (the weight of false positives)", beta, 0, 1))
    tp = np.sum(y * yhat, axis=axes)
    den = np.sum(y * yhat + beta * (1.0 - y) * yhat + (1.0 - beta) * y * (1.0 - yhat),
                 axis=axes)
    loss = 1.0 - (tp + 1.0) / (den + 1.0)
    return loss if axes is None else aggregate(loss, agg)
