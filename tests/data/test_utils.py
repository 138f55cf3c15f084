"""onehot / onecold, splitobs / shuffleobs, normalisation: against direct computations."""

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fluxml as fl


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=1, max_size=20))
def test_onehotbatch_onecold_roundtrip(ys):
    y = fl.onehotbatch(ys, 7)
    assert y.shape == (len(ys), 7) and y.dtype == np.float32
    for row, v in zip(y, ys):
        assert row[v] == 1 and row.sum() == 1
    assert fl.onecold(y).tolist() == ys
    labels = [f"c{i}" for i in range(7)]
    assert fl.onecold(fl.onehotbatch([labels[v] for v in ys], labels), labels).tolist() == \
        [labels[v] for v in ys]


def test_onehot_labels_default_and_errors():
    assert fl.onehot(3, [1, 3, 5]).tolist() == [0, 1, 0]
    assert fl.onehotbatch([9], range(3), default=0).tolist() == [[1, 0, 0]]
    assert fl.onehotbatch(["z"], "abc", default="c").tolist() == [[0, 0, 1]]
    with pytest.raises(ValueError, match="value 3 is not among the labels 0..2"):
        fl.onehotbatch([0, 3], 3)
    with pytest.raises(ValueError, match=r"value 'q' is not among the labels \['a', 'b'\]"):
        fl.onehot("q", "ab")
    with pytest.raises(ValueError, match="expected an array or sequence of values; got one"):
        fl.onehotbatch(2, 3)
    with pytest.raises(ValueError, match="2 labels for 3 scores"):
        fl.onecold(np.zeros((4, 3)), "ab")
    with pytest.raises(ValueError, match=r"labels must be distinct; 'a' appears more than "
                                         r"once"):
        fl.onehotbatch(["a", "b"], "aab")  # 'a' got the second column, silently


def test_onehotbatch_of_an_array_adds_the_class_axis_last():
    """Flux's onehotbatch encodes an array of any shape; fluxml's refused all but 1-d, so a
    batch of sequences (N, T) needed a loop or np.eye(n)[y]. Now S -> S + (classes,)."""
    y = np.array([[0, 2, 1], [1, 1, 0]])
    hot = fl.onehotbatch(y, 3)
    assert hot.shape == (2, 3, 3) and hot.dtype == np.float32
    assert np.array_equal(hot, np.eye(3, dtype=np.float32)[y])
    words = np.array([["b", "a"], ["c", "b"]])
    assert np.array_equal(fl.onecold(fl.onehotbatch(words, "abc"), "abc"), words)
    assert fl.onehotbatch(np.array([[7], [1]]), 3, default=0).tolist() == [[[1, 0, 0]],
                                                                           [[0, 1, 0]]]
    with pytest.raises(ValueError, match="value 5 is not among the labels 0..2"):
        fl.onehotbatch(np.array([[0, 5]]), 3)


@pytest.mark.parametrize("backend", ["numpy", "xla"])
def test_onehotbatch_inside_a_compiled_step(backend):
    """A Flux loss encodes its batch's labels, loss(m, x, y) = logitcrossentropy(m(x),
    onehotbatch(y, 0:9)); under fl.compile (fl.train(..., compile=True)) fluxml's
    onehotbatch needed the traced labels' values and raised a CompileError. Now it encodes
    them on every run, and a value outside the labels is still an error on that run."""
    if backend == "xla":
        pytest.importorskip("jax")
    fl.seed(0)
    model = fl.f64(fl.Dense(4, 3))
    twin = fl.fmap(np.copy, model)

    def loss(m, x, y):
        return fl.logitcrossentropy(m(x), fl.onehotbatch(y, range(3)))

    @fl.compile(backend=backend, background=False)
    def step(m, x, y):
        value, (g, *_) = fl.withgradient(loss, m, x, y)
        m.weight -= 0.1 * g.weight
        return value

    rng = np.random.default_rng(0)
    for _ in range(3):
        x, y = rng.standard_normal((5, 4)), rng.integers(0, 3, 5)
        value, (g, *_) = fl.withgradient(loss, twin, x, y)
        twin.weight -= 0.1 * g.weight
        assert np.isclose(step(model, x, y), value, rtol=1e-12, atol=0)
        np.testing.assert_allclose(model.weight, twin.weight, rtol=1e-12, atol=1e-15)
    assert step.traces == 1
    before = model.weight.copy()
    with pytest.raises(ValueError, match="value 3 is not among the labels 0..2"):
        step(model, x, np.array([0, 1, 2, 3, 0]))
    assert np.array_equal(model.weight, before)  # nothing written by the refused run
    encode = fl.compile(lambda y: fl.onehotbatch(y, 4, default=0), backend=backend,
                        background=False)
    for y in (np.array([[1, 5], [3, 2]]), np.array([[0, -1], [3, 9]])):
        assert np.array_equal(encode(y), fl.onehotbatch(y, 4, default=0))


