"""Checkpoints in a training loop of the user's own, on a few seeds
(tests/io/fuzz_manual_resume.py): a run stopped at a random step and resumed from its last
checkpoint in objects built anew gives the uninterrupted run's losses and ends with its
arrays, bit for bit. More by hand: ``PYTHONPATH=src python -m tests.io.fuzz_manual_resume
1000 0``."""

import warnings

from tests.io import fuzz_manual_resume


def test_a_loop_of_ones_own_resumes_as_the_uninterrupted_run(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fails = [f"seed {seed}: {fail}" for seed in range(60)
                 for fail in fuzz_manual_resume.run_case(seed, str(tmp_path))]
    assert not fails, "\n".join(fails[:10])
