"""fluxml.nnlib's audio functions checked against torch.stft, torch.istft and torch's windows
(not part of the suite: PyTorch is no dependency of fluxml). Run with

    PYTHONPATH=src /work/.bench-venv/bin/python tests/nnlib/torch_audio_parity.py

Each line compares a forward value and the gradients with respect to every input (waveform,
spectrum, window) of the same real loss ``sum(a * real(y) + b * imag(y))``, random ``a`` and
``b`` (a real loss, so that torch's conjugate cotangent convention and fluxml's unconjugated
one give the same gradient, up to the conjugate for a complex input), and prints the largest
absolute difference. It fails on the first mismatch beyond the tolerance of the dtype.
"""

import numpy as np
import torch

import fluxml as fl
from fluxml import nnlib

rng = np.random.default_rng(0)
WORST = {}


def _loss_np(y, a, b):
    return np.sum(a * np.real(y) + b * np.imag(y)) if np.iscomplexobj(y) else np.sum(a * y)


def _loss_t(y, a, b):
    if y.is_complex():
        return torch.sum(torch.tensor(a) * y.real + torch.tensor(b) * y.imag)
    return torch.sum(torch.tensor(a) * y)


def compare(name, ours, theirs, *arrays, tol=None):
    tensors = [torch.tensor(x, requires_grad=True) for x in arrays]
    y_t = theirs(*tensors)
    y = ours(*arrays)
    assert y.shape == tuple(y_t.shape), f"{name}: shape {y.shape} != {tuple(y_t.shape)}"
    theirs_dtype = str(y_t.dtype).removeprefix("torch.")
    assert str(y.dtype) == theirs_dtype, f"{name}: dtype {y.dtype} != {theirs_dtype}"
    err = np.max(np.abs(y - y_t.detach().numpy()))
    a = rng.standard_normal(y.shape).astype(np.real(y).dtype)
    b = rng.standard_normal(y.shape).astype(np.real(y).dtype)
    grads_t = torch.autograd.grad(_loss_t(y_t, a, b), tensors)
    grads = fl.gradient(lambda *xs: _loss_np(ours(*xs), a, b), *arrays)
    # for a complex input z = x + iy fluxml's gradient is df/dx - i df/dy, torch's its conjugate
    err_g = max(np.max(np.abs(g - np.conj(gt.numpy()))) for g, gt in zip(grads, grads_t))
    single = np.real(y).dtype == np.float32
    tol = tol or (2e-4 if single else 1e-10)
    print(f"{name:72s} value {err:.1e}  gradient {err_g:.1e}")
    assert err < tol and err_g < tol, name
    key = "float32" if single else "float64"
    worst = WORST.get(key, (0.0, 0.0))
    WORST[key] = (max(worst[0], err), max(worst[1], err_g))


def windows():
    for n in (1, 2, 7, 16):
        for periodic in (True, False):
            for ours, theirs in ((nnlib.hann_window, torch.hann_window),
                                 (nnlib.hamming_window, torch.hamming_window)):
                w = ours(n, periodic=periodic)
                w_t = theirs(n, periodic=periodic)
                assert w.dtype == np.float32 and w.shape == tuple(w_t.shape)
                err = np.max(np.abs(w - w_t.numpy()))
                print(f"{f'{ours.__name__}({n}, periodic={periodic})':72s} value {err:.1e}")
                assert err < 1e-6


