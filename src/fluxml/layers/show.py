"""Printing models as Flux does: one layer a line, containers nested, parameter counts.

A layer's own line is its ``_line()`` (the constructor call: ``Dense(784 => 32, relu)``);
a container lists its children through ``_show_children()``. At the top level each line
carries its parameter count, and a total closes the listing.

>>> import numpy as np, fluxml as fl
>>> fl.Chain(fl.Dense(2, 3, np.tanh), fl.Dense(3, 1))
Chain(
  Dense(2 => 3, tanh),                  # 9 parameters
  Dense(3 => 1),                        # 4 parameters
)                   # Total: 4 arrays, 13 parameters, 52 bytes.
"""

from __future__ import annotations

import numpy as np

from fluxml.layers.module import own_name, parameter_arrays
from fluxml.treenodes import kind_of

COMMENT_COLUMN = 40  # where the "# n parameters" comments start, as Flux aligns them


def render(model) -> str:
    """The whole listing of ``model`` (what ``repr`` of a Module gives)."""
    children = show_children(model)
    if children is None:
        line = line_of(model)
        note = _count_note(model)
        return f"{line}  {note}" if note else line
    lines: list[str] = []
    _nested(model, "", None, lines, top=True)
    try:
        total = _total(model)
    except ValueError:  # (a cycle: the trees refuse it, by name, where it matters)
        total = ""
    return "\n".join(lines) + total


def line_of(x) -> str:
    """One line for ``x``: a layer's constructor call, a function's name."""
    line = getattr(x, "_line", None)
    if line is not None and callable(line):
        try:
            return own_name(x, line())
        except (TypeError, AttributeError, ValueError, IndexError):
            # a structural gradient has the layer's class but None for its settings: show
            # its fields instead of the constructor call
            from fluxml.layers.module import Module

            return Module._line(x)
    return name_of(x)


def name_of(f) -> str:
    """A function's name (activations print as ``relu``, not ``<function relu at ...>``)."""
    name = getattr(f, "__name__", None)
    if name is not None:
        return name
    if hasattr(f, "__dict__"):
        return f"{type(f).__name__}(...)"
    return repr(f)


def show_children(x):
    """``[(label, child), ...]`` for containers, None for leaf layers and functions."""
    kind = kind_of(x)  # (the containers as the trees read them: a deque is a list there)
    if kind in ("list", "tuple", "namedtuple"):
        return [(None, c) for c in x]
    if kind == "dict":
        return list(x.items())
    get = getattr(x, "_show_children", None)
    return get() if get is not None and callable(get) and not isinstance(x, type) else None


_BRACKETS = {list: ("[", "]"), tuple: ("(", ")"), dict: ("{", "}")}


def _nested(x, indent, label, lines, top=False, path=()):
    prefix = indent + (f"{label} = " if label is not None else "")
    end = "" if top else ","
    if id(x) in path:  # a child holding its parent: its line names it, once (it recursed
        lines.append(f"{prefix}<cycle: {type(x).__name__} above>{end}")  # without end)
        return
    children = show_children(x)
    if children is None:
        line = prefix + line_of(x) + end
        note = _count_note(x)
        lines.append(_with_comment(line, note) if note else line)
        return
    opener, closer = _BRACKETS.get(type(x), (type(x).__name__ + "(", ")"))
    lines.append(prefix + opener)
    for child_label, child in children:
        _nested(child, indent + "  ", child_label, lines, path=path + (id(x),))
    lines.append(indent + closer + end)


def _with_comment(line, note):
    return line + " " * max(COMMENT_COLUMN - len(line), 2) + note


class ArrayField:
    """A layer's own array in its nested listing: ``gain = float32[3],  # 3 parameters``."""

    def __init__(self, array, frozen: bool):
        self.array, self.frozen = array, frozen

    def _line(self) -> str:
        return f"{self.array.dtype}{list(self.array.shape)}"

    def note(self) -> str:
        if getattr(self.array.dtype, "kind", "f") not in "fc":
            return ""
        n = f"{self.array.size:,}"
        return f"# {n} non-trainable" if self.frozen else f"# {n} parameters"


def _count_note(x) -> str:
    if isinstance(x, ArrayField):
        return x.note()
    try:
        train, other = parameter_arrays(x)
    except (TypeError, AttributeError, ValueError):
        return ""
    n = sum(a.size for a in train)
    if not train and not other:
        return ""
    note = f"# {n:,} parameters"
    if other:
        note += f", plus {sum(a.size for a in other):,} non-trainable"
    if any(bool(np.isnan(a).any()) for a in train):
        note += "  (some NaN)"
    elif train and n and all(not a.any() for a in train):
        note += "  (all zero)"
    return note


def _total(model) -> str:
    train, other = parameter_arrays(model)
    nbytes = sum(a.nbytes for a in train + other)
    head = " " * 19 + f"# Total: {len(train)} {'trainable ' if other else ''}arrays, "
    head += f"{sum(a.size for a in train):,} parameters,"
    if other:
        head += (f"\n{' ' * 20}# plus {len(other)} non-trainable, "
                 f"{sum(a.size for a in other):,} parameters,")
    return f"{head} {nbytes:,} bytes."
