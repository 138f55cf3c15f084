"""OneHotArrays.jl's own tests as a specification of fl.onehot / onehotbatch / onecold.

Translated from FluxML/OneHotArrays.jl test/onehot.jl, array.jl and linalg.jl. The
conventions differ on purpose (see fl.onehotbatch's docstring): batch first, so Julia's
``(classes, N)`` matrix is ``(N, classes)`` here and Julia's column ``[:, j]`` is row ``[j]``;
0-based indices (Julia's ``onecold(a) == 3`` is 2 here); dense arrays (float32 by default)
where OneHotArrays keeps a lazy ``OneHotArray`` of indices, so array.jl's and linalg.jl's
tests of that type translate to their values: indexing, concatenating, argmax and
products with a one-hot matrix are NumPy's own on the dense array.
"""

from collections import namedtuple

import numpy as np
import pytest

import fluxml as fl


def hot(*positions, n):
    """Rows with a 1 at ``positions`` (by hand, independent of onehotbatch)."""
    out = np.zeros((len(positions), n), np.float32)
    out[np.arange(len(positions)), positions] = 1
    return out


# --- test/onehot.jl, "onehot constructors" ---------------------------------------------------


def test_onehot_constructors():
    np.testing.assert_array_equal(fl.onehot(20, range(10, 31, 10)), [0, 1, 0])
    np.testing.assert_array_equal(fl.onehot(20, (10, 20, 30)), [0, 1, 0])
    np.testing.assert_array_equal(fl.onehot(40, (10, 20, 30), 20), [0, 1, 0])
    for args in [("d", "abc"), ("d", ("a", "b", "c")), ("d", "abc", "e"),
                 ("d", ("a", "b", "c"), "e")]:
        with pytest.raises(ValueError):
            fl.onehot(*args)
    # Bool[0 1; 1 0; 0 0] (classes x N) is, batch first, its transpose
    expected = hot(1, 0, n=3)
    np.testing.assert_array_equal(fl.onehotbatch([20, 10], range(10, 31, 10)), expected)
    np.testing.assert_array_equal(fl.onehotbatch([20, 10], (10, 20, 30)), expected)
    np.testing.assert_array_equal(fl.onehotbatch([40, 10], (10, 20, 30), 20), expected)
    # a Julia String is a sequence of Chars; a Python str is one value: list("abc")
    np.testing.assert_array_equal(fl.onehotbatch(list("abc"), "abc"), np.eye(3))
    np.testing.assert_array_equal(fl.onehotbatch(list("zbc"), ("a", "b", "c"), "a"),
                                  np.eye(3))
    np.testing.assert_array_equal(fl.onehotbatch([10, 20], [30, 40, 50], 30), hot(0, 0, n=3))
    for args in [(["a", "d"], ["a", "b", "c"]), (["a", "d"], ("a", "b", "c")),
                 (["a", "d"], ["a", "b", "c"], "e"), (["a", "d"], ("a", "b", "c"), "e")]:
        with pytest.raises(ValueError):
            fl.onehotbatch(*args)


def test_onehot_float_labels_compare_with_python_equality():
    # OneHotArrays uses isequal: 0.0 and -0.0 are two labels, NaN is one. Python's == (and
    # hashing) makes 0.0 and -0.0 one label, refused as a repeat; NaN equals nothing
    floats = (0.0, float("inf"), -float("inf"))
    assert fl.onecold(fl.onehot(0.0, floats)) == 0
    assert fl.onecold(fl.onehot(float("inf"), floats)) == 1
    with pytest.raises(ValueError, match="distinct"):
        fl.onehot(-0.0, (0.0, -0.0))
    with pytest.raises(ValueError, match="not among the labels"):
        fl.onehot(float("nan"), (1.0, float("nan")))


def test_onehotbatch_unitrange_fast_path():
    # range labels (the integer fast path) against tuple labels (the general path)
    np.testing.assert_array_equal(fl.onehotbatch([1, 3, 0, 4], range(5)),
                                  fl.onehotbatch([1, 3, 0, 4], tuple(range(5))))
    np.testing.assert_array_equal(fl.onehotbatch([[2, 3, 7, 4]], range(2, 8)),
                                  fl.onehotbatch([[2, 3, 7, 4]], tuple(range(2, 8))))
    np.testing.assert_array_equal(fl.onehotbatch([1, 3, 0, 4], range(5)), hot(1, 3, 0, 4, n=5))
    for bad in ([2, -1], [2, 5]):
        with pytest.raises(ValueError, match="not among the labels"):
            fl.onehotbatch(bad, range(5))


