"""Data-parallel training on MPI: step time with 1 and 2 ranks (weak scaling: the same batch
per rank) for the MLP 784-512-512-10 and LeNet-5, and fluxml's gradient averaging beside a raw
``mpi4py`` allreduce of the same bytes, for the two models' gradients and for gradient trees
of a range of sizes.

    .venv/bin/python benchmarks/distributed.py [--steps N] [--bucket-mb MB] [--sizes-mb LIST]
                                               [--baseline REV]

(run with the project's venv: it needs ``mpi4py`` and the ``mpiexec`` of the ``distributed``
extra). The script launches itself under ``mpiexec -n 1`` and ``-n 2`` and prints the tables.
A step is what ``fl.train(..., distributed=True)`` does per batch: ``withgradient``, the
averaging (``GradientAverager(in_place=True)``, as ``fl.train`` makes it), ``fl.update``
with Adam; float32. ``--baseline REV`` also times the ``GradientAverager`` of the commit
``REV`` (its ``averaging.py``, ``bucket.py``, ``layout.py``, ``shared.py`` and ``overlap.py``,
with today's other modules) in the same run, call by call alternated with today's: before and
after, measured under the same load.

Read the numbers for what they are on a 2-core machine shared with other jobs: two ranks
share the two cores (and whatever else runs), so weak-scaling efficiency measures contention
more than fluxml; the "bandwidth" is memory copies through MPICH's shared-memory channel, not
a network. The ratio raw / fluxml of the same bytes, measured in the same run, is the
meaningful figure. "raw I" is one ``Iallreduce`` of all the bytes in one flat array, waited
for as fluxml waits (spinning, then yielding the core); "raw A" the blocking ``Allreduce`` (on
a loaded machine MPICH's blocking ``Allreduce`` of megabytes is often several times slower);
"plan" raw ``mpi4py`` sending fluxml's own messages (one per bucket and per gradient that
travels alone, the first waited for before the others are posted), which splits the gap in
two: rawI/plan is what MPI charges for several messages instead of one, plan/fluxml what
fluxml's own work costs. Minor page faults (a first touch of a freshly mapped page, costly on
a virtual machine) are counted per call on both ranks. Before each timed call its input arrays
are written afresh and the ranks meet at a barrier (untimed), for fluxml and raw
alike, as a backward pass writes the gradients just before they are averaged: memory that a
collective wrote last is slower to read back than memory this rank just wrote, and an
averager that reads or writes the gradients would otherwise pay for it where the raw call,
which does nothing with its buffer between calls, does not. Each variant is timed call by
call, alternated; the tables give the median and the 10th percentile (the calls during which
both ranks had a core: what the code costs).

What fluxml adds to one allreduce: nothing to scale (``fl.train`` multiplies the loss by the
rank's share of the batch before the backward pass, so the gradients come out ready to be
summed; the benchmark gives the averager gradients so scaled, written afresh, and passes the
share, as ``fl.train`` does), a copy of the gradients too small to travel alone into a bucket,
one message per gradient that fills a bucket by itself (summed in its own array, no copy)
and per bucket instead of one in all, a wait for the first bucket before the others are
posted (it carries the flag that says whether the step's sums are used, and nothing may be
written into a gradient before every rank knows), and the Python of a step (taking the
gradients out of the tree, checking them against the plan, rebuilding the tree): ~13 us for
the MLP when it runs in a loop, but ~100 us in a step, where the work before it has pushed
its objects out of the caches (measured with a 32 MB pass between calls). Through
shared memory an allreduce is itself a few memory passes, so one more pass weighs on it:
"1 pass" measures how much, the ceiling of any averager that copies the gradients and then
hands them to MPI. Where the ranks share a machine (here) fluxml does not: it copies the
gradients into a shared-memory window and each rank sums the ranks' copies where they lie
(``fluxml/distributed/shared.py``), the header (loss, count, flags) too, so MPI carries
nothing but any gradient told to travel alone: "msgs" counts MPI messages, and "plan" sends
those (none: "plan" is then the time of a call that sends nothing). The
copy then replaces MPICH's own copies into and out of its cells, and fluxml can pass raw
mpi4py. In these tables the averaging runs after the backward pass; "hidden" is the share of
the communication that overlapped fluxml's own packing.

The last tables time the averaging with the backward pass: after it (``fl.train(...,
distributed=True)``), and started during it by ``GradientAverager.begin``'s callback for
``withgradient(..., on_final=)`` (``distributed="overlap"``), beside the backward pass then
one raw Iallreduce. What counts is the *exposed* time, what the averaging adds to the
backward pass, measured from the end of the later rank's backward pass (see ``overlapped``):
"hidden" there is the share of the averaging's exposed time the overlap removed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np

import fluxml as fl
from fluxml.distributed.bucket import ownable

MLP_BATCH, LENET_BATCH = 64, 32
ROOT = Path(__file__).resolve().parent.parent


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


def sized(megabytes: float) -> dict:
    """A gradient tree of about ``megabytes`` MB of float32: three square layers, a weight
    and a bias each (as a Dense chain's gradient)."""
    h = max(1, int((megabytes * 1e6 / 4 / 3) ** 0.5))
    rng = np.random.default_rng(fl.distributed.rank())
    return {"layers": [{"weight": rng.standard_normal((h, h)).astype(np.float32),
                        "bias": rng.standard_normal(h).astype(np.float32)} for _ in range(3)]}


def baseline(rev: str):
    """The ``GradientAverager`` class of commit ``rev``: its ``averaging.py`` and the modules
    of the package it runs on (``bucket.py``, ``layout.py``, ``shared.py``, ``overlap.py``:
    packing, the walker and builder, the shared window, the plan's order), run as modules of
    their own over today's fluxml. Each is put in the package's place while the ones after it
    are made, so that their imports find the old ones; today's are put back after."""
    import fluxml.distributed as package

    names = ("bucket", "layout", "shared", "overlap", "averaging")
    today = {name: getattr(package, name) for name in names}
    modules = {}
    try:
        for name in names:
            path = f"src/fluxml/distributed/{name}.py"
            source = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=ROOT,
                                    capture_output=True, text=True, check=True).stdout
            module = types.ModuleType(f"fluxml.distributed.{name}")
            sys.modules[module.__name__] = module
            setattr(package, name, module)
            exec(compile(source, f"{rev}:{path}", "exec"), module.__dict__)
            modules[name] = module
    finally:
        for name, module in today.items():
            sys.modules[module.__name__] = module
            setattr(package, name, module)
    return modules["averaging"].GradientAverager


