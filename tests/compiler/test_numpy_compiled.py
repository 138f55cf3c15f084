"""NumPy functions whose rules pick segments, bins or cases on the values, compiled: their
values and gradients under ``fl.compile`` (NumPy and XLA back ends, the latter skipped without
JAX) equal eager fluxml's, on the inputs traced and on new ones, and eager fluxml's equal
NumPy's values and central finite differences."""

import numpy as np
import pytest

import fluxml as fl

BACKENDS = ["numpy", "xla"]


def _backend(name):
    if name == "xla":
        pytest.importorskip("jax", reason="the xla back end needs JAX: pip install 'fluxml[xla]'")
    return name


def _compiled_equals_eager(f, make, backend, calls=2, seed=0):
    """``f``'s value and gradient compiled, against eager, on ``calls`` fresh inputs."""
    rng = np.random.default_rng(seed)

    def both(x):
        return f(x), fl.gradient(f, x)[0]

    compiled = fl.compile(both, backend=_backend(backend))
    for _ in range(calls):
        x = make(rng)
        value, grad = compiled(x.copy())
        want_value, want_grad = both(x.copy())
        np.testing.assert_allclose(np.asarray(value), want_value, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(np.asarray(grad), want_grad, rtol=1e-12, atol=1e-12)


def _finite_differences(f, x, h=1e-6):
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = h
        g[i] = (f(x + e) - f(x - e)) / (2 * h)
    return g


XP = np.array([0.0, 0.3, 0.5, 0.9, 1.2])
FP = np.array([1.0, -0.5, 2.0, 0.25, 1.5])


@pytest.mark.parametrize("backend", BACKENDS)
def test_interp_with_plain_samples_compiles(backend):
    # refused before (both back ends): the segment index, known at run time only, indexed the
    # plain xp and fp ('converting a traced integer array to a NumPy array')
    w = np.random.default_rng(1).standard_normal(7)

    def f(x):
        return np.sum(w * np.interp(x, XP, FP, left=-1.0))

    def make(rng):
        return rng.uniform(-0.2, 1.4, 7)  # outside the data on both sides too

    _compiled_equals_eager(f, make, backend)
    x = make(np.random.default_rng(2))
    np.testing.assert_allclose(fl.gradient(f, x)[0], _finite_differences(f, x), atol=1e-7)


@pytest.mark.parametrize("backend", BACKENDS)
def test_interp_with_traced_samples_compiles(backend):
    x0 = np.random.default_rng(3).uniform(0, 1.2, 6)

    def f(fp):
        return np.sum(np.interp(x0, XP, fp) ** 2)

    _compiled_equals_eager(f, lambda rng: rng.standard_normal(5), backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("search", ["digitize", "searchsorted", "isin"])
def test_value_searches_take_lists_under_xla(backend, search):
    # XLA: jnp's namesakes refuse a list where NumPy reads an array (np.digitize(x, [0.2, 0.5])
    # was refused: 'the XLA lowering ... does not match the program: TypeError')
    bins = [0.2, 0.5, 0.7]
    index = {"digitize": lambda x: np.digitize(x, bins, right=True),
             "searchsorted": lambda x: np.searchsorted(bins, x),
             "isin": lambda x: np.isin(np.round(x, 1), [0.2, 0.5])}[search]

    def f(x):
        return np.sum(x**2 * index(x))

    _compiled_equals_eager(f, lambda rng: rng.random(6), backend)
