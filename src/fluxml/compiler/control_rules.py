"""The control-flow primitives (``cond``, ``while_loop``, ``scan``) and their derivative rules.

Each primitive holds its sub-programs as parameters (:class:`~fluxml.compiler.subprogram.Branch`)
and runs them with the generated code. Its derivatives are control flow again: the vjp of a
``cond`` is a ``cond`` of the branches' vjps, the vjp of a ``scan`` a reverse ``scan`` of the
body's vjp, the jvp of a loop a loop carrying tangents. Each derivative sub-program is traced
from a replay of the original one (``evaluate``) under ``fl.pullback`` / ``fl.jvp``, and bound
through the engine again, so the rules compose to any order.

A ``scan``'s vjp is split by partial evaluation (``subprogram.Split``): what the step's
vjp computes from the consts alone runs once before the loops; its forward part runs in a
forward scan that stacks the carry before each step and the residuals (``1 - tanh**2``...)
the backward part reads; the backward part runs in the reverse scan. When a reverse-mode
transform records the scan (``saving_scan``), the primal scan itself is that forward scan,
so a gradient costs one forward and one reverse scan; otherwise (higher orders) the vjp
runs its own forward scan. A ``cond``'s vjp recomputes the taken branch's forward part.
"""

from __future__ import annotations

import numpy as np

from fluxml.ad.api import pullback
from fluxml.ad.core import DifferentiationError, Primitive, Tracer, bind, top_trace
from fluxml.ad.pushforward import jvp
from fluxml.ad.reverse import ReverseTrace
from fluxml.compiler.subprogram import (
    Branch,
    Split,
    branch_of,
    evaluate,
    example,
    fresh,
    is_float,
)

# --- the primitives ----------------------------------------------------------------------------

def _cond(pred, *args, branches):
    return (branches[0] if pred else branches[1])(*args)


def _while(*args, cond_fn, body_fn, n_carry, n_cond):
    carry = args[:n_carry]
    cc = args[n_carry:n_carry + n_cond]
    bc = args[n_carry + n_cond:]
    test, step = cond_fn.run, body_fn.run
    while test(*carry, *cc)[0]:
        carry = step(*carry, *bc)
    return fresh(body_fn, carry, args)


def _scan(*args, body, n_carry, n_xs, length, reverse):
    carry = args[:n_carry]
    xs = args[n_carry:n_carry + n_xs]
    consts = args[n_carry + n_xs:]
    ys = [_empty((length,) + shape, dtype, args) for shape, dtype in body.types[n_carry:]]
    step = body.run
    for t in (range(length - 1, -1, -1) if reverse else range(length)):
        out = step(*carry, *[x[t] for x in xs], *consts)
        carry = out[:n_carry]
        for y, o in zip(ys, out[n_carry:]):
            y[t] = o
    return fresh(body, carry, args) + tuple(ys)


def _empty(shape, dtype, args):
    """An uninitialised array of the inputs' array library (CuPy's for CuPy inputs)."""
    for a in args:
        if not isinstance(a, (np.ndarray, np.generic)) and hasattr(a, "__array_function__"):
            return np.empty(shape, dtype, like=a)
    return np.empty(shape, dtype)


_cond.__name__ = "cond"
_while.__name__ = "while_loop"
_scan.__name__ = "scan"
COND = Primitive("cond", _cond, multiple_results=True)
WHILE = Primitive("while_loop", _while, multiple_results=True)
SCAN = Primitive("scan", _scan, multiple_results=True)


def _put(values, positions, d, offset):
    """``values`` with ``d[offset + m]`` in place of entry ``positions[m]``."""
    out = list(values)
    for m, p in enumerate(positions):
        out[p] = d[offset + m]
    return out


def _zeros_for_none(cts, like):
    return [np.zeros_like(x) if c is None else c for c, x in zip(cts, like)]


# --- cond ------------------------------------------------------------------------------------

