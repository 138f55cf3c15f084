"""Tracing a Python function into a :class:`~fluxml.compiler.ir.Program`.

The IR trace is a third kind of trace beside reverse and forward mode, and always the lowest
level: every array argument of the compiled function becomes a :class:`Tracer` of it, whose
value is an :class:`Abstract` array (a shape and a dtype). Primitives reach ``process``
through the engine's ``bind``, exactly as in eager code, so every derivative rule written once
serves compiled code too: a ``fl.gradient`` inside the function records its backward pass
here, one equation per adjoint.

The trace runs each operation on example values (the first call's arguments) to learn the
shapes of its results, but nothing outside the IR may see those values: an ``Abstract`` has no
``__array__``, refuses ``bool``/``float``/``int``, and records any NumPy function called on it
(the engine runs comparisons and ``argmax`` untraced on raw values: here they become
equations too). So a value the program depends on is either recorded or refused, never baked
in by accident.
"""

from __future__ import annotations

import copy
import sys
import threading
from threading import get_ident

import numpy as np

from fluxml._kernel_modules import kernel_module
from fluxml.ad.core import (
    COMPILING,
    COMPILING_LOCK,
    Opaque,
    Primitive,
    Trace,
    Tracer,
    compiling,
    remove_last,
)
from fluxml.ad.mutation import link_view
from fluxml.ad.weak import WEAK, as_weak, python_number
from fluxml.compiler.ir import CONTROL, PYTHON_DTYPES, PYTHON_INT_OPERATORS, Const, Eqn, Slot, Var


def owner_id(x) -> int:
    """The id of the array that owns ``x``'s memory (NumPy points every view at it; JAX
    arrays are never views)."""
    base = getattr(x, "base", None)
    return id(x if base is None else base)


class CompileError(TypeError):
    """The function cannot be compiled as written; the message says where and what to do.

    >>> import numpy as np, fluxml as fl
    >>> f = fl.compile(lambda x: x if x.sum() > 0 else -x)  # a Python `if` on an array
    >>> try:
    ...     f(np.ones(2))
    ... except fl.CompileError as err:
    ...     print(str(err).splitlines()[-1])
      - or leave this function uncompiled.
    """


# NumPy functions whose result's shape depends on the values: a compiled program has fixed
# shapes, so these are refused (JAX refuses them too, outside of a size= argument).
_VALUE_SHAPED = {np.nonzero, np.flatnonzero, np.argwhere, np.unique, np.unique_values,
                 np.unique_counts, np.unique_inverse, np.unique_all, np.union1d, np.intersect1d,
                 np.setdiff1d, np.setxor1d, np.extract, np.compress, np.trim_zeros}


# Functions that read only shapes, dtypes and memory layout (which every run shares with the
# trace): answered from the example values, not recorded.
_METADATA = {np.iscomplexobj, np.isrealobj, np.shape, np.ndim, np.size, np.result_type,
             np.may_share_memory, np.shares_memory, np.can_cast, np.broadcast_shapes,
             np.isfortran}


_LAYOUT = {"flags", "strides", "itemsize", "nbytes"}


def user_line() -> str:
    """``file, line N`` of the innermost frame outside fluxml and NumPy (the user's code)."""
    frame = sys._getframe(1)
    while frame is not None:
        top = frame.f_globals.get("__name__", "").partition(".")[0]
        if top not in ("fluxml", "numpy"):
            return f"{frame.f_code.co_filename}, line {frame.f_lineno}"
        frame = frame.f_back
    return "an unknown line"


def concrete_error(what: str) -> CompileError:
    return CompileError(
        f"fl.compile: {what} needs a concrete value, but inside a compiled function this "
        f"value depends on the array arguments, which are traced once and then replaced by "
        f"new values on every call ({user_line()}).\n"
        "Possible fixes:\n"
        "  - keep the value an array and select with np.where instead of a Python `if`;\n"
        "  - branch or loop with fl.cond, fl.while_loop or fl.scan, which compile;\n"
        "  - pass the value as a Python number or bool (static: a new value traces again);\n"
        "  - or leave this function uncompiled.")


