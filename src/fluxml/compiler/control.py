"""Control flow that compiles: ``fl.cond``, ``fl.while_loop`` and ``fl.scan`` (JAX's forms).

Outside ``fl.compile`` they are plain Python (one branch, a ``while`` loop, a ``for`` loop
stacking the outputs), differentiated by the engine like any Python code. Inside, a branch
on a traced predicate, a loop and a scan each become one equation of the compiled program,
holding the branches and bodies as programs of their own (``compiler/subprogram.py``), with
derivative rules that are control flow again (``compiler/control_rules.py``): a ``fl.gradient``
inside a compiled function differentiates them, forward or reverse, to any order (a
``while_loop`` has a forward-mode derivative only, as in JAX).

Their operands and carries are trees of arrays (numbers become 0-d arrays), passed to the
functions as new trees, eagerly too (objects rebuilt around the same arrays, as
``fl.compile`` traces them): a field that a branch or body sets on an operand is seen
outside only through what it returns, as with JAX's pytrees. The functions
must return trees of the same structure, shapes and dtypes (both branches of a ``cond``; a
loop body its carry), checked in eager code too, so that code that runs eagerly compiles.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fluxml._checks import shown
from fluxml.ad.core import Tracer, bind, raw
from fluxml.compiler.calls import _spec_key
from fluxml.compiler.control_rules import COND, SCAN, WHILE, _step_examples, saving_scan
from fluxml.compiler.ir import Const
from fluxml.compiler.subprogram import (
    Branch,
    as_capture,
    as_operand,
    example,
    function_name,
    leaf_type,
    show_type,
    trace_function,
)
from fluxml.compiler.trace import CompileError, current
from fluxml.tree import flatten, unflatten


def _check_callable(fn, who, what):
    if not callable(fn):
        raise TypeError(f"{who}: {what} must be a function; got {type(fn).__name__}")


def _types(leaves) -> list:
    return [leaf_type(x) for x in leaves]


def _scalar_test(p, who: str, what: str):
    """``p``'s raw value, after checking that it is a scalar boolean or number."""
    r = raw(p)  # under compile, a traced value's raw value is its IR tracer
    if isinstance(r, (bool, int, float)):
        return r
    shape, dtype = getattr(r, "shape", None), getattr(r, "dtype", None)
    if shape != () or dtype is None or np.dtype(dtype).kind not in "biuf":
        got = show_type((shape, np.dtype(dtype))) if shape is not None and dtype is not None \
            else f"a {type(r).__name__}"
        raise _not_scalar(who, what, got)
    return r


def _not_scalar(who, what, got) -> TypeError:
    return TypeError(
        f"{who}: {what} must be a scalar boolean (or a real number); got {got}. Reduce an "
        "array to one value (np.all, np.any, np.sum(...) > 0); for an elementwise choice use "
        "np.where.")


def _same_outputs(who, names, specs, types):
    """Raise unless two functions' outputs agree in structure, shapes and dtypes."""
    if _spec_key(specs[0]) != _spec_key(specs[1]):
        raise TypeError(f"{who}: {names[0]} and {names[1]} must return the same structure; "
                        f"got {specs[0]!r} and {specs[1]!r}")
    for k, (a, b) in enumerate(zip(*types)):
        if a != b:
            raise TypeError(
                f"{who}: {names[0]} and {names[1]} must return arrays of the same shapes and "
                f"dtypes; output {k} is {show_type(a)} from {names[0]} but {show_type(b)} "
                f"from {names[1]}. Cast one (x.astype(...)) or reshape it.")


def _what(role: str, fn) -> str:
    """How errors name a user's function: its role, and its name when it has its own."""
    name = function_name(fn, role)
    return role if name == role else f"{role} `{name}`"


def _cut(outs) -> list:
    """The results as eager code has them: integer and boolean ones carry no derivative (the
    transforms' handles on them are dropped; under compile the IR tracer stays)."""
    return [o if type(o) is not Tracer or o.dtype.kind in "fc" else raw(o) for o in outs]


def _unique(values) -> list:
    seen, out = set(), []
    for v in values:
        if id(v) not in seen:
            seen.add(id(v))
            out.append(v)
    return out


# --- cond ------------------------------------------------------------------------------------

