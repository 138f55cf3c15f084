"""The second array libraries the backend tests run on: the stand-in device always
(``fakedevice.py``), CuPy too where it sees a GPU (those cases are marked ``gpu``).

>>> FAKE_DEVICE.host(FAKE_DEVICE.move(np.ones(2)))
array([1., 1.])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

import fluxml as fl
from fluxml.backend.cuda import cupy_status
from tests.backend.fakedevice import FAKE, FakeDeviceArray


@dataclass(frozen=True)
class Device:
    name: str
    array_type: type
    move: Callable[[np.ndarray], Any]  # one NumPy array to the device
    move_tree: Callable[[Any], Any]  # every array of a tree (a model, a batch)

    def host(self, x):
        """``x`` copied back to the host where it is on this device."""
        return x.get() if isinstance(x, self.array_type) else x

    def holds(self, x) -> bool:
        return isinstance(x, self.array_type)


FAKE_DEVICE = Device("fake", FakeDeviceArray, FakeDeviceArray,
                     lambda tree: fl.backend.to_device(tree, FAKE))


def _cupy_device():
    cupy, _ = cupy_status()
    if cupy is None:
        return None
    return Device("cupy", cupy.ndarray, cupy.asarray, lambda tree: fl.gpu(tree, strict=True))


CUPY_DEVICE = _cupy_device()

# for @pytest.mark.parametrize("device", DEVICES)
DEVICES = [pytest.param(FAKE_DEVICE, id="fake")] + (
    [pytest.param(CUPY_DEVICE, id="cupy", marks=pytest.mark.gpu)] if CUPY_DEVICE else [])
