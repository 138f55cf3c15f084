"""ReverseTrace.unary and .binary (the short paths of ufuncs and operators) record exactly what
the general ReverseTrace.process records: the same tape, node by node, and the same flags on
the handles (which buffers a later write must copy first)."""

import numpy as np
import pytest

import fluxml as fl
from fluxml.ad.core import LARGE, Shaped, Trace, Tracer
from fluxml.ad.reverse import ReverseTrace

rng = np.random.default_rng(7)
X = rng.standard_normal(5)
M = rng.standard_normal((3, 4))


def _same_value(a, b):
    if type(a) is Shaped or type(b) is Shaped:
        return type(a) is type(b) and a.shape == b.shape and a.dtype == b.dtype
    if type(a) is Tracer or type(b) is Tracer:
        return a is b
    return type(a) is type(b) and np.array_equal(a, b) and np.shape(a) == np.shape(b) \
        and getattr(a, "dtype", None) == getattr(b, "dtype", None)


def _record(program, args, general):
    """Run ``program`` on traced ``args``; the tape, and the handles' flags at the end."""
    trace = ReverseTrace()
    handles = [trace.leaf(np.array(a, copy=True)) for a in args]
    if general:  # the defaults of Trace: every call through process
        ReverseTrace.unary, ReverseTrace.binary = Trace.unary, Trace.binary
    try:
        outs = program(*handles)
    finally:
        ReverseTrace.unary, ReverseTrace.binary = _FAST
    flags = [(h._owned, h._view is None) for h in handles + list(outs)]
    return trace.tape, flags, outs


_FAST = (ReverseTrace.unary, ReverseTrace.binary)


def _view_then_sin(x):
    y = x[1:]
    return y, np.sin(y), np.exp(y)


def _written_view(x):
    u = x * 1.0  # a fresh buffer (owned): the view of it is copied when a rule keeps it
    v = u[1:]
    return u, v, np.sin(v), v * u[:-1]


PROGRAMS = {
    "unary keeps output": (lambda x: (np.tanh(x),), [X]),
    "unary keeps input": (lambda x: (np.sin(x),), [X]),
    "unary keeps nothing": (lambda x: (-x, np.negative(x)), [X]),
    "tracer * float": (lambda x: (x * 1.5, 1.5 * x), [X]),
    "tracer + int": (lambda x: (x + 2, 2 - x), [X]),
    "tracer * same tracer": (lambda x: (x * x,), [X]),
    "two tracers": (lambda x, y: (x * y, x + y, x / y, x ** y), [np.abs(X) + 0.5, X + 3]),
    "NumPy scalar constant": (lambda x: (x * np.float64(2.0), np.float32(2) + x), [X]),
    "array constant": (lambda x: (x * X, X + x), [X]),
    "bool constant": (lambda x: (x * True,), [X]),
    "broadcast": (lambda x, m: (m * x[:4], x[:4] + m), [X, M]),
    "np.add and np.multiply": (lambda x, y: (np.add(x, y), np.multiply(2.0, y)), [X, X]),
    "view input": (_view_then_sin, [X]),
    "written view": (_written_view, [X]),
    "0-d values": (lambda x: (np.tanh(x[0]), x[0] * 2.0, np.sum(x) * x[1]), [X]),
    "large input": (lambda x: (np.tanh(x), x * 2.0, x + x), [np.ones(LARGE)]),
    "large result": (lambda a, b: (a * b, a + b),
                     [np.ones((64, 1)), np.ones((1, LARGE // 32))]),
    "float32": (lambda x: (np.tanh(x) * 2.0, x + 1), [X.astype(np.float32)]),
}


@pytest.mark.parametrize("name", PROGRAMS)
def test_the_short_paths_record_what_process_records(name):
    program, args = PROGRAMS[name]
    fast_tape, fast_flags, fast_outs = _record(program, args, general=False)
    tape, flags, outs = _record(program, args, general=True)
    assert fast_flags == flags
    assert len(fast_tape) == len(tape)
    for fast, node in zip(fast_tape, tape):
        if node is None:
            assert fast is None
            continue
        prim, vals, params, ans, parents = node
        assert fast[0] is prim and fast[2] == params
        assert tuple(fast[4]) == tuple(parents)
        assert len(fast[1]) == len(vals)
        assert all(_same_value(a, b) for a, b in zip(fast[1], vals))
        assert _same_value(fast[3], ans)
    for a, b in zip(fast_outs, outs):
        assert _same_value(a._val, b._val)


@pytest.mark.parametrize("name", PROGRAMS)
def test_the_short_paths_give_the_general_gradients(name, monkeypatch):
    program, args = PROGRAMS[name]

    def loss(*xs):
        return sum(np.sum(np.sin(o)) for o in program(*xs))

    fast = fl.gradient(loss, *args)
    monkeypatch.setattr(ReverseTrace, "unary", Trace.unary)
    monkeypatch.setattr(ReverseTrace, "binary", Trace.binary)
    general = fl.gradient(loss, *args)
    for a, b in zip(fast, general):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)


def test_a_closed_trace_refuses_on_the_short_paths():
    kept = []
    keep = kept.append  # (a list the function reaches itself gets the value, not the tracer)
    fl.gradient(lambda x: keep(x) or np.sum(x), X)
    (x,) = kept
    for use in (np.tanh, lambda x: x * 2.0, lambda x: 2.0 + x, lambda x: x * x):
        with pytest.raises(fl.DifferentiationError, match="escaped"):
            use(x)


def test_second_order_through_the_short_paths():
    def f(x):
        return np.sum(np.tanh(x) * x + 2.0 * np.sin(x))

    h = fl.hessian(f, X)
    t, s = np.tanh(X), np.sin(X)
    d1 = 1 - t ** 2  # d tanh
    d2 = -2 * t * d1  # d2 tanh
    expected = np.diag(d2 * X + 2 * d1 - 2.0 * s)
    np.testing.assert_allclose(h, expected, rtol=1e-12, atol=1e-12)
