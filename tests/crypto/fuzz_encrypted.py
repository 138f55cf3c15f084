"""Random models run on CKKS ciphertexts: decrypted ``plan.run`` must match the model in plain
float64, within an error bound propagated from CKKS's noise, or be refused by name.

Each case builds a random model of the layers ``fl.crypto`` takes (Dense, Conv, CrossCor,
DepthwiseConv, ConvTranspose with strides, padding, dilation, groups, with and without bias;
mean pooling of every kind, BatchNorm with running statistics, Scale, Upsample,
PixelShuffle, Flatten, affine SkipConnection and Parallel, AlphaDropout, nested and named
Chains) with polynomial activations (``fl.square``, ``np.square``, ``PolyAct`` of degree 1
to 4 with random coefficients) standalone or as a layer's ``activation``; compiles it;
checks the plan's plain steps against the model (the lowering is exact); encrypts a random
batch (sizes 1 to the slot count, the batch or packed layout, sometimes through bytes) and
compares the decrypted answer with the model. The bound: CKKS adds noise of about
``N * 3.2 / 2**scale`` (the plan's repr) at encryption and at each rescale, plus a relative
error of the rescaling primes' distance from ``2**scale`` (TenSEAL resets the scale), which
each affine step multiplies by its rows' absolute sums and a polynomial by its derivative's
size; a result must stay within ``SLACK`` times that. Values beyond the range the parameters hold
(``plan.params``) are not compared (CKKS cannot see them; see README).

The short run is ``tests/crypto/test_fuzz_encrypted.py``; the long one:

    PYTHONPATH=src python -m tests.crypto.fuzz_encrypted 200 [seed]
"""

from __future__ import annotations

import sys

import numpy as np

import fluxml as fl
from fluxml.crypto.lower import Affine

SLACK = 10.0  # how far above the propagated noise estimate an error may go
MAX_PRODUCTS = 600  # keeps a case under a few seconds (one product ~2 ms at degree 8192)


def _poly(rng):
    """A polynomial activation: square, np.square, or a PolyAct with random coefficients."""
    kind = rng.integers(0, 4)
    if kind == 0:
        return fl.square, "square"
    if kind == 1:
        return np.square, "np.square"
    act = fl.PolyAct(int(rng.integers(1, 5)), fit=("relu", "gelu")[rng.integers(0, 2)])
    act.coeffs[:] = rng.uniform(-1, 1, size=act.coeffs.shape) / (1 + np.arange(act.degree + 1))
    if rng.integers(0, 5) == 0:  # some coefficients exactly zero (at times all but c[0])
        act.coeffs[1:] *= rng.integers(0, 2, size=act.degree)
    return act, f"PolyAct({act.degree})"


def _image_layer(rng, shape):
    """A random affine layer for input ``(C, H, W)``, its output shape, its description."""
    c, h, w = shape
    r = lambda lo, hi: int(rng.integers(lo, hi + 1))  # noqa: E731
    kind = rng.integers(0, 13)
    bias = bool(rng.integers(0, 2))
    if kind <= 2:  # Conv / CrossCor with every option
        k = (r(1, min(3, h)), r(1, min(3, w)))
        stride, pad, dil = r(1, 2), r(0, 1), r(1, 2) if min(h, w) >= 5 else 1
        groups = c if c > 1 and rng.integers(0, 3) == 0 else 1
        out = groups * r(1, 2)
        cls = (fl.Conv, fl.CrossCor, fl.Conv)[kind]
        extra = {"flipped": True} if kind == 2 else {}
        layer = cls(k, c, out, stride=stride, pad=pad, dilation=dil, groups=groups, bias=bias,
                    rng=rng, **extra)
    elif kind == 3:
        layer = fl.DepthwiseConv((r(1, min(3, h)), r(1, min(3, w))), c, c * r(1, 2),
                                 pad=r(0, 1), bias=bias, rng=rng)
    elif kind == 4:
        stride = r(1, 2)
        layer = fl.ConvTranspose((r(1, 2), r(1, 2)), c, r(1, 2), stride=stride, pad=r(0, 1),
                                 outpad=r(0, stride - 1), bias=bias, rng=rng)
    elif kind == 5:
        k = r(1, min(2, h, w))
        layer = fl.MeanPool((k, k), stride=r(1, 2), pad=r(0, k - 1))
    elif kind == 6:
        layer = fl.AdaptiveMeanPool((r(1, h), r(1, w)))
    elif kind == 7:
        layer = fl.GlobalMeanPool()
    elif kind == 8:
        layer = fl.BatchNorm(c, affine=bool(rng.integers(0, 2)), eps=float(rng.uniform(1e-5, .1)),
                             rng=rng)
        layer.running_mean[:] = rng.normal(size=c)
        layer.running_var[:] = rng.uniform(0.3, 3.0, size=c)
        if layer.weight is not None:
            layer.weight[:] = rng.uniform(0.5, 1.5, size=c)
            layer.bias[:] = rng.normal(size=c)
    elif kind == 9:
        layer = fl.Scale(c, 1, 1, bias=bias, init=lambda s, g: rng.uniform(0.5, 1.5, size=s))
    elif kind == 10 and h * w <= 16:
        layer = fl.Upsample(("nearest", "bilinear")[rng.integers(0, 2)], scale=2)
    elif kind == 11 and c % 4 == 0:
        layer = fl.PixelShuffle(2)
    else:
        layer = (fl.AlphaDropout(0.3), fl.identity)[rng.integers(0, 2)]
    if layer is fl.identity:
        return layer, shape
    try:
        out = fl.outputsize(layer, (1,) + shape)[1:]
    except fl.LayerError:  # the random settings leave no output (a padded 1x1 input)
        return fl.identity, shape
    return layer, tuple(out)


