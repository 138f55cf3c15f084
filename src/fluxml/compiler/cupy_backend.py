"""The ``cupy`` back end: generated Python over CuPy, each fused elementwise chain one
``cupy.ElementwiseKernel`` (its C source is shown above the line that calls it).

The source is generated without a GPU (that is how it is tested here); running it needs CuPy
and a GPU, and the arguments must be CuPy arrays (``fl.gpu(model)``, ``fl.gpu(batch)``).
"""

from __future__ import annotations

import numpy as np

from fluxml.compiler.codegen import Emitter, build, call_source, constants_to, generate
from fluxml.compiler.fusion import PREAMBLE, Fused
from fluxml.compiler.subprogram import as_operand
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
        # (CuPy reads a parameter's type as NumPy names it: "float32 x0", not "float x0")
        self.params = ", ".join(f"{np.dtype(d).name} x{k}" for k, d in enumerate(dtypes))
        self.result = f"{fused.dtype.name} out"
        names = [f"x{k}" for k in range(len(dtypes))]
        self.operation = "out = " + fused.c_expression(names, dtypes)
        self._kernel = None

    def __call__(self, *inputs, out=None):
        if self._kernel is None:
            cupy = _cupy()
            if cupy is None:
                raise _no_cupy()
            self._kernel = cupy.ElementwiseKernel(self.params, self.result, self.operation,
                                                  self.name, preamble=PREAMBLE)
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
    if cupy is None:
        return source, build(source, namespace, fname)
    # The trace computed on host copies (calls.host_example): its constants are NumPy's, and
    # so are the 0-d arrays it makes of numbers (as_operand): all on the GPU here.
    namespace = constants_to(namespace, cupy)
    for k, v in namespace.items():
        if v is as_operand:
            namespace[k] = lambda x: _moved(cupy, as_operand(x))
    return source, _host_inputs(cupy, build(source, namespace, fname))


def _moved(cupy, x):
    return cupy.asarray(x) if type(x) is np.ndarray else x


def _host_inputs(cupy, fn):
    """``fn`` taking 0-d NumPy arrays among its GPU arrays (an optimiser's step counters, kept
    on the host, where eagerly they meet the arrays only as Python numbers): moved to the GPU
    for the call, and those whose value changed copied back. (A larger NumPy array is
    refused by CuPy, as eagerly.) Changed, not listed in the program's writes: a counter
    incremented in place into its input's buffer (``add(t, 1, out=t)``, the buffer plan's)
    is not among those, and Adam's counters stayed 0 on a GPU, silently."""
    def run(*arrays):
        moved = [cupy.asarray(a) if type(a) is np.ndarray and not a.ndim else a
                 for a in arrays]
        outs = fn(*moved)
        for given, copy in zip(arrays, moved):
            if copy is not given:
                new = copy.get()
                if not np.array_equal(new, given, equal_nan=given.dtype.kind in "fc"):
                    given[...] = new
        return outs

    return run


def _dtype(a):
    value = getattr(a, "value", a)
    return getattr(a, "dtype", None) or np.result_type(value)
