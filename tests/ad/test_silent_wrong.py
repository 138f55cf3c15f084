"""Regression tests for paths that once returned a wrong value without an error: in-place
methods, writes through views NumPy makes, stop_gradient, and derivatives at points where a
formula divides by zero. Each class has a property test beside the reproducer."""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fluxml as fl
from fluxml.testing import check_grads

FLOATS = st.floats(-10, 10, allow_nan=False, allow_subnormal=False)


# --- in-place methods: sort and partition reorder the array itself --------------------------------

def test_sort_method_sorts_in_place():
    def f(x):
        u = x * 1.0
        u.sort()
        return np.sum(u * np.array([1.0, 2, 3, 4]))

    x = np.array([0.5, -0.2, 0.9, 0.1])
    value, (g,) = fl.withgradient(f, x)
    assert value == pytest.approx(f(x.copy()))
    np.testing.assert_array_equal(g, [3.0, 1.0, 4.0, 2.0])


@settings(max_examples=30, deadline=None)
@given(hnp.arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(1, 4)),
                  elements=st.integers(-50, 50).map(float), unique=True),  # no near-ties
       st.sampled_from([0, 1, -1]), st.sampled_from(["sort", "partition"]))
def test_in_place_reorderings_match_numpy(m, axis, method):
    w = np.arange(m.size, dtype=float).reshape(m.shape)

    def f(x):
        u = x * 1.0
        alias = u  # another name for the same array sees the reordering
        if method == "sort":
            assert u.sort(axis=axis) is None
        else:
            assert u.partition(0, axis=axis) is None
        return np.sum(alias * w)

    value, (g,) = fl.withgradient(f, m)
    assert value == pytest.approx(f(m.copy()))
    if method == "sort":  # the gradient of entry i is the weight of the place it moved to
        expected = np.empty_like(w)
        np.put_along_axis(expected, np.argsort(m, axis=axis), w, axis=axis)
        np.testing.assert_array_equal(g, expected)
    check_grads(f, m, order=1)


# --- writes through the views NumPy returns ------------------------------------------------------

A3 = np.arange(24.0).reshape(2, 3, 4) + 1
SQ = np.arange(9.0).reshape(3, 3) + 1

# Every function for which NumPy may return a view of its argument.
VIEWS = {
    "slice": (lambda x: x[1:, ::2], A3),
    "ellipsis": (lambda x: x[..., 0], A3),
    "reshape": (lambda x: np.reshape(x, (6, 4)), A3),
    "ravel": (lambda x: np.ravel(x), A3),
    "squeeze": (lambda x: np.squeeze(x[:1]), A3),
    "squeeze method": (lambda x: x[:1].squeeze(), A3),
    "expand_dims": (lambda x: np.expand_dims(x, 0), A3),
    "T": (lambda x: x.T, A3),
    "mT": (lambda x: x.mT, A3),
    "transpose": (lambda x: np.transpose(x, (1, 0, 2)), A3),
    "swapaxes": (lambda x: np.swapaxes(x, 0, 2), A3),
    "moveaxis": (lambda x: np.moveaxis(x, 0, -1), A3),
    "rollaxis": (lambda x: np.rollaxis(x, 2), A3),
    "matrix_transpose": (lambda x: np.matrix_transpose(x), A3),
    "atleast_3d": (lambda x: np.atleast_3d(x[0]), A3),
    "real": (lambda x: np.real(x), A3),
    "real attribute": (lambda x: x.real, A3),
    "imag": (lambda x: np.imag(x), A3),
    "einsum diagonal": (lambda x: np.einsum("ii->i", x), SQ),
    "einsum transpose": (lambda x: np.einsum("ijk->kji", x), A3),
    "einsum batched diagonal": (lambda x: np.einsum("...ii->...i", x), np.stack([SQ, SQ])),
    "einsum sum (a copy)": (lambda x: np.einsum("ij->i", x), SQ),
    "diagonal": (lambda x: np.diagonal(x), SQ),
    "diag": (lambda x: np.diag(x), SQ),
    "broadcast_to": (lambda x: np.broadcast_to(x, (2,) + x.shape), A3),
    "split": (lambda x: np.split(x, 2)[1], A3),
    "array_split": (lambda x: np.array_split(x, 2, axis=-1)[1], A3),
    "hsplit": (lambda x: np.hsplit(x, 3)[0], SQ),
    "dsplit": (lambda x: np.dsplit(x, 2)[1], A3),
    "unstack": (lambda x: np.unstack(x)[1], A3),
    "flip": (lambda x: np.flip(x), A3),
    "fliplr": (lambda x: np.fliplr(x), SQ),
    "flipud": (lambda x: np.flipud(x), A3),
    "rot90": (lambda x: np.rot90(x), SQ),
    "trim_zeros": (lambda x: np.trim_zeros(np.ravel(x)), A3),
    "view": (lambda x: x.view(), A3),
    "sliding_window_view": (lambda x: np.lib.stride_tricks.sliding_window_view(x, 2, -1), A3),
}


