"""Sub-programs: the branches and loop bodies of ``fl.cond``, ``fl.while_loop`` and ``fl.scan``
traced into programs of their own, run by generated code, and replayed for derivatives.

A branch is traced on a fresh :class:`SubTrace` (an IR trace of a higher level than every value
alive), with one input per array leaf of its operands. Values it closes over (the compiled
function's arguments, a model's weights traced by an outer ``fl.gradient``) are *captured*: each
becomes one more input of the sub-program, and the control-flow equation takes it as an operand,
so every transform above sees it flow into the equation (closure conversion, as JAX does).

Derivatives of a control-flow equation are control flow over the derivatives of its
sub-programs: :func:`evaluate` replays a program through the engine's ``bind``, so that
``fl.pullback`` / ``fl.jvp`` of the replay, traced on another SubTrace, gives the program of
the branch's vjp / jvp.
"""

from __future__ import annotations

import numpy as np

from fluxml._kernel_modules import on_kernel_library
from fluxml.ad import mutation
from fluxml.ad.core import DifferentiationError, Tracer, bind, is_weak, raw, untraced, weak_handle
from fluxml.ad.weak import WEAK
from fluxml.compiler import numpy_backend, passes
from fluxml.compiler.ir import INFIX, PREFIX, Const, Program, Slot, Var
from fluxml.compiler.trace import (
    Abstract,
    CompileError,
    IRTrace,
    _call,
    _draw,
    _fresh,
    active,
    current,
)
from fluxml.tree import flatten, unflatten

LEAKED = ("fl.cond / fl.while_loop / fl.scan: a value traced inside a branch or loop body was "
          "used after it returned (kept in a global, a closure or an attribute). Return it "
          "from the function instead.")


def example(x):
    """The concrete value a traced operand has in this trace (its example), or the value."""
    r = raw(x)
    if type(r) is Tracer:  # under compile: the IR tracer at the bottom
        r = r._val
    if type(r) is Abstract:
        return r.example
    if type(r) in WEAK or type(r) in (int, float, complex):
        return r  # (an example already: a traced Python number's, weak as it was; an
        # operand's Python number is a 0-d array by now, as_operand)
    if isinstance(r, (bool, int, float, complex, np.generic)):
        return np.asarray(r)
    return r


def leaf_type(x) -> tuple:
    """``(shape, dtype)`` of an array leaf (Python numbers as NumPy makes them arrays)."""
    if isinstance(x, (bool, int, float, complex)):
        x = np.asarray(x)
    return tuple(x.shape), np.dtype(x.dtype)


def show_type(t) -> str:
    shape, dtype = t
    return f"{dtype.name}{list(shape)}"


def is_float(x) -> bool:
    return np.dtype(x.dtype).kind in "fc"


def as_operand(x):
    """A leaf as a control-flow operand: numbers become 0-d arrays, a raw traced value the
    engine handed out becomes a handle of its trace. A traced Python number (a field listed
    in ``hyperparameters`` under fl.compile, a float fl.gradient traces) becomes a NumPy
    number too, strong in NumPy's promotion as the 0-d array of the plain number is."""
    if type(x) is Abstract:
        x = x.trace.tracer(x.example, x.var, owned=False)
    if isinstance(x, (bool, int, float, complex)):
        return np.asarray(x)
    if type(x) is Tracer and is_weak(x):
        return np.positive(x)  # (a ufunc's result: strong)
    return x


def as_capture(x):
    """A value a branch or body closed over, as the control-flow equation's operand: a raw
    traced value becomes a handle of its trace; a traced Python number stays weak, as the
    function saw it."""
    if type(x) is Abstract:
        return x.trace.tracer(x.example, x.var, owned=False)
    return x


