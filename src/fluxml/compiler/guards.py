"""Guards: a generated function that checks a call's arguments against one trace's signature
and picks out the arrays the program reads, without flattening the whole tree again.

Flattening a model and its optimiser state on every call costs more than a small compiled
step runs. So each trace also gets ``extract(args)``: straight-line code that walks the
argument tree the trace saw, checks each node's type, field names, static values, each array's
type, shape, dtype and layout, and that arrays shared (or not) at trace time still are. It
returns the program's input arrays, or ``None`` when anything differs (then the call takes the
general path: flatten, compute the signature, look it up, trace if new).

Calls in a training loop pass the same arrays again (NumPy state written in place), or the
arrays the last call rebound (JAX state). ``extract(args, known)`` takes the input arrays of
the last call whose checks passed (``known``; the rebound ones substituted), and skips what
identity with them proves: a NumPy array keeps its ``base`` (so which arrays are distinct and
which share memory is as checked before), a JAX array its shape and dtype. What can change in
place (a NumPy array's shape, dtype or strides, every node and every number of the tree) is
checked on every call.
"""

from __future__ import annotations

import copy
import dataclasses
import dis
import keyword
import math
import re

import numpy as np

from fluxml._dtypes import is_jax
from fluxml._kernel_modules import on_kernel_library
from fluxml.compiler.codegen import build
from fluxml.compiler.trace import CompileError
from fluxml.treenodes import _UNSET, _fields, slots


class _Writer:
    def __init__(self, fast=False):
        self.lines: list[str] = []
        self.consts: dict = {"np": np}
        self.count = 0
        self.inputs: dict = {}  # leaf index of a program input -> its known array's local
        self.numbers: dict = {}  # traced numbers: leaf index -> (first leaf, a switch?)
        # the fast tier (see make_extractor): a JAX leaf that is not its known array hands
        # the call to the full check
        self.fast = fast
        # a node met again (one optimiser rule shared by every Leaf) is checked once: its id
        # at trace time -> (the local that holds it, the index of its first leaf, the node:
        # held, so that no other object takes its id while the walk runs)
        self.seen: dict = {}
        self.depth = 0  # > 0 inside a block run only when such a node is another object
        self.track = False  # check which array leaves are the same (the program's inputs)
        self.first: dict = {}  # id of an array leaf -> its first leaf's index
        self.arrays: list = []  # (local, leaf index) of each distinct array leaf
        self.written: set = set()  # leaf indices of the arrays the program writes
        self.writable: list = []  # (local, known local) of those that are NumPy arrays

    def name(self, prefix="n") -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def const(self, value) -> str:
        name = self.name("k")
        self.consts[name] = value
        return name

    def check(self, cond: str):
        self.lines.append(f"    if not ({cond}): return None")


def make_extractor(args, spec, leaves, positions, numbers=None, written=frozenset()):
    """``extract(args, known) -> list | None`` for the trace of ``args`` (flattened to
    ``leaves`` with ``spec``); ``positions`` are the leaf indices of the program's inputs,
    ``numbers`` the traced numbers among the leaves (``numbers.find``: a number's type and
    whether it is the same object as another are checked, not its value; it is passed as it
    is).

    With JAX arrays among them, two tiers: the one returned checks the tree's nodes and
    numbers and that each JAX leaf is its known array (what a training loop passes), and
    hands any other call to the full check, which also checks a new JAX array's shape and
    dtype: the code a call runs is then shorter, which counts most when it runs out of the
    caches (called between other work). ``written``: the leaf indices of the arrays the
    program writes; a NumPy one that is not its known array must be writable (else the
    general path refuses it)."""
    full = _extractor(args, spec, leaves, positions, numbers, False, None, written)
    if full is None or not any(is_jax(leaves[i]) for i in positions):
        return full
    fast = _extractor(args, spec, leaves, positions, numbers, True, full, written)
    return fast if fast is not None else full


