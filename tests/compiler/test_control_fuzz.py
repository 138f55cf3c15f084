"""A fuzzer of compiled control flow: random programs over a few float64 arrays that mix
NumPy operations (tanh, sin, exp, products, sums, matmul, indexing, np.where) with randomly
nested ``fl.cond``, ``fl.scan`` (forward and reverse, trees of carries, xs and ys) and
``fl.while_loop`` (bounded counts, some ending on a value), whose branches and bodies read
the arguments and arrays made outside them (each operation grows its operands' size at
most linearly, so that finite differences stay accurate). Each program is also run as plain
Python (an ``if``, a ``for`` stacking the ys, a ``while``: the reference). For each case:

- eager fluxml agrees with the plain-Python reference, and ``fl.compile`` with eager fluxml,
  on three calls with new values (so the predicates go the other way at some calls);
- ``fl.gradient`` of a scalar loss agrees eagerly, compiled and on the reference, and with
  central finite differences of the reference run on plain NumPy arrays;
- ``fl.jvp`` compiled agrees with the reference's; without a while_loop a Hessian-vector
  product (forward over reverse and reverse over reverse) compiled agrees with the
  reference's; with one, a compiled reverse-mode derivative is refused by a
  ``DifferentiationError`` that names the while_loop.

    python tests/compiler/test_control_fuzz.py [CASES] [SEED] [BACKEND]  # by hand
"""

from __future__ import annotations

import sys

import numpy as np

import fluxml as fl

NAMES = ("a", "b", "c", "d")  # the program's variables: vectors of shape (3,)
UNARY = ("tanh", "sin", "exp", "half", "square")
BINARY = ("add", "mul", "sub")


# --- random programs -------------------------------------------------------------------------

def _pick(rng, seq, k=None):
    if k is None:
        return seq[int(rng.integers(len(seq)))]
    return [seq[i] for i in sorted(rng.choice(len(seq), size=k, replace=False))]


def _program(rng, depth, readable, n_stmts):
    return [_statement(rng, depth, readable) for _ in range(n_stmts)]


def _statement(rng, depth, readable):
    r = rng.random()
    dst = _pick(rng, NAMES)
    if depth > 0 and r < 0.5:
        kind = _pick(rng, ("cond", "cond", "scan", "scan", "scan", "while"))
        names = _pick(rng, NAMES, int(rng.integers(1, 4)))
        struct = _pick(rng, ("tuple", "dict"))
        inner = lambda extra=(): _program(rng, depth - 1, readable + extra,  # noqa: E731
                                          int(rng.integers(1, 4)))
        if kind == "cond":
            # (a predicate on a constant is concrete under fl.compile too: one branch runs)
            return ("cond", _pick(rng, readable + ("const",)), float(rng.normal(scale=0.5)),
                    bool(rng.random() < 0.3), names,
                    _pick(rng, NAMES, int(rng.integers(1, 4))), struct, inner(), inner())
        if kind == "scan":
            xs = _pick(rng, ("none", "X", "tuple", "dict"))
            extra = {"none": (), "X": ("x",), "tuple": ("x", "y"), "dict": ("x", "y")}[xs]
            ys = _pick(rng, NAMES, int(rng.integers(0, 3)))
            reductions = [_pick(rng, ("sum", "last", "first", "mean")) for _ in ys]
            return ("scan", names, struct, xs, bool(rng.random() < 0.5), ys, reductions,
                    bool(rng.random() < 0.3), inner(extra))
        return ("while", names, struct, int(rng.integers(0, 4)),
                float(rng.normal(scale=2.0)) if rng.random() < 0.4 else None,
                bool(rng.random() < 0.5), inner())
    if r < 0.55:
        return ("unary", dst, _pick(rng, UNARY), _pick(rng, readable))
    if r < 0.7:
        return ("binary", dst, _pick(rng, BINARY), _pick(rng, readable), _pick(rng, readable))
    if r < 0.78:
        return ("matmul", dst, _pick(rng, readable))
    if r < 0.8:
        return ("sum", dst, _pick(rng, readable), rng.normal(size=3))  # a captured constant
    if r < 0.84:  # a derivative inside a branch or body
        return ("grad", dst, _pick(rng, readable), _pick(rng, readable))
    if r < 0.87:  # writes into a fresh array, and two names for one array
        return (_pick(rng, ("augment", "setitem", "alias")), dst, _pick(rng, readable),
                _pick(rng, readable), int(rng.integers(3)))
    if r < 0.92:
        index = _pick(rng, ("perm", "reverse", "element"))
        return ("index", dst, _pick(rng, readable), index, rng.permutation(3),
                int(rng.integers(3)))
    return ("where", dst, _pick(rng, readable), _pick(rng, readable), _pick(rng, readable))


