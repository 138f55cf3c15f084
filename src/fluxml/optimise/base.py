"""What every optimisation rule shares: the ``Rule`` base class and small in-place helpers.

A rule is a dataclass of hyperparameters with two methods, as in Optimisers.jl:

- ``init(x)``: the state the rule keeps for the parameter array ``x`` (None, an array, or a
  namedtuple of arrays and numbers, so that ``fluxml.tree`` flattens it and it saves);
- ``apply(state, x, dx, out=None) -> (state, update)``: the new state and the array that
  ``update`` subtracts from ``x`` (None: nothing to subtract this step).

``apply`` never writes into ``x`` or ``dx`` (but ``MixedPrecision``'s, which sets ``x`` to
its high-precision copy rounded and returns None); it updates its state arrays in place, and
may write its update into ``out`` (a scratch array shaped like ``x`` that the caller owns),
so a step allocates nothing. Scalars are Python floats, so float32 arrays stay float32. A rule
sees real arrays only: ``update`` hands it a complex parameter as the real array of its
(real, imaginary) pairs and their gradient (``pairs.py``).

Under ``fl.compile`` the numbers of the fields a rule lists in ``hyperparameters`` are traced
(0-d inputs of the program, ``fluxml.compiler.numbers``; a Python float a weak one, which
NumPy's promotion takes as the Python float), so that a training step compiled once takes
the learning rate ``fl.adjust`` sets before each call. The rule's code then computes with
them as with Python floats, with two differences: scalars reach arrays through
:func:`number` (which rounds a traced value to the array's dtype, as NumPy rounds a Python
float; a NumPy float64 set by ``fl.adjust`` too), and no Python ``if`` reads their values
(``np.where`` selects instead; a field in ``switches`` is a constant when it is exactly 0,
for an ``if`` that skips work).
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from contextvars import ContextVar
from typing import ClassVar

import numpy as np

from fluxml._checks import is_real, real_in
from fluxml.ad.core import COMPILING, Tracer

# PyTorch's keyword names, accepted by ``adjust`` beside Optimisers.jl's.
ALIASES = {"lr": "eta", "betas": "beta", "eps": "epsilon", "weight_decay": "lambd",
           "alpha": "rho", "max_norm": "omega", "norm_type": "p"}


def canonical_names(changes, where: str) -> dict:
    """``changes`` (pairs of name and value) keyed by Optimisers.jl's names, PyTorch's
    (``ALIASES``) translated; one hyperparameter given under both names is an error, for
    which of the two was meant cannot be told.

    >>> canonical_names([("lr", 0.1), ("beta", (0.9, 0.99))], "adjust")
    {'eta': 0.1, 'beta': (0.9, 0.99)}
    """
    out, given = {}, {}
    for key, value in changes:
        name = ALIASES.get(key, key)
        if name in out:
            raise TypeError(f"{where}: {name} given twice, as {given[name]}= and as {key}=; "
                            "pass one of them")
        out[name], given[name] = value, key
    return out


@dataclasses.dataclass
class Rule:
    """Base class of optimisation rules (subclasses are dataclasses of hyperparameters)."""

    def __new__(cls, *args, **kwargs):
        # PyTorch's keyword names (lr=, betas= ...) are a TypeError of the generated __init__
        # that would not say which name is meant: say it (``adjust`` accepts them)
        own = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else ()
        for k in kwargs:
            if k not in own and ALIASES.get(k) in own:
                raise TypeError(f"{cls.__name__}: the keyword is {ALIASES[k]}= (PyTorch's "
                                f"{k}=); fluxml's rules use Optimisers.jl's names")
        return super().__new__(cls)

    def init(self, x):
        return None

    def apply(self, state, x, dx, out=None):
        raise NotImplementedError(f"{type(self).__name__}.apply")

    def adjust(self, **changes) -> Rule:
        """A copy with some hyperparameters changed (PyTorch's names too: ``ALIASES``); names
        this rule lacks are ignored (a chain passes every name to every rule)."""
        changes = canonical_names(changes.items(), f"{type(self).__name__}.adjust")
        own = {f.name for f in dataclasses.fields(self)}
        kept = {k: v for k, v in changes.items() if k in own and k not in self.fixed}
        return dataclasses.replace(self, **kept) if kept else self

    # hyperparameters that ``adjust`` may not change (they change the state's layout)
    fixed: ClassVar[tuple] = ()

    # Fields whose numbers ``fl.compile`` traces instead of specialising on (a new value
    # reuses the trace); a rule that lists one never branches on its value. Of those,
    # ``switches`` stay constant when exactly 0 (the rule may skip the work they turn off).
    # A rule that lists none (a user's) is compiled as before: a new value traces again.
    hyperparameters: ClassVar[tuple] = ()
    switches: ClassVar[tuple] = ()

    # Each entry of the update and of the state arrays depends only on the same entry of x,
    # dx and the state: ``update`` may then step many small arrays as one (``foreach.py``).
    elementwise: ClassVar[bool] = False

    # An elementwise rule whose step counts reach its arrays only through :func:`number`:
    # under ``fl.compile`` the scalar arithmetic on the counts of a group of arrays may then
    # run once, on a vector of their counts (``foreach.py``).
    counts_vector: ClassVar[bool] = False

    def names(self) -> set:
        """The hyperparameter names ``adjust`` can change."""
        return {f.name for f in dataclasses.fields(self)} - set(self.fixed)


_TAKES_OUT: dict = {}  # rule class -> whether its apply takes the scratch array ``out``


def apply_rule(rule: Rule, state, x, dx, out):
    """``rule.apply(state, x, dx, out)``, or ``rule.apply(state, x, dx)`` for a rule written
    as Optimisers.jl's ``apply!`` (a rule of one's own need not take ``out``)."""
    t = type(rule)
    takes = _TAKES_OUT.get(t)
    if takes is None:
        takes = _TAKES_OUT[t] = _takes_out(t.apply)
    return rule.apply(state, x, dx, out) if takes else rule.apply(state, x, dx)


def _takes_out(apply) -> bool:
    try:
        params = list(inspect.signature(apply).parameters.values())
    except (TypeError, ValueError):  # no signature to read: pass what the built-ins take
        return True
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 5  # self, state, x, dx, out


def scratch(out, x):
    """``out`` if the caller lent one, else a new array shaped like ``x`` (which must be
    real: :func:`real_only`)."""
    if x.dtype.kind == "c":
        real_only(x)  # raises
    return np.empty_like(x) if out is None else out


def real_only(x) -> None:
    """Refuse a complex ``x``: a rule's ``apply`` takes real arrays. ``update`` hands it a
    complex parameter as its (real, imaginary) pairs and the conjugate of its gradient
    (``pairs.py``); squares, signs and clipping of the complex numbers themselves would be
    another rule, and fluxml's gradient not the direction to step against."""
    if x.dtype.kind == "c":
        raise TypeError(
            f"apply: an optimisation rule takes real arrays, got a {x.dtype} array. fl.update "
            f"trains complex parameters (as their real and imaginary pairs); to call a rule "
            f"yourself, pass fl.optimise.pairs.pairs(x) and "
            f"fl.optimise.pairs.gradient_pairs(dx, x)")


