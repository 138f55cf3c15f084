"""Pooling and resampling layers: MaxPool, MeanPool, AdaptiveMaxPool, AdaptiveMeanPool,
GlobalMaxPool, GlobalMeanPool, Upsample, PixelShuffle.

Inputs are ``(N, C, *spatial)`` with 1 to 3 spatial dimensions; pooling windows come from
the kernel tuple (``MaxPool((2, 2))`` for images).

>>> import numpy as np, fluxml as fl
>>> fl.MaxPool((2, 2))(np.ones((1, 3, 6, 6), np.float32)).shape
(1, 3, 3, 3)
"""

from __future__ import annotations

import math

import numpy as np

from fluxml import nnlib
from fluxml._checks import flag, is_int, is_real, positive_int
from fluxml.ad.core import strip
from fluxml.layers.conv import SPATIAL_NAMES, _kernel, check_input
from fluxml.layers.module import LayerError, Module, need_array
from fluxml.nnlib import windows as win


def _any_input(layer, shape):
    shape = tuple(shape)
    if len(shape) not in (3, 4, 5):
        raise LayerError(f"{layer._called()} expects input (N, C, L), (N, C, H, W) or "
                         f"(N, C, D, H, W); got {shape}")
    return shape


def _not_empty(layer, shape):
    """Refuse an empty spatial axis: a pool over it has no entries (a maximum of nothing, a
    mean of nothing)."""
    if 0 in shape[2:]:
        raise LayerError(f"{layer._called()} expects a spatial size of at least 1 on each axis; "
                         f"got input {tuple(shape)}")


class _Pool(Module):
    """MaxPool and MeanPool: a window, a stride (the window by default) and padding."""

    def __init__(self, kernel, *, stride=None, pad=0):
        name = type(self).__name__
        self.kernel = _kernel(name, kernel)
        d = len(self.kernel)
        self.stride = self.kernel if stride is None else win.spatial(stride, d, "stride", name)
        if not isinstance(pad, str):
            win.padding(pad, d, name)
        self.pad = pad

    def _geometry(self, shape):
        d = len(self.kernel)
        check_input(self, shape, None, d)
        pads = win.padding(self.pad, d, "", size=shape[2:], kernel=self.kernel,
                           stride=self.stride, dilation=(1,) * d)
        out = win.output_size(shape[2:], self.kernel, self.stride, (1,) * d, pads)
        if self.pool is nnlib.maxpool and any(2 * max(p) > k for p, k in zip(pads, self.kernel)):
            # (as PyTorch: a window of padding only would have no maximum)
            raise LayerError(f"{self._called()}: the padding {pads} must be at most half the "
                             f"window {self.kernel} on each side")
        if min(out) < 1:
            raise LayerError(f"{self._called()} needs a spatial size of at least {self.kernel} "
                             f"after padding {pads}; got input {tuple(shape)}")
        return pads, tuple(shape[:2]) + out

    def _output_shape(self, shape):
        return self._geometry(tuple(shape))[1]

    def __call__(self, x):
        need_array(self, x)
        pads, _ = self._geometry(x.shape)
        return self.pool(x, self.kernel, stride=self.stride, pad=pads)

    def _line(self) -> str:
        out = f"{type(self).__name__}({self.kernel}"
        if self.stride != self.kernel:
            out += f", stride={self.stride}"
        if self.pad != 0:
            out += f", pad={self.pad!r}"
        return out + ")"


class MaxPool(_Pool):
    """``MaxPool(kernel; stride=kernel, pad=0)``: the maximum of each window. ``pad`` as
    :class:`Conv`'s; ``"same"`` gives ``ceil(size / stride)`` outputs, the padding as small
    as that needs (Flux's ``SamePad()`` pads ``k - 1`` in all, more on the low side).

    >>> import numpy as np, fluxml as fl
    >>> fl.MaxPool((2,))(np.array([[[1.0, 3.0, 2.0, 0.0]]], np.float32))
    array([[[3., 2.]]], dtype=float32)
    """

    pool = staticmethod(nnlib.maxpool)


class MeanPool(_Pool):
    """``MeanPool(kernel; stride=kernel, pad=0)``: the mean of each window (padding counts
    as zeros, as PyTorch's default and Flux's).

    >>> import numpy as np, fluxml as fl
    >>> fl.MeanPool((2,))(np.array([[[1.0, 3.0, 2.0, 0.0]]], np.float32))
    array([[[2., 1.]]], dtype=float32)
    """

    pool = staticmethod(nnlib.meanpool)


