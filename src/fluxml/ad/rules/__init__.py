"""Derivative rules, one family a file. Importing this package registers them all."""

from fluxml.ad.core import LAZY_RULES
from fluxml.ad.rules import (  # noqa: F401
    complex_values,
    decompositions,
    eig,
    elementwise,
    elementwise_more,
    indexing,
    joins,
    linalg,
    norms,
    numerics,
    reductions,
    selection,
    shape,
    solvers,
    special,
    writes,
)

LAZY_RULES.append(special.load)  # scipy.special rules, registered on first use


def _load_fft(func) -> bool:
    """The np.fft rules, registered on the first FFT of a traced array (importing them imports
    numpy.fft, which ``import numpy`` leaves for later)."""
    if getattr(func, "__module__", None) != "numpy.fft":
        return False
    from fluxml.ad.rules import fft  # noqa: F401

    return True


LAZY_RULES.append(_load_fft)
