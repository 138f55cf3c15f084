"""Rules of complex values: angle, real_if_close, and the cases the registry harness runs with
complex arguments beyond its real cases made complex (``test_registry.COMPLEX_CASES``)."""

import numpy as np

rng = np.random.default_rng(3)
Z = rng.standard_normal((3, 4)) + 1j * rng.standard_normal((3, 4))
X = rng.standard_normal((3, 4))

CASES = [
    (np.angle, np.angle, (Z,)),
    (np.angle, lambda z: np.angle(z, deg=True) * np.abs(z), (Z,)),
    (np.angle, lambda x: np.angle(x + 0.5j), (X,)),
    (np.real_if_close, lambda x: np.real_if_close(x * (1 + 1e-16j)) * x, (X,)),
    (np.real_if_close, lambda z: np.real_if_close(z * z), (Z,)),
    (np.absolute, lambda x: np.abs(np.exp(1j * x) + 0.5), (X,)),
    (np.real, lambda x: np.real(np.exp(1j * x) * x), (X,)),
    (np.imag, lambda z: np.imag(z * z), (Z,)),
]
