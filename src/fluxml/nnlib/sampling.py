"""``grid_sample`` (NNlib's; PyTorch's ``F.grid_sample`` with ``mode="bilinear"`` and
``align_corners=True``): an image read at fractional positions, by (bi/tri)linear
interpolation, differentiable in the image and in the positions (spatial transformers).

A composite of differentiable operations: the corner values are gathered by integer
indexing (its gradient adds back onto the image), the interpolation weights are arithmetic
on the positions.

>>> import numpy as np, fluxml as fl
>>> x = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])          # (N, C, H, W) = (1, 1, 2, 2)
>>> grid = np.array([[[[0.0, 0.0], [1.0, -1.0]]]])      # (N, H_out, W_out, 2): (x, y) pairs
>>> fl.nnlib.grid_sample(x, grid)                      # the centre, then the top-right pixel
array([[[[2.5, 2. ]]]])
"""

from __future__ import annotations

import itertools

import numpy as np

from fluxml.ad.core import raw

__all__ = ["grid_sample"]


def grid_sample(x, grid, *, padding_mode: str = "zeros"):
    """``x`` ``(N, C, H, W)`` (or ``(N, C, D, H, W)``) sampled at ``grid`` ``(N, H_out, W_out,
    2)`` (or ``(N, D_out, H_out, W_out, 3)``), whose last axis holds the coordinates
    ``(x, y[, z])`` normalised to ``[-1, 1]``: ``-1`` is the centre of the first pixel along
    that axis (width for ``x``), ``1`` of the last. Returns ``(N, C, H_out, W_out)``.
    Positions outside read 0 (``padding_mode="zeros"``) or the nearest border pixel
    (``"border"``).

    >>> import numpy as np, fluxml as fl
    >>> x = np.arange(1.0, 5.0).reshape(1, 1, 2, 2)
    >>> grid = np.array([[[[-3.0, -1.0], [0.0, -1.0]]]])   # left of the image, top centre
    >>> fl.nnlib.grid_sample(x, grid), fl.nnlib.grid_sample(x, grid, padding_mode="border")
    (array([[[[0. , 1.5]]]]), array([[[[1. , 1.5]]]]))
    """
    xs, gs = np.shape(raw(x)), np.shape(raw(grid))
    if len(xs) not in (4, 5):
        raise ValueError(f"grid_sample: x must be (N, C, H, W) or (N, C, D, H, W); got shape "
                         f"{xs}")
    d = len(xs) - 2
    if len(gs) != d + 2 or gs[0] != xs[0] or gs[-1] != d:
        want = "(N, H_out, W_out, 2)" if d == 2 else "(N, D_out, H_out, W_out, 3)"
        raise ValueError(f"grid_sample: for x of shape {xs}, grid must be {want} with N = "
                         f"{xs[0]}; got shape {gs}")
    if padding_mode not in ("zeros", "border"):
        raise ValueError(f"grid_sample: padding_mode must be 'zeros' or 'border'; got "
                         f"{padding_mode!r}")
    sizes = xs[2:]  # (H, W) or (D, H, W); the grid's coordinates run (x, y, z): reversed
    positions = []
    for axis in range(d):
        n = sizes[axis]
        p = (grid[..., d - 1 - axis] + 1.0) * (0.5 * (n - 1))  # 0-based pixel coordinate
        if padding_mode == "border":  # clamped, with derivative 0 at the bounds too (as
            # PyTorch's): np.clip's 1 there sent the gradient to the corner past the border,
            # which reads 0, so a position on the border had a gradient where none is
            p = np.where(p <= 0.0, 0.0, np.where(p >= n - 1.0, n - 1.0, p))
        positions.append(p)
    dtype = np.result_type(raw(positions[0]))
    # the corner below, as floats, of a position clamped to [-2, n + 1]: any position farther
    # out (infinite too) has both corners outside, and no integer overflows; a NaN position
    # reads NaN (it read 0, silently)
    nan = np.zeros(np.shape(raw(positions[0])), bool)
    for p in positions:
        nan = nan | np.isnan(raw(p))
    lows = [np.floor(np.clip(np.where(nan, 0.0, raw(p)), -2.0, n + 1.0))
            for p, n in zip(positions, sizes)]
    batch = np.reshape(np.arange(xs[0]), (xs[0],) + (1,) * d)
    channels_last = np.moveaxis(x, 1, -1)  # (N, *sizes, C): a gather then gives (N, *out, C)
    out = 0.0
    for corner in itertools.product((0, 1), repeat=d):
        weight, index, inside = 1.0, [], True
        for axis, (p, lo, up) in enumerate(zip(positions, lows, corner)):
            weight = weight * ((p - lo) if up else (lo + 1.0 - p))
            i = lo.astype(np.int64) + up
            inside = inside & (i >= 0) & (i < sizes[axis])
            index.append(np.clip(i, 0, sizes[axis] - 1))
        weight = np.where(inside | nan, weight, np.zeros((), dtype))  # outside: read as 0
        out = out + channels_last[(batch,) + tuple(index)] * weight[..., None]
    return np.moveaxis(out, -1, 1)
