"""Trees: flatten / unflatten / fmap / leaves over containers and objects."""

import dataclasses
import functools
from collections import OrderedDict, namedtuple

import numpy as np
import pytest

import fluxml as fl

Pair = namedtuple("Pair", ["a", "b"])


@dataclasses.dataclass(frozen=True)
class Frozen:
    w: np.ndarray
    label: str = "x"


class Obj:
    def __init__(self):
        self.w = np.ones(2)
        self.children = [Pair(1.0, np.zeros(3))]
        self.fn = np.tanh
        self.name = "obj"


def test_round_trip_keeps_structure_and_statics():
    tree = {"a": [1.0, (np.ones(2), "s")], "p": Pair(2.0, None), "f": Frozen(np.ones(1)),
            "o": Obj(), "od": OrderedDict(z=3.0)}
    leaves, spec = fl.flatten(tree)
    assert len(leaves) == 8
    back = fl.unflatten(spec, leaves)
    assert back["a"][1][1] == "s" and isinstance(back["p"], Pair) and back["p"].b is None
    assert isinstance(back["f"], Frozen) and back["f"].label == "x"
    assert isinstance(back["o"], Obj) and back["o"].fn is np.tanh and back["o"].name == "obj"
    assert isinstance(back["od"], OrderedDict)


def test_gradient_shape_has_none_for_statics():
    leaves, spec = fl.flatten(Obj())
    g = fl.unflatten(spec, [0.0] * len(leaves), static_as_none=True)
    assert g.fn is None and g.name is None and g.w == 0.0


def test_fmap_and_leaves():
    tree = [np.ones(2), {"b": 2.0}]
    doubled = fl.fmap(lambda x: 2 * x, tree)
    np.testing.assert_array_equal(doubled[0], [2.0, 2.0])
    assert doubled[1]["b"] == 4.0
    summed = fl.fmap(lambda x, y: x + y, tree, doubled)
    assert summed[1]["b"] == 6.0
    assert len(fl.leaves(tree)) == 2
    with pytest.raises(ValueError, match="leaves"):
        fl.fmap(lambda x, y: x, tree, [1.0])


def test_cycles_are_refused():
    o = Obj()
    o.me = o
    with pytest.raises(ValueError, match="cycle"):
        fl.flatten(o)


def test_builtin_objects_are_static():
    leaves, _ = fl.flatten([np.add, len, range(3), "text", b"raw", np.float32])
    assert leaves == []


def test_partials_and_cached_functions_are_static():
    # (Python 3.11 makes these built-in types as heap types with a __dict__: they were taken
    # for objects with fields, which unflatten could not rebuild, and a layer with a partial
    # activation failed in fl.gradient and fl.compile)
    act = functools.partial(fl.leakyrelu, a=0.2)
    cached = functools.lru_cache(np.tanh)
    tree = {"act": act, "cached": cached, "w": np.ones(2)}
    leaves, spec = fl.tree.flatten(tree)
    assert len(leaves) == 1
    back = fl.tree.unflatten(spec, leaves)
    assert back["act"] is act and back["cached"] is cached
    dense = fl.Dense(3, 2, act)
    x = np.ones((4, 3), np.float32)
    g = fl.gradient(lambda m: np.sum(m(x)), dense)[0]
    assert g.weight.shape == (2, 3) and g.activation is None
    np.testing.assert_allclose(fl.compile(lambda m, x: m(x))(dense, x), dense(x))


def test_fmap_pairs_dicts_by_key():
    """The dicts of ``rest`` may list their keys in another order (once paired by position)."""
    assert fl.fmap(lambda a, b: a + b, {"x": 1.0, "v": 2.0}, {"v": 20.0, "x": 10.0}) == {
        "x": 11.0, "v": 22.0}
    nested = fl.fmap(lambda a, b: a * b, [{"p": 1.0, "q": 2.0}], [{"q": 3.0, "p": 5.0}])
    assert nested == [{"p": 5.0, "q": 6.0}]
    with pytest.raises(ValueError, match="fmap: a tree of rest has a dict with keys"):
        fl.fmap(lambda a, b: a + b, {"x": 1.0, "v": 2.0}, {"x": 1.0, "w": 2.0})


