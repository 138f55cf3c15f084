"""Which array libraries besides NumPy fluxml's kernels and derivative rules run on: array
type -> its NumPy-like module. Filled by :func:`fluxml.backend.register` for a library whose
arrays are mutable and follow NumPy's API (``ArrayBackend.kernels``: CuPy's); read by the
kernels (``nnlib.windows.array_module``), the rules (``ad.arrays.module_of``) and the
optimisers. It imports nothing, so that the engine, below the backends, can read it.

>>> import numpy as np
>>> kernel_module(np.ndarray) is None
True
"""

from __future__ import annotations

import sys
from typing import Any

KERNEL_MODULES: dict[type, Any] = {}


def kernel_module(t: type):
    """The module of the array type ``t`` where it is another library's than NumPy's that
    the kernels run on (CuPy's, known by its module before CuPy registers), else None."""
    if t.__module__.startswith("cupy"):
        return sys.modules["cupy"]
    return KERNEL_MODULES.get(t)


def on_kernel_library(x) -> bool:
    """Is ``x`` an array of one of those libraries (a GPU's), not NumPy's?"""
    return kernel_module(type(x)) is not None
