"""The solvers' fused linear-combination primitive: its rules against finite differences."""

import numpy as np

import fluxml as fl
from fluxml.ode.ops import combine_rows, lincomb, rows, stack_rows
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


def test_rows_is_the_plain_matrix_product_bit_for_bit_and_differentiable():
    rng = np.random.default_rng(1)
    y, k1, k2, k3 = rng.normal(size=(4, 5))
    c = np.array([0.1, -1.3, 2.0 / 3.0])
    K = np.stack([k1, k2, k3])
    # traced or not, the value is combine_rows's, as the plain solver step computes it
    np.testing.assert_array_equal(rows(y, c, [k1, k2, k3]), combine_rows(y, c, K))
    traced = fl.jvp(lambda y: rows(y, c, [k1, k2, k3]), (y,), (np.ones(5),))[0]
    np.testing.assert_array_equal(traced, combine_rows(y, c, K))
    np.testing.assert_allclose(rows(y, c, [k1, k2, k3]), y + c[0] * k1 + c[1] * k2 + c[2] * k3)
    check_grads(lambda y, a, b: rows(y, (0.5, 0.0, -2.0), (a, b, a)) ** 2, y, k1, k2, order=2)
    y32 = y.astype(np.float32)
    assert rows(y32, np.float32(0.1) * np.ones(1, np.float32), [y32]).dtype == np.float32


def test_rows_stay_on_a_second_array_library():
    """rows (a traced Runge-Kutta step's combination) and stack_rows made K with NumPy, so
    CuPy states failed ("Implicit conversion to a NumPy array"), where lincomb ran; they are
    made by the states' library now (the suite's stand-in for CuPy)."""
    from tests.backend.fakedevice import FakeDeviceArray

    y, k = np.array([1.0, 0.5]), np.array([0.1, 0.2])
    dy, dk = FakeDeviceArray(y), FakeDeviceArray(k)
    got = rows(dy, [0.5], [dk])
    assert type(got) is FakeDeviceArray
    np.testing.assert_array_equal(got.data, y + 0.5 * k)
    (g,) = fl.gradient(lambda k: np.sum(rows(dy, [0.5], [k])), dk)
    assert type(g) is FakeDeviceArray
    np.testing.assert_array_equal(g.data, [0.5, 0.5])
    K = stack_rows([dk, dy], np.float64)
    assert type(K) is FakeDeviceArray
