"""Layers that run other layers or cells over a sequence: ``Recurrence`` (any cell, one time
step at a time, as Flux's) and ``Bidirectional`` (a recurrent layer forwards and another
backwards in time, joined on the features, padded batches included).

>>> import numpy as np, fluxml as fl
>>> fl.Recurrence(fl.RNNCell(2, 3))(np.ones((4, 5, 2), np.float32)).shape
(4, 5, 3)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fluxml._checks import flag, function
from fluxml.backend.registry import array_module
from fluxml.layers.module import LayerError, Lazy, Module, locate, need_array
from fluxml.layers.recurrent import (
    RNNCell,
    _Recurrent,
    _valid_steps,
    _zero_padding,
    checked_lengths,
)


class Recurrence(Module):
    """``Recurrence(cell; return_state=False)``

    Flux's ``Recurrence``: runs any cell over the time axis of a sequence ``(N, T, F)`` (or
    one sequence ``(T, F)``: time is the second axis from the end), calling
    ``cell(x_t, state)`` at each step, and stacks the outputs on the time axis. The cell is
    any callable returning ``(output, state)`` (every fluxml cell, or one of your own); the
    first step calls ``cell(x_0)`` when no initial state is given, so the cell picks its
    own. ``m(x, state)`` starts from ``state``; ``return_state=True`` returns
    ``(outputs, final state)``.

    >>> import numpy as np, fluxml as fl
    >>> m = fl.Recurrence(fl.RNNCell(2, 3))
    >>> m
    Recurrence(
      RNNCell(2 => 3),                      # 21 parameters
    )                   # Total: 4 arrays, 21 parameters, 84 bytes.
    >>> m(np.ones((4, 5, 2), np.float32)).shape
    (4, 5, 3)
    """

    def __init__(self, cell, *, return_state: bool = False):
        if not callable(cell):
            raise TypeError(f"Recurrence wraps a cell, a callable (x_t, state) -> (output, "
                            f"state) such as fl.LSTMCell(2, 3); got {cell!r}")
        if isinstance(cell, (_Recurrent, Bidirectional)) or \
                isinstance(cell, Lazy) and issubclass(cell.cls, (_Recurrent, Bidirectional)):
            # (it ran the whole layer on each step's (N, features) as one sequence, and
            # unpacked its outputs as (output, state): garbage of another shape, silently)
            name = type(cell).__name__ if not isinstance(cell, Lazy) else cell.cls.__name__
            raise TypeError(f"Recurrence wraps a cell (one time step), such as "
                            f"fl.{name.replace('Bidirectional', 'LSTM')}Cell(2, 3); got "
                            f"{name}, a layer over whole sequences: call it on the sequence "
                            f"itself")
        self.cell = cell
        self.return_state = flag("Recurrence", "return_state", return_state)

    def __call__(self, x, state=None):
        need_array(self, x, "a sequence (N, T, features) or (T, features)")
        self._check_sequence(x.shape)
        outputs = []
        for x_t in np.unstack(np.moveaxis(x, -2, 0)):
            try:
                out, state = self.cell(x_t) if state is None else self.cell(x_t, state)
            except (ValueError, IndexError) as err:
                raise locate(err, "Recurrence", "cell")  # noqa: B904 - locate sets its cause
            outputs.append(out)
        ys = np.stack(outputs, axis=-2)
        return (ys, state) if self.return_state else ys

    def _check_sequence(self, shape):
        if len(shape) < 2 or shape[-2] == 0:
            raise LayerError(f"{self._called()} expects a sequence (N, T, features) or "
                             f"(T, features) with at least one time step; got {tuple(shape)}")

    def _line(self) -> str:
        return "Recurrence(return_state=True)" if self.return_state else "Recurrence()"

    def _show_children(self):
        return [(None, self.cell)]


class Bidirectional(Module):
    """``Bidirectional(forward, backward=None; merge=concatenate, init=, init_recurrent=,
    rng=)``

    Runs ``forward`` over a sequence ``(N, T, F)`` and ``backward`` over it reversed in
    time, reverses the latter's outputs back and joins both on the features: ``(N, T, 2H)``
    as PyTorch's ``bidirectional=True`` (forward half first). ``backward`` defaults to a
    fresh layer of the same kind and sizes (``init``, ``init_recurrent`` and ``rng``, when
    given, are passed to it). ``merge(y_forward, y_backward)`` may be given
    (e.g. ``np.add``). ``m(x, (state_forward, state_backward))`` gives initial states.

    ``m(x, lengths=lengths)`` reads a batch of sequences padded at the end: sequence ``i``
    is ``x[i, :lengths[i]]``. The backward direction then starts at each sequence's last
    step (not at its padding), and the outputs at padded steps are 0: PyTorch's
    ``pad_packed_sequence`` of the layer run on ``pack_padded_sequence(x, lengths)``.

    >>> import numpy as np, fluxml as fl
    >>> fl.Bidirectional(fl.GRU(3, 4))(np.zeros((2, 5, 3), np.float32)).shape
    (2, 5, 8)
    >>> m = fl.Bidirectional(fl.LSTM(3, 4))
    >>> x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype(np.float32)
    >>> y = m(x, lengths=[5, 2])
    >>> bool(np.allclose(y[1, :2], m(x[1:, :2])[0], atol=1e-6)), bool(np.all(y[1, 2:] == 0))
    (True, True)
    """

    def __init__(self, forward, backward=None, *, merge: Callable | None = None,
                 init: Callable | None = None, init_recurrent: Callable | None = None,
                 rng=None):
        inits = {k: f for k, f in (("init", init), ("init_recurrent", init_recurrent))
                 if f is not None}
        # a layer with its input size still to infer (fl.LSTM(fl._, 4)): fl.autosize builds
        # both directions
        lazy = isinstance(forward, Lazy) and issubclass(forward.cls, _Recurrent)
        if not isinstance(forward, _Recurrent) and not lazy:
            raise TypeError(f"Bidirectional wraps an RNN, LSTM or GRU; got {forward!r}")
        if backward is None and lazy:
            # weights of its own
            backward = Lazy(forward.cls, forward.args, {**forward.kwargs, **inits})
        elif backward is None:
            cell = forward.cell
            n_in, hidden = cell.sizes
            extra = (cell.activation,) if isinstance(cell, RNNCell) else ()
            backward = type(forward)(n_in, hidden, *extra, bias=cell.bias_ih is not None,
                                     rng=rng, dtype=cell.weight_ih.dtype, **inits)
        # (stored as they came: a string failed at the first call, or never for merge=None)
        function("Bidirectional", "backward (a layer, or None)", backward)
        if isinstance(forward, _Recurrent) and isinstance(backward, _Recurrent) and \
                forward.cell.sizes[0] != backward.cell.sizes[0]:  # (refused at the first call)
            raise ValueError(f"Bidirectional: forward and backward read the same sequence, so "
                             f"they take the same features; got {forward._called()} and "
                             f"{backward._called()}")
        if merge is not None:
            function("Bidirectional", "merge", merge)
        if any(getattr(m, "return_state", False) or getattr(m, "kwargs", {}).get("return_state")
               for m in (forward, backward)):
            raise ValueError("Bidirectional joins its layers' outputs: give it layers with "
                             "return_state=False (the default); got "
                             f"{forward!r} and {backward!r}")
        self.forward = forward
        self.backward = backward
        self.merge = merge

    def __call__(self, x, state=None, *, lengths=None):
        s_fwd, s_bwd = (None, None) if state is None else state
        if lengths is not None:
            return self._padded(x, s_fwd, s_bwd, lengths)
        y_fwd = _located(self.forward, "forward", x, s_fwd)
        y_bwd = np.flip(_located(self.backward, "backward", np.flip(x, axis=-2), s_bwd), axis=-2)
        return self._join(y_fwd, y_bwd)

    def _join(self, y_fwd, y_bwd):
        if self.merge is not None:
            return self.merge(y_fwd, y_bwd)
        return np.concatenate([y_fwd, y_bwd], axis=-1)

    def _padded(self, x, s_fwd, s_bwd, lengths):
        """Sequences padded at the end: the backward layer reads each one reversed within its
        own length (the padding stays behind it), so its outputs at the valid steps are
        those of the unpadded sequence; padded steps give 0."""
        need_array(self, x)
        if np.ndim(x) != 3:
            raise LayerError(f"Bidirectional with lengths expects a batch of padded sequences "
                             f"(N, T, features); got shape {np.shape(x)}")
        lengths = checked_lengths("Bidirectional", lengths, x)
        valid = _valid_steps(lengths, x)
        xp = array_module(valid)  # the index arrays in the lengths' module, as x's (CuPy)
        steps = xp.arange(x.shape[1])
        rev = np.where(valid, lengths[:, None] - 1 - steps, steps)  # each reversed in place
        rows = xp.arange(x.shape[0])[:, None]
        y_fwd = _located(self.forward, "forward", x, s_fwd)
        y_bwd = _located(self.backward, "backward", x[rows, rev], s_bwd)[rows, rev]
        return _zero_padding(self._join(y_fwd, y_bwd), valid)

    def _show_children(self):
        return [("forward", self.forward), ("backward", self.backward)]


def _located(layer, name, x, state):
    try:
        return layer(x, state)
    except (ValueError, IndexError) as err:
        raise locate(err, "Bidirectional", name)  # noqa: B904 - locate sets its cause
