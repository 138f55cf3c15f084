"""Forward mode as users call it: ``jvp(f, primals, tangents)``, the value and the
Jacobian-vector product in one pass (the trace that carries the tangents is ``forward.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from fluxml.ad.api import _is_float, _run, _trace_args, _written_back
from fluxml.ad.arrays import library_asarray
from fluxml.ad.core import Tracer, is_weak, raw
from fluxml.ad.forward import ForwardTrace
from fluxml.ad.guards import pause_gc, resume_gc
from fluxml.ad.weak import WEAK, python_number, weak
from fluxml.ad.writeback import check_repeated
from fluxml.tree import align, flatten, unflatten


def jvp(f: Callable, primals: tuple, tangents: tuple) -> tuple[Any, Any]:
    """Forward mode: ``(f(*primals), J @ tangents)`` in one pass.

    The tangents have the primals' structure; ``None`` in place of a tangent (as
    ``gradient`` gives where there is no derivative) is a zero one, so a model's gradient
    is a tangent of the model.

    >>> import numpy as np, fluxml as fl
    >>> fl.jvp(np.sin, (np.array([0.0, np.pi]),), (np.array([1.0, 1.0]),))
    (array([0.0000000e+00, 1.2246468e-16]), array([ 1., -1.]))
    >>> fl.jvp(np.multiply, (np.array([2.0]), np.array([3.0])), (np.array([1.0]), None))
    (array([6.]), array([3.]))
    """
    if not isinstance(primals, (tuple, list)) or not isinstance(tangents, (tuple, list)):
        raise TypeError("jvp(f, primals, tangents): primals and tangents must be tuples of "
                        "arguments, e.g. fl.jvp(f, (x,), (v,))")
    # as _trace_args sees them: fields a class declares nontrainable are not leaves
    p_leaves, p_spec = flatten(tuple(primals), trainable=True)
    t_leaves, _ = flatten(align(tuple(tangents), p_spec, "jvp: the tangents"), trainable=True)
    if len(t_leaves) != len(p_leaves):  # None for some: walked beside the primals
        t_leaves = _with_nones(p_spec, tuple(tangents), len(p_leaves), len(t_leaves))
    _check_tied(p_leaves, t_leaves)
    trace = ForwardTrace()

    def seed(v, i):
        t = t_leaves[i]
        if t is None:  # no tangent (a gradient's None, an int's place): a zero one
            return trace.seed(v, None)
        if np.shape(raw(t)) != np.shape(raw(v)):
            raise ValueError(f"jvp: tangent of shape {np.shape(raw(t))} for a primal of shape "
                             f"{np.shape(raw(v))}")
        if type(t) is not Tracer:
            if np.iscomplexobj(t) and not np.iscomplexobj(raw(v)):
                raise ValueError("jvp: a complex tangent for a real primal; make the primal "
                                 "complex (x.astype(complex)) to move it off the real line")
            t = library_asarray(t, raw(v).dtype)
            if type(v) in WEAK:  # a Python number's tangent: weak too (x * t stays float32)
                t = type(v)(t)
            elif type(v) is Tracer and is_weak(v) and t.dtype.kind in "fc":  # (compiled)
                t = weak(t[()])
        return trace.seed(v, t)

    targs, _, _, _, rebuilt = _trace_args(trace, tuple(primals), seed, "jvp")
    if rebuilt is not None and rebuilt.alias:
        check_repeated(rebuilt.alias, p_leaves, t_leaves)
    pause_gc()
    try:
        out = _run(trace, f, targs, rebuilt)
    finally:
        resume_gc()
    out_leaves, out_spec = flatten(out)
    values, tans = [], []
    for o in out_leaves:
        if type(o) is Tracer and o._trace is trace:
            values.append(python_number(o._val))
            tans.append(python_number(o._box) if o._box is not None
                        else np.zeros_like(raw(o._val)))
        else:
            values.append(o)
            tans.append(np.zeros_like(raw(o)) if _is_float(raw(o)) else None)
    return _written_back(rebuilt, (unflatten(out_spec, values), unflatten(out_spec, tans)))


def _check_tied(p_leaves, t_leaves):
    """One array at two places of the primals (tied weights, ``(x, x)``) is one input, traced
    once, as in reverse mode: it has one tangent. Different tangents there were silently
    reduced to the first's; they are refused."""
    first: dict = {}
    for i, p in enumerate(p_leaves):
        if isinstance(p, (float, complex, np.generic)) or not _is_float(p):
            continue  # numbers are not shared, nor is what carries no tangent
        j = first.setdefault(id(p), i)
        if j == i:
            continue
        a, b = t_leaves[j], t_leaves[i]
        if a is b:
            continue
        if type(a) is not Tracer and type(b) is not Tracer:
            a = np.zeros(np.shape(raw(p))) if a is None else a
            b = np.zeros(np.shape(raw(p))) if b is None else b
            if np.shape(a) == np.shape(b) and np.array_equal(a, b):
                continue
        raise ValueError(
            "jvp: the same array is at two places of the primals (a tied weight, or (x, x)) "
            "with different tangents; a shared array is one input with one tangent. To "
            "perturb the two places apart, pass a copy at one of them (x.copy())")


def _with_nones(spec, tangents, n_primal, n_tangent):
    """The tangents' leaves in the order of the primals' ``spec``, None where the tangents
    hold None (as ``gradient`` gives for what has no derivative, an int field included): a
    gradient, or ``(v, None)``, is a valid tangent."""
    out = []

    def walk(spec, t):
        if spec.kind == "leaf":
            out.append(t)
        elif spec.kind != "static":
            if t is not None and spec.kind != "object" and len(t) != len(spec.children):
                raise IndexError
            for i, c in enumerate(spec.children):
                walk(c, None if t is None else t[spec.keys[i]] if spec.kind == "dict"
                     else getattr(t, spec.keys[i]) if spec.kind == "object" else t[i])

    try:
        walk(spec, tangents)
    except (KeyError, IndexError, AttributeError, TypeError):
        raise ValueError(f"jvp: {n_primal} primal leaves but {n_tangent} tangents; give the "
                         f"tangents the primals' structure (None where a tangent is zero)"
                         ) from None
    return out
