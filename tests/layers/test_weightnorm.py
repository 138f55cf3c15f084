"""WeightNorm and remove_weight_norms against w = g v / ||v|| written here. (Checked by hand
against torch.nn.utils.weight_norm with dim 0, 1 and None on a Conv2d, forward and the
gradients of g and v: 3e-14 apart in float64.)"""

import numpy as np
import pytest

import fluxml as fl
from fluxml.testing import check_grads

RNG = np.random.default_rng(5)


def test_starts_as_the_layer_and_follows_the_formula():
    conv = fl.f64(fl.Conv((3, 2), 2, 4))
    x = RNG.normal(size=(2, 2, 5, 4))
    for dims, g_shape in [(0, (1, 2, 3, 2)), ((1, 2, 3), (4, 1, 1, 1)), (None, (1, 1, 1, 1)),
                          (-1, (4, 2, 3, 1))]:
        m = fl.WeightNorm(conv, dims=dims)
        assert m.g.shape == g_shape
        np.testing.assert_allclose(m(x), conv(x), rtol=1e-12, atol=1e-12)
        m.g = RNG.normal(size=g_shape)
        v = conv.weight
        axes = tuple(range(4)) if dims is None else dims
        w = m.g * v / np.sqrt(np.sum(v ** 2, axis=axes, keepdims=True))
        ref = fl.f64(fl.Conv((3, 2), 2, 4))
        ref.weight, ref.bias = w, conv.bias
        np.testing.assert_allclose(m(x), ref(x), rtol=1e-10, atol=1e-12)
    # the wrapped layer keeps v: only the call sees w
    assert fl.WeightNorm(conv).layer.weight is conv.weight


def test_gradients_second_order_and_float32():
    m = fl.WeightNorm(fl.f64(fl.Dense(3, 2, np.tanh)), dims=1)
    check_grads(lambda m, x: m(x), m, RNG.normal(size=(4, 3)))
    m32 = fl.WeightNorm(fl.Dense(3, 2))
    x = np.ones((2, 3), np.float32)
    g = fl.gradient(lambda m: np.sum(m(x) ** 2), m32)[0]
    assert m32.g.dtype == np.float32 and g.g.dtype == np.float32 and m32(x).dtype == np.float32
    assert g.layer.weight.shape == (2, 3) and g.layer.bias.shape == (2,)


def test_another_field_and_a_training_step():
    layer = fl.f64(fl.Dense(2, 2))
    layer.bias = np.array([3.0, 4.0])
    m = fl.WeightNorm(layer, "bias", dims=None)
    np.testing.assert_allclose(m.g, [5.0])
    m.g = np.array([10.0])
    np.testing.assert_allclose(m(np.zeros((1, 2))), [[6.0, 8.0]])
    x, y = RNG.normal(size=(8, 2)), RNG.normal(size=(8, 2))
    state = fl.setup(fl.Descent(0.1), m)
    g0, v0 = m.g.copy(), m.layer.bias.copy()
    grads = fl.gradient(lambda m: fl.mse(m(x), y), m)[0]
    fl.update(state, m, grads)
    assert not np.array_equal(m.g, g0) and not np.array_equal(m.layer.bias, v0)


def test_remove_weight_norms():
    inner = fl.f64(fl.Dense(3, 3, np.tanh))
    model = fl.Chain(fl.WeightNorm(inner, dims=1), fl.Chain(fl.WeightNorm(fl.f64(fl.Dense(3, 1)))))
    model.layers[0].g = model.layers[0].g * 3
    x = RNG.normal(size=(5, 3))
    plain = fl.remove_weight_norms(model)
    assert type(plain.layers[0]) is fl.Dense and type(plain.layers[1].layers[0]) is fl.Dense
    np.testing.assert_allclose(plain(x), model(x), rtol=1e-12)
    assert plain.layers[0].bias is inner.bias and inner.weight is model.layers[0].layer.weight


def test_printing_and_bad_input():
    m = fl.WeightNorm(fl.Dense(2, 3))
    assert repr(m).splitlines()[:3] == ["WeightNorm(", "  Dense(2 => 3),                        "
                                        "# 9 parameters", "  g = float32[1, 2],                    "
                                        "# 2 parameters"]
    assert m._line() == "WeightNorm(Dense(2 => 3), 'weight', dims=(0,))"
    with pytest.raises(ValueError, match=r"WeightNorm\(Dense, 'wieght'\): the layer has no "
                                         r"field 'wieght'; its arrays are \['weight', 'bias'\]"):
        fl.WeightNorm(fl.Dense(2, 3), "wieght")
    with pytest.raises(ValueError, match="is all zero, so its direction"):
        fl.WeightNorm(fl.Dense(2, 3), "bias")
    with pytest.raises(ValueError, match=r"dims must be axes of the 2-d array .* got 2"):
        fl.WeightNorm(fl.Dense(2, 3), dims=2)
    with pytest.raises(ValueError, match="expected a float array to normalise; got function"):
        fl.WeightNorm(fl.Dense(2, 3), "activation")
    with pytest.raises(ValueError, match=r"WeightNorm\['layer'\]: Dense\(2 => 3\) expects"):
        m(np.ones((1, 5), np.float32))
