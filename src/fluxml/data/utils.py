"""One-hot encoding and normalisation.

Batch first: ``onehotbatch`` gives ``(N, classes)`` and ``onecold`` reads the last axis.

>>> import numpy as np, fluxml as fl
>>> y = fl.onehotbatch([2, 0], range(3))
>>> y
array([[0., 0., 1.],
       [1., 0., 0.]], dtype=float32)
>>> fl.onecold(y, "abc")
array(['c', 'a'], dtype='<U1')
"""

from __future__ import annotations

from numbers import Number

import numpy as np

from fluxml._checks import numbers, positive_int, real_in
from fluxml.ad.core import Tracer, untraced


def _labels(labels, fn: str) -> list:
    if isinstance(labels, (Number, np.number)):  # a count (a bool or a float: refused)
        return list(range(positive_int(fn, "labels (the number of classes)", labels)))
    labels = list(labels)
    if not labels:
        raise ValueError(f"{fn}: labels is empty; give the classes (a sequence or a count)")
    return labels


def _index(labels) -> dict:
    try:
        return {lab: i for i, lab in enumerate(labels)}
    except TypeError:  # unhashable labels: compare one by one
        return {}


def onehot(x, labels, default=None, dtype=np.float32) -> np.ndarray:
    """A vector with a 1 at ``x``'s position in ``labels`` (a sequence, or a count ``n`` for
    the classes ``0 .. n-1``) and 0 elsewhere. A value not among the labels is an error,
    unless ``default`` names the label to use instead.

    >>> import fluxml as fl
    >>> fl.onehot("b", "abc")
    array([0., 1., 0.], dtype=float32)
    """
    return onehotbatch([x], labels, default, dtype)[0]


def onehotbatch(xs, labels, default=None, dtype=np.float32) -> np.ndarray:
    """One row per value of ``xs``: an ``(N, len(labels))`` array (batch first; Flux's is
    ``(classes, N)``); values of any shape ``S`` give ``S + (len(labels),)`` (a batch of
    sequences ``(N, T)`` gives ``(N, T, classes)``), as Flux's ``onehotbatch`` of an array.
    A dense array of ``dtype`` (float32 by default, so a ``Dense`` layer multiplies it
    directly), where OneHotArrays keeps a lazy ``OneHotMatrix`` of indices.
    Integer labels ``0 .. n-1`` (``labels=n``) are encoded in one NumPy indexing step, which
    also runs inside ``fl.compile`` (a loss may encode its batch's labels there). Labels are
    compared with Python's ``==`` (OneHotArrays' ``isequal``: there ``0.0`` and ``-0.0`` are
    two labels and NaN matches NaN; here they are one label, and NaN matches nothing). A
    label may be a tuple or a list (the two compare equal); where the labels have one shape
    ``S`` (``(2,)`` for pairs), ``xs`` is an array or nested sequence of shape ``B + S``,
    each ``S`` block one value, and the result ``B + (len(labels),)``: a batch of sequences
    of pairs ``(N, T, 2)`` gives ``(N, T, classes)``, as OneHotArrays' one value per element
    of a matrix of tuples (an object array of tuples is read element by element too; a value
    of another shape is an unknown one; a numeric array must end in ``S``). Labels of
    different shapes take a flat sequence of values. A Python ``str`` is one value:
    ``list("abc")`` is Julia's ``"abc"``.

    >>> import fluxml as fl
    >>> fl.onehotbatch([1, 1, 0], 2, dtype=int)
    array([[0, 1],
           [0, 1],
           [1, 0]])
    >>> fl.onehotbatch([[0, 2], [1, 1]], 3).shape
    (2, 2, 3)
    >>> fl.onehotbatch([[(0, 1), (1, 0)], [(1, 0), (1, 0)]], [(0, 1), (1, 0)]).shape
    (2, 2, 2)
    """
    labels = _labels(labels, "onehotbatch")
    keys = [_key(lab) for lab in labels]  # (a list label is compared as a tuple)
    if default is not None and _key(default) not in keys:  # (list.index: "not in list")
        raise ValueError(f"onehotbatch: default {default!r} is not among the labels {labels}; "
                         f"it names the label that unknown values get")
    # (a traced array inside fl.compile stays traced: np.asarray would need its values)
    xs_arr = xs if type(xs) is Tracer else _values(xs, labels, keys)
    if xs_arr.ndim == 0:
        raise ValueError("onehotbatch: expected an array or sequence of values; got one value "
                         "(fl.onehot encodes one)")
    n = len(labels)
    fill = None if default is None else keys.index(_key(default))
    if keys == list(range(n)) and xs_arr.dtype.kind in "iu":
        return _encode_ints(xs_arr, n, fill, dtype)
    index = _index(keys)
    if index and len(index) != n:  # (a value would get the last of its columns)
        twice = next(lab for i, lab in enumerate(labels) if index[keys[i]] != i)
        raise ValueError(f"onehotbatch: the labels must be distinct; {twice!r} appears "
                         f"more than once in {labels}")
    pos = np.empty(xs_arr.size, np.int64)
    for i, x in enumerate(xs_arr.ravel().tolist()):
        j = index.get(x) if index else next((k for k, lab in enumerate(keys)
                                            if lab == x), None)
        if j is None:
            if fill is None:
                raise ValueError(f"onehotbatch: value {x!r} is not among the labels "
                                 f"{labels}; pass default= to map unknown values to a "
                                 f"label")
            j = fill
        pos[i] = j
    return _encode_ints(pos.reshape(xs_arr.shape), n, None, dtype)


