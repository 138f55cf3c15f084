"""``setup``, ``update``, ``adjust``, ``freeze`` and ``thaw``: the optimiser state as a tree.

``setup(rule, model)`` mirrors the model: each trainable float array becomes a ``Leaf(rule,
state, frozen)``; an object becomes a ``Node`` with the same field names (so
``state.layers[0].weight`` reads as the model does), lists, tuples and dicts stay what they
are, and parts with nothing to train are ``None`` (left out of Nodes and dicts). An array
reached twice (tied weights) gets one Leaf, placed at both addresses.

>>> import numpy as np, fluxml as fl
>>> model = {"w": np.ones(2), "b": np.zeros(1)}
>>> state = fl.setup(fl.Descent(0.5), model)
>>> grads = fl.gradient(lambda m: np.sum(m["w"] * 3.0) + np.sum(m["b"]), model)[0]
>>> state, model = fl.update(state, model, grads)
>>> model["w"], model["b"]
(array([-0.5, -0.5]), array([-0.5]))
"""

from __future__ import annotations

import dataclasses

import numpy as np

from fluxml._dtypes import is_complex, is_jax
from fluxml._kernel_modules import KERNEL_MODULES
from fluxml.ad.core import COMPILING, compiling
from fluxml.optimise.base import Rule, apply_rule, canonical_names
from fluxml.optimise.fits import _check_fits, _refuse_misfit_state, _refuse_shared_memory
from fluxml.optimise.foreach import step_together
from fluxml.optimise.pairs import apply_paired, pairs, to_pairs, write_back
from fluxml.optimise.refusals import (
    _MISSING,
    _check_foreign_gradient,
    _check_gradient_dtype,
    _missing,
    _not_its_gradient,
    _read_only,
    _refuse_an_argument,
    _where,
)
from fluxml.optimise.split import step_split
from fluxml.tree import flatten, leaves_with_paths


class Leaf:
    """The optimiser state of one parameter array: its ``rule``, the rule's ``state``, and
    whether it is ``frozen`` (skipped by ``update``).

    >>> import numpy as np, fluxml as fl
    >>> state = fl.setup(fl.Descent(0.1), {"w": np.ones(2)})
    >>> state["w"]
    Leaf(Descent(0.1), None)
    >>> fl.freeze(state["w"])
    >>> state["w"].frozen
    True
    """

    def __init__(self, rule: Rule, state, frozen: bool = False):
        self.rule = rule
        self.state = state
        self.frozen = frozen

    def __tree_fields__(self):
        return ("rule", "state", "frozen")

    def __repr__(self):
        frozen = ", frozen=True" if self.frozen else ""
        return f"Leaf({_compact(self.rule)}, {_summary(self.state)}{frozen})"


class Node:
    """The optimiser state of an object of the model: one attribute per field that holds
    something to train. Prints as ``TypeName(field=..., ...)``."""

    def __init__(self, typename: str, fields: dict):
        clash = sorted({"_typename", "_fields"} & set(fields))
        if clash:  # (they would overwrite the state's own bookkeeping)
            raise ValueError(
                f"setup: a {typename} has a field named {clash[0]}, a name fluxml's optimiser "
                f"state keeps for itself; rename the field")
        self.__dict__["_typename"] = typename
        self.__dict__["_fields"] = tuple(fields)
        self.__dict__.update(fields)

    def __tree_fields__(self):
        return self._fields

    def __repr__(self):
        return _show(self, 0)


def _compact(rule):
    """A rule with its hyperparameters positional, as Optimisers.jl prints them:
    ``Adam(0.001, (0.9, 0.999), 1e-08)``."""
    parts = getattr(rule, "rules", None)
    if parts is None:
        parts = [getattr(rule, f.name) for f in dataclasses.fields(rule)]
        return f"{type(rule).__name__}({', '.join(map(repr, parts))})"
    return f"{type(rule).__name__}({', '.join(map(_compact, parts))})"


def _summary(x):
    """Arrays as ``float32(512, 784)``, so that a state tree prints in a few lines."""
    if isinstance(x, np.ndarray) and x.ndim > 0:
        return f"{x.dtype}{x.shape}"
    if isinstance(x, tuple) and hasattr(x, "_fields"):
        inner = ", ".join(f"{k}={_summary(v)}" for k, v in zip(x._fields, x))
        return f"{type(x).__name__}({inner})"
    if isinstance(x, (tuple, list)):
        inner = ", ".join(_summary(v) for v in x)
        return f"({inner}{',' if len(x) == 1 else ''})" if isinstance(x, tuple) else f"[{inner}]"
    return repr(x)


