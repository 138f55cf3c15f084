"""Zygote.jl's language-feature tests translated to Python (test/features.jl, structures.jl,
forward.jl, lib/lib.jl, lib/base.jl, lib/array.jl, lib/number.jl): checkpointing, closures,
structs (plain objects, dataclasses, namedtuples), tuples, dicts, keyword arguments, varargs,
loops, recursion, globals, try/except, nested derivatives, forward mode, mutation.

Differences from Zygote, by design (fl.gradient's docstring): integer arguments and fields
carry no gradient (Zygote promotes 2 to 2.0 and differentiates it); unused float arguments
get None, as in Zygote; writes into arrays are differentiated (Zygote refuses most of them);
and a closure's arrays are constants (the gradient is with respect to the arguments).
"""

import contextlib
import copy
import itertools
from collections import namedtuple
from dataclasses import dataclass

import numpy as np
import pytest

import fluxml as fl


class Ref:
    """Julia's mutable ``Ref``/``mutable struct`` with one field ``x``."""

    def __init__(self, x):
        self.x = x


@dataclass
class Imm:
    """An immutable Julia ``struct`` with one field ``x``."""

    x: object


class CountCalls:  # features.jl "gradient checkpointing"
    def __init__(self, f=lambda x: x):
        self.f, self.ncalls = f, 0

    def __call__(self, *x):
        self.ncalls += 1
        return self.f(*x)


def test_checkpointing():  # features.jl "gradient checkpointing"
    for f, args, dy in [(lambda x: x, (1.0,), 1.0), (max, (1.0, 2.0, 3.0), 1.0),
                        (np.matmul, (np.eye(2) + 1, np.eye(2) * 3), np.ones((2, 2)))]:
        y_ref, pb_ref = fl.pullback(f, *args)
        y_cp, pb_cp = fl.pullback(lambda *a: fl.checkpoint(f)(*a), *args)
        np.testing.assert_array_equal(y_cp, y_ref)
        for a, b in zip(pb_cp(dy), pb_ref(dy)):
            assert (a is None and b is None) or np.array_equal(a, b)
    # the layers are arguments (fluxml refuses a checkpointed function that sets state on an
    # object it closes over): the count each keeps is set once, as when it runs without
    # checkpoint (Zygote counts the recompute of the backward pass too: 2)
    f, g, h = CountCalls(), CountCalls(), CountCalls()
    y, pb = fl.pullback(lambda x: fl.checkpoint(lambda f, g, h, x: h(g(f(x))))(f, g, h, x), 4.0)
    assert y == 4.0 and pb(1.0) == (1.0,)
    assert f.ncalls == g.ncalls == h.ncalls == 1
    with pytest.raises(fl.DifferentiationError, match="closes over"):
        fl.pullback(lambda x: fl.checkpoint(lambda x: h(g(f(x))))(x), 4.0)

    def nested(x):  # "nested checkpointing"
        def outer(x):
            a = np.sin(x)

            def inner(a):
                b = np.cos(a)
                return fl.checkpoint(lambda a, b: max(a, b))(a, b)
            return fl.checkpoint(inner)(a)
        return fl.checkpoint(outer)(x)

    for x in (0.3, 1.2):
        want = fl.pullback(lambda x: max(np.sin(x), np.cos(np.sin(x))), x)[1](0.7)
        assert np.isclose(fl.pullback(nested, x)[1](0.7)[0], want[0])


def test_misc():  # features.jl "misc"
    assert fl.pullback(lambda x: x, 1.0)[1](2.0) == (2.0,)
    y, back = fl.pullback(lambda a, b: a * b, 2.0, 3.0)
    assert y == 6.0 and back(4.0) == (12.0, 8.0)
    assert fl.withgradient(lambda a, b: a * b, 2.0, 3.0) == (6.0, (3.0, 2.0))
    y, back = fl.pullback(lambda x: np.sum(x * x), np.array([1.0, 2, 3]))
    assert y == 14 and np.array_equal(back(1.0)[0], [2, 4, 6])
    assert fl.gradient(lambda x: 1, 2.0) == (None,)
    assert fl.gradient(lambda t: t[0] * t[1], (2.0, 3.0)) == ((3.0, 2.0),)


def test_global_flag_and_function():  # features.jl "misc": bool = true / false, fglobal
    assert fl.gradient(lambda x: _GLOBALS["f"](x), 2.0) == (5.0,)
    _GLOBALS["flag"] = True
    assert fl.gradient(_global_branch, 3.0) == (2.0,)
    _GLOBALS["flag"] = False
    assert fl.gradient(_global_branch, 3.0) == (1.0,)


_GLOBALS = {"flag": True, "f": lambda x: 5 * x}


def _global_branch(x):
    return 2 * x if _GLOBALS["flag"] else x


