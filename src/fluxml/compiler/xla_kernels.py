"""JAX versions of the engine's kernels that are more than one ``jnp`` call: convolution and
its two transposes, max pooling and its gradient, window sums, softmax, normalisation, einsum,
attention, the Fourier transforms; the recurrent cells and sequences are in
``xla_recurrent.py``.

Each takes the arguments and parameters of its engine primitive (``fluxml.nnlib``) and
returns what the NumPy kernel returns, in the same layout (``NCHW``, weights ``(O, I, *k)``,
the LSTM's ``(hs, cs, acts)``), so that the equations around it need no change. They are
traced by ``jax.jit`` inside the code the ``xla`` back end generates (``xla_backend.py``).

>>> import numpy as np
>>> x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
>>> np.asarray(maxpool(x, kernel=(2, 2), stride=(2, 2), pads=((0, 0), (0, 0)),
...                    dilation=(1, 1)))
array([[[[ 5.,  7.],
         [13., 15.]]]], dtype=float32)
"""

from __future__ import annotations

import importlib
import math
import threading

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from fluxml.nnlib.scatter import empty_extremum

# --- run-time checks: computed by XLA, judged in Python after the call --------------------------

# ``(value, judge)`` pairs appended while ``jax.jit`` traces a program: the back end returns
# each value as an extra output and calls ``judge(value)`` (which raises on a bad value)
# before it writes anything into the caller's arrays. One list per thread: XLA programs are
# traced in the background (``fl.compile``'s tiered start) while the caller's thread may
# lower or trace another.
_LOCAL = threading.local()


def run_time_checks() -> list:
    """The run-time checks met so far by the trace in progress in this thread."""
    checks = getattr(_LOCAL, "checks", None)
    if checks is None:
        checks = _LOCAL.checks = []
    return checks


def python_float(x):
    """``float(x)``: the gradient with respect to a Python float, as the program hands it on
    (weak in NumPy's promotion; ``xla_backend._numpy_casts`` casts it where it meets arrays)."""
    return jnp.asarray(x, jnp.float64)


def python_int(func, source, result_kind, *operands):
    """Python's arithmetic ``func`` (``operator.pow`` ...) on traced Python ints
    (``ir.PYTHON_INT_OPERATORS``): in int64, exact while the result fits (a float result,
    ``n / 2`` or ``n ** -1``, in float64). XLA has no wider int: a result beyond int64
    (``2 ** 64``) is checked for on every run, through its float64 twin, and refused
    rather than wrapped round (NumPy's back end computes it exactly, as Python does)."""
    if result_kind == "f":
        return func(*(jnp.asarray(a, jnp.float64) for a in operands))
    value = func(*(jnp.asarray(a, jnp.int64) for a in operands))
    twin = func(*(jnp.asarray(a, jnp.float64) for a in operands))
    run_time_checks().append((twin, lambda v: _fits_int64(float(v), source)))
    return value


def _fits_int64(v, source):
    if not -2.0 ** 63 <= v < 2.0 ** 63:
        raise OverflowError(
            f"fl.compile(backend='xla'): {source} of traced Python ints is about {v:.6g}, "
            "beyond XLA's int64 (Python's ints have no limit); use backend='numpy' for this "
            "function")


def python_complex(x):
    """``complex(x)``: as :func:`python_float`."""
    return jnp.asarray(x, jnp.complex128)


def check_labels(labels, n, name):
    """``fluxml.losses.common._check_labels``: labels in ``[0, n)``, checked on every run (the
    smallest and largest label come back; the loss's own check judges them)."""
    # lazy: the losses sit above the compiler; only a program with labels needs their check
    from fluxml.losses.common import _check_labels

    return _index_range(labels, lambda v: _check_labels(v, n, name))


def in_labels(pos, n):
    """``fluxml.data.utils._in_labels``: ``fl.onehotbatch``'s values in ``[0, n)``, checked on
    every run as :func:`check_labels` checks a loss's labels."""
    # lazy: the data utilities sit above the compiler; only a program that encodes needs this
    from fluxml.data.utils import _in_labels

    return _index_range(pos, lambda v: _in_labels(v, n))


