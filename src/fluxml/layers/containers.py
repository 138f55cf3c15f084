"""Containers that combine layers other than in sequence: Parallel, SkipConnection,
PairwiseFusion, Maxout.

Their branches join in the model's precision: where a layer converted its input to its own
float precision (a float32 Dense given float64 input converts it and warns), the outputs of
branches that kept their input's (``np.tanh``, an identity, a skip path) are converted to
that one too, so a float32 model gives float32. Without a conversion, or with layers of
several precisions converting, NumPy's promotion joins them, as before.

>>> import numpy as np, fluxml as fl
>>> m = fl.SkipConnection(fl.Dense(3, 3), np.add)
>>> m(np.ones((2, 3), np.float32)).shape
(2, 3)
"""

from __future__ import annotations

from collections.abc import Callable
from numbers import Number

import numpy as np

from fluxml._checks import positive_int
from fluxml.layers.module import LayerError, Module, locate


def _call(container: str, key, layer, *xs):
    """``layer(*xs)``, an error located as ``container[key]``."""
    try:
        return layer(*xs)
    except (ValueError, IndexError) as err:
        raise locate(err, container, key)  # noqa: B904 - locate sets its cause


def _check_layers(name, layers):
    for key, layer in layers:
        if not callable(layer):
            raise TypeError(f"{name}: layer {key!r} is not callable: {layer!r}")


class Parallel(Module):
    """``Parallel(connection, layer1, layer2, ...)`` or ``Parallel(connection, name=layer...)``

    Applies every layer to the same input, then combines: ``connection(l1(x), l2(x), ...)``.
    Given several inputs (``m(x1, x2)`` or a tuple), layer i takes input i; a single layer
    is applied to each input. ``connection=None`` returns the tuple of outputs. ``m[0]`` (or
    ``m["name"]``) is a layer, ``m[1:]`` a Parallel of those layers. Flux's
    ``Parallel``; ``vcat`` of features is ``lambda *ys: np.concatenate(ys, axis=-1)`` here.
    Where a layer converted its input to its own float precision (and warned), the outputs
    of layers that kept their input's (``np.tanh``, an identity) are converted to it too, so
    that a float32 model given float64 input gives float32 (Flux's gives Float64).

    >>> import numpy as np, fluxml as fl
    >>> m = fl.Parallel(np.add, fl.Dense(2, 3, init=fl.init.ones), fl.Dense(2, 3))
    >>> m(np.ones((4, 2), np.float32)).shape
    (4, 3)
    >>> fl.Parallel(None, np.sin, np.cos)(np.zeros(1))
    (array([0.]), array([1.]))
    """

    def __init__(self, connection: Callable | None, *layers, **named):
        if layers and named:
            raise TypeError("Parallel takes layers either positionally or by name, not both")
        if not layers and not named:
            raise TypeError("Parallel needs at least one layer")
        if connection is not None and not callable(connection):
            raise TypeError(f"Parallel: connection must be callable or None; got {connection!r}")
        self.connection = connection
        self.layers = dict(named) if named else tuple(layers)
        _check_layers("Parallel", self._items())

    def _items(self):
        layers = self.layers
        return list(layers.items()) if isinstance(layers, dict) else list(enumerate(layers))

    def __call__(self, *xs):
        if len(xs) == 1 and isinstance(xs[0], tuple):
            xs = xs[0]
        items = self._items()
        if not xs:  # (connection() was called with nothing, or None gave ())
            raise LayerError(f"Parallel with {len(items)} layer(s) needs at least one input; "
                             f"got none")
        if len(xs) == 1:
            ys = [_call("Parallel", k, f, xs[0]) for k, f in items]
        elif len(items) == 1:
            k, f = items[0]
            ys = [_call("Parallel", k, f, x) for x in xs]
        elif len(xs) == len(items):
            ys = [_call("Parallel", k, f, x) for (k, f), x in zip(items, xs)]
        else:
            raise LayerError(f"Parallel with {len(items)} layers takes 1 or {len(items)} "
                             f"inputs; got {len(xs)}")
        ys = _joined(xs * len(ys) if len(xs) == 1 else xs, ys)
        return tuple(ys) if self.connection is None else self.connection(*ys)

    def __getitem__(self, key):
        layers = self.layers
        if isinstance(key, slice):  # a Parallel of those layers, as Flux's m[1:2]
            if isinstance(layers, dict):
                return Parallel(self.connection, **dict(list(layers.items())[key]))
            return Parallel(self.connection, *layers[key])
        if isinstance(layers, dict) and isinstance(key, (int, np.integer)):
            return list(layers.values())[key]
        return layers[key]

    def __len__(self) -> int:
        return len(self.layers)

    def _show_children(self):
        conn = [(None, self.connection if self.connection is not None else _Shown("None"))]
        if isinstance(self.layers, dict):
            return conn + list(self.layers.items())
        return conn + [(None, layer) for layer in self.layers]


