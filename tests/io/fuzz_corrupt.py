"""A seeded fuzzer of damaged files: a checkpoint (and a saved model) truncated, with bits
flipped, with its header JSON edited, or with the tensors of a wrong state, loaded into a
fresh model. Each must raise a clear error (``FileFormatError`` or ``LoadError``, naming the
file or the entry) and leave the model, the optimiser state, the generators and the file as
they were; a load that succeeds must give back exactly what was saved (a damage that went
unseen is a silent wrong result). And a writer killed while it saves over a file (a crash
mid-write) leaves the file whole: the old version or the new.

The suite runs a few hundred cases (tests/io/test_fuzz_io.py); by hand:

    PYTHONPATH=src python tests/io/fuzz_corrupt.py --cases 3000
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile

import numpy as np

import fluxml as fl
from fluxml.io import FileFormatError, LoadError

MODES = ("truncate", "flip", "flip header", "edit header", "edit header, digest fixed",
         "wrong state")


class Setup:
    """A small model, its optimiser state and a loader's generator, saved once."""

    def __init__(self, folder, seed):
        self.seed = seed
        self.path = os.path.join(folder, f"good{seed % 4}.safetensors")
        model, state = self.fresh(1)
        fl.freeze(fl.optimise.interface._leaves(state)[0])
        fl.adjust(state.layers[1], eta=0.25)
        self.rng = np.random.default_rng(seed)
        self.rng.random()
        fl.save_checkpoint(self.path, model, state, step=7, rngs={"data": self.rng},
                           extra={"epoch": 2, "note": "x"})
        self.model, self.state = model, state
        with open(self.path, "rb") as f:
            self.raw = f.read()

    def fresh(self, value_seed):
        fl.seed(value_seed)
        model = fl.Chain(fl.Dense(2, 3, np.tanh), fl.BatchNorm(3), fl.Dense(3, 1))
        model.layers[1].running_mean[...] = value_seed
        return model, fl.setup(fl.Adam(0.01), model)


def snapshot(model, state, rng):
    return (fl.io.modelstate.flat_state(model), fl.io.modelstate.flat_state(state),
            [(leaf.rule, leaf.frozen) for leaf in fl.optimise.interface._leaves(state)],
            rng.bit_generator.state, fl.init.default_rng().bit_generator.state)


def copied(snap):
    a, b, *rest = snap
    return ({k: v.copy() for k, v in a.items()}, {k: v.copy() for k, v in b.items()}, *rest)


def same(s1, s2) -> str | None:
    """The first difference between two snapshots, or None."""
    for part, (a, b) in zip(("model", "optimiser state"), zip(s1[:2], s2[:2])):
        if a.keys() != b.keys():
            return f"{part}: names differ"
        for k in a:
            if a[k].dtype != b[k].dtype or a[k].tobytes() != b[k].tobytes():
                return f"{part}: {k}: {a[k]} != {b[k]}"
    for what, a, b in zip(("rules and frozen flags", "the data generator",
                           "the default generator"), s1[2:], s2[2:]):
        if a != b:
            return f"{what}: {a} != {b}"
    return None


def _header(raw):
    n = int.from_bytes(raw[:8], "little")
    return n, json.loads(raw[8:8 + n])


def _file(header, body):
    text = json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + body