def test_fmap_refuses_trees_whose_leaves_sit_elsewhere():
    """Summing two gradients by hand, fl.fmap(np.add, g1, g2), where each batch used another
    part of the model: g1 holds None where g2 has arrays and the other way round, and with
    as many leaves on each side fmap paired g1's arrays with g2's other ones, silently
    (d/da + d/db under a's name, b's gradient dropped). Now the places must match."""
    model = {"a": fl.f64(fl.Dense(2, 2)), "b": fl.f64(fl.Dense(2, 2))}
    x = np.ones((1, 2))
    g1 = fl.gradient(lambda m: np.sum(m["a"](x)), model)[0]
    g2 = fl.gradient(lambda m: 3 * np.sum(m["b"](x)), model)[0]
    with pytest.raises(ValueError, match=r"fmap: trees differ: 2 leaves against 2; the first "
                                         r"tree has a leaf at 'a.weight' where a tree of rest "
                                         r"has one at 'b.weight' .*zeros_for_none=True"):
        fl.fmap(np.add, g1, g2)
    with pytest.raises(ValueError, match=r"leaf at 'y' where a tree of rest has one at 'x'"):
        fl.fmap(np.add, {"x": None, "y": np.ones(1)}, {"x": np.ones(1), "y": None})
    with pytest.raises(ValueError, match=r"a tree of rest has a leaf at '1' where the first "
                                         r"tree has none"):
        fl.fmap(np.add, [np.ones(1)], [np.ones(1), np.ones(1)])
    # with zeros for None the trees match: the sum of both gradients
    z1, z2 = (fl.gradient(f, model, zeros_for_none=True)[0] for f in
              (lambda m: np.sum(m["a"](x)), lambda m: 3 * np.sum(m["b"](x))))
    total = fl.fmap(np.add, z1, z2)
    assert np.array_equal(total["a"].weight, np.ones((2, 2)))
    assert np.array_equal(total["b"].weight, np.full((2, 2), 3.0))
    assert fl.fmap(np.add, [1.0, (2.0,)], [10.0, [20.0]]) == [11.0, (22.0,)]  # by position


def test_fmap_keeps_tied_arrays_tied():
    # fl.fmap(np.copy, model) of a model using one array twice gave two independent copies,
    # silently (Flux's fmap maps an object once)
    w = np.ones(2)
    d = fl.Dense(2, 2)
    model = fl.Chain(d, d)
    copy = fl.fmap(np.copy, model)
    assert copy.layers[0].weight is copy.layers[1].weight
    assert copy.layers[0].weight is not model.layers[0].weight
    summed = fl.fmap(lambda a, c: a + c, {"x": w, "y": w}, {"x": w, "y": 2 * w})
    assert summed["x"] is not summed["y"]  # other leaves of rest at the two places
    np.testing.assert_array_equal(summed["y"], 3 * w)
    drawn = fl.fmap(lambda a: np.random.default_rng().normal(), {"x": 1.0, "y": 1.0})
    assert drawn["x"] != drawn["y"]  # numbers are mapped at each place


class _Slotted:
    """A user layer with __slots__ (no __dict__): its arrays are parameters."""
    __slots__ = ("weight", "scale", "act", "__private", "unset")

    def __init__(self, weight, scale):
        self.weight, self.scale, self.act = weight, scale, np.tanh
        self.__private = np.full(2, 3.0)

    def __call__(self, x):
        return self.act(x @ self.weight) * self.scale + self.__private.sum()


class _SlottedWithDict(_Slotted):  # no __slots__ of its own: slots and a __dict__
    pass


