"""A call's arguments as ``fl.compile`` sees them: their signature (what a trace depends on,
the key of the compiled function's cache), the trace of the function on them (each array an
input, the writes into the arguments found), and the names the generated code gives its
inputs."""

from __future__ import annotations

import functools
import inspect
import math
import types

import numpy as np

from fluxml._kernel_modules import kernel_module, on_kernel_library
from fluxml.ad.core import Tracer
from fluxml.ad.reached import open_walk
from fluxml.compiler import passes
from fluxml.compiler.guards import is_array, is_jax, memory_pattern
from fluxml.compiler.ir import Const, Program
from fluxml.compiler.randomness import closed_over
from fluxml.compiler.stored import name_stored
from fluxml.compiler.trace import Abstract, CompileError, IRTrace, active, owner_id
from fluxml.tree import REPEATED, flatten, leaf_count, leaves_with_paths, nodes, unflatten
from fluxml.treenodes import _fields


class _Keywords(dict):
    """The keyword arguments of a call, carried as the last positional one."""


# --- signatures ----------------------------------------------------------------------------

def signature(spec, leaves, numbers=None):
    """What a trace depends on: the tree's structure, each array's type, shape and dtype,
    which leaves are the same array, and the value of every non-array leaf but the traced
    numbers (``numbers``: ``numbers.find``'s map), of which only the type and which are the
    same count."""
    parts = []
    seen: dict = {}
    for i, x in enumerate(leaves):
        if numbers and i in numbers:  # (its type: a Python number is weak, NumPy's not)
            parts.append(("traced", numbers[i][0], type(x)))
        elif is_array(x):
            first = seen.setdefault(id(x), i)
            parts.append((type(x), x.shape, x.dtype.str, first,
                          getattr(x, "strides", None) if x.ndim > 1 else None))
        else:
            parts.append(value_key(x))
    arrays = [x for x in leaves if is_array(x)]
    return _spec_key(spec), tuple(parts), memory_pattern(arrays)


def value_key(x) -> tuple:
    """A non-array leaf's part of a signature: its type and value, and a zero's sign
    (``0.0 == -0.0``, but ``np.copysign(1.0, x)`` and ``1 / x`` tell them apart: a program
    traced for one was run for the other)."""
    if isinstance(x, (float, np.floating)):
        return type(x), x, math.copysign(1.0, x)
    if isinstance(x, (complex, np.complexfloating)):
        return type(x), x, math.copysign(1.0, x.real), math.copysign(1.0, x.imag)
    return type(x), x


def _spec_key(spec):
    kind = spec.kind
    if kind == "leaf":
        return 0
    if kind == "static":
        s = spec.static
        try:
            hash(s)
        except TypeError:  # (a set's members too: it is mutable, and static)
            return ("id", id(s), frozenset(s)) if isinstance(s, set) else ("id", id(s))
        return ("s", type(s), s)
    keys = tuple(spec.keys) if spec.keys is not None else None
    return (kind, spec.type, keys, tuple(_spec_key(c) for c in spec.children))


# --- tracing -------------------------------------------------------------------------------

LEAKED = ("fl.compile: a traced value was used after the compiled function returned (kept in "
          "a global, a closure or an attribute). Return it from the function instead.")


