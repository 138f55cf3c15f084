"""Flux.jl's test/losses.jl and test/ctc.jl translated to fluxml, with Flux's own numbers.
fluxml is batch first: Flux's ``(classes, N)`` matrices are ``(N, classes)`` here (the class
axis the last, ``axis=-1``), and Flux's ``dims=0`` of label_smoothing is ``axis=None``;
class labels start at 0."""

import numpy as np
import pytest

import fluxml as fl
from fluxml.losses.common import xlogx, xlogy

RNG = np.random.default_rng(21)


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def test_xlogx_and_xlogy():
    # losses.jl "xlogx & xlogy"
    assert xlogx(0.0) == 0 and np.isnan(xlogx(np.nan))
    assert xlogx(2.0) == pytest.approx(2 * np.log(2))
    assert xlogy(0.0, 1.0) == 0
    assert np.isnan(xlogy(np.nan, 1.0)) and np.isnan(xlogy(1.0, np.nan))
    assert np.isnan(xlogy(np.nan, np.nan))
    assert xlogy(2.0, 3.0) == pytest.approx(2 * np.log(3))


def test_regression_losses():
    # losses.jl "mse", "mae", "huber_loss", "msle"
    y, yhat = np.array([1.0, 1, 0, 0]), np.array([0.9, 0.1, 0.1, 0.9])
    assert fl.mse(yhat, y) == pytest.approx((0.1 ** 2 + 0.9 ** 2) / 2)
    assert fl.mae(yhat, y) == pytest.approx(0.5)
    assert fl.huber_loss(yhat, y) == pytest.approx(0.20500000000000002)
    assert fl.msle(np.array([345.0, 332, 789]), np.array([123.0, 456, 789])) == \
        pytest.approx(0.38813985859136585)


def test_mse_of_complex_values_is_the_mean_of_abs2():
    # losses.jl "mse": mse(0 + 0im, 1 + 1im) == 2. Before, (yhat - y)**2 made it 2j, and a
    # complex target beside a real prediction lost its imaginary part (mse 1.0)
    assert fl.mse(np.array(0j), np.array(1 + 1j)) == 2
    assert fl.mse(np.array(0.0), np.array(1 + 1j)) == 2
    z, t = RNG.normal(size=3) + 1j * RNG.normal(size=3), RNG.normal(size=3) + 0j
    assert fl.mse(z, t) == pytest.approx(np.mean(np.abs(z - t) ** 2), rel=1e-12)
    assert np.isrealobj(fl.mse(z, t, agg="none"))
    g = fl.gradient(lambda z: fl.mse(z, t), z)[0]
    np.testing.assert_allclose(g, fl.gradient(lambda z: np.mean(np.abs(z - t) ** 2), z)[0])
    assert fl.mae(np.float32(0), np.array(3 + 4j)) == 5


