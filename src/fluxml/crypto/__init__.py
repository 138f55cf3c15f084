"""Encrypted inference: run a trained model on CKKS-encrypted inputs (TenSEAL underneath).

The client compiles nothing secret: ``plan = fl.crypto.compile(model, input_shape)`` is
public, ``keys = plan.keygen()`` stays with the client, which sends ciphertexts
(``keys.encrypt(x).serialize()``) and the public context (``keys.public_context()``); the
server answers with ``plan.run(ct)``; only the client can decrypt. A batch travels one
ciphertext per feature (throughput); one input, where the plan allows it, packed for its
first affine step (latency; ``keys.encrypt(x, layout=...)`` chooses, see ``keys``). TenSEAL
is imported only when keys are made or ciphertexts loaded (``pip install 'fluxml[crypto]'``).
"""

from fluxml.crypto.keys import CryptoError, EncryptedTensor, Keys, PublicContext
from fluxml.crypto.lower import UnsupportedLayer
from fluxml.crypto.params import CKKSParams, DepthError
from fluxml.crypto.plan import Plan, compile

__all__ = [
    "CKKSParams", "CryptoError", "DepthError", "EncryptedTensor", "Keys", "Plan",
    "PublicContext", "UnsupportedLayer", "compile",
]
