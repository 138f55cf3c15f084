"""Every public layer and loss, compiled, must equal eager fluxml: ``fl.compile`` of (a) the
forward, (b) ``fl.gradient`` of a scalar loss of it with respect to the model and the
inputs, (c) two Adam training steps (results and every array of the model and the optimiser
state written) agree with eager to float rounding, on the NumPy and XLA back ends, in float64
and float32. Train-mode dropout draws random masks: the compiled forward draws from the
layer's generator what eager draws, and the compiled value and gradient must agree with each
other (one mask per call, shared) and the masks change from call to call.

The short run is ``tests/compiler/test_layer_sweep.py``; the whole table:

    PYTHONPATH=src python -m tests.compiler.layer_sweep [backend ...] [--dtype float32]

Each cell of the table is ``ok``, ``refused: <CompileError message>`` (a clear refusal) or
``FAIL: <what differs or what was raised>``.
"""

from __future__ import annotations

import copy
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

import fluxml as fl
from fluxml.compiler import CompileError

TOL = {np.float64: 1e-9, np.float32: 2e-4}
# Adam's step is about g / sqrt(g^2) per entry: a gradient that is zero but for rounding (a key
# projection's bias, to which softmax is blind) would step by eta times the sign of the
# rounding. A larger epsilon than the default keeps the step a smooth function of such a
# gradient, and the steps are compared to a tolerance a little looser than the values'.
ADAM = {"eta": 0.01, "epsilon": 1e-4}
STEP_TOL = {np.float64: 1e-8, np.float32: 1e-3}


@dataclass
class Case:
    """``build(rng)`` gives ``(model, args)``; ``call(model, *args)`` (``model(*args)`` by
    default) is compiled. ``mode``: ``"auto"`` (test mode outside a gradient, training mode
    inside), ``"test"`` (``fl.testmode``) or ``"train"`` (``fl.trainmode``); ``random``:
    checked for consistency, not equality (train-mode dropout); ``parts``: what is checked;
    ``refusal``: what a documented refusal says, for a case fl.compile refuses."""

    name: str
    build: Callable
    call: Callable | None = None
    mode: str = "auto"
    random: bool = False
    parts: tuple = ("forward", "gradient", "train")
    refusal: str = ""


