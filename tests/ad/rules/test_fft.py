"""The np.fft family: every transform with its n=/s=, axes= and norm= arguments (through the
registry harness: finite differences to second order, both modes, NumPy's values, float32,
complex inputs), values against an explicit DFT matrix, and irfft's Hermitian weighting."""

import numpy as np
import pytest

import fluxml as fl
from fluxml.testing import check_grads
from tests.ad.rules.numpy_errors import raises_as_numpy

rng = np.random.default_rng(5)
X = rng.standard_normal((3, 6))
X3 = rng.standard_normal((2, 3, 5))
H = rng.standard_normal((3, 4)) + 1j * rng.standard_normal((3, 4))  # half spectra
Z = rng.standard_normal((4, 5)) + 1j * rng.standard_normal((4, 5))
W = rng.standard_normal(6)  # weights that make a real loss of real outputs
fft = np.fft

CASES = [
    (fft.fft, fft.fft, (X,)),
    (fft.fft, lambda x: fft.fft(x, n=4, axis=0, norm="ortho"), (X,)),
    (fft.fft, lambda z: fft.fft(z, n=8, norm="forward"), (Z,)),
    (fft.ifft, fft.ifft, (Z,)),
    (fft.ifft, lambda x: fft.ifft(x, n=3, axis=-2, norm="ortho"), (X,)),
    (fft.fft2, fft.fft2, (X3,)),
    (fft.fft2, lambda z: fft.fft2(z, s=(3, 7), norm="ortho"), (Z,)),
    (fft.ifft2, lambda z: fft.ifft2(z, axes=(0, 1), norm="forward"), (Z,)),
    (fft.fftn, fft.fftn, (X3,)),
    (fft.fftn, lambda x: fft.fftn(x, s=(4, 2), axes=(2, 0)), (X3,)),
    (fft.ifftn, lambda z: fft.ifftn(z, axes=(-1,), norm="ortho"), (Z,)),
    (fft.rfft, fft.rfft, (X,)),
    (fft.rfft, lambda x: fft.rfft(x, n=5, axis=0, norm="ortho"), (X,)),
    (fft.rfft, lambda x: fft.rfft(x, n=9, norm="forward"), (X,)),
    (fft.irfft, lambda h: fft.irfft(h) * W, (H,)),  # n = 6: even, with a Nyquist bin
    (fft.irfft, lambda h: fft.irfft(h, n=7, norm="ortho"), (H,)),  # odd: no Nyquist bin
    (fft.irfft, lambda h: fft.irfft(h, n=4, axis=0, norm="forward"), (H,)),  # pads 3 -> 3
    (fft.irfft, lambda h: fft.irfft(h, n=3), (H,)),  # crops 4 bins -> 2
    (fft.irfft, lambda x: fft.irfft(x, n=5), (X,)),  # a real half spectrum
    (fft.rfft2, fft.rfft2, (X3,)),
    (fft.rfft2, lambda x: fft.rfft2(x, s=(2, 4), norm="ortho"), (X,)),
    (fft.irfft2, fft.irfft2, (H,)),
    (fft.irfft2, lambda h: fft.irfft2(h, s=(4, 5), norm="forward"), (H,)),
    (fft.rfftn, fft.rfftn, (X3,)),
    (fft.rfftn, lambda x: fft.rfftn(x, axes=(0, 2), norm="ortho"), (X3,)),
    (fft.irfftn, fft.irfftn, (Z,)),
    (fft.irfftn, lambda z: fft.irfftn(z, s=(3, 3, 6), axes=(1, 0, 2)), (Z[None] * 1.0,)),
    (fft.fftshift, fft.fftshift, (X,)),
    (fft.fftshift, lambda z: fft.fftshift(z, axes=1), (Z,)),
    (fft.ifftshift, lambda x: fft.ifftshift(x, axes=(0,)), (X3,)),
    # no rules before (DifferentiationError): the Hermitian transforms
    (fft.hfft, fft.hfft, (H,)),
    (fft.hfft, lambda h: fft.hfft(h, n=7, axis=0, norm="ortho"), (H,)),
    (fft.hfft, lambda x: fft.hfft(x, norm="forward"), (X,)),
    (fft.ihfft, fft.ihfft, (X,)),
    (fft.ihfft, lambda x: fft.ihfft(x, n=8, axis=0, norm="backward"), (X,)),
    # round trips and a real loss through a spectrum
    (fft.ifft, lambda x: np.real(fft.ifft(fft.fft(x) * np.exp(-np.arange(6.0, like=x)))), (X,)),
    (fft.rfft, lambda x: fft.irfft(fft.rfft(x) ** 2, n=6), (X,)),  # rfft: real inputs only
]