def _median_of(fn, steps):
    """The median seconds of ``fn`` and the median of the minor page faults it takes."""
    times, faults = [], []
    for _ in range(steps):
        f = _minor_faults()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
        faults.append(_minor_faults() - f)
    return statistics.median(times), statistics.median(faults)


def step_time(g, build, steps: int, bucket_bytes: int):
    """The median time of a training step, and the last step's averaged gradients."""
    fl.seed(0)
    model, x, y = build()
    state = fl.setup(fl.Adam(1e-3), model)
    model, state = fl.distributed.broadcast(model), fl.distributed.broadcast(state)
    averager = fl.distributed.GradientAverager(bucket_bytes, in_place=True)
    last = {}

    def step():  # as fl.train: the loss multiplied by the rank's share before the backward
        share = averager.share(len(y))
        value, (grads,) = fl.withgradient(lambda m: fl.logitcrossentropy(m(x), y) * share,
                                          model)
        value, grads, _ = averager.average(float(value) / share, grads, len(y), share)
        fl.update(state, model, grads)
        last["grads"] = grads

    for _ in range(3):
        step()
    g.comm.Barrier()
    t, faults = _median_of(step, steps)
    return t, faults, last["grads"], len(y)


def averaging(g, grads, count: int, calls: int, bucket_bytes: int, before) -> dict:
    """fluxml's averaging of ``grads`` (and the ``before`` averager's, if any), one raw
    Iallreduce and one raw Allreduce of the same bytes, and fluxml's local work alone,
    alternated call by call so that the load of a shared machine falls on all alike; every
    call's inputs written afresh first, untimed."""
    MPI = g.MPI
    grads = fl.fmap(np.array, grads)  # arrays of their own (the averaged ones are buffers)
    leaves = [a for a in fl.leaves(grads) if isinstance(a, np.ndarray)]
    after = fl.distributed.GradientAverager(bucket_bytes, in_place=True)
    share = after.share(count)  # the ranks' counts are equal: count / total from the start
    scaled = [a * share for a in leaves]  # as fl.train's backward pass gives them
    flat = np.concatenate([a.ravel() for a in leaves])
    flat_fresh = flat.copy()
    old = before(bucket_bytes, in_place=True) if before is not None else None  # as after

    def refresh_scaled():
        for a, f in zip(leaves, scaled):
            np.copyto(a, f)

    def local():  # the packing (and scaling, where there is any) alone, no communication
        positions = after.gather(grads)
        for b in after.buckets:
            b.pack(positions, frozenset(), 1.0)
        owned = ownable(after.late, positions, frozenset(), after.mine)
        for b in after.direct:
            if b.items[0][0] not in owned:
                b.pack(positions, frozenset(), 1.0)

    views, offset = [], 0
    for a in leaves:
        views.append(flat[offset:offset + a.size].reshape(a.shape))
        offset += a.size

    def copy_then_raw_i():  # one pass over the gradients, then raw I: any bucketing's floor
        for a, v in zip(leaves, views):
            np.copyto(v, a)
        g.wait([g.comm.Iallreduce(MPI.IN_PLACE, flat, op=MPI.SUM)], "the benchmark")

    plan: list = []  # raw: fluxml's messages, in arrays of their own (built on first use)

    def plan_arrays():
        if not plan:
            # (a direct bucket in place has no buf; through shared memory no bucket travels,
            # nor the header)
            sizes = [] if after.shared is not None else \
                [b.size if b.host is None else b.host.size for b in after.buckets]
            for n, b in zip(sizes + [b.size for b in after.direct],
                            after.buckets[:len(sizes)] + after.direct):
                a = np.random.default_rng(len(plan)).standard_normal(n).astype(b.dtype)
                plan.append((a, np.empty_like(a)))
        return plan

    def refresh_plan():
        for a, buf in plan_arrays():
            np.copyto(buf, a)

    def raw_plan():  # fluxml's messages and order: the buckets, the first waited, then directs
        bufs = [buf for _, buf in plan]
        first = len(plan) - len(after.direct)
        reqs = [g.comm.Iallreduce(MPI.IN_PLACE, b, op=MPI.SUM) for b in bufs[:first]]
        if bufs[first:]:
            g.wait(reqs[:1], "the benchmark")
            reqs += [g.comm.Iallreduce(MPI.IN_PLACE, b, op=MPI.SUM) for b in bufs[first:]]
        g.wait(reqs, "the benchmark")

    given = {id(a) for a in leaves}
    outs = []  # per call, the averaged tree (what was averaged in place is counted untimed)

    def average():
        outs.append(after.average(1.0, grads, count, share)[1])

    variants = {
        "after": (refresh_scaled, average),
        "raw_i": (lambda: np.copyto(flat, flat_fresh), lambda: g.wait(
            [g.comm.Iallreduce(MPI.IN_PLACE, flat, op=MPI.SUM)], "the benchmark")),
        "raw": (lambda: np.copyto(flat, flat_fresh),
                lambda: g.comm.Allreduce(MPI.IN_PLACE, flat, op=MPI.SUM)),
        "plan": (refresh_plan, raw_plan),
        "copy_i": (refresh_scaled, copy_then_raw_i),
        "local": (refresh_scaled, local),
    }
    if old is not None:
        variants["before"] = (refresh_scaled, lambda: old.average(1.0, grads, count, share))
    for prepare, call in variants.values():
        prepare()
        call()
    g.comm.Barrier()
    times: dict = {name: [] for name in variants}
    faults: dict = {name: [] for name in variants}  # minor page faults during each call
    names = list(variants)
    # a new order each round, the same on every rank (seeded): no variant always first, nor
    # always after the same other (rotated, "before" always followed "local" and preceded
    # "after": the same averager timed as both came out 7-15% faster as "after")
    rng = np.random.default_rng(0)
    for _ in range(calls):
        for name in rng.permutation(names):
            prepare, call = variants[name]
            prepare()
            g.comm.Barrier()  # both ranks start the call together (the skew is not timed)
            f = _minor_faults()
            t = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - t)
            faults[name].append(_minor_faults() - f)
    kept = [sum(id(a) in given for a in fl.leaves(out)) for out in outs[1:]]
    stats = {q: {name: float(np.percentile(t, q)) for name, t in times.items()}
             for q in (50, 10)}  # the median, and the quietest tenth (both ranks on a core)
    # per call: the median on each rank, the largest of the ranks'
    mine = {name: float(np.median(f)) for name, f in faults.items()}
    stats["faults"] = {name: max(r[name] for r in g.comm.allgather(mine)) for name in mine}
    return {"stats": stats, "bytes": int(flat.nbytes),
            "in_place": sum(kept) / max(1, len(kept) * len(after.direct)),
            "messages": messages(after),
            "before_messages": messages(old) if old is not None else 0}


