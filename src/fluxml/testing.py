"""Checking derivatives against central finite differences.

>>> import numpy as np, fluxml as fl
>>> from fluxml.testing import check_grads
>>> check_grads(lambda x: np.sin(x) * x, np.array([0.3, -1.2]))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from fluxml.ad.api import _is_float, pullback
from fluxml.ad.pushforward import jvp
from fluxml.tree import flatten, unflatten


def _float_leaves(args):
    leaves, spec = flatten(tuple(args), trainable=True)
    mask = [_is_float(x) for x in leaves]
    return leaves, spec, mask


def _combine(leaves, spec, mask, values):
    it = iter(values)
    return unflatten(spec, [next(it) if m else x for x, m in zip(leaves, mask)])


def _vdot(a_leaves, b_leaves):
    """The real pairing ``Re(sum(a * b))`` of a cotangent with a tangent (no conjugate: the
    convention under which a complex cotangent is ``df/dx - i df/dy``)."""
    total = 0.0
    for a, b in zip(a_leaves, b_leaves):
        if a is None or b is None:
            continue
        total += float(np.real(np.sum(_wide(a) * _wide(b))))
    return total


def _wide(x):
    """``x`` as float64, or complex128 when complex (finite differences need the precision)."""
    return np.asarray(x, dtype=np.complex128 if np.iscomplexobj(x) else np.float64)


def _random(rng, like):
    """A random direction shaped like ``like``: complex (both parts random) when it is."""
    v = rng.standard_normal(np.shape(like))
    if np.iscomplexobj(like):
        v = v + 1j * rng.standard_normal(np.shape(like))
    return v


def _out_leaves(y):
    return [_wide(v) for v in flatten(y)[0]]


def check_grads(f: Callable, *args, order: int = 2, modes: Sequence[str] = ("fwd", "rev"),
                eps: float = 1e-6, rtol: float = 1e-5, atol: float = 1e-6,
                seed: int = 0) -> None:
    """Check the derivatives of ``f`` at ``args`` (any trees of float arrays) against
    central finite differences in float64, in a random direction, for forward ("fwd") and
    reverse ("rev") mode, and recursively up to ``order``. Raises AssertionError on a
    mismatch; returns None.

    The arguments are converted to float64 (finite differences need the precision), complex
    ones to complex128. Complex arguments and outputs get random complex directions, and
    derivatives are compared through the real pairing ``Re(sum(cotangent * tangent))``, the
    pairing of fluxml's (JAX's) convention: so a complex rule is checked for both the real
    and the imaginary direction of each input at once.
    """
    rng = np.random.default_rng(seed)
    leaves, spec, mask = _float_leaves(args)
    leaves = [_wide(x) if m and not isinstance(x, (float, complex)) else x
              for x, m in zip(leaves, mask)]
    args = _combine(leaves, spec, [False] * len(leaves), [])
    xs = [x for x, m in zip(leaves, mask) if m]
    if not xs:
        raise ValueError("check_grads: no float arguments to differentiate")
    vs = [_random(rng, x) for x in xs]
    vs = [type(x)(v) if isinstance(x, (float, complex)) else v for x, v in zip(xs, vs)]

    def at(t):
        return _combine(leaves, spec, mask, [x + t * v for x, v in zip(xs, vs)])

    # Every evaluation gets fresh arrays: f may write into its arguments, as NumPy code does.
    y_plus, y_minus = f(*at(eps)), f(*at(-eps))
    fd = [(a - b) / (2 * eps) for a, b in zip(_out_leaves(y_plus), _out_leaves(y_minus))]
    y = f(*at(0.0))
    us = [_random(rng, o) for o in _out_leaves(y)]
    y_spec = flatten(y)[1]

    def cotangent():
        out_leaves = flatten(y)[0]
        return unflatten(y_spec, [np.asarray(u, dtype=np.asarray(o).dtype)
                                  for u, o in zip(us, out_leaves)])

    expected = _vdot(fd, us)
    tangent_args = _combine(leaves, spec, mask, vs)
    t_spec_leaves = flatten(tuple(tangent_args), trainable=True)[0]
    tangents = [t if m else np.zeros_like(_wide(t))
                for t, m in zip(t_spec_leaves, mask)]
    tangents = unflatten(flatten(tuple(args), trainable=True)[1], tangents)

    if "fwd" in modes:
        _, t_out = jvp(f, tuple(args), tuple(tangents))
        got = _vdot(_out_leaves(t_out), us)
        _assert_close(got, expected, rtol, atol, f"forward mode (order {order})")
    if "rev" in modes:
        _, back = pullback(f, *args)
        grads = back(cotangent())
        arg_spec = flatten(tuple(args), trainable=True)[1]
        g_leaves = [g for g, m in zip(_aligned(arg_spec, grads), mask) if m]
        got = _vdot(g_leaves, vs)
        _assert_close(got, expected, rtol, atol, f"reverse mode (order {order})")
    if order > 1:
        if "fwd" in modes:
            check_grads(lambda *a: jvp(f, tuple(a), tuple(tangents))[1], *args,
                        order=order - 1, modes=modes, eps=eps, rtol=rtol, atol=atol,
                        seed=seed + 1)
        if "rev" in modes:
            check_grads(lambda *a: pullback(f, *a)[1](cotangent()), *args,
                        order=order - 1, modes=modes, eps=eps, rtol=rtol, atol=atol,
                        seed=seed + 2)


def _aligned(spec, tree) -> list:
    """The leaves of ``tree`` (a gradient) at the places of ``spec``'s leaves (the
    arguments'): a gradient shows None for static parts and for whole missing subtrees, so
    its own flattening would not line up with the arguments' (Modules with activations)."""
    if spec.kind == "leaf":
        return [tree]
    if spec.kind == "static":
        return []
    if tree is None:
        kids = [None] * len(spec.children)
    elif spec.kind == "dict":
        kids = [tree[k] for k in spec.keys]
    elif spec.kind == "object":
        kids = [getattr(tree, k, None) for k in spec.keys]
    else:
        kids = list(tree)
    return [g for c, t in zip(spec.children, kids) for g in _aligned(c, t)]


def _assert_close(got, expected, rtol, atol, what):
    if not np.isfinite(got) or abs(got - expected) > atol + rtol * abs(expected):
        raise AssertionError(
            f"{what}: directional derivative {got!r} differs from finite differences "
            f"{expected!r} (difference {got - expected:.3g})")
