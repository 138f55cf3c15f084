"""The convolution with its bias and activation (NNlib's ``conv_bias_act``), the ReLU and the
bias in the primitive.

A convolutional layer written out records three arrays the size of its output (the
convolution, the bias added over the spatial axes, the activation), and its backward pass
runs the activation's rule, the sum of the cotangent over the bias's broadcast axes and the
convolution's two rules. Here the bias and the ReLU are applied to each block of the
convolution's output while the block is in the cache (``convkernels.forward``), and one rule
masks the cotangent once and hands it to the convolution's own rules (``CONV_DATA``,
``CONV_FILTER``: primitives with rules, so higher orders follow; the mask is constant where
the derivative exists) and to the bias's sum. Measured on LeNet-5 (batch 64), where fresh
output-sized arrays cost more in page faults than in arithmetic: the first layer's forward
pass in less than half the time.

Any other activation is applied after the fused convolution and bias. Under ``fl.compile``
the composite is recorded instead (as for ``linear``): the compiler fuses elementwise work
itself and would see one opaque call here.

>>> import numpy as np, fluxml as fl
>>> x = np.arange(4.0).reshape(1, 1, 4)
>>> fl.nnlib.conv_bias_act(x, np.ones((2, 1, 2)), np.array([-3.0, 0.0]), fl.relu)
array([[[0., 0., 2.],
        [1., 3., 5.]]])
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from fluxml.ad.core import COMPILING, raw
from fluxml.ad.define import defjvp, defvjp, primitive
from fluxml.nnlib import convkernels as kernels
from fluxml.nnlib import windows as win
from fluxml.nnlib.activations import relu
from fluxml.nnlib.conv import CONV, CONV_DATA, CONV_FILTER, _prepare

__all__ = ["conv_bias_act"]


def _geometry(x, w, stride, pads, dilation, groups):
    return kernels.Geometry(x.shape, w.shape, stride, pads, dilation, groups)


def _conv_bias(x, w, b, **geo):
    return kernels.forward(x, w, _geometry(x, w, **geo), bias=b)


def _conv_bias_relu(x, w, b, **geo):
    return kernels.forward(x, w, _geometry(x, w, **geo), bias=b, relu=True)


_conv_bias.fresh = _conv_bias_relu.fresh = True  # new arrays (see conv.py)
CONV_BIAS = primitive("conv_bias", _conv_bias, keeps_output=False)
CONV_BIAS_RELU = primitive("conv_bias_relu", _conv_bias_relu)  # the rules read the output


def _bias_grad(g):
    """The cotangent summed over the batch and the spatial axes: ``(O,)``. On NumPy arrays
    (first order) the spatial sum is one product of all ``(sample, channel)`` rows with ones
    (NumPy's reduction over several axes walks them slowly; a stack of one product per
    sample took 0.026 ms on LeNet's first layer where one takes 0.017)."""
    if type(g) is np.ndarray:
        n, o = g.shape[:2]
        rows = np.reshape(g, (n * o, math.prod(g.shape[2:])))  # (not -1: n may be 0)
        sums = np.matmul(rows, np.ones(rows.shape[-1], g.dtype))
        return np.sum(np.reshape(sums, (n, o)), axis=0)
    return np.sum(g, axis=(0,) + tuple(range(2, g.ndim)))


# the cotangent of each argument for the cotangent g of the convolution plus the bias
_RULES = (
    lambda g, x, w, geo: CONV_DATA(g, w, x_shape=x.shape, **geo),
    lambda g, x, w, geo: CONV_FILTER(x, g, w_shape=w.shape, **geo),
    lambda g, x, w, geo: _bias_grad(g),
)


def _contribution(pos, t, x, w, geo):
    """The output tangent for the tangent ``t`` of argument ``pos`` (before the ReLU)."""
    if pos == 0:
        return CONV(t, w, **geo)
    if pos == 1:
        return CONV(x, t, **geo)
    return np.reshape(t, (-1,) + (1,) * (x.ndim - 2))  # broadcast over batch and space


defvjp(CONV_BIAS,
       lambda g, ans, x, w, b, **geo: _RULES[0](g, x, w, geo),
       lambda g, ans, x, w, b, **geo: _RULES[1](g, x, w, geo),
       lambda g, ans, x, w, b, **geo: _RULES[2](g, x, w, geo))
defjvp(CONV_BIAS,
       lambda t, ans, x, w, b, **geo: _contribution(0, t, x, w, geo),
       lambda t, ans, x, w, b, **geo: _contribution(1, t, x, w, geo),
       lambda t, ans, x, w, b, **geo: _contribution(2, t, x, w, geo))


def _relu_vjp(g, ans, args, params, positions):
    x, w, _ = args
    if type(g) is np.ndarray and type(ans) is np.ndarray:
        # first order: the rules below read the masked cotangent and return new arrays, so it
        # lives in a scratch buffer (a fresh one costs more in page faults than the
        # multiplication: 1 ms for LeNet's first layer)
        g = np.multiply(g, ans > 0, out=win.scratch(g.shape, g.dtype, np, "masked"))
    else:
        g = g * (ans > 0)  # once for all arguments
    return [_RULES[p](g, x, w, params) for p in positions]


def _relu_jvp(tangents, ans, args, params):
    x, w, _ = args
    total = None
    for pos, t in tangents:
        c = _contribution(pos, t, x, w, params)
        total = c if total is None else total + c
    return total * (ans > 0)


CONV_BIAS_RELU.vjp_all = _relu_vjp
CONV_BIAS_RELU.vjp = lambda pos, g, ans, args, params: _relu_vjp(g, ans, args, params, [pos])[0]
CONV_BIAS_RELU.jvp_all = _relu_jvp


def conv_bias_act(x, w, b=None, act: Callable | None = None, *, stride=1, pad=0, dilation=1,
                  groups: int = 1, flipped: bool = False):
    """``act(conv(x, w, ...) + b)`` with ``b`` ``(O,)`` (or None: no bias) added over the
    batch and spatial axes, and ``act`` a function (None: the identity). The options are
    :func:`conv`'s. ``relu`` is fused into the primitive, as is the bias; any other ``act``
    is applied to its result.

    >>> import numpy as np, fluxml as fl
    >>> fl.nnlib.conv_bias_act(np.ones((1, 1, 3)), np.ones((1, 1, 2)), np.array([0.5]))
    array([[[2.5, 2.5]]])
    """
    win.need_arrays("conv_bias_act", x=x, w=w)
    x, w = win.counted(x, w)  # (the products are counted: a bias of any type beside them)
    w, geo = _prepare("conv_bias_act", x, w, stride, pad, dilation, groups, flipped)
    if b is not None and np.shape(raw(b)) != (w.shape[0],):  # (NNlib's bias=true too)
        raise ValueError(f"conv_bias_act: bias must have shape ({w.shape[0]},) for a weight "
                         f"of shape {tuple(np.shape(raw(w)))}; got {np.shape(raw(b))}")
    win.need_arrays("conv_bias_act", b=b)  # (a list of the right length)
    # relu refuses complex numbers (NumPy compares them lexicographically, by the real part
    # first): applied after the primitive, it says so; fused, the mask would compare them
    fused = act is relu and not any(a is not None and np.iscomplexobj(raw(a)) for a in (x, w, b))
    if COMPILING:
        y = CONV(x, w, **geo)
        if b is not None:
            y = y + np.reshape(b, (-1,) + (1,) * (x.ndim - 2))
    elif fused:
        return CONV_BIAS_RELU(x, w, b, **geo)
    else:
        y = CONV_BIAS(x, w, b, **geo)
    return y if act is None else act(y)
