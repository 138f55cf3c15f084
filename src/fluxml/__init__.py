"""fluxml: Flux, the elegant Julia machine-learning library, re-imagined in Python.

>>> import numpy as np, fluxml as fl
>>> fl.gradient(lambda x: np.sum(np.tanh(x)), np.zeros(2))
(array([1., 1.]),)
"""

from fluxml import data, init, io, losses, nnlib, optimise, testing, tree
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
from fluxml.data import (
    DataLoader,
    Standardiser,
    datasets,
    normalise,
    onecold,
    onehot,
    onehotbatch,
    shuffleobs,
    splitobs,
)
from fluxml.init import (
    seed,
)
from fluxml.io import (
    load,
    load_checkpoint,
    loadmodel,
    save,
    save_checkpoint,
    state,
)
from fluxml.layers import (
    GRU,
    LSTM,
    RNN,
    Bidirectional,
    Bilinear,
    Chain,
    Dense,
    Embedding,
    EmbeddingBag,
    Flatten,
    GRUCell,
    LayerError,
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
from fluxml.losses import (
    binary_focal_loss,
    binarycrossentropy,
    crossentropy,
    ctc_loss,
    dice_coeff_loss,
    focal_loss,
    hinge_loss,
    huber_loss,
    kldivergence,
    label_smoothing,
    logitbinarycrossentropy,
    logitcrossentropy,
    mae,
    mse,
    msle,
    poisson_loss,
    siamese_contrastive_loss,
    squared_hinge_loss,
    tversky_loss,
)
from fluxml.optimise import (
    AccumGrad,
    AdaBelief,
    AdaDelta,
    AdaGrad,
    Adam,
    AdaMax,
    AdamW,
    AMSGrad,
    ClipGrad,
    ClipNorm,
    CosineAnneal,
    Descent,
    ExpDecay,
    Leaf,
    Lion,
    Momentum,
    NAdam,
    Nesterov,
    OAdam,
    OneCycle,
    OptimiserChain,
    RAdam,
    RMSProp,
    Rprop,
    SignDecay,
    StepDecay,
    WeightDecay,
    adjust,
    freeze,
    setup,
    thaw,
    update,
)
from fluxml.tree import (
    flatten,
    fmap,
    leaves,
    unflatten,
)

__version__ = "0.1.0"

__all__ = [
    "AMSGrad", "AccumGrad", "AdaBelief", "AdaDelta", "AdaGrad", "AdaMax", "Adam", "AdamW",
    "Bidirectional", "Bilinear", "Chain", "ClipGrad", "ClipNorm", "CosineAnneal", "DataLoader",
    "Dense", "Descent", "DifferentiationError", "Embedding", "EmbeddingBag", "ExpDecay",
    "Flatten", "GRU", "GRUCell", "LSTM", "LSTMCell", "LayerError", "Leaf", "Lion", "Maxout",
    "Module", "Momentum", "NAdam", "Nesterov", "NeuralODE", "OAdam", "OneCycle",
    "OptimiserChain", "PairwiseFusion", "Parallel", "RAdam", "RMSProp", "RNN", "RNNCell",
    "Rprop", "Scale", "SignDecay", "SkipConnection", "Standardiser", "StepDecay", "Tracer",
    "WeightDecay", "_", "adjust", "autosize", "binary_focal_loss", "binarycrossentropy",
    "checkpoint", "crossentropy", "ctc_loss", "custom_jvp", "custom_vjp", "data", "datasets",
    "dice_coeff_loss", "f16", "f32", "f64", "flatten", "fmap", "focal_loss", "freeze",
    "gradient", "hessian", "hinge_loss", "huber_loss", "identity", "index_add", "init", "io",
    "jacobian", "jvp", "kldivergence", "label_smoothing", "leaves", "load", "load_checkpoint",
    "loadmodel", "logitbinarycrossentropy", "logitcrossentropy", "logsumexp", "losses", "mae",
    "modules", "mse", "msle", "nnlib", "normalise", "ode", "onecold", "onehot", "onehotbatch",
    "optimise", "outputsize", "poisson_loss", "pullback", "save", "save_checkpoint", "seed",
    "setup", "shuffleobs", "siamese_contrastive_loss", "splitobs", "squared_hinge_loss",
    "state", "stop_gradient", "summary", "testing", "testmode", "thaw", "trainable",
    "trainmode", "tree", "tversky_loss", "unflatten", "update", "vjp", "withgradient",
]


def __getattr__(name):
    """``fl.ode`` and ``fl.NeuralODE`` load on first use: the solvers' tables are not part of
    ``import fluxml``'s time."""
    if name in ("ode", "NeuralODE"):
        import importlib

        ode = importlib.import_module("fluxml.ode")
        globals().update(ode=ode, NeuralODE=ode.NeuralODE)
        return globals()[name]
    raise AttributeError(f"module 'fluxml' has no attribute {name!r}")
