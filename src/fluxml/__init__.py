"""fluxml: Flux, the elegant Julia machine-learning library, re-imagined in Python.

>>> import numpy as np, fluxml as fl
>>> fl.gradient(lambda x: np.sum(np.tanh(x)), np.zeros(2))
(array([1., 1.]),)
"""

from fluxml import nnlib, testing, tree
from fluxml.ad import (
    DifferentiationError,
    Tracer,
    checkpoint,
    custom_jvp,
    custom_vjp,
    gradient,
    hessian,
    index_add,
    jacobian,
    jvp,
    logsumexp,
    pullback,
    stop_gradient,
    vjp,
    withgradient,
)
from fluxml.nnlib import (
    alpha_dropout,
    batchnorm,
    celu,
    dot_product_attention,
    dropout,
    elu,
    embedding,
    gelu,
    gelu_erf,
    gelu_tanh,
    groupnorm,
    hardshrink,
    hardsigmoid,
    hardswish,
    hardtanh,
    instancenorm,
    layernorm,
    leakyrelu,
    lisht,
    logsigmoid,
    logsoftmax,
    make_causal_mask,
    mish,
    relu,
    relu6,
    rrelu,
    selu,
    sigmoid,
    silu,
    softmax,
    softplus,
    softshrink,
    softsign,
    swish,
    tanhshrink,
    trelu,
)
from fluxml.tree import flatten, fmap, leaves, unflatten

__version__ = "0.1.0"

__all__ = [
    "DifferentiationError", "Tracer", "alpha_dropout", "batchnorm", "celu", "checkpoint",
    "custom_jvp", "custom_vjp", "dot_product_attention", "dropout", "elu", "embedding", "flatten",
    "fmap", "gelu", "gelu_erf", "gelu_tanh", "gradient", "groupnorm", "hardshrink", "hardsigmoid",
    "hardswish", "hardtanh", "hessian", "index_add", "instancenorm", "jacobian", "jvp",
    "layernorm", "leakyrelu", "leaves", "lisht", "logsigmoid", "logsoftmax", "logsumexp",
    "make_causal_mask", "mish", "nnlib", "pullback", "relu", "relu6", "rrelu", "selu", "sigmoid",
    "silu", "softmax", "softplus", "softshrink", "softsign", "stop_gradient", "swish",
    "tanhshrink", "testing", "tree", "trelu", "unflatten", "vjp", "withgradient",
]