def check_finite_norm(nrm, shape, p):
    """``fluxml.optimise.composite._finite_norm`` (ClipNorm's ``throw``): the norm comes back
    and ClipNorm's own check judges it, on every run."""
    # lazy: the optimisers sit above the compiler; only a program with ClipNorm needs this
    from fluxml.optimise.composite import _finite_norm

    run_time_checks().append((nrm, lambda v: _finite_norm(np.asarray(v), shape, p)))
    return nrm


def nonsingular(x):
    """``fluxml.ad.rules.decompositions._nonsingular`` (slogdet's derivative): the signs come
    back and its check judges them, on every run."""
    return judged("fluxml.ad.rules.decompositions._nonzero_signs")(jnp.linalg.slogdet(x)[0])


def draw_in_control_flow(*args, **kwargs):
    """A random draw (``fl.dropout``, ``fluxml.ad.core.draw``) inside a branch or loop body
    (``trace._Drawn``): the wrapper draws a program's random numbers with NumPy
    before XLA runs it, which a branch taken at run time or a loop's steps cannot do."""
    # lazy: trace.py is light, but the kernels module need not load it to be imported
    from fluxml.compiler.trace import CompileError

    raise CompileError(
        "fl.compile(backend='xla'): a random draw (fl.dropout, an rng call through "
        "fluxml.ad.core.draw) inside fl.cond, fl.while_loop or fl.scan is not supported on "
        "XLA: random numbers are drawn with NumPy before XLA runs the program, not at each "
        "step of a loop or in the branch taken. Use backend='numpy' for this function, or "
        "draw the numbers outside and pass them in as operands (fl.cond) or as xs "
        "(fl.scan).")


def judged(check: str):
    """The kernel of the check ``check`` (a qualified name: a function of one array, and of
    constants of the program, that raises or warns on a bad value, else returns True): the
    value comes back and the check judges it, on every run."""
    module, name = check.rsplit(".", 1)

    def kernel(value, *constants):
        # lazy: the rules sit below the compiler, and only a program with the check needs them
        judge = getattr(importlib.import_module(module), name)
        run_time_checks().append((value, lambda v: judge(np.asarray(v), *constants)))
        return jnp.asarray(True)

    kernel.__name__ = f"judged_{name.lstrip('_')}"
    return kernel


def _index_range(idx, check):
    """Record ``idx``'s smallest and largest entry, judged by ``check`` after every run (an
    index check whose error must name the caller's layer and line)."""
    if idx.size:
        run_time_checks().append((jnp.stack([jnp.min(idx), jnp.max(idx)]),
                                  lambda v: check(np.asarray(v))))
    return idx


def in_vocabulary(idx, vocab, line):
    """``fluxml.layers.embedding._in_vocabulary``: an embedding's indices in ``[0, vocab)``,
    checked on every run as :func:`check_labels` checks labels."""
    # lazy: the layers sit above the compiler; only a program with an embedding needs this
    from fluxml.layers.embedding import _in_vocabulary

    return _index_range(idx, lambda v: _in_vocabulary(v, vocab, line))


def in_sequence(lengths, t, line):
    """``fluxml.layers.recurrent._in_sequence``: a recurrent layer's lengths in ``[1, t]``,
    checked on every run as :func:`check_labels` checks labels."""
    # lazy: as above
    from fluxml.layers.recurrent import _in_sequence

    return _index_range(lengths, lambda v: _in_sequence(v, t, line))


def check_rows(idx, shape):
    """``fluxml.nnlib.embedding._check_rows``: ``fl.embedding``'s indices checked likewise."""
    # lazy: as above (nnlib sits above the compiler's kernels too)
    from fluxml.nnlib.embedding import _check_rows

    return _index_range(idx, lambda v: _check_rows(v, shape))


# --- convolution: one XLA convolution; its transposes are JAX's transposes of it ---------------

_SPATIAL = {1: "H", 2: "HW", 3: "DHW"}


def _dimensions(d):
    s = _SPATIAL[d]
    return ("NC" + s, "OI" + s, "NC" + s)


