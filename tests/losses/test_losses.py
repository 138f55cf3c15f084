"""Every loss against its formula written out here in plain NumPy, with check_grads, in
float32, and with clear errors for mismatched shapes. One table drives the tests; a loss
exported without a row fails ``test_every_loss_has_a_row``."""

import itertools
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fluxml as fl
from fluxml.testing import check_grads

RNG = np.random.default_rng(0)
N, C = 5, 4


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def onehot(labels, k=C):
    return np.eye(k)[labels]


LABELS = RNG.integers(0, C, N)
LOGITS = RNG.standard_normal((N, C))
PROBS = softmax(LOGITS)
TARGET_PROBS = softmax(RNG.standard_normal((N, C)))
REAL = RNG.standard_normal((N, C))
REAL2 = RNG.standard_normal((N, C))
POS = RNG.uniform(0.2, 2.0, (N, C))
POS2 = RNG.uniform(0.2, 2.0, (N, C))
UNIT = RNG.uniform(0.05, 0.95, (N, C))
BITS = RNG.integers(0, 2, (N, C)).astype(float)
SIGNS = 2 * BITS - 1
EPS64 = np.finfo(np.float64).eps


def per_sample(fn):
    """The reference sums over the class axis, one value per sample."""
    return lambda yh, y: fn(yh, y).sum(axis=-1)


# (loss, yhat, y, the loss per entry or per sample written out, keywords)
CASES = [
    (fl.mae, REAL, REAL2, lambda yh, y: np.abs(yh - y), {}),
    (fl.mse, REAL, REAL2, lambda yh, y: (yh - y) ** 2, {}),
    (fl.msle, POS, POS2, lambda yh, y: np.log((yh + EPS64) / (y + EPS64)) ** 2, {}),
    (fl.huber_loss, 2 * REAL, REAL2,
     lambda yh, y: np.array([0.5 * e**2 if e < 1 else 1 * (e - 0.5)
                             for e in np.abs(yh - y).ravel()]).reshape(yh.shape), {}),
    (fl.huber_loss, 2 * REAL, REAL2,
     lambda yh, y: np.array([0.5 * e**2 if e < 0.7 else 0.7 * (e - 0.35)
                             for e in np.abs(yh - y).ravel()]).reshape(yh.shape),
     {"delta": 0.7}),
    (fl.poisson_loss, POS, np.round(3 * POS2), lambda yh, y: yh - y * np.log(yh), {}),
    (fl.siamese_contrastive_loss, POS, BITS,
     lambda yh, y: (1 - y) * yh**2 + y * np.maximum(0, 1.5 - yh) ** 2, {"margin": 1.5}),
    (fl.crossentropy, PROBS, onehot(LABELS),
     per_sample(lambda yh, y: -y * np.log(yh + EPS64)), {}),
    (fl.crossentropy, PROBS, TARGET_PROBS, per_sample(lambda yh, y: -y * np.log(yh + EPS64)),
     {}),
    (fl.logitcrossentropy, LOGITS, TARGET_PROBS,
     per_sample(lambda yh, y: -y * np.log(softmax(yh))), {}),
    (fl.binarycrossentropy, UNIT, BITS,
     lambda yh, y: -y * np.log(yh + EPS64) - (1 - y) * np.log(1 - yh + EPS64), {}),
    (fl.logitbinarycrossentropy, 3 * REAL, UNIT,
     lambda yh, y: -y * np.log(sigmoid(yh)) - (1 - y) * np.log(1 - sigmoid(yh)), {}),
    (fl.kldivergence, PROBS, TARGET_PROBS,
     per_sample(lambda yh, y: y * np.log(y) - y * np.log(yh + EPS64)), {}),
    (fl.hinge_loss, REAL, SIGNS, lambda yh, y: np.maximum(0, 1 - yh * y), {}),
    (fl.squared_hinge_loss, REAL, SIGNS, lambda yh, y: np.maximum(0, 1 - yh * y) ** 2, {}),
    (fl.binary_focal_loss, UNIT, BITS,
     lambda yh, y: -np.where(y == 1, (1 - yh) ** 2 * np.log(yh), yh**2 * np.log(1 - yh)),
     {"eps": 0.0}),
    (fl.binary_focal_loss, UNIT, BITS,
     lambda yh, y: -np.where(y == 1, (1 - yh) ** 3 * np.log(yh), yh**3 * np.log(1 - yh)),
     {"eps": 0.0, "gamma": 3}),
    (fl.focal_loss, PROBS, onehot(LABELS),
     per_sample(lambda yh, y: -y * (1 - yh) ** 2 * np.log(yh)), {"eps": 0.0}),
]
# losses over the whole array by default (agg="all", as Flux); another agg: one per sample
WHOLE = [
    (fl.dice_coeff_loss, UNIT, BITS,
     lambda yh, y: 1 - (2 * np.sum(y * yh) + 1) / (np.sum(y**2) + np.sum(yh**2) + 1), {}),
    (fl.tversky_loss, UNIT, BITS,
     lambda yh, y: 1 - (np.sum(y * yh) + 1) / (np.sum(y * yh) + 0.7 * np.sum((1 - y) * yh)
                                               + 0.3 * np.sum(y * (1 - yh)) + 1), {}),
]
IDS = [f"{f.__name__}-{i}" for i, (f, *_) in enumerate(CASES)]
WHOLE_IDS = [f.__name__ for f, *_ in WHOLE]


