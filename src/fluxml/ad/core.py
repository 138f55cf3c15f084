"""The differentiation engine's machinery: primitives, tracers, trace levels, the tape.

A :class:`Primitive` is a function NumPy already computes (its ``impl``) together with its
derivative rules. Outside a transform, ``bind(prim, ...)`` just runs ``impl``. Inside one, the
float arrays of the arguments are :class:`Tracer` handles that belong to a trace (a level):
``bind`` finds the highest level among the arguments, unwraps that level, applies the primitive
one level down and lets the trace record what it needs (a tape node for reverse mode, a tangent
for forward mode). Nested levels give higher-order derivatives and keep perturbations apart.

Rules live in ``ad/rules``; this file holds none. The backward sweep is ``ad/sweep.py``,
forward mode ``ad/forward.py``, writes into traced arrays and views ``ad/mutation.py``.
"""

from __future__ import annotations

import itertools

import numpy as np

from fluxml.ad import errors

_levels = itertools.count(1)  # thread-safe under the GIL; later transforms get higher levels


class DifferentiationError(TypeError):
    """Raised when code cannot be differentiated as written; the message says what to do."""


class Primitive:
    """An operation with derivative rules.

    ``impl(*arrays, **params)`` computes on raw arrays. ``vjp(pos, g, ans, args, params)``
    returns the cotangent of argument ``pos``; ``jvp(pos, t, ans, args, params)`` the
    contribution of the tangent of argument ``pos`` to the output tangent. Rules are written
    with NumPy calls, so they are recorded again under an outer transform (any order).

    ``keeps_inputs`` / ``keeps_output`` say whether the rules read the argument or result
    values (the mutation machinery copies a buffer before writing into it only when a rule
    kept it). ``view`` marks operations whose result may share memory with argument 0.
    """

    __slots__ = ("name", "impl", "vjp", "vjps", "vjp_all", "vjp_overwrite", "jvp", "jvp_all",
                 "jvp_overwrite", "keeps_inputs", "keeps_output", "view", "multiple_results",
                 "linear", "vjp_takes_none")

    def __init__(self, name, impl, *, keeps_inputs=True, keeps_output=True, view=False,
                 multiple_results=False):
        self.name = name
        self.impl = impl
        self.vjp = None
        self.vjps = None  # per-position rules ``(g, ans, *args, **params)``, when fixed-arity
        self.vjp_all = None  # optional: (g, ans, args, params, positions) -> list of cotangents
        self.vjp_overwrite = None  # optional (pos, rule): a vjp allowed to reuse g's buffer
        self.jvp = None
        self.jvp_all = None  # optional: ([(pos, tangent)], ans, args, params) -> output tangent
        # optional: ({pos: tangent}, ans, args, params, reuse) -> output tangent, where
        # ``reuse`` says the tangent of argument 0 is held by no one else (setitem)
        self.jvp_overwrite = None
        self.keeps_inputs = keeps_inputs
        self.keeps_output = keeps_output
        self.view = view
        self.multiple_results = multiple_results
        self.linear = False
        # multiple results: vjp_all takes None for an output without a cotangent (instead of
        # zeros of its shape, which cost a pass over memory for a large saved output)
        self.vjp_takes_none = False

    def __call__(self, *args, **params):
        return bind(self, args, params)

    def __repr__(self):
        return f"Primitive({self.name})"


# --- dispatch tables, filled by ad/rules -------------------------------------------------------

UFUNCS: dict = {}  # np.ufunc -> callable(*inputs, **kwargs) on tracers
FUNCTIONS: dict = {}  # NumPy function -> callable with NumPy's signature, for __array_function__
NONDIFF: set = set()  # NumPy functions/ufuncs with no derivative: run on the values, untraced
LAZY_RULES: list = []  # callables(ufunc_or_func) -> bool that may register rules on a miss


def lookup(table, func):
    """The rule-table entry for ``func``, loading lazy rule families (scipy.special) on a miss."""
    entry = table.get(func)
    if entry is None and func not in NONDIFF:
        for loader in LAZY_RULES:
            if loader(func):
                return table.get(func)
    return entry


