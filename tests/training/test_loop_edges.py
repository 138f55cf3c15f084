"""Edges of ``fl.train``'s loop found by an audit: what it does where the data gives an
epoch no batch."""

import numpy as np
import pytest

import fluxml as fl


def _linear():
    model = {"w": np.ones(1)}
    return model, fl.setup(fl.Descent(0.1), model), lambda m, x: np.sum(m["w"] * x)


@pytest.mark.parametrize("data, why", [
    (fl.DataLoader(np.arange(3.0), batchsize=5, partial=False),
     "3 observations are fewer than a batch of 5, and partial=False drops"),
    (fl.DataLoader(np.arange(3.0), batchsize=2, partial=False, shard=(0, 2)),
     "fewer than a batch of 4"),
    ([], r"list is empty"),
])
def test_an_epoch_without_batches_is_an_error_not_a_run_that_trained_nothing(data, why):
    """A DataLoader with partial=False and fewer observations than a batch gives no batch
    (as PyTorch's drop_last; MLUtils warns and shrinks the batch): fl.train returned a
    History of epochs with loss nan and an untrained model, silently. Now it raises, naming
    the cause, and the model and history are as they were."""
    model, state, loss = _linear()
    history = fl.History()
    with pytest.raises(ValueError, match=f"epoch 1 gave no batches, so nothing was "
                                         f"trained.*{why}"):
        fl.train(loss, model, data, state, epochs=2, history=history, progress=False)
    assert model["w"].tolist() == [1.0] and history.epoch == 0 and history.step == 0


@pytest.mark.parametrize("template, why", [("c-{epch}.st", "KeyError: 'epch'"),
                                           ("c-{}.st", "IndexError"),
                                           ("c-{.st", "ValueError"),
                                           # (the int's own errors, raised bare before)
                                           ("c-{epoch.foo}.st", "AttributeError"),
                                           ("c-{step[0]}.st", "TypeError")])
def test_a_checkpoint_path_with_an_unknown_field_is_refused_when_made(tmp_path, template, why):
    """A misspelt field in SaveCheckpoint's path was found at the first save, after an
    epoch of training, as a bare KeyError('epch') from str.format; now the callback refuses
    it when made, naming the fields it fills in (a doubled brace is a literal one)."""
    with pytest.raises(ValueError, match=rf"SaveCheckpoint: path .* may hold the fields "
                                         rf"\{{epoch\}} and \{{step\}} only \({why}"):
        fl.SaveCheckpoint(tmp_path / template)
    model, state, loss = _linear()
    saver = fl.SaveCheckpoint(tmp_path / "c{{1}}-{epoch:02d}-{step}.st")
    fl.train(loss, model, [np.ones(1)] * 2, state, epochs=1, callbacks=[saver],
             progress=False)
    assert [p.name for p in saver.saved] == ["c{1}-01-2.st"] and saver.saved[0].is_file()


def test_a_metric_named_like_the_historys_own_entries_is_refused():
    """Evaluate(lambda m: {"loss": val}) wrote over the epoch's mean training loss, and a
    metric 'step' over the step count a resumed run reads its place from, silently. Such
    names are refused (a function's name when the Evaluate is made, a dict's keys when
    logged), before the row is touched; other names log as before."""
    model, state, loss = _linear()

    def step(m):
        return 1.0

    with pytest.raises(ValueError, match="Evaluate: the metric's name 'step' is the "
                                         "history's own.*name='val_step'"):
        fl.Evaluate(step)
    history = fl.History()
    with pytest.raises(ValueError, match="returned the metric 'loss', the history's own "
                                         "entry.*mean training loss.*'val_loss'"):
        fl.train(loss, model, [np.ones(1)] * 2, state, history=history, progress=False,
                 callbacks=[fl.Evaluate(lambda m: {"acc": 0.5, "loss": 5.0})])
    assert history.epochs[0]["loss"] == np.mean(history.losses) and "acc" not in \
        history.epochs[0]
    with pytest.raises(ValueError, match="History.log: 'time' is the history's own"):
        history.log(time=1.0)
    fl.train(loss, model, [np.ones(1)] * 2, state, history=history, progress=False,
             callbacks=[fl.Evaluate(step, name="val_step")])
    assert history["val_step"] == [None, 1.0]


def test_a_dict_of_arrays_as_data_is_refused_as_a_tuple_of_them_is():
    """fl.train iterates data: a dict of arrays gave its keys as batches, and the loss
    failed with 'string indices must be integers'. It is refused by name, as a tuple of
    arrays already was, saying what to pass; a DataLoader over the dict trains."""
    model = {"w": np.zeros(1)}
    state = fl.setup(fl.Descent(0.5), model)
    data = {"x": np.ones((4, 1)), "y": np.full((4, 1), 2.0)}
    loss = lambda m, b: fl.mse(b["x"] * m["w"], b["y"])  # noqa: E731
    with pytest.raises(TypeError, match=r"data is a dict of 2 arrays, so iterating it gives "
                                        r"its keys \('x' ...\).*fl.DataLoader\(data"):
        fl.train(loss, model, data, state, progress=False)
    fl.train(loss, model, fl.DataLoader(data, batchsize=4), state, progress=False)
    assert model["w"].tolist() == [2.0]  # 0 - 0.5 * d/dw mean((w - 2)^2) = 0 + 0.5 * 4


