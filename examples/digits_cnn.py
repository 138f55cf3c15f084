"""A small convolutional network on the bundled 8x8 handwritten digits (what ``make demo`` runs).

Two 3x3 convolutions with max pooling and a dense classifier, trained with Adam (learning
rate on a cosine schedule) by ``fl.train`` with a progress bar. It prints the test accuracy,
writes the training curves (``digits-training.png``, when matplotlib is installed) and the
trained model (``digits-cnn.safetensors``, readable by the ``safetensors`` package too) into
``--out``, then loads the file into a freshly built model and checks that it predicts the
same.

    python examples/digits_cnn.py [--epochs N] [--out FOLDER] [--quiet]

Exits with status 1 if the test accuracy is below the target (97%).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

import fluxml as fl


def build():
    he = fl.init.kaiming_uniform  # suits relu
    return fl.Chain(fl.Conv((3, 3), 1, 16, fl.relu, pad="same", init=he),  # (N, 16, 8, 8)
                    fl.MaxPool((2, 2)),  # (N, 16, 4, 4)
                    fl.Conv((3, 3), 16, 32, fl.relu, pad="same", init=he),
                    fl.MaxPool((2, 2)),  # (N, 32, 2, 2)
                    fl.Flatten(), fl.Dense(128, 10))


def accuracy(model, x, y) -> float:
    return float(np.mean(fl.onecold(model(x)) == y))


def main(epochs: int = 10, out: str = "demo-output", progress: bool = True,
         target: float = 0.97, plot: bool = True) -> int:
    fl.seed(0)
    (xtrain, ytrain), (xtest, ytest) = fl.datasets.digits()
    model = build()
    print(model)
    loader = fl.DataLoader((xtrain, ytrain), batchsize=32, shuffle=True, rng=0)
    state = fl.setup(fl.Adam(3e-3), model)
    # the learning rate falls from 3e-3 to 0 along half a cosine over the whole run
    schedule = fl.LRSchedule(fl.CosineAnneal(3e-3, period=epochs * len(loader)))

    def loss(m, x, y):
        return fl.logitcrossentropy(m(x), y)  # integer labels

    start = time.perf_counter()
    history = fl.train(loss, model, loader, state, epochs=epochs, progress=progress,
                       callbacks=[schedule, fl.Evaluate(lambda m: accuracy(m, xtest, ytest),
                                                        name="test_accuracy")])
    seconds = time.perf_counter() - start
    acc = accuracy(model, xtest, ytest)

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    fl.save(folder / "digits-cnn.safetensors", model)
    fresh = fl.loadmodel(build(), fl.load(folder / "digits-cnn.safetensors"))
    same = np.array_equal(fresh(xtest), model(xtest))
    if plot:
        try:
            history.plot(folder / "digits-training.png", title="CNN on the 8x8 digits")
            print(f"training curves: {folder / 'digits-training.png'}")
        except ImportError as err:
            print(f"no plot: {err}")
    print(f"model: {folder / 'digits-cnn.safetensors'}")
    print(f"trained {history.step} steps in {seconds:.1f} s; test accuracy {acc:.4f} "
          f"({len(ytest)} images); reloaded model predicts the same: {same}")
    ok = acc >= target and same
    print("OK" if ok else f"FAILED: test accuracy {acc:.4f} below {target}")
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", default="demo-output")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--target", type=float, default=0.97)
    args = parser.parse_args()
    sys.exit(main(args.epochs, args.out, not args.quiet, args.target))