def conv(x, w, *, stride, pads, dilation, groups):
    """``fluxml.nnlib.conv``'s primitive: the cross-correlation of ``x`` ``(N, C, *s)`` with
    ``w`` ``(O, C / groups, *k)``."""
    return lax.conv_general_dilated(
        x, w, window_strides=tuple(stride), padding=[tuple(p) for p in pads],
        rhs_dilation=tuple(dilation), feature_group_count=groups,
        dimension_numbers=_dimensions(x.ndim - 2))


def conv_data(g, w, *, x_shape, stride, pads, dilation, groups):
    """The transpose of :func:`conv` in ``x`` (the input gradient; the transposed
    convolution), applied to ``g``."""
    geo = {"stride": stride, "pads": pads, "dilation": dilation, "groups": groups}
    dtype = jnp.result_type(g, w)
    (out,) = jax.linear_transpose(lambda x: conv(x, w.astype(dtype), **geo),
                                  jax.ShapeDtypeStruct(tuple(x_shape), dtype))(g.astype(dtype))
    return out


def conv_filter(x, g, *, w_shape, stride, pads, dilation, groups):
    """The transpose of :func:`conv` in ``w`` (the weight gradient), applied to ``g``."""
    geo = {"stride": stride, "pads": pads, "dilation": dilation, "groups": groups}
    dtype = jnp.result_type(x, g)
    (out,) = jax.linear_transpose(lambda w: conv(x.astype(dtype), w, **geo),
                                  jax.ShapeDtypeStruct(tuple(w_shape), dtype))(g.astype(dtype))
    return out


# --- pooling -----------------------------------------------------------------------------------

def _lowest(dtype):
    """Max pooling's padding, as a NumPy scalar: a constant that lets JAX see ``lax.max``
    from it as the max monoid (whose reduction it can differentiate)."""
    dtype = np.dtype(dtype)
    return np.array(-np.inf if dtype.kind in "fc" else np.iinfo(dtype).min, dtype)[()]


def _window(kernel, stride, pads, dilation):
    return {"window_dimensions": (1, 1) + tuple(kernel),
            "window_strides": (1, 1) + tuple(stride),
            "padding": ((0, 0), (0, 0)) + tuple(tuple(p) for p in pads),
            "window_dilation": (1, 1) + tuple(dilation)}


def maxpool(x, *, kernel, stride, pads, dilation):
    """The maximum of each window (padding never wins: it is the lowest value)."""
    return lax.reduce_window(x, _lowest(x.dtype), lax.max,
                             **_window(kernel, stride, pads, dilation))


def maxpool_grad(x, g, *, kernel, stride, pads, dilation):
    """``g`` routed to the first maximum of each window of ``x`` (XLA's select-and-scatter,
    whose ``>=`` selection keeps the earliest of tied entries, as the engine's positions)."""
    geo = {"kernel": kernel, "stride": stride, "pads": pads, "dilation": dilation}
    if any(d != 1 for d in dilation):  # JAX has no select-and-scatter with dilated windows
        positions = maxpool_positions(x, maxpool(x, **geo), **geo)
        return pool_scatter(g.astype(x.dtype), positions, shape=x.shape, unique=False)
    _, pullback = jax.vjp(lambda v: maxpool(v, **geo), x)
    (out,) = pullback(g.astype(x.dtype))
    return out


