"""Shuffling and splitting observations: ``shuffleobs``, ``splitobs`` (by fractions or
counts, shuffled or not, stratified by labels) and ``kfolds`` for cross-validation, as
MLUtils' of those names, batch first and 0-based.

>>> import numpy as np, fluxml as fl
>>> train, test = fl.splitobs(np.arange(10), at=0.5, stratified=[0] * 4 + [1] * 6)
>>> train, test
(array([0, 1, 4, 5, 6]), array([2, 3, 7, 8, 9]))
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np

from fluxml._checks import flag, is_int, is_real, positive_int
from fluxml.data.loader import as_generator, getobs, numobs


def shuffleobs(data, rng=None):
    """``data`` with its observations (first axis) in a random order; a tuple or dict of
    arrays is shuffled together. ``rng``: an int seed or a ``numpy.random.Generator``.

    >>> import numpy as np, fluxml as fl
    >>> x, y = fl.shuffleobs((np.arange(4), np.arange(4) * 10), rng=1)
    >>> bool(np.all(y == x * 10))
    True
    """
    return getobs(data, as_generator(rng).permutation(numobs(data)))


def splitobs(data, at: float | int | Sequence[float | int] = 0.8, shuffle: bool = False,
             rng=None, stratified=None):
    """Split ``data`` along its observations into ``len(at) + 1`` parts. Each entry of ``at``
    sizes one part, the last part takes the rest: a fraction in (0, 1) of the observations
    (rounded to the nearest count, ties to even, each part on its own as MLUtils'), or a
    count. ``at=0.8`` gives ``(first 80%, rest)``; ``at=(0.6, 0.2)`` three parts;
    ``at=100`` the first 100 observations and the rest. ``shuffle=True`` shuffles first
    (``rng``: a seed or a generator). ``stratified``: a label per observation; each label's
    observations are split by ``at`` on their own, so every part keeps the labels'
    proportions (each part in the data's order). Unshuffled and unstratified, the parts of
    an array are views.

    >>> import numpy as np, fluxml as fl
    >>> train, test = fl.splitobs(np.arange(10), at=0.7)
    >>> train, test
    (array([0, 1, 2, 3, 4, 5, 6]), array([7, 8, 9]))
    >>> [len(p) for p in fl.splitobs(np.arange(10), at=(0.15, 0.15, 0.15))]
    [2, 2, 2, 4]
    """
    n = numobs(data)
    given, at = at, _check_at(at)
    order = as_generator(rng).permutation(n) if flag("splitobs", "shuffle", shuffle) else None
    if stratified is None:
        sizes = _sizes(n, at, given, "the observations")
        cuts = np.cumsum([0] + sizes + [n - sum(sizes)])
        parts = [slice(a, b) if order is None else order[a:b]
                 for a, b in zip(cuts[:-1], cuts[1:])]
    else:
        groups = _groups(stratified, n, order, "splitobs")
        parts = [[] for _ in range(len(at) + 1)]
        for label, members in groups.items():  # (positions in the shuffled order)
            sizes = _sizes(len(members), [a / n if is_int(a) else a for a in at], given,
                           f"the observations labelled {label!r}")
            cuts = np.cumsum([0] + sizes + [len(members) - sum(sizes)])
            for part, a, b in zip(parts, cuts[:-1], cuts[1:]):
                part.extend(members[a:b])
        parts = [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]
        parts = parts if order is None else [order[p] for p in parts]
    empty = [k for k, p in enumerate(parts) if _count(p, n) == 0]
    if empty and _read_one_at_a_time(data):  # (default_collate failed on no observations)
        raise ValueError(f"splitobs: part {empty[0]} of {n} observations split at {given!r} "
                         f"would hold none, and a dataset read one observation at a time "
                         f"cannot give an empty batch; split more observations or change at")
    return tuple(getobs(data, p) for p in parts)


def kfolds(data, k: int = 5, shuffle: bool = False, rng=None, stratified=None) -> Iterator:
    """The ``k`` folds of ``data`` for cross-validation, one ``(train, validation)`` pair at
    a time (each made when it is reached, as MLUtils' lazy ``kfolds``): ``data`` is cut into
    ``k`` parts of consecutive observations (the first ``n % k`` one larger), each the
    validation set once, the rest the training set, in the data's order. ``shuffle=True``
    assigns observations to the parts at random (``rng``: a seed or a generator);
    ``stratified``: a label per observation, each label's observations cut into ``k`` parts
    on their own, so every validation set keeps the labels' proportions (each label needs
    ``k`` observations at least).

    >>> import numpy as np, fluxml as fl
    >>> [val.tolist() for _, val in fl.kfolds(np.arange(7), k=3)]
    [[0, 1, 2], [3, 4], [5, 6]]
    >>> train, val = next(fl.kfolds((np.arange(7), np.arange(7) * 10), k=3))
    >>> train[1].tolist(), val[1].tolist()
    ([30, 40, 50, 60], [0, 10, 20])
    """
    n = numobs(data)
    k = positive_int("kfolds", "k", k, minimum=2)
    if k > n:
        raise ValueError(f"kfolds: k must be at most the number of observations, {n}; got {k}")
    order = as_generator(rng).permutation(n) if flag("kfolds", "shuffle", shuffle) else None
    if stratified is None:
        folds = _folds(np.arange(n), k)
    else:
        folds = [[] for _ in range(k)]
        for label, members in _groups(stratified, n, order, "kfolds").items():
            if len(members) < k:
                raise ValueError(f"kfolds: the label {label!r} has {len(members)} "
                                 f"observations, fewer than k = {k}: a stratified "
                                 f"validation set cannot hold each label")
            for fold, part in zip(folds, _folds(np.asarray(members), k)):
                fold.extend(part.tolist())
        folds = [np.sort(np.asarray(f, dtype=np.int64)) for f in folds]
    return _pairs(data, folds, order, n)


def _pairs(data, folds, order, n) -> Iterator:
    for val in folds:
        train = np.setdiff1d(np.arange(n), val)
        if order is not None:
            train, val = order[train], order[val]
        yield getobs(data, train), getobs(data, val)


def _folds(positions: np.ndarray, k: int) -> list:
    """``positions`` cut into ``k`` runs, the first ``len % k`` one longer."""
    size, extra = divmod(len(positions), k)
    cuts = np.cumsum([0] + [size + (i < extra) for i in range(k)])
    return [positions[a:b] for a, b in zip(cuts[:-1], cuts[1:])]


def _check_at(at) -> list:
    if isinstance(at, np.ndarray) and at.ndim == 0:  # (list() of it raised "iteration over
        at = at.item()  # a 0-d array"): its number, a fraction or a count
    entries = list(at) if isinstance(at, (Sequence, np.ndarray)) else [at]
    ok = entries and all(is_int(a) and a >= 0 or is_real(a) and not is_int(a) and 0 < a < 1
                         for a in entries)
    if not ok:
        raise ValueError(f"splitobs: at must be a fraction in (0, 1) or a count of "
                         f"observations, or a sequence of them (one a part, the last part "
                         f"the rest); got {at!r}")
    return [int(a) if is_int(a) else float(a) for a in entries]


def _sizes(n: int, at: list, given, what: str) -> list:
    """The parts' sizes for ``at`` (fractions of ``n``, or counts), the last part apart."""
    sizes = [a if is_int(a) else int(round(n * a)) for a in at]
    # what was asked, before rounding: fractions of 0.5 and 0.6 of 5 observations rounded to
    # 2 and 3, which fit, and gave parts of 40%, 60% and nothing, silently
    asked = sum(a if is_int(a) else n * a for a in at)
    if sum(sizes) > n or asked > n * (1 + 1e-12):
        raise ValueError(f"splitobs: at={given!r} asks for {asked:g} observations (parts of "
                         f"{sizes} once rounded), more than the {n} of {what}")
    return sizes


def _groups(labels, n: int, order, who: str, name: str = "stratified") -> dict:
    """Positions (in ``order``, the shuffled order, where given) of each label's
    observations, the labels in their first appearance. NaN labels are one label (MLUtils'
    Dict compares with isequal; each NaN an array gave was a label of its own, so a
    stratified split sent them all to the last part, silently)."""
    labels = np.asarray(labels).tolist() if hasattr(labels, "shape") else list(labels)
    if len(labels) != n:
        raise ValueError(f"{who}: {name} must hold one label per observation, {n}; got "
                         f"{len(labels)}")
    groups: dict = {}
    for pos, i in enumerate(range(n) if order is None else order.tolist()):
        label = labels[i]
        if isinstance(label, float) and label != label:
            label = math.nan  # (one object: a dict finds it by identity)
        try:
            groups.setdefault(label, []).append(pos)
        except TypeError:
            hint = " (one-hot rows? pass fl.onecold(y))" if isinstance(label, list) else ""
            raise TypeError(f"{who}: {name} must hold one hashable label per observation "
                            f"(a number, a string, a tuple); got {label!r} (a "
                            f"{type(label).__name__}) for observation {i}{hint}") from None
    return groups


def _count(part, n: int) -> int:
    return len(range(n)[part]) if isinstance(part, slice) else len(part)


def _read_one_at_a_time(data) -> bool:
    """Whether ``data`` holds a dataset that is not an array (its batches are collated)."""
    if hasattr(data, "shape") and hasattr(data, "dtype") or hasattr(data, "iloc"):
        return False  # (an array, or a pandas table: an empty part is an empty table)
    if isinstance(data, (tuple, dict)):
        return any(map(_read_one_at_a_time, data.values() if isinstance(data, dict) else data))
    return True
