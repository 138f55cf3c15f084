"""Generated Python: a :class:`~fluxml.compiler.ir.Program` as one straight-line function.

Each equation becomes one line. NumPy functions and ufuncs are written as ``np.tanh(v3)``;
the engine's own kernels (``setitem``, fused softmax ...) are called by their names; arrays
the program closed over are globals named ``c1, c2 ...``; inputs are named after their place
in the arguments (``model_layers_0_weight``). The source is kept (``step.source``) and
registered with ``linecache``, so tracebacks point into it.
"""

from __future__ import annotations

import keyword
import linecache
import math
import re

import numpy as np

from fluxml.ad.weak import WeakInt, as_weak
from fluxml.compiler.inline import INLINE
from fluxml.compiler.ir import CONTROL, INFIX, PREFIX, Const, Program, Slot, Var
from fluxml.compiler.passes import aliases


class Emitter:
    """Names for variables, constants and functions while one program is written out."""

    def __init__(self, module_name: str = "np", module=np):
        self.xp = module_name
        self.module = module
        self.globals: dict = {module_name: module}
        self.names: dict[int, str] = {}
        self.used: set[str] = {module_name}
        self._by_id: dict[int, str] = {}

    def fresh(self, hint: str) -> str:
        name = re.sub(r"\W+", "_", hint).strip("_") or "v"
        if name[0].isdigit() or keyword.iskeyword(name):
            name = "_" + name
        base, k = name, 1
        while name in self.used:
            k += 1
            name = f"{base}_{k}"
        self.used.add(name)
        return name

    def var(self, v: Var) -> str:
        name = self.names.get(v.id)
        if name is None:
            name = self.names[v.id] = self.fresh(v.name or f"v{v.id}")
        return name

    def global_(self, value, hint: str) -> str:
        """A name in the generated module's globals bound to ``value`` (one per object)."""
        name = self._by_id.get(id(value))
        if name is None:
            name = self._by_id[id(value)] = self.fresh(hint)
            self.globals[name] = value
        return name

    def function(self, fn, hint: str | None = None) -> str:
        """How to call ``fn``: ``np.tanh`` for NumPy's own, else its name as a global."""
        name = getattr(fn, "__name__", None)
        if name == "<lambda>" or name is not None and name.startswith("_") and hint:
            return self.global_(fn, hint)
        if name is not None and getattr(self.module, name, None) is fn:
            return f"{self.xp}.{name}"
        if name is not None and getattr(np, name, None) is fn:
            return f"{self.xp}.{name}"
        linalg = np.linalg
        if name is not None and getattr(linalg, name, None) is fn:
            return f"{self.xp}.linalg.{name}"
        return self.global_(fn, name or "fn")

    def expr(self, x) -> str:
        """Python source for an operand or parameter."""
        t = type(x)
        if t is Var:
            return self.var(x)
        if t is Slot:
            return self.var(x.var)
        if t is Const:
            return self.expr(x.value) if not isinstance(x.value, np.ndarray) \
                else self.global_(x.value, "c")
        if x is None or t is bool or t is int or t is str:
            return repr(x)
        if x is Ellipsis:
            return "..."
        if t is float:
            return repr(x) if math.isfinite(x) else self.global_(x, "k")
        if t is tuple:
            inner = ", ".join(self.expr(a) for a in x)
            return f"({inner},)" if len(x) == 1 else f"({inner})"
        if t is list:
            return "[" + ", ".join(self.expr(a) for a in x) + "]"
        if t is dict and all(type(k) is str for k in x):
            return "{" + ", ".join(f"{k!r}: {self.expr(v)}" for k, v in x.items()) + "}"
        if t is slice:
            return f"slice({self.expr(x.start)}, {self.expr(x.stop)}, {self.expr(x.step)})"
        if isinstance(x, np.generic) and x.dtype.kind in "biuf" and np.isfinite(x):
            return f"{self.xp}.{x.dtype.name}({x.item()!r})"
        if isinstance(x, np.dtype) and x.names is None:  # a global: no constructor per call
            return self.global_(x, x.name)
        if isinstance(x, type) and getattr(np, x.__name__, None) is x:
            return f"{self.xp}.{x.__name__}"
        if callable(x):
            return self.function(x)
        return self.global_(x, "k")


# Binary ufuncs written as Python operators: NumPy runs the same ufunc, with less call
# overhead (a 0-d value's arithmetic is several times faster this way).
_OPERATORS = {np.add: "+", np.subtract: "-", np.multiply: "*", np.true_divide: "/",
              np.power: "**", np.matmul: "@"}


