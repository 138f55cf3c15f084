"""CuPy, the GPU backend: is it usable here, and its :class:`ArrayBackend`.

Nothing here imports CuPy until asked: ``fl.gpu`` calls :func:`cupy_status`, and
``registry.backend_of`` calls :func:`cupy_backend` on the first CuPy array it meets.

>>> from fluxml.backend.cuda import INSTALL_HINT
>>> "fluxml[gpu]" in INSTALL_HINT
True
"""

from __future__ import annotations

import importlib

from fluxml.backend.registry import ArrayBackend, register

INSTALL_HINT = ("install CuPy for your CUDA version with `pip install 'fluxml[gpu]'` (CUDA 12; "
                "for CUDA 13 `pip install cupy-cuda13x`) on a machine with an NVIDIA GPU and "
                "its driver")

_BACKEND: ArrayBackend | None = None


def cupy_status() -> tuple[object | None, str]:
    """``(cupy, "")`` when CuPy imports and sees a CUDA device, else ``(None, why not)``."""
    try:
        cupy = importlib.import_module("cupy")
    except ImportError as e:
        return None, f"CuPy is not installed ({e})"
    except Exception as e:  # a broken install (CUDA libraries missing) fails on import
        return None, f"CuPy failed to import: {type(e).__name__}: {e}"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # no driver, or the driver is older than CuPy's CUDA
        return None, f"CuPy finds no CUDA device: {type(e).__name__}: {e}"
    if count == 0:
        return None, "CuPy finds no CUDA device (getDeviceCount() is 0)"
    return cupy, ""


def cupy_backend() -> ArrayBackend:
    """CuPy's backend, registered on first call (imports CuPy)."""
    global _BACKEND
    if _BACKEND is None:
        import cupy

        def device_of(x):
            return f"cuda:{x.device.id}"

        def to_host(x):
            return cupy.asnumpy(x)

        def to_device(x, device):
            if device is None:
                device = cupy.cuda.Device().id
            if type(x) is cupy.ndarray and x.device.id == device:
                return x
            with cupy.cuda.Device(device):
                return cupy.asarray(x)  # copies from the host, or across devices

        _BACKEND = ArrayBackend("cupy", cupy.ndarray, cupy, device_of, to_host, to_device,
                                kernels=True)
        register(_BACKEND)
    return _BACKEND
