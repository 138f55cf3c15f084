"""Encrypted inference: lowering, parameters, client/server round trips, refusals."""

import numpy as np
import pytest

import fluxml as fl
from fluxml.crypto.lower import poly_depth
from fluxml.crypto.params import MAX_BITS_128, choose

ts = pytest.importorskip("tenseal")

RNG = np.random.default_rng(0)


def relu(x):  # stand-ins named as the library's activations are
    return np.maximum(x, 0.0)


def softmax(x):
    e = np.exp(x - np.max(x, axis=-1, keepdims=True))
    return e / np.sum(e, axis=-1, keepdims=True)


def small_model():
    fl.seed(1)
    return fl.Chain(fl.Dense(6, 5, fl.square), fl.Dense(5, 4), fl.PolyAct(2), fl.Dense(4, 3))


@pytest.fixture(scope="module")
def served():
    """A plan and keys for small_model, shared: keygen and encryption are the slow part."""
    model = small_model()
    plan = fl.crypto.compile(model, (6,), batch=8)
    return model, plan, plan.keygen()


def test_lowered_plan_computes_the_model():
    model = fl.f64(small_model())
    plan = fl.crypto.compile(model, (6,))
    x = RNG.normal(size=(7, 6))
    np.testing.assert_allclose(plan.plain(x), model(x), rtol=1e-10, atol=1e-12)
    kinds = [type(s).__name__ for s in plan.steps]
    # Dense(5, 4) and PolyAct's input are fused? No: a polynomial sits between them.
    assert kinds == ["Affine", "Poly", "Affine", "Poly", "Affine"]
    assert plan.depth == 1 + 1 + 1 + 2 + 1


def test_consecutive_affine_layers_fuse_into_one_step():
    class Shift(fl.Module):  # a user's affine layer: measured, not special-cased
        def __init__(self):
            self.b = np.array([0.5, -1.0, 2.0])

        def __call__(self, x):
            return x * 2.0 + self.b

    model = fl.f64(fl.Chain(fl.Dense(4, 3), Shift(), fl.Dense(3, 2), fl.square))
    plan = fl.crypto.compile(model, (4,))
    assert [type(s).__name__ for s in plan.steps] == ["Affine", "Poly"]
    x = RNG.normal(size=(3, 4))
    np.testing.assert_allclose(plan.plain(x), model(x), rtol=1e-10)


def test_encrypted_batch_matches_plain(served):
    model, plan, keys = served
    x = RNG.normal(size=(8, 6))
    out = keys.decrypt(plan.run(keys.encrypt(x)))
    assert out.shape == (8, 3)
    np.testing.assert_allclose(out, plan.plain(x), atol=5e-3)
    # One input takes the packed layout, whose Galois keys grow the public context from 14
    # to over 300 MB: fresh keys, so that the shared ones stay quick to send.
    own = plan.keygen()
    one = own.decrypt(plan.run(own.encrypt(x[0])))
    assert one.shape == (3,)
    np.testing.assert_allclose(one, plan.plain(x[:1])[0], atol=5e-3)


def test_client_and_server_exchange_only_bytes(served):
    model, plan, keys = served
    # client -> server: the plan, the public context, a ciphertext
    plan_bytes, ctx_bytes = plan.serialize(), keys.public_context().serialize()
    x = RNG.normal(size=(4, 6))
    ct_bytes = keys.encrypt(x).serialize()
    server_plan = fl.crypto.Plan.load(plan_bytes)
    server_ctx = fl.crypto.PublicContext.load(ctx_bytes)
    assert not server_ctx.context.has_secret_key() and not server_ctx.context.is_private()
    with pytest.raises(ValueError):
        server_ctx.context.secret_key()
    answer = server_plan.run(fl.crypto.EncryptedTensor.load(ct_bytes, server_ctx)).serialize()
    # server -> client
    out = keys.decrypt(fl.crypto.EncryptedTensor.load(answer, keys))
    np.testing.assert_allclose(out, plan.plain(x), atol=5e-3)
    # the client's keys survive a round trip too
    again = fl.crypto.Keys.load(keys.serialize())
    np.testing.assert_allclose(again.decrypt(fl.crypto.EncryptedTensor.load(answer, again)),
                               out)


def test_report_lists_each_step(served):
    _, plan, keys = served
    text = plan.report(RNG.normal(size=(2, 6)), keys)
    assert len(text.splitlines()) == len(plan.steps) and "max error" in text
    assert "depth 6" in repr(plan) and "128-bit security" in repr(plan)


