"""Encrypted inference: cases found by an audit (each fails on the code before its fix).
Lowering needs no TenSEAL; the tests that encrypt skip without it."""

import json
import struct

import numpy as np
import pytest

import fluxml as fl


def hardsigmoid(x):  # written out: linear on [-3, 3], flat outside
    return np.clip(x / 6 + 0.5, 0.0, 1.0)


@pytest.mark.parametrize("layer, name", [
    (fl.hardtanh, "hardtanh"), (fl.hardsigmoid, "hardsigmoid"), (fl.trelu, "trelu"),
    (lambda x: np.clip(x, -10.0, 10.0), "<lambda>"), (hardsigmoid, "hardsigmoid"),
    (lambda x: np.where(np.abs(x) < 1e-2, 0.0, x), "<lambda>"),
])
def test_layers_linear_near_the_unit_inputs_only_are_refused(layer, name):
    """A layer was measured at 0 and the unit inputs and checked at two standard normal
    inputs: hardtanh, hardsigmoid, trelu or a clip are linear (or zero) there, so a plan was
    made that computes another function than the model, silently (hardtanh on a Dense(3 =>
    1)'s output: 8.5 off at inputs of size 5). Now they are checked at sizes 1e-3 to 1e6."""
    fl.seed(0)
    model = fl.f64(fl.Chain(fl.Dense(3, 1), layer, fl.Dense(1, 2)))
    with pytest.raises(fl.crypto.UnsupportedLayer, match=rf"model\[1\]: .*uses {name}, which "
                                                         r"CKKS cannot evaluate"):
        fl.crypto.compile(model, (3,))


def test_affine_layers_at_every_size_still_lower_exactly():
    fl.seed(0)
    model = fl.f64(fl.Chain(fl.Conv((3, 3), 2, 4, pad=1), fl.MeanPool((2, 2)), fl.Flatten(),
                            fl.BatchNorm(16), fl.Dense(16, 3), lambda x: 1e6 * x - 3.0))
    norm = model.layers[3]
    norm.running_mean[:] = np.linspace(-1, 1, 16)
    norm.running_var[:] = np.linspace(0.5, 2, 16)
    plan = fl.crypto.compile(model, (2, 4, 4))
    x = np.random.default_rng(1).normal(size=(3, 2, 4, 4)) * 100
    np.testing.assert_allclose(plan.plain(x), model(x), rtol=1e-9)
    assert [type(s).__name__ for s in plan.steps] == ["Affine"]


def _damaged(magic, header):
    """Bytes as _pack makes them, of ``header`` and empty blobs."""
    text = json.dumps(header).encode()
    return magic + struct.pack("<Q", len(text)) + text


@pytest.mark.parametrize("header", [[1, 2], {}, {"sizes": [0]}, {"sizes": ["a"], "steps": []},
                                    {"sizes": [0, 0], "input_shape": [2], "params": [],
                                     "steps": []}])
def test_a_damaged_plan_header_is_a_crypto_error(header):
    """A header that was not a dict, or lacked a field, failed with a TypeError or KeyError
    from the reading code ("list indices must be integers", "'sizes'")."""
    with pytest.raises(fl.crypto.CryptoError, match="the plan's header is damaged"):
        fl.crypto.Plan.load(_damaged(b"FLXPLAN1", header))


def test_a_plan_whose_steps_do_not_chain_is_refused():
    """A plan whose affine matrix takes fewer features than come (a damaged or edited file)
    loaded, and run() would have dropped the other features silently."""
    fl.seed(0)
    plan = fl.crypto.compile(fl.f64(fl.Chain(fl.Dense(4, 3), fl.square, fl.Dense(3, 2))), (4,))
    assert fl.crypto.Plan.load(plan.serialize()).steps[2].matrix.shape == (2, 3)
    plan.steps[2].matrix = plan.steps[2].matrix[:, :2]  # drops a feature
    with pytest.raises(fl.crypto.CryptoError, match=r"the plan is damaged: its step 2 .* does "
                                                    r"not fit 3 input features"):
        fl.crypto.Plan.load(plan.serialize())
    data = plan.serialize()
    with pytest.raises(fl.crypto.CryptoError, match="the plan's steps are damaged"):
        fl.crypto.Plan.load(data[:-60] + b"\0" * 60)  # the .npz's directory overwritten