def test_splitobs_and_shuffleobs():
    x, y = np.arange(20).reshape(10, 2), np.arange(10)
    (xa, ya), (xb, yb), (xc, yc) = fl.splitobs((x, y), at=(0.5, 0.3))
    assert ya.tolist() == [0, 1, 2, 3, 4] and yb.tolist() == [5, 6, 7] and yc.tolist() == [8, 9]
    assert np.shares_memory(xa, x)
    (xs, ys), _ = fl.splitobs((x, y), at=0.6, shuffle=True, rng=0)
    assert np.array_equal(xs[:, 0] // 2, ys) and sorted(ys.tolist()) != ys.tolist()
    xs, ys = fl.shuffleobs((x, y), rng=5)
    assert sorted(ys.tolist()) == list(range(10)) and np.array_equal(xs[:, 0] // 2, ys)
    with pytest.raises(ValueError, match=r"asks for 11 observations \(parts of \[6, 5\] once "
                                         r"rounded\), more than the 10"):
        fl.splitobs(x, at=(0.6, 0.5))


@pytest.mark.parametrize("at, asked", [((0.5, 0.6), 5.5), ((0.3, 0.8), 5.5), ((2, 0.7), 5.5)])
def test_splitobs_refuses_fractions_past_the_whole(at, asked):
    """Fractions that ask for more than the observations but round to parts that fit (2.5 and
    3 of 5 to 2 and 3) gave parts of 40%, 60% and nothing, silently."""
    with pytest.raises(ValueError, match=rf"splitobs: at={re.escape(repr(at))} asks for "
                                         rf"{asked:g} observations"):
        fl.splitobs(np.arange(5.0), at=at)
    # fractions that fit are split as asked: round(5 * 0.5) = 2, round(5 * 0.4) = 2, the rest 1
    assert [len(p) for p in fl.splitobs(np.arange(5.0), at=(0.5, 0.4))] == [2, 2, 1]


def test_a_default_not_among_the_labels_is_named():
    """list.index's "7 is not in list" was the error."""
    with pytest.raises(ValueError, match=r"onehotbatch: default 7 is not among the labels "
                                         r"\[0, 1, 2\]"):
        fl.onehotbatch([5], 3, default=7)
    with pytest.raises(ValueError, match=r"default 'q' is not among"):
        fl.onehot("z", "abc", default="q")
    assert fl.onehotbatch([5, 1], 3, default=2).tolist() == [[0, 0, 1], [0, 1, 0]]


def test_splitobs_of_a_dataset_with_an_empty_part_is_named():
    """A part of no observations of a dataset read one at a time (a list, an object with
    __getitem__) failed inside default_collate: "no observations to collate" (found by
    tests/data/fuzz_data.py). Arrays give empty parts as before."""
    with pytest.raises(ValueError, match=r"splitobs: part 0 of 3 observations split at 0.1 "
                                         r"would hold none"):
        fl.splitobs((np.arange(3), [np.zeros(2)] * 3), at=0.1)
    empty, rest = fl.splitobs(np.arange(3), at=0.1)
    assert empty.shape == (0,) and rest.tolist() == [0, 1, 2]
    (xa, la), (xb, lb) = fl.splitobs((np.arange(4), [np.ones(2)] * 4), at=0.5)
    assert la.shape == (2, 2) and xb.tolist() == [2, 3]


def test_normalise_and_standardiser():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, (50, 4)).astype(np.float32)
    z = fl.normalise(x, eps=0.0)
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(0), 1, atol=1e-5)
    g = fl.gradient(lambda x: np.sum(fl.normalise(x, axis=1) ** 3), x.astype(np.float64))[0]
    assert g.shape == x.shape and np.all(np.isfinite(g))
    train, test = x[:40], x[40:]
    s = fl.Standardiser.fit(train)
    expected = (test - train.mean(0)) / train.std(0)
    np.testing.assert_allclose(s(test), expected, rtol=1e-5)
    assert s(test).dtype == np.float32
    np.testing.assert_allclose(s.inverse(s(test)), test, rtol=1e-5)
    const = fl.Standardiser.fit(np.ones((3, 2)))
    assert np.array_equal(const(np.ones((1, 2))), np.zeros((1, 2)))