class _Adaptive(Module):
    def __init__(self, out_size):
        self.out_size = _kernel(type(self).__name__, out_size)

    def _output_shape(self, shape):
        shape = tuple(shape)
        d = len(self.out_size)
        check_input(self, shape, None, d)  # (a smaller input: overlapping windows)
        _not_empty(self, shape)
        return shape[:2] + self.out_size

    def __call__(self, x):
        need_array(self, x)
        self._output_shape(x.shape)
        return self.pool(x, self.out_size)

    def _line(self) -> str:
        return f"{type(self).__name__}({self.out_size})"


class AdaptiveMaxPool(_Adaptive):
    """``AdaptiveMaxPool(out_size)``: max pooling with windows chosen so that the output's
    spatial size is ``out_size`` (PyTorch's ``AdaptiveMaxPool2d`` windows).

    >>> import numpy as np, fluxml as fl
    >>> fl.AdaptiveMaxPool((2, 2))(np.ones((1, 3, 7, 5), np.float32)).shape
    (1, 3, 2, 2)
    """

    pool = staticmethod(nnlib.adaptive_maxpool)


class AdaptiveMeanPool(_Adaptive):
    """``AdaptiveMeanPool(out_size)``: mean pooling to an output of spatial size
    ``out_size``.

    >>> import numpy as np, fluxml as fl
    >>> fl.AdaptiveMeanPool((1,))(np.array([[[1.0, 2.0, 6.0]]], np.float32))
    array([[[3.]]], dtype=float32)
    """

    pool = staticmethod(nnlib.adaptive_meanpool)


class _Global(Module):
    def _output_shape(self, shape):
        shape = _any_input(self, shape)
        _not_empty(self, shape)
        return shape[:2] + (1,) * (len(shape) - 2)

    def __call__(self, x):
        need_array(self, x)
        self._output_shape(x.shape)
        return self.pool(x)

    def _line(self) -> str:
        return f"{type(self).__name__}()"


class GlobalMaxPool(_Global):
    """``GlobalMaxPool()``: the maximum over all spatial positions, ``(N, C, 1, ..., 1)``.

    >>> import numpy as np, fluxml as fl
    >>> fl.GlobalMaxPool()(np.ones((2, 3, 4, 4), np.float32)).shape
    (2, 3, 1, 1)
    """

    pool = staticmethod(nnlib.global_maxpool)


class GlobalMeanPool(_Global):
    """``GlobalMeanPool()``: the mean over all spatial positions, ``(N, C, 1, ..., 1)``.

    >>> import numpy as np, fluxml as fl
    >>> fl.GlobalMeanPool()(np.arange(4.0, dtype=np.float32).reshape(1, 1, 4))
    array([[[1.5]]], dtype=float32)
    """

    pool = staticmethod(nnlib.global_meanpool)


_MODES = ("nearest", "linear", "bilinear", "trilinear")
_MODE_NDIM = {"bilinear": 4, "trilinear": 5}


