"""The NN primitives with their options (strides, padding kinds, dilation, groups, transposed
convolution's output padding, pooling kinds, upsampling modes, attention's masks and bias,
the padding functions, spectrograms, folding) on a second array library: value and gradient
with respect to every float argument, moved to the fake device, against NumPy's. The layer
sweep (``test_layers_on_a_second_library.py``) runs each layer once; these reach the
kernels' other paths.
"""

from __future__ import annotations

import numpy as np
import pytest

import fluxml as fl
from fluxml import nnlib
from tests.backend.devices import DEVICES

R = np.random.default_rng(0)


def _x(*shape):
    return R.standard_normal(shape)


CASES = {
    "conv 2d stride 2 pad (1, 2)": (lambda c, x, w: nnlib.conv(x, w, stride=2, pad=(1, 2)),
                                    (_x(2, 3, 9, 8), _x(4, 3, 3, 3))),
    "conv 2d same dilation 2": (lambda c, x, w: nnlib.conv(x, w, pad="same", dilation=2),
                                (_x(2, 3, 8, 8), _x(4, 3, 3, 3))),
    "conv 2d groups 3 flipped": (lambda c, x, w: nnlib.conv(x, w, groups=3, flipped=True),
                                 (_x(2, 6, 7, 7), _x(6, 2, 3, 3))),
    "conv 1d asymmetric pad": (lambda c, x, w: nnlib.conv(x, w, pad=((2, 1),)),
                               (_x(2, 3, 11), _x(5, 3, 4))),
    "conv 3d": (lambda c, x, w: nnlib.conv(x, w, pad=1), (_x(1, 2, 5, 5, 5), _x(3, 2, 3, 3, 3))),
    "conv 5x5 LeNet rows": (lambda c, x, w: nnlib.conv(x, w), (_x(4, 6, 14, 14), _x(16, 6, 5, 5))),
    "conv 3x3 64 channels": (lambda c, x, w: nnlib.conv(x, w, pad=1),
                             (_x(1, 64, 6, 6), _x(64, 64, 3, 3) * 0.05)),
    "depthwise_conv": (lambda c, x, w: nnlib.depthwise_conv(x, w, pad=1),
                       (_x(2, 4, 6, 6), _x(4, 1, 3, 3))),
    "conv_transpose stride 2 output_padding 1":
        (lambda c, x, w: nnlib.conv_transpose(x, w, stride=2, pad=1, output_padding=1),
         (_x(2, 3, 5, 5), _x(3, 4, 3, 3))),
    "conv_bias_act relu": (lambda c, x, w, b: nnlib.conv_bias_act(x, w, b, fl.relu, pad=1),
                           (_x(2, 3, 6, 6), _x(4, 3, 3, 3), _x(4))),
    "maxpool pad 1 stride 1": (lambda c, x: nnlib.maxpool(x, (3, 3), stride=1, pad=1),
                               (_x(2, 3, 6, 6),)),
    "maxpool dilation 2": (lambda c, x: nnlib.maxpool(x, (2, 2), dilation=2), (_x(2, 3, 8, 8),)),
    "meanpool count_include_pad False":
        (lambda c, x: nnlib.meanpool(x, (3, 3), stride=2, pad=1, count_include_pad=False),
         (_x(2, 3, 7, 7),)),
    "lppool p=3": (lambda c, x: nnlib.lppool(x, 3.0, (2, 2)), (np.abs(_x(2, 3, 6, 6)) + 0.1,)),
    "adaptive_maxpool": (lambda c, x: nnlib.adaptive_maxpool(x, (3, 2)), (_x(2, 3, 7, 5),)),
    "adaptive_meanpool": (lambda c, x: nnlib.adaptive_meanpool(x, (3, 2)), (_x(2, 3, 7, 5),)),
    "global_maxpool": (lambda c, x: nnlib.global_maxpool(x), (_x(2, 3, 4, 5),)),
    "global_meanpool": (lambda c, x: nnlib.global_meanpool(x), (_x(2, 3, 4, 5),)),
    "upsample_nearest": (lambda c, x: nnlib.upsample_nearest(x, (2, 3)), (_x(2, 3, 4, 4),)),
    "upsample_bilinear align": (lambda c, x: nnlib.upsample_bilinear(x, size=(7, 5),
                                                                  align_corners=True),
                                (_x(2, 3, 4, 4),)),
    "upsample_trilinear": (lambda c, x: nnlib.upsample_trilinear(x, 2), (_x(1, 2, 3, 3, 3),)),
    "pixel_shuffle": (lambda c, x: nnlib.pixel_shuffle(x, 2), (_x(2, 8, 3, 3),)),
    "pixel_unshuffle": (lambda c, x: nnlib.pixel_unshuffle(x, 2), (_x(2, 2, 4, 6),)),
    "batched_mul": (lambda c, a, b: nnlib.batched_mul(a, b), (_x(3, 4, 5), _x(3, 5, 2))),
    "attention mask and bias": (
        lambda c, q, k, v, b: nnlib.dot_product_attention(
            q, k, v, bias=b, mask=c(np.tril(np.ones((5, 5), bool))),
            nheads=2)[0],
        (_x(2, 5, 8), _x(2, 5, 8), _x(2, 5, 8), _x(5, 5))),
    "softmax axis 1": (lambda c, x: nnlib.softmax(x, axis=1), (_x(3, 4, 5),)),
    "logsumexp": (lambda c, x: nnlib.logsumexp(x, axis=(0, 2)), (_x(3, 4, 5),)),
    "groupnorm": (lambda c, x, s, b: nnlib.groupnorm(x, 2, s, b), (_x(2, 4, 3, 3), _x(4), _x(4))),
    "layernorm axes": (lambda c, x: nnlib.layernorm(x, axes=(-2, -1)), (_x(2, 3, 4),)),
    "instancenorm": (lambda c, x: nnlib.instancenorm(x), (_x(2, 3, 4, 4),)),
    "pad_reflect": (lambda c, x: nnlib.pad_reflect(x, (1, 2)), (_x(2, 3, 5, 5),)),
    "pad_circular": (lambda c, x: nnlib.pad_circular(x, 2), (_x(2, 3, 5, 5),)),
    "pad_repeat": (lambda c, x: nnlib.pad_repeat(x, (1, 0)), (_x(2, 3, 5, 5),)),
    "pad_symmetric": (lambda c, x: nnlib.pad_symmetric(x, 1), (_x(2, 3, 5, 5),)),
    "pad_constant": (lambda c, x: nnlib.pad_constant(x, 1, 0.5), (_x(2, 3, 5, 5),)),
    "unfold then fold": (lambda c, x: nnlib.fold(nnlib.unfold(x, (2, 2)), (4, 4), (2, 2)),
                         (_x(2, 3, 4, 4),)),
    "gather": (lambda c, w: nnlib.gather(w, c(np.array([2, 0, 2]))), (_x(4, 3),)),
    "scatter": (lambda c, v: nnlib.scatter("add", v, c(np.array([1, 0, 1])),
                                        dstsize=(3, 2)), (_x(3, 2),)),
    "stft": (lambda c, x: np.abs(nnlib.stft(x, n_fft=8, hop_length=4)), (_x(2, 32),)),
    "spectrogram": (lambda c, x: nnlib.spectrogram(x, n_fft=8, hop_length=4), (_x(2, 32),)),
    "glu": (lambda c, x: nnlib.glu(x, axis=1), (_x(3, 4),)),
    "logcosh": (lambda c, x: nnlib.logcosh(x), (_x(3, 4),)),
}


def _same(a):
    return a


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", CASES)
def test_primitive_on_a_second_library_matches_numpy(name, device):
    # ``c`` puts a case's own constants (a mask, indices) where its arguments are
    f, args = CASES[name]

    def moved(a):
        return device.move(a) if isinstance(a, np.ndarray) else a

    got = f(moved, *[moved(a) for a in args])
    want = f(_same, *args)
    assert device.holds(got), type(got).__name__
    np.testing.assert_allclose(device.host(got), want, rtol=1e-10, atol=1e-12)
    w = R.standard_normal(want.shape)
    w_on = device.move(w)
    grads = fl.gradient(lambda *a: np.sum(f(moved, *a) * w_on), *[moved(a) for a in args])
    expected = fl.gradient(lambda *a: np.sum(f(_same, *a) * w), *args)
    for g, e in zip(grads, expected, strict=True):
        assert device.holds(g), type(g).__name__
        np.testing.assert_allclose(device.host(g), e, rtol=1e-9, atol=1e-11)
