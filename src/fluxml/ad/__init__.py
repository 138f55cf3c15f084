"""The differentiation engine: reverse and forward mode over plain Python and NumPy."""

from fluxml.ad import (
    methods,  # noqa: F401  (operators and array methods on Tracer)
    rules,  # noqa: F401  (registers every derivative rule)
)
from fluxml.ad.api import (
    gradient,
    hessian,
    jacobian,
    jvp,
    pullback,
    stop_gradient,
    vjp,
    withgradient,
)
from fluxml.ad.core import DifferentiationError, Tracer
from fluxml.ad.custom import checkpoint, custom_jvp, custom_vjp
from fluxml.ad.rules.indexing import index_add
from fluxml.ad.rules.reductions import logsumexp

__all__ = [
    "DifferentiationError", "Tracer", "checkpoint", "custom_jvp", "custom_vjp", "gradient",
    "hessian", "index_add", "jacobian", "jvp", "logsumexp", "pullback", "stop_gradient", "vjp",
    "withgradient",
]