def test_crossentropy_and_logitcrossentropy():
    # losses.jl "crossentropy", "logitcrossentropy": Flux's (2, 4) is (4, 2) here
    y = fl.onehotbatch([1, 1, 0, 0], 2).astype(float)
    yhat = np.array([[0.1, 0.9], [0.9, 0.1], [0.9, 0.1], [0.1, 0.9]])
    v = np.log(0.1 / 0.9)
    logyhat = np.array([[v, 0.0], [0.0, v], [0.0, v], [v, 0.0]])
    lossvalue = 1.203972804325936
    assert fl.crossentropy(yhat, y) == pytest.approx(lossvalue)
    assert fl.crossentropy(yhat, fl.label_smoothing(y, 0.1)) == \
        pytest.approx(1.2039728043259348)
    assert fl.crossentropy(np.array([0.1, 0.0, 0.9]), np.array([0.1, 0.0, 0.9])) == \
        pytest.approx(fl.crossentropy(np.array([0.1, 0.9]), np.array([0.1, 0.9])))
    yl, ylp, yls = np.array([[0.0, 1]]), np.array([[0.9, 0.1]]), np.array([[0.1, 0.9]])
    assert fl.crossentropy(ylp, fl.label_smoothing(yl, 0.2)) == \
        pytest.approx(-np.sum(yls * np.log(ylp)))
    assert fl.crossentropy(ylp, yl) == pytest.approx(-np.sum(yl * np.log(ylp)))
    ya = fl.onehotbatch([1, 1, 1, 0, 0], 2).astype(float)
    assert fl.crossentropy(ya, ya, eps=0) == 0
    y_sim = ya * 0.8 + 0.1
    y_dis = y_sim[:, ::-1].copy()
    smoothed = fl.label_smoothing(ya, 0.2)
    assert fl.crossentropy(y_sim, ya) < fl.crossentropy(y_sim, smoothed)
    assert fl.crossentropy(y_dis, ya) > fl.crossentropy(y_dis, smoothed)
    assert fl.logitcrossentropy(logyhat, y) == pytest.approx(lossvalue)
    logylp = np.array([[0.0, v]])
    assert fl.logitcrossentropy(logylp, yl) == pytest.approx(-np.sum(yl * fl.logsoftmax(logylp)))
    assert fl.logitcrossentropy(logylp, fl.label_smoothing(yl, 0.2)) == \
        pytest.approx(-np.sum(yls * fl.logsoftmax(logylp)))


def test_binary_crossentropies_and_label_smoothing():
    # losses.jl "binarycrossentropy", "logitbinarycrossentropy", "label_smoothing"
    logyhat, y = RNG.normal(size=3), RNG.random(3)
    s = sigmoid(logyhat)
    yls = y * 0.8 + 0.1
    np.testing.assert_allclose(
        fl.binarycrossentropy(s, fl.label_smoothing(y, 0.2, axis=None), eps=0, agg="none"),
        -yls * np.log(s) - (1 - yls) * np.log(1 - s))
    assert fl.binarycrossentropy(s, y, eps=0) == \
        pytest.approx(np.mean(-y * np.log(s) - (1 - y) * np.log(1 - s)))
    e = np.finfo(np.float64).eps
    assert fl.binarycrossentropy(s, y) == \
        pytest.approx(np.mean(-y * np.log(s + e) - (1 - y) * np.log(1 - s + e)))
    # (Flux broadcasts a constant label; fluxml asks for the prediction's shape)
    assert fl.binarycrossentropy(np.array([0.1, 0.2, 0.9]), np.ones(3)) == \
        pytest.approx(-np.mean(np.log([0.1, 0.2, 0.9])))
    smooth = fl.label_smoothing(y, 0.2, axis=None)
    np.testing.assert_allclose(fl.logitbinarycrossentropy(logyhat, smooth, agg="none"),
                               fl.binarycrossentropy(s, smooth, eps=0, agg="none"))
    assert fl.logitbinarycrossentropy(logyhat, y) == \
        pytest.approx(fl.binarycrossentropy(s, y, eps=0))
    np.testing.assert_array_equal(fl.label_smoothing(np.array([[0.0, 1]]), 0.2), [[0.1, 0.9]])
    for alpha in (1.2, 0.0):
        with pytest.raises(ValueError, match="label_smoothing: alpha must be a number in"):
            fl.label_smoothing(np.array([0.0, 0, 1, 0]), alpha)


