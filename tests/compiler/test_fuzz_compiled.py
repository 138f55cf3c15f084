"""The short run of the compiled fuzzer (``tests/compiler/fuzz_compiled.py``): the engine's
random NumPy programs (in-place writes, views, sorting, reductions), their gradient and a
jvp, compiled, must equal eager fluxml on the traced inputs and on new ones."""

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.ad import fuzz_programs as fp
from tests.compiler import fuzz_compiled as fc

_program = st.lists(st.tuples(st.integers(0, len(fp.STEPS) - 1), st.integers(0, 2),
                              st.integers(0, 2), st.integers(0, 2)), min_size=1, max_size=6)


@settings(max_examples=12, deadline=None)
@given(_program, st.integers(0, 2**16))
def test_random_programs_compiled(program, seed):
    message = fc.check(program, seed)
    assert message is None, f"{fp.describe(program)}: {message}"


@settings(max_examples=6, deadline=None)
@given(_program, st.integers(0, 2**16))
def test_random_programs_compiled_without_passes(program, seed):
    message = fc.check(program, seed, passes=False)
    assert message is None, f"{fp.describe(program)}: {message}"


def test_every_step_compiles():
    """Each step of the fuzzer's vocabulary alone, compiled."""
    for s in range(len(fp.STEPS)):
        i = s % 3
        program = [(s, i, (i + 1) % 3, (i + 2) % 3)]
        assert fc.check(program, seed=s) is None, fp.describe(program)
