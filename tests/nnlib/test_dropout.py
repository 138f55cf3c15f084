"""dropout and alpha_dropout: PyTorch's scaling, statistics, the gradient is the mask,
dims, inactive and edge probabilities, float32, bad input."""

import re

import numpy as np
import pytest

import fluxml as fl


def test_dropout_scaling_and_gradient():
    x = np.random.default_rng(0).standard_normal((200, 300))
    y = fl.dropout(x, 0.3, rng=np.random.default_rng(1))
    kept = y != 0
    assert abs(kept.mean() - 0.7) < 0.01
    np.testing.assert_allclose(y[kept], x[kept] / 0.7)
    g = fl.gradient(lambda x: np.sum(fl.dropout(x, 0.3, rng=np.random.default_rng(1))), x)[0]
    np.testing.assert_allclose(g, kept / 0.7)


def test_dropout_dims_drops_whole_channels():
    y = fl.dropout(np.ones((8, 16, 4, 4)), 0.5, dims=(0, 1), rng=np.random.default_rng(0))
    per_channel = y.reshape(8, 16, -1)
    assert np.all(per_channel.min(-1) == per_channel.max(-1))
    assert set(np.unique(y)) == {0.0, 2.0}


def test_inactive_and_edges():
    x = np.ones((3, 4), np.float32)
    assert fl.dropout(x, 0.5, active=False) is x
    assert fl.dropout(x, 0.0) is x
    z = fl.dropout(x, 1.0)
    assert z.dtype == np.float32 and not z.any()
    assert fl.dropout(x, 0.5).dtype == np.float32
    assert fl.alpha_dropout(x, 0.5).dtype == np.float32
    assert not fl.alpha_dropout(x, 1.0).any()


def test_alpha_dropout_formula_and_statistics():
    x = np.random.default_rng(0).standard_normal(400000)
    p = 0.2
    y = fl.alpha_dropout(x, p, rng=np.random.default_rng(1))
    alpha = 1.0507009873554805 * 1.6732632423543772
    a = ((1 - p) * (1 + p * alpha**2)) ** -0.5
    b = -a * -alpha * p
    dropped = np.isclose(y, a * -alpha + b, rtol=1e-12, atol=0)
    np.testing.assert_allclose(y[~dropped], a * x[~dropped] + b)
    assert abs(dropped.mean() - p) < 0.005
    assert abs(y.mean()) < 0.01 and abs(y.std() - 1) < 0.01
    g = fl.gradient(lambda x: np.sum(fl.alpha_dropout(x, p, rng=np.random.default_rng(1))),
                    x)[0]
    np.testing.assert_allclose(g, np.where(dropped, 0, a))


def test_bad_input():
    with pytest.raises(ValueError, match=r"dropout: the drop probability p must be a number "
                                         r"in \[0, 1\]; got 1.5"):
        fl.dropout(np.ones(3), 1.5)
    # p=True was taken for 1 (everything dropped, silently), "0.5" raised Python's TypeError
    for p, shown in ((True, "True (a bool)"), ("0.5", "'0.5' (a str)")):
        with pytest.raises(ValueError, match=re.escape(f"dropout: the drop probability p must "
                                                       f"be a number in [0, 1]; got {shown}")):
            fl.dropout(np.ones(3), p)
    with pytest.raises(ValueError, match="alpha_dropout: the drop probability"):
        fl.alpha_dropout(np.ones(3), -0.1)
    with pytest.raises(ValueError, match="dropout: dims must be axes"):
        fl.dropout(np.ones((2, 3)), 0.5, dims=(2,))


def test_derivatives_with_a_fixed_mask():
    from fluxml.testing import check_grads

    x = np.random.default_rng(0).standard_normal((4, 5))
    check_grads(lambda x: fl.dropout(x, 0.4, rng=np.random.default_rng(3)), x)
    check_grads(lambda x: fl.alpha_dropout(x, 0.4, rng=np.random.default_rng(3)), x)


# rng= that is not a generator: Dropout and AlphaDropout stored it and failed at their first
# draw in training with Python's "'str' object has no attribute 'random'"; dropout(rng=0)
# drew from the default generator (0 is falsy), silently. Now refused by name.
_NOT_A_GENERATOR = [
    (lambda: fl.Dropout(0.5, rng="abc"), "Dropout: rng must be a random generator"),
    (lambda: fl.AlphaDropout(0.5, rng=5), "AlphaDropout: rng must be a random generator"),
    (lambda: fl.dropout(np.ones(3), 0.5, rng=0), "dropout: rng must be a random generator "
                                                "(np.random.default_rng(seed)) or None; got 0"),
    (lambda: fl.alpha_dropout(np.ones(3), 0.5, rng="x"), "alpha_dropout: rng must be"),
    (lambda: fl.rrelu(np.ones(3), rng=3, active=True), "rrelu: rng must be a random generator"),
]


@pytest.mark.parametrize("call, message", _NOT_A_GENERATOR)
def test_a_seed_is_not_a_generator(call, message):
    with pytest.raises(TypeError, match=re.escape(message)):
        call()
    # a generator of that seed works, and draws as NumPy's own does
    y = fl.dropout(np.ones(1000), 0.5, rng=np.random.default_rng(0))
    keep = np.random.default_rng(0).random(1000) >= 0.5
    np.testing.assert_array_equal(y, np.where(keep, 2.0, 0.0))
