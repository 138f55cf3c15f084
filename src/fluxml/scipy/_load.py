"""SciPy, imported on first use (an optional extra: ``pip install fluxml[special]``)."""

from __future__ import annotations

import importlib


def scipy_module(name: str):
    """``scipy.<name>``, or an ImportError that says which fluxml function needed it."""
    try:
        return importlib.import_module(f"scipy.{name}")
    except ImportError as e:
        raise ImportError(
            f"fluxml.scipy.{name} computes its values with SciPy, which is not installed. "
            "Install it with `pip install scipy` (or `pip install fluxml[special]`).") from e