class _Shown:
    """A fixed word in a printed listing."""

    def __init__(self, text):
        self.text = text

    def _line(self):
        return self.text


class SkipConnection(Module):
    """``SkipConnection(layer, connection)``: ``connection(layer(x), x)``.

    ``np.add`` gives a residual block; ``lambda y, x: np.concatenate([y, x], axis=1)`` stacks
    channels (as Flux's ``SkipConnection(layer, (a, b) -> cat(a, b; dims=3))``).

    >>> import numpy as np, fluxml as fl
    >>> m = fl.SkipConnection(np.tanh, np.add)
    >>> m(np.zeros(2))
    array([0., 0.])
    """

    def __init__(self, layer: Callable, connection: Callable):
        if not callable(layer) or not callable(connection):
            raise TypeError("SkipConnection(layer, connection) takes two callables; got "
                            f"{layer!r}, {connection!r}")
        self.layers = layer
        self.connection = connection

    def __call__(self, x):
        y = _call("SkipConnection", 0, self.layers, x)
        y, x = _joined((x, x), (y, x))  # (the skip path is a branch that kept x's precision)
        return self.connection(y, x)

    def _show_children(self):
        return [(None, self.layers), (None, self.connection)]


def _float_dtype(a):
    dtype = getattr(a, "dtype", None)
    return dtype if dtype is not None and dtype.kind == "f" else None


def _converted(xs, ys):
    """The float dtype the branches that changed their input's float precision gave (a layer
    with parameters converts input of another precision to its own, and warns), if they all
    gave one; else None."""
    target = None
    for x, y in zip(xs, ys):
        xd, yd = _float_dtype(x), _float_dtype(y)
        if xd is not None and yd is not None and xd != yd:
            if target is not None and target != yd:
                return None  # layers of several precisions: left to NumPy's promotion
            target = yd
    return target


def _joined(xs, ys, target=None):
    """The outputs ``ys`` of branches given ``xs``, those that kept their input's float
    precision (``np.tanh``, an identity, a skip path) converted to the one another branch
    converted to: the branches join in the model's precision. (``x + dense(x)`` of a float64
    ``x`` and a float32 Dense was float64: the Dense's conversion undone by the connection
    and the next layers converting again with no warning, silently.)"""
    if target is None:
        target = _converted(xs, ys)
    if target is None:
        return list(ys)
    return [y.astype(target) if _kept(x, y) and y.dtype != target else y
            for x, y in zip(xs, ys)]


def _kept(x, y) -> bool:
    """Whether a branch's output ``y`` is of its input ``x``'s float dtype. (No ``==`` with
    None: np.dtype(None) is float64, so a float64 dtype equals None.)"""
    xd, yd = _float_dtype(x), _float_dtype(y)
    return xd is not None and yd is not None and xd == yd


