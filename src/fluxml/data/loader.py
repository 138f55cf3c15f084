"""``DataLoader``: mini-batches over arrays, tuples or dicts of arrays, or any dataset.

Observations run along the first axis (batch first). A tuple or dict of arrays is batched
together, the same observations from each (a pandas ``Series`` or ``DataFrame`` is read by
position, its rows); any other object with ``__len__`` and ``__getitem__`` is read one
observation at a time and the observations are stacked by
``collate`` (by default: arrays and numbers stacked, tuples and dicts batched field by
field, as PyTorch's ``default_collate``).

>>> import numpy as np, fluxml as fl
>>> x, y = np.arange(10.0).reshape(5, 2), np.arange(5)
>>> loader = fl.DataLoader((x, y), batchsize=2)
>>> len(loader)
3
>>> [yb.tolist() for _, yb in loader]
[[0, 1], [2, 3], [4]]
>>> [yb.tolist() for _, yb in fl.DataLoader((x, y), batchsize=2, shuffle=True, rng=0)]
[[2, 4], [3, 0], [1]]
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from fluxml._checks import flag, positive_int, shown


def _is_array(x) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype") and hasattr(x, "__getitem__")


def counted(who: str, data) -> int:
    """``numobs(data)``, with the error naming ``who``, and data of no observations refused
    (a resampling or a window of nothing)."""
    try:
        n = numobs(data)
    except (TypeError, ValueError) as err:
        raise type(err)(f"{who}: {str(err).removeprefix('numobs: ')}") from None
    if n == 0:
        raise ValueError(f"{who}: data holds no observations (its first axis has length 0)")
    return n


def numobs(data) -> int:
    """The number of observations in ``data`` (its first axis; the common first axis of a
    tuple or dict of arrays; ``len`` of any other dataset).

    >>> import numpy as np, fluxml as fl
    >>> fl.data.numobs({"x": np.zeros((4, 3)), "y": np.zeros(4)})
    4
    """
    if _is_array(data):
        if data.ndim == 0:
            raise ValueError("numobs: a 0-d array holds no observations; observations run "
                             "along the first axis (batch first)")
        return data.shape[0]
    if isinstance(data, (tuple, dict)):
        items = list(data.items()) if isinstance(data, dict) else list(enumerate(data))
        if not items:
            raise ValueError(f"numobs: an empty {type(data).__name__} holds no observations")
        counts = {k: numobs(v) for k, v in items}
        if len(set(counts.values())) > 1:
            shown = ", ".join(f"[{k!r}]: {n}" for k, n in counts.items())
            raise ValueError(f"numobs: the parts of the data must hold the same number of "
                             f"observations (first axis); got {shown}")
        return next(iter(counts.values()))
    if hasattr(data, "__len__") and hasattr(data, "__getitem__"):
        return len(data)
    raise TypeError(f"numobs: expected an array, a tuple or dict of arrays, or a dataset "
                    f"with __len__ and __getitem__; got {type(data).__name__}")


def getobs(data, idx):
    """Observations ``idx`` (an int, a slice or an index array) of ``data``, batched as
    ``data`` is: a tuple of arrays gives a tuple of batches. The parts of a tuple or dict
    must hold as many observations each (as ``numobs`` checks). Indices are NumPy's
    (0-based; MLUtils' ``getobs`` is 1-based and refuses what NumPy reads): a negative one
    counts from the end, and a slice past the end stops there. A pandas ``Series`` or
    ``DataFrame`` is read by position (``.iloc``), whatever its index: rows, as MLUtils'
    ``getobs`` of a table.

    >>> import numpy as np, fluxml as fl
    >>> fl.data.getobs((np.arange(4), np.arange(4) * 10), [3, 0])
    (array([3, 0]), array([30,  0]))
    """
    if isinstance(data, (tuple, dict)) and data:  # (a part one shorter gave a batch one
        try:  # shorter, silently)
            numobs(data)
        except ValueError as err:
            raise ValueError(f"getobs: {str(err).removeprefix('numobs: ')}") from None
        except TypeError:  # a part numobs cannot count (__getitem__ without __len__):
            pass  # nothing to check it against, as before the check
    return _getobs(data, idx)


def _getobs(data, idx):
    """``getobs`` without the check that the parts hold as many observations each."""
    if hasattr(data, "iloc"):  # a pandas Series or DataFrame: data[i] reads the label i (a
        return data.iloc[idx]  # shuffled index's), or a DataFrame's column i
    if _is_array(data):
        return data[idx]
    if isinstance(data, tuple) and not hasattr(data, "_fields"):
        return tuple(_getobs(v, idx) for v in data)
    if isinstance(data, tuple):  # namedtuple
        return type(data)(*(_getobs(v, idx) for v in data))
    if isinstance(data, dict):
        return {k: _getobs(v, idx) for k, v in data.items()}
    n = len(data) if hasattr(data, "__len__") else None
    if isinstance(idx, (bool, np.bool_)):  # (an int to Python: observation 1 for True)
        raise IndexError(f"getobs: indices must be integers, a slice or a boolean mask "
                         f"(as NumPy's); got {shown(idx)}")
    if isinstance(idx, (int, np.integer)) or (isinstance(idx, np.ndarray) and idx.ndim == 0
                                              and idx.dtype.kind in "iu"):
        return data[_position(int(idx), n)]
    if isinstance(idx, slice):
        idx = range(len(data))[idx]
    elif np.asarray(idx).dtype == bool:  # a mask, as NumPy reads one (int(True) read
        if np.shape(idx) != (len(data),):  # observation 1 for each True, 0 for each False)
            raise IndexError(f"getobs: a boolean mask of shape {np.shape(idx)} for "
                             f"{len(data)} observations")
        idx = np.flatnonzero(idx)
    elif np.asarray(idx).dtype.kind not in "iu" and np.size(idx):  # (int(1.7) read
        # observation 1, silently, where an array refuses the index, as NumPy does)
        raise IndexError(f"getobs: indices must be integers, a slice or a boolean mask "
                         f"(as NumPy's); got {shown(idx)}")
    return default_collate([data[_position(int(i), n)] for i in idx])


def _position(i: int, n: int | None) -> int:
    """Index ``i`` among ``n`` observations as NumPy reads it: a negative one counts from the
    end, one out of range is refused (a dataset read one observation at a time got ``-1``
    or ``7`` as given, and one that does not count from the end itself returned another
    observation, silently). Without ``len`` (``__getitem__`` alone), as given."""
    if n is None:
        return i
    if not -n <= i < n:
        raise IndexError(f"getobs: index {i} is out of range for {n} observations")
    return i + n if i < 0 else i


def default_collate(observations: list):
    """Stack a list of observations into one batch: arrays and numbers into an array with a
    new first axis, tuples, lists and dicts field by field (every observation with the same
    parts). As PyTorch's ``default_collate``, a Python list is a sequence of fields, not an
    array: ``[[1, 2], [3, 4]]`` gives ``[array([1, 3]), array([2, 4])]``, one array a
    position (MLUtils' ``batch`` of Julia vectors stacks them: give NumPy arrays for that,
    or ``fl.batch_sequence`` for sequences of different lengths).

    >>> import numpy as np, fluxml as fl
    >>> fl.data.default_collate([(np.zeros(2), 1), (np.ones(2), 0)])
    (array([[0., 0.],
           [1., 1.]]), array([1, 0]))
    """
    if not observations:
        raise ValueError("default_collate: no observations to collate")
    first = observations[0]
    if isinstance(first, (tuple, list)):  # (a longer one's extra parts were dropped)
        sizes = sorted({len(o) for o in observations})
        if len(sizes) > 1:
            raise ValueError(f"default_collate: the observations are {type(first).__name__}s "
                             f"of different lengths {sizes}; every one must have the same "
                             f"parts (or pass collate= to batch them another way)")
    if isinstance(first, tuple):
        parts = [default_collate([o[i] for o in observations]) for i in range(len(first))]
        return type(first)(*parts) if hasattr(first, "_fields") else tuple(parts)
    if isinstance(first, list):
        return [default_collate([o[i] for o in observations]) for i in range(len(first))]
    if isinstance(first, dict):  # (another's extra keys were dropped, silently)
        other = next((o for o in observations if not isinstance(o, dict)
                      or o.keys() != first.keys()), None)
        if other is not None:
            got = sorted(other, key=repr) if isinstance(other, dict) else type(other).__name__
            raise ValueError(f"default_collate: the observations are dicts with the keys "
                             f"{sorted(first, key=repr)}, but one has {got}; every one must "
                             f"have the same keys (or pass collate= to batch them another "
                             f"way)")
        return {k: default_collate([o[k] for o in observations]) for k in first}
    try:
        return np.stack([np.asarray(o) for o in observations])
    except ValueError as err:
        shapes = sorted({np.shape(o) for o in observations})
        raise ValueError(f"default_collate: cannot stack observations of shapes {shapes}; "
                         f"pass collate= to batch them another way") from err


def batch_sequence(seqs, pad=0) -> np.ndarray:
    """Sequences of different lengths, each ``(T_i, ...)``, as one batch ``(N, T, ...)``
    (batch first; MLUtils' ``batch_sequence`` gives Julia's ``(..., T, N)``): ``T`` the
    longest, the shorter ones padded at the end with ``pad``. The dtype is the sequences'
    and ``pad``'s (a float pad on integer sequences gives floats). A ``collate`` for a
    ``DataLoader`` over sequences: ``DataLoader(seqs, batchsize=8, collate=fl.batch_sequence)``.

    >>> import numpy as np, fluxml as fl
    >>> fl.batch_sequence([[1, 2, 3], [10, 20]])
    array([[ 1,  2,  3],
           [10, 20,  0]])
    >>> fl.batch_sequence([np.ones((1, 2)), np.full((3, 2), 2.0)], pad=-1).shape
    (2, 3, 2)
    """
    seqs = [np.asarray(s) for s in seqs]
    if not seqs:
        raise ValueError("batch_sequence: no sequences to batch")
    if any(s.ndim == 0 for s in seqs):
        raise ValueError("batch_sequence: each sequence must be an array (T, ...) of its "
                         "steps; got a single value")
    rest = sorted({s.shape[1:] for s in seqs})
    if len(rest) > 1:
        raise ValueError(f"batch_sequence: the sequences' steps must have one shape; got "
                         f"{rest} (shapes (T, ...) with T the length)")
    if not isinstance(pad, (int, float, complex, np.number, np.bool_)):
        # (NumPy read pad="x" as a dtype's name, "data type 'x' not understood", and pad=None
        # as float64's: the sequences padded with NaN, silently)
        raise TypeError(f"batch_sequence: pad must be a number; got {shown(pad)}")
    out = np.full((len(seqs), max(len(s) for s in seqs)) + rest[0], pad,
                  dtype=np.result_type(*seqs, pad))
    for i, s in enumerate(seqs):
        out[i, :len(s)] = s
    return out


def as_generator(rng) -> np.random.Generator:
    """A ``numpy.random.Generator`` from a seed, a generator, or None (a fresh seed drawn
    from fluxml's default generator, so ``fl.seed`` makes it reproducible)."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None:
        from fluxml.init import default_rng

        return np.random.default_rng(default_rng().integers(2**63))
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        if rng < 0:  # (NumPy's own "expected non-negative integer" named nothing)
            raise ValueError(f"rng must be a non-negative int seed, a "
                             f"numpy.random.Generator or None; got {rng}")
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be an int seed, a numpy.random.Generator or None; got "
                    f"{type(rng).__name__}")


class DataLoader:
    """``DataLoader(data, batchsize=1, shuffle=False, partial=True, collate=None, rng=None,
    shard=False)``

    Iterates over mini-batches of ``data``: an array (observations along the first axis), a
    tuple, namedtuple or dict of arrays (batched together), a pandas table (its rows), or
    any object with ``__len__`` and ``__getitem__`` (a list is one of those: ``[x, y]`` is
    two observations, as in MLUtils and PyTorch; ``(x, y)`` batches two arrays together).
    ``len(loader)`` is the number of batches per epoch. ``shuffle=True`` draws a new order
    for every pass from ``rng`` (an int seed or a ``numpy.random.Generator``; the generator
    is ``loader.rng``, so a checkpoint can save it). ``partial=False`` drops the last,
    smaller batch. ``collate``, when given, receives the list of observations of each batch
    (read one at a time) and returns the batch: MLUtils' ``collate=false`` is
    ``collate=list``, and ``fl.batch_sequence`` pads sequences of different lengths.
    MLUtils' ``parallel`` and ``buffer`` have no counterpart here.

    Batches of arrays read without shuffling are views of ``data`` (no copy); shuffled
    batches are copies.

    ``shard=True`` (for ``fl.train(..., distributed=True)``) or ``shard=(rank, nranks)``:
    each epoch is cut into global batches of ``batchsize * nranks`` observations, in the
    same (shuffled) order on every rank, and this rank gets its part of each: ``batchsize``
    per rank, the ranks' parts distinct. So N ranks see exactly the batches one process with
    ``batchsize * N`` sees. The last, smaller global batch is split as evenly as possible;
    one with fewer observations than ranks is left out (a rank cannot train on nothing).
    ``shard=True`` reads ``fl.distributed.rank()`` and ``world_size()`` when iterating;
    with ``shuffle`` and no ``rng``, every rank takes rank 0's generator when the loader is
    made (a collective: every rank makes it, as they run the same script).

    >>> import numpy as np, fluxml as fl
    >>> loader = fl.DataLoader(np.arange(7), batchsize=3, partial=False)
    >>> len(loader), [b.tolist() for b in loader]
    (2, [[0, 1, 2], [3, 4, 5]])
    >>> [b.tolist() for b in fl.DataLoader(np.arange(7), batchsize=2, shard=(1, 2))]
    [[2, 3], [6]]
    """

    def __init__(self, data, batchsize: int = 1, shuffle: bool = False, partial: bool = True,
                 collate: Callable[[list], Any] | None = None, rng=None,
                 shard: bool | tuple[int, int] = False):
        positive_int("DataLoader", "batchsize", batchsize)
        if collate is not None and not callable(collate):
            raise TypeError(f"DataLoader: collate must be callable (a list of observations "
                            f"-> a batch); got {collate!r}")
        try:  # the errors name the DataLoader, not the helpers it calls
            numobs(data)  # (checked: the parts hold as many observations each)
            generator = as_generator(rng)
        except (TypeError, ValueError) as err:
            raise type(err)(f"DataLoader: {str(err).removeprefix('numobs: ')}") from None
        self.data = data
        self.batchsize = int(batchsize)
        self.shuffle = flag("DataLoader", "shuffle", shuffle)
        self.partial = flag("DataLoader", "partial", partial)
        self.collate = collate
        self.rng = generator
        self.shard = _check_shard(shard)
        # each rank drew its own seed: rank 0's generator is taken at the first iteration, so
        # that the ranks' parts of every epoch are distinct in a loop of one's own too
        # (fl.train would broadcast it). Not here: the ranks iterate their loaders in step,
        # but need not build them so (a loader made on some ranks only would wait)
        self._unsynced = self.shard is True and self.shuffle and rng is None
        self._last_count = None  # observations in the batch last given
        self._pass_start = None  # the generator's state as the last pass began
        self._pass_nobs = 0  # the observations the data held then
        self._passes = 0  # the passes begun (fl.train notes the one it trains on: _mark)

    @property
    def nobs(self) -> int:
        """The observations ``data`` holds now: counted again at each pass, as PyTorch's and
        MLUtils' loaders count them (a list that grows between epochs, a replay buffer, is
        read whole; counted once when the loader was made, its new observations were never
        given, silently)."""
        return numobs(self.data)

    def _part(self) -> tuple[int, int]:
        """``(rank, nranks)`` of this loader's shard, ``(0, 1)`` when not sharded."""
        if self.shard is True:
            from fluxml import distributed

            return distributed.rank(), distributed.world_size()
        return self.shard or (0, 1)

    def __len__(self) -> int:
        return self._count(self.nobs)

    def _count(self, nobs: int) -> int:
        """The batches a pass over ``nobs`` observations gives."""
        nranks = self._part()[1]
        full, rest = divmod(nobs, self.batchsize * nranks)
        return full + (1 if rest >= nranks and self.partial else 0)

    def __iter__(self) -> Iterator:
        self._sync()
        self._passes += 1
        self._pass_start = self.rng.bit_generator.state  # (for _mark)
        nobs = self._pass_nobs = self.nobs
        order = self.rng.permutation(nobs) if self.shuffle else None
        yield from self._batches(order, 0, nobs)

    def _sync(self) -> None:
        """Rank 0's generator on every rank, once (see ``_unsynced``)."""
        if self._unsynced:
            from fluxml import distributed

            self.rng.bit_generator.state = distributed.broadcast_object(
                self.rng.bit_generator.state)
            self._unsynced = False

    def _batches(self, order, first: int, nobs: int) -> Iterator:
        """The pass's batches from batch ``first`` on (``order``: its permutation, or None),
        of the ``nobs`` observations the data held as the pass began."""
        rank, nranks = self._part()
        step = self.batchsize * nranks
        for b in range(first, self._count(nobs)):
            lo, hi = b * step, min((b + 1) * step, nobs)
            if nranks > 1:  # this rank's part of the global batch, as np.array_split cuts
                q, r = divmod(hi - lo, nranks)
                lo += rank * q + min(rank, r)
                hi = lo + q + (rank < r)
            idx = slice(lo, hi) if order is None else order[lo:hi]
            self._last_count = hi - lo  # (fl.train's count: a list batch's len is no count)
            if self.collate is not None:
                ids = range(lo, hi) if order is None else idx
                yield self.collate([_getobs(self.data, int(i)) for i in ids])
            else:
                yield _getobs(self.data, idx)  # (numobs checked when made)

    def _mark(self, training_pass: int | None) -> dict | None:
        """Where the pass ``training_pass`` (a count of ``_passes``: the one fl.train trains
        on) stands, for a checkpoint saved within it (``SaveCheckpoint(steps=k)``): the
        generator's state as the pass began and now, and what cuts the batches (the global
        batch: N ranks cut what one process with ``batchsize * N`` cuts). None where
        another pass began since (a callback iterating the loader within the epoch): the
        generator's state as the training pass began is not known then."""
        from fluxml.io.files import _as_lists

        if training_pass != self._passes:
            return None
        return {"began": _as_lists(self._pass_start),
                "now": _as_lists(self.rng.bit_generator.state),
                "cut": self._cut(self._pass_nobs)}

    def _cut(self, nobs) -> list:
        """How a pass over ``nobs`` observations is cut (``_cuts`` reads it): what a
        checkpoint's resumed pass must find again."""
        return [nobs, self.batchsize * self._part()[1], self.shuffle, self.partial,
                self._count(nobs)]

    def _go_on(self, mark: dict, skip: int) -> Iterator | str:
        """The batches after the first ``skip`` of the pass ``mark`` (``_mark``) describes,
        without loading those: the order drawn again from the generator as that pass began,
        the generator left as it is (as the checkpoint saved it: fluxml's default generator
        may be this one, drawn from since; unshuffled, the generator need not be restored, as
        the order is always the same). Or, where this loader is not where ``mark`` says, why
        not."""
        from fluxml.io.files import _as_lists

        self._sync()
        nobs = self.nobs
        cut = self._cut(nobs)
        if mark.get("cut") != cut or not isinstance(mark.get("began"), dict):
            return f"the DataLoader cuts {_cuts(cut)}, the run's cut {_cuts(mark.get('cut'))}"
        now = self.rng.bit_generator.state
        if self.shuffle and _as_lists(now) != mark.get("now"):  # (unshuffled: one order)
            return ("the DataLoader's generator is not as the checkpoint saved it (load it "
                    "with fl.load_checkpoint(..., rngs={'data': loader.rng}))")
        if skip > cut[4]:
            return f"the history holds {skip} steps of it, the DataLoader cuts {cut[4]} batches"
        self.rng.bit_generator.state = mark["began"]
        self._passes += 1
        self._pass_start, self._pass_nobs = self.rng.bit_generator.state, nobs
        order = self.rng.permutation(nobs) if self.shuffle else None
        self.rng.bit_generator.state = now
        return self._batches(order, skip, nobs)

    def __repr__(self) -> str:
        shard = f", shard={self.shard}" if self.shard is not None else ""
        return (f"DataLoader({type(self.data).__name__}, batchsize={self.batchsize}, "
                f"shuffle={self.shuffle}, partial={self.partial}{shard}): {len(self)} batches "
                f"of {self.nobs} observations")


def _cuts(cut) -> str:
    """The cut a ``_mark`` recorded, in words."""
    if not (isinstance(cut, list) and len(cut) == 5):
        return "none that is known"
    nobs, batch, shuffle, partial, batches = cut
    return (f"{nobs} observations into {batches} {'shuffled ' if shuffle else ''}batches of "
            f"{batch}{'' if partial else ' (partial=False)'}")


def _check_shard(shard):
    """None (not sharded), True (rank and size from fl.distributed) or (rank, nranks)."""
    if shard is False or shard is None:
        return None
    if shard is True:
        return True
    ok = (isinstance(shard, tuple) and len(shard) == 2
          and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in shard)
          and 0 <= shard[0] < shard[1])
    if not ok:
        raise ValueError(f"DataLoader: shard must be True, False or (rank, nranks) with "
                         f"0 <= rank < nranks; got {shard!r}")
    return int(shard[0]), int(shard[1])
