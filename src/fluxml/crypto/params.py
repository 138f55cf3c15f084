"""CKKS parameters for a multiplicative depth at 128-bit security.

A CKKS ciphertext has a chain of coefficient moduli; each multiplication by a non-integer
(a weight, or another ciphertext) consumes one modulus of ``scale_bits`` bits. The chain is
``[outer, scale_bits x depth, outer]``: the first and last moduli hold the integer part of the
values and the decryption noise. Its total size is capped, for each polynomial degree, by the
Homomorphic Encryption Standard's table for 128-bit security (the table Microsoft SEAL and so
TenSEAL enforce). A larger degree holds more levels and more slots but is slower.

>>> from fluxml.crypto.params import choose
>>> p = choose(depth=3, precision_bits=30)
>>> p.poly_modulus_degree, p.coeff_mod_bit_sizes
(8192, [50, 30, 30, 30, 50])
>>> choose(depth=3).coeff_mod_bit_sizes  # the most precision that degree 8192 holds
[55, 35, 35, 35, 55]
"""

from __future__ import annotations

from typing import NamedTuple

# Largest total coefficient-modulus size (bits) for 128-bit classical security, by degree.
MAX_BITS_128 = {1024: 27, 2048: 54, 4096: 109, 8192: 218, 16384: 438, 32768: 881}
INTEGER_BITS = 20  # bits of the first and last moduli above the scale: |values| < 2**19
MAX_MODULUS_BITS = 60  # SEAL's largest prime: the scale may use at most 60 - INTEGER_BITS


class CKKSParams(NamedTuple):
    """The CKKS encryption parameters a plan runs with."""

    poly_modulus_degree: int
    coeff_mod_bit_sizes: list
    scale_bits: int

    @property
    def slots(self) -> int:
        """How many numbers one ciphertext holds (half the polynomial degree)."""
        return self.poly_modulus_degree // 2

    @property
    def depth(self) -> int:
        """How many multiplications deep a computation under these parameters may go."""
        return len(self.coeff_mod_bit_sizes) - 2


class DepthError(ValueError):
    """No 128-bit-secure CKKS parameters hold the requested depth."""


MIN_SCALE_BITS, MAX_SCALE_BITS = 30, MAX_MODULUS_BITS - INTEGER_BITS


def choose(depth: int, precision_bits: int | None = None, min_slots: int = 1) -> CKKSParams:
    """The smallest polynomial degree whose 128-bit budget holds ``depth`` multiplications at
    a scale of ``precision_bits`` bits and at least ``min_slots`` slots. Without
    ``precision_bits``: the smallest degree that holds the depth at 30 bits, with the largest
    scale (up to 40 bits) that degree's budget allows. The first modulus holds the scale and
    ``INTEGER_BITS`` more, so that results up to 2**19 in size decrypt right (a larger one
    comes back wrapped around, with no error: CKKS cannot tell)."""
    if precision_bits is None:
        degree = choose(depth, MIN_SCALE_BITS, min_slots).poly_modulus_degree
        bits = MIN_SCALE_BITS
        while bits < MAX_SCALE_BITS and _total(depth, bits + 1) <= MAX_BITS_128[degree]:
            bits += 1
        return choose(depth, bits, min_slots)
    if not 20 <= precision_bits <= MAX_SCALE_BITS:
        # more would leave fewer than INTEGER_BITS above the scale in the first modulus (at
        # most 60 bits): results from 2**(59 - precision_bits) on would decrypt as garbage
        raise ValueError(f"precision_bits must be between 20 and {MAX_SCALE_BITS} (SEAL's moduli "
                         f"hold at most {MAX_MODULUS_BITS} bits, {INTEGER_BITS} of the first "
                         f"for the values' integer part); got {precision_bits}")
    if depth < 0:
        raise ValueError(f"depth must be non-negative; got {depth}")
    outer = precision_bits + INTEGER_BITS
    sizes = [outer] + [precision_bits] * depth + [outer]
    for degree, budget in MAX_BITS_128.items():
        if degree >= 4096 and sum(sizes) <= budget and degree // 2 >= min_slots:
            return CKKSParams(degree, sizes, precision_bits)
    most = max((MAX_BITS_128[32768] - 2 * outer) // precision_bits, 0)
    raise DepthError(
        f"the model needs multiplicative depth {depth} at {precision_bits}-bit precision; "
        f"128-bit-secure CKKS parameters hold at most {most} levels at that precision "
        f"(polynomial degree 32768). Use fewer layers between ciphertext multiplications, "
        f"lower-degree polynomial activations, or a smaller precision_bits.")


def rescale_primes(degree: int, bits: int, count: int) -> list:
    """The primes of ``bits`` bits that SEAL's ``CoeffModulus::Create`` gives a chain, in the
    order rescaling drops them: the largest below ``2**bits`` that are 1 modulo twice the
    degree, descending (the last of the chain, dropped first, is the largest)."""
    step, primes, q = 2 * degree, [], 2**bits - 2 * degree + 1
    while len(primes) < count:
        if _is_prime(q):
            primes.append(q)
        q -= step
    return primes


def _is_prime(n: int) -> bool:
    """Miller-Rabin with the bases that decide every n below 2**64."""
    bases = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37)
    if n < 2 or any(n % p == 0 for p in bases):
        return n in bases
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for a in bases:
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def _total(depth, bits):
    return 2 * (bits + INTEGER_BITS) + depth * bits