class SubTrace(IRTrace):
    """An IR trace for one branch or body: values of other levels it meets are captured."""

    __slots__ = ("captured", "custom", "check_only", "outer_writes", "takes_outer")

    def __init__(self, check_only=False):
        super().__init__()
        self.captured: dict = {}  # id -> (value, var, example, (val, box) at capture)
        self.custom: list[str] = []  # custom_vjp / custom_jvp functions run without rules
        self.check_only = check_only  # traced only to check its outputs (an eager fl.cond)
        self.outer_writes = 0  # writes into handles of outer levels (ad/mutation.py)
        # A branch traced only to check it (eager fl.cond's other branch) takes every
        # operation on traced values (ad/core.taker): none may reach an outer transform.
        # A compiled one leaves those on outer values only to the code around it, which
        # runs them once, not at each step of a loop
        self.takes_outer = check_only

    def draw(self, rng, method, args, kwargs):
        if not self.check_only:
            return super().draw(rng, method, args, kwargs)
        # a branch eager code does not take must not advance the caller's generator: the
        # example comes from a generator of its own
        own = np.random.default_rng(0) if isinstance(rng, np.random.Generator) \
            else np.random.RandomState(0)
        return super().draw(own, method, args, kwargs)

    def note_custom_rule(self, what: str):
        self.custom.append(what)

    def _foreign(self, a) -> bool:
        t = type(a)
        return (t is Tracer and a._trace is not self) or (t is Abstract and a.trace is not self)

    def _capture(self, a):
        entry = self.captured.get(id(a))
        if entry is None:
            ex = example(a)
            var = self.example_var(ex, "c")  # (weak for a traced Python number)
            seen = (a._val, a._box) if type(a) is Tracer else None
            entry = self.captured[id(a)] = (a, var, ex, seen)
        return entry[1], entry[2]

    def _operand(self, a):
        if self._foreign(a):
            return self._capture(a)
        return super()._operand(a)

    def _lift(self, x):
        if self._foreign(x):
            var, ex = self._capture(x)
            return Slot(var), ex
        return super()._lift(x)


class Traced:
    """A function traced on a SubTrace: its trace, input vars, outputs and output structure."""

    __slots__ = ("trace", "inputs", "outputs", "out_spec", "what", "examples")

    def __init__(self, trace, inputs, outputs, out_spec, what, examples=()):
        self.trace, self.inputs, self.outputs, self.out_spec, self.what = (
            trace, inputs, outputs, out_spec, what)
        self.examples = examples  # (the outputs' values on the example inputs)

    @property
    def captured(self) -> list:
        return [e[0] for e in self.trace.captured.values()]

    def types(self) -> list:
        return [leaf_type(o.value) if type(o) is Const else (o.shape, o.dtype)
                for o in self.outputs]

    def program(self, captures) -> Program:
        """The program with inputs: its own, then one per value in ``captures`` (a var of
        its own where it captured that value, an unused one where another branch did)."""
        mine = {id(e[0]): e[1] for e in self.trace.captured.values()}
        extra = []
        for c in captures:
            var = mine.get(id(c))
            if var is None:
                var = self.trace.example_var(example(c), "c")
            extra.append(var)
        return Program(self.inputs + extra, self.trace.eqns, self.outputs, [])


def trace_function(fn, leaves, spec, what: str, star: bool = True,
                   check_only: bool = False) -> Traced:
    """Trace ``fn(*unflatten(spec, inputs))`` (``fn(unflatten(spec, inputs))`` unless
    ``star``; ``fn(*inputs)`` when ``spec`` is None) with one input per leaf (its example
    gives the shapes); ``what`` names the function in errors."""
    tr = SubTrace(check_only)
    outer = current()
    tr.device = getattr(outer, "device", None)  # (a GPU's arrays, traced on host copies)
    inputs = [tr.input(example(x), f"a{k}") for k, x in enumerate(leaves)]
    in_vars = [t._box for t in inputs]
    watching = mutation.outer_write_watchers.stack
    with active(tr), np.errstate(all="ignore"):
        watching.append(tr)
        try:
            if spec is None:
                out = fn(*inputs)
            else:
                out = fn(*unflatten(spec, inputs)) if star else fn(unflatten(spec, inputs))
        except DifferentiationError as e:  # a write of its values into the code around it
            if tr.outer_writes:
                raise _outer_write(what, check_only) from e
            raise
        finally:
            watching.pop()
            tr.closed = LEAKED
    if tr.refused is not None and outer is not None and not check_only \
            and outer.refused is None:
        # a concrete value (float(x)) the function caught, going on along another path than
        # its eager one: refused when the enclosing compile's trace ends, as at the top level
        # (an eager fl.cond's branch traced only to check its types computes nothing)
        outer.refused = f"{what}: {tr.refused}"
    if tr.outer_writes:
        raise _outer_write(what, check_only)
    for t, v in zip(inputs, in_vars):
        # (an eager fl.cond's other branch, traced only to check its types: a write into its
        # arguments is the caller's affair there, as when the branch is taken and runs)
        if t._box is not v and not check_only:
            raise CompileError(
                f"{what} wrote into one of its arguments; inside fl.compile a branch or loop "
                "body must return new values instead (`y = x.copy(); y[i] = v; return y`).")
    for value, _, _, seen in tr.captured.values():
        if seen is not None and (value._val, value._box) != seen:
            raise CompileError(
                f"{what} wrote into an array it closed over; pass the array as an operand "
                "(or carry) and return the new value instead.")
    out_leaves, out_spec = flatten(out)
    outputs = [_output(tr, o, what) for o in out_leaves]
    return Traced(tr, in_vars, outputs, out_spec, what, [example(o) for o in out_leaves])


