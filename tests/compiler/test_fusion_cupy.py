"""Elementwise fusion (checked by evaluating the fused trees with NumPy) and the cupy back
end's generated source (the kernels run only where a GPU is lent)."""

import numpy as np
import pytest

import fluxml as fl
from fluxml.compiler import fusion, passes
from tests.ad import fuzz_programs as fp
from tests.compiler import cuda_c
from tests.compiler import fuzz_compiled as fc
from tests.compiler.test_passes import run, traced


def test_a_chain_becomes_one_equation():
    def f(x, w):
        return np.tanh(x * 2.0 + w) ** 2 - np.exp(-x)

    p, arrays = traced(f, np.linspace(0, 1, 5), np.ones(5))
    q = fusion.fuse_elementwise(passes.dead_code(p))
    assert len(q.eqns) == 1 and isinstance(q.eqns[0].fn, fusion.Fused)
    np.testing.assert_allclose(run(q, arrays)[0], run(p, arrays)[0], rtol=1e-15)
    c = q.eqns[0].fn.c_expression(["a", "b"], [np.float64, np.float64])
    assert "tanh(" in c and "exp(" in c
    env = {"a": (arrays[0], "double"), "b": (arrays[1], "double")}
    value, ctype = cuda_c.evaluate(c, env)  # the C source computes the same (as C++ would)
    assert ctype == "double"
    np.testing.assert_allclose(value, run(p, arrays)[0], rtol=1e-15)


def test_shared_and_written_values_are_not_fused_away():
    def f(x):
        a = np.sin(x)  # read twice: stays its own buffer
        b = a * 2.0
        b[0] = 1.0  # written after: b's producer must not move past the write
        return a + b, np.cos(a)

    p, arrays = traced(f, np.linspace(0, 1, 4))
    q = fusion.fuse_elementwise(p)
    assert "sin" in [e.name for e in q.eqns]
    for got, want in zip(run(q, arrays), run(p, arrays)):
        np.testing.assert_allclose(got, want, rtol=1e-15)


@pytest.mark.parametrize("seed", range(8))
def test_fusion_keeps_random_programs_exact(seed):
    rng = np.random.default_rng(seed)
    program = fp.random_program(rng, 6, fc.COMPILABLE)
    weights = [rng.standard_normal(fp.SHAPE) for _ in range(3)]

    def f(x):
        return fl.withgradient(lambda x: fp.run(program, x, weights), x)

    x = rng.standard_normal(fp.SHAPE)
    p, arrays = traced(f, x)
    q = passes.optimise(p, passes.pipeline("cupy"))
    for got, want in zip(run(q, arrays), run(p, arrays)):
        np.testing.assert_allclose(np.asarray(got, float), np.asarray(want, float), rtol=1e-12,
                                   atol=1e-12)


def test_cupy_source_is_generated_without_a_gpu():
    f = fl.compile(lambda x, w: fl.gradient(lambda w: np.sum(np.tanh(x @ w) ** 2), w)[0],
                   backend="cupy")
    try:
        import cupy  # noqa: F401
    except ImportError:
        with pytest.raises(fl.CompileError, match="needs CuPy and a GPU"):
            f(np.ones((3, 4), np.float32), np.ones((4, 2), np.float32))
    else:  # pragma: no cover - runs where a GPU is lent
        pytest.skip("CuPy is installed: tests/backend runs the GPU checks")
    source = next(iter(f.cache.values())).source
    assert "cp.tanh(" in source and "# out = " in source and "(float)" in source
