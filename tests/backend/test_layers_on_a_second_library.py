"""Every layer and loss of ``tests/compiler/layer_sweep.py`` on a second array library: the
model and its inputs moved there (``fl.backend.to_device``, as ``fl.gpu`` moves them), the
forward pass and the gradient with respect to the model and the inputs must stay there and
equal NumPy's.

``fakedevice`` runs NumPy's kernels behind CuPy's boundary (NumPy arrays refused beside its
own, no implicit conversion), so a NumPy-only array made in a layer's, a loss's or a rule's
path fails here as it would on a GPU. Run first, it found: targets and labels converted with
``np.asarray`` (every loss), embedding indices, a causal mask, dropout's mask drawn on the
host, ``take_along_axis``'s index grids, ``concatenate`` of a device constant, the ODE
state packing and adjoint vectors, and CTC's index arrays. It says nothing about CuPy's own
coverage of NumPy's functions: where CuPy sees a GPU the same cases run on its arrays too
(``devices.py``; marked ``gpu``).
"""

from __future__ import annotations

import numpy as np
import pytest

import fluxml as fl
from tests.backend.devices import DEVICES
from tests.compiler import layer_sweep as ls

# train-mode dropout draws its masks from the layer's generator: two runs draw different
# ones (the masks' device is checked below, on its own)
CASES = [c for c in ls.CASES if not c.random and "Dropout" not in c.name]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_layer_on_a_second_library_matches_numpy(case, device):
    model, args = ls._setup(case, np.float64)
    moved, moved_args = device.move_tree(model), device.move_tree(args)
    want_y = ls._run(case, model, args)
    got_y = ls._run(case, moved, moved_args)
    for a, b in zip(ls._floats(got_y), ls._floats(want_y), strict=True):
        assert device.holds(a), f"an output came back as {type(a).__name__}"
        np.testing.assert_allclose(device.host(a), b, rtol=1e-9, atol=1e-10)
    want_g = ls._gradient(case)(model, *args)
    got_g = ls._gradient(case)(moved, *moved_args)
    for a, b in zip(fl.leaves(got_g), fl.leaves(want_g), strict=True):
        if isinstance(b, np.ndarray) and b.dtype.kind == "f":
            assert device.holds(a), f"a gradient came back as {type(a).__name__}"
            np.testing.assert_allclose(device.host(a), b, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layer", [fl.Dropout(0.5), fl.AlphaDropout(0.5)],
                         ids=["Dropout", "AlphaDropout"])
def test_dropout_masks_are_made_on_the_inputs_device(layer, device):
    # the generator draws on the host; the mask goes to x's device (it was a NumPy array
    # beside a CuPy x: refused)
    x = device.move(np.ones((50, 40)))
    y = fl.trainmode(layer)(x)
    assert device.holds(y)
    kept = device.host(y) != device.host(y).min()
    assert 0.3 < kept.mean() < 0.7  # about half kept
    (g,) = fl.gradient(lambda x: np.sum(fl.trainmode(layer)(x)), x)
    assert device.holds(g)