def _pow(x, n):
    r = 1
    while n > 0:
        n -= 1
        r *= x
    return r


def test_loops_recursion_refs():  # features.jl "misc": pow, pow_mut, pow_rec, myprod
    assert fl.gradient(_pow, 2.0, 3) == (12.0, None)

    def pow_mut(x, n):
        r = Ref(1.0)
        while n > 0:
            n -= 1
            r.x = r.x * x
        return r.x

    assert fl.gradient(pow_mut, 2.0, 3) == (12.0, None)

    def pow_rec(x, n):
        return 1 if n == 0 else x * pow_rec(x, n - 1)

    assert fl.gradient(pow_rec, 2.0, 3) == (12.0, None)

    def myprod(xs):
        s = 1
        for x in xs:
            s *= x
        return s

    np.testing.assert_array_equal(fl.gradient(myprod, np.array([1.0, 2, 3]))[0], [6, 3, 2])


def test_structs_tuples_closures_kwargs():  # features.jl "misc"
    @dataclass
    class Bar:
        a: float
        b: float

    assert fl.gradient(lambda a, b: (lambda c: c.a * c.b)(Bar(a, b)), 2.0, 3.0) == (3.0, 2.0)
    assert fl.gradient(lambda a, b: (lambda c: c[0] * c[1])((a, b)), 2.0, 3.0) == (3.0, 2.0)
    assert fl.gradient(lambda x, y: (lambda z: x * z)(y), 2.0, 3.0) == (3.0, 2.0)
    assert fl.gradient(lambda a, *b: a * b[0], 2.0, 3.0) == (3.0, 2.0)
    assert fl.gradient(lambda x, *a: x, 1.0, 1.0) == (1.0, None)
    assert fl.gradient(lambda a, b: (lambda xs: xs[0] * xs[1])([a, b]), 2.0, 3.0) == (3.0, 2.0)

    def kwmul(*, a=1, b):
        return a * b

    assert fl.gradient(lambda a, b: kwmul(a=a, b=b), 2.0, 3.0) == (3.0, 2.0)

    def f(*args, a=None, **kwargs):
        return g(a, *args, **kwargs)

    def g(*args, x=1, idx=slice(None), **kwargs):
        return x[idx]

    np.testing.assert_array_equal(
        fl.gradient(lambda x: np.sum(f(x=x, idx=slice(0, 1))), np.ones(2))[0], [1, 0])

    def with_dict(x):
        d = {}
        d["x"] = x
        return x * d["x"]

    assert fl.gradient(with_dict, 2.0) == (4.0,)
    # a function passed as an argument is static: no gradient (Zygote: its own adjoint)
    assert fl.gradient(lambda f, x: f(x), lambda x: 2 * x, 5.0) == (None, 2.0)
    # an integer field carries no gradient (Zygote: (value = 7.0,))

    class MyMutable:
        def __init__(self, value):
            self.value = value

    (g_int,) = fl.gradient(lambda m: m.value ** 2 + m.value, MyMutable(3))
    assert g_int.value is None
    (g_float,) = fl.gradient(lambda m: m.value ** 2 + m.value, MyMutable(3.0))
    assert g_float.value == 7.0


def test_control_flow_and_errors():  # features.jl "misc", "pow" (try/catch)
    def thrower(x):
        raise ValueError("fubar")

    with pytest.raises(ValueError, match="fubar"):
        fl.gradient(thrower, 1.0)

    def raise_if_negative(x):
        if x < 0:
            raise ValueError("foo")
        return x * 5

    assert fl.gradient(raise_if_negative, 2.0) == (5.0,)

    def three_way(x):
        if x > 0:
            x *= 2
        elif x < 0:
            x *= 3
        return x

    assert fl.gradient(three_way, 1.0) == (2.0,)

    def pow_try(x):
        try:
            return 2 * x
        except Exception:
            print("error")

    assert fl.gradient(pow_try, 1.0) == (2.0,)

    def caught_and_finally(x):
        y = x
        try:
            y = y * 2
            raise ValueError
        except ValueError:
            y = y * 3
        finally:
            y = y + x
        return y

    assert fl.gradient(caught_and_finally, 1.0) == (7.0,)


def _fallback(convert):
    def f(x):
        try:
            y = convert(x)
        except Exception:  # eagerly never taken: convert(x) works on a plain value
            y = 0.0
        return y + x
    return f


