"""Rules that transform the gradient before another rule sees it, the chain that composes
them, and a wrapper: ClipGrad, ClipNorm, WeightDecay, SignDecay, AccumGrad, OptimiserChain,
MixedPrecision.

>>> import numpy as np, fluxml as fl
>>> rule = fl.OptimiserChain(fl.ClipGrad(1.0), fl.Descent(0.1))
>>> model = [np.zeros(3)]
>>> state = fl.setup(rule, model)
>>> state, model = fl.update(state, model, [np.array([0.3, 1.0, 7.0])])
>>> model[0]  # clipped, then scaled
array([-0.03, -0.1 , -0.1 ])
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from fluxml._checks import flag, positive_int
from fluxml.ad.arrays import module_of
from fluxml.ad.core import Tracer, raw, untraced
from fluxml.optimise.base import (
    Rule,
    apply_rule,
    check_lambd,
    floats,
    number,
    real_only,
    scratch,
    step_count,
)
from fluxml.optimise.pairs import PAIRED, as_complex
from fluxml.tree import flatten, unflatten


@dataclass
class ClipGrad(Rule):
    """Clip each gradient entry to ``[-delta, delta]``. PyTorch: ``clip_grad_value_``.

    >>> import numpy as np, fluxml as fl
    >>> model = {"w": np.array([1.0, -2.0])}
    >>> state = fl.setup(fl.OptimiserChain(fl.ClipGrad(1.0), fl.Descent(0.1)), model)
    >>> state, model = fl.update(state, model, {"w": np.array([0.5, -3.0])})
    >>> model["w"]  # -3.0 clipped to -1.0
    array([ 0.95, -1.9 ])
    """

    elementwise = True
    hyperparameters = ("delta",)

    delta: float = 10.0

    def __post_init__(self):
        if not self.delta >= 0:  # np.clip(dx, 1, -1) is -1 everywhere: no error, no sense
            raise ValueError(f"ClipGrad: delta (the largest entry kept) must be >= 0, got "
                             f"{self.delta!r}")

    def apply(self, state, x, dx, out=None):
        d = number(self.delta, dx)
        return state, np.clip(dx, -d, d, out=scratch(out, x))


@dataclass
class ClipNorm(Rule):
    """Scale each gradient array whose ``p``-norm exceeds ``omega`` down to ``omega``; with
    ``throw`` a NaN or infinite norm is an error. Per array, as Optimisers.jl; PyTorch's
    ``clip_grad_norm_(max_norm=omega, norm_type=p)`` takes one norm over all arrays. The norm
    of a complex array's gradient is that of its complex numbers, ``(sum |dz|**p)**(1/p)``,
    as both take it.

    >>> import numpy as np, fluxml as fl
    >>> model = {"w": np.array([1.0, -2.0])}
    >>> state = fl.setup(fl.OptimiserChain(fl.ClipNorm(1.0), fl.Descent(1.0)), model)
    >>> state, model = fl.update(state, model, {"w": np.array([0.5, -3.0])})
    >>> model["w"].round(4)  # the gradient scaled to norm 1
    array([ 0.8356, -1.0136])
    """

    omega: float = 10.0
    p: float = 2.0
    throw: bool = True
    hyperparameters = ("omega",)  # (not p: the kind of norm is chosen when traced)

    def __post_init__(self):
        if not (self.omega >= 0 and self.p > 0):  # a negative omega turned every step round
            raise ValueError(f"ClipNorm: need omega (the largest norm kept) >= 0 and the "
                             f"norm's p > 0, got omega={self.omega!r}, p={self.p!r}")
        self.throw = flag("ClipNorm", "throw", self.throw)

    def apply(self, state, x, dx, out=None):
        # (dx: the pairs of a complex gradient, pairs.py, whose norm is of the complex numbers;
        # for p = 2 that is the norm of the pairs)
        whole = as_complex(dx) if self.p != 2 and PAIRED.get() else dx
        if type(whole) is Tracer:  # fl.compile: no branch on the norm's value
            return state, self._traced(_wide_norm(whole, self.p), dx)
        with np.errstate(over="ignore"):  # (an overflow is taken again: _rescaled_norm)
            nrm = np.linalg.norm(np.ravel(whole, order="K"), ord=self.p)  # (no copy)
        nrm = float(nrm)
        if not math.isfinite(nrm):  # (a sum of powers overflowed: the norm may be finite)
            nrm = _rescaled_norm(whole, self.p, nrm)
        if self.throw and not math.isfinite(nrm):
            _finite_norm(nrm, np.shape(x), self.p)  # raises
        if not nrm > self.omega:
            return state, dx
        return state, np.multiply(dx, float(self.omega) / nrm, out=scratch(out, x))

    def _traced(self, nrm, dx):
        """Under ``fl.compile``, or differentiated through (``fl.gradient`` of a step, the
        factor ``omega / nrm`` differentiated with the norm): the eager step without its
        branches. The check of a finite norm runs on every call of the program (NumPy back
        end: in order, where the eager step checks; XLA: judged after the run, before
        anything is written back); the factor
        is computed in float64 and rounded to ``dx``'s dtype, as eagerly (1 where the norm is
        within ``omega``, NaN included: then ``dx * 1`` is ``dx``)."""
        if self.throw:  # (a check on the side: the factor's derivative flows through nrm,
            # which its result, a value of no derivative, lost under fl.gradient)
            untraced(_finite_norm, (nrm, tuple(dx.shape), self.p))
        nrm = nrm.astype(np.float64)
        (omega,) = floats(self.omega)
        factor = np.where(nrm > omega, omega / nrm, 1.0)
        return np.multiply(dx, factor.astype(dx.dtype))


def _wide_norm(dx, p):
    """The ``p``-norm of traced ``dx`` (under ``fl.compile``, without the eager step's branch
    to :func:`_rescaled_norm`): a float16 or float32 gradient's taken in float64, whose
    powers of its entries do not overflow (NumPy's of float32 entries of 1e20 is inf, and the
    compiled ClipNorm raised, or without ``throw`` zeroed the step)."""
    flat = np.ravel(dx, order="K")
    if np.result_type(raw(flat)).itemsize < 8 and np.result_type(raw(flat)).kind == "f":
        flat = flat.astype(np.float64)
    return np.linalg.norm(flat, ord=p)


def _rescaled_norm(dx, p, nrm) -> float:
    """The ``p``-norm of ``dx`` taken of ``dx / max|dx|`` in float64 and scaled back, as
    Julia's ``norm`` (Optimisers.jl's) takes it: NumPy's of float32 entries of 1e20 is inf
    (their squares overflow), where the norm is 2e20, and ClipNorm raised (or, without
    ``throw``, zeroed the step). ``nrm`` as it was where an entry is NaN or Inf."""
    a = np.abs(np.ravel(dx, order="K")).astype(np.float64)
    top = float(np.max(a)) if a.size else 0.0
    if not math.isfinite(top) or top == 0:
        return nrm
    return top * float(np.linalg.norm(a / top, ord=p))


def _finite_norm(nrm, shape, p):
    """``nrm``, after checking that it is finite (ClipNorm's ``throw``)."""
    if not np.isfinite(nrm):
        raise FloatingPointError(
            f"ClipNorm: the gradient of an array of shape {shape} has {p}-norm "
            f"{float(nrm)}; find the NaN or Inf in the loss, or pass throw=False to skip the "
            "check")
    return nrm


_finite_norm.effect = True  # a check: under fl.compile it runs on every call


@dataclass
class WeightDecay(Rule):
    """L2 regularisation: ``dx + lambd x`` (Optimisers.jl's ``lambda``; PyTorch's
    ``weight_decay`` argument of ``SGD``/``Adam``). Put it first in an ``OptimiserChain``.

    >>> import numpy as np, fluxml as fl
    >>> model = {"w": np.array([1.0, -2.0])}
    >>> state = fl.setup(fl.OptimiserChain(fl.WeightDecay(0.5), fl.Descent(0.1)), model)
    >>> state, model = fl.update(state, model, {"w": np.array([0.5, -3.0])})
    >>> model["w"]  # x - 0.1 (dx + 0.5 x)
    array([ 0.9, -1.6])
    """

    elementwise = True
    hyperparameters = ("lambd",)

    lambd: float = 5e-4

    def __post_init__(self):
        check_lambd("WeightDecay", self.lambd)

    def apply(self, state, x, dx, out=None):
        real_only(x)
        lam = number(self.lambd, x)
        if out is None or out is dx:
            return state, dx + lam * x
        np.multiply(x, lam, out=out)
        out += dx
        return state, out


@dataclass
class SignDecay(Rule):
    """L1 regularisation: ``dx + lambd sign(x)``. Put it first in an ``OptimiserChain``.

    >>> import numpy as np, fluxml as fl
    >>> model = {"w": np.array([1.0, -2.0])}
    >>> state = fl.setup(fl.OptimiserChain(fl.SignDecay(0.5), fl.Descent(0.1)), model)
    >>> state, model = fl.update(state, model, {"w": np.array([0.5, -3.0])})
    >>> model["w"]  # x - 0.1 (dx + 0.5 sign(x))
    array([ 0.9 , -1.65])
    """

    elementwise = True
    hyperparameters = ("lambd",)

    lambd: float = 1e-3

    def __post_init__(self):
        check_lambd("SignDecay", self.lambd)

    def apply(self, state, x, dx, out=None):
        real_only(x)
        lam = number(self.lambd, x)
        if out is None or out is dx:
            return state, dx + lam * np.sign(x)
        np.sign(x, out=out)
        out *= lam
        out += dx
        return state, out


class AccumState(NamedTuple):
    acc: np.ndarray  # the mean of the gradients so far
    count: np.ndarray  # gradients seen in this round (a 0-d int64 array, counted in place)


@dataclass
class AccumGrad(Rule):
    """Accumulate ``n`` gradients, then pass their mean on (nothing is applied in between):
    ``OptimiserChain(AccumGrad(4), Adam())`` trains as with four times the batch. Under
    ``fl.compile`` the step applies ``0`` in between, and a chain runs the rules after it
    only at the end of a round (``fl.cond``).

    >>> import numpy as np, fluxml as fl
    >>> model = {"w": np.array([1.0, -2.0])}
    >>> state = fl.setup(fl.OptimiserChain(fl.AccumGrad(2), fl.Descent(0.1)), model)
    >>> for _ in range(2):
    ...     state, model = fl.update(state, model, {"w": np.array([0.5, -3.0])})
    >>> model["w"]  # one step, of the two gradients' mean
    array([ 0.95, -1.7 ])
    """

    n: int = 1

    def __post_init__(self):
        self.n = positive_int("AccumGrad", "n (the steps to accumulate)", self.n)

    def init(self, x):
        return AccumState(np.zeros_like(x), step_count())

    def apply(self, state, x, dx, out=None):
        acc, c = state
        if type(c) is not np.ndarray:
            return self._other(state, dx)
        count = c.item()
        if count == 0:
            np.multiply(dx, 1.0 / self.n, out=acc)
        else:
            acc += dx * (1.0 / self.n)
        if count + 1 < self.n:
            c[()] = count + 1  # (in place: the state keeps its counter)
            return state, None
        c[()] = 0
        return state, acc

    def _other(self, state, dx):
        """The step of a traced count (``fl.compile``), or of a Python int (a state saved by
        an older fluxml)."""
        acc, c = state
        if type(c) is Tracer:
            return state, self._traced(acc, c, dx)
        state = AccumState(acc, np.array(c, np.int64))
        return self.apply(state, None, dx)

    def _traced(self, acc, c, dx):
        """The eager step without its branches: the new mean written into ``acc``, the count
        into ``c``; the update is the mean at the end of a round (then ``c`` is 0), else 0."""
        part = dx * (1.0 / self.n)
        np.copyto(acc, np.where(c == 0, part, acc + part))
        np.copyto(c, np.where(c + 1 < self.n, c + 1, 0))
        return np.where(c == 0, acc, np.zeros_like(acc))


def _released(rule, state):
    """Under ``fl.compile``, for a rule whose update is held back by a traced AccumGrad (one,
    or a chain holding one): the traced condition that its update is out this step (every
    AccumGrad on its way has ended a round: a later one's count moves only when the earlier
    ones let an update through). None for a rule that always gives its update."""
    if type(rule) is AccumGrad:
        return state.count == 0 if type(state.count) is Tracer else None
    if type(rule) is OptimiserChain:
        out = None
        for r, st in zip(rule.rules, state):
            now = _released(r, st)
            if now is not None:
                out = now if out is None else out & now
        return out
    return None


def _after_accumulating(rules, states, released, x, dx):
    """Under ``fl.compile``, after a rule whose update a traced AccumGrad holds back
    (``released``: the condition that it is out, :func:`_released`): ``(states, update)`` of
    the ``rules`` after it, which run only when it is (else the update is 0 and their states
    stay), as ``fl.cond`` branches. A branch returns new state values instead of writing
    into its operands: they are written back into ``states``' arrays here."""
    # lazy: the compiler imports the engine; only a compiled chain with AccumGrad needs it
    from fluxml.compiler.control import cond

    def run(states, x, dx):
        leaves, spec = flatten(states)
        states = unflatten(spec, [a.copy() if type(a) is Tracer else a for a in leaves])
        states, update = OptimiserChain(*rules).apply(states, x, dx)
        return states, np.zeros_like(dx) if update is None else update

    def skip(states, x, dx):
        return states, np.zeros_like(dx)

    new, update = cond(released, run, skip, states, x, dx)
    for old, value in zip(flatten(states)[0], flatten(new)[0]):
        if type(old) is Tracer:
            np.copyto(old, value)
    return states, update


@dataclass(init=False)
class OptimiserChain(Rule):
    """Apply ``rules`` in order, each to the update of the one before; an empty chain is
    ``Descent(1)``. Its state is a tuple of the rules' states. ``MixedPrecision`` wraps a
    chain, and is refused inside one.

    >>> import numpy as np, fluxml as fl
    >>> model = {"w": np.array([1.0, -2.0])}
    >>> state = fl.setup(fl.OptimiserChain(fl.ClipGrad(1.0), fl.Descent(0.1)), model)
    >>> state, model = fl.update(state, model, {"w": np.array([0.5, -3.0])})
    >>> model["w"]  # clipped, then descended
    array([ 0.95, -1.9 ])
    """

    rules: tuple = ()

    def __init__(self, *rules: Rule):
        for r in rules:
            if not isinstance(r, Rule):
                raise TypeError(f"OptimiserChain: expected optimisation rules, got {r!r}")
            if isinstance(r, MixedPrecision):
                # (its copy is the parameter's truth: the rules after it changed the parameter
                # only until its next step, which set it back to the copy, silently)
                raise TypeError(f"OptimiserChain: MixedPrecision must wrap the whole chain, not "
                                f"be inside it: MixedPrecision({r.dtype.name}, OptimiserChain("
                                "...)) (as Optimisers.jl)")
        self.rules = tuple(rules)

    def __repr__(self):
        return f"OptimiserChain({', '.join(map(repr, self.rules))})"

    def init(self, x):
        return tuple(r.init(x) for r in self.rules)

    def apply(self, state, x, dx, out=None):
        states = list(state)
        for i, r in enumerate(self.rules):
            # a rule may write into ``out`` while reading ``dx``: never lend it the array
            # it reads
            lend = None if out is None or _same_memory(dx, out) else out
            states[i], dx = apply_rule(r, states[i], x, dx, lend)
            if dx is None:  # AccumGrad is still collecting
                return tuple(states), None
            # compiled, after an AccumGrad (or a chain holding one): the rest may or may
            # not run (a nested chain's was run on its zero update every step, silently)
            released = _released(r, states[i]) if i + 1 < len(self.rules) else None
            if released is not None:
                rest, dx = _after_accumulating(self.rules[i + 1:], tuple(states[i + 1:]),
                                               released, x, dx)
                return tuple(states[:i + 1]) + rest, dx
        return tuple(states), dx

    def adjust(self, **changes) -> OptimiserChain:
        return OptimiserChain(*(r.adjust(**changes) for r in self.rules))

    def names(self) -> set:
        return set().union(*(r.names() for r in self.rules))


def _same_memory(a, b) -> bool:
    """Whether ``a`` may read the memory of ``b``: the same array, or a view of it (a rule
    that returned ``out.reshape(x.shape)``; on a GPU, ``np.clip(..., out=out)`` returning
    another array object over ``out``), which the next rule, lent ``b``, would overwrite
    while reading ``a`` (a step 10 times too far, silently)."""
    if a is b:
        return True
    va, vb = raw(a), raw(b)
    if type(va) is Tracer or type(vb) is Tracer:  # fl.compile: no memory yet; the buffer
        return va is vb                            # plan decides
    try:
        return bool(module_of(va).may_share_memory(va, vb))  # (bounds: cheap, safe)
    except (TypeError, AttributeError, NotImplementedError):
        return True  # (unknown: not lent)


class MixedState(NamedTuple):
    """MixedPrecision's state: the high-precision copy of the parameter and the inner rule's
    state (kept for that copy). ``fl.f16``, ``fl.f32`` and ``fl.f64`` leave both as they are
    (``keeps_dtype``): converted to float16 with the model, the copy would lose the small
    steps it is there to keep."""

    master: object
    state: object
    keeps_dtype = True  # (a class attribute, not a field)


@dataclass(init=False)
class MixedPrecision(Rule):
    """``MixedPrecision([dtype=np.float32,] rule)`` (Optimisers.jl's): ``rule`` steps a copy of
    each parameter kept in ``dtype`` (its state too), and the parameter, of a lower
    precision (float16), is set to that copy rounded. Small updates that would vanish
    against a float16 parameter accumulate in the copy. Its ``apply``, unlike the other
    rules', writes the rounded copy into ``x`` itself and returns ``None`` for the update
    (as Optimisers.jl's does for a writable ``x``).

    >>> import numpy as np, fluxml as fl
    >>> model = {"w": np.ones(2, np.float16)}
    >>> state = fl.setup(fl.MixedPrecision(fl.Descent(1e-4)), model)
    >>> for _ in range(10):
    ...     state, model = fl.update(state, model, {"w": np.ones(2, np.float16)})
    >>> model["w"]   # plain float16 Descent would stay at 1.0: 1 - 1e-4 rounds to 1
    array([0.999, 0.999], dtype=float16)
    >>> state["w"].state.master.dtype
    dtype('float32')
    """

    dtype: np.dtype
    rule: Rule

    def __init__(self, *args):
        if len(args) == 1:
            dtype, rule = np.float32, args[0]
        elif len(args) == 2:
            dtype, rule = args
        else:
            raise TypeError(f"MixedPrecision takes (rule) or (dtype, rule); got {len(args)} "
                            "arguments")
        if not isinstance(rule, Rule):
            raise TypeError(f"MixedPrecision: expected an optimisation rule such as fl.Adam(), "
                            f"got {rule!r}")
        if np.dtype(dtype).kind != "f":
            raise TypeError(f"MixedPrecision: the copy's dtype must be a float type; got "
                            f"{dtype!r}")
        self.dtype, self.rule = np.dtype(dtype), rule

    def __repr__(self):
        return f"MixedPrecision({self.dtype.name}, {self.rule!r})"

    def init(self, x):
        real_only(x)
        master = x.astype(self.dtype)
        return MixedState(master, self.rule.init(master))

    def apply(self, state, x, dx, out=None):
        real_only(x)
        master, inner = state
        inner, update = apply_rule(self.rule, inner, master, dx.astype(master.dtype), None)
        if update is None:  # AccumGrad inside, still collecting
            return MixedState(master, inner), None
        master -= update  # in place: the state keeps its copy
        # The parameter is set to the copy rounded, written into x as Optimisers.jl writes it
        # (``x .= xT``), and no update is returned. Returned as the update ``x - m`` (rounded
        # to x's dtype), the step ``x - (x - m)`` was ``m`` rounded only where x and m were
        # within a factor 2 (Sterbenz): near 0, where a weight changes sign, it was off by up
        # to an ulp of the old x (0.4% of a float32 model's weights after 20 Adam steps, up to
        # 1e5 ulps of their new value).
        np.copyto(x, master, casting="same_kind")
        return MixedState(master, inner), None

    def adjust(self, **changes) -> MixedPrecision:
        return MixedPrecision(self.dtype, self.rule.adjust(**changes))

    def names(self) -> set:
        return self.rule.names()