def _inline(em: Emitter, eqn, args):
    """Source for engine primitives whose kernel is one NumPy method call (written out, so
    the generated code reads as NumPy and skips a Python call), or None. ``args``: the
    operands' source."""
    template = INLINE.get(eqn.prim)
    if template is None or eqn.out is not None:
        return None
    params = {k: em.expr(v) for k, v in (eqn.params or {}).items()}
    return template(em.xp, *args, **params)


def call_source(em: Emitter, eqn) -> str:
    """The right-hand side of an equation's line."""
    if eqn.prim is not None and eqn.outs[0].weak:
        return _weak_source(em, eqn)
    if eqn.prim is not None and eqn.out is None:
        fn = eqn.fn
        op = _OPERATORS.get(fn) if not eqn.params and len(eqn.inputs) == 2 else None
        # (an operator on Python numbers alone would give a Python number: weak)
        if op is not None and eqn.prim.impl is fn and any(map(_numpy_value, eqn.inputs)):
            a, b = (em.expr(x) for x in eqn.inputs)
            return f"{_paren(a)} {op} {_paren(b)}"
        inline = _inline(em, eqn, _operands(em, eqn))
        if inline is not None:
            return inline
    if eqn.prim is None and "func" in (eqn.params or {}):  # NumPy on raw values: func(...)
        p = eqn.params
        func, args = p["func"], p["args"]
        if func in INFIX and len(args) == 2:  # Python's arithmetic on Python ints
            a, b = (em.expr(x) for x in args)
            return f"{_paren(a)} {INFIX[func]} {_paren(b)}"
        if func in PREFIX and len(args) == 1:
            a = em.expr(args[0])
            return f"abs({a})" if func is abs else f"{PREFIX[func]}{_paren(a)}"
        owner = getattr(func, "__self__", None)  # a ufunc method: np.add.reduce
        head = f"{em.function(owner)}.{func.__name__}" if isinstance(owner, np.ufunc) \
            else em.function(func)
        text = [em.expr(a) for a in args] + [f"{k}={em.expr(v)}" for k, v in p["kwargs"].items()]
        return f"{head}({', '.join(text)})"
    args = _operands(em, eqn) if eqn.prim is not None else [em.expr(a) for a in eqn.inputs]
    args += [f"{k}={em.expr(v)}" for k, v in (eqn.params or {}).items()]
    if eqn.out is not None:
        args.append(f"out={em.var(eqn.out)}")
    text = f"{em.function(eqn.fn, eqn.name)}({', '.join(args)})"
    if type(eqn.fn).__name__ == "Fused":  # the chain it computes, operands numbered
        text += f"  # {eqn.fn!r}"
    return text


# Python's own arithmetic on Python numbers: the bits of NumPy's (``/``, ``**``, ``//`` and
# ``%`` differ where NumPy gives inf or nan: ZeroDivisionError, a complex power)
_PYTHON_OPERATORS = {np.add: "+", np.subtract: "-", np.multiply: "*"}


def _operands(em: Emitter, eqn) -> list[str]:
    """The source of a primitive's operands. A weak one (a Python number at run time) goes
    to a kernel that is not a ufunc as the engine's weak NumPy value of it, as the trace gave
    it (the kernel may read ``x.dtype`` or call ``x.astype``): ``_as_operand(v1)``; to a ufunc,
    and to control flow's sub-programs (``ir.CONTROL``), as it is."""
    args = [em.expr(a) for a in eqn.inputs]
    if isinstance(eqn.fn, np.ufunc) or eqn.name in CONTROL:
        return args
    return [f"{em.global_(_as_operand, '_as_operand')}({t})" if type(a) is Var and a.weak
            else t for a, t in zip(eqn.inputs, args)]


def _as_operand(v):
    """A weak Python number as a kernel that is not a ufunc takes it: a float as the
    engine's weak value (``as_weak``), an int within int64 as a ``weak.WeakInt``."""
    if type(v) is int and -2 ** 63 <= v < 2 ** 63:
        return WeakInt(v)
    return as_weak(v)


def _numpy_value(x) -> bool:
    """Is the operand a NumPy value at run time (not a Python number)?"""
    if type(x) is Var:
        return not x.weak
    return type(x) is Const and isinstance(x.value, (np.ndarray, np.generic))


