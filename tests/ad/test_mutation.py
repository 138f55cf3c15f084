"""In-place writes into traced arrays: each form against NumPy's values and finite differences,
views and aliases, copy-on-write of saved values, and the errors for what cannot work."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fluxml as fl
from fluxml.testing import check_grads

rng = np.random.default_rng(42)
X = rng.standard_normal(6) + 0.1
M = rng.standard_normal((3, 4))
V2 = np.array([0.7, -1.3])
V3 = np.array([0.5, 1.5, -0.4])


def _functional_item(x, v):
    return np.concatenate([x[:1], np.reshape(v, (1,)), x[2:]]) * 2


def _item(x, v):
    y = x * 2
    y[1] = v * 2
    return y


def _slice(x, v):
    y = np.sin(x)
    y[2:5] = v
    return y * x


def _slice_functional(x, v):
    return np.concatenate([np.sin(x[:2]), v, np.sin(x[5:])]) * x


def _column(m, v):
    y = m * 1.5
    y[:, 0] = v
    return np.tanh(y)


def _column_functional(m, v):
    return np.tanh(np.concatenate([v[:, None], m[:, 1:] * 1.5], axis=1))


def _mask(x, v):
    y = x ** 2
    y[x > 0.2] = v
    return y


def _mask_functional(x, v):
    return np.where(x > 0.2, v, x ** 2)


def _fancy(x, v):
    y = x + 1
    y[[0, 3]] = v
    return y * y


def _fancy_functional(x, v):
    y = x + 1
    y = np.where(np.isin(np.arange(6), [0, 3]), 0.0, y) + np.where(
        np.arange(6) == 0, v[0], 0.0) + np.where(np.arange(6) == 3, v[1], 0.0)
    return y * y


def _broadcast_rows(m, v):
    y = m.copy()
    y[:, 1:3] = v
    return y * m


def _broadcast_rows_functional(m, v):
    return np.concatenate([m[:, :1], np.broadcast_to(v, (3, 2)), m[:, 3:]], axis=1) * m


def _constant_write(x, v):
    y = x * v[0]
    y[1:3] = 0.0
    return y


def _constant_write_functional(x, v):
    return np.where((np.arange(6) >= 1) & (np.arange(6) < 3), 0.0, x * v[0])


def _augmented(x, v):
    y = x.copy()
    y += v[0]
    y -= x ** 2
    y *= v[1]
    y /= 1.5 + x ** 2
    y **= 2
    return y


def _augmented_functional(x, v):
    return (((x + v[0] - x ** 2) * v[1]) / (1.5 + x ** 2)) ** 2


def _augmented_slices(x, v):
    y = np.cos(x)
    y[1:3] += v
    y[[0, 4]] *= v
    y[5] -= v[0] * x[0]
    return y


def _augmented_slices_functional(x, v):
    y = np.cos(x)
    y = y + np.concatenate([[0.0], v, [0.0, 0.0, 0.0]])
    y = y * np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    y = np.concatenate([y[:1] * v[0], y[1:4], y[4:5] * v[1], y[5:] - v[0] * x[0]])
    return y


def _write_argument(x, v):
    x[0] = v[0]  # the caller's array stays as it was
    x += v[1]
    return x * x


def _write_argument_functional(x, v):
    y = np.concatenate([v[:1], x[1:]]) + v[1]
    return y * y


def _preallocate_and_fill(x, v):
    out = np.zeros_like(x)
    for i in range(1, len(x)):
        out[i] = np.sin(x[i]) * x[i - 1] + v[0]
    return out


def _preallocate_functional(x, v):
    return np.concatenate([[0.0], np.sin(x[1:]) * x[:-1] + v[0]])


def _view_write(x, v):
    y = x * 1.0
    z = y[1:]
    z[0] = v[0]  # changes y as well
    z[2:4] += v
    return y


def _view_write_functional(x, v):
    y = np.concatenate([x[:1], v[:1], x[2:]])
    return y + np.concatenate([[0.0, 0.0, 0.0], v, [0.0]])


def _base_write_seen_by_view(x, v):
    y = x * 1.0
    z = y[2:]
    y[3] = v[0]  # z sees it
    return z * 2


def _base_write_functional(x, v):
    return np.concatenate([x[2:3], v[:1], x[4:]]) * 2


def _alias(x, v):
    y = x * 3
    alias = y
    alias[2] = v[1]
    return y + alias


def _alias_functional(x, v):
    y = np.concatenate([x[:2] * 3, v[1:2], x[3:] * 3])
    return 2 * y


def _transpose_view(m, v):
    y = m * 1.0
    t = y.T
    t[1, 0:2] = v
    return y


def _transpose_functional(m, v):
    return np.concatenate([np.concatenate([m[:2, :1], v[:, None], m[:2, 2:]], axis=1), m[2:]])


def _reshape_view(m, v):
    y = m * 1.0
    r = y.reshape(-1)
    r[5] = v[0]
    return y


def _reshape_functional(m, v):
    flat = np.concatenate([np.ravel(m)[:5], v[:1], np.ravel(m)[6:]])
    return np.reshape(flat, (3, 4))


def _saved_then_overwritten(x, v):
    y = x * 1.0
    b = y * v[0]  # multiply keeps y for the gradient of v
    y[0] = 100.0
    return np.sum(b) + np.sum(np.tanh(y))


def _saved_functional(x, v):
    y = np.concatenate([[100.0], x[1:]])
    return np.sum(x * v[0]) + np.sum(np.tanh(y))


def _out_argument(x, v):
    y = np.zeros_like(x)
    np.add(x, v[0], out=y)
    np.multiply(y, v[1], out=y)
    np.tanh(y, out=y)
    return y


def _out_functional(x, v):
    return np.tanh((x + v[0]) * v[1])


def _copyto_put_fill(m, v):
    y = np.zeros_like(m)
    np.copyto(y, m * v[0])
    np.put(y, [1, 6], v)
    np.fill_diagonal(y, v[1])
    y[2].fill(v[0])
    return y


def _copyto_functional(m, v):
    i, j = np.indices((3, 4))
    y = m * v[0]
    flat = np.arange(12).reshape(3, 4)
    y = np.where(flat == 1, v[0], y)
    y = np.where(flat == 6, v[1], y)
    y = np.where(i == j, v[1], y)
    return np.where(i == 2, v[0], y)


def _add_at(x, v):
    y = x * 1.0
    np.add.at(y, [0, 0, 2], np.concatenate([v, v[:1]]))
    return y


def _add_at_functional(x, v):
    return x + np.array([1.0, 0, 0, 0, 0, 0]) * (v[0] + v[1]) + np.array(
        [0, 0, 1.0, 0, 0, 0]) * v[0]


CASES = [
    ("item", _item, _functional_item, X, 0.3),
    ("slice", _slice, _slice_functional, X, V3),
    ("column", _column, _column_functional, M, V3),
    ("mask", _mask, _mask_functional, X, 0.8),
    ("fancy", _fancy, _fancy_functional, X, V2),
    ("broadcast", _broadcast_rows, _broadcast_rows_functional, M, V2),
    ("constant", _constant_write, _constant_write_functional, X, V2),
    ("augmented", _augmented, _augmented_functional, X, V2),
    ("augmented slices", _augmented_slices, _augmented_slices_functional, X, V2),
    ("write argument", _write_argument, _write_argument_functional, X, V2),
    ("fill loop", _preallocate_and_fill, _preallocate_functional, X, V2),
    ("view write", _view_write, _view_write_functional, X, V2),
    ("base write", _base_write_seen_by_view, _base_write_functional, X, V2),
    ("alias", _alias, _alias_functional, X, V2),
    ("transpose view", _transpose_view, _transpose_functional, M, V2),
    ("reshape view", _reshape_view, _reshape_functional, M, V2),
    ("saved then overwritten", _saved_then_overwritten, _saved_functional, X, V2),
    ("out=", _out_argument, _out_functional, X, V2),
    ("copyto put fill", _copyto_put_fill, _copyto_functional, M, V2),
    ("add.at", _add_at, _add_at_functional, X, V2),
]


@pytest.mark.parametrize("name, f, functional, x, v", CASES, ids=[c[0] for c in CASES])
def test_values_match_numpy_and_the_functional_rewrite(name, f, functional, x, v):
    x_before = x.copy()
    expected = f(x.copy(), v)  # plain NumPy
    value, _ = fl.pullback(f, x, v)
    np.testing.assert_allclose(value, expected, rtol=1e-12)
    np.testing.assert_allclose(functional(x, v), expected, rtol=1e-12)
    np.testing.assert_array_equal(x, x_before)  # the caller's array is untouched


@pytest.mark.parametrize("name, f, functional, x, v", CASES, ids=[c[0] for c in CASES])
def test_gradients_match_the_functional_rewrite(name, f, functional, x, v):
    u = rng.standard_normal(np.shape(f(x.copy(), v)))
    loss = lambda g: (lambda x, v: np.sum(g(x, v) * u))
    for got, want in zip(fl.gradient(loss(f), x, v), fl.gradient(loss(functional), x, v)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name, f, functional, x, v", CASES, ids=[c[0] for c in CASES])
def test_finite_differences_first_and_second_order(name, f, functional, x, v):
    check_grads(f, x, v, order=2, modes=("fwd", "rev"))


def test_hessian_through_a_fill_loop():
    def f(x):
        out = np.zeros_like(x)
        for i in range(len(x)):
            out[i] = x[i] ** 3 * x[i - 1]
        return np.sum(out)

    g = lambda x: np.sum(x ** 3 * np.roll(x, 1))
    x = np.array([0.5, -1.0, 2.0, 0.3])
    np.testing.assert_allclose(fl.hessian(f, x), fl.hessian(g, x), rtol=1e-12)


def test_buffered_fancy_increment_matches_numpy():
    # NumPy's x[[0, 0]] += 1 is buffered: element 0 grows once. fluxml computes exactly what
    # NumPy computes; np.add.at (or fl.index_add) is the accumulating form.
    def f(x):
        y = x * 1.0
        y[[0, 0]] += 1.0
        return y

    x = np.zeros(3)
    np.testing.assert_array_equal(fl.pullback(f, x)[0], [1.0, 0.0, 0.0])

    def g(x):
        y = x * 1.0
        np.add.at(y, [0, 0], 1.0)
        return y

    np.testing.assert_array_equal(fl.pullback(g, x)[0], [2.0, 0.0, 0.0])


def test_repeated_indices_last_write_wins_as_in_numpy():
    def f(x):
        y = np.zeros_like(x)
        y[[0, 2, 0]] = x * np.array([1.0, 2.0, 3.0])
        return y

    x = np.array([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(fl.pullback(f, x)[0], f(x.copy()))
    check_grads(f, x)

    def mixed(x):
        y = np.zeros((3, 2))
        y = np.zeros_like(np.stack([x[:2]] * 3))
        y[[0, 0], :] = np.stack([x[:2], x[1:]])
        return y

    with pytest.raises(fl.DifferentiationError, match="add.at"):
        fl.gradient(lambda x: np.sum(mixed(x)), np.ones(3))


def test_empty_then_fill_explains():
    def f(x):
        buf = np.empty((2, 3), dtype=x.dtype)
        buf[0] = x
        return np.sum(buf)

    with pytest.raises(fl.DifferentiationError, match="zeros_like"):
        fl.gradient(f, np.ones(3))


def test_out_into_a_plain_array_refuses():
    def f(x):
        buf = np.zeros(3)
        np.multiply(x, 2.0, out=buf)
        return np.sum(buf)

    with pytest.raises(fl.DifferentiationError, match="out="):
        fl.gradient(f, np.ones(3))


def test_inner_value_into_outer_buffer_refuses():
    def outer(x):
        buf = np.zeros_like(x)

        def inner(y):
            buf[0] = y[0]
            return np.sum(buf)

        return fl.gradient(inner, x)[0][0]

    with pytest.raises(fl.DifferentiationError, match="inner transform"):
        fl.gradient(outer, np.ones(2))


def test_fill_loop_writes_in_place():
    # The buffer is written in place: the primal of the handle keeps its identity.
    seen = []

    def f(x):
        out = np.zeros_like(x)
        for i in range(len(x)):
            out[i] = x[i] * 2
            seen.append(id(fl.ad.core.raw(out)))
        return np.sum(out)

    fl.gradient(f, np.ones(50))
    assert len(set(seen)) == 1


# --- property: random write sequences behave as NumPy ---------------------------------------------

INDEX = st.one_of(
    st.integers(-6, 5),
    st.builds(slice, st.none() | st.integers(-6, 6), st.none() | st.integers(-6, 6),
              st.sampled_from([None, 1, 2, -1])),
    st.lists(st.integers(0, 5), min_size=1, max_size=3, unique=True),
    st.lists(st.booleans(), min_size=6, max_size=6).map(np.array),
)
OP = st.tuples(st.sampled_from(["set", "iadd", "isub", "imul", "whole_iadd", "view_set"]),
               INDEX, st.integers(0, 2), st.floats(-2, 2))


def _apply(x, p, ops):
    y = x * 1.0
    for kind, idx, k, c in ops:
        value = np.sin(p[k]) * c + p[(k + 1) % 3]
        if kind == "set":
            y[idx] = value
        elif kind == "iadd":
            y[idx] += value
        elif kind == "isub":
            y[idx] -= value
        elif kind == "imul":
            y[idx] *= value
        elif kind == "whole_iadd":
            y += value * y
        else:
            view = y[1:5]
            view[k] = value
    return y


@settings(max_examples=40, deadline=None)
@given(st.lists(OP, min_size=1, max_size=5))
def test_random_write_sequences(ops):
    x = np.linspace(-1, 1, 6)
    p = np.array([0.3, -0.7, 1.1])
    expected = _apply(x.copy(), p.copy(), ops)
    value, _ = fl.pullback(_apply, x, p, ops)
    np.testing.assert_allclose(value, expected, rtol=1e-12)
    check_grads(lambda x, p: _apply(x, p, ops), x, p, order=1)


def test_plain_arrays_kept_by_a_rule_may_be_written_afterwards():
    """The rule keeps the values it used: later writes into the array, its base or another
    view of its memory are valid NumPy and change neither the array's use nor the gradient."""
    c = np.ones(3)

    def f(x):
        y = x * c  # the rule for x keeps c
        c[0] = 5.0  # valid NumPy: y already holds x * 1
        return np.sum(y)

    np.testing.assert_array_equal(fl.gradient(f, np.ones(3))[0], [1.0, 1.0, 1.0])
    assert c[0] == 5.0 and c.flags.writeable

    def through_base(x):
        buf = np.ones(4)
        y = np.sum(x * buf[:3])
        buf[:] = 7.0
        return y

    def through_older_view(x):
        buf = np.ones(4)
        old = buf[1:]
        y = np.sum(x * buf[:3])
        old[:] = 7.0
        return y

    for f in (through_base, through_older_view):
        np.testing.assert_array_equal(fl.gradient(f, np.array([0.3, -0.7, 1.1]))[0], [1, 1, 1])

    y, back = fl.pullback(lambda x: x * c, np.ones(3))
    c[:] = 9.0  # between the forward pass and the pullback
    np.testing.assert_array_equal(back(np.ones(3))[0], [5.0, 1.0, 1.0])