# --- binding -------------------------------------------------------------------------------------

def top_trace(args):
    """The trace of the highest level among ``args`` (None when nothing is traced)."""
    top = None
    for a in args:
        if type(a) is Tracer:
            t = a._trace
            if top is None or t.level > top.level:
                top = t
    return top


def bind(prim, args, params):
    """Apply ``prim`` to ``args``: directly on raw values, else through the top trace."""
    top = None  # top_trace(args), inlined: this is the path of every recorded operation
    for a in args:
        if type(a) is Tracer:
            t = a._trace
            if top is None or t.level > top.level:
                top = t
    if top is None:
        return prim.impl(*args, **params)
    return top.process(prim, args, params)


def _reraise_if_mixed(prim, vals, error):
    """After ``prim`` failed: when its arguments were on two devices (CPU and GPU), raise
    the error that names them (``fluxml.backend.mixing``, loaded only now)."""
    from fluxml.backend.mixing import reraise_if_mixed

    reraise_if_mixed(prim, vals, error)


def raw(x):
    """The concrete value under every trace level (for shapes, dtypes, non-differentiable ops)."""
    while type(x) is Tracer:
        x = x._val
    return x


def strip(x):
    """``raw`` mapped over lists, tuples and dict values (for non-differentiable calls)."""
    if type(x) is Tracer:
        return raw(x)
    if type(x) in (list, tuple):
        return type(x)(strip(a) for a in x)
    if type(x) is dict:
        return {k: strip(v) for k, v in x.items()}
    return x


LARGE = 4096  # arrays of at least this many elements are not kept by rules that need no values


class Shaped:
    """What the tape keeps of an array whose values no rule reads: its shape and dtype."""

    __slots__ = ("shape", "dtype")

    def __init__(self, a):
        self.shape = a.shape
        self.dtype = a.dtype

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def size(self):
        return int(np.prod(self.shape))

    def __len__(self):
        return self.shape[0]


# --- traces --------------------------------------------------------------------------------------

class Trace:
    """One transform call: a level, and whether tracers of it may still be used."""

    __slots__ = ("level", "closed", "refused", "__weakref__")

    def __init__(self):
        self.level = next(_levels)
        self.closed = None  # None while open; else the message for a tracer used too late
        self.refused = None  # a refusal NumPy would have swallowed, raised when f returns

    def check_open(self):
        if self.closed is not None:
            raise DifferentiationError(self.closed)

    def check_refused(self):
        """Raise the refusal recorded while ``f`` ran (see ``methods._refuses``)."""
        if self.refused is not None:
            raise DifferentiationError(self.refused)

    def new(self, val, box, owned=True):
        t = Tracer.__new__(Tracer)
        t._trace = self
        t._val = val
        t._box = box
        t._owned = owned
        t._view = t._views = None
        return t


LEAKED = errors.LEAKED


