"""The transforms users call: gradient, withgradient, pullback, stop_gradient (forward mode,
``jvp``, is in ``pushforward.py``; the full matrices built on them, jacobian and hessian, in
``matrices.py``; user-given rules in ``custom.py``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from fluxml.ad.arrays import library_asarray
from fluxml.ad.core import (
    LEAKED,
    DifferentiationError,
    Tracer,
    is_weak,
    open_traces,
    raw,
    recorded,
    remove_last,
    weak_handle,
)
from fluxml.ad.guards import pause_gc, resume_gc
from fluxml.ad.reached import open_walk, plain_reached
from fluxml.ad.reverse import ReverseTrace
from fluxml.ad.sweep import sweep
from fluxml.ad.weak import WEAK, python_number, weak
from fluxml.ad.writeback import Rebuilt
from fluxml.tree import align, flatten, is_array_leaf, unflatten
from fluxml.treemaps import fmap


def _is_float(x) -> bool:
    """Does ``x`` carry a derivative: a float or complex number or array?"""
    if isinstance(x, bool):
        return False
    if isinstance(x, (float, complex)):
        return True
    dtype = getattr(x, "dtype", None)
    return dtype is not None and dtype.kind in "fc"


def _start(x):
    """The primal a transform wraps: Python floats (and complex numbers) become weak values,
    float64 scalars that NumPy is handed as the Python numbers they are (``weak.WeakFloat``:
    ``x * scale`` stays in ``x``'s dtype, as without the transform); a tracer of an outer
    transform is wrapped through a private handle, so that later writes to the user's
    handle cannot change what this level recorded."""
    if type(x) is Tracer:
        t = x._trace.new(x._val, x._box, owned=False)
        return t
    if type(x) is float or type(x) is complex:
        return weak(x)
    if isinstance(x, float) and not isinstance(x, np.generic):  # a subclass: NumPy's strong
        return np.float64(x)
    if isinstance(x, complex) and not isinstance(x, np.generic):
        return np.complex128(x)
    return x


def _trace_args(trace, args, make, who="gradient"):
    """Replace the float leaves of ``args`` by new tracers; returns the traced args, the
    leaves, their spec and, per leaf, the box of the tracer made for it (its tape index in
    reverse mode; None for non-float leaves). Repeated arrays share one tracer."""
    for a in args:
        if type(a) not in _PLAIN:  # containers or objects: go through their leaves
            _refuse_text(who, args)
            leaves, spec = flatten(args, trainable=True)
            break
    else:
        leaves, spec = args, None
    boxes, by_id, new_leaves = [], {}, []
    for x in leaves:
        if type(x) is np.ndarray:
            if x.dtype.kind not in "fc":
                if x.dtype.kind in "SU" and spec is None:  # (an argument itself: refused)
                    _refuse_text(who, args)
                boxes.append(None)
                new_leaves.append(x)
                continue
            t = by_id.get(id(x))
            if t is None:
                t = by_id[id(x)] = make(x, len(boxes))
        elif isinstance(x, (float, complex, np.generic)):  # numbers: nothing to share
            if not _is_float(x):  # (an int; bool is neither of those types)
                boxes.append(None)
                new_leaves.append(x)
                continue
            t = make(_start(x), len(boxes))
        elif _is_float(x):  # tracers (higher order, fl.compile) and other libraries' arrays
            # repeated ones share one tracer too: tied weights get the same total gradient
            # at each place, whatever the arrays' type or the depth of differentiation
            t = by_id.get(id(x))
            if t is None:
                t = by_id[id(x)] = make(_start(x), len(boxes))
        else:
            boxes.append(None)
            new_leaves.append(x)
            continue
        # the box now: ``f`` may write into an argument, which rebinds its handle
        boxes.append(t._box)
        new_leaves.append(t)
    if spec is None:
        return tuple(new_leaves), leaves, spec, boxes, None
    # one copy of an object met twice (a layer used twice), as f sees one object eagerly;
    # the log lets _run write back what f sets on the copies (ad/writeback.py)
    log: list = []
    targs = unflatten(spec, new_leaves, shared={}, log=log)
    if not log:
        return targs, leaves, spec, boxes, None
    rebuilt = Rebuilt(trace, log, leaves, new_leaves, boxes, spec)
    for j, i in rebuilt.alias.items():
        # a number field of a repeated object: the copy holds the first place's tracer,
        # whose gradient (the total) each place gets, as tied arrays do
        boxes[j] = boxes[i]
    return targs, leaves, spec, boxes, rebuilt


_PLAIN = {np.ndarray, float, int, np.float64, np.float32, Tracer, complex, np.complex128}


def _refuse_text(who, args):
    """A string given as an argument to differentiate is a mistake (a file name, a mode, a
    number not yet parsed), whose gradient came back None, silently. Only an argument itself
    is refused: a string inside an object (a layer's name, a setting) is a static field."""
    for i, a in enumerate(args):
        if isinstance(a, np.ndarray) and a.dtype.kind in "SU":
            raise TypeError(f"{who}: argument {i + 1} (of {len(args)}) is an array of strings "
                            f"({a.dtype}), which has no derivative; convert numbers written "
                            f"as text first (x.astype(float))")
        if isinstance(a, (str, bytes)):
            raise TypeError(f"{who}: argument {i + 1} (of {len(args)}) is a "
                            f"{type(a).__name__}, {a!r:.40}, which has no derivative; "
                            f"differentiate numbers or arrays, and pass a setting through a "
                            f"closure (lambda x: f(x, {a!r:.20}))")


def _run(trace, f, targs, rebuilt=None, reach=None, held=None):
    """``f(*targs)`` recorded by ``trace``, which is closed afterwards whatever happens: a
    tracer that escapes says so when it is used later. (What ``f`` set on the traced copy of
    the arguments is written back by the caller once the transform has succeeded:
    ``Rebuilt.write_back``.) ``reach``: the user's function when ``f`` wraps it (what it
    closes over and its globals are what :func:`plain_reached` walks), ``held`` a list the
    wrapper keeps what it returned in."""
    stack = open_traces()
    stack.append(trace)  # train/test layers ask (core.differentiating)
    open_walk(trace)  # (an inner transform may leave this trace's tracers on what f reaches)
    try:
        out = f(*targs)
        if trace.refused is not None:
            trace.check_refused()
    finally:
        trace.closed = LEAKED
        remove_last(stack, trace)  # by identity: a generator f may leave out of order
        plain_reached(f if reach is None else reach, trace, rebuilt, held)
    return out


def _finish(g, like, zeros, seen):
    """A gradient leaf as the user receives it: the argument's type, shape and dtype; a
    writable array whose memory no other gradient shares (a transposed view of a buffer the
    sweep made is fine; a broadcast view or a shared buffer is copied)."""
    if type(g) is np.ndarray and type(like) is np.ndarray:  # the common case
        return _own(g, seen)
    if g is None:
        if zeros and _is_float(like):
            g = np.zeros_like(raw(like))
        else:
            return None
    if type(g) is Tracer:  # a repeated leaf's (the same tracer at each place): a handle of
        if is_weak(like) and type(like) is not int:  # a Python number's (or a traced one's):
            return weak_handle(g)  # weak, as the Python float of a gradient taken plainly
        if id(g) in seen:  # its own for each but the first, as arrays get copies
            return np.copy(g)
        seen.add(id(g))
        return g
    if isinstance(like, (float, complex)) and not isinstance(like, np.generic):
        return type(like)(g)
    if type(like) is Tracer and is_weak(like):  # a traced Python number (one fl.compile
        return complex(g) if np.iscomplexobj(g) else float(g)  # traces): a Python number
    if isinstance(like, np.generic):
        return like.dtype.type(g)
    if isinstance(g, np.generic):
        g = np.asarray(g)
    elif not isinstance(g, np.ndarray):  # another library's array (CuPy): a copy of its own
        return g.copy()
    return _own(g, seen)


def _own(g, seen):
    """``g``, or a copy of it where its memory is read-only or already handed out."""
    root = g if g.base is None else g.base  # NumPy points a view at the array owning memory
    if id(root) in seen or not g.flags.writeable or type(root) is not np.ndarray:
        g = root = g.copy()
    seen.add(id(root))
    return g


def _grad(c, x, zeros, seen):
    """One leaf's gradient as the user receives it (``_own`` for the common case)."""
    if type(c) is np.ndarray and type(x) is np.ndarray:
        return _own(c, seen)
    return _finish(c, x, zeros, seen)


def _handed_out(arrays) -> set:
    """The ids of the memory owners of ``arrays`` (as ``_own`` keys them)."""
    return {id(a if a.base is None else a.base) for a in arrays if type(a) is np.ndarray}


def _grads(spec, leaves, cts, zeros, seen=None):
    seen = set() if seen is None else seen
    return _tree(spec, [_grad(c, x, zeros, seen) for c, x in zip(cts, leaves)])


def _tree(spec, out):
    return tuple(out) if spec is None else unflatten(spec, out, static_as_none=True)


class _Final:
    """The sweep's ``final`` callback for ``withgradient(..., on_final=)``: finishes each
    leaf's gradient as ``_grads`` would (the same checks, in the order they become final)
    and hands it to the caller's function; ``out`` collects them for the returned tree."""

    __slots__ = ("leaves", "zeros", "user", "seen", "out")

    def __init__(self, leaves, zeros, user):
        self.leaves, self.zeros, self.user = leaves, zeros, user
        self.seen: set = set()
        self.out: list = [None] * len(leaves)

    def __call__(self, k, c):
        x = self.leaves[k]
        g = self.out[k] = _grad(c, x, self.zeros, self.seen)
        if type(g) is Tracer and recorded(g):  # the leaves were not traced: a closure's
            raise DifferentiationError(ON_FINAL_COMPILED)
        self.user(k, g)


ON_FINAL_COMPILED = (
    "withgradient: on_final cannot be used inside fl.compile: the compiled program records "
    "the backward pass once, when it is traced, so on_final would be called then, with "
    "placeholders, and never when the program runs. Call withgradient(..., on_final=) in "
    "eager code, or drop on_final (fl.train(..., compile=...) averages after the backward "
    "pass)")


def withgradient(f: Callable, *args, zeros_for_none: bool = False,
                 holomorphic: bool = False,
                 on_final: Callable[[int, Any], None] | None = None):
    """``(f(*args), gradient(f, *args))`` from one forward and one backward pass.

    ``on_final(k, g)``, if given, is called during the backward pass once per leaf of
    ``args`` (``k`` its index in ``fl.tree.flatten(args, trainable=True)[0]``), as soon as
    that leaf's gradient ``g`` is final: ``g`` is the object the returned tree holds there
    (None where that holds None). So work on a gradient, such as sending it to other
    processes, can start while the rest of the backward pass runs. Until ``withgradient``
    returns, ``g`` must only be read (copied, sent), not written into: it may share memory
    with values the backward pass still uses. Not inside ``fl.compile`` (an error: the
    program's backward pass is recorded once, so the callback would run at trace time only).

    >>> import numpy as np, fluxml as fl
    >>> fl.withgradient(lambda x: np.sum(x ** 2), np.array([1.0, 2.0]))
    (np.float64(5.0), (array([2., 4.]),))
    >>> order = []
    >>> _ = fl.withgradient(lambda a, b: np.sum(np.tanh(a) * b), np.ones(2), np.ones(2),
    ...                     on_final=lambda k, g: order.append(k))
    >>> order  # b's gradient, tanh(a), is final before a's: the sweep still has tanh to do
    [1, 0]

    As Zygote's (Flux's) ``withgradient``, ``f`` may return a tuple or namedtuple whose
    first entry is the loss: the gradient is that entry's, and the whole tuple comes back,
    the other entries as plain values (no derivative flows through them): a recurrent
    network's final state for the next batch, an accuracy, the model's output.

    >>> (loss, y), (g,) = fl.withgradient(lambda x: (np.sum(x ** 2), 2 * x), np.ones(2))
    >>> loss, y, g
    (np.float64(2.0), array([2., 2.]), array([2., 2.]))
    """
    pause_gc()
    try:
        trace, whole = ReverseTrace(), []

        def first(*a):
            out = f(*a)
            if isinstance(out, tuple) and out:  # (loss, aux ...): differentiate the loss
                whole.append(out)
                return out[0]
            return out

        # what f reaches is walked for stored tracers, not this wrapper's (whose globals
        # are builtins): f's tracers stored on a global object were left dead tracers
        value, grads = _gradient_of(trace, first, args, zeros_for_none, holomorphic,
                                    on_final, "withgradient", reach=(f, whole))
        return (_with_aux(whole[0], value, trace) if whole else value), grads
    finally:
        resume_gc()


def _with_aux(whole, value, trace):
    """``whole``, the tuple ``f`` returned, with its loss replaced by ``value`` and this
    transform's tracers in the other entries replaced by their values (an outer transform's
    stay traced, as ``value`` does)."""
    aux = fmap(lambda a: python_number(a._val) if type(a) is Tracer and a._trace is trace
               else a, list(whole[1:]))
    return type(whole)(value, *aux) if hasattr(whole, "_fields") else (value, *aux)


def _refuse_no_arguments(f):
    """``fl.gradient(f)`` as ``jax.grad(f)``, for a function that needs arguments: say that
    the gradient is taken at given arguments (a function of none has the empty gradient)."""
    # lazy: only on this error path
    import inspect

    try:
        inspect.signature(f).bind()
    except TypeError:
        raise TypeError(f"gradient(f, *args) is the gradient at args (Flux's gradient(f, x)), "
                        f"not a function (jax.grad(f)), and got no args for "
                        f"{getattr(f, '__name__', 'f')}: write fl.gradient(f, x), or "
                        f"lambda x: fl.gradient(f, x)[0] for a function") from None
    except ValueError:  # no signature to read (a builtin): let the call say what it says
        pass


def _gradient_of(trace, f, args, zeros_for_none, holomorphic, on_final=None,
                 who="gradient", reach=(None, None)):
    if not args:
        _refuse_no_arguments(f)
    targs, leaves, spec, made, rebuilt = _trace_args(trace, args, trace.leaf, who)
    if on_final is not None and any(type(x) is Tracer and recorded(x) for x in leaves):
        raise DifferentiationError(ON_FINAL_COMPILED)
    if holomorphic:
        _check_complex_inputs(leaves, made)
    out = _run(trace, f, targs, rebuilt, *reach)
    if type(out) is not Tracer or out._trace is not trace:
        if type(out) is Tracer and out._trace.level > trace.level:
            raise DifferentiationError(LEAKED)
        _check_scalar(out, holomorphic)
        cts = [None] * len(leaves)
        if on_final is not None:  # no backward pass: every gradient is final now
            final = _Final(leaves, zeros_for_none, on_final)
            for k in range(len(leaves)):
                final(k, None)
            return out, _written_back(rebuilt, _tree(spec, final.out))
        return out, _written_back(rebuilt, _grads(spec, leaves, cts, zeros_for_none))
    value = out._val
    if type(value) is not np.float64 or holomorphic:  # the common case needs no check
        _check_scalar(value, holomorphic)
    seed = _one(value.dtype) if isinstance(value, (np.ndarray, np.generic)) \
        else _one_like(value)
    value = python_number(value)  # a loss of traced Python numbers only: one, as plainly
    if on_final is not None:
        final = _Final(leaves, zeros_for_none, on_final)
        sweep(trace.tape, {out._box: seed}, made, final=final)
        return value, _written_back(rebuilt, _tree(spec, final.out))
    cts = sweep(trace.tape, {out._box: seed}, made)
    return value, _written_back(rebuilt, _grads(spec, leaves, cts, zeros_for_none))


def _written_back(rebuilt, result):
    """``result``, once what the function set on its arguments' copy is written back to
    them: after the transform has succeeded (a refused output or a failed backward pass
    leaves the arguments as they were)."""
    if rebuilt is not None:
        rebuilt.write_back()
    return result


def gradient(f: Callable, *args, zeros_for_none: bool = False,
             holomorphic: bool = False) -> tuple:
    """The gradient of the scalar ``f(*args)`` with respect to each argument.

    Returns a tuple with one entry per argument, shaped like the argument (structural:
    nested lists, dicts, dataclasses and models come back as the same structure). An entry is
    ``None`` where no derivative flows: integer and boolean arguments, non-array parts of
    objects, and float arguments the output does not depend on. Pass
    ``zeros_for_none=True`` to get zeros for float arguments instead of ``None``. So does a
    function whose output is a number that does not depend on the inputs (``return 0.0``,
    an integer count); a boolean output is refused.

    ``f`` may be any Python: loops, ``if`` on concrete values, recursion, closures, NumPy
    calls, and in-place writes into arrays it computes (``u[1:-1] += ...``). The caller's
    arrays are never changed: a write to a traced argument lands on the traced copy. What
    ``f`` sets on its arguments' objects (``self.calls += 1``, ``self.state = h``, an item
    appended to a list field) is kept, as when ``f`` runs eagerly, traced values as plain
    arrays; a layer used at two places is one object, as it is eagerly. Its gradient (and a
    tied array's) is the total over every use, found at each of its places: do not add the
    places up (Zygote gives each place its own use's share, and Flux's tests add them).

    ``f`` runs on a traced copy of its arguments; an object it reaches otherwise, through a
    global or a closure, is the original even where it is also a part of an argument (``enc``
    with ``model.layers[0] is enc``): its uses are constants (the gradient is with respect
    to the arguments, as JAX's is: no derivative flows through ``enc(x)``), and ``enc is
    m.layers[0]`` or ``self.last is self.layers[0]`` after ``self.last = enc`` is False
    inside ``f``, though True eagerly. Reach what is differentiated through the arguments
    (``m.layers[0]``). (The copy is not put in the global's or the closure's place: a
    module's globals and a closure's cells are shared with other functions and threads, and
    the functions ``f`` calls would still see the original.)

    A derivative is never dropped silently: what cannot be differentiated (a NumPy function
    without a rule, ``float(x)``, a traced value written into a plain NumPy array) raises
    :class:`DifferentiationError` saying what to write instead. The only ways to cut a
    derivative on purpose are :func:`stop_gradient` and casts to integer or boolean dtypes
    (``x.astype(int)``).

    Complex arguments follow JAX's and HIPS autograd's convention: for a real ``f`` of
    ``z = x + iy`` the gradient is ``df/dx - i df/dy``, the conjugate of Zygote's (Flux's)
    and PyTorch's ``df/dx + i df/dy`` (Zygote's ``gradient(z -> abs2(z), 3 + 4im)`` is
    ``6 + 8im``; here it is ``6 - 8j``), so a descent step is ``z -= lr * np.conj(g)``. A
    complex output is refused unless ``holomorphic=True``: then ``f`` must be holomorphic in
    complex arguments (this is not checked) and the gradient is its complex derivative
    ``f'(z)`` (Zygote's ``gradient(real∘f, z)`` is ``conj(f'(z))``).

    >>> import numpy as np, fluxml as fl
    >>> fl.gradient(lambda x, y: np.sum(x * y), np.array([1.0, 2.0]), 3.0)
    (array([3., 3.]), 3.0)
    >>> fl.gradient(lambda z: np.real(z * np.conj(z)), 3 + 4j)
    ((6-8j),)
    >>> fl.gradient(lambda z: z ** 2, 1j, holomorphic=True)
    (2j,)
    """
    pause_gc()
    try:
        return _gradient_of(ReverseTrace(), f, args, zeros_for_none, holomorphic)[1]
    finally:
        resume_gc()


_ONES: dict = {}


def _one(dtype):
    """The seed cotangent 1 of a scalar output (one read-only constant per dtype)."""
    one = _ONES.get(dtype)
    if one is None:
        one = _ONES[dtype] = np.ones((), dtype)
        one.flags.writeable = False
    return one


def _one_like(value):
    """The seed 1 on the device of a loss held by another array library (CuPy): a NumPy
    seed would send the whole backward sweep to the CPU, or fail on mixing."""
    # lazy: the backends sit above the engine; only another library's loss comes here
    from fluxml.backend import array_module

    device = getattr(getattr(value, "_trace", None), "device", None)
    if device is not None:  # fl.compile of a GPU's arrays: the seed on the GPU, as eagerly
        return device.ones((), value.dtype)
    return array_module(value).ones((), value.dtype)


def _check_scalar(out, holomorphic=False):
    """A real scalar output. One that does not depend on the inputs (a Python or NumPy
    number) is accepted: its gradient is None (zeros with ``zeros_for_none``). A boolean is
    refused: a comparison has no derivative, and returning one is more likely a slip."""
    value = raw(out)
    if type(value) in (np.float64, np.float32, float) and not holomorphic:
        return
    if isinstance(value, (bool, np.bool_)) or getattr(value, "dtype", None) == np.bool_:
        raise DifferentiationError(
            f"gradient needs f to return a real number, but it returned a boolean ({value!r}); "
            "a comparison has no derivative. Return a float (the gradient of a number that "
            "does not depend on the inputs is None, or zeros with zeros_for_none=True).")
    shape = np.shape(value) if not isinstance(out, (tuple, list, dict)) else None
    integer = isinstance(out, (int, float, np.integer)) or \
        getattr(getattr(value, "dtype", None), "kind", None) in ("i", "u")  # (fl.compile's)
    if shape != () or not _is_float(raw(out)) and not integer:
        what = f"shape {shape}" if shape is not None else f"a {type(out).__name__}"
        raise DifferentiationError(
            f"gradient needs f to return a real scalar, but it returned {what}.\n"
            "Possible fixes:\n"
            "  - reduce it (np.sum, np.mean) if you want the gradient of a total;\n"
            "  - use fl.jacobian(f, x) for every derivative of a vector output;\n"
            "  - use fl.pullback(f, x) and call the returned function with a cotangent.")
    if holomorphic and not np.iscomplexobj(value):
        raise DifferentiationError(
            f"gradient(..., holomorphic=True) needs f to return a complex scalar; it returned "
            f"a real {np.result_type(value)} (a real function of a complex argument is not "
            "holomorphic: drop holomorphic=True to get df/dx - i df/dy)")
    if not holomorphic and np.iscomplexobj(value):
        raise DifferentiationError(
            "gradient needs a real output, but f returned a complex number.\n"
            "Possible fixes:\n"
            "  - return a real loss: np.abs(z) ** 2, np.real(z), np.imag(z) ...;\n"
            "  - for the complex derivative f'(z) of a holomorphic f, pass holomorphic=True.")


def _check_complex_inputs(leaves, made):
    for x, box in zip(leaves, made):
        if box is not None and not np.iscomplexobj(raw(x)):
            raise DifferentiationError(
                "gradient(..., holomorphic=True) needs complex arguments; got a real "
                f"{np.result_type(raw(x))} one. Cast it (x.astype(complex)), or drop "
                "holomorphic=True for a real function.")


def pullback(f: Callable, *args) -> tuple[Any, Callable]:
    """``(f(*args), back)`` where ``back(cotangent)`` returns one structural cotangent per
    argument: the vector-Jacobian product. ``back`` may be called any number of times.

    >>> import numpy as np, fluxml as fl
    >>> y, back = fl.pullback(lambda x: 2 * x, np.array([1.0, 2.0]))
    >>> back(np.array([1.0, 10.0]))
    (array([ 2., 20.]),)
    """
    trace = ReverseTrace()
    targs, leaves, spec, made, rebuilt = _trace_args(trace, args, trace.leaf, "pullback")
    pause_gc()
    try:
        out = _run(trace, f, targs, rebuilt)
    finally:
        resume_gc()
    out_leaves, out_spec = flatten(out, _leaf_or_none)
    values = []
    for o in out_leaves:
        if type(o) is Tracer and o._trace is trace:
            v = o._val
            values.append(python_number(v) if type(v) in WEAK else v if o._owned
                          else v.copy())
        elif type(o) is Tracer and o._trace.level > trace.level:
            raise DifferentiationError(LEAKED)
        else:
            values.append(o)
    value = _written_back(rebuilt, unflatten(out_spec, values))
    trace.snapshots = None  # the tape holds the copies it needs; the originals may go

    def back(cotangent):
        ct_leaves, _ = flatten(align(cotangent, out_spec, "pullback: the cotangent"),
                               _leaf_or_none)
        if len(ct_leaves) != len(out_leaves):
            raise ValueError(f"pullback: the cotangent has {len(ct_leaves)} leaves, the output "
                             f"{len(out_leaves)}; pass one array per output array")
        seeds = {}
        for o, c in zip(out_leaves, ct_leaves):
            if c is None or type(o) is not Tracer or o._trace is not trace:
                continue
            if np.shape(raw(c)) != o.shape:
                raise ValueError(f"pullback: cotangent of shape {np.shape(raw(c))} for an "
                                 f"output of shape {o.shape}")
            if type(c) is not Tracer:
                if np.iscomplexobj(c) and not np.iscomplexobj(raw(o)):
                    raise ValueError("pullback: a complex cotangent for a real output; pass "
                                     "its real part (the imaginary part pairs with nothing)")
                c = library_asarray(c, raw(o).dtype)  # (CuPy's stays CuPy's)
            seeds[o._box] = c if o._box not in seeds else seeds[o._box] + c
        pause_gc()
        try:
            cts = trace.backward(seeds, made, free=False) if seeds else [None] * len(made)
        finally:
            resume_gc()
        # the sweep never writes into a seed, but a seed (or a view of it) may come back as a
        # gradient: marked as handed out, such a gradient is copied (not the caller's array)
        return _grads(spec, leaves, cts, False, _handed_out(seeds.values()))

    return value, back


vjp = pullback  # JAX's name for the same transform


def _leaf_or_none(x):
    """Leaves of outputs and cotangents: arrays, numbers, and None (a missing cotangent)."""
    return x is None or is_array_leaf(x)


def stop_gradient(x):
    """``x`` with no derivative flowing through it, at any order (Flux's
    ``ignore_derivatives``); maps over trees. Arrays come back as plain arrays of their own
    (copies, traced or not, so that code behaves the same under a transform), which may be
    written freely. An array at several places (a tied weight) is one copy at all of them,
    and a layer used twice one layer, as in ``x``.

    >>> import numpy as np, fluxml as fl
    >>> fl.gradient(lambda x: np.sum(x * fl.stop_gradient(x)), np.array([3.0]))
    (array([3.]),)
    """
    leaves, spec = flatten(x)
    copies: dict = {}  # id of a leaf -> its copy (the leaves keep the ids alive)
    out = [copies[id(v)] if id(v) in copies else copies.setdefault(id(v), _stopped(v))
           for v in leaves]
    return unflatten(spec, out, shared={})


def _stopped(t):
    """The value as a plain array of its own. Under a transform the buffer under the handle
    may be one the tape keeps, or the caller's argument, so writes into the result must not
    reach it; a plain array is copied too, so that code behaves the same with and without a
    transform (a NumPy scalar is immutable and needs no copy)."""
    v = raw(t)
    if type(v) is Tracer:  # under fl.compile: a copy recorded in the program, as a primitive
        # of its own with no derivative, so that a branch or loop body replayed under a
        # transform (fl.cond, fl.scan, fl.while_loop's derivatives) keeps it cut
        # lazy: the compiler sits above the engine
        from fluxml.compiler.trace import STOP_GRADIENT

        return STOP_GRADIENT(v)
    return v.copy() if type(v) is np.ndarray else python_number(v)
