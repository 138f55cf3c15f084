"""The kill-and-resume fuzzer on a few seeds: a run killed at a random step (run.stop, a
callback that raises, a loss that raises) and resumed from its last checkpoint in a setup
built anew ends bit for bit as the uninterrupted run; a NaN stops training naming its step
with the model as the step before left it (tests/training/fuzz_resume.py). More by hand:
``PYTHONPATH=src python -m tests.training.fuzz_resume 1000``."""

import pytest

from tests.training import fuzz_resume


# 0, 3, 6: a NaN step left the user's count written; 13: EarlyStopping resumed at its stop
# epoch trained on; 57: a loss that raised left BatchNorm's statistics moved (before 0982489)
@pytest.mark.parametrize("seed", [0, 3, 6, 12, 13, 34, 54, 57])
def test_a_run_killed_and_resumed_ends_as_the_uninterrupted_run(tmp_path, seed):
    fuzz_resume.run_case(seed, str(tmp_path))
