"""fl.slidingwindow: against windows cut by hand, MLUtils.jl's test/slidingwindow.jl
translated (batch first: Julia's ``reshape(1:18, 3, 6)``, 6 observations of 3, is
``np.arange(1, 19).reshape(6, 3)``; 0-based), its errors, and a hypothesis test of random
sizes and strides."""

from collections import namedtuple

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fluxml as fl
from tests.data.fuzz_data import ref_window_starts  # the windows' starts by a loop

# --- test/slidingwindow.jl, "slidingwindow" ----------------------------------------------------


def test_mlutils_slidingwindow_of_a_range():
    data = np.arange(1, 21)  # 1:20
    s = fl.slidingwindow(data, size=5)
    assert len(s) == 16
    assert s[0].tolist() == [1, 2, 3, 4, 5] and s[1].tolist() == [2, 3, 4, 5, 6]
    s = fl.slidingwindow(data, size=5, stride=3)
    assert len(s) == 6
    for i, first in enumerate([1, 4, 7, 10, 13, 16]):  # s[1] == 1:5 ... s[6] == 16:20
        assert s[i].tolist() == list(range(first, first + 5))


def test_mlutils_slidingwindow_of_a_matrix():
    data = np.arange(1, 19).reshape(6, 3)  # reshape(1:18, 3, 6): its columns are our rows
    s = fl.slidingwindow(data, size=2)
    assert len(s) == 5
    assert isinstance(s[0], np.ndarray) and s[0].dtype == data.dtype
    assert s[0].tolist() == [[1, 2, 3], [4, 5, 6]]  # [1 4; 2 5; 3 6], transposed
    assert s[1].tolist() == [[4, 5, 6], [7, 8, 9]]
    c = 0
    for w in s:
        assert isinstance(w, np.ndarray) and w.shape == (2, 3)
        c += 1
    assert c == 5


def test_mlutils_slidingwindow_obsdim():
    # "obsdim": x = rand(2, 6, 4) windowed along its second axis. Batch first, the
    # observations are the first axis: move that axis to the front
    x = np.random.default_rng(0).random((2, 6, 4))
    v = fl.slidingwindow(np.moveaxis(x, 1, 0), size=2)
    assert len(v) == 5
    for i in range(4):
        np.testing.assert_array_equal(v[i], np.moveaxis(x[:, i:i + 2, :], 1, 0))


def test_mlutils_slidingwindow_vector_indexing():
    # "vector indexing (#213)": several windows at once give a list of windows
    v = fl.slidingwindow(np.arange(1, 21), size=5)
    assert [w.tolist() for w in v[0:2]] == [v[0].tolist(), v[1].tolist()]
    assert [w.tolist() for w in v[[0, 2]]] == [v[0].tolist(), v[2].tolist()]
    assert [w.tolist() for w in v[np.array([1, 3])]] == [v[1].tolist(), v[3].tolist()]
    assert v[[0]][0].tolist() == v[0].tolist()
    assert [w.tolist() for w in v[:]] == [v[i].tolist() for i in range(len(v))]
    x = np.array([[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]]).T  # 5 observations of 2
    w = fl.slidingwindow(x, size=2)
    assert w[0:2][0].tolist() == [[1, 6], [2, 7]]  # [1 2; 6 7], transposed


# --- against windows by hand ------------------------------------------------------------------


def test_windows_of_tuples_dicts_and_datasets():
    x, y = np.arange(14).reshape(7, 2), np.arange(7) * 10
    XY = namedtuple("XY", "x y")
    for data in [(x, y), {"x": x, "y": y}, XY(x, y)]:
        s = fl.slidingwindow(data, 3, stride=2)
        starts = ref_window_starts(7, 3, 2)
        assert len(s) == len(starts) == 3
        for w, a in zip(s, starts):
            wx, wy = (w["x"], w["y"]) if isinstance(w, dict) else w
            np.testing.assert_array_equal(wx, x[a:a + 3])
            np.testing.assert_array_equal(wy, y[a:a + 3])
        assert type(s[0]) is type(data)
    listed = [np.full(2, i) for i in range(5)]  # a dataset read one observation at a time
    s = fl.slidingwindow(listed, 2)
    assert len(s) == 4 and s[3].tolist() == [[3, 3], [4, 4]]


