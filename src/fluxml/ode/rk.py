"""The explicit Runge-Kutta engine: one step of any tableau, and its dense output.

A solver is its tableau plus this engine; adding one is a tableau in ``tableaus.py`` and a
three-line class here.

>>> import numpy as np, fluxml as fl
>>> sol = fl.ode.solve(lambda t, u, p: -u, np.array([1.0]), (0.0, 1.0), solver=fl.ode.RK4(),
...                    dt=0.1, saveat=[1.0])
>>> bool(abs(sol.u[-1, 0] - np.exp(-1.0)) < 1e-6)
True
"""

from __future__ import annotations

import numpy as np

from fluxml._dtypes import real_dtype
from fluxml.ad.core import raw
from fluxml.backend.registry import array_module
from fluxml.ode import tableaus
from fluxml.ode.ops import combine_rows, lincomb, rows, stack_rows


class Step:
    """An accepted step: enough to interpolate inside it (``K`` is completed lazily)."""

    __slots__ = ("t0", "h", "y0", "y1", "ks", "f1", "extra", "kmat")

    def __init__(self, t0, h, y0, y1, ks):
        self.t0, self.h, self.y0, self.y1, self.ks = t0, h, y0, y1, ks
        self.f1 = None  # f(t1, y1) when the method is not FSAL: the next step's first stage
        self.extra = None
        self.kmat = None  # plain values: every stage as the rows of one matrix


_COEFFICIENTS: dict = {}


def _coefficients(tab, dtype):
    """The tableau as arrays of ``dtype``'s real precision (float32 and complex64 states
    stay single precision; the coefficients are real for complex states): a, b, b_err."""
    dtype = real_dtype(dtype)
    key = (id(tab), dtype)
    got = _COEFFICIENTS.get(key)
    if got is None:
        s = tab.stages
        a = np.zeros((s, s), dtype)
        for i, row in enumerate(tab.a):
            a[i, :i] = row
        err = np.asarray(tab.b_err if tab.b_err is not None else np.zeros(s), dtype)
        got = _COEFFICIENTS[key] = (a, np.asarray(tab.b, dtype), err, tab)
    return got[:3]


def _plain(*xs) -> bool:
    return all(type(x) is np.ndarray for x in xs)


