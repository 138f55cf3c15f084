"""Keys, contexts and encrypted tensors: what the client and the server each hold.

The client makes ``Keys`` (a TenSEAL CKKS context with the secret key), encrypts inputs and
decrypts outputs. It sends the server ``keys.public_context()``: the same context without the
secret key (the public and relinearisation keys only), which is all the server needs to
compute on ciphertexts. Every piece turns into bytes and back; nothing is pickled.

Layouts of an ``EncryptedTensor``:

- ``"batch"``: a batch ``(B, *shape)`` is one CKKS ciphertext per feature, each holding that
  feature for all B inputs in its slots. Affine layers then need only multiplications by
  plain numbers and additions (no rotations, so no Galois keys), and one pass serves up to
  ``slots`` inputs at once: the layout for throughput.
- ``"packed"``: one input, packed for the plan's first affine step im2col-style: ciphertext k
  holds, in slot o, the input feature that output o's k-th nonzero weight multiplies (the
  client knows the plan's sparsity pattern, never its weights). The first affine step is then
  K products by plain vectors; its output is one ciphertext with every feature in its slots
  (``"vector"``), which polynomials act on whole and a later affine step turns into one
  ciphertext per output with ``dot`` (rotations: Galois keys, made on the client the first
  time it encrypts in this layout). The layout for latency; its rotations add key-switching
  noise (examples/encrypted_digits.py's network with random weights: logits 4e-05 off
  where the batch layout's are 1e-06 off).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import struct
import uuid

import numpy as np

from fluxml.crypto.params import CKKSParams

_MAGIC_KEYS, _MAGIC_CTX, _MAGIC_CT = b"FLXKEY1\n", b"FLXCTX1\n", b"FLXENC1\n"


class CryptoError(ValueError):
    """A ciphertext, context or input that does not fit what it is used with."""


def tenseal():
    """The TenSEAL module, imported on first use (``pip install 'fluxml[crypto]'``)."""
    try:
        import tenseal as ts
    except ImportError as err:
        raise ImportError("fluxml.crypto needs TenSEAL: pip install 'fluxml[crypto]' "
                          "(or pip install tenseal)") from err
    return ts


def _pack(magic: bytes, header: dict, blobs: list[bytes]) -> bytes:
    header = dict(header, sizes=[len(b) for b in blobs])
    text = json.dumps(header).encode()
    return b"".join([magic, struct.pack("<Q", len(text)), text, *blobs])


def _unpack(data: bytes, magic: bytes, what: str, fields: tuple, count: int | None = 1):
    """The header and the blobs of bytes made by ``_pack``; a CryptoError where they are not
    those of a ``what`` (the header must hold ``fields``, and ``count`` blobs where given)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"{what}: expected bytes; got {type(data).__name__}")
    data = bytes(data)
    if not data.startswith(magic) or len(data) < len(magic) + 8:
        raise CryptoError(f"these bytes are not a serialized {what}")
    (n,) = struct.unpack("<Q", data[len(magic):len(magic) + 8])
    start = len(magic) + 8
    try:
        header = json.loads(data[start:start + n])
    except ValueError as err:
        raise CryptoError(f"the {what}'s header is damaged: {err}") from None
    # (a damaged header failed with a TypeError or a KeyError from the reading code)
    sizes = header.get("sizes") if isinstance(header, dict) else None
    missing = [f for f in fields if f not in header] if isinstance(header, dict) else fields
    if not (isinstance(sizes, list) and all(type(k) is int and k >= 0 for k in sizes)) or \
            missing or (count is not None and len(sizes) != count):
        raise CryptoError(f"the {what}'s header is damaged: it needs the fields "
                          f"{['sizes', *fields]} ({count or 'some'} blob sizes); got "
                          f"{str(header)[:200]}")
    blobs, pos = [], start + n
    for size in sizes:
        blobs.append(data[pos:pos + size])
        pos += size
    if pos != len(data):
        raise CryptoError(f"the {what} is truncated or has trailing bytes "
                          f"({len(data)} bytes, expected {pos})")
    return header, blobs


