"""A seeded fuzzer of fluxml's data tools against references written here in plain Python
and NumPy: ``DataLoader`` over random data structures (arrays, tuples, namedtuples, dicts,
nested, lists, objects with ``__len__``/``__getitem__``) with random batch sizes, shuffling,
``partial``, ``collate``, generators and shards (ranks simulated); ``splitobs`` (fractions,
counts, stratified), ``kfolds``, ``shuffleobs``, ``getobs`` (index arrays, slices, masks),
``onehotbatch``/``onecold``, ``normalise``/``Standardiser``, ``read_idx`` over IDX files
written here, ``slidingwindow`` (and a DataLoader over its windows), ``oversample`` and
``undersample``.

The suite runs a few hundred cases (tests/data/test_fuzz_data.py); by hand:

    PYTHONPATH=src python tests/data/fuzz_data.py --cases 3000
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys
import tempfile
from collections import namedtuple

import numpy as np

import fluxml as fl

Pair = namedtuple("Pair", "a b")


class Dataset:
    """A dataset read one observation at a time (``__getitem__`` takes an int only)."""

    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        if not isinstance(i, int):
            raise TypeError(f"Dataset: an int index, got {type(i).__name__}")
        return self.items[i]


# --- random data ------------------------------------------------------------------------------


def _array(r, n):
    shape = (n,) + tuple(int(d) for d in r.integers(1, 3, size=r.integers(0, 3)))
    dtype = [np.float32, np.float64, np.int64, np.uint8, np.bool_][r.integers(5)]
    return (r.normal(size=shape) * 5).astype(dtype)


def _observation(r, depth=0):
    kind = r.integers(6 if depth < 2 else 3)
    if kind == 0:
        return float(r.normal())
    if kind == 1:
        return r.normal(size=(2,)).astype(np.float32)
    if kind == 2:
        return int(r.integers(9))
    if kind == 3:
        return (_observation(r, depth + 1), _observation(r, depth + 1))
    if kind == 4:
        return {"x": _observation(r, depth + 1), "y": _observation(r, depth + 1)}
    return Pair(_observation(r, depth + 1), _observation(r, depth + 1))


def _like(r, template):
    """Another observation of the same structure as ``template`` (so they can be stacked)."""
    if isinstance(template, tuple):
        parts = [_like(r, t) for t in template]
        return type(template)(*parts) if hasattr(template, "_fields") else tuple(parts)
    if isinstance(template, dict):
        return {k: _like(r, v) for k, v in template.items()}
    if isinstance(template, np.ndarray):
        return r.normal(size=template.shape).astype(template.dtype)
    return type(template)(r.integers(9)) if isinstance(template, int) else float(r.normal())


def random_data(r, n, depth=0):
    """A random structure of ``n`` observations."""
    kind = r.integers(7 if depth < 2 else 2)
    if kind in (0, 1):
        return _array(r, n)
    if kind == 2:
        return tuple(random_data(r, n, depth + 1) for _ in range(int(r.integers(1, 4))))
    if kind == 3:
        return {f"k{i}": random_data(r, n, depth + 1) for i in range(int(r.integers(1, 4)))}
    if kind == 4:
        return Pair(random_data(r, n, depth + 1), random_data(r, n, depth + 1))
    first = _observation(r)
    items = [first] + [_like(r, first) for _ in range(n - 1)] if n else []
    return Dataset(items) if kind == 5 else items


# --- the references ---------------------------------------------------------------------------


def ref_numobs(data):
    if isinstance(data, np.ndarray):
        return data.shape[0]
    if isinstance(data, dict):
        return ref_numobs(next(iter(data.values())))
    if isinstance(data, tuple):
        return ref_numobs(data[0])
    return len(data)


def ref_stack(obs):
    """PyTorch's default_collate, over NumPy."""
    first = obs[0]
    if isinstance(first, tuple):
        parts = [ref_stack([o[i] for o in obs]) for i in range(len(first))]
        return type(first)(*parts) if hasattr(first, "_fields") else tuple(parts)
    if isinstance(first, dict):
        return {k: ref_stack([o[k] for o in obs]) for k in first}
    return np.array([np.asarray(o) for o in obs])


