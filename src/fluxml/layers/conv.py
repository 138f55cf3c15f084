"""Convolution layers, 1 to 3 spatial dimensions (N from the kernel tuple): Conv, CrossCor,
ConvTranspose, DepthwiseConv.

Inputs are ``(N, C, L)``, ``(N, C, H, W)`` or ``(N, C, D, H, W)``; weights are PyTorch's,
``(out, in / groups, *kernel)`` (``(in, out / groups, *kernel)`` for ConvTranspose), and
``Conv`` computes what PyTorch's ``Conv2d`` computes (a cross-correlation), so published
weights load as they are. Flux's ``Conv`` flips the kernel (the convolution of
mathematics): pass ``flipped=True`` for that. ``CrossCor`` is Flux's name for the unflipped
layer, kept for code written for Flux.

>>> import numpy as np, fluxml as fl
>>> m = fl.Chain(fl.Conv((3, 3), 1, 8, np.tanh, pad=1), fl.MaxPool((2, 2)), fl.Flatten())
>>> fl.outputsize(m, (16, 1, 28, 28))
(16, 1568)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fluxml import init as initialisers
from fluxml import nnlib
from fluxml._checks import flag, function, is_int, positive_int
from fluxml.layers.basic import (
    _activation_suffix,
    _is_array,
    _make_bias,
    _positive,
    _weight_first,
    identity,
    initial,
    need_bias_fits,
)
from fluxml.layers.module import LayerError, Module, need_array
from fluxml.layers.precision import match_dtype
from fluxml.nnlib import windows as win

SPATIAL_NAMES = {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}


def _kernel(layer, kernel) -> tuple[int, ...]:
    kernel = tuple(kernel) if isinstance(kernel, (tuple, list)) else (kernel,)
    if not 1 <= len(kernel) <= 3 or not all(is_int(k) and k >= 1 for k in kernel):
        raise ValueError(f"{layer}: the kernel must be a tuple of 1 to 3 positive ints (one "
                         f"per spatial dimension); got {kernel!r}")
    return tuple(int(k) for k in kernel)


def expected_input(channels, d) -> str:
    """``(N, 3, H, W)``: how an error names the input a layer expects."""
    return f"(N, {channels}, {', '.join(SPATIAL_NAMES[d])})"


def check_input(layer, shape, channels, d):
    """Refuse an input of the wrong rank or channels, naming the layer."""
    if len(shape) != d + 2 or (channels is not None and shape[1] != channels):
        want = expected_input(channels if channels is not None else "C", d)
        hint = ""
        if len(shape) == d + 1:
            hint = "; one input without its batch axis? x[None] adds it"
        elif d + 2 < len(shape) <= 5:  # Conv(3, ...) is 1-d, where PyTorch's Conv2d(.., 3) is not
            hint = (f"; the kernel's length is the number of spatial dimensions: a kernel of "
                    f"{len(shape) - 2} sizes, such as {(3,) * (len(shape) - 2)}, for this input")
        raise LayerError(f"{layer._called()} expects input {want}; got {tuple(shape)}{hint}")


def _spatial(layer, value, d, name, minimum=1) -> tuple:
    """A field checked when the layer was made, checked again where it is used (something
    may have set it since: a float stride, from fl.fmap of a sum over two models), an error
    naming the layer (made only then: this runs on every call)."""
    try:
        return win.spatial(value, d, name, "", minimum)
    except ValueError as err:  # (its message starts ": name must be ...")
        raise LayerError(f"{layer._called()}{err}") from None


def _from_weight(layer, dims, weight, second, third, activation, bias):
    """``(weight, bias, activation)`` of a layer made from its weight, as Flux's ``Conv(W)``,
    ``Conv(W, f)``, ``Conv(W, b)`` and ``Conv(W, b, f)`` (the arguments in the places of
    ``in_channels`` and ``out_channels``)."""
    if third is not None:
        if not callable(third):
            raise TypeError(f"{layer}(weight, bias, activation): the third argument must be "
                            f"callable; got {third!r}")
        activation = third
    weight, bias, activation = _weight_first(layer, None, weight, second, activation, bias)
    if not 3 <= weight.ndim <= 5:
        raise ValueError(f"{layer}: a weight must have shape {dims}, 1 to 3 spatial sizes; "
                         f"got {weight.shape}")
    return weight, bias, activation


def _options(layer, defaults) -> str:
    """``, stride=2, pad=1``: the keyword options that differ from their defaults."""
    out = ""
    for name, default in defaults:
        value = getattr(layer, name)
        if value != default:
            out += f", {name}={value!r}"
    return out


class Conv(Module):
    """``Conv(kernel, in_channels, out_channels, activation=identity; stride=1, pad=0,
    dilation=1, groups=1, bias=True, flipped=False, init=glorot_uniform, rng=None)``

    A convolution layer: ``activation(conv(x, weight) + bias)`` over ``(N, in, *spatial)``
    giving ``(N, out, *out_spatial)``, with ``len(kernel)`` spatial dimensions. ``pad`` is
    an int, one per dimension, ``(lo, hi)`` pairs or ``"same"`` (output size
    ``ceil(size / stride)``, an odd total padding's extra one on the high side as PyTorch's;
    Flux's ``SamePad()`` pads ``(ceil(t / 2), floor(t / 2))`` with ``t = dilation * (k -
    1)`` whatever the stride, so for an even kernel its output is ours shifted by one: give
    those pairs to match it); ``groups`` splits the channels (``groups=in``: depthwise).
    ``weight`` is ``(out, in / groups, *kernel)`` as PyTorch's; pass an array as the first
    argument to use it as the weight (Flux's ``Conv(W, b, activation)``; the kernel is not
    flipped unless ``flipped=True``).

    A tuple of sizes is in the input's order: ``pad=(1, 2)`` pads H by 1 and W by 2, and
    ``pad=(0, 1, 2, 3)`` is H ``(0, 1)`` then W ``(2, 3)``; Flux's tuples list the
    dimensions the other way round (its first is W), so reverse them by dimension.

    >>> import numpy as np, fluxml as fl
    >>> c = fl.Conv((3, 3), 3, 16, fl.identity, stride=2, pad="same")
    >>> c
    Conv((3, 3), 3 => 16, stride=2, pad='same')  # 448 parameters
    >>> c(np.ones((8, 3, 28, 28), np.float32)).shape
    (8, 16, 14, 14)
    """

    def __init__(self, kernel, in_channels: int | None = None, out_channels: int | None = None,
                 activation: Callable = identity, *, stride=1, pad=0, dilation=1,
                 groups: int = 1, bias=True, flipped: bool = False,
                 init: Callable = initialisers.glorot_uniform, rng=None, dtype=np.float32):
        name, weight = type(self).__name__, None
        if _is_array(kernel):  # Flux's Conv(W), Conv(W, f), Conv(W, b), Conv(W, b, f)
            weight, bias, activation = _from_weight(name, "(out, in / groups, *kernel)",
                                                    kernel, in_channels, out_channels,
                                                    activation, bias)
            kernel, out_channels = weight.shape[2:], weight.shape[0]
            in_channels = weight.shape[1] * positive_int(name, "groups", groups)
        _positive(name, in_channels=in_channels, out_channels=out_channels, groups=groups)
        kernel = _kernel(name, kernel)
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: groups={groups} must divide in_channels ({in_channels}) "
                             f"and out_channels ({out_channels})")
        d = len(kernel)
        self._check_options(name, d, stride, pad, dilation)
        if weight is None:
            weight = initial(name, init, (out_channels, in_channels // groups) + kernel, rng,
                             dtype)
        self.weight = weight
        self.bias = _make_bias(bias, out_channels, self.weight.dtype, name)
        self.activation = function(name, "activation", activation)
        self.stride, self.pad, self.dilation, self.groups = stride, pad, dilation, groups
        self.flipped = flag(name, "flipped", flipped)

    @staticmethod
    def _check_options(name, d, stride, pad, dilation):
        win.spatial(stride, d, "stride", name)
        win.spatial(dilation, d, "dilation", name)
        if not isinstance(pad, str):
            win.padding(pad, d, name)
        elif pad != "same":
            raise ValueError(f"{name}: pad must be an int, a tuple or 'same'; got {pad!r}")

    @property
    def kernel(self) -> tuple[int, ...]:
        return tuple(self.weight.shape[2:])

    @property
    def in_channels(self) -> int:
        return self.weight.shape[1] * self.groups

    @property
    def out_channels(self) -> int:
        return self.weight.shape[0]

    def _output_shape(self, shape):
        """The output shape for an input shape, refusing what does not fit."""
        shape = tuple(shape)
        d = len(self.kernel)
        check_input(self, shape, self.in_channels, d)
        stride = _spatial(self, self.stride, d, "stride")
        dilation = _spatial(self, self.dilation, d, "dilation")
        try:
            pads = win.padding(self.pad, d, "", size=shape[2:], kernel=self.kernel,
                               stride=stride, dilation=dilation)
        except ValueError as err:  # (as _spatial's)
            raise LayerError(f"{self._called()}{err}") from None
        out = win.output_size(shape[2:], self.kernel, stride, dilation, pads)
        if min(out) < 1:
            reach = tuple(dl * (k - 1) + 1 for k, dl in zip(self.kernel, dilation))
            raise LayerError(f"{self._called()} needs a spatial size of at least {reach} after "
                             f"padding {pads}; got input {tuple(shape)}")
        return (shape[0], self.out_channels) + out

    def __call__(self, x):
        need_array(self, x)
        need_bias_fits(self)
        x = match_dtype(self, x, self.weight.dtype)
        try:  # the bias and a ReLU inside the convolution's primitive (nnlib/convbias.py)
            return nnlib.conv_bias_act(x, self.weight, self.bias,
                                       None if self.activation is identity else self.activation,
                                       stride=self.stride, pad=self.pad,
                                       dilation=self.dilation, groups=self.groups,
                                       flipped=self.flipped)
        except ValueError:  # the layer's own account of an input that does not fit
            self._output_shape(x.shape)
            raise

    def _finish(self, y):
        if self.bias is not None:
            y = y + np.reshape(self.bias, (-1,) + (1,) * (y.ndim - 2))
        return y if self.activation is identity else self.activation(y)

    _defaults = (("stride", 1), ("pad", 0), ("dilation", 1), ("groups", 1))

    def _line(self) -> str:
        bias = "" if self.bias is not None else ", bias=False"
        flipped = ", flipped=True" if self.flipped else ""
        return (f"{type(self).__name__}({self.kernel}, {self.in_channels} => "
                f"{self.out_channels}{_activation_suffix(self.activation)}"
                f"{_options(self, self._defaults)}{bias}{flipped})")


class CrossCor(Conv):
    """``CrossCor(kernel, in_channels, out_channels, activation=identity; stride=1, pad=0,
    dilation=1, groups=1, bias=True, init=, rng=)``

    Flux's cross-correlation layer: the kernel is not flipped. In fluxml this is what
    :class:`Conv` computes already (as PyTorch); the name is kept for code written for Flux.

    >>> import numpy as np, fluxml as fl
    >>> fl.CrossCor((2,), 1, 1, init=fl.init.ones, bias=False)(np.array([[[1.0, 2.0, 4.0]]],
    ...                                                                  np.float32))
    array([[[3., 6.]]], dtype=float32)
    """

    def __init__(self, kernel, in_channels: int | None = None, out_channels: int | None = None,
                 activation: Callable = identity, **options):
        if options.get("flipped"):
            raise ValueError("CrossCor does not flip its kernel; use Conv(..., flipped=True)")
        super().__init__(kernel, in_channels, out_channels, activation, **options)


class DepthwiseConv(Conv):
    """``DepthwiseConv(kernel, in_channels, out_channels, activation=identity; stride=1,
    pad=0, dilation=1, bias=True, init=, rng=)``

    A convolution with one group per input channel (``groups=in_channels``): each input
    channel gets ``out_channels / in_channels`` filters of its own. ``weight`` is
    ``(out, 1, *kernel)``.

    >>> import numpy as np, fluxml as fl
    >>> m = fl.DepthwiseConv((3,), 4, 8)
    >>> m.weight.shape, m(np.ones((2, 4, 10), np.float32)).shape
    ((8, 1, 3), (2, 8, 8))
    """

    _defaults = (("stride", 1), ("pad", 0), ("dilation", 1))

    def __init__(self, kernel, in_channels: int | None = None, out_channels: int | None = None,
                 activation: Callable = identity, **options):
        if "groups" in options:
            raise TypeError("DepthwiseConv: groups is in_channels; use Conv(..., groups=) for "
                            "other groupings")
        if _is_array(kernel):  # (its weight (out, 1, *kernel) does not say in_channels)
            raise TypeError("DepthwiseConv takes sizes; to make one from a weight W, use "
                            "Conv(W, bias, groups=in_channels)")
        _positive("DepthwiseConv", in_channels=in_channels, out_channels=out_channels)
        if out_channels % in_channels:
            raise ValueError(f"DepthwiseConv: out_channels ({out_channels}) must be a multiple "
                             f"of in_channels ({in_channels})")
        super().__init__(kernel, in_channels, out_channels, activation, groups=in_channels,
                         **options)


class ConvTranspose(Module):
    """``ConvTranspose(kernel, in_channels, out_channels, activation=identity; stride=1,
    pad=0, outpad=0, dilation=1, groups=1, bias=True, init=, rng=)``

    The transposed convolution (the gradient of :class:`Conv` with respect to its input;
    upsamples by ``stride``). Each output size is ``(n - 1) * stride - lo - hi +
    dilation * (k - 1) + 1 + outpad``; ``pad="same"`` gives ``n * stride`` (an odd trim's
    extra one from the low side, as Flux's ``SamePad()`` at dilation 1). ``weight`` is
    ``(in, out / groups, *kernel)`` as PyTorch's ``ConvTranspose2d``; an array as the first
    argument is taken as the weight (Flux's ``ConvTranspose(W, b, activation)``).

    >>> import numpy as np, fluxml as fl
    >>> m = fl.ConvTranspose((2, 2), 8, 3, stride=2)
    >>> m(np.ones((1, 8, 7, 7), np.float32)).shape
    (1, 3, 14, 14)
    """

    def __init__(self, kernel, in_channels: int | None = None, out_channels: int | None = None,
                 activation: Callable = identity, *, stride=1, pad=0, outpad=0, dilation=1,
                 groups: int = 1, bias=True, flipped: bool = False,
                 init: Callable = initialisers.glorot_uniform, rng=None, dtype=np.float32):
        weight = None
        if _is_array(kernel):  # Flux's ConvTranspose(W, b, f)
            weight, bias, activation = _from_weight("ConvTranspose", "(in, out / groups, "
                                                    "*kernel)", kernel, in_channels,
                                                    out_channels, activation, bias)
            kernel, in_channels = weight.shape[2:], weight.shape[0]
            out_channels = weight.shape[1] * positive_int("ConvTranspose", "groups", groups)
        kernel = _kernel("ConvTranspose", kernel)
        _positive("ConvTranspose", in_channels=in_channels, out_channels=out_channels,
                  groups=groups)
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"ConvTranspose: groups={groups} must divide in_channels "
                             f"({in_channels}) and out_channels ({out_channels})")
        d = len(kernel)
        Conv._check_options("ConvTranspose", d, stride, pad, dilation)
        outpads = win.spatial(outpad, d, "outpad", "ConvTranspose", minimum=0)
        if any(p >= max(s, dl) for p, s, dl in zip(outpads, win.spatial(stride, d, "", ""),
                                                    win.spatial(dilation, d, "", ""))):
            raise ValueError(f"ConvTranspose: outpad={outpad!r} must be smaller than the stride "
                             f"({stride!r}) or the dilation ({dilation!r}) in each dimension, "
                             f"as PyTorch's output_padding")
        # glorot's fans read (out, in, ...): give it the transposed shape, then swap
        if weight is None:
            w = initial("ConvTranspose", init, (out_channels // groups, in_channels) + kernel,
                        rng, dtype)
            weight = np.ascontiguousarray(np.swapaxes(w, 0, 1))
        self.weight = weight
        self.bias = _make_bias(bias, out_channels, weight.dtype, "ConvTranspose")
        self.activation = function("ConvTranspose", "activation", activation)
        self.stride, self.pad, self.outpad = stride, pad, outpad
        self.dilation, self.groups = dilation, groups
        self.flipped = flag("ConvTranspose", "flipped", flipped)

    @property
    def kernel(self) -> tuple[int, ...]:
        return tuple(self.weight.shape[2:])

    def _geometry(self, shape):
        """``(pads, output padding, output shape)`` per spatial dimension for input
        ``shape``, checked (computed once per forward pass). ``"same"`` gives
        ``n * stride``: the total that the formula leaves over is trimmed, and where the
        kernel reaches less far than the stride the rows it leaves short are output padding
        (as TensorFlow's ``padding="same"``; only the bias reaches them)."""
        d = len(self.kernel)
        check_input(self, shape, self.weight.shape[0], d)
        stride = _spatial(self, self.stride, d, "stride")
        dilation = _spatial(self, self.dilation, d, "dilation")
        outpad = _spatial(self, self.outpad, d, "outpad", minimum=0)
        if self.pad != "same":
            pads = win.padding(self.pad, d, "ConvTranspose")
        else:
            pads, outs = [], []
            for s, dl, k, p in zip(stride, dilation, self.kernel, outpad):
                total = dl * (k - 1) + 1 + p - s
                trim = max(total, 0)
                pads.append((trim - trim // 2, trim // 2))
                outs.append(p - min(total, 0))
            pads, outpad = tuple(pads), tuple(outs)
        size = tuple((n - 1) * s - lo - hi + dl * (k - 1) + 1 + p for n, s, (lo, hi), dl, k, p
                     in zip(shape[2:], stride, pads, dilation, self.kernel, outpad))
        if min(size) < 1:
            raise LayerError(f"{self._called()}: the padding leaves an output of size {size} "
                             f"for input {shape}")
        return pads, outpad, (shape[0], self.weight.shape[1] * self.groups) + size

    def _output_shape(self, shape):
        return self._geometry(tuple(shape))[2]

    def __call__(self, x):
        need_array(self, x)
        pads, outpad, _ = self._geometry(tuple(x.shape))
        x = match_dtype(self, x, self.weight.dtype)
        y = nnlib.conv_transpose(x, self.weight, stride=self.stride, pad=pads,
                                 dilation=self.dilation, groups=self.groups,
                                 output_padding=outpad, flipped=self.flipped)
        return Conv._finish(self, y)

    _defaults = (("stride", 1), ("pad", 0), ("outpad", 0), ("dilation", 1), ("groups", 1))

    def _line(self) -> str:
        bias = "" if self.bias is not None else ", bias=False"
        flipped = ", flipped=True" if self.flipped else ""
        return (f"ConvTranspose({self.kernel}, {self.weight.shape[0]} => "
                f"{self.weight.shape[1] * self.groups}{_activation_suffix(self.activation)}"
                f"{_options(self, self._defaults)}{bias}{flipped})")