class Abstract(Opaque):
    """What a traced array is inside a compiled function: a shape and a dtype (and the memory
    layout of the first call's example). NumPy functions that read only those are answered;
    anything asking for its values is refused. (The engine never computes on an Abstract:
    ``raw`` stops at the IR tracer holding it, and NumPy calls on that tracer are recorded.)"""

    __slots__ = ("shape", "dtype", "example", "var", "trace")
    __array_priority__ = 2000

    def __init__(self, trace, var, example):
        self.trace = trace
        self.var = var
        self.example = example
        self.shape = var.shape
        self.dtype = var.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def __len__(self):
        if not self.shape:
            raise TypeError("len() of unsized object (a 0-d traced array)")
        return self.shape[0]

    def __repr__(self):
        return f"Abstract({self.var!r}:{self.var.type})"

    @property
    def weak(self) -> bool:
        """Does it stand for a Python number (``Var.weak``)? Its example is then one."""
        return self.var.weak

    def make_weak(self):
        """Mark it a Python number: Python arithmetic on traced Python numbers gave it
        (``core.weak_result``). Its variable is its equation's own, made just now."""
        if not self.var.weak and not self.var.shape and self.var.dtype.kind in "fic":
            self.var.weak = True
            self.example = as_weak(self.example.item())

    def __array_function__(self, func, types, args, kwargs):
        if func in _METADATA:
            _, example = self.trace._lift({"args": tuple(args), "kwargs": dict(kwargs)})
            return func(*example["args"], **example["kwargs"])
        raise concrete_error(f"np.{func.__name__} on the abstract value of a traced array")

    def __array__(self, dtype=None, copy=None):
        raise concrete_error("converting a traced array to a NumPy array")

    def __bool__(self):
        raise concrete_error("bool(x) (an `if`, `while`, `and`/`or` on a traced array)")

    def __float__(self):
        raise concrete_error("float(x)")

    def __int__(self):
        raise concrete_error("int(x)")

    def __index__(self):
        raise concrete_error("using a traced array as a Python index")

    def __complex__(self):
        raise concrete_error("complex(x)")

    def __iter__(self):
        raise concrete_error("iterating over a raw traced array")

    def __getattr__(self, name):
        if name.startswith("__"):  # NumPy probing for protocols (__array_struct__ ...)
            raise AttributeError(name)
        if name in _LAYOUT:  # fixed per trace: the signature includes each input's layout
            return getattr(self.example, name)
        raise concrete_error(f"x.{name}")

    __hash__ = object.__hash__


