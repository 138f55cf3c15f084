"""A check the rule tests share: a function fails under a transform exactly as NumPy's."""

import pytest

import fluxml as fl


def raises_as_numpy(error, f, *args):
    """``f(*args)`` raises ``error`` on plain arrays, and under ``fl.pullback`` the same error
    with the same message (NumPy's own, not one of fluxml's)."""
    with pytest.raises(error) as want:
        f(*args)
    with pytest.raises(error) as got:
        fl.pullback(f, *args)
    assert str(got.value) == str(want.value)
