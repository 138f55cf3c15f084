"""Optimisation passes over a :class:`~fluxml.compiler.ir.Program`. Each is a small function
``program -> program`` with its own tests; :func:`optimise` runs them in order.

Passes must respect what makes NumPy programs hard to rewrite: buffers that change. An
equation may write into its input's buffer (``setitem`` with ``inplace=True``), and views share
memory with their bases. :func:`aliases` groups variables that may share memory; a variable
of a group that some equation writes into is *unstable* (its value depends on when it is read),
and the rewriting passes leave such variables and the equations reading them alone.
"""

from __future__ import annotations

import numpy as np

from fluxml.compiler.ir import Const, Eqn, Program, Slot, Var

# --- what the passes need to know about an equation ----------------------------------------


def mutates(eqn) -> bool:
    """Does the equation write into one of its inputs' buffers?"""
    p = eqn.params
    return bool(p) and p.get("inplace") is True


def _marked(eqn, flag) -> bool:
    """Is the equation's function (or the NumPy-side function it calls) marked ``flag``?"""
    if getattr(eqn.fn, flag, False):
        return True
    return bool(eqn.params) and getattr(eqn.params.get("func"), flag, False)


def effect(eqn) -> bool:
    """Does the equation matter beyond its result (a check that raises on bad values)?"""
    return _marked(eqn, "effect")


def impure(eqn) -> bool:
    """Must the equation run on every call, and never be shared with another (a random draw,
    a fresh buffer that the program may write into, a check)?"""
    return _marked(eqn, "impure") or effect(eqn) or mutates(eqn)


def fresh(eqn) -> bool:
    """Is the result always a new array of the kernel's own (no operand's memory, nothing
    kept): a kernel marked ``fresh``? Its buffer is then free for reuse once dead."""
    return len(eqn.outs) == 1 and not mutates(eqn) and _marked(eqn, "fresh")


def may_view(eqn) -> bool:
    """May the result share memory with an input (a view, or an input passed through)?"""
    if fresh(eqn):
        return False
    if eqn.prim is not None:
        return eqn.prim.view or mutates(eqn) or not isinstance(eqn.fn, np.ufunc)
    func = eqn.params.get("func")
    return not isinstance(func, np.ufunc)


def is_ufunc(eqn) -> bool:
    """An elementwise NumPy ufunc applied to plain operands (it accepts ``out=``)."""
    fn = eqn.fn
    return (eqn.prim is not None and isinstance(fn, np.ufunc) and fn.nout == 1
            and fn is not np.matmul and not eqn.params and len(eqn.outs) == 1)


class _Groups:
    """Union-find over variable ids."""

    def __init__(self):
        self.parent: dict[int, int] = {}

    def find(self, a: int) -> int:
        parent = self.parent
        root = a
        while parent.get(root, root) != root:
            root = parent[root]
        while parent.get(a, a) != root:
            parent[a], a = root, parent[a]
        return root

    def union(self, a: int, b: int):
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[ra] = rb


def aliases(program: Program) -> _Groups:
    """Groups of variables that may share memory."""
    groups = _Groups()
    for eqn in program.eqns:
        if may_view(eqn):
            for v in eqn.reads():
                for o in eqn.outs:
                    groups.union(o.id, v.id)
    return groups


def unstable(program: Program, groups: _Groups | None = None) -> set[int]:
    """Ids of variables whose buffer some equation writes into (with all their aliases)."""
    groups = groups or aliases(program)
    written = {groups.find(eqn.inputs[0].id) for eqn in program.eqns
               if mutates(eqn) and type(eqn.inputs[0]) is Var}
    if not written:
        return set()
    every = {v.id for v in program.inputs}
    for eqn in program.eqns:
        every.update(v.id for v in eqn.reads())
        every.update(o.id for o in eqn.outs)
    return {i for i in every if groups.find(i) in written}


# --- substitution ------------------------------------------------------------------------------

def _subst(x, env):
    t = type(x)
    if t is Var:
        return env.get(x.id, x)
    if t is Slot:
        new = env.get(x.var.id)
        if new is None:
            return x
        return Slot(new) if type(new) is Var else _unslot(new)
    if t is tuple or t is list:
        return t(_subst(a, env) for a in x)
    if t is dict:
        return {k: _subst(v, env) for k, v in x.items()}
    return x


def _unslot(c):
    return c.value if type(c) is Const else c