class IRTrace(Trace):
    """Records every primitive applied to its tracers as an equation of a program."""

    __slots__ = ("eqns", "count", "thread", "shadows", "nodes", "arguments", "hidden", "draws",
                 "replaying", "device")
    differentiates = False  # a compiled forward is a forward: train/test layers in test mode

    def __init__(self):
        super().__init__()
        self.eqns: list[Eqn] = []
        self.device = None  # (set by calls.trace for a GPU's arrays, traced on host copies)
        self.count = 0
        self.thread = get_ident()  # the thread whose random draws this trace records
        self.shadows: dict = {}  # id(generator) -> (generator, its copy that examples use)
        # ids of the containers of the compiled function's arguments as the trace passes them
        # (and of optimiser states made while it runs): an optimiser state fl.update steps
        # must be one of them (``nodes``); None where not known (a branch's trace)
        self.nodes: set | None = None
        # arrays a constant must not be (see _refuse_side_reads): id of the array owning the
        # memory of each argument array, and of each array the arguments hold inside a bound
        # method -> where it is
        self.hidden: dict = {}
        self.arguments: frozenset | None = None  # the arguments' alone (fl.adjust refuses)
        # the draws recorded, in order: ((rng, method, args, kwargs), example, var)
        self.draws: list = []
        # fl.checkpoint's recompute: the forward pass's draws, given again in order (None:
        # each draw is a new one)
        self.replaying: list | None = None

    # --- values ------------------------------------------------------------------------------

    def var(self, shape, dtype, name=None, weak=False) -> Var:
        self.count += 1
        return Var(self.count, shape, dtype, name, weak)

    def example_var(self, example, name=None) -> Var:
        """A new variable for the example value ``example``: weak for a Python number or
        the engine's weak value of one (``Var.weak``), as NumPy takes it."""
        t = type(example)
        if t in WEAK or t in PYTHON_DTYPES:
            return self.var((), PYTHON_DTYPES[type(example.item()) if t in WEAK else t], name,
                            weak=True)
        return self.var(np.shape(example), example.dtype, name)

    def tracer(self, example, var: Var, owned: bool) -> Tracer:
        return self.new(Abstract(self, var, example), var, owned)

    def input(self, example, name=None) -> Tracer:
        """A new input of the program: a caller's array (the first write copies it), or a
        number: a NumPy one as a 0-d array, a Python one weak (its example the engine's weak
        value of it, as a transform's primal: ``weak.WeakFloat``)."""
        if type(example) in PYTHON_DTYPES:
            example = as_weak(example)
        elif isinstance(example, np.generic) and type(example) not in WEAK:
            example = np.asarray(example)
        return self.tracer(example, self.example_var(example, name), owned=False)

    def weaken(self, t) -> Tracer:
        """``float(t)`` (``complex(t)``) of a traced 0-d value, recorded: the gradient with
        respect to a Python number, which the user gets as a Python number
        (``core.weak_handle``), weak in what the function computes with it next."""
        var = t._box
        kind = complex if var.dtype.kind == "c" else float
        out = self._record(_call, kind.__name__, [], {"func": kind, "args": (Slot(var),),
                                                      "kwargs": {}},
                           None, as_weak(kind(t._val.example)), owned=True, multiple=False)
        out._box.weak = True
        return out

    def python_int(self, ufunc, operands) -> Tracer:
        """A Python operator (``ufunc`` the one it means) on Python ints, one at least traced
        (a weak int variable): recorded as Python's arithmetic, ``v2 = 2 ** v1``, as eager
        code computes it (``ir.PYTHON_INT_OPERATORS``); its result a weak number."""
        func = PYTHON_INT_OPERATORS[ufunc]
        inputs, examples = zip(*(self._operand(a) for a in operands))
        ans = as_weak(func(*examples))  # (an int; a float for ``/`` or a negative power)
        out = self.example_var(ans)
        args = tuple(Slot(a) if type(a) is Var else a for a in inputs)
        self.eqns.append(Eqn(ufunc.__name__, _call, [],
                             {"func": func, "args": args, "kwargs": {}}, [out], None))
        return self.tracer(ans, out, owned=True)

    def constant(self, val):
        """A traced constant made inside the function (``np.zeros_like(tracer)``): the program
        makes a fresh copy on every run, since it may be written in place."""
        if type(val) is Tracer and val._trace is self:  # already made by a recorded call
            return val
        return self._record(_fresh, "copy", [_constant(val)], {}, None,
                            np.array(val, copy=True), owned=True, multiple=False)

    def concrete(self, what):
        """The error for a concrete value asked of a traced one, noted as the trace's refusal
        too: a function that catches it (``except Exception``) and goes on along another path
        than its eager one is refused when its trace ends (``calls.py``), instead of compiled
        into a program that computes something else."""
        if self.closed is not None:  # (a value of a finished trace, stored and used later)
            return CompileError(self.closed)
        return self._noted(concrete_error(what))

    def _noted(self, error: CompileError) -> CompileError:
        """``error``, noted as the trace's refusal (as ``concrete``'s): caught by the function,
        it is raised when the trace ends, instead of a program of the other path compiled."""
        if self.refused is None:
            self.refused = str(error).removeprefix("fl.compile: ")
        return error

    def logged(self) -> CompileError:
        """The error for a log message formatting a traced value as a number: logging
        reports it on stderr and goes on, and the text changes nothing the function
        computes, so unlike ``concrete`` it is not noted as the trace's refusal."""
        return CompileError(
            "fl.compile: a log message formats a traced value as a number (`%.3f`, `%d`), "
            "but inside a compiled function the value is not known while the function is "
            "traced (once, at its first call; the compiled program does not log). Write `%s` "
            "(the traced value's shape and dtype), or log the values the compiled function "
            "returns.")

    def draw(self, rng, method, args, kwargs):
        """``rng.<method>(*args, **kwargs)`` recorded: a fresh draw on every run. The trace's
        examples come from a copy of a NumPy generator, so that tracing does not advance the
        caller's: the first run draws what the eager function's first call would have."""
        call = (rng, method, args, kwargs)
        if self.replaying is not None:
            return self._replayed(call)
        example = getattr(self._shadow(rng), method)(*args, **kwargs)
        # fluxml's default generator is looked up on every run: fl.seed replaces it
        stored = DEFAULT_RNG if rng is _default_rng() else rng
        params = {"rng": stored, "method": method, "args": args, "kwargs": kwargs}
        if type(self) is not IRTrace or self.device is not None:  # a branch's or loop
            # body's (a SubTrace), or a GPU's program (traced on host copies: the draw, on
            # the host, is moved to the GPU; it met the GPU's arrays as a NumPy array)
            params["func"] = _Drawn(stored, method, self.device)
        out = self._record(_draw, f"rng.{method}", [], params, None, example, owned=True,
                           multiple=False)
        self.draws.append((call, out._val, out._box))
        return out

    def _replayed(self, call):
        """The next of the forward pass's draws (``replaying``), for ``fl.checkpoint``'s
        recompute: the program draws once, as eager code whose generator the recompute set
        back draws the same numbers (a new draw here was a second, other dropout mask in the
        backward pass: a wrong gradient)."""
        if not self.replaying or not _same_draw(self.replaying[0][0], call):
            raise CompileError(
                f"fl.compile: fl.checkpoint's recompute drew rng.{call[1]}{call[2]!r}, which "
                "its forward pass did not draw at this point; the checkpointed function must "
                "draw the same random numbers each time it runs from the same arguments")
        entry = self.replaying.pop(0)
        self.draws.append(entry)  # (a checkpoint inside the recompute replays it in turn)
        return self.new(entry[1], entry[2], owned=False)

    def _shadow(self, rng):
        if not isinstance(rng, (np.random.Generator, np.random.RandomState)):
            return rng
        entry = self.shadows.get(id(rng))
        if entry is None:  # (the generator kept beside its copy: its id stays its own)
            entry = self.shadows[id(rng)] = (rng, copy.deepcopy(rng))
        return entry[1]

    # --- recording ---------------------------------------------------------------------------

    def process(self, prim, args, params):
        if self.closed is not None:
            raise CompileError(self.closed)
        inputs, examples = [], []
        for a in args:
            inp, ex = self._operand(a)
            inputs.append(inp)
            examples.append(ex)
        if params:
            if params.get("inplace") is True and args and type(inputs[0]) is Const:
                # a write into a plain array, made where a transform owns it (a tangent
                # built eagerly), with a traced value: that array is a constant of the
                # program now (read-only, shared by every call), so the write copies it
                params = {**params, "inplace": False}
            params, example_params = self._lift(params)
        else:
            example_params = params
        if prim.name in CONTROL:  # (see ir.CONTROL)
            examples = [python_number(e) for e in examples]
            # the example run of its sub-programs draws from the trace's copies of the
            # generators, as the trace's own draws do: tracing leaves the caller's alone
            before, _EXAMPLES.trace = getattr(_EXAMPLES, "trace", None), self
            try:
                ans = prim.impl(*examples, **example_params)
            finally:
                _EXAMPLES.trace = before
        else:
            ans = prim.impl(*examples, **example_params)
        out = self._record(prim.impl, prim.name, inputs, params, prim, ans,
                           owned=not prim.view, multiple=prim.multiple_results)
        if prim.view:  # a view handle: writes through it reach its base, as in eager code
            link_view(out, args[0], prim, params)
        return out

    def call(self, func, name, args, kwargs):
        """A NumPy function the engine (or user code) applied to raw traced values."""
        if self.closed is not None:
            raise CompileError(self.closed)
        if func in _METADATA:  # shapes, dtypes, memory layout: the same on every run
            _, example = self._lift({"args": tuple(args), "kwargs": dict(kwargs)})
            return func(*example["args"], **example["kwargs"])
        if func in _VALUE_SHAPED or (func is np.where and len(args) == 1):
            raise self._noted(CompileError(
                f"fl.compile: np.{name} returns an array whose shape depends on the values "
                f"({user_line()}); a compiled program has fixed shapes. Use a mask with "
                "np.where, or leave this function uncompiled."))
        template, example_args = self._lift({"args": tuple(args), "kwargs": dict(kwargs)})
        ans = func(*example_args["args"], **example_args["kwargs"])
        if isinstance(ans, tuple) and all(isinstance(a, np.ndarray) for a in ans):
            return self._record(_call, name, [], {"func": func, **template}, None, ans,
                                owned=True, multiple=True)
        if not isinstance(ans, (np.ndarray, np.generic)):
            raise self._noted(CompileError(
                f"fl.compile: np.{name} on a traced array returned a Python "
                f"{type(ans).__name__}, a value the program depends on that cannot stay "
                f"traced ({user_line()}); keep it an array, or leave this function "
                "uncompiled."))
        return self._record(_call, name, [], {"func": func, **template}, None, ans,
                            owned=True, multiple=False)

    def _operand(self, a):
        t = type(a)
        if t is Tracer:
            if a._trace is not self:
                raise CompileError("internal error: a tracer of another level reached the IR")
            return a._box, a._val.example
        if t is Abstract:
            return a.var, a.example
        if t is np.ndarray:
            self._refuse_side_reads(a)
            c = _constant(a)
            return c, c.value
        if (t is list or t is tuple) and any(type(x) in (Tracer, Abstract) for x in a):
            return self._lift(a)  # a list of arrays (np.concatenate): Slots in the inputs
        if t in WEAK:  # a traced Python number of a transform above: one, weak, for NumPy
            a = a.item()
        elif self.device and kernel_module(t) is not None:  # a GPU's array the function
            c = self._device_constant(a)  # closed over
            return c, c.value
        elif self.hidden and hasattr(a, "shape"):  # another library's array (a jax.Array)
            self._refuse_side_reads(a)
        return a, a

    def _lift(self, x):
        """``(template, example)``: ``x`` with each traced value replaced by a Slot of its
        variable (the template), and by its example value (to compute the trace's result)."""
        t = type(x)
        if t is Tracer:
            if x._trace is not self:
                raise CompileError("internal error: a tracer of another level in a parameter")
            return Slot(x._box), x._val.example
        if t is Abstract:
            return Slot(x.var), x.example
        if t is tuple or t is list:
            pairs = [self._lift(a) for a in x]
            return t(p[0] for p in pairs), t(p[1] for p in pairs)
        if t is dict:
            pairs = {k: self._lift(v) for k, v in x.items()}
            return ({k: p[0] for k, p in pairs.items()}, {k: p[1] for k, p in pairs.items()})
        if t is slice and any(type(a) in (Tracer, Abstract) for a in (x.start, x.stop, x.step)):
            raise self.concrete("a slice bound")
        if t is np.ndarray:
            if x.dtype == object:
                raise self._noted(CompileError(
                    "fl.compile: an object array in a parameter is not supported"))
            self._refuse_side_reads(x)
            x = _constant(x).value
        elif self.device and kernel_module(t) is not None:  # (as in _operand)
            x = self._device_constant(x).value
        elif t in WEAK:  # (as in _operand)
            x = x.item()
        return x, x

    def _device_constant(self, a) -> Const:
        """A GPU's array met while tracing its host copies: a constant of the program,
        traced on its host copy (the cupy back end moves constants back: cupy_backend.lower)."""
        self._refuse_side_reads(a)
        return _constant(a.get())

    def _refuse_side_reads(self, a):
        """An array about to become a constant of the program must not be the memory of an
        argument, nor an array the arguments hold inside a bound method: the function reached
        it through another reference (a bound method ``act = layer.__call__`` held by the
        model, a closure, a global), and the program would keep its value of trace time
        while eager code reads the array as it is at each call."""
        if not self.hidden:
            return
        where = next((w for x, w in self.hidden.get(owner_id(a), ())
                      if x is a or np.may_share_memory(x, a)), None)
        if where is not None:
            raise self._noted(CompileError(
                f"fl.compile: the function reads {where} through another reference than the "
                "arguments it was given (a bound method or a closure held by the model, a "
                "global); the compiled program would keep its value of trace time. Reach it "
                "through the arguments: hold the layer itself, not its bound method, and call "
                "it; or pass the array as an argument."))

    def _record(self, fn, name, inputs, params, prim, ans, owned, multiple):
        if multiple:
            outs = [self.var(np.shape(a), _dtype(a)) for a in ans]
            self.eqns.append(Eqn(name, fn, inputs, params, outs, prim, multiple=True))
            return tuple(self.tracer(a, v, owned) for a, v in zip(ans, outs))
        out = self.var(np.shape(ans), _dtype(ans))
        self.eqns.append(Eqn(name, fn, inputs, params, [out], prim))
        return self.tracer(ans, out, owned)


