"""The differentiation engine: reverse and forward mode over plain Python and NumPy.

Layers, each importing only those below it (``tests/ad/test_layers.py`` checks): ``errors``
and ``weak``; ``core`` (primitives, tracers, the Trace base class, the rule tables);
``arrays`` (the library of a rule's constants); ``define`` and ``fitting``; ``sweep``; the
rule families, with ``mutation`` (writes and views) above ``rules.indexing``; the traces
``reverse`` and ``forward``; ``dispatch`` and ``methods`` (how NumPy and Python reach the
rules); ``api``, ``pushforward``, ``matrices`` and ``custom`` (the transforms users call).
"""

from fluxml.ad import (
    methods,  # noqa: F401  (operators and array methods on Tracer)
)
from fluxml.ad.api import (
    gradient,
    pullback,
    stop_gradient,
    vjp,
    withgradient,
)
from fluxml.ad.checkpoint import checkpoint
from fluxml.ad.core import DifferentiationError, Tracer
from fluxml.ad.custom import custom_jvp, custom_vjp
from fluxml.ad.matrices import diaghessian, hessian, jacobian, withjacobian
from fluxml.ad.pushforward import jvp
from fluxml.ad.rules import (  # noqa: F401  (each family registers its derivative rules)
    complex_values,
    creation,
    decompositions,
    eig,
    elementwise,
    elementwise_more,
    folds,
    joins,
    linalg,
    norms,
    numerics,
    orders,
    reductions,
    selection,
    shape,
    solvers,
    special,
    writes,
)
from fluxml.ad.rules.indexing import index_add
from fluxml.ad.rules.reductions import logsumexp

__all__ = [
    "DifferentiationError", "Tracer", "checkpoint", "custom_jvp", "custom_vjp", "gradient",
    "diaghessian", "hessian", "index_add", "jacobian", "jvp", "logsumexp", "pullback",
    "stop_gradient", "vjp", "withgradient", "withjacobian",
]
