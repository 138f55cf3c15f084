"""Python operators and ndarray methods on Tracer, each routed to the NumPy function it means."""

from __future__ import annotations

import dis
import sys

import numpy as np

from fluxml.ad import errors, mutation
from fluxml.ad.core import (
    COMPILING,
    UFUNCS,
    DifferentiationError,
    Primitive,
    Tracer,
    bottom,
    python_ints,
    raw,
    refusal,
    taker,
    traced_int,
    weak_result,
)
from fluxml.ad.define import function
from fluxml.ad.dispatch import call_function, call_ufunc
from fluxml.ad.rules import (  # noqa: F401  (_binary reads the operators' primitives, once)
    elementwise,
    elementwise_more,
    linalg,
)
from fluxml.ad.rules.indexing import READ_ONLY_VIEWS, getitem
from fluxml.ad.rules.shape import astype
from fluxml.ad.weak import python_number


def _binary(uf):
    # The operators are the hot path of user code: their primitive is looked up once, and
    # the top trace of the two operands found directly instead of through ``bind``.
    prim = UFUNCS.get(uf)
    # A result that is not an array goes through ``weak_result``: the operator on traced
    # Python numbers gives a weak one, as Python's arithmetic gives a float (the ufunc
    # itself, ``np.multiply(s, 2.0)``, gives a strong NumPy scalar, as NumPy does).
    # Under fl.compile, an operator on traced Python ints is Python's arithmetic on them
    # (``python_ints``: exact, ``n ** -1`` a float), as eager code, which never traces an int.
    if type(prim) is not Primitive:
        def op(self, other):
            if COMPILING and python_ints(self, other):
                return _python_int(uf, self, other)
            return weak_result(call_ufunc(uf, "__call__", (self, other), {}), self, other)

        def rop(self, other):
            if COMPILING and python_ints(self, other):
                return _python_int(uf, other, self)
            return weak_result(call_ufunc(uf, "__call__", (other, self), {}), self, other)
    else:
        def op(self, other):
            if COMPILING and python_ints(self, other):
                return _python_int(uf, self, other)
            trace = self._trace
            if type(other) is Tracer and other._trace.level > trace.level:
                trace = other._trace
            if COMPILING:  # (eager code pays only this test)
                trace = taker(trace)
            out = trace.binary(prim, self, other)
            return out if type(out._val) is np.ndarray else weak_result(out, self, other)

        def rop(self, other):
            if COMPILING and python_ints(self, other):
                return _python_int(uf, other, self)
            trace = self._trace
            if type(other) is Tracer and other._trace.level > trace.level:
                trace = other._trace
            if COMPILING:
                trace = taker(trace)
            out = trace.binary(prim, other, self)
            return out if type(out._val) is np.ndarray else weak_result(out, self, other)

    def iop(self, other):
        if COMPILING and python_ints(self, other):
            return _python_int(uf, self, other)  # (an int is immutable: ``n += 1`` rebinds)
        out = weak_result(call_ufunc(uf, "__call__", (self, other), {}), self, other)
        return mutation.augment(self, uf, other, out)

    return op, rop, iop


def _python_int(uf, *operands):
    """``uf``'s operator on Python ints, one at least traced by fl.compile (``python_ints``):
    recorded by the compiler's trace as Python's arithmetic."""
    t = next(a for a in operands if type(a) is Tracer)
    return taker(t._trace).python_int(uf, operands)


def _unary(uf):
    def op(self):
        if COMPILING and traced_int(self):
            return _python_int(uf, self)
        return weak_result(uf(self), self)

    return op


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

def _bitwise(uf, a, b=None):
    """A bitwise operator (boolean masks are traced only inside fl.compile). On traced Python
    ints it is refused by name: NumPy's ufunc would make the result a strong int64 (a float32
    array times ``n & m`` became float64), where Python's stays a weak int."""
    operands = (a,) if b is None else (a, b)
    if COMPILING and python_ints(*operands):
        raise refusal(f"fl.compile: the bitwise operator {uf.__name__} on traced Python ints "
                      f"is not supported; compute it outside the compiled function, or "
                      f"give the numbers as NumPy integers", *operands)
    return uf(*operands)


for _name, _uf in {"and": np.bitwise_and, "or": np.bitwise_or, "xor": np.bitwise_xor,
                   "lshift": np.left_shift, "rshift": np.right_shift}.items():
    setattr(Tracer, f"__{_name}__", lambda self, other, _uf=_uf: _bitwise(_uf, self, other))
    setattr(Tracer, f"__r{_name}__", lambda self, other, _uf=_uf: _bitwise(_uf, other, self))
