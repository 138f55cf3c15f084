"""The small vocabulary the rule files are written in.

    TANH = ufunc(np.tanh, keeps_output=True)
    defvjp(TANH, lambda g, ans, x: g * (1 - ans**2))
    defjvp(TANH, lambda t, ans, x: t * (1 - ans**2))

Per-argument rules take ``(g_or_t, ans, *args, **params)``; ``None`` marks an argument with no
derivative (an error if a traced value reaches it). ``*_argnum`` forms take the argument
position first, for variadic primitives. ``deflinear`` gives a primitive that is linear in each
argument separately its jvp: substitute the tangent for the argument.
"""

from __future__ import annotations

from fluxml.ad.core import FUNCTIONS, NONDIFF, UFUNCS, DifferentiationError, Primitive, bind


def primitive(name, impl, **flags) -> Primitive:
    return Primitive(name, impl, **flags)


def ufunc(uf, **flags) -> Primitive:
    """A primitive computed by the NumPy ufunc ``uf``, reached by ``uf(tracer)``."""
    prim = Primitive(uf.__name__, uf, **flags)
    UFUNCS[uf] = prim
    return prim


def function(*np_funcs, table=FUNCTIONS):
    """Decorator: ``fn`` handles these NumPy functions when called with traced arguments
    (entered in ``table``: the ``__array_function__`` rules unless another is named)."""

    def register(fn):
        for f in np_funcs:
            table[f] = fn
        return fn

    return register


def nondifferentiable(*funcs):
    """Functions (or ufuncs) that run on the values, untraced: their results carry no
    derivative (comparisons, argmax, shape queries ...). One list shared by both modes."""
    NONDIFF.update(funcs)


def _missing(prim, pos, mode):
    def rule(*args, **params):
        raise DifferentiationError(
            f"{prim.name} is not differentiable with respect to its argument {pos} ({mode})")

    return rule


def defvjp(prim, *rules):
    """One vjp rule per argument position: ``rule(g, ans, *args, **params)``."""
    rules = tuple(r if r is not None else _missing(prim, i, "reverse mode")
                  for i, r in enumerate(rules))

    def vjp(pos, g, ans, args, params):
        return rules[pos](g, ans, *args, **params)

    prim.vjp = vjp
    # the sweep's fast path takes cotangents one array each: not for several results
    prim.vjps = None if prim.multiple_results else rules


def defvjp_argnum(prim, rule):
    """One vjp rule for every position: ``rule(pos, g, ans, *args, **params)``."""
    prim.vjp = lambda pos, g, ans, args, params: rule(pos, g, ans, *args, **params)
    prim.vjps = None


def defjvp(prim, *rules):
    """One jvp rule per argument position: ``rule(t, ans, *args, **params)``."""
    rules = tuple(r if r is not None else _missing(prim, i, "forward mode")
                  for i, r in enumerate(rules))

    def jvp(pos, t, ans, args, params):
        return rules[pos](t, ans, *args, **params)

    prim.jvp = jvp


def defjvp_argnum(prim, rule):
    prim.jvp = lambda pos, t, ans, args, params: rule(pos, t, ans, *args, **params)


def deflinear(prim):
    """The primitive is linear in each argument (others fixed): the jvp of argument ``pos`` is
    the primitive applied with the tangent in place of that argument. Tests check its vjp as
    the transpose of this jvp."""

    def jvp(pos, t, ans, args, params):
        args = list(args)
        args[pos] = t
        return bind(prim, args, params)

    prim.jvp = jvp
    prim.linear = True


def same(t, ans, *args, **params):
    """The rule of an argument that passes straight through (``add``): the tangent, or the
    cotangent, itself. The sweep recognises it and skips the call."""
    return t