def test_every_loss_has_a_row():
    covered = {f.__name__ for f, *_ in CASES + WHOLE} | {"label_smoothing", "ctc_loss"}
    assert set(fl.losses.__all__) <= covered, sorted(set(fl.losses.__all__) - covered)
    for name in fl.losses.__all__:
        assert getattr(fl, name) is getattr(fl.losses, name)


@pytest.mark.parametrize("loss, yhat, y, ref, kw", CASES, ids=IDS)
def test_matches_its_formula(loss, yhat, y, ref, kw):
    want = ref(yhat, y)
    np.testing.assert_allclose(loss(yhat, y, **kw), want.mean(), rtol=1e-12)
    np.testing.assert_allclose(loss(yhat, y, agg="sum", **kw), want.sum(), rtol=1e-12)
    np.testing.assert_allclose(loss(yhat, y, agg=np.sum, **kw), want.sum(), rtol=1e-12)
    np.testing.assert_allclose(loss(yhat, y, agg="none", **kw), want, rtol=1e-12)
    np.testing.assert_allclose(loss(yhat, y, agg=None, **kw), want, rtol=1e-12)
    np.testing.assert_allclose(loss(yhat, y, agg=np.max, **kw), want.max(), rtol=1e-12)


@pytest.mark.parametrize("loss, yhat, y, ref, kw", WHOLE, ids=WHOLE_IDS)
def test_whole_array_losses_match_their_formulas(loss, yhat, y, ref, kw):
    np.testing.assert_allclose(loss(yhat, y, **kw), ref(yhat, y), rtol=1e-12)


@pytest.mark.parametrize("loss, yhat, y, ref, kw", WHOLE, ids=WHOLE_IDS)
def test_overlap_losses_take_agg_over_samples(loss, yhat, y, ref, kw):
    """agg="all" (the default) is today's one overlap of the whole batch; any other agg
    combines one loss per sample (its overlap over its own entries, a loop here), in 2-d and
    in 3-d (a batch of masks), with the gradient of each."""
    assert loss(yhat, y, agg="all") == loss(yhat, y) == ref(yhat, y)
    for yh, t in ((yhat, y), (RNG.uniform(0.05, 0.95, (3, 4, 5)),
                              RNG.integers(0, 2, (3, 4, 5)).astype(float))):
        want = np.array([ref(yh[i], t[i]) for i in range(len(yh))])
        np.testing.assert_allclose(loss(yh, t, agg="none"), want, rtol=1e-12)
        np.testing.assert_allclose(loss(yh, t, agg=None), want, rtol=1e-12)
        np.testing.assert_allclose(loss(yh, t, agg="mean"), want.mean(), rtol=1e-12)
        np.testing.assert_allclose(loss(yh, t, agg="sum"), want.sum(), rtol=1e-12)
        np.testing.assert_allclose(loss(yh, t, agg=np.max), want.max(), rtol=1e-12)
        check_grads(lambda a, t=t: loss(a, t, agg="mean"), yh, rtol=1e-4, atol=1e-6)
    if loss is fl.tversky_loss:
        want = [ref(yhat[i], y[i]) for i in range(N)]  # beta reaches the per-sample form too
        np.testing.assert_allclose(loss(yhat, y, agg="none", beta=0.7), want, rtol=1e-12)
        assert not np.allclose(loss(yhat, y, agg="none", beta=0.2), want)
    with pytest.raises(ValueError, match=rf"{loss.__name__}: agg='mean' takes one loss per "
                                         r"sample .* got a scalar"):
        loss(np.float64(0.5), 1.0, agg="mean")
    with pytest.raises(ValueError, match=r"agg must be 'all', 'mean', .* got 'average'"):
        loss(yhat, y, agg="average")


