"""Floating-point precision of models and of the inputs layers receive.

Layers hold float32 parameters unless told otherwise. ``fl.f64(model)``, ``fl.f32(model)``
and ``fl.f16(model)`` convert every floating-point array of a tree (parameters, running
statistics, optimiser state); a layer given input of another float precision converts it
to its own and warns once, naming the layer, as Flux does; integer input is an error.
The arrays a function closes over are not part of the tree (functions are static): make
them a Module's fields to have them converted. An object whose class sets ``keeps_dtype =
True`` (``fl.MixedPrecision``'s state: its float32 copy of a float16 parameter) is left as
it is: its arrays keep the precision they were made for.

>>> import numpy as np, fluxml as fl
>>> m = fl.f64(fl.Dense(2, 3))
>>> m.weight.dtype
dtype('float64')
"""

from __future__ import annotations

import warnings

import numpy as np

from fluxml._kernel_modules import KERNEL_MODULES
from fluxml.ad.core import Tracer, raw
from fluxml.tree import is_array_leaf
from fluxml.treemaps import fmap

_warned: set = set()


def _convert(dtype):
    # complex arrays go to the complex type of the same precision, as Flux's f32 and f64 do
    # (NumPy has no complex float16: f16 leaves them)
    complex_dtype = {np.float64: np.complex128, np.float32: np.complex64}.get(dtype)

    def convert(x):  # (fmap maps a tied array once: it stays one array)
        # NumPy's arrays and another backend's (CuPy's are also named ndarray, another
        # registered library's arrays the kernels run on too); not scalars
        is_array = isinstance(x, np.ndarray) or type(x).__name__ == "ndarray" \
            or type(x) in KERNEL_MODULES or _traced_array(x)
        if is_array and x.dtype.kind == "f" and x.dtype != dtype:
            return x.astype(dtype)
        if is_array and x.dtype.kind == "c" and complex_dtype is not None \
                and x.dtype != complex_dtype:
            return x.astype(complex_dtype)
        return x
    return convert


def _traced_array(x) -> bool:
    """A traced array (inside fl.gradient, fl.jvp or fl.compile): converted as the array it
    stands for is (it kept its precision, silently: the same code then computed in float32
    compiled and in float64 eagerly). A 0-d one only where it stands for an array, not a
    NumPy scalar, as eagerly (inside fl.compile, where no value tells, not at all)."""
    if type(x) is not Tracer:
        return False
    return x.ndim > 0 or type(raw(x)) is np.ndarray


def _keeps_dtype(x) -> bool:
    return getattr(type(x), "keeps_dtype", False) is True


def f64(tree):
    """``tree`` with every floating-point array converted to float64 (a new tree), as
    Flux's ``f64``: for gradient checks, or to match float64 data. Complex arrays become
    complex128.

    >>> import fluxml as fl
    >>> fl.f64(fl.Dense(2, 3)).weight.dtype
    dtype('float64')
    """
    return _cast(tree, np.float64)


def f32(tree):
    """``tree`` with every floating-point array converted to float32 (a new tree), complex
    arrays to complex64.

    >>> import fluxml as fl
    >>> fl.f32(fl.f64(fl.Dense(2, 3))).weight.dtype
    dtype('float32')
    """
    return _cast(tree, np.float32)


def f16(tree):
    """``tree`` with every floating-point array converted to float16 (a new tree); integer
    arrays (an Embedding's indices, counters) stay as they are, and so do complex ones
    (NumPy has no complex float16), and the high-precision copy of a ``fl.MixedPrecision``
    optimiser state (its point). The running statistics of BatchNorm and InstanceNorm
    become float32, as Flux's mixed precision keeps them: a float16 variance above 65504 is
    inf (a BatchNorm after a convolution of 0-255 pixels had an inf running variance, and
    gave zeros in test mode); those layers take float16 input and give float16 output.

    >>> import numpy as np, fluxml as fl
    >>> m = fl.f16(fl.Dense(2, 3))
    >>> m(np.ones((1, 2), np.float16)).dtype
    dtype('float16')
    >>> fl.f16(fl.BatchNorm(2)).running_var.dtype
    dtype('float32')
    """
    return _cast(tree, np.float16)


def _cast(tree, dtype):
    """``tree`` with its float arrays in ``dtype``, but where a layer declares arrays to keep
    at least float32 (``float32_in_f16``: the norm layers' running statistics), and such a
    layer's ``precision`` (the dtype it computes in, where it holds arrays) set to float16
    for ``f16``, None (its arrays' dtype) otherwise."""
    from fluxml.layers.module import modules

    arrays = _convert(dtype)
    stats = _convert(np.promote_types(dtype, np.float32).type)
    kept = {id(getattr(m, name, None)) for m in modules(tree)
            for name in getattr(type(m), "float32_in_f16", ())}
    kept.discard(id(None))
    # one fmap, so that a tied array is converted once and stays one array; an object that
    # keeps its dtype is one leaf, given back as it is
    new = fmap(lambda x: x if _keeps_dtype(x) else stats(x) if id(x) in kept else arrays(x),
               tree, is_leaf=lambda x: is_array_leaf(x) or _keeps_dtype(x))
    for m in modules(new):
        if getattr(type(m), "float32_in_f16", ()) and "precision" in vars(m):
            held = any(getattr(m, k, None) is not None for k in ("weight", "running_mean"))
            # float16 beside float32 statistics is said; otherwise the arrays say it (a
            # layer of no arrays keeps its input's precision)
            m.precision = np.dtype(dtype) if held and dtype == np.float16 else None
    return new


def match_dtype(layer, x, dtype):
    """``x`` in the layer's float ``dtype``: another float precision is converted (with one
    warning per layer type and pair of dtypes); integer, bool or complex input is refused."""
    xdtype = getattr(x, "dtype", None)
    if xdtype is None:
        x = np.asarray(x)
        xdtype = x.dtype
    if xdtype == dtype:
        return x
    from fluxml.layers.module import LayerError
    from fluxml.layers.show import line_of

    if xdtype.kind != "f":
        raise LayerError(f"{line_of(layer)} expects floating-point input; got {xdtype}. "
                         f"Convert it (x.astype(np.{np.dtype(dtype).name}))"
                         + (", or use Embedding for indices" if xdtype.kind in "iu" else ""))
    key = (type(layer).__name__, xdtype, dtype)
    if key not in _warned:
        _warned.add(key)
        warnings.warn(f"{line_of(layer)} has {np.dtype(dtype).name} parameters and got "
                      f"{xdtype} input; converting the input (slower). Convert the data, or "
                      f"the model with fl.f{np.dtype(xdtype).itemsize * 8}(model).",
                      stacklevel=3)
    return x.astype(dtype)