@pytest.mark.parametrize("n", [3, 5000])
def test_large_constants_are_kept_once_while_unchanged(n):
    """Large constants used again unchanged share one copy; a change between uses is seen."""
    c = np.linspace(1.0, 2.0, n)

    def f(x):
        total = 0.0
        for _ in range(3):
            total = total + np.sum(x * c)
        c[0] += 1.0  # changed between uses: the next use keeps the new values
        total = total + np.sum(x * c)
        c[:] = 0.0
        return total

    x = np.ones(n)
    expected = 4 * np.linspace(1.0, 2.0, n)
    expected[0] += 1.0
    np.testing.assert_allclose(fl.gradient(f, x)[0], expected)

    strided = np.linspace(1.0, 2.0, 2 * n)[::2]  # not contiguous: compared by value
    strided[-1] = np.nan  # a NaN is never equal to itself: a fresh copy each use, still right
    g = fl.gradient(lambda x: np.nansum(x * strided) + np.nansum(x * strided), x)[0]
    np.testing.assert_array_equal(g[:-1], 2 * strided[:-1])


def test_index_arrays_and_masks_are_kept_as_used():
    idx = np.array([0, 2])
    mask = np.array([True, False, True])

    def f(x):
        y = np.sum(x[idx] * np.array([1.0, 2.0]))
        z = np.sum(np.where(mask, x, 0.0) * 3.0)
        lst = [1, 1]
        w = np.sum(x[lst])
        idx[:] = 1
        mask[:] = False
        lst[0] = 0
        return y + z + w

    np.testing.assert_array_equal(fl.gradient(f, np.ones(3))[0], [4.0, 2.0, 5.0])


