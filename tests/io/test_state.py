"""fl.state / fl.loadmodel: paths, in-place copies, and checks that come before any write."""

import re
from collections import namedtuple
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fluxml as fl
from fluxml.io import LoadError
from fluxml.io.modelstate import flat_state

Pair = namedtuple("Pair", "a b")


class Stats(fl.Module):
    nontrainable = ("running",)

    def __init__(self):
        self.scale = np.ones(3, np.float32)
        self.running = np.zeros(3, np.float32)
        self.count = 0
        self.momentum = 0.1
        self.act = np.tanh

    def __call__(self, x):
        return x

@dataclass(frozen=True)
class Rule:
    eta: float
    beta: tuple


def _model():
    return fl.Chain(fl.Dense(4, 10, np.tanh), Stats(), fl.Dense(10, 2))


def test_state_paths_and_values():
    m = _model()
    s = fl.state(m)
    assert list(s["layers"]) == ["0", "1", "2"]
    assert set(s["layers"]["1"]) == {"scale", "running", "count", "momentum"}
    assert s["layers"]["0"]["weight"] is m[0].weight  # the arrays, not copies
    assert s["layers"]["1"]["count"].dtype == np.int64 and s["layers"]["1"]["count"].shape == ()
    flat = flat_state(s)
    assert list(flat)[:3] == ["layers.0.weight", "layers.0.bias", "layers.1.scale"]
    with pytest.raises(TypeError, match="got a single array"):
        fl.state(np.zeros(3))


def test_loadmodel_copies_in_place_and_rebuilds_numbers():
    fl.seed(0)
    src, dst = _model(), _model()
    src[1].running[:] = 5
    src[1].count, src[1].momentum = 7, 0.25
    w = dst[0].weight
    out = fl.loadmodel(dst, fl.state(src))
    assert out is dst and dst[0].weight is w  # in place: optimiser state stays tied
    for (p, a), (_, b) in zip(fl.tree.leaves_with_paths(src), fl.tree.leaves_with_paths(dst)):
        assert np.array_equal(a, b), p
        assert type(a) is type(b), p
    assert dst[1].count == 7 and type(dst[1].count) is int and dst[1].act is np.tanh
    # a frozen dataclass holding a tuple of numbers, and a namedtuple
    tree = {"rule": Rule(0.1, (0.9, 0.99)), "p": Pair(np.zeros(2), 3.0)}
    new = {"rule": {"eta": np.float64(0.5), "beta": {"0": np.float64(0.1), "1": np.float64(0.2)}},
           "p": {"0": np.ones(2), "1": np.float64(4.0)}}
    a = tree["p"].a
    fl.loadmodel(tree, new)
    assert tree["rule"] == Rule(0.5, (0.1, 0.2)) and tree["p"].b == 4.0 and tree["p"].a is a
    assert np.array_equal(a, [1, 1])
    # a flat dict with dotted names, as from a PyTorch state dict
    flat = {k: v.copy() for k, v in flat_state(src).items()}
    fl.loadmodel(_model(), flat)


def _snapshot(model):
    return [np.array(x, copy=True) for _, x in fl.tree.leaves_with_paths(model)]


@pytest.mark.parametrize("change, message", [
    (lambda s: s["layers"]["2"].update(weight=np.zeros((10, 2), np.float32)),
     r"loadmodel: layers\.2\.weight: expected \(2, 10\), got \(10, 2\); transposed\? "
     r"weights here are \(out, in\)"),
    (lambda s: s["layers"]["2"].update(weight=np.zeros((2, 9), np.float32)),
     r"loadmodel: layers\.2\.weight: expected \(2, 10\), got \(2, 9\)$"),
    (lambda s: s["layers"]["2"].update(bias=np.zeros(2)),
     r"layers\.2\.bias: expected dtype float32, got float64"),
    # (counted like for like: the count of the model's number is no array of the state's)
    (lambda s: s["layers"]["2"].pop("bias"),
     r"layers\.2\.bias: missing from the state \(the state has 5 arrays, the model 6\)"),
    (lambda s: s["layers"]["2"].update(extra=np.zeros(1)),
     r"layers\.2\.extra: in the state but not in the model"),
    (lambda s: s["layers"]["1"].update(count=np.float64(1.0)),
     r"layers\.1\.count: expected dtype int64, got float64"),
])
def test_mismatch_names_the_path_and_writes_nothing(change, message):
    fl.seed(1)
    src, dst = _model(), _model()
    state = {k: v for k, v in fl.state(src).items()}
    state["layers"] = {k: dict(v) for k, v in state["layers"].items()}
    change(state)
    before = _snapshot(dst)
    with pytest.raises(LoadError, match=message):
        fl.loadmodel(dst, state)
    for a, b in zip(before, _snapshot(dst)):
        assert np.array_equal(a, b)  # the early layers were not written either


