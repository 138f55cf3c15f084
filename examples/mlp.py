"""A multilayer perceptron on the bundled 8x8 handwritten digits: the whole workflow in a page.

Load the data (shipped inside fluxml: no download), build ``Dense`` layers, train with Adam
and ``fl.train`` (progress bar, per-epoch test accuracy), save the model to a safetensors
file, load it into a fresh model and check that it predicts the same, and plot the training
curves (when matplotlib is installed).

    python examples/mlp.py [--epochs N] [--out FOLDER] [--quiet]

Exits with status 1 if the test accuracy is below the target.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

import fluxml as fl


def build():
    return fl.Chain(fl.Dense(64, 128, np.tanh), fl.Dense(128, 10))


def accuracy(model, x, y) -> float:
    return float(np.mean(fl.onecold(model(x)) == y))


def main(epochs: int = 20, out: str = "demo-output", progress: bool = True,
         target: float = 0.96, plot: bool = True) -> int:
    fl.seed(0)
    (xtrain, ytrain), (xtest, ytest) = fl.datasets.digits(flat=True)
    model = build()
    print(model)
    loader = fl.DataLoader((xtrain, ytrain), batchsize=32, shuffle=True, rng=0)
    state = fl.setup(fl.Adam(3e-3), model)

    def loss(m, x, y):
        return fl.logitcrossentropy(m(x), y)  # integer labels

    start = time.perf_counter()
    history = fl.train(loss, model, loader, state, epochs=epochs, progress=progress,
                       callbacks=[fl.Evaluate(lambda m: accuracy(m, xtest, ytest),
                                              name="test_accuracy")])
    seconds = time.perf_counter() - start
    acc = accuracy(model, xtest, ytest)

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    fl.save(folder / "mlp.safetensors", model)
    fresh = fl.loadmodel(build(), fl.load(folder / "mlp.safetensors"))
    same = np.array_equal(fresh(xtest), model(xtest))
    if plot:
        try:
            history.plot(folder / "mlp-training.png", title="MLP on the 8x8 digits")
            print(f"training curves: {folder / 'mlp-training.png'}")
        except ImportError as err:
            print(f"no plot: {err}")
    print(f"trained {history.step} steps in {seconds:.1f} s; test accuracy {acc:.4f} "
          f"({len(ytest)} images); reloaded model predicts the same: {same}")
    ok = acc >= target and same
    print("OK" if ok else f"FAILED: test accuracy {acc:.4f} below {target}")
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--out", default="demo-output")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--target", type=float, default=0.96)
    args = parser.parse_args()
    sys.exit(main(args.epochs, args.out, not args.quiet, args.target))
