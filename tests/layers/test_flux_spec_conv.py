"""Flux.jl's test/layers/conv.jl translated to fluxml: batch first, NCHW, PyTorch's weight
shapes (``(out, in / groups, *kernel)``), and fluxml's ``Conv`` a cross-correlation (Flux's
``Conv`` flips the kernel: ``flipped=True`` here). Each test names its Flux testset."""

import numpy as np
import pytest

import fluxml as fl

RNG = np.random.default_rng(3)


def rand(*shape):
    return RNG.random(shape, dtype=np.float32)


def test_grouped_conv_refuses_an_init_of_another_shape():
    # conv.jl "Grouped Conv": Conv((3, 3), 1 => 1; init = (_...) -> rand(3, 3, 1)) throws.
    # Before, the weight took the init's shape: a Conv((1,), 3 => 3), silently.
    with pytest.raises(ValueError, match=r"Conv: init must return an array of shape "
                                         r"\(1, 1, 3, 3\); got shape \(3, 3, 1\)"):
        fl.Conv((3, 3), 1, 1, init=lambda shape, rng=None: rand(3, 3, 1))
    with pytest.raises(ValueError, match=r"ConvTranspose: init must return .* \(2, 4, 3\)"):
        fl.ConvTranspose((3,), 4, 2, init=lambda shape, rng=None: rand(4, 2, 3))
    # the same for every layer that calls an init (Dense(3 => 4) was a Dense(4 => 3))
    flipped = lambda shape, rng=None: rand(*shape[::-1])  # noqa: E731
    for make in (lambda: fl.Dense(3, 4, init=flipped), lambda: fl.Embedding(3, 4, init=flipped),
                 lambda: fl.Bilinear((2, 3), 4, init=flipped),
                 lambda: fl.RNN(3, 4, init=flipped), lambda: fl.LSTM(4, 4, init_recurrent=flipped),
                 lambda: fl.LayerNorm(2, 3, init_scale=flipped),
                 lambda: fl.Scale(2, 3, init=flipped)):
        with pytest.raises(ValueError, match="must return an array of shape"):
            make()
    # an init of the right shape is taken as it is
    w = fl.Dense(3, 4, init=lambda shape, rng=None: np.full(shape, 0.5)).weight
    assert w.shape == (4, 3) and w.dtype == np.float32 and np.all(w == 0.5)
