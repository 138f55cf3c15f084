"""A seeded fuzzer of ``fl.loadmodel`` against a reference written here: a random model
(Chain, Dense, LSTM, BatchNorm, Embedding, Conv, a weight tied at two places) takes the state
of another built alike with a few random changes (an array or a number missing, an entry
added, a shape changed or transposed, a dtype changed, narrowed, widened or byte-swapped,
tied weights given different values, the state nested or flat).

The reference decides, walking the model's arrays in order, which change is the first that
does not fit (a missing array, another shape, a dtype that is neither the same in another
byte order nor a float or complex of fewer bits into a wider one), else the first entry the
model lacks, else the first tie given two values. ``loadmodel`` must raise ``LoadError``
naming that path, the model's every array and number as it was (bytewise); or, where all
fits, load every value exactly (widened where the model's dtype is wider) and give the
model back.

    PYTHONPATH=src python -m tests.io.fuzz_loadmodel [n_cases] [first_seed]
"""

from __future__ import annotations

import sys

import numpy as np

import fluxml as fl
from fluxml.io import LoadError
from fluxml.io.modelstate import flat_state
from fluxml.tree import leaves_with_paths
from tests.io.fuzz_cli import run_seeds


def _build(plan, value_seed, tie):
    fl.seed(value_seed)
    r = np.random.default_rng(value_seed)
    layers = []
    for kind, n in plan:
        if kind == "dense":
            layers.append(fl.Dense(n, n))
        elif kind == "lstm":
            layers.append(fl.LSTM(n, n))
        elif kind == "batchnorm":
            bn = fl.BatchNorm(n)
            bn.running_mean[...] = r.normal(size=n)
            layers.append(bn)
        elif kind == "embedding":
            layers.append(fl.Embedding(n + 1, n))
        elif kind == "conv":
            layers.append(fl.Conv((1, 1), n, n))
        else:
            layers.append(fl.Chain(fl.Dense(n, n), fl.BatchNorm(n, momentum=0.25)))
    model = fl.Chain(*layers)
    if tie is not None:  # a weight shared by two Dense layers of one width
        i, j = tie
        model.layers[j].weight = model.layers[i].weight
    return model


def _plan(rs):
    plan = [(str(rs.choice(["dense", "lstm", "batchnorm", "embedding", "conv", "chain"])),
             int(rs.integers(1, 4))) for _ in range(int(rs.integers(1, 5)))]
    dense = [i for i, (k, _) in enumerate(plan) if k == "dense"]
    tie = None
    if rs.random() < 0.4:
        n = plan[0][1]
        plan += [("dense", n), ("dense", n)]
        tie = (len(plan) - 2, len(plan) - 1)
    elif len(dense) > 1 and plan[dense[0]][1] == plan[dense[1]][1]:
        tie = (dense[0], dense[1])
    return plan, tie


def _fits(x, v) -> bool:
    """Whether the value ``v`` loads into the model's leaf ``x`` (reference rules)."""
    if isinstance(x, np.ndarray):
        if x.shape != v.shape:
            return False
        a, b = x.dtype.newbyteorder("="), v.dtype.newbyteorder("=")
        return a == b or (a.kind == b.kind and a.kind in "fc" and b.itemsize < a.itemsize)
    return v.shape == () and np.asarray(x).dtype == v.dtype.newbyteorder("=")


def _snapshot(model):
    return {k: (np.asarray(v).dtype.str, np.asarray(v).shape, np.asarray(v).tobytes(),
                type(v)) for k, v in flat_state(model).items()}


