"""DataLoader: every observation once per epoch, batch sizes, seeds, datasets, errors."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fluxml as fl


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 40), bs=st.integers(1, 12), shuffle=st.booleans(),
       partial=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_each_observation_once_per_epoch(n, bs, shuffle, partial, seed):
    x = np.arange(n * 2).reshape(n, 2)
    y = np.arange(n)
    loader = fl.DataLoader((x, y), batchsize=bs, shuffle=shuffle, partial=partial, rng=seed)
    batches = list(loader)
    assert len(batches) == len(loader) == (-(-n // bs) if partial else n // bs)
    seen = np.concatenate([yb for _, yb in batches]) if batches else np.array([], int)
    for xb, yb in batches:
        assert np.array_equal(xb, x[yb])  # the parts stay together
        assert len(yb) == bs or (partial and yb is batches[-1][1])
    if partial:
        assert sorted(seen.tolist()) == list(range(n))
    else:
        assert len(seen) == (n // bs) * bs and len(set(seen.tolist())) == len(seen)
    if not shuffle:
        assert seen.tolist() == list(range(len(seen)))


def test_reproducible_with_a_seed_and_new_order_each_epoch():
    data = np.arange(20)
    a = fl.DataLoader(data, batchsize=5, shuffle=True, rng=3)
    b = fl.DataLoader(data, batchsize=5, shuffle=True, rng=3)
    first_a, first_b = np.concatenate(list(a)), np.concatenate(list(b))
    assert np.array_equal(first_a, first_b)
    second_a = np.concatenate(list(a))
    assert not np.array_equal(first_a, second_a)  # reshuffled each pass
    fl.seed(7)
    c = np.concatenate(list(fl.DataLoader(data, batchsize=5, shuffle=True)))
    fl.seed(7)
    d = np.concatenate(list(fl.DataLoader(data, batchsize=5, shuffle=True)))
    assert np.array_equal(c, d)  # rng=None follows fl.seed


def test_dict_batches_and_views_without_shuffle():
    data = {"x": np.zeros((6, 3), np.float32), "y": np.arange(6)}
    loader = fl.DataLoader(data, batchsize=4)
    first = next(iter(loader))
    assert set(first) == {"x", "y"} and first["x"].shape == (4, 3)
    assert first["x"].dtype == np.float32
    assert np.shares_memory(first["x"], data["x"])


class Squares:
    """A dataset that is not an array: observations are (vector, label) tuples."""

    def __len__(self):
        return 5

    def __getitem__(self, i):
        if not 0 <= i < 5:
            raise IndexError(i)
        return np.full(3, float(i * i)), i


def test_generic_dataset_default_and_custom_collate():
    xb, yb = next(iter(fl.DataLoader(Squares(), batchsize=2)))
    assert np.array_equal(xb, [[0.0] * 3, [1.0] * 3]) and yb.tolist() == [0, 1]
    sizes = [len(b) for b in fl.DataLoader(Squares(), batchsize=2, collate=list)]
    assert sizes == [2, 2, 1]
    shuffled = fl.DataLoader(Squares(), batchsize=5, shuffle=True, rng=0, collate=list)
    labels = [obs[1] for obs in next(iter(shuffled))]
    assert sorted(labels) == [0, 1, 2, 3, 4]


def test_bad_input_errors():
    with pytest.raises(ValueError, match="batchsize must be a positive int; got 0"):
        fl.DataLoader(np.zeros(3), batchsize=0)
    with pytest.raises(ValueError, match=r"DataLoader: the parts .*\[0\]: 3, \[1\]: 4"):
        fl.DataLoader((np.zeros(3), np.zeros(4)))
    with pytest.raises(TypeError, match="DataLoader: expected .* __getitem__; got int"):
        fl.DataLoader(5)
    with pytest.raises(ValueError, match="DataLoader: a 0-d array"):
        fl.DataLoader(np.float64(1.0))
    with pytest.raises(TypeError, match="DataLoader: rng must be"):
        fl.DataLoader(np.zeros(3), rng="seed")
    with pytest.raises(TypeError, match="collate must be callable"):
        fl.DataLoader(np.zeros(3), collate=3)
    with pytest.raises(ValueError, match="cannot stack observations of shapes"):
        fl.data.default_collate([np.zeros(2), np.zeros(3)])


@pytest.mark.parametrize("nobs, batch, nranks", [(70, 8, 2), (23, 3, 3), (16, 4, 2), (5, 2, 4)])
def test_sharded_loaders_split_the_global_batches_of_one_loader(nobs, batch, nranks):
    x = np.arange(nobs)
    whole = [b.tolist() for b in fl.DataLoader(x, batchsize=batch * nranks, shuffle=True,
                                               rng=3)]
    parts = [[b.tolist() for b in fl.DataLoader(x, batchsize=batch, shuffle=True, rng=3,
                                                shard=(r, nranks))] for r in range(nranks)]
    assert len({len(p) for p in parts}) == 1
    kept = [w for w in whole if len(w) >= nranks]  # a rank never gets an empty batch
    assert len(parts[0]) == len(kept) == len(fl.DataLoader(x, batchsize=batch, shard=(0,
                                                                                      nranks)))
    for i, w in enumerate(kept):
        pieces = [p[i] for p in parts]
        assert sum(pieces, []) == w  # distinct, in order, together the global batch
        assert max(map(len, pieces)) - min(map(len, pieces)) <= 1
        assert all(len(piece) == batch for piece in pieces) or i == len(kept) - 1


@pytest.mark.parametrize("bad", [(2, 2), (-1, 2), (0,), "yes", (0.0, 2), (True, 2)])
def test_a_bad_shard_is_refused(bad):
    with pytest.raises(ValueError, match=r"shard must be True, False or \(rank, nranks\)"):
        fl.DataLoader(np.arange(4), shard=bad)


def test_observations_of_different_lengths_are_refused():
    """A dataset whose observations are tuples (or lists) of different lengths: the parts a
    longer one had beyond the first's were dropped silently (a shorter one later failed with
    an IndexError); PyTorch's default_collate refuses them too."""
    for obs in ([(1, 2), (3, 4, 5)], [(1, 2, 9), (3, 4)], [[1, 2], [3, 4, 5]]):
        with pytest.raises(ValueError, match=r"default_collate: the observations are \w+s "
                                             r"of different lengths \[2, 3\]"):
            fl.data.default_collate(obs)
    a, b = fl.data.default_collate([(1, 2), (3, 4)])
    assert a.tolist() == [1, 3] and b.tolist() == [2, 4]


