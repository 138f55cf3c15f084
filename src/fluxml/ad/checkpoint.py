"""``checkpoint``: a function whose intermediate values are recomputed for the backward pass
instead of kept (gradient checkpointing, rematerialisation).

Its forward pass runs one level down, unrecorded, and records one tape node; the backward
pass runs the function again under ``pullback``. For that to give the gradient of the
function as it ran, the recompute must see what the forward pass saw, and do nothing the
forward pass did not:

- it starts from the arguments as they were before the forward pass (a copy made then; the
  arrays a layer updates in place, BatchNorm's running statistics, are set back to their
  values then for the recompute, and forward again after it), and draws the forward's
  random numbers (``_Replay``);
- what the forward pass sets on its arguments (``self.calls += 1``, ``self.state = h``,
  items put into lists and dicts) is written back to them as by ``fl.gradient``
  (``ad/writeback.py``), once; the arrays it stores are further outputs of the node, so
  that code after it reading them has their derivatives; what the recompute sets is
  dropped;
- a write in place into an argument's float array (not declared nontrainable) is refused
  by name: the forward pass would write into the caller's array, and the recompute read
  the written values.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable

import numpy as np

from fluxml import tree, treenodes
from fluxml.ad.api import _is_float, pullback
from fluxml.ad.core import (
    COMPILING,
    DifferentiationError,
    Tracer,
    _kept,
    compiling,
    raw,
    top_trace,
)
from fluxml.ad.custom import CLOSED_OVER, CUSTOM_MULTI, outputs
from fluxml.ad.reached import reached
from fluxml.ad.reverse import ReverseTrace
from fluxml.ad.writeback import (
    apply,
    changed_values,
    changes,
    contents,
    put_back,
    restore_parts,
)

WROTE_INTO = ("fl.checkpoint({name}): the function wrote in place into {what} ({error}). "
              "Inside fl.checkpoint the forward pass runs on the caller's arrays, so the "
              "write would change them and the recompute for the backward pass would start "
              "from the written values. Write into a copy (`x = x.copy()` first), declare a "
              "layer's state that it updates in place nontrainable (as BatchNorm's running "
              "statistics), or call the function without fl.checkpoint")


def checkpoint(f: Callable) -> Callable:
    """``f`` that stores nothing for the backward pass but its inputs, and recomputes its
    intermediate values when the gradient needs them (trading time for memory).

    ``f`` may be a layer (``fl.checkpoint(block)(x)``) or a function of layers; what it
    sets on its arguments (a counter, a state, running statistics) is kept once, as when
    it runs without ``checkpoint``, and the recompute draws the same random numbers (a
    Dropout's mask) from the same state. Keyword arguments are taken as positional ones
    are: their float arrays and numbers differentiated, the rest static.

    >>> import numpy as np, fluxml as fl
    >>> layer = fl.checkpoint(lambda x, w: np.tanh(x @ w))
    >>> x, w = np.ones((2, 3)), np.full((3, 3), 0.1)
    >>> g = fl.gradient(lambda w: np.sum(layer(x, w)), w)[0]
    >>> g.shape
    (3, 3)
    """
    call, receiver = _receiver(f)

    @functools.wraps(f)
    def wrapped(*args, **kwargs):
        whole = (receiver, args, kwargs)  # (keyword arguments as positional ones: floats
        # differentiated, the rest static)
        leaves, spec = tree.flatten(whole)
        trace = top_trace(leaves)
        if not isinstance(trace, ReverseTrace):
            return f(*args, **kwargs)
        return _record(f, call, whole, leaves, spec, trace)

    return wrapped


def _receiver(f):
    """``(call, receiver)`` with ``call(receiver, *args)`` doing ``f(*args)``: a layer, or a
    method bound to one, is an argument of the checkpoint too (its arrays are differentiated,
    what it sets on itself is written back), not a closed-over object."""
    if type(f) is types.MethodType and treenodes._fields(f.__self__) is not None:
        return (lambda r, *args, **kwargs: f.__func__(r, *args, **kwargs)), f.__self__
    if treenodes._fields(f) is not None:
        return (lambda r, *args, **kwargs: r(*args, **kwargs)), f
    return (lambda r, *args, **kwargs: f(*args, **kwargs)), None


def _record(f, call, whole, leaves, spec, trace):
    """Run ``call`` one level down on a copy of ``whole`` (receiver, arguments, keyword
    arguments), record one
    node on ``trace`` whose outputs are what it returned and the float arrays it stored on
    its arguments, write what it set back onto them, and return its output's tracers. The
    node's backward rule runs it again (``rerun``) from the arguments as they were."""
    name = getattr(f, "__name__", type(f).__name__)
    trainable = {id(x) for x in tree.flatten(whole, trainable=True)[0] if _is_float(x)}
    vals, parents, stands, boxes = list(leaves), [], {}, []
    for i, a in enumerate(leaves):
        if type(a) is Tracer and a._trace is trace:
            vals[i] = v = _guarded(_kept(a))
            parents.append((i, a._box))
            stands[id(v)] = a
            boxes.append(getattr(v, "_box", None))
        elif type(a) is np.ndarray and id(a) in trainable:  # (a constant: an input batch)
            vals[i] = v = _guarded(a)  # a write would reach the recompute, which reads it
            stands[id(v)] = a
    # the arguments as they are now: the recompute starts from here, whatever f does (with
    # a log: its sets are copies too, their members and its dicts' keys its layers)
    pristine = tree.flatten(tree.unflatten(spec, vals, shared={}, log=[]))[1]
    replay = _Replay(f, whole, leaves, spec, trace, trainable)
    log: list = []
    copy = tree.unflatten(spec, vals, shared={}, log=log)
    trace.closed = CLOSED_OVER
    replay.freeze(True)
    replay.mark_draws()
    try:
        out = call(copy[0], *copy[1], **copy[2])
    except ValueError as e:
        if "read-only" not in str(e):
            raise
        raise DifferentiationError(WROTE_INTO.format(
            name=name, what="an array of its arguments or one it closes over",
            error=e)) from None
    finally:
        replay.freeze(False)
        replay.mark_draws()
        trace.closed = None
    replay.check_closed_over(name)
    for (i, _), box in zip(parents, boxes):
        if type(vals[i]) is Tracer and vals[i]._box is not box:
            raise DifferentiationError(WROTE_INTO.format(
                name=name, what="an array of its arguments",
                error="a write into an outer transform's value"))
    outs, pack = outputs(out)
    found = changes(log)
    for entry in log:
        if entry is not tree.REPEATED:
            stands[id(entry[1])] = entry[0]
    n = len(outs)
    # (an output stored is that output: the field holds the tracer the caller gets)
    stored = _stored(found, {**stands, **{id(o): o for o in outs}}) if found else []

    def rerun(*traced):
        """f again, from the arguments as they were, returning what the forward pass
        returned and stored."""
        again = list(vals)
        for (i, _), t in zip(parents, traced):
            again[i] = t
        log: list = []
        copy = tree.unflatten(pristine, again, shared={}, log=log)
        outs2 = outputs(call(copy[0], *copy[1], **copy[2]))[0]
        known = {id(t): t for t in traced + outs2}
        known.update((id(e[1]), e[0]) for e in log if e is not tree.REPEATED)
        stored2 = _stored(changes(log), known)
        if len(outs2) != n or len(stored2) != len(stored):
            raise DifferentiationError(
                f"fl.checkpoint({name}): the recompute for the backward pass returned or "
                f"stored other values than the forward pass ({len(outs2)} outputs and "
                f"{len(stored2)} stored arrays, against {n} and {len(stored)}): the function "
                "must do the same each time it runs from the same arguments")
        return tuple(outs2) + tuple(stored2)

    def back(g, positions):
        with replay:  # the recompute draws the forward's numbers from the same state
            _, pb = pullback(rerun, *[vals[i] for i, _ in parents])
        cts = dict(zip((i for i, _ in parents), pb(tuple(g))))
        return [cts[p] for p in positions]

    results = tuple(outs) + tuple(stored)
    tape = trace.tape
    tape.append((CUSTOM_MULTI, vals, {"bwd": back}, results, parents))
    j = len(tape) - 1
    tracers = []
    for k, o in enumerate(results):
        tape.append((None, None, None, None, ((k, j),)))
        tracers.append(trace.new(o, len(tape) - 1, owned=False))
    if found:  # what f set on its arguments: on the caller's, with the node's outputs
        stands.update(zip(map(id, outs + tuple(stored)), tracers))
        apply(found, lambda v: restore_parts(v, stands, lambda a: stands.get(id(a), a)))
    return pack(tracers[:n])


def _guarded(v):
    """A differentiated argument's value as the forward pass gets it: an array it cannot
    write into (it is the caller's, or a value the tape keeps); under an outer transform a
    handle of its own, whose writes are seen."""
    if type(v) is np.ndarray:
        v = v.view()
        v.flags.writeable = False
        return v
    if type(v) is Tracer:
        return v._trace.new(v._val, v._box, owned=False)
    return v


def _stored(found, known) -> list:
    """The new float arrays among the values the function set on its arguments (``found``,
    from ``changes``), in order: values of neither an argument nor a copied object (those
    in ``known``)."""
    values = changed_values(found)
    leaves = tree.flatten(values, lambda a: id(a) in known or tree.is_array_leaf(a))[0]
    out, seen = [], set()
    for a in leaves:
        if id(a) not in known and id(a) not in seen and _is_float(raw(a)):
            seen.add(id(a))
            out.append(a)
    return out


class _Replay:
    """What makes a checkpoint's recompute the forward pass again (as PyTorch's
    ``preserve_rng_state``): ``with replay:`` sets the NumPy generators ``f`` can reach (its
    arguments', the objects it closes over, its globals, NumPy's and fluxml's default) to
    their states when ``_Replay`` was made, and the arrays the forward pass may update in
    place (fields declared ``nontrainable``, a BatchNorm's running statistics, and integer
    arrays) to their values then; afterwards it puts back the generators' states and the
    arrays' values as they were (updated once, by the forward pass)."""

    def __init__(self, f, whole, leaves, spec, trace, trainable):
        # lazy: the compiler package loads on first use (import fluxml stays light)
        from fluxml.compiler.randomness import generators, get_state, set_state

        # what f closes over or names as globals (a layer or method is an argument)
        closed = tuple(reached(f)) if type(f) in (types.FunctionType, functools.partial) \
            else ()  # (a partial's arguments: a layer in partial(block, bn) is watched too)
        self.watched, self.frozen = [], _closed_arrays(f)
        # the arrays the forward pass may update in place: fields declared nontrainable
        # anywhere, integer arrays of the arguments (a 0-d count)
        trainable = set(trainable)
        if closed:  # (the arguments' own leaves and spec come from the caller)
            leaves, spec = tree.flatten((whole, closed))
            # (float arrays only: a closed-over integer count is set back as an argument's)
            floats = [x for x in tree.flatten(closed, trainable=True)[0] if _is_float(x)]
            trainable.update(map(id, floats))
            # closed-over float arrays the forward pass must not write into (the recompute
            # would read the written values): read-only while it runs (see frozen)
            self.frozen += [x for x in floats if type(x) is np.ndarray and x.flags.writeable]
            self.watched = _watch(closed)
        # (under fl.compile or an outer transform they are tracers of those, whose copies
        # and writes the program records: a compiled step counted twice otherwise)
        self.kept = [x for x in leaves if (type(x) is np.ndarray or type(x) is Tracer
                                           and x._trace is not trace)
                     and id(x) not in trainable]
        self.before = [x.copy() for x in self.kept]
        self.boxes = [x._box if type(x) is Tracer else None for x in self.kept]
        self.generators = [g for _, g, _ in generators(f, spec)]
        self.get, self.set = get_state, set_state
        self.start = [get_state(g) for g in self.generators]
        # under fl.compile the draws are the program's (its trace's copies of the generators
        # are what setting a state back reaches): the forward pass's recorded draws, which
        # the recompute is given again (compiler/trace.py's IRTrace.draw)
        self.program = compiling() if COMPILING else None
        self.draws: list | int | None = None

    def mark_draws(self) -> None:
        """Called before and after the forward pass: the compiled draws it made."""
        if self.program is not None:
            if self.draws is None:  # (before: where they start)
                self.draws = len(self.program.draws)
            else:
                self.draws = self.program.draws[self.draws:]

    def check_closed_over(self, name):
        """Refuse a forward pass that set fields or items of an object it closes over (not
        an argument): the recompute would set them again, and start from the new values.
        The object is put back as it was."""
        found = changes(self.watched)
        if not found:
            return
        original, new, removed = found[0]
        what = (f"`{next(iter(new or removed))}` on the {type(original).__name__}"
                if removed is not None else f"an item of a {type(original).__name__}")
        for entry in self.watched:
            put_back(*entry[::2])
        raise DifferentiationError(
            f"fl.checkpoint({name}): the function set {what} it closes over (not one of its "
            "arguments); the recompute for the backward pass would set it again, starting "
            "from the new value. Pass it as an argument, as in fl.checkpoint(lambda layer, "
            "x: layer(x))(layer, x), or checkpoint the layer itself: fl.checkpoint(layer)(x)")

    def __enter__(self):
        if self.program is not None:
            self.replaying, self.program.replaying = self.program.replaying, list(self.draws)
        self.now = [self.get(g) for g in self.generators]
        for g, s in zip(self.generators, self.start):
            self.set(g, s)
        # only the arrays the forward pass changed (a read-only input batch of integers is
        # never written, nor, under fl.compile, copied into on every call)
        self.written = []
        for x, v, box in zip(self.kept, self.before, self.boxes):
            if type(x) is Tracer:
                if x._box is box:
                    continue
            elif not x.flags.writeable or np.array_equal(
                    x, v, equal_nan=x.dtype.kind in "fc"):
                continue
            self.written.append((x, x.copy()))
            x[...] = v

    def __exit__(self, *exc):
        if self.program is not None:
            self.program.replaying = self.replaying
        for g, s in zip(self.generators, self.now):
            self.set(g, s)
        for x, v in self.written:
            x[...] = v

    def freeze(self, on: bool) -> None:
        """Make the closed-over float arrays read-only while the forward pass runs (a write
        into one is refused by name, as into an argument), and writeable again after."""
        for x in self.frozen:
            x.flags.writeable = not on


def _closed_arrays(f) -> list:
    """The writeable float NumPy arrays a function's closure holds as they are (``reached``
    gives the objects, lists and dicts around others)."""
    f = f.func if type(f) is functools.partial else f
    out = []
    for cell in getattr(f, "__closure__", None) or ():
        try:
            x = cell.cell_contents
        except ValueError:  # a name not assigned yet
            continue
        if type(x) is np.ndarray and x.dtype.kind in "fc" and x.flags.writeable:
            out.append(x)
    return out


def _watch(closed) -> list:
    """``(part, part, contents)`` for each object, list, dict and set in ``closed``, its
    contents now (as :func:`fluxml.tree.unflatten` logs them): :func:`changes` of it says
    what was set on them since. (The contents are the part's own: those the rebuild logs
    hold its copies of the layers below, so a model with layers, closed over, was refused
    as if the function had set them.)"""
    leaves, spec = tree.flatten(closed)
    log: list = []
    tree.unflatten(spec, leaves, shared={}, log=log)  # (each part once)
    return [(e[0], e[0], contents(e[0])) for e in log if e is not tree.REPEATED]
