"""Counts (sizes, heads, groups, steps between events) are checked alike everywhere
(fluxml._checks.positive_int): a Python or NumPy integer is taken; a bool (True passed as 1
where a hand-written check took it), a float (even 2.0, which some took and others refused)
and a value below the least allowed are refused by a ValueError naming the function or
layer, the argument, what it expects and what came."""

import numpy as np
import pytest

import fluxml as fl

X4 = np.ones((1, 4, 5, 5), np.float32)
W4 = np.ones((4, 2, 3, 3), np.float32)  # (out, in / groups, kh, kw): groups 2
Q = np.ones((1, 3, 8))


def _maxout(n):
    return fl.Maxout(lambda: fl.Dense(2, 2), n)


def _train(n):
    model = {"w": np.ones(1)}
    fl.train(lambda m: np.sum(m["w"]), model, [()], fl.setup(fl.Descent(), model), epochs=n,
             progress=False)


# (what is called with the count n, the error's words before "must be", the least allowed,
#  a good value)
CASES = {
    "MultiHeadAttention": (lambda n: fl.MultiHeadAttention(8, nheads=n),
                           "MultiHeadAttention: nheads", 1, 2),
    "PolyAct": (lambda n: fl.PolyAct(n), "PolyAct: degree", 1, 3),
    "conv groups": (lambda n: fl.nnlib.conv(X4, W4, groups=n), "conv: groups", 1, 2),
    "Conv groups": (lambda n: fl.Conv((3, 3), 4, 4, groups=n), "Conv: groups", 1, 2),
    "AccumGrad": (lambda n: fl.AccumGrad(n), r"AccumGrad: n \(the steps to accumulate\)", 1,
                  2),
    "compile": (lambda n: fl.compile(np.sin, cache_size=n), "fl.compile: cache_size", 1, 4),
    "dot_product_attention": (lambda n: fl.dot_product_attention(Q, Q, Q, nheads=n),
                              "dot_product_attention: nheads", 1, 2),
    "Scale": (lambda n: fl.Scale(3, n), r"Scale: size\[1\]", 1, 2),
    "EarlyStopping": (lambda n: fl.EarlyStopping(patience=n), "EarlyStopping: patience", 1, 2),
    "Maxout": (_maxout, r"Maxout: n \(the number of alternatives\)", 1, 2),
    "onehot": (lambda n: fl.onehot(0, n),
               r"onehotbatch: labels \(the number of classes\)", 1, 3),
    "CosineAnneal period": (lambda n: fl.CosineAnneal(0.1, period=n), "CosineAnneal: period",
                            1, 10),
    "CosineAnneal warmup": (lambda n: fl.CosineAnneal(0.1, warmup=n), "CosineAnneal: warmup",
                            0, 2),
    "StepDecay": (lambda n: fl.StepDecay(0.1, step=n), r"StepDecay: step \(the steps", 1, 2),
    "Evaluate": (lambda n: fl.Evaluate(len, every=n), r"Evaluate: every", 1, 2),
    "DataLoader": (lambda n: fl.DataLoader(np.ones((4, 2)), batchsize=n),
                   "DataLoader: batchsize", 1, 2),
    "Dense": (lambda n: fl.Dense(n, 2), "Dense: in_features", 1, 3),
    "train": (_train, "train: epochs", 0, 1),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_counts_take_numpy_integers_and_refuse_bools_floats_and_small_values(case):
    fn, words, least, good = CASES[case]
    fn(good)
    fn(np.int64(good))  # (a NumPy integer: a size read off an array's shape, a loop variable)
    kind = "a positive int" if least == 1 else "a non-negative int"
    bads = [(True, r"True \(a bool\)"), (float(good), rf"{good}\.0 \(a float\)"),
            (least - 1, str(least - 1)), ("2", r"'2' \(a str\)")]
    if case in ("Maxout", "onehot"):  # (Maxout(make, "2") is two layers; "2", a label)
        bads.pop()
    for bad, shown in bads:
        with pytest.raises(ValueError, match=rf"^{words}[^;]* must be {kind}; got {shown}$"):
            fn(bad)


@pytest.mark.parametrize("call, message", [
    (lambda: fl.nnlib.maxpool(X4, 2, stride=True), r"maxpool: stride must be an int or a tuple "
     r"of 2 ints, positive"),
    (lambda: fl.Conv((True, 3), 1, 1), r"Conv: the kernel must be a tuple of 1 to 3 positive "
     r"ints"),
    (lambda: fl.init.glorot_uniform((True, 3)), r"an initialiser's shape must be non-negative "
     r"ints; got \(True, 3\)"),
])
def test_bools_are_no_sizes_in_tuples_either(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_polygamma_refuses_a_negative_order():
    pytest.importorskip("scipy")
    from fluxml.scipy.special import polygamma

    with pytest.raises(ValueError, match=r"polygamma: the order n must be a non-negative "
                                         r"integer \(or an array of them\); got array\(-1\)"):
        polygamma(-1, np.ones(2))
    np.testing.assert_allclose(polygamma(np.int64(0), np.ones(1)), [-0.5772156649015329])