def _key(value):
    """``value`` as labels are compared: a list or array as a tuple (of such keys), so that
    a label ``[0, 1]`` matches the value ``[0, 1]`` (a list is unhashable, and never
    equal to the tuple a value became) and ``(0, 1)`` matches a row of an array."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (tuple, list)):
        return tuple(_key(v) for v in value)
    return value


def _shape(label) -> tuple | None:
    """The nested shape of a tuple or list label (``(0, 1)``: ``(2,)``), ``()`` for any
    other value, None where its parts differ in shape. An array label is read as its list
    (``_key`` compares it so)."""
    if isinstance(label, np.ndarray):
        label = label.tolist()
    if not isinstance(label, (tuple, list)):
        return ()
    inner = {_shape(v) for v in label}
    if len(inner) > 1 or None in inner:
        return None
    return (len(label),) + (inner.pop() if inner else ())


def _values(xs, labels, keys) -> np.ndarray:
    """``xs`` as an array of values, one a label's position in the result: of NumPy's
    dtype for numbers and strings, of objects where the values are of mixed types (which
    np.asarray would make all strings) or tuples. Where the labels are tuples or lists of
    one shape ``S``, ``xs`` is an array or (nested) sequence of shape ``B + S``, each
    ``S`` block one value (as OneHotArrays' onehotbatch of an array: one per element), or
    of values of other shapes (each an element, unknown). Before, each element of ``xs`` was
    one value: a batch of sequences of tuples read each sequence as one value, and a numeric
    array's numbers were values, never equal to a tuple (with default=, both took the
    default, silently)."""
    shapes = {_shape(lab) for lab in labels}
    if shapes == {()}:
        arr = np.asarray(xs)
        if arr.dtype.kind in "US" and not isinstance(xs, np.ndarray):  # (np.asarray turned
            mixed = np.asarray(xs, dtype=object)  # ["c0", 1] into the strings "c0", "1")
            if mixed.shape == arr.shape and not all(isinstance(v, str) for v in mixed.flat):
                return mixed
        return arr
    if len(shapes) > 1 or None in shapes:  # labels of different shapes: a flat sequence,
        if _holds_sequences(xs):  # or an array of values
            return _elements(xs, keys)
        return _elements(_object_array((len(xs),), list(xs)), keys)
    shape = shapes.pop()
    k = len(shape)
    arr = xs if isinstance(xs, np.ndarray) else np.asarray(xs, dtype=object)
    if not _holds_sequences(arr) and arr.ndim >= k and arr.shape[arr.ndim - k:] == shape:
        blocks = arr.reshape((-1,) + shape)
        return _object_array(arr.shape[:arr.ndim - k], [_key(v) for v in blocks])
    if arr.dtype != object and arr.size:  # (its numbers would all be unknown values)
        raise ValueError(f"onehotbatch: the labels are values of shape {shape}, so an array "
                         f"xs must have the shape (..., {', '.join(map(str, shape))}), one "
                         f"value a block; got {arr.dtype} values of shape {arr.shape}")
    return _elements(arr, keys)  # values of other shapes among the labels' (or none)


def _holds_sequences(arr) -> bool:
    """Whether ``arr`` is an object array holding tuples or lists (values, or the
    sequences of a ragged batch)."""
    return isinstance(arr, np.ndarray) and arr.dtype == object and \
        any(isinstance(v, (tuple, list)) for v in arr.flat)


def _elements(arr: np.ndarray, keys: list) -> np.ndarray:
    """Each element of the object array ``arr`` one value. A sequence of labels (or of
    sequences) among them that is not a label is a ragged batch of sequences (np.asarray
    stopped above it), an error: it is no unknown value for default= to take."""
    values = [_key(v) for v in arr.flat]
    for v in values:
        if isinstance(v, tuple) and v not in keys and \
                any(isinstance(p, tuple) or p in keys for p in v):
            raise ValueError(f"onehotbatch: xs holds {v!r}, a sequence of labels where one "
                             f"value was expected: a batch of sequences of different "
                             f"lengths? (each must hold as many values, or give an object "
                             f"array of the values)")
    return _object_array(arr.shape, values)


def _object_array(shape: tuple, values: list) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        out[i] = v
    return out.reshape(shape)


def _encode_ints(xs, n, fill, dtype):
    """One-hot rows of the integers ``xs`` in ``0 .. n-1`` (others take the column ``fill``,
    or are an error when it is None): ``xs.shape + (n,)``. Array operations throughout, so
    that a compiled program encodes its argument's values on every run."""
    # (compared before the cast to int64: a uint64 of 2**63 or more wrapped to a negative
    # number, which the error showed as the value given)
    if fill is None:  # (looked at when the values are there: on every run of a program)
        pos = untraced(_in_labels, (xs, n)).astype(np.int64)
    else:
        pos = np.where((xs < 0) | (xs >= n), fill, xs.astype(np.int64))
    return (pos[..., None] == np.arange(n)).astype(dtype)


