"""Audio (NNlib's ``src/audio``): Hann and Hamming windows, the short-time Fourier transform and
its inverse, spectrograms, mel filter banks and decibels.

Layout as ``torch.stft``'s (NNlib follows torch.stft too, in Julia's reversed axis order): a
waveform is ``(T,)`` or a batch ``(N, T)``; its STFT is complex ``(N, F, frames)`` (or ``(F,
frames)``), ``F = n_fft // 2 + 1`` for a real waveform (the one-sided spectrum, as ``rfft``)
and ``n_fft`` for a complex one, frame ``m`` starting at sample ``m * hop_length`` of the
(centre-padded) waveform:

    ``stft(x)[n, k, m] = sum_j window[j] x[n, m * hop_length + j] exp(-2 pi i j k / n_fft)``

Everything is a composition of differentiable pieces (``np.pad``, ``nnlib.unfold`` to cut the
frames, ``np.fft.rfft``/``irfft``, ``nnlib.fold`` to overlap-add them back), so gradients of
every order, with respect to the waveform and to the window, come from their rules.

>>> import numpy as np, fluxml as fl
>>> x = np.sin(2 * np.pi * np.arange(64) / 16)           # one cycle per 16 samples
>>> spec = fl.nnlib.stft(x, 16, 4, fl.nnlib.hann_window(16, np.float64))
>>> spec.shape                                           # (n_fft // 2 + 1, frames)
(9, 17)
>>> int(np.argmax(np.abs(spec[:, 8])))                   # the energy sits in bin 1
1
>>> y = fl.nnlib.istft(spec, 16, 4, fl.nnlib.hann_window(16, np.float64), length=64)
>>> bool(np.allclose(y, x))
True
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from fluxml._checks import flag, positive_int
from fluxml._dtypes import working_float
from fluxml.ad.core import raw
from fluxml.nnlib.fold import fold, unfold
from fluxml.nnlib.windows import array_module

__all__ = ["db_to_power", "hamming_window", "hann_window", "istft", "melscale_filterbanks",
           "power_to_db", "spectrogram", "stft"]

# torch.stft's pad_mode names -> np.pad's modes
_PAD_MODES = {"reflect": "reflect", "constant": "constant", "replicate": "edge",
              "circular": "wrap"}


# --- windows --------------------------------------------------------------------------------

def hamming_window(window_length: int, dtype=np.float32, *, periodic: bool = True,
                   alpha: float = 0.54, beta: float = 0.46) -> np.ndarray:
    """The generalised Hamming window ``w[k] = alpha - beta cos(2 pi k / M)``, ``k = 0 ..
    window_length - 1``, with ``M = window_length`` when ``periodic`` (the default: the window
    for spectral analysis, one period of a periodic function) and ``window_length - 1``
    otherwise (symmetric). A window of length 1 is ``[1]``, as torch's.

    >>> import numpy as np, fluxml as fl
    >>> fl.nnlib.hamming_window(4)
    array([0.08, 0.54, 1.  , 0.54], dtype=float32)
    >>> fl.nnlib.hamming_window(5, np.float64, periodic=False)
    array([0.08, 0.54, 1.  , 0.54, 0.08])
    """
    window_length = positive_int("hamming_window", "window_length", window_length)
    periodic = flag("hamming_window", "periodic", periodic)
    if np.dtype(dtype).kind != "f":
        raise TypeError(f"hamming_window: dtype must be a float dtype; got {np.dtype(dtype)}")
    if window_length == 1:
        return np.ones(1, dtype=dtype)
    period = window_length if periodic else window_length - 1
    k = np.arange(window_length)
    return (alpha - beta * np.cos(2 * np.pi * k / period)).astype(dtype)


def hann_window(window_length: int, dtype=np.float32, *, periodic: bool = True) -> np.ndarray:
    """The Hann window ``w[k] = (1 - cos(2 pi k / M)) / 2``: :func:`hamming_window` with
    ``alpha = beta = 0.5`` (``periodic`` as there).

    >>> import numpy as np, fluxml as fl
    >>> fl.nnlib.hann_window(4)
    array([0. , 0.5, 1. , 0.5], dtype=float32)
    >>> bool(np.allclose(fl.nnlib.hann_window(8), fl.nnlib.hann_window(9, periodic=False)[:-1]))
    True
    """
    return hamming_window(window_length, dtype, periodic=periodic, alpha=0.5, beta=0.5)


# --- argument checks --------------------------------------------------------------------------

def _as_array(x):
    return x if hasattr(raw(x), "ndim") else np.asarray(x)


def _hop(fn: str, n_fft: int, hop_length) -> int:
    if hop_length is None:
        if n_fft < 4:
            raise ValueError(f"{fn}: hop_length must be a positive int; got {n_fft // 4} (the "
                             f"default n_fft // 4 for n_fft = {n_fft}: give hop_length)")
        return n_fft // 4
    return positive_int(fn, "hop_length", hop_length)


def _window(fn: str, window, n_fft: int, dtype):
    """``window`` in ``dtype``, zero-padded on both sides to ``n_fft`` as torch.stft does (the
    extra zero on the right when the difference is odd); None stays None."""
    if window is None:
        return None
    window = _as_array(window)
    shape = np.shape(raw(window))
    if len(shape) != 1 or not 0 < shape[0] <= n_fft:
        raise ValueError(f"{fn}: window must be a 1-d array of length 1 to n_fft = {n_fft} "
                         f"(a shorter one is zero-padded on both sides); got shape {shape}")
    if raw(window).dtype != dtype:
        window = window.astype(dtype)
    left = (n_fft - shape[0]) // 2
    if shape[0] < n_fft:
        window = np.pad(window, (left, n_fft - shape[0] - left))
    return window


def _float_dtype(fn: str, value):
    """The real float dtype the transform computes in: the array's own (complex64 ->
    float32), float64 for integers and booleans."""
    if value.dtype.kind in "fcbiu":
        return working_float(value.dtype)
    raise TypeError(f"{fn}: expected a float or complex array; got dtype {value.dtype}")


# --- the short-time Fourier transform and its inverse ---------------------------------------

def stft(x, n_fft: int, hop_length: int | None = None, window=None, *, center: bool = True,
         pad_mode: str = "reflect", normalized: bool = False):
    """Short-time Fourier transform of ``x`` ``(T,)`` or ``(N, T)``: complex ``(F, frames)``
    or ``(N, F, frames)`` (see the module docstring), as ``torch.stft(x, n_fft, hop_length,
    window=window, center=center, pad_mode=pad_mode, normalized=normalized,
    return_complex=True)``.

    - ``hop_length``: samples between frames, ``n_fft // 4`` by default.
    - ``window``: 1-d, of length at most ``n_fft`` (zero-padded on both sides to ``n_fft``);
      None (the default) applies none. Cast to ``x``'s float dtype.
    - ``center``: pad ``n_fft // 2`` samples on both sides first (``pad_mode``: "reflect",
      "constant", "replicate" or "circular"), so that frame ``m`` is centred on sample
      ``m * hop_length``. There are ``1 + (T_padded - n_fft) // hop_length`` frames.
    - ``normalized``: multiply by ``n_fft ** -0.5`` (an orthonormal DFT).

    A real ``x`` gives the one-sided spectrum (``F = n_fft // 2 + 1``), a complex one the full
    spectrum (``F = n_fft``). float32 gives complex64.

    >>> import numpy as np, fluxml as fl
    >>> fl.nnlib.stft(np.ones((2, 8), np.float32), 4, 2).shape
    (2, 3, 5)
    >>> fl.nnlib.stft(np.ones(8), 4, 2, center=False)[:, 0]   # a constant: all in bin 0
    array([4.+0.j, 0.+0.j, 0.+0.j])
    """
    x = _as_array(x)
    value = raw(x)
    if value.ndim not in (1, 2):
        raise ValueError(f"stft: x must be a waveform (T,) or a batch of waveforms (N, T); got "
                         f"shape {value.shape} (spectrogram takes any leading batch axes)")
    n_fft = positive_int("stft", "n_fft", n_fft)
    center, normalized = flag("stft", "center", center), flag("stft", "normalized", normalized)
    hop = _hop("stft", n_fft, hop_length)
    if pad_mode not in _PAD_MODES:
        raise ValueError(f"stft: pad_mode must be one of {', '.join(map(repr, _PAD_MODES))}; "
                         f"got {pad_mode!r}")
    dtype = _float_dtype("stft", value)
    if value.dtype.kind not in "fc":
        x = x.astype(dtype)
    window = _window("stft", window, n_fft, dtype)
    batched = value.ndim == 2
    x = x if batched else x[None]
    length = value.shape[-1]
    if center:
        half = n_fft // 2
        if pad_mode == "reflect" and half >= length:
            raise ValueError(f"stft: center=True pads n_fft // 2 = {half} samples on each side "
                             f"by reflection, which needs more than {half} samples; got a "
                             f"waveform of {length} (use center=False or another pad_mode)")
        x = np.pad(x, ((0, 0), (half, half)), mode=_PAD_MODES[pad_mode])
        length += 2 * half
    if n_fft > length:
        padded = " centre-padded" if center else ""
        raise ValueError(f"stft: n_fft = {n_fft} is larger than the{padded} waveform of "
                         f"{length} samples; use n_fft <= {length} or a longer waveform")
    frames = unfold(x[:, None, :], n_fft, stride=hop)          # (N, n_fft, frames)
    if window is not None:
        frames = frames * window[:, None]
    transform = np.fft.fft if value.dtype.kind == "c" else np.fft.rfft
    spec = transform(frames, axis=1, norm="ortho" if normalized else None)
    return spec if batched else spec[0]


def istft(y, n_fft: int, hop_length: int | None = None, window=None, *, center: bool = True,
          normalized: bool = False, length: int | None = None, return_complex: bool = False):
    """The inverse of :func:`stft`, as ``torch.istft``: each frame's inverse DFT, weighted by
    the window, overlap-added, and divided by the overlap-added squared window (the least
    squares estimate of the signal from a modified spectrum; exact for an unmodified one).
    ``y`` is complex ``(F, frames)`` or ``(N, F, frames)``; ``n_fft``, ``hop_length``,
    ``window``, ``center`` and ``normalized`` as given to :func:`stft`.

    - ``length``: the number of samples to return (the waveform's ``T``); by default all that
      the frames cover, less the centre padding. Samples past the last frame are zeros.
    - ``return_complex``: ``y`` is the full spectrum of a complex waveform (``F = n_fft``)
      and the result is complex; else ``F = n_fft // 2 + 1`` and the result is real.

    The squared window must overlap-add to a nonzero value at every returned sample (the
    NOLA condition), or an error says where it fails.

    >>> import numpy as np, fluxml as fl
    >>> x = np.arange(10.0)
    >>> spec = fl.nnlib.stft(x, 4, 1, fl.nnlib.hann_window(4, np.float64))
    >>> y = fl.nnlib.istft(spec, 4, 1, fl.nnlib.hann_window(4, np.float64), length=10)
    >>> np.round(y, 12) + 0.0
    array([0., 1., 2., 3., 4., 5., 6., 7., 8., 9.])
    """
    y = _as_array(y)
    value = raw(y)
    if value.dtype.kind != "c":
        raise TypeError(f"istft: y must be a complex spectrum (as stft returns); got dtype "
                        f"{value.dtype}")
    if value.ndim not in (2, 3):
        raise ValueError(f"istft: y must be a spectrum (F, frames) or a batch (N, F, frames); "
                         f"got shape {value.shape}")
    n_fft = positive_int("istft", "n_fft", n_fft)
    center, normalized = flag("istft", "center", center), flag("istft", "normalized", normalized)
    return_complex = flag("istft", "return_complex", return_complex)
    hop = _hop("istft", n_fft, hop_length)
    bins = n_fft if return_complex else n_fft // 2 + 1
    if value.shape[-2] != bins:
        rule = "n_fft" if return_complex else "n_fft // 2 + 1"
        raise ValueError(f"istft: y must have {rule} = {bins} frequency bins (axis -2) for "
                         f"n_fft = {n_fft}; got shape {value.shape}")
    if length is not None:
        length = positive_int("istft", "length", length)
    dtype = _float_dtype("istft", value)
    window = _window("istft", window, n_fft, dtype)
    xp = array_module(value)
    if window is None:
        window = xp.ones(n_fft, dtype=dtype)
    batched = value.ndim == 3
    y = y if batched else y[None]
    count = value.shape[-1]
    norm = "ortho" if normalized else None
    if return_complex:
        frames = np.fft.ifft(y, axis=1, norm=norm)
    else:
        frames = np.fft.irfft(y, n=n_fft, axis=1, norm=norm)
    total = n_fft + hop * (count - 1)
    signal = fold(frames * window[:, None], (total,), n_fft, stride=hop)[:, 0]
    squares = (window * window)[None, :, None] * xp.ones((1, 1, count), dtype=dtype)
    envelope = fold(squares, (total,), n_fft, stride=hop)[0, 0]
    start = n_fft // 2 if center else 0
    if length is not None:
        end = start + length
    else:
        end = total - n_fft // 2 if center else total
    stop = min(end, total)
    small = np.abs(raw(envelope)[start:stop]) < 1e-11
    if small.any():
        at = start + int(np.argmax(small))
        raise ValueError(
            f"istft: the squared window overlap-adds to zero at sample {at - start} (of the "
            f"output): window and hop_length = {hop} do not satisfy the NOLA condition there; "
            f"use a smaller hop_length, a window with no zeros there, or center=True")
    x = signal[:, start:stop] / envelope[start:stop]
    if end > stop:  # samples the frames do not reach: zeros, as torch.istft gives
        x = np.pad(x, ((0, 0), (0, end - stop)))
    return x if batched else x[0]


# --- spectrograms and decibels ----------------------------------------------------------------

def spectrogram(waveform, n_fft: int, hop_length: int | None = None, window=None, *,
                pad: int = 0, center: bool = True, pad_mode: str = "reflect",
                power: float | None = 2.0, normalized: bool = False,
                window_normalized: bool = False):
    """The spectrogram of ``waveform`` ``(..., T)``: ``|stft| ** power``, ``(..., F,
    frames)``, as NNlib's ``spectrogram`` and torchaudio's ``Spectrogram``.

    - ``pad``: zeros added on both sides of the waveform first.
    - ``power``: 2 for power (the default), 1 for magnitude; None (or NNlib's 0) returns the
      complex spectrum. Power 2 is computed as ``re ** 2 + im ** 2``, smooth at zero.
    - ``window_normalized``: divide by the window's L2 norm (``sqrt(n_fft)`` for none).
    - ``n_fft``, ``hop_length``, ``window``, ``center``, ``pad_mode``, ``normalized`` as for
      :func:`stft`, applied to every waveform of the leading axes. As there, no window is
      applied unless one is given (torchaudio's ``Spectrogram`` defaults to a Hann window).

    >>> import numpy as np, fluxml as fl
    >>> x = np.ones((2, 3, 16), np.float32)
    >>> s = fl.nnlib.spectrogram(x, 8, 4, fl.nnlib.hann_window(8))
    >>> s.shape, s.dtype
    ((2, 3, 5, 5), dtype('float32'))
    >>> float(s[0, 0, 0, 2])   # hann(8) sums to 4: a constant's power in bin 0 is 16
    16.0
    """
    waveform = _as_array(waveform)
    shape = np.shape(raw(waveform))
    if len(shape) < 1:
        raise ValueError(f"spectrogram: waveform must be (..., T); got shape {shape}")
    pad = positive_int("spectrogram", "pad", pad, minimum=0)
    window_normalized = flag("spectrogram", "window_normalized", window_normalized)
    if power is not None and not power >= 0:
        raise ValueError(f"spectrogram: power must be None, 0 (complex) or positive; got "
                         f"{power!r}")
    if pad:
        waveform = np.pad(waveform, [(0, 0)] * (len(shape) - 1) + [(int(pad), int(pad))])
    flat = np.reshape(waveform, (-1, shape[-1] + 2 * int(pad)))
    spec = stft(flat, n_fft, hop_length, window, center=center, pad_mode=pad_mode,
                normalized=normalized)
    spec = np.reshape(spec, shape[:-1] + np.shape(raw(spec))[1:])
    if window_normalized:
        if window is None:
            spec = spec * (1 / math.sqrt(n_fft))
        else:
            w = _as_array(window).astype(np.finfo(raw(spec).dtype).dtype)
            spec = spec / np.sqrt(np.sum(w * w))
    if not power:
        return spec
    if power == 2:
        return np.real(spec) ** 2 + np.imag(spec) ** 2
    return np.abs(spec) ** float(power)


def power_to_db(s, ref: float = 1.0, amin: float = 1e-10, top_db: float | None = 80.0):
    """A power spectrogram in decibels: ``10 log10(max(amin, s)) - 10 log10(max(amin, ref))``,
    then clipped from below at ``top_db`` under its largest value (over the whole array, as
    NNlib's and librosa's; None: no clipping).

    >>> import numpy as np, fluxml as fl
    >>> fl.nnlib.power_to_db(np.array([1.0, 10.0, 1e-12]))   # 1e-12: floored at amin, clipped
    array([  0.,  10., -70.])
    >>> fl.nnlib.power_to_db(np.array([1.0, 1e-12]), ref=10.0, top_db=None)
    array([ -10., -110.])
    """
    if not amin > 0:
        raise ValueError(f"power_to_db: amin must be positive; got {amin!r}")
    if top_db is not None and not top_db >= 0:
        raise ValueError(f"power_to_db: top_db must be None or non-negative; got {top_db!r}")
    s = _as_array(s)
    offset = 10.0 * math.log10(max(amin, float(ref)))
    db = 10.0 * np.log10(np.maximum(s, float(amin))) - offset
    if top_db is None:
        return db
    return np.maximum(db, np.max(db) - float(top_db))


def db_to_power(s_db, ref: float = 1.0):
    """The inverse of :func:`power_to_db` (before its clipping): ``ref * 10 ** (s_db / 10)``.

    >>> import numpy as np, fluxml as fl
    >>> fl.nnlib.db_to_power(np.array([0.0, 10.0, -20.0]))
    array([ 1.  , 10.  ,  0.01])
    """
    s_db = _as_array(s_db)
    return float(ref) * np.power(10.0, s_db * 0.1)


# --- mel filter banks -------------------------------------------------------------------------

def _hz_to_mel(f, scale: str):
    f = np.asarray(f, dtype=np.float64)
    if scale == "htk":
        return 2595.0 * np.log10(1.0 + f / 700.0)
    # Slaney's (the Auditory Toolbox's): linear below 1 kHz, logarithmic above
    linear = f / (200.0 / 3)
    log = 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(f >= 1000.0, log, linear)


def _mel_to_hz(m, scale: str):
    m = np.asarray(m, dtype=np.float64)
    if scale == "htk":
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    linear = m * (200.0 / 3)
    log = 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0))
    return np.where(m >= 15.0, log, linear)


def melscale_filterbanks(*, n_freqs: int, n_mels: int, sample_rate: int, fmin: float = 0.0,
                         fmax: float | None = None, mel_scale: str = "htk",
                         norm: str | None = None, dtype=np.float32) -> np.ndarray:
    """Triangular mel filter banks ``(n_freqs, n_mels)``, one filter a column, as NNlib's
    ``melscale_filterbanks`` and torchaudio's ``melscale_fbanks``: filter ``j`` rises from
    mel point ``j`` to ``j + 1`` and falls to ``j + 2``, over ``n_mels + 2`` points evenly
    spaced in mel from ``fmin`` to ``fmax`` (``sample_rate // 2`` by default), evaluated at
    ``n_freqs`` frequencies evenly spaced from 0 to ``sample_rate // 2`` (the bins of an STFT
    with ``n_fft = 2 (n_freqs - 1)``). Map a spectrogram ``(..., n_freqs, frames)`` to mels
    with ``np.swapaxes(np.swapaxes(s, -1, -2) @ fb, -1, -2)``.

    - ``mel_scale``: "htk" (``2595 log10(1 + f / 700)``, NNlib's only one) or "slaney".
    - ``norm``: None, or "slaney" to scale each filter by ``2 / (its width in Hz)`` (equal
      area).

    A filter that no frequency reaches (all zeros: ``n_mels`` too large for ``n_freqs``) is
    warned about, as NNlib and torchaudio do.

    >>> import numpy as np, fluxml as fl
    >>> fb = fl.nnlib.melscale_filterbanks(n_freqs=201, n_mels=4, sample_rate=16000)
    >>> fb.shape, fb.dtype
    ((201, 4), dtype('float32'))
    >>> [int(j) for j in np.argmax(fb, axis=0)]   # each filter peaks at a higher bin
    [12, 31, 62, 114]
    """
    n_freqs = positive_int("melscale_filterbanks", "n_freqs", n_freqs)
    n_mels = positive_int("melscale_filterbanks", "n_mels", n_mels)
    sample_rate = positive_int("melscale_filterbanks", "sample_rate", sample_rate)
    if mel_scale not in ("htk", "slaney"):
        raise ValueError(f"melscale_filterbanks: mel_scale must be 'htk' or 'slaney'; got "
                         f"{mel_scale!r}")
    if norm not in (None, "slaney"):
        raise ValueError(f"melscale_filterbanks: norm must be None or 'slaney'; got {norm!r}")
    fmax = float(sample_rate // 2) if fmax is None else float(fmax)
    if not 0 <= fmin < fmax:
        raise ValueError(f"melscale_filterbanks: need 0 <= fmin < fmax; got fmin = {fmin!r}, "
                         f"fmax = {fmax!r}")
    freqs = np.linspace(0.0, sample_rate // 2, n_freqs)
    mels = np.linspace(_hz_to_mel(fmin, mel_scale), _hz_to_mel(fmax, mel_scale), n_mels + 2)
    points = _mel_to_hz(mels, mel_scale)
    widths = np.diff(points)                                   # (n_mels + 1,)
    offsets = points[None, :] - freqs[:, None]                 # (n_freqs, n_mels + 2)
    rising = -offsets[:, :-2] / widths[:-1]
    falling = offsets[:, 2:] / widths[1:]
    banks = np.maximum(0.0, np.minimum(rising, falling))
    if norm == "slaney":
        banks = banks * (2.0 / (points[2:] - points[:-2]))
    if (banks.max(axis=0) == 0).any():
        warnings.warn(f"melscale_filterbanks: at least one of the n_mels = {n_mels} filters is "
                      f"all zeros: n_mels is too large for n_freqs = {n_freqs}", stacklevel=2)
    return banks.astype(dtype)