def test_a_state_with_a_prefix_more_or_less_says_how_to_nest_it():
    model = fl.Chain(fl.Dense(2, 3), fl.relu, fl.Dense(3, 1))
    sequential = fl.state(model)["layers"]  # PyTorch's nn.Sequential names: 0.weight ...
    with pytest.raises(LoadError, match=r"lack the model's prefix 'layers\.': pass "
                                        r"\{'layers': state\}"):
        fl.loadmodel(model, sequential)
    with pytest.raises(LoadError, match=r"carry a prefix 'module\.' .*: pass state\['module'\]"):
        fl.loadmodel(model, {"module": fl.state(model)})  # as DataParallel saves it
    fl.loadmodel(model, {"layers": sequential})


def test_loadmodel_bad_arguments():
    with pytest.raises(TypeError, match="expected a state"):
        fl.loadmodel(_model(), [np.zeros(2)])
    d = {"w": np.zeros(2)}
    d["w"].flags.writeable = False
    with pytest.raises(LoadError, match="w: the model's array is read-only"):
        fl.loadmodel(d, {"w": np.ones(2)})


def test_tied_arrays_given_different_values_are_refused():
    """Two paths of one array (tied weights) given different values: the last was written
    over the first, silently (found reviewing loadmodel for tests/io/fuzz_io.py). Equal
    values load."""
    w = np.ones((2, 2))
    model = {"enc": w, "dec": w, "b": np.zeros(2)}
    with pytest.raises(LoadError, match=r"loadmodel: dec and enc are one array in the model "
                                        r"\(tied\), but the state gives them different values"):
        fl.loadmodel(model, {"enc": np.zeros((2, 2)), "dec": np.full((2, 2), 5.0),
                             "b": np.ones(2)})
    assert np.all(w == 1) and np.all(model["b"] == 0)  # nothing written
    fl.loadmodel(model, {"enc": np.full((2, 2), 3.0), "dec": np.full((2, 2), 3.0),
                         "b": np.ones(2)})
    assert model["enc"] is model["dec"] and np.all(w == 3)


def test_views_of_one_memory_given_different_values_are_refused(tmp_path):
    """A weight and its transpose view (or two overlapping slices of one buffer) are written
    one after the other: given values that disagree where they overlap, the last write won
    there, silently; the tied check knew only one array at two paths."""
    w = np.arange(6.0).reshape(2, 3)
    model = {"enc": w, "dec": w.T, "b": np.zeros(2)}
    with pytest.raises(LoadError, match=r"loadmodel: dec and enc are views of the same memory "
                                        r"in the model \(as a weight and its transpose, or "
                                        r"overlapping slices\), but the state gives them "
                                        r"different values where they overlap"):
        fl.loadmodel(model, {"enc": np.ones((2, 3)), "dec": np.zeros((3, 2)), "b": np.ones(2)})
    assert np.array_equal(w, np.arange(6.0).reshape(2, 3)) and not model["b"].any()
    fl.save_checkpoint(tmp_path / "c.st", {"enc": np.ones((2, 3)), "dec": np.zeros((3, 2)),
                                           "b": np.ones(2)})
    with pytest.raises(LoadError, match=r"load_checkpoint \(model\): dec and enc are views"):
        fl.load_checkpoint(tmp_path / "c.st", model)
    assert np.array_equal(w, np.arange(6.0).reshape(2, 3)) and not model["b"].any()
    new = np.arange(6.0).reshape(2, 3) + 10  # agreeing values load
    fl.loadmodel(model, {"enc": new, "dec": new.T.copy(), "b": np.ones(2)})
    assert np.array_equal(w, new) and np.shares_memory(model["dec"], w)
    raw = bytearray(48)  # np.frombuffer gives each array a memoryview of its own
    model = {"a": np.frombuffer(raw, np.float64)[:4], "b": np.frombuffer(raw, np.float64)[2:]}
    with pytest.raises(LoadError, match=r"loadmodel: b and a are views of the same memory"):
        fl.loadmodel(model, {"a": np.zeros(4), "b": np.ones(4)})
    assert not any(raw)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 7), st.integers(0, 8), st.integers(-3, 3)),
                min_size=1, max_size=4), st.integers(0, 2**32 - 1))
