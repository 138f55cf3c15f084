"""Products: matmul, dot, vdot, inner, outer, tensordot, einsum, kron.

Two primitives carry the family: ``matmul`` (the ufunc behind ``@``) and ``einsum``. Every other
product is written with them, so it is differentiable to any order with no rule of its own.
The vjp of an einsum operand is another einsum (see ``_einsum_vjp``); both are linear in each
operand, so their jvps follow by substituting the tangent (``deflinear``).

Decompositions and solvers (inv, solve, det, cholesky, qr, eigh, svd ...) live in
``decompositions.py``, the norms in ``norms.py``.
"""

from __future__ import annotations

import string

import numpy as np

from fluxml.ad.arrays import module_of
from fluxml.ad.core import UFUNCS, DifferentiationError, Tracer, raw, strong
from fluxml.ad.define import deflinear, defvjp, defvjp_argnum, function, primitive, ufunc
from fluxml.ad.mutation import index_view, into_out
from fluxml.ad.rules.layouts import c_ordered
from fluxml.ad.rules.numerics import cross
from fluxml.ad.rules.shape import diagonal, matrix_transpose, trace

# --- matmul ----------------------------------------------------------------------------------
# NumPy promotes a 1-D operand to a matrix (a row on the left, a column on the right) and drops
# the added axis from the result; the rules undo that promotion. Batch axes broadcast and are
# summed back by the engine.

MATMUL = ufunc(np.matmul, keeps_output=False)


def _matmul_vjp_x(g, ans, x, y):
    if x.ndim == 1 and y.ndim == 1:
        return g * y
    if y.ndim == 1:  # (..., n, k) @ (k,) -> (..., n)
        return g[..., :, None] * y
    if x.ndim == 1:  # (k,) @ (..., k, m) -> (..., m)
        return (g[..., None, :] @ mT(y))[..., 0, :]
    return g @ mT(y)


def _matmul_vjp_y(g, ans, x, y):
    if x.ndim == 1 and y.ndim == 1:
        return g * x
    if x.ndim == 1:  # (k,) @ (..., k, m) -> (..., m)
        return x[:, None] * g[..., None, :]
    if y.ndim == 1:  # (..., n, k) @ (k,) -> (..., n)
        return (mT(x) @ g[..., :, None])[..., 0]
    if y.ndim == 2 and x.ndim > 2:  # a batch against one matrix: one product, no stack to sum
        rows = int(np.prod(x.shape[:-1]))
        x, g = np.reshape(x, (rows, x.shape[-1])), np.reshape(g, (rows, g.shape[-1]))
    if y.ndim == 2 and _transposed(y):
        # y is a transposed view (x @ W.T): its cotangent computed transposed, so that W's
        # gradient comes back C-contiguous (an optimiser's passes over it run twice as fast)
        return mT(mT(g) @ x)
    return mT(x) @ g


def _transposed(y) -> bool:
    """Whether the values under ``y`` are a Fortran-ordered view (a transposed matrix)."""
    flags = raw(y).flags
    return flags.f_contiguous and not flags.c_contiguous


defvjp(MATMUL, _matmul_vjp_x, _matmul_vjp_y)
deflinear(MATMUL)


def mT(x):
    """The matrix transpose of a stack of matrices (the last two axes swapped)."""
    return np.swapaxes(x, -1, -2)


# --- einsum ----------------------------------------------------------------------------------
# The primitive takes the operands positionally and one normalised, explicit subscript string:
# every '...' replaced by letters of its own, the output always written after '->'.

_LETTERS = string.ascii_letters
_SUBLIST_LETTERS = string.ascii_uppercase + string.ascii_lowercase  # NumPy's order for 0..51


def _einsum_impl(*operands, subscripts, optimize):
    out = np.einsum(subscripts, *operands, optimize=optimize)
    if any(isinstance(o, np.ndarray) and np.may_share_memory(out, o) for o in operands):
        out = out.copy()  # NumPy returns views for transposes and diagonals; a primitive may not
    return out


