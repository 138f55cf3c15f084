"""MLUtils.jl's own tests as a specification of fluxml's data tools.

Translated from JuliaML/MLUtils.jl test/observation.jl, dataloader.jl, batch.jl,
splitobs.jl, shuffleobs.jl and folds.jl (each test names its file and testset). The
conventions differ on purpose: observations run along the FIRST axis (Julia's last), so
Julia's ``X[:, i]`` is ``X[i]`` and a ``(4, 15)`` matrix of 15 observations is ``(15, 4)``
here; indices are 0-based; Julia's ``DimensionMismatch`` / ``ArgumentError`` is a
ValueError naming the function; a NamedTuple is a namedtuple.
"""

from collections import namedtuple

import numpy as np
import pytest

import fluxml as fl
from fluxml.data import default_collate, getobs, numobs

XY = namedtuple("XY", "x y")

r = np.random.default_rng(1335)
X = r.random((15, 4))  # runtests.jl's X = rand(4, 15), batch first
y = np.repeat(["setosa", "versicolor", "virginica"], 5)
XX = r.random((15, 20, 30))
X1 = np.tile(np.arange(1, 16)[:, None], (1, 10))  # hcat((1:15 for i = 1:10)...)'
Y1 = np.arange(1, 16)


# --- test/observation.jl -----------------------------------------------------------------------


def test_observation_array_named_tuple_dict():
    # "array", "named tuple", "dict"
    a = r.random((3, 2))
    assert numobs(a) == 3
    np.testing.assert_array_equal(getobs(a, 0), a[0])
    np.testing.assert_array_equal(getobs(a, slice(0, 2)), a[:2])
    X2, Y2 = r.random((3, 2)), r.random(3)
    o = getobs(XY(X2, Y2), 1)
    assert numobs(XY(X2, Y2)) == 3 and type(o) is XY
    np.testing.assert_array_equal(o.x, X2[1])
    assert o.y == Y2[1]
    o = getobs({"X": X, "y": y}, slice(0, 2))
    assert numobs({"X": X, "y": y}) == 15
    np.testing.assert_array_equal(o["X"], X[:2])
    assert o["y"].tolist() == ["setosa", "setosa"]


def test_numobs_and_getobs_of_tuples():
    # "numobs" "Array, SparseArray, and Tuple"; "getobs" "Tuple"
    for var in (X, y, XX):
        assert numobs(var) == 15
    with pytest.raises(ValueError, match="same number of observations"):
        numobs((X, XX, r.random(100)))
    with pytest.raises(ValueError, match="same number of observations"):
        numobs((X, X.T))
    for i in (slice(0, 15), slice(1, 10), [1, 4, 6], [1, 0]):
        tx, ty = getobs((X, y), i)
        np.testing.assert_array_equal(tx, X[i])
        assert ty.tolist() == y[i].tolist()
        a, b, c = getobs((XX, X, y), i)
        np.testing.assert_array_equal(a, XX[i])
        np.testing.assert_array_equal(b, X[i])
        x1, y1 = getobs((X1, Y1), i)  # the observations match across the tuple
        assert (x1 == y1[:, None]).all()


def test_getobs_refuses_parts_of_different_lengths():
    # @test_throws DimensionMismatch getobs((X', y), i). Regression: getobs of a tuple
    # read each part on its own, so a part one shorter gave a batch one shorter, silently
    for i in (slice(0, 15), slice(5, 15), [1, 0]):
        with pytest.raises(ValueError, match=r"getobs: .*\[0\]: 4, \[1\]: 15"):
            getobs((X.T, y), i)
    with pytest.raises(ValueError, match=r"getobs: .*\['b'\]: 14"):
        getobs({"a": X, "b": X[:14]}, slice(10, 15))


