"""The model-structure fuzzer on a few seeds: random nested models of user classes,
containers, numbers, ties and layers through gradient, setup/update/freeze/adjust/thaw,
f64/f32/f16/cpu/fmap, state/loadmodel, save/load, modules, modes, printing and summary,
against the fuzzer's own walk (tests/trees/fuzz_trees.py). More seeds by hand:
``PYTHONPATH=src python -m tests.trees.fuzz_trees --cases 3000``."""

import warnings

import pytest

from tests.trees import fuzz_trees


@pytest.mark.parametrize("start", range(0, 120, 30))
def test_random_model_structures(tmp_path, start):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (float16 conversions, other-precision inputs)
        for seed in range(start, start + 30):
            fuzz_trees.run_case(seed, str(tmp_path))