def _rewrite(program, eqns, env):
    """A program with ``eqns`` and every use of a replaced variable substituted."""
    if not env:
        return Program(program.inputs, eqns, program.outputs, program.writes)
    out = []
    for e in eqns:
        new = Eqn(e.name, e.fn, _subst(e.inputs, env), _subst(e.params, env), e.outs, e.prim,
                  e.multiple)
        new.out = e.out
        out.append(new)
    outputs = [_subst(v, env) for v in program.outputs]
    writes = [(p, _subst(v, env)) for p, v in program.writes]
    return Program(program.inputs, out, outputs, writes)


# --- the passes --------------------------------------------------------------------------------

def dead_code(program: Program) -> Program:
    """Drop equations whose results nothing reads (outputs and write-backs count as reads).
    Equations that write into an input's buffer or must run every call are kept."""
    live = {v.id for v in program.outputs if type(v) is Var}
    live.update(v.id for _, v in program.writes if type(v) is Var)
    kept = []
    for eqn in reversed(program.eqns):
        if mutates(eqn) or effect(eqn) or any(o.id in live for o in eqn.outs):
            kept.append(eqn)
            live.update(v.id for v in eqn.reads())
    kept.reverse()
    return Program(program.inputs, kept, program.outputs, program.writes)


def _key(x):
    """A hashable form of an operand or parameter, or None if it has none."""
    t = type(x)
    if t is Var:
        return ("v", x.id)
    if t is Slot:
        return ("v", x.var.id)
    if t is Const:
        return ("c", id(x.value))
    if t is tuple or t is list:
        parts = tuple(_key(a) for a in x)
        return None if None in parts else (t.__name__, parts)
    if t is dict:
        parts = tuple((k, _key(v)) for k, v in x.items())
        return None if any(p[1] is None for p in parts) else ("d", parts)
    if t is np.ndarray:
        return ("a", id(x))
    if t is slice:
        return ("s", _key(x.start), _key(x.stop), _key(x.step))
    try:
        hash(x)
    except TypeError:
        return ("id", id(x))
    return (t, x)


def common_subexpressions(program: Program) -> Program:
    """Compute each pure equation once: a second equation with the same function, operands
    and parameters reuses the first one's results (operands must be stable buffers)."""
    shaky = unstable(program)
    seen: dict = {}
    env: dict = {}
    kept = []
    for eqn in program.eqns:
        e_inputs, e_params = _subst(eqn.inputs, env), _subst(eqn.params, env)
        reads = [v for v in _reads_of(e_inputs, e_params)]
        key = None
        if not impure(eqn) and not any(v.id in shaky for v in reads) \
                and not any(o.id in shaky for o in eqn.outs):
            ki, kp = _key(e_inputs), _key(e_params)
            if ki is not None and kp is not None:  # (a weak result is another value)
                key = (id(eqn.fn), eqn.name, ki, kp, eqn.outs[0].weak)
        if key is not None and key in seen:
            for o, prev in zip(eqn.outs, seen[key].outs):
                env[o.id] = prev
            continue
        new = Eqn(eqn.name, eqn.fn, e_inputs, e_params, eqn.outs, eqn.prim, eqn.multiple)
        new.out = eqn.out
        if key is not None:
            seen[key] = new
        kept.append(new)
    return _rewrite(program, kept, env) if env else Program(
        program.inputs, kept, program.outputs, program.writes)


def _reads_of(inputs, params):
    return Eqn("", None, inputs, params, []).reads()


def constant_folding(program: Program) -> Program:
    """Evaluate at compile time the pure equations that read no variable (and whose result
    nothing writes into: a folded constant is shared by every run)."""
    shaky = unstable(program)
    env: dict = {}
    kept = []
    for eqn in program.eqns:
        eqn = _with(eqn, _subst(eqn.inputs, env), _subst(eqn.params, env))
        if (not impure(eqn) and not eqn.reads() and not eqn.multiple
                and eqn.outs[0].id not in shaky):
            args = [_unslot(a) for a in eqn.inputs]
            try:
                value = eqn.fn(*args, **(eqn.params or {}))
            except Exception:  # noqa: BLE001 - it will fail at run time with its own error
                kept.append(eqn)
                continue
            if isinstance(value, np.ndarray):
                value.flags.writeable = False  # a shared constant: no write may reach it
            elif eqn.outs[0].weak and isinstance(value, np.generic):  # a Python number,
                value = value.item()  # as the program computes it
            env[eqn.outs[0].id] = Const(value)
            continue
        kept.append(eqn)
    return _rewrite(program, kept, env)


