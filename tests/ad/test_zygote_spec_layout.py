"""Memory-order reshapes, found translating Zygote's ``permutedims``/``reshape`` tests
(test/gradcheck_p1.jl, testsets around ``permutedims`` and ``dropdims``): Julia reads arrays
in column-major order, NumPy in the order asked for, and ``order="A"``/``"K"`` read them in
the order they lie in memory. Each gradient is checked against the positions NumPy itself
reads, found by applying the same operations to an array of element numbers."""

import numpy as np
import pytest

import fluxml as fl
from fluxml.testing import check_grads

X = np.arange(24.0).reshape(2, 3, 4) / 10

# (name, the operations on an array, then the memory-order flatten)
CASES = [
    ("ravel K of a permuted array", lambda x: np.ravel(x.transpose(1, 0, 2), order="K")),
    ("flatten K of a permuted array", lambda x: x.transpose(1, 0, 2).flatten(order="K")),
    ("ravel K of a reversed, permuted array",
     lambda x: np.ravel(x[:, ::-1].transpose(1, 0, 2), order="K")),
    ("ravel K of a broadcast view",
     lambda x: np.ravel(np.broadcast_to(x[:, :1], (2, 3, 4)).transpose(2, 1, 0), order="K")),
    ("ravel K of a strided view", lambda x: np.ravel(x[:, ::2].transpose(2, 0, 1), order="K")),
    ("reshape A of a transposed array", lambda x: x.T.reshape(24, order="A")),
    ("reshape A of a transposed array to 2-d", lambda x: np.reshape(x.T, (4, 6), order="A")),
    ("ravel A of a transposed array", lambda x: np.ravel(x.T, order="A")),
]


def _read_positions(op, shape):
    """The flat C index of the element of ``x`` at each place of ``op(x)``: ``op`` applied
    to the element numbers (plain NumPy, so in NumPy's own reading order)."""
    return op(np.arange(int(np.prod(shape))).reshape(shape))


@pytest.mark.parametrize("name, op", CASES, ids=[c[0] for c in CASES])
def test_memory_order_reads_values_and_gradients_as_numpy(name, op):
    # before: ravel(order="K") read a permuted array in C order (a wrong value and the
    # matching wrong gradient), and reshape(order="A") of an F-ordered array read the
    # values in F order but reshaped the cotangent in C order (a wrong gradient)
    positions = _read_positions(op, X.shape)
    w = np.random.default_rng(0).standard_normal(positions.shape)
    seen = []

    def loss(x):
        y = op(x)
        seen.append(fl.stop_gradient(y))
        return np.sum(y * w)

    (g,) = fl.gradient(loss, X)
    np.testing.assert_array_equal(seen[0], op(X))
    expected = np.zeros(X.size)
    np.add.at(expected, positions.ravel(), w.ravel())
    np.testing.assert_allclose(g, expected.reshape(X.shape), rtol=1e-12)
    check_grads(lambda x: op(x) * w, X, order=2)


def test_ravel_k_view_writes_reach_the_array():
    # NumPy's ravel(order="K") of x.transpose(1, 0, 2) is a view of x: a write through it
    # changes x, and its derivative must follow
    def f(x):
        y = x * 1.0
        v = y.transpose(1, 0, 2).ravel(order="K")
        v[:5] = 2 * x.ravel()[:5] ** 2
        return y

    x = X.copy()
    assert np.shares_memory(np.ravel(x.transpose(1, 0, 2), order="K"), x)
    expected = X.copy()
    expected.ravel()[:5] = 2 * X.ravel()[:5] ** 2
    out = []
    fl.gradient(lambda x: (out.append(fl.stop_gradient(f(x))),
                           np.sum(f(x)))[1], X)
    np.testing.assert_array_equal(out[0], expected)
    check_grads(f, X, order=2)


def _saved_then_written(x):
    y = x.T * 1.0  # F-ordered, as eagerly
    z = y * y  # keeps y for the backward pass, so the write below copies it first
    y[0, 0] = 5.0
    return y.ravel(order="K") + z.ravel(order="K")


def _added_at(x):
    y = x.T * 1.0
    z = y * y
    np.add.at(y, (0, 0), 1.0)
    return y.ravel(order="K") + z.ravel(order="K")


