"""Seeded random fuzzing of fluxml's forward mode and higher order through the NN primitives,
layers and losses against PyTorch (not part of the suite: PyTorch is no dependency of
fluxml; tests/nnlib/test_fuzz_jvp.py is the small NumPy-only version). Run with

    PYTHONPATH=src /work/.bench-venv/bin/python tests/nnlib/torch_fuzz_jvp.py N SEED [families]

It draws the random configurations of torch_fuzz.py's case generators (imported, not
copied: each calls ``compare(ours, theirs, arrays)``, which this script replaces for the
run) and of a few families of its own: the recurrent sequence kernels, the activations at
their kinks, the remaining activations and losses, small models, what torch refuses
(conv_only, against differences), and every layer and loss of
tests/compiler/layer_sweep.py with respect to model and inputs at once (layer_sweep,
against differences). Each case compares, in float64:

- ``fl.jvp`` against ``torch.func.jvp`` (or torch's double-backward jvp where torch has no
  forward rule, or central differences of fluxml's own function where torch has neither),
  for random tangents of every float input, or of a random part of them (the others held
  fixed by a closure, or given zero tangents, or None); and against fluxml's own vjp
  (``<J t, c> = <t, J^T c>``, which holds at ties and kinks too);
- float32 primals and tangents: float32 values and tangents, close to float64's;
- in a third of the cases, the forward-over-reverse Hessian-vector product (``fl.jvp`` of a
  pullback) and the reverse-over-forward one (the gradient of a jvp) against torch's double
  backward, and the second directional derivative (a jvp of a jvp) against torch's nested
  forward mode (or, where torch's is wrong or missing, differences of our first order);
- in small cases, ``fl.jacobian`` (auto, "fwd" or "rev") against ``torch.func.jacrev`` and
  ``fl.hessian`` of the output's inner product with a random cotangent against
  ``torch.autograd.functional.hessian``, with respect to one random input.

Mismatches are listed with the case's configuration; ``--case I`` reruns case I only.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import torch_fuzz as tf  # noqa: E402
import torch_fuzz_models as tfm  # noqa: E402
import torch_fuzz_train as tft  # noqa: E402
from torch_fuzz import FZ, Skip, T, cli, close  # noqa: E402

import fluxml as fl  # noqa: E402
from fluxml import nnlib  # noqa: E402

torch.set_default_dtype(torch.float64)
STATS = {"jvp": 0, "partial": 0, "fd": 0, "autograd-jvp": 0, "hvp": 0, "jacobian": 0,
         "hessian": 0, "f32": 0, "fof": 0,
         "transpose": 0, "fluxml only": 0}


def _flat(y):
    return list(y) if isinstance(y, (tuple, list)) else [y]


def _np(t):
    return t.detach().numpy(force=True) if isinstance(t, torch.Tensor) else np.asarray(t)


def _fd_jvp(fn, xs, ts, h=1e-6):
    """Fourth-order central differences of ``fn`` along ``ts`` (float64), with a small step:
    a kink within 2h of the input (huber's |e| = delta) would be crossed."""
    def at(s):
        return [np.asarray(y, dtype=np.float64) for y in
                _flat(fn(*[x + s * t for x, t in zip(xs, ts)]))]
    a, b, c, d = at(2 * h), at(h), at(-h), at(-2 * h)
    return [(-p + 8 * q - 8 * r + s) / (12 * h) for p, q, r, s in zip(a, b, c, d)]


def _torch_jvp(fn, xs, ts):
    """torch's jvp: forward mode, else the double-backward trick, else None."""
    try:
        ys, tys = torch.func.jvp(fn, tuple(xs), tuple(ts))
        return ys, tys
    except (RuntimeError, NotImplementedError, TypeError):
        pass
    try:
        ys, tys = torch.autograd.functional.jvp(fn, tuple(xs), tuple(ts), strict=False)
        STATS["autograd-jvp"] += 1
        return ys, tys
    except (RuntimeError, NotImplementedError, TypeError):
        return None


def compare_jvp(ours, theirs, arrays, *, tol=1e-8, f32=True, grads=True, f32_tol=2e-3,
                diff=None):
    """Replaces torch_fuzz.compare: ``ours`` against ``theirs`` in forward mode and at second
    order (see the module docstring)."""
    floats = [i for i, a in enumerate(arrays) if isinstance(a, np.ndarray) and a.dtype.kind == "f"
              and (diff is None or i in diff)]
    if not floats:
        return
    tensors = [T(a) if isinstance(a, np.ndarray) else a for a in arrays]
    try:
        ref = _flat(theirs(*tensors))
    except (RuntimeError, ValueError, IndexError) as err:
        why = str(err).splitlines()[0]
        try:
            ref = _flat(ours(*arrays))
        except (ValueError, TypeError):
            raise Skip(f"both refuse: {why}") from None
        # fluxml accepts what torch does not ("same" with strides, ...): checked against
        # differences of its own function, at first order
        theirs, grads = None, False
        STATS["fluxml only"] += 1
    rng = np.random.default_rng([FZ.index, 11])
    active, zero = list(floats), []
    how = "all"
    if len(floats) > 1 and rng.random() < 0.35:  # tangents for only some inputs
        k = int(rng.integers(1, len(floats)))
        pick = sorted(int(i) for i in rng.choice(floats, k, replace=False))
        r = rng.random()
        if r < 0.4:
            active, how = pick, f"closure over all but {pick}"
        else:
            zero = [i for i in floats if i not in pick]
            how = f"{'zero' if r < 0.7 else 'None'} tangents for all but {pick}"
        STATS["partial"] += 1

    def call(*xs, base=arrays):
        full = list(base)
        for i, x in zip(active, xs):
            full[i] = x
        return ours(*full)

    def their_call(*xs):
        full = list(tensors)
        for i, x in zip(active, xs):
            full[i] = x
        out = _flat(theirs(*full))
        return tuple(out)

    primals = [arrays[i] for i in active]
    tans = [np.zeros_like(arrays[i]) if i in zero else rng.standard_normal(arrays[i].shape)
            for i in active]
    desc = FZ.desc
    FZ.desc = f"{desc} [tangents: {how}]"
    given = [None if i in zero and "None" in how else t for i, t in zip(active, tans)]
    try:
        y, ty = fl.jvp(call, tuple(primals), tuple(given))
        ys, tys = _flat(y), _flat(ty)
        if len(ys) != len(ref):
            FZ.fail(f"jvp gave {len(ys)} outputs, torch {len(ref)}")
            return
        for j, (a, r) in enumerate(zip(ys, ref)):
            close(f"jvp value {j}", a, r, tol)
        got = None if theirs is None else _torch_jvp(their_call, [T(p) for p in primals],
                                                      [T(t) for t in tans])
        if got is None and "ties" in FZ.desc:  # differences would straddle the ties
            want, fd_tol = [_np(t) if t is not None else np.zeros(np.shape(v))
                            for t, v in zip(tys, ys)], 1.0  # (the transpose check only)
        elif got is None:  # torch has no rule in either mode: our own function's differences
            STATS["fd"] += 1
            want, fd_tol = _fd_jvp(call, primals, tans), 1e-6
        else:
            want, fd_tol = [_np(t) for t in _flat(got[1])], tol * 10
        for j, (a, b) in enumerate(zip(tys, want)):
            if a is None:
                a = np.zeros(np.shape(ys[j]))
            kind = np.asarray(ys[j]).dtype
            if np.asarray(a).dtype != kind and kind.kind == "f":
                FZ.fail(f"tangent {j} is {np.asarray(a).dtype}, its value {ys[j].dtype}")
            # torch's tangent is NaN at some extreme inputs where the limit is finite
            ok = np.isfinite(b) if got is not None else np.ones(np.shape(b), bool)
            close(f"tangent {j}", np.asarray(a)[ok], b[ok], fd_tol)
        STATS["jvp"] += 1
        _transpose(call, primals, tans, ys, tys, rng)
        call32 = None
        if f32:  # every float input in float32, the ones closed over too
            a32 = [a.astype(np.float32) if i in floats else a for i, a in enumerate(arrays)]
            a64 = [a.astype(np.float64) if i in floats else a for i, a in enumerate(a32)]
            call32 = lambda *xs: call(*xs, base=a32)  # noqa: E731
            _check_f32(call32, lambda *xs: call(*xs, base=a64), primals, tans, f32_tol)
        rng2 = np.random.default_rng([FZ.index, 13])
        if grads and rng2.random() < 0.35:
            _hvp(call, their_call, primals, rng2, tol, call32)
        if grads and rng2.random() < 0.5:
            _matrices(call, their_call, primals, ys, rng2, tol)
    finally:
        FZ.desc = desc


def _transpose(call, primals, tans, ys, tys, rng):
    """<J t, c> = <t, J^T c>: the jvp and the vjp rules agree, at ties and kinks too (where
    each may pick a side, but both the same one)."""
    cots = [rng.standard_normal(np.shape(y)) for y in ys]
    y, back = fl.pullback(call, *primals)
    gs = back(tuple(cots) if isinstance(y, (tuple, list)) else cots[0])
    lhs = sum(float(np.sum(np.asarray(t, dtype=np.float64) * c))
              for t, c in zip(tys, cots) if t is not None)
    rhs = sum(float(np.sum(g * t)) for g, t in zip(gs, tans) if g is not None)
    scale = 1 + sum(float(np.sum(np.abs(np.asarray(t, dtype=np.float64) * c)))
                    for t, c in zip(tys, cots) if t is not None)
    if not abs(lhs - rhs) <= 1e-9 * scale and np.isfinite(lhs):
        FZ.fail(f"<J t, c> = {lhs!r} but <t, J^T c> = {rhs!r}")
    STATS["transpose"] += 1


def _check_f32(call32, call64, primals, tans, f32_tol):
    p32 = [p.astype(np.float32) for p in primals]
    t32 = [t.astype(np.float32) for t in tans]
    y32, t_32 = fl.jvp(call32, tuple(p32), tuple(t32))
    y64, t_64 = fl.jvp(call64, tuple(p.astype(np.float64) for p in p32),
                       tuple(t.astype(np.float64) for t in t32))
    for j, (a, b, ya) in enumerate(zip(_flat(t_32), _flat(t_64), _flat(y32))):
        if np.asarray(ya).dtype.kind != "f":
            continue
        if np.asarray(ya).dtype != np.float32:
            FZ.fail(f"float32 jvp gave value {j} in {np.asarray(ya).dtype}")
        elif a is not None and np.asarray(a).dtype != np.float32:
            FZ.fail(f"float32 jvp gave tangent {j} in {np.asarray(a).dtype}")
        elif a is not None:
            close(f"float32 tangent {j}", a, b, f32_tol * 5)
    STATS["f32"] += 1


def _inner(call, cots):
    def f(*xs):
        return sum(np.sum(y * c) for y, c in zip(_flat(call(*xs)), cots)
                   if getattr(y, "dtype", np.dtype(int)).kind == "f")
    return f


def _hvp(call, their_call, primals, rng, tol, call32=None):
    """Forward over reverse: the jvp of a pullback, against torch's double backward."""
    ys = _flat(call(*primals))
    cots = [rng.standard_normal(np.shape(y)) for y in ys]
    vs = [rng.standard_normal(p.shape) for p in primals]

    def grad(*xs, call=call, cots=cots):
        y, back = fl.pullback(call, *xs)
        g = back(tuple(cots) if isinstance(y, (tuple, list)) else cots[0])
        return tuple(np.zeros_like(x) if a is None else a for a, x in zip(g, xs))

    _, hv = fl.jvp(grad, tuple(primals), tuple(vs))
    if call32 is not None:  # float32 all through, at second order too
        c32 = [c.astype(np.float32) for c in cots]
        _, hv32 = fl.jvp(lambda *xs: grad(*xs, call=call32, cots=c32),
                         tuple(p.astype(np.float32) for p in primals),
                         tuple(v.astype(np.float32) for v in vs))
        kinds = {np.asarray(a).dtype.name for a in hv32}
        if kinds != {"float32"}:
            FZ.fail(f"float32 Hessian-vector product in {sorted(kinds)}")
    xs = [T(p, requires_grad=True) for p in primals]
    out = their_call(*xs)
    use = [(o, T(c)) for o, c in zip(out, cots) if o.requires_grad]
    if not use:
        want = [np.zeros(p.shape) for p in primals]
    else:
        g = torch.autograd.grad([o for o, _ in use], xs, [c for _, c in use],
                                allow_unused=True, create_graph=True)
        pairs = [(a, v) for a, v in zip(g, vs) if a is not None and a.requires_grad]
        if not pairs:
            want = [np.zeros(p.shape) for p in primals]
        else:
            inner = sum(torch.sum(a * T(v)) for a, v in pairs)
            try:
                h = torch.autograd.grad(inner, xs, allow_unused=True)
            except RuntimeError:  # no double backward in torch
                return
            want = [np.zeros(p.shape) if b is None else _np(b) for b, p in zip(h, primals)]
    # reverse over forward: the gradient of <J v, cotangents>, the same vector
    def tangent_inner(*xs):
        _, t = fl.jvp(call, xs, tuple(vs))
        return sum(np.sum(a * c) for a, c in zip(_flat(t), cots) if a is not None)

    rv = fl.gradient(tangent_inner, *primals, zeros_for_none=True)
    for i, (a, r, b) in enumerate(zip(hv, rv, want)):
        ok = np.isfinite(b)
        close(f"forward-over-reverse Hessian-vector product {i}", np.asarray(a)[ok], b[ok],
              tol * 100)
        close(f"reverse-over-forward Hessian-vector product {i}", np.asarray(r)[ok], b[ok],
              tol * 100)
    STATS["hvp"] += 1
    _forward_over_forward(call, their_call, primals, vs, tol)


def _forward_over_forward(call, their_call, primals, vs, tol):
    """d^2/ds^2 f(x + s v) at 0 by a jvp of a jvp, against torch's nested forward mode
    (or the double-backward jvp of torch's jvp, or differences of our own first order)."""
    def first(*xs):
        return tuple(np.zeros(np.shape(y)) if t is None else t
                     for y, t in zip(*map(_flat, fl.jvp(call, xs, tuple(vs)))))

    _, second = fl.jvp(first, tuple(primals), tuple(vs))
    tv = [T(v) for v in vs]

    def their_first(*xs):
        return tuple(torch.func.jvp(their_call, xs, tuple(tv))[1])

    try:
        want = [_np(t) for t in torch.func.jvp(their_first, tuple(T(p) for p in primals),
                                               tuple(tv))[1]]
    except (RuntimeError, NotImplementedError, TypeError):
        want = None
    second = [np.asarray(a, dtype=np.float64) for a in second]

    def agrees(want, tol):
        return all(np.array_equal(np.isfinite(a), np.isfinite(b)) and np.allclose(
            a[np.isfinite(b)], b[np.isfinite(b)], rtol=0, atol=tol * _scale(b))
            for a, b in zip(second, want))

    # torch's nested forward mode is wrong for some (F.instance_norm, 2.13): there, or
    # where torch has none, differences of our first order (checked against torch) decide
    if want is None or not agrees(want, tol * 100):
        want = _fd_jvp(first, primals, vs)
        STATS["fd"] += 1
        for j, (a, b) in enumerate(zip(second, want)):
            close(f"forward-over-forward second derivative {j}", a, b, 1e-6)
    STATS["fof"] += 1


def _scale(ref):
    finite = ref[np.isfinite(ref)]
    return 1.0 + (np.max(np.abs(finite)) if finite.size else 0.0)


def _matrices(call, their_call, primals, ys, rng, tol):
    """fl.jacobian and fl.hessian with respect to one input, of one output (small cases)."""
    i = int(rng.integers(len(primals)))
    floats = [j for j, y in enumerate(ys) if np.asarray(y).dtype.kind == "f"]
    if not floats or primals[i].size > 30:
        return
    j = floats[int(rng.integers(len(floats)))]
    if np.size(ys[j]) > 40:
        return
    p = primals[i]

    def f(x):
        xs = list(primals)
        xs[i] = x
        return _flat(call(*xs))[j]

    def g(x):
        xs = [T(a) for a in primals]
        xs[i] = x
        return their_call(*xs)[j]

    mode = str(rng.choice(["auto", "fwd", "rev"]))
    jac = fl.jacobian(f, p, mode=mode)
    try:
        want = _np(torch.func.jacrev(g)(T(p)))
    except (RuntimeError, NotImplementedError, TypeError):
        want = _np(torch.autograd.functional.jacobian(g, T(p)))
    if not np.all(np.isfinite(ys[j])):  # an output at -inf (logsumexp of a slice all -inf):
        # its derivatives are NaN, spread along its row by forward mode's 0 * NaN (torch's
        # too), along its column by reverse mode's: compared where both are finite
        ok = np.isfinite(jac) & np.isfinite(want)
        jac, want = jac[ok], want[ok]
    close(f"jacobian ({mode}) of output {j} wrt input {i}", jac, want, tol * 10)
    STATS["jacobian"] += 1
    p32 = [a.astype(np.float32) for a in primals]

    def f32(x):
        xs = list(p32)
        xs[i] = x
        return _flat(call(*xs))[j]

    jac32 = fl.jacobian(f32, p32[i], mode=mode)
    if _flat(call(*p32))[j].dtype == np.float32 and jac32.dtype != np.float32:
        FZ.fail(f"jacobian ({mode}) of float32 input gave {jac32.dtype}")
    cot = rng.standard_normal(np.shape(ys[j]))
    hess = fl.hessian(lambda x: np.sum(f(x) * cot), p)
    try:
        want = _np(torch.autograd.functional.hessian(lambda x: torch.sum(g(x) * T(cot)), T(p)))
    except RuntimeError:  # no double backward in torch
        return
    # where the gradient itself is NaN (a slice all -inf) either side may spread the NaN
    # along its row or its column
    bad = ~np.isfinite(fl.gradient(lambda x: np.sum(f(x) * cot), p, zeros_for_none=True)[0])
    ok = np.isfinite(want) & ~bad.reshape(p.shape + (1,) * p.ndim) & ~bad.reshape(
        (1,) * p.ndim + p.shape)
    close(f"hessian of <output {j}, cotangent> wrt input {i}", hess[ok], want[ok], tol * 100)
    STATS["hessian"] += 1


# --- families of this script's own ------------------------------------------------------------

def _torch_lstm(x, h, c, w_ih, w_hh, b):
    hs = []
    for t in range(x.shape[1]):
        z = x[:, t] @ w_ih.T + h @ w_hh.T + b
        i, f, g, o = z.chunk(4, -1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        hs.append(h)
    return torch.stack(hs, 1), h, c


def _torch_gru(x, h, w_ih, w_hh, b_ih, b_hh):
    hs = []
    for t in range(x.shape[1]):
        gi, gh = x[:, t] @ w_ih.T + b_ih, h @ w_hh.T + b_hh
        ir, iz, in_ = gi.chunk(3, -1)
        hr, hz, hn = gh.chunk(3, -1)
        r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
        n = torch.tanh(in_ + r * hn)
        h = (1 - z) * n + z * h
        hs.append(h)
    return torch.stack(hs, 1), h


def case_sequence(rng):
    """lstm_sequence / gru_sequence / lstm_cell / gru_cell against the equations in torch,
    with a random or a zero initial state (given, or closed over as a constant)."""
    kind = str(rng.choice(["lstm_sequence", "gru_sequence", "lstm_cell", "gru_cell"]))
    n, steps = int(rng.integers(1, 4)), int(rng.integers(1, 5))
    n_in, hid = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    gates = 4 if "lstm" in kind else 3
    bias = str(rng.choice(["both", "ih", "hh", "none"]))
    state = str(rng.choice(["random", "zeros traced", "zeros constant"]))
    scale = float(rng.choice([0.5, 1.0, 3.0]))
    FZ.desc = (f"{kind} N {n} T {steps} in {n_in} hidden {hid} bias {bias} initial state "
               f"{state} weight scale {scale}")
    x = rng.standard_normal((n, steps, n_in) if "sequence" in kind else (n, n_in))
    w_ih = rng.standard_normal((gates * hid, n_in)) * scale / np.sqrt(n_in)
    w_hh = rng.standard_normal((gates * hid, hid)) * scale / np.sqrt(hid)
    b_ih, b_hh = rng.standard_normal(gates * hid), rng.standard_normal(gates * hid)
    nstate = 2 if "lstm" in kind else 1
    s0 = [rng.standard_normal((n, hid)) if state == "random" else np.zeros((n, hid))
          for _ in range(nstate)]
    arrays = [x, w_ih, w_hh, b_ih, b_hh] + (s0 if state != "zeros constant" else [])
    const = [np.zeros((n, hid))] * nstate

    def split(args):
        dtype = getattr(args[0], "dtype", None)  # float32 in the float32 checks
        ss = list(args[5:]) if state != "zeros constant" else [
            s.astype(dtype if isinstance(dtype, np.dtype) else np.float64) for s in const]
        bi = args[3] if bias in ("both", "ih") else None
        bh = args[4] if bias in ("both", "hh") else None
        return args[0], args[1], args[2], bi, bh, ss

    def ours(*args):
        x, wi, wh, bi, bh, ss = split(args)
        fn = getattr(nnlib, kind)
        if kind == "lstm_sequence":
            return fn(x, ss[0], ss[1], wi, wh, bi, bh)
        if kind == "gru_sequence":
            return fn(x, ss[0], wi, wh, bi, bh)
        if kind == "lstm_cell":
            return fn(x, ss[0], ss[1], wi, wh, bi, bh)
        return fn(x, ss[0], wi, wh, bi, bh)

    def theirs(*args):
        x, wi, wh, bi, bh, ss = split(args)
        ss = [T(s) if isinstance(s, np.ndarray) else s for s in ss]
        zero = torch.zeros(gates * hid)
        bi = zero if bi is None else bi
        bh = zero if bh is None else bh
        xs = x if "sequence" in kind else x[:, None]
        if "lstm" in kind:
            hs, h, c = _torch_lstm(xs, ss[0], ss[1], wi, wh, bi + bh)
            return (hs, h, c) if "sequence" in kind else (h, c)
        hs, h = _torch_gru(xs, ss[0], wi, wh, bi, bh)
        return (hs, h) if "sequence" in kind else h

    tf.compare(ours, theirs, arrays)


EXTRA_ACTS = {
    "swish": (nnlib.swish, F.silu), "silu": (nnlib.silu, F.silu),
    "gelu": (nnlib.gelu, lambda t: F.gelu(t, approximate="tanh")),
    "sigmoid": (fl.sigmoid, torch.sigmoid), "tanh": (np.tanh, torch.tanh),
    "rrelu (active)": None,
}


def case_activation_more(rng):
    """Activations not in torch_fuzz's table, and each at a random broadcast shape."""
    name = str(rng.choice(list(EXTRA_ACTS)))
    shape = tuple(int(v) for v in rng.integers(1, 4, int(rng.integers(0, 4))))
    x = rng.standard_normal(shape) * float(rng.choice([1.0, 5.0, 30.0]))
    FZ.desc = f"{name} x {shape}"
    if name == "rrelu (active)":  # a random slope per entry: the same draw in both
        seed = int(rng.integers(1 << 30))

        def ours(x):
            return nnlib.rrelu(x, active=True, rng=np.random.default_rng(seed))

        a = -np.asarray(ours(np.full(shape, -1.0)))
        tf.compare(ours, lambda t: torch.where(t >= 0, t, t * T(a)), [x + 0.01 * np.sign(x)])
        return
    ours, theirs = EXTRA_ACTS[name]
    tf.compare(ours, theirs, [x])


def case_kinks(rng):
    """Every activation of torch_fuzz's table exactly at its kinks (and at +-0.0), where
    fluxml follows PyTorch's one-sided choices: first order only."""
    name = list(tf.ACTS)[int(rng.integers(len(tf.ACTS)))]
    ours, theirs = tf.ACTS[name]
    ks = tf.KINKS.get(name, []) + [0.0, -0.0]
    x = np.array(ks + list(rng.standard_normal(int(rng.integers(0, 4)))))
    FZ.desc = f"{name} at {x.tolist()}"
    # (float32 moves a kink such as 0.3 off the rounded input: no float32 check)
    tf.compare(ours, theirs, [x], tol=tf.LOOSE.get(name, 1e-9) / 10, grads=False, f32=False)


def _no_twin(*args):
    raise RuntimeError("no torch twin")


def case_conv_only(rng):
    """What torch has no twin of: "same" padding with strides (and even kernels), in conv
    and the Conv and ConvTranspose layers, against differences of fluxml's own function."""
    d = int(rng.integers(1, 4))
    groups = int(rng.choice([1, 2]))
    c, o = groups * int(rng.integers(1, 3)), groups * int(rng.integers(1, 3))
    kernel = tuple(int(k) for k in rng.integers(1, 5, d))
    stride, dilation = tf.per_dim(rng, d, 1, 3), tf.per_dim(rng, d, 1, 2)
    size = tuple(int(v) for v in rng.integers(1, 7, d))
    x = rng.standard_normal((int(rng.integers(1, 3)), c) + size)
    w = rng.standard_normal((o, c // groups) + kernel)
    kind = str(rng.choice(["conv", "Conv", "ConvTranspose"]))
    FZ.desc = (f"{kind} 'same' x {x.shape} kernel {kernel} stride {stride} dilation "
               f"{dilation} groups {groups}")
    if kind == "conv":
        tf.compare(lambda x, w: nnlib.conv(x, w, stride=stride, pad="same", dilation=dilation,
                                           groups=groups), _no_twin, [x, w])
    else:  # the layers' "same": output size ceil(n / stride), or n * stride transposed
        layer = getattr(fl, kind)(kernel, c, o, np.tanh, stride=stride, pad="same",
                                  dilation=dilation, groups=groups, dtype=np.float64)

        def ours(x, w, b):
            layer.weight, layer.bias = w, b
            return layer(x)

        tf.compare(ours, _no_twin, [x, layer.weight, layer.bias])


def case_layer_sweep(rng):
    """Every layer and loss of tests/compiler/layer_sweep.py (its builders, imported), in
    forward mode with respect to the model and the inputs at once (the model's tangent a
    tree with None at its int and static leaves), against differences of fluxml's own
    function (no torch twin for a whole model), and the transpose identity with its vjp;
    float64 and float32."""
    sys.path.insert(0, __file__.rsplit("/", 3)[0])
    from fluxml.ad.pushforward import _with_nones
    from fluxml.tree import flatten, unflatten
    from tests.compiler import layer_sweep as ls

    # (the adjoint of a NeuralODE is its own approximation: not a transpose to 1e-9)
    # (dropout in training mode draws a mask per call: tests/nnlib/test_fuzz_jvp.py has it)
    cases = [c for c in ls.CASES if not c.random and "ODE" not in c.name
             and not ("Dropout" in c.name and c.mode != "test")]
    case = cases[int(rng.integers(len(cases)))]
    seed = int(rng.integers(1 << 30))
    FZ.desc = f"layer sweep {case.name} (seed {seed})"
    model, args = ls._setup(case, np.float64, seed)
    if case.mode == "auto":  # training mode, as inside a transform, for the differences too
        fl.trainmode(model)
    leaves, spec = flatten((model, *args), trainable=True)
    floats = [isinstance(a, np.ndarray) and a.dtype.kind == "f" for a in leaves]
    tans = [rng.standard_normal(a.shape) if f else None for a, f in zip(leaves, floats)]
    tree = unflatten(spec, tans)

    def f(model, *args):
        return tuple(ls._floats(ls._run(case, model, args)))

    def at(s):  # the model and inputs moved by s along the tangents
        moved = unflatten(spec, [a + s * t if t is not None else a
                                 for a, t in zip(leaves, tans)])
        return f(*moved)

    y, ty = fl.jvp(f, (model, *args), tuple(tree))
    h = 1e-6  # small: a max or a kink within 2h of the input would be crossed
    ends = [at(2 * h), at(h), at(-h), at(-2 * h)]
    want = [(-a + 8 * b - 8 * c + d) / (12 * h) for a, b, c, d in zip(*ends)]
    for j, (a, b) in enumerate(zip(ty, want)):
        close(f"tangent {j}", np.zeros(np.shape(b)) if a is None else a, b, 1e-6)
    cots = [rng.standard_normal(np.shape(v)) for v in y]
    _, back = fl.pullback(f, model, *args)
    # the gradient's leaves in the primals' order (None for what has no derivative)
    grads = _with_nones(spec, tuple(back(tuple(cots))), 0, 0)
    lhs = sum(float(np.sum(t * c)) for t, c in zip(ty, cots) if t is not None)
    rhs = sum(float(np.sum(g * t)) for g, t in zip(grads, tans)
              if g is not None and t is not None)
    if not abs(lhs - rhs) <= 1e-9 * (1 + abs(lhs)):
        FZ.fail(f"<J t, c> = {lhs!r} but <t, J^T c> = {rhs!r}")
    m32, a32 = ls._setup(case, np.float32, seed)
    if case.mode == "auto":
        fl.trainmode(m32)
    t32 = unflatten(flatten((m32, *a32), trainable=True)[1],
                    [None if t is None else t.astype(np.float32) for t in tans])
    y32, ty32 = fl.jvp(f, (m32, *a32), tuple(t32))
    kinds = {np.asarray(t).dtype.name for t in ty32 if t is not None}
    if kinds - {"float32"}:
        FZ.fail(f"float32 layer gave tangents in {sorted(kinds)}")
    STATS["jvp"] += 1


def case_loss_more(rng):
    """The losses torch_fuzz_train does not cover (fluxml's definitions in torch ops)."""
    name = str(rng.choice(["msle", "binary_focal_loss", "focal_loss", "siamese_contrastive",
                           "dice", "tversky", "huber_weighted"]))
    agg = str(rng.choice(["mean", "sum"]))
    shape = (int(rng.integers(1, 4)), int(rng.integers(2, 5)))
    FZ.desc = f"{name} {shape} agg {agg}"
    red = (lambda t: t.mean()) if agg == "mean" else (lambda t: t.sum())
    if name == "msle":
        a, b = rng.uniform(0.1, 3, shape), rng.uniform(0.1, 3, shape)
        tf.compare(lambda x, y: fl.msle(x, y, agg=agg, eps=0.0),
                   lambda x, y: red((torch.log(x) - torch.log(y)) ** 2), [a, b])
    elif name == "binary_focal_loss":
        p, y = rng.uniform(0.05, 0.95, shape), (rng.random(shape) < 0.5) * 1.0
        gamma = float(rng.choice([0.0, 1.0, 2.0, 2.5]))
        FZ.desc += f" gamma {gamma}"
        tf.compare(lambda p: fl.binary_focal_loss(p, y, gamma=gamma, agg=agg, eps=0.0),
                   lambda p: red(-(T(y) * (1 - p) ** gamma * torch.log(p)
                                   + (1 - T(y)) * p ** gamma * torch.log(1 - p))), [p])
    elif name == "focal_loss":
        z = rng.standard_normal(shape)
        p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
        y = np.eye(shape[1])[rng.integers(0, shape[1], shape[0])]
        gamma = float(rng.choice([0.0, 1.0, 2.0, 2.5]))
        FZ.desc += f" gamma {gamma}"
        tf.compare(lambda p: fl.focal_loss(p, y, gamma=gamma, agg=agg, eps=0.0, axis=1),
                   lambda p: red(-(T(y) * (1 - p) ** gamma * torch.log(p)).sum(1)), [p])
    elif name == "siamese_contrastive":
        d, y = rng.uniform(0.05, 2, shape), (rng.random(shape) < 0.5) * 1.0
        margin = float(rng.uniform(0.5, 1.5))
        d = d + 0.01 * (np.abs(d - margin) < 0.01)
        FZ.desc += f" margin {margin}"
        tf.compare(lambda d: fl.siamese_contrastive_loss(d, y, margin=margin, agg=agg),
                   lambda d: red((1 - T(y)) * d ** 2 + T(y) * torch.clamp(margin - d, min=0)
                                 ** 2), [d])
    elif name in ("dice", "tversky"):
        p, y = rng.uniform(0.05, 0.95, shape), (rng.random(shape) < 0.5) * 1.0
        if name == "dice":
            tf.compare(lambda p: fl.dice_coeff_loss(p, y),
                       lambda p: 1 - (2 * torch.sum(T(y) * p) + 1)
                       / (torch.sum(T(y) ** 2) + torch.sum(p ** 2) + 1), [p])
        else:
            beta = float(rng.uniform(0.2, 0.9))
            FZ.desc += f" beta {beta}"

            def ref(p):
                yt = T(y)
                tp = torch.sum(yt * p)
                return 1 - (tp + 1) / (tp + beta * torch.sum((1 - yt) * p)
                                       + (1 - beta) * torch.sum(yt * (1 - p)) + 1)

            tf.compare(lambda p: fl.tversky_loss(p, y, beta=beta), ref, [p])
    else:
        a, b = rng.standard_normal(shape) * 2, rng.standard_normal(shape)
        delta = float(rng.uniform(0.3, 2))
        tf.compare(lambda x, y: fl.huber_loss(x, y, delta=delta, agg=agg),
                   lambda x, y: red(F.huber_loss(x, y, delta=delta, reduction="none")), [a, b])


def case_model(rng):
    """Small models: the jacobian and hessian of a Chain of random layers against torch's
    twin (through the jvp / hvp / matrix checks of compare_jvp), with respect to the input
    and one weight."""
    kind = str(rng.choice(["mlp", "cnn", "rnn"]))
    if kind == "mlp":
        sizes = [int(v) for v in rng.integers(1, 5, int(rng.integers(2, 4)))]
        acts = [str(rng.choice(["tanh", "softplus", "gelu", "sigmoid"])) for _ in sizes[1:]]
        FZ.desc = f"mlp sizes {sizes} activations {acts}"
        ws = [rng.standard_normal((o, i)) for i, o in zip(sizes, sizes[1:])]
        bs = [rng.standard_normal(o) for o in sizes[1:]]
        x = rng.standard_normal((int(rng.integers(1, 3)), sizes[0]))
        ofl = {"tanh": np.tanh, "softplus": fl.softplus, "gelu": fl.gelu_tanh,
               "sigmoid": fl.sigmoid}
        oth = {"tanh": torch.tanh, "softplus": F.softplus,
               "gelu": lambda t: F.gelu(t, approximate="tanh"), "sigmoid": torch.sigmoid}

        def ours(x, *ps):
            m = fl.Chain(*[fl.Dense(w.shape[1], w.shape[0], ofl[a], dtype=np.float64)
                           for w, a in zip(ws, acts)])
            for layer, w, b in zip(m.layers, ps[::2], ps[1::2]):
                layer.weight, layer.bias = w, b
            return fl.logsoftmax(m(x), axis=-1)

        def theirs(x, *ps):
            for w, b, a in zip(ps[::2], ps[1::2], acts):
                x = oth[a](x @ w.T + b)
            return torch.log_softmax(x, -1)

        tf.compare(ours, theirs, [x] + [p for wb in zip(ws, bs) for p in wb])
    elif kind == "cnn":
        c, o = int(rng.integers(1, 3)), int(rng.integers(1, 3))
        k = int(rng.integers(1, 3))
        size = int(rng.integers(k + 1, 5))
        FZ.desc = f"cnn c {c} o {o} kernel {k} size {size}"
        x = rng.standard_normal((1, c, size, size))
        w = rng.standard_normal((o, c, k, k))
        b = rng.standard_normal(o)

        def ours(x, w, b):
            y = np.tanh(nnlib.conv(x, w, pad=1) + b[:, None, None])
            y = nnlib.meanpool(y, 2, pad=1)
            return fl.softmax(np.reshape(y, (1, -1)), axis=-1)

        def theirs(x, w, b):
            y = torch.tanh(F.conv2d(x, w, b, padding=1))
            y = F.avg_pool2d(y, 2, padding=1, count_include_pad=True)
            return torch.softmax(y.reshape(1, -1), -1)

        tf.compare(ours, theirs, [x, w, b])
    else:
        n_in, hid, steps = int(rng.integers(1, 3)), int(rng.integers(1, 3)), int(rng.integers(1, 4))
        FZ.desc = f"GRU + Dense in {n_in} hidden {hid} steps {steps}"
        x = rng.standard_normal((1, steps, n_in))
        wi, wh = rng.standard_normal((3 * hid, n_in)), rng.standard_normal((3 * hid, hid))
        wd = rng.standard_normal((1, hid))

        def ours(x, wi, wh, wd):
            layer = fl.GRU(n_in, hid, dtype=np.float64, bias=False)
            layer.cell.weight_ih, layer.cell.weight_hh = wi, wh
            hs = layer(x)
            return np.sum(np.matmul(hs, np.swapaxes(wd, 0, 1)) ** 2)

        def theirs(x, wi, wh, wd):
            z = torch.zeros(3 * hid)
            hs, _ = _torch_gru(x, torch.zeros(1, hid), wi, wh, z, z)
            return torch.sum((hs @ wd.T) ** 2)

        tf.compare(ours, theirs, [x, wi, wh, wd])


OWN_FAMILIES = {"sequence": case_sequence, "kinks": case_kinks, "conv_only": case_conv_only,
                "activation_more": case_activation_more, "loss_more": case_loss_more,
                "model": case_model, "layer_sweep": case_layer_sweep}
SKIP = {"optimiser", "bad_input"}  # nothing to differentiate


def main():
    # every generator calls compare through its module's name for it
    for mod in (tf, tfm, tft):
        mod.compare = compare_jvp
    table = {**tf.FAMILIES, **tfm.MODEL_FAMILIES, **tft.TRAIN_FAMILIES, **OWN_FAMILIES}
    tf.run(*cli(sys.argv[1:], 50), table={k: v for k, v in table.items() if k not in SKIP})
    print(f"{sum(FZ.cases.values())} cases with torch {torch.__version__}, "
          f"{len(FZ.fails)} mismatches; checks: {STATS}")
    for line in FZ.fails:
        print("  ", line)
    sys.exit(1 if FZ.fails else 0)


if __name__ == "__main__":
    main()
