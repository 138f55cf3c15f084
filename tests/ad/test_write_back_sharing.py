"""What ``fl.gradient`` and ``fl.jvp`` write back, against plain eager code (found by the
compiled write-back fuzzer, tests/compiler/test_write_back_compiled_fuzz.py): fields that
hold one array after the function hold one array (each place was given its own copy of a
traced value, or of an argument written in place), and forward mode keeps an argument's
write of a constant (it was lost)."""

from __future__ import annotations

import numpy as np
import pytest

import fluxml as fl


class Box:
    pass


def _box(**fields):
    b = Box()
    for k, v in fields.items():
        setattr(b, k, v)
    return b


def test_two_fields_given_one_traced_value_hold_one_array():
    a, b = _box(x=np.ones(2)), _box(x=np.ones(2))

    def f(a, b):
        h = np.tanh(a.x + b.x)
        a.h = b.h = h
        return np.sum(h)

    fl.gradient(f, a, b)
    assert a.h is b.h
    np.testing.assert_allclose(a.h, np.tanh(2.0))


def test_an_argument_written_in_place_through_two_fields_stays_one_array():
    m = _box(w=np.ones(2), state=np.full(2, 4.0))

    def f(m):
        m.seen = m.state
        m.state *= 0.5  # eagerly seen is state: both read 2
        return np.sum(m.w * m.seen)

    g, = fl.gradient(f, m)
    assert m.seen is m.state
    np.testing.assert_array_equal(m.state, np.full(2, 2.0))
    np.testing.assert_array_equal(g.w, np.full(2, 2.0))


def test_jvp_keeps_a_write_of_a_constant_into_an_argument():
    # forward mode's handle keeps its tangent for `+= 1.0`: the write looked like none
    m = _box(w=np.ones(2), count=np.array(0.0), buf=np.zeros(2))
    t = _box(w=np.ones(2), count=np.array(0.0), buf=np.zeros(2))

    def f(m):
        m.count += 1.0
        m.buf[0] = 5.0
        return np.sum(m.w * m.w)

    y, ty = fl.jvp(f, (m,), (t,))
    assert (y, ty) == (2.0, 4.0)
    assert type(m.count) is np.ndarray and m.count == 1.0
    np.testing.assert_array_equal(m.buf, [5.0, 0.0])


class Keeper:
    """A model that holds itself and its layers in a set and a dict keyed by layer, and
    branches on them in its forward pass."""

    def __init__(self):
        self.layers = [_box(w=np.array([1.0, 2.0])), _box(w=np.array([3.0, -1.0]))]
        self.members = {self, self.layers[0]}
        self.weight_of = {self.layers[0]: 2.0, self.layers[1]: 3.0}
        self.last = self.layers[1]

    def __call__(self, x):
        first, second = self.layers
        factor = 5.0 if self in self.members and first in self.members else 1.0
        if self.last is second:
            factor += 1.0
        self.members.add(second)
        self.weight_of[first] += 1.0
        return factor * (self.weight_of[first] * np.sum(first.w * x)
                         + self.weight_of[second] * np.sum(second.w * x))


def test_membership_and_layer_keys_in_a_traced_forward_pass_are_as_eager():
    # the set's members and the dict's keys held the original layers while the forward
    # pass saw traced copies: `self in self.members` was False (the other branch taken,
    # silently) and `self.weight_of[first]` a KeyError
    x = np.array([0.5, -2.0])
    eager = Keeper()
    want_loss = eager(x)
    model = Keeper()
    loss, (g,) = fl.withgradient(lambda m: m(x), model)
    # by hand: factor 6, weights 3 and 3 (the first after += 1)
    w0, w1 = eager.layers[0].w, eager.layers[1].w
    assert want_loss == 6.0 * (3.0 * np.sum(w0 * x) + 3.0 * np.sum(w1 * x))
    assert loss == want_loss
    np.testing.assert_allclose(g.layers[0].w, 18.0 * x)
    np.testing.assert_allclose(g.layers[1].w, 18.0 * x)
    # written back: the originals, not the traced copies, are in the set and the dict
    first, second = model.layers
    assert model.members == {model, first, second}
    assert list(model.weight_of) == [first, second] and model.weight_of[first] == 3.0
    assert all(type(layer) is Box and type(layer.w) is np.ndarray for layer in model.members
               if layer is not model)


def test_a_compiled_step_sees_the_traced_model_in_its_sets_and_dict_keys():
    # before: fl.compile's traced copy held the original layers in its set and as its dict's
    # keys: the step raised KeyError (and `self in self.members` was False)
    x = np.array([0.5, -2.0])
    model = Keeper()
    step = fl.compile(lambda m, x: fl.withgradient(lambda m: np.sum(m.weight_of[m.layers[0]]
                                                                   * m.layers[0].w * x)
                                                   * (2.0 if m in m.members else 1.0), m))
    for _ in range(2):
        loss, (g,) = step(model, x)
        # by hand: 2 * weight 2 * sum(w * x) (the call adds nothing: the loss is its own)
        assert loss == 4.0 * np.sum(model.layers[0].w * x)
        np.testing.assert_allclose(g.layers[0].w, 4.0 * x)