def _show(tree, indent):
    pad = "  " * (indent + 1)
    if isinstance(tree, Node):
        items = [(f"{k}=", getattr(tree, k)) for k in tree._fields]
        opening, closing = f"{tree._typename}(", ")"
    elif isinstance(tree, dict):
        items = [(f"{k!r}: ", v) for k, v in tree.items()]
        opening, closing = "{", "}"
    elif isinstance(tree, (list, tuple)):
        items = [("", v) for v in tree]
        opening, closing = ("[", "]") if isinstance(tree, list) else ("(", ")")
    else:
        return repr(tree)
    if not items:
        return opening + closing
    lines = [f"{pad}{k}{_show(v, indent + 1)}," for k, v in items]
    return "\n".join([opening, *lines, "  " * indent + closing])


# --- setup ------------------------------------------------------------------------------------


def _trainable(x) -> bool:
    # (a model's traced arrays too: set up inside fl.compile or a gradient, they were skipped,
    # and the update stepped nothing)
    return isinstance(x, np.ndarray) and x.dtype.kind in "fc" or (
        _array_type(type(x)) and getattr(x, "dtype", None) is not None
        and x.dtype.kind in "fc")


def _array_type(t) -> bool:
    """Arrays the update steps in place: CuPy's (named ``ndarray``, known before CuPy is
    imported), those of another registered library the kernels run on (whose arrays are
    mutable: ``ArrayBackend.kernels``), and traced ones inside fl.compile."""
    return t.__name__ in _ARRAY_TYPES or t in KERNEL_MODULES


def setup(rule: Rule, model):
    """The optimiser state for training ``model`` with ``rule``: a tree mirroring the model,
    with a ``Leaf`` for each float or complex array (Python numbers and integer arrays are not
    trained, nor the fields an object's class lists in ``nontrainable``). A complex array is
    trained as its (real, imaginary) pairs, as PyTorch's optimisers train it: its state
    arrays are real, of shape ``x.shape + (2,)`` (``fluxml.optimise.pairs``). A model of
    ``jax.Array``s (``fl.xla``) gets its state on their device, for a step compiled with
    ``backend="xla"`` (an eager ``update`` cannot write into them, and says so).

    >>> import numpy as np, fluxml as fl
    >>> class Affine:
    ...     def __init__(self):
    ...         self.weight, self.bias, self.act = np.zeros((2, 3)), np.zeros(2), np.tanh
    >>> fl.setup(fl.Momentum(), Affine())
    Affine(
      weight=Leaf(Momentum(0.01, 0.9), float64(2, 3)),
      bias=Leaf(Momentum(0.01, 0.9), float64(2,)),
    )
    """
    if not isinstance(rule, Rule):
        raise TypeError(f"setup: expected an optimisation rule such as fl.Adam(), got {rule!r}")
    leaves, spec = flatten(model, trainable=True)  # without the nontrainable fields
    on_xla = [x for x in leaves if is_jax(x)]
    if on_xla:  # set up on the host, moved to the model's device (it gave None: no state)
        # lazy: JAX's backend is loaded, as the model holds its arrays
        from fluxml.backend.moving import cpu
        from fluxml.backend.xla_arrays import xla

        return xla(setup(rule, cpu(model)), next(iter(on_xla[0].devices())))
    _refuse_views_of_one_another(model)
    state = _setup(rule, spec, iter(leaves), {})
    trace = compiling() if COMPILING else None
    if getattr(trace, "nodes", None) is not None:  # made inside fl.compile: update may step it
        # lazy: the compiler imports the optimisers
        from fluxml.compiler.calls import containers

        containers(state, trace.nodes)
    return state


def _refuse_views_of_one_another(model):
    """Two parameters that share memory without being one array (``dec.weight = enc.weight.T``)
    would each get optimiser state of their own and be stepped twice: refused, not guessed."""
    by_root: dict = {}
    for path, x in leaves_with_paths(model, trainable=True):
        if not isinstance(x, np.ndarray) or not _trainable(x):
            continue
        root = x
        while isinstance(root.base, np.ndarray):
            root = root.base
        for other_path, other in by_root.setdefault(id(root), []):
            if other is not x and np.shares_memory(other, x):
                raise ValueError(
                    f"setup: {path} and {other_path} are views of the same memory but not the "
                    f"same array, so each would get its own optimiser state and be stepped "
                    f"twice. Tie weights with the very same array (dec.weight = enc.weight) and "
                    f"transpose it where it is used")
        by_root[id(root)].append((path, x))