def test_a_damaged_ciphertext_or_context_header_is_a_crypto_error():
    pytest.importorskip("tenseal")
    with pytest.raises(fl.crypto.CryptoError, match=r"the encrypted tensor's header is "
                                                    r"damaged.*'key_id'"):
        fl.crypto.EncryptedTensor.load(_damaged(b"FLXENC1\n", {"sizes": [], "shape": [2]}),
                                       None)
    with pytest.raises(fl.crypto.CryptoError, match="the public context's header is damaged"):
        fl.crypto.PublicContext.load(_damaged(b"FLXCTX1\n", {"sizes": [0, 0], "key_id": "k",
                                                              "params": []}))


def test_report_on_one_input_of_a_plan_that_prefers_the_packed_layout():
    """report() encrypted with the keys' default layout, which for one input is "packed"
    where the plan's estimate prefers it, and then ran the steps as if in the batch layout:
    an IndexError after a convolution (the packed ciphertexts are not one per feature)."""
    pytest.importorskip("tenseal")
    fl.seed(0)
    model = fl.f64(fl.Chain(fl.Conv((2, 2), 1, 2), fl.Flatten(), fl.square,
                            fl.Dense(2 * 3 * 3, 3)))
    plan = fl.crypto.compile(model, (1, 4, 4))
    keys = plan.keygen()
    assert keys.prefer_packed
    x = np.random.default_rng(0).normal(size=(1, 4, 4))
    for batch in (x[None], x):  # one input, as a batch of one or alone
        rows = plan.report(batch, keys).splitlines()
        assert len(rows) == 3
        errors = [float(row.rsplit("max error ", 1)[1]) for row in rows]
        assert max(errors) < 1e-3, rows
    np.testing.assert_allclose(plan.plain(x), model(x[None])[0], rtol=1e-10)
    with pytest.raises(fl.crypto.CryptoError, match=r"Plan.plain expects inputs of shape "
                                                    r"\(B, 1, 4, 4\) or \(1, 4, 4\); got "
                                                    r"\(4, 4\)"):
        plan.plain(x[0])


@pytest.mark.parametrize("kw, message", [
    ({"batch": 20000}, r"batch must be at most 16384, the slots of one ciphertext at the "
                       r"largest 128-bit-secure degree 32768; got 20000"),
    ({"batch": 0}, r"batch \(the most inputs encrypted together\) must be a positive int; "
                   r"got 0"),
    ({"batch": 2.5}, r"batch .* must be a positive int; got 2.5 \(a float\)"),
    ({"precision_bits": 30.5}, r"precision_bits must be an int or None; got 30.5"),
    ({"input_shape": 3}, r"input_shape must be a tuple of positive ints .*; got 3"),
    ({"input_shape": (3.0,)}, r"input_shape must be a tuple of positive ints"),
])
def test_compile_settings_are_checked(kw, message):
    """batch=20000 was a DepthError saying the model needed too much depth (no degree has
    that many slots); batch 0 or 2.5 passed; precision_bits=30.5 made moduli of 50.5 bits
    (TenSEAL failed at keygen); an int input_shape failed in tuple()."""
    model = fl.Chain(fl.Dense(3, 2))
    kw = dict(kw)
    shape = kw.pop("input_shape", (3,))
    with pytest.raises(ValueError, match=rf"fl.crypto.compile: {message}"):
        fl.crypto.compile(model, shape, **kw)


