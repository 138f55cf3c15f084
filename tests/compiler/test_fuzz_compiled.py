"""The short run of the compiled fuzzer (``tests/compiler/fuzz_compiled.py``): the engine's
random NumPy programs (in-place writes, views, sorting, reductions), their gradient and a
jvp, compiled, must equal eager fluxml on the traced inputs and on new ones."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fluxml as fl
from tests.ad import fuzz_programs as fp
from tests.compiler import fuzz_compiled as fc

_program = st.lists(st.tuples(st.sampled_from(fc.COMPILABLE), st.integers(0, 2),
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


@settings(max_examples=3, deadline=None)
@given(_program, st.integers(0, 2**16), st.booleans())
def test_random_programs_compiled_xla(program, seed, device):
    """Through the xla back end, on NumPy weights or on device-resident ones (``fl.xla``);
    a program with no XLA lowering must be refused by name."""
    pytest.importorskip("jax", reason="the xla back end needs JAX: pip install 'fluxml[xla]'")
    from fluxml.compiler import CompileError

    try:
        message = fc.check(program, seed, backend="xla", device=device)
    except CompileError as e:
        assert "no XLA lowering" in str(e), str(e)
        return
    assert message is None, f"{fp.describe(program)}: {message}"


@settings(max_examples=2, deadline=None)
@given(_program, st.integers(0, 2**16), st.booleans())
def test_random_programs_compiled_xla_tiered(program, seed, device):
    """The tiered start: the first call on the NumPy code while XLA compiles, the second on
    XLA's, both equal to eager fluxml."""
    pytest.importorskip("jax", reason="the xla back end needs JAX: pip install 'fluxml[xla]'")
    from fluxml.compiler import CompileError

    try:
        message = fc.check(program, seed, backend="xla", device=device, tiered=True)
    except CompileError as e:
        assert "no XLA lowering" in str(e), str(e)
        return
    assert message is None, f"{fp.describe(program)}: {message}"


def test_every_step_compiles():
    """Each step of the fuzzer's vocabulary alone, compiled."""
    for s in range(len(fp.STEPS)):
        i = s % 3
        program = [(s, i, (i + 1) % 3, (i + 2) % 3)]
        if s not in fc.COMPILABLE:  # refused by name, not miscompiled
            with pytest.raises(fl.CompileError, match="needs a concrete value"):
                fc.check(program, seed=s)
            continue
        assert fc.check(program, seed=s) is None, fp.describe(program)


def test_complex_programs_compiled():
    """The complex-number fuzzer's programs (FFTs, decompositions, complex arithmetic),
    compiled, on the traced inputs and on new ones."""
    import numpy as np

    import fluxml as fl
    from tests.ad import fuzz_complex as fz

    for seed in range(6):
        prog, text = fz.random_program(seed)

        def f(x, z, prog=prog):
            return prog(np, x, z)

        compiled = fl.compile(lambda x, z, f=f: fl.withgradient(f, x, z))
        for k in (seed, seed + 1000):
            x, z = fz.inputs(k)
            with np.errstate(all="ignore"):
                want, got = fl.withgradient(f, x, z), compiled(x, z)
            np.testing.assert_allclose(got[0], want[0], rtol=1e-9, err_msg=text)
            for a, b in zip(got[1], want[1]):
                assert (a is None) == (b is None), text
                if a is not None:
                    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12, err_msg=text)
        assert compiled.traces == 1


def test_xla_program_that_xla_miscompiled_on_packed_inputs():
    """Found by the fuzzer (seed 3, program 18): with its inputs sliced out of one packed
    buffer, XLA's CPU compiler gave a value off by 1.56 (the same function jitted on separate
    arguments was right); an optimisation barrier after the unpacking keeps it right."""
    pytest.importorskip("jax", reason="the xla back end needs JAX: pip install 'fluxml[xla]'")
    names = ["r[i] = max(r[j], r[k])", "v = r[i][1:].T; v *= sin(r[j][:2].T)",
             "r[i] = cos(r[j])"]
    index = {name: k for k, (name, _) in enumerate(fp.STEPS)}
    program = [(index[names[0]], 2, 1, 1), (index[names[1]], 1, 1, 0),
               (index[names[2]], 0, 1, 0)]
    assert fc.check(program, 18, backend="xla") is None
