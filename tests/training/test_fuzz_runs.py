"""The training-run fuzzer on a few seeds: fl.train against a run resumed from each of
SaveCheckpoint's files in a fresh setup, and against a loop written by hand
(tests/training/fuzz_runs.py). More seeds by hand:
``PYTHONPATH=src python tests/training/fuzz_runs.py --cases 300``."""

import pytest

from tests.training import fuzz_runs


@pytest.mark.parametrize("seed", [1, 13, 19, 21, 25, 36, 37])  # (5 failed before 8b5b534)
def test_random_training_runs_resume_and_match_the_loop_by_hand(tmp_path, seed):
    fuzz_runs.run_case(seed, str(tmp_path))