def _mutate(rs, given: dict, model_flat: dict, tie_paths) -> str:
    kind = str(rs.choice(["drop", "drop number", "add", "shape", "transpose", "dtype",
                          "widen", "swap", "tie", "none"]))
    arrays = [k for k, v in model_flat.items() if isinstance(v, np.ndarray) and k in given]
    numbers = [k for k, v in model_flat.items() if not isinstance(v, np.ndarray) and k in given]
    if not arrays:
        return "none"
    key = arrays[rs.integers(len(arrays))]
    v = given[key]
    if kind == "drop":
        del given[key]
    elif kind == "drop number" and numbers:
        del given[numbers[rs.integers(len(numbers))]]
    elif kind == "add":
        extra = [key + ".extra", "layers.99.weight", "num_batches_tracked", key + "x"]
        given[extra[rs.integers(len(extra))]] = np.zeros(2, np.float32)
    elif kind == "shape":
        given[key] = np.zeros(v.shape + (1,), v.dtype) if rs.integers(2) else \
            np.resize(v, (max(v.size - 1, 0),))
    elif kind == "transpose" and v.ndim == 2:
        given[key] = np.ascontiguousarray(v.T)
    elif kind == "dtype":
        given[key] = v.astype([np.float64, np.float16, np.int32, np.int64, np.bool_,
                               np.complex64][rs.integers(6)])
    elif kind == "widen":  # a float16 state into the float32 model: loads, exactly
        given[key] = v.astype(np.float16)
    elif kind == "swap":  # the other byte order: the same values
        given[key] = v.astype(v.dtype.newbyteorder(">"))
    elif kind == "tie" and tie_paths and tie_paths[1] in given:
        given[tie_paths[1]] = given[tie_paths[1]] + 1
    return kind


def _expected(model_flat: dict, given: dict, tie_paths) -> str | None:
    """The first path that does not fit, else a tie given two values, else the first
    entry the model lacks (in the order of ``given``), else None."""
    for path, x in model_flat.items():
        if path not in given:
            if isinstance(x, np.ndarray):
                return path
            continue
        if not _fits(x, given[path]):
            return path
    if tie_paths and not np.array_equal(
            given[tie_paths[0]].astype(np.float32), given[tie_paths[1]].astype(np.float32)):
        return f"{tie_paths[1]} and {tie_paths[0]}"
    for path in given:
        if path not in model_flat:
            return path
    return None


def run_case(seed: int) -> list[str]:
    rs = np.random.default_rng(seed)
    plan, tie = _plan(rs)
    model = _build(plan, 1, tie)
    source = _build(plan, 2, tie)
    model_flat = dict(leaves_with_paths(model))  # (the numbers as they are: settings)
    tie_paths = [f"layers.{i}.weight" for i in tie] if tie else None
    given = {k: np.array(v) for k, v in flat_state(source).items()}
    kinds = [_mutate(rs, given, model_flat, tie_paths)
             for _ in range(int(rs.integers(0, 3)))]
    before = _snapshot(model)
    state = given
    if rs.integers(2):  # nested, as fl.load gives it
        state = {}
        for path, v in given.items():
            node = state
            parts = path.split(".")
            for p in parts[:-1]:
                node = node.setdefault(p, {})
                if not isinstance(node, dict):
                    break
            else:
                if parts[-1] not in node:
                    node[parts[-1]] = v
                    continue
            state = given  # (an entry inside another's name: flat)
            break
    want = _expected(model_flat, flat_state(state), tie_paths)  # (the extras in its order)
    try:
        out = fl.loadmodel(model, state)
    except LoadError as err:
        msg = str(err)
        fails = []
        if want is None:
            fails.append(f"{kinds}: refused a state that fits: {msg}")
        elif not msg.startswith(f"loadmodel: {want}"):
            fails.append(f"{kinds}: expected the error to name {want!r}; got {msg[:200]}")
        if _snapshot(model) != before:
            fails.append(f"{kinds}: the model changed though loading failed")
        return fails
    except Exception as err:  # noqa: BLE001 - what the fuzzer looks for
        return [f"{kinds}: raised {type(err).__name__}: {err}"[:300]]
    fails = []
    if want is not None:
        return [f"{kinds}: loaded a state whose {want!r} does not fit"]
    if out is not model:
        fails.append("loadmodel gave back another object")
    now = flat_state(model)
    for path, x in now.items():
        v = given.get(path)
        if v is None:
            continue  # a number the state lacks keeps the model's
        exact = np.asarray(v).astype(np.asarray(x).dtype)
        if np.asarray(x).tobytes() != exact.tobytes():
            fails.append(f"{kinds}: {path} did not take its value exactly")
    if any(np.asarray(now[p]).dtype != np.asarray(model_flat[p]).dtype for p in now):
        fails.append(f"{kinds}: a dtype of the model changed")
    return fails


def main(argv) -> int:
    return run_seeds(run_case, argv, 500)


if __name__ == "__main__":
    sys.exit(1 if main(sys.argv[1:]) else 0)
