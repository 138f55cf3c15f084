"""A fuzzer of compiled training steps whose forward pass writes on the model: random models
of user objects (parameters, state arrays, a 0-d counter, a buffer, lists and dicts of
arrays, a field aliasing another array, a layer at two places) and random programs that
rebind, write in place, count, swap and alias while computing a loss; ``fl.compile`` of a
step (``fl.withgradient``, then an update of the parameters in place) is called three times
on the model and the same step eagerly on a deep copy. The losses, the values, the structure
and the sharing of the two models must agree, with no tracer left anywhere; and the eager
``fl.withgradient``, and ``fl.jvp``, must leave the model as the program run plainly does.
A program that does what a compiled program cannot write back (a new field, an array rebound
to another shape, a number changed) must be refused with a ``CompileError`` that names the
field, the model left as it was.

    python tests/compiler/test_write_back_compiled_fuzz.py [CASES] [SEED] [BACKEND]  # by hand
"""

from __future__ import annotations

import copy
import sys

import numpy as np

import fluxml as fl
from fluxml.ad.core import Tracer


class Node:
    """A user's layer: fields of every kind a compiled step may write."""


def _model(rng):
    nodes = []
    for _ in range(int(rng.integers(1, 4))):
        n = Node()
        n.w = rng.normal(size=2)
        n.scale = float(rng.uniform(0.5, 1.5))
        n.state = np.zeros(2)
        n.count = np.array(0.0)
        n.buf = np.zeros(2)
        n.log = [np.zeros(2) for _ in range(int(rng.integers(1, 3)))]
        n.table = {"k": np.zeros(2)}
        n.seen = np.ones(2)
        nodes.append(n)
    root = Node()
    root.nodes = nodes
    if rng.random() < 0.4:  # a layer at two places: one object, eagerly and compiled
        root.again = nodes[int(rng.integers(len(nodes)))]
    # a set holding the model and some layers, a dict keyed by layer (named after `nodes`:
    # _describe numbers the layers first)
    root.within = {root, *(n for n in nodes if rng.random() < 0.5)}
    root.weight_of = {n: float(rng.uniform(0.5, 1.5)) for n in nodes}
    return root


WRITES = ("state", "inplace", "count", "item", "entry", "alias", "alias_state", "slice",
          "scale_state", "swap_log", "take_state", "param", "in_set", "keyed")
REFUSED = {"new_field": "extra", "reshape": "state", "number": "scale"}


def _program(rng, n_nodes, length):
    ops = [(str(rng.choice(WRITES)), int(rng.integers(n_nodes)), int(rng.integers(n_nodes)),
            float(rng.normal())) for _ in range(length)]
    if rng.random() < 0.15:  # one write that no compiled program can make (last: no later
        # write undoes it)
        ops.append((str(rng.choice(sorted(REFUSED))), int(rng.integers(n_nodes)), 0, 0.5))
    return ops


def _run(program, root):
    """The program's loss on ``root`` (a model or its traced copy), writing on the way."""
    total = 0.0
    for op, k, j, c in program:
        n, other = root.nodes[k], root.nodes[j]
        h = np.tanh(n.w * n.scale + c + n.state)
        total = total + np.sum(h * n.seen)
        if op == "state":
            n.state = 0.5 * h
        elif op == "inplace":
            n.buf += h
        elif op == "count":
            n.count += 1.0
        elif op == "item":
            n.log[k % len(n.log)] = h * c
        elif op == "entry":
            n.table["k"] = h + n.table["k"]
        elif op == "alias":
            n.seen = other.w
        elif op == "alias_state":
            n.seen = other.state
        elif op == "slice":
            n.buf[:1] = h[:1]
        elif op == "scale_state":
            n.state *= 0.5  # in place: through every field that holds the array
        elif op == "swap_log":
            n.log[0], n.log[-1] = n.log[-1], n.log[0]
        elif op == "take_state":
            n.state = other.state
        elif op == "param":
            n.w *= 0.999  # the parameter being differentiated, written in place
        elif op == "in_set":  # a branch on membership, taken at trace time as eagerly
            total = total + np.sum(h) * (2.0 if n in root.within and root in root.within
                                         else 1.0)
        elif op == "keyed":
            total = total + root.weight_of[n] * np.sum(h)
        elif op == "new_field":
            n.extra = h
        elif op == "reshape":
            n.state = h[:1]
        elif op == "number":
            n.scale = n.scale + 1.0
    return total