class Upsample(Module):
    """``Upsample(mode="nearest"; scale=None, size=None, align_corners=False)``

    Upsampling of ``(N, C, *spatial)`` by ``scale`` (one factor, or one per spatial
    dimension; integers for ``"nearest"``) or to an output ``size``. Modes: ``"nearest"``,
    ``"linear"`` (linear along every spatial axis), ``"bilinear"`` (4-d input),
    ``"trilinear"`` (5-d input); PyTorch's ``align_corners=False`` convention by default.
    Flux's other form, ``Upsample(2, "bilinear")`` (scale first), is taken too.

    >>> import numpy as np, fluxml as fl
    >>> up = fl.Upsample("bilinear", scale=2)
    >>> up(np.ones((1, 3, 4, 5), np.float32)).shape
    (1, 3, 8, 10)
    """

    def __init__(self, mode: str = "nearest", *scale_mode, scale=None, size=None,
                 align_corners: bool = False):
        if not isinstance(mode, str) and scale is None and len(scale_mode) <= 1:
            # Flux's other form, Upsample(scale, mode="nearest"): Upsample(2, "bilinear")
            mode, scale = (scale_mode[0] if scale_mode else "nearest"), mode
        elif scale_mode:
            raise TypeError(f"Upsample takes Upsample(mode; scale=, size=) or Upsample(scale, "
                            f"mode); got the positional arguments {(mode,) + scale_mode!r}")
        if mode not in _MODES:
            raise ValueError(f"Upsample: mode must be one of {_MODES}; got {mode!r}")
        if (scale is None) == (size is None):
            raise ValueError(f"Upsample: give either scale or size; got scale={scale!r}, "
                             f"size={size!r}")
        align_corners = flag("Upsample", "align_corners", align_corners)
        if mode == "nearest" and align_corners:
            raise ValueError("Upsample: align_corners applies to the linear modes only")
        _check_factors(mode, scale, size)
        self.mode, self.scale, self.size, self.align_corners = mode, scale, size, align_corners

    def _output_shape(self, shape):
        shape = _any_input(self, shape)
        d = len(shape) - 2
        want = _MODE_NDIM.get(self.mode)
        if want is not None and len(shape) != want:
            raise LayerError(f"{self._called()} expects input (N, C, "
                             f"{', '.join(SPATIAL_NAMES[want - 2])}); got {shape}")
        scale = self._scale()
        for name, value in (("scale", scale), ("size", self.size)):
            if value is not None and np.ndim(value) and len(value) != d:
                raise LayerError(f"{self._called()} has {len(value)} {name}s for input {shape} "
                                 f"with {d} spatial dimensions")
        if self.size is not None:
            size = tuple(int(n) for n in ((self.size,) * d if np.ndim(self.size) == 0
                                          else self.size))
        else:
            scale = (scale,) * d if np.ndim(scale) == 0 else scale
            size = tuple(math.floor(n * s) for n, s in zip(shape[2:], scale))
            if min(size) < 1:
                raise LayerError(f"{self._called()} leaves no output entries for input {shape} "
                                 f"(output size {size}); use a larger scale or give size=")
        return shape[:2] + size

    def __call__(self, x):
        need_array(self, x)
        self._output_shape(x.shape)
        if self.mode == "nearest":
            return nnlib.upsample_nearest(x, self._scale(), size=self.size)
        return nnlib.upsample_linear(x, self._scale(), size=self.size,
                                     align_corners=self.align_corners)

    def _scale(self):
        """The scale as plain numbers: a setting of the geometry (it fixes the output's
        shape), not a parameter; ``fl.gradient`` of a model traces its float fields, and a
        traced scale made the shape arithmetic fail ('float(x) needs a concrete value')."""
        return strip(self.scale)

    def _line(self) -> str:
        what = f"scale={self.scale!r}" if self.size is None else f"size={self.size!r}"
        corners = ", align_corners=True" if self.align_corners else ""
        return f"Upsample({self.mode!r}, {what}{corners})"


def _check_factors(mode, scale, size):
    """Refuse, when the layer is built, a scale or size its forward pass would refuse."""
    def each(v):
        return v if isinstance(v, (tuple, list)) else (v,)

    if size is not None and not all(is_int(n) and n >= 1 for n in each(size)):
        raise ValueError(f"Upsample: size must be a positive int or one per spatial "
                         f"dimension; got {size!r}")
    if scale is None:
        return
    numbers = all(is_real(f) and 0 < f < math.inf for f in each(scale))
    if mode == "nearest" and not all(is_int(f) for f in each(scale)):
        raise ValueError(f"Upsample: mode 'nearest' takes integer scales; got {scale!r} (a "
                         f"linear mode takes other factors, or give size=)")
    if not numbers:
        raise ValueError(f"Upsample: scale must be a positive number or one per spatial "
                         f"dimension; got {scale!r}")


class PixelShuffle(Module):
    """``PixelShuffle(r)``: ``(N, C * r^d, *spatial) -> (N, C, *(spatial * r))``, moving
    channels into space (sub-pixel convolution, Shi et al. 2016; PyTorch's channel order).

    >>> import numpy as np, fluxml as fl
    >>> fl.PixelShuffle(2)(np.ones((1, 8, 3, 3), np.float32)).shape
    (1, 2, 6, 6)
    """

    def __init__(self, r: int):
        self.r = positive_int("PixelShuffle", "r", r)

    def _output_shape(self, shape):
        shape = _any_input(self, shape)
        d = len(shape) - 2
        if shape[1] % self.r**d:
            raise LayerError(f"{self._called()} expects channels divisible by r^{d} = "
                             f"{self.r**d}; got input {shape}")
        return (shape[0], shape[1] // self.r**d) + tuple(n * self.r for n in shape[2:])

    def __call__(self, x):
        need_array(self, x)
        self._output_shape(x.shape)
        return nnlib.pixel_shuffle(x, self.r)

    def _line(self) -> str:
        return f"PixelShuffle({self.r})"
