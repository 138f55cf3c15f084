"""One optimisation step: ``fl.trainstep`` and ``fl.trainstep_withgradient``, as Flux's
``trainstep!`` and ``trainstep_withgradient!`` (``fl.train`` is the loop with callbacks,
history, progress and the put-back of a failed step).

>>> import numpy as np, fluxml as fl
>>> model = {"w": np.zeros(1)}
>>> state = fl.setup(fl.Descent(0.25), model)
>>> loss = lambda m, x, y: fl.mse(m["w"] * x, y)
>>> float(fl.trainstep(loss, model, (np.ones(1), np.full(1, 2.0)), state)), model["w"]
(4.0, array([1.]))
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

from fluxml.ad import withgradient
from fluxml.optimise import update
from fluxml.training import _nonfinite_gradient

__all__ = ["trainstep", "trainstep_withgradient"]


def trainstep(loss: Callable, model, batch, state):
    """Differentiate ``loss(model, *batch)`` (a batch that is not a tuple is one argument),
    update ``model`` and ``state`` (from ``fl.setup``) in place, and return the loss as
    computed before the update.

    The loss may return ``(loss, aux ...)`` (a tuple or namedtuple, as ``fl.withgradient``
    takes): the gradient is the first entry's and the whole value is returned. Where the
    loss is not finite the update is skipped and the value returned as it is (Flux's
    ``train!`` raises there, as ``fl.train`` does); where the loss is finite but a gradient
    holds NaN or Inf, the update is skipped too, with a warning (Flux would apply it). What
    the forward pass wrote (BatchNorm's running statistics) stays either way; ``fl.train``
    puts it back.

    >>> import numpy as np, fluxml as fl
    >>> model = fl.Dense(1, 1, init=fl.init.zeros)
    >>> state = fl.setup(fl.Descent(0.1), model)
    >>> x, y = np.ones((4, 1), np.float32), np.ones((4, 1), np.float32)
    >>> [round(float(fl.trainstep(lambda m, x, y: fl.mse(m(x), y), model, (x, y), state)), 4)
    ...  for _ in range(3)]
    [1.0, 0.36, 0.1296]
    """
    return trainstep_withgradient(loss, model, batch, state)[0]


def trainstep_withgradient(loss: Callable, model, batch, state):
    """``(value, grads)``: :func:`trainstep`'s value, and the gradient of the loss with
    respect to ``model`` (a tree shaped as the model).

    >>> import numpy as np, fluxml as fl
    >>> model = {"w": np.zeros(2)}
    >>> state = fl.setup(fl.Descent(0.1), model)
    >>> (value, aux), g = fl.trainstep_withgradient(
    ...     lambda m, x: (np.sum((m["w"] - x) ** 2), "aux"), model, np.ones(2), state)
    >>> float(value), aux, g["w"], model["w"]
    (2.0, 'aux', array([-2., -2.]), array([0.2, 0.2]))
    """
    args = batch if isinstance(batch, tuple) else (batch,)
    value, (grads,) = withgradient(lambda m: loss(m, *args), model)
    scalar = float(value[0] if isinstance(value, tuple) else value)
    if not math.isfinite(scalar):
        return value, grads
    bad = _nonfinite_gradient(grads)
    if bad is not None:
        warnings.warn(f"trainstep: the gradient of {bad[0]} {bad[1]} (loss {scalar:.6g}); "
                      f"the update is skipped, the model left as it was",
                      RuntimeWarning, stacklevel=3)
        return value, grads
    update(state, model, grads)
    return value, grads
