"""What NumPy code does with a value inside ``fl.compile`` as eagerly, or refuses by name: the
``dtype=`` of a sum kept (the primitives promote small integers as NumPy's default does),
``round(x, n)`` of a 0-d value, and ``x.view(dtype)`` refused, not recursing without end
(found by a user's review of the compiler)."""

from __future__ import annotations

import numpy as np
import pytest

import fluxml as fl

X = np.arange(300.0)


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.uint8, np.float32])
@pytest.mark.parametrize("reduce", [
    lambda x, dtype: np.sum(x > 0, dtype=dtype),
    lambda x, dtype: np.prod((x > 297) + 1, dtype=dtype),
    lambda x, dtype: np.cumsum(x > 0, dtype=dtype),
    lambda x, dtype: np.cumulative_sum(x > 0, dtype=dtype),
], ids=["sum", "prod", "cumsum", "cumulative_sum"])
def test_a_reductions_dtype_is_kept_as_numpy_keeps_it(reduce, dtype):
    eager = reduce(X, dtype)
    compiled = fl.compile(lambda x: reduce(x, dtype))(X)
    assert compiled.dtype == eager.dtype == dtype  # (int8: 299 wraps to 43 in both)
    np.testing.assert_array_equal(compiled, eager)


def test_round_of_a_traced_number_as_of_numpys_scalar():
    f = lambda x: x * round(x.sum(), 1)  # noqa: E731
    x = np.arange(3.0) + 0.04
    np.testing.assert_array_equal(fl.compile(f)(x), f(x))
    with pytest.raises(fl.CompileError, match=r"round\(x\) \(an integer result\) needs a "
                                              r"concrete value"):
        fl.compile(lambda x: x * round(x.sum()))(x)


def test_a_view_as_another_dtype_is_refused_by_name():
    x = np.arange(3.0)
    with pytest.raises(fl.CompileError, match=r"x\.view\(int64\) \(reinterpreting the bytes\) "
                                              r"needs a concrete value"):
        fl.compile(lambda x: x.view(np.int64) & 1)(x)
    np.testing.assert_array_equal(fl.compile(lambda x: x.view(np.float64) * 2)(x), 2 * x)


def test_shift_operators_on_traced_integers():
    a = np.array([-7, 7, 8])
    for f in (lambda a: a >> 1, lambda a: a << 2, lambda a: 1 << a % 4, lambda a: 64 >> a % 4):
        np.testing.assert_array_equal(fl.compile(f)(a), f(a))


def test_a_float16_mean_sums_in_float32_as_numpys():
    # (sum / 70000 in float16 divided by inf: a loss of 0 and no gradient, silently)
    x = np.full(70_000, 0.5, np.float16)
    f = lambda x: np.mean(x * x)  # noqa: E731
    assert fl.compile(f)(x) == f(x) == np.float16(0.25)
    assert fl.compile(f)(x).dtype == np.float16
    g, = fl.gradient(f, x[:1000])
    np.testing.assert_allclose(g.astype(np.float64), 2 * 0.5 / 1000, rtol=1e-3)
