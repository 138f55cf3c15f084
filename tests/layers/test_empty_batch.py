"""An empty batch goes through the layers as in PyTorch: an empty output, zero gradients for
the weights, and running statistics left as they were. The convolutions divided by zero
(a block size from 0 samples), the adaptive max pools and the bias gradient reshaped with -1
(which an empty array cannot take), and BatchNorm in training set its running statistics to
NaN, silently (found by tests/layers/fuzz_shapes.py's helper run)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import fluxml as fl

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # (NumPy: mean of nothing)

LAYERS = [
    (lambda: fl.Conv((3, 3), 2, 4), (0, 2, 5, 5), (0, 4, 3, 3)),
    (lambda: fl.Conv((3, 3), 2, 4, fl.relu, stride=2), (0, 2, 5, 5), (0, 4, 2, 2)),
    (lambda: fl.Conv((3,), 2, 4, pad=1), (0, 2, 5), (0, 4, 5)),
    (lambda: fl.Conv((3, 3), 4, 4, groups=2), (0, 4, 5, 5), (0, 4, 3, 3)),
    (lambda: fl.DepthwiseConv((3, 3), 2, 4), (0, 2, 5, 5), (0, 4, 3, 3)),
    (lambda: fl.ConvTranspose((3, 3), 2, 4, stride=2), (0, 2, 5, 5), (0, 4, 11, 11)),
    (lambda: fl.CrossCor((3, 3), 2, 4), (0, 2, 5, 5), (0, 4, 3, 3)),
    (lambda: fl.AdaptiveMaxPool((2, 2)), (0, 3, 4, 4), (0, 3, 2, 2)),
    (lambda: fl.AdaptiveMaxPool((2, 2)), (2, 0, 4, 4), (2, 0, 2, 2)),
    (lambda: fl.AdaptiveMeanPool((2, 2)), (0, 3, 4, 4), (0, 3, 2, 2)),
    # the GRU's projection reshaped to (N, T, -1), which NumPy cannot resolve for N = 0
    (lambda: fl.GRU(3, 4), (0, 5, 3), (0, 5, 4)),
    (lambda: fl.GRUv3(3, 4), (0, 5, 3), (0, 5, 4)),
    (lambda: fl.LSTM(3, 4), (0, 5, 3), (0, 5, 4)),
    (lambda: fl.RNN(3, 4), (0, 5, 3), (0, 5, 4)),
]


@pytest.mark.parametrize("make, shape, out", LAYERS)
def test_an_empty_batch_gives_an_empty_output_and_zero_gradients(make, shape, out):
    layer = make()
    x = np.ones(shape, np.float32)
    assert layer(x).shape == out
    g, = fl.gradient(lambda m: np.sum(m(x)), layer)
    for name in ("weight", "bias"):
        if getattr(layer, name, None) is not None:
            assert not np.any(getattr(g, name))
    gx, = fl.gradient(lambda x: np.sum(layer(x)), x)
    assert gx.shape == shape


@pytest.mark.parametrize("make, shape", [
    (lambda: fl.BatchNorm(3), (0, 3, 4, 4)),
    (lambda: fl.BatchNorm(3), (2, 3, 0, 4)),
    (lambda: fl.InstanceNorm(3, track_stats=True), (0, 3, 4, 4)),
    (lambda: fl.InstanceNorm(3, track_stats=True), (2, 3, 0, 4)),
])
def test_an_empty_batch_leaves_the_running_statistics(make, shape):
    norm = make()
    with np.errstate(all="ignore"):
        fl.gradient(lambda m: np.sum(m(np.ones(shape, np.float32))), norm)
    np.testing.assert_array_equal(norm.running_mean, np.zeros(3))
    np.testing.assert_array_equal(norm.running_var, np.ones(3))


def test_batchnorm_in_training_on_an_empty_batch_warns_nothing():
    # (its batch statistics, means over no values, warned before being left unused)
    bn = fl.trainmode(fl.BatchNorm(3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = bn(np.ones((0, 3, 5, 5), np.float32))
    assert y.shape == (0, 3, 5, 5) and y.dtype == np.float32
    assert np.array_equal(bn.running_mean, np.zeros(3))


@pytest.mark.parametrize("reduction", ["mean", "sum", "max"])
def test_an_embedding_bag_of_no_bags_gives_no_rows(reduction):
    # as PyTorch's (0, dim); a cast of the bags' lengths (float64 for none) failed
    bag = fl.EmbeddingBag(5, 3, reduction)
    assert bag([]).shape == (0, 3)
    assert bag((np.array([], np.int64), np.array([], np.int64))).shape == (0, 3)
