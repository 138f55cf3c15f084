"""The full derivative matrices of one array, built on the transforms of ``api.py``:
``jacobian`` (reverse mode row by row, or forward mode column by column) and ``hessian``
(forward over reverse)."""

from __future__ import annotations

import functools
import types
from collections.abc import Callable

import numpy as np

from fluxml.ad.api import _is_float, gradient, pullback
from fluxml.ad.core import DifferentiationError, Tracer, raw
from fluxml.ad.pushforward import jvp
from fluxml.ad.reached import reached
from fluxml.tree import flatten, is_array_leaf
from fluxml.treenodes import _fields


def jacobian(f: Callable, x, mode: str = "auto"):
    """The Jacobian of ``f`` at the array ``x``, shaped ``f(x).shape + x.shape``.

    ``mode="auto"`` uses reverse mode (one pullback per output element) when the output is
    no larger than the input, else forward mode (one jvp per input element); "rev" and "fwd"
    force one. A complex output takes forward mode (reverse mode, which would give the real
    part's derivative alone, refuses it). A function with state (a Dropout's generator, a
    BatchNorm's running statistics) is differentiated as it runs once, and its state moves
    once, in either mode.

    >>> import numpy as np, fluxml as fl
    >>> fl.jacobian(lambda x: x ** 2, np.array([1.0, 2.0]))
    array([[2., 0.],
           [0., 4.]])
    """
    return _jacobian(f, x, mode)[1]


def _jacobian(f, x, mode, once=None):
    """``(f(x), its Jacobian)``, each run of ``f`` through ``once`` (a :class:`_Once` of
    ``f``'s own by default)."""
    if not isinstance(mode, str):  # jacobian(f, x, y): a second argument lands on mode
        raise TypeError(f"jacobian takes one argument x (then mode='auto', 'fwd' or 'rev'); "
                        f"got a {type(mode).__name__} as the third argument. For several "
                        f"arguments, differentiate with respect to each in turn "
                        f"(fl.jacobian(lambda x: f(x, y), x)) or pass them as one array")
    if mode not in ("auto", "fwd", "rev"):
        raise ValueError(f"jacobian: mode must be 'auto', 'fwd' or 'rev'; got {mode!r}")
    _refuse_tree("jacobian", x)
    _refuse_integers("jacobian", x)
    if np.iscomplexobj(raw(x)):
        raise DifferentiationError(
            "jacobian of a complex argument is not supported (forward and reverse mode mean "
            "different things there); differentiate the real and imaginary parts as two real "
            "arrays, or use fl.jvp / fl.pullback directly")
    if once is None:
        once = _Once(f, (x,))
    x_shape = np.shape(raw(x))
    x_dtype = np.result_type(raw(x))  # (a float: _refuse_integers)
    n = int(np.prod(x_shape))
    if mode != "fwd":
        y, back = once.run(pullback, f, x)
        if not _is_float(raw(y)):
            raise TypeError(f"jacobian needs f to return a float array; it returned "
                            f"{type(y).__name__}")
        y_shape = np.shape(raw(y))
        m = int(np.prod(y_shape))
        # a complex result of a real argument: a row's pullback gives the derivative of the
        # real part alone (the cotangent of a real x is real), so only forward mode has the
        # whole complex Jacobian (reverse mode dropped the imaginary part, silently)
        complex_result = np.iscomplexobj(raw(y))
        if complex_result and mode == "rev":
            raise DifferentiationError(
                "jacobian(mode='rev') of a complex result of a real argument: reverse mode "
                "gives the derivative of the real part only; use mode='fwd' (or 'auto', "
                "which takes forward mode here), or differentiate np.real(f(x)) and "
                "np.imag(f(x)) apart")
        if not complex_result and (mode == "rev" or m <= n):
            y_dtype = np.result_type(raw(y))
            xp = _module(raw(y))  # the basis in the output's library (CuPy's on a GPU)
            rows = []
            for k in range(m):
                e = xp.zeros(m, y_dtype)
                e[k] = 1
                (g,) = back(e.reshape(y_shape))
                rows.append(xp.zeros(x_shape, x_dtype) if g is None else g)
            if not rows:
                return y, xp.zeros(y_shape + x_shape, x_dtype)
            return y, np.reshape(np.stack(rows), y_shape + x_shape)
    # forward mode, a jvp per column (after the pullback of mode "auto": from its state)
    cols = []
    xp = _module(raw(x))
    for k in range(n):
        e = xp.zeros(n, x_dtype)
        e[k] = 1
        y, t = once.run(jvp, f, (x,), (e.reshape(x_shape),))
        cols.append(t)
    if not cols:
        y = once.run(f, x)
        return y, xp.zeros(np.shape(raw(y)) + x_shape, x_dtype)
    return y, np.reshape(np.stack(cols, axis=-1), np.shape(raw(y)) + x_shape)


