"""An adversarial audit of the hand-written derivative rules of the fused NN primitives (not
part of the suite as a whole: tests/nnlib/test_rules_audit.py runs a few seeded cases of it).
Run by hand with

    PYTHONPATH=src python -m tests.nnlib.rules_audit N SEED [families]

Each case is a function of float arrays at random shapes and options. In float64 it checks:

- ``fl.jvp`` against fourth-order central differences, and against the pullback (the
  dot-product test ``<J t, u> = <t, J^T u>``);
- the first-order pullback (the fast path of the rules, on plain arrays) against the same
  pullback taken under an outer forward trace (the any-order path: every rule then sees
  tracers and runs its composite);
- the Hessian-vector product (``fl.jvp`` of the pullback) against differences of the pullback;
- the pullback traced in its cotangent only (inputs plain): its jvp is the pullback of the
  tangent, its gradient the jvp; mixed second derivatives with inputs at different trace
  levels (one input's pullback, the other closed over and traced outside);
- awkward layouts: each input as a non-contiguous, negatively strided, Fortran-ordered or
  (where its values allow) stride-0 broadcast view must give the same values and gradients,
  and so must cotangents that reach the rules as transposed, reversed or broadcast views;
- float32 inputs give float32 values and gradients close to float64's;
- with several outputs, a cotangent of None for some of them equals a zero one; a tangent
  for one input (None for the others) equals zero tangents there;
- an input given twice (the same array for two arguments of one shape) gets the sum of both
  gradients (against differences of the tied function);
- an output or an input written in place after the call leaves the gradient of what was
  computed before unchanged (a primitive must keep what its rules read);
- results share no memory with the inputs, nor with a buffer a later call reuses; a pullback
  may be kept and called again.
"""

from __future__ import annotations

import sys

import numpy as np

import fluxml as fl
from fluxml import nnlib

H = 1e-5


def _leaves(y):
    return list(y) if isinstance(y, (tuple, list)) else [y]


def _f64(a):
    return None if a is None else np.asarray(a, dtype=np.float64)


def _fd(f, xs, ts, h=H):
    """Fourth-order central differences of ``f`` along ``ts``."""
    at = [[_f64(y) for y in _leaves(f(*[x + s * h * t for x, t in zip(xs, ts)]))]
          for s in (2, 1, -1, -2)]
    return [(-a + 8 * b - 8 * c + d) / (12 * h) for a, b, c, d in zip(*at)]


def _err(a, b):
    a = np.zeros(np.shape(b)) if a is None else _f64(a)
    b = np.zeros(np.shape(a)) if b is None else _f64(b)
    if a.shape != b.shape:
        return np.inf
    scale = 1.0 + np.max(np.abs(b), initial=0.0)
    return float(np.max(np.abs(a - b), initial=0.0) / scale)


def _dot(xs, ys):
    return sum(float(np.sum(_f64(x) * _f64(y))) for x, y in zip(xs, ys)
               if x is not None and y is not None)


class Problems(list):
    def check(self, what, err, tol):
        if not err <= tol:  # (NaN fails)
            self.append(f"{what}: error {err:.2e}")


def _layouts(x, rng):
    """Views of the values of ``x`` with other strides."""
    out = {}
    wide = np.zeros(x.shape[:-1] + (2 * x.shape[-1],)) if x.ndim else None
    if wide is not None:
        wide[..., ::2] = x
        out["strided"] = wide[..., ::2]
        out["reversed"] = np.ascontiguousarray(x[..., ::-1])[..., ::-1]
    if x.ndim:
        out["fortran"] = np.asfortranarray(x)
    out["big-endian"] = x.astype(x.dtype.newbyteorder(">"))
    if x.ndim and x.shape[0] > 1:
        out["broadcast"] = None  # placed by the caller: values change
    return out


class Case:
    """``f`` at ``xs`` (float64) with random tangents ``ts`` and cotangents ``us``, its
    values ``ys`` and first-order gradient ``g``; ``p`` collects the problems."""

    def __init__(self, f, xs, rng):
        self.f, self.rng, self.p = f, rng, Problems()
        self.xs = [np.asarray(x, dtype=np.float64) for x in xs]
        y = f(*self.xs)
        self.multi = isinstance(y, (tuple, list))
        self.ys = [_f64(v) for v in _leaves(y)]
        self.us = [rng.standard_normal(y.shape) for y in self.ys]
        self.ts = [rng.standard_normal(x.shape) for x in self.xs]
        self.g = self.back(*self.xs)

    def ct(self, cts):
        """The cotangent for ``f``'s output: a tuple for several outputs."""
        return tuple(cts) if self.multi else cts[0]

    def back(self, *a, cts=None):
        _, pb = fl.pullback(self.f, *a)
        return list(pb(self.ct(self.us if cts is None else cts)))

    def close(self, what, got, want, tol):
        for j, (a, b) in enumerate(zip(got, want)):
            self.p.check(f"{what} {j}", _err(a, b), tol)