def test_foreign_ciphertexts_and_bad_inputs_are_refused(served):
    _, plan, keys = served
    other = plan.keygen()
    ct = other.encrypt(RNG.normal(size=(2, 6)))
    with pytest.raises(fl.crypto.CryptoError, match="made under other keys"):
        keys.decrypt(ct)
    with pytest.raises(fl.crypto.CryptoError, match="made under other keys"):
        fl.crypto.EncryptedTensor.load(ct.serialize(), keys.public_context())
    with pytest.raises(fl.crypto.CryptoError, match=r"expects inputs of shape \(B, 6\)"):
        keys.encrypt(np.ones((2, 5)))
    with pytest.raises(fl.crypto.CryptoError, match="truncated"):
        fl.crypto.EncryptedTensor.load(ct.serialize()[:-10], other)
    with pytest.raises(fl.crypto.CryptoError, match="not a serialized plan"):
        fl.crypto.Plan.load(b"garbage")


def test_a_ciphertext_with_too_few_levels_left_is_refused_by_name(served):
    # keys of a shallower plan, or a plan's result fed to another plan: SEAL's "scale out of
    # bounds" came out of the middle of the computation
    _, plan, keys = served
    shallow = fl.crypto.compile(fl.Dense(6, 6), (6,))
    ct = shallow.keygen().encrypt(RNG.normal(size=(2, 6)))
    with pytest.raises(fl.crypto.CryptoError, match="has 1 multiplicative levels left and "
                                                    "the plan needs 6"):
        plan.run(ct)
    result = plan.run(keys.encrypt(RNG.normal(size=(2, 6))))
    with pytest.raises(fl.crypto.CryptoError, match="a plan's result is not an input"):
        fl.crypto.compile(fl.Dense(3, 1), (3,)).run(result)


def test_a_constant_polynomial_runs_at_no_level():
    # PolyAct with zero coefficients above the constant: TenSEAL's polyval failed with
    # "vector::reserve"
    model = fl.f64(fl.Chain(fl.Dense(3, 2), fl.PolyAct(2), fl.Dense(2, 2), fl.PolyAct(1)))
    model.layers[1].coeffs[:] = [0.75, 0.0, 0.0]
    model.layers[3].coeffs[:] = [-0.5, 0.0]  # after the last level: no product possible
    plan = fl.crypto.compile(model, (3,))
    assert plan.depth == 2
    keys = plan.keygen()
    x = RNG.normal(size=(4, 3))
    np.testing.assert_allclose(keys.decrypt(plan.run(keys.encrypt(x))), model(x), atol=1e-6)
    server = fl.crypto.PublicContext.load(keys.public_context().serialize())
    ct = fl.crypto.EncryptedTensor.load(keys.encrypt(x).serialize(), server)
    np.testing.assert_allclose(keys.decrypt(plan.run(ct)), model(x), atol=1e-6)


def test_encrypt_refuses_what_is_not_finite_and_real(served):
    _, _, keys = served
    x = np.ones((2, 6))
    x[1, 4] = np.nan
    with pytest.raises(fl.crypto.CryptoError, match=r"finite inputs; got NaN .* at \(1, 4\)"):
        keys.encrypt(x)
    with pytest.raises(fl.crypto.CryptoError, match="real numbers; got an array of complex"):
        keys.encrypt(np.ones(6) * 1j)


@pytest.mark.parametrize("layer, message", [
    (fl.Dense(4, 4, relu), r"model\[0\]: Dense\(4 => 4, relu\) uses relu.*PolyAct"),
    (relu, r"model\[0\] uses relu.*fl.square"),
    (softmax, "argmax on the client"),
])
def test_layers_ckks_cannot_evaluate_are_named(layer, message):
    with pytest.raises(fl.crypto.UnsupportedLayer, match=message):
        fl.crypto.compile(fl.Chain(layer, fl.Dense(4, 2)), (4,))


def test_a_nonlinear_user_layer_is_caught_by_measurement():
    with pytest.raises(fl.crypto.UnsupportedLayer, match=r"model\[1\].*cannot evaluate"):
        fl.crypto.compile(fl.Chain(fl.Dense(3, 3), lambda x: np.abs(x)), (3,))


