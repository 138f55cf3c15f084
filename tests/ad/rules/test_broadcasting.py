"""Binary elementwise rules over random broadcast-compatible shape pairs: each gradient comes
back with its own argument's shape and matches finite differences."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes

import fluxml as fl
from fluxml.testing import check_grads


def _generic(rng, shape):
    # away from 0 and from ties: |x| in [0.3, 1.5] with a random sign, values all distinct
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.3, 1.5, size=shape)


def _positive(rng, shape):
    return rng.uniform(0.5, 2.0, size=shape)


# (name, ufunc, first-argument sampler, second-argument sampler)
BINARY = [
    ("add", np.add, _generic, _generic),
    ("subtract", np.subtract, _generic, _generic),
    ("multiply", np.multiply, _generic, _generic),
    ("true_divide", np.true_divide, _generic, _positive),
    ("power", np.power, _positive, _generic),
    ("maximum", np.maximum, _generic, _generic),
    ("arctan2", np.arctan2, _generic, _generic),
    ("hypot", np.hypot, _generic, _generic),
    ("logaddexp", np.logaddexp, _generic, _generic),
]

SHAPES = mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3)


@pytest.mark.parametrize("name, uf, first, second", BINARY, ids=[b[0] for b in BINARY])
@settings(max_examples=25, deadline=None)
@given(shapes=SHAPES, seed=st.integers(0, 2**16))
def test_binary_broadcasting(name, uf, first, second, shapes, seed):
    rng = np.random.default_rng(seed)
    (sx, sy), _ = shapes
    x, y = first(rng, sx), second(rng, sy)
    gx, gy = fl.gradient(lambda a, b: np.sum(uf(a, b) * np.cos(uf(a, b))), x, y)
    assert np.shape(gx) == sx and np.shape(gy) == sy
    check_grads(uf, x, y, order=1)


@pytest.mark.parametrize("name, uf, first, second", BINARY, ids=[b[0] for b in BINARY])
@pytest.mark.parametrize("sx, sy", [((2, 3), (3,)), ((2, 1), (1, 3)), ((), (2, 2))])
def test_binary_broadcasting_second_order(name, uf, first, second, sx, sy):
    rng = np.random.default_rng(0)
    check_grads(uf, first(rng, sx), second(rng, sy), order=2)