@pytest.mark.parametrize("convert", [
    float, lambda x: x.item(), lambda x: np.asarray(x) * 1.0, int, complex,
    lambda x: np.sum(np.union1d(x, x)),
    lambda x: np.fft.rfft(np.stack([x, x]) * 1j)[0],  # rfft refuses complex values
], ids=["float", "item", "asarray", "int", "complex", "no rule", "no rule (fft)"])
def test_a_refusal_caught_by_the_function_is_raised_when_it_returns(convert):
    # before: `except Exception` caught the refusal and the gradient of the other path came
    # back (1.0 instead of the 2.0 of the function that runs eagerly), silently
    with pytest.raises(fl.DifferentiationError):
        fl.gradient(_fallback(convert), np.float64(2.0))
    with pytest.raises(fl.DifferentiationError):
        fl.jvp(_fallback(convert), (np.float64(2.0),), (1.0,))

    def suppressed(x):
        y = 0.0
        with contextlib.suppress(Exception):
            y = convert(x)
        return y + x

    with pytest.raises(fl.DifferentiationError):
        fl.gradient(suppressed, np.float64(2.0))


def test_a_caught_inner_gradient_failure_is_the_eager_path():
    # an inner transform that fails fails as it does without the outer one, so falling
    # back from it is what the function does eagerly: the outer gradient is that path's
    def f(x):
        try:
            return fl.gradient(lambda y: float(y) * y, x)[0] * x
        except fl.DifferentiationError:
            return 3 * x

    assert f(2.0) == 6.0
    assert fl.gradient(f, 2.0) == (3.0,)


def test_nested_derivatives():  # features.jl "nested AD", forward.jl
    def d(f, x):
        return fl.gradient(f, x)[0]

    assert np.isclose(d(lambda x: d(np.sin, x), 0.5), -np.sin(0.5))
    assert d(lambda x: x * d(lambda y: x + y, 1.0), 1.0) == 1.0
    assert d(lambda x: x * d(lambda y: x * y, 1.0), 4.0) == 8.0  # no perturbation confusion
    assert np.isclose(d(lambda x: d(lambda y: d(np.sin, y), x), 1.0), -np.cos(1.0))

    def fwd(f, x):  # forward.jl's D(f, x) = pushforward(f, x)(1)
        return fl.jvp(f, (x,), (1.0,))[1]

    assert np.isclose(fwd(lambda x: np.sin(np.cos(x)), 0.5), -np.cos(np.cos(0.5)) * np.sin(0.5))
    assert np.isclose(fwd(lambda x: fwd(np.cos, x), 0.5), -np.cos(0.5))
    assert fwd(lambda x: x * fwd(lambda y: x * y, 1.0), 4.0) == 8.0
    assert fwd(lambda x: _pow(x, 3), 2.0) == 12.0

    def write_then_multiply(x):  # forward.jl: A[1, 1] = x; mul!(B, A, A)
        a = np.zeros((5, 5), like=x)
        b = np.zeros((5, 5), like=x)
        a[0, 0] = x
        np.matmul(a, a, out=b)
        return np.sum(b)

    assert fwd(write_then_multiply, 3.0) == 6.0
    assert fl.gradient(write_then_multiply, 3.0) == (6.0,)


def test_tuple_getindex():  # features.jl "tuple getindex"
    assert fl.gradient(lambda x: float(x.shape[1]), np.ones((2, 2, 2))) == (None,)
    assert fl.gradient(lambda x, y, z: sum((x, y, z)[0:2]), 7.0, 8.8, 9.9) == (1.0, 1.0, None)
    assert fl.gradient(lambda x, y, z: sum((x, y, z)[i] for i in (0, 1, 0)), 1.0, 2.0, 3.0) == \
        (2.0, 1.0, None)
    assert fl.gradient(lambda xs: sum(x[1] for x in xs), [(1.0, 2.0, 3.0), (4.0, 5.0, 6.0)]) == \
        ([(None, 1.0, None), (None, 1.0, None)],)
    assert fl.gradient(lambda xs: sum(x[1] * x[2] for x in xs),
                       [(1.0, 2.0, 3.0), (4.0, 5.0, 6.0)]) == \
        ([(None, 3.0, 2.0), (None, 6.0, 5.0)],)