# copies and casts that set the layout a later memory-order read sees
LAYOUTS = [
    ("ndarray.copy is C-ordered", lambda x: x.T.copy().ravel(order="K")),
    ("ndarray.copy(order='F')", lambda x: x.copy(order="F").ravel(order="K")),
    ("np.copy(order='F')", lambda x: np.copy(x, order="F").ravel(order="A")),
    ("np.copy(order='F') reshaped with A", lambda x: np.copy(x, order="F").reshape(6, order="A")),
    ("astype(order='F')", lambda x: x.astype(np.float64, order="F").ravel(order="K")),
    ("np.array(order='F', like=x)", lambda x: np.array(x, order="F", like=x).ravel(order="K")),
    ("a write into a kept F-ordered array", _saved_then_written),
    ("np.add.at into a kept F-ordered array", _added_at),
]


@pytest.mark.parametrize("name, f", LAYOUTS, ids=[c[0] for c in LAYOUTS])
def test_copies_keep_numpys_layout_for_memory_order_reads(name, f):
    # before: the traced copy ignored `order` (np.copy, ndarray.copy, astype, np.array), and
    # the copy a write makes of a kept array was C-ordered whatever the array's layout: a
    # later ravel(order="K") read another order than NumPy's, value and gradient, silently
    x = np.arange(6.0).reshape(2, 3) + 0.5
    w = np.random.default_rng(1).standard_normal(6)
    seen = []
    (g,) = fl.gradient(lambda x: (seen.append(fl.stop_gradient(f(x))), np.sum(f(x) * w))[1], x)
    np.testing.assert_array_equal(seen[0], f(x))
    fd = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[i] = 1e-6
        fd[i] = (np.sum(f(x + step) * w) - np.sum(f(x - step) * w)) / 2e-6
    np.testing.assert_allclose(g, fd, atol=1e-7)


P3 = np.random.default_rng(2).standard_normal((3, 4, 5)).transpose(1, 2, 0)  # no C/F order

