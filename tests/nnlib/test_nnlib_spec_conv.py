"""NNlib.jl's own tests of convolution and pooling (test/conv.jl, test/pooling.jl), translated:
their known-good answers on small arange inputs, gradients included, as fluxml computes them.

Translation: a Julia array of size ``(W, H, ...)`` (column-major) holds the same numbers as a
NumPy array of the reversed shape (row-major), so ``_jl_reshape(values, julia_dims)`` reshapes
to the reversed dims and a Julia matrix literal (rows as written) is its transpose. NNlib's
``conv`` flips the kernel unless ``flipkernel=true``: fluxml's ``flipped=True`` is NNlib's
default. NNlib's ``∇conv_data(dy, ...)`` and ``∇pool(dy, y, x, ...)`` are pullbacks with the
cotangent ``dy`` (NNlib's tests use the output itself).
"""

import itertools

import numpy as np
import pytest

import fluxml as fl
from fluxml import nnlib as nn


def _jl_reshape(values, dims):
    """Julia's ``reshape(values, dims)`` in NumPy's layout (the reversed shape)."""
    return np.array(values, float).reshape(dims[::-1])


def _jl_matrix(rows):
    """A Julia matrix literal (rows as written) in NumPy's layout: its transpose."""
    return np.array(rows, float).T


def _arange_like(a):
    """NNlib's inputs: ``reshape(1:prod(size(a)), size(a))`` with batch and channel of 1."""
    return np.arange(1.0, a.size + 1).reshape(a.shape)[None, None]


