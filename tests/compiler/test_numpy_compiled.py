"""NumPy functions whose rules pick segments, bins or cases on the values, compiled: their
values and gradients under ``fl.compile`` (NumPy and XLA back ends, the latter skipped without
JAX) equal eager fluxml's, on the inputs traced and on new ones, and eager fluxml's equal
NumPy's values and central finite differences."""

import numpy as np
import pytest

import fluxml as fl
from tests.compiler.test_control import fd_grad

BACKENDS = ["numpy", "xla"]


def _backend(name):
    if name == "xla":
        pytest.importorskip("jax", reason="the xla back end needs JAX: pip install 'fluxml[xla]'")
    return name


def _compile(fn, backend):
    """``fl.compile`` on ``backend``, XLA's program from the first call (not the NumPy tier
    that runs while XLA compiles in the background)."""
    return fl.compile(fn, backend=_backend(backend), background=False)


def _compiled_equals_eager(f, make, backend, calls=2, seed=0):
    """``f``'s value and gradient compiled, against eager, on ``calls`` fresh inputs."""
    rng = np.random.default_rng(seed)

    def both(x):
        return f(x), fl.gradient(f, x)[0]

    compiled = _compile(both, backend)
    for _ in range(calls):
        x = make(rng)
        value, grad = compiled(x.copy())
        want_value, want_grad = both(x.copy())
        np.testing.assert_allclose(np.asarray(value), want_value, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(np.asarray(grad), want_grad, rtol=1e-12, atol=1e-12)


XP = np.array([0.0, 0.3, 0.5, 0.9, 1.2])
FP = np.array([1.0, -0.5, 2.0, 0.25, 1.5])


@pytest.mark.parametrize("backend", BACKENDS)
def test_interp_with_plain_samples_compiles(backend):
    # refused before (both back ends): the segment index, known at run time only, indexed the
    # plain xp and fp ('converting a traced integer array to a NumPy array')
    w = np.random.default_rng(1).standard_normal(7)

    def f(x):
        return np.sum(w * np.interp(x, XP, FP, left=-1.0))

    def make(rng):
        return rng.uniform(-0.2, 1.4, 7)  # outside the data on both sides too

    _compiled_equals_eager(f, make, backend)
    x = make(np.random.default_rng(2))
    np.testing.assert_allclose(fl.gradient(f, x)[0], fd_grad(f, x), atol=1e-7)


@pytest.mark.parametrize("backend", BACKENDS)
def test_interp_with_traced_samples_compiles(backend):
    x0 = np.random.default_rng(3).uniform(0, 1.2, 6)

    def f(fp):
        return np.sum(np.interp(x0, XP, fp) ** 2)

    _compiled_equals_eager(f, lambda rng: rng.standard_normal(5), backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("search", ["digitize", "searchsorted", "isin"])
def test_value_searches_take_lists_under_xla(backend, search):
    # XLA: jnp's namesakes refuse a list where NumPy reads an array (np.digitize(x, [0.2, 0.5])
    # was refused: 'the XLA lowering ... does not match the program: TypeError')
    bins = [0.2, 0.5, 0.7]
    index = {"digitize": lambda x: np.digitize(x, bins, right=True),
             "searchsorted": lambda x: np.searchsorted(bins, x),
             "isin": lambda x: np.isin(np.round(x, 1), [0.2, 0.5])}[search]

    def f(x):
        return np.sum(x**2 * index(x))

    _compiled_equals_eager(f, lambda rng: rng.random(6), backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("space", ["linspace", "logspace", "geomspace"])
def test_spaces_with_traced_ends_compile(backend, space):
    # refused before (both back ends): linspace asked whether a step is 0 (NumPy divides
    # first then) and geomspace whether an end is 0 with a Python `if` ('bool(x) ... needs a
    # concrete value'); logspace is linspace's
    make = {"linspace": lambda r: r.standard_normal(2),
            "logspace": lambda r: r.standard_normal(2),
            "geomspace": lambda r: r.uniform(0.5, 2.0, 2) * r.choice([-1.0, 1.0])}[space]
    func = getattr(np, space)

    def f(a):
        return np.sum(func(a[0], a[0] * 1.5 + 0.25 * np.sign(a[0]), 6) ** 2)

    _compiled_equals_eager(f, make, backend, calls=3)
    a = make(np.random.default_rng(5))
    np.testing.assert_allclose(fl.gradient(f, a)[0], fd_grad(f, a), rtol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_linspace_denormal_step_compiled_as_numpy(backend):
    # a step that is 0 in floating point: NumPy divides first (each entry i * delta / div), on
    # each run of the program as eagerly
    compiled = _compile(lambda a: np.linspace(a[0], a[1], 4), backend)
    # (XLA on the CPU flushes subnormal numbers to 0: its arithmetic, not the rule's)
    tiny = [[5e-324, 1e-323], [1e-320, 2e-320]] if backend == "numpy" else [[1e-300, 3e-300]]
    for ends in [[1.0, 2.0], *tiny]:
        ends = np.array(ends)
        np.testing.assert_array_equal(np.asarray(compiled(ends)), np.linspace(*ends, 4))


@pytest.mark.parametrize("backend", BACKENDS)
def test_geomspace_refuses_zero_on_every_run(backend):
    compiled = _compile(lambda a: np.geomspace(a[0], a[1], 4), backend)
    np.testing.assert_allclose(np.asarray(compiled(np.array([1.0, 8.0]))), [1, 2, 4, 8])
    for ends in ([0.0, 8.0], [1.0, 0.0]):
        with pytest.raises(ValueError, match="Geometric sequence cannot include zero"):
            compiled(np.array(ends))


HISTOGRAMS = {
    "edges": lambda a, w: np.histogram(a, 4)[1] * 1.0,
    "counts": lambda a, w: np.histogram(a, 4)[0] * a[:4],
    "weights": lambda a, w: np.histogram(a, 3, weights=w * w)[0],
    "density": lambda a, w: np.histogram(a, 3, density=True)[0],
    "edges given": lambda a, w: np.histogram(a, [0.0, 0.25, 0.6, 1.0], weights=w,
                                             density=True)[0],
    "range": lambda a, w: np.histogram(a, 5, range=(a[0], 1.0), weights=w)[0],
    "bin edges": lambda a, w: np.histogram_bin_edges(a, 6),
    "dd": lambda a, w: np.histogramdd(np.stack([a, a[::-1]], axis=1), (4, 2), weights=w,
                                      density=True)[0],
    "dd edges": lambda a, w: np.histogramdd(np.stack([a, w], axis=1), 3)[1][1],
    "2d": lambda a, w: np.histogram2d(a, w, [4, np.array([-3.0, 0.0, 3.0])])[0] * a[0],
}


@pytest.mark.parametrize("backend, name", [("numpy", n) for n in HISTOGRAMS] + [
    ("xla", n) for n in ("counts", "density", "edges given", "dd")])  # (XLA's compiles: slow)
def test_histogram_compiles(backend, name):
    # no rule before (a DifferentiationError, eagerly and compiled); the samples include the
    # edges of 4 bins of [0, 1] (the last bin holds its right edge)
    f = HISTOGRAMS[name]
    on_edges = np.array([0.0, 0.25, 0.5, 0.75, 1.0, 0.5])

    def both(a, w):
        value = f(a, w)
        return value, fl.gradient(lambda a, w: np.sum(np.sin(f(a, w))), a, w)

    compiled = _compile(both, backend)
    rng = np.random.default_rng(4)
    for a in (on_edges, rng.random(6), rng.random(6)):
        w = rng.standard_normal(6)
        got, want = compiled(a.copy(), w.copy()), both(a.copy(), w.copy())
        if backend == "numpy":  # the same comparisons, NumPy's arithmetic
            np.testing.assert_array_equal(got[0], want[0])
        else:  # the same bins; XLA's rounding of the divisions
            np.testing.assert_allclose(np.asarray(got[0]), want[0], rtol=1e-14, atol=0)
        for g, e in zip(got[1], want[1]):
            assert (g is None) == (e is None)
            if e is not None:
                np.testing.assert_allclose(np.asarray(g), e, rtol=1e-13, atol=1e-13)
    np.testing.assert_array_equal(want[0], f(a, w))  # eager is NumPy


@pytest.mark.parametrize("backend", BACKENDS)
def test_histogram_errors_on_every_run(backend):
    compiled = _compile(lambda a: np.histogram(a, 3, density=True), backend)
    a = np.array([0.1, 0.5, 0.9])
    compiled(a)
    with pytest.raises(ValueError, match=r"autodetected range of \[nan, nan\] is not finite"):
        compiled(np.array([np.nan, 0.5, 0.9]))
    ranged = _compile(lambda a, r: np.histogram(a, 2, range=(r[0], r[1]))[0], backend)
    ranged(a, np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="max must be larger than min"):
        ranged(a, np.array([1.0, 0.0]))
    edges = _compile(lambda a, b: np.histogram(a, b)[0], backend)
    edges(a, np.array([0.0, 0.5, 1.0]))
    with pytest.raises(ValueError, match="must increase monotonically"):
        edges(a, np.array([0.0, 1.0, 0.5]))


def test_histogram_refuses_a_rule_for_bins_under_compile():
    with pytest.raises(fl.CompileError, match="the number of bins a rule picks depends"):
        fl.compile(lambda a: np.histogram(a, "auto")[1])(np.random.default_rng(0).random(9))


def test_histogram_compiled_sums_many_weights_as_numpy():
    # more samples than NumPy's block (65536): its sums block by block, to the bit
    rng = np.random.default_rng(6)
    a, w = rng.standard_normal(140_000), rng.standard_normal(140_000) * 1e3
    for bins in (7, np.array([-3.0, -0.2, 0.0, 0.4, 3.0])):
        compiled = fl.compile(lambda a, w, bins=bins: np.histogram(a, bins, weights=w))
        for got, want in zip(compiled(a, w), np.histogram(a, bins, weights=w)):
            np.testing.assert_array_equal(got, want)


PIECEWISE = {
    "two cases": lambda a: np.piecewise(a, [a < 0.0, a >= 0.0], [lambda v: v**2, lambda v: 2 * v]),
    "otherwise": lambda a: np.piecewise(a, [a < -0.5, a > 0.5], [np.sin, 1.5, lambda v: v**3]),
    "bare condition": lambda a: np.reshape(
        np.piecewise(np.ravel(a), np.ravel(a) > 0.2, [np.exp, np.cos]), (3, 4)),
    "overlap": lambda a: np.piecewise(a, [a < 0.5, a > -0.5], [np.tanh, lambda v: -v]),
    "extra args": lambda a: np.piecewise(a, [a < 0.0], [lambda v, k: k * v, 0.0], 3.0),
    # sqrt has an infinite slope at 0 and none below: the entries it does not get must not
    # carry NaN into the gradient
    "sqrt": lambda a: np.piecewise(a, [a > 0.0], [np.sqrt, lambda v: v * 0.0]),
    "float64 results": lambda a: np.piecewise(a, [a > 0], [lambda v: v.astype(np.float64) / 3,
                                                           lambda v: v]),
}


@pytest.mark.parametrize("backend, name", [("numpy", n) for n in PIECEWISE] + [
    ("xla", n) for n in ("otherwise", "sqrt", "float64 results")])
def test_piecewise_compiles(backend, name):
    # refused before (both back ends): the conditions, known only when the program runs, were
    # read as values ('converting a traced integer array to a NumPy array')
    f = PIECEWISE[name]
    dtype = np.float32 if name == "float64 results" else np.float64

    def make(rng):
        a = rng.standard_normal((3, 4)).astype(dtype)
        a[0, 0] = 0.0
        return a

    def both(a):
        return f(a), fl.gradient(lambda a: np.sum(f(a) * np.arange(12).reshape(3, 4)), a)[0]

    compiled = _compile(both, backend)
    rng = np.random.default_rng(8)
    for _ in range(3):  # other entries in each case on each run
        a = make(rng)
        (value, grad), (want, want_grad) = compiled(a.copy()), both(a.copy())
        assert np.asarray(value).dtype == want.dtype == f(a).dtype
        np.testing.assert_allclose(np.asarray(value), want, rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(np.asarray(grad), want_grad, rtol=1e-6, atol=1e-12)
        assert not np.isnan(np.asarray(grad)).any()


def test_piecewise_refuses_functions_across_entries_under_compile():
    # each function gets all entries under compile: one whose results depend on which
    # entries it gets (NumPy passes the chosen ones) would be silently different
    a = np.random.default_rng(9).standard_normal(6)
    f = fl.compile(lambda a: np.piecewise(a, [a > 0], [lambda v: v - v.mean(), 0.0]))
    with pytest.raises(fl.DifferentiationError, match="must act entry by entry"):
        f(a)
    f = fl.compile(lambda a: np.piecewise(a, [a > 0], [lambda v: np.cumsum(v), 0.0]))
    with pytest.raises(fl.DifferentiationError, match="must act entry by entry"):
        f(a)
    # one that agrees where its condition holds everywhere in the traced call, but not on
    # fewer entries (NumPy's call on another run)
    f = fl.compile(lambda a: np.piecewise(a, [a > -10], [lambda v: v * len(v), 0.0]))
    with pytest.raises(fl.DifferentiationError, match="must act entry by entry"):
        f(a)


@pytest.mark.parametrize("make", [
    lambda a: a * np.full_like(a, 2.0), lambda a: a * np.full_like(a, 2.0, order="F"),
    lambda a: a + np.zeros_like(a, order="C"), lambda a: np.ones_like(a, subok=False) * a,
    lambda a: _filled(np.empty_like(a, order="F"), a)])
def test_like_creation_lowers_to_xla(make):
    # refused before: np.full_like's rule passes order= (and a user may), which jnp's
    # namesakes do not take ('the XLA lowering ... does not match the program: TypeError');
    # it only lays out NumPy's memory: dropped
    def f(a):
        return np.sum(make(a) ** 2)

    _compiled_equals_eager(f, lambda rng: rng.standard_normal((2, 3)), "xla")


def _filled(buffer, a):
    buffer[...] = a * 3.0
    return buffer


@pytest.mark.parametrize("f", [
    lambda x: np.sort(x, axis=1), lambda x: np.median(x, axis=1),
    lambda x: np.quantile(x, 0.3), lambda x: np.interp(x[0], [0.0, 0.5, 1.0], x[1, :3])])
def test_forward_mode_gathers_lower_to_xla(f):
    # refused before: a tangent the function closes over is a constant of the program, which
    # forward mode gathers with an index known at run time (the sort's), and the XLA lowering
    # read it with .at, which NumPy's arrays lack ('does not match the program: AttributeError')
    rng = np.random.default_rng(12)
    x, t = rng.random((3, 4)), rng.standard_normal((3, 4))

    def tangent(x):
        return fl.jvp(lambda x: np.sum(np.sin(f(x))), (x,), (t,))[1]

    compiled = _compile(tangent, "xla")
    np.testing.assert_allclose(np.asarray(compiled(x)), tangent(x), rtol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(5, 3), (3, 4)])
def test_lstsq_compiles(backend, shape):
    # refused before (both back ends): the rank was a Python int of the values ('float(x) ...
    # needs a concrete value'); now a value of the program, as the residuals' check
    rng = np.random.default_rng(17)
    b = rng.standard_normal(shape[0])

    def f(a):
        return np.linalg.lstsq(a, b)

    def loss(a):
        x, residuals, rank, s = f(a)
        return np.sum(x**2) + np.sum(residuals) + np.sum(s)

    compiled = _compile(lambda a: (f(a), fl.gradient(loss, a)[0]), backend)
    for _ in range(2):
        a = rng.standard_normal(shape)
        (x, residuals, rank, s), grad = compiled(a)
        want = np.linalg.lstsq(a, b)
        for g, w in zip((x, residuals, s), (want[0], want[1], want[3])):
            np.testing.assert_allclose(np.asarray(g), w, rtol=1e-10, atol=1e-12)
        assert int(rank) == want[2]
        np.testing.assert_allclose(np.asarray(grad), fl.gradient(loss, a)[0], rtol=1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
def test_lstsq_residuals_refused_on_a_rank_deficient_run(backend):
    b = np.arange(5.0)
    deficient = np.random.default_rng(18).standard_normal((5, 3))
    deficient[:, 2] = deficient[:, 1]
    solution = _compile(lambda a: np.linalg.lstsq(a, b)[0], backend)
    solution(deficient + np.eye(5, 3))
    # the solution alone: NumPy's on every run
    np.testing.assert_allclose(np.asarray(solution(deficient)), np.linalg.lstsq(deficient, b)[0],
                               atol=1e-12)
    residuals = _compile(lambda a: np.linalg.lstsq(a, b)[1], backend)
    residuals(deficient + np.eye(5, 3))
    assert np.linalg.lstsq(deficient, b)[1].shape == (0,)  # NumPy's: none
    with pytest.raises(ValueError, match="rank 2 < 3 columns on this run"):
        residuals(deficient)


@pytest.mark.parametrize("backend", BACKENDS)
def test_polyfit_compiles_and_warns_on_every_run(backend):
    rng = np.random.default_rng(19)

    def both(x, y):
        return np.polyfit(x, y, 2), fl.gradient(lambda x, y: np.sum(np.polyfit(x, y, 2) ** 2),
                                                x, y)

    compiled = _compile(both, backend)
    for _ in range(2):
        x, y = rng.random(6), rng.standard_normal(6)
        (c, (gx, gy)), (_, (wx, wy)) = compiled(x, y), both(x, y)
        np.testing.assert_allclose(np.asarray(c), np.polyfit(x, y, 2), rtol=1e-10)
        np.testing.assert_allclose(np.asarray(gx), wx, rtol=1e-8)
        np.testing.assert_allclose(np.asarray(gy), wy, rtol=1e-8)
    fit = _compile(lambda x, y: np.polyfit(x, y, 2), backend)
    fit(rng.random(6), rng.random(6))
    with pytest.warns(np.exceptions.RankWarning, match="poorly conditioned"):
        fit(np.array([1.0, 1.0, 1.0, 2.0, 2.0, 2.0]), rng.random(6))


@pytest.mark.parametrize("backend", BACKENDS)
def test_complex_geomspace_compiles(backend):
    # refused before, eagerly in a derivative and compiled ('np.geomspace was called on complex
    # values ... right for real values only'); its derivative is the complex one of
    # start**(1-t) * stop**t, whatever the rotation
    def f(a):
        return np.geomspace(a[0], a[1], 5)

    def loss(a):
        return np.sum(np.abs(f(a) - 1.0) ** 2)

    compiled = _compile(lambda a: (f(a), fl.gradient(loss, a)[0]), backend)
    for a in ([1 + 1j, -2 - 0.5j], [-0.5j, 3 + 0.1j], [2.0 + 0j, 8.0 + 0j]):
        a = np.array(a)
        value, grad = compiled(a)
        np.testing.assert_allclose(np.asarray(value), f(a), rtol=1e-13)
        np.testing.assert_allclose(np.asarray(grad), fl.gradient(loss, a)[0], rtol=1e-12)
        # the gradient of a real function of z: d/dx - i d/dy, by central differences
        h, fd = 1e-6, np.zeros(2, complex)
        for k in range(2):
            e = np.zeros(2, complex)
            e[k] = h
            fd[k] = (loss(a + e) - loss(a - e)) / (2 * h) \
                - 1j * (loss(a + 1j * e) - loss(a - 1j * e)) / (2 * h)
        np.testing.assert_allclose(np.asarray(grad), fd, rtol=1e-6)


def test_rgamma_derivative_compiles():
    # refused before: its derivative's poles were found with np.asarray of the values
    # ('converting a traced array to a NumPy array')
    sp = pytest.importorskip("scipy.special")
    x = np.array([0.0, -1.0, -2.5, 0.7, 3.0])

    def grad(v):
        return fl.gradient(lambda v: np.sum(sp.rgamma(v)), v)[0]

    got = _compile(grad, "numpy")(x)
    # d/dx 1/gamma = -digamma/gamma, and (-1)^n n! at the pole -n
    with np.errstate(all="ignore"):
        want = np.where((x == np.round(x)) & (x <= 0), (-1.0) ** -x * sp.gamma(1 - x),
                        -sp.digamma(x) / sp.gamma(x))
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_eig_keeps_the_traced_dtype_or_refuses():
    # NumPy's eigenvalues are real where all are, complex otherwise. Traced with a real
    # spectrum, a run with a complex one was silently other: np.real(eigvals(a)) * 2 came back
    # complex, its imaginary parts kept (the traced np.real of a real array is no operation)
    real = np.array([[2.0, 1.0], [1.0, 3.0]])
    rotation = np.array([[0.0, -1.0], [1.0, 0.5]])

    def f(a):
        return np.real(np.linalg.eigvals(a)) * 2

    compiled = _compile(f, "numpy")
    np.testing.assert_array_equal(compiled(real), f(real))
    with pytest.raises(ValueError, match="this run's eigenvalues are complex"):
        compiled(rotation)
    # traced with a complex spectrum: a real one comes back as complex numbers (the same)
    def both(a):
        return np.linalg.eig(a), fl.gradient(lambda a: np.sum(np.abs(np.linalg.eigvals(a))), a)

    compiled = _compile(both, "numpy")
    for a in (rotation, real):
        ((w, v), (g,)), ((ww, wv), (wg,)) = compiled(a), both(a)
        assert w.dtype == v.dtype == np.complex128
        np.testing.assert_array_equal(w, ww)
        np.testing.assert_array_equal(v, wv)
        np.testing.assert_allclose(g, wg, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("backend", BACKENDS)
def test_real_if_close_compiles_and_checks_its_choice_on_every_run(backend):
    # a RecursionError before: the rule's own np.real_if_close of the program's value came
    # back to it; NumPy's result is real or complex by the values: the traced call's choice,
    # checked on every run
    small = np.array([1.0 + 1e-20j, 2.0 - 3e-19j])
    big = np.array([1.0 + 0.5j, 2.0 + 0j])

    def f(z):
        return np.real_if_close(z * 1.0) * 2

    for traced, other, says in ((small, big, "keeps"), (big, small, "drops")):
        compiled = _compile(f, backend)
        for z in (traced, traced * 3):
            got = np.asarray(compiled(z))
            assert got.dtype == f(z).dtype
            np.testing.assert_array_equal(got, f(z))
        with pytest.raises(ValueError, match=f"on this run NumPy {says} the imaginary part"):
            compiled(other)
    # and its derivative: the real part's where NumPy drops the imaginary one
    grad = _compile(lambda z: fl.gradient(lambda z: np.sum(np.real_if_close(z * 1.0) ** 2),
                                          z)[0], backend)
    np.testing.assert_allclose(np.asarray(grad(small)), 2 * np.real(small))


@pytest.mark.parametrize("backend", BACKENDS)
def test_poly_of_complex_roots_compiles_and_checks_their_pairing(backend):
    # refused before ('converting a traced array to a NumPy array'): NumPy's result is real
    # where the roots pair up as conjugates: the traced call's pairing, checked on every run
    paired = np.array([1 + 2j, 1 - 2j, 3 + 0j])
    unpaired = np.array([1 + 2j, 1 - 1j, 3 + 0j])

    def f(z):
        return np.poly(z * 1.0)

    for traced, other in ((paired, unpaired), (unpaired, paired)):
        compiled = _compile(f, backend)
        for z in (traced, traced * 2):
            got = np.asarray(compiled(z))
            assert got.dtype == f(z).dtype
            np.testing.assert_allclose(got, f(z), rtol=1e-14)
        with pytest.raises(ValueError, match="pair up as conjugates"):
            compiled(other)


def test_integer_quantiles_and_medians_keep_numpys_dtypes():
    """Compiled, the discrete quantile methods of integers came back float64 (a NaN mask's
    np.where, which integers do not need), where NumPy keeps int64 (review); the odd median of
    integers is NumPy's float64."""
    a = np.array([3, 1, 2])
    for f in (lambda x: np.quantile(x, 0.5, method="lower"),
              lambda x: np.percentile(x, [10, 90], method="nearest"),
              lambda x: np.median(x), lambda x: np.quantile(x, 0.5)):
        got, want = np.asarray(fl.compile(f)(a)), np.asarray(f(a))
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


def test_interp_and_histogram_of_closed_over_arrays_differentiated_inside():
    """A closed-over array that fl.gradient differentiates inside the compiled function
    (fp of np.interp, histogram weights) met an index known only at run time and failed:
    'converting a traced integer array to a NumPy array' (review)."""
    xp, fp = np.array([0.0, 1.0, 2.0, 4.0]), np.array([0.0, 10.0, 5.0, 7.0])
    x = np.array([0.5, 1.5, 3.0])

    def interp_grad(x):
        return fl.gradient(lambda fp: np.sum(np.interp(x, xp, fp) ** 2), fp)[0]

    np.testing.assert_allclose(fl.compile(interp_grad)(x), interp_grad(x), rtol=1e-14)
    bins, w = np.array([0.0, 1.0, 2.0, 4.0]), np.ones(3)

    def hist_grad(a):
        return fl.gradient(lambda w: np.sum(np.histogram(a, bins, weights=w)[0]
                                            * np.arange(3.0)), w)[0]

    np.testing.assert_allclose(fl.compile(hist_grad)(x), hist_grad(x), rtol=1e-14)
