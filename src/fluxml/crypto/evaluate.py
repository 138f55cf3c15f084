"""A plan's steps on TenSEAL ciphertexts, with the scale TenSEAL loses put back.

TenSEAL rescales after every product: it divides by the next prime ``q`` of the modulus chain
and calls the result's scale ``2**scale_bits`` again, though it is ``2**scale_bits / q`` of
that. Decrypted values came back that much off at every level, compounding (4.5e-05 relative
after three levels at 35 bits). Here each ciphertext carries its place in the chain (how many
primes its products dropped) and the factor its decrypted values carry, and the plain numbers
it is multiplied by take the factor out: the results carry the encryption noise only.

An affine step sets its outputs' factor to what the next step wants: 1, or before a square
``sqrt(q / 2**scale_bits)``, which the square's own rescale turns into 1. A square takes no
plain number to correct, so a plan that ends in squares ends with a factor: its result
carries it (``EncryptedTensor.factors``) and decrypting divides it out.
"""

from __future__ import annotations

import math

import numpy as np

from fluxml.crypto.keys import tenseal
from fluxml.crypto.lower import Affine
from fluxml.crypto.params import rescale_primes


class Enc:
    """A ciphertext, how many primes of the chain its products dropped (``pos``), and the
    factor its decrypted values carry."""

    __slots__ = ("ct", "pos", "factor")

    def __init__(self, ct, pos: int = 0, factor: float = 1.0):
        self.ct, self.pos, self.factor = ct, pos, factor


class Scales:
    """The factor a product takes at each place in the chain: ``2**bits / q``, ``q`` the prime
    its rescale drops (SEAL's primes, the largest of its chain first); 1 where the ciphertext's
    scale is not a power of two (not made by fluxml's keys: nothing is corrected)."""

    def __init__(self, vector, depth: int):
        ct = vector.ciphertext()[0]
        bits = math.log2(ct.scale) if ct.scale > 0 else 0.5
        self.gains = [1.0] * (depth + 1)
        if bits == int(bits) and depth > 0:
            primes = rescale_primes(ct.poly_modulus_degree(), int(bits), depth)
            self.gains = [ct.scale / q for q in primes] + [1.0]

    def gain(self, pos: int) -> float:
        return self.gains[min(pos, len(self.gains) - 1)]


def is_square(coeffs) -> bool:
    """``x**2`` alone (one level: a square, no product by a coefficient)."""
    c = np.trim_zeros(np.asarray(coeffs, dtype=np.float64), "b")
    return len(c) == 3 and c[2] == 1 and not c[:2].any()


def target(next_step, scales: Scales):
    """The factor an affine step's output at ``pos`` (primes dropped) should carry for
    ``next_step``: 1, or before a square (which drops the prime at ``pos``) one whose square
    times that prime's gain is 1."""
    if next_step is not None and not isinstance(next_step, Affine) and \
            is_square(next_step.coeffs):
        return lambda pos: 1.0 / math.sqrt(scales.gain(pos))
    return lambda pos: 1.0


def _divisor(it: Enc, scales: Scales) -> float:
    """What a plain factor multiplying ``it`` is divided by: the factor its values carry
    times the gain of the rescaling its product takes at its level."""
    return it.factor * scales.gain(it.pos)


def _squared(it: Enc, scales: Scales) -> Enc:
    """``it`` squared: one level down, its factor squared times that level's gain."""
    return Enc(it.ct.square(), it.pos + 1, it.factor**2 * scales.gain(it.pos))


def run_step(step, items: list, scales: Scales, next_step=None) -> list:
    """``step`` on ciphertexts in the batch layout (one per feature)."""
    if isinstance(step, Affine):
        return affine(step, items, scales, target(next_step, scales))
    coeffs = np.asarray(step.coeffs, dtype=np.float64)
    if is_square(coeffs):
        return [_squared(it, scales)
                for it in items]
    if not np.any(coeffs[1:]):  # a constant: encrypted afresh with the public key (no product:
        # a ciphertext at its last level takes none), at the top of the chain
        return [Enc(tenseal().ckks_vector(it.ct.context(), [float(coeffs[0])] * it.ct.size()))
                for it in items]
    return [polynomial(coeffs, it, scales) for it in items]


def affine(step: Affine, items: list, scales: Scales, wanted) -> list:
    """y_o = sum_i A[o, i] x_i + b_o: products by plain numbers, no rotations."""
    out = []
    for o in range(step.matrix.shape[0]):
        cols = np.flatnonzero(step.matrix[o])
        pos = max((items[i].pos for i in cols), default=items[0].pos) + 1
        t = wanted(pos)
        if len(cols) == 0:  # a constant output still needs a ciphertext at the right level
            acc = items[0].ct * 0.0
        else:
            acc = None
            for i in cols:
                it = items[i]
                w = float(step.matrix[o, i] * t / _divisor(it, scales))
                acc = it.ct * w if acc is None else acc.add_(it.ct * w)
        if step.bias[o] != 0.0:
            acc.add_(float(step.bias[o] * t))
        out.append(Enc(acc, pos, t))
    return out


def polynomial(coeffs, item: Enc, scales: Scales) -> Enc:
    """``sum_k c_k x**k``: the powers by squarings and products (x**k at depth ceil(log2 k)),
    each term times its coefficient over the power's factor (one level more)."""
    powers = {1: item}

    def power(k):
        if k not in powers:
            if k & (k - 1) == 0:
                a = power(k // 2)
                powers[k] = _squared(a, scales)
            else:
                a, b = power(1 << (k.bit_length() - 1)), power(k - (1 << (k.bit_length() - 1)))
                pos = max(a.pos, b.pos)
                powers[k] = Enc(a.ct * b.ct, pos + 1, a.factor * b.factor * scales.gain(pos))
        return powers[k]

    acc, pos = None, item.pos
    for k in np.flatnonzero(coeffs[1:]) + 1:
        a = power(int(k))
        term = a.ct * float(coeffs[k] / _divisor(a, scales))
        acc = term if acc is None else acc.add_(term)
        pos = max(pos, a.pos + 1)
    if coeffs[0] != 0.0:
        acc.add_(float(coeffs[0]))
    return Enc(acc, pos, 1.0)


def packed_first(step: Affine, items: list, pattern, scales: Scales, wanted) -> Enc:
    """The first affine step on one input packed for it: ciphertext k times the k-th weights
    of every row (a plain vector), summed; every output in the slots of one ciphertext."""
    rows = np.arange(pattern.shape[1])
    weights = np.where(pattern >= 0, step.matrix[rows, np.maximum(pattern, 0)], 0.0)
    t = wanted(1)
    acc = None
    for it, w in zip(items, weights):
        product = it.ct * (w * t / _divisor(it, scales)).tolist()
        acc = product if acc is None else acc.add_(product)
    return Enc(acc + (step.bias * t).tolist(), 1, t)


def dot(item: Enc, row, bias, scales: Scales, wanted) -> Enc:
    """One output of an affine step from the ciphertext holding every feature: one product
    by a plain vector and a sum over the slots (rotations); a size-one ciphertext."""
    t = wanted(item.pos + 1)
    out = item.ct.dot((row * t / _divisor(item, scales)).tolist())
    if bias != 0.0:
        out.add_(float(bias * t))
    return Enc(out, item.pos + 1, t)
