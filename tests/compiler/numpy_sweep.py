"""Every NumPy function with a derivative rule, compiled, must equal eager fluxml: for each case
``fl.compile`` of (the value, the gradient of a fixed random weighting of every float output)
agrees with eager fluxml on the inputs it was traced with and on new ones (a value baked into
the program shows on the second), on the NumPy and XLA back ends. The eager value is checked
against plain NumPy too.

The short run is ``tests/compiler/test_numpy_sweep.py``; the whole table:

    PYTHONPATH=src python -m tests.compiler.numpy_sweep [numpy] [xla] [--float32|--complex]
        [name ...]

Each cell is ``ok``, ``refused: <CompileError message>`` (a clear refusal) or
``FAIL: <what differs or what was raised>``. ``REFUSED`` lists the cases whose refusal is
right (a result whose shape depends on the values, a derivative undefined there).
"""

from __future__ import annotations

import sys
import traceback
import warnings

import numpy as np

import fluxml as fl
from fluxml.compiler import CompileError

TOL = 1e-9


def _u(rng, *shape):
    """Entries in (0.1, 0.9): inside the domain of log, sqrt, arcsin ..., away from kinks."""
    return 0.1 + 0.8 * rng.random(shape)


def _n(rng, *shape):
    return rng.standard_normal(shape)


def _spd(rng, n=3):
    a = rng.standard_normal((n, n))
    return a @ a.T + n * np.eye(n)


def _c(rng, *shape):
    return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)


XP = np.linspace(0.0, 1.0, 5)
FP = np.array([0.0, 1.0, 0.5, 2.0, 1.5])
BINS = np.array([0.2, 0.5, 0.8])


