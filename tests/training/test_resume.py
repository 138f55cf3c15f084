"""Training resumed from SaveCheckpoint's files, with fresh callbacks (as after a crash), ends
as the uninterrupted run: EarlyStopping judges the epochs before the resume from the history
(the defects tests/training/fuzz_runs.py found)."""

import os
import warnings

import numpy as np
import pytest

import fluxml as fl


def _loss(m):
    return np.sum(m["w"] ** 2)


class Scores(fl.Callback):
    """Logs the metric ``score`` of each epoch from a table (a user's callback, before
    EarlyStopping)."""

    def __init__(self, scores):
        self.scores = scores

    def on_epoch_end(self, run):
        run.history.log(score=self.scores[run.epoch])


def _run(tmp_path, epochs, callbacks, resume_from=None):
    """``(model, history)`` of a run, fresh or resumed from the checkpoint of an epoch."""
    model = {"w": np.ones(2)}
    state = fl.setup(fl.Descent(0.1), model)
    history = None
    if resume_from is not None:
        model["w"][:] = 7.0  # a fresh process: other weights, filled in by the load
        info = fl.load_checkpoint(tmp_path / f"ckpt-{resume_from}.st", model, state)
        history = fl.History.from_dict(info.extra["history"])
        epochs -= history.epoch
    saver = fl.SaveCheckpoint(tmp_path / "ckpt-{epoch}.st")
    h = fl.train(_loss, model, [()] * 2, state, epochs=epochs, progress=False,
                 callbacks=[*callbacks, saver], history=history)
    return model, h


def test_early_stopping_resumed_counts_its_patience_on(tmp_path):
    def flat(m):  # never improves after the first epoch
        return 0 * np.sum(m["w"]) + 1.0

    model = {"w": np.ones(1)}
    saver = fl.SaveCheckpoint(tmp_path / "ckpt-{epoch}.st")
    stop = fl.EarlyStopping(patience=3, restore_best=False)
    h = fl.train(flat, model, [()], fl.setup(fl.Descent(0.1), model), epochs=8,
                 progress=False, callbacks=[stop, saver])
    assert h.epoch == 4  # best at 1, then 3 epochs without improvement
    state = fl.setup(fl.Descent(0.1), model)
    info = fl.load_checkpoint(tmp_path / "ckpt-2.st", model, state)
    stop = fl.EarlyStopping(patience=3, restore_best=False)
    resumed = fl.train(flat, model, [()], state, epochs=6, progress=False, callbacks=[stop],
                       history=fl.History.from_dict(info.extra["history"]))
    assert resumed.epoch == 4  # (it ran to epoch 6, patience counted from the resume)
    assert (stop.best_epoch, stop.wait, stop.stopped_epoch) == (1, 3, 4)


def test_early_stopping_resumed_from_the_epoch_it_stopped_at_trains_no_further(tmp_path):
    # the checkpoint of the epoch where EarlyStopping stopped the run (the process died
    # before train returned): the resumed run trained another epoch, silently
    def flat(m):
        return 0 * np.sum(m["w"]) + 1.0

    model = {"w": np.ones(1)}
    saver = fl.SaveCheckpoint(tmp_path / "ckpt-{epoch}.st")
    h = fl.train(flat, model, [()] * 2, fl.setup(fl.Descent(0.1), model), epochs=8,
                 progress=False, callbacks=[fl.EarlyStopping(patience=2), saver])
    assert h.epoch == 3
    state = fl.setup(fl.Descent(0.1), model)
    info = fl.load_checkpoint(tmp_path / "ckpt-3.st", model, state)
    stop = fl.EarlyStopping(patience=2)
    # (it trained nothing, silently: now a warning says so)
    with pytest.warns(UserWarning, match=r"3 epochs already used up its patience \('loss' "
                                         r"not improved for 2 epochs since epoch 1, patience "
                                         r"2\): the run stopped at epoch 3 and this call "
                                         r"trains nothing more"):
        resumed = fl.train(flat, model, [()] * 2, state, epochs=5, progress=False,
                           callbacks=[stop],
                           history=fl.History.from_dict(info.extra["history"]))
    assert (resumed.epoch, resumed.step) == (3, 6)
    assert (stop.best_epoch, stop.wait, stop.stopped_epoch) == (1, 2, 3)


