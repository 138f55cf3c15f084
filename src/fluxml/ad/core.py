"""The differentiation engine's machinery: primitives, tracers, trace levels, the tape.

A :class:`Primitive` is a function NumPy already computes (its ``impl``) together with its
derivative rules. Outside a transform, ``bind(prim, ...)`` just runs ``impl``. Inside one, the
float arrays of the arguments are :class:`Tracer` handles that belong to a trace (a level):
``bind`` finds the highest level among the arguments, unwraps that level, applies the primitive
one level down and lets the trace record what it needs (a tape node for reverse mode, a tangent
for forward mode). Nested levels give higher-order derivatives and keep perturbations apart.

This is the bottom layer of the engine: it imports nothing of it but ``errors`` and ``weak``
(the values a traced Python number takes). Each kind
of trace subclasses :class:`Trace` in a module above it: reverse mode ``ad/reverse.py`` (its
sweep ``ad/sweep.py``), forward mode ``ad/forward.py``. Rules live in ``ad/rules``; writes into
traced arrays and views in ``ad/mutation.py``. ``tests/ad/test_layers.py`` keeps the import
graph acyclic.
"""

from __future__ import annotations

import itertools
import threading
from threading import get_ident

import numpy as np

from fluxml.ad import errors
from fluxml.ad.weak import _WEAK_OF, WEAK, python_number, weak
from fluxml.tree import register_leaf

_levels = itertools.count(1)  # thread-safe under the GIL; later transforms get higher levels


class DifferentiationError(TypeError):
    """Raised when code cannot be differentiated as written; the message says what to do.

    >>> import fluxml as fl
    >>> try:
    ...     fl.gradient(lambda x: float(x) ** 2, 3.0)
    ... except fl.DifferentiationError as err:
    ...     print(str(err).split(",")[0])
    float(x) needs a concrete value
    """


class Primitive:
    """An operation with derivative rules.

    ``impl(*arrays, **params)`` computes on raw arrays. ``vjp(pos, g, ans, args, params)``
    returns the cotangent of argument ``pos``; ``jvp(pos, t, ans, args, params)`` the
    contribution of the tangent of argument ``pos`` to the output tangent. Rules are written
    with NumPy calls, so they are recorded again under an outer transform (any order).

    ``keeps_inputs`` / ``keeps_output`` say whether the rules read the argument or result
    values (the mutation machinery copies a buffer before writing into it only when a rule
    kept it); for a primitive with multiple results, ``keeps_output`` may be a tuple of the
    positions of the results the rules read. ``view`` marks operations whose result may
    share memory with argument 0.
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
NO_PARAMS: dict = {}  # the parameters of a call without any (shared: never written)
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

# The IR traces of fl.compile calls in progress, of every thread (innermost last). One list, so
# that eager code pays only ``if COMPILING`` (empty); ``compiling()`` picks this thread's.
COMPILING: list = []
COMPILING_LOCK = threading.Lock()  # held by removals; readers iterate a copy


# The differentiating traces (gradient, pullback, jvp) whose function is running in this
# thread, innermost last: train/test layers ask whether one is open, as Flux's
# ``within_gradient`` is true anywhere inside a gradient call, not only on traced values (a
# Dropout first in a model sees plain data). One stack per thread: no thread reads or
# changes another's (a shared list raced: an entry removed by another thread's index).
_OPEN = threading.local()


def remove_last(stack: list, item) -> None:
    """Remove the last entry of ``stack`` that is ``item`` itself (not one equal to it)."""
    for i in range(len(stack) - 1, -1, -1):
        if stack[i] is item:
            del stack[i]
            return


def open_traces() -> list:
    """This thread's stack of differentiating traces whose function is running."""
    stack = getattr(_OPEN, "traces", None)
    if stack is None:
        stack = _OPEN.traces = []
    return stack