def test_mutable_structs():  # features.jl "mutable struct, including Ref", accum_param bugs
    def baz(args):
        m = Ref(0.0)
        m.x = args[0]
        return m.x

    assert fl.pullback(baz, (1.0,))[1](1.0) == ((1.0,),)
    assert fl.gradient(lambda x: x[0].x ** 2, (Ref(3.0),))[0][0].x == 6.0
    assert fl.gradient(lambda x: x.x.x ** 3, Imm(Ref(4.0)))[0].x.x == 48.0
    assert fl.gradient(lambda x: x.x.x ** 3, Ref(Ref(4.0)))[0].x.x == 48.0
    (g,) = fl.gradient(lambda x: x[1].x.x ** 3, [Imm(Ref(4.0)), Ref(Ref(4.0))])
    assert g[0].x.x is None and g[1].x.x == 48.0
    y1 = np.array([3.0])
    (g,) = fl.gradient(lambda x: np.sum(x[0].x + x[0].x) ** 3, (Ref(y1),))
    np.testing.assert_array_equal(g[0].x, [216.0])
    (g,) = fl.gradient(lambda x: np.prod(x[0].x), [Ref(np.array([1.0, 3.0])),
                                                   Ref(np.array([2.0, 4.0]))])
    np.testing.assert_array_equal(g[0].x, [3.0, 1.0])
    assert g[1].x is None
    (g,) = fl.gradient(lambda r: np.sum(r.x[None, :] * np.array([1.0, 2, 3])[:, None]),
                       Ref(np.array([4.0, 5.0])))
    np.testing.assert_array_equal(g.x, [6.0, 6.0])

    class Getter:  # issue 1574: integer indices get None, the array its gradient
        def __init__(self, idxs, u):
            self.idxs, self.u = idxs, u

    (g,) = fl.gradient(lambda m: sum(m.u[i] for i in m.idxs), Getter([0, 1], np.ones(3)))
    assert g.idxs == [None, None]
    np.testing.assert_array_equal(g.u, [1.0, 1.0, 0.0])


def test_named_tuples_and_dicts():  # features.jl "NamedTuples", "Pairs", "Dict", kwargs
    nt = namedtuple("NT", "a b")
    assert fl.gradient(lambda x: x.a, nt(1.0, 2.0)) == (nt(1.0, None),)
    assert fl.gradient(lambda x: x[0].a, [nt(1.0, 2.0), nt(3.0, 4.0)]) == \
        ([nt(1.0, None), nt(None, None)],)
    assert fl.gradient(lambda x: x[0].a, [nt(1.0, 2.0), "three"]) == ([nt(1.0, None), None],)
    assert fl.gradient(lambda x: (lambda **kw: kw["x"])(x=x), 0.0) == (1.0,)

    def splat(**kwargs):
        return kwargs["x"] * kwargs["z"]

    assert fl.gradient(lambda d: splat(**d), {"x": 3.0, "y": 4.0, "z": 2.3}) == \
        ({"x": 2.3, "y": None, "z": 3.0},)
    assert fl.gradient(lambda d: {"x": d["x"]}["x"], {"x": 1.0, "y": 3.0}) == \
        ({"x": 1.0, "y": None},)
    assert fl.gradient(lambda x: (lambda: x["y"])(), {"y": 0.4}) == ({"y": 1.0},)  # #717
    (g,) = fl.gradient(lambda x: np.sum(x["data"]["x"]), {"data": {"x": np.ones(2)}})
    np.testing.assert_array_equal(g["data"]["x"], [1.0, 1.0])

    def f760(x):
        d = {}
        for i in range(1, 5):
            d[i] = i ** x
        return sum(d.values())

    assert np.isclose(fl.gradient(f760, 3.0)[0], 123.93054835019153)


def test_dict_get_and_iteration():  # lib/base.jl "Dict get", "Dict iteration"
    d = {"a": 2.0, "b": 3.0}
    assert fl.gradient(lambda d: d.get("a", 0.0), d) == ({"a": 1.0, "b": None},)
    g = fl.gradient(lambda d, default: d.get("missing", default), d, 10.0)
    assert g == ({"a": None, "b": None}, 1.0)

    def sumkv(d):
        s = 0.0
        for k, v in d.items():
            s += v
            if k == "b":
                s += v
        return s

    assert fl.gradient(sumkv, {"a": 3.0, "b": 4.0, "c": 5.0}) == \
        ({"a": 1.0, "b": 2.0, "c": 1.0},)


def test_accumulation_and_copies():  # features.jl "accumulation" (#905, #1233, #1113)
    def net(x1):
        xs = [x1, x1]
        for _ in range(8):
            xs.append(sum(xs))
        return xs[-1]

    np.testing.assert_array_equal(fl.gradient(lambda x: np.sum(net(x) ** 2), np.ones((4, 4)))[0],
                                  np.full((4, 4), 131072.0))

    def defensive_update(d, a):
        nd = copy.deepcopy(d)
        nd[1] = d[1] * a
        return nd

    (g,) = fl.gradient(lambda d: (lambda nd: np.sum(nd[1]) + np.sum(nd[2]))(
        defensive_update(d, 5.0)), {1: np.ones(1), 2: np.ones(1)})
    np.testing.assert_array_equal(g[1], [5.0])
    np.testing.assert_array_equal(g[2], [1.0])
    assert fl.gradient(lambda x: copy.deepcopy({"a": x})["a"], 2.0) == (1.0,)
    assert fl.gradient(lambda x: (lambda dc: dc["a"] + 3 * dc["b"])(
        copy.deepcopy({"a": x, "b": 2 * x})), 2.0) == (7.0,)


