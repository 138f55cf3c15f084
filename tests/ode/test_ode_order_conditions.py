"""Every explicit tableau against Butcher's order conditions: the exact form of diffrax's
``test_integrate.py::test_ode_order`` (which measures the order on a linear problem, where
only some of the conditions are tested).

A method has order p when ``b . Phi(t) = 1 / gamma(t)`` for every rooted tree t of at most p
nodes (1, 1, 2, 4, 9, 20, 48 and 115 trees of 1..8 nodes); ``Phi(t)``, the elementary weight,
is the product over t's subtrees of ``A Phi(subtree)`` (ones for the single node). The same
conditions give the embedded method's order (weights ``b - b_err``) and the dense output's
(weights ``B(theta) = dense @ theta**(1..)`` over the stages the interpolant reads, against
``theta**|t| / gamma(t)``).
"""

from functools import lru_cache

import numpy as np
import pytest

from fluxml.ode import tableaus


@lru_cache(None)
def trees(n):
    """The rooted trees of ``n`` nodes, each the sorted tuple of its subtrees."""
    if n == 1:
        return ((),)

    def forests(nodes, largest):
        """Multisets of trees with ``nodes`` nodes in all, each of at most ``largest``."""
        if nodes == 0:
            yield ()
            return
        for size in range(min(nodes, largest), 0, -1):
            for t in trees(size):
                for rest in forests(nodes - size, size):
                    yield (t,) + rest

    return tuple(sorted({tuple(sorted(f)) for f in forests(n - 1, n - 1)}))


def nodes(t):
    return 1 + sum(nodes(s) for s in t)


def gamma(t):
    return nodes(t) * int(np.prod([gamma(s) for s in t]))


def weight(t, A):
    """The elementary weight Phi(t): one entry per stage."""
    w = np.ones(len(A))
    for s in t:
        w = w * (A @ weight(s, A))
    return w


def defect(b, A, p, theta=1.0):
    """The largest ``|b . Phi(t) - theta**p / gamma(t)|`` over the trees of ``p`` nodes."""
    return max(abs(b @ weight(t, A) - theta**p / gamma(t)) for t in trees(p))


def stage_matrix(tab, interpolant=False):
    """A as a square matrix; with ``interpolant``, extended by ``f(t1, y1)`` (unless FSAL: the
    last stage is it) and the extra stages, in the order the dense matrix reads them."""
    rows = [list(r) + [0.0] * (tab.stages - len(r)) for r in tab.a]
    if interpolant:
        extra = ([] if tab.fsal else [tuple(tab.b)]) + [row for _, row in tab.extra]
        for row in extra:
            rows = [r + [0.0] for r in rows] + [list(row) + [0.0]]
    return np.array(rows)


def test_the_trees_are_counted_right():
    assert [len(trees(n)) for n in range(1, 9)] == [1, 1, 2, 4, 9, 20, 48, 115]
    assert gamma(((),)) == 2 and gamma(((), ())) == 3 and gamma((((),),)) == 6


# (tableau, its order, the embedded method's, the dense output's)
TABLEAUS = [
    (tableaus.EULER, 1, None, 1), (tableaus.MIDPOINT, 2, None, 2), (tableaus.HEUN, 2, None, 2),
    (tableaus.RK4, 4, None, 3), (tableaus.BS3, 3, 2, 3), (tableaus.DP5, 5, 4, 4),
    (tableaus.TSIT5, 5, 4, 4), (tableaus.VERN7, 7, 6, 6),
]


@pytest.mark.parametrize("tab, order, embedded, dense", TABLEAUS,
                         ids=lambda x: getattr(x, "name", ""))
def test_tableaus_satisfy_the_order_conditions(tab, order, embedded, dense):
    """Each tableau meets every condition of its order to rounding and fails one of the next
    (its order is no higher than it says); the embedded method (the error estimate) has the
    order below, the dense output its stated order at three values of theta."""
    A, b = stage_matrix(tab), np.array(tab.b)
    for p in range(1, order + 1):
        assert defect(b, A, p) < 1e-12, (tab.name, p)
    assert defect(b, A, order + 1) > 1e-6
    if embedded is not None:
        b_hat = b - np.array(tab.b_err)
        for p in range(1, embedded + 1):
            assert defect(b_hat, A, p) < 1e-12, (tab.name, "embedded", p)
        assert defect(b_hat, A, embedded + 1) > 1e-6
    Ae = stage_matrix(tab, interpolant=True)
    for theta in (0.3, 0.5, 0.77):
        B = tab.dense @ theta ** np.arange(1, tab.dense.shape[1] + 1)
        for p in range(1, dense + 1):
            assert defect(B, Ae, p, theta) < 1e-12, (tab.name, "dense", theta, p)


def test_vern7_dense_output_misses_order_7_by_little():
    """Verner's 7(6) interpolant (the coefficients of OrdinaryDiffEq's Vern7, digit for digit)
    meets the order-7 conditions only to ~3e-7 at theta inside the step (at theta = 1 to
    rounding: there it is the step itself): order 6 exactly, 7 up to a defect whose effect,
    3e-7 h^7 times seventh derivatives, lies below its own order-8 error in practice
    (tests/ode/test_solve.py measures the interpolation error falling as h^8)."""
    tab = tableaus.VERN7
    Ae = stage_matrix(tab, interpolant=True)
    for theta in (0.3, 0.77):
        B = tab.dense @ theta ** np.arange(1, 8)
        assert 1e-7 < defect(B, Ae, 7, theta) < 5e-7
    assert defect(tab.dense.sum(axis=1), Ae, 7) < 1e-12