def check_buffers(c):
    """Nothing returned shares memory with a buffer a later call reuses; a pullback kept
    while other calls run, and called twice (at first order and under an outer trace), gives
    the same gradient."""
    f, xs, rng = c.f, c.xs, c.rng
    kept = _leaves(f(*xs)) + c.back(*xs)
    for j, y in enumerate(kept):
        if any(y is not None and np.shares_memory(y, x) for x in xs):
            c.p.append(f"result {j} shares memory with an input")
        if any(y is not None and z is not None and np.shares_memory(y, z)
               for z in kept[j + 1:]):
            c.p.append(f"result {j} shares memory with a later result")
    saved = [None if a is None else np.array(a) for a in kept]
    other = [x + rng.standard_normal(x.shape) * 0.1 for x in xs]
    _, back_a = fl.pullback(f, *xs)
    _, back_b = fl.pullback(f, *other)
    f(*other)
    back_b(c.ct([rng.standard_normal(y.shape) for y in c.ys]))
    fl.jvp(lambda *a: tuple(c.back(*a)), tuple(other), tuple(other))
    c.close("kept pullback, gradient", back_a(c.ct(c.us)), c.g, 1e-12)
    c.close("pullback called again, gradient", back_a(c.ct(c.us)), c.g, 1e-12)

    def again(*a):
        pb = fl.pullback(f, *a)[1]
        return tuple(pb(c.ct(c.us))) + tuple(pb(c.ct(c.us)))

    c.close("any-order pullback called twice, gradient",
            fl.jvp(again, tuple(xs), tuple(c.ts))[0], c.g + c.g, 1e-10)
    c.close("changed by a later call: result", kept, saved, 0.0)


def check_modes(c, tol):
    """Forward mode against differences and reverse mode; the first-order pullback against
    the any-order one (under an outer forward trace); the Hessian-vector product
    forward-over-reverse and reverse-over-forward, and forward-over-forward, against
    differences."""
    f, xs, ts, us = c.f, c.xs, c.ts, c.us
    y_fwd, tout = fl.jvp(f, tuple(xs), tuple(ts))
    tout = _leaves(tout)
    # the values traced (where a function takes another path on plain arrays, as
    # lstm_sequence's inference kernel) are the plain ones
    c.close("traced value (forward mode), output", _leaves(y_fwd), c.ys, 1e-12)
    c.close("traced value (reverse mode), output", _leaves(fl.pullback(f, *xs)[0]), c.ys,
            1e-12)
    fd = _fd(f, xs, ts)
    c.close("jvp vs differences, output", tout, fd, tol)
    lhs, rhs = _dot(tout, us), _dot(ts, c.g)
    c.p.check("dot test <J t, u> = <t, J^T u>", abs(lhs - rhs) / (1 + abs(lhs)), 1e-9)
    c.p.check("pullback vs differences", abs(_dot(fd, us) - rhs) / (1 + abs(rhs)), tol)
    slow, hvp = fl.jvp(lambda *a: tuple(c.back(*a)), tuple(xs), tuple(ts))
    c.close("fast vs any-order pullback, input", slow, c.g, 1e-10)
    want = _fd(lambda *a: tuple(c.back(*a)), xs, ts)
    c.close("Hessian-vector product, input", hvp, want, tol * 10)

    def along(*a):  # <J(a) t, u>: its gradient is the same Hessian-vector product
        t = fl.jvp(f, a, tuple(ts))[1]
        return sum(np.sum(o * u) for o, u in zip(_leaves(t), us))

    c.close("reverse-over-forward, input", fl.gradient(along, *xs), want, tol * 10)
    jvp_of = lambda *a: fl.jvp(f, a, tuple(ts))[1]  # noqa: E731
    c.close("forward-over-forward, output", _leaves(fl.jvp(jvp_of, tuple(xs), tuple(ts))[1]),
            _fd(jvp_of, xs, ts), tol * 10)


