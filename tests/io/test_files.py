"""fl.save / fl.load in the safetensors format: round trips, the safetensors package as an
independent reader and writer, atomic writes, and clear errors for damaged files."""

import errno
import json
import os
import stat

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fluxml as fl
from fluxml.io import FileFormatError
from fluxml.io import safetensors as st_format

DTYPES = [np.float32, np.float64, np.float16, np.int8, np.uint8, np.int16, np.uint16,
          np.int32, np.uint32, np.int64, np.uint64, np.bool_, np.complex64, np.complex128]


def _model():
    return fl.Chain(fl.Dense(3, 5, np.tanh), fl.Dense(5, 2))


def _equal_trees(a, b):
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], dict):
            _equal_trees(a[k], b[k])
        else:
            assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k


def _array(dtype, shape, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape)
    if np.dtype(dtype).kind == "c":
        x = x + 1j * rng.normal(size=shape)
    return x.astype(dtype) * 9


arrays = st.builds(
    _array,
    st.sampled_from(DTYPES), st.lists(st.integers(0, 3), max_size=3).map(tuple),
    st.integers(0, 1000))
keys = st.text("abcxyz_0123.", min_size=1, max_size=4)
trees = st.recursive(arrays, lambda kids: st.dictionaries(keys, kids, min_size=1, max_size=3),
                     max_leaves=8).filter(lambda t: isinstance(t, dict))


@settings(max_examples=40, deadline=None)
@given(tree=trees)
def test_roundtrip_any_tree(tmp_path_factory, tree):
    path = tmp_path_factory.mktemp("rt") / "t.safetensors"
    try:
        fl.save(path, tree)
    except ValueError as err:  # keys with dots may collide once joined: refused, by name
        assert "once their keys are joined with dots" in str(err)
        return
    _equal_trees(fl.state(tree), fl.load(path))


def test_model_roundtrip_and_metadata(tmp_path):
    model = _model()
    fl.save(tmp_path / "m.safetensors", model, metadata={"author": "test"})
    fresh = fl.loadmodel(_model(), fl.load(tmp_path / "m.safetensors"))
    x = np.ones((2, 3), np.float32)
    assert np.array_equal(fresh(x), model(x))
    _, meta = st_format.read(tmp_path / "m.safetensors")
    assert meta["author"] == "test"
    assert json.loads(meta["fluxml.keys"])["layers.1.bias"] == ["layers", "1", "bias"]


def test_bytes_layout_by_hand(tmp_path):
    """The format read with nothing but the spec: length, JSON header, raw bytes."""
    fl.save(tmp_path / "a.safetensors", {"w": np.array([[1.5, -2.0]], np.float32)})
    raw = (tmp_path / "a.safetensors").read_bytes()
    n = int.from_bytes(raw[:8], "little")
    assert n % 8 == 0
    header = json.loads(raw[8:8 + n])
    assert header["w"] == {"dtype": "F32", "shape": [1, 2], "data_offsets": [0, 8]}
    assert np.frombuffer(raw[8 + n:], "<f4").tolist() == [1.5, -2.0]


def test_the_safetensors_package_reads_ours_and_we_read_its(tmp_path):
    package = pytest.importorskip("safetensors.numpy")
    tree = {"a": {"w": np.arange(6, dtype=np.float32).reshape(2, 3)},
            "b": np.array([True, False]), "c": np.array(7, np.int64),
            "z": np.zeros((0, 4), np.float16)}
    fl.save(tmp_path / "ours.safetensors", tree)
    theirs = package.load_file(str(tmp_path / "ours.safetensors"))
    assert set(theirs) == {"a.w", "b", "c", "z"}
    for name, x in fl.io.modelstate.flat_state(tree).items():
        assert theirs[name].dtype == x.dtype and np.array_equal(theirs[name], x)
    package.save_file({"layer.weight": np.ones((2, 2), np.float64),
                       "layer.bias": np.zeros(2, np.float64)}, str(tmp_path / "t.safetensors"))
    loaded = fl.load(tmp_path / "t.safetensors")  # no fluxml metadata: nested at the dots
    assert loaded["layer"]["weight"].tolist() == [[1, 1], [1, 1]]


