"""Rules for ``scipy.special`` ufuncs, registered lazily: ``import fluxml`` never imports SciPy.

SciPy's special functions are NumPy ufuncs, so ``scipy.special.erf(tracer)`` reaches
``__array_ufunc__``. The first time a scipy.special ufunc misses the rule table, ``load``
(listed in ``core.LAZY_RULES``) registers this whole family.

Not covered, because they are Python functions that convert their argument with
``np.asarray`` before computing (which a traced array refuses, loudly, naming the function):
``scipy.special.softmax``, ``log_softmax``: write them with NumPy calls instead (``np.max``,
``np.exp``, ``np.sum``, ``np.log``), which are recorded; ``logsumexp``, ``polygamma`` and
``multigammaln``: use ``fluxml.scipy.special.logsumexp``, ``polygamma`` and ``multigammaln``.
``scipy.special.softplus`` is ``np.logaddexp(0, x)`` and just works.

At 0, ``entr``, ``xlogy`` and ``rel_entr`` have an infinite slope (``log 0``): their rules
return it (``-inf``/``inf``), as the limit of finite differences.
"""

from __future__ import annotations

import math
import sys

import numpy as np

from fluxml.ad.core import known_none, raw
from fluxml.ad.define import defjvp, defvjp, nondifferentiable, primitive, ufunc

SQRT_PI = math.sqrt(math.pi)
SQRT_2PI = math.sqrt(2 * math.pi)

# The scipy.special ufuncs that have rules here (the lazy loader looks for these).
NAMES = ("expit", "logit", "log_expit", "erf", "erfc", "erfcx", "erfinv", "erfcinv", "ndtr",
         "log_ndtr", "ndtri", "gamma", "gammaln", "loggamma", "digamma", "xlogy", "xlog1py",
         "entr", "rel_entr", "beta", "betaln", "i0", "i1", "iv", "j0", "j1", "jv", "ive", "y0",
         "y1", "yn", "yv", "rgamma", "gammasgn", "gammainc", "gammaincc", "betainc")

_loaded = False


def load(func) -> bool:
    """Register the rules when ``func`` is one of the scipy.special ufuncs above (once)."""
    global _loaded
    if _loaded or not isinstance(func, np.ufunc):
        return False
    special = sys.modules.get("scipy.special")
    if special is None or not any(func is getattr(special, n, None) for n in NAMES):
        return False
    _loaded = True
    _register(special)
    return True


def _special():
    # lazy: SciPy is optional, and slow to import
    import scipy.special

    return scipy.special


# polygamma(n, x) as a primitive with a static order n: d/dx polygamma(n, x) = polygamma(n+1, x).
def _polygamma(x, *, n):
    """SciPy's polygamma, as SciPy computes it (digamma for n = 0, else (-1)^(n+1) n!
    zeta(n+1, x)) but through its ufuncs alone, which a GPU's arrays reach too (CuPy hands
    them to cupyx.scipy.special; SciPy's polygamma converts its argument with np.asarray);
    float32 kept float32."""
    sp = _special()
    if np.ndim(n) == 0:
        out = sp.digamma(x) if n == 0 else \
            (-1.0) ** (n + 1) * math.factorial(n) * sp.zeta(n + 1.0, x)
    else:  # an order for each entry
        out = np.where(n == 0, sp.digamma(x),
                       (-1.0) ** (n + 1) * sp.gamma(n + 1.0) * sp.zeta(n + 1.0, x))
    return out.astype(np.float32) if getattr(x, "dtype", None) == np.float32 else out


POLYGAMMA = primitive("polygamma", _polygamma, keeps_output=False)
defvjp(POLYGAMMA, lambda g, ans, x, n: g * POLYGAMMA(x, n=n + 1))
defjvp(POLYGAMMA, lambda t, ans, x, n: t * POLYGAMMA(x, n=n + 1))