def _vector_layer(rng, d):
    kind = rng.integers(0, 7)
    bias = bool(rng.integers(0, 2))
    if kind <= 2:
        out = int(rng.integers(1, 7))
        return fl.Dense(d, out, bias=bias, rng=rng), (out,)
    if kind == 3:
        return fl.Scale(d, bias=bias, init=lambda s, g: rng.uniform(0.5, 1.5, size=s)), (d,)
    if kind == 4:
        bn = fl.BatchNorm(d, rng=rng)
        bn.running_mean[:] = rng.normal(size=d)
        bn.running_var[:] = rng.uniform(0.3, 3.0, size=d)
        return bn, (d,)
    if kind == 5:
        return fl.SkipConnection(fl.Dense(d, d, rng=rng), np.add), (d,)
    return fl.Parallel(np.add, fl.Dense(d, d, rng=rng), fl.Scale(d)), (d,)


def random_model(rng, blocks=None):
    """A random model of affine layers and polynomial activations, and its input shape."""
    if rng.integers(0, 2):
        shape = (int(rng.integers(1, 3)), int(rng.integers(3, 6)), int(rng.integers(3, 6)))
    else:
        shape = (int(rng.integers(2, 7)),)
    input_shape, layers = shape, []
    for _ in range(int(rng.integers(1, 4)) if blocks is None else blocks):
        for _ in range(int(rng.integers(1, 3))):
            if len(shape) == 3 and (rng.integers(0, 4) == 0 or np.prod(shape) > 40):
                layers.append(fl.Flatten())
                shape = (int(np.prod(shape)),)
            layer, shape = (_image_layer(rng, shape) if len(shape) == 3
                            else _vector_layer(rng, shape[0]))
            layers.append(layer)
        if rng.integers(0, 4):
            act, _ = _poly(rng)
            last = layers[-1]
            if getattr(last, "activation", None) is fl.identity and rng.integers(0, 2):
                last.activation = act  # fused: Dense(..., square)
            else:
                layers.append(act)
    if rng.integers(0, 3) == 0 and len(layers) > 1:  # nested and named Chains
        cut = int(rng.integers(1, len(layers)))
        model = fl.Chain(first=fl.Chain(*layers[:cut]), rest=fl.Chain(*layers[cut:]))
    else:
        model = fl.Chain(*layers)
    return model, input_shape


def noise_bound(plan, x) -> float:
    """The CKKS error expected at the output: fresh noise, amplified step by step (affine:
    the absolute row sums; polynomial: |p'| at the plain values), plus new noise at each
    rescale."""
    p = plan.params
    fresh = p.poly_modulus_degree * 3.2 * 2.0 ** -p.scale_bits
    # TenSEAL calls the scale 2**scale_bits after each rescale by a prime q (about a hundred
    # steps of 2N below it), which the plan takes out of its multipliers (crypto/evaluate.py);
    # it was 200 * 2N / 2**scale_bits relative per level before. What stays: rotations' and
    # the multipliers' rounding, a few 2N / 2**scale_bits
    rel = 2 * 2 * p.poly_modulus_degree * 2.0 ** -p.scale_bits
    h = x.reshape(len(x), -1)
    err = np.full(h.shape[1], fresh)
    for step in plan.steps:
        if isinstance(step, Affine):
            # each product's weight is encoded to within 1/scale; the input's size counts
            weight_err = np.abs(h).max() * 2.0 ** -p.scale_bits
            err = np.abs(step.matrix) @ (err + weight_err) + fresh
            h = h @ step.matrix.T + step.bias
            err = err + rel * np.abs(h).max(axis=0)
        else:
            deriv = np.polynomial.polynomial.polyder(step.coeffs)
            slope = np.abs(np.polynomial.polynomial.polyval(h, deriv)).max(axis=0)
            coeff_err = np.abs(h).max() ** np.arange(len(step.coeffs)) @ np.ones(
                len(step.coeffs)) * 2.0 ** -p.scale_bits
            err = slope * err + err ** 2 * np.abs(step.coeffs).sum() + coeff_err + fresh
            h = np.polynomial.polynomial.polyval(h, step.coeffs)
            err = err + rel * step.depth * np.abs(h).max(axis=0)
    return float(err.max())


