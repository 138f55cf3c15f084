"""A run goes on within an epoch (skipping the batches its history holds steps of) only
where the data gives that epoch's batches in the same order again: a DataLoader restored
from SaveCheckpoint(steps=k)'s file, the same list of batches. Elsewhere the epoch starts
again from its first batch, with a warning (reviewer's findings 1 to 3 on resumefuzz)."""

import io
import sys

import numpy as np
import pytest

import fluxml as fl
from fluxml import progress

X = np.random.default_rng(0).normal(size=(8, 2)).astype(np.float32)


def _loss_seeing(seen):
    """mse of a Dense, recording the first feature of each row it trains on."""
    def loss(m, a, b):
        seen.append(np.asarray(a)[:, 0].copy())
        return fl.mse(m(a), b)
    return loss


class Kill(fl.Callback):
    def __init__(self, at):
        self.at = at

    def on_step_end(self, run):
        if run.step == self.at:
            raise KeyboardInterrupt


@pytest.mark.parametrize("saving", [False, True])
def test_a_run_continued_in_its_process_after_ctrl_c_trains_its_epoch_afresh(tmp_path, saving):
    # continued with its own history after Ctrl-C at step 2 of 4 (shuffled), fl.train
    # skipped 2 batches of the loader's next order: it trained 3 rows twice and never saw
    # 3 others, and the epoch's mean took in the interrupted call's losses, silently
    model = fl.Dense(2, 1)
    state = fl.setup(fl.Descent(0.01), model)
    loader = fl.DataLoader((X, X.sum(1, keepdims=True)), batchsize=2, shuffle=True,
                           rng=np.random.default_rng(1))
    seen, h = [], fl.History()
    kill = [Kill(2)] + ([fl.SaveCheckpoint(tmp_path / "c-{step}.st", steps=1)] if saving else [])
    with pytest.raises(KeyboardInterrupt):
        fl.train(_loss_seeing(seen), model, loader, state, history=h, progress=False,
                 callbacks=kill)
    assert h.step == 2 and h.epoch == 0
    seen.clear()
    with pytest.warns(UserWarning, match="holds 2 steps of epoch 1 .* no place within the "
                                         "epoch .* starts again from its first batch"):
        fl.train(_loss_seeing(seen), model, loader, state, history=h, progress=False)
    assert sorted(np.concatenate(seen)) == sorted(X[:, 0])  # every row once
    assert h.step == 6 and h.epochs[0]["step"] == 6
    assert h.epochs[0]["loss"] == pytest.approx(np.mean(h.losses[2:]), rel=1e-12)


def _saved_run(tmp_path, rng=None):
    """A run of 2 epochs of 4 shuffled batches, saving every 3 steps (step 3: in epoch 1)."""
    model = fl.Dense(2, 1)
    loader = fl.DataLoader((X, X.sum(1, keepdims=True)), batchsize=2, shuffle=True,
                           rng=np.random.default_rng(5) if rng is None else rng)
    return fl.train(lambda m, a, b: fl.mse(m(a), b), model, loader,
                    fl.setup(fl.Descent(0.01), model), epochs=2, progress=False,
                    callbacks=[fl.SaveCheckpoint(tmp_path / "c-{step}.st", steps=3, every=9)])


def test_a_checkpoint_resumed_without_its_loaders_generator_trains_its_epoch_afresh(tmp_path):
    # a loader whose generator the checkpoint did not restore draws another order: skipping
    # 3 of its batches trained some rows twice and others never, silently
    _saved_run(tmp_path)
    model = fl.Dense(2, 1)
    state = fl.setup(fl.Descent(0.01), model)
    info = fl.load_checkpoint(tmp_path / "c-3.st", model, state)  # (no rngs={"data": ...})
    loader = fl.DataLoader((X, X.sum(1, keepdims=True)), batchsize=2, shuffle=True,
                           rng=np.random.default_rng(6))
    seen = []
    with pytest.warns(UserWarning, match="generator is not as the checkpoint saved it"):
        h = fl.train(_loss_seeing(seen), model, loader, state, progress=False,
                     history=fl.History.from_dict(info.extra["history"]))
    assert sorted(np.concatenate(seen)) == sorted(X[:, 0]) and h.step == 7