def _table():
    """``name -> (fn, make)``: ``make(rng)`` gives the differentiated arguments (float arrays),
    ``fn(*args)`` the outputs (an array or a tuple/list of them)."""
    t = {}

    def add(name, fn, make):
        t[name] = (fn, make)

    one = lambda *s: (lambda r: (_u(r, *s),))  # noqa: E731
    two = lambda s1, s2: (lambda r: (_u(r, *s1), _u(r, *s2)))  # noqa: E731
    # ufuncs: one argument on (0.1, 0.9) (arccosh on 1 + that), two on two such arrays
    for name in ("absolute", "arccos", "arcsin", "arcsinh", "arctan", "arctanh", "cbrt",
                 "ceil", "conjugate", "cos", "cosh", "deg2rad", "degrees", "exp", "exp2",
                 "expm1", "fabs", "floor", "log", "log10", "log1p", "log2", "negative",
                 "positive", "rad2deg", "radians", "reciprocal", "rint", "sign", "sin",
                 "sinh", "spacing", "sqrt", "square", "tan", "tanh", "trunc"):
        add(name, getattr(np, name), one(2, 3))
    add("arccosh", lambda a: np.arccosh(1 + a), one(2, 3))
    for name in ("add", "arctan2", "copysign", "divide", "float_power", "fmax", "fmin",
                 "fmod", "heaviside", "hypot", "logaddexp", "logaddexp2", "maximum",
                 "minimum", "multiply", "nextafter", "power", "remainder", "subtract",
                 "floor_divide"):
        add(name, getattr(np, name), two((2, 3), (3,)))
    add("divmod", np.divmod, two((2, 3), (3,)))
    add("modf", np.modf, one(2, 3))
    add("frexp", lambda a: np.frexp(a)[0], one(2, 3))
    add("ldexp", lambda a: np.ldexp(a, 3), one(2, 3))
    add("matmul", np.matmul, two((2, 3), (3, 4)))
    add("matvec", np.matvec, two((2, 3), (3,)))
    add("vecmat", np.vecmat, two((3,), (3, 2)))
    add("vecdot", np.vecdot, two((2, 3), (3,)))
    # reductions and statistics
    for name in ("sum", "prod", "mean", "std", "var", "max", "min", "amax", "amin", "ptp",
                 "median", "cumsum", "cumprod", "cumulative_sum", "cumulative_prod",
                 "nansum", "nanmean", "nanmax", "nanmin", "nanprod", "nanstd", "nanvar",
                 "nanmedian", "nancumsum", "nancumprod"):
        add(name, lambda a, f=getattr(np, name): f(a, axis=-1), one(3, 4))
    add("average", lambda a, w: np.average(a, axis=0, weights=w), two((3, 2), (3, 2)))
    add("quantile", lambda a: np.quantile(a, [0.3, 0.8], axis=1), one(3, 5))
    add("percentile", lambda a: np.percentile(a, 40.0), one(3, 5))
    add("nanquantile", lambda a: np.nanquantile(a, 0.3, axis=0), one(3, 5))
    add("nanpercentile", lambda a: np.nanpercentile(a, 70), one(3, 5))
    add("cov", np.cov, one(3, 5))
    add("corrcoef", np.corrcoef, one(3, 5))
    add("trace", np.trace, one(3, 3))
    add("diff", lambda a: np.diff(a, 2, axis=1), one(3, 5))
    add("ediff1d", lambda a: np.ediff1d(a, to_begin=[1.0]), one(5))
    add("gradient", lambda a: np.gradient(a, 0.5, axis=1), one(3, 5))
    add("trapezoid", lambda a, x: np.trapezoid(a, x), two((3, 5), (5,)))
    add("clip", lambda a: np.clip(a, 0.3, 0.7), one(3, 4))
    add("round", lambda a: np.round(a * 10, 1), one(3, 4))
    add("around", lambda a: np.around(a * 10, 1), one(3, 4))
    add("fix", lambda a: np.fix(a * 10 - 5), one(3, 4))
    add("sinc", np.sinc, one(3, 4))
    add("i0", np.i0, one(3, 4))
    add("nan_to_num", np.nan_to_num, one(3, 4))
    add("real_if_close", np.real_if_close, one(3, 4))
    add("real_if_close(complex)", lambda a, b: np.real_if_close(a + 1j * b * 1e-20),
        two((3, 4), (3, 4)))
    add("angle", lambda a, b: np.angle(a + 1j * b), two((3,), (3,)))
    add("real", lambda a, b: np.real(a * (1 + 1j) + b), two((3,), (3,)))
    add("imag", lambda a, b: np.imag(a * (1 + 1j) + b), two((3,), (3,)))
    add("sort_complex", lambda a, b: np.sort_complex(a + 1j * b), two((4,), (4,)))
    add("unwrap", lambda a: np.unwrap(8 * a), one(6))
    # shape and joins
    add("reshape", lambda a: np.reshape(a, (4, 3)), one(3, 4))
    add("ravel", np.ravel, one(3, 4))
    add("transpose", np.transpose, one(3, 4))
    add("matrix_transpose", np.matrix_transpose, one(2, 3, 4))
    add("swapaxes", lambda a: np.swapaxes(a, 0, 2), one(2, 3, 4))
    add("moveaxis", lambda a: np.moveaxis(a, 0, -1), one(2, 3, 4))
    add("rollaxis", lambda a: np.rollaxis(a, 2), one(2, 3, 4))
    add("expand_dims", lambda a: np.expand_dims(a, 1), one(3, 4))
    add("squeeze", np.squeeze, one(3, 1, 4))
    add("atleast_1d", np.atleast_1d, one())
    add("atleast_2d", np.atleast_2d, one(3))
    add("atleast_3d", np.atleast_3d, one(3))
    add("broadcast_to", lambda a: np.broadcast_to(a, (2, 3, 4)), one(3, 4))
    add("broadcast_arrays", np.broadcast_arrays, two((3, 1), (4,)))
    add("flip", lambda a: np.flip(a, 1), one(3, 4))
    add("fliplr", np.fliplr, one(3, 4))
    add("flipud", np.flipud, one(3, 4))
    add("rot90", np.rot90, one(3, 4))
    add("roll", lambda a: np.roll(a, 2, axis=1), one(3, 4))
    add("tile", lambda a: np.tile(a, (2, 1)), one(3, 4))
    add("repeat", lambda a: np.repeat(a, [1, 2, 0], axis=0), one(3, 4))
    add("resize", lambda a: np.resize(a, (5, 3)), one(3, 4))
    add("pad", lambda a: np.pad(a, 1, mode="reflect"), one(3, 4))
    add("tril", lambda a: np.tril(a, -1), one(3, 4))
    add("triu", np.triu, one(3, 4))
    add("diag", np.diag, one(3, 4))
    add("diagflat", np.diagflat, one(3))
    add("diagonal", lambda a: np.diagonal(a, 1), one(3, 4))
    add("copy", np.copy, one(3, 4))
    add("astype", lambda a: np.astype(a, np.float32), one(3, 4))
    add("concatenate", lambda a, b: np.concatenate([a, b], axis=0), two((2, 3), (1, 3)))
    add("stack", lambda a, b: np.stack([a, b], axis=1), two((2, 3), (2, 3)))
    add("unstack", lambda a: np.unstack(a, axis=1), one(2, 3))
    add("hstack", lambda a, b: np.hstack([a, b]), two((2, 3), (2, 1)))
    add("vstack", lambda a, b: np.vstack([a, b]), two((2, 3), (3,)))
    add("dstack", lambda a, b: np.dstack([a, b]), two((2, 3), (2, 3)))
    add("column_stack", lambda a, b: np.column_stack([a, b]), two((3,), (3, 2)))
    add("block", lambda a, b: np.block([[a, b]]), two((2, 3), (2, 1)))
    add("append", lambda a, b: np.append(a, b, axis=1), two((2, 3), (2, 1)))
    add("insert", lambda a, b: np.insert(a, [1, 2], b, axis=1), two((2, 3), (2, 1)))
    add("delete", lambda a: np.delete(a, [0, 2], axis=1), one(2, 4))
    add("split", lambda a: np.split(a, [1, 3], axis=1), one(2, 4))
    add("array_split", lambda a: np.array_split(a, 3, axis=1), one(2, 4))
    add("hsplit", lambda a: np.hsplit(a, 2), one(2, 4))
    add("vsplit", lambda a: np.vsplit(a, 2), one(4, 2))
    add("dsplit", lambda a: np.dsplit(a, 2), one(2, 2, 4))
    add("meshgrid", lambda a, b: np.meshgrid(a, b), two((3,), (2,)))
    add("sliding_window_view",
        lambda a: np.lib.stride_tricks.sliding_window_view(a, 3, axis=1), one(2, 5))
    add("trim_zeros", lambda a: np.trim_zeros(np.concatenate([[0.0], a, [0.0]])), one(4))
    # selection, indexing and writes
    add("where", lambda a, b: np.where(a > 0.5, a, b), two((3, 4), (4,)))
    add("select", lambda a, b: np.select([a < 0.4, a > 0.6], [a, b], 0.5), two((3, 4), (4,)))
    add("choose", lambda a, b: np.choose([0, 1, 1, 0], [a, b]), two((4,), (4,)))
    add("piecewise",
        lambda a: np.piecewise(a, [a < 0.5, a >= 0.5], [lambda v: v**2, lambda v: 2 * v]),
        one(3, 4))
    add("extract", lambda a: np.extract(a > 0.5, a), one(3, 4))
    add("compress", lambda a: np.compress([True, False, True], a, axis=0), one(3, 4))
    add("take", lambda a: np.take(a, [2, 0, 2], axis=1), one(3, 4))
    add("take_along_axis",
        lambda a: np.take_along_axis(a, np.argsort(a, axis=1), axis=1), one(3, 4))
    add("put_along_axis", _put_along_axis, two((3, 4), (3, 1)))
    add("put", _put, two((3, 4), (2,)))
    add("place", _place, two((3, 4), (2,)))
    add("putmask", _putmask, two((3, 4), (3, 4)))
    add("copyto", _copyto, two((3, 4), (4,)))
    add("fill_diagonal", _fill_diagonal, two((3, 3), ()))
    add("sort", lambda a: np.sort(a, axis=1), one(3, 4))
    add("partition", lambda a: np.partition(a, 2, axis=1), one(3, 4))
    add("bincount", lambda w: np.bincount([0, 2, 2, 1], w), one(4))
    add("interp", lambda a: np.interp(a, XP, FP), one(3, 4))
    add("interp(traced xp, fp)", lambda a, f: np.interp(a, XP, f), two((3, 4), (5,)))
    add("digitize", lambda a: a * np.digitize(a, BINS), one(3, 4))
    add("digitize(right, decreasing)",
        lambda a: a * np.digitize(a, BINS[::-1], right=True), one(3, 4))
    add("searchsorted", lambda a: a * np.searchsorted(BINS, a), one(3, 4))
    # creation
    add("zeros_like", lambda a: a + np.zeros_like(a), one(3))
    add("ones_like", lambda a: a * np.ones_like(a), one(3))
    add("empty_like", _empty_like, one(3))
    add("full_like", lambda a: a * np.full_like(a, 2.0), one(3))
    add("linspace", lambda a: np.linspace(a[0], a[1] + 1, 5), one(2))
    add("logspace", lambda a: np.logspace(a[0], a[1] + 1, 5), one(2))
    add("geomspace", lambda a: np.geomspace(a[0], a[1] + 1, 5), one(2))
    add("vander", lambda a: np.vander(a, 4), one(3))
    # linear algebra
    add("dot", np.dot, two((2, 3), (3, 4)))
    add("vdot", np.vdot, two((2, 3), (2, 3)))
    add("inner", np.inner, two((2, 3), (4, 3)))
    add("outer", np.outer, two((2,), (3,)))
    add("kron", np.kron, two((2, 2), (2, 1)))
    add("cross", np.cross, two((2, 3), (2, 3)))
    add("tensordot", lambda a, b: np.tensordot(a, b, 1), two((2, 3), (3, 2)))
    add("einsum", lambda a, b: np.einsum("ij,jk->ik", a, b), two((2, 3), (3, 2)))
    add("linalg.multi_dot", lambda a, b: np.linalg.multi_dot([a, b, a.T]), two((2, 3), (3, 3)))
    add("linalg.matrix_power", lambda a: np.linalg.matrix_power(a, 3), one(3, 3))
    spd = lambda r: (_spd(r),)  # noqa: E731
    sq = lambda r: (_n(r, 3, 3) + 3 * np.eye(3),)  # noqa: E731
    add("linalg.inv", np.linalg.inv, sq)
    add("linalg.det", np.linalg.det, sq)
    add("linalg.slogdet", lambda a: np.linalg.slogdet(a)[1], sq)
    add("linalg.solve", lambda a, b: np.linalg.solve(a, b), lambda r: (*sq(r), _n(r, 3, 2)))
    add("linalg.cholesky", np.linalg.cholesky, spd)
    add("linalg.qr", lambda a: np.linalg.qr(a)[1], lambda r: (_n(r, 4, 3),))
    add("linalg.svd", lambda a: np.linalg.svd(a, full_matrices=False)[0], lambda r: (_n(r, 4, 3),))
    add("linalg.svdvals", np.linalg.svdvals, lambda r: (_n(r, 4, 3),))
    add("linalg.pinv", np.linalg.pinv, lambda r: (_n(r, 4, 3),))
    add("linalg.lstsq", lambda a, b: np.linalg.lstsq(a, b)[0],
        lambda r: (_n(r, 4, 3), _n(r, 4)))
    # one triangle read (the other holds noise): NumPy's convention
    skew = lambda r: (_spd(r) + np.triu(_n(r, 3, 3), 1),)  # noqa: E731
    add("linalg.cholesky(lower)", np.linalg.cholesky, skew)
    add("linalg.eigvalsh(lower)", np.linalg.eigvalsh, skew)
    add("linalg.eigh(upper)", lambda a: np.linalg.eigh(a, UPLO="U")[0],
        lambda r: (_spd(r) + np.tril(_n(r, 3, 3), -1),))
    add("linalg.svd(hermitian)", lambda a: np.linalg.svd(a, hermitian=True)[1], skew)
    add("linalg.pinv(hermitian)", lambda a: np.linalg.pinv(a, hermitian=True), skew)
    add("linalg.eigh", lambda a: np.linalg.eigh(a)[0], spd)
    add("linalg.eigvalsh", np.linalg.eigvalsh, spd)
    add("linalg.eig", lambda a: np.abs(np.linalg.eigvals(a)), spd)
    add("linalg.eigvals", lambda a: np.real(np.linalg.eigvals(a)), spd)
    add("linalg.norm", lambda a: np.linalg.norm(a, axis=1), one(3, 4))
    add("linalg.vector_norm", lambda a: np.linalg.vector_norm(a, ord=3), one(3, 4))
    add("linalg.matrix_norm", lambda a: np.linalg.matrix_norm(a, ord="fro"), one(3, 4))
    add("linalg.cond", np.linalg.cond, sq)
    add("linalg.tensorinv", lambda a: np.linalg.tensorinv(a.reshape(2, 2, 4), 2),
        lambda r: (_n(r, 4, 4) + 4 * np.eye(4),))
    add("linalg.tensorsolve", lambda a, b: np.linalg.tensorsolve(a.reshape(2, 2, 4), b),
        lambda r: (_n(r, 4, 4) + 4 * np.eye(4), _n(r, 2, 2)))
    # numerics and polynomials
    add("convolve", np.convolve, two((5,), (3,)))
    add("correlate", lambda a, b: np.correlate(a, b, "same"), two((5,), (3,)))
    add("polyval", np.polyval, two((3,), (4,)))
    add("polyder", np.polyder, one(4))
    add("polyint", np.polyint, one(4))
    add("polyadd", np.polyadd, two((3,), (2,)))
    add("polysub", np.polysub, two((3,), (2,)))
    add("polymul", np.polymul, two((3,), (2,)))
    add("polydiv", lambda a, b: np.polydiv(a, b)[0], two((4,), (2,)))
    add("poly", np.poly, one(3))
    add("roots", lambda a: np.real(np.roots(a)), lambda r: (np.array([1.0, -3.0, 2.0])
                                                             + 0.1 * _n(r, 3),))
    add("polyfit", lambda x, y: np.polyfit(x, y, 2), two((5,), (5,)))
    add("apply_along_axis", lambda a: np.apply_along_axis(np.cumsum, 1, a), one(3, 4))
    add("apply_over_axes", lambda a: np.apply_over_axes(np.sum, a, [0]), one(3, 4))
    # Fourier transforms
    fft = np.fft
    add("fft.fft", fft.fft, one(6))
    add("fft.ifft", lambda a, b: fft.ifft(a + 1j * b), two((6,), (6,)))
    add("fft.fft2", fft.fft2, one(3, 4))
    add("fft.ifft2", fft.ifft2, one(3, 4))
    add("fft.fftn", fft.fftn, one(2, 3, 4))
    add("fft.ifftn", fft.ifftn, one(2, 3, 4))
    add("fft.rfft", fft.rfft, one(6))
    add("fft.irfft", lambda a, b: fft.irfft(a + 1j * b), two((4,), (4,)))
    add("fft.rfft2", fft.rfft2, one(3, 4))
    add("fft.irfft2", lambda a, b: fft.irfft2(a + 1j * b), two((3, 3), (3, 3)))
    add("fft.rfftn", fft.rfftn, one(2, 3, 4))
    add("fft.irfftn", lambda a, b: fft.irfftn(a + 1j * b), two((2, 3, 3), (2, 3, 3)))
    add("fft.hfft", lambda a, b: fft.hfft(a + 1j * b), two((4,), (4,)))
    add("fft.ihfft", fft.ihfft, one(6))
    add("fft.fftshift", fft.fftshift, one(5))
    add("fft.ifftshift", fft.ifftshift, one(5))
    # ties and kinks: which entry a derivative reaches (the eager rule's choice, compiled too)
    tie = lambda r: (_ties(r, 3, 20),)  # noqa: E731
    add("max(ties)", lambda a: np.max(a, axis=1), tie)
    add("amin(ties)", lambda a: np.amin(a), tie)
    add("ptp(ties)", lambda a: np.ptp(a, axis=0), tie)
    add("sort(ties)", lambda a: np.sort(a, axis=1), tie)
    add("median(ties)", lambda a: np.median(a, axis=1), tie)
    add("quantile(ties)", lambda a: np.quantile(a, [0.25, 0.5], axis=1), tie)
    add("partition(ties)", lambda a: np.partition(a, 4, axis=1), tie)
    add("maximum(ties)", lambda a: np.maximum(a, 0.3), tie)
    add("fmin(ties)", lambda a: np.fmin(a, a[::-1]), tie)
    add("clip(ties)", lambda a: np.clip(a, 0.2, 0.4), tie)
    add("abs(zeros)", lambda a: np.abs(a - 0.3), tie)
    add("sort_complex(ties)", lambda a: np.sort_complex(a[0] + 1j * a[1]), tie)
    # NaN entries (the entries above 0.7 of (0.1, 0.9) made NaN): the NaN functions skip them
    for name in ("nansum", "nanmean", "nanmax", "nanmin", "nanprod", "nanstd", "nanvar",
                 "nanmedian", "nancumsum", "nancumprod", "nanargmax"):
        if name == "nanargmax":
            add("nanargmax(nan)", lambda a: a * np.nanargmax(_nans(a), axis=-1)[:, None],
                one(3, 4))
            continue
        add(f"{name}(nan)", lambda a, f=getattr(np, name): f(_nans(a), axis=-1), one(3, 4))
    add("nanquantile(nan)", lambda a: np.nanquantile(_nans(a), [0.2, 0.6], axis=1), one(3, 5))
    add("nanpercentile(nan)", lambda a: np.nanpercentile(_nans(a), 30.0), one(3, 5))
    add("nan_to_num(nan)", lambda a: np.nan_to_num(_nans(a) / (a - a[0, 0]), nan=-1.0,
                                                   posinf=2.0), one(3, 4))
    # other arguments of the same functions
    add("pad(edge)", lambda a: np.pad(a, ((1, 0), (2, 1)), mode="edge"), one(3, 4))
    add("pad(wrap)", lambda a: np.pad(a, 2, mode="wrap"), one(3, 4))
    add("pad(symmetric)", lambda a: np.pad(a, (1, 2), mode="symmetric"), one(3, 4))
    add("pad(constant)", lambda a: np.pad(a, 1, constant_values=2.5), one(3, 4))
    add("roll(flat)", lambda a: np.roll(a, -5), one(3, 4))
    add("round(-1)", lambda a: np.round(a * 1000, -1), one(3, 4))
    add("cumsum(flat)", np.cumsum, one(3, 4))
    add("diff(prepend)", lambda a: np.diff(a, prepend=0.5, append=a[:, :1]), one(3, 4))
    add("take(wrap)", lambda a: np.take(a, [-1, 5, 9], mode="wrap"), one(3, 4))
    add("take(clip)", lambda a: np.take(a, [-1, 5, 19], axis=1, mode="clip"), one(3, 4))
    add("sort(flat)", lambda a: np.sort(a, axis=None), one(3, 4))
    add("quantile(methods)", lambda a: [np.quantile(a, [0.3, 0.5], method=m, axis=1) for m in (
        "lower", "higher", "nearest", "midpoint")], one(3, 5))
    add("average(returned)", lambda a, w: np.average(a, axis=1, weights=w, returned=True),
        two((3, 4), (4,)))
    add("std(ddof)", lambda a: np.std(a, axis=0, ddof=1, keepdims=True), one(3, 4))
    add("var(complex)", lambda a, b: np.var(a + 1j * b, axis=1), two((3, 4), (3, 4)))
    add("cross(axis)", lambda a, b: np.cross(a, b, axisa=0, axisb=0), two((3, 2), (3, 2)))
    add("einsum(trace)", lambda a, b: np.einsum("ii,jk->jk", a, b), two((3, 3), (2, 2)))
    add("einsum(broadcast)", lambda a, b: np.einsum("...ij,...jk", a, b), two((2, 2, 3),
                                                                            (3, 2)))
    add("trace(offset)", lambda a: np.trace(a, offset=1, axis1=1, axis2=2), one(2, 3, 4))
    add("insert(scalar)", lambda a: np.insert(a, 2, 7.0), one(3, 4))
    add("gradient(edge 2)", lambda a, x: np.gradient(a, x, edge_order=2), two((5,), (5,)))
    add("clip(arrays)", lambda a, lo: np.clip(a, lo, 0.6), two((3, 4), (4,)))
    add("maximum.reduce", lambda a: np.maximum.reduce(a, axis=0), one(3, 4))
    add("add.accumulate", lambda a: np.add.accumulate(a, axis=1), one(3, 4))
    add("multiply.outer", lambda a, b: np.multiply.outer(a, b), two((3,), (2,)))
    add("matmul(batched)", np.matmul, two((2, 3, 4), (4, 2)))
    add("linalg.norm(ord)", lambda a: [np.linalg.norm(a, o) for o in (1, 2, np.inf, -np.inf,
                                                                     "fro", "nuc")],
        lambda r: (_n(r, 3, 3),))
    add("linalg.det(batched)", np.linalg.det, lambda r: (_n(r, 2, 3, 3) + 3 * np.eye(3),))
    add("linalg.solve(batched)", np.linalg.solve,
        lambda r: (_n(r, 2, 3, 3) + 3 * np.eye(3), _n(r, 2, 3, 1)))
    add("interp(period)", lambda a: np.interp(a * 7, XP * 3, FP, period=2.5), one(3, 4))
    add("interp(left, right)", lambda a: np.interp(a * 2 - 0.5, XP, FP, left=-1, right=3.0),
        one(3, 4))
    _special_cases(add, one, two)
    # histograms (piecewise constant counts, differentiable edges and weights)
    add("histogram(edges)", lambda a: np.histogram(a, bins=3)[1], one(6))
    add("histogram(weights)", lambda a, w: np.histogram(a, BINS, weights=w)[0],
        two((6,), (6,)))
    add("histogram(density)", lambda a: np.histogram(a, bins=3, density=True)[0], one(6))
    add("histogram_bin_edges", lambda a: np.histogram_bin_edges(a, 4), one(6))
    add("histogramdd", lambda a, w: np.histogramdd(a, (2, 3), weights=w, density=True),
        two((6, 2), (6,)))
    add("histogram2d", lambda a: np.histogram2d(a[:, 0], a[:, 1], 3), one(6, 2))
    return t


