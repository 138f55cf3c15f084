"""Traced values a compiled function stores outside itself (compiler/stored.py): on a layer it
closes over (``self.last = h``), directly or within an inner fl.gradient, or in a list it
names as a global."""

import numpy as np
import pytest

import fluxml as fl
from fluxml.compiler.trace import CompileError


class Probe(fl.Module):
    """A layer that keeps its last output, as hooks and attention maps do."""

    def __init__(self):
        self.dense = fl.Dense(3, 3)

    def __call__(self, x):
        h = np.tanh(self.dense(x))
        self.last = h
        return h


X = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
HISTORY: list = []


def test_a_value_an_inner_gradient_stores_is_used_within_the_compiled_function():
    """Eagerly, fl.gradient keeps what its loss stores on a closed-over layer as a plain
    array. Inside fl.compile it was left the inner gradient's dead tracer, so reading it later
    in the same compiled function failed with 'a traced value escaped' (which told the user
    to close over the layer: they had); now it is the compile trace's value, as eagerly."""
    m = Probe()

    def step(x):
        g = fl.gradient(lambda x: np.sum(m(x) ** 2), x)[0]
        return g, m.last * 2

    compiled = fl.compile(step, background=False)
    for x in (X, X + 1):  # the second call runs the program, not the function
        g, twice = compiled(x)
        h = np.tanh(x @ m.dense.weight.T + m.dense.bias)  # by hand
        np.testing.assert_allclose(twice, 2 * h, rtol=1e-6)
        np.testing.assert_allclose(g, (2 * h * (1 - h ** 2)) @ m.dense.weight, rtol=1e-5)


def test_a_stored_value_used_after_compile_names_its_place():
    m, n = Probe(), Probe()

    def inner(x):  # stored within a fl.gradient inside the compiled function
        return fl.gradient(lambda x: np.sum(m(x)), x)[0]

    def direct(x):  # stored by the compiled function itself, on a layer and a global list
        HISTORY.append(np.sum(n(x)))
        return n.last

    fl.compile(inner, background=False)(X)
    fl.compile(direct, background=False)(X)
    for value, place in ((m.last, "Probe.last"), (n.last, "Probe.last"),
                         (HISTORY[-1], r"list\[0\]")):
        for use in (np.sum, np.asarray, lambda v: v + 1, lambda v: v[0]):
            with pytest.raises(CompileError, match=rf"fl.compile: {place} holds a value "
                               "traced inside fl.compile.*Return the value instead"):
                use(value)
    HISTORY.clear()
    # eagerly the same functions store plain arrays
    inner(X)
    direct(X)
    assert type(m.last) is np.ndarray and type(n.last) is np.ndarray
    assert not isinstance(HISTORY[0], fl.ad.core.Tracer)


def test_a_returned_container_the_function_also_stores_is_returned():
    # `h.metrics = {...}; return h.metrics` (or a global list appended to and returned):
    # the container's tracers were made dead before the output was read, and fl.compile
    # failed with "a leaked tracer" (it worked before stored values were named)
    holder = type("Holder", (), {})()

    def metrics(x):
        y = x * 2
        holder.metrics = {"y": y, "s": np.sum(y)}
        return holder.metrics

    kept = []

    def appended(x):
        kept.append(x * 2)
        return kept

    run, run_list = fl.compile(metrics), fl.compile(appended)
    for k in (1.0, 2.0, 3.0):
        out = run(np.full((2, 3), k, np.float32))
        assert out["s"] == 12 * k and out["y"].shape == (2, 3)
        np.testing.assert_array_equal(run_list(np.full(2, k))[0], 2 * k)
    with pytest.raises(CompileError, match=r"list\[0\] holds a value traced inside fl.compile"):
        kept[0] + 1
