"""fl.train: the same steps as a hand-written loop, NaN/Inf stops, callbacks, checkpoints
that resume exactly, the progress output and History."""

import io
import sys

import numpy as np
import pytest

import fluxml as fl
from fluxml.progress import TextBar


def _data(n=48, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5]], np.float32) + 0.3).astype(np.float32)
    return x, y


def _model(seed=0):
    fl.seed(seed)
    return fl.Chain(fl.Dense(3, 8, np.tanh), fl.Dense(8, 1))


def mse(m, x, y):
    return np.mean((m(x) - y) ** 2)


def test_train_is_the_hand_written_loop():
    x, y = _data()
    model, ref = _model(), _model()
    h = fl.train(mse, model, fl.DataLoader((x, y), batchsize=16), fl.setup(fl.Adam(0.01), model),
                 epochs=3, progress=False)
    state = fl.setup(fl.Adam(0.01), ref)
    losses = []
    for _ in range(3):
        for i in range(0, 48, 16):
            loss, (g,) = fl.withgradient(lambda m: mse(m, x[i:i + 16], y[i:i + 16]), ref)
            state, ref = fl.update(state, ref, g)
            losses.append(float(loss))
    assert h.losses == losses
    for a, b in zip(fl.leaves(model), fl.leaves(ref)):
        assert np.array_equal(a, b) and a.dtype == np.float32
    assert h.step == 9 and h.epoch == 3 and h["epoch"] == [1, 2, 3]
    assert h["loss"][0] == pytest.approx(np.mean(losses[:3]))
    assert h.losses[-1] < h.losses[0]
    # a plain list of batches, and batches that are not tuples
    model = {"w": np.zeros(2)}
    fl.train(lambda m, b: np.sum((m["w"] - b) ** 2), model, [np.ones(2)] * 50,
             fl.setup(fl.Descent(0.1), model), progress=False)
    np.testing.assert_allclose(model["w"], 1.0, atol=1e-4)


def _snapshot(model):
    return [x.copy() for x in fl.leaves(model)]


def test_nan_loss_stops_before_the_update():
    x, y = _data()
    y[20] = np.nan  # batch 3 of 8
    model, ref = _model(), _model()
    with pytest.raises(fl.TrainingError, match=r"step 3 \(epoch 1, batch 3\): the loss is nan "
                                               r"\(the gradient of layers\.0\.weight holds "
                                               r"NaN"):
        fl.train(mse, model, fl.DataLoader((x, y), batchsize=8),
                 fl.setup(fl.Descent(0.1), model), progress=False)
    fl.train(mse, ref, fl.DataLoader((x[:16], y[:16]), batchsize=8),
             fl.setup(fl.Descent(0.1), ref), progress=False)  # the two good steps
    for a, b in zip(fl.leaves(model), fl.leaves(ref)):
        assert np.array_equal(a, b)


def test_a_failed_step_leaves_the_running_statistics_as_they_were():
    # the failing forward pass had written its NaN into BatchNorm's running statistics, so
    # the model "as it was" evaluated to NaN in test mode (and trained on unaware)
    x, y = _data(16)
    bad = x.copy()
    bad[3, 0] = np.nan
    fl.seed(0)
    model = fl.Chain(fl.Dense(3, 4), fl.BatchNorm(4), fl.Dense(4, 1))
    state = fl.setup(fl.Descent(0.1), model)
    fl.train(mse, model, [(x, y)], state, progress=False)
    before = {k: v.copy() for k, v in fl.state(model)["layers"]["1"].items()}
    with pytest.raises(fl.TrainingError, match="step 1 .* the loss is nan"):
        fl.train(mse, model, [(bad, y)], state, progress=False)
    after = fl.state(model)["layers"]["1"]
    assert all(np.array_equal(before[k], after[k]) for k in before)
    w = float(model[2].weight[0, 0])  # sqrt(|w - w0|) has no finite derivative at w0

    def kink(m, x, y):
        return mse(m, x, y) + np.sqrt(np.abs(m[2].weight[0, 0] - w))

    with pytest.raises(fl.TrainingError, match=r"step 1 .* the gradient of layers\.2\.weight"), \
            np.errstate(divide="ignore", invalid="ignore"):  # a finite loss, a bad gradient
        fl.train(kink, model, [(x, y)], state, progress=False)
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert np.isfinite(model(x)).all()


