"""The ``xla`` back end: the program as generated Python over ``jax.numpy`` and ``jax.lax``,
compiled once by ``jax.jit``, so that XLA runs it (on the CPU, or a GPU/TPU where JAX has
one). JAX is an optional extra (``pip install 'fluxml[xla]'``), imported on first use.

Each equation becomes one line, as in the NumPy back end::

    v3 = jnp.matmul(x, w)
    v4 = jnp.tanh(v3)
    v9 = conv(v8, c, stride=(1, 1), pads=((2, 2), (2, 2)), dilation=(1, 1), groups=1)

The lowering of each engine primitive is one entry of ``xla_lowerings.PRIMITIVES`` (a
``jnp``/``lax`` call written as a template, or a JAX kernel of ``xla_kernels.py``);
primitives computed by a NumPy ufunc or function of the same name map to ``jnp``'s by name,
as do the NumPy calls the engine runs untraced (comparisons, ``zeros_like``). ``fl.cond``,
``fl.while_loop`` and ``fl.scan`` become ``lax.cond``, ``lax.while_loop`` and ``lax.scan``
over their sub-programs, lowered the same way. An equation with no lowering is refused with
a :class:`~fluxml.compiler.trace.CompileError` that names it.

What differs from NumPy, and how the back end keeps NumPy's results:

- JAX arrays are immutable: the jitted function returns the values the program writes into
  its arguments as extra outputs. Into a NumPy argument the wrapper copies them back; a
  ``jax.Array`` argument (device-resident state, ``fl.xla``) is donated to XLA and the caller's
  tree is rebound to the new array (``fl.compile`` generates the assignments: see
  ``guards.make_rebinder``), so that a training loop on device state copies nothing.
- 64-bit types: every call runs under ``jax.enable_x64(True)`` (a context, nothing global
  changes), so float64 stays float64 and integers stay int64, as in NumPy.
- Type promotion: each line's result is checked once, at lowering, against the dtype and
  shape the trace recorded; where JAX's promotion differs from NumPy's the line gets an
  explicit ``.astype(...)``, and a shape that differs is an error, never a silent change.
- Weak numbers (``ir.Var.weak``: traced Python numbers, ``x32 * self.eta`` float32 as in
  NumPy): JAX takes them as strong float64 values, and where one meets arrays it is first
  cast to the dtype NumPy computes in (``_numpy_casts``: ``v1.astype(jnp.float32)``); a weak
  result comes back as a Python number. Python's arithmetic on traced Python ints
  (``2 ** n``, exact in NumPy's back end) runs in int64, and a result beyond int64 is a
  run-time error, not a wrapped-round value (``xla_kernels.python_int``).
- Random draws (``rng.random`` equations) cannot run inside ``jit``: the wrapper draws them
  from the same NumPy generator, in program order, and passes them in as arguments.
- Index arrays computed at run time are not bounds-checked by XLA: an out-of-range read
  gives NaN (never a clamped neighbour); an out-of-range write is dropped. Checks the engine
  records (integer labels in range) are computed by XLA and judged after the call, before
  anything is written into the arguments.

>>> import numpy as np, fluxml as fl
>>> f = fl.compile(lambda x: np.sum(np.tanh(x) ** 2), backend="xla")
>>> round(float(f(np.ones(3))), 6)
1.740077
>>> print(f.source)
def fn(x):
    v2 = jnp.tanh(x)
    v3 = jnp.power(v2, 2)
    v4 = jnp.sum(v3, axis=None, keepdims=False)
    return (v4,)
<BLANKLINE>
"""

from __future__ import annotations

import inspect
import math
import sys
import weakref

import numpy as np

from fluxml.compiler.codegen import Emitter, build, generate
from fluxml.compiler.ir import (
    INFIX,
    PREFIX,
    Eqn,
    Program,
    Slot,
    Var,
)
from fluxml.compiler.passes import dead_code, maxpool_scatters
from fluxml.compiler.trace import CompileError, _draw, _fresh

try:
    import jax
    import jax.numpy as jnp
    from jax import lax
except ModuleNotFoundError as err:  # the doctest runner skips this module then
    raise ModuleNotFoundError(
        "fl.compile(backend='xla') needs JAX, which is not installed: pip install "
        "'fluxml[xla]' (or pip install jax), or use backend='numpy'.", name="jax") from err