def test_constants_shared_with_other_threads():
    """Another thread writing the same plain array while a gradient runs: no error in either,
    and the gradient uses the values of the forward pass."""
    import threading

    c = np.ones(64)
    started, stop = threading.Event(), threading.Event()
    errors = []

    def writer():
        started.set()
        while not stop.is_set():
            try:
                c[:] = 1.0
            except Exception as e:  # noqa: BLE001  (any error here is a failure)
                errors.append(e)
                return

    t = threading.Thread(target=writer)
    t.start()
    started.wait()
    try:
        for _ in range(50):
            g = fl.gradient(lambda x: np.sum(x * c), np.zeros(64))[0]
            np.testing.assert_array_equal(g, np.ones(64))
    finally:
        stop.set()
        t.join()
    assert not errors


def test_lists_kept_by_a_rule_are_copied():
    c = [1.0, 1.0, 1.0]

    def f(x):
        y = x * c
        c[0] = 5.0  # a list cannot be made read-only; the rule kept a copy
        return np.sum(y)

    np.testing.assert_array_equal(fl.gradient(f, np.ones(3))[0], [1.0, 1.0, 1.0])


def test_creation_like_a_traced_array():
    def f(x):
        buf = np.empty((3, 2), like=x)  # a traced buffer, filled in place
        for i in range(3):
            buf[i] = x[i] * np.array([1.0, 2.0])
        z = np.zeros(2, like=x) + np.ones(2, like=x) + np.full(2, x[0], like=x)
        v = np.array([[x[0], 1.0], [x[1] ** 2, x[2]]], like=x)
        return np.sum(buf) + np.sum(z) + np.sum(v * np.arange(2.0, like=x))

    x = np.array([0.5, -1.0, 2.0])
    np.testing.assert_allclose(fl.pullback(f, x)[0], f(x.copy()))
    check_grads(f, x)
    assert type(fl.pullback(lambda x: np.zeros(2, like=x), x)[0]) is np.ndarray


