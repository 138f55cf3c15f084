"""What the by-hand tutorial scripts ``tests/torch_tutorials_*.py`` share (not part of the
suite: PyTorch is no dependency of fluxml). Each script writes one realistic program twice,
with fluxml and with PyTorch, the same weights and data in float64, and compares losses
step by step, gradients and final parameters. Run one as

    PYTHONPATH=src python tests/torch_tutorials_vae_gan.py

with a Python that has torch (and torchdiffeq for the ODE script).
"""

from __future__ import annotations

import numpy as np
import torch

import fluxml as fl

torch.set_default_dtype(torch.float64)
RESULTS: list = []


def numpy(a) -> np.ndarray:
    return np.asarray(a.detach().numpy() if isinstance(a, torch.Tensor) else a, np.float64)


def rel(a, b, scale=None) -> float:
    """The largest difference of ``a`` and ``b`` relative to ``scale`` (by default the
    largest entry of ``b``)."""
    a, b = numpy(a), numpy(b)
    assert a.shape == b.shape, f"shapes {a.shape} and {b.shape}"
    if scale is None:
        scale = np.max(np.abs(b)) if b.size else 0.0
    return float(np.max(np.abs(a - b)) / max(scale, 1e-300)) if a.size else 0.0


def check(name: str, ours, theirs, tol: float = 1e-10) -> float:
    """Compare two arrays (or lists of arrays, relative to the largest entry of all of
    ``theirs``), print and record the worst relative difference; fail past ``tol``."""
    if isinstance(ours, (list, tuple)):
        assert len(ours) == len(theirs), f"{name}: {len(ours)} arrays against {len(theirs)}"
        scale = max((np.max(np.abs(numpy(b)), initial=0.0) for b in theirs), default=0.0)
        err = max((rel(a, b, scale) for a, b in zip(ours, theirs)), default=0.0)
    else:
        err = rel(ours, theirs)
    print(f"  {name:58s} {err:.1e}")
    RESULTS.append((name, err))
    assert err <= tol, f"{name}: relative difference {err:.2e} > {tol:.0e}"
    return err


def params(model) -> list:
    """fluxml's trainable arrays in tree order."""
    return [np.asarray(p) for p in fl.trainables(model)]


def grads_of(model, grads) -> list:
    """The gradient arrays laid out as :func:`params` (zeros where the gradient is None)."""
    leaves = fl.trainables(model)
    paths = [p for p, _ in fl.trainables(model, path=True)]
    out = []
    for path, x in zip(paths, leaves):
        g = grads
        for part in path.split("."):
            g = g[int(part)] if isinstance(g, (list, tuple)) else \
                (g[part] if isinstance(g, dict) else getattr(g, part))
            if g is None:
                break
        if g is None:
            g = np.zeros_like(x)
        out.append(g if isinstance(g, fl.Tracer) else np.asarray(g))  # (traced: kept)
    return out


def load_torch(module: torch.nn.Module, arrays, names=None) -> None:
    """Copy ``arrays`` into ``module``'s parameters (in ``named_parameters`` order, or the
    order of ``names``), checking every shape."""
    named = dict(module.named_parameters())
    names = list(named) if names is None else names
    assert len(names) == len(arrays), f"{len(names)} torch parameters, {len(arrays)} arrays"
    with torch.no_grad():
        for n, a in zip(names, arrays):
            assert tuple(named[n].shape) == a.shape, f"{n}: {tuple(named[n].shape)} != {a.shape}"
            named[n].copy_(torch.tensor(np.asarray(a, np.float64)))


def torch_params(module: torch.nn.Module, names=None) -> list:
    named = dict(module.named_parameters())
    return [named[n] for n in (list(named) if names is None else names)]


def summary(title: str) -> None:
    worst = max(RESULTS, key=lambda r: r[1])
    print(f"{title}: {len(RESULTS)} comparisons, largest relative difference {worst[1]:.1e} "
          f"({worst[0]})")
