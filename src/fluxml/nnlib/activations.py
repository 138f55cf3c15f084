"""Activation functions, as Flux (NNlib) defines them.

Most are composites of NumPy calls, differentiated through the engine's rules. A few have
rules of their own, for speed (one cheap backward pass instead of several recorded ones:
``relu``, ``sigmoid``, ``swish``, the two ``gelu`` forms, ``softplus``, the ``elu`` family,
which also avoid NumPy's slow ``logaddexp``, ``log1p`` and ``where``), to keep the gradient
finite near the largest float (``mish``, ``lisht``) or because NumPy lacks the function
(``erf``, in ``erf.py``). Every function is finite at any finite input, in float32 and
float64, without overflow warnings, and keeps float32 float32 (constants are Python floats).

>>> import numpy as np, fluxml as fl
>>> fl.relu(np.array([-1.0, 2.0]))
array([0., 2.])
"""

from __future__ import annotations

import functools
import math

import numpy as np

from fluxml._checks import flag, generator, numbers, real_in
from fluxml.ad.core import Tracer, draw, first_order, raw
from fluxml.ad.define import defjvp, defvjp, primitive
from fluxml.nnlib.erf import ERF, _erf_impl

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
SQRT_2PI = math.sqrt(2.0 * math.pi)
GELU_A = 0.044715
SELU_SCALE = 1.0507009873554804934193349852946
SELU_ALPHA = 1.6732632423543772848170429916717


def _elementwise(name, impl, derivative, *, keeps_inputs=True, keeps_output=True):
    """A one-argument primitive whose derivative is ``derivative(ans, x)``, written with
    NumPy calls so that it is differentiated again at higher order."""
    prim = primitive(name, impl, keeps_inputs=keeps_inputs, keeps_output=keeps_output)
    defvjp(prim, lambda g, ans, x: g * derivative(ans, x))
    defjvp(prim, lambda t, ans, x: t * derivative(ans, x))
    return prim


# --- the primitives ------------------------------------------------------------------------------

RELU = _elementwise("relu", lambda x: np.maximum(x, 0), lambda ans, x: ans > 0,
                    keeps_inputs=False)
RELU.impl.fresh = True  # a new array: under fl.compile its buffer may be reused once dead


def _sigmoid_impl(x):
    with np.errstate(over="ignore"):  # exp(-x) = inf for x << 0 gives exactly 0
        e = np.exp(-x)
    e += 1
    return 1 / e


SIGMOID = _elementwise("sigmoid", _sigmoid_impl, lambda ans, x: ans * (1 - ans),
                       keeps_inputs=False)

# swish(x) = x sigmoid(x); swish' = s + x s (1 - s) = s + swish (1 - s)
SWISH = _elementwise("swish", lambda x: x * _sigmoid_impl(x),
                     lambda ans, x: _swish_slope(SIGMOID(x), ans))


def _swish_slope(s, ans):
    return s + ans * (1 - s)


def _gelu_tanh_impl(x):
    # beyond |x| = 10 the tanh is +-1 exactly in both precisions; clipping keeps x^3 finite
    xc = np.clip(x, -10.0, 10.0)
    t = np.tanh(SQRT_2_OVER_PI * (xc + GELU_A * (xc * xc * xc)))
    t *= 0.5
    t += 0.5
    t *= x  # x (1 + t) / 2 in this order: no overflow near the largest float
    return t


def _gelu_tanh_slope(ans, x):
    xc = np.clip(x, -10.0, 10.0)
    t = np.tanh(SQRT_2_OVER_PI * (xc + GELU_A * (xc * xc * xc)))
    return 0.5 * (1 + t) + (0.5 * SQRT_2_OVER_PI) * xc * (1 - t * t) * (1 + 3 * GELU_A * xc * xc)


GELU_TANH = _elementwise("gelu_tanh", _gelu_tanh_impl, _gelu_tanh_slope, keeps_output=False)


def _gelu_erf_slope(ans, x):
    xc = np.clip(x, -40.0, 40.0)  # x phi(x) is exactly 0 beyond; x^2 stays finite
    return 0.5 * (1 + ERF(x * (1 / math.sqrt(2.0)))) + xc * np.exp(-0.5 * (xc * xc)) / SQRT_2PI


GELU_ERF = _elementwise("gelu_erf", lambda x: x * (0.5 + 0.5 * _erf_impl(x / math.sqrt(2.0))),
                        _gelu_erf_slope, keeps_output=False)


