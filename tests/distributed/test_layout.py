"""The gradient-tree layout the averager plans with: the compiled walker reads the same
positions as ``flatten`` (checked against it, the independent reference) and notices every
change of structure; the builder gives what ``unflatten`` gives, sharing what it can."""

import dataclasses
import types
from collections import namedtuple

import numpy as np
import pytest

import fluxml as fl
from fluxml.distributed import layout
from fluxml.tree import unflatten

Pair = namedtuple("Pair", "u v")


@dataclasses.dataclass
class Box:
    w: object
    tag: str = "box"


class Plain:
    def __init__(self, w):
        self.w = w


class Listed:
    def __init__(self, a, b):
        self.a, self.b = a, b

    def __tree_fields__(self):
        return ["a"] if self.b is None else ["a", "b"]


def trees():
    a, b, c = np.ones(2), np.zeros((2, 3), np.float32), np.arange(3.0)
    model = fl.Chain(fl.Dense(3, 2, np.tanh), fl.BatchNorm(2))
    _, (grads,) = fl.withgradient(lambda m: np.sum(m[0](np.ones((4, 3), np.float32))), model)
    return [
        {"w": a, "b": None, "deep": [b, (c, None, 3)]},
        (a, Pair(b, [c]), {"k": None}),
        [Box(a), Box({"x": b})],
        {"listed": Listed(a, b), "q": c, "ns": types.SimpleNamespace(u=c, v=None)},
        grads,  # a gradient as fl.withgradient gives it: the model's skeleton, Nones
        # keys the compiled walker and builder cannot write as names or literals
        {("t", 1): a, 3: [None, c], "not a name": {"x": b}, True: Listed(c, None)},
    ]


@pytest.mark.parametrize("index", range(6))
def test_the_walker_reads_the_positions_of_flatten(index):
    tree = trees()[index]
    leaves, spec = layout.positions(tree)
    got = layout.walker(spec)(tree)
    assert len(got) == len(leaves) and all(x is y for x, y in zip(got, leaves))
    other = trees()[index]  # new arrays, same structure
    assert all(x is y for x, y in zip(layout.walker(spec)(other), layout.positions(other)[0]))


@pytest.mark.parametrize("index, change", [
    (0, lambda t: t.update(extra=None)),                     # a key more
    (0, lambda t: t.update(b={"x": np.ones(1)})),            # a position became a subtree
    (0, lambda t: t["deep"].append(None)),                   # a longer list
    (1, lambda t: t[1].__class__),                           # no change: the control
    (2, lambda t: setattr(t[0], "tag", np.ones(1))),         # a static became an array
    (3, lambda t: setattr(t["listed"], "b", None)),          # __tree_fields__ lists fewer
    (4, lambda t: setattr(t.layers[0], "extra", None)),      # an object with one more field
    (4, lambda t: setattr(t, "layers", list(t.layers))),     # a tuple became a list
    (5, lambda t: t.update({("t", 2): t.pop(("t", 1))})),    # a key changed
])
def test_the_walker_notices_a_change_of_structure(index, change):
    tree = trees()[index]
    gather = layout.walker(layout.positions(tree)[1])
    changed = trees()[index]
    if change(changed) is not None:  # the control: nothing changed
        assert len(gather(changed)) == len(layout.positions(tree)[0])
        return
    try:  # either the walker raises, or a position holds what no position may (a subtree)
        assert not all(map(layout.is_position, gather(changed)))
    except layout.Changed:
        pass


@pytest.mark.parametrize("index", range(6))
def test_the_builder_gives_what_unflatten_gives(index):
    tree = trees()[index]
    leaves, spec = layout.positions(tree)
    planned = {p for p, x in enumerate(leaves) if layout.is_grad(x)}
    values = [np.full(1, p + 0.5) if p in planned else x for p, x in enumerate(leaves)]
    build = layout.builder(spec, planned)
    expected = unflatten(spec, values)
    got = unflatten(spec, values) if build is None else build(tree, values)
    assert repr(layout.positions(got)[0]) == repr(layout.positions(expected)[0])
    assert layout.paths(layout.positions(got)[1]) == layout.paths(spec)
    assert layout.positions(tree)[0][0] is leaves[0]  # the input tree is left as it was


def test_the_builder_shares_subtrees_without_a_gradient():
    tree = {"a": np.ones(1), "frozen": {"x": None, "y": [None]}}
    leaves, spec = layout.positions(tree)
    out = layout.builder(spec, {0})(tree, [np.zeros(1), None, None])
    assert out["a"] == 0 and out["frozen"] is tree["frozen"] and out is not tree


@pytest.mark.parametrize("x, want", [
    (np.zeros((2, 3)), "ok"), (None, "zero"), (np.zeros((2, 3), np.int64), "zero"),
    (np.zeros((3, 2)), "misfit"), (np.zeros((2, 3), np.float32), "misfit"), ({"a": 1}, "misfit"),
])
def test_fit_judges_each_position_against_the_plan(x, want):
    assert layout.fit(x, (2, 3), np.dtype(np.float64)) == want


def test_fit_sends_a_python_number_as_its_value():
    # a Python float or complex is a gradient of shape (): "ok", never zeros (the messages
    # posted during the backward pass once sent it as zeros while the others sent its value)
    f8, c16 = np.dtype(np.float64), np.dtype(np.complex128)
    assert layout.fit(2.0, (), f8) == "ok" and layout.fit(1j, (), c16) == "ok"
    assert layout.fit(2.0, (1,), f8) == "misfit" and layout.fit(2.0, (), c16) == "misfit"
    assert layout.fit(3, (), f8) == "zero"  # an int: no gradient


def test_the_builder_makes_new_objects_of_the_same_class_with_the_same_fields():
    # an object node is copied into a new object's own __dict__ (a SimpleNamespace made as
    # blank makes it): the class, every field, the gradients in place, the input untouched
    tree = {"ns": types.SimpleNamespace(u=np.ones(2), v=None, w=3), "box": Plain(np.ones(1))}
    leaves, spec = layout.positions(tree)
    planned = {p for p, x in enumerate(leaves) if layout.is_grad(x)}
    values = [np.full(1, 7.0) if p in planned else x for p, x in enumerate(leaves)]
    out = layout.builder(spec, planned)(tree, values)
    assert type(out["ns"]) is types.SimpleNamespace and out["ns"] is not tree["ns"]
    assert vars(out["ns"]).keys() == vars(tree["ns"]).keys()
    assert out["ns"].u[0] == 7.0 and out["ns"].v is None and out["ns"].w == 3
    assert type(out["box"]) is Plain and out["box"] is not tree["box"]
    assert tree["ns"].u[0] == 1.0 and out["box"].w[0] == 7.0 and tree["box"].w[0] == 1.0
