"""A checkpoint's ``extra``: plain Python values kept in JSON text, exactly.

JSON has one kind of sequence, string keys only, no NaN and no NumPy numbers: through plain
``json`` a tuple came back a list and ``{1: "a"}`` came back ``{"1": "a"}``. So what JSON
holds as it is (``None``, ``bool``, ``int``, finite ``float``, ``str``, lists, dicts with
string keys) is written as it is, readable; the rest that can come back exactly is written
as a tagged object:

==================================================  =========================================
value                                               written as
==================================================  =========================================
a tuple                                             ``{"__fluxml__": "tuple", "items": [...]}``
a dict with a key that is not a string (or is       ``{"__fluxml__": "dict",
the tag itself)                                     "items": [[key, value], ...]}``
``nan``, ``inf``, ``-inf``                          ``{"__fluxml__": "float", "value": "nan"}``
a NumPy number (``np.float32(0.5)``, ``np.int64``,  ``{"__fluxml__": "numpy", "dtype": "<f4",
``np.bool_``, complex)                              "bytes": hex}``: its dtype and bits
a NumPy array of a dtype safetensors holds (bool,    ``{"__fluxml__": "array", "index": 0}``:
integers, float16/32/64, complex64), where the       the ``index``-th of the arrays, which the
caller collects them (a checkpoint: its tensors)     checkpoint keeps as its tensors
==================================================  =========================================

Everything else is refused when saving, by its place in ``extra``: sets, objects, arrays of
other dtypes (or where no tensors are kept), and subclasses (a namedtuple, an enum, an
``OrderedDict``, ``np.matrix``) that would come back as their base type. Values come back
equal and of the same type; objects that appeared twice come back as two equal copies.
Nothing is unpickled. (Arrays are there for the weights a callback keeps across a resume,
``EarlyStopping``'s best epoch's, which belong to neither the model nor the optimiser.)

>>> import numpy as np
>>> text = dumps({"best": (3, np.float32(0.25)), 7: float("nan")}, "extra")
>>> loads(text)
{'best': (3, np.float32(0.25)), 7: nan}
>>> arrays = []
>>> text = dumps({"w": np.ones(2, np.float32)}, "extra", arrays)
>>> text, loads(text, arrays)
('{"w": {"__fluxml__": "array", "index": 0}}', {'w': array([1., 1.], dtype=float32)})
"""

from __future__ import annotations

import json
import math

import numpy as np

from fluxml.io import safetensors

TAG = "__fluxml__"
MAX_DEPTH = 100  # (deeper, json and the decoder may meet Python's recursion limit at load)
NUMBERS = "biufc"  # NumPy kinds kept: bool, signed, unsigned, float, complex
PLAIN = (type(None), bool, int, str)
HOLDS = ("extra holds None, bool, int, float, str, NumPy numbers, and lists, tuples and "
         "dicts of these")


def dumps(value: dict, where: str, arrays: list | None = None) -> str:
    """The JSON text of ``value``; raises ``TypeError`` (``ValueError`` for a circular or
    too deep one) naming the place ``where[...]`` of what cannot come back exactly. Arrays
    are appended to ``arrays`` (refused where it is None) and written as their index."""
    return json.dumps(_encode(value, where, set(), 0, arrays), allow_nan=False)


