"""np.histogram and np.histogram_bin_edges on traced arrays (no rules before: a
DifferentiationError). The registry harness (test_numerics.CASES) checks derivatives against
finite differences; here: values and dtypes equal to NumPy's to the bit (samples on the edges,
NumPy's block-by-block sums of many weights, both of its paths), what has no derivative, and
NumPy's errors."""

import numpy as np
import pytest

import fluxml as fl


def _traced(f, *args):
    """``f``'s results computed on traced arguments (the rule's values)."""
    return fl.pullback(f, *args)[0]


def _assert_same(got, want):
    for g, w in zip(got, want):
        assert np.asarray(g).dtype == w.dtype and np.shape(g) == w.shape
        np.testing.assert_array_equal(g, w)


rng = np.random.default_rng(11)
ON_EDGES = np.array([0.0, 0.25, 0.5, 0.75, 1.0, 0.5, 0.3, 0.25])  # edges of 4 bins of [0, 1]


@pytest.mark.parametrize("bins", [4, 7, "auto", "fd", "sturges", [0.0, 0.25, 0.6, 1.0],
                                  [0.1, 0.5, 0.5, 0.9]])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("density", [False, True])
def test_values_equal_numpy(bins, weighted, density):
    a = np.concatenate([ON_EDGES, rng.random(9)])
    w = rng.standard_normal(a.shape)
    if weighted and isinstance(bins, str):
        return  # NumPy refuses it (test_errors_as_numpy)
    with np.errstate(invalid="ignore"):  # (density of an empty bin of width 0: NaN)
        want = np.histogram(a, bins, density=density, weights=w if weighted else None)
        got = _traced(lambda a, w: np.histogram(a, bins, density=density,
                                                weights=w if weighted else None), a, w)
    _assert_same(got, want)
    _assert_same([_traced(lambda a: np.histogram_bin_edges(a, bins), a)],
                 [np.histogram_bin_edges(a, bins)])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("bins", [5, [-3.0, -0.5, 0.0, 0.1, 2.5]])
def test_many_weights_summed_as_numpy(dtype, bins):
    # more samples than NumPy's block (65536): its sums block by block, to the bit
    a = rng.standard_normal(140_000).astype(dtype)
    w = (rng.standard_normal(a.shape) * 1e3).astype(dtype)
    want = np.histogram(a, bins, weights=w, range=(-3.0, 2.5) if bins == 5 else None)
    got = _traced(lambda a, w: np.histogram(
        a, bins, weights=w, range=(-3.0, 2.5) if bins == 5 else None), a, w)
    _assert_same(got, want)


def test_equal_samples_and_range():
    for a, kw in ((np.full(4, 2.0), {}), (np.array([0.2, 0.4, 3.0]), {"range": (0.0, 1.0)}),
                  (np.array([0.5, 0.7]), {"range": (0.5, 0.5)}), (np.zeros(0), {})):
        _assert_same(_traced(lambda a: np.histogram(a, 3, **kw), a), np.histogram(a, 3, **kw))


def test_counts_have_no_derivative_edges_and_weights_do():
    a, w = rng.random(6), rng.standard_normal(6)
    ga, gw = fl.gradient(lambda a, w: np.sum(np.histogram(a, 3, weights=w)[0] ** 2), a, w)
    assert ga is None  # which bin a sample is in: piecewise constant
    counts = np.histogram(a, 3)[0]
    index = np.minimum(np.searchsorted(np.histogram_bin_edges(a, 3), a, "right") - 1, 2)
    np.testing.assert_allclose(gw, 2 * np.histogram(a, 3, weights=w)[0][index])
    # the edges: linspace(min, max), so d(sum of edges)/da is 2 at the min and 2 at the max
    (g,) = fl.gradient(lambda a: np.sum(np.histogram(a, 3)[1]), a)
    want = np.zeros(6)
    want[np.argmin(a)] = want[np.argmax(a)] = 2.0
    np.testing.assert_allclose(g, want, atol=1e-15)
    # the counts are constants of the derivative
    (g,) = fl.gradient(lambda a: np.sum(np.histogram(a, 3)[0] * a[:3]), a)
    np.testing.assert_array_equal(g, np.concatenate([counts, np.zeros(3)]))


@pytest.mark.parametrize("f, error, match", [
    (lambda a: np.histogram(a * np.nan, 3), ValueError, "autodetected range"),
    (lambda a: np.histogram(a, 3, range=(1.0, 0.0)), ValueError, "max must be larger"),
    (lambda a: np.histogram(a, 3, range=(0.0, np.inf)), ValueError, "supplied range"),
    (lambda a: np.histogram(a, [0.0, 0.5, 0.2]), ValueError, "increase monotonically"),
    (lambda a: np.histogram(a, 0), ValueError, "must be positive"),
    (lambda a: np.histogram(a, 2.5), TypeError, "must be an integer"),
    (lambda a: np.histogram(a, [[0.0, 1.0]]), ValueError, "must be 1d"),
    (lambda a: np.histogram(a, "auto", weights=a), TypeError, "not supported for weighted"),
    (lambda a: np.histogram(a, 3, weights=a[:2]), ValueError, "same shape"),
    (lambda a: np.histogram(1.0 + a * 1e-15, 10), ValueError, "finite-sized bins"),
])
def test_errors_as_numpy(f, error, match):
    a = rng.random(4) + 0.1
    with pytest.raises(error, match=match):
        f(a)  # NumPy's own
    with pytest.raises(error, match=match):
        fl.gradient(lambda a: np.sum(f(a)[1]), a)


