"""Shape, joining and splitting rules: values against NumPy, derivatives against finite
differences (order 2, both modes), dtypes, and writes through views as NumPy makes them."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fluxml as fl
from fluxml.testing import check_grads
from tests.ad.rules.numpy_errors import raises_as_numpy

rng = np.random.default_rng(1)


def rand(*shape):
    return rng.standard_normal(shape)


A = rand(3, 4)
B = rand(2, 3, 4)
V = rand(4)
S = rand()

CASES = [
    # reshaping and axes
    (np.reshape, lambda x: np.reshape(x, (4, 3)), (A,)),
    (np.reshape, lambda x: np.reshape(x, (2, -1), order="F"), (B,)),
    (np.ravel, lambda x: np.ravel(x), (B,)),
    (np.ravel, lambda x: np.ravel(x.T, order="K"), (A,)),
    (np.transpose, lambda x: np.transpose(x), (A,)),
    (np.transpose, lambda x: np.transpose(x, (1, -1, 0)), (B,)),
    (np.transpose, lambda x: x.T * x.T, (B,)),
    (np.swapaxes, lambda x: np.swapaxes(x, 0, -1), (B,)),
    (np.matrix_transpose, lambda x: np.matrix_transpose(x), (B,)),
    (np.moveaxis, lambda x: np.moveaxis(x, 0, -1), (B,)),
    (np.moveaxis, lambda x: np.moveaxis(x, (0, 1), (2, 0)), (B,)),
    (np.rollaxis, lambda x: np.rollaxis(x, 2), (B,)),
    (np.rollaxis, lambda x: np.rollaxis(x, 0, 3), (B,)),
    (np.rollaxis, lambda x: np.rollaxis(x, -1, 1) * np.rollaxis(x, 1, 1)[0, :, 0], (B,)),
    (np.lib.stride_tricks.sliding_window_view,
     lambda x: np.lib.stride_tricks.sliding_window_view(x, 3) ** 2, (V,)),
    (np.lib.stride_tricks.sliding_window_view,
     lambda x: np.lib.stride_tricks.sliding_window_view(x, (2, 2), axis=(0, 2)), (B,)),
    (np.trim_zeros, lambda x: np.trim_zeros(x * np.array([0.0, 1, 1, 0])), (V,)),
    (np.trim_zeros, lambda x: np.trim_zeros(x * np.array([0.0, 1, 1, 0]), "b"), (A,)),
    (np.expand_dims, lambda x: np.expand_dims(x, (0, -1)), (A,)),
    (np.squeeze, lambda x: np.squeeze(x), (rand(1, 3, 1, 2),)),
    (np.squeeze, lambda x: np.squeeze(x, axis=-2), (rand(1, 3, 1, 2),)),
    (np.broadcast_to, lambda x: np.broadcast_to(x, (3, 4)), (V,)),
    (np.broadcast_arrays, lambda x, y: np.broadcast_arrays(x, y), (rand(3, 1), V)),
    (np.atleast_1d, lambda x: np.atleast_1d(x), (S,)),
    (np.atleast_1d, lambda x, y: np.atleast_1d(x, y), (S, A)),
    (np.atleast_2d, lambda x: np.atleast_2d(x), (V,)),
    (np.atleast_3d, lambda x, y: np.atleast_3d(x, y), (V, A)),
    (np.meshgrid, lambda x, y: np.meshgrid(x, y), (V, rand(3))),
    (np.meshgrid, lambda x, y, z: np.meshgrid(x, y, z, indexing="ij", sparse=True),
     (V, rand(3), rand(2))),
    # copies and casts
    (np.copy, lambda x: np.copy(x), (A,)),
    (np.zeros_like, lambda x: x * np.zeros_like(x) + x, (A,)),
    (np.ones_like, lambda x: x * np.ones_like(x), (A,)),
    (np.empty_like, lambda x: _fill(np.empty_like(x), x), (A,)),
    (np.full_like, lambda x: x * np.full_like(x, 2.0), (A,)),
    # flips, rolls, rotations
    (np.flip, lambda x: np.flip(x), (B,)),
    (np.flip, lambda x: np.flip(x, axis=(0, 2)), (B,)),
    (np.fliplr, lambda x: np.fliplr(x), (A,)),
    (np.flipud, lambda x: np.flipud(x), (A,)),
    (np.roll, lambda x: np.roll(x, 2), (A,)),
    (np.roll, lambda x: np.roll(x, (1, -3, 1), axis=(0, 1, 0)), (A,)),
    (np.rot90, lambda x: np.rot90(x), (A,)),
    (np.rot90, lambda x: np.rot90(x, k=2, axes=(1, 2)), (B,)),
    (np.rot90, lambda x: np.rot90(x, k=-1, axes=(2, 0)), (B,)),
    # padding
    (np.pad, lambda x: np.pad(x, 2), (A,)),
    (np.pad, lambda x: np.pad(x, ((1, 0), (0, 2)), constant_values=((1.5, 2.0), (0, -1))),
     (A,)),
    (np.pad, lambda x: np.pad(x, ((1, 2), (3, 1)), mode="reflect"), (A,)),
    (np.pad, lambda x: np.pad(x, 3, mode="symmetric"), (A,)),
    (np.pad, lambda x: np.pad(x, ((0, 1), (2, 0), (1, 1)), mode="edge"), (B,)),
    (np.pad, lambda x: np.pad(x, 5, mode="wrap"), (V,)),
    # diagonals and triangles
    (np.diagonal, lambda x: np.diagonal(x), (A,)),
    (np.diagonal, lambda x: np.diagonal(x, offset=-1, axis1=2, axis2=1), (B,)),
    (np.trace, lambda x: np.trace(x, offset=1), (A,)),
    (np.trace, lambda x: np.trace(x, axis1=1, axis2=2), (B,)),
    (np.diag, lambda x: np.diag(x), (V,)),
    (np.diag, lambda x: np.diag(x, k=-2), (V,)),
    (np.diag, lambda x: np.diag(x, k=1), (A,)),
    (np.diagflat, lambda x: np.diagflat(x, 1), (rand(2, 2),)),
    (np.tril, lambda x: np.tril(x), (A,)),
    (np.tril, lambda x: np.tril(x, k=-1), (B,)),
    (np.triu, lambda x: np.triu(x, k=1), (A,)),
    (np.triu, lambda x: np.triu(x), (V,)),
    # joining
    (np.concatenate, lambda x, y: np.concatenate([x, y]), (A, rand(2, 4))),
    (np.concatenate, lambda x, y: np.concatenate((x, np.ones((3, 1)), y), axis=-1),
     (A, rand(3, 2))),
    (np.concatenate, lambda x, y: np.concatenate([x, y], axis=None), (A, B)),
    (np.stack, lambda x, y: np.stack([x, y], axis=1), (A, rand(3, 4))),
    (np.stack, lambda x, y: np.stack([x, y, x], axis=-1), (V, rand(4))),
    (np.hstack, lambda x, y: np.hstack([x, y]), (V, rand(2))),
    (np.hstack, lambda x, y: np.hstack([x, y]), (A, rand(3, 2))),
    (np.vstack, lambda x, y: np.vstack([x, y]), (V, A)),
    (np.dstack, lambda x, y: np.dstack([x, y]), (A, rand(3, 4))),
    (np.column_stack, lambda x, y: np.column_stack([x, y]), (rand(3), A)),
    (np.block, lambda x, y: np.block([[x, y], [np.ones((1, 4)), 2.0 * y[:1]]]), (A, rand(3, 2))),
    (np.block, lambda x, y: np.block([x, 1.5, y]), (V, rand(2))),  # scalars as 1-d blocks
    (np.block, lambda x, y: np.block([[[x]], [[y]]]), (V, rand(4))),  # depth 3 > ndim
    (np.block, lambda x: np.block(x), (A,)),  # no list: a copy
    (np.block, lambda x: np.block([[x], [x]]), (S,)),
    (np.append, lambda x, y: np.append(x, y), (A, V)),
    (np.append, lambda x, y: np.append(x, y, axis=0), (A, rand(1, 4))),
    (np.insert, lambda x, y: np.insert(x, [1, 3, 3], y), (V, rand(3))),
    (np.insert, lambda x, y: np.insert(x, 1, y, axis=1), (A, rand(3))),
    (np.insert, lambda x: np.insert(x, 2, 7.0, axis=0), (A,)),
    (np.delete, lambda x: np.delete(x, [0, 2], axis=1), (A,)),
    (np.delete, lambda x: np.delete(x, slice(1, None, 3)), (A,)),
    (np.tile, lambda x: np.tile(x, 2), (A,)),
    (np.tile, lambda x: np.tile(x, (2, 1, 3)), (A,)),
    (np.tile, lambda x: np.tile(x, 3), (rand(1),)),
    (np.repeat, lambda x: np.repeat(x, 2), (A,)),
    (np.repeat, lambda x: np.repeat(x, 3, axis=-1), (A,)),
    (np.repeat, lambda x: np.repeat(x, [1, 0, 2], axis=0), (A,)),
    (np.astype, lambda x: np.astype(x, np.complex128) * 2.0, (A,)),  # (NumPy 2's function)
    (np.astype, lambda x: np.astype(x, x.dtype, copy=False), (A,)),
    (np.resize, lambda x: np.resize(x, (5, 3)), (A,)),  # repeated, then cut
    (np.resize, lambda x: np.resize(x, 7), (B,)),
    (np.resize, lambda x: np.resize(x.T, (2, 2)), (A,)),  # the C ravel of x.T
    # splitting
    (np.split, lambda x: np.split(x, 2, axis=1), (A,)),
    (np.split, lambda x: np.split(x, [1, 3], axis=-1), (A,)),
    (np.split, lambda x: np.split(x, [3, 1, 5]), (rand(6),)),
    (np.array_split, lambda x: np.array_split(x, 3, axis=1), (A,)),
    (np.hsplit, lambda x: np.hsplit(x, [1]), (A,)),
    (np.vsplit, lambda x: np.vsplit(x, 3), (A,)),
    (np.dsplit, lambda x: np.dsplit(x, [1, 2]), (B,)),
    (np.unstack, lambda x: np.unstack(x, axis=1), (B,)),
]


def _fill(buf, x):
    buf[...] = x * x
    return buf


def _leaves(y):
    return list(y) if isinstance(y, (tuple, list)) else [y]


def test_linear_rules_are_transposes():
    """<J t, u> = <t, J^T u> for every case (all of them are linear or close to it)."""
    for _, f, args in CASES:
        ts = tuple(rand(*np.shape(a)) for a in args)
        _, jt = fl.jvp(f, args, ts)
        value, back = fl.pullback(f, *args)
        us = [rand(*np.shape(v)) for v in _leaves(value)]
        cot = type(value)(us) if isinstance(value, (list, tuple)) else us[0]
        grads = back(cot)
        lhs = sum(np.sum(j * u) for j, u in zip(_leaves(jt), us))
        rhs = sum(np.sum(g * t) for g, t in zip(grads, ts) if g is not None)
        np.testing.assert_allclose(lhs, rhs, rtol=1e-10, atol=1e-12)


# --- split: several results, some unused ------------------------------------------------------

def test_split_with_unused_pieces():
    x = rand(6)
    (g,) = fl.gradient(lambda x: np.sum(np.split(x, 3)[1] ** 2), x)
    np.testing.assert_allclose(g, [0, 0, 2 * x[2], 2 * x[3], 0, 0])
    check_grads(lambda x: np.split(x, [2, 5])[2] * 3.0, x)
    a, b, c = fl.jvp(lambda x: tuple(np.array_split(x, 3)), (x,), (np.ones(6),))[1]
    np.testing.assert_array_equal(np.concatenate([a, b, c]), np.ones(6))


# --- writes through views, compared with the same code on NumPy arrays --------------------------

def write_transposed(x):
    x = x * 1.0
    y = x.T
    y[0, 1] = 5.0 * y[1, 0]
    return x * x, y * 2.0


def write_swapped(x):
    x = x + 0.0
    y = np.swapaxes(x, 0, 2)
    y[1, 2, 0] = y[0, 0, 1] ** 2
    return x * y.T


def write_moved(x):
    x = x + 0.0
    y = np.moveaxis(x, 0, -1)
    y[..., 1] *= 3.0
    return x


def write_squeezed(x):
    x = x[None] * 1.0  # (1, 3, 4)
    y = np.squeeze(x)
    y[2, 1:3] = y[0, 0:2] * y[1, 0:2]
    return x, y


def write_expanded(x):
    x = x * 1.0
    y = np.expand_dims(x, (0, 2))
    y[0, 1, 0, 2] = -y[0, 0, 0, 0]
    y += 1.0
    return x


def write_raveled(x):
    x = x * 1.0
    y = np.ravel(x)
    y[3:7] = np.sin(y[0:4])
    return x


def write_flattened(x):
    x = x * 1.0
    y = x.flatten()  # a copy: the write must not reach x
    y[0] = 100.0 * y[1]
    return x, y


def write_into_base(x):
    x = x * 1.0
    y = x.T
    z = np.expand_dims(x, 0)
    x[0, 1] = 7.0 * x[2, 3]
    return y * 1.0, z * 1.0


def write_flipped(x):
    x = x * 1.0
    y = np.flip(x, 1)
    y[:, 0] = y[:, 1] * y[:, 2]
    return x


def write_split(x):
    x = x * 1.0
    a, b = np.split(x, 2, axis=1)
    b[0] = a[1] * a[2]
    x[2, 0] = -1.0  # a write into the base reaches the pieces
    return x, a * 1.0, b * 1.0


def write_rotated(x):
    x = x * 1.0
    y = np.rot90(x)
    y[0, 0] = y[1, 1] ** 2
    return x


WRITES = [write_transposed, write_swapped, write_moved, write_squeezed, write_expanded,
          write_raveled, write_flattened, write_into_base, write_flipped, write_split,
          write_rotated]


@pytest.mark.parametrize("f", WRITES, ids=lambda f: f.__name__)
def test_writes_through_views_match_numpy(f):
    x = B if f is write_swapped else A
    expected = f(x.copy())
    value, _ = fl.pullback(f, x)
    for got, want in zip(_leaves(value), _leaves(expected)):
        np.testing.assert_array_equal(got, want)
    check_grads(f, x)


def test_diagonal_is_read_only_as_in_numpy():
    with pytest.raises(ValueError, match="read-only"):
        np.diagonal(A.copy())[0] = 1.0

    def f(x):
        d = np.diagonal(x * 1.0)
        d[0] = 1.0
        return d

    with pytest.raises(fl.DifferentiationError, match="diagonal"):
        fl.pullback(f, A)


# --- errors and edge cases -----------------------------------------------------------------------

def test_numpy_errors_are_kept():
    for f in (lambda x: np.squeeze(x, 0), lambda x: np.split(x, 5, axis=1),
              lambda x: np.transpose(x, (0, 0)), lambda x: np.stack([x, x[1:]])):
        with pytest.raises(ValueError):
            f(A)
        with pytest.raises(ValueError):
            fl.pullback(f, A)


def test_block_and_resize_by_hand():
    # np.block as the by-hand concatenations; np.resize as the C-ordered entries repeated
    x, y = rand(2, 2), rand(2, 3)
    got, back = fl.pullback(lambda x: np.block([[x, y], [y[:, :2], x[:, :1] * y]]), x)
    want = np.vstack([np.hstack([x, y]), np.hstack([y[:, :2], x[:, :1] * y])])
    np.testing.assert_array_equal(got, want)
    (g,) = back(np.ones((4, 5)))
    np.testing.assert_array_equal(g, 1 + np.array([[y[0].sum(), 0], [y[1].sum(), 0]]))
    v = rand(3)
    got, back = fl.pullback(lambda v: np.resize(v, (2, 4)), v)
    np.testing.assert_array_equal(got, [[v[0], v[1], v[2], v[0]], [v[1], v[2], v[0], v[1]]])
    np.testing.assert_array_equal(back(np.arange(8.0).reshape(2, 4))[0], [0 + 3 + 6, 1 + 4 + 7,
                                                                           2 + 5])


@pytest.mark.parametrize("f, error", [
    (lambda x: np.block([[x], x]), ValueError),  # depths mismatched
    (lambda x: np.block([[x], []]), ValueError),  # an empty list
    (lambda x: np.block([]), ValueError),
    (lambda x: np.block([(x, x)]), TypeError),  # a tuple
    (lambda x: np.block([x, x[:2]]), ValueError),  # shapes that do not join
    (lambda x: np.resize(x, (2, -1)), ValueError),
])
def test_block_and_resize_raise_numpys_errors(f, error):
    raises_as_numpy(error, f, A)


def test_empty_block_results_and_resize():
    for f in (lambda x: np.resize(x, (0, 3)), lambda x: np.resize(x[:0], (2, 2))):
        got, back = fl.pullback(f, A)
        np.testing.assert_array_equal(got, f(A))
        assert got.dtype == f(A).dtype


def test_large_block_of_f_ordered_arrays_is_f_ordered_as_numpys():
    # NumPy fills a block of more than 2 * 512**2 entries (times its list depth) by slicing,
    # into an F array where every block is F-ordered and not C-ordered
    x = np.asfortranarray(rand(300, 300))
    for f in (lambda x: np.block([[x, x], [x, x]]),
              lambda x: np.block([[x, x], [x, x[:, :1] * x]])):
        got = fl.jvp(f, (x,), (x,))[0]
        want = f(x)
        np.testing.assert_array_equal(got, want)
        assert got.flags.f_contiguous == want.flags.f_contiguous
        assert got.flags.c_contiguous == want.flags.c_contiguous


@pytest.mark.parametrize("cast", [lambda x: x.astype(np.float64, copy=False),
                                  lambda x: np.astype(x, np.float64, copy=False),
                                  lambda x: x.astype(np.float64, order="C", copy=False)])
def test_astype_without_copy_is_the_array_itself(cast):
    # before: a copy, so a write through it did not reach x (6.0 for NumPy's 15.0), silently
    def f(x):
        x = x * 1.0
        y = cast(x)
        y[0] = 10.0
        return np.sum(x * np.arange(1.0, 4.0))

    value, (g,) = fl.withgradient(f, np.ones(3))
    assert value == f(np.ones(3)) == 15.0
    np.testing.assert_array_equal(g, [0.0, 2.0, 3.0])
    # an F-ordered copy is needed: a copy as in NumPy, the write stays in it
    g = lambda x: np.sum(x.astype(np.float64, order="F", copy=False))  # noqa: E731
    assert fl.withgradient(lambda x: (x.astype(float, order="F", copy=False).__setitem__(
        (0, 0), 5.0), g(x))[1], np.ones((2, 2)))[0] == 4.0


def test_astype_keeps_numpys_casting_check_and_device():
    for f, error in [(lambda x: x.astype(np.float32, casting="safe"), TypeError),
                     (lambda x: np.astype(x, np.float32, device="gpu"), ValueError)]:
        raises_as_numpy(error, f, A)


def test_unsupported_pad_mode_names_the_mode():
    with pytest.raises(fl.DifferentiationError, match="linear_ramp"):
        fl.pullback(lambda x: np.pad(x, 1, mode="linear_ramp"), A)
    with pytest.raises(fl.DifferentiationError, match="odd"):
        fl.pullback(lambda x: np.pad(x, 1, mode="reflect", reflect_type="odd"), A)


def test_tile_and_repeat_results_are_writable_copies():
    def f(x):
        t = np.tile(x, 3)
        t[0] = 2.0 * t[1]
        r = np.repeat(x, 1)
        r[0] = 5.0
        return x, t, r

    check_grads(f, rand(1))
    value, _ = fl.pullback(f, np.array([0.5]))
    for got, want in zip(value, f(np.array([0.5]))):
        np.testing.assert_array_equal(got, want)


def test_out_argument_of_concatenate():
    def f(x, y):
        buf = np.zeros_like(np.ones((5, 4)) * x[0, 0])
        np.concatenate([x, y], out=buf)
        return buf

    check_grads(f, A, rand(2, 4))


@settings(max_examples=10, deadline=None)
@given(st.lists(st.integers(1, 3), min_size=1, max_size=3).map(tuple), st.data())
def test_concatenate_and_split_round_trip(shape, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    sizes = data.draw(st.lists(st.integers(0, 3), min_size=1, max_size=3))
    parts = [rand(*(shape[:axis % len(shape)] + (n,) + shape[axis % len(shape) + 1:]))
             for n in sizes]
    cuts = np.cumsum(sizes)[:-1].tolist()

    def f(*parts):
        joined = np.concatenate(parts, axis=axis)
        return [p * p for p in np.split(joined, cuts, axis=axis)]

    check_grads(f, *parts)