def test_onehot_of_tuple_labels():
    # a label may be any value isequal compares, tuples among them: regression, a tuple
    # value was taken apart by np.asarray (its numbers encoded one by one: with default=,
    # onehot((0, 5), ...) gave a (2, 2) array, silently)
    labels = [(0, 0), (0, 1), (1, 0)]
    np.testing.assert_array_equal(fl.onehot((0, 1), labels), [0, 1, 0])
    np.testing.assert_array_equal(fl.onehot((0, 5), labels, default=(1, 0)), [0, 0, 1])
    data = [(1, 0), (0, 0), (0, 1)]
    y = fl.onehotbatch(data, labels)
    np.testing.assert_array_equal(y, hot(2, 0, 1, n=3))
    assert list(fl.onecold(y, labels)) == data


def test_onehotbatch_of_a_batch_of_sequences_of_tuple_labels():
    # onehot.jl "onehotbatch": OneHotArrays encodes one value per element of an array of
    # labels (a Matrix of tuples gives (classes, N, T)). Regression: each sequence of the batch
    # was read as one value, refused (value ((0, 1), (1, 0)) is not among the labels), and with
    # default= every sequence took the default: a (2, 2) array for (2, 2, 2), silently
    labels = [(0, 1), (1, 0), (1, 1)]
    seqs = [[(0, 1), (1, 0)], [(1, 1), (0, 1)]]
    expected = np.zeros((2, 2, 3), np.float32)  # by hand: one row per element
    for i, seq in enumerate(seqs):
        for t, v in enumerate(seq):
            expected[i, t, labels.index(v)] = 1
    np.testing.assert_array_equal(fl.onehotbatch(seqs, labels), expected)
    np.testing.assert_array_equal(fl.onehotbatch(seqs, labels, default=(1, 1)), expected)
    # the same batch as an int array (2, 2, 2), and as an object array of tuples (2, 2);
    # before, the int array's numbers were values: all the default, silently
    np.testing.assert_array_equal(fl.onehotbatch(np.array(seqs), labels, default=(1, 1)),
                                  expected)
    objs = np.empty((2, 2), dtype=object)
    for i, seq in enumerate(seqs):
        for t, v in enumerate(seq):
            objs[i, t] = v
    np.testing.assert_array_equal(fl.onehotbatch(objs, labels), expected)
    # no values: a batch of none, or of empty sequences, as for other labels
    assert fl.onehotbatch([], labels).shape == (0, 3)
    assert fl.onehotbatch([[], []], labels).shape == (2, 0, 3)
    # an unknown pair with default= takes the default, one element at a time
    y = fl.onehotbatch([[(0, 1), (5, 5)]], labels, default=(1, 1))
    np.testing.assert_array_equal(y, [hot(0, 2, n=3)])
    assert fl.onecold(y, labels).tolist() == [[(0, 1), (1, 1)]]


def test_onehotbatch_refuses_ragged_batches_of_tuple_values():
    # a batch of sequences of different lengths is no array of values (default= took each
    # sequence as an unknown value before, silently)
    labels = [(0, 1), (1, 0)]
    with pytest.raises(ValueError, match=r"onehotbatch: xs holds \(\(0, 1\), \(1, 0\)\), a "
                                         r"sequence of labels where one value was expected"):
        fl.onehotbatch([[(0, 1), (1, 0)], [(0, 1)]], labels, default=(0, 1))
    with pytest.raises(ValueError, match=r"value \(1, 0, 1\) is not among"):  # a value
        fl.onehotbatch([[(0, 1), (1, 0)], [(0, 1), (1, 0, 1)]], labels)
    # a numeric array's numbers can be no pair: its last axis must be the pairs
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 2\).*got int64 values of shape "
                                         r"\(3, 3\)"):
        fl.onehotbatch(np.zeros((3, 3), np.int64), labels, default=(0, 1))
    with pytest.raises(ValueError, match="one value"):
        fl.onehotbatch((0, 1), labels)
    # values of another shape in a sequence are unknown values, one each (OneHotArrays:
    # anything not among the labels), as before
    expected = hot(0, 1, 1, 1, n=2)
    np.testing.assert_array_equal(
        fl.onehotbatch([(0, 1), 99, "zz", (1, 0, 1)], labels, default=(1, 0)), expected)
    np.testing.assert_array_equal(
        fl.onehotbatch([[(0, 1), (1, 0)], [(0, 1), (1, 0, 1)]], labels, default=(1, 0)),
        [hot(0, 1, n=2), hot(0, 1, n=2)])
    with pytest.raises(ValueError, match=r"value 99 is not among the labels"):
        fl.onehotbatch([(0, 1), 99], labels)
    # labels of different shapes take a flat sequence; a sequence of labels in it is refused
    mixed = [("a",), ("b", "c")]
    np.testing.assert_array_equal(fl.onehotbatch([("b", "c"), ("a",)], mixed), hot(1, 0, n=2))
    with pytest.raises(ValueError, match=r"xs holds \(\('a',\),\), a sequence of labels"):
        fl.onehotbatch([[("a",)], [("a",)]], mixed, default=("a",))


