"""Recurrent layers: a cell (one time step) plus a short scan over time.

Weights are PyTorch's, so published weights load as they are: ``weight_ih`` ``(G*H, in)``,
``weight_hh`` ``(G*H, H)``, ``bias_ih`` and ``bias_hh`` ``(G*H,)``, with the gates in
PyTorch's order (LSTM: input, forget, cell, output; GRU: reset, update, new). A cell maps
``(x, state) -> (output, state)``; the sequence layers take ``(N, T, F)`` (or one sequence
``(T, F)``) and return every step's output ``(N, T, H)``.

>>> import numpy as np, fluxml as fl
>>> lstm = fl.LSTM(3, 5)
>>> lstm(np.zeros((2, 7, 3), np.float32)).shape
(2, 7, 5)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fluxml import init as initialisers
from fluxml import nnlib
from fluxml._checks import flag, function, shown
from fluxml.ad.core import Tracer, untraced
from fluxml.backend.mixing import check_same_device
from fluxml.backend.registry import array_module
from fluxml.layers.basic import _activation_suffix, _positive, initial
from fluxml.layers.module import LayerError, Module, need_array
from fluxml.layers.precision import match_dtype


class _Cell(Module):
    """What the three cells share: weights, the input projection, checks and printing."""

    gates = 1
    _feature_axis = -1  # what fl._ stands for in fl.autosize: the input's features

    def __init__(self, in_features: int, hidden: int, *, bias: bool = True,
                 init: Callable = initialisers.glorot_uniform,
                 init_recurrent: Callable = initialisers.orthogonal, rng=None,
                 dtype=np.float32):
        _positive(type(self).__name__, in_features=in_features, hidden=hidden)
        g = self.gates * hidden
        name = type(self).__name__
        self.weight_ih = initial(name, init, (g, in_features), rng, dtype)
        self.weight_hh = initial(name, init_recurrent, (g, hidden), rng, dtype, "init_recurrent")
        bias = flag(type(self).__name__, "bias", bias, none=True)  # (None: none, as Dense)
        self.bias_ih = np.zeros(g, dtype) if bias else None
        self.bias_hh = np.zeros(g, dtype) if bias else None

    @property
    def sizes(self) -> tuple[int, int]:
        return self.weight_ih.shape[1], self.weight_hh.shape[1]

    def project(self, x):
        """The input's part of every gate, for all time steps at once: ``x W_ih' + b``.
        For LSTM and RNN the recurrent bias is folded in here (it adds to the same sum)."""
        # one 2-d product: NumPy's stacked matmul against a transposed weight skips BLAS
        y = np.reshape(np.reshape(x, (-1, x.shape[-1])) @ self.weight_ih.T,
                       x.shape[:-1] + (self.weight_ih.shape[0],))
        if self.bias_ih is not None:
            y = y + (self.bias_ih if self._hh_bias_inside else self.bias_ih + self.bias_hh)
        return y

    _hh_bias_inside = False  # GRU keeps b_hn inside the reset gate's product

    def initial_state(self, batch_shape, dtype, like=None):
        """Zeros ``(*batch_shape, hidden)`` (a pair for LSTM), made by the array module
        (NumPy, CuPy) of the array ``like``, the input, when given."""
        return array_module(like).zeros(tuple(batch_shape) + (self.sizes[1],), dtype)

    def _check(self, x, state):
        n_in, hidden = self.sizes
        need_array(self, x)
        if x.ndim not in (1, 2) or x.shape[-1] != n_in:
            raise LayerError(f"{self._called()} expects input (N, {n_in}); got {np.shape(x)}")
        x = match_dtype(self, x, self.weight_ih.dtype)
        if state is None:
            state = self.initial_state(x.shape[:-1], x.dtype, x)
        return x, self._check_state(state, x.shape[:-1], x.dtype)

    def _check_state(self, state, batch, dtype, line=None):
        """The state, checked against the batch axes and converted to ``dtype``. A state of
        one vector ``(hidden,)`` for a batch is every sequence's (as Flux's: a trained
        initial state ``h0``; its gradient the sum over the batch). Errors name ``line``
        (the layer the user built around this cell), or the cell."""
        line = line or self._called()
        want = tuple(batch) + (self.sizes[1],)
        if isinstance(state, tuple) and self.gates != 4:  # (an LSTM's (h, c): broadcast
            raise LayerError(f"{line} expects its state as one array h of shape "  # on)
                             f"{want}; got a tuple of {len(state)} (only an LSTM's state is a "
                             "pair (h, c))")
        if batch:
            state = _map_state(state, lambda s: np.broadcast_to(s, want)
                               if np.shape(s) == want[-1:] else s)
        parts = state if isinstance(state, tuple) else (state,)
        if any(np.shape(s) != want for s in parts):
            got = [str(np.shape(s)) if hasattr(s, "shape") or isinstance(s, (list, tuple))
                   else shown(s) for s in parts]  # (a str or None has shape ())
            raise LayerError(f"{line} expects a state of shape {want}"
                             f"{' (h, c)' if isinstance(state, tuple) else ''}; got "
                             f"{got[0] if len(got) == 1 else '(' + ', '.join(got) + ')'}")
        return _map_state(state, lambda s: _state_as(line, s, dtype))

    def __call__(self, x, state=None):
        x, state = self._check(x, state)
        return self.step(self.project(x), state)

    def _output_shape(self, shape):
        """``(output shape, state shape)`` for input ``(N, in)`` (or ``(in,)``)."""
        n_in, hidden = self.sizes
        if len(shape) not in (1, 2) or shape[-1] != n_in:
            raise LayerError(f"{self._called()} expects input (N, {n_in}); got {tuple(shape)}")
        out = tuple(shape[:-1]) + (hidden,)
        return out, ((out, out) if self.gates == 4 else out)

    def sequence(self, x, state, last=None):
        """``(outputs (N, T, H), final state)`` over a checked sequence ``x (N, T, in)``;
        with ``last`` (``(N,)`` step indices), the state after step ``last[i]`` of sequence
        ``i``."""
        ys, state = scan(self, self.project(x), state)
        return ys, state if last is None else ys[array_module(last).arange(ys.shape[0]), last]

    def _line(self) -> str:
        n_in, hidden = self.sizes
        bias = "" if self.bias_ih is not None else ", bias=False"
        return f"{type(self).__name__}({n_in} => {hidden}{bias})"


class RNNCell(_Cell):
    """``RNNCell(in_features, hidden, activation=tanh; bias=True, init=, init_recurrent=,
    rng=)``

    ``h' = activation(x W_ih' + b_ih + h W_hh' + b_hh)``. Called as ``cell(x, h)`` with
    ``x`` ``(N, in)`` and ``h`` ``(N, hidden)`` (zeros when left out); returns ``(h', h')``
    (output and new state).

    >>> import numpy as np, fluxml as fl
    >>> out, h = fl.RNNCell(2, 3)(np.ones((4, 2), np.float32))
    >>> out.shape
    (4, 3)
    """

    def __init__(self, in_features: int, hidden: int, activation: Callable = np.tanh, **kw):
        super().__init__(in_features, hidden, **kw)
        self.activation = function(type(self).__name__, "activation", activation)

    def step(self, xw, h):
        """One step from the projected input ``xw``."""
        h = self.activation(xw + h @ self.weight_hh.T)
        return h, h

    def _line(self) -> str:
        return super()._line()[:-1] + _activation_suffix(self.activation) + ")" \
            if self.activation is not np.tanh else super()._line()


class LSTMCell(_Cell):
    """``LSTMCell(in_features, hidden; bias=True, init=, init_recurrent=, rng=)``

    With gates ``i, f, g, o`` (PyTorch's order) of ``x W_ih' + b_ih + h W_hh' + b_hh``:
    ``c' = σ(f) c + σ(i) tanh(g)``, ``h' = σ(o) tanh(c')``. Called as ``cell(x, (h, c))``;
    returns ``(h', (h', c'))``.

    >>> import numpy as np, fluxml as fl
    >>> out, (h, c) = fl.LSTMCell(2, 3)(np.ones((4, 2), np.float32))
    >>> c.shape
    (4, 3)
    """

    gates = 4

    def initial_state(self, batch_shape, dtype, like=None):
        h = super().initial_state(batch_shape, dtype, like)
        return h, np.zeros_like(h)

    def _check_state(self, state, batch, dtype, line=None):
        if not isinstance(state, tuple) or len(state) != 2:
            raise LayerError(f"{line or self._called()} expects its state as a tuple (h, c); "
                             f"got {type(state).__name__}")
        return super()._check_state(state, batch, dtype, line)

    def step(self, xw, state):
        h, c = nnlib.lstm_step(xw, *state, self.weight_hh)
        return h, (h, c)

    def sequence(self, x, state, last=None):
        hs, h, c = nnlib.lstm_sequence(x, *state, self.weight_ih, self.weight_hh, self.bias_ih,
                                       self.bias_hh, last=last)
        return hs, (h, c)


class GRUCell(_Cell):
    """``GRUCell(in_features, hidden; bias=True, init=, init_recurrent=, rng=)``

    PyTorch's GRU: ``r = σ(x W_ir' + b_ir + h W_hr' + b_hr)``, ``z`` likewise,
    ``n = tanh(x W_in' + b_in + r (h W_hn' + b_hn))``, ``h' = (1 - z) n + z h``. Called as
    ``cell(x, h)``; returns ``(h', h')``.

    >>> import numpy as np, fluxml as fl
    >>> out, h = fl.GRUCell(2, 3)(np.ones((4, 2), np.float32))
    >>> h.shape
    (4, 3)
    """

    gates = 3
    _hh_bias_inside = True

    def step(self, xw, h):
        h = nnlib.gru_step(xw, h, self.weight_hh, self.bias_hh)
        return h, h

    def sequence(self, x, state, last=None):
        hs, h = nnlib.gru_sequence(x, state, self.weight_ih, self.weight_hh, self.bias_ih,
                                   self.bias_hh, last=last)
        return hs, h


class GRUv3Cell(_Cell):
    """``GRUv3Cell(in_features, hidden; bias=True, init=, init_recurrent=, rng=)``

    Flux's ``GRUv3Cell``: the GRU of v3 of Cho et al.'s paper, whose candidate applies its
    recurrent weight after the reset gate: ``r = σ(x W_ir' + b_ir + h W_hr' + b_hr)``,
    ``z`` likewise, ``n = tanh(x W_in' + b_in + (r h) W_hn' + b_hn)``,
    ``h' = (1 - z) n + z h``. The weights are shaped as :class:`GRUCell`'s (gates r, z, n):
    the third block of ``weight_hh`` is ``W_hn``. (Flux keeps that block as a separate
    ``Wh_h̃`` and a third block of ``Wh`` it never reads: from Flux's weights, ``weight_hh``
    is ``Wh``'s first two blocks over ``Wh_h̃``, ``bias_ih`` is ``b``, ``bias_hh`` zeros.)
    Called as ``cell(x, h)``; returns ``(h', h')``.

    >>> import numpy as np, fluxml as fl
    >>> cell = fl.GRUv3Cell(2, 3)
    >>> cell
    GRUv3Cell(2 => 3)  # 63 parameters
    >>> out, h = cell(np.ones((4, 2), np.float32))
    >>> h.shape
    (4, 3)
    """

    gates = 3

    def step(self, xw, h):
        """One step from the projected input ``xw = x W_ih' + b_ih + b_hh`` (all of
        ``b_hh`` is outside the reset gate's product here, so it folds in)."""
        n = h.shape[-1]
        w = self.weight_hh
        rz = nnlib.sigmoid(xw[..., :2 * n] + h @ w[:2 * n].T)
        r, z = rz[..., :n], rz[..., n:]
        cand = np.tanh(xw[..., 2 * n:] + (r * h) @ w[2 * n:].T)
        h = cand + z * (h - cand)
        return h, h


def scan(cell, xs, state):
    """Run ``cell.step`` over the time axis 1 of the projected inputs ``xs`` ``(N, T, G)``:
    ``(outputs (N, T, H), final state)`` (Flux's ``scan``). LSTM and GRU run their whole
    sequence in one nnlib kernel instead (``cell.sequence``); RNN, with any activation,
    scans."""
    outputs = []
    for xw in np.unstack(np.moveaxis(xs, 1, 0)):
        out, state = cell.step(xw, state)
        outputs.append(out)
    return np.stack(outputs, axis=1), state


class _Recurrent(Module):
    """A cell run over a sequence."""

    cell_type: type = _Cell
    _feature_axis = -1

    def __init__(self, in_features: int, hidden: int, *args, return_state: bool = False,
                 **kw):
        name, cell = type(self).__name__, self.cell_type.__name__
        try:
            self.cell = self.cell_type(in_features, hidden, *args, **kw)
        except (TypeError, ValueError) as err:  # name the layer the user built, not its cell
            text = str(err)
            if text.startswith(("_Cell.__init__()", f"{cell}.__init__()")):  # Python's own,
                # naming the private _Cell.__init__ and counting self
                usage = (type(self).__doc__ or "").strip().split("\n")[0].strip("`")
                what = text.split("() ", 1)[1] if "unexpected keyword" in text else \
                    f"got {2 + len(args)} positional arguments"
                raise TypeError(f"{name}: {what}; it takes {usage}") from None
            if text.startswith(cell + ":"):
                raise type(err)(name + text[len(cell):]) from None
            raise
        self.return_state = flag(type(self).__name__, "return_state", return_state)

    def __call__(self, x, state=None, *, lengths=None):
        cell = self.cell
        n_in, hidden = cell.sizes
        need_array(self, x)
        if x.ndim not in (2, 3) or x.shape[-1] != n_in:
            raise LayerError(f"{self._called()} expects a sequence (N, T, {n_in}) or (T, {n_in}); "
                             f"got {np.shape(x)}")
        if x.shape[-2] == 0:
            raise LayerError(f"{self._called()} expects at least one time step; got {x.shape}")
        x = match_dtype(self, x, cell.weight_ih.dtype)
        single = x.ndim == 2
        if lengths is not None:
            if single:
                raise LayerError(f"{self._called()} with lengths expects a batch of padded "
                                 f"sequences (N, T, {n_in}); got shape {np.shape(x)}")
            lengths = checked_lengths(self._called(), lengths, x)
        if single:
            x = x[None]
            state = None if state is None else _map_state(state, lambda s: s[None])
        if state is None:
            state = cell.initial_state(x.shape[:1], x.dtype, x)
        state = cell._check_state(state, x.shape[:1], x.dtype, self._called())
        if lengths is None:
            ys, state = cell.sequence(x, state)
        else:  # the state after each sequence's last step; its padded steps give 0
            ys, state = cell.sequence(x, state, last=lengths - 1)
            ys = _zero_padding(ys, _valid_steps(lengths, x))
        if single:
            ys, state = ys[0], _map_state(state, lambda s: s[0])
        return (ys, state) if self.return_state else ys

    def _output_shape(self, shape):
        n_in, hidden = self.cell.sizes
        if len(shape) not in (2, 3) or shape[-1] != n_in:
            raise LayerError(f"{self._called()} expects a sequence (N, T, {n_in}) or "
                             f"(T, {n_in}); got {tuple(shape)}")
        if shape[-2] == 0:
            raise LayerError(f"{self._called()} expects at least one time step; got "
                             f"{tuple(shape)}")
        ys = tuple(shape[:-1]) + (hidden,)
        if not self.return_state:
            return ys
        h = tuple(shape[:-2]) + (hidden,)  # the final state: (h, c) for an LSTM
        return ys, ((h, h) if self.cell.gates == 4 else h)

    def _line(self) -> str:
        line = self.cell._line().replace("Cell(", "(", 1)
        return line[:-1] + ", return_state=True)" if self.return_state else line

    def _show_children(self):
        return None


def _state_as(line: str, s, dtype):
    """An initial state in the input's dtype. A state is a starting value, not data: one of
    another real dtype (``np.zeros`` gives float64, ``np.zeros(.., int)`` integers) is
    converted without the warning that input of another precision gets."""
    sdtype = getattr(s, "dtype", None)
    if sdtype is None:
        s = np.asarray(s)
        sdtype = s.dtype
    if sdtype == dtype:
        return s
    if sdtype.kind not in "biuf":
        raise LayerError(f"{line} expects a real initial state; got {sdtype}")
    return s.astype(dtype)


def _map_state(state, f):
    return tuple(f(s) for s in state) if isinstance(state, tuple) else f(state)


class RNN(_Recurrent):
    """``RNN(in_features, hidden, activation=tanh; return_state=False, bias=, init=, rng=)``

    An :class:`RNNCell` over a sequence ``(N, T, in)``: every step's ``h`` ``(N, T, hidden)``.
    ``m(x, h0)`` starts from ``h0`` ``(N, hidden)``, or ``(hidden,)`` for every sequence
    (zeros otherwise); ``return_state=True`` returns
    ``(outputs, final state)``; ``m(x, lengths=)`` reads a padded batch, as :class:`LSTM`.

    >>> import numpy as np, fluxml as fl
    >>> fl.RNN(3, 4)(np.zeros((2, 5, 3), np.float32)).shape
    (2, 5, 4)
    """

    cell_type = RNNCell


class LSTM(_Recurrent):
    """``LSTM(in_features, hidden; return_state=False, bias=, init=, init_recurrent=, rng=)``

    An :class:`LSTMCell` over a sequence ``(N, T, in)``: every step's ``h``
    ``(N, T, hidden)``; ``m(x, (h0, c0))`` starts from a given state.

    ``m(x, lengths=lengths)`` (as every recurrent layer) reads a batch padded at the end,
    sequence ``i`` being ``x[i, :lengths[i]]``: the outputs at padded steps are 0 and the
    final state is each sequence's after its last step (PyTorch's packed sequence gives
    both; without lengths the state has run on through the padding). Under ``fl.compile``
    pass lengths as an integer array: a list is part of the signature, traced again for
    each new list.

    >>> import numpy as np, fluxml as fl
    >>> ys, (h, c) = fl.LSTM(3, 4, return_state=True)(np.zeros((2, 5, 3), np.float32))
    >>> ys.shape, c.shape
    ((2, 5, 4), (2, 4))
    >>> m = fl.LSTM(3, 4, return_state=True)
    >>> x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype(np.float32)
    >>> ys, (h, c) = m(x, lengths=[5, 2])
    >>> bool(np.allclose(c[1], m(x[1, :2])[1][1])), bool(np.all(ys[1, 2:] == 0))
    (True, True)
    """

    cell_type = LSTMCell


class GRU(_Recurrent):
    """``GRU(in_features, hidden; return_state=False, bias=, init=, init_recurrent=, rng=)``

    A :class:`GRUCell` over a sequence ``(N, T, in)``: every step's ``h`` ``(N, T, hidden)``.

    >>> import numpy as np, fluxml as fl
    >>> fl.GRU(3, 4)(np.zeros((5, 3), np.float32)).shape  # one sequence (T, in), no batch
    (5, 4)
    """

    cell_type = GRUCell


class GRUv3(_Recurrent):
    """``GRUv3(in_features, hidden; return_state=False, bias=, init=, init_recurrent=, rng=)``

    A :class:`GRUv3Cell` over a sequence ``(N, T, in)``: every step's ``h``
    ``(N, T, hidden)``. (Flux's variant, not a newer GRU: :class:`GRU` is PyTorch's.)

    >>> import numpy as np, fluxml as fl
    >>> fl.GRUv3(3, 4)(np.zeros((2, 5, 3), np.float32)).shape
    (2, 5, 4)
    """

    cell_type = GRUv3Cell


def checked_lengths(line, lengths, x):
    """``lengths`` of a padded batch ``x`` ``(N, T, ...)``: ``N`` integers in ``1 .. T``, as
    an array of ``x``'s module (a list goes to a CuPy ``x``'s device), an error naming the
    layer ``line`` otherwise."""
    shape = x.shape
    n = shape[0]
    if type(lengths) is not Tracer:  # (a traced one, inside fl.compile, is checked below)
        check_same_device((x, lengths), f"{line} given x and lengths")
        lengths = array_module(x).asarray(lengths)  # (a list goes to x's device)
    if lengths.shape != (n,) or lengths.dtype.kind not in "iu":
        raise LayerError(f"{line} expects lengths as {n} integers, one per sequence of x "
                         f"{tuple(shape)}; got {lengths.dtype} of shape {lengths.shape}")
    # checked where the values are: inside fl.compile, on every run of the program
    return untraced(_in_sequence, (lengths, shape[1], line))


def _in_sequence(lengths, t, line):
    """``lengths``, after checking that each lies in ``1 .. t``."""
    if lengths.size and (int(lengths.min()) < 1 or int(lengths.max()) > t):
        bad = int(lengths.min()) if int(lengths.min()) < 1 else int(lengths.max())
        raise LayerError(f"{line}: each length must lie in 1 .. {t} (the padded "
                         f"sequences' steps); got {bad}")
    return lengths


def _valid_steps(lengths, x):
    """``(N, T)`` booleans: is step ``t`` within sequence ``i``'s length? Made by the
    lengths' array module (``x``'s, see checked_lengths), so that it masks a CuPy ``x``."""
    return array_module(lengths).arange(x.shape[1]) < lengths[:, None]


def _zero_padding(y, valid):
    """``y (N, T, H)`` with the steps not ``valid`` set to 0."""
    return np.where(valid[..., None], y, array_module(valid).zeros((), y.dtype))