# what a branch raises on values it cannot take (a TypeError, CompileError among them, is
# a fault of its code, whatever the values: raised)
_FAILS_ON_VALUES = (np.linalg.LinAlgError, ValueError, IndexError, ArithmeticError)


def cond(pred, true_fn: Callable, false_fn: Callable, *operands):
    """``true_fn(*operands)`` if ``pred`` else ``false_fn(*operands)``.

    ``pred`` is a scalar boolean (or number); both functions take the operands (trees of
    arrays) and must return trees of the same structure, shapes and dtypes. Eagerly, the
    chosen branch runs as plain Python and the other is traced on the operands' values to
    check that it agrees, as ``fl.compile`` traces both (its random draws do not advance the
    generator; a branch failing there on the values, with ``LinAlgError``, ``ValueError``,
    ``IndexError`` or an arithmetic error, is traced on stand-ins, ones or identity
    matrices, and unchecked where those fail with ``LinAlgError`` too; its plain Python
    effects, such as appending to a list or writing into a NumPy array it closes over, do
    happen, as when JAX's ``cond`` traces both branches, and a write into an array traced by
    an outer ``fl.gradient`` is refused by name). Inside
    ``fl.compile`` a traced ``pred`` records one equation that runs the chosen branch's
    compiled code; a concrete one just calls its branch. Under ``fl.gradient`` the taken
    branch is differentiated (a compiled one: its vjp, a ``cond`` of the branches' vjps).

    >>> import numpy as np, fluxml as fl
    >>> f = fl.compile(lambda x: fl.cond(np.sum(x) > 0, lambda x: 2 * x, lambda x: -x, x))
    >>> f(np.array([1.0, 2.0])), f(np.array([-1.0, -2.0]))
    (array([2., 4.]), array([1., 2.]))
    """
    who = "fl.cond"
    _check_callable(true_fn, who, "true_fn")
    _check_callable(false_fn, who, "false_fn")
    p = _scalar_test(pred, who, "pred")
    names = (_what("true_fn", true_fn), _what("false_fn", false_fn))
    leaves, spec = flatten(operands)
    leaves = [as_operand(x) for x in leaves]  # numbers become 0-d arrays, as they compile
    if type(p) is not Tracer:  # a concrete predicate: one branch runs
        taken, other = (true_fn, false_fn) if bool(p) else (false_fn, true_fn)
        out = taken(*unflatten(spec, leaves))
        try:
            check = _trace_branch(other, leaves, spec,
                                  f"{who}'s {names[0] if other is true_fn else names[1]}",
                                  False, check_only=True)
        except np.linalg.LinAlgError:  # fails on every stand-in as well: unchecked
            return out
        out_leaves, out_spec = flatten(out)
        pair = (out_spec, check.out_spec), (_types(out_leaves), check.types())
        if taken is not true_fn:
            pair = tuple(x[::-1] for x in pair)
        _same_outputs(who, names, *pair)
        return out
    taken = bool(example(p))  # (the branch the first call's values take)
    traced = [_trace_branch(fn, leaves, spec, f"{who}'s {name}", fn_taken)
              for fn, name, fn_taken in zip((true_fn, false_fn), names, (taken, not taken))]
    _same_outputs(who, names, [t.out_spec for t in traced], [t.types() for t in traced])
    captured = _unique(traced[0].captured + traced[1].captured)
    if not traced[0].outputs:
        return unflatten(traced[0].out_spec, [])
    branches = tuple(Branch(t.program(captured), function_name(fn, role), t.trace.custom)
                     for t, fn, role in zip(traced, (true_fn, false_fn), ("true_fn", "false_fn")))
    outs = _cut(bind(COND, [as_operand(pred), *leaves, *map(as_capture, captured)],
                     {"branches": branches}))
    return unflatten(traced[0].out_spec, outs)


def _trace_branch(fn, leaves, spec, what, taken, star=True, check_only=False):
    """A traced branch of ``fl.cond`` (or a loop's body). A branch that the example values
    (the first call's) do not take (a loop body that does not run on them) may fail on them,
    as eagerly it never runs on them (an index past the end, a geometric sequence from 0, a
    Cholesky factor of a matrix that is not positive definite): its program does not depend
    on them, so it is traced again on stand-ins (:func:`_stand_ins`). A fault of its code (a
    shape that does not fit) fails there too, and is raised."""
    try:
        return trace_function(fn, leaves, spec, what, star=star, check_only=check_only)
    except _FAILS_ON_VALUES as err:
        if taken:
            raise
        failed = err
    for values in _stand_ins(leaves):
        try:
            return trace_function(fn, values, spec, what, star=star, check_only=check_only)
        except _FAILS_ON_VALUES as err:
            failed = err
    raise failed


