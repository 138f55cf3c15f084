"""The kill-and-resume fuzzer on a few seeds: a run killed at a random step (run.stop, a
callback that raises, a loss that raises) and resumed from its last checkpoint in a setup
built anew ends bit for bit as the uninterrupted run; a NaN stops training naming its step
with the model as the step before left it (tests/training/fuzz_resume.py). More by hand:
``PYTHONPATH=src python -m tests.training.fuzz_resume 1000``."""

import pytest

from tests.training import fuzz_resume


# a NaN with the user's layer (0), a stop within an epoch with step checkpoints (2), a kill
# at an epoch's end with SaveCheckpoint listed first and EarlyStopping(restore_best) (3),
# compiled steps (7, 13), a loss that raises (9, 27, 34), AdaDelta (9), BatchNorm (2, 34), a
# compiled NaN step after an Evaluate set the user's layer's running mean (459, before 5b788aa),
# a run continued in its process after a kill within an epoch (9, 27, 34) and one resumed
# within an epoch with bigger batches (3, 7, 9, 27): each starts that epoch again
# (the fuzzer lists its own callbacks after a SaveCheckpoint on purpose: fl.train warns)
@pytest.mark.filterwarnings("ignore:train. the callbacks? .* listed after SaveCheckpoint")
@pytest.mark.parametrize("seed", [0, 2, 3, 7, 9, 13, 27, 34, 459])
def test_a_run_killed_and_resumed_ends_as_the_uninterrupted_run(tmp_path, seed):
    fuzz_resume.run_case(seed, str(tmp_path))
