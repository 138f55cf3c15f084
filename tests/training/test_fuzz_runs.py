"""The training-run fuzzer on a few seeds: fl.train against a run resumed from each of
SaveCheckpoint's files in a fresh setup, and against a loop written by hand
(tests/training/fuzz_runs.py). More seeds by hand:
``PYTHONPATH=src python tests/training/fuzz_runs.py --cases 300``."""

import pytest

from tests.training import fuzz_runs


@pytest.mark.parametrize("seed", [0, 1, 7, 13, 16, 35])  # (each found a defect once)
def test_random_training_runs_resume_and_match_the_loop_by_hand(tmp_path, seed):
    fuzz_runs.run_case(seed, str(tmp_path))