def _edit(header, r):
    """One random edit of a parsed header (its tensors or its metadata)."""
    names = [k for k in header if k != "__metadata__"]
    name = names[r.integers(len(names))]
    info, meta = header[name], header["__metadata__"]
    edit = r.integers(10)
    if edit == 0:
        info["shape"] = list(reversed(info["shape"])) + [1]
    elif edit == 1:
        info["dtype"] = ["F16", "F32", "F64", "I32", "I64", "U8", "BOOL"][r.integers(7)]
    elif edit == 2:
        header[name + "x"] = header.pop(name)
    elif edit == 3:
        info["data_offsets"] = [info["data_offsets"][0] + 1, info["data_offsets"][1] + 1]
    elif edit == 4:
        key = ["fluxml.step", "fluxml.extra", "fluxml.rngs", "fluxml.frozen",
               "fluxml.keys"][r.integers(5)]
        meta[key] = ["", "[", "null", "1.5", '"7"', "{}", "[]", "[99]", "true"][r.integers(9)]
    elif edit == 5:
        rngs = json.loads(meta["fluxml.rngs"])
        state = rngs["data"]["state"]
        state[["state", "inc"][r.integers(2)]] = ["x", -1, 2**200, None][r.integers(4)]
        meta["fluxml.rngs"] = json.dumps(rngs)
    elif edit == 6:
        keys = json.loads(meta["fluxml.keys"])
        keys[name] = keys[name][:-1] + ["other"]
        meta["fluxml.keys"] = json.dumps(keys)
    elif edit == 7:
        del meta["fluxml.keys"]
    elif edit == 8:
        info["shape"] = [0]
        info["data_offsets"] = [info["data_offsets"][0]] * 2
    else:
        meta["fluxml.step"] = str(int(r.integers(100)))  # a valid edit: another step
    return header


def _digest_fixed(raw):
    """The file with its digests recomputed, as an editor that knew the format would."""
    from fluxml.io import safetensors

    n, header = _header(raw)
    body = raw[8 + n:]
    meta = header["__metadata__"]
    meta[safetensors.DIGEST] = hashlib.sha256(body).hexdigest()
    if safetensors.HEADER_DIGEST in meta:
        meta[safetensors.HEADER_DIGEST] = safetensors._header_digest(header)
    return _file(header, body)


def mutate(setup, mode, r):
    raw = setup.raw
    n = int.from_bytes(raw[:8], "little")
    if mode == "truncate":
        return raw[:r.integers(len(raw))]
    if mode in ("flip", "flip header"):
        out = bytearray(raw)
        hi = 8 + n if mode == "flip header" else len(raw)
        for _ in range(int(r.integers(1, 4))):
            i = int(r.integers(hi))
            out[i] ^= 1 << int(r.integers(8))
        return bytes(out)
    if mode.startswith("edit header"):
        _, header = _header(raw)
        edited = _file(_edit(header, r), raw[8 + n:])
        return _digest_fixed(edited) if mode.endswith("fixed") else edited
    raise ValueError(mode)


def run_case(seed: int, folder: str) -> str:
    """One damaged file; returns what happened ("refused: ...", "loaded the same"), or raises
    AssertionError for an unclear error, a change before an error, or a silent difference."""
    r = np.random.default_rng([seed, 2])
    setup = Setup(folder, seed)
    mode = MODES[seed % len(MODES)]
    bad = os.path.join(folder, "bad.safetensors")
    model, state = setup.fresh(2)
    rng = np.random.default_rng(seed + 1000)
    if mode == "wrong state":  # a checkpoint of another model, undamaged
        other, other_state = setup.fresh(3)
        kind = r.integers(3)
        if kind == 0:
            other.layers = (fl.Dense(2, 3, np.tanh), other.layers[1], fl.Dense(3, 2))
        elif kind == 1:
            other.layers = (fl.f64(other.layers[0]),) + other.layers[1:]
        else:
            other.layers = other.layers[:2] + (fl.Dense(3, 1, bias=False),)
        other_state = fl.setup(fl.Adam(0.01), other)
        fl.save_checkpoint(bad, other, other_state, step=1, rngs={"data": rng})
    else:
        data = mutate(setup, mode, r)
        with open(bad, "wb") as f:
            f.write(data)
    with open(bad, "rb") as f:
        file_before = f.read()
    before = copied(snapshot(model, state, rng))
    try:
        info = fl.load_checkpoint(bad, model, state, rngs={"data": rng})
    except (FileFormatError, LoadError) as err:
        message = str(err)
        if "load" not in message:
            raise AssertionError(f"seed {seed} ({mode}): the error names no function: "
                                 f"{message}") from None
        diff = same(before, snapshot(model, state, rng))
        if diff:
            raise AssertionError(f"seed {seed} ({mode}): refused ({message[:100]}) but changed "
                                 f"{diff}") from None
        with open(bad, "rb") as f:
            assert f.read() == file_before, f"seed {seed}: the file changed"
        return f"refused: {type(err).__name__}"
    except Exception as err:  # noqa: BLE001 - any other error is not a clear one
        raise AssertionError(f"seed {seed} ({mode}): unclear error {type(err).__name__}: "
                             f"{err}") from err
    # loaded: it must be what was saved (a valid edit of the step aside)
    expected = snapshot(setup.model, setup.state, setup.rng)
    diff = same(expected[:3] + (setup.rng.bit_generator.state,) + (expected[4],),
                snapshot(model, state, rng))
    if diff and "default generator" not in diff:
        raise AssertionError(f"seed {seed} ({mode}): loaded silently different: {diff}")
    if info.extra != {"epoch": 2, "note": "x"} and not mode.endswith("fixed"):
        raise AssertionError(f"seed {seed} ({mode}): loaded extra {info.extra}")
    if info.step != 7 and not mode.endswith("fixed"):
        raise AssertionError(f"seed {seed} ({mode}): loaded step {info.step}, saved 7")
    return "loaded the same"


