"""What ``fl.gradient`` and ``fl.jvp`` write back, against plain eager code (found by the
compiled write-back fuzzer, tests/compiler/test_write_back_compiled_fuzz.py): fields that
hold one array after the function hold one array (each place was given its own copy of a
traced value, or of an argument written in place), and forward mode keeps an argument's
write of a constant (it was lost)."""

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
