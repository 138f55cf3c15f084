"""gather and scatter against loops written here, and NNlib's documented examples (indices
from 0 here). (Checked by hand against torch.Tensor.scatter_reduce with sum, mean, amax and
amin, include_self=False, forward and gradient.)"""

import functools

import numpy as np
import pytest

import fluxml as fl
from fluxml.nnlib.scatter import gather, scatter
from fluxml.testing import check_grads

RNG = np.random.default_rng(7)
REDUCE = {"add": np.sum, "sub": lambda v, axis: -np.sum(v, axis=axis), "mean": np.mean,
          "max": np.max, "min": np.min}
EMPTY = {"add": 0.0, "sub": 0.0, "mean": 0.0, "max": -np.inf, "min": np.inf}


def naive_scatter(op, src, idx, lead):
    inner = src.shape[idx[0].ndim:]
    out = np.full(lead + inner, EMPTY[op])
    for place in np.ndindex(*lead):
        hits = [k for k in np.ndindex(*idx[0].shape) if tuple(i[k] for i in idx) == place]
        if hits:
            out[place] = REDUCE[op](np.stack([src[k] for k in hits]), axis=0)
    return out


def test_nnlib_examples():
    # NNlib.gather([1,20,300,4000], [2,4,2]) == [20, 4000, 20]
    np.testing.assert_array_equal(gather(np.array([1, 20, 300, 4000]), np.array([1, 3, 1])),
                                  [20, 4000, 20])
    # NNlib.scatter(+, [10,100,1000], [3,1,2]) == [100, 1000, 10]
    np.testing.assert_array_equal(scatter("add", np.array([10.0, 100, 1000]),
                                          np.array([2, 0, 1])), [100, 1000, 10])
    # NNlib.scatter(*, [10,200,3000], [1,4,2]; init=10, dstsize=6): mul is not offered;
    # its max twin, with init and dstsize
    got = scatter("max", np.array([10.0, 200, 3000]), np.array([0, 3, 1]), init=10.0,
                  dstsize=(6,))
    np.testing.assert_array_equal(got, [10, 3000, 10, 200, 10, 10])


@pytest.mark.parametrize("op", sorted(REDUCE))
def test_scatter_against_a_loop(op):
    src = RNG.normal(size=(4, 3, 2))
    idx = (RNG.integers(0, 3, size=(4, 3)), RNG.integers(0, 2, size=(4, 3)))
    np.testing.assert_allclose(scatter(op, src, *idx), naive_scatter(op, src, idx, (3, 2)),
                               rtol=1e-13)
    one = (RNG.integers(0, 5, size=(4,)),)
    np.testing.assert_allclose(scatter(op, src, *one, dstsize=(6, 3, 2)),
                               naive_scatter(op, src, one, (6,)), rtol=1e-13)


def test_gather_against_a_loop_and_its_gradient_is_scatter_add():
    src = RNG.normal(size=(5, 3))
    idx = RNG.integers(0, 5, size=(2, 4))
    got = gather(src, idx)
    want = np.array([[src[idx[a, b]] for b in range(4)] for a in range(2)])
    np.testing.assert_array_equal(got, want)
    w = RNG.normal(size=(2, 4, 3))
    g = fl.gradient(lambda s: np.sum(gather(s, idx) * w), src)[0]
    np.testing.assert_allclose(g, scatter("add", w, idx, dstsize=(5, 3)), rtol=1e-13)
    check_grads(lambda s: gather(s, idx) ** 2, src)


@pytest.mark.parametrize("op", sorted(REDUCE))
def test_scatter_gradients_second_order(op):
    src = RNG.normal(size=(5, 2))  # continuous values: no ties
    idx = np.array([0, 2, 0, 2, 1])
    check_grads(lambda s: np.sin(scatter(op, s, idx)), src)
    check_grads(lambda s: np.sin(scatter(op, s, idx, init=0.1, dstsize=(4, 2))), src)