from fluxml.compiler import xla_kernels as kernels
from fluxml.compiler.xla_casts import _numpy_casts
from fluxml.compiler.xla_indexing import _gather, _index, _scatter_write
from fluxml.compiler.xla_lowerings import ARRAY_ARGUMENTS, FUNCTIONS, LAYOUT_KEYWORDS, PRIMITIVES
from fluxml.compiler.xla_runtime import _DONATE_LIMIT, _ahead, _Numbers, _Packing, _wrapper
from fluxml.compiler.xla_special import UNTRACED as UNTRACED_SPECIAL

BACKEND = "xla"



def lower(program: Program, names, fname, devices=(), donate: bool = True, numbers=()):
    """``(source, function)``: the program as a jitted JAX function and a wrapper around it.

    ``devices[k]`` says whether the caller passes input ``k`` as a ``jax.Array`` (state kept
    on XLA's device, see ``fl.xla``) rather than a NumPy array. NumPy inputs are packed and
    copied to XLA on each call, and the values the program writes into them are copied back
    into the caller's arrays, as NumPy code writes them. Device inputs go to XLA as they are;
    JAX arrays being immutable, the new value of each one the program writes comes back after
    the results (``function.rebinds`` lists those inputs, in order) for the caller to rebind,
    and its old buffer is donated to XLA (``donate``; not for a program with run-time checks,
    which may refuse a call after XLA has run it: the caller's arrays must survive that; and
    only arrays of ``xla_runtime._DONATE_LIMIT`` elements or more). ``numbers`` are the
    inputs that are traced numbers (``numbers.py``): the Python numbers and float64 ones
    cross as one float64 vector, kept on XLA's device while their values stay
    (``xla_runtime._Numbers``); others (a ``np.float32``) as 0-d arrays.
    Results are NumPy arrays, or ``jax.Array``s when any input is one."""
    program = _numpy_casts(dead_code(_rewrite_maxpool_grads(program)))
    n_in = len(program.inputs)
    devices = list(devices) or [False] * n_in
    draws = [e for e in program.eqns if e.fn is _draw]
    body = [e for e in program.eqns if e.fn is not _draw]
    kept = [k for k, v in enumerate(program.outputs) if type(v) is Var]
    host_writes = [(k, v) for k, v in program.writes if not devices[k]]
    device_writes = [(k, v) for k, v in program.writes if devices[k]]
    inner = Program(program.inputs + [e.outs[0] for e in draws], body,
                    [program.outputs[k] for k in kept] + [v for _, v in host_writes] +
                    [v for _, v in device_writes], [])
    arg_names = list(names) + [f"draw_{k + 1}" for k in range(len(draws))]
    lowering = _Lowering(inner)
    checks = kernels.run_time_checks()
    checks.clear()
    casts = _check(lowering, inner, arg_names, fname)
    checked = bool(checks)  # the abstract run met a run-time check
    checks.clear()
    lowering.casts = casts
    source, namespace = generate(inner, arg_names, fname, em=_emitter(), line=lowering.line)
    fn = build(source, namespace, fname)
    scalars = [k for k in numbers if not devices[k] and inner.inputs[k].shape == ()
               and (inner.inputs[k].dtype == np.float64 or inner.inputs[k].weak)]
    ints = {j for j, k in enumerate(scalars) if inner.inputs[k].dtype.kind == "i"}
    host_in = [k for k in range(n_in) if not devices[k] and k not in scalars] + \
        list(range(n_in, len(inner.inputs)))
    device_in = [k for k in range(n_in) if devices[k]]
    inward = _Packing([(inner.inputs[k].shape, inner.inputs[k].dtype) for k in host_in])
    outward = _Packing([(v.shape, v.dtype) for _, v in host_writes])
    n_out, n_host = len(kept), len(host_writes)
    n_packed = inward.count + bool(scalars)  # (the numbers' vector after the packed buffers)

    judges: list = []

    def packed(*args):  # what XLA runs: small NumPy arrays cross in one buffer per dtype
        met = kernels.run_time_checks()
        met.clear()
        values = [None] * len(inner.inputs)
        # The barrier keeps XLA from fusing the slices of the packed buffers into their
        # readers: XLA's CPU compiler (jaxlib 0.10.2) miscompiled such a program (a value
        # off by 1.56 on the compiled fuzzer's seed 3, program 18; the same function jitted on
        # unpacked arguments, or run without jit, was right).
        unpacked = inward.unpack(args[:inward.count])
        if scalars:  # (the numbers' own vector: one 0-d value each; a Python int's as one)
            unpacked += [args[inward.count][j].astype(jnp.int64) if j in ints else
                         args[inward.count][j] for j in range(len(scalars))]
        for k, value in zip(host_in + scalars,
                            lax.optimization_barrier(unpacked) if unpacked else ()):
            values[k] = value
        for k, value in zip(device_in, args[n_packed:]):  # (a weak-typed one made strong,
            values[k] = jnp.asarray(value, inner.inputs[k].dtype)  # as NumPy's would be)
        results = fn(*values)
        checks = list(met)
        met.clear()
        judges[:] = [judge for _, judge in checks]
        return (tuple(results[:n_out]) +
                tuple(outward.pack(results[n_out:n_out + n_host], jnp)) +
                tuple(results[n_out + n_host:]) + tuple(value for value, _ in checks))

    donated = () if checked or not donate else \
        tuple(n_packed + device_in.index(k) for k, v in device_writes
              if math.prod(v.shape) >= _DONATE_LIMIT)
    jitted = jax.jit(packed, donate_argnums=donated)
    run = _wrapper(jitted, program, kept, draws, inward, outward, judges, host_in, device_in,
                   [k for k, _ in host_writes], len(device_writes), checked,
                   _Numbers(scalars, device_in, [scalars[j] for j in ints])
                   if scalars else None)
    run.rebinds = [k for k, _ in device_writes]
    run.prepare = _ahead(jitted, inward.crossing(),
                         [(inner.inputs[k].shape, inner.inputs[k].dtype) for k in device_in],
                         len(scalars))
    return source, run