def test_onehot_of_namedtuple_labels():
    # a namedtuple label is a tuple: a batch of sequences of them is read one per element
    P = namedtuple("P", "a b")
    labels = [P(0, 1), P(1, 0)]
    np.testing.assert_array_equal(fl.onehotbatch([P(1, 0), (0, 1)], labels), hot(1, 0, n=2))
    np.testing.assert_array_equal(fl.onehotbatch([[P(1, 0)], [(5, 5)]], labels,
                                                 default=labels[0]), [hot(1, n=2), hot(0, n=2)])
    assert fl.onecold(hot(1, 0, n=2), labels).tolist() == [P(1, 0), P(0, 1)]


def test_onehot_of_list_labels():
    # a label may be a list (a Julia Vector): regression, a list value became a tuple, never
    # equal to the list label, so [0, 1] was refused, and with default= took it, silently
    labels = [[0, 1], [1, 1]]
    np.testing.assert_array_equal(fl.onehotbatch([[1, 1], [0, 1]], labels), hot(1, 0, n=2))
    np.testing.assert_array_equal(fl.onehotbatch([[1, 1], [0, 1]], labels, default=[1, 1]),
                                  hot(1, 0, n=2))
    np.testing.assert_array_equal(fl.onehot((0, 1), labels), [1, 0])
    # the rows of an array as labels: regression, NumPy's "truth value of an array is
    # ambiguous" where the labels were compared
    rows = np.array(labels)
    np.testing.assert_array_equal(fl.onehotbatch([[1, 1], [0, 1]], rows), hot(1, 0, n=2))
    np.testing.assert_array_equal(fl.onehotbatch(np.array([[[0, 1]]]), rows, default=rows[1]),
                                  [hot(0, n=2)])


def test_onehot_of_mixed_values():
    # labels of mixed types, as a Julia Vector{Any}: regression, np.asarray turned the values
    # [1, "a"] into the strings "1", "a", so 1 was refused, or took the label "1", silently
    labels = ["1", 1, "a"]
    np.testing.assert_array_equal(fl.onehotbatch([1, "a", "1"], labels), hot(1, 2, 0, n=3))
    assert fl.onecold(fl.onehotbatch([1, "a"], labels), labels).tolist() == [1, "a"]
    np.testing.assert_array_equal(fl.onehotbatch([["a", 1]], labels), [hot(2, 1, n=3)])


# --- test/onehot.jl, "onecold" ---------------------------------------------------------------


def test_onecold():
    a = np.array([1, 2, 5, 3.0])
    A = np.array([[1, 20, 5], [2, 7, 6], [3, 9, 10], [2, 1, 14]]).T  # Julia's columns: rows
    labels = ["A", "B", "C", "D"]
    assert fl.onecold(a) == 2
    np.testing.assert_array_equal(fl.onecold(A), [2, 0, 3])
    assert fl.onecold(a, labels) == "C"
    assert fl.onecold(a, tuple(labels)) == "C"
    assert list(fl.onecold(A, labels)) == ["C", "A", "D"]
    assert list(fl.onecold(A, tuple(labels))) == ["C", "A", "D"]

    data, labels = ["b", "a", "c"], ["a", "b", "c"]
    assert list(fl.onecold(fl.onehotbatch(data, labels), labels)) == data

    for bad in ([0.3, 0.2], [0.3, 0.2, 0.5, 0.99]):  # DimensionMismatch
        with pytest.raises(ValueError, match="labels for"):
            fl.onecold(np.array(bad), ("a", "b", "c"))


def test_onecold_refuses_nan_scores():
    # OneHotArrays: ArgumentError. Regression: argmax took the NaN's position, so a diverged
    # model's NaN scores read as class 1, silently
    with pytest.raises(ValueError, match=r"NaN \(at \(1,\)"):
        fl.onecold(np.array([0.3, np.nan, 0.5]), ("a", "b", "c"))
    with pytest.raises(ValueError, match=r"NaN \(at \(2, 0\) of shape \(3, 2\)"):
        fl.onecold(np.array([[0.1, 0.9], [0.2, 0.8], [np.nan, 0.0]]))