Tracer.__invert__ = lambda self: _bitwise(np.invert, self)
Tracer.__neg__ = _unary(np.negative)
Tracer.__pos__ = _unary(np.positive)
Tracer.__abs__ = _unary(np.absolute)
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
              np.repeat, np.take, np.diagonal, np.trace, np.ptp, np.argpartition,
              np.searchsorted, np.put):
    setattr(Tracer, _func.__name__, _method(_func))
Tracer.compress = lambda self, condition, axis=None, out=None: np.compress(
    condition, self, axis, out)
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
    """``x.astype``: NumPy's casting check, and ``copy=False`` returns ``x`` itself where its
    dtype and layout already fit (a later write through the result reaches ``x``, as in
    NumPy; a copy was made before, so such a write was lost, silently)."""
    dtype = np.dtype(dtype)
    if casting != "unsafe" and not np.can_cast(self.dtype, dtype, casting=casting):
        raise TypeError(f"Cannot cast array data from {self.dtype!r} to {dtype!r} according "
                        f"to the rule {casting!r}")
    if not copy and dtype == self.dtype and _has_order(raw(self), order):
        return self
    return astype(self, dtype, order)


if hasattr(np, "astype"):
    @function(np.astype)
    def astype_function(x, dtype, /, *, copy=True, device=None):
        """NumPy 2's ``np.astype``: ``x.astype(dtype, copy=copy)`` on the CPU."""
        if device is not None and device != "cpu":
            raise ValueError(f'Device not understood. Only "cpu" is allowed, but received: '
                             f"{device}")
        return _astype(x, dtype, copy=copy)


def _has_order(r, order) -> bool:
    """Is the array ``r`` laid out as ``order`` asks ("K": any layout)?"""
    flags = getattr(r, "flags", None)  # (none: an IR tracer, an array without a layout)
    if order in ("K", None):
        return True
    if flags is None:
        return False
    return {"C": flags.c_contiguous, "F": flags.f_contiguous,
            "A": flags.c_contiguous or flags.f_contiguous}[order]


def _fill(self, value):
    mutation.setitem(self, Ellipsis, value)


Tracer.reshape = _reshape
Tracer.transpose = _transpose
Tracer.astype = _astype
Tracer.fill = _fill
Tracer.copy = lambda self, order="C": np.copy(self, order=order)  # C: ndarray.copy's
Tracer.flatten = lambda self, order="C": np.copy(np.ravel(self, order=order))
Tracer.T = property(lambda self: np.transpose(self))
Tracer.mT = property(lambda self: np.swapaxes(self, -1, -2))


def _set_real(self, value):
    """``z.real = v``: NumPy writes the real part (all of a real array); a complex traced
    array's is refused by name, as a write through ``z.real``."""
    np.real(self)[...] = value


def _set_imag(self, value):
    if self.dtype.kind != "c":
        raise TypeError("array does not have imaginary part to set")  # (NumPy's error)
    np.imag(self)[...] = value


Tracer.real = property(lambda self: np.real(self), _set_real)
Tracer.imag = property(lambda self: np.imag(self), _set_imag)


# In-place methods: NumPy's sort and partition reorder the array itself and return None.
def _sort(self, axis=-1, kind=None, order=None, *, stable=None):
    mutation.assign(self, np.sort(self, axis=axis, kind=kind, order=order))


def _partition(self, kth, axis=-1, kind="introselect", order=None):
    mutation.assign(self, np.partition(self, kth, axis=axis, kind=kind, order=order))


Tracer.sort = _sort
Tracer.partition = _partition


# Conversions that need a concrete value refuse, saying what to write instead.
def _refuses(what, convert=None):
    def method(self, *args):
        frame = sys._getframe(1)
        if _percent_format(frame):
            value = raw(self)
            if convert is not None and type(value) is not Tracer:
                # `"%.3f" % x`, as logging formats its messages: the text has no derivative,
                # so the value is written as without the transform (Zygote: logging is
                # transparent to AD)
                return convert(value)
            if type(value) is Tracer:  # inside fl.compile: no number while traced
                if frame.f_globals.get("__name__") == "logging":
                    # logging.info("%.3f", x): logging reports this error and goes on, so it
                    # is not noted as the trace's refusal (the function's own `except`
                    # around the formatting is: 5bb59a5)
                    raise value._trace.logged()
                raise value._trace.concrete(_FORMATTED)
        if convert is not None and frame.f_code.co_code[frame.f_lasti] == _STORE_SUBSCR:
            # `buf[i] = x` into a plain NumPy array: NumPy replaces any error raised here by
            # its own "setting an array element with a sequence". So the value is stored,
            # and the transform raises this error when the function returns.
            value = raw(self)  # inside fl.compile, an IR tracer: no value to store yet
            if self._trace.refused is None:
                self._trace.refused = errors.written_into_plain(
                    f"{frame.f_code.co_filename}, line {frame.f_lineno}",
                    compiled=value is self)
            return convert(0 if type(value) is Tracer else value)
        bottom = raw(self)  # a compiled program's IR tracer says why in its own words
        if type(bottom) is Tracer:
            raise bottom._trace.concrete(what)
        raise refusal(errors.concrete(what), self)

    return method


