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


def _family_loader(module: str, names: tuple):
    """A loader of the rule family ``module``, registered on the first call of one of the
    NumPy functions ``names`` with a traced array: families few programs need (their import
    is a few milliseconds of ``import fluxml``)."""
    def load(func) -> bool:
        if getattr(func, "__module__", None) != "numpy" or \
                getattr(func, "__name__", None) not in names:
            return False
        # lazy: registered on first use
        import importlib

        importlib.import_module(f"fluxml.ad.rules.{module}")
        return True

    return load


LAZY_RULES.append(_family_loader("nans", (
    "nanprod", "nancumsum", "nancumprod", "nanvar", "nanstd", "nanmedian", "nanquantile",
    "nanpercentile", "nanargmax", "nanargmin")))
LAZY_RULES.append(_family_loader("polynomials", (
    "vander", "polyadd", "polysub", "polymul", "polydiv", "poly", "roots", "polyfit")))
LAZY_RULES.append(_family_loader("sets", (
    "unique", "unique_values", "unique_counts", "unique_inverse", "unique_all")))
LAZY_RULES.append(_family_loader("histograms", (
    "histogram", "histogram_bin_edges", "histogram2d", "histogramdd")))
