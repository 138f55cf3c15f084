"""A fuzzer of what differentiated functions set on their arguments: random models of user
objects (plain and slotted with ``__tree_fields__``; arrays, numbers, lists, dicts,
defaultdicts, sets, child objects, a child at two places) and random programs that set,
delete, append, pop and rebind fields, store functions over a layer, add layers to sets and
run stateful steps under ``fl.checkpoint``, branch on a layer's membership of a set, read a
dict keyed by layer and keep functions over a layer in a list the loss closes over, while
computing a loss. Each program runs eagerly on a deep copy of the model (the reference) and
under ``fl.gradient`` on the model; afterwards the two models must hold the same values in
the same structure, with the same objects shared, functions over the model itself (those in
the list too) and no tracer left anywhere; the gradients of the shared number and of each
layer's scale must match central differences.

    python tests/ad/test_write_back_fuzz.py [CASES] [SEED]   # a longer run by hand
"""

from __future__ import annotations

import collections
import copy
import sys

import numpy as np

import fluxml as fl
from fluxml.ad.core import Tracer


class Layer:
    __slots__ = ()  # (a Slotted's __dict__ is its own slot)

    def step(self, c):
        """The stateful step as a method: ``fl.checkpoint(n.step)`` checkpoints the layer."""
        return _step(self, c)


class Node(Layer):
    """A user's layer: fields of every kind the trees walk."""


class Slotted(Layer):
    """A layer with slots (and a __dict__ for the fields programs add) whose trees read it by
    ``__tree_fields__``."""

    __slots__ = ("w", "scale", "__dict__")

    def __tree_fields__(self):
        return [k for k in ("w", "scale") if hasattr(self, k)] + list(vars(self))


def _model(rng):
    shared = Node()
    shared.w = rng.normal(size=2)
    shared.a = float(rng.normal())
    nodes = []
    for k in range(int(rng.integers(1, 4))):
        n = Slotted() if rng.random() < 0.3 else Node()
        n.w = rng.normal(size=2)
        n.scale = float(rng.uniform(0.5, 1.5))
        n.calls = 0
        n.log = [] if rng.random() < 0.7 else [np.zeros(2)]
        n.table = {"k": 1.0} if rng.random() < 0.5 else {}
        n.child = shared if rng.random() < 0.5 else None
        if rng.random() < 0.4:
            n.tally = collections.defaultdict(list)
        nodes.append(n)
    root = Node()
    root.nodes = nodes
    root.tail = shared
    root.history = []
    root.members = set()
    if rng.random() < 0.5:  # the model and some layers in a set it holds
        root.members = {root, *(n for n in nodes if rng.random() < 0.5)}
    root.weight_of = {n: float(rng.uniform(0.5, 1.5)) for n in nodes}  # keyed by layer
    return root


OPS = ("count", "state", "append", "pop", "item", "delete", "rebind", "alias", "child",
       "tally", "closure", "member", "checkpoint", "checkpoint-method", "in-set", "keyed",
       "is", "hook")


def _over(n):
    """A function over the layer ``n`` (a closure: it must be over the model afterwards)."""
    return lambda z: z * n.w


def _step(n, c):
    """A stateful step, checkpointed: its output depends on the count it keeps, so the
    recompute must start from the count as the forward pass saw it."""
    n.calls += 1
    h = np.tanh(n.w * n.scale * (1.0 + 0.1 * n.calls) + c)
    n.state = h
    n.log.append(h * c)
    if n.child is not None:  # (the shared layer, reached through the argument)
        n.child.hits = getattr(n.child, "hits", 0) + 1
    return h


def _program(rng, n_nodes, length):
    return [(str(rng.choice(OPS)), int(rng.integers(n_nodes)), float(rng.normal()))
            for _ in range(length)]


def _run(program, root, hooks=None):
    """The program on ``root`` (a model or its traced copy): a loss, and writes on the way;
    functions over its layers go into ``hooks`` (a list the differentiated function closes
    over, not an argument)."""
    total = np.sum(root.tail.w * root.tail.a)
    for op, k, c in program:
        n = root.nodes[k]
        h = np.tanh(n.w * n.scale + c)
        total = total + np.sum(h)
        if op == "count":
            n.calls += 1
        elif op == "state":
            n.state = h
        elif op == "append":
            n.log.append(h * c)
        elif op == "pop" and n.log:
            n.log.pop()
        elif op == "item":
            n.table[f"t{len(n.table)}"] = np.sum(h)
        elif op == "delete" and hasattr(n, "state"):
            del n.state
        elif op == "rebind":
            root.history.append(fl.stop_gradient(total))
        elif op == "alias":
            n.seen = n.w  # the parameter itself
        elif op == "child":
            n.child = root.tail if n.child is None else None
        elif op == "tally" and hasattr(n, "tally"):
            n.tally[f"k{len(n.tally) % 2}"].append(np.sum(h))
        elif op == "closure":
            n.fn = _over(n)
        elif op == "member":
            root.members.add(n)
        elif op == "hook" and hooks is not None:
            hooks.append(_over(n))
        elif op == "in-set":  # branches on membership: the traced copy is in the set
            # where the model is eagerly
            n.was_member = n in root.members and root in root.members
            total = total + np.sum(h) * (2.0 if n.was_member else 1.0)
        elif op == "keyed":  # a dict keyed by layer, read and written
            total = total + root.weight_of[n] * np.sum(h)
            root.weight_of[n] = root.weight_of[n] + 0.5
        elif op == "is":
            n.same = n.child is root.tail and root.nodes[k] is n
            total = total + np.sum(h) * (3.0 if n.same else 1.0)
        elif op == "checkpoint":
            total = total + np.sum(fl.checkpoint(_step)(n, c) * n.scale)
        elif op == "checkpoint-method":
            total = total + np.sum(fl.checkpoint(n.step)(c))
        if n.child is not None:
            total = total + np.sum(n.child.w) * n.child.a
    return total