def _emitter() -> Emitter:
    em = Emitter("jnp", jnp)
    em.globals.update({"jax": jax, "lax": lax, "np": np})
    em.used.update({"jax", "lax", "np"})
    return em


# --- checking each line's type once, abstractly ---------------------------------------------

def _check(lowering, program, arg_names, fname):
    """Run the generated code abstractly (``jax.eval_shape``) with a check after each line:
    the dtypes to cast each equation's results to where JAX's promotion differs from NumPy's
    (``{eqn index: dtypes}``). A lowering that fails or changes a shape is an error here."""
    index = {id(e): k for k, e in enumerate(program.eqns)}
    casts: dict = {}
    at = [None]

    def _at(k):
        at[0] = k

    def _chk(value, k):
        eqn = program.eqns[k]
        values = value if eqn.multiple else (value,)
        if len(values) != len(eqn.outs):
            raise _lowering_error(eqn, f"it gives {len(values)} results, not {len(eqn.outs)}")
        fixed = []
        for v, out in zip(values, eqn.outs):
            shape, dtype = tuple(np.shape(v)), np.dtype(v.dtype)
            if shape != out.shape:
                raise _lowering_error(eqn, f"it gives shape {shape}, the program has "
                                           f"{out.shape}")
            if dtype != out.dtype:
                casts.setdefault(k, [None] * len(eqn.outs))
                v = v.astype(out.dtype)
            fixed.append(v)
        if k in casts:
            casts[k] = [o.dtype if np.dtype(v.dtype) != o.dtype else None
                        for v, o in zip(values, eqn.outs)]
        return tuple(fixed) if eqn.multiple else fixed[0]

    def line(em, eqn):
        k = index[id(eqn)]
        return f"_chk(_at({k}) or {lowering.line(em, eqn)}, {k})"

    em = _emitter()
    em.globals.update({"_chk": _chk, "_at": _at})
    em.used.update({"_chk", "_at"})
    source, namespace = generate(program, arg_names, fname, em=em, line=line)
    fn = build(source, namespace, fname)
    specs = [jax.ShapeDtypeStruct(v.shape, v.dtype) for v in program.inputs]
    try:
        with jax.enable_x64(True):
            jax.eval_shape(fn, *specs)
    except CompileError:
        raise
    except Exception as err:  # noqa: BLE001 - a JAX error: say which equation it came from
        if at[0] is None:
            raise
        raise _lowering_error(program.eqns[at[0]], f"{type(err).__name__}: {err}") from err
    return casts


def _lowering_error(eqn, what) -> CompileError:
    return CompileError(
        f"fl.compile(backend='xla'): the XLA lowering of {eqn!r} does not match the program: "
        f"{what}. Use backend='numpy' for this function, and please report it.")


