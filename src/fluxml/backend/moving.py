"""``fl.gpu`` / ``fl.cpu``: move every array of a tree (a model, optimiser state, a batch).

Every array leaf moves, the fields a layer declares non-trainable included (BatchNorm's
running statistics); an array that appears twice (tied weights) moves once and stays tied;
an array already on the target is kept, not copied; numbers stay numbers. A tree in which
nothing moves comes back as the same object.

>>> import numpy as np, fluxml as fl
>>> batch = {"x": np.ones((2, 3), np.float32), "y": np.array([0, 1])}
>>> fl.cpu(batch) is batch  # already on the CPU
True
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from fluxml.ad.core import Tracer, raw
from fluxml.backend.registry import ArrayBackend, backend_of
from fluxml.tree import flatten, unflatten

_MOVABLE_KINDS = "biufc"  # NumPy arrays of these dtype kinds go to a device (not object/str)


class GPUUnavailableError(RuntimeError):
    """``fl.gpu(..., strict=True)`` found no usable GPU; the message says why and what to
    install."""


class GPUFallbackWarning(UserWarning):
    """``fl.gpu`` found no usable GPU and left the arrays on the CPU (warned once)."""


_warned = False


def _move(tree, convert, name: str):
    leaves, spec = flatten(tree)  # every field: non-trainable arrays move too
    moved: dict[int, Any] = {}  # id -> moved array: a tied array moves once, stays tied
    out = []
    changed = False
    for x in leaves:
        y = moved.get(id(x))
        if y is None:
            y = moved[id(x)] = _convert_traced(x, convert, name) if type(x) is Tracer \
                else convert(x)
        changed = changed or y is not x
        out.append(y)
    return unflatten(spec, out, shared={}) if changed else tree  # (tied objects stay tied)


def _convert_traced(x, convert, name):
    """A traced array already on the target stays as it is; moving one is refused."""
    value = raw(x)
    if convert(value) is value:
        return x
    raise TypeError(
        f"{name}: the tree holds a traced array on another device (this call is inside "
        f"fl.gradient or another transform), and moving arrays between devices is not "
        f"differentiable. Move the model and the data before taking the gradient.")


def cpu(tree):
    """Copy every array of ``tree`` that lives on a GPU (or another registered device) to a
    NumPy array; NumPy arrays and numbers are kept as they are.

    >>> import numpy as np, fluxml as fl
    >>> fl.cpu([np.zeros(2), 1.5])
    [array([0., 0.]), 1.5]
    """
    def convert(x):
        backend = backend_of(x)
        return x if backend is None else backend.to_host(x)

    return _move(tree, convert, "fl.cpu")


def to_device(tree, backend: ArrayBackend, device=None):
    """Move every array of ``tree`` to ``device`` of ``backend`` (``fl.gpu`` is this with
    CuPy, once it has checked that a GPU is there). NumPy arrays of numbers and bools are
    copied over; arrays of other registered backends go through the host; arrays already
    on the target are kept."""
    def convert(x):
        if isinstance(x, np.ndarray):
            return backend.to_device(x, device) if x.dtype.kind in _MOVABLE_KINDS else x
        if isinstance(x, np.generic):
            return x
        held = backend_of(x)
        if held is None:
            return x
        if held is not backend:
            x = held.to_host(x)
        return backend.to_device(x, device)

    return _move(tree, convert, f"to_device({backend.name})")


def gpu(tree, device: int | None = None, strict: bool = False):
    """Move every array of ``tree`` (a model, optimiser state, a batch, any tree) to an
    NVIDIA GPU as CuPy arrays; ``device`` picks the GPU (default: CuPy's current one).

    Without CuPy or a CUDA device the arrays stay on the CPU, with one warning
    (:class:`GPUFallbackWarning`, once per process) that says why and how to install;
    ``strict=True`` raises :class:`GPUUnavailableError` instead.

    >>> import warnings, numpy as np, fluxml as fl
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     x = fl.gpu(np.ones(3))  # a CuPy array on a GPU machine, else this NumPy one
    >>> fl.cpu(x)
    array([1., 1., 1.])
    """
    global _warned
    if device is not None and (isinstance(device, bool) or not isinstance(device, int)
                               or device < 0):
        raise TypeError(f"fl.gpu: device must be a GPU number (0, 1, ...) or None, got "
                        f"{device!r}")
    from fluxml.backend.cuda import INSTALL_HINT, cupy_backend, cupy_status

    cupy, why = cupy_status()
    if cupy is None:
        if strict:
            raise GPUUnavailableError(f"fl.gpu(strict=True): no usable GPU: {why}. To run on "
                                      f"an NVIDIA GPU, {INSTALL_HINT}.")
        if not _warned:
            _warned = True
            warnings.warn(f"fl.gpu: no usable GPU, so the arrays stay on the CPU: {why}. To "
                          f"run on an NVIDIA GPU, {INSTALL_HINT}; fl.gpu(x, strict=True) "
                          f"raises instead of falling back.", GPUFallbackWarning, stacklevel=2)
        return cpu(tree)
    count = cupy.cuda.runtime.getDeviceCount()
    if device is not None and device >= count:
        raise ValueError(f"fl.gpu: device={device}, but CuPy sees {count} CUDA device"
                         f"{'s' if count != 1 else ''} (numbered from 0)")
    return to_device(tree, cupy_backend(), device)
