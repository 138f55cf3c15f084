"""The XLA back end's kernels of the ``scipy.special`` ufuncs that have rules
(``ad/rules/special.py``): ``jax.scipy.special``'s namesakes, or NumPy-level identities where
JAX has none (``log_expit``, ``erfcinv``, ``rgamma``). The primitives are named as the ufuncs
(``psi`` is ``digamma``).

Each is checked against SciPy's values (tests/compiler/test_xla.py): JAX's own ``log_ndtr`` is
off by up to 7% for x > 0 and its ``digamma`` is NaN at 0, so those are mended here.

No lowering (a clear refusal): the Bessel functions ``j0``, ``j1``, ``y0``, ``y1``, ``iv``,
``jv``, ``yn``, ``yv``, ``ive``, which JAX lacks for real orders; ``beta`` and ``betaln``
(so betainc's derivative), whose JAX forms differ from SciPy's by up to 1e-6 relative.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import jax.scipy.special as jsp


def _log_expit(x):
    return jax.nn.log_sigmoid(x)


def _erfcinv(y):
    """erfc(x) = 2 ndtr(-x sqrt 2), so erfcinv(y) = -ndtri(y / 2) / sqrt 2."""
    return -jsp.ndtri(y / 2) / math.sqrt(2)


def _rgamma(x):
    """1 / gamma(x): 0 at gamma's poles x = 0, -1, -2, ... (as SciPy's)."""
    pole = (x <= 0) & (x == jnp.round(x))
    return jnp.where(pole, 0.0, 1 / jsp.gamma(jnp.where(pole, 0.5, x))).astype(x.dtype)


def _loggamma(x):
    """SciPy's loggamma of real x: log gamma(x) for x >= 0, NaN below."""
    return jnp.where(x < 0, jnp.nan, jsp.gammaln(x))


def _log_ndtr(x):
    """log Phi(x): log1p(-Phi(-x)) for x > 0 (JAX's log_ndtr loses the small Phi(-x) there),
    and log(erfcx(-x / sqrt 2) / 2) - x^2 / 2 below (finite far into the tail)."""
    below = jnp.minimum(x, 0)
    return jnp.where(x > 0, jnp.log1p(-jsp.ndtr(-jnp.abs(x))),
                     jnp.log(jsp.erfcx(-below / math.sqrt(2)) / 2) - below * below / 2)


def _digamma(x):
    """digamma, with SciPy's -inf at +0 and +inf at -0 (JAX's: NaN)."""
    return jnp.where(x == 0, jnp.copysign(jnp.inf, -x), jsp.digamma(x))


def _polygamma(x, n):
    """SciPy's polygamma(n, x), for n = 1 and 2 (digamma's first two derivatives): JAX's is
    right for x > 0 only, so below the reflection formula (psi_1(x) = pi^2 / sin^2(pi x) -
    psi_1(1 - x), and its derivative), with SciPy's infinities at the poles."""
    if n not in (1, 2):
        raise TypeError(f"polygamma of order {n} has no XLA lowering (orders 1 and 2 have)")
    pos = jsp.polygamma(n, jnp.where(x > 0, x, 1.0))
    mirrored = jsp.polygamma(n, jnp.where(x > 0, 1.0, 1 - x))
    s, c = jnp.sin(jnp.pi * x), jnp.cos(jnp.pi * x)
    if n == 1:
        below, pole = jnp.pi**2 / s**2 - mirrored, jnp.inf
    else:
        below, pole = -2 * jnp.pi**3 * c / s**3 + mirrored, -jnp.inf
    return jnp.where(x > 0, pos, jnp.where(x == jnp.round(x), pole, below))


# primitive name -> kernel, called with the primitive's inputs (and parameters by keyword)
PRIMITIVES: dict = {
    "expit": jsp.expit, "logit": jsp.logit, "log_expit": _log_expit, "erfc": jsp.erfc,
    "erfcx": jsp.erfcx, "erfinv": jsp.erfinv, "erfcinv": _erfcinv, "ndtr": jsp.ndtr,
    "log_ndtr": _log_ndtr, "ndtri": jsp.ndtri, "gamma": jsp.gamma, "gammaln": jsp.gammaln,
    "loggamma": _loggamma,
    "psi": _digamma, "entr": jsp.entr, "i0": jsp.i0, "i1": jsp.i1, "rgamma": _rgamma,
    "gammainc": jsp.gammainc, "gammaincc": jsp.gammaincc, "betainc": jsp.betainc,
    "xlogy": jsp.xlogy, "xlog1py": jsp.xlog1py, "rel_entr": jsp.rel_entr,
    "polygamma": _polygamma,
}

# scipy.special ufuncs the engine runs untraced on the values (no derivative), by name
UNTRACED: dict = {"gammasgn": jsp.gammasgn}