def maxpool_positions(x, best, *, kernel, stride, pads, dilation):
    """``fluxml.nnlib.pool._maxpool_positions``: the flat position in ``x`` of the first
    maximum of each window, one strided slice of the padded input per kernel entry."""
    d = len(kernel)
    xpad = jnp.pad(x, ((0, 0), (0, 0)) + tuple(tuple(p) for p in pads),
                   constant_values=_lowest(x.dtype))
    out = best.shape[2:]
    steps = [math.prod(x.shape[3 + i:]) for i in range(d)]
    found = jnp.zeros(best.shape, bool)
    shift = jnp.zeros(best.shape, jnp.int64)
    for offset in np.ndindex(*kernel):
        start = (0, 0) + tuple(k * dl for k, dl in zip(offset, dilation))
        limit = best.shape[:2] + tuple(s + (o - 1) * st + 1
                                       for s, o, st in zip(start[2:], out, stride))
        window = lax.slice(xpad, start, limit, (1, 1) + tuple(stride))
        first = (window == best) & ~found
        step = sum(k * dl * st for k, dl, st in zip(offset, dilation, steps))
        if step:
            shift = shift + first * step
        found = found | first
    n, c = x.shape[:2]
    start = jnp.arange(n * c).reshape((n, c) + (1,) * d) * math.prod(x.shape[2:])
    for i, (o, s, (lo, _), st) in enumerate(zip(out, stride, pads, steps)):
        start = start + ((jnp.arange(o) * s - lo) * st).reshape((o,) + (1,) * (d - 1 - i))
    return start + shift


def pool_scatter(g, idx, *, shape, unique):
    """``g`` added at the flat positions ``idx`` of zeros shaped ``shape``."""
    flat = jnp.zeros(math.prod(shape), g.dtype)
    at = flat.at[idx.reshape(-1)]
    flat = at.set(g.reshape(-1)) if unique else at.add(g.reshape(-1))
    return flat.reshape(shape)


def pool_gather(x, idx, *, unique):
    """``x`` read at the flat positions ``idx``."""
    return x.reshape(-1)[idx]


def window_sum(x, *, kernel, stride, pads, dilation):
    """The sum of each window (padding counts as zeros)."""
    return lax.reduce_window(x, np.array(0, x.dtype)[()], lax.add,
                             **_window(kernel, stride, pads, dilation))


def window_sum_t(g, *, x_shape, kernel, stride, pads, dilation):
    """The transpose of :func:`window_sum`: each output spread back over its window."""
    geo = {"kernel": kernel, "stride": stride, "pads": pads, "dilation": dilation}
    (out,) = jax.linear_transpose(lambda x: window_sum(x, **geo),
                                  jax.ShapeDtypeStruct(tuple(x_shape), g.dtype))(g)
    return out


# --- softmax and friends ----------------------------------------------------------------------

def _shifted(x, axis):
    """As nnlib.softmax's: a row whose maximum is +inf is 0 at its +inf entries, -inf
    elsewhere (the limit's softmax)."""
    if x.size == 0:
        return x
    m = jnp.max(x, axis=axis, keepdims=True)
    s = x - jnp.where(jnp.isfinite(m), m, 0)
    return jnp.where(m == jnp.inf, jnp.where(x == jnp.inf, 0, -jnp.inf).astype(s.dtype), s)


def softmax(x, *, axis):
    e = jnp.exp(_shifted(x, axis))
    return e / jnp.sum(e, axis=axis, keepdims=True)


def logsoftmax(x, *, axis):
    s = _shifted(x, axis)
    return s - jnp.log(jnp.sum(jnp.exp(s), axis=axis, keepdims=True))


def logsumexp(x, *, axis, keepdims):
    m = jnp.max(x, axis=axis, keepdims=True) if x.size else 0
    m = jnp.where(jnp.isfinite(m), m, 0)
    s = jnp.log(jnp.sum(jnp.exp(x - m), axis=axis, keepdims=True)) + m
    return s if keepdims else jnp.squeeze(s, axis=axis)


def sigmoid(x):
    return 1 / (1 + jnp.exp(-x))


# --- Fourier transforms: fluxml.ad.rules.fft's primitives ---------------------------------------

def fft_c2c(x, *, axes, norm, inverse):
    """``C2C``: the n-d complex transform over ``axes`` (``ifftn`` where ``inverse``)."""
    return (jnp.fft.ifftn if inverse else jnp.fft.fftn)(x, axes=axes, norm=norm)


def rfft(x, *, axis, norm):
    return jnp.fft.rfft(x, axis=axis, norm=norm)


def irfft(a, *, n, axis, norm):
    return jnp.fft.irfft(a, n=n, axis=axis, norm=norm)


