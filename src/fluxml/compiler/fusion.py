"""Elementwise fusion: chains of elementwise ufuncs become one equation computing an
expression tree in a single pass (one CUDA kernel on the ``cupy`` back end).

An equation joins its consumer's group when it is an elementwise ufunc whose result has the
group's shape, is read exactly once (by the group) and nowhere else (not an output, not
written back, not shared with a view), and no equation between them writes into a buffer it
reads. The fused equation's function, a :class:`Fused`, evaluates the tree with NumPy too
(that is how the grouping is tested without a GPU) and writes it as a C expression.
"""

from __future__ import annotations

import numpy as np

from fluxml.compiler.ir import Const, Eqn, Program, Var
from fluxml.compiler.passes import aliases, is_ufunc, mutates

# ufunc -> C expression over operands a, b (CUDA's math library)
C_OPS = {
    np.add: "({a} + {b})", np.subtract: "({a} - {b})", np.multiply: "({a} * {b})",
    np.true_divide: "({a} / {b})", np.negative: "(-{a})", np.positive: "({a})",
    np.square: "({a} * {a})", np.power: "pow({a}, {b})", np.sqrt: "sqrt({a})",
    np.exp: "exp({a})", np.log: "log({a})", np.log1p: "log1p({a})", np.expm1: "expm1({a})",
    np.tanh: "tanh({a})", np.sin: "sin({a})", np.cos: "cos({a})", np.absolute: "fabs({a})",
    np.maximum: "max({a}, {b})", np.minimum: "min({a}, {b})",
    np.greater: "({a} > {b})", np.less: "({a} < {b})", np.greater_equal: "({a} >= {b})",
    np.less_equal: "({a} <= {b})", np.equal: "({a} == {b})",
    np.reciprocal: "(1 / {a})", np.arctan: "atan({a})", np.sign: "(({a} > 0) - ({a} < 0))",
}
C_TYPES = {"float32": "float", "float64": "double", "float16": "half", "int64": "long long",
           "int32": "int", "bool": "bool"}


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

    def c_expression(self, names) -> str:
        """The C source of the tree, each operation cast to its NumPy dtype."""
        return self._c(self.tree, names)

    def _c(self, node, names):
        kind = node[0]
        if kind == "in":
            return names[node[1]]
        if kind == "const":
            return repr(float(node[1])) if not isinstance(node[1], bool) else str(node[1])
        ufunc, dtype, children = node
        parts = [self._c(c, names) for c in children]
        text = C_OPS[ufunc].format(a=parts[0], b=parts[1] if len(parts) > 1 else "")
        return f"(({C_TYPES[np.dtype(dtype).name]}){text})"

    def __repr__(self):
        return f"fused[{self._text(self.tree)}]"

    def _text(self, node):
        if node[0] == "in":
            return f"#{node[1]}"
        if node[0] == "const":
            return repr(node[1])
        return f"{node[0].__name__}({', '.join(self._text(c) for c in node[2])})"


def _fusible(eqn) -> bool:
    return (is_ufunc(eqn) and eqn.fn in C_OPS and eqn.out is None
            and eqn.outs[0].dtype.name in C_TYPES and not eqn.outs[0].weak)  # (a number)


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
                children.append(("const", a.value.item() if isinstance(a.value, np.ndarray)
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
