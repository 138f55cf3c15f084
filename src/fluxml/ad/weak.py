"""Weak numbers: the values a transform traces for a Python number, so that NumPy computes
with them as with the Python number they stand for (NEP 50's weak promotion: ``x32 * 0.5``
stays float32). The functions that mark tracers weak, which read tracers, are in ``core``.

>>> import numpy as np
>>> from fluxml.ad.weak import weak
>>> (np.ones(2, np.float32) * weak(0.5)).dtype
dtype('float32')
"""

from __future__ import annotations

import numpy as np


class WeakFloat(np.float64):
    """The value of a traced Python float: a float64 NumPy scalar (it has the ``shape`` and
    ``dtype`` the engine and the rules read) that NumPy computes with as the Python float it
    stands for.

    NumPy's promotion (NEP 50) takes a Python float as *weak*: ``x * 0.5`` keeps a float32
    ``x`` float32, where ``x * np.float64(0.5)`` is float64. A transform's primal of a Python
    float argument or number field is this subclass: NumPy hands it to ``__array_ufunc__``
    and ``__array_function__`` below, which call the function again with the Python float,
    so implementations and derivative rules compute as the untraced program does (a float32
    cotangent times it stays float32). The arithmetic operators of a tracer mark their
    result weak where every operand was (``s * 2.0`` of a Python float is a float:
    ``core.weak_result``); the user gets Python floats back (:func:`python_number`).

    (A NumPy scalar's own operators do not dispatch: ``np.float32(2) * WeakFloat(0.5)`` is
    float64. The engine computes through ufuncs, and tracers keep such values apart.)"""

    __slots__ = ()

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if method == "__call__" and not kwargs and len(inputs) == 2:  # the common case, short
            a, b = inputs
            return ufunc(a.item() if type(a) in _ARGUMENTS else a,
                         b.item() if type(b) in _ARGUMENTS else b)
        return getattr(ufunc, method)(*_numbers(inputs), **_numbers(kwargs))

    def __array_function__(self, func, types, args, kwargs):
        return func(*_numbers(args), **_numbers(kwargs))


class WeakComplex(np.complex128):
    """The value of a traced Python complex number: :class:`WeakFloat`'s complex twin."""

    __slots__ = ()
    __array_ufunc__ = WeakFloat.__array_ufunc__
    __array_function__ = WeakFloat.__array_function__


class WeakInt(np.int64):
    """A traced Python int as ``fl.compile``'s generated code hands it to a NumPy function
    that is not a ufunc (``compiler/codegen.py``): an int64 scalar (a Python int has no
    ``astype`` or ``reshape``, which kernels call) that NumPy computes with as the Python int
    (``np.where(c, n, x32)`` stays float32), as :class:`WeakFloat` for a float. (Not in
    ``WEAK``: the engine never traces an int, so nothing else meets one.)"""

    __slots__ = ()
    __array_ufunc__ = WeakFloat.__array_ufunc__
    __array_function__ = WeakFloat.__array_function__


def _numbers(x):
    """``x`` (arguments: a tuple, list or dict, nested) with weak values as Python numbers."""
    t = type(x)
    if t in _ARGUMENTS:
        return x.item()
    if t is tuple or t is list:
        return t(_numbers(a) for a in x)
    if t is dict:
        return {k: _numbers(v) for k, v in x.items()}
    return x


WEAK = (WeakFloat, WeakComplex)  # (a tuple: ``type(v) in WEAK`` is two identity tests)
_ARGUMENTS = WEAK + (WeakInt,)  # what the weak values' NumPy calls turn into Python numbers
_WEAK_OF = {np.float64: WeakFloat, np.complex128: WeakComplex, float: WeakFloat,
            complex: WeakComplex}


def python_number(v):
    """``v``, or the Python number a weak value stands for (what the user gets back)."""
    return v.item() if type(v) in WEAK else v


def weak(v):
    """The weak value of the Python number, or float64/complex128 scalar, ``v``."""
    return _WEAK_OF[type(v)](v)


def as_weak(v):
    """The weak value of the Python number ``v`` (a Python int as it is: the engine has no
    weak int value, it never traces an int)."""
    t = _WEAK_OF.get(type(v))
    return v if t is None else t(v)
