"""A checkpoint's extra comes back exactly (equal, and of the same types), or is refused
when saving, by its place (fluxml.io.extra). Through plain JSON a tuple came back a list,
an int key a string, and a NumPy number or a nan key could not be saved."""

import collections
import enum
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fluxml as fl
from fluxml.io import FileFormatError, safetensors
from fluxml.io.extra import dumps, loads


def _same(a, b) -> bool:
    """Equal, of the same types all the way down, nan equal to nan (bits for NumPy)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return len(a) == len(b) and all(_same(k, j) and _same(v, w) for (k, v), (j, w)
                                        in zip(a.items(), b.items()))
    if isinstance(a, np.generic):
        return a.dtype == b.dtype and a.tobytes() == b.tobytes()
    return a == b or isinstance(a, float) and math.isnan(a) and math.isnan(b)


_numpy = st.floats().map(np.float64) | st.floats(width=32).map(np.float32) | \
    st.floats(width=16).map(np.float16) | st.integers(-128, 127).map(np.int8) | \
    st.integers(0, 2**64 - 1).map(np.uint64) | st.booleans().map(np.bool_) | \
    st.complex_numbers(width=64).map(np.complex64)
_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=4) | \
    _numpy
_keys = st.none() | st.booleans() | st.integers(-3, 3) | st.text(max_size=3) | \
    st.just("__fluxml__") | st.tuples(st.integers(0, 2), st.text(max_size=2))
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3) | st.tuples(inner)
                       | st.dictionaries(_keys, inner, max_size=3), max_leaves=12)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(_keys, _values, max_size=4))
def test_what_is_accepted_comes_back_exactly(extra):
    assert _same(loads(dumps(extra, "extra")), extra)


def test_a_checkpoint_keeps_its_extra_exactly(tmp_path):
    extra = {"best": (3, np.float32(0.25)), 7: float("nan"), "shape": (2, (3,)),
             "history": {"losses": [1.5, float("inf")], "epochs": [{"acc": np.float64(1)}]},
             "__fluxml__": "a key of the tag's name", None: [True, -0.0, 2**80]}
    fl.save_checkpoint(tmp_path / "c.st", {"w": np.ones(2)}, extra=extra)
    assert _same(fl.load_checkpoint(tmp_path / "c.st", {"w": np.ones(2)}).extra, extra)
    _, meta = safetensors.read(tmp_path / "c.st")
    json.loads(meta["fluxml.extra"], parse_constant=pytest.fail)  # standard JSON: no NaN


Point = collections.namedtuple("Point", "x y")


class Colour(enum.IntEnum):
    RED = 1


@pytest.mark.parametrize("extra, error, message", [
    ({"a": {1, 2}}, TypeError, r"extra\['a'\]: a set, which extra does not hold"),
    ({"a": [0, Point(1, 2)]}, TypeError, r"extra\['a'\]\[1\]: a tests.io.test_extra.Point, a "
     r"subclass of tuple that would come back as a plain tuple; convert it first: tuple\(x\) or "
     r"x._asdict\(\)"),
    ({"c": Colour.RED}, TypeError, r"extra\['c'\]: a tests.io.test_extra.Colour, a "
     r"subclass of int that would come back as a plain int; convert it first: int\(x\)"),
    ({"o": collections.OrderedDict(a=1)}, TypeError, r"extra\['o'\]: a collections.OrderedDict, "
     r"a subclass of dict"),
    ({"s": np.str_("x")}, TypeError, r"extra\['s'\]: a numpy.str_, which extra does not "
     r"hold .*convert it first: x.item\(\)"),
    ({"f": np.sin}, TypeError, r"extra\['f'\]: a numpy.ufunc, which extra does not hold"),
    ({frozenset(): 1}, TypeError, r"extra \(the key frozenset\(\)\): a frozenset"),
    ({"a": np.array(["x"])}, TypeError, r"extra\['a'\]: an array of dtype <U1, which a "
     r"checkpoint cannot hold"),
    ({"a": np.ones(2, np.complex128)}, TypeError, r"extra\['a'\]: an array of dtype complex128"),
    ({"m": np.ma.array(np.ones(2))}, TypeError, r"extra\['m'\]: a numpy.ma.MaskedArray, a "
     r"subclass of numpy.ndarray that would come back as a plain array; convert it first: "
     r"np.asarray"),
])
def test_what_cannot_come_back_is_refused_by_its_place(tmp_path, extra, error, message):
    with pytest.raises(error, match=r"save_checkpoint: " + message):
        fl.save_checkpoint(tmp_path / "c.st", {"w": np.ones(2)}, extra=extra)
    assert not (tmp_path / "c.st").exists()


def test_circular_and_too_deep_extras_are_refused(tmp_path):
    loop: list = []
    loop.append(loop)
    with pytest.raises(ValueError, match=r"extra\['a'\]\[0\]: holds itself \(a circular"):
        fl.save_checkpoint(tmp_path / "c.st", {"w": np.ones(2)}, extra={"a": loop})
    deep: list = []
    for _ in range(200):
        deep = [deep]
    with pytest.raises(ValueError, match=r"nested more than 100 deep"):
        fl.save_checkpoint(tmp_path / "c.st", {"w": np.ones(2)}, extra={"a": deep})
    shared = [1, 2]  # (twice, not circular: two equal copies come back)
    fl.save_checkpoint(tmp_path / "c.st", {"w": np.ones(2)}, extra={"a": [shared, shared]})
    assert fl.load_checkpoint(tmp_path / "c.st", {"w": np.ones(2)}).extra == {"a": [[1, 2]] * 2}


def test_checkpoints_written_before_read_their_extra_as_plain_json(tmp_path):
    """Files without fluxml.extra_format hold plain JSON: a dict with the tag's key is a
    dict there."""
    fl.save_checkpoint(tmp_path / "c.st", {"w": np.ones(2)})
    tensors, meta = safetensors.read(tmp_path / "c.st")
    del meta["fluxml.extra_format"]
    meta["fluxml.extra"] = '{"__fluxml__": "tuple", "items": [1], "x": NaN}'
    safetensors.write(tmp_path / "old.st", tensors, meta)
    extra = fl.load_checkpoint(tmp_path / "old.st", {"w": np.ones(2)}).extra
    assert extra["__fluxml__"] == "tuple" and math.isnan(extra["x"])


def test_arrays_in_extra_are_kept_as_tensors(tmp_path):
    """Arrays were refused (EarlyStopping's best weights travel in the history now): they
    come back equal, of their dtype and shape, as copies, from tensors of the file."""
    w, flags = np.arange(6, dtype=np.float32).reshape(2, 3), np.array([True, False])
    extra = {"history": {"kept": {"best": {"epoch": 2, "weights": {"w": w,
                                                                     "z": np.full((), 3.0)}}}},
             "pair": (w, flags), "i": np.arange(3, dtype=np.uint16)}
    fl.save_checkpoint(tmp_path / "c.st", {"w": np.ones(2)}, extra=extra)
    tensors, meta = safetensors.read(tmp_path / "c.st")
    assert meta["fluxml.extra_format"] == "2" and sorted(tensors) == [
        "extra.0", "extra.1", "extra.2", "extra.3", "extra.4", "model.w"]
    back = fl.load_checkpoint(tmp_path / "c.st", {"w": np.ones(2)}).extra
    kept = back["history"]["kept"]["best"]["weights"]
    for a, b in [(kept["w"], w), (kept["z"], np.full((), 3.0)), (back["pair"][0], w),
                 (back["pair"][1], flags), (back["i"], extra["i"])]:
        assert type(a) is np.ndarray and a.dtype == b.dtype and a.shape == b.shape
        assert np.array_equal(a, b)
    assert back["pair"][0] is not kept["w"]  # (twice in, two copies out)
    # a file without arrays is as before: format 1, which a fluxml before arrays reads
    fl.save_checkpoint(tmp_path / "plain.st", {"w": np.ones(2)}, extra={"a": 1})
    assert safetensors.read(tmp_path / "plain.st")[1]["fluxml.extra_format"] == "1"


def test_an_array_without_a_list_to_keep_it_in_is_refused():
    with pytest.raises(TypeError, match=r"extra\['a'\]: an array \(\(2,\), float64\), which "
                                        r"extra does not hold here"):
        dumps({"a": np.ones(2)}, "extra")
    arrays: list = []
    assert loads(dumps({"a": np.ones(2)}, "extra", arrays), arrays)["a"].shape == (2,)


@pytest.mark.parametrize("text", ['{"__fluxml__": "set", "items": []}',
                                  '{"__fluxml__": "array", "index": 0}',
                                  '{"__fluxml__": "array", "index": -1}',
                                  '{"__fluxml__": "array", "index": true}',
                                  '{"__fluxml__": "numpy", "dtype": "<f4", "bytes": "00"}',
                                  '{"__fluxml__": "numpy", "dtype": "|O", "bytes": "00"}',
                                  '{"__fluxml__": "dict", "items": [[[1], 2]]}',
                                  '{"__fluxml__": "tuple", "items": [1]}'])
def test_a_damaged_extra_is_named_before_anything_is_written(tmp_path, text):
    fl.save_checkpoint(tmp_path / "c.st", {"w": np.ones(2)})
    tensors, meta = safetensors.read(tmp_path / "c.st")
    safetensors.write(tmp_path / "bad.st", tensors, {**meta, "fluxml.extra": text})
    model = {"w": np.zeros(2)}
    with pytest.raises(FileFormatError, match=r"bad.st: the metadata fluxml.extra is damaged"):
        fl.load_checkpoint(tmp_path / "bad.st", model)
    assert not model["w"].any()
