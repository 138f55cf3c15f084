"""Checkpoints: model, optimiser state, generators and step; resuming reproduces the
uninterrupted run exactly; a checkpoint that does not fit changes nothing."""

import json

import numpy as np
import pytest

import fluxml as fl
from fluxml.io import LoadError


class Momentum:
    """A minimal optimiser state written here: one velocity per parameter, a step count and
    a tuple of hyperparameters (numbers inside a tuple must be restored too)."""

    def __init__(self, model, lr=0.1, rho=0.9):
        self.velocity = [np.zeros_like(x) for x in fl.leaves(model)]
        self.t = 0
        self.hyper = (lr, rho)

    def step(self, model, grads):
        lr, rho = self.hyper
        for x, v, g in zip(fl.leaves(model), self.velocity, fl.leaves(grads)):
            v *= rho
            v += g
            x -= lr * v
        self.t += 1


def _model():
    fl.seed(0)
    return fl.Chain(fl.Dense(2, 8, np.tanh), fl.Dense(8, 1))


def _data():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 2)).astype(np.float32)
    return x, np.sin(x[:, :1] * 2).astype(np.float32)


def _run(model, opt, loader, epochs, losses):
    for _ in range(epochs):
        for xb, yb in loader:
            noise = fl.init.default_rng().normal(size=yb.shape).astype(np.float32) * 0.01
            loss, (g,) = fl.withgradient(lambda m: np.mean((m(xb) - yb - noise) ** 2), model)
            opt.step(model, g)
            losses.append(float(loss))


def test_resume_reproduces_the_uninterrupted_run(tmp_path):
    x, y = _data()
    model = _model()
    opt, loader = Momentum(model), fl.DataLoader((x, y), batchsize=8, shuffle=True, rng=3)
    straight: list = []
    _run(model, opt, loader, 4, straight)

    model = _model()
    opt, loader = Momentum(model), fl.DataLoader((x, y), batchsize=8, shuffle=True, rng=3)
    first: list = []
    _run(model, opt, loader, 2, first)
    path = tmp_path / "ckpt.safetensors"
    fl.save_checkpoint(path, model, opt, step=opt.t, rngs={"data": loader.rng},
                       extra={"losses": first})
    # a fresh process would build everything anew, with other random numbers
    fl.seed(99)
    model2 = fl.Chain(fl.Dense(2, 8, np.tanh), fl.Dense(8, 1))
    opt2 = Momentum(model2, lr=0.5)
    loader2 = fl.DataLoader((x, y), batchsize=8, shuffle=True, rng=12345)
    info = fl.load_checkpoint(path, model2, opt2, rngs={"data": loader2.rng})
    assert info.step == 10 and info.opt_state is opt2 and opt2.hyper == (0.1, 0.9)
    assert opt2.t == 10 and info.extra["losses"] == first
    rest: list = []
    _run(model2, opt2, loader2, 2, rest)
    assert first + rest == straight  # exactly, not approximately


def test_a_checkpoint_that_does_not_fit_changes_nothing(tmp_path):
    model = _model()
    opt = Momentum(model)
    path = tmp_path / "ckpt.safetensors"
    fl.save_checkpoint(path, model, opt, step=3)
    other = fl.Chain(fl.Dense(2, 8, np.tanh), fl.Dense(8, 1))
    wrong = Momentum(fl.Chain(fl.Dense(2, 8), fl.Dense(8, 2)))  # velocity shapes differ
    before = [x.copy() for x in fl.leaves(other)]
    state_before = fl.init.default_rng().bit_generator.state
    with pytest.raises(LoadError, match=r"optimiser state\): velocity\.2: expected \(2, 8\), "
                                        r"got \(1, 8\)"):
        fl.load_checkpoint(path, other, wrong)
    assert all(np.array_equal(a, b) for a, b in zip(before, fl.leaves(other)))
    assert fl.init.default_rng().bit_generator.state == state_before
    with pytest.raises(LoadError, match="pass opt_state="):
        fl.load_checkpoint(path, other)
    with pytest.raises(LoadError, match="no saved state for the generator 'data'"):
        fl.load_checkpoint(path, other, Momentum(other), rngs={"data": np.random.default_rng()})
    fl.save_checkpoint(path, model, fl.setup(fl.Adam(), model))
    with pytest.raises(LoadError, match=r"rule\.beta\.0: in the state but not in the given "
                                        r"optimiser state .*with the rule the checkpoint was"):
        fl.load_checkpoint(path, other, fl.setup(fl.Descent(), other))  # another rule
    fl.save(tmp_path / "plain.safetensors", model)
    with pytest.raises(LoadError, match="not a fluxml checkpoint"):
        fl.load_checkpoint(tmp_path / "plain.safetensors", other)
    with pytest.raises(TypeError, match=r"rngs\['data'\] must be a numpy.random.Generator"):
        fl.save_checkpoint(path, model, rngs={"data": 3})


