"""``fl.state(model)`` and ``fl.loadmodel(model, state)``: a model's arrays as a nested dict,
and back into a model, checked first and copied in place.

The state of a model holds every numeric leaf (trainable or not: BatchNorm's running
statistics are saved too), keyed by field names, dict keys and list positions; numbers are
0-d arrays. Functions, strings and other static parts are not state: they come from the code
that builds the model.

>>> import numpy as np, fluxml as fl
>>> model = fl.Chain(fl.Dense(2, 3), fl.Dense(3, 1))
>>> s = fl.state(model)
>>> list(s["layers"]["1"]), s["layers"]["1"]["weight"].shape
(['weight', 'bias'], (1, 3))
>>> other = fl.Chain(fl.Dense(2, 3), fl.Dense(3, 1))
>>> fl.loadmodel(other, s) is other, bool(np.all(other[1].weight == model[1].weight))
(True, True)
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
from numpy.lib.array_utils import byte_bounds  # the first and one-past-the-last bytes read

from fluxml._checks import shown
from fluxml.backend.registry import backend_of
from fluxml.tree import flatten, leaves_with_paths
from fluxml.treenodes import _fields, is_array_leaf, is_leaf


class LoadError(ValueError):
    """A state does not fit the model it is loaded into; nothing was written."""


def state(model) -> dict[str, Any]:
    """The nested dict of ``model``'s arrays (the arrays themselves, not copies; numbers as
    0-d arrays). A dict of arrays is its own state.

    >>> import numpy as np, fluxml as fl
    >>> fl.state({"w": np.ones(2), "n": 3, "act": np.tanh, "sub": [np.zeros(1)]})
    {'w': array([1., 1.]), 'n': array(3), 'sub': {'0': array([0.])}}
    """
    out: dict = {}
    for path, leaf in _leaf_paths(model):
        node = out
        for key in path[:-1]:
            node = node.setdefault(key, {})
        if path[-1] in node:  # (dict keys 0 and "0": one would be dropped, silently)
            raise ValueError(f"state: two entries are both named {'.'.join(path)!r} once their "
                             f"keys are written as strings; rename one of the keys")
        node[path[-1]] = host(leaf)
    return out


def host(leaf):
    """A leaf of a state as a NumPy array: a GPU's (another registered library's) copied to
    the host, which ``np.asarray`` refuses; a NumPy array as it is."""
    if isinstance(leaf, np.ndarray):
        return leaf
    backend = backend_of(leaf)
    return np.asarray(leaf if backend is None else backend.to_host(leaf))


def _leaf_paths(tree) -> list[tuple[tuple[str, ...], Any]]:
    """``[(keys, leaf)]`` with each key a string, in flatten's order; then the optimiser
    Leafs' flags (see :func:`_flags`)."""
    if tree is None or isinstance(tree, (str, bytes)):  # (their state was {}: fl.save wrote
        # a file of nothing, silently, as for a model of no arrays)
        raise TypeError(f"state: expected a model or a tree of arrays; got {shown(tree)}")
    leaves, spec = flatten(tree)
    paths: list = []
    _walk_spec(spec, (), paths)
    if len(paths) == 1 and paths[0] == ():
        raise TypeError("state: expected a model or a tree of arrays; got a single array "
                        "(save it inside a dict: {'x': array})")
    flags = [(keys, np.asarray(_get(leaf, steps))) for keys, leaf, steps in _flags(tree)]
    return list(zip(paths, leaves)) + flags


def _flags(tree) -> list[tuple[tuple[str, ...], Any, tuple[str, ...]]]:
    """``[(keys of the flag, Leaf, steps from the Leaf to it)]`` for the bools of each
    optimiser Leaf in ``tree``: its frozen flag and its rule's bool hyperparameters (AdamW's
    couple, RMSProp's centred: ``fl.adjust`` may set them per part). Bools are static in a
    tree, but these are state: saved and loaded without them, an optimiser state would train
    frozen arrays, or with another rule. Each is kept as a 0-d bool array (``<leaf>.frozen``,
    ``<leaf>.rule.couple``); a state saved before had none, and loads leaving them as they
    are."""
    import sys

    interface = sys.modules.get("fluxml.optimise.interface")
    if interface is None:  # (no Leaf can exist before the optimisers are imported)
        return []
    leaves, spec = flatten(tree, is_leaf=lambda x: isinstance(x, interface.Leaf))
    paths: list = []
    _walk_spec(spec, (), paths)
    out: list = []
    for keys, x in zip(paths, leaves):
        if isinstance(x, interface.Leaf):
            out.append((keys + ("frozen",), x, ("frozen",)))
            _rule_flags(x.rule, ("rule",), keys, x, out)
    return out


