"""The error for one operation given arrays of two devices, the most common GPU mistake.

NumPy, CuPy and the engine each fail on it in their own words (CuPy: "Unsupported type
<class 'numpy.ndarray'>"); this names the operation, both devices and the argument that is
on the other one. The engine asks only after an operation has failed, so the NumPy path pays
nothing for the check (see ``ReverseTrace.process``).

>>> import numpy as np, fluxml as fl
>>> fl.backend.check_same_device((np.ones(2), 1.0), "add")  # one device: nothing to say
"""

from __future__ import annotations

import numpy as np


class DeviceMismatchError(TypeError):
    """One operation was given arrays that live on different devices (CPU and GPU, or two
    GPUs). The message names the operation, the devices and the misplaced arguments."""


def _arrays(args):
    """``(label, array)`` for the arrays among ``args``: positional arguments and the
    members of list/tuple arguments (``np.concatenate([a, b])``); numbers are neutral."""
    from fluxml.ad.core import raw

    out = []
    for i, a in enumerate(args):
        a = raw(a)
        if type(a) in (list, tuple):
            out.extend((f"argument {i}[{j}]", raw(b)) for j, b in enumerate(a))
        else:
            out.append((f"argument {i}", a))
    return [(label, a) for label, a in out if _device(a) is not None]


def _device(a):
    from fluxml.backend.registry import backend_of

    if isinstance(a, np.ndarray):
        return "cpu"
    backend = backend_of(a)
    return None if backend is None else backend.device_of(a)


def _describe(label, a):
    t = type(a)
    shape = getattr(a, "shape", None)
    return f"{label} ({t.__module__.split('.')[0]}.{t.__name__}, shape {shape})"


def mismatch(args, name: str) -> DeviceMismatchError | None:
    """The error for ``args`` when they hold arrays of more than one device, else None."""
    found = [(label, a, _device(a)) for label, a in _arrays(args)]
    devices: dict[str, int] = {}
    for _, _, d in found:
        devices[d] = devices.get(d, 0) + 1
    if len(devices) < 2:
        return None
    # The device most arrays are on is taken as meant (the first one's on a tie); the
    # arrays elsewhere are named as the misplaced ones.
    home = max(devices, key=lambda d: (devices[d], -next(
        i for i, (_, _, e) in enumerate(found) if e == d)))
    wrong = [f"{_describe(label, a)} is on {d}" for label, a, d in found if d != home]
    right = [_describe(label, a) for label, a, d in found if d == home]
    return DeviceMismatchError(
        f"{name}: arrays on different devices in one operation: {'; '.join(wrong)}, while "
        f"{', '.join(right)} {'is' if len(right) == 1 else 'are'} on {home}.\n"
        f"Put every array of an operation on one device first: fl.gpu(x) moves an array, a "
        f"batch or a whole model to the GPU, fl.cpu(x) moves it back.")


def check_same_device(args, name: str) -> None:
    """Raise :class:`DeviceMismatchError` when ``args`` hold arrays of more than one device
    (kernels call this through ``array_module``)."""
    error = mismatch(args, name)
    if error is not None:
        raise error


def reraise_if_mixed(prim, args, error: BaseException) -> None:
    """Called by the engine when ``prim`` failed on ``args``: when the arguments were on two
    devices, raise the clear error (chained to the library's own); else return, and the
    engine re-raises ``error`` unchanged."""
    if isinstance(error, DeviceMismatchError) or not isinstance(error, Exception):
        return
    mixed = mismatch(args, prim.name)
    if mixed is not None:
        raise mixed from error