@pytest.mark.parametrize("kind", ["max", "min"])
def test_ties_split_the_gradient_evenly_and_the_value_stays_exact(kind):
    """The first tying source took the whole gradient. Now each takes an even share, as
    np.max's rule here and torch's scatter_reduce("amax"/"amin") (checked by hand: 0.5, 0.5
    for two ties; 1/3 each with include_self=True and a self that ties, fluxml's init)."""
    sign = 1.0 if kind == "max" else -1.0
    src = sign * np.array([[2.0, -np.inf, 0.1], [2.0, 1.0, 0.1], [1.0, -np.inf, 0.1],
                           [5.0, -np.inf, -0.0]])
    idx = np.array([0, 0, 0, 1])
    seen = {}

    def total(s):
        out = scatter(kind, s, idx)
        seen["out"] = fl.ad.core.raw(out)
        return np.sum(out * np.array([1.0, 2.0, 3.0]))

    g = fl.gradient(total, src)[0]
    want = sign * np.array([[2.0, 1.0, 0.1], [5.0, -np.inf, -0.0]])  # (max: -0.0 kept)
    assert seen["out"].tobytes() == scatter(kind, src, idx).tobytes() == want.tobytes()
    third = 1 / 3
    np.testing.assert_array_equal(g, [[0.5, 0, 3 * third], [0.5, 2, 3 * third],
                                      [0, 0, 3 * third], [1, 2, 3]])
    # init ties too: it counts as one of them (its share goes nowhere)
    g = fl.gradient(lambda s: np.sum(scatter(kind, s, idx, init=sign * 2.0)), src[:, :1])[0]
    np.testing.assert_allclose(g, [[third], [third], [0], [1]], rtol=1e-15)
    # an extremum every source misses (init beats them): no gradient, init's value
    got = fl.withgradient(lambda s: np.sum(scatter(kind, s, idx, init=sign * 9.0)), src[:, :1])
    assert got[0] == sign * 18.0 and not got[1][0].any()


def test_infinite_and_nan_extrema_share_the_gradient_and_stay_clean():
    src = np.array([[-np.inf, 2.0], [-np.inf, np.nan], [3.0, np.nan]])
    idx = np.array([0, 0, 1])
    got = fl.withgradient(lambda s: np.sum(scatter("max", s, idx)[:, 0]), src)
    assert got[0] == -np.inf
    np.testing.assert_array_equal(got[1][0], [[0.5, 0], [0.5, 0], [1, 0]])  # (no NaN)
    g = fl.gradient(lambda s: np.sum(scatter("max", s, idx)[:, 1]), src)[0]
    np.testing.assert_array_equal(g, [[0, 0], [0, 1], [0, 1]])  # a NaN wins, as in np.max
    assert scatter("min", np.array([np.inf, 3.0]), np.array([1, 1])).tolist() == [np.inf, 3.0]


@pytest.mark.parametrize("kind", ["max", "min"])
def test_ties_agree_with_np_max_over_the_same_sources(kind):
    """scatter's rule is np.max's (np.min's) over each destination's sources, first and
    second order, forward mode too (fl.jvp)."""
    src = np.round(RNG.normal(size=(6, 2)), 0)  # integers: many ties
    idx = np.array([0, 1, 0, 0, 1, 1])
    red = np.max if kind == "max" else np.min

    def by_reduction(s):
        return np.stack([red(s[idx == d], axis=0) for d in (0, 1)])

    def f(fn):
        return lambda s: np.sum(np.sin(fn(s)) * np.array([1.0, -2.0]))

    ours = fl.gradient(f(lambda s: scatter(kind, s, idx)), src)[0]
    np.testing.assert_allclose(ours, fl.gradient(f(by_reduction), src)[0], rtol=1e-14)
    t = RNG.normal(size=src.shape)
    np.testing.assert_allclose(fl.jvp(lambda s: scatter(kind, s, idx), (src,), (t,))[1],
                               fl.jvp(by_reduction, (src,), (t,))[1], rtol=1e-14)
    hess = fl.hessian(f(lambda s: scatter(kind, s, idx)), src)
    np.testing.assert_allclose(hess, fl.hessian(f(by_reduction), src), rtol=1e-13, atol=1e-15)


def test_float32_stays_float32():
    src = np.ones((3, 2), np.float32)
    for op in REDUCE:
        assert scatter(op, src, np.array([0, 1, 1])).dtype == np.float32
        assert fl.gradient(lambda s, op=op: np.sum(scatter(op, s, np.array([0, 1, 1]))),
                           src)[0].dtype == np.float32
    assert gather(src, np.array([2])).dtype == np.float32


