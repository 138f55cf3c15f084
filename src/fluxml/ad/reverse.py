"""Reverse mode: a trace that records a tape of nodes, and hands it to the sweep.

Each primitive applied to a tracer of this level runs one level down and appends a node
``(prim, args, params, ans, parents)`` to the tape; ``backward`` walks the tape in reverse
(``ad/sweep.py``). What a node keeps of its arguments follows the rules' needs
(``Primitive.keeps_inputs``/``keeps_output``): values a rule reads are protected from later
writes (copy-on-write for traced buffers, copies for plain arrays), others are kept as shapes.
"""

from __future__ import annotations

import numpy as np

from fluxml.ad.core import (
    LARGE,
    NO_PARAMS,
    DifferentiationError,
    Shaped,
    Trace,
    Tracer,
    _kept_view,
    _levels,
    _reraise_if_mixed,
    bind,
)
from fluxml.ad.mutation import link_view
from fluxml.ad.sweep import sweep


class ReverseTrace(Trace):
    """Records a tape of nodes ``(prim, args, params, ans, parents)``; ``parents`` lists
    ``(argument position, tape index)`` of the traced arguments."""

    __slots__ = ("tape", "snapshots")

    def __init__(self):
        self.level = next(_levels)  # Trace.__init__, inlined (one call less per gradient)
        self.closed = None
        self.refused = None
        self.rebound = False
        self.tape = []
        self.snapshots = None  # id -> (large plain array, the copy a rule keeps of it)

    def leaf(self, val, index=None):
        """A new differentiable input (its node has no parents; ``index`` is unused here)."""
        tape = self.tape
        t = Tracer.__new__(Tracer)
        t._trace = self
        t._val = val
        t._box = len(tape)
        t._owned = False  # the caller's array: the first write copies it
        t._view = t._views = None
        tape.append(None)
        return t

    def constant(self, val):
        """A traced constant (e.g. ``np.zeros_like(tracer)``): writable, carries no gradient."""
        t = self.leaf(val)
        t._owned = True
        return t

    def process(self, prim, args, params):
        # The hot path of reverse mode: kept flat on purpose (no helper calls per argument).
        if self.closed is not None:
            raise DifferentiationError(self.closed)
        vals = list(args)
        parents = []
        lower = constants = large = False
        i = -1
        if prim.keeps_inputs:
            for a in args:
                i += 1
                if type(a) is Tracer:
                    if a._trace is self:
                        parents.append((i, a._box))
                        v = a._val
                        if a._view is None:  # a rule keeps it: the next write copies first
                            a._owned = False
                        else:  # a view: a copy, if its base may be written in place
                            v = _kept_view(a)
                        if type(v) is Tracer:
                            lower = True
                        vals[i] = v
                    else:
                        lower = True
                elif type(a) is np.ndarray or type(a) is list:
                    constants = True  # plain and mutable: protected below
        else:
            for a in args:
                i += 1
                if type(a) is Tracer:
                    if a._trace is self:
                        parents.append((i, a._box))
                        v = vals[i] = a._val
                        if type(v) is Tracer:
                            lower = True
                        elif type(v) is np.ndarray and v.size >= LARGE:
                            large = True
                    else:
                        lower = True
        try:  # costs nothing unless raised (Python 3.11): the NumPy path checks no devices
            ans = bind(prim, vals, params) if lower else prim.impl(*vals, **params)
        except Exception as e:
            _reraise_if_mixed(prim, vals, e)
            raise
        if not parents:  # every traced argument belongs to lower levels: a constant here
            if prim.multiple_results:
                return tuple(self.constant(a) for a in ans)
            return self.constant(ans)
        if constants:
            self._keep_constants(vals, args)
        elif large and not prim.view:  # rules read only shapes: let large arrays go early
            self._keep_shapes(vals, parents, ans)
        tape = self.tape
        if prim.multiple_results:
            tape.append((prim, vals, params, ans, parents))
            return self._project(ans, prim.keeps_output)
        out = Tracer.__new__(Tracer)
        out._trace = self
        out._val = ans
        out._box = len(tape)
        out._view = out._views = None
        if prim.keeps_output:
            out._owned = False
            tape.append((prim, vals, params, ans, parents))
        else:
            out._owned = True
            if type(ans) is np.ndarray and ans.size >= LARGE:
                tape.append((prim, vals, params, Shaped(ans), parents))
            else:
                tape.append((prim, vals, params, ans, parents))
        if prim.view:
            link_view(out, args[0], prim, params)
        return out

    # The two paths below record exactly what ``process`` records, for the calls that make
    # most of a program (ufuncs and operators on small arrays and Python numbers), without
    # its loop, its lists and its keyword call. Anything else goes to ``process``.

    def unary(self, prim, a):
        """``process(prim, (a,), {})``, where ``a`` is a tracer of this trace."""
        v = a._val
        if (type(v) is Tracer or type(v) is np.ndarray and v.size >= LARGE or prim.view
                or prim.multiple_results or self.closed is not None):
            return self.process(prim, (a,), NO_PARAMS)
        if prim.keeps_inputs:
            if a._view is None:  # a rule keeps it: the next write copies first
                a._owned = False
            else:
                v = _kept_view(a)
        try:
            ans = prim.impl(v)
        except Exception as e:
            _reraise_if_mixed(prim, (v,), e)
            raise
        tape = self.tape
        out = Tracer.__new__(Tracer)  # then as ``process`` records one result (inlined)
        out._trace = self
        out._val = ans
        out._box = len(tape)
        out._view = out._views = None
        if prim.keeps_output:
            out._owned = False
        else:
            out._owned = True
            if type(ans) is np.ndarray and ans.size >= LARGE:
                ans = Shaped(ans)
        tape.append((prim, (v,), NO_PARAMS, ans, ((0, a._box),)))
        return out

    def binary(self, prim, a, b):
        """``process(prim, (a, b), {})``, where this is the top trace of ``a`` and ``b``."""
        if prim.view or prim.multiple_results or self.closed is not None:
            return self.process(prim, (a, b), NO_PARAMS)
        # each argument: a tracer of this trace over a small array, or a Python number
        if type(a) is Tracer:
            va = a._val
            if (a._trace is not self or type(va) is Tracer
                    or type(va) is np.ndarray and va.size >= LARGE):
                return self.process(prim, (a, b), NO_PARAMS)
        elif type(a) is float or type(a) is int:
            va = a
        else:
            return self.process(prim, (a, b), NO_PARAMS)
        if type(b) is Tracer:
            vb = b._val
            if (b._trace is not self or type(vb) is Tracer
                    or type(vb) is np.ndarray and vb.size >= LARGE):
                return self.process(prim, (a, b), NO_PARAMS)
        elif type(b) is float or type(b) is int:
            vb = b
        else:
            return self.process(prim, (a, b), NO_PARAMS)
        if prim.keeps_inputs:
            if va is not a:
                if a._view is None:
                    a._owned = False
                else:
                    va = _kept_view(a)
            if vb is not b:
                if b._view is None:
                    b._owned = False
                else:
                    vb = _kept_view(b)
        try:
            ans = prim.impl(va, vb)
        except Exception as e:
            _reraise_if_mixed(prim, (va, vb), e)
            raise
        if va is a:
            parents = ((1, b._box),)
        elif vb is b:
            parents = ((0, a._box),)
        else:
            parents = ((0, a._box), (1, b._box))
        tape = self.tape
        out = Tracer.__new__(Tracer)  # then as ``process`` records one result (inlined)
        out._trace = self
        out._val = ans
        out._box = len(tape)
        out._view = out._views = None
        if prim.keeps_output:
            out._owned = False
        else:
            out._owned = True
            if type(ans) is np.ndarray and ans.size >= LARGE:
                ans = Shaped(ans)
        tape.append((prim, (va, vb), NO_PARAMS, ans, parents))
        return out

    @staticmethod
    def _keep_shapes(vals, parents, ans):
        """Replace large argument arrays that no rule reads by their shapes, so that they
        can be freed before the sweep. (A view primitive's result holds its input anyway.)"""
        for p, _ in parents:
            v = vals[p]
            if type(v) is np.ndarray and v.size >= LARGE and v is not ans:
                vals[p] = Shaped(v)

    def _keep_constants(self, vals, args):
        """Plain arrays (and lists) that a rule keeps are copied: the program may write into
        them later (through any view of their memory, from any thread), and the backward pass
        must read the values the forward pass used. A large array used again unchanged shares
        the copy made at its first use (checked by comparing the values)."""
        for i, a in enumerate(args):  # the constants only: traced values are versioned
            if type(a) is list:
                vals[i] = np.array(a)
            elif type(a) is np.ndarray:
                vals[i] = a.copy() if a.size < LARGE else self._snapshot(a)

    def _snapshot(self, a):
        snapshots = self.snapshots
        if snapshots is None:
            snapshots = self.snapshots = {}
        entry = snapshots.get(id(a))
        if entry is not None and entry[0] is a and _unchanged(a, entry[1]):
            return entry[1]
        kept = a.copy()
        snapshots[id(a)] = (a, kept)  # holding ``a`` keeps its id from being reused
        return kept

    def _project(self, ans, keeps):
        """One handle per output of the multiple-result node just recorded; those that the
        rules read (``keeps``: True, False, or a tuple of output positions) are not owned."""
        tape = self.tape
        j = len(tape) - 1
        outs = []
        for k, a in enumerate(ans):
            tape.append((None, None, None, None, ((k, j),)))  # projection of output k
            kept = k in keeps if type(keeps) is tuple else keeps
            outs.append(self.new(a, len(tape) - 1, not kept))
        return tuple(outs)

    def backward(self, seeds, wanted, free=True):
        """Cotangents of the ``wanted`` tape indices (None entries allowed), from ``seeds``
        (index -> cotangent)."""
        return sweep(self.tape, seeds, wanted, free)


_BITS = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def _unchanged(a, kept):
    """Do ``a``'s values equal ``kept``'s, bit for bit (NaN included)? One pass, no copy."""
    bits = _BITS.get(a.dtype.itemsize)
    if bits is not None and a.flags.c_contiguous:
        return bool((a.reshape(-1).view(bits) == kept.reshape(-1).view(bits)).all())
    return bool(np.array_equal(a, kept))  # a NaN makes it "changed": a fresh copy is kept
