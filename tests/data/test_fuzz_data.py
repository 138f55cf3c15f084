"""The data fuzzer (tests/data/fuzz_data.py) on a few hundred seeds: DataLoader (random
structures, batch sizes, shuffling, partial, collate, generators, simulated shards),
splitobs (counts, stratified), kfolds, shuffleobs, getobs (index arrays, slices, masks),
onehotbatch/onecold, normalise/Standardiser and read_idx against
references written there. More seeds by hand:
``PYTHONPATH=src python tests/data/fuzz_data.py --cases 3000``."""

import pytest

from tests.data import fuzz_data


@pytest.mark.parametrize("start", range(0, 200, 50))
def test_data_tools_against_the_references(tmp_path, start):
    for seed in range(start, start + 50):
        fuzz_data.run_case(seed, str(tmp_path))