def check_mixed_levels(c, tol):
    """Mixed second derivatives with the inputs at different trace levels: the pullback with
    respect to input ``k`` alone (the others closed over), under a forward trace of input
    ``i`` alone, against differences of that pullback along input ``i``."""
    xs = c.xs
    for i in range(len(xs)):
        k = (i + 1 + int(c.rng.integers(0, len(xs)))) % len(xs) if len(xs) > 1 else i

        def grad_k(xi, i=i, k=k):
            def f_k(xk):
                a = list(xs)
                a[i] = xi
                a[k] = xk
                return c.f(*a)

            start = xi if k == i else xs[k]
            _, pb = fl.pullback(f_k, start)
            return pb(c.ct(c.us))[0]

        _, got = fl.jvp(grad_k, (xs[i],), (c.ts[i],))
        want = _fd(grad_k, [xs[i]], [c.ts[i]])[0]
        c.p.check(f"input {k}'s gradient along input {i} (mixed levels)", _err(got, want),
                  tol * 10)


def check_one_tangent(c):
    """A tangent for one input only (None for the others, which the rules see as absent
    positions): the same as zero tangents there; the jvps of all inputs add up to the whole
    jvp."""
    xs, ts = c.xs, c.ts
    total = None
    for i in range(len(xs)):
        nones = tuple(t if k == i else None for k, t in enumerate(ts))
        zeros = tuple(t if k == i else np.zeros_like(t) for k, t in enumerate(ts))
        one = _leaves(fl.jvp(c.f, tuple(xs), nones)[1])
        c.close(f"tangent of input {i} only: output", one,
                _leaves(fl.jvp(c.f, tuple(xs), zeros)[1]), 1e-12)
        total = one if total is None else [a + b for a, b in zip(total, one)]
    c.close("sum of one-input jvps, output", total,
            _leaves(fl.jvp(c.f, tuple(xs), tuple(ts))[1]), 1e-10)


def check_traced_cotangent(c):
    """The pullback as a function of its cotangent alone (an outer trace that reaches the
    rules only through the cotangent, the inputs plain): forward mode gives the pullback of
    the tangent, reverse mode the jvp (``<J^T u, t>``'s gradient in ``u`` is ``J t``)."""
    _, pb = fl.pullback(c.f, *c.xs)
    vs = [c.rng.standard_normal(u.shape) for u in c.us]
    _, tan = fl.jvp(lambda *u: tuple(pb(c.ct(u))), tuple(c.us), tuple(vs))
    c.close("pullback traced in its cotangent (forward): gradient", tan, c.back(*c.xs, cts=vs),
            1e-11)
    got = fl.gradient(lambda *u: sum(np.sum(a * t) for a, t in zip(pb(c.ct(u)), c.ts)), *c.us)
    want = _leaves(fl.jvp(c.f, tuple(c.xs), tuple(c.ts))[1])
    c.close("pullback traced in its cotangent (reverse): output", _leaves(got), want, 1e-11)


def check_layouts(c):
    """Each input as a strided, reversed, Fortran-ordered or broadcast view: the same values
    and gradients as its contiguous copy."""
    for i, x in enumerate(c.xs):
        for kind, v in _layouts(x, c.rng).items():
            args = list(c.xs)
            want_y, want_g = c.ys, c.g
            if kind == "broadcast":  # one row repeated: compared with its copy
                v = np.broadcast_to(x[:1], x.shape)
                args[i] = np.ascontiguousarray(v)
                want_y, want_g = _leaves(c.f(*args)), c.back(*args)
            args[i] = v
            c.close(f"{kind} input {i}: value", _leaves(c.f(*args)), want_y, 1e-12)
            c.close(f"{kind} input {i}: gradient", c.back(*args), want_g, 1e-11)


def check_cotangent_layouts(c):
    """Cotangents that reach the rules as views: a transposed one (the transpose's rule
    hands the cotangent on as a view), a reversed one, and a broadcast one (a sum's rule
    broadcasts a scalar): the same gradients as contiguous ones."""
    def loss(view, weights):
        def f(*a):
            return sum(np.sum(view(y) * w) for y, w in zip(_leaves(c.f(*a)), weights))
        return f

    t = lambda y: np.transpose(y)  # noqa: E731
    r = lambda y: y[..., ::-1] if np.ndim(y) else y  # noqa: E731
    for what, view in (("transposed", t), ("reversed", r)):
        got = fl.gradient(loss(view, [view(u) for u in c.us]), *c.xs)
        c.close(f"{what} cotangent: gradient", _leaves(got), c.g, 1e-11)
    got = fl.gradient(lambda *a: sum(np.sum(y) for y in _leaves(c.f(*a))), *c.xs)
    c.close("broadcast cotangent: gradient", _leaves(got),
            c.back(*c.xs, cts=[np.ones_like(u) for u in c.us]), 1e-11)