def unsupported(name: str, kind: str = "primitive") -> CompileError:
    return CompileError(
        f"fl.compile(backend='xla'): no XLA lowering for {kind} {name!r}; use "
        f"backend='numpy' for this function, or add a lowering to "
        f"fluxml.compiler.xla_lowerings.PRIMITIVES.")


# --- one equation's line --------------------------------------------------------------------

class _Lowering:
    """The right-hand side of each equation's line, over ``jnp``/``lax`` and the kernels."""

    def __init__(self, program):
        self.casts: dict = {}
        self.index = {id(e): k for k, e in enumerate(program.eqns)}
        self.producer = {o.id: e for e in program.eqns for o in e.outs}

    def line(self, em, eqn) -> str:
        rhs = self._rhs(em, eqn)
        cast = self.casts.get(self.index[id(eqn)])
        if cast is None:
            return rhs
        if not eqn.multiple:
            return f"{rhs}.astype({_expr(em, cast[0])})"
        pieces = ", ".join(f"r[{k}]" if d is None else f"r[{k}].astype({_expr(em, d)})"
                           for k, d in enumerate(cast))
        return f"(lambda r: ({pieces},))({rhs})"

    def _rhs(self, em, eqn) -> str:
        if eqn.fn is _fresh:  # a constant the program copies on every run (NumPy) or reads
            return f"jnp.asarray({em.expr(eqn.inputs[0])})"
        if eqn.prim is None:
            return self._call(em, eqn)
        name = eqn.prim.name
        if name == "matmul":
            folded = self._transposed_matmul(em, eqn)
            if folded is not None:
                return folded
        rule = PRIMITIVES.get(name)
        if rule is None:
            impl = eqn.prim.impl
            head = _numpy_name(impl)
            if head is None or getattr(impl, "__name__", None) != name:
                raise unsupported(name)
            inputs = eqn.inputs
            if isinstance(impl, np.ufunc):  # a list where NumPy reads an array: jnp's refuse
                inputs = [np.asarray(a) if type(a) in (list, tuple) else a for a in inputs]
            return _apply(em, head, inputs, eqn.params or {})
        if name in ("getitem", "sliding_window_view"):
            return _gather(em.expr(eqn.inputs[0]), _index(em, eqn.params["idx"]),
                           eqn.params["idx"], type(eqn.inputs[0]) is not Var)
        if name == "setitem":
            return _scatter_write(em, eqn, _expr(em, eqn.outs[0].dtype))
        if callable(rule):
            head = em.global_(rule, rule.__name__)
            return _apply(em, head, eqn.inputs, eqn.params or {})
        return rule.format(**_fields(em, eqn))

    def _transposed_matmul(self, em, eqn) -> str | None:
        """``a.T @ b`` and ``a @ b.T`` of matrices as one ``lax.dot_general`` contracting the
        untransposed operand (the engine's Dense and its gradients are written so): XLA's CPU
        back end otherwise copies the transpose out first, one more kernel each time."""
        a, b = eqn.inputs
        if not (type(a) is Var and type(b) is Var and len(a.shape) == len(b.shape) == 2 and
                a.dtype == b.dtype and a.dtype.kind == "f"):
            return None
        sources, dims, folded = [], [], False
        for v, plain, flipped in ((a, 1, 0), (b, 0, 1)):
            made = self.producer.get(v.id)
            if made is not None and made.prim is not None and made.prim.name == "transpose" \
                    and tuple(made.params.get("axes") or ()) == (1, 0) \
                    and type(made.inputs[0]) is Var:
                sources.append(em.expr(made.inputs[0]))
                dims.append(flipped)
                folded = True
            else:
                sources.append(em.expr(v))
                dims.append(plain)
        if not folded:
            return None
        return (f"lax.dot_general({sources[0]}, {sources[1]}, "
                f"((({dims[0]},), ({dims[1]},)), ((), ())))")

    def _call(self, em, eqn) -> str:
        """A NumPy function the engine ran untraced on raw values."""
        p = eqn.params
        func, args, kwargs = p["func"], p["args"], p["kwargs"]
        if func in INFIX or func in PREFIX:  # Python's arithmetic on traced Python ints
            text = ", ".join(_expr(em, a) for a in args)
            kernel = em.global_(kernels.python_int, "python_int")
            source = f"{args[0]!r} {INFIX[func]} {args[1]!r}" if func in INFIX else \
                f"{PREFIX[func]}({args[0]!r})"
            return (f"{kernel}({em.global_(func, func.__name__)}, {source!r}, "
                    f"{eqn.outs[0].dtype.kind!r}, {text})")
        name = getattr(func, "__name__", None)
        qualified = f"{getattr(func, '__module__', None)}.{name}"
        kernel = FUNCTIONS.get(qualified)
        if kernel is None and getattr(func, "effect", False):  # a rule's check on the values
            kernel = FUNCTIONS[qualified] = kernels.judged(qualified)
        if kernel is not None:
            return _apply(em, em.global_(kernel, kernel.__name__), args, kwargs)
        if getattr(func, "__objclass__", None) is np.ndarray:  # a method: v3.astype(...)
            if not hasattr(jax.Array, name):
                raise unsupported(f"ndarray.{name}", "method")
            text = [_expr(em, a) for a in args[1:]] + [f"{k}={_expr(em, v)}"
                                                       for k, v in kwargs.items()]
            return f"{em.expr(args[0])}.{name}({', '.join(text)})"
        owner = getattr(func, "__self__", None)  # a ufunc method: np.add.reduce
        if isinstance(owner, np.ufunc):
            head = _numpy_name(owner)
            if head is None or not hasattr(getattr(jnp, owner.__name__), name):
                raise unsupported(f"{owner.__name__}.{name}", "NumPy function")
            return _apply(em, f"{head}.{name}", args, kwargs)
        special = UNTRACED_SPECIAL.get(name)
        if special is not None and func is getattr(sys.modules.get("scipy.special"), name, None):
            return _apply(em, em.global_(special, name), args, kwargs)
        head = _numpy_name(func)
        if head is None:
            raise unsupported(getattr(func, "__qualname__", repr(func)), "function")
        kwargs = {k: v for k, v in kwargs.items() if k not in LAYOUT_KEYWORDS.get(name, ())}
        if isinstance(func, np.ufunc) or name in ARRAY_ARGUMENTS:
            # NumPy reads a list where it takes an array (np.digitize(x, [0.2, 0.5])); jnp
            # refuses one: made an array (only where the argument is an array, not a shape)
            positions = ARRAY_ARGUMENTS.get(name, range(len(args)))
            text = [f"jnp.asarray({_expr(em, a)})" if k in positions and type(a) in (list, tuple)
                    else _expr(em, a) for k, a in enumerate(args)]
            return f"{head}({', '.join(text + [f'{k}={_expr(em, v)}' for k, v in kwargs.items()])})"
        return _apply(em, head, args, kwargs)

