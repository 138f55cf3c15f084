"""The xla back end's matrix decompositions (compiler/xla_linalg.py): QR, eigh, the SVD and
singular values, pinv and expm agree with eager fluxml, values and gradients, with NumPy's
conventions (one triangle read by eigh, NumPy's pinv cutoff); QR's full-rank check runs on
every call. No XLA lowering before: a CompileError naming the primitive.

Skipped without JAX (an optional extra: ``pip install 'fluxml[xla]'``)."""

import numpy as np
import pytest

pytest.importorskip("jax", reason="the xla back end needs JAX: pip install 'fluxml[xla]'")

import fluxml as fl  # noqa: E402


def _svd(a):
    return np.linalg.svd(a, full_matrices=False)


CASES = {
    "qr": lambda a: np.sum(np.linalg.qr(a)[0] * np.arange(a.shape[-1]))
    + np.sum(np.linalg.qr(a)[1] ** 2),
    "eigh": lambda a: np.sum(np.linalg.eigh(a)[1] ** 2 * np.arange(a.shape[-1]))
    + np.sum(np.linalg.eigh(a)[0]),
    "eigh upper": lambda a: np.sum(np.linalg.eigh(a, UPLO="U")[0] ** 3),
    "eigvalsh": lambda a: np.sum(np.linalg.eigvalsh(a) ** 2),
    "svd values": lambda a: np.sum(np.linalg.svd(a)[1] ** 3),
    "svd polar": lambda a: np.sum(_svd(a)[0] @ _svd(a)[2] * np.arange(a.shape[-1])),
    "svd hermitian": lambda a: np.sum(np.linalg.svd(a @ np.swapaxes(a, -1, -2),
                                                    hermitian=True)[1]),
    "svd hermitian triangle": lambda a: np.sum(np.linalg.svd(a, hermitian=True)[1] ** 2)
    + np.sum(np.linalg.svd(a, hermitian=True)[0] ** 3),  # (a is not symmetric: one triangle)
    "pinv hermitian": lambda a: np.sum(np.linalg.pinv(a, hermitian=True) ** 2),
    "pinv": lambda a: np.sum(np.linalg.pinv(a) ** 2),
    "pinv rcond": lambda a: np.sum(np.linalg.pinv(a, rcond=1e-3)),
    "pinv rtol": lambda a: np.sum(np.linalg.pinv(a, rtol=None)),
    "2-norm": lambda a: np.sum(np.linalg.norm(a, 2, axis=(-2, -1))),
    "nuclear norm": lambda a: np.sum(np.linalg.norm(a, "nuc", axis=(-2, -1))),
    "expm": lambda a: np.sum(fl.scipy.linalg.expm(a) ** 2),
}
RNG = np.random.default_rng(0)
# a square, a stack (of two), a float32 matrix; eigh reads a non-symmetric input's triangle
MATRICES = {"square": RNG.standard_normal((4, 4)), "stack": RNG.standard_normal((2, 4, 4)),
            "float32": RNG.standard_normal((4, 4)).astype(np.float32)}


def _agrees(f, a):
    compiled = fl.compile(lambda a: (f(a), fl.gradient(f, a)[0]), backend="xla",
                          background=False)
    value, grad = compiled(a)
    expected = fl.gradient(f, a)[0]
    tol = 2e-4 if a.dtype == np.float32 else 1e-9
    np.testing.assert_allclose(np.asarray(value), f(a), rtol=tol)
    np.testing.assert_allclose(np.asarray(grad), expected, rtol=tol,
                               atol=tol * np.abs(expected).max())
    assert np.asarray(grad).dtype == a.dtype


@pytest.mark.parametrize("name", CASES)
def test_values_and_gradients_agree_with_eager(name):
    _agrees(CASES[name], MATRICES["square"])


@pytest.mark.parametrize("matrix", ["stack", "float32"])
def test_stacks_and_float32_agree_with_eager(matrix):
    """A few cases in one program (one XLA compile)."""
    _agrees(lambda a: sum(CASES[name](a) for name in ("qr", "eigh", "svd polar", "pinv")),
            MATRICES[matrix])


def test_tall_matrices():
    _agrees(lambda a: sum(CASES[name](a) for name in ("qr", "svd polar", "pinv", "2-norm")),
            RNG.standard_normal((5, 3)))


def test_pinv_drops_the_singular_values_numpy_drops():
    """NumPy's cutoff: rcond (1e-15 unless given; rtol=None: max(m, n) eps) times the
    largest singular value (jnp's own default is max(m, n) eps)."""
    q1, _ = np.linalg.qr(RNG.standard_normal((3, 3)))
    q2, _ = np.linalg.qr(RNG.standard_normal((3, 3)))
    a = q1 @ np.diag([1.0, 1e-4, 1e-10]) @ q2.T
    for kw in ({}, {"rcond": 1e-6}, {"rcond": 1e-12}, {"rtol": None}, {"rtol": 1e-3}):
        compiled = fl.compile(lambda a, kw=kw: np.linalg.pinv(a, **kw), backend="xla",
                              background=False)
        expected = np.linalg.pinv(a, **kw)
        np.testing.assert_allclose(np.asarray(compiled(a)), expected,
                                   atol=1e-6 * np.abs(expected).max())


def test_qr_derivative_refuses_a_rank_deficient_matrix_on_every_call():
    grad = fl.compile(lambda a: fl.gradient(lambda b: np.sum(np.linalg.qr(b)[0]), a)[0],
                      backend="xla", background=False)
    grad(MATRICES["square"])
    deficient = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    with pytest.raises(fl.DifferentiationError, match="without full column rank"):
        grad(deficient)


def test_a_run_time_check_inside_control_flow_is_refused_by_name():
    """A check's value traced inside lax.scan's body leaked out of it (JAX's
    UnexpectedTracerError); it is refused by name, and the numpy back end runs it."""
    def body(c, a):
        return c + fl.gradient(lambda a: np.sum(np.linalg.qr(a)[0]), a)[0].sum(), a

    stack = RNG.standard_normal((2, 3, 3))
    expected = fl.compile(lambda xs: fl.scan(body, 0.0, xs)[0])(stack)
    assert np.isfinite(expected)
    compiled = fl.compile(lambda xs: fl.scan(body, 0.0, xs)[0], backend="xla",
                          background=False)
    with pytest.raises(fl.compiler.CompileError, match="holds a check made on every run"):
        compiled(stack)


def test_ufunc_primitives_take_lists_as_numpy_does():
    """jnp's ufuncs refuse lists ('maximum requires ndarray or scalar arguments, got list'),
    which NumPy reads as arrays: made arrays (review; functions run untraced were done)."""
    x = np.array([0.1, 0.3, 0.7, 1.0])
    for f, arg in [(lambda x: np.maximum(x, [0.5, 0.2, 0.9, 0.0]), x),
                   (lambda x: np.add(x, (1.0, 2.0, 3.0, 4.0)), x),
                   (lambda x: np.heaviside(x - 0.3, [0.5]), x),
                   (lambda x: np.add(x, [1, 2, 3, 4]), np.arange(4))]:
        out = fl.compile(f, backend="xla", background=False)(arg)
        np.testing.assert_array_equal(np.asarray(out), f(arg))
        assert np.asarray(out).dtype == f(arg).dtype
