"""Elementwise rules: arithmetic, powers, exponentials and logarithms, trigonometry.

Each entry reads as a row of a calculus table. Broadcasting is undone by the engine. Rules keep
what they read: ``exp`` keeps its output, ``sin`` its input, ``add`` neither. Constants are
Python floats so that float32 stays float32 (NumPy scalars would promote).

The rest of the elementwise family (max/min, rounding, clip, where, the non-differentiable
list) is in ``elementwise_more.py``.

Where the slope is infinite (``sqrt`` and ``cbrt`` at 0, ``x ** p`` at 0 for p < 1) the rules
return the limit, ``inf`` (NaN where the one-sided limits disagree): finite differences grow
without bound there too (``tests/ad/rules/test_edge_points.py`` checks both).
"""

from __future__ import annotations

import math

import numpy as np

from fluxml.ad.core import UFUNCS, Tracer, known_none, raw, untraced
from fluxml.ad.define import defjvp, deflinear, defvjp, primitive, same, ufunc

LN2 = math.log(2.0)
LN10 = math.log(10.0)

# --- arithmetic ---------------------------------------------------------------------------------

ADD = ufunc(np.add, keeps_inputs=False, keeps_output=False)
defvjp(ADD, same, same)
defjvp(ADD, same, same)

SUBTRACT = ufunc(np.subtract, keeps_inputs=False, keeps_output=False)
defvjp(SUBTRACT, same, lambda g, ans, x, y: -g)
defjvp(SUBTRACT, same, lambda t, ans, x, y: -t)

MULTIPLY = ufunc(np.multiply, keeps_output=False)
defvjp(MULTIPLY, lambda g, ans, x, y: g * y, lambda g, ans, x, y: g * x)
deflinear(MULTIPLY)

NEGATIVE = ufunc(np.negative, keeps_inputs=False, keeps_output=False)
defvjp(NEGATIVE, lambda g, ans, x: -g)
deflinear(NEGATIVE)

POSITIVE = ufunc(np.positive, keeps_inputs=False, keeps_output=False)  # a fresh copy
defvjp(POSITIVE, same)
deflinear(POSITIVE)

TRUE_DIVIDE = ufunc(np.true_divide)  # np.divide is the same ufunc
defvjp(TRUE_DIVIDE, lambda g, ans, x, y: g / y, lambda g, ans, x, y: -g * ans / y)
defjvp(TRUE_DIVIDE, lambda t, ans, x, y: t / y, lambda t, ans, x, y: -t * ans / y)

RECIPROCAL = ufunc(np.reciprocal, keeps_inputs=False)
defvjp(RECIPROCAL, lambda g, ans, x: -g * (ans * ans))
defjvp(RECIPROCAL, lambda t, ans, x: -t * (ans * ans))

SQUARE = ufunc(np.square, keeps_output=False)
defvjp(SQUARE, lambda g, ans, x: g * (2 * x))
defjvp(SQUARE, lambda t, ans, x: t * (2 * x))

SQRT = ufunc(np.sqrt, keeps_inputs=False)
defvjp(SQRT, lambda g, ans, x: g / (2 * ans))
defjvp(SQRT, lambda t, ans, x: t / (2 * ans))

CBRT = ufunc(np.cbrt, keeps_inputs=False)
defvjp(CBRT, lambda g, ans, x: g / (3 * (ans * ans)))
defjvp(CBRT, lambda t, ans, x: t / (3 * (ans * ans)))

ABSOLUTE = ufunc(np.absolute, keeps_output=False)  # np.abs; derivative 0 at the kink
defvjp(ABSOLUTE, lambda g, ans, x: g * _abs_slope(x))
defjvp(ABSOLUTE, lambda t, ans, x: np.real(t * _abs_slope(x)) if _is_complex(x)
       else t * np.sign(x))

FABS = ufunc(np.fabs, keeps_output=False)
defvjp(FABS, lambda g, ans, x: g * np.sign(x))
defjvp(FABS, lambda t, ans, x: t * np.sign(x))