def _rewrite_maxpool_grads(program: Program) -> Program:
    """``pool_scatter(g, maxpool_positions(x, maxpool(x)))``, the gradient of max pooling,
    becomes ``maxpool_grad(x, g)``: the gradient XLA knows (select-and-scatter) instead of
    positions and a scatter (``passes.maxpool_scatters``)."""
    return maxpool_scatters(program, _maxpool_grad)


def _maxpool_grad(eqn, g, x, best, geo):
    return Eqn("maxpool_grad", kernels.maxpool_grad, [], {"func": kernels.maxpool_grad,
                                             "args": (x, g if type(g) is not Var else Slot(g)),
                                             "kwargs": geo}, eqn.outs)


# --- control flow: sub-programs lowered as JAX functions under lax.cond / while_loop / scan ----

_SUBPROGRAMS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # Branch -> function


def _subprogram(branch, loop=False):
    """A :class:`~fluxml.compiler.subprogram.Branch` as a function of JAX arrays (its program
    lowered as the main one; results cast to the types the branch was traced with, which
    ``lax`` control flow requires of every branch and every step). A ``loop`` body's run-time
    checks are refused: their values, of ``lax``'s trace of the body, cannot leave it."""
    fn = _SUBPROGRAMS.get(branch)
    if fn is not None:
        return fn
    program = _numpy_casts(dead_code(_rewrite_maxpool_grads(branch.program)))
    if program.writes:
        raise unsupported(f"{branch.__name__} (a branch that writes into its operands)",
                          "sub-program")
    names = [f"a{k}" for k in range(len(program.inputs))]
    lowering = _Lowering(program)
    source, namespace = generate(program, names, branch.__name__, em=_emitter(),
                                 line=lowering.line)
    body = build(source, namespace, branch.__name__)
    types = branch.types

    def run(*args):
        checks = kernels.run_time_checks()
        before = len(checks)
        outs = body(*args)
        if loop and len(checks) > before:
            del checks[before:]
            raise CompileError(
                f"fl.compile(backend='xla'): {branch.__name__} holds a check made on every "
                "run (a derivative's domain, as slogdet's or qr's; a histogram's range; "
                "geomspace's ends ...), which cannot be carried out of fl.while_loop or "
                "fl.scan on XLA; use backend='numpy' for this function, or move that "
                "operation out of the loop.")
        return tuple(jnp.asarray(o).astype(dtype).reshape(shape)
                     for o, (shape, dtype) in zip(outs, types))

    _SUBPROGRAMS[branch] = run
    return run