# conv_answer_dict of NNlib's test/conv.jl (rank -> answers)
CONV_ANSWERS = {
    1: {
        'y_pad': np.array([1, 4, 7, 10, 13, 10], float),
        'y_dil': np.array([5, 8, 11], float),
        'y_flip': np.array([5, 8, 11, 14], float),
        'dx': np.array([8, 18, 27, 36, 13], float),
        'dx_stride': np.array([8, 4, 20, 10, 0], float),
        'dx_pad': np.array([9, 18, 27, 36, 33], float),
        'dx_dil': np.array([10, 16, 27, 8, 11], float),
        'dx_flip': np.array([5, 18, 27, 36, 28], float),
        'dw': np.array([134, 100], float),
        'dw_stride': np.array([48, 34], float),
        'dw_pad': np.array([135, 150], float),
        'dw_dil': np.array([102, 54], float),
        'dw_flip': np.array([110, 148], float),
    },
    2: {
        'y_pad': _jl_matrix([[1, 9, 29, 49, 48],
                             [4, 29, 79, 129, 115],
                             [7, 39, 89, 139, 122],
                             [10, 49, 99, 149, 129],
                             [13, 59, 109, 159, 136],
                             [10, 40, 70, 100, 80]]),
        'y_dil': _jl_matrix([[48, 98], [58, 108], [68, 118]]),
        'y_flip': _jl_matrix([[51, 101, 151], [61, 111, 161], [71, 121, 171], [81, 131, 181]]),
        'dx': _jl_matrix([[116, 374, 674, 258],
                          [243, 700, 1200, 407],
                          [313, 800, 1300, 437],
                          [383, 900, 1400, 467],
                          [177, 386, 586, 159]]),
        'dx_stride': _jl_matrix([[116, 58, 516, 258],
                                 [87, 29, 387, 129],
                                 [196, 98, 596, 298],
                                 [147, 49, 447, 149],
                                 [0, 0, 0, 0]]),
        'dx_pad': _jl_matrix([[152, 470, 850, 911],
                              [261, 700, 1200, 1240],
                              [340, 800, 1300, 1319],
                              [419, 900, 1400, 1398],
                              [370, 746, 1126, 1087]]),
        'dx_dil': _jl_matrix([[192, 392, 96, 196],
                              [232, 432, 116, 216],
                              [416, 766, 184, 334],
                              [174, 324, 58, 108],
                              [204, 354, 68, 118]]),
        'dx_flip': _jl_matrix([[51, 254, 454, 453],
                               [163, 700, 1200, 1087],
                               [193, 800, 1300, 1157],
                               [223, 900, 1400, 1227],
                               [162, 586, 886, 724]]),
        'dw': _jl_matrix([[17378, 11738], [16250, 10610]]),
        'dw_stride': _jl_matrix([[5668, 3888], [5312, 3532]]),
        'dw_pad': _jl_matrix([[18670, 22550], [19850, 23430]]),
        'dw_dil': _jl_matrix([[8632, 3652], [7636, 2656]]),
        'dw_flip': _jl_matrix([[12590, 19550], [13982, 20942]]),
    },
    3: {
        'y_pad': _jl_reshape([1, 4, 7, 10, 13, 10, 9, 29, 39, 49, 59, 40, 29, 79, 89, 99, 109, 70,
                              49, 129, 139, 149, 159, 100, 48, 115, 122, 129, 136, 80, 26, 80, 94,
                              108, 122, 80, 126, 322, 358, 394, 430, 260, 206, 502, 538, 574, 610,
                              360, 286, 682, 718, 754, 790, 460, 220, 502, 524, 546, 568, 320, 146,
                              360, 374, 388, 402, 240, 446, 1042, 1078, 1114, 1150, 660, 526, 1222,
                              1258, 1294, 1330, 760, 606, 1402, 1438, 1474, 1510, 860, 420, 942,
                              964, 986, 1008, 560, 205, 456, 467, 478, 489, 270, 517, 1133, 1159,
                              1185, 1211, 660, 577, 1263, 1289, 1315, 1341, 730, 637, 1393, 1419,
                              1445, 1471, 800, 392, 847, 862, 877, 892, 480], (6, 5, 4)),
        'y_dil': _jl_reshape([608, 644, 680, 788, 824, 860], (3, 2, 1)),
        'y_flip': _jl_reshape([686, 722, 758, 794, 866, 902, 938, 974, 1046, 1082, 1118, 1154,
                               1406, 1442, 1478, 1514, 1586, 1622, 1658, 1694, 1766, 1802, 1838,
                               1874], (4, 3, 2)),
        'dx': _jl_reshape([2576, 5118, 5658, 6198, 3010, 5948, 11576, 12512, 13448, 6420, 8468,
                           16256, 17192, 18128, 8580, 4092, 7718, 8114, 8510, 3950, 9624, 18316,
                           19108, 19900, 9340, 18680, 34992, 36288, 37584, 17320, 22280, 41472,
                           42768, 44064, 20200, 9776, 17756, 18260, 18764, 8340, 4168, 7438, 7690,
                           7942, 3450, 6972, 11896, 12256, 12616, 5140, 8052, 13696, 14056, 14416,
                           5860, 2804, 4278, 4386, 4494, 1510], (5, 4, 3)),
        'dx_stride': _jl_reshape([2576, 2254, 3152, 2758, 0, 1932, 1610, 2364, 1970, 0, 5456, 4774,
                                  6032, 5278, 0, 4092, 3410, 4524, 3770, 0, 1288, 966, 1576, 1182,
                                  0, 644, 322, 788, 394, 0, 2728, 2046, 3016, 2262, 0, 1364, 682,
                                  1508, 754, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                  0, 0, 0], (5, 4, 3)),
        'dx_pad': _jl_reshape([4220, 6343, 7116, 7889, 6550, 8490, 12276, 13312, 14348, 11606,
                               12350, 17456, 18492, 19528, 15546, 11989, 16664, 17469, 18274,
                               14333, 16200, 22628, 23616, 24604, 19392, 25336, 34992, 36288,
                               37584, 29320, 30216, 41472, 42768, 44064, 34200, 26236, 35664,
                               36652, 37640, 28940, 22816, 30831, 31636, 32441, 24794, 32522,
                               43668, 44704, 45740, 34742, 36462, 48848, 49884, 50920, 38602,
                               29501, 39264, 40037, 40810, 30733], (5, 4, 3)),
        'dx_dil': _jl_reshape([4864, 5152, 9696, 4508, 4760, 6304, 6592, 12396, 5768, 6020, 3648,
                               3864, 7120, 3220, 3400, 4728, 4944, 9100, 4120, 4300, 0, 0, 0, 0, 0,
                               0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2432, 2576, 4544, 1932,
                               2040, 3152, 3296, 5804, 2472, 2580, 1216, 1288, 1968, 644, 680,
                               1576, 1648, 2508, 824, 860], (5, 4, 3)),
        'dx_flip': _jl_reshape([686, 2094, 2202, 2310, 1588, 2924, 7544, 7904, 8264, 5124, 3644,
                                9344, 9704, 10064, 6204, 3138, 7430, 7682, 7934, 4616, 4836, 11980,
                                12484, 12988, 7792, 14936, 34992, 36288, 37584, 21640, 17816,
                                41472, 42768, 44064, 25240, 12620, 28412, 29204, 29996, 16728,
                                7030, 15646, 16042, 16438, 9084, 17772, 38968, 39904, 40840, 22276,
                                19932, 43648, 44584, 45520, 24796, 12362, 26742, 27282, 27822,
                                14992], (5, 4, 3)),
        'dw': _jl_reshape([1058184, 1036200, 948264, 926280, 618504, 596520, 508584, 486600], (2,
                           2, 2)),
        'dw_stride': _jl_reshape([74760, 72608, 64000, 61848, 31720, 29568, 20960, 18808], (2, 2,
                                  2)),
        'dw_pad': _jl_reshape([1260550, 1308050, 1403270, 1449230, 1737310, 1775890, 1832590,
                               1867310], (2, 2, 2)),
        'dw_dil': _jl_reshape([250320, 241512, 206280, 197472, 74160, 65352, 30120, 21312], (2, 2,
                               2)),
        'dw_flip': _jl_reshape([639480, 670200, 793080, 823800, 1253880, 1284600, 1407480,
                                1438200], (2, 2, 2)),
    },
}


