"""Every registered rule has a test case: a rule added without one fails here."""

import importlib

import pytest

from fluxml.ad.core import FUNCTIONS, UFUNCS

MODULES = ["elementwise", "special", "reductions", "shape", "linalg", "indexing"]


def _covered():
    covered = set()
    for name in MODULES:
        try:
            module = importlib.import_module(f"tests.ad.rules.test_{name}")
        except pytest.skip.Exception:  # scipy missing: its rules are never registered
            continue
        covered.update(case[0] for case in module.CASES)
    return covered


def test_every_registered_rule_has_a_case():
    covered = _covered()
    missing = sorted(getattr(f, "__name__", repr(f)) for f in list(UFUNCS) + list(FUNCTIONS)
                     if f not in covered)
    assert not missing, f"rules without a test case in any CASES table: {missing}"
