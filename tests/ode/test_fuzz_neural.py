"""The short run of the NeuralODE fuzzer (``tests/ode/fuzz_neural.py``): a few drawn layers
against SciPy and finite differences."""

import zlib

import numpy as np
import pytest

pytest.importorskip("scipy")

from tests.ode import fuzz_neural as fz  # noqa: E402 (needs SciPy)

CASES = [
    (1, 6),  # a layer used twice, backwards in time, QuadratureAdjoint
    (1, 2),  # a SkipConnection in float32 through Rodas5 and a checkpointing adjoint (its
    # re-solves were float64: b6fd696)
    (1, 1),  # a Scale, DP5 and QuadratureAdjoint
]


@pytest.mark.parametrize("seed, index", CASES)
def test_drawn_layer(seed, index):
    rng = np.random.default_rng([seed, zlib.crc32(b"neural"), index])
    case = fz.Case(rng)
    assert fz.check(case, rng) is None, case.describe()
