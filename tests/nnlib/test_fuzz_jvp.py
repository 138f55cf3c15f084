"""A small seeded fuzz of forward mode and second order through the NN primitives: the
in-suite twin of torch_fuzz_jvp.py, with central differences in float64 as the reference.

At random configurations of each family: ``fl.jvp`` against differences of the function,
with tangents for every float input or for a random part of them (the rest closed over, or
given zero tangents, or None); float32 primals and tangents give float32 tangents close to
float64's; the forward-over-reverse Hessian-vector product against differences of the gradient; and
``fl.jacobian`` in forward mode against reverse mode.
"""

import numpy as np
import pytest

import fluxml as fl
from fluxml import nnlib

CASES = 6  # per family and seed


def _flat(y):
    return list(y) if isinstance(y, (tuple, list)) else [y]


def _fd(f, xs, ts, h=1e-4):
    """Fourth-order central differences of ``f`` along ``ts``."""
    at = [[np.asarray(y, dtype=np.float64) for y in _flat(f(*[x + s * h * t
                                                              for x, t in zip(xs, ts)]))]
          for s in (2, 1, -1, -2)]
    return [(-a + 8 * b - 8 * c + d) / (12 * h) for a, b, c, d in zip(*at)]


def _close(ours, want, tol, what):
    for j, (a, b) in enumerate(zip(ours, want)):
        a = np.zeros(np.shape(b)) if a is None else np.asarray(a, dtype=np.float64)
        scale = 1.0 + np.max(np.abs(b), initial=0.0)
        err = np.max(np.abs(a - b), initial=0.0) / scale
        assert a.shape == b.shape and err < tol, f"{what} {j}: relative error {err:.2e}"


def check(f, arrays, rng, *, tol=1e-6, second=True, same_f32=True):
    """``f(*arrays)`` in forward mode and at second order, against differences."""
    floats = [i for i, a in enumerate(arrays) if isinstance(a, np.ndarray) and a.dtype.kind == "f"]
    active, zero = floats, []
    if len(floats) > 1 and rng.random() < 0.4:  # tangents for only some inputs
        pick = [int(i) for i in rng.choice(floats, int(rng.integers(1, len(floats))),
                                           replace=False)]
        if rng.random() < 0.5:
            active = sorted(pick)
        else:
            zero = [i for i in floats if i not in pick]

    def call(*xs, base=arrays):
        full = list(base)
        for i, x in zip(active, xs):
            full[i] = x
        return f(*full)

    xs = [arrays[i] for i in active]
    ts = [np.zeros_like(arrays[i]) if i in zero else rng.standard_normal(arrays[i].shape)
          for i in active]
    nones = bool(rng.random() < 0.5)  # a zero tangent given as None, or as zeros
    given = [None if i in zero and nones else v for i, v in zip(active, ts)]
    y, t = fl.jvp(call, tuple(xs), tuple(given))
    _close(_flat(t), _fd(call, xs, ts), tol, "tangent")
    for a, b in zip(_flat(y), _flat(call(*xs))):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)

    # float32 everywhere, the inputs closed over too
    a32 = [a.astype(np.float32) if i in floats else a for i, a in enumerate(arrays)]
    y32, t32 = fl.jvp(lambda *v: call(*v, base=a32), tuple(a32[i] for i in active),
                      tuple(None if v is None else v.astype(np.float32) for v in given))
    for a, b in zip(_flat(y32), _flat(t32)):
        assert a.dtype == np.float32 and (b is None or b.dtype == np.float32)
    if same_f32:
        _close(_flat(t32), [np.asarray(v, dtype=np.float64) for v in _flat(t)], 1e-2,
               "float32 tangent")
    if not second:
        return
    cots = [rng.standard_normal(np.shape(v)) for v in _flat(y)]
    vs = [rng.standard_normal(x.shape) for x in xs]

    def grad(*xs):
        return fl.gradient(lambda *xs: sum(np.sum(a * c) for a, c in zip(_flat(call(*xs)), cots)),
                           *xs, zeros_for_none=True)

    _, hv = fl.jvp(grad, tuple(xs), tuple(vs))
    _close(_flat(hv), _fd(grad, xs, vs), tol * 10, "Hessian-vector product")
    i = int(rng.integers(len(xs)))
    if xs[i].size <= 24:
        first = _flat(call(*xs))[0]
        if np.size(first) <= 24:
            def one(x):
                return _flat(call(*xs[:i], x, *xs[i + 1:]))[0]
            np.testing.assert_allclose(fl.jacobian(one, xs[i], mode="fwd"),
                                       fl.jacobian(one, xs[i], mode="rev"),
                                       rtol=1e-10, atol=1e-12)


