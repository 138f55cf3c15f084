"""Dropout and alpha dropout, as functions (the layers decide when they are active).

The mask is drawn with a ``numpy.random.Generator`` (``rng=``, else this module's default)
and scaled as PyTorch scales it, so a kept element of ``dropout`` is ``x / (1 - p)``.

>>> import numpy as np, fluxml as fl
>>> y = fl.dropout(np.ones(1000), 0.5, rng=np.random.default_rng(0))
>>> sorted(set(y.tolist()))
[0.0, 2.0]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from fluxml._checks import flag, generator, is_int, real_in
from fluxml._dtypes import working_float
from fluxml.ad.core import draw as draw_from
from fluxml.ad.core import raw
from fluxml.nnlib import windows as win

# Alpha dropout keeps SELU's fixed point: dropped units are set to SELU's negative saturation
# -scale * alpha, then an affine map restores mean 0 and variance 1 (Klambauer et al., 2017).
SELU_SATURATION = 1.7580993408473766


def default_rng() -> np.random.Generator:
    """The generator used when a function is given no ``rng``: fluxml's default, which
    ``fl.seed`` reseeds (as it does for initialisers)."""
    from fluxml.init import default_rng as fluxml_default

    return fluxml_default()


def _check_p(p, name):
    # (a comparison alone took p=True for 1, dropping everything silently, and raised
    # Python's "'<=' not supported" for a string)
    real_in(name, "the drop probability p", p, 0, 1)


def _keep_mask(x, p, dims, rng, name):
    """A boolean mask of kept entries, varying along ``dims`` (all axes when None) and
    broadcast along the others, and the float dtype to compute in."""
    value = raw(x)
    shape = np.shape(value)
    # the mask in x's real precision (complex64 stays complex64); others: float64
    dtype = working_float(getattr(value, "dtype", np.dtype(float)))
    if dims is not None:
        dims = (dims,) if is_int(dims) or not np.iterable(dims) else tuple(dims)
        try:
            axes = {d % len(shape) if is_int(d) and -len(shape) <= d < len(shape) else None
                    for d in dims}
        except TypeError:
            axes = {None}
        if None in axes:
            raise ValueError(f"{name}: dims must be axes of the input (ndim {len(shape)}); "
                             f"got {dims}")
        shape = tuple(n if i in axes else 1 for i, n in enumerate(shape))
    draw = dtype if dtype in (np.float32, np.float64) else np.float64
    rng = default_rng() if rng is None else generator(name, rng)  # (rng=0 was the default)
    keep = draw_from(rng, "random", shape, dtype=draw) >= p
    xp = win.array_module(value)  # (the generator draws on the host: a GPU x's mask goes
    return (keep if xp is np else xp.asarray(keep)), dtype  # to x's device)


def dropout(x, p: float, *, dims: int | Sequence[int] | None = None, active: bool = True,
            rng: np.random.Generator | None = None):
    """Zero each entry of ``x`` with probability ``p`` and scale the others by ``1 / (1 - p)``
    (Flux's ``dropout``, PyTorch's ``F.dropout``). ``dims``: the axes along which the mask
    varies (all by default; ``dims=(0, 1)`` drops whole channels of an ``(N, C, H, W)``
    input, as ``Dropout2d``). Inactive (``active=False``) or ``p == 0``: ``x`` unchanged.

    >>> import numpy as np, fluxml as fl
    >>> fl.dropout(np.ones(3), 0.5, active=False)
    array([1., 1., 1.])
    """
    _check_p(p, "dropout")
    if not flag("dropout", "active", active) or p == 0:
        return x
    keep, dtype = _keep_mask(x, p, dims, rng, "dropout")
    if p == 1:
        return x * np.zeros(keep.shape, dtype)
    mask = keep.astype(dtype)
    mask *= 1 / (1 - p)
    return x * mask


def alpha_dropout(x, p: float, *, active: bool = True, rng: np.random.Generator | None = None):
    """Dropout for self-normalising (SELU) networks: dropped entries take SELU's negative
    saturation value and an affine map keeps mean 0 and variance 1, as PyTorch's
    ``F.alpha_dropout``: ``y = a * (keep ? x : -1.7581) + b`` with
    ``a = ((1 - p) (1 + 1.7581^2 p))^(-1/2)`` and ``b = 1.7581 a p``.

    >>> import numpy as np, fluxml as fl
    >>> x = np.random.default_rng(0).standard_normal(100000)
    >>> y = fl.alpha_dropout(x, 0.2, rng=np.random.default_rng(1))
    >>> abs(float(y.mean())) < 0.02, abs(float(y.std()) - 1) < 0.02
    (True, True)
    """
    _check_p(p, "alpha_dropout")
    if not flag("alpha_dropout", "active", active) or p == 0:
        return x
    keep, dtype = _keep_mask(x, p, None, rng, "alpha_dropout")
    if p == 1:
        return x * np.zeros(keep.shape, dtype)
    alpha = SELU_SATURATION
    a = 1 / math.sqrt((alpha * alpha * p + 1) * (1 - p))
    scale = keep.astype(dtype)
    shift = (scale - (1 - p)) * (alpha * a)  # alpha a (keep - 1 + p)
    scale *= a
    return x * scale + shift