@pytest.mark.parametrize("make", [
    lambda x: np.eye(3, like=x), lambda x: np.eye(3, 2, k=-1, dtype=np.float32, like=x),
    lambda x: np.identity(3, like=x), lambda x: np.tri(3, 4, k=1, like=x),
], ids=["eye", "eye(m, k, dtype)", "identity", "tri"])
def test_matrices_like_a_traced_array(make):
    # (they had no rule: "np.eye was called on a traced array"; like= is how code that runs
    # on a GPU's arrays too makes its constants there)
    x = np.array([0.5, -1.0, 2.0])
    want = make(np.ones(1))
    np.testing.assert_array_equal(fl.pullback(make, x)[0], want)
    assert fl.pullback(make, x)[0].dtype == want.dtype
    (g,) = fl.gradient(lambda x: np.sum(make(x)[:, :1] * x[:, None] ** 2), x)
    np.testing.assert_allclose(g, 2 * x * want[:3, 0])


def test_numpy_scalars_stay_immutable():
    def f(x):
        s = x[1]  # a NumPy scalar, as in NumPy
        alias = s
        s *= 3.0  # rebinds s; alias keeps the old value
        return s + alias

    x = np.array([1.0, 2.0])
    assert fl.pullback(f, x)[0] == f(x.copy()) == 8.0
    np.testing.assert_array_equal(fl.gradient(f, x)[0], [0.0, 4.0])
    with pytest.raises(TypeError, match="item assignment"):
        fl.gradient(lambda x: (np.sum(x).__setitem__((), 1.0), 1.0)[1], x)