def _per_dim(rng, d, lo, hi):
    return int(rng.integers(lo, hi + 1)) if rng.random() < 0.5 else tuple(
        int(v) for v in rng.integers(lo, hi + 1, d))


def _tup(v, d):
    return (v,) * d if isinstance(v, int) else tuple(v)


# --- the families: each draws one configuration and checks it -------------------------------

def conv(rng):
    d = int(rng.integers(1, 4))
    groups = int(rng.choice([1, 2]))
    c, o = groups * int(rng.integers(1, 3)), groups * int(rng.integers(1, 3))
    kernel = tuple(int(k) for k in rng.integers(1, 3, d))
    stride, dilation = _per_dim(rng, d, 1, 2), _per_dim(rng, d, 1, 2)
    kind = str(rng.choice(["int", "asym", "same"]))
    pad = {"int": int(rng.integers(0, 2)), "same": "same",
           "asym": tuple((int(a), int(b)) for a, b in rng.integers(0, 2, (d, 2)))}[kind]
    stride = 1 if kind == "same" else stride
    span = [dl * (k - 1) + 1 for dl, k in zip(_tup(dilation, d), kernel)]
    x = rng.standard_normal((1, c) + tuple(s + int(rng.integers(0, 3)) for s in span))
    w = rng.standard_normal((o, c // groups) + kernel)
    flipped = bool(rng.random() < 0.3)
    if rng.random() < 0.5:
        check(lambda x, w: nnlib.conv(x, w, stride=stride, pad=pad, dilation=dilation,
                                      groups=groups, flipped=flipped), [x, w], rng)
    else:
        check(lambda x, w, b: nnlib.conv_bias_act(x, w, b, np.tanh, stride=stride, pad=pad,
                                                  dilation=dilation, groups=groups),
              [x, w, rng.standard_normal(o)], rng)


def conv_transpose(rng):
    d = int(rng.integers(1, 4))
    groups = int(rng.choice([1, 2]))
    c, o = groups * int(rng.integers(1, 3)), groups
    kernel = tuple(int(k) for k in rng.integers(1, 3, d))
    stride, dilation = _tup(_per_dim(rng, d, 1, 2), d), _tup(_per_dim(rng, d, 1, 2), d)
    outpad = tuple(int(rng.integers(0, max(s, dl))) for s, dl in zip(stride, dilation))
    pad = min(kernel) - 1
    x = rng.standard_normal((1, c) + tuple(int(v) for v in rng.integers(1, 4, d)))
    w = rng.standard_normal((c, o // groups) + kernel)
    check(lambda x, w: nnlib.conv_transpose(x, w, stride=stride, pad=pad, dilation=dilation,
                                            groups=groups, output_padding=outpad), [x, w], rng)


def pool(rng):
    d = int(rng.integers(1, 4))
    kind = str(rng.choice(["max", "mean", "lp", "adaptive max", "adaptive mean", "global"]))
    kernel = _per_dim(rng, d, 1, 3)
    k = _tup(kernel, d)
    size = tuple(ki + int(rng.integers(0, 3)) for ki in k)
    x = rng.standard_normal((1, 2) + size)
    pad = int(rng.integers(0, min(k) // 2 + 1))
    stride = None if rng.random() < 0.5 else _per_dim(rng, d, 1, 2)
    fn = {"max": lambda x: nnlib.maxpool(x, kernel, stride=stride, pad=pad),
          "mean": lambda x: nnlib.meanpool(x, kernel, stride=stride, pad=pad),
          "lp": lambda x: nnlib.lppool(np.abs(x) + 0.5, 2.5, kernel, stride=stride),
          "adaptive max": lambda x: nnlib.adaptive_maxpool(x, tuple(max(1, s - 1) for s in size)),
          "adaptive mean": lambda x: nnlib.adaptive_meanpool(x, tuple(s + 1 for s in size)),
          "global": nnlib.global_meanpool}[kind]
    check(fn, [x], rng)


def upsample(rng):
    kind = str(rng.choice(["nearest", "linear", "bilinear", "trilinear", "shuffle", "unshuffle"]))
    if kind in ("shuffle", "unshuffle"):
        r = int(rng.integers(1, 3))
        x = rng.standard_normal((1, 2 * r * r, 2, 3) if kind == "shuffle" else (1, 2, 2 * r, r))
        check(lambda x: getattr(nnlib, f"pixel_{kind}")(x, r), [x], rng)
        return
    d = {"nearest": int(rng.integers(1, 4)), "linear": 1, "bilinear": 2, "trilinear": 3}[kind]
    x = rng.standard_normal((1, 1) + tuple(int(v) for v in rng.integers(1, 4, d)))
    fn = getattr(nnlib, f"upsample_{kind}")
    if kind == "nearest":
        check(lambda x: fn(x, _per_dim(np.random.default_rng(1), d, 1, 2)), [x], rng)
    else:
        size = tuple(int(v) for v in rng.integers(1, 5, d))
        align = bool(rng.random() < 0.5)
        check(lambda x: fn(x, size=size if d > 1 else size[0], align_corners=align), [x], rng)


def norm(rng):
    kind = str(rng.choice(["batchnorm", "running", "layernorm", "groupnorm", "instancenorm",
                           "layer train", "layer test"]))
    c = int(rng.integers(1, 4))
    x = rng.standard_normal((int(rng.integers(2, 4)), c, int(rng.integers(2, 4)))) * 2 + 1
    s, b = rng.standard_normal(c), rng.standard_normal(c)
    if kind == "running":
        check(lambda x, s, b, m, v: nnlib.batchnorm(x, s, b, mean=m, var=v),
              [x, s, b, rng.standard_normal(c), rng.random(c) + 0.5], rng)
    elif kind == "layernorm":
        ls, lb = rng.standard_normal(x.shape[1:]), rng.standard_normal(x.shape[1:])
        check(lambda x, s, b: nnlib.layernorm(x, s, b, axes=(-2, -1)), [x, ls, lb], rng)
    elif kind == "groupnorm":
        check(lambda x, s, b: nnlib.groupnorm(x, c, s, b), [x, s, b], rng)
    elif kind.startswith("layer "):  # the BatchNorm layer, its parameters as arguments
        var = rng.random(c) + 0.5

        def f(x, s, b):  # a fresh layer in x's precision
            layer = fl.BatchNorm(c, dtype=x.dtype)
            (fl.trainmode if kind == "layer train" else fl.testmode)(layer)
            layer.running_var[...] = var
            layer.weight, layer.bias = s, b
            return layer(x)

        check(f, [x, s, b], rng)
    else:
        check(lambda x, s, b: getattr(nnlib, kind)(x, s, b), [x, s, b], rng)


def softmax(rng):
    nd = int(rng.integers(1, 4))
    x = rng.standard_normal(tuple(int(v) for v in rng.integers(1, 4, nd))) * 3
    axis = int(rng.integers(-nd, nd)) if rng.random() < 0.6 else tuple(
        int(a) for a in rng.choice(nd, int(rng.integers(1, nd + 1)), replace=False))
    fn = str(rng.choice(["softmax", "logsoftmax", "logsumexp"]))
    check(lambda x: getattr(fl, fn)(x, axis=axis), [x], rng)


def attention(rng):
    n, h, tq, tk, d = (int(v) for v in rng.integers(1, 3, 5))
    q, k, v = (rng.standard_normal((n, h, t, d)) for t in (tq, tk, tk))
    opts = {}
    if rng.random() < 0.5:
        mask = rng.random((tq, tk)) < 0.7
        mask[:, 0] = True
        opts["mask"] = mask
    if rng.random() < 0.5:
        opts["bias"] = rng.standard_normal((tq, tk))
    check(lambda q, k, v: fl.dot_product_attention(q, k, v, **opts), [q, k, v], rng)


def embedding(rng):
    w = rng.standard_normal((int(rng.integers(2, 6)), 3))
    idx = rng.integers(0, w.shape[0], (2, int(rng.integers(1, 4))))
    if rng.random() < 0.5:
        check(lambda w: nnlib.embedding(w, idx), [w], rng)
    else:
        layer = fl.EmbeddingBag(w.shape[0], 3, str(rng.choice(["sum", "mean"])),
                                dtype=np.float64)

        def f(w):
            layer.weight = w
            return layer(idx)

        check(f, [w], rng)


def recurrent(rng):
    kind = str(rng.choice(["lstm_sequence", "gru_sequence", "lstm_cell", "gru_cell"]))
    n, steps, n_in, hid = (int(v) for v in rng.integers(1, 3, 4))
    g = 4 if "lstm" in kind else 3
    x = rng.standard_normal((n, steps, n_in) if "sequence" in kind else (n, n_in))
    ws = [rng.standard_normal((g * hid, n_in)), rng.standard_normal((g * hid, hid)) / 2,
          rng.standard_normal(g * hid), rng.standard_normal(g * hid)]
    states = [rng.standard_normal((n, hid)) for _ in range(2 if "lstm" in kind else 1)]
    with_state = bool(rng.random() < 0.5)  # else zero initial states, closed over
    fn = getattr(nnlib, kind)

    def f(x, wi, wh, bi, bh, *ss):
        ss = ss or [np.zeros((n, hid), x.dtype)] * len(states)
        return fn(x, *ss, wi, wh, bi, bh)

    check(f, [x] + ws + (states if with_state else []), rng)


ACTIVATIONS = [a for a in nnlib.activations.NAMES if a != "rrelu"] + ["erf"]
KINKED = {"relu": [0.0], "relu6": [0.0, 6.0], "leakyrelu": [0.0], "hardsigmoid": [-3.0, 3.0],
          "hardswish": [-3.0, 3.0], "softshrink": [-0.5, 0.5], "hardshrink": [-0.5, 0.5],
          "hardtanh": [-1.0, 1.0], "trelu": [1.0], "elu": [0.0], "celu": [0.0], "selu": [0.0]}


def activation(rng):
    name = ACTIVATIONS[int(rng.integers(len(ACTIVATIONS)))]
    x = rng.standard_normal(int(rng.integers(1, 8))) * float(rng.choice([1.0, 4.0]))
    for k in KINKED.get(name, []):  # away from the kinks: differences cross them
        x = np.where(np.abs(x - k) < 1e-2, x + 0.05, x)
    check(getattr(nnlib, name), [x], rng)


def loss(rng):
    shape = (int(rng.integers(1, 4)), int(rng.integers(2, 4)))
    a, b = rng.standard_normal(shape), rng.standard_normal(shape)
    p = rng.uniform(0.05, 0.95, shape)
    labels = np.eye(shape[1])[rng.integers(0, shape[1], shape[0])]
    name = str(rng.choice(["mse", "msle", "huber", "logitcrossentropy", "crossentropy",
                           "logitbce", "kl", "focal", "dice", "tversky"]))
    agg = str(rng.choice(["mean", "sum"]))
    cases = {
        "mse": (lambda x, y: fl.mse(x, y, agg=agg), [a, b]),
        "msle": (lambda x, y: fl.msle(x, y, agg=agg), [p, p[::-1].copy()]),
        "huber": (lambda x, y: fl.huber_loss(x, y, agg=agg, delta=0.3), [a * 3, b]),
        "logitcrossentropy": (lambda x: fl.logitcrossentropy(x, labels, agg=agg), [a]),
        "crossentropy": (lambda x: fl.crossentropy(x, labels, agg=agg), [p]),
        "logitbce": (lambda x, y: fl.logitbinarycrossentropy(x, y, agg=agg), [a, p]),
        "kl": (lambda x, y: fl.kldivergence(x, y, agg=agg), [p, p[::-1].copy()]),
        "focal": (lambda x: fl.focal_loss(x, labels, agg=agg), [p]),
        "dice": (lambda x: fl.dice_coeff_loss(x, (b > 0) * 1.0), [p]),
        "tversky": (lambda x: fl.tversky_loss(x, (b > 0) * 1.0), [p]),
    }
    fn, arrays = cases[name]
    if name == "huber":  # away from the kink |e| = delta
        e = np.abs(arrays[0] - arrays[1])
        arrays[0] = np.where(np.abs(e - 0.3) < 1e-2, arrays[0] + 0.05, arrays[0])
    check(fn, arrays, rng)


def dropout(rng):
    """Dropout in training mode: one mask per call (a generator seeded alike each time)."""
    x = rng.standard_normal((2, int(rng.integers(1, 5))))
    seed, p = int(rng.integers(1 << 30)), float(rng.uniform(0.1, 0.9))
    kind = str(rng.choice(["dropout", "dims", "alpha", "layer"]))

    def f(x):
        r = np.random.default_rng(seed)
        if kind == "alpha":
            return nnlib.alpha_dropout(x, p, rng=r)
        if kind == "layer":
            return fl.trainmode(fl.Dropout(p, rng=r))(np.tanh(x))
        return nnlib.dropout(x, p, dims=0 if kind == "dims" else None, rng=r)

    # (a float32 input draws its mask in float32: another mask than float64's, by design)
    check(f, [x], rng, same_f32=False)


FAMILIES = [conv, conv_transpose, pool, upsample, norm, softmax, attention, embedding,
            recurrent, activation, loss, dropout]


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.__name__)
def test_forward_mode_fuzz(family):
    for i in range(CASES):
        rng = np.random.default_rng([7, FAMILIES.index(family), i])
        family(rng)
