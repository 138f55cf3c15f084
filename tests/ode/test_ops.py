"""The solvers' fused linear-combination primitive: its rules against finite differences."""

import numpy as np

import fluxml as fl
from fluxml.ode.ops import lincomb
from fluxml.testing import check_grads


def test_lincomb_value_and_derivatives_to_second_order():
    rng = np.random.default_rng(0)
    y, k1, k2 = rng.normal(size=(3, 4))
    np.testing.assert_allclose(lincomb(y, (0.5, -2.0), (k1, k2)), y + 0.5 * k1 - 2.0 * k2)
    check_grads(lambda y, a, b: lincomb(y, (0.5, -2.0), (a, b)) ** 2, y, k1, k2, order=2)
    # a zero coefficient drops its term, and a term may be the same array as another
    check_grads(lambda y, a: lincomb(y, (0.0, 1.5, 2.0), (a, a, y)), y, k1, order=1)


def test_lincomb_keeps_float32_and_records_one_node_per_combination():
    y = np.ones(3, np.float32)
    assert lincomb(y, (0.1,), (y,)).dtype == np.float32
    g = fl.gradient(lambda y: np.sum(lincomb(y, (0.25, 0.5), (y, y))), y)[0]
    assert g.dtype == np.float32
    np.testing.assert_allclose(g, 1.75)
