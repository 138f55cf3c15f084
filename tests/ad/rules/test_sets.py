"""np.unique and the array-API unique_* functions of traced arrays: NumPy's outputs, the
unique values' derivatives (through their first occurrences), refusal under fl.compile."""

import numpy as np
import pytest

import fluxml as fl
from fluxml.testing import check_grads

# distinct entries (finite differences keep the result's shape) and entries with ties
DISTINCT = np.array([[3.1, 1.2, 2.3], [0.4, 5.5, 4.6]])
TIED = np.array([[3.0, 1.0, 2.0], [1.0, 5.0, 3.0]])
NANS = np.array([3.0, np.nan, 1.0, 3.0, np.nan, -0.0, 0.0])


def _weighted(u):
    return np.sum(u * np.arange(1.0, u.size + 1).reshape(np.shape(u)))


# the registry's table (tests/ad/rules/test_registry.py: values, both modes to second order,
# float32): distinct entries, so that finite differences keep the results' shapes
REGISTRY = np.array([[3.1, 1.2, 2.3], [0.4, 5.5, 4.6]])
CASES = [
    (np.unique, lambda a: np.unique(a) * np.arange(1.0, 7.0), (REGISTRY,)),
    (np.unique, lambda a: np.unique(a, return_counts=True)[0], (REGISTRY,)),
    (np.unique, lambda a: np.unique(a, axis=1) ** 2, (REGISTRY,)),
    (np.unique_values, lambda a: np.unique_values(a) ** 2, (REGISTRY,)),
    (np.unique_counts, lambda a: np.unique_counts(a).values * 3, (REGISTRY,)),
    (np.unique_inverse, lambda a: np.unique_inverse(a).values ** 3, (REGISTRY,)),
    (np.unique_all, lambda a: np.unique_all(a).values * 2, (REGISTRY,)),
]

PROGRAMS = {
    "unique": lambda a: _weighted(np.unique(a)),
    "unique flags": lambda a: (lambda r: _weighted(r[0] * r[3]) + np.sum(r[0][r[2]] * a))(
        np.unique(a, return_index=True, return_inverse=True, return_counts=True)),
    "unique axis=0": lambda a: _weighted(np.unique(np.concatenate([a, a[:1]]), axis=0)),
    "unique axis=1": lambda a: _weighted(np.unique(a, axis=1)),
    "unique_values": lambda a: _weighted(np.unique_values(a)),
    "unique_counts": lambda a: (lambda r: _weighted(r.values * r.counts))(np.unique_counts(a)),
    "unique_inverse": lambda a: (lambda r: np.sum(r.values[r.inverse_indices] ** 2 * a))(
        np.unique_inverse(a)),
    "unique_all": lambda a: (lambda r: _weighted(r.values * r.counts) + np.sum(r.indices))(
        np.unique_all(a)),
}


@pytest.mark.parametrize("name", PROGRAMS)
def test_gradients_against_finite_differences(name):
    check_grads(PROGRAMS[name], DISTINCT, order=2)


@pytest.mark.parametrize("name", PROGRAMS)
def test_values_as_numpy(name):
    for x in (DISTINCT, TIED):
        out, _ = fl.pullback(PROGRAMS[name], x)
        assert out == pytest.approx(PROGRAMS[name](x), rel=1e-15)


@pytest.mark.parametrize("func", [np.unique_values, np.unique_counts, np.unique_inverse,
                                  np.unique_all])
def test_outputs_exactly_numpys(func):
    """Types (NumPy's named tuples), values (NaNs, -0.0), dtypes and shapes."""
    for x in (NANS, TIED, TIED.astype(np.float32)):
        out, _ = fl.pullback(func, x)
        expected = func(x)
        assert type(out) is type(expected)
        for got, want in zip(out if isinstance(out, tuple) else (out,),
                             expected if isinstance(expected, tuple) else (expected,)):
            assert np.shape(got) == np.shape(want) and np.asarray(got).dtype == want.dtype
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("kw", [{}, {"equal_nan": False}, {"return_inverse": True},
                                {"return_index": True, "return_counts": True, "equal_nan": False}])
def test_unique_with_nans_and_flags_as_numpy(kw):
    out, _ = fl.pullback(lambda a: np.unique(a, **kw), NANS)
    expected = np.unique(NANS, **kw)
    for got, want in zip(out if kw else (out,), expected if kw else (expected,)):
        np.testing.assert_array_equal(got, want)
        assert np.asarray(got).dtype == want.dtype


def test_a_repeated_value_takes_its_derivative_from_its_first_occurrence():
    """(As max takes the first maximum's.) Unique values of TIED: 1, 2, 3, 5."""
    (g,) = fl.gradient(lambda a: _weighted(np.unique(a)), TIED)
    np.testing.assert_array_equal(g, [[3.0, 1.0, 2.0], [0.0, 4.0, 0.0]])
    (g,) = fl.gradient(lambda a: _weighted(np.unique_values(a)), TIED)
    np.testing.assert_array_equal(g, [[3.0, 1.0, 2.0], [0.0, 4.0, 0.0]])
    (t,) = fl.jvp(lambda a: np.unique(a), (TIED,), (np.arange(6.0).reshape(2, 3),))[1:]
    np.testing.assert_array_equal(t, [1.0, 2.0, 0.0, 4.0])
    (g,) = fl.gradient(lambda a: np.sum(np.unique(a.astype(np.float32))), TIED)
    assert g.dtype == np.float64


@pytest.mark.parametrize("func", [np.unique, np.unique_values, np.unique_counts,
                                  np.unique_inverse, np.unique_all])
def test_compile_refuses_them_by_name(func):
    compiled = fl.compile(lambda x: func(x))
    with pytest.raises(fl.compiler.CompileError, match=f"np.{func.__name__} returns an array "
                       "whose shape depends on the values"):
        compiled(TIED)
    graded = fl.compile(lambda x: fl.gradient(lambda b: np.sum(np.unique(b)), x)[0])
    with pytest.raises(fl.compiler.CompileError, match="np.unique returns"):
        graded(TIED)
