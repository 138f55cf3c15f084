"""The buckets summed in the memory the ranks share (``fluxml/distributed/shared.py``), under
``mpiexec -n 2``: ``python shared_ranks.py``. Small gradients of odd sizes, float32 and
float64, non-contiguous (transposed, strided), empty, a Python float, None on one rank, in
several buckets of each dtype; unequal and changing batch sizes, a gradient that appears on
one rank (a new plan: a new window), and a rank that adds its sums late while the other goes on
to the next steps (each rank's part is double-buffered). Checked on every rank against the
weighted mean computed here from every rank's gradients, and bit for bit against the same
gradients sent as messages; every gradient in shared memory (the default), and the small ones
only beside large ones averaged in place; and no message posted in a step on a plan but the
direct gradients' (the header too is summed in shared memory). Prints ``rank r: shared as
messages`` when all is well."""

import sys
import time

import numpy as np

import fluxml as fl
from fluxml.distributed import layout, shared
from fluxml.distributed.layout import positions


def tree(step, me):
    """Step ``step``'s gradients on rank ``me``: the same values at each call."""
    rng = np.random.default_rng(1000 * step + me)

    def f(*shape, dtype=np.float64):
        return rng.standard_normal(shape).astype(dtype)

    t = {"w": f(5, 7), "b": f(7, dtype=np.float32), "t": f(9, 3).T,  # not contiguous
         "strided": f(11, dtype=np.float32)[::2], "empty": f(0, 3), "one": f(1),
         "layers": [{"weight": f(3, 4, dtype=np.float32), "bias": f(3)} for _ in range(4)],
         "s": 0.25 * (me + 1),  # a Python float
         "none": f(2, 2) if me == 0 else None,  # zeros on rank 1
         # no gradient on any rank until step 3, where rank 1 has one: a new plan
         "new": f(6) if step == 3 and me == 1 else None}
    return t


def expected(g, t, count, loss):
    """The weighted mean of every rank's ``t`` (None where no rank has a gradient) and of
    ``loss``, and the global batch size."""
    everyone = g.comm.allgather((positions(t)[0], count, loss))
    total = sum(c for _, c, _ in everyone)
    out = []
    for column in zip(*(leaves for leaves, _, _ in everyone)):
        have = [(np.asarray(x), c) for x, (_, c, _) in zip(column, everyone)
                if x is not None and np.asarray(x).dtype.kind in "fc"]
        out.append(sum(x * c for x, c in have) / total if have else None)
    return out, sum(v * c for _, c, v in everyone) / total, total


def late_adds(rank):
    """On ``rank``, each ``SharedSums.add`` starts 20 ms late: the other rank packs and posts
    its next step meanwhile (a single buffer would be overwritten under the reader)."""
    add = shared.SharedSums.add

    def late(self):
        if fl.distributed.rank() == rank:
            time.sleep(0.02)
        add(self)
    shared.SharedSums.add = late


def counts(me):
    c = [3, 3 + me, 2, 4, 1 + 2 * me, 5, 5]
    if me == 1:
        c[5] = 0  # a rank without observations: its gradients weigh nothing
    return c


class Posting:
    """A communicator that counts the ``Iallreduce`` posted on it (the group's, in steps that
    agree no plan: a window is made on the real one)."""

    def __init__(self, comm):
        self.comm, self.posted = comm, 0

    def Iallreduce(self, *args, **kwargs):  # noqa: N802 - mpi4py's name
        self.posted += 1
        return self.comm.Iallreduce(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.comm, name)


def run(averager, me):
    """Every step on ``averager``, back to back (no other collective in between, so that a
    rank goes on to the next step while the other still adds): per step the loss, the global
    batch size, copies of the averaged positions, the window, the share given, the number of
    direct gradients and of the messages posted (None at the steps that agree a plan)."""
    out = []
    g = fl.distributed.group()
    for step, count in enumerate(counts(me)):
        t = tree(step, me)
        share = averager.share(count) if step % 2 else None  # scaled as fl.train does
        if share is not None:
            leaves, spec = positions(t)
            t = fl.tree.unflatten(spec, [x * share if layout.is_grad(x) else x
                                         for x in leaves])
        kept = fl.fmap(np.copy, t)
        comm = g.comm
        if step not in (0, 3):  # (3: a gradient appears, a new plan)
            g.comm = Posting(comm)
        try:
            loss, avg, n = averager.average(1.0 + me, t, count, share)
        finally:
            posted, g.comm = getattr(g.comm, "posted", None), comm
        if not averager.in_place:  # the gradients given: unchanged
            fl.fmap(np.testing.assert_array_equal, t, kept)
        sums = [None if x is None else np.array(x, copy=True) for x in positions(avg)[0]]
        out.append((loss, n, sums, averager.shared, share, len(averager.direct), posted))
    return out


def main():
    g = fl.distributed.init(timeout=60.0)
    me = g.rank
    late_adds(0)
    want = [expected(g, tree(step, me), count, 1.0 + me)
            for step, count in enumerate(counts(me))]
    messages = fl.distributed.GradientAverager(bucket_bytes=96)
    messages.shared_bytes = 0
    sent = run(messages, me)  # each gradient of 96 bytes or more in a message of its own
    # every gradient in a bucket (direct_bytes not given): all in shared memory
    every = run(fl.distributed.GradientAverager(bucket_bytes=96), me)
    # those of 64 bytes or more averaged in place, in their own arrays, the others shared
    mixed = run(fl.distributed.GradientAverager(bucket_bytes=96, in_place=True,
                                                direct_bytes=64), me)
    # more bytes than shared_bytes allows: the buckets travel
    limited = fl.distributed.GradientAverager(bucket_bytes=96)
    limited.shared_bytes = 8
    limited = run(limited, me)
    for step, (sums, mean, total) in enumerate(want):
        assert sent[step][3] is None and sent[step][5] > 1, step
        assert limited[step][3] is None and limited[step][5] == sent[step][5], step
        for a, b in zip(limited[step][2], sent[step][2]):
            assert (a is None) == (b is None) and (a is None or np.array_equal(a, b)), step
        assert every[step][3] is not None and every[step][5] == 0, step
        assert mixed[step][3] is not None and mixed[step][5] > 1, step
        if step not in (0, 3):  # no message but the direct gradients': the header too is
            # summed in shared memory (it was the one message of a step)
            assert every[step][6] == 0 and mixed[step][6] == mixed[step][5], step
            assert sent[step][6] > sent[step][5], step  # as messages: the buckets' too
        for got in (every, mixed):
            loss, n, shared_sums, _, share, _, _ = got[step]
            assert n == sent[step][1] == total and np.isclose(loss, mean), (step, loss, mean)
            for a, b, w in zip(shared_sums, sent[step][2], sums):
                assert (a is None) == (b is None) == (w is None), step
                if a is None:
                    continue
                if share is None:  # scaled here and there alike: the same bits
                    np.testing.assert_array_equal(a, b)
                tol = 1e-6 if a.dtype == np.float32 else 1e-12
                np.testing.assert_allclose(a, w, rtol=tol, atol=tol, err_msg=f"step {step}")
    for got in (every, mixed):  # one window per plan: step 0's, and the new one of step 3
        w = [window for _, _, _, window, *_ in got]
        assert w[0] is w[1] is w[2] and w[3] is w[4] is w[5] is w[6] and w[3] is not w[2], w
    sys.stdout.write(f"rank {me}: shared as messages\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
