"""Differentiate a leapfrog N-body integrator that updates its state in place.

Three bodies attract each other; the integrator below is plain NumPy that keeps positions and
velocities in preallocated arrays and updates them in place (``vel += ...``,
``pos[...] += ...``), recording the trajectory row by row. fluxml differentiates where body 0
ends up with respect to the initial velocities and the gravitational constant, and the script
checks those derivatives against central finite differences. Then it aims body 0 at a target
by adjusting its initial velocity with Gauss-Newton steps (the Jacobian of the final position
through the whole in-place simulation).

Run: python examples/nbody.py
"""

import numpy as np

import fluxml as fl


def accelerations(pos, masses, G, softening=0.05):
    diff = pos[None, :, :] - pos[:, None, :]  # diff[i, j] = pos[j] - pos[i]
    dist3 = (np.sum(diff**2, axis=-1) + softening**2) ** 1.5
    return G * np.sum(masses[None, :, None] * diff / dist3[:, :, None], axis=1)


def simulate(pos0, vel0, masses, G, steps=200, dt=0.01):
    """Kick-drift-kick leapfrog; returns the trajectory, shape (steps + 1, bodies, 2)."""
    # Traced copies of the initial state (pos0 may be a constant while vel0 is traced): the
    # updates below write traced values into them.
    pos = np.array(pos0, like=vel0)
    vel = np.array(vel0, like=vel0)
    traj = np.zeros((steps + 1,) + pos.shape, like=vel0)
    traj[0] = pos
    acc = accelerations(pos, masses, G)
    for step in range(1, steps + 1):
        vel += 0.5 * dt * acc
        pos += dt * vel
        acc = accelerations(pos, masses, G)
        vel += 0.5 * dt * acc
        traj[step] = pos
    return traj


def final_position(vel0, G, pos0, masses):
    return simulate(pos0, vel0, masses, G)[-1, 0]


def main():
    pos0 = np.array([[0.0, 0.0], [1.0, 0.0], [-0.5, 0.8]])
    vel0 = np.array([[0.0, 0.3], [0.0, 1.0], [-0.8, -0.3]])
    masses = np.array([1.0, 0.3, 0.2])
    G = 1.0

    # 1. derivatives through the in-place integrator against finite differences
    loss = lambda vel0, G: np.sum(final_position(vel0, G, pos0, masses) ** 2)
    g_vel, g_G = fl.gradient(loss, vel0, G)
    eps = 1e-6
    e = np.zeros_like(vel0)
    e[1, 0] = eps
    fd_vel = (loss(vel0 + e, G) - loss(vel0 - e, G)) / (2 * eps)
    fd_G = (loss(vel0, G + eps) - loss(vel0, G - eps)) / (2 * eps)
    print(f"d/dvel0[1,0]: fluxml {g_vel[1, 0]:+.8e}   finite differences {fd_vel:+.8e}")
    print(f"d/dG:         fluxml {g_G:+.8e}   finite differences {fd_G:+.8e}")
    assert abs(g_vel[1, 0] - fd_vel) <= 1e-5 * abs(fd_vel) + 1e-9
    assert abs(g_G - fd_G) <= 1e-5 * abs(fd_G) + 1e-9

    # 2. aim body 0 at a target: Gauss-Newton on its initial velocity
    target = np.array([0.25, 0.45])
    v0 = vel0[0].copy()

    def landing(v):
        vel = np.concatenate([v[None], vel0[1:]])
        return final_position(vel, G, pos0, masses)

    for step in range(6):
        miss = fl.pullback(landing, v0)[0] - target
        J = fl.jacobian(landing, v0)
        v0 = v0 - np.linalg.solve(J, miss)
        print(f"Gauss-Newton step {step}  miss {np.linalg.norm(miss):.3e}")
    miss = np.linalg.norm(landing(v0) - target)
    print(f"initial velocity of body 0: {v0.round(6)}; final miss {miss:.2e}")
    assert miss < 1e-8, "the aim did not converge"


if __name__ == "__main__":
    main()
