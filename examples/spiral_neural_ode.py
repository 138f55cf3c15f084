"""Fit a neural ODE to a spiral (the DiffEqFlux / torchdiffeq demonstration).

The data come from the true system du/dt = A u**3 with A = [[-0.1, 2.0], [-2.0, -0.1]],
u(0) = [2, 0], observed at 30 times in [0, 1.5]. The model is du/dt = net(u**3) with a
2-50-2 tanh network, wrapped in ``fl.NeuralODE``; Adam trains it through the solver. The
script prints the loss as it falls and, when matplotlib is installed, plots the fit.

Run: python examples/spiral_neural_ode.py [--steps 300] [--plot spiral.png]
"""

import argparse
import sys

import numpy as np

import fluxml as fl

A = np.array([[-0.1, 2.0], [-2.0, -0.1]])
U0 = np.array([[2.0, 0.0]], np.float32)  # a batch of one state: (N, features)
TSPAN = (0.0, 1.5)
TIMES = np.linspace(*TSPAN, 30)


def true_trajectory():
    sol = fl.ode.solve(lambda t, u, p: u**3 @ A.T, U0.astype(np.float64), TSPAN,
                       saveat=TIMES, rtol=1e-10, atol=1e-10)
    return sol.u.astype(np.float32)  # (30, 1, 2)


def cube(u):
    return u**3


def make_model(seed=0):
    fl.seed(seed)
    net = fl.Chain(cube, fl.Dense(2, 50, np.tanh), fl.Dense(50, 2))
    # Direct: backpropagate through the solver's steps; fastest at this size (see
    # benchmarks/ode.py). An adjoint (the NeuralODE default) keeps memory flat instead.
    return fl.NeuralODE(net, TSPAN, saveat=TIMES, sensealg=fl.ode.Direct(), rtol=1e-3,
                        atol=1e-6)


def loss(model, data):
    return np.mean((model(U0) - data) ** 2)


def fit(model, data, steps=300, every=25, lr=0.05):
    state = fl.setup(fl.Adam(lr), model)
    losses = []
    for step in range(steps):
        value, (g, _) = fl.withgradient(loss, model, data)
        fl.update(state, model, g)
        losses.append(float(value))
        if step % every == 0 or step == steps - 1:
            print(f"step {step:4d}  loss {value:.5f}")
    return losses


def plot(model, data, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot")
        return
    pred = model(U0)
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot(data[:, 0, 0], data[:, 0, 1], "o", label="data")
    ax.plot(pred[:, 0, 0], pred[:, 0, 1], "-", label="neural ODE")
    ax.legend()
    fig.savefig(path, dpi=100)
    print(f"plot saved to {path}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--plot", default="spiral_fit.png", help="'' for no plot")
    args = parser.parse_args(argv)
    data = true_trajectory()
    model = make_model()
    losses = fit(model, data, steps=args.steps, every=max(1, args.steps // 12))
    if args.plot:
        plot(model, data, args.plot)
    improved = losses[-1] < 0.5 * losses[0]
    print("OK" if improved else "FAILED: the loss did not halve")
    return 0 if improved else 1


if __name__ == "__main__":
    sys.exit(main())
