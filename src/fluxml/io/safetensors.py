"""The safetensors file format, read and written by a few lines of our own (no pickle).

A file is: 8 bytes, the header's length as a little-endian uint64; the header, a JSON
object mapping each tensor's name to ``{"dtype", "shape", "data_offsets": [begin, end]}``
(offsets into the data that follows) plus a ``"__metadata__"`` dict of strings; then the
tensors' raw little-endian bytes, back to back. Files written here are read by the
``safetensors`` package (and so by PyTorch users), and files it writes are read here.

A ``BF16`` tensor (bfloat16, which NumPy lacks: most published weights are saved so) is
read as float32, exactly (a bfloat16 is a float32's upper half), so ``fl.loadmodel`` puts it
into a float32 model; fluxml writes no BF16. The float8 dtypes (``F8_E4M3``, ``F8_E5M2``)
are refused by name.

The format has no complex128 (its ``C64`` is complex64): a complex128 tensor is written as
float64 pairs of real and imaginary parts (shape ``x.shape + (2,)``, PyTorch's
``view_as_real``; other programs read that), its name listed in the metadata under
``fluxml.complex128``, and read back as complex128 here.

Writes are atomic: the bytes go to a temporary file in the same folder, are flushed to
disk, and replace the target in one ``os.replace``; a failed write leaves the old file.
Reads check the whole header against the file's size before returning anything, and the
data and the header each against a SHA-256 digest when the writer stored them (fluxml does).

>>> import numpy as np, tempfile, os
>>> from fluxml.io.safetensors import read, write
>>> path = os.path.join(tempfile.mkdtemp(), "t.safetensors")
>>> write(path, {"w": np.arange(3, dtype=np.float32)}, {"note": "hi"})
>>> read(path)
({'w': array([0., 1., 2.], dtype=float32)}, {'note': 'hi'})
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
import stat
from pathlib import Path

import numpy as np

from fluxml._checks import is_int

DTYPES = {
    "BOOL": "|b1", "U8": "|u1", "I8": "|i1", "U16": "<u2", "I16": "<i2", "F16": "<f2",
    "U32": "<u4", "I32": "<i4", "F32": "<f4", "U64": "<u8", "I64": "<i8", "F64": "<f8",
    "C64": "<c8",
}
NAMES = {np.dtype(v).newbyteorder("=") if v[0] == "<" else np.dtype(v): k
         for k, v in DTYPES.items()}
WIDENED = {"BF16": "<u2"}  # read as float32: its bits, the upper half of a float32's
MAX_HEADER = 100 * 1024 * 1024  # read: a larger header is a damaged length
PACKAGE_MAX_HEADER = 100_000_000  # written: the safetensors package refuses larger headers
DIGEST = "fluxml.sha256"
HEADER_DIGEST = "fluxml.header_sha256"  # (of the header less itself: names, shapes, metadata)
COMPLEX128 = "fluxml.complex128"  # the names of the complex128 tensors, written as pairs


class FileFormatError(ValueError):
    """A file is not a valid safetensors file (truncated, corrupted, or another format)."""


def dtype_name(x: np.ndarray, name: str) -> str:
    try:
        return NAMES[x.dtype.newbyteorder("=")]
    except KeyError:
        raise TypeError(f"save: {name} has dtype {x.dtype}, which safetensors cannot hold; "
                        f"it holds {sorted(str(np.dtype(v)) for v in DTYPES.values())}: "
                        f"convert it first (e.g. .astype(np.float64))") from None


def encode(tensors: dict, metadata: dict[str, str] | None = None) -> bytes:
    """The bytes of a safetensors file holding ``tensors`` (name -> array)."""
    header: dict = {}
    chunks, offset = [], 0
    wide = []  # complex128 tensors, written as float64 pairs
    for name, x in tensors.items():
        if not isinstance(name, str):
            raise TypeError(f"save: tensor names must be strings; got {name!r}")
        if name == "__metadata__":  # (the header's metadata was written over it: a file that
            raise ValueError(  # no reader could read, in place of the old one)
                "save: a tensor may not be named '__metadata__', the safetensors header's "
                "own entry; rename the key of that array")
        _unicode(name, "the tensor name")
        x = np.asarray(x)
        if x.dtype.kind == "c" and x.dtype.itemsize == 16:
            x = np.asarray(x, "<c16").copy(order="C")[..., None].view("<f8")
            wide.append(name)
        kind = dtype_name(x, name)
        data = np.ascontiguousarray(x, dtype=np.dtype(DTYPES[kind])).tobytes()
        header[name] = {"dtype": kind, "shape": list(x.shape),
                        "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    body = b"".join(chunks)
    meta = dict(metadata or {})
    if wide:
        meta[COMPLEX128] = json.dumps(wide)
    meta[DIGEST] = hashlib.sha256(body).hexdigest()
    for k, v in meta.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError(f"save: metadata must map strings to strings; got {k!r}: {v!r}")
        _unicode(k, "the metadata key")
        _unicode(v, f"the metadata value of {k!r}")
    header["__metadata__"] = meta
    meta[HEADER_DIGEST] = _header_digest(header)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned, as the package writes
    if len(text) > PACKAGE_MAX_HEADER:  # (written, no reader read it: a checkpoint's
        _too_big(header, len(text))  # history of millions of step losses replaced the last)
    return len(text).to_bytes(8, "little") + text + body


def _unicode(text: str, what: str) -> None:
    """Refuse a string UTF-8 cannot encode (a lone surrogate: ``os.fsdecode`` gives one for
    a file name's undecodable byte). JSON escapes it, so fluxml read it back, but the
    safetensors package refused the whole file ('unexpected end of hex escape')."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ValueError(f"save: {what} {text[:100]!r} is not valid Unicode ({err.reason} "
                         f"at position {err.start}), and safetensors readers refuse a header "
                         f"holding it; rename it. Nothing was written") from None


def _too_big(header: dict, size: int):
    """Refuse a header larger than readers accept, naming its largest part."""
    meta = header["__metadata__"]
    # each part as the header writes it: JSON escapes a control or non-ASCII character in 6
    # to 12 bytes, which counted as 1 to 4 charged the rest to the tensors' names
    parts = {f"the metadata {k!r} takes": len(json.dumps(k)) + len(json.dumps(v)) + 2
             for k, v in meta.items()}
    parts["the tensors' names, dtypes and shapes take"] = size - sum(parts.values())
    part, n = max(parts.items(), key=lambda kv: kv[1])
    raise ValueError(f"save: the file's header would be {size} bytes, more than the "
                     f"{PACKAGE_MAX_HEADER} that safetensors readers accept (the safetensors "
                     f"package's; fluxml's read {MAX_HEADER}), so the file could not be "
                     f"loaded; {part} {n} bytes (a checkpoint's extra: keep large values as "
                     f"NumPy arrays, which are saved as tensors). Nothing was written")


def _header_digest(header: dict) -> str:
    """The SHA-256 of the header in one canonical JSON form, less its own entry: a damaged
    name, shape, dtype or metadata value (a checkpoint's step, its generators' states) that
    still parses is found too, not only damaged tensor data."""
    meta = {k: v for k, v in header.get("__metadata__", {}).items() if k != HEADER_DIGEST}
    text = json.dumps({**header, "__metadata__": meta}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def write(path, tensors: dict, metadata: dict[str, str] | None = None) -> None:
    """Write ``tensors`` (name -> array) and ``metadata`` to ``path`` atomically."""
    atomic_write(path, encode(tensors, metadata))


def atomic_write(path, data: bytes) -> None:
    """Replace ``path`` by ``data`` all at once: a temporary file in the same folder,
    flushed and synced, then ``os.replace`` (atomic on POSIX and Windows). A symbolic link
    is written through, as ``open(path, "wb")`` writes: its target is replaced (replacing
    the link itself left the file it names as it was, silently)."""
    path = Path(path)
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    if not path.parent.is_dir():  # (else the error names the temporary file)
        raise FileNotFoundError(f"save: the folder {path.parent} does not exist; create it "
                                f"first (os.makedirs) or save elsewhere")
    if path.is_dir():
        raise IsADirectoryError(f"save: {path} is a folder; give the path of a file in it")
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    # created with 0o666 less the umask, as open() creates files (mkstemp's 0o600 made every
    # saved model unreadable to the group and others); a file replaced keeps its mode
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(tmp, flags, 0o666)
    except OSError as err:  # (its message named the temporary file, not the folder)
        raise OSError(err.errno, f"save: cannot create a file in the folder {path.parent} "
                                 f"to write {path.name} ({err.strerror}): is the folder "
                                 f"read-only? {path.name} is as it was") from err
    try:
        with os.fdopen(fd, "wb") as f:
            _keep_mode(path, tmp)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable
        dirfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)


def _keep_mode(path: Path, tmp: Path) -> None:
    """Give ``tmp`` the permissions of the file it will replace, if there is one."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return
    os.chmod(tmp, mode)


def read(path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """``(tensors, metadata)`` from a safetensors file; a clear ``FileFormatError`` for a
    truncated or corrupted file."""
    path = Path(path)
    with open(path, "rb") as f:
        raw = f.read()
    return decode(raw, str(path))


def _fail(where: str, what: str):
    raise FileFormatError(f"load: {where} is not a valid safetensors file: {what}")


class _DuplicateKey(Exception):
    pass


def _unique_keys(pairs) -> dict:
    """A JSON object's pairs as a dict, refusing a key given twice: ``json`` keeps the last
    one, and a tensor named twice would then fail later over its bytes, for the wrong
    reason."""
    out = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(repr(key)[:200])
        out[key] = value
    return out


def decode(raw: bytes, where: str = "the data") -> tuple[dict, dict]:
    if len(raw) < 8:
        _fail(where, f"it holds {len(raw)} bytes, fewer than the 8 of the header length")
    n = int.from_bytes(raw[:8], "little")
    if n > MAX_HEADER:
        _fail(where, f"the header length says {n} bytes, more than the {MAX_HEADER} a "
                     f"safetensors header may hold (a damaged length, or not a safetensors "
                     f"file)")
    if 8 + n > len(raw):
        _fail(where, f"the header length says {n} bytes but the file holds {len(raw) - 8} "
                     f"after it (truncated, or not a safetensors file)")
    try:  # (ValueError: an integer of more than 4300 digits; RecursionError: [[[[...]]]])
        header = json.loads(raw[8:8 + n].decode("utf-8"), object_pairs_hook=_unique_keys)
    except _DuplicateKey as err:
        _fail(where, f"its header names {str(err)} twice")
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        _fail(where, f"its header is not valid JSON ({type(err).__name__}: {str(err)[:200]})")
    if not isinstance(header, dict):
        _fail(where, "its header is not a JSON object")
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        _fail(where, "__metadata__ must map strings to strings")
    if HEADER_DIGEST not in meta:
        _damaged_digest_key(meta, where)
    elif _header_digest(header) != meta[HEADER_DIGEST]:
        _fail(where, "its header does not match the SHA-256 digest stored when it was written "
                     "(a tensor's name, dtype, shape or offsets, or a metadata value, was "
                     "damaged or edited)")
    header.pop("__metadata__", None)
    body = memoryview(raw)[8 + n:]
    entries = []
    for name, info in header.items():
        try:
            kind, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
        except (TypeError, KeyError, ValueError):
            _fail(where, f"entry {name!r} lacks dtype, shape or data_offsets: {info!r}")
        if not isinstance(kind, str) or kind not in DTYPES and kind not in WIDENED:
            if isinstance(kind, str) and kind.startswith("F8_"):  # (a valid file: not _fail)
                raise FileFormatError(
                    f"load: {where}: {name} has dtype {kind}, a float8 that NumPy has no "
                    f"dtype for, so fluxml cannot read it; convert the file's tensors to "
                    f"F16, BF16 or F32 first")
            _fail(where, f"{name} has dtype {kind!r}, which NumPy cannot hold here (known: "
                         f"{sorted([*DTYPES, *WIDENED])})")
        if not isinstance(shape, list) or not all(is_int(d) and d >= 0 for d in shape):
            _fail(where, f"{name} has shape {shape!r}, not a list of non-negative ints")
        # (Python's ints: NumPy's int64 product wrapped round, and a shape of 2**32 by 2**32
        # needed 0 bytes)
        size = math.prod(shape) * _stored(kind).itemsize
        if not (is_int(begin) and is_int(end) and 0 <= begin <= end
                and end - begin == size):
            _fail(where, f"{name} ({kind}, shape {shape}) needs {size} bytes but its "
                         f"data_offsets are {[begin, end]}")
        entries.append((begin, end, name, kind, shape))
    order = {name: i for i, name in enumerate(header)}
    entries.sort()
    position = 0
    for begin, end, name, _, _ in entries:
        if begin != position:
            _fail(where, f"the data of {name} starts at byte {begin}, expected {position} "
                         "(tensors must follow each other without gaps or overlaps)")
        position = end
    if position != len(body):
        _fail(where, f"the header declares {position} bytes of tensor data but the file holds "
                     f"{len(body)} ({'truncated' if position > len(body) else 'extra bytes'})")
    digest = meta.get(DIGEST)
    if digest is not None and hashlib.sha256(body).hexdigest() != digest:
        _fail(where, "its tensor data does not match the SHA-256 digest stored when it was "
                     "written (the file is corrupted)")
    tensors = {}
    for begin, end, name, kind, shape in sorted(entries, key=lambda e: order[e[2]]):
        dtype = _stored(kind)
        x = np.frombuffer(body, dtype, (end - begin) // dtype.itemsize, begin)
        # a copy per tensor: writable, aligned, in native byte order
        x = x.astype(dtype.newbyteorder("="), copy=True)
        if kind == "BF16":
            x = (x.astype(np.uint32) << 16).view(np.float32)
        try:
            tensors[name] = x.reshape(shape)
        except (ValueError, OverflowError) as err:  # (an empty tensor of a vast shape)
            _fail(where, f"{name} has shape {shape}, which NumPy cannot hold ({err})")
    _complex128(tensors, meta.get(COMPLEX128), where)
    meta = {k: v for k, v in meta.items() if k not in (DIGEST, HEADER_DIGEST, COMPLEX128)}
    return tensors, meta


def _damaged_digest_key(meta: dict, where: str) -> None:
    """Refuse a header whose digest's own key was damaged (``fluxml.header_sha256`` with a
    letter flipped): read as a file without one, the rest of the header went unchecked, and
    a second flip elsewhere (a tensor's name, a dtype, the complex128 list) loaded silently.
    A flipped bit changes one letter of the key and keeps its length. Only in a file fluxml
    wrote (it holds the data's digest, ``fluxml.sha256``, beside that key): another tool's
    file may hold a key such as ``fluxml.header_sha512`` of its own, and loads."""
    if DIGEST not in meta:
        return
    for key in meta:
        if len(key) == len(HEADER_DIGEST) and \
                sum(a != b for a, b in zip(key, HEADER_DIGEST)) <= 3:
            _fail(where, f"its metadata has the key {key!r} where fluxml writes "
                         f"{HEADER_DIGEST!r}: the header is damaged")


def _stored(kind: str) -> np.dtype:
    """The dtype of a tensor's bytes in the file (BF16's: uint16)."""
    return np.dtype(WIDENED.get(kind) or DTYPES[kind])


def _complex128(tensors: dict, names, where: str) -> None:
    """The tensors listed in the metadata's ``fluxml.complex128`` (float64 pairs) made
    complex128 again, in place of their pairs."""
    if names is None:
        return
    try:
        names = json.loads(names)
    except json.JSONDecodeError:
        names = None
    if not isinstance(names, list):
        _fail(where, f"its metadata {COMPLEX128} is not a JSON list of tensor names")
    for name in names:
        x = tensors.get(name) if isinstance(name, str) else None
        if x is None or x.dtype != np.float64 or x.shape[-1:] != (2,):
            _fail(where, f"its metadata {COMPLEX128} lists {name!r}, which is not a float64 "
                         f"tensor of pairs (last axis of length 2)")
        tensors[name] = x.view(np.complex128).reshape(x.shape[:-1])