def _in_labels(pos, n):
    """``pos``, after checking that its values lie in ``0 .. n-1``."""
    bad = (pos < 0) | (pos >= n)
    if bad.any():
        raise ValueError(f"onehotbatch: value {pos[bad].ravel()[0].item()!r} is not among "
                         f"the labels 0..{n - 1}; pass default= to map unknown values to a "
                         f"label")
    return pos


def onecold(y, labels=None) -> np.ndarray:
    """The inverse of ``onehotbatch``: the label of the largest entry along the last axis of
    ``y`` (scores, probabilities or one-hot rows). With no ``labels``, the index (0-based).
    Scores holding NaN are refused, as OneHotArrays' ``onecold`` does (NaN has no largest
    entry). The labels come back as given: an array of NumPy's dtype for numbers or strings,
    an object array for others (tuples, mixed types).

    >>> import numpy as np, fluxml as fl
    >>> fl.onecold(np.array([[0.1, 0.7, 0.2], [0.9, 0.0, 0.1]]))
    array([1, 0])
    """
    y = np.asarray(y)
    if y.ndim == 0:
        raise ValueError("onecold: expected scores along a last axis; got a scalar")
    if y.dtype.kind not in "biuf":  # (argmax of strings is the last in alphabetical order,
        # of complex numbers the largest real part: an index, silently)
        raise TypeError(f"onecold: expected real scores (numbers or booleans); got dtype "
                        f"{y.dtype} of shape {y.shape}")
    if y.dtype.kind in "fc" and np.isnan(y).any():  # (argmax took the NaN's position)
        at = tuple(int(i) for i in np.argwhere(np.isnan(y))[0])
        raise ValueError(f"onecold: the scores hold NaN (at {at} of shape {y.shape}), "
                         f"which has no largest entry")
    if y.shape[-1] == 0:  # (NumPy's "attempt to get argmax of an empty sequence")
        raise ValueError(f"onecold: expected at least one score per row along the last "
                         f"axis; got shape {y.shape}")
    idx = np.argmax(y, axis=-1)
    if labels is None:
        return idx
    labels = _labels(labels, "onecold")
    if len(labels) != y.shape[-1]:
        raise ValueError(f"onecold: {len(labels)} labels for {y.shape[-1]} scores per row "
                         f"(shape {y.shape})")
    return _label_array(labels)[idx]