def ref_obs(data, i):
    """Observation ``i`` of ``data``."""
    if isinstance(data, np.ndarray):
        return data[i]
    if isinstance(data, dict):
        return {k: ref_obs(v, i) for k, v in data.items()}
    if isinstance(data, tuple):
        parts = [ref_obs(v, i) for v in data]
        return type(data)(*parts) if hasattr(data, "_fields") else tuple(parts)
    return data[i]


def ref_batch(data, idx):
    """The batch of observations ``idx``: arrays indexed together, datasets stacked."""
    if isinstance(data, np.ndarray):
        return data[np.asarray(idx, dtype=np.int64)]
    if isinstance(data, dict):
        return {k: ref_batch(v, idx) for k, v in data.items()}
    if isinstance(data, tuple):
        parts = [ref_batch(v, idx) for v in data]
        return type(data)(*parts) if hasattr(data, "_fields") else tuple(parts)
    return ref_stack([data[int(i)] for i in idx])


def ref_epochs(n, batchsize, shuffle, partial, seed, rank, nranks, epochs):
    """The indices of each batch of each epoch, as the DataLoader's docstring describes."""
    gen = np.random.default_rng(seed)
    out = []
    for _ in range(epochs):
        order = gen.permutation(n) if shuffle else np.arange(n)
        step, batches = batchsize * nranks, []
        for lo in range(0, n, step):
            chunk = order[lo:lo + step]
            if len(chunk) < step and (not partial or len(chunk) < nranks):
                break
            batches.append(np.array_split(chunk, nranks)[rank])
        out.append(batches)
    return out


def ref_window_starts(n, size, stride):
    """The first observation of each complete window: a loop."""
    starts, start = [], 0
    while start + size <= n:
        starts.append(start)
        start += stride
    return starts


def ref_oversampled(labels, fraction):
    """For each label: how many observations it has after oversampling, and how many times
    each of its observations appears (sorted): each class topped up to round(fraction *
    largest) with whole copies, the remainder drawn once each."""
    members = {}
    for i, lab in enumerate(labels):
        members.setdefault(lab, []).append(i)
    target = round(fraction * max(len(m) for m in members.values()))
    out = {}
    for lab, m in members.items():
        c, extra = len(m), max(target - len(m), 0)
        whole, rest = extra // c, extra % c
        out[lab] = (c + extra, sorted([1 + whole] * (c - rest) + [2 + whole] * rest))
    return out


def same(a, b, where="batch"):
    """Equal structure, types, dtypes, shapes and values."""
    if isinstance(b, (tuple, list)) and not isinstance(b, np.ndarray):
        assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
        assert len(a) == len(b), f"{where}: {len(a)} parts != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{where}[{i}]")
    elif isinstance(b, dict):
        assert isinstance(a, dict) and list(a) == list(b), f"{where}: keys {list(a)} != {list(b)}"
        for k in b:
            same(a[k], b[k], f"{where}[{k!r}]")
    else:
        a, b = np.asarray(a), np.asarray(b)
        assert a.dtype == b.dtype and a.shape == b.shape, \
            f"{where}: {a.dtype}{a.shape} != {b.dtype}{b.shape}"
        assert np.array_equal(a, b), f"{where}: {a} != {b}"


# --- cases ------------------------------------------------------------------------------------


