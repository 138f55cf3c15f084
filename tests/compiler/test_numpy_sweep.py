"""The short run of the NumPy sweep (``tests/compiler/numpy_sweep.py``): every NumPy function
with a derivative rule, compiled (its value, a gradient and a jvp of its outputs), equals eager
fluxml on the NumPy back end, on the inputs traced and on new ones, or is refused where the
refusal is right; a sample on the XLA back end. The whole table on XLA (a minute or two: each
case compiles with XLA) is ``python -m tests.compiler.numpy_sweep numpy xla``."""

import pytest

from tests.compiler import numpy_sweep as sweep

# a few cases through XLA in the short suite (its first compile of each takes a second)
XLA_QUICK = ("interp", "piecewise", "digitize", "geomspace", "histogram(weights)",
             "linalg.pinv", "linalg.lstsq", "sort", "full_like")


def _expected(name, backend):
    return "refused" if sweep.documented(name, backend) else "ok"


@pytest.mark.parametrize("name", list(sweep.CASES))
def test_numpy_function_compiled_equals_eager(name):
    result = sweep.check(name, "numpy")
    assert result.split(":")[0] == _expected(name, "numpy"), result


@pytest.mark.parametrize("name", XLA_QUICK)
def test_numpy_function_compiled_equals_eager_xla(name):
    pytest.importorskip("jax", reason="the xla back end needs JAX: pip install 'fluxml[xla]'")
    result = sweep.check(name, "xla")
    assert result.split(":")[0] == _expected(name, "xla"), result