def differentiating() -> bool:
    """Whether this thread runs inside a gradient, pullback or jvp call opened after its
    innermost ``fl.compile`` recording (a compile inside a gradient records a forward; a
    compiled function called inside a gradient runs eagerly, so it acts as eager code)."""
    stack = getattr(_OPEN, "traces", None)
    if not stack:
        return False
    compile_trace = compiling() if COMPILING else None
    return compile_trace is None or max(t.level for t in stack) > compile_trace.level


def taker(trace):
    """The trace that takes an operation whose highest operand's trace is ``trace``: inside a
    compiled branch or loop body, the body's (see ``Trace.takes_outer``)."""
    if COMPILING:
        inner = compiling()
        if inner is not None and inner.takes_outer and inner.level > trace.level:
            return inner
    return trace


def compiling():
    """The IR trace of this thread's innermost ``fl.compile`` in progress, or None. (Another
    thread's compile must not record this thread's random draws.)"""
    me = get_ident()
    for trace in reversed(COMPILING[:]):  # a copy: another thread may remove its entry
        if trace.thread == me:
            return trace
    return None


def recorded(x) -> bool:
    """Is ``x`` (a Tracer) a value of a trace that records a program (``fl.compile``'s)
    rather than differentiating it, at any of its levels?"""
    while type(x) is Tracer:
        if not x._trace.differentiates:
            return True
        x = x._val
    return False


def top_trace(args):
    """The trace that takes an operation on ``args`` (None when nothing is traced): the
    highest level among them, or a compiled branch's above it (see ``taker``)."""
    top = None
    for a in args:
        if type(a) is Tracer:
            t = a._trace
            if top is None or t.level > top.level:
                top = t
    return taker(top) if top is not None and COMPILING else top


def bind(prim, args, params):
    """Apply ``prim`` to ``args``: directly on raw values, else through the top trace."""
    top = None  # top_trace(args), inlined: this is the path of every recorded operation
    for a in args:
        if type(a) is Tracer:
            t = a._trace
            if top is None or t.level > top.level:
                top = t
    if COMPILING:
        if params:  # fl.compile: a traced index or mask among the parameters
            for t in _tracers((), params):  # (of a branch fl.cond traces: above the arguments)
                if top is None or t._trace.level > top.level:
                    top = t._trace
        if top is not None:
            top = taker(top)
    if top is None:
        return prim.impl(*args, **params)
    return top.process(prim, args, params)


def _reraise_if_mixed(prim, vals, error):
    """After ``prim`` failed: when its arguments were on two devices (CPU and GPU), raise
    the error that names them (``fluxml.backend.mixing``, loaded only now)."""
    # lazy: the backends sit above the engine, and a NumPy-only program never needs them
    from fluxml.backend.mixing import reraise_if_mixed

    reraise_if_mixed(prim, vals, error)


class Opaque:
    """Base class of values that stand for an array without holding one (the abstract values
    of ``fl.compile``'s IR trace). ``raw`` stops at the tracer holding one: under compile, the
    "raw value" of an array is its IR tracer, so untraced computations on it are recorded.
    ``weak``: whether it stands for a Python number (see :class:`WeakFloat`);
    ``make_weak()`` marks a 0-d one so (``weak_result``); ``example``: the value it has in the
    call being traced (see :func:`example_of`)."""

    __slots__ = ()
    weak = False
    example = None

    def make_weak(self):
        raise NotImplementedError


def raw(x):
    """The concrete value under every trace level (for shapes, dtypes, non-differentiable ops);
    under ``fl.compile``, the IR tracer at the bottom."""
    while type(x) is Tracer:
        v = x._val
        if type(v) is not Tracer and isinstance(v, Opaque):
            return x
        x = v
    return x




def example_of(x):
    """``x``'s value in the call being traced: its raw value, or under ``fl.compile`` the value
    the trace runs on (the first call's). Only for checks the trace makes on one call's values
    (a rule that refuses what it cannot compile), never for a value of the program."""
    value = raw(x)
    return value._val.example if type(value) is Tracer else value


