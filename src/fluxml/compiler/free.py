"""The Python values a compiled function reads without taking them as arguments: the numbers,
strings and tuples of them it names as globals or closes over (a global learning rate, a
scale set by an enclosing function). A trace takes them as constants; without a check, a
call after ``LR = 0.5`` (or ``nonlocal k; k = 4.0``) ran the first value silently. They are
read on every call and are part of the signature: a new value traces again, as a new value
of a non-array argument does. The user's functions it names are read the same way, depth
first (a helper reading a global; the loss ``fl.train(compile=True)``'s wrapper closes
over), not fluxml's or installed libraries'; a ``functools.partial``'s keywords too.

Small lists and dicts of such values (a global ``CONFIG = {"lr": 0.1}``, a list default)
are read as tuples of their items on every call, so that a write in place is seen too. So
are such values that the code reads as fields of a global or closed-over object of the
user's (``cfg.scale``, ``args.opt.lr``: each ``name.attr.attr`` it writes, read from the
objects' own ``__dict__``, their ``__slots__`` or their class's plain attributes, so that no
property runs). A field read through a local name (``o = cfg.opt; o.lr``) is not watched.
The fast path compares by identity, then (where a value is another object: a snapshot, an
equal number made again) by value.
Arrays and larger or other mutable values are not watched: pass what changes as an
argument.

What the code names is not all that runs: a model argument's ``__call__``, a function
passed as an argument, a closed-over object's method. :class:`Ran` (a ``sys.setprofile``
hook while tracing) collects the user's functions that ran and the plain class attributes
of the user's classes they could read (``self.gain`` where ``M.gain = 1.0``); a trace's
``reader(body, ran, ...)`` watches those too, per trace (``Entry.read``), so that a new
value traces again. The values a function reached so closes over are not watched (a frame
does not give its cells), except those of functions among the arguments.
"""

from __future__ import annotations

import dis
import functools
import operator
import sys
import types

import numpy as np

from fluxml.compiler import randomness
from fluxml.compiler.calls import value_key
from fluxml.compiler.codegen import build

_MISSING = object()  # a global deleted since (the call then fails as eagerly, when traced)
_PLAIN = (type(None), bool, int, float, complex, str, bytes, np.generic)
_SMALL = 16  # the most items of a list or dict read as a snapshot on every call


def snapshot(x):
    """A small list or dict of plain values as a tuple of its items (tagged by its type); any
    other value as it is (a list holding arrays or objects: by identity, as unwatched)."""
    t = type(x)
    if t is list and len(x) <= _SMALL:
        items = (list, *x)
    elif t is dict and len(x) <= _SMALL:
        items = (dict, *x.items())
    else:
        return x
    return items if plain(items[1:]) else x


def _defaults(values):
    return values if values is None else tuple(map(snapshot, values))


def watched(x) -> bool:
    """A value read on every call: plain, or a small list or dict of plain values."""
    return plain(x) or (type(x) in (list, dict) and snapshot(x) is not x)


def plain(x) -> bool:
    """An immutable Python value a trace would make a constant."""
    if isinstance(x, _PLAIN) or x is list or x is dict:  # (the tags of a snapshot)
        return True
    return type(x) in (tuple, frozenset) and all(map(plain, x))


def reader(body, ran=None, functions=()):
    """``read() -> tuple`` of the current values of the plain globals and closed-over names
    read by ``body``'s code and by the user's Python functions it names (a helper it closes
    over or a global one, depth first; not fluxml's, NumPy's or other installed libraries'),
    or None if none. With ``ran`` (a :class:`Ran` that watched a trace of it), those read
    by the user's code that ran then too (reached through an argument or an object: a
    model's ``__call__``, a method), the plain class attributes it could read, and those
    read by ``functions`` (the functions among the arguments: their closed-over values)."""
    namespace: dict = {"_MISSING": _MISSING, "_snap": snapshot, "_defaults": _defaults,
                       "_field": field}
    parts: list = []
    if isinstance(body, functools.partial):  # its keywords (a dict, written in place by
        # ``p.keywords["k"] = 3.0``), then the function it calls
        namespace["p"] = body
        parts.append("_snap(p.keywords)")
        body = body.func
    seen: set = set()
    _collect(body, namespace, parts, seen)
    if ran is not None:
        for fn in functions:
            _collect(fn, namespace, parts, seen)
        for code, scope in ran.codes.values():  # (its cells are not known: a frame does not
            # give them; the closures among the arguments are read above)
            _collect_code(code, (), scope, namespace, parts, seen, 0)
        for kind, name in ran.attributes:
            value = field(kind, (name,))
            if value is _MISSING or not watched(value):
                continue
            k = f"k{len(namespace)}"
            namespace[k] = kind
            read = f"_field({k}, {(name,)!r})"
            parts.append(read if plain(value) else f"_snap({read})")
    if not parts:
        return None
    return build(f"def read():\n    return ({', '.join(parts)},)\n", namespace, "read")