def dft(n, inverse=False):
    sign = 1 if inverse else -1
    k = np.arange(n)
    return np.exp(sign * 2j * np.pi * np.outer(k, k) / n)


def test_values_match_an_explicit_dft():
    x = rng.standard_normal(7)
    got, _ = fl.pullback(np.fft.fft, x)
    np.testing.assert_allclose(got, dft(7) @ x, atol=1e-12)
    h = rng.standard_normal(4) + 1j * rng.standard_normal(4)
    full = np.concatenate([h, np.conj(h[1:-1][::-1])])  # the Hermitian spectrum of n = 6
    full[0], full[3] = full[0].real, full[3].real
    got, _ = fl.pullback(np.fft.irfft, h)
    np.testing.assert_allclose(got, np.real(dft(6, inverse=True) @ full) / 6, atol=1e-12)


@pytest.mark.parametrize("n", [5, 6])
def test_irfft_gradient_weights_the_inner_bins_by_two(n):
    """The gradient of sum(irfft(h) * w): each inner bin stands for itself and its conjugate
    mirror, so its weight is 2; the edge bins (0, and n / 2 for even n) have weight 1 and no
    derivative in their imaginary parts (NumPy drops them)."""
    h = rng.standard_normal(n // 2 + 1) + 1j * rng.standard_normal(n // 2 + 1)
    w = rng.standard_normal(n)
    (g,) = fl.gradient(lambda h: np.sum(np.fft.irfft(h, n=n) * w), h)
    # independent: y_j = sum_k Re(c_jk h_k) with the matrix of the real-linear map written out
    want = np.zeros(len(h), complex)
    for k in range(len(h)):
        for step, weight in ((1.0, 1.0), (1j, -1j)):
            e = np.zeros(len(h), complex)
            e[k] = step
            want[k] += weight * np.sum(np.fft.irfft(e, n=n) * w)
    np.testing.assert_allclose(g, want, atol=1e-12)
    assert g[0].imag == 0 and (n % 2 or g[-1].imag == 0)


def test_parseval_through_rfft():
    x = rng.standard_normal(8)
    (g,) = fl.gradient(lambda x: np.sum(np.abs(np.fft.fft(x)) ** 2), x)
    np.testing.assert_allclose(g, 2 * 8 * x, rtol=1e-12)


def test_spectral_derivative_is_exact_on_a_sine():
    """A spectral method: d/dx by multiplying the spectrum by ik, differentiated in the
    amplitude of the sine."""
    n = 16
    t = 2 * np.pi * np.arange(n) / n
    k = np.fft.fftfreq(n, 1 / n)

    def energy(a):
        u = a * np.sin(3 * t)
        du = np.real(np.fft.ifft(1j * k * np.fft.fft(u)))
        return np.sum(du**2)

    (g,) = fl.gradient(energy, 0.7)
    np.testing.assert_allclose(g, 2 * 0.7 * 9 * n / 2, rtol=1e-10)
    check_grads(energy, 0.7)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="fft.*norm"):
        fl.gradient(lambda x: np.sum(np.abs(np.fft.fft(x, norm="bad"))), X)
    with pytest.raises(fl.DifferentiationError, match="out="):
        fl.gradient(lambda x: np.sum(np.abs(np.fft.fft(x, out=np.zeros(6, complex)))), X[0])
    with pytest.raises(fl.DifferentiationError, match=r"np\.fft\.rfft.*complex"):
        fl.gradient(lambda z: np.sum(np.abs(np.fft.rfft(z))), Z)


def test_hermitian_transforms_are_numpys():
    # values to the bit, the normalisation directions swapped as NumPy's, its norm error
    for f, x in [(lambda h: fft.hfft(h, n=5, norm="ortho"), H), (fft.ihfft, X),
                 (lambda x: fft.ihfft(x, norm="forward"), X3), (lambda h: fft.hfft(h), H)]:
        want = f(x)
        got = fl.pullback(f, x)[0]
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    raises_as_numpy(ValueError, lambda h: fft.hfft(h, norm="both"), H)
