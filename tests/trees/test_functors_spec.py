"""Functors.jl's test suite (test/basics.jl, base.jl, cache.jl, flexiblefunctors.jl) as a
specification of fluxml's trees: each test names the file and testset it translates.

Julia structs are plain Python classes; ``@functor T (y,)`` (a subset of children) is a
class's ``__tree_fields__``; NamedTuples are dicts or namedtuples; ``fmap(f, x; exclude)``
is ``fl.fmap(f, x, is_leaf=...)``; ``fleaves`` is ``fl.leaves``; ``fcollect`` and
``fmap_with_path`` are ``fl.tree``'s. Where fluxml's convention differs (strings and
functions are static, not leaves; a tied array paired with other leaves of a second tree is
mapped at each place) the test says so and asserts fluxml's documented behaviour.
"""

from __future__ import annotations

import collections
import dataclasses
from fractions import Fraction

import numpy as np
import pytest

import fluxml as fl


class Foo:
    def __init__(self, x, y):
        self.x, self.y = x, y


class Bar:
    def __init__(self, x):
        self.x = x


NT = collections.namedtuple("NT", "x y")


def test_old_update_jl_fmap_of_model_and_gradient():
    """basics.jl "old test update.jl": fmap(m, m̄) do x, y; x .- 0.1 .* y end."""
    class M(fl.Module):
        def __init__(self):
            self.act = fl.identity
            self.W = np.ones((3, 4), np.float32)
            self.b = np.zeros(3, np.float32)

        def __call__(self, x):
            return self.act(x @ self.W.T + self.b)

    m = M()
    x = np.ones((2, 4), np.float32)
    g = fl.gradient(lambda m: np.sum(m(x)), m)[0]
    assert g.act is None  # a static part: None in the gradient, kept by fmap
    new = fl.fmap(lambda p, d: p - np.float32(0.1) * d, m, g)
    np.testing.assert_allclose(new.W, np.full((3, 4), 0.8, np.float32), rtol=1e-6)
    np.testing.assert_allclose(new.b, np.full(3, -0.2, np.float32), rtol=1e-6)
    assert new.act is fl.identity


def test_old_update_jl_with_a_tied_layer_keeps_it_tied():
    """basics.jl "old test update.jl" on a model using one layer twice (Functors' cache keys
    on the first tree, so the updated model is tied as the model is). fl.gradient gives the
    total gradient at each place, in a copy of its own: fmap paired the tied weight with two
    distinct (equal) arrays and mapped it twice, so the updated model held two layers with
    two weights, silently untied (a later step moved them apart)."""
    layer = fl.Dense(2, 2)
    m = fl.Chain(layer, np.tanh, layer)
    x = np.array([[0.5, -1.0], [2.0, 0.25]], np.float32)
    g = fl.gradient(lambda m: np.sum(m(x) ** 2), m)[0]
    assert g[0].weight is not g[2].weight  # (each place its own copy of the total)
    new = fl.fmap(lambda p, d: p - np.float32(0.1) * d, m, g)
    assert new[0] is new[2] and new[0] is not layer
    assert new[0].weight is new[2].weight
    np.testing.assert_allclose(new[0].weight, layer.weight - np.float32(0.1) * g[0].weight)
    # the step is the total gradient's: against central differences in float64
    w = layer.weight.astype(np.float64)

    def loss(w):
        h = np.tanh(x @ w.T + layer.bias)
        return np.sum((h @ w.T + layer.bias) ** 2)

    eps, num = 1e-6, np.zeros_like(w)
    for i in np.ndindex(w.shape):
        e = np.zeros_like(w)
        e[i] = eps
        num[i] = (loss(w + e) - loss(w - e)) / (2 * eps)
    np.testing.assert_allclose(g[0].weight, num, rtol=1e-3, atol=1e-4)


