"""fl.oversample / fl.undersample: MLUtils.jl's test/resample.jl translated (batch first:
Julia's ``x = rand(2, 5)``, 5 observations of 2, is ``(5, 2)``; 0-based), against counts
worked out by hand, their errors, and a hypothesis test of random class counts."""

from collections import Counter, namedtuple

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fluxml as fl
from tests.data.fuzz_data import ref_oversampled  # counts by hand (a loop)

x = np.random.default_rng(3).random((5, 2))
ya = np.array(["a", "c", "c", "a", "b"])
y2 = np.array(["c", "c", "c", "a", "b"])


def same(p, q):
    """Two resampled (x, y) pairs are equal."""
    return all(np.array_equal(a, b) for a, b in zip(p, q, strict=True))


# --- test/resample.jl, "oversample" -----------------------------------------------------------


def test_mlutils_oversample():
    o = fl.oversample((x, ya), fraction=1, shuffle=False)
    assert same(o, fl.oversample((x, ya), ya, shuffle=False)[0])
    xo, yo = fl.oversample(x, ya, shuffle=False)
    assert same((xo, yo), o)
    ox, oy = o
    assert isinstance(ox, np.ndarray) and isinstance(oy, np.ndarray)
    assert ox.shape == (6, 2) and oy.shape == (6,)
    np.testing.assert_array_equal(ox[:5], x)
    np.testing.assert_array_equal(ox[5], ox[4])
    assert oy[:5].tolist() == ya.tolist() and oy[5] == ya[4]

    ox, oy = fl.oversample((x, ya), y2, shuffle=False)[0]  # the classes y2, not ya
    assert ox.shape == (9, 2) and oy.shape == (9,)
    np.testing.assert_array_equal(ox[:5], x)
    assert oy[:5].tolist() == ya.tolist()
    # the extra ones class by class; MLUtils' come in its Dict's order, "b" (x[:, 5]) before
    # "a" (x[:, 4]); here in the classes' first appearance in y2: c, a, b
    for i in (5, 6):
        np.testing.assert_array_equal(ox[i], x[3])
        assert oy[i] == ya[3]
    for i in (7, 8):
        np.testing.assert_array_equal(ox[i], x[4])
        assert oy[i] == ya[4]


# --- test/resample.jl, "undersample" ----------------------------------------------------------


def test_mlutils_undersample():
    o = fl.undersample((x, ya), shuffle=False)
    xo, yo = fl.undersample(x, ya, shuffle=False)
    assert same((xo, yo), o)
    ox, oy = o
    assert ox.shape == (3, 2) and oy.shape == (3,)
    np.testing.assert_array_equal(ox[2], x[4])
    ox, oy = fl.undersample((x, ya), y2, shuffle=False)[0]
    assert ox.shape == (3, 2) and oy.shape == (3,)
    np.testing.assert_array_equal(ox[1:3], x[3:5])


# --- against counts by hand -------------------------------------------------------------------


def check_oversampled(labels, fraction, xo, yo, n):
    """xo holds the observations' indices: each one appears as by hand, with its label."""
    assert yo.tolist() == [labels[i] for i in xo.tolist()]  # x and y resampled together
    assert set(xo.tolist()) == set(range(n))  # nothing dropped
    seen = Counter(xo.tolist())
    for lab, (count, appearances) in ref_oversampled(labels, fraction).items():
        assert sum(1 for v in yo.tolist() if v == lab) == count
        assert sorted(seen[i] for i in range(n) if labels[i] == lab) == appearances


def test_oversample_fraction_tops_each_class_up_to_a_share_of_the_largest():
    labels = ["a"] + ["b"] * 4 + ["c"] * 2
    n = len(labels)
    idx = np.arange(n)
    # 0.5 * 4 = 2: "a" gets one more, "c" none; 0.625 * 4 = 2.5 rounds to 2 (ties to even);
    # 0.875 * 4 = 3.5 rounds to 4; 1.5 * 4 = 6: every class repeated, "b" too
    for fraction, counts in [(0.5, {"a": 2, "b": 4, "c": 2}), (0.625, {"a": 2, "b": 4, "c": 2}),
                             (0.875, {"a": 4, "b": 4, "c": 4}), (1, {"a": 4, "b": 4, "c": 4}),
                             (1.5, {"a": 6, "b": 6, "c": 6}), (0.1, {"a": 1, "b": 4, "c": 2})]:
        for shuffle in (False, True):
            xo, yo = fl.oversample((idx, labels), fraction=fraction, shuffle=shuffle, rng=1)
            assert Counter(yo.tolist()) == counts, fraction
            check_oversampled(labels, fraction, xo, yo, n)
        # unshuffled: the data in its order, then the extra ones
        xo, _ = fl.oversample((idx, labels), fraction=fraction, shuffle=False)
        assert xo[:n].tolist() == list(range(n))


