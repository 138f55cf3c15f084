"""Polynomial activations: what a model must use to run on encrypted data.

Homomorphic encryption (CKKS) evaluates additions and multiplications only, so a model meant
for encrypted inference is trained with polynomial activations: ``fl.square`` or a
``PolyAct`` layer whose trainable coefficients start from a least-squares fit of ReLU or GELU.

>>> import numpy as np, fluxml as fl
>>> act = fl.PolyAct(2, fit="relu", span=(-4.0, 4.0))
>>> act
PolyAct(2, fit="relu")  # 3 parameters
>>> act(np.array([-3.0, 0.0, 3.0], np.float32)).round(2)
array([-0.07,  0.38,  2.93], dtype=float32)
"""

from __future__ import annotations

import math

import numpy as np

from fluxml._checks import positive_int
from fluxml.layers.module import LayerError, Module, need_array


def square(x):
    """``x * x``, the cheapest activation under encryption (one multiplication).

    >>> import numpy as np, fluxml as fl
    >>> fl.square(np.array([-2.0, 3.0]))
    array([4., 9.])
    """
    return x * x


def _gelu(x):
    return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


_FITS = {"relu": lambda x: np.maximum(x, 0.0), "gelu": _gelu}


class PolyAct(Module):
    """``PolyAct(degree, fit="relu", span=(-4, 4))``

    The polynomial ``c[0] + c[1] x + ... + c[d] x^d`` applied elementwise, with trainable
    coefficients ``c`` initialised by a least-squares fit of ``fit`` ("relu" or "gelu") on
    ``span``. Any input shape; the output has the input's shape.

    >>> import numpy as np, fluxml as fl
    >>> act = fl.PolyAct(2)  # c fitted to relu on (-4, 4)
    >>> act.coeffs.round(3)
    array([0.376, 0.5  , 0.117], dtype=float32)
    >>> act(np.array([-1.0, 0.0, 2.0], np.float32)).round(2)
    array([-0.01,  0.38,  1.84], dtype=float32)
    """

    def __init__(self, degree: int = 2, fit: str = "relu", span=(-4.0, 4.0), *,
                 dtype=np.float32):
        degree = positive_int("PolyAct", "degree", degree)
        if fit not in _FITS:
            raise ValueError(f"PolyAct: fit must be one of {sorted(_FITS)}; got {fit!r}")
        lo, hi = span
        if not lo < hi:
            raise ValueError(f"PolyAct: span must be (lo, hi) with lo < hi; got {span}")
        grid = np.linspace(lo, hi, 512)
        coeffs = np.polynomial.polynomial.polyfit(grid, _FITS[fit](grid), degree)
        self.coeffs = coeffs.astype(dtype)
        self.fit = fit

    def __call__(self, x):
        c = self.coeffs
        need_array(self, x)
        if x.dtype.kind != "f":
            raise LayerError(f"{self._called()} expects floating-point input; got "
                             f"{getattr(x, 'dtype', type(x).__name__)}")
        y = c[-1] * x  # Horner's rule
        for k in range(len(c) - 2, 0, -1):
            y = (y + c[k]) * x
        return y + c[0]

    @property
    def degree(self) -> int:
        return len(self.coeffs) - 1

    def _line(self) -> str:
        return f'PolyAct({self.degree}, fit="{self.fit}")'