def _log1p_small(u):
    """log(1 + u) for u in [0, 1], accurate as log1p (Goldberg's correction of log(1 + u) by
    u / ((1 + u) - 1)), from log and arithmetic: NumPy's log1p is not vectorised and costs
    about 8 times as much."""
    w = 1 + u
    d = w - 1
    exact = d == 0  # u below half an ulp of 1: log1p(u) = u
    d += exact
    out = np.log(w)
    out *= u
    out /= d
    out += u * exact
    return out


def _softplus_impl(x):
    out = _log1p_small(np.exp(-np.abs(x)))
    out += np.maximum(x, 0)
    return out


SOFTPLUS = _elementwise("softplus", _softplus_impl, lambda ans, x: SIGMOID(x),
                        keeps_output=False)


LOG_2 = math.log(2.0)


def _logcosh_impl(x):
    # |x| < 2: log1p(cosh|x| - 1) = log1p(2 sinh(|x|/2)^2), without cancellation (x + softplus(
    # -2x) - log 2 lost every digit near 0: 0 at x = -1e-4 in float32). Below 8 bytes it is
    # computed in float64 (0.5 ulp; in float32 arithmetic up to 5 ulp). |x| >= 2 (2: where,
    # measured in float32, the second form's error falls below 1 ulp; 2.8 ulp at 1.03):
    # |x| - log 2 + log1p(exp(-2|x|)), without overflow, +inf at +-inf.
    a = np.abs(x)
    small = np.minimum(a, 2.0)
    if a.dtype.kind == "f" and a.dtype.itemsize < 8:
        # cosh a - 1 by its series to a^16 / 16! (truncated: 1e-11 relative at a = 2), in
        # float64, where NumPy's sinh is slow (18 ms a million)
        a2 = small.astype(np.float64)
        a2 *= a2
        u = a2 * (1 / math.factorial(16)) + 1 / math.factorial(14)
        for c in (1 / math.factorial(12), 1 / 3628800, 1 / 40320, 1 / 720, 1 / 24, 1 / 2):
            u *= a2
            u += c
        u *= a2
        small = np.log1p(u).astype(a.dtype)
    else:
        s = np.sinh(small * 0.5)
        small = np.log1p(2.0 * (s * s))
    big = np.maximum(a, 2.0)
    large = _log1p_small(np.exp(-2.0 * big))
    large += big
    large -= LOG_2
    return np.where(a < 2.0, small, large)  # (NaN fails the test: the second form keeps it)


LOGCOSH = _elementwise("logcosh", _logcosh_impl, lambda ans, x: np.tanh(x), keeps_output=False)


def _over_beta(x, beta):
    """``min(x, 0) / beta``, as ``min(x, 0) * (1 / beta)`` unless ``1 / beta`` overflows in
    x's precision (celu with a tiny ``a``: 1e-39 in float32), where that product was
    0 * inf = NaN at every x >= 0. Then ``min(x, 0)`` is bounded below by ``-1e4 |beta|``
    and divided: the quotient stays finite (no overflow warning) and, where bounded, gives
    expm1 = -1 and exp = 0 exactly, as -inf did, and no derivative (inf times 0 was NaN in
    the second-order rules)."""
    negative = np.minimum(x, 0)
    inverse = 1 / beta
    dtype = _dtype(negative)
    if abs(inverse) > float(np.finfo(dtype if dtype.kind == "f" else np.float64).max):
        return np.maximum(negative, -1e4 * abs(beta)) / beta
    return negative * inverse


def _elu_impl(x, *, alpha, beta, scale):
    out = np.expm1(_over_beta(x, beta))
    out *= alpha
    out += np.maximum(x, 0)
    return out * scale if scale != 1 else out


def _elu_slope(ans, x, alpha, beta, scale):
    negative = np.exp(_over_beta(x, beta)) * (alpha / beta)
    return ((x > 0) + (x <= 0) * negative) * scale


# elu, selu and celu: scale * (max(x, 0) + alpha * expm1(min(x, 0) / beta)), no branch
ELU = primitive("elu", _elu_impl, keeps_output=False)
defvjp(ELU, lambda g, ans, x, alpha, beta, scale: g * _elu_slope(ans, x, alpha, beta, scale))
defjvp(ELU, lambda t, ans, x, alpha, beta, scale: t * _elu_slope(ans, x, alpha, beta, scale))


