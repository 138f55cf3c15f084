"""``fl.compile`` from several threads: a trace in progress in one thread must not capture
another thread's eager random draws, and concurrent first calls of one compiled function
(two signatures at once) must each get their own program."""

from __future__ import annotations

import threading

import numpy as np

import fluxml as fl
from fluxml.ad.core import COMPILING


def test_an_eager_draw_in_another_thread_is_not_recorded_by_a_trace_in_progress():
    inside, release = threading.Event(), threading.Event()

    @fl.compile
    def step(x):
        y = fl.dropout(x, 0.5, rng=np.random.default_rng(1))
        inside.set()  # the trace is in progress: let the other thread draw now
        assert release.wait(10)
        return y * 2.0

    results = {}
    tracer = threading.Thread(target=lambda: results.setdefault("compiled", step(np.ones(8))))
    tracer.start()
    assert inside.wait(10)
    assert COMPILING  # this thread sees a compile in progress, but not its own
    eager = fl.dropout(np.ones(1000), 0.5, rng=np.random.default_rng(0))
    release.set()
    tracer.join(10)

    expected = fl.dropout(np.ones(1000), 0.5, rng=np.random.default_rng(0))
    assert type(eager) is np.ndarray
    np.testing.assert_array_equal(eager, expected)
    assert "rng_random" in step.source  # the compiled step's own draw was recorded
    assert set(np.unique(results["compiled"])) <= {0.0, 4.0}
    assert not COMPILING


def test_concurrent_first_calls_with_two_signatures_each_get_their_program():
    @fl.compile
    def f(x):
        return np.tanh(x) * x.shape[0]

    inputs = [np.linspace(-1, 1, n) for n in (3, 5, 7, 9)]
    results = [None] * (4 * len(inputs))
    start = threading.Barrier(len(results))

    def call(i):
        start.wait(10)
        results[i] = f(inputs[i % len(inputs)])

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(results))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    for i, r in enumerate(results):
        x = inputs[i % len(inputs)]
        np.testing.assert_allclose(r, np.tanh(x) * len(x))
    assert f.traces == len(inputs)  # each signature traced once, not once per thread
