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
    with pytest.raises(ValueError, match=r"same number of observations.*\[0\]: 3, \[1\]: 4"):
        fl.DataLoader((np.zeros(3), np.zeros(4)))
    with pytest.raises(TypeError, match="dataset with __len__ and __getitem__; got int"):
        fl.DataLoader(5)
    with pytest.raises(ValueError, match="0-d array"):
        fl.DataLoader(np.float64(1.0))
    with pytest.raises(TypeError, match="rng must be"):
        fl.DataLoader(np.zeros(3), rng="seed")
    with pytest.raises(TypeError, match="collate must be callable"):
        fl.DataLoader(np.zeros(3), collate=3)
    with pytest.raises(ValueError, match="cannot stack observations of shapes"):
        fl.data.default_collate([np.zeros(2), np.zeros(3)])
