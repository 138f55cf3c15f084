"""``fl.compile``: trace once per signature, run generated straight-line code after."""

from __future__ import annotations

import functools
import threading
import time
import types
import warnings
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from fluxml._checks import flag, positive_int, real_in
from fluxml._kernel_modules import on_kernel_library
from fluxml.ad.core import Tracer, differentiating
from fluxml.compiler import free, passes, randomness
from fluxml.compiler import numbers as traced_numbers
from fluxml.compiler.calls import _Keywords, _path_of, input_names, signature, trace
from fluxml.compiler.guards import is_jax, make_extractor, make_rebinder
from fluxml.compiler.ir import Const, Program, Var
from fluxml.compiler.tiered import Background, on_cpu, on_host, placement, restoring
from fluxml.compiler.trace import CompileError
from fluxml.tree import LEAF, flatten, nodes, unflatten

BACKENDS = ("numpy", "cupy", "xla")
_RETRACE_WARNING = 8  # traces of one function after which re-tracing is reported


class Entry:
    """One traced signature: its program, generated source and the function that runs it."""

    __slots__ = ("program", "source", "run", "positions", "out_spec", "compile_time", "extract",
                 "rebind", "known", "numbers", "pending", "copies", "alias", "returned",
                 "shared", "scalars", "free", "written", "backend", "read", "traced")

    def __init__(self, program, source, run, positions, out_spec, compile_time, extract=None,
                 rebind=None, numbers=(), copies=(), alias=None, returned=(), shared=(),
                 scalars=()):
        self.program = program
        self.source = source
        self.run = run
        self.positions = positions  # leaf index of each program input
        self.out_spec = out_spec
        self.compile_time = compile_time
        self.extract = extract  # the fast check of a call's arguments (guards.py)
        # ``rebind(args, results, arrays)`` points the caller's tree, and the list of the
        # call's input arrays, at the new values of the jax.Arrays the program wrote, which
        # ``run`` returns after the results (guards.make_rebinder); None if none
        self.rebind = rebind
        # the input arrays of the last call whose arguments passed (with the new values of
        # the rebound ones): what the next call's usually are, which ``extract`` checks
        # faster. Replaced whole, never changed in place (threads read it unlocked).
        self.known = (None,) * len(positions)
        self.numbers = numbers  # the inputs that are traced numbers (numbers.py)
        # the xla back end's compilation in a background thread (tiered.Background): ``run``
        # is the NumPy code of the program until XLA's is ready; None if XLA's from the start
        self.pending = None
        self.copies = copies  # the outputs each call copies (see _copies)
        # ``alias(args, arrays, arrays)`` points the leaves the function pointed at another
        # input's array at that array (calls._aliases); None if none
        self.alias = alias
        # ``(result index, input position)``: the results that are the caller's own array
        # (calls._returned), handed back as that array
        self.returned = returned
        # ``(result index, index of the first)``: the results that were one value when traced
        # (``return h, h``; a weight tied between two layers of a returned model), handed
        # back as one array, as eagerly (copied apart, a returned model held two)
        self.shared = shared
        # the 0-d results that are the new value of a 0-d array argument (a running count
        # the function rebound): 0-d arrays, as the argument, where XLA's come back as
        # NumPy scalars (a returned model holding one was refused at the next call)
        self.scalars = scalars
        # the plain globals and closed-over values the function read when traced (free.py);
        # a call whose values are these objects is this trace's (the fast path)
        self.free = ()
        # ``read()``: their current values (free.reader: those fn names, and those read by
        # the user's code this trace ran, reached through an argument or an object), or None
        self.read = None
        self.traced = ()  # free.key of the values read when traced
        # the input positions of the NumPy arrays the program writes, which must be writable
        # (checked before a call runs: a read-only one stopped the program part way, with a
        # bare "output array is read-only", after writing the arrays before it)
        self.written = ()


