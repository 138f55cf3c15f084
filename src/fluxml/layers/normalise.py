"""Normalisation and dropout: BatchNorm, LayerNorm, GroupNorm, InstanceNorm, Dropout,
AlphaDropout.

Train/test behaviour follows Flux: a layer acts in training mode when its input is being
differentiated (inside ``fl.gradient``) and in test mode otherwise, unless ``fl.trainmode``
/ ``fl.testmode`` (or the ``active`` field: None, True, False) says otherwise; a set mode
shows in the printed line. In training mode BatchNorm (and InstanceNorm with
``track_stats=True``) normalise with the batch's statistics and update their running
statistics in place, ``running = (1 - momentum) * running + momentum * batch`` (the
variance unbiased, as Flux and PyTorch); in test mode they use the running statistics.
Parameters are named as PyTorch's (``weight``, ``bias``, ``running_mean``, ``running_var``).

>>> import numpy as np, fluxml as fl
>>> bn = fl.BatchNorm(3)
>>> x = np.random.default_rng(0).normal(size=(8, 3, 4, 4)).astype(np.float32)
>>> y = fl.trainmode(bn)(x)
>>> bool(abs(y.mean()) < 1e-6), bn.running_mean.shape
(True, (3,))
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fluxml import init as initialisers
from fluxml import nnlib
from fluxml._checks import flag, function, generator, is_int, is_real, real_in, shown
from fluxml.ad.api import stop_gradient
from fluxml.layers.basic import _activation_suffix, _positive, identity, initial
from fluxml.layers.module import LayerError, Module, is_active, need_array
from fluxml.layers.precision import match_dtype


def _mode_suffix(layer) -> str:
    return "" if layer.active is None else f", active={layer.active}"


class _Norm(Module):
    """Shared by the normalisation layers: affine parameters, running statistics, checks."""

    # running statistics are state; eps and momentum are settings (Python floats would
    # otherwise be differentiated as parameters)
    nontrainable = ("running_mean", "running_var", "eps", "momentum")
    # what fl.f16 leaves in float32 (a float16 variance above 65504 is inf)
    float32_in_f16 = ("running_mean", "running_var")

    def _setup(self, channels, activation, affine, track_stats, eps, momentum, dtype,
               init_bias=initialisers.zeros, init_scale=initialisers.ones, rng=None,
               shape=None):
        shape = (channels,) if shape is None else shape
        who = type(self).__name__
        real_in(who, "eps (added to the variance)", eps, 0)
        real_in(who, "momentum (the running statistics' update rate)", momentum, 0, 1)
        affine, track_stats = flag(who, "affine", affine), flag(who, "track_stats", track_stats)
        self.activation = function(who, "activation", activation)
        self.weight = initial(who, init_scale, shape, rng, dtype, "init_scale") if affine \
            else None
        self.bias = initial(who, init_bias, shape, rng, dtype, "init_bias") if affine else None
        # running statistics at least float32 (a float16 variance above 65504 is inf)
        # float16 statistics kept float32: the layer records that it computes in float16
        self.precision = np.dtype(np.float16) if np.dtype(dtype) == np.float16 and (
            affine or track_stats) else None
        stats = np.promote_types(dtype, np.float32)
        self.running_mean = np.zeros(channels, stats) if track_stats else None
        self.running_var = np.ones(channels, stats) if track_stats else None
        self.eps = eps
        self.momentum = momentum
        self.channels = channels

    def _input(self, x, min_ndim=2):
        need_array(self, x)
        shape = x.shape
        if len(shape) < min_ndim or shape[1] != self.channels:
            dots = ", ..." if min_ndim == 2 else ", L, ..."
            raise LayerError(f"{self._called()} expects input (N, {self.channels}{dots}); got "
                             f"{np.shape(x)}")
        return self._precision(x)

    # float16 where the layer computes in float16 beside float32 running statistics (made
    # so, or by fl.f16), else None: its arrays' dtype says (fl.fmap of astype keeps saying it)
    precision = None

    def _precision(self, x):
        """``x`` in the layer's precision: ``precision`` where set (and its weight, where it
        has one, is of it: a weight converted back by a plain ``fl.fmap`` of ``astype`` says
        the layer's precision, not the record kept from ``fl.f16``; a layer without a weight
        can only be converted back by ``fl.f32``/``fl.f64``), else that of its arrays (any
        float when it has none)."""
        weight = getattr(self, "weight", None)
        if self.precision is not None and (weight is None or weight.dtype == self.precision):
            return match_dtype(self, x, self.precision)
        for a in (getattr(self, "weight", None), getattr(self, "running_mean", None)):
            if a is not None:
                return match_dtype(self, x, a.dtype)
        return x if x.dtype.kind == "f" else match_dtype(self, x, np.float32)

    def _like(self, shape):
        """A zero-size-cost stand-in for input of ``shape`` in the layer's precision."""
        arrays = (getattr(self, "weight", None), getattr(self, "running_mean", None))
        dtype = next((a.dtype for a in arrays if a is not None), np.dtype(np.float32))
        return np.broadcast_to(np.zeros((), dtype), tuple(shape))

    def _output_shape(self, shape):
        self._input(self._like(shape))
        return tuple(shape)

    def _channel_affine(self, ndim):
        """``weight`` and ``bias`` shaped to broadcast over ``(N, C, ...)`` (None, None when
        the layer has none)."""
        if self.weight is None:
            return None, None
        shape = (1, -1) + (1,) * (ndim - 2)
        return np.reshape(self.weight, shape), np.reshape(self.bias, shape)

    def _with_running_stats(self, x):
        """Test mode: ``x`` normalised per channel with the running statistics."""
        return self._activate(nnlib.batchnorm(x, self.weight, self.bias, mean=self.running_mean,
                                              var=self.running_var, eps=self.eps))

    def _batch_statistics(self, x) -> bool:
        """Whether ``x`` is normalised with its own statistics (training, or no running
        ones), not the running statistics."""
        return is_active(self, x) or self.running_mean is None

    def _several(self, count, what):
        """Refuse to normalise with the statistics of a single value: its variance is 0, so
        the output was the bias alone and the running variance decayed towards 0, silently
        (PyTorch and Flux raise too). Test mode with running statistics never comes here."""
        if count == 1:
            advice = "give more than one"
            if what.startswith("per channel"):  # (BatchNorm's: the batch's values)
                advice += " (a DataLoader's last batch of one sample: partial=False)"
            if self.running_mean is not None:  # (without them, test mode comes here too)
                advice += ", or use the running statistics (fl.testmode)"
            raise LayerError(f"{self._called()} got a single value {what} to compute its "
                             f"statistics from; {advice}")

    def _activate(self, y):
        return y if self.activation is identity else self.activation(y)

    def _update_stats(self, mean, var, count):
        """Running statistics from batch ``mean`` and biased ``var`` (each ``(channels,)``)
        over ``count`` values per channel, written in place; an empty batch leaves them (its
        statistics are NaN; PyTorch leaves them too)."""
        if count == 0:
            return
        m = self.momentum
        mean, var = stop_gradient(mean), stop_gradient(var)
        unbiased = var * (count / max(count - 1, 1))
        self.running_mean[...] = (1 - m) * self.running_mean + m * mean
        self.running_var[...] = (1 - m) * self.running_var + m * unbiased

    def _options(self, affine_default, track_default) -> str:
        out = _activation_suffix(self.activation)
        if (self.weight is not None) != affine_default:
            out += f", affine={self.weight is not None}"
        if (self.running_mean is not None) != track_default:
            out += f", track_stats={self.running_mean is not None}"
        return out + (_mode_suffix(self) if hasattr(self, "active") else "")