@pytest.mark.parametrize("key, value", [("fluxml.step", "1r"), ("fluxml.extra", '{"a": 1]'),
                                        ("fluxml.frozen", "[7]"), ("fluxml.rngs", None),
                                        ("fluxml.rules", '[1]'), ("fluxml.rules", "{}")])
def test_damaged_checkpoint_metadata_changes_nothing(tmp_path, key, value):
    """The digest covers the tensors, not the header: a damaged metadata value was read
    after the model had been filled in (a ValueError or JSONDecodeError, the model changed)."""
    from fluxml.io import FileFormatError, safetensors

    model = _model()
    fl.save_checkpoint(tmp_path / "good.st", model, fl.setup(fl.Adam(), model), step=3)
    tensors, meta = safetensors.read(tmp_path / "good.st")
    if value is None:
        del meta[key]
    else:
        meta[key] = value
    safetensors.write(tmp_path / "bad.st", tensors, meta)
    other = fl.Chain(fl.Dense(2, 8, np.tanh), fl.Dense(8, 1))
    before = [x.copy() for x in fl.leaves(other)]
    with pytest.raises((FileFormatError, LoadError), match=f"{key} is damaged|freezes the "
                                                           f"leaves \\[7\\]"):
        fl.load_checkpoint(tmp_path / "bad.st", other, fl.setup(fl.Adam(), other))
    assert all(np.array_equal(a, b) for a, b in zip(before, fl.leaves(other)))


@pytest.mark.parametrize("saved, given, message", [
    (fl.Adam(), fl.AdamW(), "leaf 0 was saved with Adam; the given state holds AdamW"),
    (fl.Adam(), fl.NAdam(), "saved with Adam; the given state holds NAdam"),
    (fl.OptimiserChain(fl.WeightDecay(), fl.Adam()), fl.OptimiserChain(fl.SignDecay(),
     fl.Adam()), r"saved with OptimiserChain\(WeightDecay, Adam\); the given state holds "
                 r"OptimiserChain\(SignDecay, Adam\)"),
])
def test_a_state_of_other_rules_is_refused(tmp_path, saved, given, message):
    """The rules are saved by name: Adam's and NAdam's states hold the same arrays and
    numbers, and an Adam checkpoint loaded into AdamW's state kept AdamW's decay, silently."""
    model = _model()
    fl.save_checkpoint(tmp_path / "c.st", model, fl.setup(saved, model))
    state = fl.setup(given, model)
    before = [x.copy() for x in fl.leaves(model)]
    with pytest.raises(LoadError, match=message):
        fl.load_checkpoint(tmp_path / "c.st", _model(), state)
    assert all(np.array_equal(a, b) for a, b in zip(before, fl.leaves(model)))
    info = fl.load_checkpoint(tmp_path / "c.st", model, fl.setup(saved, model))
    assert repr(info.opt_state) == repr(fl.setup(saved, model))


