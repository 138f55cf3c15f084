"""Differentiable versions of SciPy functions that convert their inputs with ``np.asarray``
(and so cannot be intercepted the way NumPy functions are), as ``jax.scipy`` offers them:

>>> import numpy as np, fluxml as fl
>>> import fluxml.scipy as fsp
>>> fl.gradient(lambda a: np.sum(fsp.linalg.expm(a)), np.zeros((2, 2)))[0]
array([[1., 1.],
       [1., 1.]])

Each is a primitive (or a composition of primitives) with forward and reverse rules of any
order; the values come from SciPy, an optional extra imported on first use only:
``import fluxml`` or ``import fluxml.scipy`` never imports it. The ``scipy.special`` ufuncs
(``erf``, ``gammaln`` ...) need no replacement: called on a traced array they are recorded
directly (``ad/rules/special.py``).
"""

from fluxml.scipy import linalg, signal, special

__all__ = ["linalg", "signal", "special"]