@pytest.mark.parametrize("loss, yhat, y, ref, kw", CASES + WHOLE, ids=IDS + WHOLE_IDS)
def test_gradients(loss, yhat, y, ref, kw):
    check_grads(lambda yh: loss(yh, y, **kw), yhat, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("loss, yhat, y, ref, kw", CASES + WHOLE, ids=IDS + WHOLE_IDS)
def test_float32_stays_float32(loss, yhat, y, ref, kw):
    yh32 = yhat.astype(np.float32)
    out = loss(yh32, y, **kw)  # float64 targets follow the prediction
    assert out.dtype == np.float32
    g = fl.gradient(lambda yh: loss(yh, y.astype(np.float32), **kw), yh32)[0]
    assert g.dtype == np.float32
    np.testing.assert_allclose(out, loss(yhat, y, **kw), rtol=2e-3)


FLOAT_TARGETS = [(c, i) for c, i in zip(CASES + WHOLE, IDS + WHOLE_IDS) if c[2].dtype.kind == "f"]


@pytest.mark.parametrize("loss, yhat, y, ref, kw", [c for c, _ in FLOAT_TARGETS],
                         ids=[i for _, i in FLOAT_TARGETS])
def test_traced_float64_targets_follow_a_float32_prediction(loss, yhat, y, ref, kw):
    # as when the targets are an argument of fl.compile or of the gradient: the same dtype
    # as eagerly, and the targets' gradient in their own dtype
    yh32 = yhat.astype(np.float32)
    out, (g_y,) = fl.withgradient(lambda y: loss(yh32, y, **kw), y)
    assert out.dtype == np.float32
    assert g_y is None or g_y.dtype == np.float64
    np.testing.assert_allclose(out, loss(yh32, y, **kw), rtol=1e-6)


@pytest.mark.parametrize("loss, yhat, y, ref, kw", CASES + WHOLE, ids=IDS + WHOLE_IDS)
def test_shape_mismatch_is_a_clear_error(loss, yhat, y, ref, kw):
    y = y[:, :-1]  # also not integer labels: those have their own check
    with pytest.raises(ValueError, match=rf"{loss.__name__}: .*\(5, 4\).*\(5, 3\)"):
        loss(yhat, y, **kw)


@pytest.mark.parametrize("loss, yhat", [(fl.crossentropy, PROBS),
                                        (fl.logitcrossentropy, LOGITS),
                                        (fl.focal_loss, PROBS)])
def test_integer_labels_equal_onehot_targets(loss, yhat):
    for agg in ("mean", "sum", "none"):
        np.testing.assert_allclose(loss(yhat, LABELS, agg=agg),
                                   loss(yhat, onehot(LABELS), agg=agg), rtol=1e-12)
    # more batch axes, and the class axis elsewhere
    big = np.stack([yhat, yhat[::-1]])  # (2, N, C)
    labels = np.stack([LABELS, LABELS[::-1]])
    np.testing.assert_allclose(loss(big, labels), loss(big, onehot(labels)), rtol=1e-12)
    moved = np.moveaxis(big, -1, 0)  # (C, 2, N)
    np.testing.assert_allclose(loss(moved, labels, axis=0), loss(big, labels), rtol=1e-12)
    check_grads(lambda yh: loss(yh, LABELS), yhat, rtol=1e-4)
    with pytest.raises(ValueError, match=rf"{loss.__name__}: labels must lie in \[0, 4\)"):
        loss(yhat, LABELS + 1)
    with pytest.raises(ValueError, match=rf"{loss.__name__}: integer labels must have"):
        loss(yhat, LABELS[:-1])
    with pytest.raises(ValueError, match=r"class labels must be integers: y.astype\(int\)"):
        loss(yhat, LABELS.astype(float))  # labels read as floats


def test_shape_mismatch_says_the_likely_slip():
    with pytest.raises(ValueError, match=r"\(5, 1\) and the target \(5,\).*axis of length 1"):
        fl.mse(np.zeros((5, 1)), np.zeros(5))
    with pytest.raises(ValueError, match=r"transposed\? fluxml is batch first"):
        fl.logitcrossentropy(np.zeros((3, 10)), np.zeros((10, 3)))  # Flux's (classes, N)


def test_logit_forms_never_overflow():
    big = np.array([[1e4, -1e4, 0.0], [-3e4, 2e4, 1e4]], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ce = fl.logitcrossentropy(big, np.array([1, 1]), agg="none")
        np.testing.assert_allclose(ce, [2e4, 0.0], rtol=1e-6)
        g = fl.gradient(lambda x: fl.logitcrossentropy(x, np.array([1, 1])), big)[0]
        assert np.all(np.isfinite(g))
        y = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]], dtype=np.float32)
        bce = fl.logitbinarycrossentropy(big, y, agg="none")
        np.testing.assert_allclose(bce, [[0, 0, np.log(2)], [0, 0, 1e4]], rtol=1e-6)
        g = fl.gradient(lambda x: fl.logitbinarycrossentropy(x, y), big)[0]
        assert np.all(np.isfinite(g)) and g.dtype == np.float32
        # probabilities of exactly 0 and 1 with their eps
        p = np.array([[0.0, 1.0]])
        assert np.isfinite(fl.binarycrossentropy(p, np.array([[1.0, 0.0]])))
        assert np.isfinite(fl.crossentropy(p, np.array([[1.0, 0.0]])))
        assert np.isfinite(fl.kldivergence(p, np.array([[1.0, 0.0]])))


