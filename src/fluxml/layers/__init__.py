"""Layers: ``fl.Module`` and the layers built on it (one family a file)."""

from fluxml.layers.basic import Chain, Dense, identity
from fluxml.layers.module import (
    LayerError,
    Module,
    is_active,
    modules,
    testmode,
    trainable,
    trainmode,
    within_gradient,
)
from fluxml.layers.precision import f16, f32, f64

__all__ = [
    "Chain", "Dense", "LayerError", "Module", "f16", "f32", "f64", "identity", "is_active",
    "modules", "testmode", "trainable", "trainmode", "within_gradient",
]
