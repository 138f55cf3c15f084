"""The short run of the NumPy sweep (``tests/compiler/numpy_sweep.py``): NumPy functions with
a derivative rule, compiled (the value, a gradient and a jvp of their outputs), equal eager
fluxml on the NumPy back end, on the inputs traced and on new ones, or are refused where the
refusal is right: the cases fixed by name and a seeded sample of the others; a few on the XLA
back end. The whole table on XLA (a minute or two: each
case compiles with XLA) is ``python -m tests.compiler.numpy_sweep numpy xla``."""

import numpy as np
import pytest

from tests.compiler import numpy_sweep as sweep

# the cases compiled wrong or refused before (kept), and a seeded sample of the others: the
# suite's few seconds (the whole table is the by-hand run)
FIXED = ("interp", "interp(traced xp, fp)", "piecewise", "digitize", "linspace", "logspace",
         "geomspace", "histogram(edges)", "histogram(weights)", "histogram(density)",
         "histogram_bin_edges", "histogramdd", "histogram2d", "linalg.lstsq", "polyfit",
         "full_like", "median", "sort", "quantile", "take_along_axis")
_OTHERS = sorted(set(sweep.CASES) - set(FIXED))
SAMPLE = [*FIXED, *np.random.default_rng(0).choice(_OTHERS, 60, replace=False).tolist()]
# a few cases through XLA in the short suite (its first compile of each takes a second)
XLA_QUICK = ("interp", "piecewise", "histogram(weights)", "special.log_ndtr")


def _expected(name, backend):
    return "refused" if sweep.documented(name, backend) else "ok"


@pytest.mark.parametrize("name", SAMPLE)
def test_numpy_function_compiled_equals_eager(name):
    result = sweep.check(name, "numpy")
    assert result.split(":")[0] == _expected(name, "numpy"), result


@pytest.mark.parametrize("name", XLA_QUICK)
def test_numpy_function_compiled_equals_eager_xla(name):
    pytest.importorskip("jax", reason="the xla back end needs JAX: pip install 'fluxml[xla]'")
    result = sweep.check(name, "xla")
    assert result.split(":")[0] == _expected(name, "xla"), result
