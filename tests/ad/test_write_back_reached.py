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