def _stand_ins(leaves):
    """Values to trace a branch on in place of the example values: ones, then identity
    matrices in the operands of square trailing axes (a Cholesky factor or an inverse of a
    matrix of ones fails)."""
    examples = [example(x) for x in leaves]
    ones = [type(e)(1) if isinstance(e, (bool, int, float, complex)) else np.ones_like(e)
            for e in examples]  # (a Python number stays one: NumPy's promotion of it)
    yield ones
    square = [np.ndim(e) >= 2 and np.shape(e)[-1] == np.shape(e)[-2] for e in examples]
    if any(square):
        yield [np.broadcast_to(np.eye(e.shape[-1], dtype=e.dtype), e.shape).copy() if sq
               else one for e, one, sq in zip(examples, ones, square)]


# --- while_loop --------------------------------------------------------------------------------

def while_loop(cond_fun: Callable, body_fun: Callable, init_val):
    """``val = init_val; while cond_fun(val): val = body_fun(val)``, returning ``val``.

    ``init_val`` is a tree of arrays (the carry); ``body_fun`` must return a tree of the
    same structure, shapes and dtypes, ``cond_fun`` a scalar boolean. Eagerly this is a
    Python loop (differentiated as any Python). Inside ``fl.compile`` it is one equation
    whose loop runs in the compiled code for as many iterations as the values need; it has
    a forward-mode derivative (``fl.jvp``) but no reverse-mode one: use ``fl.scan`` with a
    fixed number of steps there.

    >>> import numpy as np, fluxml as fl
    >>> @fl.compile
    ... def sqrt(a):  # Newton's method: as many steps as the value needs
    ...     step = lambda x: 0.5 * (x + a / x)
    ...     return fl.while_loop(lambda x: np.abs(step(x) - x) > 1e-12, step, a)
    >>> float(sqrt(np.array(2.0)))
    1.414213562373095
    """
    who = "fl.while_loop"
    _check_callable(cond_fun, who, "cond_fun")
    _check_callable(body_fun, who, "body_fun")
    leaves, spec = flatten(init_val)
    leaves = [as_operand(x) for x in leaves]  # numbers become 0-d arrays, as they compile
    types = _types(leaves)
    c_what, b_what = _what("cond_fun", cond_fun), _what("body_fun", body_fun)
    if current() is None:
        val = unflatten(spec, leaves)
        while True:
            test = _scalar_test(cond_fun(val), who, f"{c_what}'s result")
            if not test:
                return val
            val = body_fun(val)
            _check_carry(who, b_what, spec, types, val)
    static = []  # what cond_fun returned, where a Python bool (a static leaf of a tree)

    def probe(val):
        out = cond_fun(val)
        if isinstance(out, bool):
            static.append(out)
        return out

    test = trace_function(probe, leaves, spec, f"{who}'s {c_what}",
                          star=False)
    if static and not test.outputs:
        constant = static[-1]
    else:
        if len(test.outputs) != 1:
            raise _not_scalar(who, f"{c_what}'s result", f"a tree {test.out_spec!r}")
        (t_type,) = test.types()
        if t_type[0] != () or t_type[1].kind not in "biuf":
            raise _not_scalar(who, f"{c_what}'s result", show_type(t_type))
        out = test.outputs[0]
        constant = out.value if type(out) is Const else None
    if constant is not None:  # a condition that does not depend on the carry's values
        return _constant_loop(who, c_what, constant, unflatten(spec, leaves))
    runs = bool(np.asarray(test.examples[0]))  # (does the body run on the examples?)
    body = _trace_branch(body_fun, leaves, spec, f"{who}'s {b_what}", runs, star=False)
    _check_traced_carry(who, b_what, spec, types, body)
    c_caps, b_caps = test.captured, body.captured
    cond_b = Branch(test.program(c_caps), function_name(cond_fun, "cond_fun"), test.trace.custom)
    body_b = Branch(body.program(b_caps), function_name(body_fun, "body_fun"), body.trace.custom)
    outs = _cut(bind(WHILE, [*leaves, *map(as_capture, c_caps), *map(as_capture, b_caps)],
                     {"cond_fn": cond_b, "body_fn": body_b, "n_carry": len(leaves),
                      "n_cond": len(c_caps)}))
    return unflatten(spec, outs)


