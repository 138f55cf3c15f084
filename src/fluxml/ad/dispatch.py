"""How NumPy calls reach the rule tables: ``__array_ufunc__`` and ``__array_function__``."""

from __future__ import annotations

import numpy as np

from fluxml.ad import errors, mutation
from fluxml.ad.core import (
    COMPILING,
    FUNCTIONS,
    NO_PARAMS,
    NONDIFF,
    UFUNCS,
    DifferentiationError,
    Primitive,
    Tracer,
    lookup,
    raw,
    refusal,
    strong,
    taker,
    untraced,
)
from fluxml.ad.rules import folds
from fluxml.ad.rules.complex_values import COMPLEX
from fluxml.ad.rules.creation import LIKE


def _any_complex(args):
    """Is any argument complex: a traced array, a constant, or one inside a list or tuple?"""
    if type(args) is dict:
        args = args.values()
    for a in args:
        if type(a) is Tracer:
            if raw(a).dtype.kind == "c":
                return True
        elif type(a) in (list, tuple):
            if _any_complex(a):
                return True
        elif isinstance(a, (complex, np.complexfloating)) or (
                type(a) is np.ndarray and a.dtype.kind == "c"):
            return True
    return False


def _array_ufunc(self, ufunc, method, *inputs, **kwargs):
    if method == "__call__" and not kwargs:  # the common case, kept short
        prim = UFUNCS.get(ufunc)
        if type(prim) is Primitive:
            if ufunc not in COMPLEX and _any_complex(inputs):
                raise _not_for_complex(ufunc, inputs)
            trace = self._trace
            if len(inputs) == 1:  # self is the input
                return (taker(trace) if COMPILING else trace).unary(prim, self)
            for a in inputs:  # self is one of the inputs: find the top trace among them
                if type(a) is Tracer and a._trace.level > trace.level:
                    trace = a._trace
            if COMPILING:  # (eager code pays only this test)
                trace = taker(trace)
            if len(inputs) == 2:
                return trace.binary(prim, *inputs)
            return trace.process(prim, inputs, NO_PARAMS)
    return call_ufunc(ufunc, method, inputs, kwargs)


def _array_function(self, func, types, args, kwargs):
    entry = FUNCTIONS.get(func)
    if entry is not None:
        if func not in COMPLEX and (_any_complex(args) or kwargs and _any_complex(kwargs)):
            raise _not_for_complex(func, (args, kwargs))
        return entry(*args, **kwargs)
    if func in LIKE:  # np.zeros(shape, like=tracer) and friends: they dispatch on like=
        return LIKE[func](self, *args, **kwargs)
    return call_function(func, args, kwargs)


def _unsupported(func, args, what="function") -> DifferentiationError:
    return refusal(errors.unsupported(func, what), args)


def _not_for_complex(func, args) -> DifferentiationError:
    return refusal(errors.not_for_complex(func), args)


Tracer.__array_ufunc__ = _array_ufunc
Tracer.__array_function__ = _array_function


_MATMUL_AXES = [(-2, -1), (-2, -1), (-2, -1)]


