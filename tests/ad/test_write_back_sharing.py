"""Fields that hold one array after a differentiated function hold one array after
``fl.gradient`` too, as after the eager function: each place was given its own copy of a
traced value, or of an argument written in place (found by the compiled write-back fuzzer,
tests/compiler/test_write_back_compiled_fuzz.py, run against plain eager code)."""

from __future__ import annotations

import numpy as np

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