def test_slices_of_one_buffer_load_exactly_when_they_agree(cuts, seed):
    """Random slices of one buffer given random values (small integers: often agreeing):
    the reference says, element by element of the buffer, whether the values given for it
    agree; then the load writes them all, else it refuses and writes nothing."""
    n, rng = 8, np.random.default_rng(seed)
    buffer = np.full(n, -1.0)
    slices = [slice(a, b, step or 1) if (step or 1) > 0 else slice(b, a, step)
              for a, b, step in cuts]
    model = {f"s{i}": buffer[sl] for i, sl in enumerate(slices)}
    state = {f"s{i}": rng.integers(0, 2, size=len(range(n)[sl])).astype(float)
             for i, sl in enumerate(slices)}
    wanted: dict = {}  # buffer position -> the values given for it
    for i, sl in enumerate(slices):
        for position, v in zip(range(n)[sl], state[f"s{i}"]):
            wanted.setdefault(position, set()).add(v)
    if all(len(vs) == 1 for vs in wanted.values()):
        fl.loadmodel(model, state)
        expected = [wanted[p].pop() if p in wanted else -1.0 for p in range(n)]
        assert buffer.tolist() == expected
    else:
        with pytest.raises(LoadError, match="views of the same memory|one array"):
            fl.loadmodel(model, state)
        assert np.all(buffer == -1)


def test_a_state_holding_the_models_own_arrays_loads_as_given():
    """loadmodel(model, {"a": model["b"], "b": model["a"]}) wrote a into b's memory first,
    so b got its own value back: both ended equal to the old b."""
    a, b = np.zeros(2), np.ones(2)
    model = {"a": a, "b": b, "t": np.arange(4.0)}
    fl.loadmodel(model, {"a": b, "b": a, "t": model["t"][::-1]})
    assert a.tolist() == [1, 1] and b.tolist() == [0, 0] and model["t"].tolist() == [3, 2, 1, 0]


def test_loadmodel_replaces_numpy_scalars():
    # a model holding a NumPy scalar failed to load: NumPy 2's scalars have
    # __array_namespace__ and were written into as arrays ("does not support item assignment")
    model = {"t": np.float64(1.5), "pair": (np.float32(2.0), 3.0), "w": np.zeros(2)}
    saved = {"t": np.float64(7.0), "pair": (np.float32(8.0), 9.0), "w": np.ones(2)}
    fl.loadmodel(model, fl.state(saved))
    assert model["t"] == 7.0 and type(model["t"]) is np.float64
    assert model["pair"] == (8.0, 9.0) and type(model["pair"][0]) is np.float32


def test_keys_alike_as_strings_are_refused_not_merged():
    # dict keys 0 and "0" are both named "0" in a state: fl.state kept one of them and
    # dropped the other, and loadmodel wrote the one entry into both arrays, silently
    model = {0: np.ones(1), "0": np.zeros(1)}
    with pytest.raises(ValueError, match="state: two entries are both named '0'"):
        fl.state(model)
    with pytest.raises(ValueError, match="loadmodel: two entries are both named '0'.*0 and '0'"):
        fl.loadmodel(model, {"0": np.full(1, 5.0)})
    assert model[0][0] == 1 and model["0"][0] == 0


def test_a_float16_state_of_float32_statistics_loads_exactly():
    # a model saved by fl.f16 before it kept the norm layers' statistics float32 holds them
    # in float16: loading it into today's fl.f16 model was refused ("expected dtype float32,
    # got float16; convert ... fl.f32(model)", which then refused the float16 weights)
    make = lambda: fl.f16(fl.Chain(fl.Dense(3, 4), fl.BatchNorm(4), fl.Dense(4, 1)))  # noqa: E731
    state = fl.state(make())
    old = np.arange(4, dtype=np.float16) / 3
    state["layers"]["1"]["running_var"] = old
    model = fl.loadmodel(make(), state)
    stats = model.layers[1].running_var
    assert stats.dtype == np.float32 and np.array_equal(stats, old.astype(np.float32))
    state["layers"]["0"]["weight"] = state["layers"]["0"]["weight"].astype(np.float64)
    with pytest.raises(LoadError, match="layers.0.weight: expected dtype float16, got "
                                           "float64"):  # narrowing: refused as before
        fl.loadmodel(make(), state)