def _empty_like(a):
    out = np.empty_like(a)  # (filled: its contents are undefined until then)
    out[...] = 2 * a
    return out


def _special_cases(add, one, two):
    """scipy.special's ufuncs with rules (where SciPy is installed)."""
    try:
        import scipy.special as sp
    except ImportError:
        return
    for name in ("expit", "logit", "log_expit", "erf", "erfc", "erfcx", "erfinv", "erfcinv",
                 "ndtr", "log_ndtr", "ndtri", "gamma", "gammaln", "loggamma", "digamma",
                 "entr", "i0", "i1", "j0", "j1", "y0", "y1", "rgamma", "gammasgn"):
        add(f"special.{name}", getattr(sp, name), one(2, 3))
    for name in ("xlogy", "xlog1py", "rel_entr", "beta", "betaln"):
        add(f"special.{name}", getattr(sp, name), two((2, 3), (3,)))
    for name in ("gammainc", "gammaincc"):  # (no derivative in the shape a)
        add(f"special.{name}", lambda x, f=getattr(sp, name): f(1.7, x * 3), one(2, 3))
    add("special.loggamma(negative)", lambda a: sp.loggamma(a - 0.5), one(2, 3))
    add("special.rgamma(poles)", lambda a: sp.rgamma(a * 0 + np.array([0.0, -1.0, -2.5])),
        one(2, 3))
    add("special.polygamma", lambda a: sp.digamma(a) + sp.gammasgn(a - 0.5) * a, one(2, 3))
    for name in ("iv", "jv", "ive", "yv"):
        add(f"special.{name}", lambda a, f=getattr(sp, name): f(1.5, a), one(2, 3))
    add("special.yn", lambda a: sp.yn(2, a), one(2, 3))
    add("special.betainc", lambda x: sp.betainc(1.5, 2.5, x), one(2, 3))