EINSUM = primitive("einsum", _einsum_impl, keeps_output=False)


def _einsum_vjp(pos, g, ans, *operands, subscripts, optimize):
    """The cotangent of operand ``pos``: contract ``g`` with the other operands onto the labels
    of operand ``pos``. A label repeated in that operand (a diagonal, 'ii') is placed back with
    an identity matrix; a label summed out of that operand alone ('ij->i') is broadcast back
    with a vector of ones."""
    inputs, output = subscripts.split("->")
    inputs = inputs.split(",")
    target, x = inputs[pos], operands[pos]
    terms = [output] + [s for i, s in enumerate(inputs) if i != pos]
    arrays = [g] + [o for i, o in enumerate(operands) if i != pos]
    present = set("".join(terms))
    fresh = (c for c in _LETTERS if c not in subscripts)
    dtype = x.dtype if x.dtype.kind in "fc" else np.float64
    xp = module_of(g)  # (the identities and ones beside a GPU's cotangent: the GPU's)
    result = ""
    for d, (label, n) in enumerate(zip(target, x.shape)):
        if label in target[:d]:
            new = next(fresh)
            terms.append(label + new)
            arrays.append(xp.eye(n, dtype=dtype))
            result += new
            continue
        if label not in present and target.count(label) == 1:
            terms.append(label)
            arrays.append(xp.ones(n, dtype=dtype))
        result += label
    if not isinstance(optimize, (bool, str)):  # an explicit path names the forward operands
        optimize = True
    return np.einsum(",".join(terms) + "->" + result, *arrays, optimize=optimize)


defvjp_argnum(EINSUM, _einsum_vjp)
deflinear(EINSUM)

@function(np.einsum)
def einsum(*operands, out=None, optimize=False, dtype=None, order="K", casting="safe"):
    subscripts, arrays = _from_sublists(operands) if not isinstance(operands[0], str) \
        else (operands[0], operands[1:])
    if dtype is not None:  # (an operand of that dtype already is used as it is: NumPy's
        # einsum then returns its views, 'ij->ji', which writes reach)
        arrays = [a if np.dtype(dtype) == a.dtype else a.astype(dtype)
                  for a in (x if type(x) is Tracer else np.asarray(x) for x in arrays)]
    subscripts = normalise_subscripts(subscripts, [np.shape(raw(a)) for a in arrays])
    if len(arrays) == 1 and type(arrays[0]) is Tracer and out is None:
        view = _einsum_view(arrays[0], subscripts)
        if view is not None:
            return view
    result = EINSUM(*arrays, subscripts=subscripts, optimize=optimize)
    return into_out(result, out, "np.einsum")


def _einsum_view(a, subscripts):
    """One operand and nothing summed ('ii->i', 'ij->ji'): NumPy returns a writable view of
    the operand, so fluxml returns a view handle too (writes through it reach ``a``): the
    entries it selects, as an index into ``a``, linked to ``a``. None when NumPy copies."""
    inputs, output = subscripts.split("->")
    if set(inputs) != set(output):  # a label summed out: NumPy computes a new array
        return None
    if len(set(inputs)) == len(inputs):  # a permutation: NumPy's transposed view, whose
        # memory order a later ravel(order="K") reads (an index view's is C order)
        return np.transpose(a, [inputs.index(c) for c in output])
    value = raw(a)
    positions = np.einsum(subscripts, np.arange(value.size).reshape(value.shape))
    return index_view(a, np.unravel_index(positions, value.shape))


