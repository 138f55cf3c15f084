"""The IR of a compiled function: typed variables and a straight-line list of equations.

A :class:`Program` reads its ``inputs`` (one :class:`Var` per array leaf of the arguments),
runs its ``eqns`` in order and returns its ``outputs``; ``writes`` lists the arguments the
function wrote into (``(input position, var holding the new value)``), which the compiled code
copies back into the caller's arrays, as the eager function would have written them.

A variable may be *weak* (``Var.weak``): it holds a Python number (a float, an int or a
complex) that NumPy's promotion (NEP 50) takes as weak, ``x32 * k`` staying float32: a traced
Python number (a field a class lists in ``hyperparameters``), the result of Python arithmetic
on such numbers (``1 - beta``), or the gradient with respect to one (a Python float, as
eagerly). It prints as that Python type: ``v1:float``. An operator on weak ints alone is
Python's own arithmetic (``PYTHON_INT_OPERATORS``: ``2 ** n`` exact, ``n ** -1`` a float), a
``func=pow`` equation, as eager code, which never traces an int, computes it.

Each :class:`Eqn` applies one callable (an engine :class:`~fluxml.ad.core.Primitive`, or a
NumPy function the engine runs untraced, such as ``np.argmax``) to variables, constants and
Python values. It prints one line, like a jaxpr::

    v3:f32[64,32] = matmul v1 v2
"""

from __future__ import annotations

import operator

import numpy as np


class Var:
    """A value of the program: its shape and dtype (``name`` is a hint for generated code);
    ``weak``: a Python number (0-d; its dtype float64, int64 or complex128), see above."""

    __slots__ = ("id", "shape", "dtype", "name", "weak")

    def __init__(self, id, shape, dtype, name=None, weak=False):
        self.id = id
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.name = name
        self.weak = weak

    @property
    def type(self) -> str:
        if self.weak:
            return PYTHON_TYPES[self.dtype.kind].__name__
        return f"{short_dtype(self.dtype)}[{','.join(map(str, self.shape))}]"

    def __repr__(self):
        return self.name if self.id < 0 else f"v{self.id}"  # negative: a kept buffer