def _nans(a):
    return np.where(a > 0.7, np.nan, a)


def _ties(rng, *shape):
    """Entries from {0.1, 0.2, ..., 0.5}: many ties, and values on clip's bounds."""
    return rng.integers(1, 6, shape) / 10.0


def _put_along_axis(a, b):
    a = a.copy()
    np.put_along_axis(a, np.array([[1], [0], [3]]), b, axis=1)
    return a


def _put(a, b):
    a = a.copy()
    np.put(a, [1, 7], b)
    return a


def _place(a, b):
    a = a.copy()
    np.place(a, np.arange(12).reshape(3, 4) % 5 == 0, b)
    return a


def _putmask(a, b):
    a = a.copy()
    np.putmask(a, np.arange(12).reshape(3, 4) % 3 == 0, b)
    return a


def _copyto(a, b):
    a = a.copy()
    np.copyto(a, b, where=np.arange(12).reshape(3, 4) % 2 == 0)
    return a


def _fill_diagonal(a, b):
    a = a.copy()
    np.fill_diagonal(a, b)
    return a


CASES = _table()

# refusals that are right: the result's shape (or which entries a function sees) depends on the
# values, which a compiled program knows only when it runs
REFUSED = {
    "extract": "the result's shape depends on the values",
    "trim_zeros": "the result's shape depends on the values",
    "polymul": "np.poly1d trims leading zeros: the result's shape depends on the values",
    "polydiv": "np.poly1d trims leading zeros: the result's shape depends on the values",
    "roots": "the number of roots depends on the values (zero coefficients are trimmed)",
}
# refusals of the XLA back end alone
XLA_REFUSED = {
    "partition": "NumPy's arrangement of the entries other than the kth is its introselect's",
    "partition(ties)": "as partition",
    **{f"special.{name}": "JAX has no Bessel function of real order" for name in (
        "j0", "j1", "y0", "y1", "iv", "jv", "ive", "yv", "yn", "i1")},  # (i1's derivative: iv)
    **{f"special.{name}": "JAX's differs from SciPy's by up to 1e-6 relative" for name in (
        "beta", "betaln")},
    "linalg.eig": "NumPy's eigenvalues are real or complex by the values (the dtype with them)",
    "linalg.eigvals": "NumPy's eigenvalues are real or complex by the values",
}