def _with(eqn, inputs, params):
    new = Eqn(eqn.name, eqn.fn, inputs, params, eqn.outs, eqn.prim, eqn.multiple)
    new.out = eqn.out
    return new


def _is_value(x, value) -> bool:
    """Is the operand a constant equal to ``value`` everywhere (a number or a small array)?"""
    if type(x) is Const:
        x = x.value
    if isinstance(x, (bool, np.bool_)) or type(x) in (Var, Slot):
        return False
    if isinstance(x, (int, float, np.number)):
        return x == value
    if isinstance(x, np.ndarray) and x.dtype.kind in "fiu" and x.size <= 1 << 20:
        return bool(np.all(x == value))
    return False


def _passes_through(eqn, keep):
    """``x * 1``, ``x + 0``: the result is operand ``keep`` when the constant operand neither
    broadcasts it to another shape nor changes its dtype."""
    x, out = eqn.inputs[keep], eqn.outs[0]
    if type(x) is not Var or x.shape != out.shape or x.dtype != out.dtype:
        return None
    return x


_IDENTITY = {np.multiply: 1, np.add: 0, np.subtract: 0, np.true_divide: 1}


def simplify(program: Program) -> Program:
    """Algebraic simplification: ``x * 1``, ``x + 0``, ``x - 0``, ``x / 1`` become ``x`` (when
    shape and dtype stay); a transpose of a transpose that restores the order, and a cast to
    the dtype an array already has, become the array itself; a copy of ``v`` written over the
    whole of an array of its shape and dtype (``x[...] = v``) becomes ``v``. Not where the
    result is returned and ``v`` is an argument or a view of one: the caller would get its
    own array back, which eager code never returns for ``x * 1`` (an in-place write into the
    result, an averaging of gradients say, would change the argument)."""
    groups = aliases(program)
    shaky = unstable(program, groups)
    given = {groups.find(v.id) for v in program.inputs if type(v) is Var}
    returned = {v.id for v in program.outputs if type(v) is Var}
    env: dict = {}
    kept = []
    made_by: dict = {}
    for eqn in program.eqns:
        eqn = _with(eqn, _subst(eqn.inputs, env), _subst(eqn.params, env))
        same = _simplified(eqn, made_by, shaky)
        if same is not None and eqn.outs[0].id in returned and type(same) is Var \
                and groups.find(same.id) in given:
            same = None
        if same is not None:
            env[eqn.outs[0].id] = same
            continue
        for o in eqn.outs:
            made_by[o.id] = eqn
        kept.append(eqn)
    return _rewrite(program, kept, env)


def _simplified(eqn, made_by, shaky):
    """The variable an equation's result equals, or None (not a weak one for a strong
    result, nor the other way round: ``np.multiply(k, 1.0)`` of a Python number ``k`` is a
    NumPy float64, which ``x32 * _`` takes as float64, and ``k`` is not)."""
    same = _same_value(eqn, made_by, shaky)
    if type(same) is Var and same.weak != eqn.outs[0].weak:
        return None
    return same


def _same_value(eqn, made_by, shaky):
    if eqn.outs[0].id in shaky or any(v.id in shaky for v in eqn.reads()):
        return None
    fn = eqn.fn
    if is_ufunc(eqn) and fn in _IDENTITY and len(eqn.inputs) == 2:
        unit = _IDENTITY[fn]
        a, b = eqn.inputs
        if _is_value(b, unit):
            return _passes_through(eqn, 0)
        if fn in (np.multiply, np.add) and _is_value(a, unit):
            return _passes_through(eqn, 1)
        return None
    if eqn.name == "transpose" and eqn.prim is not None and type(eqn.inputs[0]) is Var:
        inner = made_by.get(eqn.inputs[0].id)
        if inner is not None and inner.name == "transpose" and inner.prim is eqn.prim \
                and type(inner.inputs[0]) is Var:
            p, q = inner.params.get("axes"), eqn.params.get("axes")
            n = len(eqn.outs[0].shape)
            p = tuple(range(n))[::-1] if p is None else tuple(p)
            q = tuple(range(n))[::-1] if q is None else tuple(q)
            if tuple(p[i] for i in q) == tuple(range(n)):
                return inner.inputs[0]
        return None
    if eqn.name == "setitem" and eqn.params.get("idx") is Ellipsis \
            and eqn.params.get("inplace") is False:  # x[...] = v: a copy of v, as x's type
        v, out = eqn.inputs[1], eqn.outs[0]
        return v if type(v) is Var and v.shape == out.shape and v.dtype == out.dtype else None
    if eqn.name == "astype" and type(eqn.inputs[0]) is Var and eqn.params \
            and np.dtype(eqn.params.get("dtype", object)) == eqn.inputs[0].dtype:
        x = eqn.inputs[0]
        return x if x.shape == eqn.outs[0].shape else None
    return None