def test_fmap_x_y_cache_and_tied_objects():
    """basics.jl "fmap(f, x, y)": "The cache uses IDs from the first argument". fluxml keys
    on the first tree's leaf and the values of rest's leaves at each place: where they are
    one value the tie stays, where they differ each place is mapped with its own (Functors
    gives the first place's result at both: x + x at z, where fluxml gives x + [7, 8, 9])."""
    shared = np.array([1, 2, 3])
    m3 = {"x": shared, "y": np.array([4, 5, 6]), "z": shared}
    n3 = {"x": shared, "y": shared, "z": np.array([7, 8, 9])}
    z3 = fl.fmap(lambda a, b: a + b, m3, n3)
    assert [z3[k].tolist() for k in "xyz"] == [[2, 4, 6], [5, 7, 9], [8, 10, 12]]
    assert z3["x"] is not z3["z"]
    # equal (distinct) leaves of rest at the tied places: mapped once, the tie kept
    n4 = {"x": np.array([1, 2, 3]), "y": shared, "z": np.array([1, 2, 3])}
    calls = []
    z4 = fl.fmap(lambda a, b: calls.append(1) or a + b, m3, n4)
    assert z4["x"] is z4["z"] and z4["x"].tolist() == [2, 4, 6] and len(calls) == 2
    # more than two trees: z4 of Functors is fmap(x -> 2x, z3)
    z5 = fl.fmap(lambda *a: sum(a), m3, n4, m3, n4)
    assert z5["x"] is z5["z"] and z5["x"].tolist() == [4, 8, 12]
    assert z5["y"].tolist() == [10, 14, 18]
    # equal values of another dtype are another value: mapped at each place
    n5 = {"x": np.array([1, 2, 3]), "y": shared, "z": np.array([1.0, 2.0, 3.0])}
    z6 = fl.fmap(lambda a, b: a + b, m3, n5)
    assert z6["x"] is not z6["z"] and z6["z"].dtype == np.float64


def test_fmap_x_y_shared_object_and_list_rebuilt_once():
    """basics.jl "Sharing" (m5: a shared mutable container stays shared) with a second tree:
    a layer or list at two places was rebuilt at each (shared=None), even with the same
    leaves; now once, and at each place only where rest's leaves differ there."""
    d = fl.Dense(2, 2)
    zero = fl.fmap(np.zeros_like, fl.Chain(d, d))
    assert zero[0] is zero[1]
    new = fl.fmap(lambda p, z: p + z, fl.Chain(d, d), zero)
    assert new[0] is new[1] and new[0] is not d
    np.testing.assert_array_equal(new[0].weight, d.weight)
    ref = [1.0]
    m5 = {"x": ref, "y": ref, "z": [1.0]}
    f5 = fl.fmap(lambda a, b: a / 2 + b, m5, m5)
    assert f5["x"] is f5["y"] and f5["x"] is not f5["z"] and f5 == {k: [1.5] for k in "xyz"}
    # a nested layer: the outer blocks differ at their places, the inner one does not
    inner = fl.Dense(2, 2)
    block = fl.Chain(inner, fl.Scale(2))
    m = fl.Chain(block, block)
    other = fl.fmap(np.zeros_like, m)
    other = fl.Chain(other[0], fl.Chain(other[0][0], fl.fmap(np.ones_like, other[0][1])))
    out = fl.fmap(lambda p, o: p + o, m, other)
    assert out[0] is not out[1]
    assert out[0][0] is out[1][0]  # the inner layer: the same leaves at both places
    np.testing.assert_array_equal(out[1][1].scale, block[1].scale + 1)
    np.testing.assert_array_equal(out[0][1].scale, block[1].scale)


def test_restructure_keeps_a_layer_used_twice_one_layer():
    """Optimisers.jl's restructure is an fmap with Functors' cache; a model using one layer
    twice came back from re(flat) with two layers (one weight, but re(flat)[0].weight = w
    reached one place only)."""
    layer = fl.Dense(2, 3)
    m = fl.Chain(layer, fl.Dense(3, 2), layer)
    flat, re = fl.destructure(m)
    assert flat.size == 9 + 8  # the tied layer once
    new = re(2 * flat)
    assert new[0] is new[2] and new[0] is not layer
    np.testing.assert_array_equal(new[0].weight, 2 * layer.weight)
    np.testing.assert_array_equal(new[1].bias, 2 * m[1].bias)


def test_stop_gradient_keeps_ties():
    """basics.jl "Sharing" (a shared array is one array in the result) through
    fl.stop_gradient (Flux's ignore_derivatives gives x itself): a tied weight came back as
    two copies and a layer used twice as two layers, so a write into one place of the
    stopped model missed the other, eagerly and under a gradient alike."""
    layer = fl.Dense(2, 2)
    w = np.ones(3)
    tree = {"a": w, "b": [w], "m": fl.Chain(layer, layer)}
    stopped = fl.stop_gradient(tree)
    assert stopped["a"] is stopped["b"][0] and stopped["a"] is not w
    assert stopped["m"][0] is stopped["m"][1] and stopped["m"][0] is not layer
    stopped["a"][0] = 5.0
    assert stopped["b"][0][0] == 5.0 and w[0] == 1.0

    def loss(t):
        s = fl.stop_gradient(t)
        s["a"] *= 2.0  # written once, seen at both places, as in t
        return np.sum(t["a"] * s["b"][0])

    g = fl.gradient(loss, {"a": w, "b": [w]})[0]
    np.testing.assert_array_equal(g["a"], 2 * w)  # d/da sum(a * stop(2a)) = 2a
    np.testing.assert_array_equal(g["b"][0], 2 * w)  # tied: the total at each place