COPYSIGN = ufunc(np.copysign, keeps_output=False)  # |x| with y's sign: flat in y
defvjp(COPYSIGN, lambda g, ans, x, y: _flip(g, x, y), lambda g, ans, x, y: np.zeros_like(g))
defjvp(COPYSIGN, lambda t, ans, x, y: _flip(t, x, y), lambda t, ans, x, y: np.zeros_like(t))

LDEXP = ufunc(np.ldexp, keeps_output=False)  # x * 2**n, n an integer array (no derivative)
defvjp(LDEXP, lambda g, ans, x, n: np.ldexp(g, n), None)
defjvp(LDEXP, lambda t, ans, x, n: np.ldexp(t, n), None)

# --- powers ---------------------------------------------------------------------------------------

# np.pow is the same ufunc as np.power; float_power always computes in float64
for _uf in (np.power, np.float_power):
    _prim = ufunc(_uf)
    defvjp(_prim,
           lambda g, ans, x, y, f=_uf: g * _power_dx(f, x, y),
           lambda g, ans, x, y: g * ans * _log_base(x))
    defjvp(_prim,
           lambda t, ans, x, y, f=_uf: t * _power_dx(f, x, y),
           lambda t, ans, x, y: t * ans * _log_base(x))
POWER = UFUNCS[np.power]

# --- exponentials and logarithms ----------------------------------------------------------------

EXP = ufunc(np.exp, keeps_inputs=False)
defvjp(EXP, lambda g, ans, x: g * ans)
defjvp(EXP, lambda t, ans, x: t * ans)

EXP2 = ufunc(np.exp2, keeps_inputs=False)
defvjp(EXP2, lambda g, ans, x: g * ans * LN2)
defjvp(EXP2, lambda t, ans, x: t * ans * LN2)

EXPM1 = ufunc(np.expm1, keeps_inputs=False)
defvjp(EXPM1, lambda g, ans, x: g * (ans + 1))
defjvp(EXPM1, lambda t, ans, x: t * (ans + 1))

LOG = ufunc(np.log, keeps_output=False)
defvjp(LOG, lambda g, ans, x: g / x)
defjvp(LOG, lambda t, ans, x: t / x)

LOG2 = ufunc(np.log2, keeps_output=False)
defvjp(LOG2, lambda g, ans, x: g / (x * LN2))
defjvp(LOG2, lambda t, ans, x: t / (x * LN2))

LOG10 = ufunc(np.log10, keeps_output=False)
defvjp(LOG10, lambda g, ans, x: g / (x * LN10))
defjvp(LOG10, lambda t, ans, x: t / (x * LN10))

LOG1P = ufunc(np.log1p, keeps_output=False)
defvjp(LOG1P, lambda g, ans, x: g / (x + 1))
defjvp(LOG1P, lambda t, ans, x: t / (x + 1))

# log(e^x + e^y): the weights e^(x - ans) never overflow (x - ans <= 0).
LOGADDEXP = ufunc(np.logaddexp)
defvjp(LOGADDEXP,
       lambda g, ans, x, y: g * np.exp(x - ans), lambda g, ans, x, y: g * np.exp(y - ans))
defjvp(LOGADDEXP,
       lambda t, ans, x, y: t * np.exp(x - ans), lambda t, ans, x, y: t * np.exp(y - ans))

LOGADDEXP2 = ufunc(np.logaddexp2)
defvjp(LOGADDEXP2,
       lambda g, ans, x, y: g * np.exp2(x - ans), lambda g, ans, x, y: g * np.exp2(y - ans))
defjvp(LOGADDEXP2,
       lambda t, ans, x, y: t * np.exp2(x - ans), lambda t, ans, x, y: t * np.exp2(y - ans))

# --- trigonometry -------------------------------------------------------------------------------

SIN = ufunc(np.sin, keeps_output=False)
defvjp(SIN, lambda g, ans, x: g * np.cos(x))
defjvp(SIN, lambda t, ans, x: t * np.cos(x))