@pytest.mark.parametrize("cls", [_Slotted, _SlottedWithDict])
def test_slotted_objects_are_nodes(cls):
    """A slotted layer was static: its gradient None and fl.setup gave None, so it never
    trained, silently."""
    m = cls(np.ones((2, 2)), 2.0)
    if cls is _SlottedWithDict:
        m.bias = np.zeros(2)
    x = np.array([[0.5, -1.0]])
    g, = fl.gradient(lambda m: (m(x) ** 2).sum(), m)
    assert type(g) is cls and g.act is None and not hasattr(g, "unset")
    y = x @ m.weight
    out = np.tanh(y) * 2.0 + 6.0
    np.testing.assert_allclose(g.weight, x.T @ (2 * out * 2.0 * (1 - np.tanh(y) ** 2)))
    np.testing.assert_allclose(g.scale, (2 * out * np.tanh(y)).sum())
    np.testing.assert_allclose(g._Slotted__private, np.full(2, 2 * out.sum()))
    leaves, spec = fl.tree.flatten(m)
    rebuilt = fl.unflatten(spec, leaves)
    assert rebuilt.act is np.tanh and rebuilt.weight is m.weight
    if cls is _SlottedWithDict:
        assert rebuilt.__dict__ == {"bias": m.bias} and g.bias is None
    state = fl.setup(fl.Descent(0.1), m)
    fl.update(state, m, g)
    np.testing.assert_allclose(m.weight, 1 - 0.1 * g.weight)
    doubled = fl.fmap(lambda a: 2 * a, m)
    assert np.array_equal(doubled.weight, 2 * m.weight) and doubled.act is np.tanh
    fresh = cls(np.zeros((2, 2)), 0.0)
    if cls is _SlottedWithDict:
        fresh.bias = np.ones(2)
    fl.loadmodel(fresh, fl.state(m))
    assert np.array_equal(fresh.weight, m.weight) and fresh.scale == m.scale


def test_simple_namespaces_are_nodes():
    """types.SimpleNamespace (a built-in type) was static: gradient None, silently."""
    import types
    m = types.SimpleNamespace(w=np.ones(2), act=np.tanh)
    g, = fl.gradient(lambda m: (m.act(m.w) ** 2).sum(), m)
    assert type(g) is types.SimpleNamespace and g.act is None
    np.testing.assert_allclose(g.w, 2 * np.tanh(1.0) * (1 - np.tanh(1.0) ** 2))


def test_only_the_users_slotted_classes_are_nodes():
    """The standard library's and fluxml's own slotted classes stay static: a Fraction's or
    a Path's slots are not parameters, nor a compiled function's cached program."""
    import enum
    import fractions
    import pathlib

    class Mode(enum.Enum):
        TRAIN = 1

    class Level(enum.IntEnum):
        LOW = 1

    f = fl.compile(lambda x: 2 * x)
    f(np.ones(2))
    m = {"w": np.ones(2), "r": fractions.Fraction(1, 3), "p": pathlib.Path("/tmp"), "f": f,
         "mode": Mode.TRAIN, "level": Level.LOW}
    assert [p for p, x in fl.tree.leaves_with_paths(m) if not isinstance(x, int)] == ["w"]
    for copy in (fl.f32(m), fl.fmap(np.copy, m)):
        assert copy["mode"] is Mode.TRAIN and copy["level"] is Level.LOW
        assert copy["r"] is m["r"] and copy["p"] is m["p"]


class _Stats:
    __slots__ = ("w", "stat", "_v")
    nontrainable = ("stat",)

    def __init__(self):
        self.w, self.stat, self._v = np.ones(2), np.zeros(2), np.ones(2)

    def __call__(self, x):
        return (self.w * x).sum() + self.stat.sum()


class _Hidden(_Stats):
    __slots__ = ()

    def __init__(self):
        self.w, self.stat = np.ones(2), np.zeros(2)

    @property
    def _v(self):  # hides the base class's slot: not a field
        return 1.0


def test_slotted_rebuilds_keep_nontrainable_fields_and_skip_hidden_slots():
    m = _Stats()
    g, = fl.gradient(lambda m: m(np.arange(2.0)), m)
    np.testing.assert_array_equal(g.w, [0.0, 1.0])
    assert g.stat is None
    assert [p for p, _ in fl.tree.leaves_with_paths(_Hidden())] == ["w", "stat"]
    assert fl.fmap(lambda a: 2 * a, _Hidden())._v == 1.0