def _x(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def _states(rng, kind):
    """A recurrent layer's initial state: h, and for an LSTM c, two arrays (one array at both
    places would be a tied input, which a jvp with two different tangents refuses)."""
    return tuple(_x(rng, 2, 4) for _ in range(1 + (kind == "LSTM")))


def _dense_case(name, layer, *shape, **kw):
    return Case(name, lambda rng: (layer(rng), (_x(rng, *shape),)), **kw)


def _conv(name, cls, kernel, cin, cout, spatial, activation=np.tanh, **options):
    shape = (2, cin) + (spatial,) * len(kernel)
    return Case(name, lambda rng: (cls(kernel, cin, cout, activation, rng=rng, **options),
                                   (_x(rng, *shape),)))


def _cell_call(model, x, *state):
    return model(x, state[0] if len(state) == 1 else (tuple(state) or None))


def _mha_call(model, q, k, mask):
    return model(q, k, mask=mask)


def _layer_cases() -> list[Case]:
    c = [
        _dense_case("Dense", lambda r: fl.Dense(4, 3, np.tanh, rng=r), 5, 4),
        _dense_case("Dense(relu, bias=False)", lambda r: fl.Dense(4, 3, fl.relu, bias=False,
                                                                  rng=r), 5, 4),
        _dense_case("Dense(3-d input)", lambda r: fl.Dense(4, 3, fl.gelu, rng=r), 2, 3, 4),
        Case("Bilinear", lambda r: (fl.Bilinear((3, 4), 2, np.tanh, rng=r),
                                    (_x(r, 5, 3), _x(r, 5, 4)))),
        _dense_case("Scale", lambda r: fl.Scale(4, np.tanh, init=lambda s, g: g.standard_normal(
            s), rng=r), 3, 4),
        Case("Embedding", lambda r: (fl.Embedding(6, 3, rng=r), (r.integers(0, 6, (2, 4)),))),
        Case("EmbeddingBag(mean)", lambda r: (fl.EmbeddingBag(6, 3, rng=r),
                                              (r.integers(0, 6, (2, 4)),))),
        Case("EmbeddingBag(max)", lambda r: (fl.EmbeddingBag(6, 3, "max", rng=r),
                                             (r.integers(0, 6, (2, 4)),))),
        _dense_case("Flatten", lambda r: fl.Chain(fl.Flatten(), fl.Dense(12, 2, rng=r)),
                    2, 3, 4),
        _dense_case("PolyAct", lambda r: fl.PolyAct(3), 3, 4),
        # convolutions
        _conv("Conv1d", fl.Conv, (3,), 2, 4, 7),
        _conv("Conv2d", fl.Conv, (3, 3), 2, 3, 6),
        # (a ReLU is fused into the convolution's primitive: nnlib/convbias.py)
        _conv("Conv2d(relu)", fl.Conv, (3, 3), 2, 3, 6, fl.relu),
        _conv("Conv1d(relu, stride=2, bias=False)", fl.Conv, (3,), 2, 3, 9, fl.relu, stride=2,
              bias=False),
        _conv("Conv2d(identity)", fl.Conv, (3, 3), 2, 3, 6, fl.identity),
        _conv("ConvTranspose2d(relu)", fl.ConvTranspose, (3, 3), 2, 3, 4, fl.relu),
        _conv("Conv3d", fl.Conv, (2, 2, 2), 2, 2, 4),
        _conv("Conv2d(stride=2, pad=1)", fl.Conv, (3, 3), 2, 3, 7, stride=2, pad=1),
        _conv("Conv2d(dilation=2)", fl.Conv, (3, 3), 2, 3, 7, dilation=2),
        _conv("Conv2d(groups=2)", fl.Conv, (3, 3), 4, 6, 5, groups=2),
        _conv("Conv2d(pad=same)", fl.Conv, (3, 3), 2, 3, 5, pad="same"),
        _conv("Conv2d(bias=False, flipped)", fl.Conv, (2, 2), 2, 3, 5, bias=False,
              flipped=True),
        _conv("CrossCor2d", fl.CrossCor, (3, 3), 2, 3, 5),
        _conv("DepthwiseConv1d", fl.DepthwiseConv, (3,), 2, 4, 7),
        _conv("DepthwiseConv2d", fl.DepthwiseConv, (3, 3), 2, 4, 5),
        _conv("ConvTranspose1d", fl.ConvTranspose, (3,), 2, 3, 5),
        _conv("ConvTranspose2d(stride=2)", fl.ConvTranspose, (2, 2), 2, 3, 4, stride=2),
        _conv("ConvTranspose2d(pad, outpad, dil)", fl.ConvTranspose, (3, 3), 2, 2, 4,
              stride=2, pad=1, outpad=1, dilation=1),
        _conv("ConvTranspose2d(groups=2)", fl.ConvTranspose, (3, 3), 4, 2, 4, groups=2),
        _conv("ConvTranspose3d", fl.ConvTranspose, (2, 2, 2), 2, 2, 3),
        # pooling, resampling
        _dense_case("MaxPool1d", lambda r: fl.MaxPool((2,)), 2, 3, 6),
        _dense_case("MaxPool2d", lambda r: fl.MaxPool((2, 2)), 2, 3, 6, 6),
        _dense_case("MaxPool2d(stride=1, pad=1)", lambda r: fl.MaxPool((3, 3), stride=1, pad=1),
                    2, 2, 5, 5),
        _dense_case("MaxPool3d", lambda r: fl.MaxPool((2, 2, 2)), 1, 2, 4, 4, 4),
        _dense_case("MeanPool2d", lambda r: fl.MeanPool((2, 2)), 2, 3, 6, 6),
        _dense_case("MeanPool2d(stride=1, pad=1)", lambda r: fl.MeanPool((3, 3), stride=1,
                                                                          pad=1), 2, 2, 5, 5),
        _dense_case("MeanPool1d", lambda r: fl.MeanPool((3,)), 2, 3, 6),
        _dense_case("AdaptiveMaxPool2d", lambda r: fl.AdaptiveMaxPool((2, 3)), 2, 2, 7, 5),
        _dense_case("AdaptiveMeanPool2d", lambda r: fl.AdaptiveMeanPool((2, 3)), 2, 2, 7, 5),
        _dense_case("AdaptiveMeanPool1d", lambda r: fl.AdaptiveMeanPool((3,)), 2, 2, 7),
        _dense_case("GlobalMaxPool", lambda r: fl.GlobalMaxPool(), 2, 3, 4, 4),
        _dense_case("GlobalMeanPool", lambda r: fl.GlobalMeanPool(), 2, 3, 4, 4),
        _dense_case("Upsample(nearest)", lambda r: fl.Upsample(scale=2), 1, 2, 3, 3),
        _dense_case("Upsample(bilinear)", lambda r: fl.Upsample("bilinear", scale=2),
                    1, 2, 3, 3),
        _dense_case("Upsample(bilinear, align)", lambda r: fl.Upsample(
            "bilinear", size=(5, 4), align_corners=True), 1, 2, 3, 3),
        _dense_case("Upsample(linear 1d)", lambda r: fl.Upsample("linear", scale=2), 1, 2, 4),
        _dense_case("Upsample(trilinear)", lambda r: fl.Upsample("trilinear", scale=2),
                    1, 1, 2, 2, 2),
        _dense_case("PixelShuffle", lambda r: fl.PixelShuffle(2), 1, 8, 2, 3),
        # normalisation, in test mode (running statistics) and training mode (the batch's)
        *[_dense_case(f"{n}({mode})", b, *s, mode=mode) for mode in ("auto", "test", "train")
          for n, b, s in (
              ("BatchNorm", lambda r: fl.BatchNorm(3, np.tanh), (4, 3, 2, 2)),
              ("BatchNorm2", lambda r: fl.BatchNorm(3), (4, 3)),
              ("LayerNorm", lambda r: fl.LayerNorm(4), (2, 3, 4)),
              ("GroupNorm", lambda r: fl.GroupNorm(4, 2), (3, 4, 3)),
              ("InstanceNorm", lambda r: fl.InstanceNorm(3, affine=True, track_stats=True),
               (2, 3, 5)))],
        _dense_case("Dropout(test)", lambda r: fl.Dropout(0.4, rng=r), 4, 5, mode="test"),
        _dense_case("AlphaDropout(test)", lambda r: fl.AlphaDropout(0.4, rng=r), 4, 5,
                    mode="test"),
        _dense_case("Dropout(auto)", lambda r: fl.Dropout(0.4, rng=r), 4, 5,
                    parts=("forward",)),
        _dense_case("AlphaDropout(auto)", lambda r: fl.AlphaDropout(0.4, rng=r), 4, 5,
                    parts=("forward",)),
        _dense_case("Dropout(auto, gradient)", lambda r: fl.Dropout(0.4, rng=r), 40, 50,
                    random=True, parts=("gradient",)),
        _dense_case("Dropout(train)", lambda r: fl.Dropout(0.4, rng=r), 40, 50, mode="train",
                    random=True),
        _dense_case("Dropout(train, dims)", lambda r: fl.Dropout(0.4, dims=0, rng=r), 40, 50,
                    mode="train", random=True),
        _dense_case("AlphaDropout(train)", lambda r: fl.AlphaDropout(0.4, rng=r), 40, 50,
                    mode="train", random=True),
        # recurrent
        *[Case(f"{n}Cell", lambda r, n=n: (getattr(fl, f"{n}Cell")(3, 4, rng=r),
                                           (_x(r, 2, 3), *_states(r, n))),
               call=_cell_call) for n in ("RNN", "LSTM", "GRU")],
        *[_dense_case(n, lambda r, n=n: getattr(fl, n)(3, 4, rng=r), 2, 5, 3)
          for n in ("RNN", "LSTM", "GRU")],
        *[Case(f"{n}(state, return_state)", lambda r, n=n: (
            getattr(fl, n)(3, 4, return_state=True, rng=r),
            (_x(r, 2, 5, 3), *_states(r, n))), call=_cell_call)
          for n in ("RNN", "LSTM", "GRU")],
        _dense_case("LSTM(unbatched)", lambda r: fl.LSTM(3, 4, rng=r), 5, 3),
        _dense_case("GRUv3", lambda r: fl.GRUv3(3, 4, rng=r), 2, 5, 3),
        _dense_case("Recurrence(LSTMCell)", lambda r: fl.Recurrence(fl.LSTMCell(3, 4, rng=r)),
                    2, 5, 3),
        _dense_case("WeightNorm(Conv2d)", lambda r: fl.WeightNorm(
            fl.Conv((3, 3), 2, 3, rng=r), dims=(1, 2, 3)), 2, 2, 5, 5),
        _dense_case("Bidirectional(LSTM)", lambda r: fl.Bidirectional(fl.LSTM(3, 4, rng=r),
                                                                      rng=r), 2, 4, 3),
        # attention
        _dense_case("MultiHeadAttention", lambda r: fl.MultiHeadAttention(4, nheads=2, rng=r),
                    2, 3, 4),
        Case("MultiHeadAttention(mask, k)", lambda r: (
            fl.MultiHeadAttention(4, nheads=2, kdim=3, bias=True, rng=r),
            (_x(r, 2, 3, 4), _x(r, 2, 5, 3), r.random((3, 5)) > 0.3)), call=_mha_call),
        Case("MultiHeadAttention(causal)", lambda r: (
            fl.MultiHeadAttention(4, nheads=2, rng=r), (_x(r, 2, 3, 4),)),
            call=lambda m, q: m(q, mask="causal")),
        Case("TransformerEncoderBlock", lambda r: (
            fl.TransformerEncoderBlock(4, 2, 6, dropout=0.0, rng=r), (_x(r, 2, 3, 4),)),
            call=lambda m, x: m(x, mask="causal")),
        # a neural ODE: the solver steps under Python control (refused by name)
        _dense_case("NeuralODE(Tsit5)", lambda r: fl.NeuralODE(fl.Dense(3, 3, np.tanh, rng=r),
                                                               (0.0, 0.5)), 2, 3,
                    refusal="fl.ode.solve (and NeuralODE) cannot be compiled"),
        _dense_case("NeuralODE(RK4, dt)", lambda r: fl.NeuralODE(
            fl.Dense(3, 3, np.tanh, rng=r), (0.0, 0.5), solver=fl.ode.RK4(), dt=0.125), 2, 3,
            refusal="fl.ode.solve (and NeuralODE) cannot be compiled"),
        # containers
        _dense_case("Chain", lambda r: fl.Chain(fl.Dense(3, 4, fl.relu, rng=r),
                                                fl.Dense(4, 2, rng=r)), 5, 3),
        _dense_case("Chain(named)", lambda r: fl.Chain(a=fl.Dense(3, 4, fl.relu, rng=r),
                                                       b=fl.Dense(4, 2, rng=r)), 5, 3),
        _dense_case("Parallel", lambda r: fl.Parallel(np.add, fl.Dense(3, 2, rng=r),
                                                      fl.Dense(3, 2, np.tanh, rng=r)), 5, 3),
        _dense_case("Parallel(tuple)", lambda r: fl.Parallel(None, fl.Dense(3, 2, rng=r),
                                                             fl.Dense(3, 4, rng=r)), 5, 3),
        _dense_case("SkipConnection", lambda r: fl.SkipConnection(fl.Dense(3, 3, np.tanh, rng=r),
                                                                  np.add), 5, 3),
        _dense_case("PairwiseFusion", lambda r: fl.PairwiseFusion(
            np.add, fl.Dense(3, 3, rng=r), fl.Dense(3, 3, np.tanh, rng=r)), 5, 3),
        _dense_case("Maxout", lambda r: fl.Maxout(fl.Dense(3, 2, rng=r), fl.Dense(3, 2, rng=r)),
                    5, 3),
    ]
    return c


# --- losses: a Dense layer (so there is something to train) followed by the loss -----------

def _probs(r, *shape):
    p = r.random(shape) + 0.1
    return (p / p.sum(-1, keepdims=True)).astype(np.float32)


def _loss_case(name, loss, target, squash=None, **kw):
    """``loss(squash(Dense(x)), target)``."""

    def build(r):
        return fl.Dense(3, 4, rng=r), (_x(r, 5, 3), target(r))

    def call(model, x, y):
        yhat = model(x)
        return loss(yhat if squash is None else squash(yhat), y, **kw)

    return Case(f"loss {name}", build, call=call)


def _softmax(x):
    return fl.softmax(x, axis=-1)


def _loss_cases() -> list[Case]:
    L = fl.losses
    labels = lambda r: r.integers(0, 4, 5)  # noqa: E731
    c = [
        _loss_case("mse", L.mse, lambda r: _x(r, 5, 4)),
        _loss_case("mae", L.mae, lambda r: _x(r, 5, 4)),
        _loss_case("msle", L.msle, lambda r: r.random((5, 4)).astype(np.float32),
                   squash=fl.sigmoid),
        _loss_case("huber_loss", L.huber_loss, lambda r: _x(r, 5, 4), delta=0.5),
        _loss_case("poisson_loss", L.poisson_loss, lambda r: r.random((5, 4)).astype(
            np.float32), squash=np.exp),
        _loss_case("siamese_contrastive_loss", L.siamese_contrastive_loss,
                   lambda r: r.integers(0, 2, (5, 4)).astype(np.float32), squash=np.abs),
        _loss_case("dice_coeff_loss", L.dice_coeff_loss, lambda r: r.random((5, 4)).astype(
            np.float32), squash=fl.sigmoid),
        _loss_case("tversky_loss", L.tversky_loss, lambda r: r.random((5, 4)).astype(
            np.float32), squash=fl.sigmoid),
        _loss_case("crossentropy(probs)", L.crossentropy, lambda r: _probs(r, 5, 4),
                   squash=_softmax),
        _loss_case("crossentropy(labels)", L.crossentropy, labels, squash=_softmax),
        _loss_case("logitcrossentropy(probs)", L.logitcrossentropy, lambda r: _probs(r, 5, 4)),
        _loss_case("logitcrossentropy(labels)", L.logitcrossentropy, labels),
        _loss_case("binarycrossentropy", L.binarycrossentropy,
                   lambda r: r.integers(0, 2, (5, 4)).astype(np.float32), squash=fl.sigmoid),
        _loss_case("logitbinarycrossentropy", L.logitbinarycrossentropy,
                   lambda r: r.integers(0, 2, (5, 4)).astype(np.float32)),
        _loss_case("kldivergence", L.kldivergence, lambda r: _probs(r, 5, 4), squash=_softmax),
        _loss_case("hinge_loss", L.hinge_loss, lambda r: np.sign(_x(r, 5, 4))),
        _loss_case("squared_hinge_loss", L.squared_hinge_loss, lambda r: np.sign(_x(r, 5, 4))),
        _loss_case("binary_focal_loss", L.binary_focal_loss,
                   lambda r: r.integers(0, 2, (5, 4)).astype(np.float32), squash=fl.sigmoid),
        _loss_case("focal_loss(probs)", L.focal_loss, lambda r: _probs(r, 5, 4),
                   squash=_softmax),
        _loss_case("focal_loss(labels)", L.focal_loss, labels, squash=_softmax),
        _loss_case("label_smoothing+logitce", lambda yhat, y: L.logitcrossentropy(
            yhat, L.label_smoothing(y, 0.1)), lambda r: np.eye(4, dtype=np.float32)[
            r.integers(0, 4, 5)]),
        Case("loss ctc_loss", lambda r: (fl.Dense(3, 4, rng=r), (_x(r, 2, 6, 3),)),
             call=lambda m, x: L.ctc_loss(m(x), [np.array([0, 1]), np.array([2, 2, 1])])),
        Case("loss ctc_loss(lengths)", lambda r: (fl.Dense(3, 4, rng=r), (_x(r, 2, 6, 3),)),
             call=lambda m, x: L.ctc_loss(m(x), [np.array([0, 1]), np.array([2])],
                                          input_lengths=[6, 4])),
    ]
    return c


CASES = _layer_cases() + _loss_cases()
BY_NAME = {c.name: c for c in CASES}


# --- the checks --------------------------------------------------------------------------------

def _cast(tree, dtype):
    return fl.fmap(lambda a: a.astype(dtype) if isinstance(a, np.ndarray) and a.dtype.kind == "f"
                   else a, tree)


def _floats(out) -> list:
    """The float arrays of a result (a tree of arrays, tuples, None)."""
    if isinstance(out, (tuple, list)):
        return [a for o in out for a in _floats(o)]
    if out is None or not hasattr(out, "dtype") or out.dtype.kind != "f":
        return []
    return [out]


def scalar(out):
    """A scalar function of every float array of a result, with a non-constant gradient
    (sums alone are flat through normalisation layers)."""
    total = 0.0
    for k, a in enumerate(_floats(out)):
        total = total + np.sum(np.sin(a * (1.0 + 0.5 * k))) + 0.5 * np.sum(a * a)
    return total


def _run(case, model, args):
    return case.call(model, *args) if case.call is not None else model(*args)


def _gradient(case):
    def g(model, *args):
        return fl.gradient(lambda m, *a: scalar(_run(case, m, a)), model, *args)

    return g


def _step(case):
    def step(model, opt, *args):
        loss, (g,) = fl.withgradient(lambda m: scalar(_run(case, m, args)), model)
        fl.update(opt, model, g)
        return loss

    return step


def _compare(what, got, want, dtype, tols=TOL):
    """None when the two trees agree to the dtype's tolerance, else a message."""
    got, want = fl.tree.leaves(got), fl.tree.leaves(want)
    if len(got) != len(want):
        return f"{what}: {len(got)} arrays, eager has {len(want)}"
    tol = tols[dtype]
    for i, (a, b) in enumerate(zip(got, want)):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape:
            return f"{what}[{i}]: shape {a.shape}, eager {b.shape}"
        if b.dtype.kind == "f" and a.dtype != b.dtype:
            return f"{what}[{i}]: dtype {a.dtype}, eager {b.dtype}"
        if b.dtype.kind not in "fc":
            if not np.array_equal(a, b):
                return f"{what}[{i}]: differs (exact)"
            continue
        scale = max(1.0, float(np.max(np.abs(b), initial=0.0)))
        err = float(np.max(np.abs(a.astype(np.float64) - b), initial=0.0))
        if not err <= tol * scale:
            return f"{what}[{i}]: max error {err:.3g} (scale {scale:.3g}, tolerance {tol:g})"
    return None


def _setup(case, dtype, seed=0):
    model, args = case.build(np.random.default_rng(seed))
    model, args = _cast(model, dtype), _cast(args, dtype)
    if case.mode != "auto":
        (fl.trainmode if case.mode == "train" else fl.testmode)(model)
    return model, args


def _attempt(f):
    """``f()``'s message, ``refused: ...`` for a CompileError, ``FAIL: ...`` for others."""
    try:
        return f()
    except CompileError as e:
        return "refused: " + " ".join(str(e).split())[:300]
    except Exception as e:  # noqa: BLE001 (a sweep reports, it does not stop)
        where = traceback.extract_tb(e.__traceback__)[-1]
        return (f"FAIL: {type(e).__name__}: {' '.join(str(e).split())[:240]} "
                f"({where.filename.rsplit('/', 1)[-1]}:{where.lineno})")


def _exact(case, backend, dtype, part):
    model, args = _setup(case, dtype)
    eager_model = copy.deepcopy(model)
    if part == "forward":
        f = lambda m, *a: _run(case, m, a)  # noqa: E731
        compiled = fl.compile(f, backend=backend, background=False)
        for k in range(2):  # twice: the second call runs the cached program
            got, want = compiled(model, *args), f(eager_model, *args)
            msg = _compare(f"forward (call {k + 1})", got, want, dtype) or _compare(
                "model after forward", model, eager_model, dtype)
            if msg:
                return "FAIL: " + msg
        return "ok"
    if part == "gradient":
        f = _gradient(case)
        compiled = fl.compile(f, backend=backend, background=False)
        for k in range(2):
            msg = _compare(f"gradient (call {k + 1})", compiled(model, *args),
                           f(eager_model, *args), dtype) or _compare(
                "model after gradient", model, eager_model, dtype)
            if msg:
                return "FAIL: " + msg
        return "ok"
    step = _step(case)
    opt, eager_opt = fl.setup(fl.Adam(**ADAM), model), fl.setup(fl.Adam(**ADAM), eager_model)
    compiled = fl.compile(step, backend=backend, background=False)
    for k in range(2):
        msg = _compare(f"loss (step {k + 1})", compiled(model, opt, *args),
                       step(eager_model, eager_opt, *args), dtype) or _compare(
            f"model and state after step {k + 1}", (model, opt), (eager_model, eager_opt),
            dtype, STEP_TOL)
        if msg:
            return "FAIL: " + msg
    return "ok"


def _random(case, backend, dtype, part):
    """Train-mode dropout: compiled, the value and the input's gradient of ``sum(c * y)`` must
    use one mask (``g = c * y / x``), which changes from call to call."""
    model, (x,) = _setup(case, dtype)
    c = np.linspace(0.5, 1.5, x.size).reshape(x.shape).astype(dtype)

    def f(m, x):
        y, (gm, gx) = fl.withgradient(lambda m, x: np.sum(m(x) * c), m, x)
        return m(x) if part == "forward" else y, gx

    if part == "train":
        return _exact_train_random(case, model, x, backend)
    if part == "forward":  # the same generator: the same masks as eager, call by call
        eager = copy.deepcopy(model)
        forward = fl.compile(lambda m, x: m(x), backend=backend, background=False)
        for k in range(2):
            msg = _compare(f"forward (call {k + 1})", forward(model, x), eager(x), dtype)
            if msg:
                return "FAIL: " + msg
    compiled = fl.compile(f, backend=backend, background=False)
    masks = []
    for _ in range(2):
        total, gx = compiled(model, x)
        # one mask for value and gradient: gx = c * d(y)/dx per entry, y affine in x per entry
        slope = np.asarray(gx) / c
        if part == "gradient":
            y_of_x = (slope * x)
            if not np.isclose(float(total), float(np.sum(y_of_x * c)) + _offset(case, slope, c,
                                                                               x),
                              rtol=TOL[dtype] * 10):
                return "FAIL: the value and the gradient used different masks"
        masks.append(slope == 0 if "Alpha" not in case.name else np.isclose(slope, slope.min()))
        kept = 1 - float(np.mean(slope == 0 if "Alpha" not in case.name else
                                 np.isclose(slope, 0)))
        if "Alpha" not in case.name and not 0.45 < kept < 0.75:
            return f"FAIL: {kept:.2f} of the entries kept with p=0.4"
    if np.array_equal(masks[0], masks[1]):
        return "FAIL: the same mask on two calls"
    return "ok"


def _offset(case, slope, c, x):
    """AlphaDropout's ``y = a (x * keep + alpha' (1 - keep)) + b``: the part of ``sum(c y)``
    not proportional to ``x`` (0 for plain dropout)."""
    if "Alpha" not in case.name:
        return 0.0
    p = 0.4
    alpha = -1.7580993408473766
    a = 1 / np.sqrt((alpha ** 2 * p + 1) * (1 - p))
    b = -a * alpha * p
    dropped = np.isclose(slope, 0)
    return float(np.sum(c * (a * alpha * dropped + b)))


def _exact_train_random(case, model, x, backend):
    """A training step of a dropout layer: nothing trainable; compiled must not crash and
    must return the loss of a mask (the value is random)."""
    step = _step(case)
    opt = fl.setup(fl.Adam(**ADAM), model)
    compiled = fl.compile(step, backend=backend, background=False)
    values = [float(compiled(model, opt, x)) for _ in range(2)]
    if not all(np.isfinite(values)) or values[0] == values[1]:
        return f"FAIL: losses {values}"
    return "ok"


def check(case: Case, backend: str = "numpy", dtype=np.float64) -> dict:
    """``{part: "ok" | "refused: ..." | "FAIL: ..."}`` for the three parts."""
    run = _random if case.random else _exact
    return {part: _attempt(lambda part=part: run(case, backend, dtype, part))
            for part in case.parts}


def summary(result: dict, case: Case | None = None) -> str:
    """``ok``, ``refused as documented: ...`` (every part refused with the case's
    ``refusal``), or what went wrong."""
    if all(v == "ok" for v in result.values()):
        return "ok"
    if case is not None and case.refusal and all(
            v.startswith("refused") and case.refusal in v for v in result.values()):
        return "refused as documented: " + case.refusal
    return "; ".join(f"{k}: {v}" for k, v in result.items() if v != "ok")


def main(argv):
    dtype = np.float32 if "--dtype" in argv and "float32" in argv else np.float64
    backends = [a for a in argv if a in ("numpy", "xla")] or ["numpy"]
    names = [a for a in argv if a in BY_NAME]
    bad = 0
    for case in [BY_NAME[n] for n in names] or CASES:
        row = []
        for backend in backends:
            s = summary(check(case, backend, dtype), case)
            bad += s != "ok" and not s.startswith("refused as documented")
            row.append(f"{backend}: {s}")
        print(f"{case.name:36s} " + " | ".join(row), flush=True)
    print(f"{bad} cells not ok")


if __name__ == "__main__":
    main(sys.argv[1:])