def test_getobs_of_a_dataset_reads_a_mask_as_numpy():
    # the indices are NumPy's for a dataset read one observation at a time as for an array.
    # Regression: a boolean mask was read as the indices int(True) = 1, int(False) = 0, so
    # getobs((x, list_of_x), mask) gave the masked rows of x beside other observations
    items = [np.full(2, i) for i in range(5)]
    mask = np.array([True, False, True, False, True])
    xb, lb = getobs((np.stack(items), items), mask)
    np.testing.assert_array_equal(lb, np.stack(items)[mask])
    np.testing.assert_array_equal(xb, lb)
    np.testing.assert_array_equal(getobs(items, mask.tolist()), np.stack(items)[mask])
    with pytest.raises(IndexError, match="mask of shape"):
        getobs(items, mask[:3])


def test_getobs_indices_are_numpys():
    # getobs(X, -1) / 0 / 16 are BoundsErrors in Julia's 1-based getobs; here the indices
    # are NumPy's (documented): -1 is the last observation, 15 is out of range
    np.testing.assert_array_equal(getobs(X, -1), X[14])
    np.testing.assert_array_equal(getobs(X, 0), X[0])
    with pytest.raises(IndexError):
        getobs(X, 15)


class Table:
    """pandas' two ways to index, by hand: ``t[i]`` reads the row labelled ``i`` (as a
    Series with an integer index does), ``t.iloc[i]`` the row at position ``i``."""

    def __init__(self, values, index):
        self.values, self.index = np.asarray(values), list(index)
        self.shape, self.dtype, self.ndim = self.values.shape, self.values.dtype, 1
        self.iloc = self.values

    def __len__(self):
        return len(self.values)

    def __getitem__(self, labels):
        if np.ndim(labels) == 0:
            return self.values[self.index.index(labels)]
        return self.values[[self.index.index(v) for v in labels]]


def test_getobs_reads_tables_by_position():
    # "tables": getobs(df, 1) == df[1, :], the row at a position. Regression: a pandas
    # Series was indexed as an array, series[i], which reads the LABEL i: after a shuffle
    # (df.sample) DataLoader((x, y_series), shuffle=True) paired each x with another's y
    x = np.arange(10) * 10
    index = [2, 8, 4, 9, 1, 6, 7, 3, 0, 5]  # a shuffled frame's index
    y = Table(x, index)
    np.testing.assert_array_equal(getobs(y, [0, 1]), [0, 10])
    for xb, yb in fl.DataLoader((x, y), batchsize=4, shuffle=True, rng=0):
        np.testing.assert_array_equal(xb, yb)
    for xb, yb in fl.DataLoader((x, y), batchsize=3, collate=lambda b: tuple(zip(*b))):
        assert xb == yb


def test_getobs_of_pandas():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"a": np.arange(10), "b": np.arange(10) * 10}).sample(frac=1,
                                                                          random_state=0)
    assert numobs(df) == 10
    assert getobs(df, 0).tolist() == df.to_numpy()[0].tolist()
    np.testing.assert_array_equal(getobs(df, [3, 1]).to_numpy(), df.to_numpy()[[3, 1]])
    for xb, yb in fl.DataLoader((df["b"].to_numpy(), df["a"]), batchsize=4, shuffle=True):
        np.testing.assert_array_equal(xb, yb.to_numpy() * 10)


# --- test/dataloader.jl ------------------------------------------------------------------------