def test_tricky_broadcasting():  # features.jl "tricky broadcasting"
    assert fl.gradient(lambda x: np.sum(np.stack(x) + np.ones((2, 2))), (1.0, 2.0)) == \
        ((2.0, 2.0),)
    gt = fl.gradient(lambda x, p: np.prod(x ** np.stack(p)), np.array([3.0, 4]), (1.0, 2.0))
    gv = fl.gradient(lambda x, p: np.prod(x ** p), np.array([3.0, 4]), np.array([1.0, 2.0]))
    np.testing.assert_allclose(gt[0], gv[0])
    np.testing.assert_allclose(gt[1], gv[1])
    g = fl.gradient(lambda x, y: np.sum(x ** 2 + y[0]), np.array([1.0, 2, 3]), np.array([4.0, 5]))
    np.testing.assert_array_equal(g[0], [2, 4, 6])
    np.testing.assert_array_equal(g[1], [3, 0])
    g = fl.gradient(lambda xs: sum(False if x < 2 else x ** 2 for x in xs), np.array([1.0, 2, 3]))
    np.testing.assert_array_equal(g[0][1:], [4, 6])
    np.testing.assert_array_equal(fl.gradient(lambda x: np.sum(x + x[0]), np.array([1.0, 2, 3]))[0],
                                  [4, 1, 1])
    assert fl.gradient(lambda x: np.sum(1 - (x > 0)), np.ones(5)) == (None,)
    np.testing.assert_array_equal(fl.gradient(lambda x: np.sum(x - (x > 0)), np.ones(5))[0],
                                  np.ones(5))
    g = fl.gradient(lambda x, p: np.sum(x ** p), np.array([1.0, 2, 4]), np.array([1, -1, 2]))
    np.testing.assert_allclose(g[0], [1.0, -0.25, 8.0])
    assert g[1] is None  # integer powers: no gradient
    g = fl.gradient(lambda x, p: np.sum(x ** p), np.array([1.0, 2, 4]), -1)
    np.testing.assert_allclose(g[0], [-1.0, -0.25, -0.0625])
    # second order
    np.testing.assert_allclose(fl.gradient(
        lambda x: np.sum(fl.gradient(lambda y: np.sum(y ** 2), x)[0]), np.array([1.0, 2]))[0],
        [2, 2])
    np.testing.assert_allclose(fl.gradient(
        lambda x: np.sum(fl.gradient(lambda y: np.sum(np.sin(y)), x)[0]), np.array([1.0, 2]))[0],
        -np.sin([1.0, 2]))


def test_withgradient_aux():  # features.jl "withgradient"
    (val, z), (g,) = fl.withgradient(lambda x: (lambda z: (np.sum(z), z))(1 / x),
                                     np.array([1.0, 2, 4]))
    assert val == 1.75
    np.testing.assert_array_equal(z, [1.0, 0.5, 0.25])
    np.testing.assert_array_equal(g, [-1.0, -0.25, -0.0625])
    r = namedtuple("R", "div mul")
    assert fl.withgradient(lambda x, y: r(x / y, x * y), 3.0, 4.0) == \
        (r(0.75, 12.0), (0.25, -0.1875))
    f3 = lambda x: (np.sum(np.sin(x)), np.sum(np.cos(x)), np.sum(np.tan(x)))  # noqa: E731
    np.testing.assert_array_equal(fl.gradient(lambda x: f3(x)[0], np.array([1.0, 2, 3]))[0],
                                  fl.withgradient(f3, np.array([1.0, 2, 3]))[1][0])


def test_isdefined_logging_swap():  # features.jl "isdefined", "logging macros", "splats"
    def maybe(x):
        y = None
        if x > 0:
            y = 3 * x
        return y * 2 if y is not None else 42 * x

    assert fl.gradient(maybe, 2.0) == (6.0,)
    assert fl.gradient(maybe, -1.0) == (42.0,)

    def swap(x):  # 1198
        a, b = x, 2 * x
        for _ in range(3):
            a, b = b, a
        return a

    assert fl.gradient(swap, 1.0) == (2.0,)

    def rotate(x):
        v0, v1, v2 = x, 2 * x, 3 * x
        for _ in range(4):
            v0, v1, v2 = v1, v2, v0
        return v0

    assert fl.gradient(rotate, 1.0) == (2.0,)
    np.testing.assert_array_equal(fl.gradient(lambda x: max(*x), np.array([1.0, 2, 3]))[0],
                                  [0, 0, 1])
    assert fl.gradient(lambda x: min(*x), (1.0, 2.0, 3.0)) == ((1.0, None, None),)
    np.testing.assert_array_equal(fl.gradient(lambda x: np.sum(np.stack([*x])),
                                              np.array([1.0, 2, 3]))[0], [1, 1, 1])


