"""fl.compile watches what the user's code reached at run time reads: a NumPy generator
drawn from through a helper or an object is refused (not frozen into the program), and a
global or class attribute read through an argument or an object traces again when changed."""

import numpy as np
import pytest

import fluxml as fl
from fluxml.compiler.trace import CompileError

rng = np.random.default_rng(0)


def _noise(shape):
    return rng.normal(size=shape)


def test_a_helpers_global_generator_is_refused():
    f = fl.compile(lambda x: x + _noise(x.shape))
    with pytest.raises(CompileError, match="drew random numbers from the NumPy generator `rng`"):
        f(np.zeros(3))


class _Cfg:
    pass


def test_a_closed_over_objects_generator_is_refused():
    cfg = _Cfg()
    cfg.rng = np.random.default_rng(1)
    f = fl.compile(lambda x: x + cfg.rng.normal(size=x.shape))
    with pytest.raises(CompileError, match="cfg.rng"):
        f(np.zeros(3))


def test_a_generator_made_inside_the_function_is_allowed():
    f = fl.compile(lambda x: x + np.random.default_rng(3).normal(size=x.shape))
    x = np.zeros(3)
    np.testing.assert_allclose(f(x), np.random.default_rng(3).normal(size=3))


def test_fluxmls_recorded_draws_stay_allowed():
    gen = np.random.default_rng(5)

    def helper(x):
        return fl.dropout(x, 0.5, rng=gen)

    f = fl.compile(lambda x: helper(x))
    a, b = f(np.ones(64)), f(np.ones(64))
    assert not np.array_equal(a, b)


TEMPERATURE = 1.0
K = 1.0
SCALE = 1.0


class _Scaled(fl.Module):
    def __init__(self):
        self.w = np.ones(3)

    def __call__(self, x):
        return self.w * x / TEMPERATURE


class _WithClassAttr(fl.Module):
    gain = 1.0

    def __init__(self):
        self.w = np.ones(3)

    def __call__(self, x):
        return self.w * x * self.gain


def _act(z):
    return z * K


class _Helper:
    def apply(self, x):
        return x * SCALE


def test_a_global_read_in_a_module_arguments_call_traces_again(monkeypatch):
    m, x = _Scaled(), np.arange(3.0)
    f = fl.compile(lambda m, x: m(x))
    np.testing.assert_allclose(f(m, x), x)
    monkeypatch.setitem(globals(), "TEMPERATURE", 4.0)
    np.testing.assert_allclose(f(m, x), x / 4.0)
    assert f.traces == 2
    f(m, x)
    assert f.traces == 2


def test_a_global_read_in_a_function_argument_traces_again(monkeypatch):
    x = np.arange(3.0)
    f = fl.compile(lambda x, fn: fn(x))
    np.testing.assert_allclose(f(x, _act), x)
    monkeypatch.setitem(globals(), "K", 3.0)
    np.testing.assert_allclose(f(x, _act), 3 * x)


def test_a_global_read_in_a_closed_over_objects_method_traces_again(monkeypatch):
    h, x = _Helper(), np.arange(3.0)
    f = fl.compile(lambda x: h.apply(x))
    np.testing.assert_allclose(f(x), x)
    monkeypatch.setitem(globals(), "SCALE", 5.0)
    np.testing.assert_allclose(f(x), 5 * x)


def test_a_class_attribute_of_a_module_argument_traces_again(monkeypatch):
    w, x = _WithClassAttr(), np.arange(3.0)
    f = fl.compile(lambda m, x: m(x))
    np.testing.assert_allclose(f(w, x), x)
    monkeypatch.setattr(_WithClassAttr, "gain", 6.0)
    np.testing.assert_allclose(f(w, x), 6 * x)
    assert f.traces == 2


def test_a_changed_value_back_again_is_right():
    x = np.arange(3.0)
    f = fl.compile(lambda m, x: m(x))
    w = _WithClassAttr()
    try:
        for gain in (2.0, 3.0, 2.0):
            _WithClassAttr.gain = gain
            np.testing.assert_allclose(f(w, x), gain * x)
    finally:
        _WithClassAttr.gain = 1.0
