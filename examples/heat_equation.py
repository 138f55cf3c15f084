"""Differentiate an explicit finite-difference heat equation written in place.

The solver below is ordinary NumPy, the way a scientist writes it: copy the state, then
update the interior in place every step (``u[1:-1] += ...``). fluxml differentiates it as
written, with respect to the initial temperature profile and the diffusion coefficient, and
the script checks both derivatives against central finite differences. Then it recovers an
unknown diffusion coefficient from a measured final profile by Newton's method.

Run: python examples/heat_equation.py
"""

import numpy as np

import fluxml as fl


def simulate(u0, kappa, steps=400, dx=0.05, dt=0.001):
    """Temperature after ``steps`` explicit Euler steps; the ends are held fixed."""
    u = u0.copy()
    r = kappa * dt / dx**2
    for _ in range(steps):
        u[1:-1] += r * (u[2:] - 2 * u[1:-1] + u[:-2])
    return u


def mismatch(u0, kappa, measured):
    return np.mean((simulate(u0, kappa) - measured) ** 2)


def main():
    x = np.linspace(0.0, 1.0, 21)
    u0 = np.sin(np.pi * x) + 0.3 * np.sin(3 * np.pi * x)
    true_kappa = 0.8
    measured = simulate(u0, true_kappa)

    # 1. derivatives of the in-place solver against finite differences
    kappa = 0.5
    g_u0, g_kappa = fl.gradient(mismatch, u0, kappa, measured)[:2]
    eps = 1e-6
    fd_kappa = (mismatch(u0, kappa + eps, measured) - mismatch(u0, kappa - eps, measured)) / (
        2 * eps)
    e = np.zeros_like(u0)
    e[7] = eps
    fd_u0 = (mismatch(u0 + e, kappa, measured) - mismatch(u0 - e, kappa, measured)) / (2 * eps)
    print(f"d/dkappa: fluxml {g_kappa:.8e}   finite differences {fd_kappa:.8e}")
    print(f"d/du0[7]: fluxml {g_u0[7]:.8e}   finite differences {fd_u0:.8e}")
    assert abs(g_kappa - fd_kappa) <= 1e-6 * abs(fd_kappa) + 1e-12
    assert abs(g_u0[7] - fd_u0) <= 1e-6 * abs(fd_u0) + 1e-12

    # 2. recover the diffusion coefficient from the measurement by Newton's method: the
    # second derivative is a gradient of a gradient through the same in-place loop. u0 is an
    # argument too: the solver writes into a copy of it, and a traced value can only be
    # written into a traced buffer (a plain NumPy buffer would drop the derivative, so
    # fluxml refuses with an error that says so).
    slope = lambda k: fl.gradient(mismatch, u0, k, measured)[1]
    for step in range(8):
        loss = mismatch(u0, kappa, measured)
        (curvature,) = fl.gradient(slope, kappa)
        kappa -= slope(kappa) / curvature
        print(f"Newton step {step}  loss {loss:.3e}  kappa {kappa:.6f}")
    print(f"recovered kappa {kappa:.5f} (true {true_kappa})")
    assert abs(kappa - true_kappa) < 1e-6, "the fit did not converge"


if __name__ == "__main__":
    main()
