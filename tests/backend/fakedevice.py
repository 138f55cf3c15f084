"""A stand-in for a second device's arrays, registered the way CuPy's are.

``FakeDeviceArray`` holds a NumPy array but behaves as CuPy does at the boundary: NumPy
calls on it compute and return another FakeDeviceArray, any NumPy array among the inputs is
refused with CuPy's own TypeError, and implicit conversion to NumPy fails. It proves the
device bookkeeping (moving trees, the mixing error); it says nothing about a real GPU.
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
        if isinstance(r, tuple):
            return tuple(self._wrap(x) for x in r)
        return FakeDeviceArray(r, self.device) if isinstance(r, np.ndarray | np.generic) else r

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        out = kwargs.get("out", ())
        if any(_foreign(a) for a in inputs + out):
            return NotImplemented  # a traced array: its own __array_ufunc__ takes over
        if out:  # written in place, as CuPy's out= (into arrays of this device only)
            kwargs["out"] = tuple(self._unwrap(out))
            getattr(ufunc, method)(*self._unwrap(inputs), **kwargs)
            return out[0] if len(out) == 1 else out
        return self._wrap(getattr(ufunc, method)(*self._unwrap(inputs), **kwargs))

    def __array_function__(self, func, types, args, kwargs):
        if any(not issubclass(t, FakeDeviceArray) for t in types):
            return NotImplemented
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

    def get(self):
        return self.data.copy()

    def copy(self):
        return FakeDeviceArray(self.data.copy(), self.device)


def _foreign(a):
    return hasattr(type(a), "__array_ufunc__") and not isinstance(a, (FakeDeviceArray,
                                                                       np.ndarray, np.generic))


def _to_device(x, device):
    device = 0 if device is None else device
    if isinstance(x, FakeDeviceArray) and x.device == device:
        return x
    return FakeDeviceArray(np.array(x.data if isinstance(x, FakeDeviceArray) else x), device)


def _made(name):
    """NumPy's ``name`` making this device's arrays (device 0), as CuPy's namespace does."""
    make = getattr(np, name)

    def made(*args, **kwargs):
        args = [a.data if isinstance(a, FakeDeviceArray) else a for a in args]
        return FakeDeviceArray(make(*args, **kwargs))
    return made


FAKE = fl.backend.ArrayBackend(
    name="fake",
    array_type=FakeDeviceArray,
    module=types.SimpleNamespace(  # the little of a NumPy-like namespace the engine asks for
        __name__="fakenumpy", **{name: _made(name) for name in ("ones", "zeros", "empty",
                                                                  "arange", "asarray")}),
    device_of=lambda x: f"fake:{x.device}",
    to_host=FakeDeviceArray.get,
    to_device=_to_device,
)
fl.backend.register(FAKE)
