"""More elementwise rules: rounding and remainders, max/min, ``clip``, ``where``,
``nan_to_num``, real/imag/conj, ``sinc``, ``i0``, and the shared list of non-differentiable
functions.

Piecewise-constant functions (floor, sign, rint ...) have derivative zero: their results stay
traced and a gradient through them is an array of zeros, not ``None``. Where two arguments tie
(``maximum(x, x)``) the cotangent is split evenly between them, as for reductions.
"""

from __future__ import annotations

import math

import numpy as np

from fluxml.ad.arrays import module_of
from fluxml.ad.core import UFUNCS, DifferentiationError, Tracer, raw, untraced
from fluxml.ad.define import (
    defjvp,
    deflinear,
    defvjp,
    function,
    nondifferentiable,
    primitive,
    same,
    ufunc,
)
from fluxml.ad.mutation import assign_out, into_out
from fluxml.ad.rules.indexing import VALUE_VIEWS, getitem


def _zero(g, ans, *args, **params):
    """The rule of a piecewise-constant function: a zero cotangent (or tangent)."""
    return np.zeros_like(g)


# --- rounding and remainders --------------------------------------------------------------------

# Piecewise constant: derivative zero in every argument.
for _uf in (np.floor, np.ceil, np.trunc, np.rint, np.sign, np.spacing, np.floor_divide):
    _prim = ufunc(_uf, keeps_inputs=False, keeps_output=False)
    defvjp(_prim, *[_zero] * _uf.nin)
    defjvp(_prim, *[_zero] * _uf.nin)
FLOOR = UFUNCS[np.floor]

ROUND = primitive("round", lambda x, *, decimals: np.round(x, decimals), keeps_inputs=False,
                  keeps_output=False)
defvjp(ROUND, _zero)
defjvp(ROUND, _zero)

# x - floor(x / y) * y and x - trunc(x / y) * y: slope 1 in x, minus the quotient in y.
REMAINDER = ufunc(np.remainder, keeps_output=False)  # np.mod
defvjp(REMAINDER, same, lambda g, ans, x, y: -g * np.floor_divide(x, y))
defjvp(REMAINDER, same, lambda t, ans, x, y: -t * np.floor_divide(x, y))

FMOD = ufunc(np.fmod, keeps_output=False)
defvjp(FMOD, same, lambda g, ans, x, y: -g * np.trunc(x / y))
defjvp(FMOD, same, lambda t, ans, x, y: -t * np.trunc(x / y))

# nextafter(x, y): x moved one step of its spacing towards y (a piecewise-constant step), x
# itself where x == y: slope 1 in x, 0 in y. (No rule before: a DifferentiationError.)
NEXTAFTER = ufunc(np.nextafter, keeps_inputs=False, keeps_output=False)
defvjp(NEXTAFTER, same, _zero)
defjvp(NEXTAFTER, same, _zero)

# heaviside(x, h0): a step in x; equal to h0 exactly where x == 0.
HEAVISIDE = ufunc(np.heaviside, keeps_output=False)
defvjp(HEAVISIDE, _zero, lambda g, ans, x, h0: np.where(x == 0, g, 0))
defjvp(HEAVISIDE, _zero, lambda t, ans, x, h0: np.where(x == 0, t, 0))

# --- maximum and minimum: the winner takes the cotangent, ties split it ---------------------------

# Which argument wins: maximum/minimum let a NaN win (it propagates), fmax/fmin skip it.
_above = lambda a, b: (a > b) | np.isnan(a)
_below = lambda a, b: (a < b) | np.isnan(a)
_above_f = lambda a, b: (a > b) | np.isnan(b)
_below_f = lambda a, b: (a < b) | np.isnan(b)

for _uf, _wins in ((np.maximum, _above), (np.minimum, _below), (np.fmax, _above_f),
                   (np.fmin, _below_f)):
    _prim = ufunc(_uf, keeps_output=False)
    _rules = (lambda g, ans, x, y, w=_wins: _pick(g, x, y, w),
              lambda g, ans, x, y, w=_wins: _pick(g, y, x, w))
    defvjp(_prim, *_rules)
    defjvp(_prim, *_rules)
MAXIMUM = UFUNCS[np.maximum]

# --- clip: x inside [lo, hi] takes the cotangent (bounds included), a bound where it binds --------