_CONV_CASES = {"": dict(flipped=True), "_stride": dict(flipped=True, stride=2),
               "_dil": dict(flipped=True, dilation=2), "_pad": dict(flipped=True, pad=1),
               "_flip": dict(flipped=False)}


def _conv_y(answers, case, rank):
    """NNlib derives y_plain and y_stride from y_pad (its inner and every other entry)."""
    if case == "":
        return answers["y_pad"][(slice(1, -1),) * rank]
    if case == "_stride":
        return answers["y_pad"][(slice(1, -1, 2),) * rank]
    return answers["y" + case]


@pytest.mark.parametrize("conv", [nn.conv, nn.depthwise_conv])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_conv_known_answers(rank, dtype, conv):
    """conv.jl "Dense Convolution" and "Depthwise Convolution": y, ∇conv_data and
    ∇conv_filter for plain, stride 2, dilation 2, padding 1 and flipkernel (single channel,
    so depthwise has the same answers)."""
    answers = CONV_ANSWERS[rank]
    x = _arange_like(answers["dx"]).astype(dtype)
    w = _arange_like(answers["dw"]).astype(dtype)
    for case, options in _CONV_CASES.items():
        y, back = fl.pullback(lambda x, w: conv(x, w, **options), x, w)
        dx, dw = back(y)
        assert y.dtype == dx.dtype == dw.dtype == dtype
        np.testing.assert_allclose(y[0, 0], _conv_y(answers, case, rank), rtol=1e-7)
        np.testing.assert_allclose(dx[0, 0], answers["dx" + case], rtol=1e-6)
        np.testing.assert_allclose(dw[0, 0], answers["dw" + case], rtol=1e-6)


def test_grouped_conv_is_convs_of_the_groups():
    """conv.jl "Grouped Convolutions": groups = 5 is five convolutions of channel slices,
    values and both gradients."""
    rng = np.random.default_rng(0)
    x = rng.random((2, 20, 9, 9), dtype=np.float32)
    w = rng.random((15, 4, 3, 3), dtype=np.float32)
    y = nn.conv(x, w, groups=5)
    gx, gw = fl.gradient(lambda x, w: np.sum(nn.conv(x, w, groups=5)), x, w)
    for g in range(5):
        i, o = slice(4 * g, 4 * g + 4), slice(3 * g, 3 * g + 3)
        gxr, gwr = fl.gradient(lambda x, w: np.sum(nn.conv(x, w)), x[:, i], w[o])
        np.testing.assert_allclose(y[:, o], nn.conv(x[:, i], w[o]), rtol=1e-5)
        np.testing.assert_allclose(gx[:, i], gxr, rtol=1e-5)
        np.testing.assert_allclose(gw[o], gwr, rtol=1e-5)


def test_conv_mixed_precision_groups():
    """conv.jl "conv_wrapper with groups - not equal types" (NNlib issue 369): float32 input
    with a float64 weight equals the float32 weight's result."""
    rng = np.random.default_rng(1)
    x = rng.random((3, 8, 10, 10), dtype=np.float32)
    w = rng.random((4, 4, 2, 2))
    for options in ({}, dict(stride=2, pad=2), dict(stride=(2, 1), pad=(3, 2), dilation=2),
                    dict(stride=(2, 1), pad=(3, 2), dilation=2, flipped=True)):
        np.testing.assert_allclose(nn.conv(x, w, groups=2, **options),
                                   nn.conv(x, w.astype(np.float32), groups=2, **options),
                                   rtol=1e-5)


def test_conv_output_sizes():
    """conv.jl "conv_wrapper" and "depthwiseconv_wrapper": output sizes (Julia's (W, H)
    options reversed: stride (1, 2) is (2, 1) here)."""
    x = np.zeros((10, 3, 10, 10))
    assert nn.conv(x, np.zeros((16, 3, 2, 2))).shape == (10, 16, 9, 9)
    assert nn.conv(x, np.zeros((16, 3, 2, 2)), stride=2, pad=2).shape == (10, 16, 7, 7)
    assert nn.conv(x, np.zeros((16, 3, 4, 3)), stride=(2, 1), pad=(3, 2)).shape == (10, 16, 7, 12)
    assert nn.conv(x, np.zeros((16, 3, 2, 2)), stride=(2, 1), pad=(3, 2),
                   dilation=2, flipped=True).shape == (10, 16, 7, 12)
    wd = np.zeros((9, 1, 4, 3))  # Julia's (3, 4, 3, 3): multiplier 3 of 3 channels
    assert nn.depthwise_conv(x, np.zeros((9, 1, 2, 2))).shape == (10, 9, 9, 9)
    assert nn.depthwise_conv(x, wd, stride=(2, 1), pad=(3, 2)).shape == (10, 9, 7, 12)
    assert nn.depthwise_conv(x, wd, stride=(2, 1), pad=(3, 2), dilation=2).shape == (10, 9, 5, 10)


