"""What the distributed tests run under ``mpiexec -n 2`` (and, for the references, in one
process). ``python ranks.py MODE OUT [ARG]``; each rank writes ``OUT/rank{r}.npz``."""

import os
import sys
import time
from pathlib import Path

import numpy as np

import fluxml as fl
from fluxml.distributed import layout
from fluxml.distributed.layout import positions

NOBS, BATCH, EPOCHS, SEED = 70, 8, 3, 1234  # 70 = 4 global batches of 16, then 6 (3 + 3)


def make(init_seed):
    fl.seed(init_seed)
    model = fl.Chain(fl.Dense(4, 16, np.tanh), fl.Dense(16, 3))
    model = fl.f64(model)
    return model, fl.setup(fl.Adam(0.01), model)


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(NOBS, 4))
    y = np.stack([np.sin(x[:, 0]), x[:, 1] * x[:, 2], np.cos(x[:, 3])], axis=1)
    return x, y


def mse(m, x, y):
    return np.mean((m(x) - y) ** 2)


def loader(per_rank, shard):
    return fl.DataLoader(data(), batchsize=per_rank, shuffle=True, rng=SEED, shard=shard)


def save(out, name, model, history, **extra):
    flat = {k: np.asarray(v) for k, v in fl.io.modelstate.flat_state(model).items()}
    np.savez(Path(out) / name, losses=np.array(history.losses), **flat, **extra)


class Counting(fl.distributed.GradientAverager):
    """fl.train's averager with every gradient of 64 bytes or more travelling alone (so that
    the tiny test model takes the in-place path), counting the gradients averaged in place
    (those that come back as the very arrays given)."""

    in_place_count = 0
    shares: list = []  # what fl.train multiplied each step's loss by

    tail_bytes = 16 << 10
    shared = fl.distributed.shared.SHARED_BYTES

    def __init__(self, bucket_bytes=1 << 20, in_place=False):
        super().__init__(bucket_bytes, in_place=in_place, direct_bytes=64)
        self.patience = 60.0  # wait for the first bucket: in place every step, not when quick
        self.tail_bytes = Counting.tail_bytes
        self.shared_bytes = Counting.shared
        Counting.instance = self

    def average(self, loss, grads, count, share=None):
        given = {id(a) for a in fl.leaves(grads) if isinstance(a, np.ndarray)}
        Counting.shares.append(share)
        loss, out, total = super().average(loss, grads, count, share)
        Counting.in_place_count += sum(id(a) in given for a in fl.leaves(out))
        return loss, out, total


def train_equal(out, distributed=True):
    """2 ranks of BATCH with a checkpoint each epoch, from models that differ per rank
    (``distributed="overlap"``: but for the first layer's weight, every gradient is sent
    during the backward pass, the small ones early in a bucket)."""
    fl.distributed.parallel.GradientAverager = Counting
    Counting.tail_bytes = 0 if distributed == "overlap" else 16 << 10
    # overlap: the buckets travel, early (through shared memory none would)
    Counting.shared = 0 if distributed == "overlap" else fl.distributed.shared.SHARED_BYTES
    model, state = make(init_seed=fl.distributed.rank())  # rank 0's model must win
    ckpt = fl.SaveCheckpoint(str(Path(out) / "ckpt-{epoch}.st"))
    h = fl.train(mse, model, loader(BATCH, True), state, epochs=EPOCHS, callbacks=[ckpt],
                 progress=False, distributed=distributed)
    fl.distributed.check_synced(model)
    fl.distributed.check_synced(state, "optimiser state")
    save(out, f"rank{fl.distributed.rank()}.npz", model, h, in_place=Counting.in_place_count,
         shares=np.array(Counting.shares), early=len(Counting.instance.early))


def resume(out, path, batch=BATCH, shard=True, distributed=True):
    """The last epoch from a checkpoint that only rank 0 reads."""
    model, state = make(init_seed=99)
    data_loader = loader(batch, shard)
    history = fl.History()
    if not distributed or fl.distributed.is_main():
        info = fl.load_checkpoint(path, model, state, rngs={"data": data_loader.rng})
        history = fl.History.from_dict(info.extra["history"])
    history = fl.distributed.broadcast_object(history) if distributed else history
    h = fl.train(mse, model, data_loader, state, epochs=EPOCHS - history.epoch,
                 history=history, progress=False, distributed=distributed)
    name = f"rank{fl.distributed.rank()}.npz" if distributed else "resumed.npz"
    save(out, name, model, h)