def _setup(rule, spec, it, tied):
    kind = spec.kind
    if kind == "leaf":
        x = next(it)
        if not _trainable(x):
            return None
        leaf = tied.get(id(x))
        if leaf is None:
            leaf = tied[id(x)] = (Leaf(rule, rule.init(pairs(x) if is_complex(x) else x)), x)
        return leaf[0]  # the array is kept beside its leaf, so its id stays unique
    if kind == "static":
        return None
    if kind in ("list", "tuple"):
        children = [_setup(rule, c, it, tied) for c in spec.children]
        if all(c is None for c in children):
            return None
        return spec.type(children)
    if kind == "dict":
        d = {k: _setup(rule, c, it, tied) for k, c in zip(spec.keys, spec.children)}
        d = {k: v for k, v in d.items() if v is not None}
        return d or None
    keys = spec.type._fields if kind == "namedtuple" else spec.keys
    fields = {}
    for k, c in zip(keys, spec.children):
        child = _setup(rule, c, it, tied)
        if child is not None:
            fields[k] = child
    return Node(spec.type.__name__, fields) if fields else None


# --- update -----------------------------------------------------------------------------------


def update(state, model, grads):
    """Apply one optimisation step in place: each unfrozen Leaf's rule turns the matching
    gradient into an update, subtracted from the model's array. ``grads`` is a structural
    gradient (``fl.gradient(loss, model)[0]``); ``None`` anywhere in it skips that part.
    Returns ``(state, model)``, the same objects, updated. Small arrays of one rule are
    stepped together (``foreach.py``); arrays of half a million entries or more are stepped
    in parts on as many threads as NumPy's BLAS may use (``split.py``), with the same
    numbers. A complex array steps as its (real, imaginary) pairs, against the conjugate of
    its gradient (``fluxml.optimise.pairs``: fluxml's gradient of a real loss is ``df/dx - i
    df/dy``, the conjugate of the direction of steepest ascent).

    A tied array (one array at several addresses of the model) takes one step, with the
    gradient found at its first address that has one: ``fl.gradient`` gives a tied array
    its total gradient at every address. (Optimisers.jl, fed Zygote's partial gradients,
    adds the gradients of the addresses instead: a gradient built by hand with different
    parts at each address should hold their sum at each.)

    >>> import numpy as np, fluxml as fl
    >>> model = fl.Dense(2, 1, init=fl.init.zeros)
    >>> state = fl.setup(fl.Descent(0.1), model)
    >>> x, y = np.ones((4, 2), np.float32), np.ones((4, 1), np.float32)
    >>> grads = fl.gradient(lambda m: fl.mse(m(x), y), model)[0]  # [0]: the model's entry
    >>> state, model = fl.update(state, model, grads)
    >>> model.bias  # 0 - 0.1 * mean(2 * (0 - 1))
    array([0.2], dtype=float32)
    """
    if state is None or isinstance(state, Rule):
        _refuse_no_state(state, model)
    if COMPILING and state is not None:
        _refuse_closed_over(state)
    pending: tuple = ({}, {})  # by array: (leaf, array, gradient); by leaf: (array, path)
    _collect(state, model, grads, pending, ())
    _refuse_shared_memory(pending)
    items, copies, paired = to_pairs(pending[0].values())  # complex arrays as real pairs
    try:
        if len(items) > 1:
            items = step_together(items)  # small arrays of one rule, in one go
        items = step_split([(leaf, x, dx, _scratch(leaf, x, dx)) for leaf, x, dx in items])
        for leaf, x, dx, buf in items:  # the rest, one array at a time on this thread
            before = leaf.state
            if paired and id(x) in paired:
                leaf.state, step = apply_paired(apply_rule, leaf.rule, before, x, dx, buf)
            else:
                leaf.state, step = apply_rule(leaf.rule, before, x, dx, buf)
            fits = leaf.__dict__.get("_fitted")
            if fits is not None and fits[0] is before:  # (the rule's new state of a state
                leaf._fitted = (leaf.state,) + fits[1:]  # that fit: its arrays' shapes kept)
            if step is not None:
                np.subtract(x, step, out=x)
        write_back(copies)  # (traced pairs are copies)
    except ValueError as err:  # NumPy's broadcast error: say which state does not fit
        _refuse_misfit_state(pending, err)
        raise
    return state, model