def _encode(x, where: str, seen: set, depth: int, arrays: list | None):
    t = type(x)
    if t in PLAIN:
        return x
    if t is float:
        return x if math.isfinite(x) else {TAG: "float", "value": repr(x)}
    if isinstance(x, np.generic) and x.dtype.kind in NUMBERS:
        return {TAG: "numpy", "dtype": x.dtype.str, "bytes": x.tobytes().hex()}
    if t is np.ndarray and arrays is not None and \
            x.dtype.newbyteorder("=") in safetensors.NAMES:
        arrays.append(x)
        return {TAG: "array", "index": len(arrays) - 1}
    if t not in (list, tuple, dict):
        raise TypeError(f"{where}: {_refusal(x, arrays)}")
    if id(x) in seen:
        raise ValueError(f"{where}: holds itself (a circular reference); {HOLDS}")
    if depth >= MAX_DEPTH:
        raise ValueError(f"{where}: nested more than {MAX_DEPTH} deep; keep extra shallower")
    seen.add(id(x))
    if t is dict:
        items = [(_encode(k, f"{where} (the key {k!r})", seen, depth + 1, None),
                  _encode(v, f"{where}[{k!r}]", seen, depth + 1, arrays))
                 for k, v in x.items()]
        plain = all(type(k) is str and k != TAG for k in x)
        out = dict(items) if plain else {TAG: "dict", "items": [list(kv) for kv in items]}
    else:
        out = [_encode(v, f"{where}[{i}]", seen, depth + 1, arrays) for i, v in enumerate(x)]
        out = out if t is list else {TAG: "tuple", "items": out}
    seen.discard(id(x))
    return out


def _refusal(x, arrays) -> str:
    name = f"{type(x).__module__}.{type(x).__qualname__}".removeprefix("builtins.")
    if type(x) is np.ndarray and arrays is None:
        return (f"an array ({x.shape}, {x.dtype}), which extra does not hold here (a key "
                f"is no place for one): convert it, x.tolist() or x.item()")
    if type(x) is np.ndarray:
        return (f"an array of dtype {x.dtype}, which a checkpoint cannot hold (safetensors "
                f"holds bool, integers, float16/32/64 and complex64): convert it first, "
                f"x.astype(...)")
    if isinstance(x, np.ndarray):
        return (f"a {name}, a subclass of numpy.ndarray that would come back as a plain "
                f"array; convert it first: np.asarray(x)")
    if isinstance(x, np.generic):
        return f"a {name}, which extra does not hold ({HOLDS}); convert it first: x.item()"
    for base in (tuple, dict, list, float, int, str):  # (bool is a final class)
        if isinstance(x, base):
            hint = " or x._asdict()" if hasattr(x, "_fields") else ""
            return (f"a {name}, a subclass of {base.__name__} that would come back as a "
                    f"plain {base.__name__}; convert it first: {base.__name__}(x){hint}")
    return f"a {name}, which extra does not hold ({HOLDS}); convert it first"


def loads(text: str, arrays=()):
    """The value :func:`dumps` wrote, its arrays taken from ``arrays`` (a sequence, or a
    dict of index -> array), copied; ``ValueError`` for text it did not write."""
    return _decode(json.loads(text), arrays)


def _decode(x, arrays):
    if isinstance(x, list):
        return [_decode(v, arrays) for v in x]
    if not isinstance(x, dict):
        return x
    if TAG not in x:
        return {k: _decode(v, arrays) for k, v in x.items()}
    kind, keys = x[TAG], sorted(x)
    if kind in ("tuple", "dict") and keys == [TAG, "items"] and isinstance(x["items"], list):
        items = [_decode(v, arrays) for v in x["items"]]
        if kind == "tuple":
            return tuple(items)
        if all(isinstance(kv, list) and len(kv) == 2 for kv in items):
            try:
                return dict(items)
            except TypeError:  # (an unhashable key)
                pass
    elif kind == "float" and keys == [TAG, "value"] and x["value"] in ("nan", "inf", "-inf"):
        return float(x["value"])
    elif kind == "numpy" and keys == [TAG, "bytes", "dtype"]:
        try:
            dtype, data = np.dtype(x["dtype"]), bytes.fromhex(x["bytes"])
            if dtype.kind in NUMBERS and len(data) == dtype.itemsize:
                return np.frombuffer(data, dtype)[0]
        except (TypeError, ValueError, IndexError):
            pass
    elif kind == "array" and keys == [TAG, "index"] and type(x["index"]) is int \
            and x["index"] >= 0:
        try:
            return np.array(arrays[x["index"]], copy=True)
        except (IndexError, KeyError):
            raise ValueError(f"the array {x['index']} is not in the file") from None
    raise ValueError(f"not a value fluxml wrote: {json.dumps(x)[:200]}")
