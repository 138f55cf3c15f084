"""update's threaded path (optimise/split.py, backend/threads.py): a large array's step split
into parts run on several threads gives bit-identical numbers to the one-thread step, for
every rule marked elementwise, over sizes around the threshold and both layouts; the thread
limit (the BLAS's, or OMP_NUM_THREADS without one) is respected: under 1, no other thread."""

import ctypes
import dataclasses
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fluxml as fl
from fluxml.backend import threads
from fluxml.optimise import foreach, split
from tests.optimise.test_foreach import ELEMENTWISE


def _run(rule, shapes, steps, *, large, n_threads, monkeypatch, order="C"):
    """Model and state after ``steps`` updates of arrays of ``shapes``, with arrays of
    ``large`` entries or more split over ``n_threads``."""
    rng = np.random.default_rng(0)
    model = [rng.standard_normal(s).astype(np.float32 if i % 2 else np.float64)
             for i, s in enumerate(shapes)]
    state = fl.setup(rule, model)
    monkeypatch.setattr(foreach, "SMALL", 0)  # no array stepped in a group of small ones
    monkeypatch.setattr(split, "LARGE", large)
    monkeypatch.setattr(threads, "limit", lambda: n_threads)
    for _ in range(steps):
        grads = [rng.standard_normal(x.shape).astype(x.dtype) for x in model]
        if order == "F":  # transposed views, as x @ W.T gives weight gradients
            grads = [np.ascontiguousarray(g.T).T for g in grads]
        fl.update(state, model, grads)
    return model, state


def _same(a, b):
    got, want = fl.leaves(a), fl.leaves(b)
    assert len(got) == len(want)
    for x, y in zip(got, want):
        assert np.asarray(x).dtype == np.asarray(y).dtype
        np.testing.assert_array_equal(x, y)


SHAPES = [(40, 30), (7, 5, 9), (300,), (2, 3)]


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("cls", ELEMENTWISE, ids=lambda c: c.__name__)
def test_the_same_numbers_as_one_thread(cls, order, monkeypatch):
    rule = cls()
    calls = []
    run_parts = threads.run_parts
    monkeypatch.setattr(threads, "run_parts", lambda jobs, n: calls.append(len(jobs))
                        or run_parts(jobs, n))
    split_run = _run(rule, SHAPES, 4, large=64, n_threads=2, monkeypatch=monkeypatch,
                     order=order)
    whole = _run(rule, SHAPES, 4, large=1 << 62, n_threads=2, monkeypatch=monkeypatch,
                 order=order)
    _same(split_run, whole)
    assert calls == [4 + 4 + 4] * 4  # 3 arrays of 64 entries or more, in 2 parts per thread


@dataclasses.dataclass
class _Seen(fl.Adam):
    """Adam that notes the threads and part shapes it stepped."""

    seen: list = dataclasses.field(default_factory=list)

    def apply(self, state, x, dx, out=None):
        self.seen.append((threading.get_ident(), x.shape))
        return super().apply(state, x, dx, out)


def test_parts_run_on_two_threads_and_a_limit_of_one_starts_none(monkeypatch):
    rule = _Seen()
    _run(rule, [(64, 50)], 1, large=64, n_threads=2, monkeypatch=monkeypatch)
    assert len(rule.seen) == 4  # 2 parts per thread
    assert sum(shape[0] for _, shape in rule.seen) == 64
    rule = _Seen()
    _run(rule, [(64, 50)], 1, large=64, n_threads=1, monkeypatch=monkeypatch)
    assert rule.seen == [(threading.get_ident(), (64, 50))]  # whole, on this thread


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 40), st.integers(1, 6)), min_size=1, max_size=3),
       st.integers(2, 3), st.sampled_from(["C", "F"]), st.integers(1, 3))
def test_sizes_around_the_threshold(shapes, n_threads, order, steps):
    large = 60  # sizes from 1 to 240 entries: some below, some at or above
    with pytest.MonkeyPatch.context() as mp:
        a = _run(fl.Adam(0.01), shapes, steps, large=large, n_threads=n_threads,
                 monkeypatch=mp, order=order)
        b = _run(fl.Adam(0.01), shapes, steps, large=1 << 62, n_threads=n_threads,
                 monkeypatch=mp, order=order)
    _same(a, b)


def test_limit_follows_the_blas_and_the_environment(monkeypatch):
    blas = threads._find_blas()
    if blas:
        name = blas.__name__.replace("get", "set").replace("MKL_Get_Max", "MKL_Set_Num")
        setter = getattr(ctypes.CDLL(_lib_path_of(blas.__name__)), name)
        before = blas()
        try:
            setter(1)
            assert threads.limit() == 1
            setter(2)
            assert threads.limit() == min(2, threads._cores())
        finally:
            setter(before)
    monkeypatch.setattr(threads, "_blas_threads", False)  # no BLAS found: the environment
    for var in threads._ENV:
        monkeypatch.delenv(var, raising=False)
    assert threads.limit() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "64")
    assert threads.limit() == threads._cores()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads.limit() == 1


def _lib_path_of(symbol):
    with open("/proc/self/maps") as maps:
        for line in maps:
            path = line.split(None, 5)[-1].strip()
            if ".so" in path and ("openblas" in path.lower() or "mkl_rt" in path.lower()):
                try:
                    if hasattr(ctypes.CDLL(path), symbol):
                        return path
                except OSError:
                    pass
    raise AssertionError(f"no loaded library has {symbol}")


def test_threadpoolctl_limits_are_respected():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        assert threads.limit() == 1


def test_run_parts_runs_every_job_once_and_raises_the_first_error():
    seen = []
    jobs = [lambda i=i: seen.append(i) for i in range(7)]
    threads.run_parts(jobs, 2)
    assert sorted(seen) == list(range(7))

    def bad():
        raise ValueError("part 3")

    with pytest.raises(ValueError, match="part 3"):
        threads.run_parts([lambda: None, bad, lambda: None], 2)
    threads.run_parts(jobs, 2)  # the pool still serves
    assert sorted(seen) == sorted(list(range(7)) * 2)


def test_the_default_threshold_and_limit_on_this_machine(monkeypatch):
    """The real thread limit (two cores here: two threads) and LARGE, on a weight of
    LARGE entries and its transposed-view gradient."""
    shape = (split.LARGE // 512, 512)

    def run(large):
        monkeypatch.setattr(split, "LARGE", large)
        rng = np.random.default_rng(1)
        model = [rng.standard_normal(shape).astype(np.float32)]
        state = fl.setup(fl.AdamW(lambd=0.1), model)
        for _ in range(2):
            fl.update(state, model, [np.ascontiguousarray(
                rng.standard_normal(shape[::-1]).astype(np.float32)).T])
        return model, state

    _same(run(split.LARGE), run(1 << 62))