CLIP = primitive("clip", lambda x, lo, hi: np.clip(x, lo, hi), keeps_output=False)
defvjp(CLIP,
       lambda g, ans, x, lo, hi: np.where(_clip_masks(x, lo, hi)[0], g, 0),
       lambda g, ans, x, lo, hi: np.where(_clip_masks(x, lo, hi)[1], g, 0),
       lambda g, ans, x, lo, hi: np.where(_clip_masks(x, lo, hi)[2], g, 0))
defjvp(CLIP,
       lambda t, ans, x, lo, hi: np.where(_clip_masks(x, lo, hi)[0], t, 0),
       lambda t, ans, x, lo, hi: np.where(_clip_masks(x, lo, hi)[1], t, 0),
       lambda t, ans, x, lo, hi: np.where(_clip_masks(x, lo, hi)[2], t, 0))

# --- where: the condition is a plain boolean array, a static parameter ----------------------------

WHERE = primitive("where", lambda x, y, *, cond: np.where(cond, x, y), keeps_inputs=False,
                  keeps_output=False)
defvjp(WHERE, lambda g, ans, x, y, cond: WHERE(g, 0, cond=cond),
       lambda g, ans, x, y, cond: WHERE(0, g, cond=cond))
defjvp(WHERE, lambda t, ans, x, y, cond: WHERE(t, 0, cond=cond),
       lambda t, ans, x, y, cond: WHERE(0, t, cond=cond))

# --- real, imaginary part, conjugate (JAX's convention for complex cotangents) --------------------

def _part(part, x):
    """``np.real`` or ``np.imag``: of a complex array, NumPy's view of it (the engine links it
    as a view: a write through it is refused, see ``VALUE_VIEWS``); a new (writable) array
    of a real one, or of a number."""
    if np.iscomplexobj(x) and not np.isscalar(x):
        return part(x)
    if module_of(x) is not np:  # (CuPy's: a copy of its own; np.array refuses it)
        return part(x).copy()
    return np.array(part(x), copy=True)


REAL = primitive("real", lambda x: _part(np.real, x), keeps_inputs=False, keeps_output=False,
                 view=True)
defvjp(REAL, same)
deflinear(REAL)

IMAG = primitive("imag", lambda x: _part(np.imag, x), keeps_inputs=False, keeps_output=False,
                 view=True)
# a write through z.real or z.imag of a traced complex array would have to rebuild z from
# both parts: refused by name (before, the write changed a copy and z silently kept its
# values); reading them, and a chain of views above them, are views as in NumPy
VALUE_VIEWS.update((REAL, IMAG))
# g first: 1j * np.float64 is a Python complex, np.float64 * 1j a NumPy one
defvjp(IMAG, lambda g, ans, x: g * -1j if np.iscomplexobj(x) else np.zeros_like(g))
deflinear(IMAG)

CONJUGATE = ufunc(np.conjugate, keeps_inputs=False, keeps_output=False)  # np.conj
defvjp(CONJUGATE, lambda g, ans, x: np.conjugate(g))
deflinear(CONJUGATE)

# --- sinc and its derivatives: one primitive, the order k a static parameter ----------------------

SINC = primitive("sinc", lambda x, *, k: _sinc_derivative(x, k, module_of(x)),
                 keeps_output=False)
defvjp(SINC, lambda g, ans, x, k: g * SINC(x, k=k + 1))
defjvp(SINC, lambda t, ans, x, k: t * SINC(x, k=k + 1))


# --- NumPy functions (``__array_function__``) built on the primitives above ----------------------

@function(np.clip)
def clip(a, a_min=None, a_max=None, out=None, *, min=None, max=None, **kwargs):
    lo = a_min if min is None else min
    hi = a_max if max is None else max
    lo = None if lo is np._NoValue else lo
    hi = None if hi is np._NoValue else hi
    if kwargs:
        raise DifferentiationError(f"np.clip: keyword arguments {sorted(kwargs)} are not "
                                   "supported on traced arrays")
    return into_out(CLIP(a, lo, hi), out, "np.clip")


@function(np.where)
def where(condition, x=None, y=None):
    if x is None and y is None:
        return np.nonzero(raw(condition))
    if x is None or y is None:
        raise ValueError("either both or neither of x and y should be given")
    cond = raw(condition)  # a copy: the tape keeps it (astype: a CuPy condition stays one)
    cond = cond.astype(bool) if hasattr(cond, "astype") else np.array(cond, dtype=bool)
    return WHERE(x, y, cond=cond)