class ReverseTrace(Trace):
    """Records a tape of nodes ``(prim, args, params, ans, parents)``; ``parents`` lists
    ``(argument position, tape index)`` of the traced arguments."""

    __slots__ = ("tape", "snapshots")

    def __init__(self):
        self.level = next(_levels)
        self.closed = None
        self.refused = None
        self.tape = []
        self.snapshots = None  # id -> (large plain array, the copy a rule keeps of it)

    def leaf(self, val, index=None):
        """A new differentiable input (its node has no parents; ``index`` is unused here)."""
        tape = self.tape
        t = Tracer.__new__(Tracer)
        t._trace = self
        t._val = val
        t._box = len(tape)
        t._owned = False  # the caller's array: the first write copies it
        t._view = t._views = None
        tape.append(None)
        return t

    def constant(self, val):
        """A traced constant (e.g. ``np.zeros_like(tracer)``): writable, carries no gradient."""
        t = self.leaf(val)
        t._owned = True
        return t

    def process(self, prim, args, params):
        # The hot path of reverse mode: kept flat on purpose (no helper calls per argument).
        if self.closed is not None:
            raise DifferentiationError(self.closed)
        vals = list(args)
        parents = []
        lower = constants = large = False
        i = -1
        if prim.keeps_inputs:
            for a in args:
                i += 1
                if type(a) is Tracer:
                    if a._trace is self:
                        parents.append((i, a._box))
                        v = a._val
                        if a._view is None:  # a rule keeps it: the next write copies first
                            a._owned = False
                        else:  # a view: a copy, if its base may be written in place
                            v = _kept_view(a)
                        if type(v) is Tracer:
                            lower = True
                        vals[i] = v
                    else:
                        lower = True
                elif type(a) is np.ndarray or type(a) is list:
                    constants = True  # plain and mutable: protected below
        else:
            for a in args:
                i += 1
                if type(a) is Tracer:
                    if a._trace is self:
                        parents.append((i, a._box))
                        v = vals[i] = a._val
                        if type(v) is Tracer:
                            lower = True
                        elif type(v) is np.ndarray and v.size >= LARGE:
                            large = True
                    else:
                        lower = True
        try:  # costs nothing unless raised (Python 3.11): the NumPy path checks no devices
            ans = bind(prim, vals, params) if lower else prim.impl(*vals, **params)
        except Exception as e:
            _reraise_if_mixed(prim, vals, e)
            raise
        if not parents:  # every traced argument belongs to lower levels: a constant here
            if prim.multiple_results:
                return tuple(self.constant(a) for a in ans)
            return self.constant(ans)
        if constants:
            self._keep_constants(vals, args)
        elif large and not prim.view:  # rules read only shapes: let large arrays go early
            self._keep_shapes(vals, parents, ans)
        tape = self.tape
        if prim.multiple_results:
            tape.append((prim, vals, params, ans, parents))
            return self._project(ans, not prim.keeps_output)
        out = Tracer.__new__(Tracer)
        out._trace = self
        out._val = ans
        out._box = len(tape)
        out._view = out._views = None
        if prim.keeps_output:
            out._owned = False
            tape.append((prim, vals, params, ans, parents))
        else:
            out._owned = True
            if type(ans) is np.ndarray and ans.size >= LARGE:
                tape.append((prim, vals, params, Shaped(ans), parents))
            else:
                tape.append((prim, vals, params, ans, parents))
        if prim.view:
            _link_view(out, args[0], prim, params)
        return out

    @staticmethod
    def _keep_shapes(vals, parents, ans):
        """Replace large argument arrays that no rule reads by their shapes, so that they
        can be freed before the sweep. (A view primitive's result holds its input anyway.)"""
        for p, _ in parents:
            v = vals[p]
            if type(v) is np.ndarray and v.size >= LARGE and v is not ans:
                vals[p] = Shaped(v)

    def _keep_constants(self, vals, args):
        """Plain arrays (and lists) that a rule keeps are copied: the program may write into
        them later (through any view of their memory, from any thread), and the backward pass
        must read the values the forward pass used. A large array used again unchanged shares
        the copy made at its first use (checked by comparing the values)."""
        for i, a in enumerate(args):  # the constants only: traced values are versioned
            if type(a) is list:
                vals[i] = np.array(a)
            elif type(a) is np.ndarray:
                vals[i] = a.copy() if a.size < LARGE else self._snapshot(a)

    def _snapshot(self, a):
        snapshots = self.snapshots
        if snapshots is None:
            snapshots = self.snapshots = {}
        entry = snapshots.get(id(a))
        if entry is not None and entry[0] is a and _unchanged(a, entry[1]):
            return entry[1]
        kept = a.copy()
        snapshots[id(a)] = (a, kept)  # holding ``a`` keeps its id from being reused
        return kept

    def _project(self, ans, owned):
        """One handle per output of the multiple-result node just recorded."""
        tape = self.tape
        j = len(tape) - 1
        outs = []
        for k, a in enumerate(ans):
            tape.append((None, None, None, None, ((k, j),)))  # projection of output k
            outs.append(self.new(a, len(tape) - 1, owned))
        return tuple(outs)

    def backward(self, seeds, wanted, free=True):
        """Cotangents of the ``wanted`` tape indices (None entries allowed), from ``seeds``
        (index -> cotangent)."""
        return sweep(self.tape, seeds, wanted, free)