def test_label_smoothing():
    y = onehot(LABELS)
    np.testing.assert_allclose(fl.label_smoothing(y, 0.1), y * 0.9 + 0.1 / C)
    np.testing.assert_allclose(fl.label_smoothing(BITS, 0.2, axis=None), BITS * 0.8 + 0.1)
    np.testing.assert_allclose(fl.label_smoothing(y, 0.1).sum(axis=-1), 1.0)
    with pytest.raises(ValueError, match=r"label_smoothing: alpha must be a number in \(0, 1\)"):
        fl.label_smoothing(y, 1.5)


def test_bad_agg():
    with pytest.raises(ValueError, match="agg must be"):
        fl.mse(REAL, REAL2, agg="average")


# --- ctc ----------------------------------------------------------------------------------


def ctc_brute_force(logits, labels, blank):
    """-log of the total probability of every path that collapses to ``labels``."""
    p = softmax(logits)
    frames, classes = logits.shape
    total = 0.0
    for path in itertools.product(range(classes), repeat=frames):
        collapsed = [c for i, c in enumerate(path) if i == 0 or c != path[i - 1]]
        if [c for c in collapsed if c != blank] == list(labels):
            total += np.prod(p[np.arange(frames), path])
    return -np.log(total)


@pytest.mark.parametrize("labels, blank", [([0, 1], -1), ([1, 1], -1), ([2], 0), ([], -1),
                                           ([0, 2, 0], 1)])