@function(np.nan_to_num)
def nan_to_num(x, copy=True, nan=0.0, posinf=None, neginf=None):
    """Derivative 1 where x is finite; the replaced entries come from the replacement values
    (differentiable too when traced)."""
    value = raw(x)
    # computed on the values (under fl.compile, recorded as one call: NumPy's function on
    # the compiled program's value would come back here, without end)
    fill = untraced(np.nan_to_num, (value,),
                    dict(nan=raw(nan), posinf=raw(posinf), neginf=raw(neginf)))
    result = WHERE(x, fill, cond=np.isfinite(value))
    for given, where_given in ((nan, np.isnan(value)), (posinf, np.isposinf(value)),
                               (neginf, np.isneginf(value))):
        if type(given) is Tracer:
            result = WHERE(given, result, cond=where_given)
    if not copy and type(x) is Tracer:
        assign_out(x, result, "np.nan_to_num")
        return x
    return result


@function(np.round, np.around)
def round(a, decimals=0, out=None):
    return into_out(ROUND(a, decimals=decimals), out, "np.round")


@function(np.fix)
def fix(x, out=None):
    return into_out(np.trunc(x), out, "np.fix")


@function(np.real)
def real(val):
    if type(val) is Tracer and val.dtype.kind != "c":
        return getitem(val, Ellipsis)  # NumPy: a writable view of the real array itself
    return REAL(val)


@function(np.imag)
def imag(val):
    if type(val) is Tracer and val.dtype.kind != "c":
        # NumPy: read-only zeros, in F order for an F array (else C), no derivative (a GPU's
        # array: its library's zeros, which cannot be made read-only)
        if module_of(val) is not np:
            return module_of(val).zeros(val.shape, val.dtype)
        flags = getattr(raw(val), "flags", None)
        zeros = np.zeros(val.shape, val.dtype, order="F" if flags and flags.fnc else "C")
        zeros.flags.writeable = False
        return zeros
    return IMAG(val)


@function(np.sinc)
def sinc(x):
    return SINC(x, k=0)


try:  # NumPy's Chebyshev coefficients of exp(-x) I0(x) on [0, 8] and of it times sqrt(x) above
    from numpy.lib._function_base_impl import _i0A, _i0B
except ImportError:  # NumPy 1.x
    from numpy.lib.function_base import _i0A, _i0B

# I0 itself is NumPy's (its Chebyshev series); its derivative I1 (odd, I1(0) = 0) is
# ``_i1``: a composite, so that I1's own derivative (I0 - I1/x, 1/2 at 0) follows.
I0 = primitive("i0", np.i0, keeps_output=False)
defvjp(I0, lambda g, ans, x: g * _i1(x))
defjvp(I0, lambda t, ans, x: t * _i1(x))


@function(np.i0)
def i0(x):
    return I0(x)


# 1 / (k! (k+1)!) for k = 0..14: I1(x) = (x/2) sum_k (x^2/4)^k / (k! (k+1)!), all terms
# positive; by |x| = 2 the last term is below 1e-22 of the sum
_I1_SERIES = [1.0 / (math.factorial(k) * math.factorial(k + 1)) for k in range(15)]


def _i1(x):
    """I1, the derivative of NumPy's I0: its power series where |x| <= 2 (exact to rounding
    near 0, where the slope of the Chebyshev series keeps an absolute error of ~1e-16),
    above that the slope of NumPy's own series for I0 (Clenshaw's recurrence differentiated
    alongside; relative error ~1e-15 against scipy.special.i1)."""
    a = np.abs(x)
    r = raw(a)
    small, middle = r <= 2.0, (r > 2.0) & (r <= 8.0)
    near = np.where(small, x, 1.0)  # (each branch sees only arguments in its own range; the
    # series is odd in x: no sign(x), whose zero slope at 0 would lose I1'(0) = 1/2)
    q = near * near / 4.0
    series = _I1_SERIES[-1]
    for c in _I1_SERIES[-2::-1]:
        series = series * q + c
    series = series * near / 2.0
    mid = np.where(middle, a, 4.0)
    value, slope = _chbevl_with_slope(mid / 2.0 - 2, _i0A)
    mid_i1 = np.exp(mid) * (value + slope / 2.0)
    far = np.where(small | middle, 16.0, a)
    value, slope = _chbevl_with_slope(32.0 / far - 2.0, _i0B)
    far_i1 = np.exp(far) / np.sqrt(far) * (value - value / (2.0 * far) - slope * 32.0 / (far * far))
    return np.where(small, series, np.sign(x) * np.where(middle, mid_i1, far_i1))