def test_onecold_keeps_the_labels_as_given():
    # Julia's labels keep their types (a Vector{Any}); regression: np.asarray turned mixed
    # labels into strings (onecold gave '1', not 1) and tuple labels into a matrix's rows
    y = np.array([[0.1, 0.9], [0.8, 0.2]])
    out = fl.onecold(y, [1, "a"])
    assert out.tolist() == ["a", 1] and type(out[1]) is int
    assert fl.onecold(y, [(0, 0), (0, 1)]).tolist() == [(0, 1), (0, 0)]
    assert fl.onecold(y, [None, 3]).tolist() == [3, None]
    # numbers of one kind and strings keep NumPy's dtype (Julia promotes [1, 2.5] too)
    assert fl.onecold(y, [1, 2.5]).dtype == np.float64
    assert fl.onecold(y, ["x", "y"]).dtype.kind == "U"
    np.testing.assert_array_equal(fl.onecold(y, [1, 2.5]), [2.5, 1.0])


# --- test/onehot.jl, "onehotbatch indexing"; test/array.jl -------------------------------------


def test_onehotbatch_indexing_and_arrays():
    # onehotbatch(ones(3), 1:10): 0-based, the value 1 is class 1 of range(1, 11)
    y = fl.onehotbatch(np.ones(3, int), range(1, 11))
    np.testing.assert_array_equal(y[0], hot(0, n=10)[0])
    r = np.random.default_rng(0)
    idx = r.integers(0, 10, size=(5, 5))
    oa = fl.onehotbatch(idx, 10)  # OneHotArray(rand(1:10, 5, 5), 10): (5, 5, 10) here
    assert oa.shape == (5, 5, 10)
    # oa[3, 3, 3] == (oa.indices[3, 3] == 3), oa[:, 3, 3] is a one-hot vector, ...
    assert oa[2, 2, 2] == (idx[2, 2] == 2)
    np.testing.assert_array_equal(oa[2, 2], fl.onehot(int(idx[2, 2]), 10))
    np.testing.assert_array_equal(oa[:, 2, 2], idx[:, 2] == 2)
    np.testing.assert_array_equal(oa[..., 2], idx == 2)
    # every row one-hot; argmax (onecold) gives the indices back, reshaped or not
    np.testing.assert_array_equal(oa.sum(-1), np.ones((5, 5)))
    np.testing.assert_array_equal(fl.onecold(oa), idx)
    np.testing.assert_array_equal(fl.onecold(oa.reshape(25, 10)), idx.ravel())
    # concatenating along the batch axis stays one-hot (hcat): the indices concatenated
    om = fl.onehotbatch(idx[0], 10)
    np.testing.assert_array_equal(np.concatenate([om, om]),
                                  fl.onehotbatch(np.concatenate([idx[0], idx[0]]), 10))
    np.testing.assert_array_equal(np.stack([om, om]), fl.onehotbatch(np.stack([idx[0]] * 2), 10))


# --- test/linalg.jl ----------------------------------------------------------------------------


def test_products_with_a_onehot_matrix_select_rows():
    # A * b1 == A[:, [1, 1, 2, 2]]: batch first, onehotbatch(i) @ W == W[i]
    A = np.array([[1, 3, 5], [2, 4, 6], [3, 6, 9]], np.float32)
    b1 = fl.onehotbatch([0, 0, 1, 1], 3)
    np.testing.assert_array_equal(b1 @ A.T, A.T[[0, 0, 1, 1]])
    np.testing.assert_array_equal(A @ b1.T, A[:, [0, 0, 1, 1]])
    # a Dense layer of a one-hot batch picks its weight's columns (an embedding)
    d = fl.Dense(3, 2)
    np.testing.assert_allclose(d(b1), d.weight.T[[0, 0, 1, 1]] + d.bias, rtol=1e-6)
    # A * b2 with b2 of 5 classes: DimensionMismatch
    with pytest.raises(ValueError):
        A @ fl.onehotbatch([1, 3, 0, 2], 5).T


@pytest.mark.parametrize("scores", [["a", "b"], np.array([[1j, 2], [3, 1j]]), [None, 1.0]])
def test_onecold_refuses_scores_that_are_not_real_numbers(scores):
    """Strings were ranked alphabetically and complex numbers by their real parts, and an
    index came back as for scores, silently."""
    with pytest.raises(TypeError, match=r"onecold: expected real scores \(numbers or "
                                        r"booleans\); got dtype"):
        fl.onecold(scores)
    # booleans (one-hot rows) are scores: the index of the True entry
    assert fl.onecold(np.array([[False, True, False], [True, False, False]])).tolist() == [1, 0]