_STORE_SUBSCR = dis.opmap["STORE_SUBSCR"]
_FORMATTED = "formatting a traced value as a number (`'%.3f' % x`; `%s` writes its shape)"
_BINARY_OP = dis.opmap.get("BINARY_OP")  # Python 3.11+; its argument 6 is %, 19 is %=
_MODULO = {dis.opmap[name] for name in ("BINARY_MODULO", "INPLACE_MODULO") if name in dis.opmap}


def _percent_format(frame) -> bool:
    """Is ``frame`` at a ``%`` (or ``%=``)? A tracer's ``__float__`` or ``__int__`` is called
    there by printf-style string formatting only: ``%`` on numbers goes to ``__mod__``."""
    code, at = frame.f_code.co_code, frame.f_lasti
    if code[at] == _BINARY_OP:
        return code[at + 1] in (6, 19)
    return code[at] in _MODULO


def _format(self, spec):
    """``f"{x:.3f}"``, ``format(x, ".3f")``: the value formatted, as without the transform (a
    string has no derivative); ``f"{x}"`` is ``str(x)``, which names the tracer."""
    value = raw(self)
    if spec and type(value) is Tracer and np.ndim(self) == 0:
        # fl.compile: no number while the function is traced (once), so the text names the
        # traced value, its shape and dtype, as f"{x}" does (a refusal would stop the compile
        # of a function printing its loss)
        return str(self)
    if not spec or type(value) is Tracer:  # (an array with a spec: NumPy's TypeError too)
        return object.__format__(self, spec)
    return format(python_number(value) if np.ndim(value) == 0 else value, spec)


Tracer.__format__ = _format


for _name, _what in {
    "__bool__": "bool(x) (an `if`, `while`, `and`/`or` on a traced array)",
    "__index__": "using a traced array as an index", "item": "x.item()",
    "tolist": "x.tolist()", "__reduce__": "pickling a traced array",
}.items():
    setattr(Tracer, _name, _refuses(_what))
Tracer.__float__ = _refuses("float(x)", float)
Tracer.__int__ = _refuses("int(x)", int)
Tracer.__complex__ = _refuses("complex(x)", complex)
Tracer.__copy__ = lambda self: np.copy(self)
Tracer.__deepcopy__ = lambda self, memo: np.copy(self)


# --- ndarray attributes and methods NumPy code reaches for -----------------------------------

def _view(self, dtype=None, type=None):
    """``x.view()``: a view handle (writes through it reach ``x``). Reinterpreting the bytes
    as another dtype has no derivative: that is refused for float results, and gives a
    read-only plain array for others (as ``x.astype(int)`` cuts the derivative)."""
    if type is not None:
        raise DifferentiationError("x.view(type=...) is not supported on traced arrays")
    if dtype is None or np.dtype(dtype) == self.dtype:
        return self[...]
    if np.dtype(dtype).kind in "fc":
        raise DifferentiationError(
            f"x.view({np.dtype(dtype)}) reinterprets the bytes of a traced {self.dtype} array: "
            "that has no derivative. Use x.astype(...) to convert values.")
    value = raw(self)
    if isinstance(value, Tracer):  # fl.compile: no bytes to reinterpret while traced (the copy
        # below was a traced copy, and its view this method again, without end)
        raise value._trace.concrete(f"x.view({np.dtype(dtype)}) (reinterpreting the bytes)")
    out = value.copy().view(dtype)
    out.flags.writeable = False
    return out


class _Flat:
    """``x.flat``: reading ``x.flat[i]`` indexes the flattened array; writing ``x.flat[i] = v``
    writes the same entries of ``x`` (for any layout, as NumPy's flat iterator does)."""

    __slots__ = ("base",)

    def __init__(self, base):
        self.base = base

    def __len__(self):
        return self.base.size

    def __iter__(self):
        return iter(np.ravel(self.base))

    def __getitem__(self, idx):
        return np.ravel(self.base)[idx]

    def __setitem__(self, idx, value):
        h = self.base
        positions = np.arange(h.size)[idx]
        coords = np.unravel_index(positions, h.shape)
        if np.ndim(positions) == 0:
            mutation.setitem(h, tuple(int(c) for c in coords), value)
            return
        if np.size(positions) and np.size(raw(value)) not in (1, np.size(positions)):
            raise DifferentiationError(
                "x.flat[idx] = v with v repeated to fill the selection is not supported on "
                "traced arrays; give one value per entry (or a single value).")
        mutation.setitem(h, tuple(c.ravel() for c in coords),
                         np.reshape(value, -1) if np.ndim(raw(value)) else value)