def test_data_shorter_than_the_saved_place_trains_each_epoch_once(tmp_path):
    # a history 3 steps into epoch 1, data of 2 batches an epoch (batches of 4): the count
    # left over went on to the next epochs, which trained nothing and wrote rows of the old
    # losses ("step 3" three times)
    _saved_run(tmp_path)
    model = fl.Dense(2, 1)
    state = fl.setup(fl.Descent(0.01), model)
    loader = fl.DataLoader((X, X.sum(1, keepdims=True)), batchsize=4, shuffle=True,
                           rng=np.random.default_rng(5))
    info = fl.load_checkpoint(tmp_path / "c-3.st", model, state, rngs={"data": loader.rng})
    seen = []
    with pytest.warns(UserWarning, match="cuts 8 observations into 2 shuffled batches of 4, "
                                         "the run's cut 8 observations into 4 shuffled"):
        h = fl.train(_loss_seeing(seen), model, loader, state, epochs=3, progress=False,
                     history=fl.History.from_dict(info.extra["history"]))
    assert len(seen) == 6 and [r["step"] for r in h.epochs] == [5, 7, 9]
    for row in h.epochs:
        assert row["loss"] == pytest.approx(np.mean(h.losses[row["step"] - 2:row["step"]]))


def test_a_hand_made_history_within_an_epoch_trains_its_epoch_afresh():
    # six steps into an epoch, no place saved: the review's probe p2 (0 steps trained)
    h = fl.History(losses=[1.0] * 6)
    model = fl.Dense(2, 1)
    seen = []
    with pytest.warns(UserWarning, match="holds 6 steps of epoch 1 .* or a History made by "
                                         "hand"):
        fl.train(_loss_seeing(seen), model, [(X[:4], X[:4, :1]), (X[4:], X[4:, :1])],
                 fl.setup(fl.Descent(0.01), model), epochs=3, progress=False, history=h)
    assert len(seen) == 6 and [r["step"] for r in h.epochs] == [8, 10, 12]


def test_a_shards_place_goes_on_in_one_process_of_the_same_global_batch():
    # rank 0 of 2 ranks, batches of 2 each, saved after batch 1: one process with batches
    # of 4 cuts the same global batches, so it goes on after the first; batches of 2 do not
    shard = fl.DataLoader(np.arange(10), batchsize=2, shuffle=True,
                          rng=np.random.default_rng(3), shard=(0, 2))
    next(iter(shard))
    mark = shard._mark(shard._passes)
    one = fl.DataLoader(np.arange(10), batchsize=4, shuffle=True, rng=np.random.default_rng(0))
    one.rng.bit_generator.state = mark["now"]
    order = np.random.default_rng(3).permutation(10)
    assert [b.tolist() for b in one._go_on(mark, 1)] == [order[4:8].tolist(),
                                                         order[8:].tolist()]
    other = fl.DataLoader(np.arange(10), batchsize=2, shuffle=True)
    other.rng.bit_generator.state = mark["now"]
    assert "cuts 10 observations into 5 shuffled batches of 2" in other._go_on(mark, 1)


