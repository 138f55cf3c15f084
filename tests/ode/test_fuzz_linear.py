"""The short run of the linear-ODE fuzzer (``tests/ode/fuzz_linear.py``): drawn problems
against expm and its Frechet derivative, some the ones that found bugs."""

import numpy as np
import pytest

pytest.importorskip("scipy")

from tests.ode import fuzz_linear as fz  # noqa: E402 (needs SciPy)

CASES = [
    4,  # a rate-1000 transient, Rodas5, InterpolatingAdjoint: 1.8e-3 off before a397a43
    26,  # Rosenbrock23 in float32, backwards, with dtmax
    13,  # QuadratureAdjoint over a rate-300 transient
    16,  # fixed-step Euler in float32, t0 = 10
    29,  # Heun backwards in time, steps of 1/30
    7,  # Tsit5 in float32 with dtmax, a repeated save time, checkpointing
    2,  # RK4 backwards, BacksolveAdjoint, one save time inside the span
    (4, 29),  # float32 Rodas5 with dtmax, InterpolatingAdjoint: a forward step's start
    # 2e-16 from a save time, a stop of the backward solve (a step below the floor)
]


@pytest.mark.parametrize("index", CASES)
def test_drawn_linear_problem(index):
    seed, index = index if isinstance(index, tuple) else (0, index)
    problem = fz.Problem(np.random.default_rng([seed, index]))
    message = fz.check(problem)
    assert message is None, f"{problem.describe()}: {message}"
