"""User-given derivative rules: ``custom_vjp`` and ``custom_jvp`` (``checkpoint``, whose
backward rule is a recomputation of the function, is in ``checkpoint.py``).

Each records one tape node whose backward rule is the user's, so that the function's own
operations are not recorded.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from fluxml.ad.api import _is_float, pullback
from fluxml.ad.core import DifferentiationError, Primitive, Tracer, _kept, raw, top_trace
from fluxml.ad.forward import ForwardTrace
from fluxml.ad.reverse import ReverseTrace
from fluxml.ad.weak import WEAK, python_number, weak
from fluxml.tree import align, flatten, unflatten

CLOSED_OVER = ("a function given to custom_vjp, custom_jvp or checkpoint used a traced value "
               "it was not passed as an argument (it closed over it), so its derivative "
               "would be lost. Pass every traced value as an argument.")

CUSTOM = Primitive("custom_vjp", None, keeps_output=False)
CUSTOM_MULTI = Primitive("custom_vjp", None, keeps_output=False, multiple_results=True)
for _p in (CUSTOM, CUSTOM_MULTI):
    _p.vjp_all = lambda g, ans, args, params, positions: params["bwd"](g, positions)


def outputs(out):
    """``(arrays, pack)``: the float arrays a custom_vjp's or checkpoint's function
    returned, and how to give the caller the same structure (one array, or a tuple or list
    of them)."""
    multi = isinstance(out, (tuple, list))
    outs = tuple(map(numbers_weak, out)) if multi else (numbers_weak(out),)
    for o in outs:
        if not _is_float(raw(o)):
            raise TypeError("custom_vjp/checkpoint functions must return a float array or a "
                            f"tuple of float arrays; got {type(o).__name__}")
    if not multi:
        return outs, lambda ts: ts[0]
    return outs, lambda ts: type(out)(ts)


def numbers_weak(x):
    """``x``, or the weak value of a Python number (a rule's result of Python numbers: a
    tracer's value needs a shape and a dtype, and stays weak as the number is)."""
    return weak(x) if type(x) is float or type(x) is complex else x


def _record(trace, leaves, spec, run, bwd):
    """Record a user-defined step on a reverse trace: ``run(*args)`` computes ``(out, res)``
    one level down; ``bwd(res, g)`` returns one cotangent (tree) per argument."""
    vals = list(leaves)
    parents = []
    for i, a in enumerate(leaves):
        if type(a) is Tracer and a._trace is trace:
            vals[i] = _kept(a)
            parents.append((i, a._box))
    trace.closed = CLOSED_OVER
    try:
        out, res = run(*unflatten(spec, vals))
    finally:
        trace.closed = None
    outs, _ = outputs(out)
    multi = isinstance(out, (tuple, list))

    def back(g, positions):
        # a copy: the sweep hands the same cotangent to other consumers, and a rule written
        # in NumPy's style (`g *= np.cos(x)`) changed theirs, silently
        cts = bwd(res, _copies(g))
        if not isinstance(cts, (tuple, list)) or len(cts) != len(spec.children):
            raise TypeError(f"the backward rule must return a tuple with one cotangent per "
                            f"argument ({len(spec.children)}); got {cts!r:.80}")
        cts = align(tuple(cts), spec, "the backward rule's cotangents")
        flat = flatten(cts, lambda x: x is None or _is_float(x)
                       or isinstance(x, (np.ndarray, Tracer)))[0]
        for p in positions:  # (a summed or missing axis was broadcast, silently)
            if flat[p] is not None and np.shape(raw(flat[p])) != np.shape(raw(vals[p])):
                raise TypeError(f"the backward rule's cotangent for argument leaf {p} has shape "
                                f"{np.shape(raw(flat[p]))}; the argument has shape "
                                f"{np.shape(raw(vals[p]))} (a cotangent is shaped as its "
                                f"argument)")
        return [flat[p] for p in positions]

    prim = CUSTOM_MULTI if multi else CUSTOM
    if not parents:
        return out
    tape = trace.tape
    tape.append((prim, vals, {"bwd": back}, outs if multi else outs[0], parents))
    if not multi:
        return trace.new(outs[0], len(tape) - 1, owned=False)
    j = len(tape) - 1
    results = []
    for k, o in enumerate(outs):
        tape.append((None, None, None, None, ((k, j),)))
        results.append(trace.new(o, len(tape) - 1, owned=False))
    return type(out)(results)


def _copies(tree):
    """``tree`` with its arrays copied (what a user's rule is handed may be written into)."""
    leaves, spec = flatten(tree, lambda x: x is None or isinstance(x, (np.ndarray, Tracer)))
    return unflatten(spec, [np.copy(x) if isinstance(x, (np.ndarray, Tracer)) else x
                            for x in leaves])


def _bypassed(trace, what):
    """The function runs without its rule on ``trace`` (no transform records here): a trace
    that may differentiate what it records later by replaying it (a branch ``fl.cond``
    traces) is told, so that it can refuse to rather than lose the rule."""
    note = getattr(trace, "note_custom_rule", None)
    if note is not None:
        note(what)


class custom_vjp:
    """A function with a user-given reverse-mode rule (JAX's form).

    >>> import numpy as np, fluxml as fl
    >>> @fl.custom_vjp
    ... def clip_gradient(x):
    ...     return x
    >>> clip_gradient.defvjp(lambda x: (x, None), lambda res, g: (np.clip(g, -1, 1),))
    >>> fl.gradient(lambda x: np.sum(3 * clip_gradient(x)), np.array([1.0, 2.0]))
    (array([1., 1.]),)

    ``fwd(*args)`` returns ``(output, residuals)``; ``bwd(residuals, g)`` returns one
    cotangent per argument (``None`` for none). Forward mode differentiates the function
    itself. Both rules are differentiated again under an outer transform.
    """

    def __init__(self, fun: Callable):
        functools.update_wrapper(self, fun)
        self.fun = fun
        self.fwd = None
        self.bwd = None

    def defvjp(self, fwd: Callable, bwd: Callable) -> None:
        self.fwd, self.bwd = fwd, bwd

    def __call__(self, *args):
        leaves, spec = flatten(args)
        trace = top_trace(leaves)
        if not isinstance(trace, ReverseTrace):
            _bypassed(trace, f"custom_vjp {self.__name__}")
            return self.fun(*args)
        if self.fwd is None:
            raise DifferentiationError(f"custom_vjp {self.__name__}: call .defvjp(fwd, bwd) "
                                       "before differentiating it")
        return _record(trace, leaves, spec, self.fwd, self.bwd)


class custom_jvp:
    """A function with a user-given forward-mode rule; reverse mode transposes it.

    >>> import numpy as np, fluxml as fl
    >>> @fl.custom_jvp
    ... def f(x):
    ...     return np.sin(x)
    >>> f.defjvp(lambda primals, tangents: (np.sin(primals[0]),
    ...                                     np.cos(primals[0]) * tangents[0]))
    >>> fl.gradient(lambda x: f(x), 0.0)
    (1.0,)

    ``rule(primals, tangents)`` returns ``(output, output_tangent)``; the tangent must be
    linear in ``tangents``.
    """

    def __init__(self, fun: Callable):
        functools.update_wrapper(self, fun)
        self.fun = fun
        self.rule = None

    def defjvp(self, rule: Callable) -> None:
        self.rule = rule

    def __call__(self, *args):
        leaves, spec = flatten(args)
        trace = top_trace(leaves)
        if not isinstance(trace, (ForwardTrace, ReverseTrace)):  # none, or fl.compile's
            _bypassed(trace, f"custom_jvp {self.__name__}")
            return self.fun(*args)
        if self.rule is None:
            raise DifferentiationError(f"custom_jvp {self.__name__}: call .defjvp(rule) first")
        if isinstance(trace, ForwardTrace):
            return self._forward(trace, leaves, spec)
        rule = self.rule

        def run(*primals):
            return self.fun(*primals), primals

        def bwd(primals, g):
            zeros = tuple(np.zeros_like(raw(p)) if _is_float(raw(p)) else None
                          for p in primals)
            _, back = pullback(lambda *ts: rule(primals, ts)[1], *zeros)
            return back(g)

        return _record(trace, leaves, spec, run, bwd)

    def _forward(self, trace, leaves, spec):
        vals, tans = list(leaves), []
        for i, a in enumerate(leaves):
            if type(a) is Tracer and a._trace is trace:
                vals[i] = python_number(a._val)  # the rule gets a Python float as given
                t = a._box
                trace.owned.pop(id(t), None)  # the rule may pass the tangent on
                if t is None:
                    t = np.zeros_like(raw(a._val))
                if type(a._val) in WEAK and type(t) is not Tracer:  # its tangent: one too
                    t = t.item()
                tans.append(t)
            else:
                tans.append(np.zeros_like(raw(a)) if _is_float(raw(a)) else None)
        trace._kept(leaves, vals)  # the rule may keep any value it is given
        trace.closed = CLOSED_OVER
        try:  # (copies of the tangents: the caller's, or another's, written into by a rule in
            # NumPy's style, `t *= np.cos(x)`, changed them, silently)
            out, t_out = self.rule(unflatten(spec, vals), _copies(unflatten(spec, tans)))
        finally:
            trace.closed = None
        return trace.new(numbers_weak(out), t_out, owned=False)
