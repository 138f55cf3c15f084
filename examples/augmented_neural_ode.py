"""Classify points inside a disk against a ring around it with an augmented neural ODE.

The flow of an ODE in the plane cannot carry the inner disk past the ring that surrounds it
(trajectories do not cross), so a plain neural ODE on 2-D points cannot separate the two
classes linearly. Augmenting the state with extra zero dimensions (Dupont, Doucet and Teh,
2019) gives the flow room: the model is

    Chain(augment to 2 + 3 dimensions, NeuralODE(Chain(Dense, Dense)), Dense(5 => 1))

trained with the logistic loss through the continuous adjoint. The script prints the loss
and the training and test accuracy.

Run: python examples/augmented_neural_ode.py [--steps 150]
"""

import argparse
import sys

import numpy as np

import fluxml as fl

EXTRA = 3  # augmented dimensions


def rings(n, rng):
    """Half the points in the disk r < 0.5 (label 0), half in the ring 1 < r < 1.5 (1)."""
    inner = n // 2
    radius = np.concatenate([rng.uniform(0.0, 0.5, inner), rng.uniform(1.0, 1.5, n - inner)])
    angle = rng.uniform(0, 2 * np.pi, n)
    x = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    y = np.concatenate([np.zeros(inner), np.ones(n - inner)])[:, None]
    return x.astype(np.float32), y.astype(np.float32)


def augment(x):
    return np.concatenate([x, np.zeros((x.shape[0], EXTRA), x.dtype)], axis=1)


def make_model(seed=0):
    fl.seed(seed)
    d = 2 + EXTRA
    flow = fl.NeuralODE(fl.Chain(fl.Dense(d, 16, np.tanh), fl.Dense(16, d)), (0.0, 1.0))
    return fl.Chain(augment, flow, fl.Dense(d, 1))


def loss(model, x, y):
    return fl.logitbinarycrossentropy(model(x), y)


def accuracy(model, x, y):
    return float(np.mean((model(x) > 0) == (y > 0.5)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--points", type=int, default=256)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    x, y = rings(args.points, rng)
    x_test, y_test = rings(args.points, rng)
    model = make_model()
    state = fl.setup(fl.Adam(0.02), model)
    first = None
    every = max(1, args.steps // 10)
    for step in range(args.steps):
        value, (g, _, _) = fl.withgradient(loss, model, x, y)
        fl.update(state, model, g)
        first = value if first is None else first
        if step % every == 0 or step == args.steps - 1:
            print(f"step {step:4d}  loss {value:.4f}  accuracy {accuracy(model, x, y):.3f}")
    test = accuracy(model, x_test, y_test)
    print(f"test accuracy {test:.3f}")
    good = test >= 0.95 if args.steps >= 150 else loss(model, x, y) < first
    print("OK" if good else "FAILED")
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