def _outer_write(what, check_only=False) -> CompileError:
    if check_only:  # an eager fl.cond's branch not taken, traced to check it
        return CompileError(
            f"{what} wrote into a traced array of the code around it (a field of a model it "
            "closes over, `self.count += 1`): fl.cond traces the branch it does not take, to "
            "check that both agree as fl.compile traces both, and a traced branch cannot "
            "write outside itself. Return the new value from both branches instead.")
    return CompileError(
        f"{what} wrote into an array of the code around it (a field of a model it closes "
        "over, `self.count += 1`): it is traced once, so the write would happen once, not "
        "at each run. Pass the array as an operand (or carry) and return its new value.")


def _output(tr, x, what):
    if type(x) is Tracer and x._trace is tr:
        return x._box
    if type(x) is Abstract and x.trace is tr:
        return x.var
    if type(x) in (Tracer, Abstract):
        return tr._capture(x)[0]  # returned a value it closed over: an input passed through
    if isinstance(x, (np.ndarray, np.generic, bool, int, float, complex)):
        return Const(np.asarray(x))
    raise CompileError(f"{what} returned a {type(x).__name__}; branches and loop bodies "
                       "return trees of arrays and numbers")


# --- sub-programs as callables of the generated code -------------------------------------------

class Branch:
    """A sub-program and the generated function that runs it. Equations hold it as a
    parameter; generated code names it after the user's function (``branches=(pos, neg)``)."""

    def __init__(self, program: Program, name: str, custom=()):
        self.program = program  # as traced: replayed for derivatives
        self.__name__ = name
        self.custom = list(custom)  # user rules the replay would lose (see replayable)
        self.types = [leaf_type(o.value) if type(o) is Const else (o.shape, o.dtype)
                      for o in program.outputs]
        self.consts = [k for k, o in enumerate(program.outputs) if type(o) is Const]
        names = [f"a{k}" for k in range(len(program.inputs))]
        optimised = passes.optimise(program)
        self.source, self.run = numpy_backend.lower(optimised, names, name)
        # traced for a GPU's arrays (the cupy back end), on host copies: the trace runs it on
        # those, the compiled program on the GPU's, with its constants there
        device = getattr(current(), "device", None)
        self.on_device = None if device is None else \
            numpy_backend.lower(optimised, names, name, device)[1]

    def __call__(self, *args):
        run = self.run
        if self.on_device is not None and any(map(on_kernel_library, args)):
            run = self.on_device
        return fresh(self, run(*args), args)

    def replayable(self, what: str):
        """Raise unless the program can be differentiated by replaying it: a custom_vjp or
        custom_jvp it calls would be differentiated as its function, not by its rule."""
        if self.custom:
            raise DifferentiationError(
                f"fl.compile: the {what} of {self.__name__} is not supported: it calls "
                f"{self.custom[0]}, whose rule fl.compile cannot keep inside fl.cond, "
                "fl.while_loop or fl.scan. Call it outside the control flow, or leave this "
                "function uncompiled.")

    def __repr__(self):
        return self.__name__


def fresh(branch, outs, args) -> tuple:
    """``outs`` with any that may share memory with an input (or is a constant of the
    program) copied: the results of a control-flow equation are its own buffers, so later
    in-place writes into them (or into its inputs) cannot reach the other."""
    outs = list(outs)
    arrays = [a for a in args if isinstance(a, np.ndarray)]
    for k, o in enumerate(outs):
        if k in branch.consts or any(np.may_share_memory(o, a) for a in arrays):
            outs[k] = o.copy()
    return tuple(outs)


def function_name(fn, default: str) -> str:
    name = getattr(fn, "__name__", "")
    return name if name.isidentifier() else default


def branch_of(fn, leaves, name: str, what: str) -> Branch:
    """The Branch of ``fn(*leaves)`` -> tuple of arrays, a function of the leaves only (the
    derivative programs: they close over nothing)."""
    traced = trace_function(fn, leaves, None, what)
    if traced.trace.captured:
        raise CompileError(f"internal error: {what} closed over a traced value")
    return Branch(traced.program([]), name)


# --- replaying a program through the engine ----------------------------------------------------

def evaluate(program: Program, args) -> list:
    """Run ``program`` on ``args`` through ``bind``, so that the transforms active on the
    arguments record (differentiate) it, as they would the Python that was traced."""
    env = {v.id: a for v, a in zip(program.inputs, args)}
    run_eqns(program.eqns, env)
    return [_read(env, o) for o in program.outputs]