def test_divergence_hinge_poisson_and_overlap_losses():
    # losses.jl "kldivergence", "hinge_loss", "squared_hinge_loss", "poisson_loss",
    # "dice_coeff_loss", "tversky_loss": Flux's row vectors (1, n) are (n, 1) here
    col = lambda *v: np.array(v, float)[:, None]  # noqa: E731
    assert fl.kldivergence(np.array([0.1, 0.0, 0.9]), np.array([0.1, 0.0, 0.9])) == \
        pytest.approx(fl.kldivergence(np.array([0.1, 0.9]), np.array([0.1, 0.9])))
    assert fl.kldivergence(col(4, 5, 6), col(1, 2, 3)) == pytest.approx(-1.7661057888493457)
    assert fl.kldivergence(col(1, 2, 3), col(1, 2, 3)) == pytest.approx(0, abs=1e-15)
    y, yhat = np.array([1.0, 2, 3, 4]), np.array([5.0, 6, 7, 8])
    assert fl.hinge_loss(yhat, y) == 0 and fl.squared_hinge_loss(yhat, y) == 0
    assert fl.hinge_loss(y, 0.5 * y) == pytest.approx(0.125)
    assert fl.squared_hinge_loss(y, 0.5 * y) == pytest.approx(0.0625)
    assert fl.poisson_loss(col(0.4, 0.5, 0.6), col(0.1, 0.2, 0.3)) == \
        pytest.approx(0.6278353988097339)
    assert fl.poisson_loss(col(0.1, 0.2, 0.3), col(0.1, 0.2, 0.3)) == \
        pytest.approx(0.5044459776946685)
    y, yhat = col(1.0, 0.5, 0.3, 2.4), col(0, 1.4, 0.5, 1.2)
    assert fl.dice_coeff_loss(yhat, y) == pytest.approx(0.2799999999999999)
    assert fl.dice_coeff_loss(y, y) == pytest.approx(0.0)
    assert fl.tversky_loss(yhat, y) == pytest.approx(-0.06772009029345383)
    assert fl.tversky_loss(yhat, y, beta=0.8) == pytest.approx(-0.09490740740740744)
    assert fl.tversky_loss(y, y) == pytest.approx(-0.5576923076923075)


def test_no_spurious_promotions():
    # losses.jl "no spurious promotions": the loss and its gradient keep the dtype
    losses = [fl.mse, fl.mae, fl.msle, fl.huber_loss, fl.crossentropy, fl.logitcrossentropy,
              fl.binarycrossentropy, fl.logitbinarycrossentropy, fl.kldivergence,
              fl.hinge_loss, fl.squared_hinge_loss, fl.poisson_loss, fl.dice_coeff_loss,
              fl.tversky_loss, fl.binary_focal_loss, fl.focal_loss,
              fl.siamese_contrastive_loss]
    for dtype in (np.float32, np.float64):
        y, yhat = RNG.random(2).astype(dtype), RNG.random(2).astype(dtype)
        for f in losses:
            value, back = fl.pullback(f, yhat, y)
            assert np.asarray(value).dtype == dtype, f.__name__
            assert back(dtype(1))[0].dtype == dtype, f.__name__


def test_focal_losses():
    # losses.jl "binary_focal_loss", "focal_loss": Flux's (classes, N) transposed
    y = np.array([[0, 1, 0], [1, 0, 1]], float).T
    yhat = np.array([[0.268941, 0.5, 0.268941], [0.731059, 0.5, 0.731059]]).T
    y1, yhat1 = np.array([[1, 0], [0, 1]], float).T, np.array([[0.6, 0.3], [0.4, 0.7]]).T
    assert fl.binary_focal_loss(yhat, y) == pytest.approx(0.0728675615927385)
    assert fl.binary_focal_loss(yhat1, y1) == pytest.approx(0.05691642237852222)
    assert fl.binary_focal_loss(yhat, y, gamma=0.0) == pytest.approx(
        fl.binarycrossentropy(yhat, y))
    y = np.array([[1, 0, 0, 0, 1], [0, 1, 0, 1, 0], [0, 0, 1, 0, 0]], float).T
    # Flux's softmax(reshape(-7:7, 3, 5)): column j of Flux is row j here
    yhat = fl.softmax(np.arange(-7, 8, dtype=np.float32).reshape(5, 3))
    y1 = np.array([[1, 0], [0, 0], [0, 1]], float).T
    yhat1 = np.array([[0.4, 0.2], [0.5, 0.5], [0.1, 0.3]]).T
    assert fl.focal_loss(yhat, y) == pytest.approx(1.1277571935622628, rel=1e-5)
    assert fl.focal_loss(yhat1, y1) == pytest.approx(0.45990566879720157)
    assert fl.focal_loss(yhat, y, gamma=0) == pytest.approx(fl.crossentropy(yhat, y))


