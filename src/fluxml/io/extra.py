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
==================================================  =========================================

Everything else is refused when saving, by its place in ``extra``: arrays (they belong in the
model or optimiser state), sets, objects, and subclasses (a namedtuple, an enum, an
``OrderedDict``) that would come back as their base type. Values come back equal and of the
same type; objects that appeared twice come back as two equal copies. Nothing is unpickled.

>>> import numpy as np
>>> text = dumps({"best": (3, np.float32(0.25)), 7: float("nan")}, "extra")
>>> loads(text)
{'best': (3, np.float32(0.25)), 7: nan}
"""

from __future__ import annotations

import json
import math

import numpy as np

TAG = "__fluxml__"
MAX_DEPTH = 100  # (deeper, json and the decoder may meet Python's recursion limit at load)
NUMBERS = "biufc"  # NumPy kinds kept: bool, signed, unsigned, float, complex
PLAIN = (type(None), bool, int, str)
HOLDS = ("extra holds None, bool, int, float, str, NumPy numbers, and lists, tuples and "
         "dicts of these")


def dumps(value: dict, where: str) -> str:
    """The JSON text of ``value``; raises ``TypeError`` (``ValueError`` for a circular or
    too deep one) naming the place ``where[...]`` of what cannot come back exactly."""
    return json.dumps(_encode(value, where, set(), 0), allow_nan=False)


def _encode(x, where: str, seen: set, depth: int):
    t = type(x)
    if t in PLAIN:
        return x
    if t is float:
        return x if math.isfinite(x) else {TAG: "float", "value": repr(x)}
    if isinstance(x, np.generic) and x.dtype.kind in NUMBERS:
        return {TAG: "numpy", "dtype": x.dtype.str, "bytes": x.tobytes().hex()}
    if t not in (list, tuple, dict):
        raise TypeError(f"{where}: {_refusal(x)}")
    if id(x) in seen:
        raise ValueError(f"{where}: holds itself (a circular reference); {HOLDS}")
    if depth >= MAX_DEPTH:
        raise ValueError(f"{where}: nested more than {MAX_DEPTH} deep; keep extra shallower")
    seen.add(id(x))
    if t is dict:
        items = [(_encode(k, f"{where} (the key {k!r})", seen, depth + 1),
                  _encode(v, f"{where}[{k!r}]", seen, depth + 1)) for k, v in x.items()]
        plain = all(type(k) is str and k != TAG for k in x)
        out = dict(items) if plain else {TAG: "dict", "items": [list(kv) for kv in items]}
    else:
        out = [_encode(v, f"{where}[{i}]", seen, depth + 1) for i, v in enumerate(x)]
        out = out if t is list else {TAG: "tuple", "items": out}
    seen.discard(id(x))
    return out


def _refusal(x) -> str:
    name = f"{type(x).__module__}.{type(x).__qualname__}".removeprefix("builtins.")
    if isinstance(x, np.ndarray):
        return (f"an array ({x.shape}, {x.dtype}), which extra does not hold: save arrays in "
                f"the model or the optimiser state, or convert: x.tolist() or x.item()")
    if isinstance(x, np.generic):
        return f"a {name}, which extra does not hold ({HOLDS}); convert it first: x.item()"
    for base in (tuple, dict, list, float, int, str):  # (bool is a final class)
        if isinstance(x, base):
            hint = " or x._asdict()" if hasattr(x, "_fields") else ""
            return (f"a {name}, a subclass of {base.__name__} that would come back as a "
                    f"plain {base.__name__}; convert it first: {base.__name__}(x){hint}")
    return f"a {name}, which extra does not hold ({HOLDS}); convert it first"


def loads(text: str):
    """The value :func:`dumps` wrote; ``ValueError`` for text it did not write."""
    return _decode(json.loads(text))


def _decode(x):
    if isinstance(x, list):
        return [_decode(v) for v in x]
    if not isinstance(x, dict):
        return x
    if TAG not in x:
        return {k: _decode(v) for k, v in x.items()}
    kind, keys = x[TAG], sorted(x)
    if kind in ("tuple", "dict") and keys == [TAG, "items"] and isinstance(x["items"], list):
        items = [_decode(v) for v in x["items"]]
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
    raise ValueError(f"not a value fluxml wrote: {json.dumps(x)[:200]}")