def test_depth_too_large_names_the_depth():
    deep = fl.Chain(*[fl.Dense(2, 2, fl.square) for _ in range(20)])
    with pytest.raises(fl.crypto.DepthError, match="needs multiplicative depth 40"):
        fl.crypto.compile(deep, (2,), precision_bits=40)


def test_parameters_respect_the_security_table():
    for depth in range(0, 20):
        p = choose(depth, 30)
        assert sum(p.coeff_mod_bit_sizes) <= MAX_BITS_128[p.poly_modulus_degree]
        assert p.depth == depth
    assert choose(2, 30, min_slots=5000).poly_modulus_degree >= 16384


def test_results_up_to_two_to_the_19_decrypt_right_at_every_default_scale():
    # the first modulus keeps 20 bits above the scale: it was capped at 60 bits, so a depth-1
    # plan got scale 2^50 and a result of 600 decrypted as -424, with no error
    for depth in range(27):
        p = choose(depth)
        assert p.coeff_mod_bit_sizes[0] - p.scale_bits >= 20, p
    with pytest.raises(ValueError, match="between 20 and 40 .*integer part.*got 45"):
        choose(1, 45)
    dense = fl.f64(fl.Dense(2, 1))
    dense.weight[:], dense.bias[:] = [[1.0, -2.0]], 0.5
    plan = fl.crypto.compile(dense, (2,))
    assert "results below 2^19" in repr(plan)
    keys = plan.keygen()
    x = np.array([[600.0, 1.0], [1e5, -3.0], [-2e5, 0.25]])
    np.testing.assert_allclose(keys.decrypt(plan.run(keys.encrypt(x))), dense(x), rtol=1e-6)


def test_polynomial_depths():
    assert poly_depth([0, 0, 1]) == 1
    assert poly_depth([0.1, 0.5, 0.2]) == 2
    assert poly_depth([0, 1, 0, 1]) == 3
    assert poly_depth([1, 1, 1, 1, 1]) == 3


def test_polyact_fits_relu_and_trains():
    act = fl.f64(fl.PolyAct(4, fit="relu", span=(-2.0, 2.0)))
    fine = np.linspace(-2, 2, 512)
    vandermonde = fine[:, None] ** np.arange(5)
    expected = np.linalg.lstsq(vandermonde, np.maximum(fine, 0), rcond=None)[0]
    np.testing.assert_allclose(act.coeffs, expected, rtol=1e-5, atol=1e-6)
    grid = np.linspace(-2, 2, 9)
    assert np.abs(act(grid) - np.maximum(grid, 0)).max() < 0.12
    g, = fl.gradient(lambda a: np.sum(a(grid)), act)
    np.testing.assert_allclose(g.coeffs, [np.sum(grid ** k) for k in range(5)], atol=1e-12)
    fl.testing.check_grads(lambda x: act(x), RNG.normal(size=3), order=2)
    with pytest.raises(ValueError, match="fit must be one of"):
        fl.PolyAct(2, fit="tanh")


def test_convolutions_in_a_row_pooling_and_batchnorm_fold():
    rng = np.random.default_rng(2)
    bn = fl.BatchNorm(2)
    bn.running_mean[:] = rng.normal(size=2)
    bn.running_var[:] = rng.uniform(0.5, 2.0, size=2)
    model = fl.f64(fl.Chain(
        fl.Conv((3, 3), 2, 2, pad=1, rng=rng), bn, fl.square,
        fl.Conv((2, 2), 2, 3, stride=2, rng=rng), fl.MeanPool((2, 2)),
        fl.Conv((1, 1), 3, 2, rng=rng), fl.Flatten(), fl.Dense(2, 2, rng=rng)))
    plan = fl.crypto.compile(model, (2, 4, 4))
    # conv + batchnorm fuse; conv, meanpool, 1x1 conv, flatten and dense fuse into one step
    assert [type(s).__name__ for s in plan.steps] == ["Affine", "Poly", "Affine"]
    x = rng.normal(size=(3, 2, 4, 4))
    np.testing.assert_allclose(plan.plain(x), model(x), rtol=1e-9, atol=1e-12)
    keys = plan.keygen()
    np.testing.assert_allclose(keys.decrypt(plan.run(keys.encrypt(x))), model(x), atol=2e-2)


def test_max_pooling_names_mean_pooling():
    with pytest.raises(fl.crypto.UnsupportedLayer, match=r"MaxPool.*use MeanPool"):
        fl.crypto.compile(fl.Chain(fl.MaxPool((2, 2)), fl.Flatten()), (1, 4, 4))
