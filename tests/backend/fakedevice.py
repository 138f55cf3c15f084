"""A stand-in for a second device's arrays, registered the way CuPy's are.

``FakeDeviceArray`` holds a NumPy array but behaves as CuPy does at the boundary: NumPy
calls on it compute and return another FakeDeviceArray, any NumPy array among the inputs is
refused with CuPy's own TypeError, and implicit conversion to NumPy fails. Its module
(``FAKE.module``) is NumPy's namespace making and taking only its arrays, as CuPy's does,
and the kernels run on it (``ArrayBackend.kernels``): so a NumPy-only call in a kernel's or
a rule's path (``np.zeros`` of a mask, ``np.asarray`` of a target) fails here as it would
on a GPU. It proves the device bookkeeping (moving trees, the mixing error) and the array
module plumbing; it says nothing about a real GPU (CuPy lacks some of NumPy's functions).
"""

from __future__ import annotations

import types

import numpy as np
from numpy.lib.mixins import NDArrayOperatorsMixin

import fluxml as fl


class FakeDeviceArray(NDArrayOperatorsMixin):
    def __init__(self, data, device=0):
        self.data = np.asarray(data)
        self.device = device

    shape = property(lambda self: self.data.shape)
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    size = property(lambda self: self.data.size)

    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use "
                        "`.get()` to construct a NumPy array explicitly.")

    def _unwrap(self, args):
        out = []
        for a in args:
            if isinstance(a, FakeDeviceArray):
                if a.device != self.device:
                    raise ValueError("Array device must be same as the current device")
                out.append(a.data)
            elif isinstance(a, np.ndarray):
                raise TypeError(f"Unsupported type {type(a)}")
            elif isinstance(a, (list, tuple)):
                out.append(type(a)(self._unwrap(a)))
            else:
                out.append(a)
        return out

    def _wrap(self, r):
        if isinstance(r, (tuple, list)):  # (np.split's list too; linalg's named tuples)
            items = [self._wrap(x) for x in r]
            return type(r)(*items) if hasattr(r, "_fields") else type(r)(items)
        return FakeDeviceArray(r, self.device) if isinstance(r, np.ndarray | np.generic) else r

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        out = kwargs.get("out", ())
        if any(_foreign(a) for a in inputs + out):
            return NotImplemented  # a traced array: its own __array_ufunc__ takes over
        _as_cupy_method(ufunc, method, kwargs)
        if out:  # written in place, as CuPy's out= (into arrays of this device only)
            kwargs["out"] = tuple(self._unwrap(out))
            getattr(ufunc, method)(*self._unwrap(inputs), **kwargs)
            return out[0] if len(out) == 1 else out
        return self._wrap(getattr(ufunc, method)(*self._unwrap(inputs), **kwargs))

    def __array_function__(self, func, types, args, kwargs):
        if any(not issubclass(t, FakeDeviceArray) for t in types):
            return NotImplemented
        kwargs = dict(zip(kwargs, self._unwrap(list(kwargs.values()))))  # (where=, out=)
        return self._wrap(func(*self._unwrap(args), **kwargs))

    def __getattr__(self, name):  # methods and attributes (astype, reshape, T ...) as CuPy's
        if name.startswith("__"):
            raise AttributeError(name)
        value = getattr(self.data, name)
        if not callable(value):
            return self._wrap(value)
        return lambda *args, **kwargs: self._wrap(value(*self._unwrap(args), **kwargs))

    def __getitem__(self, index):
        return self._wrap(self.data[self._index(index)])

    def __setitem__(self, index, value):
        (value,) = self._unwrap([value])
        self.data[self._index(index)] = value

    def _index(self, index):
        """An index with this device's index arrays read (NumPy ones are taken as well)."""
        if isinstance(index, tuple):
            return tuple(self._index(i) for i in index)
        if isinstance(index, FakeDeviceArray):
            (index,) = self._unwrap([index])
        return index

    def __int__(self):  # as CuPy's: a one-element array's value, copied to the host
        return int(self.data)

    def __len__(self):
        return len(self.data)

    def __iter__(self):
        return (self._wrap(row) for row in self.data)

    def __float__(self):
        return float(self.data)

    def __bool__(self):
        return bool(self.data)

    def get(self):
        return self.data.copy()

    def copy(self, order="C"):
        return FakeDeviceArray(self.data.copy(order=order), self.device)