def _float(x):
    """Julia's float: arrays and numbers to floating point."""
    return x.astype(np.float64) if isinstance(x, np.ndarray) else float(x)


class OneChild3:
    """@functor OneChild3 (y,): only y is a child."""

    def __init__(self, x, y, z):
        self.x, self.y, self.z = x, y, z

    def __tree_fields__(self):
        return ("y",)


class WrongOrder(OneChild3):
    """@functor WrongOrder (z, x)."""

    def __tree_fields__(self):
        return ("z", "x")


class NoChild2(OneChild3):
    """@functor NoChild2 (): no children."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __tree_fields__(self):
        return ()


def test_nochild_is_not_a_leaf():
    """basics.jl "NoChild is not a leaf"."""
    no_children, has_children = NoChild2(np.ones(1), 2.0), Foo(1.0, 2.0)
    assert not fl.tree.is_leaf(no_children) and not fl.tree.is_leaf(has_children)
    assert fl.leaves(no_children) == [] and fl.leaves(has_children) == [1.0, 2.0]
    assert fl.fcollect(no_children) == [no_children]  # a node, with no children
    assert fl.fmap(lambda v: 2 * v, no_children).y == 2.0  # kept, not mapped


def test_nested():
    """basics.jl "Nested"."""
    model = Bar(Foo(1, np.array([1, 2, 3])))
    new = fl.fmap(_float, model)
    assert type(new) is Bar and type(new.x) is Foo
    assert new.x.y.dtype == np.float64 and new.x.y.tolist() == [1.0, 2.0, 3.0]
    assert type(new.x.x) is float and new.x.x == 1.0
    assert model.x.y.dtype.kind == "i"  # the original untouched


def test_exclude():
    """basics.jl "Exclude": fmap(f, x; exclude) is fl.fmap(f, x, is_leaf=...). Convention:
    Julia's Chars and strings are leaves, fluxml's strings static (kept, never mapped) unless
    is_leaf takes them."""
    x = ["a", "b", "c"]
    assert fl.fmap(lambda c: "z", x) == x  # static: f is not called
    assert fl.fmap(lambda c: "z", x, is_leaf=lambda v: isinstance(v, str)) == ["z"] * 3
    assert fl.fmap(lambda v: v, x, is_leaf=lambda v: isinstance(v, list)) == x
    pair = (["a", "b", "c"], ["d", "e", "f"])
    assert fl.fmap(lambda c: "z", pair, is_leaf=lambda v: isinstance(v, str)) == \
        (["z"] * 3, ["z"] * 3)
    assert fl.fmap(len, pair, is_leaf=lambda v: isinstance(v, list)) == (3, 3)


def test_property_list():
    """basics.jl "Property list": a class's ``__tree_fields__`` is @functor's subset."""
    m = fl.fmap(lambda v: 2 * v, OneChild3(1, 2, 3))
    assert (m.x, m.y, m.z) == (1, 4, 3)
    m = fl.fmap(lambda v: 2 * v, WrongOrder(1, 2, 3))
    assert (m.x, m.y, m.z) == (2, 2, 6)
    assert fl.leaves(WrongOrder(1, 2, 3)) == [3, 1]  # in the listed order
    g = fl.fmap(lambda a, b: a - b, WrongOrder(10, 20, 30), WrongOrder(1, 2, 3))
    assert (g.x, g.y, g.z) == (9, 20, 27)  # each paired with its own field


def test_sharing():
    """basics.jl "Sharing": an array at two places is mapped once; equal distinct arrays and
    numbers are not merged; a shared object stays one object, a shared list one list."""
    shared = np.array([1, 2, 3])
    m1 = Foo(shared, Foo(np.array([1, 2, 3]), Foo(shared, np.array([1, 2, 3]))))
    calls = []
    m1f = fl.fmap(lambda a: calls.append(a) or _float(a), m1)
    assert m1f.x is m1f.y.y.x and m1f.x is not m1f.y.x
    assert len(calls) == 3 and m1f.y.y.y.tolist() == [1.0, 2.0, 3.0]
    inner = Foo(shared, 4)  # Julia's m2.x === m2.y: one object at two places here
    m2f = fl.fmap(_float, Foo(inner, inner))
    assert m2f.x is m2f.y and m2f.x.y == 4.0
    m2f = fl.fmap(_float, Foo(Foo(shared, 4), Foo(shared, 4)))  # two equal objects
    assert m2f.x is not m2f.y and m2f.x.x is m2f.y.x
    numbers = []
    fl.fmap(lambda v: numbers.append(v) or v, Foo(Foo(shared, 1.5), Foo(1.5, shared)))
    assert len(numbers) == 3 and sum(v is shared for v in numbers) == 1  # 1.5 twice
    ref = [1.0]
    m5 = {"x": ref, "y": ref, "z": [1.0]}
    m5f = fl.fmap(lambda v: v / 2, m5)
    assert m5f["x"] is m5f["y"] and m5f["x"] is not m5f["z"] and m5f["z"] == [0.5]


def test_a_cycle_is_refused_by_name():
    """basics.jl "Self-referencing types": Julia's are values; a Python object or list that
    holds itself is refused with a message naming it (not a RecursionError)."""
    loop = Foo(1.0, None)
    loop.y = [loop]
    with pytest.raises(ValueError, match="cycle through a Foo object"):
        fl.fmap(lambda v: v, loop)
    items = [1.0]
    items.append(items)
    with pytest.raises(ValueError, match="cycle through a list .* met again at 1"):
        fl.leaves(items)
    assert fl.fcollect(items) == [items, 1.0]  # fcollect lists each list once


def test_anonymous_functions_are_static():
    """basics.jl "anonymous functions": Functors walks a closure's captured W and b. Here a
    function is static, the arrays it closes over too: fmap and fl.f32 leave them as they
    are (documented in fmap's docstring; make them a Module's fields to convert them)."""
    w = np.ones((2, 2))

    def model(x):
        return np.tanh(w @ x)

    assert fl.fmap(np.zeros_like, [model])[0] is model
    assert fl.f32({"f": model, "w": w})["f"].__closure__[0].cell_contents.dtype == np.float64


def test_fcollect():
    """basics.jl "fcollect": parents before children, a shared part once."""
    m1 = np.array([1, 2, 3])
    m3 = Foo(m1, 1)
    m4 = Bar(m3)
    assert _same(fl.fcollect(m4), [m4, m3, m1, 1])
    assert _same(fl.fcollect(m4, exclude=lambda x: isinstance(x, np.ndarray)), [m4, m3, 1])
    assert _same(fl.fcollect(m4, exclude=lambda x: isinstance(x, Foo)), [m4])
    m2 = Bar(m1)
    m0 = NoChild2("a", "b")
    m3 = Foo(m2, m0)
    m4 = Bar(m3)
    assert _same(fl.fcollect(m4), [m4, m3, m2, m1, m0])
    m2 = np.array([1, 2, 3])  # equal, distinct: both listed
    foo = Foo(m1, m2)
    assert _same(fl.fcollect(foo), [foo, m1, m2])
    m3 = Foo(m1, m1)  # one array twice: once
    assert _same(fl.fcollect(m3), [m3, m1])
    d = fl.Dense(2, 3)
    parts = fl.fcollect(fl.Chain(d, np.tanh, d))
    assert [type(p).__name__ for p in parts] == ["Chain", "tuple", "Dense", "ndarray",
                                                 "ndarray"]
    assert sum(p is d for p in parts) == 1


def _same(got, want) -> bool:
    """Julia's all(got .=== want): the same objects (numbers equal) in the same order."""
    return len(got) == len(want) and all(
        g is w or isinstance(w, (int, float)) and type(g) is type(w) and g == w
        for g, w in zip(got, want))