def _label_array(labels: list) -> np.ndarray:
    """``labels`` as a 1-d array whose entries are the labels: NumPy's own dtype where that
    keeps them (numbers, strings), else an object array (np.asarray turned [1, "a"] into
    the strings '1', 'a', and tuples into the rows of a matrix)."""
    arr = np.asarray(labels)
    if arr.ndim == 1 and arr.dtype != object and arr.tolist() == labels \
            and (arr.dtype.kind not in "US" or all(isinstance(v, str) for v in labels)):
        return arr
    out = np.empty(len(labels), dtype=object)
    for i, lab in enumerate(labels):
        out[i] = lab
    return out


def normalise(x, axis=0, eps: float = 1e-5):
    """``(x - mean) / (std + eps)`` with the statistics taken along ``axis`` (default 0,
    the observations: each feature is standardised). Differentiable.

    >>> import numpy as np, fluxml as fl
    >>> fl.normalise(np.array([[1.0, 10.0], [3.0, 30.0]]), eps=0.0)
    array([[-1., -1.],
           [ 1.,  1.]])
    """
    # (None or strings raised NumPy's AxisError or "the resolved dtypes are not compatible
    # with add.reduce"; a string eps a ufunc error)
    x = numbers("normalise", x, real=False)
    real_in("normalise", "eps", eps, 0)
    mean = np.mean(x, axis=axis, keepdims=True)
    std = np.std(x, axis=axis, keepdims=True)
    return (x - mean) / (std + eps)


class Standardiser:
    """``Standardiser.fit(xtrain, axis=0)``: remembers the training data's mean and standard
    deviation along ``axis`` and applies them to any data: ``s(x) = (x - mean) / std``
    (``s.inverse`` undoes it). Fit on the training set only, then use on both. Its arrays
    save with ``fl.save`` as a model's do. In a model (``fl.Chain(s, fl.Dense(4, 1))``) its
    ``mean`` and ``std`` are not trained: they are the training data's statistics.

    >>> import numpy as np, fluxml as fl
    >>> s = fl.Standardiser.fit(np.array([[0.0, 5.0], [2.0, 5.0]]))
    >>> s(np.array([[1.0, 7.0]]))
    array([[0., 2.]])
    """

    # (the statistics of the data, not parameters: fl.setup gave them optimiser state and
    # fl.train moved them away from the data's, silently)
    nontrainable = ("mean", "std")

    def __init__(self, mean, std):
        self.mean = np.asarray(mean)
        self.std = np.asarray(std)

    @classmethod
    def fit(cls, x, axis=0, eps: float = 1e-8) -> Standardiser:
        """Fit to ``x``; a feature with (nearly) constant values gets std 1, so it is only
        centred."""
        x = np.asarray(x)
        mean = np.mean(x, axis=axis, keepdims=True)
        std = np.std(x, axis=axis, keepdims=True)
        std = np.where(std > eps, std, 1).astype(std.dtype)
        return cls(mean, std)

    def __call__(self, x):
        return (x - self.mean) / self.std

    def inverse(self, x):
        return x * self.std + self.mean

    def __repr__(self) -> str:
        def shown(a):  # (None in a gradient: the statistics are not trained)
            return "None" if a is None else f"{a.dtype}{list(a.shape)}"

        return f"Standardiser(mean={shown(self.mean)}, std={shown(self.std)})"