_BITS = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def _unchanged(a, kept):
    """Do ``a``'s values equal ``kept``'s, bit for bit (NaN included)? One pass, no copy."""
    bits = _BITS.get(a.dtype.itemsize)
    if bits is not None and a.flags.c_contiguous:
        return bool((a.reshape(-1).view(bits) == kept.reshape(-1).view(bits)).all())
    return bool(np.array_equal(a, kept))  # a NaN makes it "changed": a fresh copy is kept


def _kept(a):
    """The value a rule may keep for the backward pass. A buffer is marked as kept, so that
    the next write into it copies first (copy-on-write). A view shares its base's buffer: when
    that base may still be written in place, the rule keeps a copy of the view (cheaper than
    making every later write into the base copy it whole, as a fill loop would)."""
    if a._view is None:
        a._owned = False
        return a._val
    return _kept_view(a)


def _kept_view(a):
    root = a._view[0]
    while root._view is not None:
        root = root._view[0]
    # a base that no write goes into in place (an argument, or one a rule kept) needs no copy
    return a._val.copy(order="K") if root._owned else a._val  # K: a transposed view stays one


def _link_view(out, base, prim, params):
    """Make ``out`` a view handle of ``base`` when NumPy returned a view (shared memory)."""
    if type(base) is not Tracer or base._trace is not out._trace:
        return
    if not np.may_share_memory(raw(out._val), raw(base._val)):
        return
    from fluxml.ad import mutation  # one small module; imported here to keep core acyclic

    mutation.link(out, base, prim, params)


# --- the Tracer ----------------------------------------------------------------------------------

class Tracer:
    """A traced array: a mutable handle on a value recorded by a trace.

    ``_val`` is the primal (a raw array, or a Tracer of a lower level); ``_box`` is the tape
    index (reverse mode) or the tangent (forward mode, None for zero). A write (``t[i] = v``,
    ``t += y``) records a functional update and rebinds the handle, so every name bound to it
    sees the write (``ad/mutation.py``). ``_owned`` says the raw buffer may be written in
    place; ``_view``/``_views`` link views to their base.
    """

    __slots__ = ("_trace", "_val", "_box", "_owned", "_view", "_views", "__weakref__")
    __array_priority__ = 1000

    # Array attributes come from the value.
    @property
    def shape(self):
        return self._val.shape

    @property
    def dtype(self):
        return self._val.dtype

    @property
    def ndim(self):
        return len(self._val.shape)

    @property
    def size(self):
        return raw(self).size

    def __len__(self):
        shape = self._val.shape
        if not shape:
            raise TypeError("len() of unsized object (a 0-d traced array)")
        return shape[0]

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __repr__(self):
        kind = "Reverse" if isinstance(self._trace, ReverseTrace) else "Forward"
        return f"Tracer<{kind}:{self._trace.level}>({raw(self)!r})"

    __hash__ = object.__hash__

    # NumPy protocols.
    # __array_ufunc__ and __array_function__ are installed by ad/dispatch.py.

    def __array_namespace__(self, api_version=None):
        """NumPy: its functions reach the rules through the two protocols above, so array-API
        code (``xp = x.__array_namespace__()``; ``xp.sum(x)``) is differentiated too."""
        return np

    def __array__(self, dtype=None, copy=None):
        if dtype is not None and np.dtype(dtype).kind in "biu":
            # an integer or boolean cast (`np.int64(x)`, `np.asarray(x, dtype=int)`) has no
            # derivative: cut, as `x.astype(int)` is
            return np.array(raw(self), dtype=dtype)
        raise DifferentiationError(errors.converted(errors.calling_library()))


def _register():
    from fluxml.tree import register_leaf

    register_leaf(Tracer)


_register()


from fluxml.ad.sweep import sweep  # noqa: E402  (the sweep builds on the names above)