def normalise_subscripts(subscripts: str, shapes) -> str:
    """The explicit form of an einsum specification: '...' replaced by letters of its own
    (right-aligned, as NumPy broadcasts them) and the implicit output ('...' first, then the
    labels used once, sorted) written out.

    >>> normalise_subscripts("...ij,...jk", [(5, 2, 3), (3, 4)])
    'aij,jk->aik'
    """
    subscripts = subscripts.replace(" ", "")
    inputs, arrow, output = subscripts.partition("->")
    inputs = inputs.split(",")
    if len(inputs) != len(shapes):
        raise ValueError(f"einsum: {len(inputs)} operand subscripts for {len(shapes)} operands")
    fresh = [c for c in _LETTERS if c not in subscripts]
    counts = [len(shape) - (len(s) - 3) if "..." in s else 0 for s, shape in zip(inputs, shapes)]
    width = max(counts, default=0)
    ellipsis = "".join(fresh[:width])
    if not arrow:
        labels = "".join(inputs).replace(".", "")
        output = "..." + "".join(sorted(c for c in set(labels) if labels.count(c) == 1))
    elif width and "..." not in output:
        raise ValueError("output has more dimensions than subscripts given in einstein sum, "
                         "but no '...' ellipsis provided to broadcast the extra dimensions.")
    inputs = [s.replace("...", ellipsis[width - n:] if n else "") for s, n in zip(inputs, counts)]
    return ",".join(inputs) + "->" + output.replace("...", ellipsis)


def _from_sublists(args):
    """``einsum(a, [0, 1], b, [1, 2], [0, 2])`` as ``('AB,BC->AC', (a, b))``."""

    def letters(sub):
        return "".join("..." if s is Ellipsis else _SUBLIST_LETTERS[s] for s in sub)

    args = list(args)
    output = letters(args.pop()) if len(args) % 2 else None
    arrays, subs = args[0::2], [letters(s) for s in args[1::2]]
    spec = ",".join(subs) + ("->" + output if output is not None else "")
    return spec, arrays


# --- products written with matmul and einsum ----------------------------------------------


def _tensordot_axes(a_ndim, b_ndim, axes):
    if isinstance(axes, (int, np.integer)):
        return list(range(a_ndim - axes, a_ndim)), list(range(axes))
    ax_a, ax_b = axes
    ax_a = [ax_a] if isinstance(ax_a, (int, np.integer)) else list(ax_a)
    ax_b = [ax_b] if isinstance(ax_b, (int, np.integer)) else list(ax_b)
    if len(ax_a) != len(ax_b):
        raise ValueError("shape-mismatch for sum")
    return [i % a_ndim for i in ax_a], [i % b_ndim for i in ax_b]


@function(np.tensordot)
def tensordot(a, b, axes=2):
    na, nb = np.ndim(raw(a)), np.ndim(raw(b))
    ax_a, ax_b = _tensordot_axes(na, nb, axes)
    sa = list(_LETTERS[:na])
    sb = list(_LETTERS[na:na + nb])
    for i, j in zip(ax_a, ax_b):
        sb[j] = sa[i]
    free = [c for i, c in enumerate(sa) if i not in ax_a]
    free += [c for j, c in enumerate(sb) if j not in ax_b]
    spec = "".join(sa) + "," + "".join(sb) + "->" + "".join(free)
    return EINSUM(a, b, subscripts=spec, optimize=True)


@function(np.dot)
def dot(a, b, out=None):
    na, nb = np.ndim(raw(a)), np.ndim(raw(b))
    if na == 0 or nb == 0:  # (a Python number is a float64 array to np.dot, not weak)
        result = strong(a) * strong(b)
    elif na <= 2 and nb <= 2:
        result = MATMUL(a, b)
    else:  # the last axis of a against the second-to-last of b (the only one when 1-D), in
        # C order as NumPy allocates it (a later ravel(order="K") reads the layout)
        result = c_ordered(tensordot(a, b, ([na - 1], [max(nb - 2, 0)])))
    return into_out(result, out, "np.dot")


@function(np.inner)
def inner(a, b):
    na, nb = np.ndim(raw(a)), np.ndim(raw(b))
    if na == 0 or nb == 0:
        return strong(a) * strong(b)
    return tensordot(a, b, ([na - 1], [nb - 1]))


@function(np.vdot)
def vdot(a, b):
    if np.iscomplexobj(raw(a)):
        a = np.conj(a)
    return MATMUL(np.reshape(a, (-1,)), np.reshape(b, (-1,)))