def test_ctc_against_every_alignment(labels, blank):
    logits = RNG.standard_normal((5, 3))
    want = ctc_brute_force(logits, labels, blank % 3)
    got = fl.ctc_loss(logits, np.array(labels, dtype=int), blank=blank)
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_ctc_batch_and_gradients():
    logits = RNG.standard_normal((3, 6, 4))
    labels = [np.array([0, 1, 1]), np.array([2]), np.array([1, 0])]
    lengths = np.array([6, 4, 5])
    each = [fl.ctc_loss(logits[i, :lengths[i]], labels[i]) for i in range(3)]
    np.testing.assert_allclose(fl.ctc_loss(logits, labels, input_lengths=lengths, agg="none"),
                               each, rtol=1e-12)
    np.testing.assert_allclose(fl.ctc_loss(logits, labels, input_lengths=lengths),
                               np.mean(each), rtol=1e-12)
    check_grads(lambda x: fl.ctc_loss(x, labels, input_lengths=lengths), logits, rtol=1e-4)
    x32 = logits.astype(np.float32)
    assert fl.ctc_loss(x32, labels).dtype == np.float32
    assert fl.gradient(lambda x: fl.ctc_loss(x, labels), x32)[0].dtype == np.float32


def test_ctc_errors():
    logits = np.zeros((3, 4))
    with pytest.raises(ValueError, match="too few"):
        fl.ctc_loss(logits, np.array([0, 0, 1]))  # needs 4 frames
    with pytest.raises(ValueError, match="not be the blank 3"):
        fl.ctc_loss(logits, np.array([3]))
    with pytest.raises(ValueError, match=r"shape \(T, classes\) or \(N, T, classes\)"):
        fl.ctc_loss(np.zeros(4), np.array([1]))
    with pytest.raises(ValueError, match="2 sequences of logits but 1 label"):
        fl.ctc_loss(np.zeros((2, 3, 4)), [np.array([1])])
    with pytest.raises(ValueError, match=r"input_lengths must hold one length per sequence, "
                                         r"2; got shape \(1,\)"):
        fl.ctc_loss(np.zeros((2, 3, 4)), [np.array([1])] * 2, input_lengths=[3])
    # one sequence, one length: a number (was "iteration over a 0-d array")
    assert fl.ctc_loss(logits, np.array([0]), input_lengths=2) == fl.ctc_loss(logits[:2],
                                                                             np.array([0]))


# --- fuzz: the logit forms against references written another way -------------------------

@settings(max_examples=40, deadline=None)
@given(hnp.arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(2, 5)),
                  elements=st.floats(-1e4, 1e4)),
       st.integers(0, 2**32 - 1))
def test_logit_losses_fuzz(x, seed):
    rng = np.random.default_rng(seed)
    y = rng.dirichlet(np.ones(x.shape[1]), x.shape[0])
    m = x.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(x - m).sum(axis=1))
    want = lse * y.sum(axis=1) - (y * x).sum(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = fl.logitcrossentropy(x, y, agg="none")
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9 * (1 + np.abs(x).max()))
        bits = rng.uniform(0, 1, x.shape)
        want = np.maximum(x, 0) - x * bits + np.log1p(np.exp(-np.abs(x)))
        got = fl.logitbinarycrossentropy(x, bits, agg="none")
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9 * (1 + np.abs(x).max()))
        x32 = x.astype(np.float32)
        for loss, target in ((fl.logitcrossentropy, y), (fl.logitbinarycrossentropy, bits)):
            out, g = fl.withgradient(lambda z: loss(z, target), x32)
            assert out.dtype == np.float32 and np.isfinite(out)
            assert g[0].dtype == np.float32 and np.all(np.isfinite(g[0]))


@pytest.mark.parametrize("loss, yhat", [(fl.kldivergence, PROBS), (fl.logitcrossentropy, LOGITS),
                                        (fl.mse, REAL), (fl.logitbinarycrossentropy, LOGITS),
                                        (fl.crossentropy, PROBS), (fl.focal_loss, PROBS)])
def test_gradients_with_respect_to_targets_too(loss, yhat):
    check_grads(lambda yh, y: loss(yh, y), yhat, TARGET_PROBS, rtol=1e-4)


@pytest.mark.parametrize("loss, yhat, y, slope", [
    (fl.poisson_loss, POS, np.round(3 * POS2) * BITS, lambda yh: -np.log(yh)),
    (fl.crossentropy, PROBS, onehot(LABELS), lambda yh: -np.log(yh + EPS64)),
    (fl.binarycrossentropy, UNIT, BITS, lambda yh: np.log((1 - yh + EPS64) / (yh + EPS64))),
])
def test_gradient_with_respect_to_a_zero_target(loss, yhat, y, slope):
    """d/dy of y log(yhat) is log(yhat) at y == 0 too: it was 0 there (the target's zeros
    were masked out of the product). Found by tests/nnlib/torch_fuzz.py against torch."""
    assert np.any(y == 0)
    (g,) = fl.gradient(lambda y: loss(yhat, y, agg="sum"), y)
    np.testing.assert_allclose(g, slope(yhat), rtol=1e-12)
    with warnings.catch_warnings():  # 0 log 0 is still 0, without a warning
        warnings.simplefilter("error")
        assert np.isfinite(fl.crossentropy(np.eye(3), np.eye(3), eps=0.0))


