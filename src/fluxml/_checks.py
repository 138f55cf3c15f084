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

import math
from numbers import Integral, Real

import numpy as np


def is_int(n) -> bool:
    """Whether ``n`` is a Python or NumPy integer, and not a bool."""
    return isinstance(n, Integral) and not isinstance(n, bool)


def is_real(x) -> bool:
    """Whether ``x`` is a real number: a Python or NumPy one, not a bool, or a 0-d integer or
    float array (a layer's setting after ``fl.f64`` or a tree map)."""
    return isinstance(x, (Real, np.floating, np.integer)) and not isinstance(x, bool) or \
        getattr(x, "ndim", None) == 0 and getattr(x, "dtype", np.dtype(object)).kind in "iuf"


def positive_int(who: str, name: str, n, minimum: int = 1) -> int:
    """``n`` as an int where it is an integer (``is_int``) ``>= minimum`` (1: a positive
    one), else a ValueError naming ``who`` and its argument ``name``, what it expected and
    what came."""
    if not is_int(n) or n < minimum:
        kind = {1: "a positive int", 0: "a non-negative int"}.get(minimum,
                                                                 f"an int >= {minimum}")
        raise ValueError(f"{who}: {name} must be {kind}; got {shown(n)}")
    return int(n)


def shown(n, *, typed: bool = False) -> str:
    """``n`` for an error: its repr, and its type where it is not an integer (or where
    ``typed``: an int where a bool was expected)."""
    if is_int(n) and not typed:
        return repr(n)
    kind = type(n).__name__
    return f"{n!r} ({'an' if kind[0] in 'aeiou' else 'a'} {kind})"


def real_in(who: str, name: str, x, low: float = -math.inf, high: float = math.inf, *,
            low_open: bool = False, high_open: bool = False):
    """``x`` where it is a real number (a Python or NumPy one, not a bool) in the range from
    ``low`` to ``high`` (an infinite bound is open: ``x`` is finite), else a ValueError
    naming ``who`` and its argument ``name``, the range and what came. NaN is in no range. A
    traced value (inside ``fl.compile``) is not checked: its value is not known.

    >>> real_in("Adam", "epsilon", 1e-8, 0)
    1e-08
    >>> real_in("Momentum", "rho", float("nan"), 0, 1)
    Traceback (most recent call last):
    ...
    ValueError: Momentum: rho must be a number in [0, 1]; got nan
    """
    if type(x).__name__ == "Tracer":
        return x
    numeric = is_real(x)
    v = float(x) if numeric else math.nan
    if not (math.isfinite(v) and (v > low if low_open else v >= low) and
            (v < high if high_open else v <= high)):
        raise ValueError(f"{who}: {name} must be {_range(low, high, low_open, high_open)}; got "
                         f"{repr(x) if numeric else shown(x)}")
    return x


def _range(low, high, low_open, high_open) -> str:
    if math.isinf(low) and math.isinf(high):
        return "a finite number"
    if math.isinf(high):
        return f"a finite number {'>' if low_open else '>='} {low:g}"
    if math.isinf(low):
        return f"a finite number {'<' if high_open else '<='} {high:g}"
    return f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


def flag(who: str, name: str, x, *, none: bool = False) -> bool | None:
    """``x`` as a bool where it is one (Python's or NumPy's), or None where ``none`` allows it
    (a setting left to the mode: ``active=None``), else a TypeError naming ``who`` and
    ``name`` (``"yes"`` or ``2`` were taken as true, and ``"no"`` too).

    >>> flag("DataLoader", "shuffle", "no")
    Traceback (most recent call last):
    ...
    TypeError: DataLoader: shuffle must be True or False; got 'no' (a str)
    >>> flag("Dropout", "active", 1, none=True)
    Traceback (most recent call last):
    ...
    TypeError: Dropout: active must be True, False or None; got 1 (an int)
    """
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if x is None and none:
        return None
    raise TypeError(f"{who}: {name} must be {'True, False or None' if none else 'True or False'}"
                    f"; got {shown(x, typed=True)}")


def numbers(who: str, x, *, real: bool = True):
    """``x``, the input of the elementwise function ``who``, as an array of numbers: a list
    or tuple converted as NumPy converts it, booleans as float64 0 and 1, an array of any
    library (or a traced one) as it is; a clear TypeError for what holds no numbers, and,
    where ``real``, for complex numbers (NumPy would compare them lexicographically, or drop
    their imaginary parts)."""
    if isinstance(x, (list, tuple)):
        x = np.asarray(x)
    dtype = getattr(x, "dtype", None)
    kind = dtype.kind if dtype is not None else "b" if isinstance(x, bool) else \
        "c" if isinstance(x, complex) else "f" if isinstance(x, (int, float)) else "O"
    if kind == "b":  # (True, a mask: as numbers; NumPy cannot negate booleans)
        return x.astype(np.float64) if dtype is not None else np.float64(x)
    if kind in "iuf" or (kind == "c" and not real):
        return x
    what = f"dtype {dtype}" if dtype is not None else f"a {type(x).__name__}"
    if kind == "c":
        raise TypeError(f"{who} is a function of real numbers; got {what} (apply it to the "
                        "real and imaginary parts separately for a complex network)")
    raise TypeError(f"{who} expects an array of numbers; got {what}")


def function(who: str, name: str, f):
    """``f`` where it is callable (an activation, an initialiser, a layer to wrap), else a
    TypeError naming ``who`` and its argument ``name``: a string or a number stored as a
    layer's activation was accepted and failed only at the first call, or never (a layer whose
    activation is skipped).

    >>> function("Conv", "activation", "relu")
    Traceback (most recent call last):
    ...
    TypeError: Conv: activation must be callable; got 'relu' (a str)
    """
    if not callable(f):
        raise TypeError(f"{who}: {name} must be callable; got {shown(f)}")
    return f


def generator(who: str, rng):
    """``rng`` where it is None (fluxml's default generator) or a random generator (NumPy's
    ``Generator``, CuPy's: anything with a ``random`` method), else a TypeError naming
    ``who``: a seed or a string was stored and failed at the first draw with Python's
    AttributeError, and ``rng=0`` drew from the default generator, silently.

    >>> generator("Dropout", 0)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    TypeError: Dropout: rng must be a random generator ... or None; got 0 (an int)
    """
    if rng is not None and not callable(getattr(rng, "random", None)):
        raise TypeError(f"{who}: rng must be a random generator (np.random.default_rng(seed)) "
                        f"or None; got {shown(rng, typed=True)}")
    return rng
