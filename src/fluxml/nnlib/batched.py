"""Batched matrix products, batch first: ``(B, m, k) x (B, k, n) -> (B, m, n)``.

Written with ``np.matmul`` (one BLAS call per batch entry inside NumPy), whose rule the engine
already has: differentiable to any order with no rule of its own.
"""

from __future__ import annotations

import numpy as np


def batched_mul(a, b):
    """The product of each pair of matrices, ``(B, m, k) x (B, k, n) -> (B, m, n)``; a batch
    of one on either side is used for every entry of the other (Flux's ``batched_mul``, with
    the batch first).

    >>> import numpy as np, fluxml as fl
    >>> fl.nnlib.batched_mul(np.ones((2, 1, 3)), np.ones((2, 3, 2)))
    array([[[3., 3.]],
    <BLANKLINE>
           [[3., 3.]]])
    """
    if getattr(a, "ndim", 0) != 3 or getattr(b, "ndim", 0) != 3:
        raise ValueError(f"batched_mul: both arguments must be (B, m, k) and (B, k, n); got "
                         f"{tuple(np.shape(a))} and {tuple(np.shape(b))}")
    if a.shape[2] != b.shape[1]:
        raise ValueError(f"batched_mul: inner sizes differ: {tuple(a.shape)} x "
                         f"{tuple(b.shape)} ({a.shape[2]} != {b.shape[1]})")
    if a.shape[0] != b.shape[0] and 1 not in (a.shape[0], b.shape[0]):
        raise ValueError(f"batched_mul: batch sizes differ: {a.shape[0]} and {b.shape[0]} "
                         "(equal, or 1 on one side)")
    return np.matmul(a, b)


def batched_transpose(a):
    """Each matrix of a batch transposed: ``(B, m, n) -> (B, n, m)``.

    >>> import numpy as np, fluxml as fl
    >>> fl.nnlib.batched_transpose(np.zeros((4, 2, 3))).shape
    (4, 3, 2)
    """
    if getattr(a, "ndim", 0) != 3:
        raise ValueError(f"batched_transpose: the argument must be (B, m, n); got "
                         f"{tuple(np.shape(a))}")
    return np.swapaxes(a, 1, 2)


def batched_adjoint(a):
    """Each matrix of a batch conjugate-transposed: ``(B, m, n) -> (B, n, m)`` (NNlib's
    ``batched_adjoint``; :func:`batched_transpose` for real arrays).

    >>> import numpy as np, fluxml as fl
    >>> a = fl.nnlib.batched_adjoint(np.array([[[1j, 2.0]]]))
    >>> a.shape, complex(a[0, 0, 0])
    ((1, 2, 1), -1j)
    """
    return np.conj(batched_transpose(a))


def batched_vec(a, b):
    """Each matrix times its vector, ``(B, m, n) x (B, n) -> (B, m)`` (NNlib's
    ``batched_vec``, batch first); a batch of one on either side serves every entry.

    >>> import numpy as np, fluxml as fl
    >>> fl.nnlib.batched_vec(np.ones((2, 3, 4)), np.ones((2, 4)))
    array([[4., 4., 4.],
           [4., 4., 4.]])
    """
    if getattr(b, "ndim", 0) != 2:
        raise ValueError(f"batched_vec: the vectors must be (B, n); got {tuple(np.shape(b))}")
    return batched_mul(a, b[:, :, None])[:, :, 0]