def test_xlogy_is_zero_wherever_x_is_zero():
    """x log y is 0 at x == 0 for y 0, negative or infinite (as torch.xlogy), with no
    warning: a 0 target beside a prediction outside the log's domain gave NaN."""
    from fluxml.losses.common import xlogy

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = xlogy(np.array([0.0, 0.0, 0.0, 2.0]), np.array([-1.0, np.inf, 0.0, 3.0]))
        np.testing.assert_array_equal(got, [0.0, 0.0, 0.0, 2 * np.log(3.0)])
        want = 0.5 - np.log(0.5) - 0.2 + 2 - 3 * np.log(2.0)
        got = fl.poisson_loss(np.array([0.5, -0.2, 2.0]), np.array([1.0, 0.0, 3.0]), agg="sum")
        assert got == pytest.approx(want)


def test_ctc_loss_float16_gradient_is_finite():
    """ctc_loss's log 0 was -1e30, which float16 rounds to -inf: logaddexp of two states not
    yet reached (both -inf) has a NaN derivative, and every entry of the gradient was NaN
    in float16 (the loss itself was right). Checked against the negative log of the summed
    probabilities of every alignment, enumerated by hand and differentiated in float64."""
    rng = np.random.default_rng(0)
    frames, classes, label = 4, 3, [0, 1]  # the blank is class 2, the last
    yhat = rng.standard_normal((frames, classes)).astype(np.float16)

    def collapse(path):
        out = [c for i, c in enumerate(path) if i == 0 or c != path[i - 1]]
        return [c for c in out if c != classes - 1]

    paths = [p for p in itertools.product(range(classes), repeat=frames)
             if collapse(p) == label]

    def by_hand(y):
        logp = y - fl.logsumexp(y, axis=-1, keepdims=True)
        scores = np.stack([sum(logp[t, c] for t, c in enumerate(p)) for p in paths])
        return -fl.logsumexp(scores)

    value, (g,) = fl.withgradient(lambda y: fl.ctc_loss(y, np.array(label)), yhat)
    want_value, (want,) = fl.withgradient(by_hand, yhat.astype(np.float64))
    assert g.dtype == np.float16 and np.all(np.isfinite(g))
    np.testing.assert_allclose(value, want_value, rtol=2e-3)
    np.testing.assert_allclose(g, want, atol=3e-3)


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(st.sampled_from([np.float32, np.float64]),
                  hnp.array_shapes(min_dims=0, max_dims=3, max_side=9),
                  elements=st.floats(-1e3, 1e3, width=32)),
       st.integers(0, 2**32 - 1))
def test_mse_mean_is_numpys_bit_for_bit(yhat, seed):
    """mse's mean skips np.mean's Python wrapper (its sum, then the division by an intp
    count): plainly and under the gradient it is np.mean's value, bit for bit, and its type."""
    y = np.random.default_rng(seed).normal(size=yhat.shape).astype(yhat.dtype)
    want = np.mean(np.square(yhat - y))
    got = fl.mse(yhat, y)
    assert type(got) is type(want) and got.tobytes() == want.tobytes()
    traced, _ = fl.withgradient(lambda a: fl.mse(a, y), yhat)
    assert traced == want


def test_mse_mean_of_nothing_warns_as_numpy():
    """The empty mean still goes through np.mean: NaN with its 'Mean of empty slice'."""
    with pytest.warns(RuntimeWarning, match="Mean of empty slice"), \
            np.errstate(invalid="ignore"):  # (NumPy's 0 / 0 warns too)
        assert np.isnan(fl.mse(np.zeros(0, np.float32), np.zeros(0, np.float32)))
