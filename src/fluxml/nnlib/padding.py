"""Padding (NNlib's ``pad_constant``, ``pad_zeros``, ``pad_repeat``, ``pad_reflect``,
``pad_symmetric``, ``pad_circular``), as composites of ``np.pad``, whose rule the engine has:
the gradient sums the padded copies back onto the entries they came from.

Which axes, and how wide. ``pad`` is an int or a tuple:

- an int pads both sides of every axis in ``dims``; ``dims`` defaults to every axis for
  ``pad_constant`` and ``pad_zeros``, and to the spatial axes (all but batch and channel,
  ``x.ndim - 2`` of them) for the others, as in NNlib;
- a tuple ``(lo_1, hi_1, ..., lo_n, hi_n)`` pads the axes ``dims[k]`` by ``(lo_k, hi_k)``,
  where ``dims`` defaults to the last n axes, last first: PyTorch's ``F.pad`` order, and
  NNlib's (its first dimension is the last axis in fluxml's batch-first layout);
- a tuple of one width per axis in ``dims`` (given) pads both sides of each by its width.

Unlike NNlib, a tuple without ``dims`` is always read as ``(lo, hi)`` pairs: NNlib's
``pad_constant`` and ``pad_zeros`` read a tuple as long as ``ndims(x)`` as one width per
dimension (``pad_zeros(rand(2, 2), (1, 2))`` pads each side of dims 1 and 2 by 1 and 2;
here ``pad_zeros(x, (1, 2))`` pads the last axis by 1 before and 2 after, as ``F.pad``).
Give ``dims`` for one width per axis.

>>> import numpy as np, fluxml as fl
>>> x = np.arange(1.0, 4.0)
>>> fl.nnlib.pad_reflect(x, (2, 1))
array([3., 2., 1., 2., 3., 2.])
>>> fl.nnlib.pad_constant(np.ones((1, 2)), (1, 0, 0, 1), 7.0)
array([[7., 1., 1.],
       [7., 7., 7.]])
"""

from __future__ import annotations

import numpy as np

from fluxml._checks import is_int, shown
from fluxml.ad.core import raw

__all__ = ["pad_circular", "pad_constant", "pad_reflect", "pad_repeat", "pad_symmetric",
           "pad_zeros"]


def _axes(name, ndim, dims):
    """``dims`` as a tuple of axes in ``range(ndim)``, checked."""
    dims = (dims,) if is_int(dims) or not np.iterable(dims) else tuple(dims)
    out = []
    for d in dims:
        if not is_int(d) or not -ndim <= d < ndim:
            raise ValueError(f"{name}: dims must be axes of x (ndim {ndim}); got {dims}")
        out.append(int(d) % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"{name}: dims names an axis twice; got {dims}")
    return tuple(out)


