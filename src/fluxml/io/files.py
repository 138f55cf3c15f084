"""``fl.save`` / ``fl.load``: a model's state in a safetensors file, and checkpoints that
hold model, optimiser state, random-number generators and step together.

Tensors are named by their dotted paths (``layers.0.weight``, as a PyTorch state dict
names them); the file's metadata keeps the exact key path of each, so ``fl.load`` gives back
the nested dict ``fl.state`` made. A file without that metadata (written by another program)
is nested by splitting its names at the dots.

>>> import numpy as np, fluxml as fl, tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "model.safetensors")
>>> model = fl.Chain(fl.Dense(2, 3, np.tanh), fl.Dense(3, 1))
>>> fl.save(path, model)
>>> fresh = fl.loadmodel(fl.Chain(fl.Dense(2, 3, np.tanh), fl.Dense(3, 1)), fl.load(path))
>>> bool(np.all(fresh[0].weight == model[0].weight))
True
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, NamedTuple

import numpy as np

from fluxml._checks import is_int, shown
from fluxml.io import extra as extra_values
from fluxml.io import safetensors
from fluxml.io.modelstate import LoadError, check, flat_state, host, named_leaves, write_into
from fluxml.tree import flatten

KEYS = "fluxml.keys"


def _tensors(tree) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    named = named_leaves(tree, "save")
    return ({name: host(leaf) for name, _, leaf in named},
            {name: list(path) for name, path, _ in named})


def save(path, model_or_state, metadata: dict[str, str] | None = None) -> None:
    """Save a model's state (or a state dict) to ``path`` in the safetensors format,
    atomically: a failure part-way leaves any earlier file as it was. ``metadata`` adds
    string entries to the file's ``__metadata__``.

    >>> import os, tempfile, numpy as np, fluxml as fl
    >>> path = os.path.join(tempfile.mkdtemp(), "model.safetensors")
    >>> model = fl.Chain(fl.Dense(2, 3, fl.relu), fl.Dense(3, 1))
    >>> fl.save(path, model)
    >>> same = fl.loadmodel(fl.Chain(fl.Dense(2, 3, fl.relu), fl.Dense(3, 1)), fl.load(path))
    >>> np.array_equal(same.layers[1].weight, model.layers[1].weight)
    True
    """
    if metadata is not None and not isinstance(metadata, dict):  # (5 raised "'int' object is
        # not iterable", "ab" "dictionary update sequence element #0 has length 1")
        raise TypeError(f"save: metadata must be a dict of strings to strings (or None); got "
                        f"{shown(metadata)}")
    ours = [k for k in (metadata or {}) if isinstance(k, str) and k.startswith("fluxml.")]
    if ours:  # (fluxml.keys given was written over the key paths: a file fl.load misreads)
        raise ValueError(f"save: the metadata key {ours[0]!r} is fluxml's own (every key "
                         f"beginning with 'fluxml.' is); name yours otherwise")
    tensors, keys = _tensors(model_or_state)
    meta = {"format": "np", KEYS: json.dumps(keys), **(metadata or {})}
    safetensors.write(path, tensors, meta)


def _nest(tensors: dict, keys: dict | None, where) -> dict:
    if keys is not None and keys.keys() != tensors.keys():  # (fluxml lists every tensor: a
        # name damaged since was nested at its dots, silently, where the digest's key was
        # damaged too)
        odd = sorted(tensors.keys() ^ keys.keys())[0]
        how = (f"is in the file but not in its metadata {KEYS}" if odd in tensors else
               f"is listed in the metadata {KEYS} but not in the file")
        raise safetensors.FileFormatError(
            f"load: {where}: the tensor {odd!r} {how}, which lists every tensor fluxml "
            f"wrote and no other: the file is damaged")
    out: dict = {}
    for name, x in tensors.items():
        path = keys.get(name) if keys else None
        node = out
        parts = path if path else name.split(".")
        for key in parts[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise safetensors.FileFormatError(f"load: {name} lies inside another tensor's "
                                                  f"name; the names do not form a tree")
        if parts[-1] in node:  # (written over, the first would be lost)
            raise safetensors.FileFormatError(f"load: {name} repeats another tensor's name "
                                              f"or holds others inside it; the names do not "
                                              f"form a tree")
        node[parts[-1]] = x
    return out


def _keys(meta: dict, where) -> dict | None:
    if KEYS not in meta:
        return None
    try:
        keys = json.loads(meta[KEYS])
    except json.JSONDecodeError as err:
        raise safetensors.FileFormatError(f"load: {where}: the metadata {KEYS} is not valid "
                                          f"JSON ({err})") from None
    if not isinstance(keys, dict) or not all(
            isinstance(p, list) and p and all(isinstance(k, str) for k in p)
            for p in keys.values()):  # (a string would be nested letter by letter)
        raise safetensors.FileFormatError(f"load: {where}: the metadata {KEYS} is damaged: "
                                          f"expected each tensor's name mapped to its list of "
                                          f"keys, got {meta[KEYS][:200]!r}")
    return keys


def load(path) -> dict[str, Any]:
    """The nested state dict saved in ``path`` (load it into a model with
    ``fl.loadmodel(model, fl.load(path))``). A truncated or corrupted file raises
    ``FileFormatError`` and returns nothing.

    >>> import os, tempfile, fluxml as fl
    >>> path = os.path.join(tempfile.mkdtemp(), "model.safetensors")
    >>> fl.save(path, fl.Chain(fl.Dense(2, 3), fl.Dense(3, 1)))
    >>> state = fl.load(path)
    >>> state["layers"]["0"]["weight"].shape
    (3, 2)
    """
    tensors, meta = safetensors.read(path)
    return _nest(tensors, _keys(meta, path), path)


# --- checkpoints ------------------------------------------------------------------------------

DEFAULT_RNG = "fluxml.init"
MODEL_RNGS = "fluxml.model_rngs"  # the states of the generators the model's layers hold
RULES = "fluxml.rules"  # the rules of the optimiser state's Leafs, in order (absent in files
# written before it: not checked there)
EXTRA_FORMAT = "fluxml.extra_format"  # (absent: plain JSON, as files before it were written;
# "2": extra holds arrays, kept as the file's tensors "extra.<index>": a fluxml reading "1"
# only refuses it by name rather than misread it)


class Checkpoint(NamedTuple):
    """What ``load_checkpoint`` gives back besides the model it filled in."""

    step: int
    opt_state: Any
    extra: dict


def _rng_states(rngs: dict | None) -> dict:
    from fluxml.init import default_rng

    states = {DEFAULT_RNG: default_rng().bit_generator.state}
    for name, gen in (rngs or {}).items():
        if not isinstance(gen, np.random.Generator):
            raise TypeError(f"checkpoint: rngs[{name!r}] must be a numpy.random.Generator "
                            f"(e.g. loader.rng); got {type(gen).__name__}")
        states[name] = gen.bit_generator.state
    return {name: _as_lists(state) for name, state in states.items()}


def _model_generators(model) -> dict[str, np.random.Generator]:
    """The generators the model's layers hold (``Dropout(p, rng=gen)``), each once, by the
    path of its first field (``layers.1.rng``)."""
    found: dict = {}
    seen: set = set()
    stack = [(flatten(model)[1], "")]
    while stack:
        node, path = stack.pop()
        if node.kind == "static":
            if isinstance(node.static, np.random.Generator) and id(node.static) not in seen:
                seen.add(id(node.static))
                found[path] = node.static
        elif node.kind != "leaf":
            keys = node.keys if node.keys is not None else range(len(node.children))
            stack.extend(reversed([(c, f"{path}.{k}" if path else str(k))
                                   for k, c in zip(keys, node.children)]))
    return found


def _as_lists(state):
    """A generator's state with its arrays as lists (MT19937's, Philox's and SFC64's hold
    arrays, which JSON cannot; their ``state`` setters take lists)."""
    if isinstance(state, dict):
        return {k: _as_lists(v) for k, v in state.items()}
    return state.tolist() if isinstance(state, np.ndarray) else state


def save_checkpoint(path, model, opt_state=None, *, step: int = 0, rngs: dict | None = None,
                    extra: dict | None = None) -> None:
    """Save everything needed to resume training: the model's state, the optimiser state
    (from ``fl.setup``), the step count, the state of fluxml's default random generator, of
    the generators the model's layers hold (``Dropout(p, rng=gen)``) and of those in ``rngs``
    (e.g. ``{"data": loader.rng}``), and ``extra``, a small
    dict (epoch, history, best loss ...) that comes back equal and of the same types: it
    holds None, bool, int, float (nan too), str, NumPy numbers, NumPy arrays (kept as
    tensors of the file: the weights of ``EarlyStopping``'s best epoch in a history), and
    lists, tuples and dicts (any such keys) of these; anything else (a set, a namedtuple)
    is refused here, by its place in ``extra`` (see ``fluxml.io.extra``). One safetensors
    file, written atomically; ``step`` is a non-negative integer.

    >>> import numpy as np, fluxml as fl, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "ckpt.safetensors")
    >>> model = {"w": np.ones(2)}
    >>> fl.save_checkpoint(path, model, step=10, extra={"epoch": 2})
    >>> model["w"][:] = 0
    >>> fl.load_checkpoint(path, model).step, model["w"]
    (10, array([1., 1.]))
    """
    step = _step(step)
    tree = {"model": model}
    if opt_state is not None:
        _check_opt_state(model, opt_state)
        tree["opt"] = opt_state
    arrays: list = []
    extra_json = _extra_json(extra, arrays)
    if arrays:
        tree["extra"] = {str(i): x for i, x in enumerate(arrays)}
    tensors, keys = _tensors(tree)
    meta = {"format": "np", KEYS: json.dumps(keys), "fluxml.step": str(step),
            "fluxml.rngs": json.dumps(_rng_states(rngs)),
            "fluxml.extra": extra_json, EXTRA_FORMAT: "2" if arrays else "1",
            "fluxml.frozen": json.dumps(_frozen(opt_state))}
    if opt_state is not None:
        meta[RULES] = json.dumps(_rule_names(_optimiser_leaves(opt_state)))
    layers_rngs = {name: _as_lists(gen.bit_generator.state)
                   for name, gen in _model_generators(model).items()}
    if layers_rngs:  # (absent where the layers hold none: the file of a plain model as before)
        meta[MODEL_RNGS] = json.dumps(layers_rngs)
    safetensors.write(path, tensors, meta)


def _step(step) -> int:
    """``step`` checked: a count of steps, so a non-negative integer (``int(2.7)`` saved 2,
    silently; a bool is refused too, though Python counts it an int)."""
    if not is_int(step):
        raise TypeError(f"save_checkpoint: step must be a non-negative integer (the number "
                        f"of steps taken); got {step!r} ({type(step).__name__})")
    if step < 0:
        raise ValueError(f"save_checkpoint: step must be a non-negative integer (the number "
                         f"of steps taken); got {step}")
    return int(step)


def _extra_json(extra, arrays: list) -> str:
    if not isinstance(extra, (dict, type(None))):
        raise TypeError(f"save_checkpoint: extra must be a dict; got {type(extra).__name__}")
    return extra_values.dumps(extra or {}, "save_checkpoint: extra", arrays)


def load_checkpoint(path, model, opt_state=None, *, rngs: dict | None = None) -> Checkpoint:
    """Resume from ``save_checkpoint``'s file: the model's arrays are filled in place,
    ``opt_state`` (a fresh ``fl.setup(rule, model)`` of the same shape) likewise, fluxml's
    default generator and the generators in ``rngs`` get their saved states. Everything is
    checked before anything is written; a bad file or a model that does not fit raises and
    changes nothing. The generators the model's layers hold (``Dropout(p, rng=gen)``) get
    the states saved at their paths (a model built afresh holds generators as seeded, and
    a resumed run drew other dropout masks, silently), where the file has them. Returns
    ``Checkpoint(step, opt_state, extra)``.

    >>> import os, tempfile, numpy as np, fluxml as fl
    >>> path, model = os.path.join(tempfile.mkdtemp(), "ckpt.st"), {"w": np.ones(2)}
    >>> fl.save_checkpoint(path, model, fl.setup(fl.Adam(0.1), model), step=7)
    >>> model["w"][:] = 0
    >>> info = fl.load_checkpoint(path, model, fl.setup(fl.Adam(0.1), model))
    >>> info.step, model["w"]
    (7, array([1., 1.]))
    """
    tensors, meta = safetensors.read(path)
    if "fluxml.step" not in meta:
        raise LoadError(f"load_checkpoint: {path} is a safetensors file but not a fluxml "
                        f"checkpoint (no fluxml.step in its metadata); use fl.load for a "
                        f"saved model")
    state = _nest(tensors, _keys(meta, path), path)
    step, saved_rngs, extra, frozen = _checkpoint_meta(meta, path, state.get("extra", {}))
    missing = [name for name in (rngs or {}) if name not in saved_rngs]
    if missing:
        raise LoadError(f"load_checkpoint: no saved state for the generator {missing[0]!r}; "
                        f"the checkpoint has {sorted(saved_rngs)}")
    if (opt_state is None) != ("opt" not in state):
        raise LoadError("load_checkpoint: " + ("the checkpoint holds an optimiser state: pass "
                        "opt_state=fl.setup(rule, model) to restore it" if opt_state is None
                        else "the checkpoint holds no optimiser state, but opt_state was "
                        "given"))
    model_flat = flat_state(state.get("model", {}))  # (a model of no arrays saves none)
    model_target = check(model, model_flat, "load_checkpoint (model)")
    if opt_state is not None:
        opt_flat = flat_state(state["opt"])
        opt_target = check(opt_state, opt_flat, "load_checkpoint (optimiser state)")
        leaves = _optimiser_leaves(opt_state)  # (write_into keeps these objects)
        count = len(leaves)
        if any(not 0 <= i < count for i in frozen):
            raise LoadError(f"load_checkpoint: {path}: the checkpoint freezes the leaves "
                            f"{frozen} of the optimiser state, which has {count}")
        _check_rules(meta, path, leaves)
    targets = _rng_states(rngs)  # also checks the generators' types before any write
    from fluxml.init import default_rng

    generators = {DEFAULT_RNG: default_rng(), **(rngs or {})}
    for name in targets:
        _check_generator(name, generators[name], saved_rngs.get(name), path)
    # (a file without them: the layers' as they are)
    layers_saved = _meta_value(meta, path, MODEL_RNGS, "{}", dict)
    layers = [(name, gen, layers_saved[name]) for name, gen in
              _model_generators(model).items() if name in layers_saved]
    for name, gen, saved in layers:
        _check_generator(f"model.{name}", gen, saved, path)
    # every check passed: now write
    write_into(model, model_flat, model_target)
    if opt_state is not None:
        opt_state = write_into(opt_state, opt_flat, opt_target)
        for i in frozen:
            leaves[i].frozen = True
    for name in targets:
        generators[name].bit_generator.state = saved_rngs[name]
    for _, gen, saved in layers:
        gen.bit_generator.state = saved
    return Checkpoint(step, opt_state, extra)


def _check_generator(name: str, generator, saved, where) -> None:
    """Raise where ``saved`` is not a state for ``generator`` (another bit generator, a
    damaged state), before anything is written."""
    kind = saved.get("bit_generator") if isinstance(saved, dict) else None
    now = type(generator.bit_generator).__name__
    if kind != now:
        raise LoadError(f"load_checkpoint: the generator {name!r} is a {now}, the checkpoint "
                        f"saved a {kind}")
    try:  # set on a scratch generator first: a damaged state fails before any write
        type(generator.bit_generator)().state = saved
    except (TypeError, ValueError, KeyError, OverflowError) as err:
        raise safetensors.FileFormatError(
            f"load_checkpoint: {where}: the saved state of the generator {name!r} is "
            f"damaged ({type(err).__name__}: {err})") from None


def _meta_value(meta: dict, where, key: str, default: str, kind: type):
    """The JSON value ``key`` of a checkpoint's metadata (``default`` where the file has
    none), of type ``kind``; a damaged one is a FileFormatError naming it."""
    try:
        v = json.loads(meta.get(key, default))
    except (json.JSONDecodeError, TypeError) as err:  # (TypeError: the key is missing)
        v = err
    if not isinstance(v, kind) or isinstance(v, bool):
        raise safetensors.FileFormatError(
            f"load_checkpoint: {where}: the metadata {key} is damaged (expected "
            f"{kind.__name__} in JSON, got {meta.get(key, default)!r})")
    return v


def _checkpoint_meta(meta: dict, where, arrays: dict) -> tuple[int, dict, dict, list]:
    """``(step, rngs, extra, frozen)`` read from a checkpoint's metadata (``arrays``: the
    tensors of extra, by their index as a string), all of it before anything is written
    (the digest covers the tensors, not the header: a damaged value must not fail after the
    model was filled in)."""
    def value(key, default, kind):
        return _meta_value(meta, where, key, default, kind)

    frozen = value("fluxml.frozen", "[]", list)
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in frozen):
        raise safetensors.FileFormatError(f"load_checkpoint: {where}: the metadata "
                                          f"fluxml.frozen is damaged ({frozen!r})")
    extra = value("fluxml.extra", "{}", dict)
    if EXTRA_FORMAT in meta:
        try:
            if meta[EXTRA_FORMAT] not in ("1", "2"):
                raise ValueError(f"{EXTRA_FORMAT} is {meta[EXTRA_FORMAT]!r}, this fluxml reads "
                                 f"'1' and '2' (a newer fluxml wrote it?)")
            if not isinstance(arrays, dict):
                raise ValueError("its tensors 'extra' are not a dict of arrays by index")
            by_index = {int(k): v for k, v in arrays.items()
                        if k.isdigit() and isinstance(v, np.ndarray)}
            extra = extra_values.loads(meta["fluxml.extra"], by_index)
            if type(extra) is not dict:
                raise ValueError(f"expected a dict, got a {type(extra).__name__}")
        except ValueError as err:
            raise safetensors.FileFormatError(f"load_checkpoint: {where}: the metadata "
                                              f"fluxml.extra is damaged ({err})") from None
    return (value("fluxml.step", None, int), value("fluxml.rngs", None, dict), extra, frozen)


def _optimiser_leaves(opt_state) -> list:
    from fluxml.optimise import Leaf

    return flatten(opt_state, is_leaf=lambda x: isinstance(x, Leaf))[0]


def _check_opt_state(model, opt_state) -> None:
    """An optimiser state: fl.setup's (its Leafs) or one of the user's that holds arrays.
    The rule itself (``fl.Adam()``, a common slip), a string, a number or a dict of settings
    was saved as the state, silently, and resuming from it lost the optimiser's moments."""
    from fluxml.optimise import Leaf, Rule

    if isinstance(opt_state, (Rule, str, bytes, int, float, complex, np.number)) or not (
            any(isinstance(x, Leaf) for x in _optimiser_leaves(opt_state))
            or any(np.ndim(x) > 0 for _, _, x in named_leaves(opt_state, "save_checkpoint"))
            or not named_leaves(model, "save_checkpoint")):
        raise TypeError(f"save_checkpoint: opt_state must be the optimiser state of the model "
                        f"(from fl.setup(rule, model)), or a tree holding the optimiser's "
                        f"arrays; got {shown(opt_state)}")


