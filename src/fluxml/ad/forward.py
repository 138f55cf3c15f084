"""Forward mode: a tracer carries its primal and its tangent (``None`` for a zero tangent)."""

from __future__ import annotations

import numpy as np

from fluxml.ad.core import (
    DifferentiationError,
    Trace,
    Tracer,
    _kept_view,
    _reraise_if_mixed,
    bind,
)
from fluxml.ad.fitting import broadcast
from fluxml.ad.mutation import link_view


class ForwardTrace(Trace):
    """A jvp level: each primitive computes its output and output tangent at once.

    ``owned`` holds the tangents that exactly one handle holds (made by a write): a further
    write into that handle may update its tangent in place, so a fill loop stays linear. Any
    rule that reads a tangent may pass it on, so reading one removes it from ``owned``.
    """

    __slots__ = ("owned",)

    def __init__(self):
        super().__init__()
        self.owned = {}  # id -> tangent

    def seed(self, val, tangent):
        return self.new(val, tangent, owned=False)

    def constant(self, val):
        return self.new(val, None, owned=True)

    def _kept(self, args, vals):
        """A reverse level below may keep these values for its sweep: as in reverse mode, a
        view is passed on as a copy and any other buffer is marked, so that no later write
        into it goes in place."""
        for i, a in enumerate(args):
            if type(a) is Tracer and a._trace is self:
                if a._view is None:
                    a._owned = False
                else:
                    vals[i] = _kept_view(a)

    def process(self, prim, args, params):
        if self.closed is not None:
            raise DifferentiationError(self.closed)
        vals = list(args)
        tangents = []
        lower = False  # is a lower level (which may keep values for its own sweep) involved?
        for i, a in enumerate(args):
            if type(a) is Tracer:
                if a._trace is self:
                    v = vals[i] = a._val
                    if a._box is not None:
                        tangents.append((i, a._box))
                    if type(v) is Tracer:
                        lower = True
                else:
                    lower = True
        if lower and prim.keeps_inputs:
            self._kept(args, vals)
        reuse = False
        owned = self.owned
        if owned:
            for i, t in tangents:
                if owned.pop(id(t), None) is t and i == 0:
                    reuse = True
        try:  # costs nothing unless raised: devices are checked only after a failure
            ans = bind(prim, vals, params)
        except Exception as e:
            _reraise_if_mixed(prim, vals, e)
            raise
        if prim.multiple_results:
            outs = _tangent(prim, tangents, ans, vals, params)
            if outs is None:
                return tuple(self.constant(a) for a in ans)
            return tuple(self.new(a, t) for a, t in zip(ans, outs))
        if prim.jvp_overwrite is not None and tangents:
            tangent = prim.jvp_overwrite(dict(tangents), ans, vals, params, reuse)
            if type(tangent) is np.ndarray or type(tangent) is Tracer:
                owned[id(tangent)] = tangent
        else:
            tangent = _tangent(prim, tangents, ans, vals, params)
        out = self.new(ans, tangent)
        if prim.view:
            link_view(out, args[0], prim, params)
        return out


def _tangent(prim, tangents, ans, vals, params):
    """The output tangent: the sum of each traced argument's jvp, with the output's shape and
    dtype (broadcast where a rule returned a smaller tangent)."""
    jvp = prim.jvp
    if not tangents:
        return None
    total = None
    if prim.jvp_all is not None:  # one rule for all arguments at once (concatenate)
        total = prim.jvp_all(tangents, ans, vals, params)
        tangents = ()
    elif jvp is None:
        raise DifferentiationError(f"{prim.name} has no forward-mode rule")
    for pos, t in tangents:
        c = jvp(pos, t, ans, vals, params)
        if c is None:
            continue
        if total is None:
            total = c
        elif prim.multiple_results:
            total = tuple(a + b for a, b in zip(total, c))
        else:
            total = total + c
    if total is None:
        return total
    if prim.multiple_results:  # each output's tangent fitted to that output, as one's is
        return tuple(t if t is None else _fit(t, a) for t, a in zip(total, ans))
    return _fit(total, ans)


def _fit(total, ans):
    """The tangent with the output's shape and dtype (a float32 output of float64 factors,
    as ``y *= scale`` gives, keeps a float32 tangent)."""
    shape = ans.shape
    try:
        tshape = total.shape
    except AttributeError:  # a Python number (a custom_jvp rule's on traced Python floats)
        total = np.asarray(total)
        tshape = ()
    if tshape != shape:
        total = broadcast(total, shape)
    dtype = ans.dtype
    if total.dtype != dtype and dtype.kind in "fc":
        total = total.astype(dtype)
    return total