@pytest.mark.parametrize("name", list(VIEWS))
def test_writes_through_views_as_numpy(name):
    """A write into the result reaches the argument exactly when NumPy's does; where NumPy
    refuses (a read-only view) or fluxml cannot express the write, a clear error."""
    fn, base = VIEWS[name]

    def f(x):
        y = x * 1.0
        v = fn(y)
        v[(0,) * v.ndim] = -100.0
        return y * x

    reference = base.copy()
    try:
        expected = f(reference)
    except ValueError as e:  # NumPy's read-only views
        assert "read-only" in str(e) or "imaginary" in str(e)
        with pytest.raises((fl.DifferentiationError, ValueError), match="read-only"):
            fl.pullback(f, base)
        return
    value, _ = fl.pullback(f, base)
    np.testing.assert_array_equal(value, expected)
    check_grads(f, base, order=1)


def test_writes_through_real_parts():
    def f(x):
        y = x * 1.0
        y.real[0] = 5.0
        np.real(y)[1] *= x[0]
        return np.sum(y * y)

    x = np.array([1.5, 2.0, -1.0])
    value, (g,) = fl.withgradient(f, x)
    assert value == pytest.approx(f(x.copy()))
    np.testing.assert_allclose(g, [2 * 1.5 * 2.0 ** 2, 2 * 1.5 ** 2 * 2.0, -2.0])  # y1 = x0 x1


def test_writes_through_einsum_diagonal():
    def f(x):
        a = np.outer(x, x)
        d = np.einsum("ii->i", a)
        d[:] = 0.0
        return np.sum(a)

    x = np.array([1.0, 2.0])
    value, (g,) = fl.withgradient(f, x)
    assert value == f(x.copy()) == 4.0
    np.testing.assert_array_equal(g, [4.0, 2.0])


def test_view_collapses_and_flat_writes():
    def f(x):
        y = x * 1.0
        for _ in range(600):  # NumPy collapses view chains; so does fluxml
            y = y[:].reshape(-1)
        y.flat[1] = 7.0
        y.T.flat[[0, 2]] = x[:2] * 3
        return np.sum(y * x)

    x = np.arange(1.0, 5.0)
    value, _ = fl.pullback(f, x)
    assert value == f(x.copy())
    check_grads(f, x, order=1)


# --- stop_gradient --------------------------------------------------------------------------------

def test_stop_gradient_result_is_the_callers_own():
    x = np.array([1.0, 2.0])

    def f(x):
        s = fl.stop_gradient(x)
        s[0] = 100.0  # writes into the result reach neither the tape nor the argument
        y = x * 2.0
        t = fl.stop_gradient(y)
        t[1] = -5.0
        return np.sum(x * x) + np.sum(y * y)

    g = fl.gradient(f, x)[0]
    np.testing.assert_array_equal(g, 2 * x + 8 * x)
    np.testing.assert_array_equal(x, [1.0, 2.0])
    # the same on plain arrays, so that code behaves alike with and without a transform
    f(x)
    np.testing.assert_array_equal(x, [1.0, 2.0])


# --- derivatives where a formula divides by zero --------------------------------------------------

def test_std_over_one_element():
    assert fl.gradient(np.std, np.array([1.0]))[0] == 0.0
    g = fl.gradient(lambda x: np.sum(np.std(x, axis=0)), np.ones((1, 3)))[0]
    np.testing.assert_array_equal(g, np.zeros((1, 3)))
    np.testing.assert_array_equal(fl.hessian(np.std, np.array([2.0])), [[0.0]])
    # equal entries: the tip of a cone; the documented convention is the subgradient 0
    np.testing.assert_array_equal(fl.gradient(np.std, np.full(3, 2.0))[0], np.zeros(3))


