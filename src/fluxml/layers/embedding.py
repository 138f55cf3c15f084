"""Lookup tables: Embedding and EmbeddingBag.

The weight is ``(vocab, dim)`` as PyTorch's ``nn.Embedding``; indices start at 0.

>>> import numpy as np, fluxml as fl
>>> e = fl.Embedding(10, 4)
>>> e(np.array([[1, 2, 3]])).shape
(1, 3, 4)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fluxml import init as initialisers
from fluxml import nnlib
from fluxml._checks import is_int
from fluxml.ad.core import untraced
from fluxml.layers.basic import _positive, initial
from fluxml.layers.module import LayerError, Module, need_array

normal = initialisers.normal  # the default initialiser, fl.init.normal


def _gather(weight, idx):
    """Rows of ``weight`` at integer ``idx`` (the gradient a scatter-add)."""
    return nnlib.embedding(weight, idx)


def _check_indices(layer, idx, vocab):
    """``idx`` as an integer array, refused when not integers or out of ``[0, vocab)``."""
    idx = np.asarray(idx) if not hasattr(idx, "dtype") else idx
    need_array(layer, idx)  # (another library's array, a torch.Tensor: refused, named)
    if idx.dtype.kind not in "iu":
        raise _not_indices(layer, idx.dtype, idx.shape, vocab)
    # checked where the values are: inside fl.compile, on every run of the program
    return untraced(_in_vocabulary, (idx, vocab, layer._called()))


def _not_indices(layer, dtype, shape, vocab) -> LayerError:
    """The error for indices of ``dtype`` (not an integer one), with a hint for floats."""
    hint = ""
    if dtype.kind == "f" and type(layer) is Embedding and len(shape) and shape[-1] == vocab:
        hint = (" (one-hot rows? as bool, x.astype(bool), they are read as Flux reads a "
                "OneHotMatrix; or give their indices, fl.onecold(x))")
    elif dtype.kind == "f":
        hint = " (round them, or use a Dense layer for features)"
    return LayerError(f"{layer._called()} expects integer indices; got {dtype}{hint}")


def _in_vocabulary(idx, vocab, line):
    if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= vocab):
        bad = int(idx.min()) if int(idx.min()) < 0 else int(idx.max())
        raise LayerError(f"{line} has a vocabulary of {vocab} (indices 0 to "
                         f"{vocab - 1}); got index {bad}")
    return idx


class Embedding(Module):
    """``Embedding(vocab, dim; padding_idx=None, init=fl.init.normal, rng=)``

    Maps integer indices of any shape ``S`` to vectors: output ``S + (dim,)``, row ``i`` of
    ``weight`` (shaped ``(vocab, dim)``) for index ``i``. The gradient of the weight is the
    scatter-add of the output's gradient. A bool array of shape ``S + (vocab,)`` is read as
    one-hot rows, as Flux reads a OneHotMatrix (``weight * x``; a row of several ones gives
    the sum of their vectors): ``fl.onehotbatch(..., dtype=bool)`` gives the indices' result.
    fl.onehotbatch's arrays are dense, so only bool says one-hot: an integer array is indices
    (a 0/1 one-hot in integers would be read as indices 0 and 1), a float one is refused.

    ``padding_idx`` (as Flux's): that index's row starts at zero (in a copy of what ``init``
    gave), embeds to zeros whatever the row holds, and gets no gradient, so training leaves
    it as it is. PyTorch's embeds to the row's values instead: the two differ only where the
    row was set otherwise (loaded, tied or written).

    >>> import numpy as np, fluxml as fl
    >>> e = fl.Embedding(3, 2, init=fl.init.ones)
    >>> e(np.array([0, 2]))
    array([[1., 1.],
           [1., 1.]], dtype=float32)
    >>> e = fl.Embedding(3, 2)
    >>> np.array_equal(e(fl.onehotbatch([2, 0], 3, dtype=bool)), e(np.array([2, 0])))
    True
    """

    def __init__(self, vocab: int, dim: int, *, padding_idx: int | None = None,
                 init: Callable = normal, rng=None, dtype=np.float32):
        _positive("Embedding", vocab=vocab, dim=dim)
        self.weight = initial(type(self).__name__, init, (vocab, dim), rng, dtype)
        if padding_idx is not None:
            if not is_int(padding_idx) or not 0 <= padding_idx < vocab:
                raise ValueError(f"{type(self).__name__}: padding_idx must be an index of the "
                                 f"vocabulary, 0 to {int(vocab) - 1}; got {padding_idx!r}")
            padding_idx = int(padding_idx)
            self.weight = np.array(self.weight, copy=True)  # (init may give the caller's)
            self.weight[padding_idx] = 0
            self.padding_idx = padding_idx

    def _output_shape(self, shape, dtype=None):
        if dtype is not None and np.dtype(dtype) == np.bool_:  # one-hot rows, as __call__
            self._check_onehot(shape)
            return tuple(shape[:-1]) + (self.weight.shape[1],)
        return tuple(shape) + (self.weight.shape[1],)

    def _check_onehot(self, shape):
        vocab = self.weight.shape[0]
        if len(shape) < 1 or shape[-1] != vocab:
            raise LayerError(f"{self._called()} reads a bool array as one-hot rows (..., {vocab}); "
                             f"got {tuple(shape)}")

    padding_idx = None  # (a class default: a layer saved before it had none)

    def __call__(self, idx):
        if getattr(idx, "dtype", None) == np.bool_:
            return self._onehot(idx)
        idx = _check_indices(self, idx, self.weight.shape[0])
        return self._rows(idx)

    def _rows(self, idx):
        """The weight's rows for indices ``idx``; zeros for the padding index (a where, not a
        product: zeros for a row of inf or NaN too), and so no gradient to its row."""
        y = _gather(self.weight, idx)
        if self.padding_idx is None:
            return y
        return np.where((idx == self.padding_idx)[..., None], 0, y)

    def _onehot(self, x):
        self._check_onehot(x.shape)
        if isinstance(x, np.ndarray) and x.size and np.all(np.sum(x, axis=-1) == 1):
            # one-hot rows (not multi-hot): a gather, as for the indices (the product costs a
            # pass over vocab x dim per row: 250 times slower at vocab 20000)
            return self._rows(np.argmax(x, axis=-1))
        if self.padding_idx is not None:  # its column off: the padding index adds nothing
            x = x & (np.arange(x.shape[-1]) != self.padding_idx)
        return x.astype(self.weight.dtype) @ self.weight

    def _line(self) -> str:
        vocab, dim = self.weight.shape
        pad = "" if self.padding_idx is None else f", padding_idx={self.padding_idx}"
        return f"Embedding({vocab} => {dim}{pad})"


_REDUCTIONS = ("mean", "sum", "max")


class EmbeddingBag(Embedding):
    """``EmbeddingBag(vocab, dim, reduction="mean"; init=fl.init.normal, rng=)``

    Embeds bags of indices and reduces each bag (``"mean"``, ``"sum"`` or ``"max"``) to one
    vector. Input: an integer matrix ``(N, L)`` (N bags of L indices), a list of N index
    vectors of any lengths, or ``(indices, offsets)`` as PyTorch's (bag ``i`` is
    ``indices[offsets[i]:offsets[i + 1]]``). Output ``(N, dim)``; an empty bag gives zeros.

    >>> import numpy as np, fluxml as fl
    >>> e = fl.EmbeddingBag(5, 2, "sum", init=fl.init.ones)
    >>> e([np.array([0, 1, 4]), np.array([2])])
    array([[3., 3.],
           [1., 1.]], dtype=float32)
    """

    def __init__(self, vocab: int, dim: int, reduction: str = "mean", *,
                 init: Callable = normal, rng=None, dtype=np.float32):
        if reduction not in _REDUCTIONS:
            raise ValueError(f"EmbeddingBag: reduction must be one of {_REDUCTIONS}; "
                             f"got {reduction!r}")
        super().__init__(vocab, dim, init=init, rng=rng, dtype=dtype)
        self.reduction = reduction

    def _output_shape(self, shape, dtype=None):
        if dtype is not None and np.dtype(dtype) == np.bool_:  # (no one-hot bags)
            raise _not_indices(self, np.dtype(dtype), shape, self.weight.shape[0])
        if len(shape) != 2:
            self._refuse(shape)
        return (shape[0], self.weight.shape[1])

    def _refuse(self, shape):
        raise LayerError(f"{self._called()} expects an index matrix (N, L), a list of index "
                         f"vectors or (indices, offsets); got shape {tuple(shape)}")

    def __call__(self, bags):
        if isinstance(bags, tuple) and len(bags) == 2:
            bags = self._split(*bags)
        if isinstance(bags, (list, tuple)):
            return self._ragged(bags)
        idx = _check_indices(self, bags, self.weight.shape[0])
        if idx.ndim != 2:
            self._refuse(idx.shape)
        vectors = _gather(self.weight, idx)  # (N, L, dim)
        return _REDUCE[self.reduction](vectors, axis=1)

    def _split(self, indices, offsets):
        indices, offsets = np.asarray(indices), np.asarray(offsets)
        if indices.ndim != 1 or offsets.ndim != 1 or offsets.dtype.kind not in "iu" or (
                offsets.size and (offsets[0] != 0 or np.any(np.diff(offsets) < 0)
                                  or offsets[-1] > indices.size)):
            raise LayerError(f"{self._called()}: offsets must be an increasing integer vector "
                             f"starting at 0 and within the {indices.size} indices; got "
                             f"{offsets!r}")
        ends = np.append(offsets[1:], indices.size)
        return [indices[a:b] for a, b in zip(offsets, ends)]

    def _ragged(self, bags):
        vocab, dim = self.weight.shape
        if not bags:  # no bags: no rows (as PyTorch's, (0, dim))
            return self.weight[:0]
        bags = [_check_indices(self, b, vocab) for b in bags]
        if any(b.ndim != 1 for b in bags):
            raise LayerError(f"{self._called()} expects each bag to be a vector of indices; got "
                             f"shapes {[b.shape for b in bags]}")
        if self.reduction == "max":
            zero = np.zeros((1, dim), self.weight.dtype)
            rows = [np.max(_gather(self.weight, b), axis=0, keepdims=True) if b.size else zero
                    for b in bags]
            return np.concatenate(rows, axis=0)
        # sum and mean as one matrix product: (N, total) pooling weights times the rows
        lengths = np.array([b.size for b in bags], dtype=np.intp)
        flat = np.concatenate(bags) if bags else np.zeros(0, np.int64)
        pool = np.zeros((len(bags), flat.size), self.weight.dtype)
        bag_of = np.repeat(np.arange(len(bags)), lengths)
        scale = 1.0 / np.maximum(lengths, 1) if self.reduction == "mean" else np.ones(len(bags))
        pool[bag_of, np.arange(flat.size)] = scale[bag_of]
        return pool @ _gather(self.weight, flat)

    def _line(self) -> str:
        vocab, dim = self.weight.shape
        return f"EmbeddingBag({vocab} => {dim}, {self.reduction!r})"  # (a str, not Flux's mean)


_REDUCE = {"mean": np.mean, "sum": np.sum, "max": np.max}
