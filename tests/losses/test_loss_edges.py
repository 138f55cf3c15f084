"""Edge cases found by an audit against PyTorch and Flux: the class axis, integer one-hot
targets, probabilities of exactly 0 and 1 in the focal losses, and the CTC loss's settings.
Each test fails on the code before its fix."""

import numpy as np
import pytest

import fluxml as fl

PROBS = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4]])
LABELS = np.array([0, 0, 1])


@pytest.mark.parametrize("loss", [fl.crossentropy, fl.logitcrossentropy, fl.focal_loss,
                                  fl.kldivergence])
@pytest.mark.parametrize("axis", [2, -3, 1.0, None])
def test_an_axis_the_prediction_lacks_is_refused(loss, axis):
    """axis=2 on a (3, 3) prediction with integer labels was taken as axis 0 (2 % 2), so the
    loss picked each label down a column, silently; now refused, naming the loss."""
    y = np.eye(3)[LABELS] if loss is fl.kldivergence else LABELS
    with pytest.raises(np.exceptions.AxisError,
                       match=rf"{loss.__name__}: axis \(the class axis\) must be an int in "
                             rf"\[-2, 2\) for a prediction of shape \(3, 3\); got {axis}"):
        loss(PROBS, y, axis=axis)


def test_crossentropy_along_axis_0_is_the_transposed_loss():
    by_hand = -np.mean(np.log(PROBS[LABELS, np.arange(3)] + np.finfo(float).eps))
    assert fl.crossentropy(PROBS, LABELS, axis=0) == pytest.approx(by_hand, rel=1e-12)
    assert fl.crossentropy(PROBS, LABELS, axis=-2) == pytest.approx(by_hand, rel=1e-12)


@pytest.mark.parametrize("loss", [fl.crossentropy, fl.logitcrossentropy, fl.focal_loss])
def test_integer_onehot_targets_are_targets(loss):
    """One-hot targets of an integer dtype (Flux's Int matrices, fl.onehotbatch(...,
    dtype=int)) were read as class labels and refused ("integer labels must have the
    prediction's shape without its class axis"); they are one-hot rows, as float ones."""
    onehot = np.eye(3, dtype=np.int64)[LABELS]
    for agg in ("mean", "sum", "none"):
        np.testing.assert_allclose(loss(PROBS, onehot, agg=agg),
                                   loss(PROBS, onehot.astype(float), agg=agg), rtol=1e-15)
        np.testing.assert_allclose(loss(PROBS, onehot, agg=agg),
                                   loss(PROBS, LABELS, agg=agg), rtol=1e-12)
    from_fl = fl.onehotbatch(LABELS, range(3), dtype=np.int32)
    assert loss(PROBS.astype(np.float32), from_fl).dtype == np.float32
    g = fl.gradient(lambda p: loss(p, onehot), PROBS)[0]
    np.testing.assert_allclose(g, fl.gradient(lambda p: loss(p, LABELS), PROBS)[0],
                               rtol=1e-12)