def _cond_vjp(g, ans, args, params, positions):
    pred, xs = args[0], list(args[1:])
    n = len(xs)
    diff = [p - 1 for p in positions if p > 0 and is_float(xs[p - 1])]
    fo = [k for k, a in enumerate(ans) if is_float(a)]
    if not diff or not fo:
        return [None] * len(positions)
    gs = [g[k] for k in fo]
    for b in params["branches"]:
        b.replayable("reverse-mode derivative")

    def make(b):
        def vjp_fn(*a):
            xv, gv = a[:n], a[n:]
            _, back = pullback(_branch_primal(b, xv, diff, fo), *[xv[p] for p in diff])
            return tuple(_zeros_for_none(back(tuple(gv)), [xv[p] for p in diff]))

        return branch_of(vjp_fn, xs + gs, f"{b.__name__}_vjp", f"the vjp of {b.__name__}")

    cts = bind(COND, [pred, *xs, *gs], {"branches": tuple(make(b) for b in params["branches"])})
    found = dict(zip(diff, cts))
    return [found.get(p - 1) if p > 0 else None for p in positions]


def _branch_primal(b, xv, diff, fo):
    """Branch ``b`` as a function of its operands at ``diff`` (the others fixed at ``xv``),
    returning its float outputs ``fo``: what the cond's derivatives differentiate."""
    def primal(*d):
        outs = evaluate(b.program, _put(xv, diff, d, 0))
        return tuple(outs[k] for k in fo)

    return primal


def _cond_jvp(tangents, ans, args, params):
    pred, xs = args[0], list(args[1:])
    n = len(xs)
    given = {p - 1: t for p, t in tangents if p > 0}
    diff = [k for k in sorted(given) if is_float(xs[k])]
    fo = [k for k, a in enumerate(ans) if is_float(a)]
    if not diff or not fo:
        return None
    ts = [given[k] for k in diff]
    for b in params["branches"]:
        b.replayable("forward-mode derivative")

    def make(b):
        def jvp_fn(*a):
            xv, tv = a[:n], a[n:]
            primal = _branch_primal(b, xv, diff, fo)
            return tuple(jvp(primal, tuple(xv[p] for p in diff), tuple(tv))[1])

        return branch_of(jvp_fn, xs + ts, f"{b.__name__}_jvp", f"the jvp of {b.__name__}")

    touts = bind(COND, [pred, *xs, *ts], {"branches": tuple(make(b) for b in params["branches"])})
    result = [None] * len(ans)
    for k, t in zip(fo, touts):
        result[k] = t
    return tuple(result)


COND.vjp_all = _cond_vjp
COND.jvp_all = _cond_jvp


# --- while_loop ------------------------------------------------------------------------------

def _while_vjp(g, ans, args, params, positions):
    raise DifferentiationError(
        "fl.while_loop under fl.compile has no reverse-mode derivative: the number of "
        "iterations is known only at run time, so the backward pass would have to store an "
        "unbounded history (JAX refuses it too). Use fl.scan with a fixed length (a bound on "
        "the iterations, with np.where to freeze the carry once done), or differentiate in "
        "forward mode (fl.jvp, fl.jacobian(..., mode='fwd')).")


def _while_jvp(tangents, ans, args, params):
    cond_fn, body_fn, nk, nc = (params["cond_fn"], params["body_fn"], params["n_carry"],
                                params["n_cond"])
    carry, cc, bc = list(args[:nk]), list(args[nk:nk + nc]), list(args[nk + nc:])
    given = dict(tangents)
    fk = [i for i in range(nk) if is_float(carry[i])]
    db = [j for j in range(len(bc)) if nk + nc + j in given and is_float(bc[j])]
    if not fk or not (db or any(i in given for i in fk)):
        return None
    tc = [given[i] if given.get(i) is not None else np.zeros_like(carry[i]) for i in fk]
    tb = [given[nk + nc + j] for j in db]
    nf = len(fk)
    cond_fn.replayable("forward-mode derivative")
    body_fn.replayable("forward-mode derivative")

    def test(*a):
        return tuple(evaluate(cond_fn.program, [*a[:nk], *a[nk + nf:]]))

    def step(*a):
        c, t = a[:nk], a[nk:nk + nf]
        k, tk = a[nk + nf:nk + nf + len(bc)], a[nk + nf + len(bc):]

        def primal(*d):
            return tuple(evaluate(body_fn.program, [*_put(c, fk, d, 0), *_put(k, db, d, nf)]))

        out, tout = jvp(primal, tuple([c[i] for i in fk] + [k[j] for j in db]), tuple(t + tk))
        return (*out, *_zeros_for_none([tout[i] for i in fk], [c[i] for i in fk]))

    new_carry = carry + tc
    test_b = branch_of(test, new_carry + cc, f"{cond_fn.__name__}_jvp",
                       f"the jvp of {cond_fn.__name__}")
    step_b = branch_of(step, new_carry + bc + tb, f"{body_fn.__name__}_jvp",
                       f"the jvp of {body_fn.__name__}")
    outs = bind(WHILE, [*new_carry, *cc, *bc, *tb],
                {"cond_fn": test_b, "body_fn": step_b, "n_carry": nk + nf, "n_cond": nc})
    result = [None] * nk
    for m, i in enumerate(fk):
        result[i] = outs[nk + m]
    return tuple(result)


