"""Every derivative rule's case (the ``CASES`` of ``tests/ad/rules``) on a second array
library: the arguments, and the NumPy arrays the case's function reads as globals or closes
over, moved to the fake device (as a CuPy user's would all be on the GPU); the gradient of a
weighted sum, the jvp and a second-order product (the jvp of the gradient) must stay there
and equal NumPy's.

``fakedevice`` refuses NumPy arrays beside its own, as CuPy does: a rule that makes a NumPy
constant (an identity, a mask, zeros, index grids) beside a GPU array fails here. Every case
passes now (``NOT_YET`` lists any that does not, strict); ``HOST_CONSTANTS`` those whose own
NumPy constant must be refused by name. Where CuPy sees a GPU, the cases run on its arrays
too (``devices.py``; marked ``gpu``).
"""

from __future__ import annotations

import importlib
import types
import warnings

import numpy as np
import pytest

import fluxml as fl
from tests.backend.devices import DEVICES, FAKE_DEVICE

MODULES = ("test_elementwise", "test_reductions", "test_indexing", "test_linalg",
           "test_numerics", "test_fft", "test_complex", "test_shape", "test_sets",
           "test_histograms", "test_special")


def _cases():
    out = []
    for name in MODULES:
        module = importlib.import_module(f"tests.ad.rules.{name}")
        for i, case in enumerate(getattr(module, "CASES", ())):
            # (a case of Python numbers alone, linspace(0.5, 2.0, 7), has nothing to move)
            if isinstance(case[2], tuple) and any(map(_float_array, case[2])):
                label = getattr(case[0], "__name__", str(case[0]))
                out.append(pytest.param(case[1], case[2], id=f"{name}:{i}:{label}"))
    return out


def _moved(x, device=FAKE_DEVICE):
    return device.move(x) if isinstance(x, np.ndarray) else x


def _on_device(f, device=FAKE_DEVICE):
    """``f`` with the NumPy arrays it reads as globals or closes over moved to the device."""
    if not isinstance(f, types.FunctionType):
        return f
    scope = {k: _moved(v, device) for k, v in f.__globals__.items()}
    cells = None if f.__closure__ is None else tuple(
        types.CellType(_moved(c.cell_contents, device)) for c in f.__closure__)
    out = types.FunctionType(f.__code__, scope, f.__name__, f.__defaults__, cells)
    out.__kwdefaults__ = f.__kwdefaults__
    return out


def _float_array(x) -> bool:
    return isinstance(x, np.ndarray) and x.dtype.kind in "fc"


def _same(got, want, rtol, atol, device):
    if want is None:
        return
    assert device.holds(got), f"came back as {type(got).__name__}"
    np.testing.assert_allclose(device.host(got), want, rtol=rtol, atol=atol)


def check_case(f, args, device=FAKE_DEVICE):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        y = f(*args)
    if not _float_array(y):
        return
    rng = np.random.default_rng(0)
    w = rng.standard_normal(y.shape) + (0j if y.dtype.kind == "c" else 0)
    on = _on_device(f, device)
    w_on = device.move(w)
    loss = lambda *a: np.sum(np.real(f(*a) * w))  # noqa: E731
    loss_on = lambda *a: np.sum(np.real(on(*a) * w_on))  # noqa: E731
    moved = [_moved(a, device) for a in args]  # (integer and boolean arguments too)
    floats = [i for i, a in enumerate(args) if _float_array(a)]
    want, got = fl.gradient(loss, *args), fl.gradient(loss_on, *moved)
    for i in floats:
        _same(got[i], want[i], 1e-10, 1e-12, device)
    tangents = tuple(rng.standard_normal(a.shape).astype(a.dtype) if i in floats else None
                     for i, a in enumerate(args))
    moved_t = tuple(None if t is None else device.move(t) for t in tangents)
    _, t_want = fl.jvp(f, tuple(args), tangents)
    _, t_got = fl.jvp(on, tuple(moved), moved_t)
    _same(t_got, t_want, 1e-10, 1e-12, device)
    first = floats[0]
    _, h_want = fl.jvp(lambda *a: fl.gradient(loss, *a)[first], tuple(args), tangents)
    _, h_got = fl.jvp(lambda *a: fl.gradient(loss_on, *a)[first], tuple(moved), moved_t)
    _same(h_got, h_want, 1e-9, 1e-11, device)


# The rules that do not run on a second library yet, by module, position and function, so
# that a fix shows as an unexpected pass (strict). 66 of 689 cases were listed when this file
# was written; all were fixed since (the writes, where, select, choose, piecewise, einsum,
# imag, the nan-reductions, partition, unique_inverse, the histograms, joins and polynomials
# of lists and numbers, and polygamma), or are the cases' own doing (below).
NOT_YET: frozenset = frozenset()

# The cases whose function makes a NumPy array of its own beside its argument
# (np.ones((3, 1)), np.arange(1.0, 7.0)), which a CuPy user would make on the GPU: on a
# second library the mix is refused, by the DeviceMismatchError that names the operation.
HOST_CONSTANTS = frozenset({
    "test_numerics:58:polyfit", "test_shape:16:trim_zeros", "test_shape:17:trim_zeros",
    "test_shape:62:concatenate", "test_shape:71:block", "test_sets:0:unique",
    "test_special:20:iv", "test_special:33:yn", "test_special:35:ive", "test_special:36:ive",
})

CASES = _cases()


@pytest.mark.parametrize("f, args", [
    pytest.param(*p.values, id=p.id, marks=[pytest.mark.xfail(
        strict=True, reason="a NumPy array made in the rule's path")]
        if p.id in NOT_YET else []) for p in CASES if p.id not in HOST_CONSTANTS])
@pytest.mark.parametrize("device", DEVICES)
def test_rule_on_a_second_library_matches_numpy(f, args, device):
    check_case(f, args, device)


@pytest.mark.parametrize("f, args", [p for p in CASES if p.id in HOST_CONSTANTS],
                         ids=sorted(HOST_CONSTANTS, key=[p.id for p in CASES].index))
@pytest.mark.parametrize("device", DEVICES)
def test_a_numpy_constant_beside_a_second_librarys_array_is_refused_by_name(f, args, device):
    with pytest.raises(fl.backend.DeviceMismatchError, match="on different devices"):
        check_case(f, args, device)


@pytest.mark.parametrize("write", [
    lambda x, idx, v: x.__setitem__(idx, v),
    lambda x, idx, v: np.put(x, idx, v),
    lambda x, idx, v: np.put_along_axis(x, idx, v, axis=0),
], ids=["setitem", "put", "put_along_axis"])
@pytest.mark.parametrize("device", DEVICES)
def test_a_write_through_a_device_index_that_repeats_keeps_the_last_derivative(write, device):
    # NumPy keeps the last value written to an element, so only that one has a derivative.
    # The repeats of a device's index array went unseen (only NumPy's were looked at), and
    # both writes got it: a wrong gradient, silently
    def f(v, idx):
        x = v[:5] * 0.0
        write(x, idx, v[:3] * 2.0)
        return np.sum(x * np.arange(1.0, 6.0, like=v))

    v, idx = np.arange(1.0, 7.0), np.array([1, 1, 3])
    want = fl.gradient(lambda v: f(v, idx), v)[0]
    np.testing.assert_array_equal(want, [0, 4, 8, 0, 0, 0])
    got = fl.gradient(lambda v: f(v, device.move(idx)), device.move(v))[0]
    np.testing.assert_array_equal(device.host(got), want)