# mish and lisht: x times a bounded function. Their slopes' terms that carry x, x times a
# vanishing factor, are primitives of their own (the "tails") whose slopes use the tail
# itself, never x alone: a product rule would give g x = inf, times 0 = NaN, for |x| near
# the largest float, at every order.
def _mish_parts(x):
    s = SIGMOID(x)
    t = np.tanh(SOFTPLUS(x))
    return s, t, (1.0 - t * t) * s  # (t' = (1 - t^2) s)


def _mish_tail_impl(x):  # (the kernels themselves: this runs on raw arrays)
    s = _sigmoid_impl(x)
    t = np.tanh(_softplus_impl(x))
    return x * ((1.0 - t * t) * s)


def _mish_tail_slope(ans, x):  # d/dx x (1 - t^2) s = (1 - t^2) s + tail (1 - s - 2 t s)
    s, t, dt = _mish_parts(x)
    return dt + MISH_TAIL(x) * (1.0 - s - 2.0 * t * s)


def _mish_slope(ans, x):
    if first_order(x):  # no derivative taken of the slope: the same values, computed once
        s, t, dt = _mish_parts(x)
        return t + x * dt
    return np.tanh(SOFTPLUS(x)) + MISH_TAIL(x)


def _lisht_tail_impl(x):
    t = np.tanh(x)
    return x * (1.0 - t * t)


def _lisht_tail_slope(ans, x):  # d/dx x (1 - t^2) = (1 - t^2) - 2 t tail
    t = np.tanh(x)
    return (1.0 - t * t) - 2.0 * t * LISHT_TAIL(x)


def _lisht_slope(ans, x):
    if first_order(x):  # as mish's
        t = np.tanh(x)
        return t + x * (1.0 - t * t)
    return np.tanh(x) + LISHT_TAIL(x)


MISH_TAIL = _elementwise("mish_tail", _mish_tail_impl, _mish_tail_slope, keeps_output=False)
LISHT_TAIL = _elementwise("lisht_tail", _lisht_tail_impl, _lisht_tail_slope,
                          keeps_output=False)
MISH = _elementwise("mish", lambda x: x * np.tanh(_softplus_impl(x)), _mish_slope,
                    keeps_output=False)
LISHT = _elementwise("lisht", lambda x: x * np.tanh(x), _lisht_slope, keeps_output=False)


# --- the activations -----------------------------------------------------------------------------

def _takes_numbers(real: bool = True, half: bool = False):
    """Decorator: an activation's input checked first (``fluxml._checks.numbers``): lists
    taken as NumPy takes them, a clear error for what is not numbers and, where ``real``,
    for complex numbers (the analytic ones, the sigmoid family and tanh's, take them).

    Where ``half``, a float16 input is computed in float32 and the result cast back to
    float16, as PyTorch computes half precision: the casts are traced, so that the rules
    (every order, both modes) run in float32 too. In float16 arithmetic the formulas cancel
    (``gelu_erf(-3)`` was 8.5% off, ``softplus(-7.5625)`` 5.8%, sigmoid's derivative at 6
    18%); float32 and float64 inputs take the same path as before."""
    taken = "fiu" if real else "fiuc"  # (dtype kinds numbers() returns as they are)

    def wrap(fn):
        name = fn.__name__

        @functools.wraps(fn)
        def checked(x, *args, **kwargs):
            dtype = getattr(x, "dtype", None)
            kind = getattr(dtype, "kind", "")  # (arrays, traced ones too)
            if not kind or kind not in taken:
                x = numbers(name, x, real=real)
                dtype = getattr(x, "dtype", None)
            if half and getattr(dtype, "char", "") == "e":
                return fn(x.astype(np.float32), *args, **kwargs).astype(np.float16)
            return fn(x, *args, **kwargs)

        return checked

    return wrap


@_takes_numbers()
def relu(x):
    """``max(x, 0)``; its derivative at 0 is 0 (as PyTorch's).

    >>> import numpy as np, fluxml as fl
    >>> fl.relu(np.array([-2.0, 0.5]))
    array([0. , 0.5])
    """
    return RELU(x)


@_takes_numbers(real=False, half=True)
def sigmoid(x):
    """The logistic function ``1 / (1 + exp(-x))``, exact in both tails.

    >>> import numpy as np, fluxml as fl
    >>> fl.sigmoid(np.array([0.0, -1000.0]))
    array([0.5, 0. ])
    """
    return SIGMOID(x)