def test_dataloader_arrays_tuples_named_tuples():
    X2 = np.arange(1, 11).reshape(5, 2)  # reshape([1:10;], (2, 5)), batch first
    Y2 = np.arange(1, 6)
    batches = list(fl.DataLoader(X2, batchsize=2))
    assert len(batches) == len(fl.DataLoader(X2, batchsize=2)) == 3
    for b, want in zip(batches, (X2[0:2], X2[2:4], X2[4:5])):
        np.testing.assert_array_equal(b, want)
    batches = list(fl.DataLoader(X2, batchsize=2, partial=False))
    assert len(batches) == 2
    np.testing.assert_array_equal(batches[1], X2[2:4])
    batches = list(fl.DataLoader((X2,), batchsize=2, partial=False))
    assert len(batches) == 2 and isinstance(batches[0], tuple)
    np.testing.assert_array_equal(batches[1][0], X2[2:4])
    for data in ((X2, Y2), XY(X2, Y2)):
        batches = list(fl.DataLoader(data, batchsize=2))
        assert len(batches) == 3 and all(len(b) == 2 for b in batches)
        assert type(batches[0]) is type(data)
        for b, s in zip(batches, (slice(0, 2), slice(2, 4), slice(4, 5))):
            np.testing.assert_array_equal(b[0], X2[s])
            np.testing.assert_array_equal(b[1], Y2[s])
        if isinstance(data, XY):
            np.testing.assert_array_equal(batches[2].y, Y2[4:5])


def test_dataloader_default_batchsize_and_partial():
    # "iteration default batchsize (+1)", "partial=false"
    for x in fl.DataLoader(np.zeros((10, 2))):
        assert x.shape == (1, 2)
    for x, yb in fl.DataLoader((np.ones((10, 2)), np.full(10, 5))):
        assert x.shape == (1, 2) and yb.tolist() == [5]
    d = list(fl.DataLoader(np.arange(1, 13), batchsize=5, partial=False))
    assert [b.tolist() for b in d] == [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]]


