"""The layer and training-step benchmarks with each library in its own process, merged into
one table with ratios: the way to measure with several threads.

    PYTHONPATH=src /work/.bench-venv/bin/python benchmarks/side_by_side.py [layers|steps]
        [--rounds=K] [rows ...]

With two or more threads, one process timing two libraries measures each with the other's
thread pool still spinning after its work (PyTorch's OpenMP threads, OpenBLAS's), which on
two cores slows whichever runs next. So ``layers.py`` (``--only=fluxml``, ``--only=torch``)
and ``train_step.py`` (``--peers fluxml``, ``--peers torch``, ``--peers jax``) are run once
per library, in turn, ``--rounds`` times (default 2), and each row keeps each library's best
time over the rounds (the minimum: on a shared machine the others' load only adds). Every
other argument goes to the benchmark scripts (row names, ``--isa=avx2``, ``--cpu-time``).
Threads: as the environment sets them (``OMP_NUM_THREADS``), for every library alike.
Ratios as in the scripts: the peer's time over fluxml's (above 1: fluxml is faster).

>>> _layer_row("conv 64->64 3x3 pad 1, 16x32x32          forward       11.16          -       -")
(('conv 64->64 3x3 pad 1, 16x32x32', 'forward'), 11.16)
>>> _step_row("LeNet-5 28x28          PyTorch eager     6.27 ms          2.321712 2.31 2.30")
(('LeNet-5 28x28', 'PyTorch eager'), 6.27)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# a row of layers.py: name, pass, our time, the peer's, the ratio ("-" for one not run)
_LAYER = re.compile(r"^(.+?)\s+(forward|fwd\+bwd)\s+(\S+)\s+(\S+)\s+(\S+)$")
# a row of train_step.py: case (22 wide), peer (14 wide), the step's time in ms or us
_STEP = re.compile(r"^(.{22}) (.{14}) +([\d.]+) (ms|us)\b")


def _layer_row(line):
    """``((row, pass), ms)`` of the library that ran, or None for another line."""
    m = _LAYER.match(line.rstrip())
    if not m:
        return None
    value = next((v for v in (m.group(3), m.group(4)) if v != "-"), None)
    return None if value is None else ((m.group(1).strip(), m.group(2)), float(value))


def _step_row(line):
    m = _STEP.match(line)
    if not m:
        return None
    scale = 1.0 if m.group(4) == "ms" else 1e-3
    return (m.group(1).strip(), m.group(2).strip()), float(m.group(3)) * scale


def _run(script, args):
    cmd = [sys.executable, os.path.join(HERE, script), *args]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stdout}\n{out.stderr}")
    return out.stdout.splitlines()


def _best(script, per_library, parse, rounds, extra):
    """{library: {row: best ms}} over ``rounds`` runs of each library, in turn; and the
    header lines of the runs (what ran: versions, kernels), each once."""
    best, header = {}, {}
    for _ in range(rounds):
        for library, args in per_library.items():
            lines = _run(script, [*args, *extra])
            header.update(dict.fromkeys(
                ln for ln in lines[:5] if ln.strip() and not parse(ln)
                and not ln.startswith(("case", "layer", "float32 GEMM", "-"))))
            rows = best.setdefault(library, {})
            for key, ms in filter(None, map(parse, lines)):
                rows[key] = min(ms, rows.get(key, float("inf")))
    return best, list(header)


def layers(rounds, extra):
    from layers import _row  # (layers.py's own row format, ratio included)

    best, header = _best("layers.py", {"fluxml": ["--only=fluxml"],
                                       "torch": ["--only=torch"]}, _layer_row, rounds, extra)
    print("\n".join(header))
    head = f"{'layer or kernel':52s} {'pass':8s} {'fluxml ms':>10s} {'torch ms':>10s} {'ratio':>7s}"
    print(head + "\n" + "-" * len(head))
    for (name, label), ours in best["fluxml"].items():
        print(_row(name, 52, label, ours, best["torch"].get((name, label))))


def steps(rounds, extra):
    peers = {p: ["--best", "--peers", p] for p in ("fluxml", "torch", "jax")}
    best, header = _best("train_step.py", peers, _step_row, rounds, extra)
    print("\n".join(header))
    # each (case, peer) row comes from one library's runs: one table, in the order run
    rows = {key: ms for library in best.values() for key, ms in library.items()}
    print(f"{'case':22} {'peer':14} {'step ms':>9} {'ratio':>7}")
    for case in dict.fromkeys(case for case, _ in rows):
        ours = rows.get((case, "fluxml"))
        for (c, peer), ms in rows.items():
            if c == case:
                ratio = f"{ms / ours:7.2f}" if ours and peer != "fluxml" else f"{'':7s}"
                print(f"{case:22} {peer:14} {ms:9.3f} {ratio}")


def main(argv):
    which = [a for a in argv if a in ("layers", "steps")] or ["layers", "steps"]
    rounds = next((int(a.split("=", 1)[1]) for a in argv if a.startswith("--rounds=")), 2)
    extra = [a for a in argv if a not in ("layers", "steps") and not a.startswith("--rounds=")]
    print(f"each library in its own process, best of {rounds} rounds; OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', '(unset)')}")
    for name in which:
        print()
        {"layers": layers, "steps": steps}[name](rounds, extra)


if __name__ == "__main__":
    main(sys.argv[1:])
