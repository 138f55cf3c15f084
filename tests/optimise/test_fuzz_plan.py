"""The short run of the grouping-plan fuzzer (``tests/optimise/fuzz_plan.py``): random
changes between updates (arrays replaced, written, tied, of another dtype or shape; state
arrays, counts and Leafs replaced or written; adjust, freeze, thaw, checkpoints, copies,
parts appended and removed, ``foreach.SMALL`` changed, gradients None, transposed or of
another dtype, a second model sharing the state, fl.train steps), the plan kept between
steps against grouping anew at every step, bit for bit. The long runs:
``python -m tests.optimise.fuzz_plan 1000 0``."""

import pytest

from tests.optimise import fuzz_plan

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.mark.parametrize("first", range(0, 40, 10))
def test_a_kept_plan_steps_as_grouping_anew_after_random_changes(first):
    for seed in range(first, first + 10):
        assert fuzz_plan.run_case(seed) == [], seed