def call_ufunc(ufunc, method, inputs, kwargs):
    """Route ``ufunc.method(*inputs, **kwargs)`` with traced inputs to its rule."""
    if ufunc not in COMPLEX and ufunc not in NONDIFF and _any_complex(inputs):  # all methods
        raise _not_for_complex(ufunc, inputs)
    out = kwargs.pop("out", None)
    where = kwargs.pop("where", True)
    dtype = kwargs.pop("dtype", None)
    for key in ("casting", "order", "subok", "signature"):
        kwargs.pop(key, None)
    if ufunc is np.matmul and kwargs.get("axes") == _MATMUL_AXES:  # (what `a @= b` passes:
        kwargs.pop("axes")  # the product of the last two axes, matmul's own)
    if method == "__call__":
        if kwargs:
            raise DifferentiationError(
                f"{errors.name(ufunc)}: keyword arguments {sorted(kwargs)} are not supported on "
                "traced arrays")
        if dtype is not None:
            inputs = [np.asarray(a).astype(dtype) if type(a) is not Tracer else a.astype(dtype)
                      for a in inputs]
        masked = where is not True and out is not None
        if masked:
            inputs = [_unmasked_derivative(a, where) for a in inputs]
        entry = lookup(UFUNCS, ufunc)
        if entry is not None:
            if masked:  # (entries NumPy leaves alone: their inf or NaN is discarded, unsaid)
                with np.errstate(all="ignore"):
                    result = entry(*inputs)
            else:
                result = entry(*inputs)
        elif ufunc in NONDIFF:
            result = untraced(ufunc, inputs, None, ufunc.__name__)
        else:
            raise _unsupported(ufunc, inputs, "ufunc")
    elif method in ("reduce", "accumulate", "reduceat") and ufunc not in NONDIFF:
        if where is not True and method == "reduce":
            kwargs["where"], where = where, True
        result = getattr(folds, method)(ufunc, *inputs, dtype=dtype, **kwargs)
    elif method == "at":
        a, idx = inputs[0], inputs[1]
        b = inputs[2] if len(inputs) > 2 else None
        return mutation.ufunc_at(ufunc, a, idx, b)
    elif method == "outer":
        a, b = (strong(x) for x in inputs)  # (outer takes a Python number as an array)
        a_shape = np.shape(raw(a))
        a = np.reshape(a, a_shape + (1,) * np.ndim(raw(b)))
        result = call_ufunc(ufunc, "__call__", (a, b), kwargs)
    elif all(type(a) is not Tracer for a in inputs) or ufunc in NONDIFF:
        result = untraced(getattr(ufunc, method), inputs, kwargs, f"{ufunc.__name__}.{method}")
    else:
        raise _unsupported(ufunc, inputs, f"ufunc method `.{method}`")
    if out is None:
        if where is not True:
            raise DifferentiationError(
                f"{errors.name(ufunc)}(..., where=mask) without out= leaves entries uninitialised; "
                "use np.where(mask, f(x), other) instead")
        return result
    (target,) = out if isinstance(out, tuple) else (out,)
    if any(result is a for a in inputs):  # a rule that passed an input through: copy it
        result = np.copy(result)
    if where is not True:
        result = np.where(where, result, target)
    mutation.assign_out(target, result, errors.name(ufunc))
    return target


def _unmasked_derivative(a, where):
    """``a`` as a ufunc's input under ``where=``: NumPy computes nothing where the mask is
    False, but the rule computes every entry, and there the local derivative times the zero
    cotangent could be NaN (``np.divide(a, b, out=z, where=b != 0)``: 0 / 0 at ``b = 0``;
    ``np.sqrt(x, out=z, where=x > 0)``). So those entries read a copy that carries no
    derivative: a selection, which drops what is computed there, not a product. Where the
    mask's values are known, the copy is of an entry NumPy does compute (the first the mask
    keeps), so that no inf or NaN is computed there at all, nor warned of in the backward
    pass."""
    if type(a) is not Tracer:
        return a
    value, mask = raw(a), raw(where)
    if type(value) is Tracer or type(mask) is Tracer:  # fl.compile: no values while traced
        return np.where(where, a, np.copy(value))
    shape = np.broadcast_shapes(np.shape(mask), np.shape(value))
    keep = np.broadcast_to(mask, shape)
    if not keep.any():
        return np.where(where, a, value.copy())
    first = np.unravel_index(int(np.argmax(keep)), shape)
    return np.where(where, a, np.broadcast_to(value, shape)[first].copy())


def call_function(func, args, kwargs):
    """Route a NumPy function called with traced arguments to its rule."""
    entry = lookup(FUNCTIONS, func)
    if entry is not None:
        if func not in COMPLEX and (_any_complex(args) or _any_complex(kwargs)):
            raise _not_for_complex(func, (args, kwargs))
        return entry(*args, **kwargs)
    if func in NONDIFF:
        return untraced(func, args, kwargs)
    raise _unsupported(func, (args, kwargs))
