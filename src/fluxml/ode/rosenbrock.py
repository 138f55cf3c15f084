"""Rosenbrock (linearly implicit) solvers for stiff problems: Rosenbrock23 and Rodas5.

Each step solves linear systems with ``W = I / (h gamma) - J``, where the Jacobian
``J = df/du`` comes from fluxml's forward mode (``fl.jacobian(..., mode="fwd")``) and the
time derivative ``df/dt`` from a difference quotient. Everything is written with NumPy
calls, so the direct mode differentiates through the steps (the Jacobian included: forward
over reverse) and the adjoints solve their backward equation with the same solver.

>>> import numpy as np, fluxml as fl
>>> sol = fl.ode.solve(lambda t, u, p: -1000.0 * (u - np.cos(t)), np.zeros(1), (0.0, 1.0),
...                    solver=fl.ode.Rodas5(), saveat=[1.0], rtol=1e-6, atol=1e-8)
>>> bool(abs(sol.u[-1, 0] - np.cos(1.0)) < 1e-3)
True
"""

from __future__ import annotations

import math

import numpy as np

from fluxml.ad.core import raw
from fluxml.ode.ops import lincomb
from fluxml.ode.rk import Step

# Rodas5 (Di Marzo 1993), in Hairer's transformed form: stage values u_i = y + sum A_ij k_j,
# right-hand sides f(u_i) + h d_i f_t + sum (C_ij / h) k_j; H gives the dense output.
RODAS5_GAMMA = 0.19
RODAS5_A = (
    (),
    (2.0,),
    (3.040894194418781, 1.041747909077569),
    (2.576417536461461, 1.62208306077664, -0.9089668560264532),
    (2.760842080225597, 1.446624659844071, -0.3036980084553738, 0.2877498600325443),
    (-14.09640773051259, 6.925207756232704, -41.47510893210728, 2.343771018586405,
     24.13215229196062),
    (-14.09640773051259, 6.925207756232704, -41.47510893210728, 2.343771018586405,
     24.13215229196062, 1.0),
    (-14.09640773051259, 6.925207756232704, -41.47510893210728, 2.343771018586405,
     24.13215229196062, 1.0, 1.0),
)
RODAS5_C = (
    (),
    (-10.31323885133993,),
    (-21.04823117650003, -7.234992135176716),
    (32.22751541853323, -4.943732386540191, 19.44922031041879),
    (-20.69865579590063, -8.816374604402768, 1.260436877740897, -0.7495647613787146),
    (-46.22004352711257, -17.49534862857472, -289.6389582892057, 93.60855400400906,
     318.3822534212147),
    (34.20013733472935, -14.1553540271769, 57.823356409884, 25.83362985412365,
     1.408950972071624, -6.551835421242162),
    (42.57076742291101, -13.80770672017997, 93.98938432427124, 18.77919633714503,
     -31.5835918722337, -6.685968952921985, -5.810979938412932),
)
RODAS5_NODES = (0.0, 0.38, 0.3878509998321533, 0.483971893787384, 0.457047700881958, 1.0, 1.0,
                1.0)
RODAS5_D = (0.19, -0.1823079225333714636, -0.319231832186874912, 0.3449828624725343,
            -0.377417564392089818, 0.0, 0.0, 0.0)
RODAS5_H = (
    (27.354592673333357, -6.925207756232857, 26.40037733258859, 0.5635230501052979,
     -4.699151156849391, -1.6008677469422725, -1.5306074446748028, -1.3929872940716344),
    (44.19024239501722, 1.3677947663381929e-13, 202.93261852171622, -35.5669339789154,
     -181.91095152160645, 3.4116351403665033, 2.5793540257308067, 2.2435122582734066),
    (-44.0988150021747, -5.755396159656812e-13, -181.26175034586677, 56.99302194811676,
     183.21182741427398, -7.480257918273637, -5.792426076169686, -5.32503859794143),
)


def _check_rodas5():
    """The coefficient tables are lower triangular with one row per stage (in the
    transformed form rows do not sum to the nodes; the order test checks the numbers)."""
    s = len(RODAS5_A)
    tables = (RODAS5_A, RODAS5_C)
    if any(len(t[i]) != i for t in tables for i in range(s)) or len(RODAS5_D) != s \
            or len(RODAS5_NODES) != s or any(len(row) != s for row in RODAS5_H):
        raise ValueError("Rodas5: A, C, d, the nodes and H need one entry per stage")


_check_rodas5()


