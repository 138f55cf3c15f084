"""A seeded differential fuzzer of ``fl.save``/``fl.load`` against the ``safetensors``
package (an independent reader and writer of the format) and against a reference built in
this file.

Each case draws a random tree: nested dicts, lists and tuples of arrays of every dtype the
format holds (float16/32/64, the ints, bool, complex64, complex128 as fluxml's pairs), 0-d
and empty arrays, non-contiguous, Fortran-ordered and byte-swapped ones, under keys that are
long, unicode (a lone surrogate too: refused), or hold dots and slashes; beside fl layers
(Chain, Dense, LSTM, BatchNorm with moved running statistics, Embedding, Conv). Then:

- ``fl.save`` then ``fl.load`` gives back the tree's arrays exactly (values, native dtypes,
  shapes) under the tree's keys, as strings, and nothing else; a model built again with
  other numbers takes them with ``fl.loadmodel`` bitwise;
- the package's ``load_file`` reads fluxml's file as the same arrays under dotted names;
- the package's ``save_file`` of the same arrays by dotted name is read by ``fl.load``
  nested at the dots (or refused as names that do not form a tree);
- a damaged copy of either file (truncated, a bit flipped, the header's length changed, the
  header edited: overlapping offsets, offsets past the end, a wrong dtype string, odd JSON
  values) raises ``FileFormatError`` and nothing else, and allocates no more than a few
  times the file's size; where it loads, a fluxml file gives what was saved and a file of
  the package's what the package reads;
- a save that fails part-way (an array that cannot be written, the final rename failing)
  leaves the old file as it was and no temporary file behind.

    PYTHONPATH=src python -m tests.io.fuzz_peer [n_cases] [first_seed]

prints one line per failing case and a count; the short run in the suite is
tests/io/test_fuzz_peer.py.
"""

from __future__ import annotations

import copy
import json
import os
import sys
import tracemalloc

import numpy as np

import fluxml as fl
from fluxml.io import FileFormatError
from fluxml.io import safetensors as st_format
from tests.io.fuzz_cli import run_seeds

DTYPES = [np.float16, np.float32, np.float64, np.int8, np.uint8, np.int16, np.uint16,
          np.int32, np.uint32, np.int64, np.uint64, np.bool_, np.complex64, np.complex128]
# what the package names them (complex128 is fluxml's float64 pairs)
PEER = {np.dtype(t): n for t, n in [
    (np.float16, "F16"), (np.float32, "F32"), (np.float64, "F64"), (np.int8, "I8"),
    (np.uint8, "U8"), (np.int16, "I16"), (np.uint16, "U16"), (np.int32, "I32"),
    (np.uint32, "U32"), (np.int64, "I64"), (np.uint64, "U64"), (np.bool_, "BOOL"),
    (np.complex64, "C64")]}
KEY_PARTS = ["w", "b", "layer", "0", "1", "10", "é", "重み", "a/b", "x y", "k-1", "_", "ÆØÅ",
             "\u200b", "🙂", "\\", "'", '"', "__meta", "a.b", ".x", "y."]


def _key(rs) -> str:
    kind = rs.integers(6)
    if kind == 0:
        return "k" * int(rs.integers(200, 3000))  # a huge name
    if rs.random() < 0.02:
        return "f\udcff"  # (os.fsdecode of a file name's undecodable byte)
    return "".join(rs.choice(KEY_PARTS) for _ in range(int(rs.integers(1, 3))))