def _constant(a):
    """A constant of the program: a read-only copy of the array as it is now. Arrays the
    function closes over are captured when it is traced (as JAX does), and a later write into
    the original (even later in the same call) must not reach the program."""
    if isinstance(a, np.ndarray):
        a = a.copy()
        a.flags.writeable = False
    return Const(a)


def _dtype(a):
    d = getattr(a, "dtype", None)
    return d if d is not None else np.result_type(a)


def _fresh(c):
    """A new buffer holding the constant ``c`` (a NumPy array, a GPU's on the cupy back end,
    or a number: a 0-d array)."""
    return np.array(c) if isinstance(c, (int, float, complex, np.generic)) else c.copy()


_fresh.impure = True  # a new buffer on every run: never shared, folded or dropped if written


def _call(*, func, args, kwargs):
    return func(*args, **kwargs)


# --- fl.stop_gradient under compile ------------------------------------------------------------

def _stop_gradient(x):
    """A copy of ``x`` (as ``np.copy``: another library's array by its own ``copy``)."""
    if isinstance(x, (np.ndarray, np.generic)) or not hasattr(x, "copy"):
        return np.array(x, copy=True)
    return x.copy()


def _no_derivative(pos, t, ans, args, params):
    return None  # (the vjp and the jvp alike: no cotangent, no tangent)


