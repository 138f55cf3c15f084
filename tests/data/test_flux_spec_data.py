"""Flux.jl's test/data.jl translated to fluxml: observations along the first axis (Flux's
last), so Flux's ``X = reshape(1:10, 2, 5)`` (five observations of 2) is ``(5, 2)`` here."""

import collections

import numpy as np

import fluxml as fl


def test_dataloader_batches():
    # data.jl "DataLoader"
    X, Y = np.arange(1, 11).reshape(5, 2), np.arange(1, 6)
    d = fl.DataLoader(X, batchsize=2)
    batches = list(d)
    assert len(batches) == 3 == len(d)
    for got, want in zip(batches, (X[0:2], X[2:4], X[4:5])):
        assert isinstance(got, np.ndarray)
        np.testing.assert_array_equal(got, want)
    moved = fl.cpu(d)  # does nothing, but does not fail
    assert len(moved) == 3
    np.testing.assert_array_equal(next(iter(moved)), X[0:2])
    batches = list(fl.DataLoader(X, batchsize=2, partial=False))
    assert len(batches) == 2
    np.testing.assert_array_equal(batches[1], X[2:4])
    batches = list(fl.DataLoader((X,), batchsize=2, partial=False))
    assert len(batches) == 2 and all(isinstance(b, tuple) and len(b) == 1 for b in batches)
    np.testing.assert_array_equal(batches[1][0], X[2:4])
    batches = list(fl.DataLoader((X, Y), batchsize=2))
    assert len(batches) == 3 and all(len(b) == 2 for b in batches)
    np.testing.assert_array_equal(batches[2][0], X[4:5])
    np.testing.assert_array_equal(batches[2][1], Y[4:5])
    # named batches: a dict, or a namedtuple (Flux's NamedTuple)
    batches = list(fl.DataLoader({"x": X, "y": Y}, batchsize=2))
    np.testing.assert_array_equal(batches[1]["x"], X[2:4])
    np.testing.assert_array_equal(batches[1]["y"], Y[2:4])
    XY = collections.namedtuple("XY", "x y")
    batches = list(fl.DataLoader(XY(X, Y), batchsize=2))
    assert isinstance(batches[2], XY)
    np.testing.assert_array_equal(batches[2].x, X[4:5])
    np.testing.assert_array_equal(batches[2].y, Y[4:5])


def test_shuffled_loader_draws_a_new_order_per_pass():
    # data.jl issue #1227: two passes of one shuffled loader, zipped, differ
    d = fl.DataLoader(np.arange(10), shuffle=True, rng=5)
    pairs = list(zip(d, d))
    first, second = [int(a[0]) for a, _ in pairs], [int(b[0]) for _, b in pairs]
    assert sorted(first) == sorted(second) == list(range(10)) and first != second
    again = fl.DataLoader(np.arange(10), shuffle=True, rng=5)
    assert [int(b[0]) for b in again] == first  # the rng fixes the order


def test_dataloader_with_train():
    # data.jl "test interaction with train!": ten epochs of ten batches of one
    theta = np.ones(2)
    fl.train(lambda t, x: np.sum((x - t) ** 2), theta, fl.DataLoader(np.zeros((10, 2))),
             fl.setup(fl.Descent(0.1), theta), epochs=10, progress=False)
    assert np.linalg.norm(theta) < 1e-4
    np.testing.assert_allclose(theta, 0.8 ** 100 * np.ones(2), rtol=1e-10)
    theta = np.zeros(2)
    fl.train(lambda t, x, y: np.sum((y - x @ t) ** 2), theta,
             fl.DataLoader((np.ones((10, 2)), np.full(10, 2.0))),
             fl.setup(fl.Descent(0.1), theta), epochs=10, progress=False)
    assert np.linalg.norm(theta - 1) < 1e-10