def _module(a):
    """NumPy, or the array library of ``a`` (CuPy): the one the basis vectors are made in
    (a NumPy seed for a CuPy output mixes devices)."""
    if type(a) is np.ndarray or not hasattr(a, "dtype") or isinstance(a, np.generic):
        return np
    # lazy: the backends sit above the engine; only another library's arrays come here
    from fluxml.backend import array_module

    return array_module(a)


class _Once:
    """Runs of a function (its pullback, jvps) that all start from the state the first
    started from: the generators and the arrays updated in place that ``watched`` (the
    user's function) reaches, set back before each later run as ``fl.checkpoint``'s
    recompute does, and left as the first run left them (under ``fl.compile``: the first
    run's draws given again). So the rows or columns of a matrix are of one function, and
    the state moves once. (Before, a forward-mode Jacobian's Dropout drew a new mask for each
    column and its BatchNorm moved its running statistics once a column, silently.)"""

    def __init__(self, watched, xs):
        # lazy: checkpoint.py sits beside this module and imports the compiler's randomness
        from fluxml.ad.checkpoint import _Replay

        # (a layer given as the function is a tree of its own: its state is watched as a
        # checkpointed layer's)
        whole = (watched if _fields(watched) is not None else None, tuple(xs), {})
        leaves, spec = flatten(whole)
        inner = _inner_reach(watched)
        if inner:  # (watched through a partial's arguments: _Replay walks those)
            watched = functools.partial(watched, *inner)
        self.replay = _Replay(watched, whole, leaves, spec, None,
                              {id(v) for v in flatten(whole, trainable=True)[0]
                               if _is_float(raw(v))})
        self.first = True

    def run(self, fn, *args):
        if not self.first:
            with self.replay:
                return fn(*args)
        self.first = False
        self.replay.mark_draws()
        out = fn(*args)
        self.replay.mark_draws()
        return out


def hessian(f: Callable, x):
    """The Hessian of the scalar ``f`` at the array ``x`` (forward over reverse), shaped
    ``x.shape + x.shape``.

    >>> import numpy as np, fluxml as fl
    >>> fl.hessian(lambda x: x[0] ** 2 * x[1], np.array([1.0, 2.0]))
    array([[4., 2.],
           [2., 0.]])
    """
    return _hessian(f, x)


def _hessian(f, x, once=None):
    _refuse_tree("hessian", x)
    _refuse_integers("hessian", x)
    grad = lambda x: gradient(f, x, zeros_for_none=True)[0]
    return _jacobian(grad, x, "fwd", once or _Once(f, (x,)))[1]