def _copies(program, distinct) -> tuple:
    """The outputs a call must copy, so that each is a new array as eager code returns:
    those distinct at trace time (``distinct``, an :func:`_output_pattern`) that the passes
    merged, those that are an argument's array the program writes (a returned ``self.h``
    the function rebound: the next call would overwrite the result), and constants (the
    same array on every call)."""
    inputs = {v.id for v in program.inputs if type(v) is Var}
    written = {v.id for _, v in program.writes if type(v) is Var}
    written.update(e.outs[0].id for e in program.eqns  # (computed into an input's buffer)
                   if type(e.out) is Var and e.out.id in inputs)
    return tuple(k for k, (v, a, b) in
                 enumerate(zip(program.outputs, distinct, _output_pattern(program)))
                 if not (type(v) is Var and v.weak)  # (a Python number: nothing to copy)
                 and (a != b or (type(v) is Var and v.id in written)
                      or (type(v) is Const and hasattr(v.value, "copy"))))


def _written_scalars(program) -> tuple:
    """The results (as traced) that are a 0-d value the program writes into an argument."""
    written = {v.id for _, v in program.writes if type(v) is Var and v.shape == ()}
    return tuple(k for k, v in enumerate(program.outputs) if type(v) is Var and v.id in written)


def _output_pattern(program) -> list:
    """For each output, the position of the first output that is the same value."""
    first: dict = {}
    return [first.setdefault(v.id, k) if type(v) is Var else k
            for k, v in enumerate(program.outputs)]