def _rule_flags(node, steps, keys, leaf, out):
    """The bool fields of a rule (and of the rules it holds, as an OptimiserChain)."""
    children = list(enumerate(node)) if isinstance(node, (tuple, list)) else \
        None if is_leaf(node) or isinstance(node, bool) or node is None else _fields(node)
    for name, v in children or ():
        here = steps + (str(name),)
        if isinstance(v, bool):
            if not isinstance(node, (tuple, list)):  # (a bool in a tuple cannot be set)
                out.append((keys + here, leaf, here))
        else:
            _rule_flags(v, here, keys, leaf, out)


def _get(leaf, steps):
    x = leaf
    for step in steps:
        x = x[int(step)] if isinstance(x, (tuple, list)) else getattr(x, step)
    return x


def _set(leaf, steps, value) -> None:
    owner = _get(leaf, steps[:-1])
    try:
        setattr(owner, steps[-1], value)
    except AttributeError:  # a frozen dataclass
        object.__setattr__(owner, steps[-1], value)


def _walk_spec(spec, prefix, out):
    if spec.kind == "leaf":
        out.append(prefix)
    elif spec.kind != "static":
        keys = spec.keys if spec.keys is not None else range(len(spec.children))
        for key, child in zip(keys, spec.children):
            _walk_spec(child, prefix + (str(key),), out)


def flat_state(state_or_model) -> dict[str, Any]:
    """``{"layers.0.weight": array, ...}``: a nested state (or a model, or an already flat
    dict with dotted names) with its paths joined by dots."""
    return {name: host(leaf) for name, _, leaf in named_leaves(state_or_model, "state")}


def named_leaves(tree, what: str) -> list[tuple[str, tuple[str, ...], Any]]:
    """``[(dotted name, keys, leaf)]`` in flatten's order; two leaves whose keys join to the
    same name are refused, the error naming ``what``."""
    named, seen = [], set()
    for path, leaf in _leaf_paths(tree):
        name = ".".join(path)
        if name in seen:
            raise ValueError(f"{what}: two entries are both named {name!r} once their keys are "
                             f"joined with dots; rename the keys that contain dots (or one "
                             f"of two keys that are alike as strings, such as 0 and '0')")
        seen.add(name)
        named.append((name, path, leaf))
    return named


def _describe(x) -> tuple[tuple[int, ...], np.dtype]:
    if isinstance(x, np.ndarray) or hasattr(x, "shape") and hasattr(x, "dtype"):  # (CuPy's)
        return tuple(x.shape), np.dtype(x.dtype)
    return (), np.asarray(x).dtype