def loader_case(seed: int) -> None:
    r = np.random.default_rng([seed, 3])
    n = int(r.integers(0, 12)) if r.integers(4) else int(r.integers(1, 40))
    data = random_data(r, n)
    if n == 0 and not isinstance(data, np.ndarray):
        data = _array(r, 0)
    batchsize = int(r.integers(1, 6))
    shuffle, partial = bool(r.integers(2)), bool(r.integers(2))
    nranks = int(r.integers(1, 4)) if r.integers(2) else 1
    collate = (lambda obs: ("mine", len(obs), obs)) if r.integers(4) == 0 else None
    rng_seed = int(r.integers(1000))
    epochs = 2
    covered = np.zeros(n, int)
    for rank in range(nranks):
        as_generator = bool(r.integers(2))
        rng = np.random.default_rng(rng_seed) if as_generator else rng_seed
        loader = fl.DataLoader(data, batchsize=np.int64(batchsize) if r.integers(2)
                               else batchsize, shuffle=shuffle, partial=partial,
                               collate=collate, rng=rng,
                               shard=(rank, nranks) if nranks > 1 or r.integers(2) else False)
        expected = ref_epochs(n, batchsize, shuffle, partial, rng_seed, rank, nranks, epochs)
        where = (f"seed {seed}: n={n} batchsize={batchsize} shuffle={shuffle} "
                 f"partial={partial} rank {rank}/{nranks} collate={collate is not None}")
        assert len(loader) == len(expected[0]), f"{where}: len {len(loader)}, " \
                                                f"expected {len(expected[0])}"
        for e in range(epochs):
            got = list(loader)
            assert len(got) == len(expected[e]), f"{where}: epoch {e}: {len(got)} batches, " \
                                                 f"expected {len(expected[e])}"
            for b, (batch, idx) in enumerate(zip(got, expected[e])):
                if collate is None:
                    same(batch, ref_batch(data, idx), f"{where}: epoch {e} batch {b}")
                else:
                    assert batch[:2] == ("mine", len(idx)), f"{where}: collate got {batch[:2]}"
                    for k, (o, i) in enumerate(zip(batch[2], idx)):
                        same(o, ref_obs(data, int(i)), f"{where}: batch {b} observation {k}")
                if e == 0:
                    covered[np.asarray(idx, dtype=np.int64)] += 1
                if collate is None and not shuffle and isinstance(data, np.ndarray) \
                        and batch.size:
                    assert np.shares_memory(batch, data), f"{where}: not a view"
    # each observation at most once per epoch over the ranks; all but a remainder smaller
    # than the ranks (or a partial global batch, with partial=False) exactly once
    assert covered.max(initial=0) <= 1, f"seed {seed}: an observation twice in one epoch"
    step = batchsize * nranks
    rest = n % step
    left_out = rest if rest and (not partial or rest < nranks) else 0
    assert covered.sum() == n - left_out, f"seed {seed}: {covered.sum()} observations " \
                                          f"covered of {n}, {left_out} left out"


def _has_dataset(data) -> bool:
    if isinstance(data, np.ndarray):
        return False
    if isinstance(data, (tuple, dict)):
        return any(map(_has_dataset, data.values() if isinstance(data, dict) else data))
    return True


def drawn_order(r, seed: int, n: int, classes: int):
    """Whether to shuffle, the order that gives (the permutation a seed ``seed`` draws), a
    label per observation (or None: unstratified) and, for each label, the positions in
    that order of its observations."""
    shuffle = bool(r.integers(2))
    order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
    labels = r.integers(classes, size=n) if r.integers(3) == 0 else None
    groups = {}
    for pos, i in enumerate(order):
        groups.setdefault(0 if labels is None else labels[i], []).append(pos)
    return shuffle, order, labels, groups