def _refuse_closed_over(state):
    """Inside ``fl.compile``: a state that is not among the compiled function's arguments
    (closed over, a global) would have its hyperparameters and frozen flags read once, when
    traced (``fl.adjust``, ``freeze`` and ``thaw`` later would not reach the program), and
    its arrays taken as constants: refused by name."""
    trace = compiling()
    known = getattr(trace, "nodes", None)
    # (its Leafs: a container made inside around parts of the arguments is another object)
    if known is None or all(id(leaf) in known for leaf in _leaves(state)):
        return
    # lazy: the compiler imports the optimisers
    from fluxml.compiler.trace import CompileError

    raise CompileError(
        "fl.compile: fl.update steps an optimiser state that is not an argument of the "
        "compiled function (closed over, or a global): its learning rate and other "
        "hyperparameters, and which parts are frozen, would be read once when the function is "
        "traced, so a later fl.adjust, freeze or thaw would not reach the compiled program. "
        "Pass the state as an argument: step(model, state, x, y).")


def _refuse_no_state(state, model):
    """A rule in place of its state, or None for a model with arrays to train, would train
    nothing (or fail deep inside): refused by name. (None is the state of a model with
    nothing to train, which ``setup`` returns.)"""
    if isinstance(state, Rule):
        raise TypeError(f"update: state is the rule {_compact(state)}, not an optimiser state; "
                        f"set it up once with state = fl.setup(rule, model)")
    leaves = flatten(model, trainable=True)[0]
    if any(_trainable(x) or is_jax(x) for x in leaves):
        raise TypeError(f"update: state is None but the model ({type(model).__name__}) has "
                        f"arrays to train; set it up once with state = fl.setup(rule, model)")


def _layout(a):
    """"F" for an array laid out as the transpose of a C-contiguous one, else "C"."""
    flags = getattr(a, "flags", None)
    if flags is None or a.ndim < 2 or flags.c_contiguous or not flags.f_contiguous:
        return "C"
    return "F"


def _scratch(leaf, x, dx):
    """The Leaf's scratch array (not a tree field: never saved, never flattened), laid out
    as the gradient. Weight gradients of ``x @ W.T`` come back as transposed views, and
    NumPy is several times slower on operands of mixed layouts: so the rule's state arrays
    follow the gradient's layout too (converted once, when it changes), and only the final
    ``x -= update`` mixes layouts."""
    if type(x).__name__ == "Tracer":  # inside fl.compile: a buffer of the traced program
        return np.empty_like(x)
    order = _layout(dx)
    buf = getattr(leaf, "_scratch", None)
    if buf is None or buf.shape != x.shape or buf.dtype != x.dtype or _layout(buf) != order:
        buf = np.empty_like(x, order=order)  # of x's array type (CuPy's too)
        leaf._scratch = buf
        leaf.state = _relayout(leaf.state, order)
    return buf


def _relayout(state, order):
    """The state with its arrays (of two or more axes) in the given layout; arrays already
    so laid out are kept (they may be shared with the caller)."""
    if isinstance(state, np.ndarray):
        if state.ndim < 2 or _layout(state) == order:
            return state
        return state.copy(order=order)
    if isinstance(state, tuple):
        parts = [_relayout(s, order) for s in state]
        return type(state)(*parts) if hasattr(state, "_fields") else tuple(parts)
    return state


def _child(tree, key):
    if tree is None:
        return None
    if isinstance(tree, dict):
        return tree.get(key)
    if isinstance(key, int):
        return tree[key]
    return getattr(tree, key, None)


_ARRAY_TYPES = ("ndarray", "Tracer")  # CuPy's arrays; traced ones inside fl.compile


