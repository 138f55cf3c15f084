"""Derivative rules, one family a file; importing a family registers its rules.

``fluxml.ad`` imports every family. This package itself imports only the core and the lazy
families' loaders, so that the machinery between the families (``ad/mutation.py`` builds on
``indexing``, and ``shape``, ``linalg`` ... build on it) can import one family alone.
"""

from fluxml.ad.core import LAZY_RULES
from fluxml.ad.rules import special

LAZY_RULES.append(special.load)  # scipy.special rules, registered on first use


def _load_fft(func) -> bool:
    """The np.fft rules, registered on the first FFT of a traced array (importing them imports
    numpy.fft, which ``import numpy`` leaves for later)."""
    if getattr(func, "__module__", None) != "numpy.fft":
        return False
    # lazy: numpy.fft is loaded only by a program that uses it
    from fluxml.ad.rules import fft  # noqa: F401

    return True


LAZY_RULES.append(_load_fft)