def _extractor(args, spec, leaves, positions, numbers, fast, full=None, written=frozenset()):
    w = _Writer(fast)
    w.written = written
    if fast:
        w.consts["_full"] = full
    w.numbers = numbers or {}
    w.track = bool(positions)
    # the known input arrays (the last passed call's), one local each: q0, q1 ...
    w.inputs = {i: f"q{k}" for k, i in enumerate(positions)}
    if positions:
        w.lines.append(f"    {''.join(f'q{k}, ' for k in range(len(positions)))}= known")
    names: list[str] = []
    _walk(w, "args", args, spec, names)
    if len(names) != len(leaves):
        return None  # a tree this walker does not mirror: always take the general path
    arrays = w.arrays
    same = ""  # all the arrays the last call's (checked together, and only then the rest)
    if len(arrays) > 1:  # arrays distinct at trace time must still be distinct, and share
        # memory (views of one array) exactly as they did
        views = [(a, leaves[i]) for a, i in arrays if not is_jax(leaves[i])]
        # ``known`` JAX arrays may be new ones (rebound): their distinctness is not known
        # then; the known NumPy ones passed these checks together
        same = "" if len(views) < len(arrays) else \
            " and ".join(f"{a} is {w.inputs[i]}" for a, i in arrays)
        arrays = [a for a, _ in arrays]
        lines = [f"len(set(map(id, ({', '.join(arrays)})))) == {len(arrays)}"]
        if len(views) > 1:  # (JAX arrays are never views: distinct is enough)
            listed = ", ".join(a for a, _ in views)
            pattern = memory_pattern([x for _, x in views])
            w.consts["memory_pattern"] = memory_pattern
            lines.append(f"memory_pattern([{listed}]) == {pattern!r}")
        lines += [f"{v}.flags.writeable" for v, _ in w.writable] if same else []
        if same:
            w.lines.append(f"    if not ({same}):")
        for cond in lines:
            w.lines.append(f"    {'    ' if same else ''}if not ({cond}): return None")
    if not same:
        w.lines += [f"    if not ({v} is {q} or {v}.flags.writeable): return None"
                    for v, q in w.writable]
    inputs = ", ".join(names[i] for i in positions)
    w.lines.append(f"    return [{inputs}]")
    src = "def extract(args, known):\n" + "\n".join(w.lines) + "\n"
    try:
        return build(src, w.consts, "extract")
    except (SyntaxError, RecursionError):  # a tree too deep for straight-line code
        return None


def memory_pattern(arrays) -> tuple:
    """For each array, the position of the first one whose memory belongs to the same array
    (NumPy points every view at the array owning its memory; JAX arrays are never views)."""
    first: dict = {}
    out = []
    for k, a in enumerate(arrays):
        base = getattr(a, "base", None)
        out.append(first.setdefault(id(a if base is None else base), k))
    return tuple(out)


def is_array(x) -> bool:
    """An array leaf: NumPy's, another library's ``ndarray`` (CuPy's, or a library the kernels
    were registered for), or a ``jax.Array``."""
    return type(x) is np.ndarray or (type(x).__name__ == "ndarray" and hasattr(x, "shape")) \
        or on_kernel_library(x) or is_jax(x)


_is_array = is_array


def _same(w, x, i, names):
    """The checks that leaf ``i`` is still the object it was at trace time (a traced number
    of a shared object, an array met before), where the leaf is read: inside a node checked
    only when it is another object than one met before, they run only then."""
    k = w.numbers.get(i, (i,))[0]
    if k != i:  # a traced number shared with an earlier leaf: it must still be
        w.check(f"{names[i]} is {names[k]}")
    if w.track and _is_array(x):
        k = w.first.setdefault(id(x), i)
        if k != i:  # the same array as an earlier leaf: it must still be
            w.check(f"{names[i]} is {names[k]}")
        else:
            w.arrays.append((names[i], i))


def _reads(method, x):
    """What a class's ``__tree_fields__`` does, where the guard need not call it (the class's
    code is fixed for the program, as the rest of it; the type is checked): ``""`` for a
    constant (``return ("rule", "state", "frozen")``: nothing to check), the attribute
    ``name`` for ``return self.name`` (a tuple at trace time: compared as it is); else None
    (called). An instance's own ``__tree_fields__`` is always called."""
    code = getattr(method, "__code__", None)
    if code is None or "__tree_fields__" in getattr(x, "__dict__", ()):
        return None
    ops = [(i.opname, i.argval) for i in dis.get_instructions(code)
           if i.opname not in ("RESUME", "NOP", "CACHE")]
    if [op for op, _ in ops] in (["LOAD_CONST", "RETURN_VALUE"], ["RETURN_CONST"]):
        return ""
    if len(ops) == 3 and code.co_argcount and ops[0] == ("LOAD_FAST", code.co_varnames[0]) and \
            ops[1][0] == "LOAD_ATTR" and ops[2][0] == "RETURN_VALUE" and \
            ops[1][1].isidentifier() and type(getattr(x, ops[1][1], None)) is tuple:
        return ops[1][1]
    return None