def _inner_reach(f, limit: int = 16) -> list:
    """The objects that the functions ``f`` calls by a name it closes over or a global one
    (``hessian(lambda z: loss(z), z)`` with a ``loss`` that uses the model) close over or
    name as globals, which ``reached(f)`` does not walk into; at most ``limit`` functions."""
    out, seen, stack = [], {id(f)}, [f]
    while stack and len(seen) <= limit:
        g = stack.pop()
        code = getattr(g, "__code__", None)
        if code is None:
            continue
        scope = getattr(g, "__globals__", {})
        values = [scope.get(name) for name in code.co_names]
        for cell in getattr(g, "__closure__", None) or ():
            try:
                values.append(cell.cell_contents)
            except ValueError:  # a name not assigned yet
                continue
        for v in values:
            if type(v) is types.FunctionType and id(v) not in seen:
                seen.add(id(v))
                stack.append(v)
                out += reached(v)
    return out


def _refuse_tree(name, x):
    """The full matrices are of one array: a model, list or dict gets an error saying so (a
    tree's leaves would otherwise meet a single tangent, deep inside)."""
    if not is_array_leaf(x) and type(x) is not Tracer:
        raise TypeError(f"{name} takes one array x (or a number); got {type(x).__name__}. For a "
                        f"model or another tree of arrays, take it with respect to one array "
                        f"(fl.{name}(lambda w: f(..w..), model.weight)), or use fl.pullback "
                        f"and fl.jvp, which take trees")


def _refuse_integers(name, x):
    """Integers (and booleans) carry no derivative (``fl.gradient`` gives None for them): a
    matrix of derivatives of one is refused, not filled with Nones or failed on later."""
    if not _is_float(raw(x)):
        what = f"dtype {np.result_type(raw(x))}" if hasattr(raw(x), "dtype") else \
            f"the {type(x).__name__} {x!r}"
        raise TypeError(f"{name} needs x of a float dtype (integers have no derivative here, as "
                        f"in fl.gradient); got {what}. Pass x.astype(float) or a float")


def withjacobian(f: Callable, x, mode: str = "auto"):
    """``(f(x), jacobian(f, x))`` (Zygote's and Flux's ``withjacobian``, for one array).

    >>> import numpy as np, fluxml as fl
    >>> y, jac = fl.withjacobian(lambda x: x ** 2, np.array([1.0, 3.0]))
    >>> y, jac
    (array([1., 9.]), array([[2., 0.],
           [0., 6.]]))
    """
    return _jacobian(f, x, mode)  # (f(x) of the run differentiated)


def diaghessian(f: Callable, *args) -> tuple:
    """The diagonal of the Hessian of the scalar ``f`` with respect to each argument, shaped
    as it (Zygote's and Flux's ``diaghessian``): for each ``x``, ``h[i] = d²f / dx[i]²``, the
    others held fixed (None for an integer argument, as ``fl.gradient`` gives). An array
    given at several places is one variable, as ``fl.gradient`` takes it: its entry moves at
    every place, and each place shows that diagonal. Forward over reverse, one tangent per
    entry, as ``hessian``.

    >>> import numpy as np, fluxml as fl
    >>> fl.diaghessian(lambda x, y: np.sum(x ** 3) * y, np.array([1.0, 2.0]), 5.0)
    (array([30., 60.]), np.float64(0.0))
    """
    out = []
    once = _Once(f, args)  # (the state moves once, for all the arguments)
    for i, x in enumerate(args):
        if not is_array_leaf(x) and type(x) is not Tracer and \
                any(_is_float(raw(v)) for v in flatten(x)[0]):
            _refuse_tree("diaghessian", x)  # (its float arrays came back as None, silently)
        if not _is_float(raw(x)):  # no derivative, as in fl.gradient
            out.append(None)
            continue

        tied = not isinstance(x, (int, float, complex, np.generic))  # (numbers: values)

        def f_i(xi, i=i, x=x, tied=tied):  # (the same array elsewhere moves with it)
            return f(*(xi if j == i or tied and a is x else a for j, a in enumerate(args)))

        h = _hessian(f_i, x, once)
        n = int(np.prod(np.shape(raw(x))))
        out.append(np.reshape(np.diagonal(np.reshape(h, (n, n))), np.shape(raw(x)))
                   if np.ndim(raw(x)) else np.reshape(h, ())[()])
    return tuple(out)