def test_fmap_x_y():
    """basics.jl "fmap(f, x, y)": several trees; the result has the first tree's types.
    Convention: fluxml pairs the trees' leaves by their paths, so a dict or Foo with a
    namedtuple (paths 0, 1 against x, y) is refused by name, where Functors pairs them by
    field names."""
    m1 = {"x": np.array([1, 2]), "y": 3}
    n1 = {"x": np.array([4, 5]), "y": 6}
    r = fl.fmap(lambda a, b: a + b, m1, n1)
    assert r["x"].tolist() == [5, 7] and r["y"] == 9
    foo1 = Foo(np.array([7, 8]), 9)
    r = fl.fmap(lambda a, b: a + b, foo1, Foo(np.array([4, 5]), 6))
    assert type(r) is Foo and r.x.tolist() == [11, 13] and r.y == 15
    r = fl.fmap(lambda a, b: a + b, NT(np.array([1, 2]), 3), NT(np.array([7, 8]), 9))
    assert type(r) is NT and r.x.tolist() == [8, 10] and r.y == 12
    with pytest.raises(ValueError, match="first tree has a leaf at 'x' where a tree of rest "
                                         "has one at '0'"):
        fl.fmap(lambda a, b: a + b, foo1, NT(np.array([1, 2]), 3))
    m2 = {"x": np.array([1, 2]), "y": {"a": np.array([3, 4]), "b": 5}}
    n2 = {"x": np.array([6, 7]), "y": 8}
    with pytest.raises(ValueError, match=r"fmap: trees differ: 3 leaves against 2"):
        fl.fmap(lambda a, b: a, m2, n2)
    r = fl.fmap(lambda a, b, c: a * b * c, Foo(np.array([1, 2]), 3), foo1,
                Foo(np.array([4, 5]), 6))
    assert type(r) is Foo and r.x.tolist() == [4 * 7, 2 * 5 * 8] and r.y == 3 * 6 * 9