def test_a_dataset_that_grows_between_epochs_is_read_whole():
    """The loader counted the observations once, when made: a list that grew between
    epochs (a replay buffer) had its new observations never given, and one that shrank gave
    a short batch, silently. They are counted at each pass, as PyTorch's and MLUtils'
    loaders count them (a pass already begun keeps its count)."""
    buffer = [np.float64(i) for i in range(4)]
    loader = fl.DataLoader(buffer, batchsize=3, shuffle=True, rng=0)
    assert len(loader) == 2 and sorted(np.concatenate(list(loader))) == [0, 1, 2, 3]
    buffer.extend([np.float64(10), np.float64(11)])
    assert len(loader) == 2 and sorted(np.concatenate(list(loader))) == [0, 1, 2, 3, 10, 11]
    buffer.append(np.float64(12))
    assert len(loader) == 3 and sorted(np.concatenate(list(loader))) == [0, 1, 2, 3, 10, 11, 12]
    seen = []

    class Grow(fl.Callback):
        def on_epoch_end(self, run):
            buffer.append(np.float64(100 + run.epoch))

    model = {"w": np.zeros(1)}
    fl.train(lambda m, x: (seen.append(sorted(x.tolist())), np.sum(m["w"] * x))[1], model,
             fl.DataLoader(buffer, batchsize=100), fl.setup(fl.Descent(0.1), model),
             epochs=3, callbacks=[Grow()], progress=False)
    assert [len(s) for s in seen] == [7, 8, 9] and seen[-1][-2:] == [101, 102]


def test_getobs_of_a_dataset_read_one_at_a_time_refuses_indices_numpy_refuses():
    """(int(1.7) read observation 1, the string '12' observations 1 and 2, silently, where an
    array refuses them; 1.0 raised "'float' object is not iterable".)"""
    items = list("abcde")
    for idx in ([1.7], np.array([0.0, 2.0]), "12", 1.0, np.float64(2)):
        with pytest.raises(IndexError, match="getobs: indices must be integers, a slice or "
                                             "a boolean mask"):
            fl.data.getobs(items, idx)
        with pytest.raises(IndexError):  # as an array does
            np.arange(5)[idx if not isinstance(idx, list) else np.array(idx)]
    assert fl.data.getobs(items, np.array([3, 1], np.uint8)).tolist() == ["d", "b"]
    assert fl.data.getobs((np.arange(5), items), [4])[1].tolist() == ["e"]


class _Numbered:
    """A dataset of numbered observations that does not count from the end itself (files by
    number, a database): ``data[-1]`` is observation -1, not the last."""

    def __len__(self):
        return 5

    def __getitem__(self, i):
        return np.array([i, 10 * i])


@pytest.mark.parametrize("idx", [-1, [4, -5], np.array([-1, 0]), np.int64(-2), np.array(2),
                                 slice(-2, None)])
def test_getobs_of_a_dataset_reads_negative_indices_as_numpy(idx):
    """(It handed -1 to the dataset as given: observation -1, silently, where NumPy reads
    the last; a 0-d index array raised 'iteration over a 0-d array'.)"""
    array = np.array([[i, 10 * i] for i in range(5)])
    np.testing.assert_array_equal(fl.data.getobs(_Numbered(), idx), array[idx])


@pytest.mark.parametrize("idx", [5, -6, [1, 7], True])
def test_getobs_of_a_dataset_refuses_indices_out_of_range(idx):
    with pytest.raises(IndexError, match="getobs: index -?[0-9]+ is out of range for 5 "
                                         "observations|getobs: indices must be integers"):
        fl.data.getobs(_Numbered(), idx)


def test_a_negative_seed_is_refused_by_name():
    """(NumPy's 'expected non-negative integer' named neither the argument nor the value.)"""
    with pytest.raises(ValueError, match="DataLoader: rng must be a non-negative int seed, "
                                         "a numpy.random.Generator or None; got -1"):
        fl.DataLoader(np.arange(5), shuffle=True, rng=-1)
