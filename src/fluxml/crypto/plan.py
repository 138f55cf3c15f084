"""``fl.crypto.compile``: a trained model as a plan that runs on CKKS ciphertexts.

>>> import numpy as np, fluxml as fl
>>> model = fl.Chain(fl.Dense(4, 3, fl.square), fl.Dense(3, 2))
>>> plan = fl.crypto.compile(model, (4,))
>>> plan.depth, plan.params.poly_modulus_degree, plan.params.scale_bits
(3, 8192, 35)
>>> keys = plan.keygen()                              # client
>>> x = np.random.default_rng(0).normal(size=(5, 4))
>>> ct = keys.encrypt(x)
>>> out = plan.run(ct)                                # server: never sees the secret key
>>> bool(np.allclose(keys.decrypt(out), model(x.astype(np.float32)), atol=1e-2))
True
"""

from __future__ import annotations

import json
import math
import zipfile

import numpy as np

from fluxml._checks import function, is_int, positive_int, shown
from fluxml.crypto.evaluate import Enc, Scales, dot, packed_first, run_step, target
from fluxml.crypto.keys import (
    CryptoError,
    EncryptedTensor,
    Keys,
    _pack,
    _unpack,
    load_arrays,
    packing_id,
    save_arrays,
)
from fluxml.crypto.lower import Affine, Poly, lower
from fluxml.crypto.params import MAX_BITS_128, CKKSParams, choose

_MAGIC_PLAN = b"FLXPLAN1"