def test_iterators():  # features.jl "Iterators", lib/array.jl product/zip/take
    g = fl.gradient(lambda xs: sum(x ** i for i, x in enumerate(xs, 1)), np.arange(1.0, 6.0))
    np.testing.assert_array_equal(g[0], [1, 4, 27, 256, 3125])
    g = fl.gradient(lambda xs, ys: sum(x / y for x, y in zip(xs, ys)), np.arange(10.0, 15.0),
                    np.arange(1.0, 11.0))
    np.testing.assert_allclose(g[1], np.concatenate([-np.arange(10.0, 15.0)
                                                     / np.arange(1.0, 6.0) ** 2, np.zeros(5)]))
    g = fl.gradient(lambda xs: sum(x ** 2 for x in xs if x % 2 == 0), np.arange(2.0, 10.0))
    np.testing.assert_array_equal(g[0], [4, 0, 8, 0, 12, 0, 16, 0])
    g = fl.gradient(lambda xs, ys: sum(x ** 2 + y for x, y in itertools.product(xs, ys)),
                    np.arange(1.0, 11.0), np.arange(3.0, 8.0))
    np.testing.assert_array_equal(g[0], np.arange(10.0, 101.0, 10))
    np.testing.assert_array_equal(g[1], np.full(5, 10.0))
    g = fl.gradient(lambda a: sum(a[i, j] for i in range(1) for j in range(2)), np.ones((2, 3)))
    np.testing.assert_array_equal(g[0], [[1, 1, 0], [0, 0, 0]])
    g = fl.gradient(lambda x: sum(y[1] * y[2] for y in itertools.product(x, x, x, x)),
                    np.array([1.0, 2, 3, 4]))
    np.testing.assert_allclose(g[0], [320, 320, 320, 320])
    g = fl.gradient(lambda x: sum(2 * y for y in itertools.islice(x, 4)), np.arange(1.0, 5.0))
    np.testing.assert_array_equal(g[0], [2, 2, 2, 2])


