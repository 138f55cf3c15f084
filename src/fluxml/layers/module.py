"""``fl.Module``: a plain Python class is a model.

A Module's array fields are its parameters, its Module fields (and lists, tuples and dicts of
them) its children, everything else (activation functions, ints, strings) static. There is
no registration: ``fluxml.tree`` already walks plain objects, so ``fl.gradient``, ``fl.fmap``
and the optimisers see a Module as they see any other tree. What the base class adds is
small: Flux-style printing, the ``nontrainable`` declaration, and train/test mode.

>>> import numpy as np, fluxml as fl
>>> class Affine(fl.Module):
...     def __init__(self, n):
...         self.scale = np.ones(n, np.float32)
...         self.shift = np.zeros(n, np.float32)
...     def __call__(self, x):
...         return x * self.scale + self.shift
>>> m = Affine(3)
>>> g, = fl.gradient(lambda m: np.sum(m(np.arange(3.0, dtype=np.float32))), m)
>>> g.scale
array([0., 1., 2.], dtype=float32)
>>> fl.trainable(m)
{'scale': array([1., 1., 1.], dtype=float32), 'shift': array([0., 0., 0.], dtype=float32)}
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import numpy as np

from fluxml._checks import flag
from fluxml.ad.core import Tracer, differentiating
from fluxml.tree import flatten, is_array_leaf, leaves_with_paths
from fluxml.treenodes import _fields, kind_of, nontrainable


class _Placeholder:
    """``fl._``: a size to be inferred by :func:`fluxml.autosize` (Flux's ``_`` in
    ``@autosize``).

    >>> import fluxml as fl
    >>> fl.autosize((4, 5), fl.Chain(fl.Dense(fl._, 3), fl.Dense(fl._, 2)))
    Chain(
      Dense(5 => 3),                        # 18 parameters
      Dense(3 => 2),                        # 8 parameters
    )                   # Total: 4 arrays, 26 parameters, 104 bytes.
    """

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "_"

    def __reduce__(self):
        return (_Placeholder, ())


_ = _Placeholder()


class Lazy:
    """A layer whose construction waits for a size: ``fl.Dense(fl._, 10)`` gives one, and
    :func:`fluxml.autosize` builds it once the input shape says what ``_`` is."""

    def __init__(self, cls, args, kwargs):
        self.cls, self.args, self.kwargs = cls, args, kwargs

    def build(self, n: int):
        args = [n if a is _ else a for a in self.args]
        kwargs = {k: n if v is _ else v for k, v in self.kwargs.items()}
        return self.cls(*args, **kwargs)

    def __call__(self, *xs):
        raise LayerError(f"{self!r} has a size still to infer: build the model with "
                         f"fl.autosize(input_shape, model) first")

    def __repr__(self) -> str:
        from fluxml.layers.show import name_of

        parts = [name_of(a) if callable(a) and a is not _ else repr(a) for a in self.args]
        parts += [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{self.cls.__name__}({', '.join(parts)})"

    def _line(self) -> str:  # its line in a printed model: Conv((3, 3), _, 4)
        return repr(self)


class Module:
    """Base class of layers and models.

    Subclasses are ordinary classes: assign arrays and sublayers in ``__init__`` and write
    ``__call__``. A class lists fields that are state rather than parameters in
    ``nontrainable`` (BatchNorm's running statistics): gradients and optimisers skip them,
    saving and device moves keep them. Layers with a train/test difference (Dropout,
    normalisation) have an ``active`` field: ``None`` (automatic: training inside a
    gradient), ``True`` or ``False`` (set by :func:`trainmode` / :func:`testmode`).

    A plain class (no base) is a model too: gradients, optimisers, saving, ``trainmode``
    and ``Chain`` take it alike. ``Module`` adds Flux's printing (with parameter counts)
    and ``fl._`` for sizes that ``fl.autosize`` infers.

    >>> import numpy as np, fluxml as fl
    >>> class Affine(fl.Module):
    ...     def __init__(self, n_in, n_out):
    ...         self.weight = fl.init.glorot_uniform((n_out, n_in))
    ...         self.bias = np.zeros(n_out, np.float32)
    ...     def __call__(self, x):
    ...         return x @ self.weight.T + self.bias
    >>> Affine(2, 3)
    Affine(weight=float32[3, 2], bias=float32[3])  # 9 parameters

    >>> class Running(fl.Module):
    ...     nontrainable = ("count",)
    ...     def __init__(self):
    ...         self.w = np.ones(2, np.float32)
    ...         self.count = np.zeros(1, np.float32)
    ...     def __call__(self, x):
    ...         self.count += 1
    ...         return x * self.w
    >>> m = Running()
    >>> g, = fl.gradient(lambda m: np.sum(m(np.ones(2, np.float32))), m)
    >>> g.w, g.count, m.count
    (array([1., 1.], dtype=float32), None, array([1.], dtype=float32))
    """

    nontrainable: ClassVar[tuple[str, ...]] = ()

    def __new__(cls, *args, **kwargs):
        # fl.Dense(fl._, 10): a size to infer; fl.autosize builds the layer later
        if any(a is _ for a in args) or any(v is _ for v in kwargs.values()):
            return Lazy(cls, args, kwargs)
        return super().__new__(cls)

    def __init__(self, *args, **kwargs):
        # A layer of no settings (Flatten, GlobalMaxPool) has no __init__ of its own, and
        # object's, beside the __new__ above, took any arguments and dropped them:
        # Flatten(2) or GlobalMaxPool((2, 2)) was the layer of none, silently.
        if args or kwargs:
            given = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
            raise TypeError(f"{type(self).__name__}() takes no arguments; got "
                            f"{', '.join(given)}")

    def __repr__(self) -> str:
        from fluxml.layers.show import render

        return render(self)

    def _line(self) -> str:
        """One line for this layer; layers override it with their constructor call."""
        from fluxml.layers.show import name_of

        parts = []
        for k, v in _fields(self) or ():  # (its slots too)
            if is_array_leaf(v) and hasattr(v, "shape"):
                parts.append(f"{k}={v.dtype}{list(v.shape)}")
            elif callable(v) and not _holds_module(v):
                parts.append(f"{k}={name_of(v)}")
        return f"{type(self).__name__}({', '.join(parts)})"

    def _called(self) -> str:
        """This layer as its error messages name it: its line, with a user's subclass of a
        library layer named as itself (``MyDense(3 => 4) expects ...``, not ``Dense(...)``).
        A user's ``_line`` that fails names the class alone: its error had replaced the
        layer's own (a wrong input shape reported as the ``_line``'s RuntimeError)."""
        try:
            line = self._line()
        except Exception:  # (the layer's error is the one to report)
            return type(self).__name__
        return own_name(self, line)

    def _show_children(self):
        """The sublayers shown nested under this one, or None for a leaf layer. A layer with
        sublayers lists its own arrays among them (as Flux does), so that the counts shown
        add up to the total."""
        from fluxml.layers.show import ArrayField

        fields = _fields(self) or ()
        if not any(_holds_module(v) for _, v in fields):
            return None
        frozen = nontrainable(type(self))
        return [(k, ArrayField(v, k in frozen) if is_array_leaf(v) and hasattr(v, "shape")
                 else v) for k, v in fields
                if _holds_module(v) or (is_array_leaf(v) and hasattr(v, "shape"))]


def own_name(x, line: str) -> str:
    """``line`` with the class that wrote it renamed to ``x``'s own class: a user's subclass
    of a library layer (``class MyDense(fl.Dense)`` with fields and a ``__call__`` of its
    own) inherits the library's ``_line``, which names the library class; printed or named
    in an error as ``Dense(3 => 2)`` it read as a plain Dense."""
    cls = type(x)
    if "_line" in vars(cls):  # (its own line)
        return line
    # the library class the line names: the one that wrote it, or one it serves (a
    # recurrent layer's line is its cell's, renamed)
    named = next((k.__name__ for k in cls.__mro__[1:] if line.startswith(k.__name__ + "(")),
                 None)
    return line if named is None else cls.__name__ + line[len(named):]


def _holds_module(x) -> bool:
    if isinstance(x, Module):
        return True
    kind = kind_of(x)  # (the containers as the trees read them: a deque is a list there)
    if kind in ("list", "tuple", "namedtuple"):
        return any(_holds_module(v) for v in x)
    if kind == "dict":
        return any(_holds_module(v) for v in x.values())
    return False


class LayerError(ValueError):
    """A layer was given input it cannot take. Containers add where the layer sits, so the
    message reads ``Chain[2]: Conv((3, 3), 3 => 16) expects ...``.

    >>> import numpy as np, fluxml as fl
    >>> try:
    ...     fl.Chain(np.tanh, fl.Dense(4, 2))(np.ones((8, 3), np.float32))
    ... except fl.LayerError as err:
    ...     print(err)
    Chain[1]: Dense(4 => 2) expects inputs of shape (N, 4); got (8, 3)
    """

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message
        self.where: list[str] = []

    def located(self, container: str, key) -> LayerError:
        self.where.insert(0, _place(container, key))
        self.args = (str(self),)
        return self

    def __str__(self) -> str:
        if not self.where:
            return self.message
        return f"{' > '.join(self.where)}: {self.message}"


def _place(container: str, key) -> str:
    return f"{container}[{key!r}]" if isinstance(key, str) else f"{container}[{key}]"


def locate(err: Exception, container: str, key) -> Exception:
    """What to raise for ``err``, raised by the layer at ``container[key]`` (``raise
    locate(err, ...)`` in the handler): a LayerError with the place added; another ValueError
    or IndexError of one message (NumPy's shape error in a user's layer, or the user's own)
    as a copy of it that reads ``Chain[2]: ...``, caused by the original so that its
    traceback shows above. An error of several arguments, or one whose text is not its
    message, goes on as it came.

    >>> import numpy as np, fluxml as fl
    >>> try:
    ...     fl.Chain(np.tanh, lambda x: x.reshape(5, -1))(np.ones((2, 3)))
    ... except ValueError as err:
    ...     print(err)
    Chain[1]: cannot reshape array of size 6 into shape (5,newaxis)
    """
    if isinstance(err, LayerError):
        err = err.located(container, key)
        err.__suppress_context__ = True  # (the place is in its message)
        return err
    original = getattr(err, "_located_from", err)  # located already by a container further in
    if len(original.args) > 1:
        return err
    where = [_place(container, key), *getattr(err, "_where", ())]
    message = f"{' > '.join(where)}: {original}"
    try:
        new = copy.copy(original)  # (its own fields, slots included, go with it)
        new.args = (message,)
    except Exception:
        return err
    if str(new) != message:
        return err
    new._where, new._located_from = where, original
    new.__cause__ = original
    return new


def need_array(layer, x, expected: str = "") -> None:
    """Refuse input that is no array (a list, a tuple, a number) in ``layer``'s name. Layers
    take arrays, as Flux's and PyTorch's do: a list converted here would come as float64, and
    a list of time steps or of several inputs would be read as one array's leading axis.

    >>> import numpy as np, fluxml as fl
    >>> try:
    ...     fl.MaxPool((2,))([[[1.0, 2.0]]])
    ... except fl.LayerError as err:
    ...     print(err)
    MaxPool((2,)) expects an array; got a list: convert it, np.asarray(x, np.float32)
    """
    if getattr(x, "shape", None) is None:
        want, got = "an array", f"a {type(x).__name__}: convert it, np.asarray(x, np.float32)"
    elif not isinstance(getattr(x, "dtype", None), np.dtype):
        # an array of another library (a torch.Tensor: its dtype is torch's), which the
        # kernels would fail on deep inside, far from the cause
        want = "a NumPy (or CuPy) array"
        got = (f"a {type(x).__module__.split('.')[0]}.{type(x).__name__}: convert it, "
               "np.asarray(x) (x.numpy() for a torch.Tensor)")
    else:
        return
    from fluxml.layers.show import line_of

    raise LayerError(f"{line_of(layer)} expects {want}{expected and ' ' + expected}; got {got}")


def input_shapes(shapes: tuple) -> tuple:
    """The shapes a shape rule of several inputs was given: as several arguments, or as one
    tuple of them (what a Chain passes on from a layer that returns a tuple)."""
    if len(shapes) == 1 and shapes[0] and isinstance(shapes[0][0], tuple):
        return tuple(shapes[0])
    return shapes


def within_gradient(x) -> bool:
    """True inside a gradient (or pullback, jvp) call, as Flux's ``NNlib.within_gradient``:
    when ``x`` is being differentiated, or a differentiation is running in this thread even
    if ``x`` is plain data; not when it is only traced by ``fl.compile`` (a compiled forward
    runs as the eager one).

    >>> import numpy as np, fluxml as fl
    >>> from fluxml.layers import within_gradient
    >>> seen = []
    >>> _ = fl.gradient(lambda w: seen.append(within_gradient(np.ones(2))) or np.sum(w),
    ...                 np.ones(2))
    >>> seen, within_gradient(np.ones(2))
    ([True], False)
    """
    return (type(x) is Tracer and x._trace.differentiates) or differentiating()


def is_active(layer, x) -> bool:
    """Whether a train/test layer acts in training mode on input ``x``: its ``active`` field
    when set, otherwise whether it runs inside a gradient call (:func:`within_gradient`;
    a Dropout first in a model sees plain data there), or ``x`` or one of the layer's own
    arrays is being differentiated.

    >>> import numpy as np, fluxml as fl
    >>> from fluxml.layers import is_active
    >>> drop = fl.Dropout(0.5)
    >>> is_active(drop, np.ones(2)), is_active(fl.trainmode(drop), np.ones(2))
    (False, True)
    """
    active = getattr(layer, "active", None)
    if active is not None:
        return bool(active)
    # (within_gradient of each, with the thread's open gradients asked once)
    return differentiating() or any(type(v) is Tracer and v._trace.differentiates
                                    for v in (x, *vars(layer).values()))


def modules(model) -> list:
    """Every Module in ``model`` (itself included), parents before children.

    >>> import fluxml as fl
    >>> [type(m).__name__ for m in fl.modules(fl.Chain(fl.Dense(2, 3), fl.Dense(3, 1)))]
    ['Chain', 'Dense', 'Dense']
    """
    found: list = []
    stack = [model]
    seen: set[int] = set()
    while stack:
        x = stack.pop()
        if id(x) in seen:
            continue
        # the containers as the trees read them (a deque is a list there: its layers were
        # missed, so fl.testmode left a Dropout in one as it was)
        kind = kind_of(x)
        if kind in ("list", "dict"):  # (once each: a list may hold itself)
            seen.add(id(x))
        if kind in ("list", "tuple", "namedtuple"):
            stack.extend(reversed(list(x)))
        elif kind == "dict":
            stack.extend(reversed(list(x.values())))
        elif kind == "object" and (fields := _fields(x)) is not None:  # an object
            # (its fields as the tree reads them: a Module's slots too, not only its vars)
            seen.add(id(x))
            if isinstance(x, Module):
                found.append(x)
            stack.extend(reversed([v for _, v in fields]))
    return found


def trainmode(model, mode: bool | None = True):
    """Put every train/test layer of ``model`` in training mode (``mode=None``: back to
    automatic). Returns ``model``, changed in place.

    >>> import fluxml as fl
    >>> class Noisy(fl.Module):
    ...     active = None
    >>> fl.trainmode(Noisy()).active
    True
    """
    mode = flag("trainmode", "mode", mode, none=True)
    for m in modules(model):
        if hasattr(m, "active"):
            m.active = mode
    return model


def testmode(model, mode: bool | None = True):
    """Put every train/test layer of ``model`` in test mode (``mode=None``: automatic;
    ``mode=False``: training). Returns ``model``, changed in place.

    >>> import fluxml as fl
    >>> class Noisy(fl.Module):
    ...     active = None
    >>> fl.testmode(Noisy()).active
    False
    """
    mode = flag("testmode", "mode", mode, none=True)
    return trainmode(model, None if mode is None else not mode)


def trainable(model) -> dict[str, Any]:
    """The arrays an optimiser sees, by path: every array leaf except the fields a class
    declares ``nontrainable``.

    >>> import fluxml as fl
    >>> list(fl.trainable(fl.Chain(fl.Dense(2, 3), fl.Dense(3, 1))))
    ['layers.0.weight', 'layers.0.bias', 'layers.1.weight', 'layers.1.bias']

    Two places whose paths read the same (a key ``"a.b"`` beside ``{"a": {"b": ...}}``, keys
    ``1`` and ``"1"``) are refused by name: one array would hide the other.
    """
    out: dict = {}
    for p, x in leaves_with_paths(model, trainable=True):
        if _is_param(x):
            if p in out:
                raise ValueError(f"fl.trainable: two arrays of the model are both at the path "
                                 f"{p!r} (a key with a dot in it, or keys 1 and '1'); rename "
                                 f"one of the keys")
            out[p] = x
    return out


def _is_param(x) -> bool:
    # (arrays only: a NumPy scalar, as a Python number, is a leaf the optimisers do not train)
    return getattr(x, "ndim", None) is not None and getattr(x, "dtype", None) is not None and \
        x.dtype.kind in "fc" and not isinstance(x, np.generic)


def parameter_arrays(model) -> tuple[list, list]:
    """``(trainable, other)``: the distinct float arrays of ``model`` (a tied array once),
    split by the ``nontrainable`` declarations."""
    train = {id(x): x for x in flatten(model, trainable=True)[0] if _is_param(x)}
    every = {id(x): x for x in flatten(model)[0] if _is_param(x)}
    return list(train.values()), [x for k, x in every.items() if k not in train]


def count_parameters(model) -> tuple[int, int, int, int]:
    """``(trainable arrays, trainable numbers, other arrays, other numbers)``."""
    train, other = parameter_arrays(model)
    return len(train), sum(x.size for x in train), len(other), sum(x.size for x in other)
