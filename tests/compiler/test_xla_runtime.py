"""How the ``xla`` back end's compiled call moves NumPy arguments: packed into a few buffers on
the way in, the new values of the arrays the program writes copied back through staging
buffers kept between calls (``xla_runtime._WriteBack``). Calls that overlap (threads, or a
call made while another copies back) each write their own arguments.

Skipped without JAX (an optional extra: ``pip install 'fluxml[xla]'``).
"""

import threading

import numpy as np
import pytest

pytest.importorskip("jax", reason="the xla back end needs JAX: pip install 'fluxml[xla]'")

import fluxml as fl  # noqa: E402
from fluxml.compiler.xla_runtime import _Packing, _WriteBack  # noqa: E402

SHAPES = [(3, 2), (4,), (), (2, 2, 2)]


def _packed(values, packing):
    """``values`` as XLA hands them back: one flat buffer per group, then the single ones."""
    return packing.pack(values, np)


def test_write_back_copies_each_packed_value_into_its_argument():
    packing = _Packing([(s, np.float64) for s in SHAPES] + [((1 << 15,), np.float64)])
    rng = np.random.default_rng(0)
    new = [rng.normal(size=s) for s in SHAPES] + [rng.normal(size=1 << 15)]
    arrays = [None] + [np.zeros(s) for s in SHAPES] + [np.zeros(1 << 15)]  # (position 0: not
    write = _WriteBack(packing, [1, 2, 3, 4, 5])  # written)
    write(_packed(new, packing), arrays)
    for got, want in zip(arrays[1:], new):
        np.testing.assert_array_equal(got, want)
    new2 = [2 * v for v in new]  # again, through the same staging buffers
    write(_packed(new2, packing), arrays)
    for got, want in zip(arrays[1:], new2):
        np.testing.assert_array_equal(got, want)


class _Reentering:
    """A packed buffer whose conversion to NumPy runs another write-back first: a call that
    overlaps one in the middle of its copying, deterministically."""

    def __init__(self, buffer, then):
        self.buffer, self.then = buffer, then

    def __array__(self, dtype=None, copy=None):
        self.then()
        return self.buffer


def test_overlapping_write_backs_do_not_share_staging_buffers():
    # two dtypes, two packed buffers: the second's conversion runs another write-back after
    # the first buffer was staged and before it is copied out
    avals = [(s, np.float64) for s in SHAPES] + [(s, np.float32) for s in SHAPES]
    packing = _Packing(avals)
    write = _WriteBack(packing, list(range(len(avals))))
    fresh = lambda v: [np.full(s, v, d) for s, d in avals]  # noqa: E731
    mine, theirs = fresh(0), fresh(0)
    write(_packed(fresh(1), packing), mine)  # (leaves a staging set to be reused)
    inner = lambda: write(_packed(fresh(2), packing), theirs)  # noqa: E731
    buffers = _packed(fresh(3), packing)
    write([buffers[0], _Reentering(buffers[1], inner)], mine)
    for got in mine:
        np.testing.assert_array_equal(got, 3)
    for got in theirs:
        np.testing.assert_array_equal(got, 2)


def _update(w, b, n, x):
    """Writes three small arrays (packed together) and one 0-d counter, returns a sum."""
    w += 0.5 * x[:, None]
    b *= 0.9
    n += 1
    return np.sum(w) + np.sum(b)


def test_threads_each_write_their_own_arguments():
    f = fl.compile(_update, backend="xla", background=False)
    rng = np.random.default_rng(1)
    starts = [(rng.normal(size=(3, 4)), rng.normal(size=5), np.zeros((), np.int64),
               rng.normal(size=3)) for _ in range(4)]
    f(*[a.copy() for a in starts[0]])  # traced and compiled once, before the threads
    states = [[a.copy() for a in s] for s in starts]
    results = [[] for _ in starts]
    steps = 40

    def work(k):
        for _ in range(steps):
            results[k].append(float(f(*states[k])))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(starts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k, (w, b, n, x) in enumerate(starts):  # the same steps, by hand
        w, b = w.copy(), b.copy()
        expected = []
        for _ in range(steps):
            w += 0.5 * x[:, None]
            b *= 0.9
            expected.append(np.sum(w) + np.sum(b))
        np.testing.assert_allclose(results[k], expected, rtol=1e-12)
        np.testing.assert_allclose(states[k][0], w, rtol=1e-12)
        np.testing.assert_allclose(states[k][1], b, rtol=1e-12)
        assert int(states[k][2]) == steps