def _collect(fn, namespace, parts, seen, depth=0):
    code = getattr(fn, "__code__", None)
    if code is None or id(code) in seen or depth > 8:
        return
    if not _users(fn):  # a library's wrapper (fl.train's compiled step): only the user's
        # functions it closes over (the loss), not its own settings
        seen.add(id(code))
        for cell in getattr(fn, "__closure__", None) or ():
            value = _contents(cell)
            if isinstance(value, types.FunctionType):
                _collect(value, namespace, parts, seen, depth + 1)
        return
    defaults = getattr(fn, "__defaults__", None)
    if defaults and all(map(watched, defaults)):  # (a list default appended to in place)
        name = f"f{len(namespace)}"
        namespace[name] = fn
        parts.append(f"_defaults({name}.__defaults__)")
    _collect_code(code, getattr(fn, "__closure__", None) or (),
                  getattr(fn, "__globals__", None), namespace, parts, seen, depth)


def _collect_code(code, cells, scope, namespace, parts, seen, depth):
    """The plain values ``code`` reads through its cells and globals (``scope``) as ``read``
    parts; then those of the functions it names and of the code defined inside it (a lambda's
    globals: its cells are made when it runs, not known here)."""
    if id(code) in seen or depth > 8:
        return
    seen.add(id(code))
    called = []
    for cell in cells:
        value = _contents(cell)
        if value is _MISSING:
            continue
        if watched(value):
            name = f"c{len(namespace)}"
            namespace[name] = cell
            parts.append(f"{name}.cell_contents" if plain(value) else
                         f"_snap({name}.cell_contents)")
        elif isinstance(value, types.FunctionType):
            called.append(value)
    if scope is not None:
        g = f"g{len(namespace)}"
        namespace[g] = scope
        for name in dict.fromkeys(code.co_names):
            value = scope.get(name, _MISSING)
            if watched(value):
                read = f"{g}.get({name!r}, _MISSING)"
                parts.append(read if plain(value) else f"_snap({read})")
            elif isinstance(value, types.FunctionType):
                called.append(value)
    _collect_fields(code, cells, scope, namespace, parts)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _collect_code(const, (), scope, namespace, parts, seen, depth + 1)
    for f in called:
        _collect(f, namespace, parts, seen, depth + 1)


def _collect_fields(code, cells, scope, namespace, parts):
    """The plain values ``code`` reads as fields of a global or closed-over object of the
    user's (``cfg.scale``: a name loaded, then attributes), as ``read`` parts."""
    free = dict(zip(code.co_freevars, cells))
    chains: dict = {}
    base, names = None, []
    for op in dis.get_instructions(code):
        if op.opname == "LOAD_ATTR" and base is not None:
            names.append(op.argval)
            continue
        if base is not None and names:
            chains.setdefault((base, tuple(names)), None)
        base, names = None, []
        if op.opname == "LOAD_GLOBAL" and scope is not None:
            base = ("g", op.argval)
        elif op.opname == "LOAD_DEREF" and op.argval in free:
            base = ("c", op.argval)
    for (kind, name), attrs in chains:
        if kind == "g":
            g = f"g{len(namespace)}"
            namespace[g] = scope
            read, owner = f"{g}.get({name!r}, _MISSING)", scope.get(name, _MISSING)
        else:
            c = f"c{len(namespace)}"
            namespace[c] = free[name]
            read, owner = f"{c}.cell_contents", _contents(free[name])
        if not _owner(owner):
            continue
        value = field(owner, attrs)
        if value is not _MISSING and watched(value):
            read = f"_field({read}, {attrs!r})"
            parts.append(read if plain(value) else f"_snap({read})")


