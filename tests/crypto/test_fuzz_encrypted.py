"""The short run of the encrypted-inference fuzzer (``tests/crypto/fuzz_encrypted.py``): random
models of affine layers and polynomial activations, encrypted in the batch or packed layout,
decrypted, against the model in plain float64."""

import pytest

pytest.importorskip("tenseal")

from tests.crypto import fuzz_encrypted as fz  # noqa: E402


@pytest.mark.parametrize("seed", [106, 113, 122, 125])
def test_random_models_encrypted_match_plain(seed):
    message, desc, outcome = fz.check(seed)
    assert message is None, f"{desc}\n{message}"
    assert outcome.startswith("ok"), outcome
