"""fluxml: Flux, the elegant Julia machine-learning library, re-imagined in Python.

>>> import numpy as np, fluxml as fl
>>> fl.gradient(lambda x: np.sum(np.tanh(x)), np.zeros(2))
(array([1., 1.]),)
"""

from fluxml import ode, testing, tree
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
from fluxml.tree import flatten, fmap, leaves, unflatten

__version__ = "0.1.0"

__all__ = [
    "DifferentiationError", "Tracer", "checkpoint", "custom_jvp", "custom_vjp", "flatten",
    "fmap", "gradient", "hessian", "index_add", "jacobian", "jvp", "leaves", "logsumexp",
    "ode", "pullback", "stop_gradient", "testing", "tree", "unflatten", "vjp", "withgradient",
]
