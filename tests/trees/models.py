"""The models of the tree fuzzer (fuzz_trees.py): user classes of every kind, the reference
walk that reads a model as its user would, the random models, the loss whose gradient is
computed by hand, and the walks of optimiser states beside their models."""

from __future__ import annotations

import collections
import copy
import dataclasses

import numpy as np

import fluxml as fl

D = 3  # the width of the layers' input and output
N = 2  # the batch


# --- user classes of every kind --------------------------------------------------------------


class Plain:
    def __init__(self, **fields):
        self.__dict__.update(fields)


class Slotted:
    __slots__ = ("a", "b", "c")

    def __init__(self, **fields):
        for k, v in fields.items():
            setattr(self, k, v)


class SlottedChild(Slotted):  # a __dict__ under the parent's slots
    pass


class Mod(fl.Module):
    def __init__(self, **fields):
        self.__dict__.update(fields)


class Stats(fl.Module):
    nontrainable = ("stat",)

    def __init__(self, w, stat):
        self.w, self.stat = w, stat


class SlotStats(fl.Module):  # slots under Module's __dict__, one of them nontrainable
    __slots__ = ("w", "stat")
    nontrainable = ("stat",)

    def __init__(self, w, stat):
        self.w, self.stat = w, stat


class SlotMod(fl.Module):  # a Module whose fields are slots (it has a __dict__ too)
    __slots__ = ("a", "b")

    def __init__(self, **fields):
        for k, v in fields.items():
            setattr(self, k, v)


@dataclasses.dataclass
class DC:
    a: object = None
    b: object = None


@dataclasses.dataclass(frozen=True)
class Frozen:
    a: object = None
    b: object = None


@dataclasses.dataclass(slots=True)
class SlotDC:
    a: object = None
    b: object = None


@dataclasses.dataclass(slots=True, frozen=True)
class SlotStatsDC:  # no __dict__, a nontrainable field
    w: object = None
    stat: object = None
    nontrainable = ("stat",)


NT = collections.namedtuple("NT", ["a", "b"])


class UserList(list):
    pass


class UserTuple(tuple):
    pass


def _fn(x):
    return x


STATICS = ("relu", None, True, _fn, np.tanh, np.float32)

# Whether fl.tree walks the slots of a class (until it does, the fuzzer makes none: a slotted
# object was static, its arrays constants; being fixed on main)
SLOTS = bool(fl.leaves(Slotted(a=np.ones(1)))) and bool(fl.leaves(SlottedChild(a=np.ones(1))))
SLOT_KINDS = ("slotted", "slotchild", "slotstats", "slotmod")


class Net(fl.Module):
    """The root: a random ``tree`` and ``layers`` run in order on (N, D) input."""

    def __init__(self, tree, layers):
        self.tree = tree
        self.layers = layers
        self.name = "net"

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


# --- the reference walk ----------------------------------------------------------------------


def slots_of(t) -> list:
    names = []
    for c in t.__mro__:
        s = c.__dict__.get("__slots__", ())
        names += [s] if isinstance(s, str) else [n for n in s if n not in ("__dict__",
                                                                          "__weakref__")]
    return names


def children(x):
    """``[(step, value)]`` of a node (step: ("i", key) for items, ("a", name) for fields), or
    None for a leaf or a static part, as a user would read the model."""
    if isinstance(x, (np.ndarray, np.generic, int, float)) or x is None or \
            isinstance(x, (str, bool)) or callable(x) and not isinstance(x, fl.Module) or \
            array_like(x):
        return None
    if isinstance(x, dict):
        return [(("i", k), v) for k, v in x.items()]
    if isinstance(x, (list, tuple)):
        return [(("i", k), v) for k, v in enumerate(x)]
    if dataclasses.is_dataclass(x):
        return [(("a", f.name), getattr(x, f.name)) for f in dataclasses.fields(x)]
    if type(x).__module__ == __name__ or isinstance(x, fl.Module):
        fields = [(("a", k), getattr(x, k)) for k in slots_of(type(x)) if hasattr(x, k)]
        return fields + [(("a", k), v) for k, v in getattr(x, "__dict__", {}).items()]
    return None