# maxpool_answer_dict, meanpool_answer_dict, lpnormpool_answer_dict of test/pooling.jl
MAXPOOL_ANSWERS = {
    1: {
        'y': np.array([2, 4], float),
        'y_nostride': np.array([2, 3, 4, 5], float),
        'y_pad': np.array([1, 3, 5], float),
        'dx': np.array([0, 2, 0, 4, 0], float),
        'dx_nostride': np.array([0, 2, 3, 4, 5], float),
        'dx_pad': np.array([1, 0, 3, 0, 5], float),
    },
    2: {
        'y': _jl_matrix([[7, 17], [9, 19]]),
        'y_nostride': _jl_matrix([[7, 12, 17], [8, 13, 18], [9, 14, 19], [10, 15, 20]]),
        'y_pad': _jl_matrix([[1, 11, 16], [3, 13, 18], [5, 15, 20]]),
        'dx': _jl_matrix([[0, 0, 0, 0], [0, 7, 0, 17], [0, 0, 0, 0], [0, 9, 0, 19], [0, 0, 0, 0]]),
        'dx_nostride': _jl_matrix([[0, 0, 0, 0],
                                   [0, 7, 12, 17],
                                   [0, 8, 13, 18],
                                   [0, 9, 14, 19],
                                   [0, 10, 15, 20]]),
        'dx_pad': _jl_matrix([[1, 0, 11, 16],
                              [0, 0, 0, 0],
                              [3, 0, 13, 18],
                              [0, 0, 0, 0],
                              [5, 0, 15, 20]]),
    },
    3: {
        'y': _jl_reshape([27, 29, 37, 39], (2, 2, 1)),
        'y_nostride': _jl_reshape([27, 28, 29, 30, 32, 33, 34, 35, 37, 38, 39, 40, 47, 48, 49, 50,
                                   52, 53, 54, 55, 57, 58, 59, 60], (4, 3, 2)),
        'y_pad': _jl_reshape([1, 3, 5, 11, 13, 15, 16, 18, 20, 41, 43, 45, 51, 53, 55, 56, 58, 60],
                              (3, 3, 2)),
        'dx': _jl_reshape([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                           0, 0, 27, 0, 29, 0, 0, 0, 0, 0, 0, 0, 37, 0, 39, 0, 0, 0, 0, 0, 0, 0, 0,
                           0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], (5, 4, 3)),
        'dx_nostride': _jl_reshape([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                    0, 0, 0, 0, 0, 27, 28, 29, 30, 0, 32, 33, 34, 35, 0, 37, 38,
                                    39, 40, 0, 0, 0, 0, 0, 0, 47, 48, 49, 50, 0, 52, 53, 54, 55, 0,
                                    57, 58, 59, 60], (5, 4, 3)),
        'dx_pad': _jl_reshape([1, 0, 3, 0, 5, 0, 0, 0, 0, 0, 11, 0, 13, 0, 15, 16, 0, 18, 0, 20, 0,
                               0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 41, 0, 43,
                               0, 45, 0, 0, 0, 0, 0, 51, 0, 53, 0, 55, 56, 0, 58, 0, 60], (5, 4,
                               3)),
    },
}
MEANPOOL_ANSWERS = {
    1: {
        'y': np.array([1.5, 3.5], float),
        'y_nostride': np.array([1.5, 2.5, 3.5, 4.5], float),
        'y_pad': np.array([0.5, 2.5, 4.5], float),
        'dx': np.array([0.75, 0.75, 1.75, 1.75, 0.0], float),
        'dx_nostride': np.array([0.75, 2.0, 3.0, 4.0, 2.25], float),
        'dx_pad': np.array([0.25, 1.25, 1.25, 2.25, 2.25], float),
    },
    2: {
        'y': _jl_matrix([[4.0, 14.0], [6.0, 16.0]]),
        'y_nostride': _jl_matrix([[4.0, 9.0, 14.0],
                                  [5.0, 10.0, 15.0],
                                  [6.0, 11.0, 16.0],
                                  [7.0, 12.0, 17.0]]),
        'y_pad': _jl_matrix([[0.25, 4.25, 4.0], [1.25, 10.0, 8.75], [2.25, 12.0, 9.75]]),
        'dx': _jl_matrix([[1.0, 1.0, 3.5, 3.5],
                          [1.0, 1.0, 3.5, 3.5],
                          [1.5, 1.5, 4.0, 4.0],
                          [1.5, 1.5, 4.0, 4.0],
                          [0.0, 0.0, 0.0, 0.0]]),
        'dx_nostride': _jl_matrix([[1.0, 3.25, 5.75, 3.5],
                                   [2.25, 7.0, 12.0, 7.25],
                                   [2.75, 8.0, 13.0, 7.75],
                                   [3.25, 9.0, 14.0, 8.25],
                                   [1.75, 4.75, 7.25, 4.25]]),
        'dx_pad': _jl_matrix([[0.0625, 1.0625, 1.0625, 1.0],
                              [0.3125, 2.5, 2.5, 2.1875],
                              [0.3125, 2.5, 2.5, 2.1875],
                              [0.5625, 3.0, 3.0, 2.4375],
                              [0.5625, 3.0, 3.0, 2.4375]]),
    },
    3: {
        'y': _jl_reshape([14.0, 16.0, 24.0, 26.0], (2, 2, 1)),
        'y_nostride': _jl_reshape([14.0, 15.0, 16.0, 17.0, 19.0, 20.0, 21.0, 22.0, 24.0, 25.0,
                                   26.0, 27.0, 34.0, 35.0, 36.0, 37.0, 39.0, 40.0, 41.0, 42.0,
                                   44.0, 45.0, 46.0, 47.0], (4, 3, 2)),
        'y_pad': _jl_reshape([0.125, 0.625, 1.125, 2.125, 5.0, 6.0, 2.0, 4.375, 4.875, 7.75, 16.25,
                              17.25, 19.25, 40.0, 42.0, 11.5, 23.75, 24.75], (3, 3, 2)),
        'dx': _jl_reshape([1.75, 1.75, 2.0, 2.0, 0.0, 1.75, 1.75, 2.0, 2.0, 0.0, 3.0, 3.0, 3.25,
                           3.25, 0.0, 3.0, 3.0, 3.25, 3.25, 0.0, 1.75, 1.75, 2.0, 2.0, 0.0, 1.75,
                           1.75, 2.0, 2.0, 0.0, 3.0, 3.0, 3.25, 3.25, 0.0, 3.0, 3.0, 3.25, 3.25,
                           0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
                           0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], (5, 4, 3)),
        'dx_nostride': _jl_reshape([1.75, 3.625, 3.875, 4.125, 2.125, 4.125, 8.5, 9.0, 9.5, 4.875,
                                    5.375, 11.0, 11.5, 12.0, 6.125, 3.0, 6.125, 6.375, 6.625,
                                    3.375, 6.0, 12.25, 12.75, 13.25, 6.75, 13.25, 27.0, 28.0, 29.0,
                                    14.75, 15.75, 32.0, 33.0, 34.0, 17.25, 8.5, 17.25, 17.75,
                                    18.25, 9.25, 4.25, 8.625, 8.875, 9.125, 4.625, 9.125, 18.5,
                                    19.0, 19.5, 9.875, 10.375, 21.0, 21.5, 22.0, 11.125, 5.5,
                                    11.125, 11.375, 11.625, 5.875], (5, 4, 3)),
        'dx_pad': _jl_reshape([0.015625, 0.078125, 0.078125, 0.140625, 0.140625, 0.265625, 0.625,
                               0.625, 0.75, 0.75, 0.265625, 0.625, 0.625, 0.75, 0.75, 0.25,
                               0.546875, 0.546875, 0.609375, 0.609375, 0.96875, 2.03125, 2.03125,
                               2.15625, 2.15625, 2.40625, 5.0, 5.0, 5.25, 5.25, 2.40625, 5.0, 5.0,
                               5.25, 5.25, 1.4375, 2.96875, 2.96875, 3.09375, 3.09375, 0.96875,
                               2.03125, 2.03125, 2.15625, 2.15625, 2.40625, 5.0, 5.0, 5.25, 5.25,
                               2.40625, 5.0, 5.0, 5.25, 5.25, 1.4375, 2.96875, 2.96875, 3.09375,
                               3.09375], (5, 4, 3)),
    },
}
LPPOOL_ANSWERS = {
    1: {
        'y': np.array([2.019312856150994, 4.221163518110637], float),
        'y_nostride': np.array([2.080083823051904, 3.2710663101885897, 4.497941445275415,
                                5.738793548317167], float),
        'y_pad': np.array([1.0, 3.605551275463989, 6.4031242374328485], float),
        'dx': np.array([0.17258020254042603, 1.9525221042381296, 1.2774501198988355,
                        3.496467771732918, 0.0], float),
        'dx_nostride': np.array([0.48074985676913606, 3.1458422620080637, 4.752311710531486,
                                 6.345225258061685, 4.356316321455918], float),
        'dx_pad': np.array([1.0, 2.0, 3.0, 4.0, 5.0], float),
        'p': 4.5,
        'p_nostride': 3.0,
        'p_pad': 2.0,
    },
    2: {
        'y': _jl_matrix([[8.71909, 24.9703], [11.7336, 28.3804]]),
        'y_nostride': _jl_matrix([[11.1128, 23.134, 35.5704],
                                  [13.4219, 25.6082, 38.0707],
                                  [15.8033, 28.0907, 40.5735],
                                  [18.2249, 30.5795, 43.0782]]),
        'y_pad': _jl_matrix([[1.0, 11.3616, 16.0],
                             [3.19158, 15.9662, 21.3545],
                             [5.56869, 18.7771, 23.7903]]),
        'dx': _jl_matrix([[0.33866, 4.97727, 7.30092, 12.8076],
                          [0.957876, 6.27208, 8.31879, 14.0269],
                          [1.51693, 6.6057, 8.79844, 14.3351],
                          [2.33547, 7.8822, 9.83293, 15.5461],
                          [0.0, 0.0, 0.0, 0.0]]),
        'dx_nostride': _jl_matrix([[3.33359, 19.9471, 35.7329, 23.8564],
                                   [9.89551, 44.627, 76.2257, 50.0307],
                                   [13.231, 50.9101, 82.5686, 53.2022],
                                   [16.4888, 57.223, 88.9133, 56.3742],
                                   [9.54591, 30.9869, 46.8371, 29.3524]]),
        'dx_pad': _jl_matrix([[1.0, 2.30261, 10.4791, 16.0],
                              [0.992125, 2.0321, 7.81903, 12.075],
                              [2.73398, 2.83743, 9.5512, 13.9299],
                              [2.43512, 2.98652, 9.0132, 13.5608],
                              [4.25398, 3.8865, 10.7099, 15.4161]]),
        'p': 2.5,
        'p_nostride': 1.5,
        'p_pad': 3.5,
    },
}