# --- buffers -----------------------------------------------------------------------------------

def buffers(program: Program, arena: bool = False) -> Program:
    """Buffer planning. Each elementwise ufunc (and matrix product) writes its result through
    ``out=`` into a buffer that is dead by then, chosen in this order:

    - donation: a new value of an argument that the function writes back goes straight into
      the argument's buffer, where the old value is dead (no copy back at the end);
    - the buffer of a dead operand (``np.add(a, b, out=a)``), or of any dead result of the
      same shape and dtype;
    - with ``arena``, a buffer the compiled program keeps from call to call (``program.arena``):
      a fresh large array costs page faults on every call, a kept one does not.

    Liveness is taken over alias groups (a buffer is dead when no variable that may share its
    memory is read later). Only buffers the program itself made (with a ufunc, or a kernel
    marked ``fresh``: :func:`fresh`) or kept are reused, never an argument's (but by
    donation) and never one that reaches an output."""
    groups = aliases(program)
    last = _last_uses(program, groups)
    input_groups = {groups.find(v.id) for v in program.inputs}
    output_groups = {groups.find(v.id) for v in program.outputs if type(v) is Var}
    finals: dict[int, int] = {}  # var id -> how many write-backs use it
    for _, v in program.writes:
        if type(v) is Var:
            finals[v.id] = finals.get(v.id, 0) + 1
    written_back = {v.id: pos for pos, v in program.writes if type(v) is Var}
    pool: list[list] = []  # [buffer var, holder var]: buffers the program made or keeps
    kept: list[Var] = []
    donated = set()
    eqns = []
    for i, eqn in enumerate(program.eqns):
        product = _product(eqn)
        out = eqn.outs[0]
        if (is_ufunc(eqn) or product or _fused(eqn)) and not out.weak and (
                out.shape or written_back.get(out.id) is not None):  # 0-d: donation only
            # (a weak result is a Python number: no buffer)
            target = None if product else _donation(program, groups, last, written_back,
                                                    finals, out, i)
            if target is not None:
                donated.add(written_back[out.id])
            elif not out.shape:
                pass
            else:
                escapes = groups.find(out.id) in output_groups | input_groups
                target = _free_buffer(pool, eqn, out, groups, last, written_back, i, product,
                                      escapes)
                if target is None and arena and groups.find(out.id) not in output_groups \
                        and groups.find(out.id) not in input_groups:
                    target = Var(-(len(kept) + 1), out.shape, out.dtype, f"buf{len(kept) + 1}")
                    kept.append(target)
                    pool.append([target, out])
            if target is not None:
                eqn = _with(eqn, eqn.inputs, eqn.params)
                eqn.out = target
            elif out.shape and groups.find(out.id) not in output_groups | input_groups:
                pool.append([out, out])  # a fresh buffer: later results may take it over
        elif fresh(eqn) and out.shape and \
                groups.find(out.id) not in output_groups | input_groups:
            pool.append([out, out])  # a kernel's new array: later results may take it over
        eqns.append(eqn)
    writes = [(p, v) for p, v in program.writes if p not in donated]
    result = Program(program.inputs, eqns, program.outputs, writes)
    result.arena = kept
    result.donated = sorted(donated)
    return result


def _fused(eqn) -> bool:
    """A fused elementwise chain (``fusion.Fused``, a CuPy kernel: it accepts ``out=``)."""
    return type(eqn.fn).__name__ == "Fused"


def _product(eqn) -> bool:
    """A matrix product of plain operands (it accepts ``out=``)."""
    return (eqn.prim is not None and eqn.fn is np.matmul and not eqn.params
            and len(eqn.outs) == 1)


