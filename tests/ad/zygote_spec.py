"""Helpers for the translation of Zygote.jl's test suite (``tests/ad/test_zygote_spec_*.py``).

Zygote's ``gradtest(f, xs...)`` checks the gradient of ``sum(sin.(f(xs...)))`` against finite
differences, element by element (test/gradcheck_testsetup.jl). ``gradtest`` here does the same
in float64 with central differences, and then checks ``check_grads`` to ``order`` (forward and
reverse mode, a random direction) so the second derivatives are checked too.

Julia is column-major and 1-based: the translations index from 0 and write Julia's
``reshape``/``vec`` with ``order="F"`` where the order matters.
"""

import numpy as np

import fluxml as fl
from fluxml.testing import check_grads

EPS = 1e-6


def numerical_gradient(f, *xs):
    """Central differences of the scalar ``f`` with respect to each array in ``xs``."""
    xs = [np.array(x, dtype=float) for x in xs]
    grads = []
    for k, x in enumerate(xs):
        g = np.zeros_like(x)
        for i in np.ndindex(x.shape):
            up = [a.copy() for a in xs]
            down = [a.copy() for a in xs]
            up[k][i] += EPS
            down[k][i] -= EPS
            g[i] = (f(*up) - f(*down)) / (2 * EPS)
        grads.append(g)
    return grads


def assert_gradient(f, *xs, rtol=1e-5, atol=1e-6):
    """``fl.gradient(f, *xs)`` equals the central differences of ``f`` (None counts as 0)."""
    got = fl.gradient(f, *[np.array(x, dtype=float) for x in xs])
    for g, n in zip(got, numerical_gradient(f, *xs)):
        np.testing.assert_allclose(np.zeros_like(n) if g is None else g, n, rtol=rtol, atol=atol)


def gradtest(f, *xs, order=2):
    """Zygote's ``gradtest``: the gradient of ``sum(sin(f(*xs)))`` against finite differences,
    element by element, then forward and reverse mode of ``f`` itself to ``order``."""

    xs = [np.array(x, dtype=float) for x in xs]

    def total(*a):
        return np.sum(np.sin(f(*a)))

    assert_gradient(total, *xs)
    if order:
        check_grads(f, *xs, order=order)


def rand(rng, *shape):
    """Zygote's ``rand``: uniform on [0, 1)."""
    return rng.random(shape)
