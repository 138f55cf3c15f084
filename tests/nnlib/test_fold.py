"""unfold and fold against windows cut out by loops here, the convolution they mirror, and
each other (adjoints). (Checked by hand against torch F.unfold / F.fold in 2-d with strides,
padding and dilation, forward and gradient: equal.)"""

import itertools

import numpy as np
import pytest

import fluxml as fl
from fluxml.nnlib.fold import fold, unfold
from fluxml.testing import check_grads

RNG = np.random.default_rng(11)


def naive_unfold(x, kernel, stride, pad, dilation):
    spatial = x.shape[2:]
    xpad = np.pad(x, [(0, 0), (0, 0)] + [(p, p) for p in pad])
    out = [(n + 2 * p - dl * (k - 1) - 1) // s + 1
           for n, k, s, p, dl in zip(spatial, kernel, stride, pad, dilation)]
    cols = []
    for o in itertools.product(*map(range, out)):
        window = [xpad[(slice(None), c) + tuple(oi * s + ki * dl for oi, ki, s, dl in
                                                zip(o, kk, stride, dilation))]
                  for c in range(x.shape[1]) for kk in itertools.product(*map(range, kernel))]
        cols.append(np.stack(window, axis=1))
    return np.stack(cols, axis=2)


@pytest.mark.parametrize("shape,kernel,stride,pad,dilation", [
    ((2, 3, 9), (3,), (2,), (1,), (2,)),
    ((1, 2, 5, 6), (2, 3), (1, 2), (1, 0), (1, 1)),
    ((1, 1, 4, 3, 5), (2, 2, 3), (1, 1, 2), (0, 1, 1), (1, 2, 1)),
])
def test_unfold_against_a_loop_and_fold_is_its_adjoint(shape, kernel, stride, pad, dilation):
    x = RNG.normal(size=shape)
    cols = unfold(x, kernel, stride=stride, pad=pad, dilation=dilation)
    np.testing.assert_array_equal(cols, naive_unfold(x, kernel, stride, pad, dilation))
    c = RNG.normal(size=cols.shape)
    back = fold(c, shape[2:], kernel, stride=stride, pad=pad, dilation=dilation)
    assert back.shape == shape
    np.testing.assert_allclose(np.sum(cols * c), np.sum(x * back), rtol=1e-12)


def test_unfold_times_a_kernel_is_the_convolution():
    x, w = RNG.normal(size=(2, 3, 6, 5)), RNG.normal(size=(4, 3, 3, 2))
    cols = unfold(x, (3, 2), stride=(2, 1), pad=1)
    y = np.einsum("ok,nkl->nol", w.reshape(4, -1), cols).reshape(2, 4, 3, 6)
    np.testing.assert_allclose(y, fl.nnlib.conv(x, w, stride=(2, 1), pad=1), rtol=1e-12)


def test_gradients_second_order_and_float32():
    x = RNG.normal(size=(1, 2, 4, 4))
    check_grads(lambda x: unfold(x, 2, stride=2, pad=(0, 1, 1, 0)) ** 2, x)
    c = RNG.normal(size=(1, 8, 9))
    check_grads(lambda c: fold(c, (4, 4), 2, dilation=1) ** 2, c)
    x32 = np.ones((1, 1, 3, 3), np.float32)
    assert unfold(x32, 2).dtype == np.float32 and fold(unfold(x32, 2), 3, 2).dtype == np.float32
    assert fl.gradient(lambda x: np.sum(unfold(x, 2)), x32)[0].dtype == np.float32


def test_bad_input():
    with pytest.raises(ValueError, match=r"unfold: input must be \(N, C, L\)"):
        unfold(np.ones((3, 3)), 2)
    with pytest.raises(ValueError, match="unfold: the kernel \\(5, 5\\) .* does not fit"):
        unfold(np.ones((1, 1, 3, 3)), 5)
    with pytest.raises(ValueError, match="unfold: stride must be an int or a tuple of 2 ints"):
        unfold(np.ones((1, 1, 3, 3)), 2, stride=(1, 1, 1))
    with pytest.raises(ValueError, match=r"fold: expected columns \(N, C \* 4, 4\) for kernel"):
        fold(np.ones((1, 4, 5)), 3, 2)


def test_fold_counts_booleans():
    """fold of boolean columns summed overlapping windows as a logical or (True where 4
    windows overlap), silently; booleans count as 0 and 1."""
    cols = fl.nnlib.unfold(np.ones((1, 1, 3, 3), bool), 2)
    np.testing.assert_array_equal(fl.nnlib.fold(cols, 3, 2)[0, 0],
                                  [[1, 2, 1], [2, 4, 2], [1, 2, 1]])


def test_unfold_of_single_entry_windows_is_a_new_array():
    """unfold with windows of one entry returned a read-only view of x: ``cols += 1`` raised
    NumPy's read-only error where every other kernel gives a new array."""
    x = np.arange(8.0).reshape(1, 2, 2, 2)
    cols = fl.nnlib.unfold(x, 1)
    cols += 1
    np.testing.assert_array_equal(cols, x.reshape(1, 2, 4) + 1)
    np.testing.assert_array_equal(x, np.arange(8.0).reshape(1, 2, 2, 2))
