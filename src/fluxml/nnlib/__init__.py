"""NN primitives with derivative rules: activations, softmax, normalisation, dropout,
embedding, attention, recurrent cells, convolution, unfold and fold, pooling, padding,
upsampling, grid sampling, gather and scatter, batched products, the dense layer's affine map;
audio: windows, the short-time Fourier transform and its inverse, spectrograms, mel filter banks.

>>> import numpy as np, fluxml as fl
>>> fl.nnlib.relu(np.array([-1.0, 1.0]))
array([0., 1.])
>>> fl.nnlib.maxpool(np.arange(16.0).reshape(1, 1, 4, 4), (2, 2))
array([[[[ 5.,  7.],
         [13., 15.]]]])
"""

from fluxml.nnlib.activations import (
    celu,
    elu,
    gelu,
    gelu_erf,
    gelu_sigmoid,
    gelu_tanh,
    glu,
    hardshrink,
    hardsigmoid,
    hardswish,
    hardtanh,
    leakyrelu,
    lisht,
    logcosh,
    logsigmoid,
    mish,
    relu,
    relu6,
    rrelu,
    selu,
    sigmoid,
    silu,
    softplus,
    softshrink,
    softsign,
    swish,
    tanhshrink,
    trelu,
)
from fluxml.nnlib.attention import (
    dot_product_attention,
    make_causal_mask,
)
from fluxml.nnlib.audio import (
    db_to_power,
    hamming_window,
    hann_window,
    istft,
    melscale_filterbanks,
    power_to_db,
    spectrogram,
    stft,
)
from fluxml.nnlib.batched import (
    batched_adjoint,
    batched_mul,
    batched_transpose,
    batched_vec,
)
from fluxml.nnlib.conv import (
    conv,
    conv_transpose,
    depthwise_conv,
)
from fluxml.nnlib.convbias import (
    conv_bias_act,
)
from fluxml.nnlib.dropout import (
    alpha_dropout,
    dropout,
)
from fluxml.nnlib.embedding import (
    embedding,
)
from fluxml.nnlib.erf import erf
from fluxml.nnlib.fold import (
    fold,
    unfold,
)
from fluxml.nnlib.linear import (
    linear,
)
from fluxml.nnlib.normalise import (
    batchnorm,
    groupnorm,
    instancenorm,
    layernorm,
    normalise,
)
from fluxml.nnlib.padding import (
    pad_circular,
    pad_constant,
    pad_reflect,
    pad_repeat,
    pad_symmetric,
    pad_zeros,
)
from fluxml.nnlib.pool import (
    adaptive_maxpool,
    adaptive_meanpool,
    global_maxpool,
    global_meanpool,
    lppool,
    maxpool,
    meanpool,
)
from fluxml.nnlib.recurrent import (
    gru_cell,
    gru_step,
    lstm_cell,
    lstm_step,
)
from fluxml.nnlib.sampling import (
    grid_sample,
)
from fluxml.nnlib.scatter import (
    gather,
    scatter,
)
from fluxml.nnlib.sequence import (
    gru_sequence,
    lstm_sequence,
)
from fluxml.nnlib.softmax import (
    logsoftmax,
    logsumexp,
    softmax,
)
from fluxml.nnlib.upsample import (
    pixel_shuffle,
    pixel_unshuffle,
    upsample_bilinear,
    upsample_linear,
    upsample_nearest,
    upsample_trilinear,
)

__all__ = [
    "adaptive_maxpool", "adaptive_meanpool", "alpha_dropout", "batched_adjoint", "batched_mul",
    "batched_transpose", "batched_vec", "batchnorm", "celu", "conv", "conv_bias_act",
    "conv_transpose", "db_to_power", "depthwise_conv", "dot_product_attention", "dropout", "elu",
    "embedding", "erf", "fold", "gather", "gelu", "gelu_erf", "gelu_sigmoid", "gelu_tanh",
    "global_maxpool", "global_meanpool", "glu", "grid_sample", "groupnorm", "gru_cell",
    "gru_sequence", "gru_step", "hamming_window", "hann_window", "hardshrink", "hardsigmoid",
    "hardswish", "hardtanh", "instancenorm", "istft", "layernorm", "leakyrelu", "linear", "lisht",
    "logcosh", "logsigmoid", "logsoftmax", "logsumexp", "lppool", "lstm_cell", "lstm_sequence",
    "lstm_step", "make_causal_mask", "maxpool", "meanpool", "melscale_filterbanks", "mish",
    "normalise", "pad_circular", "pad_constant", "pad_reflect", "pad_repeat", "pad_symmetric",
    "pad_zeros", "pixel_shuffle", "pixel_unshuffle", "power_to_db", "relu", "relu6", "rrelu",
    "scatter", "selu", "sigmoid", "silu", "softmax", "softplus", "softshrink", "softsign",
    "spectrogram", "stft", "swish", "tanhshrink", "trelu", "unfold", "upsample_bilinear",
    "upsample_linear", "upsample_nearest", "upsample_trilinear",
]
