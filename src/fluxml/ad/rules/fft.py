"""The ``np.fft`` family: fft, ifft, rfft, irfft, their 2-d and n-d forms, fftshift.

Three primitives carry it, each on arrays whose transformed lengths are already the lengths
asked for (``n=``/``s=`` crop or zero-pad first, with the differentiable getitem and pad):

- ``c2c``: a complex transform over ``axes`` (forward or inverse), linear and holomorphic. The
  DFT matrix is symmetric, so with fluxml's cotangent convention (``Re(sum(c * t))``, no
  conjugate) its vjp is the same transform with the same ``norm``.
- ``rfft`` along one axis: the first ``n // 2 + 1`` rows of the DFT of a real array. Its vjp
  is the real part of the full forward transform of the cotangent zero-padded to ``n``.
- ``irfft`` along one axis: real-linear (not complex-linear: NumPy drops the imaginary part of
  the zero-frequency bin, and of the Nyquist bin when ``n`` is even). Output entry ``j`` is
  ``sum_k Re(w_k a_k e^(2 pi i jk/n)) / n`` with ``w_k = 2`` for the bins that stand for a
  conjugate pair and ``w_k = 1`` for the edge bins (0, and ``n / 2`` when n is even), so the
  cotangent of ``a`` is ``w * ifft(g)[:n//2 + 1]``: the non-edge bins weighted by 2.

Loaded on the first NumPy FFT call on a traced array (``load``, a lazy rule family), so that
``import fluxml`` does not import ``numpy.fft``.

The n-d real transforms are NumPy's own composition: ``rfftn`` is ``rfft`` on the last axis
then ``c2c`` on the others; ``irfftn`` is the inverse ``c2c`` on all but the last axis, then
``irfft``.

>>> import numpy as np, fluxml as fl
>>> x = np.array([1.0, 2.0, 0.5, -1.0])
>>> fl.gradient(lambda x: np.sum(np.abs(np.fft.fft(x)) ** 2), x)[0]  # Parseval: 2 n x
array([ 8., 16.,  4., -8.])
>>> fl.gradient(lambda h: np.sum(np.fft.irfft(h)), np.array([1.0 + 2j, 3 - 1j, 0.5j]))[0]
array([1.+0.j, 0.+0.j, 0.+0.j])
"""

from __future__ import annotations

import numpy as np

from fluxml.ad.arrays import module_of
from fluxml.ad.core import DifferentiationError, Tracer, raw
from fluxml.ad.define import deflinear, defvjp, function, primitive
from fluxml.ad.rules.complex_values import COMPLEX

_NORMS = (None, "backward", "ortho", "forward")
_DUAL = {"backward": "forward", "ortho": "ortho", "forward": "backward"}


def _c2c_impl(x, *, axes, norm, inverse):
    return (np.fft.ifftn if inverse else np.fft.fftn)(x, axes=axes, norm=norm)


C2C = primitive("fft_c2c", _c2c_impl, keeps_inputs=False, keeps_output=False)
defvjp(C2C, lambda g, ans, x, axes, norm, inverse: C2C(g, axes=axes, norm=norm, inverse=inverse))
deflinear(C2C)

RFFT = primitive("rfft", lambda x, *, axis, norm: np.fft.rfft(x, axis=axis, norm=norm),
                 keeps_inputs=False, keeps_output=False)


