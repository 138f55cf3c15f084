"""NN primitives with derivative rules: activations, softmax, normalisation, dropout,
embedding, attention and recurrent cells.

>>> import numpy as np, fluxml as fl
>>> fl.nnlib.relu(np.array([-1.0, 1.0]))
array([0., 1.])
"""

from fluxml.nnlib.activations import (
    celu,
    elu,
    erf,
    gelu,
    gelu_erf,
    gelu_tanh,
    hardshrink,
    hardsigmoid,
    hardswish,
    hardtanh,
    leakyrelu,
    lisht,
    logsigmoid,
    mish,
    relu,
    relu6,
    rrelu,
    selu,
    sigmoid,
    silu,
    softplus,
    softshrink,
    softsign,
    swish,
    tanhshrink,
    trelu,
)
from fluxml.nnlib.attention import dot_product_attention, make_causal_mask
from fluxml.nnlib.dropout import alpha_dropout, dropout
from fluxml.nnlib.embedding import embedding
from fluxml.nnlib.normalise import batchnorm, groupnorm, instancenorm, layernorm, normalise
from fluxml.nnlib.recurrent import gru_cell, gru_step, lstm_cell, lstm_step
from fluxml.nnlib.sequence import gru_sequence, lstm_sequence
from fluxml.nnlib.softmax import logsoftmax, logsumexp, softmax

__all__ = [
    "alpha_dropout", "batchnorm", "celu", "dot_product_attention", "dropout", "elu", "embedding",
    "erf", "gelu", "gelu_erf", "gelu_tanh", "groupnorm", "gru_cell", "gru_sequence", "gru_step",
    "hardshrink", "hardsigmoid", "hardswish", "hardtanh", "instancenorm", "layernorm", "leakyrelu",
    "lisht", "logsigmoid", "logsoftmax", "logsumexp", "lstm_cell", "lstm_sequence", "lstm_step",
    "make_causal_mask", "mish", "normalise", "relu", "relu6", "rrelu", "selu", "sigmoid", "silu",
    "softmax", "softplus", "softshrink", "softsign", "swish", "tanhshrink", "trelu",
]