def test_hyperparameters_adjusted_for_part_of_the_state_load_per_leaf(tmp_path):
    """fl.setup gives every Leaf one rule object; loading wrote each Leaf's saved
    hyperparameters into it, so the last Leaf's learning rate became every Leaf's (and the
    caller's rule changed)."""
    model = _model()
    state = fl.setup(fl.Adam(0.01), model)
    fl.adjust(state.layers[1], lr=0.5)  # fine-tune the head faster
    fl.save(tmp_path / "opt.st", state)
    fl.save_checkpoint(tmp_path / "ckpt.st", model, state, step=1)
    for load in (lambda s: fl.loadmodel(s, fl.load(tmp_path / "opt.st")),
                 lambda s: fl.load_checkpoint(tmp_path / "ckpt.st", model, s).opt_state):
        rule = fl.Adam(0.01)
        loaded = load(fl.setup(rule, model))
        rules = [loaded.layers[i].weight.rule for i in (0, 1)]
        assert [r.eta for r in rules] == [0.01, 0.5] and rule.eta == 0.01
        assert loaded.layers[0].bias.rule is rules[0]  # equal rules shared again


@pytest.mark.parametrize("damage", [{"inc": -1}, {"state": None}, {"inc": 2**200}])
def test_a_damaged_generator_state_is_refused_before_anything_is_written(tmp_path, damage):
    """A generator's state that NumPy refuses (found by tests/io/fuzz_corrupt.py) raised
    NumPy's TypeError or OverflowError after the model and optimiser state had been filled
    in; it is tried on a scratch generator first."""
    from fluxml.io import FileFormatError, safetensors

    model = _model()
    fl.save_checkpoint(tmp_path / "good.st", model, fl.setup(fl.Adam(), model), step=3)
    tensors, meta = safetensors.read(tmp_path / "good.st")
    rngs = json.loads(meta["fluxml.rngs"])
    rngs["fluxml.init"]["state"].update(damage)
    meta["fluxml.rngs"] = json.dumps(rngs)
    safetensors.write(tmp_path / "bad.st", tensors, meta)
    other = fl.Chain(fl.Dense(2, 8, np.tanh), fl.Dense(8, 1))
    before = [x.copy() for x in fl.leaves(other)]
    generator = fl.init.default_rng().bit_generator.state
    with pytest.raises(FileFormatError, match=r"bad.st: the saved state of the generator "
                                              r"'fluxml.init' is damaged"):
        fl.load_checkpoint(tmp_path / "bad.st", other, fl.setup(fl.Adam(), other))
    assert all(np.array_equal(a, b) for a, b in zip(before, fl.leaves(other)))
    assert fl.init.default_rng().bit_generator.state == generator


def _edited(raw: bytes, edit) -> bytes:
    """The file with its header JSON parsed, edited in place by ``edit`` and written back."""
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    edit(header)
    text = json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + raw[8 + n:]


def test_a_damaged_header_is_found_not_loaded(tmp_path):
    """The digest covered the tensor data only: a checkpoint whose step, generator state or
    extra was damaged (a flipped bit in a digit) loaded the wrong value silently (found by
    tests/io/fuzz_corrupt.py: 7 came back as 57). The header has a digest of its own."""
    from fluxml.io import FileFormatError

    model = _model()
    fl.save_checkpoint(tmp_path / "good.st", model, fl.setup(fl.Adam(), model), step=7)
    raw = (tmp_path / "good.st").read_bytes()
    i = raw.index(b'"fluxml.step":"7"') + len(b'"fluxml.step":"')
    (tmp_path / "bad.st").write_bytes(raw[:i] + bytes([raw[i] ^ 2]) + raw[i + 1:])  # 7 -> 5
    other = fl.Chain(fl.Dense(2, 8, np.tanh), fl.Dense(8, 1))
    with pytest.raises(FileFormatError, match=r"bad.st is not a valid safetensors file: its "
                                              r"header does not match the SHA-256 digest"):
        fl.load_checkpoint(tmp_path / "bad.st", other, fl.setup(fl.Adam(), other))
    # a renamed tensor too (the tensor digest covers the bytes, not their names)
    renamed = _edited(raw, lambda h: h.__setitem__("model.layers.0.bias.x",
                                                   h.pop("model.layers.0.bias")))
    (tmp_path / "bad.st").write_bytes(renamed)
    with pytest.raises(FileFormatError, match="header does not match"):
        fl.load(tmp_path / "bad.st")
    # files written before the header digest (and by other programs) are read as before
    old = _edited(raw, lambda h: h["__metadata__"].pop("fluxml.header_sha256"))
    (tmp_path / "old.st").write_bytes(old)
    assert fl.load_checkpoint(tmp_path / "old.st", other, fl.setup(fl.Adam(), other)).step == 7


