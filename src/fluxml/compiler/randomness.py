"""Random numbers drawn with NumPy directly while ``fl.compile`` traces a function: NumPy's
generators return plain arrays, which the trace can only take as constants of the program,
so every call of the compiled function would reuse the first call's numbers. fluxml's own
draws (dropout, ``fluxml.ad.core.draw``) are recorded instead; a direct draw is refused,
noticed by the state of the generators the function could reach having moved: those it
names or takes (:func:`generators`), and those the user's code that ran while tracing could
reach (a helper's global ``rng``, ``cfg.rng``, a model's field: ``free.Ran``, which notes
each one's state when a function that can reach it starts; NumPy's draws are C calls no
hook sees).

>>> import numpy as np, fluxml as fl
>>> rng = np.random.default_rng(0)
>>> noisy = fl.compile(lambda x, rng: x + rng.normal(size=x.shape))
>>> try:
...     noisy(np.zeros(2), rng)
... except fl.CompileError as err:
...     print(str(err)[:71])
fl.compile: fn drew random numbers from a NumPy generator among its arg
"""

from __future__ import annotations

import gc
import types
import warnings

import numpy as np

from fluxml.compiler.trace import CompileError
from fluxml.tree import nodes

GENERATORS = (np.random.Generator, np.random.RandomState)


def generators(body, spec) -> list:
    """``(where, generator, shared)`` for each NumPy generator the traced function could
    draw from directly: those among its arguments and those its code names (closed over or
    global), then NumPy's global one and fluxml's default (``shared``: other threads may
    draw from these two meanwhile, so a change there is only reported)."""
    found, seen = [], set()

    def add(where, g, shared=False):
        if isinstance(g, GENERATORS) and id(g) not in seen:
            seen.add(id(g))
            found.append((where, g, shared))

    for node in nodes(spec):
        if node.kind == "static":
            add("a NumPy generator among its arguments", node.static)
    for name, value in closed_over(body).items():
        add(f"the NumPy generator `{name}` it closes over", value)
    code = getattr(body, "__code__", None)
    if code is not None:
        scope = getattr(body, "__globals__", {})
        for name in code.co_names:
            add(f"the global NumPy generator `{name}`", scope.get(name))
    # lazy: fluxml.init is loaded by now (import fluxml); named here to keep this module light
    from fluxml.init import default_rng

    add("NumPy's global generator (np.random.normal ...)", np.random.mtrand._rand, True)
    add("fluxml's default generator (fl.seed; a layer made inside the function draws its "
        "initial weights from it)", default_rng(), True)
    return found


def get_state(g):
    """A generator's state, to give back to :func:`set_state` (``fl.checkpoint`` replays a
    forward pass's draws with it)."""
    return g.bit_generator.state if isinstance(g, np.random.Generator) else g.get_state()


def set_state(g, state) -> None:
    if isinstance(g, np.random.Generator):
        g.bit_generator.state = state
    else:
        g.set_state(state)


def closed_over(f) -> dict:
    """The values ``f`` closes over, by name (none for a callable that is not a Python
    function; a cell of a name not yet assigned is empty, and left out)."""
    code = getattr(f, "__code__", None)
    cells = getattr(f, "__closure__", None)
    if code is None or not cells:
        return {}
    return {name: cell.cell_contents for name, cell in zip(code.co_freevars, cells)
            if _filled(cell)}


def _filled(cell) -> bool:
    try:
        cell.cell_contents  # noqa: B018 - an empty cell raises
    except ValueError:
        return False
    return True


def state(g):
    """A comparable snapshot of a generator's state."""
    s = get_state(g)
    return repr(s) if isinstance(g, np.random.Generator) else (s[0], s[1].tobytes(), *s[2:])


def check(watched, before, fname: str, reached=None) -> None:
    """Refuse (warn, for a generator shared with other threads) a draw made while tracing.
    ``reached``: ``{id: (generator, state, where)}``, the generators the user's code that
    ran could reach (``free.Ran.generators``: a helper's global ``rng``, ``cfg.rng``) with
    their states when first seen; those not among ``watched`` are refused in turn where
    they moved, unless made while tracing (a generator nothing else holds any more: a
    seeded one made inside the function draws the same numbers on every eager call too)."""
    for (where, g, shared), old in zip(watched, before):
        if state(g) != old:
            _refuse(where, shared, fname)
    known = {id(g) for _, g, _ in watched}
    for entry in (reached or {}).values():
        g, old, where = entry
        if id(g) not in known and state(g) != old and _held(g, entry, reached):
            _refuse(where, False, fname)


def _held(g, entry, reached) -> bool:
    """Whether something other than ``reached`` holds ``g`` (a global, a cell, a field)."""
    return any(r is not entry and r is not reached and not isinstance(r, types.FrameType)
               for r in gc.get_referrers(g))


def _refuse(where, shared, fname):
    message = (
        f"fl.compile: {fname} drew random numbers from {where} while it was traced: "
        "NumPy's draws are plain arrays, so they would be constants of the compiled "
        "program (the same numbers on every call). Draw outside and pass the numbers "
        "as an argument, or draw through fluxml.ad.core.draw(rng, 'normal', ...) (as "
        "fl.dropout does), which the program repeats on every call.")
    if not shared:
        raise CompileError(message)
    warnings.warn(message + " (If another thread drew from it meanwhile, ignore this.)",
                  stacklevel=5)
