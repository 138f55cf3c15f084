"""Shapes without data: ``outputsize``, ``summary`` and ``autosize``.

A layer that knows its shape rule has ``_output_shape(input_shape)`` (it raises the same
``LayerError`` as its forward pass on a bad shape); containers compose their children's
rules. Anything else (a user's layer, a plain function) is run once on zeros of the input's
shape: a smaller batch cannot stand in for the input's (see ``_by_running``).

Sizes to infer are written ``fl._``: ``fl.Dense(fl._, 10)`` is a layer waiting for its input
size, and ``fl.autosize(input_shape, model)`` builds every such layer of a Chain from the
shapes that flow into it (Flux's ``@autosize``). ``_`` stands for the features of the input
(the last dimension) for Dense and Bilinear, and for the channels (dimension 1 of
``(N, C, ...)``) for every other layer.

>>> import numpy as np, fluxml as fl
>>> m = fl.autosize((8, 1, 6, 6), fl.Chain(fl.Flatten(), fl.Dense(fl._, 16), fl.Dense(fl._, 2)))
>>> m
Chain(
  Flatten(),
  Dense(36 => 16),                      # 592 parameters
  Dense(16 => 2),                       # 34 parameters
)                   # Total: 4 arrays, 626 parameters, 2,504 bytes.
>>> fl.outputsize(m, (8, 1, 6, 6))
(8, 2)
"""

from __future__ import annotations

import inspect

import numpy as np

from fluxml._checks import is_int
from fluxml.layers.basic import Chain
from fluxml.layers.containers import Maxout, PairwiseFusion, Parallel, SkipConnection
from fluxml.layers.module import LayerError, Lazy, Module, count_parameters, locate
from fluxml.layers.sequences import Bidirectional, Recurrence
from fluxml.layers.show import line_of, name_of, show_children
from fluxml.tree import flatten, unflatten

Shape = tuple


def _is_shape(s) -> bool:
    return isinstance(s, tuple) and all(is_int(d) for d in s)


def output_shape(layer, shape, dtype=np.float32, *, single: bool = False):
    """The shape ``layer`` gives for input ``shape`` (a tuple, or a tuple of tuples for
    several inputs): its shape rule, else one run on zeros of that shape. ``single``:
    a tuple of tuples is one argument holding several arrays (what a Chain passes on from a
    layer returning a tuple, such as MultiHeadAttention), not several arguments."""
    rule = getattr(layer, "_output_shape", None)
    if rule is not None and callable(rule) and not isinstance(layer, type) \
            and _runs_as(layer, "_output_shape"):
        return rule(shape, dtype=dtype) if _reads_dtype(rule) else rule(shape)
    if isinstance(layer, _CONTAINERS) and _runs_as(layer, _CONTAINERS):
        return _container_shape(layer, shape, dtype)
    return _by_running(layer, shape, dtype, single)


_CONTAINERS = (Parallel, SkipConnection, PairwiseFusion, Bidirectional, Recurrence)


def _runs_as(layer, what) -> bool:
    """Whether ``layer``'s ``__call__`` is the one its shape rule describes: that of the class
    defining the rule (``what``: the rule's name, or the container classes), of a class
    above it, or fluxml's own. A user's subclass of a library layer with a ``__call__`` of
    its own (``class Twice(fl.Dense)`` concatenating the output with itself) was given
    Dense's shape, (5, 2) for the (5, 4) it returns, silently; such a layer is run on
    zeros. (Read each time: a class's ``__call__`` may be replaced after a first use.)"""
    mro = type(layer).__mro__
    caller = next((k for k in mro if "__call__" in vars(k)), object)
    if caller.__module__.startswith("fluxml."):
        return True
    if isinstance(what, str):
        owner = next((k for k in mro if what in vars(k)), type(layer))
    else:
        owner = next(k for k in mro if k in what)
    return caller in owner.__mro__


_READS_DTYPE: dict = {}  # a rule's function -> whether it takes the input's dtype


def _reads_dtype(rule) -> bool:
    """Whether a shape rule takes the input's ``dtype`` too: containers pass it on (a Chain's
    layers are each given it, as summary gives them), an Embedding reads a bool array as
    one-hot rows."""
    func = getattr(rule, "__func__", rule)
    known = _READS_DTYPE.get(func)
    if known is None:
        known = _READS_DTYPE[func] = "dtype" in inspect.signature(func).parameters
    return known