WHILE.vjp_all = _while_vjp
WHILE.jvp_all = _while_jvp


# --- scan ------------------------------------------------------------------------------------

def _step_examples(xs, length):
    """One step's slice of each ``xs`` leaf, for tracing a body (zeros when the scan is
    empty: only the shapes matter then)."""
    out = []
    for x in xs:
        ex = example(x)
        out.append(ex[0] if length else np.zeros(ex.shape[1:], ex.dtype))
    return out


def _scan_parts(args, params):
    nk, nx = params["n_carry"], params["n_xs"]
    return list(args[:nk]), list(args[nk:nk + nx]), list(args[nk + nx:])


class _Plan:
    """What the vjp of one scan computes, fixed by which arguments it differentiates
    (``positions``) and which outputs are floats: the step's vjp, traced, split into the
    part the consts alone give (``shared``: run once), its forward part (run by a forward
    scan that stacks the carry before each step and the residuals) and the rest (run by the
    reverse scan)."""

    def __init__(self, args, params, positions, y_float):
        body, length = params["body"], params["length"]
        carry, xs, consts = _scan_parts(args, params)
        nk, nx, nc = len(carry), len(xs), len(consts)
        self.positions, self.nk, self.nx, self.nc = tuple(positions), nk, nx, nc
        self.fk = fk = [i for i in range(nk) if is_float(carry[i])]
        self.fy = fy = [y for y, f in enumerate(y_float) if f]
        self.dx = dx = [j for j in range(nx) if nk + j in positions and is_float(xs[j])]
        self.dc = dc = [m for m in range(nc) if nk + nx + m in positions and is_float(consts[m])]
        self.empty = not (fk or fy) or not (dx or dc or any(i in positions for i in fk))
        if self.empty:
            return
        body.replayable("reverse-mode derivative")
        nf, nd, na, ny = len(fk), len(dx), len(dc), len(fy)
        self.nb = nb = nf + na + nk + nx + ny  # the step vjp's inputs before the consts

        # (ct, acc, c, x, gy, k) -> (ct of c, acc + ct of k, ct of x): the cotangents of the
        # consts accumulate in the carry
        def step_vjp(*a):
            ct, acc = a[:nf], a[nf:nf + na]
            c, x = a[nf + na:nf + na + nk], a[nf + na + nk:nf + na + nk + nx]
            gy, k = a[nf + na + nk + nx:nb], a[nb:]

            def primal(*d):
                outs = evaluate(body.program, [*_put(c, fk, d, 0), *_put(x, dx, d, nf),
                                               *_put(k, dc, d, nf + nd)])
                return tuple(outs[i] for i in fk) + tuple(outs[nk + y] for y in fy)

            primals = [c[i] for i in fk] + [x[j] for j in dx] + [k[m] for m in dc]
            _, back = pullback(primal, *primals)
            cts = _zeros_for_none(back(tuple(ct) + tuple(gy)), primals)
            sums = [s + t for s, t in zip(acc, cts[nf + nd:])]
            return (*cts[:nf], *sums, *cts[nf:nf + nd])

        ex = [example(a) for a in args]
        self.slices = _step_examples(xs, length)
        y_types = body.types[nk:]
        gy_ex = [np.zeros(y_types[y][0], y_types[y][1]) for y in fy]
        self.step_ex = ([np.zeros_like(ex[i]) for i in fk]
                        + [np.zeros_like(ex[nk + nx + m]) for m in dc]
                        + ex[:nk] + self.slices + gy_ex + ex[nk + nx:])
        traced = branch_of(step_vjp, self.step_ex, "step_vjp", f"the vjp of {body.__name__}")
        self.split = Split(traced.program,
                           [False] * (nf + na) + [True] * (nk + nx) + [False] * ny + [True] * nc,
                           [False] * nb + [True] * nc)

    def shared(self, consts) -> list:
        """The values the consts alone give (computed where the scan's values live)."""
        return self.split.invariants([None] * self.nb + list(consts))

    def recording(self, body, n_ys, shared_ex) -> Branch:
        """A body ``(c, x, k, shared) -> (c', ys[:n_ys], c, residuals)``."""
        nk, nx, nc, nf, na, ny = (self.nk, self.nx, self.nc, len(self.fk), len(self.dc),
                                  len(self.fy))
        split = self.split

        def record(*a):
            c, x, k, sh = a[:nk], a[nk:nk + nx], a[nk + nx:nk + nx + nc], a[nk + nx + nc:]
            res = split.forward([None] * (nf + na) + [*c, *x] + [None] * ny + list(k), sh)
            outs = evaluate(body.program, a[:nk + nx + nc])
            return (*outs[:nk + n_ys], *c, *res)

        return branch_of(record, self.step_ex[nf + na:nf + na + nk + nx] + self.step_ex[self.nb:]
                         + shared_ex, f"{body.__name__}_residuals",
                         f"the forward pass of {body.__name__}")

    def backward(self, params, g, xs, consts, shared, stacked, residuals) -> dict:
        """Run the reverse scan: ``{position: cotangent}``."""
        body, length = params["body"], params["length"]
        nk, nx, nc, nb, fk, fy, dx, dc = (self.nk, self.nx, self.nc, self.nb, self.fk,
                                          self.fy, self.dx, self.dc)
        nf, na, nr = len(fk), len(dc), len(residuals)
        split = self.split

        def rest(*a):
            r, k, sh = a[nb:nb + nr], a[nb + nr:nb + nr + nc], a[nb + nr + nc:]
            return tuple(split.backward([*a[:nb], *k], sh, r))

        gk = [g[i] for i in fk]
        gys = [g[nk + y] for y in fy]
        acc0 = [np.zeros_like(consts[m]) for m in dc]
        rest_ex = (self.step_ex[:nb] + _step_examples(residuals, length)
                   + self.step_ex[nb:] + [example(v) for v in shared])
        bwd = branch_of(rest, rest_ex, f"{body.__name__}_vjp", f"the vjp of {body.__name__}")
        outs = bind(SCAN, [*gk, *acc0, *stacked, *xs, *gys, *residuals, *consts, *shared],
                    {"body": bwd, "n_carry": nf + na, "n_xs": nk + nx + len(fy) + nr,
                     "length": length, "reverse": not params["reverse"]})
        found = dict(zip(fk, outs[:nf]))
        found.update((nk + nx + m, v) for m, v in zip(dc, outs[nf:nf + na]))
        found.update((nk + j, v) for j, v in zip(dx, outs[nf + na:]))
        return found