@pytest.mark.parametrize("keys", ["[99]", '{"model.layers.0.weight": "ab"}', "{}x"])
def test_damaged_key_paths_are_named(tmp_path, keys):
    """fluxml.keys of another shape than {name: [keys]} failed with an AttributeError (a
    list), or nested a string's letters as keys (found by tests/io/fuzz_corrupt.py)."""
    from fluxml.io import FileFormatError, safetensors

    fl.save(tmp_path / "m.st", _model())
    tensors, meta = safetensors.read(tmp_path / "m.st")
    safetensors.write(tmp_path / "bad.st", tensors, {**meta, "fluxml.keys": keys})
    with pytest.raises(FileFormatError, match=r"the metadata fluxml.keys is (damaged|not "
                                              r"valid JSON)"):
        fl.load(tmp_path / "bad.st")


@pytest.mark.parametrize("kind", [np.random.MT19937, np.random.Philox, np.random.SFC64,
                                  np.random.PCG64DXSM])
def test_generators_of_every_kind_resume(tmp_path, kind):
    """MT19937's, Philox's and SFC64's states hold arrays: save_checkpoint failed with
    json's "Object of type ndarray is not JSON serializable". They are saved as lists."""
    gen = np.random.Generator(kind(5))
    gen.random(7)
    fl.save_checkpoint(tmp_path / "c.st", {"w": np.ones(2)}, rngs={"data": gen})
    expected = gen.random(4)
    fl.load_checkpoint(tmp_path / "c.st", {"w": np.ones(2)}, rngs={"data": gen})
    assert np.array_equal(gen.random(4), expected)


def test_extra_that_cannot_come_back_is_refused_by_name(tmp_path):
    """extra with a NumPy float32 (a loss) failed with json's bare TypeError (it is kept
    now, and numeric arrays too: see tests/io/test_extra.py); a list was saved, and then
    load_checkpoint called the file damaged."""
    with pytest.raises(TypeError, match=r"save_checkpoint: extra\['loss'\]: an array of "
                                        r"dtype object, which a checkpoint cannot hold"):
        fl.save_checkpoint(tmp_path / "c.st", {"w": np.ones(2)},
                           extra={"loss": np.array([None, 1])})
    with pytest.raises(TypeError, match=r"save_checkpoint: extra must be a dict; got list"):
        fl.save_checkpoint(tmp_path / "c.st", {"w": np.ones(2)}, extra=[1, 2])
    assert not (tmp_path / "c.st").exists()


@pytest.mark.parametrize("step, error, message", [
    (2.7, TypeError, r"got 2\.7 \(float\)"), (np.float64(3.0), TypeError, r"got .*float64"),
    (True, TypeError, r"got True \(bool\)"), ("3", TypeError, r"got '3' \(str\)"),
    (-1, ValueError, r"got -1$"), (np.int8(-2), ValueError, r"got -2$")])
def test_a_step_that_is_not_a_count_is_refused(tmp_path, step, error, message):
    """step=2.7 was saved as 2, silently (int(step)); a bool or a negative count was saved
    too. Nothing is written."""
    with pytest.raises(error, match=r"save_checkpoint: step must be a non-negative integer "
                                    r"\(the number of steps taken\); " + message):
        fl.save_checkpoint(tmp_path / "c.st", {"w": np.ones(2)}, step=step)
    assert not (tmp_path / "c.st").exists()


def test_numpy_integer_steps_are_counts(tmp_path):
    fl.save_checkpoint(tmp_path / "c.st", {"w": np.ones(2)}, step=np.uint64(2**40))
    info = fl.load_checkpoint(tmp_path / "c.st", {"w": np.ones(2)})
    assert info.step == 2**40 and type(info.step) is int


def test_a_model_with_no_arrays_resumes(tmp_path):
    # a checkpoint of a model holding no arrays (a parameter-free model: an activation, a
    # name) failed to load with KeyError: 'model' (its state is empty, so the file had none)
    path = str(tmp_path / "empty.safetensors")
    fl.save_checkpoint(path, {"act": np.tanh, "name": "net"}, step=5, extra={"epoch": 1})
    info = fl.load_checkpoint(path, {"act": np.tanh, "name": "net"})
    assert info.step == 5 and info.extra == {"epoch": 1}
    with pytest.raises(LoadError, match="w: missing from the state"):
        fl.load_checkpoint(path, {"w": np.ones(2)})


