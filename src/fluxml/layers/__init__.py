"""Layers: ``fl.Module`` and the layers built on it (one family a file)."""

from fluxml.layers.attention import MultiHeadAttention, TransformerEncoderBlock
from fluxml.layers.basic import Bilinear, Chain, Dense, Flatten, Scale, activations, identity
from fluxml.layers.containers import Maxout, PairwiseFusion, Parallel, SkipConnection
from fluxml.layers.conv import Conv, ConvTranspose, CrossCor, DepthwiseConv
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
from fluxml.layers.normalise import (
    AlphaDropout,
    BatchNorm,
    Dropout,
    GroupNorm,
    InstanceNorm,
    LayerNorm,
)
from fluxml.layers.pooling import (
    AdaptiveMaxPool,
    AdaptiveMeanPool,
    GlobalMaxPool,
    GlobalMeanPool,
    MaxPool,
    MeanPool,
    PixelShuffle,
    Upsample,
)
from fluxml.layers.precision import f16, f32, f64
from fluxml.layers.recurrent import (
    GRU,
    LSTM,
    RNN,
    GRUCell,
    GRUv3,
    GRUv3Cell,
    LSTMCell,
    RNNCell,
)
from fluxml.layers.sequences import Bidirectional, Recurrence
from fluxml.layers.shapes import autosize, outputsize, summary
from fluxml.layers.weightnorm import WeightNorm, remove_weight_norms

__all__ = [
    "AdaptiveMaxPool", "AdaptiveMeanPool", "AlphaDropout", "BatchNorm", "Bidirectional", "Bilinear",
    "Chain", "Conv", "ConvTranspose", "CrossCor", "Dense", "DepthwiseConv", "Dropout", "Embedding",
    "EmbeddingBag", "Flatten", "GRU", "GRUCell", "GRUv3", "GRUv3Cell", "GlobalMaxPool",
    "GlobalMeanPool", "GroupNorm", "InstanceNorm", "LSTM", "LSTMCell", "LayerError", "LayerNorm",
    "MaxPool", "Maxout", "MeanPool", "Module", "MultiHeadAttention", "PairwiseFusion", "Parallel",
    "PixelShuffle", "RNN", "RNNCell", "Recurrence", "Scale", "SkipConnection",
    "TransformerEncoderBlock", "Upsample", "WeightNorm", "_", "activations", "autosize", "f16",
    "f32", "f64", "identity", "is_active", "modules", "outputsize", "remove_weight_norms",
    "summary", "testmode", "trainable", "trainmode", "within_gradient",
]