@_takes_numbers(half=True)
def hardsigmoid(x):
    """``clip(x / 6 + 1/2, 0, 1)`` (Flux's ``hardσ``, PyTorch's ``hardsigmoid``).

    >>> import numpy as np, fluxml as fl
    >>> fl.hardsigmoid(np.array([-4.0, 0.0, 4.0]))
    array([0. , 0.5, 1. ])
    """
    # derivative 0 at the kinks x = -3 and x = 3, as PyTorch's (np.clip's would be 1/6); the
    # tails are the tested branches so that NaN, which fails every comparison, stays NaN
    one = np.ones((), _dtype(x))
    return np.where(x >= 3.0, one, np.where(x <= -3.0, 0 * one, x / 6.0 + 0.5))


@_takes_numbers(half=True)
def logsigmoid(x):
    """``log(sigmoid(x)) = -softplus(-x)``, finite in both tails.

    >>> import numpy as np, fluxml as fl
    >>> fl.logsigmoid(np.array([-1000.0, 0.0])).round(6).tolist()
    [-1000.0, -0.693147]
    """
    return -SOFTPLUS(-x)


@_takes_numbers()
def relu6(x):
    """``min(max(x, 0), 6)``.

    >>> import numpy as np, fluxml as fl
    >>> fl.relu6(np.array([-1.0, 3.0, 7.0]))
    array([0., 3., 6.])
    """
    # derivative 0 at the kinks x = 0 and x = 6, as PyTorch's and as relu's at 0; NaN stays NaN
    one = np.ones((), _dtype(x))
    return np.where(x >= 6.0, 6 * one, np.where(x <= 0.0, 0 * one, x))


@_takes_numbers()
def leakyrelu(x, a: float = 0.01):
    """``x`` for ``x > 0``, else ``a * x``.

    >>> import numpy as np, fluxml as fl
    >>> fl.leakyrelu(np.array([-1.0, 2.0]), 0.1)
    array([-0.1,  2. ])
    """
    _number("leakyrelu", "a (the slope below 0)", a)
    return np.where(x > 0, x, a * x)


def _number(fn, name, value, low=-math.inf, **open_ends):
    """A plain number argument checked (finite, ``>= low``); an array (a slope per channel)
    or a traced one is the caller's to mean. (Only ints, floats and NumPy numbers were
    checked: a Python complex slope made a complex output, silently, and a string or None
    raised NumPy's ufunc error.)"""
    if getattr(value, "ndim", 0) == 0 and type(value) is not Tracer:
        real_in(fn, name, value, low, **open_ends)


@_takes_numbers(half=True)
def elu(x, a: float = 1.0):
    """``x`` for ``x > 0``, else ``a * (exp(x) - 1)``.

    >>> import numpy as np, fluxml as fl
    >>> fl.elu(np.array([-1000.0, 2.0]))
    array([-1.,  2.])
    """
    _number("elu", "a", a)
    return ELU(x, alpha=float(a), beta=1.0, scale=1.0)


@_takes_numbers(half=True)
def selu(x):
    """Scaled ELU with the self-normalising constants of Klambauer et al. (2017).

    >>> import numpy as np, fluxml as fl
    >>> fl.selu(np.array([1.0])).round(6)
    array([1.050701])
    """
    return ELU(x, alpha=SELU_ALPHA, beta=1.0, scale=SELU_SCALE)


@_takes_numbers(half=True)
def celu(x, a: float = 1.0):
    """``max(0, x) + min(0, a * (exp(x / a) - 1))``.

    >>> import numpy as np, fluxml as fl
    >>> fl.celu(np.array([-1000.0, 1.0]), 2.0)
    array([-2.,  1.])
    """
    _number("celu", "a", a)
    if a == 0:  # (it divides by a: ZeroDivisionError)
        raise ValueError("celu: a must not be 0 (celu divides x by it); got 0")
    return ELU(x, alpha=float(a), beta=float(a), scale=1.0)


@_takes_numbers(real=False, half=True)
def gelu_tanh(x):
    """GELU with the tanh approximation: ``x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``
    (Flux's ``gelu``, PyTorch's ``gelu(approximate="tanh")``). Also named ``gelu`` and
    ``gelu_sigmoid`` (NNlib's ``x σ(sqrt(8/pi) (x + 0.044715 x^3))``, the same function).

    >>> import numpy as np, fluxml as fl
    >>> fl.gelu_tanh(np.array([1.0])).round(6)
    array([0.841192])
    """
    return GELU_TANH(x)


