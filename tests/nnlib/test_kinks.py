"""Derivatives at the kinks of piecewise activations follow PyTorch's conventions (found by
review: relu6'(0) was 1 and hardsigmoid'(3) was 1/6, where PyTorch gives 0), and dropout
draws from the generator fl.seed reseeds."""

import numpy as np
import pytest

import fluxml as fl

# (function, kink, PyTorch's derivative there)
KINKS = [
    (fl.relu, 0.0, 0.0), (fl.relu6, 0.0, 0.0), (fl.relu6, 6.0, 0.0),
    (fl.hardsigmoid, -3.0, 0.0), (fl.hardsigmoid, 3.0, 0.0),
    (fl.hardswish, -3.0, 0.0), (fl.hardswish, 3.0, 1.0),
    # found by the forward-mode fuzzer (tests/nnlib/torch_fuzz_jvp.py): hardtanh'(+-1) was 1
    # (np.clip's), rrelu'(0) was 1 where leakyrelu's and PyTorch's is the slope
    (fl.hardtanh, -1.0, 0.0), (fl.hardtanh, 1.0, 0.0), (fl.rrelu, 0.0, (1 / 8 + 1 / 3) / 2),
    (fl.leakyrelu, 0.0, 0.01), (fl.softshrink, 0.5, 0.0), (fl.hardshrink, 0.5, 0.0),
    (fl.trelu, 1.0, 0.0),
]


@pytest.mark.parametrize("f, x, expected", KINKS, ids=lambda v: getattr(v, "__name__", str(v)))
def test_derivative_at_the_kink(f, x, expected):
    g, = fl.gradient(lambda x: np.sum(f(x)), np.array([x]))
    assert g[0] == expected


@pytest.mark.parametrize("f, x, expected", KINKS, ids=lambda v: getattr(v, "__name__", str(v)))
def test_forward_mode_at_the_kink(f, x, expected):
    # forward mode follows the same convention, at -0.0 too
    for v in (x, -x):
        if v == x or f in (fl.relu, fl.relu6, fl.rrelu, fl.leakyrelu):
            _, t = fl.jvp(f, (np.array([v]),), (np.ones(1),))
            assert t[0] == expected, v


def test_hardtanh_keeps_nan_and_float32():
    y = fl.hardtanh(np.array([np.nan, -3.0, 0.25, 5.0], np.float32), -0.5, 2.0)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, [np.nan, -0.5, 0.25, 2.0])


@pytest.mark.parametrize("f", [fl.relu6, fl.hardsigmoid, fl.hardswish])
def test_values_and_float32_away_from_the_kinks(f):
    x = np.array([-7.0, -3.0, -1.0, 0.0, 2.0, 3.0, 6.0, 8.0], np.float32)
    reference = {"relu6": np.clip(x, 0, 6), "hardsigmoid": np.clip(x / 6 + 0.5, 0, 1),
                 "hardswish": x * np.clip(x / 6 + 0.5, 0, 1)}[f.__name__]
    y = f(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, reference, rtol=1e-6)


def test_dropout_follows_fl_seed():
    x = np.ones(64)
    fl.seed(7)
    a = fl.dropout(x, 0.5)
    fl.seed(7)
    b = fl.dropout(x, 0.5)
    np.testing.assert_array_equal(a, b)