def check_writes(c):
    """An output or an input written in place after the call (``y += 1``, ``x[...] = 3``):
    the gradient of what was computed before the write is unchanged. A primitive that
    claims not to keep an array its rules read would see the written values."""
    def inner(*a):
        return sum(np.sum(y * u) for y, u in zip(_leaves(c.f(*a)), c.us))

    for j in range(len(c.ys)):
        def out_written(*a, j=j):
            ys = _leaves(c.f(*a))
            s = sum(np.sum(y * u) for y, u in zip(ys, c.us))
            y = ys[j]
            y += 1.5
            return s + 0 * np.sum(y)

        c.close(f"output {j} written after the call: gradient",
                _leaves(fl.gradient(out_written, *c.xs)), c.g, 1e-12)
    for i in range(len(c.xs)):
        def in_written(*a, i=i):
            a = list(a)
            a[i] = np.copy(a[i])  # (a traced copy: the caller's array is not written)
            s = inner(*a)
            a[i][...] = 3.0
            return s + 0 * np.sum(a[i])

        c.close(f"input {i} written after the call: gradient",
                _leaves(fl.gradient(in_written, *c.xs)), c.g, 1e-12)


def check_float32(c):
    """float32 inputs and cotangents: float32 values and gradients, close to float64's."""
    x32 = [x.astype(np.float32) for x in c.xs]
    y32 = _leaves(c.f(*x32))
    g32 = c.back(*x32, cts=[u.astype(np.float32) for u in c.us])
    for what, got in (("value", y32), ("gradient", g32)):
        for j, a in enumerate(got):
            if a is not None and np.asarray(a).dtype != np.float32:
                c.p.append(f"float32 {what} {j} came as {np.asarray(a).dtype}")
    c.close("float32 value", y32, c.ys, 2e-3)
    c.close("float32 gradient", g32, c.g, 5e-3)


def check_partial(c):
    """With several outputs, a cotangent of None for one equals a zero one."""
    for j in range(len(c.ys) if len(c.ys) > 1 else 0):
        nones = [None if k == j else u for k, u in enumerate(c.us)]
        zeros = [np.zeros_like(u) if k == j else u for k, u in enumerate(c.us)]
        c.close(f"cotangent None for output {j}: gradient", c.back(*c.xs, cts=nones),
                c.back(*c.xs, cts=zeros), 1e-12)


def check_tied(c, tol):
    """One array given for two arguments of one shape: both places get the shared input's
    total gradient, against differences of the tied function."""
    xs = c.xs
    for i in range(len(xs)):
        for k in range(i + 1, len(xs)):
            if xs[i].shape != xs[k].shape:
                continue

            def tied(x, i=i, k=k):
                a = list(xs)
                a[i] = a[k] = x
                return c.f(*a)

            a = list(xs)
            a[k] = a[i]
            gt = c.back(*a)
            want = _dot(_fd(tied, [xs[i]], [c.ts[i]]), c.us)
            got = _dot([gt[i]], [c.ts[i]])
            c.p.check(f"tied inputs {i} and {k}", abs(got - want) / (1 + abs(want)), tol)
            c.p.check(f"tied inputs {i} and {k}: both places", _err(gt[k], gt[i]), 1e-12)


def audit(name, f, xs, rng, *, tol=1e-6, tie=True):
    """Every check of the module's docstring on ``f(*xs)``; returns the problems found."""
    c = Case(f, xs, rng)
    originals = [x.copy() for x in c.xs]
    check_buffers(c)
    check_modes(c, tol)
    check_one_tangent(c)
    check_mixed_levels(c, tol)
    check_traced_cotangent(c)
    check_layouts(c)
    check_cotangent_layouts(c)
    check_writes(c)
    check_float32(c)
    check_partial(c)
    if tie:
        check_tied(c, tol)
    c.close("written: input", c.xs, originals, 0.0)
    return [f"{name}: {m}" for m in c.p]


# --- the cases ------------------------------------------------------------------------------

def _geo(rng, d, lo, hi):
    return tuple(int(v) for v in rng.integers(lo, hi + 1, d))


