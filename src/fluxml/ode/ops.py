"""One fused primitive for the solvers' linear combinations, ``y + sum(c_i * k_i)``.

An explicit Runge-Kutta step forms a combination of its stages for every stage; written with
``+`` and ``*`` it records two tape nodes per term. ``lincomb`` records one node per
combination, whose vjp is a scaling per term, so the direct (discretise-then-optimise)
gradient through a solve costs a few nodes per stage instead of dozens.

>>> import numpy as np
>>> from fluxml.ode.ops import lincomb
>>> lincomb(np.zeros(2), (0.5, 2.0), (np.ones(2), np.ones(2)))
array([2.5, 2.5])
"""

from __future__ import annotations

from fluxml.ad.core import Tracer, bind
from fluxml.ad.define import defjvp_argnum, defvjp_argnum, primitive


def _impl_base(y, *ks, coeffs):
    out = y + coeffs[0] * ks[0]
    for c, k in zip(coeffs[1:], ks[1:]):
        out = out + c * k
    return out


LINCOMB = primitive("ode_lincomb", _impl_base, keeps_inputs=False, keeps_output=False)
defvjp_argnum(LINCOMB, lambda pos, g, ans, *args, coeffs: g if pos == 0 else g * coeffs[pos - 1])
defjvp_argnum(LINCOMB, lambda pos, t, ans, *args, coeffs: t if pos == 0 else t * coeffs[pos - 1])


def lincomb(y, coeffs, ks):
    """``y + sum(c * k for c, k in zip(coeffs, ks))``, terms with a zero coefficient skipped;
    ``coeffs`` are Python floats (float32 states stay float32)."""
    pairs = [(c, k) for c, k in zip(coeffs, ks) if c != 0.0]
    if not pairs:
        return y
    cs = tuple(float(c) for c, _ in pairs)
    terms = [k for _, k in pairs]
    if type(y) is not Tracer and not any(type(k) is Tracer for k in terms):
        out = y + cs[0] * terms[0]
        for c, k in zip(cs[1:], terms[1:]):
            out += c * k
        return out
    return bind(LINCOMB, (y, *terms), {"coeffs": cs})
