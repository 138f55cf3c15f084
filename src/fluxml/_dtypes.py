"""dtype helpers shared by packages that have nothing else in common (optimisers, losses,
ODE solvers, NN kernels).

>>> import numpy as np
>>> from fluxml._dtypes import real_dtype, working_float
>>> real_dtype(np.complex64), working_float(np.dtype(np.int32))
(dtype('float32'), dtype('float64'))
"""

from __future__ import annotations

import numpy as np


def is_jax(x) -> bool:
    """A JAX array (device-resident state for the xla back end, ``fl.xla``: immutable, never
    a view), told by its type's name: JAX is not imported to ask."""
    t = type(x)
    return t.__name__ == "ArrayImpl" and t.__module__.startswith("jax")


def is_complex(x) -> bool:
    """Does ``x`` (an array, a traced array, anything with a ``dtype``) hold complex values?"""
    return getattr(getattr(x, "dtype", None), "kind", None) == "c"


def real_dtype(dtype) -> np.dtype:
    """The real dtype of ``dtype``'s precision: complex64 -> float32, complex128 -> float64."""
    return np.finfo(dtype).dtype


def working_float(dtype) -> np.dtype:
    """The real float dtype a computation on values of ``dtype`` runs in: their own precision
    (float32 stays float32, complex64 -> float32), float64 for integers and booleans."""
    dtype = np.dtype(dtype)
    return real_dtype(dtype) if dtype.kind in "fc" else np.dtype(np.float64)
