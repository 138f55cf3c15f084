"""MultiHeadAttention against the textbook formula head by head; the Transformer encoder
block. (Both agree with torch.nn.MultiheadAttention / TransformerEncoderLayer to 1e-15 in
float64 outside the suite, loading the same weights.)"""

import numpy as np
import pytest

import fluxml as fl
from fluxml.testing import check_grads

RNG = np.random.default_rng(0)


def softmax(s):
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_mha_matches_formula_head_by_head():
    m = fl.f64(fl.MultiHeadAttention(6, nheads=2, kdim=4, bias=True, rng=RNG))
    for d in (m.q_proj, m.k_proj, m.v_proj, m.out_proj):
        d.bias = RNG.normal(size=d.bias.shape)
    q, k = RNG.normal(size=(2, 3, 6)), RNG.normal(size=(2, 5, 4))
    mask = RNG.random((3, 5)) > 0.3
    mask[:, 0] = True
    out, scores = m(q, k, mask=mask)
    assert out.shape == (2, 3, 6) and scores.shape == (2, 2, 3, 5)
    Q, K, V = m.q_proj(q), m.k_proj(k), m.v_proj(k)
    heads = []
    for h in range(2):
        sl = slice(3 * h, 3 * h + 3)
        s = Q[:, :, sl] @ K[:, :, sl].transpose(0, 2, 1) / np.sqrt(3)
        p = softmax(np.where(mask, s, -np.inf))
        np.testing.assert_allclose(scores[:, h], p, rtol=1e-12, atol=1e-14)
        heads.append(p @ V[:, :, sl])
    want = np.concatenate(heads, axis=-1) @ m.out_proj.weight.T + m.out_proj.bias
    np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-14)
    assert m._output_shape((2, 3, 6), (2, 5, 4)) == ((2, 3, 6), (2, 2, 3, 5))


def test_mha_gradients_causal_and_errors():
    m = fl.f64(fl.MultiHeadAttention(4, nheads=2, rng=RNG))
    x = RNG.normal(size=(1, 3, 4))
    check_grads(lambda m, x: np.sum(np.sin(m(x, mask="causal")[0])), m, x, order=2)
    _, p = m(x, mask="causal")
    np.testing.assert_array_equal(p[0, :, 0, 1:], 0)
    assert repr(m) == "MultiHeadAttention(4, nheads=2)  # 68 parameters"
    assert fl.MultiHeadAttention(8, nheads=2, qk_dim=16, v_dim=12, out_dim=4)._line() == \
        "MultiHeadAttention(8, nheads=2, qk_dim=16, v_dim=12, out_dim=4)"
    with pytest.raises(fl.LayerError, match=r"MultiHeadAttention\(4, nheads=2\) expects q "
                                            r"\(N, Tq, 4\), k \(N, Tk, 4\), v \(N, Tk, 4\); got "
                                            r"\(1, 3, 5\)"):
        m(np.ones((1, 3, 5)))
    with pytest.raises(ValueError, match="nheads=3 must divide qk_dim"):
        fl.MultiHeadAttention(8, nheads=3)


def test_transformer_block_composes_the_layers():
    b = fl.f64(fl.TransformerEncoderBlock(4, 2, 8, dropout=0.1, rng=RNG))
    x = RNG.normal(size=(2, 3, 4))
    attn = b.attention(x)[0]
    h = b.norm1(x + attn)
    want = b.norm2(h + b.dense2(b.dense1(h)))
    np.testing.assert_allclose(b(x), want, rtol=1e-12, atol=1e-14)  # test mode: no dropout
    fl.testmode(b)
    check_grads(lambda m, x: np.sum(np.sin(m(x))), b, x, order=2)
    fl.trainmode(b)
    assert not np.allclose(b(x), want)  # dropout acts in training mode
    assert fl.outputsize(b, (2, 3, 4)) == (2, 3, 4)
    assert "dense1 = Dense(4 => 8, relu)," in repr(b)