def test_a_compiled_function_that_changes_a_set_is_refused_by_name():
    # before: the trace added the traced copy of the layer (its w a dead tracer) to the
    # caller's set; a copy of the set must not lose the change silently either
    class Member:
        def __init__(self):
            self.w, self.members = np.ones(2), set()

        def __call__(self, x):
            self.members.add(self)
            return np.sum(self.w * x)

    m = Member()
    with pytest.raises(fl.CompileError, match="`members` of the Member"):
        fl.compile(lambda m, x: m(x))(m, np.ones(2))
    assert m.members == set()


def test_a_frozenset_of_layers_holds_the_traced_copies_and_fmaps_copies():
    # before: a frozenset is static, the same object in the traced copy: `self in
    # self.frozen` was False in the forward pass (the other branch, silently), and in
    # fl.f64's copy too
    class Frozen:
        def __init__(self):
            self.a = _box(w=np.array([1.0, -2.0]))
            self.frozen, self.groups = frozenset({self, self.a}), [frozenset({self.a})]

        def __call__(self, x):
            inside = self in self.frozen and self.a in self.frozen and self.a in self.groups[0]
            return (3.0 if inside else 1.0) * np.sum(self.a.w * x)

    x = np.array([0.5, 2.0])
    m = Frozen()
    g = fl.gradient(lambda m: m(x), m)[0]
    np.testing.assert_allclose(g.a.w, 3.0 * x)  # by hand
    assert m.frozen == frozenset({m, m.a}) and m.groups[0] == frozenset({m.a})
    c = fl.f64(m)
    assert c.frozen == frozenset({c, c.a}) and c.groups[0] == frozenset({c.a})


def test_layers_inside_tuple_keys_and_members_are_the_traced_copies():
    # before: a tuple key or set member holding a layer ((layer, "scale"), (self, 0)) kept
    # the original in the traced copy and in fl.f64's copy: `self.scale[(self.a, "s")]` a
    # KeyError, `(self.a, 0) in self.pairs` False (the other branch and its gradient,
    # silently), and a frozenset of tuples set in the forward pass kept the traced copy
    class Pairs:
        def __init__(self):
            self.a = _box(w=np.array([1.0, -2.0]))
            self.scale = {(self.a, "s"): 2.0}
            self.pairs, self.frozen = {(self.a, 0)}, frozenset({(self, (self.a,))})

        def __call__(self, x):
            inside = (self.a, 0) in self.pairs and (self, (self.a,)) in self.frozen
            self.tag = frozenset({(self.a, 1)})
            return (3.0 if inside else 1.0) * self.scale[(self.a, "s")] * np.sum(self.a.w * x)

    x = np.array([0.5, 2.0])
    m = Pairs()
    loss, (g,) = fl.withgradient(lambda m: m(x), m)
    assert loss == 6.0 * np.sum(m.a.w * x)  # by hand
    np.testing.assert_allclose(g.a.w, 6.0 * x)
    assert m.tag == frozenset({(m.a, 1)}) and type(m.a.w) is np.ndarray  # the originals
    c = fl.f64(m)
    assert (c.a, 0) in c.pairs and c.scale == {(c.a, "s"): 2.0}
    assert c.frozen == frozenset({(c, (c.a,))})
    step = fl.compile(lambda m, x: fl.withgradient(lambda m: m(x), m))
    loss, (g,) = step(m, x)
    assert loss == 6.0 * np.sum(m.a.w * x)
    np.testing.assert_allclose(g.a.w, 6.0 * x)
    # a tangent made by fmap holds its own layer in its tuple key: paired by position
    _, tangent = fl.jvp(lambda m: m(x), (m,), (fl.fmap(np.ones_like, m),))
    # by hand: tangent 1 for w (6 * sum(x)) and for the scale 2.0 (3 * sum(w * x))
    np.testing.assert_allclose(tangent, 6.0 * np.sum(x) + 3.0 * np.sum(m.a.w * x))


def test_an_argument_written_in_place_held_in_a_tuple_shows_the_write():
    # (found by review) the tuple is not logged and still held the same handle: its place
    # kept the old values, the field the new ones
    class M:
        def __init__(self):
            self.w = np.array([1.0, 2.0])
            self.pair = (self.w, 3)

        def __call__(self, x):
            y = np.sum(self.w * x)
            self.w *= 2.0
            return y

    m = M()
    fl.gradient(lambda m: m(np.ones(2)), m)
    np.testing.assert_array_equal(m.w, [2.0, 4.0])
    assert m.pair[0] is m.w and m.pair[1] == 3
