"""Functions a differentiated function stores on what it reaches without being given it (a
list of hooks it closes over, a global holder): afterwards they are over the model and
plain arrays, as those it stores on its arguments are, not over the traced copy."""

from __future__ import annotations

import functools

import numpy as np
import pytest

import fluxml as fl


class Scaled:
    def __init__(self):
        self.w = np.array([0.5, -1.0])

    def __call__(self, x):
        return self.w * x


def _transforms(loss, m, x):
    return {"gradient": lambda: fl.gradient(loss, m, x),
            "pullback": lambda: fl.pullback(loss, m, x),
            "jvp": lambda: fl.jvp(loss, (m, x), (fl.fmap(np.zeros_like, m), np.ones(2)))}


@pytest.mark.parametrize("transform", ["gradient", "pullback", "jvp"])
def test_functions_stored_in_a_closed_over_list_are_over_the_model(transform):
    # before: calling hooks[0] later raised 'a traced value escaped the transform' (the
    # lambda, the bound method and the partial held the traced copy of m)
    m, hooks, holder = Scaled(), [], Scaled()

    def loss(m, x):
        hooks.append(lambda z: m(z) * x)
        hooks.append(m.__call__)
        hooks.append(functools.partial(Scaled.__call__, m))
        holder.fn = lambda: m.w
        return np.sum(m(x))

    x = np.array([1.0, 2.0])
    _transforms(loss, m, x)[transform]()
    m.w = np.array([3.0, 4.0])  # seen by the functions: they hold the model itself
    z = np.array([2.0, -1.0])
    assert hooks[0](z).tolist() == [6.0, -8.0]  # (w * z) * x, by hand
    assert hooks[1](z).tolist() == [6.0, -4.0] and hooks[1].__self__ is m
    assert hooks[2](z).tolist() == [6.0, -4.0]
    assert holder.fn() is m.w


def test_a_function_over_a_traced_array_argument_holds_the_array():
    out = []
    x = np.array([1.0, 2.0])
    fl.gradient(lambda a: (out.append(lambda: a * 2), np.sum(a))[1], x)
    assert type(out[0]()) is np.ndarray and out[0]().tolist() == [2.0, 4.0]


def test_a_function_over_a_traced_value_holds_its_value():
    out = []
    m = Scaled()

    def loss(m):
        y = np.tanh(m(np.ones(2)))
        out.append(lambda: y)
        return np.sum(y)

    fl.gradient(loss, m)
    assert type(out[0]()) is np.ndarray
    np.testing.assert_allclose(out[0](), np.tanh([0.5, -1.0]))


class Keeps:
    """A layer that keeps its last output and a history of them (``self.last = h``)."""

    def __init__(self):
        self.w, self.history = np.array([0.5, -1.0]), []

    def __call__(self, x):
        self.last = h = np.tanh(self.w * x)
        self.history.append((len(self.history), h))
        return np.sum(h ** 2)


def test_a_tracer_stored_at_second_order_on_a_closed_over_layer_is_a_plain_array():
    # before: the inner gradient left layer.last a tracer over the outer gradient's, which
    # nothing converted (the outer function reaches the layer only through the loss it
    # calls): a dead tracer afterwards, and one inside the outer function too
    x0 = np.array([0.3, 0.7])
    runs = {
        "gradient of gradient": lambda layer: fl.gradient(
            lambda x: np.sum(fl.gradient(lambda x: layer(x), x)[0] ** 2), x0),
        "hessian": lambda layer: fl.hessian(lambda x: layer(x), x0),
        "third order": lambda layer: fl.gradient(lambda x: np.sum(fl.gradient(
            lambda x: np.sum(fl.gradient(lambda x: layer(x), x)[0] ** 2), x)[0]), x0),
        "jvp of gradient": lambda layer: fl.jvp(
            lambda x: np.sum(fl.gradient(lambda x: layer(x), x)[0]), (x0,), (np.ones(2),)),
    }
    for name, run in runs.items():
        layer = Keeps()
        run(layer)
        assert type(layer.last) is np.ndarray, name
        assert all(type(h) is np.ndarray for _, h in layer.history), name
        np.testing.assert_allclose(layer.last, np.tanh(layer.w * x0), err_msg=name)

    # the outer function reads what the inner gradient's loss stored: differentiated there
    layer = Keeps()

    def outer(x):
        g = fl.gradient(lambda x: layer(x), x)[0]
        return np.sum(g * np.cos(x)) + np.sum(layer.last ** 3)

    got = fl.gradient(outer, x0)[0]
    eps = 1e-6
    want = [(outer(x0 + eps * e) - outer(x0 - eps * e)) / (2 * eps) for e in np.eye(2)]
    np.testing.assert_allclose(got, want, rtol=1e-7)
    assert type(layer.last) is np.ndarray


GLOBAL_LAYER = Scaled()


def test_a_part_of_an_argument_reached_through_a_global_or_closure_is_the_original():
    # as fl.gradient's docstring says: f runs on a traced copy of its arguments, so a global
    # or closed-over reference to one of its layers is the original inside f (a constant,
    # and not `is` the argument's layer), though the same object eagerly
    second = Scaled()
    second.w = np.array([3.0, -1.0])
    model = [GLOBAL_LAYER, second]
    x = np.array([0.5, 1.5])
    seen = []

    def loss(m):
        seen.append((m[0] is GLOBAL_LAYER, m[1] is second))
        return np.sum(m[1](m[0](x))) + np.sum(GLOBAL_LAYER(x)) + np.sum(second(x))

    assert loss(model) == np.sum(second.w * GLOBAL_LAYER.w * x) + np.sum(
        GLOBAL_LAYER.w * x) + np.sum(second.w * x)  # (eagerly: the same objects)
    g = fl.gradient(loss, model)[0]
    assert seen[-1] == (False, False) and seen[0] == (True, True)
    # by hand: only the argument's path, m[1](m[0](x)), is differentiated
    np.testing.assert_allclose(g[0].w, second.w * x)
    np.testing.assert_allclose(g[1].w, GLOBAL_LAYER.w * x)


_HOLDER = Scaled()


@pytest.mark.parametrize("transform", ["gradient", "withgradient"])
def test_withgradient_walks_what_the_users_function_reaches(transform):
    """withgradient walked what its own wrapper of f reaches (builtins' names and its list),
    not f's globals and closure: a value f stored on a global layer, or on a closed-over
    one, was left a dead tracer (fl.gradient made it a plain array)."""
    local = Scaled()

    def loss(x):
        _HOLDER.last = x * 2
        local.last = x * 3
        return np.sum(x)

    x = np.array([1.0, 2.0])
    getattr(fl, transform)(loss, x)
    assert type(_HOLDER.last) is np.ndarray and _HOLDER.last.tolist() == [2.0, 4.0]
    assert type(local.last) is np.ndarray and local.last.tolist() == [3.0, 6.0]
    # a tuple output's other entries are still plain values
    (value, y), _ = fl.withgradient(lambda x: (loss(x), x * 4), x)
    assert type(y) is np.ndarray and y.tolist() == [4.0, 8.0] and value == 3.0