def test_windows_of_an_array_are_views_and_negative_indices_count_from_the_end():
    x = np.arange(10)
    s = fl.slidingwindow(x, 4, stride=3)
    assert np.shares_memory(s[1], x)
    assert s[-1].tolist() == [6, 7, 8, 9] and s[-3].tolist() == s[0].tolist()
    assert list(s.window(2)) == [6, 7, 8, 9] and list(s.window(-3)) == [0, 1, 2, 3]
    with pytest.raises(IndexError, match=r"slidingwindow: window 3 of 3"):
        s.window(3)
    assert repr(s) == "slidingwindow(ndarray(10,), size=4, stride=3)"


def test_a_dataloader_over_windows_stacks_them():
    x, y = np.arange(16.0).reshape(8, 2), np.arange(8)
    loader = fl.DataLoader(fl.slidingwindow((x, y), 3, stride=2), batchsize=2)
    batches = list(loader)
    starts = ref_window_starts(8, 3, 2)  # 0, 2, 4
    assert len(loader) == 2 and [len(yb) for _, yb in batches] == [2, 1]
    xs = np.concatenate([xb for xb, _ in batches])
    np.testing.assert_array_equal(xs, np.stack([x[a:a + 3] for a in starts]))
    shuffled = np.concatenate([yb for _, yb in fl.DataLoader(
        fl.slidingwindow((x, y), 3, stride=2), batchsize=2, shuffle=True, rng=0)])
    assert sorted(map(tuple, shuffled.tolist())) == [tuple(y[a:a + 3]) for a in starts]


def test_bad_arguments_are_named():
    x = np.arange(5)
    for kwargs, msg in [({"size": 0}, r"size must be a positive int; got 0"),
                        ({"size": 2.0}, r"size must be a positive int; got 2.0 \(a float\)"),
                        ({"size": 2, "stride": 0}, r"stride must be a positive int; got 0"),
                        ({"size": 2, "stride": -1}, r"stride must be a positive int; got -1"),
                        ({"size": 6}, r"size must be at most the number of observations, "
                                      r"5; got 6")]:
        with pytest.raises(ValueError, match="slidingwindow: " + msg):
            fl.slidingwindow(x, **kwargs)
    with pytest.raises(ValueError, match=r"slidingwindow: data holds no observations"):
        fl.slidingwindow(np.zeros((0, 3)), 1)
    with pytest.raises(ValueError, match=r"slidingwindow: the parts of the data must hold the "
                                         r"same number"):
        fl.slidingwindow((np.zeros(4), np.zeros(3)), 2)
    with pytest.raises(TypeError, match=r"slidingwindow: expected an array.*got int"):
        fl.slidingwindow(7, 1)
    s = fl.slidingwindow(x, 2, 2)  # windows [0, 1], [2, 3]: the 5th observation in none
    assert len(s) == 2
    with pytest.raises(IndexError, match=r"slidingwindow: window 2 of 2"):
        s[2]
    with pytest.raises(IndexError, match=r"slidingwindow: window -3 of 2"):
        s[-3]
    with pytest.raises(TypeError, match=r"slidingwindow: a window's index must be an int.*"
                                        r"got 1.0 \(a float\)"):
        s[1.0]
    with pytest.raises(TypeError, match=r"index must be an int"):
        s[[True, False]]


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 30), size=st.integers(1, 30), stride=st.integers(1, 8))
def test_random_sizes_and_strides_against_a_loop(n, size, stride):
    x = np.arange(n * 2).reshape(n, 2)
    if size > n:
        with pytest.raises(ValueError, match="size must be at most"):
            fl.slidingwindow(x, size, stride)
        return
    s = fl.slidingwindow(x, size, stride)
    starts = ref_window_starts(n, size, stride)
    assert len(s) == len(starts)
    assert [w.tolist() for w in s] == [x[a:a + size].tolist() for a in starts]
    # only complete windows, and no room for another: fewer than a stride left at the end
    assert all(len(w) == size for w in s)
    assert n - (starts[-1] + size) < stride