class PublicContext:
    """The server's view of a client's keys: a CKKS context without the secret key."""

    def __init__(self, context, key_id: str, params: CKKSParams):
        self.context = context
        self.key_id = key_id
        self.params = params

    def serialize(self) -> bytes:
        blob = self.context.serialize(save_secret_key=False,
                                      save_galois_keys=self.context.has_galois_keys())
        return _pack(_MAGIC_CTX, {"key_id": self.key_id, "params": list(self.params)}, [blob])

    @classmethod
    def load(cls, data: bytes) -> PublicContext:
        header, (blob,) = _unpack(data, _MAGIC_CTX, "public context", ("key_id", "params"))
        context = tenseal().context_from(blob)
        if context.has_secret_key():
            raise CryptoError("this 'public' context holds a secret key; the server must "
                              "never receive one")
        return cls(context, header["key_id"], CKKSParams(*header["params"]))

    def __repr__(self) -> str:
        p = self.params
        return (f"PublicContext(degree={p.poly_modulus_degree}, depth={p.depth}, "
                f"scale=2^{p.scale_bits}, key_id={self.key_id[:8]})")


class Keys(PublicContext):
    """The client's keys: encrypt inputs, decrypt outputs, hand out the public context.

    Made by ``plan.keygen()``; ``serialize()`` includes the secret key: keep those bytes
    private."""

    def __init__(self, params: CKKSParams, input_shape: tuple, context=None, key_id=None,
                 packing=None, prefer_packed: bool = False):
        ts = tenseal()
        if context is None:
            context = ts.context(ts.SCHEME_TYPE.CKKS,
                                 poly_modulus_degree=params.poly_modulus_degree,
                                 coeff_mod_bit_sizes=list(params.coeff_mod_bit_sizes))
            context.global_scale = 2.0 ** params.scale_bits
        super().__init__(context, key_id or uuid.uuid4().hex, params)
        self.input_shape = tuple(input_shape)
        # (K, O) input-feature indices of the plan's first affine step (-1: no weight there),
        # or None where the plan cannot take the packed layout; prefer_packed: the plan's
        # cost estimate says one input runs faster packed.
        self.packing = None if packing is None else np.asarray(packing, dtype=np.int64)
        self.prefer_packed = bool(prefer_packed and packing is not None)

    def public_context(self) -> PublicContext:
        """What the server gets: the same context, without the secret key."""
        public = self.context.copy()
        public.make_context_public()
        return PublicContext(public, self.key_id, self.params)

    def encrypt(self, x, layout: str | None = None) -> EncryptedTensor:
        """Encrypt a batch ``(B, *input_shape)`` (or one input ``input_shape``).

        ``layout``: ``"batch"`` (one ciphertext per feature, the inputs in the slots),
        ``"packed"`` (one input, packed for the plan's first affine step; makes Galois keys
        the first time, so call ``public_context()`` after it), or None: packed for one input
        where the plan's estimate says it is faster, batch otherwise."""
        x = np.asarray(x)
        if x.dtype.kind not in "biuf":
            raise CryptoError(f"encrypt expects real numbers; got an array of {x.dtype}")
        x = x.astype(np.float64, copy=False)
        if not np.isfinite(x).all():
            raise CryptoError("encrypt expects finite inputs; got NaN or infinity at "
                              f"{tuple(int(i) for i in np.argwhere(~np.isfinite(x))[0])}")
        single = x.shape == self.input_shape
        batch = x[None] if single else x
        if batch.shape[1:] != self.input_shape:
            raise CryptoError(f"encrypt expects inputs of shape (B, {_dims(self.input_shape)}) "
                              f"or {self.input_shape}; got {x.shape}")
        if not 1 <= len(batch) <= self.params.slots:
            raise CryptoError(f"encrypt takes 1 to {self.params.slots} inputs at once (the "
                              f"ciphertext's slots); got {len(batch)}")
        if layout is None:
            layout = "packed" if len(batch) == 1 and self.prefer_packed else "batch"
        if layout == "packed":
            return self._encrypt_packed(batch, single)
        if layout != "batch":
            raise ValueError(f"encrypt: layout must be 'batch', 'packed' or None; got {layout!r}")
        ts = tenseal()
        columns = batch.reshape(len(batch), -1).T
        vectors = [_vector(ts, self.context, col, self.params) for col in columns]
        return EncryptedTensor(vectors, self.input_shape, len(batch), self.key_id, single)

    def _encrypt_packed(self, batch, single) -> EncryptedTensor:
        if self.packing is None:
            raise CryptoError("these keys' plan cannot take the packed layout (it does not "
                              "start with an affine step that fits one ciphertext); use "
                              "layout='batch'")
        if len(batch) != 1:
            raise CryptoError(f"the packed layout takes one input at a time; got {len(batch)} "
                              f"(use layout='batch' for several)")
        ts = tenseal()
        if not self.context.has_galois_keys():  # dot's rotations need them (once per keys)
            self.context.generate_galois_keys()
        flat = batch.reshape(-1)
        rows = np.where(self.packing >= 0, flat[np.maximum(self.packing, 0)], 0.0)
        vectors = [_vector(ts, self.context, row, self.params) for row in rows]
        return EncryptedTensor(vectors, self.input_shape, 1, self.key_id, single, "packed",
                               packing=packing_id(self.packing))

    def decrypt(self, ct: EncryptedTensor) -> np.ndarray:
        """The plain values of ``ct``: ``(B, *shape)``, or ``shape`` for a single input."""
        if not isinstance(ct, EncryptedTensor):
            raise TypeError(f"decrypt expects an EncryptedTensor; got {type(ct).__name__}")
        if ct.key_id != self.key_id:
            raise CryptoError(f"this ciphertext was made under other keys (key id "
                              f"{ct.key_id[:8]}, these keys are {self.key_id[:8]})")
        key = self.context.secret_key()
        factors = ct.factors or [1.0] * len(ct.vectors)
        if ct.layout == "vector":  # one input, every feature in the slots of one ciphertext
            values = np.array(ct.vectors[0].decrypt(key)[:math.prod(ct.shape)]) / factors[0]
            out = values.reshape((1,) + ct.shape)
        elif ct.layout == "batch":
            columns = [np.array(v.decrypt(key)[:ct.batch]) / f
                       for v, f in zip(ct.vectors, factors)]
            out = np.array(columns, dtype=np.float64).T.reshape((ct.batch,) + ct.shape)
        else:
            raise CryptoError("decrypt: this is a packed input, not a result; run the plan on "
                              "it first")
        return out[0] if ct.single else out

    def serialize(self) -> bytes:
        """The keys with the secret key, for the client's own storage. Without Galois keys
        (twenty times the rest at degree 8192): the packed layout remakes them from the secret
        key when it is next used, and the server then needs the new ``public_context()``."""
        blob = self.context.serialize(save_secret_key=True, save_galois_keys=False)
        header = {"key_id": self.key_id, "params": list(self.params),
                  "input_shape": list(self.input_shape), "prefer_packed": self.prefer_packed,
                  "packing": None if self.packing is None else self.packing.tolist()}
        return _pack(_MAGIC_KEYS, header, [blob])

    @classmethod
    def load(cls, data: bytes) -> Keys:
        header, (blob,) = _unpack(data, _MAGIC_KEYS, "key set",
                                    ("key_id", "params", "input_shape"))
        context = tenseal().context_from(blob)
        return cls(CKKSParams(*header["params"]), tuple(header["input_shape"]), context,
                   header["key_id"], header.get("packing"), header.get("prefer_packed", False))

    def __repr__(self) -> str:
        return "Keys" + super().__repr__()[len("PublicContext"):]


