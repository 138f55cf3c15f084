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
