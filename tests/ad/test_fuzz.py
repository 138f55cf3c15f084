"""The short run of the random-program fuzzer (``tests/ad/fuzz_programs.py``): NumPy programs
with in-place writes, views, sorting and reductions, checked against NumPy's values and
finite differences in both modes."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.ad import fuzz_programs as fp


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(fp.STEPS) - 1), st.integers(0, 2),
                          st.integers(0, 2), st.integers(0, 2)), min_size=1, max_size=8),
       st.integers(0, 2**16))
def test_random_programs(program, seed):
    message = fp.check(program, seed)
    assert message is None, f"{fp.describe(program)}: {message}"


def test_every_step_runs_and_is_checked():
    """Each step alone: the fuzzer's whole vocabulary is exercised."""
    for s in range(len(fp.STEPS)):
        i = s % 3
        program = [(s, i, (i + 1) % 3, (i + 2) % 3)]
        assert fp.check(program, seed=s) is None, fp.describe(program)


def test_the_checker_catches_a_wrong_gradient():
    import fluxml.ad.rules.elementwise as rules
    from fluxml.ad.define import defvjp

    tanh = rules.UFUNCS[np.tanh]
    saved = tanh.vjp, tanh.vjps
    defvjp(tanh, lambda g, ans, x: g * (1 - ans * ans) * 1.01)
    try:
        message = fp.check([(0, 0, 0, 0)], seed=1)  # r[0] = tanh(r[0])
    finally:
        tanh.vjp, tanh.vjps = saved
    assert message is not None  # the modes disagree, or the gradient and finite differences
