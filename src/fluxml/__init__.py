"""fluxml: Flux, the elegant Julia machine-learning library, re-imagined in Python.

>>> import numpy as np, fluxml as fl
>>> fl.gradient(lambda x: np.sum(np.tanh(x)), np.zeros(2))
(array([1., 1.]),)
"""

from fluxml import init, testing, tree
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
from fluxml.init import seed
from fluxml.layers import (
    GRU,
    LSTM,
    RNN,
    AlphaDropout,
    BatchNorm,
    Bidirectional,
    Bilinear,
    Chain,
    Dense,
    Dropout,
    Embedding,
    EmbeddingBag,
    Flatten,
    GroupNorm,
    GRUCell,
    InstanceNorm,
    LayerError,
    LayerNorm,
    LSTMCell,
    Maxout,
    Module,
    PairwiseFusion,
    Parallel,
    RNNCell,
    Scale,
    SkipConnection,
    _,
    autosize,
    f16,
    f32,
    f64,
    identity,
    modules,
    outputsize,
    summary,
    testmode,
    trainable,
    trainmode,
)
from fluxml.tree import flatten, fmap, leaves, unflatten

__version__ = "0.1.0"

__all__ = [
    "AlphaDropout", "BatchNorm", "Dropout", "GroupNorm", "InstanceNorm", "LayerNorm",
    "Bidirectional", "Bilinear", "Chain", "GRU", "GRUCell", "LSTM", "LSTMCell",
    "RNN", "RNNCell", "Dense", "DifferentiationError", "Embedding", "EmbeddingBag",
    "Flatten", "LayerError", "Maxout", "Module", "PairwiseFusion", "Parallel", "Scale",
    "SkipConnection", "Tracer", "_", "autosize", "checkpoint", "custom_jvp", "custom_vjp",
    "f16", "f32", "f64", "flatten", "fmap", "gradient", "hessian", "identity", "index_add",
    "init", "jacobian", "jvp", "leaves", "logsumexp", "modules", "outputsize", "pullback",
    "seed", "stop_gradient", "summary", "testing", "testmode", "trainable", "trainmode", "tree",
    "unflatten", "vjp", "withgradient",
]
