"""What a differentiated function stores where its arguments do not reach it: on objects it
closes over, names as globals, or belongs to (``self.state = h`` on a model the loss closes
over). Once the transform is closed, :func:`plain_reached` walks them (bounded) and makes
the tracers stored there plain values, as ``writeback.py`` writes back what is stored on the
arguments: the model holds what it would hold had the function run eagerly.

>>> import numpy as np, fluxml as fl
>>> seen = []
>>> _ = fl.gradient(lambda x: seen.append(x * 2) or np.sum(x), np.ones(2))
>>> type(seen[0]).__name__
'ndarray'
"""

from __future__ import annotations

import collections
import functools
import itertools
import types

from fluxml import tree, treenodes
from fluxml.ad.core import Tracer
from fluxml.ad.writeback import _KEPT, Rebuilt, _copy, _over, _put, restore_parts


def plain_reached(f, trace, rebuilt: Rebuilt | None = None, held: list | None = None) -> None:
    """Tracers of ``trace`` that ``f`` stored on objects it reaches without being given them
    (closed over, named as globals, or ``f``'s own object: ``self.state = h`` on a model the
    loss closes over) become plain copies of their values once ``trace`` is closed, as an
    argument's are written back: the model holds what it would hold had ``f`` run eagerly,
    not a dead tracer that fails when used. A function stored there over the traced copy or
    its tracers (``hooks.append(lambda z: model(z))``) is made over the originals, as one
    stored on an argument is: with ``rebuilt``, when it writes back (after a successful
    transform), else over plain copies now. (Objects reached only through other functions
    are not seen: their tracers fail by name when used.) ``held``, a list, is walked too
    (withgradient's, holding the tuple its wrapper of ``f`` saw ``f`` return).

    The walk runs on every transform's call, so it is bounded: of a list, deque or dict
    longer than ``_LONG`` only the last ``_TAIL`` entries are looked at (where the function
    appends: a history of losses), and it stops after ``_BUDGET`` entries in all (a
    tracer stored beyond fails by name when used). One traced value stored at several
    places becomes one array, the one the arguments' write-back gives it (``rebuilt``).

    At higher order a stored tracer of ``trace`` holds a tracer of an outer transform (the
    value the field would hold had ``f`` run eagerly, inside the outer one): it becomes that
    outer tracer, and its holder is walked again when the outer transform closes
    (:func:`open_walk`), where it becomes a plain array in turn. (It was left a dead tracer:
    the outer function reaches the layer only through the loss function it calls.)"""
    roots = reached(f)
    if held:  # (withgradient's list of f's tuple output: walked as f's own)
        roots.append(held)
    given = _HOLDERS.pop(trace, None)
    if given:
        roots += given
    if not roots:
        return
    functions = rebuilt.reached if rebuilt is not None else []
    # an argument's tracer is the argument (or its new value), as the arguments' write-back
    # gives it; a traced value one copy for all its places
    convert = rebuilt.restore if rebuilt is not None else _copier()
    stack = roots
    lowered: list = []  # the outer traces whose tracers the last entry now holds
    for x, items in walk(stack):
        for k, v in items:
            new = _plain(v, trace, stack, convert, lowered)
            if new is not v:
                _put(x, k, new)
                while lowered:  # holds an outer transform's tracer now: walked at its close
                    _HOLDERS[lowered.pop()].append(x)
            elif type(v) in _FUNCTIONS:
                functions.append((x, k, v))
    if rebuilt is None:
        for x, k, v in functions:
            if _over(v, trace, {}):
                _put(x, k, restore_parts(v, {}, lambda a: _plain(a, trace, [], convert, [])))


def walk(stack: list):
    """``(holder, its entries)`` for each holder popped from ``stack`` (onto which the caller
    pushes what to walk next), each once, until ``_BUDGET`` entries in all."""
    seen: set = set()
    budget = _BUDGET
    while stack and budget > 0:
        x = stack.pop()
        if id(x) in seen:
            continue
        seen.add(id(x))
        items = entries(x)
        budget -= len(items)
        yield x, items


def entries(x) -> list:
    """``(key, value)`` of a holder the walk enters: a dict's, list's or deque's entries (of
    a long one, its last ``_TAIL``: where a function appends), an object's fields."""
    if isinstance(x, dict):
        return list(x.items()) if len(x) <= _LONG else \
            list(itertools.islice(reversed(x.items()), _TAIL))
    if isinstance(x, (list, collections.deque)):
        n = len(x)
        return list(enumerate(x)) if n <= _LONG else [(k, x[k]) for k in range(n - _TAIL, n)]
    return list(tree.tree_state(x).items())