def array_like(x) -> bool:
    """Another device's array (the stand-in of tests/backend/fakedevice.py)."""
    return type(x).__name__ == "FakeDeviceArray"


def walk(x, path=(), skip=False, out=None):
    """``[(path, leaf, trainable)]`` of every array and number, at every place."""
    out = [] if out is None else out
    kids = children(x)
    if kids is None:
        if isinstance(x, (np.ndarray, np.generic, int, float)) and not isinstance(x, bool) \
                or array_like(x):
            out.append((path, x, not skip))
        return out
    frozen = getattr(type(x), "nontrainable", ()) if not isinstance(x, (dict, list, tuple)) \
        else ()
    for step, v in kids:
        walk(v, path + (step,), skip or step[1] in frozen and step[0] == "a", out)
    return out


def get(x, path):
    for kind, k in path:
        if x is None:
            return None
        x = x[k] if kind == "i" else getattr(x, k)
    return x


def is_param(x) -> bool:
    return isinstance(x, np.ndarray) and x.dtype.kind == "f"


def objects(x, found=None):
    """Every node object (not containers) once by id, with a count of places."""
    found = {} if found is None else found
    kids = children(x)
    if kids is None:
        return found
    if not isinstance(x, (dict, list, tuple)):
        n = found.get(id(x), (x, 0))[1]
        found[id(x)] = (x, n + 1)
        if n:
            return found
    for _, v in kids:
        objects(v, found)
    return found


# --- random models ---------------------------------------------------------------------------


class Gen:
    def __init__(self, rs):
        self.rs = rs
        self.arrays: list = []  # float arrays made so far (to tie)
        self.layers: list = []

    def pick(self, xs):
        return xs[int(self.rs.integers(len(xs)))]

    def array(self):
        rs = self.rs
        r = rs.random()
        if self.arrays and r < 0.2:
            return self.pick(self.arrays)  # a tie
        if r < 0.3:
            return rs.integers(-3, 4, size=int(rs.integers(1, 4)))
        shape = self.pick([(), (0,), (2,), (3,), (2, 3), (1, 2, 2)])
        dtype = self.pick([np.float32, np.float64])
        a = rs.normal(size=shape).astype(dtype)
        layout = rs.random()
        if layout < 0.1 and a.ndim == 2:
            a = np.asfortranarray(a)
        elif layout < 0.2 and a.ndim:  # a strided view of a buffer the model does not hold
            a = np.repeat(a, 2, axis=-1)[..., ::2]
        self.arrays.append(a)
        return a

    def leaf(self):
        rs = self.rs
        r = rs.random()
        if r < 0.5:
            return self.array()
        if r < 0.6:
            return float(rs.normal())
        if r < 0.65:
            return int(rs.integers(-5, 5))
        if r < 0.7:
            return np.float64(rs.normal())
        if r < 0.75:
            return np.random.default_rng(int(rs.integers(100)))
        return self.pick(STATICS)

    def tree(self, depth):
        rs = self.rs
        if depth <= 0 or rs.random() < 0.3:
            if self.layers and rs.random() < 0.15:
                return self.pick(self.layers)  # a layer in the tree too
            return self.leaf()
        n = int(rs.integers(0, 4))
        kind = self.pick(["list", "tuple", "dict", "idict", "plain", "slotted", "slotchild",
                          "mod", "stats", "slotstats", "slotmod", "statsdc", "dc", "frozen",
                          "slotdc", "nt", "userlist", "usertuple"])
        if kind in SLOT_KINDS and not SLOTS:
            kind = "plain"
        sub = [self.tree(depth - 1) for _ in range(n)]
        if kind == "list":
            return sub
        if kind == "tuple":
            return tuple(sub)
        if kind in ("userlist", "usertuple"):
            return (UserList if kind == "userlist" else UserTuple)(sub)
        if kind == "dict":
            return {f"k{i}": v for i, v in enumerate(sub)}
        if kind == "idict":
            return {i * 2: v for i, v in enumerate(sub)}
        if kind in ("stats", "slotstats", "statsdc"):
            cls = {"stats": Stats, "slotstats": SlotStats, "statsdc": SlotStatsDC}[kind]
            return cls(self.array_float(), self.array_float(own=True))
        two = (sub + [self.tree(depth - 1), self.tree(depth - 1)])[:2]
        if kind == "plain":
            return Plain(**{f"f{i}": v for i, v in enumerate(sub)})
        if kind == "mod":
            return Mod(**{f"f{i}": v for i, v in enumerate(sub)})
        if kind == "slotmod":
            return SlotMod(**dict(zip("ab", sub)))
        if kind in ("slotted", "slotchild"):
            cls = Slotted if kind == "slotted" else SlottedChild
            obj = cls(**dict(zip("abc", sub)))  # some slots may stay unset
            if kind == "slotchild":
                obj.extra = self.tree(depth - 1)
            return obj
        if kind == "nt":
            return NT(*two)
        cls = {"dc": DC, "frozen": Frozen, "slotdc": SlotDC}[kind]
        return cls(*two)

    def array_float(self, own=False):
        if self.arrays and not own and self.rs.random() < 0.3:
            return self.pick(self.arrays)
        a = self.rs.normal(size=(2,)).astype(self.pick([np.float32, np.float64]))
        if not own:
            self.arrays.append(a)
        return a

    def layer(self, depth=2):
        kind = self.pick(["dense", "dense", "scale", "batchnorm", "dropout"]
                         + ["chain", "skip"] * (depth > 0))
        rs = self.rs
        if kind == "chain":
            inner = [self.layer(depth - 1) for _ in range(int(rs.integers(1, 3)))]
            if rs.random() < 0.5:
                return fl.Chain(*inner)
            return fl.Chain(**{f"n{i}": v for i, v in enumerate(inner)})
        if kind == "skip":
            return fl.SkipConnection(self.layer(depth - 1), np.add)
        if kind == "dense":
            layer = fl.Dense(D, D, bias=bool(rs.integers(3)))
        elif kind == "scale":
            layer = fl.Scale(D)
            layer.scale = rs.normal(size=D).astype(np.float32)
        elif kind == "batchnorm":
            layer = fl.BatchNorm(D)
            layer.running_mean[:] = rs.normal(size=D)
            layer.running_var[:] = rs.random(D) + 0.5
            layer.weight = rs.normal(size=D).astype(np.float32)
        else:
            layer = fl.Dropout(0.5)
        return layer