# --- property: random views, writes through them, and reads behave as NumPy ---------------------

VIEW_MAKERS = [lambda a: a[1:], lambda a: a[..., ::2], lambda a: a.T, lambda a: a[::-1],
               lambda a: a[...], lambda a: a[0], lambda a: a[..., 0]]
STEP = st.tuples(st.sampled_from(["view", "set", "iadd", "imul", "read", "whole"]),
                 st.integers(0, 10), st.integers(0, 6), st.integers(0, 2), st.floats(-1.5, 1.5))


def _views_program(x, p, steps):
    handles = [x * 1.0]
    reads = []
    for kind, h, v, k, c in steps:
        a = handles[h % len(handles)]
        value = np.sin(p[k]) * c + p[(k + 1) % 3]
        if kind == "view" and a.ndim:
            view = VIEW_MAKERS[v](a)
            if np.size(view):
                handles.append(view)
        elif kind == "set" and a.ndim:
            a[v % a.shape[0]] = value
        elif kind == "iadd" and a.ndim:
            a[: max(1, a.shape[0] - 1)] += value
        elif kind == "imul":
            a *= value
        elif kind == "whole":
            a += np.cos(a) * value
        elif kind == "read":
            reads.append(np.reshape(np.sum(a * a) * c, (1,)))
    return np.concatenate([np.ravel(a) for a in handles] + reads)