def _chbevl_with_slope(t, vals):
    """NumPy's ``_chbevl`` (Cephes' Chebyshev sum by Clenshaw's recurrence) and its slope in
    ``t``, the recurrence differentiated term by term."""
    b0, b1, b2 = vals[0], 0.0, 0.0
    d0, d1, d2 = 0.0, 0.0, 0.0
    for v in vals[1:]:
        b2, b1 = b1, b0
        d2, d1 = d1, d0
        b0 = t * b1 - b2 + v
        d0 = b1 + t * d1 - d2
    return 0.5 * (b0 - b2), 0.5 * (d0 - d2)


# --- no derivative: run on the values, untraced (both modes; the "unsupported" error skips them) -

nondifferentiable(
    # comparisons and predicates
    np.less, np.less_equal, np.greater, np.greater_equal, np.equal, np.not_equal,
    np.logical_and, np.logical_or, np.logical_xor, np.logical_not,
    np.isnan, np.isinf, np.isfinite, np.isnat, np.signbit, np.isposinf, np.isneginf,
    np.iscomplex, np.isreal, np.isclose, np.allclose, np.array_equal, np.array_equiv,
    # integer and bit ufuncs
    np.bitwise_and, np.bitwise_or, np.bitwise_xor, np.invert, np.left_shift, np.right_shift,
    np.gcd, np.lcm,
    # positions and counts
    np.argmax, np.argmin, np.argsort, np.argpartition, np.argwhere, np.nonzero, np.flatnonzero,
    np.count_nonzero, np.searchsorted, np.digitize, np.lexsort, np.isin,
    np.tril_indices_from, np.triu_indices_from, np.diag_indices_from,
    # truth of a whole array
    np.any, np.all,
    # types and plans (of the values' dtypes and shapes)
    np.can_cast, np.min_scalar_type, np.common_type, np.einsum_path,
    # text of the values (printing inside a transformed function)
    np.array2string, np.array_repr, np.array_str,
)
if hasattr(np, "bitwise_count"):  # NumPy >= 2
    nondifferentiable(np.bitwise_count)


# --- helpers --------------------------------------------------------------------------------------

def _pick(g, a, b, wins):
    """``g`` where ``a`` wins, half of it where ``a`` and ``b`` tie, else 0."""
    a, b = raw(a), raw(b)
    return np.where(wins(a, b), g, np.where(a == b, g * 0.5, 0))


def _clip_masks(x, lo, hi):
    """Which of x, lo, hi gives ``clip(x, lo, hi) = minimum(maximum(x, lo), hi)``, ties going
    to x (then to lo): the masks partition the output."""
    x, lo, hi = raw(x), raw(lo), raw(hi)
    up = x if lo is None else np.maximum(x, lo)
    false = module_of(x).asarray(False)  # (CuPy's beside a CuPy x)
    hi_binds = false if hi is None else up > hi
    lo_binds = false if lo is None else (x < lo) & ~hi_binds
    return ~(lo_binds | hi_binds), lo_binds, hi_binds


_SINC_NEAR = 0.25  # below this |x| the derivatives come from the Maclaurin series
_SINC_TERMS = 12


def _sinc_derivative(x, k, xp=np):
    """The k-th derivative of sinc(x) = sin(pi x) / (pi x), with the array module ``xp``
    (NumPy's, or ``jax.numpy`` for the xla back end's lowering).

    Away from 0, from x s(x) = sin(pi x) / pi differentiated j times:
    s_j = (pi^(j-1) sin(pi x + j pi / 2) - j s_(j-1)) / x. Near 0 (where that recurrence
    cancels) from the series s(x) = sum_n (-1)^n (pi x)^(2n) / (2n + 1)!.
    """
    if k == 0:
        return xp.sinc(x)
    x = xp.asarray(x)
    near = xp.abs(x) < _SINC_NEAR
    safe = xp.where(near, 1, x)
    s = xp.sinc(safe)
    for j in range(1, k + 1):
        s = (math.pi ** (j - 1) * xp.sin(math.pi * safe + j * math.pi / 2) - j * s) / safe
    series = xp.zeros_like(s)
    first = (k + 1) // 2
    for n in range(first, first + _SINC_TERMS):
        c = (-1) ** n * math.pi ** (2 * n) / math.factorial(2 * n + 1)
        c *= math.factorial(2 * n) / math.factorial(2 * n - k)
        series = series + c * x ** (2 * n - k)
    return xp.where(near, series, s)
