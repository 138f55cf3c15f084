"""Argument checks shared by modules that have nothing else in common (layers, callbacks,
schedules, the data loader): one test and one wording for each kind of bad argument.

>>> from fluxml._checks import positive_int
>>> positive_int("Dense", "in_features", 3)
3
>>> positive_int("Dense", "in_features", 0)
Traceback (most recent call last):
...
ValueError: Dense: in_features must be a positive int; got 0
"""

from __future__ import annotations

from numbers import Integral


def positive_int(who: str, name: str, n) -> int:
    """``n`` as an int where it is a positive one (a Python or NumPy int; not a bool, whose
    ``True`` would pass as 1), else a ValueError naming ``who`` and its argument ``name``."""
    if not isinstance(n, Integral) or isinstance(n, bool) or n < 1:
        raise ValueError(f"{who}: {name} must be a positive int; got {n!r}")
    return int(n)