@pytest.mark.parametrize("f", [
    lambda s, w: np.histogramdd(s, 3),
    lambda s, w: np.histogramdd(s, (2, 4), weights=w, density=True),
    lambda s, w: np.histogramdd(s, [np.array([0.0, 0.25, 1.0]), 4], range=[None, (0.1, 0.9)]),
    lambda s, w: np.histogramdd([s[:, 0], s[:, 1]], 2, weights=w),
    lambda s, w: np.histogramdd(s[:, 0], 4),  # one dimension
    lambda s, w: np.histogram2d(s[:, 0], s[:, 1], 3, weights=w, density=True),
    lambda s, w: np.histogram2d(s[:, 0], s[:, 1], [2, 5]),
    lambda s, w: np.histogram2d(s[:, 0], s[:, 1], [0.0, 0.5, 0.75, 1.0])])
def test_histogramdd_values_equal_numpy(f):
    # no rules before (a DifferentiationError); samples on the edges of 2 and 4 bins too
    s = np.concatenate([np.stack([ON_EDGES, ON_EDGES[::-1]], axis=1), rng.random((9, 2))])
    w = rng.standard_normal(s.shape[0])
    want = fl.leaves(f(s, w))
    got = fl.leaves(_traced(f, s, w))
    assert len(got) == len(want)
    _assert_same(got, want)


def test_histogramdd_derivatives():
    # the weighted sums are linear in the weights; the edges move with each column's
    # smallest and largest sample; the counts carry nothing
    s, w = rng.random((7, 2)), rng.standard_normal(7)
    gs, gw = fl.gradient(lambda s, w: np.sum(np.histogramdd(s, 2, weights=w)[0] ** 2), s, w)
    hist = np.histogramdd(s, 2, weights=w)[0]
    edges = np.histogramdd(s, 2)[1]
    index = [np.minimum(np.searchsorted(e, s[:, i], "right") - 1, 1)
             for i, e in enumerate(edges)]
    assert gs is None
    np.testing.assert_allclose(gw, 2 * hist[index[0], index[1]])
    (g,) = fl.gradient(lambda s: sum(np.sum(e) for e in np.histogramdd(s, 3)[1]), s)
    want = np.zeros_like(s)
    for i in range(2):
        want[np.argmin(s[:, i]), i] = want[np.argmax(s[:, i]), i] = 2.0
    np.testing.assert_allclose(g, want, atol=1e-15)


@pytest.mark.parametrize("f, error, match", [
    (lambda s: np.histogramdd(s, [2]), ValueError, "dimension of bins"),
    (lambda s: np.histogramdd(s, 2, range=[(0, 1)]), ValueError, "one entry per dimension"),
    (lambda s: np.histogramdd(s, [0, 2]), ValueError, r"`bins\[0\]` must be positive"),
    (lambda s: np.histogramdd(s, [2, 2.5]), TypeError, r"`bins\[1\]` must be an integer"),
    (lambda s: np.histogramdd(s, [2, [0.0, 1.0, 0.5]]), ValueError, "monotonically increasing"),
    (lambda s: np.histogramdd(s * np.nan, 2), ValueError, "autodetected range"),
    (lambda s: np.histogram2d(s[:, 0], s[:3, 1]), ValueError, "same length"),
])
def test_histogramdd_errors_as_numpy(f, error, match):
    s = rng.random((5, 2))
    with pytest.raises(error, match=match):
        f(s)  # NumPy's own
    with pytest.raises(error, match=match):
        fl.gradient(lambda s: np.sum(f(s)[0]), s)


def test_boolean_samples_with_traced_weights_as_numpy():
    """NumPy converts boolean samples to uint8 (with a RuntimeWarning); plain boolean samples
    with traced weights were refused as 'a traced boolean array' (review)."""
    a = np.array([True, False, True, True])
    w = np.array([1.0, 2.0, 3.0, 4.0])
    with pytest.warns(RuntimeWarning, match="Converting input from bool"):
        expected = np.histogram(a, 2, weights=w)[0]
    with pytest.warns(RuntimeWarning, match="Converting input from bool"):
        (g,) = fl.gradient(lambda w: np.sum(np.histogram(a, 2, weights=w)[0] * [1.0, 10.0]), w)
    np.testing.assert_array_equal(g, [10.0, 1.0, 10.0, 10.0])
    with pytest.warns(RuntimeWarning, match="Converting input from bool"):
        got = fl.compile(lambda w: np.histogram(a, 2, weights=w)[0])(w)
    np.testing.assert_array_equal(got, expected)