def _located(container, key, layer, shape, dtype):
    try:
        return output_shape(layer, shape, dtype, single=True)
    except (ValueError, IndexError) as err:
        raise locate(err, container, key)  # noqa: B904 - locate sets its cause


def _container_shape(layer, shape, dtype):
    """The containers' shapes from their layers' rules; only the connection (``np.add``, a
    concatenation: cheap) runs, on zeros."""
    name = type(layer).__name__
    if isinstance(layer, Recurrence):
        layer._check_sequence(shape)
        rule = getattr(layer.cell, "_output_shape", None)
        if rule is None or not callable(rule) or not _runs_as(layer.cell, "_output_shape"):
            return _by_running(layer, shape, dtype)  # (a user's cell)
        # the cell's shapes for one time step (N, F), the time axis put back in the output
        out, state = _located(name, "cell", layer.cell, shape[:-2] + shape[-1:], dtype)
        ys = tuple(out[:-1]) + (shape[-2],) + tuple(out[-1:])
        return (ys, state) if layer.return_state else ys
    if isinstance(layer, Bidirectional):
        fwd = _located(name, "forward", layer.forward, shape, dtype)
        bwd = _located(name, "backward", layer.backward, shape, dtype)
        if layer.merge is None:
            return tuple(fwd[:-1]) + (fwd[-1] + bwd[-1],)
        return _by_running(layer.merge, (fwd, bwd), dtype)
    if isinstance(layer, SkipConnection):
        inner = _located(name, 0, layer.layers, shape, dtype)
        return _by_running(layer.connection, (inner, shape), dtype)
    if isinstance(layer, PairwiseFusion):
        n = len(layer.layers)
        xs = (shape,) * n if _is_shape(shape) else tuple(shape)
        if len(xs) != n:
            return _by_running(layer, shape, dtype)  # (its own error)
        ys = [_located(name, 0, layer.layers[0], xs[0], dtype)]
        for i in range(1, n):
            joined = _by_running(layer.connection, (ys[-1], xs[i]), dtype)
            ys.append(_located(name, i, layer.layers[i], joined, dtype))
        return tuple(ys)
    items = layer._items()  # Parallel
    if _is_shape(shape):
        ys = [_located(name, k, child, shape, dtype) for k, child in items]
    elif len(items) == 1:
        ys = [_located(name, items[0][0], items[0][1], s, dtype) for s in shape]
    elif len(items) == len(shape):
        ys = [_located(name, k, child, s, dtype) for (k, child), s in zip(items, shape)]
    else:
        return _by_running(layer, shape, dtype)  # (its own error)
    if layer.connection is None:
        return tuple(ys)
    return _by_running(layer.connection, tuple(ys), dtype)


def _by_running(layer, shape, dtype, single=False):
    """``layer``'s output shape(s), found by running it on zeros of the input's shape
    (``single``: a tuple of shapes is one argument). No smaller batch stands in for the
    input's: a batch of one and of two (run before, the batch size put back on the outputs
    whose first axis followed it) could not tell ``x[:2]`` from ``x``, so ``x[:2]`` of
    ``(3, 4)`` was said to be ``(3, 4)``, silently; and the inputs of a function of several
    (``x @ t``) each keep their own first axis (a batch of one for ``t`` failed)."""
    if single and not _is_shape(shape):  # one argument: a tuple of arrays
        y = layer(_zeros(shape, dtype))
    else:
        y = layer(*(_zeros(s, dtype) for s in ((shape,) if _is_shape(shape) else shape)))
    leaves, spec = flatten(y)
    return unflatten(spec, [np.shape(a) for a in leaves])


def _zeros(shape, dtype):
    """Zeros of ``shape``, or a tuple of them for a tuple of shapes."""
    if not _is_shape(shape):
        return tuple(_zeros(s, dtype) for s in shape)
    return np.zeros(shape, dtype)


def outputsize(model, input_shape, *more_shapes, padbatch: bool = False, dtype=np.float32):
    """The shape of ``model``'s output for input of ``input_shape`` (batch first), computed
    from each layer's shape rule where it has one (no arithmetic on data); a layer or
    function without one runs once on zeros of its input's shape. ``padbatch`` prepends a
    batch of one. A bad shape raises the error the forward pass would. A model of several
    inputs takes their shapes as a tuple or, as Flux's, one after the other:
    ``outputsize(m, (2,), (3,))``.

    >>> import numpy as np, fluxml as fl
    >>> fl.outputsize(fl.Chain(fl.Dense(4, 8), fl.Dense(8, 3)), (32, 4))
    (32, 3)
    """
    if more_shapes:
        input_shape = (input_shape,) + more_shapes
    shape = _input_shape(input_shape, "outputsize")
    if padbatch:  # (each input's, for several)
        shape = (1,) + shape if _is_shape(shape) else tuple((1,) + s for s in shape)
    return output_shape(model, shape, dtype)