def open_walk(trace) -> None:
    """Let ``trace``, an open transform's, be given the holders of its tracers that an inner
    transform's :func:`plain_reached` leaves (a higher-order gradient's stored values); its
    own ``plain_reached`` walks them."""
    _HOLDERS[trace] = []


_HOLDERS: dict = {}  # an open transform's trace -> holders of its tracers to walk at its close


# the bounds of plain_reached's walk (entries): long containers' tails, and in all
_LONG, _TAIL, _BUDGET = 1024, 64, 2_000


_FUNCTIONS = {types.FunctionType, types.MethodType, functools.partial}


def _copier():
    """A tracer's plain copy, one per tracer (a value stored at two places is one array)."""
    memo: dict = {}

    def convert(v):
        new = memo.get(id(v))
        if new is None:
            new = memo[id(v)] = _copy(v._val)
        return new

    return convert


def _plain(v, trace, stack, convert, lowered):
    """``v`` with its tracers of ``trace`` as plain values (``convert``): a tracer, or a
    tuple holding some (rebuilt: ``history.append((step, loss))``); a part to walk goes on
    ``stack``. A tracer over an outer transform's tracer becomes the outer one (what
    ``convert`` gives), when that transform walks what it is given at its close; its trace
    goes on ``lowered``."""
    if type(v) is Tracer:
        if v._trace is trace:
            low = v._val
            if type(low) is not Tracer:
                return convert(v)
            if low._trace in _HOLDERS:
                new = convert(v)
                if type(new) is Tracer and new._trace in _HOLDERS:
                    lowered.append(new._trace)
                return new
    elif isinstance(v, tuple):
        items = [_plain(a, trace, stack, convert, lowered) for a in v]
        if any(a is not b for a, b in zip(items, v)):
            return type(v)(*items) if hasattr(v, "_fields") else type(v)(items)
    elif _walked(v):
        stack.append(v)
    return v


def _walked(v) -> bool:
    """Whether the walk of :func:`plain_reached` enters ``v``: a list, dict or deque, or an
    object node of the trees (a layer), never an array or a module (by type, once)."""
    t = type(v)
    walked = _WALKED.get(t)
    if walked is None:
        if issubclass(t, (dict, list, collections.deque)):
            walked = True
        elif t in _KEPT or issubclass(t, tuple):
            walked = False
        else:
            walked = (treenodes._NODES.get(t) or treenodes._node_kind(t))[0] != "static"
        _WALKED[t] = walked
    return walked


_WALKED: dict = {}


def reached(f) -> list:
    """The lists, dicts and objects ``f`` closes over or names as globals, and the object a
    method or a callable object belongs to, or a partial's arguments. (On every transform's
    call: kept cheap.)"""
    t = type(f)
    if t is types.MethodType:
        return [v for v in (f.__self__,) if _walked(v)] + reached(f.__func__)
    if t is functools.partial:  # fl.gradient(partial(loss, model), x)
        return [v for v in (*f.args, *f.keywords.values()) if _walked(v)] + reached(f.func)
    if t is not types.FunctionType:  # a callable object: a layer, a loss's
        return [f] if _walked(f) else []
    names = _GLOBALS.get(f.__code__)
    if names is None:  # (most of a code's names are attributes, np.sum's sum, or modules,
        # functions and classes: those are left out once, when the code is first seen)
        names = _global_names(f)
    closure = f.__closure__
    if closure is None and not names:  # (most lambdas given to fl.gradient)
        return []
    out = []
    known = _WALKED
    for c in closure or ():
        try:
            v = c.cell_contents
        except ValueError:  # a name not assigned yet
            continue
        walked = known.get(type(v))
        if walked or walked is None and _walked(v):
            out.append(v)
    if names:
        scope = f.__globals__
        out += [v for k in names if _walked(v := scope.get(k))]
    return out


def _global_names(f) -> tuple:
    """The names ``f``'s code reads as globals that may hold state (not modules, functions
    or classes), once per code; a name not yet defined is kept (a notebook defines the list
    a loss appends to after its first, failed call; attribute names cost a lookup each)."""
    if len(_GLOBALS) > 4096:  # (code made at run time, exec'd programs: kept bounded)
        _GLOBALS.clear()
    scope = f.__globals__
    names = _GLOBALS[f.__code__] = tuple(
        k for k in f.__code__.co_names if not isinstance(scope.get(k), _NOT_STATE))
    return names


_GLOBALS: dict = {}  # code -> those of its names that may be globals holding state
_NOT_STATE = (types.ModuleType, types.FunctionType, types.BuiltinFunctionType, type)