def split_case(seed: int) -> None:
    r = np.random.default_rng([seed, 4])
    n = int(r.integers(1, 30))
    data = random_data(r, n)
    parts = int(r.integers(1, 4))
    entries = [float(a) for a in r.dirichlet(np.ones(parts + 1))[:parts] * 0.98 + 0.001]
    if r.integers(3) == 0:  # counts
        entries = [int(a * n) for a in entries]
    at = entries[0] if parts == 1 and r.integers(2) else tuple(entries)
    shuffle, order, labels, groups = drawn_order(r, seed, n, classes=3)
    # each part by hand: round(size * fraction) of every label's observations (or of all)
    chosen, too_many = [[] for _ in range(len(entries) + 1)], False
    for members in groups.values():
        fractions = [a / n if isinstance(a, int) else a for a in entries]  # (of each label)
        sizes = [a if isinstance(a, int) and labels is None else round(len(members) * f)
                 for a, f in zip(entries, fractions)]
        too_many |= sum(sizes) > len(members)
        cuts = np.cumsum([0] + sizes + [len(members) - sum(sizes)])
        for part, a, b in zip(chosen, cuts[:-1], cuts[1:]):
            part.extend(members[a:b])
    kw = {"stratified": labels} if labels is not None else {}
    if too_many or _has_dataset(data) and any(not p for p in chosen):
        try:  # more than the observations, or an empty batch of a dataset
            fl.splitobs(data, at=at, shuffle=shuffle, rng=seed, **kw)
        except ValueError as err:
            assert str(err).startswith("splitobs: "), f"seed {seed}: unclear {err}"
            return
        raise AssertionError(f"seed {seed}: splitobs at={at} of {n} gave {chosen}")
    got = fl.splitobs(data, at=at, shuffle=shuffle, rng=seed, **kw)
    assert len(got) == len(entries) + 1, f"seed {seed}: {len(got)} parts"
    for k, part in enumerate(chosen):
        same(got[k], ref_batch(data, order[sorted(part)]), f"seed {seed}: splitobs part {k}")
    if not shuffle or isinstance(data, (list, Dataset)):
        return
    same(fl.shuffleobs(data, rng=seed), ref_batch(data, order), f"seed {seed}: shuffleobs")


def getobs_case(seed: int) -> None:
    """getobs with an index array, a slice (negative steps too) or a boolean mask: the
    observations NumPy's indexing of ``arange(n)`` picks, from every part alike."""
    r = np.random.default_rng([seed, 10])
    n = int(r.integers(1, 12))
    data = random_data(r, n)
    kind = r.integers(3)
    if kind == 0:
        idx = r.integers(-n, n, size=int(r.integers(1, 6)))
    elif kind == 1:
        idx = slice(*(int(v) for v in r.integers(-n - 2, n + 2, size=2)),
                    int(r.choice([-2, -1, 1, 2])))
    else:
        idx = r.integers(2, size=n).astype(bool)
        idx[r.integers(n)] = True  # (a dataset cannot give an empty batch)
    chosen = np.arange(n)[idx]
    if not len(chosen):
        return
    same(fl.data.getobs(data, idx), ref_batch(data, chosen % n), f"seed {seed}: getobs {idx}")


def kfolds_case(seed: int) -> None:
    """kfolds against folds cut by hand: every observation validates once."""
    r = np.random.default_rng([seed, 8])
    n = int(r.integers(2, 25))
    data = random_data(r, n)
    k = int(r.integers(2, n + 1))
    shuffle, order, labels, groups = drawn_order(r, seed, n, classes=2)
    if min(map(len, groups.values())) < k:
        try:
            list(fl.kfolds(data, k=k, shuffle=shuffle, rng=seed, stratified=labels))
        except ValueError as err:
            assert str(err).startswith("kfolds: "), f"seed {seed}: unclear {err}"
            return
        raise AssertionError(f"seed {seed}: kfolds k={k} of {groups} was cut")
    folds = [[] for _ in range(k)]
    for members in groups.values():
        size, extra = divmod(len(members), k)
        start = 0
        for f in range(k):
            folds[f].extend(members[start:start + size + (f < extra)])
            start += size + (f < extra)
    got = list(fl.kfolds(data, k=k, shuffle=shuffle, rng=seed, stratified=labels))
    assert len(got) == k, f"seed {seed}: {len(got)} folds"
    for (train, val), fold in zip(got, folds):
        rest = [p for p in range(n) if p not in fold]
        same(train, ref_batch(data, order[rest]), f"seed {seed}: kfolds train")
        same(val, ref_batch(data, order[sorted(fold)]), f"seed {seed}: kfolds validation")