def field(x, names):
    """``x.a.b`` for ``names`` ``("a", "b")``, read from each object's own ``__dict__``, its
    ``__slots__`` or its class's plain attribute (no property or ``__getattr__`` runs);
    ``_MISSING`` where one is not there or is read by a descriptor of other kinds."""
    for name in names:
        x = _own_field(x, name)
        if x is _MISSING:
            break
    return x


def _own_field(x, name):
    """``x.name`` where no user code runs to read it: a class attribute read through an
    instance (``K.scale = 2.0`` changes ``k.scale``) and a ``__slots__`` field were missed,
    so their changes ran the first trace, silently."""
    try:  # not getattr(x, "__dict__"): a slotted object's __getattr__ would run
        return object.__getattribute__(x, "__dict__")[name]
    except (AttributeError, TypeError, KeyError):
        pass
    for kind in (x if isinstance(x, type) else type(x)).__mro__:
        if name in kind.__dict__:
            value = kind.__dict__[name]
            if isinstance(value, types.MemberDescriptorType):  # a __slots__ field
                try:
                    return value.__get__(x)
                except AttributeError:  # deleted or not yet set
                    return _MISSING
            return _MISSING if hasattr(type(value), "__get__") else value
    return _MISSING


def _owner(x) -> bool:
    """An object whose fields a compiled function's reads are watched: one of the user's
    (an instance, class or module not of fluxml or an installed library)."""
    if x is _MISSING or watched(x) or isinstance(x, _FUNCTIONS):
        return False
    if isinstance(x, types.ModuleType):
        return (x.__name__ or "").partition(".")[0] not in _LIBRARIES and not _installed(x)
    kind = x if isinstance(x, type) else type(x)
    return (getattr(kind, "__module__", "") or "").partition(".")[0] not in _LIBRARIES


_FUNCTIONS = (types.FunctionType, types.BuiltinFunctionType, types.MethodType,
              functools.partial)


def _installed(module) -> bool:
    """A module of an installed library (under site-packages), not the user's."""
    path = getattr(module, "__file__", None) or ""
    return "site-packages" in path or "dist-packages" in path


def _contents(cell):
    try:
        return cell.cell_contents
    except ValueError:  # a name not yet assigned
        return _MISSING


def _users(fn) -> bool:
    """A function of the user's (not of fluxml or an installed library: their globals are
    settings, not what the program computes with)."""
    module = getattr(fn, "__module__", None) or ""
    top = module.partition(".")[0]
    return top not in _LIBRARIES


_LIBRARIES = frozenset({"fluxml", "numpy", "jax", "jaxlib", "scipy", "functools", "builtins"})


def key(values: tuple) -> tuple:
    """The signature's part for the values ``read`` returned: each one's type and value (an
    object that is no longer plain, by identity: the entry keeps it)."""
    return tuple(value_key(v) if plain(v) else ("id", type(v), id(v)) for v in values)


def same(values: tuple, seen: tuple) -> bool:
    """Whether every value is the object a trace (or the last call) saw."""
    return all(map(operator.is_, values, seen)) or key(values) == key(seen)


# --- what ran while a function was traced -------------------------------------------------