class Split:
    """``program`` split by what some of its inputs determine (partial evaluation), for the
    vjp of a scan step: ``invariant`` equations read only the loop-invariant inputs (the
    consts: run once, outside the loop), ``known`` ones only those and the step's own inputs
    (the carry and x: its forward part, run in a forward scan), the ``rest`` something else
    (the cotangents: run in the reverse scan). ``residuals`` are the known values the rest
    reads (stacked by the forward scan), ``shared`` the invariant values the others read."""

    def __init__(self, program: Program, known: list[bool], invariant: list[bool]):
        self.program = program
        inv = {v.id for v, k in zip(program.inputs, invariant) if k}
        knowns = {v.id for v, k in zip(program.inputs, known) if k} | inv
        self.invariant, self.known, self.rest = [], [], []
        for eqn in program.eqns:
            reads = eqn.reads()
            if reads and all(v.id in inv for v in reads):
                self.invariant.append(eqn)
                inv.update(o.id for o in eqn.outs)
                knowns.update(o.id for o in eqn.outs)
            elif reads and all(v.id in knowns for v in reads):
                self.known.append(eqn)
                knowns.update(o.id for o in eqn.outs)
            else:  # reads a cotangent, or nothing (a constant: cheaper made again than kept)
                self.rest.append(eqn)
        self.shared = _handed(self.invariant, self.known + self.rest, program.outputs)
        self.residuals = _handed(self.known, self.rest, program.outputs)

    def invariants(self, args) -> list:
        """The shared values, from the inputs' values (None for those not invariant)."""
        env = {v.id: a for v, a in zip(self.program.inputs, args)}
        run_eqns(self.invariant, env)
        return [env[v.id] for v in self.shared]

    def forward(self, args, shared) -> list:
        """The residuals, from the inputs' values (None for those not known)."""
        env = {v.id: a for v, a in zip(self.program.inputs, args)}
        env.update((v.id, a) for v, a in zip(self.shared, shared))
        run_eqns(self.known, env)
        return [env[v.id] for v in self.residuals]

    def backward(self, args, shared, residuals) -> list:
        """The program's outputs from all its inputs, the shared values and the residuals."""
        env = {v.id: a for v, a in zip(self.program.inputs, args)}
        env.update((v.id, a) for v, a in zip(self.shared, shared))
        env.update((v.id, r) for v, r in zip(self.residuals, residuals))
        run_eqns(self.rest, env)
        return [_read(env, o) for o in self.program.outputs]


def _handed(made_by, read_by, outputs) -> list[Var]:
    """The variables that equations ``made_by`` make and ``read_by`` (or the outputs) read."""
    needed = {v.id for e in read_by for v in e.reads()}
    needed.update(v.id for v in outputs if type(v) is Var)
    return [o for e in made_by for o in e.outs if o.id in needed]


def run_eqns(eqns, env):
    """Apply ``eqns`` in order to the values in ``env`` (var id -> value) through ``bind``."""
    for eqn in eqns:
        if eqn.prim is not None:
            ins = [_read(env, a) for a in eqn.inputs]
            params = _read(env, eqn.params) if eqn.params else {}
            if params.get("inplace") is True:  # the replay's transforms may keep the buffer
                params = {**params, "inplace": False}
            out = bind(eqn.prim, ins, params)
        else:
            out = _replay_raw(eqn, env)
        if eqn.multiple:
            for o, v in zip(eqn.outs, out):
                env[o.id] = v
        else:
            env[eqn.outs[0].id] = out


def _read(env, x):
    t = type(x)
    if t is Var:
        return env[x.id]
    if t is Slot:
        return env[x.var.id]
    if t is Const:
        return x.value
    if t is tuple or t is list:
        return t(_read(env, a) for a in x)
    if t is dict:
        return {k: _read(env, v) for k, v in x.items()}
    return x


def _replay_raw(eqn, env):
    """An equation the engine ran untraced (a comparison, an index computation, a constant):
    run it on the raw values again, recorded by the IR trace they belong to."""
    fn = eqn.fn
    if fn is _fresh:
        return _fresh(_read(env, eqn.inputs[0]))
    if fn is _draw:
        raise CompileError(
            "fl.compile: the derivative of a branch or loop body that draws random numbers "
            "(dropout, an rng call) is not supported: the derivative recomputes the body and "
            "would draw different numbers. Draw them outside and pass them in as operands "
            "(fl.cond) or as xs (fl.scan).")
    if fn is not _call:
        raise CompileError(f"internal error: cannot replay the equation {eqn.name}")
    p = eqn.params
    func, args = p["func"], _read(env, p["args"])
    if func in INFIX or func in PREFIX:  # Python's arithmetic on traced Python ints
        return func(*args)  # (the Tracer's operator records it again)
    if eqn.outs[0].weak and func in (float, complex):  # the gradient of a Python number
        return weak_handle(args[0]) if type(args[0]) is Tracer else func(args[0])
    return untraced(func, args, _read(env, p["kwargs"]), eqn.name)
