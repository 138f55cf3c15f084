"""The short run of the stale-trace fuzzer (``tests/compiler/fuzz_stale.py``): random changes
between the calls of a compiled forward pass or training step (static fields, arrays
replaced, tied or read-only, the optimiser's state, non-array arguments, a global and a
closed-over number, the seed), each call against eager. The long runs:
``python -m tests.compiler.fuzz_stale 300 0 [xla]``."""

import pytest

from tests.compiler import fuzz_stale

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.mark.parametrize("seed", range(12))
def test_compiled_calls_after_changes_equal_eager(seed):
    assert fuzz_stale.run_case(seed) == []
