"""Operands cast as NumPy casts them, before the ``xla`` back end lowers a program: where
JAX would compute an equation in another dtype than NumPy (a weak Python number taken as a
strong float64, ``x32 * n64`` float32 where NumPy gives float64), the operands are cast
first, so that XLA rounds as NumPy does (casting the result after would keep JAX's
rounding). Imported by ``xla_backend.py`` only, when JAX is installed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from fluxml.compiler.ir import CONTROL, PYTHON_TYPES, Const, Eqn, Program, Slot, Var
from fluxml.compiler.passes import _rewrite
from fluxml.compiler.trace import _call

_KINDS = {"b": 0, "u": 1, "i": 1, "f": 2, "c": 3}


def _numpy_casts(program: Program) -> Program:
    """The program with operands cast first where JAX would compute an equation in another
    dtype than NumPy (casting its result after would keep JAX's rounding):

    - each weak variable (a Python number, ``ir.Var.weak``), where an equation reads it
      beside arrays, to the dtype NumPy computes it in (NEP 50: a Python float meeting
      float32 becomes float32 first, ``_weak_dtype``); JAX would take the number's float64
      as strong and compute in float64 (its own weak types are not public);
    - the operands of an elementwise ufunc whose NumPy result is a float type JAX's
      promotion does not give (``x32 * n64``: float64 in NumPy, float32 in JAX; float16 with
      an int), to that type.

    Only the float (complex) operands of NumPy's loop (``_ufunc_loop``) are cast: ldexp's
    exponent and a comparison's int stay ints; and a weak int read by an equation that is
    not a ufunc (an index, ``np.take``'s position) stays an int."""
    top = max([v.id for v in program.inputs] + [o.id for e in program.eqns for o in e.outs],
              default=0)
    eqns = []
    for eqn in program.eqns:
        if eqn.outs[0].weak or eqn.name in CONTROL:  # (cast in its sub-programs)
            eqns.append(eqn)
            continue
        loop = _ufunc_loop(eqn)
        if loop is None:  # (a weak int stays as it is: an index, a count, an exponent)
            wanted = None
            casts = {v.id: (v, _weak_dtype(eqn, v)) for v in eqn.reads()
                     if v.weak and v.dtype.kind in "fc"}
        else:  # the float (complex) operands of NumPy's loop: ldexp's exponent stays an int
            wider = _ufunc_dtype(eqn) is not None
            wanted = [d if d.kind in "fc" and (wider or type(a) is Var and a.weak) else None
                      for a, d in zip(eqn.inputs, loop)]
            casts = {a.id: (a, d) for a, d in zip(eqn.inputs, wanted)
                     if type(a) is Var and d is not None}
        env = {}
        for v, dtype in casts.values():
            if dtype is None or dtype == v.dtype:
                continue
            top += 1
            env[v.id] = Var(top, v.shape, dtype)
            eqns.append(Eqn("astype", _call, [], {"func": np.ndarray.astype,
                                                  "args": (Slot(v), dtype), "kwargs": {}},
                            [env[v.id]]))
        if wanted is not None:  # (a constant array: cast once, here)
            eqn = _with_inputs(eqn, [Const(a.value.astype(d)) if d is not None and
                                     type(a) is Const and
                                     isinstance(a.value, (np.ndarray, np.generic)) and
                                     a.value.dtype != d else a
                                     for a, d in zip(eqn.inputs, wanted)])
        eqns.append(_rewrite(program, [eqn], env).eqns[0] if env else eqn)
    return Program(program.inputs, eqns, program.outputs, program.writes)


def _ufunc_dtype(eqn):
    """The float dtype an elementwise ufunc of two or more operands computes in with NumPy
    where JAX's promotion of the same operands gives another one, else None."""
    out = eqn.outs[0].dtype
    if eqn.prim is None or not isinstance(eqn.fn, np.ufunc) or len(eqn.outs) != 1 \
            or len(eqn.inputs) < 2 or out.kind not in "fc":
        return None
    operands = []
    for a in eqn.inputs:
        if type(a) is Var:
            operands.append(PYTHON_TYPES[a.dtype.kind](0) if a.weak else a.dtype)
        elif type(a) is Const:
            v = a.value
            operands.append(v.dtype if isinstance(v, (np.ndarray, np.generic)) else v)
        else:
            operands.append(a)
    try:
        with jax.enable_x64(True):
            theirs = jnp.result_type(*operands)
    except TypeError:  # (an operand JAX has no type for: not one to cast)
        return None
    return out if np.dtype(theirs) != out else None


def _ufunc_loop(eqn):
    """The operand dtypes of the loop NumPy runs for an elementwise ufunc's equation
    (``ufunc.resolve_dtypes``, a weak number as its Python type), else None."""
    fn = eqn.fn
    if eqn.prim is None or not isinstance(fn, np.ufunc) or len(eqn.outs) != 1 \
            or eqn.params or len(eqn.inputs) != fn.nin:
        return None
    operands = []
    for a in eqn.inputs:
        v = a.value if type(a) is Const else a
        if type(v) is Var:
            operands.append(PYTHON_TYPES[v.dtype.kind] if v.weak else v.dtype)
        elif isinstance(v, (np.ndarray, np.generic)):
            operands.append(v.dtype)
        elif type(v) in (int, float, complex):
            operands.append(type(v))
        else:
            return None
    try:
        return fn.resolve_dtypes(tuple(operands) + (None,) * fn.nout)[:fn.nin]
    except (TypeError, ValueError):  # (no loop for them: NumPy's own error at run time)
        return None


def _with_inputs(eqn, inputs):
    new = Eqn(eqn.name, eqn.fn, inputs, eqn.params, eqn.outs, eqn.prim, eqn.multiple)
    new.out = eqn.out
    return new


def _weak_dtype(eqn, v):
    """The dtype NumPy computes the weak number ``v`` in, read by ``eqn`` (None: its own)."""
    out = eqn.outs[0].dtype
    if len(eqn.outs) == 1 and _KINDS.get(out.kind, -1) >= _KINDS[v.dtype.kind]:
        return out
    strong = [a.dtype for a in eqn.reads() if not a.weak]
    strong += [a.value.dtype for a in eqn.inputs
               if type(a) is Const and isinstance(a.value, (np.ndarray, np.generic))]
    if not strong:
        return None
    return np.result_type(*strong, PYTHON_TYPES[v.dtype.kind](0))