class Plan:
    """The steps of a model under CKKS, its depth and its encryption parameters.

    ``keygen()`` makes the client's keys; ``run(ct)`` evaluates the model on an encrypted
    batch (on the server); ``report(x, keys)`` compares decrypted and plain values step by
    step; ``serialize()`` / ``Plan.load`` move the plan to the server."""

    def __init__(self, steps: list, input_shape: tuple, params: CKKSParams):
        self.steps = steps
        self.input_shape = tuple(input_shape)
        self.params = params

    @property
    def depth(self) -> int:
        return sum(step.depth for step in self.steps)

    @property
    def output_shape(self) -> tuple:
        shape = self.input_shape
        for step in self.steps:
            if isinstance(step, Affine):
                shape = step.out_shape
        return shape

    def keygen(self) -> Keys:
        """Fresh keys for this plan's parameters (on the client), with the sparsity pattern
        of its first affine step for the packed layout (no weights)."""
        try:
            packing = packing_of(self)
        except CryptoError:
            packing = None
        prefer = packing is not None and _packed_cost(self) < _batch_cost(self)
        return Keys(self.params, self.input_shape, packing=packing, prefer_packed=prefer)

    def run(self, ct: EncryptedTensor) -> EncryptedTensor:
        """The model's output on the encrypted batch ``ct``, encrypted under the same keys."""
        if not isinstance(ct, EncryptedTensor):
            raise TypeError(f"Plan.run expects an EncryptedTensor; got {type(ct).__name__}")
        if ct.shape != self.input_shape:
            raise CryptoError(f"this plan takes encrypted inputs of shape {self.input_shape}; "
                              f"got {ct.shape}")
        # each level is one modulus of the chain; a ciphertext keeps the ones left plus q0
        levels = min(v.ciphertext()[0].coeff_modulus_size() for v in ct.vectors) - 1
        if levels < self.depth:
            raise CryptoError(f"this ciphertext has {levels} multiplicative levels left and the "
                              f"plan needs {self.depth}: encrypt it with keys made by this "
                              f"plan's keygen() (a plan's result is not an input: decrypt it "
                              f"and encrypt again)")
        if ct.layout == "packed":
            return self._run_packed(ct)
        if ct.layout != "batch":
            raise CryptoError(f"Plan.run takes inputs in the batch or packed layout; got "
                              f"{ct.layout!r}")
        scales = Scales(ct.vectors[0], self.depth)
        items = [Enc(v) for v in ct.vectors]
        for step, after in zip(self.steps, self.steps[1:] + [None]):
            items = run_step(step, items, scales, after)
        return EncryptedTensor([it.ct for it in items], self.output_shape, ct.batch, ct.key_id,
                               ct.single, factors=_factors(items))

    def _run_packed(self, ct: EncryptedTensor) -> EncryptedTensor:
        """One input packed for the first affine step: K products by plain vectors, then one
        ciphertext holds every feature until the next affine step's ``dot`` per output
        (rotations) leaves one ciphertext per feature (the batch layout, one input)."""
        first, pattern = self.steps[0], packing_of(self)
        if len(ct.vectors) != len(pattern) or ct.vectors[0].size() != pattern.shape[1]:
            raise CryptoError(f"this packed input has {len(ct.vectors)} ciphertexts of "
                              f"{ct.vectors[0].size()} values; the plan's first step packs "
                              f"{len(pattern)} of {pattern.shape[1]}: encrypt it with keys "
                              f"made by this plan")
        if ct.packing != packing_id(pattern):
            raise CryptoError("this packed input was packed for another plan's first step (its "
                              "weights sit elsewhere): encrypt it with keys made by this plan's "
                              "keygen(), or use layout='batch'")
        if not ct.vectors[0].context().has_galois_keys():
            raise CryptoError("the packed layout needs Galois keys and this context has none: "
                              "send keys.public_context() made after keys.encrypt(x, "
                              "layout='packed')")
        scales = Scales(ct.vectors[0], self.depth)
        after = self.steps[1:] + [None]
        items = [packed_first(first, [Enc(v) for v in ct.vectors], pattern, scales,
                              target(after[0], scales))]
        layout = "vector"
        for step, following in zip(self.steps[1:], after[1:]):
            if isinstance(step, Affine) and layout == "vector":
                wanted = target(following, scales)
                items = [dot(items[0], row, b, scales, wanted)
                         for row, b in zip(step.matrix, step.bias)]
                layout = "batch"
            else:
                items = run_step(step, items, scales, following)
        return EncryptedTensor([it.ct for it in items], self.output_shape, 1, ct.key_id,
                               ct.single, layout, factors=_factors(items))

    def plain(self, x) -> np.ndarray:
        """The plan's steps on plain float64 inputs ``(B, *input_shape)`` (its reference), or
        on one input of ``input_shape``."""
        x, single = self._inputs(x, "plain")
        out = self._plain_steps(x)[-1]
        return out[0] if single else out

    def _inputs(self, x, who):
        """``x`` as a float64 batch ``(B, *input_shape)``, and whether it was one input (a
        single (4,) input read as a batch of 4 failed in matmul)."""
        x = np.asarray(x)
        if x.dtype.kind not in "biuf":  # (strings were parsed, complex parts dropped)
            raise CryptoError(f"Plan.{who} expects real numbers; got an array of {x.dtype}")
        x = x.astype(np.float64, copy=False)
        single = x.shape == self.input_shape
        if not single and x.shape[1:] != self.input_shape:
            raise CryptoError(f"Plan.{who} expects inputs of shape (B, "
                              f"{', '.join(map(str, self.input_shape))}) or "
                              f"{self.input_shape}; got {x.shape}")
        return (x[None] if single else x), single

    def _plain_steps(self, x):
        values, h = [], x.reshape(len(x), math.prod(self.input_shape))  # (-1: not for B 0)
        for step in self.steps:
            if isinstance(step, Affine):
                h = h @ step.matrix.T + step.bias
            else:
                h = np.polynomial.polynomial.polyval(h, step.coeffs)
            values.append(h)
        values[-1] = values[-1].reshape((len(x),) + self.output_shape)
        return values

    def report(self, x, keys: Keys) -> str:
        """Plain against decrypted values after every step (needs the secret key)."""
        if not isinstance(keys, Keys):  # (a PublicContext: AttributeError 'encrypt')
            raise TypeError(f"Plan.report needs the client's keys (plan.keygen()), which "
                            f"decrypt every step; got {shown(keys)}")
        x, _ = self._inputs(x, "report")
        plain = self._plain_steps(x)
        ct = keys.encrypt(x, layout="batch")  # (one input may prefer "packed": not step by step)
        scales = Scales(ct.vectors[0], self.depth)
        items, rows = [Enc(v) for v in ct.vectors], []
        for step, after, expected in zip(self.steps, self.steps[1:] + [None], plain):
            items = run_step(step, items, scales, after)
            # (before a square the values carry a factor, which the square takes out)
            got = np.array([np.array(it.ct.decrypt()[:len(x)]) / it.factor for it in items]).T
            err = float(np.abs(got - expected.reshape(len(x), -1)).max())
            rows.append(f"{step.source:<60} {_kind(step):<14} max error {err:.2e}")
        return "\n".join(rows)

    def serialize(self) -> bytes:
        """The plan as bytes (JSON and .npz; no pickle)."""
        arrays, meta = {}, []
        for i, step in enumerate(self.steps):
            if isinstance(step, Affine):
                arrays[f"m{i}"], arrays[f"b{i}"] = step.matrix, step.bias
                meta.append({"kind": "affine", "out_shape": list(step.out_shape),
                             "source": step.source})
            else:
                arrays[f"c{i}"] = step.coeffs
                meta.append({"kind": "poly", "source": step.source})
        header = {"input_shape": list(self.input_shape), "params": list(self.params),
                  "steps": meta}
        return _pack(_MAGIC_PLAN, header, [save_arrays(arrays)])

    @classmethod
    def load(cls, data: bytes) -> Plan:
        header, (blob,) = _unpack(data, _MAGIC_PLAN, "plan", ("input_shape", "params", "steps"))
        try:  # (a damaged plan failed with a KeyError, a BadZipFile ... from the reading code)
            arrays, steps = load_arrays(blob), []
            for i, m in enumerate(header["steps"]):
                if m["kind"] == "affine":
                    steps.append(Affine(arrays[f"m{i}"], arrays[f"b{i}"],
                                        tuple(m["out_shape"]), m["source"]))
                else:
                    steps.append(Poly(arrays[f"c{i}"], m["source"]))
            plan = cls(steps, tuple(header["input_shape"]), CKKSParams(*header["params"]))
        except (KeyError, TypeError, ValueError, OSError, zipfile.BadZipFile) as err:
            raise CryptoError(f"the plan's steps are damaged: {type(err).__name__}: "
                              f"{err}") from None
        _check_steps(plan)
        return plan

    def __repr__(self) -> str:
        p = self.params
        lines = [f"Plan(input {self.input_shape} -> output {self.output_shape})"]
        for step in self.steps:
            lines.append(f"  {step.source:<58} {_kind(step):<18} depth {step.depth}")
        lines.append(f"  depth {self.depth}; CKKS degree {p.poly_modulus_degree} "
                     f"({p.slots} inputs per ciphertext), coefficient moduli "
                     f"{json.dumps(p.coeff_mod_bit_sizes)} bits, scale 2^{p.scale_bits}, "
                     f"128-bit security; results below 2^{_range_bits(p)} in size (a larger "
                     f"one decrypts wrapped around); encryption error about "
                     f"{_expected_error(p):.0e} per value "
                     f"(plan.report(x, keys) measures every step)")
        return "\n".join(lines)


