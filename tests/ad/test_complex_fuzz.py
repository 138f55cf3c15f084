"""The short form of the complex-program fuzzer (``tests/ad/fuzz_complex.py``): random programs
through complex intermediates with a real loss, against finite differences, first order for
many and second order (both modes) for a few."""

import numpy as np
import pytest

from fluxml.testing import check_grads
from tests.ad.fuzz_complex import check, inputs, random_program


@pytest.mark.parametrize("seed", range(30))
def test_random_complex_program_gradient(seed):
    message = check(seed)
    assert not message, message


@pytest.mark.parametrize("seed", range(100, 106))
def test_random_complex_program_second_order(seed):
    prog, text = random_program(seed, length=5)
    x, z = inputs(seed)
    check_grads(lambda x, z: prog(np, x, z), x, z, order=2)


def test_checks_are_not_all_skipped():
    assert sum(check(seed) == "" for seed in range(30)) < 5