def _register(sp):
    # Each row: the function, its derivative as f(ans, x), and what that reads.
    _unary(sp.expit, lambda ans, x: ans * (1 - ans), keeps_inputs=False)
    _unary(sp.logit, lambda ans, x: 1 / (x * (1 - x)), keeps_output=False)
    _unary(sp.log_expit, lambda ans, x: sp.expit(-x), keeps_output=False)
    _unary(sp.erf, lambda ans, x: (2 / SQRT_PI) * np.exp(-(x * x)), keeps_output=False)
    _unary(sp.erfc, lambda ans, x: (-2 / SQRT_PI) * np.exp(-(x * x)), keeps_output=False)
    _unary(sp.erfcx, lambda ans, x: 2 * x * ans - 2 / SQRT_PI)
    _unary(sp.erfinv, lambda ans, x: (SQRT_PI / 2) * np.exp(ans * ans), keeps_inputs=False)
    _unary(sp.erfcinv, lambda ans, x: (-SQRT_PI / 2) * np.exp(ans * ans), keeps_inputs=False)
    _unary(sp.ndtr, lambda ans, x: np.exp(-0.5 * (x * x)) / SQRT_2PI, keeps_output=False)
    # log Phi(x): pdf / Phi = exp(log pdf - log Phi), finite far into both tails.
    _unary(sp.log_ndtr, lambda ans, x: np.exp(-0.5 * (x * x) - ans) / SQRT_2PI)
    _unary(sp.ndtri, lambda ans, x: SQRT_2PI * np.exp(0.5 * (ans * ans)), keeps_inputs=False)
    _unary(sp.gamma, lambda ans, x: ans * sp.digamma(x))
    _unary(sp.gammaln, lambda ans, x: sp.digamma(x), keeps_output=False)
    _unary(sp.loggamma, lambda ans, x: sp.digamma(x), keeps_output=False)  # real x > 0
    _unary(sp.digamma, lambda ans, x: POLYGAMMA(x, n=1), keeps_output=False)  # also sp.psi
    _unary(sp.entr, lambda ans, x: -(np.log(x) + 1), keeps_output=False)
    # Bessel functions through the order-shifting identities (no division by x).
    _unary(sp.i0, lambda ans, x: sp.i1(x), keeps_output=False)
    _unary(sp.i1, lambda ans, x: (sp.i0(x) + sp.iv(2, x)) / 2, keeps_output=False)
    _unary(sp.j0, lambda ans, x: -sp.j1(x), keeps_output=False)
    _unary(sp.j1, lambda ans, x: (sp.j0(x) - sp.jv(2, x)) / 2, keeps_output=False)

    # iv(v, x), jv(v, x): derivatives in x only (the order v gets none).
    iv = ufunc(sp.iv, keeps_output=False)
    defvjp(iv, None, lambda g, ans, v, x: g * (sp.iv(v - 1, x) + sp.iv(v + 1, x)) / 2)
    defjvp(iv, None, lambda t, ans, v, x: t * (sp.iv(v - 1, x) + sp.iv(v + 1, x)) / 2)
    jv = ufunc(sp.jv, keeps_output=False)
    defvjp(jv, None, lambda g, ans, v, x: g * (sp.jv(v - 1, x) - sp.jv(v + 1, x)) / 2)
    defjvp(jv, None, lambda t, ans, v, x: t * (sp.jv(v - 1, x) - sp.jv(v + 1, x)) / 2)

    # Bessel functions of the second kind; ive(v, x) = iv(v, x) exp(-|x|).
    _unary(sp.y0, lambda ans, x: -sp.y1(x), keeps_output=False)
    _unary(sp.y1, lambda ans, x: (sp.y0(x) - sp.yn(2, x)) / 2, keeps_output=False)
    for bessel in (sp.yn, sp.yv):
        prim = ufunc(bessel, keeps_output=False)
        rule = (lambda b: lambda g, ans, v, x: g * (b(v - 1, x) - b(v + 1, x)) / 2)(bessel)
        defvjp(prim, None, rule)
        defjvp(prim, None, rule)
    ive = ufunc(sp.ive)
    defvjp(ive, None, lambda g, ans, v, x: g * _dive(sp, ans, v, x))
    defjvp(ive, None, lambda t, ans, v, x: t * _dive(sp, ans, v, x))

    # 1 / gamma(x), and the sign of gamma(x) (piecewise constant: no derivative).
    _unary(sp.rgamma, lambda ans, x: _drgamma(sp, ans, x))
    nondifferentiable(sp.gammasgn)

    # Regularised incomplete gamma and beta functions: derivatives in x only (those in the
    # shape parameters have no closed form; asking for them is an error naming the argument).
    gammainc = ufunc(sp.gammainc, keeps_output=False)
    defvjp(gammainc, None, lambda g, ans, a, x: g * _gamma_density(sp, a, x))
    defjvp(gammainc, None, lambda t, ans, a, x: t * _gamma_density(sp, a, x))
    gammaincc = ufunc(sp.gammaincc, keeps_output=False)
    defvjp(gammaincc, None, lambda g, ans, a, x: -g * _gamma_density(sp, a, x))
    defjvp(gammaincc, None, lambda t, ans, a, x: -t * _gamma_density(sp, a, x))
    betainc = ufunc(sp.betainc, keeps_output=False)
    defvjp(betainc, None, None, lambda g, ans, a, b, x: g * _beta_density(sp, a, b, x))
    defjvp(betainc, None, None, lambda t, ans, a, b, x: t * _beta_density(sp, a, b, x))

    # xlogy(x, y) = x log y and xlog1py(x, y) = x log1p(y), 0 where x == 0 (flat in y there).
    xlogy = ufunc(sp.xlogy, keeps_output=False)
    defvjp(xlogy, lambda g, ans, x, y: g * np.log(y), lambda g, ans, x, y: g * _x_over(x, y))
    defjvp(xlogy, lambda t, ans, x, y: t * np.log(y), lambda t, ans, x, y: t * _x_over(x, y))
    xlog1py = ufunc(sp.xlog1py, keeps_output=False)
    defvjp(xlog1py, lambda g, ans, x, y: g * np.log1p(y),
           lambda g, ans, x, y: g * _x_over(x, y + 1))
    defjvp(xlog1py, lambda t, ans, x, y: t * np.log1p(y),
           lambda t, ans, x, y: t * _x_over(x, y + 1))

    # rel_entr(x, y) = x log(x / y): d/dx = log(x / y) + 1, d/dy = -x / y.
    rel_entr = ufunc(sp.rel_entr, keeps_output=False)
    defvjp(rel_entr, lambda g, ans, x, y: g * (np.log(x / y) + 1),
           lambda g, ans, x, y: -g * _x_over(x, y))
    defjvp(rel_entr, lambda t, ans, x, y: t * (np.log(x / y) + 1),
           lambda t, ans, x, y: -t * _x_over(x, y))

    # log B(a, b) = gammaln(a) + gammaln(b) - gammaln(a + b).
    betaln = ufunc(sp.betaln, keeps_output=False)
    defvjp(betaln, lambda g, ans, a, b: g * _dlogbeta(sp, a, b),
           lambda g, ans, a, b: g * _dlogbeta(sp, b, a))
    defjvp(betaln, lambda t, ans, a, b: t * _dlogbeta(sp, a, b),
           lambda t, ans, a, b: t * _dlogbeta(sp, b, a))
    beta = ufunc(sp.beta)
    defvjp(beta, lambda g, ans, a, b: g * ans * _dlogbeta(sp, a, b),
           lambda g, ans, a, b: g * ans * _dlogbeta(sp, b, a))
    defjvp(beta, lambda t, ans, a, b: t * ans * _dlogbeta(sp, a, b),
           lambda t, ans, a, b: t * ans * _dlogbeta(sp, b, a))


