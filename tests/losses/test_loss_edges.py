"""Edge cases found by an audit against PyTorch and Flux: the class axis, integer one-hot
targets, probabilities of exactly 0 and 1 in the focal losses, and the CTC loss's settings.
Each test fails on the code before its fix."""

import warnings

import numpy as np
import pytest

import fluxml as fl
from fluxml.testing import check_grads

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


def focal_by_hand(p_true, gamma, eps):
    """-(1 - p)**gamma log(p + eps) of the true class's probability, one number at a time."""
    return np.array([-((1.0 - p) ** gamma) * np.log(p + eps) for p in p_true])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_binary_focal_loss_at_probabilities_0_and_1(dtype):
    """yhat exactly 1 with target 0 gave NaN (p = 1 - (yhat + eps) = -eps, its log NaN), and
    yhat exactly 1 with target 1 and a fractional gamma too ((1 - (1 + eps))**0.5)."""
    yhat = np.array([1.0, 0.0, 1.0, 0.0, 0.3], dtype=dtype)
    y = np.array([0.0, 1.0, 1.0, 0.0, 1.0])
    eps = float(np.finfo(dtype).eps)
    p_true = np.where(y == 1, yhat.astype(float), 1 - yhat.astype(float))
    for gamma in (0.0, 0.5, 2.0):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            got = fl.binary_focal_loss(yhat, y, gamma=gamma, agg="none")
        assert got.dtype == dtype
        np.testing.assert_allclose(got, focal_by_hand(p_true, gamma, eps), rtol=1e-6)
    # gamma 0 is binarycrossentropy for 0/1 targets, at 0 and 1 too
    np.testing.assert_allclose(fl.binary_focal_loss(yhat, y, gamma=0.0, agg="none"),
                               fl.binarycrossentropy(yhat, y, agg="none"), rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_focal_loss_at_probability_1_with_a_fractional_gamma(dtype):
    """A softmax output of exactly 1 (saturated logits) with gamma 0.5 gave NaN: (1 - (1 +
    eps))**0.5; and eps=0 one-hot targets gave NaN where a class without weight had
    probability 0 (0 * log 0)."""
    yhat = np.array([[1.0, 0.0, 0.0], [0.2, 0.5, 0.3]], dtype=dtype)
    labels = np.array([0, 2])
    eps = float(np.finfo(dtype).eps)
    want = focal_by_hand([1.0, 0.3], 0.5, eps)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for y in (labels, np.eye(3)[labels]):
            got = fl.focal_loss(yhat, y, gamma=0.5, agg="none")
            assert got.dtype == dtype
            np.testing.assert_allclose(got, want, rtol=1e-6)
        got = fl.focal_loss(yhat, np.eye(3)[labels], gamma=2.0, eps=0.0, agg="none")
        np.testing.assert_allclose(got, focal_by_hand([1.0, 0.3], 2.0, 0.0), rtol=1e-6)
        g = fl.gradient(lambda p: fl.focal_loss(p, labels, gamma=2.0), yhat)[0]
        assert g.dtype == dtype and np.all(np.isfinite(g))


@pytest.mark.parametrize("margin", [float("nan"), float("inf"), "1", True])
def test_siamese_margin_must_be_a_finite_number(margin):
    """A NaN margin passed the `margin < 0` check and made every dissimilar pair's loss NaN;
    an infinite one made it infinite."""
    with pytest.raises(ValueError, match="siamese_contrastive_loss: margin must be a finite "
                                         "number >= 0"):
        fl.siamese_contrastive_loss(np.ones(2), np.array([0.0, 1.0]), margin=margin)


@pytest.mark.parametrize("loss", [fl.crossentropy, fl.binarycrossentropy, fl.kldivergence,
                                  fl.binary_focal_loss, fl.focal_loss])
@pytest.mark.parametrize("eps", [1e6, 0.5, 1.0])
def test_an_eps_too_large_to_keep_a_log_finite_is_refused(loss, eps):
    """eps=1e6 (a slip for 1e-6) gave a cross-entropy of -13.8, and eps=1 a negative loss,
    silently: eps only keeps log(yhat + eps) finite."""
    name = loss.__name__
    with pytest.raises(ValueError, match=rf"^{name}: eps \(added to the prediction, to keep "
                                         rf"its log finite\) must be a number in \[0, 0.1\]"):
        loss(PROBS, np.eye(3), eps=eps)
    assert np.isfinite(loss(PROBS, np.eye(3), eps=1e-3))


def test_msle_takes_eps_1_but_not_a_negative_one():
    """msle's eps=1 is Keras's log1p form: not bounded above as the probability losses'."""
    y = np.array([0.0, 1.0, 3.0])
    np.testing.assert_allclose(fl.msle(y + 1, y, eps=1.0),
                               np.mean(np.square(np.log1p(y + 1) - np.log1p(y))))
    with pytest.raises(ValueError, match=r"^msle: eps \(added to the prediction\) must be a "
                                         r"finite number >= 0; got -1.0"):
        fl.msle(y, y, eps=-1.0)


def test_ctc_blank_must_be_a_class_of_the_logits():
    """blank was taken modulo the classes: blank=5 (or -4) of 3 classes ran with blank 2, a
    float 1.5 with blank 1, silently."""
    x = np.random.default_rng(0).standard_normal((4, 3))
    for blank in (5, 3, -4, 1.5, None):
        with pytest.raises(ValueError, match=rf"ctc_loss: blank must be a class index, an "
                                             rf"int in \[-3, 3\).*got {blank}"):
            fl.ctc_loss(x, np.array([0, 1]), blank=blank)
    assert fl.ctc_loss(x, np.array([0, 1]), blank=-1) == fl.ctc_loss(x, np.array([0, 1]),
                                                                     blank=np.int64(2))


def test_ctc_input_lengths_must_be_integers():
    """An input length of 2.5 ran 3 frames (t < 2.5), and True one, silently."""
    x = np.zeros((1, 4, 3))
    for lengths in ([2.5], [True], [3.0]):
        with pytest.raises(ValueError, match=r"ctc_loss: input_lengths must be integers"):
            fl.ctc_loss(x, [np.array([0])], input_lengths=lengths)
    # (4 frames of 3 equal classes: label 0 once in 2 frames is 3 paths of 9)
    got = fl.ctc_loss(x, [np.array([0])], input_lengths=np.array([2], np.int32))
    assert got == pytest.approx(-np.log(3 / 9))


def test_ctc_of_an_empty_batch():
    """An empty batch failed with "max() arg is an empty sequence"; now no losses."""
    x = np.zeros((0, 4, 3), np.float32)
    got = fl.ctc_loss(x, [], agg="none")
    assert got.shape == (0,) and got.dtype == np.float32
    assert fl.ctc_loss(x, [], agg="sum") == 0.0
    g = fl.gradient(lambda z: fl.ctc_loss(z, [], agg="sum"), x)[0]
    assert g.shape == x.shape and g.dtype == np.float32


@pytest.mark.parametrize("loss", [fl.logitcrossentropy, fl.mse, fl.hinge_loss,
                                  fl.logitbinarycrossentropy])
@pytest.mark.parametrize("kind", [np.int64, bool])
def test_integer_targets_under_compile_keep_the_prediction_dtype(loss, kind):
    """Under fl.compile the targets are traced, and a traced integer or bool target was not
    cast to the prediction's float dtype (only float ones were): a float32 loss of integer
    one-hot targets came out float64 there, float32 eagerly."""
    x = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    y = np.eye(3, dtype=kind)[[0, 2, 1, 1]]
    compiled = fl.compile(lambda p, t: loss(p, t))(x, y)
    eager = loss(x, y)
    assert np.asarray(compiled).dtype == np.asarray(eager).dtype == np.float32
    assert float(compiled) == pytest.approx(float(eager), rel=1e-6)


def test_label_smoothing_refuses_class_labels():
    """Integer class labels [0, 2, 1] were smoothed as if one-hot along their only axis:
    [0.033, 1.83, 0.93] (k = 3 entries), silently; one-hot integer rows still smooth."""
    with pytest.raises(ValueError, match=r"label_smoothing: y must be one-hot or probability "
                                         r"targets .*got integers from 0 to 2: class labels\? "
                                         r"fl.onehotbatch"):
        fl.label_smoothing(np.array([0, 2, 1]), 0.1)
    onehot = np.eye(3, dtype=np.int64)[[0, 2, 1]]
    np.testing.assert_allclose(fl.label_smoothing(onehot, 0.3), onehot * 0.7 + 0.1)
    np.testing.assert_allclose(fl.label_smoothing(np.array([1, 0]), 0.2, axis=None), [0.9, 0.1])


@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_focal_loss_gradient_where_a_wrong_class_reaches_probability_1(gamma):
    """A confidently wrong float32 softmax reaches 1 exactly at a class without target
    weight; (1 - yhat)**gamma's infinite slope there (gamma < 1) times xlogy's 0 gave a NaN
    gradient, where the term is 0 whatever yhat is (review)."""
    logits = np.array([[30.0, 0.0, 0.0]], np.float32)
    y = np.array([[0.0, 1.0, 0.0]], np.float32)
    eps = float(np.finfo(np.float32).eps)  # (the same in float64, for the reference)
    (g,) = fl.gradient(lambda z: fl.focal_loss(fl.softmax(z), y, gamma=gamma, eps=eps), logits)
    assert g.dtype == np.float32 and np.all(np.isfinite(g))
    ref = fl.gradient(lambda z: fl.focal_loss(fl.softmax(z), y, gamma=gamma, eps=eps),
                      logits.astype(np.float64))[0]  # (a softmax just below 1 there)
    np.testing.assert_allclose(g, ref, rtol=1e-3, atol=1e-12)


def test_compiled_label_smoothing_checks_integer_targets_on_every_call():
    """Compiled, integer class labels were smoothed as one-hot rows ([0.033 1.833 0.933] on
    every call), where eager refuses them (review): the check runs on every call."""
    smooth = fl.compile(lambda y: fl.label_smoothing(y, 0.1))
    onehot = np.eye(3, dtype=int)[[0, 2]]
    np.testing.assert_allclose(smooth(onehot), fl.label_smoothing(onehot, 0.1))
    with pytest.raises(ValueError, match="label_smoothing: y must be one-hot"):
        smooth(np.array([[0, 2, 1], [1, 0, 0]]))


REAL_ONLY = ["msle", "poisson_loss", "siamese_contrastive_loss", "dice_coeff_loss",
             "tversky_loss", "crossentropy", "logitcrossentropy", "binarycrossentropy",
             "logitbinarycrossentropy", "kldivergence", "hinge_loss", "squared_hinge_loss",
             "binary_focal_loss", "focal_loss"]


@pytest.mark.parametrize("name", REAL_ONLY)
def test_losses_without_a_complex_form_refuse_complex_values(name):
    """Complex predictions gave complex losses (crossentropy 0.63-0.39j), lexicographic
    maxima (hinge_loss) or NumPy's error (logitbinarycrossentropy); complex targets beside a
    real prediction the same. Now a TypeError names the loss; the losses of a difference's
    modulus (mse, mae, huber_loss) still take complex values."""
    loss = getattr(fl, name)
    yhat = np.array([[0.3 + 0.1j, 0.7], [0.4, 0.6 - 0.2j]])
    y = np.array([[0.0, 1.0], [1.0, 0.0]])
    with pytest.raises(TypeError, match=rf"{name} takes real predictions and targets; got a "
                                        r"complex prediction"):
        loss(yhat, y)
    with pytest.raises(TypeError, match=rf"{name} takes real .* got a complex target"):
        loss(np.abs(yhat), y + 0.5j)
    for ok in (fl.mse, fl.mae, fl.huber_loss):
        assert np.isrealobj(ok(yhat, y))


# --- mse as one primitive ------------------------------------------------------------------

def _composite_mse(yhat, y, agg):
    d = np.square(yhat - y)
    return np.mean(d) if agg == "mean" else np.sum(d)


@pytest.mark.parametrize("agg", ["mean", "sum"])
def test_fused_mse_is_the_composite_bit_for_bit_with_its_gradients(agg):
    """fl.mse of real arrays is one primitive (one tape node instead of four): its value is
    the composite's exactly, in the prediction's dtype, and its derivatives of both
    arguments, to third order in reverse and forward mode, match finite differences."""
    rng = np.random.default_rng(3)
    for dtype in (np.float32, np.float64):
        yhat = rng.standard_normal((6, 3)).astype(dtype)
        y = rng.standard_normal((6, 3)).astype(dtype)
        out = fl.mse(yhat, y, agg=agg)
        want = _composite_mse(yhat, y, agg)
        assert out == want and out.dtype == dtype
        v, (gy, gt) = fl.withgradient(lambda a, b: fl.mse(a, b, agg=agg), yhat, y)
        scale = 2 / yhat.size if agg == "mean" else 2
        np.testing.assert_allclose(gy, scale * (yhat - y), rtol=1e-6)
        np.testing.assert_allclose(gt, -gy, rtol=1e-6)
        assert gy.dtype == gt.dtype == dtype and v == want
    yhat64, y64 = rng.standard_normal((4, 2)), rng.standard_normal((4, 2))
    check_grads(lambda a, b: fl.mse(a, b, agg=agg), yhat64, y64, order=3)


def test_fused_mse_records_one_node_and_agrees_under_compile_and_jvp(monkeypatch):
    from fluxml.ad.reverse import ReverseTrace

    traces = []
    init = ReverseTrace.__init__

    def recording(self):
        init(self)
        traces.append(self)

    monkeypatch.setattr(ReverseTrace, "__init__", recording)
    yhat = np.linspace(-1, 1, 8).reshape(4, 2)
    y = np.ones((4, 2))
    value, _ = fl.pullback(lambda a: fl.mse(a, y), yhat)
    assert [e[0].name for e in traces[-1].tape if e is not None] == ["mse"]
    monkeypatch.undo()
    compiled = fl.compile(lambda a: fl.withgradient(lambda b: fl.mse(b, y), a))
    v, (g,) = compiled(yhat)
    np.testing.assert_allclose(v, value, rtol=1e-15)
    np.testing.assert_allclose(g, 2 / 8 * (yhat - y), rtol=1e-15)
    t = np.arange(8.0).reshape(4, 2)
    _, tangent = fl.jvp(lambda a: fl.mse(a, y), (yhat,), (t,))
    np.testing.assert_allclose(tangent, 2 / 8 * np.sum((yhat - y) * t), rtol=1e-15)


def test_fused_mse_of_empty_arrays_is_nan_with_an_empty_gradient():
    """As the composite: NumPy's mean of no values (nan, with its warning), and a gradient
    of the prediction's (empty) shape, not a ZeroDivisionError from the rule's 2 / n."""
    empty = np.zeros((0, 3))
    with pytest.warns(RuntimeWarning):
        v, (g,) = fl.withgradient(lambda a: fl.mse(a, empty), empty)
    assert np.isnan(v) and g.shape == (0, 3)
    assert fl.mse(empty, empty, agg="sum") == 0


def test_fused_mse_jvp_of_empty_arrays_is_nan_as_the_composite():
    empty = np.zeros((0, 2))
    with pytest.warns(RuntimeWarning):
        value, tangent = fl.jvp(lambda a: fl.mse(a, empty), (empty,), (empty,))
    assert np.isnan(value) and np.isnan(tangent)


@pytest.mark.parametrize("yhat", [[1.5, 0.5], [0.5, -0.5]])
def test_binarycrossentropy_refuses_predictions_outside_0_1(yhat):
    # logits passed by mistake gave a negative loss (-log 1.5), silently; PyTorch raises too
    with pytest.raises(ValueError, match=r"binarycrossentropy: yhat must be probabilities in "
                                         r"\[0, 1\].*Logits\? Use logitbinarycrossentropy"):
        fl.binarycrossentropy(np.array(yhat), np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match="yhat must be probabilities"):  # inside a gradient
        fl.gradient(lambda p: fl.binarycrossentropy(p, np.array([1.0, 0.0])), np.array(yhat))
    assert np.isnan(fl.binarycrossentropy(np.array([np.nan, 0.5]), np.array([1.0, 0.0])))