# --- running a program: with fl's control flow ("fl") or Python's ("py") ---------------------

def _pack(names, env, struct):
    if struct == "dict":
        return {n: env[n] for n in names}
    return tuple(env[n] for n in names)


def _unpack(names, tree, struct):
    if struct == "dict":
        return {n: tree[n] for n in names}
    return dict(zip(names, tree))


def _execute(prog, env, ctx):
    """Run ``prog`` on the variables ``env`` (a dict it updates)."""
    for s in prog:
        _step(s, env, ctx)


def _step(s, env, ctx):  # noqa: C901 (one branch per statement kind)
    kind = s[0]
    if kind == "unary":
        _, dst, op, src = s
        x = env[src]
        env[dst] = {"tanh": np.tanh, "sin": np.sin, "exp": lambda v: np.exp(0.3 * np.tanh(v)),
                    "half": lambda v: 0.5 * v, "square": lambda v: 0.3 * v * np.tanh(v)}[op](x)
    elif kind == "binary":
        _, dst, op, p, q = s
        x, y = env[p], env[q]
        env[dst] = 0.5 * (x + y) if op == "add" else x * np.tanh(y) if op == "mul" else x - 0.5 * y
    elif kind == "matmul":
        env[s[1]] = 0.3 * (ctx["W"] @ np.tanh(env[s[2]]))
    elif kind == "sum":
        env[s[1]] = np.sum(np.tanh(env[s[2]])) * s[3]
    elif kind == "grad":
        other = env[s[3]]
        env[s[1]] = fl.gradient(lambda u: np.sum(np.sin(u) * np.tanh(other)), env[s[2]])[0]
    elif kind in ("augment", "setitem"):
        # (a fresh array made from a value of the branch or body itself, "_own": one made
        # only from closed-over values belongs to the code around it, which may not be
        # written from inside; nor may a plain NumPy array, as the engine's error says)
        x, y = env[s[2]], env[s[3]]
        fresh = (np.tanh(x) if kind == "augment" else np.sin(x)) + 0.0 * env["_own"]
        if kind == "augment":
            fresh += 0.5 * y
        else:
            fresh[s[4]] = y[s[4]]
        env[s[1]] = fresh
    elif kind == "alias":
        env[s[1]] = env[s[2]]
    elif kind == "index":
        _, dst, src, how, perm, k = s
        x = env[src]
        env[dst] = x[perm] if how == "perm" else x[::-1] if how == "reverse" else x[k] * np.tanh(x)
    elif kind == "where":
        _, dst, p, q, r = s
        env[dst] = np.where(env[p] > 0, env[q], env[r])
    elif kind == "cond":
        _cond(s, env, ctx)
    elif kind == "scan":
        _scan(s, env, ctx)
    else:
        _while(s, env, ctx)


def _cond(s, env, ctx):
    _, p, threshold, as_int, ins, outs, struct, yes, no = s
    pred = np.sum(env[p] if p != "const" else ctx["const"]) > threshold
    if as_int:  # a number as the predicate: nonzero is true
        pred = pred.astype(np.int64)

    def branch(prog):
        def run(*operands):
            local = dict(env)  # what it does not take as operands, it reads from outside
            local.update(_unpack(ins, operands[0] if struct == "dict" else operands, struct))
            if p != "const":  # (a concrete predicate: the branch runs as code of the body
                local["_own"] = local[ins[0]]  # around it, under fl.compile too)
            _execute(prog, local, ctx)
            return _pack(outs, local, struct)
        return run

    operands = _pack(ins, env, struct)
    operands = (operands,) if struct == "dict" else operands
    if ctx["mode"] == "fl":
        result = fl.cond(pred, branch(yes), branch(no), *operands)
    else:
        result = (branch(yes) if pred else branch(no))(*operands)
    env.update(_unpack(outs, result, struct))