COS = ufunc(np.cos, keeps_output=False)
defvjp(COS, lambda g, ans, x: -g * np.sin(x))
defjvp(COS, lambda t, ans, x: -t * np.sin(x))

TAN = ufunc(np.tan, keeps_inputs=False)
defvjp(TAN, lambda g, ans, x: g * (1.0 + ans * ans))
defjvp(TAN, lambda t, ans, x: t * (1.0 + ans * ans))

ARCSIN = ufunc(np.arcsin, keeps_output=False)  # np.asin
defvjp(ARCSIN, lambda g, ans, x: g / np.sqrt((1 - x) * (1 + x)))
defjvp(ARCSIN, lambda t, ans, x: t / np.sqrt((1 - x) * (1 + x)))

ARCCOS = ufunc(np.arccos, keeps_output=False)  # np.acos
defvjp(ARCCOS, lambda g, ans, x: -g / np.sqrt((1 - x) * (1 + x)))
defjvp(ARCCOS, lambda t, ans, x: -t / np.sqrt((1 - x) * (1 + x)))

ARCTAN = ufunc(np.arctan, keeps_output=False)  # np.atan
defvjp(ARCTAN, lambda g, ans, x: g / (1 + x * x))
defjvp(ARCTAN, lambda t, ans, x: t / (1 + x * x))

# atan2(y, x): d/dy = x / r^2, d/dx = -y / r^2, with r = hypot(y, x) (no overflow in r^2).
ARCTAN2 = ufunc(np.arctan2, keeps_output=False)  # np.atan2
defvjp(ARCTAN2,
       lambda g, ans, y, x: g * _over_r2(x, y, x), lambda g, ans, y, x: -g * _over_r2(y, y, x))
defjvp(ARCTAN2,
       lambda t, ans, y, x: t * _over_r2(x, y, x), lambda t, ans, y, x: -t * _over_r2(y, y, x))

HYPOT = ufunc(np.hypot)
defvjp(HYPOT,
       lambda g, ans, x, y: g * _safe_div(x, ans), lambda g, ans, x, y: g * _safe_div(y, ans))
defjvp(HYPOT,
       lambda t, ans, x, y: t * _safe_div(x, ans), lambda t, ans, x, y: t * _safe_div(y, ans))

DEG2RAD = ufunc(np.deg2rad, keeps_inputs=False, keeps_output=False)
defvjp(DEG2RAD, lambda g, ans, x: np.deg2rad(g))
deflinear(DEG2RAD)

RADIANS = ufunc(np.radians, keeps_inputs=False, keeps_output=False)  # a ufunc of its own
defvjp(RADIANS, lambda g, ans, x: np.radians(g))
deflinear(RADIANS)

RAD2DEG = ufunc(np.rad2deg, keeps_inputs=False, keeps_output=False)
defvjp(RAD2DEG, lambda g, ans, x: np.rad2deg(g))
deflinear(RAD2DEG)

DEGREES = ufunc(np.degrees, keeps_inputs=False, keeps_output=False)
defvjp(DEGREES, lambda g, ans, x: np.degrees(g))
deflinear(DEGREES)

# --- hyperbolic functions -----------------------------------------------------------------------

SINH = ufunc(np.sinh, keeps_output=False)
defvjp(SINH, lambda g, ans, x: g * np.cosh(x))
defjvp(SINH, lambda t, ans, x: t * np.cosh(x))

COSH = ufunc(np.cosh, keeps_output=False)
defvjp(COSH, lambda g, ans, x: g * np.sinh(x))
defjvp(COSH, lambda t, ans, x: t * np.sinh(x))

TANH = ufunc(np.tanh, keeps_inputs=False)
defvjp(TANH, lambda g, ans, x: g * (1.0 - ans * ans))  # 1.0: NumPy converts a float faster
defjvp(TANH, lambda t, ans, x: t * (1.0 - ans * ans))

