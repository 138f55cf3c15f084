"""Traced numbers: the Python numbers among a compiled function's arguments that are inputs of
the program (0-d values), not constants baked into it.

Every other non-array leaf of the arguments is part of the signature: a new value traces the
function again. That is right for numbers that choose what the program does (a layer count,
a norm's order, a step that accumulates ``n`` gradients), and wrong for numbers that only
scale it and change between calls: an optimiser's learning rate set by a schedule before each
step would trace the step every time. So a class lists in ``hyperparameters`` the fields
whose numbers are traced (the optimisation rules do: ``eta``, ``beta`` ...); any number under
such a field (a tuple's entries too) is an input, and a new value reuses the trace. Its type
is part of the signature, and the program takes it as it is: a Python float (int) as a weak
input (``ir.Var.weak``), so that ``x32 * self.eta`` computes in float32 as eagerly (NumPy's
promotion, NEP 50, takes a Python number as weak); a NumPy number (``np.float64(0.5)``,
strong) as a 0-d input of its dtype.

Of those, the fields listed in ``switches`` stay constants when they are exactly 0: the code
may then skip what the number turns off (AdamW without weight decay), and a change between 0
and not 0 traces again. The numbers of one object reached several times (the rule that the
arrays of a state share, and keep sharing through ``fl.adjust``) are one input each, as the
same array twice is one input; which are shared is part of the signature. Equal numbers of
different objects are separate inputs (each may change alone).

>>> import fluxml as fl
>>> from fluxml.tree import flatten
>>> adam = fl.Adam(0.01)
>>> leaves, spec = flatten([adam, fl.AccumGrad(2), adam])
>>> leaves
[0.01, 0.9, 0.999, 1e-08, 2, 0.01, 0.9, 0.999, 1e-08]
>>> found = find(spec, leaves)  # leaf -> (first leaf of the same number, a switch?)
>>> {i: first for i, (first, switch) in found.items()}  # (AccumGrad's n: static)
{0: 0, 1: 1, 2: 2, 3: 3, 5: 0, 6: 1, 7: 2, 8: 3}
"""

from __future__ import annotations

import numpy as np

_DECLARED: dict = {}  # class -> (traced field names, switch field names)


def _declared(t) -> tuple:
    found = _DECLARED.get(t)
    if found is None:
        found = _DECLARED[t] = (frozenset(getattr(t, "hyperparameters", ())),
                                frozenset(getattr(t, "switches", ())))
    return found


def find(spec, leaves) -> dict:
    """``{leaf index: (first, switch)}`` for the traced numbers among ``leaves`` (flattened
    with ``spec``): the first leaf holding the same number (of the same object), and whether
    its field is a switch."""
    slots: dict = {}
    _walk(spec, leaves, [0], None, slots)
    found: dict = {}
    first: dict = {}
    for i, (slot, switch) in slots.items():
        x = leaves[i]
        if _is_number(x) and not (switch and x == 0):
            found[i] = (first.setdefault(slot, i), switch)
    return found


def _is_number(x) -> bool:
    return type(x) in NUMBER_TYPES  # (another kind, a float subclass: static)


def _walk(spec, leaves, at, slot, slots):
    """Mark the leaves under a declared field: ``{leaf index: (slot, switch)}``, the slot the
    owner's id, the field's name and the path below it."""
    kind = spec.kind
    if kind == "leaf":
        if slot is not None:
            slots[at[0]] = slot
        at[0] += 1
        return
    if kind == "static":
        return
    keys = spec.keys if spec.keys is not None else range(len(spec.children))
    traced = switches = ()
    if kind == "object" and slot is None:
        traced, switches = _declared(spec.type)
    for key, child in zip(keys, spec.children):
        if slot is not None:
            sub = (slot[0] + (key,), slot[1])
        elif key in traced:
            sub = ((id(spec.static), key), key in switches)
        else:
            sub = None
        _walk(child, leaves, at, sub, slots)


# the types of number a compiled call passes as a traced number, as they are (a bool, a
# complex number or another type is static: a new value traces again)
NUMBER_TYPES = frozenset({float, int} | {np.dtype(c).type for c in
                                         "efd" + np.typecodes["AllInteger"]})