def draw(rng, method: str, *args, **kwargs):
    """``rng.<method>(*args, **kwargs)``, a random draw. Inside ``fl.compile`` it is recorded,
    so that every run of the compiled program draws anew from ``rng`` (a draw made at trace
    time would be a constant: the same dropout mask on every step)."""
    if COMPILING:
        trace = compiling()
        if trace is not None:
            return trace.draw(rng, method, args, kwargs)
    return getattr(rng, method)(*args, **kwargs)


def known_none(mask) -> bool:
    """Is ``mask`` a concrete array with no True entry? Rules take a fast path then. The
    values of ``fl.compile``'s IR tracers are not known: the general path is recorded."""
    return type(mask) is not Tracer and not mask.any()


def bottom(x):
    """The value ``raw`` gives, as something with ``shape``/``dtype``/``size``/``strides``
    (the abstract value of an IR tracer under ``fl.compile``)."""
    v = raw(x)
    return v._val if type(v) is Tracer else v


def first_order(*xs) -> bool:
    """Is each of ``xs`` a plain array (or None), or a value of ``fl.compile``'s program (an
    IR tracer, not of a GPU's arrays) with no derivative being taken through it? A rule may
    then run its NumPy kernel through :func:`untraced` (under compile: recorded as one call)."""
    for x in xs:
        t = type(x)
        if t is np.ndarray or x is None or (t is Tracer and raw(x) is x
                                              and not x._trace.device):
            continue
        return False
    return True


def untraced(func, args, kwargs=None, name=None):
    """``func`` applied to the raw values of its arguments: no derivative flows through it.
    Under ``fl.compile`` the raw values are IR tracers, and the call is recorded there."""
    args = strip(args)
    kwargs = strip(kwargs) if kwargs else {}
    top = None  # the innermost trace: a branch fl.cond traces may mix its values with outer ones
    for a in _tracers(args, kwargs):
        if top is None or a._trace.level > top._trace.level:
            top = a
    if top is None:
        return func(*args, **kwargs)
    return top._trace.call(func, name or getattr(func, "__name__", "call"), args, kwargs)


def refusal(message: str, *args) -> DifferentiationError:
    """The error for code that cannot be differentiated as written (a conversion to a plain
    value, a function without a rule), noted on the transform of each tracer in ``args``
    (lists, tuples and dicts walked) too: should the function catch it (``except
    Exception``) and go on along another path than it takes eagerly, the transform raises it
    when the function returns, instead of differentiating a program that never runs
    without it (``Trace.check_refused``)."""
    for t in _tracers(args, None):
        trace = t._trace
        if trace.refused is None:
            trace.refused = message
    return DifferentiationError(message)


def _tracers(args, kwargs):
    stack = [args, kwargs]
    while stack:
        x = stack.pop()
        t = type(x)
        if t is Tracer:
            yield x
        elif t is list or t is tuple:
            stack.extend(x)
        elif t is dict:
            stack.extend(x.values())


def strip(x):
    """``raw`` mapped over lists, tuples and dict values (for non-differentiable calls)."""
    if type(x) is Tracer:
        x = raw(x)
        return x.item() if type(x) in WEAK else x  # NumPy takes it weak, as a Python number
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

    __slots__ = ("level", "closed", "refused", "rebound", "__weakref__")

    # Whether values of this trace are being differentiated (reverse and forward mode): what
    # train/test layers ask (``within_gradient``). ``fl.compile``'s recording trace is not.
    differentiates = True
    # Whether, while it records (the innermost fl.compile trace), it takes every operation
    # on traced values of lower levels too: a branch traced only to check it does
    # (compiler/subprogram.py)
    takes_outer = False
    # The module of another library's arrays (a GPU's: cupy) that it traces through host
    # copies (fl.compile's cupy back end), or None: NumPy-only kernels must not be recorded
    # for them, and a gradient's seed is made in that library, as eagerly
    device = None

    def __init__(self):
        self.level = next(_levels)
        self.closed = None  # None while open; else the message for a tracer used too late
        self.refused = None  # a refusal NumPy would have swallowed, raised when f returns
        self.rebound = False  # whether an in-place write rebound a handle (ad/writeback.py)

    def check_open(self):
        if self.closed is not None:
            raise DifferentiationError(self.closed)

    def concrete(self, what: str) -> Exception:
        """The error for Python asking a tracer of this trace for a concrete value (noted as
        the trace's refusal too, see ``refusal``)."""
        message = errors.concrete(what)
        if self.refused is None:
            self.refused = message
        return DifferentiationError(message)

    def check_refused(self):
        """Raise the refusal recorded while ``f`` ran (``refusal``; ``methods._refuses``)."""
        if self.refused is not None:
            raise DifferentiationError(self.refused)

    # One- and two-argument primitives without parameters (ufuncs, operators) come here; a
    # trace may take them by a shorter path than ``process``.
    def unary(self, prim, a):
        """``process(prim, (a,), {})``, where ``a`` is a tracer of this trace."""
        return self.process(prim, (a,), NO_PARAMS)

    def binary(self, prim, a, b):
        """``process(prim, (a, b), {})``, where this is the top trace of ``a`` and ``b``."""
        return self.process(prim, (a, b), NO_PARAMS)

    def new(self, val, box, owned=True):
        t = Tracer.__new__(Tracer)
        t._trace = self
        t._val = val
        t._box = box
        t._owned = owned
        t._view = t._views = None
        return t