_POOLS = {
    "max": (MAXPOOL_ANSWERS, lambda x, p, **o: nn.maxpool(x, 2, **o)),
    "mean": (MEANPOOL_ANSWERS, lambda x, p, **o: nn.meanpool(x, 2, **o)),
    "lp": (LPPOOL_ANSWERS, lambda x, p, **o: nn.lppool(x, p, 2, **o)),
}


@pytest.mark.parametrize("name", ["max", "mean", "lp"])
def test_pool_known_answers(name):
    """pooling.jl "pool$(rank)d" and "lpnormpool": kernel 2 with its own stride, stride 1,
    padding 1; y and ∇pool(y, y, x) (lpnormpool with NNlib's p for each case, to 1e-3 as
    there); a kernel of 1 returns x."""
    answers, pool = _POOLS[name]
    tol = 1e-3 if name == "lp" else 0
    for rank, a in answers.items():
        x = _arange_like(a["dx"])
        for case, options in {"": {}, "_nostride": dict(stride=1), "_pad": dict(pad=1)}.items():
            p = a.get("p" + case)
            y, back = fl.pullback(lambda x: pool(x, p, **options), x)
            np.testing.assert_allclose(y[0, 0], a["y" + case], atol=tol, rtol=0)
            np.testing.assert_allclose(back(y)[0][0, 0], a["dx" + case], atol=tol, rtol=0)
        if name == "lp":
            one = nn.lppool(x, a["p"], 1)
        else:
            one = {"max": nn.maxpool, "mean": nn.meanpool}[name](x, 1)
        np.testing.assert_allclose(one, x, atol=tol)