class ExplicitRK:
    """An explicit Runge-Kutta solver given by a :class:`~fluxml.ode.tableaus.Tableau`."""

    tableau: tableaus.Tableau
    stiff = False

    @property
    def order(self) -> int:
        return self.tableau.order

    @property
    def adaptive(self) -> bool:
        return self.tableau.adaptive

    @property
    def fsal(self) -> bool:
        return self.tableau.fsal

    def __repr__(self):
        return f"{type(self).__name__}()"

    def step(self, F, t, y, h, k1):
        """``(y1, stages, err)``; ``err`` is the local error estimate (plain values), None for
        fixed-step methods. A traced step (the direct mode) computes the plain step's values
        bit for bit (``rows``), so it takes the plain solve's steps wherever ``f`` itself
        computes the same bits traced as plain (NumPy's scalar and array paths can differ in
        the last bit, ``u[0] ** 2`` on a NumPy float64 against a 0-d array: then the steps,
        and with ``saveat=None`` the save times, can differ in their last bits)."""
        if _plain(y, k1):
            done = self._step_plain(F, t, y, h, k1)
            if done is not None:
                return done
        tab = self.tableau
        dtype = np.result_type(raw(y), raw(k1))
        a, b, e = _coefficients(tab, dtype)
        ks = [k1]
        for i in range(1, tab.stages):
            yi = rows(y, h * a[i, :i], ks)
            ks.append(F(t + tab.c[i] * h, yi))
        y1 = yi if tab.fsal else rows(y, h * b, ks)  # FSAL: the last stage's a row is b
        err = None
        if tab.b_err is not None:
            K = stack_rows([raw(k) for k in ks], dtype)
            xp = array_module(K)  # (CuPy stages: the estimate computed on their device)
            err = (xp.asarray(h * e) @ K).reshape(np.shape(raw(y)))
        return y1, ks, err

    def _step_plain(self, F, t, y, h, k1):
        """The same step on plain arrays, with the stages as the rows of one matrix so that
        each stage value is one matrix product (not a sum of scaled arrays); None when ``f``
        returns a traced value (it closes over one): the general step records it."""
        tab = self.tableau
        dtype = np.result_type(y, k1)
        a, b, e = _coefficients(tab, dtype)
        s, shape = tab.stages, y.shape
        K = np.empty((s, y.size), dtype)
        K[0] = k1.reshape(-1)
        yi = y
        for i in range(1, s):
            yi = combine_rows(y, h * a[i, :i], K[:i])
            k = F(t + tab.c[i] * h, yi)
            if type(k) is not np.ndarray:
                return None
            K[i] = k.reshape(-1)
        y1 = yi if tab.fsal else combine_rows(y, h * b, K)
        err = ((h * e) @ K).reshape(shape) if tab.b_err is not None else None
        return y1, [row.reshape(shape) for row in K], err

    def stages(self, F, step: Step) -> list:
        """Every stage the interpolant reads: the step's, ``f(t1, y1)`` and extra stages."""
        tab = self.tableau
        K = list(step.ks)
        if not tab.fsal:
            if step.f1 is None:
                step.f1 = F(step.t0 + step.h, step.y1)
            K.append(step.f1)
        if tab.extra:
            if step.extra is None:
                step.extra = []
                for c, row in tab.extra:
                    yi = lincomb(step.y0, [step.h * a for a in row], K + step.extra)
                    step.extra.append(F(step.t0 + c * step.h, yi))
            K += step.extra
        return K

    def interpolate(self, F, step: Step, theta: float):
        """The solution at ``t0 + theta * h`` inside ``step``, of the tableau's dense order."""
        dense = self.tableau.dense
        powers = theta ** np.arange(1, dense.shape[1] + 1)
        weights = step.h * (dense @ powers)
        if step.kmat is None:
            K = self.stages(F, step)
            if not _plain(step.y0, *K):
                return rows(step.y0, weights.astype(real_dtype(np.result_type(*map(raw, K)))), K)
            step.kmat = stack_rows(K, np.result_type(*K))
        return combine_rows(step.y0, weights.astype(real_dtype(step.kmat.dtype)), step.kmat)


    def derivative(self, F, step: Step, theta: float):
        """The dense output's time derivative at ``t0 + theta * h`` (one order below it)."""
        dense = self.tableau.dense
        j = np.arange(1, dense.shape[1] + 1)
        weights = dense @ (j * theta ** (j - 1))
        K = self.stages(F, step)
        return lincomb(0.0 * step.y0, [float(w) for w in weights], K)


def _solver(name, tab, doc):
    cls = type(name, (ExplicitRK,), {"tableau": tab, "__doc__": doc})
    cls.__module__ = __name__
    return cls


Euler = _solver("Euler", tableaus.EULER, "Forward Euler, order 1 (fixed step: pass ``dt``).")
Midpoint = _solver("Midpoint", tableaus.MIDPOINT, "Explicit midpoint, order 2 (fixed step).")
Heun = _solver("Heun", tableaus.HEUN, "Heun's method, order 2 (fixed step).")
RK4 = _solver("RK4", tableaus.RK4, "The classical Runge-Kutta method, order 4 (fixed step).")
BS3 = _solver("BS3", tableaus.BS3, "Bogacki-Shampine 3(2), adaptive, cubic dense output.")
DP5 = _solver("DP5", tableaus.DP5, "Dormand-Prince 5(4) (dopri5), adaptive, order-4 dense "
              "output.")
Tsit5 = _solver("Tsit5", tableaus.TSIT5, "Tsitouras 5(4), adaptive, order-4 dense output: the "
                "default non-stiff solver.")
Vern7 = _solver("Vern7", tableaus.VERN7, "Verner's efficient 7(6), adaptive, with his "
                "interpolant (5 extra evaluations in each interpolated step): for tight "
                "tolerances. The dense output is of order 6, and meets the order-7 conditions "
                "to 3e-7 (OrdinaryDiffEq's coefficients, the same digits): its error falls "
                "as an order-7 one's in practice.")
