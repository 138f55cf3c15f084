"""The NN primitives name the argument that is not an array: given a list, the kernels failed
with an AttributeError ('list' object has no attribute 'shape'), a TypeError from list
arithmetic, or (the pools, fold, upsampling) a message about the input's shape that showed
the shape they asked for. An attention bias may still be a list, as before."""

import numpy as np
import pytest

import fluxml as fl
from fluxml import nnlib

L = [[[1.0, 2.0, 3.0, 4.0]]]
A = np.array(L)

CALLS = [
    ("maxpool", "x", lambda: nnlib.maxpool(L, 2)),
    ("adaptive_meanpool", "x", lambda: nnlib.adaptive_meanpool(L, 2)),
    ("unfold", "x", lambda: nnlib.unfold(L, 2)),
    ("upsample_nearest", "x", lambda: nnlib.upsample_nearest(L, 2)),
    ("conv", "x", lambda: nnlib.conv(L, np.ones((1, 1, 2)))),
    ("conv", "w", lambda: nnlib.conv(A, [[[1.0, 1.0]]])),
    ("conv_transpose", "w", lambda: nnlib.conv_transpose(A, [[[1.0, 1.0]]])),
    ("conv_bias_act", "b", lambda: nnlib.conv_bias_act(A, np.ones((1, 1, 2)), [1.0], fl.relu)),
    ("linear", "x", lambda: nnlib.linear(L, np.ones((2, 4)))),
    ("linear", "bias", lambda: nnlib.linear(np.ones((1, 4)), np.ones((2, 4)), [1.0, 2.0])),
    ("dot_product_attention", "q", lambda: nnlib.dot_product_attention(L[0], A[0], A[0])),
    ("lstm_sequence", "x", lambda: nnlib.lstm_sequence(L, np.zeros((1, 1)), np.zeros((1, 1)),
                                                       np.ones((4, 4)), np.ones((4, 1)))),
    ("gru_sequence", "x", lambda: nnlib.gru_sequence(L, np.zeros((1, 1)), np.ones((3, 4)),
                                                     np.ones((3, 1)))),
]


@pytest.mark.parametrize("fn, name, call", CALLS, ids=[f"{f}-{n}" for f, n, _ in CALLS])
def test_a_list_is_named(fn, name, call):
    with pytest.raises(TypeError, match=f"{fn}: {name} must be an array; got a list"):
        call()


def test_attention_bias_may_be_a_list():
    q = np.zeros((1, 2, 2))
    _, p = nnlib.dot_product_attention(q, q, q, bias=[[0.0, np.log(3.0)], [0.0, 0.0]])
    np.testing.assert_allclose(p[0], [[0.25, 0.75], [0.5, 0.5]])


def test_logsumexp_takes_a_list_as_softmax_does():
    # ('list' object has no attribute 'size')
    np.testing.assert_allclose(nnlib.logsumexp([1.0, 2.0]), np.log(np.e + np.e ** 2))


@pytest.mark.parametrize("call, error, message", [
    (lambda: nnlib.upsample_linear(A, "2"), ValueError,
     r"upsample_linear: scale must be a positive finite number"),
    (lambda: nnlib.glu(np.ones((2, 4)), axis=1.0), TypeError, r"glu: axis must be an int"),
])
def test_an_argument_of_another_type_is_named(call, error, message):
    with pytest.raises(error, match=message):  # (Python's own TypeErrors named neither)
        call()
