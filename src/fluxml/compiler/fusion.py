"""Elementwise fusion: chains of elementwise ufuncs become one equation computing an
expression tree in a single pass (one CUDA kernel on the ``cupy`` back end).

An equation joins its consumer's group when it is an elementwise ufunc whose result has the
group's shape, is read exactly once (by the group) and nowhere else (not an output, not
written back, not shared with a view), and no equation between them writes into a buffer it
reads. The fused equation's function, a :class:`Fused`, evaluates the tree with NumPy too
(that is how the grouping is tested without a GPU) and writes it as a C expression.
"""

from __future__ import annotations

import math

import numpy as np

from fluxml.compiler.ir import Const, Eqn, Program, Var
from fluxml.compiler.passes import aliases, is_ufunc, mutates

# ufunc -> C expression over operands a, b, both already of the ufunc's loop type (NumPy's
# loop: the result's type, or the operands' common type for a comparison). CUDA's math
# library, and PREAMBLE's helpers where C's operator or CUDA's function differs from NumPy.
C_OPS = {
    np.add: "({a} + {b})", np.subtract: "({a} - {b})", np.multiply: "({a} * {b})",
    np.true_divide: "({a} / {b})", np.negative: "(-{a})", np.positive: "({a})",
    np.square: "fx_square({a})", np.power: "pow({a}, {b})", np.sqrt: "sqrt({a})",
    np.exp: "exp({a})", np.log: "log({a})", np.log1p: "log1p({a})", np.expm1: "expm1({a})",
    np.tanh: "tanh({a})", np.sin: "sin({a})", np.cos: "cos({a})", np.absolute: "fabs({a})",
    np.maximum: "fx_max({a}, {b})", np.minimum: "fx_min({a}, {b})",
    np.greater: "({a} > {b})", np.less: "({a} < {b})", np.greater_equal: "({a} >= {b})",
    np.less_equal: "({a} <= {b})", np.equal: "({a} == {b})",
    np.reciprocal: "(1 / {a})", np.arctan: "atan({a})", np.sign: "fx_sign({a})",
}
_INTEGER_OPS = {np.absolute: "fx_abs({a})"}  # (for integers and bools: fabs is for floats)
_FLOAT_ONLY = (np.power, np.reciprocal)  # in integers NumPy's differ (or refuse): not fused
_COMPARISONS = (np.greater, np.less, np.greater_equal, np.less_equal, np.equal)
PREAMBLE = """\
// NumPy's maximum and minimum: a NaN operand gives NaN (CUDA's max and min ignore it), a
// tie the second operand (maximum(-0.0, 0.0) is 0.0, maximum(0.0, -0.0) is -0.0)
template <typename T> __device__ T fx_max(T a, T b) { return (a > b || a != a) ? a : b; }
template <typename T> __device__ T fx_min(T a, T b) { return (a < b || a != a) ? a : b; }
// NumPy's sign: NaN for NaN, 0.0 for -0.0
template <typename T> __device__ T fx_sign(T a) { return a > (T)0 ? (T)1 : a < (T)0 ? (T)-1
                                                  : a == (T)0 ? (T)0 : a; }
template <typename T> __device__ T fx_square(T a) { return a * a; }
template <typename T> __device__ T fx_abs(T a) { return a < (T)0 ? -a : a; }
"""
# NumPy dtype -> C type (no float16: CuPy's is a class of its own, and NumPy rounds to half
# after every operation, which a fused chain would not)
C_TYPES = {"float32": "float", "float64": "double", "int64": "long long", "int32": "int",
           "bool": "bool"}


