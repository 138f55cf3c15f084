"""Data-parallel training of an MLP on the bundled 8x8 digits, one process per rank:

    mpiexec -n 2 python examples/distributed_mlp.py [--epochs N] [--out FOLDER]

(``pip install 'fluxml[distributed]'`` puts ``mpiexec`` beside the venv's ``python``.) Every
rank runs this same script. ``shard=True`` gives each rank its own half of every global batch
of ``2 * 32`` images; ``fl.train(..., distributed=True)`` starts every rank from rank 0's
parameters, averages the gradients after each backward pass, and prints progress and saves
the checkpoint on rank 0 only. Run without ``mpiexec`` it is one process of batch 32.

Rank 0 exits with status 1 if the test accuracy is below the target; every rank checks that
its parameters equal rank 0's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

import fluxml as fl


def main(epochs: int = 10, out: str = "demo-output", target: float = 0.93) -> int:
    fl.distributed.init()
    fl.seed(fl.distributed.rank())  # different on purpose: train() broadcasts rank 0's model
    (xtrain, ytrain), (xtest, ytest) = fl.datasets.digits(flat=True)
    model = fl.Chain(fl.Dense(64, 128, np.tanh), fl.Dense(128, 10))
    state = fl.setup(fl.Adam(3e-3), model)
    loader = fl.DataLoader((xtrain, ytrain), batchsize=32, shuffle=True, rng=0, shard=True)
    if fl.distributed.is_main():
        Path(out).mkdir(parents=True, exist_ok=True)
    checkpoint = fl.SaveCheckpoint(Path(out) / "distributed-mlp.safetensors")

    def loss(m, x, y):
        return fl.logitcrossentropy(m(x), y)

    history = fl.train(loss, model, loader, state, epochs=epochs, callbacks=[checkpoint],
                       progress=sys.stderr.isatty(), distributed=True)
    fl.distributed.check_synced(model)  # raises if any rank's parameters differ from rank 0's
    if not fl.distributed.is_main():
        return 0
    acc = float(np.mean(fl.onecold(model(xtest)) == ytest))
    print(f"{fl.distributed.world_size()} ranks, {len(loader)} steps per epoch of "
          f"{loader.batchsize} images per rank; final loss {history.epochs[-1]['loss']:.4f}, "
          f"test accuracy {acc:.3f}; checkpoint {checkpoint.saved[-1]}")
    if acc < target:
        print(f"FAILED: test accuracy {acc:.3f} below {target}")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", default="demo-output")
    args = parser.parse_args()
    sys.exit(main(args.epochs, args.out))
