"""fl.loadmodel against the reference of tests/io/fuzz_loadmodel.py on a few seeds: random
models given another's state with random changes; the first misfit named by its path and the
model left bytewise as it was, or every value loaded exactly. More seeds by hand:
``PYTHONPATH=src python -m tests.io.fuzz_loadmodel 5000 0``."""

from tests.io import fuzz_loadmodel


def test_loadmodel_names_the_first_misfit_and_changes_nothing():
    fails = [f"seed {seed}: {fail}" for seed in range(400)
             for fail in fuzz_loadmodel.run_case(seed)]
    assert not fails, "\n".join(fails[:10])
