"""Derivative rules, one family a file. Importing this package registers them all."""

from fluxml.ad.core import LAZY_RULES
from fluxml.ad.rules import (  # noqa: F401
    complex_values,
    decompositions,
    eig,
    elementwise,
    elementwise_more,
    fft,
    indexing,
    joins,
    linalg,
    numerics,
    reductions,
    selection,
    shape,
    solvers,
    special,
    writes,
)

LAZY_RULES.append(special.load)  # scipy.special rules, registered on first use