# maxpool_answer_nature of test/pooling.jl (rank 1 and two of rank 2)
NATURE = {  # (rank, setting) -> kernel, stride, pad, x, dx_maxpool, dx_meanpool
    (1, 'k2s1p0'): dict(kernel=(2,), stride=1, pad=0,
        x=np.array([0.0299635, 0.233456, 0.596161, 0.161514, 0.0094027]),
        dx_maxpool=np.array([0.0, 1.0, 2.0, 1.0, 0.0]),
        dx_meanpool=np.array([0.5, 1.0, 1.0, 1.0, 0.5]),
    ),
    (1, 'k2s1p1'): dict(kernel=(2,), stride=1, pad=1,
        x=np.array([0.0299635, 0.233456, 0.596161, 0.161514, 0.0094027]),
        dx_maxpool=np.array([1.0, 1.0, 2.0, 1.0, 1.0]),
        dx_meanpool=np.array([1.0, 1.0, 1.0, 1.0, 1.0]),
    ),
    (1, 'k3s1p1'): dict(kernel=(3,), stride=1, pad=1,
        x=np.array([0.0299635, 0.233456, 0.596161, 0.161514, 0.0094027]),
        dx_maxpool=np.array([0.0, 1.0, 3.0, 1.0, 0.0]),
        dx_meanpool=np.array([0.6666666666, 1.0, 1.0, 1.0, 0.6666666666]),
    ),
    (1, 'k3s2p1'): dict(kernel=(3,), stride=2, pad=1,
        x=np.array([0.0299635, 0.233456, 0.596161, 0.161514, 0.0094027]),
        dx_maxpool=np.array([0.0, 1.0, 1.0, 1.0, 0.0]),
        dx_meanpool=np.array([0.333333333, 0.666666666, 0.333333333, 0.666666666, 0.333333333]),
    ),
    (2, 'k2s1p1'): dict(kernel=(2, 2), stride=1, pad=1,
        x=_jl_matrix([
            [0.0299635, 0.233456, 0.596161, 0.161514, 0.0094027],
            [0.389984, 0.235158, 0.579525, 0.301893, 0.561358],
            [0.0830242, 0.483759, 0.914904, 0.253871, 0.820061],
            [0.425287, 0.53451, 0.0405225, 0.729861, 0.403925],
            [0.473724, 0.571418, 0.558427, 0.552183, 0.561624],
        ]),
        dx_maxpool=_jl_matrix([
            [1.0, 1.0, 4.0, 1.0, 1.0],
            [3.0, 0.0, 0.0, 0.0, 2.0],
            [0.0, 1.0, 4.0, 0.0, 4.0],
            [1.0, 1.0, 0.0, 2.0, 0.0],
            [2.0, 4.0, 1.0, 0.0, 3.0],
        ]),
        dx_meanpool=_jl_matrix([
            [1.0, 1.0, 1.0, 1.0, 1.0],
            [1.0, 1.0, 1.0, 1.0, 1.0],
            [1.0, 1.0, 1.0, 1.0, 1.0],
            [1.0, 1.0, 1.0, 1.0, 1.0],
            [1.0, 1.0, 1.0, 1.0, 1.0],
        ]),
    ),
    (2, 'k3s2p1'): dict(kernel=(3, 3), stride=2, pad=1,
        x=_jl_matrix([
            [0.0299635, 0.233456, 0.596161, 0.161514, 0.0094027],
            [0.389984, 0.235158, 0.579525, 0.301893, 0.561358],
            [0.0830242, 0.483759, 0.914904, 0.253871, 0.820061],
            [0.425287, 0.53451, 0.0405225, 0.729861, 0.403925],
            [0.473724, 0.571418, 0.558427, 0.552183, 0.561624],
        ]),
        dx_maxpool=_jl_matrix([
            [0.0, 0.0, 1.0, 0.0, 0.0],
            [1.0, 0.0, 0.0, 0.0, 1.0],
            [0.0, 0.0, 1.0, 0.0, 1.0],
            [0.0, 1.0, 0.0, 2.0, 0.0],
            [0.0, 1.0, 0.0, 0.0, 0.0],
        ]),
        dx_meanpool=_jl_matrix([
            [0.111111, 0.222222, 0.111111, 0.222222, 0.111111],
            [0.222222, 0.444444, 0.222222, 0.444444, 0.222222],
            [0.111111, 0.222222, 0.111111, 0.222222, 0.111111],
            [0.222222, 0.444444, 0.222222, 0.444444, 0.222222],
            [0.111111, 0.222222, 0.111111, 0.222222, 0.111111],
        ]),
    ),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("key", list(NATURE))
def test_pool_gradients_strided(key, dtype):
    """pooling.jl "more maxpool and meanpool tests" (NNlib issue 205): ∇maxpool and
    ∇meanpool of ones, on random inputs, for overlapping, padded and strided windows
    (NNlib's answers obtained with FiniteDifferences)."""
    c = NATURE[key]
    x = np.asarray(c["x"], dtype)[None, None]
    for pool, want in ((nn.maxpool, c["dx_maxpool"]), (nn.meanpool, c["dx_meanpool"])):
        y, back = fl.pullback(lambda x: pool(x, c["kernel"][::-1], stride=c["stride"],
                                            pad=c["pad"]), x)
        np.testing.assert_allclose(back(np.ones_like(y))[0][0, 0], want, rtol=1e-5, atol=1e-6)


def test_pool_issues_133_229():
    """pooling.jl "Issue #133": maxpool 2x2, pad 1, stride 2 of a 3x3 arange routes ones to
    the corners; "more maxpool..." (issue 229): meanpool of -1s with padding counts it."""
    x = _jl_reshape(range(1, 10), (3, 3))[None, None]
    y, back = fl.pullback(lambda x: nn.maxpool(x, (2, 2), pad=1, stride=2), x)
    np.testing.assert_array_equal(back(np.ones_like(y))[0][0, 0],
                                  _jl_matrix([[1, 0, 1], [0, 0, 0], [1, 0, 1]]))
    y = nn.meanpool(-np.ones((1, 1, 4, 4), np.float32), 2, pad=1)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y[0, 0], [[-0.25, -0.5, -0.25], [-0.5, -1, -0.5],
                                            [-0.25, -0.5, -0.25]])
    x = np.float32([[1, 2], [3, 4]]).T[None, None]
    assert nn.maxpool(x, (2, 2)).item() == 4 and nn.meanpool(x, (2, 2)).item() == 2.5
    np.testing.assert_array_equal(fl.gradient(lambda x: np.sum(nn.maxpool(x, (2, 2))), x)[0],
                                  np.float32([[0, 0], [0, 1]])[None, None])