def _describe(x, ids):
    """Values and sharing of a model, as plain data (objects numbered as first met)."""
    if isinstance(x, Tracer):
        raise AssertionError(f"a tracer was left in the model: {x!r}")
    if isinstance(x, (Node, Slotted)):
        if id(x) in ids:
            return ("same object", ids[id(x)])
        ids[id(x)] = len(ids)
        fields = dict(vars(x))
        if isinstance(x, Slotted):
            fields.update((k, getattr(x, k)) for k in Slotted.__slots__[:2] if hasattr(x, k))
        if "fn" in fields:  # a function over the layer itself: it sees the layer's w now
            got = fields["fn"](1.0)
            assert np.array_equal(got, x.w), f"a function over a stale layer: {got} {x.w}"
            fields["fn"] = "over the layer"
        return (type(x).__name__, {k: _describe(v, ids) for k, v in sorted(fields.items())})
    if isinstance(x, set):
        return ("set", sorted(_describe(v, ids)[1] if id(v) in ids else -1 for v in x))
    if isinstance(x, collections.defaultdict):
        return ("defaultdict", x.default_factory, {k: _describe(v, ids) for k, v in x.items()})
    if isinstance(x, list):
        return [_describe(v, ids) for v in x]
    if isinstance(x, dict):
        return {("layer", ids.get(id(k), -1)) if isinstance(k, Layer) else k: _describe(v, ids)
                for k, v in x.items()}
    if isinstance(x, (np.ndarray, np.generic, float, int)):
        return ("value", np.round(np.asarray(x, dtype=float), 9).tolist())
    return x


def check_case(seed: int) -> None:
    rng = np.random.default_rng(seed)
    model = _model(rng)
    program = _program(rng, len(model.nodes), int(rng.integers(1, 8)))
    reference, pristine = copy.deepcopy(model), copy.deepcopy(model)
    hooks, reference_hooks = [], []
    _run(program, reference, reference_hooks)
    if seed % 3 == 2:  # the same through pullback
        _, back = fl.pullback(lambda m: _run(program, m, hooks), model)
        g, = back(1.0)
    else:
        g, = fl.gradient(lambda m: _run(program, m, hooks), model)
    # the shared object's number: one input, its total gradient at each of its places
    h, values = 1e-6, []
    for sign in (1, -1):
        moved = copy.deepcopy(pristine)
        moved.tail.a += sign * h
        values.append(float(_run(program, moved)))
    fd = (values[0] - values[1]) / (2 * h)
    assert abs(g.tail.a - fd) <= 1e-5 * max(1.0, abs(fd)), f"seed {seed}: {g.tail.a} vs {fd}"
    for node, gn in zip(pristine.nodes, g.nodes):
        if node.child is not None:
            assert gn.child.a == g.tail.a, f"seed {seed}: {gn.child.a} vs {g.tail.a}"
    for k, node in enumerate(pristine.nodes):  # each layer's scale, through every op
        values = []
        for sign in (1, -1):
            moved = copy.deepcopy(pristine)
            moved.nodes[k].scale = node.scale + sign * h
            values.append(float(_run(program, moved)))
        fd = (values[0] - values[1]) / (2 * h)
        got = g.nodes[k].scale or 0.0  # (None: no derivative)
        assert abs(got - fd) <= 1e-5 * max(1.0, abs(fd)), f"seed {seed}: scale {got} vs {fd}"
    assert len(hooks) == len(reference_hooks)  # over the model's layers: their w now
    for hook, want in zip(hooks, reference_hooks):
        assert np.array_equal(hook(1.0), want(1.0)), f"seed {seed}: a hook over a stale layer"
    got, want = _describe(model, {}), _describe(reference, {})
    assert got == want, f"seed {seed}: program {program}\n got  {got}\n want {want}"
    for node in model.nodes:  # a field set to a parameter holds that very array
        if hasattr(node, "seen"):
            assert node.seen is node.w, f"seed {seed}: seen is a copy of w"


def test_write_back_fuzz():
    for seed in range(60):
        check_case(seed)


if __name__ == "__main__":
    cases = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    first = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    for s in range(first, first + cases):
        check_case(s)
    print(f"{cases} cases clean")