def _walk(w, ref, x, spec, names):
    kind = spec.kind
    if kind == "leaf":
        v = w.name("x")
        w.lines.append(f"    {v} = {ref}")
        names.append(v)
        q = w.inputs.get(len(names) - 1)
        if is_jax(x) and w.fast and q is not None:  # not the known array: the full check
            w.lines.append(f"    if {v} is not {q}: return _full(args, known)")
        elif is_jax(x):  # its abstract value, read once (JAX's .shape and .dtype are slower)
            a = w.name("a")
            d = w.const(x.dtype)
            if q is not None:  # the known array itself: immutable, its shape and dtype hold
                w.lines.append(f"    if {v} is not {q}:")
            pad = "    " if q is not None else ""
            w.lines.append(f"    {pad}if not (type({v}) is {w.const(type(x))}): return None")
            w.lines.append(f"    {pad}{a} = {v}.aval")
            w.lines.append(f"    {pad}if not ({a}.shape == {x.shape!r} and ({a}.dtype is {d} "
                           f"or {a}.dtype == {d})): return None")
        elif _is_array(x):  # NumPy's, or another library's (CuPy)
            d = w.const(x.dtype)
            # the layout too (the strides, read faster than the flags) where it can differ
            layout = f" and {v}.strides == {x.strides!r}" if x.ndim > 1 and not is_jax(x) \
                else ""
            w.check(f"type({v}) is {w.const(type(x))} and {v}.shape == {x.shape!r} and "
                    f"({v}.dtype is {d} or {v}.dtype == {d}){layout}")
            if q is not None and len(names) - 1 in w.written and not is_jax(x):
                # a new array the program writes must be writable (checked where the
                # arrays are not all the last call's: nothing on a training loop's calls)
                w.writable.append((v, q))
        elif len(names) - 1 in w.numbers:  # a traced number: a number of its type (its
            # value an input), and a switch that was on is still on (0 is a constant of
            # another trace)
            on = f" and {v} != 0" if w.numbers[len(names) - 1][1] else ""
            w.check(f"type({v}) is {w.const(type(x))}{on}")
        else:  # a number: its type and value are part of the signature (a zero's sign too:
            # 0.0 == -0.0, but a program traced for one computed np.copysign(1.0, x) so)
            sign = ""
            if isinstance(x, (float, np.floating)) and x == 0:
                sign = f" and {w.const(math.copysign)}(1.0, {v}) == {math.copysign(1.0, x)!r}"
            w.check(f"type({v}) is {w.const(type(x))} and {v} == {w.const(x)}{sign}")
        _same(w, x, len(names) - 1, names)
        return
    if kind == "static":
        s = spec.static
        try:
            hash(s)
            same = f"({ref}) is {w.const(s)} or (type({ref}) is {w.const(type(s))} and " \
                   f"{ref} == {w.const(s)})"
        except TypeError:
            same = f"({ref}) is {w.const(s)}"
            if isinstance(s, set):  # a set is static and mutable: a member added or
                # removed since (``len(s)`` traced as a constant) is another signature
                same += f" and {ref} == {w.const(frozenset(s))}"
        w.check(same)
        return
    v = w.name()
    w.lines.append(f"    {v} = {ref}")
    first = w.seen.get(id(x))
    if first is not None:  # the object checked above: its checks run only if it is
        local, leaf, _ = first  # another one now; if not, its leaves are the ones read there
        start, n = len(w.lines), len(names)
        w.depth += 1
        _walk_node(w, v, x, spec, kind, names)
        w.depth -= 1
        same = [f"        {a} = {b}" for a, b in zip(names[n:], names[leaf:])]
        w.lines[start:] = [f"    if {v} is {local}:"] + (same or ["        pass"]) + \
            ["    else:"] + [f"    {line}" for line in w.lines[start:]]
        return
    if w.depth == 0:  # (its local is assigned on every path)
        w.seen[id(x)] = (v, len(names), x)
    _walk_node(w, v, x, spec, kind, names)


