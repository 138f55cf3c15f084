"""All of Flux's losses, batch first (the class axis last), each ``loss(yhat, y, *,
agg="mean", ...)``.

>>> import numpy as np, fluxml as fl
>>> fl.losses.mae(np.array([1.0, 2.0]), np.array([0.0, 4.0]), agg="sum")
np.float64(3.0)
"""

from fluxml.losses.classification import (
    binary_focal_loss,
    binarycrossentropy,
    crossentropy,
    focal_loss,
    hinge_loss,
    kldivergence,
    label_smoothing,
    logitbinarycrossentropy,
    logitcrossentropy,
    squared_hinge_loss,
)
from fluxml.losses.ctc import ctc_loss
from fluxml.losses.regression import (
    dice_coeff_loss,
    huber_loss,
    mae,
    mse,
    msle,
    poisson_loss,
    siamese_contrastive_loss,
    tversky_loss,
)

__all__ = [
    "binary_focal_loss", "binarycrossentropy", "crossentropy", "ctc_loss", "dice_coeff_loss",
    "focal_loss", "hinge_loss", "huber_loss", "kldivergence", "label_smoothing",
    "logitbinarycrossentropy", "logitcrossentropy", "mae", "mse", "msle", "poisson_loss",
    "siamese_contrastive_loss", "squared_hinge_loss", "tversky_loss",
]