@pytest.mark.parametrize("returned, why", [(None, r"None, not a number \(a missing return "
                                                  r"statement\?\)"),
                                           ("0.5", r"'0.5', not a number; ")])
def test_a_loss_returning_none_or_a_string_is_named(returned, why):
    """A loss without a return statement gave 'gradient needs f to return a real scalar,
    but it returned shape ()', pointing at a shape None does not have; it is named now,
    eagerly and compiled, and the model is as it was."""
    model, state, _ = _linear()
    for compile in (False, True):
        with pytest.raises(TypeError, match=f"train: the loss returned {why}"):
            fl.train(lambda m, x: returned, model, [np.ones(1)], state, progress=False,
                     compile=compile)
        assert model["w"].tolist() == [1.0]


def test_an_update_that_overflows_the_model_is_named_and_blamed_on_its_step():
    """A finite loss and gradient whose update overflows the model (Descent(1e10) on
    gradients of 1e30 in float32): as the last step, fl.train returned a model of -inf
    silently (a NumPy RuntimeWarning aside); as an earlier one, the next step's -inf loss
    was blamed on its own batch. Now the first is a TrainingError after the run, and the
    second says the update before made the model so. An array that held -inf as the run
    began (a mask) is no failure."""
    big = np.full(2, 1e30, np.float32)
    loss = lambda m, x: np.sum(m["w"] * x)  # noqa: E731
    for batches, message in [
        ([big], r"after the last step, 1, the model's w holds Inf \(2 of 2 entries\): that "
                r"step's update made it so"),
        ([big, big], r"step 2 .*: the loss is -inf; the model is as it was before this "
                     r"step. The model's w holds Inf \(2 of 2 entries\) as this step began: "
                     r"the update of the step before made it so")]:
        model = {"w": np.ones(2, np.float32)}
        with pytest.raises(fl.TrainingError, match=message), \
                np.errstate(over="ignore"):
            fl.train(loss, model, batches, fl.setup(fl.Descent(1e10), model), progress=False)
        assert np.all(np.isneginf(model["w"]))  # (1 - 1e10 * 1e30 in float32)
    model = {"w": np.ones(2), "mask": np.array([0.0, -np.inf])}
    masked = lambda m, x: np.sum(m["w"] * x * np.exp(m["mask"]))  # noqa: E731
    fl.train(masked, model, [np.ones(2)] * 2, fl.setup(fl.Descent(0.1), model),
             progress=False)
    assert model["w"][1] == 1.0 and np.isneginf(model["mask"][1])


@pytest.mark.parametrize("data, shown", [("abc", r"'abc' \(a str\)"), (None, "None"),
                                         (3, "3")])
def test_data_that_is_not_an_iterable_of_batches_is_refused_by_name(data, shown):
    """A string was iterated as batches of characters (a ufunc's error inside the loss);
    None and a number gave Python's 'object is not iterable'."""
    model, state, loss = _linear()
    with pytest.raises(TypeError, match=rf"^train: data must be an iterable of batches .*; "
                                        rf"got {shown}"):
        fl.train(loss, model, data, state, progress=False)
    assert model["w"].tolist() == [1.0]


def test_callbacks_and_history_of_the_wrong_kind_are_refused_and_none_is_no_callbacks():
    """callbacks=fl.EarlyStopping() said "'EarlyStopping' object is not iterable", and
    callbacks='early' named its first character; None failed as not iterable; history as a
    dict (a checkpoint's, not made a History) failed with an AttributeError 'epoch'."""
    model, state, loss = _linear()
    with pytest.raises(TypeError, match=r"^train: callbacks must be a list of fl.Callback "
                                        r"objects; got one EarlyStopping: put it in a list"):
        fl.train(loss, model, [np.ones(1)], state, callbacks=fl.EarlyStopping(),
                 progress=False)
    with pytest.raises(TypeError, match=r"callbacks must be a list .*; got 'early' \(a str\)"):
        fl.train(loss, model, [np.ones(1)], state, callbacks="early", progress=False)
    with pytest.raises(TypeError, match=r"callbacks must be a list .*; got the class "
                                        r"EarlyStopping: .*callbacks=\[EarlyStopping\(\)\]"):
        fl.train(loss, model, [np.ones(1)], state, callbacks=fl.EarlyStopping, progress=False)
    with pytest.raises(TypeError, match=r"^train: history must be a fl.History .*; got a "
                                        r"dict: .* fl.History.from_dict"):
        fl.train(loss, model, [np.ones(1)], state, history={"losses": [], "epochs": []},
                 progress=False)
    assert model["w"].tolist() == [1.0]
    assert fl.train(loss, model, [np.ones(1)], state, callbacks=None, progress=False).step == 1