def check(model, given: dict[str, Any], what: str = "loadmodel") -> list[tuple[str, Any]]:
    """The model's leaves by path, after checking that ``given`` (a flat dict) fits them:
    the same paths, and for each the same shape and dtype. Raises ``LoadError`` naming the
    first mismatch."""
    flags = {".".join(keys): np.asarray(_get(leaf, steps)) for keys, leaf, steps
             in _flags(model)}
    target = leaves_with_paths(model) + [(p, x) for p, x in flags.items() if p in given]
    names = {p for p, _ in target} | set(flags)
    into, hint = "the model", ""
    if "optimiser" in what:  # load_checkpoint's second check
        into = "the given optimiser state"
        hint = ("; set it up with the rule the checkpoint was saved with, "
                "fl.setup(rule, model)")
    if len({p for p, _ in target}) < len(target):  # (dict keys 0 and "0": both would load)
        named_leaves(model, what)  # raises, naming the entry
    # a number the state lacks (a PyTorch state dict holds no stride, eps nor momentum: they
    # are the code's) keeps the model's value, as Flux's loadmodel! keeps non-arrays; a
    # missing array is an error
    required = {p for p, x in target if not _is_setting(x)}
    settings = {p for p, _ in target} - required
    target = [(p, x) for p, x in target if p in given or p in required]
    for path, x in target:
        if path not in given:
            # like for like: the state's entries less those of the model's numbers (which
            # fl.state writes as 0-d arrays)
            arrays = sum(p not in settings for p in given)
            raise LoadError(f"{what}: {path}: missing from the state (the state has "
                            f"{arrays} arrays, {into} {len(required)})"
                            f"{_prefix_hint(path, given, required) or hint}")
        v = given[path]
        (shape, dtype), (vshape, vdtype) = _describe(x), _describe(v)
        if shape != vshape:
            hint = ("; transposed? weights here are (out, in) as PyTorch's and Flux's, where "
                    "Keras and JAX store (in, out)" if len(shape) == 2 and shape == vshape[::-1]
                    else "")
            raise LoadError(f"{what}: {path}: expected {shape}, got {vshape}{hint}")
        if _native(dtype) != _native(vdtype) and not (isinstance(x, np.ndarray)
                                                      and _widens(vdtype, dtype)):
            raise LoadError(f"{what}: {path}: expected dtype {dtype}, got {vdtype}; "
                            f"{_convert_hint(dtype, vdtype)}")
        if isinstance(x, np.ndarray) and not x.flags.writeable:
            raise LoadError(f"{what}: {path}: the model's array is read-only, so it cannot "
                            f"be loaded in place")
    _check_ties(target, given, what)
    extra = [p for p in given if p not in names]
    if extra:
        if all(p.rsplit(".", 1)[-1] == "num_batches_tracked" for p in extra):
            hint = (": PyTorch's count of a BatchNorm's training steps, which fluxml's "
                    "BatchNorm does not keep (its momentum is fixed): leave those entries "
                    "out of the state")
        raise LoadError(f"{what}: {extra[0]}: in the state but not in {into}"
                        f"{f' (and {len(extra) - 1} more)' if len(extra) > 1 else ''}{hint}")
    try:  # every number converted, tuple rebuilt and field set as loading will: a failure
        _assign(model, "", given, dry=True)  # there had written the arrays before it
    except _Unwritable as err:
        raise LoadError(f"{what}: {err}; nothing was written") from None
    return target


def _is_setting(x) -> bool:
    """Whether a model's leaf is a number (a Python or NumPy scalar: a stride, an eps), not
    an array."""
    return not isinstance(x, np.ndarray) and (isinstance(x, np.generic) or
                                              not hasattr(x, "__array_namespace__"))


_FLOATS = {2: "fl.f16", 4: "fl.f32", 8: "fl.f64"}


def _convert_hint(wanted: np.dtype, given: np.dtype) -> str:
    """How to make a state of dtype ``given`` load into an array of ``wanted`` (the hint
    was 'e.g. fl.f32(model)' whatever they were: for a float64 state and a float32 model,
    the model is float32 already)."""
    if wanted.kind == given.kind == "f" and wanted.itemsize in _FLOATS and \
            given.itemsize in _FLOATS:
        return (f"convert the state, {_FLOATS[wanted.itemsize]}(state), or the model, "
                f"{_FLOATS[given.itemsize]}(model), first")
    return f"convert the state's array first (.astype(np.{wanted.name}))"


def _native(dtype: np.dtype) -> np.dtype:
    """``dtype`` in this machine's byte order: a big-endian state (``np.load`` of a file
    written on another machine, a FITS or MATLAB file's arrays) holds the same values, and
    loads (it was refused as ``expected dtype float32, got >f4``)."""
    return dtype.newbyteorder("=")


def _widens(given, wanted) -> bool:
    """Whether values of dtype ``given`` load exactly into an array of ``wanted``: a float of
    fewer bits into a wider one (a float16 file's running statistics, which fl.f16 now keeps
    float32), or a complex likewise. Anything else (narrowing, another kind) is refused."""
    try:
        given, wanted = np.dtype(given), np.dtype(wanted)
    except TypeError:  # (not a NumPy dtype: a number's type)
        return False
    return given.kind == wanted.kind and given.kind in "fc" and given.itemsize < wanted.itemsize