def test_parametric_types_and_dataclasses():
    """basics.jl "parametric types": A(1) halved is A(0.5); a frozen dataclass too."""
    @dataclasses.dataclass(frozen=True)
    class A:
        x: object

    assert fl.fmap(lambda v: v / 2, A(1)) == A(0.5)
    assert fl.fmap(lambda v: v / 2, Bar(1)).x == 0.5


def test_dict():
    """basics.jl "Dict". Convention: a dict of a second tree with keys the first lacks is
    refused by name (Functors ignores the extra keys)."""
    assert fl.fmap(lambda v: v + 1, {"a": 1, "b": 2}) == {"a": 2, "b": 3}
    d = {"a": 1, "b": {"a": 5, "b": 6, "c": 7}}
    assert fl.fmap(lambda v: v + 1, d) == {"a": 2, "b": {"a": 6, "b": 7, "c": 8}}
    r = fl.fmap(lambda a, b: a + b, {"x": np.array([1, 2]), "y": 3},
                {"y": 6, "x": np.array([4, 5])})  # paired by key, not by order
    assert r["x"].tolist() == [5, 7] and r["y"] == 9
    m1 = {"x": np.array([1, 2]), "y": {"a": 3, "b": 4}}
    n1 = {"x": np.array([4, 5]), "y": {"a": 0.1, "b": 0.2, "c": 5}, "z": {"a": 5}}
    with pytest.raises(ValueError, match=r"fmap: a tree of rest has a dict with keys "
                                         r"\['x', 'y', 'z'\] where one with keys \['x', 'y'\]"):
        fl.fmap(lambda a, b: a + b, m1, n1)


def test_leaf():
    """basics.jl "@leaf": a type taken as a leaf by is_leaf is given to f whole, and rebuilt
    as it is by the identity."""
    class B:
        def __init__(self, x):
            self.x = x

    b = B(np.ones(2))
    tree = [b, np.zeros(1)]
    as_leaf = fl.fmap(lambda v: v, tree, is_leaf=lambda v: isinstance(v, (B, np.ndarray)))
    assert as_leaf[0] is b and as_leaf[1] is tree[1]
    assert fl.leaves(tree, is_leaf=lambda v: isinstance(v, (B, np.ndarray)))[0] is b
    assert fl.fmap(lambda v: v, tree)[0] is not b  # a node by default: rebuilt


def test_fleaves():
    """basics.jl "fleaves" is fl.leaves."""
    x = (1, (2, 3), {"a": 4, "b": (5, 6), "c": 7})
    assert fl.leaves(x) == [1, 2, 3, 4, 5, 6, 7]
    assert fl.leaves(x, is_leaf=lambda v: fl.tree.is_leaf(v) or isinstance(v, dict)) == \
        [1, 2, 3, {"a": 4, "b": (5, 6), "c": 7}]
    x = {"a": Foo(1, 2), "b": Bar(np.array([1, 2, 3]))}
    got = fl.leaves(x)
    assert got[:2] == [1, 2] and got[2].tolist() == [1, 2, 3]  # (a dict keeps its order)
    assert fl.leaves(()) == [] and fl.leaves({"a": 1, "b": 2, "c": {}}) == [1, 2]