@function(np.outer)
def outer(a, b, out=None):
    if out is not None:
        raise DifferentiationError("np.outer(..., out=) is not supported on traced arrays")
    return np.reshape(a, (-1, 1)) * np.reshape(b, (1, -1))


@function(np.kron)
def kron(a, b):
    """Each axis of the result interleaves an axis of ``a`` (outer) with one of ``b``."""
    sa, sb = np.shape(raw(a)), np.shape(raw(b))
    nd = max(len(sa), len(sb))
    sa, sb = (1,) * (nd - len(sa)) + sa, (1,) * (nd - len(sb)) + sb
    a = np.reshape(a, tuple(n for m in sa for n in (m, 1)))
    b = np.reshape(b, tuple(n for m in sb for n in (1, m)))
    return np.reshape(a * b, tuple(m * n for m, n in zip(sa, sb)))


@function(np.linalg.multi_dot)
def multi_dot(arrays, *, out=None):
    if out is not None:
        raise DifferentiationError("np.linalg.multi_dot(..., out=) is not supported on traced "
                                   "arrays")
    result = arrays[0]
    for a in arrays[1:]:
        result = dot(result, a)
    return result


def vecdot(x1, x2, axis=-1):
    """``sum(conj(x1) * x2, axis)`` with broadcasting (NumPy 2's ``vecdot``)."""
    x1 = np.conj(x1) if np.iscomplexobj(raw(x1)) else x1
    n = max(np.ndim(raw(x1)), np.ndim(raw(x2)))
    axis %= n
    labels = _LETTERS[:n]
    spec = f"{labels},{labels}->{labels.replace(labels[axis], '')}"
    return np.einsum(spec, _lead(x1, n), _lead(x2, n))


def _lead(x, n):
    """``x`` with leading unit axes up to ``n`` dimensions (explicit einsum labels need them)."""
    shape = np.shape(raw(x))
    return np.reshape(x, (1,) * (n - len(shape)) + shape) if len(shape) < n else x


# NumPy 2 array-API spellings of the same products.
if hasattr(np, "vecdot"):
    UFUNCS[np.vecdot] = vecdot  # the ufunc, reached without keywords
    function(np.linalg.vecdot)(vecdot)
if hasattr(np.linalg, "matmul"):
    function(np.linalg.matmul)(lambda x1, x2, /: MATMUL(x1, x2))
    function(np.linalg.outer)(lambda x1, x2, /: outer(x1, x2))
    function(np.linalg.tensordot)(lambda x1, x2, /, *, axes=2: tensordot(x1, x2, axes))
if hasattr(np, "matvec"):  # NumPy 2.2's ufuncs: a stack of matrices times vectors
    UFUNCS[np.matvec] = lambda x1, x2: MATMUL(x1, x2[..., None])[..., 0]
    UFUNCS[np.vecmat] = lambda x1, x2: MATMUL(np.conj(x1)[..., None, :], x2)[..., 0, :]


# np.linalg's array-API names of functions with rules elsewhere: the last two axes.
if hasattr(np.linalg, "trace"):
    function(np.linalg.trace)(lambda x, /, *, offset=0, dtype=None:
                              trace(x, offset, -2, -1, dtype))
    function(np.linalg.diagonal)(lambda x, /, *, offset=0: diagonal(x, offset, -2, -1))
    function(np.linalg.matrix_transpose)(matrix_transpose)


if hasattr(np.linalg, "cross"):
    @function(np.linalg.cross)
    def linalg_cross(x1, x2, /, *, axis=-1):
        """``np.cross`` of 3-vectors only (NumPy's check and error)."""
        n1, n2 = np.shape(raw(x1))[axis], np.shape(raw(x2))[axis]
        if n1 != 3 or n2 != 3:
            raise ValueError("Both input arrays must be (arrays of) 3-dimensional vectors, "
                             f"but they are {n1} and {n2} dimensional instead.")
        return cross(x1, x2, axis=axis)
