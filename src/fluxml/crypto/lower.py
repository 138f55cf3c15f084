"""From a trained model to the steps CKKS evaluates: affine maps and polynomials.

Every layer CKKS can evaluate is either affine (Dense, Conv, mean pooling, Flatten,
BatchNorm in test mode, Scale ...) or a polynomial (``fl.square``, ``PolyAct``). An affine
layer is not encoded by hand: it is *measured*. Applied to the zero input and to each unit
input in float64 it gives its bias and the columns of its matrix, whatever the layer is, so
several convolutions in a row, pooling and dense layers all become one kind of step.
Consecutive affine steps are multiplied into one (BatchNorm folds into the layer before it;
a convolution followed by pooling is one step): each affine step costs one level.

>>> import numpy as np, fluxml as fl
>>> from fluxml.crypto.lower import lower
>>> steps = lower(fl.Chain(fl.Dense(4, 3), fl.square, fl.Dense(3, 2)), (4,))
>>> [type(s).__name__ for s in steps]
['Affine', 'Poly', 'Affine']
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fluxml.layers.basic import Chain, identity
from fluxml.layers.module import Module, modules, testmode
from fluxml.layers.normalise import BatchNorm, InstanceNorm
from fluxml.layers.polynomial import PolyAct, square
from fluxml.layers.precision import f64
from fluxml.layers.show import line_of, name_of
from fluxml.tree import leaves


@dataclass
class Affine:
    """``y = matrix @ x + bias`` on flattened features; ``source`` names the layers."""

    matrix: np.ndarray  # (out_features, in_features), float64
    bias: np.ndarray  # (out_features,)
    out_shape: tuple
    source: str

    depth = 1


@dataclass
class Poly:
    """``y = sum(coeffs[k] * x**k)`` elementwise (ascending coefficients)."""

    coeffs: np.ndarray
    source: str

    @property
    def depth(self) -> int:
        return poly_depth(self.coeffs)


def poly_depth(coeffs) -> int:
    """Levels a polynomial costs: x**2 alone costs one; degree d otherwise costs
    ceil(log2(d)) for the powers plus one for the coefficients."""
    coeffs = np.asarray(coeffs, dtype=np.float64)
    degree = int(np.max(np.nonzero(coeffs)[0])) if coeffs.any() else 0
    if degree == 2 and coeffs[0] == 0 and coeffs[1] == 0 and coeffs[2] == 1:
        return 1
    return 0 if degree == 0 else math.ceil(math.log2(degree)) + 1


class UnsupportedLayer(TypeError):
    """The model has a layer CKKS cannot evaluate."""


# What to use instead of what CKKS cannot evaluate.
SUBSTITUTES = {
    "relu": "fl.PolyAct(2, fit=\"relu\") or fl.square", "gelu": "fl.PolyAct(2, fit=\"gelu\")",
    "sigmoid": "fl.PolyAct(3) fitted to it, or leave it to the client",
    "tanh": "fl.PolyAct(3)", "softmax": "argmax on the client (decrypt the logits first)",
    "logsoftmax": "argmax on the client (decrypt the logits first)",
    "MaxPool": "MeanPool", "AdaptiveMaxPool": "AdaptiveMeanPool",
    "GlobalMaxPool": "GlobalMeanPool",
    "LayerNorm": "BatchNorm (at inference an affine map of its running statistics), or "
                 "normalise on the client",
    "GroupNorm": "BatchNorm (at inference an affine map of its running statistics), or "
                 "normalise on the client",
    "MultiHeadAttention": "a model without attention (its softmax divides by a sum of "
                          "exponentials of the scores), or attention on the client",
}


def lower(model, input_shape: tuple) -> list:
    """The steps of ``model`` for one input of ``input_shape`` (no batch dimension), as
    ``model(x)`` computes them outside a gradient: train/test layers in automatic mode
    (``active=None``, the default) run in test mode. A layer set to training mode
    (``fl.trainmode``) is refused, not switched: it tells ``model(x)`` to use each batch's
    statistics (BatchNorm) or to drop at random (Dropout) even at inference, as
    ``trainmode!`` does in Flux and ``model.train()`` in PyTorch, and a plan that ran it in
    test mode would silently compute another function than the model does."""
    for where, layer in _sequence(model, "model"):
        _refuse_training_mode(where, layer)
    model = testmode(f64(model))
    steps: list = []
    shape = tuple(input_shape)
    for where, layer in _sequence(model, "model"):
        kind = _activation_kind(layer)
        if kind is not None:
            steps.append(_poly(kind, f"{where}: {line_of(layer)}"))
            continue
        act = getattr(layer, "activation", None)
        if isinstance(layer, Module) and act is not None and act is not identity:
            kind = _activation_kind(act)
            if kind is None:
                raise UnsupportedLayer(_refusal(f"{where}: {line_of(layer)}", act))
            inner = _without_activation(layer)
            step = _measure(inner, shape, f"{where}: {line_of(layer)}")
            _refuse_activation_not_last(layer, step, kind, shape, f"{where}: {line_of(layer)}")
            steps.append(step)
            steps.append(_poly(kind, f"{where}: {name_of(act)}"))
            shape = step.out_shape
            continue
        name = type(layer).__name__
        if name in SUBSTITUTES or name_of(layer) in SUBSTITUTES:
            raise UnsupportedLayer(_refusal(where, layer))
        step = _measure(layer, shape, f"{where}: {line_of(layer)}")
        steps.append(step)
        shape = step.out_shape
    return _fuse(steps)


def _sequence(model, where):
    """The layers of nested Chains in order, each with where it sits."""
    if isinstance(model, Chain):
        items = model.layers.items() if isinstance(model.layers, dict) else \
            enumerate(model.layers)
        for key, layer in items:
            yield from _sequence(layer, f"{where}[{key!r}]" if isinstance(key, str)
                                 else f"{where}[{key}]")
    else:
        yield where, model


def _refuse_training_mode(where, layer) -> None:
    for m in modules(layer):
        if getattr(m, "active", None) is True:
            inside = "" if m is layer else f" (inside {type(layer).__name__})"
            raise UnsupportedLayer(
                f"{where}: {line_of(m)}{inside} is set to training mode (active=True, as "
                f"fl.trainmode sets it), where it computes from each batch (BatchNorm's batch "
                f"statistics) or at random (Dropout), which an encrypted plan cannot follow; "
                f"encrypted inference computes the model in test mode: call fl.testmode(model) "
                f"(or fl.trainmode(model, None), automatic) before fl.crypto.compile")


def _activation_kind(f):
    """Ascending coefficients if ``f`` is a polynomial activation, else None."""
    if f is square or f is np.square:
        return np.array([0.0, 0.0, 1.0])
    if isinstance(f, PolyAct):
        return np.asarray(f.coeffs, dtype=np.float64)
    return None


def _poly(coeffs, source) -> Poly:
    """A polynomial step, its coefficients finite: a PolyAct with a NaN coefficient (a
    training that diverged) made a plan, and every result decrypted as garbage, silently."""
    if not np.all(np.isfinite(coeffs)):
        raise ValueError(f"{source} has coefficients that are not finite "
                         f"({np.asarray(coeffs).tolist()}): a polynomial with NaN or infinity "
                         f"computes nothing; retrain it")
    return Poly(coeffs, source)


def _refusal(where, f) -> str:
    name = name_of(f) if not isinstance(f, Module) else type(f).__name__
    use = SUBSTITUTES.get(name, "a polynomial activation (fl.square, fl.PolyAct)")
    return (f"{where} uses {name}, which CKKS cannot evaluate on encrypted data (it computes "
            f"only additions and multiplications); use {use} instead, and retrain")


def _own_statistics(source, layer) -> str | None:
    """Why a BatchNorm or InstanceNorm without running statistics is refused (not its
    activation: it normalises with statistics of its input even at inference), and what to
    build instead."""
    if not isinstance(layer, (BatchNorm, InstanceNorm)) or layer.running_mean is not None:
        return None
    whose = "each batch" if isinstance(layer, BatchNorm) else "each input"
    return (f"{source} keeps no running statistics (track_stats=False), so even at inference "
            f"it normalises with the mean and variance of {whose}: a division by a computed "
            f"standard deviation, which CKKS cannot evaluate on encrypted data (it computes "
            f"only additions and multiplications); build it with track_stats=True and train "
            f"the model: at inference it then normalises with its running statistics, an "
            f"affine map folded into the layer before it")


def _why_not(source, layer, otherwise: str) -> str:
    """Why ``layer`` (at ``source``), measured as not affine or not evaluable, is refused: a
    norm without statistics, a polynomial inside a container, else ``otherwise``."""
    return _own_statistics(source, layer) or _inner_polynomial(source, layer) or otherwise


def _inner_polynomial(source, layer) -> str | None:
    """Why a container holding a polynomial activation (a SkipConnection or Parallel whose
    branch squares) is refused: a plan follows the layers of Chains in order, and evaluates
    any other layer only where it is affine as a whole (the advice to use fl.square, where
    it was used, sent the user the wrong way)."""
    for m in modules(layer):
        # a layer that is one, a layer's activation field, a function among a Chain's layers
        inside = [m, getattr(m, "activation", None)] if m is not layer else []
        if isinstance(m, Chain):
            inside += list(m.layers.values() if isinstance(m.layers, dict) else m.layers)
        poly = next((f for f in inside if _activation_kind(f) is not None), None)
        if poly is not None:
            where = "" if isinstance(m, Chain) else f", in {line_of(m)}"
            return (f"{source} holds a polynomial ({name_of(poly)}{where}) inside a "
                    f"{type(layer).__name__}: an encrypted plan follows the layers of Chains "
                    f"in order and evaluates any other layer only where it is affine as a "
                    f"whole; move the polynomial out of the {type(layer).__name__}, into the "
                    f"Chain after it")
    return None


def _refuse_activation_not_last(layer, step, coeffs, shape, source) -> None:
    """Refuse a layer whose ``activation`` field is not applied to its output last (a
    user's residual block computing ``x + activation(dense(x))``): the plan computes
    ``activation(layer without it (x))``, which would be another function, silently.
    Checked on random inputs against the layer as it is."""
    rng = np.random.default_rng(1)
    scales = np.array([0.1, 1.0, 3.0, 10.0]).reshape((-1,) + (1,) * len(shape))
    u = rng.normal(size=(len(scales),) + tuple(shape)) * scales
    with np.errstate(all="ignore"):
        got = np.asarray(layer(u), dtype=np.float64).reshape(len(u), -1)
        want = np.polynomial.polynomial.polyval(u.reshape(len(u), -1) @ step.matrix.T
                                                + step.bias, coeffs)
    if got.shape != want.shape or not np.allclose(got, want, rtol=1e-7,
                                                  atol=1e-9 * max(1.0, np.abs(want).max())):
        raise UnsupportedLayer(
            f"{source} has a polynomial activation field, but does not apply it to its output "
            f"last (its output is not activation(the layer without it)): an encrypted plan "
            f"evaluates such a layer as the affine part then the polynomial. Put the "
            f"polynomial in a Chain as a layer of its own where it acts")


def _without_activation(layer):
    clone = object.__new__(type(layer))
    clone.__dict__.update(vars(layer))
    clone.activation = identity
    return clone


# Sizes of the random inputs an affine layer is checked at: a layer linear near the unit
# basis only (hardtanh, hardsigmoid, trelu, a clip, a dead zone near 0) is not affine, and
# CKKS holds values up to about 2**19 (params.INTEGER_BITS).
CHECK_SCALES = (1e-3, 1.0, 30.0, 1e3, 3e4, 1e6)


def _measure(layer, shape, source) -> Affine:
    """The matrix and bias of an affine ``layer`` on inputs of ``shape``."""
    n = math.prod(shape)
    try:
        zero = np.asarray(layer(np.zeros((1,) + shape)))
        basis = np.asarray(layer(np.eye(n).reshape((n,) + shape)))
    except Exception as err:
        raise UnsupportedLayer(_why_not(source, layer, f"{source} could not be evaluated on "
                                        f"inputs of shape {shape}: {err}")) from err
    if not (np.all(np.isfinite(zero)) and np.all(np.isfinite(basis))):  # not affine: why
        if any(getattr(a, "dtype", np.dtype(int)).kind in "fc" and not np.all(np.isfinite(a))
               for a in leaves(layer)):  # (it said 'uses Dense, which CKKS cannot evaluate')
            raise ValueError(f"{source} has parameters that are not finite (NaN or infinity: "
                             f"a training that diverged?), and gives NaN or infinity on "
                             f"finite inputs; check them with np.isfinite")
        raise UnsupportedLayer(_why_not(source, layer, _refusal(source, layer)))
    out_shape = zero.shape[1:]
    bias = zero.reshape(-1)
    matrix = (basis.reshape(n, -1) - bias).T
    if not _is_affine(layer, shape, matrix, bias):
        raise UnsupportedLayer(_why_not(source, layer, _refusal(source, layer)))
    matrix[np.abs(matrix) < 1e-14 * max(float(np.abs(matrix).max()), 1e-300)] = 0.0
    return Affine(matrix, bias, tuple(out_shape), source)


def _is_affine(layer, shape, matrix, bias) -> bool:
    """Whether ``layer`` computes ``matrix @ x + bias`` on random inputs of every size in
    ``CHECK_SCALES`` (measured at 0 and the unit inputs alone, hardtanh was the identity)."""
    rng = np.random.default_rng(0)
    scales = np.repeat(CHECK_SCALES, 2).reshape((-1,) + (1,) * len(shape))
    u = rng.normal(size=(len(scales),) + shape) * scales
    try:
        with np.errstate(all="ignore"):  # (a layer that is not affine may overflow here)
            mixed = np.asarray(layer(u), dtype=np.float64).reshape(len(u), -1)
    except Exception:  # noqa: BLE001 - it ran at 0 and the unit inputs: not affine there
        return False
    flat = u.reshape(len(u), -1)
    predicted = flat @ matrix.T + bias
    # rounding grows with the terms summed, not with the sum (which may cancel)
    size = np.abs(flat) @ np.abs(matrix).T + np.abs(bias)
    return bool(np.all(np.abs(mixed - predicted) <= 1e-7 * np.abs(predicted) + 1e-9 * size +
                       1e-12))


def _fuse(steps):
    """Multiply consecutive affine steps into one (one level instead of several)."""
    fused: list = []
    for step in steps:
        prev = fused[-1] if fused else None
        if isinstance(step, Affine) and isinstance(prev, Affine):
            fused[-1] = Affine(step.matrix @ prev.matrix, step.matrix @ prev.bias + step.bias,
                               step.out_shape, f"{prev.source} + {step.source}")
        else:
            fused.append(step)
    return fused
