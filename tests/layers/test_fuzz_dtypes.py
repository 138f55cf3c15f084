"""dtype propagation through random models, losses and optimisers (tests/layers/
fuzz_dtypes.py) on a few seeds; and the defects that fuzzer found, one test each. More
seeds by hand: ``PYTHONPATH=src python -m tests.layers.fuzz_dtypes 2000``."""

import pytest

from tests.layers import fuzz_dtypes


@pytest.mark.parametrize("start", range(0, 24, 8))
def test_random_models_keep_their_precision(start):
    failures = {seed: fuzz_dtypes.run_case(seed) for seed in range(start, start + 8)}
    assert not {k: v for k, v in failures.items() if v}
