"""fluxml: Flux, the elegant Julia machine-learning library, re-imagined in Python.

>>> import numpy as np, fluxml as fl
>>> fl.gradient(lambda x: np.sum(np.tanh(x)), np.zeros(2))
(array([1., 1.]),)
"""

import importlib as _importlib

from fluxml import init, testing, tree
from fluxml.ad import (
    DifferentiationError,
    Tracer,
    checkpoint,
    custom_jvp,
    custom_vjp,
    diaghessian,
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
    withjacobian,
)
from fluxml.init import seed
from fluxml.tree import flatten, leaves, unflatten
from fluxml.treemaps import fcollect, fmap, fmap_with_path

# Everything beyond the engine loads on first use (fl.Dense, fl.Adam, fl.ode ...), so that
# `import fluxml` and a first gradient stay fast: name -> the module that defines it.
_LAZY = {
    **dict.fromkeys([
        "Callback", "EarlyStopping", "Evaluate", "LRSchedule", "SaveCheckpoint",
    ], "fluxml.callbacks"),
    **dict.fromkeys(["backend", "cpu", "gpu", "xla"], "fluxml.backend"),
    **dict.fromkeys(["compile", "CompileError", "compiler"], "fluxml.compiler"),
    **dict.fromkeys(["cond", "scan", "while_loop"], "fluxml.compiler.control"),
    **dict.fromkeys(["crypto"], "fluxml.crypto"),
    **dict.fromkeys(["distributed"], "fluxml.distributed"),
    **dict.fromkeys([
        "batch_sequence", "data", "DataLoader", "datasets", "kfolds", "normalise", "onecold",
        "onehot", "onehotbatch", "oversample", "shuffleobs", "slidingwindow", "splitobs",
        "Standardiser", "undersample",
    ], "fluxml.data"),
    **dict.fromkeys(["History"], "fluxml.history"),
    **dict.fromkeys([
        "io", "load", "load_checkpoint", "loadmodel", "save", "save_checkpoint", "state",
    ], "fluxml.io"),
    **dict.fromkeys([
        "_", "AdaptiveMaxPool", "AdaptiveMeanPool", "AlphaDropout", "autosize",
        "BatchNorm", "Bidirectional", "Bilinear", "Chain", "Conv", "ConvTranspose",
        "CrossCor", "Dense", "DepthwiseConv", "Dropout", "Embedding", "EmbeddingBag",
        "f16", "f32", "f64", "Flatten", "GlobalMaxPool", "GlobalMeanPool", "GroupNorm",
        "GRU", "GRUCell", "identity", "InstanceNorm", "LayerError", "LayerNorm", "LSTM",
        "LSTMCell", "Maxout", "MaxPool", "MeanPool", "Module", "modules",
        "MultiHeadAttention", "outputsize", "PairwiseFusion", "Parallel", "PixelShuffle",
        "RNN", "RNNCell", "Scale", "SkipConnection", "summary", "testmode", "trainable",
        "trainmode", "TransformerEncoderBlock", "Upsample",
        "GRUv3", "GRUv3Cell", "Recurrence", "remove_weight_norms", "WeightNorm", "activations",
    ], "fluxml.layers"),
    **dict.fromkeys(["PolyAct", "square"], "fluxml.layers.polynomial"),
    **dict.fromkeys([
        "binary_focal_loss", "binarycrossentropy", "crossentropy", "ctc_loss",
        "dice_coeff_loss", "focal_loss", "hinge_loss", "huber_loss", "kldivergence",
        "label_smoothing", "logitbinarycrossentropy", "logitcrossentropy", "losses", "mae",
        "mse", "msle", "poisson_loss", "siamese_contrastive_loss", "squared_hinge_loss",
        "tversky_loss",
    ], "fluxml.losses"),
    **dict.fromkeys([
        "alpha_dropout", "batchnorm", "celu", "dot_product_attention", "dropout", "elu",
        "embedding", "gelu", "gelu_erf", "gelu_tanh", "groupnorm", "hardshrink",
        "hardsigmoid", "hardswish", "hardtanh", "instancenorm", "layernorm", "leakyrelu",
        "lisht", "logsigmoid", "logsoftmax", "make_causal_mask", "mish", "nnlib", "relu",
        "relu6", "rrelu", "selu", "sigmoid", "silu", "softmax", "softplus", "softshrink",
        "softsign", "swish", "tanhshrink", "trelu",
        "gelu_sigmoid", "glu", "logcosh",
    ], "fluxml.nnlib"),
    **dict.fromkeys(["NeuralODE", "ode"], "fluxml.ode"),
    **dict.fromkeys([
        "AccumGrad", "AdaBelief", "AdaDelta", "AdaGrad", "Adam", "AdaMax", "AdamW",
        "adjust", "AMSGrad", "ClipGrad", "ClipNorm", "CosineAnneal", "Descent", "ExpDecay",
        "freeze", "Leaf", "Lion", "Momentum", "NAdam", "Nesterov", "OAdam", "OneCycle",
        "optimise", "OptimiserChain", "RAdam", "RMSProp", "Rprop", "setup", "SignDecay",
        "StepDecay", "thaw", "update", "WeightDecay",
        "destructure", "trainables", "MixedPrecision",
    ], "fluxml.optimise"),
    **dict.fromkeys(["train", "TrainingError"], "fluxml.training"),
    **dict.fromkeys(["trainstep", "trainstep_withgradient"], "fluxml.train_step"),
    "scipy": "fluxml.scipy",
}
_SUBPACKAGES = {
    "backend", "compiler", "crypto", "data", "distributed", "io", "losses", "nnlib", "ode",
    "optimise", "scipy",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fluxml' has no attribute {name!r}")
    loaded = _importlib.import_module(module)
    value = loaded if name in _SUBPACKAGES else getattr(loaded, name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__version__ = "0.1.0"

__all__ = [
    "distributed",
    "destructure", "trainables",
    "GRUv3", "GRUv3Cell", "Recurrence", "WeightNorm", "remove_weight_norms",
    "gelu_sigmoid", "glu", "logcosh",
    "activations", "diaghessian", "withjacobian", "MixedPrecision",
    "AMSGrad", "AccumGrad", "AdaBelief", "AdaDelta", "AdaGrad", "AdaMax", "Adam", "AdamW",
    "AdaptiveMaxPool", "AdaptiveMeanPool", "AlphaDropout", "BatchNorm", "Bidirectional",
    "Bilinear", "Callback", "Chain", "ClipGrad", "ClipNorm", "Conv", "ConvTranspose",
    "CosineAnneal", "CrossCor", "DataLoader", "Dense", "DepthwiseConv", "Descent",
    "DifferentiationError", "Dropout", "EarlyStopping", "Embedding", "EmbeddingBag", "Evaluate",
    "ExpDecay", "Flatten", "GRU", "GRUCell", "GlobalMaxPool", "GlobalMeanPool", "GroupNorm",
    "History", "InstanceNorm", "LRSchedule", "LSTM", "LSTMCell", "LayerError", "LayerNorm", "Leaf",
    "Lion", "MaxPool", "Maxout", "MeanPool", "Module", "Momentum", "MultiHeadAttention", "NAdam",
    "Nesterov", "NeuralODE", "OAdam", "OneCycle", "OptimiserChain", "PairwiseFusion", "Parallel",
    "PixelShuffle", "PolyAct", "RAdam", "RMSProp", "RNN", "RNNCell", "Rprop", "SaveCheckpoint",
    "Scale", "SignDecay", "SkipConnection", "Standardiser", "StepDecay", "Tracer", "TrainingError",
    "TransformerEncoderBlock", "Upsample", "WeightDecay", "_", "adjust", "alpha_dropout",
    "autosize", "backend", "batch_sequence", "batchnorm", "binary_focal_loss",
    "binarycrossentropy", "celu",
    "checkpoint", "compile", "CompileError", "compiler", "cond", "cpu", "crossentropy", "crypto",
    "ctc_loss", "custom_jvp", "custom_vjp", "data",
    "datasets",
    "dice_coeff_loss", "dot_product_attention", "dropout", "elu", "embedding", "f16", "f32", "f64",
    "fcollect", "flatten", "fmap", "fmap_with_path", "focal_loss", "freeze", "gelu", "gelu_erf",
    "gelu_tanh", "gpu", "gradient",
    "groupnorm", "hardshrink", "hardsigmoid", "hardswish", "hardtanh", "hessian", "hinge_loss",
    "huber_loss", "identity", "index_add", "init", "instancenorm", "io", "jacobian", "jvp",
    "kfolds", "kldivergence", "label_smoothing", "layernorm", "leakyrelu", "leaves", "lisht",
    "load",
    "load_checkpoint", "loadmodel", "logitbinarycrossentropy", "logitcrossentropy", "logsigmoid",
    "logsoftmax", "logsumexp", "losses", "mae", "make_causal_mask", "mish", "modules", "mse",
    "msle", "nnlib", "normalise", "ode", "onecold", "onehot", "onehotbatch", "optimise",
    "oversample",
    "outputsize", "poisson_loss", "pullback", "relu", "relu6", "rrelu", "save", "save_checkpoint",
    "scan", "scipy", "seed", "selu", "setup", "shuffleobs", "siamese_contrastive_loss",
    "sigmoid", "silu", "slidingwindow",
    "softmax", "softplus", "softshrink", "softsign", "splitobs", "square", "squared_hinge_loss",
    "state", "stop_gradient", "summary", "swish", "tanhshrink", "testing", "testmode", "thaw",
    "train", "trainable", "trainmode", "trainstep", "trainstep_withgradient", "tree", "trelu",
    "tversky_loss", "undersample", "unflatten", "update",
    "vjp", "while_loop", "withgradient", "xla",
]