def _vector(ts, context, values, params):
    """One CKKS ciphertext of ``values``; TenSEAL's bare 'encoded values are too large' (an
    input near 1e30) said as encrypt's."""
    try:
        return ts.ckks_vector(context, values.tolist())
    except ValueError as err:
        if "too large" not in str(err):
            raise
        bits = params.coeff_mod_bit_sizes[0] - params.scale_bits - 1
        raise CryptoError(f"encrypt: inputs up to {float(np.abs(values).max()):.3g} in size "
                          f"are too large to encode at scale 2^{params.scale_bits} (TenSEAL: "
                          f"{err}); inputs and every step's results must stay below 2^{bits} "
                          f"in size: scale the data down") from None


def packing_id(pattern) -> str:
    """A short digest of a packed layout's pattern: a packed input carries it, so that a plan
    whose first step has another pattern (of the same size) refuses it."""
    pattern = np.ascontiguousarray(pattern, dtype=np.int64)
    return hashlib.sha256(repr(pattern.shape).encode() + pattern.tobytes()).hexdigest()[:16]


def _dims(shape) -> str:
    return ", ".join(map(str, shape))


LAYOUTS = ("batch", "packed", "vector")


class EncryptedTensor:
    """Encrypted inputs or outputs in one of the ``LAYOUTS`` (see the module's docstring)."""

    def __init__(self, vectors: list, shape: tuple, batch: int, key_id: str, single=False,
                 layout: str = "batch", packing: str | None = None, factors=None):
        if layout not in LAYOUTS:
            raise ValueError(f"EncryptedTensor: layout must be one of {LAYOUTS}; got {layout!r}")
        if factors is not None and (not isinstance(factors, list)
                                    or len(factors) != len(vectors) or not all(
                isinstance(f, float) and math.isfinite(f) and f > 0 for f in factors)):
            raise CryptoError(f"EncryptedTensor: factors must be one positive float per "
                              f"ciphertext ({len(vectors)}); got {factors!r}")
        self.vectors = vectors
        self.shape = tuple(shape)
        self.batch = batch
        self.key_id = key_id
        self.single = single
        self.layout = layout
        self.packing = packing  # packed layout: packing_id of the pattern it was packed for
        # what each ciphertext's decrypted values are multiplied by (a plan's result ending in
        # squares keeps the factor of TenSEAL's rescaling, crypto/evaluate.py): decrypt
        # divides it out
        self.factors = factors

    def serialize(self) -> bytes:
        header = {"shape": list(self.shape), "batch": self.batch, "key_id": self.key_id,
                  "single": self.single, "layout": self.layout, "packing": self.packing,
                  "factors": self.factors}
        return _pack(_MAGIC_CT, header, [v.serialize() for v in self.vectors])

    @classmethod
    def load(cls, data: bytes, context: PublicContext) -> EncryptedTensor:
        """Read a ciphertext made under ``context``'s keys (a Keys or a PublicContext)."""
        header, blobs = _unpack(data, _MAGIC_CT, "encrypted tensor",
                                ("shape", "batch", "key_id", "single"), count=None)
        if not isinstance(context, PublicContext):  # (AttributeError 'key_id')
            raise TypeError(f"EncryptedTensor.load: context must be a PublicContext or Keys "
                            f"(PublicContext.load(bytes) on the server); got "
                            f"{type(context).__name__}")
        if header["key_id"] != context.key_id:
            raise CryptoError(f"this ciphertext was made under other keys (key id "
                              f"{header['key_id'][:8]}; the context given is "
                              f"{context.key_id[:8]}): load it with the context of the keys "
                              f"that encrypted it")
        layout = header.get("layout", "batch")
        expected = {"batch": math.prod(header["shape"]), "vector": 1}.get(layout, len(blobs))
        if len(blobs) != expected or not blobs:
            raise CryptoError(f"the encrypted tensor is damaged: {len(blobs)} ciphertexts "
                              f"for shape {tuple(header['shape'])} in the {layout} layout")
        ts = tenseal()
        vectors = [ts.ckks_vector_from(context.context, b) for b in blobs]
        return cls(vectors, tuple(header["shape"]), header["batch"], header["key_id"],
                   header["single"], layout, header.get("packing"), header.get("factors"))

    @property
    def nbytes(self) -> int:
        """Size of the serialized ciphertexts."""
        return len(self.serialize())

    def __repr__(self) -> str:
        return (f"EncryptedTensor(batch={self.batch}, shape={self.shape}, "
                f"{len(self.vectors)} ciphertexts, layout={self.layout!r})")


def save_arrays(arrays: dict) -> bytes:
    """Arrays as the bytes of an .npz file (read back without pickle)."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def load_arrays(data: bytes) -> dict:
    with np.load(io.BytesIO(data), allow_pickle=False) as f:
        return {k: f[k] for k in f.files}