def test_number_rules():  # lib/number.jl "nograds", "literal_pow at zero", "flipsign/copysign"
    for f in (np.floor, np.ceil, np.round):
        assert fl.gradient(f, 1.0) == (0.0,)
    assert fl.gradient(lambda x, y: x // y, 1.0, 2.0) == (0.0, 0.0)
    assert fl.gradient(lambda a, b, c, d: a + b + c + d, 2.0, 3, 4.0, 5.0) == (1.0, None, 1.0, 1.0)
    for x in (0.8, -1.4):
        for y in (2.3, -0.7):
            gx, gy = fl.gradient(np.copysign, x, y)
            assert gx == np.sign(x * y) and gy == 0
    assert fl.gradient(lambda x: x ** 2, 0.0) == (0.0,)
    assert fl.gradient(lambda x: x ** 3, 0.0) == (0.0,)
    assert fl.gradient(lambda x: np.sqrt(x ** 2), 2.0) == (1.0,)
    assert fl.gradient(lambda x: np.sqrt(x ** 2), -2.0) == (-1.0,)
    # sqrt(x^2) at 0: the chain rule gives inf * 0 = nan (as JAX and PyTorch); Zygote
    # special-cases it to 0 (#1598). Not silently a number: nan.
    with np.errstate(all="ignore"):
        assert np.isnan(fl.gradient(lambda x: np.sqrt(x ** 2), 0.0)[0])


def test_module_constants_and_getfield():  # lib/lib.jl
    gamma = np.euler_gamma
    assert np.isclose(fl.gradient(lambda x: np.euler_gamma * x, 1.0)[0], gamma)
    i = 1
    assert fl.gradient(lambda p: p[i], (1.0, 2.0, 3.0)) == ((None, 1.0, None),)
    nt = namedtuple("NT", "a b")
    assert fl.gradient(lambda p: getattr(p, "b"), nt(1.0, 2.0)) == (nt(None, 1.0),)


def test_searchsorted_has_no_gradient():  # lib/array.jl #1156
    v = np.array([1.0, 2, 3, 4, 5])
    assert fl.gradient(lambda x: float(np.searchsorted(x, 3.5)), v) == (None,)
    g = fl.gradient(lambda x: x[np.searchsorted(x, 3.5)], v)
    np.testing.assert_array_equal(g[0], [0, 0, 0, 1, 0])  # the value read, not the position


def test_writes_into_arguments_stay_on_the_copy():  # Zygote refuses mutation; fluxml records it
    x = np.array([1.0, 2.0])

    def overwrite(x):
        x[0] = 5.0
        return np.sum(x)

    np.testing.assert_array_equal(fl.gradient(overwrite, x)[0], [0, 1])
    np.testing.assert_array_equal(x, [1.0, 2.0])

    def add_one(x):
        x += 1
        return np.sum(x ** 2)

    np.testing.assert_array_equal(fl.gradient(add_one, x)[0], [4, 6])
    np.testing.assert_array_equal(x, [1.0, 2.0])


def test_logging_and_formatting_are_transparent():  # features.jl "logging macros"
    import logging

    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(self.format(record))

    log = logging.getLogger("tests.zygote_spec")
    log.addHandler(Keep())
    log.setLevel(logging.INFO)
    log.propagate = False

    def loss(x):
        log.info("loss %.3f at %d", np.sum(x ** 2), x.size)  # printf style, formatted lazily
        text = f"{np.sum(x):.2f} {x[0]:.1e} " + format(x[1], ".1f")
        return np.sum(x ** 2), text

    # before: `%.3f` and f"{x:.2f}" of a traced value failed (float(x) refused, and no
    # __format__); logging swallowed its error, which the transform now raises
    (value, text), (g,) = fl.withgradient(loss, np.array([1.0, 2.0]))
    assert records == ["loss 5.000 at 2"]
    assert text == "3.00 1.0e+00 2.0"
    np.testing.assert_array_equal(g, [2.0, 4.0])
    (h,) = fl.gradient(lambda x: fl.gradient(lambda y: (log.info("%.1f", y), y ** 3)[1], x)[0],
                       2.0)
    assert h == 12.0 and records[-1] == "2.0"
    with pytest.raises(TypeError, match="unsupported format string"):  # as NumPy's
        fl.gradient(lambda x: (f"{x:.2f}", np.sum(x))[1], np.ones(2))


def test_logging_a_traced_value_inside_fl_compile(capsys):
    import logging

    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            try:
                records.append(self.format(record))
            except Exception:  # as logging's own handlers: report the error and go on
                self.handleError(record)

    log = logging.getLogger("tests.zygote_spec.compiled")
    log.addHandler(Keep())
    log.setLevel(logging.INFO)
    log.propagate = False

    def loss(x):
        value = np.sum(x ** 2)
        log.info("loss %.3f", value)  # no number while traced: logging reports it, goes on
        log.info("loss %s", value)
        log.info(f"loss {value:.3f}")  # the traced value named, as f"{value}"
        return value

    x = np.array([1.0, 2.0])
    # before (5bb59a5): the error logging reported was also noted as the trace's refusal, so
    # fl.compile raised CompileError: float(x) needs a concrete value
    compiled = fl.compile(loss)
    assert compiled(x) == 5.0
    value, (g,) = fl.compile(lambda x: fl.withgradient(loss, x))(x)
    assert value == 5.0
    np.testing.assert_array_equal(g, 2 * x)
    assert len(records) == 4 and all("f64[]" in r for r in records), records
    assert capsys.readouterr().err.count("log message formats a traced value as a number") == 2
    assert compiled(3 * x) == 45.0  # the compiled program: no trace, no logging
    assert len(records) == 4

    def own_fallback(x):  # a function's own `except` around the conversion stays refused
        try:
            text = "%.3f" % x[0]  # noqa: UP031 (the % formatting under test)
        except Exception:
            return x
        return x + len(text)

    with pytest.raises(fl.CompileError, match="formatting a traced value as a number"):
        fl.compile(own_fallback)(x)


def test_hessian_diaghessian_jacobian():  # test/utils.jl
    rng = np.random.default_rng(7)
    np.testing.assert_allclose(fl.hessian(lambda x: x[0] * x[1], rng.standard_normal(2)),
                               [[0, 1], [1, 0]])
    np.testing.assert_allclose(
        fl.hessian(lambda x: np.sum(x ** 3), np.array([[1.0, 2], [3, 4]])).reshape(4, 4),
        np.diag([6.0, 12, 18, 24]))  # row-major: Julia's Diagonal([6, 18, 12, 24])
    assert np.isclose(fl.hessian(np.sin, np.pi / 2), -1)
    for f, x in [(np.sin, 1j * np.pi), (lambda x: x + 1j, np.pi),
                 (lambda x: x, rng.standard_normal(2))]:
        with pytest.raises(fl.DifferentiationError):
            fl.hessian(f, x)
        with pytest.raises(fl.DifferentiationError):
            fl.diaghessian(f, x)
    np.testing.assert_array_equal(fl.diaghessian(lambda x: x[0] * x[1] ** 2,
                                                 np.array([1.0, np.pi]))[0], [0, 2])
    xs, y = rng.standard_normal((2, 3)), rng.random()

    def f34(xs, y):  # a non-diagonal Hessian, two arguments
        return xs[0, 0] * (np.sum(xs ** np.arange(1, 4)) + y ** 4)

    dx, dy = fl.diaghessian(f34, xs, y)
    np.testing.assert_allclose(dx.ravel(), np.diag(fl.hessian(lambda x: f34(x, y), xs)
                                                   .reshape(6, 6)))
    assert np.isclose(dy, fl.hessian(lambda y: f34(xs, y), y))
    np.testing.assert_array_equal(fl.jacobian(lambda x: x, np.array([1.0, 2])), np.eye(2))
    y, j = fl.withjacobian(lambda x: x, np.array([1.0, 2]))
    assert np.array_equal(y, [1, 2]) and np.array_equal(j, np.eye(2))
    np.testing.assert_allclose(fl.jacobian(lambda a: a ** 2 * 1.0, np.array([1.0, 2, 3])),
                               np.diag([2.0, 4, 6]))
    np.testing.assert_allclose(fl.jacobian(lambda x: np.array([1.0, 2, 3]) ** 2 * x, 1.0),
                               [1, 4, 9])
    np.testing.assert_array_equal(fl.jacobian(lambda a: np.sum(a * 4.0) + 5,
                                              np.array([1.0, 2, 3])), [4, 4, 4])
    np.testing.assert_allclose(  # prod(a, dims=1): Julia's [3 1 0 0; 0 0 4 2] in row order
        fl.jacobian(lambda a: np.prod(a, axis=0), np.array([[1.0, 2], [3, 4]])).reshape(2, 4),
        [[3, 0, 1, 0], [0, 4, 0, 2]])
    np.testing.assert_allclose(
        fl.jacobian(lambda xs: np.where(xs > 0, xs ** 3, 0), np.array([1.0, 2, -3, 4, -5])),
        np.diag([3.0, 12, 0, 48, 0]))
    np.testing.assert_array_equal(fl.jacobian(lambda x: np.stack([x, 2 * x]), np.array(np.pi)),
                                  [1, 2])
    with pytest.raises(fl.DifferentiationError):
        fl.jacobian(lambda x: x, np.array([1, 2, 3 + 1j]))


def test_derivatives_of_derivatives():  # test/utils.jl "adjoints of ForwardDiff functions"
    rng = np.random.default_rng(8)

    def grad_exp(x):
        return fl.gradient(lambda x: np.sum(np.exp(x + 1)), x)[0]

    x1 = rng.standard_normal((3, 2))
    np.testing.assert_allclose(fl.jacobian(grad_exp, x1).reshape(6, 6),
                               np.diag(np.exp(x1 + 1).ravel()))
    assert fl.gradient(lambda x: fl.jvp(lambda x: x ** 4, (x,), (1.0,))[1], 7.0) == \
        (4 * 3 * 7.0 ** 2,)
    np.testing.assert_allclose(
        fl.jacobian(lambda x: fl.jvp(lambda x: np.stack([x, x ** 2, x ** 3]), (x,), (1.0,))[1],
                    np.array(np.pi)), [0, 2, 6 * np.pi])

    def f(x):  # issue 769
        return np.stack([2 * x[0] ** 2 + x[0], x[1] ** 2 * x[0]])

    x = np.array([2.0, 3.2])
    # d/dx of sum(J) = [4 + 0 + 2 x2 ... ] by hand: J = [[4 x1 + 1, 0], [x2^2, 2 x1 x2]]
    np.testing.assert_allclose(fl.gradient(lambda x: np.sum(fl.jacobian(f, x)), x)[0],
                               [4 + 2 * x[1], 2 * x[1] + 2 * x[0]])
    np.testing.assert_allclose(fl.gradient(lambda x: np.prod(fl.jacobian(f, x)), x)[0], [0, 0])

    def g1218(x, y):  # issue 1218 (broken in Zygote: nothing)
        return fl.gradient(lambda x: np.sum(x) * np.sum(y), x)[0][0]

    np.testing.assert_allclose(fl.gradient(lambda y: g1218(np.array([0.1]), y), rng.random(5))[0],
                               np.ones(5))


@pytest.mark.parametrize("convert", [lambda x: float(x[0]) * np.ones(2),
                                     lambda x: np.asarray(x) * 1.0,
                                     lambda x: np.unique(x)[0] * x],
                         ids=["float", "asarray", "no rule"])
def test_a_refusal_caught_inside_fl_compile_is_raised(convert):
    # the same under fl.compile: before, float(x) or np.asarray(x) caught by the function
    # compiled the fallback, a program computing x where the function computes 2 x, silently
    def f(x):
        try:
            y = convert(x)
        except Exception:
            y = x * 0
        return y + x

    np.testing.assert_array_equal(f(np.ones(2)), [2.0, 2.0])
    with pytest.raises(fl.CompileError):
        fl.compile(f)(np.ones(2))