def documented(name, backend) -> str | None:
    """Why ``name`` is refused on ``backend``, where the refusal is right; else None."""
    return REFUSED.get(name) or (XLA_REFUSED.get(name) if backend == "xla" else None)


def _outputs(out):
    if isinstance(out, (tuple, list)):
        return [o for x in out for o in _outputs(x)]
    return [out]


def _floats(out):
    return [o for o in _outputs(out) if np.result_type(o).kind in "fc"]


def _loss(fn, weights):
    """A scalar of every float output of ``fn``: each weighted by a fixed random array."""
    def loss(*args):
        total = 0.0
        for o, w in zip(_floats(fn(*args)), weights):
            total = total + np.sum(np.real(o * w))
        return total
    return loss


def _both(fn, weights, tangents):
    """The outputs, the gradient of the weighted outputs (reverse mode) and their derivative
    along ``tangents`` (forward mode)."""
    loss = _loss(fn, weights)

    def run(*args):
        grads = fl.gradient(loss, *args)
        return fn(*args), grads, fl.jvp(loss, args, tangents)[1]
    return run


def _compare(got, want, what, tol=TOL):
    got, want = _outputs(got), _outputs(want)
    if len(got) != len(want):
        return f"{what}: {len(got)} outputs, eager {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        if g is None or w is None:  # no derivative: None
            if g is not w:
                return f"{what}[{i}]: {g!r}, eager {w!r}"
            continue
        g, w = np.asarray(g), np.asarray(w)
        if g.shape != w.shape:
            return f"{what}[{i}]: shape {g.shape}, eager {w.shape}"
        if g.dtype != w.dtype:
            return f"{what}[{i}]: dtype {g.dtype}, eager {w.dtype}"
        if not np.allclose(g, w, rtol=tol, atol=tol, equal_nan=True):
            return f"{what}[{i}]: {g.ravel()[:4]} ..., eager {w.ravel()[:4]} ..."
    return None