def test_shuffled_resampling_is_reproducible_with_a_seed_or_a_generator():
    labels = np.array([0, 1, 1, 1, 1, 1, 2, 2])
    idx = np.arange(8)
    for f in (fl.oversample, fl.undersample):
        a = f((idx, labels), rng=7)
        b = f((idx, labels), rng=np.random.default_rng(7))
        assert same(a, b)
        draws = {tuple(f((idx, labels), rng=seed)[0].tolist()) for seed in range(6)}
        assert len(draws) > 1  # a seed changes the draw
    xu, yu = fl.undersample((idx, labels), rng=3)
    assert Counter(yu.tolist()) == {0: 1, 1: 1, 2: 1} and yu.tolist() == labels[xu].tolist()


def test_labels_from_the_last_part_of_a_tuple_and_given_apart():
    XY = namedtuple("XY", "x z y")
    z = np.arange(5) * 10
    o = fl.oversample(XY(x, z, ya), shuffle=False)
    assert type(o) is XY and o.y.tolist() == ["a", "c", "c", "a", "b", "b"]
    np.testing.assert_array_equal(o.z, z[[0, 1, 2, 3, 4, 4]])
    (ox, oz), oy = fl.oversample((x, z), ya.tolist(), shuffle=False)  # labels as a list
    np.testing.assert_array_equal(oz, z[[0, 1, 2, 3, 4, 4]])
    assert oy.tolist() == ["a", "c", "c", "a", "b", "b"]
    d, c = fl.undersample({"x": x, "z": z}, ya, shuffle=False)
    assert d["z"].tolist() == [0, 10, 40] and c.tolist() == ["a", "c", "b"]
    # NaN labels are one class (MLUtils' Dict: isequal)
    _, yn = fl.undersample(np.arange(4), np.array([np.nan, np.nan, 1.0, 1.0]), shuffle=False)
    assert yn.tolist()[2:] == [1.0, 1.0] and np.isnan(yn[:2]).all()


def test_bad_arguments_are_named():
    for f in (fl.oversample, fl.undersample):
        name = f.__name__
        with pytest.raises(ValueError, match=rf"{name}: classes not given, and data is of "
                                             r"type ndarray; .*pass classes="):
            f(x)
        with pytest.raises(ValueError, match=rf"{name}: classes not given, and data is a "
                                             r"tuple of 1 part"):
            f((ya,))
        with pytest.raises(ValueError, match=rf"{name}: classes must hold one label per "
                                             r"observation, 5; got 4"):
            f(x, ya[:4])
        with pytest.raises(TypeError, match=rf"{name}: classes must hold one hashable label "
                                            r".*one-hot rows\? pass fl.onecold"):
            f(x, np.eye(2)[[0, 1, 1, 0, 1]])
        with pytest.raises(TypeError, match=rf"{name}: classes must be a sequence"):
            f(x[:3], "abc")
        with pytest.raises(ValueError, match=rf"{name}: data holds no observations"):
            f((np.zeros((0, 2)), np.zeros(0)))
        with pytest.raises(ValueError, match=rf"{name}: data's last part \(the labels\) must "
                                             r"hold one label per observation, 5; got 4"):
            f((x, ya[:4]))
        with pytest.raises(ValueError, match=rf"{name}: the parts of the data must hold the "
                                             r"same number"):
            f((x, ya[:4], ya))
        with pytest.raises(TypeError, match=rf"{name}: shuffle must be True or False"):
            f(x, ya, shuffle="yes")
        with pytest.raises(TypeError, match=r"rng must be an int seed"):
            f(x, ya, rng=0.5)
    for bad in (0, -1, float("nan"), float("inf"), "1", True):
        with pytest.raises(ValueError, match=r"oversample: fraction must be a finite number "
                                             r"> 0; got"):
            fl.oversample(x, ya, fraction=bad)


@settings(max_examples=50, deadline=None)
@given(counts=st.lists(st.integers(1, 7), min_size=1, max_size=5),
       fraction=st.sampled_from([0.3, 0.5, 1, 1.25, 2.5]), shuffle=st.booleans(),
       seed=st.integers(0, 2**16))
def test_random_class_counts_against_counts_by_hand(counts, fraction, shuffle, seed):
    labels = [lab for lab, c in enumerate(counts) for _ in range(c)]
    np.random.default_rng(seed).shuffle(labels)
    n, idx = len(labels), np.arange(len(labels))
    xo, yo = fl.oversample((idx, labels), fraction=fraction, shuffle=shuffle, rng=seed)
    check_oversampled(labels, fraction, xo, yo, n)
    xu, yu = fl.undersample((idx, labels), shuffle=shuffle, rng=seed)
    assert yu.tolist() == [labels[i] for i in xu.tolist()]
    assert len(set(xu.tolist())) == len(xu)  # no observation twice
    assert Counter(yu.tolist()) == {lab: min(counts) for lab in range(len(counts))}
    if not shuffle:  # each class's first ones, in the data's order
        first = [i for i in range(n) if sum(labels[j] == labels[i] for j in range(i))
                 < min(counts)]
        assert xu.tolist() == first
