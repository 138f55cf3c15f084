"""NN primitives with derivative rules: convolution, pooling, upsampling, batched products.

>>> import numpy as np, fluxml as fl
>>> fl.nnlib.maxpool(np.arange(16.0).reshape(1, 1, 4, 4), (2, 2))
array([[[[ 5.,  7.],
         [13., 15.]]]])
"""

from fluxml.nnlib.batched import batched_mul, batched_transpose
from fluxml.nnlib.conv import conv, conv_transpose, depthwise_conv
from fluxml.nnlib.pool import (
    adaptive_maxpool,
    adaptive_meanpool,
    global_maxpool,
    global_meanpool,
    lppool,
    maxpool,
    meanpool,
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
    "adaptive_maxpool", "adaptive_meanpool", "batched_mul", "batched_transpose", "conv",
    "conv_transpose", "depthwise_conv", "global_maxpool", "global_meanpool", "lppool", "maxpool",
    "meanpool", "pixel_shuffle", "pixel_unshuffle", "upsample_bilinear", "upsample_linear",
    "upsample_nearest", "upsample_trilinear",
]