def random_model(seed):
    rs = np.random.default_rng(seed)
    g = Gen(rs)
    g.layers = [g.layer() for _ in range(int(rs.integers(0, 4)))]
    for layer in g.layers:
        g.arrays += [a for a in (getattr(layer, "weight", None), getattr(layer, "bias", None))
                     if a is not None and a.ndim == 1 and rs.random() < 0.5]
    tree = g.tree(int(rs.integers(1, 5)))
    layers = list(g.layers)
    if layers and rs.random() < 0.3:
        layers.append(layers[0])  # one layer run twice
    model = Net(tree, layers)
    fl.testmode(model)
    return model, rs


# --- the hand computation of the loss's gradient ---------------------------------------------


def coefficients(model, rs):
    """A coefficient per place of a float leaf of the tree (the loss weighs sin of each)."""
    return {path: rs.normal() for path, x, _ in walk(model.tree)
            if is_param(x) or isinstance(x, (float, np.floating))}


def loss(m, coef, x, cout):
    total = np.sum(cout * m(x))
    for path, c in coef.items():
        total = total + np.sum(c * np.sin(get(m.tree, path)))
    return total


def expected_grads(model, coef, x, cout):
    """{id of an array or path of a number: gradient} by hand, in float64."""
    out: dict = {}

    def add(a, g):
        out[id(a)] = out.get(id(a), 0) + g

    for path, c in coef.items():
        v = get(model.tree, path)
        g = c * np.cos(np.asarray(v, np.float64))
        if isinstance(v, np.ndarray):
            add(v, g)
        else:
            out[("num", path)] = g
    # the layers: forward, keeping inputs, then backward
    gy = np.broadcast_to(np.asarray(cout, np.float64), (N, D))
    back(model.layers, np.asarray(x, np.float64), gy, add)
    return out


