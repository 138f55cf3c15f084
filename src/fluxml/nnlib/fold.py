"""``unfold`` and ``fold`` (NNlib's, PyTorch's ``F.unfold`` / ``F.fold``, in 1, 2 or 3
spatial dimensions): the sliding windows of a convolution as columns, and their transpose.

``unfold(x, kernel)`` takes ``x`` ``(N, C, *spatial)`` to ``(N, C * prod(kernel), L)``:
column ``l`` holds the window of the ``l``-th output position (positions in row-major order,
window entries channel first, then the kernel's axes), the windows a convolution with the
same ``stride``, ``pad`` and ``dilation`` reads (cross-correlation order: not flipped, NNlib's
``flipped=true``). ``fold(cols, size, kernel)`` adds such columns back onto an array of
spatial size ``size``: its adjoint, so each is the other's vjp (both linear primitives, so
every order of derivative follows).

>>> import numpy as np, fluxml as fl
>>> x = np.array([[[100.0, 2, 3, 40, 5, 6, 700]]])   # NNlib's example: (N, C, L) = (1, 1, 7)
>>> fl.nnlib.unfold(x, 3, stride=2, pad=1)[0]
array([[  0.,   2.,  40.,   6.],
       [100.,   3.,   5., 700.],
       [  2.,  40.,   6.,   0.]])
"""

from __future__ import annotations

import math

import numpy as np

from fluxml.ad.core import raw
from fluxml.ad.define import deflinear, defvjp, primitive
from fluxml.nnlib import windows as win

__all__ = ["fold", "unfold"]


def _unfold_impl(x, *, size, kernel, stride, pads, dilation, out):
    cols = win.windows(win.pad(x, pads), kernel, stride, dilation, out)
    return cols.reshape(x.shape[:1] + (x.shape[1] * math.prod(kernel), math.prod(out)))


def _fold_impl(cols, *, size, kernel, stride, pads, dilation, out):
    n, ck, _ = cols.shape
    cols = cols.reshape((n, ck // math.prod(kernel)) + kernel + out)
    xpad = win.col2im(cols, win.padded_size(size, pads), kernel, stride, dilation)
    return win.array_module(xpad).ascontiguousarray(win.crop(xpad, pads, size))


UNFOLD = primitive("unfold", _unfold_impl, keeps_inputs=False, keeps_output=False)
FOLD = primitive("fold", _fold_impl, keeps_inputs=False, keeps_output=False)
defvjp(UNFOLD, lambda g, ans, x, **geometry: FOLD(g, **geometry))
defvjp(FOLD, lambda g, ans, cols, **geometry: UNFOLD(g, **geometry))
deflinear(UNFOLD)
deflinear(FOLD)


def _geometry(fn, size, kernel, stride, pad, dilation):
    d = len(size)
    kernel = win.spatial(kernel, d, "kernel", fn)
    stride = win.spatial(stride, d, "stride", fn)
    dilation = win.spatial(dilation, d, "dilation", fn)
    pads = win.padding(pad, d, fn, size=size, kernel=kernel, stride=stride,
                       dilation=dilation)
    out = win.output_size(size, kernel, stride, dilation, pads)
    if min(out) < 1:
        raise ValueError(f"{fn}: the kernel {kernel} (dilation {dilation}) does not fit the "
                         f"padded spatial size {win.padded_size(size, pads)}")
    return {"size": tuple(size), "kernel": kernel, "stride": stride, "pads": pads,
            "dilation": dilation, "out": out}


def unfold(x, kernel, *, stride=1, pad=0, dilation=1):
    """The sliding windows of ``x`` ``(N, C, *spatial)`` as columns ``(N, C * prod(kernel),
    L)``, ``L`` the number of window positions (see the module docstring). ``kernel``,
    ``stride``, ``dilation``: an int or one per spatial axis; ``pad`` as for ``nnlib.conv``
    (an int, per axis, ``(lo, hi)`` pairs or ``"same"``).

    >>> import numpy as np, fluxml as fl
    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> cols = fl.nnlib.unfold(x, (2, 2), stride=2)
    >>> cols.shape, cols[0, :, 1].tolist()   # the second window: the top-right 2x2 block
    ((1, 4, 4), [2.0, 3.0, 6.0, 7.0])
    """
    win.check_input("unfold", raw(x))
    geometry = _geometry("unfold", np.shape(raw(x))[2:], kernel, stride, pad, dilation)
    return win.fresh(UNFOLD(x, **geometry), x)  # (windows of one entry: a view of x, copied)


def fold(cols, size, kernel, *, stride=1, pad=0, dilation=1):
    """The transpose of :func:`unfold`: columns ``(N, C * prod(kernel), L)`` added back into
    ``(N, C, *size)``, window entries that overlap summed (so ``fold(unfold(x))`` is ``x``
    times how many windows hold each entry). ``size`` is the spatial size (an int or one per
    axis; its length, or ``kernel``'s, gives the number of spatial axes, else 2).

    >>> import numpy as np, fluxml as fl
    >>> ones = np.ones((1, 1, 3, 3))
    >>> fl.nnlib.fold(fl.nnlib.unfold(ones, 2), 3, 2)[0, 0]   # windows holding each entry
    array([[1., 2., 1.],
           [2., 4., 2.],
           [1., 2., 1.]])
    """
    given = [v for v in (size, kernel) if isinstance(v, (tuple, list))]
    d = len(given[0]) if given else 2
    size = win.spatial(size, d, "size", "fold")
    geometry = _geometry("fold", size, kernel, stride, pad, dilation)
    shape = np.shape(raw(cols))
    k, positions = math.prod(geometry["kernel"]), math.prod(geometry["out"])
    if len(shape) != 3 or shape[1] % k or shape[2] != positions:
        raise ValueError(f"fold: expected columns (N, C * {k}, {positions}) for kernel "
                         f"{geometry['kernel']} over size {size} ({positions} windows); got "
                         f"shape {shape}")
    cols, = win.counted(cols)  # overlapping windows are summed
    return FOLD(cols, **geometry)