class Scores(fl.Callback):
    """Logs the metric ``score``: the first epoch is the best, whatever the model learns."""

    def on_epoch_end(self, run):
        run.history.log(score={1: 1.0, 2: 3.0, 3: 2.0}[run.epoch])


def resume_best(out, path):
    """The last epoch from a checkpoint that only rank 0 reads, with EarlyStopping's
    restore_best: fl.train gives every rank rank 0's history, the best (first) epoch's
    weights with it."""
    model, state = make(init_seed=99)
    data_loader = loader(BATCH, True)
    history = None  # (fl.train's History on rank 1, which takes rank 0's)
    if fl.distributed.is_main():
        info = fl.load_checkpoint(path, model, state, rngs={"data": data_loader.rng})
        history = fl.History.from_dict(info.extra["history"])
    h = fl.train(mse, model, data_loader, state, epochs=1, history=history, progress=False,
                 callbacks=[Scores(), fl.EarlyStopping("score", patience=5)], distributed=True)
    save(out, f"rank{fl.distributed.rank()}.npz", model, h)


def fail(out, how):
    fl.distributed.init(timeout=60.0)
    fl.distributed.broadcast_object(None)  # both ranks are up: a slow start is no failure
    fl.distributed.init(timeout=2.0)
    model, state = make(init_seed=0)
    me = fl.distributed.rank()
    if how == "gone" and me == 1:
        return  # ends before the first step (an early exit of the script on one rank)

    def loss(m, x, y):
        step = loss.calls = getattr(loss, "calls", 0) + 1
        if me == 1 and step == 3:
            if how == "raise":
                raise ValueError("boom at step 3")
            if how in ("hang", "caught"):
                time.sleep(60)
            if how == "die":
                os._exit(0)  # no error, no exit code: the launcher would call it a success
        return mse(m, x, y)

    data = loader(BATCH, True)
    if how == "uneven":  # rank 1 lacks the last batch of every epoch
        data = list(data)[:len(data) - me]
    if how == "nobs":  # rank 1 lacks an observation: as many batches, other global batches
        x, y = data.data
        data = fl.DataLoader((x[:NOBS - me], y[:NOBS - me]), batchsize=BATCH, shuffle=True,
                             rng=SEED, shard=True)
    if how == "shard":  # shard=(0, 2) on both ranks: the same part twice
        data = fl.DataLoader(data.data, batchsize=BATCH, shuffle=True, rng=SEED, shard=(0, 2))
    try:
        fl.train(loss, model, data, state, epochs=EPOCHS, progress=False, distributed=True)
    except fl.distributed.DistributedTimeout as err:
        if how != "caught":
            raise
        print(f"rank {me} caught: {err}", flush=True)  # and the script ends


def own_loop(out):
    """A shuffled sharded loader without a seed, iterated by a loop of one's own (no
    fl.train to broadcast its generator): the ranks' parts are still distinct."""
    fl.seed(fl.distributed.rank())  # each rank's own default generator
    loader = fl.DataLoader(np.arange(NOBS), batchsize=BATCH, shuffle=True, shard=True)
    seen = [int(i) for _ in range(2) for batch in loader for i in batch]
    everyone = fl.distributed.sync.allgather_object(fl.distributed.group(), seen, "test")
    np.save(Path(out) / f"seen{fl.distributed.rank()}.npy", np.array(everyone))