class Fused:
    """An expression tree of ufuncs over the group's inputs (``("in", k)``, ``("const",
    value)`` or ``(ufunc, dtype, children)``), computed by NumPy when called."""

    impure = False

    def __init__(self, tree, dtype, shape):
        self.tree = tree
        self.dtype = np.dtype(dtype)
        self.shape = shape
        self.__name__ = "fused"

    def __call__(self, *inputs, out=None):
        value = self._eval(self.tree, inputs)
        if out is None:
            return value
        out[...] = value
        return out

    def _eval(self, node, inputs):
        kind = node[0]
        if kind == "in":
            return inputs[node[1]]
        if kind == "const":
            return node[1]
        ufunc, dtype, children = node
        out = ufunc(*(self._eval(c, inputs) for c in children))
        return out if np.result_type(out) == dtype else np.asarray(out).astype(dtype)

    def c_expression(self, names, dtypes) -> str:
        """The C source of the tree over inputs ``names`` of ``dtypes``: each operation on
        operands cast to its NumPy loop type, its result cast to its NumPy dtype (a Python
        number is weak, as NumPy takes it: cast to the loop type)."""
        return self._c(self.tree, names, [np.dtype(d) for d in dtypes])[0]

    def _c(self, node, names, dtypes):
        """``(source, dtype)`` of ``node``; dtype None for a Python number."""
        kind = node[0]
        if kind == "in":
            return names[node[1]], dtypes[node[1]]
        if kind == "const":
            value = node[1]
            if isinstance(value, np.generic):
                return f"(({C_TYPES[value.dtype.name]}){_literal(value.item())})", value.dtype
            return _literal(value), None
        ufunc, dtype, children = node
        parts = [self._c(c, names, dtypes) for c in children]
        loop = dtype
        if ufunc in _COMPARISONS:
            loop = np.result_type(*(d if d is not None else c[1]
                                    for (_, d), c in zip(parts, children)))
        ctype = C_TYPES[loop.name]
        # (`d is not None`: NumPy takes None for float64 in `dtype == None`)
        cast = [t if d is not None and d == loop else f"(({ctype}){t})" for t, d in parts]
        op = C_OPS[ufunc] if loop.kind == "f" else _INTEGER_OPS.get(ufunc, C_OPS[ufunc])
        text = op.format(a=cast[0], b=cast[1] if len(cast) > 1 else "")
        return f"(({C_TYPES[np.dtype(dtype).name]}){text})", np.dtype(dtype)

    def __repr__(self):
        return f"fused[{self._text(self.tree)}]"

    def _text(self, node):
        if node[0] == "in":
            return f"#{node[1]}"
        if node[0] == "const":
            return repr(node[1])
        return f"{node[0].__name__}({', '.join(self._text(c) for c in node[2])})"


