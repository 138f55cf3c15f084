"""Audio: windows against their cosine formulas, stft against a DFT summed by loops here over
frames cut out by index, istft against an overlap-add loop and as stft's inverse, mel filter
banks against the HTK and Slaney formulas written out, decibels, gradients of every function
(first and second order, float64), and the errors for bad arguments. (Checked by hand against
torch.stft, torch.istft and torch's windows: tests/nnlib/torch_audio_parity.py.)"""

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fluxml as fl
from fluxml import nnlib
from fluxml.testing import check_grads

RNG = np.random.default_rng(7)


# --- references ---------------------------------------------------------------------------------

def padded(x, half, mode):
    """``x`` (last axis) padded by ``half`` on each side, index by index."""
    n = x.shape[-1]
    out = []
    for i in range(-half, n + half):
        if 0 <= i < n:
            out.append(x[..., i])
        elif mode == "constant":
            out.append(np.zeros_like(x[..., 0]))
        elif mode == "reflect":
            out.append(x[..., -i if i < 0 else 2 * (n - 1) - i])
        elif mode == "replicate":
            out.append(x[..., min(max(i, 0), n - 1)])
        else:  # circular
            out.append(x[..., i % n])
    return np.stack(out, axis=-1)


def naive_stft(x, n_fft, hop, window, center=True, mode="reflect", normalized=False):
    """``sum_j w[j] x[m hop + j] exp(-2 pi i j k / n_fft)`` by loops; (N, T) -> (N, F, M)."""
    w = np.ones(n_fft) if window is None else np.asarray(window, dtype=np.float64)
    left = (n_fft - len(w)) // 2
    w = np.concatenate([np.zeros(left), w, np.zeros(n_fft - len(w) - left)])
    if center:
        x = padded(x, n_fft // 2, mode)
    frames = 1 + (x.shape[-1] - n_fft) // hop
    bins = n_fft if np.iscomplexobj(x) else n_fft // 2 + 1
    out = np.zeros((x.shape[0], bins, frames), dtype=np.complex128)
    for n in range(x.shape[0]):
        for m in range(frames):
            for k in range(bins):
                out[n, k, m] = sum(w[j] * x[n, m * hop + j] * np.exp(-2j * np.pi * j * k / n_fft)
                                   for j in range(n_fft))
    return out / math.sqrt(n_fft) if normalized else out


def naive_istft(spec, n_fft, hop, window, center=True, length=None):
    """Weighted overlap-add of each frame's inverse DFT, divided by the summed squared window
    (torch.istft's estimate), by loops; (N, F, M) -> (N, length)."""
    frames = spec.shape[-1]
    total = n_fft + hop * (frames - 1)
    out = np.zeros((spec.shape[0], total))
    envelope = np.zeros(total)
    for m in range(frames):
        frame = np.fft.irfft(spec[:, :, m], n=n_fft, axis=-1)
        for j in range(n_fft):
            out[:, m * hop + j] += window[j] * frame[:, j]
            envelope[m * hop + j] += window[j] ** 2
    start = n_fft // 2 if center else 0
    end = start + length if length is not None else (total - start if center else total)
    result = np.zeros((spec.shape[0], end - start))
    stop = min(end, total)
    result[:, :stop - start] = out[:, start:stop] / envelope[start:stop]
    return result


def hz_to_mel(f, scale):
    if scale == "htk":
        return 2595 * math.log10(1 + f / 700)
    return f / (200 / 3) if f < 1000 else 15 + math.log(f / 1000) * 27 / math.log(6.4)


def mel_to_hz(m, scale):
    if scale == "htk":
        return 700 * (10 ** (m / 2595) - 1)
    return m * 200 / 3 if m < 15 else 1000 * math.exp((m - 15) * math.log(6.4) / 27)


def naive_filterbanks(n_freqs, n_mels, sample_rate, fmin, fmax, scale, norm):
    lo, hi = hz_to_mel(fmin, scale), hz_to_mel(fmax, scale)
    points = [mel_to_hz(lo + (hi - lo) * i / (n_mels + 1), scale) for i in range(n_mels + 2)]
    freqs = [(sample_rate // 2) * i / (n_freqs - 1) for i in range(n_freqs)]
    fb = np.zeros((n_freqs, n_mels))
    for j in range(n_mels):
        left, centre, right = points[j:j + 3]
        for i, f in enumerate(freqs):
            if left <= f <= centre:
                fb[i, j] = (f - left) / (centre - left)
            elif centre < f <= right:
                fb[i, j] = (right - f) / (right - centre)
        if norm == "slaney":
            fb[:, j] *= 2 / (right - left)
    return fb


# --- windows --------------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2, 5, 8])
@pytest.mark.parametrize("periodic", [True, False])
def test_windows_follow_their_formulas(n, periodic):
    period = n if periodic else n - 1
    hann = [0.5 - 0.5 * math.cos(2 * math.pi * k / period) if n > 1 else 1.0 for k in range(n)]
    hamming = [0.6 - 0.3 * math.cos(2 * math.pi * k / period) if n > 1 else 1.0
               for k in range(n)]
    w = nnlib.hann_window(n, periodic=periodic)
    assert w.dtype == np.float32
    np.testing.assert_allclose(w, hann, atol=1e-7)
    np.testing.assert_allclose(nnlib.hamming_window(n, np.float64, periodic=periodic,
                                                    alpha=0.6, beta=0.3), hamming, atol=1e-15)
    if n > 1:  # one period of the symmetric window one longer (length 1 is [1], as torch's)
        np.testing.assert_allclose(nnlib.hann_window(n + 1, np.float64, periodic=False)[:-1],
                                   nnlib.hann_window(n, np.float64), atol=1e-15)


# --- stft -------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape,n_fft,hop,win_len,center,mode,normalized", [
    ((13,), 4, 1, 4, True, "reflect", False),
    ((2, 17), 6, 2, 5, True, "reflect", True),
    ((1, 15), 5, 3, 5, False, "reflect", False),
    ((2, 9), 4, 2, 2, True, "constant", False),
    ((1, 11), 6, 4, 6, True, "replicate", False),
    ((2, 10), 4, 3, 3, True, "circular", True),
])
def test_stft_against_a_dft_loop(shape, n_fft, hop, win_len, center, mode, normalized):
    x = RNG.standard_normal(shape)
    w = RNG.uniform(0.2, 1.0, win_len)
    got = nnlib.stft(x, n_fft, hop, w, center=center, pad_mode=mode, normalized=normalized)
    want = naive_stft(np.atleast_2d(x), n_fft, hop, w, center, mode, normalized)
    assert got.shape == (want.shape if len(shape) == 2 else want.shape[1:])
    np.testing.assert_allclose(got, want.reshape(got.shape), atol=1e-12)


def test_stft_dtypes_complex_input_and_no_window():
    x = RNG.standard_normal((2, 12)).astype(np.float32)
    spec = nnlib.stft(x, 4, 2, nnlib.hann_window(4, np.float64))   # a float64 window is cast
    assert spec.dtype == np.complex64 and spec.shape == (2, 3, 7)
    np.testing.assert_allclose(spec, naive_stft(x, 4, 2, nnlib.hann_window(4)), atol=1e-5)
    z = RNG.standard_normal((1, 10)) + 1j * RNG.standard_normal((1, 10))
    full = nnlib.stft(z, 4, 3)                  # complex: every bin, no window
    assert full.shape == (1, 4, 4)
    np.testing.assert_allclose(full, naive_stft(z, 4, 3, None), atol=1e-12)
    ints = nnlib.stft(np.arange(8), 4, 2, center=False)
    assert ints.dtype == np.complex128
    np.testing.assert_allclose(ints, naive_stft(np.arange(8.0)[None], 4, 2, None, False)[0])


@settings(max_examples=25, deadline=None)
@given(batch=st.integers(1, 2), length=st.integers(2, 14), n_fft=st.integers(1, 8),
       hop=st.integers(1, 5), win=st.integers(1, 8), center=st.booleans(),
       mode=st.sampled_from(["reflect", "constant", "replicate", "circular"]),
       normalized=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_stft_fuzz_against_the_loop_and_istft_inverts_it(batch, length, n_fft, hop, win, center,
                                                         mode, normalized, seed):
    win = min(win, n_fft)
    x = np.random.default_rng(seed).standard_normal((batch, length))
    w = np.random.default_rng(seed + 1).uniform(0.2, 1.0, win)
    fits = (n_fft // 2 < length if center and mode == "reflect" else True) and \
        n_fft <= length + (2 * (n_fft // 2) if center else 0)
    if not fits:
        with pytest.raises(ValueError, match="stft: "):
            nnlib.stft(x, n_fft, hop, w, center=center, pad_mode=mode)
        return
    spec = nnlib.stft(x, n_fft, hop, w, center=center, pad_mode=mode, normalized=normalized)
    want = naive_stft(x, n_fft, hop, w, center, mode, normalized)
    np.testing.assert_allclose(spec, want, atol=1e-12)
    if win == n_fft and hop <= n_fft:  # no zero in the window: every sample can be recovered
        y = nnlib.istft(spec, n_fft, hop, w, center=center, normalized=normalized)
        np.testing.assert_allclose(y, x[:, :y.shape[1]], atol=1e-12)


# --- istft --------------------------------------------------------------------------------------

@pytest.mark.parametrize("n_fft,hop,length,dtype", [
    (8, 2, None, np.float64), (8, 4, 29, np.float64), (9, 3, 30, np.float32),
    (16, 4, 30, np.float32),
])
def test_istft_inverts_stft_for_a_cola_window(n_fft, hop, length, dtype):
    x = RNG.standard_normal((2, 30)).astype(dtype)
    w = nnlib.hann_window(n_fft, dtype)
    spec = nnlib.stft(x, n_fft, hop, w)
    y = nnlib.istft(spec, n_fft, hop, w, length=length)
    assert y.dtype == dtype
    tol = 1e-5 if dtype == np.float32 else 1e-12
    n = y.shape[-1] if length is None else min(length, 30)
    np.testing.assert_allclose(y[:, :n], x[:, :n], atol=tol)
    np.testing.assert_allclose(nnlib.istft(spec[1], n_fft, hop, w, length=length), y[1])


@pytest.mark.parametrize("center,length", [(True, None), (True, 30), (False, None)])
def test_istft_of_a_modified_spectrum_against_an_overlap_add_loop(center, length):
    w = RNG.uniform(0.3, 1.0, 6)
    spec = nnlib.stft(RNG.standard_normal((2, 17)), 6, 2, w, center=center)
    spec = spec * (1 + 0.5 * RNG.standard_normal(spec.shape))
    got = nnlib.istft(spec, 6, 2, w, center=center, length=length)
    np.testing.assert_allclose(got, naive_istft(spec, 6, 2, w, center, length), atol=1e-12)


def test_istft_normalized_and_complex_round_trips():
    x = RNG.standard_normal(20)
    spec = nnlib.stft(x, 8, 2, nnlib.hamming_window(8, np.float64), normalized=True)
    np.testing.assert_allclose(nnlib.istft(spec, 8, 2, nnlib.hamming_window(8, np.float64),
                                           normalized=True, length=20), x, atol=1e-12)
    z = RNG.standard_normal(20) + 1j * RNG.standard_normal(20)
    back = nnlib.istft(nnlib.stft(z, 8, 2), 8, 2, length=20, return_complex=True)
    np.testing.assert_allclose(back, z, atol=1e-12)


# --- spectrogram and decibels -------------------------------------------------------------------

def test_spectrogram_batch_axes_pad_power_and_window_normalisation():
    x = RNG.standard_normal((2, 3, 14))
    w = nnlib.hann_window(6, np.float64)
    spec = nnlib.stft(np.pad(x.reshape(6, 14), ((0, 0), (2, 2))), 6, 2, w)
    spec = spec.reshape(2, 3, *spec.shape[1:])
    np.testing.assert_allclose(nnlib.spectrogram(x, 6, 2, w, pad=2), np.abs(spec) ** 2)
    norm = np.sqrt(np.sum(w ** 2))
    np.testing.assert_allclose(nnlib.spectrogram(x, 6, 2, w, pad=2, power=1,
                                                 window_normalized=True), np.abs(spec) / norm)
    np.testing.assert_allclose(nnlib.spectrogram(x, 6, 2, w, pad=2, power=None), spec)
    np.testing.assert_allclose(nnlib.spectrogram(x, 6, 2, w, pad=2, power=0), spec)
    single = nnlib.spectrogram(x[0, 0].astype(np.float32), 6, 2, power=1.5)
    assert single.dtype == np.float32 and single.shape == (4, 8)


def test_decibels():
    s = np.array([[1e-12, 1e-3], [1.0, 100.0]], dtype=np.float32)
    db = nnlib.power_to_db(s, ref=10.0, top_db=None)
    assert db.dtype == np.float32
    np.testing.assert_allclose(db, [[-110, -40], [-10, 10]], rtol=1e-6)
    np.testing.assert_allclose(nnlib.power_to_db(s, ref=10.0, top_db=30.0),
                               [[-20, -20], [-10, 10]], rtol=1e-6)
    np.testing.assert_allclose(nnlib.db_to_power(nnlib.power_to_db(s[1:], top_db=None)), s[1:],
                               rtol=1e-6)
    assert nnlib.db_to_power(np.float32(20.0), ref=2.0) == pytest.approx(200.0)


# --- mel filter banks -------------------------------------------------------------------------

@pytest.mark.parametrize("scale,norm,fmin,fmax", [
    ("htk", None, 0.0, None), ("htk", "slaney", 50.0, 7000.0), ("slaney", None, 0.0, None),
    ("slaney", "slaney", 300.0, 6000.0),
])
def test_melscale_filterbanks_against_the_formulas(scale, norm, fmin, fmax):
    fb = nnlib.melscale_filterbanks(n_freqs=65, n_mels=10, sample_rate=16000, fmin=fmin,
                                    fmax=fmax, mel_scale=scale, norm=norm, dtype=np.float64)
    want = naive_filterbanks(65, 10, 16000, fmin, 8000.0 if fmax is None else fmax, scale, norm)
    np.testing.assert_allclose(fb, want, rtol=1e-10, atol=1e-15)
    assert hz_to_mel(1000.0, "slaney") == 15 and abs(hz_to_mel(1000.0, "htk") - 1000) < 0.1
    assert nnlib.melscale_filterbanks(n_freqs=65, n_mels=10, sample_rate=16000).dtype == \
        np.float32


def test_melscale_filterbanks_warns_about_an_empty_filter():
    with pytest.warns(UserWarning, match="all zeros"):
        nnlib.melscale_filterbanks(n_freqs=5, n_mels=20, sample_rate=8000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nnlib.melscale_filterbanks(n_freqs=201, n_mels=20, sample_rate=8000)


# --- gradients ----------------------------------------------------------------------------------

def test_gradients_of_stft_and_istft():
    x, w = RNG.standard_normal((2, 7)), RNG.uniform(0.5, 1.0, 4)
    check_grads(lambda x, w: nnlib.stft(x, 4, 2, w), x, w)
    check_grads(lambda x: nnlib.stft(x, 4, 3, center=False, normalized=True), x)
    spec = nnlib.stft(x, 4, 1, w) * (1 + 0.3 * RNG.standard_normal((2, 3, 8)))
    check_grads(lambda s, w: nnlib.istft(s, 4, 1, w, length=7), spec, w)


def test_gradients_of_spectrogram_and_decibels():
    x, w = RNG.standard_normal((1, 2, 6)), RNG.uniform(0.5, 1.0, 4)
    check_grads(lambda x, w: nnlib.spectrogram(x, 4, 2, w, pad=1, window_normalized=True), x, w)
    check_grads(lambda x: nnlib.spectrogram(x, 4, 2, power=1.0), x)  # no bin is zero here
    s = RNG.uniform(0.1, 2.0, (2, 5))
    check_grads(lambda s: nnlib.power_to_db(s, ref=2.0, top_db=None), s)
    check_grads(lambda s: nnlib.power_to_db(s, top_db=5.0), s)  # the clip from the maximum
    check_grads(lambda d: nnlib.db_to_power(d, ref=3.0), RNG.standard_normal(4))


def test_a_mel_spectrogram_trains_through_fl_gradient():
    fb = nnlib.melscale_filterbanks(n_freqs=5, n_mels=3, sample_rate=8000, dtype=np.float64)
    x = RNG.standard_normal((2, 16))
    w = nnlib.hann_window(8, np.float64)

    def loss(x):
        mel = np.swapaxes(np.swapaxes(nnlib.spectrogram(x, 8, 2, w), -1, -2) @ fb, -1, -2)
        return np.sum(nnlib.power_to_db(mel + 1e-3, top_db=None))

    check_grads(loss, x, order=1)
    assert fl.gradient(loss, x)[0].shape == x.shape


# --- errors ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("call,match", [
    (lambda: nnlib.stft(np.zeros((1, 2, 8)), 4), r"stft: x must be .*\(N, T\); got shape"),
    (lambda: nnlib.stft(np.zeros(8), 4, 0), r"hop_length must be a positive int; got 0"),
    (lambda: nnlib.stft(np.zeros(8), 2), r"hop_length .* got 0 \(the default n_fft // 4"),
    (lambda: nnlib.stft(np.zeros(8), 0), r"n_fft must be a positive int; got 0"),
    (lambda: nnlib.stft(np.zeros(8), 4, 1, np.ones(5)), r"window must be .* n_fft = 4 .* \(5,\)"),
    (lambda: nnlib.stft(np.zeros(8), 4, 1, np.ones((2, 2))), r"window must be a 1-d .*\(2, 2\)"),
    (lambda: nnlib.stft(np.zeros(8), 10, 1, center=False), r"n_fft = 10 is larger than the "
                                                           r"waveform of 8 samples"),
    (lambda: nnlib.stft(np.zeros(3), 8, 1), r"pads n_fft // 2 = 4 .* got a waveform of 3"),
    (lambda: nnlib.stft(np.zeros(3), 8, 1, pad_mode="constant", center=False),
     r"n_fft = 8 is larger"),
    (lambda: nnlib.stft(np.zeros(8), 4, 1, pad_mode="edge"), r"pad_mode must be one of"),
    (lambda: nnlib.istft(np.zeros((3, 4)), 4, 1), r"istft: y must be a complex spectrum"),
    (lambda: nnlib.istft(np.zeros((4, 4), complex), 4, 1), r"3 frequency bins .* \(4, 4\)"),
    (lambda: nnlib.istft(np.zeros((3,), complex), 4, 1), r"istft: y must be a spectrum"),
    (lambda: nnlib.istft(np.ones((3, 4), complex), 4, 1, np.ones(5)), r"istft: window must"),
    (lambda: nnlib.istft(np.ones((3, 4), complex), 4, 4, nnlib.hann_window(4)), r"NOLA"),
    (lambda: nnlib.istft(np.ones((3, 4), complex), 4, 1, length=0), r"length must be a"),
    (lambda: nnlib.spectrogram(np.zeros(8), 4, 1, power=-1), r"power must be None, 0"),
    (lambda: nnlib.spectrogram(np.zeros(8), 4, 1, pad=-1), r"pad must be a non-negative int"),
    (lambda: nnlib.power_to_db(np.ones(3), amin=0), r"amin must be positive; got 0"),
    (lambda: nnlib.power_to_db(np.ones(3), top_db=-1), r"top_db must be None or non-neg"),
    (lambda: nnlib.hann_window(0), r"window_length must be a positive int; got 0"),
    (lambda: nnlib.hann_window(4, np.int32), r"dtype must be a float dtype; got int32"),
    (lambda: nnlib.melscale_filterbanks(n_freqs=5, n_mels=0, sample_rate=8000), r"n_mels"),
    (lambda: nnlib.melscale_filterbanks(n_freqs=5, n_mels=2, sample_rate=8000, fmin=5000.0),
     r"need 0 <= fmin < fmax; got fmin = 5000.0, fmax = 4000.0"),
    (lambda: nnlib.melscale_filterbanks(n_freqs=5, n_mels=2, sample_rate=8000,
                                        mel_scale="mel"), r"mel_scale must be 'htk' or"),
])
def test_bad_arguments_are_named(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()