def trace(fn, args, leaves, spec, numbers=None, body=None):
    """``(program, positions, out_spec, aliases, returned)``: ``fn(*args)`` traced, with each array
    leaf an input (the same array twice is one input), and each traced number (``numbers``:
    leaf index -> (its first leaf, a switch?)) a 0-d input, weak for a Python number
    (``ir.Var.weak``: ``x32 * k`` stays float32, as eagerly); ``aliases`` (see
    ``_aliases``) the leaves the function pointed at another argument's array, ``returned``
    (see ``_returned``) the results that are an argument's own array. Traced values
    stored on what ``body`` (the user's function, ``fn`` by default) reaches fail by name
    when used (compiler/stored.py)."""
    tr = IRTrace()
    tracers, positions, by_id, new_leaves = [], [], {}, []
    numbers = numbers or {}
    for i, x in enumerate(leaves):
        number = i in numbers
        if number or is_array(x):
            key = ("number", numbers[i][0]) if number else id(x)
            t = by_id.get(key)
            if t is None:
                example = host_example(x)
                if example is not x and not is_jax(x):  # (a GPU's array: its library)
                    tr.device = kernel_module(type(x))
                t = by_id[key] = tr.input(example)
                tracers.append(t)
                positions.append(i)
            new_leaves.append(t)
        else:
            new_leaves.append(x)
    in_vars = [t._box for t in tracers]
    log: list = []  # (its sets are copies: one the function changes is refused)
    targs = unflatten(spec, new_leaves, shared={}, log=log)  # (a layer used twice: one
    # object, as eagerly and in a gradient)
    tr.nodes = containers(targs)
    tr.hidden = hidden_arrays(args, spec, leaves, positions)
    spec_given = flatten(targs)[1]
    tr.arguments = frozenset(tr.nodes)
    open_walk(tr)  # (an inner fl.gradient lowers what it stores onto this trace's values)
    with active(tr):
        try:
            out = fn(*targs)
            # (read before name_stored: a returned list or dict the function also stored,
            # `h.metrics = {...}; return h.metrics`, is one of the places it makes dead)
            out_leaves, out_spec = flatten(out)
        finally:
            tr.closed = LEAKED
            name_stored(body or fn, tr)
    if tr.refused is not None:  # `buf[i] = x` into a plain array, which NumPy's error hid
        raise CompileError(f"fl.compile: {tr.refused}")
    _refuse_set_changes(log)
    writes, aliases = _writes(tr, targs, spec, spec_given, leaves, positions, in_vars,
                              numbers, tracers)
    _check_overlaps(args, leaves, positions, writes)
    _refuse_hidden_tracers(out_spec)
    returned = _returned(out_leaves, tracers, in_vars, writes,
                         [leaves[i] for i in positions])
    out_leaves = _fresh_results(tr, out_leaves, returned, in_vars, writes)
    outputs = [_output(tr, x) for x in out_leaves]
    return Program(in_vars, tr.eqns, outputs, writes), positions, out_spec, aliases, returned


def host_example(x):
    """A leaf's value as the trace computes with it: a NumPy copy of a ``jax.Array`` (for the
    trace's metadata) or of a GPU's array (CuPy's: the examples and the constants the trace
    makes are NumPy's; the cupy back end moves those constants to the device)."""
    if is_jax(x):
        return np.asarray(x)
    return x.get() if on_kernel_library(x) else x


def _returned(out_leaves, tracers, in_vars, writes, arrays) -> dict:
    """``{result index: input position}``: the results that are an argument's array itself,
    unchanged or written in place (``acc += dx; return acc``, ``return state, model`` after
    ``fl.update``), holding its value at the end of the call. Eagerly the caller gets that
    very array back (``fl.update(state, model, g)[1] is model``); the compiled call returns
    it too, where a copy would split the arrays the caller shares (a weight tied between two
    layers, an AccumGrad counter counted in place) in the tree it rebinds to the result. Not
    for a ``jax.Array`` argument: eagerly immutable, a write rebinds it to a new array, which
    the caller may keep, where the next compiled call donates (deletes) the array it rebound
    the argument to."""
    final = dict(writes)
    handles = {id(t): k for k, t in enumerate(tracers)}
    returned = {}
    for i, x in enumerate(out_leaves):
        k = handles.get(id(x))
        if k is not None and is_array(arrays[k]) and not is_jax(arrays[k]) \
                and x._box is final.get(k, in_vars[k]):
            returned[i] = k
    return returned


def _fresh_results(tr, out_leaves, returned, in_vars, writes) -> list:
    """``out_leaves`` with a copy, taken before the writes, of each result that may share
    memory with an argument the function writes but is not its value at the end (not in
    ``returned``): ``old = m.h; m.h = m.h * 2; return old``. Eagerly ``old`` keeps the old
    values; the compiled call writes the new ones into that array at its end, which the
    result would show (it did, on the NumPy back end: ``[4, 4]`` for eager ``[1, 1]``)."""
    if not writes:
        return out_leaves
    groups = passes.aliases(Program(in_vars, tr.eqns, [], []))
    shared = {groups.find(in_vars[k].id) for k, _ in writes}
    out = list(out_leaves)
    closed, tr.closed = tr.closed, None  # (reopened for the copies: recorded last)
    try:
        with active(tr):
            for i, x in enumerate(out):
                if i not in returned and type(x) is Tracer and x._trace is tr \
                        and groups.find(x._box.id) in shared:
                    out[i] = np.copy(x)
    finally:
        tr.closed = closed
    return out


