"""embedding: values, the scatter-add gradient against a naive loop, derivatives (order 2,
both modes), float32, out-of-vocabulary and non-integer indices."""

import numpy as np
import pytest

import fluxml as fl
from fluxml.testing import check_grads

R = np.random.default_rng(0)
W = R.standard_normal((7, 3))
IDX = np.array([[1, 4, 1], [6, 0, 1]])


def test_values_any_index_shape():
    np.testing.assert_array_equal(fl.embedding(W, IDX), W[IDX])
    assert fl.embedding(W, np.int64(2)).shape == (3,)
    assert fl.embedding(W, np.zeros((0, 2), int)).shape == (0, 2, 3)
    w3 = R.standard_normal((5, 2, 2))
    np.testing.assert_array_equal(fl.embedding(w3, IDX % 5), w3[IDX % 5])


def test_gradient_adds_repeats():
    g = R.standard_normal(IDX.shape + (3,))
    got = fl.gradient(lambda w: np.sum(fl.embedding(w, IDX) * g), W)[0]
    want = np.zeros_like(W)
    for pos in np.ndindex(IDX.shape):
        want[IDX[pos]] += g[pos]
    np.testing.assert_allclose(got, want, rtol=1e-14)
    no_repeat = np.array([3, 0, 5])
    got = fl.gradient(lambda w: np.sum(fl.embedding(w, no_repeat) ** 2), W)[0]
    np.testing.assert_allclose(got[no_repeat], 2 * W[no_repeat])
    assert not got[[1, 2, 4, 6]].any()


FEW_REPEATS = np.concatenate([np.arange(27), [3, 3, 11]]).reshape(6, 5)


@pytest.mark.parametrize("idx", [np.arange(30)[::-1].reshape(6, 5), FEW_REPEATS,
                                 np.arange(30).reshape(6, 5) % 3], ids=["none", "few", "most"])
def test_scatter_paths(idx):
    w = R.standard_normal((40, 2))
    g = R.standard_normal((6, 5, 2))
    want = np.zeros_like(w)
    np.add.at(want, idx, g)
    got = fl.gradient(lambda w: np.sum(fl.embedding(w, idx) * g), w)[0]
    np.testing.assert_allclose(got, want, rtol=1e-14)


def test_derivatives():
    check_grads(lambda w: fl.embedding(w, IDX) ** 2, W)
    w32 = W.astype(np.float32)
    assert fl.gradient(lambda w: np.sum(fl.embedding(w, IDX)), w32)[0].dtype == np.float32


def test_bad_indices():
    with pytest.raises(IndexError, match=r"index 7 is outside the vocabulary of 7 rows"):
        fl.embedding(W, np.array([0, 7]))
    with pytest.raises(IndexError, match=r"index -1 is outside .* must be in 0..6"):
        fl.embedding(W, np.array([-1]))
    with pytest.raises(TypeError, match="embedding: indices must be integers"):
        fl.embedding(W, np.array([1.0]))