# ``fl.stop_gradient`` of a traced value inside ``fl.compile``: a copy recorded as its own
# primitive, with no derivative. At the top of a compiled function the transforms never see it
# (``stop_gradient`` hands its raw value down); but a branch or loop body is differentiated by
# replaying its program under ``fl.pullback`` / ``fl.jvp`` (``control_rules.py``), and a plain
# ``copy`` there differentiates as the identity: this one keeps the derivative cut.
STOP_GRADIENT = Primitive("stop_gradient", _stop_gradient, keeps_inputs=False,
                          keeps_output=False)
STOP_GRADIENT.vjp = _no_derivative
STOP_GRADIENT.jvp = _no_derivative


# --- the trace in progress (random draws must be recorded, not baked in) ---------------------

class active:
    """``with active(trace):`` marks ``trace`` as the IR trace of the running compile (random
    draws made through ``fluxml.ad.core.draw`` are recorded in it)."""

    def __init__(self, trace):
        self.trace = trace

    def __enter__(self):
        COMPILING.append(self.trace)

    def __exit__(self, *exc):
        # by identity, not the last entry: another thread's compile may have started since;
        # under the lock, so that no other thread's removal shifts the entries in between
        with COMPILING_LOCK:
            remove_last(COMPILING, self.trace)


def current() -> IRTrace | None:
    """This thread's IR trace of the compile in progress, or None (eager code)."""
    return compiling() if COMPILING else None