@settings(max_examples=25, deadline=None)
@given(hnp.arrays(np.float64, hnp.array_shapes(min_dims=2, max_dims=3, max_side=3),
                  elements=FLOATS), st.data())
def test_std_with_axes_of_length_one(x, data):
    axis = data.draw(st.integers(0, x.ndim - 1))
    x = np.take(x, [0], axis=axis)  # an axis of length 1: the std along it is constant 0
    g = fl.gradient(lambda x: np.sum(np.std(x, axis=axis)), x)[0]
    np.testing.assert_array_equal(g, np.zeros_like(x))


# --- dicts written in another key order: paired by key, not by position ------------------------

def test_a_dict_in_another_key_order_pairs_by_key():
    """A tangent, a cotangent or a backward rule's cotangent written as a dict with its keys in
    another order than the primal's once paired leaves by position: a silently wrong
    derivative (found by tests/ode/fuzz_sensitivity.py through an ODE's tree state)."""
    d = {"x": 1.0, "v": 2.0}

    def f(d):
        return 1.0 * d["x"] + 100.0 * d["v"]

    assert fl.jvp(f, (d,), ({"v": 0.0, "x": 1.0},))[1] == 1.0
    _, back = fl.pullback(lambda d: {"a": 2 * d["x"], "b": 3 * d["v"]}, d)
    assert back({"b": 1.0, "a": 0.0}) == ({"x": 0.0, "v": 3.0},)

    @fl.custom_vjp
    def g(d):
        return 2.0 * d["x"] + 3.0 * d["v"]

    g.defvjp(lambda d: (g.fun(d), None), lambda res, ct: ({"v": 3.0 * ct, "x": 2.0 * ct},))
    assert fl.gradient(g, d) == ({"x": 2.0, "v": 3.0},)


class _Holder:
    def __init__(self, **fields):
        self.__dict__.update(fields)


def test_an_object_holding_a_dict_in_another_key_order_pairs_by_key():
    """Inside objects too: a dict they hold, and their attributes set in another order."""
    p = _Holder(d={"a": 1.0, "b": 2.0}, s=3.0)
    t = _Holder(s=0.0, d={"b": 0.0, "a": 1.0})  # d/da only, attributes in another order

    def f(h):
        return h.d["a"] + 10.0 * h.d["b"] + 100.0 * h.s

    assert fl.jvp(f, (p,), (t,))[1] == 1.0
    _, back = fl.pullback(lambda x: _Holder(d={"a": x, "b": 2 * x}), 1.0)
    assert back(_Holder(d={"b": 0.0, "a": 1.0})) == (1.0,)


def test_a_dict_with_other_keys_is_a_clear_error():
    d = {"x": 1.0, "v": 2.0}
    with pytest.raises(ValueError, match=r"jvp: the tangents .*keys \['x', 'w'\]"):
        fl.jvp(lambda d: d["x"] * d["v"], (d,), ({"x": 1.0, "w": 0.0},))
    _, back = fl.pullback(lambda d: {"a": d["x"], "b": d["v"]}, d)
    with pytest.raises(ValueError, match="pullback: the cotangent"):
        back({"a": 1.0, "c": 0.0})


@pytest.mark.parametrize("write", [
    lambda z: z.real.__setitem__(Ellipsis, z.real * 3.0),
    lambda z: np.imag(z).__setitem__(0, 7.0),
    lambda z: z.real[1:][::-1].__setitem__(0, 1.0),  # through a chain of views above it
    lambda z: np.add(z.real, 1.0, out=z.real),
])
def test_a_write_through_the_parts_of_a_complex_array_is_refused(write):
    """`z.real[...] = v` writes z in NumPy (the parts are views); under a transform the write
    changed a copy and z kept its values, silently (a wrong value and gradient): now refused
    by name. Reading the parts, and views of them, are unchanged."""
    def f(x):
        z = x * (1.0 + 2.0j)
        write(z)
        return np.sum(np.abs(z) ** 2)

    with pytest.raises(fl.DifferentiationError, match="part of a traced complex array"):
        fl.gradient(f, np.ones(4))

    def g(x):
        z = x * (1.0 + 2.0j)
        return np.sum(z.real[1:][::-1] * np.arange(3.0)) + np.sum(np.imag(z) ** 2)

    x = np.arange(4.0) / 3
    (got,) = fl.gradient(g, x)
    np.testing.assert_allclose(got, [8 * x[0], 2 + 8 * x[1], 1 + 8 * x[2], 8 * x[3]])


