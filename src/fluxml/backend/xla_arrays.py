"""JAX arrays as a backend: ``fl.xla(tree)`` puts a model, optimiser state or batch on XLA's
device as ``jax.Array`` leaves, for ``fl.compile(step, backend="xla")`` to train with no copy
between NumPy and XLA on each call; ``fl.cpu(tree)`` brings them back as NumPy arrays.

JAX is an optional extra (``pip install 'fluxml[xla]'``), imported when first asked for: by
``fl.xla``, by ``fl.compile(..., backend="xla")``, or on the first JAX array a tree meets
(:func:`fluxml.backend.registry.backend_of`).

JAX arrays are immutable, so eager fluxml code (``fl.update``, layers that write in place) does
not run on them: they are state for compiled XLA steps, which rebind the caller's leaves to the
new arrays (see ``fl.compile``). Float64 stays float64 (the move runs with JAX's 64-bit types
on, as the XLA back end's calls do).

>>> import numpy as np, fluxml as fl
>>> state = fl.xla({"w": np.ones(2), "n": 3})
>>> type(state["w"]).__name__, state["w"].dtype, state["n"]
('ArrayImpl', dtype('float64'), 3)
>>> fl.cpu(state)["w"]
array([1., 1.])
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fluxml.backend.moving import to_device
from fluxml.backend.registry import ArrayBackend, register

INSTALL_HINT = "install JAX with `pip install 'fluxml[xla]'` (or `pip install jax`)"

_BACKEND: ArrayBackend | None = None


def xla_backend() -> ArrayBackend:
    """JAX's backend, registered on first call (imports JAX): its arrays become tree leaves,
    moved home by ``fl.cpu``."""
    global _BACKEND
    if _BACKEND is None:
        try:
            # lazy: JAX is an optional extra, imported when first asked for
            import jax
            import jax.numpy as jnp
        except ModuleNotFoundError as err:
            raise ModuleNotFoundError(f"fl.xla needs JAX, which is not installed: "
                                      f"{INSTALL_HINT}.", name="jax") from err

        def device_of(x):
            return str(next(iter(x.devices())))

        def to_host(x):
            return np.array(x)  # a writable NumPy copy

        def to_device(x, device):
            if type(x) is array_type and (device is None or device in x.devices()):
                return x
            with jax.enable_x64(True):  # float64 stays float64
                return jax.device_put(x, device)

        array_type = type(jnp.zeros(()))  # the concrete class (jax.Array is abstract)
        _BACKEND = ArrayBackend("xla", array_type, jnp, device_of, to_host, to_device)
        register(_BACKEND)
    return _BACKEND


def xla(tree, device: Any = None):
    """Put every array of ``tree`` (a model, optimiser state, a batch, any tree) on XLA's
    device as ``jax.Array`` leaves, for a training step compiled with
    ``fl.compile(step, backend="xla")`` to keep there: such a step passes them to XLA as they
    are, donates the buffers it overwrites, and rebinds the tree's leaves to the new arrays.

    ``device`` is a ``jax.Device`` (default: JAX's first). Tied arrays stay tied; numbers
    stay numbers; arrays already there are kept. ``fl.cpu(tree)`` moves them back.

    >>> import numpy as np, fluxml as fl
    >>> w = np.ones((2, 2), np.float32)
    >>> moved = fl.xla([w, w, 1.5])
    >>> moved[0] is moved[1], moved[0].dtype, moved[2]
    (True, dtype('float32'), 1.5)
    """
    return to_device(tree, xla_backend(), device)
