"""``argmax``/``argmin`` and their NaN-skipping twins compiled for XLA: complex arrays ordered
as NumPy orders them (real parts first, then imaginary ones; ``jnp.argmax`` refuses complex
input), NaN entries as NumPy treats them (the first NaN is the extremum; the ``nan`` variants
skip them, and a slice of NaN alone is an error on every call, where XLA gave -1).

Skipped without JAX (an optional extra: ``pip install 'fluxml[xla]'``).
"""

import numpy as np
import pytest

pytest.importorskip("jax", reason="the xla back end needs JAX: pip install 'fluxml[xla]'")

import fluxml as fl  # noqa: E402

FUNCTIONS = {"argmax": np.argmax, "argmin": np.argmin, "nanargmax": np.nanargmax,
             "nanargmin": np.nanargmin}
OPTIONS = [{}, {"axis": 0}, {"axis": 1}, {"axis": -1, "keepdims": True},
           {"axis": None, "keepdims": True}]


def _by_hand(row, largest):
    """The position of the lexicographic extremum of a complex row without NaN (first on
    ties), by a loop."""
    best = 0
    for k, z in enumerate(row):
        a, b = (z.real, z.imag), (row[best].real, row[best].imag)
        if (a > b) if largest else (a < b):
            best = k
    return best


def _values():
    rng = np.random.default_rng(0)  # small integers: many ties in real and imaginary parts
    return rng.integers(-2, 3, (5, 6)) + 1j * rng.integers(-2, 3, (5, 6))


def test_complex_argmax_and_argmin_order_real_then_imaginary():
    c = _values()
    for name in ("argmax", "argmin"):
        f = fl.compile(lambda x, name=name: FUNCTIONS[name](x, axis=1), backend="xla",
                       background=False)
        got = f(c)
        assert got.tolist() == [_by_hand(row, name == "argmax") for row in c]


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_arg_extrema_agree_with_numpy_on_complex_and_nan_entries(name):
    c = _values()
    c[1, 2] = complex(np.nan, 0)  # a NaN in either part makes the entry NaN
    c[3, 4] = complex(1, np.nan)
    c[3, 1] = complex(np.nan, np.nan)
    func = FUNCTIONS[name]
    for options in OPTIONS:
        f = fl.compile(lambda x, options=options: func(x, **options), backend="xla",
                       background=False)
        for x in (c, c.real.copy(), c[::2]):
            got, want = f(x), func(x, **options)
            assert np.shape(got) == np.shape(want)
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("name", ["nanargmax", "nanargmin"])
@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_a_slice_of_nan_alone_is_refused_on_every_call(name, dtype):
    func = FUNCTIONS[name]
    f = fl.compile(lambda x: func(x, axis=1), backend="xla", background=False)
    x = np.array([[1.0, np.nan], [2.0, 3.0]], dtype)
    np.testing.assert_array_equal(f(x), func(x, axis=1))
    x[1] = np.nan
    with pytest.raises(ValueError, match="All-NaN slice encountered"):
        func(x, axis=1)  # (eagerly, NumPy's error)
    with pytest.raises(ValueError, match="All-NaN slice encountered"):
        f(x)


def test_nan_variants_put_infinities_in_place_of_nans_as_numpy():
    """Review of 8d6d4d6: NumPy's nanargmax puts -inf + 0j in place of a NaN entry (+inf for
    nanargmin), which then ties with or beats an entry of infinite real part; the xla
    kernel left NaN entries out instead: np.nanargmax([nan, -inf - 1j]) is 0, and compiled
    it was 1. Every row of NaNs and infinities against NumPy."""
    vals = [np.nan, np.inf, -np.inf, 0.0, 1.0]
    rows = np.array([[complex(a, b), complex(c, d)] for a in vals for b in vals[:3]
                     for c in vals for d in vals[:3]])
    rows = rows[~np.all(np.isnan(rows.real) | np.isnan(rows.imag), axis=1)]  # (all-NaN raises)
    for name in ("nanargmax", "nanargmin"):
        f = FUNCTIONS[name]
        got = fl.compile(lambda a: f(a, axis=1), backend="xla", background=False)(rows)
        np.testing.assert_array_equal(got, f(rows, axis=1))