def test_a_big_endian_state_loads_and_a_big_endian_model_reloads_its_save(tmp_path):
    """A state in the other byte order holds the same values: it was refused (``expected
    dtype float32, got >f4``), and a model holding big-endian arrays could not load its own
    file (safetensors stores little-endian)."""
    model = fl.Dense(2, 3)
    state = {"weight": np.arange(6, dtype=">f4").reshape(3, 2), "bias": np.ones(3, ">f4")}
    fl.loadmodel(model, state)
    assert model.weight.dtype == np.float32
    assert model.weight.tolist() == [[0, 1], [2, 3], [4, 5]] and model.bias.tolist() == [1] * 3
    big = {"w": np.arange(3, dtype=">f8"), "n": np.array([7, -1], ">i4")}
    fl.save(tmp_path / "big.safetensors", big)
    big["w"][:], big["n"][:] = 0, 0
    fl.loadmodel(big, fl.load(tmp_path / "big.safetensors"))
    assert big["w"].dtype == np.dtype(">f8") and big["w"].tolist() == [0.0, 1.0, 2.0]
    assert big["n"].tolist() == [7, -1]
    with pytest.raises(LoadError, match="n: expected dtype >i4, got float64"):
        fl.loadmodel(big, {"w": big["w"], "n": np.zeros(2)})  # (another kind: refused still)


@pytest.mark.parametrize("dtype", [np.float16, ">f4"])
def test_tied_weights_load_a_widening_or_big_endian_state(dtype):
    """Tied arrays are checked by writing the state into a scratch copy of their memory and
    reading each back: the read compared the float32 bytes with the value's own (float16, or
    big-endian), so a state that loads into untied arrays was refused as giving the tied
    ones different values. Different values are still refused."""
    w = np.zeros((2, 2), np.float32)
    model = {"enc": w, "dec": w}
    fl.loadmodel(model, {"enc": np.full((2, 2), 2.5, dtype), "dec": np.full((2, 2), 2.5, dtype)})
    assert model["enc"] is model["dec"] and model["enc"].tolist() == [[2.5, 2.5]] * 2
    with pytest.raises(LoadError, match="one array in the model .tied."):
        fl.loadmodel(model, {"enc": np.ones((2, 2), dtype), "dec": np.zeros((2, 2), dtype)})
    assert model["enc"].tolist() == [[2.5, 2.5]] * 2


def test_a_pytorch_state_dict_loads_its_arrays_and_the_model_keeps_its_settings(tmp_path):
    """A PyTorch state dict holds arrays alone: loading one into a Conv or BatchNorm failed
    with 'layers.0.stride: missing from the state', though the weights have PyTorch's
    shapes. A number the state lacks now keeps the model's value (Flux's loadmodel! keeps
    non-arrays); a missing array is still an error, and PyTorch's num_batches_tracked is
    named as such. The file is written by the safetensors package, as torch's save_file
    names a Sequential's entries."""
    package = pytest.importorskip("safetensors.numpy")
    rng = np.random.default_rng(5)
    arrays = {"0.weight": rng.normal(size=(4, 2, 3, 3)), "0.bias": rng.normal(size=4),
              "1.weight": rng.normal(size=4), "1.bias": rng.normal(size=4),
              "1.running_mean": rng.normal(size=4), "1.running_var": rng.random(4) + 0.5,
              "3.weight": rng.normal(size=(3, 16)), "3.bias": rng.normal(size=3)}
    arrays = {k: v.astype(np.float32) for k, v in arrays.items()}
    package.save_file({**arrays, "1.num_batches_tracked": np.array(7, np.int64)},
                      str(tmp_path / "torch.safetensors"), metadata={"format": "pt"})
    model = fl.Chain(fl.Conv((3, 3), 2, 4, stride=2), fl.BatchNorm(4, eps=1e-3),
                     fl.Flatten(), fl.Dense(16, 3))
    state = {"layers": fl.load(tmp_path / "torch.safetensors")}
    with pytest.raises(LoadError, match=r"layers\.1\.num_batches_tracked: in the state but "
                                        r"not in the model: PyTorch's count"):
        fl.loadmodel(model, state)
    del state["layers"]["1"]["num_batches_tracked"]
    fl.loadmodel(model, state)
    for name, value in arrays.items():
        layer, field = name.split(".")
        assert np.array_equal(getattr(model[int(layer)], field), value)
    assert model[0].stride == 2 and model[1].eps == 1e-3  # the model's settings
    del state["layers"]["3"]["bias"]
    with pytest.raises(LoadError, match=r"layers\.3\.bias: missing from the state"):
        fl.loadmodel(model, state)