gelu = gelu_tanh
gelu_sigmoid = gelu_tanh


@_takes_numbers(half=True)
def gelu_erf(x):
    """Exact GELU ``x Phi(x) = x/2 (1 + erf(x / sqrt 2))`` (PyTorch's default ``gelu``).
    ``erf`` is fluxml's own (``erf.py``: no SciPy needed).

    >>> import numpy as np, fluxml as fl
    >>> fl.gelu_erf(np.array([1.0])).round(6)
    array([0.841345])
    """
    return GELU_ERF(x)


@_takes_numbers(real=False, half=True)
def swish(x):
    """``x * sigmoid(x)`` (also called SiLU).

    >>> import numpy as np, fluxml as fl
    >>> fl.swish(np.array([0.0, 1.0])).round(6)
    array([0.      , 0.731059])
    """
    return SWISH(x)


silu = swish


@_takes_numbers(half=True)
def hardswish(x):
    """``x * hardsigmoid(x)``.

    >>> import numpy as np, fluxml as fl
    >>> fl.hardswish(np.array([-4.0, 1.0, 4.0])).round(6)
    array([-0.      ,  0.666667,  4.      ])
    """
    # x * hardsigmoid(x) with its tails as branches: the product rule gave g * x = inf times
    # hardsigmoid's slope 0 = NaN near the largest float. Derivative 0 at -3 and 1 at 3.
    inner = np.clip(x, -3.0, 3.0)
    return np.where(x >= 3.0, x, np.where(x > -3.0, inner * (inner + 3.0) * (1 / 6), x * 0.0))


@_takes_numbers(half=True)
def softplus(x):
    """``log(1 + exp(x))``, without overflow.

    >>> import numpy as np, fluxml as fl
    >>> fl.softplus(np.array([1000.0, 0.0])).round(6).tolist()
    [1000.0, 0.693147]
    """
    return SOFTPLUS(x)


@_takes_numbers(real=False, half=True)
def softsign(x):
    """``x / (1 + |x|)``.

    >>> import numpy as np, fluxml as fl
    >>> fl.softsign(np.array([-3.0, 1.0]))
    array([-0.75,  0.5 ])
    """
    return x / (1 + np.abs(x))


@_takes_numbers(half=True)
def mish(x):
    """``x * tanh(softplus(x))`` (Misra, 2019).

    >>> import numpy as np, fluxml as fl
    >>> fl.mish(np.array([1.0])).round(6)
    array([0.865098])
    """
    return MISH(x)


@_takes_numbers(real=False, half=True)
def lisht(x):
    """``x * tanh(x)``.

    >>> import numpy as np, fluxml as fl
    >>> fl.lisht(np.array([-1.0])).round(6)
    array([0.761594])
    """
    return LISHT(x)


@_takes_numbers(real=False, half=True)
def tanhshrink(x):
    """``x - tanh(x)``.

    >>> import numpy as np, fluxml as fl
    >>> fl.tanhshrink(np.array([1.0])).round(6)
    array([0.238406])
    """
    return x - np.tanh(x)


@_takes_numbers()
def softshrink(x, lambd: float = 0.5):
    """``x - lambd`` above ``lambd``, ``x + lambd`` below ``-lambd``, 0 between.

    >>> import numpy as np, fluxml as fl
    >>> fl.softshrink(np.array([-2.0, 0.2, 2.0]))
    array([-1.5,  0. ,  1.5])
    """
    _number("softshrink", "lambd", lambd, 0)  # (a negative one: clip's bounds crossed)
    return x - np.clip(x, -lambd, lambd)


@_takes_numbers()
def hardshrink(x, lambd: float = 0.5):
    """``x`` where ``|x| > lambd``, else 0.

    >>> import numpy as np, fluxml as fl
    >>> fl.hardshrink(np.array([-2.0, 0.2, 2.0]))
    array([-2.,  0.,  2.])
    """
    _number("hardshrink", "lambd", lambd, 0)
    return np.where(np.abs(x) <= lambd, 0, x)  # (NaN, failing the test, stays NaN)


