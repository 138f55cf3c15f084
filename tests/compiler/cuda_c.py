"""An interpreter for the CUDA C++ that the ``cupy`` back end writes, and a stand-in for
``cupy.ElementwiseKernel`` that runs it on the fake device's arrays.

No GPU is needed to check what a kernel computes: the expression is evaluated elementwise
with C++'s rules, written here from the language, not from fluxml's generator: the usual
arithmetic conversions (``bool`` to ``int``, ``int`` and ``long long`` to the wider, any
floating operand to ``float`` or ``double``), integer division truncating toward zero,
``float`` overloads of the math functions for ``float`` arguments, CUDA's ``max``/``min``
ignoring a NaN (they are ``fmax``/``fmin``), ``template <typename T>`` helpers from the
preamble with ``T`` deduced from identical argument types. What nvcc would refuse (an
unknown name, a template whose arguments differ in type, a math function on integers, a
NaN cast to an integer) raises :class:`CudaCompileError` or :class:`UndefinedBehaviour`.
``ElementwiseKernel`` parses its parameters as CuPy does (``float32 x``: NumPy dtype names),
refuses arrays of another dtype or of the host, broadcasts, and writes ``out=``.
"""

from __future__ import annotations

import re

import numpy as np

from tests.backend.fakedevice import FakeDeviceArray

TYPES = {"bool": np.bool_, "int": np.int32, "long long": np.int64, "float": np.float32,
         "double": np.float64}
_RANK = ["bool", "int", "long long", "float", "double"]
_UNARY_MATH = {"sqrt": np.sqrt, "exp": np.exp, "log": np.log, "log1p": np.log1p,
               "expm1": np.expm1, "tanh": np.tanh, "sin": np.sin, "cos": np.cos,
               "atan": np.arctan, "fabs": np.abs}
_TOKEN = re.compile(r"\s*(?:(\d+\.\d*(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+)|(\d+)(LL)?|"
                    r"([A-Za-z_]\w*)|(\|\||&&|==|!=|<=|>=|[-+*/!?:(),<>{};]))")


class CudaCompileError(Exception):
    """What nvcc would refuse."""


class UndefinedBehaviour(Exception):
    """An operation whose result C leaves undefined (a NaN cast to an integer, x / 0)."""


def _tokens(text):
    out, pos, text = [], 0, text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise CudaCompileError(f"cannot read {text[pos:pos + 20]!r}")
        floating, integer, suffix, name, op = m.groups()
        if floating is not None:
            out.append(("num", np.float64(float(floating)), "double"))
        elif integer is not None:
            value = int(integer)
            kind = "long long" if suffix or value > 2**31 - 1 else "int"
            out.append(("num", TYPES[kind](value), kind))
        elif name is not None:
            out.append(("name", name))
        else:
            out.append(("op", op))
        pos = m.end()
    return out


def convert(value, src, dst):
    """C's implicit (and explicit) conversion of ``value`` of type ``src`` to ``dst``."""
    if src == dst:
        return value
    if dst == "bool":
        return np.asarray(value != 0)
    if TYPES[dst] in (np.int32, np.int64) and src in ("float", "double"):
        info = np.iinfo(TYPES[dst])
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(value) | (value >= 2.0 ** (info.bits - 1)) | (value < info.min)
        if np.any(bad):
            raise UndefinedBehaviour(f"{value[bad].flat[0]} converted to {dst}")
        return np.trunc(value).astype(TYPES[dst])
    with np.errstate(over="ignore"):
        return np.asarray(value).astype(TYPES[dst])


def common(a, b):
    """The usual arithmetic conversions: the type both operands become."""
    a, b = ("int" if t == "bool" else t for t in (a, b))
    return _RANK[max(_RANK.index(a), _RANK.index(b))]