def stft_cases():
    for dtype in (np.float64, np.float32):
        for shape, n_fft, hop, win_len, center, mode, normalized in (
            ((40,), 8, 2, 8, True, "reflect", False),
            ((3, 37), 9, 3, 9, True, "reflect", True),
            ((2, 50), 16, 5, 11, True, "constant", False),
            ((2, 33), 8, 8, 8, False, "reflect", False),
            ((1, 20), 6, 1, 4, True, "replicate", False),
            ((2, 25), 10, 4, 10, True, "circular", True),
            ((2, 12), 12, 3, 12, False, "reflect", False),
        ):
            x = rng.standard_normal(shape).astype(dtype)
            w = rng.uniform(0.2, 1.0, win_len).astype(dtype)
            opts = dict(center=center, pad_mode=mode, normalized=normalized)
            compare(f"stft {np.dtype(dtype)} x{shape} n_fft {n_fft} hop {hop} window "
                    f"{win_len} {'center ' + mode if center else 'no centre'}"
                    f"{' normalized' if normalized else ''}",
                    lambda x, w: nnlib.stft(x, n_fft, hop, w, **opts),
                    lambda x, w: torch.stft(x, n_fft, hop, win_length=w.shape[0], window=w,
                                            return_complex=True, **opts),
                    x, w)
    x = (rng.standard_normal((2, 30)) + 1j * rng.standard_normal((2, 30)))
    w = rng.uniform(0.2, 1.0, 8)
    compare("stft complex128 x(2, 30) n_fft 8 hop 3: the full spectrum",
            lambda x, w: nnlib.stft(x, 8, 3, w),
            lambda x, w: torch.stft(x, 8, 3, window=w, return_complex=True, onesided=False),
            x, w)


def istft_cases():
    for dtype in (np.float64, np.float32):
        for shape, n_fft, hop, window, center, normalized, length in (
            ((40,), 8, 2, "hann", True, False, None),
            ((3, 37), 9, 3, "hann", True, True, 37),
            ((2, 50), 16, 4, "hamming", True, False, 47),
            ((2, 33), 8, 2, "hamming", False, False, None),
            ((2, 33), 8, 4, "random", True, False, 40),
        ):
            x = rng.standard_normal(shape).astype(dtype)
            w = {"hann": nnlib.hann_window(n_fft, dtype),
                 "hamming": nnlib.hamming_window(n_fft, dtype),
                 "random": rng.uniform(0.3, 1.0, n_fft).astype(dtype)}[window]
            spec = nnlib.stft(x, n_fft, hop, w, center=center, normalized=normalized)
            # a modified spectrum (no signal has it): istft is then a least squares estimate
            spec = spec * (1 + 0.3 * rng.standard_normal(spec.shape)).astype(dtype)
            opts = dict(center=center, normalized=normalized, length=length)
            compare(f"istft {spec.dtype} {spec.shape} n_fft {n_fft} hop {hop} {window} "
                    f"{'center' if center else 'no centre'}{' normalized' if normalized else ''}"
                    f" length {length}",
                    lambda s, w: nnlib.istft(s, n_fft, hop, w, **opts),
                    lambda s, w: torch.istft(s, n_fft, hop, window=w, **opts),
                    spec, w)
    s = rng.standard_normal((2, 8, 9)) + 1j * rng.standard_normal((2, 8, 9))
    w = nnlib.hann_window(8, np.float64)
    compare("istft complex128 (2, 8, 9) return_complex (a full spectrum)",
            lambda s, w: nnlib.istft(s, 8, 2, w, return_complex=True),
            lambda s, w: torch.istft(s, 8, 2, window=w, onesided=False, return_complex=True),
            s, w)


def spectrogram_cases():
    x = rng.standard_normal((2, 3, 40))
    w = nnlib.hann_window(12, np.float64)
    for power in (2.0, 1.0, 0.5):
        compare(f"spectrogram (2, 3, 40) power {power} pad 3, window_normalized "
                "(torch: stft, abs ** power)",
                lambda x, w: nnlib.spectrogram(x, 12, 3, w, pad=3, power=power,
                                               window_normalized=True),
                lambda x, w: (torch.stft(torch.nn.functional.pad(x, (3, 3)).reshape(6, 46), 12,
                                         3, window=w, return_complex=True).abs() ** power
                              / w.pow(2).sum().sqrt() ** power).reshape(2, 3, 7, -1),
                x, w)


if __name__ == "__main__":
    windows()
    stft_cases()
    istft_cases()
    spectrogram_cases()
    for key, (err, err_g) in sorted(WORST.items()):
        print(f"largest differences, {key}: value {err:.1e}, gradient {err_g:.1e}")
    print("all equal within tolerance")