def _input_shape(shape, fn):
    """``shape`` as a tuple of ints, or a tuple of such tuples for several inputs."""
    if isinstance(shape, (tuple, list)) and shape and all(isinstance(s, (tuple, list))
                                                          for s in shape):
        return tuple(_input_shape(s, fn) for s in shape)
    dims = tuple(shape) if isinstance(shape, (tuple, list, np.ndarray)) else None
    if dims is None or not all(is_int(d) and d >= 0 for d in dims):
        raise TypeError(f"{fn}: the input shape must be a tuple of non-negative ints, batch "
                        f"first (or a tuple of them for several inputs); got {shape!r}")
    return tuple(int(d) for d in dims)


def summary(model, input_shape, *, dtype=np.float32, file=None) -> None:
    """Print a table of every layer of ``model`` with its output shape and parameter count,
    for input of ``input_shape`` (batch first); nested Chains are indented, other models are
    one row. ``file`` is where it prints, as print's (``sys.stdout`` by default; an
    ``io.StringIO`` keeps the text). ``dtype`` is the input's (``dtype=np.int64`` for a model
    that starts with an Embedding).

    >>> import numpy as np, fluxml as fl
    >>> fl.summary(fl.Chain(fl.Dense(4, 8, np.tanh), fl.Dense(8, 3)), (32, 4))
    Layer                           Output shape        Parameters
    ==============================================================
    Chain(
      Dense(4 => 8, tanh)           (32, 8)                     40
      Dense(8 => 3)                 (32, 3)                     27
    )                               (32, 3)                     67
    ==============================================================
    Total: 67 trainable parameters, 0 non-trainable.
    """
    rows: list[tuple[str, str, str]] = []
    _rows(model, _input_shape(input_shape, "summary"), "", rows, dtype, single=False)
    width = max(32, max(len(r[0]) for r in rows) + 2)
    shapes = max(20, max(len(r[1]) for r in rows) + 2)  # (a tuple of outputs is long)
    head = f"{'Layer':<{width}}{'Output shape':<{shapes}}{'Parameters':>10}"
    lines = [head, "=" * len(head)]
    lines += [f"{a:<{width}}{b:<{shapes}}{c:>10}".rstrip() for a, b, c in rows]
    _, ntrain, _, nother = count_parameters(model)
    lines += ["=" * len(head),
              f"Total: {ntrain:,} trainable parameters, {nother:,} non-trainable."]
    print("\n".join(lines), file=file)


def _count(layer) -> str:
    _, n, _, other = count_parameters(layer)
    return f"{n:,}" + (f" + {other:,}" if other else "")


def _rows(layer, shape, indent, rows, dtype, single=True):
    if isinstance(layer, Chain) and _runs_as(layer, (Chain,)):
        rows.append((indent + "Chain(", "", ""))
        out = shape
        for key, child in layer._items():
            try:
                out = _rows(child, out, indent + "  ", rows, dtype)
            except (ValueError, IndexError) as err:  # Chain[1]: ..., as the forward pass does
                raise locate(err, "Chain", key)  # noqa: B904 - locate sets its cause
        rows.append((indent + ")", str(out), _count(layer)))
        return out
    out = output_shape(layer, shape, dtype, single=single)
    branches = _branches(layer)
    if branches is not None and _is_shape(shape):  # each branch takes the same input
        connection = getattr(layer, "connection", None)
        rows.append((indent + type(layer).__name__ + "(" +
                     ("" if connection is None else f"connection={name_of(connection)},"), "",
                     ""))
        for child in branches:
            _rows(child, shape, indent + "  ", rows, dtype)
        rows.append((indent + ")", str(out), _count(layer)))
        return out
    line = line_of(layer)
    if show_children(layer) is not None and not isinstance(layer, Module):
        line = type(layer).__name__
    rows.append((indent + line, str(out), _count(layer)))
    return out