LEAKED = errors.LEAKED


def _kept(a):
    """The value a rule may keep for the backward pass. A buffer is marked as kept, so that
    the next write into it copies first (copy-on-write). A view shares its base's buffer: when
    that base may still be written in place, the rule keeps a copy of the view (cheaper than
    making every later write into the base copy it whole, as a fill loop would). A weak
    number is handed on as the Python number it stands for (custom_vjp's and checkpoint's
    functions get it: user code computes as without the transform, see :class:`WeakFloat`)."""
    if a._view is None:
        a._owned = False
        v = a._val
        return v.item() if type(v) in WEAK else v
    return _kept_view(a)


def _kept_view(a):
    root = a._view[0]
    while root._view is not None:
        root = root._view[0]
    # a base that no write goes into in place (an argument, or one a rule kept) needs no copy
    return a._val.copy(order="K") if root._owned else a._val  # K: a transposed view stays one


# --- weak numbers (the values are ``weak.py``'s; these read tracers) -----------------------------

def is_weak(x) -> bool:
    """Is ``x`` weak in NumPy's promotion: a Python number, or a tracer of a weak value?"""
    t = type(x)
    if t is float or t is int or t is complex or t is bool:
        return True
    while t is Tracer:
        x = x._val
        t = type(x)
    return t in WEAK or (isinstance(x, Opaque) and x.weak)  # (a compiled Python number)


def traced_int(x) -> bool:
    """Is ``x`` a Python int that ``fl.compile`` traces (a hyperparameter; eagerly ints are
    never traced)? ``x._trace.python_int`` then records Python's arithmetic on it."""
    if type(x) is not Tracer:
        return False
    v = x._val
    return isinstance(v, Opaque) and v.weak and v.var.dtype.kind == "i"


def python_ints(a, b=0) -> bool:
    """Are ``a`` and ``b`` Python ints, one at least traced by ``fl.compile``?"""
    return (traced_int(a) or type(a) is int) and (traced_int(b) or type(b) is int) \
        and (type(a) is Tracer or type(b) is Tracer)


def strong(x):
    """``x``, or a weak number (a Python number, a traced one) as NumPy's functions that are
    not ufuncs take it: ``np.dot``, ``np.inner``, ``ufunc.outer`` convert an operand with
    ``np.asarray``, which makes a Python float a strong float64 array (``np.dot(x32, 0.5)``
    is float64, ``x32 * 0.5`` float32). A rule that writes such a function with an operator
    calls this on its operands first."""
    if not is_weak(x):
        return x
    if type(x) is Tracer:
        return np.multiply(x, 1)  # (a ufunc call: a strong result, the same value)
    return np.asarray(python_number(x))