def _factors(items: list):
    """The factors the results' decrypted values carry (None: all 1), which decrypt divides
    out: a plan ending in squares keeps the factor of their rescaling (evaluate.py)."""
    factors = [float(it.factor) for it in items]
    return None if all(f == 1.0 for f in factors) else factors


def _check_steps(plan: Plan) -> None:
    """A CryptoError where a loaded plan's steps do not chain: an affine step whose matrix
    takes fewer features than come would drop the others, silently."""
    features = math.prod(plan.input_shape)
    for i, step in enumerate(plan.steps):
        if isinstance(step, Affine):
            m, b = step.matrix, step.bias
            fits = (m.ndim == 2 and m.shape[1] == features and b.shape == (m.shape[0],) and
                    math.prod(step.out_shape) == m.shape[0])
        else:
            fits = step.coeffs.ndim == 1 and step.coeffs.size >= 1
        arrays = (step.matrix, step.bias) if isinstance(step, Affine) else (step.coeffs,)
        if not fits or any(a.dtype.kind not in "iuf" for a in arrays):
            raise CryptoError(f"the plan is damaged: its step {i} ({step.source}) does not fit "
                              f"{features} input features")
        if isinstance(step, Affine):
            features = step.matrix.shape[0]


def _kind(step) -> str:
    if isinstance(step, Affine):
        nnz = int(np.count_nonzero(step.matrix))
        return f"affine {step.matrix.shape[1]}->{step.matrix.shape[0]} ({nnz} products)"
    return f"polynomial deg {len(step.coeffs) - 1}"


def _range_bits(p: CKKSParams) -> int:
    # the first modulus holds value * scale, centred: |value| < 2**(bits - scale_bits - 1)
    return p.coeff_mod_bit_sizes[0] - p.scale_bits - 1


def _expected_error(p: CKKSParams) -> float:
    # A fresh CKKS ciphertext carries noise of about N * sigma (sigma = 3.2, SEAL's error
    # distribution) in units of the scale; weights and squares amplify it later.
    return p.poly_modulus_degree * 3.2 * 2.0 ** -p.scale_bits