def test_stratified_nan_labels_are_one_label():
    """MLUtils' group_indices keys a Dict, which compares with isequal: the NaNs are one
    label. Regression: each NaN an array gave was a label of its own (one observation each,
    rounded to no observation in the first part), so a stratified split sent every
    NaN-labelled observation to the last part, silently, and kfolds refused them."""
    labels = np.array([np.nan] * 4 + [1.0] * 4)
    train, test = fl.splitobs(np.arange(8), at=0.5, stratified=labels)
    # by hand: each label's observations split in half, in order
    assert train.tolist() == [0, 1, 4, 5] and test.tolist() == [2, 3, 6, 7]
    vals = [v.tolist() for _, v in fl.kfolds(np.arange(8), k=2, stratified=labels)]
    assert vals == [[0, 1, 4, 5], [2, 3, 6, 7]]


def test_stratified_unhashable_labels_are_named():
    """One-hot rows as labels failed in a dict: "unhashable type: 'list'"."""
    with pytest.raises(TypeError, match=r"splitobs: stratified must hold one hashable label "
                                        r"per observation .* got \[1.0, 0.0\] \(a list\) for "
                                        r"observation 0 \(one-hot rows\? pass fl.onecold"):
        fl.splitobs(np.arange(4), at=0.5, stratified=np.eye(2)[[0, 1, 0, 1]])
    with pytest.raises(TypeError, match=r"kfolds: stratified must hold one hashable"):
        next(fl.kfolds(np.arange(4), k=2, stratified=[{0}, {1}, {0}, {1}]))


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4), st.integers(1, 5), st.integers(1, 6), st.integers(0, 2**16),
       st.booleans())