def test_nonfinite_gradient_names_the_parameter():
    model = _model()
    model[1].weight[0, 0] = 0.0  # sqrt(|w|) has no finite derivative at 0

    def loss(m, x, y):
        return mse(m, x, y) + np.sum(np.sqrt(np.abs(m[1].weight)))

    x, y = _data(8)
    before = _snapshot(model)
    with pytest.raises(fl.TrainingError, match=r"step 1 \(epoch 1, batch 1\): the gradient of "
                                               r"layers\.1\.weight holds (NaN|Inf) \(1 of 8"), \
            np.errstate(divide="ignore", invalid="ignore"):
        fl.train(loss, model, [(x, y)], fl.setup(fl.Adam(), model), progress=False)
    assert all(np.array_equal(a, b) for a, b in zip(before, fl.leaves(model)))


def test_evaluate_and_early_stopping_restores_the_best_weights():
    x, y = _data()
    model = _model()
    scores = iter([3.0, 1.0, 2.0, 2.5, 0.5, 9.0])  # best at epoch 2, then two worse: stop
    snapshots = []

    def val(m):
        snapshots.append(_snapshot(m))
        return {"val": next(scores), "zero": 0}

    stop = fl.EarlyStopping("val", patience=2)
    h = fl.train(mse, model, fl.DataLoader((x, y), batchsize=16),
                 fl.setup(fl.Adam(0.01), model), epochs=6,
                 callbacks=[fl.Evaluate(val), stop], progress=False)
    assert h["val"] == [3.0, 1.0, 2.0, 2.5] and h["zero"] == [0.0] * 4
    assert stop.stopped_epoch == 4 and stop.best_epoch == 2 and h.epoch == 4
    for a, b in zip(snapshots[1], fl.leaves(model)):
        assert np.array_equal(a, b)
    with pytest.raises(KeyError, match="no epoch had the metric 'val'"):
        fl.train(mse, model, [(x, y)], fl.setup(fl.Adam(), model), progress=False,
                 callbacks=[fl.EarlyStopping("val")])
    # evaluated every other epoch: the epochs between are skipped (a KeyError at epoch 1)
    scores = iter([3.0, 1.0, 2.0, 2.5])
    stop = fl.EarlyStopping("val", patience=2)
    h = fl.train(mse, model, [(x, y)], fl.setup(fl.Adam(), model), epochs=10, progress=False,
                 callbacks=[fl.Evaluate(lambda m: next(scores), every=2, name="val"), stop])
    assert h["val"] == [None, 3.0, None, 1.0, None, 2.0, None, 2.5]
    assert stop.best_epoch == 4 and stop.stopped_epoch == 8
    # a metric no Evaluate records (a misspelt name) fails at the first epoch, not the last
    ends = []

    class Count(fl.Callback):
        def on_epoch_end(self, run):
            ends.append(run.epoch)

    with pytest.raises(KeyError, match="no epoch had the metric 'vall'"):
        fl.train(mse, model, [(x, y)], fl.setup(fl.Adam(), model), epochs=50, progress=False,
                 callbacks=[fl.Evaluate(lambda m: 1.0, name="val"), fl.EarlyStopping("vall"),
                            Count()])
    assert ends == []


def test_early_stopping_on_a_metric_of_an_evaluate_returning_a_dict_every_few_epochs():
    # refused at epoch 1 as a misspelt name: that Evaluate had not been called yet
    model = {"w": np.ones(1)}

    def metrics(m):
        return {"val": float(m["w"][0])}

    h = fl.train(lambda m: np.sum(m["w"] ** 2), model, [()], fl.setup(fl.Descent(0.1), model),
                 epochs=4, progress=False,
                 callbacks=[fl.Evaluate(metrics, every=2), fl.EarlyStopping("val")])
    assert h["val"] == [None, 0.64, None, pytest.approx(0.4096)]
    ends = []

    class Count(fl.Callback):
        def on_epoch_end(self, run):
            ends.append(run.epoch)

    with pytest.raises(KeyError, match="no epoch had the metric 'vall'"):  # once it was called
        fl.train(lambda m: np.sum(m["w"] ** 2), model, [()], fl.setup(fl.Descent(0.1), model),
                 epochs=50, progress=False,
                 callbacks=[fl.Evaluate(metrics, every=2), fl.EarlyStopping("vall"), Count()])
    assert ends == [1]


