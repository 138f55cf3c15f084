"""Fit a projectile's launch speed and air drag to a noisy trajectory, by gradient descent.

The simulation is plain NumPy, written the way a physicist writes it: explicit time
stepping that updates the state vectors in place (``vel += ...``) and fills a preallocated
trajectory array (``traj[i + 1] = pos``). ``fl.gradient`` differentiates it as written, and
gradient descent with momentum recovers the parameters that produced the observations.

    python examples/projectile.py

Exits with status 1 if the gradient disagrees with finite differences or the fit fails.
"""

from __future__ import annotations

import sys
import time

import numpy as np

import fluxml as fl

GRAVITY = np.array([0.0, -9.81])  # m/s^2
ANGLE = np.deg2rad(50.0)  # launch angle, known
DT = 0.02  # s
STEPS = 100  # two seconds of flight
NOISE = 0.05  # m, standard deviation of the position measurements


def simulate(speed, drag):
    """Positions ``(STEPS + 1, 2)`` of a projectile with quadratic drag
    ``dv/dt = g - drag * |v| * v``, by semi-implicit Euler steps."""
    vel = speed * np.array([np.cos(ANGLE), np.sin(ANGLE)])
    pos = np.zeros_like(vel)
    traj = np.zeros_like(vel, shape=(STEPS + 1, 2))
    for i in range(STEPS):
        vel += DT * (GRAVITY - drag * np.sum(vel**2) ** 0.5 * vel)
        pos += DT * vel
        traj[i + 1] = pos
    return traj


def physical(params):
    """We fit logarithms, so that both parameters live on the same scale and stay positive."""
    return np.exp(params["log_speed"]), np.exp(params["log_drag"])


def make_loss(observed):
    def loss(params):
        speed, drag = physical(params)
        return np.sum((simulate(speed, drag) - observed) ** 2) / len(observed)

    return loss


def check_gradient(loss, params, eps=1e-6) -> float:
    """The largest relative difference between ``fl.gradient`` and central differences."""
    (grad,) = fl.gradient(loss, params)
    worst = 0.0
    for name, value in params.items():
        up = loss({**params, name: value + eps})
        down = loss({**params, name: value - eps})
        fd = (up - down) / (2 * eps)
        error = abs(grad[name] - fd) / max(abs(fd), 1e-12)
        print(f"  d loss / d {name:<9}  fluxml {grad[name]:+.8e}   finite differences "
              f"{fd:+.8e}   relative difference {error:.1e}")
        worst = max(worst, error)
    return worst


def fit(loss, params, steps=200, lr=3e-3, momentum=0.8, every=20):
    """Gradient descent with (heavy-ball) momentum; prints the loss as it falls."""
    velocity = fl.fmap(lambda p: 0.0, params)
    for step in range(steps + 1):
        value, (grad,) = fl.withgradient(loss, params)
        if step % every == 0:
            speed, drag = physical(params)
            print(f"  step {step:4d}   loss {value:12.6f}   speed {speed:8.4f} m/s   "
                  f"drag {drag:.5f} 1/m")
        if step == steps:
            return params, value
        velocity = fl.fmap(lambda v, g: momentum * v - lr * g, velocity, grad)
        params = fl.fmap(lambda p, v: p + v, params, velocity)


def main() -> int:
    rng = np.random.default_rng(0)
    true_speed, true_drag = 25.0, 0.03
    observed = simulate(true_speed, true_drag)
    observed = observed + NOISE * rng.standard_normal(observed.shape)
    loss = make_loss(observed)
    guess = {"log_speed": np.log(15.0), "log_drag": np.log(0.1)}

    print("Gradient check at the initial guess:")
    worst = check_gradient(loss, guess)
    if worst > 1e-5:
        print(f"FAILED: the gradient differs from finite differences by {worst:.1e}")
        return 1

    print(f"\nFitting launch speed and drag to {len(observed)} noisy positions:")
    start = time.perf_counter()
    params, final = fit(loss, guess)
    seconds = time.perf_counter() - start

    speed, drag = physical(params)
    print(f"\n  {'':6} {'fitted':>10} {'true':>10} {'error':>8}")
    errors = []
    for name, got, true in (("speed", speed, true_speed), ("drag", drag, true_drag)):
        errors.append(abs(got - true) / true)
        print(f"  {name:6} {got:10.5f} {true:10.5f} {errors[-1]:8.2%}")
    print(f"  final loss {final:.6f} (measurement noise alone gives about "
          f"{2 * NOISE**2:.6f}); {seconds:.1f} s")

    if max(errors) > 0.02 or final > 4 * NOISE**2:
        print("FAILED: the fit did not converge to the true parameters")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