def _step(program):
    def step(model):
        loss, (g,) = fl.withgradient(lambda m: _run(program, m), model)
        for node, gn in zip(model.nodes, g.nodes):
            if gn is not None and gn.w is not None:
                node.w -= 0.1 * gn.w
        return loss
    return step


def _describe(x, ids):
    """Values and sharing of a model, as plain data (objects and arrays numbered as first
    met: two fields holding one array read the same)."""
    if isinstance(x, Tracer):
        raise AssertionError(f"a tracer was left in the model: {x!r}")
    if isinstance(x, (Node, np.ndarray)) and id(x) in ids:
        return ("same", ids[id(x)])
    if isinstance(x, Node):
        ids[id(x)] = len(ids)
        return ("Node", {k: _describe(v, ids) for k, v in sorted(vars(x).items())})
    if isinstance(x, list):
        return [_describe(v, ids) for v in x]
    if isinstance(x, dict):
        return {("Node", ids.get(id(k))) if isinstance(k, Node) else k: _describe(v, ids)
                for k, v in x.items()}
    if isinstance(x, set):
        return ("set", sorted(ids.get(id(v), -1) for v in x))
    if isinstance(x, np.ndarray):
        ids[id(x)] = len(ids)
        return ("array", x.shape, np.round(x, 9).tolist())
    if isinstance(x, (np.generic, float, int)):
        return ("number", round(float(x), 9))
    return x


def check_case(seed: int, backend: str = "numpy") -> str:
    """One case: "ran", or "refused" (a CompileError that names a field, the model left
    as it was)."""
    rng = np.random.default_rng(seed)
    model = _model(rng)
    program = _program(rng, len(model.nodes), int(rng.integers(1, 6)))
    reference = copy.deepcopy(model)
    compiled, eager = fl.compile(_step(program), backend=backend), _step(program)
    refused = [op for op, *_ in program if op in REFUSED]
    if not refused:  # the eager reference itself: fl.withgradient writes as plain Python does
        plain, traced = copy.deepcopy(model), copy.deepcopy(model)
        want_loss = _run(program, plain)
        loss, _ = fl.withgradient(lambda m: _run(program, m), traced)
        np.testing.assert_allclose(loss, want_loss, rtol=1e-12, err_msg=f"seed {seed}")
        got, want = _describe(traced, {}), _describe(plain, {})
        assert got == want, f"seed {seed}: eager gradient: {program}\n got  {got}\n want {want}"
        forward = copy.deepcopy(model)
        tangent = fl.fmap(lambda x: np.ones_like(x) if isinstance(x, np.ndarray) else x,
                          copy.deepcopy(model))
        value, _ = fl.jvp(lambda m: _run(program, m), (forward,), (tangent,))
        np.testing.assert_allclose(value, want_loss, rtol=1e-12, err_msg=f"seed {seed}")
        got = _describe(forward, {})
        assert got == want, f"seed {seed}: fl.jvp: {program}\n got  {got}\n want {want}"
    for call in range(3):
        before = _describe(model, {})
        try:
            loss = compiled(model)
        except fl.CompileError as e:
            # (a later call may be refused where an earlier one made two fields one array,
            # as eagerly, and the program then gives them two new arrays)
            if refused:
                assert call == 0 and REFUSED[refused[0]] in str(e), \
                    f"seed {seed}, call {call}: {program}: {e}"
            assert "nodes" in str(e), f"seed {seed}: {program}: names no field: {e}"
            after = _describe(model, {})
            assert after == before, \
                f"seed {seed}: a refused step changed the model\n{after}\n{before}"
            return "refused"
        assert not refused, f"seed {seed}: {program} was not refused"
        if backend == "xla":
            compiled.wait()  # the later calls run XLA's code, not the NumPy code meanwhile
        want_loss = eager(reference)
        np.testing.assert_allclose(loss, want_loss, rtol=1e-10, atol=1e-12,
                                   err_msg=f"seed {seed}, call {call}: {program}")
        got, want = _describe(model, {}), _describe(reference, {})
        assert got == want, f"seed {seed}, call {call}: {program}\n got  {got}\n want {want}"
    return "ran"


def test_write_back_compiled_fuzz():
    for seed in range(40):
        check_case(seed)


if __name__ == "__main__":
    cases = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    first = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    backend = sys.argv[3] if len(sys.argv) > 3 else "numpy"
    outcomes = [check_case(s, backend) for s in range(first, first + cases)]
    print(f"{cases} cases clean: {outcomes.count('ran')} ran, {outcomes.count('refused')} "
          f"refused")