def test_a_dtype_mismatch_says_which_conversion_loads_it():
    """The hint was 'e.g. fl.f32(model)' whatever the dtypes: for a float64 state and a
    float32 model (the model float32 already) it named a call that changes nothing. It names
    the state's conversion to the model's precision now (which then loads), or the model's to
    the state's; for another kind, the array's astype."""
    state = {"weight": np.arange(6.0).reshape(3, 2), "bias": np.zeros(3)}
    model = fl.Dense(2, 3)
    with pytest.raises(LoadError, match=r"weight: expected dtype float32, got float64; "
                                        r"convert the state, fl.f32\(state\), or the model, "
                                        r"fl.f64\(model\), first"):
        fl.loadmodel(model, state)
    fl.loadmodel(model, fl.f32(state))
    assert model.weight.tolist() == [[0, 1], [2, 3], [4, 5]]
    with pytest.raises(LoadError, match=r"got int64; convert the state's array first "
                                        r"\(.astype\(np.float32\)\)"):
        fl.loadmodel(model, {"weight": np.zeros((3, 2), np.int64), "bias": np.zeros(3)})


@pytest.mark.parametrize("thing, shown", [(None, "None (a NoneType)"), ("model", "'model' (a str)"),
                                          (b"x", "b'x' (a bytes)")])
def test_state_of_what_is_not_a_model_is_refused(thing, shown, tmp_path):
    """fl.state(None) and fl.state("model") were {}, and fl.save(path, None) wrote a file of
    no arrays, silently (a model forgotten, or the arguments swapped)."""
    message = f"state: expected a model or a tree of arrays; got {shown}"
    with pytest.raises(TypeError, match=re.escape(message)):
        fl.state(thing)
    with pytest.raises(TypeError, match=re.escape(message)):
        fl.save(tmp_path / "m.safetensors", thing)
    assert not (tmp_path / "m.safetensors").exists()  # nothing written
    # a model of no arrays still has the empty state, and a dict of arrays is its own
    assert fl.state(fl.Chain(fl.relu)) == {}
    assert fl.state({"w": np.ones(2)})["w"].tolist() == [1.0, 1.0]


class _Pair(tuple):
    """A tuple subclass whose constructor takes its items one by one (no _fields)."""

    def __new__(cls, a, b):
        return super().__new__(cls, (a, b))


def test_a_part_that_cannot_take_its_value_fails_before_any_array_is_written(tmp_path):
    """(The tuple was rebuilt after the arrays before it were written: the error was the
    constructor's own, 'missing 1 required positional argument', and the model was left
    half loaded.)"""
    model = {"w": np.ones(2), "p": _Pair(1.5, np.ones(2))}
    state = {"w": np.full(2, 7.0), "p": {"0": np.array(2.5), "1": np.full(2, 3.0)}}
    with pytest.raises(LoadError, match=r"loadmodel: p: a _Pair \(rebuilt to hold the "
                                        r"state's numbers\) cannot take the state's value "
                                        r"\(TypeError: .*\); nothing was written"):
        fl.loadmodel(model, state)
    assert model["w"].tolist() == [1, 1] and model["p"][1].tolist() == [1, 1]
    assert model["p"][0] == 1.5
    # the same in a checkpoint: nothing of the model nor of the optimiser state is written
    fl.save_checkpoint(tmp_path / "c.st", {"w": np.full(2, 7.0), "p": (2.5, np.full(2, 3.0))})
    with pytest.raises(LoadError, match="load_checkpoint \\(model\\): p: a _Pair"):
        fl.load_checkpoint(tmp_path / "c.st", model)
    assert model["w"].tolist() == [1, 1] and model["p"][1].tolist() == [1, 1]
    # a state without the number (it keeps the model's): nothing is rebuilt, the arrays load
    fl.loadmodel(model, {"w": np.full(2, 7.0), "p": {"1": np.full(2, 3.0)}})
    assert model["w"].tolist() == [7, 7] and type(model["p"]) is _Pair
    assert model["p"][1].tolist() == [3, 3]