def onehot_case(seed: int) -> None:
    r = np.random.default_rng([seed, 5])
    k = int(r.integers(1, 6))
    kind = r.integers(5)
    labels = [list(range(k)), [f"c{i}" for i in range(k)], [0.5 * i - 1 for i in range(k)],
              [(i % 2, i // 2) for i in range(k)], [i if i % 2 else f"c{i}" for i in range(k)]
              ][kind]
    ys = [labels[i] for i in r.integers(k, size=int(r.integers(0, 9)))]
    spec = k if kind == 0 and r.integers(2) else labels
    dtype = [np.float32, np.float64, int, bool][r.integers(4)]
    got = fl.onehotbatch(ys, spec, dtype=dtype) if ys else None
    if ys:
        expected = np.array([[y == lab for lab in labels] for y in ys]).astype(dtype)
        same(got, expected, f"seed {seed}: onehotbatch({ys}, {spec})")
        assert fl.onecold(got, labels).tolist() == ys, f"seed {seed}: onecold"
    scores = r.normal(size=(int(r.integers(1, 4)), k))
    expected = [labels[int(np.argmax(s))] for s in scores]
    assert fl.onecold(scores, labels).tolist() == expected, f"seed {seed}: onecold of scores"
    if r.integers(4) == 0:  # a NaN score has no largest entry: refused
        scores[tuple(r.integers(d) for d in scores.shape)] = np.nan
        try:
            fl.onecold(scores, labels)
        except ValueError as err:
            assert "NaN" in str(err), f"seed {seed}: unclear {err}"
        else:
            raise AssertionError(f"seed {seed}: onecold read NaN scores")


def normalise_case(seed: int) -> None:
    r = np.random.default_rng([seed, 6])
    shape = tuple(int(d) for d in r.integers(1, 5, size=r.integers(1, 4)))
    x = r.normal(size=shape) * r.uniform(0.1, 10) + r.normal() * 3
    axis = int(r.integers(len(shape)))
    mean = x.mean(axis=axis, keepdims=True)
    std = np.sqrt(((x - mean) ** 2).mean(axis=axis, keepdims=True))
    np.testing.assert_allclose(fl.normalise(x, axis=axis, eps=0.0 if (std > 0).all() else 1e-5),
                               (x - mean) / (std + (0.0 if (std > 0).all() else 1e-5)),
                               rtol=1e-10, atol=1e-10, err_msg=f"seed {seed}: normalise")
    s = fl.Standardiser.fit(x, axis=axis)
    safe = np.where(std > 1e-8, std, 1.0)
    np.testing.assert_allclose(s(x), (x - mean) / safe, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(s.inverse(s(x)), x, rtol=1e-10, atol=1e-10)


IDX_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(np.int16): 0x0B,
             np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D, np.dtype(np.float64): 0x0E}


def idx_case(seed: int, folder: str) -> None:
    r = np.random.default_rng([seed, 7])
    dtype = list(IDX_CODES)[r.integers(len(IDX_CODES))]
    shape = tuple(int(d) for d in r.integers(0, 4, size=r.integers(1, 4)))
    x = (r.normal(size=shape) * 50).astype(dtype)
    raw = bytes([0, 0, IDX_CODES[dtype], len(shape)])
    raw += b"".join(d.to_bytes(4, "big") for d in shape) + x.astype(dtype.newbyteorder(">"))\
        .tobytes()
    path = os.path.join(folder, "x.idx")
    with open(path, "wb") as f:
        f.write(gzip.compress(raw) if r.integers(2) else raw)
    got = fl.datasets.read_idx(path)
    same(got, x, f"seed {seed}: read_idx {dtype}{shape}")
    assert got.dtype.isnative, f"seed {seed}: read_idx gave {got.dtype.byteorder} bytes"
    cut = int(r.integers(len(raw)))
    with open(path, "wb") as f:
        f.write(raw[:cut] if r.integers(2) else raw + b"\0")
    try:
        fl.datasets.read_idx(path)
    except ValueError as err:
        assert "read_idx" in str(err), f"seed {seed}: unclear {err}"
    else:
        raise AssertionError(f"seed {seed}: a damaged IDX file ({cut} of {len(raw)} bytes) "
                             f"was read")


def collate_case(seed: int) -> None:
    """default_collate of observations that may differ in their number of parts."""
    r = np.random.default_rng([seed, 9])
    first = _observation(r)
    obs = [first] + [_like(r, first) for _ in range(int(r.integers(0, 4)))]
    if isinstance(first, tuple) and r.integers(2):  # one observation with a part more or less
        i = int(r.integers(len(obs)))
        obs[i] = \
            tuple(obs[i])[:-1] if r.integers(2) else tuple(obs[i]) + (1.0,)
    lengths = {len(o) if isinstance(o, tuple) else None for o in obs}
    if len(lengths) > 1:
        try:
            fl.data.default_collate(obs)
        except ValueError as err:
            assert "different lengths" in str(err), f"seed {seed}: unclear {err}"
            return
        raise AssertionError(f"seed {seed}: observations of lengths {lengths} were collated")
    same(fl.data.default_collate(obs), ref_stack(obs), f"seed {seed}: default_collate")


def window_case(seed: int) -> None:
    r = np.random.default_rng([seed, 9])
    n = int(r.integers(1, 16))
    data = random_data(r, n)
    size, stride = int(r.integers(1, n + 3)), int(r.integers(1, 5))
    where = f"seed {seed}: slidingwindow n={n} size={size} stride={stride}"
    if size > n:
        try:
            fl.slidingwindow(data, size, stride)
        except ValueError as err:
            assert "size must be at most" in str(err), f"{where}: {err}"
            return
        raise AssertionError(f"{where}: a window larger than the data was made")
    windows = fl.slidingwindow(data, size, stride)
    expected = [ref_batch(data, range(a, a + size)) for a in ref_window_starts(n, size, stride)]
    assert len(windows) == len(expected), f"{where}: {len(windows)} windows"
    for k, w in enumerate(windows):
        same(w, expected[k], f"{where}: window {k}")
    batchsize = int(r.integers(1, 4))
    for b, batch in enumerate(fl.DataLoader(windows, batchsize=batchsize)):
        same(batch, ref_stack(expected[b * batchsize:(b + 1) * batchsize]), f"{where}: batch {b}")


def resample_case(seed: int) -> None:
    r = np.random.default_rng([seed, 10])
    n = int(r.integers(1, 20))
    data = random_data(r, n)
    labels = r.integers(int(r.integers(1, 5)), size=n)
    fraction = [0.4, 1, 1, 1.7][r.integers(4)]
    shuffle, rng = bool(r.integers(2)), int(r.integers(1000))
    where = f"seed {seed}: resample n={n} labels={labels.tolist()} shuffle={shuffle}"
    given = labels if r.integers(2) else labels.tolist()
    # the observations' positions resampled with them, to read back what was taken
    (d, idx), y = fl.oversample((data, np.arange(n)), given, fraction=fraction,
                                shuffle=shuffle, rng=rng)
    same(d, ref_batch(data, idx), f"{where}: oversampled data")
    assert y.tolist() == labels[idx].tolist(), f"{where}: labels not with their data"
    seen = np.bincount(idx, minlength=n)
    for lab, (count, appearances) in ref_oversampled(labels.tolist(), fraction).items():
        assert (y == lab).sum() == count, f"{where}: label {lab} {(y == lab).sum()} times"
        assert sorted(seen[labels == lab].tolist()) == appearances, f"{where}: label {lab}"
    d, idx, y = fl.undersample((data, np.arange(n), given), shuffle=shuffle, rng=rng)
    same(d, ref_batch(data, idx), f"{where}: undersampled data")
    fewest = min(int((labels == lab).sum()) for lab in set(labels.tolist()))
    assert len(set(idx.tolist())) == len(idx), f"{where}: an observation twice"
    assert all(int((y == lab).sum()) == fewest for lab in set(labels.tolist())), where


def run_case(seed: int, folder: str) -> None:
    collate_case(seed)
    loader_case(seed)
    split_case(seed)
    kfolds_case(seed)
    getobs_case(seed)
    onehot_case(seed)
    normalise_case(seed)
    idx_case(seed, folder)
    window_case(seed)
    resample_case(seed)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=500)
    p.add_argument("--start", type=int, default=0)
    args = p.parse_args(argv)
    failures = 0
    with tempfile.TemporaryDirectory() as folder:
        for seed in range(args.start, args.start + args.cases):
            try:
                run_case(seed, folder)
            except Exception as err:  # noqa: BLE001 - report every failing seed
                failures += 1
                print(f"seed {seed}: {type(err).__name__}: {str(err)[:400]}")
    print(f"{args.cases - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