def _walk_node(w, v, x, spec, kind, names):
    w.check(f"type({v}) is {w.const(spec.type)}")
    if kind in ("list", "tuple", "namedtuple"):
        w.check(f"len({v}) == {len(spec.children)}")
        for k, (c, child) in enumerate(zip(x, spec.children)):
            _walk(w, f"{v}[{k}]", c, child, names)
        return
    if kind == "dict":
        # its keys in their order (the signature's: ``d.values()``, ``next(iter(d))`` read
        # in another order computed something else; checked as a set, the order was not)
        w.check(f"[*{v}] == {w.const(list(spec.keys))}")
        for key, child in zip(spec.keys, spec.children):
            _walk(w, f"{v}[{w.const(key)}]", x[key], child, names)
        return
    # an object: its field names, then each field
    fields = dict(_fields(x))
    if hasattr(x, "__tree_fields__"):
        method = type(x).__tree_fields__
        reads = _reads(method, x)
        if reads is None:
            w.check(f"tuple({v}.__tree_fields__()) == {tuple(spec.keys)!r}")
        else:  # not called: the method must still be the one read (not patched on the
            # class, no instance's own)
            w.check(f"type({v}).__tree_fields__ is {w.const(method)}")
            w.check(f"'__tree_fields__' not in getattr({v}, '__dict__', ())")
            if reads:  # ``return self.<reads>``, a tuple: read without the call
                w.check(f"{v}.{reads} == {tuple(spec.keys)!r}")
    elif not (dataclasses.is_dataclass(x) and not isinstance(x, type)):
        slotted = slots(type(x))
        refs = {}
        if slotted:  # its slots: those set at trace time read as attributes, the others unset
            unset = [k for k in slotted if k not in fields]
            if unset:
                w.check(" and ".join(f"not hasattr({v}, {k!r})" for k in unset))
            # (read with a default: a slot unset since is another structure, traced anew)
            unset_now = w.const(_UNSET)
            refs = {k: f"getattr({v}, {k!r}, {unset_now})" for k in slotted if k in fields}
        if hasattr(x, "__dict__"):
            d = w.name("d")
            w.lines.append(f"    {d} = {v}.__dict__")
            w.check(f"{d}.keys() == {w.const(frozenset(k for k in spec.keys if k not in refs))}")
            refs.update({k: f"{d}[{k!r}]" for k in spec.keys if k not in refs})
        for key, child in zip(spec.keys, spec.children):
            _walk(w, refs[key], fields[key], child, names)
        return
    for key, child in zip(spec.keys, spec.children):
        _walk(w, f"{v}.{key}", fields[key], child, names)


# --- rebinding device-resident leaves ---------------------------------------------------------

def make_rebinder(args, spec, targets: dict, frozen: tuple = (), inputs: dict | None = None):
    """``rebind(args, values, arrays)``: generated assignments that point the leaves
    ``targets`` names (``{leaf index: index into values}``) at their new values, for
    ``jax.Array`` arguments a compiled XLA step wrote (JAX arrays are immutable: the caller's
    tree gets the new ones); ``inputs`` (``{input position: index into values}``) puts them
    in the list of the call's input arrays too.

    A leaf held by a list, a dict or an object's attribute is assigned there; tuples and
    namedtuples (an optimiser's state), frozen dataclasses and slotted objects on the way are
    rebuilt with the new leaf and assigned in their turn to the nearest container that can
    take an assignment. A leaf with none above it (the argument itself, a tuple of arguments,
    a keyword argument: ``frozen`` names the containers that are the call's own) cannot be
    rebound: a :class:`~fluxml.compiler.trace.CompileError` names its path."""
    w = _Writer()
    w.consts["_rebuilt"] = _rebuilt
    w.consts["_tuple_new"] = tuple.__new__
    top = _rebind(w, "args", args, spec, [0], targets, "", frozen)
    if top is not None:
        path, _ = top
        raise CompileError(
            f"fl.compile(backend='xla'): the function writes the jax.Array at argument {path}, "
            "but JAX arrays are immutable and the compiled call can only rebind a leaf held "
            "by a list, a dict or an object's attribute (tuples on the way are rebuilt), and "
            "this one has none above it. Pass it inside a list, dict or model, return the "
            "new value instead of writing it, or pass a NumPy array (written in place).")
    w.lines += [f"    arrays[{k}] = values[{j}]" for k, j in (inputs or {}).items()]
    src = "def rebind(args, values, arrays):\n" + ("\n".join(w.lines) or "    pass") + "\n"
    return build(src, w.consts, "rebind")


def _count(spec) -> int:
    if spec.kind == "leaf":
        return 1
    return sum(_count(c) for c in spec.children) if spec.kind != "static" else 0