def test_early_stopping_on_a_metric_of_every_other_epoch_resumes(tmp_path):
    _run(tmp_path, 2, [fl.Evaluate(lambda m: 1.0, every=2, name="val"),
                       fl.EarlyStopping("val")])
    # epoch 3 has no val, the history's epoch 2 has: no "no epoch had the metric" error
    _, h = _run(tmp_path, 3, [fl.Evaluate(lambda m: 1.0, every=2, name="val"),
                              fl.EarlyStopping("val")], resume_from=2)
    assert h["val"] == [None, 1.0, None]


def test_restore_best_after_a_resume_at_the_best_epoch(tmp_path):
    scores = {1: 3.0, 2: 1.0, 3: 2.0, 4: 2.5}  # best at 2, then two worse: stop at 4
    straight, h = _run(tmp_path, 6, [Scores(scores), fl.EarlyStopping("score", patience=2)])
    assert h.epoch == 4
    stop = fl.EarlyStopping("score", patience=2)
    resumed, h2 = _run(tmp_path, 6, [Scores(scores), stop], resume_from=2)
    assert h2.epoch == 4 and stop.best_epoch == 2
    assert np.array_equal(resumed["w"], straight["w"])
    np.testing.assert_allclose(resumed["w"], 0.8**4)  # epoch 2's: 4 steps of w -= 0.2 w


def test_restore_best_of_an_epoch_before_the_resume_restores_it(tmp_path):
    """The best epoch's weights were not in the checkpoint: a run resumed after it warned and
    kept its last weights. The history keeps them now (SaveCheckpoint saves them)."""
    scores = {1: 1.0, 2: 3.0, 3: 2.0}
    straight, _ = _run(tmp_path, 3, [Scores(scores), fl.EarlyStopping("score", patience=5)])
    np.testing.assert_allclose(straight["w"], 0.8**2)  # epoch 1's
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resumed, h = _run(tmp_path, 3, [Scores(scores), fl.EarlyStopping("score", patience=5)],
                          resume_from=2)
    assert h.epoch == 3
    assert resumed["w"].tobytes() == straight["w"].tobytes()


def _without_kept(path):
    """The checkpoint at ``path`` rewritten as a fluxml before ``History.kept`` wrote it."""
    model, state = {"w": np.zeros(2)}, fl.setup(fl.Descent(0.1), {"w": np.zeros(2)})
    info = fl.load_checkpoint(path, model, state)
    history = {k: v for k, v in info.extra["history"].items() if k != "kept"}
    fl.save_checkpoint(path, model, state, step=info.step,
                       extra={**info.extra, "history": history})


@pytest.mark.parametrize("old", ["no kept weights", "another min_delta"])
def test_restore_best_of_an_epoch_before_the_resume_warns_without_its_weights(tmp_path, old):
    scores = {1: 1.0, 2: 3.0, 3: 2.0}
    _run(tmp_path, 2, [Scores(scores), fl.EarlyStopping("score", patience=5)])
    delta = 0.0
    if old == "no kept weights":
        _without_kept(tmp_path / "ckpt-2.st")
    else:
        delta = 0.5  # (its best epoch is another's to judge: those weights are not its own)
    with pytest.warns(UserWarning, match="the best epoch, 1, came before this run resumed"):
        resumed, _ = _run(tmp_path, 3, [Scores(scores),
                                        fl.EarlyStopping("score", patience=5, min_delta=delta)],
                          resume_from=2)
    np.testing.assert_allclose(resumed["w"], 0.8**6)  # epoch 3's weights, kept


def _rows(h):
    return [{k: v for k, v in r.items() if k not in ("time", "samples_per_second")}
            for r in h.epochs]