def test_fmap_with_path():
    """basics.jl "fmap_with_path": f gets the dotted path; a shared array is mapped once.
    (Functors' exclude takes the path too; fluxml's is_leaf takes the value alone.)"""
    m = Bar(Foo({"a": 1, "b": NT(2, 20)}, [3, 4, (5, 6)]))
    seen = {}
    res = fl.fmap_with_path(lambda kp, x: seen.setdefault(kp, x) ** 2, m)
    assert res.x.x == {"a": 1, "b": NT(4, 400)} and res.x.y == [9, 16, (25, 36)]
    assert seen == {"x.x.a": 1, "x.x.b.0": 2, "x.x.b.1": 20, "x.y.0": 3, "x.y.1": 4,
                    "x.y.2.0": 5, "x.y.2.1": 6}
    shared = np.array([1, 2, 3])
    m1 = Foo(shared, Foo(np.array([1, 2, 3]), Foo(shared, np.array([1, 2, 3]))))
    paths = []
    m1f = fl.fmap_with_path(lambda kp, x: paths.append(kp) or _float(x), m1)
    assert m1f.x is m1f.y.y.x and m1f.x is not m1f.y.x
    assert paths == ["x", "y.x", "y.y.y"]  # the shared array at its first path only
    ref = [1.0]
    m5f = fl.fmap_with_path(lambda kp, x: x / 2, {"x": ref, "y": ref, "z": [1.0]})
    assert m5f["x"] is m5f["y"] and m5f["x"] is not m5f["z"]
    # several trees
    m1 = {"x": np.array([1, 2]), "y": 3}
    r = fl.fmap_with_path(lambda kp, a, b: (kp, a + b), m1, {"x": np.array([4, 5]), "y": 6})
    assert r["x"][0] == "x" and r["x"][1].tolist() == [5, 7] and r["y"] == ("y", 9)
    shared = np.array([1, 2, 3])
    m3 = {"x": shared, "y": np.array([4, 5, 6]), "z": shared}
    z4 = fl.fmap_with_path(lambda kp, *xs: sum(xs), m3, m3, m3)
    assert z4["x"] is z4["z"] and z4["x"].tolist() == [3, 6, 9]


def test_numbers_are_leaves():
    """base.jl "Numbers are leaves". Convention: Python's numbers and NumPy's; a Fraction
    (Julia's Rational) is static, kept as it is (pass is_leaf to map it)."""
    assert all(fl.tree.is_leaf(v) for v in (1, 1.0, 1j, 1.0 + 2.0j, np.float32(1)))
    assert not fl.tree.is_leaf(True)  # a flag, not a parameter
    tree = {"r": Fraction(1, 2), "c": 1.0 + 2.0j}
    assert fl.fmap(lambda v: 2 * v, tree) == {"r": Fraction(1, 2), "c": 2.0 + 4.0j}
    assert fl.fmap(lambda v: 2 * v, tree, is_leaf=lambda v: isinstance(v, (Fraction, complex)))[
        "r"] == Fraction(1)


def test_ref_relations_kept():
    """base.jl "RefValue" (a list holds the place of a Ref): a new container, the relation
    between places kept, no new one made."""
    x = [13]
    x2 = {"a": x, "b": [7, x, None], "c": (7, None, [13])}
    y2 = fl.fmap(lambda v: v, x2)
    assert y2["a"] is not x and y2["a"] is y2["b"][1] and y2["a"] is not y2["c"][2]
    assert y2 == x2


def test_views_are_leaves_of_their_own():
    """base.jl "LinearAlgebra containers": Functors walks v' to its parent v, so a tie
    through a transpose is kept and f is called twice for (v, v', transpose(v), w'). A NumPy
    view (v.T) is an array of its own: a leaf mapped on its own, as fl.gradient sees it."""
    v = np.array([[1, 2, 3]])
    calls = []
    nt = fl.fmap(lambda a: calls.append(1) or 10 * a, {"a": v, "b": v.T, "c": v})
    assert len(calls) == 2 and nt["a"] is nt["c"]
    assert nt["b"].tolist() == [[10], [20], [30]] and nt["b"].base is not nt["a"]


def test_abstract_dict_and_types():
    """base.jl "AbstractDict is functor" and "Types are leaves" (static here: kept)."""
    od = collections.OrderedDict([(1, 1), (2, 2)])
    od2 = fl.fmap(lambda v: 2 * v, od)
    assert type(od2) is collections.OrderedDict and od2 == {1: 2, 2: 4}
    dd = collections.defaultdict(list, {"a": 1.0})
    dd2 = fl.fmap(lambda v: 2 * v, dd)
    assert type(dd2) is collections.defaultdict and dd2.default_factory is list
    assert dd2["a"] == 2.0
    t = (1, int, list, np.ndarray, 5)
    assert fl.fmap(lambda v: v, t) == t


