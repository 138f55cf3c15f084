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

import numpy as np

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