@settings(max_examples=60, deadline=None)
@given(st.lists(STEP, min_size=1, max_size=8))
def test_random_views_and_writes(steps):
    x = np.linspace(-1, 1, 12).reshape(4, 3)
    p = np.array([0.3, -0.7, 1.1])
    expected = _views_program(x.copy(), p.copy(), steps)
    value, _ = fl.pullback(_views_program, x, p, steps)
    np.testing.assert_allclose(value, expected, rtol=1e-10, atol=1e-12)
    check_grads(lambda x, p: _views_program(x, p, steps), x, p, order=1, rtol=1e-4, atol=1e-5)


def test_forward_mode_fill_loop_updates_its_tangent_in_place():
    primals, tangents = [], []

    def f(x):
        out = np.zeros_like(x)
        for i in range(len(x)):
            out[i] = x[i] * 2
            primals.append(id(fl.ad.core.raw(out)))
            tangents.append(id(out._box))
        alias = out[1:] * 1.0  # reading the handle shares nothing that a write could change
        out[0] = 7.0
        return np.sum(out) + np.sum(alias)

    x = np.ones(20)
    _, t = fl.jvp(f, (x,), (np.arange(20.0),))
    assert len(set(primals)) == 1 and len(set(tangents[1:])) == 1
    assert t == 2 * (np.arange(20.0).sum() - 0.0) + 2 * np.arange(1.0, 20.0).sum()