def test_lr_schedule_sets_eta_before_each_step():
    model = {"w": np.zeros(1)}
    seen = []

    class Watch(fl.Callback):
        def on_step_end(self, run):
            seen.append(run.state["w"].rule.eta)

    h = fl.train(lambda m, b: np.sum(m["w"] * b), model, [np.ones(1)] * 4,
                 fl.setup(fl.Descent(1.0), model), epochs=2, progress=False,
                 callbacks=[fl.LRSchedule(lambda t: 0.5**t), Watch()])
    assert seen == [0.5**t for t in range(8)]
    assert model["w"][0] == pytest.approx(-sum(0.5**t for t in range(8)))
    assert h["eta"] == [0.5**3, 0.5**7]


def test_checkpoint_callback_resumes_exactly(tmp_path):
    x, y = _data()

    def setup_run(seed):
        model = _model(seed)
        loader = fl.DataLoader((x, y), batchsize=8, shuffle=True, rng=seed + 10)
        state = fl.setup(fl.OptimiserChain(fl.ClipNorm(1.0), fl.Adam(0.02)), model)
        return model, loader, state

    schedule = fl.LRSchedule(fl.CosineAnneal(0.02, period=30, warmup=5))

    def noisy(m, x, y):  # uses the default generator, as Dropout would
        return mse(m, x, y) + 1e-3 * float(fl.init.default_rng().normal())

    model, loader, state = setup_run(0)
    straight = fl.train(noisy, model, loader, state, epochs=4, progress=False,
                        callbacks=[schedule])

    model, loader, state = setup_run(0)
    ckpt = fl.SaveCheckpoint(tmp_path / "ckpt-{epoch}.safetensors")
    fl.train(noisy, model, loader, state, epochs=2, progress=False, callbacks=[schedule, ckpt])
    assert [p.name for p in ckpt.saved] == ["ckpt-1.safetensors", "ckpt-2.safetensors"]

    model, loader, state = setup_run(5)  # a new process: other weights, other generators
    info = fl.load_checkpoint(ckpt.saved[-1], model, state, rngs={"data": loader.rng})
    history = fl.History.from_dict(info.extra["history"])
    assert info.step == 12 == history.step
    resumed = fl.train(noisy, model, loader, info.opt_state, epochs=2, progress=False,
                       callbacks=[schedule], history=history)
    assert resumed.losses == straight.losses  # bit for bit
    assert resumed["epoch"] == [1, 2, 3, 4]


