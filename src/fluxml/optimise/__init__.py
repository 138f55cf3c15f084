"""Optimisers in Optimisers.jl's design: rules are small dataclasses with ``init`` and
``apply``; ``setup`` mirrors the model as a tree of ``Leaf``s; ``update`` trains in place.

>>> import numpy as np, fluxml as fl
>>> model = {"w": np.array([3.0])}
>>> state = fl.setup(fl.Adam(0.1), model)
>>> for _ in range(100):
...     g = fl.gradient(lambda m: np.sum(m["w"] ** 2), model)[0]
...     state, model = fl.update(state, model, g)
>>> bool(abs(model["w"][0]) < 0.1)
True
"""

from fluxml.optimise.adam import AdaBelief, Adam, AdaMax, AdamW, AMSGrad, NAdam, OAdam, RAdam
from fluxml.optimise.base import Rule
from fluxml.optimise.composite import (
    AccumGrad,
    ClipGrad,
    ClipNorm,
    MixedPrecision,
    OptimiserChain,
    SignDecay,
    WeightDecay,
)
from fluxml.optimise.destructure import Restructure, destructure, trainables
from fluxml.optimise.interface import Leaf, Node, adjust, freeze, setup, thaw, update
from fluxml.optimise.rules import (
    AdaDelta,
    AdaGrad,
    Descent,
    Lion,
    Momentum,
    Nesterov,
    RMSProp,
    Rprop,
)
from fluxml.optimise.schedules import CosineAnneal, ExpDecay, OneCycle, StepDecay

__all__ = [
    "AMSGrad", "AccumGrad", "AdaBelief", "AdaDelta", "AdaGrad", "AdaMax", "Adam", "AdamW",
    "ClipGrad", "ClipNorm", "CosineAnneal", "Descent", "ExpDecay", "Leaf", "Lion", "MixedPrecision",
    "Momentum", "NAdam", "Nesterov", "Node", "OAdam", "OneCycle", "OptimiserChain", "RAdam",
    "RMSProp", "Restructure", "Rprop", "Rule", "SignDecay", "StepDecay", "WeightDecay", "adjust",
    "destructure", "freeze", "setup", "thaw", "trainables", "update",
]
