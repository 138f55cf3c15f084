"""The differential fuzzer of fl.save/fl.load against the safetensors package on a few
seeds (tests/io/fuzz_peer.py): round trips of random trees and layers, each file read by
the other's reader, damaged copies refused by name, failed saves leaving the old file.
More seeds by hand: ``PYTHONPATH=src python -m tests.io.fuzz_peer 3000 0``."""

import warnings

import pytest

from tests.io import fuzz_peer


@pytest.mark.parametrize("start", range(0, 120, 40))
def test_fl_files_and_the_safetensors_packages_agree(tmp_path, start):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fails = [f"seed {seed}: {fail}" for seed in range(start, start + 40)
                 for fail in fuzz_peer.run_case(seed, str(tmp_path))]
    assert not fails, "\n".join(fails[:10])