def test_progress_output(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # the built-in bar
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # (imported by an earlier test)
    x, y = _data()
    model = _model()
    fl.train(mse, model, fl.DataLoader((x, y), batchsize=16), fl.setup(fl.Adam(), model),
             epochs=2, callbacks=[fl.Evaluate(lambda m: 0.75, name="acc")])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert lines[0].startswith("epoch 1/2: loss ") and "acc 0.75" in lines[0]
    assert "samples/s" in lines[1]
    out = io.StringIO()
    bar = TextBar(3, "epoch 1/1", out, width=6, interval=0.0)
    for i in range(3):
        bar.update(1.0 / (i + 1), 10.0)
    bar.close()
    assert out.getvalue().split("\r")[-1] == "epoch 1/1 [======] 3/3 loss 0.3333 10 samples/s\n"


def test_tqdm_bar_when_installed(capsys):
    pytest.importorskip("tqdm")
    model = {"w": np.zeros(1)}
    fl.train(lambda m, b: np.sum(m["w"] * b), model, [np.ones(1)] * 3,
             fl.setup(fl.Descent(), model))
    assert "epoch 1/1: loss" in capsys.readouterr().err


def test_history_plot(tmp_path, monkeypatch):
    h = fl.History()
    for i in range(10):
        h.add_step(1.0 / (i + 1))
        if i % 5 == 4:
            h.end_epoch(loss=h.losses[-1], acc=i / 10)
    h2 = fl.History.from_dict(h.to_dict())
    assert h2.losses == h.losses and h2["acc"] == [0.4, 0.9]
    assert "10 steps, 2 epochs" in repr(h)
    with pytest.raises(KeyError, match="no metric 'nope'"):
        h["nope"]
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"pip install 'fluxml\[plot\]'"):
        h.plot(tmp_path / "x.png")
    monkeypatch.undo()
    pytest.importorskip("matplotlib")
    path = h.plot(tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path


def test_bad_arguments():
    model = {"w": np.zeros(1)}
    state = fl.setup(fl.Descent(), model)
    with pytest.raises(ValueError, match="epochs must be a non-negative int; got -1"):
        fl.train(lambda m: 0.0, model, [], state, epochs=-1)
    with pytest.raises(TypeError, match="callbacks must be fl.Callback objects"):
        fl.train(lambda m: 0.0, model, [], state, callbacks=[print])
    with pytest.raises(TypeError, match=r"a schedule goes in as fl.LRSchedule\(schedule\)"):
        fl.train(lambda m: 0.0, model, [], state, callbacks=[fl.ExpDecay(0.1)])
    with pytest.raises(TypeError, match="loss must be a function"):
        fl.train(3, model, [], state)
    with pytest.raises(TypeError, match=r"got the rule Descent.*Pass fl.setup\(Descent"):
        fl.train(mse, model, [], fl.Descent())
    x, y = _data(8)
    with pytest.raises(TypeError, match=r"called as loss\(model, \*batch\), here with 3 "
                                        r"arguments .* but <lambda>\(yhat, y\) cannot take"):
        fl.train(lambda yhat, y: fl.mse(yhat, y), _model(), [(x, y)],
                 fl.setup(fl.Descent(), _model()), progress=False)
    for make in (lambda e: fl.Evaluate(len, every=e), lambda e: fl.SaveCheckpoint("c", e)):
        for every in (0, -1, 1.5):  # 0 was a ZeroDivisionError at the first epoch's end
            with pytest.raises(ValueError, match=r"every \(epochs between calls\) must be a "
                                                 r"positive int"):
                make(every)


def test_a_loss_that_ignores_its_model_argument_is_refused():
    """A loss closing over the model instead of using its argument trained nothing, silently
    (the loss stayed the same at every step)."""
    model = fl.Dense(2, 1)
    state = fl.setup(fl.Adam(), model)
    x, y = np.ones((4, 2), np.float32), np.zeros((4, 1), np.float32)
    before = model.weight.copy()
    with pytest.raises(ValueError, match=r"step 1 .*does not depend on the model it is given"):
        fl.train(lambda m, x, y: fl.mse(model(x), y), model, [(x, y)], state, progress=False)
    assert np.array_equal(model.weight, before)


def test_data_that_cannot_serve_the_epochs_is_refused():
    """Found by review: a generator with epochs > 1 trained one epoch and then nothing, and a
    bare (x, y) tuple called the loss with one array."""
    model = fl.Dense(2, 1)
    state = fl.setup(fl.Descent(0.1), model)
    x, y = np.ones((4, 2), np.float32), np.ones((4, 1), np.float32)
    loss = lambda m, x, y: fl.mse(m(x), y)  # noqa: E731
    with pytest.raises(TypeError, match="one-pass iterator"):
        fl.train(loss, model, ((x, y) for _ in range(3)), state, epochs=2, progress=False)
    with pytest.raises(TypeError, match=r"pass batches, as fl.DataLoader"):
        fl.train(loss, model, (x, y), state, progress=False)
    fl.train(loss, model, ((x, y) for _ in range(3)), state, epochs=1, progress=False)


class Counting:
    """A user's layer (a plain class) whose forward pass counts its calls and sums its
    inputs in place, in 0-d arrays: an integer one and a float one."""

    nontrainable = ("calls", "total")

    def __init__(self):
        self.w = np.ones(3, np.float32)
        self.calls = np.zeros((), np.int64)
        self.total = np.zeros((), np.float32)

    def __call__(self, x):
        self.calls += 1
        self.total += np.sum(fl.stop_gradient(x))
        return x * self.w


@pytest.mark.parametrize("compile", [False, True])
def test_a_failed_step_puts_back_the_counts_its_forward_pass_wrote(compile):
    # only float arrays of one axis or more were put back: a 0-d or integer one kept the
    # failed step's write (calls 2 after one step that succeeded), silently
    x, y = _data(4)
    bad = x.copy()
    bad[1, 2] = np.nan
    model = fl.Chain(Counting(), fl.Dense(3, 1))
    state = fl.setup(fl.Descent(0.1), model)
    with pytest.raises(fl.TrainingError, match=r"step 2 \(epoch 1, batch 2\)"):
        fl.train(mse, model, [(x, y), (bad, y)], state, progress=False, compile=compile)
    assert model[0].calls == 1
    assert model[0].total == np.sum(x)


def test_a_step_whose_loss_raises_leaves_the_model_as_it_was():
    # the forward pass had moved BatchNorm's statistics and the user's count in place, but not
    # the fields it rebinds: Ctrl-C or an error in the loss left a half-stepped model
    x, y = _data(8)
    fl.seed(0)
    model = fl.Chain(Counting(), fl.Dense(3, 4), fl.BatchNorm(4), fl.Dense(4, 1))
    state = fl.setup(fl.Adam(0.01), model)
    calls = [0]

    def loss(m, x, y):
        out = mse(m, x, y)
        calls[0] += 1
        if calls[0] == 2:
            raise KeyboardInterrupt
        return out

    fl.train(loss, model, [(x, y)], state, progress=False)
    before = {k: np.array(v, copy=True) for k, v in fl.tree.leaves_with_paths(model)}
    with pytest.raises(KeyboardInterrupt):
        fl.train(loss, model, [(x, y)], state, progress=False)
    after = dict(fl.tree.leaves_with_paths(model))
    assert before.keys() == after.keys()
    for k in before:
        assert np.array_equal(before[k], after[k]), k


class Running:
    """A user's layer (a plain class) keeping a running mean of its inputs, which every call
    sets (an Evaluate's too)."""

    nontrainable = ("mean",)

    def __init__(self):
        self.w = np.ones(3, np.float32)
        self.mean = np.zeros(3, np.float32)

    def __call__(self, x):
        self.mean = 0.8 * self.mean + 0.2 * np.mean(fl.stop_gradient(x), axis=0)
        return x * self.w + self.mean


class NaNInSecondPass:
    """Two batches a pass; the second pass's second batch holds a NaN."""

    def __init__(self, x, y):
        self.x, self.y, self.passes = x, y, 0

    def __iter__(self):
        self.passes += 1
        bad = self.x.copy()
        bad[0, 0] = np.nan
        yield self.x, self.y
        yield (bad if self.passes == 2 else self.x), self.y


class RunningTrained(Running):
    """Running, its mean trained too (the compiled step's write of a trained field is found
    from its program, not among the state arrays)."""

    nontrainable = ()


@pytest.mark.parametrize("layer", [Running, RunningTrained])
@pytest.mark.parametrize("compile", [False, True])
def test_a_failed_step_puts_back_state_an_evaluate_set_before_it(compile, layer):
    # the arrays to put back were those the model held when training began (or when the
    # compiled step's program was first run): an Evaluate's forward pass set the running
    # mean to a new array, the compiled step wrote into that one, and the NaN step left it
    # moved, silently
    x, y = _data(4)
    model = fl.Chain(layer(), fl.Dense(3, 1))
    seen = []

    class Before(fl.Callback):
        def on_step_begin(self, run):
            seen.append(run.model[0].mean.copy())

    with pytest.raises(fl.TrainingError, match=r"step 4 \(epoch 2, batch 2\)"):
        fl.train(mse, model, NaNInSecondPass(x, y), fl.setup(fl.Descent(0.1), model),
                 epochs=2, progress=False, compile=compile,
                 callbacks=[fl.Evaluate(lambda m: float(mse(m, x, y)), name="v"), Before()])
    assert model[0].mean.tobytes() == seen[-1].tobytes()


def test_compiled_training_is_the_eager_training():
    x, y = _data()
    x[40:] *= 2.0  # the short last batch traces again
    model, ref = _model(), _model()
    loader = lambda: fl.DataLoader((x, y), batchsize=20)  # noqa: E731
    h = fl.train(mse, model, loader(), fl.setup(fl.Adam(0.01), model), epochs=3,
                 progress=False, compile=True)
    h_ref = fl.train(mse, ref, loader(), fl.setup(fl.Adam(0.01), ref), epochs=3,
                     progress=False)
    np.testing.assert_allclose(h.losses, h_ref.losses, rtol=1e-5)
    for a, b in zip(fl.leaves(model), fl.leaves(ref)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    y[5] = np.nan  # the checks still run before the update
    with pytest.raises(fl.TrainingError, match="the loss is nan"):
        fl.train(mse, model, loader(), fl.setup(fl.Adam(0.01), model), progress=False,
                 compile=True)
    with pytest.raises(ValueError, match="compile must be"):
        fl.train(mse, model, loader(), fl.setup(fl.Adam(0.01), model), compile="fast")


@pytest.mark.parametrize("mode", ["yes", 1, 0, 1.0])
def test_train_refuses_an_unknown_distributed_mode(mode):
    model = {"w": np.ones(2)}
    with pytest.raises(ValueError, match="distributed must be True, False or 'overlap'"):
        fl.train(lambda m, x: np.sum(m["w"] * x), model, [np.ones(2)],
                 fl.setup(fl.Descent(), model), distributed=mode, progress=False)


def test_history_repr_counts_in_words():
    h = fl.History()
    h.add_step(0.5)
    h.end_epoch(loss=0.5)
    assert repr(h) == "History(1 step, 1 epoch, last loss 0.5)"
