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


NAN = float("nan")
_FINITE_GE0 = "must be a finite number >= 0; got "


def _adjusted(rule, **changes):
    return fl.adjust(fl.setup(rule, {"w": np.ones(2)}), **changes)


# Hyperparameters out of their range (NaN is in none) were taken, and the first update
# (or never) showed it: a NaN learning rate gave NaN weights, rho = 1.5 diverged.
@pytest.mark.parametrize("call, message", [
    (lambda: fl.Descent(NAN), "Descent: the learning rate eta " + _FINITE_GE0 + "nan"),
    (lambda: fl.Adam(float("inf")), "Adam: the learning rate eta " + _FINITE_GE0 + "inf"),
    (lambda: fl.Descent("0.1"), r"Descent: the learning rate eta must be a finite number >= 0; "
     r"got '0.1' \(a str\)"),
    (lambda: fl.Momentum(0.1, 1.5), r"Momentum: rho \(the momentum\) must be a number in "
     r"\[0, 1\]; got 1.5"),
    (lambda: fl.Nesterov(0.1, NAN), r"Nesterov: rho \(the momentum\) must be a number in "
     r"\[0, 1\]; got nan"),
    (lambda: fl.RMSProp(0.1, -0.1), r"RMSProp: rho \(the decay rate\)"),
    (lambda: fl.RMSProp(0.1, 0.9, -1e-8), r"RMSProp: epsilon \(added to the denominator\) "
     + _FINITE_GE0 + "-1e-08"),
    (lambda: fl.AdaGrad(0.1, NAN), "AdaGrad: epsilon"),
    (lambda: fl.AdaDelta(2.0), r"AdaDelta: rho \(the decay rate\) must be a number in "
     r"\[0, 1\]; got 2.0"),
    (lambda: fl.Adam(0.1, (NAN, 0.9)), r"Adam: beta must be two numbers in \[0, 1\) \(the "
     r"decay rates of the moments\); got \(nan, 0.9\)"),
    (lambda: fl.Adam(0.1, 0.9), r"Adam: beta must be two numbers .*; got 0.9"),
    (lambda: fl.NAdam(0.1, (0.9, 0.999), -1.0), "NAdam: epsilon"),
    (lambda: fl.AdamW(0.1, lambd=-0.01), r"AdamW: lambd \(the weight decay\) " + _FINITE_GE0
     + "-0.01"),
    (lambda: fl.Lion(0.1, (1.5, 0.9)), r"Lion: beta must be two numbers in \[0, 1\)"),
    (lambda: fl.Rprop(0.1, (1.2, 0.5)), r"Rprop: ell must be two numbers .* 0 < ell\[0\] < 1 < "
     r"ell\[1\]; got \(1.2, 0.5\)"),
    (lambda: fl.Rprop(0.1, gamma=(1.0, NAN)), r"Rprop: gamma must be two numbers .*; got "
     r"\(1.0, nan\)"),
    (lambda: fl.WeightDecay(NAN), r"WeightDecay: lambd \(the weight decay\) " + _FINITE_GE0),
    (lambda: fl.SignDecay(-1.0), r"SignDecay: lambd \(the weight decay\) " + _FINITE_GE0),
    (lambda: _adjusted(fl.Adam(), eta=NAN), "Adam: the learning rate eta " + _FINITE_GE0),
    (lambda: _adjusted(fl.Momentum(), rho=5.0), r"Momentum: rho \(the momentum\)"),
    (lambda: fl.StepDecay(NAN), "StepDecay: start must be a finite number; got nan"),
    (lambda: fl.ExpDecay(0.1, float("inf")), "ExpDecay: decay must be a finite number; got inf"),
    (lambda: fl.CosineAnneal(0.1, end=NAN), "CosineAnneal: end must be a finite number"),
    (lambda: fl.OneCycle(0.1, 10, div=0.0), r"OneCycle: div \(peak / the first value\) must be "
     r"a finite number > 0; got 0.0"),
    (lambda: fl.OneCycle(0.1, 1), r"OneCycle: total \(the steps of the cycle\) must be an int "
     r">= 2; got 1"),
    (lambda: fl.OneCycle(0.1, 10, pct_start=1.0), r"OneCycle: pct_start must be a number in "
     r"\(0, 1\); got 1.0"),
    (lambda: fl.BatchNorm(3, momentum=NAN), r"BatchNorm: momentum \(the running statistics' "
     r"update rate\) must be a number in \[0, 1\]; got nan"),
    (lambda: fl.InstanceNorm(3, momentum=-0.1), "InstanceNorm: momentum"),
    (lambda: fl.LayerNorm(3, eps=-1e-5), r"LayerNorm: eps \(added to the variance\) "
     + _FINITE_GE0 + "-1e-05"),
    (lambda: fl.GroupNorm(4, 2, eps=NAN), "GroupNorm: eps"),
])
def test_hyperparameters_out_of_range_are_refused_by_name(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("call, error, message", [
    (lambda: fl.huber_loss(Q, Q, delta=-1.0), ValueError, r"huber_loss: delta \(where the "
     r"square turns linear\) must be a finite number > 0; got -1.0"),
    (lambda: fl.focal_loss(Q, Q, gamma=NAN), ValueError, r"focal_loss: gamma \(the focusing "
     r"power\) " + _FINITE_GE0 + "nan"),
    (lambda: fl.binary_focal_loss(Q, Q, gamma=-2.0), ValueError, "binary_focal_loss: gamma"),
    (lambda: fl.crossentropy(Q, Q, eps=-1.0), ValueError, r"crossentropy: eps \(added to the "
     r"prediction, to keep its log finite\) must be a number in \[0, 0.1\]; got -1.0"),
    (lambda: fl.kldivergence(Q, Q, eps=NAN), ValueError, "kldivergence: eps"),
    (lambda: fl.msle(Q, Q, eps=-1.0), ValueError, "msle: eps"),
    (lambda: fl.tversky_loss(Q, Q, beta=1.5), ValueError, r"tversky_loss: beta \(the weight of "
     r"false positives\) must be a number in \[0, 1\]; got 1.5"),
    (lambda: fl.dice_coeff_loss(Q, Q, smooth=NAN), ValueError, "dice_coeff_loss: smooth"),
    (lambda: fl.label_smoothing(Q, NAN), ValueError, r"label_smoothing: alpha must be a number "
     r"in \(0, 1\); got nan"),
    (lambda: fl.EarlyStopping(min_delta=-0.1), ValueError, r"EarlyStopping: min_delta \(the "
     r"least improvement\) " + _FINITE_GE0 + "-0.1"),
    (lambda: fl.EarlyStopping(monitor=3), TypeError, r"EarlyStopping: monitor must be the name "
     r"of a metric .*; got 3"),
    (lambda: fl.EarlyStopping(restore_best="no"), TypeError, r"EarlyStopping: restore_best "
     r"must be True or False; got 'no' \(a str\)"),
    (lambda: fl.DataLoader(Q, shuffle="yes"), TypeError, r"DataLoader: shuffle must be True or "
     r"False; got 'yes' \(a str\)"),
    (lambda: fl.DataLoader(Q, partial=2), TypeError, r"DataLoader: partial must be True or "
     r"False; got 2 \(an int\)"),
    (lambda: fl.train(lambda m: np.sum(m["w"]), {"w": np.ones(1)}, [()],
                      fl.setup(fl.Descent(), {"w": np.ones(1)}), progress="no"), TypeError,
     r"train: progress must be True or False; got 'no' \(a str\)"),
    (lambda: fl.Upsample("bilinear", scale=NAN), ValueError,
     r"Upsample: scale must be a positive number or one per spatial dimension; got nan"),
    (lambda: fl.Upsample(scale=(2, -1)), ValueError,
     r"Upsample: scale must be a positive number or one per spatial dimension; got \(2, -1\)"),
    (lambda: fl.Upsample(size=(4, 0)), ValueError,
     r"Upsample: size must be a positive int or one per spatial dimension; got \(4, 0\)"),
])
def test_losses_and_training_settings_are_checked_by_name(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_numpy_bools_and_numbers_are_taken():
    fl.DataLoader(Q, shuffle=np.True_, partial=np.False_)
    fl.EarlyStopping(min_delta=np.float32(0.01), restore_best=np.bool_(False))
    fl.huber_loss(Q, Q, delta=np.float32(0.5))
    fl.Adam(np.float32(0.01), (np.float64(0.9), 0.999))
    fl.Upsample("bilinear", scale=(np.int64(2), 1.5))


@pytest.mark.parametrize("call, message", [
    (lambda: fl.leakyrelu(Q, NAN), r"leakyrelu: a \(the slope below 0\) must be a finite "
     r"number; got nan"),
    (lambda: fl.celu(Q, 0.0), r"celu: a must not be 0 \(celu divides x by it\)"),
    (lambda: fl.softshrink(Q, -0.5), "softshrink: lambd " + _FINITE_GE0 + "-0.5"),
    (lambda: fl.hardshrink(Q, NAN), "hardshrink: lambd " + _FINITE_GE0 + "nan"),
    (lambda: fl.hardtanh(Q, 1.0, -1.0), r"hardtanh: expected lo <= hi; got lo=1.0, hi=-1.0"),
    (lambda: fl.trelu(Q, NAN), "trelu: theta must be a finite number; got nan"),
])
def test_activation_parameters_are_checked_by_name(call, message):
    """celu(x, 0) raised a bare ZeroDivisionError; the others computed quietly (softshrink
    with a negative lambd crossed clip's bounds; hardtanh with lo > hi gave hi everywhere)."""
    with pytest.raises(ValueError, match=message):
        call()
    assert fl.leakyrelu(np.array([-1.0]), np.array([0.5])).tolist() == [-0.5]  # (an array: taken)


@pytest.mark.parametrize("call, error, message", [
    (lambda: fl.outputsize(fl.Dense(3, 2), (-1, 3)), TypeError, r"outputsize: the input shape "
     r"must be a tuple of non-negative ints, batch first .*got \(-1, 3\)"),
    (lambda: fl.outputsize(fl.Dense(3, 2), (2.5, 3)), TypeError, r"outputsize: the input shape "
     r".*got \(2.5, 3\)"),
    (lambda: fl.outputsize(fl.Dense(3, 2), 3), TypeError, r"outputsize: the input shape must be "
     r"a tuple .*; got 3$"),
    (lambda: fl.NeuralODE(fl.Dense(2, 2), (0.0, NAN)), ValueError, r"NeuralODE: tspan must be "
     r"two finite times \(t0, t1\); got \(0.0, nan\)"),
    (lambda: fl.batchnorm(np.ones((2, 3)), eps=-1.0), ValueError, r"batchnorm: eps \(added to "
     r"the variance\) " + _FINITE_GE0 + "-1.0"),
    (lambda: fl.splitobs(Q, at=0.5, shuffle="x"), TypeError, r"splitobs: shuffle must be True "
     r"or False"),
    (lambda: fl.LRSchedule(lambda t: 0.1, name=3), TypeError, r"LRSchedule: name must be the "
     r"hyperparameter's name \(a str"),
    (lambda: fl.label_smoothing(Q, 0.1, axis=5), ValueError, r"label_smoothing: axis must be an "
     r"axis of y \(ndim 3; the classes' axis\) or None \(binary targets\); got 5"),
    (lambda: fl.make_causal_mask(np.ones(3)), ValueError, r"make_causal_mask: axis \(the time "
     r"axis\) must be an axis of x \(shape \(3,\)\); got -2"),
    (lambda: fl.make_causal_mask(-2), ValueError, r"make_causal_mask: x \(the length\) must be a "
     r"non-negative int; got -2"),
])
def test_shapes_times_and_axes_are_checked_by_name(call, error, message):
    """Each computed something (a negative size, a NaN end time that solved nothing, a
    negative eps) or failed with IndexError: tuple index out of range."""
    with pytest.raises(error, match=message):
        call()
    assert fl.outputsize(fl.Dense(3, 2), [np.int64(4), 3]) == (4, 2)
    assert fl.NeuralODE(fl.Dense(2, 2), (np.float32(0), np.array(1.0))).tspan == (0.0, 1.0)


def test_zero_d_arrays_are_numbers():
    """A layer's eps after fl.f64 or a tree map is a 0-d array (SyncBatchNorm passed one to
    batchnorm: refused at first, found by the suite)."""
    assert fl.batchnorm(np.ones((2, 3)), eps=np.array(1e-5)).shape == (2, 3)
    fl.Adam(np.array(0.1), (np.array(0.9), 0.99), np.array(1e-8))
    fl.Rprop(0.1, (np.array(0.5), 1.2))
    with pytest.raises(ValueError, match=r"batchnorm: eps .* got array\(-1.\)"):
        fl.batchnorm(np.ones((2, 3)), eps=np.array(-1.0))


X1 = np.ones((1, 1, 4, 4))


@pytest.mark.parametrize("call, error, message", [
    (lambda: fl.nnlib.pad_zeros(X1, True), TypeError,
     r"pad_zeros: pad must be an int or a tuple of ints; got True \(a bool\)"),
    (lambda: fl.nnlib.pad_zeros(X1, 1.0), TypeError, r"got 1.0 \(a float\)"),
    (lambda: fl.nnlib.pad_zeros(X1, 1, dims=True), ValueError, r"pad_zeros: dims must be axes"),
    (lambda: fl.nnlib.conv(X1, np.ones((1, 1, 2, 2)), pad=True), ValueError,
     r"conv: pad must be 'same', a non-negative int"),
    (lambda: fl.Conv(2.0, 1, 1), ValueError, r"Conv: the kernel must be a tuple of 1 to 3 "
     r"positive ints .*; got \(2.0,\)"),
    (lambda: fl.Upsample(size=(True, 2)), ValueError, r"Upsample: size must be a positive int"),
    (lambda: fl.Upsample(scale=True), ValueError, r"Upsample: mode 'nearest' takes integer"),
    (lambda: fl.Dropout(True), ValueError, r"Dropout: p must be a probability in \[0, 1\]"),
    (lambda: fl.Dropout(0.5, dims=True), ValueError, r"Dropout: dims must be None, an axis"),
    (lambda: fl.dropout(X1, 0.5, dims=True), ValueError, r"dropout: dims must be axes"),
    (lambda: fl.WeightNorm(fl.Dense(2, 3), dims=True), ValueError, r"dims must be axes"),
    (lambda: fl.groupnorm(np.ones((2, 2, 3)), True), ValueError, r"groupnorm: .* groups=True"),
    (lambda: fl.nnlib.spectrogram(np.ones(16), 4, pad=True), ValueError,
     r"spectrogram: pad must be a non-negative int; got True \(a bool\)"),
    (lambda: fl.nnlib.hann_window(True), ValueError,
     r"hamming_window: window_length must be a positive int; got True"),
    (lambda: fl.rrelu(X1, True, 2), ValueError, r"rrelu: lo must be a finite number; got True"),
])
def test_integers_are_is_int_everywhere(call, error, message):
    """Hand-written `isinstance(n, (int, np.integer))` checks took True as 1 (a pad, a window
    length, an Upsample size, Dropout's p, an axis) and some failed on a float with
    "'float' object is not iterable"; now each is _checks.is_int (or positive_int)."""
    with pytest.raises(error, match=message):
        call()
    # NumPy integers are integers
    assert fl.nnlib.pad_zeros(X1, np.int64(1), dims=np.int32(2)).shape == (1, 1, 6, 4)
    assert fl.Conv((np.int64(2), 2), 1, 1, pad=np.int8(1))(X1.astype(np.float32)).shape == \
        (1, 1, 5, 5)
    assert fl.Upsample(size=(np.int64(8), 8))(X1).shape == (1, 1, 8, 8)
    assert fl.Dropout(0.5, dims=np.int64(1)).dims == (1,)
    assert fl.Dropout(0.5, dims=(0, 1)).dims == (0, 1)