def test_cache_inferred():
    """cache.jl "inferred": a shared array deep in tuples and dicts is mapped once."""
    r = np.array([1, 2])
    y = fl.fmap(_float, {"a": r, "b": 3, "c": (4, {"d": 5, "e": r})})
    assert y["a"] is y["c"][1]["e"] and y["a"].dtype == np.float64 and y["b"] == 3.0


class _Flexible:
    """FlexibleFunctors.jl's @flexiblefunctor: the instance's ``p`` lists its children."""

    def __init__(self, *values, p):
        for name, v in zip("xyz", values):
            setattr(self, name, v)
        self.p = p

    def __tree_fields__(self):
        return self.p


def test_flexible_functors():
    """flexiblefunctors.jl "Flexible Nested", "Flexible Property list", "Flexible fcollect":
    ``__tree_fields__`` may read the instance."""
    model = _Flexible(_Flexible(1, np.array([1, 2, 3]), p=("y",)), p=("x",))
    new = fl.fmap(_float, model)
    assert new.x.y.dtype == np.float64 and new.x.y.tolist() == [1, 2, 3] and new.x.x == 1
    m = fl.fmap(lambda v: 2 * v, _Flexible(1, 2, 3, p=("x", "z")))
    assert (m.x, m.y, m.z) == (2, 2, 6)
    m2 = np.array([1, 2, 3])
    m3 = _Flexible(1, m2, p=("y",))
    m4 = _Flexible(m3, p=("x",))
    assert _same(fl.fcollect(m4), [m4, m3, m2])
    assert _same(fl.fcollect(m4, exclude=lambda x: isinstance(x, np.ndarray)), [m4, m3])
    assert _same(fl.fcollect(m4, exclude=lambda x: x is m3), [m4])


def test_paths_that_read_the_same_are_refused_by_trainable():
    """keypath.jl: a KeyPath is a tuple of keys, so (:a, :b) and ("a.b",) differ. fluxml's
    paths are dotted strings: fl.trainable gave one dict entry for two arrays whose paths
    read the same, silently dropping one; now it refuses by name (fl.state nests its
    entries, and refuses keys 1 and '1')."""
    for tree in ({"a.b": np.ones(1), "a": {"b": np.zeros(1)}}, {1: np.ones(1), "1": np.zeros(1)}):
        paths = [p for p, _ in fl.tree.leaves_with_paths(tree)]
        assert len(paths) == 2 and paths[0] == paths[1]
        with pytest.raises(ValueError, match="fl.trainable: two arrays of the model are both "
                                             "at the path '(a.b|1)'"):
            fl.trainable(tree)
    w = np.ones(2)
    assert list(fl.trainable({"x": w, "y": [w]})) == ["x", "y.0"]  # a tie: two paths


def test_modules_of_a_list_holding_itself():
    """basics.jl "Self-referencing types": fl.modules walked a list that holds itself for
    ever (flatten refuses one by name); now each list once, as fcollect."""
    d = fl.Dense(1, 1)
    items = [d]
    items.append(items)
    assert fl.modules(items) == [d]
    assert fl.modules({"a": [d, d], "b": (d,)}) == [d]


def test_old_update_jl_with_none_in_the_gradient():
    """basics.jl "old test update.jl": fmap(m, m̄) do x, y; isnothing(y) && return x ... end.
    A gradient holds None for the fields that carry none (BatchNorm's running statistics and
    eps, even with zeros_for_none); fmap refused the pair, so the Flux idiom failed for any
    model with a normalisation layer. Now f gets None there, as Functors' f(x, nothing)."""
    m = fl.Chain(fl.Dense(2, 3), fl.BatchNorm(3))
    x = np.array([[0.5, -1.0], [2.0, 0.25], [-1.5, 1.0], [0.0, 3.0]], np.float32)
    g = fl.gradient(lambda m: np.sum(m(x) ** 2 * np.arange(3)), m)[0]
    assert g[1].running_mean is None and g[1].eps is None
    seen = []

    def step(p, d):
        seen.append(d is None)
        return p if d is None else p - np.float32(0.1) * d

    new = fl.fmap(step, m, g)
    assert seen == [False] * 4 + [True] * 5  # running_mean, running_var, eps, momentum, channels
    np.testing.assert_array_equal(new[0].weight, m[0].weight - np.float32(0.1) * g[0].weight)
    np.testing.assert_array_equal(new[1].bias, m[1].bias - np.float32(0.1) * g[1].bias)
    assert new[1].running_mean is m[1].running_mean and new[1].eps == m[1].eps
    # None for a whole part: None at each of its leaves
    out = fl.fmap(lambda a, b: (a, b), {"p": {"w": 1.0, "v": [2.0]}, "q": 3.0},
                  {"p": None, "q": 4.0})
    assert out == {"p": {"w": (1.0, None), "v": [(2.0, None)]}, "q": (3.0, 4.0)}
    # a leaf of rest where the first tree has None is still refused by name
    with pytest.raises(ValueError, match="the first tree has a leaf at 'a' where a tree of "
                                         "rest has one at 'b'"):
        fl.fmap(lambda a, b: a, {"a": 1.0, "b": None}, {"a": None, "b": 2.0})
    with pytest.raises(ValueError, match="trees differ: 2 leaves against 1"):
        fl.fmap(lambda a, b: a, {"a": 1.0, "b": [2.0]}, {"a": None, "b": {"c": 1.0}})