def back(layer, xin, gy, add):
    """The cotangent of ``layer``'s input, its parameters' added with ``add``, by hand."""
    if isinstance(layer, (list, fl.Chain)):
        layers = list(layer.layers.values() if isinstance(layer, fl.Chain) and
                      isinstance(layer.layers, dict) else layer)
        xs = [xin]
        for inner in layers:
            xs.append(np.asarray(inner(xs[-1].astype(np.float32)), np.float64))
        for inner, x in reversed(list(zip(layers, xs))):
            gy = back(inner, x, gy, add)
        return gy
    if isinstance(layer, fl.SkipConnection):
        return back(layer.layers, xin, gy, add) + gy
    if isinstance(layer, fl.Dense):
        add(layer.weight, gy.T @ xin)
        if layer.bias is not None:
            add(layer.bias, gy.sum(0))
        return gy @ layer.weight.astype(np.float64)
    if isinstance(layer, fl.Scale):
        add(layer.scale, (gy * xin).sum(0))
        if layer.bias is not None:
            add(layer.bias, gy.sum(0))
        return gy * layer.scale
    if isinstance(layer, fl.BatchNorm):
        inv = 1 / np.sqrt(layer.running_var.astype(np.float64) + layer.eps)
        add(layer.weight, (gy * (xin - layer.running_mean) * inv).sum(0))
        add(layer.bias, gy.sum(0))
        return gy * layer.weight * inv
    return gy  # Dropout in test mode


def fmt(path):
    return "".join(f"[{k!r}]" if kind == "i" else f".{k}" for kind, k in path) or "<root>"


def params(model):
    """{id: (array, [paths])} of the trainable float arrays."""
    out: dict = {}
    for path, v, train in walk(model):
        if train and is_param(v):
            out.setdefault(id(v), (v, []))[1].append(path)
    return out


def in_state(state, model, path):
    """The part of an optimiser state at a model's ``path`` (a namedtuple's is a Node)."""
    for kind, k in path:
        if state is None:
            return None
        key = model._fields[k] if isinstance(model, tuple) and hasattr(model, "_fields") else k
        model = get(model, ((kind, k),))
        if isinstance(state, dict):
            state = state.get(key)
        elif isinstance(state, (list, tuple)):
            state = state[key]
        else:
            state = getattr(state, key, None)
    return state


def state_parts(state, model, path=(), out=None):
    """``[(model path, part)]`` of every Leaf, Node, dict, list and tuple of a state."""
    out = [] if out is None else out
    if state is None:
        return out
    out.append((path, state))
    if isinstance(state, fl.Leaf):
        return out
    if isinstance(state, dict):
        items = [(("i", k), v) for k, v in state.items()]
    elif isinstance(state, (list, tuple)):
        items = [(("i", k), v) for k, v in enumerate(state)]
    elif isinstance(model, tuple) and hasattr(model, "_fields"):
        items = [(("i", model._fields.index(k)), getattr(state, k)) for k in state._fields]
    else:
        items = [(("a", k), getattr(state, k)) for k in state._fields]
    for step, v in items:
        state_parts(v, get(model, (step,)), path + (step,), out)
    return out


def places(x, target, path=(), out=None):
    out = [] if out is None else out
    if x is target:
        out.append((path, x))
        return out
    for step, v in children(x) or ():
        places(v, target, path + (step,), out)
    return out


def perturbed(model):
    """A deep copy (ties kept) with every array changed."""
    other = copy.deepcopy(model)
    done = set()
    for _, v, _ in walk(other):
        if isinstance(v, np.ndarray) and id(v) not in done and v.size:
            done.add(id(v))
            v[...] = v + 1 if v.dtype.kind in "iuf" else v
    return other


def set_field(obj, step, value):
    kind, k = step
    if kind == "i":
        obj[k] = value
    else:
        object.__setattr__(obj, k, value)  # (a frozen dataclass too)