def test_mha_fused_path_matches_composite():
    """The projections as plain products with the heads split inside the kernel against the
    einsum-projected composite (the dropout path): values and first-order gradients, with
    biases, a mask, a score bias and distinct q, k, v."""
    m = fl.f64(fl.MultiHeadAttention(6, nheads=3, kdim=4, vdim=5, bias=True, rng=RNG))
    q, k, v = RNG.normal(size=(2, 3, 6)), RNG.normal(size=(2, 5, 4)), RNG.normal(size=(2, 5, 5))
    mask, bias = RNG.random((3, 5)) > 0.3, RNG.normal(size=(3, 1, 5))
    mask[:, 0] = True
    go, gp = RNG.normal(size=(2, 3, 6)), RNG.normal(size=(2, 3, 3, 5))

    def loss(call):
        return lambda m, q, k, v, b: sum(np.sum(y * g) for y, g in
                                         zip(call(m, q, k, v, b), (go, gp)))

    fused = loss(lambda m, q, k, v, b: m(q, k, v, mask=mask, bias=b))
    composite = loss(lambda m, q, k, v, b: m._composite(q, k, v, mask=mask, bias=b))
    for a, b in zip(m(q, k, v, mask=mask, bias=bias), m._composite(q, k, v, mask=mask,
                                                                   bias=bias)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    got = fl.tree.leaves(fl.gradient(fused, m, q, k, v, bias))
    want = fl.tree.leaves(fl.gradient(composite, m, q, k, v, bias))
    assert len(got) == len(want) == 12
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("given, message", [
    ({"mask": np.ones((4, 4), bool)}, r"mask of shape \(4, 4\) does not broadcast to the "
                                      r"scores' shape \(\.\.\., Tq, Tk\) = \(2, 2, 3, 3\)"),
    ({"mask": np.ones((3, 3))}, r"mask must be boolean \(True: attend\); got dtype float64"),
    ({"bias": np.ones((5, 5), np.float32)}, r"bias of shape \(5, 5\) does not broadcast"),
])
def test_a_bad_mask_or_bias_is_refused_in_the_layers_name(given, message):
    m = fl.MultiHeadAttention(8, nheads=2)
    with pytest.raises(fl.LayerError, match=r"^MultiHeadAttention\(8, nheads=2\): " + message):
        m(np.ones((2, 3, 8), np.float32), **given)


def test_one_sequence_init_and_errors_name_the_attention_layers():
    """(T, E) without a batch as Flux and PyTorch take it; init= reaches every weight of the
    block; integer input and a wrong width are refused in the name of the layer called."""
    m = fl.MultiHeadAttention(4, nheads=2, rng=RNG)
    x = RNG.normal(size=(3, 4)).astype(np.float32)
    out, scores = m(x, mask="causal")
    batched = m(x[None], mask="causal")
    np.testing.assert_allclose(out, batched[0][0], rtol=1e-6)
    np.testing.assert_allclose(scores, batched[1][0], rtol=1e-6)
    assert fl.outputsize(m, (3, 4)) == ((3, 4), (2, 3, 3))
    with pytest.raises(fl.LayerError, match=r"^MultiHeadAttention\(4, nheads=2\) expects "
                                            r"floating-point input; got int64"):
        m(np.ones((1, 3, 4), np.int64))
    b = fl.TransformerEncoderBlock(4, 2, 8, init=fl.init.ones)
    assert np.all(b.attention.q_proj.weight == 1) and np.all(b.dense2.weight == 1)
    assert b(x).shape == (3, 4)
    with pytest.raises(fl.LayerError, match=r"^Chain\[1\]: TransformerEncoderBlock\(4, 2, 8\) "
                                            r"expects input \(N, T, 4\) or \(T, 4\); got "
                                            r"\(2, 3, 5\)"):
        fl.Chain(np.tanh, b)(np.ones((2, 3, 5), np.float32))