class BatchNorm(_Norm):
    """``BatchNorm(channels, activation=identity; affine=True, track_stats=True, eps=1e-5,
    momentum=0.1, active=None)``

    Normalises each channel (dimension 1 of ``(N, C, ...)``, or the features of ``(N, C)``)
    over the batch and spatial dimensions, then ``activation(weight * x̂ + bias)``. In test
    mode it uses the running statistics (the batch's when ``track_stats=False``).

    >>> import numpy as np, fluxml as fl
    >>> fl.BatchNorm(16, np.tanh)
    BatchNorm(16, tanh)  # 32 parameters, plus 32 non-trainable
    """

    def __init__(self, channels: int, activation: Callable = identity, *, affine: bool = True,
                 track_stats: bool = True, eps: float = 1e-5, momentum: float = 0.1,
                 active: bool | None = None, init_bias=initialisers.zeros,
                 init_scale=initialisers.ones, rng=None, dtype=np.float32):
        _positive(type(self).__name__, channels=channels)
        self._setup(channels, activation, affine, track_stats, eps, momentum, dtype,
                    init_bias, init_scale, rng)
        self.active = flag(type(self).__name__, "active", active, none=True)

    def __call__(self, x):
        x = self._input(x)
        if not self._batch_statistics(x):  # test mode: running statistics
            return self._with_running_stats(x)
        self._one_value(x)
        if not x.size:  # an empty batch: nothing to normalise and no statistics to learn
            return self._activate(x)  # (their means over no values warned, NaN)
        scale, bias = self._channel_affine(x.ndim)
        axes = (0,) + tuple(range(2, x.ndim))
        y, mean, var = nnlib.normalise(x, axes, scale, bias, eps=self.eps, return_stats=True)
        if self.running_mean is not None:  # (training: with running ones, not test mode)
            self._update_stats(np.reshape(mean, -1), np.reshape(var, -1),
                               x.size // self.channels)
        return self._activate(y)

    def _one_value(self, x):
        self._several(x.size // self.channels, "per channel (N times the spatial sizes)")

    def _output_shape(self, shape):
        # refused as the forward pass refuses it (outputsize of (1, 5, 1) through a
        # BatchNorm(5, track_stats=False) gave (1, 5, 1) where the layer raises)
        x = self._input(self._like(shape))
        if self._batch_statistics(x):
            self._one_value(x)
        return tuple(shape)

    def _line(self) -> str:
        return f"BatchNorm({self.channels}{self._options(True, True)})"


class InstanceNorm(_Norm):
    """``InstanceNorm(channels, activation=identity; affine=False, track_stats=False,
    eps=1e-5, momentum=0.1, active=None)``

    Normalises each channel of each sample over its spatial dimensions (input
    ``(N, C, L...)``, at least one spatial dimension). With ``track_stats`` the running
    statistics (averaged over the batch) are used in test mode, as BatchNorm's.

    >>> import numpy as np, fluxml as fl
    >>> fl.InstanceNorm(3)(np.ones((2, 3, 5), np.float32)).shape
    (2, 3, 5)
    """

    def __init__(self, channels: int, activation: Callable = identity, *, affine: bool = False,
                 track_stats: bool = False, eps: float = 1e-5, momentum: float = 0.1,
                 active: bool | None = None, init_bias=initialisers.zeros,
                 init_scale=initialisers.ones, rng=None, dtype=np.float32):
        _positive("InstanceNorm", channels=channels)
        self._setup(channels, activation, affine, track_stats, eps, momentum, dtype,
                    init_bias, init_scale, rng)
        self.active = flag("InstanceNorm", "active", active, none=True)

    def __call__(self, x):
        x = self._input(x, min_ndim=3)
        if not self._batch_statistics(x):  # test mode: running statistics
            return self._with_running_stats(x)
        self._one_value(x)
        scale, bias = self._channel_affine(x.ndim)
        y, mean, var = nnlib.normalise(x, tuple(range(2, x.ndim)), scale, bias, eps=self.eps,
                                       return_stats=True)
        if self.running_mean is not None and x.shape[0]:  # (training; an empty batch:
            # no statistics)
            self._update_stats(np.mean(np.reshape(mean, x.shape[:2]), axis=0),
                               np.mean(np.reshape(var, x.shape[:2]), axis=0), x[0, 0].size)
        return self._activate(y)

    def _one_value(self, x):
        if x.shape[0]:
            self._several(x[0, 0].size, "per sample and channel (the spatial sizes)")

    def _output_shape(self, shape):
        x = self._input(self._like(shape), min_ndim=3)  # (refused as the forward pass does)
        if self._batch_statistics(x):
            self._one_value(x)
        return tuple(shape)

    def _line(self) -> str:
        return f"InstanceNorm({self.channels}{self._options(False, False)})"


class GroupNorm(_Norm):
    """``GroupNorm(channels, groups, activation=identity; affine=True, eps=1e-5)``

    Splits the channels of ``(N, C, ...)`` into ``groups`` and normalises each group of
    each sample over its channels and spatial dimensions (Wu & He 2018); then a per-channel
    affine map. No running statistics: the same in training and test.

    >>> import numpy as np, fluxml as fl
    >>> fl.GroupNorm(6, 3)(np.ones((2, 6, 4, 4), np.float32)).shape
    (2, 6, 4, 4)
    """

    nontrainable = ("eps",)

    def __init__(self, channels: int, groups: int, activation: Callable = identity, *,
                 affine: bool = True, eps: float = 1e-5, init_bias=initialisers.zeros,
                 init_scale=initialisers.ones, rng=None, dtype=np.float32):
        _positive("GroupNorm", channels=channels, groups=groups)
        if channels % groups:
            raise ValueError(f"GroupNorm: channels ({channels}) must be divisible by groups "
                             f"({groups})")
        self._setup(channels, activation, affine, False, eps, 0.0, dtype, init_bias,
                    init_scale, rng)
        del self.running_mean, self.running_var, self.momentum
        self.groups = groups

    def __call__(self, x):
        x = self._input(x)
        return self._activate(nnlib.groupnorm(x, self.groups, self.weight, self.bias,
                                              eps=self.eps))

    def _line(self) -> str:
        affine = "" if self.weight is not None else ", affine=False"
        return (f"GroupNorm({self.channels}, {self.groups}"
                f"{_activation_suffix(self.activation)}{affine})")


class LayerNorm(_Norm):
    """``LayerNorm(size..., activation=identity; affine=True, eps=1e-5)``

    Normalises over the trailing dimensions ``size`` of each sample (PyTorch's
    ``normalized_shape``; ``LayerNorm(64)`` on ``(N, T, 64)``), then
    ``activation(weight * x̂ + bias)`` with ``weight`` and ``bias`` shaped ``size``.

    >>> import numpy as np, fluxml as fl
    >>> ln = fl.LayerNorm(4)
    >>> ln(np.array([[1.0, 2.0, 3.0, 4.0]], np.float32)).round(3)
    array([[-1.342, -0.447,  0.447,  1.342]], dtype=float32)
    """

    nontrainable = ("eps",)
    _feature_axis = -1

    def __init__(self, *size, affine: bool = True, eps: float = 1e-5,
                 init_bias=initialisers.zeros, init_scale=initialisers.ones, rng=None,
                 dtype=np.float32):
        activation: Callable = identity
        if size and callable(size[-1]):
            size, activation = size[:-1], size[-1]
        if len(size) == 1 and isinstance(size[0], tuple):
            size = size[0]
        _positive("LayerNorm", **{f"size[{i}]": n for i, n in enumerate(size)})
        if not size:
            raise ValueError("LayerNorm needs the size of the dimensions to normalise")
        self._setup(None, activation, affine, False, eps, 0.0, dtype, init_bias, init_scale,
                    rng, shape=tuple(size))
        del self.running_mean, self.running_var, self.momentum, self.channels
        self.size = tuple(int(n) for n in size)

    def _input(self, x, min_ndim=None):
        k = len(self.size)
        need_array(self, x)
        if tuple(x.shape[-k:]) != self.size:
            raise LayerError(f"{self._called()} expects input (..., "
                             f"{', '.join(map(str, self.size))}); got {np.shape(x)}")
        return self._precision(x)

    def __call__(self, x):
        x = self._input(x)
        return self._activate(nnlib.layernorm(x, self.weight, self.bias,
                                              axes=tuple(range(-len(self.size), 0)),
                                              eps=self.eps))

    def _line(self) -> str:
        affine = "" if self.weight is not None else ", affine=False"
        size = ", ".join(map(str, self.size))
        return f"LayerNorm({size}{_activation_suffix(self.activation)}{affine})"


def _generator(rng):
    """The layer's generator, or the one ``fl.seed`` seeds."""
    return initialisers.default_rng() if rng is None else rng


def probability(p: float) -> str:
    """``p`` as a printed line shows it: short (``0.5``, ``0``), yet the same number when
    the line is read back (``:g`` alone printed 0.1234567 as 0.123457)."""
    short = f"{p:g}"
    return short if float(short) == p else repr(p)


def _check_p(layer, p):
    if not is_real(p) or not 0 <= p <= 1:
        raise ValueError(f"{layer}: p must be a probability in [0, 1]; got {p!r}")


class Dropout(Module):
    """``Dropout(p; dims=None, active=None, rng=None)``

    In training mode, sets each entry to zero with probability ``p`` and scales the rest by
    ``1 / (1 - p)``; in test mode, the identity. ``dims`` (an axis or tuple of axes) makes
    the mask vary only along those axes and be shared along the others (``dims=(0, 1)`` on
    ``(N, C, H, W)`` drops whole channels).

    >>> import numpy as np, fluxml as fl
    >>> d = fl.Dropout(0.5)
    >>> d(np.ones(3, np.float32))  # test mode outside a gradient
    array([1., 1., 1.], dtype=float32)
    >>> fl.trainmode(d)
    Dropout(0.5, active=True)
    """

    nontrainable = ("p",)

    def __init__(self, p: float, *, dims=None, active: bool | None = None, rng=None):
        _check_p("Dropout", p)
        self.p = float(p)
        self.dims = (dims,) if is_int(dims) else dims
        if dims is not None and not (np.iterable(self.dims) and all(map(is_int, self.dims))):
            raise ValueError(f"Dropout: dims must be None, an axis or a tuple of axes (the "
                             f"axes along which the mask varies); got {shown(dims)}")
        self.active = flag("Dropout", "active", active, none=True)
        self.rng = generator("Dropout", rng)

    def __call__(self, x):
        need_array(self, x)
        if not is_active(self, x) or self.p == 0:
            return x
        return nnlib.dropout(x, self.p, dims=self.dims, rng=_generator(self.rng))

    def _output_shape(self, shape):
        return tuple(shape)

    def _line(self) -> str:
        dims = "" if self.dims is None else f", dims={self.dims}"
        return f"Dropout({probability(self.p)}{dims}{_mode_suffix(self)})"


class AlphaDropout(Module):
    """``AlphaDropout(p; active=None, rng=None)``

    Dropout for self-normalising networks (SELU, Klambauer et al. 2017): dropped entries are
    set to SELU's negative saturation value, then an affine map restores mean 0 and variance
    1. The identity in test mode.

    >>> import numpy as np, fluxml as fl
    >>> fl.AlphaDropout(0.2)
    AlphaDropout(0.2)
    """

    nontrainable = ("p",)

    def __init__(self, p: float, *, active: bool | None = None, rng=None):
        _check_p("AlphaDropout", p)
        self.p = float(p)
        self.active = flag("AlphaDropout", "active", active, none=True)
        self.rng = generator("AlphaDropout", rng)

    def __call__(self, x):
        need_array(self, x)
        if not is_active(self, x) or self.p == 0:
            return x
        return nnlib.alpha_dropout(x, self.p, rng=_generator(self.rng))

    def _output_shape(self, shape):
        return tuple(shape)

    def _line(self) -> str:
        return f"AlphaDropout({probability(self.p)}{_mode_suffix(self)})"