def _array(rs):
    """A random array and its flavour (in memory): its values come back whatever that is."""
    dtype = np.dtype(DTYPES[rs.integers(len(DTYPES))])
    ndim = int(rs.integers(0, 4))
    shape = tuple(int(d) for d in rs.integers(0, 4, size=ndim))
    if rs.random() < 0.6 and ndim:
        shape = tuple(max(d, 1) for d in shape)
    size = int(np.prod(shape, dtype=np.int64))
    if dtype.kind == "b":
        x = rs.random(size) < 0.5
    elif dtype.kind in "iu":
        info = np.iinfo(dtype)
        x = rs.integers(info.min, info.max, size=size, dtype=dtype, endpoint=True)
    else:
        bits = rs.integers(0, 256, size=size * dtype.itemsize, dtype=np.uint8)
        x = bits.view(dtype)  # any bit pattern: NaNs of any payload, infinities, subnormals
        if rs.random() < 0.5:
            x = (rs.normal(size=size) * 10.0 ** rs.integers(-3, 4)).astype(dtype)
    x = np.asarray(x, dtype).reshape(shape)
    flavour = rs.choice(["c", "fortran", "strided", "swapped", "readonly"])
    if flavour == "fortran":
        x = np.asfortranarray(x)
    elif flavour == "strided" and ndim:
        big = np.repeat(x, 2, axis=-1)  # every other element of a wider array
        x = big[..., ::2]
        if ndim > 1:
            x = np.swapaxes(np.swapaxes(x, 0, -1).copy(), 0, -1)  # transposed strides too
    elif flavour == "swapped" and dtype.itemsize > 1:
        x = x.astype(dtype.newbyteorder(">" if dtype.byteorder != ">" else "<"))
    elif flavour == "readonly":
        x = x.copy()
        x.flags.writeable = False
    return x


def _tree(rs, depth, leaves, path):
    """A random nested tree; ``leaves`` gets ``(keys as strings, array)`` for each array."""
    kinds = ["array"] * 3 + ["dict", "dict", "list", "tuple"] if depth < 4 else ["array"]
    kind = rs.choice(kinds) if depth else "dict"
    if kind == "array":
        x = _array(rs)
        leaves.append((path, x))
        return x
    n = int(rs.integers(1, 4))
    if kind == "dict":
        out: dict = {}
        for _ in range(n):
            k = _key(rs)
            if k in out:
                continue
            out[k] = _tree(rs, depth + 1, leaves, path + (k,))
        return out
    kids = [_tree(rs, depth + 1, leaves, path + (str(i),)) for i in range(n)]
    return kids if kind == "list" else tuple(kids)


def _model(rs, seed):
    """Random fl layers (built again from ``seed`` with other numbers: ``fl.seed``)."""
    plan = [rs.choice(["dense", "lstm", "batchnorm", "embedding", "conv", "chain"])
            for _ in range(int(rs.integers(1, 4)))]

    def build(value_seed):
        fl.seed(value_seed)
        r = np.random.default_rng(seed)
        layers = {}
        for i, kind in enumerate(plan):
            n = int(r.integers(1, 4))
            if kind == "dense":
                layer = fl.Dense(n, n + 1, bias=bool(r.integers(2)))
            elif kind == "lstm":
                layer = fl.LSTM(n, n + 1)
            elif kind == "batchnorm":
                layer = fl.BatchNorm(n)
                layer.running_mean[...] = r.normal(size=n)
                layer.running_var[...] = r.random(n) + value_seed
            elif kind == "embedding":
                layer = fl.Embedding(n + 2, n)
            elif kind == "conv":
                layer = fl.Conv((2, 2), n, n + 1)
            else:
                layer = fl.Chain(fl.Dense(n, n), fl.BatchNorm(n), fl.Dense(n, 1))
            layers[f"m{i}"] = layer
        return fl.Chain(**layers) if r.integers(2) else fl.Chain(*layers.values())

    return build


def _native(x) -> np.ndarray:
    x = np.asarray(x)  # (np.ascontiguousarray makes a 0-d array 1-d)
    return np.array(x, x.dtype.newbyteorder("="), order="C")


def _same(a, b) -> bool:
    """Bitwise equal, same native dtype and shape."""
    a, b = np.asarray(a), np.asarray(b)
    return (a.dtype.newbyteorder("=") == b.dtype.newbyteorder("=") and a.shape == b.shape
            and _native(a).tobytes() == _native(b).tobytes())


def _flatten_loaded(tree, prefix=()):
    """``{keys: array}`` of a nested dict of arrays."""
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flatten_loaded(v, prefix + (k,)))
        else:
            out[prefix + (k,)] = v
    return out