def test_complex128_is_written_as_float64_pairs_and_read_back(tmp_path):
    """The format has complex64 (C64) but no complex128: written as view_as_real's pairs."""
    z = np.array([[1 + 2j, -3.5j], [np.inf - 1j, 0.25]])
    tree = {"z": z, "z1": z[0, ::-1], "z0": np.array(1j), "c": z.astype(np.complex64)}
    fl.save(tmp_path / "c.safetensors", tree)
    _equal_trees(fl.state(tree), fl.load(tmp_path / "c.safetensors"))
    tensors, meta = st_format.read(tmp_path / "c.safetensors")
    assert "fluxml.complex128" not in meta
    package = pytest.importorskip("safetensors.numpy")
    theirs = package.load_file(str(tmp_path / "c.safetensors"))
    assert theirs["z"].dtype == np.float64 and theirs["z"].shape == (2, 2, 2)
    np.testing.assert_array_equal(theirs["z"][..., 0] + 1j * theirs["z"][..., 1], z)
    assert theirs["c"].dtype == np.complex64
    # a damaged list of complex128 tensors is a FileFormatError, by name
    with pytest.raises(FileFormatError, match="lists 'c', which is not a float64 tensor"):
        st_format._complex128({"c": np.zeros(2, np.complex64)}, '["c"]', "f")
    with pytest.raises(FileFormatError, match="fluxml.complex128 is not a JSON list"):
        st_format._complex128({}, '{"c"', "f")


def test_unsupported_dtype_is_refused_by_name(tmp_path):
    with pytest.raises(TypeError, match=r"save: w has dtype timedelta64\[s\]"):
        fl.save(tmp_path / "x.safetensors", {"w": np.zeros(2, "m8[s]")})
    assert not os.listdir(tmp_path)


