"""examples/encrypted_digits.py on a small setting (the full run is the demo)."""

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("tenseal")

ROOT = Path(__file__).resolve().parents[2]


def test_encrypted_digits_example_classifies_as_in_plaintext(capsys):
    spec = importlib.util.spec_from_file_location("encrypted_digits",
                                                  ROOT / "examples" / "encrypted_digits.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    assert example.main(epochs=3, images=16, target=0.5) == 0
    out = capsys.readouterr().out
    assert "encrypted accuracy" in out and out.rstrip().endswith("OK")