def _peer_arrays(leaves) -> dict:
    """What the package reads of fluxml's file: arrays by dotted name, a complex128 as
    float64 pairs."""
    out = {}
    for path, x in leaves:
        x = _native(x)
        if x.dtype == np.complex128:
            x = x[..., None].view(np.float64)
        out[".".join(path)] = x
    return out


def _nested_by_dots(names) -> dict | None:
    """The reference nesting of names split at their dots; None where they do not form a
    tree (a name inside another's, or repeated)."""
    out: dict = {}
    for name, x in names.items():
        node = out
        parts = name.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                return None
        if parts[-1] in node:
            return None
        node[parts[-1]] = x
    return out


# --- damage -------------------------------------------------------------------------------------


def _damage(rs, raw: bytes) -> tuple[str, bytes]:
    n = int.from_bytes(raw[:8], "little")
    mode = rs.choice(["truncate", "flip", "flip header", "length", "offsets", "dtype",
                      "shape", "json", "extend"])
    if mode == "truncate":
        return mode, raw[:int(rs.integers(0, len(raw)))]
    if mode in ("flip", "flip header"):
        hi = 8 + n if mode == "flip header" else len(raw)
        b = bytearray(raw)
        for _ in range(int(rs.integers(1, 4))):
            i = int(rs.integers(0, hi))
            b[i] ^= 1 << int(rs.integers(8))
        return mode, bytes(b)
    if mode == "length":
        new = [n + int(rs.integers(-9, 10)), 0, 2**64 - 1, 2**63, 100 * 2**20,
               len(raw) - 8, int(rs.integers(0, 2**64, dtype=np.uint64))][rs.integers(7)]
        new = max(0, min(new, 2**64 - 1))
        return mode, new.to_bytes(8, "little") + raw[8:]
    if mode == "extend":  # bytes added, or the header's digest kept over a smaller body
        return mode, raw + bytes(int(rs.integers(1, 9)))
    header = json.loads(raw[8:8 + n])
    names = [k for k in header if k != "__metadata__"]
    if not names:
        return "truncate", raw[:-1]
    name = names[rs.integers(len(names))]
    info = header[name]
    if mode == "offsets":
        begin, end = info["data_offsets"]
        info["data_offsets"] = [
            [begin, end + 4], [max(0, begin - 1), end - 1], [0, end - begin],
            [begin + 2**62, end + 2**62], [end, begin], [begin, 2**64],
            [begin, end, 0], [-1, end], [str(begin), end]][rs.integers(9)]
    elif mode == "dtype":
        info["dtype"] = ["F32", "I32", "F16", "BF16", "F8_E4M3", "f32", "", None, 3, [],
                         {"a": 1}, "C128", "U1", "BOOL", "F64"][rs.integers(15)]
    elif mode == "shape":
        info["shape"] = [[], [0], [2**40, 2**40], [2**63], [-1], [1.5], "3", None, [[2]],
                         [True], list(reversed(info["shape"])) + [1]][rs.integers(11)]
    else:
        header[name] = [None, 1, "x", [], {}, {"dtype": "F32"}, [1, 2, 3],
                        {**info, "extra": 1}][rs.integers(8)]
    text = json.dumps(header).encode()
    return mode, len(text).to_bytes(8, "little") + text + raw[8 + n:]


def _peer_load(raw: bytes):
    """The package's reading of ``raw``: arrays, or the exception it raised."""
    from safetensors.numpy import load

    try:
        return load(raw)
    except Exception as err:  # noqa: BLE001 - any refusal of the package's
        return err


