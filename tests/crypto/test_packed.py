"""The packed layout (one input, im2col-style for the first affine step): values, bytes,
the automatic choice, refusals."""

import numpy as np
import pytest

import fluxml as fl
from fluxml.crypto.plan import packing_of

ts = pytest.importorskip("tenseal")

RNG = np.random.default_rng(3)


def small_model():
    # PolyAct's constant term lands in the empty slots too: the dots after it must ignore it
    fl.seed(1)
    return fl.Chain(fl.Dense(6, 5), fl.PolyAct(2), fl.Dense(5, 3))


@pytest.fixture(scope="module")
def served():
    model = small_model()
    plan = fl.crypto.compile(model, (6,), precision_bits=29)  # degree 8192: a quick keygen
    return model, plan, plan.keygen()


def test_one_input_is_packed_by_default_and_matches_the_model(served):
    model, plan, keys = served
    x = RNG.normal(size=6)
    ct = keys.encrypt(x)
    assert ct.layout == "packed" and len(ct.vectors) == 6  # Dense(6, 5): 6 weights a row
    out = plan.run(ct)
    assert out.layout == "batch" and out.shape == (3,)
    got = keys.decrypt(out)
    assert got.shape == (3,)
    # the same parameters (depth) as the batch layout: the first step and each dot cost a level
    np.testing.assert_allclose(got, plan.plain(x[None])[0], atol=2e-2)
    np.testing.assert_allclose(got, model(x[None].astype(np.float32))[0], atol=2e-2)
    assert keys.encrypt(x[None]).layout == "packed"
    assert keys.encrypt(np.stack([x, x])).layout == "batch"
    assert keys.encrypt(x, layout="batch").layout == "batch"


def test_packed_bytes_round_trip_and_the_server_holds_no_secret_key(served):
    _, plan, keys = served
    x = RNG.normal(size=(1, 6))
    ct_bytes = keys.encrypt(x, layout="packed").serialize()
    ctx_bytes = keys.public_context().serialize()  # after packing: with Galois keys
    server_ctx = fl.crypto.PublicContext.load(ctx_bytes)
    assert not server_ctx.context.has_secret_key() and server_ctx.context.has_galois_keys()
    with pytest.raises(ValueError):
        server_ctx.context.secret_key()
    server_plan = fl.crypto.Plan.load(plan.serialize())
    answer = server_plan.run(fl.crypto.EncryptedTensor.load(ct_bytes, server_ctx)).serialize()
    again = fl.crypto.Keys.load(keys.serialize())  # stored without the Galois keys
    assert again.prefer_packed and np.array_equal(again.packing, keys.packing)
    assert not again.context.has_galois_keys()
    out = again.decrypt(fl.crypto.EncryptedTensor.load(answer, again))
    assert out.shape == (1, 3)
    np.testing.assert_allclose(out, plan.plain(x), atol=2e-2)


def test_convolution_then_pooling_packed_and_a_result_left_in_one_ciphertext():
    rng = np.random.default_rng(4)
    conv = fl.f64(fl.Chain(fl.Conv((3, 3), 1, 2, rng=rng), fl.square, fl.MeanPool((2, 2)),
                           fl.Flatten(), fl.Dense(8, 3, rng=rng)))
    plan = fl.crypto.compile(conv, (1, 6, 6))
    keys = plan.keygen()
    assert keys.packing.shape == (9, 32)  # 3x3 kernels, 2 channels x 4 x 4 outputs
    # an independent im2col of the first pixel windows: ciphertext k, slot o
    x = rng.normal(size=(1, 6, 6))
    ct = keys.encrypt(x)
    first = np.array(ct.vectors[4].decrypt())  # kernel tap (1, 1): the window centres
    centres = x[0, 1:5, 1:5].reshape(-1)
    np.testing.assert_allclose(first, np.concatenate([centres, centres]), atol=1e-4)
    np.testing.assert_allclose(keys.decrypt(plan.run(ct)), conv(x[None])[0], atol=2e-2)
    # a plan that ends before a second affine step answers in one ciphertext ("vector")
    head = fl.f64(fl.Chain(fl.Dense(4, 3, rng=rng), fl.PolyAct(2)))
    plan, x = fl.crypto.compile(head, (4,)), rng.normal(size=4)
    keys = plan.keygen()
    out = plan.run(keys.encrypt(x, layout="packed"))
    assert out.layout == "vector" and len(out.vectors) == 1
    back = fl.crypto.EncryptedTensor.load(out.serialize(), keys)
    np.testing.assert_allclose(keys.decrypt(back), head(x[None])[0], atol=2e-2)