def test_callback_settings_are_checked_when_made_not_at_the_first_save_or_log(tmp_path):
    """SaveCheckpoint(None) saved to a file named 'None'; rngs={'a': 3} failed at the first
    save, an epoch of training later, and rngs=[...] in dict(); Evaluate(name=3) failed when
    logged ('keywords must be strings'), as did a dict metric with a non-str key."""
    with pytest.raises(TypeError, match=r"^SaveCheckpoint: path must be a file path .*; got "
                                        r"None \(a NoneType\)"):
        fl.SaveCheckpoint(None)
    with pytest.raises(TypeError, match=r"^SaveCheckpoint: rngs\['a'\] must be a "
                                        r"numpy.random.Generator .*; got 3 \(an int\)"):
        fl.SaveCheckpoint(tmp_path / "c.st", rngs={"a": 3})
    with pytest.raises(ValueError, match=r"^SaveCheckpoint: path .* is a folder; give the "
                                         r"path of a file in it, as .*ckpt-\{epoch\}.st"):
        fl.SaveCheckpoint(tmp_path)  # (IsADirectoryError at the first save, an epoch later)
    with pytest.raises(TypeError, match=r"^SaveCheckpoint: rngs must be a dict"):
        fl.SaveCheckpoint(tmp_path / "c.st", rngs=[np.random.default_rng(0)])
    with pytest.raises(TypeError, match=r"^Evaluate: name must be the metric's name, a "
                                        r"non-empty str, or None"):
        fl.Evaluate(lambda m: 0.5, name=3)
    model, state, loss = _linear()
    with pytest.raises(TypeError, match=r"^Evaluate: <lambda> returned a dict whose keys must "
                                        r"be the metrics' names \(str\); got the key 1"):
        fl.train(loss, model, [np.ones(1)], state, progress=False,
                 callbacks=[fl.Evaluate(lambda m: {1: 0.5})])


@pytest.mark.parametrize("value", ["0.1", None, np.ones(2)])
def test_a_schedule_that_returns_no_number_is_named(value):
    """float() of a schedule's None or array failed naming nothing; a string was parsed."""
    model, state, loss = _linear()
    with pytest.raises(TypeError, match=r"^LRSchedule: schedule\(0\) must return a number "
                                        r"\(the value of 'eta'\); got "):
        fl.train(loss, model, [np.ones(1)], state, progress=False,
                 callbacks=[fl.LRSchedule(lambda t: value)])
    assert model["w"].tolist() == [1.0]


def test_a_history_of_the_wrong_parts_is_refused(tmp_path):
    """History(losses='abc') held ['a', 'b', 'c'], silently; from_dict({}) was a bare
    KeyError; add_step('0.5') parsed the string; plot(metrics='acc') looked for the metric
    'a', and plot(None) failed inside matplotlib."""
    with pytest.raises(TypeError, match=r"^History: losses must be a list of numbers; got "
                                        r"'abc' \(a str\)"):
        fl.History(losses="abc")
    with pytest.raises(TypeError, match=r"^History: epochs must be a list of dicts, one per "
                                        r"epoch; got 1 \(an int\) in it"):
        fl.History(epochs=[1, 2])
    with pytest.raises(TypeError, match=r"^History.from_dict: d must be a dict with 'losses' "
                                        r"and 'epochs'"):
        fl.History.from_dict({})
    with pytest.raises(TypeError, match=r"^History.add_step: loss must be a number"):
        fl.History().add_step("0.5")
    h = fl.History([1.0, np.float32(0.5), 2], [{"epoch": 1, "step": 3, "loss": 0.5}])
    assert fl.History.from_dict(h.to_dict()).losses == [1.0, 0.5, 2]
    with pytest.raises(TypeError, match=r"^History.plot: metrics must be a list of metric "
                                        r"names; got 'acc' \(a str\): write metrics=\['acc'\]"):
        h.plot(tmp_path / "h.png", metrics="acc")
    with pytest.raises(TypeError, match=r"^History.plot: path must be a file path"):
        h.plot(None)


def test_a_history_takes_its_losses_as_a_one_dimensional_array():
    """np.load of saved losses, or h['loss'] kept as an array: the numbers, as a list."""
    h = fl.History(losses=np.array([1.0, 2.0], np.float32))
    assert h.losses == [1.0, 2.0] and type(h.losses[0]) is float and h.step == 2
    with pytest.raises(TypeError, match="losses must be a list of numbers"):
        fl.History(losses=np.array(["a", "b"]))
