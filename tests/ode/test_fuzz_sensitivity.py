"""The short run of the ODE fuzzer (``tests/ode/fuzz_sensitivity.py``): a few drawn problems,
some set to the configurations that found bugs, against SciPy and finite differences."""

import zlib

import numpy as np
import pytest

pytest.importorskip("scipy")

from tests.ode import fuzz_sensitivity as fz  # noqa: E402 (needs SciPy)

CASES = [
    (1, 8, {}),  # a tree state (f returns its dict in another key order), Vern7, Quadrature
    (1, 12, {}),  # Direct with repeated save times: forward mode and the dense output too
    (1, 12, {"closure": True}),  # the same with f closing over p
    (1, 6, {"solver": "Heun", "saveat": None}),  # fixed-step Heun on a tree state, against
    # the textbook formula
    (1, 13, {"saveat": [-2.0, -2.0, -2.5]}),  # checkpoints listed (one at t0) and a
    # repeated save time
    (1, 3, {"solver": "Rodas5", "alg": "Interpolating(checkpointing)",
            "saveat": [0.5, 1.0]}),  # a stiff adjoint re-solving between checkpoints
    (0, 38, {}),  # Vern7, Direct, saveat=None: the traced solve takes the plain one's steps
    (20, 43, {}),  # Rodas5 and an adjoint in float32: df/dt's difference suits float32
    (1, 39, {}),  # Tsit5 with fixed steps (adaptive=False), saves on the steps' grid,
    # BacksolveAdjoint on that grid
]


@pytest.mark.parametrize("seed, index, changes", CASES)
def test_drawn_problem(seed, index, changes):
    rng = np.random.default_rng([seed, zlib.crc32(b"ode"), index])
    problem = fz.Problem(rng)
    vars(problem).update({"closure": False, **changes})
    try:
        message = fz.check(problem, rng)
    except fz.Refused as e:
        pytest.fail(f"{problem.describe()}: refused ({e}); pick a case both can solve")
    assert message is None, f"{problem.describe()}: {message}"