class PairwiseFusion(Module):
    """``PairwiseFusion(connection, layer1, layer2, ...)``

    For inputs ``(x1, ..., xn)`` (one per layer, or a single ``x`` used for all), returns
    ``(y1, ..., yn)`` with ``y1 = layer1(x1)`` and ``yi = layeri(connection(y(i-1), xi))``.

    >>> import numpy as np, fluxml as fl
    >>> m = fl.PairwiseFusion(np.add, np.negative, np.negative)
    >>> m((np.array([1.0]), np.array([10.0])))
    (array([-1.]), array([-9.]))
    """

    def __init__(self, connection: Callable, *layers):
        if not callable(connection):
            raise TypeError(f"PairwiseFusion: connection must be callable; got {connection!r}")
        if not layers:
            raise TypeError("PairwiseFusion needs at least one layer")
        self.connection = connection
        self.layers = tuple(layers)
        _check_layers("PairwiseFusion", enumerate(self.layers))

    def __call__(self, *xs):
        if len(xs) == 1 and isinstance(xs[0], tuple):
            xs = xs[0]
        n = len(self.layers)
        if len(xs) == 1:
            xs = xs * n
        elif len(xs) != n:
            raise LayerError(f"PairwiseFusion with {n} layers takes 1 or {n} inputs; "
                             f"got {len(xs)}")
        ins, ys = [], []
        for i, (layer, x) in enumerate(zip(self.layers, xs)):
            if i:  # x_i joins y_(i-1) in the precision an earlier layer converted to
                x = self.connection(ys[-1], _joined((x,), (x,), _converted(ins, ys))[0])
            ins.append(x)
            ys.append(_call("PairwiseFusion", i, layer, x))
        return tuple(_joined(ins, ys))

    def _show_children(self):
        return [(None, self.connection)] + [(None, layer) for layer in self.layers]


class Maxout(Module):
    """``Maxout(layer1, layer2, ...)`` or ``Maxout(make_layer, n)``

    The elementwise maximum of the layers' outputs (Goodfellow et al. 2013). The second form
    calls ``make_layer()`` ``n`` times.

    >>> import numpy as np, fluxml as fl
    >>> m = fl.Maxout(lambda: fl.Dense(3, 2), 4)
    >>> m(np.ones((5, 3), np.float32)).shape
    (5, 2)
    """

    def __init__(self, *layers):
        if len(layers) == 2 and isinstance(layers[1], (Number, np.number)):  # (make, n)
            make = layers[0]
            n = positive_int("Maxout", "n (the number of alternatives)", layers[1])
            layers = tuple(make() for _ in range(n))
        if not layers:
            raise TypeError("Maxout needs at least one layer")
        self.layers = tuple(layers)
        _check_layers("Maxout", enumerate(self.layers))

    def __call__(self, x):
        ys = [_call("Maxout", i, layer, x) for i, layer in enumerate(self.layers)]
        y, *zs = _joined((x,) * len(ys), ys)  # (in the precision a layer converted to)
        for z in zs:
            if np.shape(z) != np.shape(y):  # (outputs broadcast, as Flux's max.)
                _broadcast(np.shape(y), np.shape(z))
            y = np.maximum(y, z)
        return y

    def _output_shape(self, shape, dtype=np.float32):
        from fluxml.layers.shapes import output_shape

        def one(i, layer):
            try:
                return output_shape(layer, shape, dtype, single=True)
            except (ValueError, IndexError) as err:
                raise locate(err, "Maxout", i)  # noqa: B904 - locate sets its cause

        # every alternative: each must take the input, and the maximum broadcasts them
        out = one(0, self.layers[0])
        for i in range(1, len(self.layers)):
            out = _broadcast(out, one(i, self.layers[i]))
        return out

    def _show_children(self):
        return [(None, layer) for layer in self.layers]


def _broadcast(a, b):
    """The shape of Maxout's maximum of outputs shaped ``a`` and ``b``."""
    if a == b:
        return a
    try:
        return np.broadcast_shapes(a, b)
    except (ValueError, TypeError):
        raise LayerError(f"Maxout's layers give outputs of shapes {a} and {b}, which do not "
                         f"broadcast together; give it layers of one output size") from None