def _rfft_vjp(g, ans, x, axis, norm):
    """``Re(fft(pad(g)))`` (see the module docstring) as a half-length transform: ``Re(sum_k
    g_k e^(-2 pi i jk/n))`` is ``irfft`` of ``conj(g)`` with the pair bins halved (irfft
    counts each of them twice and the edge bins once), at about half the cost."""
    n = x.shape[axis]
    ndim = len(x.shape)  # (x stands in for the input: its shape only)
    axis = axis % ndim
    halves = np.full(n // 2 + 1, 0.5, dtype=np.real(raw(g)).dtype)
    halves[0] = 1.0
    if n % 2 == 0:
        halves[-1] = 1.0  # the Nyquist bin stands for itself
    halves = module_of(g).asarray(halves.reshape((-1,) + (1,) * (ndim - 1 - axis)))
    return np.fft.irfft(np.conjugate(g) * halves, n=n, axis=axis, norm=_DUAL[norm])


defvjp(RFFT, _rfft_vjp)
deflinear(RFFT)


def _irfft_impl(a, *, n, axis, norm):
    return np.fft.irfft(a, n=n, axis=axis, norm=norm)


def _irfft_vjp(g, ans, a, n, axis, norm):
    weights = np.full(n // 2 + 1, 2.0, dtype=np.real(raw(g)).dtype)
    weights[0] = 1.0
    if n % 2 == 0:
        weights[-1] = 1.0  # the Nyquist bin stands for itself
    weights = module_of(g).asarray(weights.reshape((-1,) + (1,) * (g.ndim - 1 - axis)))
    return weights * np.conjugate(RFFT(g, axis=axis, norm=_DUAL[norm]))


IRFFT = primitive("irfft", _irfft_impl, keeps_inputs=False, keeps_output=False)
defvjp(IRFFT, _irfft_vjp)
deflinear(IRFFT)


# --- argument handling as NumPy's: n= and s= crop or pad, axes default to the last ones ----------

def _norm(norm, name):
    if norm not in _NORMS:
        raise ValueError(f"np.fft.{name}: norm must be one of 'backward', 'ortho', 'forward' or "
                         f"None; got {norm!r}")
    return "backward" if norm is None else norm


def _no_out(out, name):
    if out is not None:
        raise DifferentiationError(f"np.fft.{name}(..., out=) is not supported on traced "
                                   "arrays; assign the result instead (y[...] = np.fft.fft(x))")


def _axes(a, s, axes, name):
    """NumPy's defaults: every axis (or the last len(s)) when ``axes`` is None; lengths from
    the array unless ``s`` gives them. Axes are returned non-negative."""
    ndim = np.ndim(raw(a))
    if axes is None:
        axes = range(ndim) if s is None else range(ndim - len(s), ndim)
    axes = [int(ax) for ax in axes]
    for ax in axes:
        if not -ndim <= ax < ndim:
            raise ValueError(f"np.fft.{name}: axis {ax} is out of bounds for an array of "
                             f"dimension {ndim}")
    axes = [ax % ndim for ax in axes]
    if s is not None and len(s) != len(axes):
        raise ValueError(f"np.fft.{name}: s has {len(s)} entries, axes {len(axes)}")
    return axes, (None if s is None else [int(n) for n in s])


def _resize(a, axes, sizes, name):
    """``a`` cropped or zero-padded at the end of each axis to the given length (None: kept)."""
    shape = np.shape(raw(a))
    crop = [slice(None)] * len(shape)
    pad = [(0, 0)] * len(shape)
    for ax, n in zip(axes, sizes):
        if n is None:
            continue
        if n < 1:
            raise ValueError(f"np.fft.{name}: invalid number of data points ({n}) specified")
        if n < shape[ax]:
            crop[ax] = slice(0, n)
        pad[ax] = (0, max(n - shape[ax], 0))
    if any(c != slice(None) for c in crop):
        a = a[tuple(crop)]
    if any(p != (0, 0) for p in pad):
        a = np.pad(a, pad)
    return a


def _c2c(a, s, axes, norm, inverse, name):
    axes, s = _axes(a, s, axes, name)
    a = _resize(a, axes, s or [None] * len(axes), name)
    if not axes:
        return a * 1.0 + 0j
    return C2C(a, axes=tuple(axes), norm=_norm(norm, name), inverse=inverse)


def _rfftn(a, s, axes, norm, name):
    if np.iscomplexobj(raw(a)):
        raise TypeError(f"np.fft.{name} needs a real array; got a complex one (use fft)")
    axes, s = _axes(a, s, axes, name)
    a = _resize(a, axes, s or [None] * len(axes), name)
    norm = _norm(norm, name)
    out = RFFT(a, axis=axes[-1], norm=norm)
    if len(axes) > 1:
        out = C2C(out, axes=tuple(axes[:-1]), norm=norm, inverse=False)
    return out


def _irfftn(a, s, axes, norm, name):
    axes, s = _axes(a, s, axes, name)
    shape = np.shape(raw(a))
    if s is None:
        s = [shape[ax] for ax in axes[:-1]] + [2 * (shape[axes[-1]] - 1)]
    norm = _norm(norm, name)
    n = s[-1]
    if n < 1:
        raise ValueError(f"np.fft.{name}: invalid number of data points ({n}) specified")
    a = _resize(a, axes, list(s[:-1]) + [n // 2 + 1], name)
    if len(axes) > 1:
        a = C2C(a, axes=tuple(axes[:-1]), norm=norm, inverse=True)
    return IRFFT(a, n=n, axis=axes[-1], norm=norm)


def _one(n):
    return None if n is None else [n]


@function(np.fft.fft)
def fft(a, n=None, axis=-1, norm=None, out=None):
    _no_out(out, "fft")
    return _c2c(a, _one(n), [axis], norm, False, "fft")


@function(np.fft.ifft)
def ifft(a, n=None, axis=-1, norm=None, out=None):
    _no_out(out, "ifft")
    return _c2c(a, _one(n), [axis], norm, True, "ifft")


@function(np.fft.fftn)
def fftn(a, s=None, axes=None, norm=None, out=None):
    _no_out(out, "fftn")
    return _c2c(a, s, axes, norm, False, "fftn")


@function(np.fft.ifftn)
def ifftn(a, s=None, axes=None, norm=None, out=None):
    _no_out(out, "ifftn")
    return _c2c(a, s, axes, norm, True, "ifftn")


@function(np.fft.fft2)
def fft2(a, s=None, axes=(-2, -1), norm=None, out=None):
    _no_out(out, "fft2")
    return _c2c(a, s, axes, norm, False, "fft2")


@function(np.fft.ifft2)
def ifft2(a, s=None, axes=(-2, -1), norm=None, out=None):
    _no_out(out, "ifft2")
    return _c2c(a, s, axes, norm, True, "ifft2")


@function(np.fft.rfft)
def rfft(a, n=None, axis=-1, norm=None, out=None):
    _no_out(out, "rfft")
    return _rfftn(a, _one(n), [axis], norm, "rfft")


@function(np.fft.irfft)
def irfft(a, n=None, axis=-1, norm=None, out=None):
    _no_out(out, "irfft")
    return _irfftn(a, _one(n), [axis], norm, "irfft")


@function(np.fft.rfftn)
def rfftn(a, s=None, axes=None, norm=None, out=None):
    _no_out(out, "rfftn")
    return _rfftn(a, s, axes, norm, "rfftn")


@function(np.fft.irfftn)
def irfftn(a, s=None, axes=None, norm=None, out=None):
    _no_out(out, "irfftn")
    return _irfftn(a, s, axes, norm, "irfftn")


@function(np.fft.rfft2)
def rfft2(a, s=None, axes=(-2, -1), norm=None, out=None):
    _no_out(out, "rfft2")
    return _rfftn(a, s, axes, norm, "rfft2")


@function(np.fft.irfft2)
def irfft2(a, s=None, axes=(-2, -1), norm=None, out=None):
    _no_out(out, "irfft2")
    return _irfftn(a, s, axes, norm, "irfft2")


@function(np.fft.hfft)
def hfft(a, n=None, axis=-1, norm=None, out=None):
    """NumPy's: ``irfft`` of the conjugate, the normalisation's direction swapped."""
    _no_out(out, "hfft")
    a = a if type(a) is Tracer else np.asarray(a)
    if n is None:
        n = (a.shape[axis] - 1) * 2
    return irfft(np.conj(a), n, axis, norm=_swap_direction(norm))


@function(np.fft.ihfft)
def ihfft(a, n=None, axis=-1, norm=None, out=None):
    """NumPy's: the conjugate of ``rfft``, the normalisation's direction swapped."""
    _no_out(out, "ihfft")
    if n is None:
        n = np.shape(raw(a))[axis]
    return np.conj(rfft(a, n, axis, norm=_swap_direction(norm)))


def _swap_direction(norm):
    swapped = {"backward": "forward", None: "forward", "ortho": "ortho", "forward": "backward"}
    if norm not in swapped:
        raise ValueError(f'Invalid norm value {norm}; should be "backward", "ortho" or '
                         '"forward".')
    return swapped[norm]


@function(np.fft.fftshift)
def fftshift(x, axes=None):
    return _shift(x, axes, lambda n: n // 2)


@function(np.fft.ifftshift)
def ifftshift(x, axes=None):
    return _shift(x, axes, lambda n: -(n // 2))


def _shift(x, axes, by):
    shape = np.shape(raw(x))
    if axes is None:
        axes = tuple(range(len(shape)))
    elif isinstance(axes, int):
        axes = (axes,)
    return np.roll(x, [by(shape[ax]) for ax in axes], axis=tuple(axes))


# linear, so right for complex values (rfft and rfftn refuse complex input, as NumPy's do)
COMPLEX.update([np.fft.fft, np.fft.ifft, np.fft.fft2, np.fft.ifft2, np.fft.fftn, np.fft.ifftn,
                np.fft.irfft, np.fft.irfft2, np.fft.irfftn, np.fft.fftshift, np.fft.ifftshift,
                np.fft.hfft])
