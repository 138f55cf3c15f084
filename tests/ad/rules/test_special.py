"""scipy.special rules (loaded lazily) against finite differences, order 2, both modes."""

import subprocess
import sys
import warnings

import numpy as np
import pytest

sp = pytest.importorskip("scipy.special")

import fluxml as fl  # noqa: E402
from fluxml.ad.core import DifferentiationError  # noqa: E402
from fluxml.ad.rules.special import POLYGAMMA  # noqa: E402
from fluxml.testing import check_grads  # noqa: E402

A = np.array([[0.31, -1.27, 0.83, 1.54], [-0.62, 0.17, -1.91, 0.46], [1.12, -0.38, 0.71, -1.43]])
B = np.array([0.52, -0.93, 1.37, -0.24])
PROB = np.array([[0.12, 0.47, 0.83, 0.35], [0.61, 0.27, 0.08, 0.93], [0.55, 0.71, 0.2, 0.4]])
POS = np.abs(A) + 0.3
POS_B = np.abs(B) + 0.5
ZERO_X = np.array([0.0, 1.3, 0.0, 0.7])  # xlogy with x == 0 entries

CASES = [
    (sp.expit, sp.expit, (A,)),
    (sp.logit, sp.logit, (PROB,)),
    (sp.log_expit, sp.log_expit, (A,)),
    (sp.erf, sp.erf, (A,)),
    (sp.erfc, sp.erfc, (A,)),
    (sp.erfcx, sp.erfcx, (A,)),
    (sp.erfinv, sp.erfinv, (2 * PROB - 1,)),
    (sp.erfcinv, sp.erfcinv, (2 * PROB,)),
    (sp.ndtr, sp.ndtr, (A,)),
    (sp.log_ndtr, sp.log_ndtr, (A,)),
    (sp.ndtri, sp.ndtri, (PROB,)),
    (sp.gamma, sp.gamma, (POS,)),
    (sp.gammaln, sp.gammaln, (POS,)),
    (sp.loggamma, sp.loggamma, (POS,)),
    (sp.digamma, sp.digamma, (POS,)),
    (sp.digamma, sp.psi, (POS,)),
    (sp.entr, sp.entr, (PROB,)),
    (sp.i0, sp.i0, (A,)),
    (sp.i1, sp.i1, (A,)),
    (sp.iv, lambda x: sp.iv(1.5, x), (POS,)),
    (sp.iv, lambda x: sp.iv(np.array([0, 1, 2, 3]), x), (A,)),
    (sp.j0, sp.j0, (A,)),
    (sp.j1, sp.j1, (A,)),
    (sp.jv, lambda x: sp.jv(2.5, x), (POS,)),
    (sp.xlogy, sp.xlogy, (A, POS_B)),
    (sp.xlogy, lambda y: sp.xlogy(ZERO_X, y), (POS,)),
    (sp.xlog1py, sp.xlog1py, (A, POS_B)),
    (sp.xlog1py, lambda y: sp.xlog1py(ZERO_X, y), (POS,)),
    (sp.rel_entr, sp.rel_entr, (PROB, POS_B)),
    (sp.beta, sp.beta, (POS, POS_B)),
    (sp.betaln, sp.betaln, (POS, POS_B)),
    (sp.y0, sp.y0, (POS,)),
    (sp.y1, sp.y1, (POS,)),
    (sp.yn, lambda x: sp.yn(np.array([0, 1, 2, 3]), x), (POS,)),
    (sp.yv, lambda x: sp.yv(1.5, x), (POS,)),
    (sp.ive, lambda x: sp.ive(np.array([0.0, 1.0, 2.5, 3.0]), x), (POS,)),
    (sp.ive, lambda x: sp.ive(np.array([0, 1, 2, 3]), x), (A,)),
    (sp.rgamma, sp.rgamma, (POS,)),
    (sp.gammasgn, lambda x: sp.gammasgn(x) * x, (A,)),
    (sp.gammainc, lambda x: sp.gammainc(POS_B, x), (POS,)),
    (sp.gammaincc, lambda x: sp.gammaincc(1.7, x), (POS,)),
    (sp.betainc, lambda x: sp.betainc(POS_B, 2.5, x), (PROB,)),
]
if hasattr(sp, "softplus"):  # SciPy >= 1.15: np.logaddexp(0, x) inside
    CASES.append((sp.softplus, sp.softplus, (A,)))


def test_polygamma_primitive():
    x = np.array([0.4, 1.3, 2.7])
    np.testing.assert_array_equal(POLYGAMMA(x, n=2), sp.polygamma(2, x))
    check_grads(lambda v: POLYGAMMA(v, n=1), x, order=2)


