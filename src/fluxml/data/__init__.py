"""Data: ``DataLoader``, one-hot encoding, splits and folds, sliding windows, class
resampling (``oversample``, ``undersample``), padded sequences, normalisation, and bundled
data sets.

>>> import numpy as np, fluxml as fl
>>> (x, y), _ = fl.datasets.digits()
>>> xb, yb = next(iter(fl.DataLoader((x, fl.onehotbatch(y, 10)), batchsize=32)))
>>> xb.shape, yb.shape
((32, 1, 8, 8), (32, 10))
"""

from fluxml.data import datasets
from fluxml.data.loader import DataLoader, batch_sequence, default_collate, getobs, numobs
from fluxml.data.resample import oversample, undersample
from fluxml.data.slidingwindow import SlidingWindow, slidingwindow
from fluxml.data.splits import kfolds, shuffleobs, splitobs
from fluxml.data.utils import Standardiser, normalise, onecold, onehot, onehotbatch

__all__ = [
    "DataLoader", "SlidingWindow", "Standardiser", "batch_sequence", "datasets",
    "default_collate", "getobs", "kfolds", "normalise", "numobs", "onecold", "onehot",
    "onehotbatch", "oversample", "shuffleobs", "slidingwindow", "splitobs", "undersample",
]