def _collect(state, model, grads, pending, path):
    """Pair each unfrozen Leaf with its array and gradient (the path, linked tuples of keys,
    is formatted only for errors: the walk runs every step)."""
    if state is None or grads is None:
        return
    if type(state) is Leaf:
        if state.frozen:
            return
        if not isinstance(model, np.ndarray) and not _array_type(type(model)):
            if is_jax(model):
                raise TypeError(
                    f"update: {_where(path)} is a jax.Array (fl.xla), which cannot be "
                    "changed in place: step a model on XLA's device in a function compiled "
                    "with fl.compile(step, backend='xla'), or move it home with fl.cpu(model) "
                    "to train it eagerly")
            raise TypeError(f"update: {_where(path)} has a Leaf in the state but the model "
                            f"has {type(model).__name__} there; was the state set up for "
                            "this model?")
        if isinstance(model, np.ndarray) and not model.flags.writeable:  # (found before any step:
            _read_only(path)  # NumPy's error came after the other arrays had been stepped)
        shape = model.shape
        if getattr(grads, "shape", None) != shape and np.shape(grads) != shape:
            raise ValueError(f"update: the gradient of {_where(path)} has shape "
                             f"{np.shape(grads)}, the parameter {shape}")
        if getattr(grads, "dtype", None) != model.dtype:  # (its own dtype: numbers)
            _check_gradient_dtype(path, model, grads)
        # before any step, so that a state set up for another model steps nothing (it failed
        # at its first misfit array, after the arrays before it had been stepped)
        want = shape + (2,) if is_complex(model) else shape
        fits = state.__dict__.get("_fitted")  # (once per Leaf, state, rule and shape: ~2 us)
        if fits is None or fits[0] is not state.state or fits[1] != want \
                or fits[2] is not state.rule or fits[3] != id(state):
            _check_fits(state, fits, want, path, model)
        # One step per array: fl.gradient gives a tied array its total gradient at every
        # address, and a state rebuilt from its leaves (fmap, loading) may hold two Leafs
        # for one array: the first found is used.
        arrays, by_leaf = pending
        prev = by_leaf.setdefault(id(state), (model, path))
        if prev[0] is not model:
            raise ValueError(f"update: {_where(path)} and {_where(prev[1])} share a Leaf (tied "
                             "in setup) but are different arrays in the model now; set up the "
                             "state again")
        if id(model) not in arrays:
            arrays[id(model)] = (state, model, grads)
        return
    if type(state) is Node:
        in_dict = isinstance(grads, dict)
        if type(grads) in (tuple, list):
            _not_its_gradient(path, model, grads)
        if type(grads) is not type(model):  # (fl.gradient's: of the model's type, checked fast)
            _check_foreign_gradient(path, state, model, grads, in_dict)
        for k in state._fields:
            g = grads.get(k) if in_dict else getattr(grads, k, None)  # (_child, inlined)
            sub = getattr(model, k, _MISSING)
            if sub is _MISSING:  # a state set up for another model would train nothing
                _missing(path, k, model)
            _collect(getattr(state, k), sub, g, pending, (path, "attr", k))
    elif isinstance(state, dict):
        if type(grads) in (tuple, list):
            _not_its_gradient(path, model, grads)
        if not isinstance(model, dict):
            raise TypeError(f"update: the optimiser state has a dict at {_where(path)} but the "
                            f"model has a {type(model).__name__}; was the state set up for this "
                            f"model? state = fl.setup(rule, model)")
        for k, sub in state.items():
            if k not in model:
                raise TypeError(f"update: the optimiser state has {_where((path, 'item', k))} "
                                f"but the model's dict has no key {k!r}; was the state set up "
                                f"for this model? state = fl.setup(rule, model)")
            _collect(sub, model[k], _child(grads, k), pending, (path, "item", k))
    elif isinstance(state, (list, tuple)):
        if len(model) != len(state):
            raise ValueError(f"update: {_where(path)} has {len(model)} entries, its state "
                             f"{len(state)}; was the state set up for this model?")
        for k, sub in enumerate(state):
            _collect(sub, model[k], _child(grads, k), pending, (path, "item", k))
    else:
        hint = ("; is it the model? The order is update(state, model, grads)"
                if callable(state) and not path else "")
        raise TypeError(f"update: unexpected {type(state).__name__} in the optimiser state at "
                        f"{_where(path)}{hint}")


# --- adjust, freeze, thaw ---------------------------------------------------------------------


def _leaves(state):
    """Each Leaf of the tree once (tied leaves appear at several addresses)."""
    found, seen = [], set()
    stack = [state]
    while stack:
        t = stack.pop()
        if isinstance(t, Leaf):
            if id(t) not in seen:
                seen.add(id(t))
                found.append(t)
        elif isinstance(t, Node):
            stack.extend(getattr(t, k) for k in reversed(t._fields))
        elif isinstance(t, dict):
            stack.extend(reversed(list(t.values())))
        elif isinstance(t, (list, tuple)):
            stack.extend(reversed(t))
    return found