@_takes_numbers()
def hardtanh(x, lo: float = -1.0, hi: float = 1.0):
    """``clip(x, lo, hi)``; its derivative at ``lo`` and ``hi`` is 0 (as PyTorch's).

    >>> import numpy as np, fluxml as fl
    >>> fl.hardtanh(np.array([-2.0, 0.5, 2.0]))
    array([-1. ,  0.5,  1. ])
    """
    _number("hardtanh", "lo", lo)
    _number("hardtanh", "hi", hi)
    if isinstance(lo, (int, float, np.number)) and isinstance(hi, (int, float, np.number)) \
            and not lo <= hi:
        raise ValueError(f"hardtanh: expected lo <= hi; got lo={lo}, hi={hi}")
    # np.clip's derivative at the bounds is 1; NaN passes through as clip's does
    return np.where(x >= hi, hi, np.where(x <= lo, lo, x))


@_takes_numbers()
def trelu(x, theta: float = 1.0):
    """Thresholded ReLU: ``x`` where ``x > theta``, else 0.

    >>> import numpy as np, fluxml as fl
    >>> fl.trelu(np.array([0.5, 2.0]))
    array([0., 2.])
    """
    _number("trelu", "theta", theta)
    return np.where(x <= theta, 0, x)  # (NaN, failing the test, stays NaN)


@_takes_numbers()
def rrelu(x, lo: float = 1 / 8, hi: float = 1 / 3, *, active: bool = False,
          rng: np.random.Generator | None = None):
    """Randomised leaky ReLU: ``x`` for ``x > 0``, else ``a * x``. When ``active``
    (training), each element draws its slope ``a`` uniformly from ``[lo, hi]`` with ``rng``;
    otherwise ``a = (lo + hi) / 2`` (PyTorch's ``rrelu``; the derivative at 0 is ``a``, as
    there and as leakyrelu's).

    >>> import numpy as np, fluxml as fl
    >>> fl.rrelu(np.array([-1.0, 2.0]), 0.2, 0.4)
    array([-0.3,  2. ])
    """
    _number("rrelu", "lo", lo)
    _number("rrelu", "hi", hi)
    if not lo <= hi:
        raise ValueError(f"rrelu: expected lo <= hi; got lo={lo}, hi={hi}")
    if not flag("rrelu", "active", active):
        return np.where(x > 0, x, ((lo + hi) / 2) * x)
    from fluxml.nnlib.dropout import default_rng

    value = raw(x)
    dtype = value.dtype if getattr(value, "dtype", np.dtype(float)).kind == "f" else np.float64
    rng = default_rng() if rng is None else generator("rrelu", rng)
    slope = draw(rng, "uniform", lo, hi, np.shape(value)).astype(dtype, copy=False)
    return np.where(x > 0, x, slope * x)


@_takes_numbers(half=True)
def logcosh(x):
    """``log(cosh(x))``, without overflow and accurate near 0 (NNlib's formula
    ``x + softplus(-2x) - log 2`` cancels there); its derivative is ``tanh(x)``.

    >>> import numpy as np, fluxml as fl
    >>> fl.logcosh(np.array([0.0, 1000.0])).round(6).tolist()
    [0.0, 999.306853]
    """
    return LOGCOSH(x)


def glu(x, axis: int = -1):
    """The gated linear unit (Dauphin et al.; NNlib's ``glu``, PyTorch's ``F.glu``): ``x``
    split in two halves ``a, b`` along ``axis`` (the features, by default), ``a σ(b)``.

    >>> import numpy as np, fluxml as fl
    >>> fl.glu(np.array([[1.0, 2.0, 0.0, 1000.0]]))
    array([[0.5, 2. ]])
    """
    shape = np.shape(raw(x))
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"glu: axis must be an int; got {axis!r}")
    if not shape or not -len(shape) <= axis < len(shape) or shape[axis] % 2:
        raise ValueError(f"glu: expected an axis of even size to split in two halves; got "
                         f"axis={axis} of an array of shape {shape}")
    if raw(x).dtype.char == "e":  # float16: in float32, as the activations (_takes_numbers)
        return glu(x.astype(np.float32), axis).astype(np.float16)
    a, b = np.split(x, 2, axis=axis)
    return a * SIGMOID(b)


NAMES = ("celu", "elu", "gelu", "gelu_erf", "gelu_sigmoid", "gelu_tanh", "hardshrink",
         "hardsigmoid", "hardswish", "hardtanh", "leakyrelu", "lisht", "logcosh", "logsigmoid",
         "mish", "relu", "relu6", "rrelu", "selu", "sigmoid", "silu", "softplus", "softshrink",
         "softsign", "swish", "tanhshrink", "trelu")


def _dtype(x):
    """``x``'s dtype, for constants that must not promote float32."""
    return x.dtype if hasattr(x, "dtype") else np.result_type(x)
