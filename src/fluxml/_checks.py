"""Argument checks shared by modules that have nothing else in common (layers, callbacks,
schedules, the data loader): one test and one wording for each kind of bad argument.

A count (a size, a number of heads or groups, steps between events) is a Python or NumPy
integer: not a bool (``True`` would pass as 1), not a float, even ``2.0`` (a computed
value that is whole by chance, silently truncated elsewhere).

>>> from fluxml._checks import positive_int
>>> positive_int("Dense", "in_features", 3)
3
>>> positive_int("Dense", "in_features", 0)
Traceback (most recent call last):
...
ValueError: Dense: in_features must be a positive int; got 0
>>> positive_int("PolyAct", "degree", 2.0)
Traceback (most recent call last):
...
ValueError: PolyAct: degree must be a positive int; got 2.0 (a float)
"""

from __future__ import annotations

from numbers import Integral


def is_int(n) -> bool:
    """Whether ``n`` is a Python or NumPy integer, and not a bool."""
    return isinstance(n, Integral) and not isinstance(n, bool)


def positive_int(who: str, name: str, n, minimum: int = 1) -> int:
    """``n`` as an int where it is an integer (``is_int``) ``>= minimum`` (1: a positive
    one), else a ValueError naming ``who`` and its argument ``name``, what it expected and
    what came."""
    if not is_int(n) or n < minimum:
        kind = {1: "a positive int", 0: "a non-negative int"}.get(minimum,
                                                                 f"an int >= {minimum}")
        raise ValueError(f"{who}: {name} must be {kind}; got {shown(n)}")
    return int(n)


def shown(n) -> str:
    """``n`` for an error: its repr, and its type where it is not an integer."""
    if is_int(n):
        return repr(n)
    kind = type(n).__name__
    return f"{n!r} ({'an' if kind[0] in 'aeiou' else 'a'} {kind})"