def check(name, backend="numpy", seed=0, dtype=np.float64):
    """``ok``, ``refused: ...`` or ``FAIL: ...`` (the arguments cast to ``dtype``)."""
    fn, make64 = CASES[name]
    if dtype == np.complex128:  # each argument moved off the real line a little
        make = lambda rng: tuple(a + 0.3j * np.cos(1.7 * np.arange(np.size(a)))  # noqa: E731
                                 .reshape(np.shape(a)) for a in make64(rng))
    elif dtype == np.float64:
        make = make64
    else:
        make = lambda rng: tuple(np.asarray(a).astype(dtype) for a in make64(rng))  # noqa: E731
    tol = TOL if dtype in (np.float64, np.complex128) else 2e-5
    rng = np.random.default_rng(seed)
    args = make(rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            plain = fn(*[a.copy() for a in args])
        except Exception as e:  # noqa: BLE001
            return "n/a: NumPy refuses these arguments: " + str(e)[:100]
        try:
            weights = [rng.standard_normal(np.shape(o)) for o in _floats(plain)]
            run = _both(fn, weights, tuple(rng.standard_normal(np.shape(a)) for a in args))
            eager = run(*[a.copy() for a in args])
        except Exception as e:  # noqa: BLE001 (the table records what was raised)
            if "right for real values only" in str(e) or "complex" in str(e):
                return "n/a: " + str(e)[:120]  # (complex values: refused eagerly too)
            return f"FAIL: eager raised {type(e).__name__}: {str(e)[:200]}"
        bad = _compare(eager[0], plain, "eager value vs NumPy", tol)
        if bad:
            return "FAIL: " + bad
        try:
            compiled = fl.compile(run, backend=backend, background=False)
            for call in range(2):
                given = args if call == 0 else make(rng)
                want = run(*[a.copy() for a in given]) if call else eager
                got = compiled(*[a.copy() for a in given])
                bad = (_compare(got[0], want[0], f"value (call {call})", tol)
                       or _compare(got[1], want[1], f"gradient (call {call})", tol)
                       or _compare(got[2], want[2], f"jvp (call {call})", tol))
                if bad:
                    return "FAIL: " + bad
        except CompileError as e:
            return "refused: " + str(e).splitlines()[0][:300]
        except Exception as e:  # noqa: BLE001
            tb = traceback.extract_tb(e.__traceback__)[-1]
            return (f"FAIL: compiled raised {type(e).__name__}: {str(e)[:200]} "
                    f"({tb.filename.rsplit('/', 1)[-1]}:{tb.lineno})")
    return "ok"


def main(argv):
    backends = [a for a in argv if a in ("numpy", "xla")] or ["numpy"]
    dtype = np.float32 if "--float32" in argv else (
        np.complex128 if "--complex" in argv else np.float64)
    names = [a for a in argv if a in CASES] or list(CASES)
    bad = 0
    for name in names:
        row = []
        for backend in backends:
            s = check(name, backend, dtype=dtype)
            if s.startswith("refused") and documented(name, backend):
                s = "refused as documented"
            bad += s != "ok" and s != "refused as documented" and not s.startswith("n/a")
            row.append(f"{backend}: {s}")
        print(f"{name:30s} " + " | ".join(row), flush=True)
    print(f"{bad} cells not ok")


if __name__ == "__main__":
    main(sys.argv[1:])