def value_range(plan) -> float:
    """How large values the plan's parameters hold: the first modulus above the scale."""
    sizes = plan.params.coeff_mod_bit_sizes
    return 2.0 ** (sizes[0] - plan.params.scale_bits - 1)


def _products(plan) -> int:
    return sum(int(np.count_nonzero(s.matrix)) for s in plan.steps if isinstance(s, Affine))


def check(seed: int, blocks=None, layouts=("batch", "packed", None)):
    """None when case ``seed`` agrees (or is refused by name), else a message; also the
    case's description and what happened (for the counts)."""
    rng = np.random.default_rng(seed)
    fl.seed(seed)
    model, shape = random_model(rng, blocks)
    model = fl.f64(model)
    desc = f"seed {seed}: input {shape}, {model!r}".replace("\n", " ")
    try:
        plan = fl.crypto.compile(model, shape)
    except fl.crypto.DepthError as e:
        return None, desc, "refused: depth"  if "needs multiplicative depth" in str(e) else \
            f"unclear DepthError: {e}"
    if _products(plan) > MAX_PRODUCTS:
        return None, desc, "skipped: too many products"
    xs = rng.uniform(-1, 1, size=(5,) + shape)
    expected = model(xs)
    if expected.shape[1:] != plan.output_shape:
        return f"output shape {plan.output_shape}, model gives {expected.shape[1:]}", desc, ""
    lowered = plan.plain(xs)
    scale = max(1.0, float(np.abs(expected).max()))
    if not np.allclose(lowered, expected, rtol=1e-8, atol=1e-10 * scale):
        return (f"plan.plain differs from the model by "
                f"{np.abs(lowered - expected).max():.3g}"), desc, ""
    keys = plan.keygen()
    layout = layouts[rng.integers(0, len(layouts))]
    slots = plan.params.slots
    if layout == "packed" and (keys.packing is None or slots > 4096):
        layout = "batch"  # (Galois keys above degree 8192 take many seconds)
    if layout in ("packed", None) or rng.integers(0, 3) == 0:
        batch = 1
    else:
        batch = int((2, 7, slots - 1, slots)[rng.integers(0, 4)])
    x = rng.uniform(-1, 1, size=(batch,) + shape) * 10.0 ** rng.uniform(-1, 2)
    single = batch == 1 and rng.integers(0, 2)
    ct = keys.encrypt(x[0] if single else x, layout=layout)
    ctx = keys.public_context()
    through_bytes = bool(rng.integers(0, 2))
    server_plan = fl.crypto.Plan.load(plan.serialize()) if through_bytes else plan
    if through_bytes:
        ctx = fl.crypto.PublicContext.load(ctx.serialize())
        ct = fl.crypto.EncryptedTensor.load(ct.serialize(), ctx)
    out = server_plan.run(ct)
    if through_bytes:
        out = fl.crypto.EncryptedTensor.load(out.serialize(), keys)
    got = keys.decrypt(out)
    if single:
        got = got[None]
    plain = plan.plain(x)
    if got.shape != plain.shape:
        return f"decrypted shape {got.shape}, expected {plain.shape}", desc, ""
    largest = max(float(np.abs(h).max()) for h in plan._plain_steps(x))
    if largest >= value_range(plan):
        return None, desc, "skipped: values beyond the parameters' range"
    err = float(np.abs(got - plain).max())
    bound = SLACK * noise_bound(plan, x)
    what = f"{ct.layout} layout, batch {batch}, {plan.params}"
    if not err <= bound:
        return (f"error {err:.3g} above {bound:.3g} ({what}; largest value "
                f"{largest:.3g})"), desc, ""
    return None, desc, f"ok: {what}, error {err:.2g} (bound {bound:.2g})"


def main(argv):
    n = int(argv[0]) if argv else 100
    first = int(argv[1]) if len(argv) > 1 else 0
    failures, outcomes = 0, {}
    for seed in range(first, first + n):
        try:
            message, desc, outcome = check(seed)
        except Exception as e:  # noqa: BLE001 - a crash is a finding too
            message, desc, outcome = f"{type(e).__name__}: {e}", f"seed {seed}", ""
        key = outcome.split(":")[0] if outcome else "failed"
        outcomes[key] = outcomes.get(key, 0) + 1
        if message is not None:
            failures += 1
            print(f"[{seed}] {desc}\n    {message.splitlines()[0]}", flush=True)
    print(f"{n} models, {failures} failures; {outcomes}")
    return failures


if __name__ == "__main__":
    sys.exit(1 if main(sys.argv[1:]) else 0)
