"""fl.gpu / fl.cpu and the mixing error on a real GPU with CuPy.

These run only where CuPy imports and sees a CUDA device; elsewhere they skip, saying why.
(Written without a GPU at hand: see the branch's report for what has run on one.)
"""

from __future__ import annotations

import numpy as np
import pytest

import fluxml as fl
from fluxml.backend.cuda import cupy_status

cupy, WHY = cupy_status()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(cupy is None, reason=f"no GPU: {WHY}")]


def test_model_round_trip():
    fl.seed(0)
    w = np.ones((4, 4), np.float32)
    model = {"net": fl.Chain(fl.Dense(3, 4), fl.BatchNorm(4)), "a": w, "b": w}
    there = fl.gpu(model, strict=True)
    arrays = [x for x in fl.leaves(there) if hasattr(x, "shape")]
    assert arrays and all(type(x) is cupy.ndarray for x in arrays)
    assert there["a"] is there["b"]
    assert type(there["net"].layers[1].running_var) is cupy.ndarray
    assert fl.gpu(there) is there  # already there: nothing copied
    back = fl.cpu(there)
    for x, y in zip(fl.leaves(model), fl.leaves(back)):
        assert type(y) is type(x) and np.array_equal(x, y)
    assert fl.backend.array_module(there["a"]) is cupy
    assert fl.backend.device_of(there["a"]) == f"cuda:{cupy.cuda.Device().id}"


def test_device_out_of_range():
    count = cupy.cuda.runtime.getDeviceCount()
    with pytest.raises(ValueError, match=f"device={count}, but CuPy sees {count}"):
        fl.gpu(np.ones(2), device=count)


def test_mixing_cpu_and_gpu_names_both():
    w = fl.gpu(np.ones((2, 3)), strict=True)
    with pytest.raises(fl.backend.DeviceMismatchError,
                       match=r"argument 1 \(numpy.ndarray, shape \(3, 4\)\) is on cpu, while "
                             r"argument 0 \(cupy.ndarray, shape \(2, 3\)\) is on cuda:"):
        fl.gradient(lambda w: (w @ np.ones((3, 4))).sum(), w)


# --- the checks the stand-in device cannot make: CuPy's own kernels and NVRTC ----------------

def _gpu(tree):
    return fl.gpu(tree, strict=True)


def test_fused_kernels_compile_with_nvrtc_and_compute_what_numpy_computes():
    # the cupy back end's C++ (PREAMBLE's templates, the casts) through NVRTC; the values
    # against NumPy's ufuncs, as tests/compiler/test_cupy_on_a_second_library.py checks them
    # with an interpreter where there is no GPU
    from tests.compiler import cuda_c
    from tests.compiler import test_cupy_on_a_second_library as second

    checked = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        fused, inputs, kernel = second._random_kernel(rng)
        arrays = [second._values(rng, d, 64) for d in inputs]
        reference = cuda_c.ElementwiseKernel(kernel.params, kernel.result, kernel.operation,
                                             kernel.name, preamble=second.fusion.PREAMBLE)
        try:  # (where C leaves the result undefined, a NaN cast to an integer: not compared)
            reference(*[second.FakeDeviceArray(a) for a in arrays])
        except cuda_c.UndefinedBehaviour:
            continue
        with np.errstate(all="ignore"):
            want = np.broadcast_to(fused(*arrays), (64,))
        got = kernel(*[cupy.asarray(a) for a in arrays]).get()
        assert got.dtype == want.dtype, kernel.operation
        rtol = 1e-5 if want.dtype == np.float32 else 1e-12
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol, equal_nan=True,
                                   err_msg=kernel.operation)
        checked += 1
    assert checked > 30


def test_a_compiled_training_step_on_the_gpu_equals_the_eager_one_on_the_cpu():
    fl.seed(0)
    model = fl.f64(fl.Chain(fl.Dense(4, 16, fl.relu), fl.Dense(16, 3)))
    x, y = np.random.default_rng(1).standard_normal((32, 4)), np.eye(3)[np.arange(32) % 3]
    there = _gpu(model)
    opt, opt_there = fl.setup(fl.Adam(0.01), model), fl.setup(fl.Adam(0.01), there)

    def step(m, o, x, y):
        loss, (g,) = fl.withgradient(lambda m: fl.logitcrossentropy(m(x), y), m)
        fl.update(o, m, g)
        return loss

    compiled = fl.compile(step)  # (the back end picked by the arrays: cupy)
    gx, gy = _gpu(x), _gpu(y)
    for _ in range(3):
        want = step(model, opt, x, y)
        np.testing.assert_allclose(float(compiled(there, opt_there, gx, gy)), want, rtol=1e-10)
    assert compiled.tier == "cupy"
    for a, b in zip(fl.leaves(there), fl.leaves(model), strict=True):
        assert type(a) is cupy.ndarray
        np.testing.assert_allclose(a.get(), b, rtol=1e-10)