def test_a_history_saved_within_an_epoch_goes_on_after_its_steps(tmp_path):
    # a checkpoint saved after step 2 of 4: the resumed run trained the epoch's first two
    # batches again (10 steps for 8), silently
    batches = [np.full(2, v) for v in (1.0, -2.0, 3.0, 0.5)]

    def loss(m, x):
        return np.sum(m["w"] * x) ** 2

    model = {"w": np.ones(2)}
    h = fl.train(loss, model, batches, fl.setup(fl.Adam(0.1), model), epochs=2,
                 progress=False, callbacks=[fl.SaveCheckpoint(tmp_path / "c-{step}.st",
                                                              every=9, steps=2)])
    again = {"w": np.zeros(2)}
    state = fl.setup(fl.Adam(0.1), again)
    info = fl.load_checkpoint(tmp_path / "c-2.st", again, state)
    h2 = fl.train(loss, again, batches, state, epochs=2, progress=False,
                  history=fl.History.from_dict(info.extra["history"]))
    assert h2.losses == h.losses and _rows(h2) == _rows(h)
    assert again["w"].tobytes() == model["w"].tobytes()


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("at", [2, 4, 6])
def test_save_checkpoint_within_epochs_resumes_bit_for_bit(tmp_path, at, shared):
    # every 2 steps, 3 batches an epoch (shuffled): within epoch 1, within epoch 2, and at
    # epoch 2's last step before its end (the LRSchedule's value in the row: the last step's).
    # shared: the loader draws from fluxml's default generator, as Dropout does: its "data"
    # entry was saved as the epoch began, the default one as it stood, and the load put
    # both into that one generator, so the resumed run's masks were others, silently
    x = np.random.default_rng(0).normal(size=(9, 2)).astype(np.float32)

    def run(resume=None):
        fl.seed(1 if resume is None else 2)
        model = fl.Chain(fl.Dense(2, 3, np.tanh), fl.Dropout(0.3), fl.Dense(3, 1))
        loader = fl.DataLoader((x, x[:, :1]), batchsize=3, shuffle=True,
                               rng=fl.init.default_rng() if shared else None)
        state = fl.setup(fl.OptimiserChain(fl.AccumGrad(2), fl.Adam(0.01)), model)
        history = None
        cbs = [fl.LRSchedule(fl.ExpDecay(0.01, 0.9))]
        if resume is not None:
            info = fl.load_checkpoint(resume, model, state, rngs={"data": loader.rng})
            history = fl.History.from_dict(info.extra["history"])
        else:
            cbs.append(fl.SaveCheckpoint(tmp_path / "c-{step}.st", every=5, steps=2))
        h = fl.train(lambda m, x, y: fl.mse(m(x), y), model, loader, state, progress=False,
                     epochs=3 - (history.epoch if history else 0), history=history,
                     callbacks=cbs)
        return h, fl.state(model)

    h, weights = run()
    h2, weights2 = run(tmp_path / f"c-{at}.st")
    assert h2.losses == h.losses and _rows(h2) == _rows(h)
    assert all(a.tobytes() == b.tobytes() for a, b in zip(fl.leaves(weights),
                                                           fl.leaves(weights2)))


def test_save_checkpoint_listed_first_saves_what_the_others_log(tmp_path):
    # SaveCheckpoint before the callback logging the metric saved each epoch's row without
    # it: a run resumed from epoch 1's file judged epoch 2 its best and went on to epoch 3
    scores = {1: 1.0, 2: 2.0, 3: 0.5}

    def run(resume=None):
        model = {"w": np.ones(2)}
        state = fl.setup(fl.Descent(0.1), model)
        history = None
        if resume is not None:
            info = fl.load_checkpoint(tmp_path / resume, model, state)
            history = fl.History.from_dict(info.extra["history"])
        saver = fl.SaveCheckpoint(tmp_path / ("again-{epoch}.st" if resume else "c-{epoch}.st"))
        with pytest.warns(UserWarning, match=r"the callback Scores, listed after "
                                             r"SaveCheckpoint\('.*-\{epoch\}.st'\), runs "
                                             r"before it .* sees the file saved before"):
            return fl.train(_loss, model, [()] * 2, state, progress=False, history=history,
                            epochs=3 - (history.epoch if history else 0),
                            callbacks=[saver, Scores(scores),
                                       fl.EarlyStopping("score", patience=1,
                                                        restore_best=False)])

    h = run()
    assert h.epoch == 2 and h["score"] == [1.0, 2.0]
    again = run("c-1.st")
    assert again.epoch == 2 and again["score"] == [1.0, 2.0]
    assert again.losses == h.losses


class _StepLog(fl.Callback):
    def on_step_end(self, run):
        print(run.step, run.loss)


class _EpochLog(fl.Callback):
    def on_epoch_end(self, run):
        print(run.history.epoch)


class _Copier(fl.Callback):
    def on_epoch_end(self, run):
        self.sizes = getattr(self, "sizes", []) + [len(os.listdir(self.folder))]