def _refuse_set_changes(log) -> None:
    """Refuse a function that added to or removed from a set its arguments hold: the trace
    ran on a copy of the set (the change was lost; before, the traced copy of a layer was
    left in the caller's set), and a compiled program could not repeat it."""
    for entry in log:
        if entry is REPEATED or type(entry[1]) is not set or entry[1] == entry[2]:
            continue
        owner = next((f"`{k}` of the {type(e[0]).__name__}" for e in log
                      if e is not REPEATED and type(e[2]) is dict
                      for k, v in e[2].items() if v is entry[1]), "a set")
        raise CompileError(
            f"fl.compile: the function added to or removed from {owner} of its arguments "
            "(a set). A compiled program cannot change a set: change it outside the "
            "compiled function, or run the function without fl.compile")


def hidden_arrays(args, spec, leaves, positions) -> dict:
    """The arrays a trace must not take as constants (``IRTrace._refuse_side_reads``): the
    argument arrays, and those the arguments hold inside a bound method (a field ``act =
    encoder.__call__``), as ``{id of the array owning the memory: [(array, where), ...]}``."""
    hidden: dict = {}
    for i in positions:
        x = leaves[i]
        if is_array(x):
            hidden.setdefault(owner_id(x), []).append((x, _Where(args, i)))
    stack = [(spec, "")]
    while stack:  # (paths as leaves_with_paths writes them: keys joined with dots)
        node, where = stack.pop()
        keys = _keys(node)
        stack.extend((c, f"{where}.{k}" if where else f"argument {k}")
                     for k, c in zip(keys, node.children))
        static = node.static
        if isinstance(static, functools.partial):  # (a partial of a bound method, too)
            static = static.func
        owner = getattr(static, "__self__", None) if node.kind == "static" else None
        if owner is None or isinstance(owner, (type, types.ModuleType)):
            continue
        what = f"an array of the {type(owner).__name__} of the bound method at {where}"
        try:
            held = flatten(owner)[0]
        except ValueError:  # (a cycle through the owner: a logger's back-reference) not
            continue  # a model's layer
        for x in held:
            if is_array(x):
                hidden.setdefault(owner_id(x), []).append((x, what))
    return hidden


def _keys(node):
    """A node's keys: its fields' or entries' names, or positions for a list or tuple."""
    return node.keys if node.keys is not None else range(len(node.children))


class _Where:
    """An argument array's description, its path found only for a message."""

    def __init__(self, args, i):
        self.args, self.i = args, i

    def __str__(self):
        return f"the argument array at {_path_of(self.args, self.i)}"


def containers(tree, found: set | None = None) -> set:
    """The ids of the containers (lists, tuples, dicts, objects with fields) in ``tree``."""
    found = set() if found is None else found
    stack = [tree]
    while stack:
        x = stack.pop()
        if type(x) is Tracer or is_array(x) or id(x) in found:
            continue
        if isinstance(x, (list, tuple)):
            stack.extend(x)
        elif isinstance(x, dict):
            stack.extend(x.values())
        else:
            fields = _fields(x)
            if fields is None:
                continue
            stack.extend(v for _, v in fields)
        found.add(id(x))
    return found


def _refuse_hidden_tracers(spec) -> None:
    """A traced value in a static part of the result (a dict key, a set, an object the
    trees do not walk, a returned function's closure) would come out as a placeholder on
    every call: refused."""
    for node in nodes(spec):
        parts = list(node.keys or ()) if node.kind == "dict" else []
        if node.kind == "static":
            x = node.static
            parts = [x, *(x if isinstance(x, (set, frozenset, tuple, list)) else ())]
            slots = getattr(type(x), "__slots__", ())
            parts += [getattr(x, n, None) for n in ((slots,) if isinstance(slots, str)
                                                     else slots)]
            parts += list(getattr(x, "__dict__", {}).values()) if callable(x) else []
            parts += closed_over(x).values()
        if any(type(v) is Tracer for v in parts):
            raise CompileError(
                "fl.compile: the function's result holds a traced value where a compiled "
                "program cannot return it (a dict key, a set, an object fluxml's trees do not "
                "walk, such as a built-in type's instance, or a returned function's closure). "
                "Return arrays as values of tuples, lists, dicts or objects with attributes.")