def _constant_loop(who, c_what, constant, val):
    """A ``while_loop`` whose condition is a constant (a Python bool, a test of the carry's
    shapes): no iteration when false, as eagerly; when true the loop never ends (eagerly it
    runs forever too): refused."""
    if not bool(np.asarray(constant)):
        return val
    raise CompileError(
        f"{who}: {c_what} returned {np.asarray(constant).item()!r}, a constant that does "
        "not depend on the carry's values (a Python bool, or a test of shapes), so the loop "
        "would never end "
        "(eagerly it runs forever too). Make the condition test the carry's values "
        "(`lambda c: c[0] < n`), or use fl.scan for a fixed number of steps.")


def _check_carry(who, what, spec, types, val):
    leaves, got = flatten(val)
    if _spec_key(got) != _spec_key(spec):
        raise TypeError(f"{who}: {what} must return a carry of the structure it was given "
                        f"({spec!r}); got {got!r}")
    _check_types(who, what, types, _types(leaves))


def _check_traced_carry(who, what, spec, types, traced):
    if _spec_key(traced.out_spec) != _spec_key(spec):
        raise TypeError(f"{who}: {what} must return a carry of the structure it was given "
                        f"({spec!r}); got {traced.out_spec!r}")
    _check_types(who, what, types, traced.types())


def _check_types(who, what, expected, got):
    for k, (a, b) in enumerate(zip(expected, got)):
        if a != b:
            raise TypeError(
                f"{who}: {what} must keep each carry's shape and dtype; carry leaf {k} came in "
                f"as {show_type(a)} and went out as {show_type(b)}. Start it with the type "
                f"the body makes (e.g. np.zeros(shape, dtype) instead of a Python number).")


# --- scan ----------------------------------------------------------------------------------------

def scan(f: Callable, init, xs=None, length: int | None = None, reverse: bool = False):
    """``(carry, ys)``: ``carry, y_t = f(carry, x_t)`` over the leading axis of ``xs``, with
    the ``y_t`` stacked along a new leading axis (JAX's ``lax.scan``).

    ``init`` and ``xs`` are trees of arrays; every leaf of ``xs`` has the same leading
    length (``length`` is needed when ``xs`` is None). ``f`` must return its carry with the
    structure, shapes and dtypes of ``init``. ``reverse=True`` runs from the last step to
    the first (``ys`` stay aligned with ``xs``). Eagerly this is a Python loop; inside
    ``fl.compile`` it is one equation, differentiated in both modes (the backward pass is a
    reverse scan that recomputes each step).

    >>> import numpy as np, fluxml as fl
    >>> fl.scan(lambda c, x: (c + x, c + x), 0.0, np.array([1.0, 2.0, 3.0]))
    (np.float64(6.0), array([1., 3., 6.]))
    """
    who = "fl.scan"
    _check_callable(f, who, "f")
    if not isinstance(reverse, (bool, np.bool_)):
        raise TypeError(f"{who}: reverse must be a bool; got {type(reverse).__name__}")
    name = _what("f", f)
    if isinstance(xs, (str, bytes)):  # (else 'pass length= when xs is None')
        raise TypeError(f"{who}: xs must be an array or a tree of arrays to scan over their "
                        f"leading axis (or None, with length=); got {shown(xs)}")
    x_leaves, x_spec = flatten(xs)
    n = _length(who, x_leaves, length)
    c_leaves, c_spec = flatten(init)
    c_leaves = [as_operand(x) for x in c_leaves]  # numbers become 0-d arrays, as they compile
    types = _types(c_leaves)
    if current() is None:
        return _eager_scan(who, f, name, c_leaves, c_spec, types, x_leaves, x_spec, n, reverse)
    x_leaves = [as_operand(x) for x in x_leaves]
    body, y_spec = _trace_step(who, f, name, c_leaves, c_spec, x_leaves, x_spec, n)
    _check_types(who, name, types, body.types()[:len(c_leaves)])
    caps = body.captured
    step = Branch(body.program(caps), function_name(f, "f"), body.trace.custom)
    args = [*c_leaves, *x_leaves, *map(as_capture, caps)]
    params = {"body": step, "n_carry": len(c_leaves), "n_xs": len(x_leaves), "length": n,
              "reverse": bool(reverse)}
    n_out = len(step.types)
    saving = saving_scan(args, params)  # under reverse mode: stack what the vjp will read
    if saving is not None:
        args, params, _ = saving
    outs = _cut(bind(SCAN, args, params))[:n_out]
    k = len(c_leaves)
    return unflatten(c_spec, outs[:k]), unflatten(y_spec, outs[k:])