def saving_scan(args, params):
    """``(args, params, n_saved)`` of a scan that also stacks what its vjp will read, when a
    reverse-mode transform records it (so the vjp need not run the forward pass again), or
    None. The extra outputs come after the scan's own; ``n_saved`` counts them."""
    top = top_trace(args)
    if not isinstance(top, ReverseTrace):
        return None
    positions = [i for i, a in enumerate(args) if type(a) is Tracer and a._trace is top]
    body = params["body"]
    nk, ny = params["n_carry"], len(body.types) - params["n_carry"]
    plan = _Plan(args, params, positions, [d.kind in "fc" for _, d in body.types[nk:]])
    if plan.empty:
        return None
    _, _, consts = _scan_parts(args, params)
    shared = plan.shared(consts)
    saving = plan.recording(body, ny, [example(v) for v in shared])
    saving.plan = (plan, len(shared))
    n_saved = len(saving.types) - nk - ny
    return [*args, *shared], {**params, "body": saving}, n_saved


def _scan_vjp(g, ans, args, params, positions):
    body = params["body"]
    nk = params["n_carry"]
    saved = getattr(body, "plan", None)
    n = len(args) - saved[1] if saved is not None else 0
    ny = len(ans) - nk - nk - len(saved[0].split.residuals) if saved is not None else 0
    if (saved is not None and saved[0].positions == tuple(p for p in positions if p < n)
            and not any(_nonzero(c) for c in g[nk + ny:])):
        # The primal scan stacked the carries and residuals: use them. (Its outputs do not
        # depend on the shared values it was given, only the residuals do: no cotangent.)
        # Not when the stacked values got cotangents: an outer reverse-mode transform
        # differentiates the inner one's backward pass, which read them (a Hessian), and
        # the residuals (cos x of a sin x) depend on the scan's inputs: then the saving
        # scan is differentiated as any scan, below.
        plan = saved[0]
        carry, xs, consts = _scan_parts(args[:n], params)
        stacked = list(ans[nk + ny:nk + ny + nk])
        found = plan.backward(params, g, xs, consts, list(args[n:]), stacked,
                              list(ans[nk + ny + nk:]))
        return [found.get(p) for p in positions]
    plan = _Plan(args, params, positions, [is_float(a) for a in ans[nk:]])
    if plan.empty:
        return [None] * len(positions)
    carry, xs, consts = _scan_parts(args, params)
    shared = plan.shared(consts)
    recorded = plan.recording(body, 0, [example(v) for v in shared])
    outs = bind(SCAN, [*args, *shared], {**params, "body": recorded})
    found = plan.backward(params, g, xs, consts, shared, list(outs[nk:2 * nk]),
                          list(outs[2 * nk:]))
    return [found.get(p) for p in positions]