def _weak_source(em: Emitter, eqn) -> str:
    """A primitive whose result is weak (``Var.weak``: Python arithmetic on traced Python
    numbers, ``1 - beta``): a Python number at run time, as the trace took it. ``a * b`` of
    Python numbers is one; a ufunc's NumPy scalar becomes one (``np.negative(v1).item()``)."""
    args = [em.expr(a) for a in eqn.inputs]
    op = _PYTHON_OPERATORS.get(eqn.fn)
    # (only on Python numbers: a NumPy operand, a forward tangent a rule computed with
    # ufuncs, would give a NumPy number, strong)
    if op is not None and len(args) == 2 and not eqn.params \
            and not any(map(_numpy_value, eqn.inputs)):
        return f"{_paren(args[0])} {op} {_paren(args[1])}"
    args += [f"{k}={em.expr(v)}" for k, v in (eqn.params or {}).items()]
    return f"{em.function(eqn.fn, eqn.name)}({', '.join(args)}).item()"


def _paren(text: str) -> str:
    """An operand of an operator: a name as it is, anything else in brackets."""
    return text if _NAME.match(text) else f"({text})"


_NAME = re.compile(r"^([A-Za-z_][\w.]*|\d[\w.]*)$")  # a name, or a number without a sign


def generate(program: Program, input_names, fname="compiled", em: Emitter | None = None,
             line=call_source):
    """``(source, globals)`` of a Python function computing ``program``."""
    em = em or Emitter()
    em.used.add(fname)  # a global of the same name (a nested branch) must not shadow it
    params = [em.fresh(n) for n in input_names]
    for v, name in zip(program.inputs, params):
        em.names[v.id] = name
    body = []
    for v in program.arena:  # buffers kept between calls: module globals
        em.names[v.id] = em.global_(em.module.empty(v.shape, v.dtype), v.name)
    for eqn in program.eqns:
        if eqn.out is not None and eqn.out.id < 0:  # into a kept buffer (a global)
            body.append(f"    {em.var(eqn.outs[0])} = {line(em, eqn)}")
            continue
        if eqn.out is not None:  # the result lives in a dead variable's buffer: its name too
            line_text = line(em, eqn)
            em.names[eqn.outs[0].id] = em.var(eqn.out)
            body.append(f"    {em.var(eqn.out)} = {line_text}")
            continue
        lhs = ", ".join(em.var(o) for o in eqn.outs)
        if eqn.multiple and len(eqn.outs) == 1:
            lhs += ","
        body.append(f"    {lhs} = {line(em, eqn)}")
    body += _write_lines(program, params, em)
    outs = ", ".join(em.expr(o) for o in program.outputs)
    body.append(f"    return ({outs}{',' if len(program.outputs) == 1 else ''})")
    src = f"def {fname}({', '.join(params)}):\n" + "\n".join(body) + "\n"
    return src, em.globals


def _write_lines(program: Program, params: list, em: Emitter) -> list[str]:
    """The copies of the new values into the arguments the function writes. A value that
    may be the memory of another written argument (``m.x, m.y = m.y, m.x``; ``m.seen =
    m.state`` and then a new ``m.state``) is read into a copy before any is written: the
    argument's value at the end of the function is the old one, which the write into it
    would replace before the copy read it."""
    if not program.writes:
        return []
    groups = aliases(program)
    written = {groups.find(program.inputs[pos].id) for pos, _ in program.writes}
    first, lines = [], []
    for pos, v in program.writes:
        value = em.expr(v)
        group = groups.find(v.id) if type(v) is Var else None
        if group in written and group != groups.find(program.inputs[pos].id):
            old = em.fresh("old")
            first.append(f"    {old} = {em.xp}.copy({value})")
            value = old
        lines.append(f"    {em.xp}.copyto({params[pos]}, {value})")
    return first + lines


def constants_to(namespace: dict, module) -> dict:
    """``namespace`` with its NumPy arrays (the program's constants) in ``module``'s library:
    a program traced on a GPU's arrays' host copies runs on the GPU."""
    return {k: module.asarray(v) if type(v) is np.ndarray else v for k, v in namespace.items()}


_counter = iter(range(1, 1 << 62))


def build(source: str, namespace: dict, fname: str):
    """Compile ``source`` and return its function; the source is registered with linecache
    so that tracebacks and ``inspect`` show the generated lines."""
    filename = f"<fluxml.compiler {fname} #{next(_counter)}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    code = compile(source, filename, "exec")
    exec(code, namespace)
    return namespace[fname]