def lerp(acc, value, weight, out):
    """``acc += weight * (value - acc)`` in place (``acc = (1-w) acc + w value``), with
    ``out`` as the one temporary: three passes, no allocation."""
    np.subtract(value, acc, out=out)
    out *= number(weight, out)
    acc += out


def lerp_square(acc, dx, weight, out):
    """``acc = (1-w) acc + w dx**2`` in place, ``out`` the temporary."""
    np.square(dx, out=out)
    blend(acc, out, weight)


def blend(acc, value, weight):
    """``acc = (1-w) acc + w value`` in place, computed so (as Optimisers.jl's and PyTorch's
    second moments) and not as ``acc + w (value - acc)``, whose error is an ulp of the old
    ``acc``: a second moment (always >= 0) is then within a few ulps of itself. With ``w =
    1`` (``rho = 0``, ``beta[1] = 0``) the old moment was left in the new one where the
    square had shrunk below its ulp, as 0 (float32 RMSProp(rho=0): a gradient 1 then 1e-4
    stepped by 1e4 times eta). ``value`` is scratch, scaled in place: four passes."""
    value *= number(weight, value)
    acc *= number(1.0 - weight, acc)
    acc += value


def divide_scaled(num, out, eps, scale):
    """``out = scale * num / (out + eps)`` in place, ``out`` holding the denominator's root
    (RMSProp, AdaGrad, AMSGrad); in float16, 0 where that root is 0 (:func:`divide_live`)."""
    divide_live(num, out, eps)
    out *= number(scale, out)
    return out