def _widths(name, x, pad, dims, every_axis):
    """The ``(lo, hi)`` widths of each axis of ``x``, as ``np.pad`` takes them."""
    shape = np.shape(raw(x))
    ndim = len(shape)
    if is_int(pad):
        if dims is None:
            if not every_axis and ndim < 3:
                raise ValueError(
                    f"{name}: an integer pad pads the spatial axes (all but batch and channel), "
                    f"and x of shape {shape} has none; give dims=, or a tuple of widths")
            dims = range(ndim) if every_axis else range(2, ndim)
        axes = _axes(name, ndim, dims)
        pairs = [(pad, pad)] * len(axes)
    elif not np.iterable(pad):
        raise TypeError(f"{name}: pad must be an int or a tuple of ints; got {shown(pad)}")
    else:
        pad = tuple(pad)
        if dims is None:
            if len(pad) % 2 or len(pad) // 2 > ndim:
                raise ValueError(
                    f"{name}: pad must be an int or (lo, hi) pairs for at most x.ndim = {ndim} "
                    f"axes, last axis first; got {pad}")
            dims = range(-1, -len(pad) // 2 - 1, -1)
        axes = _axes(name, ndim, dims)
        if len(pad) == 2 * len(axes):
            pairs = list(zip(pad[0::2], pad[1::2]))
        elif len(pad) == len(axes):
            pairs = [(p, p) for p in pad]
        else:
            raise ValueError(f"{name}: pad must hold one width or one (lo, hi) pair per axis "
                             f"in dims {tuple(axes)}; got {pad}")
    widths = [(0, 0)] * ndim
    for axis, (lo, hi) in zip(axes, pairs):
        if not all(is_int(w) and w >= 0 for w in (lo, hi)):
            raise ValueError(f"{name}: pad widths must be non-negative integers; got {pad}")
        widths[axis] = (int(lo), int(hi))
    return shape, widths


def _pad(name, x, pad, dims, mode, most):
    """``np.pad`` in ``mode`` with NNlib's bounds: each width at most ``most(size)``."""
    shape, widths = _widths(name, x, pad, dims, every_axis=False)
    for axis, (lo, hi) in enumerate(widths):
        if max(lo, hi) > most(shape[axis]):
            raise ValueError(
                f"{name}: pads of ({lo}, {hi}) on axis {axis} of size {shape[axis]} are too "
                f"wide; at most {max(most(shape[axis]), 0)} here")
    return np.pad(x, widths, mode=mode)


def pad_constant(x, pad, value: float = 0.0, *, dims=None):
    """``x`` padded with ``value``; see the module docstring for ``pad`` and ``dims`` (by
    default an int pads every axis). PyTorch's ``F.pad(x, pad, value=value)`` for a tuple.

    >>> import numpy as np, fluxml as fl
    >>> fl.nnlib.pad_constant(np.ones((2, 2)), 1, -1.0)
    array([[-1., -1., -1., -1.],
           [-1.,  1.,  1., -1.],
           [-1.,  1.,  1., -1.],
           [-1., -1., -1., -1.]])
    """
    _, widths = _widths("pad_constant", x, pad, dims, every_axis=True)
    return np.pad(x, widths, constant_values=value)


def pad_zeros(x, pad, *, dims=None):
    """``pad_constant(x, pad, 0.0, dims=dims)``.

    >>> import numpy as np, fluxml as fl
    >>> fl.nnlib.pad_zeros(np.ones(2), (0, 1))
    array([1., 1., 0.])
    """
    _, widths = _widths("pad_zeros", x, pad, dims, every_axis=True)
    return np.pad(x, widths)


def pad_repeat(x, pad, *, dims=None):
    """``x`` padded by repeating its edge values (PyTorch's ``mode="replicate"``).

    >>> import numpy as np, fluxml as fl
    >>> fl.nnlib.pad_repeat(np.array([1.0, 2.0]), (2, 1))
    array([1., 1., 1., 2., 2.])
    """
    return _pad("pad_repeat", x, pad, dims, "edge", lambda n: np.inf if n else 0)


def pad_reflect(x, pad, *, dims=None):
    """``x`` reflected across its edges, the edge value itself not repeated (PyTorch's
    ``mode="reflect"``): a width is at most the axis's size minus one.

    >>> import numpy as np, fluxml as fl
    >>> fl.nnlib.pad_reflect(np.array([1.0, 2.0, 3.0]), (2, 2))
    array([3., 2., 1., 2., 3., 2., 1.])
    """
    return _pad("pad_reflect", x, pad, dims, "reflect", lambda n: n - 1)


def pad_symmetric(x, pad, *, dims=None):
    """``x`` mirrored at its edges, the edge value repeated: a width is at most the axis's
    size.

    >>> import numpy as np, fluxml as fl
    >>> fl.nnlib.pad_symmetric(np.array([1.0, 2.0, 3.0]), (2, 2))
    array([2., 1., 1., 2., 3., 3., 2.])
    """
    return _pad("pad_symmetric", x, pad, dims, "symmetric", lambda n: n)


def pad_circular(x, pad, *, dims=None):
    """``x`` wrapped around: the values past one edge come from the other (PyTorch's
    ``mode="circular"``); a width is at most the axis's size.

    >>> import numpy as np, fluxml as fl
    >>> fl.nnlib.pad_circular(np.array([1.0, 2.0, 3.0]), (1, 2))
    array([3., 1., 2., 3., 1., 2.])
    """
    return _pad("pad_circular", x, pad, dims, "wrap", lambda n: n)