def packing_of(plan: Plan) -> np.ndarray:
    """The packed layout's pattern: ``(K, O)`` input indices, ciphertext k's slot o holding
    the input that the k-th nonzero weight of the first affine step's row o multiplies (-1
    where row o has fewer). Public: it says where the weights are, not what they are."""
    first = plan.steps[0] if plan.steps else None
    if not isinstance(first, Affine):
        raise CryptoError("the packed layout needs a plan that starts with an affine step; "
                          "this one starts with a polynomial: use layout='batch'")
    out, slots = first.matrix.shape[0], plan.params.slots
    if out > slots:
        raise CryptoError(f"the packed layout holds the first affine step's {out} outputs in "
                          f"one ciphertext of {slots} slots; they do not fit: use "
                          f"layout='batch'")
    nonzero = first.matrix != 0
    k = max(int(nonzero.sum(axis=1).max()), 1)
    pattern = np.full((k, out), -1, dtype=np.int64)
    for o in range(out):
        cols = np.flatnonzero(nonzero[o])
        pattern[:len(cols), o] = cols
    return pattern


# Cost estimates in units of one product of a ciphertext by plain numbers. Measured with
# TenSEAL at degree 8192 (digits model, loaded 2-core machine): a product by a scalar about
# 4 ms, by a vector about 6 ms, a dot (product, then log2(slots) rotations) about 42 ms; a
# polynomial costs about its depth in products.
_DOT_COST = 10.0


def _batch_cost(plan: Plan) -> float:
    cost, features = 0.0, int(np.prod(plan.input_shape))
    for step in plan.steps:
        if isinstance(step, Affine):
            cost += np.count_nonzero(step.matrix)
            features = step.matrix.shape[0]
        else:
            cost += step.depth * features
    return cost


def _packed_cost(plan: Plan) -> float:
    first = plan.steps[0]
    cost = float(np.count_nonzero(first.matrix, axis=1).max())
    whole, features = True, first.matrix.shape[0]
    for step in plan.steps[1:]:
        if isinstance(step, Affine):
            cost += step.matrix.shape[0] * _DOT_COST if whole else np.count_nonzero(step.matrix)
            whole, features = False, step.matrix.shape[0]
        else:
            cost += step.depth * (1 if whole else features)
    return cost


def compile(model, input_shape: tuple, precision_bits: int | None = None,
            batch: int = 1) -> Plan:
    """Check ``model`` for CKKS, count its depth and choose 128-bit-secure parameters.

    ``input_shape`` is one input's shape (no batch dimension); ``batch`` the most inputs to
    encrypt together (the parameters give at least that many slots); ``precision_bits`` the
    CKKS scale (default: the most the smallest sufficient polynomial degree allows)."""
    who = "fl.crypto.compile"
    function(who, "model", model)  # (else 'could not be evaluated': 'str' is not callable)
    if isinstance(input_shape, np.ndarray) and input_shape.ndim == 1:  # (as NumPy's shapes)
        input_shape = input_shape.tolist()
    if not (isinstance(input_shape, (tuple, list)) and all(is_int(n) and n > 0
                                                           for n in input_shape)):
        raise ValueError(f"{who}: input_shape must be a tuple of positive ints (one input's "
                         f"shape, without the batch axis); got {shown(input_shape)}")
    input_shape = tuple(int(n) for n in input_shape)
    batch = positive_int(who, "batch (the most inputs encrypted together)", batch)
    most = max(MAX_BITS_128) // 2
    if batch > most:  # (choose said the model needed too much depth)
        raise ValueError(f"{who}: batch must be at most {most}, the slots of one ciphertext "
                         f"at the largest 128-bit-secure degree {max(MAX_BITS_128)}; got "
                         f"{batch}: encrypt a larger batch in parts")
    if precision_bits is not None and not is_int(precision_bits):  # (30.5 made the moduli
        raise ValueError(f"{who}: precision_bits must be an int or None; got "  # 50.5 bits)
                         f"{shown(precision_bits)}")
    precision_bits = None if precision_bits is None else int(precision_bits)  # (JSON: no int64)
    steps = lower(model, input_shape)
    depth = sum(step.depth for step in steps)
    try:
        params = choose(depth, precision_bits, min_slots=batch)
    except ValueError as err:
        if type(err) is not ValueError:  # (a DepthError says what it says)
            raise
        raise ValueError(f"{who}: {err}") from None  # precision_bits out of range
    return Plan(steps, input_shape, params)
