"""Does an optimiser state fit the model it steps? The checks ``update`` makes before a step
(no two of the model's arrays share memory; each Leaf's state holds arrays of its
parameter's shape) and the one it makes after NumPy refused a step (which state does not
fit), each naming the part of the model at fault. What a check found is noted on the Leaf
(``_fitted``, ``_disjoint``: never saved, never flattened), so the next step checks again
only what changed.
"""

from __future__ import annotations

import itertools
import operator

import numpy as np

from fluxml._dtypes import is_complex
from fluxml.io.modelstate import _overlapping
from fluxml.optimise.composite import MixedPrecision, OptimiserChain
from fluxml.optimise.refusals import _refuse_misfit, _where


def _refuse_shared_memory(pending):
    """Two arrays of the model that share memory without being one array (a view made after
    ``setup``, which refuses them: ``model.dec.weight = model.enc.weight.T``) would each be
    stepped with its own state, the shared entries twice, and in an order that is no
    contract (the arrays stepped together first): refused before any step. Only a model
    holding views pays more than one attribute read an array, and the arrays found apart are
    noted on the first Leaf (``_disjoint``): the same array objects share no memory at the
    next step either (an array's memory is its own for its lifetime), so the byte ranges
    (~1.5 us an array: a model rebuilt by ``fl.destructure`` is all views of one vector) are
    read again only when an array is another object."""
    arrays, by_leaf = pending
    views = False
    for _, x, _ in arrays.values():
        if type(x) is np.ndarray and x.base is not None:
            views = True
            break
    if not views:
        return
    items = [(leaf, x) for leaf, x, _ in arrays.values() if type(x) is np.ndarray]
    xs = tuple([x for _, x in items])
    first = items[0][0]
    known = first.__dict__.get("_disjoint")
    if known is not None and len(known) == len(xs) and all(map(operator.is_, known, xs)):
        return
    for group in _overlapping(list(xs)):
        for i, j in itertools.combinations(group, 2):
            if np.shares_memory(items[i][1], items[j][1]):
                a, b = (_where(by_leaf[id(items[k][0])][1]) for k in (i, j))
                raise ValueError(
                    f"update: {a} and {b} are views of the same memory but not the "
                    f"same array (made so after setup, which refuses them), so each would be "
                    f"stepped with its own state, their shared entries twice; nothing was "
                    f"stepped. Tie weights with the very same array (dec.weight = "
                    f"enc.weight), transposed where it is used, and set the state up again")
    first._disjoint = xs


def _check_fits(leaf, fits, want, path, model):
    """Refuse a Leaf whose state holds arrays of other shapes than ``want`` (its parameter's),
    and note the state, rule and shape checked in ``leaf._fitted`` (not a tree field: never
    saved, never flattened), so that the next update checks again only when one of them is
    another object. (Keyed on the shape alone, a state replaced by one of other shapes,
    ``leaf.state = ...``, went unchecked: the update failed after the arrays before it had
    been stepped, or, for AccumGrad and MixedPrecision, stepped with the state broadcast.)

    ``_fitted`` records the Leaf it was made for too: a Leaf rebuilt from another (``fl.fmap``
    of a state, ``copy.copy``) holds copies of its attributes, this note and the scratch
    arrays among them, which are then dropped: two copies of a state stepping two models on
    two threads shared their scratch arrays, and wrote each other's steps (NaN after 300
    steps of Adam)."""
    if fits is not None and fits[3] != id(leaf):
        for k in _CACHES:
            leaf.__dict__.pop(k, None)
    for kept in _kept_shapes(leaf.rule, leaf.state):
        if kept != want:
            _refuse_misfit(path, kept, model, want)
    leaf._fitted = (leaf.state, want, leaf.rule, id(leaf))


# what update keeps on a Leaf between steps (its own, never carried to a copy of the Leaf;
# "_fits", an older fluxml's note of the shape alone, is dropped too)
_CACHES = ("_fitted", "_fits", "_scratch", "_flat", "_together", "_disjoint")


def _refuse_misfit_state(pending, err):
    """Raise a clear error where a Leaf's state holds arrays of another shape than its
    parameter (a state for another model, of a rule defined outside fluxml: those of
    fluxml's rules are checked before the step); checked only after a step failed."""
    arrays, by_leaf = pending
    for leaf, x, _ in arrays.values():
        want = x.shape + (2,) if is_complex(x) else x.shape  # (of the pairs: pairs.py)
        for kept in _array_shapes(leaf.state):
            if kept != want:
                _refuse_misfit(by_leaf[id(leaf)][1], kept, x, want, err)


def _kept_shapes(rule, state):
    """The shapes of the arrays in a Leaf's state that its rule keeps in the parameter's
    shape: every array of the state of one of fluxml's rules, through ``OptimiserChain`` and
    ``MixedPrecision`` to the rules inside; none of a rule defined elsewhere (which may keep
    arrays of any shape)."""
    if isinstance(rule, OptimiserChain):
        for inner, part in zip(rule.rules, state):
            yield from _kept_shapes(inner, part)
    elif isinstance(rule, MixedPrecision):
        yield state.master.shape
        yield from _kept_shapes(rule.rule, state.state)
    elif type(rule).__module__.startswith("fluxml."):
        yield from _array_shapes(state)


def _array_shapes(state):
    """The shapes of the arrays in a state, through its tuples: those of one axis or more,
    and 0-d float or complex ones (a 0-d parameter's moments; a 0-d integer array is a step
    count: it was 0-d ones of every kind left out, so a 0-d parameter's state put in the
    Leaf of a (4,) array failed with NumPy's broadcast error, the arrays before it stepped)."""
    if isinstance(state, tuple):
        for part in state:
            yield from _array_shapes(part)
    elif len(shape := getattr(state, "shape", ())) or \
            getattr(getattr(state, "dtype", None), "kind", "") in ("f", "c"):
        yield shape
