"""Weight initialisers, seeded from one default generator.

Every initialiser is called as ``init(shape, rng)`` and returns a float32 array (``dtype=``
chooses another). Weights are shaped as PyTorch's: ``(out, in)`` for Dense and
``(out, in / groups, *kernel)`` for convolutions, so ``fan_in`` is ``in * prod(kernel)`` and
``fan_out`` is ``out * prod(kernel)``. Hyperparameters go through ``functools.partial``:
``Dense(3, 4, init=partial(fl.init.kaiming_normal, gain=1.0))``.

>>> import fluxml as fl
>>> fl.seed(0)
>>> w = fl.init.glorot_uniform((3, 4))
>>> w.shape, w.dtype
((3, 4), dtype('float32'))
>>> bool(abs(w).max() <= (6 / (3 + 4)) ** 0.5)
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from fluxml._checks import is_int, shown

_rng = np.random.default_rng()

Shape = Sequence[int]


def seed(n: int) -> None:
    """Seed the generator that layers and initialisers use when not given ``rng=``.

    >>> import numpy as np, fluxml as fl
    >>> fl.seed(0); a = fl.Dense(2, 3)
    >>> fl.seed(0); b = fl.Dense(2, 3)
    >>> np.array_equal(a.weight, b.weight)
    True
    """
    global _rng
    # (NumPy took True for the seed 1, and raised its own errors for a float or a string)
    entries = list(n) if isinstance(n, (Sequence, np.ndarray)) and not isinstance(n, str) \
        else [n]
    if n is not None and not (entries and all(is_int(k) and k >= 0 for k in entries)):
        raise ValueError(f"seed: n must be a non-negative int (or a sequence of them, or None "
                         f"for a seed from the system); got {shown(n)}")
    _rng = np.random.default_rng(n)


def default_rng() -> np.random.Generator:
    """The generator used where no ``rng=`` is passed (reseeded by :func:`seed`)."""
    return _rng


def _gen(rng) -> np.random.Generator:
    if rng is None:
        return _rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        raise TypeError(f"rng must be a numpy.random.Generator; got the int {rng}. An "
                        f"initialiser takes its shape as one tuple, glorot_uniform((3, {rng})) "
                        f"(Flux's glorot_uniform(3, {rng})); a seed goes in as "
                        f"rng=np.random.default_rng({rng})")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator; got {type(rng).__name__}")
    return rng


def _shape(shape) -> tuple[int, ...]:
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    if not all(is_int(d) and d >= 0 for d in shape):
        raise ValueError(f"an initialiser's shape must be non-negative ints; got {shape}")
    return tuple(int(d) for d in shape)


def fans(shape: Shape) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight shaped ``(out, in, *kernel)``."""
    shape = _shape(shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def zeros(shape: Shape, rng=None, *, dtype=np.float32) -> np.ndarray:
    """All zeros (the default bias)."""
    return np.zeros(_shape(shape), dtype)


def ones(shape: Shape, rng=None, *, dtype=np.float32) -> np.ndarray:
    """All ones (the default scale of normalisation layers)."""
    return np.ones(_shape(shape), dtype)


def normal(shape: Shape, rng=None, *, std: float = 1.0, dtype=np.float32) -> np.ndarray:
    """Normal entries of mean 0 and standard deviation ``std`` (Flux's ``randn32``; the
    default initialiser of ``Embedding``, as in Flux and PyTorch).

    >>> import numpy as np, fluxml as fl
    >>> w = fl.init.normal((100, 100), np.random.default_rng(0), std=0.1)
    >>> w.dtype, round(float(w.std()), 2)
    (dtype('float32'), 0.1)
    """
    return (std * _gen(rng).standard_normal(_shape(shape))).astype(dtype)


def glorot_uniform(shape: Shape, rng=None, *, gain: float = 1.0, dtype=np.float32):
    """Uniform on ``±gain·sqrt(6 / (fan_in + fan_out))`` (Xavier; Flux's default)."""
    fan_in, fan_out = fans(shape)
    limit = gain * math.sqrt(6.0 / max(fan_in + fan_out, 1))
    return _gen(rng).uniform(-limit, limit, _shape(shape)).astype(dtype)


def glorot_normal(shape: Shape, rng=None, *, gain: float = 1.0, dtype=np.float32):
    """Normal with standard deviation ``gain·sqrt(2 / (fan_in + fan_out))``."""
    fan_in, fan_out = fans(shape)
    std = gain * math.sqrt(2.0 / max(fan_in + fan_out, 1))
    return (_gen(rng).standard_normal(_shape(shape)) * std).astype(dtype)


def kaiming_uniform(shape: Shape, rng=None, *, gain: float = math.sqrt(2), dtype=np.float32):
    """Uniform on ``±gain·sqrt(3 / fan_in)`` (He; gain sqrt(2) suits relu)."""
    limit = gain * math.sqrt(3.0 / max(fans(shape)[0], 1))
    return _gen(rng).uniform(-limit, limit, _shape(shape)).astype(dtype)


def kaiming_normal(shape: Shape, rng=None, *, gain: float = math.sqrt(2), dtype=np.float32):
    """Normal with standard deviation ``gain / sqrt(fan_in)``."""
    std = gain / math.sqrt(max(fans(shape)[0], 1))
    return (_gen(rng).standard_normal(_shape(shape)) * std).astype(dtype)


def truncated_normal(shape: Shape, rng=None, *, mean: float = 0.0, std: float = 1.0,
                     lo: float = -2.0, hi: float = 2.0, dtype=np.float32):
    """Normal(mean, std) restricted to ``[lo, hi]`` (redrawn until inside)."""
    if not lo < hi:
        raise ValueError(f"truncated_normal needs lo < hi; got lo={lo}, hi={hi}")
    gen, shape = _gen(rng), _shape(shape)
    out = gen.normal(mean, std, shape)
    bad = (out < lo) | (out > hi)
    for _ in range(1000):
        if not bad.any():
            break
        out[bad] = gen.normal(mean, std, int(bad.sum()))
        bad = (out < lo) | (out > hi)
    else:
        raise ValueError(f"truncated_normal: [{lo}, {hi}] holds almost no mass of "
                         f"Normal({mean}, {std})")
    return out.astype(dtype)


def lecun_normal(shape: Shape, rng=None, *, gain: float = 1.0, dtype=np.float32):
    """Flux's ``lecun_normal``: :func:`truncated_normal` with mean 0 and standard deviation
    ``gain / sqrt(fan_in)``, cut (as Flux cuts it) at ``±2`` (absolute bounds, far out for
    any but the smallest fans). Suits ``selu`` (LeCun et al., Efficient backprop).

    >>> import numpy as np, fluxml as fl
    >>> w = fl.init.lecun_normal((1000, 10), np.random.default_rng(0))
    >>> round(float(w.std()), 2)
    0.32
    """
    std = gain / math.sqrt(max(fans(shape)[0], 1))
    return truncated_normal(shape, rng, std=std, dtype=dtype)


def orthogonal(shape: Shape, rng=None, *, gain: float = 1.0, dtype=np.float32):
    """A (semi-)orthogonal matrix, trailing dimensions flattened (Saxe et al.)."""
    shape = _shape(shape)
    if len(shape) < 2:
        raise ValueError(f"orthogonal needs at least 2 dimensions; got shape {shape}")
    rows, cols = shape[0], math.prod(shape[1:])
    a = _gen(rng).standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q = q * np.sign(np.diag(r))  # uniform over the orthogonal group, not biased by QR's signs
    q = q if rows >= cols else q.T
    return (gain * q).reshape(shape).astype(dtype)


def sparse_init(shape: Shape, rng=None, *, sparsity: float, std: float = 0.01,
                dtype=np.float32):
    """Normal(0, std) with a fraction ``sparsity`` of each column set to zero (2-d only)."""
    shape = _shape(shape)
    if len(shape) != 2:
        raise ValueError(f"sparse_init needs a 2-d shape; got {shape}")
    if not 0 <= sparsity <= 1:
        raise ValueError(f"sparse_init: sparsity must be in [0, 1]; got {sparsity}")
    gen = _gen(rng)
    rows, cols = shape
    out = gen.normal(0.0, std, shape)
    nzero = math.ceil(sparsity * rows)
    for j in range(cols):
        out[gen.permutation(rows)[:nzero], j] = 0.0
    return out.astype(dtype)


def identity_init(shape: Shape, rng=None, *, gain: float = 1.0, dtype=np.float32):
    """The identity map: an identity matrix, or for a convolution weight
    ``(out, in, *kernel)`` the identity at the kernel's centre tap."""
    shape = _shape(shape)
    out = np.zeros(shape, dtype)
    if len(shape) == 1:
        out[:] = gain
        return out
    n = min(shape[0], shape[1])
    centre = tuple(k // 2 for k in shape[2:])
    out[(np.arange(n), np.arange(n)) + centre] = gain
    return out