def _check_ties(target: list[tuple[str, Any]], given: dict, what: str) -> None:
    """Arrays of the model that share memory (one array at two paths, tied; or views of one
    buffer: a weight and its transpose, overlapping slices) are written one after the other,
    so the last write wins where they overlap. Refuse a state that gives them different
    values there, deciding by what the load would write: the writes are made, in the load's
    order, into a scratch buffer laid out as the model's memory, and each array must read
    back its own value."""
    arrays = [(path, x) for path, x in target if isinstance(x, np.ndarray)]
    for group in _overlapping([x for _, x in arrays]):
        paths, xs = [arrays[i][0] for i in group], [arrays[i][1] for i in group]
        values = [np.asarray(given[path]) for path in paths]
        views = _scratch_views(xs)
        for view, v in zip(views, values):
            view[...] = v
        if all(_reads(view, v) for view, v in zip(views, values)):
            continue
        for j, (view, v) in enumerate(zip(views, values)):  # which write spoils which
            view[...] = v
            k = next((k for k in range(j) if not _reads(views[k], values[k])), None)
            if k is None:
                continue
            how = ("are one array in the model (tied), but the state gives them different "
                   "values" if xs[j] is xs[k] else "are views of the same memory in the model "
                   "(as a weight and its transpose, or overlapping slices), but the state gives "
                   "them different values where they overlap")
            raise LoadError(f"{what}: {paths[j]} and {paths[k]} {how}; load a state saved "
                            f"from a model with the same ties, or untie them first")


def _reads(view: np.ndarray, value: np.ndarray) -> bool:
    """Whether ``view`` holds ``value`` as written into it (in its dtype and byte order: a
    float16 or big-endian value's own bytes never matched, and tied arrays were refused as
    given different values)."""
    return view.tobytes() == np.ascontiguousarray(value, dtype=view.dtype).tobytes()


def _overlapping(arrays: list[np.ndarray]) -> list[list[int]]:
    """The groups (of two or more) of positions in ``arrays`` whose byte ranges overlap,
    each in order. Only arrays viewing one root (array or buffer) can: their ranges are
    sorted, the others' never read (they cost a model of owned arrays nothing)."""
    by_root: dict = {}
    for i, x in enumerate(arrays):
        if x.size:
            by_root.setdefault(id(_root(x)), []).append(i)
    groups: list[list[int]] = []
    for candidates in by_root.values():
        if len(candidates) == 1:
            continue
        end = None
        for (lo, hi), i in sorted((byte_bounds(arrays[i]), i) for i in candidates):
            if end is not None and lo < end:
                groups[-1].append(i)
                end = max(end, hi)
            else:
                groups.append([i])
                end = hi
    return [sorted(g) for g in groups if len(g) > 1]


def _root(x):
    """The object whose memory ``x`` views: its last NumPy base, or the buffer under it
    (``np.frombuffer`` gives each array a memoryview of its own over one buffer)."""
    while True:
        below = x.base if isinstance(x, np.ndarray) else \
            x.obj if isinstance(x, memoryview) else None
        if below is None:
            return x
        x = below


def _scratch_views(xs: list[np.ndarray]) -> list[np.ndarray]:
    """Views of one new buffer laid out as ``xs`` lie in memory (same offsets from one
    another, shapes, strides, dtypes)."""
    bounds = [byte_bounds(x) for x in xs]
    lo = min(b[0] for b in bounds)
    scratch = np.empty(max(b[1] for b in bounds) - lo, np.uint8)
    views = []
    for x in xs:
        start = x.__array_interface__["data"][0] - lo
        first = scratch[start:start + x.itemsize].view(x.dtype).reshape(())
        views.append(np.lib.stride_tricks.as_strided(first, x.shape, x.strides,
                                                     writeable=True))
    return views


def _prefix_hint(path: str, given: dict, names: set) -> str:
    """Where the state's names are the model's with a prefix more or less (PyTorch's
    ``nn.Sequential`` saves ``0.weight`` for a Chain's ``layers.0.weight``; DataParallel
    ``module.0.weight``), say how to nest or unnest it; ``names``: the model's arrays."""
    for k in given:
        if path.endswith("." + k):  # the state lacks the model's prefix
            prefix = path[:-len(k)]
            if names <= {prefix + g for g in given}:
                nested = "state"
                for part in reversed(prefix.rstrip(".").split(".")):
                    nested = f"{{{part!r}: {nested}}}"
                return f"; the state's names lack the model's prefix {prefix!r}: pass {nested}"
        if k.endswith("." + path):  # the state has a prefix the model lacks
            prefix = k[:-len(path)]
            if all(g.startswith(prefix) for g in given) and \
                    names <= {g[len(prefix):] for g in given}:
                inner = "".join(f"[{part!r}]" for part in prefix.rstrip(".").split("."))
                return (f"; the state's names carry a prefix {prefix!r} the model's lack: "
                        f"pass state{inner}")
    return ""