def _branches(layer):
    """The layers of a container that each take its input, listed under it by summary."""
    if isinstance(layer, Parallel):
        return [child for _, child in layer._items()]
    if isinstance(layer, Maxout):
        return list(layer.layers)
    if isinstance(layer, SkipConnection):
        return [layer.layers]
    if isinstance(layer, Bidirectional):
        return [layer.forward, layer.backward]
    return None


def autosize(input_shape, model, *, dtype=np.float32):
    """Build the layers of ``model`` written with the placeholder ``fl._`` for a size, from
    the shapes that input of ``input_shape`` (batch first) gives along the way. Placeholders
    may sit in Chains (nested too), SkipConnections, Parallels, Maxouts, PairwiseFusions,
    Recurrences (the cell) and Bidirectional wrappers. ``dtype`` is the input's, as
    outputsize's (``dtype=bool`` for one-hot rows into an Embedding). Returns the built
    model.

    >>> import numpy as np, fluxml as fl
    >>> fl.autosize((5, 3), fl.Dense(fl._, 2))
    Dense(3 => 2)  # 8 parameters
    """
    built, _ = _build(model, _input_shape(input_shape, "autosize"), dtype, single=False)
    return built


def _build(layer, shape, dtype, single=True):
    if isinstance(layer, Lazy):
        axis = getattr(layer.cls, "_feature_axis", 1)
        sizes = {int(s[axis if len(s) >= 2 else 0]) for s in
                 ((shape,) if _is_shape(shape) else shape) if _is_shape(s)}
        several = not _is_shape(shape)
        if len(sizes) != 1 or several and not getattr(layer.cls, "_inputs_of_one_size", False):
            # (Bilinear(_, 10) of two inputs of one size is built; a layer of one input is not)
            raise LayerError(f"{layer!r} takes several inputs, of shapes {shape}: fl.autosize "
                             f"infers a size from one input; write its sizes out")
        layer = layer.build(sizes.pop())
        return layer, output_shape(layer, shape, dtype, single=single)
    if isinstance(layer, Chain):
        built = []
        for key, child in layer._items():
            try:
                child, shape = _build(child, shape, dtype)
            except (ValueError, IndexError) as err:  # Chain[1]: ..., as outputsize says
                raise locate(err, "Chain", key)  # noqa: B904 - locate sets its cause
            built.append(child)
        if isinstance(layer.layers, dict):
            return Chain(**dict(zip(layer.layers, built))), shape
        return Chain(*built), shape
    if isinstance(layer, SkipConnection):  # connection(layer(x), x): a layer may be both
        inner, inner_shape = _build(layer.layers, shape, dtype)
        connection, _ = _build(layer.connection, (inner_shape, shape), dtype, single=False)
        layer = SkipConnection(inner, connection)
    elif isinstance(layer, Maxout) and _is_shape(shape) or isinstance(layer, Parallel) and (
            _is_shape(shape) or len(shape) == len(layer.layers)):
        # each takes the input, or (several inputs, a Parallel) layer i takes input i
        items = enumerate(layer.layers) if isinstance(layer, Maxout) else layer._items()
        ins = [shape] * len(layer.layers) if _is_shape(shape) else list(shape)
        built = {k: _build(child, x, dtype)[0] for (k, child), x in zip(items, ins)}
        if isinstance(layer, Maxout):
            layer = Maxout(*built.values())
        elif isinstance(layer.layers, dict):
            layer = Parallel(layer.connection, **built)
        else:
            layer = Parallel(layer.connection, *built.values())
    elif isinstance(layer, Bidirectional):
        layer = Bidirectional(_build(layer.forward, shape, dtype)[0],
                              _build(layer.backward, shape, dtype)[0], merge=layer.merge)
    elif isinstance(layer, Recurrence) and len(shape) >= 2:  # the cell takes one step (N, F)
        cell, _ = _build(layer.cell, shape[:-2] + shape[-1:], dtype, single=False)
        layer = Recurrence(cell, return_state=layer.return_state)
    elif isinstance(layer, PairwiseFusion):  # layer i takes connection(y(i-1), x(i))
        n = len(layer.layers)
        xs = (shape,) * n if _is_shape(shape) else tuple(shape)
        if len(xs) == n:
            built = [_build(layer.layers[0], xs[0], dtype)]
            for i in range(1, n):
                joined = _by_running(layer.connection, (built[-1][1], xs[i]), dtype)
                built.append(_build(layer.layers[i], joined, dtype))
            layer = PairwiseFusion(layer.connection, *(b[0] for b in built))
    return layer, output_shape(layer, shape, dtype, single=single)