# The ufunc methods CuPy has (cupy/_core/_kernel.pyx, ufunc): reduce and accumulate of add
# and multiply (reduce without initial= or where=), reduceat of add, at of the ufuncs with a
# scatter operation; outer of every ufunc.
_CUPY_METHODS = {"reduce": {"add", "multiply"}, "accumulate": {"add", "multiply"},
                 "reduceat": {"add"},
                 "at": {"add", "maximum", "minimum", "bitwise_and", "bitwise_or", "bitwise_xor"}}


def _as_cupy_method(ufunc, method, kwargs):
    """Refuse, as CuPy does, a ufunc method CuPy lacks (``np.maximum.reduce`` of a GPU's
    array raises there: a kernel or rule that calls one fails on a GPU)."""
    if method == "__call__" or method == "outer":
        return
    if ufunc.__name__ not in _CUPY_METHODS.get(method, ()):
        raise NotImplementedError(f"`cupy_{ufunc.__name__}.{method}` is not supported yet")
    unknown = set(kwargs) - {"axis", "dtype", "out", "keepdims"}
    if method == "reduce" and unknown:
        raise TypeError(f"reduce() got an unexpected keyword argument {sorted(unknown)[0]!r}")


def _foreign(a):
    return hasattr(type(a), "__array_ufunc__") and not isinstance(a, (FakeDeviceArray,
                                                                       np.ndarray, np.generic))


def _to_device(x, device):
    device = 0 if device is None else device
    if isinstance(x, FakeDeviceArray) and x.device == device:
        return x
    return FakeDeviceArray(np.array(x.data if isinstance(x, FakeDeviceArray) else x), device)


_DEVICE0 = FakeDeviceArray(np.zeros(0))  # unwraps arguments and wraps results (device 0)


def _made(func, host=False):
    """NumPy's ``func`` taking and making this device's arrays, as CuPy's namespace does (a
    NumPy array among the arguments is refused, but by ``asarray`` and ``array``, which copy
    one to the device: ``host``)."""
    def made(*args, **kwargs):
        if host:
            args = [a.data if isinstance(a, FakeDeviceArray) else  # (a host array: copied)
                    a.copy() if isinstance(a, np.ndarray) else a for a in args]
        else:
            args = _DEVICE0._unwrap(args)
        kwargs = dict(zip(kwargs, _DEVICE0._unwrap(list(kwargs.values()))))
        return _DEVICE0._wrap(func(*args, **kwargs))
    return made


class _FakeModule(types.ModuleType):
    """NumPy's namespace for this device: its functions through :func:`_made`, its ufuncs
    as they are (they dispatch to ``__array_ufunc__``), its types, constants and
    ``errstate`` as they are, its submodules (``lib.stride_tricks``, ``linalg``) alike."""

    def __init__(self, inner, name):
        super().__init__(name)
        self._inner = inner

    def __getattr__(self, name):
        if name == "ndarray":
            return FakeDeviceArray
        value = getattr(self._inner, name)
        if isinstance(value, types.ModuleType):
            value = _FakeModule(value, f"{self.__name__}.{name}")
        elif callable(value) and not isinstance(value, (type, np.ufunc)) \
                and name != "errstate":
            value = _made(value, host=name in ("asarray", "array"))
        setattr(self, name, value)  # (looked up once)
        return value


FAKE = fl.backend.ArrayBackend(
    name="fake",
    array_type=FakeDeviceArray,
    module=_FakeModule(np, "fakenumpy"),
    device_of=lambda x: f"fake:{x.device}",
    to_host=FakeDeviceArray.get,
    to_device=_to_device,
    kernels=True,
)
fl.backend.register(FAKE)
