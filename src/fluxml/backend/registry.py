"""Array backends: which library holds an array, on which device, and how to move it.

NumPy is built in. Another array library (CuPy, or a test's stand-in) is one
:class:`ArrayBackend` given to :func:`register`; CuPy registers itself the first time one of
its arrays is seen or ``fl.gpu`` is called, so that ``import fluxml`` never imports CuPy.

>>> import numpy as np, fluxml as fl
>>> fl.backend.array_module(np.ones(2), 3.0) is np
True
>>> fl.backend.device_of(np.ones(2))
'cpu'
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from fluxml import tree
from fluxml._kernel_modules import KERNEL_MODULES


@dataclass(frozen=True)
class ArrayBackend:
    """An array library beside NumPy.

    ``module`` is its NumPy-like namespace (what :func:`array_module` returns for its
    arrays); ``device_of(x)`` names the device of one of its arrays (``"cuda:0"``);
    ``to_host(x)`` copies one to a NumPy array; ``to_device(x, device)`` puts a NumPy array
    (or one of its own on another device) on ``device`` (an int or None for the current
    one), returning ``x`` itself when it is already there. ``kernels``: whether fluxml's
    kernels (``fluxml.nnlib``) run on its arrays through ``module``, as they do on CuPy's
    (mutable arrays, NumPy's API); JAX's arrays are immutable, and computed on eagerly they
    go through NumPy."""

    name: str
    array_type: type
    module: Any
    device_of: Callable[[Any], str]
    to_host: Callable[[Any], np.ndarray]
    to_device: Callable[[Any, Any], Any]
    kernels: bool = False


_BACKENDS: dict[type, ArrayBackend] = {}
_CPU_TYPES = (np.ndarray, np.generic, float, int, complex, bool)


def register(backend: ArrayBackend) -> None:
    """Make ``backend``'s arrays known: tree leaves, moved by ``fl.cpu``, checked for
    mixing with arrays of other devices, and answered by :func:`array_module`."""
    if not isinstance(backend, ArrayBackend):
        raise TypeError(f"register expects an ArrayBackend, got {type(backend).__name__}")
    if backend.array_type not in _BACKENDS:
        _BACKENDS[backend.array_type] = backend
        if backend.kernels:
            KERNEL_MODULES[backend.array_type] = backend.module
        tree.register_leaf(backend.array_type)


def backend_of(x) -> ArrayBackend | None:
    """The registered backend of ``x`` (None for NumPy arrays, numbers and unknown types).
    A CuPy (JAX) array registers CuPy (JAX) on first sight."""
    backend = _BACKENDS.get(type(x))
    if backend is None:
        module = type(x).__module__
        if module.startswith("cupy") and "cupy" in sys.modules:
            from fluxml.backend.cuda import cupy_backend

            cupy_backend()
            backend = _BACKENDS.get(type(x))
        elif module.startswith("jax") and "jax" in sys.modules:  # a JAX array: JAX registers
            # lazy: the JAX backend loads when a JAX array is first seen
            from fluxml.backend.xla_arrays import xla_backend

            xla_backend()
            backend = _BACKENDS.get(type(x))
    return backend


def _unwrap(x):
    """The concrete array under every trace level (a traced GPU array is still a GPU one)."""
    from fluxml.ad.core import raw

    return raw(x)


def device_of(x) -> str:
    """``"cpu"`` for NumPy arrays and numbers, else the registered backend's name for the
    device (``"cuda:0"``); traced arrays answer for the array they trace."""
    x = _unwrap(x)
    if isinstance(x, _CPU_TYPES):
        return "cpu"
    backend = backend_of(x)
    if backend is None:
        raise TypeError(f"device_of: {type(x).__module__}.{type(x).__name__} is not an array "
                        "of a known backend; expected a NumPy array, a number or an array of "
                        "a registered backend (CuPy registers itself)")
    return backend.device_of(x)


def array_module(*arrays):
    """The array namespace for ``arrays``: NumPy, or the module of the registered backend
    (``cupy``) that holds them. Numbers and ``None`` are neutral; arrays of two devices in
    one call raise :class:`~fluxml.backend.DeviceMismatchError`.

    >>> import numpy as np, fluxml as fl
    >>> xp = fl.backend.array_module(np.zeros(3))
    >>> xp.tanh(np.zeros(3))
    array([0., 0., 0.])
    """
    found = None
    for a in arrays:
        t = type(a)
        if t is np.ndarray or a is None or isinstance(a, _CPU_TYPES):  # the NumPy path
            continue
        backend = backend_of(_unwrap(a))
        if backend is not None:
            found = backend
            break
    if found is None:
        return np
    from fluxml.backend.mixing import check_same_device

    check_same_device(arrays, "array_module")
    return found.module