def _free_buffer(pool, eqn, out, groups, last, written_back, i, product, escapes):
    """A pooled buffer that is dead after equation ``i`` and can take its result: an
    operand's own first (in place), else any. A matrix product never writes over its
    operands. A result that ``escapes`` (an output, or shares memory with one or with an
    argument) never takes a kept buffer: the next call would overwrite what the caller
    holds. The entry's holder becomes ``out``."""
    operands = {a.id for a in eqn.inputs if type(a) is Var}
    best = None
    for entry in pool:
        buf, holder = entry
        if (buf.shape != out.shape or buf.dtype != out.dtype or holder.id in written_back
                or last.get(groups.find(holder.id), -1) > i or escapes and buf.id < 0):
            continue
        if product and holder.id in operands:
            continue
        if holder.id in operands or best is None:
            best = entry
            if holder.id in operands:
                break
    if best is None:
        return None
    best[1] = out
    return best[0]


def _donation(program, groups, last, written_back, finals, out, i):
    """The argument whose buffer may receive ``out``, the new value written back into it."""
    pos = written_back.get(out.id)
    if pos is None or finals[out.id] != 1:
        return None
    arg = program.inputs[pos]
    if arg.shape != out.shape or arg.dtype != out.dtype:
        return None
    return arg if last.get(groups.find(arg.id), -1) <= i else None


def _last_uses(program, groups) -> dict[int, int]:
    """For each alias group, the index of the last equation reading any of its variables
    (outputs and write-backs read at the end, ``len(eqns)``)."""
    last: dict[int, int] = {}
    for i, eqn in enumerate(program.eqns):
        for v in eqn.reads():
            last[groups.find(v.id)] = i
    end = len(program.eqns)
    for v in program.outputs:
        if type(v) is Var:
            last[groups.find(v.id)] = end
    for _, v in program.writes:
        if type(v) is Var:
            last[groups.find(v.id)] = end
    return last


def maxpool_scatters(program: Program, make) -> Program:
    """``pool_scatter(g, maxpool_positions(x, maxpool(x)))``, the gradient of max pooling as
    the engine records it under ``fl.compile`` (flat positions, then a scatter: what every back
    end can run), replaced by ``make(eqn, g, x, best, geo)`` where that gives an equation (a
    back end's own kernel for the pair; ``x`` and ``best`` as the positions' Slots, ``geo``
    the pooling's geometry). The positions then go as dead code, unless read elsewhere."""
    producer = {o.id: e for e in program.eqns for o in e.outs}
    eqns = []
    for eqn in program.eqns:
        new = None
        if eqn.prim is not None and eqn.prim.name == "pool_scatter":
            g, idx = eqn.inputs
            pos = producer.get(idx.id) if type(idx) is Var else None
            if pos is not None and pos.prim is None and _positions_of_maxpool(pos, producer):
                x, best = pos.params["args"]
                new = make(eqn, g, x, best, pos.params["kwargs"])
        eqns.append(eqn if new is None else new)
    return Program(program.inputs, eqns, program.outputs, program.writes)


def _positions_of_maxpool(pos, producer) -> bool:
    """Is ``pos`` ``_maxpool_positions(x, best)`` with ``best`` the ``maxpool`` of ``x`` of
    the same geometry?"""
    func = (pos.params or {}).get("func")
    if f"{getattr(func, '__module__', None)}.{getattr(func, '__name__', None)}" != \
            "fluxml.nnlib.pool._maxpool_positions":
        return False
    x, best = pos.params["args"]
    made = producer.get(best.var.id) if type(best) is Slot else None
    return (made is not None and made.prim is not None and made.prim.name == "maxpool" and
            type(x) is Slot and made.inputs[0] is x.var and made.params == pos.params["kwargs"])


PIPELINE = (simplify, common_subexpressions, constant_folding, dead_code, buffers)


def pipeline(backend: str = "numpy"):
    """The passes for a back end: NumPy reuses buffers through ``out=``; CuPy first fuses
    elementwise chains into kernels; XLA does its own fusion and buffer planning."""
    if backend == "cupy":
        # lazy: fusion imports this module
        from fluxml.compiler.fusion import fuse_elementwise

        return PIPELINE[:-1] + (fuse_elementwise, buffers)
    if backend == "xla":
        return PIPELINE[:-1]
    return PIPELINE


def optimise(program: Program, passes=PIPELINE) -> Program:
    """Run the passes in order."""
    for p in passes:
        program = p(program)
    return program
