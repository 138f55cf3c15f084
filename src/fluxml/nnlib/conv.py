"""Convolution in 1, 2 and 3 spatial dimensions, and its transpose.

Layouts as PyTorch's: input ``(N, C, *spatial)`` (NCL, NCHW, NCDHW), weight
``(out, in / groups, *kernel)`` for :func:`conv` and ``(in, out / groups, *kernel)`` for
:func:`conv_transpose`. ``conv`` computes the cross-correlation, as PyTorch does;
``flipped=True`` flips the kernel first (the true convolution, Flux's default).

Three primitives carry the family, each bilinear, and the derivatives of each are the other
two (so a CNN is differentiable to any order):

- ``CONV(x, w)``: im2col, then a matrix product;
- ``CONV_DATA(g, w)``: its transpose in ``x`` (the input gradient, and the transposed
  convolution): a matrix product, then col2im (or, with unit strides, the convolution of
  the padded ``g`` with the flipped kernel);
- ``CONV_FILTER(x, g)``: its transpose in ``w`` (the weight gradient): im2col of ``x``
  contracted with ``g`` over batch and positions.

The kernels are in convkernels.py: blocks of samples sized to the cache, groups as the batch
axis of the matrix products (depthwise included); the only Python loops are over those
blocks and over the kernel's entries inside col2im, each step a whole-block operation.
3x3 kernels with unit strides and many channels take Winograd's F(2x2, 3x3) instead
(winograd.py: 2.25 times fewer multiply-adds), in all three primitives.
"""

from __future__ import annotations

import functools

import numpy as np

from fluxml._checks import flag, positive_int
from fluxml.ad.define import deflinear, defvjp, primitive
from fluxml.nnlib import convkernels as kernels
from fluxml.nnlib import windows as win


def _conv(x, w, *, stride, pads, dilation, groups):
    return kernels.forward(x, w, kernels.Geometry(x.shape, w.shape, stride, pads, dilation,
                                                  groups))


def _conv_data(g, w, *, x_shape, stride, pads, dilation, groups):
    return kernels.data(g, w, kernels.Geometry(x_shape, w.shape, stride, pads, dilation,
                                               groups))


def _conv_filter(x, g, *, w_shape, stride, pads, dilation, groups):
    return kernels.filter(x, g, kernels.Geometry(x.shape, w_shape, stride, pads, dilation,
                                                 groups))


# each kernel returns a new array of its own: under fl.compile its buffer may be reused once dead
_conv.fresh = _conv_data.fresh = _conv_filter.fresh = True
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
    x, w = win.counted(x, w)
    w, geo = _prepare("conv", x, w, stride, pad, dilation, groups, flipped)
    return CONV(x, w, **geo)


def _prepare(fn, x, w, stride, pad, dilation, groups, flipped):
    """The checked geometry of ``conv(x, w)`` as the primitives' parameters, and the weight
    (flipped where asked)."""
    win.need_arrays(fn, x=x, w=w)
    x_shape, w_shape = tuple(x.shape), tuple(w.shape)
    try:
        hash((stride, pad, dilation, groups))
    except TypeError:  # options given as lists: checked without the cache
        params = _params.__wrapped__(fn, x_shape, w_shape, stride, pad, dilation, groups)
    else:  # (the options' types in the key: True == 1 and 2.0 == 2 would share entries)
        params = _params(fn, x_shape, w_shape, stride, pad, dilation, groups,
                         _kinds((stride, pad, dilation, groups)))
    if flag(fn, "flipped", flipped):
        w = _flip(w, len(w_shape) - 2)
    return w, dict(params)


def _kinds(v):
    """The types in ``v`` (a tuple's, item by item)."""
    return tuple(_kinds(i) for i in v) if type(v) is tuple else type(v)


@functools.lru_cache(maxsize=256)
def _params(fn, x_shape, w_shape, stride, pad, dilation, groups, kinds=None):
    """The checks of :func:`_prepare` on the shapes and options, remembered: a layer calls
    them with the same ones at every step (they cost a few percent of LeNet's second
    convolution). Items of the parameters; a bad input raises, and is not remembered.
    ``kinds``: the options' types, for the cache's key only."""
    d = _check_ranks(fn, x_shape, w_shape)
    stride, dilation, groups = _check_steps(fn, d, stride, dilation, groups)
    c, o = x_shape[1], w_shape[0]
    if c % groups or o % groups:
        raise ValueError(f"{fn}: groups={groups} must divide the input channels ({c}) and the "
                         f"output channels ({o})")
    if w_shape[1] * groups != c:
        raise ValueError(f"{fn}: weight {w_shape} expects input (N, "
                         f"{w_shape[1] * groups}, ...) (weight.shape[1] * groups = "
                         f"{w_shape[1]} * {groups}); got {x_shape} with {c} channels")
    kernel = w_shape[2:]
    pads = win.padding(pad, d, fn, size=x_shape[2:], kernel=kernel, stride=stride,
                       dilation=dilation)
    _check_fits(fn, x_shape[2:], kernel, stride, dilation, pads)
    return (("stride", stride), ("pads", pads), ("dilation", dilation), ("groups", groups))


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
    win.need_arrays(fn, x=x, w=w)
    x, w = win.counted(x, w)
    d = _check_ranks(fn, x.shape, w.shape)
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
    if flag(fn, "flipped", flipped):
        w = _flip(w, d)
    # output_padding >= stride (allowed below the dilation) gives the output rows that the
    # convolution of an output-sized input would read with p // s more windows than x has:
    # those windows get zeros (PyTorch's semantics), so x is zero-padded at the high end
    extra = tuple(p // s for p, s in zip(outpad, stride))
    if any(extra):
        x = np.pad(x, ((0, 0), (0, 0)) + tuple((0, e) for e in extra))
    return CONV_DATA(x, w, x_shape=(x.shape[0], o) + size, stride=stride, pads=pads,
                     dilation=dilation, groups=groups)


# --- checks -----------------------------------------------------------------------------------

def _check_ranks(fn, x_shape, w_shape):
    n = len(x_shape)
    if n not in (3, 4, 5):
        raise ValueError(f"{fn}: input must be (N, C, L), (N, C, H, W) or (N, C, D, H, W); got "
                         f"shape {tuple(x_shape)} ({n} dimensions)")
    if len(w_shape) != n:
        raise ValueError(f"{fn}: weight must have as many dimensions as the input ({n}: "
                         f"2 + {n - 2} spatial); got weight {tuple(w_shape)}")
    return n - 2


def _check_steps(fn, d, stride, dilation, groups):
    groups = positive_int(fn, "groups", groups)
    return (win.spatial(stride, d, "stride", fn), win.spatial(dilation, d, "dilation", fn),
            groups)


def _check_fits(fn, size, kernel, stride, dilation, pads):
    reach = tuple(dl * (k - 1) + 1 for k, dl in zip(kernel, dilation))
    padded = win.padded_size(size, pads)
    if any(r > p for r, p in zip(reach, padded)):
        raise ValueError(f"{fn}: kernel {tuple(kernel)} (dilation {tuple(dilation)}: reach "
                         f"{reach}) is larger than the padded input {padded} (input {tuple(size)}"
                         f", pad {pads}); pad more or use a smaller kernel")


def _flip(w, d):
    return np.flip(w, axis=tuple(range(2, 2 + d)))