def _check_damaged(rs, raw: bytes, ours: bool, expected: dict, folder: str) -> list[str]:
    """A damaged copy of ``raw`` (fluxml's file when ``ours``, whose arrays are ``expected``
    by their keys, else the package's, whose arrays are ``expected`` by name): refused as a
    FileFormatError, or read as it should."""
    mode, bad = _damage(rs, raw)
    path = os.path.join(folder, "bad.safetensors")
    with open(path, "wb") as f:
        f.write(bad)
    tracemalloc.start()
    try:
        tensors = _flatten_loaded(fl.load(path)) if ours else st_format.read(path)[0]
    except FileFormatError as err:
        tracemalloc.stop()
        return [] if str(err).startswith("load") else [f"{mode}: unclear message {err}"]
    except Exception as err:  # noqa: BLE001 - what the fuzzer looks for
        tracemalloc.stop()
        return [f"{mode} ({'ours' if ours else 'peer'}): {type(err).__name__}: {err}"[:300]]
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    fails = []
    if peak > 4 * len(bad) + 2**20:
        fails.append(f"{mode}: reading {len(bad)} bytes allocated {peak}")
    if ours:  # fluxml's digests: a load that succeeds gives what was saved
        if tensors.keys() != expected.keys() or not all(
                _same(tensors[k], expected[k]) for k in expected):
            fails.append(f"{mode} (ours): a damaged file loaded as other arrays, silently")
        return fails
    peer = _peer_load(bad)
    if isinstance(peer, KeyError) and "BF16" in str(peer):
        return fails  # (its NumPy reader has no bfloat16: fluxml reads it as float32)
    if isinstance(peer, Exception):
        # the package refuses: fluxml may still read it only as the package would have
        fails.append(f"{mode} (peer): fluxml reads a file the package refuses "
                     f"({type(peer).__name__}: {str(peer)[:120]})")
    elif peer.keys() != tensors.keys() or not all(
            _same(np.asarray(tensors[k]).view(peer[k].dtype) if tensors[k].dtype.itemsize
                  == peer[k].dtype.itemsize else tensors[k], peer[k]) for k in peer):
        fails.append(f"{mode} (peer): fluxml and the package read the damaged file apart")
    return fails


# --- atomic writes -----------------------------------------------------------------------------


class _Unwritable:
    """An array-like leaf whose bytes cannot be had (its conversion raises part-way)."""

    shape, dtype, ndim = (2,), np.dtype(np.float32), 1

    def __array__(self, dtype=None, copy=None):
        raise RuntimeError("the disk of this array went away")


def _check_atomic(rs, folder: str, tree) -> list[str]:
    path = os.path.join(folder, "old.safetensors")
    fl.save(path, {"old": np.arange(5.0)})
    with open(path, "rb") as f:
        before = f.read()
    how = rs.choice(["bad dtype", "replace fails", "fsync fails"])
    fails = []
    saved = (st_format.os.replace, st_format.os.fsync)
    try:
        if how == "bad dtype":
            bad = {"tree": tree, "zz": np.array(["a string"])}
            if rs.integers(2):
                bad = {"tree": tree, "zz": np.zeros(2, dtype=[("a", "f4")])}
            try:
                fl.save(path, bad)
                fails.append("atomic: a string array was saved")
            except TypeError:
                pass
        else:
            def broken(*args, **kwargs):
                raise OSError(28, "No space left on device (simulated)")

            if how == "replace fails":
                st_format.os.replace = broken
            else:
                st_format.os.fsync = broken
            try:
                fl.save(path, tree)
                fails.append(f"atomic: {how}, but save returned")
            except OSError:
                pass
    finally:
        st_format.os.replace, st_format.os.fsync = saved
    with open(path, "rb") as f:
        if f.read() != before:
            fails.append(f"atomic: {how} changed the old file")
    left = [f for f in os.listdir(folder) if f.endswith(".tmp")]
    if left:
        fails.append(f"atomic: {how} left {left}")
    return fails


# --- a case ------------------------------------------------------------------------------------