def _rebind(w, ref, x, spec, at, targets, path, frozen):
    """Emit the assignments below ``x`` (reached as ``ref``); return None when ``x`` itself
    stays, else ``(path of a rebound leaf, source of x's replacement)``."""
    kind = spec.kind
    if kind == "leaf":
        at[0] += 1
        j = targets.get(at[0] - 1)
        return None if j is None else (path, f"values[{j}]")
    start, n = at[0], _count(spec)
    if kind == "static" or not any(start <= i < start + n for i in targets):
        at[0] += n
        return None
    v = w.name()
    at_line = len(w.lines)
    w.lines.append(f"    {v} = {ref}")
    result = _rebind_node(w, v, x, spec, kind, at, targets, path, frozen)
    used = re.compile(rf"\b{v}\b")
    if not any(used.search(line) for line in w.lines[at_line + 1:]) and \
            not (result is not None and used.search(result[1])):
        del w.lines[at_line]  # every part of it replaced: the old node is never read
    return result


def _rebind_node(w, v, x, spec, kind, at, targets, path, frozen):
    if kind in ("list", "tuple", "namedtuple"):
        changed = {k: _rebind(w, f"{v}[{k}]", c, child, at, targets, _join(path, k), frozen)
                   for k, (c, child) in enumerate(zip(x, spec.children))}
        changed = {k: r for k, r in changed.items() if r is not None}
        if kind == "list" or not changed:  # (a tuple of objects assigned into: it stays)
            for k, (_, new) in changed.items():
                w.lines.append(f"    {v}[{k}] = {new}")
            return None
        items = [changed[k][1] if k in changed else f"{v}[{k}]" for k in range(len(x))]
        tail = "," if len(items) == 1 else ""
        new = f"({', '.join(items)}{tail})"
        if kind == "namedtuple":  # (its own __new__ if it has one; else one call less)
            t = w.const(spec.type)
            new = f"_tuple_new({t}, {new})" if _plain_namedtuple(spec.type) else \
                f"{t}(*{new})"
        return next(iter(changed.values()))[0], new
    if kind == "dict":
        changed = {}
        for key, child in zip(spec.keys, spec.children):
            r = _rebind(w, f"{v}[{w.const(key)}]", x[key], child, at, targets,
                        _join(path, key), frozen)
            if r is not None:
                changed[key] = r
        if isinstance(x, frozen) and changed:
            return next(iter(changed.values()))
        for key, (_, new) in changed.items():
            w.lines.append(f"    {v}[{w.const(key)}] = {new}")
        return None
    # an object: as the guard reads its fields (attributes, or its __dict__)
    fields = dict(_fields(x))
    # (a slotted object's slots are assigned as attributes, its other fields in __dict__)
    slotted = slots(type(x))
    plain = not hasattr(x, "__tree_fields__") and not (
        dataclasses.is_dataclass(x) and not isinstance(x, type))
    changed = {}
    for key, child in zip(spec.keys, spec.children):
        field = f"{v}.__dict__[{key!r}]" if plain and key not in slotted else _attribute(v, key)
        r = _rebind(w, field, fields[key], child, at, targets, _join(path, key), frozen)
        if r is not None:
            changed[key] = r
    params = getattr(type(x), "__dataclass_params__", None)
    if plain:
        for key, (_, new) in changed.items():
            field = _attribute(v, key) if key in slotted else f"{v}.__dict__[{key!r}]"
            w.lines.append(f"    {field} = {new}")
        return None
    if params is not None and params.frozen and changed:
        pairs = ", ".join(f"{key!r}: {new}" for key, (_, new) in changed.items())
        return next(iter(changed.values()))[0], f"_rebuilt({v}, {{{pairs}}})"
    for key, (_, new) in changed.items():
        w.lines.append(f"    {_attribute(v, key)} = {new}")
    return None


def _attribute(v, key) -> str:
    """``v.key`` (faster than getattr) where ``key`` is a plain name."""
    plain = isinstance(key, str) and key.isidentifier() and not keyword.iskeyword(key) \
        and not key.startswith("__")
    return f"{v}.{key}" if plain else f"getattr({v}, {key!r})"


def _plain_namedtuple(t) -> bool:
    """A namedtuple class whose ``__new__`` is the one ``collections.namedtuple`` wrote
    (which only calls ``tuple.__new__``), not a subclass's own, and no ``__init__``."""
    globals_ = getattr(t.__new__, "__globals__", {})
    return globals_.get("__name__", "").startswith("namedtuple_") and \
        t.__init__ is tuple.__init__


def _join(path, key) -> str:
    return f"{path}.{key}" if path else str(key)


def _rebuilt(obj, changes: dict):
    """A copy of an object that takes no assignment (a frozen dataclass), with ``changes``."""
    new = copy.copy(obj)
    for key, value in changes.items():
        object.__setattr__(new, key, value)
    return new
