"""Complex parameters, trained as their (real, imaginary) pairs, as PyTorch's optimisers train
them (``torch.view_as_real``).

``update`` hands a rule a complex array ``z`` as the real array ``pairs(z)``, of one more axis,
of length 2, holding each entry's real and imaginary parts, and its gradient as the pairs of
``conj(dz)``. fluxml's gradient of a real loss with respect to ``z = x + iy`` is ``df/dx - i
df/dy`` (JAX's convention, see ``fl.gradient``): its conjugate holds ``(df/dx, df/dy)``, the
gradient with respect to the pairs, so that a step against it lowers the loss. Every
element-wise rule (Descent ... Adam, RMSProp, AdaMax, Lion, Rprop, ClipGrad, SignDecay) then
trains a complex array exactly as it trains the two real arrays of its parts: each part has
its own moments (Adam's ``v`` holds ``(d re)**2`` and ``(d im)**2``, not ``|dz|**2`` as
Optimisers.jl's), sign (Lion, SignDecay, Rprop), maximum (AdaMax) and clipping (ClipGrad;
PyTorch's ``clip_grad_value_`` refuses complex gradients). The state arrays are real, of
the pairs' shape ``z.shape + (2,)``, and of ``z``'s precision (complex64 -> float32).
``ClipNorm`` measures the norm of the complex gradient, ``(sum |dz|**p)**(1/p)``, as
PyTorch's ``clip_grad_norm_`` and Optimisers.jl's ``norm`` do (the same as the pairs' norm
for ``p = 2``).

Eagerly the pairs are a view of ``z`` (the rules' in-place steps reach it); under
``fl.compile``, which does not reinterpret a traced array's bytes, a stacked copy, written
back after the step (as for an array of which the array library makes no such view).

>>> import numpy as np, fluxml as fl
>>> z = np.array([1 + 2j, 3 - 4j])
>>> pairs(z)
array([[ 1.,  2.],
       [ 3., -4.]])
>>> model = {"z": np.array([1 + 1j])}
>>> g = fl.gradient(lambda m: np.sum(np.abs(m["z"]) ** 2), model)[0]
>>> g["z"]  # df/dx - i df/dy of |z|**2
array([2.-2.j])
>>> state, model = fl.update(fl.setup(fl.Descent(0.25), model), model, g)
>>> model["z"]  # z - 0.25 * conj(g): halfway to 0
array([0.5+0.5j])
"""

from __future__ import annotations

from contextvars import ContextVar

import numpy as np

from fluxml._dtypes import is_complex, real_dtype
from fluxml.ad.core import Tracer

# Set while a rule steps the pairs of one complex array (``update``'s per-array path): what
# ClipNorm reads to measure the norm of the complex numbers rather than of their parts.
PAIRED: ContextVar = ContextVar("fluxml_optimise_paired", default=False)


def pairs(z):
    """The real array of ``z``'s (real, imaginary) pairs, shaped ``z.shape + (2,)``: a view
    of ``z`` where the array library makes one (NumPy, of any strides), else a stacked
    copy."""
    view = _view(z)
    return np.stack([np.real(z), np.imag(z)], axis=-1) if view is None else view


def _view(z):
    """``z``'s pairs as a view of its memory, or None where none is made: a traced ``z``
    (``fl.compile`` does not reinterpret bytes), or an array library that asks more of the
    layout than NumPy (which needs the last axis contiguous; the new axis of length 1 is)."""
    if type(z) is Tracer:
        return None
    try:
        return z[..., None].view(real_dtype(z.dtype))
    except (ValueError, TypeError):
        return None


def gradient_pairs(dz, z):
    """The pairs of ``conj(dz)`` in ``z``'s precision: the gradient with respect to
    ``pairs(z)`` of the loss whose gradient (in fluxml's convention) is ``dz``. A real
    ``dz`` (no imaginary part) is taken too."""
    real = real_dtype(z.dtype)
    if type(dz) is Tracer or type(z) is Tracer:
        return np.stack([np.real(dz), -np.imag(dz)], axis=-1).astype(real)
    return pairs(np.conjugate(dz).astype(z.dtype, copy=False))  # (of a new array)


def as_complex(p):
    """The complex array of the pairs ``p`` (a new array)."""
    return p[..., 0] + 1j * p[..., 1]


def to_pairs(items) -> tuple:
    """``update``'s ``(leaf, x, dx)`` items with each complex ``x`` and its ``dx`` replaced
    by their pairs; also ``(z, pairs)`` for each copy to write back after the step, and the
    ids of the pairs (whose rules :func:`apply_paired` runs)."""
    if not any(x.dtype.kind == "c" for _, x, _ in items):
        return items, (), ()
    out, copies, paired = [], [], set()
    for leaf, x, dx in items:
        if is_complex(x):
            p = _view(x)
            if p is None:  # (no view of its pairs: a copy, written back after the step)
                p = np.stack([np.real(x), np.imag(x)], axis=-1)
                copies.append((x, p))
            paired.add(id(p))
            x, dx = p, gradient_pairs(dx, x)
        out.append((leaf, x, dx))
    return out, copies, paired


def write_back(copies) -> None:
    """Write each stepped copy of pairs into its complex array."""
    for z, p in copies:
        np.copyto(z, as_complex(p).astype(z.dtype))


def apply_paired(apply, rule, state, x, dx, out):
    """``apply(rule, state, x, dx, out)`` on the pairs of a complex array, with
    :data:`PAIRED` set."""
    token = PAIRED.set(True)
    try:
        return apply(rule, state, x, dx, out)
    finally:
        PAIRED.reset(token)