def divide_live(num, out, eps):
    """``out = num / (out + eps)`` in place, ``out`` holding the root of a second moment.

    In float16 the squares of gradients below about 1e-2 (1e-4 for AdaGrad's sum) round to
    0, and so does the moment: ``num / eps`` there was a step thousands of times ``eta``
    (NAdam, AMSGrad, OAdam, RMSProp and AdaGrad moved a weight by 300 where float64 moves it
    by 0.01). A moment that underflowed carries no scale: the step is 0 there (it vanishes,
    as a float16 step below the weight's spacing does; ``fl.MixedPrecision`` keeps them)."""
    if out.dtype != np.float16:
        out += number(eps, out)
        return np.divide(num, out, out=out)
    live = out != 0
    out += number(eps, out)
    # where not live, a division by 1 (num / eps would overflow) then cleared; a selection,
    # not ufunc's where=, which CuPy's ufuncs do not take (float16 on a GPU failed there)
    np.divide(num, np.where(live, out, 1), out=out)
    out *= live
    return out


def on(switch) -> bool:
    """Whether a hyperparameter listed in ``switches`` is on: not 0, or traced (a traced
    switch was not 0 when the step was traced; were it 0 later, computing with it is right)."""
    return type(switch) is Tracer or switch != 0


def check_beta(name, beta):
    """Two decay rates in [0, 1) (a tuple or list; NaN is in no range)."""
    try:
        ok = len(beta) == 2 and all(_real(b) and 0.0 <= b < 1.0 for b in beta)
    except TypeError:  # (one number, not two: it has no len)
        ok = False
    if not ok:
        raise ValueError(f"{name}: beta must be two numbers in [0, 1) (the decay rates of the "
                         f"moments); got {beta!r}")


def _real(x) -> bool:
    """A real number (``_checks.is_real``), or a traced one."""
    return type(x) is Tracer or is_real(x)


def check_eta(name, eta):
    real_in(name, "the learning rate eta", eta, 0)


def check_epsilon(name, epsilon):
    real_in(name, "epsilon (added to the denominator)", epsilon, 0)


def check_rho(name, rho, what="the decay rate"):
    real_in(name, f"rho ({what})", rho, 0, 1)


def check_lambd(name, lambd):
    real_in(name, "lambd (the weight decay)", lambd, 0)


def eps_for(eps: float, x) -> float:
    """``eps``, raised to 1e-7 for float16 arrays, where 1e-8 rounds to 0 and a zero gradient
    would give 0/0 (Optimisers.jl's ``_eps``)."""
    if x.dtype != np.float16:
        return eps
    return max(eps, 1e-7) if type(eps) is float else np.maximum(eps, 1e-7)


def floats(*values):
    """Hyperparameters as Python floats: NumPy scalars would promote float32 arrays. Inside
    ``fl.compile`` traced ones stay traced (pass them to arrays through :func:`number`)."""
    if COMPILING:
        return tuple(v if type(v) is Tracer else float(v) for v in values)
    return tuple(map(float, values))


def step_count() -> np.ndarray:
    """A fresh step counter: a 0-d int64 array, counted in place by :func:`tick` (so a
    compiled training step, which writes back into its arguments' arrays, counts too)."""
    return np.zeros((), np.int64)


def tick(t):
    """``(t, n)``: the counter ``t`` advanced by one, in place when it is an array (the state
    keeps the same counter), and the new count ``n`` to compute with: a Python int (fast
    scalar arithmetic), or the traced count inside ``fl.compile``."""
    if type(t) is np.ndarray:
        n = t.item() + 1
        t[()] = n  # (``t += 1`` on a 0-d array costs twenty times as much, ``t[...] = n`` twice)
        return t, n
    t += 1  # a Python int of an older state, or a traced count
    return t, t


# Inside a grouped compiled step (foreach.py): ``(lane, k)``, the array being stepped among the
# ``k`` whose step counts the rule holds as one vector.
LANE: ContextVar = ContextVar("fluxml_optimise_lane", default=None)


def number(x, like):
    """A concrete 0-d value as a Python float, which NumPy treats as a weak scalar (a float32
    array times it stays a float32 loop). A traced value (inside ``fl.compile``) stays traced,
    in the float dtype of ``like``, so that it does not promote float32 updates to float64.
    In a grouped compiled step the traced value holds one number per array of the group (it
    was computed from their counts at once): the entry of the array being stepped."""
    if type(x) is not Tracer:
        return float(x)
    x = x.astype(like.dtype) if like.dtype.kind == "f" else x
    lane = LANE.get()
    if lane is not None and x.ndim:  # (a 0-d value, a hyperparameter, is every array's)
        if x.shape != (lane[1],):
            raise ValueError(f"number: in a grouped step a count's value has one entry per "
                             f"array ({lane[1]}); got shape {x.shape}")
        x = x[lane[0]]
    return x


def sqrt(x):
    """``math.sqrt`` of a Python float, ``np.sqrt`` of a traced value."""
    return math.sqrt(x) if isinstance(x, float) else np.sqrt(x)
