"""Convolution in 1, 2 and 3 spatial dimensions, and its transpose.

Layouts as PyTorch's: input ``(N, C, *spatial)`` (NCL, NCHW, NCDHW), weight
``(out, in / groups, *kernel)`` for :func:`conv` and ``(in, out / groups, *kernel)`` for
:func:`conv_transpose`. ``conv`` computes the cross-correlation, as PyTorch does;
``flipped=True`` flips the kernel first (the true convolution, Flux's default).

Three primitives carry the family, each bilinear, and the derivatives of each are the other
two (so a CNN is differentiable to any order):

- ``CONV(x, w)``: im2col (windows.py), then one matrix product per group;
- ``CONV_DATA(g, w)``: its transpose in ``x`` (the input gradient, and the transposed
  convolution): a matrix product, then col2im;
- ``CONV_FILTER(x, g)``: its transpose in ``w`` (the weight gradient): im2col of ``x``
  contracted with ``g`` over batch and positions in one product per group.

Groups are the batch axis of the matrix products (depthwise included), never a Python loop;
the only loops are over the kernel's entries inside im2col/col2im, each step a whole-array
copy or add.
"""

from __future__ import annotations

import numpy as np

from fluxml.ad.define import deflinear, defvjp, primitive
from fluxml.nnlib import windows as win


def _geometry(x_shape, w_shape, stride, pads, dilation, groups):
    n, c = x_shape[:2]
    kernel = w_shape[2:]
    out = win.output_size(x_shape[2:], kernel, stride, dilation, pads)
    return n, c, kernel, out, c // groups


# The kernels work channel-major: the columns are ``(groups, C / groups * K, N * positions)``
# and the outputs ``(O, N * positions)``, so that each product is one matrix product per group
# (a few large products, not one per batch entry). With unit strides the positions are those
# of the wide grid (windows.py) where that pays: contiguous rows instead of strided windows,
# for some extra positions. (Measured: it pays in col2im always; in the forward im2col while
# the wide grid has at most a quarter more positions; never in the weight gradient, whose
# product then runs over the extra positions too.)


