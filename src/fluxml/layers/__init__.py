"""Layers: ``fl.Module`` and the layers built on it (one family a file)."""

from fluxml.layers.basic import Bilinear, Chain, Dense, Flatten, Scale, identity
from fluxml.layers.containers import Maxout, PairwiseFusion, Parallel, SkipConnection
from fluxml.layers.embedding import Embedding, EmbeddingBag
from fluxml.layers.module import (
    LayerError,
    Module,
    _,
    is_active,
    modules,
    testmode,
    trainable,
    trainmode,
    within_gradient,
)
from fluxml.layers.precision import f16, f32, f64
from fluxml.layers.recurrent import GRU, LSTM, RNN, Bidirectional, GRUCell, LSTMCell, RNNCell
from fluxml.layers.shapes import autosize, outputsize, summary

__all__ = [
    "Bidirectional", "Bilinear", "Chain", "GRU", "GRUCell", "LSTM", "LSTMCell", "RNN",
    "RNNCell", "Dense", "Embedding", "EmbeddingBag", "Flatten", "LayerError",
    "Maxout", "Module", "PairwiseFusion", "Parallel", "Scale", "SkipConnection", "_",
    "autosize", "f16", "f32", "f64", "identity", "is_active", "modules", "outputsize",
    "summary", "testmode", "trainable", "trainmode", "within_gradient",
]