def test_atomic_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    fl.save(path, {"w": np.ones(3)})
    old = path.read_bytes()

    def broken(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        fl.save(path, {"w": np.zeros(3)})
    assert path.read_bytes() == old
    assert os.listdir(tmp_path) == ["m.safetensors"]  # the temporary file is gone


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_saved_files_have_the_permissions_open_gives(tmp_path):
    """A new file gets 0o666 less the umask (the temporary file's 0o600 was kept before:
    a saved model was unreadable to the group and others); a replaced one keeps its mode."""
    umask = os.umask(0o022)
    try:
        fl.save(tmp_path / "new.st", {"w": np.ones(2)})
        assert stat.S_IMODE(os.stat(tmp_path / "new.st").st_mode) == 0o644
        os.chmod(tmp_path / "new.st", 0o640)
        fl.save(tmp_path / "new.st", {"w": np.zeros(2)})
        assert stat.S_IMODE(os.stat(tmp_path / "new.st").st_mode) == 0o640
    finally:
        os.umask(umask)


def test_saving_into_a_missing_folder_or_onto_a_folder_is_named(tmp_path):
    # (the errors named the temporary file)
    with pytest.raises(FileNotFoundError, match=r"save: the folder .*nowhere does not exist"):
        fl.save(tmp_path / "nowhere" / "m.st", {"w": np.ones(2)})
    with pytest.raises(IsADirectoryError, match=r"save: .* is a folder"):
        fl.save(tmp_path, {"w": np.ones(2)})
    assert os.listdir(tmp_path) == []


def test_damaged_files_give_clear_errors_and_change_nothing(tmp_path):
    model = _model()
    fl.save(tmp_path / "m.safetensors", model)
    raw = (tmp_path / "m.safetensors").read_bytes()
    target = _model()
    before = [x.copy() for x in fl.leaves(target)]
    n = int.from_bytes(raw[:8], "little")
    cases = {
        "empty": b"",
        "cut in the length": raw[:5],
        "cut in the header": raw[:8 + n // 2],
        "cut in the data": raw[:-3],
        "extra bytes": raw + b"\0",
        "flipped data byte": raw[:-5] + bytes([raw[-5] ^ 1]) + raw[-4:],
        "broken JSON": raw[:8] + b"[" + raw[9:],
        "zip file": b"PK\x03\x04" + bytes(40),
    }
    messages = {
        "empty": "fewer than the 8", "cut in the length": "fewer than the 8",
        "cut in the header": "header length says", "cut in the data": "truncated",
        "extra bytes": "extra bytes", "flipped data byte": "corrupted",
        "broken JSON": "not valid JSON", "zip file": "header length says",
    }
    for name, data in cases.items():
        (tmp_path / "bad.safetensors").write_bytes(data)
        with pytest.raises(FileFormatError, match=messages[name]):
            fl.loadmodel(target, fl.load(tmp_path / "bad.safetensors"))
    for a, b in zip(before, fl.leaves(target)):
        assert np.array_equal(a, b)


def test_header_checks():
    def file(header):
        text = json.dumps(header).encode()
        return len(text).to_bytes(8, "little") + text + bytes(8)

    bad = [
        ({"w": {"dtype": "BF17", "shape": [4], "data_offsets": [0, 8]}}, "dtype 'BF17'"),
        ({"w": {"dtype": "U8", "shape": [2**32, 2**32], "data_offsets": [0, 0]}},
         "needs 18446744073709551616 bytes"),  # (an int64 product wrapped round to 0)
        ({"pad": {"dtype": "U8", "shape": [8], "data_offsets": [0, 8]},
          "w": {"dtype": "U8", "shape": [0, 2**64], "data_offsets": [8, 8]}},
         "which NumPy cannot hold"),
        ({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, "needs 12 bytes"),
        ({"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, "non-negative"),
        ({"w": {"dtype": "F32"}}, "lacks dtype, shape or data_offsets"),
        ({"a": {"dtype": "U8", "shape": [4], "data_offsets": [4, 8]}}, "starts at byte 4"),
    ]
    for header, message in bad:
        with pytest.raises(FileFormatError, match=message):
            st_format.decode(file(header))


def test_checkpoint_keeps_frozen_leaves_frozen(tmp_path):
    """A frozen flag is not an array: it rides in the metadata (found by review: a resumed run
    trained the frozen layer)."""
    model = fl.Chain(fl.Dense(2, 2), fl.Dense(2, 1))
    state = fl.setup(fl.Adam(), model)
    fl.freeze(state.layers[0])
    path = tmp_path / "ckpt.safetensors"
    fl.save_checkpoint(path, model, state, step=3)
    fresh = fl.setup(fl.Adam(), model)
    info = fl.load_checkpoint(path, model, fresh)
    assert info.opt_state.layers[0].weight.frozen and info.opt_state.layers[0].bias.frozen
    assert not info.opt_state.layers[1].weight.frozen


def test_a_saved_optimiser_state_keeps_its_frozen_flags(tmp_path):
    """fl.save of an optimiser state (not a checkpoint) kept no frozen flags: loaded into a
    fresh fl.setup, the frozen layer was trained again, silently. Each Leaf's flag is state,
    a 0-d bool at <leaf>.frozen; a state saved without flags loads leaving them as they are."""
    model = fl.Chain(fl.Dense(2, 2), fl.Dense(2, 1))
    state = fl.setup(fl.Adam(), model)
    fl.freeze(state.layers[0])
    assert fl.state(state)["layers"]["0"]["weight"]["frozen"] == np.array(True)
    fl.save(tmp_path / "s.safetensors", state)
    fresh = fl.loadmodel(fl.setup(fl.Adam(), model), fl.load(tmp_path / "s.safetensors"))
    assert fresh.layers[0].weight.frozen and fresh.layers[0].bias.frozen
    assert not fresh.layers[1].weight.frozen
    # loading thaws as well as freezes: the flags are the saved ones
    fl.loadmodel(state, fl.state(fl.setup(fl.Adam(), model)))
    assert not state.layers[0].weight.frozen
    # a state saved before the flags were kept (none in it) leaves them as they are
    old = {k: v for k, v in fl.io.modelstate.flat_state(fresh).items()
           if not k.endswith(".frozen")}
    assert fl.loadmodel(fresh, old).layers[0].weight.frozen
    # a flag of the wrong kind is named
    bad = {**old, "layers.0.weight.frozen": np.array(1.0)}
    with pytest.raises(fl.io.LoadError, match=r"layers.0.weight.frozen: expected dtype bool"):
        fl.loadmodel(fresh, bad)


def test_bool_hyperparameters_adjusted_per_part_are_kept(tmp_path):
    """A rule's bool hyperparameters (AdamW's couple, ClipNorm's throw) are static in a tree
    like the frozen flag: set per part by fl.adjust, they were lost by fl.save and
    checkpoints alike, and the part trained with the fresh rule's (found by
    tests/io/fuzz_io.py). They are kept as 0-d bools beside the numbers."""
    model = {"a": np.ones(3), "b": np.ones(3)}
    rule = fl.OptimiserChain(fl.ClipNorm(), fl.AdamW(lambd=0.1))
    state = fl.setup(rule, model)
    fl.adjust(state["a"], couple=False)
    assert fl.state(state)["a"]["rule"]["rules"]["1"]["couple"] == np.array(False)
    fl.save(tmp_path / "s.st", state)
    fresh = fl.loadmodel(fl.setup(rule, model), fl.load(tmp_path / "s.st"))
    assert fresh["a"].rule == state["a"].rule and fresh["b"].rule == state["b"].rule
    assert not fresh["a"].rule.rules[1].couple and rule.rules[1].couple  # (rule unchanged)
    fl.save_checkpoint(tmp_path / "c.st", model, state)
    info = fl.load_checkpoint(tmp_path / "c.st", model, fl.setup(rule, model))
    assert not info.opt_state["a"].rule.rules[1].couple and info.opt_state["b"].rule == rule


def test_a_name_inside_another_tensor_read_after_it_is_refused(tmp_path):
    """A file without fluxml's key paths (another program's) holding "a.b" and then "a":
    "a" replaced the dict holding "b", which was lost silently; "a" first was refused."""
    for order in (["a.b", "a"], ["a", "a.b"]):
        st_format.write(tmp_path / "x.st", {k: np.ones(1, np.float32) for k in order})
        with pytest.raises(FileFormatError, match=r"names do not form a tree"):
            fl.load(tmp_path / "x.st")


def test_metadata_under_fluxmls_own_keys_is_refused(tmp_path):
    """metadata={"fluxml.keys": ...} was written over the key paths: fl.save wrote a file
    that fl.load then nested otherwise ({"a.b": x} came back as {"a": {"b": x}}) or refused."""
    with pytest.raises(ValueError, match=r"save: the metadata key 'fluxml.keys' is fluxml's"):
        fl.save(tmp_path / "m.st", {"a.b": np.ones(2)}, metadata={"fluxml.keys": "{}"})
    assert not (tmp_path / "m.st").exists()
    fl.save(tmp_path / "m.st", {"a.b": np.ones(2)}, metadata={"author": "me"})
    assert list(fl.load(tmp_path / "m.st")) == ["a.b"]


def test_bf16_tensors_read_as_float32_exactly_and_float8_is_refused_by_name(tmp_path):
    """BF16, the dtype most published weights are saved in, was refused as 'not a valid
    safetensors file'. A bfloat16 is the upper half of a float32: read as those float32s,
    bit for bit (inf, -0, NaN and a subnormal too), so the file loads into a float32 model.
    A float8 file is valid too: refused by name, not called invalid."""
    values = np.array([1.0, -2.5, 3.140625, 65536.0, np.inf, -0.0, np.nan, 2.0**-130],
                      np.float32)
    bits = (values.view("<u4") >> 16).astype("<u2")  # bfloat16: a float32's upper 16 bits
    assert np.array_equal((bits.astype(np.uint32) << 16).view(np.float32), values,
                          equal_nan=True)
    header = {"weight": {"dtype": "BF16", "shape": [4, 2], "data_offsets": [0, 16]},
              "bias": {"dtype": "F32", "shape": [4], "data_offsets": [16, 32]}}
    text = json.dumps(header).encode()
    body = bits.tobytes() + np.arange(4, dtype="<f4").tobytes()
    (tmp_path / "bf16.safetensors").write_bytes(len(text).to_bytes(8, "little") + text + body)
    state = fl.load(tmp_path / "bf16.safetensors")
    assert state["weight"].dtype == np.float32
    assert state["weight"].tobytes() == values.reshape(4, 2).tobytes()
    model = fl.Dense(2, 4)
    state["weight"] = np.nan_to_num(state["weight"])
    fl.loadmodel(model, state)
    assert np.array_equal(model.weight, np.nan_to_num(values).reshape(4, 2))
    header = {"w": {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [0, 2]}}
    text = json.dumps(header).encode()
    (tmp_path / "f8.safetensors").write_bytes(len(text).to_bytes(8, "little") + text + b"ab")
    with pytest.raises(FileFormatError, match="w has dtype F8_E4M3, a float8 that NumPy has "
                                              "no dtype for") as err:
        fl.load(tmp_path / "f8.safetensors")
    assert "not a valid" not in str(err.value)


def test_a_folder_that_refuses_the_file_is_named_not_the_temporary_file(tmp_path,
                                                                         monkeypatch):
    """Saving into a read-only folder failed with 'Permission denied: .../.m.st.<hex>.tmp',
    naming a file the user never asked for; now the folder and the target are named (and
    the error is still a PermissionError), and the old file is as it was."""
    path = tmp_path / "m.st"
    fl.save(path, {"w": np.ones(2)})
    old = path.read_bytes()
    real_open = os.open

    def read_only(name, flags, *args):
        if str(name).endswith(".tmp"):
            raise PermissionError(errno.EACCES, "Permission denied", str(name))
        return real_open(name, flags, *args)

    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(PermissionError, match=r"save: cannot create a file in the folder "
                                              r".* to write m.st \(Permission denied\)") as err:
        fl.save(path, {"w": np.zeros(2)})
    assert ".tmp" not in str(err.value)
    assert path.read_bytes() == old and os.listdir(tmp_path) == ["m.st"]


def test_a_tensor_named_like_the_headers_metadata_is_refused_and_the_old_file_kept(tmp_path):
    """A dict key '__metadata__' at the top of a model was the name of a tensor whose header
    entry the metadata then wrote over: fl.save replaced the old file by one that no reader
    reads ('the data of w starts at byte 16'). Now it is refused by name, the old file kept;
    deeper in the tree the name is 'a.__metadata__', which is fine."""
    path = tmp_path / "m.safetensors"
    fl.save(path, {"w": np.ones(1)})
    old = path.read_bytes()
    with pytest.raises(ValueError, match="may not be named '__metadata__'"):
        fl.save(path, {"__metadata__": np.ones(2), "w": np.zeros(1)})
    assert path.read_bytes() == old and fl.load(path)["w"].tolist() == [1.0]
    fl.save(path, {"a": {"__metadata__": np.ones(2)}})
    assert fl.load(path)["a"]["__metadata__"].tolist() == [1.0, 1.0]


@pytest.mark.skipif(os.name != "posix", reason="symbolic links")
def test_saving_through_a_symbolic_link_writes_the_file_it_names(tmp_path):
    """latest.st -> runs/v3.st: the atomic replace put a regular file in place of the link
    and left v3.st as it was, silently (open(path, 'wb'), torch.save and the safetensors
    package write through the link). The link's target is replaced now, the link kept."""
    (tmp_path / "runs").mkdir()
    target = tmp_path / "runs" / "v3.st"
    fl.save(target, {"w": np.zeros(2)})
    link = tmp_path / "latest.st"
    link.symlink_to(target)
    fl.save(link, {"w": np.ones(2)})
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert fl.load(target)["w"].tolist() == [1.0, 1.0]
    assert sorted(os.listdir(tmp_path / "runs")) == ["v3.st"]  # no temporary file left


def test_headers_of_odd_json_are_refused_as_invalid_files():
    """(A dtype of [] or {} raised 'unhashable type: list', a header nested 100000 deep a
    RecursionError, a shape of 5000 digits Python's ValueError on long integers.)"""
    def file(text: bytes):
        return len(text).to_bytes(8, "little") + text + bytes(4)

    entry = '{"a": {"dtype": %s, "shape": [1], "data_offsets": [0, 4]}}'
    cases = [(file((entry % "[]").encode()), "has dtype \\[\\]"),
             (file((entry % '{"F32": 1}').encode()), "has dtype {'F32': 1}"),
             (file(b"[" * 100_000), "not valid JSON \\(RecursionError"),
             (file(b'{"a": ' * 50_000 + b"1" + b"}" * 50_000), "not valid JSON"),
             (file(b'{"a": {"dtype": "F32", "shape": [' + b"1" * 5000
                   + b'], "data_offsets": [0, 4]}}'), "not valid JSON \\(ValueError"),
             # a name given twice (json keeps the last: the first's bytes were then called
             # "extra bytes"), in a tensor's entry too
             (file(b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, '
                   b'"a": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}}'),
              "its header names 'a' twice"),
             (file(b'{"a": {"dtype": "F32", "dtype": "F64", "shape": [1], '
                   b'"data_offsets": [0, 4]}}'), "its header names 'dtype' twice")]
    for raw, message in cases:
        with pytest.raises(FileFormatError, match=message):
            st_format.decode(raw)


def test_a_damaged_header_digest_key_does_not_let_other_damage_through(tmp_path):
    """Two flipped letters: one in the key of the header's digest (so the file read as one
    written without it), one in the complex128 list (its tensor came back as float64
    pairs) or in a tensor's name (nested at its dots elsewhere), silently."""
    x = np.arange(3) + 1j
    fl.save(tmp_path / "m.st", {"z": x, "layers": [np.ones(2), np.zeros(2)]})
    raw = (tmp_path / "m.st").read_bytes()
    for key in (b"fluxmm.header_sha256", b"fluxml.header_sha257", b"fluxml.header-sha256"):
        for other, damaged in [(b"fluxml.complex128", b"fluxml.coiplex128"),
                               (b'"layers.1"', b'"layers.7"')]:
            bad = raw.replace(b"fluxml.header_sha256", key).replace(other, damaged)
            (tmp_path / "bad.st").write_bytes(bad)
            with pytest.raises(FileFormatError, match="header is damaged"):
                fl.load(tmp_path / "bad.st")
    # the key alone damaged: refused too (the header's own check is gone)
    (tmp_path / "bad.st").write_bytes(raw.replace(b"fluxml.header_sha256",
                                                  b"fluxml.header_sha25X"))
    with pytest.raises(FileFormatError, match="'fluxml.header_sha25X' where fluxml writes"):
        fl.load(tmp_path / "bad.st")


def test_another_tools_key_near_the_digests_loads(tmp_path):
    """(A file the safetensors package wrote with a key 'fluxml.header_sha512' of its own
    was refused as damaged: only a file fluxml wrote, holding fluxml.sha256, has the key.)"""
    from safetensors.numpy import save_file

    for key in ("fluxml.header_sha512", "fluxml.header_sha384"):
        save_file({"w": np.ones(2)}, str(tmp_path / "m.st"), metadata={key: "abc"})
        np.testing.assert_array_equal(fl.load(tmp_path / "m.st")["w"], np.ones(2))


def test_tensors_missing_from_the_key_paths_are_refused(tmp_path):
    """A file whose fluxml.keys (written for every tensor) lacks one of its tensors, or
    lists one it lacks, is damaged: the tensor was nested at its dots, silently."""
    from safetensors.numpy import save_file

    tensors = {"a.b": np.ones(2), "c.d": np.zeros(1)}
    path = str(tmp_path / "m.st")
    save_file(tensors, path, metadata={"fluxml.keys": json.dumps({"a.b": ["a.b"]})})
    with pytest.raises(FileFormatError, match="m.st: the tensor 'c.d' is in the file but "
                                              "not in its metadata fluxml.keys"):
        fl.load(path)
    keys = {"a.b": ["a.b"], "c.d": ["c", "d"], "e": ["e"]}
    save_file(tensors, path, metadata={"fluxml.keys": json.dumps(keys)})
    with pytest.raises(FileFormatError, match="'e' is listed in the metadata fluxml.keys "
                                              "but not in the file"):
        fl.load(path)
    del keys["e"]  # every tensor listed, and no other: read as the keys say
    save_file(tensors, path, metadata={"fluxml.keys": json.dumps(keys)})
    assert _flat(fl.load(path)) == {("a.b",): [1.0, 1.0], ("c", "d"): [0.0]}


def _flat(tree, prefix=()):
    out = {}
    for k, v in tree.items():
        out.update(_flat(v, prefix + (k,)) if isinstance(v, dict) else
                   {prefix + (k,): v.tolist()})
    return out


def test_a_header_too_large_to_read_is_refused_when_saving_and_the_old_file_kept(
        tmp_path, monkeypatch):
    """(A checkpoint whose extra held 101 MB (a history of millions of step losses) was
    written over the last good one, and every load then called it truncated.)"""
    path = tmp_path / "c.st"
    fl.save_checkpoint(path, {"w": np.ones(2)}, step=1)
    before = path.read_bytes()
    monkeypatch.setattr(st_format, "PACKAGE_MAX_HEADER", 4000)
    with pytest.raises(ValueError, match="save: the file's header would be [0-9]+ bytes, "
                                         "more than the 4000 .* the metadata 'fluxml.extra' "
                                         "takes [0-9]+ bytes .* Nothing was written"):
        fl.save_checkpoint(path, {"w": np.ones(2)}, step=2,
                           extra={"losses": [0.1] * 1000})
    with pytest.raises(ValueError, match="the tensors' names, dtypes and shapes take"):
        fl.save(path, {f"w{i}": np.ones(1) for i in range(100)})
    # metadata JSON escapes (a control character: 6 bytes) is blamed, not the tensors
    for text in ("\x01" * 1000, "\u00e9" * 1000):
        with pytest.raises(ValueError, match="the metadata 'notes' takes 60[0-9][0-9] bytes"):
            fl.save(path, {"w": np.ones(2)}, metadata={"notes": text})
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["c.st"]
    # a length past what any header holds is named as such, not as a truncated file
    path.write_bytes((2**40).to_bytes(8, "little") + before[8:])
    with pytest.raises(FileFormatError, match="header length says 1099511627776 bytes, more "
                                              "than the 104857600 a safetensors header may"):
        fl.load(path)


def test_the_largest_header_written_is_the_largest_the_package_reads():
    from safetensors.numpy import load

    def file(size):
        head, tail = b'{"__metadata__":{"x":"', b'"},"a":{"dtype":"U8","shape":[1],' \
                                                 b'"data_offsets":[0,1]}}'
        text = head + b"y" * (size - len(head) - len(tail)) + tail
        return len(text).to_bytes(8, "little") + text + b"\x01"

    limit = st_format.PACKAGE_MAX_HEADER
    assert load(file(limit))["a"].tolist() == [1]
    with pytest.raises(Exception, match="header too large"):
        load(file(limit + 8))


def test_names_that_are_not_valid_unicode_are_refused_when_saving(tmp_path):
    """(A key with a lone surrogate, as os.fsdecode gives for a file name's undecodable
    byte, was written escaped: fluxml read it back, the safetensors package refused the whole
    file as 'unexpected end of hex escape'.)"""
    path = tmp_path / "m.st"
    fl.save(path, {"w": np.ones(1)})
    before = path.read_bytes()
    bad = os.fsdecode(b"layer\xff")
    with pytest.raises(ValueError, match=r"save: the tensor name 'a.layer\\udcff' is not "
                                         r"valid Unicode \(surrogates not allowed at "
                                         r"position 7\)"):
        fl.save(path, {"a": {bad: np.ones(1)}})
    with pytest.raises(ValueError, match=r"the metadata value of 'note' 'layer\\udcff'"):
        fl.save(path, {"w": np.ones(1)}, metadata={"note": bad})
    assert path.read_bytes() == before
    # in a checkpoint's extra it is JSON text, which the package reads
    from safetensors.numpy import load_file

    fl.save_checkpoint(path, {"w": np.ones(1)}, extra={bad: bad})
    assert list(load_file(path)) == ["model.w"]
    assert fl.load_checkpoint(path, {"w": np.ones(1)}).extra == {bad: bad}