def _aliases(after, leaves, index, first, tracers) -> dict:
    """``{leaf index: input position}``: the array leaves that the function pointed at the
    array of another input (``self.seen = self.w``; ``a.h = b.h = h``). Eagerly the two
    places then hold one array, which later writes through either name change for both; the
    compiled call rebinds such a leaf to that input's array after the run, where writing the
    values into its own array would leave two arrays. In each group of leaves that end up
    holding one traced value but came from different inputs, the input kept is the one
    whose tracer the value is (``self.seen = self.w``: ``w``), else the first's.
    ``index``: leaf index -> input position of the leaves that are inputs; ``first``: id of
    an array -> its first leaf."""
    groups: dict = {}  # id(value after) -> [(leaf, input position)]
    for i, x in enumerate(leaves):
        if is_array(x) and type(after[i]) is Tracer:
            groups.setdefault(id(after[i]), []).append((i, index[first[id(x)]]))
    aliases = {}
    for members in groups.values():
        inputs = {k for _, k in members}
        if len(inputs) < 2:
            continue
        value = after[members[0][0]]
        keep = next((k for k in inputs if tracers[k] is value), members[0][1])
        aliases.update((i, keep) for i, k in members if k != keep)
    return aliases


def _writes(tr, targs, spec, spec_given, leaves, positions, in_vars, numbers, tracers):
    """``(writes, aliases)``: the arguments the function wrote into or rebound, as ``(input
    position, new var)``, and the leaves it pointed at another input's array (``_aliases``:
    rebound after the run, they write nothing). ``spec_given`` is the structure of the
    traced arguments as the function was given them (its methods bound to the traced
    objects)."""
    after, spec_after = flatten(targs)
    if _spec_key(spec_after) != _spec_key(spec_given) or len(after) != len(leaves):
        where = _difference(spec_given, spec_after, "argument")
        raise CompileError(
            f"fl.compile: the function changed the structure of its arguments at {where} "
            "(added, removed or retyped an attribute or entry, or changed a value that is "
            "not an array or a number). A compiled function may write into its array "
            "arguments, or rebind an array to one of the same shape and dtype.")
    index = {p: k for k, p in enumerate(positions)}
    first = {}
    for i, x in enumerate(leaves):
        if is_array(x):
            first.setdefault(id(x), i)
    aliases = _aliases(after, leaves, index, first, tracers)
    writes = {}
    kept, rebound = {}, {}  # input position -> first path that kept / rebound its array
    for i, x in enumerate(leaves):
        if i in aliases:
            continue
        if not is_array(x):
            if i in numbers:  # a traced number: its input, never written
                now = after[i]
                if type(now) is Tracer and now._box is in_vars[index[numbers[i][0]]]:
                    continue
                now = "a computed value" if type(now) is Tracer else repr(now)
                raise CompileError(
                    f"fl.compile: the function changed the number {x!r} at {_path(spec, i)} "
                    f"of its arguments to {now}. A compiled function cannot write a number "
                    "back: change it (fl.adjust) between calls.")
            if not _same_number(x, after[i]):
                raise CompileError(
                    f"fl.compile: the function changed the number {x!r} at "
                    f"{_path(spec, i)} of its arguments to {after[i]!r}. A compiled function "
                    "cannot write a Python number back (numbers are fixed at trace time): "
                    "keep such state in a 0-d array and update it in place (`t += 1`).")
            continue
        k = index[first[id(x)]]
        now = after[i]
        if type(now) is not Tracer or now._trace is not tr:
            raise CompileError(
                f"fl.compile: the function replaced the array at {_path(spec, i)} of its "
                "arguments by a value that is not computed from the arguments; write into it "
                "(`x[...] = value`) instead.")
        v = now._box
        if v.shape != in_vars[k].shape or v.dtype != in_vars[k].dtype:
            raise CompileError(
                f"fl.compile: the function rebound the array at {_path(spec, i)} of its "
                f"arguments, of shape {in_vars[k].shape} and dtype {in_vars[k].dtype}, to one "
                f"of shape {v.shape} and dtype {v.dtype}; a compiled function keeps its "
                "arguments' shapes.")
        if v is not in_vars[k]:
            if k in writes and writes[k] is not v:
                raise CompileError(
                    f"fl.compile: the function gave {_path(spec, rebound[k])} and "
                    f"{_path(spec, i)} of its arguments, which held one array, two different "
                    "new arrays; a compiled function writes new values into the array they "
                    "held, which can take one. Pass distinct arrays (a copy of one), or write "
                    "into the array in place (`x[...] = value`).")
            writes[k] = v
            rebound.setdefault(k, i)
        else:
            kept.setdefault(k, i)
    for k, i in rebound.items():
        if k in kept:  # eagerly the other reference keeps the old values; compiled, it
            # would see the new ones (they are written into the array, or rebound with it)
            raise CompileError(
                f"fl.compile: the function rebound {_path(spec, i)} to a new array, but the "
                f"array it held is also at {_path(spec, kept[k])}, which keeps the old "
                "values in eager Python; a compiled function writes the new values into "
                "that one array. Pass distinct arrays (a copy of one), or write into the "
                "array in place (`x[...] = value`) if both references should see the change.")
    return sorted(writes.items()), aliases


