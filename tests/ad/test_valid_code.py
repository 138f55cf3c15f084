"""Valid NumPy code that once crashed or was refused under a transform: ndarray attributes
and methods, casts, creation from traced values, scalar outputs, higher derivatives through
0-d values, long chains of views."""

import numpy as np
import pytest

import fluxml as fl
from fluxml.testing import check_grads

X = np.arange(1.0, 7.0).reshape(2, 3)


def _same_as_numpy(f, x, order=1):
    value, _ = fl.pullback(f, x)
    for got, want in zip(fl.leaves(value), fl.leaves(f(x.copy()))):
        np.testing.assert_array_equal(got, want)
    check_grads(f, x, order=order)


def test_memory_attributes():
    seen = {}

    def f(x):
        y = x * 1.0
        v = y.T
        seen.update(strides=y.strides, itemsize=y.itemsize, nbytes=y.nbytes,
                    c=y.flags["C_CONTIGUOUS"], f=v.flags.f_contiguous, own=y.flags.owndata,
                    view_own=v.flags.owndata, base=v.base is y, no_base=y.base is None,
                    diag_writeable=np.diagonal(y).flags.writeable)
        with pytest.raises(fl.DifferentiationError, match="flags"):
            y.flags.writeable = False
        return y

    fl.pullback(f, X)
    assert seen == dict(strides=X.strides, itemsize=8, nbytes=48, c=True, f=True, own=True,
                        view_own=False, base=True, no_base=True, diag_writeable=False)


def test_view_flat_shape_resize_round():
    def f(x):
        y = x * 1.0
        v = y.view()
        v[0, 0] = x[1, 1] ** 2  # reaches y
        y.flat[4] = 3.0 * x[0, 2]
        y.T.flat[[1, 2]] = x[0, :2]  # positions in the transposed order
        total = sum(y.flat) + y.flat[-1]
        z = y.copy()
        z.shape = (3, 2)
        z.resize((4, 2))  # zeros appended, as NumPy's resize method
        return total * z + round(y[0, 0] * 1.234, 2) + np.round(x, 1)[0, 0]

    _same_as_numpy(lambda x: f(x)[:, 0], X)


def test_shape_and_resize_refused_on_views():
    def f(x):
        y = x * 1.0
        v = y[:1]
        with pytest.raises(fl.DifferentiationError, match="shape"):
            y.shape = (6,)
        with pytest.raises(ValueError, match="resize"):
            v.resize(3)
        with pytest.raises(fl.DifferentiationError, match="reinterprets"):
            y.view(np.float32)
        assert y.view(np.int64).dtype == np.int64  # bits, no derivative: a plain array
        return y

    fl.pullback(f, X)


def test_partition_argpartition_methods():
    x = np.array([0.4, -1.0, 2.5, 0.1, 1.7])

    def f(x):
        u = x * 1.0
        k = u.argpartition(2)
        u.partition(2)
        return u * np.arange(5.0) + x[k]

    _same_as_numpy(f, x)


def test_casts_and_creation_from_traced_values():
    x = np.array([1.5, -2.3, 3.4])  # away from integers: the casts are locally constant

    def f(x):
        n = np.int64(x[2])  # an integer cast cuts the derivative, as x.astype(int)
        flag = np.bool_(x[0])
        a = np.append([1.0, 2.0], x)
        b = np.full_like(x, x[0] ** 2)
        c = np.full_like(x, x[1], dtype=int)  # integer result: no derivative
        return a[2:] * n + b * flag + c

    _same_as_numpy(f, x)
    with pytest.raises(fl.DifferentiationError, match="like="):
        fl.gradient(lambda x: np.sum(np.full(3, x[0], like=None)), x)


def test_writing_a_traced_value_into_a_plain_array_names_the_fix():
    def f(x):
        buf = np.zeros(3)
        buf[0] = x[0]  # NumPy would say "setting an array element with a sequence"
        return np.sum(buf)

    with pytest.raises(fl.DifferentiationError, match="zeros_like") as info:
        fl.gradient(f, np.ones(3))
    assert "plain NumPy array" in str(info.value) and "line" in str(info.value)
    with pytest.raises(fl.DifferentiationError, match="concrete"):
        fl.gradient(lambda x: float(x[0]), np.ones(3))


def test_outputs_that_do_not_depend_on_the_inputs():
    """Documented: a number is a constant (gradient None, zeros on request); a bool is
    refused (a comparison has no derivative)."""
    x = np.ones(3)
    for f in (lambda x: 0.0, lambda x: 2, lambda x: np.float32(1.0), lambda x: np.argmax(x)):
        assert fl.gradient(f, x) == (None,)
        np.testing.assert_array_equal(fl.gradient(f, x, zeros_for_none=True)[0], np.zeros(3))
    for f in (lambda x: True, lambda x: np.all(np.isfinite(x)), lambda x: np.sum(x) > 0):
        with pytest.raises(fl.DifferentiationError, match="boolean"):
            fl.gradient(f, x)


@pytest.mark.parametrize("f", [
    lambda x: np.sum(x)[None] * x,
    lambda x: np.sum(x)[..., None] * x,
    lambda x: (x[0] * x[1])[None] ** 3,
    lambda x: np.mean(x)[..., None, None] ** 2,
    lambda x: x[0][None] * x[1][..., None] ** 2,
])
def test_higher_derivatives_through_new_axes_of_0d_values(f):
    check_grads(f, np.array([0.5, 2.0]), order=3)


def test_long_chains_of_views():
    def f(x):
        u = x * 1.0
        v = u
        for _ in range(600):  # past Python's recursion limit before chains collapsed
            u = u.reshape(-1)
            v = v[:]
        v[0] = 3.0 * x[1]  # reaches x's copy, and so u
        u[1] *= 2.0
        return np.sum(u * x)

    x = np.array([1.0, 2.0, 3.0])
    _same_as_numpy(f, x)


def test_chains_of_mixed_views_past_the_collapse_length():
    """Views of views of ... (longer than the chain fluxml keeps): a write at the end reaches
    the base as in NumPy, and a read-only view anywhere in the chain stays read-only."""
    steps = [lambda v: v.T, lambda v: v[::-1], lambda v: v.reshape(v.shape), lambda v: v[:],
             lambda v: np.swapaxes(v, 0, 1)]

    def f(x, n=23):
        y = x * 1.0
        v = y
        for i in range(n):
            v = steps[i % len(steps)](v)
        v[1, 2] = x[0, 0] ** 3
        v[0] *= 2.0
        return y

    x = np.arange(1.0, 13.0).reshape(3, 4)
    _same_as_numpy(f, x)

    def read_only(x):
        v = np.broadcast_to(x * 1.0, (2, 3, 4))
        for i in range(20):
            v = v[:]
        v[0, 0, 0] = 1.0
        return v

    with pytest.raises(fl.DifferentiationError, match="read-only"):
        fl.pullback(read_only, x)