def _dropout_model(seed=3):
    """A model whose Dropout draws from a generator of its own, seeded as built."""
    fl.seed(0)
    return fl.Chain(fl.Dense(2, 8, np.tanh), fl.Dropout(0.5, rng=np.random.default_rng(seed)),
                    fl.Dense(8, 1))


def test_a_layers_own_generator_is_saved_and_a_resumed_run_draws_its_masks(tmp_path):
    """A Dropout with a generator of its own: the checkpoint kept fluxml's default generator
    and those in rngs only, so the model built afresh to resume drew its dropout masks from
    the seed again, and the resumed run ended elsewhere than the uninterrupted one, silently.
    The generators the layers hold are saved by path and restored; a run resumed from epoch
    1's file ends bit for bit as the uninterrupted run (and as a loop by hand)."""
    x, y = _data()
    loss = lambda m, x, y: fl.mse(m(x), y)  # noqa: E731
    loader = fl.DataLoader((x, y), batchsize=8)
    model = _dropout_model()
    fl.train(loss, model, loader, fl.setup(fl.Adam(0.01), model), epochs=3, progress=False,
             callbacks=[fl.SaveCheckpoint(tmp_path / "c-{epoch}.st")])
    by_hand = _dropout_model()
    state = fl.setup(fl.Adam(0.01), by_hand)
    for _ in range(3):
        for xb, yb in loader:
            fl.update(state, by_hand, fl.gradient(lambda m: loss(m, xb, yb), by_hand)[0])
    resumed = _dropout_model()
    info = fl.load_checkpoint(tmp_path / "c-1.st", resumed, fl.setup(fl.Adam(0.01), resumed))
    fl.train(loss, resumed, loader, info.opt_state, epochs=2, progress=False,
             history=fl.History.from_dict(info.extra["history"]))
    for a, b, c in zip(fl.leaves(model), fl.leaves(by_hand), fl.leaves(resumed)):
        assert np.array_equal(a, b) and np.array_equal(a, c)
    # a generator of another kind at that path is refused by name, before any write
    other = fl.Chain(fl.Dense(2, 8, np.tanh), fl.Dropout(0.5, rng=np.random.Generator(
        np.random.MT19937(1))), fl.Dense(8, 1))
    before = [np.copy(a) for a in fl.leaves(other)]
    with pytest.raises(LoadError, match="generator 'model.layers.1.rng' is a MT19937, the "
                                        "checkpoint saved a PCG64"):
        fl.load_checkpoint(tmp_path / "c-1.st", other, fl.setup(fl.Adam(0.01), other))
    assert all(np.array_equal(a, b) for a, b in zip(before, fl.leaves(other)))


@pytest.mark.parametrize("opt_state", [fl.Adam(), "adam", 5, {"eta": 0.1}])
def test_save_checkpoint_refuses_what_is_not_an_optimiser_state(opt_state, tmp_path):
    """The rule itself (fl.Adam(), for fl.setup(fl.Adam(), model)), a string, a number or a
    dict of settings was saved as the optimiser state, silently: resuming lost the moments."""
    model = fl.Dense(2, 1)
    path = tmp_path / "ckpt.safetensors"
    with pytest.raises(TypeError, match=r"save_checkpoint: opt_state must be the optimiser "
                                        r"state of the model \(from fl.setup\(rule, model\)\), "
                                        r"or a tree holding the optimiser's arrays; got "):
        fl.save_checkpoint(path, model, opt_state)
    assert not path.exists()
    # the state fl.setup gives is saved, its moments with it
    state = fl.setup(fl.Adam(), model)
    state.weight.state[0][:] = 7.0
    fl.save_checkpoint(path, model, state)
    fresh = fl.setup(fl.Adam(), model)
    fl.load_checkpoint(path, model, fresh)
    assert fresh.weight.state[0].tolist() == [[7.0, 7.0]]
