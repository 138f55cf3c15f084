"""Which array libraries besides NumPy fluxml's kernels and derivative rules run on: array
type -> its NumPy-like module. Filled by :func:`fluxml.backend.register` for a library whose
arrays are mutable and follow NumPy's API (``ArrayBackend.kernels``: CuPy's); read by the
kernels (``nnlib.windows.array_module``), the rules (``ad.arrays.module_of``) and the
optimisers. It imports nothing, so that the engine, below the backends, can read it.

>>> import numpy as np
>>> np.ndarray in KERNEL_MODULES
False
"""

from __future__ import annotations

from typing import Any

KERNEL_MODULES: dict[type, Any] = {}