def test_bad_input():
    src = np.ones((3, 2))
    with pytest.raises(ValueError, match="scatter: op must be one of 'add'"):
        scatter("prod", src, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"src's leading axes must match the index shape \(2,\)"):
        scatter("add", src, np.array([0, 1]))
    with pytest.raises(IndexError, match=r"scatter: indices along axis 0 must lie in \[0, 2\)"):
        scatter("add", src, np.array([0, 1, 2]), dstsize=(2, 2))
    with pytest.raises(ValueError, match="dstsize must be 1 indexed sizes followed by"):
        scatter("add", src, np.array([0, 1, 2]), dstsize=(3, 5))
    with pytest.raises(IndexError, match=r"gather: indices along axis 0 must lie in \[0, 3\)"):
        gather(src, np.array([-1]))
    with pytest.raises(TypeError, match="gather: indices must be integer arrays; got dtype"):
        gather(src, np.array([0.0]))
    with pytest.raises(ValueError, match="gather: the index arrays must share one shape"):
        gather(src, np.array([0]), np.array([0, 1]))
    with pytest.raises(ValueError, match="scatter: no indices to size dst by"):
        scatter("add", np.ones((0, 2)), np.zeros(0, int))


@pytest.mark.parametrize("backend", ["numpy", "xla"])
@pytest.mark.parametrize("kind", ["max", "min"])
def test_compiled_extrema_match_eager_value_and_gradient(kind, backend):
    """fl.compile of a scatter max/min failed (np.maximum.at into a plain array from a
    traced source). Compiled, value and gradient are eager's, bit for bit: ties, infinite
    and NaN extrema, init, two index arrays; the gradient against np.max's by destination."""
    if backend == "xla":
        pytest.importorskip("jax", reason="the xla back end needs JAX")
    compile = functools.partial(fl.compile, backend=backend)
    sign = 1.0 if kind == "max" else -1.0
    src = sign * np.array([[2.0, -np.inf], [2.0, np.nan], [1.0, -np.inf], [5.0, 3.0]])
    idx = np.array([0, 0, 0, 1])
    w = np.array([[1.0, -2.0], [0.5, 3.0], [2.0, 1.0]])

    def loss(s, **kw):
        out = scatter(kind, s, idx, **kw)
        return np.sum(np.where(np.isfinite(out), out, 0) * w[:len(out)])

    for kw in ({}, {"init": sign * 2.0, "dstsize": (3, 2)}):
        want = fl.withgradient(lambda s: loss(s, **kw), src)
        got = compile(lambda s: fl.withgradient(lambda t: loss(t, **kw), s))(src)
        assert got[0] == want[0]
        np.testing.assert_array_equal(got[1][0], want[1][0])
        out = compile(lambda s: scatter(kind, s, idx, **kw))(src)
        assert out.tobytes() == scatter(kind, src, idx, **kw).tobytes()
    red = np.max if kind == "max" else np.min
    finite = src[:, :1]
    g = compile(lambda s: fl.gradient(lambda t: np.sum(scatter(kind, t, idx) ** 2), s))
    by_hand = fl.gradient(lambda t: red(t[:3]) ** 2 + t[3] ** 2, finite[:, 0])[0]
    np.testing.assert_array_equal(g(finite)[0][:, 0], by_hand)  # ties: 0.5 each
    two = (np.array([0, 1, 0, 1, 0]), np.array([1, 1, 1, 0, 0]))
    v = RNG.normal(size=(5, 3))
    f = compile(lambda s: fl.gradient(lambda t: np.sum(np.sin(scatter(kind, t, *two))), s))
    np.testing.assert_allclose(  # (XLA's cos may differ from NumPy's in the last bit)
        f(v)[0], fl.gradient(lambda t: np.sum(np.sin(scatter(kind, t, *two))), v)[0],
        rtol=1e-15)


def test_booleans_count_as_zero_and_one():
    """Boolean sources were reduced in a boolean dst: a sum was a logical or (two Trues gave
    True) and a mean of True and False was 1, silently; they count as np.sum counts them."""
    src = np.array([True, False, True, True])
    idx = np.array([0, 0, 1, 1])
    np.testing.assert_array_equal(scatter("add", src, idx), [1, 2])
    np.testing.assert_array_equal(scatter("sub", src, idx), [-1, -2])
    np.testing.assert_array_equal(scatter("mean", src, idx), [0.5, 1.0])
    np.testing.assert_array_equal(scatter("max", src, idx), [True, True])  # max: a logical or


@pytest.mark.parametrize("op", ["max", "min"])
def test_complex_extrema_are_refused(op):
    """max and min of complex sources were NumPy's lexicographic ones (real part first), and
    differentiated as such, silently; max pooling refuses complex input, and so does this."""
    src = np.array([[1 + 1j], [2 - 5j], [0.5 + 9j]])
    with pytest.raises(TypeError, match=f"scatter: complex src \\(complex128\\) has no {op}imum"):
        scatter(op, src, np.array([0, 0, 1]))
    np.testing.assert_allclose(scatter("add", src, np.array([0, 0, 1])), [[3 - 4j], [0.5 + 9j]])
