"""Values a compiled function stores outside itself.

A function given to ``fl.compile`` may store a traced value on an object it closes over or
names as a global (``self.last = h`` on a closed-over layer), itself or within an inner
``fl.gradient`` (which eagerly keeps such a value as a plain array, ad/reached.py; inside
``fl.compile`` that value is a tracer of the compile trace, which the rest of the traced
function may use). A compiled program runs without the Python function, so nothing is
stored there when it runs: such a value is left a dead tracer whose error, when it is used,
names where it is and what to do. (It was the generic 'a traced value escaped', which told
the user to close over the object: they had.)
"""

from __future__ import annotations

from fluxml.ad.core import Tracer
from fluxml.ad.reached import _HOLDERS, _walked, reached, walk
from fluxml.ad.writeback import _put


def name_stored(f, trace) -> None:
    """Replace each tracer of ``trace`` (closed) stored on what ``f`` reaches, or on a holder
    an inner transform lowered its tracers onto, by a dead tracer naming its place. The walk
    is bounded as the inner transforms' is; it runs once per trace, not per call."""
    stack = reached(f) + _HOLDERS.pop(trace, [])
    for x, items in walk(stack):
        for k, v in items:
            if type(v) is Tracer and v._trace is trace:
                _put(x, k, _dead(v, _place(x, k)))
            elif _walked(v):
                stack.append(v)


def _place(holder, key) -> str:
    """``Probe.last``, ``dict['h']``, ``list[3]``."""
    name = type(holder).__name__
    if isinstance(holder, dict):
        return f"{name}[{key!r}]"
    return f"{name}.{key}" if isinstance(key, str) else f"{name}[{key}]"


def _dead(t, place: str):
    """``t``, a tracer of a closed compile trace, as one whose every use raises an error
    naming ``place`` (a closed trace of its own: the message is the trace's)."""
    closed = type(t._trace)()
    closed.closed = (
        f"fl.compile: {place} holds a value traced inside fl.compile: the compiled function "
        "stored it there (on an object it closes over or names as a global), itself or "
        "within a fl.gradient inside it. A compiled program runs without the Python function, "
        "so nothing is stored there when it runs, and this value has no numbers. Return the "
        "value instead: from the compiled function, and out of a loss as fl.withgradient's "
        "(loss, value); or call the function uncompiled where you need what it stores.")
    return closed.new(t._val, t._box, False)