def weak_result(out, a, b=0):
    """``out``, the result of a Python operator on ``a`` (and ``b``), with its value marked
    weak when every operand is weak: Python's arithmetic on floats gives a float, so
    ``x * (s * 2.0)`` computes in ``x``'s dtype for a Python float ``s``, traced or not. (An
    untraced result, of an operator without derivative such as ``//``, becomes the Python
    number.)"""
    if type(out) is not Tracer:
        if type(out) in _WEAK_OF and is_weak(a) and is_weak(b):
            return out.item()
        return out
    if not (is_weak(a) and is_weak(b)):
        return out
    inner = out
    while True:
        t = inner._box  # a forward level's tangent (a reverse level's is a tape index)
        if type(t) in _WEAK_OF:
            inner._box = weak(t)
        elif type(t) is Tracer and isinstance(b := bottom(t), Opaque):  # a tangent traced
            b.make_weak()  # by fl.compile's IR trace: its abstract value
        v = inner._val
        if type(v) is not Tracer:
            break
        inner = v
    if type(v) in _WEAK_OF:
        inner._val = weak(v)
    elif isinstance(v, Opaque):  # under fl.compile: the program's variable is weak
        v.make_weak()
    return out


def weak_handle(t):
    """A new handle on the tracer ``t`` whose value (and forward-mode tangent) is weak: the
    gradient of a traced Python float taken under an outer transform, a Python float when
    taken plainly. (Under ``fl.compile`` the IR trace records the conversion to a Python
    number: ``float(g)``, as the gradient taken plainly is.)"""
    v = t._val
    if type(v) is Tracer:
        v = weak_handle(v)
    elif type(v) in _WEAK_OF:
        v = weak(v)
    elif isinstance(v, Opaque):  # fl.compile's IR tracer
        return t._trace.weaken(t)
    box = t._box
    if type(box) in _WEAK_OF:
        box = weak(box)
    return t._trace.new(v, box, owned=False)


# --- the Tracer ----------------------------------------------------------------------------------

class Tracer:
    """A traced array: a mutable handle on a value recorded by a trace.

    ``_val`` is the primal (a raw array, or a Tracer of a lower level); ``_box`` is the tape
    index (reverse mode) or the tangent (forward mode, None for zero). A write (``t[i] = v``,
    ``t += y``) records a functional update and rebinds the handle, so every name bound to it
    sees the write (``ad/mutation.py``). ``_owned`` says the raw buffer may be written in
    place; ``_view``/``_views`` link views to their base.

    >>> import numpy as np, fluxml as fl
    >>> fl.gradient(lambda x: print(type(x).__name__, x.shape) or np.sum(x * x), np.ones(2))
    Tracer (2,)
    (array([2., 2.]),)
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
        return bottom(self).size

    def __len__(self):
        shape = self._val.shape
        if not shape:
            raise TypeError("len() of unsized object (a 0-d traced array)")
        return shape[0]

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __repr__(self):
        kind = type(self._trace).__name__.removesuffix("Trace")  # Reverse, Forward ...
        value = raw(self)  # (fl.compile's tracer is its own raw value: show what it holds)
        return f"Tracer<{kind}:{self._trace.level}>({(self._val if value is self else value)!r})"

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
            value = raw(self)
            if type(value) is Tracer:  # fl.compile: the values exist only at run time
                raise value._trace.concrete(_CONVERTED_INDEX)
            return np.array(value, dtype=dtype)
        if type(raw(self)) is Tracer:  # fl.compile: a conversion, not a cut gradient
            raise raw(self)._trace.concrete(
                _CONVERTED_INDEX if self.dtype.kind in "biu" else
                "converting a traced array to a NumPy array (np.asarray, np.array of traced "
                "values: build with np.stack([a, b]) or np.array([a, b], like=a))")
        raise refusal(errors.converted(errors.calling_library()), self)


_CONVERTED_INDEX = ("converting a traced integer array to a NumPy array (indexing a plain NumPy "
                    "array `a` with it? index a traced copy: np.array(a, like=index)[index])")

register_leaf(Tracer)  # a leaf of every tree (fluxml.tree), as arrays are