def test_onehotbatch_of_batches_of_pairs_against_a_loop(n, t, classes, seed, as_array):
    """A batch (n, t) of pair labels gives (n, t, classes), one row per pair, given as nested
    lists or as an int array (n, t, 2)."""
    r = np.random.default_rng(seed)
    labels = [(p % 4, p // 4) for p in r.permutation(16)[:classes].tolist()]  # distinct
    seqs = [[labels[r.integers(len(labels))] for _ in range(t)] for _ in range(n)]
    expected = np.zeros((n, t, len(labels)), np.float32)
    for i in range(n):
        for j in range(t):
            expected[i, j, labels.index(seqs[i][j])] = 1
    xs = np.array(seqs) if as_array else seqs
    np.testing.assert_array_equal(fl.onehotbatch(xs, labels), expected)
    np.testing.assert_array_equal(fl.onehotbatch(xs, labels, default=labels[0]), expected)


def test_a_standardiser_in_a_model_keeps_the_datas_statistics():
    """A Standardiser in a Chain had its mean and std set up as parameters: fl.train moved
    them, silently, so the model no longer standardised by the training data's statistics.
    Now they are nontrainable: only the Dense layer trains, as by hand."""
    rng = np.random.default_rng(1)
    x = rng.normal(3.0, 2.0, (16, 2)).astype(np.float32)
    y = x @ np.array([[1.0], [-2.0]], np.float32)
    s = fl.Standardiser.fit(x)
    mean, std = s.mean.copy(), s.std.copy()
    dense = fl.Dense(2, 1)
    w, b = dense.weight.copy(), dense.bias.copy()
    model = fl.Chain(s, dense)
    state = fl.setup(fl.Descent(0.1), model)
    assert fl.trainable(model).keys() == {"layers.1.weight", "layers.1.bias"}
    fl.train(lambda m, x, y: fl.mse(m(x), y), model, [(x, y)], state, epochs=3,
             progress=False)
    assert np.array_equal(s.mean, mean) and np.array_equal(s.std, std)
    z = (x - mean) / std  # by hand: the Dense layer alone, on the standardised inputs
    for _ in range(3):
        err = z @ w.T + b - y
        gw, gb = 2 * err.T @ z / err.size, 2 * err.sum(0) / err.size
        w, b = w - 0.1 * gw, b - 0.1 * gb
    np.testing.assert_allclose(dense.weight, w, rtol=1e-5)
    np.testing.assert_allclose(dense.bias, b, rtol=1e-5)


def test_a_standardisers_gradient_prints():
    """In a gradient its statistics are None (not trained): its repr failed with
    'NoneType' object has no attribute 'dtype' (review)."""
    x = np.random.default_rng(0).normal(size=(8, 3))
    model = fl.f64(fl.Chain(fl.Standardiser.fit(x), fl.Dense(3, 1)))
    (g,) = fl.gradient(lambda m: fl.mse(m(x), x[:, :1]), model)
    assert repr(g.layers[0]) == "Standardiser(mean=None, std=None)"
    assert repr(model.layers[0]) == "Standardiser(mean=float64[1, 3], std=float64[1, 3])"


@pytest.mark.parametrize("x, eps, message", [
    (None, 1e-5, "normalise expects an array of numbers; got a NoneType"),
    (["a", "b"], 1e-5, "normalise expects an array of numbers; got dtype <U1"),
    (np.ones((3, 2)), "x", "normalise: eps must be a finite number >= 0; got 'x' (a str)"),
    (np.ones((3, 2)), -1.0, "normalise: eps must be a finite number >= 0; got -1.0"),
])
def test_normalise_names_what_it_refuses(x, eps, message):
    """None or strings raised NumPy's AxisError or "the resolved dtypes are not compatible
    with add.reduce", naming neither normalise nor its argument."""
    with pytest.raises((TypeError, ValueError), match=re.escape(message)):
        fl.normalise(x, eps=eps)
    # booleans are the numbers 0 and 1: each column standardised by its own mean and std
    got = fl.normalise(np.array([[True, False], [False, True]]), eps=0.0)
    np.testing.assert_allclose(got, [[1.0, -1.0], [-1.0, 1.0]])  # (0.5 -+ 0.5) / 0.5


@pytest.mark.parametrize("pad, shown", [(None, "None (a NoneType)"), ("x", "'x' (a str)")])
def test_batch_sequence_pads_with_numbers_only(pad, shown):
    """pad=None was read as float64's dtype and padded with NaN, silently; pad="x" as a
    dtype's name ("data type 'x' not understood")."""
    seqs = [np.ones((2, 1)), np.full((1, 1), 3.0)]
    with pytest.raises(TypeError, match=re.escape(f"batch_sequence: pad must be a number; got "
                                                  f"{shown}")):
        fl.batch_sequence(seqs, pad=pad)
    # a number pads the shorter sequence at its end
    assert fl.batch_sequence(seqs, pad=-1).tolist() == [[[1.0], [1.0]], [[3.0], [-1.0]]]


@pytest.mark.parametrize("metadata", [5, "ab", [("a", "b")]])
def test_save_metadata_is_a_dict(metadata, tmp_path):
    """metadata=5 raised "'int' object is not iterable", "ab" dict()'s "dictionary update
    sequence element #0 has length 1"; neither named save or metadata."""
    path = tmp_path / "m.safetensors"
    with pytest.raises(TypeError, match="save: metadata must be a dict of strings to strings"):
        fl.save(path, fl.Dense(2, 1), metadata=metadata)
    assert not path.exists()
    fl.save(path, fl.Dense(2, 1), metadata={"a": "b"})
    assert fl.load(path)["weight"].shape == (1, 2)


def test_onehotbatch_shows_a_large_unsigned_value_as_given():
    """(Cast to int64 first, a uint64 of 2**63 or more wrapped round: the error showed
    -9223372036854775808 for 2**63, -1 for 2**64 - 1.)"""
    for value in (2**63, 2**64 - 1):
        with pytest.raises(ValueError, match=f"value {value} is not among the labels 0..2"):
            fl.onehotbatch(np.array([1, value], np.uint64), 3)
    got = fl.onehotbatch(np.array([2**63, 1], np.uint64), 3, default=2)
    assert got.tolist() == [[0, 0, 1], [0, 1, 0]]
    # a default past the values' own dtype (uint8 values, 300 labels)
    assert fl.onehotbatch(np.array([7, 1], np.uint8), 300, default=299).argmax(-1).tolist() \
        == [7, 1]


def test_onecold_of_no_scores_per_row_is_refused_by_name():
    """(NumPy's 'attempt to get argmax of an empty sequence'.)"""
    for shape in [(2, 0), (0,), (0, 0)]:
        with pytest.raises(ValueError, match=re.escape(
                f"onecold: expected at least one score per row along the last axis; got "
                f"shape {shape}")):
            fl.onecold(np.zeros(shape))
    assert fl.onecold(np.zeros((0, 3))).shape == (0,)  # no rows: no labels


def test_splitobs_takes_a_0d_array_as_its_number():
    """(list() of it raised NumPy's 'iteration over a 0-d array'.)"""
    x = np.arange(6)
    assert [p.tolist() for p in fl.splitobs(x, np.array(0.5))] == [[0, 1, 2], [3, 4, 5]]
    assert [p.tolist() for p in fl.splitobs(x, np.array(2))] == [[0, 1], [2, 3, 4, 5]]
    with pytest.raises(ValueError, match="splitobs: at must be a fraction in \\(0, 1\\)"):
        fl.splitobs(x, np.array(1.5))
