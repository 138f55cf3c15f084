"""Checks of the ODE options shared by ``solve``, the sensitivity algorithms and
``NeuralODE``: each refuses a bad argument by name, saying what it expected and what came.

>>> from fluxml.ode.checks import tolerance
>>> tolerance("solve", "rtol", -1.0)
Traceback (most recent call last):
...
ValueError: solve: rtol must be a number >= 0 (or an array of them, one per state entry); got -1.0
"""

from __future__ import annotations

import numpy as np

from fluxml._checks import is_int, shown


def tolerance(who: str, name: str, tol):
    """``tol`` where it is a finite number >= 0 or an array of them; a string (NumPy reads
    ``"1e-6"`` as a number, and the solve failed later in a ufunc) or a bool is refused."""
    values = np.asarray(tol) if not isinstance(tol, (str, bytes, bool)) else np.array(np.nan)
    if values.dtype.kind not in "iuf":
        values = np.array(np.nan)
    if values.size == 0 or not np.all(np.isfinite(values) & (values >= 0)):
        raise ValueError(f"{who}: {name} must be a number >= 0 (or an array of them, one per "
                         f"state entry); got {tol!r}")
    return tol


def tolerances(who: str, rtol, atol) -> None:
    """Each of ``rtol`` and ``atol`` that is given checked by :func:`tolerance`, and the two
    refused when both are 0 (then no error is small enough: every step was rejected until
    max_steps)."""
    for name, tol in (("rtol", rtol), ("atol", atol)):
        if tol is not None:
            tolerance(who, name, tol)
    if rtol is not None and atol is not None and not np.any(np.add(rtol, atol) > 0):
        raise ValueError(f"{who}: rtol and atol are both 0, so no error would be small "
                         "enough; pass a positive tolerance")


def tolerance_shape(who: str, name: str, tol, shape: tuple, tree: bool) -> None:
    """A per-entry tolerance broadcasts to the state's ``shape`` without growing it: a
    column (2, 1) against a state (2,) broadcast to (2, 2), and each entry's error was
    judged against every entry's tolerance, silently; (3,) against (2,) failed in the first
    step's norm, naming neither."""
    if np.ndim(tol) == 0:
        return
    try:
        fits = np.broadcast_shapes(np.shape(tol), shape) == shape
    except ValueError:
        fits = False
    if not fits:
        like = f"the flat vector of the tree state, {shape}" if tree else f"u0's shape {shape}"
        raise ValueError(f"{who}: {name} of shape {np.shape(tol)} does not broadcast to "
                         f"{like}; a tolerance per entry is shaped like the state")


def solver(who: str, s):
    """``s`` where it is a solver instance: the class itself (``solver=Tsit5``, a common
    slip) failed deep in the step control ('unsupported operand type(s) for /: 'float' and
    'property''), a string with an AttributeError."""
    if isinstance(s, type):
        raise TypeError(f"{who}: solver must be a solver instance; got the class "
                        f"{s.__name__} (write {s.__name__}())")
    if not all(hasattr(s, a) for a in ("step", "order", "adaptive", "interpolate")):
        raise TypeError(f"{who}: solver must be a solver such as Tsit5(), Vern7() or Rodas5(); "
                        f"got {shown(s)}")
    return s


def tspan(who: str, span) -> tuple[float, float]:
    """``(t0, t1)`` as two finite Python floats; anything else (a number, None, a string, a
    complex or NaN end) refused by name."""
    try:
        ok = len(span) == 2
        times = (_time(span[0]), _time(span[1])) if ok else None
    except TypeError:
        ok = False
    if not ok:
        raise ValueError(f"{who}: tspan must be (t0, t1), two times; got {span!r}")
    if not np.all(np.isfinite(times)):  # (a NaN end solved nothing, silently)
        raise ValueError(f"{who}: tspan must be two finite times (t0, t1); got {span!r}")
    return times


def _time(t) -> float:
    if isinstance(t, int) and not isinstance(t, bool):  # (10**20: NumPy has no int for it)
        return float(t)
    if isinstance(t, (str, bytes, bool)) or np.ndim(t) != 0 or \
            np.asarray(t).dtype.kind not in "iuf":
        raise TypeError
    return float(t)


def times(who: str, name: str, ts) -> np.ndarray:
    """``ts`` (a number or a list of them) as a 1-d float array; strings, nested lists and
    non-numbers refused by name."""
    values = None if isinstance(ts, (str, bytes)) else np.asarray(ts)
    if values is None or values.dtype.kind not in "iuf" or values.ndim > 1:
        raise ValueError(f"{who}: {name} must be a time or a list of times; got {ts!r}")
    return np.atleast_1d(values.astype(float))


def count_or_times(who: str, name: str, x):
    """A count (a non-negative int) or a list of times."""
    if x is None or is_int(x) and x >= 0:
        return x
    if np.ndim(x) == 0:
        raise ValueError(f"{who}: {name} must be a number of evenly spaced times (an int >= 0) "
                         f"or a list of times; got {shown(x)}")
    return times(who, name, x)
