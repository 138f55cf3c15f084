"""One operation on arrays of two devices: the error names both and the misplaced argument.

The second device is ``fakedevice``'s stand-in, which refuses NumPy arrays exactly as CuPy
does (TypeError "Unsupported type"); this checks the engine's diagnosis, not a GPU.
"""

from __future__ import annotations

import numpy as np
import pytest

import fluxml as fl
from fluxml.backend import DeviceMismatchError
from tests.backend.fakedevice import FAKE, FakeDeviceArray


def test_reverse_mode_names_both_devices_and_the_argument():
    w = FakeDeviceArray(np.ones((2, 3)))
    x = np.ones((3, 4))
    with pytest.raises(DeviceMismatchError) as info:
        fl.gradient(lambda w: np.sum(w @ x), w)
    message = str(info.value)
    assert message.startswith("matmul: arrays on different devices"), message
    assert "argument 1 (numpy.ndarray, shape (3, 4)) is on cpu" in message
    assert "argument 0 (tests.FakeDeviceArray, shape (2, 3)) is on fake:0" in message
    assert "fl.gpu(x)" in message and "fl.cpu(x)" in message
    assert isinstance(info.value.__cause__, TypeError)  # the library's own error, chained
    assert "Unsupported type" in str(info.value.__cause__)


def test_the_misplaced_one_is_the_odd_one_out():
    a, b = FakeDeviceArray(np.ones(3)), FakeDeviceArray(np.ones(3))
    # np.stack reaches the engine as a concatenate of three (1, 3) rows
    with pytest.raises(DeviceMismatchError, match=r"argument 1 \(numpy.ndarray, shape \(1, 3\)"
                                                  r"\) is on cpu, while argument 0 .*, argument "
                                                  r"2 .* are on fake:0"):
        fl.gradient(lambda a, b: np.sum(np.stack([a, np.ones(3), b])), a, b)


def test_two_devices_of_one_backend():
    a = FakeDeviceArray(np.ones(3), device=0)
    b = FakeDeviceArray(np.ones(3), device=1)
    with pytest.raises(DeviceMismatchError, match=r"multiply: .*argument 1 .* is on fake:1, "
                                                  r"while argument 0 .* is on fake:0"):
        fl.gradient(lambda a: np.sum(a * b), a)


def test_forward_mode():
    b = FakeDeviceArray(np.ones(3))
    with pytest.raises(DeviceMismatchError,  # a tie: the first argument's device is taken
                       match=r"multiply: .*argument 1 .* is on fake:0, while argument 0 .* "
                             r"is on cpu"):
        fl.jvp(lambda a: a * b, (np.ones(3),), (np.ones(3),))


def test_an_error_on_one_device_is_left_alone():
    a = FakeDeviceArray(np.ones(3))
    with pytest.raises(ValueError) as info:  # a shape error: nothing to do with devices
        fl.gradient(lambda a: np.sum(a @ FakeDeviceArray(np.ones(4))), a)
    assert not isinstance(info.value, DeviceMismatchError)


def test_array_module():
    x = np.ones(2)
    assert fl.backend.array_module(x, 2.0, None) is np
    assert fl.backend.array_module(FakeDeviceArray(x), 1.0) is FAKE.module
    with pytest.raises(DeviceMismatchError, match=r"array_module: .*argument 1 .* is on cpu"):
        fl.backend.array_module(FakeDeviceArray(x), x, FakeDeviceArray(x))

    def f(x):  # traced arrays answer for the array they trace
        assert fl.backend.array_module(x) is np and fl.backend.device_of(x) == "cpu"
        return np.sum(x)

    fl.gradient(f, x)


def test_device_of():
    assert fl.backend.device_of(np.ones(1)) == "cpu" and fl.backend.device_of(1.5) == "cpu"
    assert fl.backend.device_of(FakeDeviceArray(np.ones(1), device=2)) == "fake:2"
    with pytest.raises(TypeError, match="device_of: builtins.object is not an array"):
        fl.backend.device_of(object())
