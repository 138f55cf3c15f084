"""The saving-and-loading fuzzer (tests/io/fuzz_io.py) on a few seeds: random models and
optimiser states saved and loaded into fresh ones, and training resumed from a checkpoint,
against the uninterrupted run. More seeds, and the safetensors package and PyTorch as
readers, by hand: ``PYTHONPATH=src python tests/io/fuzz_io.py --cases 300 --peers``."""

import warnings

import pytest

from tests.io import fuzz_io


@pytest.mark.parametrize("seed", range(6))
def test_random_models_and_optimiser_states_round_trip(tmp_path, seed):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # (float16 training may overflow)
        fuzz_io.run_case(seed, str(tmp_path))