WRITER = """
import sys, numpy as np, fluxml as fl
path, n = sys.argv[1], int(sys.argv[2])
print("ready", flush=True)
while True:
    for value in (1.0, 2.0):
        fl.save(path, {"w": np.full(n, value, np.float32)})
"""


def crash_case(seed: int, folder: str) -> str:
    """A process saving over a file again and again, killed at a random moment (a crash
    mid-write): the file is whole, the old version or the new, and loads."""
    import signal
    import subprocess
    import time

    r = np.random.default_rng([seed, 8])
    path = os.path.join(folder, "crash.safetensors")
    n = int(r.integers(1, 4_000_000))
    fl.save(path, {"w": np.zeros(n, np.float32)})
    src = os.path.join(os.path.dirname(fl.__file__), os.pardir)
    env = {**os.environ, "PYTHONPATH": os.path.abspath(src)}
    with subprocess.Popen([sys.executable, "-c", WRITER, path, str(n)], env=env,
                          stdout=subprocess.PIPE) as proc:
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(float(r.uniform(0, 0.3)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    w = fl.load(path)["w"]
    assert w.shape == (n,) and len(set(np.unique(w).tolist())) == 1, \
        f"seed {seed}: a file saved over when the writer was killed holds {np.unique(w)}"
    for name in os.listdir(folder):  # the killed writer's temporary file, if any
        if name.startswith(".crash.safetensors.") and name.endswith(".tmp"):
            os.unlink(os.path.join(folder, name))
    return f"whole, holding {float(w[0])}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=600)
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--crashes", type=int, default=10, help="writers killed mid-write")
    args = p.parse_args(argv)
    failures, outcomes = 0, {}
    with tempfile.TemporaryDirectory() as folder:
        for seed in range(args.start, args.start + args.crashes):
            try:
                key = ("crash mid-write", crash_case(seed, folder))
                outcomes[key] = outcomes.get(key, 0) + 1
            except AssertionError as err:
                failures += 1
                print(str(err)[:500])
        for seed in range(args.start, args.start + args.cases):
            try:
                what = run_case(seed, folder)
                key = (MODES[seed % len(MODES)], what)
                outcomes[key] = outcomes.get(key, 0) + 1
            except AssertionError as err:
                failures += 1
                print(str(err)[:500])
    for key, n in sorted(outcomes.items()):
        print(f"{n:6d}  {key[0]}: {key[1]}")
    print(f"{args.cases + args.crashes - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