def messages(averager) -> int:
    """The MPI messages of a step: a bucket summed in shared memory sends none (nor its
    header, but for a ``--baseline`` averager whose window has no ``post``: its header went
    by MPI), a direct bucket one."""
    window = getattr(averager, "shared", None)
    if window is not None:
        return int(not hasattr(window, "post")) + len(averager.direct)
    return len(averager.buckets) + len(averager.direct)


def overlapped(g, build, calls: int, bucket_bytes: int) -> dict:
    """The backward pass and the averaging of a model's gradients, alternated call by call:
    the backward pass alone ("grad"); then ``average`` after it ("after"); with ``begin``'s
    callback sending messages during it ("overlap", what ``fl.train`` does); and the
    backward pass then one raw Iallreduce of the same bytes ("raw_i").

    The averaging's *exposed* time is measured from the moment the last rank ended its
    backward pass (the clock is the machine's, common to the ranks), to the end of the
    call on the rank that ends last: the time a step takes beyond the slower backward pass,
    without the ranks' skew (on a loaded machine one rank's backward pass often ends
    milliseconds after the other's, which would swamp the averaging). The callback's own
    time ("in cb": its copies and posts run on this thread, inside the backward pass) is
    counted as exposed: the backward pass ends are taken without it."""
    MPI = g.MPI
    fl.seed(0)
    model, x, y = build()
    model = fl.distributed.broadcast(model)
    averagers = {"after": fl.distributed.GradientAverager(bucket_bytes, in_place=True),
                 "overlap": fl.distributed.GradientAverager(bucket_bytes, in_place=True)}
    share = averagers["after"].share(len(y))
    loss = lambda m: fl.logitcrossentropy(m(x), y) * share  # noqa: E731
    flat: list = []
    spent = [0.0]

    def timed(hook):
        def on_final(k, grad):
            t = time.perf_counter()
            hook(k, grad)
            spent[0] += time.perf_counter() - t
        return on_final

    def call(name):
        spent[0] = 0.0
        t0 = time.perf_counter()
        if name == "overlap":
            hook = averagers[name].begin(len(y), share)
            value, (grads,) = fl.withgradient(loss, model, on_final=timed(hook))
        else:
            value, (grads,) = fl.withgradient(loss, model)
        t1 = time.perf_counter()
        if name in averagers:
            averagers[name].average(float(value) / share, grads, len(y), share)
        elif name == "raw_i":
            if not flat:
                flat.append(np.concatenate([a.ravel() for a in fl.leaves(grads)
                                            if isinstance(a, np.ndarray)]))
            g.wait([g.comm.Iallreduce(MPI.IN_PLACE, flat[0], op=MPI.SUM)], "the benchmark")
        t2 = time.perf_counter()
        return t0, t1 - spent[0], t2, spent[0]

    names = ["grad", "after", "overlap", "raw_i"]
    for name in names * 3:  # the plans, the buffers
        call(name)
    g.comm.Barrier()
    times: dict = {name: {"bwd": [], "exposed": [], "callback": []} for name in names}
    for i in range(calls):
        for name in names[i % len(names):] + names[:i % len(names)]:
            g.comm.Barrier()
            t0, t1, t2, cb = call(name)
            everyone = g.comm.allgather((t0, t1, t2, cb))  # untimed
            t = times[name]
            t["bwd"].append(max(e[1] - e[0] for e in everyone))
            t["exposed"].append(max(e[2] for e in everyone) - max(e[1] for e in everyone))
            t["callback"].append(max(e[3] for e in everyone))
    av = averagers["overlap"]
    return {"stats": {q: {name: {k: float(np.percentile(v, q)) for k, v in t.items()}
                          for name, t in times.items()} for q in (50, 10)},
            "bytes": int(flat[0].nbytes),
            "messages": messages(averagers["after"]), "overlap_messages": messages(av),
            "early": len(av.early)}