def _meanpool_by_hand(x, k, pad, stride, count_include_pad):
    """pooling.jl's ref_meanpool: each window's sum over its input entries, divided by the
    window's size or by the number of those entries."""
    d = x.ndim - 2
    size = x.shape[2:]
    out = [(n + 2 * pad - k) // stride + 1 for n in size]
    y = np.zeros(x.shape[:2] + tuple(out), x.dtype)
    for o in itertools.product(*map(range, out)):
        total, count = 0, 0
        for q in itertools.product(range(k), repeat=d):
            i = tuple(o[j] * stride - pad + q[j] for j in range(d))
            if all(0 <= i[j] < size[j] for j in range(d)):
                total, count = total + x[(slice(None), slice(None)) + i], count + 1
        y[(slice(None), slice(None)) + o] = total / (k ** d if count_include_pad else
                                                      max(count, 1))
    return y


def test_meanpool_count_include_pad():
    """pooling.jl "meanpool count_include_pad (issue #218)": NNlib's hand-checked example,
    the default (padding counted), equal modes without padding, a brute-force reference over
    ranks and configurations in float32 and float64, and the gradient."""
    x = _jl_reshape(range(1, 17), (4, 4))[None, None]
    y = nn.meanpool(x, (2, 2), pad=1, stride=2, count_include_pad=False)
    np.testing.assert_allclose(y[0, 0], _jl_matrix([[1, 7, 13], [2.5, 8.5, 14.5],
                                                    [4, 10, 16]]))
    np.testing.assert_array_equal(nn.meanpool(x, 2, pad=1, stride=2),
                                  nn.meanpool(x, 2, pad=1, stride=2, count_include_pad=True))
    rng = np.random.default_rng(2)
    xn = rng.random((2, 2, 8, 8))
    np.testing.assert_array_equal(nn.meanpool(xn, 2), nn.meanpool(xn, 2,
                                                                  count_include_pad=False))
    for dtype, d in itertools.product((np.float32, np.float64), (1, 2, 3)):
        x = rng.random((2, 2) + (7,) * d).astype(dtype)
        for k, pad, stride in ((2, 1, 2), (3, 1, 1), (3, 2, 2)):
            for cip in (True, False):
                y = nn.meanpool(x, k, pad=pad, stride=stride, count_include_pad=cip)
                assert y.dtype == dtype
                np.testing.assert_allclose(y, _meanpool_by_hand(x, k, pad, stride, cip),
                                           rtol=1e-5)
    x = rng.random((1, 2, 7, 7))
    fl.testing.check_grads(lambda x: nn.meanpool(x, 2, pad=1, stride=2,
                                                 count_include_pad=False), x, order=1)


def test_complex_pooling():
    """pooling.jl "complex meanpool (issue #610)": meanpool commutes with the real and
    imaginary parts (values and pullback), in both modes; maxpool refuses complex input
    (it had taken NumPy's lexicographic maximum, silently)."""
    rng = np.random.default_rng(3)
    for d in (1, 2, 3):
        x = rng.random((2, 3) + (7,) * d) + 1j * rng.random((2, 3) + (7,) * d)
        for options in (dict(), dict(pad=1, stride=2)):
            for cip in (True, False):
                def pool(z):
                    return nn.meanpool(z, 2, count_include_pad=cip, **options)
                y, back = fl.pullback(pool, x)
                assert y.dtype == np.complex128
                np.testing.assert_allclose(y.real, pool(x.real))
                np.testing.assert_allclose(y.imag, pool(x.imag))
                dy = rng.random(y.shape) + 1j * rng.random(y.shape)
                dx = back(dy)[0]
                np.testing.assert_allclose(dx.real, fl.pullback(pool, x.real)[1](dy.real)[0])
                np.testing.assert_allclose(dx.imag, fl.pullback(pool, x.real)[1](dy.imag)[0])
        for pool in (lambda z: nn.maxpool(z, 2), lambda z: nn.adaptive_maxpool(z, 2),
                     nn.global_maxpool):
            with pytest.raises(TypeError, match="complex input .* has no maximum"):
                pool(x)


def test_conv_dims():
    """conv.jl "ConvDims" (dense and depthwise): output sizes for scalar and tuple stride,
    dilation and padding, the 4-number padding (Julia's (w_lo, w_hi, h_lo, h_hi) is
    (h_lo, h_hi, w_lo, w_hi) here), and the invalid settings refused by name."""
    x = np.zeros((2, 3, 4, 5))  # Julia's randn(5, 4, 3, 2)
    for conv, w in ((nn.conv, np.zeros((4, 3, 2, 1))), (nn.depthwise_conv, np.zeros((6, 1, 2, 1)))):
        out = w.shape[0]
        assert conv(x, w).shape == (2, out, 3, 5)
        assert conv(x, w, stride=2, dilation=2, pad=3, flipped=True).shape == (2, out, 4, 6)
        assert conv(x, w, stride=(2, 1), dilation=(2, 1), pad=(1, 0)).shape == (2, out, 2, 5)
        assert conv(x, w, pad=(3, 4, 1, 2)).shape == (2, out, 10, 8)
        for bad in (dict(stride=(1,)), dict(stride=(1, 1, 1)), dict(pad=(1, 1, 1)),
                    dict(pad=(1, 1, 1, 1, 1)), dict(dilation=(1,)), dict(dilation=(1, 1, 1)),
                    dict(dilation=(5, 1))):
            with pytest.raises(ValueError, match="conv: "):
                conv(x, w, **bad)
    with pytest.raises(ValueError, match="expects input"):
        nn.conv(x, np.zeros((4, 1, 2, 1)))  # channel mismatch