@pytest.mark.parametrize("f, x, expected", [
    (sp.expit, 1000.0, 0.0),
    (sp.expit, -1000.0, 0.0),
    (sp.log_expit, -1000.0, 1.0),
    (sp.log_expit, 1000.0, 0.0),
    (sp.log_ndtr, -40.0, None),
    (sp.log_ndtr, 40.0, 0.0),
    (sp.erfcx, 30.0, None),
    (sp.ndtr, -40.0, 0.0),
])
def test_stable_gradients(f, x, expected):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (g,) = fl.gradient(f, x)
    assert np.isfinite(g)
    if expected is not None:
        assert g == pytest.approx(expected, abs=1e-12)


def test_log_ndtr_far_tail_matches_asymptote():
    # d/dx log Phi(x) ~ -x - 1/x for x -> -inf
    (g,) = fl.gradient(sp.log_ndtr, -40.0)
    assert g == pytest.approx(40.0 + 1 / 40.0, rel=1e-6)


@pytest.mark.parametrize("call", [
    lambda x: sp.logsumexp(x),
    lambda x: sp.softmax(x),
    lambda x: sp.log_softmax(x),
    lambda x: sp.polygamma(1, x),
    lambda x: sp.multigammaln(x + 2, 2),
])
def test_python_level_functions_fail_loudly(call):
    """Documented limitation: these convert their input with np.asarray."""
    with pytest.raises(DifferentiationError, match="scipy.special"):
        fl.gradient(lambda x: np.sum(call(x)), np.array([0.3, 1.2]))


def test_shape_parameters_without_a_derivative_say_so():
    x = np.array([0.3, 1.2])
    for f in (lambda a: sp.gammainc(a, 1.0), lambda a: sp.betainc(a, 2.0, 0.4),
              lambda a: sp.yv(a, 1.0)):
        with pytest.raises(DifferentiationError, match="argument 0"):
            fl.gradient(lambda a: np.sum(f(a)), x + 1)
    assert fl.gradient(lambda x: np.sum(sp.gammasgn(x) * x), -x)[0].tolist() == [-1.0, 1.0]


def test_unsupported_special_ufunc_names_itself():
    with pytest.raises(DifferentiationError, match="kv"):
        fl.gradient(lambda x: np.sum(sp.kv(1, x)), np.array([0.3, 1.2]))


def _run(code):
    subprocess.run([sys.executable, "-c", code], check=True)


def test_import_fluxml_does_not_import_scipy():
    _run("import fluxml, sys; assert 'scipy' not in sys.modules")


def test_rules_load_on_first_use():
    _run(
        "import numpy as np, fluxml as fl, scipy.special as sp\n"
        "from fluxml.ad.core import UFUNCS\n"
        "assert sp.erf not in UFUNCS\n"
        "(g,) = fl.gradient(sp.erf, 0.0)\n"
        "assert abs(g - 2 / np.pi ** 0.5) < 1e-15, g\n"
        "assert sp.erf in UFUNCS and sp.expit in UFUNCS\n"
    )


def test_numpy_i0_is_numpys_and_its_derivatives_are_scipys_i1_and_i1_prime():
    # np.i0 had no rule; its values are NumPy's own (to the bit, float32 kept), its
    # derivative I1 (SciPy's i1 to ~1e-15, also near 0 where the slope of NumPy's Chebyshev
    # series is off by ~1e-16 absolute), its second derivative (I0 + I2) / 2, 1/2 at 0
    x = np.concatenate([np.linspace(-30.0, 30.0, 601), [0.0, 1e-300, 1e-8, 2.0, 8.0, -700.0]])
    for v in (x, x[:601].astype(np.float32)):
        got, back = fl.pullback(np.i0, v)
        assert got.dtype == np.i0(v).dtype
        np.testing.assert_array_equal(got, np.i0(v))
    (g,) = fl.gradient(lambda x: np.sum(np.i0(x)), x)
    np.testing.assert_allclose(g, sp.i1(x), rtol=5e-15, atol=0)
    np.testing.assert_array_equal(fl.jvp(np.i0, (x,), (np.ones_like(x),))[1], g)
    (h,) = fl.gradient(lambda x: np.sum(fl.gradient(lambda y: np.sum(np.i0(y)), x)[0]), x)
    np.testing.assert_allclose(h, (sp.i0(x) + sp.iv(2, x)) / 2, rtol=2e-13, atol=0)


@pytest.mark.parametrize("name, mixed", [("xlogy", 1 / 0.5), ("xlog1py", 1 / 1.5)])
def test_the_mixed_second_derivative_at_x_0(name, mixed):
    # d/dy = x / y was computed as 0 selected at x == 0, whose derivative in x is 0: the
    # Hessian's mixed term (1 / y) was lost at a one-hot target's zeros, silently
    f = getattr(sp, name)
    h = fl.hessian(lambda v: f(v[0], v[1]), np.array([0.0, 0.5]))
    np.testing.assert_allclose(h, [[0.0, mixed], [mixed, 0.0]], rtol=1e-14)
