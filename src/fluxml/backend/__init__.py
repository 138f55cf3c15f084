"""Where arrays live: NumPy on the CPU, CuPy on NVIDIA GPUs (the optional ``gpu`` extra), JAX
arrays on XLA's device for compiled XLA steps (the optional ``xla`` extra).

``fl.gpu(tree)`` / ``fl.xla(tree)`` / ``fl.cpu(tree)`` move every array of a model, optimiser
state or batch;
kernels ask :func:`array_module` for the namespace of their inputs; an operation given
arrays of two devices raises :class:`DeviceMismatchError` naming both.

>>> import numpy as np, fluxml as fl
>>> fl.backend.array_module(np.ones(2)).__name__
'numpy'
"""

from fluxml.backend.mixing import DeviceMismatchError, check_same_device
from fluxml.backend.moving import GPUFallbackWarning, GPUUnavailableError, cpu, gpu, to_device
from fluxml.backend.registry import ArrayBackend, array_module, backend_of, device_of, register
from fluxml.backend.xla_arrays import xla

__all__ = [
    "ArrayBackend", "DeviceMismatchError", "GPUFallbackWarning", "GPUUnavailableError",
    "array_module", "backend_of", "check_same_device", "cpu", "device_of", "gpu", "register",
    "to_device", "xla",
]