def _check_overlaps(args, leaves, positions, writes):
    """A written argument must not share memory with another argument: the compiled program
    writes arguments at other moments than the eager function (or into their buffers), so a
    view of one would see other values."""
    arrays = [leaves[i] for i in positions]
    pattern = memory_pattern(arrays)
    for k, _ in writes:
        for j, p in enumerate(pattern):
            if j != k and p == pattern[k]:
                raise CompileError(
                    f"fl.compile: {_path_of(args, positions[k])} is written by the function and "
                    f"shares memory with {_path_of(args, positions[j])} (views of one array). "
                    "Pass a copy of one of them.")


def _path_of(args, i) -> str:
    _, spec = flatten(args)
    return _path(spec, i)


def _same_number(a, b) -> bool:
    if type(b) is Tracer or type(a) is not type(b):
        return False
    try:
        return bool(a == b) or (a != a and b != b)  # NaN stays NaN
    except Exception:  # noqa: BLE001 - an unusual leaf type: compare by identity
        return a is b


def _difference(a, b, where: str) -> str:
    """The first path at which two specs of the arguments differ (for messages)."""
    if _spec_key(a) == _spec_key(b):
        return where
    keys_a, keys_b = list(_keys(a)), list(_keys(b))
    if a.kind != b.kind or a.type is not b.type or a.kind in ("leaf", "static"):
        return where
    if keys_a != keys_b:
        changed = [f"{k!r} added" for k in keys_b if k not in keys_a]
        changed += [f"{k!r} removed" for k in keys_a if k not in keys_b]
        return f"{where} ({', '.join(changed) or 'entries reordered'})"
    for k, ca, cb in zip(keys_a, a.children, b.children):
        if _spec_key(ca) != _spec_key(cb):
            return _difference(ca, cb, f"{where} {k}" if where == "argument" else
                               f"{where}.{k}")
    return where


def _path(spec, i) -> str:
    """The path of leaf ``i`` (for messages)."""
    marks = unflatten(spec, range(leaf_count(spec)))  # leaves replaced by their positions
    for path, leaf in leaves_with_paths(marks):
        if leaf == i:
            return "argument " + path
    return f"leaf {i}"


def _output(tr, x):
    if type(x) is Tracer:
        if x._trace is not tr:
            raise CompileError("fl.compile: the function returned a value traced by a "
                               "transform inside it (a leaked tracer)")
        return x._box
    if type(x) is Abstract:
        return x.var
    return Const(x)


def input_names(fn, args, leaves, positions) -> list[str]:
    """Names for the program's inputs from the function's parameter names and their paths
    in the arguments (``model.layers[0].weight`` gives ``model_layers_0_weight``)."""
    try:
        paths = [p for p, _ in leaves_with_paths(args)]
        params = [p.name for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except Exception:  # noqa: BLE001 - names are cosmetic: fall back to a0, a1 ...
        paths, params = [], []
    if len(paths) != len(leaves):
        return [f"a{k}" for k in range(len(positions))]
    out = []
    keywords = len(args) - 1 if args and type(args[-1]) is _Keywords else -1
    for p in (paths[i] for i in positions):
        head, _, rest = p.partition(".")
        k = int(head) if head.isdigit() else -1
        if k == keywords:  # a keyword argument: its own name
            head, _, rest = rest.partition(".")
            name = head
        else:
            name = params[k] if 0 <= k < len(params) else f"a{head}"
        out.append(f"{name}_{rest}" if rest else name)
    return out