def say(line):
    """One write per line: the ranks share the pipe, and print writes the newline apart."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def consistent(out):
    """Errors every rank raises at once are caught on every rank, and the job goes on."""
    fl.distributed.init(timeout=30.0)
    me = fl.distributed.rank()
    try:  # ranks that built different models
        fl.distributed.broadcast(fl.Dense(4, 3 if me == 0 else 5))
    except fl.distributed.DistributedError as err:
        say(f"rank {me}: {err}")
    params = {"a": np.ones(2), "b": np.full(2, 3.0)}  # b has no gradient on rank 1: zeros
    uses = (lambda m: np.sum(m["a"] * m["b"])) if me == 0 else (lambda m: np.sum(m["a"]))
    fl.train(lambda m, _: uses(m), params, [np.zeros(1)], fl.setup(fl.Descent(0.1), params),
             progress=False, distributed=True)
    say(f"rank {me}: partial gradients: a {params['a']}, b {params['b']}")
    avg = fl.distributed.GradientAverager()
    w = np.full(2, float(me + 1))
    steps = [({"a": w, "b": None}, 1),  # no gradient of b anywhere: not in the plan
             ({"a": w, "b": w if me else None}, 1),  # b appears on rank 1: a new plan
             ({"a": w, "b": w if me else None}, 1 + me),  # the same plan, counts 1 and 2
             ({"a": w, "b": None}, 1),  # b planned, but no rank has it now: None
             ({"a": w[:1 + me], "b": None}, 1),  # different shapes: refused on every rank
             ({"a": w, ("b" if me else "c"): None}, 1)]  # different trees: refused too
    scalar = fl.distributed.GradientAverager().average(0.0, {"s": 1.0 + me, "k": 3}, 1)[1]
    empty = fl.distributed.GradientAverager(in_place=True, direct_bytes=8)
    for step, counts in enumerate([(0, 0), (1, 0), (0, 0)]):  # empty when agreeing, then not
        given = np.full(2, float(me + 1))
        try:
            out = empty.average(1.0, {"a": given}, counts[me])[1]["a"]
            say(f"rank {me}: empty step {step}: {out}")
        except ValueError as err:
            say(f"rank {me}: empty step {step}: {err} (gradient kept: {given})")
    say(f"rank {me}: a Python float averaged: {scalar}")
    for grads, count in steps:
        try:
            loss, out, n = avg.average(float(me), grads, count)
            say(f"rank {me}: averaged: {loss:.4f} {out['a']} {out['b']} {n}")
        except fl.distributed.DistributedError as err:
            say(f"rank {me}: {err}")
    x, y = data()
    if me == 1:
        x[26] = np.nan  # rank 1's part of the second global batch (8..15, then 24..31)
    model, state = make(init_seed=0)
    before = fl.io.modelstate.flat_state(fl.fmap(np.copy, model))
    try:
        fl.train(mse, model, fl.DataLoader((x, y), batchsize=BATCH, shard=True), state,
                 progress=False, distributed=True)
    except fl.TrainingError as err:
        say(f"rank {me}: {err}")
    fl.distributed.check_synced(model)
    changed = any(not np.array_equal(before[k], v)
                  for k, v in fl.io.modelstate.flat_state(model).items())
    say(f"rank {me}: one step taken: {changed}; then {fl.distributed.broadcast_object('ok')}")


def gradients(step, me):
    """A gradient tree with what the in-place averaging must tell apart; the same values and
    the same sharing of memory at each call for a step. ``late`` has no gradient on any
    rank until step 3, where rank 1 has one: a new plan."""
    rng = np.random.default_rng(100 * step + me)

    def f64(*shape):
        return rng.standard_normal(shape)

    param, shared, readonly = f64(6, 5), f64(4, 4), f64(3, 4)
    readonly.flags.writeable = False
    tree = {"w": f64(5, 4), "w32": f64(3, 7).astype(np.float32),
            "c": f64(3, 3) + 1j * f64(3, 3),
            "tied": [shared, shared],  # one array at two positions
            "view": param[1:4],  # a slice of a parameter
            "t": f64(4, 6).T,  # not C-contiguous
            "ro": readonly,
            "reshaped": f64(2, 12).reshape(4, 6),  # a view that is all of its memory
            "small": f64(2),  # below direct_bytes: in a bucket
            "s": 1.5 + me,  # a Python float
            "lacking": f64(3, 3) if me == 0 else None,  # zeros on rank 1
            # an integer array where the plan has a gradient: zeros too, and not written
            "int": np.arange(9).reshape(3, 3) if step == 1 and me == 1 else f64(3, 3),
            "late": f64(3, 3) if step == 3 and me == 1 else None}
    return tree, param


def in_place(out):
    """The same steps averaged in place (every gradient of 64 bytes or more travelling alone),
    in place where the first bucket has come at once, by copying on the same plan, and with
    buckets only: equal bit for bit, and equal to the weighted mean computed here; what may
    not be written is not."""
    me = fl.distributed.rank()
    g = fl.distributed.group()
    averagers = {"in place": fl.distributed.GradientAverager(in_place=True, direct_bytes=64),
                 "copies": fl.distributed.GradientAverager(direct_bytes=64),
                 "buckets": fl.distributed.GradientAverager(direct_bytes=1 << 30)}
    averagers["in place"].patience = 60.0  # wait for the first bucket: always in place
    averagers["unless late"] = fl.distributed.GradientAverager(in_place=True, direct_bytes=64)
    averagers["unless late"].patience = 0.0  # in place only if the first bucket is there
    # as fl.train: the gradients come multiplied by the averager's share, which it then
    # need not apply (it makes up the difference where the share was not this rank's)
    averagers["scaled"] = fl.distributed.GradientAverager(in_place=True, direct_bytes=64)
    averagers["scaled"].patience = 60.0
    # the buckets as messages, not summed in the memory the ranks share (shared.py)
    averagers["messages"] = fl.distributed.GradientAverager(direct_bytes=1 << 30)
    averagers["messages"].shared_bytes = 0
    for step, count in enumerate([3, 3 + me, 2, 3]):  # equal, unequal, a new total, new plan
        tree, _ = gradients(step, me)
        everyone = g.comm.allgather((positions(tree)[0], count))
        total = sum(c for _, c in everyone)
        expected = []
        for column in zip(*(leaves for leaves, _ in everyone)):
            have = [(np.asarray(x), c) for x, (_, c) in zip(column, everyone)
                    if x is not None and np.asarray(x).dtype.kind in "fc"]
            expected.append(sum(x * c for x, c in have) / total if have else None)
        results = {}
        for name, averager in averagers.items():
            tree, param = gradients(step, me)
            kept = fl.fmap(np.copy, {"param": param, "tied": tree["tied"], "t": tree["t"],
                                     "ro": tree["ro"], "int": tree["int"]})
            if tree["int"].dtype.kind == "f":
                del kept["int"]
            if name == "scaled":
                share = averager.share(count)
                leaves, spec = positions(tree)
                scaled = [x * share if layout.is_grad(x) else x for x in leaves]
                loss, avg, n = averager.average(0.5 * me, fl.tree.unflatten(spec, scaled),
                                                count, share)
            else:
                loss, avg, n = averager.average(0.5 * me, tree, count)
            assert n == total and loss == 0.5 * everyone[1][1] / total, (step, loss, n)
            for key, value in kept.items():  # not written: a slice, a shared, a read-only array
                now = param if key == "param" else tree[key]
                fl.fmap(np.testing.assert_array_equal, now, value)
            if name == "in place":  # averaged in the arrays given
                owned = ["w", "w32", "c", "reshaped"] + (["lacking"] if me == 0 else [])
                assert all(avg[k] is tree[k] for k in owned), step
                assert avg["view"] is not tree["view"] and avg["t"] is not tree["t"]
            # the buckets summed in shared memory (one machine), but where told not to
            assert (averager.shared is None) == (name == "messages"), (name, step)
            results[name] = positions(avg)[0]
        for name, got in results.items():
            for a, b, want in zip(got, results["buckets"], expected):
                assert (a is None) == (b is None) == (want is None), step
                if a is not None and name != "scaled":  # scaled twice: rounded differently
                    np.testing.assert_array_equal(a, b)
                if a is not None:
                    np.testing.assert_allclose(a, want, rtol=1e-6 if a.dtype == np.float32
                                               else 1e-12)
    say(f"rank {me}: in place as by copying")


def overlap(out):
    """``begin``'s callback posting messages during the backward pass: the same numbers, bit
    for bit, as the averaging after it, at equal and unequal counts, a gradient missing on
    one rank, ``begin`` told another share than ``average``, and a tree that is not the one
    the callback saw (the last two: the step goes again from the gradients as they came).
    "mixed": rank 0 in place, rank 1 not (rank 0's setting orders the messages)."""
    fl.distributed.init(timeout=60.0)
    for in_place in (True, False, "mixed"):  # the large gradients after the header, or early
        _overlap(in_place)


def _overlap(in_place):
    me = fl.distributed.rank()
    fl.seed(0)
    model = fl.f64(fl.Chain(fl.Dense(4, 8, np.tanh), fl.Dense(8, 8, np.tanh), fl.Dense(8, 3)))
    model = fl.distributed.broadcast(model)
    mine = me == 0 if in_place == "mixed" else in_place
    early = fl.distributed.GradientAverager(64, in_place=mine, direct_bytes=256)
    early.tail_bytes = 0  # only the last gradient waits for the header
    early.shared_bytes = 0  # the buckets travel (through shared memory none goes early)
    after = fl.distributed.GradientAverager(64, direct_bytes=256)
    rng = np.random.default_rng(me)
    posted, agreed = [], []
    agree = early._agree
    early._agree = lambda *args: agreed.append(len(posted)) or agree(*args)
    for step in range(7):
        count = 4 + me if step == 3 else 4
        x = rng.standard_normal((count, 4))
        skip = step == 4 and me == 1  # no gradient of the last bias on rank 1

        def loss(m, share):
            y = m[1](m[0](x))
            y = y @ m[2].weight.T + (0.0 if skip else m[2].bias)
            return np.mean(y ** 2) * share

        share = early.share(count)
        hook = early.begin(count, 2 * share if step == 5 else share)
        value, (grads,) = fl.withgradient(lambda m: loss(m, share), model, on_final=hook)
        posted.append(len(hook.requests))
        given = fl.fmap(np.copy, grads) if step == 6 else grads
        got = early.average(float(value) / share, given, count, share)
        got = (got[0], fl.fmap(np.copy, got[1]), got[2])
        value, (grads,) = fl.withgradient(lambda m: loss(m, share), model)
        want = after.average(float(value) / share, grads, count, share)
        assert got[0] == want[0] and got[2] == want[2], (step, got, want)
        for a, b in zip(positions(got[1])[0], positions(want[1])[0]):
            assert (a is None) == (b is None), step
            if a is not None:
                np.testing.assert_array_equal(a, b, err_msg=f"step {step}")
        fl.update(fl.setup(fl.Descent(0.1), model), model, want[1])
    messages = len(early.buckets) + len(early.direct)
    say(f"rank {me}: overlap as after (in place {in_place}): {len(early.early)} early of "
        f"{messages} messages; "
        f"posted during the backward pass per step {posted}; plans agreed at steps {agreed}")


def syncbn_overlap(out):
    """Messages posted during the backward pass while SyncBatchNorm's backward runs its own
    allreduces: the ranks post them at different points of their sweeps (rank 1 adds a
    regulariser on ``p`` and ``q``, recorded first, so final last; at step 0, the one that
    agrees the plan, rank 1 does not use them at all; at step 2 rank 0 does not use ``q``),
    and the sums are those of the averaging after the backward pass, bit for bit. ``s``, a
    Python float, is final first: it goes early, as its value (not as zeros)."""
    fl.distributed.init(timeout=60.0)
    me = fl.distributed.rank()
    fl.seed(0)
    model = {"d1": fl.f64(fl.Dense(4, 8)),
             "bn": fl.distributed.SyncBatchNorm(8, affine=False, track_stats=False,
                                                dtype=np.float64),
             "p": np.linspace(0.5, 1.5, 8), "q": np.linspace(-1, 1, 9),
             "d2": fl.f64(fl.Dense(8, 3)), "s": 1.5}
    model = fl.distributed.broadcast(model)
    rng = np.random.default_rng(me)
    early = fl.distributed.GradientAverager(8, direct_bytes=1 << 20)  # a message per gradient
    early.tail_bytes = 0
    early.shared_bytes = 0  # the buckets travel (through shared memory none goes early)
    after = fl.distributed.GradientAverager(8, direct_bytes=1 << 20)
    posted = []
    for step in range(4):
        x, y = rng.standard_normal((5, 4)), rng.standard_normal((5, 3))
        use_p = not (step == 0 and me == 1)
        use_q = use_p and not (step == 2 and me == 0)

        def loss(m):
            reg = 1e-2 * (np.sum(m["p"] ** 2) + np.sum(m["q"] ** 2)) if me == 1 and step else 0
            z = m["d1"](x)
            if use_p:
                z = z * m["p"] + (np.sum(m["q"]) * 0.1 if use_q else 0.0)
            return np.mean((m["d2"](m["bn"](z)) - y) ** 2) * m["s"] + reg

        hook = early.begin(5)
        value, (grads,) = fl.withgradient(loss, model, on_final=hook)
        posted.append(len(hook.requests))
        got, want, grads = _early_and_after(early, after, loss, model, value, grads, step)
        assert type(grads["s"]) is float and got[1]["s"] == want[1]["s"] != 0, step
        for a, b in zip(positions(got[1])[0], positions(want[1])[0]):
            assert (a is None) == (b is None), step
            if a is not None:
                np.testing.assert_array_equal(a, b, err_msg=f"step {step}")
    say(f"rank {me}: overlap beside SyncBatchNorm as after; posted during the backward pass "
        f"per step {posted}")


def _early_and_after(early, after, loss, model, value, grads, step, count=5):
    """The step averaged by ``early`` (given the gradients its callback sent during the
    backward pass; copied, as its views change at the next step) and by ``after`` (a new
    backward pass, averaged after it): the loss and counts agree; the trees to compare, and
    the gradients of the second pass."""
    got = early.average(float(value), grads, count)
    got = (got[0], fl.fmap(np.copy, got[1]), got[2])
    value, (grads,) = fl.withgradient(loss, model)
    want = after.average(float(value), grads, count)
    assert got[0] == want[0] and got[2] == want[2], (step, got, want)
    return got, want, grads


def abandon(out):
    """A backward pass that raises on every rank after some messages were posted, at another
    point on each rank (rank 0 late in its sweep, rank 1 early); the caller catches it and
    goes on: at step 1 by calling ``abandon``, at step 3 by calling ``begin`` again. The
    steps after are those of the averaging after the backward pass, bit for bit."""
    fl.distributed.init(timeout=60.0)
    me = fl.distributed.rank()
    fl.seed(0)
    model = fl.f64(fl.Chain(fl.Dense(4, 8, np.tanh), fl.Dense(8, 8, np.tanh), fl.Dense(8, 3)))
    model = fl.distributed.broadcast(model)
    boom = {"at": None}

    @fl.custom_vjp
    def guard(x, where):
        return x

    def bwd(res, g):
        if boom["at"] == res:
            raise FloatingPointError("bad cotangent")
        return (g, None)

    guard.defvjp(lambda x, where: (x, where), bwd)
    early = fl.distributed.GradientAverager(64, direct_bytes=1 << 20)
    early.tail_bytes = 0
    early.shared_bytes = 0  # the buckets travel (through shared memory none goes early)
    after = fl.distributed.GradientAverager(64, direct_bytes=1 << 20)
    rng = np.random.default_rng(me)
    posted, raised = [], []
    for step in range(6):
        x, y = rng.standard_normal((5, 4)), rng.standard_normal((5, 3))
        boom["at"] = (0 if me == 0 else 1) if step in (1, 3) else None

        def loss(m):
            h = guard(m[1](guard(m[0](x), 0)), 1)
            return np.mean((m[2](h) - y) ** 2)

        hook = early.begin(5)
        try:
            value, (grads,) = fl.withgradient(loss, model, on_final=hook)
        except FloatingPointError:
            posted.append(len(hook.requests))
            raised.append(step)
            if step == 1:
                early.abandon()
            continue
        posted.append(len(hook.requests))
        got, want, _ = _early_and_after(early, after, loss, model, value, grads, step)
        for a, b in zip(positions(got[1])[0], positions(want[1])[0]):
            np.testing.assert_array_equal(a, b, err_msg=f"step {step}")
        fl.update(fl.setup(fl.Descent(0.1), model), model, want[1])
    say(f"rank {me}: abandoned steps {raised}, posted during the backward pass per step "
        f"{posted}")
    # fl.train: an error raised on every rank (so marked: the job stays usable) in the
    # backward pass of its third step, caught; then the training goes on as without overlap
    from fluxml.distributed.group import on_every_rank

    steps = {"n": 0}

    def bwd_every(res, g):
        if steps["n"] == 3 and res == me:
            raise on_every_rank(FloatingPointError("bad cotangent"))
        return (g, None)

    guard.defvjp(lambda x, where: (x, where), bwd_every)
    class Tiny(fl.distributed.GradientAverager):  # a message per gradient: 3 go early
        def __init__(self, bucket_bytes, in_place):
            super().__init__(64, in_place, 1 << 20)
            self.tail_bytes = 0
            self.shared_bytes = 0  # the buckets travel (through shared memory none early)
            made.append(self)

    made = []
    fl.distributed.parallel.GradientAverager = Tiny

    def mse_guarded(m, x, y):
        steps["n"] += 1
        return np.mean((guard(m[1](guard(m[0](x), 0)), 1) - y) ** 2)

    model, state = make(init_seed=0)
    try:
        fl.train(mse_guarded, model, loader(BATCH, True), state, epochs=1, progress=False,
                 distributed="overlap")
    except FloatingPointError as err:
        say(f"rank {me}: caught {err} at step {steps['n']} ({len(made[0].early)} early)")
    twin, twin_state = fl.fmap(np.copy, model), fl.fmap(np.copy, state)
    fl.train(mse, model, loader(BATCH, True), state, epochs=1, progress=False,
             distributed="overlap")
    fl.train(mse, twin, loader(BATCH, True), twin_state, epochs=1, progress=False,
             distributed=True)
    for a, b in zip(positions(model)[0], positions(twin)[0]):
        np.testing.assert_array_equal(a, b)
    fl.distributed.check_synced(model)
    say(f"rank {me}: fl.train after the error as without overlap")


def bn_model():
    fl.seed(3)
    return fl.f64(fl.Chain(fl.Conv((3, 3), 3, 4), fl.BatchNorm(4, np.tanh), fl.Flatten(),
                           fl.Dense(16, 2)))


def bn_data():
    rng = np.random.default_rng(5)
    return rng.normal(2.0, 3.0, size=(8, 3, 4, 4)), rng.normal(size=(8, 2))


def bn_steps(model, x, y, average):
    """Two steps of Descent; per step the outputs, the (averaged) gradients and the running
    statistics after it."""
    state = fl.setup(fl.Descent(0.1), model)
    record = []
    for _ in range(2):
        seen = {}

        def loss(m):
            out = m(x)
            seen["out"] = fl.ad.core.raw(out)
            return np.mean((out - y) ** 2)

        value, (grads,) = fl.withgradient(loss, model)
        value, grads, _ = average(value, grads, len(x))
        record.append({"loss": np.array(value), "out": seen["out"],
                       "mean": model[1].running_mean.copy(), "var": model[1].running_var.copy(),
                       **{f"grad.{k}": np.array(v) for k, v in fl.tree.leaves_with_paths(grads)}})
        fl.update(state, model, grads)
    return record


def syncbn(out):
    """Two steps with a synchronised BatchNorm, rank 0 on 5 observations, rank 1 on 3."""
    model = fl.distributed.sync_batchnorm(bn_model())
    x, y = bn_data()
    rank = fl.distributed.rank()
    part = slice(0, 5) if rank == 0 else slice(5, 8)
    record = bn_steps(model, x[part], y[part], fl.distributed.GradientAverager().average)
    np.savez(Path(out) / f"rank{fl.distributed.rank()}.npz",
             **{f"{i}.{k}": v for i, r in enumerate(record) for k, v in r.items()})
    bn, h = fl.trainmode(model[1]), np.arange(32.0).reshape(2, 4, 2, 2) * (1 + rank)

    def norm_of_gradient(w):  # a second derivative through the synchronised statistics
        return np.sum(fl.gradient(lambda z: np.sum(bn(z) ** 3), h * w[:, None, None])[0] ** 2)

    try:
        fl.gradient(norm_of_gradient, np.ones(4))
    except fl.DifferentiationError as err:
        say(f"rank {rank}: {err}")


def syncbn_train(out):
    """fl.train with a SyncBatchNorm (the ranks' loss multiplied by their shares of the global
    batch, unequal at the second step: 4 and 3 of 7), then a run resumed under a learning-rate
    schedule from a checkpoint that rank 0 alone loads, which freezes a layer and holds the
    history of one epoch (rank 1 passes an empty one)."""
    me = fl.distributed.rank()
    model = fl.distributed.sync_batchnorm(bn_train_model())
    x, y = bn_train_data()
    fl.train(mse, model, fl.DataLoader((x, y), batchsize=4, shard=True),
             fl.setup(fl.Descent(0.1), model), progress=False, distributed=True)
    flat = fl.io.modelstate.flat_state(model)
    model, state = make(init_seed=me)
    if me == 0:  # one epoch in one process
        fl.freeze(state.layers[0])
        fl.train(mse, model, loader(2 * BATCH, False), state, progress=False,
                 callbacks=[fl.SaveCheckpoint(Path(out) / "frozen.st")])
    fl.distributed.broadcast_object(None)  # written
    model, state = make(init_seed=me)
    history = fl.History()  # filled with rank 0's, in place
    if me == 0:
        info = fl.load_checkpoint(Path(out) / "frozen.st", model, state)
        history = fl.History.from_dict(info.extra["history"])
    before = fl.distributed.broadcast({"w": model[0].weight.copy()})["w"]  # rank 0's
    h = fl.train(mse, model, loader(BATCH, True), state, progress=False, distributed=True,
                 history=history, callbacks=[fl.LRSchedule(fl.ExpDecay(0.01, 0.5))])
    fl.distributed.check_synced(model)
    np.savez(Path(out) / f"rank{me}.npz", **flat, frozen=state.layers[0].weight.frozen,
             unchanged=np.array_equal(model[0].weight, before), steps=h.step,
             same=h is history)


def bn_train_model():
    fl.seed(4)
    return fl.f64(fl.Chain(fl.Dense(3, 4), fl.BatchNorm(4, np.tanh), fl.Dense(4, 1)))


def bn_train_data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((15, 3)), rng.standard_normal((15, 1))


class StopOnRank1(fl.Callback):
    """Asks to stop at the end of the first epoch on rank 1 only (an evaluation of its own
    data deciding so)."""

    def on_epoch_end(self, run):
        run.stop = run.stop or fl.distributed.rank() == 1


class StopInStepOnRank1(fl.Callback):
    """Asks to stop after the second step of the second epoch, on rank 1 only."""

    def on_step_end(self, run):
        run.stop = run.stop or (fl.distributed.rank() == 1 and run.step == 6)


def step_stop(out):
    me = fl.distributed.rank()
    model, state = make(init_seed=0)
    h = fl.train(mse, model, loader(BATCH, True), state, epochs=3, progress=False,
                 distributed=True, callbacks=[StopInStepOnRank1()])
    fl.distributed.check_synced(model)
    np.savez(Path(out) / f"rank{me}.npz", steps=h.step, epochs=len(h.epochs))


def statistics(out):
    """A plain BatchNorm trained on each rank's own batches: its running statistics averaged
    at each epoch's end; a callback stopping one rank stops both; then the average of
    statistics that differ (rank-made values) and of statistics that agree."""
    me = fl.distributed.rank()
    model = bn_train_model()
    x, y = bn_train_data()
    h = fl.train(mse, model, fl.DataLoader((x, y), batchsize=4, shard=True),
                 fl.setup(fl.Adam(0.01), model), epochs=3, progress=False, distributed=True,
                 callbacks=[StopOnRank1()])
    fl.distributed.check_synced(model)
    bn = fl.f32(fl.BatchNorm(3))
    bn.running_mean[...] = [me, 2 * me, 0.1]  # the last entry alike on both ranks
    bn.running_var[...] = 0.3
    fl.distributed.average_statistics(bn)
    np.savez(Path(out) / f"rank{me}.npz", epochs=len(h.epochs), mean=bn.running_mean,
             var=bn.running_var)


class ListObservations:
    """A dataset of ``[x_i, y_i]`` lists: its batches are lists ``[xb, yb]``, 2 long."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return [self.x[i], self.y[i]]


def list_mse(m, batch):
    return mse(m, *batch)


def list_batches(out):
    """15 list observations, 4 per rank: the second global batch is cut 4 and 3."""
    me = fl.distributed.rank()
    model, state = make(init_seed=0)
    x, y = data()
    h = fl.train(list_mse, model, fl.DataLoader(ListObservations(x[:15], y[:15]),
                                                batchsize=4, shard=True),
                 state, epochs=2, progress=False, distributed=True)
    save(out, f"rank{me}", model, h)


if __name__ == "__main__":
    mode, out = sys.argv[1], sys.argv[2]
    if mode == "early":  # rank 1 (MPICH's launcher says which) fails before joining the job
        if os.environ.get("PMI_RANK") == "1":
            raise ValueError("boom before init")
        fl.distributed.init(timeout=2.0)
    runs = {"equal": train_equal, "equal_overlap": lambda out: train_equal(out, "overlap"),
            "consistent": consistent, "in_place": in_place, "overlap": overlap,
            "syncbn": syncbn, "abandon": abandon, "syncbn_overlap": syncbn_overlap,
            "own_loop": own_loop, "syncbn_train": syncbn_train, "statistics": statistics,
            "list_batches": list_batches, "step_stop": step_stop,
            "resume": lambda out: resume(out, sys.argv[3]),
            "resume_best": lambda out: resume_best(out, sys.argv[3])}
    if mode in runs:
        runs[mode](out)
    else:
        fail(out, mode)