def test_the_plan_picks_batch_where_packed_would_cost_more():
    wide = fl.Chain(fl.Dense(2, 2, fl.square), fl.Dense(2, 30))  # 30 dots against 64 products
    keys = fl.crypto.compile(wide, (2,)).keygen()
    assert keys.packing is not None and not keys.prefer_packed
    assert keys.encrypt(np.ones(2)).layout == "batch"
    assert not keys.context.has_galois_keys()  # made only when the packed layout is used


def test_packed_layout_refusals(served):
    _, plan, keys = served
    starts_poly = fl.crypto.compile(fl.Chain(fl.square, fl.Dense(3, 2)), (3,)).keygen()
    assert starts_poly.packing is None
    assert starts_poly.encrypt(np.ones(3)).layout == "batch"
    with pytest.raises(fl.crypto.CryptoError, match="does not start with an affine step"):
        starts_poly.encrypt(np.ones(3), layout="packed")
    with pytest.raises(fl.crypto.CryptoError, match="one input at a time; got 2"):
        keys.encrypt(np.ones((2, 6)), layout="packed")
    with pytest.raises(ValueError, match="layout must be 'batch', 'packed' or None"):
        keys.encrypt(np.ones(6), layout="rows")
    ct = keys.encrypt(np.ones(6), layout="packed")
    with pytest.raises(fl.crypto.CryptoError, match="run the plan on it first"):
        keys.decrypt(ct)
    bare = keys.context.copy()
    bare.make_context_public()
    no_galois = fl.crypto.PublicContext(
        ts.context_from(bare.serialize(save_galois_keys=False)), keys.key_id, keys.params)
    loaded = fl.crypto.EncryptedTensor.load(ct.serialize(), no_galois)
    with pytest.raises(fl.crypto.CryptoError, match="needs Galois keys"):
        plan.run(loaded)
    other = fl.crypto.compile(fl.Chain(fl.Dense(6, 5), fl.Dense(5, 2)), (6,))
    other.steps[0].matrix[:, 0] = 0.0  # five weights a row: a different pattern
    with pytest.raises(fl.crypto.CryptoError, match="has 6 ciphertexts"):
        other.run(ct)


def test_a_plan_refuses_an_input_packed_for_another_pattern_of_the_same_size():
    # both first steps have 9 weights per output and 16 outputs, at other places: the plan
    # multiplied the other pattern's inputs by its weights and answered garbage, no error
    rng = np.random.default_rng(5)
    four = fl.Chain(fl.Conv((3, 3), 1, 4, rng=rng), fl.square, fl.Flatten(),
                    fl.Dense(16, 2, rng=rng))
    padded = fl.Chain(fl.Conv((3, 3), 1, 1, pad=1, rng=rng), fl.square, fl.Flatten(),
                      fl.Dense(16, 2, rng=rng))
    plan_four, plan_padded = (fl.crypto.compile(m, (1, 4, 4), precision_bits=29)
                              for m in (four, padded))
    assert packing_of(plan_four).shape == packing_of(plan_padded).shape == (9, 16)
    keys = plan_four.keygen()
    x = rng.normal(size=(1, 4, 4))
    ct = keys.encrypt(x, layout="packed")
    with pytest.raises(fl.crypto.CryptoError, match="packed for another plan's first step"):
        plan_padded.run(ct)
    loaded = fl.crypto.EncryptedTensor.load(ct.serialize(), keys.public_context())
    assert loaded.packing == ct.packing is not None
    with pytest.raises(fl.crypto.CryptoError, match="packed for another plan's first step"):
        plan_padded.run(loaded)
    np.testing.assert_allclose(keys.decrypt(plan_four.run(loaded)),
                               four(x[None].astype(np.float32))[0], atol=2e-2)