class _Switching:
    """Picks its forward pass at construction: a field bound to its own method."""

    def __init__(self):
        self.w = np.arange(3.0)
        self.inner = fl.Dense(3, 1)
        self.impl = self._forward
        self.act = self.inner.__call__

    def _forward(self, x):
        return (self.w * x).sum()


def test_bound_method_fields_are_bound_to_the_rebuilt_object():
    """``self.impl = self._forward`` kept calling the original object: the gradient of w
    was None (the traced copy was never read), and an fl.f64 copy ran the old arrays."""
    m = _Switching()
    g, = fl.gradient(lambda m: m.impl(np.ones(3)) + m.act(np.ones((1, 3), np.float32)).sum(), m)
    np.testing.assert_array_equal(g.w, np.ones(3))
    np.testing.assert_array_equal(g.inner.weight, np.ones((1, 3)))
    c = fl.f32(m)
    assert c.impl.__self__ is c and c.act.__self__ is c.inner


def test_list_and_tuple_subclasses_and_deques_are_sequences():
    """A list subclass (or a deque) in a model failed in every gradient with "object.__new__
    is not safe"; a deque's arrays were static (gradient None)."""
    import collections

    class Layers(list):
        pass

    for kind in (Layers, collections.deque, type("Pair", (tuple,), {})):
        m = kind([np.ones(2), np.tanh])
        g, = fl.gradient(lambda m: (m[1](m[0]) ** 2).sum(), m)
        assert type(g) is kind and g[1] is None
        np.testing.assert_allclose(g[0], 2 * np.tanh(1.0) * (1 - np.tanh(1.0) ** 2))
        assert type(fl.f32(m)) is kind


def test_fmap_maps_an_object_at_several_places_once():
    # fl.f64(Chain(d, np.tanh, d)) tied d's arrays but made two Dense objects (fl.cpu/gpu kept
    # one), and a caller's leaf at two places (sync_batchnorm's BatchNorm) was mapped twice
    d = fl.Dense(2, 2)
    for convert in (fl.f64, fl.f16, lambda m: fl.fmap(np.copy, m)):
        m = convert({"first": d, "act": np.tanh, "then": [d]})
        assert m["first"] is m["then"][0] and m["first"] is not d
    calls = []
    out = fl.fmap(lambda x: calls.append(x) or fl.Scale(1), [d, d],
                  is_leaf=lambda x: isinstance(x, fl.Dense))
    assert len(calls) == 1 and out[0] is out[1]
    # with rest, the places may pair with other leaves: each is mapped on its own
    pair = fl.fmap(lambda a, b: a + b, [d, d], [{"weight": 1, "bias": 1, "activation": None},
                                                {"weight": 2, "bias": 2, "activation": None}])
    assert pair[0] is not pair[1] and np.array_equal(pair[1].weight, d.weight + 2)


class _Layers(list):
    """A user's list of layers, called in turn."""

    def __call__(self, x):
        for layer in self:
            x = layer(x)
        return x


class _Pair(tuple):
    pass


def test_subclasses_of_list_and_tuple_are_containers():
    # a list or tuple subclass was an object with no fields: its arrays were no leaves
    # (setup trained nothing, state saved nothing) and fl.gradient failed rebuilding it
    # ("object.__new__(_Layers) is not safe")
    model = _Layers([fl.Dense(2, 2), fl.Dense(2, 1)])
    assert len(fl.leaves(model)) == 4
    g, = fl.gradient(lambda m: np.sum(m(np.ones((1, 2), np.float32))), model)
    assert type(g) is _Layers and g[1].bias[0] == 1
    state = fl.setup(fl.Descent(0.5), model)
    fl.update(state, model, g)
    assert model[1].bias[0] == -0.5
    pair = {"p": _Pair((np.ones(2), 3.0))}
    assert list(fl.state(pair)["p"]) == ["0", "1"]
    loaded = fl.loadmodel({"p": _Pair((np.zeros(2), 0.0))}, fl.state(pair))
    assert type(loaded["p"]) is _Pair and loaded["p"][1] == 3.0


@dataclasses.dataclass(slots=True)
class _SlottedNorm:
    w: np.ndarray
    mean: np.ndarray
    nontrainable = ("mean",)  # (a class attribute, not a field)

    def __call__(self, x):
        return (x - self.mean) * self.w