class Ran:
    """What the user's code did while a function was traced, seen by a ``sys.setprofile``
    hook on this thread (the one tracing; other threads are not watched), so that what is
    reached only at run time is watched too: through an argument (a model's ``__call__``, a
    function passed in), a closed-over object's method, a helper's global.

    ``codes``: the code objects of the user's Python functions that ran, with their globals
    (:func:`reader` watches the plain globals they read, as those ``fn`` names).
    ``attributes``: ``(class, name)`` of the plain class attributes of the user's classes
    that such code could read through an object it was given or reads (``self.gain`` where
    ``gain = 1.0`` is set on the class: ``M.gain = 6.0`` traces again).
    ``generators``: ``{id: (generator, state, where)}``, each NumPy generator such code
    reads (a helper's global ``rng``, ``cfg.rng``), with its state when first seen: one
    that moved while tracing was drawn from (``randomness.check_reached``).

    NumPy's draws are C calls that no hook sees, hence the generators reachable from the
    code (its arguments, closed-over values, the globals it names and the fields of the
    user's objects among them that it names) are looked at when each function starts.
    Under another profiler (``cProfile``: no Python function to chain to) nothing is
    watched beyond what the code names statically."""

    __slots__ = ("codes", "attributes", "generators", "_kinds", "_previous", "_on")

    def __init__(self):
        self.codes: dict = {}
        self.attributes: dict = {}
        self.generators: dict = {}
        self._kinds: dict = {}  # id(code) -> (code, the user's?, its names)
        self._previous = None
        self._on = False

    def __enter__(self):
        previous = sys.getprofile()
        if previous is None or (callable(previous) and not hasattr(previous, "enable")):
            # (a profiler's own hook, as cProfile's, is left as it is: nothing to chain to)
            self._previous = previous
            self._on = True
            sys.setprofile(self._event)
        return self

    def __exit__(self, *exc):
        if self._on:
            sys.setprofile(self._previous)
            self._on = False
        return False

    def _event(self, frame, event, arg):
        previous = self._previous
        if previous is not None:
            previous(frame, event, arg)
        if event != "call":
            return
        code = frame.f_code
        kind = self._kinds.get(id(code))
        if kind is None:
            kind = self._kinds[id(code)] = (code, _user_code(frame.f_globals),
                                            frozenset(code.co_names))
        if kind[1]:
            try:
                self._started(frame, code, kind[2])
            except Exception:  # noqa: BLE001 - never break the traced code (a field that
                pass  # cannot be read is not watched)

    def _started(self, frame, code, names):
        scope = frame.f_globals
        if id(code) not in self.codes:
            self.codes[id(code)] = (code, scope)
        where = code.co_name
        for name, value in frame.f_locals.items():  # (its arguments and closed-over values)
            self._look(value, names, name, where, 0)
        for name in names:
            value = scope.get(name, _MISSING)
            if value is not _MISSING:
                self._look(value, names, name, where, 0)

    def _look(self, x, names, path, where, depth):
        """The generators ``x`` is or holds in the fields ``names`` (the attribute names the
        code uses) and the plain class attributes of those names it could read."""
        if isinstance(x, randomness.GENERATORS):
            if id(x) not in self.generators:
                self.generators[id(x)] = (x, randomness.state(x),
                                          f"the NumPy generator `{path}` ({where} reads it)")
            return
        if depth > 2 or type(x) in _SKIP or isinstance(x, _FUNCTIONS) or watched(x):
            return
        if isinstance(x, (types.ModuleType, type)):
            if not _user_module_or_class(x):
                return
            own = x.__dict__
        else:
            kind = type(x)
            if (getattr(kind, "__module__", "") or "").partition(".")[0] in _LIBRARIES:
                return
            try:  # (not getattr: no __getattr__ runs)
                own = object.__getattribute__(x, "__dict__")
            except AttributeError:
                own = {}
            if _user_class(kind):
                for name in names:  # a plain class attribute it could read through x
                    if name in own or name.startswith("__"):
                        continue
                    for base in kind.__mro__:
                        if name in base.__dict__:
                            if _user_class(base) and watched(base.__dict__[name]):
                                self.attributes.setdefault((kind, name), None)
                            break
        for name in names & own.keys():
            self._look(own[name], names, f"{path}.{name}", where, depth + 1)


_SKIP = frozenset({list, tuple, dict, set, frozenset, np.ndarray, type(None)})


def _user_code(scope) -> bool:
    """Whether a frame with these globals runs the user's code: a module's (generated code
    has no ``__name__``) that is not fluxml's, the standard library's or an installed
    library's."""
    name = scope.get("__name__")
    if not isinstance(name, str):
        return False
    top = name.partition(".")[0]
    if top in _LIBRARIES or top in sys.stdlib_module_names:
        return False
    path = scope.get("__file__") or ""
    return not isinstance(path, str) or ("site-packages" not in path
                                         and "dist-packages" not in path)


def _user_class(kind) -> bool:
    module = sys.modules.get(getattr(kind, "__module__", None) or "")
    return module is not None and _user_code(module.__dict__) or \
        (module is None and (getattr(kind, "__module__", "") or "").partition(".")[0]
         not in _LIBRARIES)


def _user_module_or_class(x) -> bool:
    if isinstance(x, types.ModuleType):
        return _user_code(x.__dict__)
    return isinstance(x, type) and _user_class(x)
