"""One harness over the whole rule registry: every case of every family's ``CASES`` table is
checked against finite differences (first and second order, forward and reverse mode), its
value against NumPy's, and its float32 behaviour. A registered rule without a case fails."""

import importlib
import inspect

import numpy as np
import pytest

import fluxml as fl
from fluxml.ad.core import FUNCTIONS, UFUNCS
from fluxml.ad.rules import fft  # noqa: F401  (lazy family: loaded here, so its rules are checked)
from fluxml.ad.rules.complex_values import COMPLEX
from fluxml.testing import check_grads

FAMILIES = ["elementwise", "special", "reductions", "shape", "linalg", "indexing", "numerics",
            "fft", "complex", "scipy", "sets"]


def _cases():
    cases = []
    for family in FAMILIES:
        try:
            module = importlib.import_module(f"tests.ad.rules.test_{family}")
        except pytest.skip.Exception:  # scipy missing: its rules are never registered
            continue
        for i, (np_func, f, args) in enumerate(module.CASES):
            name = getattr(np_func, "__name__", repr(np_func))
            cases.append(pytest.param(np_func, f, args, id=f"{family}-{i}-{name}"))
    return cases


CASES = _cases()


def _float32(a):
    """float32, or complex64 for complex values."""
    dtype = np.complex64 if np.iscomplexobj(a) else np.float32
    return dtype(a) if np.ndim(a) == 0 else np.asarray(a).astype(dtype)


@pytest.mark.parametrize("np_func, f, args", CASES)
def test_derivatives(np_func, f, args):
    check_grads(f, *args, order=2, modes=("fwd", "rev"))


@pytest.mark.parametrize("np_func, f, args", CASES)
def test_value_matches_numpy(np_func, f, args):
    expected = f(*(np.copy(a) for a in args))  # plain arrays: NumPy itself
    got, _ = fl.pullback(f, *args)
    got, expected = fl.leaves(got), fl.leaves(expected)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert np.shape(g) == np.shape(e) and np.asarray(g).dtype == np.asarray(e).dtype
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("np_func, f, args", CASES)
def test_float32(np_func, f, args):
    """float32 in: values with NumPy's own dtype (float32 unless NumPy promotes, e.g. for a
    float64 constant), float32 gradients."""
    args32 = tuple(_float32(a) for a in args)
    value, back = fl.pullback(f, *args32)
    for v, want in zip(fl.leaves(value), fl.leaves(f(*(np.copy(a) for a in args32)))):
        assert np.asarray(v).dtype == np.asarray(want).dtype
    for g, a in zip(back(value), args32):
        assert g is None or (g.dtype == _float32(a).dtype and np.shape(g) == np.shape(a))


# --- complex values: every case of a function listed in COMPLEX, with complex arguments ----------

def _complexify(a, k):
    """A float argument moved off the real line by a small imaginary part (small, so that the
    domains of the real cases, e.g. log's positive inputs, stay clear of branch cuts)."""
    if isinstance(a, bool) or not (isinstance(a, float) or np.asarray(a).dtype.kind == "f"):
        return a
    a = np.asarray(a)
    im = 0.3 * np.cos(1.7 * np.arange(a.size) + k).reshape(a.shape)
    return complex(a + 1j * im) if a.ndim == 0 else a + 1j * im


def _source(fn):
    """The source of ``fn`` and of the functions it closes over (the cases' helpers)."""
    cells = [c.cell_contents for c in fn.__closure__ or ()]
    return inspect.getsource(fn) + "".join(_source(c) for c in cells if inspect.isfunction(c))


def _phase_dependent(p):
    """Real cases that read eigenvectors or singular vectors through functions that depend on
    the phase of each complex vector (``v ** 2``): not defined for complex matrices (see
    ad/rules/eig.py); tests/ad/rules/test_complex.py has phase-free complex cases instead."""
    if p.values[0] not in (np.linalg.eigh, np.linalg.svd):
        return False
    source = _source(p.values[1])
    if p.values[0] is np.linalg.eigh:
        return "lambda w, v: w)" not in source
    # svd(hermitian=True) of a complex matrix refuses (tests/ad/test_complex.py)
    return "u ** 2" in source or "vh ** 2" in source or "hermitian=True" in source


COMPLEX_CASES = [pytest.param(p.values[0], p.values[1],
                              tuple(_complexify(a, k) for k, a in enumerate(p.values[2])),
                              id=p.id + "-complex")
                 for p in CASES if p.values[0] in COMPLEX and p.id.split("-")[0] != "complex"
                 and not _phase_dependent(p)]


@pytest.mark.parametrize("np_func, f, args", COMPLEX_CASES)
def test_complex_derivatives(np_func, f, args):
    check_grads(f, *args, order=2, modes=("fwd", "rev"))


@pytest.mark.parametrize("np_func, f, args", COMPLEX_CASES)
def test_complex_value_matches_numpy(np_func, f, args):
    test_value_matches_numpy(np_func, f, args)


def test_every_complex_rule_has_a_case():
    covered = {p.values[0] for p in COMPLEX_CASES} | {
        p.values[0] for p in CASES if any(np.iscomplexobj(a) for a in p.values[2])}
    missing = sorted(getattr(f, "__name__", repr(f)) for f in COMPLEX if f not in covered)
    assert not missing, f"functions listed in COMPLEX without a complex case: {missing}"


def test_every_registered_rule_has_a_case():
    covered = {p.values[0] for p in CASES}
    missing = sorted(getattr(f, "__name__", repr(f)) for f in list(UFUNCS) + list(FUNCTIONS)
                     if f not in covered)
    assert not missing, f"rules without a test case in any CASES table: {missing}"