def _minor_faults() -> int:
    """This process's minor page faults so far (a first touch of a freshly mapped page)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def worker(steps: int, bucket_bytes: int, sizes: list, rev: str | None) -> dict:
    g = fl.distributed.init(timeout=120)
    before = baseline(rev) if rev else None
    out: dict = {"steps": {}, "averaging": {}, "overlap": {}}
    for name, build in (("MLP 784-512-512-10", mlp), ("LeNet-5", lenet)):
        t, faults, grads, count = step_time(g, build, steps, bucket_bytes)
        faults = max(g.comm.allgather(faults))  # the rank that faulted most
        out["steps"][name] = {"step": t, "batch": count, "faults": faults}
        if g.size > 1:
            out["overlap"][name] = overlapped(g, build, steps * 5, bucket_bytes)
            out["averaging"][name] = averaging(g, grads, count, steps * 10, bucket_bytes,
                                               before)
    if g.size > 1:
        for mb in sizes:
            out["averaging"][f"3 layers, {mb:g} MB"] = averaging(
                g, sized(mb), 32, steps * 10, bucket_bytes, before)
    return out


def launch(n: int, steps: int, bucket_mb: float, sizes: list, rev: str | None) -> dict:
    mpiexec = Path(sys.executable).parent / "mpiexec"
    cmd = [str(mpiexec), "-n", str(n), sys.executable, __file__, "--worker",
           "--steps", str(steps), "--bucket-mb", str(bucket_mb),
           "--sizes-mb", ",".join(map(str, sizes))] + (["--baseline", rev] if rev else [])
    # one BLAS thread per rank (as MPI jobs run NumPy): threads of two ranks on two cores
    # would fight over them, and OpenBLAS's idle threads spin
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, env=env)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(steps: int, bucket_mb: float, sizes: list, rev: str | None) -> None:
    if rev:
        rev = subprocess.run(["git", "rev-parse", "--short", rev], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout.strip()
    runs = {n: launch(n, steps, bucket_mb, sizes, rev) for n in (1, 2)}
    print(f"fluxml data-parallel, float32, Adam, median of {steps} steps; "
          f"weak scaling (the same batch per rank)\n")
    print(f"{'model':<20} {'ranks':>5} {'batch/rank':>10} {'step ms':>8} "
          f"{'samples/s':>10} {'efficiency':>10} {'faults':>6}")
    for name in runs[1]["steps"]:
        one = runs[1]["steps"][name]
        for n in (1, 2):
            r = runs[n]["steps"][name]
            rate = n * r["batch"] / r["step"]
            print(f"{name:<20} {n:>5} {r['batch']:>10} {r['step'] * 1e3:>8.2f} {rate:>10,.0f} "
                  f"{one['step'] / r['step']:>10.2f} {r['faults']:>6.0f}")
    cols = [("after", "fluxml")] + ([("before", f"@{rev}")] if rev else [])
    for q, what in (("50", "median"), ("10", "10th percentile: the quietest tenth of calls")):
        print(f"\ngradient averaging with 2 ranks (buckets of {bucket_mb:g} MiB) beside raw "
              f"mpi4py allreduce of the same bytes; {what}; ms\n")
        head = f"{'gradients':<20} {'MB':>6} {'msgs':>5} {'raw I':>7} {'raw A':>7} {'plan':>7}"
        for _, label in cols:
            head += f" {label:>8} {'rawI/' + label[:6]:>11}"
        print(head + f" {'rawA/fluxml':>11} {'plan/fluxml':>11} {'rawI/plan':>9} {'1 pass':>6}"
                     f" {'GB/s':>5} {'hidden':>6} {'in place':>8}")
        for name, run in runs[2]["averaging"].items():
            r, gb = run["stats"][q], run["bytes"] / 1e9
            msgs = f"{run['messages']}" + (f"/{run['before_messages']}" if rev else "")
            line = (f"{name:<20} {run['bytes'] / 1e6:>6.2f} {msgs:>5} {r['raw_i'] * 1e3:>7.3f} "
                    f"{r['raw'] * 1e3:>7.3f} {r['plan'] * 1e3:>7.3f}")
            for key, _ in cols:
                line += f" {r[key] * 1e3:>8.3f} {r['raw_i'] / r[key]:>11.2f}"
            hidden = (r["raw_i"] + r["local"] - r["after"]) / r["raw_i"]
            inplace = f"{run['in_place']:.0%}" if run["messages"] > 1 or run["in_place"] else "-"
            print(line + f" {r['raw'] / r['after']:>11.2f} {r['plan'] / r['after']:>11.2f}"
                         f" {r['raw_i'] / r['plan']:>9.2f} {r['raw_i'] / r['copy_i']:>6.2f}"
                         f" {gb / r['after']:>5.2f} {max(0.0, min(1.0, hidden)):>6.0%}"
                         f" {inplace:>8}")
    for q, what in (("50", "median"), ("10", "10th percentile")):
        print(f"\naveraging during the backward pass (begin's callback) and after it, 2 ranks; "
              f"exposed time (from the end of the later backward pass); {what}; ms\n")
        print(f"{'model':<20} {'MB':>5} {'msgs':>5} {'early':>5} {'bwd':>6} {'raw I':>6} "
              f"{'after':>6} {'overlap':>7} {'in cb':>6} {'rawI/after':>10} "
              f"{'rawI/overlap':>12} {'hidden':>6}")
        for name, run in runs[2]["overlap"].items():
            r = run["stats"][q]
            raw, after, over = (r["raw_i"]["exposed"], r["after"]["exposed"],
                                r["overlap"]["exposed"])
            msgs = f"{run['messages']}/{run['overlap_messages']}"
            print(f"{name:<20} {run['bytes'] / 1e6:>5.2f} {msgs:>5} {run['early']:>5} "
                  f"{r['grad']['bwd'] * 1e3:>6.2f} {raw * 1e3:>6.3f} {after * 1e3:>6.3f} "
                  f"{over * 1e3:>7.3f} {r['overlap']['callback'] * 1e3:>6.3f} "
                  f"{raw / after:>10.2f} {raw / over:>12.2f} {1 - over / after:>6.0%}")
    print("\n'bwd': the backward pass alone (withgradient, the slower rank); exposed times, "
          "from the end of the later rank's backward pass to the end of the later rank's "
          "call: 'raw I' one Iallreduce of all the gradients' bytes; 'after' fluxml's "
          "averaging after the backward pass; 'overlap' with begin's callback posting the "
          "'early' messages during it, its own time ('in cb', on this thread) counted as "
          "exposed; 'hidden': 1 - overlap / after (negative: the overlap cost more than it "
          "hid); 'msgs': messages after/overlap.")
    print("\nminor page faults per call (the median on each rank, the larger of the two ranks)\n")
    names = [("after", "fluxml")] + ([("before", f"@{rev}")] if rev else []) + [
        ("raw_i", "raw I"), ("raw", "raw A"), ("plan", "plan"), ("copy_i", "copy+raw I")]
    print(f"{'gradients':<20} " + " ".join(f"{label:>10}" for _, label in names))
    for name, run in runs[2]["averaging"].items():
        f = run["stats"]["faults"]
        print(f"{name:<20} " + " ".join(f"{f[key]:>10.0f}" for key, _ in names))
    print("\n'raw I': one Iallreduce of all the bytes (one flat array) waited for as fluxml waits; "
          "'raw A': one blocking Allreduce of them; 'plan': raw mpi4py sending fluxml's "
          "messages (the same sizes, in arrays of their own, the first bucket waited for before "
          "the gradients that travel alone are posted), so that plan/fluxml is what fluxml's "
          "own work costs and rawI/plan what MPI charges for several messages instead of one; "
          "'rawI/x' the ratio raw I / x: 1.00 is parity, the target is >= 0.90."
          + (f" '@{rev}': the averaging of commit {rev}, alternated with today's; "
             f"'msgs': messages per step today/then." if rev else ""))
    print("'1 pass': raw I / (a copy of the gradients into one buffer, then raw I): what one "
          "pass over the gradients costs, the best any averager that copies them and hands "
          "them to MPI can reach (through shared memory fluxml's copy replaces MPI's).")
    print("'hidden': (raw I + fluxml's packing alone - fluxml's averaging) / raw I: "
          "the share of the communication that overlapped fluxml's own work (the averaging "
          "after the backward pass; with it, see the tables above). 'in place': the share of "
          "the gradients that travel alone averaged in their own arrays (the others went by "
          "copy). 'faults' "
          "(steps): the median per training step, the larger of the ranks'.")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--bucket-mb", type=float, default=1.0)
    parser.add_argument("--sizes-mb", default="0.06,0.25,1,4,16",
                        help="sizes of the synthetic gradient trees, comma-separated")
    parser.add_argument("--baseline", default=None, metavar="REV",
                        help="also time the averaging of this git commit (before/after)")
    parser.add_argument("--worker", action="store_true")
    args = parser.parse_args()
    sizes = [float(s) for s in args.sizes_mb.split(",") if s]
    if args.worker:
        result = worker(args.steps, int(args.bucket_mb * 2**20), sizes, args.baseline)
        if fl.distributed.is_main():
            print(json.dumps(result))
    else:
        main(args.steps, args.bucket_mb, sizes, args.baseline)