def _nonzero(c) -> bool:
    """May the cotangent ``c`` be other than zero (a traced one may)?"""
    return c is not None and (type(c) is Tracer or bool(np.any(c)))


def _scan_jvp(tangents, ans, args, params):
    body = params["body"]
    carry, xs, consts = _scan_parts(args, params)
    nk, nx, nc = len(carry), len(xs), len(consts)
    given = dict(tangents)
    fk = [i for i in range(nk) if is_float(carry[i])]
    ny = len(ans) - nk
    fy = [y for y in range(ny) if is_float(ans[nk + y])]
    dx = [j for j in range(nx) if nk + j in given and is_float(xs[j])]
    dc = [m for m in range(nc) if nk + nx + m in given and is_float(consts[m])]
    if not (fk or fy) or not (dx or dc or any(i in given for i in fk)):
        return None
    tc = [given[i] if given.get(i) is not None else np.zeros_like(carry[i]) for i in fk]
    tx = [given[nk + j] for j in dx]
    tk = [given[nk + nx + m] for m in dc]
    nf, nd = len(fk), len(dx)
    body.replayable("forward-mode derivative")

    def step(*a):
        c, t = a[:nk], a[nk:nk + nf]
        x, txs = a[nk + nf:nk + nf + nx], a[nk + nf + nx:nk + nf + nx + nd]
        k, tks = a[nk + nf + nx + nd:nk + nf + nx + nd + nc], a[nk + nf + nx + nd + nc:]

        def primal(*d):
            return tuple(evaluate(body.program, [*_put(c, fk, d, 0), *_put(x, dx, d, nf),
                                                 *_put(k, dc, d, nf + nd)]))

        primals = [c[i] for i in fk] + [x[j] for j in dx] + [k[m] for m in dc]
        out, tout = jvp(primal, tuple(primals), tuple(t + txs + tks))
        tout = list(tout)
        tcs = _zeros_for_none([tout[i] for i in fk], [out[i] for i in fk])
        tys = _zeros_for_none([tout[nk + y] for y in fy], [out[nk + y] for y in fy])
        return (*out[:nk], *tcs, *out[nk:], *tys)

    slices = _step_examples(xs, params["length"])
    step_ex = carry + tc + slices + _step_examples(tx, params["length"]) + consts + tk
    step_b = branch_of(step, step_ex, f"{body.__name__}_jvp", f"the jvp of {body.__name__}")
    outs = bind(SCAN, [*carry, *tc, *xs, *tx, *consts, *tk],
                {**params, "body": step_b, "n_carry": nk + nf, "n_xs": nx + nd})
    result = [None] * len(ans)
    for m, i in enumerate(fk):
        result[i] = outs[nk + m]
    for m, y in enumerate(fy):
        result[nk + y] = outs[nk + nf + ny + m]
    return tuple(result)


SCAN.vjp_all = _scan_vjp
SCAN.jvp_all = _scan_jvp