class _Params(dict):
    """A user's dict of parameters with attributes of its own (base.jl "AbstractDict is
    functor": an OrderedDict comes back an OrderedDict)."""


class _Layers(list):
    pass


class _Pair(NT):  # a namedtuple subclass without __slots__: it has attributes
    pass


def test_container_subclasses_keep_their_attributes():
    """base.jl "AbstractDict is functor" (the container's type and what it holds kept): a
    subclass of dict, list or namedtuple lost its instance attributes when rebuilt, so
    fl.f32 and fmap dropped them silently. The traced copy fl.gradient passes to the
    function still has none: a write to one there would not be written back (the
    write-back reads a container's items), so reading one fails loudly instead."""
    p = _Params(w=np.ones(2, np.float32))
    p.scale = 3.0
    layers = _Layers([np.ones(1)])
    layers.name = "enc"
    pair = _Pair(np.ones(1), 2.0)
    pair.note = "kept"
    tree = {"p": p, "l": layers, "t": pair}
    out = fl.f64(tree)
    assert type(out["p"]) is _Params and out["p"].scale == 3.0
    assert out["p"]["w"].dtype == np.float64
    assert type(out["l"]) is _Layers and out["l"].name == "enc"
    assert type(out["t"]) is _Pair and out["t"].note == "kept" and out["t"].y == 2.0
    assert fl.fmap(lambda a, b: a + b, tree, tree)["l"].name == "enc"

    def loss(tree):
        return np.sum(tree["p"]["w"] * np.array([1.0, 2.0], np.float32)) * 3

    g = fl.gradient(loss, tree)[0]
    np.testing.assert_array_equal(g["p"]["w"], np.array([3.0, 6.0], np.float32))
    assert type(g["p"]) is _Params and g["p"].scale is None  # static: None in a gradient
    assert g["l"].name is None
    with pytest.raises(AttributeError, match="scale"):  # (not silently lost when written)
        fl.gradient(lambda t: loss(t) * t["p"].scale, tree)


def test_a_container_attribute_holding_a_layer_is_refused():
    # (review) kept as a static part, self.layers.head = d stayed the old layer beside the
    # converted items: one layer at two places split in two, float64 beside float32, silently
    class Layers(list):
        pass

    dense = fl.f64(fl.Dense(2, 2))
    layers = Layers([dense, fl.f64(fl.Dense(2, 2))])
    layers.head = dense
    with pytest.raises(TypeError, match="Layers .* holds arrays in its attribute 'head'"):
        fl.f32(layers)
    plain = Layers([np.ones(2)])
    plain.name = "encoder"  # a static attribute is kept
    assert fl.f32(plain).name == "encoder"


def test_a_tie_is_not_taken_across_zeros_of_other_signs():
    # (review) 0.0 == -0.0, so two places of a tied array whose second-tree leaves were 0.0
    # and -0.0 were taken as one value: p / g gave inf at both, silently
    a = np.ones(2)
    with np.errstate(divide="ignore"):
        for zero, minus in ((np.zeros(2), -np.zeros(2)), (0.0, -0.0)):
            out = fl.fmap(lambda p, g: p / g, [a, a], [zero, minus])
            np.testing.assert_array_equal(out[0], [np.inf, np.inf])
            np.testing.assert_array_equal(out[1], [-np.inf, -np.inf])
    tied = fl.fmap(lambda p, g: p - g, [a, a], [np.zeros(2), np.zeros(2)])
    assert tied[0] is tied[1]  # equal values, equal signs: one array still