def test_numpy_integer_settings_make_a_plan_that_serializes():
    model = fl.Chain(fl.Dense(3, 2))
    plan = fl.crypto.compile(model, (np.int64(3),), precision_bits=np.int64(30),
                             batch=np.int32(8))
    # a shape as a 1-d integer array, as NumPy takes shapes (refused for a while: review)
    assert fl.crypto.compile(model, np.array([3])).input_shape == (3,)
    back = fl.crypto.Plan.load(plan.serialize())  # (np.int64 moduli failed in json.dumps)
    assert back.params == plan.params == fl.crypto.CKKSParams(8192, [50, 30, 50], 30)
    assert back.input_shape == (3,)


class Twice(fl.Module):
    def __call__(self, x):
        return 2.0 * x


def _poly(*coeffs):
    act = fl.PolyAct(len(coeffs) - 1)
    act.coeffs[:] = coeffs
    return act


DRIFT = [
    ((Twice(), fl.square, Twice()), "batch"),
    ((Twice(), fl.square, Twice()), "packed"),
    ((fl.square, Twice(), fl.square), "batch"),  # a square of the input: its factor carried
    ((Twice(), _poly(1.0, 0.5, 2.0)), "batch"),
    ((Twice(), _poly(1.0, 0.5, 2.0)), "packed"),
    ((_poly(3.0, 0.0, 0.0, 0.5, 2.0),), "batch"),  # x**3 = x**2 x, x**4 = (x**2)**2
    # ending in squares (no plain number to take their factor out: the result carries it,
    # and decrypt divides it out); 1.5e-5 to 7.5e-5 off before
    ((fl.square, fl.square, fl.square), "batch"),
    ((Twice(), fl.square, fl.square), "batch"),
    ((_poly(10.0, 0.5), fl.square, fl.square), "batch"),
    ((Twice(), fl.square, fl.square), "packed"),
]


@pytest.mark.parametrize("layers, layout", DRIFT)
def test_tenseals_rescaling_drift_is_taken_out(layers, layout):
    """TenSEAL rescales by a prime q and calls the result's scale 2^scale again: every level
    multiplied the values by 2^scale / q, and a depth-3 plan came back 4.5e-05 off relatively
    (20 at a result of 4.7e5), against a documented error of 8e-07 per value. The plan now
    divides its plain multipliers by the factor each ciphertext carries."""
    pytest.importorskip("tenseal")
    model = fl.Chain(*layers)
    plan = fl.crypto.compile(model, (1,))
    assert plan.depth == 3 and plan.params.poly_modulus_degree == 8192
    keys = plan.keygen()
    x = np.array([[4.5], [-5.5]])[:1 if layout == "packed" else 2]
    out = plan.run(keys.encrypt(x, layout=layout))
    got = keys.decrypt(out)
    # (a result's factors travel with it)
    np.testing.assert_array_equal(
        keys.decrypt(fl.crypto.EncryptedTensor.load(out.serialize(), keys)), got)
    want = plan.plain(x)
    assert np.all(np.abs(want) > 100)  # large results: the encryption noise is small beside
    np.testing.assert_allclose(got, want, rtol=3e-6)  # (noise: up to 7e-7; the drift was 1e-5+)
    np.testing.assert_allclose(want, model(x), rtol=1e-12)


def test_dropout_at_inference_is_the_identity():
    """Dropout (in test or automatic mode) was refused by name: "use nothing (remove it: it
    is off at inference) instead, and retrain", though AlphaDropout, or Dropout inside a
    SkipConnection, lowered as the identity they are at inference; training mode is still
    refused."""
    fl.seed(0)
    model = fl.f64(fl.Chain(fl.Dense(4, 3), fl.Dropout(0.5), fl.square, fl.Dense(3, 2)))
    plan = fl.crypto.compile(model, (4,))
    x = np.random.default_rng(0).normal(size=(5, 4))
    np.testing.assert_allclose(plan.plain(x), model(x), rtol=1e-12)
    assert [type(s).__name__ for s in plan.steps] == ["Affine", "Poly", "Affine"]
    with pytest.raises(fl.crypto.UnsupportedLayer, match=r"model\[1\]: Dropout\(0.5, "
                                                         r"active=True\) is set to training"):
        fl.crypto.compile(fl.trainmode(model), (4,))