def _rule_name(rule) -> str:
    """The type of ``rule`` with the rules it holds (a chain's, AccumGrad's inner rule):
    ``"OptimiserChain(ClipNorm, Adam)"``."""
    inner = []
    if dataclasses.is_dataclass(rule):
        for field in dataclasses.fields(rule):
            value = getattr(rule, field.name, None)
            for r in value if isinstance(value, (tuple, list)) else (value,):
                if dataclasses.is_dataclass(r) and not isinstance(r, type):
                    inner.append(_rule_name(r))
    name = type(rule).__name__
    return f"{name}({', '.join(inner)})" if inner else name


def _rule_names(leaves: list) -> list[str]:
    """The rules of the optimiser state's Leafs (``_optimiser_leaves``), by name."""
    from fluxml.optimise import Leaf

    return [_rule_name(leaf.rule) for leaf in leaves if isinstance(leaf, Leaf)]


def _check_rules(meta: dict, where, leaves: list) -> None:
    """Raise where the given optimiser state was set up with other rules than the saved one:
    Adam's, NAdam's and RAdam's states hold the same arrays and numbers, and an Adam
    checkpoint loaded into ``fl.setup(AdamW(), model)`` kept AdamW's decay, silently."""
    if RULES not in meta:
        return
    saved = _meta_value(meta, where, RULES, "[]", list)
    given = _rule_names(leaves)
    if not all(isinstance(name, str) for name in saved):
        raise safetensors.FileFormatError(f"load_checkpoint: {where}: the metadata {RULES} is "
                                          f"damaged ({saved!r})")
    for i, (was, now) in enumerate(zip(saved, given)):
        if was != now:
            raise LoadError(f"load_checkpoint: {where}: the optimiser state's leaf {i} was "
                            f"saved with {was}; the given state holds {now}: set it up with "
                            f"the rule the checkpoint was saved with, fl.setup(rule, model)")
    if len(saved) != len(given):
        raise LoadError(f"load_checkpoint: {where}: the checkpoint's optimiser state has "
                        f"{len(saved)} rules' states; the given one {len(given)}")


def _frozen(opt_state) -> list[int]:
    """Positions of the frozen Leafs (a flag, not an array: kept in the metadata)."""
    if opt_state is None:
        return []
    return [i for i, leaf in enumerate(_optimiser_leaves(opt_state))
            if getattr(leaf, "frozen", False)]