class _Parser:
    def __init__(self, tokens, env, templates, types):
        self.t, self.i, self.env, self.templates, self.types = tokens, 0, env, templates, types

    def peek(self, k=0):
        return self.t[self.i + k] if self.i + k < len(self.t) else ("end",)

    def take(self, op=None):
        tok = self.peek()
        if op is not None and tok != ("op", op):
            raise CudaCompileError(f"expected {op!r}, found {tok}")
        self.i += 1
        return tok

    def type_at(self, k=0):
        """The type name starting ``k`` tokens ahead, and how many tokens it spans."""
        a, b = self.peek(k), self.peek(k + 1)
        if a == ("name", "long") and b == ("name", "long"):
            return "long long", 2
        if a[0] == "name" and a[1] in self.types:
            return self.types[a[1]], 1
        return None, 0

    def expr(self):
        cond = self.logical("||")
        if self.peek() != ("op", "?"):
            return cond
        self.take("?")
        yes = self.expr()
        self.take(":")
        no = self.expr()
        to = "bool" if yes[1] == no[1] == "bool" else common(yes[1], no[1])
        pick = convert(*cond, "bool")
        return np.where(pick, convert(*yes, to), convert(*no, to)), to

    def logical(self, op):
        lower = (lambda: self.logical("&&")) if op == "||" else self.compare
        a = lower()
        while self.peek() == ("op", op):
            self.take()
            b = lower()
            x, y = convert(*a, "bool"), convert(*b, "bool")
            a = (np.logical_or(x, y) if op == "||" else np.logical_and(x, y)), "bool"
        return a

    def compare(self):
        a = self.additive()
        ops = {"==": np.equal, "!=": np.not_equal, "<": np.less, ">": np.greater,
               "<=": np.less_equal, ">=": np.greater_equal}
        while self.peek()[0] == "op" and self.peek()[1] in ops:
            fn = ops[self.take()[1]]
            b = self.additive()
            t = common(a[1], b[1])
            a = fn(convert(*a, t), convert(*b, t)), "bool"
        return a

    def additive(self):
        a = self.term()
        while self.peek() in (("op", "+"), ("op", "-")):
            op = self.take()[1]
            b = self.term()
            t = common(a[1], b[1])
            with np.errstate(all="ignore"):
                fn = np.add if op == "+" else np.subtract
                a = fn(convert(*a, t), convert(*b, t)).astype(TYPES[t]), t
        return a

    def term(self):
        a = self.unary()
        while self.peek() in (("op", "*"), ("op", "/")):
            op = self.take()[1]
            b = self.unary()
            t = common(a[1], b[1])
            x, y = convert(*a, t), convert(*b, t)
            with np.errstate(all="ignore"):
                if op == "*":
                    a = np.multiply(x, y).astype(TYPES[t]), t
                elif t in ("float", "double"):
                    a = np.true_divide(x, y).astype(TYPES[t]), t
                else:
                    if np.any(y == 0):
                        raise UndefinedBehaviour("integer division by zero")
                    q = np.abs(x) // np.abs(y)  # C truncates toward zero
                    a = np.where((x < 0) ^ (y < 0), -q, q).astype(TYPES[t]), t
        return a

    def unary(self):
        tok = self.peek()
        if tok in (("op", "-"), ("op", "+")):
            self.take()
            value, t = self.unary()
            t = "int" if t == "bool" else t
            value = convert(value, "bool", "int") if value.dtype == np.bool_ else value
            with np.errstate(over="ignore"):
                return (np.negative(value) if tok[1] == "-" else value), t
        if tok == ("op", "!"):
            self.take()
            return np.logical_not(convert(*self.unary(), "bool")), "bool"
        if tok == ("op", "("):
            t, n = self.type_at(1)
            if t is not None and self.peek(1 + n) == ("op", ")"):
                self.i += 2 + n
                return convert(*self.unary(), t), t
        return self.primary()

    def primary(self):
        tok = self.take()
        if tok[0] == "num":
            return np.asarray(tok[1]), tok[2]
        if tok == ("op", "("):
            value = self.expr()
            self.take(")")
            return value
        if tok[0] != "name":
            raise CudaCompileError(f"unexpected {tok}")
        name = tok[1]
        if name in ("true", "false"):
            return np.asarray(name == "true"), "bool"
        if self.peek() != ("op", "("):
            if name not in self.env:
                raise CudaCompileError(f"identifier {name!r} is undefined")
            return self.env[name]
        self.take("(")
        args = []
        while self.peek() != ("op", ")"):
            args.append(self.expr())
            if self.peek() == ("op", ","):
                self.take()
        self.take(")")
        return _call(name, args, self.templates)


def _call(name, args, templates):
    types = [t for _, t in args]
    floating = all(t in ("float", "double") for t in types)
    if name in templates:
        params, body = templates[name]
        if len(set(types)) != 1 or len(args) != len(params):
            raise CudaCompileError(f"no instance of {name} matches the argument types {types}")
        value, t = evaluate(body, dict(zip(params, args)), templates, {"T": types[0]})
        return convert(value, t, types[0]), types[0]  # (returned as T)
    if (name in _UNARY_MATH or name in ("pow", "isnan")) and not floating:
        raise CudaCompileError(f"{name} of {types}: no float overload (cast first)")
    if name in _UNARY_MATH and len(args) == 1:
        (x, t), = args
        with np.errstate(all="ignore"):
            return _UNARY_MATH[name](x).astype(TYPES[t]), t
    if name == "isnan" and len(args) == 1:
        return np.isnan(args[0][0]), "bool"
    if name in ("pow", "max", "min") and len(args) == 2:
        (x, a), (y, b) = args
        if (a in ("float", "double")) != (b in ("float", "double")):
            raise CudaCompileError(f"{name}({a}, {b}) is ambiguous")
        t = common(a, b)
        x, y = convert(x, a, t), convert(y, b, t)
        with np.errstate(all="ignore"):
            if name == "pow":
                return np.power(x, y).astype(TYPES[t]), t
            fn = {"max": np.fmax, "min": np.fmin}[name]  # CUDA's: a NaN operand is ignored
            return fn(x, y).astype(TYPES[t]), t
    raise CudaCompileError(f"no function {name}({', '.join(types)})")