def _unary(uf, derivative, keeps_inputs=True, keeps_output=True):
    """A one-argument ufunc whose derivative is ``derivative(ans, x)``."""
    prim = ufunc(uf, keeps_inputs=keeps_inputs, keeps_output=keeps_output)
    defvjp(prim, lambda g, ans, x: g * derivative(ans, x))
    defjvp(prim, lambda t, ans, x: t * derivative(ans, x))
    return prim


def _x_over(x, y):
    """x / y, and 0 where x == 0 (the functions above are identically 0 in y there). A
    quotient at x == 0 too wherever y is finite and not 0, so that its derivative in x is
    1 / y there as well (a selection of 0 at x == 0 had derivative 0: the Hessian's mixed
    term of xlogy at a one-hot target's zeros was lost, silently); where y is 0 or not
    finite, x over 1."""
    yv = raw(y)
    bad = (raw(x) == 0) & ~((yv != 0) & np.isfinite(yv))
    if known_none(bad):
        return x / y
    return x / np.where(bad, 1, y)


def _dlogbeta(sp, a, b):
    return sp.digamma(a) - sp.digamma(a + b)


def _dive(sp, ans, v, x):
    """d/dx of iv(v, x) exp(-|x|)."""
    return (sp.ive(v - 1, x) + sp.ive(v + 1, x)) / 2 - np.sign(raw(x)) * ans


def _drgamma(sp, ans, x):
    """d/dx 1/Gamma(x) = -digamma(x) / Gamma(x); at the zeros x = -n (n = 0, 1, ...) the
    limit (-1)^n n! (digamma has its poles there). Exact at first order; at those points the
    second derivative is taken as 0."""
    xr = raw(x)  # (under fl.compile, the program's value)
    zero = (xr <= 0) & (xr == np.round(xr))
    if known_none(zero):
        return -ans * sp.digamma(x)
    n = np.where(zero, -xr, 0)
    limit = (-1.0) ** n * sp.gamma(n + 1)
    return np.where(zero, limit, -np.where(zero, 0.0, ans) * sp.digamma(np.where(zero, 0.5, x)))


def _gamma_density(sp, a, x):
    """x^(a-1) exp(-x) / Gamma(a), the derivative of gammainc(a, x) in x."""
    return np.exp((a - 1) * np.log(x) - x - sp.gammaln(a))


def _beta_density(sp, a, b, x):
    """x^(a-1) (1-x)^(b-1) / B(a, b), the derivative of betainc(a, b, x) in x."""
    return np.exp((a - 1) * np.log(x) + (b - 1) * np.log1p(-x) - sp.betaln(a, b))