def test_dataloader_shuffle_and_rng():
    # "shuffle & rng"
    X4 = r.random((1000, 2))
    first = [next(iter(fl.DataLoader(X4, batchsize=2, shuffle=True))) for _ in range(2)]
    assert not np.array_equal(*first)
    fl.seed(17)
    x1 = next(iter(fl.DataLoader(X4, batchsize=2, shuffle=True)))
    fl.seed(17)
    np.testing.assert_array_equal(x1, next(iter(fl.DataLoader(X4, batchsize=2, shuffle=True))))
    d1 = fl.DataLoader(X4, batchsize=2, shuffle=True, rng=np.random.default_rng(1))
    d2 = fl.DataLoader(X4, batchsize=2, shuffle=True, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(next(iter(d1)), next(iter(d2)))
    # every pass a permutation: each observation exactly once (eachobs "shuffled")
    rows = np.concatenate(list(fl.DataLoader(np.arange(50), batchsize=7, shuffle=True, rng=3)))
    assert sorted(rows.tolist()) == list(range(50))


def test_dataloader_custom_dict_range():
    # numobs/getobs compatibility (CustomType: 15 observations, getobs(i) == i), "Dict",
    # "range"
    class Custom:
        def __len__(self):
            return 15

        def __getitem__(self, i):
            return i

    d = list(fl.DataLoader(Custom(), batchsize=2))
    assert d[0].tolist() == [0, 1] and len(d) == 8 and d[7].tolist() == [14]
    data = {"x": r.random((4, 2)), "y": r.random(4)}
    c = list(fl.DataLoader(data, batchsize=2))
    np.testing.assert_array_equal(c[1]["x"], data["x"][2:4])
    np.testing.assert_array_equal(c[1]["y"], data["y"][2:4])
    c = list(fl.DataLoader(range(1, 11), batchsize=2))
    assert c[0].tolist() == [1, 2] and c[0].dtype.kind == "i"
    c = list(fl.DataLoader(range(1, 11), batchsize=2, shuffle=True, rng=0))
    assert sorted(np.concatenate(c).tolist()) == list(range(1, 11))


def test_dataloader_collating():
    # "collating": collate=false gives the list of observations (collate=list here),
    # collate=true/nothing the stacked batch (the default)
    X_ = r.random((20, 10))
    for i, x in enumerate(fl.DataLoader(X_, collate=list, batchsize=2)):
        assert isinstance(x, list) and len(x) == 2
        np.testing.assert_array_equal(x[1], X_[2 * i + 1])
    for i, x in enumerate(fl.DataLoader(X_, batchsize=2)):
        np.testing.assert_array_equal(x, np.stack([X_[2 * i], X_[2 * i + 1]]))
    for i, x in enumerate(fl.DataLoader((X_, X_), collate=list, batchsize=2)):
        assert all(isinstance(o, tuple) for o in x)
        np.testing.assert_array_equal(x[0][1], X_[2 * i])
    # "collate function"
    loader = fl.DataLoader((r.random((4, 10)), ["a", "b", "c", "d"]), batchsize=2,
                           collate=lambda b: (np.stack([o[0] for o in b]),
                                              "".join(o[1] for o in b)))
    got = list(loader)
    assert [s for _, s in got] == ["ab", "cd"] and got[0][0].shape == (2, 10)
    assert list(fl.DataLoader(["a", "b", "c", "d"], batchsize=2, collate="".join)) == \
        ["ab", "cd"]


def test_dataloader_collate_shift_pair():
    # "buffer issue 205": a collate that cuts inputs and targets from each trajectory
    trajectory = r.standard_normal((5, 3, 4, 8, 8)).astype(np.float32)  # (N, T, C, H, W)

    def shift_pair(batch):
        return np.stack([x[:-1] for x in batch]), np.stack([x[1:] for x in batch])

    inputs, targets = next(iter(fl.DataLoader(trajectory, batchsize=2, partial=False,
                                              collate=shift_pair)))
    np.testing.assert_array_equal(inputs, trajectory[0:2, 0:2])
    np.testing.assert_array_equal(targets, trajectory[0:2, 1:3])


def test_dataloader_argument_combinations():
    # eachobs "Argument combinations" and "parallel worker count": every observation loaded
    # exactly once per pass (once at most with partial=False), whatever the arguments
    x = np.arange(15)
    for batchsize in (1, 2, 4, 15, 20):
        for shuffle in (False, True):
            for partial in (False, True):
                d = fl.DataLoader(x, batchsize=batchsize, shuffle=shuffle, partial=partial,
                                  rng=batchsize)
                batches = list(d)
                assert len(batches) == len(d) == (-(-15 // batchsize) if partial
                                                  else 15 // batchsize)
                seen = np.concatenate(batches).tolist() if batches else []
                assert len(set(seen)) == len(seen) == (15 if partial
                                                       else batchsize * (15 // batchsize))
                assert all(len(b) == batchsize for b in batches[:-1])


def test_dataloader_printing():
    # "printing": the data's type, batchsize and partial in repr
    d = fl.DataLoader((np.zeros((5, 2), np.float32), np.arange(5)), batchsize=3)
    assert repr(d) == ("DataLoader(tuple, batchsize=3, shuffle=False, partial=True): "
                       "2 batches of 5 observations")
    d = fl.DataLoader(XY(np.zeros((5, 2)), np.arange(5)), batchsize=2, partial=False)
    assert "DataLoader(XY, batchsize=2" in repr(d) and "partial=False" in repr(d)


def test_dataloader_empty():
    # "Empty handling": no observations, no batches (batchsize must still be positive)
    assert list(fl.DataLoader(np.zeros((0, 3)), batchsize=2)) == []
    with pytest.raises(ValueError, match="batchsize must be a positive int"):
        fl.DataLoader(np.zeros((0, 3)), batchsize=0)


# --- test/batch.jl -----------------------------------------------------------------------------


def test_batch_is_default_collate():
    # "batch and unbatch": batch(unstacked) == stacked, observations on the first axis
    unstacked = [[8, 9, 9, 7], [9, 6, 1, 4], [3, 6, 7, 10], [5, 9, 2, 6]]
    stacked = default_collate([np.array(u) for u in unstacked])
    np.testing.assert_array_equal(stacked, np.array(unstacked))
    # a Python list observation is a sequence of fields, as PyTorch's (documented): a list
    # of lists gives one array per position, where Julia's Vectors are arrays
    fields = default_collate(unstacked)
    assert isinstance(fields, list) and [f.tolist() for f in fields] == stacked.T.tolist()
    assert default_collate([1, 2, 3]).tolist() == [1, 2, 3]
    assert default_collate([np.ones(2)] * 3).shape == (3, 2)
    # "tuple", "named tuple", "dict" (keys in any order)
    a, b = default_collate([(1, 2), (3, 4)])
    assert a.tolist() == [1, 3] and b.tolist() == [2, 4]
    v = np.array
    a, b = default_collate([(v([1, 2]), v([3, 4])), (v([5, 6]), v([7, 8]))])
    assert a.tolist() == [[1, 2], [5, 6]] and b.tolist() == [[3, 4], [7, 8]]
    got = default_collate([XY(1, 2), XY(3, 4)])
    assert type(got) is XY and got.x.tolist() == [1, 3]
    got = default_collate([{"a": 1, "b": 2}, {"b": 4, "a": 3}])
    assert got["a"].tolist() == [1, 3] and got["b"].tolist() == [2, 4]
    got = default_collate([{"a": v([1, 2]), "b": v([3, 4])}, {"a": v([5, 6]), "b": v([7, 8])}])
    assert got["b"].tolist() == [[3, 4], [7, 8]]


def test_default_collate_refuses_dicts_of_other_keys():
    # Julia's batch of Dicts keyed differently fails; regression: the keys of the first
    # observation were read, another's extra keys dropped silently
    with pytest.raises(ValueError, match=r"keys \['a'\], but one has \['a', 'b'\]"):
        default_collate([{"a": 1}, {"a": 2, "b": 3}])
    with pytest.raises(ValueError, match=r"keys \['a', 'b'\], but one has \['a'\]"):
        default_collate([{"a": 1, "b": 2}, {"a": 3}])


def test_batch_sequence():
    # "batch_sequences" (Julia's (features, T, N) is (N, T, features) here)
    got = fl.batch_sequence([[1, 2, 3], [10, 20]])
    assert got.dtype.kind == "i"
    np.testing.assert_array_equal(got, [[1, 2, 3], [10, 20, 0]])
    got = fl.batch_sequence((np.ones((1, 2)), np.full((3, 2), 2.0)), pad=-1)
    np.testing.assert_array_equal(got[0], [[1, 1], [-1, -1], [-1, -1]])
    np.testing.assert_array_equal(got[1], np.full((3, 2), 2.0))
    # "batchseq": the same steps, time-major in Julia: got[:, t] is its bs[t]
    got = fl.batch_sequence([[1, 2, 3], [4, 5]], pad=-1)
    assert [got[:, t].tolist() for t in range(3)] == [[1, 4], [2, 5], [3, -1]]
    got = fl.batch_sequence([np.ones((4, 2)), np.zeros((3, 2)), np.ones((2, 2))])
    np.testing.assert_array_equal(got[:, 2], [[1, 1], [0, 0], [0, 0]])
    assert fl.batch_sequence([np.ones((2, 3), np.float32)] * 2).dtype == np.float32
    with pytest.raises(ValueError, match="one shape"):
        fl.batch_sequence([np.ones((2, 3)), np.ones((2, 4))])
    # as a DataLoader's collate
    seqs = [[1, 2, 3], [4], [5, 6]]
    got = [b.tolist() for b in fl.DataLoader(seqs, batchsize=2, collate=fl.batch_sequence)]
    assert got == [[[1, 2, 3], [4, 0, 0]], [[5, 6]]]


# --- test/splitobs.jl --------------------------------------------------------------------------


def sizes(parts):
    return tuple(numobs(p) for p in parts)


def test_splitobs_int():
    # "Int": splitobs(n; at) of the indices 0 .. n-1
    n10, n150 = np.arange(10), np.arange(150)
    assert [p.tolist() for p in fl.splitobs(n10, at=0.7)] == [list(range(7)), [7, 8, 9]]
    assert [p.tolist() for p in fl.splitobs(n10, at=(0.5, 0.3))] == \
        [[0, 1, 2, 3, 4], [5, 6, 7], [8, 9]]
    assert sizes(fl.splitobs(n150, at=0.7)) == (105, 45)
    assert sizes(fl.splitobs(n150, at=(0.2, 0.3))) == (30, 45, 75)
    assert sizes(fl.splitobs(n150, at=(0.1, 0.2, 0.3))) == (15, 30, 45, 60)
    for at in (0.1, (0.2, 0.1), (0.1, 0.4, 0.2)):  # all present, none twice
        assert sorted(np.concatenate(fl.splitobs(n150, at=at)).tolist()) == list(range(150))
    # sum.(splitobs(150, at=0.7)) == (5565, 5760): 1-based; 0-based the sums are 105 less
    assert tuple(int(p.sum()) for p in fl.splitobs(n150, at=0.7)) == (5565 - 105, 5760 - 45)


def test_splitobs_arrays_and_tuples():
    # "Array, SparseArray, and SubArray", "Tuple of ...": counts and fractions, each part
    # rounded on its own (15 * 0.3 = 4.5 -> 4)
    for var in (X, y, XX, (X, y), (XX, X, y)):
        assert sizes(fl.splitobs(var, at=10)) == (10, 5)
        assert sizes(fl.splitobs(var, at=0.7)) == (10, 5)
        assert sizes(fl.splitobs(var, at=(0.2, 0.3))) == (3, 4, 8)
        assert sizes(fl.splitobs(var, at=(0.11, 0.2, 0.3))) == (2, 3, 4, 6)
        assert sizes(fl.splitobs(var, at=(2, 3, 4))) == (2, 3, 4, 6)
    for var in ((X, y), XY(X, y)):
        parts = fl.splitobs(var, at=0.6)
        assert all(type(p) is type(var) for p in parts) and sizes(parts) == (9, 6)
    for at in (0.1, (0.2, 0.1), (0.1, 0.4, 0.2)):
        assert sum(int(p.sum()) for p in fl.splitobs(X1, at=at)) == 1200
    with pytest.raises(ValueError, match="same number of observations"):
        fl.splitobs((X, r.random(14)), at=0.7)


def test_splitobs_rounds_each_part_on_its_own():
    # MLUtils sizes each part round(n * at_i); regression: the cuts were rounded
    # cumulatively, so equal fractions gave unequal parts ((0.15, 0.15, 0.15) of 10 gave
    # 2, 1, 1, 6: the cuts at 1.5, 3.0, 4.5 rounded to 2, 3, 4) and (0.2, 0.3) of 15 gave
    # 3, 5, 7
    assert sizes(fl.splitobs(np.arange(10), at=(0.15, 0.15, 0.15))) == (2, 2, 2, 4)
    assert sizes(fl.splitobs(np.arange(15), at=(0.2, 0.3))) == (3, 4, 8)
    with pytest.raises(ValueError, match=r"parts of \[2, 2, 2\] once rounded\), more than"):
        fl.splitobs(np.arange(5), at=(0.3, 0.3, 0.3))
    with pytest.raises(ValueError, match="a fraction in"):
        fl.splitobs(np.arange(5), at=1.0)
    with pytest.raises(ValueError, match="a fraction in"):
        fl.splitobs(np.arange(5), at=True)


def test_splitobs_shuffle():
    # "shuffle"
    np.testing.assert_array_equal(fl.splitobs(X, at=0.1)[0], X[:2])
    s = fl.splitobs(X, at=0.1, shuffle=True, rng=0)[0]
    assert s.shape == (2, 4) and not np.array_equal(s[0], s[1])
    assert not np.array_equal(s, X[:2])
    assert all(any(np.array_equal(row, x) for x in X) for row in s)
    p1, _ = fl.splitobs(np.arange(100), at=3, shuffle=True, rng=np.random.default_rng(1234))
    p2, _ = fl.splitobs(np.arange(100), at=3, shuffle=True, rng=np.random.default_rng(1234))
    assert len(p1) == 3 and p1.tolist() == p2.tolist()
    a, b = fl.splitobs((X, np.arange(15)), at=0.7, shuffle=True, rng=5)  # split together
    np.testing.assert_array_equal(a[0], X[a[1]])
    assert sorted(a[1].tolist() + b[1].tolist()) == list(range(15))


def test_splitobs_stratified():
    # "stratified"
    data = XY(np.zeros((10, 2), np.float32), np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1]))
    d1, d2 = fl.splitobs(data, at=0.5, stratified=data.y)
    assert d1.y.tolist() == [0, 0, 1, 1, 1] and d2.y.tolist() == [0, 0, 1, 1, 1]
    d1, d2 = fl.splitobs(data, at=0.25, stratified=data.y)
    assert d1.y.tolist() == [0, 1, 1] and d2.y.tolist() == [0, 0, 0, 1, 1, 1, 1]
    # the docstring's: splitobs(1:10, at=0.5, stratified=...) == ([1,2,5,6,7], [3,4,8,9,10])
    a, b = fl.splitobs(np.arange(1, 11), at=0.5, stratified=data.y)
    assert a.tolist() == [1, 2, 5, 6, 7] and b.tolist() == [3, 4, 8, 9, 10]
    # shuffled and stratified: each part still holds each label's share
    labels = np.array(["a"] * 8 + ["b"] * 12)
    a, b = fl.splitobs((np.arange(20), labels), at=0.5, shuffle=True, rng=0, stratified=labels)
    assert sorted(a[1].tolist()) == ["a"] * 4 + ["b"] * 6
    assert sorted(a[0].tolist() + b[0].tolist()) == list(range(20))
    np.testing.assert_array_equal(labels[a[0]], a[1])
    with pytest.raises(ValueError, match="one label per observation, 10; got 5"):
        fl.splitobs(data, at=0.5, stratified=data.y[:5])


# --- test/shuffleobs.jl ------------------------------------------------------------------------


def test_shuffleobs():
    # "Array and SubArray", "Tuple of Array and SubArray", "RNG"
    for var in (X, y, XX):
        assert fl.shuffleobs(var).shape == var.shape
    assert fl.shuffleobs(Y1).sum() == 120
    x1, y1, z1 = fl.shuffleobs((X1, Y1, X1))
    np.testing.assert_array_equal(x1.sum(axis=0), np.full(10, 120))
    assert (x1 == y1[:, None]).all() and (z1 == y1[:, None]).all()
    assert sorted(y1.tolist()) == Y1.tolist()
    a = fl.shuffleobs((X, y), rng=np.random.default_rng(42))
    b = fl.shuffleobs((X, y), rng=np.random.default_rng(42))
    np.testing.assert_array_equal(a[0], b[0])
    with pytest.raises(ValueError, match="same number of observations"):
        fl.shuffleobs((X, r.random(14)))


# --- test/folds.jl -----------------------------------------------------------------------------


def test_kfolds_int_and_data():
    # "int", "data"
    folds = list(fl.kfolds(np.arange(15), k=5))
    assert len(folds) == 5
    for train, val in folds:
        assert train.shape == (12,) and val.shape == (3,)
        assert sorted(np.concatenate([train, val]).tolist()) == list(range(15))
    assert [v.tolist() for _, v in folds] == [[3 * f, 3 * f + 1, 3 * f + 2] for f in range(5)]
    for (xtr, ytr), (xval, yval) in fl.kfolds((np.arange(15), np.arange(10, 25)), k=5):
        assert xtr.shape == ytr.shape == (12,) and xval.shape == yval.shape == (3,)
        assert (ytr == xtr + 10).all() and (yval == xval + 10).all()
    # the docstring's kfolds(10, 5): val 1:2, 3:4, ...; the first n % k folds one larger
    assert [v.tolist() for _, v in fl.kfolds(np.arange(7), k=3)] == \
        [[0, 1, 2], [3, 4], [5, 6]]
    with pytest.raises(ValueError, match="at most the number of observations"):
        fl.kfolds(np.arange(4), k=5)
    with pytest.raises(ValueError, match="k must be an int >= 2"):
        fl.kfolds(np.arange(4), k=1)


def test_kfolds_shuffle():
    # "shuffle"
    folds = list(fl.kfolds(np.arange(15), k=5, shuffle=True, rng=42))
    assert sorted(np.concatenate([v for _, v in folds]).tolist()) == list(range(15))
    for train, val in folds:
        assert len(train) == 12 and len(val) == 3
        assert sorted(np.concatenate([train, val]).tolist()) == list(range(15))
    assert [v.tolist() for _, v in folds] != [v.tolist() for _, v in fl.kfolds(np.arange(15))]
    again = list(fl.kfolds(np.arange(15), k=5, shuffle=True, rng=42))
    assert [v.tolist() for _, v in folds] == [v.tolist() for _, v in again]


def test_kfolds_stratified():
    # "stratified"
    labels = np.array([0] * 10 + [1] * 20)
    x = np.arange(30)
    seen = []
    for shuffle in (False, True):
        for xtr, xval in fl.kfolds(x, k=5, stratified=labels, shuffle=shuffle, rng=0):
            assert (labels[xval] == 0).sum() == 2 and (labels[xval] == 1).sum() == 4
            assert len(xval) == 6 and len(xtr) == 24
            assert not set(xtr.tolist()) & set(xval.tolist())
            assert sorted(np.concatenate([xtr, xval]).tolist()) == list(range(30))
            seen += xval.tolist() if not shuffle else []
    assert sorted(seen) == list(range(30))
    with pytest.raises(ValueError, match="one label per observation"):
        fl.kfolds(x, k=5, stratified=labels[:5])
    with pytest.raises(ValueError, match="label 0 has 3 observations, fewer than k = 5"):
        fl.kfolds(x, k=5, stratified=np.array([0] * 3 + [1] * 27))


# --- test/utils.jl -----------------------------------------------------------------------------


def test_normalise_and_flatten():
    # "normalise": by default over the observations (Julia's dims=ndims(x), axis 0 here)
    x = r.standard_normal((2, 2, 3)).astype(np.float32)
    np.testing.assert_array_equal(fl.normalise(x), fl.normalise(x, axis=0))
    x = r.standard_normal((4, 3)).astype(np.float32)
    y = fl.normalise(x, axis=1, eps=0)
    np.testing.assert_allclose(y.mean(axis=1), np.zeros(4), atol=1e-5)
    np.testing.assert_allclose(y.std(axis=1), np.ones(4), atol=1e-5)
    # "flatten": MLUtils' flatten is fl.Flatten() here (fl.flatten flattens a tree)
    x = r.standard_normal((2, 3, 10, 10)).astype(np.float32)
    np.testing.assert_array_equal(fl.Flatten()(x), x.reshape(2, 300))


def test_getobs_of_a_part_without_a_length_is_not_checked():
    # the check that a tuple's parts hold as many observations each raised numobs's
    # TypeError for a part with __getitem__ and no __len__, which getobs read before
    class Lazy:
        def __getitem__(self, i):
            return np.array([i, -i])

    x, pairs = fl.data.getobs((np.arange(5.0), Lazy()), [1, 2])
    np.testing.assert_array_equal(x, [1.0, 2.0])
    np.testing.assert_array_equal(pairs, [[1, -1], [2, -2]])