class _Rosenbrock:
    stiff = True
    adaptive = True

    def __repr__(self):
        return f"{type(self).__name__}()"

    def _linear(self, t, y, h, k1, jac):
        """``(solve, dT)``: a function solving ``W x = b`` for this step, and ``df/dt``."""
        if np.iscomplexobj(raw(y)):  # (else the Jacobian's error, naming no solver)
            raise TypeError(f"{self!r} does not take complex states (its Jacobian is of a real "
                            "state); solve the real and imaginary parts as one real state "
                            "of twice the size, or use an explicit solver such as Tsit5()")
        if np.result_type(raw(y)) == np.float16:  # (else 'array type float16 is unsupported
            raise TypeError(f"{self!r} does not take float16 states (NumPy's linear solve "  # in
                            "has none); convert the state to float32")  # linalg')
        J, dT = jac(t, y, k1, h)  # (h: the direction to take df/dt in; a retry reuses it)
        shape = np.shape(y)
        n = int(np.prod(shape))
        # the identity in the state's dtype: a float64 one made float32 states float64
        eye = np.eye(n, dtype=np.result_type(raw(y)))
        W = eye / (h * self.gamma) - np.reshape(J, (n, n))

        def solve(b):
            return np.reshape(np.linalg.solve(W, np.reshape(b, (n,))), shape)

        return solve, dT


class Rosenbrock23(_Rosenbrock):
    """Shampine's Rosenbrock 2(3) method (MATLAB's ode23s): L-stable, for stiff problems at
    loose tolerances; dense output of order 2."""

    order = 2
    fsal = True
    gamma = 1 / (2 + math.sqrt(2))  # d
    c32 = 6 + math.sqrt(2)

    def step(self, F, t, y, h, f0, jac):
        d = self.gamma
        solve, dT = self._linear(t, y, h, f0, jac)
        # W = I - h d J = h d (I/(h d) - J): divide the right-hand sides by h d
        s = 1.0 / (h * d)
        k1 = solve(s * lincomb(f0, (h * d,), (dT,)))
        f1 = F(t + h / 2, lincomb(y, (h / 2,), (k1,)))
        k2 = solve(s * (f1 - k1)) + k1
        y1 = lincomb(y, (h,), (k2,))
        f2 = F(t + h, y1)
        rhs = lincomb(f2, (-self.c32, self.c32, -2.0, 2.0, h * d), (k2, f1, k1, f0, dT))
        k3 = solve(s * rhs)
        err = lincomb(0.0 * raw(y), (h / 6, -h / 3, h / 6), (raw(k1), raw(k2), raw(k3)))
        return y1, [f0, k1, k2, f2], err

    def interpolate(self, F, step: Step, theta: float):
        d = self.gamma
        _, k1, k2, _ = step.ks
        c1 = theta * (1 - theta) / (1 - 2 * d)
        c2 = theta * (theta - 2 * d) / (1 - 2 * d)
        return lincomb(step.y0, (step.h * c1, step.h * c2), (k1, k2))


    def derivative(self, F, step: Step, theta: float):
        """The dense output's time derivative at ``t0 + theta * h``."""
        d = self.gamma
        _, k1, k2, _ = step.ks
        return lincomb(0.0 * step.y0, ((1 - 2 * theta) / (1 - 2 * d),
                                       (2 * theta - 2 * d) / (1 - 2 * d)), (k1, k2))


class Rodas5(_Rosenbrock):
    """Di Marzo's Rodas5: a stiffly accurate order-5 Rosenbrock method with an order-4
    dense output, for stiff problems at tight tolerances."""

    order = 5
    fsal = False
    gamma = RODAS5_GAMMA

    def step(self, F, t, y, h, f0, jac):
        solve, dT = self._linear(t, y, h, f0, jac)
        ks = [solve(lincomb(f0, (h * RODAS5_D[0],), (dT,)))]
        for i in range(1, len(RODAS5_A)):
            u = lincomb(y, RODAS5_A[i], ks)
            du = F(t + RODAS5_NODES[i] * h, u)
            rhs = lincomb(du, (h * RODAS5_D[i],) + tuple(c / h for c in RODAS5_C[i]),
                          (dT,) + tuple(ks))
            ks.append(solve(rhs))
        y1 = lincomb(u, (1.0,), (ks[-1],))  # stiffly accurate: the last stage value + k_s
        err = raw(ks[-1])
        return y1, [f0] + ks, err

    def interpolate(self, F, step: Step, theta: float):
        theta = float(theta)  # a NumPy float64 theta (from saveat) made float32 states float64
        ks = step.ks[1:]
        kd = [lincomb(0.0 * step.y0, row, ks) for row in RODAS5_H]
        inner = lincomb(kd[1], (theta,), (kd[2],))
        inner = lincomb(kd[0], (theta,), (inner,))
        inner = lincomb(step.y1, (1 - theta,), (inner,))
        return lincomb((1 - theta) * step.y0, (theta,), (inner,))

    def derivative(self, F, step: Step, theta: float):
        """The dense output's time derivative at ``t0 + theta * h``: with ``p(theta) = kd0 +
        theta kd1 + theta^2 kd2``, ``u = (1 - theta) y0 + theta y1 + theta (1 - theta) p``."""
        theta = float(theta)
        ks = step.ks[1:]
        kd = [lincomb(0.0 * step.y0, row, ks) for row in RODAS5_H]
        p = lincomb(kd[0], (theta, theta * theta), (kd[1], kd[2]))
        dp = lincomb(kd[1], (2 * theta,), (kd[2],))
        du = lincomb(step.y1 - step.y0, (1 - 2 * theta, theta * (1 - theta)), (p, dp))
        return du * (1.0 / step.h)