def evaluate(text_or_tokens, env, templates=None, types=None):
    """``(value, C type)`` of an expression; ``env`` maps names to ``(array, type)``."""
    tokens = _tokens(text_or_tokens) if isinstance(text_or_tokens, str) else text_or_tokens
    parser = _Parser(tokens, env, templates or {}, {**{k: k for k in TYPES}, **(types or {})})
    value = parser.expr()
    if parser.peek() != ("end",):
        raise CudaCompileError(f"unexpected {parser.peek()} after the expression")
    return value


_TEMPLATE = re.compile(r"template\s*<\s*typename\s+T\s*>\s*__device__\s+T\s+(\w+)\s*\(([^)]*)\)"
                       r"\s*\{\s*return\s+([^;]*);\s*\}")


def templates(preamble: str) -> dict:
    """The one-line ``template <typename T> __device__ T f(T a, ...) { return ...; }``
    helpers of a preamble (anything else in it is refused)."""
    out, rest = {}, preamble
    for m in _TEMPLATE.finditer(preamble):
        params = [p.split()[-1] for p in m.group(2).split(",")]
        if any(p.split()[0] != "T" for p in m.group(2).split(",")):
            raise CudaCompileError(f"{m.group(1)}: every parameter must be of type T")
        out[m.group(1)] = (params, _tokens(m.group(3)))
        rest = rest.replace(m.group(0), "")
    if re.sub(r"//[^\n]*", "", rest).strip():
        raise CudaCompileError(f"preamble: cannot read {rest.strip()[:60]!r}")
    return out


class ElementwiseKernel:
    """``cupy.ElementwiseKernel`` for the fake device: CuPy's parameter rules, this module's
    C++ semantics."""

    def __init__(self, in_params, out_params, operation, name="kernel", preamble="",
                 **kwargs):
        if not re.fullmatch(r"[A-Za-z_]\w*", name):
            raise ValueError(f'Invalid kernel name: "{name}"')
        self.ins = [_param(p) for p in in_params.split(",")]
        self.outs = [_param(p) for p in out_params.split(",")]
        if "i" in [n for n, _ in self.ins + self.outs]:
            raise ValueError("Can not use 'i' as a parameter name")
        if len(self.outs) != 1:
            raise NotImplementedError("one output")
        m = re.fullmatch(r"\s*(\w+)\s*=(.*)", operation, re.S)
        if m is None or m.group(1) != self.outs[0][0]:
            raise CudaCompileError(f"expected '{self.outs[0][0]} = ...'; got {operation!r}")
        self.body = _tokens(m.group(2))
        self.templates = templates(preamble)
        self.calls = 0

    def __call__(self, *args, **kwargs):
        if kwargs:
            raise TypeError(f"Wrong arguments {kwargs}")
        if len(args) not in (len(self.ins), len(self.ins) + 1):
            raise TypeError(f"Wrong number of arguments: {len(args)}")
        arrays = [a for a in args[:len(self.ins)] if isinstance(a, FakeDeviceArray)]
        for a in args:
            if isinstance(a, np.ndarray):
                raise TypeError(f"Unsupported type {type(a)}")
        if not arrays:
            raise ValueError("Loop size is undecided.")
        shape = np.broadcast_shapes(*(a.shape for a in arrays))
        env = {}
        for (name, dtype), a in zip(self.ins, args):
            if isinstance(a, FakeDeviceArray):
                if a.dtype != dtype:
                    raise TypeError(f"Type is mismatched. {name} {a.dtype.type} {dtype.type}")
                value = np.broadcast_to(a.data, shape)
            else:  # a Python or NumPy scalar: CuPy casts it to the parameter's type
                value = np.asarray(a).astype(dtype)
            env[name] = (value, _CTYPE[dtype.name])
        (oname, odtype), = self.outs
        out = args[len(self.ins)] if len(args) > len(self.ins) else None
        if out is not None:
            if not isinstance(out, FakeDeviceArray):
                raise TypeError("Output arguments type must be cupy.ndarray")
            if out.dtype != odtype:
                raise TypeError(f"Type is mismatched. {oname} {out.dtype.type} {odtype.type}")
            if out.shape != shape:
                raise ValueError("Out shape is mismatched")
        value, ctype = evaluate(self.body, env, self.templates)
        result = np.broadcast_to(convert(value, ctype, _CTYPE[odtype.name]), shape)
        self.calls += 1
        if out is None:
            return FakeDeviceArray(np.array(result, dtype=odtype))
        out.data[...] = result
        return out


_CTYPE = {"bool": "bool", "int32": "int", "int64": "long long", "float32": "float",
          "float64": "double"}


def _param(text):
    """CuPy's ParameterInfo: ``dtype name``, the dtype spelled as NumPy names it."""
    words = text.split()
    if len(words) < 2:
        raise Exception(f"Syntax error: {text}")
    if len(words) > 2:
        raise Exception(f'Unknown keyword "{words[0]}"')
    t, name = words
    dtype = np.dtype(t)
    if dtype.name != t:
        raise ValueError(f"Wrong type {t}")
    if dtype.name not in _CTYPE:
        raise NotImplementedError(f"{t} parameters")
    return name, dtype