def _scan(s, env, ctx):
    _, names, struct, xs_form, reverse, ys, reductions, counter, body = s
    X, Y = ctx["X"], ctx["Y"]
    xs = {"none": None, "X": X, "tuple": (X, Y), "dict": {"x": X, "y": Y}}[xs_form]
    n = len(X)

    def f(carry, x):
        c = carry[0] if counter else carry
        local = dict(env)
        local.update(_unpack(names, c, struct))
        local["_own"] = local[names[0]]
        if xs_form == "X":
            local["x"] = x
        elif xs_form == "tuple":
            local["x"], local["y"] = x
        elif xs_form == "dict":
            local.update(x)
        _execute(body, local, ctx)
        if counter:  # an integer carry beside the floats
            local[names[0]] = local[names[0]] + 0.1 * carry[1]
        new = _pack(names, local, struct)
        y = _pack(ys, local, "dict")
        if counter:  # an integer y too
            y["n"] = carry[1]
        return ((new, carry[1] + 1) if counter else new), y or None

    init = _pack(names, env, struct)
    init = (init, np.array(0)) if counter else init
    if ctx["mode"] == "fl":
        carry, stacked = fl.scan(f, init, xs, length=n, reverse=reverse)
    else:
        carry, steps = init, {}
        for t in (range(n - 1, -1, -1) if reverse else range(n)):
            x_t = fl.fmap(lambda v: v[t], xs) if xs is not None else None
            carry, y = f(carry, x_t)
            steps[t] = y
        stacked = {k: np.stack([steps[t][k] for t in range(n)]) for k in steps[0] or {}} or None
    env.update(_unpack(names, carry[0] if counter else carry, struct))
    if counter:
        env[names[0]] = env[names[0]] + 0.01 * np.sum(stacked["n"] * np.arange(1, n + 1))
    for k, how in zip(ys, reductions):
        v = stacked[k]
        env[k] = (np.sum(v, axis=0) / n if how == "sum" else v[-1] if how == "last"
                  else v[0] if how == "first" else np.mean(v * np.tanh(v), axis=0))


def _while(s, env, ctx):
    _, names, struct, bound, limit, int_counter, body = s

    def test(carry):
        go = carry[0] < bound
        if limit is not None:  # the count depends on the values too
            # (compared with a value from outside: cond_fun closes over it)
            value = np.sum(np.tanh(_unpack(names, carry[1], struct)[names[0]]))
            go = np.logical_and(go, value < limit + 0.1 * np.sum(np.tanh(env["a"])))
        return go

    def step(carry):
        local = dict(env)
        local.update(_unpack(names, carry[1], struct))
        local["_own"] = local[names[0]]
        _execute(body, local, ctx)
        return carry[0] + 1, _pack(names, local, struct)

    i0 = np.array(0) if int_counter else np.array(0.0)
    carry = (i0, _pack(names, env, struct))
    if ctx["mode"] == "fl":
        carry = fl.while_loop(test, step, carry)
    else:
        while test(carry):
            carry = step(carry)
    env.update(_unpack(names, carry[1], struct))


def _has(prog, kind) -> bool:
    for s in prog:
        if s[0] == kind:
            return True
        if s[0] == "cond" and (_has(s[-2], kind) or _has(s[-1], kind)):
            return True
        if s[0] in ("scan", "while") and _has(s[-1], kind):
            return True
    return False


def _function(prog, mode, weights):
    """The program as a function of its arguments, returning its variables and a loss."""
    constant = np.tanh(weights)  # an array the program closes over
    def run(a, b, W, X, Y):
        env = {"a": a, "b": b, "c": a * b, "d": np.tanh(b), "_own": a}
        _execute(prog, env, {"mode": mode, "W": W, "X": X, "Y": Y, "const": constant})
        return env

    def loss(*args):
        env = run(*args)
        return sum(np.sum(np.sin(env[n]) * w) for n, w in zip(NAMES, weights))

    return run, loss


# --- checking one case -------------------------------------------------------------------------

def _args(rng, length):
    return (rng.normal(size=3), rng.normal(size=3), rng.normal(size=(3, 3)),
            rng.normal(size=(length, 3)), rng.normal(size=(length, 3)))


def _close(got, want, what, tol=1e-10):
    for k, (x, y) in enumerate(zip(fl.tree.leaves(got), fl.tree.leaves(want), strict=True)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=tol, atol=tol,
                                   err_msg=f"{what}, leaf {k}")


def _fd(loss, args, eps=1e-6):
    """Central finite differences of ``loss`` (on plain NumPy arrays) at ``args``."""
    grads = []
    for i, x in enumerate(args):
        g = np.zeros_like(x)
        for j in np.ndindex(x.shape):
            up, down = [list(args) for _ in range(2)]
            up[i], down[i] = x.copy(), x.copy()
            up[i][j] += eps
            down[i][j] -= eps
            g[j] = (loss(*up) - loss(*down)) / (2 * eps)
        grads.append(g)
    return tuple(grads)


def _compile(fn, backend):
    """``fl.compile(fn)``; for XLA compiled before the first call (not run by NumPy while XLA
    compiles in the background), so that every call checks XLA's code."""
    return fl.compile(fn, backend=backend, background=backend != "xla")