def test_siamese_contrastive_loss():
    # losses.jl "siamese_contrastive_loss"
    S = fl.siamese_contrastive_loss
    y = np.array([[1, 0], [0, 0], [0, 1]], float).T
    yhat = np.array([[0.4, 0.2], [0.5, 0.5], [0.1, 0.3]]).T
    y1 = np.array([[1, 0, 0, 0, 1], [0, 1, 0, 1, 0], [0, 0, 1, 0, 0]], float).T
    yhat1 = fl.softmax(np.arange(-7, 8, dtype=np.float32).reshape(5, 3))
    y2, yhat2 = np.array([1.0, 0, 0, 1, 1]), np.array([0.6, 0.4, 0.1, 0.2, 0.7])
    for got, want in [(S(yhat, y), 0.2333333333333333),
                      (S(yhat, y, margin=0.5), 0.10000000000000002),
                      (S(yhat, y, margin=1.5), 0.5333333333333333),
                      (S(yhat1, y1), 0.32554644), (S(yhat1, y1, margin=0.5), 0.16271012),
                      (S(yhat1, y1, margin=1.5), 0.6532292),
                      (S(yhat, y, margin=1), S(yhat, y)), (S(y, y), 0.0), (S(y1, y1), 0.0),
                      (S(yhat, y, margin=0), 0.09166666666666667),
                      (S(yhat1, y1, margin=0), 0.13161165),
                      (S(yhat2, y2), 0.21200000000000005),
                      (S(yhat2, yhat2), 0.18800000000000003)]:
        assert got == pytest.approx(want, rel=1e-6, abs=1e-12)
    for margin in (-0.5, -1):
        with pytest.raises(ValueError, match="margin must be a finite number >= 0"):
            S(yhat1, y1, margin=margin)


def test_ctc_loss_hand_calculated_values():
    # ctc.jl "ctc_loss": Flux's x (classes, frames) is (frames, classes) here, labels from 0
    x = np.array([[1.0, 2, 3], [2, 1, 1], [3, 3, 2]]).T
    y = np.array([0, 1])
    assert fl.ctc_loss(x, y) == pytest.approx(3.6990738275138035)
    g = np.array([[-0.317671, -0.427729, 0.665241], [0.244728, -0.0196172, -0.829811],
                  [0.0729422, 0.447346, 0.16457]]).T
    np.testing.assert_allclose(fl.gradient(lambda x: fl.ctc_loss(x, y), x)[0], g,
                               rtol=1e-5, atol=1e-5)
    x = np.array([[-3.0, 12, 8, 15], [4, 20, -2, 20], [8, -33, 6, 5]]).T
    assert fl.ctc_loss(x, y) == pytest.approx(8.02519869363453)
    g = np.array([[-2.29294774655333e-06, -0.999662657278862, 1.75500863563993e-06,
                   0.00669284889063],
                  [0.017985914969696, 0.999662657278861, -1.9907078755387e-06,
                   -0.006693150917307],
                  [-0.01798362202195, -2.52019580677916e-20, 2.35699239251042e-07,
                   3.02026677058789e-07]]).T
    np.testing.assert_allclose(fl.gradient(lambda x: fl.ctc_loss(x, y), x)[0], g,
                               rtol=1e-5, atol=1e-5)
    # and a random case against central differences (ctc.jl's ctc_ngradient)
    x, y = RNG.random((12, 6)), RNG.integers(0, 5, 4)
    grad = fl.gradient(lambda x: fl.ctc_loss(x, y), x)[0]
    num = np.zeros_like(x)
    for i in np.ndindex(*x.shape):
        e = np.zeros_like(x)
        e[i] = 1e-6
        num[i] = (fl.ctc_loss(x + e, y) - fl.ctc_loss(x - e, y)) / 2e-6
    np.testing.assert_allclose(grad, num, rtol=1e-5, atol=1e-6)