def test_a_callback_iterating_the_loader_within_the_epoch_saves_no_place(tmp_path):
    # a callback drawing a batch of run.data at its steps began another pass: the file of
    # SaveCheckpoint(steps=1) saved that pass's generator state as the epoch's, and the
    # resumed run silently skipped 2 batches of another order (reviewer's probe p13)
    class Peek(fl.Callback):
        def on_step_end(self, run):
            next(iter(run.data))

    def loader(seed):
        return fl.DataLoader((X, X.sum(1, keepdims=True)), batchsize=2, shuffle=True,
                             rng=np.random.default_rng(seed))

    model, seen = fl.Dense(2, 1), []
    with pytest.raises(KeyboardInterrupt):
        fl.train(_loss_seeing(seen), model, loader(3), fl.setup(fl.Descent(0.01), model),
                 epochs=2, progress=False,
                 callbacks=[Peek(), fl.SaveCheckpoint(tmp_path / "c.st", steps=1), Kill(6)])
    model = fl.Dense(2, 1)
    state, data = fl.setup(fl.Descent(0.01), model), loader(50)
    info = fl.load_checkpoint(tmp_path / "c.st", model, state, rngs={"data": data.rng})
    h = fl.History.from_dict(info.extra["history"])
    assert h.step == 5 and h.epoch == 1  # (SaveCheckpoint runs after Kill: step 5's file)
    seen.clear()
    with pytest.warns(UserWarning, match="another pass over the DataLoader began"):
        fl.train(_loss_seeing(seen), model, data, state, epochs=1, history=h,
                 progress=False, callbacks=[Peek()])
    assert sorted(np.concatenate(seen)) == sorted(X[:, 0])  # every row of epoch 2 once
    assert h.step == 9 and h.epochs[1]["step"] == 9


def test_an_unshuffled_loader_goes_on_without_its_generator_restored(tmp_path, recwarn):
    # its order is always the same, but the resume compared its generator with the file's
    # and trained the epoch again, with a warning (reviewer's probe p11)
    def loader():
        return fl.DataLoader((X, X.sum(1, keepdims=True)), batchsize=2)

    model = fl.Dense(2, 1)
    with pytest.raises(KeyboardInterrupt):
        fl.train(lambda m, a, b: fl.mse(m(a), b), model, loader(),
                 fl.setup(fl.Descent(0.01), model), epochs=2, progress=False,
                 callbacks=[fl.SaveCheckpoint(tmp_path / "c.st", steps=1), Kill(6)])
    model = fl.Dense(2, 1)
    state = fl.setup(fl.Descent(0.01), model)
    info = fl.load_checkpoint(tmp_path / "c.st", model, state)  # (no rngs)
    h, seen = fl.History.from_dict(info.extra["history"]), []
    assert h.step == 5  # (SaveCheckpoint runs after Kill: step 5's file, batch 1 of epoch 2)
    fl.train(_loss_seeing(seen), model, loader(), state, epochs=1, history=h, progress=False)
    assert not [w for w in recwarn if "starts again" in str(w.message)]
    np.testing.assert_array_equal(np.concatenate(seen), X[2:, 0])  # batches 2 to 4
    assert h.step == 8 and h.epochs[1]["step"] == 8


def test_a_resumed_epochs_progress_bar_counts_the_steps_it_holds(tmp_path, monkeypatch):
    # resumed at step 3 of 4 of epoch 1, the bar counted from 0 and ended at "1/4"
    _saved_run(tmp_path)
    model = fl.Dense(2, 1)
    state = fl.setup(fl.Descent(0.01), model)
    loader = fl.DataLoader((X, X.sum(1, keepdims=True)), batchsize=2, shuffle=True,
                           rng=np.random.default_rng(5))
    info = fl.load_checkpoint(tmp_path / "c-3.st", model, state, rngs={"data": loader.rng})
    drawn, text_bar = [], progress.TextBar

    def bar(total, desc, initial=0):  # the built-in bar, written here
        drawn.append(text_bar(total, desc, io.StringIO(), interval=0.0, initial=initial))
        return drawn[-1]

    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # (imported by an earlier test)
    monkeypatch.setattr(progress, "TextBar", bar)
    fl.train(lambda m, a, b: fl.mse(m(a), b), model, loader, state, epochs=2,
             history=fl.History.from_dict(info.extra["history"]))
    first = drawn[0].file.getvalue().split("\r")[-1]
    assert first.startswith("epoch 1/2 [") and " 4/4 loss" in first
    assert " 4/4 loss" in drawn[1].file.getvalue().split("\r")[-1]