def test_a_slotted_dataclass_keeps_its_nontrainable_fields_when_rebuilt():
    # an object with no __dict__ was rebuilt from the fields the spec lists alone: the traced
    # copy of a slotted dataclass lacked its nontrainable field, and fl.gradient failed
    # ("'_SlottedNorm' object has no attribute 'mean'"); its gradient lacked the field too
    m = _SlottedNorm(np.ones(2), np.full(2, 0.5))
    g, = fl.gradient(lambda m: np.sum(m(np.ones(2))), m)
    assert np.array_equal(g.w, [0.5, 0.5]) and g.mean is None
    leaves, spec = fl.flatten(m, trainable=True)
    assert fl.unflatten(spec, leaves).mean is m.mean


class _Holder:
    """A model holding itself and a layer in a set and a dict keyed by its layers."""

    def __init__(self):
        self.a, self.b = _Holder.__new__(_Holder), _Holder.__new__(_Holder)
        self.a.w, self.b.w = np.ones(2, np.float32), np.zeros(2, np.float32)
        self.members = {self, self.a, "tag"}
        self.weight_of = {self.a: 2.0, self.b: 3.0, "other": 1.0}


def test_a_copy_made_by_fmap_holds_its_own_layers_in_its_sets_and_as_its_dict_keys():
    # before: fl.f64(model)'s set was the original's, holding the original model and layer
    # (`copy in copy.members` False, silently), and its dict's keys were the original
    # layers (copy.weight_of[copy.a] a KeyError)
    m = _Holder()
    c = fl.f64(m)
    assert c.a.w.dtype == np.float64 and c.a is not m.a
    assert c.members is not m.members and c.members == {c, c.a, "tag"}
    assert m.members == {m, m.a, "tag"}  # the original's are its own still
    assert list(c.weight_of) == [c.a, c.b, "other"]
    assert list(c.weight_of.values()) == [2.0, 3.0, 1.0]
    assert list(m.weight_of) == [m.a, m.b, "other"]


def test_jvp_pairs_a_dict_keyed_by_layers_with_the_tangents_own_layers():
    # before: the tangent (a copy of the model: its own layers as the dict's keys) was
    # refused ('the tangents has a dict with keys [...] where one with keys [...]')
    m = _Holder()
    m.a.w, m.b.w = np.array([1.0, 2.0]), np.array([3.0, -1.0])
    m.weight_of = {m.a: np.array(2.0), m.b: np.array(3.0)}
    tangent = fl.fmap(np.ones_like, m)
    assert list(tangent.weight_of) == [tangent.a, tangent.b]

    def f(m):
        return m.weight_of[m.a] * np.sum(m.a.w) + m.weight_of[m.b] * np.sum(m.b.w)

    value, slope = fl.jvp(f, (m,), (tangent,))
    # by hand: d = dw_a * sum(a) + w_a * sum(da) + dw_b * sum(b) + w_b * sum(db)
    assert value == 2.0 * 3.0 + 3.0 * 2.0
    assert slope == 3.0 + 2.0 * 2 + 2.0 + 3.0 * 2
    a, b = object(), object()
    with pytest.raises(ValueError, match="keys"):  # other keys still differ
        fl.tree.align({"x": 1.0}, fl.flatten({"y": 0.0})[1])
    assert fl.tree.align({a: 1.0}, fl.flatten({b: 0.0})[1]) == {a: 1.0}


def test_unflatten_refuses_another_number_of_leaves():
    # too few raised a bare StopIteration (a RuntimeError inside a generator), too many were
    # dropped, silently
    leaves, spec = fl.flatten({"a": np.ones(2), "b": (3, np.zeros(1))})
    with pytest.raises(ValueError, match=r"unflatten: the spec holds 3 leaves; got 2 leaves"):
        fl.unflatten(spec, leaves[:2])
    with pytest.raises(ValueError, match=r"the spec holds 3 leaves; got 4 leaves"):
        fl.unflatten(spec, leaves + [np.zeros(1)])
    assert fl.unflatten(spec, iter(leaves))["b"][0] == 3  # (an iterator too)