def _length(who, x_leaves, length) -> int:
    lengths = []
    for x in x_leaves:
        shape = np.shape(raw(x)) if not hasattr(x, "shape") else x.shape
        if len(shape) == 0:
            raise TypeError(f"{who}: every leaf of xs must be an array with a leading axis to "
                            f"scan over; got a scalar ({type(raw(x)).__name__})")
        lengths.append(shape[0])
    if len(set(lengths)) > 1:
        raise ValueError(f"{who}: the leaves of xs must have the same leading length; got "
                         f"lengths {lengths}")
    if length is not None:
        if not isinstance(length, (int, np.integer)) or isinstance(length, bool) or length < 0:
            raise TypeError(f"{who}: length must be a non-negative int; got {length!r}")
        if lengths and lengths[0] != length:
            raise ValueError(f"{who}: length={length} but xs have leading length "
                             f"{lengths[0]}")
        return int(length)
    if not lengths:
        raise ValueError(f"{who}: pass length= when xs is None (or has no arrays)")
    return int(lengths[0])


def _split_pair(who, name, out):
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise TypeError(f"{who}: {name} must return a pair (carry, y); got "
                        f"{type(out).__name__}")
    return out


def _trace_step(who, f, name, c_leaves, c_spec, x_leaves, x_spec, n):
    """The body traced on one step's slices: ``(traced, y_spec)``."""

    slices = _step_examples(x_leaves, n)
    _, pair_spec = flatten((unflatten(c_spec, c_leaves), unflatten(x_spec, slices)))

    def step(carry, x):
        return tuple(_split_pair(who, name, f(carry, x)))

    # (with no step to run, f may fail on the examples, as it never runs on them)
    traced = _trace_branch(step, c_leaves + slices, pair_spec, f"{who}'s {name}", n > 0)
    c_out, y_spec = traced.out_spec.children
    if _spec_key(c_out) != _spec_key(c_spec):
        raise TypeError(f"{who}: {name} must return a carry of the structure of init "
                        f"({c_spec!r}); got {c_out!r}")
    return traced, y_spec


def _eager_scan(who, f, name, c_leaves, c_spec, types, x_leaves, x_spec, n, reverse):
    # values, as lax.scan's and a compiled scan's: a body that writes into its carry (`c +=
    # x`) wrote into the caller's init, and every y it returned as the carry was the last one
    # once stacked; so the carry starts as a copy, and each step's ys are copied as they come
    carry = unflatten(c_spec, [np.copy(c) for c in c_leaves])
    ys, y_spec, y_types = [], None, None
    for t in (range(n - 1, -1, -1) if reverse else range(n)):
        x_t = unflatten(x_spec, [x[t] for x in x_leaves])
        carry, y = _split_pair(who, name, f(carry, x_t))
        _check_carry(who, name, c_spec, types, carry)
        leaves, spec = flatten(y)
        if y_spec is None:
            y_spec, y_types = spec, _types(leaves)
        elif _spec_key(spec) != _spec_key(y_spec) or _types(leaves) != y_types:
            raise TypeError(f"{who}: {name} must return ys of one structure, shape and "
                            f"dtype at every step; step {t} returned {spec!r} "
                            f"{[show_type(s) for s in _types(leaves)]}, earlier steps "
                            f"{y_spec!r} {[show_type(s) for s in y_types]}")
        ys.append([np.copy(y) for y in leaves])
    if reverse:
        ys.reverse()
    if n == 0:  # no step ran: the shapes of ys from a trace of f
        traced, y_spec = _trace_step(who, f, name, c_leaves, c_spec, x_leaves, x_spec, 0)
        y_types = traced.types()[len(c_leaves):]
        return carry, unflatten(y_spec, [np.zeros((0,) + s, d) for s, d in y_types])
    return carry, unflatten(y_spec, [np.stack([y[k] for y in ys]) for k in range(len(y_types))])
