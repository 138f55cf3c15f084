"""A fuzzer of what differentiated functions set on their arguments: random models of user
objects (arrays, numbers, lists, dicts, child objects, a child at two places) and random
programs that set, delete, append, pop and rebind fields while computing a loss. Each
program runs eagerly on a deep copy of the model (the reference) and under ``fl.gradient``
on the model; afterwards the two models must hold the same values in the same structure,
with the same objects shared, and no tracer left anywhere.

    python tests/ad/test_write_back_fuzz.py [CASES] [SEED]   # a longer run by hand
"""

from __future__ import annotations

import copy
import sys

import numpy as np

import fluxml as fl
from fluxml.ad.core import Tracer


class Node:
    """A user's layer: fields of every kind the trees walk."""


def _model(rng):
    shared = Node()
    shared.w = rng.normal(size=2)
    shared.a = float(rng.normal())
    nodes = []
    for k in range(int(rng.integers(1, 4))):
        n = Node()
        n.w = rng.normal(size=2)
        n.scale = float(rng.uniform(0.5, 1.5))
        n.calls = 0
        n.log = [] if rng.random() < 0.7 else [np.zeros(2)]
        n.table = {"k": 1.0} if rng.random() < 0.5 else {}
        n.child = shared if rng.random() < 0.5 else None
        nodes.append(n)
    root = Node()
    root.nodes = nodes
    root.tail = shared
    root.history = []
    return root


OPS = ("count", "state", "append", "pop", "item", "delete", "rebind", "alias", "child")


def _program(rng, n_nodes, length):
    return [(str(rng.choice(OPS)), int(rng.integers(n_nodes)), float(rng.normal()))
            for _ in range(length)]


def _run(program, root):
    """The program on ``root`` (a model or its traced copy): a loss, and writes on the way."""
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
        if n.child is not None:
            total = total + np.sum(n.child.w) * n.child.a
    return total


def _describe(x, ids):
    """Values and sharing of a model, as plain data (objects numbered as first met)."""
    if isinstance(x, Tracer):
        raise AssertionError(f"a tracer was left in the model: {x!r}")
    if isinstance(x, Node):
        if id(x) in ids:
            return ("same object", ids[id(x)])
        ids[id(x)] = len(ids)
        return ("Node", {k: _describe(v, ids) for k, v in sorted(vars(x).items())})
    if isinstance(x, list):
        return [_describe(v, ids) for v in x]
    if isinstance(x, dict):
        return {k: _describe(v, ids) for k, v in x.items()}
    if isinstance(x, (np.ndarray, np.generic, float, int)):
        return ("value", np.round(np.asarray(x, dtype=float), 9).tolist())
    return x


def check_case(seed: int) -> None:
    rng = np.random.default_rng(seed)
    model = _model(rng)
    program = _program(rng, len(model.nodes), int(rng.integers(1, 8)))
    reference, pristine = copy.deepcopy(model), copy.deepcopy(model)
    _run(program, reference)
    g, = fl.gradient(lambda m: _run(program, m), model)
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