def test_callbacks_listed_after_save_checkpoint_warn_once_naming_all(tmp_path, capsys):
    # the warning named the first user callback listed after a SaveCheckpoint only, and a
    # per-step logger too, whose hook runs where no save does (under python -W error the run
    # stopped there): now one warning names every callback whose hook runs where a save
    # does (on_epoch_end; on_step_end with steps=k)
    def run(before, after, steps=None):
        model = {"w": np.ones(2)}
        saver = fl.SaveCheckpoint(tmp_path / "c-{epoch}-{step}.st", steps=steps)
        return fl.train(_loss, model, [()] * 2, fl.setup(fl.Descent(0.1), model), epochs=2,
                        progress=False, callbacks=before + [saver] + after)

    copier = _Copier()
    copier.folder = tmp_path
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        run([], [_StepLog(), _EpochLog(), copier])
    assert [str(w.message).split(", listed")[0] for w in record] == \
        ["train: the callbacks _EpochLog and _Copier"]
    assert "run before it" in str(record[0].message)
    assert copier.sizes == [0, 1]  # SaveCheckpoint still runs last: the file saved before
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run([], [_StepLog()])  # a per-step logger sees no difference
        run([_EpochLog()], [_StepLog()])  # one listed before: as the user said
    with pytest.warns(UserWarning, match=r"the callback _StepLog, listed after .* runs before "
                                         r"it .* List it before the SaveCheckpoint"):
        run([], [_StepLog()], steps=1)  # it saves within epochs: on_step_end counts
    assert "1 " in capsys.readouterr().out  # (the loggers ran)


def test_restore_best_resumed_within_the_epoch_after_the_best_warns(tmp_path):
    # resumed after step 3 (within epoch 2, epoch 1 the best so far) without the best
    # weights kept: the model's weights then, 3 steps in, were taken for epoch 1's and
    # restored at the end, silently
    scores = {1: 1.0, 2: 3.0, 3: 2.0}
    model = {"w": np.ones(2)}
    fl.train(_loss, model, [()] * 2, fl.setup(fl.Descent(0.1), model), epochs=3,
             progress=False,
             callbacks=[Scores(scores), fl.EarlyStopping("score", restore_best=False),
                        fl.SaveCheckpoint(tmp_path / "c-{step}.st", steps=1)])
    np.testing.assert_allclose(model["w"], 0.8**6)
    again = {"w": np.zeros(2)}
    state = fl.setup(fl.Descent(0.1), again)
    info = fl.load_checkpoint(tmp_path / "c-3.st", again, state)
    with pytest.warns(UserWarning, match="the best epoch, 1, came before this run resumed"):
        fl.train(_loss, again, [()] * 2, state, epochs=2, progress=False,
                 history=fl.History.from_dict(info.extra["history"]),
                 callbacks=[Scores(scores), fl.EarlyStopping("score")])
    assert again["w"].tobytes() == model["w"].tobytes()  # epoch 3's, kept


def test_only_a_users_callback_listed_after_save_checkpoint_warns(tmp_path):
    # fluxml's own callbacks (documented to run before SaveCheckpoint) and a user's listed
    # before it do not warn; a file saved within an epoch names the epoch it is within
    model = {"w": np.ones(2)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fl.train(_loss, model, [()] * 3, fl.setup(fl.Descent(0.1), model), epochs=2,
                 progress=False,
                 callbacks=[Scores({1: 1.0, 2: 2.0}),
                            fl.SaveCheckpoint(tmp_path / "c-{step}.st", steps=2),
                            fl.EarlyStopping("score", patience=5)])
    again = {"w": np.ones(2)}
    info = fl.load_checkpoint(tmp_path / "c-4.st", again, fl.setup(fl.Descent(0.1), again))
    assert info.extra["epoch"] == 2  # (step 4: the first of epoch 2's three)
    assert fl.History.from_dict(info.extra["history"]).epoch == 1


def test_a_long_historys_step_losses_are_saved_as_one_tensor(tmp_path):
    """SaveCheckpoint keeps the step losses as a float64 tensor, not JSON in the header: a
    history of a million steps made an 80 MB header and took 3 s a save, and one of 4.7
    million went past the header's limit. They come back exactly (NaN and inf too)."""
    from fluxml.io import safetensors

    losses = np.random.default_rng(0).random(200_000).tolist() + [float("nan"), float("inf")]
    before = fl.History(losses=losses, epochs=[{"epoch": 1, "step": len(losses), "loss": 0.5}])
    model = {"w": np.ones(2)}
    path = tmp_path / "c.st"
    fl.train(lambda m: np.sum(m["w"] ** 2), model, [()] * 3, fl.setup(fl.Descent(0.1), model),
             history=before, progress=False, callbacks=[fl.SaveCheckpoint(path)])
    _, meta = safetensors.read(path)
    assert sum(map(len, meta.values())) < 10_000
    info = fl.load_checkpoint(path, model, fl.setup(fl.Descent(0.1), model))
    after = fl.History.from_dict(info.extra["history"])
    assert len(after.losses) == len(losses) + 3 and all(type(v) is float for v in after.losses)
    np.testing.assert_array_equal(after.losses[:len(losses)], losses)  # (NaN equals NaN here)