def sinc(x, *, k):
    """``fluxml.ad.rules.elementwise_more``'s ``SINC``: the k-th derivative of sinc, by the
    NumPy rule's own recurrence and series, on ``jax.numpy``."""
    # lazy: the engine's rules sit below the compiler, and only a program with sinc needs it
    from fluxml.ad.rules.elementwise_more import _sinc_derivative

    return _sinc_derivative(x, k, jnp)


def slogdet(x):
    """``np.linalg.slogdet``'s pair (sign, log |det|)."""
    sign, logdet = jnp.linalg.slogdet(x)
    return sign, logdet


def modf_fraction(x):
    return jnp.modf(x)[0]


def floor_divide(x, y):
    """``np.floor_divide``: on integers (and bools) NumPy's quotient by 0 is 0 (with a
    warning), where XLA's is -1 or -2 (:func:`_zero_where_divisor_is`). Floats are
    ``jnp.floor_divide``'s, as they were (inf, NaN as NumPy's)."""
    x, y = _operand(x), _operand(y)
    return _zero_where_divisor_is(jnp.floor_divide(x, y), y)


def remainder(x, y):
    """``np.remainder``: on integers (and bools) NumPy's remainder by 0 is 0, whatever XLA's
    gives (:func:`_zero_where_divisor_is`). Floats are ``jnp.remainder``'s (NaN, as NumPy's)."""
    x, y = _operand(x), _operand(y)
    return _zero_where_divisor_is(jnp.remainder(x, y), y)


def _zero_where_divisor_is(result, y):
    """An integer ``result`` of a division by ``y``, 0 where ``y`` is 0 (NumPy's); a float
    one as it is."""
    if jnp.issubdtype(result.dtype, jnp.inexact):
        return result
    return jnp.where(jnp.asarray(y) == 0, jnp.zeros((), result.dtype), result)


def _operand(a):
    """A list where NumPy reads an array (jnp's ufuncs refuse one) made an array."""
    return jnp.asarray(np.asarray(a)) if type(a) in (list, tuple) else a


def divmod_(x, y):
    """``np.divmod``: :func:`floor_divide` and :func:`remainder`."""
    return floor_divide(x, y), remainder(x, y)


# --- activations: the formulas of fluxml.nnlib.activations -------------------------------------

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_A = 0.044715


def swish(x):
    return x * sigmoid(x)


def softplus(x):
    return jnp.log1p(jnp.exp(-jnp.abs(x))) + jnp.maximum(x, 0)


def mish(x):
    return x * jnp.tanh(softplus(x))


def lisht(x):
    return x * jnp.tanh(x)


def mish_tail(x):  # x t'(x), t = tanh(softplus(x)): a term of mish's slope
    t = jnp.tanh(softplus(x))
    return x * ((1 - t * t) * sigmoid(x))


def lisht_tail(x):  # x (1 - tanh(x)^2): a term of lisht's slope
    t = jnp.tanh(x)
    return x * (1 - t * t)


def elu(x, *, alpha, beta, scale):
    return scale * (jnp.maximum(x, 0) + alpha * jnp.expm1(jnp.minimum(x, 0) * (1 / beta)))


def gelu_tanh(x):
    xc = jnp.clip(x, -10.0, 10.0)
    t = jnp.tanh(_SQRT_2_OVER_PI * (xc + _GELU_A * (xc * xc * xc)))
    return (t * 0.5 + 0.5) * x


def gelu_erf(x):
    return x * (0.5 + 0.5 * lax.erf(x / math.sqrt(2.0)))


def erf(x):
    return lax.erf(x)


def argsort(a, axis=-1, kind=None, order=None):
    """``np.argsort``: JAX's sort is stable, which is ``kind="stable"``'s order and one of the
    orders NumPy's other kinds may give ties (they promise none)."""
    if order is not None:
        raise TypeError("argsort: order= (structured arrays) has no XLA lowering")
    return jnp.argsort(a, axis=axis, stable=True)


def sort(a, axis=-1, kind=None, order=None):
    """``np.sort`` (any ``kind``: the sorted values are the same)."""
    if order is not None:
        raise TypeError("sort: order= (structured arrays) has no XLA lowering")
    return jnp.sort(a, axis=axis)