def _as_flat(source) -> dict[str, Any]:
    if not isinstance(source, dict):
        if not _fields(source):  # (a list is taken for a malformed state, not a model)
            raise TypeError(f"loadmodel: expected a state (a dict of arrays, from fl.state or "
                            f"fl.load) or a model; got {type(source).__name__}")
        source = state(source)  # another model: its state, as Flux's loadmodel!(dst, src)
    return flat_state(source)


def loadmodel(model, state, *, what: str = "loadmodel"):
    """Copy ``state`` (nested, from :func:`state` or ``fl.load``, or flat with dotted names;
    or another model, whose state it takes) into ``model``'s arrays, in place, and return
    the model. Every path, shape and dtype is checked before anything is written; the first
    mismatch is named: ``layers.1.weight: expected (10, 32), got (32, 10)``. A dtype must
    match, but a float (or complex) array of fewer bits loads into a wider one, exactly (a
    float16 file's norm statistics into the float32 ones ``fl.f16`` keeps). Numbers
    (Python or NumPy scalars) are replaced in their container; a tuple holding one is
    rebuilt. So, unlike Flux's ``loadmodel!`` (arrays only), the state's settings come too:
    a model built with ``Dropout(0.2)`` takes the ``p`` of a state saved from
    ``Dropout(0.1)``, a BatchNorm its ``eps`` and ``momentum``. A number the state lacks
    keeps the model's value (a PyTorch state dict holds the arrays alone: a Conv's stride
    and a BatchNorm's eps come from the code, as in Flux); a missing array is an error.

    >>> import numpy as np, fluxml as fl
    >>> fl.loadmodel(fl.Dense(2, 3), {"weight": np.zeros((2, 3), np.float32),
    ...                               "bias": np.zeros(3, np.float32)})
    Traceback (most recent call last):
    ...
    fluxml.io.modelstate.LoadError: loadmodel: weight: expected (3, 2), got (2, 3); transposed? ...
    """
    flat = _as_flat(state)
    return write_into(model, flat, check(model, flat, what))


def write_into(model, flat: dict[str, Any], target: list | None = None):
    """Write a checked flat state into ``model`` (``target``: what :func:`check` returned,
    when the caller has it); returns the model, a new object only when the root itself is a
    tuple or number that had to be rebuilt."""
    flat = _unaliased(flatten(model)[0] if target is None else [x for _, x in target], flat)
    leaves = _optimiser_leaves(model)
    for leaf in leaves:  # each its own rule to write its hyperparameters into (see below)
        leaf.rule = _own_copy(leaf.rule)
    flags = _flags(model)
    model = _assign(model, "", flat)
    for keys, leaf, steps in flags:  # (found from the Leaf: its rule is now a copy)
        name = ".".join(keys)
        if name in flat:  # (a state saved before the flags were kept has none)
            _set(leaf, steps, bool(flat[name]))
    _share_equal_rules(leaves)
    return model


def _unaliased(leaves: list, flat: dict[str, Any]) -> dict[str, Any]:
    """``flat`` with a copy of each value that shares memory with an array among the model's
    ``leaves`` (``loadmodel(model, {"a": model["b"], "b": model["a"]})``): written in place
    one after the other, the first write would change the value of a later one."""
    ours = [x for x in leaves if isinstance(x, np.ndarray)]
    names = [k for k, v in flat.items() if isinstance(v, np.ndarray)]
    groups = _overlapping(ours + [flat[k] for k in names])
    shared = {names[i - len(ours)] for g in groups if g[0] < len(ours) for i in g
              if i >= len(ours)}
    return {k: np.array(v) if k in shared else v for k, v in flat.items()}


