"""maxpool's pad check with dilation: a dilated window may skip over the whole input and
read only padding (its maximum -inf, no input entry its argmax): refused, as the check says,
rather than routing its gradient to an input entry the window never read."""

import numpy as np
import pytest

import fluxml as fl
from fluxml.nnlib import maxpool


@pytest.mark.parametrize("shape, kernel, stride, pad, dilation", [
    ((1, 1, 1), 2, 1, 1, 2),                  # every window reads positions -1 and 1
    ((1, 1, 4, 1), 2, (1, 3), (0, 1), (1, 2)),  # the second axis: padding only
    ((1, 1, 2), 2, 1, 2, 4),                  # the middle windows straddle the input
])
def test_maxpool_refuses_windows_of_padding_only(shape, kernel, stride, pad, dilation):
    x = np.ones(shape)
    with pytest.raises(ValueError, match="every window must hold an entry of the input"):
        maxpool(x, kernel, stride=stride, pad=pad, dilation=dilation)
    with pytest.raises(ValueError, match="every window must hold an entry of the input"):
        fl.gradient(lambda x: np.sum(maxpool(x, kernel, stride=stride, pad=pad,
                                             dilation=dilation)), x)


def test_maxpool_dilated_windows_with_an_entry_are_kept():
    """Each window reads padding and at least one entry (PyTorch's values and gradient)."""
    x = np.array([[[1.0, 2.0, 3.0]]])
    f = lambda x: maxpool(x, 2, stride=1, pad=1, dilation=2)  # noqa: E731
    np.testing.assert_array_equal(f(x), [[[2.0, 3.0, 2.0]]])
    g, = fl.gradient(lambda x: np.sum(f(x)), x)
    np.testing.assert_array_equal(g, [[[0.0, 2.0, 1.0]]])
    x = np.arange(1.0, 5.0).reshape(1, 1, 2, 2)
    y = maxpool(x, 2, stride=1, pad=(0, 1), dilation=(1, 2))
    np.testing.assert_array_equal(y, [[[[4.0, 3.0]]]])
