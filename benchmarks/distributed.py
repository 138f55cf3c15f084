"""Data-parallel training on MPI: step time with 1 and 2 ranks (weak scaling: the same batch
per rank) for the MLP 784-512-512-10 and LeNet-5, fluxml's gradient averaging beside a raw
``mpi4py`` ``Allreduce`` of the same bytes, and the fraction of the allreduce hidden.

    .venv/bin/python benchmarks/distributed.py [--steps N] [--bucket-mb MB]

(run with the project's venv: it needs ``mpi4py`` and the ``mpiexec`` of the ``distributed``
extra). The script launches itself under ``mpiexec -n 1`` and ``-n 2`` and prints one table.
A step is what ``fl.train(..., distributed=True)`` does per batch: ``withgradient``, the
averaging (``GradientAverager``), ``fl.update`` with Adam; float32.

Read the numbers for what they are on a 2-core machine shared with other jobs: two ranks
share the two cores (and whatever else runs), so weak-scaling efficiency measures contention
more than fluxml; the "bandwidth" is a memory copy through MPICH's shared-memory channel, not
a network. The ratio fluxml / raw ``Allreduce`` of the same bytes, measured in the same run,
is the meaningful figure; "raw I" is one ``Iallreduce`` waited for as fluxml waits (on a
loaded machine MPICH's blocking ``Allreduce`` of megabytes is often several times slower
than that). Each is timed call by call, alternated; the tables give the median and the 10th
percentile (the calls during which both ranks had a core: what the code costs). What fluxml
adds to one allreduce is the copy of the gradients into the buckets (scaled by the rank's
share of the batch) and ~20-40 us of Python per step (taking the gradients out of the tree,
checking them against the plan, rebuilding the tree). Through shared memory an allreduce is
itself a few memory passes, so that one more pass weighs a third or more of it; on a network
link it would weigh less. Overlap: fluxml's reverse sweep is synchronous, so nothing of the
allreduce hides behind the backward pass; what can hide is the packing of later buckets,
reported as "hidden".
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import fluxml as fl

MLP_BATCH, LENET_BATCH = 64, 32


def mlp():
    model = fl.Chain(fl.Dense(784, 512, fl.relu), fl.Dense(512, 512, fl.relu),
                     fl.Dense(512, 10))
    rng = np.random.default_rng(fl.distributed.rank())
    x = rng.standard_normal((MLP_BATCH, 784)).astype(np.float32)
    return model, x, rng.integers(0, 10, MLP_BATCH)


def lenet():
    model = fl.Chain(fl.Conv((5, 5), 1, 6, fl.relu), fl.MaxPool((2, 2)),
                     fl.Conv((5, 5), 6, 16, fl.relu), fl.MaxPool((2, 2)), fl.Flatten(),
                     fl.Dense(256, 120, fl.relu), fl.Dense(120, 84, fl.relu),
                     fl.Dense(84, 10))
    rng = np.random.default_rng(fl.distributed.rank())
    x = rng.standard_normal((LENET_BATCH, 1, 28, 28)).astype(np.float32)
    return model, x, rng.integers(0, 10, LENET_BATCH)


def _median_of(fn, steps):
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def measure(g, build, steps: int, bucket_bytes: int) -> dict:
    """Step time, then fluxml's averaging, a raw Allreduce of the same bytes and the packing
    alone, alternated call by call so that the load of a shared machine falls on all alike."""
    MPI = g.MPI
    fl.seed(0)
    model, x, y = build()
    state = fl.setup(fl.Adam(1e-3), model)
    model, state = fl.distributed.broadcast(model), fl.distributed.broadcast(state)
    averager = fl.distributed.GradientAverager(bucket_bytes)
    last = {}

    def step():
        value, (grads,) = fl.withgradient(lambda m: fl.logitcrossentropy(m(x), y), model)
        value, grads, _ = averager.average(value, grads, len(y))
        fl.update(state, model, grads)
        last["grads"] = grads

    for _ in range(3):
        step()
    g.comm.Barrier()
    t_step = _median_of(step, steps)
    grads = fl.fmap(np.array, last["grads"])  # copies: the averaged ones are the buckets
    leaves = [a for a in fl.leaves(grads) if isinstance(a, np.ndarray)]
    flat = np.concatenate([a.ravel() for a in leaves])

    def average():
        averager.average(1.0, grads, len(y))

    def raw():
        g.comm.Allreduce(MPI.IN_PLACE, flat, op=MPI.SUM)

    def raw_nonblocking():  # one Iallreduce, waited for as fluxml waits (Group.wait)
        g.wait([g.comm.Iallreduce(MPI.IN_PLACE, flat, op=MPI.SUM)], "the benchmark")

    def local():  # the packing alone (what the averaging adds to the copy), no communication
        positions = averager.gather(grads)
        for b in averager.buckets:
            for pos, _, dtype, view in b.items:
                np.multiply(positions[pos], dtype.type(0.5), out=view)

    average()
    raw()
    g.comm.Barrier()
    phases = []
    for _ in range(steps * 10):
        phases.append((_median_of(average, 1), _median_of(raw, 1),
                       _median_of(raw_nonblocking, 1) if g.size > 1 else 0.0,
                       _median_of(local, 1) if g.size > 1 else 0.0))
    stats = {}
    for q in (50, 10):  # the median, and the quietest tenth (both ranks on a core)
        t_avg, t_raw, t_iraw, t_local = (float(np.percentile(t, q)) for t in zip(*phases))
        stats[q] = {"avg": t_avg, "raw": t_raw, "iraw": t_iraw, "local": t_local}
    return {"step": t_step, "stats": stats, "bytes": int(flat.nbytes),
            "buckets": len(averager.buckets), "batch": len(y)}


def worker(steps: int, bucket_bytes: int) -> dict:
    g = fl.distributed.init(timeout=120)
    return {name: measure(g, build, steps, bucket_bytes)
            for name, build in (("MLP 784-512-512-10", mlp), ("LeNet-5", lenet))}


def launch(n: int, steps: int, bucket_mb: float) -> dict:
    mpiexec = Path(sys.executable).parent / "mpiexec"
    cmd = [str(mpiexec), "-n", str(n), sys.executable, __file__, "--worker",
           "--steps", str(steps), "--bucket-mb", str(bucket_mb)]
    # one BLAS thread per rank (as MPI jobs run NumPy): threads of two ranks on two cores
    # would fight over them, and OpenBLAS's idle threads spin
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(steps: int, bucket_mb: float) -> None:
    runs = {n: launch(n, steps, bucket_mb) for n in (1, 2)}
    print(f"fluxml data-parallel, float32, Adam, median of {steps} steps; "
          f"weak scaling (the same batch per rank)\n")
    print(f"{'model':<20} {'ranks':>5} {'batch/rank':>10} {'step ms':>8} "
          f"{'samples/s':>10} {'efficiency':>10}")
    for name in runs[1]:
        one = runs[1][name]
        for n in (1, 2):
            r = runs[n][name]
            rate = n * r["batch"] / r["step"]
            print(f"{name:<20} {n:>5} {r['batch']:>10} {r['step'] * 1e3:>8.2f} {rate:>10,.0f} "
                  f"{one['step'] / r['step']:>10.2f}")
    for q, what in (("50", "median"), ("10", "10th percentile: the quietest tenth of calls")):
        print(f"\ngradient averaging with 2 ranks (buckets of {bucket_mb:g} MiB) beside raw "
              f"mpi4py Allreduce of the same bytes (one message); {what}\n")
        print(f"{'model':<20} {'MB':>6} {'buckets':>7} {'fluxml ms':>9} {'raw ms':>7} "
              f"{'raw I ms':>8} {'fluxml GB/s':>11} {'raw GB/s':>8} {'raw/fluxml':>10} "
              f"{'raw I/fluxml':>12} {'hidden':>6}")
        for name, run in runs[2].items():
            r, gb = run["stats"][q], run["bytes"] / 1e9
            hidden = (r["raw"] + r["local"] - r["avg"]) / r["raw"]
            print(f"{name:<20} {run['bytes'] / 1e6:>6.2f} {run['buckets']:>7} "
                  f"{r['avg'] * 1e3:>9.3f} {r['raw'] * 1e3:>7.3f} {r['iraw'] * 1e3:>8.3f} "
                  f"{gb / r['avg']:>11.2f} {gb / r['raw']:>8.2f} {r['raw'] / r['avg']:>10.2f} "
                  f"{r['iraw'] / r['avg']:>12.2f} {max(0.0, min(1.0, hidden)):>6.0%}")
    print("\n'raw': one blocking Allreduce of the same bytes; 'raw I': one Iallreduce waited "
          "for as fluxml waits (spinning, then yielding the core); 'raw/fluxml' 1.00 is parity, "
          "the target is >= 0.90.")
    print("'hidden': (raw allreduce + packing/scaling alone - fluxml's averaging) / raw "
          "allreduce: the share of the communication that overlapped the packing and scaling "
          "of other buckets (none can overlap the backward pass: the sweep is synchronous).")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--bucket-mb", type=float, default=1.0)
    parser.add_argument("--worker", action="store_true")
    args = parser.parse_args()
    if args.worker:
        result = worker(args.steps, int(args.bucket_mb * 2**20))
        if fl.distributed.is_main():
            print(json.dumps(result))
    else:
        main(args.steps, args.bucket_mb)
