"""Python operators and ndarray methods on Tracer, each routed to the NumPy function it means."""

from __future__ import annotations

import numpy as np

from fluxml.ad import errors, mutation
from fluxml.ad.core import UFUNCS, DifferentiationError, Primitive, Tracer
from fluxml.ad.dispatch import call_function, call_ufunc
from fluxml.ad.rules.indexing import getitem

_NO_PARAMS: dict = {}


def _binary(uf):
    # The operators are the hot path of user code: their primitive is looked up once, and
    # the top trace of the two operands found directly instead of through ``bind``.
    prim = UFUNCS.get(uf)
    if type(prim) is not Primitive:
        def op(self, other):
            return call_ufunc(uf, "__call__", (self, other), {})

        def rop(self, other):
            return call_ufunc(uf, "__call__", (other, self), {})
    else:
        def op(self, other):
            trace = self._trace
            if type(other) is Tracer and other._trace.level > trace.level:
                trace = other._trace
            return trace.process(prim, (self, other), _NO_PARAMS)

        def rop(self, other):
            trace = self._trace
            if type(other) is Tracer and other._trace.level > trace.level:
                trace = other._trace
            return trace.process(prim, (other, self), _NO_PARAMS)

    def iop(self, other):
        return mutation.augment(self, uf, other)

    return op, rop, iop


_OPERATORS = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "truediv": np.true_divide,
    "floordiv": np.floor_divide, "mod": np.remainder, "pow": np.power, "matmul": np.matmul,
}
for _name, _uf in _OPERATORS.items():
    _op, _rop, _iop = _binary(_uf)
    setattr(Tracer, f"__{_name}__", _op)
    setattr(Tracer, f"__r{_name}__", _rop)
    setattr(Tracer, f"__i{_name}__", _iop)

for _name, _uf in {"lt": np.less, "le": np.less_equal, "gt": np.greater,
                   "ge": np.greater_equal, "eq": np.equal, "ne": np.not_equal}.items():
    setattr(Tracer, f"__{_name}__", lambda self, other, _uf=_uf: _uf(self, other))

Tracer.__neg__ = lambda self: np.negative(self)
Tracer.__pos__ = lambda self: np.positive(self)
Tracer.__abs__ = lambda self: np.absolute(self)
Tracer.__divmod__ = lambda self, other: (self // other, self % other)
Tracer.__getitem__ = getitem
Tracer.__setitem__ = mutation.setitem


def _method(func, name=None):
    def method(self, *args, **kwargs):
        return call_function(func, (self,) + args, kwargs)

    method.__name__ = name or func.__name__
    method.__doc__ = f"Same as np.{func.__name__} (recorded)."
    return method


for _func in (np.sum, np.mean, np.prod, np.max, np.min, np.var, np.std, np.cumsum,
              np.cumprod, np.ravel, np.transpose, np.swapaxes, np.squeeze, np.dot, np.clip,
              np.round, np.argmax, np.argmin, np.argsort, np.nonzero, np.all, np.any,
              np.repeat, np.take, np.diagonal, np.trace, np.ptp, np.sort,
              np.searchsorted, np.put, np.compress):
    setattr(Tracer, _func.__name__, _method(_func))
Tracer.conj = Tracer.conjugate = lambda self: np.conjugate(self)


def _reshape(self, *shape, order="C"):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = shape[0]
    return np.reshape(self, tuple(shape), order=order)


def _transpose(self, *axes):
    if len(axes) == 1 and isinstance(axes[0], (tuple, list)) or axes == (None,):
        axes = axes[0]
    return np.transpose(self, axes or None)


def _astype(self, dtype, order="K", casting="unsafe", subok=True, copy=True):
    from fluxml.ad.rules.shape import astype

    return astype(self, dtype)


def _fill(self, value):
    mutation.setitem(self, Ellipsis, value)


Tracer.reshape = _reshape
Tracer.transpose = _transpose
Tracer.astype = _astype
Tracer.fill = _fill
Tracer.copy = lambda self, order="C": np.copy(self)
Tracer.flatten = lambda self, order="C": np.copy(np.ravel(self, order=order))
Tracer.T = property(lambda self: np.transpose(self))
Tracer.mT = property(lambda self: np.swapaxes(self, -1, -2))
Tracer.real = property(lambda self: np.real(self))
Tracer.imag = property(lambda self: np.imag(self))


# Conversions that need a concrete value refuse, saying what to write instead.
def _refuses(what):
    def method(self, *args):
        raise DifferentiationError(errors.concrete(what))

    return method


for _name, _what in {
    "__float__": "float(x)", "__int__": "int(x)", "__complex__": "complex(x)",
    "__bool__": "bool(x) (an `if`, `while`, `and`/`or` on a traced array)",
    "__index__": "using a traced array as an index", "item": "x.item()",
    "tolist": "x.tolist()", "__reduce__": "pickling a traced array",
}.items():
    setattr(Tracer, _name, _refuses(_what))
Tracer.__copy__ = lambda self: np.copy(self)
Tracer.__deepcopy__ = lambda self, memo: np.copy(self)
