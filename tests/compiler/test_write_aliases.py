"""A compiled function that moves arrays between its arguments' fields does what the eager
function does: the values each field ends with, and which fields end up holding one array
(found by tests/compiler/test_write_back_compiled_fuzz.py)."""

from __future__ import annotations

import numpy as np
import pytest

import fluxml as fl
from tests.ad.test_write_back_sharing import _box


def test_a_swap_of_two_fields():
    # the second write read the first's new value: both fields ended with the old y
    @fl.compile
    def swap(m):
        m.x, m.y = m.y, m.x
        return np.sum(m.x)

    m = _box(x=np.zeros(2), y=np.ones(2))
    assert swap(m) == 2.0
    np.testing.assert_array_equal(m.x, np.ones(2))
    np.testing.assert_array_equal(m.y, np.zeros(2))
    swap(m)
    np.testing.assert_array_equal(m.x, np.zeros(2))
    np.testing.assert_array_equal(m.y, np.ones(2))


def test_a_field_keeps_the_old_array_of_a_field_given_a_new_one():
    # m.a comes before m.z in the tree, so its write was emitted first and m.z read it
    @fl.compile
    def step(m):
        m.z = m.a
        m.a = m.a * 3.0
        return np.sum(m.z)

    m = _box(a=np.ones(2), z=np.zeros(2))
    assert step(m) == 2.0
    np.testing.assert_array_equal(m.z, np.ones(2))
    np.testing.assert_array_equal(m.a, np.full(2, 3.0))


def test_a_field_pointed_at_a_parameter_is_that_parameter():
    # it got a copy of the parameter's values: a later write into the parameter (the
    # optimiser's) no longer showed through it, as it does eagerly
    def step(m):
        loss, (g,) = fl.withgradient(lambda m: _seen(m), m)
        m.w -= 0.1 * g.w
        return loss

    def _seen(m):
        m.seen = m.w
        return np.sum(np.tanh(m.w))

    compiled = fl.compile(step)
    m, e = _box(w=np.ones(2), seen=np.zeros(2)), _box(w=np.ones(2), seen=np.zeros(2))
    for _ in range(3):
        np.testing.assert_allclose(compiled(m), step(e), rtol=1e-12)
        assert m.seen is m.w and e.seen is e.w
        np.testing.assert_allclose(m.w, e.w, rtol=1e-12)


def test_two_fields_given_one_new_array_hold_one_array():
    @fl.compile
    def step(a, b):
        h = np.tanh(a.x + b.x)
        a.h = b.h = h
        return np.sum(h)

    a, b = _box(x=np.ones(2), h=np.zeros(2)), _box(x=np.ones(2), h=np.zeros(2))
    for _ in range(2):
        step(a, b)
        assert a.h is b.h
        np.testing.assert_allclose(a.h, np.tanh(2.0))


def test_a_field_given_the_batch_argument_holds_it():
    @fl.compile
    def forward(m, x):
        m.last = x
        return np.sum(m.w * x)

    m = _box(w=np.ones(3), last=np.zeros(3))
    for k in range(3):
        x = np.full(3, float(k))
        assert forward(m, x) == 3.0 * k
        assert m.last is x


def test_one_array_at_two_fields_given_two_new_arrays_is_refused_by_name():
    # eagerly the two fields part; compiled they share the one array they held: refused
    # (the message named neither field)
    @fl.compile
    def step(m):
        m.a = m.a + 1.0
        m.b = m.b + 2.0
        return np.sum(m.a)

    shared = np.zeros(2)
    m = _box(a=shared, b=shared)
    with pytest.raises(fl.CompileError, match=r"\.a and .*\.b of its arguments"):
        step(m)
    assert m.a is m.b is shared
    np.testing.assert_array_equal(shared, np.zeros(2))


@pytest.mark.parametrize("view", [False, True])
def test_a_returned_old_value_of_a_rebound_field_keeps_its_values(view):
    # the NumPy back end returned the argument's array, into which the call then wrote the
    # field's new value: [4, 4] after two calls where eager code gives [1, 1] and [2, 2]
    def step(s):
        old = s["h"][::-1] if view else s["h"]
        s["h"] = s["h"] * 2.0
        return old

    for backend in ("numpy", "xla"):
        if backend == "xla":
            pytest.importorskip("jax")
        compiled = fl.compile(step, backend=backend, background=False)
        s = {"h": np.arange(1.0, 3.0)}
        first, second = compiled(s), compiled(s)
        np.testing.assert_array_equal(first, [2.0, 1.0] if view else [1.0, 2.0])
        np.testing.assert_array_equal(second, [4.0, 2.0] if view else [2.0, 4.0])
        np.testing.assert_array_equal(s["h"], [4.0, 8.0])


def test_an_argument_written_in_place_and_returned_is_the_callers_array():
    # eagerly `acc += g; return acc` gives the caller's array back; the compiled call gave a
    # copy (on XLA a 0-d one came back as a NumPy scalar, np.int64)
    def step(acc, count, g):
        acc += g
        count += 1
        return acc, count

    for backend in ("numpy", "xla"):
        if backend == "xla":
            pytest.importorskip("jax")
        compiled = fl.compile(step, backend=backend, background=False)
        acc, count = np.zeros(2), np.zeros((), np.int64)
        for _ in range(2):
            got_acc, got_count = compiled(acc, count, np.ones(2))
            assert got_acc is acc and got_count is count
        np.testing.assert_array_equal(acc, [2.0, 2.0])
        assert count[()] == 2


def test_one_value_returned_twice_is_one_array():
    # eagerly `return s["h"], s["h"]` gives one array twice; the compiled call copied each
    # result of a written argument apart
    def step(s):
        s["h"] = s["h"] * 2.0
        return s["h"], s["h"]

    for backend in ("numpy", "xla"):
        if backend == "xla":
            pytest.importorskip("jax")
        compiled = fl.compile(step, backend=backend, background=False)
        s = {"h": np.ones(2)}
        for _ in range(2):
            a, b = compiled(s)
            assert a is b
        np.testing.assert_array_equal(a, [4.0, 4.0])
        np.testing.assert_array_equal(s["h"], [4.0, 4.0])


def test_a_returned_model_with_a_rebound_count_can_be_passed_again():
    # a 0-d count a layer sets under fl.gradient (written back as a new 0-d array) came back
    # from XLA as a NumPy scalar: the returned model held a number where it had an array, and
    # the next call refused it ('changed the number np.float64(1.0) ... to np.float64(2.0)')
    class Counted:
        def __init__(self):
            self.w, self.calls = np.ones(2), np.zeros(())

        def __call__(self, x):
            self.calls += 1.0
            return x * self.w

    def step(m, x):
        _, (g,) = fl.withgradient(lambda m: np.sum(m(x) ** 2), m)
        m.w -= 0.1 * g.w
        return m

    for backend in ("numpy", "xla"):
        if backend == "xla":
            pytest.importorskip("jax")
        compiled, eager = fl.compile(step, backend=backend, background=False), Counted()
        m = Counted()
        for _ in range(3):
            m = compiled(m, np.ones(2))
            eager = step(eager, np.ones(2))
        assert isinstance(m.calls, np.ndarray) and m.calls.shape == ()
        assert m.calls == eager.calls == 3.0
        np.testing.assert_allclose(m.w, eager.w, rtol=1e-14)
