"""Boolean settings are checked alike everywhere (fluxml._checks.flag): True or False,
Python's or NumPy's (None where it means "left to the mode" or "no bias"); anything else is a
TypeError naming the function or layer and the argument. Before, most were read by truth
value: "no" and 2 turned a setting on silently (RMSProp(centred="no") was centred,
BatchNorm(affine="no") affine, LSTM(bias="no") had a bias, conv(flipped="no") flipped)."""

import numpy as np
import pytest

import fluxml as fl
from fluxml import nnlib

X = np.ones((1, 1, 4))
W = np.ones((1, 1, 2))

# (who, argument, a call with the value v, whether None is taken)
CASES = [
    ("RMSProp", "centred", lambda v: fl.RMSProp(centred=v), False),
    ("AdamW", "couple", lambda v: fl.AdamW(couple=v), False),
    ("ClipNorm", "throw", lambda v: fl.ClipNorm(throw=v), False),
    ("trainables", "path", lambda v: fl.trainables({"w": np.ones(2)}, path=v), False),
    ("Conv", "flipped", lambda v: fl.Conv((2,), 1, 1, flipped=v), False),
    ("ConvTranspose", "flipped", lambda v: fl.ConvTranspose((2,), 1, 1, flipped=v), False),
    ("MultiHeadAttention", "bias", lambda v: fl.MultiHeadAttention(4, nheads=2, bias=v), True),
    ("TransformerEncoderBlock", "norm_first",
     lambda v: fl.TransformerEncoderBlock(4, 2, 8, norm_first=v), False),
    ("BatchNorm", "affine", lambda v: fl.BatchNorm(3, affine=v), False),
    ("BatchNorm", "track_stats", lambda v: fl.BatchNorm(3, track_stats=v), False),
    ("BatchNorm", "active", lambda v: fl.BatchNorm(3, active=v), True),
    ("InstanceNorm", "track_stats", lambda v: fl.InstanceNorm(3, track_stats=v), False),
    ("GroupNorm", "affine", lambda v: fl.GroupNorm(4, 2, affine=v), False),
    ("LayerNorm", "affine", lambda v: fl.LayerNorm(3, affine=v), False),
    ("Dropout", "active", lambda v: fl.Dropout(0.1, active=v), True),
    ("AlphaDropout", "active", lambda v: fl.AlphaDropout(0.1, active=v), True),
    ("Upsample", "align_corners",
     lambda v: fl.Upsample("bilinear", scale=2, align_corners=v), False),
    ("RNNCell", "bias", lambda v: fl.RNNCell(2, 3, bias=v), True),
    ("LSTM", "bias", lambda v: fl.LSTM(2, 3, bias=v), True),
    ("GRU", "return_state", lambda v: fl.GRU(2, 3, return_state=v), False),
    ("Recurrence", "return_state",
     lambda v: fl.Recurrence(fl.RNNCell(2, 3), return_state=v), False),
    ("trainmode", "mode", lambda v: fl.trainmode(fl.Dropout(0.1), v), True),
    ("testmode", "mode", lambda v: fl.testmode(fl.Dropout(0.1), v), True),
    ("conv", "flipped", lambda v: nnlib.conv(X, W, flipped=v), False),
    ("conv_transpose", "flipped", lambda v: nnlib.conv_transpose(X, W, flipped=v), False),
    ("dropout", "active", lambda v: fl.dropout(X, 0.5, active=v), False),
    ("alpha_dropout", "active", lambda v: fl.alpha_dropout(X, 0.5, active=v), False),
    ("rrelu", "active", lambda v: fl.rrelu(X, active=v), False),
    ("upsample_linear", "align_corners",
     lambda v: nnlib.upsample_linear(X, 2, align_corners=v), False),
    ("hamming_window", "periodic", lambda v: nnlib.hann_window(4, periodic=v), False),
    ("stft", "center", lambda v: nnlib.stft(np.ones(16), 4, center=v), False),
    ("stft", "normalized", lambda v: nnlib.stft(np.ones(16), 4, normalized=v), False),
    ("istft", "return_complex", lambda v: nnlib.istft(np.ones((4 if v else 3, 4), complex), 4,
                                                      1, return_complex=v), False),
    ("spectrogram", "window_normalized",
     lambda v: nnlib.spectrogram(np.ones(16), 4, window_normalized=v), False),
]


@pytest.mark.parametrize("who, name, call, none", CASES, ids=[f"{c[0]}.{c[1]}" for c in CASES])
def test_flags_refuse_what_is_not_a_bool(who, name, call, none):
    allowed = "True, False or None" if none else "True or False"
    for bad, shown in (("no", r"'no' \(a str\)"), (2, r"2 \(an int\)"),
                       (1.0, r"1.0 \(a float\)")):
        with pytest.raises(TypeError, match=rf"^{who}: {name} must be {allowed}; got {shown}$"):
            call(bad)
    if not none:
        with pytest.raises(TypeError, match=rf"{who}: {name} must be True or False; got None"):
            call(None)
    call(np.True_)
    call(np.False_)
    call(False)


def test_numpy_bools_mean_what_python_bools_mean():
    """np.False_ as a bias was refused as an array of shape (); np.True_ in a flag read by
    identity (`bias is True`) too."""
    assert fl.Dense(2, 3, bias=np.False_).bias is None
    assert fl.Dense(2, 3, bias=np.True_).bias.tolist() == [0.0, 0.0, 0.0]
    assert fl.BatchNorm(3, affine=np.False_, track_stats=np.False_).weight is None
    assert fl.RMSProp(centred=np.True_).centred is True
    assert fl.LSTM(2, 3, bias=None).cell.bias_ih is None  # (None: no bias, as Dense's)


def test_a_bias_is_a_bool_or_an_array_of_the_layer_shape():
    """Dense(bias="no") said the bias "must have shape (3,); got ()"; Scale took "no" or an
    array of any shape as its bias (a wrong shape broadcast in the forward pass, or failed
    there)."""
    for layer in (lambda b: fl.Dense(2, 3, bias=b), lambda b: fl.Scale(3, bias=b)):
        with pytest.raises(TypeError, match=r"bias must be True, False or an array of shape "
                                            r"\(3,\); got 'no' \(a str\)"):
            layer("no")
        with pytest.raises(ValueError, match=r"bias must have shape \(3,\); got \(1,\)"):
            layer(np.ones(1))
    scale = fl.Scale(2, 3, bias=np.arange(6.0).reshape(2, 3))
    assert scale.bias.dtype == np.float32  # (the scale's dtype, as Dense's bias)
    x = np.ones((4, 2, 3), np.float32)
    np.testing.assert_array_equal(scale(x), x * scale.scale + np.arange(6.0).reshape(2, 3))
    assert fl.Scale(3, bias=None).bias is None