def conv(rng):
    d = int(rng.integers(1, 3))
    groups = int(rng.choice([1, 2]))
    c, o = groups * int(rng.integers(1, 3)), groups * int(rng.integers(1, 3))
    k, s, dl = _geo(rng, d, 1, 3), _geo(rng, d, 1, 2), _geo(rng, d, 1, 2)
    pad = _geo(rng, d, 0, 1)
    if rng.random() < 0.3:  # (lo, hi) per axis
        pad = tuple((int(rng.integers(0, 3)), int(rng.integers(0, 3))) for _ in range(d))
    size = tuple(dd * (kk - 1) + 1 + int(rng.integers(0, 4)) for kk, dd in zip(k, dl))
    flipped = bool(rng.random() < 0.3)
    n = int(rng.integers(1, 3))
    x = rng.standard_normal((n, c) + size)
    w = rng.standard_normal((o, c // groups) + k)
    b = rng.standard_normal(o)
    kind = rng.choice(["conv", "bias", "relu", "tanh", "transpose"])
    opts = dict(stride=s, pad=pad, dilation=dl, groups=groups, flipped=flipped)
    if kind != "transpose" and rng.random() < 0.2:
        opts.update(pad="same", stride=1)
    if kind == "conv":
        return kind, lambda x, w: nnlib.conv(x, w, **opts), [x, w]
    if kind == "transpose":
        wt = rng.standard_normal((c, o // groups) + k)
        if rng.random() < 0.5:
            opts["output_padding"] = tuple(int(rng.integers(0, max(a, b)))
                                           for a, b in zip(s, dl))
        reach = [(m - 1) * st + dd * (kk - 1) + 1 for m, st, dd, kk in zip(size, s, dl, k)]
        if any(isinstance(v, tuple) for v in opts["pad"]) or min(reach) <= 2 * max(pad):
            opts["pad"] = 0  # (a padding that leaves no output is refused)
        return kind, lambda x, w: nnlib.conv_transpose(x, w, **opts), [x, wt]
    act = {"bias": None, "relu": fl.relu, "tanh": np.tanh}[kind]
    return ("conv_bias_" + kind, lambda x, w, b: nnlib.conv_bias_act(x, w, b, act, **opts),
            [x, w, b])


def pool(rng):
    d = int(rng.integers(1, 3))
    k = _geo(rng, d, 1, 3)
    s = _geo(rng, d, 1, 3)
    size = tuple(kk + int(rng.integers(0, 4)) for kk in k)
    x = rng.standard_normal((int(rng.integers(1, 3)), int(rng.integers(1, 3))) + size)
    kind = rng.choice(["max", "mean", "lp", "amax", "amean", "gmax"])
    pad = tuple(int(rng.integers(0, kk // 2 + 1)) for kk in k)
    if kind == "max":
        dl = _geo(rng, d, 1, 2)
        size = tuple(dd * (kk - 1) + 1 + int(rng.integers(0, 3)) for kk, dd in zip(k, dl))
        x = rng.standard_normal(x.shape[:2] + size)
        return kind, lambda x: nnlib.maxpool(x, k, stride=s, pad=pad, dilation=dl), [x]
    if kind == "mean":
        inc = bool(rng.integers(0, 2))
        return kind, lambda x: nnlib.meanpool(x, k, stride=s, pad=pad,
                                              count_include_pad=inc), [x]
    if kind == "lp":
        pw = float(rng.choice([1.0, 2.0, 3.0]))
        return kind, lambda x: nnlib.lppool(np.abs(x) + 0.5, pw, k, stride=s, pad=pad), [x]
    out = tuple(int(rng.integers(1, n + 3)) for n in size)
    if kind == "amax":
        return kind, lambda x: nnlib.adaptive_maxpool(x, out), [x]
    if kind == "amean":
        return kind, lambda x: nnlib.adaptive_meanpool(x, out), [x]
    return kind, lambda x: nnlib.global_maxpool(x), [x]


def norm(rng):
    n, c = int(rng.integers(1, 4)), 2 * int(rng.integers(1, 3))
    size = _geo(rng, int(rng.integers(0, 3)), 1, 3)
    x = rng.standard_normal((n, c) + size) * rng.choice([0.1, 1.0, 10.0])
    kind = rng.choice(["batch", "layer", "group", "instance", "normalise", "batch_stats",
                       "batch_given"])
    if kind == "batch_given":
        def f(x, s, b, m, v):
            return nnlib.batchnorm(x, s, b, mean=m, var=np.abs(v) + 0.1)

        return kind, f, [x, rng.standard_normal(c), rng.standard_normal(c),
                         rng.standard_normal(c), rng.standard_normal(c)]
    sc, bi = rng.standard_normal(c), rng.standard_normal(c)
    if kind == "batch":
        if n * int(np.prod(size)) < 2:
            x = np.concatenate([x, x + 1])
        return kind, lambda x, s, b: nnlib.batchnorm(x, s, b), [x, sc, bi]
    if kind == "batch_stats":
        if n * int(np.prod(size)) < 2:
            x = np.concatenate([x, x + 1])
        return kind, lambda x, s, b: nnlib.batchnorm(x, s, b, return_stats=True), [x, sc, bi]
    if kind == "layer":
        shp = x.shape[-1:]
        return kind, lambda x, s, b: nnlib.layernorm(x, s, b), [x, rng.standard_normal(shp),
                                                                rng.standard_normal(shp)]
    if kind == "group":
        gr = int(rng.choice([1, 2, c]))
        return kind, lambda x, s, b: nnlib.groupnorm(x, gr, s, b), [x, sc, bi]
    if kind == "instance":
        if not size:
            x = x[..., None].repeat(2, -1) + rng.standard_normal(x.shape + (2,))
        return kind, lambda x, s, b: nnlib.instancenorm(x, s, b), [x, sc, bi]
    axes = tuple(sorted(set(int(a) for a in rng.integers(0, x.ndim, 2))))
    aff = tuple(1 if a in axes and rng.random() < 0.5 else m for a, m in enumerate(x.shape))
    return (kind, lambda x, s, b: nnlib.normalise(x, axes, s, b, eps=1e-3, return_stats=True),
            [x, rng.standard_normal(aff), rng.standard_normal(aff)])


def softmax(rng):
    x = rng.standard_normal(_geo(rng, int(rng.integers(1, 4)), 1, 4)) * 3
    axis = int(rng.integers(-x.ndim, x.ndim))
    kind = rng.choice(["softmax", "logsoftmax", "logsumexp", "glu"])
    if kind == "glu":
        x = np.concatenate([x, x * 0.5 + 1], axis=axis)
        return kind, lambda x: nnlib.glu(x, axis), [x]
    fn = getattr(nnlib, kind)
    return kind, lambda x: fn(x, axis), [x]


def attention(rng):
    nh = int(rng.integers(1, 3))
    n, tq, tk = int(rng.integers(1, 3)), int(rng.integers(1, 4)), int(rng.integers(1, 4))
    e, ev = nh * int(rng.integers(1, 3)), nh * int(rng.integers(1, 3))
    q, k, v = (rng.standard_normal((n, t, m)) for t, m in ((tq, e), (tk, e), (tk, ev)))
    mask = rng.random((tq, tk)) < 0.7 if rng.random() < 0.5 else None
    if mask is not None:
        mask[:, 0] = True
    if rng.random() < 0.3:  # leading axes of their own, a broadcast bias
        lead = _geo(rng, int(rng.integers(0, 3)), 1, 2)
        q, k, v = (rng.standard_normal(lead + a.shape[1:]) for a in (q, k, v))
        bshape = tuple(m if rng.random() < 0.5 else 1 for m in lead + (tq, tk))
        bshape = bshape[int(rng.integers(0, len(bshape) + 1)):]
        sc = float(rng.uniform(0.1, 2))

        def h(q, k, v, b):
            return nnlib.dot_product_attention(q, k, v, mask=mask, bias=b, scale=sc)

        return "attention_lead", h, [q, k, v, rng.standard_normal(bshape)]
    if rng.random() < 0.5:
        bias = rng.standard_normal((nh, tq, tk))

        def f(q, k, v, b):
            return nnlib.dot_product_attention(q, k, v, mask=mask, bias=b, nheads=nh)

        return "attention_bias", f, [q, k, v, bias]

    def g(q, k, v):
        return nnlib.dot_product_attention(q, k, v, mask=mask, nheads=nh)

    return "attention", g, [q, k, v]


def recurrent(rng):
    n, t, i, h = (int(rng.integers(1, 4)) for _ in range(4))
    x = rng.standard_normal((n, t, i))
    h0, c0 = rng.standard_normal((n, h)), rng.standard_normal((n, h))
    kind = rng.choice(["lstm", "gru", "lstm_last", "gru_last", "lstm_step", "gru_step",
                       "lstm_cell", "gru_cell"])
    last = rng.integers(0, t, n) if kind.endswith("last") else None
    lstm = kind.startswith("lstm")
    gates = 4 if lstm else 3
    w_ih = rng.standard_normal((gates * h, i)) * 0.5
    w_hh = rng.standard_normal((gates * h, h)) * 0.5
    b1, b2 = rng.standard_normal(gates * h), rng.standard_normal(gates * h)
    gx = rng.standard_normal((n, gates * h))
    if kind == "lstm_step":
        return kind, lambda gx, h, c, w: nnlib.lstm_step(gx, h, c, w), [gx, h0, c0, w_hh]
    if kind == "gru_step":
        return kind, lambda gx, h, w, b: nnlib.gru_step(gx, h, w, b), [gx, h0, w_hh, b2]
    state = [h0, c0] if lstm else [h0]
    if kind.endswith("cell"):
        return kind, nnlib.lstm_cell if lstm else nnlib.gru_cell, \
            [x[:, 0], *state, w_ih, w_hh, b1, b2]
    sequence = nnlib.lstm_sequence if lstm else nnlib.gru_sequence

    def f(*a):
        return sequence(*a, last=last)

    return kind, f, [x, *state, w_ih, w_hh, b1, b2]


def linear(rng):
    lead = _geo(rng, int(rng.integers(0, 3)), 1, 3)
    i, o = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    x, w, b = rng.standard_normal(lead + (i,)), rng.standard_normal((o, i)), rng.standard_normal(o)
    if rng.random() < 0.3:
        return "linear_nobias", lambda x, w: nnlib.linear(x, w), [x, w]
    return "linear", nnlib.linear, [x, w, b]


def embedding(rng):
    v, d = int(rng.integers(1, 5)), int(rng.integers(1, 4))
    idx = rng.integers(0, v, _geo(rng, int(rng.integers(0, 3)), 1, 4))
    w = rng.standard_normal((v, d))
    if rng.random() < 0.5:
        return "embedding", lambda w: nnlib.embedding(w, idx), [w]
    idx = np.concatenate([rng.permutation(v), rng.integers(0, v, int(rng.integers(0, 4)))])
    src = rng.standard_normal(idx.shape + (d,))
    op = str(rng.choice(["add", "sub", "mean", "max", "min"]))
    return f"scatter_{op}", lambda s: nnlib.scatter(op, s, idx), [src]


def upsample(rng):
    d = int(rng.integers(1, 3))
    x = rng.standard_normal((int(rng.integers(1, 3)), int(rng.integers(1, 3)))
                            + _geo(rng, d, 1, 4))
    scale = _geo(rng, d, 1, 3)
    kind = rng.choice(["nearest", "linear", "shuffle", "grid", "fold"])
    if kind == "nearest":
        return kind, lambda x: nnlib.upsample_nearest(x, scale), [x]
    if kind == "linear":
        ac = bool(rng.integers(0, 2))
        if rng.random() < 0.3:
            x = rng.standard_normal(x.shape[:2] + _geo(rng, 3, 1, 3))
            fn, d = nnlib.upsample_trilinear, 3
        else:
            fn = nnlib.upsample_linear if d == 1 else nnlib.upsample_bilinear
        if rng.random() < 0.5:
            size = _geo(rng, d, 1, 5)
            return kind + "_size", lambda x: fn(x, size=size, align_corners=ac), [x]
        scale = _geo(rng, d, 1, 3)
        return kind, lambda x: fn(x, scale, align_corners=ac), [x]
    if kind == "shuffle":
        r = int(rng.integers(1, 3))
        x = rng.standard_normal((1, r ** d * 2) + x.shape[2:])
        return kind, lambda x: nnlib.pixel_shuffle(x, r), [x]
    if kind == "fold":
        size = x.shape[2:]
        k = tuple(int(rng.integers(1, m + 1)) for m in size)
        cols = nnlib.unfold(x, k)
        return kind, lambda c: nnlib.fold(c, size, k), [cols]
    x = rng.standard_normal((1, 2, 3, 4))
    grid = rng.uniform(-1.2, 1.2, (1, 2, 3, 2))
    mode = str(rng.choice(["zeros", "border"]))
    return "grid_" + mode, lambda x, g: nnlib.grid_sample(x, g, padding_mode=mode), [x, grid]


def loss(rng):
    n, c = int(rng.integers(1, 4)), int(rng.integers(2, 4))
    yhat = rng.standard_normal((n, c))
    y = rng.random((n, c))
    y /= y.sum(-1, keepdims=True)
    kind = rng.choice(["logitce", "ce", "lbce", "focal", "kl", "huber", "labels"])
    if kind == "logitce":
        return kind, lambda a, b: fl.losses.logitcrossentropy(a, b), [yhat, y]
    if kind == "labels":
        lab = rng.integers(0, c, n)
        return kind, lambda a: fl.losses.logitcrossentropy(a, lab), [yhat]
    if kind == "ce":
        return kind, lambda a, b: fl.losses.crossentropy(nnlib.softmax(a), b), [yhat, y]
    if kind == "lbce":
        return kind, lambda a, b: fl.losses.logitbinarycrossentropy(a, b), [yhat, y]
    if kind == "focal":
        return kind, lambda a, b: fl.losses.focal_loss(nnlib.softmax(a), b), [yhat, y]
    if kind == "kl":
        return kind, lambda a, b: fl.losses.kldivergence(nnlib.softmax(a),
                                                         nnlib.softmax(b)), [yhat, y]
    return kind, lambda a, b: fl.losses.huber_loss(a, b), [yhat, y * 3]


def big(rng):
    """Larger shapes: several blocks of the convolution's and the normalisation's kernels,
    the attention's heads, the sequence kernels' scratch buffers."""
    kind = rng.choice(["conv", "norm", "attention", "lstm", "gru", "pool"])
    if kind == "conv":
        x, w = rng.standard_normal((3, 6, 20, 18)), rng.standard_normal((8, 3, 3, 3))
        pre = nnlib.conv(x, w, pad=1, groups=2)
        # each channel's bias, of 50 drawn, the one farthest from putting a pre-activation
        # at ReLU's kink (differences across it are no derivative)
        tries = rng.standard_normal(50)
        b = np.array([tries[np.argmax([np.min(np.abs(pre[:, o] + t)) for t in tries])]
                      for o in range(8)])
        return kind, lambda x, w, b: nnlib.conv_bias_act(x, w, b, fl.relu, pad=1, groups=2), \
            [x, w, b]
    if kind == "norm":
        x = rng.standard_normal((6, 8, 10, 12)) * 3 + 1
        return kind, lambda x, s, b: nnlib.batchnorm(x, s, b), [x, rng.standard_normal(8),
                                                                rng.standard_normal(8)]
    if kind == "attention":
        q, k, v = (rng.standard_normal((3, t, 16)) for t in (9, 11, 11))
        mask = rng.random((9, 11)) < 0.8

        def f(q, k, v):
            return nnlib.dot_product_attention(q, k, v, mask=mask, nheads=4)

        return kind, f, [q, k, v]
    if kind == "pool":
        x = rng.standard_normal((3, 4, 17, 19))
        return kind, lambda x: nnlib.maxpool(x, 3, stride=2, pad=1), [x]
    g = 4 if kind == "lstm" else 3
    x, h0 = rng.standard_normal((5, 12, 7)), rng.standard_normal((5, 9))
    w_ih, w_hh = rng.standard_normal((g * 9, 7)) * 0.3, rng.standard_normal((g * 9, 9)) * 0.3
    if kind == "lstm":
        return kind, nnlib.lstm_sequence, [x, h0, rng.standard_normal((5, 9)), w_ih, w_hh]
    return kind, nnlib.gru_sequence, [x, h0, w_ih, w_hh]


FAMILIES = [conv, pool, norm, softmax, attention, recurrent, linear, embedding, upsample, loss]
BIG = [big]  # (by hand: python -m tests.nnlib.rules_audit N SEED big)


# the convolution kernels' strategies (see tests/nnlib/test_conv_strategies.py): each case
# of the conv family runs under a random choice of them
STRATEGY = {"NARROW": (0, 10 ** 9), "FOLD_SHARE": (0.0, float("inf")),
            "BLOCK_BYTES": (1, 3 << 20), "PART_BYTES": (1, 1 << 20),
            "PART_POSITIONS": (1, 512), "GRID_SHARE": (0.0, float("inf")),
            "GRID_WORK": (0.0, float("inf")), "GRID_DEPTH": (0.0, float("inf"))}


def _strategy(rng):
    from fluxml.nnlib import convkernels
    before = {k: getattr(convkernels, k) for k in STRATEGY}
    for k, choices in STRATEGY.items():
        setattr(convkernels, k, choices[int(rng.integers(0, 2))])
    return lambda: [setattr(convkernels, k, v) for k, v in before.items()]


def run(n, seed, families=FAMILIES, verbose=True):
    found = []
    for case in range(n):
        rng = np.random.default_rng((seed, case))
        fam = families[case % len(families)]
        name, f, xs = fam(rng)
        restore = _strategy(rng) if fam is conv else (lambda: None)
        try:
            probs = audit(f"{fam.__name__}/{name} case {case}", f, xs, rng)
        except Exception as e:  # noqa: BLE001 - a crash is a finding too
            probs = [f"{fam.__name__}/{name} case {case}: {type(e).__name__}: {e}"]
        finally:
            restore()
        if verbose:
            for m in probs:
                print(m, flush=True)
        found += probs
    return found


if __name__ == "__main__":
    n, seed = int(sys.argv[1]), int(sys.argv[2])
    fams = [f for f in FAMILIES + BIG if f.__name__ in sys.argv[3:]] if len(sys.argv) > 3 \
        else FAMILIES
    probs = run(n, seed, fams)
    print(f"{len(probs)} problems in {n} cases")
