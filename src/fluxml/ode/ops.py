"""Fused primitives for the solvers' linear combinations, ``y + sum(c_i * k_i)``.

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

import numpy as np

from fluxml.ad.core import Tracer, bind
from fluxml.ad.define import defjvp_argnum, defvjp_argnum, primitive
from fluxml.backend.registry import array_module


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


def stack_rows(ks, dtype):
    """The stages ``ks`` as the rows of one ``(len(ks), size)`` matrix of ``dtype``, in
    their array library (CuPy stages: a CuPy matrix)."""
    K = array_module(ks[0]).empty((len(ks), int(np.size(ks[0]))), dtype)
    for i, k in enumerate(ks):
        K[i] = np.reshape(k, -1)
    return K


def combine_rows(y, coeffs, K):
    """``y + coeffs @ K`` shaped like ``y``: the explicit Runge-Kutta stage value, step and
    dense output on plain arrays (one matrix product). ``rows`` computes its value with
    this same function, so that a traced solve takes the plain solve's steps."""
    return (np.reshape(y, -1) + coeffs @ K).reshape(np.shape(y))


def _impl_rows(y, *ks, coeffs, used):
    # K as the plain step has it: a row per coefficient, those of the zero coefficients
    # zero here (0 * k is zero either way, and a zero term adds nothing: the same sum), and
    # the coefficients in the stages' dtype (Python floats holding float32 values convert
    # back exactly)
    xp = array_module(y, *ks)  # (CuPy states: K and the coefficients on their device)
    K = xp.zeros((len(coeffs), int(np.size(y))), np.result_type(y, *ks))
    for i, k in zip(used, ks):
        K[i] = np.reshape(k, -1)
    return combine_rows(y, xp.asarray(coeffs, K.dtype), K)


def _rows_rule(pos, t, ans, *args, coeffs, used):
    return t if pos == 0 else t * coeffs[used[pos - 1]]


ROWS = primitive("ode_rows", _impl_rows, keeps_inputs=False, keeps_output=False)
defvjp_argnum(ROWS, _rows_rule)
defjvp_argnum(ROWS, _rows_rule)


def rows(y, coeffs, ks):
    """``y + coeffs @ K`` with the stages ``ks`` as the rows of ``K``: the value bit for bit
    as :func:`combine_rows` computes it on plain arrays, recorded as one node (whose
    arguments are the terms with a nonzero coefficient). ``coeffs`` is an array (the
    tableau's row scaled by ``h``, in the state's dtype) or a sequence of floats. A traced
    solve that summed the terms one by one (``lincomb``) differed from the plain solve's
    matrix product in the last bits, and where a step's error estimate is that small (a
    tiny first step) the step sizes that followed differed."""
    cs = tuple(float(c) for c in np.ravel(coeffs))
    used = tuple(i for i, c in enumerate(cs) if c != 0.0)
    terms = [ks[i] for i in used]
    if type(y) is not Tracer and not any(type(k) is Tracer for k in terms):
        return _impl_rows(y, *terms, coeffs=cs, used=used)
    return bind(ROWS, (y, *terms), {"coeffs": cs, "used": used})
