"""The saving-and-loading fuzzers on a few seeds: random models and optimiser states saved
and loaded into fresh ones, training resumed from a checkpoint against the uninterrupted run
(tests/io/fuzz_io.py); damaged checkpoints refused by name, changing nothing
(tests/io/fuzz_corrupt.py). More seeds, and the safetensors package and PyTorch as readers,
by hand: ``PYTHONPATH=src python tests/io/fuzz_io.py --cases 300 --peers``."""

import warnings

import pytest

from tests.io import fuzz_corrupt, fuzz_io


@pytest.mark.parametrize("seed", range(6))
def test_random_models_and_optimiser_states_round_trip(tmp_path, seed):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # (float16 training may overflow)
        fuzz_io.run_case(seed, str(tmp_path))


@pytest.mark.parametrize("start", range(0, 240, 60))
def test_damaged_checkpoints_are_refused_and_change_nothing(tmp_path, start):
    outcomes = {fuzz_corrupt.run_case(seed, str(tmp_path)) for seed in range(start, start + 60)}
    assert outcomes >= {"refused: FileFormatError", "refused: LoadError"}


@pytest.mark.parametrize("seed", range(2))
def test_a_writer_killed_mid_write_leaves_a_whole_file(tmp_path, seed):
    assert fuzz_corrupt.crash_case(seed, str(tmp_path)).startswith("whole")