class _Flags:
    """A read-only copy of ``x.flags`` (the memory flags of the traced value)."""

    def __init__(self, h):
        flags = bottom(h).flags
        self.c_contiguous = flags.c_contiguous
        self.f_contiguous = flags.f_contiguous
        self.aligned = flags.aligned
        self.writeable = h._view is None or h._view[1] not in READ_ONLY_VIEWS
        self.owndata = h._view is None
        self.writebackifcopy = False
        self.fnc = self.f_contiguous and not self.c_contiguous
        self.forc = self.f_contiguous or self.c_contiguous
        self.behaved = self.aligned and self.writeable
        self.carray = self.behaved and self.c_contiguous
        self.farray = self.behaved and self.fnc

    def __getitem__(self, key):
        names = {"C": "c_contiguous", "C_CONTIGUOUS": "c_contiguous", "F": "f_contiguous",
                 "F_CONTIGUOUS": "f_contiguous", "W": "writeable", "O": "owndata",
                 "A": "aligned"}
        return getattr(self, names.get(key.upper(), key.lower()))

    def __setattr__(self, name, value):
        if name in self.__dict__:
            raise DifferentiationError(
                "setting flags of a traced array is not supported (fluxml decides where writes "
                "may go in place); copy the value with fl.stop_gradient(x) if you need a plain "
                "array")
        object.__setattr__(self, name, value)

    def __repr__(self):
        return "\n".join(f"  {k.upper()} : {v}" for k, v in list(self.__dict__.items())[:6])


def _base(self):
    """NumPy's ``base``: the array a view looks into (the first one owning the memory)."""
    if self._view is None:
        return None
    root = self._view[0]
    while root._view is not None:
        root = root._view[0]
    return root


def _set_shape(self, shape):
    """``x.shape = ...``: as NumPy, only where no copy is needed; the handle is rebound."""
    if self._view is not None or self._views and any(r() is not None for r in self._views):
        raise DifferentiationError(
            "setting .shape of a traced array that is a view, or has views, is not supported; "
            "use `x = x.reshape(shape)` instead")
    probe = raw(self).view()
    probe.shape = shape  # NumPy's checks and errors
    mutation.resize_handle(self, np.copy(np.reshape(self, probe.shape)))


def _resize(self, *new_shape, refcheck=True):
    """``x.resize(shape)`` in place: entries kept in C order, missing ones zero (NumPy's)."""
    if len(new_shape) == 1 and isinstance(new_shape[0], (tuple, list)):
        new_shape = new_shape[0]
    new_shape = tuple(int(n) for n in new_shape) or ()
    if self._view is not None or self._views and any(r() is not None for r in self._views):
        raise ValueError("cannot resize an array that references or is referenced by another "
                         "array in this way. Use the np.resize function.")
    n = int(np.prod(new_shape))
    flat = np.ravel(self)
    if n > self.size:
        flat = np.concatenate([flat, np.zeros(n - self.size, self.dtype)])
    mutation.resize_handle(self, np.copy(np.reshape(flat[:n], new_shape)))


def _round(self, ndigits=None):
    """Python's ``round`` as NumPy defines it: on a NumPy scalar (``round(x[0], 2)``) only."""
    value = raw(self)
    # (under fl.compile a 0-d traced value stands for the NumPy scalar eager code holds)
    if not isinstance(value, np.generic) and not (type(value) is Tracer and np.ndim(self) == 0):
        raise TypeError("type numpy.ndarray doesn't define __round__ method (use np.round)")
    if ndigits is None:
        if type(value) is Tracer:  # a compiled program's IR tracer says why in its own words
            raise value._trace.concrete("round(x) (an integer result)")
        raise refusal(errors.concrete("round(x) (an integer result)"), self)
    return np.round(self, ndigits)


Tracer.view = _view
Tracer.flat = property(_Flat)
Tracer.flags = property(_Flags)
Tracer.strides = property(lambda self: bottom(self).strides)
Tracer.itemsize = property(lambda self: self.dtype.itemsize)
Tracer.nbytes = property(lambda self: bottom(self).nbytes)
Tracer.base = property(_base)
Tracer.shape = property(Tracer.shape.fget, _set_shape)
Tracer.resize = _resize
Tracer.__round__ = _round