def test_a_model_with_parameters_that_are_not_finite_is_refused_as_such():
    """A Dense with a NaN weight was refused as 'uses Dense, which CKKS cannot evaluate'
    (measured as not affine), and a PolyAct with a NaN coefficient made a plan, silently,
    whose every result decrypted as NaN garbage."""
    dense = fl.f64(fl.Dense(3, 2))
    dense.weight[0, 0] = np.nan
    with pytest.raises(ValueError, match=r"^model: Dense\(3 => 2\) has parameters that are "
                                         r"not finite \(NaN or infinity"):
        fl.crypto.compile(dense, (3,))
    with pytest.raises(fl.crypto.UnsupportedLayer, match="CKKS cannot evaluate"), \
            np.errstate(divide="ignore"):
        fl.crypto.compile(lambda x: 1 / x, (3,))  # (no parameters: a division, as before)
    model = fl.Chain(fl.Dense(3, 2), fl.PolyAct(2))
    model.layers[1].coeffs[0] = np.nan
    with pytest.raises(ValueError, match=r"^model\[1\]: PolyAct\(2.*\) has coefficients that "
                                         r"are not finite \(\[nan, "):
        fl.crypto.compile(model, (3,))


def test_compile_names_itself_for_a_model_or_precision_it_cannot_take():
    """compile(None, ...) said 'could not be evaluated ...: NoneType object is not callable',
    and precision_bits=10 'precision_bits must be between 20 and 40' without naming compile."""
    with pytest.raises(TypeError, match=r"^fl.crypto.compile: model must be callable; got "
                                        r"'abc' \(a str\)"):
        fl.crypto.compile("abc", (3,))
    with pytest.raises(ValueError, match=r"^fl.crypto.compile: precision_bits must be between "
                                         r"20 and 40 .*; got 10"):
        fl.crypto.compile(fl.Dense(3, 2), (3,), precision_bits=10)


def test_plain_refuses_what_is_not_real_and_takes_an_empty_batch():
    """Plan.plain(['1', '2', '3']) parsed the strings and computed, a complex input lost its
    imaginary part with only a ComplexWarning, 'abc' failed in NumPy's float(), and an empty
    batch (0, 3) in reshape."""
    model = fl.f64(fl.Chain(fl.Dense(3, 2), fl.square))
    plan = fl.crypto.compile(model, (3,))
    for x, dtype in ((["1", "2", "3"], "<U1"), (np.ones(3) * 1j, "complex128"),
                     ("abc", "<U3"), (None, "object")):
        with pytest.raises(fl.crypto.CryptoError, match=rf"^Plan.plain expects real numbers; "
                                                        rf"got an array of {dtype}"):
            plan.plain(x)
    assert plan.plain(np.zeros((0, 3))).shape == (0, 2)
    with pytest.raises(TypeError, match=r"^Plan.report needs the client's keys .*; got None"):
        plan.report(np.ones(3), None)


def test_encrypted_tensor_load_and_encrypt_refuse_by_name():
    """EncryptedTensor.load(data, 'ctx') failed with AttributeError 'key_id', and encrypting
    1e30 with TenSEAL's bare 'encoded values are too large'."""
    pytest.importorskip("tenseal")
    plan = fl.crypto.compile(fl.f64(fl.Dense(3, 2)), (3,))
    keys = plan.keygen()
    data = keys.encrypt(np.ones((2, 3))).serialize()
    with pytest.raises(TypeError, match=r"^EncryptedTensor.load: context must be a "
                                        r"PublicContext or Keys .*; got str"):
        fl.crypto.EncryptedTensor.load(data, "ctx")
    with pytest.raises(fl.crypto.CryptoError, match=r"^encrypt: inputs up to 1e\+30 in size "
                                                    r"are too large to encode at scale 2\^"):
        keys.encrypt(np.full((2, 3), 1e30))
