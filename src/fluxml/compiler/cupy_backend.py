"""The ``cupy`` back end: generated Python over CuPy, each fused elementwise chain one
``cupy.ElementwiseKernel`` (its C source is shown above the line that calls it).

The source is generated without a GPU (that is how it is tested here); running it needs CuPy
and a GPU, and the arguments must be CuPy arrays (``fl.gpu(model)``, ``fl.gpu(batch)``).
"""

from __future__ import annotations

import numpy as np

from fluxml.compiler.codegen import Emitter, build, call_source, generate
from fluxml.compiler.fusion import C_TYPES, Fused
from fluxml.compiler.trace import CompileError


def _cupy():
    try:
        # lazy: CuPy is an optional extra
        import cupy
    except ImportError:
        return None
    return cupy


def _no_cupy() -> CompileError:
    return CompileError("fl.compile(backend='cupy') needs CuPy and a GPU: pip install "
                        "'fluxml[gpu]' on a machine with an NVIDIA GPU, or use "
                        "backend='numpy'")


class _Unavailable:
    """Stands for ``cupy`` where it is not installed: the code is generated, not run."""

    def __getattr__(self, name):
        raise _no_cupy()


class Kernel:
    """A fused chain as a ``cupy.ElementwiseKernel`` (built on first use)."""

    def __init__(self, fused: Fused, dtypes, name):
        self.fused = fused
        self.name = name
        self.params = ", ".join(f"{C_TYPES[np.dtype(d).name]} x{k}"
                                for k, d in enumerate(dtypes))
        self.result = f"{C_TYPES[fused.dtype.name]} out"
        self.operation = "out = " + fused.c_expression([f"x{k}" for k in range(len(dtypes))])
        self._kernel = None

    def __call__(self, *inputs, out=None):
        if self._kernel is None:
            cupy = _cupy()
            if cupy is None:
                raise _no_cupy()
            self._kernel = cupy.ElementwiseKernel(self.params, self.result, self.operation,
                                                  self.name)
        return self._kernel(*inputs) if out is None else self._kernel(*inputs, out)


def lower(program, names, fname):
    """``(source, function)`` of the program over CuPy."""
    cupy = _cupy()
    em = Emitter("cp", cupy if cupy is not None else np)
    if cupy is None:
        em.globals["cp"] = _Unavailable()
    kernels = []

    def line(em, eqn):
        if isinstance(eqn.fn, Fused):
            dtypes = [_dtype(a) for a in eqn.inputs]
            kernel = Kernel(eqn.fn, dtypes, f"fluxml_{fname}_k{len(kernels) + 1}")
            kernels.append(kernel)
            ref = em.global_(kernel, f"k{len(kernels)}")
            args = [em.expr(a) for a in eqn.inputs]
            if eqn.out is not None:
                args.append(f"out={em.var(eqn.out)}")
            return f"{ref}({', '.join(args)})  # {kernel.operation}"
        return call_source(em, eqn)

    source, namespace = generate(program, names, fname, em=em, line=line)
    return source, build(source, namespace, fname)


def _dtype(a):
    value = getattr(a, "value", a)
    return getattr(a, "dtype", None) or np.result_type(value)