# functions whose result NumPy lays out in its own way: a C array it fills (take, select,
# triu), the input's memory order (sort, partition, ufunc.accumulate), F for an F array (pad)
RESULT_LAYOUTS = [
    ("sort", lambda x: np.sort(x, axis=0)),
    ("partition", lambda x: np.partition(x, 1, axis=1)),
    ("median", lambda x: np.median(x, axis=0)),
    ("median axis 1", lambda x: np.median(x, axis=1)),
    ("quantile", lambda x: np.quantile(x, 0.3, axis=1)),  # C-ordered, whatever x's order
    ("quantiles", lambda x: np.quantile(x, [0.3, 0.6], axis=(0, 2), keepdims=True)),
    ("percentile", lambda x: np.percentile(x, 40.0, axis=-1)),
    ("median keepdims", lambda x: np.median(x, axis=0, keepdims=True)),
    ("median even", lambda x: np.median(x, axis=-1)),
    ("median of two axes", lambda x: np.median(x, axis=(0, 2), keepdims=True)),
    ("median of two axes, copied", lambda x: np.median(x[::2], axis=(0, 1))),
    ("triu", np.triu),
    ("tril", lambda x: np.tril(x, -1)),
    ("take", lambda x: np.take(x, [0, 1], axis=1)),
    ("compress", lambda x: np.compress([True, False, True], x, axis=1)),
    ("select", lambda x: np.select([x > 0], [x], 0.0)),
    ("minimum.accumulate", lambda x: np.minimum.accumulate(x, axis=1)),
    ("pad edge", lambda x: np.pad(x, 1, mode="edge")),
    ("pad reflect", lambda x: np.pad(x, 1, mode="reflect")),
    # views in NumPy (the input's memory order), C copies before: split pieces, einsum's
    # permutations; and meshgrid's copies, C in NumPy, were laid out as the input
    ("split", lambda x: np.split(x, 2, axis=0)[1]),
    ("array_split", lambda x: np.array_split(x, 3, axis=1)[0]),
    ("hsplit", lambda x: np.hsplit(x, [1])[1]),
    ("einsum identity", lambda x: np.einsum("ijk->ijk", x)),
    ("einsum permutation", lambda x: np.einsum("ijk->kij", x)),
    ("meshgrid", lambda x: np.meshgrid(x[0, :, 0], x[1, 0, :])[0]),
    ("meshgrid ij", lambda x: np.meshgrid(x[:, 0, 0], x[0, :, 1], x[1, 1, :],
                                          indexing="ij")[2]),
    # F for an F array (insert and delete allocate in its order; delete with several
    # indices is a masked index), C for cross's array, average's as NumPy's product and sum
    ("delete", lambda x: np.delete(x, 1, axis=1)),
    ("delete several", lambda x: np.delete(x, [0, 2], axis=1)),
    ("insert", lambda x: np.insert(x, 1, 0.5, axis=1)),
    ("insert several", lambda x: np.insert(x, [0, 2], x[:, :1], axis=1)),
    ("cross", lambda x: np.cross(x[:, :3], x[:, ::-1][:, :3], axis=1)),
    ("average", lambda x: np.average(x, axis=1, weights=np.arange(1.0, x.shape[1] + 1))),
    # a C array for np.dot's N-d product; np.real/np.imag of a complex array are strided
    # views, contiguous in neither order (F-contiguous copies before: order="A" read F)
    ("dot", lambda x: np.dot(x, x[0].T)),
    ("real", lambda x: np.real(x * (1 + 2j))),
    ("imag", lambda x: np.imag(x * (1 + 2j))),
    ("real of fft", lambda x: np.fft.fft(x, axis=1).real),
    # np.block's concatenations (F for F blocks), its copy of a lone array (C); np.resize's
    # C ravel
    ("block", lambda x: np.block([[x, x], [x, x]])),
    ("block of one", lambda x: np.block([x])),
    ("block of no list", np.block),
    ("resize", lambda x: np.resize(x, (2, 3, 7))),
    # the NaN reductions: NumPy's of a copy in the input's order
    ("nancumsum", lambda x: np.nancumsum(x, axis=1)),
    ("nancumprod", lambda x: np.nancumprod(x / 2, axis=0)),
    ("nanvar", lambda x: np.nanvar(x, axis=1, keepdims=True)),
    ("nanprod", lambda x: np.nanprod(x, axis=2)),
    ("unwrap", lambda x: np.unwrap(x * 3.0, axis=1)),  # a copy in the input's order
    ("vander", lambda x: np.vander(x[:, 0, 0], 4)),  # C, whatever the powers' order
    ("geomspace axis 1", lambda x: np.geomspace(x * x + 1, 2.0, 3, axis=1)),  # a moved view
    ("apply_over_axes", lambda x: np.apply_over_axes(np.sum, x, [0, 2])),
    # nanmedian in the order of the kept axes (a masked median), nanquantile C with its
    # quantiles last, then moved first
    ("nanmedian", lambda x: np.nanmedian(x, axis=1)),
    ("nanmedian keepdims", lambda x: np.nanmedian(x, axis=(0, 1), keepdims=True)),
    ("nanquantile", lambda x: np.nanquantile(x, [0.2, 0.7], axis=(0, 2))),
    ("nanquantile 2-d q", lambda x: np.nanquantile(x, [[0.2, 0.7, 0.1]], axis=1)),
    # review of 4ff9ee5: pieces of a broadcast array (a K copy of one is F; NumPy's pieces
    # are its views, read in C order); np.imag of a real array: zeros laid out as it
    ("split of a broadcast array", lambda x: np.split(np.broadcast_to(x[:1], x.shape), 2)[1]),
    ("split of a broadcast axis", lambda x: np.split(np.broadcast_to(x[:, :1], x.shape), 2)[0]),
    ("imag of a real array", lambda x: np.imag(x) + x),
    # NumPy's K copy (sort, median, np.gradient) puts a broadcast axis innermost, while its
    # iterator (accumulate, ravel) keeps it in place
    ("sort of a broadcast array", lambda x: np.sort(np.broadcast_to(x[:1], x.shape), axis=1)),
    ("median of a broadcast array", lambda x: np.median(np.broadcast_to(x[:1], x.shape), axis=2)),
    ("gradient of a broadcast array", lambda x: np.gradient(np.broadcast_to(x[:1], x.shape),
                                                            axis=1)),
    ("accumulate of a broadcast array", lambda x: np.maximum.accumulate(
        np.broadcast_to(x[:, :1], x.shape), axis=2)),
    # the NaN reductions reduce NumPy's K copy (F-like for a broadcast array); nanmean
    # divides the sum in place
    ("nanmean of a broadcast array", lambda x: np.nanmean(np.broadcast_to(x[:1], x.shape),
                                                          axis=2)),
    ("nansum of a broadcast array", lambda x: np.nansum(np.broadcast_to(x[:1], x.shape),
                                                        axis=1)),
    ("nanvar of a broadcast array", lambda x: np.nanvar(np.broadcast_to(x[:1], x.shape),
                                                        axis=1)),
    ("nanprod of a broadcast array", lambda x: np.nanprod(np.broadcast_to(x[:1], x.shape),
                                                          axis=2)),
]


