"""fluxml: Flux, the elegant Julia machine-learning library, re-imagined in Python.

>>> import numpy as np, fluxml as fl
>>> fl.gradient(lambda x: np.sum(np.tanh(x)), np.zeros(2))
(array([1., 1.]),)
"""

from fluxml import data, init, io, testing, tree
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
from fluxml.callbacks import Callback, EarlyStopping, Evaluate, LRSchedule, SaveCheckpoint
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
from fluxml.history import History
from fluxml.init import seed
from fluxml.io import load, load_checkpoint, loadmodel, save, save_checkpoint, state
from fluxml.layers import (
    Chain,
    Dense,
    LayerError,
    Module,
    f16,
    f32,
    f64,
    identity,
    modules,
    testmode,
    trainable,
    trainmode,
)
from fluxml.train import TrainingError, train
from fluxml.tree import flatten, fmap, leaves, unflatten

__version__ = "0.1.0"

__all__ = [
    "Callback", "Chain", "DataLoader", "Dense", "DifferentiationError", "EarlyStopping",
    "Evaluate", "History", "LRSchedule", "LayerError", "Module", "SaveCheckpoint", "Standardiser",
    "Tracer", "TrainingError", "checkpoint", "custom_jvp", "custom_vjp", "data", "datasets", "f16",
    "f32", "f64", "flatten", "fmap", "gradient", "hessian", "identity", "index_add", "init", "io",
    "jacobian", "jvp", "leaves", "load", "load_checkpoint", "loadmodel", "logsumexp", "modules",
    "normalise", "onecold", "onehot", "onehotbatch", "pullback", "save", "save_checkpoint", "seed",
    "shuffleobs", "splitobs", "state", "stop_gradient", "testing", "testmode", "train",
    "trainable", "trainmode", "tree", "unflatten", "vjp", "withgradient",
]