def argmax(a, axis=None, out=None, *, keepdims=False):
    """``np.argmax``: complex entries ordered as NumPy orders them (real parts first, then
    imaginary ones; a NaN in either part is the maximum, the first one found), which
    ``jnp.argmax`` refuses; others by ``jnp.argmax``."""
    return _arg_extremum("argmax", a, axis, out, keepdims, True, False)


def argmin(a, axis=None, out=None, *, keepdims=False):
    """``np.argmin``: as :func:`argmax`."""
    return _arg_extremum("argmin", a, axis, out, keepdims, False, False)


def nanargmax(a, axis=None, out=None, *, keepdims=False):
    """``np.nanargmax``: complex entries as :func:`argmax`, NaN ones skipped."""
    return _arg_extremum("nanargmax", a, axis, out, keepdims, True, True)


def nanargmin(a, axis=None, out=None, *, keepdims=False):
    """``np.nanargmin``: as :func:`nanargmax`."""
    return _arg_extremum("nanargmin", a, axis, out, keepdims, False, True)


def _arg_extremum(name, a, axis, out, keepdims, largest, skip_nan):
    if out is not None:
        raise TypeError(f"{name}: out= has no XLA lowering")
    x = jnp.ravel(a) if axis is None else a
    ax = 0 if axis is None else axis % x.ndim
    nan = jnp.isnan(x.real) | jnp.isnan(x.imag) if jnp.iscomplexobj(a) else \
        jnp.isnan(x) if jnp.issubdtype(x.dtype, jnp.inexact) else None
    if skip_nan and nan is not None:  # a slice all NaN: NumPy raises (XLA would give -1)
        run_time_checks().append((jnp.any(jnp.all(nan, axis=ax)), _refuse_all_nan))
    if not jnp.iscomplexobj(a):
        return getattr(jnp, name)(a, axis=axis, keepdims=keepdims)
    pick, fill = (jnp.max, -jnp.inf) if largest else (jnp.min, jnp.inf)
    if skip_nan:  # NumPy's nanargmax puts -inf + 0j (+inf for the min) in place of a NaN
        # entry, which then ties with, or beats, an entry of infinite real part
        x = jnp.where(nan, jnp.asarray(fill + 0j, x.dtype), x)
        nan = jnp.zeros_like(nan)
    real = jnp.where(nan, fill, x.real)  # (NaN entries never among the candidates)
    on = ~nan & (real == pick(real, axis=ax, keepdims=True))  # the extreme real part
    imag = jnp.where(on, x.imag, fill)
    first = jnp.argmax(on & (imag == pick(imag, axis=ax, keepdims=True)), axis=ax)
    if not skip_nan:  # (NumPy: the first NaN is the extremum)
        first = jnp.where(jnp.any(nan, axis=ax), jnp.argmax(nan, axis=ax), first)
    if keepdims:
        first = first.reshape((1,) * a.ndim) if axis is None else jnp.expand_dims(first, ax)
    return first


def _refuse_all_nan(found):
    if bool(np.asarray(found)):
        raise ValueError("All-NaN slice encountered")


def split(x, *, bounds, axis):
    """``x`` cut along ``axis`` into the pieces ``[lo, hi)`` of ``bounds``."""
    return tuple(lax.slice_in_dim(x, lo, hi, axis=axis) for lo, hi in bounds)


# --- normalisation (``fluxml.nnlib.normalise``) and einsum --------------------------------------

def normalise(x, scale, bias, *, axes, eps):
    """``NORMALISE``: ``(y, mean, var)``, the statistics kept with 1 on the reduced axes."""
    mean = jnp.mean(x, axis=axes, keepdims=True)
    xc = x - mean
    var = jnp.mean(xc * xc, axis=axes, keepdims=True)
    y = xc * (1 / jnp.sqrt(var + eps))
    if scale is not None:
        y = y * scale
    if bias is not None:
        y = y + bias
    return y, mean, var


