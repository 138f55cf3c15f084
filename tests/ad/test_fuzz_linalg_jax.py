"""A small run of the linear-algebra fuzzer against JAX (``fuzz_linalg_jax.py``): one case
of two rules (JAX's eager calls cost ~2 s a case); ``PYTHONPATH=src python
tests/ad/fuzz_linalg_jax.py 10`` runs every rule."""

import numpy as np
import pytest

from tests.ad.fuzz_linalg_jax import run_case

pytest.importorskip("jax")


@pytest.mark.parametrize("name", ["svd product", "solve_triangular trans"])
def test_linalg_rules_agree_with_jax(name):
    assert run_case(name, np.random.default_rng([7, sum(map(ord, name))])) == {}
