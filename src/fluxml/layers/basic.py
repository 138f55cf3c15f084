"""The basic layers: Dense and Chain.

>>> import numpy as np, fluxml as fl
>>> model = fl.Chain(fl.Dense(4, 8, np.tanh), fl.Dense(8, 2))
>>> model(np.ones((5, 4), np.float32)).shape
(5, 2)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fluxml import init as initialisers
from fluxml._checks import function, is_int, positive_int, shown
from fluxml.layers.module import LayerError, Module, input_shapes, locate, need_array
from fluxml.layers.precision import match_dtype
from fluxml.layers.show import name_of
from fluxml.nnlib.linear import affine
from fluxml.tree import flatten as tree_flatten


def identity(x):
    """The identity function (the default activation: it is skipped, not called).

    >>> import fluxml as fl
    >>> fl.identity(3.0), fl.Dense(2, 1, fl.identity)
    (3.0, Dense(2 => 1)  # 3 parameters)
    """
    return x


def _activation_suffix(f) -> str:
    return "" if f is identity or f is None else f", {name_of(f)}"


class Dense(Module):
    """``Dense(in_features, out_features, activation=identity; bias=True, init=, rng=)``

    A fully connected layer: ``y = activation(x @ weight.T + bias)`` with ``weight`` shaped
    ``(out, in)`` as PyTorch's ``Linear``. Input ``(N, in)`` (or any leading dimensions, or
    a single vector ``(in,)``) gives ``(N, out)``. ``bias=False`` leaves the bias out;
    ``bias`` may also be an array. Pass an array as the first argument to use it as the
    weight: ``Dense(W, activation)``, or Flux's ``Dense(W, b, activation)``. ``init`` is
    called as ``init((out, in), rng)`` (default: Glorot uniform, as Flux) and its result
    converted to ``dtype`` (float32; Flux keeps the init's own type); the bias starts at
    zero.

    >>> import numpy as np, fluxml as fl
    >>> d = fl.Dense(3, 2, np.tanh, init=fl.init.ones)
    >>> d
    Dense(3 => 2, tanh)  # 8 parameters
    >>> d(np.array([[1.0, 0.0, 1.0]], np.float32))
    array([[0.9640276, 0.9640276]], dtype=float32)
    """

    def __init__(self, in_features, out_features=None, activation: Callable = identity, *,
                 bias=True, init: Callable = initialisers.glorot_uniform, rng=None,
                 dtype=np.float32):
        if _is_array(in_features):  # Dense(W), Dense(W, relu), Flux's Dense(W, b, relu)
            weight, bias, activation = _weight_first("Dense", "(out, in)", in_features,
                                                     out_features, activation, bias)
        else:
            _positive("Dense", in_features=in_features, out_features=out_features)
            weight = initial("Dense", init, (out_features, in_features), rng, dtype)
        function("Dense", "activation", activation)
        self.weight = weight
        self.bias = _make_bias(bias, weight.shape[0], weight.dtype, "Dense")
        self.activation = activation

    _feature_axis = -1  # which input dimension fl._ stands for (fl.autosize)

    def _output_shape(self, shape):
        if tuple(shape[-1:]) != self.weight.shape[1:]:
            self._refuse(shape)
        return tuple(shape[:-1]) + (self.weight.shape[0],)

    def _refuse(self, shape):
        out, inp = self.weight.shape
        hint = ""
        if len(shape) and shape[-1] == out != inp:
            hint = (f"; the sizes the other way round? Dense(in, out) takes the input size "
                    f"first, as Flux's Dense(in => out): Dense({out}, {inp})")
        raise LayerError(f"{self._called()} expects inputs of shape (N, {inp}); "
                         f"got {tuple(shape)}{hint}")

    def __call__(self, x):
        w = self.weight
        need_array(self, x, f"(N, {w.shape[1]})")
        if x.shape[-1:] != w.shape[1:]:
            self._refuse(x.shape)
        need_bias_fits(self)
        if x.dtype != w.dtype:
            x = match_dtype(self, x, w.dtype)
        y = affine(x, w, self.bias)
        return y if self.activation is identity else self.activation(y)

    def _line(self) -> str:
        out, inp = self.weight.shape
        bias = "" if self.bias is not None else ", bias=False"
        return f"Dense({inp} => {out}{_activation_suffix(self.activation)}{bias})"


def _is_array(x) -> bool:
    """Whether a layer's first argument is a weight array rather than a size."""
    return isinstance(x, np.ndarray) or hasattr(x, "__array_namespace__") \
        and not isinstance(x, np.generic)  # (np.int64(3): a size)


def _weight_first(layer: str, dims: str | None, weight, second, activation, bias):
    """``(weight, bias, activation)`` of a layer made from its weight, as Flux's
    ``Layer(W)``, ``Layer(W, f)``, ``Layer(W, b)`` and ``Layer(W, b, f)``."""
    if second is not None and activation is identity and callable(second):
        activation = second  # Dense(W, relu)
    elif second is not None:  # Flux's Dense(W, b, relu): the bias second
        if bias is not True:
            raise TypeError(f"{layer}: the bias is given twice (second argument and bias=)")
        bias = second
    if dims is not None and weight.ndim != len(dims.split(",")):
        raise ValueError(f"{layer}: a weight must have shape {dims}; got {weight.shape}")
    return weight, bias, activation


def initial(layer: str, init: Callable, shape: tuple, rng, dtype, what: str = "init"):
    """``init(shape, rng)`` as an array of ``dtype``, refused unless it has ``shape``: a
    weight of another shape made another layer (``Dense(3, 4, init=lambda s, rng: w)`` with
    ``w`` (3, 4) was a Dense(4 => 3), silently), where Flux raises a DimensionMismatch."""
    shape = tuple(int(n) for n in shape)
    _parameter_dtype(layer, dtype)
    value = np.asarray(function(layer, what, init)(shape, rng), dtype=dtype)
    if value.shape != shape:
        raise ValueError(f"{layer}: {what} must return an array of shape {shape}; got shape "
                         f"{value.shape}")
    return value


def _parameter_dtype(layer: str, dtype) -> None:
    """Refuse a parameter dtype that holds no trainable numbers: dtype=int truncated the
    initialiser's values (glorot's, all in (-1, 1)) to a weight of zeros, bool, object and
    str made weights of True, of objects or of strings, each silently; 'abc' raised NumPy's
    "data type 'abc' not understood"."""
    if dtype is None:
        return
    try:
        kind, what = np.dtype(dtype).kind, f"{np.dtype(dtype)} ({dtype!r})"
    except TypeError:
        kind, what = None, shown(dtype)
    if kind not in ("f", "c"):
        raise TypeError(f"{layer}: dtype must be a float or complex dtype (np.float32, "
                        f"np.float64, ...); got {what}")


def need_bias_fits(layer) -> None:
    """Refuse, in the layer's name, a bias of another length than its weight's outputs (a
    weight or bias replaced by one of another size, say from another checkpoint: the kernels'
    errors named neither the layer nor the array)."""
    w, b = layer.weight, layer.bias
    if b is not None and getattr(b, "shape", None) != w.shape[:1]:
        raise LayerError(f"{layer._called()}: bias must have shape ({w.shape[0]},) for a "
                         f"weight of shape {tuple(w.shape)}; got "
                         f"{getattr(b, 'shape', type(b).__name__)}")


def _make_bias(bias, shape, dtype, layer):
    """A bias of ``shape`` (a length: a vector): zeros for True, None for False (or None), or
    the given array, in the weight's ``dtype`` as Flux's ``create_bias`` converts it (a
    float64 bias beside a float32 weight made every output float64)."""
    shape = (shape,) if is_int(shape) else tuple(shape)
    if isinstance(bias, (bool, np.bool_)):
        return np.zeros(shape, dtype) if bias else None
    if bias is None:
        return None
    if getattr(bias, "shape", None) is None:  # ("no" or 2 made a bias of shape ())
        raise TypeError(f"{layer}: bias must be True, False or an array of shape {shape}; "
                        f"got {shown(bias, typed=True)}")
    if bias.shape != shape:
        raise ValueError(f"{layer}: bias must have shape {shape}; got {bias.shape}")
    if bias.dtype != dtype and bias.dtype.kind in "biuf" and np.dtype(dtype).kind == "f":
        return bias.astype(dtype)
    return bias


def _positive(layer, **sizes):
    """Each of ``sizes`` (name: value) a positive int, else an error naming ``layer``."""
    for name, n in sizes.items():
        positive_int(layer, name, n)


class Chain(Module):
    """``Chain(layer1, layer2, ...)`` or ``Chain(name1=layer1, ...)``

    Calls its layers in sequence: ``Chain(f, g)(x) == g(f(x))``; several arguments reach
    the first layer as one tuple (``Chain(f)(x, y) == f((x, y))``, as Flux). Layers may be
    any callables (layers, plain functions, your own classes). Index with ints, slices (a
    shorter Chain) and, for named chains, names: ``model[0]``, ``model[1:]``,
    ``model["encoder"]`` or ``model.encoder``; a list picks several (``model[[0, 2]]``, a
    shorter Chain). The structural gradient mirrors it: ``g.layers[0].weight``. A name may
    not be one of the Chain's own attributes (``layers``, ``outputs``).

    >>> import numpy as np, fluxml as fl
    >>> m = fl.Chain(enc=fl.Dense(4, 2, np.tanh), dec=fl.Dense(2, 4))
    >>> m.enc
    Dense(4 => 2, tanh)  # 10 parameters
    >>> m[1:]
    Chain(
      dec = Dense(2 => 4),                  # 12 parameters
    )                   # Total: 2 arrays, 12 parameters, 48 bytes.
    """

    def __init__(self, *layers, **named):
        if layers and named:
            raise TypeError("Chain takes layers either positionally or by name, not both")
        if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
            layers = tuple(layers[0])  # Chain([l1, l2]) as Flux's Chain(vector)
        taken = [k for k in named if hasattr(Chain, k) or k == "layers"]
        if taken:  # (m.layers, m.outputs would not reach the layer so named)
            raise ValueError(f"Chain: the layer names {taken} are the Chain's own attributes; "
                             f"choose others")
        self.layers = dict(named) if named else tuple(layers)
        for key, layer in self._items():
            if not callable(layer):
                raise TypeError(f"Chain: layer {key!r} is not callable: {layer!r}")
            if layer is tree_flatten:  # Flux's Chain(..., flatten, Dense(...)) means MLUtils'
                raise TypeError(  # flatten, which fl.Flatten() is; fl.flatten is tree's
                    f"Chain: layer {key!r} is fl.flatten, which flattens a tree into its "
                    f"leaves; to flatten each sample of a batch, (N, C, H, W) -> "
                    f"(N, C * H * W), as Flux's flatten does, use fl.Flatten()")

    def _items(self):
        layers = self.layers
        return layers.items() if isinstance(layers, dict) else enumerate(layers)

    def __call__(self, x, *more):
        if more:  # several arguments: the first layer takes them as one tuple (as Flux)
            x = (x,) + more
        # (outputs' loop, without the generator: 0.7 us less for three layers, 1.4 for ten)
        for key, layer in self._items():
            try:
                x = layer(x)
            except (ValueError, IndexError) as err:
                raise locate(err, "Chain", key)  # noqa: B904 - locate sets its cause
        return x

    def outputs(self, x):
        """Each layer's output in turn, the last being ``self(x)`` (an iterator; Flux's
        ``activations`` as a tuple).

        >>> import numpy as np, fluxml as fl
        >>> m = fl.Chain(fl.Dense(2, 3), np.tanh, fl.Dense(3, 1))
        >>> [y.shape for y in m.outputs(np.ones((4, 2), np.float32))]
        [(4, 3), (4, 3), (4, 1)]
        """
        for key, layer in self._items():
            try:
                x = layer(x)
            except (ValueError, IndexError) as err:
                raise locate(err, "Chain", key)  # noqa: B904 - locate sets its cause
            yield x

    def _output_shape(self, shape, dtype=np.float32):
        from fluxml.layers.shapes import output_shape

        for key, layer in self._items():
            try:
                shape = output_shape(layer, shape, dtype, single=True)
            except (ValueError, IndexError) as err:
                raise locate(err, "Chain", key)  # noqa: B904 - locate sets its cause
        return shape

    def __getitem__(self, key):
        layers = self.layers
        if isinstance(key, slice):
            if isinstance(layers, dict):
                return Chain(**dict(list(layers.items())[key]))
            return Chain(*layers[key])
        if isinstance(key, np.ndarray) and key.ndim == 1 and key.dtype.kind in "iu":
            key = key.tolist()  # (an index array, as a list)
        if isinstance(key, list):  # Flux's c[[1, 3]]: a Chain of the layers picked
            if isinstance(layers, dict):
                names = list(layers)
                picked = [names[k] if isinstance(k, (int, np.integer)) else k for k in key]
                return Chain(**{k: layers[k] for k in picked})
            return Chain(*(layers[k] for k in key))
        if isinstance(layers, dict) and isinstance(key, (int, np.integer)):
            return list(layers.values())[key]
        return layers[key]

    def __getattr__(self, name):
        layers = self.__dict__.get("layers")
        if isinstance(layers, dict) and name in layers:
            return layers[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers.values() if isinstance(self.layers, dict) else self.layers)

    def _show_children(self):
        if isinstance(self.layers, dict):
            return list(self.layers.items())
        return [(None, layer) for layer in self.layers]


def activations(chain: Chain, x) -> tuple:
    """Every layer's output of ``chain`` on ``x``, in order (Flux's ``activations``): the last
    is ``chain(x)``.

    >>> import numpy as np, fluxml as fl
    >>> outs = fl.activations(fl.Chain(fl.Dense(2, 3), np.tanh), np.ones((4, 2), np.float32))
    >>> [o.shape for o in outs]
    [(4, 3), (4, 3)]
    """
    if not isinstance(chain, Chain):
        raise TypeError(f"activations takes a Chain and its input; got {type(chain).__name__}")
    return tuple(chain.outputs(x))


class Scale(Module):
    """``Scale(size..., activation=identity; bias=True, init=ones)``

    An elementwise affine map: ``y = activation(x * scale + bias)``, ``scale`` and ``bias``
    shaped ``size`` and broadcast against the trailing dimensions of ``x``: ``Scale(3)`` on
    ``(N, 3)``, ``Scale(C, 1, 1)`` scales the channels of ``(N, C, H, W)``.

    >>> import numpy as np, fluxml as fl
    >>> s = fl.Scale(2)
    >>> s.scale[:] = [2, 3]
    >>> s(np.ones((1, 2), np.float32))
    array([[2., 3.]], dtype=float32)
    """

    def __init__(self, *size, bias=True, init: Callable = initialisers.ones, rng=None,
                 dtype=np.float32):
        activation: Callable = identity
        if size and callable(size[-1]):
            size, activation = size[:-1], size[-1]
        if not size:
            raise ValueError("Scale: expected one or more sizes (positive ints); got none")
        size = tuple(positive_int("Scale", f"size[{i}]", n) for i, n in enumerate(size))
        self.scale = initial("Scale", init, size, rng, dtype)
        self.bias = _make_bias(bias, size, dtype, "Scale")
        self.activation = activation

    def _output_shape(self, shape):
        try:
            return np.broadcast_shapes(tuple(shape), self.scale.shape)
        except ValueError:
            raise LayerError(f"{self._called()} expects inputs whose trailing dimensions "
                             f"broadcast with {self.scale.shape}; got {tuple(shape)}") from None

    def __call__(self, x):
        need_array(self, x)
        if x.dtype != self.scale.dtype:
            x = match_dtype(self, x, self.scale.dtype)
        self._output_shape(x.shape)
        y = x * self.scale
        if self.bias is not None:
            y = y + self.bias
        return y if self.activation is identity else self.activation(y)

    def _line(self) -> str:
        size = ", ".join(map(str, self.scale.shape))
        bias = "" if self.bias is not None else ", bias=False"
        return f"Scale({size}{_activation_suffix(self.activation)}{bias})"


class Bilinear(Module):
    """``Bilinear(in_features, out_features, activation)`` or ``Bilinear((in1, in2), out, ...)``

    ``y[n, o] = activation(sum_ij x[n, i] * weight[o, i, j] * z[n, j] + bias[o])`` with
    ``weight`` shaped ``(out, in1, in2)`` as PyTorch's ``Bilinear``. Called as ``m(x, z)``,
    ``m((x, z))``, or ``m(x)`` for ``m(x, x)``; inputs ``(N, in1)`` and ``(N, in2)`` (or any
    leading axes, the same for both, as PyTorch's), or vectors ``(in1,)`` and ``(in2,)``
    giving ``(out,)``. Pass an array as the first argument to use it as the weight, as Flux's
    ``Bilinear(W, bias, activation)``.

    >>> import numpy as np, fluxml as fl
    >>> m = fl.Bilinear((3, 2), 4)
    >>> m(np.ones((5, 3), np.float32), np.ones((5, 2), np.float32)).shape
    (5, 4)
    """

    _feature_axis = -1
    _inputs_of_one_size = True  # (fl.autosize builds Bilinear(_, k) of two such inputs)

    def __init__(self, in_features, out_features=None, activation: Callable = identity, *,
                 bias=True, init: Callable = initialisers.glorot_uniform, rng=None,
                 dtype=np.float32):
        if _is_array(in_features):  # Flux's Bilinear(W), Bilinear(W, b), Bilinear(W, b, f)
            weight, bias, activation = _weight_first("Bilinear", "(out, in1, in2)",
                                                     in_features, out_features, activation,
                                                     bias)
            out_features = weight.shape[0]
        else:
            in1, in2 = in_features if isinstance(in_features, tuple) else (in_features,) * 2
            _positive("Bilinear", in1=in1, in2=in2, out_features=out_features)
            weight = initial("Bilinear", init, (out_features, in1, in2), rng, dtype)
        self.weight = weight
        self.bias = _make_bias(bias, out_features, weight.dtype, "Bilinear")
        self.activation = function("Bilinear", "activation", activation)

    def _output_shape(self, *shapes):
        shapes = input_shapes(shapes)
        x, z = (shapes[0], shapes[0]) if len(shapes) == 1 else shapes
        if len(x) == len(z) == 1:  # a pair of vectors, as __call__
            return self._output_shape((1,) + tuple(x), (1,) + tuple(z))[1:]
        _, in1, in2 = self.weight.shape
        if len(x) < 2 or len(x) != len(z) or x[-1] != in1 or z[-1] != in2 \
                or tuple(x[:-1]) != tuple(z[:-1]):
            raise LayerError(f"{self._called()} expects inputs (N, {in1}) and (N, {in2}) (or "
                             f"the same leading axes before both); got {tuple(x)} and "
                             f"{tuple(z)}")
        return tuple(x[:-1]) + (self.weight.shape[0],)

    def __call__(self, x, z=None):
        if z is None:
            x, z = x if isinstance(x, tuple) else (x, x)
        need_array(self, x)
        need_array(self, z)
        if x.ndim == z.ndim == 1:  # a single pair of vectors, as Dense takes one vector
            return self(x[None], z[None])[0]
        w = self.weight
        x, z = (match_dtype(self, v, w.dtype) for v in (x, z))
        shape = self._output_shape(x.shape, z.shape)
        if len(shape) > 2:  # leading axes (N, T, ...): one batch axis, and back
            y = self(np.reshape(x, (-1, x.shape[-1])), np.reshape(z, (-1, z.shape[-1])))
            return np.reshape(y, shape)
        y = np.einsum("ni,oij,nj->no", x, w, z, optimize=True)
        if self.bias is not None:
            y = y + self.bias
        return y if self.activation is identity else self.activation(y)

    def _line(self) -> str:
        out, in1, in2 = self.weight.shape
        ins = f"{in1}" if in1 == in2 else f"({in1}, {in2})"
        bias = "" if self.bias is not None else ", bias=False"
        return f"Bilinear({ins} => {out}{_activation_suffix(self.activation)}{bias})"


class Flatten(Module):
    """``Flatten()``: ``(N, d1, d2, ...) -> (N, d1 * d2 * ...)``, e.g. between convolutions
    and a Dense layer (Flux's ``flatten``).

    >>> import numpy as np, fluxml as fl
    >>> fl.Flatten()(np.zeros((2, 3, 4, 5))).shape
    (2, 60)
    """

    def _output_shape(self, shape):
        if len(shape) < 1:
            raise LayerError(f"Flatten() expects input with a batch dimension; got {shape}")
        return (shape[0], int(np.prod(shape[1:], dtype=np.int64)))

    def __call__(self, x):
        need_array(self, x)
        return np.reshape(x, self._output_shape(x.shape))

    def _line(self) -> str:
        return "Flatten()"
