"""What a differentiated function stores out of its arguments' reach (reached.plain_reached),
as the review of this session found it: one traced value stored at several places is one
array, an argument's tracer is the argument, a long global list's new tail is converted
(the walk is bounded: it looked at every entry on every call), and a global defined after
the function's first call is seen."""

from __future__ import annotations

import numpy as np

import fluxml as fl
from fluxml.ad.core import Tracer

LOG: list = []
LONG: list = [np.zeros(2) for _ in range(5000)]


class Box:
    pass


def test_a_value_stored_at_two_places_of_a_closed_over_object_is_one_array():
    m = Box()
    log: list = []

    def f(x):
        h = np.tanh(x)
        m.a = m.b = h
        log.append(h)
        return np.sum(h)

    fl.gradient(f, np.ones(2))
    assert m.a is m.b is log[0]
    np.testing.assert_allclose(m.a, np.tanh(1.0))


def test_an_arguments_array_stored_where_the_function_reaches_is_the_array():
    log: list = []
    m = Box()
    m.w = np.ones(2)

    def f(m):
        log.append(m.w)
        return np.sum(m.w * 2.0)

    fl.gradient(f, m)
    assert log[0] is m.w


def test_the_tail_of_a_long_global_list_is_converted():
    def f(x):
        y = np.sum(x ** 2)
        LONG.append(y)
        return y

    for _ in range(3):
        fl.gradient(f, np.ones(2))
    assert not any(type(v) is Tracer for v in LONG[-3:])
    np.testing.assert_allclose(LONG[-1], 2.0)


def test_a_global_defined_after_the_first_call_is_seen():
    global LATE

    def f(x):
        y = np.sum(x)
        LATE.append(y)  # noqa: F821 - defined after the first call
        return y

    try:
        fl.gradient(f, np.ones(2))
    except NameError:
        pass
    LATE = []
    fl.gradient(f, np.ones(2))
    assert type(LATE[0]) is not Tracer and LATE[0] == 2.0
