"""fluxml: Flux, the elegant Julia machine-learning library, re-imagined in Python.

>>> import numpy as np, fluxml as fl
>>> fl.gradient(lambda x: np.sum(np.tanh(x)), np.zeros(2))
(array([1., 1.]),)
"""

from fluxml import optimise, testing, tree
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
from fluxml.tree import flatten, fmap, leaves, unflatten

__version__ = "0.1.0"

__all__ = [
    "AMSGrad", "AccumGrad", "AdaBelief", "AdaDelta", "AdaGrad", "AdaMax", "Adam", "AdamW",
    "ClipGrad", "ClipNorm", "CosineAnneal", "Descent", "DifferentiationError", "ExpDecay", "Leaf",
    "Lion", "Momentum", "NAdam", "Nesterov", "OAdam", "OneCycle", "OptimiserChain", "RAdam",
    "RMSProp", "Rprop", "SignDecay", "StepDecay", "Tracer", "WeightDecay", "adjust", "checkpoint",
    "custom_jvp", "custom_vjp", "flatten", "fmap", "freeze", "gradient", "hessian", "index_add",
    "jacobian", "jvp", "leaves", "logsumexp", "optimise", "pullback", "setup", "stop_gradient",
    "testing", "thaw", "tree", "unflatten", "update", "vjp", "withgradient",
]