class Compiled:
    """A compiled function (made by :func:`compile`). Call it as the original.

    ``ir`` and ``source`` show the program and the generated code of the last signature;
    ``cache`` maps each signature to its :class:`Entry`; ``traces`` counts traces so far."""

    def __init__(self, fn, backend, cache_size, optimise, donate=True, background=True):
        self.fn = fn
        # A model (or a model's method) compiled: its arrays are arguments of the program,
        # not constants, so that training it later is seen by the compiled code.
        self._owner, self._body = _split_owner(fn)
        self._free = free.reader(self._body)  # its plain globals and closed-over values
        self.backend = backend
        self.cache_size = cache_size
        self.optimise = optimise
        self.donate = donate
        self.background = background
        self.cache: OrderedDict = OrderedDict()
        self.traces = 0
        self.last: Entry | None = None
        self._warned = False
        self._tracing = threading.RLock()  # one thread at a time looks up, traces, caches
        functools.update_wrapper(self, fn)

    def __get__(self, instance, owner=None):
        """``@fl.compile`` on a method: the instance is the first argument (a model's arrays
        are then arguments of the program)."""
        if instance is None:
            return self
        return functools.partial(self, instance)

    @property
    def ir(self) -> Program:
        if self.last is None:
            raise CompileError("fl.compile: nothing traced yet; call the function first")
        return self.last.program

    @property
    def source(self) -> str:
        """The generated code of the last signature, followed by that of the branches and
        loop bodies it calls (``fl.cond``, ``fl.while_loop``, ``fl.scan``)."""
        if self.last is None:
            raise CompileError("fl.compile: nothing traced yet; call the function first")
        return self.last.source + "".join(f"\n{s}" for s in _nested(self.last.program, set()))

    @property
    def tier(self) -> str:
        """The back end whose code the last signature runs now: the one compiled for, or
        ``"numpy"`` while XLA compiles in the background (see :meth:`wait`)."""
        if self.last is None:
            raise CompileError("fl.compile: nothing traced yet; call the function first")
        pending = self.last.pending
        return self.last.backend if pending is None else pending.tier

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the XLA compilations under way in the background (``backend="xla"``): the
        calls after it run XLA's code. Raises :class:`CompileError` if XLA could not compile
        a program (its calls then keep running the NumPy code), :class:`TimeoutError` when
        ``timeout`` seconds pass first. Nothing to wait for on other back ends."""
        if timeout is not None:  # (a string failed in time arithmetic)
            real_in("fl.compile's wait", "timeout (seconds, or None)", timeout, 0)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._tracing:
            entries = list(self.cache.values())
        for entry in entries:
            job = entry.pending
            if job is None:
                continue
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not job.wait(left):
                raise TimeoutError(f"fl.compile: XLA's compilation of {_fname(self.fn)} did "
                                   f"not end within {timeout} s")
            if job.error is not None:
                raise CompileError(f"fl.compile(backend='xla'): XLA could not compile "
                                   f"{_fname(self.fn)} ({type(job.error).__name__}: "
                                   f"{job.error}); its calls run the NumPy back end's code, "
                                   "or compile with backend='numpy'") from job.error

    def __call__(self, *args, **kwargs):
        if kwargs:
            args = args + (_Keywords(kwargs),)
        if self._owner is not None:
            args = (self._owner,) + args
        if differentiating():  # inside a gradient: run as the eager code does (train mode)
            return _run(self._body, args)
        last = self.last
        if last is not None and last.extract is not None:  # the fast path: same signature
            values = () if last.read is None else last.read()
            if not values or free.same(values, last.free):
                arrays = last.extract(args, last.known)
                if arrays is not None:
                    return _execute(last, args, arrays)
        if self.backend == "xla":
            _register_jax()  # JAX arrays are leaves (device-resident state), not static parts
        leaves, spec = flatten(args)
        for x in leaves:
            if type(x) is Tracer:  # inside gradient/jvp of an outer transform: run eagerly
                return _run(self._body, args)
        numbers = traced_numbers.find(spec, leaves)
        key = signature(spec, leaves, numbers)
        values = () if self._free is None else self._free()
        if values:  # (a global or closed-over number read as a constant: its value counts)
            key = key, free.key(values)
        with self._tracing:
            entry = self.cache.get(key)
            values = () if entry is None or entry.read is None else entry.read()
            if entry is not None and not free.same(values, entry.free) and \
                    free.key(values) != entry.traced:  # a value read by code the trace
                # reached through an argument or an object (free.Ran) changed: traced anew
                del self.cache[key]
                if entry.pending is not None:
                    entry.pending.dropped = True
                entry = None
            if entry is None:
                entry = self._trace(args, leaves, spec, key, numbers)
                # (after the trace: a function that writes a watched value itself runs no
                # Python on its later calls)
                values = () if entry.read is None else entry.read()
                entry.traced = free.key(values)
            else:
                self.cache.move_to_end(key)
            entry.free = values  # (equal values, new objects: the fast path's from now on)
            self.last = entry
        arrays = [leaves[i] for i in entry.positions]
        for k in entry.written:
            if type(arrays[k]) is np.ndarray and not arrays[k].flags.writeable:
                raise CompileError(
                    f"fl.compile: {_path_of(args, entry.positions[k])} is a read-only array "
                    f"(flags.writeable is False), which {_fname(self.fn)} writes in place; "
                    "nothing was run. Give it a writable copy (x.copy()).")
        return _execute(entry, args, arrays)

    def _trace(self, args, leaves, spec, key, numbers=None):
        start = time.perf_counter()
        watched = randomness.generators(self._body, spec)
        before = [randomness.state(g) for _, g, _ in watched]
        with free.Ran() as ran:  # the user's code that runs, wherever reached from
            program, positions, out_spec, aliases, returned = trace(
                lambda *a: _run(self._body, a), args, leaves, spec, numbers, self._body)
        randomness.check(watched, before, _fname(self.fn), ran.generators)
        functions = [n.static for n in nodes(spec)
                     if n.kind == "static" and isinstance(n.static, types.FunctionType)]
        read = free.reader(self._body, ran, functions)
        distinct = _output_pattern(program)
        written = tuple(sorted({k for k, _ in program.writes}))  # (as traced, before the passes)
        scalars = _written_scalars(program)
        gpu = [i for i in positions if on_kernel_library(leaves[i])]  # (CuPy's arrays)
        backend = self.backend or ("cupy" if gpu else "numpy")
        steps = passes.pipeline(backend)
        if self.optimise:
            program = passes.optimise(program, steps[:-1])
        names = input_names(self._body, args, leaves, positions)
        # the inputs that are traced numbers (by input position)
        number_inputs = tuple(k for k, i in enumerate(positions) if numbers and i in numbers)
        devices = [is_jax(leaves[i]) for i in positions]
        if backend != "cupy" and gpu:
            raise CompileError(
                f"fl.compile(backend={backend!r}): {_path_of(args, gpu[0])} is a GPU's array "
                f"({type(leaves[gpu[0]]).__module__}.{type(leaves[gpu[0]]).__name__}); "
                "compile with backend='cupy' (or give no backend: it is picked by the "
                "arrays), or move the tree back with fl.cpu(...)")
        if backend != "xla" and any(devices):
            k = devices.index(True)
            raise CompileError(
                f"fl.compile(backend={backend!r}): {_path_of(args, positions[k])} is a "
                "jax.Array; compile with backend='xla' to use device-resident JAX state, or "
                "move the tree back with fl.cpu(...)")
        if backend == "numpy":  # (its last pass, buffer planning, is _numpy_code's)
            program, source, run = _numpy_code(program, names, _fname(self.fn), self.optimise)
        else:
            if self.optimise:
                program = steps[-1](program)
            source, run = lower(program, names, backend, _fname(self.fn), devices,
                                self.donate, number_inputs)
        rebind = None
        if getattr(run, "rebinds", None):  # jax.Arrays written: rebind the caller's leaves
            n_out = len(program.outputs)
            targets = {i: n_out + j for j, k in enumerate(run.rebinds)
                       for i, x in enumerate(leaves) if x is leaves[positions[k]]}
            rebind = make_rebinder(args, spec, targets, (_Keywords,),
                                   {k: n_out + j for j, k in enumerate(run.rebinds)})
        extract = make_extractor(args, spec, leaves, positions, numbers,
                                 {positions[k] for k in written})
        alias = make_rebinder(args, spec, aliases, (_Keywords,)) if aliases else None
        entry = Entry(program, source, run, positions, out_spec, time.perf_counter() - start,
                      extract, rebind, number_inputs,
                      tuple(k for k in _copies(program, distinct) if k not in returned), alias,
                      tuple(returned.items()),
                      tuple((k, j) for k, j in enumerate(distinct) if j != k), scalars)
        entry.written = written
        entry.backend = backend
        entry.read = read
        on_device = [leaves[i] for i, d in zip(positions, devices) if d]
        if backend == "xla" and self.background and all(map(on_cpu, on_device)):
            # the caller runs the NumPy code while XLA compiles (tiered.py)
            numpy_run = restoring(_numpy_code(program, names, _fname(self.fn), self.optimise)[2],
                                  [k for k, _ in program.writes if not devices[k]])
            if any(devices):
                numpy_run = on_host(numpy_run, devices, run.rebinds)
            entry.pending = Background(entry, numpy_run, run, list(map(placement, on_device)))
        self.traces += 1
        if len(self.cache) >= self.cache_size:
            _, evicted = self.cache.popitem(last=False)
            if evicted.pending is not None:  # its XLA code would never run: not compiled
                evicted.pending.dropped = True
        self.cache[key] = entry
        if self.traces > _RETRACE_WARNING and not self._warned:
            self._warned = True
            warnings.warn(
                f"fl.compile: {_fname(self.fn)} has been traced {self.traces} times: its "
                "arguments keep changing shape, dtype, structure or the value of a "
                "non-array argument (each new combination traces again). Pass changing "
                "numbers as 0-d arrays, or list them in their class's `hyperparameters`, "
                "to keep one trace.", stacklevel=3)
        return entry


def compile(fn: Callable | None = None, *, backend: str | None = None, cache_size: int = 32,
            optimise: bool = True, donate: bool = True, background: bool = True):
    """Compile ``fn``: trace it on its first call for each signature (shapes, dtypes, tree
    structure, values of non-array arguments) into an IR, optimise it, and run generated
    straight-line code on later calls with the same signature.

    ``fn`` may call ``fl.gradient``, update an optimiser and write into its arguments in
    place: the compiled code writes the same arrays. A field it gives a new array of the same
    shape and dtype (``self.state = h``) gets the new values written into the array it held;
    a field it points at another argument's array (``self.seen = self.w``, ``self.last = x``)
    holds that very array after the call, as eagerly. A result that is an argument's NumPy
    array, unchanged or written in place, is that array (``state, model = step(state,
    model, x)`` after ``fl.update`` keeps tied weights tied and counters counting), and a
    returned tree shares what the function's result shared. Python control flow is fixed at trace
    time; an ``if`` on a traced value is refused with the line that did it. An optimiser's
    hyperparameters (the fields a class lists in ``hyperparameters``: ``compiler/numbers.py``)
    are inputs, their values not part of the signature (their types are): ``fl.adjust``
    between calls reuses the trace. A Python float among them is weak in NumPy's promotion,
    as eagerly (``x32 * self.k`` stays float32).

    Arrays ``fn`` reads without taking them as arguments are constants of the program, copied
    when it is traced (as JAX does): pass anything that changes as an argument. The numbers,
    strings and tuples of them that ``fn`` reads as globals or closes over (or the functions of
    yours it calls do; a ``functools.partial``'s keywords too) are part of the signature
    (``LR = 0.5`` between calls traces again, ``compiler/free.py``), and so are small lists
    and dicts of them (16 items at most, compared item by item: ``CONFIG["lr"] = 0.5`` is
    seen); an object's fields (``cfg.scale``), larger or nested containers, and globals
    defined after ``fl.compile`` is called are not. The user's code the trace ran, however
    reached (a model argument's ``__call__``, a function passed in, a closed-over object's
    method), counts as well: the globals it reads, and the plain class attributes of the
    user's classes it could read (``M.gain = 6.0`` traces again); not the values a function
    reached so closes over. Side effects that involve no traced value (a print, a write into
    a global array such as a call counter, ``list.append``) run once, while tracing, not on
    later calls, as under ``jax.jit``. A draw from a NumPy generator while tracing, however
    reached (a helper's global ``rng``, ``cfg.rng``), is refused with a ``CompileError``
    (its numbers would be constants); draw through ``fl.dropout``/``fluxml.ad.core.draw``
    or pass the numbers in. An argument's
    array reached another way (a bound method ``act = layer.__call__`` held by the model, a
    closure over it) would be such a constant, stale after the next change: it is refused
    with a ``CompileError`` naming it (a layer held as a field and called is read as an
    argument; computations on such an array outside any traced operation, ``w.sum()``, are
    not seen). A model (or a
    model's method) compiled directly takes its own arrays as arguments, so
    ``predict = fl.compile(model)`` sees the weights as they are at each call. ``backend``:
    ``"numpy"``, ``"cupy"`` (CuPy arrays in, fused elementwise kernels) or ``"xla"`` (JAX);
    None (the default) picks ``"cupy"`` for a signature whose arrays are a GPU's (CuPy's,
    ``fl.gpu``), else ``"numpy"``.
    ``cache_size`` bounds the traces kept (``.cache``); ``optimise=False`` skips the passes.

    Device-resident state (``backend="xla"``): arguments whose arrays are ``jax.Array``s
    (``fl.xla(tree)``) stay on XLA's device. They go to the jitted program as they are, with
    no copy; the large arrays the function writes are donated to XLA (their buffers reused
    for the new values; not in a program with run-time checks) and, JAX arrays being
    immutable, the caller's tree is rebound to the new arrays (attributes, list and dict
    entries assigned; a tuple on the way, such as an optimiser's state, rebuilt and assigned
    to its holder), where a NumPy argument is written in place. Results are then
    ``jax.Array``s too. A donated array is deleted: a reference to it kept outside the tree
    raises JAX's "Array has been deleted" (``donate=False`` keeps it, at the cost of new
    buffers each call). NumPy and JAX leaves may be mixed.

    XLA's compiler takes seconds for a training step. With ``background=True`` (the default)
    and NumPy arguments, XLA compiles a new signature's program in a background thread while
    the calls run the NumPy back end's code for the same program (same values to float
    rounding, same writes into the arguments); XLA's code takes over once ready. ``.tier``
    says which runs now; ``.wait()`` waits for XLA; ``background=False`` compiles for XLA in
    the first call instead (as ``jax.Array`` arguments on a GPU or TPU always do; those on
    the CPU go to the NumPy code as copies, their new values rebound as XLA's are).

    >>> import numpy as np, fluxml as fl
    >>> @fl.compile
    ... def f(x):
    ...     return np.sum(np.tanh(x) ** 2)
    >>> round(float(f(np.ones(3))), 6)
    1.740077
    >>> print(f.ir)
    { lambda v1:f64[3] .
        v2:f64[3] = tanh v1 into buf1
        v3:f64[3] = power v2 2
        v4:f64[] = sum v3 axis=None keepdims=False
      in (v4) }
    >>> print(f.source)  # buf1: a buffer kept between calls (what reaches the result never is)
    def f(x):
        v2 = np.tanh(x, out=buf1)
        v3 = v2 ** 2
        v4 = np.add.reduce(v3, axis=None, keepdims=False)
        return (v4,)
    <BLANKLINE>
    """
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"fl.compile: backend must be None or one of {BACKENDS}; got "
                         f"{backend!r}")
    cache_size = positive_int("fl.compile", "cache_size", cache_size)
    for name, value in (("optimise", optimise), ("donate", donate), ("background", background)):
        flag("fl.compile", name, value)  # (optimise="no" was true: the passes ran)
    if fn is None:
        return lambda f: compile(f, backend=backend, cache_size=cache_size, optimise=optimise,
                                 donate=donate, background=background)
    if not callable(fn):
        raise TypeError(f"fl.compile expects a function; got {type(fn).__name__}")
    return Compiled(fn, backend, cache_size, optimise, donate, background)


def _numpy_code(program, names, fname, optimise):
    """``(program, source, function)`` of the NumPy back end for a program the passes have
    optimised up to buffer planning: with ``optimise``, buffers kept between calls where they
    help, and a plain version for a call that comes while one runs."""
    if not optimise:
        return (program,) + lower(program, names, "numpy", fname)
    # lazy: as lower's (it imports the layers' kernels)
    from fluxml.compiler.numpy_backend import rewrite

    program = passes.dead_code(rewrite(program))
    kept = passes.buffers(program, arena=True)
    source, run = lower(kept, names, "numpy", fname)
    if kept.arena:
        run = _one_at_a_time(run, lower(passes.buffers(program), names, "numpy", fname)[1])
    return kept, source, run


def _nested(program, seen) -> list[str]:
    """The sources of the sub-programs the program's equations hold, depth first."""
    out = []
    for eqn in program.eqns:
        stack = list((eqn.params or {}).values())
        while stack:
            p = stack.pop(0)
            if isinstance(p, (tuple, list)):
                stack[:0] = list(p)
            elif hasattr(p, "program") and isinstance(getattr(p, "source", None), str) \
                    and id(p) not in seen:
                seen.add(id(p))
                out.append(p.source)
                out += _nested(p.program, seen)
    return out


def _one_at_a_time(kept, plain):
    """``kept`` (which writes into buffers it keeps between calls) for one call at a time; a
    call that comes while one runs (another thread, or recursion) runs ``plain``."""
    lock = threading.Lock()

    def run(*arrays):
        if lock.acquire(blocking=False):
            try:
                return kept(*arrays)
            finally:
                lock.release()
        return plain(*arrays)

    return run


def _execute(entry, args, arrays):
    """Run a traced program on the arguments' arrays (checked against its signature, or by
    the fast path's extract), write its results back where it writes, and rebuild the
    output."""
    try:
        outs = entry.run(*arrays)
    except (ValueError, RuntimeError):
        _refuse_deleted(args, entry.positions, arrays)
        raise
    if entry.rebind is not None:
        entry.rebind(args, outs, arrays)
    if entry.alias is not None:
        entry.alias(args, arrays, arrays)
    entry.known = arrays
    if entry.copies or entry.returned or entry.shared or entry.scalars:
        outs = list(outs)
        for k in entry.copies:
            outs[k] = outs[k].copy()
        for k in entry.scalars:
            if isinstance(outs[k], np.generic):
                outs[k] = np.array(outs[k])
        for k, j in entry.returned:
            outs[k] = arrays[j]
        for k, j in entry.shared:
            outs[k] = outs[j]
    # (shared={}: a part met twice, as the Leaf of a tied weight in a returned optimiser
    # state, or one rule in all its Leafs, is one object, as in what the function returned)
    return outs[0] if entry.out_spec is LEAF else unflatten(entry.out_spec, outs, shared={})


def _refuse_deleted(args, positions, arrays):
    """After a failed run: if an argument is a ``jax.Array`` deleted by an earlier call's
    donation (XLA's own error names only its buffer's position), say which one."""
    for k, a in enumerate(arrays):
        if is_jax(a) and a.is_deleted():
            raise CompileError(
                f"fl.compile(backend='xla'): {_path_of(args, positions[k])} is a jax.Array "
                "that an earlier compiled call donated (its buffer now holds the new value, "
                "rebound into the tree that was passed then). Pass the tree the earlier call "
                "rebound, not a reference kept from before it, or compile with donate=False.")


def _run(body, args):
    if args and type(args[-1]) is _Keywords:
        return body(*args[:-1], **args[-1])
    return body(*args)


def _split_owner(fn):
    """``(owner, body)``: for a model (an object with arrays or numbers) or a bound method of
    one, the object and the function to call with it first; else ``(None, fn)``. Its numbers
    are then part of the signature too: a bound method of an object holding only numbers
    (``self.k``) traced them as constants, and ran the old value after ``obj.k = 3.0``."""
    owner = getattr(fn, "__self__", None)
    if owner is not None and not isinstance(owner, type) and _has_leaves(owner):
        return owner, fn.__func__
    if not isinstance(fn, (type(_run), type(len))) and _has_leaves(fn):
        return fn, type(fn).__call__
    return None, fn


def _has_leaves(obj) -> bool:
    try:
        return bool(flatten(obj)[0])
    except Exception:  # noqa: BLE001 - an object the tree cannot walk: not a model
        return False


def _fname(fn) -> str:
    name = getattr(fn, "__name__", "fn")
    return name if name.isidentifier() else "fn"


# --- JAX arrays as leaves ----------------------------------------------------------------

_jax_registered = False


def _register_jax():
    """Make JAX arrays tree leaves (once, and only if JAX is installed: without it the xla
    back end says so when it lowers)."""
    global _jax_registered
    if _jax_registered:
        return
    try:
        # lazy: imports JAX, only for the xla back end
        from fluxml.backend.xla_arrays import xla_backend

        xla_backend()
    except ModuleNotFoundError:
        return
    _jax_registered = True


# --- back ends -----------------------------------------------------------------------------

def lower(program, names, backend, fname, devices=(), donate=True, numbers=()):
    """``(source, function)`` of the program on a back end."""
    if backend == "numpy":
        # lazy: a back end loads when first used (the xla one imports JAX, the cupy one CuPy)
        from fluxml.compiler import numpy_backend as b
    elif backend == "cupy":
        # lazy: as above
        from fluxml.compiler import cupy_backend as b
    else:
        # lazy: as above
        from fluxml.compiler import xla_backend as b

        return b.lower(program, names, fname, devices, donate, numbers)
    return b.lower(program, names, fname)