def _columns(x, kernel, stride, dilation, pads, out, groups, wide):
    """im2col: the windows of ``x`` as ``(groups, C / groups * K, N * positions)``."""
    c, d = x.shape[1], len(kernel)
    xt = win.pad_transposed(x, pads)  # (C, N, *padded)
    if wide:
        cols = win.flat_windows(xt, kernel, dilation, out)
    else:
        view = win.windows(xt, kernel, stride, dilation, out)  # (C, N, *kernel, *out)
        view = view.transpose((0,) + tuple(range(2, 2 + d)) + (1,) + tuple(range(2 + d, 2 + 2 * d)))
        cols = win.workspace(view.shape, x.dtype, win.array_module(x))
        cols[...] = view
    return cols.reshape(groups, (c // groups) * win.count(kernel), -1)


def _unit(stride):
    return all(s == 1 for s in stride)


def _wide_forward(stride, size, out):
    return _unit(stride) and win.wide_length(size, out) <= 1.25 * win.count(out)


def _to_positions(g, size, wide):
    """``g`` ``(N, O, *out)`` as ``(O, N * positions)`` (zeros on the wide grid's extras)."""
    xp = win.array_module(g)
    n, o, *out = g.shape
    gt = g.swapaxes(0, 1)
    if not wide:
        return xp.ascontiguousarray(gt).reshape(o, -1)
    wide = xp.zeros((o, n, out[0]) + tuple(size[1:]), dtype=g.dtype)
    wide[(slice(None),) * 3 + tuple(slice(0, m) for m in out[1:])] = gt
    return wide.reshape(o, -1)


def _from_positions(y, n, size, out, wide):
    """The inverse of :func:`_to_positions`: ``(O, N * positions)`` as ``(N, O, *out)``."""
    xp = win.array_module(y)
    if wide:
        y = y.reshape((y.shape[0], n, out[0]) + tuple(size[1:]))
        y = y[(slice(None),) * 3 + tuple(slice(0, m) for m in out[1:])]
    else:
        y = y.reshape((y.shape[0], n) + tuple(out))
    return xp.ascontiguousarray(y.swapaxes(0, 1))


def _conv(x, w, *, stride, pads, dilation, groups):
    xp = win.array_module(x, w)
    n, c, kernel, out, cg = _geometry(x.shape, w.shape, stride, pads, dilation, groups)
    o = w.shape[0]
    size = win.padded_size(x.shape[2:], pads)
    wide = _wide_forward(stride, size, out)
    cols = _columns(x, kernel, stride, dilation, pads, out, groups, wide)
    y = xp.matmul(w.reshape(groups, o // groups, cg * win.count(kernel)), cols)
    return _from_positions(y.reshape(o, -1), n, size, out, wide)


def _conv_data(g, w, *, x_shape, stride, pads, dilation, groups):
    xp = win.array_module(g, w)
    n, c, kernel, out, cg = _geometry(x_shape, w.shape, stride, pads, dilation, groups)
    o, d, k = w.shape[0], len(kernel), win.count(kernel)
    size = win.padded_size(x_shape[2:], pads)
    gp = _to_positions(g, size, _unit(stride)).reshape(groups, o // groups, -1)
    cols = win.workspace((groups, cg * k, gp.shape[-1]), xp.result_type(g.dtype, w.dtype), xp)
    xp.matmul(w.reshape(groups, o // groups, cg * k).swapaxes(-1, -2), gp, out=cols)
    if _unit(stride):
        xt = win.flat_col2im(cols.reshape(c, k, n, -1), size, kernel, dilation)
    else:
        cols = cols.reshape((c,) + kernel + (n,) + out).transpose(
            (0, 1 + d) + tuple(range(1, 1 + d)) + tuple(range(2 + d, 2 + 2 * d)))
        xt = win.col2im(cols, size, kernel, stride, dilation)  # (C, N, *padded)
    return xp.ascontiguousarray(win.crop(xt, pads, x_shape[2:]).swapaxes(0, 1))


def _conv_filter(x, g, *, w_shape, stride, pads, dilation, groups):
    n, c, kernel, out, cg = _geometry(x.shape, w_shape, stride, pads, dilation, groups)
    o = w_shape[0]
    size = win.padded_size(x.shape[2:], pads)
    cols = _columns(x, kernel, stride, dilation, pads, out, groups, wide=False)
    gp = _to_positions(g, size, False).reshape(groups, o // groups, -1)
    # one product per group, over batch and positions at once
    return (gp @ cols.swapaxes(-1, -2)).reshape(w_shape)


CONV = primitive("conv", _conv, keeps_output=False)
CONV_DATA = primitive("conv_data", _conv_data, keeps_output=False)
CONV_FILTER = primitive("conv_filter", _conv_filter, keeps_output=False)

# <h, CONV(x, w)> = <CONV_DATA(h, w), x> = <CONV_FILTER(x, h), w>: each rule is another member.
defvjp(CONV,
       lambda g, ans, x, w, **geo: CONV_DATA(g, w, x_shape=x.shape, **geo),
       lambda g, ans, x, w, **geo: CONV_FILTER(x, g, w_shape=w.shape, **geo))
defvjp(CONV_DATA,
       lambda h, ans, g, w, x_shape, **geo: CONV(h, w, **geo),
       lambda h, ans, g, w, x_shape, **geo: CONV_FILTER(h, g, w_shape=w.shape, **geo))
defvjp(CONV_FILTER,
       lambda h, ans, x, g, w_shape, **geo: CONV_DATA(g, h, x_shape=x.shape, **geo),
       lambda h, ans, x, g, w_shape, **geo: CONV(x, h, **geo))
for _prim in (CONV, CONV_DATA, CONV_FILTER):
    deflinear(_prim)


# --- the functions users call ---------------------------------------------------------------

def conv(x, w, *, stride=1, pad=0, dilation=1, groups: int = 1, flipped: bool = False):
    """N-d convolution (cross-correlation, as PyTorch's ``conv1d/2d/3d``) of ``x``
    ``(N, C, *spatial)`` with ``w`` ``(O, C / groups, *kernel)``; gives ``(N, O, *out)``.

    ``stride``, ``dilation``: an int or one per spatial dimension. ``pad``: an int, one per
    dimension, ``(lo, hi)`` per dimension (as ``2d`` ints or ``d`` pairs), or ``"same"``.
    ``groups`` splits the channels (``groups == C``: depthwise). ``flipped=True`` flips the
    kernel (the convolution of mathematics, Flux's default).

    >>> import numpy as np, fluxml as fl
    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> fl.nnlib.conv(x, np.ones((1, 1, 2, 2)), stride=2)
    array([[[[10., 18.],
             [42., 50.]]]])
    """
    d = _check_ranks("conv", x, w)
    stride, dilation, groups = _check_steps("conv", d, stride, dilation, groups)
    c, o = x.shape[1], w.shape[0]
    if c % groups or o % groups:
        raise ValueError(f"conv: groups={groups} must divide the input channels ({c}) and the "
                         f"output channels ({o})")
    if w.shape[1] * groups != c:
        raise ValueError(f"conv: weight {tuple(w.shape)} expects input (N, "
                         f"{w.shape[1] * groups}, ...) (weight.shape[1] * groups = "
                         f"{w.shape[1]} * {groups}); got {tuple(x.shape)} with {c} channels")
    kernel = tuple(w.shape[2:])
    pads = win.padding(pad, d, "conv", size=x.shape[2:], kernel=kernel, stride=stride,
                       dilation=dilation)
    _check_fits("conv", x.shape[2:], kernel, stride, dilation, pads)
    if flipped:
        w = _flip(w, d)
    return CONV(x, w, stride=stride, pads=pads, dilation=dilation, groups=groups)


def depthwise_conv(x, w, **options):
    """:func:`conv` with one group per input channel: ``w`` is ``(C * m, 1, *kernel)``.

    >>> import numpy as np, fluxml as fl
    >>> fl.nnlib.depthwise_conv(np.ones((1, 2, 3)), np.array([[[1.0, 1.0]], [[2.0, 0.0]]]))
    array([[[2., 2.],
            [2., 2.]]])
    """
    return conv(x, w, groups=x.shape[1], **options)


def conv_transpose(x, w, *, stride=1, pad=0, dilation=1, groups: int = 1, output_padding=0,
                   flipped: bool = False):
    """The transposed convolution (PyTorch's ``conv_transpose1d/2d/3d``): the gradient of
    :func:`conv` with respect to its input. ``x`` is ``(N, C, *spatial)``, ``w``
    ``(C, O / groups, *kernel)``; each output size is
    ``(n - 1) * stride - lo - hi + dilation * (k - 1) + 1 + output_padding``.
    ``output_padding`` (less than the stride or the dilation) adds rows at the high end.

    >>> import numpy as np, fluxml as fl
    >>> fl.nnlib.conv_transpose(np.ones((1, 1, 2)), np.array([[[1.0, 10.0]]]), stride=2)
    array([[[ 1., 10.,  1., 10.]]])
    """
    fn = "conv_transpose"
    d = _check_ranks(fn, x, w)
    stride, dilation, groups = _check_steps(fn, d, stride, dilation, groups)
    c, o = x.shape[1], w.shape[1] * groups
    if c % groups:
        raise ValueError(f"{fn}: groups={groups} must divide the input channels ({c})")
    if w.shape[0] != c:
        raise ValueError(f"{fn}: weight {tuple(w.shape)} expects input (N, {w.shape[0]}, ...) "
                         f"(weight.shape[0]); got {tuple(x.shape)} with {c} channels")
    if isinstance(pad, str):
        raise ValueError(f"{fn}: pad={pad!r} is not supported; give the padding as numbers")
    pads = win.padding(pad, d, fn)
    outpad = win.spatial(output_padding, d, "output_padding", fn, minimum=0)
    if any(p >= max(s, dl) for p, s, dl in zip(outpad, stride, dilation)):
        raise ValueError(f"{fn}: output_padding {outpad} must be smaller than the stride "
                         f"{stride} or the dilation {dilation} in each dimension")
    kernel = tuple(w.shape[2:])
    size = tuple((n - 1) * s - lo - hi + dl * (k - 1) + 1 + p for n, s, (lo, hi), dl, k, p
                 in zip(x.shape[2:], stride, pads, dilation, kernel, outpad))
    if min(size) < 1:
        raise ValueError(f"{fn}: the padding {pads} leaves an output of size {size} for input "
                         f"{tuple(x.shape)} and kernel {kernel}; reduce the padding")
    if flipped:
        w = _flip(w, d)
    return CONV_DATA(x, w, x_shape=(x.shape[0], o) + size, stride=stride, pads=pads,
                     dilation=dilation, groups=groups)


# --- checks -----------------------------------------------------------------------------------

def _check_ranks(fn, x, w):
    if x.ndim not in (3, 4, 5):
        raise ValueError(f"{fn}: input must be (N, C, L), (N, C, H, W) or (N, C, D, H, W); got "
                         f"shape {tuple(x.shape)} ({x.ndim} dimensions)")
    if w.ndim != x.ndim:
        raise ValueError(f"{fn}: weight must have as many dimensions as the input ({x.ndim}: "
                         f"2 + {x.ndim - 2} spatial); got weight {tuple(w.shape)}")
    return x.ndim - 2


def _check_steps(fn, d, stride, dilation, groups):
    if not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"{fn}: groups must be a positive int; got {groups!r}")
    return (win.spatial(stride, d, "stride", fn), win.spatial(dilation, d, "dilation", fn),
            int(groups))


def _check_fits(fn, size, kernel, stride, dilation, pads):
    reach = tuple(dl * (k - 1) + 1 for k, dl in zip(kernel, dilation))
    padded = win.padded_size(size, pads)
    if any(r > p for r, p in zip(reach, padded)):
        raise ValueError(f"{fn}: kernel {tuple(kernel)} (dilation {tuple(dilation)}: reach "
                         f"{reach}) is larger than the padded input {padded} (input {tuple(size)}"
                         f", pad {pads}); pad more or use a smaller kernel")


def _flip(w, d):
    return np.flip(w, axis=tuple(range(2, 2 + d)))
