"""Initialisers: shapes, dtypes, scales against their formulas, seeding."""

import math
import re
from functools import partial

import numpy as np
import pytest

import fluxml as fl

INITS = [fl.init.glorot_uniform, fl.init.glorot_normal, fl.init.kaiming_uniform,
         fl.init.kaiming_normal, fl.init.lecun_normal, fl.init.truncated_normal, fl.init.orthogonal,
         partial(fl.init.sparse_init, sparsity=0.5), fl.init.identity_init, fl.init.zeros,
         fl.init.ones, fl.init.normal]


@pytest.mark.parametrize("init", INITS, ids=lambda f: getattr(f, "__name__", "sparse_init"))
def test_shape_dtype_and_rng(init):
    a = init((6, 5), np.random.default_rng(0))
    b = init((6, 5), np.random.default_rng(0))
    assert a.shape == (6, 5) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert init((6, 5), np.random.default_rng(0), dtype=np.float64).dtype == np.float64


def test_scales_follow_the_fans():
    rng = np.random.default_rng(0)
    shape = (64, 32, 3, 3)  # a conv weight: fan_in 288, fan_out 576
    assert fl.init.fans(shape) == (288, 576)
    w = fl.init.glorot_uniform(shape, rng)
    assert np.abs(w).max() <= math.sqrt(6 / (288 + 576))
    assert np.std(fl.init.glorot_normal(shape, rng)) == pytest.approx(math.sqrt(2 / 864), rel=0.05)
    assert np.std(fl.init.kaiming_normal(shape, rng)) == pytest.approx(math.sqrt(2 / 288), rel=0.05)
    assert np.abs(fl.init.kaiming_uniform(shape, rng)).max() <= math.sqrt(2) * math.sqrt(3 / 288)
    assert np.std(fl.init.normal((100, 100), rng, std=0.1)) == pytest.approx(0.1, rel=0.05)
    assert np.std(fl.init.lecun_normal(shape, rng)) == pytest.approx(math.sqrt(1 / 288), rel=0.05)
    assert np.abs(fl.init.lecun_normal((4, 1), rng, gain=10.0)).max() <= 2.0  # Flux's cut
    t = fl.init.truncated_normal((10000,), rng, lo=-1.0, hi=0.5)
    assert t.min() >= -1.0 and t.max() <= 0.5


def test_orthogonal_sparse_identity():
    rng = np.random.default_rng(0)
    q = fl.init.orthogonal((5, 3), rng, dtype=np.float64)
    np.testing.assert_allclose(q.T @ q, np.eye(3), atol=1e-12)
    q = fl.init.orthogonal((3, 5), rng, dtype=np.float64)
    np.testing.assert_allclose(q @ q.T, np.eye(3), atol=1e-12)
    s = fl.init.sparse_init((10, 4), rng, sparsity=0.3)
    assert ((s == 0).sum(axis=0) >= 3).all()
    np.testing.assert_array_equal(fl.init.identity_init((3, 3)), np.eye(3))
    k = fl.init.identity_init((2, 2, 3, 3))
    x = np.random.default_rng(1).normal(size=(2, 3, 3))
    np.testing.assert_allclose(np.einsum("oikl,ikl->o", k, x), x[:, 1, 1], rtol=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError, match="orthogonal needs at least 2 dimensions"):
        fl.init.orthogonal((3,))
    with pytest.raises(TypeError, match="rng must be a numpy.random.Generator"):
        fl.init.glorot_uniform((2, 2), rng="3")
    with pytest.raises(TypeError, match=r"shape as one tuple, glorot_uniform\(\(3, 4\)\)"):
        fl.init.glorot_uniform(3, 4)  # Flux's way of giving the shape
    with pytest.raises(ValueError, match="non-negative ints"):
        fl.init.zeros((2, -1))
    with pytest.raises(ValueError, match="sparsity must be in"):
        fl.init.sparse_init((2, 2), sparsity=2)


@pytest.mark.parametrize("n, shown", [(True, "True (a bool)"), (2.5, "2.5 (a float)"),
                                      ("abc", "'abc' (a str)"), (-1, "-1"), ([1.5], "[1.5]")])
def test_seed_refuses_what_is_not_a_seed(n, shown):
    """NumPy took fl.seed(True) for the seed 1, silently, and raised its own errors
    (SeedSequence's) for a float or a string."""
    with pytest.raises(ValueError, match=re.escape(f"seed: n must be a non-negative int (or a "
                                                   f"sequence of them, or None for a seed from "
                                                   f"the system); got {shown}")):
        fl.seed(n)
    fl.seed(1)  # an int seeds fluxml's generator as NumPy's own generator of that seed draws
    assert fl.init.default_rng().random() == np.random.default_rng(1).random()
