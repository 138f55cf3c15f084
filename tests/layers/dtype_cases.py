"""Random cases for tests/layers/fuzz_dtypes.py: a model of the layer zoo (drawn by
tests/layers/shape_models.py, with a random activation or Dense at the end), a precision
(``fl.f16``, ``fl.f32``, ``fl.f64``), an input of that precision, of another float precision
or of an integer type where indices are expected, a loss of ``fluxml.losses`` with a target
of a random dtype, and an optimiser rule.

>>> case = draw_case(0)
>>> case.precision in (np.float16, np.float32, np.float64)
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

import fluxml as fl
from tests.layers.shape_models import _input, _pick, random_model

FLOATS = (np.float16, np.float32, np.float64)
CONVERT = {np.float16: fl.f16, np.float32: fl.f32, np.float64: fl.f64}
INTS = (np.int8, np.int16, np.int32, np.int64, np.uint8)

# every activation of fluxml.nnlib that keeps its input's shape (glu halves the last axis)
ACTIVATIONS = ("celu", "elu", "gelu", "gelu_erf", "gelu_tanh", "gelu_sigmoid", "hardshrink",
               "hardsigmoid", "hardswish", "hardtanh", "leakyrelu", "lisht", "logcosh",
               "logsigmoid", "mish", "relu", "relu6", "rrelu", "selu", "sigmoid", "silu",
               "softplus", "softshrink", "softsign", "swish", "tanhshrink", "trelu", "softmax",
               "logsoftmax")

# loss name -> what the prediction goes through first, so that it is in the loss's domain
LOSSES = {"mse": None, "mae": None, "msle": "softplus", "huber_loss": None,
          "crossentropy": "softmax", "logitcrossentropy": None,
          "binarycrossentropy": "sigmoid", "logitbinarycrossentropy": None,
          "kldivergence": "softmax", "poisson_loss": "softplus", "hinge_loss": None,
          "squared_hinge_loss": None, "dice_coeff_loss": "sigmoid",
          "tversky_loss": "sigmoid", "binary_focal_loss": "sigmoid", "focal_loss": "softmax",
          "siamese_contrastive_loss": None, "ctc_loss": None, "label_smoothing": "softmax"}
LABELS = ("crossentropy", "logitcrossentropy", "focal_loss")  # (integer class labels too)


def plain_rule(rng):
    k = int(rng.integers(17))
    return [lambda: fl.Descent(0.05), lambda: fl.Momentum(0.02, 0.8),
            lambda: fl.Nesterov(0.02, 0.8), lambda: fl.RMSProp(0.01),
            lambda: fl.RMSProp(0.01, centred=True), lambda: fl.Adam(0.01),
            lambda: fl.AdamW(0.01, lambd=0.01), lambda: fl.RAdam(0.01), lambda: fl.NAdam(0.01),
            lambda: fl.AdaMax(0.01), lambda: fl.AMSGrad(0.01), lambda: fl.OAdam(0.01),
            lambda: fl.AdaBelief(0.01), lambda: fl.AdaGrad(0.05), lambda: fl.Lion(0.001),
            lambda: fl.AdaDelta(), lambda: fl.Rprop(0.01)][k]()


def random_rule(rng):
    if rng.integers(8) == 0:  # a float32 copy (and state) of each parameter
        return fl.MixedPrecision(plain_rule(rng))
    if rng.integers(2):
        return plain_rule(rng)
    parts = []
    if rng.integers(2):
        parts.append(fl.ClipNorm(1.0) if rng.integers(2) else fl.ClipGrad(0.05))
    if rng.integers(2):
        parts.append(fl.WeightDecay(0.01) if rng.integers(2) else fl.SignDecay(0.001))
    if rng.integers(3) == 0:
        parts.insert(0, fl.AccumGrad(2))
    parts.append(plain_rule(rng))
    return fl.OptimiserChain(*parts)


def leaves(y):
    """The arrays of an output (a tuple of outputs and states, nested)."""
    if isinstance(y, (tuple, list)):
        return [a for v in y for a in leaves(v)]
    return [y]


def _activation(name):
    return getattr(fl, name)


def _grow(rng, model, y):
    """``model`` with a random activation, or a Dense with one, after it (an array output)."""
    act = _activation(_pick(rng, ACTIVATIONS))
    if y.ndim in (2, 3) and rng.integers(2):
        return fl.Chain(model, fl.Dense(y.shape[-1], int(rng.integers(2, 5)), act, rng=rng))
    return fl.Chain(model, act)


@dataclass
class Case:
    model: Any  # float32, as built
    precision: type  # np.float16 / float32 / float64
    x: Any  # the input as given to the converted model
    loss: str
    target: Any  # the loss's target (or labels)
    rule: Any
    description: str


def _target(rng, name, y, dtype):
    """A target for loss ``name`` of prediction ``y`` (its shape), in ``dtype`` where float."""
    if name == "ctc_loss":  # label sequences (of classes short of the blank, the last) that
        # fit the frames: a repeated label needs a blank between
        frames, classes = y.shape[-2:]
        size = int(rng.integers(1, 2 + (frames - 1) // 2))
        labels = np.arange(size) % (classes - 1) if classes > 2 else np.zeros(size, int)
        return labels if y.ndim == 2 else np.tile(labels, (y.shape[0], 1))
    if name in LABELS and rng.integers(2):
        return rng.integers(0, y.shape[-1], y.shape[:-1]).astype(_pick(rng, INTS))
    if LOSSES[name] == "softmax":
        t = rng.random(y.shape) + 0.1
        return (t / t.sum(-1, keepdims=True)).astype(dtype)
    if name in ("hinge_loss", "squared_hinge_loss"):
        return rng.choice([-1.0, 1.0], y.shape).astype(dtype)
    if name in ("binarycrossentropy", "logitbinarycrossentropy", "siamese_contrastive_loss",
                "dice_coeff_loss", "tversky_loss", "binary_focal_loss"):
        return rng.integers(0, 2, y.shape).astype(dtype)
    if name in ("msle", "poisson_loss"):
        return rng.random(y.shape).astype(dtype)
    return rng.normal(size=y.shape).astype(dtype)


def draw_case(seed) -> Case:
    rng = np.random.default_rng(seed)
    fl.seed(seed)  # (the layers' initial weights and dropout masks: a case runs alike alone)
    for _attempt in range(50):  # a model that runs on its input, with a float output
        model, _lazy, shape, dtype = random_model(rng)
        x = _input(shape, dtype, rng)
        try:
            y = model(x)
        except (ValueError, IndexError, TypeError):
            continue
        ys = leaves(y)
        if all(isinstance(a, np.ndarray) and a.dtype.kind == "f" and a.size for a in ys):
            break
    else:
        raise RuntimeError(f"seed {seed}: no model ran")
    if isinstance(y, np.ndarray) and rng.integers(3):
        model = _grow(rng, model, y)
        y = model(x)
    precision = _pick(rng, FLOATS)
    if x.dtype.kind == "f":  # the same precision, or another one (converted with a warning)
        x = x.astype(precision if rng.integers(2) else _pick(
            rng, [d for d in FLOATS if d is not precision]))
    elif x.dtype.kind in "iu":
        x = x.astype(_pick(rng, INTS))
    first = leaves(y)[0]
    names = [n for n in LOSSES if n != "ctc_loss" or (first.ndim in (2, 3)
                                                      and first.shape[-1] >= 2)]
    loss = _pick(rng, names)
    target = _target(rng, loss, first, _pick(rng, FLOATS))
    rule = random_rule(rng)
    description = (f"{np.dtype(precision).name} model, {x.dtype} input {x.shape}, {loss} "
                   f"(target {target.dtype}), {rule!r}\n{model!r}")
    return Case(model, precision, x, loss, target, rule, description)


EPS = ("msle", "crossentropy", "binarycrossentropy", "kldivergence", "binary_focal_loss",
       "focal_loss", "label_smoothing")  # (take eps=, the prediction's dtype's by default)


def loss_of(name, out, target, eps=None):
    """The scalar loss of the model's output ``out``: ``name`` on its first array (after the
    transform that puts it in the loss's domain), plus the mean of every other array (the
    state a recurrent layer returns, a tuple's other parts), so that all of them are used.
    ``eps``: given to the losses that take one (a float16 loss and its float64 reference
    compute the same formula only with the same eps)."""
    ys = leaves(out)
    first = ys[0]
    prep = LOSSES[name]
    if prep is not None:
        first = _activation(prep)(first)
    kw = {"eps": eps} if eps is not None and name in EPS else {}
    if name == "label_smoothing":
        value = fl.crossentropy(first, fl.label_smoothing(target, 0.1), **kw)
    else:
        value = getattr(fl.losses, name)(first, target, **kw)
    for a in ys[1:]:
        value = value + np.mean(a)
    return value
