"""``destructure`` and ``trainables`` (Optimisers.jl's): a model's trainable arrays as one flat
vector or as a list.

The trainable arrays are the float and complex arrays of the tree, without the fields a class
declares ``nontrainable`` (as ``fl.setup`` sees them); numbers, integer arrays and static
parts stay with the model. An array reached twice (tied weights) is counted once.

>>> import numpy as np, fluxml as fl
>>> flat, re = fl.destructure({"w": np.array([[1.0, 2.0]]), "b": np.array([3.0]), "n": 4})
>>> flat
array([1., 2., 3.])
>>> re(np.array([5.0, 6.0, 7.0]))
{'w': array([[5., 6.]]), 'b': array([7.]), 'n': 4}
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fluxml._checks import flag
from fluxml.ad.api import _is_float
from fluxml.ad.core import raw
from fluxml.tree import Spec, flatten, leaves_with_paths, unflatten

__all__ = ["Restructure", "destructure", "trainables"]


def _is_param(x) -> bool:
    """A trainable array: a float or complex array of any backend, traced or not (Python
    numbers and 0-d NumPy scalars of ``np.float64`` type are numbers, not arrays)."""
    return getattr(x, "ndim", None) is not None and not isinstance(x, np.generic) and \
        _is_float(x)


class Restructure:
    """What :func:`destructure` returns beside the flat vector: ``re(flat)`` rebuilds the
    model with its trainable arrays read from ``flat`` (and ``re(x, flat)`` calls the
    rebuilt model on ``x``). Each array comes back in its own dtype and shape; a tied array
    is one slice, placed at every address it had, and a layer used twice is one layer.
    Differentiable in ``flat``.

    >>> import numpy as np, fluxml as fl
    >>> _, re = fl.destructure(fl.Dense(2, 3))
    >>> re
    Restructure(Dense, ..., 9)
    >>> re(np.zeros(9, np.float32)).weight.shape
    (3, 2)
    """

    def __init__(self, model, spec: Spec, leaves: list, offsets: list, length: int):
        self.model = model
        self._spec = spec
        self._leaves = leaves  # the model's leaves (all of them, in flatten's order)
        self._offsets = offsets  # per leaf: its offset in the flat vector, or None
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __call__(self, *args):
        if len(args) == 2:
            x, flat = args
            return self(flat)(x)
        if len(args) != 1:
            raise TypeError(f"Restructure: call as re(flat) or re(x, flat); got {len(args)} "
                            "arguments")
        flat = args[0]
        shape = np.shape(raw(flat))
        if len(shape) != 1 or shape[0] != self.length:
            raise ValueError(f"Restructure: expected a flat vector of length {self.length} "
                             f"(what destructure gave); got shape {shape}")
        new = {}  # offset -> the array rebuilt there, so that tied places stay tied
        out = []
        for x, o in zip(self._leaves, self._offsets):
            if o is None:
                out.append(x)
                continue
            if o not in new:
                piece = np.reshape(flat[o:o + x.size], x.shape)
                new[o] = _as_dtype(piece, x.dtype)
            out.append(new[o])
        # (a layer at two places is one layer in the rebuilt model, as in the model: its
        # leaves are the same at both, one slice per tied array)
        return unflatten(self._spec, out, shared={})

    def __repr__(self) -> str:
        return f"Restructure({type(self.model).__name__}, ..., {self.length})"


def _as_dtype(piece, dtype):
    """The piece in its array's dtype: float32 stays float32, and a real array of a model
    that also holds complex ones (so that ``flat`` is complex) takes the real part, as
    Optimisers.jl's projection does."""
    if piece.dtype == dtype:
        return piece
    if np.dtype(piece.dtype).kind == "c" and np.dtype(dtype).kind != "c":
        piece = np.real(piece)
    return piece.astype(dtype)


def destructure(model) -> tuple[Any, Restructure]:
    """``(flat, re)``: every trainable array of ``model`` raveled into one vector (in
    ``fl.tree.flatten``'s order, a tied array once, dtypes promoted together), and a
    :class:`Restructure` that rebuilds the model from such a vector. Differentiable both
    ways: ``fl.gradient`` flows through ``flat`` back to the model and through ``re`` back
    to the vector, so a model can be trained as one vector (e.g. by an ODE solver or
    ``scipy.optimize``).

    >>> import numpy as np, fluxml as fl
    >>> model = fl.Chain(fl.Dense(2, 3, fl.relu), fl.Dense(3, 1))
    >>> flat, re = fl.destructure(model)
    >>> flat.shape
    (13,)
    >>> x = np.ones((4, 2), np.float32)
    >>> bool(np.allclose(re(flat)(x), model(x)))
    True
    >>> g = fl.gradient(lambda v: np.sum(re(x, v)), flat)[0]
    >>> g.shape
    (13,)
    """
    leaves, spec = flatten(model, trainable=True)
    offsets: list = []
    pieces = []
    seen: dict = {}  # id of an array -> its offset (tied arrays once)
    length = 0
    for x in leaves:
        if not _is_param(x):
            offsets.append(None)
            continue
        o = seen.get(id(x))
        if o is None:
            o = seen[id(x)] = length
            pieces.append(np.reshape(x, (-1,)))
            length += x.size
        offsets.append(o)
    # (a copy, also of a single array: writes into flat must not reach the model)
    flat = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    return flat, Restructure(model, spec, leaves, offsets, length)


def trainables(model, path: bool = False) -> list:
    """The trainable arrays of ``model`` in ``fl.tree.flatten``'s order, a tied array once;
    with ``path=True``, ``(path, array)`` pairs (the path where each was first met, dotted as
    ``fl.trainable`` and ``fl.state`` name them).

    >>> import numpy as np, fluxml as fl
    >>> model = fl.Chain(fl.Dense(2, 3), fl.Dense(3, 1, bias=False))
    >>> [a.shape for a in fl.trainables(model)]
    [(3, 2), (3,), (1, 3)]
    >>> [p for p, _ in fl.trainables(model, path=True)]
    ['layers.0.weight', 'layers.0.bias', 'layers.1.weight']
    """
    path = flag("trainables", "path", path)
    seen: set = set()
    out = []
    for p, x in leaves_with_paths(model, trainable=True):
        if _is_param(x) and id(x) not in seen:
            seen.add(id(x))
            out.append((p, x) if path else x)
    return out