def _cond(pred, *args, branches):
    """``fl.cond``: ``lax.cond`` over the two branches."""
    yes, no = (_subprogram(b) for b in branches)
    return tuple(lax.cond(jnp.asarray(pred).astype(bool), yes, no, *args))


def _while_loop(*args, cond_fn, body_fn, n_carry, n_cond):
    """``fl.while_loop``: ``lax.while_loop`` (the test's and the body's constants passed
    through)."""
    carry = tuple(args[:n_carry])
    test_consts, body_consts = args[n_carry:n_carry + n_cond], args[n_carry + n_cond:]
    test, step = _subprogram(cond_fn, loop=True), _subprogram(body_fn, loop=True)
    return tuple(lax.while_loop(lambda c: jnp.asarray(test(*c, *test_consts)[0]).astype(bool),
                                lambda c: step(*c, *body_consts), carry))


def _scan(*args, body, n_carry, n_xs, length, reverse):
    """``fl.scan``: ``lax.scan`` of the step over the leading axis of ``xs``."""
    carry, xs = tuple(args[:n_carry]), tuple(args[n_carry:n_carry + n_xs])
    consts = args[n_carry + n_xs:]
    step = _subprogram(body, loop=True)

    def f(c, x):
        out = step(*c, *x, *consts)
        return out[:n_carry], out[n_carry:]

    last, ys = lax.scan(f, carry, xs, length=length, reverse=reverse)
    return tuple(last) + tuple(ys)


_cond.__name__, _while_loop.__name__, _scan.__name__ = "cond", "while_loop", "scan"
PRIMITIVES.update({"cond": _cond, "while_loop": _while_loop, "scan": _scan})


def _qualname(func) -> str:
    return f"{getattr(func, '__module__', None)}.{getattr(func, '__name__', None)}"


def _numpy_name(func) -> str | None:
    """``jnp.tanh`` for ``np.tanh``, ``jnp.linalg.solve`` for ``np.linalg.solve``: NumPy's
    function of that name whose ``jnp`` namesake exists; None otherwise."""
    name = getattr(func, "__name__", None)
    if name is None:
        return None
    if getattr(np, name, None) is func and hasattr(jnp, name):
        return f"jnp.{name}"
    if getattr(np.linalg, name, None) is func and hasattr(jnp.linalg, name):
        return f"jnp.linalg.{name}"
    return None


def _apply(em, head, args, params) -> str:
    text = [_expr(em, a) for a in args] + [f"{k}={_expr(em, v)}" for k, v in params.items()]
    return f"{head}({', '.join(text)})"


def _expr(em, x) -> str:
    """``em.expr``, with dtypes written as ``jnp.float32``."""
    if isinstance(x, np.dtype) and x.names is None and hasattr(jnp, x.name):
        return f"jnp.{x.name}"
    return em.expr(x)


_SIGNATURES: dict = {}


def _fields(em, eqn) -> dict:
    """Source for a template's fields: the kernel's argument names bound to the inputs (a
    ``*args`` name to all the rest, comma-separated), and each parameter."""
    impl = eqn.prim.impl
    names = _SIGNATURES.get(impl)
    if names is None:
        names = _SIGNATURES[impl] = [
            ("*" if p.kind is p.VAR_POSITIONAL else "") + p.name
            for p in inspect.signature(impl).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)]
    fields = {}
    for k, name in enumerate(names):
        if name.startswith("*"):
            fields[name[1:]] = ", ".join(em.expr(a) for a in eqn.inputs[k:])
            break
        if k < len(eqn.inputs):
            fields[name] = em.expr(eqn.inputs[k])
    for key, value in (eqn.params or {}).items():
        fields[key] = _index(em, value) if key == "idx" else _expr(em, value)
    return fields