def _optimiser_leaves(tree) -> list:
    """The optimiser ``Leaf``s in ``tree`` (none in a model). ``fl.setup`` gives its Leafs
    one rule object, and ``fl.adjust`` of a part of the state gives that part another: the
    saved hyperparameters differ by Leaf. Written into the shared object, the last Leaf's
    would be every Leaf's (and the caller's rule would change): so each Leaf is given a copy
    first, and copies equal once written are shared again (``update`` steps the arrays of
    one rule object together)."""
    # lazy: the optimisers import the engine
    from fluxml.optimise.interface import _leaves

    return _leaves(tree)  # (each once; a model, which holds none, is not walked)


def _own_copy(rule):
    """A copy sharing nothing that loading writes into (a chain's rules too); a rule of
    one's own that cannot be deep-copied (it holds a lock, say) is copied shallowly."""
    try:
        return copy.deepcopy(rule)
    except Exception:  # noqa: BLE001 - any failure of a user's __deepcopy__
        return copy.copy(rule)


def _share_equal_rules(leaves) -> None:
    distinct: list = []
    for leaf in leaves:
        for rule in distinct:
            try:
                same = type(rule) is type(leaf.rule) and bool(rule == leaf.rule)
            except (TypeError, ValueError):  # a field compared as an array
                same = False
            if same:
                leaf.rule = rule
                break
        else:
            distinct.append(leaf.rule)


def _join(prefix: str, key) -> str:
    return f"{prefix}.{key}" if prefix else str(key)


def _assign(x, prefix, flat, dry=False):
    """Write ``flat``'s values into ``x`` (its path ``prefix``) and return it, or what
    replaces it (a number, a tuple rebuilt). ``dry``: write nothing, but build each number
    and tuple and set each field as a write would (to its own value), so that what cannot be
    written (a tuple subclass whose constructor takes its items apart, a field without a
    setter, an IntEnum given another value) fails before any array is written."""
    if is_array_leaf(x):
        if prefix not in flat:  # (a number the state lacks: check kept the model's)
            return x
        v = flat[prefix]
        backend = None if isinstance(x, (np.ndarray, np.generic)) else backend_of(x)
        if backend is not None:  # a GPU's array (another registered library's): the value
            if not dry:  # goes there first (CuPy refuses a NumPy array beside its own)
                x[...] = v if type(v) is type(x) else backend.module.asarray(v)
            return x
        if isinstance(x, np.ndarray) and x.ndim > 0 or hasattr(x, "__array_namespace__") \
                and not isinstance(x, np.generic):  # (NumPy 2's scalars have the namespace)
            if not dry:
                x[...] = v
            return x
        if isinstance(x, np.ndarray):  # 0-d
            if not dry:
                x[()] = v
            return x
        try:
            return type(x)(np.asarray(v).item()) if is_leaf(x) else v
        except Exception as err:  # noqa: BLE001 - an IntEnum given another value, say
            raise _Unwritable(prefix, f"a {type(x).__name__}", err) from None
    t = type(x)
    if isinstance(x, (list, dict)):
        items = x.items() if isinstance(x, dict) else enumerate(x)
        for k, c in list(items):
            new = _assign(c, _join(prefix, k), flat, dry)
            if new is not c:
                x[k] = c if dry else new
        return x
    if isinstance(x, tuple):
        children = [_assign(c, _join(prefix, i), flat, dry) for i, c in enumerate(x)]
        if all(a is b for a, b in zip(children, x)):
            return x
        try:
            return t(*children) if hasattr(x, "_fields") else t(children)
        except Exception as err:  # noqa: BLE001 - a constructor taking its items apart
            raise _Unwritable(prefix, f"a {t.__name__} (rebuilt to hold the state's "
                                      f"numbers)", err) from None
    fields = None if x is None or isinstance(x, bool) else _fields(x)
    if fields is None:
        return x
    for k, c in fields:
        new = _assign(c, _join(prefix, k), flat, dry)
        if new is not c:
            value = c if dry else new
            try:
                setattr(x, k, value)
            except AttributeError:  # a frozen dataclass
                try:
                    object.__setattr__(x, k, value)
                except Exception as err:  # noqa: BLE001 - a property without a setter
                    raise _Unwritable(_join(prefix, k), f"a field of {type(x).__name__}",
                                      err) from None
    return x


class _Unwritable(Exception):
    """A part of the model that cannot take the state's value (found by the dry run)."""

    def __init__(self, path: str, what: str, err: Exception):
        super().__init__(f"{path or 'the model'}: {what} cannot take the state's value "
                         f"({type(err).__name__}: {err})")