def check_case(seed: int, backend: str = "numpy", second_order: bool = True) -> dict:
    """One random program, checked as the module says; what was checked, counted."""
    rng = np.random.default_rng(seed)
    prog = _program(rng, int(rng.integers(1, 4)), NAMES, int(rng.integers(1, 5)))
    weights = rng.normal(size=len(NAMES))
    length = int(rng.integers(1, 4))
    with_while = _has(prog, "while")
    run_fl, loss_fl = _function(prog, "fl", weights)
    run_py, loss_py = _function(prog, "py", weights)
    where = f"seed {seed} ({backend}): {prog}"
    compiled = _compile(run_fl, backend)
    grad_c = _compile(lambda *a: fl.gradient(loss_fl, *a, zeros_for_none=True), backend)
    jvp_c = _compile(lambda a, t: fl.jvp(loss_fl, a, t), backend)
    counts = {"cases": 1, "calls": 0, "grads": 0, "hvps": 0, "refused": 0}
    args = _args(rng, length)
    for call in range(3):
        # the second call negates the first's arguments: a predicate on a sum of odd
        # functions of them goes the other way
        args = _args(rng, length) if call != 1 else tuple(-x for x in args)
        want = run_py(*args)
        _close(run_fl(*args), want, f"{where}: eager vs Python, call {call}")
        _close(compiled(*args), want, f"{where}: compiled vs Python, call {call}")
        counts["calls"] += 1
        tangents = tuple(rng.normal(size=np.shape(x)) for x in args)
        _close(jvp_c(args, tangents), fl.jvp(loss_py, args, tangents),
               f"{where}: compiled jvp, call {call}")
        g_py = fl.gradient(loss_py, *args, zeros_for_none=True)
        _close(fl.gradient(loss_fl, *args, zeros_for_none=True), g_py,
               f"{where}: eager gradient, call {call}")
        _close(g_py, _fd(loss_py, args), f"{where}: gradient vs finite differences", 1e-6)
        try:
            got = grad_c(*args)
        except fl.DifferentiationError as e:  # (a while_loop whose results the loss
            # does not read needs no derivative: that gradient runs)
            assert with_while and "while_loop" in str(e), f"{where}: {e}"
            counts["refused"] += 1
            continue
        _close(got, g_py, f"{where}: compiled gradient, call {call}")
        counts["grads"] += 1
        if second_order and call == 0 and not with_while:
            _check_hvp(loss_fl, loss_py, args, tangents, backend, where)
            counts["hvps"] += 1
    return counts


def _check_hvp(loss_fl, loss_py, args, v, backend, where):
    def fwd(loss):
        return lambda *a: fl.jvp(lambda *a: fl.gradient(loss, *a, zeros_for_none=True), a, v)[1]

    def rev(loss):
        def along_v(*a):
            return sum(np.sum(g * t) for g, t in zip(fl.gradient(loss, *a, zeros_for_none=True), v))

        return lambda *a: fl.gradient(along_v, *a, zeros_for_none=True)

    want = fwd(loss_py)(*args)
    _close(rev(loss_py)(*args), want, f"{where}: reference hvp, reverse over reverse", 1e-8)
    _close(_compile(fwd(loss_fl), backend)(*args), want,
           f"{where}: compiled hvp, forward over reverse", 1e-8)
    _close(_compile(rev(loss_fl), backend)(*args), want,
           f"{where}: compiled hvp, reverse over reverse", 1e-8)


def _total(seeds, backend="numpy", second_order=True) -> dict:
    total: dict = {}
    for seed in seeds:
        for k, v in check_case(seed, backend, second_order).items():
            total[k] = total.get(k, 0) + v
    return total


# --- defects the fuzzer found, each checked against a formula --------------------------------

def test_compiled_hessian_vector_product_through_a_reversed_slice():
    # forward over reverse of b[::-1]: the jvp of the sweep's write into the cotangent's
    # accumulator (a plain array the jvp made) went into that array in place, a constant of
    # the program by then: "ValueError: assignment destination is read-only" at trace time
    def loss(b):
        return np.sum(np.sin(b[::-1])) + np.sum(np.sin(b))

    v = np.array([1.0, 2.0, 3.0])
    hvp = fl.compile(lambda b: fl.jvp(lambda b: fl.gradient(loss, b)[0], (b,), (v,))[1])
    for b in (np.array([0.0, 0.7, 1.4]), np.array([1.0, -0.3, 2.0])):
        np.testing.assert_allclose(hvp(b), -2 * np.sin(b) * v, rtol=1e-12)


def test_control_fuzz():
    _total(range(8))


if __name__ == "__main__":
    cases = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    first = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    backend = sys.argv[3] if len(sys.argv) > 3 else "numpy"
    print(f"clean: {_total(range(first, first + cases), backend)}")