ARCSINH = ufunc(np.arcsinh, keeps_output=False)  # 1 / sqrt(x^2 + 1), without overflow
defvjp(ARCSINH, lambda g, ans, x: g / np.hypot(x, 1))
defjvp(ARCSINH, lambda t, ans, x: t / np.hypot(x, 1))

ARCCOSH = ufunc(np.arccosh, keeps_output=False)
defvjp(ARCCOSH, lambda g, ans, x: g / np.sqrt((x - 1) * (x + 1)))
defjvp(ARCCOSH, lambda t, ans, x: t / np.sqrt((x - 1) * (x + 1)))

ARCTANH = ufunc(np.arctanh, keeps_output=False)
defvjp(ARCTANH, lambda g, ans, x: g / ((1 - x) * (1 + x)))
defjvp(ARCTANH, lambda t, ans, x: t / ((1 - x) * (1 + x)))

# --- ufuncs with two results, built from the rules above -----------------------------------------

FRAC = primitive("modf_fraction", lambda x: np.modf(x)[0], keeps_inputs=False,
                 keeps_output=False)
defvjp(FRAC, same)
defjvp(FRAC, same)


def _modf(x):
    """``np.modf(x)``: (fractional part, derivative 1; integral part, derivative 0)."""
    return FRAC(x), np.trunc(x)


def _frexp(x):
    """``np.frexp(x)``: mantissa ``x * 2**-e`` (differentiable) and the integer exponent."""
    # on the values (under fl.compile, recorded as one call: np.frexp of the program's value
    # would come back here, without end)
    exponent = untraced(np.frexp, (raw(x),))[1]
    return np.ldexp(x, -exponent), exponent


def _divmod(x, y):
    return np.floor_divide(x, y), np.remainder(x, y)


UFUNCS[np.modf] = _modf
UFUNCS[np.frexp] = _frexp
UFUNCS[np.divmod] = _divmod


# --- helpers --------------------------------------------------------------------------------------

def _power_dx(power, x, y):
    """d/dx x**y = y * x**(y - 1). Where y is a constant 0 the exponent becomes 1 (the term is
    0 anyway), so that 0**0 has derivative 0 instead of 0 * inf; a traced y keeps the exact
    formula, whose derivative in y is needed."""
    if type(y) is Tracer:
        return y * power(x, y - 1)
    if isinstance(y, (int, float)):
        return y * power(x, 1 if y == 0 else y - 1)
    return y * power(x, np.where(y == 0, 1, y - 1))


def _log_base(x):
    """log(x) for the derivative of x**y in y: 0 where x <= 0 (0**y is flat for y > 0; a
    negative base has no real derivative in y). A complex base has its principal log (0 at
    0), as NumPy's complex power uses."""
    if _is_complex(x):
        return np.log(np.where(x == 0, 1, x))
    return np.log(np.where(x > 0, x, 1))


def _is_complex(x):
    return np.iscomplexobj(raw(x))


def _abs_slope(x):
    """d|x| as a cotangent factor: sign(x) for real x; conj(x) / |x| for complex x (both 0
    at 0), so that the gradient of |z| is z / |z| read through the complex convention."""
    if _is_complex(x):
        return _safe_div(np.conjugate(x), np.abs(x))
    return np.sign(x)


def _flip(g, x, y):
    """d/dx copysign(x, y) applied to g: +g where x and y have the same sign bit, else -g."""
    return np.where(np.signbit(x) == np.signbit(y), g, -g)


def _over_r2(num, y, x):
    """num / (x^2 + y^2) as (num / r) / r, 0 at the origin."""
    r = np.hypot(y, x)
    return _safe_div(_safe_div(num, r), r)


def _safe_div(num, den):
    """num / den, with 0 where den == 0 (hypot's subgradient at the origin)."""
    zero = raw(den) == 0
    if known_none(zero):
        return num / den
    return np.where(zero, 0, num / np.where(zero, 1, den))