def normalise_vjp_kernel(gy, x, scale, mean, var, axes, eps, positions, bias_shape):
    """``normalise._vjp_kernel``: the cotangents of ``(x, scale, bias)`` at ``positions``."""
    # lazy: nnlib sits above the compiler
    from fluxml.nnlib.normalise import _sum_to
    rstd = 1 / jnp.sqrt(var + eps)
    xhat = (x - mean) * rstd
    out = {}
    if 1 in positions:
        out[1] = _sum_to(gy * xhat, jnp.shape(scale))
    if 2 in positions:
        out[2] = _sum_to(gy, tuple(bias_shape))
    if 0 in positions:
        gx = gy if scale is None else gy * scale
        out[0] = rstd * (gx - jnp.mean(gx, axis=axes, keepdims=True)
                         - xhat * jnp.mean(gx * xhat, axis=axes, keepdims=True))
    return tuple(out[p] for p in positions)


def attention(q, k, v, bias, *, mask, scale, heads=None):
    """``dot_product_attention``'s primitive: ``(softmax(q k^T scale + bias, masked) v,
    probabilities)``; a row that may attend to no key gets probabilities 0, as the engine's.
    With ``heads``, ``q, k, v`` hold the heads side by side in their last axis and the
    output comes joined the same way."""
    def split(a):
        n, t, e = a.shape
        return jnp.swapaxes(a.reshape(n, t, heads, e // heads), 1, 2)

    if heads:
        q, k, v = split(q), split(k), split(v)
    s = jnp.matmul(q * scale, jnp.swapaxes(k, -1, -2))
    if bias is not None:
        s = s + bias
    if mask is not None:
        s = jnp.where(mask, s, -jnp.inf)
    m = jnp.max(s, axis=-1, keepdims=True)
    empty = jnp.isneginf(m)
    e = jnp.exp(s - jnp.where(empty, 0, m))
    p = e / jnp.where(empty, 1, jnp.sum(e, axis=-1, keepdims=True))
    out = jnp.matmul(p, v)
    if heads:
        n, h, t, d = out.shape
        out = jnp.swapaxes(out, 1, 2).reshape(n, t, h * d)
    return out, p


def embedding_scatter_add(g, *, idx, rows):
    """``embedding_scatter_add``: the rows of ``g`` added at their indices (the transpose of
    ``jnp.take(weight, idx, axis=0)``)."""
    features = g.shape[idx.ndim:]
    out = jnp.zeros((rows,) + features, g.dtype)
    return out.at[idx.reshape(-1)].add(g.reshape((-1,) + features))


def scatter_extremum(kind, value, idx, shape, init):
    """``fluxml.nnlib.scatter._extremum``: the max (min) of the sources sent to each
    destination, ``init`` (by default -inf, +inf; an integer dtype's extremes) where none is."""
    empty = init if init is not None else empty_extremum(kind, value.dtype)
    at = jnp.full(shape, empty, value.dtype).at[idx]
    return at.max(value) if kind == "max" else at.min(value)


def scatter_shares(value, best, idx, lead, inner, init):
    """``fluxml.nnlib.scatter._shares``: each source's share of its destination's gradient,
    which sources attain a finite extremum and which an infinite or NaN one, and which
    destinations hold the latter (the counts as scatter-adds, where NumPy's kernel uses
    bincount over flat places)."""
    at = best[idx]
    hit = (value == at) | (jnp.isnan(value) & jnp.isnan(at))
    ties = jnp.zeros(best.shape, jnp.int32).at[idx].add(hit.astype(jnp.int32))
    if init is not None:
        ties = ties + (best == jnp.asarray(init, best.dtype))
    share = jnp.where(hit, 1 / jnp.maximum(ties, 1)[idx], 0).astype(value.dtype)
    finite = hit & jnp.isfinite(value)
    other = hit & ~finite
    wild = jnp.zeros(best.shape, jnp.int32).at[idx].add(other.astype(jnp.int32)) > 0
    return share, finite, other, wild


def einsum(*operands, subscripts, optimize):
    """The ``einsum`` primitive (explicit subscripts, ``->`` always written)."""
    return jnp.einsum(subscripts, *operands, optimize=bool(optimize))