def _literal(value) -> str:
    """A Python number as a C literal (finite: _fusible keeps inf and nan out)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}LL" if abs(value) >= 2**31 else str(value)
    return repr(float(value))


def _c_number(value) -> bool:
    """Can C write ``value``: a finite bool, int or float (a NumPy one of a C type)?"""
    if isinstance(value, np.ndarray):
        value = value[()]
    if isinstance(value, np.generic):
        return value.dtype.name in C_TYPES and bool(np.isfinite(value))
    return isinstance(value, (bool, int)) or isinstance(value, float) and math.isfinite(value)


def _fusible(eqn) -> bool:
    """An elementwise ufunc with a C form, on and to the types C_TYPES names (not a weak
    Python number), and no inf or nan among its numbers (C has no literal for them)."""
    if not (is_ufunc(eqn) and eqn.fn in C_OPS and eqn.out is None and not eqn.outs[0].weak):
        return False
    dtype = eqn.outs[0].dtype
    if dtype.name not in C_TYPES or (dtype.kind in "iub" and eqn.fn in _FLOAT_ONLY):
        return False
    for a in eqn.inputs:
        value = a.value if type(a) is Const else a
        if type(a) is Var:  # (a traced Python number compares as NumPy's weak scalars do)
            ok = a.dtype.name in C_TYPES and not (a.weak and eqn.fn in _COMPARISONS)
        elif isinstance(value, np.ndarray) and value.ndim:  # an array constant: an input
            ok = value.dtype.name in C_TYPES
        else:  # a number written into the expression
            ok = _c_number(value)
        if not ok:
            return False
    return True


def fuse_elementwise(program: Program) -> Program:
    """Replace chains of elementwise ufuncs by one :class:`Fused` equation each."""
    eqns = program.eqns
    uses: dict[int, int] = {}
    for eqn in eqns:
        for v in eqn.reads():
            uses[v.id] = uses.get(v.id, 0) + 1
    for v in program.outputs:
        if type(v) is Var:
            uses[v.id] = uses.get(v.id, 0) + 2  # never fused away
    for _, v in program.writes:
        if type(v) is Var:
            uses[v.id] = uses.get(v.id, 0) + 2
    groups = aliases(program)
    size: dict[int, int] = {}
    for eqn in eqns:
        for v in eqn.reads() + eqn.outs:
            r = groups.find(v.id)
            size[r] = size.get(r, 0) + 1
    producer = {}
    for i, eqn in enumerate(eqns):
        for o in eqn.outs:
            producer[o.id] = i
    written_after = _writes_index(eqns, groups)
    absorbed: set[int] = set()
    replaced: dict[int, Eqn] = {}
    for j in range(len(eqns) - 1, -1, -1):
        root = eqns[j]
        if j in absorbed or not _fusible(root):
            continue
        members: list[int] = []
        leaves: list = []
        tree = _grow(root, j, eqns, producer, uses, groups, size, written_after, members,
                     leaves, root.outs[0].shape)
        if not members:
            continue
        absorbed.update(members)
        fused = Fused(tree, root.outs[0].dtype, root.outs[0].shape)
        replaced[j] = Eqn(repr(fused), fused, leaves, {}, root.outs, prim=root.prim)
    if not replaced:
        return program
    out = [replaced.get(i, e) for i, e in enumerate(eqns) if i not in absorbed]
    return Program(program.inputs, out, program.outputs, program.writes)


def _writes_index(eqns, groups):
    """For each alias group, the indices of equations that write into it."""
    out: dict[int, list[int]] = {}
    for i, eqn in enumerate(eqns):
        if mutates(eqn) and type(eqn.inputs[0]) is Var:
            out.setdefault(groups.find(eqn.inputs[0].id), []).append(i)
    return out


def _grow(eqn, at, eqns, producer, uses, groups, size, written_after, members, leaves, shape):
    """The tree of ``eqn`` (computed at index ``at``), absorbing fusible producers."""
    children = []
    for a in eqn.inputs:
        if type(a) is Var:
            i = producer.get(a.id)
            if (i is not None and _fusible(eqns[i]) and uses.get(a.id) == 1
                    and a.shape == shape and size.get(groups.find(a.id)) == 2
                    and _unwritten(eqns[i], i, at, groups, written_after)):
                members.append(i)
                children.append(_grow(eqns[i], at, eqns, producer, uses, groups, size,
                                      written_after, members, leaves, shape))
                continue
            children.append(("in", _leaf(leaves, a)))
        elif type(a) is Const:
            if isinstance(a.value, np.ndarray) and a.value.ndim:
                children.append(("in", _leaf(leaves, a)))
            else:
                # (a 0-d array: a NumPy number, of its dtype as the array was)
                children.append(("const", a.value[()] if isinstance(a.value, np.ndarray)
                                 else a.value))
        else:
            children.append(("const", a))
    return (eqn.fn, eqn.outs[0].dtype, tuple(children))


def _leaf(leaves, a):
    for k, x in enumerate(leaves):
        if x is a:
            return k
    leaves.append(a)
    return len(leaves) - 1


def _unwritten(eqn, start, end, groups, written_after):
    """Do the inputs of ``eqn`` (at ``start``) keep their values until ``end``?"""
    for v in eqn.reads():
        for w in written_after.get(groups.find(v.id), ()):
            if start < w < end:
                return False
    return True
