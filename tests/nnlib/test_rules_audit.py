"""A small seeded run of rules_audit.py (the adversarial audit of the fused primitives'
hand-written rules): forward mode against differences and against reverse mode, the
first-order fast path against the any-order one, Hessian-vector products three ways,
awkward layouts (strided, reversed, Fortran-ordered, broadcast inputs), float32, None
cotangents, tied inputs, pullbacks kept and called again, and nothing returned sharing a
buffer that a later call reuses. Run the script by hand for big runs."""

import pytest

from tests.nnlib import rules_audit


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("family", rules_audit.FAMILIES + rules_audit.BIG,
                         ids=lambda f: f.__name__)
def test_fused_rules_audit(family):
    assert rules_audit.run(4, 2026, [family], verbose=False) == []