def test_einsum_with_the_operands_dtype_is_a_view():
    """Review of 4ff9ee5: np.einsum('ij->ji', y, dtype=y.dtype) is a view of y in NumPy (a
    write through it reaches y); a dtype= cast copied the operand first, so the write was
    lost, silently."""
    def g(x):
        y = x * 2.0
        t = np.einsum("ij->ji", y, dtype=np.float64)
        t[0, 1] = -1.0
        return np.sum(y * np.arange(6.0).reshape(2, 3))

    x = np.arange(6.0).reshape(2, 3)
    assert fl.jvp(g, (x,), (np.ones_like(x),))[0] == g(x)
    np.testing.assert_array_equal(fl.gradient(g, x)[0], [[0, 2, 4], [0, 8, 10]])


def test_setting_the_parts_of_a_traced_array():
    """`x.real = v` writes a real array as NumPy does; a complex one's parts are refused by
    name, `x.imag = v` of a real array raises NumPy's TypeError (AttributeError before)."""
    def f(x):
        y = x * 1.0
        y.real = 5.0
        return np.sum(y * x)

    x = np.arange(3.0)
    assert fl.gradient(f, x)[0].tolist() == [5.0, 5.0, 5.0]

    def complex_part(x):
        z = x * (1 + 1j)
        z.imag = 0.0
        return np.sum(np.abs(z))

    with pytest.raises(fl.DifferentiationError, match="imag part of a traced complex array"):
        fl.gradient(complex_part, x)

    def imag_of_real(x):
        y = x * 1.0
        y.imag = 1.0
        return np.sum(y)

    with pytest.raises(TypeError, match="does not have imaginary part to set"):
        fl.gradient(imag_of_real, x)


# --- one element named twice in two spellings: -2 and 4 of a length-6 axis ----------------------

def _written(idx, op):
    def f(x):
        y = x * 1.0
        if op == "add":
            y[idx] += x[:len(idx[0])] ** 2  # y[idx] = y[idx] + v: the last write stays
        else:
            y[idx] = x[:len(idx[0])] ** 2
        return np.sum(y * np.arange(1.0, 7.0).reshape(y.shape))
    return f


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-6, 5), min_size=1, max_size=5), st.sampled_from(["add", "set"]))
def test_repeats_spelled_with_negative_indices_keep_the_last_write(indices, op):
    # (compared as written, -2 and 4 were two elements: both writes got the derivative)
    x = np.linspace(0.1, 0.6, 6)
    f = _written((np.array(indices),), op)
    same = _written((np.array(indices) % 6,), op)  # every repeat spelled alike
    g, = fl.gradient(f, x)
    np.testing.assert_allclose(g, fl.gradient(same, x)[0], rtol=1e-13)
    np.testing.assert_allclose(g, fl.jacobian(f, x, mode="fwd"), rtol=1e-13)


def test_a_2d_repeat_spelled_twice_and_one_beside_a_slice():
    x = np.linspace(0.1, 0.6, 6)

    def pairs(x):
        y = x.reshape(2, 3) * 1.0
        y[[0, -2], [1, 1]] = x[:2] ** 2  # (0, 1) twice: the last write stays
        return np.sum(y * np.arange(1.0, 7.0).reshape(2, 3))

    np.testing.assert_allclose(fl.gradient(pairs, x)[0], [1, 0.8, 3, 4, 5, 6], rtol=1e-13)

    def beside_a_slice(x):
        y = x.reshape(2, 3) * 1.0
        y[:, [0, -3]] = x[:4].reshape(2, 2) ** 2
        return np.sum(y)

    with pytest.raises(fl.DifferentiationError, match="names one element twice"):
        fl.gradient(beside_a_slice, x)


def test_np_put_takes_negative_indices_as_numpy():
    def f(x):
        y = x * 1.0
        np.put(y, [-1], x[0] ** 2)
        return np.sum(y * np.arange(1.0, 7.0))

    x = np.linspace(0.1, 0.6, 6)
    np.testing.assert_allclose(fl.gradient(f, x)[0], [2.2, 2, 3, 4, 5, 0], rtol=1e-13)
    with pytest.raises(IndexError, match="index 6 is out of bounds for axis 0 with size 6"):
        fl.gradient(lambda x: np.sum(np.put(x * 1.0, [6], 1.0) or x), x)