def _state_leaves(state, who: str) -> list:
    """The Leafs of ``state``, which ``who`` (adjust, freeze, thaw) changes. A tree with
    arrays to train but no Leaf (the model, or a part of it, where its optimiser state was
    meant) is refused: nothing would change, silently; inside ``fl.compile``, so is a state
    that is one of the compiled function's arguments (:func:`_refuse_an_argument`)."""
    leaves = _leaves(state)
    if not leaves and isinstance(state, (int, float, complex, str, bytes, np.generic)):
        raise TypeError(f"{who}: expected an optimiser state (from fl.setup) or a part of one, "
                        f"such as state.layers[0]; got {state!r}, which holds no Leaf")
    if not leaves and state is not None and any(_trainable(x) for x in flatten(state)[0]):
        raise TypeError(f"{who}: expected an optimiser state (from fl.setup) or a part of one, "
                        f"such as state.layers[0]; got a {type(state).__name__} holding arrays "
                        f"but no Leaf (the model?). Pass the state: {who}(state.<part>)")
    stray = None if leaves else _not_state(state)
    if stray is not None:  # (a list of names, a dict of settings: nothing changed, silently)
        raise TypeError(f"{who}: expected an optimiser state (from fl.setup) or a part of one, "
                        f"such as state.layers[0]; got a {type(state).__name__} holding "
                        f"{stray!r} and no Leaf")
    if COMPILING:
        _refuse_an_argument(leaves, who)
    return leaves


def _not_state(state):
    """A value in ``state``'s lists, tuples and dicts that no optimiser state holds (not a
    Leaf, a Node or None), else None."""
    if isinstance(state, (list, tuple)):
        parts = state
    elif isinstance(state, dict):
        parts = state.values()
    else:
        return None if state is None or isinstance(state, (Leaf, Node)) else state
    for part in parts:
        stray = _not_state(part)
        if stray is not None:
            return stray
    return None


def adjust(state, eta: float | None = None, **changes):
    """Change hyperparameters of every rule in ``state`` (a whole tree or any part of it) in
    place, and return ``state``: ``adjust(state, 1e-4)`` sets the learning rate,
    ``adjust(state, beta=(0.8, 0.99))`` others. PyTorch's names are accepted too (``lr``,
    ``betas``, ``eps``, ``weight_decay``, ``alpha``, ``max_norm``, ``norm_type``).

    >>> import numpy as np, fluxml as fl
    >>> state = fl.setup(fl.Adam(), {"w": np.zeros(2)})
    >>> fl.adjust(state, lr=0.01)["w"].rule
    Adam(eta=0.01, beta=(0.9, 0.999), epsilon=1e-08)
    """
    given = ([] if eta is None else [("eta", eta)]) + list(changes.items())
    changes = canonical_names(given, "adjust")
    leaves = _state_leaves(state, "adjust")
    known = set().union(*(leaf.rule.names() for leaf in leaves)) if leaves else set()
    unknown = sorted(set(changes) - known)
    if unknown:
        raise ValueError(f"adjust: no rule in this state has the hyperparameter(s) {unknown}; "
                         f"they have {sorted(known)}")
    adjusted: dict = {}  # leaves that shared a rule share its adjusted copy (one group in update)
    for leaf in leaves:
        old = leaf.rule
        if id(old) not in adjusted:
            adjusted[id(old)] = (old, old.adjust(**changes))  # the old rule kept: ids stay unique
        leaf.rule = adjusted[id(old)][1]
    return state


def freeze(state) -> None:
    """Mark every Leaf in ``state`` (a whole tree or any part, e.g. ``state.layers[0]``) as
    frozen: ``update`` leaves those arrays and their optimiser state alone.

    >>> import numpy as np, fluxml as fl
    >>> state = fl.setup(fl.Descent(), {"a": np.ones(1), "b": np.ones(1)})
    >>> fl.freeze(state["a"])
    >>> state["a"].frozen, state["b"].frozen
    (True, False)
    """
    for leaf in _state_leaves(state, "freeze"):
        leaf.frozen = True


def thaw(state) -> None:
    """Undo ``freeze``: every Leaf in ``state`` is trained again.

    >>> import numpy as np, fluxml as fl
    >>> model = {"w": np.ones(2), "b": np.ones(1)}
    >>> state = fl.setup(fl.Descent(0.5), model)
    >>> fl.freeze(state["w"])
    >>> fl.thaw(state)
    >>> _ = fl.update(state, model, {"w": np.ones(2), "b": np.ones(1)})
    >>> model["w"]  # trained again
    array([0.5, 0.5])
    """
    for leaf in _state_leaves(state, "thaw"):
        leaf.frozen = False


