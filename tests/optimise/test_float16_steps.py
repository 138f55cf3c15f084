"""The rules' steps on float16 parameters against the same steps in float64 (whose values
tests/optimise/test_rules.py checks against the update equations)."""

import numpy as np
import pytest

import fluxml as fl

# gradients: small ones, whose squares underflow float16 (its smallest number is 6e-8), a
# moderate one, and zero
GRADIENTS = np.array([1e-4, -3e-3, 0.5, 0.0])


@pytest.mark.parametrize("rule", [fl.Adam(0.01), fl.NAdam(0.01), fl.AMSGrad(0.01),
                                  fl.OAdam(0.01), fl.RMSProp(0.01), fl.AdaGrad(0.05),
                                  fl.RMSProp(0.01, centred=True), fl.AdamW(0.01)],
                         ids=repr)
def test_an_underflowed_second_moment_gives_no_huge_step(rule):
    """Where a gradient's square rounded to 0 in float16, the rules divided the first moment
    (or the gradient) by epsilon alone: a weight moved by 20 to 300 where float64 moves it
    by 0.01 (NAdam, AMSGrad, OAdam, RMSProp, AdaGrad; Adam only where epsilon times its bias
    correction rounded to 0). Such a step is now 0 (it vanishes, as float16 steps below a
    weight's spacing do); the others follow float64's."""
    steps = {}
    for dtype in (np.float16, np.float64):
        model = {"w": np.array([0.5, -0.5, 0.25, 0.1], dtype)}
        state = fl.setup(rule, model)
        for _ in range(3):
            fl.update(state, model, {"w": GRADIENTS.astype(dtype)})
        steps[dtype] = model["w"].astype(np.float64) - np.array([0.5, -0.5, 0.25, 0.1],
                                                                 dtype).astype(np.float64)
    got, want = steps[np.float16], steps[np.float64]
    assert np.all(np.isfinite(got))
    spacing = 2 * np.spacing(np.float16(0.5))
    assert np.all(np.abs(got) <= 2 * np.abs(want) + spacing), (got, want)
    np.testing.assert_allclose(got[2], want[2], rtol=0.05)  # the moderate gradient