# --- a ufunc's where=: NumPy computes nothing where the mask is False ---------------------------

def test_safe_division_with_where_has_no_nan_derivative():
    a, b = np.array([1.0, 2.0, 3.0, 4.0]), np.array([2.0, 0.0, -1.0, 0.0])

    def f(a, b):
        out = np.zeros_like(a)
        np.divide(a, b, out=out, where=b != 0)
        return np.sum(out)

    def root(x):
        out = np.zeros_like(x)
        np.sqrt(x, out=out, where=x > 0)
        return np.sum(out)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (nor a 0 / 0 computed in the backward pass)
        ga, gb = fl.gradient(f, a, b)
        gx, = fl.gradient(root, np.array([4.0, -1.0, 0.0, 1.0]))
    np.testing.assert_array_equal(ga, [0.5, 0, -1, 0])
    np.testing.assert_array_equal(gb, [-0.25, 0, -3, 0])
    np.testing.assert_array_equal(gx, [0.25, 0, 0, 0.5])


# --- a complex result of a real argument ---------------------------------------------------------

def test_jacobian_of_a_complex_result_keeps_its_imaginary_part():
    x = np.array([0.5, 1.5])
    f = lambda x: np.exp(1j * x)  # noqa: E731
    expected = np.diag(1j * np.exp(1j * x))
    np.testing.assert_allclose(fl.jacobian(f, x), expected, rtol=1e-14)
    np.testing.assert_allclose(fl.jacobian(f, x, mode="fwd"), expected, rtol=1e-14)
    with pytest.raises(fl.DifferentiationError, match=r"mode='rev'\) of a complex result"):
        fl.jacobian(f, x, mode="rev")


def test_matmul_in_place_into_a_plain_array_names_the_plain_buffer():
    def f(a):
        y = np.eye(3)
        y @= a.reshape(3, 1) * np.ones((1, 3))
        return np.sum(y)

    with pytest.raises(fl.DifferentiationError, match=r"np.matmul\(\.\.\., out=buf\): `buf` is a "
                                                      r"plain NumPy array"):
        fl.gradient(f, np.array([1.0, 2.0, 3.0]))


# --- a user's rules written in NumPy's style ---------------------------------------------------

def test_custom_rules_that_write_into_what_they_are_handed():
    # the cotangent (tangent) handed to the rule was the one other consumers read, or the
    # caller's own tangent: `g *= ...` changed theirs, silently
    x0, w = np.array([0.3, -0.7, 1.2, 0.5]), np.array([1.0, 2.0, 3.0, 4.0])

    @fl.custom_vjp
    def mysin(x):
        return np.sin(x)

    def bwd(res, g):
        g *= np.cos(res)
        return (g,)

    mysin.defvjp(lambda x: (np.sin(x), x), bwd)
    g, = fl.gradient(lambda x: np.sum((mysin(x ** 2) + x ** 2) * w), x0)
    np.testing.assert_allclose(g, (w * np.cos(x0 ** 2) + w) * 2 * x0, rtol=1e-14)

    @fl.custom_jvp
    def mysin2(x):
        return np.sin(x)

    def rule(p, t):
        dt = t[0]
        dt *= np.cos(p[0])
        return np.sin(p[0]), dt

    mysin2.defjvp(rule)
    v = w.copy()
    _, tangent = fl.jvp(lambda x: mysin2(x) + x, (x0,), (v,))
    np.testing.assert_allclose(tangent, w * np.cos(x0) + w, rtol=1e-14)
    np.testing.assert_array_equal(v, w)


@pytest.mark.parametrize("wrong", [lambda g: np.sum(g), lambda g: g[:1], lambda g: g[:, None]])
def test_a_custom_cotangent_of_another_shape_is_refused(wrong):
    # (broadcast, a summed cotangent gave every entry the sum, silently)
    @fl.custom_vjp
    def f(x):
        return np.sin(x)

    f.defvjp(lambda x: (np.sin(x), x), lambda res, g: (wrong(g * np.cos(res)),))
    with pytest.raises(TypeError, match=r"cotangent for argument leaf 0 has shape .*; the "
                                        r"argument has shape \(4,\)"):
        fl.gradient(lambda x: np.sum(f(x)), np.ones(4))
