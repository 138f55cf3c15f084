"""Weight normalisation (Salimans & Kingma 2016), as Flux's ``WeightNorm`` and
``remove_weight_norms``: a layer's array ``v`` is used as ``w = g v / ||v||``, the norm taken
over the axes ``dims``, so that its magnitude ``g`` and its direction ``v`` train apart.

>>> import numpy as np, fluxml as fl
>>> m = fl.WeightNorm(fl.Dense(3, 2))
>>> x = np.ones((4, 3), np.float32)
>>> bool(np.allclose(m(x), m.layer(x)))  # at the start, w is the layer's weight
True
"""

from __future__ import annotations

import copy

import numpy as np

from fluxml._checks import is_int
from fluxml.ad.api import _is_float
from fluxml.ad.core import raw
from fluxml.layers.module import Module, locate
from fluxml.layers.show import ArrayField, line_of
from fluxml.tree import is_array_leaf
from fluxml.treemaps import fmap

__all__ = ["WeightNorm", "remove_weight_norms"]


class WeightNorm(Module):
    """``WeightNorm(layer, which="weight"; dims=0)``

    Calls ``layer`` with its array ``which`` replaced by ``w = g v / sqrt(sum(v², dims) +
    eps)``, where ``v`` is the layer's array (trained as it is) and ``g =
    sqrt(sum(v², dims) + eps)`` at the start (so the layer computes what it did) and
    trained too. ``dims`` are the axes the norm sums over, as Flux's. The default, axis 0,
    is the output axis of fluxml's weights (shaped as PyTorch's), giving ``g`` of shape
    ``(1, in, k...)``: Flux's default ``dims=-1`` for a convolution, whose Julia weight ends
    in the output axis. Flux's ``Dense`` weight is ``(out, in)`` as ours, so its
    ``dims=-1`` is the input axis: ``WeightNorm(Dense(...), dims=1)`` is Flux's
    ``WeightNorm(Dense(...))``, one ``g`` per output. ``dims=None`` takes the norm of the
    whole array. PyTorch's ``weight_norm(m, dim=0)`` (one ``g`` per output) is
    ``dims=`` every axis but 0, e.g. ``dims=(1, 2, 3)`` for a 2-d convolution.

    >>> import numpy as np, fluxml as fl
    >>> m = fl.WeightNorm(fl.Conv((3,), 1, 2), dims=(1, 2))  # PyTorch's weight_norm
    >>> m.g.shape
    (2, 1, 1)
    >>> m
    WeightNorm(
      Conv((3,), 1 => 2),                   # 8 parameters
      g = float32[2, 1, 1],                 # 2 parameters
    )                   # Total: 3 arrays, 10 parameters, 40 bytes.
    """

    def __init__(self, layer, which: str = "weight", *, dims=0):
        where = f"WeightNorm({type(layer).__name__}, {which!r})"
        fields = vars(layer) if hasattr(layer, "__dict__") else {}
        if which not in fields:
            have = [k for k, v in fields.items() if _is_float(v) and hasattr(v, "shape")]
            raise ValueError(f"{where}: the layer has no field {which!r}; its arrays are "
                             f"{have}")
        v = fields[which]
        if not (_is_float(v) and getattr(v, "ndim", 0) >= 1):
            raise ValueError(f"{where}: expected a float array to normalise; got "
                             f"{type(v).__name__} {getattr(v, 'dtype', '')}".rstrip())
        dims = _axes(where, dims, v.ndim)
        if not np.any(raw(v)):
            raise ValueError(f"{where}: the array is all zero, so its direction v / ||v|| is "
                             f"undefined (NaN); initialise it before weight-normalising")
        self.layer = layer
        self.g = np.sqrt(np.sum(np.square(raw(v)), axis=dims, keepdims=True) + _eps(v))
        self.which = which
        self.dims = dims

    def __call__(self, x):
        try:
            return reparametrize(self)(x)
        except (ValueError, IndexError) as err:
            raise locate(err, "WeightNorm", "layer")  # noqa: B904 - locate sets its cause

    def _output_shape(self, shape, dtype=np.float32):
        """The layer's shape (its weight's norm changes no shape: nothing runs)."""
        from fluxml.layers.shapes import output_shape

        try:
            return output_shape(self.layer, shape, dtype, single=True)
        except (ValueError, IndexError) as err:
            raise locate(err, "WeightNorm", "layer")  # noqa: B904 - locate sets its cause

    def _line(self) -> str:
        return f"WeightNorm({line_of(self.layer)}, {self.which!r}, dims={self.dims})"

    def _show_children(self):
        return [(None, self.layer), ("g", ArrayField(self.g, False))]


def _eps(v):
    return float(np.finfo(raw(v).dtype).eps)


def _axes(where, dims, ndim):
    if dims is None:
        return tuple(range(ndim))
    axes = (dims,) if is_int(dims) or not np.iterable(dims) else tuple(dims)
    if not axes or any(not is_int(d) or not -ndim <= d < ndim
                       for d in axes):
        raise ValueError(f"{where}: dims must be axes of the {ndim}-d array (or None for "
                         f"all); got {dims!r}")
    axes = tuple(sorted({int(d) % ndim for d in axes}))
    return axes


def reparametrize(wn: WeightNorm):
    """The wrapped layer with ``w = g v / ||v||`` in place of ``v`` (a shallow copy: the
    other fields are the layer's own).

    >>> import numpy as np, fluxml as fl
    >>> from fluxml.layers.weightnorm import reparametrize
    >>> m = fl.WeightNorm(fl.Dense(2, 2), dims=None)
    >>> m.g = 2 * m.g
    >>> bool(np.allclose(reparametrize(m).weight, 2 * m.layer.weight))
    True
    """
    v = getattr(wn.layer, wn.which)
    w = wn.g * v / np.sqrt(np.sum(v * v, axis=wn.dims, keepdims=True) + _eps(v))
    layer = copy.copy(wn.layer)
    setattr(layer, wn.which, w)
    return layer


def remove_weight_norms(model):
    """``model`` with each :class:`WeightNorm` replaced by its layer holding ``w = g v /
    ||v||`` (for inference or export: the layer computes what the WeightNorm did).

    >>> import numpy as np, fluxml as fl
    >>> model = fl.Chain(fl.WeightNorm(fl.Dense(2, 3)), fl.Dense(3, 1))
    >>> fl.remove_weight_norms(model)
    Chain(
      Dense(2 => 3),                        # 9 parameters
      Dense(3 => 1),                        # 4 parameters
    )                   # Total: 4 arrays, 13 parameters, 52 bytes.
    """
    def unwrap(x):
        return reparametrize(x) if isinstance(x, WeightNorm) else x

    return fmap(unwrap, model, is_leaf=lambda x: isinstance(x, WeightNorm) or is_array_leaf(x))