class _DefaultRng:
    """Stands for fluxml's default generator in a recorded draw: the generator of the run's
    time, not the trace's (``fl.seed`` makes a new one; a compiled dropout kept drawing from
    the one before, so seeding no longer repeated its masks)."""

    def __repr__(self):
        return "fl.init.default_rng()"


DEFAULT_RNG = _DefaultRng()


def _same_draw(a, b) -> bool:
    """Are two draws ``(rng, method, args, kwargs)`` the same call?"""
    if a[0] is not b[0] or a[1] != b[1]:
        return False
    try:
        return bool(a[2] == b[2] and a[3] == b[3])
    except (TypeError, ValueError):  # (an array among the arguments)
        return a[2] is b[2] and a[3] is b[3]


def _default_rng():
    # lazy: fluxml.init is loaded by now (import fluxml); named here to keep this module light
    from fluxml.init import default_rng

    return default_rng()


# the IR trace whose control-flow equation computes its example results now, on this thread
# (its sub-programs' draws then come from the trace's copies of the generators: ``_shadow``)
_EXAMPLES = threading.local()


def _draw(rng, method, args, kwargs):
    if rng is DEFAULT_RNG:
        rng = _default_rng()
    tracing = getattr(_EXAMPLES, "trace", None)
    if tracing is not None:
        rng = tracing._shadow(rng)
    return getattr(rng, method)(*args, **kwargs)


_draw.impure = True  # a new draw on every run


class _Drawn:
    """A draw inside a branch or loop body, as the ``func`` of its equation's parameters:
    generated code calls it on the draw's arguments (the NumPy back end: the draw); the xla
    back end, which draws a program's random numbers before XLA runs it, finds its kernel by
    its name (``xla_kernels.draw_in_control_flow``), which refuses it by name."""

    __name__ = "in_control_flow"
    impure = True  # a new draw on every run

    def __init__(self, rng, method, device=None):
        self.rng, self.method, self.device = rng, method, device

    def __call__(self, *args, **kwargs):
        out = _draw(self.rng, self.method, args, kwargs)
        return out if self.device is None else self.device.asarray(out)

    def __repr__(self):
        return f"{self.rng!r}.{self.method}"
