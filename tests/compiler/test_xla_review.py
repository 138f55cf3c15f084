"""The ``xla`` back end against NumPy where XLA's integer arithmetic differs: a quotient by 0.

Skipped without JAX (an optional extra: ``pip install 'fluxml[xla]'``).
"""

import warnings

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="the xla back end needs JAX: pip install 'fluxml[xla]'")

import fluxml as fl  # noqa: E402


def _division(a, b, c):
    q, r = np.divmod(a, b)
    return [a // b, a % b, q, r, np.floor_divide(a, c), np.remainder(a, c), a // 0, a % 0]


def test_integer_division_by_zero_is_numpys_zero():
    """NumPy's integer ``a // 0`` and ``a % 0`` are 0 (XLA's quotient was -1 or -2), eager,
    on either back end, and on the tiered first call and later ones alike; float division
    keeps its inf and NaN; divisors that are not 0 are unchanged."""
    a = np.array([-7, 7, -8, 5, 0, 9])
    b = np.array([0, 0, 0, 0, 0, 2])
    c = np.array([0, 3, 0, -2, 0, 0], dtype=np.int32)
    want = [np.array([0, 0, 0, 0, 0, 4]), np.array([0, 0, 0, 0, 0, 1]),
            np.array([0, 0, 0, 0, 0, 4]), np.array([0, 0, 0, 0, 0, 1]),
            np.array([0, 2, 0, -3, 0, 0]), np.array([0, 1, 0, -1, 0, 0]),
            np.zeros(6, np.int64), np.zeros(6, np.int64)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        eager = _division(a, b, c)
        xla = fl.compile(_division, backend="xla", background=False)(a, b, c)
        tiered = fl.compile(_division, backend="xla")
        first = tiered(a, b, c)
        tiered.wait()
        later = tiered(a, b, c)
    for k, w in enumerate(want):
        for name, got in (("eager", eager), ("xla", xla), ("first", first), ("later", later)):
            np.testing.assert_array_equal(got[k], w, err_msg=f"{name} output {k}")
            assert np.asarray(got[k]).dtype == eager[k].dtype, (name, k)

    for t in (np.uint8, np.int32, np.bool_):
        x, y = np.array([1, 0, 1], dtype=t), np.array([0, 0, 1], dtype=t)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            got = fl.compile(lambda x, y: [x // y, x % y], backend="xla",
                             background=False)(x, y)
        np.testing.assert_array_equal(got[0], [0, 0, 1], err_msg=str(t))
        np.testing.assert_array_equal(got[1], [0, 0, 0], err_msg=str(t))

    x, y = np.array([-7.0, 7.0, 0.0, 5.0]), np.array([0.0, 0.0, 0.0, 2.0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        got = fl.compile(lambda x, y: [x // y, x % y], backend="xla", background=False)(x, y)
    np.testing.assert_array_equal(got[0], [-np.inf, np.inf, np.nan, 2.0])
    np.testing.assert_array_equal(got[1], [np.nan, np.nan, np.nan, 1.0])
