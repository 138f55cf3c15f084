"""Class rebalancing by resampling: ``oversample`` (repeat observations of the smaller
classes) and ``undersample`` (keep as many of each class as the smallest has), as MLUtils'
of those names, batch first and 0-based.

>>> import numpy as np, fluxml as fl
>>> x, y = np.arange(6), np.array(["a", "b", "b", "b", "b", "a"])
>>> xo, yo = fl.oversample((x, y), shuffle=False)
>>> xo.tolist(), yo.tolist()
([0, 1, 2, 3, 4, 5, 0, 5], ['a', 'b', 'b', 'b', 'b', 'a', 'a', 'a'])
>>> xu, yu = fl.undersample((x, y), shuffle=False)
>>> xu.tolist(), yu.tolist()
([0, 1, 2, 5], ['a', 'b', 'b', 'a'])
"""

from __future__ import annotations

import numpy as np

from fluxml._checks import flag, real_in
from fluxml.data.loader import as_generator, counted, getobs, numobs
from fluxml.data.splits import _groups

_LAST = "data's last part (the labels)"  # the labels' name in errors, taken from (x, ..., y)


def oversample(data, classes=None, fraction: float = 1, shuffle: bool = True, rng=None):
    """``data`` with observations of the smaller classes repeated until every class has at
    least ``round(fraction * m)`` observations (``m`` the largest class's count; rounded to
    the nearest, ties to even, as Julia's ``round``): ``fraction=1`` balances the classes,
    ``0.5`` tops each up to half the largest; a class already that large is kept as it is
    (nothing is dropped), and a ``fraction`` above 1 repeats every class. All observations
    are kept; a class with ``c`` observations that needs ``e`` more gets ``e // c`` whole
    copies of them and ``e % c`` more drawn without repetition (MLUtils' rule).

    ``classes``: a label per observation (numbers, strings, tuples: hashable values; NaN
    labels are one class). Without it, ``data`` is a tuple ``(x, ..., y)`` whose last part
    holds the labels, as MLUtils' ``data[end]``, and the result is the tuple resampled,
    ``(x, ..., y)``; with it, the result is ``(data, classes)`` resampled.

    ``shuffle=True`` draws the extra observations at random and shuffles the result (``rng``:
    an int seed or a ``numpy.random.Generator``, so a seed reproduces it); ``shuffle=False``
    takes each class's first ones and keeps the data's order, the extra observations at the
    end, class by class in the order the classes first appear (MLUtils: its Dict's order).

    >>> import numpy as np, fluxml as fl
    >>> x, y = np.arange(10.0).reshape(5, 2), np.array([0, 1, 1, 1, 1])
    >>> xo, yo = fl.oversample((x, y), rng=0)
    >>> xo.shape, int((yo == 0).sum()), int((yo == 1).sum())
    ((8, 2), 4, 4)
    >>> xo, yo = fl.oversample(x, y, fraction=0.5, shuffle=False)
    >>> yo.tolist()
    [0, 1, 1, 1, 1, 0]
    """
    data, classes, rebuild, name = _parts(data, classes, "oversample")
    fraction = real_in("oversample", "fraction", fraction, 0, low_open=True)
    shuffle = flag("oversample", "shuffle", shuffle)
    groups = _class_groups(data, classes, "oversample", name)
    target = round(float(fraction) * max(len(m) for m in groups.values()))
    gen = as_generator(rng) if shuffle else None
    idx = list(range(numobs(data)))
    for members in groups.values():
        extra = target - len(members)
        copies, rest = divmod(max(extra, 0), len(members))
        idx.extend(members * copies)
        idx.extend(gen.choice(members, rest, replace=False).tolist() if shuffle
                   else members[:rest])
    idx = np.asarray(idx, dtype=np.int64)
    if shuffle:
        gen.shuffle(idx)
    return rebuild(getobs(data, idx), getobs(classes, idx))


def undersample(data, classes=None, shuffle: bool = True, rng=None):
    """``data`` with as many observations of each class as the smallest class has: the
    others' are dropped. ``classes``, the tuple ``(x, ..., y)`` with the labels last and
    ``rng`` as in ``oversample``. ``shuffle=True`` keeps a random choice of each class's
    observations and shuffles the result; ``shuffle=False`` keeps each class's first ones,
    in the data's order.

    >>> import numpy as np, fluxml as fl
    >>> x, y = np.arange(6), np.array(["a", "b", "b", "b", "b", "a"])
    >>> xu, yu = fl.undersample((x, y), rng=0)
    >>> sorted(yu.tolist()), bool(np.all((y[xu] == yu)))
    (['a', 'a', 'b', 'b'], True)
    """
    data, classes, rebuild, name = _parts(data, classes, "undersample")
    shuffle = flag("undersample", "shuffle", shuffle)
    groups = _class_groups(data, classes, "undersample", name)
    fewest = min(len(m) for m in groups.values())
    gen = as_generator(rng) if shuffle else None
    idx = []
    for members in groups.values():
        idx.extend(gen.choice(members, fewest, replace=False).tolist() if shuffle
                   else members[:fewest])
    idx = np.asarray(idx, dtype=np.int64)
    idx = gen.permutation(idx) if shuffle else np.sort(idx)
    return rebuild(getobs(data, idx), getobs(classes, idx))


def _parts(data, classes, who: str):
    """``(data, classes, rebuild, name)``: the data and its labels, the function that makes
    the result of the resampled ones (the tuple ``(x, ..., y)`` where the labels were its
    last part; ``(data, classes)`` where they were given), and the labels' name for an
    error."""
    if classes is not None:
        return data, classes, lambda d, c: (d, c), "classes"
    if not isinstance(data, tuple):
        raise ValueError(f"{who}: classes not given, and data is of type {type(data).__name__}; "
                         f"the labels are taken from the last part of a tuple (x, ..., y) "
                         f"only: pass classes= (one label per observation)")
    if len(data) < 2:
        raise ValueError(f"{who}: classes not given, and data is a tuple of {len(data)} "
                         f"part(s); it must be (x, ..., y), the labels last, with data "
                         f"before them")
    if hasattr(data, "_fields"):  # a namedtuple comes back as one
        return tuple(data[:-1]), data[-1], lambda d, c: type(data)(*d, c), _LAST
    return tuple(data[:-1]), data[-1], lambda d, c: (*d, c), _LAST



def _class_groups(data, classes, who: str, name: str) -> dict:
    """Each class's observations (a list of positions), the classes in first appearance;
    the errors name ``who``."""
    n = counted(who, data)
    if not hasattr(classes, "__len__") or isinstance(classes, (str, bytes)):
        raise TypeError(f"{who}: {name} must be a sequence or array of labels, one per "
                        f"observation; got {type(classes).__name__}")
    return _groups(classes, n, None, who, name)