def test_reverse_over_forward_through_a_write_into_a_view():
    # The jvp level hands a view's values to the reverse level below, which keeps them:
    # a later in-place write into the base must not change what it kept.
    def f(s):
        b = np.array(np.array([1.0, 2.0, 3.0]), like=s) * 1.0
        b[1:] *= s
        b *= s
        return np.sum(b)  # s + 5 s**2

    s = 0.7
    assert fl.gradient(lambda s: fl.jvp(f, (s,), (1.0,))[1], s)[0] == pytest.approx(10.0)
    assert fl.hessian(lambda s: f(s[0]), np.array([s]))[0, 0] == pytest.approx(10.0)


@settings(max_examples=25, deadline=None)
@given(st.lists(STEP, min_size=1, max_size=6))
def test_random_views_and_writes_second_order_in_all_mode_pairs(steps):
    """Hessians through random view/write programs agree four ways: forward over reverse,
    reverse over reverse, reverse over forward, and finite differences of the gradient."""
    x = np.linspace(-1, 1, 12).reshape(4, 3)
    p = np.array([0.3, -0.7, 1.1])
    u = np.cos(np.arange(100.0))

    def f(p):
        out = _views_program(np.array(x, like=p), p, steps)
        return np.sum(out * u[: out.size])

    grad = lambda p: fl.gradient(f, p, zeros_for_none=True)[0]
    fwd_rev = fl.hessian(f, p)
    rev_rev = fl.jacobian(grad, p, mode="rev")
    rev_fwd = np.stack([fl.gradient(lambda p: fl.jvp(f, (p,), (e,))[1], p,
                                    zeros_for_none=True)[0] for e in np.eye(3)], axis=1)
    fd = np.stack([(grad(p + 1e-5 * e) - grad(p - 1e-5 * e)) / 2e-5 for e in np.eye(3)], axis=1)
    np.testing.assert_allclose(rev_rev, fwd_rev, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(rev_fwd, fwd_rev, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(fd, fwd_rev, rtol=1e-4, atol=1e-5)


def test_hessian_of_a_fill_loop_with_reads_agrees_five_ways():
    def fill(x):
        out = np.zeros_like(x)
        for i in range(1, len(x)):
            out[i] = np.sin(x[i]) * x[i - 1] + out[i - 1] * x[i]
        out[1:3] += x[2:4] * x[0]
        return np.sum(out * out) + np.sum(x[[0, 2, 2]] ** 3)

    x = np.random.default_rng(1).random(6)
    grad = lambda x: fl.gradient(fill, x)[0]
    eye = np.eye(6)
    fwd_rev = fl.hessian(fill, x)
    rev_rev = fl.jacobian(grad, x, mode="rev")
    rev_fwd = np.stack([fl.gradient(lambda x: fl.jvp(fill, (x,), (e,))[1], x)[0] for e in eye], 1)
    fwd_fwd = np.array([[fl.jvp(lambda x: fl.jvp(fill, (x,), (e,))[1], (x,), (f,))[1]
                         for f in eye] for e in eye])
    fd = np.stack([(grad(x + 1e-6 * e) - grad(x - 1e-6 * e)) / 2e-6 for e in eye], axis=1)
    for other in (rev_rev, rev_fwd, fwd_fwd):
        np.testing.assert_allclose(other, fwd_rev, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fd, fwd_rev, rtol=1e-6, atol=1e-8)


def test_a_0d_array_updated_in_place_twice_stays_an_array():
    # NumPy's `a + 1` of a 0-d array is a scalar: the traced array became one after the
    # first `+=`, so the second was no longer in place and the field came back a np.float64
    class Counter:
        pass

    m = Counter()
    m.w, m.count = np.array(1.5), np.array(0.0)

    def loss(m):
        m.count += m.w
        m.count += m.w
        return m.count * m.w

    g, = fl.gradient(loss, m)
    assert type(m.count) is np.ndarray and m.count.shape == () and m.count == 3.0
    assert g.w == pytest.approx(4 * 1.5)  # d/dw (2 w) w
    assert g.count == pytest.approx(1.5)