def run_case(seed: int, folder: str) -> list[str]:
    """The failures of case ``seed`` (none: it passed)."""
    from safetensors.numpy import load_file, save_file

    rs = np.random.default_rng(seed)
    leaves: list = []
    tree = _tree(rs, 0, leaves, ())
    build = None
    if rs.random() < 0.4:
        build = _model(rs, seed)
        key = "model" if "model" not in tree else "model2"
        tree[key] = build(1)
        leaves += [((key,) + tuple(k.split(".")), v) for k, v in
                   fl.io.modelstate.flat_state(tree[key]).items()]
    fails: list[str] = []
    path = os.path.join(folder, "ours.safetensors")
    names = [".".join(p) for p, _ in leaves]
    collide = len(set(names)) < len(names) or "__metadata__" in names
    invalid = "\udcff" in "".join(names)  # (a lone surrogate: not Unicode, refused)
    try:
        fl.save(path, tree)
    except ValueError as err:
        if not (collide or invalid and "is not valid Unicode" in str(err)):
            return [f"save refused a tree of valid names that do not collide: {err}"]
        return []
    if collide or invalid:
        return ["save wrote a tree whose names collide or are not valid Unicode"]
    with open(path, "rb") as f:
        raw = f.read()
    # fluxml reads its own file back as the tree's keys, exactly
    loaded = _flatten_loaded(fl.load(path))
    want = {p: x for p, x in leaves}
    if loaded.keys() != want.keys():
        fails.append(f"round trip: keys {sorted(loaded)[:3]} != {sorted(want)[:3]}")
    else:
        fails += [f"round trip: {'.'.join(p)[:60]}: {want[p].dtype}{want[p].shape} came back "
                  f"{loaded[p].dtype}{loaded[p].shape}" for p in want
                  if not _same(loaded[p], want[p])]
        bad = [p for p in loaded if not (loaded[p].flags.writeable and
                                         loaded[p].dtype.isnative)]
        if bad:
            fails.append(f"round trip: {bad[0]} is read-only or not native")
    # the package reads it as the same arrays under the dotted names
    peer = load_file(path)
    expected = _peer_arrays(leaves)
    if peer.keys() != expected.keys():
        fails.append(f"the package reads fluxml's file as other names: "
                     f"{sorted(set(peer) ^ set(expected))[:3]}")
    else:
        fails += [f"the package reads {k[:60]!r} as {peer[k].dtype}{peer[k].shape}, saved "
                  f"{expected[k].dtype}{expected[k].shape}" for k in peer
                  if not _same(peer[k], expected[k])]
    # a model built again takes the state bitwise
    if build is not None:
        key = "model" if "model" in fl.load(path) and not isinstance(
            tree.get("model"), (dict, list, tuple, np.ndarray)) else "model2"
        fresh = build(2)
        fl.loadmodel(fresh, fl.load(path)[key])
        a, b = fl.io.modelstate.flat_state(fresh), fl.io.modelstate.flat_state(tree[key])
        if a.keys() != b.keys() or not all(_same(a[k], b[k]) for k in a):
            fails.append("a model built again did not take the saved state bitwise")
    # the package's file of the same arrays (complex128 left out: the format has none)
    theirs = {".".join(p): _native(x) for p, x in leaves
              if _native(x).dtype != np.complex128}
    peer_path = os.path.join(folder, "peer.safetensors")
    if theirs:
        save_file(theirs, peer_path)
        reference = _nested_by_dots(theirs)
        try:
            got = fl.load(peer_path)
        except FileFormatError as err:
            got = err
        if reference is None:
            if not isinstance(got, FileFormatError):
                fails.append("names that do not form a tree were nested without an error")
        elif isinstance(got, Exception):
            fails.append(f"fl.load refused the package's file: {got}")
        else:
            a, b = _flatten_loaded(got), _flatten_loaded(reference)
            if a.keys() != b.keys() or not all(_same(a[k], b[k]) for k in a):
                fails.append("fl.load nested the package's file otherwise than at its dots")
        with open(peer_path, "rb") as f:
            peer_raw = f.read()
    # damaged copies
    for _ in range(6):
        fails += _check_damaged(rs, raw, True, want, folder)
        if theirs and reference is not None:
            fails += _check_damaged(rs, peer_raw, False, theirs, folder)
    fails += _check_atomic(rs, folder, copy.deepcopy(tree) if rs.integers(2) else tree)
    return fails


def main(argv) -> int:
    return run_seeds(run_case, argv, 200, in_folder=True)


if __name__ == "__main__":
    sys.exit(1 if main(sys.argv[1:]) else 0)