class Const:
    """A constant of the program: an array or number the function closed over or made."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __repr__(self):
        v = self.value
        if isinstance(v, np.ndarray) and v.size > 4:
            return f"const:{short_dtype(v.dtype)}[{','.join(map(str, v.shape))}]"
        return repr(v)


class Slot:
    """A place in a nested argument or parameter that the variable ``var`` fills at run time
    (an index array inside ``x[i, labels]``, an array inside a list argument)."""

    __slots__ = ("var",)

    def __init__(self, var):
        self.var = var

    def __repr__(self):
        return repr(self.var)


class Eqn:
    """``outs = fn(*inputs, **params)``. ``inputs`` holds Vars, Consts and Python values;
    params may hold Slots. ``name`` names the operation in the IR and the generated code."""

    __slots__ = ("name", "fn", "inputs", "params", "outs", "prim", "multiple", "out")

    def __init__(self, name, fn, inputs, params, outs, prim=None, multiple=False):
        self.name = name
        self.fn = fn
        self.inputs = list(inputs)
        self.params = params
        self.outs = list(outs)
        self.prim = prim  # the engine Primitive, or None for a NumPy call run untraced
        self.multiple = multiple  # fn returns a tuple, one entry per out
        self.out = None  # a dead Var whose buffer receives the result (set by passes.buffers)

    def reads(self) -> list[Var]:
        """Every variable the equation reads, in its inputs and inside its params."""
        found = [a for a in self.inputs if type(a) is Var]
        for a in self.inputs:
            if type(a) in (list, tuple):
                _slots(a, found)
        if self.params:
            _slots(self.params, found)
        return found

    def __repr__(self):
        lhs = " ".join(f"{o}:{o.type}" for o in self.outs)
        args = " ".join(map(repr, self.inputs))
        shown = {k: v for k, v in (self.params or {}).items()}
        params = " ".join(f"{k}={_short(v)}" for k, v in shown.items())
        into = f" into {self.out!r}" if self.out is not None else ""
        return f"{lhs} = {self.name} {args}{' ' if params else ''}{params}{into}".rstrip()


def _slots(x, found):
    t = type(x)
    if t is Slot:
        found.append(x.var)
    elif t in (tuple, list):
        for a in x:
            _slots(a, found)
    elif t is dict:
        for a in x.values():
            _slots(a, found)
    elif t is slice:
        for a in (x.start, x.stop, x.step):
            _slots(a, found)


def _short(v) -> str:
    if isinstance(v, np.ndarray):
        return f"array:{short_dtype(v.dtype)}[{','.join(map(str, v.shape))}]"
    if isinstance(v, (tuple, list)):
        inner = ",".join(_short(a) for a in v)
        return f"({inner})" if isinstance(v, tuple) else f"[{inner}]"
    if callable(v) and hasattr(v, "__name__"):
        return v.__name__
    return repr(v)


_SHORT = {"float64": "f64", "float32": "f32", "float16": "f16", "int64": "i64",
          "int32": "i32", "bool": "bool", "complex128": "c128", "complex64": "c64"}


# the control-flow primitives: their sub-programs' generated code takes a weak variable as the
# Python number it is (where a NumPy scalar's own operators would take the engine's weak value
# of it, ``weak.WeakFloat``, as a strong float64)
CONTROL = frozenset({"cond", "while_loop", "scan"})

# Python's arithmetic on Python ints, for an operator between traced Python ints (eagerly they
# are never traced: Python computes ``2 ** n`` exactly, ``n ** -1`` as a float, where NumPy's
# int64 ufuncs wrap round or raise): the operator's function by the ufunc that the Tracer
# operator means, and its source
PYTHON_INT_OPERATORS = {np.add: operator.add, np.subtract: operator.sub,
                        np.multiply: operator.mul, np.true_divide: operator.truediv,
                        np.floor_divide: operator.floordiv, np.remainder: operator.mod,
                        np.power: operator.pow, np.negative: operator.neg,
                        np.positive: operator.pos, np.absolute: abs}
INFIX = {operator.add: "+", operator.sub: "-", operator.mul: "*", operator.truediv: "/",
         operator.floordiv: "//", operator.mod: "%", operator.pow: "**"}
PREFIX = {operator.neg: "-", operator.pos: "+", abs: "abs"}

# a weak variable's Python type by its dtype's kind, and the dtype of each Python number
PYTHON_TYPES = {"f": float, "i": int, "c": complex, "b": bool}
PYTHON_DTYPES = {float: np.dtype(np.float64), int: np.dtype(np.int64),
                 complex: np.dtype(np.complex128)}


def short_dtype(dtype) -> str:
    name = np.dtype(dtype).name
    return _SHORT.get(name, name)


class Program:
    """A traced function: inputs, equations, outputs and the arguments it writes."""

    def __init__(self, inputs, eqns, outputs, writes):
        self.inputs = list(inputs)
        self.eqns = list(eqns)
        self.outputs = list(outputs)
        self.writes = list(writes)  # (input position, Var)
        self.arena: list[Var] = []  # buffers kept from call to call (passes.buffers)
        # input positions an equation writes into directly (passes.buffers' donation: no
        # longer in ``writes``, but written all the same; fl.train's put-back keeps them)
        self.donated: list[int] = []

    def __repr__(self):
        lines = ["{ lambda " + " ".join(f"{v}:{v.type}" for v in self.inputs) + " ."]
        lines += [f"    {e!r}" for e in self.eqns]
        for pos, v in self.writes:
            lines.append(f"    write {self.inputs[pos]} <- {v!r}")
        lines.append("  in (" + ", ".join(map(repr, self.outputs)) + ") }")
        return "\n".join(lines)

    def __len__(self):
        return len(self.eqns)
