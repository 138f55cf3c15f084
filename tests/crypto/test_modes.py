"""Encrypted inference of train/test layers: the plan computes what model(x) computes (no
keys needed: fl.crypto.compile and Plan.plain are plain NumPy)."""

import numpy as np
import pytest

import fluxml as fl

RNG = np.random.default_rng(0)


def _model(norm):
    fl.seed(0)
    return fl.f64(fl.Chain(fl.Dense(4, 4), norm, fl.square, fl.Dense(4, 2)))


def _trained_batchnorm():
    bn = fl.BatchNorm(4)
    bn.running_mean[:] = RNG.normal(size=4)
    bn.running_var[:] = RNG.uniform(0.5, 2.0, size=4)
    return bn


def test_a_layer_set_to_training_mode_is_refused_not_switched():
    """A BatchNorm put in training mode (fl.trainmode) was compiled with its running
    statistics, silently: model(x) normalised with the batch's, the plan with the running
    ones, and the encrypted answer was another function than the model."""
    model = fl.trainmode(_model(_trained_batchnorm()))
    x = RNG.normal(size=(5, 4))
    with pytest.raises(fl.crypto.UnsupportedLayer,
                       match=r"model\[1\]: BatchNorm\(4, active=True\) is set to training mode "
                             r"\(active=True, as fl.trainmode sets it\).* call "
                             r"fl.testmode\(model\) .*before fl.crypto.compile"):
        fl.crypto.compile(model, (4,))
    nested = fl.Chain(fl.SkipConnection(fl.Chain(fl.Dense(4, 4), fl.trainmode(
        fl.Dropout(0.5))), np.add), fl.Dense(4, 2))
    with pytest.raises(fl.crypto.UnsupportedLayer, match=r"model\[0\]: Dropout\(0.5, "
                                                         r"active=True\) \(inside SkipConnection"):
        fl.crypto.compile(nested, (4,))
    for mode in (True, None):  # test mode, or automatic (test mode outside a gradient)
        fl.testmode(model, mode)
        plan = fl.crypto.compile(model, (4,))
        np.testing.assert_allclose(plan.plain(x), model(x), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("norm, whose", [(fl.BatchNorm(4, track_stats=False), "each batch"),
                                         (fl.InstanceNorm(4, track_stats=False), "each input")])
def test_a_norm_without_running_statistics_says_why_and_what_to_build(norm, whose):
    """BatchNorm(track_stats=False) was refused as if it were an activation: "use a
    polynomial activation (fl.square, fl.PolyAct) instead"."""
    model = fl.f64(fl.Chain(fl.Conv((1,), 4, 4), norm, fl.Flatten(), fl.Dense(12, 2)))
    with pytest.raises(fl.crypto.UnsupportedLayer) as info:
        fl.crypto.compile(model, (4, 3))
    message = str(info.value)
    assert message.startswith("model[1]: ") and "polynomial activation" not in message
    assert (f"keeps no running statistics (track_stats=False), so even at inference it "
            f"normalises with the mean and variance of {whose}") in message
    assert "build it with track_stats=True and train the model" in message


def test_layer_and_group_norms_point_to_batchnorm():
    for norm in (fl.LayerNorm(4), fl.GroupNorm(4, 2)):
        with pytest.raises(fl.crypto.UnsupportedLayer,
                           match=rf"model\[1\] uses {type(norm).__name__}, which CKKS cannot "
                                 r"evaluate .*use BatchNorm \(at inference an affine map"):
            fl.crypto.compile(_model(norm), (4,))


class _Residual(fl.Module):
    """A user's block with an activation field that it does not apply last."""

    def __init__(self, n):
        self.dense = fl.Dense(n, n)
        self.activation = fl.square

    def __call__(self, x):
        return x + self.activation(self.dense(x))


def test_an_activation_field_not_applied_last_is_refused():
    # the plan took it as square(x + dense(x)): another function, 3.9 off, silently
    fl.seed(0)
    model = fl.f64(fl.Chain(_Residual(4), fl.Dense(4, 2)))
    with pytest.raises(fl.crypto.UnsupportedLayer, match=r"model\[0\]: .*has a polynomial "
                                                         r"activation field, but does not apply "
                                                         r"it to its output last"):
        fl.crypto.compile(model, (4,))
    # where it is applied last (every built-in layer), the plan is the model
    dense = fl.f64(fl.Chain(fl.Dense(4, 4, fl.square), fl.Dense(4, 2)))
    x = RNG.normal(size=(3, 4))
    np.testing.assert_allclose(fl.crypto.compile(dense, (4,)).plain(x), dense(x), rtol=1e-12)


def test_a_polynomial_inside_another_container_is_named_as_such():
    # (the refusal advised fl.square, which the branch used)
    model = fl.Chain(fl.SkipConnection(fl.Chain(fl.Dense(4, 4), fl.square), lambda a, b: a + b),
                     fl.Dense(4, 2))
    with pytest.raises(fl.crypto.UnsupportedLayer, match=r"holds a polynomial \(square\) inside "
                                                         r"a SkipConnection: .*move the "
                                                         r"polynomial out of the SkipConnection"):
        fl.crypto.compile(model, (4,))


def test_a_batchnorm_without_statistics_after_a_dense_gets_its_own_refusal():
    # (evaluated on one sample, it failed first on "a single value per channel", and the
    # refusal spoke of a DataLoader's last batch)
    model = fl.Chain(fl.Dense(4, 4), fl.BatchNorm(4, track_stats=False), fl.Dense(4, 2))
    with pytest.raises(fl.crypto.UnsupportedLayer, match=r"keeps no running statistics"):
        fl.crypto.compile(model, (4,))


def test_attention_is_refused_with_a_reason():
    with pytest.raises(fl.crypto.UnsupportedLayer, match=r"MultiHeadAttention, which CKKS "
                                                         r"cannot evaluate.*softmax"):
        fl.crypto.compile(fl.MultiHeadAttention(4, nheads=2), (3, 4))