@pytest.mark.parametrize("name, f", RESULT_LAYOUTS, ids=[c[0] for c in RESULT_LAYOUTS])
@pytest.mark.parametrize("x", [X.T + 0.05, P3], ids=["F-ordered", "permuted"])  # (no kinks)
@pytest.mark.parametrize("order", ["K", "A"])
def test_results_are_laid_out_as_numpys(name, f, x, order):
    # before: these kept the input's layout or gave C where NumPy does otherwise (and triu
    # kept an F layout since c3d59cf), so ravel(order="K") of the result read another order;
    # and the median along axis 1 of an F array was a strided view where NumPy's is
    # F-contiguous, so ravel(order="A") read it in C order
    def read(x):
        return np.ravel(f(x), order=order)

    w = np.random.default_rng(3).standard_normal(read(x).shape)
    seen = []
    (g,) = fl.gradient(lambda x: (seen.append(fl.stop_gradient(read(x))),
                                  np.sum(read(x) * w))[1], x)
    # (a layout read in another order is off by whole values; the products may differ in the
    # last bit: np.dot of 3-d arrays runs NumPy's own loops, whose rounding on CPUs with
    # AVX-512 differs from the BLAS product the traced einsum runs)
    np.testing.assert_allclose(seen[0], read(x), rtol=1e-14, atol=0)
    # the gradient against central differences of the plain NumPy function, on copies laid
    # out as x is (a C copy would be read in another order)
    fd = np.zeros(x.shape)
    for i in np.ndindex(x.shape):
        up, down = x.copy(order="K"), x.copy(order="K")
        up[i] += 1e-6
        down[i] -= 1e-6
        fd[i] = (np.sum(read(up) * w) - np.sum(read(down) * w)) / 2e-6
    np.testing.assert_allclose(g, fd, atol=1e-6)


DEVICE_CASES = [
    ("sort", lambda w: np.sort(w, axis=1)),
    ("partition", lambda w: np.partition(w, 1, axis=1)),
    ("take", lambda w: np.take(w, [0, 2], axis=1)),
    ("compress", lambda w: np.compress([True, False, True], w, axis=1)),
    ("select", lambda w: np.select([w > 0], [w], 0.0)),
    ("pad edge", lambda w: np.pad(w, 1, mode="edge")),
    ("maximum.accumulate", lambda w: np.maximum.accumulate(w, axis=1)),
]


@pytest.mark.parametrize("name, f", DEVICE_CASES, ids=[c[0] for c in DEVICE_CASES])
def test_layouts_leave_device_arrays_alone(name, f):
    # a JAX array (fl.xla) has no memory layout: these rules read none there (an
    # AttributeError on .strides otherwise), and its gradient is NumPy's
    pytest.importorskip("jax", reason="fl.xla needs JAX")
    w0 = np.array([[3.0, 1.0, 2.0], [0.5, 4.0, -1.0]])
    c = np.arange(1.0, 1.0 + np.size(f(w0))).reshape(np.shape(f(w0)))
    (g,) = fl.gradient(lambda w: np.sum(f(w) ** 2 * c), fl.xla({"w": w0})["w"])
    (g0,) = fl.gradient(lambda w: np.sum(f(w) ** 2 * c), w0)
    np.testing.assert_allclose(np.asarray(g), g0, rtol=1e-6)

