"""Complex numbers: the convention, the functions of complex values, and the list of rules that
are right for them.

The convention is JAX's and HIPS autograd's. A cotangent ``c`` of a complex value pairs with a
tangent ``t`` as ``Re(sum(c * t))`` (no conjugate), so the vjp of a holomorphic function is its
complex derivative times ``g`` (the rules written for real numbers stay right, read as complex
formulas), and the gradient of a real ``f`` of ``z = x + iy`` is ``df/dx - i df/dy``. A
real argument receives the real part of the cotangent (``fitting.fit``).

A rule written for real numbers is not automatically right for complex ones (``abs`` needs
``conj``, ``max`` has no derivative on an unordered set, ``var`` is ``mean(|d|^2)``). So
complex values reach only the NumPy functions listed in ``COMPLEX`` (each with a complex case
in the registry harness); any other raises a clear error naming the function.

>>> import numpy as np, fluxml as fl
>>> fl.gradient(lambda x: np.sum(np.abs(x * (1 + 1j))), np.array([2.0, -1.0]))[0]
array([ 1.41421356, -1.41421356])
>>> fl.gradient(lambda z: np.angle(z), 1j)[0]  # d angle/dx - i d angle/dy at i
(-1+0j)
"""

from __future__ import annotations

import math

import numpy as np

from fluxml.ad.core import Tracer, example_of, raw, untraced
from fluxml.ad.define import function
from fluxml.ad.rules.indexing import take_along_axis
from fluxml.ad.rules.layouts import in_memory_order_of

DEG = 180.0 / math.pi


@function(np.angle)
def angle(z, deg=False):
    """``np.angle(z)`` as ``arctan2(imag z, real z)``, differentiable through both parts."""
    result = np.arctan2(np.imag(z), np.real(z))
    return result * DEG if deg else result


@function(np.real_if_close)
def real_if_close(a, tol=100):
    """The real part when NumPy's ``real_if_close`` drops the imaginary part (decided on the
    values), else ``a`` itself."""
    value = raw(a)
    if not np.iscomplexobj(value):
        return a
    if type(value) is Tracer:  # fl.compile: decided on the traced call, checked on every run
        drop = _drops(example_of(a), tol)
        untraced(_same_decision, (value, tol, drop))
    else:
        drop = _drops(value, tol)
    return np.real(a) if drop else a


def _drops(value, tol):
    """Does NumPy's real_if_close drop the imaginary part of the (plain) ``value``?"""
    return not np.iscomplexobj(np.real_if_close(value, tol=tol))


def _same_decision(value, tol, drop):
    """Under fl.compile: NumPy's real_if_close must decide on this run's values as on the
    traced call's (the result's dtype is the program's)."""
    if _drops(value, tol) != drop:
        raise ValueError(
            "np.real_if_close under fl.compile: on this run NumPy "
            f"{'keeps' if drop else 'drops'} the imaginary part, on the traced call it "
            f"{'dropped' if drop else 'kept'} it, and a compiled program's dtype is fixed; "
            "take np.real (or keep the complex values) instead")
    return np.True_


_same_decision.effect = True  # a check: under fl.compile it runs on every call


def _linalg(*names, module=np.linalg):
    """The functions of these names that this NumPy has (array-API names come with 2.x)."""
    return [getattr(module, n) for n in names if hasattr(module, n)]


# NumPy functions and ufuncs whose rules are right for complex values (holomorphic ones read
# as complex formulas; linear ones; and those with their own complex rule: abs, conj, real,
# imag, angle, vdot ...). The registry harness checks each with complex arguments. Rule
# families loaded on first use (np.fft) add theirs when they load.
COMPLEX = set([
    # arithmetic and elementary functions (holomorphic), and the non-holomorphic parts
    np.add, np.subtract, np.multiply, np.negative, np.positive, np.divide, np.reciprocal,
    np.square, np.sqrt, np.power, np.float_power, np.exp, np.exp2, np.expm1, np.log, np.log2,
    np.log10, np.log1p, np.sin, np.cos, np.tan, np.arcsin, np.arccos, np.arctan, np.sinh,
    np.cosh, np.tanh, np.arctanh, np.absolute, np.conjugate, np.real, np.imag, np.angle,
    np.real_if_close, np.where,
    # shapes, joins, indexing, writes (linear)
    np.reshape, np.ravel, np.transpose, np.swapaxes, np.moveaxis, np.squeeze, np.expand_dims,
    np.broadcast_to, np.broadcast_arrays, np.atleast_1d, np.atleast_2d, np.atleast_3d,
    np.flip, np.fliplr, np.flipud, np.roll, np.rot90, np.repeat, np.tile, np.pad, np.copy,
    np.concatenate, np.stack, np.hstack, np.vstack, np.dstack, np.column_stack, np.append,
    np.block, np.resize,
    np.split, np.array_split, np.hsplit, np.vsplit, np.dsplit, np.unstack, np.insert,
    np.delete, np.take, np.take_along_axis, np.diagonal, np.diag, np.diagflat, np.tril,
    np.triu, np.matrix_transpose, np.copyto, np.put, np.putmask, np.place, np.fill_diagonal,
    np.put_along_axis,
    np.zeros_like, np.ones_like, np.empty_like, np.full_like,
    # sums and products
    np.sum, np.mean, np.average, np.prod, np.cumsum, np.cumprod, np.cumulative_sum,
    np.cumulative_prod, np.trace, np.diff, np.ediff1d, np.nanprod, np.nancumsum, np.nancumprod,
    np.nanvar, np.nanstd, np.var, np.std,
    np.matmul, np.dot, np.vdot, np.inner, np.outer, np.tensordot, np.einsum, np.kron,
    np.vecdot, np.cross, *_linalg("matvec", "vecmat", "astype", module=np),
    # numerical helpers (linear in the values)
    np.gradient, np.trapezoid, np.convolve, np.correlate, np.polyval, np.polyder, np.polyint,
    np.vander, np.polyadd, np.polysub, np.polymul, np.polydiv, np.poly, np.roots,
    np.sort_complex,
    # sequences (holomorphic in their ends: geomspace's rotation by the start's sign cancels)
    np.linspace, np.logspace, np.geomspace,
    # linear algebra (holomorphic)
    *_linalg("matmul", "multi_dot", "outer", "tensordot", "vecdot", "matrix_power", "solve",
             "inv", "det", "trace", "diagonal", "matrix_transpose", "cross"),
    # linear algebra with complex rules of their own
    *_linalg("slogdet", "norm", "vector_norm", "eig", "eigvals", "cholesky", "eigh",
             "eigvalsh", "qr", "svd", "svdvals", "matrix_norm"),
])


@function(np.sort_complex)
def sort_complex(a):
    """NumPy's: a sorted copy (complex values by real, then imaginary part) of the last axis,
    as complex (``complex64`` for small integers, ``clongdouble`` for long doubles, else
    ``complex128``); laid out as ``a``. The gradient flows back through the permutation."""
    order = np.argsort(raw(a), axis=-1, kind="stable")
    b = in_memory_order_of(take_along_axis(a, order, axis=-1), a)
    if b.dtype.kind == "c":
        return b
    return b.astype("F" if b.dtype.char in "bhBH" else "G" if b.dtype.char == "g" else "D")
