"""Arrays beside arrays: the library (NumPy, or CuPy on a GPU) that a rule's constants and
converted arguments are made in, so that a GPU's arrays never meet NumPy's. A rule that makes
a mask, an identity or zeros beside its argument asks :func:`module_of` for the module;
arguments that may be lists or numbers go through :func:`as_array` (another library's arrays
kept as they are, which ``np.asarray`` refuses), :func:`library_asarray` (converted to a
dtype in their own library) or :func:`array_beside`.

>>> import numpy as np
>>> module_of(np.ones(2)) is np, as_array([1.0, 2.0])
(True, array([1., 2.]))
"""

from __future__ import annotations

import numpy as np

from fluxml._kernel_modules import kernel_module, on_kernel_library
from fluxml.ad.core import Tracer, raw


def module_of(x):
    """NumPy, or the module of the array library (CuPy's) that holds the concrete value under
    ``x``: where a rule makes a constant to combine with ``x`` (a mask, an identity, zeros),
    so that a GPU's arrays do not meet NumPy's."""
    v = raw(x)
    if type(v) is Tracer:  # a value of fl.compile's program: of a GPU's arrays (traced on
        return v._trace.device or np  # host copies) or NumPy's
    t = type(v)
    return np if t is np.ndarray else kernel_module(t) or np


def library_of(*values):
    """The module of the first of ``values`` held by another library than NumPy (a GPU's),
    else NumPy: where constants made for all of them go."""
    return next((m for m in map(module_of, values) if m is not np), np)


def library_asarray(x, dtype=None):
    """``np.asarray(x, dtype)`` in ``x``'s own library: a CuPy array stays CuPy's (NumPy's
    ``asarray`` refuses it), lists and numbers become NumPy arrays; not copied where ``x``
    is one already. (Traced values are the caller's to keep.)

    >>> import numpy as np
    >>> library_asarray([1, 2], np.float32)
    array([1., 2.], dtype=float32)
    """
    return module_of(x).asarray(x, dtype=dtype)


def as_array(a, dtype=None):
    """An argument as an array: a tracer, a NumPy array or another library's array (CuPy's,
    which ``np.asarray`` refuses) as it is; a list or number as a NumPy array (of ``dtype``
    for a number, where given)."""
    if type(a) is Tracer or type(a) is np.ndarray:
        return a
    if hasattr(a, "__array_function__") and not isinstance(a, np.generic):
        return a
    if dtype is not None and isinstance(a, (int, float, complex)):
        return np.asarray(a, dtype=dtype)
    return np.asarray(a)


def array_beside(a, like):
    """``a``, given beside the array ``like`` (a ``prepend=``, an inserted value), as an
    array of ``like``'s library: a tracer or an array as it is, a number or list as one of
    that library (CuPy's on a GPU, where a NumPy array would mix devices)."""
    a = as_array(a)
    xp = module_of(like)
    return a if xp is np or type(a) is not np.ndarray else xp.asarray(a)


def as_arrays(*values) -> list:
    """``values`` as arrays of one library: arrays (traced or not) as they are, and lists and
    numbers made in the library of the arrays among them (a GPU's, where NumPy's would mix
    devices: ``np.concatenate([[0.0], x])``, ``np.convolve(x, [1.0, -2.0, 1.0])``). A NumPy
    array beside a GPU's stays: that mix is the caller's, and refused by name.

    >>> import numpy as np
    >>> as_arrays([1.0, 2.0], np.ones(2))
    [array([1., 2.]), array([1., 1.])]
    """
    made = [not hasattr(v, "shape") for v in values]  # (lists, tuples and numbers)
    xp = library_of(*(v for v, new in zip(values, made) if not new))
    return [as_array(v) if not new or xp is np else xp.asarray(v)
            for v, new in zip(values, made)]


def host_array(a):
    """``a`` as a NumPy array: another library's (CuPy's) copied to the host, for a check or
    a computation of positions that NumPy makes."""
    v = raw(a)
    return v.get() if on_kernel_library(v) else np.asarray(v)


def add_at(acc, idx, values) -> None:
    """``np.add.at(acc, idx, values)``; into another library's array (CuPy's), its NumPy
    index arrays (``x[np_idx]`` read from a GPU array) go to that library first."""
    if type(acc) is np.ndarray or type(acc) is Tracer:
        np.add.at(acc, idx, values)
        return
    xp = module_of(acc)
    parts = idx if type(idx) is tuple else (idx,)
    parts = tuple(xp.asarray(i) if type(i) is np.ndarray else i for i in parts)
    np.add.at(acc, parts if type(idx) is tuple else parts[0], values)
